// Real-cluster faults: a concurrent client workload against real stigd
// processes while a nemesis partitions nodes (admin partition/heal) and
// kill -9s and restarts them. The history is recorded in stig-sim's format
// and checked by stig-sim's checkers (convergence, lost writes, counters,
// sets), so the simulator and the real runtime answer to the same rules.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <fcntl.h>
#include <filesystem>
#include <map>
#include <mutex>
#include <thread>

#include <gtest/gtest.h>

#include "process_cluster.h"
#include "sim/checker.h"
#include "sim/client.h"
#include "sim/history.h"
#include "sim/random.h"
#include "sim/workload.h"
#include "wire/frame.h"

namespace stig::testing {
namespace {

using namespace std::chrono_literals;
namespace pb = stigmergy::v1;
using Clock = std::chrono::steady_clock;

// One blocking request/reply connection per node, with a deadline per
// attempt. Raw protocol (not stigmergy::Client) so the checkers see dots.
class RawConnection {
 public:
  explicit RawConnection(uint16_t port) : port_(port) {}
  ~RawConnection() { close(); }

  // Sends `request` and waits for its reply until `deadline`. On any error
  // the connection is closed (a late reply must not answer a later request).
  std::optional<pb::Response> call(const pb::Request& request, Clock::time_point deadline, std::string& error) {
    if (fd_ < 0 && !connect(deadline, error)) return std::nullopt;
    pb::Envelope env;
    env.set_protocol_version(wire::kProtocolVersion);
    *env.mutable_request() = request;
    const std::string frame = wire::encode_frame(env);
    if (::send(fd_, frame.data(), frame.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(frame.size())) {
      error = "send failed";
      close();
      return std::nullopt;
    }
    for (;;) {
      pb::Envelope reply;
      if (decoder_.next(reply)) {
        if (reply.has_response() && reply.response().seq() == request.seq()) return reply.response();
        continue;
      }
      if (decoder_.error() != wire::FrameError::kNone) {
        error = wire::frame_error_message(decoder_.error());
        close();
        return std::nullopt;
      }
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
      if (left <= 0) {
        error = "timeout";
        close();
        return std::nullopt;
      }
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, static_cast<int>(left)) <= 0) continue;
      char buf[65536];
      const ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
      if (n <= 0) {
        error = "connection closed";
        close();
        return std::nullopt;
      }
      decoder_.feed(std::string_view(buf, static_cast<size_t>(n)));
    }
  }

 private:
  bool connect(Clock::time_point deadline, std::string& error) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(port_);
    if (::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 && errno != EINPROGRESS) {
      error = "connect refused";
      close();
      return false;
    }
    pollfd p{fd_, POLLOUT, 0};
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    int soerr = 0;
    socklen_t len = sizeof soerr;
    if (left <= 0 || ::poll(&p, 1, static_cast<int>(left)) <= 0 ||
        ::getsockopt(fd_, SOL_SOCKET, SO_ERROR, &soerr, &len) != 0 || soerr != 0) {
      error = "connect failed";
      close();
      return false;
    }
    ::fcntl(fd_, F_SETFL, ::fcntl(fd_, F_GETFL) & ~O_NONBLOCK);
    int one = 1;
    ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    decoder_ = wire::FrameDecoder();
    return true;
  }
  void close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }
  uint16_t port_;
  int fd_ = -1;
  wire::FrameDecoder decoder_;
};

// Shared, thread-safe recording of the history (times in ms since start).
class Recorder {
 public:
  explicit Recorder(Clock::time_point start) : start_(start) {}
  int64_t now() const {
    return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start_).count();
  }
  uint64_t add_invoke(sim::HistoryEvent e) {
    std::lock_guard<std::mutex> lock(mu_);
    e.op = history_.new_op();
    e.time = now();
    history_.add(e);
    return e.op;
  }
  void add(sim::HistoryEvent e) {
    std::lock_guard<std::mutex> lock(mu_);
    e.time = now();
    history_.add(std::move(e));
  }
  void fault(const std::string& f, const std::string& what) {
    sim::HistoryEvent e;
    e.process = "nemesis";
    e.type = sim::EventType::kInfo;
    e.f = f;
    e.value = what;
    add(std::move(e));
  }
  sim::History take() {
    std::lock_guard<std::mutex> lock(mu_);
    return history_;
  }

 private:
  Clock::time_point start_;
  std::mutex mu_;
  sim::History history_;
};

// A client like stig-sim's: same seq on retry, fails over to the next node.
void run_client(int index, const std::vector<uint16_t>& ports, Recorder& rec, std::atomic<bool>& stop) {
  sim::SimRandom random(1000 + static_cast<uint64_t>(index));
  sim::WorkloadOptions wo;
  std::vector<std::unique_ptr<sim::ClientWorkload>> workloads;
  for (const auto& name : sim::workload_names()) workloads.push_back(sim::make_workload(name, wo)->for_client(index));
  std::vector<std::unique_ptr<RawConnection>> conns;
  for (uint16_t p : ports) conns.push_back(std::make_unique<RawConnection>(p));
  const std::string name = "c" + std::to_string(index + 1);
  size_t node = static_cast<size_t>(index) % ports.size();
  uint64_t seq = 0;
  while (!stop) {
    sim::ClientWorkload& w = *workloads[random.below(workloads.size())];
    pb::Request req = w.next(random);
    req.set_client_id("nemesis-test-" + name);
    req.set_seq(++seq);
    req.set_agent("agent-" + name);
    sim::HistoryEvent in;
    in.process = name;
    in.type = sim::EventType::kInvoke;
    in.node = "n" + std::to_string(node + 1);
    sim::describe_request(req, in);
    const uint64_t op = rec.add_invoke(in);
    std::optional<pb::Response> reply;
    std::string error;
    int attempts = 0;
    bool uncertain = false;
    for (; attempts < 3 && !reply;) {
      ++attempts;
      reply = conns[node]->call(req, Clock::now() + 1500ms, error);
      if (reply && reply->error() == pb::UNAVAILABLE) reply.reset(), error = "unavailable";
      if (!reply) {
        // A refused connection was certainly not applied; anything else may have been.
        uncertain |= error != "connect refused" && error != "connect failed";
        node = (node + 1) % ports.size();
      }
    }
    sim::HistoryEvent done;
    done.process = name;
    done.op = op;
    sim::describe_request(req, done);
    done.context.reset();
    done.durability.clear();
    done.attempts = attempts;
    if (!reply) {
      done.type = sim::EventType::kInfo;
      done.error = "no reply after " + std::to_string(attempts) + " attempts: " + error;
    } else {
      // As stig-sim's client: a strong refusal was decided (ok, with the
      // refusal as the result); an unknown outcome or an unconfirmed
      // durability may have been applied (info).
      const pb::ErrorCode e = reply->error();
      done.type = e == pb::OK || (req.has_strong() && sim::is_decided_refusal(e)) ? sim::EventType::kOk
                  : (uncertain || e == pb::DURABILITY_NOT_MET || e == pb::OUTCOME_UNKNOWN) ? sim::EventType::kInfo
                                                                                          : sim::EventType::kFail;
      sim::describe_response(*reply, done);
      if (req.has_strong() && e != pb::OK && done.type == sim::EventType::kOk) done.succeeded = false;  // refused
    }
    rec.add(done);
    w.on_reply(req, reply && done.type != sim::EventType::kInfo ? &*reply : nullptr);
    std::this_thread::sleep_for(std::chrono::milliseconds(random.range(0, 20)));
  }
}

sim::NodeFinal read_node(int i, uint16_t port, const sim::TouchedKeys& keys) {
  sim::NodeFinal nf;
  nf.node = "n" + std::to_string(i + 1);
  RawConnection c(port);
  uint64_t seq = 0;
  std::string error;
  auto ask = [&](pb::Request q) {
    q.set_client_id("nemesis-test-reader");
    q.set_seq(++seq);
    auto r = c.call(q, Clock::now() + 5s, error);
    EXPECT_TRUE(r) << nf.node << ": " << error;
    return r ? *r : pb::Response();
  };
  pb::Request st;
  st.mutable_cluster_status();
  const pb::Response status = ask(st);
  for (const auto& n : status.cluster_status().nodes())
    if (n.state() == "self") nf.digest = n.digest();
  sim::read_final_values(keys, ask, nf);
  return nf;
}

TEST(Nemesis, PartitionsAndKillNineUnderLoadLoseNothing) {
  ProcessCluster cluster(3);
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(cluster.wait_all_up(i)) << cluster.read_log(i);
  std::vector<uint16_t> ports;
  for (int i = 0; i < 3; ++i) ports.push_back(port_of(cluster.endpoint(i)));

  Recorder rec(Clock::now());
  std::atomic<bool> stop{false};
  std::vector<std::thread> clients;
  for (int c = 0; c < 4; ++c) clients.emplace_back(run_client, c, std::cref(ports), std::ref(rec), std::ref(stop));

  // Nemesis: isolate a node, heal, kill -9 a node and restart it; three rounds.
  sim::SimRandom random(7);
  for (int round = 0; round < 3; ++round) {
    const int lone = static_cast<int>(random.below(3));
    std::vector<std::string> others;
    for (int i = 0; i < 3; ++i)
      if (i != lone) others.push_back(cluster.id(i));
    auto admin = cluster.client(lone);
    if (admin.admin_partition(others)) rec.fault("partition", "isolate " + cluster.id(lone));
    std::this_thread::sleep_for(2500ms);
    if (admin.admin_heal()) rec.fault("heal", cluster.id(lone) + " healed");
    std::this_thread::sleep_for(500ms);
    const int victim = static_cast<int>(random.below(3));
    cluster.kill9(victim);
    rec.fault("crash", cluster.id(victim) + " killed with SIGKILL");
    std::this_thread::sleep_for(1500ms);
    cluster.start(victim);
    ASSERT_TRUE(cluster.wait_ready(victim)) << cluster.read_log(victim);
    rec.fault("restart", cluster.id(victim) + " restarted");
    std::this_thread::sleep_for(1000ms);
  }
  stop = true;
  for (auto& t : clients) t.join();
  for (int i = 0; i < 3; ++i) {
    if (!cluster.running(i)) cluster.start(i);
    ASSERT_TRUE(cluster.wait_ready(i));
    EXPECT_TRUE(cluster.client(i).admin_heal());
  }
  rec.fault("heal-all", "every node running and healed; waiting for convergence");
  const auto healed = Clock::now();
  const int64_t healed_at = rec.now();
  const bool converged = cluster.wait_converged(30s);
  const auto converge_ms = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - healed).count();

  sim::History history = rec.take();
  sim::FinalState final_state;
  final_state.healed_at = healed_at;
  if (converged) final_state.converged_after_ms = converge_ms;
  const auto keys = sim::touched_keys(history);
  for (int i = 0; i < 3; ++i) final_state.nodes.push_back(read_node(i, ports[static_cast<size_t>(i)], keys));

  // Kept after the test (the cluster directory is not) for a look with the same tools.
  const std::string path = (std::filesystem::temp_directory_path() / "stig-nemesis-history.jsonl").string();
  EXPECT_EQ(history.write_jsonl(path), "");
  EXPECT_GT(history.operations(), 100u);
  EXPECT_GE(history.faults(), 12u);
  size_t violations = 0;
  for (const auto& r : sim::run_checkers(history, final_state)) {
    std::cout << (r.ok ? "pass " : "FAIL ") << r.name << ": " << r.summary << "\n";
    for (const auto& f : r.findings) std::cout << "  " << f << "\n";
    EXPECT_TRUE(r.ok) << r.name << ": " << r.summary;
    violations += r.ok ? 0 : 1;
  }
  std::cout << "real cluster: " << history.operations() << " operations, " << history.faults() << " faults, "
            << violations << " violations, converged " << converge_ms << " ms after heal; history in " << path
            << "\n";
}

}  // namespace
}  // namespace stig::testing
