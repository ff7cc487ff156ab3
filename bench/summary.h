// What stig-bench and etcd-bench share: summarizing latency samples into
// ops/s and percentiles, the JSON of a summary, and parsing durations, so the
// two tools count, round and print alike and their figures compare directly.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace stig::bench {

using Clock = std::chrono::steady_clock;

struct Summary {
  uint64_t ops = 0;
  uint64_t errors = 0;
  double ops_per_sec = 0;
  double p50 = 0, p99 = 0, p999 = 0, max = 0, mean = 0;  // microseconds
};

// Sorts v (latencies in microseconds of the completed ops) and summarizes it
// over a window of secs seconds. Percentiles are nearest-rank.
Summary summarize(std::vector<uint32_t>& v, uint64_t errors, double secs);
// {"ops":..,"errors":..,"ops_per_sec":..,"p50_us":..,"p99_us":..,"p999_us":..,"max_us":..,"mean_us":..}
std::string summary_json(const Summary& s);
std::string json_escape(const std::string& s);
// {"kind":n,...} of the kinds with n > 0.
std::string error_kinds_json(const std::map<std::string, uint64_t>& kinds);
// "errors by kind: a=1 b=2" and a newline on stdout, if any kind has n > 0.
void print_error_kinds(const std::map<std::string, uint64_t>& kinds);
// Parses "10s", "500ms", "2m", "1.5s" or a bare number of seconds (at most a day).
bool parse_duration(const std::string& text, Clock::duration& out);

}  // namespace stig::bench
