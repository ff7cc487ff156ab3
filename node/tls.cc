#include "node/tls_stream.h"

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>

#include <fstream>
#include <memory>
#include <sstream>

namespace stig::node {

namespace {

struct BioFree { void operator()(BIO* b) const { BIO_free(b); } };
struct X509Free { void operator()(X509* x) const { X509_free(x); } };
struct PkeyFree { void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); } };
struct CrlFree { void operator()(X509_CRL* c) const { X509_CRL_free(c); } };
struct StoreFree { void operator()(X509_STORE* s) const { X509_STORE_free(s); } };
struct StoreCtxFree { void operator()(X509_STORE_CTX* s) const { X509_STORE_CTX_free(s); } };
using Bio = std::unique_ptr<BIO, BioFree>;
using X509Ptr = std::unique_ptr<X509, X509Free>;

// A failure while loading the files: one line, ready for "stigd: ...".
struct LoadError {
  std::string message;
};

std::string read_file(const std::string& flag, const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw LoadError{flag + " " + path + ": cannot read the file"};
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

// A revocation list from `path`, checked to be signed by one of `cas`.
std::shared_ptr<X509_CRL> read_crl(const std::string& path, const std::vector<X509*>& cas, const std::string& ca_path) {
  const std::string crl_pem = read_file("--tls-crl", path);
  Bio crl_bio = bio_of(crl_pem);
  std::shared_ptr<X509_CRL> crl(PEM_read_bio_X509_CRL(crl_bio.get(), nullptr, nullptr, nullptr), CrlFree());
  ERR_clear_error();
  if (!crl) throw LoadError{"--tls-crl " + path + ": not a PEM certificate revocation list"};
  bool signed_by_ca = false;
  for (X509* ca : cas) signed_by_ca = signed_by_ca || X509_CRL_verify(crl.get(), X509_get0_pubkey(ca)) == 1;
  ERR_clear_error();
  if (!signed_by_ca) throw LoadError{"--tls-crl " + path + " was not signed by the CA in --tls-ca " + ca_path};
  return crl;
}

// A trust store of the CA alone, checking `crl` if there is one.
X509_STORE* make_trust_store(const std::vector<X509*>& cas, X509_CRL* crl) {
  X509_STORE* store = X509_STORE_new();
  if (!store) throw LoadError{"cannot set up TLS: out of memory"};
  for (X509* ca : cas) X509_STORE_add_cert(store, ca);
  if (crl) {
    X509_STORE_add_crl(store, crl);
    X509_STORE_set_flags(store, X509_V_FLAG_CRL_CHECK);
  }
  return store;
}

std::vector<X509Ptr> read_certs(const std::string& flag, const std::string& path) {
  const std::string pem = read_file(flag, path);
  Bio bio = bio_of(pem);
  std::vector<X509Ptr> certs;
  while (X509* x = PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr)) certs.emplace_back(x);
  ERR_clear_error();
  if (certs.empty()) throw LoadError{flag + " " + path + ": not a PEM certificate"};
  return certs;
}

}  // namespace

CertIdentity identity_from_common_name(std::string_view cn) {
  CertIdentity id;
  id.subject = std::string(cn);
  auto take = [&](std::string_view prefix, CertIdentity::Kind kind) {
    if (cn.substr(0, prefix.size()) != prefix) return false;
    std::string_view name = cn.substr(prefix.size());
    if (name.empty() || name.size() > 128) return false;
    for (char c : name)
      if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) return false;
    id.kind = kind;
    id.name = std::string(name);
    return true;
  };
  if (!take("node:", CertIdentity::Kind::kNode)) take("agent:", CertIdentity::Kind::kAgent);
  return id;
}

std::shared_ptr<TlsContext> make_tls_context(const TlsFiles& files, const std::string& self_id, std::string* error) {
  try {
    std::vector<X509Ptr> cas = read_certs("--tls-ca", files.ca);
    std::vector<X509Ptr> chain = read_certs("--tls-cert", files.cert);
    const std::string key_pem = read_file("--tls-key", files.key);
    Bio key_bio = bio_of(key_pem);
    std::unique_ptr<EVP_PKEY, PkeyFree> key(PEM_read_bio_PrivateKey(key_bio.get(), nullptr, nullptr, nullptr));
    ERR_clear_error();
    if (!key) throw LoadError{"--tls-key " + files.key + ": not a PEM private key"};
    X509* cert = chain.front().get();
    if (X509_check_private_key(cert, key.get()) != 1) {
      ERR_clear_error();
      throw LoadError{"--tls-key " + files.key + " does not belong to the certificate in --tls-cert " + files.cert};
    }
    const CertIdentity who = identity_from_common_name(common_name(cert));
    if (!who.is_node(self_id))
      throw LoadError{"--tls-cert " + files.cert + " is for '" + who.subject + "', not this node (expected CN node:" +
                      self_id + ")"};

    // The certificate must chain to the CA and be valid now: a node that
    // starts with a certificate its peers will refuse would only fail later,
    // less clearly.
    std::vector<X509*> ca_list;
    for (auto& ca : cas) ca_list.push_back(ca.get());
    std::shared_ptr<X509_CRL> crl;
    if (!files.crl.empty()) crl = read_crl(files.crl, ca_list, files.ca);
    std::unique_ptr<X509_STORE, StoreFree> store(make_trust_store(ca_list, crl.get()));
    std::unique_ptr<X509_STORE_CTX, StoreCtxFree> vctx(X509_STORE_CTX_new());
    STACK_OF(X509)* untrusted = sk_X509_new_null();
    for (size_t i = 1; i < chain.size(); ++i) sk_X509_push(untrusted, chain[i].get());
    X509_STORE_CTX_init(vctx.get(), store.get(), cert, untrusted);
    const int ok = X509_verify_cert(vctx.get());
    const int verr = X509_STORE_CTX_get_error(vctx.get());
    vctx.reset();  // done with `store`: the context takes it below
    sk_X509_free(untrusted);
    ERR_clear_error();
    if (ok != 1)
      throw LoadError{"--tls-cert " + files.cert + " is not valid for the CA in --tls-ca " + files.ca + ": " +
                      X509_verify_cert_error_string(verr)};

    ssl::context ctx(ssl::context::tls);
    ctx.set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 | ssl::context::no_sslv3 |
                    ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1 | ssl::context::no_tlsv1_2 |
                    ssl::context::single_dh_use);
    SSL_CTX* native = ctx.native_handle();
    SSL_CTX_set_min_proto_version(native, TLS1_3_VERSION);
    SSL_CTX_set_max_proto_version(native, TLS1_3_VERSION);
    // Sessions are not resumed: every connection presents and verifies a
    // certificate, so a rotated or revoked one takes effect at once.
    SSL_CTX_set_session_cache_mode(native, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_num_tickets(native, 0);
    // Record buffers are kept while a connection is busy (no allocation per
    // record) and given back once it idles (Connection::check_timeouts),
    // so a flood of idle connections costs little more than over plain TCP.
    // AES-128-GCM first: as safe here, and fewer rounds per small record.
    if (SSL_CTX_set_ciphersuites(native, "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256") != 1)
      throw LoadError{"cannot set up TLS: OpenSSL refused the TLS 1.3 cipher suites"};
    SSL_CTX_set_options(native, SSL_OP_CIPHER_SERVER_PREFERENCE);
    if (SSL_CTX_use_certificate(native, cert) != 1) throw LoadError{"--tls-cert " + files.cert + ": OpenSSL refused it"};
    for (size_t i = 1; i < chain.size(); ++i) {
      X509_up_ref(chain[i].get());
      if (SSL_CTX_add1_chain_cert(native, chain[i].get()) != 1) X509_free(chain[i].get());
    }
    if (SSL_CTX_use_PrivateKey(native, key.get()) != 1) throw LoadError{"--tls-key " + files.key + ": OpenSSL refused it"};
    SSL_CTX_set_cert_store(native, store.release());  // the store that just verified our own certificate
    ctx.set_verify_mode(ssl::verify_peer | ssl::verify_fail_if_no_peer_cert);
    ERR_clear_error();
    std::vector<std::shared_ptr<X509>> kept;
    for (auto& ca : cas) kept.emplace_back(ca.release(), X509Free());
    return std::make_shared<TlsContext>(std::move(ctx), std::move(kept));
  } catch (const LoadError& e) {
    if (error) *error = e.message;
  } catch (const std::exception& e) {  // Asio's ssl::context reports OpenSSL failures by throwing
    if (error) *error = std::string("cannot set up TLS: ") + e.what();
  }
  ERR_clear_error();
  return nullptr;
}

std::shared_ptr<X509_CRL> reload_revocation_list(TlsContext& tls, const std::string& path, std::string* error) {
  try {
    std::vector<X509*> cas;
    for (auto& ca : tls.cas()) cas.push_back(ca.get());
    std::shared_ptr<X509_CRL> crl = read_crl(path, cas, "(the CA this node started with)");
    // A new store, not the old one amended: a list that drops an entry must
    // un-revoke it. Handshakes verify synchronously on this thread, so none
    // holds the old store, which the context frees.
    SSL_CTX_set_cert_store(tls.get().native_handle(), make_trust_store(cas, crl.get()));
    return crl;
  } catch (const LoadError& e) {
    if (error) *error = e.message;
  }
  ERR_clear_error();
  return nullptr;
}

bool presents_revoked_certificate(SSL* ssl, X509_CRL* crl) {
  X509* cert = SSL_get0_peer_certificate(ssl);
  X509_REVOKED* entry = nullptr;
  return cert && crl && X509_CRL_get0_by_cert(crl, &entry, cert) == 1;
}

CertIdentity peer_identity(SSL* ssl) {
  X509Ptr cert(SSL_get1_peer_certificate(ssl));
  if (!cert) return {};
  return identity_from_common_name(common_name(cert.get()));
}

std::string describe_tls_error(SSL* ssl, const boost::system::error_code& ec) {
  const long verify = SSL_get_verify_result(ssl);
  std::string why;
  if (ec == ssl::error::stream_truncated || ec == asio::error::eof)
    why = "connection closed during the TLS handshake (the other side refused it, or does not speak TLS)";
  else if (ec.category() == asio::error::get_ssl_category())
    why = "TLS error: " + ec.message();
  else
    why = ec.message();
  if (verify != X509_V_OK) why += std::string(" (its certificate: ") + X509_verify_cert_error_string(verify) + ")";
  ERR_clear_error();
  return why;
}

}  // namespace stig::node
