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

struct Config {
  NodeId self;
  std::string self_address;
  std::vector<PeerConfig> peers;  // every other node of the cluster

  int64_t heartbeat_interval_ms = 200;
  int64_t suspect_after_ms = 1000;    // no message for this long: suspect
  int64_t down_after_ms = 3000;       // no message for this long: down
  int64_t anti_entropy_interval_ms = 1000;
  int64_t durability_timeout_ms = 5000;  // quorum/all writes wait this long for acks
  uint32_t max_siblings = 100;           // a put that would exceed this fails
  uint32_t max_key_bytes = 4096;
  uint32_t max_value_bytes = 1u << 20;
  uint32_t max_state_bytes = 3u << 20;   // all siblings of one key; stays below the frame limit
  uint32_t merkle_fanout = 16;
  uint32_t merkle_depth = 3;             // leaves = fanout^depth buckets
  uint32_t max_batch_bytes = 1u << 20;   // split push/anti-entropy messages above this
  size_t dedup_clients = 10000;          // clients remembered for at-most-once retries

  // Sorted ids of every node, self included.
  std::vector<NodeId> all_nodes() const;
  size_t cluster_size() const { return peers.size() + 1; }
  Status validate() const;
};

}  // namespace stig::replication
