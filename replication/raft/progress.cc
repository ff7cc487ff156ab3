#include "replication/raft/progress.h"

#include <algorithm>
#include <utility>

#include "replication/invariant.h"

namespace stig::replication::raft {

bool Progress::paused() const {
  switch (state_) {
    case State::kProbe: return probe_sent_;
    case State::kReplicate: return inflight_.size() >= max_inflight_;
    case State::kSnapshot: return true;
  }
  return true;
}

void Progress::sent_append(uint64_t last, MonoTime now) {
  if (state_ == State::kReplicate) {
    if (inflight_.empty()) last_progress_ = now;  // the stall clock starts with the oldest outstanding APPEND
    next_ = last + 1;
    inflight_.push_back(last);
  } else {
    probe_sent_ = true;
  }
}

void Progress::start_snapshot(const pb::SnapshotMeta& meta, std::shared_ptr<const std::string> data, MonoTime now) {
  STIG_INVARIANT(data != nullptr, "sending a snapshot without data");
  state_ = State::kSnapshot;
  pending_snapshot_ = meta.index();
  last_progress_ = now;
  inflight_.clear();
  snapshot_ = SnapshotTransfer{meta, std::move(data), 0, 0, 0, false, false};
}

void Progress::sent_snapshot_chunk(uint64_t end, bool done) {
  STIG_INVARIANT(state_ == State::kSnapshot && end >= snapshot_.next && end <= snapshot_.data->size(),
                 "snapshot chunk outside the snapshot");
  snapshot_.next = end;
  snapshot_.sent = std::max(snapshot_.sent, end);
  snapshot_.done_sent = done;
}

bool Progress::snapshot_acked(uint64_t offset, MonoTime now) {
  if (state_ != State::kSnapshot || offset <= snapshot_.acked || offset > snapshot_.sent) return false;
  snapshot_.acked = offset;
  snapshot_.next = std::max(snapshot_.next, offset);
  snapshot_.rewound = false;
  last_progress_ = now;
  return true;
}

bool Progress::snapshot_rejected(uint64_t offset, MonoTime now) {
  if (state_ != State::kSnapshot || offset > snapshot_.sent) return false;
  if (snapshot_.rewound && offset == snapshot_.acked) return false;
  rewind_snapshot(offset, now);
  return true;
}

void Progress::rewind_snapshot(uint64_t offset, MonoTime now) {
  if (state_ != State::kSnapshot || offset > snapshot_.sent) return;
  snapshot_.acked = offset;
  snapshot_.next = offset;
  snapshot_.done_sent = false;
  snapshot_.rewound = true;
  last_progress_ = now;
}

bool Progress::maybe_update(uint64_t index, MonoTime now) {
  bool updated = false;
  if (index > match_) {
    match_ = index;
    last_progress_ = now;
    probe_sent_ = false;
    updated = true;
  }
  next_ = std::max(next_, index + 1);
  while (!inflight_.empty() && inflight_.front() <= index) inflight_.pop_front();
  STIG_INVARIANT(match_ < next_, "progress match not below next");
  return updated;
}

bool Progress::maybe_decrease(uint64_t rejected, uint64_t hint_next) {
  if (state_ == State::kReplicate) {
    // Only a reject of what we optimistically sent past match is news.
    if (rejected <= match_) return false;
    next_ = match_ + 1;
    return true;
  }
  // Probe: only the answer to the APPEND we sent last (prev index next-1).
  if (rejected != next_ - 1) return false;
  next_ = std::max(std::min(rejected, hint_next), match_ + 1);
  probe_sent_ = false;
  return true;
}

void Progress::become_probe() {
  state_ = State::kProbe;
  // Only what the follower acknowledged is known: a snapshot in flight may
  // have been lost (a delivered one comes back as a match).
  next_ = match_ + 1;
  pending_snapshot_ = 0;
  probe_sent_ = false;
  inflight_.clear();
  snapshot_ = SnapshotTransfer{};
}

void Progress::become_replicate() {
  state_ = State::kReplicate;
  next_ = match_ + 1;
  pending_snapshot_ = 0;
  probe_sent_ = false;
  inflight_.clear();
  snapshot_ = SnapshotTransfer{};
}

void Progress::heard_heartbeat_resp() {
  probe_sent_ = false;
  if (state_ == State::kReplicate && inflight_.size() >= max_inflight_) inflight_.pop_front();
}

}  // namespace stig::replication::raft
