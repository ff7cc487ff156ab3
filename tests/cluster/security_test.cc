// Transport security end to end (docs/security.md): mutual TLS between real
// stigd processes, agent credentials, and what a node does with a peer or
// client that cannot prove who it is. Every wait is bounded.
#include <unistd.h>

#include <utility>  // before Asio (DESIGN.md toolchain notes)

#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>

#include <gtest/gtest.h>

#include <algorithm>
#include <csignal>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <thread>

#include "process_cluster.h"
#include "wire/envelope.h"
#include "wire/frame.h"

namespace stig::testing {
namespace {

namespace pb = stigmergy::v1;
namespace asio = boost::asio;
namespace ssl = boost::asio::ssl;
using namespace std::chrono_literals;

bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

// What a hand-driven TLS connection saw.
struct Probe {
  bool handshake_ok = false;   // from the client's side (TLS 1.3 finishes before the server checks our cert)
  bool closed = false;         // the node closed the connection (or refused the session)
  std::string error;           // the last error, if any
  std::optional<pb::Response> response;
};

// Connects to 127.0.0.1:port with TLS 1.3, trusting `ca`, presenting `cert`
// and `key` if given, WITHOUT the client library's own checks (so the node's
// are what is tested), sends `frame` and reads until a response, a close or
// `limit`.
Probe tls_probe(uint16_t port, const std::string& ca, const std::string& cert, const std::string& key,
                const std::string& frame, std::chrono::milliseconds limit = 5s) {
  Probe p;
  asio::io_context io;
  ssl::context ctx(ssl::context::tls_client);
  SSL_CTX_set_min_proto_version(ctx.native_handle(), TLS1_3_VERSION);
  boost::system::error_code ec;
  ctx.load_verify_file(ca, ec);
  if (!cert.empty()) {
    ctx.use_certificate_file(cert, ssl::context::pem, ec);
    ctx.use_private_key_file(key, ssl::context::pem, ec);
  }
  ctx.set_verify_mode(ssl::verify_peer);
  ssl::stream<asio::ip::tcp::socket> s(io, ctx);
  std::array<char, 4096> buf{};
  wire::FrameDecoder decoder(wire::kDefaultMaxFrameBytes);
  std::function<void()> read_more = [&] {
    s.async_read_some(asio::buffer(buf), [&](const boost::system::error_code& e, size_t n) {
      if (e) {
        p.closed = true;
        p.error = e.message();
        return;
      }
      decoder.feed(std::string_view(buf.data(), n));
      pb::Envelope env;
      if (decoder.next(env) && env.has_response()) {
        p.response = env.response();
        return;
      }
      read_more();
    });
  };
  s.next_layer().async_connect({asio::ip::make_address("127.0.0.1"), port}, [&](const boost::system::error_code& e) {
    if (e) {
      p.error = e.message();
      return;
    }
    s.async_handshake(ssl::stream_base::client, [&](const boost::system::error_code& h) {
      if (h) {
        p.closed = true;
        p.error = h.message();
        return;
      }
      p.handshake_ok = true;
      asio::async_write(s, asio::buffer(frame), [&](const boost::system::error_code& w, size_t) {
        if (w) {
          p.closed = true;
          p.error = w.message();
          return;
        }
        read_more();
      });
    });
  });
  io.run_for(limit);
  return p;
}

// These tests are about the transport: access rules (on by default with TLS)
// would refuse their agents, which have no grants; acl_cli_test and
// TlsAccessRulesBindToTheCredential below cover the rules.
const std::vector<std::string> kTransportOnly = {"--no-access-control"};

pb::Request put_request(const std::string& key, const std::string& agent) {
  pb::Request r;
  r.set_client_id("probe");
  r.set_seq(1);
  r.set_agent(agent);
  r.mutable_put()->set_key(key);
  r.mutable_put()->set_value("v");
  return r;
}

std::string certs(const ProcessCluster& c, const std::string& name) { return c.certs_dir() + "/" + name; }

// --- the happy path and modified_by ---------------------------------------------

TEST(Security, TlsClusterReplicatesAndRecordsTheCredentialsAgent) {
  ProcessCluster cluster(3, kTransportOnly, true, Transport::kTls);
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(cluster.wait_all_up(i)) << cluster.read_log(i);
  // No agent named: the client acts as its certificate's agent.
  stigmergy::ClientOptions o;
  o.endpoints = {cluster.endpoint(0)};
  o.tls = cluster.agent_tls("alice");
  auto alice = stigmergy::Client::create(o);
  ASSERT_TRUE(alice) << alice.error().to_string();
  EXPECT_EQ(alice->agent(), "alice");
  auto put = alice->put("order-1", "packed");
  ASSERT_TRUE(put) << put.error().to_string();
  auto n3 = cluster.client(2, "support");
  ASSERT_TRUE(eventually([&] {
    auto got = n3.get("order-1");
    return got && got->values() == std::vector<std::string>{"packed"};
  }));
  EXPECT_EQ(n3.get("order-1")->versions.at(0).modified_by, "alice");
  EXPECT_NE(cluster.read_log(0).find("TLS 1.3"), std::string::npos);
}

// Raft, partitions and anti-entropy over TLS peer links: a strong write
// records the credential's agent, and a healed partition converges.
TEST(Security, StrongPathAndPartitionHealWorkOverTls) {
  ProcessCluster cluster(3, kTransportOnly, true, Transport::kTls);
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(cluster.wait_all_up(i)) << cluster.read_log(i);
  stigmergy::ClientOptions o;
  o.endpoints = {cluster.all_endpoints()};
  o.tls = cluster.agent_tls("warehouse");
  auto c = stigmergy::Client::create(o);
  ASSERT_TRUE(c) << c.error().to_string();
  auto put = c->strong_put("stock:sku-1", "7");
  ASSERT_TRUE(put) << put.error().to_string();
  auto got = c->strong_get("stock:sku-1");
  ASSERT_TRUE(got) << got.error().to_string();
  EXPECT_EQ(got->kv.modified_by, "warehouse");

  auto n3 = cluster.client(2, "admin");
  ASSERT_TRUE(n3.admin_partition({"n1", "n2"}));
  ASSERT_TRUE(n3.put("left", "n3"));
  ASSERT_TRUE(cluster.client(0).put("right", "n1"));
  ASSERT_TRUE(n3.admin_heal());
  EXPECT_TRUE(cluster.wait_converged()) << cluster.read_log(2);
  auto left = cluster.client(0).get("left");
  ASSERT_TRUE(left);
  ASSERT_EQ(left->versions.size(), 1u);
  EXPECT_EQ(left->versions[0].modified_by, "admin");
}

TEST(Security, ModifiedByCannotBeSpoofed) {
  ProcessCluster cluster(1, kTransportOnly, true, Transport::kTls);
  // alice's credential claiming to be bob: refused, nothing written.
  stigmergy::ClientOptions o;
  o.endpoints = {cluster.endpoint(0)};
  o.tls = cluster.agent_tls("alice");
  o.agent = "bob";
  auto c = stigmergy::Client::create(o);
  ASSERT_TRUE(c) << c.error().to_string();
  auto put = c->put("order-2", "cancelled");
  ASSERT_FALSE(put);
  EXPECT_EQ(put.error().code, stigmergy::ErrorCode::kPermissionDenied) << put.error().to_string();
  EXPECT_TRUE(contains(put.error().message, "agent 'alice' may not act as 'bob' (needs admin)"))
      << put.error().message;
  auto got = cluster.client(0, "alice").get("order-2");
  ASSERT_TRUE(got);
  EXPECT_TRUE(got->versions.empty());

  // The same on the raw protocol (no client library in between).
  auto raw = tls_probe(cluster.port(0), cluster.ca_file(), certs(cluster, "agent-alice.crt"),
                       certs(cluster, "agent-alice.key"), request_frame(put_request("order-2", "bob")));
  ASSERT_TRUE(raw.response) << raw.error;
  EXPECT_EQ(raw.response->error(), pb::PERMISSION_DENIED);

  // The admin agent may act for another (the README's `stig --agent fulfilment`
  // with local-cluster's admin credential): recorded as that agent.
  o.tls = cluster.agent_tls("admin");
  o.agent = "fulfilment";
  auto admin = stigmergy::Client::create(o);
  ASSERT_TRUE(admin);
  auto ok = admin->put("order-3", "shipped");
  ASSERT_TRUE(ok) << ok.error().to_string();
  EXPECT_EQ(cluster.client(0, "alice").get("order-3")->versions.at(0).modified_by, "fulfilment");

  // The CLI with alice's credential and --agent bob: one line, exit 5 (denied).
  auto args = cluster.cli_tls_args("alice");
  args.insert(args.end(), {"put", "order-4", "x"});
  auto cli = run_stig(cluster.endpoint(0), "bob", args);
  EXPECT_EQ(cli.status, 5) << cli.err;
  EXPECT_TRUE(contains(cli.err, "may not act as 'bob'")) << cli.err;
  EXPECT_EQ(std::count(cli.err.begin(), cli.err.end(), '\n'), 1) << cli.err;
}

// With TLS, access rules are on by default and apply to the credential's
// agent: alice granted write on orders/ writes there as herself, is refused
// elsewhere (exit 5 from the CLI) with nothing written, and cannot act as
// another agent to get round her rules.
TEST(Security, TlsAccessRulesBindToTheCredential) {
  ProcessCluster cluster(1, {}, true, Transport::kTls);
  auto admin = cluster.client(0, "admin");
  ASSERT_TRUE(admin.acl_grant({"agent:alice", stigmergy::AclPermission::kWrite, "orders/"}));

  auto alice = cluster.client(0, "alice");
  auto ok = alice.put("orders/1", "packed");
  ASSERT_TRUE(ok) << ok.error().to_string();
  auto refused = alice.put("stock/1", "12");
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code, stigmergy::ErrorCode::kPermissionDenied);
  EXPECT_TRUE(contains(refused.error().message, "agent 'alice' may not write 'stock/1'")) << refused.error().message;

  auto args = cluster.cli_tls_args("alice");
  args.insert(args.end(), {"put", "stock/2", "3"});
  auto cli = run_stig(cluster.endpoint(0), "alice", args);
  EXPECT_EQ(cli.status, 5) << cli.err;
  EXPECT_EQ(std::count(cli.err.begin(), cli.err.end(), '\n'), 1) << cli.err;

  // An agent that is not an admin cannot change the rules either.
  auto grab = alice.acl_grant({"agent:alice", stigmergy::AclPermission::kWrite, ""});
  ASSERT_FALSE(grab);
  EXPECT_EQ(grab.error().code, stigmergy::ErrorCode::kPermissionDenied);

  auto written = admin.get("orders/1");
  ASSERT_TRUE(written) << written.error().to_string();
  ASSERT_EQ(written->versions.size(), 1u);
  EXPECT_EQ(written->versions[0].modified_by, "alice");
  for (const char* key : {"stock/1", "stock/2"}) {
    auto none = admin.get(key);
    ASSERT_TRUE(none) << none.error().to_string();
    EXPECT_TRUE(none->versions.empty()) << key;
  }
}

// --- clients that cannot prove who they are --------------------------------------

TEST(Security, ClientWithoutCredentialsIsRefusedWithAClearError) {
  ProcessCluster cluster(1, kTransportOnly, true, Transport::kTls);
  // TLS, the right CA, no certificate.
  stigmergy::ClientOptions o;
  o.endpoints = {cluster.endpoint(0)};
  o.tls.ca_file = cluster.ca_file();
  o.timeout = 3s;
  auto c = stigmergy::Client::create(o);
  ASSERT_TRUE(c) << c.error().to_string();
  const auto t0 = std::chrono::steady_clock::now();
  auto put = c->put("k", "v");
  ASSERT_FALSE(put);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 4s);
  EXPECT_TRUE(contains(put.error().message, "requires a client certificate")) << put.error().message;
  EXPECT_TRUE(contains(put.error().message, "STIG_CERT")) << put.error().message;
  EXPECT_FALSE(contains(put.error().message, "may or may not have been applied")) << put.error().message;

  // Plain TCP against a TLS node: told so in plain text, not left hanging.
  stigmergy::ClientOptions plain;
  plain.endpoints = {cluster.endpoint(0)};
  plain.timeout = 3s;
  auto p = stigmergy::Client::create(plain);
  ASSERT_TRUE(p);
  auto pput = p->put("k", "v");
  ASSERT_FALSE(pput);
  EXPECT_TRUE(contains(pput.error().message, "requires TLS")) << pput.error().message;

  // The CLI: one line naming what to set.
  auto cli = run_stig(cluster.endpoint(0), "x", {"--ca", cluster.ca_file(), "get", "k"});
  EXPECT_EQ(cli.status, 1);
  EXPECT_TRUE(contains(cli.err, "STIG_CERT")) << cli.err;
  EXPECT_EQ(std::count(cli.err.begin(), cli.err.end(), '\n'), 1) << cli.err;

  // A node certificate is not an agent credential.
  auto node_as_client = tls_probe(cluster.port(0), cluster.ca_file(), certs(cluster, "node-n1.crt"),
                                  certs(cluster, "node-n1.key"), request_frame(put_request("k", "")));
  ASSERT_TRUE(node_as_client.response) << node_as_client.error;
  EXPECT_EQ(node_as_client.response->error(), pb::PERMISSION_DENIED);
  EXPECT_TRUE(contains(node_as_client.response->error_message(), "not an agent credential"));
  EXPECT_TRUE(cluster.running(0));
}

TEST(Security, ExpiredOrForeignAgentCredentialIsRefused) {
  ProcessCluster cluster(1, kTransportOnly, true, Transport::kTls);
  cluster.run_cert_tool({"create-agent", "--name", "old", "--days", "-1"});
  // The client library names the problem before connecting...
  stigmergy::ClientOptions o;
  o.endpoints = {cluster.endpoint(0)};
  o.tls = {cluster.ca_file(), certs(cluster, "agent-old.crt"), certs(cluster, "agent-old.key")};
  auto c = stigmergy::Client::create(o);
  ASSERT_FALSE(c);
  EXPECT_TRUE(contains(c.error().message, "expired")) << c.error().message;
  // ...and the node refuses it at the handshake anyway.
  auto raw = tls_probe(cluster.port(0), cluster.ca_file(), certs(cluster, "agent-old.crt"),
                       certs(cluster, "agent-old.key"), request_frame(put_request("k", "old")));
  EXPECT_FALSE(raw.response) << raw.response->DebugString();
  EXPECT_TRUE(raw.closed);
  EXPECT_TRUE(eventually([&] { return contains(cluster.read_log(0), "certificate has expired"); }, 3s))
      << cluster.read_log(0);

  // A credential from another CA.
  const std::string other = cluster.dir() + "/other-ca";
  std::string out, err;
  ASSERT_EQ(run_command({std::string(STIG_BIN_DIR) + "/stig", "cert", "create-ca", "--dir", other}, &out, &err), 0)
      << err;
  ASSERT_EQ(run_command({std::string(STIG_BIN_DIR) + "/stig", "cert", "create-agent", "--name", "mallory", "--dir",
                         other},
                        &out, &err),
            0)
      << err;
  auto foreign = tls_probe(cluster.port(0), cluster.ca_file(), other + "/agent-mallory.crt",
                           other + "/agent-mallory.key", request_frame(put_request("k", "mallory")));
  EXPECT_FALSE(foreign.response);
  EXPECT_TRUE(foreign.closed);
  auto cli = run_stig(cluster.endpoint(0), "mallory",
                      {"--ca", cluster.ca_file(), "--cert", other + "/agent-mallory.crt", "--key",
                       other + "/agent-mallory.key", "get", "k"});
  EXPECT_EQ(cli.status, 2) << cli.err;  // refused by the client before connecting
  EXPECT_TRUE(contains(cli.err, "not valid for the CA")) << cli.err;
  auto ok = cluster.client(0, "alice").put("k", "v");
  EXPECT_TRUE(ok) << ok.error().to_string();
}

// The path of a revocation list made by another CA: no node of `cluster` may take it.
std::string foreign_revocation_list(ProcessCluster& cluster) {
  const std::string other = cluster.dir() + "/other-ca";
  const std::string stig = std::string(STIG_BIN_DIR) + "/stig";
  std::string out, err;
  EXPECT_EQ(run_command({stig, "cert", "create-ca", "--dir", other}, &out, &err), 0) << err;
  EXPECT_EQ(run_command({stig, "cert", "crl", "--dir", other}, &out, &err), 0) << err;
  return other + "/ca.crl";
}

TEST(Security, RevokedAgentCredentialIsRefusedAfterARestart) {
  ProcessCluster cluster(1, kTransportOnly, true, Transport::kTls);
  auto eve = cluster.client(0, "eve");
  auto before = eve.put("k", "by eve");
  ASSERT_TRUE(before) << before.error().to_string();
  cluster.run_cert_tool({"crl", "--revoke", certs(cluster, "agent-eve.crt")});
  cluster.stop(0);
  cluster.start(0);
  ASSERT_TRUE(cluster.wait_ready(0)) << cluster.read_log(0);
  auto again = cluster.client(0, "eve").put("k", "by eve again");
  ASSERT_FALSE(again);
  EXPECT_TRUE(contains(again.error().message, "revoked")) << again.error().message;
  EXPECT_TRUE(eventually([&] { return contains(cluster.read_log(0), "certificate revoked"); }, 3s))
      << cluster.read_log(0);
  auto others = cluster.client(0, "alice").put("k", "by alice");
  EXPECT_TRUE(others) << others.error().to_string();
  // A list that is not from the CA is refused at start-up.
  const std::string foreign = foreign_revocation_list(cluster);
  std::string out, err;
  const int st = run_command({std::string(STIG_BIN_DIR) + "/stigd", "--id", "n1", "--listen",
                              "127.0.0.1:" + std::to_string(free_port()), "--data-dir", cluster.dir() + "/crl",
                              "--tls-ca", cluster.ca_file(), "--tls-cert", certs(cluster, "node-n1.crt"), "--tls-key",
                              certs(cluster, "node-n1.key"), "--tls-crl", foreign},
                             &out, &err, 10s);
  EXPECT_EQ(st, 1) << err;
  EXPECT_TRUE(contains(err, "was not signed by the CA")) << err;
  EXPECT_EQ(std::count(err.begin(), err.end(), '\n'), 1) << err;
}

TEST(Security, SighupReloadsTheRevocationListAndClosesRevokedConnections) {
  ProcessCluster cluster(1, kTransportOnly, true, Transport::kTls);
  auto eve = cluster.client(0, "eve");
  auto before = eve.put("k", "by eve");  // eve's connection stays open
  ASSERT_TRUE(before) << before.error().to_string();
  cluster.run_cert_tool({"crl", "--revoke", certs(cluster, "agent-eve.crt")});
  ASSERT_EQ(::kill(cluster.pid(0), SIGHUP), 0);
  ASSERT_TRUE(eventually([&] { return contains(cluster.read_log(0), "reloaded the revocation list"); }, 5s))
      << cluster.read_log(0);
  const std::string log = cluster.read_log(0);
  EXPECT_TRUE(contains(log, "(1 revoked certificate(s)); closed 1 connection(s)")) << log;
  EXPECT_TRUE(contains(log, "its certificate ('agent:eve') was revoked")) << log;
  EXPECT_FALSE(eve.put("k", "on the connection made before the revocation"));
  auto fresh = cluster.client(0, "eve").put("k", "by eve again");
  ASSERT_FALSE(fresh);
  EXPECT_TRUE(contains(fresh.error().message, "revoked")) << fresh.error().message;
  auto others = cluster.client(0, "alice").put("k", "by alice");
  EXPECT_TRUE(others) << others.error().to_string();

  // A list not signed by the cluster's CA: the one in force stays.
  std::filesystem::copy_file(foreign_revocation_list(cluster), certs(cluster, "ca.crl"),
                             std::filesystem::copy_options::overwrite_existing);
  ASSERT_EQ(::kill(cluster.pid(0), SIGHUP), 0);
  EXPECT_TRUE(eventually([&] { return contains(cluster.read_log(0), "kept the revocation list in force"); }, 5s))
      << cluster.read_log(0);
  EXPECT_TRUE(contains(cluster.read_log(0), "was not signed by the CA")) << cluster.read_log(0);
  auto still = cluster.client(0, "eve").put("k", "by eve once more");
  EXPECT_FALSE(still);
  EXPECT_TRUE(cluster.client(0, "alice").put("k", "by alice again"));
  EXPECT_TRUE(cluster.running(0));
}

// --- peers ------------------------------------------------------------------------

TEST(Security, PeerWithoutAValidCertificateDoesNotJoin) {
  ProcessCluster cluster(3, kTransportOnly, true, Transport::kTls);
  ASSERT_TRUE(cluster.wait_all_up(0));
  cluster.stop(2);
  // A rogue n3: a certificate for node:n3 from another CA, trusting that CA.
  const std::string other = cluster.dir() + "/other-ca";
  std::string out, err;
  for (std::vector<std::string> args : {std::vector<std::string>{"create-ca"},
                                        std::vector<std::string>{"create-node", "--id", "n3"}}) {
    std::vector<std::string> argv = {std::string(STIG_BIN_DIR) + "/stig", "cert"};
    argv.insert(argv.end(), args.begin(), args.end());
    argv.insert(argv.end(), {"--dir", other});
    ASSERT_EQ(run_command(argv, &out, &err), 0) << err;
  }
  // With the cluster's CA as its trust anchor, stigd refuses to start with it.
  cluster.override_tls_files(2, cluster.ca_file(), other + "/node-n3.crt", other + "/node-n3.key");
  cluster.start(2);
  EXPECT_TRUE(eventually([&] { return contains(cluster.read_log(2), "is not valid for the CA"); }, 5s))
      << cluster.read_log(2);
  cluster.kill9(2);
  // Trusting its own CA it starts, dials n1 and n2 and is refused by both;
  // it never becomes a peer.
  cluster.override_tls_files(2, other + "/ca.crt", other + "/node-n3.crt", other + "/node-n3.key");
  const size_t mark = cluster.read_log(0).size();
  cluster.start(2);
  ASSERT_TRUE(eventually([&] { return contains(cluster.read_log(2), "listening on"); }, 10s)) << cluster.read_log(2);
  EXPECT_TRUE(eventually([&] { return contains(cluster.read_log(0), "TLS handshake failed"); }, 10s))
      << cluster.read_log(0);
  auto n3_state = [&](int at) {
    auto status = cluster.client(at).cluster_status();
    if (status)
      for (const auto& n : status->nodes)
        if (n.id == "n3") return n.state;
    return std::string("?");
  };
  EXPECT_TRUE(eventually([&] { return n3_state(0) == "down" && n3_state(1) == "down"; }, 20s))
      << n3_state(0) << " " << n3_state(1);
  std::this_thread::sleep_for(1s);
  EXPECT_EQ(n3_state(0), "down");
  EXPECT_FALSE(contains(cluster.read_log(0).substr(mark), "inbound link from peer n3 (")) << cluster.read_log(0);
  // The process holding the rogue key, as a raw peer: refused at the handshake.
  auto rogue = tls_probe(cluster.port(0), cluster.ca_file(), other + "/node-n3.crt", other + "/node-n3.key",
                         hello_frame("n3"));
  EXPECT_TRUE(rogue.closed) << rogue.error;
  EXPECT_FALSE(rogue.response);
  // The rest of the cluster still works.
  auto put = cluster.client(0).put("k", "v");
  EXPECT_TRUE(put) << put.error().to_string();
}

TEST(Security, PeerCannotSpeakAsAnotherNode) {
  ProcessCluster cluster(3, kTransportOnly, true, Transport::kTls);
  ASSERT_TRUE(cluster.wait_all_up(0));
  // n3's genuine certificate, a hello claiming n2: closed, logged.
  auto spoof = tls_probe(cluster.port(0), cluster.ca_file(), certs(cluster, "node-n3.crt"),
                         certs(cluster, "node-n3.key"), hello_frame("n2"));
  EXPECT_TRUE(spoof.closed) << spoof.error;
  EXPECT_TRUE(eventually(
      [&] { return contains(cluster.read_log(0), "hello as 'n2' but its certificate is 'node:n3'"); }, 3s))
      << cluster.read_log(0);
  // A node started as n2 with n3's certificate does not start.
  std::string out, err;
  const std::string stigd = std::string(STIG_BIN_DIR) + "/stigd";
  const int st = run_command({stigd, "--id", "n2", "--listen", "127.0.0.1:" + std::to_string(free_port()),
                              "--data-dir", cluster.dir() + "/spoof", "--tls-ca", cluster.ca_file(), "--tls-cert",
                              certs(cluster, "node-n3.crt"), "--tls-key", certs(cluster, "node-n3.key")},
                             &out, &err, 10s);
  EXPECT_EQ(st, 1) << err;
  EXPECT_TRUE(contains(err, "is for 'node:n3', not this node")) << err;
  EXPECT_EQ(std::count(err.begin(), err.end(), '\n'), 1) << err;
  // The cluster is unaffected.
  auto ok = cluster.client(0).put("k", "v");
  EXPECT_TRUE(ok) << ok.error().to_string();
}

TEST(Security, NodeRestartedWithANewCertificateRejoins) {
  ProcessCluster cluster(3, kTransportOnly, true, Transport::kTls);
  ASSERT_TRUE(cluster.wait_all_up(0));
  cluster.stop(1);
  cluster.reissue_node_cert(1);
  cluster.start(1);
  ASSERT_TRUE(cluster.wait_ready(1)) << cluster.read_log(1);
  ASSERT_TRUE(cluster.wait_all_up(0)) << cluster.read_log(0);
  ASSERT_TRUE(cluster.wait_all_up(1)) << cluster.read_log(1);
  auto put = cluster.client(0).put("after-rotation", "yes");
  ASSERT_TRUE(put) << put.error().to_string();
  auto n2 = cluster.client(1);
  EXPECT_TRUE(eventually([&] {
    auto got = n2.get("after-rotation");
    return got && got->values() == std::vector<std::string>{"yes"};
  }));
}

// --- bad input at the transport -----------------------------------------------

TEST(Security, StalledHandshakeIsClosedWithinTheBoundAndTheNodeKeepsServing) {
  ProcessCluster cluster(1, {"--tls-handshake-timeout-ms", "1000", "--no-access-control"}, true, Transport::kTls);
  const int fd = connect_raw(cluster.port(0), 10s);
  ASSERT_GE(fd, 0);
  const auto t0 = std::chrono::steady_clock::now();
  // Meanwhile the node serves others.
  auto put = cluster.client(0).put("k", "v");
  EXPECT_TRUE(put) << put.error().to_string();
  bool closed = false;
  read_until_close(fd, &closed);
  const auto took = std::chrono::steady_clock::now() - t0;
  ::close(fd);
  EXPECT_TRUE(closed);
  EXPECT_LT(took, 3s);
  EXPECT_GE(took, 900ms);
  EXPECT_TRUE(eventually([&] { return contains(cluster.read_log(0), "no TLS handshake within 1000 ms"); }, 2s))
      << cluster.read_log(0);
}

TEST(Security, GarbageInsteadOfAClientHelloDoesNotCrashTheNode) {
  ProcessCluster cluster(1, kTransportOnly, true, Transport::kTls);
  // Looks like a TLS record, then is not one.
  std::string junk = "\x16\x03\x01\x00\x20";
  for (int i = 0; i < 200; ++i) junk.push_back(static_cast<char>((i * 37) ^ 0x5a));
  for (int round = 0; round < 5; ++round) {
    const int fd = connect_raw(cluster.port(0), 5s);
    ASSERT_GE(fd, 0);
    send_all(fd, junk);
    bool closed = false;
    read_until_close(fd, &closed);
    ::close(fd);
    EXPECT_TRUE(closed);
  }
  // A plaintext frame gets a plaintext answer saying what is needed.
  const int fd = connect_raw(cluster.port(0), 5s);
  ASSERT_GE(fd, 0);
  send_all(fd, request_frame(put_request("k", "x")));
  auto reply = first_response(read_until_close(fd));
  ::close(fd);
  ASSERT_TRUE(reply);
  EXPECT_EQ(reply->error(), pb::PERMISSION_DENIED);
  EXPECT_TRUE(contains(reply->error_message(), "requires TLS"));
  EXPECT_TRUE(cluster.running(0));
  auto put = cluster.client(0).put("k", "v");
  EXPECT_TRUE(put) << put.error().to_string();
}

TEST(Security, TlsClientAgainstAPlaintextNodeGetsAClearError) {
  ProcessCluster cluster(1);  // --insecure-plaintext
  EXPECT_TRUE(eventually([&] { return contains(cluster.read_log(0), "running WITHOUT TLS"); }, 2s));
  ProcessCluster tls_side(1, kTransportOnly, true, Transport::kTls);  // only for its CA and credentials
  stigmergy::ClientOptions o;
  o.endpoints = {cluster.endpoint(0)};
  o.tls = tls_side.agent_tls("alice");
  o.timeout = 3s;
  auto c = stigmergy::Client::create(o);
  ASSERT_TRUE(c);
  auto put = c->put("k", "v");
  ASSERT_FALSE(put);
  EXPECT_TRUE(contains(put.error().message, "does not speak TLS")) << put.error().message;
}

// --- start-up: bad files are one line and a non-zero exit --------------------------

TEST(Security, StartupRefusesMissingOrBadTlsFiles) {
  ProcessCluster cluster(1, kTransportOnly, true, Transport::kTls);  // for a CA and certificates
  cluster.run_cert_tool({"create-node", "--id", "old", "--days", "-1"});
  cluster.run_cert_tool({"create-node", "--id", "n9"});
  const std::string garbage = cluster.dir() + "/garbage.pem";
  std::ofstream(garbage) << "-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n";
  const std::string stigd = std::string(STIG_BIN_DIR) + "/stigd";
  auto start = [&](const std::string& id, std::vector<std::string> tls, std::string* err) {
    std::vector<std::string> argv = {stigd, "--id", id, "--listen", "127.0.0.1:" + std::to_string(free_port()),
                                     "--data-dir", cluster.dir() + "/d-" + id};
    argv.insert(argv.end(), tls.begin(), tls.end());
    std::string out;
    return run_command(argv, &out, err, 10s);
  };
  const std::string ca = cluster.ca_file(), crt = certs(cluster, "node-n9.crt"), key = certs(cluster, "node-n9.key");
  struct Case {
    std::string id;
    std::vector<std::string> flags;
    int status;
    std::string says;
  };
  const std::vector<Case> cases = {
      {"n9", {}, 2, "--insecure-plaintext"},
      {"n9", {"--tls-ca", ca, "--tls-cert", crt}, 2, "--tls-key"},
      {"n9", {"--tls-ca", ca, "--tls-cert", crt, "--tls-key", key, "--insecure-plaintext"}, 2, "contradict"},
      {"n9", {"--tls-ca", ca, "--tls-cert", cluster.dir() + "/missing.crt", "--tls-key", key}, 1, "cannot read"},
      {"n9", {"--tls-ca", ca, "--tls-cert", garbage, "--tls-key", key}, 1, "not a PEM certificate"},
      {"n9", {"--tls-ca", ca, "--tls-cert", crt, "--tls-key", certs(cluster, "node-n1.key")}, 1, "does not belong"},
      {"n9", {"--tls-ca", garbage, "--tls-cert", crt, "--tls-key", key}, 1, "--tls-ca"},
      {"old",
       {"--tls-ca", ca, "--tls-cert", certs(cluster, "node-old.crt"), "--tls-key", certs(cluster, "node-old.key")},
       1,
       "certificate has expired"},
  };
  for (const auto& c : cases) {
    std::string err;
    const auto t0 = std::chrono::steady_clock::now();
    EXPECT_EQ(start(c.id, c.flags, &err), c.status) << err;
    EXPECT_LT(std::chrono::steady_clock::now() - t0, 5s);
    EXPECT_TRUE(contains(err, c.says)) << "expected '" << c.says << "' in: " << err;
    EXPECT_EQ(std::count(err.begin(), err.end(), '\n'), 1) << err;
  }
}

}  // namespace
}  // namespace stig::testing
