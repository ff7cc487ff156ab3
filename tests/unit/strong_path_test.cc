// The strong path inside the core, driven message by message through
// TestCluster: elections, leader hints, writes that survive crashes,
// unknown outcomes, retries applied once, snapshots, locks, bad input.
#include <gtest/gtest.h>

#include "replication/key_space.h"
#include "replication/replica.h"
#include "tests/unit/test_cluster.h"

namespace stig::replication {
namespace {

pb::Request strong_put(const std::string& key, const std::string& value, uint64_t seq = 0) {
  pb::Request r;
  r.set_seq(seq);
  auto* p = r.mutable_strong()->mutable_put();
  p->set_key(key);
  p->set_value(value);
  return r;
}

pb::Request strong_get(const std::string& key, bool stale = false) {
  pb::Request r;
  r.mutable_strong()->mutable_get()->set_key(key);
  r.mutable_strong()->mutable_get()->set_stale(stale);
  return r;
}

std::vector<NodeId> leaders(TestCluster& c) {
  std::vector<NodeId> out;
  for (auto& [id, n] : c.nodes_)
    if (n->raft_role() == "leader") out.push_back(id);
  return out;
}

// Lets elections happen; returns the one leader.
NodeId settle_leader(TestCluster& c, int64_t ms = 2000) {
  c.advance(ms);
  auto l = leaders(c);
  EXPECT_EQ(l.size(), 1u);
  return l.empty() ? NodeId() : l[0];
}

NodeId a_follower(TestCluster& c, const NodeId& leader) {
  for (auto& [id, n] : c.nodes_)
    if (id != leader) return id;
  return "";
}

TEST(StrongPath, OneLeaderServesWritesAndFollowersPointToIt) {
  TestCluster c(3);
  const NodeId leader = settle_leader(c);
  const NodeId follower = a_follower(c, leader);

  auto refused = c.request(follower, strong_put("stock:sku-1", "1"));
  EXPECT_EQ(refused.error(), pb::NOT_LEADER);
  EXPECT_EQ(refused.leader_hint(), leader);
  EXPECT_EQ(refused.leader_address(), leader + ":0");
  EXPECT_NE(refused.error_message().find("the leader is " + leader), std::string::npos) << refused.error_message();

  auto put = c.request(leader, strong_put("stock:sku-1", "1"));
  ASSERT_EQ(put.error(), pb::OK) << put.error_message();
  EXPECT_EQ(put.strong().kv().version(), 1u);
  auto got = c.request(leader, strong_get("stock:sku-1"));
  ASSERT_EQ(got.error(), pb::OK) << got.error_message();
  EXPECT_TRUE(got.strong().found());
  EXPECT_EQ(got.strong().kv().value(), "1");
  EXPECT_EQ(got.strong().kv().modified_by(), "tester");

  // A linearizable read at a follower is refused; a stale one is served.
  EXPECT_EQ(c.request(follower, strong_get("stock:sku-1")).error(), pb::NOT_LEADER);
  c.advance(200);
  auto stale = c.request(follower, strong_get("stock:sku-1", true));
  ASSERT_EQ(stale.error(), pb::OK);
  EXPECT_EQ(stale.strong().kv().value(), "1");
}

// Raft's timers reach wake_at: with ticks only when a node asked for one,
// a quiet cluster keeps its leader (followers hear heartbeats in time) and
// elects a new one when the leader dies.
TEST(StrongPath, RaftTimersDriveWakeAtSoAQuietClusterKeepsItsLeader) {
  TestCluster c(3);
  c.advance_by_wake(3000);
  auto first = leaders(c);
  ASSERT_EQ(first.size(), 1u);
  const uint64_t term = c.node(first[0]).raft_term();
  c.advance_by_wake(20000);
  EXPECT_EQ(leaders(c), first);
  EXPECT_EQ(c.node(first[0]).raft_term(), term) << "no elections in a quiet, healthy cluster";
  c.crash(first[0]);
  c.advance_by_wake(2000);
  auto next = leaders(c);
  ASSERT_EQ(next.size(), 1u);
  EXPECT_NE(next[0], first[0]);
}

TEST(StrongPath, AcknowledgedWritesSurviveTheLeadersCrash) {
  TestCluster c(3);
  const NodeId old_leader = settle_leader(c);
  for (int i = 0; i < 20; ++i)
    ASSERT_EQ(c.request(old_leader, strong_put("k" + std::to_string(i), "v" + std::to_string(i))).error(), pb::OK);
  c.crash(old_leader);
  const NodeId leader = settle_leader(c);
  ASSERT_NE(leader, old_leader);
  for (int i = 0; i < 20; ++i) {
    auto got = c.request(leader, strong_get("k" + std::to_string(i)));
    ASSERT_EQ(got.error(), pb::OK) << got.error_message();
    EXPECT_EQ(got.strong().kv().value(), "v" + std::to_string(i));
  }
  ASSERT_EQ(c.request(leader, strong_put("after", "x")).error(), pb::OK);
  // The old leader comes back from its disk and catches up.
  c.start(old_leader);
  c.advance(1000);
  auto caught_up = c.request(old_leader, strong_get("after", true));
  EXPECT_EQ(caught_up.strong().kv().value(), "x");
  EXPECT_EQ(c.node(old_leader).raft_commit_index(), c.node(leader).raft_commit_index());
}

TEST(StrongPath, EveryNodeRestartsFromItsDisk) {
  TestCluster c(3);
  const NodeId leader = settle_leader(c);
  ASSERT_EQ(c.request(leader, strong_put("k", "v")).error(), pb::OK);
  c.advance(200);
  for (const auto& id : c.ids_) c.crash(id);
  for (const auto& id : c.ids_) c.start(id);
  const NodeId again = settle_leader(c);
  auto got = c.request(again, strong_get("k"));
  ASSERT_EQ(got.error(), pb::OK) << got.error_message();
  EXPECT_EQ(got.strong().kv().value(), "v");
}

TEST(StrongPath, ALeaderCutOffAnswersOutcomeUnknownAndTheRetryAppliesOnce) {
  TestCluster c(3);
  const NodeId old_leader = settle_leader(c);
  c.partition({old_leader});
  // Proposed, never committed: the minority cannot commit.
  const ClientToken token = 9001;
  pb::Request put = strong_put("order-1", "charged", 77);
  put.set_client_id("agent-a");
  put.set_agent("tester");
  c.step(old_leader, ClientInput{token, put});
  c.advance(1500);  // check-quorum makes it step down
  ASSERT_TRUE(c.replies_.count(token));
  EXPECT_EQ(c.replies_[token].error(), pb::OUTCOME_UNKNOWN) << c.replies_[token].error_message();
  EXPECT_NE(c.node(old_leader).raft_role(), "leader");
  c.heal();
  const NodeId leader = settle_leader(c);
  // The retry, same client id and seq, twice: applied once.
  auto first = c.request(leader, put);
  ASSERT_EQ(first.error(), pb::OK) << first.error_message();
  auto second = c.request(leader, put);
  ASSERT_EQ(second.error(), pb::OK);
  EXPECT_EQ(first.strong().kv().version(), 1u);
  EXPECT_EQ(second.strong().kv().version(), 1u);
  auto got = c.request(leader, strong_get("order-1"));
  EXPECT_EQ(got.strong().kv().version(), 1u);
}

TEST(StrongPath, SnapshotsBoundTheLogAndCatchUpALaggingNode) {
  Config cfg;
  cfg.strong_snapshot_entries = 10;
  cfg.strong_snapshot_catch_up_entries = 5;
  TestCluster c(3, cfg);
  const NodeId leader = settle_leader(c);
  const NodeId lagging = a_follower(c, leader);
  c.crash(lagging);
  for (int i = 0; i < 50; ++i) ASSERT_EQ(c.request(leader, strong_put("k" + std::to_string(i), "v")).error(), pb::OK);
  size_t log_keys = 0;
  for (const auto& [k, v] : c.disk_[leader]) log_keys += in_key_space(k, KeySpace::kRaftLog);
  EXPECT_LE(log_keys, 25u) << "the log before the snapshot (but its catch-up tail) is erased";
  c.start(lagging);
  c.advance(2000);
  auto got = c.request(lagging, strong_get("k49", true));
  EXPECT_EQ(got.strong().kv().value(), "v");
  // And it restarts from the snapshot it received.
  c.crash(lagging);
  c.start(lagging);
  c.advance(500);
  EXPECT_EQ(c.request(lagging, strong_get("k0", true)).strong().kv().value(), "v");
}

TEST(StrongPath, AWaitingLockAcquireIsAnsweredWhenTheHolderReleases) {
  TestCluster c(3);
  const NodeId leader = settle_leader(c);
  auto grant = [&](const std::string& client) {
    pb::Request r;
    r.set_client_id(client);
    r.mutable_strong()->mutable_session_grant()->set_ttl_ms(10000);
    auto resp = c.request(leader, r);
    EXPECT_EQ(resp.error(), pb::OK) << resp.error_message();
    return resp.strong().session_id();
  };
  const uint64_t a = grant("a"), b = grant("b");
  pb::Request acquire_a;
  acquire_a.set_client_id("a");
  acquire_a.mutable_strong()->mutable_lock_acquire()->set_name("charge-card");
  acquire_a.mutable_strong()->mutable_lock_acquire()->set_session_id(a);
  auto held = c.request(leader, acquire_a);
  ASSERT_EQ(held.error(), pb::OK) << held.error_message();
  const uint64_t token_a = held.strong().token();

  pb::Request acquire_b;
  acquire_b.set_client_id("b");
  acquire_b.set_seq(500);
  acquire_b.mutable_strong()->mutable_lock_acquire()->set_name("charge-card");
  acquire_b.mutable_strong()->mutable_lock_acquire()->set_session_id(b);
  acquire_b.mutable_strong()->mutable_lock_acquire()->set_wait_ms(5000);
  c.step(leader, ClientInput{4242, acquire_b});
  c.advance(300);
  EXPECT_FALSE(c.replies_.count(4242)) << "waits while a holds the lock";

  pb::Request release;
  release.set_client_id("a");
  auto* rel = release.mutable_strong()->mutable_lock_release();
  rel->set_name("charge-card");
  rel->set_session_id(a);
  rel->set_token(token_a);
  ASSERT_EQ(c.request(leader, release).error(), pb::OK);
  c.advance(100);
  ASSERT_TRUE(c.replies_.count(4242));
  EXPECT_EQ(c.replies_[4242].error(), pb::OK) << c.replies_[4242].error_message();
  EXPECT_GT(c.replies_[4242].strong().token(), token_a);

  // A write fenced with a's old token is refused now.
  pb::Request fenced = strong_put("balance", "10");
  fenced.mutable_strong()->mutable_put()->mutable_fence()->set_lock("charge-card");
  fenced.mutable_strong()->mutable_put()->mutable_fence()->set_token(token_a);
  EXPECT_EQ(c.request(leader, fenced).error(), pb::CONFLICT);
}

TEST(StrongPath, BadRequestsGetOneLineErrors) {
  TestCluster c(3);
  const NodeId leader = settle_leader(c);
  pb::Request empty;
  empty.mutable_strong();
  auto r = c.request(leader, empty);
  EXPECT_EQ(r.error(), pb::BAD_REQUEST);
  EXPECT_EQ(r.error_message(), "strong request names no operation");
  pb::Request no_client = strong_put("k", "v");
  no_client.set_client_id("");
  // TestCluster fills an empty client id; step it directly.
  c.step(leader, ClientInput{777, no_client});
  c.advance(10);
  ASSERT_TRUE(c.replies_.count(777));
  EXPECT_EQ(c.replies_[777].error(), pb::BAD_REQUEST);
  pb::Request zero_ttl;
  zero_ttl.mutable_strong()->mutable_session_grant()->set_ttl_ms(0);
  auto z = c.request(leader, zero_ttl);
  EXPECT_EQ(z.error(), pb::BAD_REQUEST);
  EXPECT_EQ(z.error_message().find('\n'), std::string::npos);
}

TEST(StrongPath, ClusterStatusShowsThisNodesRaftView) {
  TestCluster c(3);
  const NodeId leader = settle_leader(c);
  pb::Request r;
  r.mutable_cluster_status();
  auto status = c.request(leader, r);
  ASSERT_EQ(status.error(), pb::OK);
  bool found = false;
  for (const auto& n : status.cluster_status().nodes())
    if (n.id() == leader) {
      found = true;
      EXPECT_EQ(n.role(), "leader");
      EXPECT_GE(n.term(), 1u);
      EXPECT_GE(n.commit_index(), 1u);
    } else {
      EXPECT_EQ(n.role(), "");  // only the answering node knows its own
    }
  EXPECT_TRUE(found);
}

}  // namespace
}  // namespace stig::replication
