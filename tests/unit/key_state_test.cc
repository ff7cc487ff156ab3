// Dotted-version-vector registers, OR-sets and PN-counters: merge laws and
// the absence of false siblings.
#include <algorithm>
#include <random>

#include <gtest/gtest.h>

#include "replication/key_state.h"

namespace stig::replication {
namespace {

pb::KeyState make(pb::ValueType type, const std::string& key = "k") {
  pb::KeyState s;
  s.set_key(key);
  s.set_type(type);
  return s;
}

std::vector<std::string> values(const pb::KeyState& s) {
  std::vector<std::string> out;
  for (const auto& sib : s.siblings())
    if (!sib.tombstone()) out.push_back(sib.value());
  std::sort(out.begin(), out.end());
  return out;
}

// A tiny replica of one key: a node id and its dot counter.
struct Node {
  std::string id;
  uint64_t counter = 0;
  pb::KeyState state = make(pb::REGISTER);
  void put(const pb::VersionVector& ctx, const std::string& value, const std::string& agent = "a") {
    register_write(state, ctx, id, ++counter, value, false, WriteMeta{agent, 1});
  }
};

TEST(VersionVector, RaiseJoinDescend) {
  pb::VersionVector a, b;
  vv_raise(a, "n2", 3);
  vv_raise(a, "n1", 1);
  vv_raise(b, "n3", 7);
  vv_raise(b, "n1", 5);
  EXPECT_TRUE(vv_validate(a).is_ok());
  EXPECT_EQ(a.entries(0).node(), "n1");
  EXPECT_FALSE(vv_descends(a, b));
  EXPECT_TRUE(vv_join(a, b));
  EXPECT_FALSE(vv_join(a, b));
  EXPECT_TRUE(vv_descends(a, b));
  EXPECT_EQ(vv_get(a, "n1"), 5u);
  EXPECT_EQ(vv_get(a, "n2"), 3u);
  EXPECT_EQ(vv_get(a, "n3"), 7u);
  EXPECT_EQ(vv_get(a, "n9"), 0u);
  EXPECT_TRUE(vv_validate(a).is_ok());
}

TEST(Context, RejectsGarbageAndUnsorted) {
  pb::VersionVector out;
  EXPECT_TRUE(decode_context("", out).is_ok());
  EXPECT_FALSE(decode_context("\xff\xff\xff", out).is_ok());
  pb::VersionVector bad;
  auto* e1 = bad.add_entries();
  e1->set_node("n2");
  e1->set_counter(1);
  auto* e2 = bad.add_entries();
  e2->set_node("n1");
  e2->set_counter(1);
  EXPECT_FALSE(decode_context(encode_context(bad), out).is_ok());
}

TEST(Register, ConcurrentWritesBecomeSiblingsAndResolveWithContext) {
  Node n1{"n1"}, n2{"n2"};
  n1.put({}, "shipped");
  n2.put({}, "cancelled");
  pb::KeyState a = n1.state;
  merge_state(a, n2.state);
  pb::KeyState b = n2.state;
  merge_state(b, n1.state);
  EXPECT_EQ(a.SerializeAsString(), b.SerializeAsString());
  EXPECT_EQ(values(a), (std::vector<std::string>{"cancelled", "shipped"}));
  // A put with the merged context supersedes both.
  n1.state = a;
  n1.put(a.context(), "refunded");
  EXPECT_EQ(values(n1.state), (std::vector<std::string>{"refunded"}));
  merge_state(b, n1.state);
  EXPECT_EQ(values(b), (std::vector<std::string>{"refunded"}));
}

TEST(Register, WriteWithoutContextKeepsExistingValue) {
  Node n1{"n1"};
  n1.put({}, "v1");
  n1.put({}, "v2");  // blind write: concurrent with v1
  EXPECT_EQ(values(n1.state), (std::vector<std::string>{"v1", "v2"}));
}

// The reason for dotted version vectors: many clients writing in turn
// through one node, each with the context it read, never create siblings
// (per-node version vectors would make every write look concurrent).
TEST(Register, ClientsTakingTurnsThroughOneNodeCreateNoFalseSiblings) {
  Node n1{"n1"};
  for (int round = 0; round < 50; ++round) {
    for (int client = 0; client < 5; ++client) {
      const pb::VersionVector ctx = n1.state.context();  // what this client read
      n1.put(ctx, "c" + std::to_string(client) + "r" + std::to_string(round), "agent" + std::to_string(client));
      ASSERT_EQ(n1.state.siblings_size(), 1) << "round " << round << " client " << client;
    }
  }
  EXPECT_EQ(n1.state.siblings(0).modified_by(), "agent4");
}

// Interleaved read-modify-write: two clients read the same version, then both
// write. Exactly their two writes remain as siblings, not the old value.
TEST(Register, InterleavedClientsOnOneNodeKeepBothWritesOnly) {
  Node n1{"n1"};
  n1.put({}, "v0");
  const pb::VersionVector read_a = n1.state.context();
  const pb::VersionVector read_b = n1.state.context();
  n1.put(read_a, "a");
  n1.put(read_b, "b");
  EXPECT_EQ(values(n1.state), (std::vector<std::string>{"a", "b"}));
  n1.put(n1.state.context(), "merged");
  EXPECT_EQ(values(n1.state), (std::vector<std::string>{"merged"}));
}

TEST(Register, DeleteIsATombstoneThatSupersedesWhatItSaw) {
  Node n1{"n1"}, n2{"n2"};
  n1.put({}, "v1");
  n2.state = n1.state;
  register_write(n1.state, n1.state.context(), "n1", ++n1.counter, "", true, WriteMeta{"a", 2});
  EXPECT_TRUE(is_tombstone_only(n1.state));
  merge_state(n2.state, n1.state);
  EXPECT_TRUE(is_tombstone_only(n2.state));
  EXPECT_TRUE(values(n2.state).empty());
}

TEST(Register, ConcurrentDeleteAndPutKeepThePut) {
  Node n1{"n1"}, n2{"n2"};
  n1.put({}, "v1");
  n2.state = n1.state;
  register_write(n1.state, n1.state.context(), "n1", ++n1.counter, "", true, WriteMeta{"a", 2});
  n2.put(n2.state.context(), "v2");
  merge_state(n1.state, n2.state);
  EXPECT_EQ(values(n1.state), (std::vector<std::string>{"v2"}));
  EXPECT_FALSE(is_tombstone_only(n1.state));
}

TEST(Set, AddWinsOverConcurrentRemove) {
  pb::KeyState a = make(pb::SET), b;
  set_add(a, "x", "n1", 1, WriteMeta{"a", 1});
  b = a;
  EXPECT_TRUE(set_remove(a, "x"));      // n1 removes the x it saw
  set_add(b, "x", "n2", 1, WriteMeta{"b", 1});  // n2 re-adds concurrently
  merge_state(a, b);
  EXPECT_EQ(set_elements(a), (std::vector<std::string>{"x"}));
}

TEST(Set, ObservedRemoveSticks) {
  pb::KeyState a = make(pb::SET), b;
  set_add(a, "x", "n1", 1, WriteMeta{"a", 1});
  set_add(a, "y", "n1", 2, WriteMeta{"a", 1});
  b = a;
  EXPECT_TRUE(set_remove(a, "x"));
  merge_state(b, a);
  merge_state(a, b);
  EXPECT_EQ(set_elements(a), (std::vector<std::string>{"y"}));
  EXPECT_EQ(set_elements(b), (std::vector<std::string>{"y"}));
  EXPECT_FALSE(set_remove(a, "nope"));
}

TEST(Counter, PnCounterMergesByMaximumPerNode) {
  pb::KeyState a = make(pb::COUNTER), b = make(pb::COUNTER);
  counter_add(a, "n1", 5, WriteMeta{"a", 1});
  counter_add(a, "n1", -2, WriteMeta{"a", 2});
  counter_add(b, "n2", 10, WriteMeta{"b", 3});
  counter_add(b, "n0", -1, WriteMeta{"b", 3});
  EXPECT_TRUE(validate_state(b).is_ok());
  merge_state(a, b);
  EXPECT_EQ(counter_value(a), 12);
  EXPECT_FALSE(merge_state(a, b));  // idempotent
  pb::KeyState c = b;
  merge_state(c, a);
  EXPECT_EQ(a.SerializeAsString(), c.SerializeAsString());
  EXPECT_TRUE(validate_state(a).is_ok());
}

TEST(Validate, RejectsMalformedStates) {
  pb::KeyState s = make(pb::REGISTER);
  auto* sib = s.add_siblings();
  sib->set_dot_node("n1");
  sib->set_dot_counter(3);
  EXPECT_FALSE(validate_state(s).is_ok());  // dot outside context
  vv_raise(*s.mutable_context(), "n1", 3);
  EXPECT_TRUE(validate_state(s).is_ok());
  s.clear_key();
  EXPECT_FALSE(validate_state(s).is_ok());
}

// Property: merging any permutation of the same updates, with duplicates,
// gives the same state (commutativity, associativity, idempotence).
class MergeProperty : public ::testing::TestWithParam<int> {};

std::vector<pb::KeyState> random_history(std::mt19937_64& rng, pb::ValueType type) {
  // Three nodes each evolve their own copy, sometimes syncing from another,
  // and every intermediate state is an "update" a peer might receive.
  std::vector<pb::KeyState> replicas(3, make(type));
  std::vector<uint64_t> counters(3, 0);
  std::vector<pb::KeyState> updates;
  const char* names[] = {"n1", "n2", "n3"};
  for (int step = 0; step < 40; ++step) {
    const int n = static_cast<int>(rng() % 3);
    const int action = static_cast<int>(rng() % 4);
    pb::KeyState& s = replicas[n];
    if (action == 0) {
      merge_state(s, replicas[rng() % 3]);
    } else if (type == pb::REGISTER) {
      pb::VersionVector ctx = (rng() % 3 == 0) ? pb::VersionVector() : s.context();
      register_write(s, ctx, names[n], ++counters[n], "v" + std::to_string(step), action == 3, WriteMeta{"x", step});
    } else if (type == pb::SET) {
      const std::string el = "e" + std::to_string(rng() % 4);
      if (action == 3)
        set_remove(s, el);
      else
        set_add(s, el, names[n], ++counters[n], WriteMeta{"x", step});
    } else {
      counter_add(s, names[n], static_cast<int64_t>(rng() % 11) - 5, WriteMeta{"x", step});
    }
    EXPECT_TRUE(validate_state(s).is_ok());
    updates.push_back(s);
  }
  return updates;
}

TEST_P(MergeProperty, AnyOrderWithDuplicatesConverges) {
  std::mt19937_64 rng(GetParam());
  for (pb::ValueType type : {pb::REGISTER, pb::SET, pb::COUNTER}) {
    std::vector<pb::KeyState> updates = random_history(rng, type);
    std::string reference;
    for (int perm = 0; perm < 8; ++perm) {
      std::vector<pb::KeyState> order = updates;
      for (int d = 0; d < 10; ++d) order.push_back(updates[rng() % updates.size()]);  // duplicates
      std::shuffle(order.begin(), order.end(), rng);
      pb::KeyState acc = make(type);
      // Mix left folds and tree-shaped merges (associativity).
      if (perm % 2 == 0) {
        for (const auto& u : order) merge_state(acc, u);
      } else {
        while (order.size() > 1) {
          std::vector<pb::KeyState> next;
          for (size_t i = 0; i + 1 < order.size(); i += 2) {
            pb::KeyState m = order[i];
            merge_state(m, order[i + 1]);
            next.push_back(std::move(m));
          }
          if (order.size() % 2) next.push_back(order.back());
          order = std::move(next);
        }
        merge_state(acc, order[0]);
      }
      ASSERT_TRUE(validate_state(acc).is_ok());
      const std::string bytes = acc.SerializeAsString();
      if (perm == 0)
        reference = bytes;
      else
        ASSERT_EQ(bytes, reference) << "type " << type << " permutation " << perm;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Seeds, MergeProperty, ::testing::Range(1, 41));

}  // namespace
}  // namespace stig::replication
