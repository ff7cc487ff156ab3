// Progress: what a leader knows about one follower's log, and how it sends.
//
// States (etcd raft's, thesis §10.2.1 for pipelining):
//   probe:     next is a guess; one APPEND at a time until the follower answers
//   replicate: the follower matched; APPENDs are pipelined optimistically,
//              at most max_inflight outstanding, next advanced on send
//   snapshot:  the follower needs a snapshot; no APPEND is sent until it
//              acknowledges the last chunk (with an APPEND_RESP); the
//              chunks go out paced by its answers
// Guarantees: match < next; match never decreases while the leader stays
// leader (a reject only moves next); in snapshot state one snapshot is sent
// (kept alive here even if the leader compacts again), and
// acked <= next <= sent <= its size.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <string>

#include "raft.pb.h"
#include "replication/time.h"

namespace stig::replication::raft {

namespace pb = stigmergy::v1;

// The snapshot a leader is sending one follower, and how far it got.
struct SnapshotTransfer {
  pb::SnapshotMeta meta;
  std::shared_ptr<const std::string> data;
  uint64_t acked = 0;      // bytes the follower said it holds
  uint64_t next = 0;       // offset of the next chunk to send
  uint64_t sent = 0;       // the furthest any chunk reached: the follower may hold up to here
  bool done_sent = false;  // the last chunk went out (since the last rewind)
  bool rewound = false;    // sent again from `acked`, nothing acknowledged since
};

class Progress {
 public:
  enum class State { kProbe, kReplicate, kSnapshot };

  Progress(uint64_t next, size_t max_inflight) : next_(next), max_inflight_(max_inflight) {}

  State state() const { return state_; }
  uint64_t match() const { return match_; }
  uint64_t next() const { return next_; }
  uint64_t pending_snapshot() const { return pending_snapshot_; }

  // Nothing may be sent now: a probe is outstanding, the pipeline is full, or
  // a snapshot is on its way.
  bool paused() const;
  // An APPEND carrying entries through `last` was sent.
  void sent_append(uint64_t last, MonoTime now);
  // An empty probe was sent.
  void sent_probe() { probe_sent_ = true; }
  // Snapshot state: `data` (of `meta`) is to be sent from offset 0.
  void start_snapshot(const pb::SnapshotMeta& meta, std::shared_ptr<const std::string> data, MonoTime now);
  // The chunk ending at `end` went out (the last one if `done`).
  void sent_snapshot_chunk(uint64_t end, bool done);
  // The follower holds `offset` bytes: false if that is old news.
  bool snapshot_acked(uint64_t offset, MonoTime now);
  // The follower could not take a chunk and holds `offset` bytes: send
  // again from there. False if already sent again from there (the answers
  // to the rest of the old window ask for the same).
  bool snapshot_rejected(uint64_t offset, MonoTime now);
  // Send again from `offset` (acked, after silence).
  void rewind_snapshot(uint64_t offset, MonoTime now);
  // The snapshot being sent; nullptr outside snapshot state.
  const SnapshotTransfer* snapshot() const { return state_ == State::kSnapshot ? &snapshot_ : nullptr; }

  // The follower holds our log through `index`. False if that is old news.
  bool maybe_update(uint64_t index, MonoTime now);
  // The follower rejected an APPEND whose previous index was `rejected`; its
  // hint says where logs may match. False if the reject is stale.
  bool maybe_decrease(uint64_t rejected, uint64_t hint_next);

  void become_probe();
  void become_replicate();

  // A heartbeat answer: the follower is reachable; allow one more probe, and
  // free one pipeline slot so a lost APPEND cannot stall replication forever.
  void heard_heartbeat_resp();

  // When match last advanced (or a snapshot chunk was acknowledged or sent
  // again); a leader gives up on a pipeline that made no progress for a
  // while, and resends a snapshot from the follower's offset.
  MonoTime last_progress() const { return last_progress_; }

  bool recent_active = false;  // check-quorum: heard from since the last check

 private:
  State state_ = State::kProbe;
  uint64_t match_ = 0;
  uint64_t next_;
  size_t max_inflight_;
  bool probe_sent_ = false;
  uint64_t pending_snapshot_ = 0;
  MonoTime last_progress_ = 0;
  std::deque<uint64_t> inflight_;  // last index of each outstanding APPEND, ascending
  SnapshotTransfer snapshot_;      // snapshot state only
};

}  // namespace stig::replication::raft
