#include "replication/write_ids.h"

#include <algorithm>
#include <bitset>
#include <tuple>

#include "replication/hash.h"
#include "replication/key_state.h"

namespace stig::replication {

namespace {

// --- layout ----------------------------------------------------------------------

void put_varint(std::string& out, uint64_t v) {
  while (v >= 0x80) {
    out.push_back(static_cast<char>((v & 0x7f) | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<char>(v));
}

void put_bytes(std::string& out, std::string_view b) {
  out.push_back(static_cast<char>(static_cast<uint8_t>(b.size())));
  out.append(b);
}

uint64_t zigzag(int64_t v) { return (static_cast<uint64_t>(v) << 1) ^ static_cast<uint64_t>(v >> 63); }
int64_t unzigzag(uint64_t v) { return static_cast<int64_t>(v >> 1) ^ -static_cast<int64_t>(v & 1); }

class Reader {
 public:
  explicit Reader(std::string_view b) : b_(b) {}
  bool done() const { return pos_ == b_.size(); }
  // Canonical LEB128: at most 10 bytes, no redundant trailing zero byte.
  bool varint(uint64_t& v) {
    v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (pos_ == b_.size()) return false;
      const auto byte = static_cast<uint8_t>(b_[pos_++]);
      if (shift == 63 && byte > 1) return false;
      v |= uint64_t{byte & 0x7fu} << shift;
      if (!(byte & 0x80)) return byte != 0 || shift == 0;
    }
    return false;
  }
  bool bytes(std::string_view& out, size_t min, size_t max) {
    if (pos_ == b_.size()) return false;
    const size_t n = static_cast<uint8_t>(b_[pos_++]);
    if (n < min || n > max || b_.size() - pos_ < n) return false;
    out = b_.substr(pos_, n);
    pos_ += n;
    return true;
  }
  bool u8(uint8_t& out) {
    if (pos_ == b_.size()) return false;
    out = static_cast<uint8_t>(b_[pos_++]);
    return true;
  }
  bool view(std::string_view& out, uint64_t n) {
    if (b_.size() - pos_ < n) return false;
    out = b_.substr(pos_, n);
    pos_ += n;
    return true;
  }
  bool fixed64(uint64_t& out) {
    if (b_.size() - pos_ < 8) return false;
    out = 0;
    for (int i = 0; i < 8; ++i) out |= uint64_t{static_cast<uint8_t>(b_[pos_ + i])} << (8 * i);
    pos_ += 8;
    return true;
  }

 private:
  std::string_view b_;
  size_t pos_ = 0;
};

void put_fixed64(std::string& out, uint64_t v) {
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

auto dot_key(const WriteRecord& r) { return std::make_tuple(r.node, r.dot); }
auto payload(const WriteRecord& r) { return std::make_tuple(r.id, r.delta, r.cut_context); }
bool same_write(const WriteRecord& a, const WriteRecord& b) { return a.id == b.id; }
// Window of a record: 0 unpinned, 1 pinned quorum/all write, 2 retry.
int window(const WriteRecord& r) { return r.flags & kWriteRetry ? 2 : r.flags & kWritePinned ? 1 : 0; }
bool pinned(const WriteRecord& r) { return window(r) != 0; }
constexpr size_t kWindow[3] = {kWriteIdsPerNode, kPinnedWriteIdsPerNode, kRetryWriteIdsPerNode};

uint64_t floor_of(const WriteLedger& l, std::string_view node) {
  for (const auto& [n, f] : l.floors)
    if (n == node) return f;
  return 0;
}

void raise_floor(WriteLedger& l, std::string_view node, uint64_t f) {
  auto it = std::lower_bound(l.floors.begin(), l.floors.end(), node,
                             [](const auto& e, std::string_view n) { return e.first < n; });
  if (it != l.floors.end() && it->first == node) {
    it->second = std::max(it->second, f);
  } else {
    l.floors.insert(it, {node, f});
  }
}

// Per node: keeps the kPinnedWriteIdsPerNode highest pinned dots, then,
// above the floor raised over the pinned ones it cut, the kWriteIdsPerNode
// highest unpinned dots, and raises the floor over everything it cut. (A
// pinned record may lie below the floor: the floor bounds what was cut; an
// unpinned one never does.) Records cut from part of the records are cut
// from the whole too, so the result does not depend on the merge order.
void cut(WriteLedger& l) {
  size_t out = 0;
  for (size_t i = 0; i < l.records.size();) {
    size_t end = i;
    while (end < l.records.size() && l.records[end].node == l.records[i].node) ++end;
    const std::string_view node = l.records[i].node;
    uint64_t f = floor_of(l, node);
    const uint64_t f0 = f;
    size_t kept[3] = {0, 0, 0};
    for (size_t k = end; k-- > i;) {  // pinned, highest dots first
      WriteRecord& r = l.records[k];
      if (!pinned(r) || ++kept[window(r)] <= kWindow[window(r)]) continue;
      f = std::max(f, r.dot);
      r.dot = 0;  // marked: dropped below
    }
    size_t n = 0;
    const uint64_t above = f;
    for (size_t k = end; k-- > i;) {  // unpinned, highest dots first
      WriteRecord& r = l.records[k];
      if (pinned(r) || r.dot == 0 || (r.dot > above && ++n <= kWriteIdsPerNode)) continue;
      f = std::max(f, r.dot);
      r.dot = 0;
    }
    if (f > f0) raise_floor(l, node, f);
    for (size_t k = i; k < end; ++k)
      if (l.records[k].dot != 0) l.records[out++] = l.records[k];
    i = end;
  }
  l.records.resize(out);
}

// Indices of records grouped by write id (client id, seq), each group in
// (node, dot) order: copies of one write, the first counts.
std::vector<size_t> by_write_id(const WriteLedger& l) {
  std::vector<size_t> idx(l.records.size());
  for (size_t i = 0; i < idx.size(); ++i) idx[i] = i;
  std::sort(idx.begin(), idx.end(), [&](size_t x, size_t y) {
    const auto& a = l.records[x];
    const auto& b = l.records[y];
    return std::make_tuple(a.id, a.node, a.dot) < std::make_tuple(b.id, b.node, b.dot);
  });
  return idx;
}

bool has_copies(const WriteLedger& l) {
  for (size_t i = 0; i < l.records.size(); ++i)
    for (size_t j = i + 1; j < l.records.size(); ++j)
      if (same_write(l.records[i], l.records[j])) return true;
  return false;
}

bool live(const pb::KeyState& state, const WriteRecord& r) {
  for (const auto& s : state.siblings())
    if (s.dot_counter() == r.dot && s.dot_node() == r.node) return true;
  return false;
}

// Registers: of the copies of one write id, only the first (smallest (node,
// dot)) keeps its sibling; the others' are dropped and marked collapsed. A
// copy whose sibling is gone without that mark was superseded by a later
// write (a put or delete whose context covered it): the write was
// overwritten, and no copy of it stays. A dropped sibling's dot stays in the
// context, so the drop spreads like a delete. Returns true if anything changed.
bool collapse_register_copies(pb::KeyState& state, WriteLedger& l) {
  if (!has_copies(l)) return false;
  const std::vector<size_t> idx = by_write_id(l);
  std::vector<std::pair<std::string_view, uint64_t>> drop;
  bool changed = false;
  for (size_t i = 0; i < idx.size();) {
    size_t end = i + 1;
    while (end < idx.size() && same_write(l.records[idx[i]], l.records[idx[end]])) ++end;
    std::vector<WriteRecord*> copies;
    for (size_t k = i; k < end; ++k)
      if (!(l.records[idx[k]].flags & kWriteNoSibling)) copies.push_back(&l.records[idx[k]]);
    i = end;
    if (copies.size() < 2) continue;
    const bool first_live = live(state, *copies[0]);
    bool superseded = !first_live && !(copies[0]->flags & kWriteCollapsed);
    for (size_t c = 1; c < copies.size(); ++c) {
      WriteRecord& copy = *copies[c];
      const bool is_live = live(state, copy);
      superseded |= !is_live && !(copy.flags & kWriteCollapsed);
      if (!(copy.flags & kWriteCollapsed)) copy.flags |= kWriteCollapsed, changed = true;
      if (is_live) drop.emplace_back(copy.node, copy.dot);
    }
    if (superseded && first_live) drop.emplace_back(copies[0]->node, copies[0]->dot);
  }
  if (!drop.empty()) {
    auto* sibs = state.mutable_siblings();
    int out = 0;
    for (int i = 0; i < sibs->size(); ++i) {
      const auto& s = sibs->Get(i);
      const bool gone = std::any_of(drop.begin(), drop.end(), [&](const auto& d) {
        return s.dot_counter() == d.second && s.dot_node() == d.first;
      });
      if (gone) continue;
      if (out != i) sibs->SwapElements(out, i);
      ++out;
    }
    while (sibs->size() > out) sibs->RemoveLast();
    changed = true;
  }
  return changed;
}

// Scratch ledgers and buffer, reused so that the common paths (a write, a
// push merged) allocate nothing once warm. Views in them are valid only
// within one call.
WriteLedger& scratch(int i) {
  thread_local WriteLedger ledgers[3];
  return ledgers[i];
}

// A peer's state is checked, learnt from and merged in turn, each decoding
// its write ids: the last bytes decoded are kept (copied, so the views stay
// valid) and their ledger reused while the same bytes come again. nullptr
// when they do not decode.
const WriteLedger* decoded(std::string_view bytes) {
  thread_local std::string memo;
  thread_local WriteLedger ledger;
  thread_local bool valid = false, used = false;
  if (!used || bytes != memo) {
    memo.assign(bytes);
    valid = decode_writes(memo, ledger).is_ok();
    used = true;
  }
  return valid ? &ledger : nullptr;
}

// Replaces state.writes with the encoding of `l` (swapping buffers, so the
// old one is reused). Returns true if the bytes changed.
bool store_writes(pb::KeyState& state, const WriteLedger& l) {
  thread_local std::string buf;
  encode_writes_into(l, buf);
  if (buf == state.writes()) return false;
  state.mutable_writes()->swap(buf);
  return true;
}

}  // namespace

uint64_t write_id(std::string_view client_id, uint64_t seq) {
  return mix64(hash_bytes(client_id, 0x5772697465496473ULL) ^ mix64(seq ^ 0x9e3779b97f4a7c15ULL));
}

Status decode_writes(std::string_view bytes, WriteLedger& out) {
  out.floors.clear();
  out.records.clear();
  if (bytes.empty()) return Status::ok();
  const auto bad = [](const char* what) { return Status::invalid_argument(std::string("write ids: ") + what); };
  Reader r(bytes);
  uint64_t n = 0;
  if (!r.varint(n) || n > bytes.size() || n > 255) return bad("node count does not decode");
  thread_local std::vector<std::string_view> nodes;
  nodes.clear();
  std::bitset<256> used;  // nodes without a floor must name a record
  for (uint64_t i = 0; i < n; ++i) {
    std::string_view node;
    uint64_t f = 0;
    if (!r.bytes(node, 1, kMaxWriteNodeBytes) || !r.varint(f)) return bad("node does not decode");
    if (f > kMaxDotCounter) return bad("floor out of range");
    if (!nodes.empty() && !(nodes.back() < node)) return bad("nodes not sorted");
    nodes.push_back(node);
    if (f) out.floors.emplace_back(node, f), used[i] = true;
  }
  if (!r.varint(n) || n > bytes.size()) return bad("record count does not decode");
  out.records.reserve(n);
  size_t kept[3] = {0, 0, 0};
  for (uint64_t i = 0; i < n; ++i) {
    WriteRecord w;
    uint8_t node_index = 0;
    if (!r.u8(node_index) || node_index >= nodes.size() || !r.varint(w.dot) || !r.fixed64(w.id) || !r.u8(w.flags))
      return bad("record does not decode");
    if (w.flags & ~kWriteKnownFlags) return bad("unknown record flags");
    if (w.flags & kWriteHasDelta) {
      uint64_t z = 0;
      if (!r.varint(z) || z == 0) return bad("record delta does not decode");
      w.delta = unzigzag(z);
      w.flags &= static_cast<uint8_t>(~kWriteHasDelta);
    }
    if (w.flags & kWriteCutContext) {
      uint64_t len = 0;
      if (!r.varint(len) || len > kMaxCutContextBytes || !r.view(w.cut_context, len))
        return bad("record context does not decode");
    }
    w.node = nodes[node_index];
    used[node_index] = true;
    if (w.dot == 0 || w.dot > kMaxDotCounter) return bad("record dot out of range");
    const bool same_node = !out.records.empty() && out.records.back().node == w.node;
    if (!out.records.empty() && !(dot_key(out.records.back()) < dot_key(w))) return bad("records not sorted");
    if (!same_node) kept[0] = kept[1] = kept[2] = 0;
    if (++kept[window(w)] > kWindow[window(w)]) return bad("more records of one node than a key keeps");
    if (!pinned(w) && w.dot <= floor_of(out, w.node)) return bad("record at or below its node's floor");
    out.records.push_back(w);
  }
  if (!r.done()) return bad("trailing bytes");
  if (used.count() != nodes.size()) return bad("node with neither a floor nor a record");
  return Status::ok();
}

std::string encode_writes(const WriteLedger& l) {
  std::string out;
  encode_writes_into(l, out);
  return out;
}

void encode_writes_into(const WriteLedger& l, std::string& out) {
  out.clear();
  if (l.floors.empty() && l.records.empty()) return;
  // The node table: every node with a floor or a record, sorted.
  thread_local std::vector<std::string_view> nodes;
  nodes.clear();
  for (const auto& [node, f] : l.floors) nodes.push_back(node);
  for (const auto& w : l.records)
    if (nodes.empty() || std::find(nodes.begin(), nodes.end(), w.node) == nodes.end()) nodes.push_back(w.node);
  std::sort(nodes.begin(), nodes.end());
  out.reserve(2 + nodes.size() * 8 + l.records.size() * 16);
  put_varint(out, nodes.size());
  for (const auto node : nodes) {
    put_bytes(out, node);
    put_varint(out, floor_of(l, node));
  }
  put_varint(out, l.records.size());
  for (const auto& w : l.records) {
    out.push_back(static_cast<char>(std::lower_bound(nodes.begin(), nodes.end(), w.node) - nodes.begin()));
    put_varint(out, w.dot);
    put_fixed64(out, w.id);
    out.push_back(static_cast<char>(w.flags | (w.delta != 0 ? kWriteHasDelta : 0)));
    if (w.delta != 0) put_varint(out, zigzag(w.delta));
    if (w.flags & kWriteCutContext) {
      put_varint(out, w.cut_context.size());
      out.append(w.cut_context);
    }
  }
}

std::optional<WriteRecord> find_write(const pb::KeyState& state, std::string_view client_id, uint64_t seq) {
  if (state.writes().empty()) return std::nullopt;
  WriteLedger& l = scratch(0);
  if (!decode_writes(state.writes(), l).is_ok()) return std::nullopt;
  const uint64_t id = write_id(client_id, seq);
  for (const auto& w : l.records)  // (node, dot) order: the first match counts
    if (w.id == id) return w;
  return std::nullopt;
}

uint64_t write_floor(const pb::KeyState& state, std::string_view node) {
  if (state.writes().empty()) return 0;
  WriteLedger& l = scratch(0);
  if (!decode_writes(state.writes(), l).is_ok()) return 0;
  return floor_of(l, node);
}

Status check_write_nodes(const pb::KeyState& state, const std::function<bool(std::string_view)>& member) {
  if (state.writes().empty()) return Status::ok();
  const WriteLedger* ledger = decoded(state.writes());
  if (!ledger) return Status::invalid_argument("write ids do not decode");
  const WriteLedger& l = *ledger;
  for (const auto& [node, floor] : l.floors)
    if (!member(node)) return Status::invalid_argument("write ids name a node outside the cluster");
  for (const auto& w : l.records) {
    if (!member(w.node)) return Status::invalid_argument("write ids name a node outside the cluster");
    if (!(w.flags & kWriteCutContext)) continue;
    pb::VersionVector vv;
    if (!decode_context(w.cut_context, vv).is_ok()) return Status::invalid_argument("write ids: bad context");
    for (const auto& e : vv.entries())
      if (!member(e.node())) return Status::invalid_argument("write ids name a node outside the cluster");
  }
  return Status::ok();
}

void for_each_write_dot(const pb::KeyState& state, const std::function<void(std::string_view, uint64_t)>& f) {
  if (state.writes().empty()) return;
  const WriteLedger* l = decoded(state.writes());
  if (!l) return;
  for (const auto& [node, floor] : l->floors) f(node, floor);
  for (const auto& w : l->records) f(w.node, w.dot);
}

bool any_write_floor(const pb::KeyState& state) {
  if (state.writes().empty()) return false;
  WriteLedger& l = scratch(0);
  return decode_writes(state.writes(), l).is_ok() && !l.floors.empty();
}

void record_write(pb::KeyState& state, std::string_view node, uint64_t dot, std::string_view client_id, uint64_t seq,
                  int64_t delta, uint8_t flags, std::string_view cut_context) {
  if (client_id.empty() || node.empty() || node.size() > kMaxWriteNodeBytes) return;
  WriteLedger& l = scratch(0);
  if (!decode_writes(state.writes(), l).is_ok()) decode_writes({}, l);  // states are validated: cannot happen
  if (cut_context.size() > kMaxCutContextBytes) {  // cannot happen: contexts name cluster nodes
    cut_context = {};
    flags = static_cast<uint8_t>(flags & ~kWriteCutContext);
  }
  WriteRecord w{node, dot, write_id(client_id, seq), delta, static_cast<uint8_t>(flags & ~kWriteHasDelta),
                cut_context};
  auto pos = std::upper_bound(l.records.begin(), l.records.end(), w,
                              [](const WriteRecord& a, const WriteRecord& b) { return dot_key(a) < dot_key(b); });
  l.records.insert(pos, w);
  cut(l);
  store_writes(state, l);
}

bool merge_writes(pb::KeyState& local, const pb::KeyState& remote, bool kernel_changed) {
  const bool is_register = local.type() == pb::REGISTER;
  if (remote.writes() == local.writes()) {
    if (!is_register || !kernel_changed || local.writes().empty()) return false;
    // Same write ids, but siblings moved: a copy may have lost its sibling.
    WriteLedger& l = scratch(0);
    if (!decode_writes(local.writes(), l).is_ok()) return false;
    if (!collapse_register_copies(local, l)) return false;
    store_writes(local, l);
    return true;
  }
  WriteLedger& a = scratch(0);
  const WriteLedger* remote_ledger = decoded(remote.writes());
  if (!decode_writes(local.writes(), a).is_ok() || !remote_ledger) return false;
  const WriteLedger& b = *remote_ledger;
  WriteLedger& m = scratch(2);
  m.floors.clear();
  m.records.clear();
  // Floors: pointwise maximum.
  m.floors.reserve(a.floors.size() + b.floors.size());
  for (size_t i = 0, j = 0; i < a.floors.size() || j < b.floors.size();) {
    if (j == b.floors.size() || (i < a.floors.size() && a.floors[i].first < b.floors[j].first)) {
      m.floors.push_back(a.floors[i++]);
    } else if (i == a.floors.size() || b.floors[j].first < a.floors[i].first) {
      m.floors.push_back(b.floors[j++]);
    } else {
      m.floors.emplace_back(a.floors[i].first, std::max(a.floors[i].second, b.floors[j].second));
      ++i, ++j;
    }
  }
  // Records: union by (node, dot). Correct nodes never send two different
  // records with one dot; if a peer does, the smaller payload wins on every
  // replica alike, and flags join.
  m.records.reserve(a.records.size() + b.records.size());
  for (size_t i = 0, j = 0; i < a.records.size() || j < b.records.size();) {
    if (j == b.records.size() || (i < a.records.size() && dot_key(a.records[i]) < dot_key(b.records[j]))) {
      m.records.push_back(a.records[i++]);
    } else if (i == a.records.size() || dot_key(b.records[j]) < dot_key(a.records[i])) {
      m.records.push_back(b.records[j++]);
    } else {
      WriteRecord w = payload(b.records[j]) < payload(a.records[i]) ? b.records[j] : a.records[i];
      w.flags = a.records[i].flags | b.records[j].flags;
      m.records.push_back(w);
      ++i, ++j;
    }
  }
  cut(m);
  bool changed = is_register && collapse_register_copies(local, m);
  // Views point into local and remote: store_writes encodes before replacing.
  changed |= store_writes(local, m);
  return changed;
}

bool compensate_duplicate_adds(pb::KeyState& state, std::string_view self) {
  if (state.type() != pb::COUNTER || state.writes().empty()) return false;
  WriteLedger& l = scratch(0);
  if (!decode_writes(state.writes(), l).is_ok() || !has_copies(l)) return false;
  const std::vector<size_t> idx = by_write_id(l);
  bool changed = false;
  for (size_t k = 1; k < idx.size(); ++k) {
    WriteRecord& w = l.records[idx[k]];
    // Not the first copy of its write id: the first one counts.
    if (w.node != self || (w.flags & kWriteCompensated) || !same_write(l.records[idx[k - 1]], w)) continue;
    pb::CounterEntry* e = nullptr;
    for (auto& c : *state.mutable_counter())
      if (c.node() == self) e = &c;
    if (!e) continue;  // nothing of ours to subtract from (a forged record)
    const uint64_t magnitude = w.delta >= 0 ? static_cast<uint64_t>(w.delta) : ~static_cast<uint64_t>(w.delta) + 1;
    // Add the opposite: totals only grow, so the subtraction merges like any add.
    if (w.delta >= 0)
      e->set_decrements(e->decrements() + magnitude);
    else
      e->set_increments(e->increments() + magnitude);
    w.flags |= kWriteCompensated;
    changed = true;
  }
  if (changed) store_writes(state, l);
  return changed;
}

Status validate_writes(const pb::KeyState& state) {
  if (state.writes().empty()) return Status::ok();
  const WriteLedger* ledger = decoded(state.writes());
  if (!ledger) return decode_writes(state.writes(), scratch(0));  // fails again, saying why
  for (const auto& w : ledger->records) {
    if (state.type() == pb::COUNTER) {
      if (w.flags & (kWriteCollapsed | kWriteNoSibling))
        return Status::invalid_argument("write ids: counter record with register flags");
    } else {
      if (w.delta != 0 || (w.flags & kWriteCompensated))
        return Status::invalid_argument("write ids: register or set record with a delta");
      if (state.type() == pb::SET && (w.flags & kWriteCollapsed))
        return Status::invalid_argument("write ids: collapsed copy outside a register");
    }
    if (w.flags & kWriteCutContext) {
      if (state.type() != pb::REGISTER) return Status::invalid_argument("write ids: a cut context outside a register");
      pb::VersionVector vv;
      if (auto s = decode_context(w.cut_context, vv); !s.is_ok())
        return Status::invalid_argument("write ids: " + s.message());
    }
  }
  return Status::ok();
}

}  // namespace stig::replication
