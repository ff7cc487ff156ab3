#include "sim/linearizability.h"

#include <algorithm>
#include <map>
#include <numeric>
#include <unordered_set>

#include "replication/hash.h"

namespace stig::sim {

namespace {

using replication::mix64;

// The registers of one group, by the group's key index.
using State = std::vector<RegisterValue>;

uint64_t hash_state(const State& s) {
  uint64_t h = 0x9e3779b97f4a7c15ULL;
  for (const auto& r : s) {
    h = mix64(h ^ (r.exists ? 1 : 2));
    h = mix64(h ^ r.version);
    h = mix64(h ^ std::hash<std::string>{}(r.value));
  }
  return h;
}

// An operation of one group with its keys resolved to indices.
struct GroupOp {
  const StrongOp* op;
  struct Cmp {
    size_t key;
    const TxnCompare* cmp;
  };
  struct Act {
    size_t key;
    const TxnOp* op;
  };
  std::vector<Cmp> compares;
  std::vector<Act> success, failure;
  bool known;  // outcome ok: results must match
  uint64_t zobrist;
};

bool compare_holds(const RegisterValue& r, const TxnCompare& c) {
  bool eq = false;
  switch (c.target) {
    case TxnCompare::Target::kValue: eq = r.exists && r.value == c.value; break;
    case TxnCompare::Target::kVersion: eq = r.version == c.version; break;
    case TxnCompare::Target::kExists: eq = r.exists == c.exists; break;
  }
  return c.equal ? eq : !eq;
}

// Runs `op` on `state`. False when its recorded results could not come
// from this state (only for known outcomes; an unknown one fits anywhere).
bool step(const GroupOp& op, State& state) {
  bool take_success = true;
  for (const auto& c : op.compares) take_success = take_success && compare_holds(state[c.key], *c.cmp);
  if (op.known && take_success != op.op->succeeded) return false;
  size_t read = 0;
  for (const auto& a : take_success ? op.success : op.failure) {
    RegisterValue& r = state[a.key];
    switch (a.op->kind) {
      case TxnOp::Kind::kPut:
        r.version = r.exists ? r.version + 1 : 1;
        r.exists = true;
        r.value = a.op->value;
        break;
      case TxnOp::Kind::kDelete: r = RegisterValue{}; break;
      case TxnOp::Kind::kGet:
        if (op.known) {
          if (read >= op.op->reads.size() || !(op.op->reads[read] == r)) return false;
        }
        ++read;
        break;
    }
  }
  return true;
}

std::string describe(const StrongOp& op) {
  const char* outcome = op.outcome == StrongOp::Outcome::kOk ? "ok" : "unknown";
  std::string when = std::to_string(op.invoke) + ".." +
                     (op.complete == StrongOp::kNeverReturned ? std::string("?") : std::to_string(op.complete)) +
                     " ms";
  return op.process + " op " + std::to_string(op.id) + " " + op.description + " (" + outcome + ", " + when + ")";
}

struct Pair {
  uint64_t a, b;
  bool operator==(const Pair&) const = default;
};
struct PairHash {
  size_t operator()(const Pair& p) const { return static_cast<size_t>(mix64(p.a ^ mix64(p.b))); }
};

// Wing & Gong over a doubly linked list of call/return entries, with Lowe's
// cache of (linearized set, state) pairs already explored.
LinearizabilityResult::Verdict search(const std::vector<GroupOp>& ops, size_t keys, uint64_t max_steps,
                                      uint64_t& steps, std::vector<size_t>& unplaced) {
  struct Entry {
    bool call;
    size_t op;
    int64_t time;
    int match = -1, prev = -1, next = -1;
  };
  std::vector<Entry> entries;
  entries.reserve(ops.size() * 2 + 1);
  entries.push_back(Entry{false, 0, 0});  // head sentinel
  std::vector<std::pair<int64_t, int>> order;  // (time, calls first at a tie)
  for (size_t i = 0; i < ops.size(); ++i) {
    entries.push_back(Entry{true, i, ops[i].op->invoke});
    entries.push_back(Entry{false, i, ops[i].op->complete});
  }
  std::vector<int> idx(entries.size() - 1);
  std::iota(idx.begin(), idx.end(), 1);
  std::stable_sort(idx.begin(), idx.end(), [&](int x, int y) {
    if (entries[x].time != entries[y].time) return entries[x].time < entries[y].time;
    return entries[x].call && !entries[y].call;  // equal times overlap: calls first
  });
  for (size_t i = 0; i < ops.size(); ++i) {
    entries[1 + 2 * i].match = static_cast<int>(2 + 2 * i);
    entries[2 + 2 * i].match = static_cast<int>(1 + 2 * i);
  }
  int prev = 0;
  for (int e : idx) {
    entries[prev].next = e;
    entries[e].prev = prev;
    prev = e;
  }
  auto lift = [&](int e) {
    Entry& call = entries[e];
    entries[call.prev].next = call.next;
    if (call.next >= 0) entries[call.next].prev = call.prev;
    Entry& ret = entries[call.match];
    entries[ret.prev].next = ret.next;
    if (ret.next >= 0) entries[ret.next].prev = ret.prev;
  };
  auto unlift = [&](int e) {
    Entry& call = entries[e];
    Entry& ret = entries[call.match];
    entries[ret.prev].next = call.match;
    if (ret.next >= 0) entries[ret.next].prev = call.match;
    entries[call.prev].next = e;
    if (call.next >= 0) entries[call.next].prev = e;
  };

  size_t known_left = 0;
  for (const auto& op : ops) known_left += op.known;
  State state(keys);
  uint64_t linearized = 0;  // Zobrist hash of the placed set
  std::unordered_set<Pair, PairHash> cache;
  struct Frame {
    int entry;
    State state;
  };
  std::vector<Frame> stack;
  size_t best = 0;
  std::vector<char> placed(ops.size(), 0), best_placed;

  int entry = entries[0].next;
  while (known_left > 0) {
    if (++steps > max_steps) return LinearizabilityResult::Verdict::kInconclusive;
    if (entry >= 0 && entries[entry].call) {
      Entry& e = entries[entry];
      State next = state;
      if (step(ops[e.op], next)) {
        const uint64_t lin = linearized ^ ops[e.op].zobrist;
        if (cache.insert(Pair{lin, hash_state(next)}).second) {
          stack.push_back(Frame{entry, std::move(state)});
          state = std::move(next);
          linearized = lin;
          placed[e.op] = 1;
          known_left -= ops[e.op].known;
          lift(entry);
          if (stack.size() > best) {
            best = stack.size();
            best_placed = placed;
          }
          entry = entries[0].next;
          continue;
        }
      }
      entry = e.next;
    } else {
      // A return whose call is not placed (or the end): something before it must move.
      if (stack.empty()) {
        if (best_placed.empty()) best_placed = placed;
        for (size_t i = 0; i < ops.size(); ++i)
          if (!best_placed[i] && ops[i].known) unplaced.push_back(i);
        return LinearizabilityResult::Verdict::kViolation;
      }
      Frame f = std::move(stack.back());
      stack.pop_back();
      const size_t op = entries[f.entry].op;
      state = std::move(f.state);
      linearized ^= ops[op].zobrist;
      placed[op] = 0;
      known_left += ops[op].known;
      unlift(f.entry);
      entry = entries[f.entry].next;
    }
  }
  return LinearizabilityResult::Verdict::kLinearizable;
}

std::vector<std::string> keys_of(const StrongOp& op) {
  std::vector<std::string> keys;
  for (const auto& c : op.compares) keys.push_back(c.key);
  for (const auto& o : op.success) keys.push_back(o.key);
  for (const auto& o : op.failure) keys.push_back(o.key);
  std::sort(keys.begin(), keys.end());
  keys.erase(std::unique(keys.begin(), keys.end()), keys.end());
  return keys;
}

}  // namespace

LinearizabilityResult check_linearizability(const std::vector<StrongOp>& ops, const LinearizabilityOptions& options) {
  LinearizabilityResult result;
  // Union-find over keys: a transaction links every key it names.
  std::map<std::string, std::string> parent;
  auto find = [&](std::string k) {
    while (parent[k] != k) k = parent[k] = parent[parent[k]];
    return k;
  };
  std::vector<const StrongOp*> live;
  for (const auto& op : ops) {
    if (op.outcome == StrongOp::Outcome::kFail) continue;  // definitely not applied
    auto keys = keys_of(op);
    if (keys.empty()) continue;
    for (const auto& k : keys)
      if (!parent.count(k)) parent[k] = k;
    for (size_t i = 1; i < keys.size(); ++i) parent[find(keys[i])] = find(keys[0]);
    live.push_back(&op);
  }
  std::map<std::string, std::vector<const StrongOp*>> groups;
  for (const StrongOp* op : live) groups[find(keys_of(*op)[0])].push_back(op);
  result.operations = live.size();
  result.groups = groups.size();

  for (const auto& [root, members] : groups) {
    std::map<std::string, size_t> key_index;
    for (const StrongOp* op : members)
      for (const auto& k : keys_of(*op)) key_index.emplace(k, 0);
    size_t n = 0;
    for (auto& [k, i] : key_index) i = n++;
    std::vector<GroupOp> gops;
    uint64_t seed = 0x5151;
    for (const StrongOp* op : members) {
      GroupOp g{op, {}, {}, {}, op->outcome == StrongOp::Outcome::kOk, mix64(seed += 0x9e3779b97f4a7c15ULL)};
      for (const auto& c : op->compares) g.compares.push_back({key_index[c.key], &c});
      for (const auto& o : op->success) g.success.push_back({key_index[o.key], &o});
      for (const auto& o : op->failure) g.failure.push_back({key_index[o.key], &o});
      gops.push_back(std::move(g));
    }
    std::vector<size_t> unplaced;
    uint64_t steps = 0;
    const auto verdict = search(gops, n, options.max_steps_per_group, steps, unplaced);
    result.steps += steps;
    std::string keys;
    for (const auto& [k, i] : key_index) keys += (keys.empty() ? "" : ",") + k;
    if (verdict == LinearizabilityResult::Verdict::kInconclusive) {
      if (result.verdict == LinearizabilityResult::Verdict::kLinearizable)
        result.verdict = LinearizabilityResult::Verdict::kInconclusive;
      result.findings.push_back("keys " + keys + ": search gave up after " + std::to_string(steps) + " steps (" +
                                std::to_string(members.size()) + " operations)");
    } else if (verdict == LinearizabilityResult::Verdict::kViolation) {
      result.verdict = LinearizabilityResult::Verdict::kViolation;
      std::string line = "keys " + keys + ": no order of " + std::to_string(members.size()) +
                         " operations explains these results: ";
      size_t shown = 0;
      for (size_t i : unplaced) {
        if (shown++ == 3) {
          line += "; ...";
          break;
        }
        line += (shown > 1 ? "; " : "") + describe(*gops[i].op);
      }
      result.findings.push_back(line);
    }
  }
  return result;
}

}  // namespace stig::sim
