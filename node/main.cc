// stigd: one node of a Stigmergy cluster.
//
// The program edge: parses flags, opens storage, recovers state, builds the
// deterministic core and hands it to the runtime. Startup failures (bad
// flags, unusable data dir, port in use) print one line and exit non-zero;
// exceptions are caught here and nowhere else.
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <cstdio>
#include <exception>
#include <functional>
#include <iostream>
#include <random>

#include "node/options.h"
#include "node/server.h"
#include "node/storage.h"
#include "replication/replica.h"

namespace {

using stig::node::LogLevel;

spdlog::level::level_enum to_spdlog(LogLevel l) {
  switch (l) {
    case LogLevel::kTrace: return spdlog::level::trace;
    case LogLevel::kDebug: return spdlog::level::debug;
    case LogLevel::kInfo: return spdlog::level::info;
    case LogLevel::kWarn: return spdlog::level::warn;
    case LogLevel::kError: return spdlog::level::err;
  }
  return spdlog::level::info;
}

void setup_logging(const stig::node::Options& o) {
  auto logger = std::make_shared<spdlog::logger>("stigd", std::make_shared<spdlog::sinks::stderr_sink_mt>());
  logger->set_pattern("%Y-%m-%dT%H:%M:%S.%e %l [" + o.config.self + "] %v");
  logger->set_level(to_spdlog(o.log_level));
  logger->flush_on(spdlog::level::trace);
  spdlog::set_default_logger(logger);
}

// The runtime may use ambient randomness; the core only ever sees this seed.
uint64_t make_seed(const std::string& id) {
  std::random_device rd;
  const uint64_t entropy = (uint64_t{rd()} << 32) ^ rd();
  const uint64_t clock = static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
  return std::hash<std::string>{}(id) ^ entropy ^ (clock * 0x9E3779B97F4A7C15ull);
}

std::string describe_peers(const stig::replication::Config& c) {
  if (c.peers.empty()) return "none";
  std::string s;
  for (const auto& p : c.peers) s += (s.empty() ? "" : ",") + p.id + "=" + p.address;
  return s;
}

int run(const stig::node::Options& options) {
  std::string error;
  auto storage = stig::node::Storage::open(options.data_dir, &error);
  if (!storage) {
    std::fprintf(stderr, "stigd: %s\n", error.c_str());
    return 1;
  }
  stig::replication::RecoveredState recovered;
  if (auto st = storage->load_all(recovered); !st.ok) {
    std::fprintf(stderr, "stigd: %s\n", st.message.c_str());
    return 1;
  }
  const size_t entries = recovered.entries.size();
  stig::replication::Replica replica(options.config, make_seed(options.config.self), recovered);
  recovered = {};  // the core keeps what it needs

  stig::node::Server server(options, replica, *storage);
  if (!server.listen(&error)) {
    std::fprintf(stderr, "stigd: %s\n", error.c_str());
    return 1;
  }
  const auto ep = server.local_endpoint();
  spdlog::info("{} listening on {}:{}; peers {}; data dir {}; recovered {} keys ({} tombstones, {} stored entries)",
               options.config.self, ep.address().to_string(), ep.port(), describe_peers(options.config),
               options.data_dir, replica.live_keys(), replica.tombstone_keys(), entries);
  return server.run();
}

}  // namespace

int main(int argc, char** argv) {
  auto parsed = stig::node::parse_options(argc, argv, std::cout, std::cerr);
  if (!parsed.options) return parsed.exit_code;
  const stig::node::Options& options = *parsed.options;
  setup_logging(options);
  try {
    return run(options);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "stigd: %s\n", e.what());
    return 1;
  }
}
