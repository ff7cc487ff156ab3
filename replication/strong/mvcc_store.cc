#include "replication/strong/mvcc_store.h"

#include <algorithm>

#include "replication/invariant.h"

namespace stig::replication {

namespace {

const MvccStore::Version* live_at(const std::vector<MvccStore::Version>& versions, uint64_t rev) {
  auto it = std::upper_bound(versions.begin(), versions.end(), rev,
                             [](uint64_t r, const MvccStore::Version& v) { return r < v.revision; });
  if (it == versions.begin()) return nullptr;
  --it;
  return it->deleted ? nullptr : &*it;
}

size_t entry_bytes(const std::string& key, const MvccStore::Version& v) {
  return key.size() + v.value.size() + v.agent.size() + 48;
}

}  // namespace

const MvccStore::Version* MvccStore::get(std::string_view key, uint64_t rev) const {
  auto it = keys_.find(key);
  return it == keys_.end() ? nullptr : live_at(it->second, rev);
}

const MvccStore::Version* MvccStore::latest(std::string_view key) const {
  return get(key, UINT64_MAX);
}

std::optional<uint64_t> MvccStore::revision_at_time(int64_t at_ms) const {
  auto it = std::upper_bound(revision_times_.begin(), revision_times_.end(), at_ms,
                             [](int64_t t, const std::pair<uint64_t, int64_t>& rt) { return t < rt.second; });
  if (it != revision_times_.begin()) return std::prev(it)->first;
  // Earlier than every revision we still know the time of: that is "before
  // the first revision" unless history was compacted.
  if (compact_revision_ > 0) return std::nullopt;
  return 0;
}

MvccStore::Page MvccStore::range(std::string_view begin, std::string_view end, std::string_view start_after,
                                 uint64_t rev, size_t limit, size_t max_bytes) const {
  Page page;
  auto it = keys_.lower_bound(begin);
  if (!start_after.empty() && start_after >= begin) it = keys_.upper_bound(start_after);
  size_t bytes = 0;
  for (; it != keys_.end(); ++it) {
    if (!end.empty() && it->first >= end) break;
    const Version* v = live_at(it->second, rev);
    if (v == nullptr) continue;
    const size_t b = entry_bytes(it->first, *v);
    if (page.entries.size() >= limit || (!page.entries.empty() && bytes + b > max_bytes)) {
      page.more = true;
      break;
    }
    bytes += b;
    page.entries.push_back(Entry{&it->first, v});
  }
  return page;
}

std::vector<const MvccStore::Version*> MvccStore::history(std::string_view key, uint64_t before, size_t limit,
                                                          size_t max_bytes, bool* more) const {
  std::vector<const Version*> out;
  *more = false;
  auto it = keys_.find(key);
  if (it == keys_.end()) return out;
  size_t bytes = 0;
  for (auto v = it->second.rbegin(); v != it->second.rend(); ++v) {
    if (before != 0 && v->revision >= before) continue;
    const size_t b = entry_bytes(it->first, *v);
    if (out.size() >= limit || (!out.empty() && bytes + b > max_bytes)) {
      *more = true;
      break;
    }
    bytes += b;
    out.push_back(&*v);
  }
  return out;
}

const MvccStore::Version& MvccStore::put(const std::string& key, std::string value, const std::string& agent,
                                         int64_t wall_ms) {
  auto& versions = keys_[key];
  const uint64_t rev = pending_revision();
  STIG_INVARIANT(versions.empty() || versions.back().revision < rev, "one write per key per revision");
  const Version* prev = versions.empty() || versions.back().deleted ? nullptr : &versions.back();
  Version v;
  v.revision = rev;
  v.value = std::move(value);
  v.version = prev ? prev->version + 1 : 1;
  v.create_revision = prev ? prev->create_revision : rev;
  v.agent = agent;
  v.wall_ms = wall_ms;
  versions.push_back(std::move(v));
  dirty_ = true;
  return versions.back();
}

const MvccStore::Version& MvccStore::erase(const std::string& key, const std::string& agent, int64_t wall_ms) {
  auto it = keys_.find(key);
  const uint64_t rev = pending_revision();
  STIG_INVARIANT(it != keys_.end() && !it->second.back().deleted, "erase of a live key only");
  STIG_INVARIANT(it->second.back().revision < rev, "one write per key per revision");
  Version v;
  v.revision = rev;
  v.agent = agent;
  v.wall_ms = wall_ms;
  v.deleted = true;
  it->second.push_back(std::move(v));
  dirty_ = true;
  return it->second.back();
}

bool MvccStore::commit(int64_t wall_ms) {
  if (!dirty_) return false;
  STIG_INVARIANT(revision_times_.empty() || revision_times_.back().second <= wall_ms,
                 "revision times are monotonic");
  ++revision_;
  revision_times_.emplace_back(revision_, wall_ms);
  dirty_ = false;
  return true;
}

void MvccStore::compact(uint64_t rev) {
  STIG_INVARIANT(rev > compact_revision_ && rev <= revision_ && !dirty_, "compaction moves forward, between entries");
  for (auto it = keys_.begin(); it != keys_.end();) {
    auto& versions = it->second;
    // The version a read at `rev` sees is the last one at or below it: keep
    // it (unless it is a deletion) and everything newer.
    auto keep = std::upper_bound(versions.begin(), versions.end(), rev,
                                 [](uint64_t r, const Version& v) { return r < v.revision; });
    if (keep != versions.begin()) {
      --keep;
      if (keep->deleted) ++keep;
      versions.erase(versions.begin(), keep);
    }
    it = versions.empty() ? keys_.erase(it) : std::next(it);
  }
  auto first = std::lower_bound(revision_times_.begin(), revision_times_.end(), rev,
                                [](const std::pair<uint64_t, int64_t>& rt, uint64_t r) { return rt.first < r; });
  revision_times_.erase(revision_times_.begin(), first);
  compact_revision_ = rev;
}

void MvccStore::to_snapshot(pb::StrongSnapshot* out) const {
  STIG_INVARIANT(!dirty_, "snapshot between entries");
  out->set_revision(revision_);
  out->set_compact_revision(compact_revision_);
  for (const auto& [key, versions] : keys_) {
    auto* k = out->add_keys();
    k->set_key(key);
    for (const auto& v : versions) {
      auto* s = k->add_versions();
      s->set_revision(v.revision);
      s->set_value(v.value);
      s->set_version(v.version);
      s->set_create_revision(v.create_revision);
      s->set_agent(v.agent);
      s->set_wall_ms(v.wall_ms);
      s->set_deleted(v.deleted);
    }
  }
  for (const auto& [rev, wall] : revision_times_) {
    auto* rt = out->add_revision_times();
    rt->set_revision(rev);
    rt->set_wall_ms(wall);
  }
}

Status MvccStore::from_snapshot(const pb::StrongSnapshot& in, const StateMachineOptions& options) {
  keys_.clear();
  revision_times_.clear();
  revision_ = in.revision();
  compact_revision_ = in.compact_revision();
  dirty_ = false;
  if (compact_revision_ > revision_) return Status::corruption("compact revision above the current revision");
  // One recorded time per revision from the compaction point (or 1) on.
  const uint64_t first_rev = std::max<uint64_t>(compact_revision_, 1);
  const uint64_t expected_times = revision_ >= first_rev ? revision_ - first_rev + 1 : 0;
  if (static_cast<uint64_t>(in.revision_times_size()) != expected_times)
    return Status::corruption("revision times do not cover the retained revisions");
  for (int i = 0; i < in.revision_times_size(); ++i) {
    const auto& rt = in.revision_times(i);
    if (rt.revision() != first_rev + static_cast<uint64_t>(i)) return Status::corruption("revision times out of order");
    if (i > 0 && rt.wall_ms() < in.revision_times(i - 1).wall_ms())
      return Status::corruption("revision times go back in time");
    revision_times_.emplace_back(rt.revision(), rt.wall_ms());
  }
  const std::string* prev_key = nullptr;
  for (const auto& k : in.keys()) {
    if (k.key().empty() || k.key().size() > options.max_key_bytes) return Status::corruption("key size out of bounds");
    if (prev_key != nullptr && !(*prev_key < k.key())) return Status::corruption("keys not strictly ascending");
    prev_key = &k.key();
    if (k.versions().empty()) return Status::corruption("key without versions");
    std::vector<Version> versions;
    for (int i = 0; i < k.versions_size(); ++i) {
      const auto& s = k.versions(i);
      if (s.revision() == 0 || s.revision() > revision_) return Status::corruption("version revision out of range");
      if (i > 0 && s.revision() <= k.versions(i - 1).revision())
        return Status::corruption("versions not ascending by revision");
      if (s.value().size() > options.max_value_bytes || s.agent().size() > options.max_id_bytes)
        return Status::corruption("version size out of bounds");
      if (s.deleted()) {
        if (s.version() != 0 || !s.value().empty() || i == 0)
          return Status::corruption("malformed deletion record");
      } else {
        const bool follows_live = i > 0 && !k.versions(i - 1).deleted();
        if (i > 0 && follows_live &&
            (s.version() != k.versions(i - 1).version() + 1 ||
             s.create_revision() != k.versions(i - 1).create_revision()))
          return Status::corruption("version chain broken");
        if (i > 0 && !follows_live && (s.version() != 1 || s.create_revision() != s.revision()))
          return Status::corruption("recreated key does not restart at version 1");
        if (s.version() == 0 || s.create_revision() == 0 || s.create_revision() > s.revision())
          return Status::corruption("version numbers out of range");
      }
      Version v;
      v.revision = s.revision();
      v.value = s.value();
      v.version = s.version();
      v.create_revision = s.create_revision();
      v.agent = s.agent();
      v.wall_ms = s.wall_ms();
      v.deleted = s.deleted();
      versions.push_back(std::move(v));
    }
    keys_.emplace(k.key(), std::move(versions));
  }
  return Status::ok();
}

void to_key_value(const std::string& key, const MvccStore::Version& v, pb::KeyValue* out) {
  out->set_key(key);
  out->set_value(v.value);
  out->set_version(v.version);
  out->set_create_revision(v.create_revision);
  out->set_mod_revision(v.revision);
  out->set_modified_by(v.agent);
  out->set_modified_at_ms(v.wall_ms);
  out->set_deleted(v.deleted);
}

}  // namespace stig::replication
