// Limits that hold under abuse, on real stigd processes (docs/node.md,
// "Limits"): the connection limit, the hello, idle, slow-frame and peer-idle
// timeouts, the inbound buffer budget, refusing a second link claiming a
// connected peer's id, and admin verbs behind --enable-admin. Timeouts are
// set small so each test runs in a few seconds.
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "process_cluster.h"
#include "wire/frame.h"

namespace stig::testing {
namespace {

using namespace std::chrono_literals;
namespace pb = stigmergy::v1;
using Clock = std::chrono::steady_clock;

int64_t ms_since(Clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t).count();
}

size_t count_of(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

pb::Request status_request(uint64_t seq) {
  pb::Request r;
  r.set_client_id("limits-test");
  r.set_seq(seq);
  r.set_agent("limits-test");
  r.mutable_cluster_status();
  return r;
}

// Sends `request` on a raw connection and reads frames until its reply (or
// a connection-level error, seq 0); nullopt if the connection closes or 5 s pass.
std::optional<pb::Response> call_raw(int fd, const pb::Request& request) {
  if (!send_all(fd, request_frame(request))) return std::nullopt;
  wire::FrameDecoder d;
  const auto deadline = Clock::now() + 5s;
  char buf[65536];
  while (Clock::now() < deadline) {
    pb::Envelope env;
    if (d.next(env)) {
      if (env.has_response() && (env.response().seq() == request.seq() || env.response().seq() == 0))
        return env.response();
      continue;
    }
    if (d.error() != wire::FrameError::kNone) return std::nullopt;
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) return std::nullopt;
    d.feed(std::string_view(buf, static_cast<size_t>(n)));
  }
  return std::nullopt;
}

// True if the node closed `fd` (EOF or reset) within `limit`; any bytes it
// sent first go to *got.
bool closed_within(int fd, std::chrono::milliseconds limit, std::string* got = nullptr) {
  const auto deadline = Clock::now() + limit;
  char buf[4096];
  while (Clock::now() < deadline) {
    pollfd p{fd, POLLIN, 0};
    const int left = static_cast<int>(std::max<int64_t>(1, -ms_since(deadline)));
    if (::poll(&p, 1, left) <= 0) continue;
    const ssize_t n = ::recv(fd, buf, sizeof buf, MSG_DONTWAIT);
    if (n == 0) return true;
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) continue;
      return true;  // reset
    }
    if (got) got->append(buf, static_cast<size_t>(n));
  }
  return false;
}

// The 4-byte header of a frame declaring `length` body bytes.
std::string header(uint32_t length) {
  std::string h(4, '\0');
  h[0] = static_cast<char>(length >> 24);
  h[1] = static_cast<char>(length >> 16);
  h[2] = static_cast<char>(length >> 8);
  h[3] = static_cast<char>(length);
  return h;
}

struct Fd {
  int fd = -1;
  explicit Fd(int f) : fd(f) {}
  Fd(Fd&& o) noexcept : fd(o.fd) { o.fd = -1; }
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
  operator int() const { return fd; }
};

// --- connections -----------------------------------------------------------------

TEST(Limits, ConnectionLimitRefusesTheExtraConnectionAndOthersKeepWorking) {
  ProcessCluster cluster(2, {"--max-client-connections", "4"});
  ASSERT_TRUE(cluster.wait_all_up(0));
  std::this_thread::sleep_for(300ms);  // the harness's own client connections close
  const uint16_t port = port_of(cluster.endpoint(0));

  std::vector<Fd> served;
  uint64_t seq = 1;
  ASSERT_TRUE(eventually([&] {
    Fd fd(connect_raw(port));
    if (fd < 0) return false;
    auto r = call_raw(fd, status_request(seq++));
    if (r && r->error() == pb::OK) served.push_back(std::move(fd));
    return served.size() == 4;
  }, 5s));

  // Beyond the limit: every further connection gets one error and is closed,
  // whether it is taken on probation (for peers) or refused at once.
  for (int i = 0; i < 6; ++i) {
    Fd fd(connect_raw(port));
    ASSERT_GE(fd, 0);
    send_all(fd, request_frame(status_request(100 + i)));
    std::string got;
    ASSERT_TRUE(closed_within(fd, 5s, &got)) << "extra connection " << i << " was not closed";
    auto reply = first_response(got);
    ASSERT_TRUE(reply) << "extra connection " << i << " got no error frame";
    EXPECT_EQ(reply->error(), pb::UNAVAILABLE);
    EXPECT_EQ(reply->error_message(), "too many connections (limit 4)");
  }
  // The connections within the limit are served as before.
  for (auto& fd : served) {
    auto r = call_raw(fd, status_request(seq++));
    ASSERT_TRUE(r);
    EXPECT_EQ(r->error(), pb::OK);
  }

  // A peer reconnecting while clients hold every slot still gets in.
  const std::string before = cluster.read_log(0);
  const size_t links_before = count_of(before, "inbound link from peer n2 (");
  cluster.kill9(1);
  cluster.start(1);
  ASSERT_TRUE(cluster.wait_ready(1));
  EXPECT_TRUE(eventually([&] { return count_of(cluster.read_log(0), "inbound link from peer n2 (") > links_before; },
                         10s))
      << cluster.read_log(0);
  EXPECT_NE(cluster.read_log(0).find("too many connections (limit 4)"), std::string::npos);

  // Once a client leaves, a new one is served.
  served.pop_back();
  std::string last_error;
  EXPECT_TRUE(eventually([&] {
    auto c = cluster.client(0);
    auto put = c.put("after", "1");
    if (!put) last_error = put.error().to_string();
    return static_cast<bool>(put);
  }, 5s)) << last_error;
}

TEST(Limits, HelloAndIdleTimeoutsClose) {
  ProcessCluster cluster(1, {"--hello-timeout-ms", "500", "--idle-timeout-ms", "1000"});
  const uint16_t port = port_of(cluster.endpoint(0));

  {  // a connection that never sends: closed after the hello timeout
    Fd fd(connect_raw(port));
    const auto t0 = Clock::now();
    ASSERT_TRUE(closed_within(fd, 5s));
    EXPECT_GE(ms_since(t0), 400);
    EXPECT_LT(ms_since(t0), 3000);
  }
  {  // a client that goes quiet after a request: closed after the idle timeout
    Fd fd(connect_raw(port));
    auto r = call_raw(fd, status_request(1));
    ASSERT_TRUE(r);
    const auto t0 = Clock::now();
    ASSERT_TRUE(closed_within(fd, 5s));
    EXPECT_GE(ms_since(t0), 900);
    EXPECT_LT(ms_since(t0), 3500);
  }
  {  // a client that keeps sending is not idle
    Fd fd(connect_raw(port));
    for (int i = 0; i < 8; ++i) {
      auto r = call_raw(fd, status_request(static_cast<uint64_t>(i + 1)));
      ASSERT_TRUE(r) << "closed after " << i << " requests";
      std::this_thread::sleep_for(300ms);
    }
  }
  // The client library reconnects transparently after an idle close.
  auto c = cluster.client(0);
  ASSERT_TRUE(c.put("k", "1"));
  std::this_thread::sleep_for(1800ms);
  auto again = c.put("k2", "2");
  EXPECT_TRUE(again) << again.error().to_string();
}

TEST(Limits, SlowFrameIsRefusedAfterTheSlowFrameTimeout) {
  ProcessCluster cluster(1, {"--slow-frame-timeout-ms", "1000"});
  const uint16_t port = port_of(cluster.endpoint(0));
  auto healthy = cluster.client(0);
  ASSERT_TRUE(healthy.put("before", "1"));

  // Declare a 4 MiB frame, then trickle its body.
  Fd fd(connect_raw(port));
  ASSERT_TRUE(send_all(fd, header((4u << 20) - 16) + std::string(64 * 1024, 'x')));
  const auto t0 = Clock::now();
  std::string got;
  bool closed = false;
  while (!closed && ms_since(t0) < 5000) {
    send_all(fd, std::string(1024, 'x'));  // may fail once the node shut its side
    closed = closed_within(fd, 100ms, &got);
    ASSERT_TRUE(healthy.get("before")) << "another client stalled";
  }
  ASSERT_TRUE(closed) << "slow frame not refused within 5 s";
  EXPECT_GE(ms_since(t0), 900);
  auto reply = first_response(got);
  ASSERT_TRUE(reply) << "no error frame before close";
  EXPECT_EQ(reply->error(), pb::MALFORMED_FRAME);
  EXPECT_NE(reply->error_message().find("slow-frame timeout"), std::string::npos) << reply->error_message();
  ASSERT_TRUE(healthy.put("after", "2"));
}

TEST(Limits, InboundBufferBudgetRefusesTheFrameThatWouldExceedIt) {
  ProcessCluster cluster(1, {"--inbound-buffer-bytes", "4608KiB"});
  const uint16_t port = port_of(cluster.endpoint(0));

  // A: a real 900 KiB put, half sent (charged in full: its header is in).
  pb::Request put;
  put.set_client_id("budget-a");
  put.set_seq(1);
  put.set_agent("limits-test");
  put.mutable_put()->set_key("big");
  put.mutable_put()->set_value(std::string(900 * 1024, 'v'));
  const std::string frame_a = request_frame(put);
  Fd a(connect_raw(port));
  ASSERT_TRUE(send_all(a, frame_a.substr(0, frame_a.size() / 2)));
  std::this_thread::sleep_for(200ms);

  // B: a 4 MiB frame would take the total over 4.5 MiB: refused at its header.
  Fd b(connect_raw(port));
  ASSERT_TRUE(send_all(b, header(4u << 20) + std::string(1024, 'x')));
  std::string got;
  ASSERT_TRUE(closed_within(b, 5s, &got));
  auto reply = first_response(got);
  ASSERT_TRUE(reply);
  EXPECT_EQ(reply->error(), pb::UNAVAILABLE);
  EXPECT_NE(reply->error_message().find("node is over its inbound buffer budget"), std::string::npos)
      << reply->error_message();

  // Small requests from others still fit.
  auto healthy = cluster.client(0);
  ASSERT_TRUE(healthy.put("small", "1"));
  // A was not affected: it completes its frame and gets its reply.
  ASSERT_TRUE(send_all(a, frame_a.substr(frame_a.size() / 2)));
  wire::FrameDecoder d(8u << 20);
  pb::Envelope env;
  char buf[65536];
  while (!d.next(env)) {
    const ssize_t n = ::recv(a, buf, sizeof buf, 0);
    ASSERT_GT(n, 0) << "A was closed";
    d.feed(std::string_view(buf, static_cast<size_t>(n)));
  }
  ASSERT_TRUE(env.has_response());
  EXPECT_EQ(env.response().error(), pb::OK) << env.response().error_message();
  EXPECT_NE(cluster.read_log(0).find("over its inbound buffer budget"), std::string::npos);
}

// --- peers ---------------------------------------------------------------------------

TEST(Limits, SecondHelloWithAConnectedPeersIdIsRefused) {
  ProcessCluster cluster(2);
  ASSERT_TRUE(cluster.wait_all_up(0));
  ASSERT_TRUE(cluster.wait_all_up(1));
  const uint16_t port = port_of(cluster.endpoint(0));

  {  // an impostor claiming n2 while n2 is connected
    Fd fd(connect_raw(port));
    ASSERT_TRUE(send_all(fd, hello_frame("n2")));
    ASSERT_TRUE(closed_within(fd, 3s));
  }
  EXPECT_TRUE(eventually([&] {
    return cluster.read_log(0).find("hello as n2, but the inbound link from n2 is open") != std::string::npos;
  }, 3s)) << cluster.read_log(0);
  {  // hellos from ids not in the configuration are refused too
    Fd fd(connect_raw(port));
    ASSERT_TRUE(send_all(fd, hello_frame("n9")));
    ASSERT_TRUE(closed_within(fd, 3s));
    Fd bad(connect_raw(port));
    ASSERT_TRUE(send_all(bad, hello_frame("\xff\n")));
    ASSERT_TRUE(closed_within(bad, 3s));
  }
  EXPECT_NE(cluster.read_log(0).find("hello from 'n9', which is not a configured peer"), std::string::npos);
  EXPECT_NE(cluster.read_log(0).find("hello from '\\xff\\x0a', which is not a configured peer"), std::string::npos)
      << cluster.read_log(0);

  // The real n2 keeps replicating to n1.
  ASSERT_TRUE(cluster.client(1).put("from-n2", "yes"));
  EXPECT_TRUE(eventually([&] {
    auto got = cluster.client(0).get("from-n2");
    return got && got->values() == std::vector<std::string>{"yes"};
  }, 5s));
}

TEST(Limits, PeerIdleTimeoutFreesTheIdForAReconnect) {
  ProcessCluster cluster(3, {"--peer-idle-timeout-ms", "1000"});
  ASSERT_TRUE(cluster.wait_all_up(0));
  cluster.stop(2);
  const uint16_t port = port_of(cluster.endpoint(0));

  Fd first(connect_raw(port));
  ASSERT_TRUE(send_all(first, hello_frame("n3")));
  EXPECT_FALSE(closed_within(first, 300ms)) << "a hello from a configured, absent peer is accepted";
  Fd second(connect_raw(port));
  ASSERT_TRUE(send_all(second, hello_frame("n3")));
  EXPECT_TRUE(closed_within(second, 3s)) << "a second link claiming n3 is refused";
  // The silent first link is closed after the peer-idle timeout...
  const auto t0 = Clock::now();
  ASSERT_TRUE(closed_within(first, 5s));
  EXPECT_LT(ms_since(t0), 4000);
  // ... so the real n3 gets in when it comes back.
  cluster.start(2);
  ASSERT_TRUE(cluster.wait_ready(2));
  EXPECT_TRUE(cluster.wait_all_up(0));
  ASSERT_TRUE(cluster.client(2).put("from-n3", "yes"));
  EXPECT_TRUE(eventually([&] {
    auto got = cluster.client(0).get("from-n3");
    return got && !got->versions.empty();
  }, 5s));
  // Healthy links (heartbeats every 200 ms) never hit the timeout.
  EXPECT_EQ(cluster.read_log(1).find("no frame for"), std::string::npos) << cluster.read_log(1);
}

// --- admin verbs -----------------------------------------------------------------------

TEST(Limits, AdminVerbsAreRefusedWithoutEnableAdmin) {
  ProcessCluster cluster(2, {}, /*enable_admin=*/false);
  auto c = cluster.client(0);
  auto part = c.admin_partition({"n2"});
  ASSERT_FALSE(part);
  EXPECT_EQ(part.error().code, stigmergy::ErrorCode::kPermissionDenied);
  EXPECT_NE(part.error().message.find("--enable-admin"), std::string::npos) << part.error().message;
  auto heal = c.admin_heal();
  ASSERT_FALSE(heal);
  EXPECT_EQ(heal.error().code, stigmergy::ErrorCode::kPermissionDenied);
  // The connection and the node keep serving.
  EXPECT_TRUE(c.put("k", "v"));
}

TEST(Limits, AdminVerbsWorkWithEnableAdminAndPartitionsKeepLinksAlive) {
  ProcessCluster cluster(2, {"--peer-idle-timeout-ms", "1000"});
  ASSERT_TRUE(cluster.wait_all_up(0));
  auto c = cluster.client(0);
  // An id that is not valid UTF-8 comes back escaped, in a reply that parses.
  auto bad = c.admin_partition({"\xff"});
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code, stigmergy::ErrorCode::kBadRequest);
  EXPECT_NE(bad.error().message.find("'\\xff' is not a peer"), std::string::npos) << bad.error().message;

  ASSERT_TRUE(c.admin_partition({"n2"}));
  ASSERT_TRUE(c.put("during", "1"));
  std::this_thread::sleep_for(2500ms);  // > peer-idle timeout: keepalives hold n1's link to n2
  ASSERT_TRUE(c.admin_heal());
  ASSERT_TRUE(cluster.wait_converged());
  EXPECT_EQ(cluster.read_log(1).find("no frame for"), std::string::npos) << cluster.read_log(1);
}

}  // namespace
}  // namespace stig::testing
