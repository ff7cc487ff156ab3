// The TLS context of a node, and what a finished handshake tells.
//
// Heavy (Asio's ssl headers pull in OpenSSL): include only from the .cc
// files that do I/O (connection.cc, peer_link.cc, server.cc, tls.cc).
#pragma once

#include "node/asio.h"  // first: Asio needs <utility> before it (docs/DESIGN.md)

#include <boost/asio/ssl.hpp>

#include <memory>
#include <string>
#include <vector>

#include "node/tls.h"

namespace stig::node {

namespace ssl = boost::asio::ssl;

// A node's TLS 1.3 context: its node certificate and key, the cluster CA as
// the only trust anchor, peer certificates required in both directions.
// The CA's certificates are kept: a revocation list reloaded later must be
// signed by them (reload_revocation_list).
class TlsContext {
 public:
  TlsContext(ssl::context ctx, std::vector<std::shared_ptr<X509>> cas) : ctx_(std::move(ctx)), cas_(std::move(cas)) {}
  ssl::context& get() { return ctx_; }
  const std::vector<std::shared_ptr<X509>>& cas() const { return cas_; }

 private:
  ssl::context ctx_;
  std::vector<std::shared_ptr<X509>> cas_;
};

// Reads the revocation list at `path` (PEM, signed by the CA) and makes every
// handshake from now on, client or peer, check it. Returns it, so live
// connections can be checked against it; null and a one-line `error` if it
// cannot be read or is not the CA's (the list in force stays).
std::shared_ptr<X509_CRL> reload_revocation_list(TlsContext& tls, const std::string& path, std::string* error);

// Whether the certificate the other side of `ssl` presented is on `crl`.
bool presents_revoked_certificate(SSL* ssl, X509_CRL* crl);

// The identity in the verified certificate the other side of `ssl`
// presented (Kind::kNone if it presented none). Call after a successful
// handshake. (The sessions are wire::TlsSession, driven through memory.)
CertIdentity peer_identity(SSL* ssl);

// A one-line reason for a failed TLS operation, naming the certificate
// problem when verification failed ("certificate has expired", ...).
std::string describe_tls_error(SSL* ssl, const boost::system::error_code& ec);

}  // namespace stig::node
