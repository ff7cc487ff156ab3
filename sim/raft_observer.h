// RaftObserver: the simulator's omniscient eye on every node's Raft.
//
// The simulator calls observe() after each input a node steps (and so after
// every role change and every entry applied, which happen inside a step). It
// reads only what raft::Raft exposes read-only (role, term, applied index,
// the log) and records sightings for the election-safety and
// state-machine-safety checkers (sim/checker.h): every (node, term) seen
// leading, and the (index, term, hash) of every entry a node applied.
//
// Guarantees: never changes the observed node; an entry a node applied and
// compacted within one step is not seen (snapshots are taken every
// strong_snapshot_entries, far apart), everything else applied is.
#pragma once

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <utility>

#include "replication/raft/raft.h"
#include "sim/checker.h"

namespace stig::sim {

class RaftObserver {
 public:
  // `life` counts the node's restarts: a new life applies its log again
  // from its snapshot, and is checked against what it applied before.
  // True when this is the first sighting of the node leading its term.
  bool observe(int64_t time, const std::string& node, uint64_t life, const replication::raft::Raft& raft);
  const RaftObservations& observations() const { return seen_; }

 private:
  struct Cursor {
    uint64_t life = 0;
    uint64_t applied = 0;  // entries through this index were recorded in this life
  };
  RaftObservations seen_{true, {}, {}, 0};
  std::map<std::string, Cursor> cursors_;
  std::set<std::pair<std::string, uint64_t>> led_;  // (node, term)
};

}  // namespace stig::sim
