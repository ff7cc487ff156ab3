#include "replication/store.h"

#include <algorithm>

#include "replication/hash.h"
#include "replication/invariant.h"

namespace stig::replication {

KeyStore::KeyStore(uint32_t merkle_fanout, uint32_t merkle_depth)
    : tree_(merkle_fanout, merkle_depth), buckets_(tree_.leaf_count()) {}

std::string KeyStore::typed_key(pb::ValueType type, std::string_view key) {
  const char tag = type == pb::COUNTER ? 'c' : type == pb::SET ? 's' : 'r';
  std::string out;
  out.reserve(key.size() + 2);
  out.push_back(tag);
  out.push_back(':');
  out.append(key);
  return out;
}

uint64_t KeyStore::hash_serialized(std::string_view bytes) { return hash_bytes(bytes); }

uint32_t KeyStore::bucket_of(std::string_view typed_key) const {
  return tree_.bucket_of(hash_bytes(typed_key, 0x5bd1e995ULL));
}

std::string_view KeyStore::lookup_key(pb::ValueType type, std::string_view key) const {
  lookup_.clear();
  lookup_.push_back(type == pb::COUNTER ? 'c' : type == pb::SET ? 's' : 'r');
  lookup_.push_back(':');
  lookup_.append(key);
  return lookup_;
}

KeyEntry* KeyStore::find(std::string_view typed_key) {
  auto& b = buckets_[bucket_of(typed_key)];
  auto it = b.find(typed_key);
  return it == b.end() ? nullptr : &it->second;
}

const KeyEntry* KeyStore::find(std::string_view typed_key) const {
  const auto& b = buckets_[bucket_of(typed_key)];
  auto it = b.find(typed_key);
  return it == b.end() ? nullptr : &it->second;
}

KeyEntry* KeyStore::find(pb::ValueType type, std::string_view key) {
  if (!holds_type(type)) return nullptr;
  return find(lookup_key(type, key));
}

const KeyEntry* KeyStore::find(pb::ValueType type, std::string_view key) const {
  if (!holds_type(type)) return nullptr;
  return find(lookup_key(type, key));
}

KeyEntry& KeyStore::inserted(Bucket::iterator it, uint32_t bucket, pb::ValueType type) {
  KeyEntry& e = it->second;
  e.typed_key = &it->first;
  e.bucket = bucket;
  ++keys_of_type_[type_index(type)];
  return e;
}

KeyEntry& KeyStore::get_or_create(pb::ValueType type, std::string_view key) {
  std::string tk = typed_key(type, key);
  const uint32_t b = bucket_of(tk);
  auto [it, is_new] = buckets_[b].try_emplace(std::move(tk));
  if (!is_new) return it->second;
  KeyEntry& e = inserted(it, b, type);
  e.live = take_message();
  e.live->set_key(std::string(key));
  e.live->set_type(type);
  e.live->SerializeToString(&e.bytes);  // what it reads back as if released unchanged
  parsed_.push_back(&e);
  return e;
}

std::unique_ptr<pb::KeyState> KeyStore::take_message() const {
  if (pool_.empty()) return std::make_unique<pb::KeyState>();
  std::unique_ptr<pb::KeyState> m = std::move(pool_.back());
  pool_.pop_back();
  return m;
}

pb::KeyState& KeyStore::parsed(const KeyEntry& e) const {
  if (e.live) return *e.live;
  STIG_INVARIANT(e.typed_key != nullptr, "reading an entry the store does not hold");
  e.live = take_message();
  // Our own serialization of a state that was valid when it was settled.
  const bool parsed_ok = e.live->ParseFromString(e.bytes);
  STIG_INVARIANT(parsed_ok, "a settled state does not parse");
  parsed_.push_back(&e);
  return *e.live;
}

void KeyStore::replace_state(KeyEntry& e, pb::KeyState&& state) {
  STIG_INVARIANT(e.typed_key != nullptr, "replacing the state of an entry the store does not hold");
  STIG_INVARIANT(state.type() == type_of(*e.typed_key) && state.key() == key_of(*e.typed_key),
                 "replacing a key's state with another key's");
  if (!e.live) {
    e.live = take_message();
    parsed_.push_back(&e);
  }
  e.live->Swap(&state);
  state.Clear();
  state.set_key(e.live->key());
  state.set_type(e.live->type());
  mark_dirty(e);
}

void KeyStore::copy_state(const KeyEntry& e, pb::KeyState& out) const {
  if (e.live) {
    out = *e.live;
  } else {
    const bool parsed_ok = out.ParseFromString(e.bytes);
    STIG_INVARIANT(parsed_ok, "a settled state does not parse");
  }
}

void KeyStore::release_parsed() {
  // A recycled message keeps the buffers of the state it held: pool only
  // messages of small states, and a few hundred of them (about 4 MiB).
  constexpr size_t kPooledBytes = 16 * 1024;
  constexpr size_t kPoolSize = 256;
  size_t kept = 0;
  for (const KeyEntry* e : parsed_) {
    if (e->dirty) {  // changed after the last settle: its change is for the next one
      parsed_[kept++] = e;
      continue;
    }
    std::unique_ptr<pb::KeyState> m = std::move(e->live);
    if (pool_.size() < kPoolSize && e->bytes.size() <= kPooledBytes) {
      m->Clear();
      pool_.push_back(std::move(m));
    }
  }
  parsed_.resize(kept);
}

void KeyStore::mark_dirty(KeyEntry& entry) {
  STIG_INVARIANT(entry.typed_key != nullptr, "marking an entry the store does not hold");
  if (entry.dirty) return;
  entry.dirty = true;
  dirty_.push_back(&entry);
}

void KeyStore::settle(std::vector<Persist>* persist) {
  for (KeyEntry* dirty : dirty_) {
    KeyEntry& e = *dirty;
    const uint32_t b = e.bucket;
    STIG_INVARIANT(e.dirty, "dirty list and flag disagree");
    e.dirty = false;
    STIG_INVARIANT(e.live != nullptr, "a dirty entry without its parsed state");
    scratch_.clear();
    e.live->SerializeToString(&scratch_);
    const uint64_t h = hash_serialized(scratch_);
    if (h == e.hash) continue;
    const bool was_new = e.hash == 0;
    const bool was_tomb = e.tombstone_only;
    tree_.apply(b, e.hash ^ h);
    e.hash = h;
    e.bytes.swap(scratch_);
    e.tombstone_only = is_tombstone_only(*e.live);
    e.tombstone_seen_by.clear();
    if (was_new) ++total_keys_;
    if (!was_new && was_tomb) --tombstone_keys_;
    if (e.tombstone_only) ++tombstone_keys_;
    if (persist) persist->push_back(Persist{storage_key(*e.typed_key), e.bytes, false});
  }
  dirty_.clear();
}

void KeyStore::erase(const std::string& typed_key, std::vector<Persist>& persist) {
  const uint32_t b = bucket_of(typed_key);
  auto it = buckets_[b].find(typed_key);
  STIG_INVARIANT(it != buckets_[b].end(), "erasing a missing key");
  STIG_INVARIANT(!it->second.dirty, "erasing an unsettled key");
  tree_.apply(b, it->second.hash);
  --total_keys_;
  if (it->second.tombstone_only) --tombstone_keys_;
  --keys_of_type_[type_index(type_of(it->first))];
  persist.push_back(Persist{storage_key(typed_key), {}, true});  // before the erase: `typed_key` may be the entry's own
  if (it->second.live) {
    auto p = std::find(parsed_.begin(), parsed_.end(), &it->second);
    STIG_INVARIANT(p != parsed_.end(), "a parsed state missing from the parsed list");
    *p = parsed_.back();
    parsed_.pop_back();
  }
  buckets_[b].erase(it);
}

Expected<const pb::KeyState*> KeyStore::load(std::string_view skey, std::string_view value) {
  pb::KeyState& state = loaded_;
  if (!state.ParseFromArray(value.data(), static_cast<int>(value.size())))
    return Status::corruption("stored state does not parse: " + std::string(skey));
  if (auto s = validate_state(state); !s.is_ok())
    return Status::corruption("stored state is invalid (" + s.message() + "): " + std::string(skey));
  std::string tk = typed_key(state.type(), state.key());
  if (storage_key(tk) != skey) return Status::corruption("stored state under the wrong key: " + std::string(skey));
  if (loading_.empty()) loading_.resize(buckets_.size());
  const uint32_t b = bucket_of(tk);
  auto& staged = loading_[b];
  // Recovery scans in key order; a key out of order (or twice) means the
  // scan is not what it claims to be.
  if (!staged.empty() && !(staged.back().first < tk))
    return Status::corruption("stored states out of order: " + std::string(skey));
  KeyEntry& e = staged.emplace_back(std::move(tk), KeyEntry{}).second;
  // Settled at once (as settle() would, without a Persist: it is on disk):
  // the hash is of our own serialization, so it matches what peers compute.
  state.SerializeToString(&e.bytes);
  e.hash = hash_serialized(e.bytes);
  tree_.apply(b, e.hash);
  e.tombstone_only = is_tombstone_only(state);
  ++total_keys_;
  if (e.tombstone_only) ++tombstone_keys_;
  return &state;
}

void KeyStore::finish_load() {
  // Bucket by bucket, each in key order at the end of its map: the insert
  // path stays in cache (inserting in scan order touched the 4096 maps in
  // turn and missed the cache on every insert).
  for (uint32_t b = 0; b < loading_.size(); ++b) {
    auto& bucket = buckets_[b];
    STIG_INVARIANT(bucket.empty() || loading_[b].empty(), "states loaded into a bucket already in use");
    for (auto& [tk, entry] : loading_[b]) {
      const pb::ValueType type = type_of(tk);
      inserted(bucket.emplace_hint(bucket.end(), std::move(tk), std::move(entry)), b, type);
    }
    std::vector<std::pair<std::string, KeyEntry>>().swap(loading_[b]);
  }
  std::vector<std::vector<std::pair<std::string, KeyEntry>>>().swap(loading_);
}

}  // namespace stig::replication
