#include "replication/write_ids.h"

#include <algorithm>
#include <tuple>

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

 private:
  std::string_view b_;
  size_t pos_ = 0;
};

auto dot_key(const WriteRecord& r) { return std::make_tuple(r.node, r.dot); }
auto payload(const WriteRecord& r) { return std::make_tuple(r.client_id, r.seq, r.delta); }
bool same_write(const WriteRecord& a, const WriteRecord& b) { return a.seq == b.seq && a.client_id == b.client_id; }

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

// Drops records at or below their node's floor, then keeps each node's
// kWriteIdsPerNode highest dots, raising the floor over the rest.
void cut(WriteLedger& l) {
  size_t out = 0;
  for (size_t i = 0; i < l.records.size();) {
    size_t end = i;
    while (end < l.records.size() && l.records[end].node == l.records[i].node) ++end;
    const std::string_view node = l.records[i].node;
    uint64_t f = floor_of(l, node);
    size_t first = i;
    while (first < end && l.records[first].dot <= f) ++first;
    if (end - first > kWriteIdsPerNode) {
      first = end - kWriteIdsPerNode;
      raise_floor(l, node, l.records[first - 1].dot);
    }
    for (size_t k = first; k < end; ++k) l.records[out++] = l.records[k];
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
    return std::make_tuple(a.client_id, a.seq, a.node, a.dot) < std::make_tuple(b.client_id, b.seq, b.node, b.dot);
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

}  // namespace

Status decode_writes(std::string_view bytes, WriteLedger& out) {
  out.floors.clear();
  out.records.clear();
  if (bytes.empty()) return Status::ok();
  const auto bad = [](const char* what) { return Status::invalid_argument(std::string("write ids: ") + what); };
  Reader r(bytes);
  uint64_t n = 0;
  if (!r.varint(n) || n > bytes.size()) return bad("floor count does not decode");
  out.floors.reserve(n);
  for (uint64_t i = 0; i < n; ++i) {
    std::string_view node;
    uint64_t f = 0;
    if (!r.bytes(node, 1, kMaxWriteNodeBytes) || !r.varint(f)) return bad("floor does not decode");
    if (f == 0 || f > kMaxDotCounter) return bad("floor out of range");
    if (!out.floors.empty() && !(out.floors.back().first < node)) return bad("floors not sorted");
    out.floors.emplace_back(node, f);
  }
  if (!r.varint(n) || n > bytes.size()) return bad("record count does not decode");
  out.records.reserve(n);
  size_t run = 0;
  for (uint64_t i = 0; i < n; ++i) {
    WriteRecord w;
    uint64_t delta = 0;
    if (!r.bytes(w.node, 1, kMaxWriteNodeBytes) || !r.varint(w.dot) || !r.bytes(w.client_id, 1, kMaxClientIdBytes) ||
        !r.varint(w.seq) || !r.varint(delta) || !r.u8(w.flags))
      return bad("record does not decode");
    w.delta = unzigzag(delta);
    if (w.dot == 0 || w.dot > kMaxDotCounter) return bad("record dot out of range");
    if (w.flags & ~kWriteKnownFlags) return bad("unknown record flags");
    if (!out.records.empty() && !(dot_key(out.records.back()) < dot_key(w))) return bad("records not sorted");
    run = !out.records.empty() && out.records.back().node == w.node ? run + 1 : 1;
    if (run > kWriteIdsPerNode) return bad("more records of one node than a key keeps");
    if (w.dot <= floor_of(out, w.node)) return bad("record at or below its node's floor");
    out.records.push_back(w);
  }
  if (!r.done()) return bad("trailing bytes");
  return Status::ok();
}

std::string encode_writes(const WriteLedger& l) {
  std::string out;
  if (l.floors.empty() && l.records.empty()) return out;
  out.reserve(2 + l.floors.size() * 8 + l.records.size() * 32);
  put_varint(out, l.floors.size());
  for (const auto& [node, f] : l.floors) {
    put_bytes(out, node);
    put_varint(out, f);
  }
  put_varint(out, l.records.size());
  for (const auto& w : l.records) {
    put_bytes(out, w.node);
    put_varint(out, w.dot);
    put_bytes(out, w.client_id);
    put_varint(out, w.seq);
    put_varint(out, zigzag(w.delta));
    out.push_back(static_cast<char>(w.flags));
  }
  return out;
}

std::optional<WriteRecord> find_write(const pb::KeyState& state, std::string_view client_id, uint64_t seq) {
  if (state.writes().empty()) return std::nullopt;
  WriteLedger l;
  if (!decode_writes(state.writes(), l).is_ok()) return std::nullopt;
  std::optional<WriteRecord> first;
  for (const auto& w : l.records)  // (node, dot) order: the first match counts
    if (w.seq == seq && w.client_id == client_id) return w;
  return first;
}

uint64_t write_floor(const pb::KeyState& state, std::string_view node) {
  if (state.writes().empty()) return 0;
  WriteLedger l;
  if (!decode_writes(state.writes(), l).is_ok()) return 0;
  return floor_of(l, node);
}

bool any_write_floor(const pb::KeyState& state) {
  // The first varint is the floor count.
  return !state.writes().empty() && state.writes()[0] != 0;
}

void record_write(pb::KeyState& state, std::string_view node, uint64_t dot, std::string_view client_id, uint64_t seq,
                  int64_t delta, uint8_t flags) {
  if (client_id.empty() || client_id.size() > kMaxClientIdBytes || node.empty() || node.size() > kMaxWriteNodeBytes)
    return;
  WriteLedger l;
  if (!decode_writes(state.writes(), l).is_ok()) l = WriteLedger();  // states are validated: cannot happen
  WriteRecord w{node, dot, client_id, seq, delta, flags};
  auto pos = std::upper_bound(l.records.begin(), l.records.end(), w,
                              [](const WriteRecord& a, const WriteRecord& b) { return dot_key(a) < dot_key(b); });
  l.records.insert(pos, w);
  cut(l);
  state.set_writes(encode_writes(l));
}

bool merge_writes(pb::KeyState& local, const pb::KeyState& remote, bool kernel_changed) {
  const bool is_register = local.type() == pb::REGISTER;
  if (remote.writes() == local.writes()) {
    if (!is_register || !kernel_changed || local.writes().empty()) return false;
    // Same write ids, but siblings moved: a copy may have lost its sibling.
    WriteLedger l;
    if (!decode_writes(local.writes(), l).is_ok()) return false;
    if (!collapse_register_copies(local, l)) return false;
    local.set_writes(encode_writes(l));
    return true;
  }
  WriteLedger a, b;
  if (!decode_writes(local.writes(), a).is_ok() || !decode_writes(remote.writes(), b).is_ok()) return false;
  WriteLedger m;
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
  if (is_register) collapse_register_copies(local, m);
  std::string merged = encode_writes(m);  // views point into local and remote: encode before replacing
  if (merged == local.writes()) return false;
  local.set_writes(std::move(merged));
  return true;
}

bool compensate_duplicate_adds(pb::KeyState& state, std::string_view self) {
  if (state.type() != pb::COUNTER || state.writes().empty()) return false;
  WriteLedger l;
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
  if (changed) state.set_writes(encode_writes(l));
  return changed;
}

Status validate_writes(const pb::KeyState& state) {
  WriteLedger l;
  if (auto s = decode_writes(state.writes(), l); !s.is_ok()) return s;
  for (const auto& w : l.records) {
    if (state.type() == pb::COUNTER) {
      if (w.flags & (kWriteCollapsed | kWriteNoSibling))
        return Status::invalid_argument("write ids: counter record with register flags");
    } else {
      if (w.delta != 0 || (w.flags & kWriteCompensated))
        return Status::invalid_argument("write ids: register or set record with a delta");
      if (state.type() == pb::SET && (w.flags & kWriteCollapsed))
        return Status::invalid_argument("write ids: collapsed copy outside a register");
    }
  }
  return Status::ok();
}

}  // namespace stig::replication
