// Pieces every `stig` verb shares: exit codes, the one-line error printer,
// byte rendering for JSON and people, global options and connecting.
#pragma once

#include <CLI/CLI.hpp>

#include <functional>
#include <nlohmann/json.hpp>
#include <string>

#include "stigmergy/client.h"

namespace stig_cli {

using json = nlohmann::ordered_json;

constexpr int kExitOk = 0;
constexpr int kExitFailure = 1;  // the cluster refused the request, could not be reached, or has no leader
constexpr int kExitUsage = 2;    // the command line (or the input it names) was wrong
constexpr int kExitRefused = 3;  // strong: a condition did not hold (CAS, expected version, stale fence, lock busy)
constexpr int kExitUnknown = 4;  // strong: the write's outcome is unknown (it may or may not have been applied)
constexpr int kExitDenied = 5;   // PERMISSION_DENIED: an access rule (or a disabled admin verb) refused it

// Prints "stig: error: MESSAGE" (one line) on stderr and returns `code`.
int fail(const std::string& message, int code);
// Lazy-path verbs: usage errors exit 2, PERMISSION_DENIED 5, everything else 1.
int fail(const stigmergy::Error& e);
// Strong-path verbs: also 3 for refusals and 4 for unknown outcomes.
int fail_strong(const stigmergy::Error& e);

// Bytes as JSON: a string when they are UTF-8 text, else {"base64": "..."}.
json bytes_json(const std::string& bytes);
// Bytes for people: the text itself, or "base64:..." for binary.
std::string bytes_human(const std::string& bytes);
// A key for people: the text itself, or "base64:..." when binary or holding
// control characters (which could rewrite the user's terminal).
std::string key_human(const std::string& key);
std::string shell_quote(const std::string& s);
void print_json(const json& j);

// Options every verb shares; filled by CLI11 before any verb runs.
struct Globals {
  std::string endpoints;
  std::string agent;
  int64_t timeout_ms = 8000;  // above the node's 5 s durability timeout
  bool json = false;
  // TLS (docs/security.md): --ca/--cert/--key, else $STIG_CA/$STIG_CERT/$STIG_KEY.
  std::string ca, cert, key;
};

// A client for the endpoints and agent the user chose.
stigmergy::Result<stigmergy::Client> connect(const Globals& g);

// Verbs defined outside main.cc register themselves here: `action` is set
// by the chosen verb's callback and run after parsing.
void add_strong_verbs(CLI::App& app, Globals& g, std::function<int()>& action);
void add_lock_verbs(CLI::App& app, Globals& g, std::function<int()>& action, std::vector<std::string>& command);
void add_acl_verbs(CLI::App& app, Globals& g, std::function<int()>& action);
// stig cert: makes a CA, node certificates and agent credentials (no cluster needed).
void add_cert_verbs(CLI::App& app, std::function<int()>& action);

}  // namespace stig_cli
