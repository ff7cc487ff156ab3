#include "replication/merkle.h"

#include "replication/invariant.h"

namespace stig::replication {

MerkleTree::MerkleTree(uint32_t fanout, uint32_t depth) : fanout_(fanout), depth_(depth) {
  STIG_INVARIANT(fanout >= 2 && depth >= 1, "merkle tree shape");
  uint64_t width = 1;
  for (uint32_t level = 0; level <= depth; ++level) {
    levels_.emplace_back(width, 0);
    width *= fanout;
  }
}

void MerkleTree::apply(uint32_t bucket, uint64_t delta) {
  STIG_INVARIANT(bucket < leaf_count(), "bucket out of range");
  uint32_t index = bucket;
  for (uint32_t level = depth_ + 1; level-- > 0;) {
    levels_[level][index] ^= delta;
    index /= fanout_;
  }
}

}  // namespace stig::replication
