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
// Fault injection (admin_partition / admin_heal requests) is handled here,
// not by the core: frames from dropped peers are discarded on arrival and
// messages to them are discarded before queuing.
//
// Shutdown (SIGTERM/SIGINT or stop()): stop accepting and reading, let the
// storage pipeline finish and release what it covers, write out queued
// frames (bounded wait), close, return 0 from run(). A failed storage write
// stops the node with exit code 1 without releasing anything it covered.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <string>

#include "node/asio.h"
#include "node/commit_pipeline.h"
#include "node/connection.h"
#include "node/options.h"
#include "node/peer_link.h"
#include "node/storage.h"
#include "replication/replica.h"

namespace stig::node {

class Server final : public ConnectionHost {
 public:
  Server(const Options& options, replication::Replica& replica, Storage& storage);
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
  bool is_peer(const std::string& id) const override;
  bool is_dropped(const std::string& id) const override { return dropped_.count(id) != 0; }
  const std::string& self_id() const override { return options_.config.self; }
  void on_connection_closed(uint64_t id) override;

 private:
  static replication::Now now();

  void do_accept();
  void schedule_flush();
  void flush();
  void arm_wake(replication::MonoTime at);
  void release(replication::Output& out);
  void handle_partition(Connection& conn, const stigmergy::v1::Request& request);
  void handle_heal(Connection& conn, const stigmergy::v1::Request& request);
  void on_storage_failure(const StorageStatus& status);
  void finish_shutdown();
  void wait_for_writers(std::chrono::steady_clock::time_point deadline);

  const Options& options_;
  replication::Replica& replica_;
  asio::io_context io_;
  tcp::acceptor acceptor_;
  asio::signal_set signals_;
  asio::steady_timer wake_timer_;
  asio::steady_timer shutdown_timer_;
  replication::MonoTime armed_at_ = replication::kNever;
  uint64_t wake_gen_ = 0;
  bool flush_scheduled_ = false;

  ConnectionLimits limits_;
  uint64_t next_connection_id_ = 1;
  std::map<uint64_t, std::shared_ptr<Connection>> connections_;
  std::map<std::string, std::shared_ptr<PeerLink>> links_;  // one per configured peer
  std::set<std::string> dropped_;                           // fault injection

  CommitPipeline pipeline_;
  bool stopping_ = false;
  bool finishing_ = false;
  int exit_code_ = 0;
};

}  // namespace stig::node
