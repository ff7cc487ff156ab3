#include "sim/checker.h"

#include "sim/workload.h"

#include <algorithm>
#include <cstdio>
#include <limits>

namespace stig::sim {

std::string format_seconds(int64_t ms) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.3fs", static_cast<double>(ms) / 1000.0);
  return buf;
}

namespace {

// Invoke and completion of one client operation.
struct Operation {
  const HistoryEvent* invoke = nullptr;
  const HistoryEvent* done = nullptr;
  EventType outcome() const { return done ? done->type : EventType::kInfo; }
};

std::map<uint64_t, Operation> operations(const History& h) {
  std::map<uint64_t, Operation> ops;
  for (const auto& e : h.events()) {
    if (!e.op) continue;
    if (e.type == EventType::kInvoke)
      ops[e.op].invoke = &e;
    else
      ops[e.op].done = &e;
  }
  for (auto it = ops.begin(); it != ops.end();) it = it->second.invoke ? std::next(it) : ops.erase(it);
  return ops;
}

// --- convergence -----------------------------------------------------------------

class ConvergenceChecker : public Checker {
 public:
  std::string name() const override { return "convergence"; }
  CheckResult check(const History&, const FinalState& f) const override {
    CheckResult r;
    r.name = name();
    std::vector<const NodeFinal*> up;
    for (const auto& n : f.nodes) {
      if (n.up)
        up.push_back(&n);
      else
        r.fail(n.node + " is down at the end of the run");
    }
    if (up.empty()) {
      r.fail("no replica is up");
      r.summary = "no replica to compare";
      return r;
    }
    bool equal = true;
    for (const auto* n : up) equal &= n->digest == up[0]->digest;
    if (!equal) {
      std::string digests;
      for (const auto* n : up) {
        char buf[40];
        std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(n->digest));
        digests += (digests.empty() ? "" : ", ") + n->node + "=" + buf;
      }
      r.fail("digests differ at the end of the quiet period: " + digests);
      // Name the keys whose visible state differs.
      const NodeFinal& a = *up[0];
      for (const auto* b : up) {
        if (b == up[0]) continue;
        auto diff = [&](const std::string& what, const std::string& key) {
          r.fail(what + " '" + key + "' differs between " + a.node + " and " + b->node);
        };
        std::set<std::string> keys;
        for (const auto& [k, v] : a.registers) keys.insert(k);
        for (const auto& [k, v] : b->registers) keys.insert(k);
        for (const auto& k : keys) {
          auto dots = [&](const NodeFinal& n) {
            std::vector<Dot> d;
            if (auto it = n.registers.find(k); it != n.registers.end())
              for (const auto& v : it->second) d.push_back(v.dot);
            std::sort(d.begin(), d.end());
            return d;
          };
          if (dots(a) != dots(*b)) diff("register", k);
        }
        for (const auto& [k, v] : a.counters)
          if (auto it = b->counters.find(k); it == b->counters.end() || it->second != v) diff("counter", k);
        for (const auto& [k, v] : a.sets)
          if (auto it = b->sets.find(k); it == b->sets.end() || it->second != v) diff("set", k);
      }
    } else if (!f.converged_after_ms) {
      r.fail("digests were equal only at the very end");
    }
    if (r.ok)
      r.summary = f.converged_after_ms ? "converged " + format_seconds(*f.converged_after_ms) + " after the final heal"
                                       : "converged";
    else
      r.summary = "did not converge after the final heal";
    return r;
  }
};

// The context an acknowledged put or del (with a context) certainly
// superseded with: what it sent, unless the node that answered said it cut
// it to what it had seen.
const VersionMap& superseding_context(const Operation& op) {
  if (op.outcome() == EventType::kOk && op.done->applied_context) return *op.done->applied_context;
  return *op.invoke->context;
}

// --- lost writes -------------------------------------------------------------------

class LostWritesChecker : public Checker {
 public:
  std::string name() const override { return "lost-writes"; }
  CheckResult check(const History& h, const FinalState& f) const override {
    CheckResult r;
    r.name = name();
    const auto ops = operations(h);
    // Contexts of every put/del that may have been applied, per key.
    std::map<std::string, std::vector<const VersionMap*>> contexts;
    for (const auto& [id, op] : ops) {
      const auto& in = *op.invoke;
      // Any attempt may have applied what was sent in full (an attempt that
      // timed out on one node before another answered), so the whole sent
      // context may have superseded versions.
      if ((in.f == "put" || in.f == "del") && in.context && op.outcome() != EventType::kFail)
        contexts[in.key].push_back(&*in.context);
    }
    // A put retried on another node may have been applied on both before
    // either heard of the other: its value then had two dots (copies), and
    // the merge keeps one, or none if a later write superseded either. Every
    // dot a reply showed with a put's (unique) value is a copy of it.
    std::map<std::pair<std::string, std::string>, std::set<Dot>> copies;
    for (const auto& e : h.events()) {
      if (e.type != EventType::kOk) continue;
      for (const auto& v : e.versions) copies[{e.key, v.value}].insert(v.dot);
    }
    size_t acked = 0, superseded = 0, checked = 0;
    for (const auto& [id, op] : ops) {
      if (op.invoke->f != "put" || op.outcome() != EventType::kOk || !op.done->dot) continue;
      ++acked;
      const Dot& dot = *op.done->dot;
      const bool retried = op.done->attempts > 1;
      std::set<Dot> dots = {dot};
      if (retried) dots.merge(copies[{op.invoke->key, op.invoke->value}]);
      bool covered = false;
      for (const VersionMap* c : contexts[op.invoke->key]) {
        for (const Dot& d : dots) {
          auto it = c->find(d.node);
          covered |= it != c->end() && it->second >= d.counter;
        }
        if (covered) break;
      }
      if (covered) {
        ++superseded;
        continue;
      }
      ++checked;
      std::vector<std::string> missing;
      for (const auto& n : f.nodes) {
        if (!n.up) continue;
        bool found = false;
        if (auto it = n.registers.find(op.invoke->key); it != n.registers.end())
          for (const auto& v : it->second)  // a reissued dot is no alibi; a retried put's value may have another
            found |= (v.dot == dot || retried) && v.value == op.invoke->value;
        if (!found) missing.push_back(n.node);
      }
      if (!missing.empty()) {
        std::string where;
        for (const auto& m : missing) where += (where.empty() ? "" : ", ") + m;
        r.fail("put " + op.invoke->key + "=" + op.invoke->value + " by " + op.invoke->process + " (dot " +
                           dot.to_string() + ", acknowledged at " + format_seconds(op.done->time) + ") is missing on " + where +
                           " and no later write's context covered it");
      }
    }
    // And nothing invented: every version a replica holds was written by some put.
    std::set<std::pair<std::string, std::string>> written;
    for (const auto& [id, op] : ops)
      if (op.invoke->f == "put") written.insert({op.invoke->key, op.invoke->value});
    for (const auto& n : f.nodes)
      for (const auto& [key, versions] : n.registers)
        for (const auto& v : versions)
          if (!written.count({key, v.value}))
            r.fail("register " + key + " on " + n.node + " holds '" + v.value + "' (dot " + v.dot.to_string() +
                               "), which no client wrote");
    r.summary = std::to_string(acked) + " acknowledged puts: " + std::to_string(superseded) +
                " superseded by a covering context, " + std::to_string(checked) + " must survive" +
                (r.ok ? ", all present" : ", " + std::to_string(r.findings.size()) + "+ lost");
    return r;
  }
};

// --- resurrection ----------------------------------------------------------------------

// A version an acknowledged put or del superseded (its context covered the
// version's dot) must never be visible again: the superseding write is
// durable and merges only grow contexts, so only a bug (a tombstone collected
// while a replica still held the old value, a lost context) brings it back.
class ResurrectionChecker : public Checker {
 public:
  std::string name() const override { return "resurrection"; }
  CheckResult check(const History& h, const FinalState& f) const override {
    CheckResult r;
    r.name = name();
    // Contexts of acknowledged puts and deletes, per key.
    std::map<std::string, std::vector<const Operation*>> superseding;
    const auto ops = operations(h);
    for (const auto& [id, op] : ops) {
      const auto& in = *op.invoke;
      if ((in.f == "put" || in.f == "del") && in.context && op.outcome() == EventType::kOk)
        superseding[in.key].push_back(&op);
    }
    size_t versions = 0;
    for (const auto& n : f.nodes) {
      for (const auto& [key, held] : n.registers) {
        for (const auto& v : held) {
          ++versions;
          for (const Operation* w : superseding[key]) {
            const VersionMap& ctx = superseding_context(*w);
            const auto it = ctx.find(v.dot.node);
            if (it == ctx.end() || it->second < v.dot.counter) continue;
            r.fail("register " + key + " on " + n.node + " shows '" + v.value + "' (dot " + v.dot.to_string() +
                               "), which " + w->invoke->f + " by " + w->invoke->process + " at " +
                               format_seconds(w->invoke->time) + " had already superseded");
            break;
          }
        }
      }
    }
    r.summary = std::to_string(versions) + " final versions checked against " +
                std::to_string(superseding.size()) + " keys' acknowledged overwrites and deletes" +
                (r.ok ? ": none came back" : ": superseded versions came back");
    return r;
  }
};

// --- counters ----------------------------------------------------------------------

// The values a counter may end at, from the adds of a history.
struct CounterRange {
  int64_t lo = 0, hi = 0;
  // An add of `d` applied between min_times and max_times times.
  void add(int64_t d, int min_times, int max_times) {
    lo += d >= 0 ? d * min_times : d * max_times;
    hi += d >= 0 ? d * max_times : d * min_times;
  }
};
using CounterRanges = std::map<std::string, CounterRange>;

// Fails `r` for each live replica whose counter lies outside its range.
void check_counter_ranges(const FinalState& f, const CounterRanges& ranges, CheckResult& r, const std::string& why) {
  for (const auto& [key, range] : ranges) {
    for (const auto& n : f.nodes) {
      if (!n.up) continue;
      auto it = n.counters.find(key);
      const int64_t v = it == n.counters.end() ? 0 : it->second;
      if (v < range.lo || v > range.hi)
        r.fail("counter " + key + " is " + std::to_string(v) + " on " + n.node + ", outside the allowed [" +
               std::to_string(range.lo) + ", " + std::to_string(range.hi) + "]" + why);
    }
  }
}

class CounterChecker : public Checker {
 public:
  std::string name() const override { return "counters"; }
  CheckResult check(const History& h, const FinalState& f) const override {
    CheckResult r;
    r.name = name();
    CounterRanges ranges;
    for (const auto& [id, op] : operations(h)) {
      if (op.invoke->f != "counter_add") continue;
      const int64_t d = op.invoke->delta;
      CounterRange& range = ranges[op.invoke->key];
      switch (op.outcome()) {
        case EventType::kOk: range.add(d, 1, std::max(1, op.done->attempts)); break;
        case EventType::kInfo: range.add(d, 0, op.done ? std::max(1, op.done->attempts) : 3); break;
        default: break;
      }
    }
    check_counter_ranges(f, ranges, r, "");
    r.summary = std::to_string(ranges.size()) + " counters" +
                (r.ok ? ", all within their allowed ranges" : ", " + std::to_string(r.findings.size()) + "+ values out of range");
    return r;
  }
};

// --- applied once ------------------------------------------------------------------

// A write retried on another node (same client id and seq) counts once: each
// replica's counter lies within the range of applying every ok add exactly
// once and every unknown one at most once, and no replica shows one written
// value (the workloads write each value once) as two register versions.
class AppliedOnceChecker : public Checker {
 public:
  std::string name() const override { return "applied-once"; }
  CheckResult check(const History& h, const FinalState& f) const override {
    CheckResult r;
    r.name = name();
    CounterRanges ranges;
    size_t retried = 0;
    for (const auto& [id, op] : operations(h)) {
      if (op.done && op.done->attempts > 1) ++retried;
      if (op.invoke->f != "counter_add") continue;
      CounterRange& range = ranges[op.invoke->key];
      switch (op.outcome()) {
        case EventType::kOk: range.add(op.invoke->delta, 1, 1); break;
        case EventType::kInfo: range.add(op.invoke->delta, 0, 1); break;
        default: break;
      }
    }
    check_counter_ranges(f, ranges, r, " (each add applied once): a retried add counted twice");
    size_t versions = 0;
    for (const auto& n : f.nodes) {
      if (!n.up) continue;
      for (const auto& [key, live] : n.registers) {
        std::map<std::string, const SeenVersion*> by_value;
        for (const auto& v : live) {
          ++versions;
          auto [it, fresh] = by_value.emplace(v.value, &v);
          if (!fresh)
            r.fail("register " + key + " on " + n.node + " holds value '" + v.value + "' twice (dots " +
                               it->second->dot.node + ":" + std::to_string(it->second->dot.counter) + " and " +
                               v.dot.node + ":" + std::to_string(v.dot.counter) + "): a retried put applied twice");
        }
      }
    }
    r.summary = std::to_string(ranges.size()) + " counters and " + std::to_string(versions) + " register versions, " +
                std::to_string(retried) + " ops retried" +
                (r.ok ? ": every write counted once" : ": writes applied more than once");
    return r;
  }
};

// --- sets --------------------------------------------------------------------------

class SetChecker : public Checker {
 public:
  std::string name() const override { return "sets"; }
  CheckResult check(const History& h, const FinalState& f) const override {
    CheckResult r;
    r.name = name();
    struct ElementOps {
      std::vector<const Operation*> adds, removes;
    };
    const auto ops = operations(h);
    std::map<std::pair<std::string, std::string>, ElementOps> by_element;
    std::set<std::string> set_keys;
    for (const auto& [id, op] : ops) {
      const auto& f0 = op.invoke->f;
      if (f0 == "set_add") by_element[{op.invoke->key, op.invoke->value}].adds.push_back(&op);
      if (f0 == "set_rm") by_element[{op.invoke->key, op.invoke->value}].removes.push_back(&op);
      if (f0.rfind("set_", 0) == 0) set_keys.insert(op.invoke->key);
    }
    size_t must = 0;
    for (const auto& [ke, eo] : by_element) {
      // The last time any remove may still take effect (unknown outcome: never ends).
      int64_t removes_done = std::numeric_limits<int64_t>::min();
      for (const Operation* rm : eo.removes) {
        const bool finished = rm->done && rm->done->type != EventType::kInfo;
        removes_done = std::max(removes_done, finished ? rm->done->time : std::numeric_limits<int64_t>::max());
      }
      const Operation* witness = nullptr;
      for (const Operation* add : eo.adds)
        if (add->outcome() == EventType::kOk && add->invoke->time > removes_done) {
          witness = add;
          break;
        }
      if (!witness) continue;
      ++must;
      for (const auto& n : f.nodes) {
        if (!n.up) continue;
        auto it = n.sets.find(ke.first);
        if (it == n.sets.end() || !it->second.count(ke.second))
          r.fail("set " + ke.first + " on " + n.node + " lacks " + ke.second + ", added (ok) by " +
                             witness->invoke->process + " at " + format_seconds(witness->invoke->time) +
                             " after every remove of it had finished");
      }
    }
    for (const auto& n : f.nodes) {
      if (!n.up) continue;
      for (const auto& [key, elements] : n.sets)
        for (const auto& e : elements)
          if (!by_element.count({key, e}) || by_element.at({key, e}).adds.empty())
            r.fail("set " + key + " on " + n.node + " holds " + e + ", which no client ever added");
    }
    r.summary = std::to_string(set_keys.size()) + " sets, " + std::to_string(must) + " elements that must be present" +
                (r.ok ? ", all present, none invented" : ", " + std::to_string(r.findings.size()) + "+ missing or invented");
    return r;
  }
};

class InvariantChecker : public Checker {
 public:
  std::string name() const override { return "invariants"; }
  CheckResult check(const History&, const FinalState& f) const override {
    CheckResult r;
    r.name = name();
    for (const auto& s : f.invariant_failures) r.fail(s);
    r.summary = r.ok ? "no core invariant failed" : "the core refused its own state";
    return r;
  }
};

// --- access -------------------------------------------------------------------------

// The acl workload's property: no write outside the writer's grants was
// applied. Its clients may write only under their own prefix ("acl-c3/" for
// c3; "acl-shared/" is granted to nobody), so: no acknowledged write (lazy or
// strong) under another prefix, no acknowledged ACL change by anyone but the
// admin client, and no replica holding a value under another writer's prefix
// at the end (lazy versions by modified_by, strong values by the writer
// their value names: "c3-17").
class AccessChecker : public Checker {
 public:
  std::string name() const override { return "access"; }
  CheckResult check(const History& h, const FinalState& f) const override {
    CheckResult r;
    r.name = name();
    static const std::set<std::string> kWrites = {"put",     "del",        "counter_add", "set_add",
                                                  "set_rm",  "strong_put", "strong_del",  "strong_cas"};
    uint64_t writes = 0, refused = 0;
    for (const auto& [id, op] : operations(h)) {
      const HistoryEvent& in = *op.invoke;
      if (in.f == "acl_grant") {
        if (op.outcome() == EventType::kOk && in.process != "c1")
          r.fail(in.process + " changed an access rule at " + format_seconds(op.done->time) + " (only c1 is admin)");
        continue;
      }
      if (!kWrites.count(in.f) || in.key.rfind("acl-", 0) != 0) continue;
      ++writes;
      if (op.outcome() != EventType::kOk) {
        ++refused;
        continue;
      }
      if (in.key.rfind(acl_prefix_of(in.process), 0) != 0)
        r.fail(in.process + " " + in.f + " '" + in.key + "' was acknowledged at " + format_seconds(op.done->time) +
               " though it holds no grant on it");
    }
    for (const auto& n : f.nodes) {
      for (const auto& [key, versions] : n.registers) {
        if (key.rfind("acl-", 0) != 0) continue;
        for (const auto& v : versions) {
          const std::string writer = v.modified_by.rfind("agent-", 0) == 0 ? v.modified_by.substr(6) : v.modified_by;
          if (key.rfind(acl_prefix_of(writer), 0) != 0)
            r.fail(n.node + " holds '" + key + "' = '" + v.value + "' written by " + v.modified_by +
                   ", who holds no grant on it");
        }
      }
      for (const auto& [key, v] : n.strong) {
        if (key.rfind("acl-", 0) != 0 || !v.exists) continue;
        const std::string writer = v.value.substr(0, v.value.find('-'));
        if (key.rfind(acl_prefix_of(writer), 0) != 0)
          r.fail(n.node + " holds strong '" + key + "' = '" + v.value + "', written by " + writer +
                 ", who holds no grant on it");
      }
    }
    r.summary = r.ok ? std::to_string(writes) + " writes to acl keys, " + std::to_string(refused) +
                           " refused or unknown; none applied outside the writer's grants"
                     : "writes outside the writer's grants were applied";
    return r;
  }
};

}  // namespace

bool has_acl_ops(const History& history) {
  for (const auto& e : history.events())
    if (e.op && e.type == EventType::kInvoke && (e.f == "acl_grant" || e.key.rfind("acl-", 0) == 0)) return true;
  return false;
}

std::unique_ptr<Checker> access_checker() { return std::make_unique<AccessChecker>(); }

std::vector<std::unique_ptr<Checker>> lazy_checkers() {
  std::vector<std::unique_ptr<Checker>> v;
  v.push_back(std::make_unique<ConvergenceChecker>());
  v.push_back(std::make_unique<LostWritesChecker>());
  v.push_back(std::make_unique<ResurrectionChecker>());
  v.push_back(std::make_unique<CounterChecker>());
  v.push_back(std::make_unique<AppliedOnceChecker>());
  v.push_back(std::make_unique<SetChecker>());
  v.push_back(std::make_unique<InvariantChecker>());
  return v;
}

std::vector<CheckResult> run_checkers(const History& history, const FinalState& final_state) {
  std::vector<CheckResult> out;
  for (const auto& c : lazy_checkers()) out.push_back(c->check(history, final_state));
  if (has_strong_ops(history))
    for (const auto& c : strong_checkers()) out.push_back(c->check(history, final_state));
  if (has_acl_ops(history)) out.push_back(access_checker()->check(history, final_state));
  return out;
}

TouchedKeys touched_keys(const History& history) {
  TouchedKeys t;
  for (const auto& e : history.events()) {
    if (e.type != EventType::kInvoke || e.key.empty()) continue;
    if (e.f == "put" || e.f == "get" || e.f == "del") t.registers.insert(e.key);
    if (e.f.rfind("counter_", 0) == 0) t.counters.insert(e.key);
    if (e.f.rfind("set_", 0) == 0) t.sets.insert(e.key);
  }
  return t;
}

void read_final_values(const TouchedKeys& keys,
                       const std::function<stigmergy::v1::Response(stigmergy::v1::Request)>& ask, NodeFinal& out) {
  namespace pb = stigmergy::v1;
  for (const auto& k : keys.registers) {
    pb::Request q;
    q.mutable_get()->set_key(k);
    HistoryEvent seen;
    describe_response(ask(std::move(q)), seen);
    if (!seen.versions.empty()) out.registers[k] = seen.versions;
  }
  for (const auto& k : keys.counters) {
    pb::Request q;
    q.mutable_counter_get()->set_key(k);
    out.counters[k] = ask(std::move(q)).counter().value();
  }
  for (const auto& k : keys.sets) {
    pb::Request q;
    q.mutable_set_get()->set_key(k);
    const pb::Response got = ask(std::move(q));
    for (const auto& e : got.set().elements()) out.sets[k].insert(e);
  }
}

}  // namespace stig::sim
