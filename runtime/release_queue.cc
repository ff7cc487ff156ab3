#include "runtime/release_queue.h"

#include <algorithm>
#include <type_traits>
#include <utility>

#include "replication/invariant.h"

namespace stig::runtime {

using replication::ReleaseAfter;

void ReleaseQueue::push(replication::Output&& out) {
  STIG_INVARIANT(out.id > last_output_, "outputs pushed out of order");
  last_output_ = out.id;
  if (!out.persist.empty()) {
    last_persist_output_ = out.id;
    if (out.sync) sync_owed_ = out.id;
    unwritten_.push_back(Unwritten{out.id, std::move(out.persist)});
  }
  const uint64_t floor = last_persist_output_;
  auto enqueue = [&](ReleaseAfter after, auto&& item, auto& released_list) {
    if (after == ReleaseAfter::kAtOnce) {
      released_list.push_back(std::move(item));
      return;
    }
    if (after == ReleaseAfter::kSynced && floor > synced_persist_output_) sync_owed_ = std::max(sync_owed_, floor);
    // Built in place: a reply's Response is moved once, not twice.
    Waiting& w = waiting_.emplace_back(Waiting{floor, after, std::nullopt, std::nullopt});
    if constexpr (std::is_same_v<std::decay_t<decltype(item)>, replication::Outbound>)
      w.message.emplace(std::move(item));
    else
      w.reply.emplace(std::move(item));
  };
  for (auto& m : out.messages) enqueue(m.after, std::move(m), released_.messages);
  for (auto& r : out.replies) enqueue(r.after, std::move(r), released_.replies);
  release_ready();
}

std::optional<ReleaseQueue::Write> ReleaseQueue::next_write() {
  if (in_flight_) return std::nullopt;
  const bool owe_sync = sync_owed_ > synced_persist_output_;
  if (unwritten_.empty() && !owe_sync) return std::nullopt;
  Write w;
  w.id = next_write_id_++;
  w.through_output = last_output_;
  for (auto& u : unwritten_) {
    w.persists += u.persist.size();
    w.groups.push_back(std::move(u.persist));
  }
  unwritten_.clear();
  // Everything pushed so far is in this write, so its sync covers every
  // debt, including one that arrives while it is in flight for persists it
  // already carries.
  w.sync = owe_sync;
  in_flight_ = InFlight{w.id, last_persist_output_, w.through_output, w.sync};
  return w;
}

void ReleaseQueue::write_done(uint64_t id) {
  STIG_INVARIANT(in_flight_ && in_flight_->id == id, "a write finished that was not in flight");
  written_persist_output_ = in_flight_->persist_output;
  if (in_flight_->sync) {
    synced_persist_output_ = in_flight_->persist_output;
    synced_output_ = in_flight_->through_output;
  }
  in_flight_.reset();
  release_ready();
}

bool ReleaseQueue::ready(const Waiting& w) const {
  return w.after == ReleaseAfter::kWritten ? w.persist_floor <= written_persist_output_
                                           : w.persist_floor <= synced_persist_output_;
}

void ReleaseQueue::release_ready() {
  while (!waiting_.empty() && ready(waiting_.front())) {
    Waiting& w = waiting_.front();
    if (w.message) released_.messages.push_back(std::move(*w.message));
    if (w.reply) released_.replies.push_back(std::move(*w.reply));
    waiting_.pop_front();
  }
}

ReleaseQueue::Released ReleaseQueue::take_released() { return std::exchange(released_, Released{}); }

bool ReleaseQueue::idle() const {
  return unwritten_.empty() && !in_flight_ && waiting_.empty() && released_.empty() &&
         sync_owed_ <= synced_persist_output_;
}

void ReleaseQueue::clear() { *this = ReleaseQueue(); }

}  // namespace stig::runtime
