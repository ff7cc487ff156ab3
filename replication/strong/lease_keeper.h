// LeaseKeeper: the leader's clock for sessions and lock waits.
//
// The state machine never reads a clock: it only applies ExpireSession and
// CancelWait commands. Deciding *when* to propose them is this class's job,
// on the leader only and on the leader's MONOTONIC clock. It is not
// replicated; every new leader rebuilds it from the state machine.
//
// Guarantees (Jepsen's lessons from etcd and Consul):
//  - a new leader gives every live session a fresh full TTL and every waiting
//    acquire a fresh full wait before it may expire or cancel anything: the
//    time a session spent under the old leader is not trusted;
//  - a node that is not leader never proposes anything; losing leadership
//    forgets everything;
//  - ExpireSession carries the session's last renewal index as this leader
//    saw it, so a keepalive committed after the decision wins (the state
//    machine ignores the expiry).
// A proposal that does not take effect (lost, or overtaken by a keepalive)
// is proposed again `repropose_after_ms` later if the deadline still holds.
// Pure and deterministic: time is passed in.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <vector>

#include "replication/strong/options.h"
#include "replication/time.h"

namespace stig::replication {

struct LeaseKeeperOptions {
  MonoTime repropose_after_ms = 1000;
};

class LeaseKeeper {
 public:
  explicit LeaseKeeper(LeaseKeeperOptions options = {}) : options_(options) {}

  // From the state machine's live_sessions() / live_waits() at the moment
  // this node becomes leader.
  void on_become_leader(MonoTime now, const std::vector<SessionLease>& sessions, const std::vector<WaitLease>& waits);
  void on_lose_leadership();
  bool is_leader() const { return leader_; }

  // A keepalive request arrived (not committed yet): pushes the deadline out
  // a full TTL, never earlier. Unknown sessions are ignored.
  void on_keepalive(MonoTime now, uint64_t session_id);
  // What an applied entry changed (ApplyResult::lease). Ignored on followers.
  void on_applied(MonoTime now, const LeaseChanges& changes);

  // ExpireSession and CancelWait commands to propose now (client_id empty,
  // leader_wall_ms = now.wall).
  std::vector<pb::StrongCommand> due(const Now& now);
  // When due() next has something to say (kNever when nothing).
  MonoTime next_deadline() const;

  size_t sessions() const { return sessions_.size(); }
  size_t waits() const { return waits_.size(); }
  std::optional<MonoTime> session_deadline(uint64_t session_id) const;
  std::optional<MonoTime> wait_deadline(const RequestId& request) const;

 private:
  struct Timer {
    MonoTime deadline = 0;
    MonoTime proposed_at = kNever;  // kNever: not proposed since the deadline was set
    int64_t ttl_ms = 0;             // sessions
    uint64_t renewed_index = 0;     // sessions
  };
  MonoTime fires_at(const Timer& t) const;

  LeaseKeeperOptions options_;
  bool leader_ = false;
  std::map<uint64_t, Timer> sessions_;
  std::map<RequestId, Timer> waits_;
};

}  // namespace stig::replication
