#include "replication/strong/state_machine.h"

#include <algorithm>

#include "replication/invariant.h"
#include "replication/printable.h"
#include "replication/strong/state_machine_internal.h"

namespace stig::replication {

pb::StrongResponse error_response(pb::ErrorCode code, std::string_view message) {
  pb::StrongResponse r;
  r.set_error(code);
  r.set_error_message(one_line_utf8(message));
  return r;
}

StateMachine::StateMachine(StateMachineOptions options)
    : options_(options), locks_(options_), dedup_(options_), acl_(options_.access) {}

namespace {

bool is_read(const pb::StrongRequest& r) {
  return r.op_case() == pb::StrongRequest::kGet || r.op_case() == pb::StrongRequest::kRange ||
         r.op_case() == pb::StrongRequest::kHistory || r.op_case() == pb::StrongRequest::kAclList;
}

}  // namespace

ApplyResult StateMachine::apply(uint64_t log_index, const pb::StrongCommand& command) {
  STIG_INVARIANT(log_index > applied_index_, "applied index strictly increases");
  applied_index_ = log_index;
  // The leader's wall clock may jump back or differ between leaders; time in
  // the store never goes backwards.
  last_wall_ms_ = std::max(last_wall_ms_, command.leader_wall_ms());

  ApplyResult result;
  Context ctx;
  ctx.index = log_index;
  ctx.agent = &command.agent();
  ctx.wall_ms = last_wall_ms_;
  ctx.request = RequestId{command.client_id(), command.seq()};
  ctx.result = &result;
  const uint64_t revision_before = store_.revision();

  switch (command.body_case()) {
    case pb::StrongCommand::kRequest:
      apply_request(ctx, command.request());
      break;
    case pb::StrongCommand::kExpireSession: {
      result.kind = ApplyResult::Kind::kInternal;
      const auto& e = command.expire_session();
      const LockTable::Session* s = locks_.session(e.session_id());
      if (s == nullptr) {
        result.response = locks_.missing_session(e.session_id());
      } else if (s->renewed_index > e.renewed_index()) {
        // A keepalive was committed after the leader decided: it wins.
        result.response = error_response(pb::CONFLICT, "session " + std::to_string(e.session_id()) +
                                                           " was renewed at index " +
                                                           std::to_string(s->renewed_index) + ", not expired");
      } else {
        locks_.end_session(e.session_id(), "expired", ctx.sink());
        result.response = pb::StrongResponse();
        result.response->set_session_id(e.session_id());
      }
      break;
    }
    case pb::StrongCommand::kCancelWait: {
      result.kind = ApplyResult::Kind::kInternal;
      const RequestId id{command.cancel_wait().client_id(), command.cancel_wait().seq()};
      result.response = locks_.cancel_wait(id, ctx.sink())
                            ? pb::StrongResponse()
                            : error_response(pb::NOT_FOUND, "the request is not waiting for a lock");
      break;
    }
    case pb::StrongCommand::BODY_NOT_SET:
      result.kind = ApplyResult::Kind::kInternal;
      result.response = error_response(pb::BAD_REQUEST, "the command carries no request");
      break;
  }

  // Requests decided by this entry on behalf of earlier ones: remember their
  // answers for retries (unless their client was forgotten meanwhile).
  for (const auto& c : result.completions)
    if (dedup_.lookup(c.request).seen == DedupTable::Seen::kWaiting)
      dedup_.record_done(c.request, c.response, log_index);

  STIG_INVARIANT(store_.revision() >= revision_before, "revision monotonic");
  retain();
  return result;
}

void StateMachine::apply_request(Context& ctx, const pb::StrongRequest& request) {
  ApplyResult& result = *ctx.result;
  result.kind = ApplyResult::Kind::kDecided;
  if (is_read(request)) {  // nothing to apply or remember: a retry just reads again
    if (Status st = options_.access.enabled ? acl_.authorize(*ctx.agent, request) : Status::ok(); !st.is_ok())
      result.response = error_response(pb::PERMISSION_DENIED, st.message());
    else
      result.response = read(request);
    return;
  }
  const std::string& client_id = ctx.request.client_id;
  if (client_id.empty() || client_id.size() > options_.max_id_bytes || ctx.agent->size() > options_.max_id_bytes) {
    result.response = error_response(pb::BAD_REQUEST, client_id.empty() ? "client_id is empty"
                                                                          : "client_id or agent is over " +
                                                                                std::to_string(options_.max_id_bytes) +
                                                                                " bytes");
    return;
  }
  const auto seen = dedup_.lookup(ctx.request);
  switch (seen.seen) {
    case DedupTable::Seen::kDone:
      result.kind = ApplyResult::Kind::kDuplicate;
      result.response = *seen.response;
      return;
    case DedupTable::Seen::kWaiting:
      result.kind = ApplyResult::Kind::kRejoined;
      return;
    case DedupTable::Seen::kStale:
      result.response = error_response(pb::STALE_REQUEST, "seq " + std::to_string(ctx.request.seq) +
                                                              " is older than the " +
                                                              std::to_string(options_.dedup_window) +
                                                              " answers remembered for this client");
      return;
    case DedupTable::Seen::kNew:
      break;
  }
  // A client forgotten by the dedup table may still have this request in a
  // lock queue: rejoin it rather than queue twice.
  if (locks_.is_waiting(ctx.request)) {
    dedup_.record_waiting(ctx.request, ctx.index);
    result.kind = ApplyResult::Kind::kRejoined;
    return;
  }
  bool waiting = false;
  pb::StrongResponse response = mutate(ctx, request, &waiting);
  if (waiting) {
    dedup_.record_waiting(ctx.request, ctx.index);
    result.kind = ApplyResult::Kind::kWaiting;
    return;
  }
  dedup_.record_done(ctx.request, response, ctx.index);
  result.response = std::move(response);
}

pb::StrongResponse StateMachine::mutate(Context& ctx, const pb::StrongRequest& request, bool* waiting) {
  *waiting = false;
  // Checked here, at apply, against the rules this entry follows in the log:
  // a revoke committed before a write refuses it on every replica alike.
  if (options_.access.enabled)
    if (Status st = acl_.authorize(*ctx.agent, request); !st.is_ok())
      return error_response(pb::PERMISSION_DENIED, st.message());
  switch (request.op_case()) {
    case pb::StrongRequest::kPut:
      return put(ctx, request.put());
    case pb::StrongRequest::kDelete:
      return erase(ctx, request.delete_());
    case pb::StrongRequest::kCas:
      return cas(ctx, request.cas());
    case pb::StrongRequest::kTxn:
      return txn(ctx, request.txn());
    case pb::StrongRequest::kCompact:
      return compact(request.compact());
    case pb::StrongRequest::kSessionGrant: {
      const int64_t ttl = request.session_grant().ttl_ms();
      if (ttl < options_.min_session_ttl_ms || ttl > options_.max_session_ttl_ms)
        return error_response(pb::BAD_REQUEST, "session ttl_ms " + std::to_string(ttl) + " is outside [" +
                                                   std::to_string(options_.min_session_ttl_ms) + ", " +
                                                   std::to_string(options_.max_session_ttl_ms) + "]");
      return locks_.grant_session(ttl, ctx.index, &ctx.result->lease);
    }
    case pb::StrongRequest::kSessionKeepalive:
      return locks_.keepalive(request.session_keepalive().session_id(), ctx.index, &ctx.result->lease);
    case pb::StrongRequest::kSessionRevoke: {
      const uint64_t id = request.session_revoke().session_id();
      if (locks_.session(id) == nullptr) return locks_.missing_session(id);
      locks_.end_session(id, "was revoked", ctx.sink());
      pb::StrongResponse r;
      r.set_session_id(id);
      return r;
    }
    case pb::StrongRequest::kLockAcquire: {
      const auto& a = request.lock_acquire();
      if (auto bad = check_key(a.name(), "lock name"); is_error(bad)) return bad;
      if (a.wait_ms() < 0 || a.wait_ms() > options_.max_lock_wait_ms)
        return error_response(pb::BAD_REQUEST, "wait_ms " + std::to_string(a.wait_ms()) + " is outside [0, " +
                                                   std::to_string(options_.max_lock_wait_ms) + "]");
      return locks_.acquire(a.name(), a.session_id(), ctx.request, a.wait_ms(), waiting, ctx.sink());
    }
    case pb::StrongRequest::kLockRelease: {
      const auto& r = request.lock_release();
      if (auto bad = check_key(r.name(), "lock name"); is_error(bad)) return bad;
      return locks_.release(r.name(), r.session_id(), r.token(), ctx.sink());
    }
    case pb::StrongRequest::kAclGrant:
    case pb::StrongRequest::kAclRevoke:
    case pb::StrongRequest::kAclBind:
    case pb::StrongRequest::kAclUnbind:
      return change_acl(request);
    case pb::StrongRequest::kGet:
    case pb::StrongRequest::kRange:
    case pb::StrongRequest::kHistory:
    case pb::StrongRequest::kAclList:
      return read(request);
    case pb::StrongRequest::OP_NOT_SET:
      break;
  }
  return error_response(pb::BAD_REQUEST, "the request names no operation");
}

pb::StrongResponse StateMachine::read(const pb::StrongRequest& request) const {
  switch (request.op_case()) {
    case pb::StrongRequest::kGet:
      return get(request.get());
    case pb::StrongRequest::kRange:
      return range(request.range());
    case pb::StrongRequest::kHistory:
      return history(request.history());
    case pb::StrongRequest::kAclList: {
      pb::StrongResponse r;
      r.set_revision(store_.revision());
      acl_.list(&r);
      return r;
    }
    default:
      return error_response(pb::BAD_REQUEST, "not a read: only get, range, history and acl list are served by read()");
  }
}

pb::StrongResponse StateMachine::change_acl(const pb::StrongRequest& request) {
  Status st;
  bool removed = true;
  switch (request.op_case()) {
    case pb::StrongRequest::kAclGrant:
      st = acl_.grant(request.acl_grant().rule());
      break;
    case pb::StrongRequest::kAclRevoke:
      st = acl_.revoke(request.acl_revoke().rule(), &removed);
      break;
    case pb::StrongRequest::kAclBind:
      st = acl_.bind(request.acl_bind().binding());
      break;
    case pb::StrongRequest::kAclUnbind:
      st = acl_.unbind(request.acl_unbind().binding(), &removed);
      break;
    default:
      return error_response(pb::BAD_REQUEST, "not an access rule change");
  }
  if (!st.is_ok()) return error_response(pb::BAD_REQUEST, st.message());
  if (!removed) {
    // Validated above, so the permission is one of the three.
    if (request.has_acl_revoke()) {
      const auto& rule = request.acl_revoke().rule();
      return error_response(pb::NOT_FOUND, "no such rule: " + printable(rule.subject()) + " holds no " +
                                               std::string(permission_name(*permission_from_proto(rule.permission()))) +
                                               " rule on prefix '" + printable(rule.prefix()) + "'");
    }
    const auto& b = request.acl_unbind().binding();
    return error_response(pb::NOT_FOUND, "no such binding: agent '" + printable(b.agent()) +
                                             "' is not bound to role '" + printable(b.role()) + "'");
  }
  pb::StrongResponse r;
  r.set_revision(store_.revision());
  return r;
}

void StateMachine::retain() {
  const uint64_t keep = options_.history_retention_revisions;
  if (keep == 0) return;
  const uint64_t rev = store_.revision();
  const uint64_t floor = store_.compact_revision();
  // Compact in batches (every `keep` revisions) so the O(keys) pass is
  // amortized; at least `keep` revisions stay readable at all times.
  if (rev - floor >= 2 * keep) store_.compact(rev - keep);
}

}  // namespace stig::replication
