// MerkleTree: a fixed-shape hash tree over key buckets for anti-entropy.
//
// Leaves are buckets (a key's bucket is its hash modulo the leaf count); a
// leaf's hash is the XOR of the hashes of the keys in it, and an inner node's
// hash the XOR of its children. XOR makes every update O(depth): a changed
// key XORs (old ^ new) into its leaf and each ancestor. The tree is never
// rebuilt by scanning the data. Two replicas with equal roots hold equal
// states (up to 64-bit hash collisions).
#pragma once

#include <cstdint>
#include <vector>

namespace stig::replication {

class MerkleTree {
 public:
  // Levels 0 (the root) .. depth (the leaves); level d has fanout^d nodes.
  MerkleTree(uint32_t fanout, uint32_t depth);

  uint32_t fanout() const { return fanout_; }
  uint32_t depth() const { return depth_; }
  uint32_t leaf_count() const { return width(depth_); }
  uint32_t width(uint32_t level) const { return static_cast<uint32_t>(levels_[level].size()); }

  uint32_t bucket_of(uint64_t key_hash) const { return static_cast<uint32_t>(key_hash % leaf_count()); }

  // XORs `delta` (old entry hash ^ new entry hash) into a leaf and its ancestors.
  void apply(uint32_t bucket, uint64_t delta);

  uint64_t root() const { return levels_[0][0]; }
  uint64_t hash(uint32_t level, uint32_t index) const { return levels_[level][index]; }
  // Index range [first, first + fanout) of the children of (level, index).
  uint32_t first_child(uint32_t index) const { return index * fanout_; }

 private:
  uint32_t fanout_;
  uint32_t depth_;
  std::vector<std::vector<uint64_t>> levels_;
};

}  // namespace stig::replication
