#include "replication/client_sessions.h"

#include "replication/invariant.h"

namespace stig::replication {

namespace {
// Bookkeeping per remembered client and per slot beyond the bytes of the
// answer itself (map nodes, the LRU entry): rough, but it keeps a flood of
// tiny sessions inside the byte bound too.
constexpr size_t kSessionOverhead = 160;
constexpr size_t kSlotOverhead = 64;
}  // namespace

ClientSessions::Decision ClientSessions::admit(const std::string& client_id, uint64_t seq, ClientToken token,
                                               MonoTime now) {
  auto [it, inserted] = sessions_.try_emplace(client_id);
  Session& s = it->second;
  if (inserted) {
    s.lru = lru_.insert(lru_.end(), client_id);
    s.bytes = kSessionOverhead + client_id.size();
    bytes_ += s.bytes;
  } else {
    lru_.splice(lru_.end(), lru_, s.lru);
  }
  s.last_active = now;
  if (seq < s.forgotten_below) return {Admission::kStale};
  auto slot = s.slots.find(seq);
  if (slot != s.slots.end()) {
    if (slot->second.response) return {Admission::kDuplicateDone, &*slot->second.response};
    slot->second.waiting.push_back(token);
    return {Admission::kDuplicateInFlight};
  }
  Slot& fresh = s.slots[seq];  // in flight; the caller answers `token` itself
  fresh.bytes = kSlotOverhead;
  s.bytes += fresh.bytes;
  bytes_ += fresh.bytes;
  while (s.slots.size() > kWindow) {
    s.forgotten_below = s.slots.begin()->first + 1;
    drop_slot(s, s.slots.begin());
  }
  enforce_bounds(client_id);
  return {Admission::kNew};
}

std::vector<ClientToken> ClientSessions::complete(const std::string& client_id, uint64_t seq,
                                                  stigmergy::v1::Response response) {
  auto it = sessions_.find(client_id);
  if (it == sessions_.end()) return {};
  Session& s = it->second;
  auto slot = s.slots.find(seq);
  if (slot == s.slots.end()) return {};
  const size_t before = slot->second.bytes;
  slot->second.bytes = kSlotOverhead + response.ByteSizeLong();
  s.bytes += slot->second.bytes - before;
  bytes_ += slot->second.bytes - before;
  slot->second.response = std::move(response);
  std::vector<ClientToken> waiting = std::move(slot->second.waiting);
  slot->second.waiting.clear();
  enforce_bounds(client_id);
  return waiting;
}

void ClientSessions::expire(MonoTime now) {
  while (!lru_.empty()) {
    auto it = sessions_.find(lru_.front());
    STIG_INVARIANT(it != sessions_.end(), "client session LRU names a forgotten client");
    if (now - it->second.last_active < limits_.idle_ms) return;
    forget(it);
  }
}

MonoTime ClientSessions::next_expiry() const {
  if (lru_.empty()) return kNever;
  return sessions_.at(lru_.front()).last_active + limits_.idle_ms;
}

void ClientSessions::forget(SessionMap::iterator it) {
  bytes_ -= it->second.bytes;
  lru_.erase(it->second.lru);
  sessions_.erase(it);
}

void ClientSessions::drop_slot(Session& s, std::map<uint64_t, Slot>::iterator slot) {
  s.bytes -= slot->second.bytes;
  bytes_ -= slot->second.bytes;
  s.slots.erase(slot);
}

void ClientSessions::enforce_bounds(const std::string& keep) {
  while ((sessions_.size() > limits_.max_clients || bytes_ > limits_.max_bytes) && lru_.front() != keep)
    forget(sessions_.find(lru_.front()));
}

}  // namespace stig::replication
