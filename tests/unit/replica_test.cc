// Replica driven message by message: replication, siblings, partitions and
// anti-entropy, durability levels, tombstone collection, recovery, retries.
#include <deque>
#include <map>
#include <optional>
#include <set>

#include <gtest/gtest.h>

#include "replication/key_state.h"
#include "replication/replica.h"

namespace stig::replication {
namespace {

namespace pb = stigmergy::v1;

// A deterministic in-memory network of replicas, enough to drive the core
// step by step (the full simulator lives in sim/).
class TestCluster {
 public:
  explicit TestCluster(int n, Config base = Config()) {
    for (int i = 1; i <= n; ++i) ids_.push_back("n" + std::to_string(i));
    base_ = base;
    for (const auto& id : ids_) start(id);
  }

  Config config_for(const NodeId& id) const {
    Config c = base_;
    c.self = id;
    c.self_address = id + ":0";
    c.peers.clear();
    for (const auto& p : ids_)
      if (p != id) c.peers.push_back({p, p + ":0"});
    return c;
  }

  void start(const NodeId& id) {
    RecoveredState rec;
    for (const auto& [k, v] : disk_[id]) rec.entries.emplace_back(k, v);
    nodes_[id] = std::make_unique<Replica>(config_for(id), 42, rec);
    drain(id);
  }
  void crash(const NodeId& id) { nodes_.erase(id); }

  Replica& node(const NodeId& id) { return *nodes_.at(id); }

  pb::Response request(const NodeId& id, pb::Request req) {
    const ClientToken token = next_token_++;
    if (req.client_id().empty()) req.set_client_id("client");
    if (req.seq() == 0) req.set_seq(next_seq_++);
    if (req.agent().empty()) req.set_agent("tester");
    step(id, ClientInput{token, req});
    for (int round = 0; round < 1000 && !replies_.count(token); ++round) {
      if (!deliver_one()) advance(50);
    }
    EXPECT_TRUE(replies_.count(token)) << "no reply";
    return replies_[token];
  }

  pb::Response put(const NodeId& id, const std::string& key, const std::string& value, const std::string& ctx = "",
                   pb::Durability d = pb::DURABILITY_LOCAL) {
    pb::Request r;
    auto* p = r.mutable_put();
    p->set_key(key);
    p->set_value(value);
    p->set_context(ctx);
    p->set_durability(d);
    return request(id, r);
  }
  pb::Response get(const NodeId& id, const std::string& key) {
    pb::Request r;
    r.mutable_get()->set_key(key);
    return request(id, r);
  }
  pb::Response del(const NodeId& id, const std::string& key, const std::string& ctx) {
    pb::Request r;
    r.mutable_del()->set_key(key);
    r.mutable_del()->set_context(ctx);
    return request(id, r);
  }

  void step(const NodeId& id, Input in) {
    auto it = nodes_.find(id);
    if (it == nodes_.end()) return;
    it->second->step(Now{now_, 1700000000000 + now_}, std::move(in));
    drain(id);
  }

  void drain(const NodeId& id) {
    Output out = nodes_.at(id)->take_output();
    for (auto& p : out.persist) {
      if (p.erase)
        disk_[id].erase(p.key);
      else
        disk_[id][p.key] = p.value;
    }
    for (auto& m : out.messages) {
      ++sent_;
      if (blocked_.count({id, m.to}) || blocked_.count({m.to, id})) continue;
      queue_.push_back({id, m.to, m.message});
    }
    for (auto& r : out.replies) replies_[r.token] = r.response;
  }

  bool deliver_one() {
    if (queue_.empty()) return false;
    auto [from, to, msg] = queue_.front();
    queue_.pop_front();
    if (msg->has_push()) pushed_states_ += msg->push().states_size();
    if (msg->has_ae_keys()) ae_states_ += msg->ae_keys().states_size();
    step(to, PeerInput{from, *msg});
    return true;
  }
  void deliver_all() {
    for (int i = 0; i < 100000 && deliver_one(); ++i) {
    }
  }
  void advance(int64_t ms) {
    const int64_t end = now_ + ms;
    while (now_ < end) {
      now_ += 10;
      for (const auto& id : ids_) step(id, Tick{});
      deliver_all();
    }
  }

  void partition(const std::set<NodeId>& side) {
    for (const auto& a : ids_)
      for (const auto& b : ids_)
        if (side.count(a) != side.count(b)) blocked_.insert({a, b});
  }
  void heal() { blocked_.clear(); }

  bool converged() {
    uint64_t d = 0;
    bool first = true;
    for (auto& [id, n] : nodes_) {
      n->take_output();  // settle
      if (first) d = n->state_digest(), first = false;
      if (n->state_digest() != d) return false;
    }
    return true;
  }

  std::vector<NodeId> ids_;
  Config base_;
  std::map<NodeId, std::unique_ptr<Replica>> nodes_;
  std::map<NodeId, std::map<std::string, std::string>> disk_;
  struct InFlight {
    NodeId from, to;
    std::shared_ptr<const pb::PeerMessage> msg;
  };
  std::deque<InFlight> queue_;
  std::set<std::pair<NodeId, NodeId>> blocked_;
  std::map<ClientToken, pb::Response> replies_;
  MonoTime now_ = 1000;
  ClientToken next_token_ = 1;
  uint64_t next_seq_ = 1;
  uint64_t sent_ = 0, pushed_states_ = 0, ae_states_ = 0;
};

std::vector<std::string> values_of(const pb::Response& r) {
  std::vector<std::string> out;
  for (const auto& v : r.get().versions()) out.push_back(v.value());
  std::sort(out.begin(), out.end());
  return out;
}

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
