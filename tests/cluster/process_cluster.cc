#include "process_cluster.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <poll.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <set>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <thread>
#include <utility>

#include "wire/frame.h"

namespace stig::testing {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

uint16_t free_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) throw std::runtime_error("bind failed");
  socklen_t len = sizeof addr;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  ::close(fd);
  return ntohs(addr.sin_port);
}

uint16_t port_of(const std::string& endpoint) {
  return static_cast<uint16_t>(std::stoi(endpoint.substr(endpoint.rfind(':') + 1)));
}

int connect_raw(uint16_t port, std::chrono::milliseconds recv_timeout) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return -1;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(port);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd);
    return -1;
  }
  const auto us = std::chrono::duration_cast<std::chrono::microseconds>(recv_timeout).count();
  timeval tv{static_cast<time_t>(us / 1000000), static_cast<suseconds_t>(us % 1000000)};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  return fd;
}

bool send_all(int fd, const std::string& bytes) {
  size_t sent = 0;
  while (sent < bytes.size()) {
    const ssize_t n = ::send(fd, bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) return false;
    sent += static_cast<size_t>(n);
  }
  return true;
}

std::string read_until_close(int fd, bool* closed) {
  std::string data;
  char buf[4096];
  for (;;) {
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n > 0) {
      data.append(buf, static_cast<size_t>(n));
      continue;
    }
    if (closed) *closed = n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK);
    break;
  }
  return data;
}

std::optional<stigmergy::v1::Response> first_response(const std::string& bytes) {
  wire::FrameDecoder d;
  d.feed(bytes);
  stigmergy::v1::Envelope env;
  if (!d.next(env) || !env.has_response()) return std::nullopt;
  return env.response();
}

std::string request_frame(const stigmergy::v1::Request& request) {
  stigmergy::v1::Envelope env;
  env.set_protocol_version(wire::kProtocolVersion);
  *env.mutable_request() = request;
  return wire::encode_frame(env);
}

std::string hello_frame(const std::string& id) {
  stigmergy::v1::Envelope env;
  env.set_protocol_version(wire::kProtocolVersion);
  env.mutable_peer()->set_from(id);
  env.mutable_peer()->mutable_hello()->set_node_id(id);
  return wire::encode_frame(env);
}

namespace {

pid_t spawn(const std::vector<std::string>& argv, const std::string& out_path, const std::string& err_path) {
  pid_t pid = ::fork();
  if (pid < 0) throw std::runtime_error("fork failed");
  if (pid == 0) {
    int out = ::open(out_path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    int err = err_path == out_path ? out : ::open(err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ::dup2(out, 1);
    ::dup2(err, 2);
    int devnull = ::open("/dev/null", O_RDONLY);
    ::dup2(devnull, 0);
    // Nothing else of the test process (its sockets above all) may live on
    // in the child: a test closing a connection must really close it.
    ::close_range(3, ~0u, 0);
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    ::execv(args[0], args.data());
    ::_exit(127);
  }
  return pid;
}

bool wait_exit(pid_t pid, std::chrono::milliseconds limit, int* status) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < deadline) {
    int st = 0;
    pid_t r = ::waitpid(pid, &st, WNOHANG);
    if (r == pid) {
      *status = st;
      return true;
    }
    std::this_thread::sleep_for(10ms);
  }
  return false;
}

std::string slurp(const std::string& path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

}  // namespace

int run_command(const std::vector<std::string>& argv, std::string* out, std::string* err,
                std::chrono::milliseconds limit) {
  char tmpl[] = "/tmp/stig-cmd-XXXXXX";
  const std::string dir = ::mkdtemp(tmpl);
  const pid_t pid = spawn(argv, dir + "/out", dir + "/err");
  int status = 0;
  if (!wait_exit(pid, limit, &status)) {
    ::kill(pid, SIGKILL);
    wait_exit(pid, 5s, &status);
    status = -1;
  } else {
    status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }
  if (out) *out = slurp(dir + "/out");
  if (err) *err = slurp(dir + "/err");
  fs::remove_all(dir);
  return status;
}

ProcessCluster::ProcessCluster(int nodes, std::vector<std::string> extra_flags, bool enable_admin,
                               Transport transport)
    : nodes_(nodes), extra_flags_(std::move(extra_flags)), enable_admin_(enable_admin), transport_(transport) {
  char tmpl[] = "/tmp/stig-cluster-XXXXXX";
  dir_ = ::mkdtemp(tmpl);
  // The stig CLI the tests run must not pick up the caller's credentials
  // (deploy/local-cluster env exports them).
  for (const char* var : {"STIG_CA", "STIG_CERT", "STIG_KEY", "STIG_ENDPOINTS", "STIG_AGENT"}) ::unsetenv(var);
  if (tls()) {
    run_cert_tool({"create-ca"});
    for (int i = 0; i < nodes; ++i) run_cert_tool({"create-node", "--id", id(i)});
    run_cert_tool({"crl"});  // empty: every TLS test runs with revocation checks on
  }
  // The kernel may hand the same free port out twice in a row once the
  // probing socket is closed: ask again until every node has its own.
  std::set<uint16_t> taken;
  for (auto& n : nodes_) {
    do n.port = free_port();
    while (!taken.insert(n.port).second);
  }
  for (int i = 0; i < nodes; ++i) start(i);
  for (int i = 0; i < nodes; ++i)
    if (!wait_ready(i)) throw std::runtime_error("node " + id(i) + " did not start:\n" + read_log(i));
}

ProcessCluster::~ProcessCluster() {
  for (int i = 0; i < size(); ++i)
    if (running(i)) kill9(i);
  if (!std::getenv("STIG_KEEP_TEST_DIRS")) fs::remove_all(dir_);
}

std::string ProcessCluster::endpoint(int i) const { return "127.0.0.1:" + std::to_string(nodes_[i].port); }

std::string ProcessCluster::all_endpoints() const {
  std::string s;
  for (int i = 0; i < size(); ++i) s += (i ? "," : "") + endpoint(i);
  return s;
}

std::string ProcessCluster::log_path(int i) const { return dir_ + "/" + id(i) + ".log"; }
std::string ProcessCluster::read_log(int i) const { return slurp(log_path(i)); }

std::vector<std::string> ProcessCluster::args_for(int i) const {
  std::string peers;
  for (int j = 0; j < size(); ++j)
    if (j != i) peers += (peers.empty() ? "" : ",") + id(j) + "=" + endpoint(j);
  std::vector<std::string> args = {std::string(STIG_BIN_DIR) + "/stigd", "--id", id(i), "--listen", endpoint(i),
                                   "--data-dir", dir_ + "/" + id(i)};
  if (std::find(extra_flags_.begin(), extra_flags_.end(), "--log-level") == extra_flags_.end())
    args.insert(args.end(), {"--log-level", "info"});
  if (!peers.empty()) args.insert(args.end(), {"--peers", peers});
  if (enable_admin_) args.push_back("--enable-admin");
  if (auto o = tls_override_.find(i); o != tls_override_.end()) {
    args.insert(args.end(), o->second.begin(), o->second.end());
  } else if (tls()) {
    const std::string base = certs_dir() + "/node-" + id(i);
    args.insert(args.end(), {"--tls-ca", ca_file(), "--tls-cert", base + ".crt", "--tls-key", base + ".key",
                             "--tls-crl", certs_dir() + "/ca.crl"});
  } else {
    args.push_back("--insecure-plaintext");
  }
  args.insert(args.end(), extra_flags_.begin(), extra_flags_.end());
  return args;
}

void ProcessCluster::run_cert_tool(std::vector<std::string> args) const {
  std::vector<std::string> argv = {std::string(STIG_BIN_DIR) + "/stig", "cert"};
  argv.insert(argv.end(), args.begin(), args.end());
  argv.insert(argv.end(), {"--dir", certs_dir()});
  std::string out, err;
  if (run_command(argv, &out, &err) != 0) throw std::runtime_error("stig cert failed: " + err);
}

stigmergy::TlsOptions ProcessCluster::agent_tls(const std::string& agent) {
  const std::string base = certs_dir() + "/agent-" + agent;
  if (!fs::exists(base + ".crt")) run_cert_tool({"create-agent", "--name", agent});
  return {ca_file(), base + ".crt", base + ".key"};
}

void ProcessCluster::override_tls_files(int i, const std::string& ca, const std::string& cert, const std::string& key) {
  tls_override_[i] = {"--tls-ca", ca, "--tls-cert", cert, "--tls-key", key};
}

void ProcessCluster::reissue_node_cert(int i) { run_cert_tool({"create-node", "--id", id(i), "--overwrite"}); }

std::vector<std::string> ProcessCluster::cli_tls_args(const std::string& agent) {
  if (!tls()) return {};
  const auto t = agent_tls(agent);
  return {"--ca", t.ca_file, "--cert", t.cert_file, "--key", t.key_file};
}

void ProcessCluster::start(int i) {
  if (running(i)) return;
  nodes_[i].pid = spawn(args_for(i), log_path(i), log_path(i));
}

void ProcessCluster::stop(int i) {
  if (!running(i)) return;
  ::kill(nodes_[i].pid, SIGTERM);
  int st = 0;
  if (!wait_exit(nodes_[i].pid, 10s, &st)) {
    ::kill(nodes_[i].pid, SIGKILL);
    wait_exit(nodes_[i].pid, 5s, &st);
    st = -1;
  }
  nodes_[i].last_status = st;
  nodes_[i].pid = -1;
}

void ProcessCluster::kill9(int i) {
  if (!running(i)) return;
  ::kill(nodes_[i].pid, SIGKILL);
  int st = 0;
  wait_exit(nodes_[i].pid, 5s, &st);
  nodes_[i].last_status = st;
  nodes_[i].pid = -1;
}

stigmergy::Client ProcessCluster::client(int i, const std::string& agent) {
  stigmergy::ClientOptions o;
  o.endpoints = {endpoint(i)};
  o.agent = agent;
  if (tls()) o.tls = agent_tls(agent);
  o.timeout = 5s;
  o.read_your_writes = false;
  auto c = stigmergy::Client::create(o);
  if (!c) throw std::runtime_error(c.error().to_string());
  return std::move(c).value();
}

std::optional<stigmergy::NodeStatus> ProcessCluster::self_status(int i) {
  auto c = client(i);
  auto st = c.cluster_status();
  if (!st) return std::nullopt;
  for (const auto& n : st->nodes)
    if (n.state == "self") return n;
  return std::nullopt;
}

bool ProcessCluster::wait_ready(int i, std::chrono::milliseconds limit) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < deadline) {
    if (self_status(i)) return true;
    int st = 0;
    if (::waitpid(nodes_[i].pid, &st, WNOHANG) == nodes_[i].pid) {
      nodes_[i].pid = -1;
      nodes_[i].last_status = st;
      return false;
    }
    std::this_thread::sleep_for(50ms);
  }
  return false;
}

bool ProcessCluster::wait_converged(std::chrono::milliseconds limit) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < deadline) {
    std::optional<uint64_t> digest;
    bool equal = true;
    for (int i = 0; i < size() && equal; ++i) {
      if (!running(i)) continue;
      auto st = self_status(i);
      if (!st) {
        equal = false;
      } else if (!digest) {
        digest = st->digest;
      } else if (*digest != st->digest) {
        equal = false;
      }
    }
    if (equal && digest) return true;
    std::this_thread::sleep_for(100ms);
  }
  return false;
}

bool ProcessCluster::wait_all_up(int i, std::chrono::milliseconds limit) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < deadline) {
    auto c = client(i);
    if (auto st = c.cluster_status()) {
      bool all = true;
      for (const auto& n : st->nodes)
        if (n.state != "self" && n.state != "up") all = false;
      if (all) return true;
    }
    std::this_thread::sleep_for(50ms);
  }
  return false;
}

uint64_t ProcessCluster::rss_kib(int i) const {
  if (nodes_[i].pid <= 0) return 0;
  std::ifstream status("/proc/" + std::to_string(nodes_[i].pid) + "/status");
  std::string line;
  while (std::getline(status, line))
    if (line.rfind("VmRSS:", 0) == 0) return std::strtoull(line.c_str() + 6, nullptr, 10);
  return 0;
}

RawConnection::RawConnection(uint16_t port) { fd_ = connect_raw(port, 1s); }
RawConnection::~RawConnection() { close(); }
RawConnection::RawConnection(RawConnection&& other) noexcept
    : fd_(std::exchange(other.fd_, -1)), decoder_(std::move(other.decoder_)) {}
RawConnection& RawConnection::operator=(RawConnection&& other) noexcept {
  if (this != &other) {
    close();
    fd_ = std::exchange(other.fd_, -1);
    decoder_ = std::move(other.decoder_);
  }
  return *this;
}

void RawConnection::close() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
  decoder_ = wire::FrameDecoder();
}

std::optional<stigmergy::v1::Response> RawConnection::call(const stigmergy::v1::Request& request,
                                                           std::chrono::milliseconds timeout) {
  if (fd_ < 0) return std::nullopt;
  if (!send_all(fd_, request_frame(request))) {
    close();
    return std::nullopt;
  }
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    stigmergy::v1::Envelope env;
    while (decoder_.next(env)) {
      if (env.has_response() && env.response().seq() == request.seq()) return env.response();
    }
    if (decoder_.error() != wire::FrameError::kNone) break;
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) break;
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) continue;
    char buf[16384];
    const ssize_t n = ::recv(fd_, buf, sizeof buf, MSG_DONTWAIT);
    if (n > 0) {
      decoder_.feed(std::string_view(buf, static_cast<size_t>(n)));
    } else if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
      break;
    }
  }
  close();
  return std::nullopt;
}

std::optional<RaftView> raft_view(uint16_t port, std::chrono::milliseconds timeout) {
  RawConnection c(port);
  stigmergy::v1::Request req;
  req.set_client_id("raft-view");
  req.set_seq(1);
  req.mutable_cluster_status();
  auto r = c.call(req, timeout);
  if (!r || !r->has_cluster_status()) return std::nullopt;
  for (const auto& n : r->cluster_status().nodes()) {
    if (n.state() == "self") return RaftView{n.role(), n.term(), n.commit_index()};
  }
  return std::nullopt;
}

int wait_leader(ProcessCluster& cluster, std::chrono::milliseconds limit) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < deadline) {
    int best = -1;
    uint64_t best_term = 0;
    for (int i = 0; i < cluster.size(); ++i) {
      if (!cluster.running(i)) continue;
      auto v = raft_view(port_of(cluster.endpoint(i)), 300ms);
      if (v && v->role == "leader" && v->term >= best_term) {
        best = i;
        best_term = v->term;
      }
    }
    if (best >= 0) return best;
    std::this_thread::sleep_for(20ms);
  }
  return -1;
}

StrongCaller::StrongCaller(ProcessCluster& cluster, std::string client_id, std::string agent)
    : cluster_(cluster), client_id_(std::move(client_id)), agent_(std::move(agent)) {
  conns_.resize(static_cast<size_t>(cluster.size()));
}

StrongCaller::Result StrongCaller::call(const stigmergy::v1::StrongRequest& request, std::chrono::milliseconds budget,
                                        std::chrono::milliseconds per_try, bool retry_unknown) {
  const auto deadline = std::chrono::steady_clock::now() + budget;
  stigmergy::v1::Request req;
  req.set_client_id(client_id_);
  req.set_agent(agent_);
  req.set_seq(++seq_);
  *req.mutable_strong() = request;
  Result result;
  while (std::chrono::steady_clock::now() < deadline) {
    const int n = node_;
    auto& conn = conns_[static_cast<size_t>(n)];
    if (!conn.connected()) conn = RawConnection(port_of(cluster_.endpoint(n)));
    if (!conn.connected()) {
      node_ = (n + 1) % cluster_.size();
      std::this_thread::sleep_for(10ms);
      continue;
    }
    ++result.attempts;
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    auto r = conn.call(req, std::min(per_try, std::max(left, 1ms)));
    if (!r) {
      node_ = (n + 1) % cluster_.size();
      continue;
    }
    if (r->error() == stigmergy::v1::NOT_LEADER) {
      int next = -1;
      for (int i = 0; i < cluster_.size(); ++i)
        if (!r->leader_address().empty() && cluster_.endpoint(i) == r->leader_address()) next = i;
      if (next < 0) {
        next = (n + 1) % cluster_.size();
        std::this_thread::sleep_for(20ms);
      }
      node_ = next;
      continue;
    }
    if (r->error() == stigmergy::v1::OUTCOME_UNKNOWN && retry_unknown) {
      node_ = (n + 1) % cluster_.size();
      std::this_thread::sleep_for(20ms);
      continue;
    }
    result.response = std::move(r);
    result.node = n;
    return result;
  }
  return result;
}

std::string describe(const CliResult& r) {
  return "status " + std::to_string(r.status) + "\nstdout: " + r.out + "\nstderr: " + r.err;
}

CliResult run_stig(const std::string& endpoints, const std::string& agent, const std::vector<std::string>& args) {
  std::vector<std::string> argv = {std::string(STIG_BIN_DIR) + "/stig", "--endpoints", endpoints, "--agent", agent};
  argv.insert(argv.end(), args.begin(), args.end());
  CliResult r;
  r.status = run_command(argv, &r.out, &r.err);
  return r;
}

}  // namespace stig::testing
