// SimRandom: the one seeded generator behind every choice the simulator makes
// (latencies, loss, which node a client talks to, faults, replica seeds).
//
// Guarantees: the same seed gives the same sequence on every platform and
// standard library. Only integer arithmetic and exact double comparisons are
// used; no std::*_distribution (their output differs between libraries).
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

#include "replication/rng.h"

namespace stig::sim {

class SimRandom {
 public:
  explicit SimRandom(uint64_t seed) : rng_(seed) {}

  uint64_t next() { return rng_.next(); }
  // Uniform in [0, n); n > 0.
  uint64_t below(uint64_t n) { return rng_.below(n); }
  // Uniform in [lo, hi] (inclusive); hi >= lo.
  int64_t range(int64_t lo, int64_t hi) {
    if (hi <= lo) return lo;
    return lo + static_cast<int64_t>(below(static_cast<uint64_t>(hi - lo) + 1));
  }
  // Uniform in [0, 1) with 53 bits.
  double unit() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }
  // True with probability p (p <= 0: never, p >= 1: always, and no draw).
  bool chance(double p) {
    if (p <= 0) return false;
    if (p >= 1) return true;
    return unit() < p;
  }
  template <typename T>
  const T& pick(const std::vector<T>& v) {
    return v[below(v.size())];
  }
  // Fisher-Yates.
  template <typename T>
  void shuffle(std::vector<T>& v) {
    for (size_t i = v.size(); i > 1; --i) std::swap(v[i - 1], v[below(i)]);
  }

 private:
  replication::Rng rng_;
};

}  // namespace stig::sim
