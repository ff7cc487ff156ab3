// Time as the core sees it: always passed in, never read.
#pragma once

#include <cstdint>
#include <limits>

namespace stig::replication {

// Milliseconds of a monotonic clock: timeouts, timers, failure detection.
using MonoTime = int64_t;
// Milliseconds since the Unix epoch by the node's wall clock: modified_at only.
// Nothing that must be safe depends on wall clocks agreeing.
using WallTime = int64_t;

constexpr MonoTime kNever = std::numeric_limits<MonoTime>::max();

struct Now {
  MonoTime mono = 0;
  WallTime wall = 0;
};

}  // namespace stig::replication
