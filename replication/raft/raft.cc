#include "replication/raft/raft.h"

#include <algorithm>

#include "replication/invariant.h"

namespace stig::replication::raft {

namespace {

using Msg = pb::RaftMessage;

// No honest log gets near this; anything above is forged or corrupt, and
// refusing it keeps every index + 1 and index + count free of overflow.
constexpr uint64_t kMaxPlausibleIndex = uint64_t{1} << 62;
// Likewise for terms: a forged huge term would otherwise wrap our term to 0
// at the next campaign.
constexpr uint64_t kMaxPlausibleTerm = uint64_t{1} << 62;
// Snapshot chunks a leader keeps unacknowledged per follower.
constexpr uint64_t kSnapshotWindowChunks = 2;

std::string encode_round(uint64_t round) {
  std::string out(8, '\0');
  for (int i = 7; i >= 0; --i, round >>= 8) out[static_cast<size_t>(i)] = static_cast<char>(round & 0xff);
  return out;
}

std::optional<uint64_t> decode_round(const std::string& s) {
  if (s.size() != 8) return std::nullopt;
  uint64_t round = 0;
  for (char c : s) round = (round << 8) | static_cast<uint8_t>(c);
  return round;
}

bool same_members(const pb::RaftConfigState& config, const std::vector<NodeId>& voters) {
  std::set<std::string> a(config.voters().begin(), config.voters().end());
  std::set<std::string> b(voters.begin(), voters.end());
  return a == b && static_cast<size_t>(config.voters_size()) == voters.size();
}

// A CONFIG entry must name exactly the configured voters: membership
// changes are not supported yet, so any other membership is refused.
bool config_entry_matches(const pb::RaftEntry& e, const std::vector<NodeId>& voters) {
  if (e.type() != pb::RaftEntry::CONFIG) return true;
  pb::RaftConfigState config;
  return config.ParseFromString(e.data()) && same_members(config, voters);
}

}  // namespace

const char* role_name(Role role) {
  switch (role) {
    case Role::kFollower: return "follower";
    case Role::kPreCandidate: return "pre-candidate";
    case Role::kCandidate: return "candidate";
    case Role::kLeader: return "leader";
  }
  return "?";
}

const char* raft_error_name(RaftError error) {
  switch (error) {
    case RaftError::kNotLeader: return "not leader";
    case RaftError::kTransferring: return "leadership transfer in progress";
    case RaftError::kTooLarge: return "entry too large";
    case RaftError::kTooMuchUncommitted: return "too much uncommitted data";
    case RaftError::kUnknownPeer: return "unknown peer";
  }
  return "?";
}

uint64_t RaftStats::ignored_total() const {
  uint64_t n = 0;
  for (const auto& [reason, count] : ignored) n += count;
  return n;
}

// --- construction -------------------------------------------------------

Expected<std::unique_ptr<Raft>, Status> Raft::create(RaftOptions o, uint64_t seed, RecoveredState rec, MonoTime now) {
  if (o.self.empty()) return Status::invalid_argument("raft: empty self id");
  std::set<NodeId> members;
  for (const auto& v : o.voters) {
    if (v.empty()) return Status::invalid_argument("raft: empty voter id");
    if (!members.insert(v).second) return Status::invalid_argument("raft: duplicate voter " + v);
  }
  if (!members.count(o.self)) return Status::invalid_argument("raft: self is not a voter");
  if (o.election_timeout_min_ms <= 0 || o.election_timeout_max_ms <= o.election_timeout_min_ms)
    return Status::invalid_argument("raft: election timeout range must be 0 < min < max");
  if (o.heartbeat_interval_ms <= 0 || o.heartbeat_interval_ms >= o.election_timeout_min_ms)
    return Status::invalid_argument("raft: heartbeat interval must be positive and below the election timeout");
  if (o.max_append_bytes == 0 || o.max_inflight_appends == 0 || o.max_entry_bytes == 0 || o.max_apply_bytes == 0)
    return Status::invalid_argument("raft: size limits must be positive");
  if (o.snapshot_timeout_ms <= 0) return Status::invalid_argument("raft: snapshot timeout must be positive");
  if (o.trim_entries_per_ready == 0) return Status::invalid_argument("raft: trim_entries_per_ready must be positive");
  if (o.max_snapshot_chunk_bytes == 0 || o.max_snapshot_bytes == 0)
    return Status::invalid_argument("raft: snapshot size limits must be positive");

  uint64_t snap_index = 0, snap_term = 0;
  if (rec.snapshot) {
    const auto& s = *rec.snapshot;
    if (s.index() == 0 || s.term() == 0) return Status::corruption("raft: recovered snapshot at index or term 0");
    if (s.index() > kMaxPlausibleIndex) return Status::corruption("raft: recovered snapshot index implausible");
    if (!same_members(s.config(), o.voters))
      return Status::invalid_argument("raft: the snapshot's members differ from the configured voters");
    snap_index = s.index();
    snap_term = s.term();
  }
  // A crash between storing a snapshot and erasing the log it covers leaves
  // covered entries behind: they are redundant, drop them (the one at the
  // snapshot's index must agree with it).
  size_t covered = 0;
  while (covered < rec.entries.size() && rec.entries[covered].index() <= snap_index) {
    const auto& e = rec.entries[covered];
    if (covered > 0 && e.index() != rec.entries[covered - 1].index() + 1)
      return Status::corruption("raft: recovered log not contiguous at entry " + std::to_string(e.index()));
    if (e.index() == snap_index && e.term() != snap_term)
      return Status::corruption("raft: recovered entry at the snapshot's index has another term");
    ++covered;
  }
  rec.entries.erase(rec.entries.begin(), rec.entries.begin() + static_cast<std::ptrdiff_t>(covered));
  uint64_t prev_term = snap_term;
  for (size_t i = 0; i < rec.entries.size(); ++i) {
    const auto& e = rec.entries[i];
    if (e.index() != snap_index + 1 + i) return Status::corruption("raft: recovered log not contiguous at entry " + std::to_string(e.index()));
    if (e.term() == 0 || e.term() < prev_term) return Status::corruption("raft: recovered log terms go backwards at " + std::to_string(e.index()));
    if (!pb::RaftEntry_Type_IsValid(e.type())) return Status::corruption("raft: recovered entry of unknown type");
    if (!config_entry_matches(e, o.voters))
      return Status::invalid_argument("raft: a recovered config entry's members differ from the configured voters");
    prev_term = e.term();
  }
  if (rec.entries.size() > kMaxPlausibleIndex - snap_index) return Status::corruption("raft: recovered log too long");
  pb::HardState hs = rec.hard_state;
  if (hs.term() > kMaxPlausibleTerm) return Status::corruption("raft: recovered term implausible");
  if (hs.term() < prev_term) {
    // A crash after a Ready's entries but before its hard state: we were in
    // the entries' term. No vote in it was durable, so none was released.
    hs.set_term(prev_term);
    hs.clear_vote();
  }
  if (!hs.vote().empty() && !members.count(hs.vote())) return Status::corruption("raft: recovered vote for a non-member");
  const uint64_t last = snap_index + rec.entries.size();
  if (hs.commit() > last) return Status::corruption("raft: recovered commit beyond the recovered log (entries lost)");
  const uint64_t commit = std::max(hs.commit(), snap_index);
  const uint64_t applied = rec.applied == 0 ? snap_index : rec.applied;
  if (applied < snap_index || applied > commit)
    return Status::corruption("raft: recovered applied index outside [snapshot, commit]");

  RaftLog log(snap_index, snap_term, std::move(rec.entries), commit, applied);
  std::unique_ptr<Raft> r(new Raft(std::move(o), seed, std::move(log), hs, now));
  r->emitted_hard_state_ = rec.hard_state;  // what the disk holds: a raised term is written again
  if (rec.snapshot) {
    r->snapshot_meta_ = *rec.snapshot;
    if (!rec.snapshot_data.empty()) r->snapshot_data_ = std::make_shared<const std::string>(std::move(rec.snapshot_data));
  }
  return r;
}

Raft::Raft(RaftOptions options, uint64_t seed, RaftLog log, pb::HardState hs, MonoTime now)
    : opts_(std::move(options)), rng_(seed), log_(std::move(log)) {
  term_ = hs.term();
  vote_ = hs.vote();
  emitted_hard_state_ = hs;
  last_now_ = now;
  reset_election_deadline(now);
}

// --- helpers ------------------------------------------------------------

bool Raft::is_voter(const NodeId& id) const {
  return std::find(opts_.voters.begin(), opts_.voters.end(), id) != opts_.voters.end();
}

void Raft::ignore(const char* reason) { ++stats_.ignored[reason]; }

const Progress* Raft::progress(const NodeId& peer) const {
  auto it = progress_.find(peer);
  return it == progress_.end() ? nullptr : &it->second;
}

bool Raft::hard_state_emitted() const {
  // Field by field: building a HardState on every step cost a string copy.
  return term_ == emitted_hard_state_.term() && vote_ == emitted_hard_state_.vote() &&
         log_.committed() == emitted_hard_state_.commit();
}

pb::HardState Raft::hard_state() const {
  pb::HardState hs;
  hs.set_term(term_);
  hs.set_vote(vote_);
  hs.set_commit(log_.committed());
  return hs;
}

MonoTime Raft::wake_at() const {
  if (role_ == Role::kLeader) return std::min({heartbeat_deadline_, check_quorum_deadline_, transfer_deadline_});
  return election_deadline_;
}

void Raft::reset_election_deadline(MonoTime now) {
  const auto span = static_cast<uint64_t>(opts_.election_timeout_max_ms - opts_.election_timeout_min_ms);
  election_deadline_ = now + opts_.election_timeout_min_ms + static_cast<MonoTime>(rng_.below(span));
}

void Raft::send(const NodeId& to, pb::RaftMessage m) {
  bool after_persist = false;
  switch (m.type()) {
    // Thesis §3.8: a vote (the candidate's own included) and an
    // acknowledged append must be on disk before anyone hears of them.
    case Msg::VOTE:
    case Msg::VOTE_RESP: after_persist = !opts_.faults.vote_not_durable; break;
    case Msg::APPEND_RESP: after_persist = true; break;
    default: break;
  }
  msgs_.push_back(OutMessage{to, std::move(m), after_persist});
}

// Checks a message against what any honest voter could send; the reason it
// cannot be, or nullptr.
const char* Raft::malformed(const NodeId& from, const pb::RaftMessage& m) const {
  if (from == opts_.self || !is_voter(from)) return "unknown sender";
  if (!pb::RaftMessage_Type_IsValid(m.type()) || m.type() == Msg::UNKNOWN) return "unknown message type";
  if (m.term() == 0) return "zero term";
  if (m.term() > kMaxPlausibleTerm) return "implausible term";
  if (m.index() > kMaxPlausibleIndex || m.commit() > kMaxPlausibleIndex || m.reject_hint() > kMaxPlausibleIndex ||
      m.snapshot().index() > kMaxPlausibleIndex)
    return "implausible index";
  if (m.log_term() > m.term()) return "log term beyond message term";
  if (m.type() != Msg::APPEND && m.entries_size() > 0) return "entries on a message that carries none";
  switch (m.type()) {
    case Msg::PRE_VOTE:
    case Msg::VOTE:
      if ((m.index() == 0) != (m.log_term() == 0)) return "impossible last log position";
      break;
    case Msg::APPEND: {
      if ((m.index() == 0) != (m.log_term() == 0)) return "impossible previous log position";
      uint64_t prev_term = m.log_term();
      for (int i = 0; i < m.entries_size(); ++i) {
        const auto& e = m.entries(i);
        if (e.index() != m.index() + 1 + static_cast<uint64_t>(i)) return "entries not contiguous";
        if (e.term() == 0) return "zero entry term";
        if (e.term() < prev_term) return "entry terms go backwards";
        if (e.term() > m.term()) return "entry term beyond message term";
        if (!pb::RaftEntry_Type_IsValid(e.type())) return "unknown entry type";
        if (!config_entry_matches(e, opts_.voters)) return "config entry members differ";
        prev_term = e.term();
      }
      break;
    }
    case Msg::APPEND_RESP:
      if (m.reject() && m.reject_hint() > m.index()) return "reject hint beyond rejected index";
      break;
    case Msg::SNAPSHOT:
      if (m.snapshot().index() == 0 || m.snapshot().term() == 0) return "empty snapshot";
      if (m.snapshot().term() > m.term()) return "snapshot term beyond message term";
      if (!same_members(m.snapshot().config(), opts_.voters)) return "snapshot members differ";
      break;
    case Msg::SNAPSHOT_RESP:
      if (m.snapshot().index() == 0 || m.snapshot().term() == 0) return "empty snapshot";
      if (m.snapshot().term() > m.term()) return "snapshot term beyond message term";
      break;
    default: break;
  }
  return nullptr;
}

// --- role changes ---------------------------------------------------------

void Raft::become_follower(MonoTime now, uint64_t term, const NodeId& leader) {
  STIG_INVARIANT(term >= term_, "term went backwards");
  if (role_ == Role::kLeader) {
    drop_reads();
    progress_.clear();
    uncommitted_bytes_ = 0;
  }
  if (term > term_ || leader != leader_) incoming_.reset();  // a partial snapshot is one leader's
  if (term > term_) {
    term_ = term;
    vote_.clear();
  }
  abort_transfer();
  role_ = Role::kFollower;
  leader_ = leader;
  votes_.clear();
  heartbeat_deadline_ = kNever;
  check_quorum_deadline_ = kNever;
  reset_election_deadline(now);
}

void Raft::become_pre_candidate(MonoTime now) {
  // Pre-vote changes neither term nor vote (thesis §9.6).
  role_ = Role::kPreCandidate;
  leader_.clear();
  incoming_.reset();
  votes_.clear();
  reset_election_deadline(now);
}

void Raft::become_candidate(MonoTime now) {
  STIG_INVARIANT(role_ != Role::kLeader, "a leader cannot become candidate");
  ++term_;
  vote_ = opts_.self;
  role_ = Role::kCandidate;
  leader_.clear();
  incoming_.reset();
  votes_.clear();
  reset_election_deadline(now);
}

void Raft::become_leader(MonoTime now) {
  // Election safety from this node's view: we won this term's election with
  // our own vote and have heard of no other leader in it.
  STIG_INVARIANT(role_ == Role::kCandidate && vote_ == opts_.self && leader_.empty(),
                 "became leader without winning this term");
  role_ = Role::kLeader;
  leader_ = opts_.self;
  led_term_ = term_;
  ++stats_.became_leader;
  progress_.clear();
  for (const auto& v : opts_.voters)
    if (v != opts_.self) progress_.emplace(v, Progress(log_.last_index() + 1, opts_.max_inflight_appends));
  election_deadline_ = kNever;
  heartbeat_deadline_ = progress_.empty() ? kNever : now + opts_.heartbeat_interval_ms;
  check_quorum_deadline_ = opts_.check_quorum && !progress_.empty() ? now + opts_.election_timeout_min_ms : kNever;
  last_leader_contact_ = now;
  uncommitted_bytes_ = 0;
  // Thesis §3.6.2 / §6.4: a leader commits entries of earlier terms (and may
  // serve reads) only once an entry of its own term is committed.
  // The first leader of an empty log records the membership instead, so the
  // log (and every snapshot) carries its config for joint consensus later.
  pb::RaftEntry first;
  first.set_term(term_);
  first.set_index(log_.last_index() + 1);
  if (log_.last_index() == 0) {
    pb::RaftConfigState config;
    for (const auto& v : opts_.voters) config.add_voters(v);
    first.set_type(pb::RaftEntry::CONFIG);
    first.set_data(config.SerializeAsString());
  } else {
    first.set_type(pb::RaftEntry::NOOP);
  }
  log_.append({first});
  broadcast_append(now);
}

void Raft::start_election(MonoTime now, bool pre_vote, bool transfer) {
  if (role_ == Role::kLeader) return;
  if (pre_vote) {
    become_pre_candidate(now);
    ++stats_.pre_elections_started;
  } else {
    become_candidate(now);
    ++stats_.elections_started;
  }
  votes_[opts_.self] = true;
  if (votes_.size() >= quorum()) {  // a single voter
    if (pre_vote) return start_election(now, false, transfer);
    return become_leader(now);
  }
  for (const auto& v : opts_.voters) {
    if (v == opts_.self) continue;
    Msg m;
    m.set_type(pre_vote ? Msg::PRE_VOTE : Msg::VOTE);
    m.set_term(pre_vote ? term_ + 1 : term_);
    m.set_index(log_.last_index());
    m.set_log_term(log_.last_term());
    m.set_leadership_transfer(transfer);
    send(v, std::move(m));
  }
}

void Raft::campaign(MonoTime now) {
  last_now_ = std::max(last_now_, now);
  start_election(now, opts_.pre_vote, false);
}

void Raft::poll(MonoTime now, const NodeId& from, bool granted) {
  votes_.emplace(from, granted);  // the first answer of each voter counts
  size_t yes = 0, no = 0;
  for (const auto& [id, g] : votes_) (g ? yes : no)++;
  if (yes >= quorum()) {
    if (role_ == Role::kPreCandidate) return start_election(now, false, false);
    return become_leader(now);
  }
  if (no > opts_.voters.size() - quorum()) become_follower(now, term_, "");
}

// --- inputs -------------------------------------------------------------

void Raft::step(MonoTime now, const NodeId& from, const pb::RaftMessage& m) {
  last_now_ = std::max(last_now_, now);
  if (const char* why = malformed(from, m)) return ignore(why);
  const bool is_vote = m.type() == Msg::PRE_VOTE || m.type() == Msg::VOTE;
  const bool from_leader = m.type() == Msg::APPEND || m.type() == Msg::HEARTBEAT || m.type() == Msg::SNAPSHOT;

  if (m.term() > term_) {
    if (is_vote && opts_.check_quorum && !m.leadership_transfer()) {
      // Leader stickiness (thesis §4.2.3): while we hear from a live leader,
      // a (pre-)vote request is from a disruptive server; do not even let
      // it raise our term.
      const bool in_lease = role_ == Role::kLeader ||
                            (!leader_.empty() && last_leader_contact_ &&
                             now < *last_leader_contact_ + opts_.election_timeout_min_ms);
      if (in_lease) return ignore("vote request while a leader is live");
    }
    if (m.type() == Msg::PRE_VOTE) {
      // Never raises our term.
    } else if (m.type() == Msg::PRE_VOTE_RESP && !m.reject()) {
      // A granted pre-vote carries the term we would campaign in.
    } else {
      become_follower(now, m.term(), from_leader ? from : NodeId());
    }
  } else if (m.term() < term_) {
    if ((opts_.check_quorum || opts_.pre_vote) && (m.type() == Msg::APPEND || m.type() == Msg::HEARTBEAT)) {
      // A stale leader, possibly cut off by pre-vote from ever learning our
      // term: tell it, so it steps down.
      Msg r;
      r.set_type(Msg::APPEND_RESP);
      r.set_term(term_);
      send(from, std::move(r));
    } else if (m.type() == Msg::PRE_VOTE) {
      Msg r;
      r.set_type(Msg::PRE_VOTE_RESP);
      r.set_term(term_);
      r.set_reject(true);
      send(from, std::move(r));
    } else {
      ++stats_.ignored["stale term"];
    }
    return;
  }

  if (is_vote) return handle_vote_request(now, from, m);
  // We led this term (and may have stepped down since): nobody else did.
  if (from_leader && led_term_ == term_) return ignore("second leader in term");
  switch (role_) {
    case Role::kLeader: return step_leader(now, from, m);
    case Role::kCandidate:
    case Role::kPreCandidate: return step_candidate(now, from, m);
    case Role::kFollower: return step_follower(now, from, m);
  }
}

void Raft::handle_vote_request(MonoTime now, const NodeId& from, const pb::RaftMessage& m) {
  const bool pre = m.type() == Msg::PRE_VOTE;
  const bool can_vote = vote_ == from || (vote_.empty() && leader_.empty()) || (pre && m.term() > term_);
  Msg r;
  r.set_type(pre ? Msg::PRE_VOTE_RESP : Msg::VOTE_RESP);
  if (can_vote && log_.is_up_to_date(m.index(), m.log_term())) {
    r.set_term(m.term());
    if (!pre) {
      STIG_INVARIANT(m.term() == term_, "voting in another term");
      STIG_INVARIANT(vote_.empty() || vote_ == from, "vote changed within a term");
      vote_ = from;
      reset_election_deadline(now);
    }
  } else {
    r.set_term(term_);
    r.set_reject(true);
  }
  send(from, std::move(r));
}

void Raft::step_leader(MonoTime now, const NodeId& from, const pb::RaftMessage& m) {
  switch (m.type()) {
    case Msg::APPEND_RESP: return handle_append_resp(now, from, m);
    case Msg::HEARTBEAT_RESP: return handle_heartbeat_resp(now, from, m);
    case Msg::SNAPSHOT_RESP: return handle_snapshot_resp(now, from, m);
    case Msg::APPEND:
    case Msg::HEARTBEAT:
    case Msg::SNAPSHOT: return ignore("second leader in term");
    default: return ignore("not for this role");
  }
}

void Raft::step_candidate(MonoTime now, const NodeId& from, const pb::RaftMessage& m) {
  switch (m.type()) {
    case Msg::APPEND:
    case Msg::HEARTBEAT:
    case Msg::SNAPSHOT:
      // Someone won this term: follow it.
      become_follower(now, term_, from);
      return step_follower(now, from, m);
    case Msg::PRE_VOTE_RESP:
      if (role_ != Role::kPreCandidate) return ignore("not for this role");
      if (!m.reject() && m.term() != term_ + 1) return ignore("pre-vote answer for another term");
      return poll(now, from, !m.reject());
    case Msg::VOTE_RESP:
      if (role_ != Role::kCandidate) return ignore("not for this role");
      return poll(now, from, !m.reject());
    default: return ignore("not for this role");
  }
}

void Raft::step_follower(MonoTime now, const NodeId& from, const pb::RaftMessage& m) {
  switch (m.type()) {
    case Msg::APPEND:
    case Msg::HEARTBEAT:
    case Msg::SNAPSHOT:
      if (leader_.empty()) leader_ = from;
      if (leader_ != from) return ignore("second leader in term");
      last_leader_contact_ = now;
      reset_election_deadline(now);
      if (m.type() == Msg::APPEND) return handle_append(from, m);
      if (m.type() == Msg::HEARTBEAT) return handle_heartbeat(from, m);
      return handle_snapshot(from, m);
    case Msg::TIMEOUT_NOW:
      if (from != leader_) return ignore("timeout-now not from the leader");
      return start_election(now, false, true);
    default: return ignore("not for this role");
  }
}

void Raft::handle_append(const NodeId& from, const pb::RaftMessage& m) {
  Msg r;
  r.set_type(Msg::APPEND_RESP);
  r.set_term(term_);
  const uint64_t commit = log_.committed();
  if (m.index() < commit) {
    // Everything up to our commit matches any leader's log already.
    r.set_index(commit);
    return send(from, std::move(r));
  }
  if (log_.matches(m.index(), m.log_term())) {
    std::vector<pb::RaftEntry> entries(m.entries().begin(), m.entries().end());
    const uint64_t conflict = log_.find_conflict(entries);
    if (conflict != 0) {
      // conflict > m.index() >= commit: committed entries are never replaced.
      entries.erase(entries.begin(), entries.begin() + static_cast<std::ptrdiff_t>(conflict - m.index() - 1));
      log_.append(entries);
    }
    const uint64_t last_new = m.index() + static_cast<uint64_t>(m.entries_size());
    // Thesis §3.5: commit only what this message proved we share with the leader.
    log_.commit_to(std::min(m.commit(), last_new));
    r.set_index(last_new);
    return send(from, std::move(r));
  }
  const auto [hint, hint_term] = log_.find_conflict_by_term(std::min(m.index(), log_.last_index()), m.log_term());
  r.set_index(m.index());
  r.set_reject(true);
  r.set_reject_hint(hint);
  r.set_log_term(hint_term);
  send(from, std::move(r));
}

void Raft::handle_heartbeat(const NodeId& from, const pb::RaftMessage& m) {
  // An honest leader sends min(our match, its commit), which we hold.
  if (m.commit() > log_.last_index())
    ignore("heartbeat commit beyond our log");
  else
    log_.commit_to(m.commit());
  Msg r;
  r.set_type(Msg::HEARTBEAT_RESP);
  r.set_term(term_);
  r.set_context(m.context());
  send(from, std::move(r));
}

void Raft::handle_snapshot(const NodeId& from, const pb::RaftMessage& m) {
  const auto& meta = m.snapshot();
  if (incoming_ && (incoming_->leader != from || incoming_->term != term_ ||
                    incoming_->meta.index() <= log_.committed()))
    incoming_.reset();
  Msg r;
  r.set_type(Msg::APPEND_RESP);
  r.set_term(term_);
  if (meta.index() <= log_.committed()) {
    ignore("snapshot older than commit");
    r.set_index(log_.committed());
    return send(from, std::move(r));
  }
  if (log_.matches(meta.index(), meta.term())) {
    // We hold the entries it covers: no need for the rest of it, nor to
    // throw the log away.
    incoming_.reset();
    log_.commit_to(meta.index());
    r.set_index(meta.index());
    return send(from, std::move(r));
  }
  // One chunk: checked against itself, then against the chunks before it.
  const uint64_t size = m.snapshot_size(), offset = m.snapshot_offset(), len = m.snapshot_data().size();
  if (size > opts_.max_snapshot_bytes) return ignore("snapshot too large");
  if (offset > size || len > size - offset) return ignore("snapshot chunk beyond its size");
  if (m.snapshot_done() != (offset + len == size)) return ignore("snapshot chunk done flag disagrees");
  if (incoming_ && (incoming_->meta.index() != meta.index() || incoming_->meta.term() != meta.term())) {
    if (std::pair(meta.index(), meta.term()) < std::pair(incoming_->meta.index(), incoming_->meta.term()))
      return ignore("chunk of an older snapshot");
    incoming_.reset();  // a newer one: start over
  }
  if (incoming_ && incoming_->size != size) return ignore("snapshot size disagrees");
  if (!incoming_) incoming_ = IncomingSnapshot{from, term_, meta, size, {}};
  auto& in = *incoming_;
  if (offset != in.data.size()) {
    // Lost, reordered or resent chunks: ask for what comes next.
    ignore("snapshot chunk out of order");
    Msg a;
    a.set_type(Msg::SNAPSHOT_RESP);
    a.set_term(term_);
    a.mutable_snapshot()->set_index(meta.index());
    a.mutable_snapshot()->set_term(meta.term());
    a.set_snapshot_offset(in.data.size());
    a.set_reject(true);
    return send(from, std::move(a));
  }
  in.data.append(m.snapshot_data());
  if (!m.snapshot_done()) {
    Msg a;
    a.set_type(Msg::SNAPSHOT_RESP);
    a.set_term(term_);
    a.mutable_snapshot()->set_index(meta.index());
    a.mutable_snapshot()->set_term(meta.term());
    a.set_snapshot_offset(in.data.size());
    return send(from, std::move(a));
  }
  log_.restore(in.meta.index(), in.meta.term());
  snapshot_meta_ = in.meta;
  snapshot_data_ = std::make_shared<const std::string>(std::move(in.data));
  pending_install_ = SnapshotToInstall{snapshot_meta_, snapshot_data_};
  incoming_.reset();
  ++stats_.snapshots_installed;
  r.set_index(snapshot_meta_.index());
  send(from, std::move(r));
}

void Raft::handle_append_resp(MonoTime now, const NodeId& from, const pb::RaftMessage& m) {
  auto& pr = progress_.at(from);
  if (m.index() > log_.last_index()) return ignore("append answer beyond our log");
  pr.recent_active = true;
  if (m.reject()) {
    uint64_t hint = std::min(m.reject_hint(), log_.last_index());
    if (m.log_term() > 0) hint = log_.find_conflict_by_term(hint, m.log_term()).first;
    // No APPEND goes out while a snapshot is on its way: a reject then
    // answers an older one.
    if (pr.state() == Progress::State::kSnapshot) return;
    if (!pr.maybe_decrease(m.index(), hint + 1)) return;  // stale
    if (pr.state() == Progress::State::kReplicate) {
      pr.become_probe();
    }
    send_append(now, from, true);
    return;
  }
  const bool was_paused = pr.paused();
  if (!pr.maybe_update(m.index(), now)) return;
  if (pr.state() == Progress::State::kProbe) {
    pr.become_replicate();
  } else if (pr.state() == Progress::State::kSnapshot && pr.match() >= pr.pending_snapshot()) {
    pr.become_replicate();
  }
  if (maybe_commit(now)) {
    broadcast_append(now);
  } else if (was_paused || pr.next() <= log_.last_index()) {
    while (send_append(now, from, false)) {
    }
  }
  if (from == transferee_ && pr.match() == log_.last_index()) {
    Msg t;
    t.set_type(Msg::TIMEOUT_NOW);
    t.set_term(term_);
    send(from, std::move(t));
  }
}

void Raft::handle_snapshot_resp(MonoTime now, const NodeId& from, const pb::RaftMessage& m) {
  auto& pr = progress_.at(from);
  pr.recent_active = true;
  const SnapshotTransfer* t = pr.snapshot();
  if (!t || m.snapshot().index() != t->meta.index() || m.snapshot().term() != t->meta.term())
    return ignore("answer for another snapshot");
  if (m.snapshot_offset() > t->sent) return ignore("snapshot answer beyond what was sent");
  // A reject: the follower could not take a chunk (lost, reordered, or it
  // restarted) and wants the snapshot from its offset.
  const bool news = m.reject() ? pr.snapshot_rejected(m.snapshot_offset(), now)
                               : pr.snapshot_acked(m.snapshot_offset(), now);
  if (news) send_snapshot_chunks(from);
}

void Raft::handle_heartbeat_resp(MonoTime now, const NodeId& from, const pb::RaftMessage& m) {
  auto& pr = progress_.at(from);
  pr.recent_active = true;
  pr.heard_heartbeat_resp();
  if (pr.match() < log_.last_index()) {
    // The follower is reachable but its pipeline (or snapshot) made no
    // progress for a while: an APPEND or snapshot chunk was lost. Probe
    // again, or resend the snapshot from what the follower acknowledged.
    if (const SnapshotTransfer* t = pr.snapshot()) {
      if (now - pr.last_progress() >= opts_.snapshot_timeout_ms) {
        pr.rewind_snapshot(t->acked, now);
        ++stats_.snapshot_resends;
        send_snapshot_chunks(from);
      }
    } else if (pr.state() == Progress::State::kReplicate &&
               now - pr.last_progress() >= 2 * opts_.heartbeat_interval_ms) {
      pr.become_probe();
    }
    // A probe goes out even when empty: its answer is what moves next.
    if (send_append(now, from, pr.state() == Progress::State::kProbe)) {
      while (send_append(now, from, false)) {
      }
    }
  }
  if (m.context().empty() || reads_.empty()) return;
  const auto round = decode_round(m.context());
  if (!round || *round > read_round_) return ignore("unknown read round");
  // An answer to round r proves we were leader after every read of round <= r arrived.
  for (auto& read : reads_)
    if (read.round != 0 && read.round <= *round) read.acks.insert(from);
  while (!reads_.empty() && reads_.front().acks.size() >= quorum()) {
    read_states_.push_back(ReadState{reads_.front().request_id, reads_.front().index});
    reads_.pop_front();
  }
}

// --- leader: sending and committing -------------------------------------

bool Raft::send_append(MonoTime now, const NodeId& to, bool allow_empty) {
  auto& pr = progress_.at(to);
  if (pr.paused()) return false;
  const auto prev_term = log_.term(pr.next() - 1);
  if (!prev_term) {
    // The follower needs entries we compacted away.
    if (!snapshot_data_) {
      ignore("follower needs a snapshot we do not have");
      return false;
    }
    pr.start_snapshot(snapshot_meta_, snapshot_data_, now);
    ++stats_.snapshots_sent;
    send_snapshot_chunks(to);
    return false;
  }
  std::vector<pb::RaftEntry> entries;
  if (pr.next() <= log_.last_index()) entries = log_.slice(pr.next(), log_.last_index() + 1, opts_.max_append_bytes);
  if (entries.empty() && !allow_empty) return false;
  Msg m;
  m.set_type(Msg::APPEND);
  m.set_term(term_);
  m.set_index(pr.next() - 1);
  m.set_log_term(*prev_term);
  m.set_commit(log_.committed());
  for (auto& e : entries) *m.add_entries() = std::move(e);
  const bool sent_entries = m.entries_size() > 0;
  if (sent_entries)
    pr.sent_append(m.entries(m.entries_size() - 1).index(), now);
  else if (pr.state() == Progress::State::kProbe)
    pr.sent_probe();
  send(to, std::move(m));
  return sent_entries;
}

void Raft::send_snapshot_chunks(const NodeId& to) {
  auto& pr = progress_.at(to);
  const uint64_t chunk = opts_.max_snapshot_chunk_bytes;
  const uint64_t window = chunk > UINT64_MAX / kSnapshotWindowChunks ? UINT64_MAX : chunk * kSnapshotWindowChunks;
  for (const SnapshotTransfer* t = pr.snapshot(); t && !t->done_sent && t->next - t->acked < window;) {
    const std::string& data = *t->data;
    const uint64_t offset = t->next, len = std::min<uint64_t>(chunk, data.size() - offset);
    Msg s;
    s.set_type(Msg::SNAPSHOT);
    s.set_term(term_);
    *s.mutable_snapshot() = t->meta;
    s.set_snapshot_offset(offset);
    s.set_snapshot_size(data.size());
    s.set_snapshot_done(offset + len == data.size());
    s.set_snapshot_data(data.substr(offset, len));
    pr.sent_snapshot_chunk(offset + len, s.snapshot_done());
    ++stats_.snapshot_chunks_sent;
    send(to, std::move(s));
  }
}

void Raft::broadcast_append(MonoTime now) {
  for (const auto& [id, pr] : progress_) {
    send_append(now, id, true);
    while (send_append(now, id, false)) {
    }
  }
}

void Raft::broadcast_heartbeat(const std::string& context) {
  for (const auto& [id, pr] : progress_) {
    Msg m;
    m.set_type(Msg::HEARTBEAT);
    m.set_term(term_);
    m.set_commit(std::min(pr.match(), log_.committed()));
    m.set_context(context);
    send(id, std::move(m));
  }
}

bool Raft::maybe_commit(MonoTime now) {
  // The leader's own copy counts only once durable (thesis §10.2.1).
  std::vector<uint64_t> matches{log_.stable()};
  for (const auto& [id, pr] : progress_) matches.push_back(pr.match());
  std::sort(matches.begin(), matches.end(), std::greater<>());
  const uint64_t n = matches[quorum() - 1];
  const uint64_t old = log_.committed();
  if (n <= old) return false;
  STIG_INVARIANT(n <= log_.last_index(), "quorum match beyond the leader's log");
  size_t durable = log_.stable() >= n ? 1 : 0;
  for (const auto& [id, pr] : progress_) durable += pr.match() >= n;
  STIG_INVARIANT(durable >= quorum(), "commit without a quorum of durable copies");
  // Thesis §3.6.2: only an entry of the current term is committed by counting.
  if (*log_.term(n) != term_ && !opts_.faults.commit_from_old_term) return false;
  log_.commit_to(n);
  uint64_t freed = 0;
  for (uint64_t i = old + 1; i <= n; ++i) freed += log_.at(i).data().size();
  uncommitted_bytes_ -= std::min(uncommitted_bytes_, freed);
  release_reads_after_commit(now);
  return true;
}

// --- timers -------------------------------------------------------------

void Raft::tick(MonoTime now) {
  last_now_ = std::max(last_now_, now);
  if (role_ == Role::kLeader) return tick_leader(now);
  if (now >= election_deadline_) start_election(now, opts_.pre_vote, false);
}

void Raft::tick_leader(MonoTime now) {
  if (now >= check_quorum_deadline_) {
    size_t active = 1;
    for (auto& [id, pr] : progress_) {
      if (pr.recent_active) ++active;
      pr.recent_active = false;
    }
    if (active < quorum()) {
      ++stats_.check_quorum_step_downs;
      return become_follower(now, term_, "");
    }
    check_quorum_deadline_ = now + opts_.election_timeout_min_ms;
  }
  if (now >= transfer_deadline_) abort_transfer();
  if (now >= heartbeat_deadline_) {
    heartbeat_deadline_ = now + opts_.heartbeat_interval_ms;
    broadcast_heartbeat("");
  }
}

// --- client intents -----------------------------------------------------

Expected<Proposed, Refusal> Raft::propose(MonoTime now, std::string data) {
  last_now_ = std::max(last_now_, now);
  if (role_ != Role::kLeader) return Refusal{RaftError::kNotLeader, leader_};
  if (!transferee_.empty()) return Refusal{RaftError::kTransferring, transferee_};
  if (data.size() > opts_.max_entry_bytes) return Refusal{RaftError::kTooLarge, leader_};
  if (uncommitted_bytes_ > 0 && uncommitted_bytes_ + data.size() > opts_.max_uncommitted_bytes)
    return Refusal{RaftError::kTooMuchUncommitted, leader_};
  pb::RaftEntry e;
  e.set_term(term_);
  e.set_index(log_.last_index() + 1);
  e.set_type(pb::RaftEntry::NORMAL);
  uncommitted_bytes_ += data.size();
  e.set_data(std::move(data));
  const Proposed out{e.index(), e.term()};
  log_.append({std::move(e)});
  // Sent at take_ready, so every proposal since the last Ready shares one APPEND.
  appends_pending_ = true;
  return out;
}

Expected<Accepted, Refusal> Raft::read_index(MonoTime now, uint64_t request_id) {
  last_now_ = std::max(last_now_, now);
  if (role_ != Role::kLeader) return Refusal{RaftError::kNotLeader, leader_};
  if (opts_.faults.read_without_quorum || (progress_.empty() && *log_.term(log_.committed()) == term_)) {
    read_states_.push_back(ReadState{request_id, log_.committed()});
    return Accepted{};
  }
  if (*log_.term(log_.committed()) != term_) {
    reads_before_commit_.push_back(request_id);
    return Accepted{};
  }
  reads_.push_back(PendingRead{request_id, log_.committed(), 0, {opts_.self}});
  read_round_pending_ = true;
  return Accepted{};
}

void Raft::release_reads_after_commit(MonoTime now) {
  if (reads_before_commit_.empty() || *log_.term(log_.committed()) != term_) return;
  auto ids = std::move(reads_before_commit_);
  reads_before_commit_.clear();
  for (uint64_t id : ids) read_index(now, id);
}

void Raft::drop_reads() {
  for (const auto& r : reads_) dropped_reads_.push_back(r.request_id);
  for (uint64_t id : reads_before_commit_) dropped_reads_.push_back(id);
  reads_.clear();
  reads_before_commit_.clear();
  read_round_pending_ = false;
}

Expected<Accepted, Refusal> Raft::transfer_leadership(MonoTime now, const NodeId& to) {
  last_now_ = std::max(last_now_, now);
  if (role_ != Role::kLeader) return Refusal{RaftError::kNotLeader, leader_};
  if (!is_voter(to)) return Refusal{RaftError::kUnknownPeer, leader_};
  if (to == opts_.self || to == transferee_) return Accepted{};
  transferee_ = to;
  transfer_deadline_ = now + opts_.election_timeout_min_ms;
  auto& pr = progress_.at(to);
  if (pr.match() == log_.last_index()) {
    Msg t;
    t.set_type(Msg::TIMEOUT_NOW);
    t.set_term(term_);
    send(to, std::move(t));
  } else {
    while (send_append(now, to, false)) {
    }
  }
  return Accepted{};
}

void Raft::abort_transfer() {
  transferee_.clear();
  transfer_deadline_ = kNever;
}

// --- the durability handshake -------------------------------------------

Ready Raft::take_ready() {
  if (role_ == Role::kLeader) {
    if (appends_pending_) broadcast_append(last_now_);
    if (read_round_pending_) {
      ++read_round_;
      for (auto& r : reads_)
        if (r.round == 0) r.round = read_round_;
      broadcast_heartbeat(encode_round(read_round_));
    }
  }
  appends_pending_ = false;
  read_round_pending_ = false;

  trim_log();
  Ready rd;
  rd.snapshot = std::move(pending_install_);
  pending_install_.reset();
  rd.truncate_from = log_.pending_truncate();
  rd.entries = log_.take_unpersisted();
  // What reaches the disk never moves backwards.
  STIG_INVARIANT(term_ >= emitted_hard_state_.term(), "term went backwards");
  STIG_INVARIANT(term_ != emitted_hard_state_.term() || emitted_hard_state_.vote().empty() ||
                     vote_ == emitted_hard_state_.vote(),
                 "vote changed within a term");
  STIG_INVARIANT(log_.committed() >= emitted_hard_state_.commit(), "commit went backwards");
  if (!hard_state_emitted()) {
    emitted_hard_state_ = hard_state();
    rd.hard_state = emitted_hard_state_;
  }
  rd.messages = std::move(msgs_);
  msgs_.clear();
  rd.committed = log_.take_committed(opts_.max_apply_bytes);
  STIG_INVARIANT(log_.apply_handed() <= log_.committed(), "applying beyond commit");
  rd.read_states = std::move(read_states_);
  read_states_.clear();
  rd.dropped_reads = std::move(dropped_reads_);
  dropped_reads_.clear();
  rd.wake_at = wake_at();
  return rd;
}

bool Raft::has_ready() const {
  return !msgs_.empty() || pending_install_ || log_.persist_handed() < log_.last_index() ||
         log_.pending_truncate() != 0 || !hard_state_emitted() ||
         log_.has_committed_to_hand_out() || !read_states_.empty() || !dropped_reads_.empty() ||
         (role_ == Role::kLeader && (appends_pending_ || read_round_pending_));
}

void Raft::stable_to(MonoTime now, uint64_t index, uint64_t term) {
  last_now_ = std::max(last_now_, now);
  if (!log_.stable_to(index, term)) return;
  if (role_ == Role::kLeader && maybe_commit(now)) broadcast_append(now);
}

void Raft::applied_to(uint64_t index) { log_.applied_to(index); }

Status Raft::compact(uint64_t index, std::string snapshot_data) {
  if (index > log_.applied()) return Status::invalid_argument("raft: compaction beyond the applied index");
  if (index <= log_.snapshot_index()) return Status::invalid_argument("raft: already compacted through that index");
  const uint64_t t = *log_.term(index);
  log_.compact(index, opts_.snapshot_catch_up_entries);
  snapshot_meta_.Clear();
  snapshot_meta_.set_index(index);
  snapshot_meta_.set_term(t);
  for (const auto& v : opts_.voters) snapshot_meta_.mutable_config()->add_voters(v);
  snapshot_data_ = std::make_shared<const std::string>(std::move(snapshot_data));
  return Status::ok();
}

}  // namespace stig::replication::raft
