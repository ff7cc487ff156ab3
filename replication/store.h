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
  const std::string* typed_key = nullptr;  // the store's key of this entry (stable while it exists)
  uint32_t bucket = 0;                     // its Merkle bucket
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

  using Bucket = std::map<std::string, KeyEntry, std::less<>>;

  KeyEntry* find(std::string_view typed_key);
  const KeyEntry* find(std::string_view typed_key) const;
  // The same, without building the typed key on the heap.
  KeyEntry* find(pb::ValueType type, std::string_view key);
  const KeyEntry* find(pb::ValueType type, std::string_view key) const;
  // False when no key of `type` exists (a lookup would miss): most key
  // spaces hold one type, and a write checks the other two for its name.
  bool holds_type(pb::ValueType type) const { return keys_of_type_[type_index(type)] > 0; }
  // Finds or creates (empty state of `type`) the entry for `key`.
  KeyEntry& get_or_create(pb::ValueType type, std::string_view key);
  void mark_dirty(KeyEntry& entry);

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
  const Bucket& bucket(uint32_t b) const { return buckets_[b]; }

  uint64_t digest() const { return tree_.root(); }
  uint64_t live_keys() const { return total_keys_ - tombstone_keys_; }
  uint64_t tombstone_keys() const { return tombstone_keys_; }

  static uint64_t hash_serialized(std::string_view bytes);

 private:
  static size_t type_index(pb::ValueType type) { return type == pb::COUNTER ? 1 : type == pb::SET ? 2 : 0; }
  // Typed key of (type, key) in a reused buffer.
  std::string_view lookup_key(pb::ValueType type, std::string_view key) const;
  KeyEntry& inserted(Bucket::iterator it, uint32_t bucket);

  MerkleTree tree_;
  std::vector<Bucket> buckets_;
  std::vector<KeyEntry*> dirty_;  // entries are never erased while dirty
  mutable std::string lookup_;
  uint64_t keys_of_type_[3] = {0, 0, 0};  // entries in the map, settled or not
  std::vector<std::vector<std::pair<std::string, KeyEntry>>> loading_;  // by bucket, until finish_load()
  std::string scratch_;
  uint64_t total_keys_ = 0;  // settled keys, i.e. those in the tree
  uint64_t tombstone_keys_ = 0;
};

}  // namespace stig::replication
