// Graceful shutdown of a Raft leader against real stigd processes: SIGTERM
// hands leadership to a follower (thesis §3.10) instead of leaving the
// cluster to wait out an election timeout, and nothing committed is lost.
#include <chrono>
#include <optional>
#include <string>
#include <thread>

#include <gtest/gtest.h>

#include "process_cluster.h"

namespace stig::testing {
namespace {

using namespace std::chrono_literals;
namespace pb = stigmergy::v1;
using Clock = std::chrono::steady_clock;

// The running node that reports itself leader, with its term.
std::optional<std::pair<int, uint64_t>> leader_within(ProcessCluster& c, std::chrono::milliseconds limit) {
  const int i = wait_leader(c, limit);
  if (i < 0) return std::nullopt;
  auto view = raft_view(port_of(c.endpoint(i)));
  if (!view) return std::nullopt;
  return std::make_pair(i, view->term);
}

// One request to node i.
std::optional<pb::Response> ask(ProcessCluster& c, int i, pb::Request request) {
  static uint64_t seq = 1;
  request.set_client_id("handoff-test");
  request.set_agent("tester");
  request.set_seq(seq++);
  RawConnection conn(port_of(c.endpoint(i)));
  return conn.call(request, 5s);
}

TEST(Handoff, SigtermOnTheLeaderHandsLeadershipToAFollower) {
  ProcessCluster c(3);
  auto first = leader_within(c, 10s);
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
  auto next = leader_within(c, 300ms);
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
