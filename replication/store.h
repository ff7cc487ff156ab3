// KeyStore: every key this replica holds, bucketed for the Merkle tree.
//
// Changes are marked dirty and settled in groups: settle() serializes each
// dirty key once, updates its hash and the Merkle tree, and emits one
// Persist per key. Many writes to a hot key between two settles cost one
// serialization and one storage write (group commit). Iteration is always in
// key order, so what reaches a message is deterministic.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "replication/config.h"
#include "replication/expected.h"
#include "replication/key_space.h"
#include "replication/key_state.h"
#include "replication/merkle.h"
#include "replication/replica.h"

namespace stig::replication {

struct KeyEntry {
  pb::KeyState state;
  uint64_t hash = 0;         // hash of the serialized state as of the last settle
  bool dirty = false;
  bool tombstone_only = false;  // as of the last settle
  std::vector<NodeId> tombstone_seen_by;  // peers known to hold exactly `hash`
};

class KeyStore {
 public:
  KeyStore(uint32_t merkle_fanout, uint32_t merkle_depth);

  // Keys of different types live apart: "r:", "c:" or "s:" then the key.
  static std::string typed_key(pb::ValueType type, std::string_view key);
  static std::string storage_key(std::string_view typed_key) {
    return replication::storage_key(KeySpace::kLazyKey, typed_key);
  }
  static bool is_storage_key(std::string_view key) { return in_key_space(key, KeySpace::kLazyKey); }

  KeyEntry* find(const std::string& typed_key);
  const KeyEntry* find(const std::string& typed_key) const;
  // Finds or creates (empty state of `type`) the entry for `key`.
  KeyEntry& get_or_create(pb::ValueType type, std::string_view key);
  void mark_dirty(const std::string& typed_key, KeyEntry& entry);

  // Serializes dirty keys, updates hashes and the tree; appends a Persist per
  // key to `persist` (nullptr: recovery, the data is on disk already). Keys
  // whose hash changed have their tombstone acknowledgements reset.
  void settle(std::vector<Persist>* persist);
  bool has_dirty() const { return !dirty_.empty(); }

  // Removes a settled key (tombstone collection), emitting the erase.
  void erase(const std::string& typed_key, std::vector<Persist>& persist);

  // Loads one persisted state at start-up, settled (in the tree, not dirty);
  // storage keys must come in order. The entry is staged (valid until the
  // next load) and becomes findable at finish_load().
  Expected<const KeyEntry*> load(std::string_view storage_key, std::string_view value);
  void finish_load();

  const MerkleTree& tree() const { return tree_; }
  uint32_t bucket_of(std::string_view typed_key) const;
  const std::map<std::string, KeyEntry>& bucket(uint32_t b) const { return buckets_[b]; }

  uint64_t digest() const { return tree_.root(); }
  uint64_t live_keys() const { return total_keys_ - tombstone_keys_; }
  uint64_t tombstone_keys() const { return tombstone_keys_; }

  static uint64_t hash_serialized(std::string_view bytes);

 private:
  MerkleTree tree_;
  std::vector<std::map<std::string, KeyEntry>> buckets_;
  std::vector<std::string> dirty_;
  std::vector<std::vector<std::pair<std::string, KeyEntry>>> loading_;  // by bucket, until finish_load()
  std::string scratch_;
  uint64_t total_keys_ = 0;  // settled keys, i.e. those in the tree
  uint64_t tombstone_keys_ = 0;
};

}  // namespace stig::replication
