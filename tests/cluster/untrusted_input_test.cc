// Issue 6 on real stigd processes: what used to take a node down from one
// `stig` command now gets a one-line error or a harmless write, and every
// node keeps serving.
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "process_cluster.h"
#include "wire/frame.h"

namespace stig::testing {
namespace {

using namespace std::chrono_literals;

CliResult stig_at(const std::string& endpoint, std::vector<std::string> args) {
  return run_stig(endpoint, "mallory", args);
}

// Item 1: `stig put a v --context Cg8KAm4yEP___________wE` (the context
// {n2: 2^64-1}) made n2 adopt the counter, wrap and abort on its next put.
TEST(UntrustedCluster, ForgedContextsNeitherCrashNorHide) {
  ProcessCluster cluster(3);
  ASSERT_TRUE(cluster.wait_all_up(0));
  const std::string n1 = cluster.endpoint(0), n2 = cluster.endpoint(1);

  auto huge = stig_at(n1, {"put", "a", "v", "--context", "Cg8KAm4yEP___________wE"});
  EXPECT_EQ(huge.status, 1) << huge.out << huge.err;
  EXPECT_NE(huge.err.find("MALFORMED_CONTEXT"), std::string::npos) << huge.err;

  // {n2: 10^12}: plausible, never issued. Cut to what n1 has seen of n2.
  auto forged = stig_at(n1, {"--json", "put", "a", "v1", "--context", "CgsKAm4yEICglKWNHQ"});
  ASSERT_EQ(forged.status, 0) << forged.out << forged.err;
  EXPECT_NE(forged.out.find("\"context_cut\":true"), std::string::npos) << forged.out;

  // n2 keeps taking writes, and they are not hidden by the forged claim.
  std::this_thread::sleep_for(300ms);
  auto on_n2 = stig_at(n2, {"put", "a", "v2"});
  ASSERT_EQ(on_n2.status, 0) << on_n2.out << on_n2.err;
  ASSERT_TRUE(cluster.wait_converged());
  for (int i = 0; i < 3; ++i) {
    auto got = cluster.client(i).get("a");
    ASSERT_TRUE(got) << got.error().to_string();
    EXPECT_EQ(got->values().size(), 2u) << "node " << i;
    EXPECT_TRUE(cluster.running(i));
  }
}

// Item 8: `stig put $'\xff' v` then `stig counter add $'\xff' 1` answered
// "bad reply: frame body is not a valid Stigmergy envelope".
TEST(UntrustedCluster, ErrorsAboutBinaryKeysAreReadable) {
  ProcessCluster cluster(1);
  ASSERT_TRUE(cluster.wait_ready(0));
  const std::string n1 = cluster.endpoint(0);
  ASSERT_EQ(stig_at(n1, {"put", "\xff", "v"}).status, 0);
  auto add = stig_at(n1, {"counter", "add", "\xff", "1"});
  EXPECT_EQ(add.status, 1);
  EXPECT_NE(add.err.find("WRONG_TYPE"), std::string::npos) << add.err;
  EXPECT_NE(add.err.find("\\xff"), std::string::npos) << add.err;
  EXPECT_EQ(add.err.find("bad reply"), std::string::npos) << add.err;
  EXPECT_EQ(std::count(add.err.begin(), add.err.end(), '\n'), 1) << add.err;
  // Text output never writes a key's raw bytes to the terminal.
  const std::string escape_key = "\x1b[2Jwiped";
  auto put = stig_at(n1, {"put", escape_key, "v"});
  ASSERT_EQ(put.status, 0) << put.err;
  EXPECT_EQ(put.out.find('\x1b'), std::string::npos) << put.out;
  EXPECT_NE(put.out.find("ok: base64:"), std::string::npos) << put.out;
  ASSERT_EQ(stig_at(n1, {"put", escape_key, "w"}).status, 0);  // a sibling: get shows a resolve hint
  auto get = stig_at(n1, {"get", escape_key});
  EXPECT_EQ(get.out.find('\x1b'), std::string::npos) << get.out;
  EXPECT_NE(get.out.find("stig put $'\\x1b[2Jwiped' VALUE"), std::string::npos) << get.out;
}

// Item 9's bounds are flags; a value outside what they allow is one line.
TEST(UntrustedCluster, RetryCacheFlagsAreChecked) {
  std::string out, err;
  const std::string stigd = std::string(STIG_BIN_DIR) + "/stigd";
  const std::vector<std::string> base = {stigd, "--id", "n1", "--listen", "127.0.0.1:1", "--data-dir", "/nonexistent"};
  auto with = [&](std::vector<std::string> extra) {
    std::vector<std::string> argv = base;
    argv.insert(argv.end(), extra.begin(), extra.end());
    return run_command(argv, &out, &err);
  };
  EXPECT_EQ(with({"--retry-cache-bytes", "10"}), 2);
  EXPECT_NE(err.find("--retry-cache-bytes"), std::string::npos) << err;
  EXPECT_EQ(std::count(err.begin(), err.end(), '\n'), 1) << err;
  EXPECT_EQ(with({"--retry-cache-idle-ms", "5"}), 2);
  EXPECT_NE(err.find("--retry-cache-idle-ms"), std::string::npos) << err;
  EXPECT_EQ(with({"--help"}), 0);
  EXPECT_NE(out.find("--retry-cache-clients"), std::string::npos);

  ProcessCluster cluster(1, {"--retry-cache-clients", "2", "--retry-cache-bytes", "1MiB", "--retry-cache-idle-ms",
                             "60000"});
  ASSERT_TRUE(cluster.wait_ready(0));
  for (int i = 0; i < 5; ++i) {
    auto put = cluster.client(0, "agent-" + std::to_string(i)).put("k", "v" + std::to_string(i));
    EXPECT_TRUE(put) << put.error().to_string();
  }
}

}  // namespace
}  // namespace stig::testing

namespace stig::testing {
namespace {

// 36 KB of pipelined gets of a 1 MB key made a node build 2,000 answers at
// once (1.5 GiB) for a client that never reads. Now a connection has at most
// --max-requests-in-flight requests in the works and stops decoding while
// its unread answers exceed --client-buffer-bytes; every request is still
// answered, in order, once the client reads.
TEST(UntrustedCluster, PipelinedRequestsWaitForAnswersToBeRead) {
  ProcessCluster cluster(1, {"--client-buffer-bytes", "1MiB", "--max-requests-in-flight", "4"});
  ASSERT_TRUE(cluster.wait_ready(0));
  ASSERT_TRUE(cluster.client(0).put("big", std::string(256 << 10, 'x')));
  ASSERT_GT(cluster.rss_kib(0), 0u);
  std::string frames;
  constexpr int kRequests = 300;
  for (int seq = 1; seq <= kRequests; ++seq) {
    stigmergy::v1::Request r;
    r.set_seq(static_cast<uint64_t>(seq));
    r.mutable_get()->set_key("big");
    frames += request_frame(r);
  }
  const int fd = connect_raw(port_of(cluster.endpoint(0)), std::chrono::seconds(10));
  ASSERT_GE(fd, 0);
  const uint64_t before = cluster.rss_kib(0);
  ASSERT_TRUE(send_all(fd, frames));
  // The node holds a few answers, not 300 x 256 KiB (75 MiB) of them.
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  EXPECT_LT(cluster.rss_kib(0), before + 24 * 1024) << "KiB resident; was " << before;
  // Another client is served meanwhile.
  auto other = cluster.client(0).get("big");
  ASSERT_TRUE(other) << other.error().to_string();
  // Now read: every answer arrives, in order.
  wire::FrameDecoder decoder;
  stigmergy::v1::Envelope env;
  uint64_t next = 1;
  char buf[1 << 16];
  while (next <= kRequests) {
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    ASSERT_GT(n, 0) << "connection closed or timed out after " << next - 1 << " answers";
    decoder.feed(std::string_view(buf, static_cast<size_t>(n)));
    while (decoder.next(env)) {
      ASSERT_TRUE(env.has_response());
      EXPECT_EQ(env.response().seq(), next);
      EXPECT_EQ(env.response().get().versions(0).value().size(), 256u << 10);
      ++next;
    }
  }
  ::close(fd);
  EXPECT_TRUE(cluster.running(0));
}

}  // namespace
}  // namespace stig::testing
