// End-to-end tests on real stigd processes over loopback TCP.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <set>
#include <thread>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "process_cluster.h"
#include "wire/frame.h"

namespace stig::testing {
namespace {

using namespace std::chrono_literals;

std::vector<std::string> sorted(std::vector<std::string> v) {
  std::sort(v.begin(), v.end());
  return v;
}

// Polls until `pred` holds or the limit passes.
TEST(Cluster, WriteOnOneNodeIsReadableOnAnother) {
  ProcessCluster cluster(3);
  auto n1 = cluster.client(0, "fulfilment");
  auto put = n1.put("order-1", "shipped");
  ASSERT_TRUE(put) << put.error().to_string();
  auto n3 = cluster.client(2, "support");
  ASSERT_TRUE(eventually([&] {
    auto got = n3.get("order-1");
    return got && got->values() == std::vector<std::string>{"shipped"};
  }));
  auto got = n3.get("order-1");
  ASSERT_TRUE(got);
  EXPECT_EQ(got->versions[0].modified_by, "fulfilment");
  EXPECT_GT(got->versions[0].modified_at_ms, 1600000000000);
}

TEST(Cluster, ConcurrentWritesShowAsSiblingsEverywhereAndResolve) {
  ProcessCluster cluster(3);
  ASSERT_TRUE(cluster.wait_all_up(0));
  // Make the writes concurrent for sure: n1 and n2 cannot talk while they write.
  auto admin = cluster.client(0);
  ASSERT_TRUE(admin.admin_partition({"n2"}));
  auto a = cluster.client(0, "fulfilment");
  auto b = cluster.client(1, "support");
  ASSERT_TRUE(a.put("order-7", "shipped"));
  ASSERT_TRUE(b.put("order-7", "cancelled"));
  ASSERT_TRUE(admin.admin_heal());
  ASSERT_TRUE(cluster.wait_converged());
  std::string context;
  for (int i = 0; i < 3; ++i) {
    auto got = cluster.client(i).get("order-7");
    ASSERT_TRUE(got);
    EXPECT_EQ(sorted(got->values()), (std::vector<std::string>{"cancelled", "shipped"})) << cluster.id(i);
    std::set<std::string> writers;
    for (const auto& v : got->versions) writers.insert(v.modified_by);
    EXPECT_EQ(writers, (std::set<std::string>{"fulfilment", "support"}));
    context = got->context;
  }
  auto resolved = cluster.client(2, "supervisor").put("order-7", "refunded", context);
  ASSERT_TRUE(resolved) << resolved.error().to_string();
  ASSERT_TRUE(cluster.wait_converged());
  for (int i = 0; i < 3; ++i) {
    auto got = cluster.client(i).get("order-7");
    ASSERT_TRUE(got);
    EXPECT_EQ(got->values(), std::vector<std::string>{"refunded"}) << cluster.id(i);
  }
}

TEST(Cluster, PartitionedNodeAcceptsWritesAndAllConvergeAfterHeal) {
  ProcessCluster cluster(3);
  ASSERT_TRUE(cluster.wait_all_up(2));
  auto n3 = cluster.client(2);
  ASSERT_TRUE(n3.admin_partition({"n1", "n2"}));
  auto n1 = cluster.client(0);
  for (int i = 0; i < 100; ++i) {
    ASSERT_TRUE(n1.put("left-" + std::to_string(i), "a"));
    ASSERT_TRUE(n3.put("right-" + std::to_string(i), "b"));
  }
  ASSERT_TRUE(n1.counter_add("stock", 5));
  ASSERT_TRUE(n3.counter_add("stock", -2));
  std::this_thread::sleep_for(1500ms);
  // While partitioned, the isolated side has not seen the other's writes.
  auto missing = n3.get("left-0");
  ASSERT_TRUE(missing);
  EXPECT_TRUE(missing->versions.empty());
  auto status = n3.cluster_status();
  ASSERT_TRUE(status);
  for (const auto& n : status->nodes)
    if (n.state != "self") {
      EXPECT_NE(n.state, "up") << n.id;
    }

  ASSERT_TRUE(n3.admin_heal());
  ASSERT_TRUE(cluster.wait_converged()) << "digests differ after heal";
  for (int i = 0; i < 3; ++i) {
    auto st = cluster.self_status(i);
    ASSERT_TRUE(st);
    EXPECT_EQ(st->keys, 201u) << cluster.id(i);
    auto c = cluster.client(i).counter_get("stock");
    ASSERT_TRUE(c);
    EXPECT_EQ(c->value, 3);
  }
}

TEST(Cluster, KillNineLosesNoAcknowledgedWrite) {
  ProcessCluster cluster(3);
  // Several concurrent writers so group commit batches them.
  std::vector<std::thread> writers;
  std::vector<std::vector<std::string>> acked(4);
  for (int w = 0; w < 4; ++w) {
    writers.emplace_back([&, w] {
      auto c = cluster.client(0, "writer" + std::to_string(w));
      for (int i = 0; i < 150; ++i) {
        const std::string key = "w" + std::to_string(w) + "-" + std::to_string(i);
        if (c.put(key, "v" + std::to_string(i))) acked[w].push_back(key);
      }
    });
  }
  for (auto& t : writers) t.join();
  cluster.kill9(0);  // right after the last acknowledgement
  cluster.start(0);
  ASSERT_TRUE(cluster.wait_ready(0));
  auto c = cluster.client(0);
  size_t checked = 0;
  for (const auto& keys : acked) {
    for (const auto& key : keys) {
      auto got = c.get(key);
      ASSERT_TRUE(got) << got.error().to_string();
      ASSERT_FALSE(got->versions.empty()) << "acknowledged write of " << key << " lost";
      ++checked;
    }
  }
  EXPECT_EQ(checked, 600u);
  ASSERT_TRUE(cluster.wait_converged());
}

TEST(Cluster, StopWithSigtermIsClean) {
  ProcessCluster cluster(1);
  ASSERT_TRUE(cluster.client(0).put("k", "v"));
  cluster.stop(0);
  EXPECT_TRUE(WIFEXITED(cluster.last_exit_status(0)));
  EXPECT_EQ(WEXITSTATUS(cluster.last_exit_status(0)), 0);
  cluster.start(0);
  ASSERT_TRUE(cluster.wait_ready(0));
  auto got = cluster.client(0).get("k");
  ASSERT_TRUE(got);
  EXPECT_EQ(got->values(), std::vector<std::string>{"v"});
}

// --- bad input -------------------------------------------------------------------

TEST(Cluster, BadInputClosesTheConnectionAndTheNodeKeepsServing) {
  ProcessCluster cluster(1);
  const uint16_t port = port_of(cluster.endpoint(0));
  auto healthy = cluster.client(0);
  ASSERT_TRUE(healthy.put("before", "1"));

  {  // garbage bytes with a plausible length
    int fd = connect_raw(port);
    ASSERT_GE(fd, 0);
    const unsigned char frame[] = {0, 0, 0, 8, 0xde, 0xad, 0xbe, 0xef, 0xff, 0xff, 0xff, 0xff};
    ::send(fd, frame, sizeof frame, 0);
    auto reply = first_response(read_until_close(fd));
    ASSERT_TRUE(reply) << "expected an error reply before close";
    EXPECT_EQ(reply->error(), stigmergy::v1::MALFORMED_FRAME);
    EXPECT_FALSE(reply->error_message().empty());
    ::close(fd);
  }
  {  // oversized frame: refused from the header alone
    int fd = connect_raw(port);
    ASSERT_GE(fd, 0);
    const unsigned char header[] = {0x7f, 0xff, 0xff, 0xff};
    ::send(fd, header, sizeof header, 0);
    auto reply = first_response(read_until_close(fd));
    ASSERT_TRUE(reply);
    EXPECT_EQ(reply->error(), stigmergy::v1::FRAME_TOO_LARGE);
    ::close(fd);
  }
  {  // truncated frame, then the client goes away
    int fd = connect_raw(port);
    ASSERT_GE(fd, 0);
    const unsigned char partial[] = {0, 0, 0, 100, 1, 2, 3};
    ::send(fd, partial, sizeof partial, 0);
    ::close(fd);
  }
  {  // a valid envelope that is not a request on a fresh connection
    int fd = connect_raw(port);
    ASSERT_GE(fd, 0);
    stigmergy::v1::Envelope env;
    env.set_protocol_version(wire::kProtocolVersion);
    env.mutable_response()->set_seq(1);
    const std::string bytes = wire::encode_frame(env);
    ::send(fd, bytes.data(), bytes.size(), 0);
    read_until_close(fd);
    ::close(fd);
  }
  {  // many connections at once sending random junk
    for (int i = 0; i < 20; ++i) {
      int fd = connect_raw(port);
      ASSERT_GE(fd, 0);
      std::string junk(1000 + i * 37, static_cast<char>(i * 13));
      ::send(fd, junk.data(), junk.size(), MSG_NOSIGNAL);
      ::close(fd);
    }
  }
  ASSERT_TRUE(cluster.running(0));
  auto after = healthy.put("after", "2");
  ASSERT_TRUE(after) << after.error().to_string();
  auto got = healthy.get("before");
  ASSERT_TRUE(got);
  EXPECT_EQ(got->values(), std::vector<std::string>{"1"});
}

// --- the CLI ------------------------------------------------------------------------

CliResult stig(const ProcessCluster& cluster, std::vector<std::string> args) {
  return run_stig(cluster.all_endpoints(), "cli-test", args);
}

TEST(Cluster, CliJsonOutputAndErrors) {
  ProcessCluster cluster(3);
  auto put = stig(cluster, {"--json", "put", "order-9", "packed"});
  ASSERT_EQ(put.status, 0) << put.err;
  auto pj = nlohmann::json::parse(put.out);
  EXPECT_EQ(pj["key"], "order-9");
  ASSERT_TRUE(pj["context"].is_string());

  auto get = stig(cluster, {"--json", "get", "order-9"});
  ASSERT_EQ(get.status, 0) << get.err;
  auto gj = nlohmann::json::parse(get.out);
  EXPECT_EQ(gj["values"], nlohmann::json::array({"packed"}));
  EXPECT_EQ(gj["versions"][0]["modified_by"], "cli-test");
  EXPECT_TRUE(gj["versions"][0].contains("modified_at"));

  auto missing = stig(cluster, {"--json", "get", "nope"});
  ASSERT_EQ(missing.status, 0) << missing.err;
  EXPECT_EQ(nlohmann::json::parse(missing.out)["values"], nlohmann::json::array());

  auto add = stig(cluster, {"--json", "counter", "add", "stock", "5"});
  ASSERT_EQ(add.status, 0) << add.err;
  auto cget = stig(cluster, {"--json", "counter", "get", "stock"});
  EXPECT_EQ(nlohmann::json::parse(cget.out)["value"], 5);

  ASSERT_EQ(stig(cluster, {"set", "add", "tags", "urgent"}).status, 0);
  auto sget = stig(cluster, {"--json", "set", "get", "tags"});
  EXPECT_EQ(nlohmann::json::parse(sget.out)["elements"], nlohmann::json::array({"urgent"}));

  auto status = stig(cluster, {"--json", "cluster", "status"});
  ASSERT_EQ(status.status, 0) << status.err;
  auto sj = nlohmann::json::parse(status.out);
  ASSERT_EQ(sj["nodes"].size(), 3u);
  for (const auto& n : sj["nodes"]) {
    EXPECT_TRUE(n.contains("id") && n.contains("address") && n.contains("state") && n.contains("keys") &&
                n.contains("digest"));
  }

  // Errors: one line on stderr, non-zero exit.
  auto wrong = stig(cluster, {"counter", "add", "order-9", "1"});
  EXPECT_NE(wrong.status, 0);
  EXPECT_NE(wrong.err.find("register"), std::string::npos) << wrong.err;
  EXPECT_EQ(std::count(wrong.err.begin(), wrong.err.end(), '\n'), 1) << wrong.err;

  auto bad_ctx = stig(cluster, {"put", "order-9", "x", "--context", "%%%not-a-context"});
  EXPECT_NE(bad_ctx.status, 0);
  EXPECT_NE(bad_ctx.err.find("context"), std::string::npos) << bad_ctx.err;

  auto verb = stig(cluster, {"frobnicate"});
  EXPECT_NE(verb.status, 0);
  EXPECT_NE(verb.err.find("frobnicate"), std::string::npos) << verb.err;

  std::string out, err;
  const int unreachable =
      run_command({std::string(STIG_BIN_DIR) + "/stig", "--endpoints", "127.0.0.1:1", "get", "k"}, &out, &err);
  EXPECT_NE(unreachable, 0);
  EXPECT_NE(err.find("127.0.0.1:1"), std::string::npos) << err;
}

}  // namespace
}  // namespace stig::testing
