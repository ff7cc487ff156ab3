// The TLS stream of one connection, and the context it is made from.
//
// Heavy (Asio's ssl headers pull in OpenSSL): include only from the .cc
// files that do I/O (connection.cc, peer_link.cc, server.cc, tls.cc).
#pragma once

#include "node/asio.h"  // first: Asio needs <utility> before it (docs/DESIGN.md)

#include <boost/asio/ssl.hpp>

#include <array>
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

// One TLS session over a socket owned by its Connection or PeerLink. The
// owner keeps the socket (so the plaintext path is untouched and closing the
// socket aborts the session's pending operations); a new session is made for
// every new TCP connection. `buf` receives decrypted bytes: a TLS read hands
// back at most one record (16 KiB) at a time.
struct TlsStream {
  TlsStream(tcp::socket& socket, TlsContext& context) : stream(socket, context.get()) {}
  ssl::stream<tcp::socket&> stream;
  std::array<char, 16 * 1024> buf;
};

// The identity in the verified certificate the other side presented
// (Kind::kNone if it presented none). Call after a successful handshake.
CertIdentity peer_identity(TlsStream& tls);

// A one-line reason for a failed TLS operation, naming the certificate
// problem when verification failed ("certificate has expired", ...).
std::string describe_tls_error(TlsStream& tls, const boost::system::error_code& ec);

}  // namespace stig::node
