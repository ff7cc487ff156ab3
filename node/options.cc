#include "node/options.h"

#include <CLI/CLI.hpp>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <ostream>
#include <set>
#include <vector>

namespace stig::node {
namespace {

// Node ids appear in logs, in the --peers syntax and on the wire: keep them
// to a character set that needs no quoting.
bool valid_node_id(std::string_view id) {
  if (id.empty() || id.size() > 64) return false;
  return std::all_of(id.begin(), id.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.';
  });
}

// Thrown inside parse_options only, to leave with one line; never escapes it.
struct BadFlag {
  std::string message;
};

}  // namespace

std::string Endpoint::to_string() const {
  if (host.find(':') != std::string::npos) return "[" + host + "]:" + std::to_string(port);
  return host + ":" + std::to_string(port);
}

std::optional<Endpoint> parse_endpoint(std::string_view text, std::string* error) {
  auto fail = [&](const std::string& why) -> std::optional<Endpoint> {
    if (error) *error = "'" + std::string(text) + "' " + why;
    return std::nullopt;
  };
  Endpoint ep;
  std::string_view port_text;
  if (!text.empty() && text.front() == '[') {  // [v6]:port
    const size_t close = text.find(']');
    if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':')
      return fail("is not [HOST]:PORT");
    ep.host = std::string(text.substr(1, close - 1));
    port_text = text.substr(close + 2);
  } else {
    const size_t colon = text.rfind(':');
    if (colon == std::string_view::npos) return fail("is not HOST:PORT");
    ep.host = std::string(text.substr(0, colon));
    port_text = text.substr(colon + 1);
    if (ep.host.find(':') != std::string::npos) return fail("is not HOST:PORT (write IPv6 hosts as [HOST]:PORT)");
  }
  if (ep.host.empty()) return fail("has an empty host");
  unsigned long port = 0;
  const auto [ptr, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
  if (port_text.empty() || ec != std::errc() || ptr != port_text.data() + port_text.size())
    return fail("has a port that is not a number");
  if (port < 1 || port > 65535) return fail("has a port outside 1..65535");
  ep.port = static_cast<uint16_t>(port);
  return ep;
}

ParseOutcome parse_options(int argc, const char* const* argv, std::ostream& out, std::ostream& err) {
  CLI::App app{
      "stigd: one node of a Stigmergy cluster. It serves clients and peers on one TCP port,\n"
      "keeps every key, gossips lazy updates to its peers, runs Raft for the strong path and\n"
      "makes writes durable in RocksDB before acknowledging them.\n\n"
      "Example:\n"
      "  stigd --id n1 --listen 127.0.0.1:7101 --peers n2=127.0.0.1:7102,n3=127.0.0.1:7103 --data-dir /var/lib/stig/n1 \\\n"
      "        --tls-ca certs/ca.crt --tls-cert certs/n1.crt --tls-key certs/n1.key\n"
      "  (make certificates with `stig cert --help`; docs/security.md)\n",
      "stigd"};
  app.set_config("--config", "",
                 "Read settings from a TOML or INI file whose keys are the long flag names,\n"
                 "e.g. id = \"n1\", listen = \"127.0.0.1:7101\", peers = [\"n2=127.0.0.1:7102\"];\n"
                 "flags given on the command line win over the file");
  app.allow_config_extras(false);

  const replication::Config defaults;
  std::string id, listen, data_dir, log_level = "info";
  std::vector<std::string> peers;
  uint64_t max_frame_bytes = 4u << 20;
  uint64_t peer_queue_bytes = 64ull << 20;
  int64_t heartbeat_ms = defaults.heartbeat_interval_ms;
  int64_t suspect_ms = defaults.suspect_after_ms;
  int64_t down_ms = defaults.down_after_ms;
  int64_t anti_entropy_ms = defaults.anti_entropy_interval_ms;
  int64_t durability_timeout_ms = defaults.durability_timeout_ms;
  uint32_t max_siblings = defaults.max_siblings;
  const Options option_defaults;
  uint64_t client_buffer_bytes = option_defaults.client_buffer_bytes;
  uint32_t max_requests_in_flight = option_defaults.max_requests_in_flight;
  uint32_t group_commit_gather_us = option_defaults.group_commit_gather_us;
  uint64_t max_client_connections = option_defaults.max_client_connections;
  uint64_t inbound_buffer_bytes = option_defaults.inbound_buffer_bytes;
  int64_t hello_timeout_ms = option_defaults.hello_timeout_ms;
  int64_t idle_timeout_ms = option_defaults.idle_timeout_ms;
  int64_t slow_frame_timeout_ms = option_defaults.slow_frame_timeout_ms;
  int64_t peer_idle_timeout_ms = option_defaults.peer_idle_timeout_ms;
  bool enable_admin = false;
  bool access_control = false, no_access_control = false;
  std::string admin_agent = defaults.admin_agent;
  std::string tls_ca, tls_cert, tls_key, tls_crl;
  bool insecure_plaintext = false;
  int64_t tls_handshake_timeout_ms = option_defaults.tls_handshake_timeout_ms;
  uint64_t retry_cache_clients = defaults.dedup_clients;
  uint64_t retry_cache_bytes = defaults.dedup_max_bytes;
  int64_t retry_cache_idle_ms = defaults.dedup_idle_ms;
  int64_t raft_election_min_ms = defaults.raft_election_min_ms;
  int64_t raft_election_max_ms = defaults.raft_election_max_ms;
  int64_t raft_heartbeat_ms = defaults.raft_heartbeat_ms;
  uint64_t strong_snapshot_entries = defaults.strong_snapshot_entries;
  uint64_t strong_history_revisions = defaults.strong_history_revisions;

  app.add_option("--id", id, "This node's id (letters, digits, '-', '_', '.'), unique in the cluster")->required();
  app.add_option("--listen", listen, "HOST:PORT to serve clients and peers on, e.g. 127.0.0.1:7101")->required();
  app.add_option("--peers", peers,
                 "Every other node as ID=HOST:PORT, comma-separated, e.g. n2=127.0.0.1:7102,n3=127.0.0.1:7103;\n"
                 "omit for a single-node cluster")
      ->delimiter(',');
  app.add_option("--data-dir", data_dir, "Directory of this node's RocksDB database (created if missing)")->required();
  app.add_option("--log-level", log_level, "trace, debug, info, warn or error")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error"}))
      ->capture_default_str();
  app.add_option("--max-frame-bytes", max_frame_bytes,
                 "Refuse frames larger than this (accepts units: 4MiB, 512KiB)")
      ->transform(CLI::AsSizeValue(false))
      ->check(CLI::Range(uint64_t{4096}, uint64_t{1} << 30))
      ->capture_default_str();
  app.add_option("--peer-queue-bytes", peer_queue_bytes,
                 "Bytes queued per peer before messages to it are dropped (anti-entropy repairs them)")
      ->transform(CLI::AsSizeValue(false))
      ->check(CLI::Range(uint64_t{1} << 16, uint64_t{1} << 40))
      ->capture_default_str();
  app.add_option("--heartbeat-ms", heartbeat_ms, "Heartbeat interval to peers")->capture_default_str();
  app.add_option("--suspect-ms", suspect_ms, "Silence after which a peer is suspect")->capture_default_str();
  app.add_option("--down-ms", down_ms, "Silence after which a peer is down")->capture_default_str();
  app.add_option("--anti-entropy-ms", anti_entropy_ms, "Interval between anti-entropy exchanges")
      ->capture_default_str();
  app.add_option("--durability-timeout-ms", durability_timeout_ms,
                 "How long quorum/all writes wait for replicas before failing with DURABILITY_NOT_MET")
      ->capture_default_str();
  app.add_option("--max-siblings", max_siblings, "Puts that would leave a key with more siblings fail")
      ->capture_default_str();

  const auto timeout_range = CLI::Range(int64_t{0}, int64_t{24} * 3600 * 1000);
  app.add_option("--max-requests-in-flight", max_requests_in_flight,
                 "Requests of one client connection the node works on at once; later pipelined\n"
                 "requests wait unread until answers go out (bounds what one read can make it hold)")
      ->check(CLI::Range(uint32_t{1}, uint32_t{1} << 16))
      ->capture_default_str();
  app.add_option("--group-commit-gather-us", group_commit_gather_us,
                 "After an fsync'd group commit of several writes, wait this many microseconds for more writes\n"
                 "to share the next fsync (fewer fsyncs and wake-ups: less CPU per write under load, up to this\n"
                 "much more latency; a lone sequential writer never waits); 0: no wait")
      ->check(CLI::Range(uint32_t{0}, uint32_t{100'000}))
      ->capture_default_str();
  app.add_option("--client-buffer-bytes", client_buffer_bytes,
                 "Unsent response bytes per client before the node stops reading its requests")
      ->transform(CLI::AsSizeValue(false))
      ->check(CLI::Range(uint64_t{1} << 16, uint64_t{1} << 40))
      ->capture_default_str();
  app.add_option("--max-client-connections", max_client_connections,
                 "Client connections served at once; more are answered 'too many connections' and closed\n"
                 "(inbound links from configured peers do not count)")
      ->check(CLI::Range(uint64_t{1}, uint64_t{1} << 20))
      ->capture_default_str();
  app.add_option("--inbound-buffer-bytes", inbound_buffer_bytes,
                 "Bytes of partly received frames buffered across all connections; a client frame that\n"
                 "would exceed it is refused and its connection closed")
      ->transform(CLI::AsSizeValue(false))
      ->check(CLI::Range(uint64_t{1} << 16, uint64_t{1} << 40))
      ->capture_default_str();
  app.add_option("--hello-timeout-ms", hello_timeout_ms,
                 "A new connection that sends nothing for this long is closed (0: never)")
      ->check(timeout_range)
      ->capture_default_str();
  app.add_option("--idle-timeout-ms", idle_timeout_ms,
                 "A client connection without a complete request for this long is closed (0: never)")
      ->check(timeout_range)
      ->capture_default_str();
  app.add_option("--slow-frame-timeout-ms", slow_frame_timeout_ms,
                 "A frame must arrive completely within this long of its first byte, else the connection\n"
                 "gets an error and is closed (0: no limit)")
      ->check(timeout_range)
      ->capture_default_str();
  app.add_option("--peer-idle-timeout-ms", peer_idle_timeout_ms,
                 "An inbound peer link without a frame for this long is closed, so a peer that reconnects\n"
                 "is not refused as a duplicate (0: never). Peers send a keepalive at a fifth of it")
      ->check(timeout_range)
      ->capture_default_str();
  app.add_option("--retry-cache-clients", retry_cache_clients,
                 "Clients whose recent answers are kept so their retries are not applied twice;\n"
                 "the least recently active are forgotten first")
      ->check(CLI::Range(uint64_t{1}, uint64_t{1} << 30))
      ->capture_default_str();
  app.add_option("--retry-cache-bytes", retry_cache_bytes, "Bytes of answers the retry cache keeps, at most")
      ->transform(CLI::AsSizeValue(false))
      ->check(CLI::Range(uint64_t{1} << 16, uint64_t{1} << 40))
      ->capture_default_str();
  app.add_option("--retry-cache-idle-ms", retry_cache_idle_ms,
                 "A client silent for this long is forgotten by the retry cache")
      ->check(CLI::Range(int64_t{1000}, int64_t{7} * 24 * 3600 * 1000))
      ->capture_default_str();
  app.add_option("--raft-election-min-ms", raft_election_min_ms,
                 "Strong path: a follower that hears no leader for a random time in [min, max) starts an\n"
                 "election (same value on every node)")
      ->check(CLI::Range(int64_t{10}, int64_t{60000}))
      ->capture_default_str();
  app.add_option("--raft-election-max-ms", raft_election_max_ms, "Strong path: see --raft-election-min-ms")
      ->check(CLI::Range(int64_t{11}, int64_t{120000}))
      ->capture_default_str();
  app.add_option("--raft-heartbeat-ms", raft_heartbeat_ms,
                 "Strong path: the leader's heartbeat interval (well below the election timeout)")
      ->check(CLI::Range(int64_t{1}, int64_t{10000}))
      ->capture_default_str();
  app.add_option("--strong-snapshot-entries", strong_snapshot_entries,
                 "Strong path: snapshot the state machine (and drop the log before it) every this many entries")
      ->check(CLI::Range(uint64_t{1}, uint64_t{100000000}))
      ->capture_default_str();
  app.add_option("--strong-history-revisions", strong_history_revisions,
                 "Strong path: revisions of MVCC history kept readable (older ones are compacted);\n"
                 "0 keeps everything until an explicit compact")
      ->capture_default_str();
  app.add_flag("--enable-admin", enable_admin,
               "Allow admin verbs (stig admin partition / heal: fault injection) on this node;\n"
               "without it they fail with PERMISSION_DENIED. Anyone who can connect may use them");
  app.add_flag("--access-control", access_control,
               "Enforce access rules (stig acl ...; docs/access-control.md): every request needs a rule\n"
               "granting its agent read, write or admin on the keys it touches. Without client\n"
               "certificates agents are only claimed names: for local experiments, not security.\n"
               "Every node of a cluster must use the same setting. Default: on with TLS, off with\n"
               "--insecure-plaintext");
  app.add_flag("--no-access-control", no_access_control,
               "Do not enforce access rules even with TLS (agents are still bound to their certificates)");
  app.add_option("--admin-agent", admin_agent,
                 "The agent that always holds admin on every key (sets up a fresh cluster; cannot be revoked);\n"
                 "with TLS, its credential may also act for other agents (stig --agent NAME)")
      ->capture_default_str();

  app.add_option("--tls-ca", tls_ca, "PEM file of the cluster's CA certificate: peers and clients must present a\n"
                                     "certificate it signed (mutual TLS 1.3)");
  app.add_option("--tls-cert", tls_cert, "PEM file of this node's certificate (subject CN node:<--id>), from the CA");
  app.add_option("--tls-key", tls_key, "PEM file of the private key of --tls-cert");
  app.add_option("--tls-crl", tls_crl, "Optional PEM certificate revocation list from the CA: revoked certificates\n"
                                       "are refused");
  app.add_option("--tls-handshake-timeout-ms", tls_handshake_timeout_ms,
                 "A TLS handshake not done this long after the connection opened is closed")
      ->capture_default_str();
  app.add_flag("--insecure-plaintext", insecure_plaintext,
               "Plain TCP on every link, no authentication: for local experiments only. Anyone who can\n"
               "reach the port can read, write and speak as any agent or peer");

  ParseOutcome outcome;
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp&) {
    out << app.help();
    outcome.exit_code = 0;
    return outcome;
  } catch (const CLI::CallForAllHelp&) {
    out << app.help("", CLI::AppFormatMode::All);
    outcome.exit_code = 0;
    return outcome;
  } catch (const CLI::ParseError& e) {
    std::string what = e.what();
    if (dynamic_cast<const CLI::ConfigError*>(&e) || dynamic_cast<const CLI::FileError*>(&e))
      what = "--config: " + what;
    std::replace(what.begin(), what.end(), '\n', ' ');
    err << "stigd: " << what << " (see stigd --help)\n";
    outcome.exit_code = 2;
    return outcome;
  }

  try {
    Options o;
    replication::Config& c = o.config;
    if (!valid_node_id(id)) throw BadFlag{"--id '" + id + "' must be 1-64 letters, digits, '-', '_' or '.'"};
    c.self = id;

    std::string why;
    auto ep = parse_endpoint(listen, &why);
    if (!ep) throw BadFlag{"--listen " + why};
    o.listen = *ep;
    c.self_address = o.listen.to_string();

    std::set<std::string> addresses{c.self_address};
    for (const std::string& item : peers) {
      if (item.empty()) continue;  // tolerate a trailing comma
      const size_t eq = item.find('=');
      if (eq == std::string::npos) throw BadFlag{"--peers: '" + item + "' is not ID=HOST:PORT"};
      std::string peer_id = item.substr(0, eq);
      if (!valid_node_id(peer_id))
        throw BadFlag{"--peers: id '" + peer_id + "' must be 1-64 letters, digits, '-', '_' or '.'"};
      if (peer_id == id) throw BadFlag{"--peers: '" + peer_id + "' is this node's own --id"};
      auto peer_ep = parse_endpoint(std::string_view(item).substr(eq + 1), &why);
      if (!peer_ep) throw BadFlag{"--peers: " + peer_id + " address " + why};
      const std::string address = peer_ep->to_string();
      if (!addresses.insert(address).second)
        throw BadFlag{"--peers: address " + address + " of " + peer_id + " is used twice (or by --listen)"};
      c.peers.push_back({std::move(peer_id), address});
    }
    std::sort(c.peers.begin(), c.peers.end(), [](const auto& a, const auto& b) { return a.id < b.id; });

    if (data_dir.empty()) throw BadFlag{"--data-dir must not be empty"};
    o.data_dir = data_dir;

    static const std::pair<const char*, LogLevel> kLevels[] = {{"trace", LogLevel::kTrace},
                                                               {"debug", LogLevel::kDebug},
                                                               {"info", LogLevel::kInfo},
                                                               {"warn", LogLevel::kWarn},
                                                               {"error", LogLevel::kError}};
    for (const auto& [name, level] : kLevels)
      if (log_level == name) o.log_level = level;

    o.max_frame_bytes = static_cast<uint32_t>(max_frame_bytes);
    o.peer_queue_bytes = peer_queue_bytes;
    o.client_buffer_bytes = client_buffer_bytes;
    o.max_requests_in_flight = max_requests_in_flight;
    o.group_commit_gather_us = group_commit_gather_us;
    o.max_client_connections = static_cast<uint32_t>(max_client_connections);
    o.inbound_buffer_bytes = inbound_buffer_bytes;
    if (inbound_buffer_bytes < uint64_t{o.max_frame_bytes} + 4)
      throw BadFlag{"--inbound-buffer-bytes " + std::to_string(inbound_buffer_bytes) +
                    " must be at least --max-frame-bytes (" + std::to_string(o.max_frame_bytes) +
                    ") plus 4, or no frame of the maximum size could ever be received"};
    o.hello_timeout_ms = hello_timeout_ms;
    o.idle_timeout_ms = idle_timeout_ms;
    o.slow_frame_timeout_ms = slow_frame_timeout_ms;
    o.peer_idle_timeout_ms = peer_idle_timeout_ms;
    if (peer_idle_timeout_ms != 0 && peer_idle_timeout_ms < 100)
      throw BadFlag{"--peer-idle-timeout-ms " + std::to_string(peer_idle_timeout_ms) +
                    " is too short (at least 100, or 0 for never)"};
    o.enable_admin = enable_admin;
    if (access_control && no_access_control)
      throw BadFlag{"--access-control and --no-access-control contradict each other: give one or neither"};
    // Rules mean something only when agents are authenticated: on by default
    // with TLS; over plaintext only when asked for (claimed names).
    c.access_control = access_control || (!no_access_control && !insecure_plaintext);
    c.admin_agent = admin_agent;
    c.heartbeat_interval_ms = heartbeat_ms;
    c.suspect_after_ms = suspect_ms;
    c.down_after_ms = down_ms;
    c.anti_entropy_interval_ms = anti_entropy_ms;
    c.durability_timeout_ms = durability_timeout_ms;
    c.max_siblings = max_siblings;
    c.dedup_clients = retry_cache_clients;
    c.dedup_max_bytes = retry_cache_bytes;
    c.dedup_idle_ms = retry_cache_idle_ms;
    c.raft_election_min_ms = raft_election_min_ms;
    c.raft_election_max_ms = raft_election_max_ms;
    c.raft_heartbeat_ms = raft_heartbeat_ms;
    c.strong_snapshot_entries = strong_snapshot_entries;
    c.strong_history_revisions = strong_history_revisions;
    // Peer batches and one key's whole state must fit in a frame the peers
    // accept (--max-frame-bytes is meant to be the same cluster-wide).
    c.max_batch_bytes = std::min<uint32_t>(c.max_batch_bytes, o.max_frame_bytes / 2);
    c.max_state_bytes = std::min<uint32_t>(c.max_state_bytes, o.max_frame_bytes / 4 * 3);
    c.max_value_bytes = std::min<uint32_t>(c.max_value_bytes, c.max_state_bytes / 2);
    // A snapshot chunk travels with its metadata inside a peer frame.
    c.raft_snapshot_chunk_bytes = std::min<uint64_t>(c.raft_snapshot_chunk_bytes, o.max_frame_bytes / 2);

    if (auto st = c.validate(); !st.is_ok()) throw BadFlag{st.message()};
    const bool any_tls = !tls_ca.empty() || !tls_cert.empty() || !tls_key.empty() || !tls_crl.empty();
    if (insecure_plaintext && any_tls)
      throw BadFlag{"--insecure-plaintext and --tls-* contradict each other: give one or the other"};
    if (!insecure_plaintext) {
      if (!any_tls)
        throw BadFlag{"no transport security chosen: pass --tls-ca, --tls-cert and --tls-key (certificates: stig cert "
                      "--help), or --insecure-plaintext for an unauthenticated local experiment"};
      if (tls_ca.empty() || tls_cert.empty() || tls_key.empty())
        throw BadFlag{"TLS needs all of --tls-ca, --tls-cert and --tls-key (missing: " +
                      std::string(tls_ca.empty() ? "--tls-ca " : "") + (tls_cert.empty() ? "--tls-cert " : "") +
                      (tls_key.empty() ? "--tls-key" : "") + ")"};
    }
    if (tls_handshake_timeout_ms < 100)
      throw BadFlag{"--tls-handshake-timeout-ms " + std::to_string(tls_handshake_timeout_ms) +
                    " is too short (at least 100)"};
    o.tls_ca = tls_ca;
    o.tls_cert = tls_cert;
    o.tls_key = tls_key;
    o.tls_crl = tls_crl;
    o.insecure_plaintext = insecure_plaintext;
    o.tls_handshake_timeout_ms = tls_handshake_timeout_ms;
    outcome.options = std::move(o);
  } catch (const BadFlag& bad) {
    err << "stigd: " << bad.message << " (see stigd --help)\n";
    outcome.exit_code = 2;
  }
  return outcome;
}

}  // namespace stig::node
