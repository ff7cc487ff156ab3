#include "replication/store.h"

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

KeyEntry& KeyStore::inserted(Bucket::iterator it, uint32_t bucket) {
  KeyEntry& e = it->second;
  e.typed_key = &it->first;
  e.bucket = bucket;
  ++keys_of_type_[type_index(e.state.type())];
  return e;
}

KeyEntry& KeyStore::get_or_create(pb::ValueType type, std::string_view key) {
  std::string tk = typed_key(type, key);
  const uint32_t b = bucket_of(tk);
  auto [it, is_new] = buckets_[b].try_emplace(std::move(tk));
  if (!is_new) return it->second;
  it->second.state.set_key(std::string(key));
  it->second.state.set_type(type);
  return inserted(it, b);
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
    scratch_.clear();
    e.state.SerializeToString(&scratch_);
    const uint64_t h = hash_serialized(scratch_);
    if (h == e.hash) continue;
    const bool was_new = e.hash == 0;
    const bool was_tomb = e.tombstone_only;
    tree_.apply(b, e.hash ^ h);
    e.hash = h;
    e.tombstone_only = is_tombstone_only(e.state);
    e.tombstone_seen_by.clear();
    if (was_new) ++total_keys_;
    if (!was_new && was_tomb) --tombstone_keys_;
    if (e.tombstone_only) ++tombstone_keys_;
    if (persist) persist->push_back(Persist{storage_key(*e.typed_key), scratch_, false});
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
  --keys_of_type_[type_index(it->second.state.type())];
  persist.push_back(Persist{storage_key(typed_key), {}, true});  // before the erase: `typed_key` may be the entry's own
  buckets_[b].erase(it);
}

Expected<const KeyEntry*> KeyStore::load(std::string_view skey, std::string_view value) {
  pb::KeyState state;
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
  e.state = std::move(state);
  // Settled at once (as settle() would, without a Persist: it is on disk):
  // the hash is of our own serialization, so it matches what peers compute.
  scratch_.clear();
  e.state.SerializeToString(&scratch_);
  e.hash = hash_serialized(scratch_);
  tree_.apply(b, e.hash);
  e.tombstone_only = is_tombstone_only(e.state);
  ++total_keys_;
  if (e.tombstone_only) ++tombstone_keys_;
  return &e;
}

void KeyStore::finish_load() {
  // Bucket by bucket, each in key order at the end of its map: the insert
  // path stays in cache (inserting in scan order touched the 4096 maps in
  // turn and missed the cache on every insert).
  for (uint32_t b = 0; b < loading_.size(); ++b) {
    auto& bucket = buckets_[b];
    STIG_INVARIANT(bucket.empty() || loading_[b].empty(), "states loaded into a bucket already in use");
    for (auto& [tk, entry] : loading_[b]) inserted(bucket.emplace_hint(bucket.end(), std::move(tk), std::move(entry)), b);
    std::vector<std::pair<std::string, KeyEntry>>().swap(loading_[b]);
  }
  std::vector<std::vector<std::pair<std::string, KeyEntry>>>().swap(loading_);
}

}  // namespace stig::replication
