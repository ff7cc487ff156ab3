// Access rules: which agent may read, write or administer which keys.
//
// A rule gives a subject (an agent, "agent:NAME", or a role, "role:NAME")
// one permission on every key that starts with a prefix ("" = every key).
// Permissions are ordered: admin implies write implies read. An agent holds
// its own rules and the rules of every role it is bound to. Lazy keys,
// strong keys and lock names share one prefix space: one rule covers all
// three. The configured admin agent (AccessOptions::admin_agent) holds admin
// on everything without any rule, so a fresh cluster can be set up; it
// cannot be revoked. Global admin (admin on the empty prefix) is what ACL
// changes, compaction, acting for another agent and the admin verbs need.
//
// The table lives in the strong state machine: rules change only by applied
// Raft entries and travel in snapshots, so every node that applied the same
// log evaluates every request the same way (docs/access-control.md).
//
// Evaluation is pure and allocation-free: allows() looks the agent and its
// roles up by string_view and scans each subject's prefixes in sorted order
// up to the key, so its cost is the number of rules of that agent and its
// roles, not of the table. Every mutation validates its input as untrusted
// (names non-empty and bounded, prefixes bounded, permissions known, total
// rules and bindings bounded) and changes nothing when it refuses.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>

#include "replication/status.h"
#include "stigmergy.pb.h"
#include "strong.pb.h"

namespace stig::replication {

namespace pb = stigmergy::v1;

enum class Permission : uint8_t { kRead = 1, kWrite = 2, kAdmin = 3 };

// "read", "write", "admin".
std::string_view permission_name(Permission p);
// The wire value, or nullopt for ACL_PERMISSION_UNSPECIFIED and unknown values.
std::optional<Permission> permission_from_proto(int value);

// Access control settings; every node of a cluster must use the same ones
// (they decide how replicated strong commands apply).
struct AccessOptions {
  bool enabled = false;                // off: no rule is checked (the identity rule still applies)
  std::string admin_agent = "admin";   // holds admin on everything, always
  size_t max_name_bytes = 256;         // agent and role names (the agent limit of the strong path)
  size_t max_prefix_bytes = 4096;      // the key limit
  size_t max_rules = 10000;
  size_t max_bindings = 10000;
};

class AclTable {
 public:
  explicit AclTable(AccessOptions options = {}) : options_(std::move(options)) {}

  const AccessOptions& options() const { return options_; }
  bool enabled() const { return options_.enabled; }

  // Mutations. An invalid rule or binding is an invalid_argument status (a
  // one-line reason) and changes nothing. grant/bind of what is already
  // there is a no-op; revoke/unbind set *removed to whether it was there.
  Status grant(const pb::AclRule& rule);
  Status revoke(const pb::AclRule& rule, bool* removed);
  Status bind(const pb::AclBinding& binding);
  Status unbind(const pb::AclBinding& binding, bool* removed);

  // Whether `agent` holds `p` on `key` (by the admin agent, its own rules
  // or a role's). Ignores enabled(): callers decide whether to ask.
  bool allows(std::string_view agent, Permission p, std::string_view key) const;
  bool is_global_admin(std::string_view agent) const { return allows(agent, Permission::kAdmin, {}); }

  // allows(), as a status whose message is the one-line refusal naming the
  // agent, the key and the missing permission.
  Status check(std::string_view agent, Permission p, std::string_view key) const;

  // What a request needs, checked against this table: every key it reads
  // (read), writes (write), lock names (write to take or release, read for a
  // fence), ranges (read on the prefix every key of the range shares),
  // compaction and ACL changes (global admin). Cluster status and sessions
  // need nothing. Admin verbs (admin partition/heal) need global admin.
  // Does not look at enabled().
  Status authorize(std::string_view agent, const pb::Request& request) const;
  Status authorize(std::string_view agent, const pb::StrongRequest& request) const;

  size_t rules() const { return rules_; }
  size_t bindings() const { return bindings_; }

  // Rules by subject (agents, then roles, each by name), then prefix, then
  // permission; bindings by agent, then role.
  void list(pb::StrongResponse* out) const;
  void to_snapshot(pb::StrongSnapshot* out) const;
  // Validates every rule and binding (as grant/bind do); a bad or repeated
  // one is a corruption error.
  Status from_snapshot(const pb::StrongSnapshot& snapshot);

 private:
  // One subject's rules: prefix -> bit mask of permissions (bit 1 << p).
  using Grants = std::map<std::string, uint8_t, std::less<>>;
  enum class Kind { kAgent, kRole };
  struct Subject {
    Kind kind;
    std::string_view name;
  };

  // Parses "agent:NAME" / "role:NAME"; the error says what is wrong.
  Status parse_subject(std::string_view subject, Subject* out) const;
  Status validate_rule(const pb::AclRule& rule, Subject* subject, Permission* p) const;
  Status validate_binding(const pb::AclBinding& binding) const;
  static bool grants_cover(const Grants& g, Permission p, std::string_view key);
  // Every rule and binding, in list() order.
  void emit(google::protobuf::RepeatedPtrField<pb::AclRule>* rules,
            google::protobuf::RepeatedPtrField<pb::AclBinding>* bindings) const;
  std::map<std::string, Grants, std::less<>>& grants_of(Kind k) { return k == Kind::kAgent ? agents_ : roles_; }

  AccessOptions options_;  // a copy: the owner may move
  std::map<std::string, Grants, std::less<>> agents_;
  std::map<std::string, Grants, std::less<>> roles_;
  std::map<std::string, std::set<std::string, std::less<>>, std::less<>> roles_of_;  // agent -> roles
  size_t rules_ = 0;
  size_t bindings_ = 0;
};

// The prefix every key of a range shares: the range's prefix, or the common
// prefix of [start, end) (any key k with start <= k < end starts with it),
// or "" when the range is open-ended.
std::string_view range_prefix(const pb::StrongRange& range);

}  // namespace stig::replication
