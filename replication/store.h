// KeyStore: every key this replica holds, bucketed for the Merkle tree.
//
// Changes are marked dirty and settled in groups: settle() serializes each
// dirty key once, updates its hash and the Merkle tree, and emits one
// Persist per key. Many writes to a hot key between two settles cost one
// serialization and one storage write (group commit). Iteration is always in
// key order, so what reaches a message is deterministic.
//
// At rest a key's state is kept serialized (KeyEntry::bytes: the bytes on
// disk, one contiguous block) and parsed only while a step uses it: state()
// parses it into a recycled message, which stays until release_parsed() at
// the end of the step's output. A parsed protobuf spreads one key over a
// dozen heap blocks, so a merge or a write to a key that is not in cache
// missed the cache at every sibling, version-vector entry and string; the
// serialized block is read in one sweep into messages that are. It is also
// about half the memory.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
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
  // The state as of the last settle, serialized (before the first: as created).
  std::string bytes;
  // The parsed state while a step uses it (KeyStore::state); null at rest.
  // Changes go here; the next settle serializes them into `bytes`.
  mutable std::unique_ptr<pb::KeyState> live;
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

  // The type and key of a typed key.
  static pb::ValueType type_of(std::string_view typed_key) {
    return typed_key[0] == 'c' ? pb::COUNTER : typed_key[0] == 's' ? pb::SET : pb::REGISTER;
  }
  static std::string_view key_of(std::string_view typed_key) { return typed_key.substr(2); }

  // The entry's state, parsed on first use; the reference stays valid (and
  // changes made through it are kept) until release_parsed(). Mark the entry
  // dirty after changing it.
  pb::KeyState& state(KeyEntry& entry) { return parsed(entry); }
  const pb::KeyState& state(const KeyEntry& entry) const { return parsed(entry); }
  // The entry's state becomes `state` (marked dirty): a state that
  // descends from the entry's. `state` is left holding only the key and type.
  void replace_state(KeyEntry& entry, pb::KeyState&& state);
  // Copies the entry's current state into `out` (without keeping it parsed).
  void copy_state(const KeyEntry& entry, pb::KeyState& out) const;
  // Returns every parsed state to the pool (the end of a step's output),
  // but those changed since the last settle.
  void release_parsed();
  size_t parsed_count() const { return parsed_.size(); }

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
  // storage keys must come in order. The entry is staged and becomes
  // findable at finish_load(); the state returned is the loaded one as
  // parsed (valid until the next load).
  Expected<const pb::KeyState*> load(std::string_view storage_key, std::string_view value);
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
  KeyEntry& inserted(Bucket::iterator it, uint32_t bucket, pb::ValueType type);
  pb::KeyState& parsed(const KeyEntry& entry) const;
  std::unique_ptr<pb::KeyState> take_message() const;

  MerkleTree tree_;
  std::vector<Bucket> buckets_;
  std::vector<KeyEntry*> dirty_;  // entries are never erased while dirty
  mutable std::string lookup_;
  uint64_t keys_of_type_[3] = {0, 0, 0};  // entries in the map, settled or not
  std::vector<std::vector<std::pair<std::string, KeyEntry>>> loading_;  // by bucket, until finish_load()
  std::string scratch_;
  pb::KeyState loaded_;  // load(): the state just loaded
  mutable std::vector<const KeyEntry*> parsed_;                 // entries with a live state
  mutable std::vector<std::unique_ptr<pb::KeyState>> pool_;     // cleared messages to parse into
  uint64_t total_keys_ = 0;  // settled keys, i.e. those in the tree
  uint64_t tombstone_keys_ = 0;
};

}  // namespace stig::replication
