// Configuration of one replica: who it is, who its peers are, protocol knobs.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "replication/status.h"

namespace stig::replication {

using NodeId = std::string;

struct PeerConfig {
  NodeId id;
  std::string address;  // host:port, informational for the core (cluster status)
};

// Test-only fault switches: each injects one real protocol bug so the
// simulator's checkers can be shown to catch it (stig-sim --inject-bug NAME).
// All default off; production code never sets them.
struct TestFaults {
  bool lww_merge = false;                  // registers merge by last-writer-wins (wall clock)
  bool anti_entropy_skips_bucket = false;  // anti-entropy never repairs the lowest differing bucket
  bool counter_merge_sums = false;         // counter merge adds totals instead of taking the maximum
  bool set_remove_wins = false;            // a set merge lets a newer-looking absence beat an add
  bool forget_dot_counter = false;         // restart forgets issued dots (trips a core invariant)
  bool collect_tombstones_early = false;   // tombstones collected before every replica has them, leaving no grave
  bool per_node_retry_dedup = false;       // writes keep no write ids: a retry on another node applies again
  // The strong path (replication/raft/raft_faults.h says what each does).
  bool raft_commit_from_old_term = false;
  bool raft_vote_not_durable = false;
  bool raft_read_without_quorum = false;
  bool strong_reads_skip_read_index = false;  // the leader serves linearizable reads from its own state at once
  bool strong_lock_tokens_restart = false;    // a free lock's next token is 1 again (fencing tokens repeat)
  bool acl_allows_all = false;                // access control on, but no rule is checked (every request allowed)

  // A wrong merge of some type (LazyPath::merge_keys).
  bool wrong_merge() const { return lww_merge || counter_merge_sums || set_remove_wins; }
  bool any() const {
    return lww_merge || anti_entropy_skips_bucket || counter_merge_sums || set_remove_wins || forget_dot_counter ||
           collect_tombstones_early || per_node_retry_dedup || raft_commit_from_old_term || raft_vote_not_durable ||
           raft_read_without_quorum || strong_reads_skip_read_index || strong_lock_tokens_restart ||
           acl_allows_all;
  }
};

struct Config {
  NodeId self;
  std::string self_address;
  std::vector<PeerConfig> peers;  // every other node of the cluster

  int64_t heartbeat_interval_ms = 200;
  int64_t suspect_after_ms = 1000;    // no message for this long: suspect
  int64_t down_after_ms = 3000;       // no message for this long: down
  int64_t anti_entropy_interval_ms = 1000;
  int64_t durability_timeout_ms = 5000;  // quorum/all writes wait this long for acks
  // How long a collected tombstone's context is remembered, so a stale copy
  // of the key still in flight (delayed, reordered, queued during a
  // partition) cannot bring deleted values back. Must exceed the longest a
  // message can take between two nodes.
  int64_t tombstone_grace_ms = 60000;
  uint32_t max_siblings = 100;           // a put that would exceed this fails
  uint32_t max_key_bytes = 4096;
  uint32_t max_value_bytes = 1u << 20;
  uint32_t max_state_bytes = 3u << 20;   // all siblings of one key; stays below the frame limit
  uint32_t merkle_fanout = 16;
  uint32_t merkle_depth = 3;             // leaves = fanout^depth buckets
  uint32_t max_batch_bytes = 1u << 20;   // split push/anti-entropy messages above this
  // At-most-once retries: clients remembered, bytes of answers kept for them,
  // and how long an idle client is remembered (see ClientSessions).
  size_t dedup_clients = 10000;
  size_t dedup_max_bytes = 64u << 20;
  int64_t dedup_idle_ms = 10 * 60 * 1000;
  // The strong path: Raft's timers (an election starts after a random
  // timeout in [min, max) without a leader), a state machine snapshot every
  // this many applied entries (the log before it is dropped), and the MVCC
  // history kept (revisions; older ones are compacted as writes go on).
  // The election timeout leaves room for a loaded machine to stall a few
  // hundred ms without an election, and still fails over well within 1 s.
  int64_t raft_election_min_ms = 300;
  int64_t raft_election_max_ms = 600;
  int64_t raft_heartbeat_ms = 60;
  // A snapshot serializes the whole state machine on the event loop, so it
  // is taken rarely (etcd's default count); the log in between stays in
  // memory (about 200 bytes per small write).
  uint64_t strong_snapshot_entries = 100000;
  // Entries a snapshot covers that stay in the log after it, so a follower
  // that lags by fewer catches up from the log, not from the snapshot.
  uint64_t strong_snapshot_catch_up_entries = 5000;
  uint64_t strong_history_revisions = 10000;
  // Raft sends a snapshot to a lagging follower in chunks of this many bytes
  // (each chunk must fit a peer frame: stigd derives it from --max-frame-bytes).
  uint64_t raft_snapshot_chunk_bytes = 1u << 20;
  // Access rules (replication/strong/acl.h, docs/access-control.md): whether
  // they are enforced, and the agent that always holds admin on every key
  // (so a fresh cluster can be set up; it cannot be revoked). Every node of
  // a cluster must use the same two settings: strong commands are checked
  // as they apply. The identity rule (who an authenticated client may act
  // as) applies whether or not access control is on.
  bool access_control = false;
  std::string admin_agent = "admin";
  TestFaults test_faults;                // off unless a test injects a bug

  // Sorted ids of every node, self included.
  std::vector<NodeId> all_nodes() const;
  size_t cluster_size() const { return peers.size() + 1; }
  // Elements one node lets a set hold before refusing adds.
  size_t max_set_elements() const { return size_t{max_siblings} * 100; }
  Status validate() const;
};

}  // namespace stig::replication
