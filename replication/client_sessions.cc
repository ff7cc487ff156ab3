#include "replication/client_sessions.h"

#include <algorithm>

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
  auto slot = find_slot(s, seq);
  if (slot != s.slots.end()) {
    if (slot->second.response) return {Admission::kDuplicateDone, &*slot->second.response};
    slot->second.waiting.push_back(token);
    return {Admission::kDuplicateInFlight};
  }
  // In flight; the caller answers `token` itself.
  s.slots.emplace(first_at_or_after(s, seq), seq, Slot{std::nullopt, {}, kSlotOverhead});
  s.bytes += kSlotOverhead;
  bytes_ += kSlotOverhead;
  while (s.slots.size() > kWindow) {
    const auto& oldest = s.slots.front();
    s.forgotten_below = oldest.first + 1;
    s.bytes -= oldest.second.bytes;
    bytes_ -= oldest.second.bytes;
    s.slots.pop_front();
  }
  enforce_bounds(client_id);
  return {Admission::kNew};
}

ClientSessions::Slots::iterator ClientSessions::first_at_or_after(Session& s, uint64_t seq) {
  if (s.slots.empty() || seq > s.slots.back().first) return s.slots.end();  // the common case: a new seq
  if (s.slots.back().first == seq) return s.slots.end() - 1;
  return std::lower_bound(s.slots.begin(), s.slots.end(), seq,
                          [](const auto& e, uint64_t q) { return e.first < q; });
}

ClientSessions::Slots::iterator ClientSessions::find_slot(Session& s, uint64_t seq) {
  auto it = first_at_or_after(s, seq);
  return it != s.slots.end() && it->first == seq ? it : s.slots.end();
}

std::vector<ClientToken> ClientSessions::complete(const std::string& client_id, uint64_t seq,
                                                  stigmergy::v1::Response response) {
  auto it = sessions_.find(client_id);
  if (it == sessions_.end()) return {};
  Session& s = it->second;
  auto slot = find_slot(s, seq);
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

void ClientSessions::enforce_bounds(const std::string& keep) {
  while ((sessions_.size() > limits_.max_clients || bytes_ > limits_.max_bytes) && lru_.front() != keep)
    forget(sessions_.find(lru_.front()));
}

}  // namespace stig::replication
