#include "replication/key_state.h"

#include <algorithm>
#include <map>
#include <set>
#include <tuple>

#include "replication/invariant.h"

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

// --- applied writes ---------------------------------------------------------------

namespace {

// Identity of a record: (client id, seq, node, dot). Canonical order.
auto applied_identity(const pb::AppliedWrite& a) {
  return std::make_tuple(std::string_view(a.client_id()), a.seq(), std::string_view(a.node()), a.dot_counter());
}
bool applied_less(const pb::AppliedWrite& a, const pb::AppliedWrite& b) {
  return applied_identity(a) < applied_identity(b);
}
bool same_write(const pb::AppliedWrite& a, const pb::AppliedWrite& b) {
  return a.seq() == b.seq() && a.client_id() == b.client_id();
}

uint64_t highest_order(const pb::KeyState& state) {
  uint64_t top = 0;
  for (const auto& a : state.applied()) top = std::max(top, a.order());
  return top;
}

// Keeps, of each node's records, the kMaxAppliedWritesPerNode of highest
// (order, then lowest identity), in canonical order. A pure function of the
// set of records, so every replica cuts the same way, and a record once cut
// never returns (the records it lost to are kept).
void cut_applied(pb::KeyState& state) {
  auto* applied = state.mutable_applied();
  if (static_cast<size_t>(applied->size()) <= kMaxAppliedWritesPerNode) return;
  std::vector<int> rank(static_cast<size_t>(applied->size()));
  for (size_t i = 0; i < rank.size(); ++i) rank[i] = static_cast<int>(i);
  std::sort(rank.begin(), rank.end(), [&](int x, int y) {
    const auto& a = applied->Get(x);
    const auto& b = applied->Get(y);
    if (a.node() != b.node()) return a.node() < b.node();
    if (a.order() != b.order()) return a.order() > b.order();
    return applied_less(a, b);
  });
  std::vector<bool> keep(rank.size(), false);
  size_t kept_of_node = 0;
  for (size_t i = 0; i < rank.size(); ++i) {
    const bool same_node = i > 0 && applied->Get(rank[i]).node() == applied->Get(rank[i - 1]).node();
    kept_of_node = same_node ? kept_of_node + 1 : 1;
    keep[static_cast<size_t>(rank[i])] = kept_of_node <= kMaxAppliedWritesPerNode;
  }
  int out = 0;
  for (int i = 0; i < applied->size(); ++i) {
    if (!keep[static_cast<size_t>(i)]) continue;
    if (out != i) applied->SwapElements(out, i);
    ++out;
  }
  while (applied->size() > out) applied->RemoveLast();
}

// Joins one copy of a record into another with the same identity. Correct
// nodes never send differing copies; the join is still deterministic.
bool join_applied(pb::AppliedWrite& mine, const pb::AppliedWrite& r) {
  bool changed = false;
  if (std::make_tuple(r.order(), r.delta()) > std::make_tuple(mine.order(), mine.delta())) {
    mine.set_order(r.order());
    mine.set_delta(r.delta());
    changed = true;
  }
  if (r.compensated() && !mine.compensated()) mine.set_compensated(true), changed = true;
  if (r.collapsed() && !mine.collapsed()) mine.set_collapsed(true), changed = true;
  if (r.has_cut_context() &&
      (!mine.has_cut_context() || r.cut_context().SerializeAsString() < mine.cut_context().SerializeAsString())) {
    *mine.mutable_cut_context() = r.cut_context();
    changed = true;
  }
  return changed;
}

// Would joining `r` into its local copy `mine` change it?
bool join_changes(const pb::AppliedWrite& mine, const pb::AppliedWrite& r) {
  pb::AppliedWrite probe = mine;
  return join_applied(probe, r);
}

// Set union of two canonical record lists, then the cut. One pass; a first
// pass without copies finds the common case (a push of records already
// held) and returns at once.
bool merge_applied(pb::KeyState& local, const pb::KeyState& remote) {
  const auto& ls = local.applied();
  const auto& rs = remote.applied();
  if (rs.empty()) return false;
  bool adds = false;
  for (int i = 0, j = 0; j < rs.size() && !adds;) {
    if (i == ls.size() || applied_less(rs[j], ls[i])) {
      adds = true;
    } else if (applied_less(ls[i], rs[j])) {
      ++i;
    } else {
      adds = rs[j].order() != ls[i].order() || rs[j].delta() != ls[i].delta() ||
             rs[j].compensated() != ls[i].compensated() || rs[j].collapsed() != ls[i].collapsed() ||
             ((rs[j].has_cut_context() || ls[i].has_cut_context()) && join_changes(ls[i], rs[j]));
      ++i, ++j;
    }
  }
  if (!adds) return false;
  google::protobuf::RepeatedPtrField<pb::AppliedWrite> merged;
  merged.Reserve(ls.size() + rs.size());
  bool changed = false;
  int i = 0, j = 0;
  while (i < ls.size() || j < rs.size()) {
    if (j == rs.size() || (i < ls.size() && applied_less(ls[i], rs[j]))) {
      *merged.Add() = ls[i++];
    } else if (i == ls.size() || applied_less(rs[j], ls[i])) {
      *merged.Add() = rs[j++];
      changed = true;
    } else {
      pb::AppliedWrite* m = merged.Add();
      *m = ls[i++];
      changed |= join_applied(*m, rs[j++]);
    }
  }
  if (!changed) return false;
  local.mutable_applied()->Swap(&merged);
  cut_applied(local);
  return true;
}

// Registers: of the copies of one write id, only the first (smallest (node,
// dot)) stays; the others' siblings are dropped and their records marked
// collapsed. A copy whose sibling is gone without that mark was superseded
// by a later write (a put or delete with a context covering it): then the
// write was overwritten, and no copy stays. A dropped sibling's dot stays in
// the context, so the drop spreads like a delete and every replica ends with
// the same siblings. (Sets keep both copies of a duplicated add: the element
// shows once either way, and the next add or remove of it replaces or
// removes every dot it has seen. Collapsing there would let two duplicated
// adds that replaced each other's copies both vanish.)
void drop_duplicate_siblings(pb::KeyState& state) {
  auto* applied = state.mutable_applied();
  std::vector<std::pair<std::string, uint64_t>> drop;
  const auto live = [&](const pb::AppliedWrite& a) {
    for (const auto& s : state.siblings())
      if (s.dot_counter() == a.dot_counter() && s.dot_node() == a.node()) return true;
    return false;
  };
  for (int i = 0; i < applied->size();) {
    int end = i + 1;
    while (end < applied->size() && same_write(applied->Get(i), applied->Get(end))) ++end;
    std::vector<pb::AppliedWrite*> copies;
    for (int k = i; k < end; ++k)
      if (applied->Get(k).dot_counter() != 0) copies.push_back(applied->Mutable(k));
    i = end;
    if (copies.size() < 2) continue;
    const bool first_live = live(*copies[0]);
    bool superseded = !first_live && !copies[0]->collapsed();
    for (size_t c = 1; c < copies.size(); ++c) {
      pb::AppliedWrite& copy = *copies[c];
      const bool is_live = live(copy);
      superseded |= !is_live && !copy.collapsed();
      copy.set_collapsed(true);
      if (is_live) drop.emplace_back(copy.node(), copy.dot_counter());
    }
    if (superseded && first_live) drop.emplace_back(copies[0]->node(), copies[0]->dot_counter());
  }
  if (drop.empty()) return;
  erase_siblings_if(state, [&](const pb::Sibling& s) {
    for (const auto& [node, counter] : drop)
      if (s.dot_counter() == counter && s.dot_node() == node) return true;
    return false;
  });
}

}  // namespace

const pb::AppliedWrite* find_applied(const pb::KeyState& state, std::string_view client_id, uint64_t seq) {
  // Canonical order puts the copy with the smallest (node, dot) first.
  for (const auto& a : state.applied())
    if (a.seq() == seq && a.client_id() == client_id) return &a;
  return nullptr;
}

bool record_applied(pb::KeyState& state, std::string_view client_id, uint64_t seq, std::string_view node,
                    uint64_t dot_counter, int64_t delta, const pb::VersionVector* cut_context) {
  if (client_id.empty() || client_id.size() > kMaxClientIdBytes) return false;
  pb::AppliedWrite a;
  a.set_client_id(std::string(client_id));
  a.set_seq(seq);
  a.set_node(std::string(node));
  a.set_dot_counter(dot_counter);
  a.set_order(std::min(highest_order(state) + 1, kMaxDotCounter));
  a.set_delta(delta);
  if (cut_context) *a.mutable_cut_context() = *cut_context;
  auto* applied = state.mutable_applied();
  for (const auto& existing : *applied)
    if (!applied_less(existing, a) && !applied_less(a, existing)) return false;  // recorded already
  *applied->Add() = std::move(a);
  for (int i = applied->size() - 1; i > 0 && applied_less(applied->Get(i), applied->Get(i - 1)); --i)
    applied->SwapElements(i, i - 1);
  cut_applied(state);
  return true;
}

bool compensate_duplicate_adds(pb::KeyState& state, std::string_view self) {
  if (state.type() != pb::COUNTER) return false;
  auto* applied = state.mutable_applied();
  bool changed = false;
  for (int i = 1; i < applied->size(); ++i) {
    pb::AppliedWrite* a = applied->Mutable(i);
    // Not the first copy of its write id: the first one counts.
    if (a->node() != self || a->compensated() || !same_write(applied->Get(i - 1), *a)) continue;
    pb::CounterEntry* e = nullptr;
    for (auto& c : *state.mutable_counter())
      if (c.node() == self) e = &c;
    if (!e) continue;  // nothing of ours to subtract from (a forged record)
    const uint64_t magnitude =
        a->delta() >= 0 ? static_cast<uint64_t>(a->delta()) : ~static_cast<uint64_t>(a->delta()) + 1;
    // Add the opposite: totals only grow, so the subtraction merges like any add.
    if (a->delta() >= 0)
      e->set_decrements(e->decrements() + magnitude);
    else
      e->set_increments(e->increments() + magnitude);
    a->set_compensated(true);
    changed = true;
  }
  return changed;
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
  if (local.type() == pb::COUNTER) {
    const bool counted = merge_counter(local, remote);
    return merge_applied(local, remote) || counted;
  }
  bool changed = merge_kernel(local, remote);
  changed |= merge_applied(local, remote);
  // Duplicates can only appear when something new arrived.
  if (changed && local.type() == pb::REGISTER) drop_duplicate_siblings(local);
  return changed;
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
  std::map<std::string_view, size_t> applied_by_node;
  for (int i = 0; i < state.applied_size(); ++i) {
    const auto& a = state.applied(i);
    if (++applied_by_node[a.node()] > kMaxAppliedWritesPerNode)
      return Status::invalid_argument("more applied write ids of one node than a key keeps");
    if (a.client_id().empty() || a.client_id().size() > kMaxClientIdBytes)
      return Status::invalid_argument("applied write with an empty or over-long client id");
    if (a.node().empty()) return Status::invalid_argument("applied write without a node");
    if (a.order() == 0 || a.order() > kMaxDotCounter) return Status::invalid_argument("applied write order out of range");
    if (i > 0 && !applied_less(state.applied(i - 1), a))
      return Status::invalid_argument("applied writes not sorted or not unique");
    if (state.type() == pb::COUNTER) {
      if (a.dot_counter() != 0 || a.collapsed()) return Status::invalid_argument("counter add with a dot");
    } else {
      if (a.delta() != 0 || a.compensated()) return Status::invalid_argument("register or set write with a delta");
      if (a.collapsed() && state.type() != pb::REGISTER) return Status::invalid_argument("collapsed copy outside a register");
      if (a.dot_counter() != 0 && !vv_covers(state.context(), a.node(), a.dot_counter()))
        return Status::invalid_argument("applied write dot outside the key's context");
    }
    if (a.has_cut_context()) {
      if (state.type() != pb::REGISTER) return Status::invalid_argument("cut context outside a register");
      if (auto s = vv_validate(a.cut_context()); !s.is_ok()) return s;
    }
  }
  return Status::ok();
}

}  // namespace stig::replication
