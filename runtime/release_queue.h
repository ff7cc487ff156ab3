// ReleaseQueue: the one place that decides when what the core produced may
// leave the node.
//
// The core (replication::Replica) hands every Output to a runtime; the
// runtime must make the output's persists durable and release its messages
// and replies only once what each of them depends on is durable. stigd
// (node/commit_pipeline), stig-sim (sim/node) and the core's
// message-by-message tests (tests/unit/test_cluster.h) all drive this class,
// so the ordering rule is written once. It does no I/O itself: the runtime
// asks it what to write (next_write), writes it however it writes, and says
// when that finished (write_done).
//
// Guarantees:
//  - an item (message or reply) with release_after kSynced leaves only once
//    the persists of its own output and of every earlier output are synced;
//    kWritten once they are written (a process crash keeps them, a power
//    loss may not); kAtOnce at once, even ahead of earlier items still
//    waiting (Raft's leader sends appends while its own append is in
//    flight);
//  - kWritten and kSynced items leave in the order the core produced them;
//  - one write at a time: everything that arrived while a write was in
//    flight goes into the next one (group commit: the more load, the more
//    outputs share one sync);
//  - a write syncs when any output it covers asked for a sync
//    (Output::sync) or a waiting item needs one; a sync covers every write
//    before it (a WAL is sequential), so a sync-only write (no persists) is
//    asked for when an item needs a sync of persists already written;
//  - synced_through() names the last output whose persists (and all
//    earlier ones) are synced: the runtime steps it into the core as a
//    replication::Persisted input after each synced write.
#pragma once

#include <cstdint>
#include <deque>
#include <optional>
#include <vector>

#include "replication/replica.h"

namespace stig::runtime {

class ReleaseQueue {
 public:
  // One write for the runtime to make: the groups in order as one atomic
  // batch, then an fsync when `sync`. `groups` may be empty with sync set.
  struct Write {
    uint64_t id = 0;
    std::vector<std::vector<replication::Persist>> groups;
    bool sync = false;
    uint64_t through_output = 0;  // the last output id this write covers
    size_t persists = 0;
  };
  // Items that may leave now, in the order they must leave.
  struct Released {
    std::vector<replication::Outbound> messages;
    std::vector<replication::Reply> replies;
    bool empty() const { return messages.empty() && replies.empty(); }
  };

  // Takes the next output (ids strictly increasing). Items it can release
  // at once become available from take_released().
  void push(replication::Output&& out);

  // The next write to make, if one is due and none is in flight.
  std::optional<Write> next_write();

  // Write `id` (the one in flight) finished: written, and synced if it said
  // so. Releases what waited for it.
  void write_done(uint64_t id);

  Released take_released();

  // Every output up to this id has its persists synced (0: none yet).
  uint64_t synced_through() const { return synced_output_; }
  bool write_in_flight() const { return in_flight_.has_value(); }
  // Nothing waits to be written, synced or released.
  bool idle() const;
  // A crash: forget everything not yet released (the runtime's disk loses
  // what was not synced on its own). The next replica numbers its outputs
  // from 1 again.
  void clear();

 private:
  struct Waiting {
    uint64_t persist_floor;  // the last output with persists at or before this item's output
    replication::ReleaseAfter after;
    std::optional<replication::Outbound> message;
    std::optional<replication::Reply> reply;
  };
  bool ready(const Waiting& w) const;
  void release_ready();

  uint64_t last_output_ = 0;          // the last output pushed
  uint64_t last_persist_output_ = 0;  // the last output pushed that had persists
  uint64_t written_persist_output_ = 0;
  uint64_t synced_persist_output_ = 0;
  uint64_t synced_output_ = 0;
  uint64_t sync_owed_ = 0;  // persists through this output must be synced
  uint64_t next_write_id_ = 1;

  struct Unwritten {
    uint64_t output;
    std::vector<replication::Persist> persist;
  };
  std::deque<Unwritten> unwritten_;
  struct InFlight {
    uint64_t id, persist_output, through_output;
    bool sync;
  };
  std::optional<InFlight> in_flight_;
  std::deque<Waiting> waiting_;
  Released released_;
};

}  // namespace stig::runtime
