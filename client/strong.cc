// The strong path's client calls: build a StrongRequest, send it through
// the leader-following loop (client.cc) and turn the StrongResponse into
// the public reply types. Arguments that no node would accept are refused
// here, before anything is sent, with kInvalidArgument.
#include <algorithm>
#include <thread>

#include "client/internal.h"
#include "stigmergy.pb.h"
#include "stigmergy/client.h"

namespace stigmergy {

namespace {

namespace pb = stigmergy::v1;
using std::chrono::milliseconds;

// Mirrors the state machine's limits (docs/strong-state-machine.md), so the
// common mistakes get a local, precise message.
constexpr size_t kMaxKeyBytes = 4096;
constexpr int64_t kMinTtlMs = 100;
constexpr int64_t kMaxTtlMs = 24LL * 3600 * 1000;
constexpr int64_t kMaxWaitMs = 3600LL * 1000;

Result<void> check_strong_key(std::string_view key, const char* what = "key") {
  if (key.empty()) return make_error(ErrorCode::kInvalidArgument, std::string(what) + " must not be empty");
  if (key.size() > kMaxKeyBytes) {
    return make_error(ErrorCode::kInvalidArgument, std::string(what) + " is " + std::to_string(key.size()) +
                                                       " bytes; at most 4096 are allowed");
  }
  return {};
}

Result<void> check_fence(const std::optional<Fence>& f) {
  if (!f) return {};
  if (auto ok = check_strong_key(f->lock, "fence lock name"); !ok) return ok;
  if (f->token == 0) return make_error(ErrorCode::kInvalidArgument, "fence token must be positive");
  return {};
}

void set_fence(const std::optional<Fence>& f, pb::Fence* out) {
  out->set_lock(f->lock);
  out->set_token(f->token);
}

KeyValue from_pb(const pb::KeyValue& kv) {
  return KeyValue{kv.key(),         kv.value(),       kv.version(),        kv.create_revision(),
                  kv.mod_revision(), kv.modified_by(), kv.modified_at_ms(), kv.deleted()};
}

Result<pb::Response> call(Client::Impl& impl, const pb::StrongRequest& req, bool write,
                                milliseconds extra_wait = milliseconds(0)) {
  auto r = internal::strong_call(impl, req, extra_wait, write);
  if (!r) return r.error();
  if (!r->has_strong()) {
    return make_error(ErrorCode::kProtocol, "node " + (r->node().empty() ? std::string("?") : r->node()) +
                                                " sent an unexpected reply (expected a strong result)",
                      r->node());
  }
  return r;
}

StrongWriteReply write_reply(const pb::Response& r) {
  const auto& s = r.strong();
  return StrongWriteReply{s.found() || s.has_kv(), from_pb(s.kv()), s.revision(), r.node()};
}

pb::Compare::Op op_pb(CompareOp op) {
  switch (op) {
    case CompareOp::kEqual: return pb::Compare::EQUAL;
    case CompareOp::kNotEqual: return pb::Compare::NOT_EQUAL;
    case CompareOp::kLess: return pb::Compare::LESS;
    case CompareOp::kGreater: return pb::Compare::GREATER;
  }
  return pb::Compare::EQUAL;
}

void add_op(const TxnOp& op, pb::TxnOp* out) {
  switch (op.kind) {
    case TxnOp::Kind::kPut:
      out->mutable_put()->set_key(op.key);
      out->mutable_put()->set_value(op.value);
      break;
    case TxnOp::Kind::kDelete: out->mutable_delete_()->set_key(op.key); break;
    case TxnOp::Kind::kGet: out->mutable_get()->set_key(op.key); break;
  }
}

}  // namespace

// ---------------------------------------------------------------------------
// Fences and the transaction builder

Result<Fence> parse_fence(std::string_view text) {
  const std::string shown(text);
  const auto colon = text.rfind(':');
  if (colon == std::string_view::npos || colon == 0 || colon + 1 == text.size()) {
    return make_error(ErrorCode::kInvalidArgument, "bad fence '" + shown + "' (expected LOCK:TOKEN, e.g. charge:42)");
  }
  uint64_t token = 0;
  for (char c : text.substr(colon + 1)) {
    if (c < '0' || c > '9') {
      return make_error(ErrorCode::kInvalidArgument,
                        "bad fence '" + shown + "': token '" + std::string(text.substr(colon + 1)) + "' is not a number");
    }
    if (token > (UINT64_MAX - 9) / 10) {
      return make_error(ErrorCode::kInvalidArgument, "bad fence '" + shown + "': token is too large");
    }
    token = token * 10 + static_cast<uint64_t>(c - '0');
  }
  if (token == 0) return make_error(ErrorCode::kInvalidArgument, "bad fence '" + shown + "': token must be positive");
  return Fence{std::string(text.substr(0, colon)), token};
}

Txn& Txn::if_value(std::string key, CompareOp op, std::string value) {
  compares.push_back(TxnCompare{std::move(key), TxnCompare::Target::kValue, op, std::move(value), 0, false});
  return *this;
}
Txn& Txn::if_version(std::string key, CompareOp op, uint64_t version) {
  compares.push_back(TxnCompare{std::move(key), TxnCompare::Target::kVersion, op, {}, version, false});
  return *this;
}
Txn& Txn::if_mod_revision(std::string key, CompareOp op, uint64_t revision) {
  compares.push_back(TxnCompare{std::move(key), TxnCompare::Target::kModRevision, op, {}, revision, false});
  return *this;
}
Txn& Txn::if_exists(std::string key, bool exists) {
  compares.push_back(TxnCompare{std::move(key), TxnCompare::Target::kExists, CompareOp::kEqual, {}, 0, exists});
  return *this;
}
Txn& Txn::then_put(std::string key, std::string value) {
  success.push_back(TxnOp{TxnOp::Kind::kPut, std::move(key), std::move(value)});
  return *this;
}
Txn& Txn::then_delete(std::string key) {
  success.push_back(TxnOp{TxnOp::Kind::kDelete, std::move(key), {}});
  return *this;
}
Txn& Txn::then_get(std::string key) {
  success.push_back(TxnOp{TxnOp::Kind::kGet, std::move(key), {}});
  return *this;
}
Txn& Txn::else_put(std::string key, std::string value) {
  failure.push_back(TxnOp{TxnOp::Kind::kPut, std::move(key), std::move(value)});
  return *this;
}
Txn& Txn::else_delete(std::string key) {
  failure.push_back(TxnOp{TxnOp::Kind::kDelete, std::move(key), {}});
  return *this;
}
Txn& Txn::else_get(std::string key) {
  failure.push_back(TxnOp{TxnOp::Kind::kGet, std::move(key), {}});
  return *this;
}
Txn& Txn::with_fence(Fence f) {
  fence = std::move(f);
  return *this;
}

// ---------------------------------------------------------------------------
// Keys

Result<StrongWriteReply> Client::strong_put(std::string_view key, std::string_view value, const PutOptions& o) {
  if (auto ok = check_strong_key(key); !ok) return ok.error();
  if (auto ok = check_fence(o.fence); !ok) return ok.error();
  pb::StrongRequest req;
  auto* p = req.mutable_put();
  p->set_key(std::string(key));
  p->set_value(std::string(value));
  if (o.expect_version) {
    p->set_has_expected_version(true);
    p->set_expected_version(*o.expect_version);
  }
  if (o.fence) set_fence(o.fence, p->mutable_fence());
  auto r = call(*impl_, req, true);
  if (!r) return r.error();
  return write_reply(*r);
}

Result<StrongGetReply> Client::strong_get(std::string_view key, const GetOptions& o) {
  if (auto ok = check_strong_key(key); !ok) return ok.error();
  if (o.revision != 0 && o.at_ms) {
    return make_error(ErrorCode::kInvalidArgument, "give a revision or a time to read at, not both");
  }
  if (o.at_ms && *o.at_ms < 0) return make_error(ErrorCode::kInvalidArgument, "the time to read at is before 1970");
  pb::StrongRequest req;
  auto* g = req.mutable_get();
  g->set_key(std::string(key));
  g->set_revision(o.revision);
  if (o.at_ms) g->set_at_ms(std::max<int64_t>(*o.at_ms, 1));  // 0 means "none" on the wire
  g->set_stale(o.stale);
  auto r = call(*impl_, req, false);
  if (!r) return r.error();
  StrongGetReply out;
  out.found = r->strong().found();
  if (out.found) out.kv = from_pb(r->strong().kv());
  out.revision = r->strong().revision();
  out.node = r->node();
  return out;
}

Result<StrongWriteReply> Client::strong_delete(std::string_view key, const DeleteOptions& o) {
  if (auto ok = check_strong_key(key); !ok) return ok.error();
  if (auto ok = check_fence(o.fence); !ok) return ok.error();
  pb::StrongRequest req;
  auto* d = req.mutable_delete_();
  d->set_key(std::string(key));
  if (o.expect_version) {
    d->set_has_expected_version(true);
    d->set_expected_version(*o.expect_version);
  }
  if (o.fence) set_fence(o.fence, d->mutable_fence());
  auto r = call(*impl_, req, true);
  if (!r) return r.error();
  StrongWriteReply out = write_reply(*r);
  out.found = r->strong().found();
  return out;
}

Result<StrongWriteReply> Client::strong_cas(std::string_view key, std::string_view expected,
                                            std::string_view new_value, const std::optional<Fence>& fence) {
  if (auto ok = check_strong_key(key); !ok) return ok.error();
  if (auto ok = check_fence(fence); !ok) return ok.error();
  pb::StrongRequest req;
  auto* c = req.mutable_cas();
  c->set_key(std::string(key));
  c->set_expected_value(std::string(expected));
  c->set_new_value(std::string(new_value));
  if (fence) set_fence(fence, c->mutable_fence());
  auto r = call(*impl_, req, true);
  if (!r) return r.error();
  return write_reply(*r);
}

Result<TxnReply> Client::strong_txn(const Txn& txn) {
  if (auto ok = check_fence(txn.fence); !ok) return ok.error();
  if (txn.success.empty() && txn.failure.empty()) {
    return make_error(ErrorCode::kInvalidArgument, "txn has no operations in either branch");
  }
  pb::StrongRequest req;
  auto* t = req.mutable_txn();
  for (size_t i = 0; i < txn.compares.size(); ++i) {
    const auto& c = txn.compares[i];
    if (auto ok = check_strong_key(c.key, "compare key"); !ok) return ok.error();
    auto* out = t->add_compare();
    out->set_key(c.key);
    out->set_op(op_pb(c.op));
    switch (c.target) {
      case TxnCompare::Target::kValue:
        out->set_target(pb::Compare::VALUE);
        out->set_value(c.value);
        break;
      case TxnCompare::Target::kVersion:
        out->set_target(pb::Compare::VERSION);
        out->set_number(c.number);
        break;
      case TxnCompare::Target::kModRevision:
        out->set_target(pb::Compare::MOD_REVISION);
        out->set_number(c.number);
        break;
      case TxnCompare::Target::kExists:
        if (c.op != CompareOp::kEqual && c.op != CompareOp::kNotEqual) {
          return make_error(ErrorCode::kInvalidArgument, "an exists compare takes only = or !=");
        }
        out->set_target(pb::Compare::EXISTS);
        out->set_exists(c.exists);
        break;
    }
  }
  for (const auto& op : txn.success) {
    if (auto ok = check_strong_key(op.key, "txn op key"); !ok) return ok.error();
    add_op(op, t->add_success());
  }
  for (const auto& op : txn.failure) {
    if (auto ok = check_strong_key(op.key, "txn op key"); !ok) return ok.error();
    add_op(op, t->add_failure());
  }
  if (txn.fence) set_fence(txn.fence, t->mutable_fence());
  auto r = call(*impl_, req, true);
  if (!r) return r.error();
  TxnReply out;
  out.succeeded = r->strong().succeeded();
  out.revision = r->strong().revision();
  out.node = r->node();
  const auto& ops = out.succeeded ? txn.success : txn.failure;
  for (int i = 0; i < r->strong().results_size(); ++i) {
    const auto& res = r->strong().results(i);
    TxnOpResult one;
    one.kind = static_cast<size_t>(i) < ops.size() ? ops[static_cast<size_t>(i)].kind : TxnOp::Kind::kGet;
    one.found = res.found() || one.kind == TxnOp::Kind::kPut;
    if (res.has_kv()) one.kv = from_pb(res.kv());
    out.results.push_back(std::move(one));
  }
  return out;
}

Result<HistoryReply> Client::strong_history(std::string_view key, const HistoryOptions& o) {
  if (auto ok = check_strong_key(key); !ok) return ok.error();
  pb::StrongRequest req;
  auto* h = req.mutable_history();
  h->set_key(std::string(key));
  h->set_limit(o.limit);
  h->set_before_revision(o.before_revision);
  auto r = call(*impl_, req, false);
  if (!r) return r.error();
  HistoryReply out;
  for (const auto& kv : r->strong().kvs()) out.versions.push_back(from_pb(kv));
  out.more = r->strong().more();
  out.compact_revision = r->strong().compact_revision();
  out.revision = r->strong().revision();
  out.node = r->node();
  return out;
}

Result<ListReply> Client::strong_list(std::string_view prefix, const ListOptions& o) {
  if (prefix.size() > kMaxKeyBytes) return make_error(ErrorCode::kInvalidArgument, "prefix is longer than 4096 bytes");
  pb::StrongRequest req;
  auto* g = req.mutable_range();
  g->set_prefix(std::string(prefix));
  g->set_limit(o.limit);
  g->set_revision(o.revision);
  g->set_start_after(o.start_after);
  auto r = call(*impl_, req, false);
  if (!r) return r.error();
  ListReply out;
  for (const auto& kv : r->strong().kvs()) out.kvs.push_back(from_pb(kv));
  out.more = r->strong().more();
  out.next_start_after = r->strong().next_start_after();
  out.revision = r->strong().revision();
  out.node = r->node();
  return out;
}

Result<ListReply> Client::strong_list_all(std::string_view prefix, uint64_t revision, size_t max_keys) {
  ListReply all;
  ListOptions o;
  o.revision = revision;
  while (true) {
    if (max_keys != 0) o.limit = static_cast<uint32_t>(std::min<size_t>(max_keys - all.kvs.size(), 10000));
    auto page = strong_list(prefix, o);
    if (!page) return page.error();
    // Every later page reads at the first page's revision: one snapshot.
    if (o.revision == 0) o.revision = page->revision;
    all.revision = page->revision;
    all.node = page->node;
    for (auto& kv : page->kvs) all.kvs.push_back(std::move(kv));
    all.more = page->more;
    all.next_start_after = page->next_start_after;
    if (!page->more || (max_keys != 0 && all.kvs.size() >= max_keys)) return all;
    o.start_after = page->next_start_after;
  }
}

Result<StrongWriteReply> Client::update(std::string_view key, const UpdateFn& fn, int max_attempts) {
  if (max_attempts < 1) return make_error(ErrorCode::kInvalidArgument, "update needs at least one attempt");
  std::optional<Error> last;
  for (int i = 0; i < max_attempts; ++i) {
    auto cur = strong_get(key);
    if (!cur) return cur.error();
    auto next = fn(cur->found ? std::optional<std::string>(cur->kv.value) : std::nullopt);
    if (!next) return next.error();
    PutOptions o;
    o.expect_version = cur->found ? cur->kv.version : 0;
    auto put = strong_put(key, *next, o);
    if (put || put.error().code != ErrorCode::kConflict) return put;
    last = put.error();
  }
  return make_error(ErrorCode::kConflict, "update of '" + std::string(key) + "' lost to concurrent writers " +
                                              std::to_string(max_attempts) + " times; last: " + last->message);
}

// ---------------------------------------------------------------------------
// Sessions and locks

Result<Session> Client::grant(std::chrono::milliseconds ttl) {
  if (ttl.count() < kMinTtlMs || ttl.count() > kMaxTtlMs) {
    return make_error(ErrorCode::kInvalidArgument,
                      "session TTL " + std::to_string(ttl.count()) + " ms is out of range (100 ms .. 24 h)");
  }
  pb::StrongRequest req;
  req.mutable_session_grant()->set_ttl_ms(ttl.count());
  auto r = call(*impl_, req, true);
  if (!r) return r.error();
  return Session{r->strong().session_id(), r->strong().ttl_ms()};
}

Result<Session> Client::keepalive(uint64_t session_id) {
  pb::StrongRequest req;
  req.mutable_session_keepalive()->set_session_id(session_id);
  auto r = call(*impl_, req, true);
  if (!r) return r.error();
  return Session{r->strong().session_id(), r->strong().ttl_ms()};
}

Result<void> Client::revoke(uint64_t session_id) {
  pb::StrongRequest req;
  req.mutable_session_revoke()->set_session_id(session_id);
  auto r = call(*impl_, req, true);
  if (!r) return r.error();
  return {};
}

Result<LockHold> Client::lock_acquire(std::string_view name, uint64_t session_id, std::chrono::milliseconds wait) {
  if (auto ok = check_strong_key(name, "lock name"); !ok) return ok.error();
  if (wait.count() < 0 || wait.count() > kMaxWaitMs) {
    return make_error(ErrorCode::kInvalidArgument,
                      "lock wait " + std::to_string(wait.count()) + " ms is out of range (0 .. 1 h)");
  }
  pb::StrongRequest req;
  auto* a = req.mutable_lock_acquire();
  a->set_name(std::string(name));
  a->set_session_id(session_id);
  a->set_wait_ms(wait.count());
  // The answer is held back until granted or the wait runs out: give every
  // attempt, and the whole call, that much more time.
  auto r = call(*impl_, req, true, wait);
  if (!r) return r.error();
  return LockHold{r->strong().lock().empty() ? std::string(name) : r->strong().lock(), r->strong().token(), session_id};
}

Result<void> Client::lock_release(std::string_view name, uint64_t session_id, uint64_t token) {
  if (auto ok = check_strong_key(name, "lock name"); !ok) return ok.error();
  pb::StrongRequest req;
  auto* a = req.mutable_lock_release();
  a->set_name(std::string(name));
  a->set_session_id(session_id);
  a->set_token(token);
  auto r = call(*impl_, req, true);
  if (!r) return r.error();
  return {};
}

// --- access rules -----------------------------------------------------------------------

namespace {

constexpr size_t kMaxNameBytes = 256;

Result<void> check_acl_name(std::string_view name, const std::string& what) {
  if (name.empty()) return make_error(ErrorCode::kInvalidArgument, what + " must not be empty");
  if (name.size() > kMaxNameBytes)
    return make_error(ErrorCode::kInvalidArgument, what + " is " + std::to_string(name.size()) + " bytes; at most 256 are allowed");
  return {};
}

Result<void> check_acl_rule(const AclRule& rule) {
  const std::string_view s = rule.subject;
  std::string_view name;
  if (s.starts_with("agent:")) {
    name = s.substr(6);
  } else if (s.starts_with("role:")) {
    name = s.substr(5);
  } else {
    return make_error(ErrorCode::kInvalidArgument, "subject '" + rule.subject + "' is neither agent:NAME nor role:NAME");
  }
  if (auto ok = check_acl_name(name, "the name in subject '" + rule.subject + "'"); !ok) return ok;
  if (rule.prefix.size() > kMaxKeyBytes)
    return make_error(ErrorCode::kInvalidArgument, "prefix is " + std::to_string(rule.prefix.size()) + " bytes; at most 4096 are allowed");
  return {};
}

pb::AclPermission permission_pb(AclPermission p) {
  switch (p) {
    case AclPermission::kRead: return pb::ACL_READ;
    case AclPermission::kWrite: return pb::ACL_WRITE;
    case AclPermission::kAdmin: return pb::ACL_ADMIN;
  }
  return pb::ACL_PERMISSION_UNSPECIFIED;
}

void set_rule(const AclRule& rule, pb::AclRule* out) {
  out->set_subject(rule.subject);
  out->set_permission(permission_pb(rule.permission));
  out->set_prefix(rule.prefix);
}

Result<void> check_binding(std::string_view agent, std::string_view role) {
  if (auto ok = check_acl_name(agent, "agent"); !ok) return ok;
  return check_acl_name(role, "role");
}

}  // namespace

Result<void> Client::acl_grant(const AclRule& rule) {
  if (auto ok = check_acl_rule(rule); !ok) return ok;
  pb::StrongRequest req;
  set_rule(rule, req.mutable_acl_grant()->mutable_rule());
  auto r = call(*impl_, req, true);
  if (!r) return r.error();
  return {};
}

Result<void> Client::acl_revoke(const AclRule& rule) {
  if (auto ok = check_acl_rule(rule); !ok) return ok;
  pb::StrongRequest req;
  set_rule(rule, req.mutable_acl_revoke()->mutable_rule());
  auto r = call(*impl_, req, true);
  if (!r) return r.error();
  return {};
}

Result<void> Client::acl_bind(std::string_view agent, std::string_view role) {
  if (auto ok = check_binding(agent, role); !ok) return ok;
  pb::StrongRequest req;
  auto* b = req.mutable_acl_bind()->mutable_binding();
  b->set_agent(std::string(agent));
  b->set_role(std::string(role));
  auto r = call(*impl_, req, true);
  if (!r) return r.error();
  return {};
}

Result<void> Client::acl_unbind(std::string_view agent, std::string_view role) {
  if (auto ok = check_binding(agent, role); !ok) return ok;
  pb::StrongRequest req;
  auto* b = req.mutable_acl_unbind()->mutable_binding();
  b->set_agent(std::string(agent));
  b->set_role(std::string(role));
  auto r = call(*impl_, req, true);
  if (!r) return r.error();
  return {};
}

Result<AclListReply> Client::acl_list() {
  pb::StrongRequest req;
  req.mutable_acl_list();
  auto r = call(*impl_, req, false);
  if (!r) return r.error();
  AclListReply out;
  for (const auto& rule : r->strong().acl_rules()) {
    AclPermission p = AclPermission::kRead;
    if (rule.permission() == pb::ACL_WRITE) p = AclPermission::kWrite;
    if (rule.permission() == pb::ACL_ADMIN) p = AclPermission::kAdmin;
    out.rules.push_back(AclRule{rule.subject(), p, rule.prefix()});
  }
  for (const auto& b : r->strong().acl_bindings()) out.bindings.push_back(AclBinding{b.agent(), b.role()});
  out.revision = r->strong().revision();
  out.node = r->node();
  return out;
}

}  // namespace stigmergy
