#include "sim/node.h"

#include <algorithm>
#include <stdexcept>

namespace stig::sim {

using replication::Input;
using replication::MonoTime;

SimNode::SimNode(int index, replication::Config config, Scheduler& scheduler, SimRandom& random,
                 NodeOptions options, SendPeer send_peer, SendReply send_reply)
    : index_(index),
      config_(std::move(config)),
      scheduler_(scheduler),
      random_(random),
      options_(options),
      send_peer_(std::move(send_peer)),
      send_reply_(std::move(send_reply)),
      mono_base_(random.range(1000, 1000000000)) {}

replication::Now SimNode::now() const {
  return replication::Now{scheduler_.now() + mono_base_, kWallEpochMs + scheduler_.now() + skew_ms_};
}

bool SimNode::start() {
  if (replica_) return true;
  try {
    replica_ = std::make_unique<replication::Replica>(config_, random_.next(), disk_.recover());
  } catch (const std::exception& e) {  // the core's edge: a refused recovery is a finding, not a crash
    start_error_ = e.what();
    return false;
  }
  started_gen_ = done_gen_ = last_needed_ = 0;
  sync_in_flight_ = false;
  scheduled_tick_ = INT64_MAX;
  deliver(replication::Tick{});
  return true;
}

void SimNode::crash() {
  if (!replica_) return;
  replica_.reset();
  disk_.note_lost();
  disk_.crash();
  queue_.clear();
  ++epoch_;
  ++crashes_;
  flush_scheduled_ = false;
  sync_in_flight_ = false;
}

void SimNode::deliver(Input input) {
  if (!replica_) return;
  replica_->step(now(), std::move(input));
  if (flush_scheduled_) return;
  flush_scheduled_ = true;
  const uint64_t epoch = epoch_;
  scheduler_.after(0, [this, epoch] {
    if (epoch != epoch_) return;
    flush_scheduled_ = false;
    flush();
  });
}

void SimNode::flush() {
  if (!replica_) return;
  replication::Output out = replica_->take_output();
  // Persists of an output without `sync` are staged (lost if the node
  // crashes before some later sync covers them) but released at once.
  const bool must_sync = !out.persist.empty() && out.sync;
  uint64_t needed = last_needed_;
  if (!out.persist.empty()) disk_.stage(std::move(out.persist));
  if (must_sync) needed = started_gen_ + 1;  // the next sync to start covers these writes
  last_needed_ = std::max(last_needed_, needed);
  if (options_.reply_before_sync)
    for (auto& r : out.replies) send_reply_(index_, std::move(r));
  if (options_.reply_before_sync) out.replies.clear();
  Pending p{needed, std::move(out.messages), std::move(out.replies)};
  if (needed <= done_gen_ && queue_.empty())
    release(p);
  else if (!p.messages.empty() || !p.replies.empty())
    queue_.push_back(std::move(p));
  if (must_sync && !sync_in_flight_) start_sync();
  schedule_tick(out.wake_at);
}

void SimNode::start_sync() {
  sync_in_flight_ = true;
  ++started_gen_;
  const size_t groups = disk_.begin_sync();
  const uint64_t epoch = epoch_;
  scheduler_.after(random_.range(options_.fsync_min_ms, options_.fsync_max_ms),
                   [this, epoch, groups] { sync_done(epoch, groups); });
}

void SimNode::sync_done(uint64_t epoch, size_t groups) {
  if (epoch != epoch_ || !replica_) return;
  disk_.finish_sync(groups);
  done_gen_ = started_gen_;
  sync_in_flight_ = false;
  while (!queue_.empty() && queue_.front().needs_sync <= done_gen_) {
    Pending p = std::move(queue_.front());
    queue_.pop_front();
    release(p);
  }
  if (last_needed_ > done_gen_) start_sync();  // an output waits for a sync not yet started
}

void SimNode::release(Pending& p) {
  for (const auto& m : p.messages) send_peer_(index_, m);
  for (auto& r : p.replies) send_reply_(index_, std::move(r));
}

void SimNode::schedule_tick(MonoTime wake) {
  if (wake == replication::kNever) return;
  const SimTime at = std::max(wake - mono_base_, scheduler_.now());
  if (at >= scheduled_tick_) return;
  scheduled_tick_ = at;
  const uint64_t epoch = epoch_;
  scheduler_.at(at, [this, epoch, at] { tick(epoch, at); });
}

void SimNode::tick(uint64_t epoch, SimTime at) {
  if (epoch != epoch_ || !replica_ || at != scheduled_tick_) return;
  scheduled_tick_ = INT64_MAX;
  deliver(replication::Tick{});
}

}  // namespace stig::sim
