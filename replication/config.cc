#include "replication/config.h"

#include <algorithm>
#include <set>

namespace stig::replication {

std::vector<NodeId> Config::all_nodes() const {
  std::vector<NodeId> ids;
  ids.reserve(peers.size() + 1);
  ids.push_back(self);
  for (const auto& p : peers) ids.push_back(p.id);
  std::sort(ids.begin(), ids.end());
  return ids;
}

Status Config::validate() const {
  if (self.empty()) return Status::invalid_argument("node id is empty");
  std::set<NodeId> seen{self};
  for (const auto& p : peers) {
    if (p.id.empty()) return Status::invalid_argument("a peer has an empty id");
    if (!seen.insert(p.id).second) return Status::invalid_argument("node id '" + p.id + "' appears twice");
  }
  // The strong path's agent limit (StateMachineOptions::max_id_bytes).
  if (admin_agent.empty() || admin_agent.size() > 256)
    return Status::invalid_argument("the admin agent's name must be 1 to 256 bytes");
  if (heartbeat_interval_ms <= 0) return Status::invalid_argument("heartbeat interval must be positive");
  if (suspect_after_ms <= heartbeat_interval_ms)
    return Status::invalid_argument("suspect timeout must exceed the heartbeat interval");
  if (down_after_ms < suspect_after_ms) return Status::invalid_argument("down timeout must be at least the suspect timeout");
  if (anti_entropy_interval_ms <= 0) return Status::invalid_argument("anti-entropy interval must be positive");
  if (durability_timeout_ms <= 0) return Status::invalid_argument("durability timeout must be positive");
  if (tombstone_grace_ms <= 0) return Status::invalid_argument("tombstone grace period must be positive");
  if (max_siblings == 0) return Status::invalid_argument("max siblings must be at least 1");
  if (merkle_fanout < 2 || merkle_fanout > 256) return Status::invalid_argument("merkle fanout must be in 2..256");
  if (merkle_depth < 1 || merkle_depth > 4) return Status::invalid_argument("merkle depth must be in 1..4");
  if (max_batch_bytes < 1024) return Status::invalid_argument("max batch bytes must be at least 1024");
  if (raft_heartbeat_ms <= 0) return Status::invalid_argument("raft heartbeat interval must be positive");
  if (raft_election_min_ms <= raft_heartbeat_ms)
    return Status::invalid_argument("raft election timeout must exceed the raft heartbeat interval");
  if (raft_election_max_ms <= raft_election_min_ms)
    return Status::invalid_argument("raft election timeout range is empty (max must exceed min)");
  if (raft_snapshot_chunk_bytes < 1024) return Status::invalid_argument("raft snapshot chunks must be at least 1024 bytes");
  if (strong_snapshot_entries < 1) return Status::invalid_argument("strong snapshot interval must be at least 1 entry");
  return Status::ok();
}

}  // namespace stig::replication
