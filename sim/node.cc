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
  queue_.clear();
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
}

void SimNode::deliver(Input input) {
  if (!replica_) return;
  replica_->step(now(), std::move(input));
  if (observe_) observe_(*this);
  if (!replica_ || flush_scheduled_) return;
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
  if (options_.reply_before_sync) {  // injected runtime bug: replies overtake their writes
    for (auto& r : out.replies) send_reply_(index_, std::move(r));
    out.replies.clear();
  }
  if (options_.messages_before_sync) {  // injected runtime bug: messages overtake their writes
    for (const auto& m : out.messages) send_peer_(index_, m);
    out.messages.clear();
  }
  const MonoTime wake = out.wake_at;
  queue_.push(std::move(out));
  pump();
  schedule_tick(wake);
}

void SimNode::pump() {
  while (true) {
    auto released = queue_.take_released();
    for (const auto& m : released.messages) send_peer_(index_, m);
    for (auto& r : released.replies) send_reply_(index_, std::move(r));
    auto write = queue_.next_write();
    if (!write) return;
    for (auto& g : write->groups) disk_.stage(std::move(g));
    if (!write->sync) {  // staged is written: the page cache is instant
      queue_.write_done(write->id);
      continue;
    }
    const size_t groups = disk_.begin_sync();
    const uint64_t epoch = epoch_, id = write->id;
    scheduler_.after(random_.range(options_.fsync_min_ms, options_.fsync_max_ms),
                     [this, epoch, id, groups] { sync_done(epoch, id, groups); });
    return;
  }
}

void SimNode::sync_done(uint64_t epoch, uint64_t write_id, size_t groups) {
  if (epoch != epoch_ || !replica_) return;
  disk_.finish_sync(groups);
  queue_.write_done(write_id);
  pump();
  deliver(replication::Persisted{queue_.synced_through()});
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
