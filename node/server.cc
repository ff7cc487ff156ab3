#include "node/server.h"

#include <spdlog/spdlog.h>

#include <chrono>
#include <csignal>
#include <unordered_map>
#include <vector>

#include "node/envelope.h"

namespace stig::node {

namespace pb = stigmergy::v1;
using replication::MonoTime;

namespace {

// How long shutdown waits for queued frames to be written before closing.
constexpr std::chrono::seconds kShutdownWriteGrace{2};

std::string join(const std::set<std::string>& ids) {
  std::string s;
  for (const auto& id : ids) {
    if (!s.empty()) s += ",";
    s += id;
  }
  return s;
}

}  // namespace

Server::Server(const Options& options, replication::Replica& replica, Storage& storage)
    : options_(options),
      replica_(replica),
      acceptor_(io_),
      signals_(io_),
      wake_timer_(io_),
      shutdown_timer_(io_),
      pipeline_(
          io_, storage, [this](replication::Output& out) { release(out); },
          [this](const StorageStatus& st) { on_storage_failure(st); }) {
  limits_.max_frame_bytes = options.max_frame_bytes;
  limits_.max_backlog_bytes = options.client_buffer_bytes;
  for (const auto& peer : options.config.peers) {
    std::string why;
    auto ep = parse_endpoint(peer.address, &why);
    if (!ep) continue;  // options validated every address already
    links_.emplace(peer.id, std::make_shared<PeerLink>(io_, options.config.self, peer.id, *ep,
                                                       options.peer_queue_bytes));
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
  for (auto& [id, link] : links_) link->start();
  do_accept();
  // Let the core arm its timers (heartbeats, anti-entropy) from the start.
  replica_.step(now(), replication::Tick{});
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
      spdlog::warn("accept failed: {}", ec.message());
      shutdown_timer_.expires_after(std::chrono::milliseconds(100));
      shutdown_timer_.async_wait([this](const boost::system::error_code& e) {
        if (!e && !stopping_) do_accept();
      });
      return;
    }
    const uint64_t id = next_connection_id_++;
    auto conn = std::make_shared<Connection>(*this, std::move(socket), id, limits_);
    connections_.emplace(id, conn);
    spdlog::debug("connection #{} from {}", id, conn->remote());
    conn->start();
    do_accept();
  });
}

// --- inputs -------------------------------------------------------------------

void Server::on_client_request(Connection& conn, pb::Request&& request) {
  if (stopping_) return;
  switch (request.op_case()) {
    case pb::Request::kAdminPartition:
      handle_partition(conn, request);
      return;
    case pb::Request::kAdminHeal:
      handle_heal(conn, request);
      return;
    default:
      break;
  }
  const replication::ClientToken token = conn.next_token();
  replica_.step(now(), replication::ClientInput{token, std::move(request)});
  schedule_flush();
}

void Server::on_peer_message(const std::string& from, pb::PeerMessage&& message) {
  if (stopping_) return;
  replica_.step(now(), replication::PeerInput{from, std::move(message)});
  schedule_flush();
}

bool Server::is_peer(const std::string& id) const { return links_.count(id) != 0; }

void Server::on_connection_closed(uint64_t id) { connections_.erase(id); }

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
      r.set_error_message("admin partition: '" + id + "' is not a peer of " + self_id() + " (peers: " +
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
               request.agent().empty() ? conn.remote() : request.agent());
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

void Server::flush() {
  flush_scheduled_ = false;
  replication::Output out = replica_.take_output();
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
    replica_.step(now(), replication::Tick{});
    schedule_flush();
  });
}

void Server::release(replication::Output& out) {
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
  if (stopping_) return;
  // Let the inputs already stepped reach the pipeline before refusing more.
  flush();
  stopping_ = true;
  boost::system::error_code ec;
  acceptor_.close(ec);
  ++wake_gen_;
  wake_timer_.cancel();
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
    spdlog::info("{} stopped ({} group commits, {} writes)", self_id(), pipeline_.syncs(),
                 pipeline_.persists_written());
    io_.stop();
    return;
  }
  shutdown_timer_.expires_after(std::chrono::milliseconds(10));
  shutdown_timer_.async_wait([this, deadline](const boost::system::error_code& ec) {
    if (ec) return;
    wait_for_writers(deadline);
  });
}

void Server::on_storage_failure(const StorageStatus& status) {
  spdlog::critical("storage write failed, stopping without acknowledging it: {}", status.message);
  exit_code_ = 1;
  stopping_ = true;
  boost::system::error_code ec;
  acceptor_.close(ec);
  std::vector<std::shared_ptr<Connection>> conns;
  for (auto& [id, conn] : connections_) conns.push_back(conn);
  for (auto& conn : conns) conn->close();
  for (auto& [id, link] : links_) link->stop();
  io_.stop();
}

}  // namespace stig::node
