// CoarseClock: a steady clock for the runtime's own bookkeeping.
//
// The event loop reads the time several times per request (when a frame
// starts and ends, when a write completes, how long a step held the loop).
// Those readings feed timeouts and warnings measured in tens of
// milliseconds or more, so they read CLOCK_MONOTONIC_COARSE: the time of the
// last timer tick (1-4 ms resolution), read from memory the kernel shares,
// without the TSC read and scaling of a precise reading. The core's own time
// (replication::Now) stays precise.
#pragma once

#include <time.h>

#include <chrono>

namespace stig::node {

struct CoarseClock {
  using duration = std::chrono::nanoseconds;
  using rep = duration::rep;
  using period = duration::period;
  using time_point = std::chrono::time_point<CoarseClock>;
  static constexpr bool is_steady = true;

  static time_point now() noexcept {
    timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return time_point(std::chrono::seconds(ts.tv_sec) + std::chrono::nanoseconds(ts.tv_nsec));
  }
};

}  // namespace stig::node
