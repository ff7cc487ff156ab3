// The linearizability checker on hand-made histories: what it must accept,
// what it must reject, unknown outcomes, transactions, and its budget.
#include "sim/linearizability.h"

#include <gtest/gtest.h>

#include <random>

namespace stig::sim {
namespace {

using Verdict = LinearizabilityResult::Verdict;

RegisterValue absent() { return {}; }
RegisterValue reg(std::string v, uint64_t version) { return {true, std::move(v), version}; }

StrongOp timed(uint64_t id, int64_t invoke, int64_t complete, StrongOp::Outcome outcome = StrongOp::Outcome::kOk) {
  StrongOp op;
  op.id = id;
  op.process = "c" + std::to_string(id);
  op.invoke = invoke;
  op.complete = outcome == StrongOp::Outcome::kUnknown ? StrongOp::kNeverReturned : complete;
  op.outcome = outcome;
  return op;
}

StrongOp put(uint64_t id, int64_t t0, int64_t t1, const std::string& key, const std::string& value,
             StrongOp::Outcome outcome = StrongOp::Outcome::kOk) {
  StrongOp op = timed(id, t0, t1, outcome);
  op.description = "put " + key + "=" + value;
  op.success.push_back({TxnOp::Kind::kPut, key, value});
  return op;
}

StrongOp get(uint64_t id, int64_t t0, int64_t t1, const std::string& key, RegisterValue seen) {
  StrongOp op = timed(id, t0, t1);
  op.description = "get " + key;
  op.success.push_back({TxnOp::Kind::kGet, key, ""});
  op.reads.push_back(std::move(seen));
  return op;
}

StrongOp cas(uint64_t id, int64_t t0, int64_t t1, const std::string& key, const std::string& from,
             const std::string& to, bool succeeded, StrongOp::Outcome outcome = StrongOp::Outcome::kOk) {
  StrongOp op = timed(id, t0, t1, outcome);
  op.description = "cas " + key + " " + from + "->" + to;
  op.compares.push_back({key, TxnCompare::Target::kValue, true, from, 0, true});
  op.success.push_back({TxnOp::Kind::kPut, key, to});
  op.succeeded = succeeded;
  return op;
}

StrongOp put_if_version(uint64_t id, int64_t t0, int64_t t1, const std::string& key, uint64_t version,
                        const std::string& value, bool succeeded) {
  StrongOp op = timed(id, t0, t1);
  op.description = "put " + key + "=" + value + " if version " + std::to_string(version);
  op.compares.push_back({key, TxnCompare::Target::kVersion, true, "", version, true});
  op.success.push_back({TxnOp::Kind::kPut, key, value});
  op.succeeded = succeeded;
  return op;
}

TEST(Linearizability, SequentialHistoryThatMatchesTheModelPasses) {
  auto r = check_linearizability({put(1, 0, 1, "k", "a"), get(2, 2, 3, "k", reg("a", 1)),
                                  cas(3, 4, 5, "k", "a", "b", true), get(4, 6, 7, "k", reg("b", 2)),
                                  cas(5, 8, 9, "k", "a", "c", false), put_if_version(6, 10, 11, "k", 2, "d", true),
                                  get(7, 12, 13, "k", reg("d", 3))});
  EXPECT_EQ(r.verdict, Verdict::kLinearizable) << (r.findings.empty() ? "" : r.findings[0]);
  EXPECT_EQ(r.groups, 1u);
}

TEST(Linearizability, AStaleReadAfterAWriteCompletedIsAViolation) {
  // The read starts after the put of b finished, yet sees a: what a leader
  // serving reads without ReadIndex can do after being deposed.
  auto r = check_linearizability(
      {put(1, 0, 1, "k", "a"), put(2, 2, 3, "k", "b"), get(3, 4, 5, "k", reg("a", 1))});
  ASSERT_EQ(r.verdict, Verdict::kViolation);
  ASSERT_EQ(r.findings.size(), 1u);
  EXPECT_NE(r.findings[0].find("keys k"), std::string::npos) << r.findings[0];
  EXPECT_NE(r.findings[0].find("get k"), std::string::npos) << r.findings[0];
}

TEST(Linearizability, ConcurrentOperationsMayBeOrderedEitherWay) {
  // The read overlaps the put: it may see before or after.
  EXPECT_EQ(check_linearizability({put(1, 0, 10, "k", "a"), get(2, 1, 5, "k", absent())}).verdict,
            Verdict::kLinearizable);
  EXPECT_EQ(check_linearizability({put(1, 0, 10, "k", "a"), get(2, 1, 5, "k", reg("a", 1))}).verdict,
            Verdict::kLinearizable);
  // Two reads in sequence cannot see a then absent again.
  EXPECT_EQ(check_linearizability(
                {put(1, 0, 10, "k", "a"), get(2, 1, 2, "k", reg("a", 1)), get(3, 3, 4, "k", absent())})
                .verdict,
            Verdict::kViolation);
}

TEST(Linearizability, TwoCasFromTheSameValueCannotBothSucceed) {
  auto r = check_linearizability(
      {put(1, 0, 1, "k", "0"), cas(2, 2, 6, "k", "0", "1", true), cas(3, 3, 7, "k", "0", "2", true)});
  EXPECT_EQ(r.verdict, Verdict::kViolation);
  // One of them refused is fine.
  r = check_linearizability(
      {put(1, 0, 1, "k", "0"), cas(2, 2, 6, "k", "0", "1", true), cas(3, 3, 7, "k", "0", "2", false)});
  EXPECT_EQ(r.verdict, Verdict::kLinearizable);
}

TEST(Linearizability, UnknownOutcomesMayOrMayNotHaveHappened) {
  // The unknown put of b may have happened (the read sees it)...
  EXPECT_EQ(check_linearizability({put(1, 0, 1, "k", "a"), put(2, 2, 0, "k", "b", StrongOp::Outcome::kUnknown),
                                   get(3, 10, 11, "k", reg("b", 2))})
                .verdict,
            Verdict::kLinearizable);
  // ...or not (the read sees a)...
  EXPECT_EQ(check_linearizability({put(1, 0, 1, "k", "a"), put(2, 2, 0, "k", "b", StrongOp::Outcome::kUnknown),
                                   get(3, 10, 11, "k", reg("a", 1))})
                .verdict,
            Verdict::kLinearizable);
  // ...but not before it was invoked.
  EXPECT_EQ(check_linearizability({put(1, 0, 1, "k", "a"), get(2, 2, 3, "k", reg("b", 2)),
                                   put(3, 5, 0, "k", "b", StrongOp::Outcome::kUnknown)})
                .verdict,
            Verdict::kViolation);
  // A failed operation never happened.
  StrongOp failed = put(2, 2, 3, "k", "b", StrongOp::Outcome::kFail);
  EXPECT_EQ(check_linearizability({put(1, 0, 1, "k", "a"), failed, get(3, 10, 11, "k", reg("b", 2))}).verdict,
            Verdict::kViolation);
}

TEST(Linearizability, VersionsCountWritesAndRestartAfterADelete) {
  StrongOp del = timed(3, 4, 5);
  del.description = "del k";
  del.success.push_back({TxnOp::Kind::kDelete, "k", ""});
  EXPECT_EQ(check_linearizability({put(1, 0, 1, "k", "a"), put(2, 2, 3, "k", "b"), del,
                                   put_if_version(4, 6, 7, "k", 0, "c", true), get(5, 8, 9, "k", reg("c", 1))})
                .verdict,
            Verdict::kLinearizable);
  EXPECT_EQ(check_linearizability({put(1, 0, 1, "k", "a"), put_if_version(2, 2, 3, "k", 0, "c", true)}).verdict,
            Verdict::kViolation);  // the key existed: "must not exist" cannot succeed
}

TEST(Linearizability, TransactionsLinkTheirKeysIntoOneGroup) {
  // A transfer: if x == 1 then x = 0, y = 1, atomically. A reader that sees
  // x = 0 and y absent (afterwards) caught a torn transaction.
  StrongOp txn = timed(2, 2, 3);
  txn.description = "txn move x->y";
  txn.compares.push_back({"x", TxnCompare::Target::kValue, true, "1", 0, true});
  txn.success = {{TxnOp::Kind::kPut, "x", "0"}, {TxnOp::Kind::kPut, "y", "1"}};
  StrongOp read = timed(3, 4, 5);
  read.description = "txn read x,y";
  read.success = {{TxnOp::Kind::kGet, "x", ""}, {TxnOp::Kind::kGet, "y", ""}};
  read.reads = {reg("0", 2), absent()};
  auto r = check_linearizability({put(1, 0, 1, "x", "1"), txn, read, put(4, 0, 1, "z", "independent")});
  EXPECT_EQ(r.verdict, Verdict::kViolation);
  EXPECT_EQ(r.groups, 2u);
  read.reads = {reg("0", 2), reg("1", 1)};
  EXPECT_EQ(check_linearizability({put(1, 0, 1, "x", "1"), txn, read}).verdict, Verdict::kLinearizable);
}

TEST(Linearizability, ManyConcurrentClientsStayTractable) {
  // 10 clients, 400 operations on 4 keys, generated from a real sequential
  // execution with overlapping intervals: linearizable by construction.
  std::mt19937_64 rng(7);
  std::map<std::string, RegisterValue> model;
  std::vector<StrongOp> ops;
  int64_t t = 0;
  for (uint64_t id = 1; id <= 400; ++id) {
    const std::string key = "k" + std::to_string(rng() % 4);
    RegisterValue& r = model[key];
    // The operation takes effect at t; its interval spans some neighbours.
    const int64_t t0 = t - static_cast<int64_t>(rng() % 5), t1 = t + static_cast<int64_t>(rng() % 5);
    switch (rng() % 3) {
      case 0: {
        const std::string v = std::to_string(id);
        ops.push_back(put(id, t0, t1, key, v));
        r = RegisterValue{true, v, r.exists ? r.version + 1 : 1};
        break;
      }
      case 1: ops.push_back(get(id, t0, t1, key, r)); break;
      default: {
        const std::string from = std::to_string(rng() % 2 ? id - 1 : id - 2);
        const bool ok = r.exists && r.value == from;
        ops.push_back(cas(id, t0, t1, key, from, std::to_string(id), ok));
        if (ok) r = RegisterValue{true, std::to_string(id), r.version + 1};
      }
    }
    t += 3;
  }
  auto r = check_linearizability(ops);
  EXPECT_EQ(r.verdict, Verdict::kLinearizable) << (r.findings.empty() ? "" : r.findings[0]);
  EXPECT_LT(r.steps, 100000u);
  // Corrupt one read in the middle: now it must fail.
  for (auto& op : ops)
    if (op.id > 200 && !op.reads.empty()) {
      op.reads[0].value += "-stale";
      break;
    }
  EXPECT_EQ(check_linearizability(ops).verdict, Verdict::kViolation);
}

TEST(Linearizability, ASearchOverBudgetIsInconclusiveNotAPass) {
  std::vector<StrongOp> ops;
  for (uint64_t id = 1; id <= 30; ++id) ops.push_back(put(id, 0, 100, "k", std::to_string(id)));
  ops.push_back(get(99, 200, 201, "k", reg("never written", 31)));
  LinearizabilityOptions o;
  o.max_steps_per_group = 1000;
  auto r = check_linearizability(ops, o);
  EXPECT_EQ(r.verdict, Verdict::kInconclusive);
  ASSERT_EQ(r.findings.size(), 1u);
  EXPECT_NE(r.findings[0].find("gave up"), std::string::npos);
}

}  // namespace
}  // namespace stig::sim
