// Stable 64-bit hashing for Merkle trees, bucket placement and state digests.
//
// The result depends only on the bytes hashed (never on the platform, the
// process or a random seed), so digests compare across nodes and runs.
#pragma once

#include <cstdint>
#include <string_view>

namespace stig::replication {

inline uint64_t mix64(uint64_t x) {
  // splitmix64 finaliser: full avalanche.
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ULL;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebULL;
  x ^= x >> 31;
  return x;
}

// FNV-1a over 8-byte words, finished by mix64. Fast enough for keys and
// small values; not cryptographic (digests detect divergence, not attacks).
inline uint64_t hash_bytes(std::string_view bytes, uint64_t seed = 0x9e3779b97f4a7c15ULL) {
  uint64_t h = 0xcbf29ce484222325ULL ^ seed;
  size_t i = 0;
  for (; i + 8 <= bytes.size(); i += 8) {
    uint64_t w = 0;
    for (int b = 0; b < 8; ++b) w |= uint64_t(static_cast<unsigned char>(bytes[i + b])) << (8 * b);
    h = (h ^ w) * 0x100000001b3ULL;
    h ^= h >> 29;
  }
  for (; i < bytes.size(); ++i) h = (h ^ static_cast<unsigned char>(bytes[i])) * 0x100000001b3ULL;
  return mix64(h ^ bytes.size());
}

}  // namespace stig::replication
