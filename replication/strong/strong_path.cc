#include "replication/strong/strong_path.h"

#include <algorithm>
#include <stdexcept>

#include "replication/invariant.h"
#include "replication/key_space.h"
#include "replication/printable.h"

namespace stig::replication {

namespace {

const std::string kHardStateKey = storage_key(KeySpace::kRaftState, "hard_state");
const std::string kSnapshotMetaKey = storage_key(KeySpace::kSnapshot, "meta");
const std::string kSnapshotDataKey = storage_key(KeySpace::kSnapshot, "data");

// Log keys sort by index: 8 bytes, big-endian.
std::string log_key(uint64_t index) {
  std::string k(9, '\0');
  k[0] = static_cast<char>(KeySpace::kRaftLog);
  for (int i = 0; i < 8; ++i) k[8 - i] = static_cast<char>((index >> (8 * i)) & 0xff);
  return k;
}

std::optional<uint64_t> log_index_of(std::string_view key) {
  if (key.size() != 9 || !in_key_space(key, KeySpace::kRaftLog)) return std::nullopt;
  uint64_t index = 0;
  for (int i = 1; i <= 8; ++i) index = (index << 8) | static_cast<uint8_t>(key[i]);
  return index;
}

template <class Message>
std::string serialize(const Message& m) {
  std::string out;
  m.SerializeToString(&out);
  return out;
}

bool is_read(const pb::StrongRequest& r) {
  return r.has_get() || r.has_range() || r.has_history() || r.has_acl_list();
}

// ReleaseAfter for what Raft says a message depends on.
ReleaseAfter release_for(bool after_persist) { return after_persist ? ReleaseAfter::kSynced : ReleaseAfter::kAtOnce; }

}  // namespace

StrongPath::StrongPath(const Config& config, uint64_t seed, const RecoveredState& recovered)
    : config_(config), seed_(seed) {
  {
    const auto all = config_.all_nodes();
    const auto rank = static_cast<uint64_t>(std::find(all.begin(), all.end(), config_.self) - all.begin());
    snapshot_phase_ = config_.strong_snapshot_entries / all.size() * rank;
  }
  raft::RecoveredState r;
  std::string bad;
  auto check = [](const Status& st) {
    if (!st.is_ok()) throw std::invalid_argument(st.message());
  };
  auto scan = [&](KeySpace space, const RecoveredState::Visitor& visit) {
    const auto [begin, end] = key_space_range(space);
    check(recovered.scan(begin, end, visit));
  };
  scan(KeySpace::kRaftState, [&](std::string_view key, std::string_view value) {
    if (key != kHardStateKey || !r.hard_state.ParseFromArray(value.data(), static_cast<int>(value.size()))) {
      bad = "stored raft state is corrupt: '" + printable(key) + "'";
      return false;
    }
    return true;
  });
  std::string snapshot_data;
  if (bad.empty())
    scan(KeySpace::kSnapshot, [&](std::string_view key, std::string_view value) {
      if (key == kSnapshotDataKey) {
        snapshot_data.assign(value);
      } else if (key == kSnapshotMetaKey) {
        pb::SnapshotMeta meta;
        if (!meta.ParseFromArray(value.data(), static_cast<int>(value.size()))) {
          bad = "stored snapshot metadata is corrupt";
          return false;
        }
        r.snapshot = std::move(meta);
      } else {
        bad = "unknown key in storage: '" + printable(key) + "'";
        return false;
      }
      return true;
    });
  if (bad.empty()) {
    const uint64_t first = r.snapshot ? r.snapshot->index() + 1 : 1;
    const auto [begin, end] = key_space_range(KeySpace::kRaftLog);
    check(recovered.scan(log_key(first), end, [&](std::string_view key, std::string_view value) {
      pb::RaftEntry e;
      const auto index = log_index_of(key);
      if (!index || !e.ParseFromArray(value.data(), static_cast<int>(value.size())) || e.index() != *index) {
        bad = "stored raft log entry is corrupt: '" + printable(key) + "'";
        return false;
      }
      r.entries.push_back(std::move(e));
      return true;
    }));
  }
  if (!bad.empty()) throw std::invalid_argument(bad);

  StateMachineOptions sm_options;
  sm_options.history_retention_revisions = config_.strong_history_revisions;
  sm_options.test_lock_tokens_restart = config_.test_faults.strong_lock_tokens_restart;
  sm_options.access.enabled = config_.access_control && !config_.test_faults.acl_allows_all;
  sm_options.access.admin_agent = config_.admin_agent;
  sm_options.access.max_prefix_bytes = sm_options.max_key_bytes;
  sm_options.access.max_name_bytes = sm_options.max_id_bytes;
  if (r.snapshot) {
    auto sm = StateMachine::restore(snapshot_data, sm_options);
    if (!sm) throw std::invalid_argument("stored state machine snapshot is corrupt: " + sm.error().message());
    sm_ = std::make_unique<StateMachine>(std::move(*sm));
    r.snapshot_data = std::move(snapshot_data);
  } else {
    sm_ = std::make_unique<StateMachine>(sm_options);
  }
  recovered_ = std::move(r);
}

StrongPath::~StrongPath() = default;

void StrongPath::start(const Now& now) {
  raft::RaftOptions o;
  o.self = config_.self;
  o.voters = config_.all_nodes();
  o.election_timeout_min_ms = config_.raft_election_min_ms;
  o.election_timeout_max_ms = config_.raft_election_max_ms;
  o.heartbeat_interval_ms = config_.raft_heartbeat_ms;
  o.max_snapshot_chunk_bytes = config_.raft_snapshot_chunk_bytes;
  o.snapshot_catch_up_entries = config_.strong_snapshot_catch_up_entries;
  // Appends (and so single entries) must fit a peer frame as chunks do.
  o.max_append_bytes = std::min<uint64_t>(o.max_append_bytes, config_.raft_snapshot_chunk_bytes);
  o.max_entry_bytes = std::min<uint64_t>(o.max_entry_bytes, config_.raft_snapshot_chunk_bytes);
  o.faults.commit_from_old_term = config_.test_faults.raft_commit_from_old_term;
  o.faults.vote_not_durable = config_.test_faults.raft_vote_not_durable;
  o.faults.read_without_quorum = config_.test_faults.raft_read_without_quorum;
  auto created = raft::Raft::create(o, seed_, std::move(*recovered_), now.mono);
  recovered_.reset();
  // Recovery was validated when it was read, except what only Raft can
  // judge (a log that does not fit the hard state): that is a corrupt disk,
  // at the program's edge like any other.
  if (!created) throw std::invalid_argument("stored raft state is inconsistent: " + created.error().message());
  raft_ = std::move(created.value());
}

// --- inputs -------------------------------------------------------------------------

void StrongPath::on_client(const Now& now, ClientToken token, const pb::Request& request) {
  now_ = now;
  if (!raft_) start(now);
  const pb::StrongRequest& sr = request.strong();
  if (broken_) return reply_error(token, request, pb::INTERNAL, broken_reason_);
  if (sr.op_case() == pb::StrongRequest::OP_NOT_SET)
    return reply_error(token, request, pb::BAD_REQUEST, "strong request names no operation");
  if (is_read(sr))
    read(now, token, request);
  else
    propose(now, token, request);
  after_input(now);
}

void StrongPath::on_peer(const Now& now, const NodeId& from, const pb::RaftMessage& message) {
  now_ = now;
  if (!raft_) start(now);
  raft_->step(now.mono, from, message);
  after_input(now);
}

void StrongPath::on_tick(const Now& now) {
  now_ = now;
  if (!raft_) start(now);
  raft_->tick(now.mono);
  if (raft_->role() == raft::Role::kLeader && leases_.is_leader())
    for (auto& command : leases_.due(now)) propose_internal(now, std::move(command));
  after_input(now);
}

void StrongPath::on_persisted(const Now& now, uint64_t through_output) {
  now_ = now;
  if (!raft_) start(now);
  for (auto it = unstable_.begin(); it != unstable_.end() && it->first <= through_output;) {
    raft_->stable_to(now.mono, it->second.first, it->second.second);
    it = unstable_.erase(it);
  }
  after_input(now);
}

void StrongPath::on_leave(const Now& now) {
  now_ = now;
  if (!raft_) start(now);
  if (raft_->role() == raft::Role::kLeader) {
    NodeId best;
    uint64_t best_match = 0;
    for (const auto& p : config_.peers) {
      const raft::Progress* progress = raft_->progress(p.id);
      if (progress && (best.empty() || progress->match() > best_match)) {
        best = p.id;
        best_match = progress->match();
      }
    }
    if (!best.empty()) (void)raft_->transfer_leadership(now.mono, best);
  }
  after_input(now);
}

// Leadership changes are noticed after every input: a deposed leader drops
// what it was doing before anything else can happen.
void StrongPath::after_input(const Now& now) {
  const bool leader = raft_->role() == raft::Role::kLeader;
  if (was_leader_ && (!leader || raft_->term() != leader_term_)) lose_leadership();
  if (leader && !was_leader_) {
    leader_term_ = raft_->term();
    leases_.on_become_leader(now.mono, sm_->live_sessions(), sm_->live_waits());
  }
  was_leader_ = leader;
  drain_ready(now);
}

void StrongPath::lose_leadership() {
  leases_.on_lose_leadership();
  const std::string why = "node " + printable(config_.self) +
                          " stopped being leader before the outcome was known; retry with the same request id";
  for (auto& [id, waiter] : waiters_) {
    for (ClientToken t : waiter.tokens) {
      pb::Response r;
      r.set_seq(waiter.seq_response);
      r.set_error(pb::OUTCOME_UNKNOWN);
      r.set_error_message(why);
      r.mutable_strong()->set_error(pb::OUTCOME_UNKNOWN);
      r.mutable_strong()->set_error_message(why);
      out_.replies.push_back(Reply{t, std::move(r), ReleaseAfter::kAtOnce});
    }
  }
  waiters_.clear();
  for (auto& [id, read] : reads_) reply_not_leader(read.token, read.request);
  reads_.clear();
  was_leader_ = false;
}

// --- requests ------------------------------------------------------------------------

void StrongPath::propose(const Now& now, ClientToken token, const pb::Request& request) {
  if (raft_->role() != raft::Role::kLeader) return reply_not_leader(token, request);
  if (request.client_id().empty())
    return reply_error(token, request, pb::BAD_REQUEST, "a strong write needs a client id (for at-most-once retries)");
  RequestId id{request.client_id(), request.seq()};
  if (auto it = waiters_.find(id); it != waiters_.end()) {
    it->second.tokens.push_back(token);  // a retry while the first is in flight: one entry answers both
    return;
  }
  if (request.strong().has_session_keepalive())
    leases_.on_keepalive(now.mono, request.strong().session_keepalive().session_id());
  pb::StrongCommand command;
  command.set_client_id(request.client_id());
  command.set_seq(request.seq());
  command.set_agent(request.agent());
  command.set_leader_wall_ms(now.wall);
  *command.mutable_request() = request.strong();
  auto proposed = raft_->propose(now.mono, serialize(command));
  if (!proposed) {
    const auto& refusal = proposed.error();
    switch (refusal.error) {
      case raft::RaftError::kNotLeader:
      case raft::RaftError::kTransferring:
      case raft::RaftError::kUnknownPeer: return reply_not_leader(token, request);
      case raft::RaftError::kTooLarge:
        return reply_error(token, request, pb::BAD_REQUEST, "strong request is larger than one log entry may be");
      case raft::RaftError::kTooMuchUncommitted:
        return reply_error(token, request, pb::UNAVAILABLE,
                           "too many strong writes wait for commit (a majority is slow or unreachable); retry later");
    }
  }
  waiters_[id] = Waiter{{token}, request.seq()};
}

void StrongPath::propose_internal(const Now& now, pb::StrongCommand command) {
  command.set_leader_wall_ms(now.wall);
  (void)raft_->propose(now.mono, serialize(command));  // refused: the lease keeper proposes again later
}

void StrongPath::read(const Now& now, ClientToken token, const pb::Request& request) {
  const pb::StrongRequest& sr = request.strong();
  const bool stale = sr.has_get() && sr.get().stale();
  if (stale) return reply(token, request, sm_->read(sr));
  if (raft_->role() != raft::Role::kLeader) return reply_not_leader(token, request);
  if (config_.test_faults.strong_reads_skip_read_index)  // injected bug: a deposed leader serves stale reads
    return reply(token, request, sm_->read(sr));
  const uint64_t id = next_read_++;
  auto accepted = raft_->read_index(now.mono, id);
  if (!accepted) return reply_not_leader(token, request);
  reads_[id] = PendingRead{token, request, 0};
}

// --- Raft's output -----------------------------------------------------------------------

void StrongPath::drain_ready(const Now& now) {
  // Most steps (every lazy request) leave Raft with nothing to hand out:
  // then only its next deadline matters. Nothing below changes without a
  // Ready either: reads are served and snapshots taken as entries apply.
  if (!raft_->has_ready()) {
    raft_->trim_log();
    out_.wake_at = std::min(out_.wake_at, raft_->wake_at());
    return;
  }
  // Raft's next deadline (heartbeat, election) must reach wake_at or the
  // timers would only fire when some other input happens to arrive: each
  // Ready carries it.
  while (raft_->has_ready()) {
    raft::Ready rd = raft_->take_ready();
    if (rd.snapshot) {
      const auto [begin, end] = key_space_range(KeySpace::kRaftLog);
      out_.persist.push_back(Persist{begin, {}, true, end});
      out_.persist.push_back(Persist{kSnapshotDataKey, *rd.snapshot->data});
      out_.persist.push_back(Persist{kSnapshotMetaKey, serialize(rd.snapshot->meta)});
      auto sm = StateMachine::restore(*rd.snapshot->data, sm_->options());
      if (sm) {
        sm_ = std::make_unique<StateMachine>(std::move(*sm));
      } else {
        broken_ = true;  // the leader sent a snapshot we cannot read: stop rather than diverge
        broken_reason_ = "the snapshot received from the leader does not restore (" + sm.error().message() +
                         "); this node serves no strong requests until restarted with its data dir cleared";
      }
    }
    if (rd.truncate_from != 0) {
      const auto [begin, end] = key_space_range(KeySpace::kRaftLog);
      out_.persist.push_back(Persist{log_key(rd.truncate_from), {}, true, end});
    }
    for (const auto& e : rd.entries) out_.persist.push_back(Persist{log_key(e.index()), serialize(e)});
    if (!rd.entries.empty()) appended_ = std::make_pair(rd.entries.back().index(), rd.entries.back().term());
    if (rd.hard_state) out_.persist.push_back(Persist{kHardStateKey, serialize(*rd.hard_state)});
    for (auto& m : rd.messages) {
      pb::PeerMessage pm;
      pm.set_from(config_.self);
      *pm.mutable_raft() = std::move(m.message);
      out_.messages.push_back(Outbound{m.to, std::make_shared<const pb::PeerMessage>(std::move(pm)),
                                       release_for(m.after_persist)});
    }
    uint64_t last_applied = 0;
    for (const auto& e : rd.committed) {
      if (!broken_) apply(now, e);
      last_applied = e.index();
    }
    if (last_applied != 0) raft_->applied_to(last_applied);
    for (const auto& rs : rd.read_states)
      if (auto it = reads_.find(rs.request_id); it != reads_.end()) it->second.index = std::max<uint64_t>(rs.index, 1);
    for (uint64_t dropped : rd.dropped_reads)
      if (auto it = reads_.find(dropped); it != reads_.end()) {
        reply_not_leader(it->second.token, it->second.request);
        reads_.erase(it);
      }
    serve_reads();
    maybe_snapshot();
    out_.wake_at = std::min(out_.wake_at, rd.wake_at);
  }
}

void StrongPath::apply(const Now& now, const pb::RaftEntry& entry) {
  if (entry.type() != pb::RaftEntry::NORMAL) return;  // a leader's no-op or the membership
  pb::StrongCommand command;
  // Only a leader's own proposals reach the log, and it built them; a
  // command that does not parse is skipped the same way on every node.
  if (!command.ParseFromString(entry.data())) return;
  ApplyResult result = sm_->apply(entry.index(), command);
  const RequestId id{command.client_id(), command.seq()};
  if ((result.kind == ApplyResult::Kind::kDecided || result.kind == ApplyResult::Kind::kDuplicate) &&
      result.response)
    answer(id, *result.response);
  for (const auto& c : result.completions) answer(c.request, c.response);
  if (leases_.is_leader()) leases_.on_applied(now.mono, result.lease);
}

void StrongPath::answer(const RequestId& id, const pb::StrongResponse& response) {
  auto it = waiters_.find(id);
  if (it == waiters_.end()) return;  // answered elsewhere (a follower, or the client left)
  for (ClientToken t : it->second.tokens) {
    pb::Response r;
    r.set_seq(it->second.seq_response);
    r.set_error(response.error());
    r.set_error_message(response.error_message());
    *r.mutable_strong() = response;
    // Committed means durable on a majority: nothing local to wait for.
    out_.replies.push_back(Reply{t, std::move(r), ReleaseAfter::kAtOnce});
  }
  waiters_.erase(it);
}

void StrongPath::serve_reads() {
  for (auto it = reads_.begin(); it != reads_.end();) {
    if (it->second.index != 0 && it->second.index <= raft_->applied()) {
      reply(it->second.token, it->second.request, sm_->read(it->second.request.strong()));
      it = reads_.erase(it);
    } else {
      ++it;
    }
  }
}

void StrongPath::maybe_snapshot() {
  const uint64_t applied = raft_->applied();
  if (broken_) return;
  // Every strong_snapshot_entries, at a phase of its own per node: a snapshot
  // holds the event loop while it serializes the state machine, and nodes
  // that took theirs at the same index would stall together (two followers
  // at once stall every commit). Node k of n is k/n of an interval later.
  const uint64_t every = config_.strong_snapshot_entries;
  const uint64_t phase = snapshot_phase_;
  const auto period = [&](uint64_t index) { return index < phase ? 0 : (index - phase) / every + 1; };
  if (period(applied) <= period(raft_->snapshot_index())) return;
  std::string data = sm_->snapshot();
  if (!raft_->compact(applied, data).is_ok()) return;
  const auto [begin, end] = key_space_range(KeySpace::kRaftLog);
  out_.persist.push_back(Persist{kSnapshotDataKey, std::move(data)});
  out_.persist.push_back(Persist{kSnapshotMetaKey, serialize(raft_->snapshot_meta())});
  // The log keeps a catch-up tail below the snapshot (Raft's trim point);
  // recovery skips it, the next compaction erases it.
  out_.persist.push_back(Persist{begin, {}, true, log_key(raft_->log().trim_point())});
}

// --- replies --------------------------------------------------------------------------------

void StrongPath::reply(ClientToken token, const pb::Request& request, pb::StrongResponse response) {
  pb::Response r;
  r.set_seq(request.seq());
  r.set_error(response.error());
  r.set_error_message(response.error_message());
  *r.mutable_strong() = std::move(response);
  out_.replies.push_back(Reply{token, std::move(r), ReleaseAfter::kAtOnce});
}

void StrongPath::reply_error(ClientToken token, const pb::Request& request, pb::ErrorCode code, std::string message) {
  reply(token, request, error_response(code, message));
}

void StrongPath::reply_not_leader(ClientToken token, const pb::Request& request) {
  const NodeId leader = raft_ ? raft_->leader() : NodeId();
  pb::StrongResponse sr = error_response(
      pb::NOT_LEADER, leader.empty() || leader == config_.self
                          ? "node " + printable(config_.self) + " is not the leader and knows of none (an election may be under way); retry shortly"
                          : "node " + printable(config_.self) + " is not the leader; the leader is " + printable(leader));
  pb::Response r;
  r.set_seq(request.seq());
  r.set_error(sr.error());
  r.set_error_message(sr.error_message());
  if (!leader.empty() && leader != config_.self) {
    r.set_leader_hint(leader);
    for (const auto& p : config_.peers)
      if (p.id == leader) r.set_leader_address(p.address);
  }
  *r.mutable_strong() = std::move(sr);
  out_.replies.push_back(Reply{token, std::move(r), ReleaseAfter::kAtOnce});
}

// --- output ------------------------------------------------------------------------------------

Output StrongPath::take_output(uint64_t output_id) {
  if (raft_) drain_ready(now_);
  if (appended_) {
    unstable_[output_id] = *appended_;
    appended_.reset();
  }
  if (raft_ && leases_.is_leader()) out_.wake_at = std::min(out_.wake_at, leases_.next_deadline());
  if (!raft_) out_.wake_at = 0;  // start Raft at the first chance
  // Raft's own state must be synced promptly: the leader counts its log
  // only once the runtime reports it synced.
  out_.sync = true;
  Output result = std::move(out_);
  out_ = Output{};
  return result;
}

std::string StrongPath::role() const { return raft_ ? raft::role_name(raft_->role()) : "follower"; }
uint64_t StrongPath::term() const { return raft_ ? raft_->term() : 0; }
uint64_t StrongPath::commit_index() const { return raft_ ? raft_->commit_index() : 0; }
NodeId StrongPath::leader() const { return raft_ ? raft_->leader() : NodeId(); }

}  // namespace stig::replication
