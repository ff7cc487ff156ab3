// TLS for stigd's links: the cluster's certificates and the identity they carry.
//
// Identity lives in a certificate's subject common name: "node:<id>" is node
// <id> (peer links), "agent:<name>" is agent <name> (client connections). A
// node certificate is never an agent credential and vice versa. Trust is the
// cluster's CA alone: a certificate is accepted when it chains to --tls-ca
// (and, with --tls-crl, is not revoked); host names are not checked, the
// common name is the identity.
//
// This header is light on purpose (no Asio/OpenSSL): it is included by
// server.h and connection.h. The stream type lives in node/tls_stream.h,
// included only by the .cc files that do I/O.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace stig::node {

// The files of a node's TLS set-up (PEM), from --tls-ca/--tls-cert/--tls-key/--tls-crl.
struct TlsFiles {
  std::string ca;
  std::string cert;
  std::string key;
  std::string crl;  // optional: a revocation list from the CA
};

// Who a verified certificate says its holder is.
struct CertIdentity {
  enum class Kind { kNone, kNode, kAgent };
  Kind kind = Kind::kNone;
  std::string name;    // the node id or agent name
  std::string subject; // the common name as presented, for messages

  bool is_node(std::string_view id) const { return kind == Kind::kNode && name == id; }
  bool is_agent() const { return kind == Kind::kAgent; }
};

// Parses a common name "node:<id>" or "agent:<name>" (name non-empty, at most
// 128 bytes, no control characters); Kind::kNone for anything else.
CertIdentity identity_from_common_name(std::string_view cn);

// The server-and-client TLS context of one node (TLS 1.3 only, mutual
// authentication against the cluster CA). Opaque here; see tls_stream.h.
class TlsContext;

// Loads and checks the files: readable PEM, the key matches the certificate,
// the certificate chains to the CA, is valid now and is a node certificate
// for `self_id`. nullptr and a one-line `error` otherwise.
std::shared_ptr<TlsContext> make_tls_context(const TlsFiles& files, const std::string& self_id, std::string* error);

}  // namespace stig::node
