// `stig acl ...`: change and list the cluster's access rules
// (docs/access-control.md). Rules live in the strong store, so these verbs
// go to the Raft leader like `stig strong`; changing or listing them needs
// global admin when the cluster enforces rules.
//
// Output: one result on stdout (one JSON object with --json). Exit status:
// 0 ok, 1 no leader / unreachable / no such rule to revoke, 2 a rule that
// does not parse, 4 the outcome of a change is unknown, 5 PERMISSION_DENIED.
#include <iostream>
#include <optional>

#include "client/cli/common.h"
#include "stigmergy/client.h"

namespace stig_cli {
namespace {

using stigmergy::AclPermission;

const char* permission_word(AclPermission p) {
  switch (p) {
    case AclPermission::kRead: return "read";
    case AclPermission::kWrite: return "write";
    case AclPermission::kAdmin: return "admin";
  }
  return "read";
}

std::optional<AclPermission> parse_permission(const std::string& word) {
  if (word == "read") return AclPermission::kRead;
  if (word == "write") return AclPermission::kWrite;
  if (word == "admin") return AclPermission::kAdmin;
  return std::nullopt;
}

// SUBJECT PERM PREFIX as typed; the one-line error names what does not parse.
stigmergy::Result<stigmergy::AclRule> parse_rule(const std::string& subject, const std::string& perm,
                                                 const std::string& prefix) {
  const bool agent = subject.rfind("agent:", 0) == 0, role = subject.rfind("role:", 0) == 0;
  if (!agent && !role)
    return stigmergy::make_error(stigmergy::ErrorCode::kInvalidArgument,
                                 "SUBJECT '" + subject + "' must be agent:NAME or role:NAME");
  if (subject.size() == (agent ? 6u : 5u))
    return stigmergy::make_error(stigmergy::ErrorCode::kInvalidArgument,
                                 "SUBJECT '" + subject + "' names no " + (agent ? "agent" : "role"));
  auto p = parse_permission(perm);
  if (!p)
    return stigmergy::make_error(stigmergy::ErrorCode::kInvalidArgument,
                                 "PERM '" + perm + "' must be read, write or admin");
  return stigmergy::AclRule{subject, *p, prefix};
}

struct Args {
  std::string subject, permission, prefix, agent, role;
};

// Both `grant` and `revoke` take SUBJECT PERM PREFIX.
CLI::App* add_rule_verb(CLI::App* acl, const char* name, const char* what, Args& a) {
  auto* cmd = acl->add_subcommand(name, what);
  cmd->add_option("SUBJECT", a.subject, "agent:NAME or role:NAME")->required();
  cmd->add_option("PERM", a.permission, "read, write or admin (admin implies write implies read)")->required();
  cmd->add_option("PREFIX", a.prefix, "Key prefix the rule covers; '' = every key")->required();
  return cmd;
}

}  // namespace

void add_acl_verbs(CLI::App& app, Globals& g, std::function<int()>& action) {
  static Args a;
  auto* acl = app.add_subcommand("acl", "Access rules: who may read, write or administer which key prefixes");
  acl->require_subcommand(1);
  acl->footer(R"HELP(A rule gives an agent (agent:NAME) or a role (role:NAME) read, write or admin
on every key that starts with PREFIX: lazy keys, strong keys and lock names alike.
admin implies write implies read; admin on '' (every key) is global admin, needed
for acl changes and admin verbs. Agents get a role's rules with 'acl bind'.
Rules are enforced only by nodes started with --access-control; the agent named
by stigd --admin-agent (default 'admin') always holds global admin.

Examples:
  stig --agent admin acl grant agent:bob write orders/
  stig --agent admin acl grant role:auditors read ''
  stig --agent admin acl bind carol auditors
  stig --agent admin acl revoke agent:bob write orders/
  stig --agent admin --json acl list

Exit status: 0 ok, 1 no leader/unreachable or no such rule, 2 a rule that does not
parse, 4 outcome unknown, 5 PERMISSION_DENIED (the agent is not a global admin).)HELP");

  auto change = [&g](const char* verb) {
    return [&g, verb]() -> int {
      auto rule = parse_rule(a.subject, a.permission, a.prefix);
      if (!rule) return fail_strong(rule.error());
      auto c = connect(g);
      if (!c) return fail_strong(c.error());
      const bool grant = std::string(verb) == "granted";
      auto r = grant ? c->acl_grant(*rule) : c->acl_revoke(*rule);
      if (!r) return fail_strong(r.error());
      if (g.json) {
        print_json(json{{"subject", bytes_json(rule->subject)},
                        {"permission", permission_word(rule->permission)},
                        {"prefix", bytes_json(rule->prefix)},
                        {grant ? "granted" : "revoked", true}});
      } else {
        std::cout << "ok: " << verb << " " << permission_word(rule->permission) << " on '"
                  << key_human(rule->prefix) << "' to " << key_human(rule->subject) << "\n";
      }
      return kExitOk;
    };
  };
  auto* grant = add_rule_verb(acl, "grant", "Give SUBJECT PERM on every key starting with PREFIX", a);
  grant->footer("Example:\n  stig --agent admin acl grant agent:bob write orders/");
  grant->callback([&action, change] { action = change("granted"); });
  auto* revoke = add_rule_verb(acl, "revoke", "Remove exactly the rule SUBJECT PERM PREFIX", a);
  revoke->footer(
      "Removes only that rule (a grant of admin is revoked with admin, not write).\n"
      "Example:\n  stig --agent admin acl revoke agent:bob write orders/");
  revoke->callback([&action, change] { action = change("revoked"); });

  auto binding = [&g](bool bind) {
    return [&g, bind]() -> int {
      auto c = connect(g);
      if (!c) return fail_strong(c.error());
      auto r = bind ? c->acl_bind(a.agent, a.role) : c->acl_unbind(a.agent, a.role);
      if (!r) return fail_strong(r.error());
      if (g.json) {
        print_json(json{{"agent", bytes_json(a.agent)}, {"role", bytes_json(a.role)}, {"bound", bind}});
      } else {
        std::cout << "ok: agent " << key_human(a.agent) << (bind ? " bound to" : " unbound from") << " role "
                  << key_human(a.role) << "\n";
      }
      return kExitOk;
    };
  };
  auto* bind = acl->add_subcommand("bind", "Give AGENT every rule of ROLE");
  bind->add_option("AGENT", a.agent, "Agent name")->required();
  bind->add_option("ROLE", a.role, "Role name (rules name it as role:ROLE)")->required();
  bind->footer("Example:\n  stig --agent admin acl bind carol auditors");
  bind->callback([&action, binding] { action = binding(true); });
  auto* unbind = acl->add_subcommand("unbind", "Take ROLE's rules away from AGENT");
  unbind->add_option("AGENT", a.agent, "Agent name")->required();
  unbind->add_option("ROLE", a.role, "Role name")->required();
  unbind->footer("Example:\n  stig --agent admin acl unbind carol auditors");
  unbind->callback([&action, binding] { action = binding(false); });

  auto* list = acl->add_subcommand("list", "Print every rule and role binding");
  list->footer(R"HELP(Human output: one line per rule (SUBJECT PERM 'PREFIX') and per binding.
--json prints exactly:
  {"rules":[{"subject":S,"permission":P,"prefix":X}...],"bindings":[{"agent":A,"role":R}...],"revision":N}

Example:
  stig --agent admin --json acl list)HELP");
  list->callback([&g, &action] {
    action = [&g]() -> int {
      auto c = connect(g);
      if (!c) return fail_strong(c.error());
      auto r = c->acl_list();
      if (!r) return fail_strong(r.error());
      if (g.json) {
        json j{{"rules", json::array()}, {"bindings", json::array()}, {"revision", r->revision}};
        for (const auto& rule : r->rules)
          j["rules"].push_back(json{{"subject", bytes_json(rule.subject)},
                                    {"permission", permission_word(rule.permission)},
                                    {"prefix", bytes_json(rule.prefix)}});
        for (const auto& b : r->bindings)
          j["bindings"].push_back(json{{"agent", bytes_json(b.agent)}, {"role", bytes_json(b.role)}});
        print_json(j);
        return kExitOk;
      }
      if (r->rules.empty() && r->bindings.empty()) std::cout << "no rules\n";
      for (const auto& rule : r->rules)
        std::cout << key_human(rule.subject) << " " << permission_word(rule.permission) << " '"
                  << key_human(rule.prefix) << "'\n";
      for (const auto& b : r->bindings)
        std::cout << "agent:" << key_human(b.agent) << " in role:" << key_human(b.role) << "\n";
      return kExitOk;
    };
  });
}

}  // namespace stig_cli
