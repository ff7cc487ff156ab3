// Seeded pseudo-random generator for the core (gossip peer choice, jitter).
// The runtime hands in the seed, so a simulated run replays exactly.
#pragma once

#include <cstdint>

#include "replication/hash.h"

namespace stig::replication {

// xoshiro256** seeded through splitmix64; identical output on every platform.
class Rng {
 public:
  explicit Rng(uint64_t seed) {
    for (auto& s : s_) s = mix64(seed += 0x9e3779b97f4a7c15ULL);
  }
  uint64_t next() {
    const uint64_t result = rotl(s_[1] * 5, 7) * 9;
    const uint64_t t = s_[1] << 17;
    s_[2] ^= s_[0];
    s_[3] ^= s_[1];
    s_[1] ^= s_[2];
    s_[0] ^= s_[3];
    s_[2] ^= t;
    s_[3] = rotl(s_[3], 45);
    return result;
  }
  // Uniform in [0, n); n > 0. The modulo bias is irrelevant at our n.
  uint64_t below(uint64_t n) { return next() % n; }

 private:
  static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
  uint64_t s_[4];
};

}  // namespace stig::replication
