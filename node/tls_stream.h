// The TLS context of a node, and what a finished handshake tells.
//
// Heavy (Asio's ssl headers pull in OpenSSL): include only from the .cc
// files that do I/O (connection.cc, peer_link.cc, server.cc, tls.cc).
#pragma once

#include "node/asio.h"  // first: Asio needs <utility> before it (docs/DESIGN.md)

#include <boost/asio/ssl.hpp>

#include <string>

#include "node/tls.h"

namespace stig::node {

namespace ssl = boost::asio::ssl;

// A node's TLS 1.3 context: its node certificate and key, the cluster CA as
// the only trust anchor, peer certificates required in both directions.
class TlsContext {
 public:
  explicit TlsContext(ssl::context ctx) : ctx_(std::move(ctx)) {}
  ssl::context& get() { return ctx_; }

 private:
  ssl::context ctx_;
};

// The identity in the verified certificate the other side of `ssl`
// presented (Kind::kNone if it presented none). Call after a successful
// handshake. (The sessions are wire::TlsSession, driven through memory.)
CertIdentity peer_identity(SSL* ssl);

// A one-line reason for a failed TLS operation, naming the certificate
// problem when verification failed ("certificate has expired", ...).
std::string describe_tls_error(SSL* ssl, const boost::system::error_code& ec);

}  // namespace stig::node
