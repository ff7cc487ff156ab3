// MerkleTree: incremental XOR updates, independent of order, and a shape
// anti-entropy can walk.
#include <random>

#include <gtest/gtest.h>

#include "replication/hash.h"
#include "replication/merkle.h"
#include "replication/store.h"

namespace stig::replication {
namespace {

TEST(MerkleTree, ShapeAndChildren) {
  MerkleTree t(16, 3);
  EXPECT_EQ(t.leaf_count(), 4096u);
  EXPECT_EQ(t.width(0), 1u);
  EXPECT_EQ(t.width(2), 256u);
  EXPECT_EQ(t.first_child(5), 80u);
  EXPECT_EQ(t.root(), 0u);
}

TEST(MerkleTree, UpdatesAreOrderIndependentAndReversible) {
  std::mt19937_64 rng(3);
  std::vector<std::pair<uint32_t, uint64_t>> entries;
  for (int i = 0; i < 500; ++i) entries.emplace_back(static_cast<uint32_t>(rng() % 4096), rng());
  MerkleTree a(16, 3), b(16, 3);
  for (const auto& [bucket, h] : entries) a.apply(bucket, h);
  std::shuffle(entries.begin(), entries.end(), rng);
  for (const auto& [bucket, h] : entries) b.apply(bucket, h);
  EXPECT_EQ(a.root(), b.root());
  for (uint32_t level = 0; level <= 3; ++level)
    for (uint32_t i = 0; i < a.width(level); ++i) ASSERT_EQ(a.hash(level, i), b.hash(level, i));
  // Every inner node is the XOR of its children.
  for (uint32_t level = 0; level < 3; ++level) {
    for (uint32_t i = 0; i < a.width(level); ++i) {
      uint64_t x = 0;
      for (uint32_t c = a.first_child(i); c < a.first_child(i) + a.fanout(); ++c) x ^= a.hash(level + 1, c);
      ASSERT_EQ(a.hash(level, i), x);
    }
  }
  for (const auto& [bucket, h] : entries) b.apply(bucket, h);  // remove everything again
  EXPECT_EQ(b.root(), 0u);
}

TEST(MerkleTree, OneChangedKeyChangesOnePathOnly) {
  MerkleTree a(16, 3), b(16, 3);
  for (uint32_t bucket = 0; bucket < 4096; bucket += 7) {
    a.apply(bucket, mix64(bucket));
    b.apply(bucket, mix64(bucket));
  }
  b.apply(1234, 0xdeadbeef);
  EXPECT_NE(a.root(), b.root());
  int differing_leaves = 0;
  for (uint32_t i = 0; i < 4096; ++i) differing_leaves += a.hash(3, i) != b.hash(3, i);
  EXPECT_EQ(differing_leaves, 1);
  int differing_mid = 0;
  for (uint32_t i = 0; i < 256; ++i) differing_mid += a.hash(2, i) != b.hash(2, i);
  EXPECT_EQ(differing_mid, 1);
}

TEST(KeyStore, DigestDependsOnStateNotOnHistory) {
  // Two stores reaching the same states by different routes have equal digests.
  KeyStore a(16, 3), b(16, 3);
  std::vector<Persist> sink;
  for (int i = 0; i < 100; ++i) {
    KeyEntry& e = a.get_or_create(pb::REGISTER, "k" + std::to_string(i));
    register_write(a.state(e), {}, "n1", static_cast<uint64_t>(i + 1), "v", false, WriteMeta{"a", 1});
    a.mark_dirty(e);
  }
  a.settle(&sink);
  EXPECT_EQ(sink.size(), 100u);
  for (int i = 99; i >= 0; --i) {
    const std::string key = "k" + std::to_string(i);
    KeyEntry& e = b.get_or_create(pb::REGISTER, key);
    b.state(e) = a.state(*a.find(KeyStore::typed_key(pb::REGISTER, key)));
    b.mark_dirty(e);
    if (i % 10 == 0) b.settle(nullptr);
  }
  b.settle(nullptr);
  EXPECT_EQ(a.digest(), b.digest());
  EXPECT_EQ(a.live_keys(), 100u);
  std::vector<Persist> erased;
  a.erase(KeyStore::typed_key(pb::REGISTER, "k5"), erased);
  EXPECT_NE(a.digest(), b.digest());
  ASSERT_EQ(erased.size(), 1u);
  EXPECT_TRUE(erased[0].erase);
}

std::vector<std::string> values_of(const pb::KeyState& s) {
  std::vector<std::string> out;
  for (const auto& sib : s.siblings()) out.push_back(sib.value());
  return out;
}

TEST(KeyStore, StatesRestSerializedAndComeBackAsTheyWere) {
  KeyStore store(16, 3);
  std::vector<Persist> sink;
  for (int i = 0; i < 50; ++i) {
    KeyEntry& e = store.get_or_create(pb::REGISTER, "k" + std::to_string(i));
    for (int v = 0; v <= i % 3; ++v)  // 1..3 concurrent siblings
      register_write(store.state(e), {}, "n" + std::to_string(v), static_cast<uint64_t>(i + 1),
                     "v" + std::to_string(i) + "." + std::to_string(v), false, WriteMeta{"a", 1});
    store.mark_dirty(e);
  }
  store.settle(&sink);
  EXPECT_EQ(store.parsed_count(), 50u);
  const uint64_t digest = store.digest();
  store.release_parsed();
  EXPECT_EQ(store.parsed_count(), 0u);
  for (int i = 0; i < 50; ++i) {
    const KeyEntry* e = store.find(KeyStore::typed_key(pb::REGISTER, "k" + std::to_string(i)));
    ASSERT_NE(e, nullptr);
    EXPECT_EQ(e->live, nullptr);
    EXPECT_EQ(e->bytes, sink[static_cast<size_t>(i)].value);  // at rest: the bytes on disk
  }
  // Read back in another order, so recycled messages hold other keys before:
  // nothing of an earlier key may remain in them.
  for (int i = 49; i >= 0; --i) {
    const KeyEntry* e = store.find(KeyStore::typed_key(pb::REGISTER, "k" + std::to_string(i)));
    const pb::KeyState& s = store.state(*e);
    EXPECT_EQ(s.key(), "k" + std::to_string(i));
    ASSERT_EQ(s.siblings_size(), i % 3 + 1) << i;
    EXPECT_EQ(values_of(s)[0], "v" + std::to_string(i) + ".0");
  }
  store.release_parsed();
  // A change made through state() is kept until it is settled, even across
  // a release (the entry stays parsed while dirty).
  KeyEntry* e = store.find(KeyStore::typed_key(pb::REGISTER, "k7"));
  register_write(store.state(*e), store.state(*e).context(), "n1", 100, "new", false, WriteMeta{"b", 2});
  store.mark_dirty(*e);
  store.release_parsed();
  EXPECT_NE(e->live, nullptr);
  EXPECT_EQ(values_of(store.state(*e)), std::vector<std::string>{"new"});
  sink.clear();
  store.settle(&sink);
  ASSERT_EQ(sink.size(), 1u);
  EXPECT_NE(store.digest(), digest);
  store.release_parsed();
  EXPECT_EQ(values_of(store.state(*e)), std::vector<std::string>{"new"});
  // A parsed entry can be erased (tombstone collection) without a trace.
  std::vector<Persist> erased;
  store.erase(KeyStore::typed_key(pb::REGISTER, "k7"), erased);
  store.release_parsed();
  EXPECT_EQ(store.find(KeyStore::typed_key(pb::REGISTER, "k7")), nullptr);
  EXPECT_EQ(store.live_keys(), 49u);
}

}  // namespace
}  // namespace stig::replication
