// Replica driven message by message: replication, siblings, partitions and
// anti-entropy, durability levels, tombstone collection, recovery, retries.
#include <deque>
#include <map>
#include <optional>
#include <set>

#include <gtest/gtest.h>

#include "replication/key_state.h"
#include "replication/replica.h"
#include "replication/store.h"
#include "tests/unit/test_cluster.h"

namespace stig::replication {
namespace {

namespace pb = stigmergy::v1;

TEST(Replica, WriteOnOneNodeIsReadableOnAnother) {
  TestCluster c(3);
  auto put = c.put("n1", "order-1", "shipped");
  ASSERT_EQ(put.error(), pb::OK) << put.error_message();
  c.deliver_all();
  auto got = c.get("n3", "order-1");
  ASSERT_EQ(got.error(), pb::OK);
  EXPECT_EQ(values_of(got), std::vector<std::string>{"shipped"});
  EXPECT_EQ(got.get().versions(0).modified_by(), "tester");
  EXPECT_TRUE(c.converged());
}

TEST(Replica, ConcurrentWritesAreSiblingsEverywhereAndResolve) {
  TestCluster c(3);
  c.partition({"n1"});
  c.put("n1", "order-7", "shipped");
  c.put("n2", "order-7", "cancelled");
  c.heal();
  c.advance(3000);  // anti-entropy repairs what the partition dropped
  ASSERT_TRUE(c.converged());
  std::string ctx;
  for (const auto& id : c.ids_) {
    auto got = c.get(id, "order-7");
    EXPECT_EQ(values_of(got), (std::vector<std::string>{"cancelled", "shipped"})) << id;
    ctx = got.get().context();
  }
  auto resolved = c.put("n3", "order-7", "refunded", ctx);
  ASSERT_EQ(resolved.error(), pb::OK);
  EXPECT_EQ(resolved.put().versions_size(), 1);
  c.deliver_all();
  for (const auto& id : c.ids_) EXPECT_EQ(values_of(c.get(id, "order-7")), std::vector<std::string>{"refunded"});
}

TEST(Replica, PartitionedNodesAcceptWritesAndConvergeAfterHeal) {
  TestCluster c(3);
  c.partition({"n3"});
  for (int i = 0; i < 50; ++i) {
    c.put("n1", "a" + std::to_string(i), "x");
    c.put("n3", "b" + std::to_string(i), "y");
  }
  c.advance(2000);
  EXPECT_FALSE(c.converged());
  c.heal();
  c.advance(5000);
  EXPECT_TRUE(c.converged());
  EXPECT_EQ(c.node("n2").live_keys(), 100u);
}

TEST(Replica, AntiEntropyShipsOnlyDifferingBuckets) {
  TestCluster c(2);
  for (int i = 0; i < 2000; ++i) c.put("n1", "k" + std::to_string(i), "v");
  c.deliver_all();
  ASSERT_TRUE(c.converged());
  c.partition({"n2"});
  c.put("n1", "k5", "changed");
  c.heal();
  c.ae_states_ = 0;
  c.advance(3000);
  EXPECT_TRUE(c.converged());
  EXPECT_GT(c.ae_states_, 0u);
  EXPECT_LT(c.ae_states_, 10u) << "anti-entropy shipped keys of equal buckets";
}

TEST(Replica, QuorumWriteWaitsForPeersAndFailsWhenTheyAreGone) {
  TestCluster c(3);
  c.advance(500);
  auto ok = c.put("n1", "k", "v", "", pb::DURABILITY_QUORUM);
  EXPECT_EQ(ok.error(), pb::OK) << ok.error_message();
  auto all = c.put("n1", "k2", "v", "", pb::DURABILITY_ALL);
  EXPECT_EQ(all.error(), pb::OK) << all.error_message();
  c.partition({"n1"});
  auto fail = c.put("n1", "k3", "v", "", pb::DURABILITY_QUORUM);
  EXPECT_EQ(fail.error(), pb::DURABILITY_NOT_MET);
  EXPECT_NE(fail.error_message().find("1 of 3 replicas (needed 2)"), std::string::npos) << fail.error_message();
  auto fail_all = c.put("n1", "k4", "v", "", pb::DURABILITY_ALL);
  EXPECT_EQ(fail_all.error(), pb::DURABILITY_NOT_MET);
  EXPECT_NE(fail_all.error_message().find("1 of 3 replicas (needed 3)"), std::string::npos) << fail_all.error_message();
  // The write is kept locally and spreads after the heal.
  c.heal();
  c.advance(3000);
  EXPECT_EQ(values_of(c.get("n2", "k3")), std::vector<std::string>{"v"});
}

// A replica merging a push for a `local` write need not fsync (the write is
// durable where it was taken) and does not answer; a quorum write's push asks
// for an answer, which is sent only after a sync.
TEST(Replica, ReplicasSyncOnlyWhatSomeoneWaitsFor) {
  Config cfg;
  TestCluster c(2, cfg);
  c.advance(100);
  auto step_and_take = [](Replica& r, MonoTime t, Input in) {
    r.step(Now{t, t}, std::move(in));
    return r.take_output();
  };
  Replica& n1 = c.node("n1");
  Replica& n2 = c.node("n2");
  for (pb::Durability d : {pb::DURABILITY_LOCAL, pb::DURABILITY_QUORUM}) {
    pb::Request req;
    req.set_client_id("c");
    req.set_seq(d == pb::DURABILITY_LOCAL ? 1 : 2);
    req.mutable_put()->set_key("k");
    req.mutable_put()->set_value("v");
    req.mutable_put()->set_durability(d);
    Output coordinator = step_and_take(n1, 2000, ClientInput{1, req});
    EXPECT_TRUE(coordinator.sync);
    std::shared_ptr<const pb::PeerMessage> push;
    for (const auto& m : coordinator.messages)
      if (m.message->has_push()) push = m.message;
    ASSERT_TRUE(push);
    EXPECT_EQ(push->push().ack_wanted(), d == pb::DURABILITY_QUORUM);
    Output replica = step_and_take(n2, 2001, PeerInput{"n1", *push});
    EXPECT_FALSE(replica.persist.empty());
    bool acked = false;
    for (const auto& m : replica.messages) acked |= m.message->has_push_ack();
    EXPECT_EQ(replica.sync, d == pb::DURABILITY_QUORUM);
    EXPECT_EQ(acked, d == pb::DURABILITY_QUORUM);
  }
}

TEST(Replica, TombstonesAreCollectedOnceEveryReplicaHasThem) {
  TestCluster c(3);
  auto put = c.put("n1", "tmp", "v");
  c.deliver_all();
  auto del = c.del("n2", "tmp", put.put().context());
  ASSERT_EQ(del.error(), pb::OK);
  EXPECT_TRUE(c.get("n2", "tmp").get().versions().empty());
  c.advance(3000);
  for (const auto& id : c.ids_) {
    EXPECT_EQ(c.node(id).tombstone_keys(), 0u) << id;
    EXPECT_EQ(c.node(id).live_keys(), 0u) << id;
  }
  EXPECT_TRUE(c.converged());
  // A new write after collection is a fresh value, not shadowed by old dots.
  c.put("n1", "tmp", "again");
  c.deliver_all();
  EXPECT_EQ(values_of(c.get("n3", "tmp")), std::vector<std::string>{"again"});
}

// A copy of a key still in flight when its tombstone is collected (delayed,
// reordered, queued during a partition) must not bring the deleted value
// back, even after the receiver restarts: the deletion's context stays
// behind as a grave for tombstone_grace_ms.
TEST(Replica, LateCopiesOfACollectedKeyDoNotResurrectIt) {
  for (bool restart : {false, true}) {
    TestCluster c(3);
    auto put = c.put("n1", "order-9", "shipped");
    // Hold back the push that carries "shipped" to n2.
    std::optional<TestCluster::InFlight> late;
    for (auto it = c.queue_.begin(); it != c.queue_.end(); ++it) {
      if (it->to == "n2" && it->msg->has_push()) {
        late = *it;
        c.queue_.erase(it);
        break;
      }
    }
    ASSERT_TRUE(late);
    c.deliver_all();
    c.advance(2000);  // anti-entropy brings "shipped" to n2 anyway
    auto del = c.del("n1", "order-9", put.put().context());
    ASSERT_EQ(del.error(), pb::OK);
    c.advance(3000);
    for (const auto& id : c.ids_) ASSERT_EQ(c.node(id).tombstone_keys(), 0u) << id << " kept the tombstone";
    if (restart) {
      c.crash("n2");
      c.start("n2");
    }
    c.step("n2", PeerInput{late->from, *late->msg});  // the stale copy arrives at last
    c.advance(3000);
    for (const auto& id : c.ids_) {
      EXPECT_TRUE(c.get(id, "order-9").get().versions().empty()) << id << (restart ? " after restart" : "");
      EXPECT_EQ(c.node(id).live_keys(), 0u) << id;
    }
    EXPECT_TRUE(c.converged());
    // A new write after the deletion is a new value, not shadowed by the grave.
    c.put("n3", "order-9", "reordered");
    c.deliver_all();
    EXPECT_EQ(values_of(c.get("n2", "order-9")), std::vector<std::string>{"reordered"});
  }
}

TEST(Replica, TombstoneSurvivesWhileAReplicaIsPartitioned) {
  TestCluster c(3);
  auto put = c.put("n1", "tmp", "v");
  c.deliver_all();
  c.partition({"n3"});
  c.del("n1", "tmp", put.put().context());
  c.advance(3000);
  EXPECT_EQ(c.node("n1").tombstone_keys(), 1u);  // n3 has not seen it: keep
  c.heal();
  c.advance(5000);
  EXPECT_TRUE(c.converged());
  for (const auto& id : c.ids_) {
    EXPECT_TRUE(c.get(id, "tmp").get().versions().empty()) << id;
    EXPECT_EQ(c.node(id).tombstone_keys(), 0u) << id;
  }
}

TEST(Replica, CountersAndSetsReplicate) {
  TestCluster c(3);
  pb::Request add;
  add.mutable_counter_add()->set_key("stock");
  add.mutable_counter_add()->set_delta(10);
  c.request("n1", add);
  add.mutable_counter_add()->set_delta(-3);
  add.set_seq(0);
  c.request("n2", add);
  pb::Request sadd;
  sadd.mutable_set_add()->set_key("tags");
  sadd.mutable_set_add()->set_element("urgent");
  c.request("n3", sadd);
  c.deliver_all();
  pb::Request cget;
  cget.mutable_counter_get()->set_key("stock");
  EXPECT_EQ(c.request("n3", cget).counter().value(), 7);
  pb::Request sget;
  sget.mutable_set_get()->set_key("tags");
  auto s = c.request("n1", sget);
  ASSERT_EQ(s.set().elements_size(), 1);
  EXPECT_EQ(s.set().elements(0), "urgent");
}

TEST(Replica, ClearErrors) {
  Config cfg;
  cfg.max_siblings = 3;
  TestCluster c(2, cfg);
  pb::Request add;
  add.mutable_counter_add()->set_key("stock");
  add.mutable_counter_add()->set_delta(1);
  c.request("n1", add);
  auto wrong = c.put("n1", "stock", "x");
  EXPECT_EQ(wrong.error(), pb::WRONG_TYPE);
  EXPECT_EQ(wrong.error_message(), "key 'stock' holds a counter, not a register");
  EXPECT_EQ(c.put("n1", "k", "v", "garbage\xff").error(), pb::MALFORMED_CONTEXT);
  EXPECT_EQ(c.put("n1", "", "v").error(), pb::BAD_REQUEST);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(c.put("n1", "hot", "v").error(), pb::OK);
  auto too_many = c.put("n1", "hot", "v");
  EXPECT_EQ(too_many.error(), pb::TOO_MANY_SIBLINGS);
  // Resolving with the context works again.
  EXPECT_EQ(c.put("n1", "hot", "v", c.get("n1", "hot").get().context()).error(), pb::OK);
  pb::Request empty;
  EXPECT_EQ(c.request("n1", empty).error(), pb::UNKNOWN_REQUEST);
  // A context naming a node outside the cluster is refused.
  pb::VersionVector foreign;
  vv_raise(foreign, "n9", 1);
  EXPECT_EQ(c.put("n1", "k", "v", encode_context(foreign)).error(), pb::MALFORMED_CONTEXT);
}

TEST(Replica, RetriedRequestIsAppliedOnce) {
  TestCluster c(1);
  pb::Request add;
  add.set_client_id("agent-x");
  add.set_seq(7);
  add.mutable_counter_add()->set_key("n");
  add.mutable_counter_add()->set_delta(5);
  EXPECT_EQ(c.request("n1", add).counter().value(), 5);
  EXPECT_EQ(c.request("n1", add).counter().value(), 5);  // retry: cached answer
  pb::Request get;
  get.mutable_counter_get()->set_key("n");
  EXPECT_EQ(c.request("n1", get).counter().value(), 5);
}

TEST(Replica, RestartRecoversStateAndNeverReusesDots) {
  TestCluster c(2);
  auto first = c.put("n1", "k", "v1");
  c.deliver_all();
  const uint64_t digest = c.node("n1").state_digest();
  c.crash("n1");
  c.start("n1");
  EXPECT_EQ(c.node("n1").state_digest(), digest);
  // A blind write after restart must be a new sibling, not a reissued dot.
  c.put("n1", "k", "v2");
  c.deliver_all();
  EXPECT_EQ(values_of(c.get("n2", "k")), (std::vector<std::string>{"v1", "v2"}));
}

// A push made from the state a replica holds replaces it without a merge;
// one made from another state is merged, so nothing the replica has is lost.
TEST(Replica, InSyncReplicaTakesAPushedStateAsItIs) {
  TestCluster c(3);
  auto first = c.put("n1", "k", "v1");
  c.deliver_all();
  // The replicas created the key from the push: nothing to take it over from.
  EXPECT_EQ(c.node("n2").pushes_adopted(), 0u);
  c.put("n1", "k", "v2", first.put().context());
  c.put("n1", "k", "v3");  // blind: a sibling of v2
  c.deliver_all();
  EXPECT_EQ(c.node("n2").pushes_adopted(), 2u);
  EXPECT_EQ(c.node("n3").pushes_adopted(), 2u);
  EXPECT_EQ(values_of(c.get("n3", "k")), (std::vector<std::string>{"v2", "v3"}));
  EXPECT_TRUE(c.converged());
}

TEST(Replica, PushFromAnotherStateIsMerged) {
  TestCluster c(3);
  c.put("n1", "k", "v1");
  c.deliver_all();
  c.partition({"n1"});
  c.put("n2", "k", "v2");  // blind, unseen by n1
  c.deliver_all();
  c.heal();
  const uint64_t adopted = c.node("n2").pushes_adopted();
  c.put("n1", "k", "v3");  // pushed with n1's base, which n2 and n3 no longer hold
  c.deliver_all();
  EXPECT_EQ(c.node("n2").pushes_adopted(), adopted);
  EXPECT_EQ(values_of(c.get("n2", "k")), (std::vector<std::string>{"v1", "v2", "v3"}));
  EXPECT_EQ(values_of(c.get("n3", "k")), (std::vector<std::string>{"v1", "v2", "v3"}));

  // A batch without a base hash for every state (an older sender) is merged too.
  pb::PeerMessage m;
  pb::KeyState s;  // an empty state: merged, it changes nothing
  s.set_key("k");
  m.mutable_push()->add_states(s.SerializeAsString());
  m.mutable_push()->add_states(s.SerializeAsString());
  // n3's own hash of the key: were it taken as the base of the first state,
  // n3 would replace its three versions with that empty state.
  m.mutable_push()->add_base_hashes(KeyStore::hash_serialized(c.disk_["n3"][KeyStore::storage_key("r:k")]));
  c.step("n3", PeerInput{"n1", m});
  EXPECT_EQ(values_of(c.get("n3", "k")), (std::vector<std::string>{"v1", "v2", "v3"}));
}

TEST(Replica, WrongMergeInjectedByATestIsNeverSkipped) {
  Config config;
  config.test_faults.lww_merge = true;
  TestCluster c(3, config);
  auto first = c.put("n1", "k", "v1");
  c.deliver_all();
  c.put("n1", "k", "v2", first.put().context());
  c.deliver_all();
  EXPECT_EQ(c.node("n2").pushes_adopted(), 0u);
}

TEST(Replica, MalformedPeerStateIsIgnored) {
  TestCluster c(2);
  pb::PeerMessage m;
  pb::KeyState bad;
  bad.set_key("bad");
  auto* sib = bad.add_siblings();  // dot outside its context: invalid
  sib->set_dot_node("n2");
  sib->set_dot_counter(9);
  m.mutable_push()->add_states(bad.SerializeAsString());
  m.mutable_push()->add_states("\xff\xff garbage, not a KeyState");
  m.mutable_push()->set_ack_wanted(true);
  c.step("n1", PeerInput{"n2", m});
  c.step("n1", PeerInput{"stranger", m});
  EXPECT_EQ(c.node("n1").live_keys(), 0u);
  pb::PeerMessage level;
  level.mutable_ae_level()->set_level(99);
  c.step("n1", PeerInput{"n2", level});
  level.mutable_ae_level()->set_level(0);
  level.mutable_ae_level()->add_indices(12345);
  level.mutable_ae_level()->add_hashes(1);
  c.step("n1", PeerInput{"n2", level});
  EXPECT_EQ(c.put("n1", "ok", "still serving").error(), pb::OK);
}

TEST(Replica, SameSeedAndInputsGiveSameOutputs) {
  auto run = [] {
    TestCluster c(3);
    c.partition({"n2"});
    for (int i = 0; i < 20; ++i) c.put(i % 2 ? "n1" : "n2", "k" + std::to_string(i % 5), "v" + std::to_string(i));
    c.heal();
    c.advance(2000);
    std::string trace;
    for (auto& [id, disk] : c.disk_)
      for (auto& [k, v] : disk) trace += id + k + v;
    return trace + std::to_string(c.sent_);
  };
  EXPECT_EQ(run(), run());
}

TEST(Replica, ClusterStatusShowsEveryNode) {
  TestCluster c(3);
  c.advance(500);
  pb::Request r;
  r.mutable_cluster_status();
  auto st = c.request("n1", r);
  ASSERT_EQ(st.cluster_status().nodes_size(), 3);
  EXPECT_EQ(st.cluster_status().nodes(0).state(), "self");
  EXPECT_EQ(st.cluster_status().nodes(1).state(), "up");
  c.crash("n3");
  c.advance(4000);
  st = c.request("n1", r);
  EXPECT_EQ(st.cluster_status().nodes(2).state(), "down");
}

}  // namespace
}  // namespace stig::replication
