// LeaseKeeper: the leader's monotonic clock for session expiry and lock wait
// timeouts, and the Jepsen lessons it exists for.
#include "replication/strong/lease_keeper.h"

#include <gtest/gtest.h>

#include "replication/strong/state_machine.h"

namespace stig::replication {
namespace {

Now At(MonoTime mono) { return Now{mono, 1'000'000 + mono}; }

LeaseChanges Renewed(uint64_t id, int64_t ttl, uint64_t index) {
  LeaseChanges c;
  c.sessions_renewed.push_back({id, ttl, index});
  return c;
}

TEST(LeaseKeeper, ExpiresASessionAfterItsTtlOnTheMonotonicClock) {
  LeaseKeeper k;
  k.on_become_leader(0, {}, {});
  k.on_applied(100, Renewed(7, 1000, 3));
  EXPECT_EQ(k.next_deadline(), 1100);
  EXPECT_TRUE(k.due(At(1099)).empty());
  auto due = k.due(At(1100));
  ASSERT_EQ(due.size(), 1u);
  EXPECT_EQ(due[0].expire_session().session_id(), 7u);
  EXPECT_EQ(due[0].expire_session().renewed_index(), 3u);
  EXPECT_EQ(due[0].leader_wall_ms(), 1'000'000 + 1100);
  EXPECT_TRUE(due[0].client_id().empty());
  // Proposed once; proposed again only if it did not take effect.
  EXPECT_TRUE(k.due(At(1200)).empty());
  EXPECT_EQ(k.next_deadline(), 2100);
  EXPECT_EQ(k.due(At(2100)).size(), 1u);
  LeaseChanges ended;
  ended.sessions_ended.push_back(7);
  k.on_applied(2150, ended);
  EXPECT_EQ(k.sessions(), 0u);
  EXPECT_EQ(k.next_deadline(), kNever);
}

TEST(LeaseKeeper, KeepaliveExtendsNeverShortens) {
  LeaseKeeper k;
  k.on_become_leader(0, {{1, 1000, 1}}, {});
  k.on_keepalive(500, 1);
  EXPECT_EQ(k.session_deadline(1), 1500);
  k.on_keepalive(100, 1);  // an older arrival cannot pull the deadline in
  EXPECT_EQ(k.session_deadline(1), 1500);
  k.on_applied(800, Renewed(1, 1000, 9));
  EXPECT_EQ(k.session_deadline(1), 1800);
  auto due = k.due(At(1800));
  ASSERT_EQ(due.size(), 1u);
  EXPECT_EQ(due[0].expire_session().renewed_index(), 9u);
  k.on_keepalive(100, 42);  // unknown: ignored
  EXPECT_EQ(k.sessions(), 1u);
}

TEST(LeaseKeeper, ANewLeaderGivesEverySessionAndWaitAFreshFullTtl) {
  // The old leader's sessions were close to expiry; the new leader must not
  // expire them before a full TTL of its own (Jepsen's etcd lesson).
  LeaseKeeper k;
  RequestId w{"c", 5};
  k.on_become_leader(50'000, {{1, 3000, 10}, {2, 500, 11}}, {{w, 1, 2000}});
  EXPECT_EQ(k.session_deadline(1), 53'000);
  EXPECT_EQ(k.session_deadline(2), 50'500);
  EXPECT_EQ(k.wait_deadline(w), 52'000);
  EXPECT_TRUE(k.due(At(50'499)).empty());
  auto due = k.due(At(52'000));
  ASSERT_EQ(due.size(), 2u);
  EXPECT_EQ(due[0].expire_session().session_id(), 2u);
  EXPECT_EQ(due[1].cancel_wait().client_id(), "c");
  EXPECT_EQ(due[1].cancel_wait().seq(), 5u);
}

TEST(LeaseKeeper, ADeposedLeaderForgetsAndNeverProposes) {
  LeaseKeeper k;
  k.on_become_leader(0, {{1, 100, 1}}, {{RequestId{"c", 1}, 1, 100}});
  k.on_lose_leadership();
  EXPECT_FALSE(k.is_leader());
  EXPECT_EQ(k.sessions(), 0u);
  EXPECT_EQ(k.waits(), 0u);
  EXPECT_TRUE(k.due(At(1'000'000)).empty());
  EXPECT_EQ(k.next_deadline(), kNever);
  // A follower learns nothing from applied entries: the next election
  // rebuilds from the state machine.
  k.on_applied(0, Renewed(3, 100, 2));
  k.on_keepalive(0, 3);
  EXPECT_EQ(k.sessions(), 0u);
  EXPECT_TRUE(k.due(At(1'000'000)).empty());
}

TEST(LeaseKeeper, WaitsTimeOutIntoCancelWait) {
  LeaseKeeper k;
  k.on_become_leader(0, {}, {});
  LeaseChanges started;
  started.waits_started.push_back({RequestId{"a", 1}, 1, 300});
  started.waits_started.push_back({RequestId{"b", 2}, 2, 100});
  k.on_applied(1000, started);
  EXPECT_EQ(k.next_deadline(), 1100);
  auto due = k.due(At(1100));
  ASSERT_EQ(due.size(), 1u);
  EXPECT_EQ(due[0].cancel_wait().client_id(), "b");
  LeaseChanges ended;
  ended.waits_ended.push_back(RequestId{"a", 1});  // granted before its timeout
  k.on_applied(1200, ended);
  EXPECT_TRUE(k.due(At(5000)).size() == 1u);  // only b, proposed again
}

// End to end with the state machine: the keeper's commands, applied, expire
// the session and release its lock to the waiter; a keepalive committed after
// the decision wins.
TEST(LeaseKeeper, DrivesTheStateMachine) {
  StateMachine sm;
  LeaseKeeper k;
  uint64_t index = 0;
  MonoTime now = 0;
  k.on_become_leader(now, sm.live_sessions(), sm.live_waits());
  auto apply = [&](pb::StrongCommand c) {
    auto r = sm.apply(++index, c);
    k.on_applied(now, r.lease);
    return r;
  };
  auto request = [&](const std::string& client, uint64_t seq, pb::StrongRequest req) {
    pb::StrongCommand c;
    c.set_client_id(client);
    c.set_seq(seq);
    *c.mutable_request() = std::move(req);
    return apply(c);
  };
  pb::StrongRequest grant;
  grant.mutable_session_grant()->set_ttl_ms(1000);
  const uint64_t a = request("a", 1, grant).response->session_id();
  const uint64_t b = request("b", 1, grant).response->session_id();
  pb::StrongRequest acq;
  acq.mutable_lock_acquire()->set_name("L");
  acq.mutable_lock_acquire()->set_session_id(a);
  ASSERT_EQ(request("a", 2, acq).response->error(), pb::OK);
  acq.mutable_lock_acquire()->set_session_id(b);
  acq.mutable_lock_acquire()->set_wait_ms(5000);
  EXPECT_EQ(request("b", 2, acq).kind, ApplyResult::Kind::kWaiting);
  EXPECT_EQ(k.waits(), 1u);

  // b keeps alive; a does not.
  now = 600;
  pb::StrongRequest ka;
  ka.mutable_session_keepalive()->set_session_id(b);
  request("b", 3, ka);
  now = 1000;
  auto due = k.due(At(now));
  ASSERT_EQ(due.size(), 1u);
  EXPECT_EQ(due[0].expire_session().session_id(), a);
  auto r = apply(due[0]);
  ASSERT_EQ(r.completions.size(), 1u);
  EXPECT_EQ(r.completions[0].request, (RequestId{"b", 2}));
  EXPECT_EQ(sm.locks().lock("L")->holder, b);
  EXPECT_EQ(k.sessions(), 1u);
  EXPECT_EQ(k.waits(), 0u);

  // b's expiry is decided, but a keepalive is committed before it: b lives.
  now = 1600;
  due = k.due(At(now));
  ASSERT_EQ(due.size(), 1u);
  request("b", 4, ka);
  r = apply(due[0]);
  EXPECT_EQ(r.response->error(), pb::CONFLICT);
  EXPECT_NE(sm.locks().session(b), nullptr);
  EXPECT_EQ(k.session_deadline(b), 2600);
}

}  // namespace
}  // namespace stig::replication
