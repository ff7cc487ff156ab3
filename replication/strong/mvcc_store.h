// MvccStore: the strong path's versioned key-value store with history.
//
// Every key keeps its versions, oldest first; each version is stamped with
// the revision that wrote it. A revision is a counter bumped once per log
// entry that changed at least one key (one transaction = one revision), so
// reads "as of revision R" see exactly the writes of entries up to R. Each
// revision also records the leader's wall time of its entry, made monotonic
// by the caller, so "as of time T" resolves to the latest revision at or
// before T. Compaction drops versions that no read at or above the compaction
// revision can see; reads below it are refused by the caller.
//
// The store trusts its caller: validation (sizes, future revisions,
// duplicate writes) happens in the StateMachine before anything is written,
// so a transaction cannot fail halfway.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "replication/status.h"
#include "replication/strong/options.h"

namespace stig::replication {

class MvccStore {
 public:
  struct Version {
    uint64_t revision = 0;
    std::string value;
    uint64_t version = 0;  // 0 for a deletion record
    uint64_t create_revision = 0;
    std::string agent;
    int64_t wall_ms = 0;
    bool deleted = false;
  };
  struct Entry {
    const std::string* key;
    const Version* version;
  };
  struct Page {
    std::vector<Entry> entries;
    bool more = false;
  };

  uint64_t revision() const { return revision_; }
  uint64_t compact_revision() const { return compact_revision_; }
  size_t key_count() const { return keys_.size(); }

  // The live version of `key` at `rev` (latest when rev is revision(); the
  // pending writes of the entry being applied are visible), or nullptr.
  const Version* get(std::string_view key, uint64_t rev) const;
  const Version* latest(std::string_view key) const;

  // The latest revision whose wall time is <= at_ms (0: before the first
  // revision), or nullopt when that revision was compacted away.
  std::optional<uint64_t> revision_at_time(int64_t at_ms) const;

  // Live keys in [begin, end) (end empty = unbounded) after `start_after`
  // (empty = none), as of `rev`: at most `limit` entries and, past the first,
  // at most `max_bytes` of keys and values.
  Page range(std::string_view begin, std::string_view end, std::string_view start_after, uint64_t rev,
             size_t limit, size_t max_bytes) const;

  // Versions of `key` (deletion records included) with revision < before
  // (0 = any), newest first, bounded like range().
  std::vector<const Version*> history(std::string_view key, uint64_t before, size_t limit, size_t max_bytes,
                                      bool* more) const;

  // Writes happen at pending_revision() = revision() + 1 and become visible
  // at once (a transaction's later reads see its earlier writes); at most one
  // write per key per revision. commit() ends the entry's writes.
  uint64_t pending_revision() const { return revision_ + 1; }
  const Version& put(const std::string& key, std::string value, const std::string& agent, int64_t wall_ms);
  // Writes a deletion record; the key must be live.
  const Version& erase(const std::string& key, const std::string& agent, int64_t wall_ms);
  // Makes the pending revision current if anything was written; returns
  // whether it did.
  bool commit(int64_t wall_ms);

  // Drops every version no read at revision >= rev can see. Caller checks
  // compact_revision() < rev <= revision().
  void compact(uint64_t rev);

  void to_snapshot(pb::StrongSnapshot* out) const;
  Status from_snapshot(const pb::StrongSnapshot& in, const StateMachineOptions& options);

 private:
  std::map<std::string, std::vector<Version>, std::less<>> keys_;
  std::vector<std::pair<uint64_t, int64_t>> revision_times_;  // ascending; from compact_revision_ on
  uint64_t revision_ = 0;
  uint64_t compact_revision_ = 0;
  bool dirty_ = false;  // written at pending_revision()
};

// Fills a client-facing KeyValue from a stored version.
void to_key_value(const std::string& key, const MvccStore::Version& v, pb::KeyValue* out);

}  // namespace stig::replication
