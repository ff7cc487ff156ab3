// etcd-bench's numbers: latency samples, their summary (ops/s, p50/p99/p999)
// and JSON, shaped like stig-bench's so the two can be read the same way.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace etcdbench {

using Clock = std::chrono::steady_clock;

// What one client saw during the measured window.
struct Stats {
  std::vector<uint32_t> latency_us;  // completed ops (including txn/cas conflicts)
  uint64_t errors = 0;
  uint64_t succeeded = 0;  // txn/cas: compare held and the put was applied
  uint64_t conflicts = 0;  // txn/cas: compare failed (someone else wrote the key)
  std::map<std::string, uint64_t> error_kinds;

  void merge(const Stats& o);
};

struct Summary {
  uint64_t ops = 0;
  uint64_t errors = 0;
  double ops_per_sec = 0;
  double p50 = 0, p99 = 0, p999 = 0, max = 0, mean = 0;
};

// Sorts v and summarizes it over a window of secs seconds.
Summary summarize(std::vector<uint32_t>& v, uint64_t errors, double secs);
// {"ops":..,"errors":..,"ops_per_sec":..,"p50_us":..,"p99_us":..,"p999_us":..,"max_us":..,"mean_us":..}
std::string summary_json(const Summary& s);
std::string json_escape(const std::string& s);
// Parses "10s", "500ms", "2m", "1.5s" or a bare number of seconds.
bool parse_duration(const std::string& text, Clock::duration& out);

}  // namespace etcdbench
