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
    register_write(e.state, {}, "n1", static_cast<uint64_t>(i + 1), "v", false, WriteMeta{"a", 1});
    a.mark_dirty(e);
  }
  a.settle(&sink);
  EXPECT_EQ(sink.size(), 100u);
  for (int i = 99; i >= 0; --i) {
    const std::string key = "k" + std::to_string(i);
    KeyEntry& e = b.get_or_create(pb::REGISTER, key);
    e.state = a.find(KeyStore::typed_key(pb::REGISTER, key))->state;
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

}  // namespace
}  // namespace stig::replication
