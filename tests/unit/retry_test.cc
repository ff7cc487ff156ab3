// Retries apply once on every node: the write ids (client id, seq) kept with
// each key's state (replication/write_ids.h, docs/lazy-path.md "Retries"). A
// retry that reaches a node after the first attempt's gossip is answered, not
// applied; a write applied on two partitioned nodes counts once after they
// heal, for registers, counters and sets; a retry a node cannot check is
// refused with RETRY_UNKNOWN; write ids from peers are checked like any
// other input.
#include <gtest/gtest.h>

#include "replication/client_sessions.h"

#include "replication/key_state.h"
#include "replication/write_ids.h"
#include "test_cluster.h"

namespace stig::replication {
namespace {

pb::Request with_id(pb::Request r, const std::string& client, uint64_t seq) {
  r.set_client_id(client);
  r.set_seq(seq);
  return r;
}

// The same request sent again after a timeout, as the client sends it: the
// attempt number and the node tried first with the client's horizon for it.
pb::Request as_retry(pb::Request r, const std::string& tried, uint64_t horizon = 0) {
  r.set_attempt(2);
  auto* t = r.add_tried();
  t->set_node(tried);
  t->set_horizon(horizon);
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
  const auto retried = c.request("n2", as_retry(add, "n1"));  // the reply from n1 was lost
  EXPECT_EQ(retried.error(), pb::OK);
  EXPECT_EQ(retried.counter().value(), 5);
  c.advance(2000);
  for (const auto& n : {"n1", "n2", "n3"}) EXPECT_EQ(counter_on(c, n, "hits"), 5) << n;

  const auto put = with_id(put_request("doc", "v1"), "agent-a", 8);
  const auto first = c.request("n1", put);
  c.deliver_all();
  const auto again = c.request("n3", as_retry(put, "n1"));
  EXPECT_EQ(again.error(), pb::OK);
  EXPECT_EQ(again.put().dot_node(), first.put().dot_node());
  EXPECT_EQ(again.put().dot_counter(), first.put().dot_counter());
  c.advance(2000);
  EXPECT_EQ(values_of(c.get("n2", "doc")), (std::vector<std::string>{"v1"}));

  // A set remove retried after someone re-added the element must not remove
  // it again.
  c.request("n1", with_id(set_request("tags", "blue", true), "agent-b", 3));
  c.request("n1", with_id(set_request("tags", "red", true), "agent-b", 1));
  c.deliver_all();
  const auto remove = with_id(set_request("tags", "red", false), "agent-a", 9);
  c.request("n1", remove);
  c.deliver_all();
  c.request("n2", with_id(set_request("tags", "red", true), "agent-b", 2));
  c.deliver_all();
  EXPECT_EQ(c.request("n3", as_retry(remove, "n1")).error(), pb::OK);
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
  EXPECT_EQ(c.request("n2", as_retry(add, "n1")).counter().value(), 6);  // n2 cannot know: applied there too
  c.deliver_all();
  EXPECT_EQ(c.request("n3", with_id(counter_add("hits", -2), "agent-c", 1)).counter().value(), 4);
  heal_and_converge(c);
  for (const auto& n : {"n1", "n2", "n3"}) EXPECT_EQ(counter_on(c, n, "hits"), 4) << n;
  // Negative adds are compensated the same way.
  c.partition({"n3"});
  const auto take = with_id(counter_add("hits", -3), "agent-a", 8);
  c.request("n3", take);
  c.request("n1", as_retry(take, "n3"));
  heal_and_converge(c);
  for (const auto& n : {"n1", "n2", "n3"}) EXPECT_EQ(counter_on(c, n, "hits"), 1) << n;
}

TEST(Retry, PutAppliedOnTwoPartitionedNodesLeavesOneVersionAfterHeal) {
  TestCluster c(3);
  c.partition({"n1"});
  const auto put = with_id(put_request("doc", "draft"), "agent-a", 7);
  const auto on_n1 = c.request("n1", put);
  const auto on_n2 = c.request("n2", as_retry(put, "n1"));
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
  const auto on_n2 = c.request("n2", as_retry(put, "n1"));
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
  c.request("n2", as_retry(add, "n1"));
  heal_and_converge(c);
  for (const auto& n : {"n1", "n2", "n3"})
    EXPECT_EQ(set_on(c, n, "tags"), (std::vector<std::string>{"blue", "red"})) << n;
  // One remove after the heal removes the add, both copies of it.
  c.request("n3", with_id(set_request("tags", "red", false), "agent-b", 2));
  c.advance(2000);
  for (const auto& n : {"n1", "n2", "n3"}) EXPECT_EQ(set_on(c, n, "tags"), (std::vector<std::string>{"blue"})) << n;
  // And a retry of the add, now known everywhere, is answered, not applied.
  EXPECT_EQ(c.request("n1", as_retry(add, "n2")).error(), pb::OK);
  c.advance(2000);
  EXPECT_EQ(set_on(c, "n2", "tags"), (std::vector<std::string>{"blue"}));
}

TEST(Retry, ARetryOfAPutWhoseContextWasCutIsAnsweredAsTheFirstAttemptWas) {
  TestCluster c(3);
  c.partition({"n2"});
  const auto seen = c.request("n2", with_id(put_request("doc", "v0"), "agent-b", 1));  // n1 has not seen it
  const auto put = with_id(put_request("doc", "v1", seen.put().context()), "agent-a", 1);
  const auto first = c.request("n1", put);
  ASSERT_TRUE(first.put().context_cut());
  c.deliver_all();  // n1's state reaches n3
  const auto again = c.request("n3", as_retry(put, "n1"));
  EXPECT_EQ(again.error(), pb::OK);
  EXPECT_TRUE(again.put().context_cut());
  EXPECT_EQ(again.put().applied_context(), first.put().applied_context());
  EXPECT_EQ(again.put().dot_counter(), first.put().dot_counter());
}

TEST(Retry, ARetryTheNodeCannotCheckIsRefusedNotApplied) {
  TestCluster c(3);
  // The client last heard n1's dot counter here; then its add to n1 timed out.
  const uint64_t horizon = c.request("n1", with_id(counter_add("hits", 1), "agent-a", 1)).node_dot();
  const auto add = with_id(counter_add("hits", 5), "agent-a", 2);
  c.request("n1", add);
  // n1 takes more writes of the key than it keeps write ids of.
  for (uint64_t seq = 1; seq <= kWriteIdsPerNode; ++seq)
    c.request("n1", with_id(counter_add("hits", 10), "agent-b", seq));
  c.deliver_all();
  const auto refused = c.request("n2", as_retry(add, "n1", horizon));
  EXPECT_EQ(refused.error(), pb::RETRY_UNKNOWN);
  EXPECT_NE(refused.error_message().find("n1"), std::string::npos) << refused.error_message();
  c.advance(2000);
  const int64_t expected = 1 + 5 + 10 * static_cast<int64_t>(kWriteIdsPerNode);
  for (const auto& n : {"n1", "n2", "n3"}) EXPECT_EQ(counter_on(c, n, "hits"), expected) << n;
  // A retry whose first attempt came after what n1 forgot is still checked:
  // this one was never applied anywhere, so it applies.
  pb::Request look;
  look.mutable_counter_get()->set_key("hits");
  const uint64_t fresh = c.request("n1", look).node_dot();
  const auto later = with_id(counter_add("hits", 100), "agent-a", 3);
  EXPECT_EQ(c.request("n2", as_retry(later, "n1", fresh)).error(), pb::OK);
  c.advance(2000);
  EXPECT_EQ(counter_on(c, "n3", "hits"), expected + 100);
}

TEST(Retry, WithoutTheDedupARetryElsewhereCountsTwice) {
  Config config;
  config.test_faults.per_node_retry_dedup = true;
  TestCluster c(3, config);
  const auto add = with_id(counter_add("hits", 5), "agent-a", 7);
  c.request("n1", add);
  c.deliver_all();
  c.request("n2", as_retry(add, "n1"));
  c.advance(2000);
  EXPECT_EQ(counter_on(c, "n3", "hits"), 10);
}

// --- the key state ---------------------------------------------------------------

pb::KeyState register_with_copy(const std::string& node, uint64_t dot, const std::string& value) {
  pb::KeyState s;
  s.set_key("doc");
  s.set_type(pb::REGISTER);
  register_write(s, pb::VersionVector(), node, dot, value, false, WriteMeta{"agent", 1});
  record_write(s, node, dot, "agent-a", 7, 0, 0);
  return s;
}

// The per-node retry cache on its own: seqs arrive in any order (pipelined
// clients, retries), the window keeps the newest kWindow of them, and what
// falls out of it is refused as stale rather than applied again.
TEST(RetryCache, WindowKeepsTheNewestSeqsInAnyArrivalOrder) {
  using A = ClientSessions::Admission;
  ClientSessions cache(ClientSessions::Limits{});
  const size_t empty_bytes = cache.bytes();
  // Out of order: 5, 3, 9, 4.
  for (uint64_t seq : {5, 3, 9, 4}) EXPECT_EQ(cache.admit("c", seq, seq, 0).admission, A::kNew) << seq;
  EXPECT_EQ(cache.admit("c", 3, 100, 0).admission, A::kDuplicateInFlight);
  pb::Response r3;
  r3.set_seq(3);
  EXPECT_EQ(cache.complete("c", 3, r3), std::vector<ClientToken>{100});
  auto again = cache.admit("c", 3, 101, 0);
  ASSERT_EQ(again.admission, A::kDuplicateDone);
  EXPECT_EQ(again.cached->seq(), 3u);
  EXPECT_EQ(cache.admit("c", 4, 102, 0).admission, A::kDuplicateInFlight);
  EXPECT_TRUE(cache.complete("c", 6, pb::Response()).empty());  // never admitted
  // Fill the window from 10 on: 3, 4 and 5 fall out of it, 9 stays.
  for (uint64_t seq = 10; seq < 10 + ClientSessions::kWindow - 1; ++seq)
    ASSERT_EQ(cache.admit("c", seq, seq, 0).admission, A::kNew);
  EXPECT_EQ(cache.admit("c", 5, 103, 0).admission, A::kStale);
  EXPECT_EQ(cache.admit("c", 9, 104, 0).admission, A::kDuplicateInFlight);
  // 8 was never seen: new, but the oldest of a full window, so at once
  // forgotten (the window now starts at 9).
  EXPECT_EQ(cache.admit("c", 8, 105, 0).admission, A::kNew);
  EXPECT_EQ(cache.admit("c", 8, 106, 0).admission, A::kStale);
  EXPECT_EQ(cache.admit("c", 9, 107, 0).admission, A::kDuplicateInFlight);
  EXPECT_EQ(cache.clients(), 1u);
  cache.expire(ClientSessions::Limits{}.idle_ms);
  EXPECT_EQ(cache.clients(), 0u);
  EXPECT_EQ(cache.bytes(), empty_bytes);
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
  ASSERT_TRUE(find_write(ab, "agent-a", 7).has_value());
  EXPECT_EQ(find_write(ab, "agent-a", 7)->node, "n1");
}

TEST(RetryKeyState, CounterCopiesAreCompensatedOnceByTheLaterNode) {
  pb::KeyState a, b;
  for (auto* s : {&a, &b}) {
    s->set_key("hits");
    s->set_type(pb::COUNTER);
  }
  counter_add(a, "n1", 5, WriteMeta{"agent", 1});
  record_write(a, "n1", 3, "agent-a", 7, 5, 0);
  counter_add(b, "n2", 5, WriteMeta{"agent", 1});
  record_write(b, "n2", 8, "agent-a", 7, 5, 0);
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

TEST(RetryKeyState, EachNodeKeepsItsMostRecentWriteIdsAndAFloor) {
  pb::KeyState s;
  s.set_key("hits");
  s.set_type(pb::COUNTER);
  const uint64_t n = kWriteIdsPerNode + 10;
  for (uint64_t seq = 1; seq <= n; ++seq) record_write(s, "n1", 100 + seq, "agent-a", seq, 1, 0);
  record_write(s, "n2", 5, "agent-b", 1, 1, 0);
  WriteLedger l;
  ASSERT_TRUE(decode_writes(s.writes(), l).is_ok());
  EXPECT_EQ(l.records.size(), kWriteIdsPerNode + 1);
  EXPECT_FALSE(find_write(s, "agent-a", 1).has_value());  // the oldest of n1's are forgotten
  EXPECT_TRUE(find_write(s, "agent-a", n).has_value());
  EXPECT_TRUE(find_write(s, "agent-b", 1).has_value());  // n2's are not crowded out by n1's
  EXPECT_EQ(write_floor(s, "n1"), 100 + n - kWriteIdsPerNode);
  EXPECT_EQ(write_floor(s, "n2"), 0u);
  EXPECT_TRUE(validate_state(s).is_ok());
  // Pinned records (quorum writes, retries) have a window of their own.
  const uint64_t floor = write_floor(s, "n1");
  for (uint64_t seq = 1; seq <= kPinnedWriteIdsPerNode + 1; ++seq)
    record_write(s, "n1", 500 + seq, "agent-p", seq, 1, kWritePinned);
  EXPECT_FALSE(find_write(s, "agent-p", 1).has_value());
  for (uint64_t seq = 2; seq <= kPinnedWriteIdsPerNode + 1; ++seq) EXPECT_TRUE(find_write(s, "agent-p", seq).has_value());
  // The floor rises over the pinned record cut, and the unpinned one below it goes.
  EXPECT_EQ(write_floor(s, "n1"), 501u);
  EXPECT_GT(write_floor(s, "n1"), floor);
  EXPECT_FALSE(find_write(s, "agent-a", n).has_value());
  record_write(s, "n1", 900, "agent-a", n + 1, 1, 0);  // pinned records may lie below a later floor
  record_write(s, "n1", 901, "agent-a", n + 2, 1, 0);
  EXPECT_EQ(write_floor(s, "n1"), 900u);
  EXPECT_TRUE(find_write(s, "agent-p", 2).has_value());
  EXPECT_TRUE(find_write(s, "agent-a", n + 2).has_value());
  EXPECT_TRUE(validate_state(s).is_ok());
}

TEST(RetryKeyState, MergeOfWriteIdsIsCommutativeAssociativeAndIdempotent) {
  // Three replicas' views of one counter, with overlapping windows.
  std::vector<pb::KeyState> v(3);
  for (size_t i = 0; i < v.size(); ++i) {
    v[i].set_key("hits");
    v[i].set_type(pb::COUNTER);
  }
  uint64_t dot = 1;
  for (uint64_t seq = 1; seq <= 7; ++seq) {
    for (size_t i = 0; i < v.size(); ++i) {
      if ((seq + i) % 2) continue;
      const std::string node = "n" + std::to_string(i + 1);
      counter_add(v[i], node, 1, WriteMeta{"agent", 1});
      record_write(v[i], node, dot++, "agent-" + std::to_string(seq % 3), seq, 1, 0);
    }
  }
  const auto join = [](pb::KeyState a, const pb::KeyState& b) {
    merge_state(a, b);
    return a;
  };
  const std::string abc = join(join(v[0], v[1]), v[2]).SerializeAsString();
  EXPECT_EQ(join(v[0], join(v[1], v[2])).SerializeAsString(), abc);
  EXPECT_EQ(join(join(v[2], v[0]), v[1]).SerializeAsString(), abc);
  pb::KeyState all = join(join(v[0], v[1]), v[2]);
  EXPECT_FALSE(merge_state(all, all));
  EXPECT_FALSE(merge_state(all, v[1]));
  EXPECT_TRUE(validate_state(all).is_ok());
}

TEST(RetryKeyState, DecodingArbitraryBytesNeverCrashes) {
  pb::KeyState s;
  s.set_key("hits");
  s.set_type(pb::COUNTER);
  for (uint64_t seq = 1; seq <= 6; ++seq) record_write(s, "n" + std::to_string(seq % 2), seq, "agent", seq, -3, 0);
  const std::string good = s.writes();
  WriteLedger l;
  ASSERT_TRUE(decode_writes(good, l).is_ok());
  EXPECT_EQ(encode_writes(l), good);
  // Every truncation and every single-byte change either decodes to a
  // canonical ledger (encoding back to the same bytes) or is refused.
  for (size_t cut = 0; cut < good.size(); ++cut) {
    if (decode_writes(good.substr(0, cut), l).is_ok()) {
      EXPECT_EQ(encode_writes(l), good.substr(0, cut));
    }
  }
  for (size_t i = 0; i < good.size(); ++i) {
    for (int b = 0; b < 256; b += 7) {
      std::string bytes = good;
      bytes[i] = static_cast<char>(b);
      if (decode_writes(bytes, l).is_ok()) {
        EXPECT_EQ(encode_writes(l), bytes);
      }
    }
  }
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
  const auto ledger = [](std::vector<std::pair<std::string, uint64_t>> floors, std::vector<WriteRecord> records) {
    WriteLedger l;
    for (const auto& [n, f] : floors) l.floors.emplace_back(n, f);
    l.records = std::move(records);
    return encode_writes(l);
  };
  std::vector<pb::KeyState> bad;
  const auto id = [](uint64_t seq) { return write_id("agent-a", seq); };
  const auto with = [&](std::string writes, pb::KeyState s) {
    s.set_writes(std::move(writes));
    bad.push_back(std::move(s));
  };
  std::vector<WriteRecord> too_many;
  for (uint64_t d = 1; d <= kWriteIdsPerNode + 1; ++d) too_many.push_back(WriteRecord{"n2", d, id(d), 1, 0, {}});
  with(ledger({}, too_many), base());
  with(std::string("\x01\x02n2\x00\x01\x05\x01", 8) + std::string(8, 'i') + std::string(1, '\0'),
       base());  // names node index 5 of 1
  with(std::string("\x02\x02n1\x00\x02n2\x03\x00", 9), base());  // n1: neither a floor nor a record
  with(ledger({}, {WriteRecord{"stranger", 1, id(1), 1, 0, {}}}), base());  // not in the cluster
  with(ledger({{"stranger", 3}}, {}), base());
  with(ledger({}, {WriteRecord{"n2", 0, id(1), 1, 0, {}}}), base());                  // no dot
  with(ledger({}, {WriteRecord{"n2", kMaxDotCounter + 1, id(1), 1, 0, {}}}), base());  // above the limit
  with(ledger({}, {WriteRecord{"n2", 1, id(1), 1, kWriteCollapsed, {}}}), base());    // a register flag
  with(ledger({}, {WriteRecord{"n2", 1, id(1), 1, 64, {}}}), base());                 // unknown flag
  with(ledger({{"n2", 5}}, {WriteRecord{"n2", 4, id(1), 1, 0, {}}}), base());         // below its floor
  with(ledger({}, {WriteRecord{"n2", 2, id(1), 1, 0, {}}, WriteRecord{"n2", 1, id(2), 1, 0, {}}}),
       base());  // not sorted
  with(std::string("\x02\x02n2\x05\x02n1\x03\x00", 11), base());  // nodes not sorted
  with(std::string("\x00\x01", 2), base());          // truncated
  with(ledger({}, {WriteRecord{"n2", 1, id(1), 1, 0, {}}}) + "x", base());  // trailing bytes
  {
    pb::KeyState reg;
    reg.set_key("doc");
    reg.set_type(pb::REGISTER);
    with(ledger({}, {WriteRecord{"n2", 1, id(1), 5, 0, {}}}), reg);  // a register write with a delta
  }
  for (const auto& s : bad) c.step("n1", PeerInput{"n2", push_of(s)});
  EXPECT_EQ(c.node("n1").live_keys(), 0u);
  // And the node still serves, and a well-formed state is taken.
  pb::KeyState good = base();
  record_write(good, "n2", 1, "agent-a", 1, 5, 0);
  c.step("n1", PeerInput{"n2", push_of(good)});
  EXPECT_EQ(c.node("n1").live_keys(), 1u);
  EXPECT_EQ(counter_on(c, "n1", "hits"), 5);
  // The retry of that add on n1 is answered from the write id it now holds.
  EXPECT_EQ(c.request("n1", as_retry(with_id(counter_add("hits", 5), "agent-a", 1), "n2")).counter().value(), 5);
  EXPECT_EQ(counter_on(c, "n1", "hits"), 5);
}

TEST(RetryUntrusted, RetryNamingMoreNodesThanTheClusterIsRefused) {
  TestCluster c(2);
  auto r = with_id(counter_add("hits", 1), "agent-a", 1);
  r.set_attempt(2);
  for (int i = 0; i < 3; ++i) r.add_tried()->set_node("n" + std::to_string(i));
  EXPECT_EQ(c.request("n1", r).error(), pb::BAD_REQUEST);
  EXPECT_EQ(counter_on(c, "n1", "hits"), 0);
}

}  // namespace
}  // namespace stig::replication
