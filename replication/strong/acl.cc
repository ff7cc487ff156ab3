#include "replication/strong/acl.h"

#include "replication/printable.h"

namespace stig::replication {

namespace {

constexpr std::string_view kAgentPrefix = "agent:";
constexpr std::string_view kRolePrefix = "role:";

uint8_t bit(Permission p) { return static_cast<uint8_t>(1u << static_cast<unsigned>(p)); }

// The bits of p and every permission that implies it.
uint8_t at_least(Permission p) { return static_cast<uint8_t>(0xffu << static_cast<unsigned>(p)); }

std::string quoted(std::string_view bytes) { return "'" + printable(bytes, 128) + "'"; }

}  // namespace

std::string_view permission_name(Permission p) {
  switch (p) {
    case Permission::kRead: return "read";
    case Permission::kWrite: return "write";
    case Permission::kAdmin: return "admin";
  }
  return "unknown";
}

std::optional<Permission> permission_from_proto(int value) {
  switch (value) {
    case pb::ACL_READ: return Permission::kRead;
    case pb::ACL_WRITE: return Permission::kWrite;
    case pb::ACL_ADMIN: return Permission::kAdmin;
    default: return std::nullopt;
  }
}

std::string_view range_prefix(const pb::StrongRange& range) {
  if (range.start().empty() && range.end().empty()) return range.prefix();
  if (range.end().empty()) return {};  // [start, the last key): any key at all
  const std::string_view a = range.start(), b = range.end();
  size_t n = 0;
  while (n < a.size() && n < b.size() && a[n] == b[n]) ++n;
  return a.substr(0, n);
}

// --- validation -------------------------------------------------------------------

Status AclTable::parse_subject(std::string_view subject, Subject* out) const {
  std::string_view name;
  if (subject.starts_with(kAgentPrefix)) {
    out->kind = Kind::kAgent;
    name = subject.substr(kAgentPrefix.size());
  } else if (subject.starts_with(kRolePrefix)) {
    out->kind = Kind::kRole;
    name = subject.substr(kRolePrefix.size());
  } else {
    return Status::invalid_argument("subject " + quoted(subject) + " is neither agent:NAME nor role:NAME");
  }
  if (name.empty()) return Status::invalid_argument("subject " + quoted(subject) + " names no agent or role");
  if (name.size() > options_.max_name_bytes)
    return Status::invalid_argument("subject name is " + std::to_string(name.size()) + " bytes, over the limit of " +
                                    std::to_string(options_.max_name_bytes));
  out->name = name;
  return Status::ok();
}

Status AclTable::validate_rule(const pb::AclRule& rule, Subject* subject, Permission* p) const {
  if (Status st = parse_subject(rule.subject(), subject); !st.is_ok()) return st;
  const auto perm = permission_from_proto(rule.permission());
  if (!perm)
    return Status::invalid_argument("permission " + std::to_string(rule.permission()) +
                                    " is not one of read, write, admin");
  *p = *perm;
  if (rule.prefix().size() > options_.max_prefix_bytes)
    return Status::invalid_argument("prefix is " + std::to_string(rule.prefix().size()) +
                                    " bytes, over the key limit of " + std::to_string(options_.max_prefix_bytes));
  return Status::ok();
}

Status AclTable::validate_binding(const pb::AclBinding& binding) const {
  auto check_name = [&](const std::string& name, const std::string& what) {
    if (name.empty()) return Status::invalid_argument("a role binding names no " + what);
    if (name.size() > options_.max_name_bytes)
      return Status::invalid_argument(what + " name is " + std::to_string(name.size()) + " bytes, over the limit of " +
                                      std::to_string(options_.max_name_bytes));
    return Status::ok();
  };
  if (Status st = check_name(binding.agent(), "agent"); !st.is_ok()) return st;
  return check_name(binding.role(), "role");
}

// --- mutations ----------------------------------------------------------------------

Status AclTable::grant(const pb::AclRule& rule) {
  Subject s{};
  Permission p{};
  if (Status st = validate_rule(rule, &s, &p); !st.is_ok()) return st;
  auto& by_name = grants_of(s.kind);
  auto it = by_name.find(s.name);
  if (it != by_name.end()) {
    auto g = it->second.find(rule.prefix());
    if (g != it->second.end() && (g->second & bit(p)) != 0) return Status::ok();  // already there
  }
  if (rules_ >= options_.max_rules)
    return Status::invalid_argument("the cluster holds " + std::to_string(rules_) +
                                    " access rules, the limit; revoke some first");
  if (it == by_name.end()) it = by_name.emplace(std::string(s.name), Grants{}).first;
  it->second[rule.prefix()] |= bit(p);
  ++rules_;
  return Status::ok();
}

Status AclTable::revoke(const pb::AclRule& rule, bool* removed) {
  *removed = false;
  Subject s{};
  Permission p{};
  if (Status st = validate_rule(rule, &s, &p); !st.is_ok()) return st;
  auto& by_name = grants_of(s.kind);
  auto it = by_name.find(s.name);
  if (it == by_name.end()) return Status::ok();
  auto g = it->second.find(rule.prefix());
  if (g == it->second.end() || (g->second & bit(p)) == 0) return Status::ok();
  g->second = static_cast<uint8_t>(g->second & ~bit(p));
  if (g->second == 0) it->second.erase(g);
  if (it->second.empty()) by_name.erase(it);
  --rules_;
  *removed = true;
  return Status::ok();
}

Status AclTable::bind(const pb::AclBinding& binding) {
  if (Status st = validate_binding(binding); !st.is_ok()) return st;
  auto it = roles_of_.find(binding.agent());
  if (it != roles_of_.end() && it->second.count(binding.role()) != 0) return Status::ok();
  if (bindings_ >= options_.max_bindings)
    return Status::invalid_argument("the cluster holds " + std::to_string(bindings_) +
                                    " role bindings, the limit; unbind some first");
  if (it == roles_of_.end()) it = roles_of_.emplace(binding.agent(), std::set<std::string, std::less<>>{}).first;
  it->second.insert(binding.role());
  ++bindings_;
  return Status::ok();
}

Status AclTable::unbind(const pb::AclBinding& binding, bool* removed) {
  *removed = false;
  if (Status st = validate_binding(binding); !st.is_ok()) return st;
  auto it = roles_of_.find(binding.agent());
  if (it == roles_of_.end() || it->second.erase(binding.role()) == 0) return Status::ok();
  if (it->second.empty()) roles_of_.erase(it);
  --bindings_;
  *removed = true;
  return Status::ok();
}

// --- evaluation ----------------------------------------------------------------------

bool AclTable::grants_cover(const Grants& g, Permission p, std::string_view key) {
  // A prefix of `key` sorts at or before it: stop at the first prefix past it.
  for (const auto& [prefix, mask] : g) {
    if (std::string_view(prefix) > key) break;
    if ((mask & at_least(p)) != 0 && key.starts_with(prefix)) return true;
  }
  return false;
}

bool AclTable::allows(std::string_view agent, Permission p, std::string_view key) const {
  if (agent == options_.admin_agent) return true;
  if (auto it = agents_.find(agent); it != agents_.end() && grants_cover(it->second, p, key)) return true;
  if (auto r = roles_of_.find(agent); r != roles_of_.end())
    for (const auto& role : r->second)
      if (auto it = roles_.find(role); it != roles_.end() && grants_cover(it->second, p, key)) return true;
  return false;
}

Status AclTable::check(std::string_view agent, Permission p, std::string_view key) const {
  if (allows(agent, p, key)) return Status::ok();
  const std::string_view perm = permission_name(p);
  return Status::permission_denied("agent " + quoted(agent) + " may not " + std::string(perm) + " " + quoted(key) +
                                   " (no rule grants " + std::string(perm) + " on a prefix of it)");
}

namespace {

Status check_global_admin(const AclTable& acl, std::string_view agent, std::string_view what) {
  if (acl.is_global_admin(agent)) return Status::ok();
  return Status::permission_denied("agent '" + printable(agent, 128) + "' may not " + std::string(what) +
                                   " (needs admin on every key: a rule granting admin on the empty prefix)");
}

}  // namespace

Status AclTable::authorize(std::string_view agent, const pb::Request& request) const {
  switch (request.op_case()) {
    case pb::Request::kPut: return check(agent, Permission::kWrite, request.put().key());
    case pb::Request::kDel: return check(agent, Permission::kWrite, request.del().key());
    case pb::Request::kCounterAdd: return check(agent, Permission::kWrite, request.counter_add().key());
    case pb::Request::kSetAdd: return check(agent, Permission::kWrite, request.set_add().key());
    case pb::Request::kSetRemove: return check(agent, Permission::kWrite, request.set_remove().key());
    case pb::Request::kGet: return check(agent, Permission::kRead, request.get().key());
    case pb::Request::kCounterGet: return check(agent, Permission::kRead, request.counter_get().key());
    case pb::Request::kSetGet: return check(agent, Permission::kRead, request.set_get().key());
    case pb::Request::kAdminPartition: return check_global_admin(*this, agent, "run admin partition");
    case pb::Request::kAdminHeal: return check_global_admin(*this, agent, "run admin heal");
    case pb::Request::kStrong: return authorize(agent, request.strong());
    case pb::Request::kClusterStatus:
    case pb::Request::OP_NOT_SET: return Status::ok();  // anyone; or refused by the path as malformed
  }
  return Status::ok();
}

namespace {

Status check_fence(const AclTable& acl, std::string_view agent, const pb::Fence& fence) {
  // A fence reads the lock's holder and token.
  return fence.lock().empty() ? Status::ok() : acl.check(agent, Permission::kRead, fence.lock());
}

Status check_txn_op(const AclTable& acl, std::string_view agent, const pb::TxnOp& op) {
  switch (op.op_case()) {
    case pb::TxnOp::kPut: return acl.check(agent, Permission::kWrite, op.put().key());
    case pb::TxnOp::kDelete: return acl.check(agent, Permission::kWrite, op.delete_().key());
    case pb::TxnOp::kGet: return acl.check(agent, Permission::kRead, op.get().key());
    case pb::TxnOp::OP_NOT_SET: return Status::ok();  // refused as malformed by the state machine
  }
  return Status::ok();
}

}  // namespace

Status AclTable::authorize(std::string_view agent, const pb::StrongRequest& request) const {
  switch (request.op_case()) {
    case pb::StrongRequest::kPut: {
      if (Status st = check(agent, Permission::kWrite, request.put().key()); !st.is_ok()) return st;
      return check_fence(*this, agent, request.put().fence());
    }
    case pb::StrongRequest::kDelete: {
      if (Status st = check(agent, Permission::kWrite, request.delete_().key()); !st.is_ok()) return st;
      return check_fence(*this, agent, request.delete_().fence());
    }
    case pb::StrongRequest::kCas: {
      if (Status st = check(agent, Permission::kWrite, request.cas().key()); !st.is_ok()) return st;
      return check_fence(*this, agent, request.cas().fence());
    }
    case pb::StrongRequest::kTxn: {
      const auto& t = request.txn();
      for (const auto& c : t.compare())
        if (Status st = check(agent, Permission::kRead, c.key()); !st.is_ok()) return st;
      for (const auto* branch : {&t.success(), &t.failure()})
        for (const auto& op : *branch)
          if (Status st = check_txn_op(*this, agent, op); !st.is_ok()) return st;
      return check_fence(*this, agent, t.fence());
    }
    case pb::StrongRequest::kGet: return check(agent, Permission::kRead, request.get().key());
    case pb::StrongRequest::kHistory: return check(agent, Permission::kRead, request.history().key());
    case pb::StrongRequest::kRange: return check(agent, Permission::kRead, range_prefix(request.range()));
    case pb::StrongRequest::kLockAcquire: return check(agent, Permission::kWrite, request.lock_acquire().name());
    case pb::StrongRequest::kLockRelease: return check(agent, Permission::kWrite, request.lock_release().name());
    case pb::StrongRequest::kCompact: return check_global_admin(*this, agent, "compact the strong store");
    case pb::StrongRequest::kAclGrant:
    case pb::StrongRequest::kAclRevoke:
    case pb::StrongRequest::kAclBind:
    case pb::StrongRequest::kAclUnbind: return check_global_admin(*this, agent, "change access rules");
    case pb::StrongRequest::kAclList: return check_global_admin(*this, agent, "list access rules");
    case pb::StrongRequest::kSessionGrant:
    case pb::StrongRequest::kSessionKeepalive:
    case pb::StrongRequest::kSessionRevoke:
    case pb::StrongRequest::OP_NOT_SET: return Status::ok();
  }
  return Status::ok();
}

// --- listing and snapshots ------------------------------------------------------------

void AclTable::emit(google::protobuf::RepeatedPtrField<pb::AclRule>* rules,
                    google::protobuf::RepeatedPtrField<pb::AclBinding>* bindings) const {
  auto add = [&](std::string_view kind, const auto& by_name) {
    for (const auto& [name, grants] : by_name)
      for (const auto& [prefix, mask] : grants)
        for (Permission p : {Permission::kRead, Permission::kWrite, Permission::kAdmin})
          if ((mask & bit(p)) != 0) {
            pb::AclRule* r = rules->Add();
            r->set_subject(std::string(kind) + name);
            r->set_permission(static_cast<pb::AclPermission>(p));
            r->set_prefix(prefix);
          }
  };
  add(kAgentPrefix, agents_);
  add(kRolePrefix, roles_);
  for (const auto& [agent, set] : roles_of_)
    for (const auto& role : set) {
      pb::AclBinding* b = bindings->Add();
      b->set_agent(agent);
      b->set_role(role);
    }
}

void AclTable::list(pb::StrongResponse* out) const { emit(out->mutable_acl_rules(), out->mutable_acl_bindings()); }

void AclTable::to_snapshot(pb::StrongSnapshot* out) const {
  emit(out->mutable_acl_rules(), out->mutable_acl_bindings());
}

Status AclTable::from_snapshot(const pb::StrongSnapshot& snapshot) {
  AclTable t(options_);
  // The snapshot was taken under the same limits (options are cluster-wide);
  // counts over them are corruption, not a reason to drop rules silently.
  if (static_cast<size_t>(snapshot.acl_rules_size()) > options_.max_rules ||
      static_cast<size_t>(snapshot.acl_bindings_size()) > options_.max_bindings)
    return Status::corruption("the strong snapshot holds more access rules or bindings than the limit");
  for (const auto& r : snapshot.acl_rules()) {
    const size_t before = t.rules_;
    if (Status st = t.grant(r); !st.is_ok()) return Status::corruption("a snapshot access rule is bad: " + st.message());
    if (t.rules_ == before) return Status::corruption("a snapshot access rule is repeated");
  }
  for (const auto& b : snapshot.acl_bindings()) {
    const size_t before = t.bindings_;
    if (Status st = t.bind(b); !st.is_ok()) return Status::corruption("a snapshot role binding is bad: " + st.message());
    if (t.bindings_ == before) return Status::corruption("a snapshot role binding is repeated");
  }
  *this = std::move(t);
  return Status::ok();
}

}  // namespace stig::replication
