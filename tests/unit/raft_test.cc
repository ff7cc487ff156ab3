// Raft core (replication/raft/), driven message by message.
//
// The harness below is a tiny deterministic runtime: an in-memory network
// (FIFO by default; tests cut links, drop, reorder or duplicate messages), a
// fake disk per node that only holds what a sync made durable (a crash loses
// the rest), and a state machine that records which entry it applied at
// each index. After every step a checker looks for violations of Raft's
// safety properties across the whole cluster: election safety, log
// matching, leader completeness and state machine safety.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "replication/raft/raft.h"
#include "replication/rng.h"

namespace stig::replication::raft {
namespace {

using Msg = pb::RaftMessage;

std::string entry_value(const pb::RaftEntry& e) {
  return std::to_string(e.term()) + "/" + std::to_string(static_cast<int>(e.type())) + "/" + e.data();
}

pb::RaftEntry make_entry(uint64_t index, uint64_t term, std::string data = "") {
  pb::RaftEntry e;
  e.set_index(index);
  e.set_term(term);
  e.set_data(std::move(data));
  return e;
}

// A log of the given terms at indices 1, 2, ...
std::vector<pb::RaftEntry> log_of_terms(const std::vector<uint64_t>& terms) {
  std::vector<pb::RaftEntry> out;
  for (size_t i = 0; i < terms.size(); ++i) out.push_back(make_entry(i + 1, terms[i], "e" + std::to_string(i + 1)));
  return out;
}

RaftOptions options_for(const NodeId& self, const std::vector<NodeId>& voters) {
  RaftOptions o;
  o.self = self;
  o.voters = voters;
  o.snapshot_catch_up_entries = 0;  // tests that compact want lagging followers to need the snapshot
  return o;
}

struct Envelope {
  NodeId from;
  NodeId to;
  Msg message;
};

// One node of the harness: the core, its fake disk and its state machine.
struct TestNode {
  std::unique_ptr<Raft> raft;  // null while crashed
  RaftOptions options;
  uint64_t seed = 0;
  int incarnation = 0;
  bool auto_sync = true;  // sync right after each Ready, as an fsync-per-step runtime would
  // The disk: only what a sync made durable.
  pb::HardState hard_state;
  std::optional<pb::SnapshotMeta> snapshot;
  std::string snapshot_data;
  std::map<uint64_t, pb::RaftEntry> log;
  // Taken Readies not yet durable, with the messages that wait for them.
  std::deque<Ready> unsynced;
  // The state machine (volatile: rebuilt from the snapshot on restart).
  std::map<uint64_t, std::string> applied;
  uint64_t last_applied = 0;
  std::vector<ReadState> reads;
  std::vector<uint64_t> dropped_reads;
  uint64_t last_commit_seen = 0;
};

// Snapshot data of the test state machine: its applied entries, as a
// RaftMessage's entry list (any bytes would do).
std::string encode_state_machine(const std::map<uint64_t, std::string>& applied, uint64_t through) {
  Msg m;
  for (const auto& [index, value] : applied) {
    if (index > through) break;
    auto* e = m.add_entries();
    e->set_index(index);
    e->set_data(value);
  }
  return m.SerializeAsString();
}

std::map<uint64_t, std::string> decode_state_machine(const std::string& data) {
  Msg m;
  std::map<uint64_t, std::string> out;
  if (!m.ParseFromString(data)) return out;
  for (const auto& e : m.entries()) out[e.index()] = e.data();
  return out;
}

class Cluster {
 public:
  explicit Cluster(std::vector<NodeId> ids, const std::function<void(RaftOptions&)>& tweak = {},
                   std::map<NodeId, RecoveredState> recovered = {}, uint64_t seed = 1)
      : ids_(std::move(ids)) {
    for (size_t i = 0; i < ids_.size(); ++i) {
      auto& n = nodes_[ids_[i]];
      n.options = options_for(ids_[i], ids_);
      if (tweak) tweak(n.options);
      n.seed = seed * 1000 + i;
      if (auto it = recovered.find(ids_[i]); it != recovered.end()) {
        n.hard_state = it->second.hard_state;
        for (const auto& e : it->second.entries) n.log[e.index()] = e;
        n.snapshot = it->second.snapshot;
        n.snapshot_data = it->second.snapshot_data;
      }
      start(ids_[i]);
    }
  }

  Raft& raft(const NodeId& id) { return *nodes_.at(id).raft; }
  TestNode& node(const NodeId& id) { return nodes_.at(id); }
  bool up(const NodeId& id) const { return nodes_.at(id).raft != nullptr; }
  MonoTime now() const { return now_; }
  std::deque<Envelope>& network() { return net_; }
  const std::vector<std::string>& violations() const { return violations_; }
  const std::vector<NodeId>& ids() const { return ids_; }

  // --- the runtime -------------------------------------------------------

  void start(const NodeId& id) {
    auto& n = nodes_.at(id);
    RecoveredState rec;
    rec.hard_state = n.hard_state;
    rec.snapshot = n.snapshot;
    rec.snapshot_data = n.snapshot_data;
    for (const auto& [index, e] : n.log) rec.entries.push_back(e);
    auto created = Raft::create(n.options, n.seed + 7919 * static_cast<uint64_t>(n.incarnation), std::move(rec), now_);
    if (!created) {
      ADD_FAILURE() << "restart of " << id << " failed: " << created.error().message();
      return;
    }
    n.raft = std::move(created.value());
    n.applied.clear();
    n.last_applied = 0;
    if (n.snapshot) {
      n.applied = decode_state_machine(n.snapshot_data);
      n.last_applied = n.snapshot->index();
    }
    n.last_commit_seen = n.raft->commit_index();
  }

  void crash(const NodeId& id) {
    auto& n = nodes_.at(id);
    n.raft.reset();
    n.unsynced.clear();  // never durable
  }

  // A crash in the middle of a sync: the oldest unsynced Ready reached the
  // disk up to its entries (in the documented order), not its hard state.
  void crash_torn(const NodeId& id) {
    auto& n = nodes_.at(id);
    if (!n.unsynced.empty()) {
      const Ready& rd = n.unsynced.front();
      if (rd.snapshot) {
        n.log.clear();
        n.snapshot = rd.snapshot->meta;
        n.snapshot_data = *rd.snapshot->data;
      }
      if (rd.truncate_from != 0) n.log.erase(n.log.lower_bound(rd.truncate_from), n.log.end());
      for (const auto& e : rd.entries) n.log[e.index()] = e;
    }
    crash(id);
  }

  void restart(const NodeId& id) {
    auto& n = nodes_.at(id);
    if (n.raft) return;
    ++n.incarnation;
    start(id);
    process(id);
  }

  // Takes every Ready of a node: applies, queues persists, releases messages.
  void process(const NodeId& id) {
    auto& n = nodes_.at(id);
    while (n.raft && n.raft->has_ready()) {
      Ready rd = n.raft->take_ready();
      if (rd.snapshot) {
        n.applied = decode_state_machine(*rd.snapshot->data);
        n.last_applied = rd.snapshot->meta.index();
      }
      for (const auto& e : rd.committed) apply(id, e);
      if (!rd.committed.empty()) n.raft->applied_to(rd.committed.back().index());
      for (const auto& rs : rd.read_states) {
        // Linearizable reads: the index covers every commit seen anywhere
        // before the read was asked for.
        auto floor = read_floor_.find(rs.request_id);
        if (floor != read_floor_.end() && rs.index < floor->second)
          violate("stale read: " + id + " answered read " + std::to_string(rs.request_id) + " at index " +
                  std::to_string(rs.index) + " after index " + std::to_string(floor->second) + " committed");
      }
      n.reads.insert(n.reads.end(), rd.read_states.begin(), rd.read_states.end());
      n.dropped_reads.insert(n.dropped_reads.end(), rd.dropped_reads.begin(), rd.dropped_reads.end());
      // Messages that need nothing durable leave at once; the others wait
      // for this Ready's sync (and every earlier one's).
      std::vector<OutMessage> held;
      const bool waits = rd.has_persist() || !n.unsynced.empty();
      for (auto& m : rd.messages) {
        if (m.after_persist && waits)
          held.push_back(std::move(m));
        else
          send(id, m);
      }
      rd.messages = std::move(held);
      if (waits) n.unsynced.push_back(std::move(rd));
      if (n.auto_sync) sync_now(id);
      check();
    }
  }

  // Makes every taken Ready of a node durable, then releases what waited.
  void sync(const NodeId& id) {
    sync_now(id);
    process(id);
  }

  void send(const NodeId& from, const OutMessage& m) { net_.push_back(Envelope{from, m.to, m.message}); }

  bool connected(const NodeId& a, const NodeId& b) const {
    if (cut_.count({a, b})) return false;
    auto ga = group_.find(a), gb = group_.find(b);
    const int x = ga == group_.end() ? 0 : ga->second, y = gb == group_.end() ? 0 : gb->second;
    return x == y;
  }
  void isolate(const NodeId& id) { group_[id] = next_group_++; }
  void partition(const std::vector<std::vector<NodeId>>& groups) {
    group_.clear();
    for (const auto& g : groups) {
      ++next_group_;
      for (const auto& id : g) group_[id] = next_group_;
    }
  }
  void cut(const NodeId& a, const NodeId& b) { cut_.insert({a, b}); }
  void heal() {
    group_.clear();
    cut_.clear();
  }

  void deliver(const Envelope& env) {
    if (!connected(env.from, env.to) || !up(env.to)) return;
    raft(env.to).step(now_, env.from, env.message);
    process(env.to);
    check();
  }

  // Delivers in FIFO order what `keep` accepts and drops the rest, until the
  // network is empty.
  void deliver_if(const std::function<bool(const Envelope&)>& keep, size_t limit = 100000) {
    for (size_t i = 0; i < limit && !net_.empty(); ++i) {
      Envelope env = std::move(net_.front());
      net_.pop_front();
      if (keep(env)) deliver(env);
    }
  }

  // Delivers in FIFO order until the network is empty.
  void deliver_all(size_t limit = 100000) {
    for (size_t i = 0; i < limit && !net_.empty(); ++i) {
      Envelope env = std::move(net_.front());
      net_.pop_front();
      deliver(env);
    }
  }

  // Delivers, then lets time pass in small steps, until quiet.
  void settle(MonoTime ms = 0) {
    for (const auto& id : ids_) process(id);
    deliver_all();
    for (MonoTime t = 0; t < ms; t += 10) advance(10);
  }

  // Time passes; every node ticks; nothing is delivered.
  void tick(MonoTime ms) {
    now_ += ms;
    for (const auto& id : ids_) {
      if (!up(id)) continue;
      raft(id).tick(now_);
      process(id);
    }
  }

  void advance(MonoTime ms) {
    tick(ms);
    deliver_all();
  }

  // Campaigns on `id` and settles; the test expects it to win.
  void elect(const NodeId& id) {
    raft(id).campaign(now_);
    process(id);
    deliver_all();
  }

  std::optional<NodeId> leader() const {
    std::optional<NodeId> best;
    uint64_t term = 0;
    for (const auto& id : ids_) {
      const auto& n = nodes_.at(id);
      if (n.raft && n.raft->role() == Role::kLeader && n.raft->term() >= term) {
        best = id;
        term = n.raft->term();
      }
    }
    return best;
  }

  // Runs time forward until some node leads (or gives up).
  std::optional<NodeId> wait_for_leader(MonoTime limit_ms = 10000) {
    for (MonoTime t = 0; t < limit_ms; t += 10) {
      if (auto l = leader()) return l;
      advance(10);
    }
    return leader();
  }

  // A ReadIndex request through the checker: returns its id (0 if refused).
  uint64_t read(const NodeId& id) {
    const uint64_t request = next_read_id_++;
    read_floor_[request] = committed_.empty() ? 0 : committed_.rbegin()->first;
    const bool accepted = raft(id).read_index(now_, request).has_value();
    process(id);
    return accepted ? request : 0;
  }

  Proposed propose(const NodeId& id, const std::string& data) {
    auto r = raft(id).propose(now_, data);
    EXPECT_TRUE(r.has_value()) << id << " refused a proposal";
    process(id);
    return r ? r.value() : Proposed{};
  }

  // Compacts a node's log at its applied index, as a runtime would after
  // taking a state machine snapshot.
  void compact(const NodeId& id) {
    auto& n = nodes_.at(id);
    const uint64_t at = n.raft->applied();
    const std::string data = encode_state_machine(n.applied, at);
    ASSERT_TRUE(n.raft->compact(at, data).is_ok());
    n.snapshot = n.raft->snapshot_meta();
    n.snapshot_data = data;
    const uint64_t keep_from = n.raft->log().trim_point();  // the catch-up tail stays on disk too
    for (auto it = n.log.begin(); it != n.log.end() && it->first < keep_from;) it = n.log.erase(it);
  }

  // --- the checker -------------------------------------------------------

  void check() {
    for (const auto& id : ids_) {
      const auto& n = nodes_.at(id);
      if (!n.raft) continue;
      const Raft& r = *n.raft;
      // Election safety: at most one leader per term, ever.
      if (r.role() == Role::kLeader) {
        auto [it, fresh] = leader_of_term_.emplace(r.term(), id);
        if (!fresh && it->second != id)
          violate("election safety: " + it->second + " and " + id + " both led term " + std::to_string(r.term()));
      }
      // Commits, recorded with the term in which they were first seen.
      for (uint64_t i = std::max(r.log().first_index(), n.last_commit_seen + 1); i <= r.commit_index(); ++i) {
        const std::string v = entry_value(r.log().at(i));
        auto [it, fresh] = committed_.emplace(i, std::make_pair(v, r.term()));
        if (!fresh && it->second.first != v)
          violate("committed entry changed at " + std::to_string(i) + " on " + id + ": " + it->second.first + " vs " + v);
      }
      nodes_.at(id).last_commit_seen = std::max(n.last_commit_seen, r.commit_index());
      // Leader completeness: a leader of a later term holds every committed entry.
      if (r.role() == Role::kLeader) {
        for (const auto& [i, c] : committed_) {
          if (c.second >= r.term() || i <= r.log().snapshot_index()) continue;
          if (i > r.last_index() || entry_value(r.log().at(i)) != c.first)
            violate("leader completeness: " + id + " leads term " + std::to_string(r.term()) + " without entry " +
                    std::to_string(i));
        }
      }
    }
    // Log matching: same index and term means identical prefixes.
    for (size_t a = 0; a < ids_.size(); ++a) {
      for (size_t b = a + 1; b < ids_.size(); ++b) {
        if (!up(ids_[a]) || !up(ids_[b])) continue;
        const RaftLog& x = raft(ids_[a]).log();
        const RaftLog& y = raft(ids_[b]).log();
        const uint64_t lo = std::max(x.first_index(), y.first_index());
        uint64_t i = std::min(x.last_index(), y.last_index());
        while (i >= lo && i > 0 && x.at(i).term() != y.at(i).term()) --i;
        for (uint64_t j = lo; j <= i && i >= lo; ++j) {
          const auto &p = x.at(j), &q = y.at(j);
          if (p.term() != q.term() || p.type() != q.type() || p.data() != q.data()) {
            violate("log matching: " + ids_[a] + " and " + ids_[b] + " differ at " + std::to_string(j));
            break;
          }
        }
      }
    }
  }

 private:
  void apply(const NodeId& id, const pb::RaftEntry& e) {
    auto& n = nodes_.at(id);
    if (e.index() != n.last_applied + 1) violate("apply out of order on " + id);
    const std::string v = entry_value(e);
    n.applied[e.index()] = v;
    n.last_applied = e.index();
    // State machine safety: every node applies the same entry at an index.
    auto [it, fresh] = applied_global_.emplace(e.index(), v);
    if (!fresh && it->second != v)
      violate("state machine safety: " + id + " applied " + v + " at " + std::to_string(e.index()) + ", another node " +
              it->second);
  }

  void sync_now(const NodeId& id) {
    auto& n = nodes_.at(id);
    while (!n.unsynced.empty()) {
      Ready rd = std::move(n.unsynced.front());
      n.unsynced.pop_front();
      if (rd.snapshot) {
        n.log.clear();
        n.snapshot = rd.snapshot->meta;
        n.snapshot_data = *rd.snapshot->data;
      }
      if (rd.truncate_from != 0) n.log.erase(n.log.lower_bound(rd.truncate_from), n.log.end());
      for (const auto& e : rd.entries) n.log[e.index()] = e;
      if (rd.hard_state) n.hard_state = *rd.hard_state;
      for (const auto& m : rd.messages) send(id, m);
      if (n.raft && !rd.entries.empty()) n.raft->stable_to(now_, rd.entries.back().index(), rd.entries.back().term());
    }
  }

  void violate(const std::string& what) {
    if (std::find(violations_.begin(), violations_.end(), what) == violations_.end()) violations_.push_back(what);
  }

  std::vector<NodeId> ids_;
  std::map<NodeId, TestNode> nodes_;
  std::deque<Envelope> net_;
  MonoTime now_ = 0;
  std::map<NodeId, int> group_;
  int next_group_ = 1;
  std::set<std::pair<NodeId, NodeId>> cut_;
  std::map<uint64_t, NodeId> leader_of_term_;
  std::map<uint64_t, std::pair<std::string, uint64_t>> committed_;  // index -> (entry, term first seen)
  std::map<uint64_t, std::string> applied_global_;
  std::vector<std::string> violations_;
  std::map<uint64_t, uint64_t> read_floor_;  // read request -> highest index committed anywhere when asked
  uint64_t next_read_id_ = 1000;
};

const std::vector<NodeId> kThree = {"a", "b", "c"};
const std::vector<NodeId> kFive = {"a", "b", "c", "d", "e"};

std::string all_violations(const Cluster& c) {
  std::string out;
  for (const auto& v : c.violations()) out += v + "\n";
  return out;
}

// --- the log -------------------------------------------------------------------

TEST(RaftLog, TracksWhatWasHandedOutWhatIsDurableAndWhatATruncationUndid) {
  RaftLog log;
  log.append(log_of_terms({1, 1, 2, 2}));
  EXPECT_EQ(log.take_unpersisted().size(), 4u);
  EXPECT_TRUE(log.stable_to(2, 1));
  EXPECT_EQ(log.stable(), 2u);
  // A new leader replaces 3..4: the runtime must erase from 3 first.
  log.append({make_entry(3, 3, "new")});
  EXPECT_EQ(log.pending_truncate(), 3u);
  EXPECT_EQ(log.stable(), 2u);
  // The old Ready's entries become durable late: (4, 2) is gone, ignored.
  EXPECT_FALSE(log.stable_to(4, 2));
  auto fresh = log.take_unpersisted();
  ASSERT_EQ(fresh.size(), 1u);
  EXPECT_EQ(fresh[0].data(), "new");
  EXPECT_EQ(log.pending_truncate(), 0u);
  EXPECT_TRUE(log.stable_to(3, 3));
  // Only committed and durable entries are handed out to apply.
  log.commit_to(3);
  EXPECT_EQ(log.take_committed(UINT64_MAX).size(), 3u);
  log.applied_to(3);
  log.compact(2, 0);
  EXPECT_EQ(log.first_index(), 1u) << "dropped entries are freed by trim_some, a batch at a time";
  EXPECT_EQ(log.trim_point(), 3u);
  EXPECT_FALSE(log.trim_some(1000));
  EXPECT_EQ(log.first_index(), 3u);
  EXPECT_EQ(log.term(2), std::optional<uint64_t>(1));
  EXPECT_EQ(log.term(1), std::nullopt);
}

TEST(RaftLog, FindsTheLastIndexAtOrBelowATermForFastBacktracking) {
  RaftLog log;
  log.append(log_of_terms({1, 1, 2, 2, 5, 5}));
  EXPECT_EQ(log.find_conflict_by_term(6, 4), std::make_pair(uint64_t{4}, uint64_t{2}));
  EXPECT_EQ(log.find_conflict_by_term(6, 5), std::make_pair(uint64_t{6}, uint64_t{5}));
  EXPECT_EQ(log.find_conflict_by_term(100, 1), std::make_pair(uint64_t{2}, uint64_t{1}));
  EXPECT_EQ(log.find_conflict_by_term(6, 0), std::make_pair(uint64_t{0}, uint64_t{0}));
  EXPECT_EQ(log.find_conflict(log_of_terms({1, 1, 2})), 0u);
  EXPECT_EQ(log.find_conflict({make_entry(5, 4), make_entry(6, 4)}), 5u);
  EXPECT_EQ(log.find_conflict({make_entry(6, 5), make_entry(7, 5)}), 7u);
}

// --- construction ------------------------------------------------------------

TEST(RaftCreate, RefusesBadOptionsAndCorruptRecoveredStateWithAnError) {
  struct Case {
    const char* name;
    std::function<void(RaftOptions&, RecoveredState&)> corrupt;
  };
  const std::vector<Case> cases = {
      {"self not a voter", [](RaftOptions& o, RecoveredState&) { o.self = "z"; }},
      {"duplicate voter", [](RaftOptions& o, RecoveredState&) { o.voters.push_back("a"); }},
      {"heartbeat not below election timeout", [](RaftOptions& o, RecoveredState&) { o.heartbeat_interval_ms = 150; }},
      {"election range empty", [](RaftOptions& o, RecoveredState&) { o.election_timeout_max_ms = 150; }},
      {"entries not contiguous", [](RaftOptions&, RecoveredState& r) { r.entries[1].set_index(7); }},
      {"terms go backwards", [](RaftOptions&, RecoveredState& r) { r.entries[0].set_term(2); }},
      {"zero entry term", [](RaftOptions&, RecoveredState& r) { r.entries[0].set_term(0); }},
      {"commit beyond log", [](RaftOptions&, RecoveredState& r) { r.hard_state.set_commit(4); }},
      {"vote for a stranger", [](RaftOptions&, RecoveredState& r) { r.hard_state.set_vote("zz"); }},
      {"term near 2^64", [](RaftOptions&, RecoveredState& r) { r.hard_state.set_term(UINT64_MAX); }},
      {"applied beyond commit", [](RaftOptions&, RecoveredState& r) { r.applied = 3; }},
      {"config entry of other members",
       [](RaftOptions&, RecoveredState& r) {
         pb::RaftConfigState config;
         config.add_voters("a");
         r.entries[0].set_type(pb::RaftEntry::CONFIG);
         r.entries[0].set_data(config.SerializeAsString());
       }},
      {"config entry that does not parse",
       [](RaftOptions&, RecoveredState& r) {
         r.entries[0].set_type(pb::RaftEntry::CONFIG);
         r.entries[0].set_data("\xff\xff");
       }},
      {"snapshot members differ",
       [](RaftOptions&, RecoveredState& r) {
         pb::SnapshotMeta s;
         s.set_index(1);
         s.set_term(1);
         s.mutable_config()->add_voters("a");
         r.snapshot = s;
         r.entries.erase(r.entries.begin());
       }},
      {"snapshot at index 0",
       [](RaftOptions&, RecoveredState& r) {
         pb::SnapshotMeta s;
         for (const auto& v : kThree) s.mutable_config()->add_voters(v);
         r.snapshot = s;
       }},
  };
  auto good = [] {
    RecoveredState r;
    r.hard_state.set_term(2);
    r.hard_state.set_vote("b");
    r.hard_state.set_commit(2);
    r.entries = log_of_terms({1, 1, 2});
    return r;
  };
  ASSERT_TRUE(Raft::create(options_for("a", kThree), 1, good(), 0).has_value());
  for (const auto& c : cases) {
    RaftOptions o = options_for("a", kThree);
    RecoveredState r = good();
    c.corrupt(o, r);
    auto created = Raft::create(o, 1, std::move(r), 0);
    EXPECT_FALSE(created.has_value()) << c.name;
  }
}

TEST(RaftCreate, DropsRecoveredEntriesThatTheSnapshotCovers) {
  // A crash between storing a snapshot and erasing the log it covers.
  auto recovered = [](uint64_t term_at_snapshot) {
    RecoveredState r;
    r.hard_state.set_term(2);
    r.hard_state.set_commit(3);
    pb::SnapshotMeta s;
    s.set_index(2);
    s.set_term(1);
    for (const auto& v : kThree) s.mutable_config()->add_voters(v);
    r.snapshot = s;
    r.entries = log_of_terms({1, term_at_snapshot, 2, 2});
    return r;
  };
  auto created = Raft::create(options_for("a", kThree), 1, recovered(1), 0);
  ASSERT_TRUE(created.has_value()) << created.error().message();
  EXPECT_EQ(created.value()->log().first_index(), 3u);
  EXPECT_EQ(created.value()->last_index(), 4u);
  EXPECT_EQ(created.value()->commit_index(), 3u);
  EXPECT_EQ(created.value()->applied(), 2u);
  EXPECT_FALSE(Raft::create(options_for("a", kThree), 1, recovered(2), 0).has_value())
      << "the entry at the snapshot's index disagrees with it";
}

TEST(RaftCreate, AHardStateOlderThanTheLogTakesTheLogsTermWithoutAVote) {
  // A crash after a Ready's entries but before its hard state.
  RecoveredState r;
  r.hard_state.set_term(1);
  r.hard_state.set_vote("b");
  r.entries = log_of_terms({1, 2, 3});
  auto created = Raft::create(options_for("a", kThree), 1, std::move(r), 0);
  ASSERT_TRUE(created.has_value());
  EXPECT_EQ(created.value()->term(), 3u);
  EXPECT_EQ(created.value()->vote(), "");
  auto rd = created.value()->take_ready();
  ASSERT_TRUE(rd.hard_state);
  EXPECT_EQ(rd.hard_state->term(), 3u);
}

TEST(RaftCreate, RecoversTermVoteCommitAndLog) {
  RecoveredState r;
  r.hard_state.set_term(3);
  r.hard_state.set_vote("c");
  r.hard_state.set_commit(2);
  r.entries = log_of_terms({1, 2, 3});
  auto created = Raft::create(options_for("a", kThree), 1, std::move(r), 0);
  ASSERT_TRUE(created.has_value());
  Raft& raft = *created.value();
  EXPECT_EQ(raft.term(), 3u);
  EXPECT_EQ(raft.vote(), "c");
  EXPECT_EQ(raft.commit_index(), 2u);
  EXPECT_EQ(raft.last_index(), 3u);
  EXPECT_EQ(raft.role(), Role::kFollower);
  // Recovered committed entries are handed out to apply again.
  Ready rd = raft.take_ready();
  ASSERT_EQ(rd.committed.size(), 2u);
  EXPECT_FALSE(rd.hard_state.has_value());  // nothing changed since the disk
  EXPECT_TRUE(rd.entries.empty());          // all of it is durable
  EXPECT_GT(rd.wake_at, 150 - 1);
  EXPECT_LT(rd.wake_at, 300);
}

// --- elections ---------------------------------------------------------------

TEST(RaftElection, SingleNodeElectsItselfAndCommitsOnlyWhatIsDurable) {
  Cluster c({"a"});
  c.node("a").auto_sync = false;
  auto leader = c.wait_for_leader();
  ASSERT_EQ(leader, "a");
  c.sync("a");
  const uint64_t noop_commit = c.raft("a").commit_index();
  EXPECT_EQ(noop_commit, 1u);  // the first leader's CONFIG entry
  auto p = c.propose("a", "x");
  EXPECT_EQ(p.index, 2u);
  c.process("a");
  EXPECT_EQ(c.raft("a").commit_index(), 1u) << "an entry that is not durable anywhere must not commit";
  c.sync("a");
  EXPECT_EQ(c.raft("a").commit_index(), 2u);
  EXPECT_EQ(c.node("a").applied.at(2), "1/0/x");
  EXPECT_EQ(all_violations(c), "");
}

TEST(RaftElection, ThreeNodesElectExactlyOneLeaderThatEveryoneFollows) {
  Cluster c(kThree);
  auto leader = c.wait_for_leader();
  ASSERT_TRUE(leader);
  c.settle(100);
  for (const auto& id : kThree) {
    EXPECT_EQ(c.raft(id).leader(), *leader) << id;
    EXPECT_EQ(c.raft(id).term(), c.raft(*leader).term()) << id;
    EXPECT_EQ(c.raft(id).commit_index(), 1u) << id;  // the first leader's CONFIG entry
  }
  int leaders = 0;
  for (const auto& id : kThree) leaders += c.raft(id).role() == Role::kLeader;
  EXPECT_EQ(leaders, 1);
  EXPECT_EQ(all_violations(c), "");
}

TEST(RaftElection, FiveNodesElectALeaderAndReelectWhenItCrashes) {
  Cluster c(kFive, {}, {}, 5);
  auto first = c.wait_for_leader();
  ASSERT_TRUE(first);
  c.propose(*first, "before");
  c.settle(50);
  const uint64_t term = c.raft(*first).term();
  c.crash(*first);
  std::optional<NodeId> second;
  for (int i = 0; i < 300 && !second; ++i) {
    c.advance(10);
    for (const auto& id : kFive)
      if (c.up(id) && c.raft(id).role() == Role::kLeader) second = id;
  }
  ASSERT_TRUE(second);
  EXPECT_NE(*second, *first);
  EXPECT_GT(c.raft(*second).term(), term);
  EXPECT_EQ(c.node(*second).applied.count(2), 1u) << "the committed entry survives the leader";
  EXPECT_EQ(all_violations(c), "");
}

TEST(RaftElection, ElectionTimeoutsAreRandomizedWithinTheConfiguredRange) {
  std::set<MonoTime> seen;
  for (uint64_t seed = 0; seed < 20; ++seed) {
    auto r = Raft::create(options_for("a", kThree), seed, {}, 1000);
    ASSERT_TRUE(r.has_value());
    const MonoTime wake = r.value()->take_ready().wake_at;
    EXPECT_GE(wake, 1150);
    EXPECT_LT(wake, 1300);
    seen.insert(wake);
  }
  EXPECT_GT(seen.size(), 10u);
}

TEST(RaftElection, MessagesNeedingDurabilityAreFlagged) {
  Cluster c(kThree, [](RaftOptions& o) { o.pre_vote = false; });
  c.raft("a").campaign(c.now());
  Ready rd = c.raft("a").take_ready();
  ASSERT_TRUE(rd.hard_state);
  EXPECT_EQ(rd.hard_state->vote(), "a");
  ASSERT_EQ(rd.messages.size(), 2u);
  for (const auto& m : rd.messages) {
    EXPECT_EQ(m.message.type(), Msg::VOTE);
    EXPECT_TRUE(m.after_persist) << "the candidate's own vote must be durable first";
  }
  c.raft("b").step(c.now(), "a", rd.messages[0].message);
  Ready b = c.raft("b").take_ready();
  ASSERT_TRUE(b.hard_state);
  EXPECT_EQ(b.hard_state->vote(), "a");
  ASSERT_EQ(b.messages.size(), 1u);
  EXPECT_EQ(b.messages[0].message.type(), Msg::VOTE_RESP);
  EXPECT_FALSE(b.messages[0].message.reject());
  EXPECT_TRUE(b.messages[0].after_persist);
  c.raft("a").step(c.now(), "b", b.messages[0].message);
  EXPECT_EQ(c.raft("a").role(), Role::kLeader);
  Ready l = c.raft("a").take_ready();
  ASSERT_EQ(l.entries.size(), 1u);
  EXPECT_EQ(l.entries[0].type(), pb::RaftEntry::CONFIG) << "the first leader records the membership";
  pb::RaftConfigState config;
  ASSERT_TRUE(config.ParseFromString(l.entries[0].data()));
  EXPECT_EQ(config.voters_size(), 3);
  int appends = 0;
  for (const auto& m : l.messages) {
    if (m.message.type() != Msg::APPEND) continue;
    ++appends;
    EXPECT_FALSE(m.after_persist) << "thesis 10.2.1: the leader sends while its own write is in flight";
    EXPECT_EQ(m.message.entries_size(), 1);
  }
  EXPECT_EQ(appends, 2);
}

TEST(RaftElection, PreVoteKeepsARejoiningPartitionedNodeFromDisruptingTheLeader) {
  Cluster c(kThree);
  c.elect("a");
  ASSERT_EQ(c.leader(), "a");
  const uint64_t term = c.raft("a").term();
  c.isolate("c");
  c.settle(3000);  // c's election timer fires many times
  EXPECT_EQ(c.raft("c").term(), term) << "pre-vote never raises the term of a node that cannot win";
  EXPECT_GT(c.raft("c").stats().pre_elections_started, 5u);
  EXPECT_EQ(c.raft("c").stats().elections_started, 0u);
  c.propose("a", "while c was away");
  c.heal();
  c.settle(1000);
  EXPECT_EQ(c.raft("a").role(), Role::kLeader);
  EXPECT_EQ(c.raft("a").term(), term);
  EXPECT_EQ(c.raft("c").leader(), "a");
  EXPECT_EQ(c.raft("c").commit_index(), c.raft("a").commit_index());
  EXPECT_EQ(all_violations(c), "");
}

TEST(RaftElection, WithoutPreVoteARejoiningNodeDisruptsTheLeader) {
  // The contrast for the test above: the disruption pre-vote prevents.
  Cluster c(kThree, [](RaftOptions& o) {
    o.pre_vote = false;
    o.check_quorum = false;
  });
  c.elect("a");
  const uint64_t term = c.raft("a").term();
  c.isolate("c");
  c.settle(3000);
  EXPECT_GT(c.raft("c").term(), term + 5);
  c.heal();
  c.settle(2000);
  ASSERT_TRUE(c.leader());
  EXPECT_GT(c.raft(*c.leader()).term(), term) << "c's higher term deposed the leader";
  EXPECT_EQ(all_violations(c), "");
}

TEST(RaftElection, LeaderStickinessIgnoresVotesWhileTheLeaderIsHeard) {
  Cluster c(kThree);
  c.elect("a");
  c.settle(20);
  const uint64_t term = c.raft("b").term();
  Msg vote;
  vote.set_type(Msg::VOTE);
  vote.set_term(term + 1);
  vote.set_index(100);
  vote.set_log_term(term);
  c.raft("b").step(c.now(), "c", vote);
  EXPECT_EQ(c.raft("b").term(), term);
  EXPECT_EQ(c.raft("b").stats().ignored.at("vote request while a leader is live"), 1u);
  // A transfer-caused vote is not disruptive: it is granted.
  vote.set_leadership_transfer(true);
  c.raft("b").step(c.now(), "c", vote);
  EXPECT_EQ(c.raft("b").term(), term + 1);
  EXPECT_EQ(c.raft("b").vote(), "c");
}

TEST(RaftElection, CheckQuorumStepsDownALeaderCutOffFromTheMajority) {
  Cluster c(kThree);
  c.elect("a");
  ASSERT_EQ(c.leader(), "a");
  c.isolate("a");
  c.settle(400);
  EXPECT_NE(c.raft("a").role(), Role::kLeader);
  EXPECT_EQ(c.raft("a").stats().check_quorum_step_downs, 1u);
  auto other = c.leader();
  ASSERT_TRUE(other);
  EXPECT_NE(*other, "a");
  c.heal();
  c.settle(500);
  EXPECT_EQ(c.raft("a").leader(), *other);
  EXPECT_EQ(all_violations(c), "");
}

TEST(RaftElection, AVoteIsNotGrantedTwiceInATermAcrossACrash) {
  auto run = [](bool fault) {
    Cluster c(kThree, [fault](RaftOptions& o) {
      o.pre_vote = false;
      o.faults.vote_not_durable = fault;
    });
    c.node("c").auto_sync = false;
    c.cut("a", "b");  // b stays a candidate whatever a does
    // a and b run for term 1 at the same moment; c hears a first.
    c.raft("a").campaign(c.now());
    c.process("a");
    c.raft("b").campaign(c.now());
    c.process("b");
    std::vector<Envelope> from_b;
    std::deque<Envelope> requests = std::move(c.network());
    c.network().clear();
    for (const auto& e : requests) {
      if (e.from == "b") from_b.push_back(e);
      else if (e.to == "c") c.deliver(e);  // c votes for a, not yet durably
    }
    c.deliver_all();  // with the fault, c's vote already reached a
    c.crash("c");     // ...and is lost
    c.restart("c");
    for (const auto& e : from_b) c.deliver(e);  // c, restarted, votes for b in the same term
    c.sync("c");
    c.deliver_all();
    return c;
  };
  Cluster correct = run(false);
  EXPECT_EQ(all_violations(correct), "");
  EXPECT_EQ(correct.raft("b").role(), Role::kLeader);
  EXPECT_NE(correct.raft("a").role(), Role::kLeader);
  Cluster faulty = run(true);
  EXPECT_NE(all_violations(faulty).find("election safety"), std::string::npos)
      << "the checker must catch a vote that was not durable: " << all_violations(faulty);
}

// --- replication -------------------------------------------------------------

TEST(RaftReplication, ProposalsBetweenTwoReadiesShareOneAppend) {
  Cluster c(kThree);
  c.elect("a");
  c.settle(10);
  for (int i = 0; i < 100; ++i) ASSERT_TRUE(c.raft("a").propose(c.now(), "p" + std::to_string(i)).has_value());
  Ready rd = c.raft("a").take_ready();
  EXPECT_EQ(rd.entries.size(), 100u);
  std::map<NodeId, int> appends;
  for (const auto& m : rd.messages) {
    ASSERT_EQ(m.message.type(), Msg::APPEND);
    EXPECT_EQ(m.message.entries_size(), 100);
    ++appends[m.to];
  }
  EXPECT_EQ(appends, (std::map<NodeId, int>{{"b", 1}, {"c", 1}}));
}

TEST(RaftReplication, AppendsArePipelinedUpToTheInflightLimitAndSplitBySize) {
  Cluster c(kThree, [](RaftOptions& o) {
    o.max_append_bytes = 10;  // one 10-byte entry per APPEND
    o.max_inflight_appends = 4;
  });
  c.elect("a");
  c.settle(10);
  for (int i = 0; i < 10; ++i) ASSERT_TRUE(c.raft("a").propose(c.now(), "0123456789").has_value());
  Ready rd = c.raft("a").take_ready();
  int to_b = 0;
  for (const auto& m : rd.messages) {
    if (m.to != "b") continue;
    ++to_b;
    EXPECT_EQ(m.message.entries_size(), 1);
  }
  EXPECT_EQ(to_b, 4) << "four APPENDs in flight before any answer";
  EXPECT_EQ(c.raft("a").progress("b")->state(), Progress::State::kReplicate);
  for (const auto& m : rd.messages) c.send("a", m);
  c.sync("a");
  c.deliver_all();
  EXPECT_EQ(c.raft("a").commit_index(), 11u);
  EXPECT_EQ(c.raft("b").commit_index(), 11u);
  EXPECT_EQ(c.raft("c").last_index(), 11u);
  EXPECT_EQ(all_violations(c), "");
}

TEST(RaftReplication, LeaderCountsItsOwnEntryOnlyOnceDurable) {
  Cluster c(kThree);
  c.elect("a");
  c.settle(10);
  c.crash("c");
  c.node("a").auto_sync = false;
  c.propose("a", "x");
  c.deliver_all();  // b appends and acknowledges
  EXPECT_EQ(c.raft("a").progress("b")->match(), 2u);
  EXPECT_EQ(c.raft("a").commit_index(), 1u) << "b alone is not a majority while a's copy is not durable";
  c.sync("a");
  EXPECT_EQ(c.raft("a").commit_index(), 2u);
}

TEST(RaftReplication, FollowerAcknowledgesOnlyAfterItsAppendIsDurable) {
  Cluster c(kThree);
  c.elect("a");
  c.settle(10);
  c.node("b").auto_sync = false;
  c.node("c").auto_sync = false;
  c.propose("a", "x");
  c.deliver_all();
  EXPECT_EQ(c.raft("a").progress("b")->match(), 1u);
  EXPECT_EQ(c.raft("a").commit_index(), 1u);
  c.crash("b");  // b's append was never durable: its answer never leaves
  c.sync("c");
  c.deliver_all();
  EXPECT_EQ(c.raft("a").commit_index(), 2u);
  c.restart("b");
  c.settle(200);
  EXPECT_EQ(c.raft("b").commit_index(), 2u);
  EXPECT_EQ(all_violations(c), "");
}

TEST(RaftReplication, ConflictingFollowerLogsAreRepairedLikeFigure7) {
  // Figure 7 of the Raft paper: the leader of term 8 and followers a..f.
  const std::vector<NodeId> ids = {"L", "a", "b", "c", "d", "e", "f"};
  const std::map<NodeId, std::vector<uint64_t>> logs = {
      {"L", {1, 1, 1, 4, 4, 5, 5, 6, 6, 6}},
      {"a", {1, 1, 1, 4, 4, 5, 5, 6, 6}},
      {"b", {1, 1, 1, 4}},
      {"c", {1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 6}},
      {"d", {1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 7, 7}},
      {"e", {1, 1, 1, 4, 4, 4, 4}},
      {"f", {1, 1, 1, 2, 2, 2, 3, 3, 3, 3, 3}},
  };
  std::map<NodeId, RecoveredState> recovered;
  for (const auto& [id, terms] : logs) {
    RecoveredState r;
    r.hard_state.set_term(7);
    r.hard_state.set_commit(3);
    r.entries = log_of_terms(terms);
    // Only the prefix the figure shares is the same bytes everywhere.
    for (auto& e : r.entries)
      if (e.index() > 3) e.set_data(id + std::to_string(e.index()));
    recovered[id] = r;
  }
  // Entries the leader holds are the leader's bytes wherever the figure
  // says a follower holds them (same index and term).
  for (auto& [id, r] : recovered) {
    for (auto& e : r.entries) {
      const auto& lt = logs.at("L");
      if (e.index() <= lt.size() && lt[e.index() - 1] == e.term()) e.set_data("L" + std::to_string(e.index()));
    }
  }
  for (auto& e : recovered["L"].entries)
    if (e.index() > 3) e.set_data("L" + std::to_string(e.index()));
  Cluster c(ids, [](RaftOptions& o) { o.max_append_bytes = 4; }, recovered);
  EXPECT_EQ(all_violations(c), "");
  c.elect("L");
  ASSERT_EQ(c.leader(), "L");
  EXPECT_EQ(c.raft("L").term(), 8u);
  c.settle(500);
  const RaftLog& leader_log = c.raft("L").log();
  EXPECT_EQ(leader_log.last_index(), 11u);
  for (const auto& id : ids) {
    const RaftLog& l = c.raft(id).log();
    ASSERT_EQ(l.last_index(), leader_log.last_index()) << id;
    for (uint64_t i = 1; i <= l.last_index(); ++i) EXPECT_EQ(entry_value(l.at(i)), entry_value(leader_log.at(i))) << id << " " << i;
    EXPECT_EQ(c.raft(id).commit_index(), 11u) << id;
  }
  EXPECT_EQ(all_violations(c), "");
}

TEST(RaftReplication, AConflictTruncatesTheFollowerLogInTheReadyAndOnDisk) {
  std::map<NodeId, RecoveredState> rec;
  for (const auto& id : kThree) {
    RecoveredState r;
    r.hard_state.set_term(id == "b" ? 2 : 3);
    r.hard_state.set_commit(1);
    r.entries = log_of_terms(id == "b" ? std::vector<uint64_t>{1, 2, 2} : std::vector<uint64_t>{1, 3});
    rec[id] = r;
  }
  Cluster c(kThree, {}, rec);
  c.node("b").auto_sync = false;
  c.raft("a").campaign(c.now());
  c.process("a");
  c.deliver_all();
  ASSERT_EQ(c.raft("a").role(), Role::kLeader);
  c.sync("b");  // b's vote and its reject of the leader's probe leave
  c.deliver_all();
  ASSERT_FALSE(c.node("b").unsynced.empty());
  uint64_t truncated = 0;
  for (const auto& rd : c.node("b").unsynced)
    if (rd.truncate_from != 0) truncated = rd.truncate_from;
  EXPECT_EQ(truncated, 2u) << "b's entries 2..3 of term 2 are replaced";
  EXPECT_EQ(c.node("b").log.size(), 3u) << "nothing durable changed before the sync";
  c.sync("b");
  c.settle(0);
  ASSERT_EQ(c.node("b").log.size(), 3u);
  EXPECT_EQ(c.node("b").log.at(2).term(), 3u);
  EXPECT_EQ(c.node("b").log.at(3).term(), 4u);
  EXPECT_EQ(all_violations(c), "");
}

TEST(RaftReplication, FastBacktrackingSkipsAWholeConflictingTermInOneRoundTrip) {
  // b holds 100 entries of term 2 that the new leader's log (term 3) replaces.
  std::vector<uint64_t> t3(101, 3), t2(101, 2);
  t3[0] = t2[0] = 1;
  std::map<NodeId, RecoveredState> rec;
  for (const auto& id : kThree) {
    RecoveredState r;
    r.hard_state.set_term(id == "b" ? 2 : 3);
    r.hard_state.set_commit(1);
    r.entries = log_of_terms(id == "b" ? t2 : t3);
    rec[id] = r;
  }
  Cluster c(kThree, {}, rec);
  c.raft("a").campaign(c.now());
  c.process("a");
  int rejects = 0;
  c.deliver_if([&](const Envelope& e) {
    rejects += e.message.type() == Msg::APPEND_RESP && e.message.reject() && e.from == "b";
    return true;
  });
  ASSERT_EQ(c.raft("a").role(), Role::kLeader);
  EXPECT_EQ(rejects, 1) << "one reject names the conflicting term; the leader jumps past all of it";
  EXPECT_EQ(c.raft("b").last_index(), 102u);
  EXPECT_EQ(c.raft("b").log().at(50).term(), 3u);
  EXPECT_EQ(all_violations(c), "");
}

TEST(RaftReplication, ProposalsAreRefusedWithAReasonAndALeaderHint) {
  Cluster c(kThree, [](RaftOptions& o) {
    o.max_entry_bytes = 100;
    o.max_uncommitted_bytes = 250;
  });
  c.elect("a");
  c.settle(0);
  auto r = c.raft("b").propose(c.now(), "x");
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().error, RaftError::kNotLeader);
  EXPECT_EQ(r.error().leader_hint, "a");
  r = c.raft("a").propose(c.now(), std::string(101, 'x'));
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().error, RaftError::kTooLarge);
  c.isolate("a");  // nothing commits: uncommitted data piles up
  EXPECT_TRUE(c.raft("a").propose(c.now(), std::string(100, 'x')).has_value());
  EXPECT_TRUE(c.raft("a").propose(c.now(), std::string(100, 'x')).has_value());
  r = c.raft("a").propose(c.now(), std::string(100, 'x'));
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().error, RaftError::kTooMuchUncommitted);
  c.heal();
  c.settle(100);
  EXPECT_TRUE(c.raft("a").propose(c.now(), std::string(100, 'x')).has_value()) << "commit frees the budget";
}

TEST(RaftReplication, OnlyCurrentTermEntriesCommitByCountingFigure8) {
  // Figure 8 of the Raft paper: an entry of an old term that a later leader
  // replicated to a majority may still be overwritten; committing it by
  // counting replicas (the fault) loses a committed entry.
  auto run = [](bool fault) {
    const std::vector<NodeId> ids = {"s1", "s2", "s3", "s4", "s5"};
    Cluster c(ids, [fault](RaftOptions& o) {
      o.pre_vote = false;
      o.check_quorum = false;
      o.max_append_bytes = 1;  // one entry per APPEND
      o.faults.commit_from_old_term = fault;
    });
    auto is_vote = [](const Envelope& e) {
      return e.message.type() == Msg::VOTE || e.message.type() == Msg::VOTE_RESP;
    };
    // (a) s1 leads term 1; index 2 (term 1) reaches s2 only.
    c.elect("s1");
    c.settle(0);
    c.partition({{"s1", "s2"}, {"s3", "s4", "s5"}});
    c.propose("s1", "x");
    c.settle(0);
    EXPECT_EQ(c.raft("s2").last_index(), 2u);
    // (b) s5 wins term 2 with s3 and s4; its NOOP (index 2, term 2) reaches nobody.
    c.raft("s5").campaign(c.now());
    c.process("s5");
    c.deliver_if(is_vote);
    EXPECT_EQ(c.raft("s5").role(), Role::kLeader);
    EXPECT_EQ(c.raft("s5").log().at(2).term(), 2u);
    c.crash("s5");
    c.crash("s1");  // s1 forgets it led term 1 (its log is durable)
    c.restart("s1");
    // (c) s1 wins term 3 with s2 and s3, and replicates its index 2 to s3
    // but not its NOOP (index 3): index 2 is now on a majority.
    c.partition({{"s1", "s2", "s3"}, {"s4"}, {"s5"}});
    for (int i = 0; i < 3 && c.raft("s1").role() != Role::kLeader; ++i) {
      c.raft("s1").campaign(c.now());
      c.process("s1");
      c.deliver_if([&](const Envelope& e) {
        if (e.to != "s3" || e.message.type() != Msg::APPEND) return true;
        const bool s3_accepts = c.raft("s3").log().matches(e.message.index(), e.message.log_term());
        return !s3_accepts || e.message.entries_size() == 0 || e.message.entries(0).index() <= 2;
      });
    }
    EXPECT_EQ(c.raft("s1").role(), Role::kLeader);
    EXPECT_EQ(c.raft("s1").term(), 3u);
    EXPECT_EQ(c.raft("s3").last_index(), 2u);
    EXPECT_EQ(c.raft("s3").log().at(2).term(), 1u);
    const bool s1_committed_old = c.raft("s1").commit_index() >= 2;
    // (d) s1 crashes; s5 comes back and wins with s3 and s4 (its last entry
    // has term 2 > 1), overwriting index 2.
    c.crash("s1");
    c.restart("s5");
    c.partition({{"s3", "s4", "s5"}, {"s1", "s2"}});
    for (int i = 0; i < 5 && c.raft("s5").role() != Role::kLeader; ++i) {
      c.raft("s5").campaign(c.now());
      c.process("s5");
      c.deliver_all();
    }
    EXPECT_EQ(c.raft("s5").role(), Role::kLeader);
    c.settle(200);
    EXPECT_EQ(c.raft("s3").log().at(2).term(), 2u);
    return std::make_pair(s1_committed_old, all_violations(c));
  };
  auto [committed_ok, violations_ok] = run(false);
  EXPECT_FALSE(committed_ok) << "an old-term entry must not commit by counting";
  EXPECT_EQ(violations_ok, "");
  auto [committed_bad, violations_bad] = run(true);
  EXPECT_TRUE(committed_bad);
  EXPECT_NE(violations_bad.find("leader completeness"), std::string::npos)
      << "the checker must catch the figure 8 bug: " << violations_bad;
}

// --- ReadIndex -----------------------------------------------------------------

TEST(RaftReadIndex, ALeaderAnswersAfterAHeartbeatQuorumWithItsCommitIndex) {
  Cluster c(kThree);
  c.elect("a");
  c.propose("a", "x");
  c.settle(0);
  ASSERT_EQ(c.raft("a").commit_index(), 2u);
  ASSERT_TRUE(c.raft("a").read_index(c.now(), 42).has_value());
  c.process("a");
  EXPECT_TRUE(c.node("a").reads.empty()) << "no answer before the heartbeat round";
  c.deliver_all();
  ASSERT_EQ(c.node("a").reads.size(), 1u);
  EXPECT_EQ(c.node("a").reads[0].request_id, 42u);
  EXPECT_EQ(c.node("a").reads[0].index, 2u);
  // A follower refuses with a hint.
  auto refused = c.raft("b").read_index(c.now(), 43);
  ASSERT_FALSE(refused.has_value());
  EXPECT_EQ(refused.error().error, RaftError::kNotLeader);
  EXPECT_EQ(refused.error().leader_hint, "a");
}

TEST(RaftReadIndex, ReadsBatchIntoOneHeartbeatRound) {
  Cluster c(kThree);
  c.elect("a");
  c.settle(0);
  for (uint64_t id = 1; id <= 10; ++id) ASSERT_TRUE(c.raft("a").read_index(c.now(), id).has_value());
  Ready rd = c.raft("a").take_ready();
  int heartbeats = 0;
  for (const auto& m : rd.messages) heartbeats += m.message.type() == Msg::HEARTBEAT;
  EXPECT_EQ(heartbeats, 2);
  for (const auto& m : rd.messages) c.send("a", m);
  c.deliver_all();
  EXPECT_EQ(c.node("a").reads.size(), 10u);
}

TEST(RaftReadIndex, ANewLeaderWaitsForAnEntryOfItsTermToCommit) {
  Cluster c(kThree, [](RaftOptions& o) { o.check_quorum = false; });
  c.elect("a");
  c.settle(0);
  c.crash("a");
  c.restart("a");
  c.raft("a").campaign(c.now());
  c.process("a");
  // Votes only: the new leader's NOOP stays uncommitted.
  c.deliver_if([](const Envelope& e) {
    const auto t = e.message.type();
    return t == Msg::PRE_VOTE || t == Msg::PRE_VOTE_RESP || t == Msg::VOTE || t == Msg::VOTE_RESP;
  });
  ASSERT_EQ(c.raft("a").role(), Role::kLeader);
  ASSERT_EQ(c.raft("a").commit_index(), 1u);
  ASSERT_TRUE(c.raft("a").read_index(c.now(), 7).has_value());
  c.process("a");
  EXPECT_TRUE(c.node("a").reads.empty()) << "the commit index of an earlier term may be stale";
  c.settle(100);
  ASSERT_EQ(c.node("a").reads.size(), 1u);
  EXPECT_EQ(c.node("a").reads[0].request_id, 7u);
  EXPECT_EQ(c.node("a").reads[0].index, 2u);
  EXPECT_EQ(all_violations(c), "");
}

TEST(RaftReadIndex, ADeposedLeaderNeverAnswersUnlessTheFaultSkipsTheQuorum) {
  for (bool fault : {false, true}) {
    Cluster c(kThree, [fault](RaftOptions& o) {
      o.check_quorum = false;  // so a stays leader, unaware, for as long as the test likes
      o.faults.read_without_quorum = fault;
    });
    c.elect("a");
    c.settle(0);
    c.isolate("a");
    // b takes over and commits a write a never sees.
    c.raft("b").campaign(c.now());
    c.process("b");
    c.deliver_all();
    ASSERT_EQ(c.raft("b").role(), Role::kLeader);
    c.propose("b", "new");
    c.settle(0);
    ASSERT_EQ(c.raft("a").role(), Role::kLeader) << "a has not noticed yet";
    const uint64_t read = c.read("a");
    ASSERT_NE(read, 0u);
    c.settle(500);
    if (!fault) {
      EXPECT_TRUE(c.node("a").reads.empty());
      c.heal();
      c.settle(200);  // a learns of the new term and steps down: the read is dropped
      EXPECT_NE(c.raft("a").role(), Role::kLeader);
      EXPECT_TRUE(c.node("a").reads.empty());
      EXPECT_EQ(c.node("a").dropped_reads, std::vector<uint64_t>{read});
      EXPECT_EQ(all_violations(c), "");
    } else {
      ASSERT_EQ(c.node("a").reads.size(), 1u);
      EXPECT_LT(c.node("a").reads[0].index, c.raft("b").commit_index()) << "a stale read";
      EXPECT_NE(all_violations(c).find("stale read"), std::string::npos) << "the checker must catch it";
    }
  }
}

// --- leadership transfer ----------------------------------------------------------

TEST(RaftTransfer, TheLeaderCatchesTheTargetUpThenHandsOver) {
  Cluster c(kThree);
  c.elect("a");
  c.settle(0);
  c.isolate("c");
  for (int i = 0; i < 5; ++i) c.propose("a", "v" + std::to_string(i));
  c.settle(0);
  const uint64_t term = c.raft("a").term();
  c.heal();
  ASSERT_TRUE(c.raft("a").transfer_leadership(c.now(), "c").has_value());
  auto refused = c.raft("a").propose(c.now(), "during");
  ASSERT_FALSE(refused.has_value());
  EXPECT_EQ(refused.error().error, RaftError::kTransferring);
  c.process("a");
  c.settle(140);  // c's lost APPENDs are resent once a heartbeat shows the pipeline stalled
  EXPECT_EQ(c.raft("c").role(), Role::kLeader);
  EXPECT_EQ(c.raft("c").term(), term + 1);
  EXPECT_EQ(c.raft("a").role(), Role::kFollower);
  c.settle(100);
  EXPECT_EQ(c.raft("a").leader(), "c");
  EXPECT_EQ(all_violations(c), "");
}

TEST(RaftTransfer, AnUnreachableTargetAbortsAfterAnElectionTimeout) {
  Cluster c(kThree);
  c.elect("a");
  c.settle(0);
  c.isolate("c");
  ASSERT_TRUE(c.raft("a").transfer_leadership(c.now(), "c").has_value());
  EXPECT_EQ(c.raft("a").transferee(), "c");
  c.settle(200);
  EXPECT_EQ(c.raft("a").transferee(), "");
  EXPECT_EQ(c.raft("a").role(), Role::kLeader);
  EXPECT_TRUE(c.raft("a").propose(c.now(), "after").has_value());
  EXPECT_FALSE(c.raft("a").transfer_leadership(c.now(), "zz").has_value());
}

// --- snapshots -------------------------------------------------------------------

TEST(RaftSnapshot, AFollowerLaggingLessThanTheCatchUpTailGetsEntriesNotTheSnapshot) {
  Cluster c(kThree, [](RaftOptions& o) { o.snapshot_catch_up_entries = 20; });
  c.elect("a");
  c.settle(0);
  c.crash("c");
  for (int i = 0; i < 30; ++i) c.propose("a", "v" + std::to_string(i));
  c.settle(0);
  ASSERT_EQ(c.raft("a").applied(), 31u);
  c.compact("a");
  EXPECT_EQ(c.raft("a").snapshot_index(), 31u);
  EXPECT_EQ(c.raft("a").log().trim_point(), 12u) << "20 entries the snapshot covers stay";
  EXPECT_EQ(c.raft("a").log().term(15), std::optional<uint64_t>(c.raft("a").term()));
  c.propose("a", "after");
  c.restart("c");  // c has the first entry (the leader's no-op) only: it lags by more than the tail
  c.settle(300);
  EXPECT_EQ(c.raft("a").log().first_index(), 12u) << "freed at the next Ready";
  EXPECT_EQ(c.raft("a").stats().snapshots_sent, 1u);
  // b misses fewer entries than the tail holds: it gets them from the log.
  c.crash("b");
  for (int i = 0; i < 10; ++i) c.propose("a", "w" + std::to_string(i));
  c.settle(0);
  const uint64_t applied = c.raft("a").applied();
  c.compact("a");
  c.restart("b");
  c.settle(300);
  EXPECT_EQ(c.raft("a").stats().snapshots_sent, 1u) << "no second snapshot";
  EXPECT_EQ(c.raft("b").stats().snapshots_installed, 0u);
  EXPECT_EQ(c.raft("b").commit_index(), applied);
  EXPECT_EQ(c.node("b").applied, c.node("a").applied);
}

TEST(RaftSnapshot, ALaggingFollowerCatchesUpFromASnapshotAfterCompaction) {
  Cluster c(kThree);
  c.elect("a");
  c.settle(0);
  c.crash("c");
  for (int i = 0; i < 30; ++i) c.propose("a", "v" + std::to_string(i));
  c.settle(0);
  ASSERT_EQ(c.raft("a").applied(), 31u);
  c.compact("a");
  EXPECT_EQ(c.raft("a").snapshot_index(), 31u);
  EXPECT_EQ(c.raft("a").log().trim_point(), 32u);
  EXPECT_FALSE(c.raft("a").compact(5, "x").is_ok()) << "already compacted";
  EXPECT_FALSE(c.raft("a").compact(40, "x").is_ok()) << "beyond applied";
  c.propose("a", "after");
  c.restart("c");
  c.settle(300);
  EXPECT_EQ(c.raft("a").stats().snapshots_sent, 1u);
  EXPECT_EQ(c.raft("c").stats().snapshots_installed, 1u);
  EXPECT_EQ(c.raft("c").commit_index(), 32u);
  EXPECT_EQ(c.node("c").applied, c.node("a").applied);
  EXPECT_EQ(c.node("c").snapshot->index(), 31u) << "the snapshot is durable on c";
  // c restarts from its snapshot and its log after it.
  c.crash("c");
  c.restart("c");
  EXPECT_EQ(c.raft("c").snapshot_index(), 31u);
  c.settle(300);
  EXPECT_EQ(c.node("c").applied, c.node("a").applied);
  EXPECT_EQ(all_violations(c), "");
}

TEST(RaftSnapshot, ALostSnapshotIsSentAgainAfterTheSnapshotTimeout) {
  Cluster c(kThree);
  c.elect("a");
  c.settle(0);
  c.crash("c");
  for (int i = 0; i < 10; ++i) c.propose("a", "v");
  c.settle(0);
  c.compact("a");
  c.restart("c");
  bool dropped = false;
  for (int i = 0; i < 100 && !dropped; ++i) {
    c.tick(10);
    c.deliver_if([&](const Envelope& e) {
      if (e.message.type() != Msg::SNAPSHOT || dropped) return true;
      dropped = true;
      return false;
    });
  }
  ASSERT_TRUE(dropped);
  c.settle(1000);
  EXPECT_EQ(c.raft("c").stats().snapshots_installed, 0u) << "not resent while it may still be installing";
  c.settle(5000);
  // Resent as a resumed transfer (from the offset c acknowledged: none).
  EXPECT_EQ(c.raft("a").stats().snapshots_sent, 1u);
  EXPECT_EQ(c.raft("a").stats().snapshot_resends, 1u);
  EXPECT_EQ(c.raft("a").stats().snapshot_chunks_sent, 2u);
  EXPECT_EQ(c.raft("c").stats().snapshots_installed, 1u);
  EXPECT_EQ(c.node("c").applied, c.node("a").applied);
  EXPECT_EQ(all_violations(c), "");
}

TEST(RaftSnapshot, AStaleSnapshotIsIgnored) {
  Cluster c(kThree);
  c.elect("a");
  for (int i = 0; i < 3; ++i) c.propose("a", "v");
  c.settle(0);
  Msg s;
  s.set_type(Msg::SNAPSHOT);
  s.set_term(c.raft("b").term());
  s.mutable_snapshot()->set_index(2);
  s.mutable_snapshot()->set_term(1);
  for (const auto& v : kThree) s.mutable_snapshot()->mutable_config()->add_voters(v);
  c.raft("b").step(c.now(), "a", s);
  EXPECT_EQ(c.raft("b").stats().ignored.at("snapshot older than commit"), 1u);
  EXPECT_EQ(c.raft("b").snapshot_index(), 0u);
  EXPECT_EQ(c.raft("b").last_index(), 4u);
}

// --- chunked snapshots -------------------------------------------------------------

// A cluster whose leader "a" compacted while "c" was down, so c needs a
// snapshot of about `bytes` bytes; c is back up, nothing delivered yet.
Cluster lagging_follower_cluster(uint64_t bytes, size_t values, const std::function<void(RaftOptions&)>& tweak) {
  Cluster c(kThree, tweak);
  c.elect("a");
  c.settle(0);
  c.crash("c");
  for (size_t i = 0; i < values; ++i) c.propose("a", std::string(bytes / values, static_cast<char>('a' + i % 26)));
  c.settle(0);
  c.compact("a");
  c.restart("c");
  return c;
}

size_t snapshots_in_flight(Cluster& c) {
  size_t n = 0;
  for (const auto& e : c.network()) n += e.message.type() == Msg::SNAPSHOT;
  return n;
}

TEST(RaftSnapshotChunks, AFiveMiBSnapshotReachesALaggingFollowerInOneMiBChunks) {
  Cluster c = lagging_follower_cluster(5u << 20, 6, [](RaftOptions& o) { o.max_snapshot_chunk_bytes = 1 << 20; });
  const std::string& data = c.node("a").snapshot_data;
  ASSERT_GT(data.size(), 5u << 20);
  size_t max_in_flight = 0, biggest_chunk = 0, chunks = 0;
  for (int i = 0; i < 100 && c.raft("c").stats().snapshots_installed == 0; ++i) {
    c.tick(10);
    while (!c.network().empty()) {
      max_in_flight = std::max(max_in_flight, snapshots_in_flight(c));
      Envelope env = std::move(c.network().front());
      c.network().pop_front();
      if (env.message.type() == Msg::SNAPSHOT) {
        ++chunks;
        biggest_chunk = std::max(biggest_chunk, env.message.snapshot_data().size());
        EXPECT_EQ(env.message.snapshot_size(), data.size());
      }
      c.deliver(env);
    }
  }
  const uint64_t expected_chunks = (data.size() + (1u << 20) - 1) >> 20;
  EXPECT_EQ(c.raft("c").stats().snapshots_installed, 1u);
  EXPECT_EQ(c.raft("a").stats().snapshots_sent, 1u);
  EXPECT_EQ(c.raft("a").stats().snapshot_chunks_sent, expected_chunks);
  EXPECT_EQ(chunks, expected_chunks);
  EXPECT_EQ(biggest_chunk, 1u << 20);
  EXPECT_LE(max_in_flight, 2u) << "at most two chunks unacknowledged";
  EXPECT_EQ(c.node("c").snapshot_data, data) << "durable on c, byte for byte";
  EXPECT_EQ(c.node("c").applied, c.node("a").applied);
  EXPECT_EQ(c.raft("c").stats().ignored_total(), 0u);
  c.propose("a", "after");
  c.settle(300);
  EXPECT_EQ(c.raft("a").progress("c")->state(), Progress::State::kReplicate);
  EXPECT_EQ(c.node("c").applied, c.node("a").applied);
  EXPECT_EQ(all_violations(c), "");
}

TEST(RaftSnapshotChunks, ALostChunkIsResentFromTheOffsetTheFollowerHolds) {
  Cluster c = lagging_follower_cluster(2000, 20, [](RaftOptions& o) { o.max_snapshot_chunk_bytes = 100; });
  const uint64_t expected_chunks = (c.node("a").snapshot_data.size() + 99) / 100;
  ASSERT_GT(expected_chunks, 10u);
  // Lose the 2nd and the 7th chunk: the next one arrives out of order and
  // c asks for the missing one at once (no timeout).
  int seen = 0;
  for (int i = 0; i < 50 && c.raft("c").stats().snapshots_installed == 0; ++i) {
    c.tick(10);
    c.deliver_if([&](const Envelope& e) {
      if (e.message.type() != Msg::SNAPSHOT) return true;
      ++seen;
      return seen != 2 && seen != 7;
    });
  }
  EXPECT_EQ(c.raft("c").stats().snapshots_installed, 1u);
  EXPECT_LT(c.now(), 500) << "recovered without waiting for the snapshot timeout";
  EXPECT_EQ(c.raft("a").stats().snapshot_resends, 0u);
  EXPECT_GT(c.raft("a").stats().snapshot_chunks_sent, expected_chunks);
  EXPECT_GE(c.raft("c").stats().ignored.at("snapshot chunk out of order"), 2u);
  EXPECT_EQ(c.node("c").snapshot_data, c.node("a").snapshot_data);
  c.settle(300);
  EXPECT_EQ(c.node("c").applied, c.node("a").applied);
  EXPECT_EQ(all_violations(c), "");
}

TEST(RaftSnapshotChunks, ALostWindowIsResentAfterTheSnapshotTimeout) {
  Cluster c = lagging_follower_cluster(2000, 20, [](RaftOptions& o) { o.max_snapshot_chunk_bytes = 100; });
  // Deliver three chunks, then lose everything in flight towards c once.
  int seen = 0;
  bool lost = false;
  for (int i = 0; i < 50 && !lost; ++i) {
    c.tick(10);
    c.deliver_if([&](const Envelope& e) {
      if (e.message.type() != Msg::SNAPSHOT) return true;
      if (++seen <= 3) return true;
      lost = true;
      return false;
    });
  }
  ASSERT_TRUE(lost);
  c.settle(1000);
  EXPECT_EQ(c.raft("c").stats().snapshots_installed, 0u) << "stalled until the timeout";
  c.settle(5000);
  EXPECT_EQ(c.raft("a").stats().snapshot_resends, 1u);
  EXPECT_EQ(c.raft("a").stats().snapshots_sent, 1u) << "resumed, not restarted";
  EXPECT_EQ(c.raft("c").stats().snapshots_installed, 1u);
  EXPECT_EQ(c.node("c").snapshot_data, c.node("a").snapshot_data);
  EXPECT_EQ(c.node("c").applied, c.node("a").applied);
  EXPECT_EQ(all_violations(c), "");
}

TEST(RaftSnapshotChunks, AStaleAnswerRewindingTheLeaderIsOvertakenByTheFollowersOffset) {
  Cluster c = lagging_follower_cluster(2000, 20, [](RaftOptions& o) { o.max_snapshot_chunk_bytes = 100; });
  int delivered = 0;
  for (int i = 0; i < 50 && delivered < 8; ++i) {
    c.tick(10);
    c.deliver_if([&](const Envelope& e) { return e.message.type() != Msg::SNAPSHOT || ++delivered <= 8; });
  }
  ASSERT_EQ(c.raft("c").stats().snapshots_installed, 0u);
  // A delayed answer from long ago sends the leader back to offset 100,
  // while c holds 800 bytes (more than the leader's window from there).
  Msg stale;
  stale.set_type(Msg::SNAPSHOT_RESP);
  stale.set_term(c.raft("c").term());
  stale.mutable_snapshot()->set_index(c.raft("a").snapshot_index());
  stale.mutable_snapshot()->set_term(c.raft("a").snapshot_meta().term());
  stale.set_snapshot_offset(100);
  stale.set_reject(true);
  c.network().clear();
  c.deliver(Envelope{"c", "a", stale});
  c.deliver_all();
  EXPECT_EQ(c.raft("c").stats().snapshots_installed, 1u) << "c's answer moves the leader forward again";
  EXPECT_EQ(c.raft("a").stats().snapshot_resends, 0u);
  EXPECT_EQ(c.raft("a").stats().ignored.count("snapshot answer beyond what was sent"), 0u);
  EXPECT_EQ(c.node("c").snapshot_data, c.node("a").snapshot_data);
  c.settle(300);
  EXPECT_EQ(c.node("c").applied, c.node("a").applied);
  EXPECT_EQ(all_violations(c), "");
}

TEST(RaftSnapshotChunks, AFollowerCrashingMidTransferGetsTheSnapshotFromTheStart) {
  Cluster c = lagging_follower_cluster(2000, 20, [](RaftOptions& o) { o.max_snapshot_chunk_bytes = 100; });
  const uint64_t expected_chunks = (c.node("a").snapshot_data.size() + 99) / 100;
  int delivered = 0;
  for (int i = 0; i < 50 && delivered < 5; ++i) {
    c.tick(10);
    c.deliver_if([&](const Envelope& e) { return e.message.type() != Msg::SNAPSHOT || ++delivered <= 5; });
  }
  ASSERT_EQ(c.raft("c").stats().snapshots_installed, 0u);
  c.crash("c");  // the partial snapshot was only in memory
  c.restart("c");
  uint64_t restarted_from_zero = 0;
  for (int i = 0; i < 700 && c.raft("c").stats().snapshots_installed == 0; ++i) {
    c.tick(10);
    c.deliver_if([&](const Envelope& e) {
      restarted_from_zero += e.message.type() == Msg::SNAPSHOT && e.message.snapshot_offset() == 0;
      return true;
    });
  }
  EXPECT_EQ(c.raft("c").stats().snapshots_installed, 1u);
  EXPECT_EQ(restarted_from_zero, 1u);
  EXPECT_GE(c.raft("a").stats().snapshot_chunks_sent, expected_chunks + 5);
  EXPECT_EQ(c.node("c").snapshot_data, c.node("a").snapshot_data);
  c.settle(300);
  EXPECT_EQ(c.node("c").applied, c.node("a").applied);
  EXPECT_EQ(all_violations(c), "");
}

TEST(RaftSnapshotChunks, MalformedChunksAreCountedAndIgnored) {
  Cluster c(kThree, [](RaftOptions& o) { o.max_snapshot_bytes = 1000; });
  c.elect("a");
  for (int i = 0; i < 3; ++i) c.propose("a", "v");
  c.settle(0);
  const uint64_t t = c.raft("b").term(), index = c.raft("b").last_index() + 10;
  auto chunk = [&](uint64_t offset, uint64_t size, const std::string& data, bool done, uint64_t at = 0,
                   uint64_t term = 0) {
    Msg m;
    m.set_type(Msg::SNAPSHOT);
    m.set_term(term ? term : t);
    m.mutable_snapshot()->set_index(at ? at : index);
    m.mutable_snapshot()->set_term(t);
    for (const auto& v : kThree) m.mutable_snapshot()->mutable_config()->add_voters(v);
    m.set_snapshot_offset(offset);
    m.set_snapshot_size(size);
    m.set_snapshot_data(data);
    m.set_snapshot_done(done);
    return m;
  };
  // Steps b with a message and returns b's answer (UNKNOWN: none).
  auto to_b = [&](const NodeId& from, const Msg& m) {
    c.network().clear();
    c.raft("b").step(c.now(), from, m);
    c.process("b");
    Msg answer;
    for (const auto& e : c.network())
      if (e.from == "b" && e.to == from) answer = e.message;
    return answer;
  };
  auto ignored = [&](const char* reason) {
    const auto& m = c.raft("b").stats().ignored;
    return m.count(reason) ? m.at(reason) : 0u;
  };
  EXPECT_EQ(to_b("a", chunk(10, 5, "x", false)).type(), Msg::UNKNOWN);
  EXPECT_EQ(ignored("snapshot chunk beyond its size"), 1u);
  EXPECT_EQ(to_b("a", chunk(4, 5, "xy", true)).type(), Msg::UNKNOWN);
  EXPECT_EQ(ignored("snapshot chunk beyond its size"), 2u);
  EXPECT_EQ(to_b("a", chunk(0, 5, "abc", true)).type(), Msg::UNKNOWN);
  EXPECT_EQ(ignored("snapshot chunk done flag disagrees"), 1u);
  EXPECT_EQ(to_b("a", chunk(0, 1001, "abc", false)).type(), Msg::UNKNOWN);
  EXPECT_EQ(ignored("snapshot too large"), 1u);
  // A good first chunk is acknowledged with the bytes held.
  Msg ack = to_b("a", chunk(0, 10, "abcde", false));
  EXPECT_EQ(ack.type(), Msg::SNAPSHOT_RESP);
  EXPECT_EQ(ack.snapshot_offset(), 5u);
  EXPECT_FALSE(ack.reject());
  EXPECT_EQ(ack.snapshot().index(), index);
  // The same snapshot with another total size.
  EXPECT_EQ(to_b("a", chunk(5, 12, "fghij", false)).type(), Msg::UNKNOWN);
  EXPECT_EQ(ignored("snapshot size disagrees"), 1u);
  // A chunk of an older snapshot (still newer than b's commit).
  EXPECT_EQ(to_b("a", chunk(0, 10, "abcde", false, index - 1)).type(), Msg::UNKNOWN);
  EXPECT_EQ(ignored("chunk of an older snapshot"), 1u);
  // A gap or a duplicate: answered with the offset held.
  for (const Msg& m : {chunk(8, 10, "ij", true), chunk(0, 10, "abcde", false)}) {
    Msg a = to_b("a", m);
    EXPECT_EQ(a.type(), Msg::SNAPSHOT_RESP);
    EXPECT_TRUE(a.reject());
    EXPECT_EQ(a.snapshot_offset(), 5u);
  }
  EXPECT_EQ(ignored("snapshot chunk out of order"), 2u);
  // A chunk of a newer snapshot starts over (the 5 bytes held are dropped).
  Msg newer = to_b("a", chunk(5, 10, "fghij", true, index + 1));
  EXPECT_EQ(newer.type(), Msg::SNAPSHOT_RESP);
  EXPECT_TRUE(newer.reject());
  EXPECT_EQ(newer.snapshot_offset(), 0u);
  EXPECT_EQ(newer.snapshot().index(), index + 1);
  EXPECT_EQ(c.raft("b").snapshot_index(), 0u);
  EXPECT_EQ(c.raft("b").stats().snapshots_installed, 0u);
  // A new leader (c, in the next term): the partial snapshot is gone.
  Msg hb;
  hb.set_type(Msg::HEARTBEAT);
  hb.set_term(t + 1);
  (void)to_b("c", hb);
  ASSERT_EQ(c.raft("b").leader(), "c");
  Msg restart = to_b("c", chunk(5, 10, "fghij", true, 0, t + 1));
  EXPECT_EQ(restart.type(), Msg::SNAPSHOT_RESP);
  EXPECT_TRUE(restart.reject());
  EXPECT_EQ(restart.snapshot_offset(), 0u);
  // The leader's side: answers about no snapshot it sends.
  Msg resp;
  resp.set_type(Msg::SNAPSHOT_RESP);
  resp.set_term(c.raft("a").term());
  resp.mutable_snapshot()->set_index(index);
  resp.mutable_snapshot()->set_term(t);
  resp.set_snapshot_offset(5);
  c.raft("a").step(c.now(), "c", resp);
  EXPECT_EQ(c.raft("a").stats().ignored.at("answer for another snapshot"), 1u);
  resp.mutable_snapshot()->set_index(0);
  c.raft("a").step(c.now(), "c", resp);
  EXPECT_EQ(c.raft("a").stats().ignored.at("empty snapshot"), 1u);
}

// --- untrusted input ---------------------------------------------------------------

TEST(RaftUntrustedInput, MalformedOrForgedMessagesAreCountedAndIgnored) {
  struct Case {
    const char* reason;  // the stats().ignored key the message must land in
    NodeId to;
    NodeId from;
    std::function<Msg(uint64_t term, uint64_t last)> make;
  };
  auto msg = [](Msg::Type type, uint64_t term) {
    Msg m;
    m.set_type(type);
    m.set_term(term);
    return m;
  };
  auto append = [&](uint64_t term, uint64_t prev, uint64_t prev_term) {
    Msg m = msg(Msg::APPEND, term);
    m.set_index(prev);
    m.set_log_term(prev_term);
    return m;
  };
  auto add = [](Msg& m, uint64_t index, uint64_t term) {
    auto* e = m.add_entries();
    e->set_index(index);
    e->set_term(term);
    e->set_data("forged");
  };
  auto snapshot = [&](uint64_t term, uint64_t index, uint64_t snap_term, std::vector<NodeId> members) {
    Msg m = msg(Msg::SNAPSHOT, term);
    m.mutable_snapshot()->set_index(index);
    m.mutable_snapshot()->set_term(snap_term);
    for (const auto& v : members) m.mutable_snapshot()->mutable_config()->add_voters(v);
    m.set_snapshot_data("forged");
    return m;
  };
  constexpr uint64_t kMax = UINT64_MAX;
  const std::vector<Case> cases = {
      {"unknown sender", "b", "zz", [&](uint64_t t, uint64_t) { return msg(Msg::HEARTBEAT, t); }},
      {"unknown sender", "b", "b", [&](uint64_t t, uint64_t) { return msg(Msg::HEARTBEAT, t); }},
      {"unknown sender", "b", "", [&](uint64_t t, uint64_t) { return msg(Msg::VOTE, t + 1); }},
      {"unknown message type", "b", "a", [&](uint64_t t, uint64_t) { return msg(static_cast<Msg::Type>(99), t); }},
      {"unknown message type", "b", "a", [&](uint64_t t, uint64_t) { return msg(Msg::UNKNOWN, t); }},
      {"zero term", "b", "a", [&](uint64_t, uint64_t l) { return append(0, l, 0); }},
      {"implausible term", "b", "c", [&](uint64_t, uint64_t l) {
         Msg m = msg(Msg::VOTE, kMax);
         m.set_index(l);
         m.set_log_term(1);
         return m;
       }},
      {"implausible index", "b", "a", [&](uint64_t t, uint64_t) { return append(t, kMax, t); }},
      {"implausible index", "b", "a",
       [&](uint64_t t, uint64_t l) {
         Msg m = append(t, l, t);
         m.set_commit(kMax);
         return m;
       }},
      {"implausible index", "b", "a",
       [&](uint64_t t, uint64_t) {
         Msg m = append(t, kMax - 1, t);
         add(m, kMax, t);
         return m;
       }},
      {"implausible index", "a", "b",
       [&](uint64_t t, uint64_t) {
         Msg m = msg(Msg::APPEND_RESP, t);
         m.set_index(kMax - 1);
         return m;
       }},
      {"append answer beyond our log", "a", "b",
       [&](uint64_t t, uint64_t l) {
         Msg m = msg(Msg::APPEND_RESP, t);
         m.set_index(l + 5);
         return m;
       }},
      {"entries not contiguous", "b", "a",
       [&](uint64_t t, uint64_t l) {
         Msg m = append(t, l, t);
         add(m, l + 1, t);
         add(m, l + 3, t);
         return m;
       }},
      {"entries not contiguous", "b", "a",
       [&](uint64_t t, uint64_t l) {
         Msg m = append(t, l, t);
         add(m, l, t);  // overlaps its own previous entry
         return m;
       }},
      {"entry terms go backwards", "b", "a",
       [&](uint64_t t, uint64_t l) {
         Msg m = append(t + 5, l, t);
         add(m, l + 1, t + 3);
         add(m, l + 2, t + 2);
         return m;
       }},
      {"entry terms go backwards", "b", "a",
       [&](uint64_t t, uint64_t l) {
         Msg m = append(t + 5, l, t + 1);
         add(m, l + 1, t);  // below the previous entry's term
         return m;
       }},
      {"zero entry term", "b", "a",
       [&](uint64_t t, uint64_t) {
         Msg m = append(t, 0, 0);
         add(m, 1, 0);
         return m;
       }},
      {"entry term beyond message term", "b", "a",
       [&](uint64_t t, uint64_t l) {
         Msg m = append(t, l, t);
         add(m, l + 1, t + 1);
         return m;
       }},
      {"unknown entry type", "b", "a",
       [&](uint64_t t, uint64_t l) {
         Msg m = append(t, l, t);
         add(m, l + 1, t);
         m.mutable_entries(0)->set_type(static_cast<pb::RaftEntry::Type>(17));
         return m;
       }},
      {"config entry members differ", "b", "a",
       [&](uint64_t t, uint64_t l) {
         Msg m = append(t, l, t);
         add(m, l + 1, t);
         pb::RaftConfigState config;
         config.add_voters("a");
         config.add_voters("b");
         m.mutable_entries(0)->set_type(pb::RaftEntry::CONFIG);
         m.mutable_entries(0)->set_data(config.SerializeAsString());
         return m;
       }},
      {"log term beyond message term", "b", "c",
       [&](uint64_t t, uint64_t l) {
         Msg m = msg(Msg::VOTE, t);
         m.set_index(l);
         m.set_log_term(t + 3);
         return m;
       }},
      {"entries on a message that carries none", "b", "a",
       [&](uint64_t t, uint64_t l) {
         Msg m = msg(Msg::HEARTBEAT, t);
         add(m, l + 1, t);
         return m;
       }},
      {"impossible last log position", "b", "c",
       [&](uint64_t t, uint64_t) {
         Msg m = msg(Msg::PRE_VOTE, t + 1);
         m.set_index(5);
         return m;
       }},
      {"impossible previous log position", "b", "a", [&](uint64_t t, uint64_t) { return append(t, 0, 1); }},
      {"reject hint beyond rejected index", "a", "b",
       [&](uint64_t t, uint64_t) {
         Msg m = msg(Msg::APPEND_RESP, t);
         m.set_reject(true);
         m.set_index(2);
         m.set_reject_hint(3);
         return m;
       }},
      {"heartbeat commit beyond our log", "b", "a",
       [&](uint64_t t, uint64_t l) {
         Msg m = msg(Msg::HEARTBEAT, t);
         m.set_commit(l + 10);
         return m;
       }},
      {"snapshot older than commit", "b", "a", [&](uint64_t t, uint64_t) { return snapshot(t, 2, 1, kThree); }},
      {"empty snapshot", "b", "a", [&](uint64_t t, uint64_t) { return snapshot(t, 0, 1, kThree); }},
      {"snapshot members differ", "b", "a", [&](uint64_t t, uint64_t l) { return snapshot(t, l + 9, t, {"a", "b"}); }},
      {"snapshot term beyond message term", "b", "a",
       [&](uint64_t t, uint64_t l) { return snapshot(t, l + 9, t + 1, kThree); }},
      {"second leader in term", "b", "c", [&](uint64_t t, uint64_t l) { return append(t, l, t); }},
      {"second leader in term", "a", "b", [&](uint64_t t, uint64_t) { return msg(Msg::HEARTBEAT, t); }},
      {"timeout-now not from the leader", "b", "c", [&](uint64_t t, uint64_t) { return msg(Msg::TIMEOUT_NOW, t); }},
      {"not for this role", "b", "c", [&](uint64_t t, uint64_t) { return msg(Msg::VOTE_RESP, t); }},
  };
  for (const auto& tc : cases) {
    Cluster c(kThree);
    c.elect("a");
    for (int i = 0; i < 3; ++i) c.propose("a", "v" + std::to_string(i));
    c.settle(0);
    ASSERT_EQ(c.leader(), "a");
    const uint64_t term = c.raft("a").term(), last = c.raft("a").last_index(), commit = c.raft("a").commit_index();
    Raft& target = c.raft(tc.to);
    const uint64_t ignored_before = target.stats().ignored_total();
    const uint64_t reason_before = target.stats().ignored.count(tc.reason) ? target.stats().ignored.at(tc.reason) : 0;
    const Msg m = tc.make(term, last);
    target.step(c.now(), tc.from, m);
    c.process(tc.to);
    EXPECT_EQ(target.stats().ignored.count(tc.reason) ? target.stats().ignored.at(tc.reason) : 0u, reason_before + 1)
        << tc.reason << ": " << m.ShortDebugString();
    EXPECT_EQ(target.stats().ignored_total(), ignored_before + 1) << tc.reason;
    EXPECT_EQ(target.term(), term) << tc.reason;
    EXPECT_EQ(target.last_index(), last) << tc.reason;
    EXPECT_EQ(target.commit_index(), commit) << tc.reason;
    EXPECT_EQ(c.raft("a").role(), Role::kLeader) << tc.reason;
    // The cluster carries on.
    c.deliver_all();
    c.propose("a", "after");
    c.settle(100);
    EXPECT_EQ(c.raft("b").commit_index(), last + 1) << tc.reason;
    EXPECT_EQ(all_violations(c), "") << tc.reason;
  }
}

TEST(RaftUntrustedInput, NobodyElseLeadsATermThisNodeLedAfterItStepsDown) {
  Cluster c(kThree);
  c.elect("a");
  c.settle(0);
  c.isolate("a");
  c.settle(300);  // check-quorum: a steps down, still in its term
  ASSERT_NE(c.raft("a").role(), Role::kLeader);
  const uint64_t term = c.raft("a").term();
  Msg m;
  m.set_type(Msg::HEARTBEAT);
  m.set_term(term);
  c.raft("a").step(c.now(), "b", m);
  EXPECT_EQ(c.raft("a").stats().ignored.at("second leader in term"), 1u);
  EXPECT_EQ(c.raft("a").leader(), "");
}

TEST(RaftUntrustedInput, ACommitBeyondTheSentEntriesIsClampedToThem) {
  Cluster c(kThree);
  c.elect("a");
  c.settle(0);
  const uint64_t term = c.raft("a").term();
  Msg m;
  m.set_type(Msg::APPEND);
  m.set_term(term);
  m.set_index(1);
  m.set_log_term(term);
  m.set_commit(1000);
  auto* e = m.add_entries();
  e->set_index(2);
  e->set_term(term);
  c.raft("b").step(c.now(), "a", m);
  EXPECT_EQ(c.raft("b").last_index(), 2u);
  EXPECT_EQ(c.raft("b").commit_index(), 2u);
}

TEST(RaftUntrustedInput, RandomGarbageNeverAborts) {
  Cluster c(kThree);
  c.elect("a");
  for (int i = 0; i < 5; ++i) c.propose("a", "v");
  c.settle(0);
  Rng rng(99);
  const std::vector<NodeId> from = {"a", "b", "c", "x"};
  auto small = [&]() -> uint64_t {
    switch (rng.below(4)) {
      case 0: return rng.below(8);
      case 1: return UINT64_MAX - rng.below(4);
      case 2: return (uint64_t{1} << 62) + rng.below(3) - 1;
      default: return rng.next();
    }
  };
  for (int i = 0; i < 20000; ++i) {
    Msg m;
    m.set_type(static_cast<Msg::Type>(rng.below(12)));
    m.set_term(rng.below(3) == 0 ? small() : rng.below(6));
    m.set_log_term(rng.below(6));
    m.set_index(rng.below(3) == 0 ? small() : rng.below(10));
    m.set_commit(rng.below(3) == 0 ? small() : rng.below(10));
    m.set_reject(rng.below(2));
    m.set_reject_hint(rng.below(10));
    const uint64_t n = rng.below(4);
    for (uint64_t k = 0; k < n; ++k) {
      auto* e = m.add_entries();
      e->set_index(m.index() + 1 + k + (rng.below(8) == 0 ? 1 : 0));
      e->set_term(rng.below(6));
      e->set_type(static_cast<pb::RaftEntry::Type>(rng.below(4)));
    }
    if (rng.below(4) == 0) {
      m.mutable_snapshot()->set_index(rng.below(12));
      m.mutable_snapshot()->set_term(rng.below(6));
      for (const auto& v : kThree) m.mutable_snapshot()->mutable_config()->add_voters(v);
    }
    if (rng.below(4) == 0) m.set_context(std::string(rng.below(10), 'x'));
    const NodeId& to = kThree[rng.below(3)];
    c.raft(to).step(c.now(), from[rng.below(4)], m);
    c.process(to);
    if (rng.below(50) == 0) c.advance(10);
    c.network().clear();  // the replies to garbage go nowhere; only the cores matter
  }
  // Garbage from real voters can legitimately move terms and even elect;
  // what must hold is that no core aborted and each node's log is internally sound.
  for (const auto& id : kThree) {
    const RaftLog& l = c.raft(id).log();
    for (uint64_t i = l.first_index(); i <= l.last_index(); ++i) EXPECT_EQ(l.at(i).index(), i);
    EXPECT_LE(c.raft(id).commit_index(), c.raft(id).last_index());
  }
}

// --- randomized ------------------------------------------------------------------

// Five nodes under message drops, reordering, duplication, partitions,
// crashes that lose unsynced writes, compaction and leadership transfers;
// the checker runs after every step. At the end the faults heal and the
// cluster must commit again (liveness).
struct RandomizedSummary {
  uint64_t leaders = 0, max_commit = 0, snapshots_installed = 0, crashes = 0, reads = 0;
  uint64_t snapshots_sent = 0, snapshot_chunks_sent = 0;
  void add(const Raft& r) {
    leaders += r.stats().became_leader;
    snapshots_installed += r.stats().snapshots_installed;
    snapshots_sent += r.stats().snapshots_sent;
    snapshot_chunks_sent += r.stats().snapshot_chunks_sent;
  }
};

std::string run_randomized(uint64_t seed, int steps, RandomizedSummary& sum,
                           const std::function<void(RaftOptions&)>& tweak = {}) {
  Cluster c(kFive, tweak, {}, seed);
  for (const auto& id : kFive) c.node(id).auto_sync = false;
  Rng rng(seed * 7 + 3);
  auto any = [&] { return kFive[rng.below(kFive.size())]; };
  int proposals = 0;
  for (int step = 0; step < steps; ++step) {
    const uint64_t r = rng.below(1000);
    auto& net = c.network();
    if (r < 450) {
      if (net.empty()) continue;
      const size_t at = rng.below(std::min<size_t>(net.size(), 4));  // reorder among the oldest few
      Envelope env = net[at];
      net.erase(net.begin() + static_cast<std::ptrdiff_t>(at));
      const uint64_t fate = rng.below(100);
      if (fate < 5) continue;                // lost
      if (fate < 8) net.push_back(env);      // duplicated: delivered again later
      c.deliver(env);
    } else if (r < 600) {
      c.tick(static_cast<MonoTime>(1 + rng.below(20)));
    } else if (r < 750) {
      const auto id = any();
      if (c.up(id)) c.sync(id);
    } else if (r < 850) {
      for (const auto& id : kFive) {
        if (c.up(id) && c.raft(id).role() == Role::kLeader) {
          (void)c.raft(id).propose(c.now(), "p" + std::to_string(proposals++));
          c.process(id);
        }
      }
    } else if (r < 870) {
      for (const auto& id : kFive)
        if (c.up(id) && c.raft(id).role() == Role::kLeader) {
          c.read(id);
        }
    } else if (r < 880) {
      int down = 0;
      for (const auto& id : kFive) down += !c.up(id);
      const auto id = any();
      if (down < 2 && c.up(id)) {
        sum.add(c.raft(id));
        sum.reads += c.node(id).reads.size();
        ++sum.crashes;
        if (rng.below(2) == 0)
          c.crash(id);
        else
          c.crash_torn(id);
      }
    } else if (r < 910) {
      const auto id = any();
      if (!c.up(id)) c.restart(id);
    } else if (r < 920) {
      std::vector<std::vector<NodeId>> groups(2);
      for (const auto& id : kFive) groups[rng.below(2)].push_back(id);
      c.partition(groups);
    } else if (r < 945) {
      c.heal();
    } else if (r < 960) {
      const auto id = any();
      if (c.up(id) && c.raft(id).applied() > c.raft(id).snapshot_index() + 5) c.compact(id);
    } else if (r < 965) {
      for (const auto& id : kFive)
        if (c.up(id) && c.raft(id).role() == Role::kLeader) {
          (void)c.raft(id).transfer_leadership(c.now(), any());
          c.process(id);
        }
    } else {
      // Nothing: other nodes' timers move on the next tick.
    }
    if (!c.violations().empty()) return "seed " + std::to_string(seed) + " step " + std::to_string(step) + ": " + all_violations(c);
  }
  // Heal everything and require progress.
  c.heal();
  for (const auto& id : kFive) {
    c.restart(id);
    c.node(id).auto_sync = true;
    c.sync(id);
  }
  // Without pre-vote a node with a higher term may still depose the first
  // leader after healing; what must hold is that the cluster gets there.
  auto applied_everywhere = [&](const std::string& value) {
    for (const auto& id : kFive) {
      bool found = false;
      for (const auto& [i, v] : c.node(id).applied) found |= v.size() >= value.size() && v.ends_with(value);
      if (!found) return false;
    }
    return true;
  };
  bool done = false;
  for (int attempt = 0; attempt < 20 && !done; ++attempt) {
    std::optional<NodeId> leader;
    for (int i = 0; i < 500 && !leader; ++i) {
      c.advance(10);
      leader = c.leader();
    }
    if (!leader) return "seed " + std::to_string(seed) + ": no leader after healing";
    if (c.raft(*leader).propose(c.now(), "final").has_value()) c.process(*leader);
    c.settle(500);
    done = applied_everywhere("/final");
  }
  for (const auto& id : kFive) {
    sum.add(c.raft(id));
    sum.reads += c.node(id).reads.size();
    sum.max_commit = std::max(sum.max_commit, c.raft(id).commit_index());
  }
  if (!done) return "seed " + std::to_string(seed) + ": the cluster did not commit after healing";
  return all_violations(c);
}

TEST(RaftRandomized, FiveNodesStaySafeUnderDropsReordersDuplicatesPartitionsAndCrashes) {
  RandomizedSummary sum;
  for (uint64_t seed = 1; seed <= 12; ++seed) EXPECT_EQ(run_randomized(seed, 5000, sum), "") << "seed " << seed;
  // Other code paths: no pre-vote nor check-quorum; tiny APPENDs and a
  // short pipeline (probe/replicate transitions all the time).
  for (uint64_t seed = 101; seed <= 106; ++seed)
    EXPECT_EQ(run_randomized(seed, 5000, sum, [](RaftOptions& o) {
                o.pre_vote = false;
                o.check_quorum = false;
              }),
              "")
        << "seed " << seed;
  for (uint64_t seed = 201; seed <= 206; ++seed)
    EXPECT_EQ(run_randomized(seed, 5000, sum, [](RaftOptions& o) {
                o.max_append_bytes = 8;
                o.max_inflight_appends = 2;
              }),
              "")
        << "seed " << seed;
  // Snapshots in chunks of 64 bytes (a few to dozens per snapshot), under
  // the same faults; a short snapshot timeout so lost chunks are resent.
  RandomizedSummary chunked;
  for (uint64_t seed = 301; seed <= 306; ++seed)
    EXPECT_EQ(run_randomized(seed, 5000, chunked, [](RaftOptions& o) {
                o.max_snapshot_chunk_bytes = 64;
                o.snapshot_timeout_ms = 200;
              }),
              "")
        << "seed " << seed;
  EXPECT_GT(chunked.snapshots_installed, 0u);
  EXPECT_GT(chunked.snapshot_chunks_sent, 3 * chunked.snapshots_sent) << "transfers of several chunks";
  std::printf("randomized, 64-byte chunks: %llu snapshots sent in %llu chunks, %llu installed\n",
              static_cast<unsigned long long>(chunked.snapshots_sent),
              static_cast<unsigned long long>(chunked.snapshot_chunks_sent),
              static_cast<unsigned long long>(chunked.snapshots_installed));
  // The run must have exercised what it claims to.
  EXPECT_GT(sum.leaders, 20u);
  EXPECT_GT(sum.max_commit, 50u);
  EXPECT_GT(sum.crashes, 10u);
  EXPECT_GT(sum.snapshots_installed, 0u);
  EXPECT_GT(sum.reads, 0u);
  std::printf("randomized: %llu leaders, max commit %llu, %llu crashes, %llu snapshots installed, %llu reads\n",
              static_cast<unsigned long long>(sum.leaders), static_cast<unsigned long long>(sum.max_commit),
              static_cast<unsigned long long>(sum.crashes), static_cast<unsigned long long>(sum.snapshots_installed),
              static_cast<unsigned long long>(sum.reads));
}

TEST(RaftRandomized, TheRandomizedCheckerCatchesStaleReads) {
  // The deterministic tests show each fault switch caught; here the random
  // runs must catch at least the stale-read one on their own.
  RandomizedSummary sum;
  int caught = 0;
  for (uint64_t seed = 1; seed <= 20; ++seed)
    caught += run_randomized(seed, 5000, sum, [](RaftOptions& o) { o.faults.read_without_quorum = true; })
                  .find("stale read") != std::string::npos;
  EXPECT_GT(caught, 0);
}

}  // namespace
}  // namespace stig::replication::raft
