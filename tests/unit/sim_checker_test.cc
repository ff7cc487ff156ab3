// The checkers on small hand-written histories: each rule, and the
// allowances for unknown outcomes, independent of the core.
#include <gtest/gtest.h>

#include "sim/checker.h"

namespace stig::sim {
namespace {

class Builder {
 public:
  // Adds an invoke and its completion; returns the completion for tweaking.
  HistoryEvent& op(const std::string& process, const std::string& f, const std::string& key, const std::string& value,
                   int64_t start, int64_t end, EventType outcome) {
    HistoryEvent in;
    in.process = process;
    in.type = EventType::kInvoke;
    in.f = f;
    in.key = key;
    in.value = value;
    in.time = start;
    in.op = ++ops_;
    events_.push_back(in);
    HistoryEvent done = in;
    done.type = outcome;
    done.time = end;
    done.attempts = 1;
    events_.push_back(done);
    return events_.back();
  }
  HistoryEvent& invoke_of_last() { return events_[events_.size() - 2]; }
  void events_last_attempts(int n) { events_.back().attempts = n; }
  History build() {
    History h;
    for (auto& e : events_) h.add(e);
    return h;
  }

 private:
  std::vector<HistoryEvent> events_;
  uint64_t ops_ = 0;
};

CheckResult named(const History& h, const FinalState& f, const std::string& name) {
  for (auto& r : run_checkers(h, f))
    if (r.name == name) return r;
  ADD_FAILURE() << name;
  return {};
}

FinalState one_node() {
  FinalState f;
  f.nodes.push_back(NodeFinal{});
  f.nodes[0].node = "n1";
  f.converged_after_ms = 0;
  return f;
}

TEST(SimChecker, LostWriteUnlessACoveringContextWasWritten) {
  Builder b;
  b.op("c1", "put", "k", "v1", 0, 5, EventType::kOk).dot = Dot{"n1", 4};
  FinalState f = one_node();
  EXPECT_FALSE(named(b.build(), f, "lost-writes").ok);  // gone, nothing covered it
  f.nodes[0].registers["k"] = {SeenVersion{"v1", Dot{"n1", 4}, "a", 0}};
  EXPECT_TRUE(named(b.build(), f, "lost-writes").ok);
  // Superseded by a put (even of unknown outcome) whose context covers n1:4.
  f.nodes[0].registers.clear();
  b.op("c2", "put", "k", "v2", 6, 9, EventType::kInfo);
  b.invoke_of_last().context = VersionMap{{"n1", 4}};
  EXPECT_TRUE(named(b.build(), f, "lost-writes").ok);
  // A context that does not reach the dot does not excuse the loss.
  Builder c;
  c.op("c1", "put", "k", "v1", 0, 5, EventType::kOk).dot = Dot{"n1", 4};
  c.op("c2", "del", "k", "", 6, 9, EventType::kOk);
  c.invoke_of_last().context = VersionMap{{"n1", 3}, {"n2", 9}};
  EXPECT_FALSE(named(c.build(), one_node(), "lost-writes").ok);
}

TEST(SimChecker, AppliedOnceCountsEachAddOnceAndEachValueAsOneVersion) {
  Builder b;
  b.op("c1", "counter_add", "ctr", "", 0, 5, EventType::kOk).delta = 5;
  b.invoke_of_last().delta = 5;
  b.events_last_attempts(2);  // retried on another node
  b.op("c2", "counter_add", "ctr", "", 6, 9, EventType::kInfo).delta = 3;
  b.invoke_of_last().delta = 3;
  FinalState f = one_node();
  f.nodes[0].counters["ctr"] = 8;  // both once
  EXPECT_TRUE(named(b.build(), f, "applied-once").ok);
  f.nodes[0].counters["ctr"] = 5;  // the unknown one never applied
  EXPECT_TRUE(named(b.build(), f, "applied-once").ok);
  f.nodes[0].counters["ctr"] = 10;  // the retried add twice: the counters checker allows it, this one does not
  EXPECT_TRUE(named(b.build(), f, "counters").ok);
  EXPECT_FALSE(named(b.build(), f, "applied-once").ok);
  // One written value shown as two versions (two nodes applied the put).
  f.nodes[0].counters["ctr"] = 8;
  f.nodes[0].registers["k"] = {SeenVersion{"v1", Dot{"n1", 4}, "a", 0}, SeenVersion{"v1", Dot{"n2", 7}, "a", 0}};
  const CheckResult twice = named(b.build(), f, "applied-once");
  EXPECT_FALSE(twice.ok);
  ASSERT_FALSE(twice.findings.empty());
  EXPECT_NE(twice.findings[0].find("twice"), std::string::npos);
}

TEST(SimChecker, ValuesNobodyWroteAreReported) {
  Builder b;
  b.op("c1", "put", "k", "v1", 0, 5, EventType::kOk).dot = Dot{"n1", 1};
  FinalState f = one_node();
  f.nodes[0].registers["k"] = {SeenVersion{"v1", Dot{"n1", 1}, "a", 0}, SeenVersion{"zz", Dot{"n2", 1}, "a", 0}};
  const CheckResult r = named(b.build(), f, "lost-writes");
  EXPECT_FALSE(r.ok);
  EXPECT_NE(r.findings.at(0).find("'zz'"), std::string::npos);
}

TEST(SimChecker, CounterRangeAllowsRetriesAndUnknownOutcomes) {
  Builder b;
  b.op("c1", "counter_add", "x", "", 0, 5, EventType::kOk);
  b.invoke_of_last().delta = 5;
  b.events_last_attempts(2);
  b.op("c2", "counter_add", "x", "", 0, 5, EventType::kInfo);
  b.invoke_of_last().delta = -1;
  b.op("c3", "counter_add", "x", "", 0, 5, EventType::kFail);
  b.invoke_of_last().delta = 100;
  // 5 applied once or twice; -1 zero times or once; the failed 100 never: [4, 10].
  for (int64_t v : {3, 4, 10, 11}) {
    FinalState f = one_node();
    f.nodes[0].counters["x"] = v;
    EXPECT_EQ(named(b.build(), f, "counters").ok, v >= 4 && v <= 10) << v;
  }
}

TEST(SimChecker, SetsAreAddWinsAndInventNothing) {
  Builder b;
  b.op("c1", "set_rm", "s", "e", 0, 10, EventType::kOk);
  b.op("c2", "set_add", "s", "e", 11, 15, EventType::kOk);  // began after the remove finished
  FinalState f = one_node();
  EXPECT_FALSE(named(b.build(), f, "sets").ok);
  f.nodes[0].sets["s"] = {"e"};
  EXPECT_TRUE(named(b.build(), f, "sets").ok);
  f.nodes[0].sets["s"] = {"e", "ghost"};
  EXPECT_FALSE(named(b.build(), f, "sets").ok);
  // Concurrent with the remove: either outcome is fine.
  Builder c;
  c.op("c1", "set_rm", "s", "e", 0, 10, EventType::kOk);
  c.op("c2", "set_add", "s", "e", 5, 15, EventType::kOk);
  EXPECT_TRUE(named(c.build(), one_node(), "sets").ok);
  // A remove of unknown outcome may land any time: no obligation either.
  Builder d;
  d.op("c1", "set_rm", "s", "e", 0, 10, EventType::kInfo);
  d.op("c2", "set_add", "s", "e", 20, 25, EventType::kOk);
  EXPECT_TRUE(named(d.build(), one_node(), "sets").ok);
}

TEST(SimChecker, ConvergenceNamesTheDifferingKeys) {
  FinalState f;
  f.nodes.resize(2);
  f.nodes[0].node = "n1";
  f.nodes[1].node = "n2";
  f.nodes[0].digest = 1;
  f.nodes[1].digest = 2;
  f.nodes[0].counters["x"] = 3;
  f.nodes[1].counters["x"] = 4;
  const CheckResult r = named(History(), f, "convergence");
  EXPECT_FALSE(r.ok);
  ASSERT_GE(r.findings.size(), 2u);
  EXPECT_NE(r.findings[1].find("counter 'x' differs between n1 and n2"), std::string::npos);
  f.nodes[1].digest = 1;
  f.converged_after_ms = 250;
  EXPECT_TRUE(named(History(), f, "convergence").ok);
  EXPECT_EQ(named(History(), f, "convergence").summary, "converged 0.250s after the final heal");
}

}  // namespace
}  // namespace stig::sim
