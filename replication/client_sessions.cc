#include "replication/client_sessions.h"

namespace stig::replication {

ClientSessions::Decision ClientSessions::admit(const std::string& client_id, uint64_t seq, ClientToken token) {
  auto [it, inserted] = sessions_.try_emplace(client_id);
  if (inserted) {
    order_.push_back(client_id);
    while (sessions_.size() > max_clients_ && !order_.empty()) {
      if (order_.front() != client_id) sessions_.erase(order_.front());
      order_.pop_front();
    }
  }
  Session& s = it->second;
  if (seq < s.forgotten_below) return {Admission::kStale};
  auto slot = s.slots.find(seq);
  if (slot != s.slots.end()) {
    if (slot->second.response) return {Admission::kDuplicateDone, &*slot->second.response};
    slot->second.waiting.push_back(token);
    return {Admission::kDuplicateInFlight};
  }
  s.slots[seq];  // in flight; the caller answers `token` itself
  while (s.slots.size() > kWindow) {
    s.forgotten_below = s.slots.begin()->first + 1;
    s.slots.erase(s.slots.begin());
  }
  return {Admission::kNew};
}

std::vector<ClientToken> ClientSessions::complete(const std::string& client_id, uint64_t seq,
                                                  const stigmergy::v1::Response& response) {
  auto it = sessions_.find(client_id);
  if (it == sessions_.end()) return {};
  auto slot = it->second.slots.find(seq);
  if (slot == it->second.slots.end()) return {};
  slot->second.response = response;
  return std::move(slot->second.waiting);
}

}  // namespace stig::replication
