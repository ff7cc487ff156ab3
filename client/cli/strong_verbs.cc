// `stig strong ...`: the linearizable, versioned key-value verbs.
//
// Output: one result on stdout (one JSON object with --json). Exit status:
// 0 ok (a missing key is ok), 1 no leader / unreachable / other refusals,
// 2 bad command line or input (including BAD_REQUEST), 3 a condition was
// refused (CAS, expected version, compare, stale fence), 4 the outcome of a
// write is unknown.
#include <iostream>
#include <optional>
#include <sstream>

#include "client/cli/common.h"
#include "client/cli/txn_json.h"
#include "stigmergy/client.h"
#include "stigmergy/text.h"

namespace stig_cli {
namespace {

using stigmergy::KeyValue;

json time_json(int64_t ms) { return stigmergy::format_iso8601_ms(ms); }

// Exactly {"key","value","version","create_revision","mod_revision","modified_by","modified_at"};
// a missing key has value, modified_by and modified_at null and zero numbers.
json kv_json(const std::string& key, const KeyValue* kv) {
  json j;
  j["key"] = bytes_json(key);
  j["value"] = kv ? bytes_json(kv->value) : json(nullptr);
  j["version"] = kv ? kv->version : 0;
  j["create_revision"] = kv ? kv->create_revision : 0;
  j["mod_revision"] = kv ? kv->mod_revision : 0;
  j["modified_by"] = kv ? bytes_json(kv->modified_by) : json(nullptr);
  j["modified_at"] = kv ? time_json(kv->modified_at_ms) : json(nullptr);
  return j;
}

void print_kv_human(const KeyValue& kv) {
  std::cout << key_human(kv.key) << " = " << bytes_human(kv.value) << "\n";
  std::cout << "  version " << kv.version << ", created at revision " << kv.create_revision
            << ", modified at revision " << kv.mod_revision << " by " << bytes_human(kv.modified_by) << " at "
            << stigmergy::format_iso8601_ms(kv.modified_at_ms) << "\n";
}

// The flags of the strong verbs; one instance lives for the program.
struct Args {
  std::string key, value, expected, prefix, fence_text, at_text;
  int64_t expect_version = -1;
  uint64_t rev = 0;
  uint32_t limit = 0;
  bool stale = false;
  CLI::Option* expect_opt = nullptr;
  CLI::Option* fence_opt = nullptr;
};

stigmergy::Result<std::optional<stigmergy::Fence>> fence_of(const Args& a) {
  if (a.fence_opt == nullptr || a.fence_opt->count() == 0) return std::optional<stigmergy::Fence>();
  auto f = stigmergy::parse_fence(a.fence_text);
  if (!f) return f.error();
  return std::optional<stigmergy::Fence>(*f);
}

void add_fence_option(CLI::App* cmd, Args& a) {
  a.fence_opt = cmd->add_option("--fence", a.fence_text,
                                "LOCK:TOKEN from 'stig lock' ($STIG_LOCK_NAME:$STIG_FENCE_TOKEN): refused unless that "
                                "token is the lock's current holder's");
}

}  // namespace

void add_strong_verbs(CLI::App& app, Globals& g, std::function<int()>& action) {
  static Args a;
  auto* strong = app.add_subcommand("strong", "Linearizable versioned keys (one leader; CAS, transactions, fences)");
  strong->require_subcommand(1);
  strong->footer(R"HELP(Every strong operation goes to the Raft leader (stig follows the hints of other
nodes and retries with the same request id, so a write applies at most once).
Keys carry a version (1 on create, +1 per write) and revisions.

Examples:
  stig strong put stock:sku-9 1 --expect-version 0    # create only if missing
  stig strong cas stock:sku-9 1 0                     # take the last unit
  stig --json strong get stock:sku-9
  stig strong list stock: --limit 20

Exit status: 0 ok, 1 no leader/unreachable, 2 bad input, 3 refused (CAS, expected
version, compare, stale fence), 4 outcome unknown (the write may or may not have applied).)HELP");

  // put
  auto* put = strong->add_subcommand("put", "Write a value (optionally only at an expected version, or fenced)");
  put->add_option("KEY", a.key, "Key")->required();
  put->add_option("VALUE", a.value, "Value (text)")->required();
  a.expect_opt = put->add_option("--expect-version", a.expect_version,
                                 "Refuse (exit 3) unless the key is at this version; 0 = must not exist")
                     ->check(CLI::Range(int64_t{0}, INT64_MAX));
  add_fence_option(put, a);
  put->footer(R"HELP(Examples:
  stig strong put order-17 packed
  stig strong put stock:sku-9 5 --expect-version 0          # create, never overwrite
  stig strong put order-17 charged --fence charge:order-17:42)HELP");
  auto* expect_put = a.expect_opt;
  auto* fence_put = a.fence_opt;
  put->callback([&g, &action, expect_put, fence_put] {
    action = [&g, expect_put, fence_put]() -> int {
      a.expect_opt = expect_put;
      a.fence_opt = fence_put;
      stigmergy::PutOptions o;
      if (expect_put->count() > 0) o.expect_version = static_cast<uint64_t>(a.expect_version);
      auto f = fence_of(a);
      if (!f) return fail_strong(f.error());
      o.fence = *f;
      auto c = connect(g);
      if (!c) return fail_strong(c.error());
      auto r = c->strong_put(a.key, a.value, o);
      if (!r) return fail_strong(r.error());
      if (g.json) {
        json j = kv_json(a.key, &r->kv);
        j["revision"] = r->revision;
        print_json(j);
      } else {
        std::cout << "ok: " << key_human(a.key) << " written: version " << r->kv.version << " at revision "
                  << r->revision << "\n";
      }
      return kExitOk;
    };
  });

  // get
  auto* get = strong->add_subcommand("get", "Read a key (linearizable), optionally as of a revision or a time");
  get->add_option("KEY", a.key, "Key")->required();
  auto* rev = get->add_option("--rev", a.rev, "Read as of this revision")->check(CLI::PositiveNumber);
  get->add_option("--at", a.at_text,
                  "Read as of this time: RFC 3339 (2024-05-01T12:34:56Z, 2024-05-01T14:34:56.789+02:00) or ms "
                  "since the epoch")
      ->excludes(rev);
  get->add_flag("--stale", a.stale,
                "Answer from the node asked, without the leader: works without a leader, may miss recent writes");
  get->footer(R"HELP(A missing key prints 'not found' (JSON: value null, version 0) and exits 0.
--json prints exactly:
  {"key":K,"value":V,"version":N,"create_revision":C,"mod_revision":R,"modified_by":A,"modified_at":T}

Examples:
  stig strong get stock:sku-9
  stig --json strong get stock:sku-9 --rev 41
  stig strong get stock:sku-9 --at 2024-05-01T12:00:00Z)HELP");
  get->callback([&g, &action] {
    action = [&g]() -> int {
      stigmergy::GetOptions o;
      o.revision = a.rev;
      o.stale = a.stale;
      if (!a.at_text.empty()) {
        auto t = stigmergy::parse_time_ms(a.at_text);
        if (!t) return fail("--at: " + t.error().message, kExitUsage);
        o.at_ms = *t;
      }
      auto c = connect(g);
      if (!c) return fail_strong(c.error());
      auto r = c->strong_get(a.key, o);
      if (!r) return fail_strong(r.error());
      if (g.json) {
        print_json(kv_json(a.key, r->found ? &r->kv : nullptr));
      } else if (r->found) {
        print_kv_human(r->kv);
      } else {
        std::cout << key_human(a.key) << ": not found (at revision " << r->revision << ")\n";
      }
      return kExitOk;
    };
  });

  // del
  auto* del = strong->add_subcommand("del", "Delete a key (optionally at an expected version, or fenced)");
  del->add_option("KEY", a.key, "Key")->required();
  auto* expect_del = del->add_option("--expect-version", a.expect_version,
                                     "Refuse (exit 3) unless the key is at this version")
                         ->check(CLI::Range(int64_t{0}, INT64_MAX));
  add_fence_option(del, a);
  auto* fence_del = a.fence_opt;
  del->footer(R"HELP(Deleting a missing key is not an error: it prints 'not found' (JSON: "deleted":false).

Examples:
  stig strong del order-17
  stig --json strong del order-17 --expect-version 3)HELP");
  del->callback([&g, &action, expect_del, fence_del] {
    action = [&g, expect_del, fence_del]() -> int {
      a.fence_opt = fence_del;
      stigmergy::DeleteOptions o;
      if (expect_del->count() > 0) o.expect_version = static_cast<uint64_t>(a.expect_version);
      auto f = fence_of(a);
      if (!f) return fail_strong(f.error());
      o.fence = *f;
      auto c = connect(g);
      if (!c) return fail_strong(c.error());
      auto r = c->strong_delete(a.key, o);
      if (!r) return fail_strong(r.error());
      if (g.json) {
        print_json(json{{"key", bytes_json(a.key)}, {"deleted", r->found}, {"revision", r->revision}});
      } else if (r->found) {
        std::cout << "ok: " << key_human(a.key) << " deleted at revision " << r->revision << "\n";
      } else {
        std::cout << key_human(a.key) << ": not found (nothing deleted)\n";
      }
      return kExitOk;
    };
  });

  // cas
  auto* cas = strong->add_subcommand("cas", "Compare-and-swap: set NEW if the value is EXPECTED (else exit 3)");
  cas->add_option("KEY", a.key, "Key")->required();
  cas->add_option("EXPECTED", a.expected, "The value the key must hold now")->required();
  cas->add_option("NEW", a.value, "The value to set")->required();
  add_fence_option(cas, a);
  auto* fence_cas = a.fence_opt;
  cas->footer(R"HELP(Refused (exit 3, one line saying why) when the key is missing or holds another value.

Examples:
  stig strong cas stock:sku-9 1 0
  stig strong cas order-17 reserved charged --fence charge:order-17:42)HELP");
  cas->callback([&g, &action, fence_cas] {
    action = [&g, fence_cas]() -> int {
      a.fence_opt = fence_cas;
      auto f = fence_of(a);
      if (!f) return fail_strong(f.error());
      auto c = connect(g);
      if (!c) return fail_strong(c.error());
      auto r = c->strong_cas(a.key, a.expected, a.value, *f);
      if (!r) return fail_strong(r.error());
      if (g.json) {
        json j = kv_json(a.key, &r->kv);
        j["revision"] = r->revision;
        print_json(j);
      } else {
        std::cout << "ok: " << key_human(a.key) << " = " << bytes_human(a.value) << " (version " << r->kv.version
                  << ", revision " << r->revision << ")\n";
      }
      return kExitOk;
    };
  });

  // txn
  auto* txn = strong->add_subcommand("txn", "Run a JSON transaction read from stdin (compares, then success or failure ops)");
  txn->footer(R"HELP(Reads one JSON object from standard input:
  {"compare": [ {"key":"k","version":3},             # op defaults to "="
                {"key":"k","value":"v","op":"!="},   # ops: = != < >
                {"key":"k","exists":false},          # exists: = and != only
                {"key":"k","mod_revision":7,"op":"<"} ],
   "success": [ {"put":{"key":"k","value":"v"}}, {"del":{"key":"k"}}, {"get":{"key":"k"}} ],
   "failure": [ ...same ops... ],
   "fence": "LOCK:TOKEN"}                            # optional
Keys and values are strings, or {"base64":"..."} for bytes. Every compare must hold
for "success" to run, else "failure" runs; all at one revision. Unknown fields are errors.
Output: "succeeded" and one result per op run (gets as in 'strong get --json').
Invalid JSON or schema: one line naming the problem, exit 2. A refused fence: exit 3.
A transaction whose compares fail is not an error (exit 0, "succeeded": false).

Example:
  echo '{"compare":[{"key":"stock:sku-9","value":"1"}],
         "success":[{"put":{"key":"stock:sku-9","value":"0"}},{"put":{"key":"order-17","value":"reserved"}}],
         "failure":[{"get":{"key":"stock:sku-9"}}]}' | stig strong txn)HELP");
  txn->callback([&g, &action] {
    action = [&g]() -> int {
      std::ostringstream in;
      in << std::cin.rdbuf();
      auto t = parse_txn_json(in.str());
      if (!t) return fail(t.error().message, kExitUsage);
      auto c = connect(g);
      if (!c) return fail_strong(c.error());
      auto r = c->strong_txn(*t);
      if (!r) return fail_strong(r.error());
      const auto& ops = r->succeeded ? t->success : t->failure;
      if (g.json) {
        json j;
        j["succeeded"] = r->succeeded;
        j["revision"] = r->revision;
        j["results"] = json::array();
        for (size_t i = 0; i < r->results.size(); ++i) {
          const auto& res = r->results[i];
          const std::string key = i < ops.size() ? ops[i].key : res.kv.key;
          json one;
          switch (res.kind) {
            case stigmergy::TxnOp::Kind::kGet:
              one = json{{"op", "get"}};
              one.update(kv_json(key, res.found ? &res.kv : nullptr));
              break;
            case stigmergy::TxnOp::Kind::kPut:
              one = json{{"op", "put"}, {"key", bytes_json(key)}, {"version", res.kv.version}};
              break;
            case stigmergy::TxnOp::Kind::kDelete:
              one = json{{"op", "del"}, {"key", bytes_json(key)}, {"deleted", res.found}};
              break;
          }
          j["results"].push_back(std::move(one));
        }
        print_json(j);
        return kExitOk;
      }
      std::cout << (r->succeeded ? "succeeded" : "compares failed: ran the failure branch") << " at revision "
                << r->revision << "\n";
      for (size_t i = 0; i < r->results.size(); ++i) {
        const auto& res = r->results[i];
        const std::string key = key_human(i < ops.size() ? ops[i].key : res.kv.key);
        switch (res.kind) {
          case stigmergy::TxnOp::Kind::kGet:
            if (res.found) {
              std::cout << "  get " << key << " = " << bytes_human(res.kv.value) << " (version " << res.kv.version
                        << ")\n";
            } else {
              std::cout << "  get " << key << ": not found\n";
            }
            break;
          case stigmergy::TxnOp::Kind::kPut:
            std::cout << "  put " << key << ": version " << res.kv.version << "\n";
            break;
          case stigmergy::TxnOp::Kind::kDelete:
            std::cout << "  del " << key << (res.found ? ": deleted" : ": not found") << "\n";
            break;
        }
      }
      return kExitOk;
    };
  });

  // history
  auto* history = strong->add_subcommand("history", "A key's versions, newest first (deletions included)");
  history->add_option("KEY", a.key, "Key")->required();
  history->add_option("--limit", a.limit, "At most this many versions (default: the node's page, 100)");
  history->footer(R"HELP(Examples:
  stig strong history order-17
  stig --json strong history order-17 --limit 5)HELP");
  history->callback([&g, &action] {
    action = [&g]() -> int {
      auto c = connect(g);
      if (!c) return fail_strong(c.error());
      stigmergy::HistoryOptions o;
      o.limit = a.limit;
      auto r = c->strong_history(a.key, o);
      if (!r) return fail_strong(r.error());
      if (g.json) {
        json j;
        j["key"] = bytes_json(a.key);
        j["versions"] = json::array();
        for (const auto& v : r->versions) {
          json one = kv_json(a.key, &v);
          if (v.deleted) one["value"] = nullptr;
          one["deleted"] = v.deleted;
          j["versions"].push_back(std::move(one));
        }
        j["more"] = r->more;
        j["compact_revision"] = r->compact_revision;
        print_json(j);
        return kExitOk;
      }
      if (r->versions.empty()) std::cout << key_human(a.key) << ": no history\n";
      for (const auto& v : r->versions) {
        std::cout << "revision " << v.mod_revision << ": ";
        if (v.deleted) {
          std::cout << "deleted";
        } else {
          std::cout << "version " << v.version << " = " << bytes_human(v.value);
        }
        std::cout << " by " << bytes_human(v.modified_by) << " at " << stigmergy::format_iso8601_ms(v.modified_at_ms)
                  << "\n";
      }
      if (r->more) std::cout << "(older versions not shown)\n";
      return kExitOk;
    };
  });

  // list
  auto* list = strong->add_subcommand("list", "Live keys with a prefix, in key order, at one revision");
  list->add_option("PREFIX", a.prefix, "Key prefix (\"\" lists every key)")->required();
  list->add_option("--limit", a.limit, "At most this many keys (default: all, fetched page by page)");
  list->add_option("--rev", a.rev, "List as of this revision")->check(CLI::PositiveNumber);
  list->footer(R"HELP(All pages are read at the revision of the first, so the listing is one snapshot.

Examples:
  stig strong list stock:
  stig --json strong list order- --limit 100 --rev 812)HELP");
  list->callback([&g, &action] {
    action = [&g]() -> int {
      auto c = connect(g);
      if (!c) return fail_strong(c.error());
      auto r = c->strong_list_all(a.prefix, a.rev, a.limit);
      if (!r) return fail_strong(r.error());
      if (g.json) {
        json j;
        j["prefix"] = bytes_json(a.prefix);
        j["revision"] = r->revision;
        j["kvs"] = json::array();
        for (const auto& kv : r->kvs) j["kvs"].push_back(kv_json(kv.key, &kv));
        j["more"] = r->more;
        print_json(j);
        return kExitOk;
      }
      for (const auto& kv : r->kvs) {
        std::cout << key_human(kv.key) << " = " << bytes_human(kv.value) << "  (version " << kv.version << ")\n";
      }
      std::cout << "(" << r->kvs.size() << " key" << (r->kvs.size() == 1 ? "" : "s") << " at revision " << r->revision
                << (r->more ? "; more not shown" : "") << ")\n";
      return kExitOk;
    };
  });
}

}  // namespace stig_cli
