#include "client/tls.h"

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>

#include <fstream>
#include <sstream>
#include <vector>

namespace stigmergy::internal {

namespace ssl = boost::asio::ssl;

namespace {

struct BioFree { void operator()(BIO* b) const { BIO_free(b); } };
struct X509Free { void operator()(X509* x) const { X509_free(x); } };
struct PkeyFree { void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); } };
struct StoreFree { void operator()(X509_STORE* s) const { X509_STORE_free(s); } };
struct StoreCtxFree { void operator()(X509_STORE_CTX* s) const { X509_STORE_CTX_free(s); } };
using Bio = std::unique_ptr<BIO, BioFree>;
using X509Ptr = std::unique_ptr<X509, X509Free>;

// Reads a whole file; nullopt if it cannot be read.
std::optional<std::string> read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::nullopt;
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

Bio bio_of(const std::string& data) { return Bio(BIO_new_mem_buf(data.data(), static_cast<int>(data.size()))); }

std::string common_name(X509* cert) {
  X509_NAME* subject = X509_get_subject_name(cert);
  const int i = subject ? X509_NAME_get_index_by_NID(subject, NID_commonName, -1) : -1;
  if (i < 0) return {};
  ASN1_STRING* data = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subject, i));
  return std::string(reinterpret_cast<const char*>(ASN1_STRING_get0_data(data)),
                     static_cast<size_t>(ASN1_STRING_length(data)));
}

// The reason code of an OpenSSL error carried by an Asio error_code.
int ssl_reason(const boost::system::error_code& ec) {
  if (ec.category() != boost::asio::error::get_ssl_category()) return 0;
  return ERR_GET_REASON(static_cast<unsigned long>(static_cast<unsigned int>(ec.value())));
}

}  // namespace

Result<std::shared_ptr<ClientTls>> make_client_tls(const TlsOptions& o) {
  auto bad = [](const std::string& what) { return make_error(ErrorCode::kInvalidArgument, what); };
  if (o.cert_file.empty() != o.key_file.empty())
    return bad("a client credential needs both a certificate and its key (--cert/STIG_CERT and --key/STIG_KEY)");
  const auto ca_pem = read_file(o.ca_file);
  if (!ca_pem) return bad("CA file " + o.ca_file + " (--ca/STIG_CA): cannot read the file");
  std::vector<X509Ptr> cas;
  {
    Bio bio = bio_of(*ca_pem);
    while (X509* x = PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr)) cas.emplace_back(x);
    ERR_clear_error();
  }
  if (cas.empty()) return bad("CA file " + o.ca_file + " (--ca/STIG_CA): not a PEM certificate");

  X509Ptr cert;
  std::unique_ptr<EVP_PKEY, PkeyFree> key;
  std::string agent;
  if (!o.cert_file.empty()) {
    const auto cert_pem = read_file(o.cert_file);
    if (!cert_pem) return bad("certificate " + o.cert_file + " (--cert/STIG_CERT): cannot read the file");
    Bio cbio = bio_of(*cert_pem);
    cert.reset(PEM_read_bio_X509(cbio.get(), nullptr, nullptr, nullptr));
    ERR_clear_error();
    if (!cert) return bad("certificate " + o.cert_file + " (--cert/STIG_CERT): not a PEM certificate");
    const auto key_pem = read_file(o.key_file);
    if (!key_pem) return bad("key " + o.key_file + " (--key/STIG_KEY): cannot read the file");
    Bio kbio = bio_of(*key_pem);
    key.reset(PEM_read_bio_PrivateKey(kbio.get(), nullptr, nullptr, nullptr));
    ERR_clear_error();
    if (!key) return bad("key " + o.key_file + " (--key/STIG_KEY): not a PEM private key");
    if (X509_check_private_key(cert.get(), key.get()) != 1) {
      ERR_clear_error();
      return bad("key " + o.key_file + " does not belong to the certificate " + o.cert_file);
    }
    const std::string cn = common_name(cert.get());
    if (cn.rfind("agent:", 0) != 0 || cn.size() == 6)
      return bad("certificate " + o.cert_file + " is for '" + cn + "', not an agent (expected CN agent:NAME)");
    agent = cn.substr(6);
    // Check it here, so an expired or foreign credential is named as such
    // instead of surfacing as a refused handshake.
    std::unique_ptr<X509_STORE, StoreFree> store(X509_STORE_new());
    for (auto& ca : cas) X509_STORE_add_cert(store.get(), ca.get());
    std::unique_ptr<X509_STORE_CTX, StoreCtxFree> vctx(X509_STORE_CTX_new());
    X509_STORE_CTX_init(vctx.get(), store.get(), cert.get(), nullptr);
    const int ok = X509_verify_cert(vctx.get());
    const int verr = X509_STORE_CTX_get_error(vctx.get());
    ERR_clear_error();
    if (ok != 1)
      return bad("certificate " + o.cert_file + " is not valid for the CA " + o.ca_file + ": " +
                 X509_verify_cert_error_string(verr));
  }

  try {
    ssl::context ctx(ssl::context::tls_client);
    SSL_CTX* native = ctx.native_handle();
    SSL_CTX_set_min_proto_version(native, TLS1_3_VERSION);
    SSL_CTX_set_max_proto_version(native, TLS1_3_VERSION);
    X509_STORE* trust = SSL_CTX_get_cert_store(native);
    for (auto& ca : cas) X509_STORE_add_cert(trust, ca.get());
    if (cert) {
      if (SSL_CTX_use_certificate(native, cert.get()) != 1 || SSL_CTX_use_PrivateKey(native, key.get()) != 1) {
        ERR_clear_error();
        return bad("certificate " + o.cert_file + ": OpenSSL refused it");
      }
    }
    ctx.set_verify_mode(ssl::verify_peer);
    auto tls = std::make_shared<ClientTls>(std::move(ctx));
    tls->agent = agent;
    return tls;
  } catch (const std::exception& e) {
    ERR_clear_error();
    return bad(std::string("cannot set up TLS: ") + e.what());
  }
}

std::string check_node_certificate(SSL* ssl) {
  X509Ptr cert(SSL_get1_peer_certificate(ssl));
  if (!cert) return "the node presented no certificate";
  const std::string cn = common_name(cert.get());
  if (cn.rfind("node:", 0) != 0 || cn.size() == 5)
    return "the server's certificate is '" + cn + "', not a node certificate (CN node:ID)";
  return {};
}

std::string describe_tls_failure(SSL* ssl, const boost::system::error_code& ec, bool have_cert) {
  const int reason = ssl_reason(ec);
  std::string why;
  switch (reason) {
    case SSL_R_TLSV13_ALERT_CERTIFICATE_REQUIRED:
      why = have_cert ? "the node requires a client certificate"
                      : "the node requires a client certificate: set STIG_CERT and STIG_KEY (or --cert and --key) "
                        "to an agent credential";
      break;
    case SSL_R_SSLV3_ALERT_CERTIFICATE_EXPIRED: why = "the node refused the client certificate: it has expired"; break;
    case SSL_R_SSLV3_ALERT_CERTIFICATE_REVOKED: why = "the node refused the client certificate: it was revoked"; break;
    case SSL_R_TLSV1_ALERT_UNKNOWN_CA:
      why = "the node refused the client certificate: it is not from the cluster's CA";
      break;
    case SSL_R_SSLV3_ALERT_BAD_CERTIFICATE:
    case SSL_R_SSLV3_ALERT_CERTIFICATE_UNKNOWN:
    case SSL_R_TLSV1_ALERT_DECRYPT_ERROR:
      why = "the node refused the client certificate";
      break;
    case SSL_R_WRONG_VERSION_NUMBER:
    case SSL_R_PACKET_LENGTH_TOO_LONG:
    case SSL_R_RECORD_LENGTH_MISMATCH:
      why = "the node does not speak TLS (started with --insecure-plaintext? then connect without --ca/STIG_CA)";
      break;
    case SSL_R_CERTIFICATE_VERIFY_FAILED: {
      const long v = ssl ? SSL_get_verify_result(ssl) : X509_V_OK;
      why = std::string("the node's certificate is not trusted: ") + X509_verify_cert_error_string(v) +
            " (is --ca/STIG_CA the cluster's CA?)";
      break;
    }
    default:
      if (ec == ssl::error::stream_truncated)
        why = "the node closed the connection during TLS (does it run with TLS?)";
      else if (ec.category() == boost::asio::error::get_ssl_category())
        why = "TLS error: " + ec.message();
      else
        why = ec.message();
  }
  ERR_clear_error();
  return why;
}

bool is_credential_refusal(const boost::system::error_code& ec) {
  switch (ssl_reason(ec)) {
    case SSL_R_TLSV13_ALERT_CERTIFICATE_REQUIRED:
    case SSL_R_SSLV3_ALERT_CERTIFICATE_EXPIRED:
    case SSL_R_SSLV3_ALERT_CERTIFICATE_REVOKED:
    case SSL_R_TLSV1_ALERT_UNKNOWN_CA:
    case SSL_R_SSLV3_ALERT_BAD_CERTIFICATE:
    case SSL_R_SSLV3_ALERT_CERTIFICATE_UNKNOWN:
    case SSL_R_TLSV1_ALERT_DECRYPT_ERROR:
      return true;
    default:
      return false;
  }
}

}  // namespace stigmergy::internal
