// See summary.h.
#include "bench/summary.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

namespace stig::bench {

namespace {
double percentile(const std::vector<uint32_t>& sorted, double p) {
  if (sorted.empty()) return 0;
  const size_t rank = static_cast<size_t>(std::ceil(p * static_cast<double>(sorted.size())));
  return sorted[std::min(sorted.size() - 1, rank == 0 ? 0 : rank - 1)];
}
}  // namespace

Summary summarize(std::vector<uint32_t>& v, uint64_t errors, double secs) {
  std::sort(v.begin(), v.end());
  Summary s;
  s.ops = v.size();
  s.errors = errors;
  s.ops_per_sec = secs > 0 ? static_cast<double>(v.size()) / secs : 0;
  s.p50 = percentile(v, 0.50);
  s.p99 = percentile(v, 0.99);
  s.p999 = percentile(v, 0.999);
  s.max = v.empty() ? 0 : v.back();
  double sum = 0;
  for (auto x : v) sum += x;
  s.mean = v.empty() ? 0 : sum / static_cast<double>(v.size());
  return s;
}

std::string summary_json(const Summary& s) {
  char buf[512];
  std::snprintf(buf, sizeof buf,
                "{\"ops\":%llu,\"errors\":%llu,\"ops_per_sec\":%.1f,\"p50_us\":%.0f,\"p99_us\":%.0f,\"p999_us\":%.0f,"
                "\"max_us\":%.0f,\"mean_us\":%.1f}",
                static_cast<unsigned long long>(s.ops), static_cast<unsigned long long>(s.errors), s.ops_per_sec, s.p50,
                s.p99, s.p999, s.max, s.mean);
  return buf;
}

std::string json_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          out += buf;
        } else {
          out += c;
        }
    }
  }
  return out;
}

std::string error_kinds_json(const std::map<std::string, uint64_t>& kinds) {
  std::string out = "{";
  bool first = true;
  for (const auto& [k, n] : kinds) {
    if (n == 0) continue;
    out += (first ? "\"" : ",\"") + json_escape(k) + "\":" + std::to_string(n);
    first = false;
  }
  return out + "}";
}

void print_error_kinds(const std::map<std::string, uint64_t>& kinds) {
  if (std::none_of(kinds.begin(), kinds.end(), [](const auto& kv) { return kv.second > 0; })) return;
  std::printf("errors by kind:");
  for (const auto& [k, n] : kinds)
    if (n > 0) std::printf(" %s=%llu", k.c_str(), static_cast<unsigned long long>(n));
  std::printf("\n");
}

bool parse_duration(const std::string& text, Clock::duration& out) {
  size_t pos = 0;
  double v = 0;
  try {
    v = std::stod(text, &pos);
  } catch (...) {
    return false;
  }
  const std::string unit = text.substr(pos);
  double secs;
  if (unit.empty() || unit == "s") {
    secs = v;
  } else if (unit == "ms") {
    secs = v / 1000.0;
  } else if (unit == "m" || unit == "min") {
    secs = v * 60.0;
  } else {
    return false;
  }
  if (!(secs >= 0) || secs > 86400) return false;
  out = std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(secs));
  return true;
}

}  // namespace stig::bench
