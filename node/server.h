// The real runtime of one node: drives a replication::Replica with Boost.Asio
// networking and RocksDB storage.
//
// Threads: ONE io thread (the caller of run()) owns the Replica and every
// socket, so the single-threaded core needs no locks; one storage thread
// (inside CommitPipeline) makes persists durable.
//
// Each input (client request, peer message, timer tick) is stepped into the
// core at once; one flush per io-loop turn takes the core's output, so inputs
// that arrived together share one Output, and the CommitPipeline group-commits
// outputs before releasing their messages and replies ("persist, then send and
// reply"). One steady_timer is kept armed at the core's wake_at.
//
// Fault injection (admin_partition / admin_heal requests, only with
// --enable-admin) is handled here, not by the core: frames from dropped peers
// are discarded on arrival and messages to them are discarded before queuing.
//
// Limits (docs/node.md, "Limits"): at most --max-client-connections client
// (or not yet decided) connections; beyond it a few more are admitted on
// probation, for peers reconnecting (a hello is accepted, a request refused
// with "too many connections"), and the rest get that error at once. At most
// one inbound link per configured peer id: a second hello claiming an id
// with an open link is refused. Partly received frames are charged to one
// --inbound-buffer-bytes budget (client frames that would exceed it are
// refused). A sweep timer applies the connections' timeouts.
//
// Security (docs/security.md): with TLS every accepted connection and every
// peer link is mutually authenticated against the cluster CA; a client
// request carries the agent of its connection's certificate to the core
// (ClientInput::identity); the core binds the request to it (only a global
// admin may act for another agent) and applies the access rules.
//
// Shutdown (SIGTERM/SIGINT or stop()): stop accepting and reading, let the
// storage pipeline finish and release what it covers, write out queued
// frames (bounded wait), close, return 0 from run(). A failed storage write
// stops the node with exit code 1 without releasing anything it covered.
#pragma once

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "node/asio.h"
#include "node/coarse_clock.h"
#include "node/commit_pipeline.h"
#include "node/connection.h"
#include "node/options.h"
#include "node/peer_link.h"
#include "node/storage.h"
#include "replication/replica.h"

namespace stig::node {

class Server final : public ConnectionHost {
 public:
  // `tls` null: every link is plain TCP (--insecure-plaintext).
  Server(const Options& options, replication::Replica& replica, Storage& storage,
         std::shared_ptr<TlsContext> tls = nullptr);
  ~Server() override;
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Binds and listens on options.listen. false and a one-line `error` if the
  // address cannot be used (e.g. already in use).
  bool listen(std::string* error);
  tcp::endpoint local_endpoint() const;

  // Serves until shutdown completes. Returns the process exit code.
  int run();
  // Begins a clean shutdown (io thread, or via asio::post from elsewhere).
  void stop();

  // ConnectionHost
  void on_client_request(Connection& conn, stigmergy::v1::Request&& request) override;
  void on_peer_message(const std::string& from, stigmergy::v1::PeerMessage&& message) override;
  bool admit_client(Connection& conn, uint64_t seq) override;
  bool admit_peer(Connection& conn, const std::string& id) override;
  bool is_dropped(const std::string& id) const override { return dropped_.count(id) != 0; }
  const std::string& self_id() const override { return options_.config.self; }
  bool charge_inbound(Connection& conn, uint64_t bytes) override;
  void release_inbound(uint64_t bytes) override { inbound_bytes_ -= std::min(bytes, inbound_bytes_); }
  asio::mutable_buffer read_buffer() override { return asio::buffer(read_buf_); }
  void on_connection_closed(Connection& conn) override;
  void on_handshake_failed(Connection& conn, const std::string& why) override;

  bool is_peer(const std::string& id) const;

 private:
  static replication::Now now();

  using Slot = Connection::Slot;

  void do_accept();
  void admit(const std::shared_ptr<Connection>& conn);
  void move_slot(Connection& conn, Slot to);
  std::string too_many_connections() const;
  void arm_sweep();
  void sweep();
  // One warning per kind and 5 s under a flood, with the count since the last.
  void warn_limited(int kind, const std::string& message);
  void schedule_flush();
  // Steps the core, warning when one step held the event loop too long.
  void step_core(replication::Input input);
  void warn_if_slow(CoarseClock::time_point start, const char* what);
  void flush();
  void arm_wake(replication::MonoTime at);
  void release(runtime::ReleaseQueue::Released& out);
  // Shutdown: a leader's handoff first (bounded), then stop_now.
  void wait_for_handoff(std::chrono::steady_clock::time_point deadline);
  void stop_now();
  void handle_partition(Connection& conn, const stigmergy::v1::Request& request);
  void handle_heal(Connection& conn, const stigmergy::v1::Request& request);
  void on_storage_failure(const StorageStatus& status);
  void arm_reload();
  // SIGHUP: the revocation list (--tls-crl) again; connections presenting a
  // certificate now revoked are closed.
  void reload_revocations();
  void finish_shutdown();
  void wait_for_writers(std::chrono::steady_clock::time_point deadline);

  const Options& options_;
  replication::Replica& replica_;
  std::shared_ptr<TlsContext> tls_;  // null: plain TCP
  // Only the event-loop thread runs io_ and touches its sockets and timers
  // (the storage thread only posts to it), so the reactor's per-socket
  // locking is off; posting keeps its lock.
  asio::io_context io_{BOOST_ASIO_CONCURRENCY_HINT_UNSAFE_IO};
  tcp::acceptor acceptor_;
  asio::signal_set signals_;
  asio::signal_set reload_signals_;  // SIGHUP: re-read the revocation list
  asio::steady_timer wake_timer_;
  asio::steady_timer shutdown_timer_;
  replication::MonoTime armed_at_ = replication::kNever;
  uint64_t wake_gen_ = 0;
  bool flush_scheduled_ = false;

  ConnectionLimits limits_;
  uint64_t next_connection_id_ = 1;
  std::map<uint64_t, std::shared_ptr<Connection>> connections_;
  std::array<size_t, 5> slot_count_{};       // connections per Slot
  size_t probation_limit_ = 0;               // beyond the client limit, for peers' hellos
  std::map<std::string, uint64_t> inbound_;  // peer id -> its inbound link's connection id
  uint64_t inbound_bytes_ = 0;               // charged by connections, <= budget (+ peers)
  uint64_t inbound_peak_ = 0;
  std::vector<char> read_buf_;               // every connection reads into this
  asio::steady_timer sweep_timer_;
  std::chrono::milliseconds sweep_every_{0};
  struct Limited {
    std::chrono::steady_clock::time_point last{};
    uint64_t suppressed = 0;
  };
  std::array<Limited, 6> limited_{};
  std::map<std::string, std::shared_ptr<PeerLink>> links_;  // one per configured peer
  std::set<std::string> dropped_;                           // fault injection

  CommitPipeline pipeline_;
  bool stopping_ = false;
  bool finishing_ = false;
  bool handing_off_ = false;  // a leader transferring leadership before stopping
  int exit_code_ = 0;
};

}  // namespace stig::node
