// etcd-bench's numbers: each client's latency samples and counts; summaries,
// JSON and durations are stig-bench's own (bench/summary.h), so the two tools
// count and print alike.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "bench/summary.h"

namespace etcdbench {

using Clock = stig::bench::Clock;

// What one client saw during the measured window.
struct Stats {
  std::vector<uint32_t> latency_us;  // completed ops (including txn/cas conflicts)
  uint64_t errors = 0;
  uint64_t succeeded = 0;  // txn/cas: compare held and the put was applied
  uint64_t conflicts = 0;  // txn/cas: compare failed (someone else wrote the key)
  std::map<std::string, uint64_t> error_kinds;

  void merge(const Stats& o);
};

using stig::bench::json_escape;
using stig::bench::parse_duration;
using stig::bench::Summary;
using stig::bench::summarize;
using stig::bench::summary_json;

}  // namespace etcdbench
