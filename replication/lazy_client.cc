// Client operations of the lazy path: registers, counters, sets, status.
#include <algorithm>

#include "replication/invariant.h"
#include "replication/printable.h"
#include "replication/lazy_path.h"
#include "replication/write_ids.h"

namespace stig::replication {

namespace {

const char* type_name(pb::ValueType t) {
  switch (t) {
    case pb::REGISTER: return "register";
    case pb::COUNTER: return "counter";
    case pb::SET: return "set";
    default: return "unknown";
  }
}

std::string_view agent_of(const pb::Request& r) {
  if (r.agent().empty()) return "anonymous";
  return r.agent();
}

bool is_mutation(const pb::Request& r) {
  switch (r.op_case()) {
    case pb::Request::kPut:
    case pb::Request::kDel:
    case pb::Request::kCounterAdd:
    case pb::Request::kSetAdd:
    case pb::Request::kSetRemove: return true;
    default: return false;
  }
}

// The live siblings of `state`; with `within`, only those it covers.
void fill_versions(const pb::KeyState& state, google::protobuf::RepeatedPtrField<pb::Version>* out,
                   const pb::VersionVector* within = nullptr) {
  for (const auto& s : state.siblings()) {
    if (s.tombstone()) continue;
    if (within && !vv_covers(*within, s.dot_node(), s.dot_counter())) continue;
    auto* v = out->Add();
    v->set_value(s.value());
    v->set_modified_by(s.modified_by());
    v->set_modified_at_ms(s.modified_at_ms());
    v->set_dot_node(s.dot_node());
    v->set_dot_counter(s.dot_counter());
  }
}

}  // namespace

pb::Response LazyPath::make_response(const pb::Request& request) const {
  pb::Response r;
  r.set_seq(request.seq());
  r.set_node(config_.self);
  r.set_node_dot(dot_counter_);
  return r;
}

void LazyPath::reply_error(ClientToken token, const pb::Request& request, pb::ErrorCode code,
                              std::string message) {
  pb::Response r = make_response(request);
  r.set_error(code);
  r.set_error_message(std::move(message));
  if (is_mutation(request) && !request.client_id().empty())
    complete_write(token, request.client_id(), request.seq(), r);
  else
    reply(token, std::move(r));
}

uint64_t LazyPath::next_dot() {
  STIG_INVARIANT(dot_counter_ < kMaxDotCounter, "dot counter at its limit (check_dots_left first)");
  dot_counter_dirty_ = true;
  return ++dot_counter_;
}

bool LazyPath::check_dots_left(ClientToken token, const pb::Request& request) {
  if (dot_counter_ < kMaxDotCounter) return true;
  reply_error(token, request, pb::UNAVAILABLE,
              "node " + printable(config_.self) + " has issued every dot it may; write through another node");
  return false;
}

Status LazyPath::clamp_client_context(pb::VersionVector& ctx, bool& clamped) const {
  clamped = false;
  for (auto& e : *ctx.mutable_entries()) {
    uint64_t known = 0;
    if (e.node() == config_.self) {
      known = dot_counter_;
    } else if (is_peer(e.node())) {
      if (auto it = known_dots_.find(e.node()); it != known_dots_.end()) known = it->second;
    } else {
      return Status::invalid_argument("context names node '" + printable(e.node()) + "', which is not in this cluster");
    }
    if (e.counter() > known) {
      e.set_counter(known);
      clamped = true;
    }
  }
  if (clamped) {  // drop the entries cut to zero, keeping the vector canonical
    auto* entries = ctx.mutable_entries();
    int out = 0;
    for (int i = 0; i < entries->size(); ++i) {
      if (entries->Get(i).counter() == 0) continue;
      if (out != i) entries->SwapElements(out, i);
      ++out;
    }
    while (entries->size() > out) entries->RemoveLast();
  }
  return Status::ok();
}

void LazyPath::on_client(ClientToken token, const pb::Request& request) {
  if (is_mutation(request) && !request.client_id().empty()) {
    auto d = sessions_.admit(request.client_id(), request.seq(), token, now_.mono);
    switch (d.admission) {
      case ClientSessions::Admission::kNew: break;
      case ClientSessions::Admission::kDuplicateDone: return answer_retry(token, *d.cached);
      case ClientSessions::Admission::kDuplicateInFlight: return;
      case ClientSessions::Admission::kStale:
        reply(token, [&] {
          pb::Response r = make_response(request);
          r.set_error(pb::STALE_REQUEST);
          r.set_error_message("request seq " + std::to_string(request.seq()) +
                              " is older than this node remembers for client '" + printable(request.client_id()) +
                              "'");
          return r;
        }());
        return;
    }
  }
  switch (request.op_case()) {
    case pb::Request::kGet: return handle_get(token, request);
    case pb::Request::kPut: return handle_register_write(token, request, false);
    case pb::Request::kDel: return handle_register_write(token, request, true);
    case pb::Request::kCounterAdd: return handle_counter_add(token, request);
    case pb::Request::kCounterGet: return handle_counter_get(token, request);
    case pb::Request::kSetAdd: return handle_set_write(token, request, true);
    case pb::Request::kSetRemove: return handle_set_write(token, request, false);
    case pb::Request::kSetGet: return handle_set_get(token, request);
    case pb::Request::kClusterStatus: return handle_cluster_status(token, request);
    case pb::Request::kAdminPartition:
    case pb::Request::kAdminHeal:
      return reply_error(token, request, pb::UNKNOWN_REQUEST, "admin operations are served by the node runtime");
    case pb::Request::kStrong:  // Replica routes these to the strong path
      return reply_error(token, request, pb::INTERNAL, "strong request reached the lazy path");
    case pb::Request::OP_NOT_SET:
      return reply_error(token, request, pb::UNKNOWN_REQUEST, "request names no operation this node knows");
  }
  reply_error(token, request, pb::UNKNOWN_REQUEST, "request names no operation this node knows");
}

bool LazyPath::check_key(ClientToken token, const pb::Request& request, const std::string& key,
                            pb::ValueType type) {
  if (key.empty()) {
    reply_error(token, request, pb::BAD_REQUEST, "key must not be empty");
    return false;
  }
  if (key.size() > config_.max_key_bytes) {
    reply_error(token, request, pb::BAD_REQUEST,
                "key is " + std::to_string(key.size()) + " bytes; the limit is " + std::to_string(config_.max_key_bytes));
    return false;
  }
  for (pb::ValueType other : {pb::REGISTER, pb::COUNTER, pb::SET}) {
    if (other == type) continue;
    const KeyEntry* e = store_.find(other, key);
    if (e && !is_tombstone_only(store_.state(*e))) {
      reply_error(token, request, pb::WRONG_TYPE,
                  "key '" + printable(key) + "' holds a " + type_name(other) + ", not a " + type_name(type));
      return false;
    }
  }
  return true;
}

void LazyPath::handle_get(ClientToken token, const pb::Request& request) {
  const std::string& key = request.get().key();
  if (!check_key(token, request, key, pb::REGISTER)) return;
  pb::Response r = make_response(request);
  auto* g = r.mutable_get();
  g->set_key(key);
  if (const KeyEntry* e = store_.find(pb::REGISTER, key)) {
    const pb::KeyState& state = store_.state(*e);
    fill_versions(state, g->mutable_versions());
    if (!state.context().entries().empty()) g->set_context(encode_context(state.context()));
  }
  reply(token, std::move(r));
}

void LazyPath::handle_register_write(ClientToken token, const pb::Request& request, bool is_delete) {
  const std::string& key = is_delete ? request.del().key() : request.put().key();
  const std::string& ctx_bytes = is_delete ? request.del().context() : request.put().context();
  const pb::Durability durability = is_delete ? request.del().durability() : request.put().durability();
  const std::string& value = is_delete ? std::string() : request.put().value();
  if (!check_key(token, request, key, pb::REGISTER)) return;
  if (!pb::Durability_IsValid(durability))
    return reply_error(token, request, pb::BAD_REQUEST, "unknown durability level");
  const std::string tk = KeyStore::typed_key(pb::REGISTER, key);
  const KeyEntry* existing = store_.find(tk);
  if (answer_known_write(token, request, key, tk, existing, pb::REGISTER, durability)) return;
  if (value.size() > config_.max_value_bytes)
    return reply_error(token, request, pb::BAD_REQUEST,
                       "value is " + std::to_string(value.size()) + " bytes; the limit is " +
                           std::to_string(config_.max_value_bytes));
  pb::VersionVector ctx;
  if (auto s = decode_context(ctx_bytes, ctx); !s.is_ok())
    return reply_error(token, request, pb::MALFORMED_CONTEXT, s.message());
  bool context_cut = false;
  if (auto s = clamp_client_context(ctx, context_cut); !s.is_ok())
    return reply_error(token, request, pb::MALFORMED_CONTEXT, s.message());

  if (existing) {
    const pb::KeyState& state = store_.state(*existing);
    const size_t kept = surviving_siblings(state, ctx);
    if (kept + 1 > config_.max_siblings)
      return reply_error(token, request, pb::TOO_MANY_SIBLINGS,
                         "key '" + printable(key) + "' has " + std::to_string(kept) + " concurrent versions (limit " +
                             std::to_string(config_.max_siblings) +
                             "); get it and write with its context to resolve them");
    if (surviving_bytes(state, ctx) + value.size() > config_.max_state_bytes)
      return reply_error(token, request, pb::TOO_MANY_SIBLINGS,
                         "key '" + printable(key) + "' would hold more than " + std::to_string(config_.max_state_bytes) +
                             " bytes of concurrent versions; resolve them with a context");
  } else if (is_delete && ctx.entries().empty()) {
    // Nothing to delete and nothing seen: a no-op, answered like a delete.
    pb::Response r = make_response(request);
    r.mutable_put()->set_key(key);
    return finish_write(token, request, tk, std::move(r), pb::DURABILITY_LOCAL);
  }

  if (!check_dots_left(token, request)) return;
  KeyEntry& entry = create_or_find(pb::REGISTER, key);
  pb::KeyState& state = store_.state(entry);
  const uint64_t dot = next_dot();
  register_write(state, ctx, config_.self, dot, value, is_delete, WriteMeta{agent_of(request), now_.wall});
  if (records_write_ids(request))
    record_write(state, config_.self, dot, request.client_id(), request.seq(), 0,
                 write_id_flags(request, durability) | (context_cut ? kWriteCutContext : 0),
                 context_cut ? encode_context(ctx) : std::string());
  store_.mark_dirty(entry);
  note_push(tk, &entry);
  // The only replica has seen it (or a test injects collection without acks).
  if (is_delete && (peers_.empty() || config_.test_faults.collect_tombstones_early)) gc_candidates_.insert(tk);

  pb::Response r = make_response(request);
  auto* p = r.mutable_put();
  p->set_key(key);
  p->set_context(encode_context(state.context()));
  p->set_dot_node(config_.self);
  p->set_dot_counter(dot);
  if (context_cut) {
    p->set_context_cut(true);
    p->set_applied_context(encode_context(ctx));
  }
  fill_versions(state, p->mutable_versions());
  finish_write(token, request, tk, std::move(r), durability);
}

void LazyPath::handle_counter_add(ClientToken token, const pb::Request& request) {
  const auto& op = request.counter_add();
  if (!check_key(token, request, op.key(), pb::COUNTER)) return;
  if (!pb::Durability_IsValid(op.durability()))
    return reply_error(token, request, pb::BAD_REQUEST, "unknown durability level");
  const std::string tk = KeyStore::typed_key(pb::COUNTER, op.key());
  if (answer_known_write(token, request, op.key(), tk, store_.find(tk), pb::COUNTER, op.durability())) return;
  const bool record = records_write_ids(request);
  if (record && !check_dots_left(token, request)) return;
  KeyEntry& entry = create_or_find(pb::COUNTER, op.key());
  counter_add(store_.state(entry), config_.self, op.delta(), WriteMeta{agent_of(request), now_.wall});
  // The add's dot only names it among the key's write ids.
  if (record)
    record_write(store_.state(entry), config_.self, next_dot(), request.client_id(), request.seq(), op.delta(),
                 write_id_flags(request, op.durability()));
  store_.mark_dirty(entry);
  note_push(tk, &entry);
  pb::Response r = make_response(request);
  auto* c = r.mutable_counter();
  c->set_key(op.key());
  c->set_value(counter_value(store_.state(entry)));
  c->set_modified_by(std::string(agent_of(request)));
  c->set_modified_at_ms(now_.wall);
  finish_write(token, request, tk, std::move(r), op.durability());
}

void LazyPath::handle_counter_get(ClientToken token, const pb::Request& request) {
  const std::string& key = request.counter_get().key();
  if (!check_key(token, request, key, pb::COUNTER)) return;
  pb::Response r = make_response(request);
  auto* c = r.mutable_counter();
  c->set_key(key);
  if (const KeyEntry* e = store_.find(pb::COUNTER, key)) {
    c->set_value(counter_value(store_.state(*e)));
    // The latest change known here, by the wall clock of the node that made it.
    const pb::CounterEntry* latest = nullptr;
    for (const auto& ce : store_.state(*e).counter())
      if (!latest || ce.modified_at_ms() > latest->modified_at_ms()) latest = &ce;
    if (latest) {
      c->set_modified_by(latest->modified_by());
      c->set_modified_at_ms(latest->modified_at_ms());
    }
  }
  reply(token, std::move(r));
}

void LazyPath::handle_set_write(ClientToken token, const pb::Request& request, bool is_add) {
  const std::string& key = is_add ? request.set_add().key() : request.set_remove().key();
  const std::string& element = is_add ? request.set_add().element() : request.set_remove().element();
  const pb::Durability durability = is_add ? request.set_add().durability() : request.set_remove().durability();
  if (!check_key(token, request, key, pb::SET)) return;
  if (!pb::Durability_IsValid(durability))
    return reply_error(token, request, pb::BAD_REQUEST, "unknown durability level");
  if (element.size() > config_.max_value_bytes)
    return reply_error(token, request, pb::BAD_REQUEST, "set element is larger than the value limit");
  const std::string tk = KeyStore::typed_key(pb::SET, key);
  if (answer_known_write(token, request, key, tk, store_.find(tk), pb::SET, durability)) return;
  const bool record = records_write_ids(request);
  pb::Response r = make_response(request);
  r.mutable_set()->set_key(key);
  if (is_add) {
    KeyEntry* existing = store_.find(tk);
    if (existing && static_cast<size_t>(store_.state(*existing).siblings_size()) >= config_.max_set_elements())
      return reply_error(token, request, pb::TOO_MANY_SIBLINGS,
                         "set '" + printable(key) + "' is at its limit of " +
                             std::to_string(config_.max_set_elements()) + " elements");
    // Every element of a set travels in one state, which must fit in a frame.
    if (existing && surviving_bytes(store_.state(*existing), pb::VersionVector()) + element.size() > config_.max_state_bytes)
      return reply_error(token, request, pb::TOO_MANY_SIBLINGS,
                         "set '" + printable(key) + "' would hold more than " +
                             std::to_string(config_.max_state_bytes) + " bytes of elements");
    if (!check_dots_left(token, request)) return;
    KeyEntry& entry = create_or_find(pb::SET, key);
    const uint64_t dot = next_dot();
    set_add(store_.state(entry), element, config_.self, dot, WriteMeta{agent_of(request), now_.wall});
    if (record)
      record_write(store_.state(entry), config_.self, dot, request.client_id(), request.seq(), 0,
                   write_id_flags(request, durability));
    store_.mark_dirty(entry);
    note_push(tk, &entry);
  } else if (KeyEntry* entry = store_.find(tk)) {
    // Recorded even when the element was absent: a retry elsewhere must not
    // remove an element added after this remove.
    if (record && !check_dots_left(token, request)) return;
    bool changed = set_remove(store_.state(*entry), element);
    if (record) {
      record_write(store_.state(*entry), config_.self, next_dot(), request.client_id(), request.seq(), 0,
                   kWriteNoSibling | write_id_flags(request, durability));
      changed = true;
    }
    if (changed) {
      store_.mark_dirty(*entry);
      note_push(tk, entry);
    }
  }
  finish_write(token, request, tk, std::move(r), durability);
}

void LazyPath::handle_set_get(ClientToken token, const pb::Request& request) {
  const std::string& key = request.set_get().key();
  if (!check_key(token, request, key, pb::SET)) return;
  pb::Response r = make_response(request);
  auto* s = r.mutable_set();
  s->set_key(key);
  if (const KeyEntry* e = store_.find(pb::SET, key))
    for (auto& el : set_elements(store_.state(*e))) s->add_elements(std::move(el));
  reply(token, std::move(r));
}

void LazyPath::handle_cluster_status(ClientToken token, const pb::Request& request) {
  settle();
  pb::Response r = make_response(request);
  auto* status = r.mutable_cluster_status();
  auto* self = status->add_nodes();
  self->set_id(config_.self);
  self->set_address(config_.self_address);
  self->set_state("self");
  self->set_keys(store_.live_keys());
  self->set_tombstones(store_.tombstone_keys());
  self->set_digest(store_.digest());
  self->set_last_heard_ms_ago(0);
  for (const auto& p : config_.peers) {
    auto* n = status->add_nodes();
    const PeerView& v = detector_.view(p.id);
    n->set_id(p.id);
    n->set_address(p.address);
    n->set_state(peer_state_name(detector_.state(p.id, now_.mono)));
    n->set_keys(v.keys);
    n->set_tombstones(v.tombstones);
    n->set_digest(v.digest);
    n->set_last_heard_ms_ago(v.last_heard < 0 ? -1 : now_.mono - v.last_heard);
  }
  std::sort(status->mutable_nodes()->begin(), status->mutable_nodes()->end(),
            [](const pb::NodeStatus& a, const pb::NodeStatus& b) { return a.id() < b.id(); });
  reply(token, std::move(r));
}

// --- durability ----------------------------------------------------------------------

void LazyPath::finish_write(ClientToken token, const pb::Request& request, const std::string& typed_key,
                               pb::Response response, pb::Durability durability) {
  needs_sync_ = true;  // the reply promises the write survives a crash of this node
  const size_t n = config_.cluster_size();
  const size_t required = durability == pb::DURABILITY_ALL ? n : durability == pb::DURABILITY_QUORUM ? n / 2 + 1 : 1;
  if (required <= 1 || store_.find(typed_key) == nullptr)
    return complete_write(token, request.client_id(), request.seq(), std::move(response));
  const uint64_t id = next_write_id_++;
  const MonoTime deadline = now_.mono + config_.durability_timeout_ms;
  pending_writes_.emplace(id, PendingWrite{token, request.client_id(), request.seq(), typed_key, std::move(response),
                                           required - 1, {}});
  timers_.arm(TimerKind::kWriteDeadline, id, deadline);
  unbatched_writes_.push_back(id);
  // A write that changed nothing (e.g. removing an absent element) still
  // waits for peers to acknowledge the key's current state.
  note_push(typed_key, store_.find(typed_key));
}

bool LazyPath::records_write_ids(const pb::Request& request) const {
  return !config_.test_faults.per_node_retry_dedup && !request.client_id().empty();
}

uint8_t LazyPath::write_id_flags(const pb::Request& request, pb::Durability durability) {
  // Writes at risk of being applied twice keep their record longer: a
  // quorum or all write waits on a cut-off node while the client retries
  // elsewhere, and a retry applied here may meet its first attempt later.
  if (request.attempt() > 1) return kWriteRetry;
  return durability != pb::DURABILITY_LOCAL ? kWritePinned : 0;
}

bool LazyPath::answer_known_write(ClientToken token, const pb::Request& request, const std::string& key,
                                  const std::string& tk, const KeyEntry* e, pb::ValueType type,
                                  pb::Durability durability) {
  const std::string& client_id = request.client_id();
  if (client_id.empty() || config_.test_faults.per_node_retry_dedup) return false;
  const bool retry = request.attempt() > 1;
  if (retry && static_cast<size_t>(request.tried_size()) > config_.cluster_size()) {
    reply_error(token, request, pb::BAD_REQUEST,
                "retry names " + std::to_string(request.tried_size()) + " earlier nodes; the cluster has " +
                    std::to_string(config_.cluster_size()));
    return true;
  }
  const pb::KeyState* state = e ? &store_.state(*e) : nullptr;
  if (state && !state->writes().empty()) {
    if (auto first = find_write(*state, client_id, request.seq())) {
      // Applied already (here or on a node whose state reached us): answer as
      // the first attempt was, with the key as it is now.
      pb::Response r = make_response(request);
      switch (type) {
        case pb::REGISTER: {
          auto* p = r.mutable_put();
          p->set_key(key);
          if (!state->context().entries().empty()) p->set_context(encode_context(state->context()));
          p->set_dot_node(std::string(first->node));
          p->set_dot_counter(first->dot);
          if (first->flags & kWriteCutContext) {
            p->set_context_cut(true);
            p->set_applied_context(std::string(first->cut_context));
          }
          fill_versions(*state, p->mutable_versions());
          break;
        }
        case pb::COUNTER: {
          auto* c = r.mutable_counter();
          c->set_key(key);
          c->set_value(counter_value(*state));
          break;
        }
        default: r.mutable_set()->set_key(key); break;
      }
      finish_write(token, request, tk, std::move(r), durability);
      return true;
    }
  }
  if (!retry) return false;
  // Not held here. Applying it is safe unless a node it was sent to has cut
  // write ids of this key newer than what the client knew of that node: the
  // first attempt may be among them.
  std::string why;
  if (!e) {
    if (graveyard_.count(tk)) why = "the key was deleted and collected since, with its write ids";
  } else if (request.tried_unknown() && any_write_floor(*state)) {
    why = "an earlier attempt went to a node the client cannot name, and this key's older write ids are forgotten";
  } else {
    for (const auto& t : request.tried()) {
      if (write_floor(*state, t.node()) > t.horizon()) {
        why = "node " + printable(t.node()) + ", where an earlier attempt went, has since forgotten older write ids "
              "of this key";
        break;
      }
    }
  }
  if (why.empty()) return false;
  reply_error(token, request, pb::RETRY_UNKNOWN,
              "retry of write " + std::to_string(request.seq()) + " of client '" + printable(client_id) + "' on key '" +
                  printable(key) + "' cannot be checked: " + why +
                  "; it may have been applied, and was not applied again (read the key to see)");
  return true;
}

void LazyPath::complete_write(ClientToken token, const std::string& client_id, uint64_t seq,
                                 pb::Response response) {
  if (!client_id.empty()) {
    // Remember the answer without the versions' values (up to a whole key's
    // worth of bytes each): take them out, copy, put them back.
    google::protobuf::RepeatedPtrField<pb::Version> versions;
    if (response.has_put()) versions.Swap(response.mutable_put()->mutable_versions());
    pb::Response compact = response;
    if (response.has_put()) versions.Swap(response.mutable_put()->mutable_versions());
    for (ClientToken t : sessions_.complete(client_id, seq, std::move(compact))) reply(t, pb::Response(response));
  }
  reply(token, std::move(response));
}

void LazyPath::answer_retry(ClientToken token, pb::Response remembered) {
  if (remembered.has_put() && remembered.error() == pb::OK) {
    pb::VersionVector ctx;
    const auto& put = remembered.put();
    if (decode_context(put.context(), ctx).is_ok())
      if (const KeyEntry* e = store_.find(pb::REGISTER, put.key()))
        fill_versions(store_.state(*e), remembered.mutable_put()->mutable_versions(), &ctx);
  }
  reply(token, std::move(remembered));
}

}  // namespace stig::replication
