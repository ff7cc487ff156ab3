// Test-only fault switches of the Raft core. Each injects one real consensus
// bug, so the simulator's checkers (and the unit tests) can show they catch
// it. All default off; production code never sets them.
#pragma once

namespace stig::replication::raft {

struct RaftFaults {
  // A leader commits an entry of an older term by counting replicas
  // (the figure 8 bug of the Raft paper, thesis §3.6.2).
  bool commit_from_old_term = false;
  // Vote responses (and a candidate's own vote) are released without waiting
  // for the vote to be durable: a crash lets a node vote twice in one term.
  bool vote_not_durable = false;
  // ReadIndex answers at once with the commit index, without the heartbeat
  // round that proves this node is still the leader: a deposed leader serves
  // stale reads.
  bool read_without_quorum = false;

  bool any() const { return commit_from_old_term || vote_not_durable || read_without_quorum; }
};

}  // namespace stig::replication::raft
