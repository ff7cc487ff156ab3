// ProcessCluster: real stigd processes on loopback for end-to-end tests.
//
// Each node gets a free port on 127.0.0.1 and a data directory under one
// temporary directory; nodes can be stopped (SIGTERM), killed (SIGKILL) and
// restarted with the same flags. Everything is torn down by the destructor,
// and every wait is bounded in time.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <map>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "stigmergy.pb.h"
#include "stigmergy/client.h"
#include "wire/frame.h"

namespace stig::testing {

// How the nodes' links are secured. kPlaintext (--insecure-plaintext) lets
// tests speak the protocol on raw sockets; kTls makes a CA, a certificate per
// node and agent credentials under dir()/certs with `stig cert`, and runs
// every node with mutual TLS and an (initially empty) revocation list,
// dir()/certs/ca.crl.
enum class Transport { kPlaintext, kTls };

class ProcessCluster {
 public:
  // Nodes run with --enable-admin (tests partition them) unless enable_admin
  // is false.
  explicit ProcessCluster(int nodes, std::vector<std::string> extra_flags = {}, bool enable_admin = true,
                          Transport transport = Transport::kPlaintext);
  ~ProcessCluster();

  int size() const { return static_cast<int>(nodes_.size()); }
  std::string id(int i) const { return "n" + std::to_string(i + 1); }
  std::string endpoint(int i) const;
  uint16_t port(int i) const { return nodes_[i].port; }
  std::string all_endpoints() const;

  void start(int i);
  void stop(int i);   // SIGTERM, waits for exit; returns the exit status via last_exit
  void kill9(int i);  // SIGKILL
  bool running(int i) const { return nodes_[i].pid > 0; }
  pid_t pid(int i) const { return nodes_[i].pid; }
  // Resident memory of node i's process in KiB (VmRSS), 0 if unknown.
  uint64_t rss_kib(int i) const;
  int last_exit_status(int i) const { return nodes_[i].last_status; }

  // Blocks until node i answers cluster status (bounded); false on timeout.
  bool wait_ready(int i, std::chrono::milliseconds limit = std::chrono::seconds(15));
  // Blocks until every running node reports itself with the same digest.
  bool wait_converged(std::chrono::milliseconds limit = std::chrono::seconds(30));
  // Blocks until node i sees every other running node as "up".
  bool wait_all_up(int i, std::chrono::milliseconds limit = std::chrono::seconds(15));

  // A client that talks to node i only (no failover, no read-your-writes).
  // Over TLS it presents agent `agent`'s credential (made if missing).
  stigmergy::Client client(int i, const std::string& agent = "tester");

  // TLS mode: the certificates' directory and the files of the CA, of node
  // i and of an agent credential (made with default validity if missing).
  bool tls() const { return transport_ == Transport::kTls; }
  std::string certs_dir() const { return dir_ + "/certs"; }
  std::string ca_file() const { return certs_dir() + "/ca.crt"; }
  stigmergy::TlsOptions agent_tls(const std::string& agent);
  // Runs `stig cert ARGS... --dir certs_dir()`; throws with its stderr on failure.
  void run_cert_tool(std::vector<std::string> args) const;
  // Issues node i a new certificate and key (rotation); takes effect at its next start.
  void reissue_node_cert(int i);
  // From its next start node i uses these TLS files instead of its own (a rogue node).
  void override_tls_files(int i, const std::string& ca, const std::string& cert, const std::string& key);
  // The stig CLI flags for agent `agent` (TLS mode; nothing in plaintext mode).
  std::vector<std::string> cli_tls_args(const std::string& agent);
  // Self digest and key count reported by node i, if it answers.
  std::optional<stigmergy::NodeStatus> self_status(int i);
  std::string log_path(int i) const;
  std::string read_log(int i) const;
  const std::string& dir() const { return dir_; }

 private:
  struct Node {
    uint16_t port = 0;
    pid_t pid = -1;
    int last_status = 0;
  };
  std::vector<std::string> args_for(int i) const;

  std::string dir_;
  std::vector<Node> nodes_;
  std::vector<std::string> extra_flags_;
  bool enable_admin_ = true;
  Transport transport_ = Transport::kPlaintext;
  std::map<int, std::vector<std::string>> tls_override_;  // node -> --tls-* flags
};

// A port on 127.0.0.1 that was free a moment ago.
uint16_t free_port();
// The port of "HOST:PORT".
uint16_t port_of(const std::string& endpoint);

// Raw protocol access for bad-input tests.
// A blocking TCP connection to 127.0.0.1:port with a receive timeout; -1 on failure.
int connect_raw(uint16_t port, std::chrono::milliseconds recv_timeout = std::chrono::seconds(5));
// Sends all of `bytes` (false if the connection broke).
bool send_all(int fd, const std::string& bytes);
// Reads until the peer closes or the receive timeout passes; everything received.
// *closed (if given) tells whether the peer closed (EOF or reset) rather than timed out.
std::string read_until_close(int fd, bool* closed = nullptr);
// The first frame of `bytes` if it is a Response.
std::optional<stigmergy::v1::Response> first_response(const std::string& bytes);
// One framed Envelope carrying `request` / a hello claiming to be node `id`.
std::string request_frame(const stigmergy::v1::Request& request);
std::string hello_frame(const std::string& id);
// A blocking client connection speaking the protocol directly: one frame per
// request, the reply matched by seq, every wait bounded.
class RawConnection {
 public:
  RawConnection() = default;
  explicit RawConnection(uint16_t port);
  ~RawConnection();
  RawConnection(RawConnection&& other) noexcept;
  RawConnection& operator=(RawConnection&& other) noexcept;
  RawConnection(const RawConnection&) = delete;
  RawConnection& operator=(const RawConnection&) = delete;

  bool connected() const { return fd_ >= 0; }
  // Sends `request` and waits up to `timeout` for the Response with its seq
  // (other responses are skipped). nullopt: timed out or the connection broke;
  // the connection is closed then (a late reply must not be taken for the
  // next request's).
  std::optional<stigmergy::v1::Response> call(const stigmergy::v1::Request& request,
                                              std::chrono::milliseconds timeout);
  void close();

 private:
  int fd_ = -1;
  wire::FrameDecoder decoder_;
};

// The strong path's view of node i (its cluster status self entry): role
// (leader | follower | candidate | pre-candidate), term, commit index.
struct RaftView {
  std::string role;
  uint64_t term = 0;
  uint64_t commit_index = 0;
};
std::optional<RaftView> raft_view(uint16_t port, std::chrono::milliseconds timeout = std::chrono::seconds(1));
// The index of the one running node that calls itself leader with the highest
// term, waiting up to `limit`; -1 if none.
int wait_leader(ProcessCluster& cluster, std::chrono::milliseconds limit = std::chrono::seconds(10));

// Sends strong requests to the Raft leader: tries the node it last found,
// follows NOT_LEADER's leader_address, and moves to the next node when one
// knows no leader or does not answer. A request keeps its seq over its
// retries, so a write is applied at most once (the state machine's dedup).
class StrongCaller {
 public:
  StrongCaller(ProcessCluster& cluster, std::string client_id, std::string agent = "tester");
  struct Result {
    // The final answer: OK or any error but NOT_LEADER; nullopt when none
    // came within the budget (the outcome is unknown).
    std::optional<stigmergy::v1::Response> response;
    int node = -1;      // who answered
    int attempts = 0;
  };
  // Retries on NOT_LEADER, on no answer within `per_try` and, if
  // retry_unknown, on OUTCOME_UNKNOWN (same seq: at most once), until `budget`.
  Result call(const stigmergy::v1::StrongRequest& request, std::chrono::milliseconds budget,
              std::chrono::milliseconds per_try = std::chrono::seconds(1), bool retry_unknown = true);
  const std::string& client_id() const { return client_id_; }
  uint64_t last_seq() const { return seq_; }

 private:
  ProcessCluster& cluster_;
  std::string client_id_, agent_;
  uint64_t seq_ = 0;
  int node_ = 0;
  std::vector<RawConnection> conns_;
};

// Runs a command, capturing stdout and stderr separately; returns exit status.
int run_command(const std::vector<std::string>& argv, std::string* out, std::string* err,
                std::chrono::milliseconds limit = std::chrono::seconds(30));

// What one run of the `stig` CLI printed, and its exit status.
struct CliResult {
  int status = -1;
  std::string out, err;
};
// Runs build/bin/stig --endpoints ENDPOINTS --agent AGENT ARGS...
CliResult run_stig(const std::string& endpoints, const std::string& agent, const std::vector<std::string>& args);
// Status and both outputs of a CLI run, for a failed expectation's message.
std::string describe(const CliResult& r);

// Polls `pred` every 100 ms until it holds or `limit` passes; its last answer.
template <typename Pred>
bool eventually(Pred pred, std::chrono::milliseconds limit = std::chrono::seconds(20)) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < deadline) {
    if (pred()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return pred();
}

}  // namespace stig::testing
