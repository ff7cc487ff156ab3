// The transport's identity rules without sockets: certificate names, and
// stigd's transport and access-control flags (the core binds agents: acl_test).
#include <gtest/gtest.h>

#include <sstream>

#include "node/options.h"
#include "node/tls.h"

namespace stig::node {
namespace {

TEST(TransportSecurity, CommonNamesNameANodeOrAnAgent) {
  EXPECT_TRUE(identity_from_common_name("node:n2").is_node("n2"));
  EXPECT_FALSE(identity_from_common_name("node:n2").is_node("n3"));
  EXPECT_FALSE(identity_from_common_name("node:n2").is_agent());
  const auto a = identity_from_common_name("agent:fulfilment");
  EXPECT_TRUE(a.is_agent());
  EXPECT_EQ(a.name, "fulfilment");
  EXPECT_FALSE(a.is_node("fulfilment"));
  for (const char* bad : {"", "n2", "node:", "agent:", "Node:n2", "agent:bad\nname", "admin"})
    EXPECT_EQ(identity_from_common_name(bad).kind, CertIdentity::Kind::kNone) << bad;
}


ParseOutcome parse(std::vector<const char*> extra, std::string* err) {
  std::vector<const char*> argv = {"stigd", "--id", "n1", "--listen", "127.0.0.1:7101", "--data-dir", "/tmp/x"};
  argv.insert(argv.end(), extra.begin(), extra.end());
  std::ostringstream out, e;
  auto outcome = parse_options(static_cast<int>(argv.size()), argv.data(), out, e);
  *err = e.str();
  return outcome;
}

TEST(TransportSecurity, StigdNeedsTlsFilesOrAnExplicitPlaintextFlag) {
  std::string err;
  EXPECT_FALSE(parse({}, &err).options);
  EXPECT_NE(err.find("--insecure-plaintext"), std::string::npos) << err;
  EXPECT_NE(err.find("--tls-ca"), std::string::npos) << err;
  auto plain = parse({"--insecure-plaintext"}, &err);
  ASSERT_TRUE(plain.options) << err;
  EXPECT_TRUE(plain.options->insecure_plaintext);
  EXPECT_EQ(plain.options->config.admin_agent, "admin");
  EXPECT_FALSE(plain.options->config.access_control);  // claimed names: off unless asked for
  EXPECT_TRUE(parse({"--insecure-plaintext", "--access-control"}, &err).options->config.access_control);
  auto tls = parse({"--tls-ca", "ca.crt", "--tls-cert", "n1.crt", "--tls-key", "n1.key", "--admin-agent", "root"},
                   &err);
  ASSERT_TRUE(tls.options) << err;
  EXPECT_EQ(tls.options->tls_cert, "n1.crt");
  EXPECT_EQ(tls.options->config.admin_agent, "root");
  EXPECT_TRUE(tls.options->config.access_control);  // on by default with TLS
  EXPECT_FALSE(parse({"--tls-ca", "ca.crt", "--tls-cert", "n1.crt", "--tls-key", "n1.key", "--no-access-control"}, &err)
                   .options->config.access_control);
  EXPECT_FALSE(parse({"--insecure-plaintext", "--access-control", "--no-access-control"}, &err).options);
  EXPECT_NE(err.find("contradict"), std::string::npos) << err;
  EXPECT_FALSE(parse({"--tls-ca", "ca.crt"}, &err).options);
  EXPECT_NE(err.find("--tls-cert --tls-key"), std::string::npos) << err;
  EXPECT_FALSE(parse({"--tls-ca", "ca.crt", "--tls-cert", "a", "--tls-key", "b", "--insecure-plaintext"}, &err).options);
  EXPECT_NE(err.find("contradict"), std::string::npos) << err;
}

}  // namespace
}  // namespace stig::node
