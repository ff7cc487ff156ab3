// Access rules end to end: three real stigd processes with --access-control
// over plaintext (agents are the names clients claim: a local experiment,
// not security), driven by the `stig` CLI. The admin grants bob write on
// orders/; bob's writes elsewhere exit 5 and write nothing; rules apply on
// every node; a non-admin cannot change rules or run admin verbs; a rule
// that does not parse is one line and exit 2.
#include <algorithm>
#include <thread>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "process_cluster.h"

namespace stig::testing {
namespace {

using namespace std::chrono_literals;
using json = nlohmann::json;

size_t lines(const std::string& s) { return static_cast<size_t>(std::count(s.begin(), s.end(), '\n')); }

class AclCli : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    cluster_ = new ProcessCluster(3, {"--access-control"});
    for (int i = 0; i < 3; ++i) ASSERT_TRUE(cluster_->wait_ready(i));
    ASSERT_TRUE(eventually([] { return as("admin", {"strong", "get", "warm-up"}).status == 0; }, 30s));
    const auto g = as("admin", {"acl", "grant", "agent:bob", "write", "orders/"});
    ASSERT_EQ(g.status, 0) << describe(g);
  }
  static void TearDownTestSuite() {
    delete cluster_;
    cluster_ = nullptr;
  }
  static CliResult as(const std::string& agent, const std::vector<std::string>& args) {
    return run_stig(cluster_->all_endpoints(), agent, args);
  }
  static CliResult at(int node, const std::string& agent, const std::vector<std::string>& args) {
    return run_stig(cluster_->endpoint(node), agent, args);
  }
  static ProcessCluster* cluster_;
};

ProcessCluster* AclCli::cluster_ = nullptr;

TEST_F(AclCli, WritesOutsideTheGrantsExit5AndWriteNothingOnEveryNode) {
  for (int node = 0; node < 3; ++node) {
    // The grant reaches each node when it applies the entry.
    ASSERT_TRUE(eventually([&] { return at(node, "bob", {"get", "orders/probe"}).status == 0; }))
        << "node " << node << " never applied the grant";
    const std::string key = "stock/" + std::to_string(node);
    const auto refused = at(node, "bob", {"put", key, "5"});
    EXPECT_EQ(refused.status, 5) << describe(refused);
    EXPECT_EQ(lines(refused.err), 1u) << describe(refused);
    EXPECT_NE(refused.err.find("agent 'bob' may not write '" + key + "'"), std::string::npos) << describe(refused);
    const auto strong = at(node, "bob", {"strong", "put", key, "5"});
    EXPECT_EQ(strong.status, 5) << describe(strong);

    const auto ok = at(node, "bob", {"put", "orders/" + std::to_string(node), "new"});
    EXPECT_EQ(ok.status, 0) << describe(ok);
  }
  ASSERT_TRUE(cluster_->wait_converged());
  for (int node = 0; node < 3; ++node) {
    for (int k = 0; k < 3; ++k) {
      const auto lazy = at(node, "admin", {"--json", "get", "stock/" + std::to_string(k)});
      ASSERT_EQ(lazy.status, 0) << describe(lazy);
      EXPECT_EQ(json::parse(lazy.out)["values"].size(), 0u) << "node " << node << ": " << lazy.out;
      const auto written = at(node, "admin", {"--json", "get", "orders/" + std::to_string(k)});
      ASSERT_EQ(written.status, 0) << describe(written);
      EXPECT_EQ(json::parse(written.out)["versions"][0]["modified_by"], "bob") << written.out;
    }
  }
  const auto strong = as("admin", {"--json", "strong", "get", "stock/0"});
  ASSERT_EQ(strong.status, 0) << describe(strong);
  EXPECT_TRUE(json::parse(strong.out)["value"].is_null()) << strong.out;
}

TEST_F(AclCli, OnlyAnAdminChangesRulesOrRunsAdminVerbs) {
  const auto grant = as("bob", {"acl", "grant", "agent:bob", "admin", ""});
  EXPECT_EQ(grant.status, 5) << describe(grant);
  EXPECT_NE(grant.err.find("may not change access rules"), std::string::npos) << describe(grant);
  EXPECT_EQ(as("bob", {"acl", "list"}).status, 5);
  const auto heal = at(0, "bob", {"admin", "heal"});
  EXPECT_EQ(heal.status, 5) << describe(heal);
  EXPECT_EQ(at(0, "admin", {"admin", "heal"}).status, 0);

  const auto list = as("admin", {"--json", "acl", "list"});
  ASSERT_EQ(list.status, 0) << describe(list);
  const json j = json::parse(list.out);
  ASSERT_EQ(j["rules"].size(), 1u) << list.out;
  EXPECT_EQ(j["rules"][0]["subject"], "agent:bob");
  EXPECT_EQ(j["rules"][0]["permission"], "write");
  EXPECT_EQ(j["rules"][0]["prefix"], "orders/");

  // Roles: carol reads everything through one, and loses it when unbound.
  ASSERT_EQ(as("admin", {"acl", "grant", "role:auditors", "read", ""}).status, 0);
  ASSERT_EQ(as("admin", {"acl", "bind", "carol", "auditors"}).status, 0);
  EXPECT_EQ(as("carol", {"strong", "get", "orders/1"}).status, 0);
  EXPECT_EQ(as("carol", {"strong", "put", "orders/1", "x"}).status, 5);
  ASSERT_EQ(as("admin", {"acl", "unbind", "carol", "auditors"}).status, 0);
  EXPECT_EQ(as("carol", {"strong", "get", "orders/1"}).status, 5);
  ASSERT_EQ(as("admin", {"acl", "revoke", "role:auditors", "read", ""}).status, 0);
  EXPECT_EQ(as("admin", {"acl", "revoke", "role:auditors", "read", ""}).status, 1) << "no such rule";
}

TEST_F(AclCli, RulesThatDoNotParseAreOneLineErrors) {
  for (const auto& args : std::vector<std::vector<std::string>>{{"acl", "grant", "bob", "write", "orders/"},
                                                               {"acl", "grant", "agent:", "write", "orders/"},
                                                               {"acl", "grant", "agent:bob", "rw", "orders/"},
                                                               {"acl", "revoke", "user:bob", "read", ""},
                                                               {"acl", "grant", "agent:bob", "write"},
                                                               {"acl", "bind", "carol"}}) {
    const auto r = as("admin", args);
    EXPECT_EQ(r.status, 2) << describe(r);
    EXPECT_EQ(lines(r.err), 1u) << describe(r);
    EXPECT_TRUE(r.out.empty()) << describe(r);
  }
  // Every node still serves.
  for (int node = 0; node < 3; ++node) EXPECT_TRUE(cluster_->wait_ready(node));
}

}  // namespace
}  // namespace stig::testing
