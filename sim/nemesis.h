// Nemesis: the faults of a run, as a timed list of events.
//
// A scenario comes either from a file (JSON, see docs/simulation.md and
// examples/sim-*.json) or from the random nemesis, which turns
// `--nemesis partition,loss,dup,reorder,spike,crash,clock` (each with an
// optional rate in faults per simulated second, e.g. crash=0.05) into the
// same kind of list, drawn from the run's random generator.
//
// Two targeted kinds aim at Raft's windows of danger; the random nemesis
// arms them at their rate and each strikes once, at the next moment it
// aims for (they are not part of "all": name them):
//   vote-crash  the next node to grant a vote crashes as the grant leaves
//               it (before a slow disk could have synced it) and restarts
//               a few ms later, while the election is still on;
//   new-leader  the next node to win an election is either cut off from
//               every peer at once (its first APPENDs lost) or crashed a
//               few ms later (its own NOOP possibly not yet synced), and
//               comes back a while later: the elections churn of the Raft
//               paper's figure 8. Either way the
// simulation ends every run with heal-all, restart of crashed nodes and a
// quiet period (see Simulation), so convergence can be checked.
//
// Scenario files may also script client operations ("op" events) so a story
// such as "two agents update the same order on both sides of a partition"
// can be replayed exactly.
//
// Errors are values: parse functions return an error message, empty on success.
#pragma once

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "sim/random.h"
#include "sim/scheduler.h"

namespace stig::sim {

// kArm arms a targeted fault (shape "vote-crash" or "new-leader") that
// strikes at the next moment it aims for; see Simulation.
enum class FaultKind { kPartition, kHeal, kLoss, kDuplicate, kReorder, kSpike, kCrash, kRestart, kClock, kOp, kArm };

struct FaultEvent {
  SimTime at = 0;
  FaultKind kind = FaultKind::kHeal;
  // partition: halves | isolate | bridge | oneway | random | groups; arm: vote-crash | new-leader
  std::string shape;
  std::vector<std::vector<int>> groups;  // groups: explicit sides; oneway: groups[0] cannot reach groups[1]
  int node = -1;                         // crash, restart, clock, isolate (-1: random)
  double rate = 0;                       // loss, duplicate, spike: probability per message (0 = off)
  int64_t ms = 0;                        // spike: extra delay; clock: skew or jump amount
  bool on = false;                       // reorder on/off; clock: true = jump (relative), false = set skew
  // kOp: a scripted client operation
  std::string agent, op, key, value;
  bool with_context = false;  // put/del with the context of this agent's last reply for the key
};

struct Scenario {
  std::string description;
  std::vector<FaultEvent> events;  // sorted by time (stable)
};

struct NemesisOptions {
  std::map<std::string, double> rates;  // kind -> faults per simulated second
  double loss = 0.3;                    // message loss while a loss fault is active
  double duplicate = 0.2;
  double spike = 0.3;
  int64_t spike_ms = 500;
  int64_t max_skew_ms = 120000;
  bool empty() const { return rates.empty(); }
};

std::vector<std::string> nemesis_kinds();
// "partition,loss=0.2,crash" (or "none"); unknown kinds and bad rates are errors.
std::string parse_nemesis(const std::string& spec, NemesisOptions& out);
// The random nemesis: independent timelines per kind, all within [0, duration).
Scenario random_scenario(const NemesisOptions& options, int nodes, SimTime duration, SimRandom& random);
// A scenario file's text; node names are n1..nN.
std::string parse_scenario(const std::string& json_text, int nodes, Scenario& out);
// "60s", "1500ms", "2m", "1h"; a bare number is seconds. Negative allowed ("-30s").
std::string parse_duration(const std::string& text, int64_t& ms);

// The directed links a partition blocks, and a one-line description.
std::vector<std::pair<int, int>> partition_links(const FaultEvent& e, int nodes, SimRandom& random,
                                                 std::string& description);
std::string node_name(int index);

}  // namespace stig::sim
