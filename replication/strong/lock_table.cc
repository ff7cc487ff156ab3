#include "replication/strong/lock_table.h"

#include <algorithm>

#include "replication/invariant.h"
#include "replication/printable.h"

namespace stig::replication {

namespace {

std::string sid(uint64_t id) { return "session " + std::to_string(id); }
std::string lname(std::string_view name) { return "lock " + printable(name, 64); }

pb::StrongResponse granted(const std::string& name, uint64_t session_id, uint64_t token) {
  pb::StrongResponse r;
  r.set_lock(name);
  r.set_token(token);
  r.set_holder_session(session_id);
  return r;
}

}  // namespace

const LockTable::Session* LockTable::session(uint64_t id) const {
  auto it = sessions_.find(id);
  return it == sessions_.end() ? nullptr : &it->second;
}

const LockTable::Lock* LockTable::lock(std::string_view name) const {
  auto it = locks_.find(name);
  return it == locks_.end() ? nullptr : &it->second;
}

pb::StrongResponse LockTable::missing_session(uint64_t id) const {
  if (was_granted(id)) return error_response(pb::SESSION_EXPIRED, sid(id) + " expired or was revoked");
  return error_response(pb::NOT_FOUND, sid(id) + " was never granted");
}

pb::StrongResponse LockTable::grant_session(int64_t ttl_ms, uint64_t log_index, LeaseChanges* lease) {
  if (sessions_.size() >= options_.max_sessions)
    return error_response(pb::BUSY, "too many sessions (" + std::to_string(options_.max_sessions) + ")");
  const uint64_t id = next_session_id_++;
  Session& s = sessions_[id];
  s.ttl_ms = ttl_ms;
  s.renewed_index = log_index;
  lease->sessions_renewed.push_back({id, ttl_ms, log_index});
  pb::StrongResponse r;
  r.set_session_id(id);
  r.set_ttl_ms(ttl_ms);
  return r;
}

pb::StrongResponse LockTable::keepalive(uint64_t id, uint64_t log_index, LeaseChanges* lease) {
  auto it = sessions_.find(id);
  if (it == sessions_.end()) return missing_session(id);
  it->second.renewed_index = log_index;
  lease->sessions_renewed.push_back({id, it->second.ttl_ms, log_index});
  pb::StrongResponse r;
  r.set_session_id(id);
  r.set_ttl_ms(it->second.ttl_ms);
  return r;
}

void LockTable::end_session(uint64_t id, std::string_view why, const Sink& sink) {
  auto sit = sessions_.find(id);
  STIG_INVARIANT(sit != sessions_.end(), "ending a live session");
  // Waits first, so none of them can be granted a lock this session frees.
  const std::set<std::string> waiting = sit->second.waiting;
  for (const auto& name : waiting) {
    auto it = locks_.find(name);
    STIG_INVARIANT(it != locks_.end(), "a session waits on a stored lock");
    auto w = std::find_if(it->second.queue.begin(), it->second.queue.end(),
                          [&](const Waiter& x) { return x.session_id == id; });
    STIG_INVARIANT(w != it->second.queue.end(), "a waiting session is in the lock's queue");
    const RequestId request = w->request;
    remove_waiter(it, id, request);
    sink.completions->push_back(
        {request, error_response(pb::SESSION_EXPIRED, sid(id) + " " + std::string(why) + " while waiting for " +
                                                          lname(name))});
    sink.lease->waits_ended.push_back(request);
  }
  const std::set<std::string> held = sit->second.held;
  for (const auto& name : held) {
    auto it = locks_.find(name);
    STIG_INVARIANT(it != locks_.end() && it->second.holder == id, "a session's held lock names it as holder");
    grant_next(it, sink);
  }
  STIG_INVARIANT(sit->second.held.empty() && sit->second.waiting.empty(), "an ended session holds and waits for nothing");
  sessions_.erase(sit);
  sink.lease->sessions_ended.push_back(id);
}

void LockTable::remove_waiter(LockMap::iterator it, uint64_t session_id, const RequestId& request) {
  auto& q = it->second.queue;
  q.erase(std::remove_if(q.begin(), q.end(), [&](const Waiter& w) { return w.request == request; }), q.end());
  waits_.erase(request);
  sessions_.at(session_id).waiting.erase(it->first);
}

void LockTable::grant_next(LockMap::iterator it, const Sink& sink) {
  Lock& l = it->second;
  if (l.holder != 0) {
    auto h = sessions_.find(l.holder);
    if (h != sessions_.end()) h->second.held.erase(it->first);
    l.holder = 0;
  }
  while (!l.queue.empty()) {
    Waiter w = std::move(l.queue.front());
    l.queue.pop_front();
    waits_.erase(w.request);
    sink.lease->waits_ended.push_back(w.request);
    auto s = sessions_.find(w.session_id);
    // Re-check at grant (Jepsen, etcd locks): never hand a lock to a session
    // that is gone, whatever dropped it.
    if (s == sessions_.end()) {
      sink.completions->push_back(
          {w.request, error_response(pb::SESSION_EXPIRED, sid(w.session_id) + " ended while waiting for " +
                                                              lname(it->first))});
      continue;
    }
    const uint64_t token = ++last_token_;
    STIG_INVARIANT(token > l.token, "fencing tokens grow per lock");
    l.holder = w.session_id;
    l.token = token;
    s->second.waiting.erase(it->first);
    s->second.held.insert(it->first);
    sink.completions->push_back({w.request, granted(it->first, w.session_id, token)});
    return;
  }
  locks_.erase(it);  // free and nobody waits: last_token_ keeps future tokens above it
}

bool LockTable::reaches(uint64_t from, uint64_t to) const {
  std::set<uint64_t> seen;
  std::vector<uint64_t> stack{from};
  while (!stack.empty()) {
    const uint64_t x = stack.back();
    stack.pop_back();
    if (x == to) return true;
    if (!seen.insert(x).second) continue;
    auto s = sessions_.find(x);
    if (s == sessions_.end()) continue;
    for (const auto& name : s->second.waiting) {
      const Lock& l = locks_.find(name)->second;
      uint64_t next = l.holder;
      for (const auto& w : l.queue) {
        if (w.session_id == x) break;
        next = w.session_id;
      }
      stack.push_back(next);
    }
  }
  return false;
}

pb::StrongResponse LockTable::acquire(const std::string& name, uint64_t session_id, const RequestId& request,
                                      int64_t wait_ms, bool* waiting, const Sink& sink) {
  *waiting = false;
  auto sit = sessions_.find(session_id);
  if (sit == sessions_.end()) return missing_session(session_id);
  STIG_INVARIANT(!is_waiting(request), "the caller rejoins a waiting request instead of acquiring again");
  auto it = locks_.find(name);
  if (it == locks_.end()) {
    if (locks_.size() >= options_.max_locks)
      return error_response(pb::BUSY, "too many locks (" + std::to_string(options_.max_locks) + ")");
    it = locks_.emplace(name, Lock{}).first;
    uint64_t token = ++last_token_;
    if (options_.test_lock_tokens_restart) token = 1;  // injected bug: tokens repeat
    it->second.holder = session_id;
    it->second.token = token;
    sit->second.held.insert(name);
    return granted(name, session_id, token);
  }
  Lock& l = it->second;
  // Reacquire by the holder: the lock is already its own; like etcd, answer
  // with the existing token (no new grant, no fence invalidated).
  if (l.holder == session_id) return granted(name, session_id, l.token);
  if (sit->second.waiting.count(name) != 0)
    return error_response(pb::BUSY, sid(session_id) + " already waits for " + lname(name));
  if (wait_ms == 0) {
    auto r = error_response(pb::BUSY, lname(name) + " is held by " + sid(l.holder));
    r.set_lock(name);
    r.set_holder_session(l.holder);
    return r;
  }
  if (l.queue.size() >= options_.max_waiters_per_lock)
    return error_response(pb::BUSY, "the wait queue of " + lname(name) + " is full (" +
                                        std::to_string(options_.max_waiters_per_lock) + ")");
  if (waits_.size() >= options_.max_waiters_total)
    return error_response(pb::BUSY, "too many waiting lock requests (" +
                                        std::to_string(options_.max_waiters_total) + ")");
  const uint64_t ahead = l.queue.empty() ? l.holder : l.queue.back().session_id;
  if (reaches(ahead, session_id))
    return error_response(pb::DEADLOCK, "waiting for " + lname(name) + " (held by " + sid(l.holder) +
                                             ") would close a wait-for cycle back to " + sid(session_id));
  l.queue.push_back(Waiter{session_id, request, wait_ms});
  sit->second.waiting.insert(name);
  waits_.emplace(request, name);
  sink.lease->waits_started.push_back(WaitLease{request, session_id, wait_ms});
  *waiting = true;
  return {};
}

pb::StrongResponse LockTable::release(const std::string& name, uint64_t session_id, uint64_t token, const Sink& sink) {
  if (sessions_.find(session_id) == sessions_.end()) return missing_session(session_id);
  auto it = locks_.find(name);
  if (it == locks_.end()) return error_response(pb::NOT_FOUND, lname(name) + " is not held");
  if (it->second.holder != session_id)
    return error_response(pb::CONFLICT, lname(name) + " is held by " + sid(it->second.holder) + ", not " +
                                            sid(session_id));
  if (it->second.token != token)
    return error_response(pb::CONFLICT, "token " + std::to_string(token) + " is not the current token of " +
                                            lname(name) + " (" + std::to_string(it->second.token) + ")");
  grant_next(it, sink);
  pb::StrongResponse r;
  r.set_lock(name);
  r.set_token(token);
  r.set_holder_session(session_id);
  return r;
}

bool LockTable::cancel_wait(const RequestId& request, const Sink& sink) {
  auto w = waits_.find(request);
  if (w == waits_.end()) return false;
  const std::string name = w->second;
  auto it = locks_.find(name);
  STIG_INVARIANT(it != locks_.end(), "a wait names a stored lock");
  auto q = std::find_if(it->second.queue.begin(), it->second.queue.end(),
                        [&](const Waiter& x) { return x.request == request; });
  STIG_INVARIANT(q != it->second.queue.end(), "a wait is in its lock's queue");
  const uint64_t session_id = q->session_id;
  const int64_t wait_ms = q->wait_ms;
  remove_waiter(it, session_id, request);
  sink.completions->push_back(
      {request, error_response(pb::BUSY, lname(name) + " was not granted to " + sid(session_id) + " within " +
                                             std::to_string(wait_ms) + " ms")});
  sink.lease->waits_ended.push_back(request);
  return true;
}

std::vector<SessionLease> LockTable::live_sessions() const {
  std::vector<SessionLease> out;
  for (const auto& [id, s] : sessions_) out.push_back({id, s.ttl_ms, s.renewed_index});
  return out;
}

std::vector<WaitLease> LockTable::live_waits() const {
  std::vector<WaitLease> out;
  for (const auto& [name, l] : locks_)
    for (const auto& w : l.queue) out.push_back({w.request, w.session_id, w.wait_ms});
  return out;
}

void LockTable::check_lock(const std::string& name, const Lock& l) const {
  STIG_INVARIANT(l.holder != 0, "a stored lock has a holder");
  auto h = sessions_.find(l.holder);
  STIG_INVARIANT(h != sessions_.end() && h->second.held.count(name) != 0, "a holder's session exists");
  STIG_INVARIANT(l.token != 0 && l.token <= last_token_, "tokens come from the counter");
}

void LockTable::to_snapshot(pb::StrongSnapshot* out) const {
  out->set_next_session_id(next_session_id_);
  out->set_last_token(last_token_);
  for (const auto& [id, s] : sessions_) {
    auto* ss = out->add_sessions();
    ss->set_id(id);
    ss->set_ttl_ms(s.ttl_ms);
    ss->set_renewed_index(s.renewed_index);
  }
  for (const auto& [name, l] : locks_) {
    check_lock(name, l);
    auto* sl = out->add_locks();
    sl->set_name(name);
    sl->set_holder_session(l.holder);
    sl->set_token(l.token);
    for (const auto& w : l.queue) {
      auto* sw = sl->add_waiters();
      sw->set_session_id(w.session_id);
      sw->set_client_id(w.request.client_id);
      sw->set_seq(w.request.seq);
      sw->set_wait_ms(w.wait_ms);
    }
  }
}

Status LockTable::from_snapshot(const pb::StrongSnapshot& in) {
  sessions_.clear();
  locks_.clear();
  waits_.clear();
  next_session_id_ = in.next_session_id();
  last_token_ = in.last_token();
  if (next_session_id_ == 0) return Status::corruption("next session id is 0");
  if (static_cast<size_t>(in.sessions_size()) > options_.max_sessions) return Status::corruption("too many sessions");
  for (int i = 0; i < in.sessions_size(); ++i) {
    const auto& ss = in.sessions(i);
    if (ss.id() == 0 || ss.id() >= next_session_id_) return Status::corruption("session id never granted");
    if (i > 0 && ss.id() <= in.sessions(i - 1).id()) return Status::corruption("sessions not ascending");
    if (ss.ttl_ms() < options_.min_session_ttl_ms || ss.ttl_ms() > options_.max_session_ttl_ms)
      return Status::corruption("session ttl out of bounds");
    if (ss.renewed_index() > in.applied_index()) return Status::corruption("session renewed after the applied index");
    Session& s = sessions_[ss.id()];
    s.ttl_ms = ss.ttl_ms();
    s.renewed_index = ss.renewed_index();
  }
  if (static_cast<size_t>(in.locks_size()) > options_.max_locks) return Status::corruption("too many locks");
  for (int i = 0; i < in.locks_size(); ++i) {
    const auto& sl = in.locks(i);
    if (sl.name().empty() || sl.name().size() > options_.max_key_bytes)
      return Status::corruption("lock name size out of bounds");
    if (i > 0 && !(in.locks(i - 1).name() < sl.name())) return Status::corruption("locks not ascending");
    auto holder = sessions_.find(sl.holder_session());
    if (holder == sessions_.end()) return Status::corruption("lock held by a session that does not exist");
    if (sl.token() == 0 || sl.token() > last_token_) return Status::corruption("lock token above the token counter");
    if (static_cast<size_t>(sl.waiters_size()) > options_.max_waiters_per_lock)
      return Status::corruption("lock wait queue over its bound");
    Lock l;
    l.holder = sl.holder_session();
    l.token = sl.token();
    holder->second.held.insert(sl.name());
    std::set<uint64_t> queued;
    for (const auto& sw : sl.waiters()) {
      auto s = sessions_.find(sw.session_id());
      if (s == sessions_.end()) return Status::corruption("waiter's session does not exist");
      if (sw.session_id() == l.holder || !queued.insert(sw.session_id()).second)
        return Status::corruption("session waits twice or for its own lock");
      if (sw.client_id().empty() || sw.client_id().size() > options_.max_id_bytes)
        return Status::corruption("waiter client id size out of bounds");
      if (sw.wait_ms() <= 0 || sw.wait_ms() > options_.max_lock_wait_ms)
        return Status::corruption("waiter wait out of bounds");
      RequestId request{sw.client_id(), sw.seq()};
      if (!waits_.emplace(request, sl.name()).second) return Status::corruption("request waits twice");
      s->second.waiting.insert(sl.name());
      l.queue.push_back(Waiter{sw.session_id(), std::move(request), sw.wait_ms()});
    }
    locks_.emplace(sl.name(), std::move(l));
  }
  if (waits_.size() > options_.max_waiters_total) return Status::corruption("too many waiters");
  return Status::ok();
}

}  // namespace stig::replication
