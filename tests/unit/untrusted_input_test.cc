// Untrusted input reaching the core: contexts, peer states, graves,
// anti-entropy requests, counters, error texts and the retry cache. Each test
// reproduces one way a client or a peer could crash, stall or bloat a node
// (issue 6) and checks the node refuses or bounds it and keeps serving.
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "replication/key_state.h"
#include "replication/replica.h"
#include "tests/unit/test_cluster.h"

namespace stig::replication {
namespace {

std::string context_of(std::initializer_list<std::pair<const char*, uint64_t>> entries) {
  pb::VersionVector vv;
  for (const auto& [node, counter] : entries) vv_raise(vv, node, counter);
  return encode_context(vv);
}

pb::VersionVector decoded(const std::string& context) {
  pb::VersionVector vv;
  EXPECT_TRUE(decode_context(context, vv).is_ok());
  return vv;
}

pb::PeerMessage push_of(const pb::KeyState& state) {
  pb::PeerMessage m;
  m.mutable_push()->add_states(state.SerializeAsString());
  m.mutable_push()->set_batch_id(1);
  return m;
}

pb::KeyState register_state(const std::string& key, const NodeId& node, uint64_t counter, const std::string& value) {
  pb::KeyState s;
  s.set_key(key);
  s.set_type(pb::REGISTER);
  vv_raise(*s.mutable_context(), node, counter);
  auto* sib = s.add_siblings();
  sib->set_dot_node(node);
  sib->set_dot_counter(counter);
  sib->set_value(value);
  sib->set_modified_by("peer");
  return s;
}

// Issue 6 item 1: `stig put a v --context {n2: 2^64-1}` made n2 adopt the
// counter, wrap and abort on its next put; a context claiming dots nobody
// issued also hid later real writes.
TEST(UntrustedInput, ClientContextCannotClaimDotsNobodyIssued) {
  TestCluster c(3);
  // Beyond any counter a node may reach: refused outright.
  auto huge = c.put("n1", "a", "v", context_of({{"n2", ~uint64_t{0}}}));
  EXPECT_EQ(huge.error(), pb::MALFORMED_CONTEXT) << huge.error_message();
  // Plausible but never issued: cut down to what n1 has seen of n2 (nothing).
  auto forged = c.put("n1", "a", "v1", context_of({{"n2", 1000000000000ull}, {"n3", 5}}));
  ASSERT_EQ(forged.error(), pb::OK) << forged.error_message();
  EXPECT_EQ(vv_get(decoded(forged.put().context()), "n2"), 0u);
  EXPECT_EQ(vv_get(decoded(forged.put().context()), "n3"), 0u);
  EXPECT_TRUE(forged.put().context_cut());
  c.deliver_all();
  // n2 keeps writing, and its writes are not hidden by the forged claim.
  auto n2_write = c.put("n2", "a", "v2");
  ASSERT_EQ(n2_write.error(), pb::OK) << n2_write.error_message();
  EXPECT_LT(n2_write.put().dot_counter(), 1000u);
  c.deliver_all();
  for (const auto& id : c.ids_) EXPECT_EQ(values_of(c.get(id, "a")), (std::vector<std::string>{"v1", "v2"})) << id;
  EXPECT_TRUE(c.converged());
  // A context this node has seen is kept whole: it supersedes what it covers.
  auto resolved = c.put("n3", "a", "v3", c.get("n3", "a").get().context());
  c.deliver_all();
  EXPECT_EQ(values_of(c.get("n1", "a")), std::vector<std::string>{"v3"});
  (void)resolved;
}

// A client's context from another node that this node has not heard of yet
// is cut down, so the write becomes a sibling of the unseen version instead
// of silently superseding it.
TEST(UntrustedInput, ContextAheadOfThisNodeMakesASiblingNotALoss) {
  TestCluster c(2);
  c.partition({"n1"});
  auto on_n2 = c.put("n2", "k", "from-n2");
  auto on_n1 = c.put("n1", "k", "from-n1", on_n2.put().context());
  ASSERT_EQ(on_n1.error(), pb::OK) << on_n1.error_message();
  EXPECT_TRUE(on_n1.put().context_cut());
  EXPECT_EQ(on_n1.put().applied_context(), "");
  c.heal();
  c.advance(3000);
  EXPECT_EQ(values_of(c.get("n1", "k")), (std::vector<std::string>{"from-n1", "from-n2"}));
  EXPECT_TRUE(c.converged());
}

// Issue 6 item 2: a pushed state naming the receiver's own dots far ahead.
TEST(UntrustedInput, PeerStateWithTheReceiversDotsAtTheLimit) {
  TestCluster c(2);
  // Above the limit: malformed, ignored.
  c.step("n1", PeerInput{"n2", push_of(register_state("a", "n1", ~uint64_t{0}, "x"))});
  EXPECT_EQ(c.node("n1").live_keys(), 0u);
  auto ok = c.put("n1", "a", "v");
  ASSERT_EQ(ok.error(), pb::OK);
  EXPECT_LT(ok.put().dot_counter(), 100u);
  // Far ahead but possible (n1 lost its disk): adopted, never reissued.
  c.step("n1", PeerInput{"n2", push_of(register_state("b", "n1", 1000000000000ull, "y"))});
  auto after = c.put("n1", "b", "w");
  ASSERT_EQ(after.error(), pb::OK) << after.error_message();
  EXPECT_GT(after.put().dot_counter(), 1000000000000ull);
  // At the limit: writes are refused with an error, never wrapped.
  c.step("n1", PeerInput{"n2", push_of(register_state("c", "n1", kMaxDotCounter, "z"))});
  auto exhausted = c.put("n1", "c", "w");
  EXPECT_EQ(exhausted.error(), pb::UNAVAILABLE);
  EXPECT_NE(exhausted.error_message().find("another node"), std::string::npos) << exhausted.error_message();
  pb::Request add;
  add.mutable_set_add()->set_key("s");
  add.mutable_set_add()->set_element("e");
  EXPECT_EQ(c.request("n1", add).error(), pb::UNAVAILABLE);
  // Other nodes still take writes.
  EXPECT_EQ(c.put("n2", "c", "fine").error(), pb::OK);
}

// Issue 6 item 3: collect{graves:[G,G]} with G a key's current context.
TEST(UntrustedInput, CollectNamingTheSameGraveTwice) {
  TestCluster c(2);
  auto put = c.put("n1", "k", "v");
  c.deliver_all();
  pb::PeerMessage m;
  for (int i = 0; i < 2; ++i) {
    auto* g = m.mutable_collect()->add_graves();
    g->set_key("k");
    g->set_type(pb::REGISTER);
    *g->mutable_context() = decoded(put.put().context());
  }
  c.step("n1", PeerInput{"n2", m});
  EXPECT_EQ(c.node("n1").live_keys(), 0u);
  EXPECT_EQ(c.put("n1", "k", "again").error(), pb::OK);
  c.deliver_all();
  EXPECT_EQ(values_of(c.get("n2", "k")), std::vector<std::string>{"again"});
}

// Issue 6 item 4: a collect grave naming the receiver's dot 10^12 made the
// next put of that key abort (the grave's context became the key's).
TEST(UntrustedInput, CollectGraveWithAFutureDot) {
  TestCluster c(2);
  pb::PeerMessage m;
  // The grave from the issue, byte for byte: key "px/grave-n1", context {n1: 10^12}.
  ASSERT_TRUE(m.mutable_collect()->add_graves()->ParseFromString(
      std::string("\x0a\x0b\x70\x78\x2f\x67\x72\x61\x76\x65\x2d\x6e\x31\x1a\x0d\x0a\x0b\x0a\x02\x6e\x31\x10\x80\xa0"
                  "\x94\xa5\x8d\x1d",
                  28)));
  ASSERT_EQ(m.collect().graves(0).key(), "px/grave-n1");
  c.step("n1", PeerInput{"n2", m});
  auto put = c.put("n1", "px/grave-n1", "v");
  ASSERT_EQ(put.error(), pb::OK) << put.error_message();
  EXPECT_GT(put.put().dot_counter(), 1000000000000ull);
  c.deliver_all();
  EXPECT_EQ(values_of(c.get("n2", "px/grave-n1")), std::vector<std::string>{"v"});
}

// Issue 6 item 5: an ae_level naming index 0 100,000 times made the node
// answer with a 14 MB frame its peer refused.
TEST(UntrustedInput, AntiEntropyRequestsAndRepliesAreBounded) {
  Config cfg;
  cfg.max_batch_bytes = 256 << 10;
  TestCluster c(2, cfg);
  c.partition({"n1"});  // n2 learns nothing by itself
  const std::string big(100 << 10, 'x');
  for (int i = 0; i < 64; ++i) ASSERT_EQ(c.put("n1", "big-" + std::to_string(i), big).error(), pb::OK);
  c.queue_.clear();
  c.heal();

  pb::PeerMessage flood;
  for (int i = 0; i < 100000; ++i) {
    flood.mutable_ae_level()->add_indices(0);
    flood.mutable_ae_level()->add_hashes(1);
  }
  c.step("n1", PeerInput{"n2", flood});
  EXPECT_TRUE(c.queue_.empty()) << "a malformed request was answered";

  // A well-formed request for every leaf: the answer stays within the budget.
  pb::PeerMessage leaves;
  auto* level = leaves.mutable_ae_level();
  level->set_level(cfg.merkle_depth);
  uint32_t width = 1;
  for (uint32_t d = 0; d < cfg.merkle_depth; ++d) width *= cfg.merkle_fanout;
  for (uint32_t i = 0; i < width; ++i) {
    level->add_indices(i);
    level->add_hashes(0);
  }
  c.step("n1", PeerInput{"n2", leaves});
  ASSERT_FALSE(c.queue_.empty());
  const auto& reply = *c.queue_.back().msg;
  ASSERT_TRUE(reply.has_ae_keys());
  EXPECT_GT(reply.ae_keys().states_size(), 0);
  EXPECT_LE(reply.ByteSizeLong(), cfg.max_batch_bytes + (110u << 10));
  // Round after round, anti-entropy still brings everything across.
  c.advance(60000);
  EXPECT_EQ(c.node("n2").live_keys(), 64u);
  EXPECT_TRUE(c.converged());
}

// Issue 6 item 6: a context or counter with 20,000 entries stalled a node in
// quadratic merges. Only nodes of the cluster may appear, which bounds both.
TEST(UntrustedInput, StatesNamingNodesOutsideTheClusterAreRefused) {
  TestCluster c(2);
  pb::KeyState wide = register_state("wide", "n2", 1, "v");
  for (int i = 0; i < 20000; ++i) vv_raise(*wide.mutable_context(), "x" + std::to_string(100000 + i), 1);
  ASSERT_TRUE(validate_state(wide).is_ok());
  c.step("n1", PeerInput{"n2", push_of(wide)});
  EXPECT_EQ(c.node("n1").live_keys(), 0u);

  pb::KeyState counter;
  counter.set_key("ctr");
  counter.set_type(pb::COUNTER);
  for (int i = 0; i < 20000; ++i) {
    auto* e = counter.add_counter();
    e->set_node("x" + std::to_string(100000 + i));
    e->set_increments(1);
  }
  ASSERT_TRUE(validate_state(counter).is_ok());
  c.step("n1", PeerInput{"n2", push_of(counter)});
  EXPECT_EQ(c.node("n1").live_keys(), 0u);

  // More siblings than the nodes could together have made.
  Config small;
  small.max_siblings = 2;
  TestCluster d(2, small);
  pb::KeyState many;
  many.set_key("many");
  many.set_type(pb::REGISTER);
  for (uint64_t i = 1; i <= 5; ++i) {
    auto* s = many.add_siblings();
    s->set_dot_node("n2");
    s->set_dot_counter(i);
    s->set_value("v");
  }
  vv_raise(*many.mutable_context(), "n2", 5);
  d.step("n1", PeerInput{"n2", push_of(many)});
  EXPECT_EQ(d.node("n1").live_keys(), 0u);
  EXPECT_EQ(d.put("n1", "ok", "v").error(), pb::OK);
}

// Issue 6 item 7: after `counter add ck 1` and `counter add ck 0` the
// digests differed forever: a merge changing only metadata said "unchanged".
TEST(UntrustedInput, CounterAddOfZeroConverges) {
  TestCluster c(3);
  pb::Request add;
  add.mutable_counter_add()->set_key("ck");
  add.mutable_counter_add()->set_delta(1);
  ASSERT_EQ(c.request("n1", add).error(), pb::OK);
  c.advance(100);
  add.mutable_counter_add()->set_delta(0);
  add.set_agent("someone-else");
  ASSERT_EQ(c.request("n1", add).error(), pb::OK);
  c.advance(5000);
  EXPECT_TRUE(c.converged());
  pb::Request get;
  get.mutable_counter_get()->set_key("ck");
  auto got = c.request("n3", get);
  EXPECT_EQ(got.counter().value(), 1);
  EXPECT_EQ(got.counter().modified_by(), "someone-else");
}

// Issue 6 item 8: `stig put $'\xff' v` then `stig counter add $'\xff' 1`
// echoed the key into error_message (a protobuf string), and the reply
// failed to parse at the client.
TEST(UntrustedInput, ErrorRepliesAreValidUtf8) {
  TestCluster c(1);
  const std::string key = "\xff\xfe\nkey";
  ASSERT_EQ(c.put("n1", key, "v").error(), pb::OK);
  pb::Request add;
  add.mutable_counter_add()->set_key(key);
  add.mutable_counter_add()->set_delta(1);
  add.set_client_id("\xc3\x28-client");
  auto r = c.request("n1", add);
  EXPECT_EQ(r.error(), pb::WRONG_TYPE);
  EXPECT_EQ(r.error_message(), "key '\\xff\\xfe\\x0akey' holds a register, not a counter");
  pb::Response parsed;
  ASSERT_TRUE(parsed.ParseFromString(r.SerializeAsString())) << "reply does not survive the wire";
  EXPECT_EQ(parsed.error_message(), r.error_message());
}

// Issue 6 item 9: 150 puts of 1 MiB with fresh client ids grew the node by
// 223 MiB: the retry cache held whole replies, values included.
TEST(UntrustedInput, RetryCacheKeepsNoValuesAndIsBounded) {
  TestCluster c(1);
  const std::string mib(1 << 20, 'v');
  pb::Response first;
  pb::Request put;
  for (int i = 0; i < 150; ++i) {
    put.set_client_id("client-" + std::to_string(i));
    put.set_seq(1);
    put.mutable_put()->set_key("k" + std::to_string(i % 3));
    put.mutable_put()->set_value(mib);
    put.mutable_put()->set_context(c.get("n1", put.put().key()).get().context());
    auto r = c.request("n1", put);
    ASSERT_EQ(r.error(), pb::OK) << r.error_message();
    if (i == 149) first = r;
  }
  EXPECT_EQ(c.node("n1").retry_cache_clients(), 150u);
  EXPECT_LT(c.node("n1").retry_cache_bytes(), 150u * 1024);
  // A retry still gets the whole answer, values refilled from the store.
  auto again = c.request("n1", put);
  EXPECT_EQ(again.put().dot_counter(), first.put().dot_counter());
  EXPECT_EQ(again.put().context(), first.put().context());
  ASSERT_EQ(again.put().versions_size(), 1);
  EXPECT_EQ(again.put().versions(0).value(), mib);

  // Bounded by bytes: a flood of fresh clients evicts the oldest.
  Config cfg;
  cfg.dedup_max_bytes = 64 << 10;
  TestCluster d(1, cfg);
  pb::Request add;
  add.mutable_counter_add()->set_key("n");
  add.mutable_counter_add()->set_delta(1);
  for (int i = 0; i < 2000; ++i) {
    add.set_client_id("flood-" + std::to_string(i));
    add.set_seq(1);
    ASSERT_EQ(d.request("n1", add).error(), pb::OK);
  }
  EXPECT_LE(d.node("n1").retry_cache_bytes(), cfg.dedup_max_bytes);
  EXPECT_LT(d.node("n1").retry_cache_clients(), 2000u);
  // Idle clients are forgotten.
  d.advance(cfg.dedup_idle_ms + 1000);
  EXPECT_EQ(d.node("n1").retry_cache_clients(), 0u);
  EXPECT_EQ(d.node("n1").retry_cache_bytes(), 0u);
}

}  // namespace
}  // namespace stig::replication
