// wire::TlsSession driven message by message: two sessions in one process,
// bytes moved by hand, certificates made in memory. No sockets.
#include <gtest/gtest.h>

#include <boost/asio/error.hpp>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <memory>
#include <random>
#include <string>

#include "wire/tls_session.h"

namespace stig::wire {
namespace {

struct KeyFree { void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); } };
struct CertFree { void operator()(X509* x) const { X509_free(x); } };
struct CtxFree { void operator()(SSL_CTX* c) const { SSL_CTX_free(c); } };
using Key = std::unique_ptr<EVP_PKEY, KeyFree>;
using Cert = std::unique_ptr<X509, CertFree>;
using Ctx = std::unique_ptr<SSL_CTX, CtxFree>;

// A P-256 key and a certificate named `cn`, signed by `issuer` (self-signed
// when null): what `stig cert` makes, without files.
struct Credential {
  Key key;
  Cert cert;
};

Credential make_credential(const std::string& cn, const Credential* issuer) {
  Credential c;
  c.key.reset(EVP_EC_gen("P-256"));
  c.cert.reset(X509_new());
  X509* x = c.cert.get();
  X509_set_version(x, 2);
  static long serial = 1;
  ASN1_INTEGER_set(X509_get_serialNumber(x), serial++);
  X509_gmtime_adj(X509_getm_notBefore(x), -60);
  X509_gmtime_adj(X509_getm_notAfter(x), 3600);
  X509_set_pubkey(x, c.key.get());
  X509_NAME* name = X509_get_subject_name(x);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, reinterpret_cast<const unsigned char*>(cn.c_str()), -1, -1, 0);
  X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer->cert.get()) : name);
  if (!issuer) {  // a CA
    X509V3_CTX v3;
    X509V3_set_ctx(&v3, x, x, nullptr, nullptr, 0);
    X509_EXTENSION* bc = X509V3_EXT_conf_nid(nullptr, &v3, NID_basic_constraints, "critical,CA:TRUE");
    X509_add_ext(x, bc, -1);
    X509_EXTENSION_free(bc);
  }
  X509_sign(x, issuer ? issuer->key.get() : c.key.get(), EVP_sha256());
  return c;
}

Ctx make_context(const Credential& self, const Credential& ca, bool server) {
  Ctx ctx(SSL_CTX_new(TLS_method()));
  SSL_CTX_set_min_proto_version(ctx.get(), TLS1_3_VERSION);
  SSL_CTX_use_certificate(ctx.get(), self.cert.get());
  SSL_CTX_use_PrivateKey(ctx.get(), self.key.get());
  X509_STORE_add_cert(SSL_CTX_get_cert_store(ctx.get()), ca.cert.get());
  SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nullptr);
  if (server) SSL_CTX_set_num_tickets(ctx.get(), 0);
  return ctx;
}

// Moves what `from` has to send into `to`, `chunk` bytes at a time (0: all).
void pump(TlsSession& from, TlsSession& to, size_t chunk = 0) {
  std::string bytes;
  bytes.swap(from.output());
  for (size_t i = 0; i < bytes.size(); i += chunk ? chunk : bytes.size())
    to.feed(bytes.data() + i, std::min(bytes.size() - i, chunk ? chunk : bytes.size()));
}

class TlsSessionTest : public ::testing::Test {
 protected:
  TlsSessionTest()
      : ca_(make_credential("stig test CA", nullptr)),
        node_(make_credential("node:n1", &ca_)),
        agent_(make_credential("agent:alice", &ca_)),
        server_ctx_(make_context(node_, ca_, true)),
        client_ctx_(make_context(agent_, ca_, false)) {}

  // Runs the handshake to its end; false if either side failed.
  static bool connect(TlsSession& client, TlsSession& server, size_t chunk = 0) {
    boost::system::error_code ec;
    for (int round = 0; round < 10; ++round) {
      client.handshake(ec);
      if (ec) return false;
      pump(client, server, chunk);
      server.handshake(ec);
      if (ec) return false;
      pump(server, client, chunk);
      if (client.handshake_done() && server.handshake_done()) return true;
    }
    return false;
  }

  static std::string read_all(TlsSession& s, boost::system::error_code& ec) {
    std::string plain;
    char buf[1024];
    ec = s.read_all(buf, sizeof buf, [&](const char* data, size_t n) { plain.append(data, n); });
    return plain;
  }

  Credential ca_, node_, agent_;
  Ctx server_ctx_, client_ctx_;
};

TEST_F(TlsSessionTest, HandshakeAndRecordsGoThroughMemory) {
  TlsSession server(server_ctx_.get(), TlsSession::Role::kServer);
  TlsSession client(client_ctx_.get(), TlsSession::Role::kClient);
  ASSERT_TRUE(connect(client, server));
  EXPECT_TRUE(server.output().empty());  // no session tickets: nothing unasked after the handshake

  boost::system::error_code ec;
  ASSERT_TRUE(client.write("first frame|", ec)) << ec.message();
  ASSERT_TRUE(client.write("second frame", ec)) << ec.message();
  const std::string big(40'000, 'z');  // more than one record
  ASSERT_TRUE(client.write(big, ec)) << ec.message();
  pump(client, server);
  EXPECT_EQ(read_all(server, ec), "first frame|second frame" + big);
  EXPECT_FALSE(ec) << ec.message();

  ASSERT_TRUE(server.write("reply", ec));
  pump(server, client);
  EXPECT_EQ(read_all(client, ec), "reply");
  EXPECT_FALSE(ec) << ec.message();
}

TEST_F(TlsSessionTest, BytesArrivingOneByOneWaitForTheirRecord) {
  TlsSession server(server_ctx_.get(), TlsSession::Role::kServer);
  TlsSession client(client_ctx_.get(), TlsSession::Role::kClient);
  ASSERT_TRUE(connect(client, server, 1));
  boost::system::error_code ec;
  ASSERT_TRUE(client.write("one record", ec));
  std::string records;
  records.swap(client.output());
  std::string plain;
  char buf[64];
  for (size_t i = 0; i < records.size(); ++i) {
    server.feed(&records[i], 1);
    const size_t n = server.read(buf, sizeof buf, ec);
    ASSERT_FALSE(ec) << "byte " << i << ": " << ec.message();
    if (i + 1 < records.size()) {
      EXPECT_EQ(n, 0u) << "byte " << i;
    }
    plain.append(buf, n);
  }
  EXPECT_EQ(plain, "one record");
}

TEST_F(TlsSessionTest, GarbageFailsTheHandshakeNotTheProcess) {
  std::mt19937 rng(7);
  for (int trial = 0; trial < 50; ++trial) {
    TlsSession server(server_ctx_.get(), TlsSession::Role::kServer);
    std::string junk(1 + rng() % 600, '\0');
    for (auto& c : junk) c = static_cast<char>(rng());
    if (trial % 2 == 0) junk[0] = 0x16;  // looks like a handshake record
    boost::system::error_code ec;
    server.feed(junk.data(), junk.size());
    const bool done = server.handshake(ec);
    EXPECT_FALSE(done);
    // Either it waits for the rest of a record it cannot yet judge, or it
    // failed; once failed it stays failed.
    if (ec) {
      EXPECT_FALSE(server.handshake(ec));
      EXPECT_TRUE(ec);
    }
  }
}

TEST_F(TlsSessionTest, ARecordLongerThanTlsAllowsIsRefusedAtOnce) {
  TlsSession server(server_ctx_.get(), TlsSession::Role::kServer);
  TlsSession client(client_ctx_.get(), TlsSession::Role::kClient);
  ASSERT_TRUE(connect(client, server));
  const char header[] = {0x17, 0x03, 0x03, static_cast<char>(0xff), static_cast<char>(0xff)};
  server.feed(header, sizeof header);  // 64 KiB claimed, 5 bytes sent
  boost::system::error_code ec;
  char buf[64];
  EXPECT_EQ(server.read(buf, sizeof buf, ec), 0u);
  EXPECT_TRUE(ec) << "waited for 64 KiB instead of refusing the length";
  EXPECT_NE(ec, boost::asio::error::eof);
}

TEST_F(TlsSessionTest, TamperedRecordIsAnError) {
  TlsSession server(server_ctx_.get(), TlsSession::Role::kServer);
  TlsSession client(client_ctx_.get(), TlsSession::Role::kClient);
  ASSERT_TRUE(connect(client, server));
  boost::system::error_code ec;
  ASSERT_TRUE(client.write("pay 10 to bob", ec));
  client.output()[10] ^= 1;
  pump(client, server);
  char buf[64];
  EXPECT_EQ(server.read(buf, sizeof buf, ec), 0u);
  EXPECT_TRUE(ec);
  EXPECT_FALSE(server.output().empty());  // the alert that says why
}

TEST_F(TlsSessionTest, CloseNotifyReadsAsEndOfFile) {
  TlsSession server(server_ctx_.get(), TlsSession::Role::kServer);
  TlsSession client(client_ctx_.get(), TlsSession::Role::kClient);
  ASSERT_TRUE(connect(client, server));
  SSL_shutdown(client.native_handle());
  pump(client, server);
  boost::system::error_code ec;
  char buf[64];
  EXPECT_EQ(server.read(buf, sizeof buf, ec), 0u);
  EXPECT_EQ(ec, boost::asio::error::eof);
}

TEST_F(TlsSessionTest, AClientFromAnotherCaIsRefused) {
  const Credential other_ca = make_credential("another CA", nullptr);
  const Credential stranger = make_credential("agent:mallory", &other_ca);
  Ctx stranger_ctx = make_context(stranger, ca_, false);  // trusts our CA, holds a foreign certificate
  TlsSession server(server_ctx_.get(), TlsSession::Role::kServer);
  TlsSession client(stranger_ctx.get(), TlsSession::Role::kClient);
  EXPECT_FALSE(connect(client, server));
  EXPECT_NE(SSL_get_verify_result(server.native_handle()), X509_V_OK);
}


TEST_F(TlsSessionTest, ReadAllHandsOverEveryRecordThenReportsTheEnd) {
  TlsSession server(server_ctx_.get(), TlsSession::Role::kServer);
  TlsSession client(client_ctx_.get(), TlsSession::Role::kClient);
  ASSERT_TRUE(connect(client, server));
  boost::system::error_code ec;
  const std::string big(20'000, 'q');  // two records
  ASSERT_TRUE(client.write("a|", ec));
  ASSERT_TRUE(client.write(big, ec));
  SSL_shutdown(client.native_handle());  // close_notify in the same bytes
  pump(client, server);
  std::string plain;
  size_t pieces = 0;
  char buf[4096];  // smaller than a record: one record comes in several pieces
  ec = server.read_all(buf, sizeof buf, [&](const char* data, size_t n) {
    EXPECT_GT(n, 0u);
    plain.append(data, n);
    ++pieces;
  });
  EXPECT_EQ(plain, "a|" + big);
  EXPECT_GE(pieces, 6u);
  EXPECT_EQ(ec, boost::asio::error::eof);
}

}  // namespace
}  // namespace stig::wire
