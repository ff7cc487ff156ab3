// Graceful shutdown of a Raft leader against real stigd processes: SIGTERM
// hands leadership to a follower (thesis §3.10) instead of leaving the
// cluster to wait out an election timeout, and nothing committed is lost.
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <optional>
#include <string>
#include <thread>

#include <gtest/gtest.h>

#include "process_cluster.h"
#include "wire/frame.h"

namespace stig::testing {
namespace {

using namespace std::chrono_literals;
namespace pb = stigmergy::v1;
using Clock = std::chrono::steady_clock;

// One request on a fresh connection to node i; nullopt if no answer in 5 s.
std::optional<pb::Response> ask(ProcessCluster& c, int i, pb::Request request) {
  static uint64_t seq = 1;
  request.set_client_id("handoff-test");
  request.set_agent("tester");
  if (request.seq() == 0) request.set_seq(seq++);
  const int fd = connect_raw(port_of(c.endpoint(i)));
  if (fd < 0) return std::nullopt;
  std::optional<pb::Response> out;
  if (send_all(fd, request_frame(request))) {
    wire::FrameDecoder d;
    char buf[65536];
    const auto deadline = Clock::now() + 5s;
    while (!out && Clock::now() < deadline) {
      pb::Envelope env;
      if (d.next(env)) {
        if (env.has_response()) out = env.response();
        continue;
      }
      const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
      if (n <= 0) break;
      d.feed(std::string_view(buf, static_cast<size_t>(n)));
    }
  }
  ::close(fd);
  return out;
}

// The node that reports itself leader, with its term.
std::optional<std::pair<int, uint64_t>> leader_of(ProcessCluster& c) {
  for (int i = 0; i < c.size(); ++i) {
    if (!c.running(i)) continue;
    pb::Request r;
    r.mutable_cluster_status();
    auto resp = ask(c, i, r);
    if (!resp) continue;
    for (const auto& n : resp->cluster_status().nodes())
      if (n.id() == c.id(i) && n.role() == "leader") return std::make_pair(i, n.term());
  }
  return std::nullopt;
}

std::optional<std::pair<int, uint64_t>> wait_leader(ProcessCluster& c, std::chrono::milliseconds limit) {
  const auto deadline = Clock::now() + limit;
  while (Clock::now() < deadline) {
    if (auto l = leader_of(c)) return l;
    std::this_thread::sleep_for(20ms);
  }
  return std::nullopt;
}

TEST(Handoff, SigtermOnTheLeaderHandsLeadershipToAFollower) {
  ProcessCluster c(3);
  auto first = wait_leader(c, 10s);
  ASSERT_TRUE(first) << "no leader elected";
  const auto [leader, term] = *first;

  pb::Request put;
  put.mutable_strong()->mutable_put()->set_key("order-9");
  put.mutable_strong()->mutable_put()->set_value("reserved");
  auto ok = ask(c, leader, put);
  ASSERT_TRUE(ok);
  ASSERT_EQ(ok->error(), pb::OK) << ok->error_message();

  c.stop(leader);  // SIGTERM; returns once the process exited
  EXPECT_EQ(c.last_exit_status(leader), 0);
  // The transfer happened before the exit: a successor is there at once,
  // one term later, without waiting for an election timeout to pass.
  auto next = wait_leader(c, 300ms);
  ASSERT_TRUE(next) << c.read_log(leader);
  EXPECT_NE(next->first, leader);
  EXPECT_EQ(next->second, term + 1);
  EXPECT_NE(c.read_log(leader).find("Raft leadership handed to"), std::string::npos) << c.read_log(leader);

  pb::Request get;
  get.mutable_strong()->mutable_get()->set_key("order-9");
  auto got = ask(c, next->first, get);
  ASSERT_TRUE(got);
  ASSERT_EQ(got->error(), pb::OK) << got->error_message();
  EXPECT_EQ(got->strong().kv().value(), "reserved");
}

}  // namespace
}  // namespace stig::testing
