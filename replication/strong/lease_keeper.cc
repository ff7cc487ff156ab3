#include "replication/strong/lease_keeper.h"

#include <algorithm>

namespace stig::replication {

namespace {

MonoTime add(MonoTime t, int64_t ms) {
  if (ms <= 0) return t;
  return t > kNever - ms ? kNever : t + ms;
}

}  // namespace

void LeaseKeeper::on_become_leader(MonoTime now, const std::vector<SessionLease>& sessions,
                                   const std::vector<WaitLease>& waits) {
  sessions_.clear();
  waits_.clear();
  leader_ = true;
  for (const auto& s : sessions) {
    Timer t;
    t.deadline = add(now, s.ttl_ms);  // a fresh full TTL: time under the old leader is not trusted
    t.ttl_ms = s.ttl_ms;
    t.renewed_index = s.renewed_index;
    sessions_[s.session_id] = t;
  }
  for (const auto& w : waits) {
    Timer t;
    t.deadline = add(now, w.wait_ms);
    waits_[w.request] = t;
  }
}

void LeaseKeeper::on_lose_leadership() {
  leader_ = false;
  sessions_.clear();
  waits_.clear();
}

void LeaseKeeper::on_keepalive(MonoTime now, uint64_t session_id) {
  if (!leader_) return;
  auto it = sessions_.find(session_id);
  if (it == sessions_.end()) return;
  it->second.deadline = std::max(it->second.deadline, add(now, it->second.ttl_ms));
  it->second.proposed_at = kNever;
}

void LeaseKeeper::on_applied(MonoTime now, const LeaseChanges& changes) {
  if (!leader_) return;
  for (const auto& s : changes.sessions_renewed) {
    Timer& t = sessions_[s.session_id];
    t.ttl_ms = s.ttl_ms;
    t.renewed_index = s.renewed_index;
    t.deadline = std::max(t.deadline, add(now, s.ttl_ms));
    t.proposed_at = kNever;
  }
  for (uint64_t id : changes.sessions_ended) sessions_.erase(id);
  for (const auto& w : changes.waits_started) {
    Timer t;
    t.deadline = add(now, w.wait_ms);
    waits_[w.request] = t;
  }
  for (const auto& r : changes.waits_ended) waits_.erase(r);
}

MonoTime LeaseKeeper::fires_at(const Timer& t) const {
  return t.proposed_at == kNever ? t.deadline : std::max(t.deadline, add(t.proposed_at, options_.repropose_after_ms));
}

std::vector<pb::StrongCommand> LeaseKeeper::due(const Now& now) {
  std::vector<pb::StrongCommand> out;
  if (!leader_) return out;
  for (auto& [id, t] : sessions_) {
    if (fires_at(t) > now.mono) continue;
    t.proposed_at = now.mono;
    pb::StrongCommand c;
    c.set_leader_wall_ms(now.wall);
    c.mutable_expire_session()->set_session_id(id);
    c.mutable_expire_session()->set_renewed_index(t.renewed_index);
    out.push_back(std::move(c));
  }
  for (auto& [request, t] : waits_) {
    if (fires_at(t) > now.mono) continue;
    t.proposed_at = now.mono;
    pb::StrongCommand c;
    c.set_leader_wall_ms(now.wall);
    c.mutable_cancel_wait()->set_client_id(request.client_id);
    c.mutable_cancel_wait()->set_seq(request.seq);
    out.push_back(std::move(c));
  }
  return out;
}

MonoTime LeaseKeeper::next_deadline() const {
  MonoTime next = kNever;
  if (!leader_) return next;
  for (const auto& [id, t] : sessions_) next = std::min(next, fires_at(t));
  for (const auto& [r, t] : waits_) next = std::min(next, fires_at(t));
  return next;
}

std::optional<MonoTime> LeaseKeeper::session_deadline(uint64_t session_id) const {
  auto it = sessions_.find(session_id);
  if (it == sessions_.end()) return std::nullopt;
  return it->second.deadline;
}

std::optional<MonoTime> LeaseKeeper::wait_deadline(const RequestId& request) const {
  auto it = waits_.find(request);
  if (it == waits_.end()) return std::nullopt;
  return it->second.deadline;
}

}  // namespace stig::replication
