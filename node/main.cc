// stigd: one node of a Stigmergy cluster.
//
// The program edge: parses flags, opens storage, recovers state, builds the
// deterministic core and hands it to the runtime. Startup failures (bad
// flags, unusable data dir, port in use) print one line and exit non-zero;
// exceptions are caught here and nowhere else.
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>
#include <sys/resource.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <exception>
#include <functional>
#include <iostream>
#include <random>

#include "node/options.h"
#include "node/server.h"
#include "node/storage.h"
#include "node/tls.h"
#include "replication/replica.h"

// Read by jemalloc when stigd links it (CMake's STIG_JEMALLOC), an unused
// global otherwise: a background thread hands memory freed after a burst (a
// flood of big frames, a large get) back to the system within about a second,
// so an idle node does not keep its peak. No measurable cost per put
// (bench/README.md "CPU per put"). MALLOC_CONF in the environment still applies.
extern "C" {
__attribute__((used)) const char* malloc_conf = "background_thread:true,dirty_decay_ms:1000";
}

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

// Raises the open-file limit to the hard limit, so --max-client-connections,
// not the descriptor limit, is what binds; if even the hard limit is too
// small for the connection limit, lowers the connection limit (with a
// warning) so accepting never fails for lack of descriptors.
void raise_open_file_limit(stig::node::Options& options) {
  rlimit rl{};
  if (::getrlimit(RLIMIT_NOFILE, &rl) != 0) {
    spdlog::warn("cannot read the open-file limit: {}", std::strerror(errno));
    return;
  }
  const rlim_t was = rl.rlim_cur;
  if (rl.rlim_cur < rl.rlim_max) {
    rlimit raised = rl;
    raised.rlim_cur = rl.rlim_max;
    if (::setrlimit(RLIMIT_NOFILE, &raised) == 0) rl = raised;
    else spdlog::warn("cannot raise the open-file limit from {} to {}: {}", rl.rlim_cur, rl.rlim_max,
                      std::strerror(errno));
  }
  if (rl.rlim_cur == was)
    spdlog::info("open-file limit {}", static_cast<uint64_t>(rl.rlim_cur));
  else
    spdlog::info("open-file limit {} (raised from {})", static_cast<uint64_t>(rl.rlim_cur), static_cast<uint64_t>(was));
  if (rl.rlim_cur == RLIM_INFINITY) return;
  // Leave descriptors for RocksDB, peer links and connections being refused.
  const uint64_t limit = rl.rlim_cur;
  const uint64_t reserve = std::min<uint64_t>(1024, limit / 4) + 2 * options.config.peers.size() + 64;
  const uint64_t usable = limit > reserve + 16 ? limit - reserve : 16;
  if (options.max_client_connections > usable) {
    spdlog::warn("--max-client-connections {} lowered to {}: the open-file limit is {}",
                 options.max_client_connections, usable, limit);
    options.max_client_connections = static_cast<uint32_t>(usable);
  }
}

int run(stig::node::Options& options) {
  std::string error;
  std::shared_ptr<stig::node::TlsContext> tls;
  if (options.insecure_plaintext) {
    spdlog::warn("running WITHOUT TLS (--insecure-plaintext): anyone who can reach {} can read, write and speak as "
                 "any agent or peer",
                 options.listen.to_string());
  } else {
    tls = stig::node::make_tls_context({options.tls_ca, options.tls_cert, options.tls_key, options.tls_crl},
                                       options.config.self, &error);
    if (!tls) {
      std::fprintf(stderr, "stigd: %s\n", error.c_str());
      return 1;
    }
  }
  // After the TLS files: a start-up error stays the only line printed.
  raise_open_file_limit(options);
  auto storage = stig::node::Storage::open(options.data_dir, &error);
  if (!storage) {
    std::fprintf(stderr, "stigd: %s\n", error.c_str());
    return 1;
  }
  stig::replication::Replica replica(options.config, make_seed(options.config.self), storage->recovered());

  stig::node::Server server(options, replica, *storage, tls);
  if (!server.listen(&error)) {
    std::fprintf(stderr, "stigd: %s\n", error.c_str());
    return 1;
  }
  const auto ep = server.local_endpoint();
  spdlog::info("{} listening on {}:{} ({}); peers {}; data dir {}; recovered {} keys ({} tombstones)",
               options.config.self, ep.address().to_string(), ep.port(),
               tls ? "TLS 1.3, mutual, CA " + options.tls_ca : std::string("plain TCP"), describe_peers(options.config),
               options.data_dir, replica.live_keys(), replica.tombstone_keys());
  return server.run();
}

}  // namespace

int main(int argc, char** argv) {
  auto parsed = stig::node::parse_options(argc, argv, std::cout, std::cerr);
  if (!parsed.options) return parsed.exit_code;
  stig::node::Options& options = *parsed.options;
  setup_logging(options);
  try {
    return run(options);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "stigd: %s\n", e.what());
    return 1;
  }
}
