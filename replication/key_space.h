// Key spaces: every key the core persists, named in one place.
//
// The core hands the runtime flat (key, value) writes (Persist). Each key
// starts with one byte naming its key space, so one ordered store (RocksDB,
// the simulator's disk, a test's map) keeps the spaces apart, a space can be
// read or erased as one range, and recovery can tell what each key is. The
// bytes are part of the on-disk format: never reuse or renumber one.
#pragma once

#include <map>
#include <string>
#include <string_view>
#include <utility>

namespace stig::replication {

struct Persist;

enum class KeySpace : char {
  kLazyKey = 'k',       // lazy path: one KeyState per typed key ("r:", "c:", "s:" then the key)
  kGrave = 'g',         // lazy path: the deletion context of a collected key, for its grace period
  kMeta = 'm',          // node metadata ("/dot_counter")
  kRaftLog = 'l',       // strong path (reserved): log entries by index
  kRaftState = 'h',     // strong path (reserved): term, vote, commit
  kStateMachine = 's',  // strong path (reserved): the replicated state machine
  kSnapshot = 'p',      // strong path (reserved): snapshot chunks
};

inline std::string storage_key(KeySpace space, std::string_view key) {
  std::string out;
  out.reserve(key.size() + 1);
  out.push_back(static_cast<char>(space));
  out.append(key);
  return out;
}

inline bool in_key_space(std::string_view storage_key, KeySpace space) {
  return !storage_key.empty() && storage_key[0] == static_cast<char>(space);
}

// The key within its space.
inline std::string_view key_in_space(std::string_view storage_key) { return storage_key.substr(1); }

// [begin, end): every storage key of `space`.
inline std::pair<std::string, std::string> key_space_range(KeySpace space) {
  const char c = static_cast<char>(space);
  return {std::string(1, c), std::string(1, static_cast<char>(c + 1))};
}

// What a Persist means for any ordered key-value store; the simulator's disk
// and the tests' in-memory disks apply writes with it (stigd maps the same
// three cases onto a RocksDB WriteBatch).
void apply_persist(std::map<std::string, std::string>& store, const Persist& write);

}  // namespace stig::replication
