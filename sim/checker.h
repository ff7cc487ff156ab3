// Checkers: properties a lazy-path history and the final replica states must
// satisfy, each reporting what it found.
//
//   convergence   after the final heal, every replica's digest is equal (and
//                 how long that took); names keys whose states still differ
//   lost-writes   every acknowledged put is still a sibling on every replica,
//                 unless a later put/del was invoked with a context covering
//                 its dot (ok or unknown outcome); a put retried on another
//                 node counts as present under any dot its value was seen with
//                 (one copy of it is kept), and as superseded when a context
//                 covered any of those dots
//   resurrection  no replica shows a version that an acknowledged put or del
//                 had superseded (a deleted value coming back)
//   counters      each replica's counter lies within the range allowed by ok
//                 increments (applied at least once, at most once per attempt)
//                 and unknown ones (zero to once per attempt)
//   applied-once  a write retried on another node counts once: each
//                 replica's counter lies within the range of applying each ok
//                 add once and each unknown one at most once, and no replica
//                 holds one written value as two register versions
//   sets          add-wins: an element added by an ok add that started after
//                 every remove of it had finished is present; an element never
//                 added is absent
//   invariants    the core refused nothing it wrote itself (recovery errors);
//                 STIG_INVARIANT aborts are reported by the runner with the seed
//   access        (acl workload) no write outside the writer's grants was
//                 acknowledged or is held by any replica at the end
//
// The simulator and the real-cluster nemesis test fill the same FinalState.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "sim/history.h"

namespace stig::sim {

// One replica's state at the end, as its clients would read it.
struct NodeFinal {
  std::string node;
  bool up = true;
  uint64_t digest = 0;
  std::map<std::string, std::vector<SeenVersion>> registers;  // key -> live versions
  std::map<std::string, int64_t> counters;
  std::map<std::string, std::set<std::string>> sets;
  // The strong path, read locally (stale reads) after the quiet period.
  bool strong_read = false;  // set when the history had strong ops and the node was read
  std::string raft_role;
  uint64_t raft_term = 0;
  uint64_t commit_index = 0;
  std::map<std::string, RegisterValue> strong;  // key -> latest applied value
  // (key, revision) -> the key as of that revision: one per acknowledged write
  std::map<std::pair<std::string, uint64_t>, RegisterValue> strong_at;
};

// What an omniscient observer saw of every node's Raft during the run, read
// after every input a node stepped (the simulator sees the whole cluster; a
// test against real processes leaves it unobserved). Raw sightings only:
// the election-safety and state-machine-safety checkers judge them.
struct RaftObservations {
  bool observed = false;
  // A node seen leading a term (the first sighting of each (node, term)).
  struct Leadership {
    int64_t time = 0;
    std::string node;
    uint64_t term = 0;
  };
  std::vector<Leadership> leaderships;
  // A log entry a node applied to its state machine.
  struct Applied {
    int64_t time = 0;
    std::string node;
    uint64_t term = 0;
    uint64_t hash = 0;  // of the entry's type and bytes
  };
  // index -> every distinct (term, hash) applied at that index, each at its
  // first sighting; a correct Raft has exactly one per index.
  std::map<uint64_t, std::vector<Applied>> applied;
  uint64_t applications = 0;  // entries applied, counting each node (and each restart) again
};

// Every replica's final state plus what the runtime measured about convergence.
struct FinalState {
  std::vector<NodeFinal> nodes;
  int64_t healed_at = -1;                     // time of the final heal
  std::optional<int64_t> converged_after_ms;  // from the heal until digests stayed equal
  std::vector<std::string> invariant_failures;
  RaftObservations raft;
};

// One checker's verdict: ok, a one-line summary, and each violation found.
struct CheckResult {
  std::string name;
  bool ok = true;
  // Neither a pass nor a violation (a search ran out of budget): ok stays
  // true so a sweep goes on, but it is printed and summarised as such.
  bool inconclusive = false;
  std::string summary;                // one line
  std::vector<std::string> findings;  // one line each (capped)

  static constexpr size_t kMaxFindings = 20;
  // Records a violation: not ok, and the line kept while under the cap.
  void fail(std::string line) {
    ok = false;
    note(std::move(line));
  }
  // Keeps a line (while under the cap) without failing.
  void note(std::string line) {
    if (findings.size() < kMaxFindings) findings.push_back(std::move(line));
  }
};

// "12.345s": a simulated time in milliseconds, as findings print it.
std::string format_seconds(int64_t ms);

// A property of a history and the final states. Stateless; check() is pure.
class Checker {
 public:
  virtual ~Checker() = default;
  virtual std::string name() const = 0;
  virtual CheckResult check(const History& history, const FinalState& final_state) const = 0;
};

// The checkers of the lazy path, in report order.
std::vector<std::unique_ptr<Checker>> lazy_checkers();
// The acl workload's checker ("access": no write outside the writer's
// grants was applied), run when the history has acl workload operations.
std::unique_ptr<Checker> access_checker();
bool has_acl_ops(const History& history);
// The checkers of the strong path (linearizable, lock-safety,
// committed-not-lost, election-safety, state-machine-safety); run_checkers
// adds them when the history has strong ops.
//
//   election-safety       at most one node leads any term (Raft §5.2): every
//                         (term, leader) the observer saw, compared
//   state-machine-safety  no two nodes (nor one node before and after a
//                         restart) apply different entries at the same log
//                         index (Raft §5.4.3): per index, the (term, hash) of
//                         every applied entry, compared
std::vector<std::unique_ptr<Checker>> strong_checkers();
std::unique_ptr<Checker> election_safety_checker();       // sim/raft_checker.cc
std::unique_ptr<Checker> state_machine_safety_checker();  // sim/raft_checker.cc
bool has_strong_ops(const History& history);
std::vector<CheckResult> run_checkers(const History& history, const FinalState& final_state);

// Keys the history touched, by type (what a final read must cover).
struct TouchedKeys {
  std::set<std::string> registers, counters, sets;
};
TouchedKeys touched_keys(const History& history);

// Reads every touched key from one replica through `ask` (a request in, its
// response out) into `out`: how the simulator and the real-cluster nemesis
// test both take a replica's final state.
void read_final_values(const TouchedKeys& keys,
                       const std::function<stigmergy::v1::Response(stigmergy::v1::Request)>& ask, NodeFinal& out);

// An acknowledged strong write: the value `key` took at `revision`.
struct AckedWrite {
  uint64_t op = 0;
  std::string key, value;
  bool deleted = false;
  uint64_t revision = 0;
  uint64_t version = 0;  // 0 when the reply did not say (txn)
};
std::vector<AckedWrite> acknowledged_strong_writes(const History& history);
// Keys the history's strong ops touched.
std::set<std::string> strong_keys(const History& history);
// Reads every strong key, and each acknowledged write's key as of its
// revision, from one node with local (stale) reads through `ask`.
void read_final_strong(const History& history,
                       const std::function<stigmergy::v1::Response(stigmergy::v1::Request)>& ask, NodeFinal& out);

}  // namespace stig::sim
