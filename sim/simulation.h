// Simulation: one seeded run of N real replicas and M simulated clients.
//
// Phases: [0, duration) the workload runs and the nemesis applies its faults;
// at `duration` every fault is healed (links, loss, duplication, reordering,
// spikes) and every crashed node restarts, clients stop starting new
// operations; then a quiet period lets the cluster converge (the run ends
// early once digests have been equal for a while and no client is busy).
// Finally every replica is read directly and the checkers run.
//
// Guarantees: the run is a pure function of its options (seed included): the
// same options give the same history, byte for byte. Nothing here throws;
// a STIG_INVARIANT in the core aborts the process (see runner.h).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "replication/config.h"
#include "sim/checker.h"
#include "sim/client.h"
#include "sim/history.h"
#include "sim/nemesis.h"
#include "sim/network.h"
#include "sim/node.h"
#include "sim/workload.h"

namespace stig::sim {

// Everything a run depends on: together with the seed it determines the
// history byte for byte.
// The protocol knobs the simulator starts from: stigd's defaults, but the
// strong path snapshots every 400 entries keeping 100 (stigd: 100,000 and
// 5,000), so short runs compact their logs and catch lagging nodes up from
// snapshots and from the catch-up tail.
replication::Config sim_replica_defaults();

struct SimOptions {
  int nodes = 5;
  int clients = 10;
  int64_t duration_ms = 60000;
  int64_t quiet_ms = 30000;  // upper bound; the run ends earlier once converged
  uint64_t seed = 1;
  std::vector<std::string> workloads = {"registers", "counters", "sets"};
  NemesisOptions nemesis;
  std::optional<Scenario> scenario;  // replaces the random nemesis when set
  NetworkOptions network;
  NodeOptions disk;
  ClientOptions client;
  WorkloadOptions workload;
  replication::Config replica = sim_replica_defaults();  // protocol knobs (self/peers are filled in)
};

struct SimOptions;
// Test-only bugs by name: in the core "lww-merge", "anti-entropy-skips-bucket",
// "counter-merge-sums", "set-remove-wins", "forget-dot-counter",
// "collect-tombstones-early"; in the strong path "raft-commit-old-term",
// "raft-vote-not-durable", "raft-read-without-quorum",
// "strong-reads-skip-read-index"; in the
// simulated runtime "reply-before-fsync" and "messages-before-fsync". Returns an error for unknown names.
std::vector<std::string> injectable_bugs();
std::string inject_bug(const std::string& name, SimOptions& options);

// A shaded interval or a mark on the report's timeline.
struct Span {
  std::string lane;  // "n2", "network", "clock"
  int64_t start = 0, end = 0;
  std::string kind;  // down, partition, loss, dup, reorder, spike, clock
  std::string label;
  std::vector<int> sides;  // partition: per node, which side it is on (same number: can talk)
};

// A node became Raft leader (seen by polling every node's role).
struct LeaderEvent {
  int64_t time = 0;
  std::string node;
  uint64_t term = 0;
};

// What a run produced: the history, the final replica states, each checker's
// verdict, and the fault spans for the report.
struct RunResult {
  SimOptions options;
  History history;
  FinalState final_state;
  std::vector<CheckResult> checks;
  std::vector<Span> spans;
  int64_t end_ms = 0;   // simulated time at the end
  uint64_t events = 0;  // scheduler events run
  NetworkStats network;
  uint64_t crashes = 0;
  std::vector<LeaderEvent> leaders;  // elections won, in time order

  // Leader changes: elections won by a node other than the previous leader.
  size_t leader_changes() const;
  size_t violations() const;
  bool ok() const { return violations() == 0; }
  // "seed 7: 5123 ops, 14 faults, 0 violations, converged 0.412s after heal"
  std::string summary_line() const;
};

// Runs one simulation to the end (never throws; a core invariant aborts).
RunResult run_simulation(const SimOptions& options);

}  // namespace stig::sim
