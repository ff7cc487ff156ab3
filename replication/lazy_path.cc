#include "replication/lazy_path.h"
#include "replication/write_ids.h"

#include <algorithm>
#include <charconv>
#include <stdexcept>

#include "replication/invariant.h"
#include "replication/printable.h"
namespace stig::replication {

namespace {
const std::string kDotCounterKey = storage_key(KeySpace::kMeta, "/dot_counter");
std::string grave_key(std::string_view typed_key) { return storage_key(KeySpace::kGrave, typed_key); }
}

// --- lifecycle ------------------------------------------------------------------

LazyPath::LazyPath(const Config& config, uint64_t seed, const RecoveredState& recovered)
    : config_(config),
      rng_(seed),
      store_(config.merkle_fanout, config.merkle_depth),
      detector_(config),
      sessions_(ClientSessions::Limits{config.dedup_clients, config.dedup_max_bytes, config.dedup_idle_ms}) {
  if (auto s = config_.validate(); !s.is_ok()) throw std::invalid_argument("invalid configuration: " + s.message());
  for (const auto& p : config_.peers) peers_.push_back(p.id);
  std::sort(peers_.begin(), peers_.end());
  if (!peers_.empty()) {  // both fire at the first step
    timers_.arm(TimerKind::kHeartbeat, 0, 0);
    timers_.arm(TimerKind::kAntiEntropy, 0, 0);
  }

  auto check = [](const Status& st) {
    if (!st.is_ok()) throw std::invalid_argument(st.message());
  };
  auto scan_space = [&](KeySpace space, const RecoveredState::Visitor& visit) {
    const auto [begin, end] = key_space_range(space);
    check(recovered.scan(begin, end, visit));
  };
  std::string bad;  // the first corrupt entry, as a one-line message
  scan_space(KeySpace::kMeta, [&](std::string_view key, std::string_view value) {
    if (key != kDotCounterKey) {
      bad = "unknown key in storage: '" + printable(key) + "'";
      return false;
    }
    uint64_t c = 0;
    auto [p, ec] = std::from_chars(value.data(), value.data() + value.size(), c);
    if (ec != std::errc() || p != value.data() + value.size()) {
      bad = "stored dot counter is corrupt: '" + printable(value) + "'";
      return false;
    }
    dot_counter_ = std::max(dot_counter_, c);
    return true;
  });
  if (bad.empty())
    scan_space(KeySpace::kLazyKey, [&](std::string_view key, std::string_view value) {
      auto loaded = store_.load(key, value);
      if (!loaded) {
        bad = loaded.error().message();
        return false;
      }
      learn_state(**loaded);
      return true;
    });
  store_.finish_load();
  if (bad.empty())
    scan_space(KeySpace::kGrave, [&](std::string_view key, std::string_view value) {
      Grave g;
      if (!g.context.ParseFromArray(value.data(), static_cast<int>(value.size())) ||
          !vv_validate(g.context).is_ok()) {
        bad = "stored tombstone grave is corrupt: '" + printable(key) + "'";
        return false;
      }
      graveyard_[std::string(key_in_space(key))] = std::move(g);
      return true;
    });
  if (!bad.empty()) throw std::invalid_argument(bad);
  // Never reuse a dot, even if the counter write was lost: states and graves
  // on disk name every dot this node issued for them.
  for (const auto& [tk, g] : graveyard_) learn_context(g.context);  // states' contexts were learnt as they loaded
  dot_counter_dirty_ = false;  // recovered, not changed
  store_.settle(nullptr);
  if (config_.test_faults.forget_dot_counter) dot_counter_ = 0;  // injected bug: dots get reissued
}

void LazyPath::step(const Now& now, const Input& input) {
  // Monotonic time never goes back, even if a runtime hands in an older value.
  now_.mono = std::max(now_.mono, now.mono);
  now_.wall = now.wall;
  if (!graves_timed_) {  // recovered graves: their grace starts at the first step
    for (auto& [tk, g] : graveyard_) g.expires = now_.mono + config_.tombstone_grace_ms;
    if (!graveyard_.empty()) timers_.arm(TimerKind::kGraveExpiry, 0, now_.mono + config_.tombstone_grace_ms);
    graves_timed_ = true;
  }
  if (auto* c = std::get_if<ClientInput>(&input)) {
    on_client(c->token, c->request);
  } else if (auto* p = std::get_if<PeerInput>(&input)) {
    if (is_peer(p->from)) {
      detector_.heard(p->from, now_.mono);
      on_peer(p->from, p->message);
    }
  }
  run_timers();
}

Output LazyPath::take_output() {
  settle();
  flush_push();
  collect_tombstones();
  if (dot_counter_dirty_) {
    out_.persist.push_back(Persist{kDotCounterKey, std::to_string(dot_counter_), false});
    dot_counter_dirty_ = false;
  }
  // The retry cache's next expiry moves with every request: re-arm it here.
  if (const MonoTime at = sessions_.next_expiry(); at == kNever)
    timers_.cancel(TimerKind::kRetryCacheExpiry, 0);
  else
    timers_.arm(TimerKind::kRetryCacheExpiry, 0, at);
  out_.wake_at = timers_.next();
  out_.sync = needs_sync_;
  // Without a sync owed, nothing here depends on a power loss keeping this
  // output's persists: written is enough.
  if (!needs_sync_) {
    for (auto& m : out_.messages) m.after = ReleaseAfter::kWritten;
    for (auto& r : out_.replies) r.after = ReleaseAfter::kWritten;
  }
  needs_sync_ = false;
  store_.release_parsed();
  Output result = std::move(out_);
  out_ = Output{};
  return result;
}

void LazyPath::learn_context(const pb::VersionVector& context) {
  for (const auto& e : context.entries()) learn_dot(e.node(), e.counter());
}

void LazyPath::learn_dot(std::string_view node, uint64_t counter) {
  if (node == config_.self) {
    if (counter > dot_counter_ && !config_.test_faults.forget_dot_counter) {
      dot_counter_ = counter;
      dot_counter_dirty_ = true;
    }
  } else {
    auto it = known_dots_.find(std::string(node));
    if (it == known_dots_.end()) it = known_dots_.emplace(std::string(node), 0).first;
    it->second = std::max(it->second, counter);
  }
}

void LazyPath::learn_state(const pb::KeyState& state) {
  learn_context(state.context());
  // Counter adds and set removes draw dots that no context names: learn our
  // own back (other nodes' dots matter only for clamping client contexts,
  // which name register and set dots, all in contexts).
  for_each_write_dot(state, [this](std::string_view node, uint64_t dot) {
    if (node == config_.self) learn_dot(node, dot);
  });
}

void LazyPath::remember_grave(const std::string& tk, const pb::VersionVector& context) {
  if (config_.test_faults.collect_tombstones_early) return;  // injected bug: deletions are forgotten
  Grave& g = graveyard_[tk];
  vv_join(g.context, context);
  g.expires = now_.mono + config_.tombstone_grace_ms;
  if (!timers_.deadline(TimerKind::kGraveExpiry, 0)) timers_.arm(TimerKind::kGraveExpiry, 0, g.expires);
  out_.persist.push_back(Persist{grave_key(tk), encode_context(g.context), false});
  needs_sync_ = true;  // a grave lost in a crash would let a late copy bring the key back
}

void LazyPath::bury(const std::string& tk) {
  const KeyEntry* e = store_.find(tk);
  STIG_INVARIANT(e && e->tombstone_only, "burying a live key");
  remember_grave(tk, store_.state(*e).context());
  store_.erase(tk, out_.persist);
}

KeyEntry& LazyPath::create_or_find(pb::ValueType type, const std::string& key) {
  if (KeyEntry* e = store_.find(type, key)) return *e;
  const std::string tk = KeyStore::typed_key(type, key);
  KeyEntry& e = store_.get_or_create(type, key);
  if (auto g = graveyard_.find(tk); g != graveyard_.end()) {
    // Alive again: the state carries the deletion's context from now on, so
    // the grave is no longer needed.
    *store_.state(e).mutable_context() = g->second.context;
    out_.persist.push_back(Persist{grave_key(tk), {}, true});
    graveyard_.erase(g);
  }
  return e;
}

void LazyPath::expire_graves() {
  // Graves are few and short-lived; a scan per expiry is cheap enough.
  MonoTime next = kNever;
  for (auto it = graveyard_.begin(); it != graveyard_.end();) {
    if (it->second.expires <= now_.mono) {
      out_.persist.push_back(Persist{grave_key(it->first), {}, true});
      it = graveyard_.erase(it);
    } else {
      next = std::min(next, it->second.expires);
      ++it;
    }
  }
  if (next != kNever) timers_.arm(TimerKind::kGraveExpiry, 0, next);
}

void LazyPath::settle() {
  const size_t first = out_.persist.size();
  store_.settle(&out_.persist);
  // Keep what was just serialized for the next push of client-changed keys,
  // so a state is serialized once for the disk and every peer.
  for (size_t i = first; i < out_.persist.size(); ++i) {
    const Persist& p = out_.persist[i];
    if (p.erase || !KeyStore::is_storage_key(p.key)) continue;
    if (auto it = pending_push_.find(key_in_space(p.key)); it != pending_push_.end()) it->second.bytes = p.value;
  }
}

void LazyPath::note_push(const std::string& typed_key, const KeyEntry* entry) {
  // The first change since the last push fixes the base: the state as of
  // the settle before it (entries are settled in groups, so later changes
  // leave the hash where it was until the next settle).
  pending_push_.try_emplace(typed_key, PendingPush{entry ? entry->hash : 0, {}});
}

// --- timers -------------------------------------------------------------------------

void LazyPath::run_timers() {
  while (auto timer = timers_.pop_due(now_.mono)) fire(*timer);
}

void LazyPath::fire(const Timer& timer) {
  const MonoTime now = now_.mono;
  switch (timer.kind) {
    case TimerKind::kHeartbeat: {
      settle();
      pb::PeerMessage m;
      auto* hb = m.mutable_heartbeat();
      hb->set_keys(store_.live_keys());
      hb->set_tombstones(store_.tombstone_keys());
      hb->set_digest(store_.digest());
      broadcast(std::move(m));
      timers_.arm(TimerKind::kHeartbeat, 0, now + config_.heartbeat_interval_ms);
      return;
    }
    case TimerKind::kAntiEntropy: {
      if (anti_entropy_started_) start_anti_entropy();
      anti_entropy_started_ = true;
      // Jitter (75%..125%) keeps nodes from synchronising their rounds.
      const int64_t base = config_.anti_entropy_interval_ms;
      timers_.arm(TimerKind::kAntiEntropy, 0,
                  now + base * 3 / 4 + static_cast<int64_t>(rng_.below(static_cast<uint64_t>(base / 2 + 1))));
      return;
    }
    case TimerKind::kWriteDeadline: return give_up_waiting(timer.id);
    case TimerKind::kBatchExpiry: batch_writes_.erase(timer.id); return;
    case TimerKind::kGraveExpiry: return expire_graves();
    case TimerKind::kRetryCacheExpiry: sessions_.expire(now); return;
  }
}

void LazyPath::give_up_waiting(uint64_t write_id) {
  auto it = pending_writes_.find(write_id);
  if (it == pending_writes_.end()) return;
  PendingWrite& w = it->second;
  const size_t stored = 1 + w.acked.size();
  pb::Response r = w.response;
  r.clear_result();
  r.set_error(pb::DURABILITY_NOT_MET);
  r.set_error_message("stored on " + std::to_string(stored) + " of " + std::to_string(config_.cluster_size()) +
                      " replicas (needed " + std::to_string(1 + w.needed) + ") within " +
                      std::to_string(config_.durability_timeout_ms) +
                      " ms; the write is kept and will still propagate");
  complete_write(w.token, w.client_id, w.seq, std::move(r));
  std::erase(unbatched_writes_, write_id);
  pending_writes_.erase(it);
}

// --- output helpers -----------------------------------------------------------------------

bool LazyPath::is_peer(const NodeId& id) const { return std::binary_search(peers_.begin(), peers_.end(), id); }

void LazyPath::send(const NodeId& to, pb::PeerMessage message) {
  STIG_INVARIANT(to != config_.self, "sending to self");
  message.set_from(config_.self);
  out_.messages.push_back(Outbound{to, std::make_shared<const pb::PeerMessage>(std::move(message))});
}

void LazyPath::broadcast(pb::PeerMessage message) {
  message.set_from(config_.self);
  auto shared = std::make_shared<const pb::PeerMessage>(std::move(message));
  for (const auto& p : peers_) out_.messages.push_back(Outbound{p, shared});
}

void LazyPath::reply(ClientToken token, pb::Response&& response) {
  // Whatever went into the message, the reply must stay parseable.
  if (!response.error_message().empty()) response.set_error_message(one_line_utf8(response.error_message()));
  Reply& r = out_.replies.emplace_back();
  r.token = token;
  r.response.Swap(&response);
}

}  // namespace stig::replication
