// Retries apply once on every node: the write id (client id, seq) kept with
// each key's state (docs/lazy-path.md "Retries"). A retry that reaches a node
// after the first attempt's gossip is answered, not applied; a write applied
// on two partitioned nodes counts once after they heal, for registers,
// counters and sets; write ids from peers are checked like any other input.
#include <gtest/gtest.h>

#include "replication/key_state.h"
#include "test_cluster.h"

namespace stig::replication {
namespace {

pb::Request with_id(pb::Request r, const std::string& client, uint64_t seq) {
  r.set_client_id(client);
  r.set_seq(seq);
  return r;
}

pb::Request counter_add(const std::string& key, int64_t delta) {
  pb::Request r;
  r.mutable_counter_add()->set_key(key);
  r.mutable_counter_add()->set_delta(delta);
  return r;
}

pb::Request put_request(const std::string& key, const std::string& value, const std::string& ctx = "") {
  pb::Request r;
  r.mutable_put()->set_key(key);
  r.mutable_put()->set_value(value);
  r.mutable_put()->set_context(ctx);
  return r;
}

pb::Request set_request(const std::string& key, const std::string& element, bool add) {
  pb::Request r;
  if (add) {
    r.mutable_set_add()->set_key(key);
    r.mutable_set_add()->set_element(element);
  } else {
    r.mutable_set_remove()->set_key(key);
    r.mutable_set_remove()->set_element(element);
  }
  return r;
}

int64_t counter_on(TestCluster& c, const NodeId& node, const std::string& key) {
  pb::Request r;
  r.mutable_counter_get()->set_key(key);
  return c.request(node, r).counter().value();
}

std::vector<std::string> set_on(TestCluster& c, const NodeId& node, const std::string& key) {
  pb::Request r;
  r.mutable_set_get()->set_key(key);
  const auto reply = c.request(node, r);
  return {reply.set().elements().begin(), reply.set().elements().end()};
}

// Heals, then lets pushes and anti-entropy run until every replica agrees.
void heal_and_converge(TestCluster& c) {
  c.heal();
  for (int i = 0; i < 100 && !c.converged(); ++i) c.advance(500);
  ASSERT_TRUE(c.converged());
}

TEST(Retry, RetryOnAnotherNodeAfterGossipIsAnsweredNotApplied) {
  TestCluster c(3);
  const auto add = with_id(counter_add("hits", 5), "agent-a", 7);
  EXPECT_EQ(c.request("n1", add).counter().value(), 5);
  c.deliver_all();
  const auto retried = c.request("n2", add);  // the reply to n1 was lost; the client tries n2
  EXPECT_EQ(retried.error(), pb::OK);
  EXPECT_EQ(retried.counter().value(), 5);
  c.advance(2000);
  for (const auto& n : {"n1", "n2", "n3"}) EXPECT_EQ(counter_on(c, n, "hits"), 5) << n;

  const auto put = with_id(put_request("doc", "v1"), "agent-a", 8);
  const auto first = c.request("n1", put);
  c.deliver_all();
  const auto again = c.request("n3", put);
  EXPECT_EQ(again.error(), pb::OK);
  EXPECT_EQ(again.put().dot_node(), first.put().dot_node());
  EXPECT_EQ(again.put().dot_counter(), first.put().dot_counter());
  c.advance(2000);
  EXPECT_EQ(values_of(c.get("n2", "doc")), (std::vector<std::string>{"v1"}));

  // A set remove retried after someone re-added the element must not remove
  // it again. (The set keeps another element: an emptied key is collected
  // once every replica has it, and its write ids with it.)
  c.request("n1", with_id(set_request("tags", "blue", true), "agent-b", 3));
  c.request("n1", with_id(set_request("tags", "red", true), "agent-b", 1));
  c.deliver_all();
  const auto remove = with_id(set_request("tags", "red", false), "agent-a", 9);
  c.request("n1", remove);
  c.deliver_all();
  c.request("n2", with_id(set_request("tags", "red", true), "agent-b", 2));
  c.deliver_all();
  EXPECT_EQ(c.request("n3", remove).error(), pb::OK);
  c.advance(2000);
  for (const auto& n : {"n1", "n2", "n3"})
    EXPECT_EQ(set_on(c, n, "tags"), (std::vector<std::string>{"blue", "red"})) << n;
}

TEST(Retry, CounterAddAppliedOnTwoPartitionedNodesCountsOnceAfterHeal) {
  TestCluster c(3);
  EXPECT_EQ(c.request("n1", with_id(counter_add("hits", 1), "agent-b", 1)).counter().value(), 1);
  c.advance(1000);
  c.partition({"n1"});
  const auto add = with_id(counter_add("hits", 5), "agent-a", 7);
  EXPECT_EQ(c.request("n1", add).counter().value(), 6);
  EXPECT_EQ(c.request("n2", add).counter().value(), 6);  // n2 cannot know: applied there too
  c.deliver_all();
  EXPECT_EQ(c.request("n3", with_id(counter_add("hits", -2), "agent-c", 1)).counter().value(), 4);
  heal_and_converge(c);
  for (const auto& n : {"n1", "n2", "n3"}) EXPECT_EQ(counter_on(c, n, "hits"), 4) << n;
  // Negative adds are compensated the same way.
  c.partition({"n3"});
  const auto take = with_id(counter_add("hits", -3), "agent-a", 8);
  c.request("n3", take);
  c.request("n1", take);
  heal_and_converge(c);
  for (const auto& n : {"n1", "n2", "n3"}) EXPECT_EQ(counter_on(c, n, "hits"), 1) << n;
}

TEST(Retry, PutAppliedOnTwoPartitionedNodesLeavesOneVersionAfterHeal) {
  TestCluster c(3);
  c.partition({"n1"});
  const auto put = with_id(put_request("doc", "draft"), "agent-a", 7);
  const auto on_n1 = c.request("n1", put);
  const auto on_n2 = c.request("n2", put);
  EXPECT_NE(on_n1.put().dot_node(), on_n2.put().dot_node());
  heal_and_converge(c);
  for (const auto& n : {"n1", "n2", "n3"}) {
    const auto got = c.get(n, "doc");
    ASSERT_EQ(got.get().versions_size(), 1) << n;
    EXPECT_EQ(got.get().versions(0).value(), "draft");
    EXPECT_EQ(got.get().versions(0).dot_node(), "n1");  // the copy with the smaller dot counts
  }
}

TEST(Retry, AWriteSupersededOnEitherSideStaysSupersededAfterHeal) {
  TestCluster c(3);
  c.partition({"n1"});
  const auto put = with_id(put_request("doc", "draft"), "agent-a", 7);
  c.request("n1", put);
  const auto on_n2 = c.request("n2", put);
  // On the majority side the client overwrites the copy it was shown.
  c.request("n2", with_id(put_request("doc", "final", on_n2.put().context()), "agent-a", 8));
  heal_and_converge(c);
  for (const auto& n : {"n1", "n2", "n3"}) EXPECT_EQ(values_of(c.get(n, "doc")), (std::vector<std::string>{"final"}));
}

TEST(Retry, SetAddAppliedOnTwoPartitionedNodesIsOneAddAfterHeal) {
  TestCluster c(3);
  c.request("n1", with_id(set_request("tags", "blue", true), "agent-b", 1));
  c.advance(1000);
  c.partition({"n1"});
  const auto add = with_id(set_request("tags", "red", true), "agent-a", 7);
  c.request("n1", add);
  c.request("n2", add);
  heal_and_converge(c);
  for (const auto& n : {"n1", "n2", "n3"})
    EXPECT_EQ(set_on(c, n, "tags"), (std::vector<std::string>{"blue", "red"})) << n;
  // One remove after the heal removes the add, both copies of it.
  c.request("n3", with_id(set_request("tags", "red", false), "agent-b", 2));
  c.advance(2000);
  for (const auto& n : {"n1", "n2", "n3"}) EXPECT_EQ(set_on(c, n, "tags"), (std::vector<std::string>{"blue"})) << n;
  // And a retry of the add, now known everywhere, is answered, not applied.
  EXPECT_EQ(c.request("n1", add).error(), pb::OK);
  c.advance(2000);
  EXPECT_EQ(set_on(c, "n2", "tags"), (std::vector<std::string>{"blue"}));
}

TEST(Retry, WithoutTheDedupARetryElsewhereCountsTwice) {
  Config config;
  config.test_faults.per_node_retry_dedup = true;
  TestCluster c(3, config);
  const auto add = with_id(counter_add("hits", 5), "agent-a", 7);
  c.request("n1", add);
  c.deliver_all();
  c.request("n2", add);
  c.advance(2000);
  EXPECT_EQ(counter_on(c, "n3", "hits"), 10);
}

// --- the key state ---------------------------------------------------------------

pb::KeyState register_with_copy(const std::string& node, uint64_t dot, const std::string& value) {
  pb::KeyState s;
  s.set_key("doc");
  s.set_type(pb::REGISTER);
  register_write(s, pb::VersionVector(), node, dot, value, false, WriteMeta{"agent", 1});
  EXPECT_TRUE(record_applied(s, "agent-a", 7, node, dot, 0));
  return s;
}

TEST(RetryKeyState, DuplicateSiblingsCollapseTheSameWayInEitherOrder) {
  const pb::KeyState a = register_with_copy("n1", 4, "draft");
  const pb::KeyState b = register_with_copy("n2", 9, "draft");
  pb::KeyState ab = a, ba = b;
  EXPECT_TRUE(merge_state(ab, b));
  EXPECT_TRUE(merge_state(ba, a));
  EXPECT_EQ(ab.SerializeAsString(), ba.SerializeAsString());
  ASSERT_EQ(ab.siblings_size(), 1);
  EXPECT_EQ(ab.siblings(0).dot_node(), "n1");
  EXPECT_TRUE(validate_state(ab).is_ok());
  // Merging an old copy again changes nothing: the dropped dot stays covered.
  EXPECT_FALSE(merge_state(ab, b));
  ASSERT_NE(find_applied(ab, "agent-a", 7), nullptr);
  EXPECT_EQ(find_applied(ab, "agent-a", 7)->node(), "n1");
}

TEST(RetryKeyState, CounterCopiesAreCompensatedOnceByTheLaterNode) {
  pb::KeyState a, b;
  for (auto* s : {&a, &b}) {
    s->set_key("hits");
    s->set_type(pb::COUNTER);
  }
  counter_add(a, "n1", 5, WriteMeta{"agent", 1});
  record_applied(a, "agent-a", 7, "n1", 0, 5);
  counter_add(b, "n2", 5, WriteMeta{"agent", 1});
  record_applied(b, "agent-a", 7, "n2", 0, 5);
  pb::KeyState on_n1 = a, on_n2 = b;
  merge_state(on_n1, b);
  merge_state(on_n2, a);
  EXPECT_FALSE(compensate_duplicate_adds(on_n1, "n1"));  // n1's copy counts
  EXPECT_TRUE(compensate_duplicate_adds(on_n2, "n2"));
  EXPECT_FALSE(compensate_duplicate_adds(on_n2, "n2"));  // once
  EXPECT_EQ(counter_value(on_n2), 5);
  merge_state(on_n1, on_n2);
  EXPECT_EQ(on_n1.SerializeAsString(), on_n2.SerializeAsString());
  EXPECT_EQ(counter_value(on_n1), 5);
}

TEST(RetryKeyState, EachNodeKeepsItsMostRecentWriteIds) {
  pb::KeyState s;
  s.set_key("hits");
  s.set_type(pb::COUNTER);
  for (uint64_t seq = 1; seq <= kMaxAppliedWritesPerNode + 10; ++seq) record_applied(s, "agent-a", seq, "n1", 0, 1);
  record_applied(s, "agent-b", 1, "n2", 0, 1);
  EXPECT_EQ(static_cast<size_t>(s.applied_size()), kMaxAppliedWritesPerNode + 1);
  EXPECT_EQ(find_applied(s, "agent-a", 1), nullptr);  // the oldest of n1's are forgotten
  EXPECT_NE(find_applied(s, "agent-a", kMaxAppliedWritesPerNode + 10), nullptr);
  EXPECT_NE(find_applied(s, "agent-b", 1), nullptr);  // n2's are not crowded out by n1's
  EXPECT_TRUE(validate_state(s).is_ok());
  // Over-long client ids are not recorded.
  EXPECT_FALSE(record_applied(s, std::string(kMaxClientIdBytes + 1, 'x'), 1, "n1", 0, 1));
}

// --- untrusted write ids from peers -------------------------------------------------

pb::PeerMessage push_of(const pb::KeyState& s) {
  pb::PeerMessage m;
  m.mutable_push()->add_states(s.SerializeAsString());
  return m;
}

TEST(RetryUntrusted, MalformedWriteIdsFromPeersAreIgnored) {
  TestCluster c(2);
  const auto base = [] {
    pb::KeyState s;
    s.set_key("hits");
    s.set_type(pb::COUNTER);
    auto* e = s.add_counter();
    e->set_node("n2");
    e->set_increments(5);
    return s;
  };
  std::vector<pb::KeyState> bad;
  {  // too many write ids of one node
    pb::KeyState s = base();
    for (uint64_t seq = 1; seq <= kMaxAppliedWritesPerNode + 1; ++seq) {
      auto* a = s.add_applied();
      a->set_client_id("agent-a");
      a->set_seq(seq);
      a->set_node("n2");
      a->set_order(seq);
    }
    bad.push_back(s);
  }
  const auto one = [&](auto&& edit) {
    pb::KeyState s = base();
    auto* a = s.add_applied();
    a->set_client_id("agent-a");
    a->set_seq(1);
    a->set_node("n2");
    a->set_order(1);
    a->set_delta(5);
    edit(*a);
    bad.push_back(s);
  };
  one([](pb::AppliedWrite& a) { a.set_client_id(std::string(kMaxClientIdBytes + 1, 'x')); });  // oversized
  one([](pb::AppliedWrite& a) { a.set_client_id(""); });
  one([](pb::AppliedWrite& a) { a.set_node("stranger"); });  // not in the cluster
  one([](pb::AppliedWrite& a) { a.set_order(0); });
  one([](pb::AppliedWrite& a) { a.set_order(kMaxDotCounter + 1); });
  one([](pb::AppliedWrite& a) { a.set_dot_counter(3); });  // a counter add has no dot
  one([](pb::AppliedWrite& a) { a.mutable_cut_context(); });  // only registers
  {  // not sorted
    pb::KeyState s = base();
    for (uint64_t seq : {2, 1}) {
      auto* a = s.add_applied();
      a->set_client_id("agent-a");
      a->set_seq(seq);
      a->set_node("n2");
      a->set_order(seq);
    }
    bad.push_back(s);
  }
  {  // a register write whose dot lies outside the key's context
    pb::KeyState s;
    s.set_key("doc");
    s.set_type(pb::REGISTER);
    auto* a = s.add_applied();
    a->set_client_id("agent-a");
    a->set_seq(1);
    a->set_node("n2");
    a->set_dot_counter(9);
    a->set_order(1);
    bad.push_back(s);
  }
  for (const auto& s : bad) c.step("n1", PeerInput{"n2", push_of(s)});
  EXPECT_EQ(c.node("n1").live_keys(), 0u);
  // And the node still serves, and a well-formed state is taken.
  pb::KeyState good = base();
  record_applied(good, "agent-a", 1, "n2", 0, 5);
  c.step("n1", PeerInput{"n2", push_of(good)});
  EXPECT_EQ(c.node("n1").live_keys(), 1u);
  EXPECT_EQ(counter_on(c, "n1", "hits"), 5);
  // The retry of that add on n1 is answered from the write id it now holds.
  EXPECT_EQ(c.request("n1", with_id(counter_add("hits", 5), "agent-a", 1)).counter().value(), 5);
  EXPECT_EQ(counter_on(c, "n1", "hits"), 5);
}

}  // namespace
}  // namespace stig::replication
