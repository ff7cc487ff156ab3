// stig: the Stigmergy command-line client.
//
//   stig [--endpoints HOST:PORT[,...]] [--agent NAME] [--timeout MS] [--json] VERB ...
//
// Guarantees: on success prints one result (exactly one JSON object with
// --json) on stdout and exits 0; on failure prints exactly one line
// "stig: error: ..." on stderr and exits 1 (the cluster refused, could not
// be reached or has no leader), 2 (the command line or its input was wrong),
// 3 (strong path: a condition was refused), 4 (strong path: the outcome of
// a write is unknown) or 5 (PERMISSION_DENIED: an access rule refused it).
// `stig lock ... -- CMD` exits with CMD's status. See docs/cli.md.
#include <CLI/CLI.hpp>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <iostream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "client/cli/common.h"
#include "stigmergy/client.h"
#include "stigmergy/text.h"

namespace {

using namespace stig_cli;  // NOLINT: the CLI's shared helpers
using stigmergy::Client;
using stigmergy::Error;
using stigmergy::ErrorCode;

const char* kDefaultEndpoints = "127.0.0.1:7101";

json version_json(const stigmergy::Version& v) {
  json j;
  j["value"] = bytes_json(v.value);
  j["modified_by"] = bytes_json(v.modified_by);
  j["modified_at"] = stigmergy::format_iso8601_ms(v.modified_at_ms);
  j["modified_at_ms"] = v.modified_at_ms;
  return j;
}

std::string hex16(uint64_t v) {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(v));
  return buf;
}

// --- verbs ---------------------------------------------------------------------

void print_get(const stigmergy::GetReply& r, bool as_json) {
  if (as_json) {
    json j;
    j["key"] = bytes_json(r.key);
    j["values"] = json::array();
    j["versions"] = json::array();
    for (const auto& v : r.versions) {
      j["values"].push_back(bytes_json(v.value));
      j["versions"].push_back(version_json(v));
    }
    j["context"] = stigmergy::encode_context(r.context);
    j["node"] = bytes_json(r.node);
    if (r.stale) j["stale"] = true;
    print_json(j);
    return;
  }
  const std::string ctx = stigmergy::encode_context(r.context);
  if (r.versions.empty()) {
    std::cout << key_human(r.key) << ": not found\n";
    if (!ctx.empty()) std::cout << "context: " << ctx << "\n";
  } else if (r.versions.size() == 1) {
    const auto& v = r.versions.front();
    std::cout << key_human(r.key) << " = " << bytes_human(v.value) << "\n";
    std::cout << "  by " << v.modified_by << " at " << stigmergy::format_iso8601_ms(v.modified_at_ms) << "\n";
    std::cout << "context: " << ctx << "\n";
  } else {
    std::cout << key_human(r.key) << " has " << r.versions.size() << " concurrent versions (siblings):\n";
    for (size_t i = 0; i < r.versions.size(); ++i) {
      const auto& v = r.versions[i];
      std::cout << "  [" << i + 1 << "] " << bytes_human(v.value) << "\n";
      std::cout << "      by " << v.modified_by << " at " << stigmergy::format_iso8601_ms(v.modified_at_ms) << "\n";
    }
    std::cout << "context: " << ctx << "\n";
    std::cout << "resolve with: stig put " << shell_quote(r.key) << " VALUE --context " << ctx << "\n";
  }
  if (r.stale) std::cout << "(may be stale: no node answered with this client's last write of the key)\n";
}

void print_write(const stigmergy::PutReply& r, bool deleted, const std::string& agent, bool as_json) {
  if (as_json) {
    json j;
    j["key"] = bytes_json(r.key);
    j["context"] = stigmergy::encode_context(r.context);
    if (!r.versions.empty() || !deleted) j["siblings"] = r.versions.size();
    j["node"] = bytes_json(r.node);
    if (r.context_cut) j["context_cut"] = true;
    print_json(j);
    return;
  }
  std::cout << "ok: " << key_human(r.key) << (deleted ? " deleted" : " written") << " by " << agent
            << (r.node.empty() ? "" : " on " + r.node) << "\n";
  std::cout << "context: " << stigmergy::encode_context(r.context) << "\n";
  if (r.context_cut)
    std::cout << "note: " << (r.node.empty() ? std::string("the node") : r.node)
              << " had not yet seen every version the context named; those were not superseded and stay as "
                 "siblings\n";
  if (r.versions.size() > 1) {
    std::cout << "note: " << key_human(r.key) << " now has " << r.versions.size()
              << " concurrent versions; 'stig get " << shell_quote(r.key) << "' shows them\n";
  }
}

void print_counter(const stigmergy::CounterReply& r, bool as_json) {
  if (as_json) {
    json j;
    j["key"] = bytes_json(r.key);
    j["value"] = r.value;
    if (!r.modified_by.empty()) {
      j["modified_by"] = bytes_json(r.modified_by);
      j["modified_at"] = stigmergy::format_iso8601_ms(r.modified_at_ms);
      j["modified_at_ms"] = r.modified_at_ms;
    }
    j["node"] = bytes_json(r.node);
    print_json(j);
    return;
  }
  std::cout << key_human(r.key) << " = " << r.value << "\n";
  if (!r.modified_by.empty()) {
    std::cout << "  last change by " << r.modified_by << " at " << stigmergy::format_iso8601_ms(r.modified_at_ms)
              << "\n";
  }
}

void print_set(const stigmergy::SetReply& r, bool as_json) {
  if (as_json) {
    json j;
    j["key"] = bytes_json(r.key);
    j["elements"] = json::array();
    for (const auto& e : r.elements) j["elements"].push_back(bytes_json(e));
    j["node"] = bytes_json(r.node);
    print_json(j);
    return;
  }
  if (r.elements.empty()) std::cout << key_human(r.key) << ": empty set\n";
  for (const auto& e : r.elements) std::cout << bytes_human(e) << "\n";
}

void print_status(const stigmergy::ClusterStatus& s, bool as_json) {
  if (as_json) {
    json j;
    j["nodes"] = json::array();
    for (const auto& n : s.nodes) {
      j["nodes"].push_back(json{{"id", bytes_json(n.id)},
                                {"address", n.address},
                                {"state", n.state},
                                {"keys", n.keys},
                                {"tombstones", n.tombstones},
                                {"digest", hex16(n.digest)},
                                {"last_heard_ms_ago", n.last_heard_ms_ago},
                                {"role", n.role.empty() ? json(nullptr) : json(n.role)},
                                {"term", n.role.empty() ? json(nullptr) : json(n.term)},
                                {"commit_index", n.role.empty() ? json(nullptr) : json(n.commit_index)}});
    }
    j["node"] = bytes_json(s.node);
    print_json(j);
    return;
  }
  std::vector<std::vector<std::string>> rows = {{"ID", "ADDRESS", "STATE", "KEYS", "TOMBSTONES", "DIGEST", "LAST HEARD", "ROLE", "TERM", "COMMIT"}};
  std::set<uint64_t> digests;
  for (const auto& n : s.nodes) {
    digests.insert(n.digest);
    rows.push_back({n.id, n.address, n.state, std::to_string(n.keys), std::to_string(n.tombstones), hex16(n.digest),
                    n.state == "self" ? "-"
                    : n.last_heard_ms_ago < 0 ? "never"
                                              : std::to_string(n.last_heard_ms_ago) + " ms ago",
                    n.role.empty() ? "-" : n.role, n.role.empty() ? "-" : std::to_string(n.term),
                    n.role.empty() ? "-" : std::to_string(n.commit_index)});
  }
  std::vector<size_t> width(rows.front().size(), 0);
  for (const auto& row : rows) {
    for (size_t i = 0; i < row.size(); ++i) width[i] = std::max(width[i], row[i].size());
  }
  for (const auto& row : rows) {
    std::string line;
    for (size_t i = 0; i < row.size(); ++i) {
      line += row[i];
      if (i + 1 < row.size()) line += std::string(width[i] - row[i].size() + 2, ' ');
    }
    std::cout << line << "\n";
  }
  std::cout << "(as seen by " << (s.node.empty() ? "the answering node" : s.node)
            << "; other nodes' keys and digests as they last reported them, LAST HEARD ago; "
            << (digests.size() <= 1 ? "all digests equal: converged" : "digests differ: not converged yet") << ")\n";
}

void print_admin(const stigmergy::AdminReply& r, bool as_json) {
  if (as_json) {
    print_json(json{{"ok", true}, {"message", r.message}, {"node", bytes_json(r.node)}});
    return;
  }
  std::cout << (r.message.empty() ? "ok" : r.message) << "\n";
}

// --- command line --------------------------------------------------------------

const std::vector<std::string> kVerbs = {"put", "get", "del", "counter", "set", "strong", "lock", "cluster", "admin", "acl", "cert"};
const std::vector<std::pair<std::string, std::vector<std::string>>> kSubVerbs = {
    {"counter", {"add", "get"}},
    {"set", {"add", "rm", "get"}},
    {"strong", {"put", "get", "del", "cas", "txn", "history", "list"}},
    {"cluster", {"status"}},
    {"admin", {"partition", "heal"}},
    {"acl", {"grant", "revoke", "bind", "unbind", "list"}},
    {"cert", {"create-ca", "create-node", "create-agent", "crl"}}};

std::string join_or(const std::vector<std::string>& words) {
  std::string out;
  for (size_t i = 0; i < words.size(); ++i) {
    if (i > 0) out += (i + 1 == words.size()) ? " or " : ", ";
    out += words[i];
  }
  return out;
}

// Finds the verb words before CLI11 parses, so an unknown or missing verb
// gets a message that names it. Returns an error message, or "" when fine;
// `path` receives the verb words ("counter add") for help hints.
std::string check_verbs(int argc, char** argv, std::string& path) {
  static const std::set<std::string> with_value = {"--endpoints", "--agent",          "--timeout", "--context",
                                                   "--durability", "--drop",           "--expect-version",
                                                   "--fence",      "--rev",            "--at",
                                                   "--limit",      "--ttl",            "--wait",
                                                   "--ca",         "--cert",           "--key"};
  std::vector<std::string> words;
  for (int i = 1; i < argc; ++i) {
    const std::string t = argv[i];
    if (t == "-h" || t == "--help" || t == "--version") return "";
    if (t == "--") break;
    if (t.size() > 1 && t[0] == '-' && !(t.size() > 1 && (std::isdigit(static_cast<unsigned char>(t[1])) != 0))) {
      if (with_value.count(t) != 0) ++i;
      continue;
    }
    words.push_back(t);
    if (words.size() == 2) break;
  }
  if (words.empty()) return "missing verb (expected " + join_or(kVerbs) + "); see 'stig --help'";
  path = words[0];
  for (const auto& [verb, subs] : kSubVerbs) {
    if (verb == words[0] && words.size() > 1) path += " " + words[1];
  }
  if (std::find(kVerbs.begin(), kVerbs.end(), words[0]) == kVerbs.end()) {
    return "unknown verb '" + words[0] + "' (expected " + join_or(kVerbs) + "); see 'stig --help'";
  }
  for (const auto& [verb, subs] : kSubVerbs) {
    if (verb != words[0]) continue;
    if (words.size() < 2) return "missing " + verb + " verb (expected " + join_or(subs) + "); see 'stig " + verb + " --help'";
    if (std::find(subs.begin(), subs.end(), words[1]) == subs.end()) {
      return "unknown " + verb + " verb '" + words[1] + "' (expected " + join_or(subs) + "); see 'stig " + verb +
             " --help'";
    }
  }
  return "";
}

std::vector<std::string> split_ids(const std::vector<std::string>& items) {
  std::vector<std::string> out;
  for (const auto& item : items) {
    std::stringstream ss(item);
    std::string id;
    while (std::getline(ss, id, ',')) out.push_back(id);
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  Globals g;
  if (const char* e = std::getenv("STIG_ENDPOINTS"); e != nullptr && *e != '\0') {
    g.endpoints = e;
  } else {
    g.endpoints = kDefaultEndpoints;
  }
  // TLS credentials: flags beat the environment (deploy/local-cluster env prints these).
  for (auto [var, field] : {std::pair{"STIG_CA", &g.ca}, std::pair{"STIG_CERT", &g.cert}, std::pair{"STIG_KEY", &g.key}})
    if (const char* e = std::getenv(var); e != nullptr && *e != '\0') *field = e;

  CLI::App app{"stig: command-line client for a Stigmergy cluster (shared state for multi-agent systems).\n"
               "Every write records the acting agent (--agent, $STIG_AGENT, default $USER@hostname) and the time.",
               "stig"};
  app.set_version_flag("--version", "stig 0.1.0");
  app.get_formatter()->label("SUBCOMMAND", "VERB");
  app.get_formatter()->label("Subcommands", "Verbs");
  app.require_subcommand(1);
  app.fallthrough();
  app.add_option("--endpoints", g.endpoints,
                 "Comma-separated HOST:PORT list of nodes, tried in order with failover (default: $STIG_ENDPOINTS "
                 "or 127.0.0.1:7101)");
  app.add_option("--agent", g.agent, "Name recorded as modified_by on writes (default: $STIG_AGENT or $USER@hostname)");
  app.add_option("--timeout", g.timeout_ms, "Milliseconds to wait for one node before trying the next (default 8000, above the node's 5 s durability timeout)")
      ->check(CLI::Range(int64_t{1}, int64_t{3600000}));
  app.add_flag("--json", g.json, "Print exactly one JSON object per result");
  app.add_option("--ca", g.ca, "The cluster's CA certificate (PEM); given, the client uses TLS (default: $STIG_CA)");
  app.add_option("--cert", g.cert,
                 "This agent's certificate (PEM, CN agent:NAME), its credential on a TLS cluster (default: $STIG_CERT)");
  app.add_option("--key", g.key, "The private key of --cert (default: $STIG_KEY)");
  app.footer(R"(Synopsis:
  put KEY VALUE|--stdin [--context C] [--durability local|quorum|all]
  get KEY
  del KEY [--context C] [--durability local|quorum|all]
  counter add KEY N | counter get KEY
  set add KEY ELEM | set rm KEY ELEM | set get KEY
  strong put|get|del|cas|txn|history|list ...   (linearizable; 'stig strong --help')
  lock NAME [--ttl D] [--wait D] -- CMD... | lock try NAME
  cluster status
  cert create-ca|create-node|create-agent|crl ... (TLS certificates; 'stig cert --help')
  admin partition --drop ID[,ID...] | admin heal

Examples:
  stig --endpoints 127.0.0.1:7101,127.0.0.1:7102 put order-17 packed
  stig get order-17                       # every concurrent version, who wrote it, and a context
  stig put order-17 shipped --context CTX # supersede what CTX has seen (resolves siblings)
  stig --json counter add visits 1
  STIG_AGENT=support-bot stig set add order-17:tags refund-requested
  stig cluster status
  stig strong put stock:sku-9 1 --expect-version 0   # linearizable, versioned (see 'stig strong --help')
  stig lock charge:order-17 -- ./charge.sh           # runs under a lock, token in $STIG_FENCE_TOKEN
  stig --agent admin acl grant agent:bob write orders/  # access rules (see 'stig acl --help')

Exit status: 0 ok, 1 the cluster refused, could not be reached or has no leader, 2 bad command
line or input, 3 strong: a condition was refused (CAS, expected version, stale fence, lock busy),
4 strong: the outcome of a write is unknown, 5 PERMISSION_DENIED (an access rule refused it).
Run 'stig VERB --help' for details of one verb.)");

  std::function<int()> action;
  auto durability_check = CLI::IsMember({"local", "quorum", "all"});
  std::string durability_text = "local";
  // Makes `cmd` connect, run `call` (which may also refuse its arguments with
  // an error before talking to the cluster) and print the result.
  auto on_run = [&](CLI::App* cmd, auto call, auto print) {
    cmd->callback([&, call, print] {
      action = [&, call, print]() -> int {
        auto c = connect(g);
        if (!c) return fail(c.error());
        auto r = call(*c);
        if (!r) return fail(r.error());
        print(*r, *c);
        return kExitOk;
      };
    });
  };
  // Runs a write with the --durability the user chose.
  auto with_durability = [&](auto write) {
    return [&, write](stigmergy::Client& c) -> decltype(write(c, stigmergy::Durability::kLocal)) {
      auto d = stigmergy::parse_durability(durability_text);
      if (!d) return d.error();
      return write(c, *d);
    };
  };

  // put
  std::string key, value, context_text;
  // --context and --durability of put and del, decoded.
  auto write_args = [&]() -> stigmergy::Result<std::pair<std::string, stigmergy::Durability>> {
    auto ctx = stigmergy::decode_context(context_text);
    if (!ctx) return ctx.error();
    auto d = stigmergy::parse_durability(durability_text);
    if (!d) return d.error();
    return std::pair{std::move(*ctx), *d};
  };
  bool value_base64 = false;
  auto* put = app.add_subcommand("put", "Write a value; concurrent writes become siblings");
  put->add_option("KEY", key, "Key")->required();
  bool value_stdin = false;
  auto* value_opt = put->add_option("VALUE", value, "Value (text; with --base64, base64 of the bytes)");
  put->add_flag("--stdin", value_stdin, "Read the value's bytes from standard input instead of VALUE")
      ->excludes(value_opt);
  put->add_option("--context", context_text,
                  "Causal context from an earlier get/put; the write supersedes every version it has seen");
  put->add_option("--durability", durability_text, "When to acknowledge: local (default), quorum or all")
      ->check(durability_check);
  put->add_flag("--base64", value_base64, "VALUE is standard base64 of arbitrary bytes");
  put->footer(R"(Without --context the write supersedes nothing: if the key has a value, the two
become concurrent siblings. Pass the context printed by 'stig get' to overwrite.

Examples:
  stig put order-17 packed
  stig put order-17 shipped --context CgYKAm4xEAE --durability quorum
  stig put blob-1 3q2+7w== --base64
  stig put report-7 --stdin < report.pdf)");
  put->callback([&] {
    action = [&]() -> int {
      if (!value_stdin && value_opt->count() == 0) {
        return fail("VALUE is required (or --stdin); see 'stig put --help'", kExitUsage);
      }
      std::string bytes = value;
      if (value_stdin) {
        std::ostringstream in;
        in << std::cin.rdbuf();
        if (std::cin.bad()) return fail("cannot read the value from standard input", kExitUsage);
        bytes = in.str();
      }
      if (value_base64) {
        std::string text = bytes;
        while (!text.empty() && (text.back() == '\n' || text.back() == '\r' || text.back() == ' ')) text.pop_back();
        auto decoded = stigmergy::base64_decode(text);
        if (!decoded) return fail("VALUE: " + decoded.error().message, kExitUsage);
        bytes = *decoded;
      }
      auto args = write_args();
      if (!args) return fail(args.error());
      auto& [ctx, d] = *args;
      auto c = connect(g);
      if (!c) return fail(c.error());
      auto r = c->put(key, bytes, ctx, d);
      if (!r) return fail(r.error());
      print_write(*r, false, c->agent(), g.json);
      return kExitOk;
    };
  });

  // get
  auto* get = app.add_subcommand("get", "Read every concurrent version of a key with its context");
  get->add_option("KEY", key, "Key")->required();
  get->footer(R"(Prints each version with the agent that wrote it and when, then the causal
context to pass to put/del. A missing key prints 'not found' (JSON: empty values) and exits 0.

Examples:
  stig get order-17
  stig --json get order-17)");
  on_run(
      get, [&](stigmergy::Client& c) { return c.get(key); },
      [&](const stigmergy::GetReply& r, stigmergy::Client&) { print_get(r, g.json); });

  // del
  auto* del = app.add_subcommand("del", "Delete a key (a tombstone superseding what the context has seen)");
  del->add_option("KEY", key, "Key")->required();
  del->add_option("--context", context_text, "Causal context from an earlier get/put");
  del->add_option("--durability", durability_text, "When to acknowledge: local (default), quorum or all")
      ->check(durability_check);
  del->footer(R"(With --context the delete removes exactly the versions that context has seen.
Without it, stig first reads the key and deletes the versions it read; a write
that happens concurrently survives as a sibling.

Examples:
  stig del order-17
  stig del order-17 --context CgYKAm4xEAI --durability all)");
  del->callback([&] {
    action = [&]() -> int {
      auto args = write_args();
      if (!args) return fail(args.error());
      auto& [ctx, d] = *args;
      auto c = connect(g);
      if (!c) return fail(c.error());
      std::string context = ctx;
      if (context_text.empty()) {
        auto seen = c->get(key);
        if (!seen) return fail(seen.error());
        context = seen->context;
      }
      auto r = c->del(key, context, d);
      if (!r) return fail(r.error());
      print_write(*r, true, c->agent(), g.json);
      return kExitOk;
    };
  });

  // counter
  int64_t delta = 0;
  auto* counter = app.add_subcommand("counter", "PN-counters: concurrent adds merge, never conflict");
  counter->require_subcommand(1);
  counter->footer(R"(Examples:
  stig counter add visits 1
  stig counter add stock:sku-9 -3 --durability quorum
  stig counter get visits)");
  auto* counter_add = counter->add_subcommand("add", "Add N (may be negative) to a counter");
  counter_add->add_option("KEY", key, "Key")->required();
  counter_add->add_option("N", delta, "Amount to add (negative to subtract)")->required();
  counter_add->add_option("--durability", durability_text, "When to acknowledge: local (default), quorum or all")
      ->check(durability_check);
  counter_add->footer("Example:\n  stig counter add visits 1");
  const auto show_counter = [&](const stigmergy::CounterReply& r, stigmergy::Client&) { print_counter(r, g.json); };
  on_run(counter_add, with_durability([&](stigmergy::Client& c, stigmergy::Durability d) {
           return c.counter_add(key, delta, d);
         }),
         show_counter);
  auto* counter_get = counter->add_subcommand("get", "Read a counter (0 when missing)");
  counter_get->add_option("KEY", key, "Key")->required();
  counter_get->footer("Example:\n  stig --json counter get visits");
  on_run(
      counter_get, [&](stigmergy::Client& c) { return c.counter_get(key); }, show_counter);

  // set
  std::string element;
  auto* set = app.add_subcommand("set", "OR-sets: concurrent add and remove merge (add wins)");
  set->require_subcommand(1);
  set->footer(R"(Examples:
  stig set add order-17:tags gift-wrap
  stig set rm order-17:tags gift-wrap
  stig set get order-17:tags)");
  auto add_set_write = [&](const char* name, const char* help, bool adding) {
    auto* sub = set->add_subcommand(name, help);
    sub->add_option("KEY", key, "Key")->required();
    sub->add_option("ELEM", element, "Element")->required();
    sub->add_option("--durability", durability_text, "When to acknowledge: local (default), quorum or all")
        ->check(durability_check);
    sub->footer(std::string("Example:\n  stig set ") + name + " order-17:tags gift-wrap");
    on_run(sub, with_durability([&, adding](stigmergy::Client& c, stigmergy::Durability d) {
             return adding ? c.set_add(key, element, d) : c.set_remove(key, element, d);
           }),
           [&, adding](const stigmergy::SetReply& r, stigmergy::Client&) {
             if (g.json) {
               print_json(json{{"key", bytes_json(key)}, {"ok", true}, {"node", bytes_json(r.node)}});
             } else {
               std::cout << "ok: " << (adding ? "added " : "removed ") << shell_quote(bytes_human(element))
                         << (adding ? " to " : " from ") << key << "\n";
             }
           });
  };
  add_set_write("add", "Add an element to a set", true);
  add_set_write("rm", "Remove an element from a set (the adds this node has seen)", false);
  auto* set_get = set->add_subcommand("get", "List a set's elements, sorted (empty when missing)");
  set_get->add_option("KEY", key, "Key")->required();
  set_get->footer("Example:\n  stig --json set get order-17:tags");
  on_run(
      set_get, [&](stigmergy::Client& c) { return c.set_get(key); },
      [&](const stigmergy::SetReply& r, stigmergy::Client&) { print_set(r, g.json); });

  // cluster
  auto* cluster = app.add_subcommand("cluster", "Cluster membership and convergence");
  cluster->require_subcommand(1);
  auto* status = cluster->add_subcommand("status", "Every node: address, failure-detector state, keys, digest");
  status->footer(R"(Shown as seen by the answering node (the first endpoint that answers). Its own
row is current; every other node's keys, tombstones and digest are as that node
last reported them in a heartbeat (LAST HEARD ago, every 200 ms while up), so a
write made since may not show yet. Equal digests on every node mean the replicas
hold the same state.

Example:
  stig --endpoints 127.0.0.1:7102 cluster status)");
  on_run(
      status, [&](stigmergy::Client& c) { return c.cluster_status(); },
      [&](const stigmergy::ClusterStatus& r, stigmergy::Client&) { print_status(r, g.json); });

  // admin
  std::vector<std::string> drop;
  auto* admin = app.add_subcommand("admin", "Fault injection on the node of the first endpoint");
  admin->require_subcommand(1);
  admin->footer(R"(Acts on the node of the FIRST endpoint only (no failover).

Examples:
  stig --endpoints 127.0.0.1:7101 admin partition --drop n2,n3
  stig --endpoints 127.0.0.1:7101 admin heal)");
  auto* partition = admin->add_subcommand("partition", "Drop all traffic to and from the given peers until healed");
  partition->add_option("--drop", drop, "Peer ids to cut off, comma-separated")->required();
  partition->footer("Example:\n  stig --endpoints 127.0.0.1:7101 admin partition --drop n2,n3");
  partition->callback([&] {
    action = [&]() -> int {
      auto ids = split_ids(drop);
      for (const auto& id : ids) {
        if (id.empty()) return fail("--drop: empty node id in '" + drop.front() + "'", kExitUsage);
      }
      auto c = connect(g);
      if (!c) return fail(c.error());
      auto r = c->admin_partition(ids);
      if (!r) return fail(r.error());
      print_admin(*r, g.json);
      return kExitOk;
    };
  });
  auto* heal = admin->add_subcommand("heal", "Stop dropping traffic from every peer");
  heal->footer("Example:\n  stig --endpoints 127.0.0.1:7101 admin heal");
  on_run(
      heal, [&](stigmergy::Client& c) { return c.admin_heal(); },
      [&](const stigmergy::AdminReply& r, stigmergy::Client&) { print_admin(r, g.json); });

  // strong and lock verbs live in strong_verbs.cc and lock_verbs.cc.
  add_strong_verbs(app, g, action);
  std::vector<std::string> lock_command;
  add_lock_verbs(app, g, action, lock_command);
  add_acl_verbs(app, g, action);
  add_cert_verbs(app, action);

  // `stig lock NAME ... -- CMD ARGS...`: everything after the first "--"
  // is the command, never parsed as stig options.
  for (int i = 1; i < argc; ++i) {
    std::string lock_path;
    if (std::string(argv[i]) == "--" && check_verbs(argc, argv, lock_path).empty() && lock_path == "lock") {
      for (int j = i + 1; j < argc; ++j) lock_command.emplace_back(argv[j]);
      argc = i;
      break;
    }
  }

  std::string verb_path;
  if (const std::string problem = check_verbs(argc, argv, verb_path); !problem.empty()) {
    return fail(problem, kExitUsage);
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    return fail(std::string(e.what()) + "; see 'stig " + (verb_path.empty() ? "" : verb_path + " ") + "--help'",
                kExitUsage);
  }
  if (!action) return fail("missing verb; see 'stig --help'", kExitUsage);
  try {
    return action();
  } catch (const std::exception& e) {  // e.g. out of memory; never a stack trace
    return fail(std::string("internal error: ") + e.what(), kExitFailure);
  }
}
