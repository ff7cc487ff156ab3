// Internal to the client library: the TLS context of one Client and the
// helpers that turn TLS failures into one-line reasons. Not a public header
// (it pulls in Asio's ssl headers and OpenSSL).
#pragma once

#include "client/asio.h"  // first: <utility> before Asio

#include <boost/asio/ssl.hpp>

#include <memory>
#include <string>

#include "stigmergy/client.h"

namespace stigmergy::internal {

// A client's TLS 1.3 context: the CA as the only trust anchor, the agent
// certificate and key if given. `agent` is the certificate's agent name
// (empty without a certificate).
struct ClientTls {
  explicit ClientTls(boost::asio::ssl::context c) : ctx(std::move(c)) {}
  boost::asio::ssl::context ctx;
  std::string agent;
};

// Loads `options`; an error (kInvalidArgument, one line naming the file and
// the flag/env var) if a file is missing, not PEM, the key does not match, or
// the certificate is not an agent credential valid now for the CA.
Result<std::shared_ptr<ClientTls>> make_client_tls(const TlsOptions& options);

// After a handshake: an empty string if the node's certificate names a node
// ("node:ID"), else why not.
std::string check_node_certificate(SSL* ssl);

// A one-line reason for a failed TLS handshake, read or write, with a hint of
// what to fix (credentials, CA, a node without TLS).
std::string describe_tls_failure(SSL* ssl, const boost::system::error_code& ec, bool have_cert);

// Whether `ec` is the node refusing this client's credential (an alert after
// the client's side of the handshake): the request was then never read.
bool is_credential_refusal(const boost::system::error_code& ec);

}  // namespace stigmergy::internal
