// Peer protocol of the lazy path: eager push with acknowledgements,
// Merkle-tree anti-entropy, and collection of tombstones every replica has.
#include <algorithm>
#include <set>

#include "replication/invariant.h"
#include "replication/lazy_path.h"
#include "replication/test_faults.h"
#include "replication/write_ids.h"

namespace stig::replication {

namespace {

// Appends `state` unless that would take `bytes` past `budget`; the first
// state always fits (a single state is bounded by max_state_bytes, which
// stays below the frame limit).
bool add_within_budget(const KeyStore& store, google::protobuf::RepeatedPtrField<pb::KeyState>& states,
                       const KeyEntry& entry, size_t& bytes, size_t budget) {
  const size_t n = entry.live ? entry.live->ByteSizeLong() : entry.bytes.size();
  if (bytes > 0 && bytes + n > budget) return false;
  store.copy_state(entry, *states.Add());
  bytes += n;
  return true;
}

}  // namespace

void LazyPath::on_peer(const NodeId& from, const pb::PeerMessage& message) {
  switch (message.body_case()) {
    case pb::PeerMessage::kHeartbeat: {
      const auto& hb = message.heartbeat();
      detector_.heartbeat(from, now_.mono, hb.keys(), hb.tombstones(), hb.digest());
      return;
    }
    case pb::PeerMessage::kPush: return handle_push(from, message.push());
    case pb::PeerMessage::kPushAck: return handle_push_ack(from, message.push_ack());
    case pb::PeerMessage::kAeLevel: return handle_ae_level(from, message.ae_level());
    case pb::PeerMessage::kAeKeys: return handle_ae_keys(from, message.ae_keys());
    case pb::PeerMessage::kCollect: return handle_collect(message.collect());
    case pb::PeerMessage::kRaft:          // Replica routes these to the strong path
    case pb::PeerMessage::kHello:         // consumed by the runtime's link set-up
    case pb::PeerMessage::BODY_NOT_SET:  // from a newer peer: ignore
      return;
  }
}

// --- merging -------------------------------------------------------------------

bool LazyPath::merge_keys(pb::KeyState& local, pb::KeyState&& remote) const {
  const TestFaults& f = config_.test_faults;
  if (f.any()) {  // deliberately wrong merges: only when a test injects a bug
    if (f.lww_merge && local.type() == pb::REGISTER) return test_faults::merge_register_lww(local, remote);
    if (f.counter_merge_sums && local.type() == pb::COUNTER) return test_faults::merge_counter_summing(local, remote);
    if (f.set_remove_wins && local.type() == pb::SET) return test_faults::merge_set_remove_wins(local, remote);
  }
  return merge_state(local, std::move(remote));
}

Status LazyPath::check_peer_state(const pb::KeyState& state) const {
  if (auto s = validate_state(state); !s.is_ok()) return s;
  if (state.key().size() > config_.max_key_bytes) return Status::invalid_argument("key above the key limit");
  const auto member = [&](const std::string& node) { return node == config_.self || is_peer(node); };
  // Sibling dots lie within the context (validate_state), so this covers them.
  for (const auto& e : state.context().entries())
    if (!member(e.node())) return Status::invalid_argument("context names a node outside the cluster");
  for (const auto& c : state.counter())
    if (!member(c.node())) return Status::invalid_argument("counter names a node outside the cluster");
  if (auto s = check_write_nodes(state, [&](std::string_view n) { return member(std::string(n)); }); !s.is_ok())
    return s;
  // Each node refuses writes beyond its limit, so together they make at most
  // the limit times the cluster size.
  const size_t per_node = state.type() == pb::SET ? config_.max_set_elements() : config_.max_siblings;
  if (static_cast<size_t>(state.siblings_size()) > per_node * config_.cluster_size())
    return Status::invalid_argument("more siblings than the cluster could have made");
  return Status::ok();
}

bool LazyPath::merge_remote(const NodeId& from, pb::KeyState&& remote, uint64_t base_hash) {
  if (!check_peer_state(remote).is_ok()) return false;
  learn_state(remote);
  const std::string tk = KeyStore::typed_key(remote.type(), remote.key());
  KeyEntry* entry = store_.find(tk);
  // The sender made `remote` from the very state held here (same hash, and
  // nothing changed since the settle that hashed it): every change to a
  // state is a join or a write, each of which only grows it, so the merge
  // would give `remote` back. Take it as it is. (Not when a test injects a
  // wrong merge: that bug must stay visible.)
  if (entry && base_hash != 0 && entry->hash == base_hash && !entry->dirty && !config_.test_faults.wrong_merge()) {
    store_.replace_state(*entry, std::move(remote));
    ++pushes_adopted_;
  } else if (!entry) {
    if (auto g = graveyard_.find(tk); g != graveyard_.end()) {
      // A copy of a collected key: keep only what the deletion had not seen.
      pb::KeyState grave;
      grave.set_key(remote.key());
      grave.set_type(remote.type());
      *grave.mutable_context() = g->second.context;
      pb::KeyState rest = grave;
      merge_state(rest, remote);
      if (rest.siblings_size() == 0) {
        // Stale: tell the sender the key is gone, so it collects its copy too.
        pb::PeerMessage m;
        *m.mutable_collect()->add_graves() = std::move(grave);
        needs_sync_ = true;  // the grave it names must outlive our crash
        send(from, std::move(m));
        return true;
      }
    }
    entry = &create_or_find(remote.type(), remote.key());
    merge_keys(store_.state(*entry), std::move(remote));
    store_.mark_dirty(*entry);
  } else if (merge_keys(store_.state(*entry), std::move(remote))) {
    store_.mark_dirty(*entry);
  }
  // A counter add this node applied that a peer had applied first: subtract
  // our copy, and push the change so every replica counts the add once.
  if (compensate_duplicate_adds(store_.state(*entry), config_.self)) {
    store_.mark_dirty(*entry);
    note_push(tk, entry);
  }
  return true;
}

// --- eager push ---------------------------------------------------------------------

void LazyPath::flush_push() {
  if (pending_push_.empty()) return;
  if (peers_.empty()) {
    pending_push_.clear();
    return;
  }
  // Keys whose writes wait for acknowledgements: their batches ask for acks
  // (and so make receivers sync before answering).
  std::set<std::string> awaited;
  for (uint64_t id : unbatched_writes_)
    if (auto w = pending_writes_.find(id); w != pending_writes_.end()) awaited.insert(w->second.typed_key);
  std::map<std::string, uint64_t> batch_of_key;
  pb::PeerMessage message;
  size_t bytes = 0;
  uint64_t batch_id = next_batch_id_++;
  auto emit = [&] {
    if (message.push().states_size() == 0) return;
    message.mutable_push()->set_batch_id(batch_id);
    if (message.push().ack_wanted())
      timers_.arm(TimerKind::kBatchExpiry, batch_id, now_.mono + config_.durability_timeout_ms);
    broadcast(std::move(message));
    message = pb::PeerMessage();
    bytes = 0;
    batch_id = next_batch_id_++;
  };
  for (auto& [tk, pending] : pending_push_) {
    const KeyEntry* e = store_.find(tk);
    if (!e) continue;  // collected meanwhile
    std::string state = std::move(pending.bytes);
    if (state.empty())  // unchanged by its write (e.g. removing an absent element with quorum)
      store_.state(*e).SerializeToString(&state);
    if (bytes > 0 && bytes + state.size() > config_.max_batch_bytes) emit();
    bytes += state.size();
    auto* push = message.mutable_push();
    push->add_states(std::move(state));
    push->add_base_hashes(pending.base_hash);
    if (awaited.count(tk) || is_tombstone_only(store_.state(*e))) push->set_ack_wanted(true);
    if (!unbatched_writes_.empty()) batch_of_key[tk] = batch_id;  // only writes waiting for acks look it up
  }
  emit();
  for (uint64_t id : unbatched_writes_) {
    auto w = pending_writes_.find(id);
    if (w == pending_writes_.end()) continue;
    auto b = batch_of_key.find(w->second.typed_key);
    if (b != batch_of_key.end()) batch_writes_[b->second].push_back(id);
  }
  unbatched_writes_.clear();
  pending_push_.clear();
}

void LazyPath::handle_push(const NodeId& from, const pb::PushBatch& push) {
  std::vector<std::pair<std::string, uint64_t>> tombstones;
  std::vector<pb::KeyState> states(static_cast<size_t>(push.states_size()));
  for (int i = 0; i < push.states_size(); ++i) {
    const std::string& bytes = push.states(i);
    pb::KeyState& state = states[static_cast<size_t>(i)];
    if (!state.ParseFromString(bytes)) {
      state.Clear();  // malformed: ignored, and not acknowledged below
      continue;
    }
    const bool tombstone_only = is_tombstone_only(state);  // before the merge consumes it
    // Base hashes are an optimisation: a batch without one for every state
    // (an older sender) is merged state by state.
    const uint64_t base = push.base_hashes_size() == push.states_size() ? push.base_hashes(i) : 0;
    if (!merge_remote(from, std::move(state), base)) {
      state.Clear();
      continue;
    }
    if (tombstone_only)
      tombstones.emplace_back(KeyStore::typed_key(state.type(), state.key()), KeyStore::hash_serialized(bytes));
  }
  // Merged states of a batch nobody waits for need no sync here: they are
  // durable on the node that took the writes (its push left after its sync).
  if (!push.ack_wanted() && tombstones.empty()) return;
  settle();
  // The ack is released only once the merged states are synced here.
  needs_sync_ = true;
  pb::PeerMessage reply;
  auto* ack = reply.mutable_push_ack();
  ack->set_batch_id(push.batch_id());
  for (const auto& state : states) {
    if (state.key().empty()) continue;
    const KeyEntry* e = store_.find(state.type(), state.key());
    if (!e || !e->tombstone_only) continue;
    auto* kh = ack->add_tombstones();
    kh->set_key(state.key());
    kh->set_type(state.type());
    kh->set_hash(e->hash);
  }
  send(from, std::move(reply));
  for (const auto& [tk, h] : tombstones) note_tombstone_seen(from, tk, h);
}

void LazyPath::handle_push_ack(const NodeId& from, const pb::PushAck& ack) {
  settle();
  for (const auto& kh : ack.tombstones())
    if (pb::ValueType_IsValid(kh.type()))
      note_tombstone_seen(from, KeyStore::typed_key(kh.type(), kh.key()), kh.hash());
  auto batch = batch_writes_.find(ack.batch_id());
  if (batch == batch_writes_.end()) return;
  for (uint64_t id : batch->second) {
    auto it = pending_writes_.find(id);
    if (it == pending_writes_.end()) continue;
    PendingWrite& w = it->second;
    if (!w.acked.insert(from).second || w.acked.size() < w.needed) continue;
    complete_write(w.token, w.client_id, w.seq, std::move(w.response));
    timers_.cancel(TimerKind::kWriteDeadline, id);
    pending_writes_.erase(it);
  }
}

// --- tombstone collection ----------------------------------------------------------------

void LazyPath::note_tombstone_seen(const NodeId& peer, const std::string& typed_key, uint64_t peer_hash) {
  KeyEntry* e = store_.find(typed_key);
  if (!e || e->dirty || !e->tombstone_only || e->hash != peer_hash) return;
  if (std::find(e->tombstone_seen_by.begin(), e->tombstone_seen_by.end(), peer) == e->tombstone_seen_by.end())
    e->tombstone_seen_by.push_back(peer);
  gc_candidates_.insert(typed_key);
}

void LazyPath::collect_tombstones() {
  pb::PeerMessage m;
  for (const auto& tk : gc_candidates_) {
    const KeyEntry* e = store_.find(tk);
    if (!e || e->dirty || !e->tombstone_only) continue;
    const bool everyone_has_it = e->tombstone_seen_by.size() >= peers_.size();
    if (!everyone_has_it && !config_.test_faults.collect_tombstones_early) continue;
    STIG_INVARIANT(pending_push_.count(tk) == 0, "collecting a key that still has to be pushed");
    auto* grave = m.mutable_collect()->add_graves();
    const pb::KeyState& state = store_.state(*e);
    grave->set_key(state.key());
    grave->set_type(state.type());
    *grave->mutable_context() = state.context();
    bury(tk);
  }
  gc_candidates_.clear();
  if (m.has_collect() && !peers_.empty()) broadcast(std::move(m));
}

void LazyPath::handle_collect(const pb::Collect& collect) {
  std::set<std::string> emptied;  // a key named twice is buried once
  for (const auto& grave : collect.graves()) {
    if (!check_peer_state(grave).is_ok() || grave.siblings_size() != 0 || grave.type() == pb::COUNTER) continue;
    // The grave may name dots of ours we lost with our disk: never reissue them.
    learn_context(grave.context());
    const std::string tk = KeyStore::typed_key(grave.type(), grave.key());
    KeyEntry* e = store_.find(tk);
    if (!e) {  // already gone here: remember the deletion against late copies
      remember_grave(tk, grave.context());
      continue;
    }
    // What the deletion saw goes; anything newer (a write, another delete) stays.
    if (merge_state(store_.state(*e), grave)) store_.mark_dirty(*e);
    if (store_.state(*e).siblings_size() == 0 && !pending_push_.count(tk)) emptied.insert(tk);
  }
  settle();
  for (const auto& tk : emptied) bury(tk);
}

// --- anti-entropy ------------------------------------------------------------------------------

void LazyPath::start_anti_entropy() {
  settle();
  std::vector<NodeId> candidates;
  for (const auto& p : peers_)
    if (detector_.state(p, now_.mono) == PeerState::kUp) candidates.push_back(p);
  if (candidates.empty()) candidates = peers_;  // probe: a down peer may be back
  const NodeId& partner = candidates[rng_.below(candidates.size())];
  pb::PeerMessage m;
  auto* level = m.mutable_ae_level();
  level->set_session(next_ae_session_++);
  level->set_level(0);
  level->add_indices(0);
  level->add_hashes(store_.digest());
  send(partner, std::move(m));
}

void LazyPath::handle_ae_level(const NodeId& from, const pb::AeTreeLevel& level) {
  const MerkleTree& tree = store_.tree();
  // Malformed requests are ignored whole. Indices strictly increase and lie
  // within the level, so a request names each tree node at most once and the
  // answer is bounded by the tree's shape, not by the request.
  if (level.level() > tree.depth() || level.indices_size() != level.hashes_size() ||
      static_cast<uint64_t>(level.indices_size()) > tree.width(level.level()))
    return;
  for (int i = 0; i < level.indices_size(); ++i)
    if (level.indices(i) >= tree.width(level.level()) || (i > 0 && level.indices(i) <= level.indices(i - 1))) return;
  settle();
  std::vector<uint32_t> differing;
  for (int i = 0; i < level.indices_size(); ++i) {
    const uint32_t idx = level.indices(i);
    if (tree.hash(level.level(), idx) != level.hashes(i)) differing.push_back(idx);
  }
  if (config_.test_faults.anti_entropy_skips_bucket && level.level() == tree.depth() && !differing.empty())
    differing.erase(differing.begin());  // injected bug: the lowest differing bucket is never repaired
  if (differing.empty()) return;

  pb::PeerMessage m;
  if (level.level() == tree.depth()) {
    auto* keys = m.mutable_ae_keys();
    keys->set_session(level.session());
    keys->set_reply_wanted(true);
    // The receiver takes these states as ours (tombstone collection counts
    // on it), so they must survive our crash: sync before sending.
    needs_sync_ = true;
    size_t bytes = 0;
    bool full = false;
    for (uint32_t b : differing) {
      keys->add_buckets(b);
      for (const auto& [tk, e] : store_.bucket(b)) {
        if (!add_within_budget(store_, *keys->mutable_states(), e, bytes, config_.max_batch_bytes)) {
          full = true;  // the rest next round; a bucket sent in part costs only a redundant reply
          break;
        }
      }
      if (full) break;
    }
  } else {
    auto* next = m.mutable_ae_level();
    next->set_session(level.session());
    next->set_level(level.level() + 1);
    for (uint32_t idx : differing) {
      for (uint32_t c = tree.first_child(idx); c < tree.first_child(idx) + tree.fanout(); ++c) {
        next->add_indices(c);
        next->add_hashes(tree.hash(level.level() + 1, c));
      }
    }
  }
  send(from, std::move(m));
}

void LazyPath::handle_ae_keys(const NodeId& from, const pb::AeKeys& keys) {
  for (int i = 0; i < keys.buckets_size(); ++i)  // strictly increasing, within the tree: else malformed
    if (keys.buckets(i) >= store_.tree().leaf_count() || (i > 0 && keys.buckets(i) <= keys.buckets(i - 1))) return;
  std::map<std::string, uint64_t> remote_hash;
  for (const auto& state : keys.states()) {
    if (!merge_remote(from, pb::KeyState(state))) continue;
    remote_hash[KeyStore::typed_key(state.type(), state.key())] = KeyStore::hash_serialized(state.SerializeAsString());
  }
  settle();
  for (const auto& state : keys.states()) {
    if (!is_tombstone_only(state)) continue;
    const std::string tk = KeyStore::typed_key(state.type(), state.key());
    if (auto it = remote_hash.find(tk); it != remote_hash.end()) note_tombstone_seen(from, tk, it->second);
  }
  for (const auto& kh : keys.tombstones())
    if (pb::ValueType_IsValid(kh.type())) note_tombstone_seen(from, KeyStore::typed_key(kh.type(), kh.key()), kh.hash());
  if (!keys.reply_wanted()) return;
  pb::PeerMessage m;
  auto* back = m.mutable_ae_keys();
  back->set_session(keys.session());
  back->set_reply_wanted(false);
  size_t bytes = 0;
  bool full = false;
  for (uint32_t b : keys.buckets()) {
    if (full) break;
    back->add_buckets(b);
    for (const auto& [tk, e] : store_.bucket(b)) {
      auto it = remote_hash.find(tk);
      if (it != remote_hash.end() && it->second == e.hash) {
        if (e.tombstone_only) {
          auto* kh = back->add_tombstones();
          kh->set_key(std::string(KeyStore::key_of(tk)));
          kh->set_type(KeyStore::type_of(tk));
          kh->set_hash(e.hash);
        }
        continue;
      }
      if (!add_within_budget(store_, *back->mutable_states(), e, bytes, config_.max_batch_bytes)) {
        full = true;
        break;
      }
    }
  }
  if (back->states_size() == 0 && back->tombstones_size() == 0) return;
  needs_sync_ = true;  // states and acknowledgements the requester will count on
  send(from, std::move(m));
}

}  // namespace stig::replication
