#include "replication/raft/raft_log.h"

#include <algorithm>

#include "replication/invariant.h"

namespace stig::replication::raft {

RaftLog::RaftLog(uint64_t snapshot_index, uint64_t snapshot_term, std::vector<pb::RaftEntry> entries,
                 uint64_t committed, uint64_t applied)
    : snapshot_index_(snapshot_index),
      snapshot_term_(snapshot_term),
      offset_(snapshot_index),
      trim_to_(snapshot_index),
      entries_(std::make_move_iterator(entries.begin()), std::make_move_iterator(entries.end())),
      committed_(committed),
      applied_(applied),
      apply_handed_(applied) {
  stable_ = last_index();
  persist_handed_ = last_index();
  STIG_INVARIANT(applied_ <= committed_ && committed_ <= last_index(), "recovered log cursors out of order");
}

uint64_t RaftLog::last_term() const { return entries_.empty() ? snapshot_term_ : entries_.back().term(); }

std::optional<uint64_t> RaftLog::term(uint64_t i) const {
  if (i == snapshot_index_) return snapshot_term_;
  if (i <= offset_ || i > last_index()) return std::nullopt;
  return entries_[i - offset_ - 1].term();
}

bool RaftLog::is_up_to_date(uint64_t index, uint64_t t) const {
  return t > last_term() || (t == last_term() && index >= last_index());
}

const pb::RaftEntry& RaftLog::at(uint64_t i) const {
  STIG_INVARIANT(i > offset_ && i <= last_index(), "log entry read outside the log");
  return entries_[i - offset_ - 1];
}

std::vector<pb::RaftEntry> RaftLog::slice(uint64_t lo, uint64_t hi, uint64_t max_bytes) const {
  STIG_INVARIANT(lo > offset_ && hi <= last_index() + 1, "log slice outside the log");
  std::vector<pb::RaftEntry> out;
  uint64_t bytes = 0;
  for (uint64_t i = lo; i < hi; ++i) {
    const auto& e = at(i);
    bytes += e.ByteSizeLong();
    if (!out.empty() && bytes > max_bytes) break;
    out.push_back(e);
  }
  return out;
}

uint64_t RaftLog::find_conflict(const std::vector<pb::RaftEntry>& entries) const {
  for (const auto& e : entries) {
    // Entries at or below the snapshot are committed, hence match (the caller
    // only hands us entries after a matching, committed-or-later prefix).
    if (e.index() <= snapshot_index_) continue;
    if (!matches(e.index(), e.term())) return e.index();
  }
  return 0;
}

std::pair<uint64_t, uint64_t> RaftLog::find_conflict_by_term(uint64_t index, uint64_t t) const {
  index = std::min(index, last_index());
  while (index > snapshot_index_) {
    const uint64_t have = at(index).term();
    if (have <= t) return {index, have};
    --index;
  }
  return {snapshot_index_, snapshot_term_};
}

void RaftLog::append(const std::vector<pb::RaftEntry>& entries) {
  if (entries.empty()) return;
  const uint64_t from = entries.front().index();
  STIG_INVARIANT(from > committed_, "append would overwrite a committed entry");
  STIG_INVARIANT(from > snapshot_index_ && from <= last_index() + 1, "append leaves a gap in the log");
  if (from <= last_index()) {
    entries_.resize(from - offset_ - 1);
    stable_ = std::min(stable_, from - 1);
    if (from <= persist_handed_) {
      persist_handed_ = from - 1;
      pending_truncate_ = pending_truncate_ == 0 ? from : std::min(pending_truncate_, from);
    }
  }
  for (const auto& e : entries) {
    STIG_INVARIANT(e.index() == last_index() + 1, "appended entries not contiguous");
    STIG_INVARIANT(e.term() >= last_term(), "appended entry term goes backwards");
    entries_.push_back(e);
  }
}

void RaftLog::commit_to(uint64_t index) {
  if (index <= committed_) return;
  STIG_INVARIANT(index <= last_index(), "commit beyond the last log entry");
  committed_ = index;
}

bool RaftLog::stable_to(uint64_t index, uint64_t t) {
  if (index <= stable_ || !matches(index, t) || index > persist_handed_) return false;
  stable_ = index;
  return true;
}

std::vector<pb::RaftEntry> RaftLog::take_unpersisted() {
  std::vector<pb::RaftEntry> out;
  if (persist_handed_ < last_index()) out = slice(persist_handed_ + 1, last_index() + 1, UINT64_MAX);
  persist_handed_ = last_index();
  pending_truncate_ = 0;
  return out;
}

std::vector<pb::RaftEntry> RaftLog::take_committed(uint64_t max_bytes) {
  const uint64_t hi = std::min(committed_, stable_);
  if (apply_handed_ >= hi) return {};
  auto out = slice(apply_handed_ + 1, hi + 1, max_bytes);
  apply_handed_ += out.size();
  return out;
}

void RaftLog::applied_to(uint64_t index) {
  if (index <= applied_) return;
  STIG_INVARIANT(index <= apply_handed_, "applied an entry never handed out");
  applied_ = index;
}

void RaftLog::compact(uint64_t index, uint64_t keep) {
  STIG_INVARIANT(index <= applied_ && index <= last_index(), "compaction beyond the applied index");
  if (index <= snapshot_index_) return;
  snapshot_term_ = at(index).term();
  snapshot_index_ = index;
  trim_to_ = std::max(trim_to_, index > keep ? index - keep : 0);
  STIG_INVARIANT(trim_to_ <= snapshot_index_, "trimming beyond the snapshot");
}

bool RaftLog::trim_some(size_t max_entries) {
  for (size_t n = 0; n < max_entries && offset_ < trim_to_; ++n) {
    entries_.pop_front();
    ++offset_;
  }
  return offset_ < trim_to_;
}

void RaftLog::restore(uint64_t index, uint64_t t) {
  STIG_INVARIANT(index > committed_, "restoring a snapshot that is not ahead of commit");
  entries_.clear();
  offset_ = index;
  trim_to_ = index;
  snapshot_index_ = index;
  snapshot_term_ = t;
  committed_ = index;
  applied_ = index;
  apply_handed_ = index;
  // The snapshot itself is persisted with the Ready that carries it; entries
  // after it become stable one by one as before.
  stable_ = index;
  persist_handed_ = index;
  pending_truncate_ = 0;
}

}  // namespace stig::replication::raft
