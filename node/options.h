// Command line and config file of stigd.
//
// parse_options() turns argv (and, with --config FILE, a TOML/INI file whose
// keys are the long flag names) into a validated replication::Config plus the
// runtime's own settings. It never throws: on --help it prints the help and
// asks for exit code 0; on any bad flag it prints exactly one line naming what
// was wrong and asks for exit code 2.
#pragma once

#include <cstdint>
#include <iosfwd>
#include <optional>
#include <string>
#include <string_view>

#include "replication/config.h"

namespace stig::node {

// A host:port pair as given on the command line ("127.0.0.1:7101",
// "localhost:7101", "[::1]:7101").
struct Endpoint {
  std::string host;
  uint16_t port = 0;

  std::string to_string() const;
};

// Parses "host:port" with a port in 1..65535; nullopt and a one-line reason
// in `error` otherwise.
std::optional<Endpoint> parse_endpoint(std::string_view text, std::string* error);

enum class LogLevel { kTrace, kDebug, kInfo, kWarn, kError };

// Everything stigd needs to start: the core's configuration and the settings
// only the runtime uses.
struct Options {
  replication::Config config;  // validated: Config::validate() passed
  Endpoint listen;
  std::string data_dir;
  LogLevel log_level = LogLevel::kInfo;
  uint32_t max_frame_bytes = 4u << 20;          // refuse frames above this
  uint64_t peer_queue_bytes = 64ull << 20;      // per-peer outbound queue bound
  uint64_t client_buffer_bytes = 16ull << 20;   // stop reading a client past this backlog
  uint32_t max_requests_in_flight = 32;         // per client connection, before decoding pauses
  // After a synced group commit of several writes, the next waits this long
  // for more writes to share its fsync (0: starts at once).
  uint32_t group_commit_gather_us = 1000;

  // Limits that hold under abuse (docs/node.md, "Limits"). A timeout of 0 is off.
  uint32_t max_client_connections = 4096;        // client (and undecided) connections
  uint64_t inbound_buffer_bytes = 256ull << 20;  // partial frames buffered, all connections
  int64_t hello_timeout_ms = 10'000;             // a new connection's first frame must begin by then
  int64_t idle_timeout_ms = 300'000;             // client connection without a complete frame
  int64_t slow_frame_timeout_ms = 30'000;        // a begun frame must be complete by then
  int64_t peer_idle_timeout_ms = 5'000;          // inbound peer link without a frame
  bool enable_admin = false;                     // admin partition / heal allowed

  // Transport security (docs/security.md). Exactly one of: the TLS files
  // (ca, cert, key; crl optional), or insecure_plaintext.
  std::string tls_ca, tls_cert, tls_key, tls_crl;
  bool insecure_plaintext = false;
  int64_t tls_handshake_timeout_ms = 5'000;      // a TLS handshake must be done by then
};

// Result of parse_options: either options to run with, or an exit code.
struct ParseOutcome {
  std::optional<Options> options;
  int exit_code = 0;
};

// Parses the command line. Help goes to `out`, the one-line error to `err`.
ParseOutcome parse_options(int argc, const char* const* argv, std::ostream& out, std::ostream& err);

}  // namespace stig::node
