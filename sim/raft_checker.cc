// The Raft safety checkers over what the simulator observed of every node
// (RaftObservations, sim/raft_observer.h): election-safety and
// state-machine-safety (see sim/checker.h).
#include <cstdio>
#include <map>
#include <memory>
#include <set>

#include "sim/checker.h"

namespace stig::sim {

namespace {

// A real cluster gives no view inside its nodes: the check passes vacuously
// and says so.
CheckResult not_observed(CheckResult& r) {
  r.summary = "not observed (no omniscient view of the nodes)";
  return r;
}

// Raft §5.2: at most one leader per term. Two nodes seen leading the same
// term means some node voted twice in it (or votes were miscounted).
class ElectionSafetyChecker : public Checker {
 public:
  std::string name() const override { return "election-safety"; }
  CheckResult check(const History&, const FinalState& f) const override {
    CheckResult r;
    r.name = name();
    const auto& seen = f.raft;
    if (!seen.observed) return not_observed(r);
    std::map<uint64_t, std::vector<const RaftObservations::Leadership*>> by_term;
    for (const auto& l : seen.leaderships) by_term[l.term].push_back(&l);
    size_t bad_terms = 0;
    for (const auto& [term, leaders] : by_term) {
      if (leaders.size() < 2) continue;
      ++bad_terms;
      std::string line = "term " + std::to_string(term) + " had " + std::to_string(leaders.size()) + " leaders:";
      for (const auto* l : leaders) line += " " + l->node + " (from " + format_seconds(l->time) + ")";
      r.fail(line);
    }
    r.summary = r.ok ? std::to_string(by_term.size()) + " terms led, each by one node (" +
                           std::to_string(seen.leaderships.size()) + " leaderships seen)"
                     : std::to_string(bad_terms) + " of " + std::to_string(by_term.size()) +
                           " terms had more than one leader";
    return r;
  }
};

// Raft §5.4.3: once a node applied the entry at an index, no node applies
// another entry there (nor the same node after a restart). The figure 8
// bug (committing an old-term entry by counting replicas) breaks it.
class StateMachineSafetyChecker : public Checker {
 public:
  std::string name() const override { return "state-machine-safety"; }
  CheckResult check(const History&, const FinalState& f) const override {
    CheckResult r;
    r.name = name();
    const auto& seen = f.raft;
    if (!seen.observed) return not_observed(r);
    size_t bad = 0;
    for (const auto& [index, variants] : seen.applied) {
      if (variants.size() < 2) continue;
      ++bad;
      std::string line = "index " + std::to_string(index) + " applied as different entries:";
      for (const auto& a : variants) {
        char hash[24];
        std::snprintf(hash, sizeof hash, "%016llx", static_cast<unsigned long long>(a.hash));
        line += " term " + std::to_string(a.term) + " #" + hash + " on " + a.node + " at " + format_seconds(a.time) + ";";
      }
      line.pop_back();
      r.fail(line);
    }
    r.summary = r.ok ? std::to_string(seen.applied.size()) + " log indexes applied, each as one entry (" +
                           std::to_string(seen.applications) + " applications on all nodes)"
                     : std::to_string(bad) + " of " + std::to_string(seen.applied.size()) +
                           " log indexes applied as different entries on different nodes or lives";
    return r;
  }
};

}  // namespace

std::unique_ptr<Checker> election_safety_checker() { return std::make_unique<ElectionSafetyChecker>(); }
std::unique_ptr<Checker> state_machine_safety_checker() { return std::make_unique<StateMachineSafetyChecker>(); }

}  // namespace stig::sim
