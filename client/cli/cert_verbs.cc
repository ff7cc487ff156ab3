// stig cert: makes the cluster's certificates with the OpenSSL library (no
// `openssl` command needed): a CA, node certificates (CN node:ID) and agent
// credentials (CN agent:NAME). Keys are ECDSA P-256, written 0600; nothing is
// overwritten unless asked. See docs/security.md.
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "client/cli/common.h"

namespace stig_cli {

namespace {

namespace fs = std::filesystem;

struct X509Free { void operator()(X509* x) const { X509_free(x); } };
struct PkeyFree { void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); } };
struct FileClose { void operator()(FILE* f) const { std::fclose(f); } };
using X509Ptr = std::unique_ptr<X509, X509Free>;
using PkeyPtr = std::unique_ptr<EVP_PKEY, PkeyFree>;
using FilePtr = std::unique_ptr<FILE, FileClose>;

// A failure of a cert verb: one line for "stig: error: ...".
struct CertError {
  std::string message;
  int code = kExitFailure;
};

std::string openssl_error() {
  const unsigned long e = ERR_get_error();
  ERR_clear_error();
  if (e == 0) return "unknown OpenSSL error";
  char buf[256];
  ERR_error_string_n(e, buf, sizeof buf);
  return buf;
}

bool valid_name(const std::string& name) {
  if (name.empty() || name.size() > 64) return false;
  for (char c : name)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.')) return false;
  return true;
}

PkeyPtr new_key() {
  PkeyPtr key(EVP_EC_gen("P-256"));
  if (!key) throw CertError{"cannot generate a P-256 key: " + openssl_error()};
  return key;
}

// Refuses to replace an existing file unless `overwrite`.
void check_free(const fs::path& p, bool overwrite) {
  if (!overwrite && fs::exists(p))
    throw CertError{p.string() + " already exists (pass --overwrite to replace it)", kExitUsage};
}

void write_key(const fs::path& p, EVP_PKEY* key) {
  std::error_code ec;
  fs::remove(p, ec);
  const mode_t old = ::umask(077);  // the key is never readable by others, not even briefly
  FilePtr f(std::fopen(p.c_str(), "wx"));
  ::umask(old);
  if (!f) throw CertError{"cannot write " + p.string() + ": " + std::strerror(errno)};
  if (PEM_write_PrivateKey(f.get(), key, nullptr, nullptr, 0, nullptr, nullptr) != 1)
    throw CertError{"cannot write " + p.string() + ": " + openssl_error()};
}

void write_cert(const fs::path& p, X509* cert) {
  FilePtr f(std::fopen(p.c_str(), "w"));
  if (!f) throw CertError{"cannot write " + p.string() + ": " + std::strerror(errno)};
  if (PEM_write_X509(f.get(), cert) != 1) throw CertError{"cannot write " + p.string() + ": " + openssl_error()};
}

X509Ptr read_cert(const fs::path& p) {
  FilePtr f(std::fopen(p.c_str(), "r"));
  if (!f) throw CertError{"cannot read the CA certificate " + p.string() + ": " + std::strerror(errno) +
                          " (make one with 'stig cert create-ca')"};
  X509Ptr c(PEM_read_X509(f.get(), nullptr, nullptr, nullptr));
  if (!c) throw CertError{p.string() + " is not a PEM certificate"};
  return c;
}

PkeyPtr read_key(const fs::path& p) {
  FilePtr f(std::fopen(p.c_str(), "r"));
  if (!f) throw CertError{"cannot read the CA key " + p.string() + ": " + std::strerror(errno)};
  PkeyPtr k(PEM_read_PrivateKey(f.get(), nullptr, nullptr, nullptr));
  if (!k) throw CertError{p.string() + " is not a PEM private key"};
  return k;
}

void add_ext(X509* cert, X509* issuer, int nid, const char* value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value);
  if (!ext) throw CertError{std::string("cannot add extension ") + OBJ_nid2sn(nid) + ": " + openssl_error()};
  X509_add_ext(cert, ext, -1);
  X509_EXTENSION_free(ext);
}

// A certificate for `key` named `cn`, valid from an hour ago (clock skew
// between machines) for `days` days; negative days make one that has
// already expired (for tests of expiry). Signed by `issuer`/`issuer_key`,
// or self-signed when they are null (the CA).
X509Ptr make_cert(const std::string& cn, EVP_PKEY* key, int64_t days, X509* issuer, EVP_PKEY* issuer_key,
                  bool is_ca, bool server_auth) {
  X509Ptr cert(X509_new());
  X509_set_version(cert.get(), 2);
  std::unique_ptr<BIGNUM, decltype(&BN_free)> serial(BN_new(), BN_free);
  BN_rand(serial.get(), 127, BN_RAND_TOP_ANY, BN_RAND_BOTTOM_ANY);  // unique enough to never collide
  BN_to_ASN1_INTEGER(serial.get(), X509_get_serialNumber(cert.get()));
  const long after = static_cast<long>(days * 86400);
  const long before = std::min(-3600L, after - 86400L);
  X509_gmtime_adj(X509_getm_notBefore(cert.get()), before);
  X509_gmtime_adj(X509_getm_notAfter(cert.get()), after);
  X509_NAME* name = X509_get_subject_name(cert.get());
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, reinterpret_cast<const unsigned char*>(cn.data()),
                             static_cast<int>(cn.size()), -1, 0);
  X509_set_issuer_name(cert.get(), issuer ? X509_get_subject_name(issuer) : name);
  X509_set_pubkey(cert.get(), key);
  X509* signer = issuer ? issuer : cert.get();
  add_ext(cert.get(), signer, NID_basic_constraints, is_ca ? "critical,CA:TRUE,pathlen:0" : "critical,CA:FALSE");
  add_ext(cert.get(), signer, NID_key_usage, is_ca ? "critical,keyCertSign,cRLSign" : "critical,digitalSignature");
  if (!is_ca) add_ext(cert.get(), signer, NID_ext_key_usage, server_auth ? "serverAuth,clientAuth" : "clientAuth");
  add_ext(cert.get(), signer, NID_subject_key_identifier, "hash");
  if (issuer) add_ext(cert.get(), signer, NID_authority_key_identifier, "keyid:always");
  if (X509_sign(cert.get(), issuer_key ? issuer_key : key, EVP_sha256()) == 0)
    throw CertError{"cannot sign the certificate: " + openssl_error()};
  return cert;
}

struct CrlFree { void operator()(X509_CRL* c) const { X509_CRL_free(c); } };
using CrlPtr = std::unique_ptr<X509_CRL, CrlFree>;

// What the chosen cert verb was given (one verb runs per invocation).
struct CertArgs {
  std::string dir;
  std::string ca_cert, ca_key;  // default: DIR/ca.crt, DIR/ca.key
  std::string name;
  int64_t days = 0;
  bool overwrite = false;
  std::vector<std::string> revoke;  // crl: certificates to add to the list
};

void ensure_dir(const std::string& dir) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) throw CertError{"cannot create " + dir + ": " + ec.message()};
}

int create_ca(const CertArgs& a) {
  ensure_dir(a.dir);
  const fs::path crt = fs::path(a.dir) / "ca.crt", key_path = fs::path(a.dir) / "ca.key";
  check_free(crt, a.overwrite);
  check_free(key_path, a.overwrite);
  PkeyPtr key = new_key();
  X509Ptr cert = make_cert(a.name.empty() ? "Stigmergy cluster CA" : a.name, key.get(), a.days, nullptr, nullptr,
                           true, false);
  write_key(key_path, key.get());
  write_cert(crt, cert.get());
  std::cout << crt.string() << "\n" << key_path.string() << "\n";
  return kExitOk;
}

// A node certificate (kind "node") or an agent credential (kind "agent").
int create_leaf(const CertArgs& a, const std::string& kind) {
  if (!valid_name(a.name))
    throw CertError{"the " + std::string(kind == "node" ? "node id" : "agent name") + " '" + a.name +
                        "' must be 1-64 letters, digits, '-', '_' or '.'",
                    kExitUsage};
  ensure_dir(a.dir);
  const fs::path ca_crt = a.ca_cert.empty() ? fs::path(a.dir) / "ca.crt" : fs::path(a.ca_cert);
  const fs::path ca_key = a.ca_key.empty() ? fs::path(a.dir) / "ca.key" : fs::path(a.ca_key);
  X509Ptr ca = read_cert(ca_crt);
  PkeyPtr ca_pkey = read_key(ca_key);
  if (X509_check_private_key(ca.get(), ca_pkey.get()) != 1)
    throw CertError{ca_key.string() + " does not belong to " + ca_crt.string()};
  const fs::path crt = fs::path(a.dir) / (kind + "-" + a.name + ".crt");
  const fs::path key_path = fs::path(a.dir) / (kind + "-" + a.name + ".key");
  check_free(crt, a.overwrite);
  check_free(key_path, a.overwrite);
  PkeyPtr key = new_key();
  X509Ptr cert = make_cert(kind + ":" + a.name, key.get(), a.days, ca.get(), ca_pkey.get(), false, kind == "node");
  write_key(key_path, key.get());
  write_cert(crt, cert.get());
  std::cout << crt.string() << "\n" << key_path.string() << "\n";
  return kExitOk;
}

// Writes DIR/ca.crl: the revocations it held plus the serials of the
// certificates in `a.revoke`, valid for `a.days` days, signed by the CA. A
// node started with --tls-crl refuses every certificate on it (and every
// certificate at all once it is past its next update: refresh it in time).
int write_crl(const CertArgs& a) {
  const fs::path ca_crt = a.ca_cert.empty() ? fs::path(a.dir) / "ca.crt" : fs::path(a.ca_cert);
  const fs::path ca_key = a.ca_key.empty() ? fs::path(a.dir) / "ca.key" : fs::path(a.ca_key);
  X509Ptr ca = read_cert(ca_crt);
  PkeyPtr ca_pkey = read_key(ca_key);
  if (X509_check_private_key(ca.get(), ca_pkey.get()) != 1)
    throw CertError{ca_key.string() + " does not belong to " + ca_crt.string()};
  const fs::path path = fs::path(a.dir) / "ca.crl";
  CrlPtr crl;
  if (FilePtr f{std::fopen(path.c_str(), "r")}) {
    crl.reset(PEM_read_X509_CRL(f.get(), nullptr, nullptr, nullptr));
    if (!crl) throw CertError{path.string() + " is not a PEM certificate revocation list"};
    if (X509_CRL_verify(crl.get(), X509_get0_pubkey(ca.get())) != 1)
      throw CertError{path.string() + " was not signed by the CA " + ca_crt.string()};
  } else {
    crl.reset(X509_CRL_new());
    X509_CRL_set_version(crl.get(), 1);  // v2
    X509_CRL_set_issuer_name(crl.get(), X509_get_subject_name(ca.get()));
  }
  std::unique_ptr<ASN1_TIME, decltype(&ASN1_TIME_free)> now(X509_gmtime_adj(nullptr, 0), ASN1_TIME_free);
  for (const std::string& file : a.revoke) {
    FilePtr f(std::fopen(file.c_str(), "r"));
    if (!f) throw CertError{"cannot read " + file + ": " + std::strerror(errno), kExitUsage};
    X509Ptr victim(PEM_read_X509(f.get(), nullptr, nullptr, nullptr));
    if (!victim) throw CertError{file + " is not a PEM certificate", kExitUsage};
    if (X509_check_issued(ca.get(), victim.get()) != X509_V_OK)
      throw CertError{file + " was not issued by the CA " + ca_crt.string(), kExitUsage};
    X509_REVOKED* seen = nullptr;
    if (X509_CRL_get0_by_serial(crl.get(), &seen, X509_get_serialNumber(victim.get())) == 1) continue;
    X509_REVOKED* r = X509_REVOKED_new();
    X509_REVOKED_set_serialNumber(r, X509_get_serialNumber(victim.get()));
    X509_REVOKED_set_revocationDate(r, now.get());
    X509_CRL_add0_revoked(crl.get(), r);
  }
  std::unique_ptr<ASN1_TIME, decltype(&ASN1_TIME_free)> next(
      X509_gmtime_adj(nullptr, static_cast<long>(a.days * 86400)), ASN1_TIME_free);
  X509_CRL_set1_lastUpdate(crl.get(), now.get());
  X509_CRL_set1_nextUpdate(crl.get(), next.get());
  X509_CRL_sort(crl.get());
  if (X509_CRL_sign(crl.get(), ca_pkey.get(), EVP_sha256()) == 0)
    throw CertError{"cannot sign the revocation list: " + openssl_error()};
  const fs::path tmp = path.string() + ".tmp";
  {
    FilePtr f(std::fopen(tmp.c_str(), "w"));
    if (!f) throw CertError{"cannot write " + tmp.string() + ": " + std::strerror(errno)};
    if (PEM_write_X509_CRL(f.get(), crl.get()) != 1) throw CertError{"cannot write " + tmp.string()};
  }
  fs::rename(tmp, path);  // a node starting meanwhile reads the old list or the new one, never half
  std::cout << path.string() << " (" << sk_X509_REVOKED_num(X509_CRL_get_REVOKED(crl.get()))
            << " revoked)\n";
  return kExitOk;
}

}  // namespace

void add_cert_verbs(CLI::App& app, std::function<int()>& action) {
  auto* cert = app.add_subcommand("cert", "Make the cluster's TLS certificates: a CA, node certificates, agent credentials");
  cert->require_subcommand(1);
  cert->footer(R"(Identity is the certificate's common name: node:ID for a node, agent:NAME for an
agent. Every node and client trusts the CA only; keep ca.key offline once the certificates are made.
Files: DIR/ca.crt, DIR/ca.key, DIR/node-ID.crt/.key, DIR/agent-NAME.crt/.key (keys are mode 0600),
DIR/ca.crl (stig cert crl: the revocation list for stigd --tls-crl).

Examples:
  stig cert create-ca --dir certs
  stig cert create-node --id n1 --dir certs      # stigd --tls-ca certs/ca.crt --tls-cert certs/node-n1.crt ...
  stig cert create-agent --name fulfilment --dir certs --days 30
  export STIG_CA=certs/ca.crt STIG_CERT=certs/agent-fulfilment.crt STIG_KEY=certs/agent-fulfilment.key
  stig cert crl --dir certs --revoke certs/agent-temp.crt   # then restart nodes run with --tls-crl certs/ca.crl
See docs/security.md.)");
  static CertArgs args;  // lives as long as the app's callbacks
  static int64_t ca_days = 3650, node_days = 365, agent_days = 365, crl_days = 30;
  auto common = [&](CLI::App* cmd, int64_t& days) {
    cmd->add_option("--dir", args.dir, "Directory of the certificates (created if missing)")->required();
    cmd->add_option("--days", days,
                    "Validity in days from now (negative: already expired, for testing expiry)")
        ->capture_default_str();
    cmd->add_flag("--overwrite", args.overwrite, "Replace existing files of the same name");
  };
  auto leaf_ca = [&](CLI::App* cmd) {
    cmd->add_option("--ca-cert", args.ca_cert, "The CA certificate (default DIR/ca.crt)");
    cmd->add_option("--ca-key", args.ca_key, "The CA key (default DIR/ca.key)");
  };
  auto run = [&](auto fn) {
    return [&, fn] {
      action = [fn]() -> int {
        try {
          return fn();
        } catch (const CertError& e) {
          return fail(e.message, e.code);
        } catch (const std::exception& e) {
          return fail(e.what(), kExitFailure);
        }
      };
    };
  };

  auto* ca = cert->add_subcommand("create-ca", "Make the cluster's CA: DIR/ca.crt and DIR/ca.key");
  ca->add_option("--name", args.name, "The CA's common name (default 'Stigmergy cluster CA')");
  common(ca, ca_days);
  ca->callback(run([] {
    args.days = ca_days;
    return create_ca(args);
  }));

  auto* node = cert->add_subcommand("create-node", "Make node ID's certificate (CN node:ID): DIR/node-ID.crt/.key");
  node->add_option("--id", args.name, "The node's id (its stigd --id)")->required();
  common(node, node_days);
  leaf_ca(node);
  node->callback(run([] {
    args.days = node_days;
    return create_leaf(args, "node");
  }));

  auto* agent =
      cert->add_subcommand("create-agent", "Make agent NAME's credential (CN agent:NAME): DIR/agent-NAME.crt/.key");
  agent->add_option("--name", args.name, "The agent's name (recorded as modified_by on its writes)")->required();
  common(agent, agent_days);
  leaf_ca(agent);
  agent->callback(run([] {
    args.days = agent_days;
    return create_leaf(args, "agent");
  }));

  auto* crl = cert->add_subcommand(
      "crl", "Write DIR/ca.crl, the CA's revocation list (stigd --tls-crl), adding the --revoke certificates");
  crl->add_option("--dir", args.dir, "Directory of the CA (and of ca.crl)")->required();
  crl->add_option("--revoke", args.revoke, "A certificate file to revoke (repeatable)");
  crl->add_option("--days", crl_days, "Until when the list is current: a node refuses every certificate after that")
      ->capture_default_str();
  leaf_ca(crl);
  crl->footer(R"(Without --revoke it makes an empty list, or renews the existing one. Nodes read
--tls-crl at start-up: restart them to apply a new list.)");
  crl->callback(run([] {
    args.days = crl_days;
    return write_crl(args);
  }));
}

}  // namespace stig_cli
