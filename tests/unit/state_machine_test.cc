// The strong path's replicated state machine, entry by entry: KV and MVCC,
// transactions, fences, sessions, locks, dedup, snapshots, bad input and
// determinism.
#include "replication/strong/state_machine.h"

#include <random>

#include "replication/hash.h"

#include <gtest/gtest.h>

namespace stig::replication {
namespace {

// --- request builders -------------------------------------------------------

pb::StrongRequest Put(const std::string& key, const std::string& value) {
  pb::StrongRequest r;
  r.mutable_put()->set_key(key);
  r.mutable_put()->set_value(value);
  return r;
}
pb::StrongRequest PutExpect(const std::string& key, const std::string& value, uint64_t expected) {
  auto r = Put(key, value);
  r.mutable_put()->set_has_expected_version(true);
  r.mutable_put()->set_expected_version(expected);
  return r;
}
pb::StrongRequest PutFenced(const std::string& key, const std::string& value, const std::string& lock, uint64_t token) {
  auto r = Put(key, value);
  r.mutable_put()->mutable_fence()->set_lock(lock);
  r.mutable_put()->mutable_fence()->set_token(token);
  return r;
}
pb::StrongRequest Get(const std::string& key, uint64_t rev = 0, int64_t at_ms = 0) {
  pb::StrongRequest r;
  r.mutable_get()->set_key(key);
  r.mutable_get()->set_revision(rev);
  r.mutable_get()->set_at_ms(at_ms);
  return r;
}
pb::StrongRequest Del(const std::string& key) {
  pb::StrongRequest r;
  r.mutable_delete_()->set_key(key);
  return r;
}
pb::StrongRequest Cas(const std::string& key, const std::string& expected, const std::string& value) {
  pb::StrongRequest r;
  r.mutable_cas()->set_key(key);
  r.mutable_cas()->set_expected_value(expected);
  r.mutable_cas()->set_new_value(value);
  return r;
}
pb::StrongRequest Range(const std::string& prefix, uint32_t limit = 0, uint64_t rev = 0,
                        const std::string& after = "") {
  pb::StrongRequest r;
  r.mutable_range()->set_prefix(prefix);
  r.mutable_range()->set_limit(limit);
  r.mutable_range()->set_revision(rev);
  r.mutable_range()->set_start_after(after);
  return r;
}
pb::StrongRequest History(const std::string& key, uint32_t limit = 0, uint64_t before = 0) {
  pb::StrongRequest r;
  r.mutable_history()->set_key(key);
  r.mutable_history()->set_limit(limit);
  r.mutable_history()->set_before_revision(before);
  return r;
}
pb::StrongRequest Compact(uint64_t rev) {
  pb::StrongRequest r;
  r.mutable_compact()->set_revision(rev);
  return r;
}
pb::StrongRequest Grant(int64_t ttl) {
  pb::StrongRequest r;
  r.mutable_session_grant()->set_ttl_ms(ttl);
  return r;
}
pb::StrongRequest Keepalive(uint64_t id) {
  pb::StrongRequest r;
  r.mutable_session_keepalive()->set_session_id(id);
  return r;
}
pb::StrongRequest Revoke(uint64_t id) {
  pb::StrongRequest r;
  r.mutable_session_revoke()->set_session_id(id);
  return r;
}
pb::StrongRequest Acquire(const std::string& name, uint64_t session, int64_t wait_ms = 0) {
  pb::StrongRequest r;
  r.mutable_lock_acquire()->set_name(name);
  r.mutable_lock_acquire()->set_session_id(session);
  r.mutable_lock_acquire()->set_wait_ms(wait_ms);
  return r;
}
pb::StrongRequest Release(const std::string& name, uint64_t session, uint64_t token) {
  pb::StrongRequest r;
  r.mutable_lock_release()->set_name(name);
  r.mutable_lock_release()->set_session_id(session);
  r.mutable_lock_release()->set_token(token);
  return r;
}
pb::Compare Cmp(const std::string& key, pb::Compare::Target target, pb::Compare::Op op) {
  pb::Compare c;
  c.set_key(key);
  c.set_target(target);
  c.set_op(op);
  return c;
}
pb::TxnOp TPut(const std::string& key, const std::string& value) {
  pb::TxnOp op;
  op.mutable_put()->set_key(key);
  op.mutable_put()->set_value(value);
  return op;
}
pb::TxnOp TDel(const std::string& key) {
  pb::TxnOp op;
  op.mutable_delete_()->set_key(key);
  return op;
}
pb::TxnOp TGet(const std::string& key) {
  pb::TxnOp op;
  op.mutable_get()->set_key(key);
  return op;
}

// --- fixture ----------------------------------------------------------------

class StateMachineTest : public ::testing::Test {
 protected:
  explicit StateMachineTest(StateMachineOptions options = {}) : sm(options) {}

  pb::StrongCommand Command(const pb::StrongRequest& req, const std::string& client, uint64_t s) {
    pb::StrongCommand c;
    c.set_client_id(client);
    c.set_seq(s);
    c.set_agent("agent-" + client);
    c.set_leader_wall_ms(wall);
    *c.mutable_request() = req;
    return c;
  }
  ApplyResult Apply(const pb::StrongCommand& c) { return sm.apply(++index, c); }
  // Applies a request under a fresh seq of `client`.
  ApplyResult Run(const pb::StrongRequest& req, const std::string& client = "c1") {
    return Apply(Command(req, client, ++seq));
  }
  // Runs and returns the response, which must be there.
  pb::StrongResponse Do(const pb::StrongRequest& req, const std::string& client = "c1") {
    auto r = Run(req, client);
    EXPECT_TRUE(r.response.has_value());
    return r.response.value_or(pb::StrongResponse());
  }
  pb::StrongResponse Ok(const pb::StrongRequest& req, const std::string& client = "c1") {
    auto r = Do(req, client);
    EXPECT_EQ(r.error(), pb::OK) << r.error_message();
    return r;
  }
  pb::StrongResponse Read(const pb::StrongRequest& req) { return sm.read(req); }
  ApplyResult Expire(uint64_t session, uint64_t renewed_index = UINT64_MAX) {
    pb::StrongCommand c;
    c.set_leader_wall_ms(wall);
    c.mutable_expire_session()->set_session_id(session);
    c.mutable_expire_session()->set_renewed_index(renewed_index);
    return Apply(c);
  }
  ApplyResult Cancel(const std::string& client, uint64_t s) {
    pb::StrongCommand c;
    c.set_leader_wall_ms(wall);
    c.mutable_cancel_wait()->set_client_id(client);
    c.mutable_cancel_wait()->set_seq(s);
    return Apply(c);
  }
  uint64_t Session(int64_t ttl = 10000) { return Ok(Grant(ttl)).session_id(); }

  StateMachine sm;
  uint64_t index = 0;
  uint64_t seq = 0;
  int64_t wall = 1'000'000;
};

// --- KV ---------------------------------------------------------------------

TEST_F(StateMachineTest, PutCreatesVersionOneAndStampsAgentAndTime) {
  auto r = Ok(Put("k", "v1"), "alice");
  EXPECT_EQ(r.revision(), 1u);
  EXPECT_EQ(r.kv().version(), 1u);
  EXPECT_EQ(r.kv().create_revision(), 1u);
  EXPECT_EQ(r.kv().mod_revision(), 1u);
  EXPECT_EQ(r.kv().modified_by(), "agent-alice");
  EXPECT_EQ(r.kv().modified_at_ms(), wall);
  wall += 10;
  r = Ok(Put("k", "v2"), "bob");
  EXPECT_EQ(r.kv().version(), 2u);
  EXPECT_EQ(r.kv().create_revision(), 1u);
  EXPECT_EQ(r.kv().mod_revision(), 2u);
  auto g = Read(Get("k"));
  EXPECT_TRUE(g.found());
  EXPECT_EQ(g.kv().value(), "v2");
  EXPECT_EQ(g.kv().modified_by(), "agent-bob");
  EXPECT_EQ(g.revision(), 2u);
  EXPECT_FALSE(Read(Get("missing")).found());
}

TEST_F(StateMachineTest, ExpectedVersionPut) {
  Ok(PutExpect("k", "a", 0));  // 0 = must not exist
  auto r = Do(PutExpect("k", "b", 0));
  EXPECT_EQ(r.error(), pb::CONFLICT);
  EXPECT_NE(r.error_message().find("version 1"), std::string::npos) << r.error_message();
  EXPECT_EQ(Do(PutExpect("k", "b", 7)).error(), pb::CONFLICT);
  EXPECT_EQ(sm.revision(), 1u);  // refused writes change nothing
  EXPECT_EQ(Ok(PutExpect("k", "b", 1)).kv().version(), 2u);
  EXPECT_EQ(Do(PutExpect("new", "x", 3)).error(), pb::CONFLICT);
}

TEST_F(StateMachineTest, DeleteThenRecreateRestartsVersion) {
  Ok(Put("k", "a"));
  Ok(Put("k", "b"));
  auto d = Ok(Del("k"));
  EXPECT_TRUE(d.found());
  EXPECT_EQ(d.kv().value(), "b");
  EXPECT_EQ(d.revision(), 3u);
  EXPECT_FALSE(Read(Get("k")).found());
  auto again = Ok(Del("k"));  // nothing to delete: no new revision
  EXPECT_FALSE(again.found());
  EXPECT_EQ(again.revision(), 3u);
  auto p = Ok(Put("k", "c"));
  EXPECT_EQ(p.kv().version(), 1u);
  EXPECT_EQ(p.kv().create_revision(), 4u);
  pb::StrongRequest del = Del("k");
  del.mutable_delete_()->set_has_expected_version(true);
  del.mutable_delete_()->set_expected_version(5);
  EXPECT_EQ(Do(del).error(), pb::CONFLICT);
  del.mutable_delete_()->set_expected_version(1);
  EXPECT_TRUE(Ok(del).found());
}

TEST_F(StateMachineTest, CompareAndSwap) {
  EXPECT_EQ(Do(Cas("k", "a", "b")).error(), pb::CONFLICT);  // missing key
  Ok(Put("k", "a"));
  auto r = Do(Cas("k", "x", "b"));
  EXPECT_EQ(r.error(), pb::CONFLICT);
  EXPECT_NE(r.error_message().find("not the expected value"), std::string::npos);
  r = Ok(Cas("k", "a", "b"));
  EXPECT_EQ(r.kv().value(), "b");
  EXPECT_EQ(r.kv().version(), 2u);
  EXPECT_EQ(Read(Get("k")).kv().value(), "b");
}

// --- MVCC -------------------------------------------------------------------

TEST_F(StateMachineTest, ReadsAtRevisionAndAtTime) {
  wall = 1000;
  Ok(Put("k", "v1"));  // rev 1 at 1000
  wall = 2000;
  Ok(Put("k", "v2"));  // rev 2 at 2000
  wall = 3000;
  Ok(Del("k"));  // rev 3 at 3000
  EXPECT_EQ(Read(Get("k", 1)).kv().value(), "v1");
  EXPECT_EQ(Read(Get("k", 2)).kv().value(), "v2");
  EXPECT_FALSE(Read(Get("k", 3)).found());
  EXPECT_FALSE(Read(Get("k", 0, 999)).found());  // before anything
  EXPECT_EQ(Read(Get("k", 0, 999)).revision(), 0u);
  EXPECT_EQ(Read(Get("k", 0, 1000)).kv().value(), "v1");
  EXPECT_EQ(Read(Get("k", 0, 2999)).kv().value(), "v2");
  EXPECT_EQ(Read(Get("k", 0, 2999)).revision(), 2u);
  EXPECT_FALSE(Read(Get("k", 0, 5000)).found());
  EXPECT_EQ(Read(Get("k", 4)).error(), pb::BAD_REQUEST);  // the future
  EXPECT_EQ(Read(Get("k", 1, 1000)).error(), pb::BAD_REQUEST);
  EXPECT_EQ(Read(Get("k", 0, -5)).error(), pb::BAD_REQUEST);
}

TEST_F(StateMachineTest, WallTimeIsMonotonicUnderALeaderClockJumpBack) {
  wall = 5000;
  Ok(Put("a", "1"));
  wall = 3000;  // a new leader whose clock is behind
  auto r = Ok(Put("b", "2"));
  EXPECT_EQ(r.kv().modified_at_ms(), 5000);
  EXPECT_EQ(sm.last_wall_ms(), 5000);
  wall = 6000;
  Ok(Put("c", "3"));
  // As of 5000 both a and b exist; the jump back did not reorder them.
  EXPECT_TRUE(Read(Get("a", 0, 5000)).found());
  EXPECT_TRUE(Read(Get("b", 0, 5000)).found());
  EXPECT_FALSE(Read(Get("c", 0, 5000)).found());
}

TEST_F(StateMachineTest, HistoryListsVersionsNewestFirst) {
  Ok(Put("k", "a"));
  Ok(Put("other", "x"));
  Ok(Put("k", "b"));
  Ok(Del("k"));
  Ok(Put("k", "c"));
  auto h = Read(History("k"));
  ASSERT_EQ(h.kvs_size(), 4);
  EXPECT_EQ(h.kvs(0).value(), "c");
  EXPECT_EQ(h.kvs(0).mod_revision(), 5u);
  EXPECT_TRUE(h.kvs(1).deleted());
  EXPECT_EQ(h.kvs(2).value(), "b");
  EXPECT_EQ(h.kvs(3).value(), "a");
  EXPECT_FALSE(h.more());
  auto page = Read(History("k", 2));
  EXPECT_EQ(page.kvs_size(), 2);
  EXPECT_TRUE(page.more());
  auto older = Read(History("k", 0, 4));
  ASSERT_EQ(older.kvs_size(), 2);
  EXPECT_EQ(older.kvs(0).value(), "b");
  EXPECT_EQ(Read(History("none")).kvs_size(), 0);
}

TEST_F(StateMachineTest, RangeByPrefixAndKeyRange) {
  for (const char* k : {"a/1", "a/2", "a/3", "b/1", "a"}) Ok(Put(k, "v"));
  Ok(Del("a/2"));
  auto r = Read(Range("a/"));
  ASSERT_EQ(r.kvs_size(), 2);
  EXPECT_EQ(r.kvs(0).key(), "a/1");
  EXPECT_EQ(r.kvs(1).key(), "a/3");
  EXPECT_EQ(Read(Range("")).kvs_size(), 4);
  pb::StrongRequest kr;
  kr.mutable_range()->set_start("a/2");
  kr.mutable_range()->set_end("b/1");
  r = Read(kr);
  ASSERT_EQ(r.kvs_size(), 1);
  EXPECT_EQ(r.kvs(0).key(), "a/3");
  kr.mutable_range()->set_end("a/0");
  EXPECT_EQ(Read(kr).error(), pb::BAD_REQUEST);
  kr.mutable_range()->set_prefix("a");
  EXPECT_EQ(Read(kr).error(), pb::BAD_REQUEST);
  // A prefix of 0xff bytes ranges to the end.
  Ok(Put(std::string("\xff\xff", 2) + "x", "v"));
  EXPECT_EQ(Read(Range(std::string("\xff\xff", 2))).kvs_size(), 1);
}

TEST_F(StateMachineTest, PaginationStaysConsistentAtOneRevisionWhileWritesContinue) {
  for (int i = 0; i < 10; ++i) Ok(Put("p/" + std::to_string(i), "v0"));
  auto first = Read(Range("p/", 3));
  ASSERT_EQ(first.kvs_size(), 3);
  EXPECT_TRUE(first.more());
  const uint64_t rev = first.revision();
  std::vector<std::string> seen;
  for (const auto& kv : first.kvs()) seen.push_back(kv.key());
  std::string after = first.next_start_after();
  int writes = 0;
  while (true) {
    // Writes between pages: new keys, updates and deletes.
    Ok(Put("p/" + std::to_string(writes) + "x", "new"));
    Ok(Put("p/9", "v" + std::to_string(++writes)));
    Ok(Del("p/5"));
    auto page = Read(Range("p/", 3, rev, after));
    ASSERT_EQ(page.error(), pb::OK);
    EXPECT_EQ(page.revision(), rev);
    for (const auto& kv : page.kvs()) {
      seen.push_back(kv.key());
      EXPECT_EQ(kv.value(), "v0");
    }
    if (!page.more()) break;
    after = page.next_start_after();
  }
  ASSERT_EQ(seen.size(), 10u);
  for (int i = 0; i < 10; ++i) EXPECT_EQ(seen[i], "p/" + std::to_string(i));
}

TEST_F(StateMachineTest, CompactionRefusesOlderReadsAndKeepsTheVisibleVersion) {
  wall = 100;
  Ok(Put("k", "a"));  // 1
  wall = 200;
  Ok(Put("k", "b"));  // 2
  wall = 300;
  Ok(Put("gone", "x"));  // 3
  wall = 400;
  Ok(Del("gone"));  // 4
  wall = 500;
  Ok(Put("k", "c"));  // 5
  EXPECT_EQ(Do(Compact(9)).error(), pb::BAD_REQUEST);
  EXPECT_EQ(Do(Compact(0)).error(), pb::BAD_REQUEST);
  auto c = Ok(Compact(4));
  EXPECT_EQ(c.compact_revision(), 4u);
  EXPECT_EQ(sm.compact_revision(), 4u);
  EXPECT_EQ(Do(Compact(3)).error(), pb::COMPACTED);
  EXPECT_EQ(Read(Get("k", 3)).error(), pb::COMPACTED);
  EXPECT_EQ(Read(Get("k", 4)).kv().value(), "b");  // at the compaction point: still readable
  EXPECT_EQ(Read(Get("k", 0, 150)).error(), pb::COMPACTED);
  EXPECT_EQ(Read(Get("k", 0, 450)).kv().value(), "b");
  EXPECT_EQ(Read(Range("", 0, 3)).error(), pb::COMPACTED);
  auto h = Read(History("k"));
  ASSERT_EQ(h.kvs_size(), 2);  // c and b; a is gone
  EXPECT_EQ(h.compact_revision(), 4u);
  EXPECT_EQ(Read(History("gone")).kvs_size(), 0);
  EXPECT_EQ(sm.store().key_count(), 1u);
}

class StateMachineRetentionTest : public StateMachineTest {
 protected:
  static StateMachineOptions Options() {
    StateMachineOptions o;
    o.history_retention_revisions = 10;
    return o;
  }
  StateMachineRetentionTest() : StateMachineTest(Options()) {}
};

TEST_F(StateMachineRetentionTest, RetentionCompactsDeterministicallyAtApplyTime) {
  for (int i = 0; i < 100; ++i) {
    Ok(Put("k", std::to_string(i)));
    ASSERT_GE(sm.revision() - sm.compact_revision(), std::min<uint64_t>(sm.revision(), 10));
    ASSERT_LE(sm.revision() - sm.compact_revision(), 20u);
  }
  EXPECT_GT(sm.compact_revision(), 0u);
  EXPECT_EQ(Read(Get("k", sm.revision() - 10)).error(), pb::OK);
  EXPECT_EQ(Read(Get("k", sm.compact_revision() - 1)).error(), pb::COMPACTED);
  EXPECT_LE(Read(History("k", 1000)).kvs_size(), 21);
}

// --- transactions -------------------------------------------------------------

TEST_F(StateMachineTest, TxnRunsOneBranchAtomicallyAtOneRevision) {
  Ok(Put("stock", "1"));
  Ok(Put("x", "old"));
  pb::StrongRequest t;
  auto* txn = t.mutable_txn();
  auto c = Cmp("stock", pb::Compare::VALUE, pb::Compare::EQUAL);
  c.set_value("1");
  *txn->add_compare() = c;
  auto v = Cmp("stock", pb::Compare::VERSION, pb::Compare::EQUAL);
  v.set_number(1);
  *txn->add_compare() = v;
  *txn->add_success() = TPut("stock", "0");
  *txn->add_success() = TPut("order", "reserved");
  *txn->add_success() = TDel("x");
  *txn->add_success() = TGet("order");  // sees the put above
  *txn->add_failure() = TGet("stock");
  auto r = Ok(t);
  EXPECT_TRUE(r.succeeded());
  EXPECT_EQ(r.revision(), 3u);  // one revision for the whole txn
  ASSERT_EQ(r.results_size(), 4);
  EXPECT_EQ(r.results(0).kv().mod_revision(), 3u);
  EXPECT_EQ(r.results(1).kv().mod_revision(), 3u);
  EXPECT_TRUE(r.results(2).found());
  EXPECT_TRUE(r.results(3).found());
  EXPECT_EQ(r.results(3).kv().value(), "reserved");
  EXPECT_EQ(Read(Get("stock")).kv().value(), "0");
  EXPECT_FALSE(Read(Get("x")).found());
  // Same txn again: compares fail, the failure branch runs, nothing is written.
  r = Ok(t);
  EXPECT_FALSE(r.succeeded());
  EXPECT_EQ(r.revision(), 3u);
  ASSERT_EQ(r.results_size(), 1);
  EXPECT_EQ(r.results(0).kv().value(), "0");
}

TEST_F(StateMachineTest, TxnComparesEveryTarget) {
  Ok(Put("k", "m"));  // version 1, mod revision 1
  auto run = [&](pb::Compare c) {
    pb::StrongRequest t;
    *t.mutable_txn()->add_compare() = c;
    return Ok(t).succeeded();
  };
  auto c = Cmp("k", pb::Compare::VALUE, pb::Compare::LESS);
  c.set_value("n");
  EXPECT_TRUE(run(c));
  c.set_op(pb::Compare::GREATER);
  EXPECT_FALSE(run(c));
  c.set_op(pb::Compare::NOT_EQUAL);
  EXPECT_TRUE(run(c));
  c = Cmp("k", pb::Compare::MOD_REVISION, pb::Compare::EQUAL);
  c.set_number(1);
  EXPECT_TRUE(run(c));
  c = Cmp("k", pb::Compare::VERSION, pb::Compare::GREATER);
  c.set_number(0);
  EXPECT_TRUE(run(c));
  c = Cmp("k", pb::Compare::EXISTS, pb::Compare::EQUAL);
  c.set_exists(true);
  EXPECT_TRUE(run(c));
  c = Cmp("missing", pb::Compare::EXISTS, pb::Compare::EQUAL);
  c.set_exists(false);
  EXPECT_TRUE(run(c));
  c = Cmp("missing", pb::Compare::VERSION, pb::Compare::EQUAL);
  c.set_number(0);
  EXPECT_TRUE(run(c));
  c = Cmp("missing", pb::Compare::VALUE, pb::Compare::NOT_EQUAL);  // a missing key has no value
  EXPECT_FALSE(run(c));
}

TEST_F(StateMachineTest, MalformedTxnIsRefusedAndChangesNothing) {
  Ok(Put("k", "v"));
  const std::string before = sm.snapshot();
  auto refused = [&](const pb::StrongRequest& t) {
    auto r = Do(t);
    EXPECT_EQ(r.error(), pb::BAD_REQUEST);
    EXPECT_EQ(r.error_message().find('\n'), std::string::npos);
    return r.error_message();
  };
  pb::StrongRequest dup;
  *dup.mutable_txn()->add_success() = TPut("a", "1");
  *dup.mutable_txn()->add_success() = TDel("a");
  EXPECT_NE(refused(dup).find("more than once"), std::string::npos);
  pb::StrongRequest many;
  for (int i = 0; i < 129; ++i) *many.mutable_txn()->add_success() = TPut("k" + std::to_string(i), "v");
  refused(many);
  pb::StrongRequest unset;
  unset.mutable_txn()->add_failure();
  refused(unset);
  pb::StrongRequest bad_target;
  auto c = Cmp("k", pb::Compare::VALUE, pb::Compare::EQUAL);
  c.set_target(static_cast<pb::Compare::Target>(42));
  *bad_target.mutable_txn()->add_compare() = c;
  refused(bad_target);
  pb::StrongRequest exists_less;
  *exists_less.mutable_txn()->add_compare() = Cmp("k", pb::Compare::EXISTS, pb::Compare::LESS);
  refused(exists_less);
  pb::StrongRequest fenced_op;
  auto op = TPut("a", "1");
  op.mutable_put()->mutable_fence()->set_lock("L");
  *fenced_op.mutable_txn()->add_success() = op;
  refused(fenced_op);
  pb::StrongRequest get_rev;
  auto g = TGet("k");
  g.mutable_get()->set_revision(1);
  *get_rev.mutable_txn()->add_success() = g;
  refused(get_rev);
  pb::StrongRequest bad_value;  // checked in the branch that would not run, too
  *bad_value.mutable_txn()->add_failure() = TPut("a", std::string((1 << 20) + 1, 'x'));
  refused(bad_value);
  // Nothing changed but the dedup table: compare the store.
  EXPECT_EQ(sm.revision(), 1u);
  EXPECT_EQ(Read(Range("")).kvs_size(), 1);
  (void)before;
}

// --- sessions, locks, fences ----------------------------------------------------

TEST_F(StateMachineTest, SessionGrantKeepaliveRevokeAndBadTtls) {
  auto r = Do(Grant(0));
  EXPECT_EQ(r.error(), pb::BAD_REQUEST);
  EXPECT_NE(r.error_message().find("ttl_ms 0"), std::string::npos);
  EXPECT_EQ(Do(Grant(-1)).error(), pb::BAD_REQUEST);
  EXPECT_EQ(Do(Grant(int64_t{1} << 62)).error(), pb::BAD_REQUEST);
  EXPECT_EQ(Do(Grant(24LL * 3600 * 1000 + 1)).error(), pb::BAD_REQUEST);
  auto res = Run(Grant(5000));
  ASSERT_TRUE(res.response);
  const uint64_t s = res.response->session_id();
  EXPECT_EQ(res.response->ttl_ms(), 5000);
  ASSERT_EQ(res.lease.sessions_renewed.size(), 1u);
  EXPECT_EQ(res.lease.sessions_renewed[0].renewed_index, index);
  auto k = Run(Keepalive(s));
  EXPECT_EQ(k.response->error(), pb::OK);
  ASSERT_EQ(k.lease.sessions_renewed.size(), 1u);
  EXPECT_EQ(Do(Keepalive(999)).error(), pb::NOT_FOUND);
  auto rv = Run(Revoke(s));
  EXPECT_EQ(rv.response->error(), pb::OK);
  EXPECT_EQ(rv.lease.sessions_ended, std::vector<uint64_t>{s});
  EXPECT_EQ(Do(Keepalive(s)).error(), pb::SESSION_EXPIRED);
  EXPECT_EQ(Do(Revoke(s)).error(), pb::SESSION_EXPIRED);
  EXPECT_EQ(Do(Revoke(0)).error(), pb::NOT_FOUND);
}

TEST_F(StateMachineTest, LockAcquireTryLockReacquireRelease) {
  const uint64_t a = Session(), b = Session();
  auto g = Ok(Acquire("L", a));
  EXPECT_GT(g.token(), 0u);
  EXPECT_EQ(g.holder_session(), a);
  auto busy = Do(Acquire("L", b));  // try-lock
  EXPECT_EQ(busy.error(), pb::BUSY);
  EXPECT_EQ(busy.holder_session(), a);
  // Reacquire by the holder: the same token (etcd's choice).
  EXPECT_EQ(Ok(Acquire("L", a)).token(), g.token());
  EXPECT_EQ(Do(Release("L", b, g.token())).error(), pb::CONFLICT);
  EXPECT_EQ(Do(Release("L", a, g.token() + 1)).error(), pb::CONFLICT);
  EXPECT_EQ(Do(Release("nope", a, 1)).error(), pb::NOT_FOUND);
  EXPECT_EQ(Do(Release("L", 77, g.token())).error(), pb::NOT_FOUND);
  Ok(Release("L", a, g.token()));
  EXPECT_EQ(sm.locks().lock("L"), nullptr);
  // Tokens never repeat, even after the lock was freed and forgotten.
  auto g2 = Ok(Acquire("L", b));
  EXPECT_GT(g2.token(), g.token());
  Ok(Release("L", b, g2.token()));
  EXPECT_GT(Ok(Acquire("L", a)).token(), g2.token());
  EXPECT_EQ(Do(Acquire("L", 99)).error(), pb::NOT_FOUND);
  EXPECT_EQ(Do(Acquire("", a)).error(), pb::BAD_REQUEST);
  EXPECT_EQ(Do(Acquire("L", a, -1)).error(), pb::BAD_REQUEST);
  EXPECT_EQ(Do(Acquire("L", a, int64_t{1} << 60)).error(), pb::BAD_REQUEST);
}

TEST_F(StateMachineTest, ContendedAcquiresAreGrantedInFifoOrder) {
  const uint64_t h = Session(), w1 = Session(), w2 = Session(), w3 = Session();
  const uint64_t token = Ok(Acquire("L", h)).token();
  std::vector<uint64_t> seqs;
  for (uint64_t s : {w1, w2, w3}) {
    auto r = Run(Acquire("L", s, 5000), "client" + std::to_string(s));
    EXPECT_EQ(r.kind, ApplyResult::Kind::kWaiting);
    EXPECT_FALSE(r.response.has_value());
    ASSERT_EQ(r.lease.waits_started.size(), 1u);
    EXPECT_EQ(r.lease.waits_started[0].wait_ms, 5000);
    seqs.push_back(seq);
  }
  uint64_t last = token;
  uint64_t holder = h;
  for (int i = 0; i < 3; ++i) {
    auto rel = Run(Release("L", holder, last));
    ASSERT_EQ(rel.response->error(), pb::OK);
    ASSERT_EQ(rel.completions.size(), 1u);
    const auto& c = rel.completions[0];
    const uint64_t expected = std::vector<uint64_t>{w1, w2, w3}[i];
    EXPECT_EQ(c.request.client_id, "client" + std::to_string(expected));
    EXPECT_EQ(c.request.seq, seqs[i]);
    EXPECT_EQ(c.response.error(), pb::OK);
    EXPECT_EQ(c.response.holder_session(), expected);
    EXPECT_GT(c.response.token(), last);
    EXPECT_EQ(rel.lease.waits_ended.size(), 1u);
    last = c.response.token();
    holder = expected;
  }
}

TEST_F(StateMachineTest, FenceRefusesAStaleTokenAfterTheLockMovedOn) {
  const uint64_t a = Session(), b = Session();
  const uint64_t ta = Ok(Acquire("L", a)).token();
  Ok(PutFenced("shared", "from a", "L", ta));
  Run(Acquire("L", b, 1000), "cb");
  auto exp = Expire(a);  // a's session expires: b is granted
  ASSERT_EQ(exp.completions.size(), 1u);
  const uint64_t tb = exp.completions[0].response.token();
  EXPECT_GT(tb, ta);
  auto stale = Do(PutFenced("shared", "late write from a", "L", ta));
  EXPECT_EQ(stale.error(), pb::CONFLICT);
  EXPECT_NE(stale.error_message().find("stale"), std::string::npos) << stale.error_message();
  Ok(PutFenced("shared", "from b", "L", tb));
  EXPECT_EQ(Read(Get("shared")).kv().value(), "from b");
  auto unknown = Do(PutFenced("shared", "x", "nobody", 1));
  EXPECT_EQ(unknown.error(), pb::CONFLICT);
  EXPECT_EQ(unknown.error_message(), "fence names lock nobody which nobody holds");
  // Fences on delete, cas and txn.
  pb::StrongRequest del = Del("shared");
  *del.mutable_delete_()->mutable_fence() = PutFenced("k", "v", "L", ta).put().fence();
  EXPECT_EQ(Do(del).error(), pb::CONFLICT);
  pb::StrongRequest cas = Cas("shared", "from b", "y");
  *cas.mutable_cas()->mutable_fence() = del.delete_().fence();
  EXPECT_EQ(Do(cas).error(), pb::CONFLICT);
  pb::StrongRequest t;
  *t.mutable_txn()->add_success() = TPut("shared", "z");
  *t.mutable_txn()->mutable_fence() = del.delete_().fence();
  EXPECT_EQ(Do(t).error(), pb::CONFLICT);
  t.mutable_txn()->mutable_fence()->set_token(tb);
  EXPECT_TRUE(Ok(t).succeeded());
}

TEST_F(StateMachineTest, AWaiterWhoseSessionExpiredIsNeverGranted) {
  const uint64_t h = Session(), w = Session(), x = Session();
  const uint64_t token = Ok(Acquire("L", h)).token();
  Run(Acquire("L", w, 5000), "cw");
  const uint64_t wseq = seq;
  Run(Acquire("L", x, 5000), "cx");
  auto e = Expire(w);  // the waiter's session expires while it waits
  ASSERT_EQ(e.completions.size(), 1u);
  EXPECT_EQ(e.completions[0].request, (RequestId{"cw", wseq}));
  EXPECT_EQ(e.completions[0].response.error(), pb::SESSION_EXPIRED);
  EXPECT_EQ(e.lease.sessions_ended, std::vector<uint64_t>{w});
  auto rel = Run(Release("L", h, token));
  ASSERT_EQ(rel.completions.size(), 1u);
  EXPECT_EQ(rel.completions[0].response.holder_session(), x);  // w skipped
  EXPECT_EQ(sm.locks().lock("L")->holder, x);
  // The dropped wait's answer is remembered for a retry.
  auto retry = Apply(Command(Acquire("L", w, 5000), "cw", wseq));
  EXPECT_EQ(retry.kind, ApplyResult::Kind::kDuplicate);
  EXPECT_EQ(retry.response->error(), pb::SESSION_EXPIRED);
}

TEST_F(StateMachineTest, ExpiryReleasesLocksUnlessRenewedAfterTheDecision) {
  const uint64_t a = Session(), b = Session();
  Ok(Acquire("L1", a));
  Ok(Acquire("L2", a));
  Run(Acquire("L2", b, 1000), "cb");
  const uint64_t decided_at = index;
  Ok(Keepalive(a));  // committed after the leader decided to expire
  auto ignored = Expire(a, decided_at);
  EXPECT_EQ(ignored.kind, ApplyResult::Kind::kInternal);
  EXPECT_EQ(ignored.response->error(), pb::CONFLICT);
  EXPECT_NE(sm.locks().session(a), nullptr);
  auto e = Expire(a, index);
  EXPECT_EQ(e.response->error(), pb::OK);
  EXPECT_EQ(sm.locks().session(a), nullptr);
  EXPECT_EQ(sm.locks().lock("L1"), nullptr);
  EXPECT_EQ(sm.locks().lock("L2")->holder, b);
  ASSERT_EQ(e.completions.size(), 1u);
  EXPECT_EQ(e.completions[0].response.holder_session(), b);
  EXPECT_EQ(Expire(a).response->error(), pb::SESSION_EXPIRED);
  EXPECT_EQ(Expire(12345).response->error(), pb::NOT_FOUND);
}

TEST_F(StateMachineTest, CancelWaitAnswersBusyAndARetryGetsTheSameAnswer) {
  const uint64_t h = Session(), w = Session();
  Ok(Acquire("L", h));
  Run(Acquire("L", w, 200), "cw");
  const uint64_t wseq = seq;
  auto c = Cancel("cw", wseq);
  ASSERT_EQ(c.completions.size(), 1u);
  EXPECT_EQ(c.completions[0].response.error(), pb::BUSY);
  EXPECT_EQ(c.lease.waits_ended.size(), 1u);
  EXPECT_EQ(Cancel("cw", wseq).response->error(), pb::NOT_FOUND);  // already gone: a no-op
  auto retry = Apply(Command(Acquire("L", w, 200), "cw", wseq));
  EXPECT_EQ(retry.kind, ApplyResult::Kind::kDuplicate);
  EXPECT_EQ(retry.response->error(), pb::BUSY);
  EXPECT_EQ(sm.locks().waiters(), 0u);
}

TEST_F(StateMachineTest, ARetryOfAWaitingAcquireRejoinsWithoutQueueingTwice) {
  const uint64_t h = Session(), w = Session();
  const uint64_t token = Ok(Acquire("L", h)).token();
  auto first = Run(Acquire("L", w, 5000), "cw");
  EXPECT_EQ(first.kind, ApplyResult::Kind::kWaiting);
  const uint64_t wseq = seq;
  auto retry = Apply(Command(Acquire("L", w, 5000), "cw", wseq));  // through a new leader
  EXPECT_EQ(retry.kind, ApplyResult::Kind::kRejoined);
  EXPECT_FALSE(retry.response.has_value());
  EXPECT_TRUE(retry.lease.waits_started.empty());
  EXPECT_EQ(sm.locks().lock("L")->queue.size(), 1u);
  auto rel = Run(Release("L", h, token));
  ASSERT_EQ(rel.completions.size(), 1u);
  auto later = Apply(Command(Acquire("L", w, 5000), "cw", wseq));
  EXPECT_EQ(later.kind, ApplyResult::Kind::kDuplicate);
  EXPECT_EQ(later.response->SerializeAsString(), rel.completions[0].response.SerializeAsString());
}

TEST_F(StateMachineTest, WaitQueuesAreBounded) {
  StateMachineOptions o;
  o.max_waiters_per_lock = 2;
  o.max_waiters_total = 3;
  sm = StateMachine(o);
  const uint64_t h = Session();
  Ok(Acquire("L", h));
  Ok(Acquire("M", h));
  std::vector<uint64_t> w;
  for (int i = 0; i < 5; ++i) w.push_back(Session());
  EXPECT_EQ(Run(Acquire("L", w[0], 100), "a").kind, ApplyResult::Kind::kWaiting);
  EXPECT_EQ(Run(Acquire("L", w[1], 100), "b").kind, ApplyResult::Kind::kWaiting);
  auto full = Do(Acquire("L", w[2], 100), "c");
  EXPECT_EQ(full.error(), pb::BUSY);
  EXPECT_NE(full.error_message().find("full"), std::string::npos);
  EXPECT_EQ(Run(Acquire("M", w[2], 100), "c").kind, ApplyResult::Kind::kWaiting);
  EXPECT_EQ(Do(Acquire("M", w[3], 100), "d").error(), pb::BUSY);  // total bound
  EXPECT_EQ(Do(Acquire("L", w[0], 100), "e").error(), pb::BUSY);  // already waiting
}

TEST_F(StateMachineTest, DeadlockBetweenTwoSessionsIsRefused) {
  const uint64_t a = Session(), b = Session();
  Ok(Acquire("L1", a));
  Ok(Acquire("L2", b));
  EXPECT_EQ(Run(Acquire("L2", a, 1000), "ca").kind, ApplyResult::Kind::kWaiting);
  auto r = Do(Acquire("L1", b, 1000), "cb");
  EXPECT_EQ(r.error(), pb::DEADLOCK);
  EXPECT_EQ(sm.locks().lock("L1")->queue.size(), 0u);
}

TEST_F(StateMachineTest, DeadlockAcrossThreeSessionsIsRefused) {
  const uint64_t a = Session(), b = Session(), c = Session();
  Ok(Acquire("L1", a));
  Ok(Acquire("L2", b));
  Ok(Acquire("L3", c));
  EXPECT_EQ(Run(Acquire("L2", a, 1000), "ca").kind, ApplyResult::Kind::kWaiting);  // a -> b
  EXPECT_EQ(Run(Acquire("L3", b, 1000), "cb").kind, ApplyResult::Kind::kWaiting);  // b -> c
  EXPECT_EQ(Do(Acquire("L1", c, 1000), "cc").error(), pb::DEADLOCK);              // c -> a closes it
  // A wait that closes no cycle is fine.
  const uint64_t d = Session();
  EXPECT_EQ(Run(Acquire("L1", d, 1000), "cd").kind, ApplyResult::Kind::kWaiting);
}

TEST_F(StateMachineTest, DeadlockThroughAWaiterAheadInTheQueueIsRefused) {
  // x holds L2; b queues for L2 first, then a (behind b). b waits for L1,
  // held by a: once x releases, b holds L2 and waits for a, a waits for b.
  const uint64_t x = Session(), a = Session(), b = Session();
  Ok(Acquire("L2", x));
  Ok(Acquire("L1", a));
  EXPECT_EQ(Run(Acquire("L2", b, 1000), "cb").kind, ApplyResult::Kind::kWaiting);
  EXPECT_EQ(Run(Acquire("L1", b, 1000), "cb").kind, ApplyResult::Kind::kWaiting);  // b -> a
  EXPECT_EQ(Do(Acquire("L2", a, 1000), "ca").error(), pb::DEADLOCK);              // a -> b (ahead)
}

TEST_F(StateMachineTest, SessionsAndLocksAreBounded) {
  StateMachineOptions o;
  o.max_sessions = 2;
  o.max_locks = 1;
  sm = StateMachine(o);
  const uint64_t a = Session(), b = Session();
  EXPECT_EQ(Do(Grant(1000)).error(), pb::BUSY);
  Ok(Acquire("L", a));
  EXPECT_EQ(Do(Acquire("M", b)).error(), pb::BUSY);
  Ok(Revoke(b));
  EXPECT_NE(Ok(Grant(1000)).session_id(), b);  // ids are never reused
}

TEST_F(StateMachineTest, PagesAreCappedInEntriesAndBytes) {
  StateMachineOptions o;
  o.max_range_limit = 5;
  o.max_history_limit = 3;
  o.max_result_bytes = 10000;
  sm = StateMachine(o);
  for (int i = 0; i < 8; ++i) Ok(Put("k" + std::to_string(i), "small"));
  auto r = Read(Range("k", 100));
  EXPECT_EQ(r.kvs_size(), 5);
  EXPECT_TRUE(r.more());
  for (int i = 0; i < 3; ++i) Ok(Put("big" + std::to_string(i), std::string(8000, 'x')));
  r = Read(Range("big"));
  EXPECT_EQ(r.kvs_size(), 1);  // one entry even when it alone is near the cap
  EXPECT_TRUE(r.more());
  EXPECT_EQ(r.next_start_after(), "big0");
  for (int i = 0; i < 5; ++i) Ok(Put("h", std::to_string(i)));
  auto h = Read(History("h", 50));
  EXPECT_EQ(h.kvs_size(), 3);
  EXPECT_TRUE(h.more());
}

// --- at-most-once ---------------------------------------------------------------

TEST_F(StateMachineTest, ARetriedCommandIsAppliedOnceAcrossLeaders) {
  const auto cmd = Command(Put("k", "v"), "c1", 42);
  auto first = Apply(cmd);
  index += 5;  // the retry is committed again later, through another leader
  wall += 1000;
  auto second = Apply(cmd);
  EXPECT_EQ(first.kind, ApplyResult::Kind::kDecided);
  EXPECT_EQ(second.kind, ApplyResult::Kind::kDuplicate);
  EXPECT_EQ(first.response->SerializeAsString(), second.response->SerializeAsString());
  EXPECT_EQ(sm.revision(), 1u);
  EXPECT_EQ(Read(Get("k")).kv().version(), 1u);
  // Errors are remembered too: a refused CAS stays refused.
  const auto cas = Command(Cas("k", "nope", "x"), "c1", 43);
  EXPECT_EQ(Apply(cas).response->error(), pb::CONFLICT);
  Ok(Put("k", "nope"), "c2");
  EXPECT_EQ(Apply(cas).response->error(), pb::CONFLICT);
}

TEST_F(StateMachineTest, SeqsOlderThanTheWindowAreStale) {
  StateMachineOptions o;
  o.dedup_window = 4;
  sm = StateMachine(o);
  for (uint64_t s = 1; s <= 10; ++s) Apply(Command(Put("k", std::to_string(s)), "c", s));
  EXPECT_EQ(Apply(Command(Put("k", "x"), "c", 10)).kind, ApplyResult::Kind::kDuplicate);
  EXPECT_EQ(Apply(Command(Put("k", "x"), "c", 7)).kind, ApplyResult::Kind::kDuplicate);
  auto stale = Apply(Command(Put("k", "x"), "c", 6));
  EXPECT_EQ(stale.response->error(), pb::STALE_REQUEST);
  EXPECT_EQ(sm.revision(), 10u);
  // Pipelined seqs arriving out of order inside the window are new.
  EXPECT_EQ(Apply(Command(Put("k", "y"), "c", 12)).response->error(), pb::OK);
  EXPECT_EQ(Apply(Command(Put("k", "z"), "c", 11)).response->error(), pb::OK);
}

TEST_F(StateMachineTest, TheLeastRecentlyActiveClientIsForgottenFirst) {
  StateMachineOptions o;
  o.dedup_max_clients = 2;
  sm = StateMachine(o);
  Apply(Command(Put("a", "1"), "A", 1));
  Apply(Command(Put("b", "1"), "B", 1));
  Apply(Command(Put("a", "2"), "A", 2));  // A is now more recent than B
  Apply(Command(Put("c", "1"), "C", 1));  // evicts B
  EXPECT_EQ(sm.dedup().clients(), 2u);
  EXPECT_EQ(Apply(Command(Put("a", "2"), "A", 2)).kind, ApplyResult::Kind::kDuplicate);
  // B was forgotten: its retry is applied again (the documented limit).
  EXPECT_EQ(Apply(Command(Put("b", "1"), "B", 1)).kind, ApplyResult::Kind::kDecided);
}

TEST_F(StateMachineTest, AClientWithAWaitingRequestIsNotForgotten) {
  StateMachineOptions o;
  o.dedup_max_clients = 2;
  sm = StateMachine(o);
  const uint64_t h = Session(), w = Session();
  const uint64_t token = Ok(Acquire("L", h)).token();
  Apply(Command(Acquire("L", w, 1000), "waiter", 1));
  for (int i = 0; i < 5; ++i) Apply(Command(Put("k", "v"), "other" + std::to_string(i), 1));
  auto rel = Run(Release("L", h, token));
  ASSERT_EQ(rel.completions.size(), 1u);
  auto retry = Apply(Command(Acquire("L", w, 1000), "waiter", 1));
  EXPECT_EQ(retry.kind, ApplyResult::Kind::kDuplicate);
  EXPECT_EQ(retry.response->token(), rel.completions[0].response.token());
}

TEST_F(StateMachineTest, TheDedupTableStaysUnderItsByteBound) {
  StateMachineOptions o;
  o.dedup_max_bytes = 64 * 1024;
  sm = StateMachine(o);
  for (int i = 0; i < 200; ++i) Run(Put("k" + std::to_string(i), std::string(4000, 'v')), "c" + std::to_string(i % 7));
  EXPECT_LE(sm.dedup().bytes(), o.dedup_max_bytes);
  EXPECT_GT(sm.dedup().clients(), 0u);
}

// --- bad input ------------------------------------------------------------------

TEST_F(StateMachineTest, BadInputGetsAOneLineErrorAndChangesNothing) {
  const uint64_t s = Session();
  Ok(Put("k", "v"));
  const uint64_t rev = sm.revision();
  std::vector<std::pair<pb::StrongRequest, pb::ErrorCode>> cases = {
      {Put("", "v"), pb::BAD_REQUEST},
      {Put(std::string(4097, 'k'), "v"), pb::BAD_REQUEST},
      {Put("k", std::string((1 << 20) + 1, 'v')), pb::BAD_REQUEST},
      {pb::StrongRequest(), pb::BAD_REQUEST},
      {Del(""), pb::BAD_REQUEST},
      {Cas("", "a", "b"), pb::BAD_REQUEST},
      {Get("k", 999), pb::BAD_REQUEST},
      {Get("k", 0, -1), pb::BAD_REQUEST},
      {Grant(0), pb::BAD_REQUEST},
      {Acquire("L", s, 100LL * 24 * 3600 * 1000), pb::BAD_REQUEST},
      {Acquire("L", 555), pb::NOT_FOUND},
      {Acquire(std::string(5000, 'L'), s), pb::BAD_REQUEST},
      {Release("L", s, 1), pb::NOT_FOUND},
      {Keepalive(555), pb::NOT_FOUND},
      {Compact(1000), pb::BAD_REQUEST},
      {PutFenced("k", "v", "", 1), pb::BAD_REQUEST},
      {PutFenced("k", "v", "ghost", 1), pb::CONFLICT},
      {History(""), pb::BAD_REQUEST},
  };
  for (const auto& [req, code] : cases) {
    auto r = Do(req);
    EXPECT_EQ(r.error(), code) << req.ShortDebugString().substr(0, 200);
    EXPECT_FALSE(r.error_message().empty());
    EXPECT_EQ(r.error_message().find('\n'), std::string::npos);
  }
  EXPECT_EQ(sm.revision(), rev);
  EXPECT_EQ(sm.locks().locks(), 0u);
  // Commands without a client id or without a body.
  pb::StrongCommand anon = Command(Put("k", "x"), "", 1);
  EXPECT_EQ(Apply(anon).response->error(), pb::BAD_REQUEST);
  pb::StrongCommand empty;
  EXPECT_EQ(Apply(empty).response->error(), pb::BAD_REQUEST);
  pb::StrongCommand long_agent = Command(Put("k", "x"), "c9", 1);
  long_agent.set_agent(std::string(1000, 'a'));
  EXPECT_EQ(Apply(long_agent).response->error(), pb::BAD_REQUEST);
  EXPECT_EQ(sm.revision(), rev);
  // Binary keys come back printable in messages.
  auto bin = Do(Cas(std::string("\n\x01\xff", 3), "a", "b"));
  EXPECT_EQ(bin.error_message().find('\n'), std::string::npos);
}

// --- snapshots --------------------------------------------------------------------


TEST_F(StateMachineTest, SnapshotRoundTripsByteForByte) {
  const uint64_t a = Session(), b = Session();
  Ok(Put("k", "v1"));
  Ok(Put("k", "v2"));
  Ok(Del("k"));
  Ok(Put("j", "x"));
  Ok(Compact(2));
  Ok(Acquire("L", a));
  Run(Acquire("L", b, 3000), "waiter");
  const std::string snap = sm.snapshot();
  auto restored = StateMachine::restore(snap);
  ASSERT_TRUE(restored.has_value()) << restored.error().message();
  EXPECT_EQ(restored->snapshot(), snap);
  EXPECT_EQ(restored->applied_index(), sm.applied_index());
  EXPECT_EQ(restored->revision(), sm.revision());
  EXPECT_EQ(restored->locks().waiters(), 1u);
  // Both continue identically.
  const auto cmd = Command(Release("L", a, sm.locks().lock("L")->token), "c1", 1000);
  auto r1 = sm.apply(index + 1, cmd);
  auto r2 = restored->apply(index + 1, cmd);
  EXPECT_EQ(r1.response->SerializeAsString(), r2.response->SerializeAsString());
  ASSERT_EQ(r2.completions.size(), 1u);
  EXPECT_EQ(sm.snapshot(), restored->snapshot());
  // Tokens stay monotonic after a restore.
  EXPECT_GT(r2.completions[0].response.token(), 1u);
}

// Snapshot bytes for a (possibly doctored) message: checksum, then message.
std::string Seal(const pb::StrongSnapshot& s) {
  const std::string body = s.SerializeAsString();
  const uint64_t sum = hash_bytes(body);
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((sum >> (8 * i)) & 0xff);
  return out + body;
}

TEST_F(StateMachineTest, CorruptSnapshotsAreRefusedNotFatal) {
  const uint64_t a = Session();
  Ok(Put("k", "v"));
  Ok(Acquire("L", a));
  const std::string snap = sm.snapshot();
  EXPECT_FALSE(StateMachine::restore("garbage\xff\xff").has_value());
  EXPECT_FALSE(StateMachine::restore(snap.substr(0, snap.size() / 2)).has_value());
  EXPECT_FALSE(StateMachine::restore("").has_value());
  {
    pb::StrongSnapshot s;
    ASSERT_TRUE(s.ParseFromString(snap.substr(8)));
    EXPECT_TRUE(StateMachine::restore(Seal(s)).has_value());  // the doctoring below is what fails
  }
  auto mutate = [&](auto&& fn) {
    pb::StrongSnapshot s;
    EXPECT_TRUE(s.ParseFromString(snap.substr(8)));
    fn(s);
    auto r = StateMachine::restore(Seal(s));
    EXPECT_FALSE(r.has_value());
    if (!r.has_value()) {
      EXPECT_EQ(r.error().code(), Status::Code::kCorruption);
    }
  };
  mutate([](pb::StrongSnapshot& s) { s.set_format(9); });
  mutate([](pb::StrongSnapshot& s) { s.mutable_locks(0)->set_holder_session(999); });
  mutate([](pb::StrongSnapshot& s) { s.mutable_locks(0)->set_token(s.last_token() + 1); });
  mutate([](pb::StrongSnapshot& s) { s.set_compact_revision(s.revision() + 1); });
  mutate([](pb::StrongSnapshot& s) { s.mutable_keys(0)->mutable_versions(0)->set_revision(99); });
  mutate([](pb::StrongSnapshot& s) { s.mutable_keys(0)->set_key(""); });
  mutate([](pb::StrongSnapshot& s) { s.add_keys()->set_key("a"); });  // out of order and without versions
  mutate([](pb::StrongSnapshot& s) { s.mutable_sessions(0)->set_ttl_ms(0); });
  mutate([](pb::StrongSnapshot& s) { s.mutable_sessions(0)->set_id(s.next_session_id()); });
  mutate([](pb::StrongSnapshot& s) { s.clear_revision_times(); });
  mutate([](pb::StrongSnapshot& s) {
    auto* w = s.mutable_locks(0)->add_waiters();
    w->set_session_id(s.locks(0).holder_session());
    w->set_client_id("x");
    w->set_wait_ms(10);
  });
  mutate([](pb::StrongSnapshot& s) {
    auto* slot = s.mutable_clients(0)->add_slots();
    slot->set_seq(1u << 30);
    slot->set_waiting(true);
  });
  // Random byte flips never crash: each parses to something valid or is refused.
  std::mt19937_64 rng(7);
  for (int i = 0; i < 2000; ++i) {
    std::string bad = snap;
    bad[rng() % bad.size()] = static_cast<char>(rng());
    auto r = StateMachine::restore(bad);
    if (r.has_value()) {
      EXPECT_TRUE(StateMachine::restore(r->snapshot()).has_value());
    }
  }
}

// --- determinism --------------------------------------------------------------------

// A random but valid-ish command stream over few keys, sessions and locks,
// with retries, expiries, cancels and garbage.
pb::StrongCommand RandomCommand(std::mt19937_64& rng, int64_t& wall, uint64_t& next_seq, const StateMachine& sm) {
  auto pick = [&](uint64_t n) { return rng() % n; };
  const std::string key = "k" + std::to_string(pick(12));
  const std::string lock = "L" + std::to_string(pick(4));
  const auto live = sm.live_sessions();
  // Mostly live sessions, sometimes a dead or never granted one.
  const uint64_t session = !live.empty() && pick(8) != 0 ? live[pick(live.size())].session_id : pick(40);
  // Locks held right now, for fences and releases with the right token.
  uint64_t token = pick(40);
  if (const auto* l = sm.locks().lock(lock); l != nullptr && pick(2) == 0) token = l->token;
  pb::StrongCommand c;
  wall += static_cast<int64_t>(pick(50)) - 10;  // sometimes back in time
  c.set_leader_wall_ms(wall);
  c.set_client_id("client" + std::to_string(pick(6)));
  c.set_agent("agent" + std::to_string(pick(3)));
  c.set_seq(pick(10) == 0 ? 1 + pick(next_seq) : ++next_seq);  // some retries
  pb::StrongRequest r;
  switch (pick(18)) {
    case 0: case 1: case 2: r = Put(key, std::to_string(rng() % 1000)); break;
    case 3: r = PutExpect(key, "e", pick(3)); break;
    case 4: r = Del(key); break;
    case 5: r = Cas(key, std::to_string(pick(1000)), "cas"); break;
    case 6: {
      auto* t = r.mutable_txn();
      auto cmp = Cmp(key, static_cast<pb::Compare::Target>(pick(4)), static_cast<pb::Compare::Op>(pick(4)));
      cmp.set_number(pick(5));
      cmp.set_exists(pick(2));
      *t->add_compare() = cmp;
      *t->add_success() = TPut(key, "t");
      *t->add_success() = TGet("k" + std::to_string(pick(12)));
      *t->add_failure() = TDel("k" + std::to_string(pick(12)));
      break;
    }
    case 7: r = Grant(100 + static_cast<int64_t>(pick(5000))); break;
    case 8: r = Keepalive(session); break;
    case 9: r = pick(3) == 0 ? Revoke(session) : Keepalive(session); break;
    case 10: case 11: r = Acquire(lock, session, pick(2) ? 0 : 1000); break;
    case 12: {
      const auto* l = sm.locks().lock(lock);
      r = l != nullptr && pick(2) == 0 ? Release(lock, l->holder, l->token) : Release(lock, session, token);
      break;
    }
    case 13: r = PutFenced(key, "f", lock, token); break;
    case 14: r = Compact(pick(200)); break;
    case 15: r = Range("k", static_cast<uint32_t>(pick(5))); break;
    case 16: {
      pb::StrongCommand e;
      e.set_leader_wall_ms(wall);
      if (pick(3) == 0) {
        e.mutable_expire_session()->set_session_id(session);
        e.mutable_expire_session()->set_renewed_index(UINT64_MAX);
      } else {
        e.mutable_cancel_wait()->set_client_id("client" + std::to_string(pick(6)));
        e.mutable_cancel_wait()->set_seq(1 + pick(next_seq));
      }
      return e;
    }
    default: r = Get(key, pick(3) == 0 ? pick(100) : 0); break;  // garbage revisions too
  }
  *c.mutable_request() = r;
  return c;
}

std::string Fingerprint(const ApplyResult& r) {
  std::string out = std::to_string(static_cast<int>(r.kind)) + "|";
  if (r.response) out += r.response->SerializeAsString();
  for (const auto& c : r.completions) out += "|" + c.request.client_id + "#" + std::to_string(c.request.seq) +
                                             c.response.SerializeAsString();
  return out;
}

TEST(StateMachineDeterminism, TwoReplicasFedTheSameLogAgreeByteForByte) {
  for (uint64_t seed : {1, 2, 3}) {
    StateMachineOptions o;
    o.history_retention_revisions = seed == 3 ? 50 : 0;
    o.dedup_max_clients = 4;
    o.dedup_window = 8;
    StateMachine a(o), b(o);
    std::mt19937_64 rng(seed);
    int64_t wall = 1000;
    uint64_t next_seq = 0;
    uint64_t grants = 0, waits = 0, completions = 0;
    for (uint64_t i = 1; i <= 5000; ++i) {
      const auto cmd = RandomCommand(rng, wall, next_seq, a);
      const auto ra = a.apply(i, cmd);
      const auto rb = b.apply(i, cmd);
      ASSERT_EQ(Fingerprint(ra), Fingerprint(rb)) << "seed " << seed << " entry " << i;
      waits += ra.kind == ApplyResult::Kind::kWaiting;
      completions += ra.completions.size();
      grants += ra.response && ra.response->token() != 0;
      if (i % 1000 == 0) {
        // A replica that restarts from a snapshot rejoins in lockstep.
        auto restored = StateMachine::restore(a.snapshot(), o);
        ASSERT_TRUE(restored.has_value()) << restored.error().message();
        ASSERT_EQ(restored->snapshot(), a.snapshot());
        b = std::move(*restored);
      }
    }
    EXPECT_EQ(a.snapshot(), b.snapshot());
    EXPECT_GT(a.revision(), 100u);
    EXPECT_GT(grants, 10u);
    EXPECT_GT(waits, 5u);
    EXPECT_GT(completions, 5u);
  }
}

// Garbage from clients: random bytes parsed as commands, and valid commands
// with random bytes flipped, never reach an invariant abort and never change
// the KV state of a refused request.
TEST(StateMachineUntrusted, GarbageCommandsNeverAbort) {
  StateMachine sm;
  std::mt19937_64 rng(11);
  int64_t wall = 0;
  uint64_t next_seq = 0;
  uint64_t parsed = 0;
  for (uint64_t i = 1; i <= 20000; ++i) {
    pb::StrongCommand c = RandomCommand(rng, wall, next_seq, sm);
    std::string bytes = c.SerializeAsString();
    const int flips = static_cast<int>(rng() % 4);
    for (int f = 0; f < flips && !bytes.empty(); ++f) bytes[rng() % bytes.size()] = static_cast<char>(rng());
    if (rng() % 10 == 0) {
      bytes.resize(rng() % 64);
      for (auto& ch : bytes) ch = static_cast<char>(rng());
    }
    pb::StrongCommand g;
    if (!g.ParseFromString(bytes)) continue;
    ++parsed;
    const uint64_t rev = sm.revision();
    auto r = sm.apply(i, g);
    if (r.response) {
      EXPECT_TRUE(r.response->error() == pb::OK || sm.revision() == rev);
      EXPECT_EQ(r.response->error_message().find('\n'), std::string::npos);
    }
  }
  EXPECT_GT(parsed, 5000u);
  auto restored = StateMachine::restore(sm.snapshot());
  ASSERT_TRUE(restored.has_value()) << restored.error().message();
  EXPECT_EQ(restored->snapshot(), sm.snapshot());
}

}  // namespace
}  // namespace stig::replication
