#include "node/server.h"

#include <spdlog/spdlog.h>

#include <chrono>
#include <csignal>
#include <unordered_map>
#include <vector>

#include "node/tls_stream.h"
#include "wire/envelope.h"
#include "replication/printable.h"

namespace stig::node {

namespace pb = stigmergy::v1;
using replication::MonoTime;
using wire::encode_peer_frame;
using wire::SharedFrame;

namespace {

// How long shutdown waits for queued frames to be written before closing.
constexpr std::chrono::seconds kShutdownWriteGrace{2};
// Connections answered "too many connections" at once and lingering to
// deliver it; beyond this many, further ones are closed without a reply.
constexpr size_t kMaxRefusing = 64;
constexpr size_t kReadBufferBytes = 64 * 1024;
constexpr std::chrono::seconds kLimitedWarningEvery{5};
constexpr std::chrono::milliseconds kSlowStepTime{100};
enum LimitedKind { kTooManyConnections, kOverBudget, kAcceptFailed, kSlowStep, kTlsHandshake };

std::string join(const std::set<std::string>& ids) {
  std::string s;
  for (const auto& id : ids) {
    if (!s.empty()) s += ",";
    s += id;
  }
  return s;
}

}  // namespace

Server::Server(const Options& options, replication::Replica& replica, Storage& storage,
               std::shared_ptr<TlsContext> tls)
    : options_(options),
      replica_(replica),
      tls_(std::move(tls)),
      acceptor_(io_),
      signals_(io_),
      reload_signals_(io_),
      wake_timer_(io_),
      shutdown_timer_(io_),
      read_buf_(kReadBufferBytes),
      sweep_timer_(io_),
      pipeline_(
          io_, storage, [this](runtime::ReleaseQueue::Released& out) { release(out); },
          [this](uint64_t through) {
            step_core(replication::Persisted{through});
            schedule_flush();
          },
          [this](const StorageStatus& st) { on_storage_failure(st); },
          std::chrono::microseconds(options.group_commit_gather_us)) {
  using std::chrono::milliseconds;
  limits_.max_frame_bytes = options.max_frame_bytes;
  limits_.max_backlog_bytes = options.client_buffer_bytes;
  limits_.max_requests_in_flight = options.max_requests_in_flight;
  limits_.hello_timeout = milliseconds(options.hello_timeout_ms);
  limits_.idle_timeout = milliseconds(options.idle_timeout_ms);
  limits_.slow_frame_timeout = milliseconds(options.slow_frame_timeout_ms);
  limits_.peer_idle_timeout = milliseconds(options.peer_idle_timeout_ms);
  limits_.handshake_timeout = milliseconds(options.tls_handshake_timeout_ms);
  // Sweep often enough that every timeout fires within a quarter of itself.
  int64_t shortest = 0;
  for (int64_t t : {options.hello_timeout_ms, options.idle_timeout_ms, options.slow_frame_timeout_ms,
                    options.peer_idle_timeout_ms, tls_ ? options.tls_handshake_timeout_ms : int64_t{0}})
    if (t > 0 && (shortest == 0 || t < shortest)) shortest = t;
  if (shortest > 0) sweep_every_ = milliseconds(std::clamp<int64_t>(shortest / 4, 10, 1000));
  // Peers send a keepalive when they have sent nothing for a fifth of the
  // peer-idle timeout (the flag is meant to be the same cluster-wide).
  const milliseconds keepalive(options.peer_idle_timeout_ms / 5);
  probation_limit_ = 2 * options.config.peers.size();
  for (const auto& peer : options.config.peers) {
    std::string why;
    auto ep = parse_endpoint(peer.address, &why);
    if (!ep) continue;  // options validated every address already
    links_.emplace(peer.id, std::make_shared<PeerLink>(io_, options.config.self, peer.id, *ep,
                                                       options.peer_queue_bytes, keepalive, tls_.get(),
                                                       milliseconds(options.tls_handshake_timeout_ms)));
  }
}

Server::~Server() = default;

replication::Now Server::now() {
  using namespace std::chrono;
  replication::Now n;
  n.mono = duration_cast<milliseconds>(steady_clock::now().time_since_epoch()).count();
  n.wall = duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
  return n;
}

bool Server::listen(std::string* error) {
  const std::string where = options_.listen.to_string();
  auto fail = [&](const std::string& why) {
    if (error) *error = "cannot listen on " + where + ": " + why;
    boost::system::error_code ignored;
    acceptor_.close(ignored);
    return false;
  };
  boost::system::error_code ec;
  tcp::resolver resolver(io_);
  auto results = resolver.resolve(options_.listen.host, std::to_string(options_.listen.port), ec);
  if (ec) return fail(ec.message());
  if (results.empty()) return fail("host does not resolve");
  const tcp::endpoint ep = results.begin()->endpoint();
  acceptor_.open(ep.protocol(), ec);
  if (ec) return fail(ec.message());
  acceptor_.set_option(tcp::acceptor::reuse_address(true), ec);
  if (ec) return fail(ec.message());
  acceptor_.bind(ep, ec);
  if (ec) return fail(ec.message());
  acceptor_.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) return fail(ec.message());
  return true;
}

tcp::endpoint Server::local_endpoint() const {
  boost::system::error_code ec;
  return acceptor_.local_endpoint(ec);
}

int Server::run() {
  signals_.add(SIGINT);
  signals_.add(SIGTERM);
  signals_.async_wait([this](const boost::system::error_code& ec, int signo) {
    if (ec) return;
    spdlog::info("received {}, shutting down", signo == SIGTERM ? "SIGTERM" : "SIGINT");
    stop();
  });
  reload_signals_.add(SIGHUP);
  arm_reload();
  for (auto& [id, link] : links_) link->start();
  do_accept();
  arm_sweep();
  // Let the core arm its timers (heartbeats, anti-entropy) from the start.
  step_core(replication::Tick{});
  schedule_flush();
  io_.run();
  return exit_code_;
}

void Server::do_accept() {
  acceptor_.async_accept([this](const boost::system::error_code& ec, tcp::socket socket) {
    if (stopping_ || !acceptor_.is_open()) return;
    if (ec) {
      if (ec == asio::error::operation_aborted) return;
      // E.g. out of file descriptors: back off briefly instead of spinning.
      warn_limited(kAcceptFailed, "accept failed: " + ec.message() + "; retrying in 100 ms");
      shutdown_timer_.expires_after(std::chrono::milliseconds(100));
      shutdown_timer_.async_wait([this](const boost::system::error_code& e) {
        if (!e && !stopping_) do_accept();
      });
      return;
    }
    const uint64_t id = next_connection_id_++;
    auto conn = std::make_shared<Connection>(*this, std::move(socket), id, limits_, tls_.get());
    connections_.emplace(id, conn);
    spdlog::debug("connection #{} from {}", id, conn->remote());
    admit(conn);
    do_accept();
  });
}

// --- limits ---------------------------------------------------------------------

std::string Server::too_many_connections() const {
  return "too many connections (limit " + std::to_string(options_.max_client_connections) + ")";
}

void Server::move_slot(Connection& conn, Slot to) {
  --slot_count_[static_cast<size_t>(conn.slot())];
  ++slot_count_[static_cast<size_t>(to)];
  conn.set_slot(to);
}

void Server::admit(const std::shared_ptr<Connection>& conn) {
  ++slot_count_[static_cast<size_t>(Slot::kNone)];
  if (slot_count_[static_cast<size_t>(Slot::kClient)] < options_.max_client_connections) {
    move_slot(*conn, Slot::kClient);
    conn->start();
    return;
  }
  // Over the limit. A peer reconnecting must still get in: a few connections
  // are taken on probation, where only a hello is accepted.
  if (slot_count_[static_cast<size_t>(Slot::kProbation)] < probation_limit_) {
    move_slot(*conn, Slot::kProbation);
    conn->start();
    return;
  }
  warn_limited(kTooManyConnections, "refused a connection from " + conn->remote() + ": " + too_many_connections());
  if (slot_count_[static_cast<size_t>(Slot::kRefused)] < kMaxRefusing) {
    move_slot(*conn, Slot::kRefused);
    conn->refuse(pb::UNAVAILABLE, too_many_connections());
  } else {
    conn->close();
  }
}

bool Server::admit_client(Connection& conn, uint64_t seq) {
  if (conn.slot() != Slot::kProbation) return true;
  if (slot_count_[static_cast<size_t>(Slot::kClient)] < options_.max_client_connections) {
    move_slot(conn, Slot::kClient);  // a client slot freed up meanwhile
    return true;
  }
  warn_limited(kTooManyConnections, "refused client connection #" + std::to_string(conn.id()) + " from " +
                                        conn.remote() + ": " + too_many_connections());
  conn.fail(pb::UNAVAILABLE, seq, too_many_connections(), false);
  return false;
}

bool Server::admit_peer(Connection& conn, const std::string& id) {
  if (!is_peer(id)) {
    spdlog::warn("connection #{} from {}: hello from '{}', which is not a configured peer; closing", conn.id(),
                 conn.remote(), replication::printable(id, 64));
    return false;
  }
  if (auto it = inbound_.find(id); it != inbound_.end()) {
    auto other = connections_.find(it->second);
    if (other != connections_.end() && !other->second->closed()) {
      const auto silent = std::chrono::duration_cast<std::chrono::milliseconds>(
          Connection::Clock::now() - other->second->last_frame_at());
      spdlog::warn(
          "connection #{} from {}: hello as {}, but the inbound link from {} is open (connection #{} from {}, last "
          "frame {} ms ago); refusing the newcomer (a real reconnect succeeds once the old link closes)",
          conn.id(), conn.remote(), id, id, other->second->id(), other->second->remote(), silent.count());
      return false;
    }
  }
  inbound_[id] = conn.id();
  move_slot(conn, Slot::kPeer);
  return true;
}

bool Server::charge_inbound(Connection& conn, uint64_t bytes) {
  // Inbound peer links are never refused (replication must not starve behind
  // clients); their frames are bounded by the frame limit and the peer count.
  if (conn.role() != Connection::Role::kPeer && inbound_bytes_ + bytes > options_.inbound_buffer_bytes) {
    const std::string what = "node is over its inbound buffer budget (" + std::to_string(inbound_bytes_) +
                             " bytes of partly received frames buffered, limit " +
                             std::to_string(options_.inbound_buffer_bytes) + ")";
    warn_limited(kOverBudget, "connection #" + std::to_string(conn.id()) + " from " + conn.remote() +
                                  ": a frame of " + std::to_string(bytes) + " more bytes refused: " + what);
    conn.fail(pb::UNAVAILABLE, 0, what, false);
    return false;
  }
  inbound_bytes_ += bytes;
  inbound_peak_ = std::max(inbound_peak_, inbound_bytes_);
  return true;
}

void Server::warn_limited(int kind, const std::string& message) {
  Limited& l = limited_[static_cast<size_t>(kind)];
  const auto t = std::chrono::steady_clock::now();
  if (l.last != std::chrono::steady_clock::time_point{} && t - l.last < kLimitedWarningEvery) {
    ++l.suppressed;
    return;
  }
  if (l.suppressed)
    spdlog::warn("{} (and {} more like it in the last {} s)", message, l.suppressed,
                 std::chrono::duration_cast<std::chrono::seconds>(t - l.last).count());
  else
    spdlog::warn("{}", message);
  l.last = t;
  l.suppressed = 0;
}

void Server::arm_sweep() {
  if (sweep_every_.count() == 0 || stopping_) return;
  sweep_timer_.expires_after(sweep_every_);
  sweep_timer_.async_wait([this](const boost::system::error_code& ec) {
    if (ec || stopping_) return;
    sweep();
    arm_sweep();
  });
}

void Server::sweep() {
  const auto t = Connection::Clock::now();
  // Copy: a connection that times out is erased from connections_.
  std::vector<std::shared_ptr<Connection>> conns;
  conns.reserve(connections_.size());
  for (auto& [id, conn] : connections_) conns.push_back(conn);
  for (auto& conn : conns) conn->check_timeouts(t);
}

// --- inputs -------------------------------------------------------------------

void Server::on_client_request(Connection& conn, pb::Request&& request) {
  if (stopping_) return;
  replication::ClientIdentity identity;
  if (conn.tls()) identity = {conn.identity().name, true};
  switch (request.op_case()) {
    case pb::Request::kAdminPartition:
    case pb::Request::kAdminHeal:
      if (!options_.enable_admin) {
        const char* verb = request.has_admin_partition() ? "admin partition" : "admin heal";
        spdlog::warn("refused {} from {} ({}): admin verbs are disabled (start stigd with --enable-admin)", verb,
                     conn.remote(), request.agent().empty() ? "no agent" : replication::printable(request.agent(), 64));
        pb::Response r;
        r.set_seq(request.seq());
        r.set_node(self_id());
        r.set_error(pb::PERMISSION_DENIED);
        r.set_error_message(std::string(verb) + " is disabled on " + self_id() +
                            ": start stigd with --enable-admin to allow fault injection");
        conn.send_response(r);
        return;
      }
      // Admin verbs need global admin when access control is on, by the
      // rules this node has applied (the core decides, as for every request).
      if (auto st = replica_.authorize(identity, request); !st.is_ok()) {
        spdlog::warn("refused admin verb from {}: {}", conn.remote(), st.message());
        pb::Response r;
        r.set_seq(request.seq());
        r.set_node(self_id());
        r.set_error(pb::PERMISSION_DENIED);
        r.set_error_message(replication::one_line_utf8(st.message()));
        conn.send_response(r);
        return;
      }
      if (request.has_admin_partition())
        handle_partition(conn, request);
      else
        handle_heal(conn, request);
      return;
    default:
      break;
  }
  const replication::ClientToken token = conn.next_token();
  step_core(replication::ClientInput{token, std::move(request), std::move(identity)});
  schedule_flush();
}

void Server::on_peer_message(const std::string& from, pb::PeerMessage&& message) {
  if (stopping_) return;
  step_core(replication::PeerInput{from, std::move(message)});
  schedule_flush();
}

bool Server::is_peer(const std::string& id) const { return links_.count(id) != 0; }

void Server::on_connection_closed(Connection& conn) {
  --slot_count_[static_cast<size_t>(conn.slot())];
  conn.set_slot(Slot::kNone);
  spdlog::debug("connection #{} from {} closed; now {} client, {} probation, {} refused, {} peer connections",
                conn.id(), conn.remote(), slot_count_[static_cast<size_t>(Slot::kClient)],
                slot_count_[static_cast<size_t>(Slot::kProbation)], slot_count_[static_cast<size_t>(Slot::kRefused)],
                slot_count_[static_cast<size_t>(Slot::kPeer)]);
  if (conn.role() == Connection::Role::kPeer) {
    auto it = inbound_.find(conn.peer_id());
    if (it != inbound_.end() && it->second == conn.id()) inbound_.erase(it);
  }
  connections_.erase(conn.id());
}

void Server::on_handshake_failed(Connection& conn, const std::string& why) {
  warn_limited(kTlsHandshake, "connection #" + std::to_string(conn.id()) + " from " + conn.remote() +
                                  ": TLS handshake failed: " + why + "; closing");
}

// --- fault injection ------------------------------------------------------------

void Server::handle_partition(Connection& conn, const pb::Request& request) {
  pb::Response r;
  r.set_seq(request.seq());
  r.set_node(self_id());
  std::set<std::string> drop;
  for (const auto& id : request.admin_partition().drop()) {
    if (!is_peer(id)) {
      std::set<std::string> peers;
      for (const auto& [pid, link] : links_) peers.insert(pid);
      r.set_error(pb::BAD_REQUEST);
      r.set_error_message("admin partition: '" + replication::printable(id, 64) + "' is not a peer of " + self_id() + " (peers: " +
                          (peers.empty() ? std::string("none") : join(peers)) + ")");
      conn.send_response(r);
      return;
    }
    drop.insert(id);
  }
  if (drop.empty()) {
    r.set_error(pb::BAD_REQUEST);
    r.set_error_message("admin partition: name at least one peer to drop");
    conn.send_response(r);
    return;
  }
  dropped_ = drop;
  for (const auto& id : dropped_) links_.at(id)->clear();
  const std::string msg = self_id() + " drops all traffic to and from " + join(dropped_);
  spdlog::warn("fault injection: {} (requested by {})", msg,
               request.agent().empty() ? conn.remote() : replication::printable(request.agent(), 64));
  r.mutable_admin()->set_message(msg);
  conn.send_response(r);
}

void Server::handle_heal(Connection& conn, const pb::Request& request) {
  const std::string was = join(dropped_);
  dropped_.clear();
  const std::string msg =
      self_id() + " healed: " + (was.empty() ? std::string("no peers were dropped") : "no longer drops " + was);
  spdlog::info("fault injection: {}", msg);
  pb::Response r;
  r.set_seq(request.seq());
  r.set_node(self_id());
  r.mutable_admin()->set_message(msg);
  conn.send_response(r);
}

// --- outputs ----------------------------------------------------------------------

void Server::schedule_flush() {
  if (flush_scheduled_) return;
  flush_scheduled_ = true;
  // Runs after the handlers already ready in this loop turn, so inputs that
  // arrived together are stepped first and share one Output.
  asio::post(io_, [this] { flush(); });
}

void Server::step_core(replication::Input input) {
  const auto start = CoarseClock::now();
  replica_.step(now(), std::move(input));
  warn_if_slow(start, "step");
}

void Server::warn_if_slow(CoarseClock::time_point start, const char* what) {
  const auto took = CoarseClock::now() - start;
  // The core runs on the event loop: a long step delays heartbeats and every
  // other connection (the usual cause: a strong-path snapshot of a large
  // state machine).
  if (took >= kSlowStepTime)
    warn_limited(kSlowStep, fmt::format("one {} of the core held the event loop for {} ms", what,
                                        std::chrono::duration_cast<std::chrono::milliseconds>(took).count()));
}

void Server::flush() {
  flush_scheduled_ = false;
  const auto start = CoarseClock::now();
  replication::Output out = replica_.take_output();
  warn_if_slow(start, "output");
  arm_wake(out.wake_at);
  if (!out.empty()) pipeline_.submit(std::move(out));
}

void Server::arm_wake(MonoTime at) {
  if (stopping_ || at == armed_at_) return;
  armed_at_ = at;
  const uint64_t gen = ++wake_gen_;
  if (at == replication::kNever) {
    wake_timer_.cancel();
    return;
  }
  wake_timer_.expires_at(std::chrono::steady_clock::time_point(std::chrono::milliseconds(at)));
  wake_timer_.async_wait([this, gen](const boost::system::error_code& ec) {
    if (ec || gen != wake_gen_ || stopping_) return;
    armed_at_ = replication::kNever;
    step_core(replication::Tick{});
    schedule_flush();
  });
}

void Server::release(runtime::ReleaseQueue::Released& out) {
  for (auto& reply : out.replies) {
    auto it = connections_.find(Connection::connection_of(reply.token));
    if (it == connections_.end()) continue;  // the client went away
    if (reply.response.node().empty()) reply.response.set_node(self_id());
    it->second->send_response(reply.response);
  }
  if (out.messages.empty()) return;
  // Serialize each message once, however many peers it goes to.
  std::unordered_map<const pb::PeerMessage*, SharedFrame> encoded;
  for (const auto& m : out.messages) {
    if (!m.message || dropped_.count(m.to)) continue;
    auto link = links_.find(m.to);
    if (link == links_.end()) {
      spdlog::error("core addressed a message to unknown node '{}'; dropped", m.to);
      continue;
    }
    SharedFrame& frame = encoded[m.message.get()];
    if (!frame) frame = encode_peer_frame(*m.message);
    link->second->send(frame);
  }
}

// --- shutdown -----------------------------------------------------------------------

void Server::stop() {
  if (stopping_ || handing_off_) return;
  // A Raft leader first hands its leadership to a caught-up follower, so
  // strong clients wait for a transfer, not an election timeout. Clients
  // are no longer accepted; peers keep talking until it is done.
  if (replica_.raft_role() == "leader" && !options_.config.peers.empty()) {
    handing_off_ = true;
    boost::system::error_code ec;
    acceptor_.close(ec);
    spdlog::info("handing Raft leadership to a follower before stopping");
    step_core(replication::Leave{});
    schedule_flush();
    signals_.async_wait([this](const boost::system::error_code& e, int) {
      if (e || !handing_off_) return;
      spdlog::warn("second signal: stopping without waiting for the handoff");
      handing_off_ = false;
      stop_now();
    });
    wait_for_handoff(std::chrono::steady_clock::now() +
                     std::chrono::milliseconds(2 * options_.config.raft_election_max_ms));
    return;
  }
  stop_now();
}

void Server::wait_for_handoff(std::chrono::steady_clock::time_point deadline) {
  if (replica_.raft_role() != "leader" || std::chrono::steady_clock::now() >= deadline) {
    if (replica_.raft_role() == "leader")
      spdlog::warn("no follower took over Raft leadership in time; stopping anyway (an election follows)");
    else
      spdlog::info("Raft leadership handed to {}", replica_.raft_leader().empty() ? "(election under way)"
                                                                                   : replica_.raft_leader());
    handing_off_ = false;
    stop_now();
    return;
  }
  shutdown_timer_.expires_after(std::chrono::milliseconds(5));
  shutdown_timer_.async_wait([this, deadline](const boost::system::error_code& ec) {
    if (ec) return;
    wait_for_handoff(deadline);
  });
}

void Server::stop_now() {
  // Let the inputs already stepped reach the pipeline before refusing more.
  flush();
  stopping_ = true;
  boost::system::error_code ec;
  acceptor_.close(ec);
  ++wake_gen_;
  wake_timer_.cancel();
  sweep_timer_.cancel();
  for (auto& [id, conn] : connections_) conn->stop_reading();
  // A second signal means "now": exit without waiting (nothing unsynced is
  // ever released, so this is safe, merely impolite).
  signals_.async_wait([this](const boost::system::error_code& e, int) {
    if (e) return;
    spdlog::warn("second signal: exiting without waiting for writes");
    io_.stop();
  });
  if (pipeline_.idle()) {
    finish_shutdown();
  } else {
    spdlog::info("waiting for the in-flight storage write");
    pipeline_.set_on_idle([this] { finish_shutdown(); });
  }
}

void Server::finish_shutdown() {
  if (finishing_) return;
  finishing_ = true;  // (the pipeline may call on_idle again: ignored)
  // Copy: closing a connection erases it from connections_.
  std::vector<std::shared_ptr<Connection>> conns;
  for (auto& [id, conn] : connections_) conns.push_back(conn);
  for (auto& conn : conns) conn->close_when_flushed();
  for (auto& [id, link] : links_) link->close_when_flushed();
  wait_for_writers(std::chrono::steady_clock::now() + kShutdownWriteGrace);
}

void Server::wait_for_writers(std::chrono::steady_clock::time_point deadline) {
  bool idle = true;
  for (auto& [id, conn] : connections_) idle = idle && conn->write_idle();
  for (auto& [id, link] : links_) idle = idle && link->write_idle();
  if (idle || std::chrono::steady_clock::now() >= deadline) {
    if (!idle) spdlog::warn("shutdown: some frames could not be written in time");
    std::vector<std::shared_ptr<Connection>> conns;
    for (auto& [id, conn] : connections_) conns.push_back(conn);
    for (auto& conn : conns) conn->close();
    for (auto& [id, link] : links_) link->stop();
    signals_.cancel();
    reload_signals_.cancel();
    spdlog::info("{} stopped ({} group commits, {} writes; peak inbound buffer {} bytes)", self_id(),
                 pipeline_.syncs(), pipeline_.persists_written(), inbound_peak_);
    io_.stop();
    return;
  }
  shutdown_timer_.expires_after(std::chrono::milliseconds(10));
  shutdown_timer_.async_wait([this, deadline](const boost::system::error_code& ec) {
    if (ec) return;
    wait_for_writers(deadline);
  });
}

void Server::arm_reload() {
  reload_signals_.async_wait([this](const boost::system::error_code& ec, int) {
    if (ec) return;
    reload_revocations();
    arm_reload();
  });
}

void Server::reload_revocations() {
  if (!tls_) {
    spdlog::info("SIGHUP: this node runs without TLS; no revocation list to reload");
    return;
  }
  if (options_.tls_crl.empty()) {
    spdlog::warn("SIGHUP: no revocation list to reload (start stigd with --tls-crl FILE to revoke credentials "
                 "without a restart)");
    return;
  }
  std::string error;
  std::shared_ptr<X509_CRL> crl = reload_revocation_list(*tls_, options_.tls_crl, &error);
  if (!crl) {
    spdlog::warn("SIGHUP: kept the revocation list in force: {}", error);
    return;
  }
  // New handshakes check the new list; connections made before it are
  // checked now (closing one changes the map: collect first).
  std::vector<std::shared_ptr<Connection>> revoked;
  for (auto& [id, conn] : connections_)
    if (!conn->closed() && conn->presents_revoked(crl.get())) revoked.push_back(conn);
  for (auto& conn : revoked) {
    spdlog::warn("closing connection #{} from {}: its certificate ('{}') was revoked", conn->id(), conn->remote(),
                 replication::printable(conn->identity().subject, 140));
    conn->close();
  }
  size_t links = 0;
  for (auto& [id, link] : links_) links += link->drop_if_revoked(crl.get()) ? 1 : 0;
  const STACK_OF(X509_REVOKED)* entries = X509_CRL_get_REVOKED(crl.get());
  spdlog::info("reloaded the revocation list {} ({} revoked certificate(s)); closed {} connection(s) and {} peer "
               "link(s) presenting one",
               options_.tls_crl, entries ? sk_X509_REVOKED_num(entries) : 0, revoked.size(), links);
}

void Server::on_storage_failure(const StorageStatus& status) {
  spdlog::critical("storage write failed, stopping without acknowledging it: {}", status.message);
  exit_code_ = 1;
  stopping_ = true;
  boost::system::error_code ec;
  acceptor_.close(ec);
  sweep_timer_.cancel();
  std::vector<std::shared_ptr<Connection>> conns;
  for (auto& [id, conn] : connections_) conns.push_back(conn);
  for (auto& conn : conns) conn->close();
  for (auto& [id, link] : links_) link->stop();
  io_.stop();
}

}  // namespace stig::node
