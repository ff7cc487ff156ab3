// StrongPath: the strong (eager) path of one node: a Raft node, the
// replicated state machine it feeds and the leader's lease clock, glued to
// the core's step/output contract.
//
// Replica routes it every Request.strong, every PeerMessage.raft, every
// tick and every Persisted report, and merges its output with the lazy
// path's. What it guarantees (docs/strong-path.md):
//  - writes are answered only once committed and applied: a Raft majority
//    has the entry durably, so an acknowledged write survives any minority
//    of crashes;
//  - reads are linearizable by ReadIndex unless the request asks for a
//    stale local read;
//  - the term, the vote and log entries are persisted, and synced, before
//    any message or reply that depends on them leaves (Raft marks which);
//    the leader's own appends go out while its disk write is in flight and
//    count for commit only once the runtime reports them synced;
//  - a request whose outcome this node can no longer learn (it stopped
//    being leader before the entry applied) is answered OUTCOME_UNKNOWN,
//    never as failed; a retry with the same (client id, seq) is applied at
//    most once, on any leader;
//  - a node that is not leader answers NOT_LEADER with the leader it knows,
//    and never expires sessions nor grants locks on its own.
//
// Storage: Raft's hard state, log and snapshot in their key spaces
// (replication/key_space.h); the state machine lives in memory and is
// rebuilt at start from the snapshot plus the log after it.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "replication/config.h"
#include "replication/raft/raft.h"
#include "replication/replica.h"
#include "replication/strong/lease_keeper.h"
#include "replication/strong/state_machine.h"

namespace stig::replication {

class StrongPath {
 public:
  // Reads Raft's state back; throws std::invalid_argument (a program edge)
  // if it is corrupt. Raft itself starts at the first input, when the time
  // is known.
  StrongPath(const Config& config, uint64_t seed, const RecoveredState& recovered);
  ~StrongPath();

  void on_client(const Now& now, ClientToken token, const pb::Request& request);
  void on_peer(const Now& now, const NodeId& from, const pb::RaftMessage& message);
  void on_tick(const Now& now);
  void on_persisted(const Now& now, uint64_t through_output);
  // Graceful shutdown: a leader transfers leadership to the follower that
  // has the most of its log.
  void on_leave(const Now& now);

  // What was decided since the last call, for the output Replica will
  // number `output_id`.
  Output take_output(uint64_t output_id);

  // For cluster status and tests.
  std::string role() const;
  uint64_t term() const;
  uint64_t commit_index() const;
  NodeId leader() const;
  const StateMachine& state_machine() const { return *sm_; }
  const raft::Raft* raft() const { return raft_.get(); }

 private:
  // A client request waiting for its entry to apply.
  struct Waiter {
    std::vector<ClientToken> tokens;
    uint64_t seq_response = 0;  // the Request.seq to echo
  };
  struct PendingRead {
    ClientToken token;
    pb::Request request;
    uint64_t index = 0;  // 0 until ReadIndex confirmed it
  };

  void start(const Now& now);
  void after_input(const Now& now);
  void drain_ready(const Now& now);
  void apply(const Now& now, const pb::RaftEntry& entry);
  void serve_reads();
  void maybe_snapshot();
  void propose(const Now& now, ClientToken token, const pb::Request& request);
  void propose_internal(const Now& now, pb::StrongCommand command);
  void read(const Now& now, ClientToken token, const pb::Request& request);
  void answer(const RequestId& id, const pb::StrongResponse& response);
  void reply(ClientToken token, const pb::Request& request, pb::StrongResponse response);
  void reply_error(ClientToken token, const pb::Request& request, pb::ErrorCode code, std::string message);
  void reply_not_leader(ClientToken token, const pb::Request& request);
  void lose_leadership();

  Config config_;
  uint64_t seed_;
  uint64_t snapshot_phase_ = 0;  // this node snapshots at indexes phase + k * strong_snapshot_entries
  std::optional<raft::RecoveredState> recovered_;  // until start()
  std::unique_ptr<raft::Raft> raft_;
  std::unique_ptr<StateMachine> sm_;
  LeaseKeeper leases_;
  Now now_;

  Output out_;
  bool was_leader_ = false;
  uint64_t leader_term_ = 0;
  // Entries this node appended, by the output that carries them: reported
  // to Raft as stable once the runtime says that output is synced.
  std::map<uint64_t, std::pair<uint64_t, uint64_t>> unstable_;  // output id -> (index, term)
  std::optional<std::pair<uint64_t, uint64_t>> appended_;       // in the output being built

  std::map<RequestId, Waiter> waiters_;
  uint64_t next_read_ = 1;
  std::map<uint64_t, PendingRead> reads_;
  bool broken_ = false;  // a snapshot from the leader did not restore: serve nothing
  std::string broken_reason_;
};

}  // namespace stig::replication
