// RaftLog: the in-memory view of one node's Raft log, with the split between
// what the runtime has made durable and what it has not yet.
//
// Layout: a snapshot point (snapshot_index, snapshot_term; 0/0 without a
// snapshot); entries first_index .. last_index held in memory, where
// first_index <= snapshot_index + 1: after a compaction a tail of entries the
// snapshot covers is kept (catch_up entries), so a follower a little behind
// gets entries, not the whole snapshot. Compacted entries are freed a batch
// at a time (trim_some), so dropping a long log never stalls one step. Cursors, all monotonic except where a conflict truncates the log:
//   applied <= apply_handed <= committed <= last_index
//   stable <= last_index               (durable, told by stable_to)
//   persist_handed <= last_index       (handed to the runtime in a Ready)
// Guarantees: entries are contiguous and terms never decrease along the log;
// nothing at or below `committed` is ever truncated (STIG_INVARIANT: only a
// bug can try, because Raft::step refuses such input first).
#pragma once

#include <cstdint>
#include <deque>
#include <optional>
#include <vector>

#include "raft.pb.h"

namespace stig::replication::raft {

namespace pb = stigmergy::v1;

class RaftLog {
 public:
  RaftLog() = default;
  // A log recovered from disk: everything given is durable. The caller has
  // validated contiguity and terms.
  RaftLog(uint64_t snapshot_index, uint64_t snapshot_term, std::vector<pb::RaftEntry> entries, uint64_t committed,
          uint64_t applied);

  uint64_t snapshot_index() const { return snapshot_index_; }
  uint64_t snapshot_term() const { return snapshot_term_; }
  // The first entry held (entries below it are only in the snapshot).
  uint64_t first_index() const { return offset_ + 1; }
  uint64_t last_index() const { return offset_ + entries_.size(); }
  uint64_t last_term() const;
  // Term of the entry at i; the snapshot point has the snapshot's term; index 0
  // has term 0. nullopt when i was dropped or is beyond the log.
  std::optional<uint64_t> term(uint64_t i) const;
  bool matches(uint64_t i, uint64_t t) const {
    const auto have = term(i);
    return have && *have == t;
  }
  // Thesis §5.4.1: is (last_term, last_index) at least as up to date as ours?
  bool is_up_to_date(uint64_t last_index, uint64_t last_term) const;
  const pb::RaftEntry& at(uint64_t i) const;  // first_index() <= i <= last_index()

  // Entries [lo, hi) of at most max_bytes (serialized), but always at least one
  // when lo < hi. lo >= first_index().
  std::vector<pb::RaftEntry> slice(uint64_t lo, uint64_t hi, uint64_t max_bytes) const;

  // The first index among `entries` whose term differs from ours or that we
  // do not have; 0 when we hold all of them.
  uint64_t find_conflict(const std::vector<pb::RaftEntry>& entries) const;
  // For fast backtracking: the largest index <= index whose term is <= term
  // (or the snapshot point), with that term.
  std::pair<uint64_t, uint64_t> find_conflict_by_term(uint64_t index, uint64_t term) const;

  // Appends entries that directly follow some index in the log, dropping
  // every entry from entries.front().index on first (a conflict).
  void append(const std::vector<pb::RaftEntry>& entries);

  void commit_to(uint64_t index);
  uint64_t committed() const { return committed_; }

  // Durability: the runtime says entries through (index, term) are durable.
  // Ignored when the entry at index has changed since (a truncation raced).
  bool stable_to(uint64_t index, uint64_t term);
  uint64_t stable() const { return stable_; }

  // The Ready cursors: entries the runtime has been given to persist, the
  // lowest index truncated since the last Ready (0: none), committed entries
  // handed out to apply.
  uint64_t persist_handed() const { return persist_handed_; }
  uint64_t pending_truncate() const { return pending_truncate_; }
  std::vector<pb::RaftEntry> take_unpersisted();
  // Committed and durable entries not yet handed out to apply, up to max_bytes.
  std::vector<pb::RaftEntry> take_committed(uint64_t max_bytes);
  bool has_committed_to_hand_out() const { return apply_handed_ < std::min(committed_, stable_); }

  void applied_to(uint64_t index);
  uint64_t applied() const { return applied_; }
  uint64_t apply_handed() const { return apply_handed_; }

  // A snapshot covers entries <= index (index <= applied). Entries below
  // index - keep are dropped, a batch per trim_some() call.
  void compact(uint64_t index, uint64_t keep);
  // Frees up to max_entries of the entries compact() dropped; true if any
  // remain to free.
  bool trim_some(size_t max_entries);
  // Entries below this index are dropped (some may still wait for trim_some).
  uint64_t trim_point() const { return trim_to_ + 1; }
  // Replaces the whole log by a snapshot point that is committed (a follower
  // installing the leader's snapshot); the state machine is restored from the
  // snapshot, so applied jumps to it too.
  void restore(uint64_t index, uint64_t term);

 private:
  uint64_t snapshot_index_ = 0;
  uint64_t snapshot_term_ = 0;
  uint64_t offset_ = 0;                 // the index before entries_.front(); <= snapshot_index_
  uint64_t trim_to_ = 0;                // entries through this index are to be freed; <= snapshot_index_
  std::deque<pb::RaftEntry> entries_;   // entries_[k] has index offset_ + 1 + k
  uint64_t committed_ = 0;
  uint64_t applied_ = 0;
  uint64_t apply_handed_ = 0;
  uint64_t stable_ = 0;
  uint64_t persist_handed_ = 0;
  uint64_t pending_truncate_ = 0;
};

}  // namespace stig::replication::raft
