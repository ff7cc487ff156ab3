// LockTable: sessions, locks with fencing tokens, and FIFO wait queues.
//
// Sessions live here because a session's end (expiry or revoke) must release
// its locks and drop its waits in the same step. Guarantees:
//  - at most one holder per lock, and the holder's session exists;
//  - fencing tokens come from one counter that only grows, so a lock's token
//    grows at every grant, even across release, reacquire, the lock's entry
//    being dropped while free, and snapshots;
//  - waiters are granted in FIFO order, and a waiter is granted only if its
//    session still exists at grant time (re-checked, not assumed);
//  - a wait that would close a cycle in the wait-for graph is refused. A
//    waiter waits for the holder and for every waiter ahead of it (they will
//    hold the lock first), so the graph's edges are: waiter -> the waiter
//    just ahead, first waiter -> holder. Grants and removals only shrink
//    reachability, so checking at enqueue time is enough;
//  - waits are bounded per lock and in total; the number of lock names and
//    sessions is bounded.
// Requests were validated by the caller; the table decides only lock logic.
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "replication/status.h"
#include "replication/strong/options.h"

namespace stig::replication {

class LockTable {
 public:
  struct Waiter {
    uint64_t session_id = 0;
    RequestId request;
    int64_t wait_ms = 0;
  };
  struct Lock {
    uint64_t holder = 0;  // never 0 for a stored lock
    uint64_t token = 0;
    std::deque<Waiter> queue;
  };
  struct Session {
    int64_t ttl_ms = 0;
    uint64_t renewed_index = 0;
    std::set<std::string> held;
    std::set<std::string> waiting;
  };
  // Where decisions about other requests and lease changes go.
  struct Sink {
    std::vector<Completion>* completions;
    LeaseChanges* lease;
  };

  explicit LockTable(const StateMachineOptions& options) : options_(options) {}

  const Session* session(uint64_t id) const;
  // Whether `id` was ever granted (gone now if session() is null).
  bool was_granted(uint64_t id) const { return id != 0 && id < next_session_id_; }
  // The response for a session id that does not exist (SESSION_EXPIRED or
  // NOT_FOUND), for messages that name it.
  pb::StrongResponse missing_session(uint64_t id) const;

  pb::StrongResponse grant_session(int64_t ttl_ms, uint64_t log_index, LeaseChanges* lease);
  pb::StrongResponse keepalive(uint64_t id, uint64_t log_index, LeaseChanges* lease);
  // Ends a live session: drops its waits (SESSION_EXPIRED to each) and
  // releases its locks (granting each to its next live waiter).
  void end_session(uint64_t id, std::string_view why, const Sink& sink);

  // Acquire for a live session. `*waiting` is set when the request was queued
  // (no response yet: a Completion answers it later).
  pb::StrongResponse acquire(const std::string& name, uint64_t session_id, const RequestId& request, int64_t wait_ms,
                             bool* waiting, const Sink& sink);
  pb::StrongResponse release(const std::string& name, uint64_t session_id, uint64_t token, const Sink& sink);
  // Drops a waiting request (timed out): true and a BUSY completion when it
  // was still waiting.
  bool cancel_wait(const RequestId& request, const Sink& sink);

  bool is_waiting(const RequestId& request) const { return waits_.count(request) != 0; }
  const Lock* lock(std::string_view name) const;
  size_t sessions() const { return sessions_.size(); }
  size_t waiters() const { return waits_.size(); }
  size_t locks() const { return locks_.size(); }
  std::vector<SessionLease> live_sessions() const;
  std::vector<WaitLease> live_waits() const;

  void to_snapshot(pb::StrongSnapshot* out) const;
  Status from_snapshot(const pb::StrongSnapshot& in);

 private:
  using LockMap = std::map<std::string, Lock, std::less<>>;
  // Hands the lock to its first waiter whose session exists, or frees it.
  void grant_next(LockMap::iterator it, const Sink& sink);
  void remove_waiter(LockMap::iterator it, uint64_t session_id, const RequestId& request);
  // Whether `to` is reachable from `from` in the wait-for graph.
  bool reaches(uint64_t from, uint64_t to) const;
  void check_lock(const std::string& name, const Lock& lock) const;

  StateMachineOptions options_;  // a copy: the owner may move
  std::map<uint64_t, Session> sessions_;
  LockMap locks_;
  std::map<RequestId, std::string> waits_;  // waiting request -> lock name
  uint64_t next_session_id_ = 1;
  uint64_t last_token_ = 0;
};

}  // namespace stig::replication
