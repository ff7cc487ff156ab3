// Raft: one node's consensus state machine (Ongaro's thesis; the shape of
// etcd's raft library), with no I/O at all.
//
// The runtime feeds it peer messages (step), the passage of time (tick) and
// client intents (propose, read_index, transfer_leadership); it never reads a
// clock, a socket or a disk. Everything it wants done comes out of
// take_ready(): state and entries to persist, messages to send, committed
// entries to apply, linearizable reads to serve, and when to wake it up.
//
// Durability handshake (etcd's Ready/Advance): the runtime persists a
// Ready's hard state, snapshot and entries (in that Ready's order, atomically
// or in that order), and releases a message flagged after_persist only once
// everything of its Ready (and of earlier Readies) is durable. It then calls
// stable_to() with the last entry it made durable. The leader counts its own
// copy of an entry towards commit only once stable, but sends APPENDs to
// followers at once (thesis §10.2.1: the leader writes in parallel).
//
// Safety (asserted with STIG_INVARIANT, which only a bug can trip; malformed
// or forged input is counted in stats().ignored and dropped): at most one
// leader per term as seen from this node, the log matching property when
// appending, commit never decreasing nor passing the last entry, applied <=
// commit, term never decreasing, the vote never changing within a term.
//
// Membership is the static voter list of RaftOptions. The first leader of an
// empty log records it as a CONFIG entry and snapshots carry it, so joint
// consensus can follow; until then any other membership is refused.
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "raft.pb.h"
#include "replication/expected.h"
#include "replication/raft/progress.h"
#include "replication/raft/raft_faults.h"
#include "replication/raft/raft_log.h"
#include "replication/rng.h"
#include "replication/status.h"
#include "replication/time.h"

namespace stig::replication::raft {

using NodeId = std::string;

enum class Role { kFollower, kPreCandidate, kCandidate, kLeader };
const char* role_name(Role role);

struct RaftOptions {
  NodeId self;
  std::vector<NodeId> voters;  // every voting member, self included
  MonoTime election_timeout_min_ms = 150;
  MonoTime election_timeout_max_ms = 300;
  MonoTime heartbeat_interval_ms = 50;
  uint64_t max_append_bytes = 1 << 20;         // serialized entries per APPEND (at least one is always sent)
  size_t max_inflight_appends = 64;            // pipelined APPENDs per follower
  uint64_t max_entry_bytes = 1 << 20;          // a bigger proposal is refused
  uint64_t max_uncommitted_bytes = 64 << 20;   // proposals refused while this much waits for commit
  uint64_t max_apply_bytes = 16 << 20;         // committed entry data handed out per Ready
  // Snapshots go to followers in chunks of this many bytes (set below the
  // peer frame limit), at most two chunks unacknowledged at a time.
  uint64_t max_snapshot_chunk_bytes = 1 << 20;
  // A follower refuses snapshots bigger than this (it holds a partial one in
  // memory until complete); must exceed the state machine's largest.
  uint64_t max_snapshot_bytes = uint64_t{1} << 30;
  // Snapshot chunks still unanswered after this long (while the follower
  // answers heartbeats) are taken as lost and sent again from the offset it
  // last acknowledged. Generous: installing a big snapshot durably takes a
  // while, and resending early only adds load.
  MonoTime snapshot_timeout_ms = 5000;
  // After a compaction, this many entries the snapshot covers stay in the
  // log, so a follower that lags by fewer gets entries instead of the whole
  // snapshot (etcd keeps 5000 too).
  uint64_t snapshot_catch_up_entries = 5000;
  // Compacted entries freed per Ready, so a long log is dropped in slices.
  size_t trim_entries_per_ready = 2048;
  bool check_quorum = true;
  bool pre_vote = true;
  RaftFaults faults;  // test only
};

// What the runtime read back from disk at start.
struct RecoveredState {
  pb::HardState hard_state;
  std::optional<pb::SnapshotMeta> snapshot;
  std::string snapshot_data;              // the snapshot itself, to send to followers that lag behind it
  std::vector<pb::RaftEntry> entries;     // the log after the snapshot, contiguous (entries it covers are dropped)
  uint64_t applied = 0;                   // state machine durable through this index (0: the snapshot's)
};

// Why a request was refused, with where to go instead.
enum class RaftError { kNotLeader, kTransferring, kTooLarge, kTooMuchUncommitted, kUnknownPeer };
const char* raft_error_name(RaftError error);
struct Refusal {
  RaftError error = RaftError::kNotLeader;
  NodeId leader_hint;  // empty when unknown
};

struct Proposed {
  uint64_t index = 0;
  uint64_t term = 0;
};
struct Accepted {};

struct OutMessage {
  NodeId to;
  pb::RaftMessage message;
  // Send only once this Ready's (and every earlier Ready's) hard state,
  // snapshot and entries are durable.
  bool after_persist = false;
};

// A linearizable read may be served once the state machine applied `index`.
struct ReadState {
  uint64_t request_id = 0;
  uint64_t index = 0;
};

struct SnapshotToInstall {
  pb::SnapshotMeta meta;
  std::shared_ptr<const std::string> data;
};

struct Ready {
  // Persist, in this order: the snapshot (it replaces the whole log: in one
  // atomic write, erase every log entry and store the snapshot; restore the
  // state machine from it), the truncation (erase log entries >=
  // truncate_from), the entries, the hard state. Ideally the whole Ready in
  // one atomic write batch; a crash between the parts in this order is safe.
  // Then call stable_to(entries.back()).
  std::optional<SnapshotToInstall> snapshot;
  uint64_t truncate_from = 0;  // 0: nothing truncated
  std::vector<pb::RaftEntry> entries;
  std::optional<pb::HardState> hard_state;

  std::vector<OutMessage> messages;
  // Committed, durable entries to apply in order, after restoring `snapshot`
  // if there is one; report progress with applied_to().
  std::vector<pb::RaftEntry> committed;
  std::vector<ReadState> read_states;
  std::vector<uint64_t> dropped_reads;  // read requests that can no longer be served here (leadership lost)
  MonoTime wake_at = kNever;            // call tick() then, if nothing else comes first

  bool has_persist() const { return snapshot || truncate_from != 0 || !entries.empty() || hard_state; }
};

// Counters of what the core saw; `ignored` maps a reason to how many inputs
// were dropped for it.
struct RaftStats {
  std::map<std::string, uint64_t> ignored;
  uint64_t elections_started = 0;
  uint64_t pre_elections_started = 0;
  uint64_t became_leader = 0;
  uint64_t check_quorum_step_downs = 0;
  uint64_t snapshots_sent = 0;         // transfers started
  uint64_t snapshot_chunks_sent = 0;
  uint64_t snapshot_resends = 0;       // transfers resumed after snapshot_timeout_ms of silence
  uint64_t snapshots_installed = 0;
  uint64_t ignored_total() const;
};

class Raft {
 public:
  // Validates the options and everything recovered; a corrupt recovered
  // state is an error value, never an abort.
  static Expected<std::unique_ptr<Raft>, Status> create(RaftOptions options, uint64_t seed, RecoveredState recovered,
                                                        MonoTime now);
  Raft(const Raft&) = delete;
  Raft& operator=(const Raft&) = delete;

  // A message from `from` (the id the connection authenticated).
  void step(MonoTime now, const NodeId& from, const pb::RaftMessage& message);
  // Fires whatever timers are due at `now` (election, heartbeat,
  // check-quorum, leadership transfer).
  void tick(MonoTime now);

  // Appends a command to the leader's log; it is sent (batched with every
  // other proposal since the last Ready) at the next take_ready(). Refused on
  // a follower (with the leader hint), during a leadership transfer, above
  // max_entry_bytes, or while max_uncommitted_bytes wait for commit.
  Expected<Proposed, Refusal> propose(MonoTime now, std::string data);
  // ReadIndex (thesis §6.4): a ReadState{request_id, index} comes out of a
  // later Ready once a quorum answered a heartbeat round sent after this
  // call; the read may be served once `index` is applied. A new leader holds
  // reads until an entry of its term commits. Reads pending when leadership
  // is lost come out in Ready::dropped_reads. Leader only.
  Expected<Accepted, Refusal> read_index(MonoTime now, uint64_t request_id);
  // Thesis §3.10: stop taking proposals, bring `to` up to date, then
  // TIMEOUT_NOW; given up after an election timeout.
  Expected<Accepted, Refusal> transfer_leadership(MonoTime now, const NodeId& to);
  // Starts an election now (pre-vote first if enabled).
  void campaign(MonoTime now);

  Ready take_ready();
  bool has_ready() const;
  // When tick() is next due: what an empty Ready would carry as wake_at. A
  // caller with nothing ready (has_ready() false) reads it instead of taking
  // an empty Ready, and calls trim_log() to keep freeing compacted entries.
  MonoTime wake_at() const;
  // Frees the next batch of entries a snapshot made unnecessary (take_ready
  // does this too).
  void trim_log() { log_.trim_some(opts_.trim_entries_per_ready); }
  // The runtime made entries through (index, term) durable.
  void stable_to(MonoTime now, uint64_t index, uint64_t term);
  // The state machine applied entries through index.
  void applied_to(uint64_t index);
  // The state machine holds a snapshot at applied `index`: the log up to it
  // is dropped (the runtime erases those entries) and lagging followers get
  // this snapshot.
  Status compact(uint64_t index, std::string snapshot_data);

  Role role() const { return role_; }
  uint64_t term() const { return term_; }
  const NodeId& vote() const { return vote_; }
  const NodeId& leader() const { return leader_; }  // empty when unknown
  const NodeId& id() const { return opts_.self; }
  uint64_t commit_index() const { return log_.committed(); }
  uint64_t last_index() const { return log_.last_index(); }
  uint64_t last_term() const { return log_.last_term(); }
  uint64_t stable_index() const { return log_.stable(); }
  uint64_t applied() const { return log_.applied(); }
  uint64_t snapshot_index() const { return log_.snapshot_index(); }
  const NodeId& transferee() const { return transferee_; }
  const RaftLog& log() const { return log_; }
  const pb::SnapshotMeta& snapshot_meta() const { return snapshot_meta_; }  // index 0: none
  const RaftStats& stats() const { return stats_; }
  // The leader's view of a follower; nullptr when not leader or unknown.
  const Progress* progress(const NodeId& peer) const;

 private:
  Raft(RaftOptions options, uint64_t seed, RaftLog log, pb::HardState hs, MonoTime now);

  bool is_voter(const NodeId& id) const;
  size_t quorum() const { return opts_.voters.size() / 2 + 1; }
  void ignore(const char* reason);
  const char* malformed(const NodeId& from, const pb::RaftMessage& m) const;

  void become_follower(MonoTime now, uint64_t term, const NodeId& leader);
  void become_pre_candidate(MonoTime now);
  void become_candidate(MonoTime now);
  void become_leader(MonoTime now);
  void start_election(MonoTime now, bool pre_vote, bool transfer);
  void reset_election_deadline(MonoTime now);
  void poll(MonoTime now, const NodeId& from, bool granted);

  void step_leader(MonoTime now, const NodeId& from, const pb::RaftMessage& m);
  void step_candidate(MonoTime now, const NodeId& from, const pb::RaftMessage& m);
  void step_follower(MonoTime now, const NodeId& from, const pb::RaftMessage& m);
  void handle_vote_request(MonoTime now, const NodeId& from, const pb::RaftMessage& m);
  void handle_append(const NodeId& from, const pb::RaftMessage& m);
  void handle_heartbeat(const NodeId& from, const pb::RaftMessage& m);
  void handle_snapshot(const NodeId& from, const pb::RaftMessage& m);
  void handle_append_resp(MonoTime now, const NodeId& from, const pb::RaftMessage& m);
  void handle_snapshot_resp(MonoTime now, const NodeId& from, const pb::RaftMessage& m);
  void handle_heartbeat_resp(MonoTime now, const NodeId& from, const pb::RaftMessage& m);

  void send(const NodeId& to, pb::RaftMessage m);
  // Sends the follower what it lacks (or a SNAPSHOT); an empty APPEND only
  // if allow_empty (to carry the commit index). True if entries went out.
  bool send_append(MonoTime now, const NodeId& to, bool allow_empty);
  // Sends the next chunks of the follower's snapshot, as the window allows.
  void send_snapshot_chunks(const NodeId& to);
  void broadcast_append(MonoTime now);
  void broadcast_heartbeat(const std::string& context);
  bool maybe_commit(MonoTime now);
  void commit_to(uint64_t index);
  void append_own(std::vector<pb::RaftEntry> entries);

  void tick_leader(MonoTime now);
  void release_reads_after_commit(MonoTime now);
  void drop_reads();
  void abort_transfer();

  pb::HardState hard_state() const;
  // True when the hard state is the one last handed out in a Ready.
  bool hard_state_emitted() const;

  RaftOptions opts_;
  Rng rng_;
  RaftLog log_;
  RaftStats stats_;
  MonoTime last_now_ = 0;  // the latest time any input carried (take_ready has none)

  uint64_t term_ = 0;
  NodeId vote_;
  NodeId leader_;
  Role role_ = Role::kFollower;
  // The last term this node led: nobody else can lead it, whatever a
  // message claims after we stepped down.
  uint64_t led_term_ = 0;

  MonoTime election_deadline_ = kNever;
  MonoTime heartbeat_deadline_ = kNever;
  MonoTime check_quorum_deadline_ = kNever;
  MonoTime transfer_deadline_ = kNever;
  std::optional<MonoTime> last_leader_contact_;  // leader stickiness (thesis §4.2.3)

  std::map<NodeId, Progress> progress_;  // leader: every voter but self
  std::map<NodeId, bool> votes_;         // (pre-)candidate: answers so far, self included
  NodeId transferee_;
  uint64_t uncommitted_bytes_ = 0;
  bool appends_pending_ = false;     // proposals since the last Ready, sent in one batch
  bool read_round_pending_ = false;  // reads since the last Ready, confirmed by one heartbeat round

  struct PendingRead {
    uint64_t request_id = 0;
    uint64_t index = 0;
    uint64_t round = 0;
    std::set<NodeId> acks;
  };
  std::deque<PendingRead> reads_;             // waiting for a quorum of heartbeat answers, in round order
  std::vector<uint64_t> reads_before_commit_;  // waiting for the first commit of this term
  uint64_t read_round_ = 0;
  std::vector<ReadState> read_states_;
  std::vector<uint64_t> dropped_reads_;

  std::vector<OutMessage> msgs_;
  pb::HardState emitted_hard_state_;
  std::optional<SnapshotToInstall> pending_install_;
  // Follower: the snapshot being received, in order, from one leader in one
  // term; dropped when either changes.
  struct IncomingSnapshot {
    NodeId leader;
    uint64_t term = 0;
    pb::SnapshotMeta meta;
    uint64_t size = 0;
    std::string data;  // the first data.size() bytes
  };
  std::optional<IncomingSnapshot> incoming_;
  pb::SnapshotMeta snapshot_meta_;                    // our latest snapshot (to send)
  std::shared_ptr<const std::string> snapshot_data_;  // null: none to send
};

}  // namespace stig::replication::raft
