#include "replication/key_state.h"

#include <algorithm>
#include <set>
#include <tuple>
#include <vector>

#include "replication/invariant.h"
#include "replication/write_ids.h"

namespace stig::replication {

namespace {

bool dot_less(const pb::Sibling& a, const pb::Sibling& b) {
  if (a.dot_node() != b.dot_node()) return a.dot_node() < b.dot_node();
  return a.dot_counter() < b.dot_counter();
}

bool same_dot(const pb::Sibling& a, const pb::Sibling& b) {
  return a.dot_counter() == b.dot_counter() && a.dot_node() == b.dot_node();
}

template <typename Pred>
void erase_siblings_if(pb::KeyState& state, Pred pred) {
  auto* sibs = state.mutable_siblings();
  int out = 0;
  for (int i = 0; i < sibs->size(); ++i) {
    if (pred(sibs->Get(i))) continue;
    if (out != i) sibs->SwapElements(out, i);
    ++out;
  }
  while (sibs->size() > out) sibs->RemoveLast();
}

void insert_sibling_sorted(pb::KeyState& state, pb::Sibling&& sib) {
  auto* sibs = state.mutable_siblings();
  *sibs->Add() = std::move(sib);
  // Bubble the new last element into place; sibling lists are short.
  for (int i = sibs->size() - 1; i > 0 && dot_less(sibs->Get(i), sibs->Get(i - 1)); --i) sibs->SwapElements(i, i - 1);
}

pb::Sibling make_sibling(std::string_view node, uint64_t counter, std::string_view value, const WriteMeta& meta) {
  pb::Sibling s;
  s.set_dot_node(std::string(node));
  s.set_dot_counter(counter);
  s.set_value(std::string(value));
  s.set_modified_by(std::string(meta.agent));
  s.set_modified_at_ms(meta.wall);
  return s;
}

bool covered(const pb::VersionVector& ctx, const pb::Sibling& s) {
  return vv_covers(ctx, s.dot_node(), s.dot_counter());
}

}  // namespace

// --- version vectors --------------------------------------------------------

uint64_t vv_get(const pb::VersionVector& vv, std::string_view node) {
  for (const auto& e : vv.entries()) {
    if (e.node() == node) return e.counter();
    if (e.node() > node) break;
  }
  return 0;
}

void vv_raise(pb::VersionVector& vv, std::string_view node, uint64_t counter) {
  if (counter == 0) return;
  auto* entries = vv.mutable_entries();
  int i = 0;
  for (; i < entries->size(); ++i) {
    auto* e = entries->Mutable(i);
    if (e->node() == node) {
      if (e->counter() < counter) e->set_counter(counter);
      return;
    }
    if (e->node() > node) break;
  }
  auto* added = entries->Add();
  added->set_node(std::string(node));
  added->set_counter(counter);
  for (int j = entries->size() - 1; j > i; --j) entries->SwapElements(j, j - 1);
}

bool vv_join(pb::VersionVector& into, const pb::VersionVector& from) {
  const auto& a = into.entries();
  const auto& b = from.entries();
  // First pass: does `from` add anything? Most joins (a push of a state we
  // have seen) change nothing and must not allocate.
  bool changed = false;
  for (int i = 0, j = 0; j < b.size() && !changed;) {
    if (i == a.size() || b[j].node() < a[i].node()) {
      changed = true;
    } else if (a[i].node() < b[j].node()) {
      ++i;
    } else {
      changed = a[i].counter() < b[j].counter();
      ++i, ++j;
    }
  }
  if (!changed) return false;
  google::protobuf::RepeatedPtrField<pb::VersionVectorEntry> merged;
  merged.Reserve(a.size() + b.size());
  int i = 0, j = 0;
  while (i < a.size() || j < b.size()) {
    if (j == b.size() || (i < a.size() && a[i].node() < b[j].node())) {
      *merged.Add() = a[i++];
    } else if (i == a.size() || b[j].node() < a[i].node()) {
      *merged.Add() = b[j++];
    } else {
      pb::VersionVectorEntry* e = merged.Add();
      *e = a[i];
      if (b[j].counter() > e->counter()) e->set_counter(b[j].counter());
      ++i, ++j;
    }
  }
  into.mutable_entries()->Swap(&merged);
  return true;
}

bool vv_descends(const pb::VersionVector& a, const pb::VersionVector& b) {
  const auto& x = a.entries();
  const auto& y = b.entries();
  int i = 0;
  for (const auto& e : y) {
    while (i < x.size() && x[i].node() < e.node()) ++i;
    if (i == x.size() || x[i].node() != e.node() || x[i].counter() < e.counter()) return false;
  }
  return true;
}

Status vv_validate(const pb::VersionVector& vv) {
  const std::string* prev = nullptr;
  for (const auto& e : vv.entries()) {
    if (e.node().empty()) return Status::invalid_argument("version vector entry without a node");
    if (e.counter() == 0) return Status::invalid_argument("version vector entry with a zero counter");
    if (e.counter() > kMaxDotCounter) return Status::invalid_argument("version vector entry above the dot limit");
    if (prev && !(*prev < e.node())) return Status::invalid_argument("version vector entries not sorted");
    prev = &e.node();
  }
  return Status::ok();
}

std::string encode_context(const pb::VersionVector& vv) {
  std::string out;
  vv.SerializeToString(&out);
  return out;
}

Status decode_context(std::string_view bytes, pb::VersionVector& out) {
  out.Clear();
  if (bytes.empty()) return Status::ok();
  if (!out.ParseFromArray(bytes.data(), static_cast<int>(bytes.size())))
    return Status::invalid_argument("context does not decode");
  if (auto s = vv_validate(out); !s.is_ok()) return Status::invalid_argument("context is invalid: " + s.message());
  return Status::ok();
}

// --- registers and sets ------------------------------------------------------

size_t surviving_siblings(const pb::KeyState& state, const pb::VersionVector& ctx) {
  size_t n = 0;
  for (const auto& s : state.siblings())
    if (!covered(ctx, s)) ++n;
  return n;
}

size_t surviving_bytes(const pb::KeyState& state, const pb::VersionVector& ctx) {
  size_t n = 0;
  for (const auto& s : state.siblings())
    if (!covered(ctx, s)) n += s.value().size() + s.modified_by().size();
  return n;
}

void register_write(pb::KeyState& state, const pb::VersionVector& ctx, std::string_view node, uint64_t counter,
                    std::string_view value, bool tombstone, const WriteMeta& meta) {
  STIG_INVARIANT(state.type() == pb::REGISTER, "register write on a non-register");
  STIG_INVARIANT(counter > vv_get(state.context(), node), "new dot must be above everything the key has seen");
  erase_siblings_if(state, [&](const pb::Sibling& s) { return covered(ctx, s); });
  vv_join(*state.mutable_context(), ctx);
  vv_raise(*state.mutable_context(), node, counter);
  pb::Sibling sib = make_sibling(node, counter, tombstone ? std::string_view() : value, meta);
  sib.set_tombstone(tombstone);
  insert_sibling_sorted(state, std::move(sib));
}

void set_add(pb::KeyState& state, std::string_view element, std::string_view node, uint64_t counter,
             const WriteMeta& meta) {
  STIG_INVARIANT(state.type() == pb::SET, "set add on a non-set");
  STIG_INVARIANT(counter > vv_get(state.context(), node), "new dot must be above everything the key has seen");
  erase_siblings_if(state, [&](const pb::Sibling& s) { return s.value() == element; });
  vv_raise(*state.mutable_context(), node, counter);
  insert_sibling_sorted(state, make_sibling(node, counter, element, meta));
}

bool set_remove(pb::KeyState& state, std::string_view element) {
  STIG_INVARIANT(state.type() == pb::SET, "set remove on a non-set");
  const int before = state.siblings_size();
  erase_siblings_if(state, [&](const pb::Sibling& s) { return s.value() == element; });
  return state.siblings_size() != before;
}

std::vector<std::string> set_elements(const pb::KeyState& state) {
  std::set<std::string> unique;
  for (const auto& s : state.siblings()) unique.insert(s.value());
  return {unique.begin(), unique.end()};
}

// --- counters ------------------------------------------------------------------

void counter_add(pb::KeyState& state, std::string_view node, int64_t delta, const WriteMeta& meta) {
  STIG_INVARIANT(state.type() == pb::COUNTER, "counter add on a non-counter");
  auto* entries = state.mutable_counter();
  pb::CounterEntry* e = nullptr;
  for (auto& c : *entries)
    if (c.node() == node) e = &c;
  if (!e) {
    e = entries->Add();
    e->set_node(std::string(node));
    for (int j = entries->size() - 1; j > 0 && entries->Get(j).node() < entries->Get(j - 1).node(); --j) {
      entries->SwapElements(j, j - 1);
      e = entries->Mutable(j - 1);
    }
  }
  if (delta >= 0)
    e->set_increments(e->increments() + static_cast<uint64_t>(delta));
  else
    e->set_decrements(e->decrements() + (~static_cast<uint64_t>(delta) + 1));
  e->set_modified_by(std::string(meta.agent));
  e->set_modified_at_ms(meta.wall);
}

int64_t counter_value(const pb::KeyState& state) {
  uint64_t total = 0;  // two's complement wraps like the sum of int64 deltas
  for (const auto& c : state.counter()) total += c.increments() - c.decrements();
  return static_cast<int64_t>(total);
}

// --- merge -----------------------------------------------------------------------

namespace {

bool merge_kernel(pb::KeyState& local, const pb::KeyState& remote) {
  const auto& ls = local.siblings();
  const auto& rs = remote.siblings();
  google::protobuf::RepeatedPtrField<pb::Sibling> merged;
  bool changed = false;
  int i = 0, j = 0;
  while (i < ls.size() || j < rs.size()) {
    if (j == rs.size() || (i < ls.size() && dot_less(ls[i], rs[j]))) {
      // Only here: keep unless the remote has seen it (and so dropped it).
      if (!covered(remote.context(), ls[i]))
        *merged.Add() = ls[i];
      else
        changed = true;
      ++i;
    } else if (i == ls.size() || dot_less(rs[j], ls[i])) {
      if (!covered(local.context(), rs[j])) {
        *merged.Add() = rs[j];
        changed = true;
      }
      ++j;
    } else {
      STIG_INVARIANT(same_dot(ls[i], rs[j]), "merge cursor out of step");
      *merged.Add() = ls[i];
      ++i;
      ++j;
    }
  }
  if (changed) local.mutable_siblings()->Swap(&merged);
  changed |= vv_join(*local.mutable_context(), remote.context());
  return changed;
}

// merge_kernel, moving siblings out of `remote` instead of copying them: the
// siblings of both sides are released, then each is either re-added to
// `local` in dot order or deleted. No sibling is copied or allocated.
bool merge_kernel_consuming(pb::KeyState& local, pb::KeyState& remote) {
  auto* lsf = local.mutable_siblings();
  auto* rsf = remote.mutable_siblings();
  const int n = lsf->size(), m = rsf->size();
  // Sibling lists are short (bounded by the sibling limit times the cluster
  // size); the common case fits on the stack.
  constexpr int kInline = 16;
  pb::Sibling* inline_buf[2 * kInline];
  std::vector<pb::Sibling*> heap_buf;
  pb::Sibling** ls = inline_buf;
  if (n > kInline || m > kInline) {
    heap_buf.resize(static_cast<size_t>(n + m));
    ls = heap_buf.data();
  }
  pb::Sibling** rs = ls + n;
  lsf->ExtractSubrange(0, n, ls);
  rsf->ExtractSubrange(0, m, rs);
  bool changed = false;
  int i = 0, j = 0;
  while (i < n || j < m) {
    if (j == m || (i < n && dot_less(*ls[i], *rs[j]))) {
      // Only here: keep unless the remote has seen it (and so dropped it).
      if (!covered(remote.context(), *ls[i])) {
        lsf->AddAllocated(ls[i]);
      } else {
        delete ls[i];
        changed = true;
      }
      ++i;
    } else if (i == n || dot_less(*rs[j], *ls[i])) {
      if (!covered(local.context(), *rs[j])) {
        lsf->AddAllocated(rs[j]);
        changed = true;
      } else {
        delete rs[j];
      }
      ++j;
    } else {
      STIG_INVARIANT(same_dot(*ls[i], *rs[j]), "merge cursor out of step");
      lsf->AddAllocated(ls[i]);
      delete rs[j];
      ++i;
      ++j;
    }
  }
  // The context: a remote that has seen everything local has (a push of a
  // newer write, the common case) simply replaces it.
  if (vv_descends(remote.context(), local.context())) {
    if (!vv_descends(local.context(), remote.context())) {
      local.mutable_context()->Swap(remote.mutable_context());
      changed = true;
    }
  } else {
    changed |= vv_join(*local.mutable_context(), remote.context());
  }
  return changed;
}

// Joins one node's counter entry into another. Totals only grow; the larger
// total is the later write at that node and carries its metadata. Adding
// zero changes only the metadata, so ties are broken by (time, agent) to keep
// the merge commutative. Returns true if `mine` changed, metadata included:
// a metadata-only change must still reach the disk and the Merkle tree, or
// replicas that differ only there never converge.
bool join_counter_entry(pb::CounterEntry& mine, const pb::CounterEntry& r) {
  const auto rank = [](const pb::CounterEntry& e) {
    return std::make_tuple(e.increments() + e.decrements(), e.modified_at_ms(), std::string_view(e.modified_by()));
  };
  const bool newer = rank(r) > rank(mine);
  bool changed = false;
  if (r.increments() > mine.increments()) mine.set_increments(r.increments()), changed = true;
  if (r.decrements() > mine.decrements()) mine.set_decrements(r.decrements()), changed = true;
  if (newer && (mine.modified_at_ms() != r.modified_at_ms() || mine.modified_by() != r.modified_by())) {
    mine.set_modified_by(r.modified_by());
    mine.set_modified_at_ms(r.modified_at_ms());
    changed = true;
  }
  return changed;
}

// One pass over both entry lists (sorted by node).
bool merge_counter(pb::KeyState& local, const pb::KeyState& remote) {
  const auto& ls = local.counter();
  const auto& rs = remote.counter();
  google::protobuf::RepeatedPtrField<pb::CounterEntry> merged;
  merged.Reserve(ls.size() + rs.size());
  bool changed = false;
  int i = 0, j = 0;
  while (i < ls.size() || j < rs.size()) {
    if (j == rs.size() || (i < ls.size() && ls[i].node() < rs[j].node())) {
      *merged.Add() = ls[i++];
    } else if (i == ls.size() || rs[j].node() < ls[i].node()) {
      *merged.Add() = rs[j++];
      changed = true;
    } else {
      pb::CounterEntry* m = merged.Add();
      *m = ls[i++];
      changed |= join_counter_entry(*m, rs[j++]);
    }
  }
  if (changed) local.mutable_counter()->Swap(&merged);
  return changed;
}

}  // namespace

bool merge_state(pb::KeyState& local, const pb::KeyState& remote) {
  STIG_INVARIANT(local.type() == remote.type() && local.key() == remote.key(), "merging different keys");
  const bool changed = local.type() == pb::COUNTER ? merge_counter(local, remote) : merge_kernel(local, remote);
  if (local.writes().empty() && remote.writes().empty()) return changed;
  return merge_writes(local, remote, changed) || changed;
}

bool merge_state(pb::KeyState& local, pb::KeyState&& remote) {
  STIG_INVARIANT(local.type() == remote.type() && local.key() == remote.key(), "merging different keys");
  // The kernel merge moves siblings and the context only: remote's write ids
  // are still there for merge_writes.
  const bool changed =
      local.type() == pb::COUNTER ? merge_counter(local, remote) : merge_kernel_consuming(local, remote);
  if (local.writes().empty() && remote.writes().empty()) return changed;
  return merge_writes(local, remote, changed) || changed;
}

bool is_tombstone_only(const pb::KeyState& state) {
  if (state.type() == pb::COUNTER) return false;
  for (const auto& s : state.siblings())
    if (!s.tombstone()) return false;
  return true;
}

Status validate_state(const pb::KeyState& state) {
  if (state.key().empty()) return Status::invalid_argument("key state without a key");
  if (!pb::ValueType_IsValid(state.type())) return Status::invalid_argument("key state with an unknown type");
  if (auto s = vv_validate(state.context()); !s.is_ok()) return s;
  const auto& sibs = state.siblings();
  for (int i = 0; i < sibs.size(); ++i) {
    const auto& s = sibs[i];
    if (s.dot_node().empty() || s.dot_counter() == 0) return Status::invalid_argument("sibling without a dot");
    if (!covered(state.context(), s)) return Status::invalid_argument("sibling dot outside the key's context");
    if (i > 0 && !dot_less(sibs[i - 1], s)) return Status::invalid_argument("siblings not sorted by dot");
    if (s.tombstone() && state.type() != pb::REGISTER) return Status::invalid_argument("tombstone outside a register");
  }
  if (state.type() == pb::COUNTER) {
    if (!sibs.empty() || !state.context().entries().empty())
      return Status::invalid_argument("counter with register fields");
    for (int i = 0; i < state.counter_size(); ++i) {
      if (state.counter(i).node().empty()) return Status::invalid_argument("counter entry without a node");
      if (i > 0 && !(state.counter(i - 1).node() < state.counter(i).node()))
        return Status::invalid_argument("counter entries not sorted");
    }
  } else if (state.counter_size() != 0) {
    return Status::invalid_argument("register or set with counter entries");
  }
  return validate_writes(state);
}

}  // namespace stig::replication
