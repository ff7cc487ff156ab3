// The strong path's checkers: linearizable, lock-safety, committed-not-lost
// (see sim/checker.h), and the final reads they need.
#include <algorithm>
#include <charconv>
#include <cstdio>
#include <map>

#include "sim/checker.h"
#include "sim/linearizability.h"

namespace stig::sim {

namespace {

namespace pb = stigmergy::v1;

struct Op {
  const HistoryEvent* invoke = nullptr;
  const HistoryEvent* done = nullptr;
  EventType outcome() const { return done ? done->type : EventType::kInfo; }
  bool acked() const { return outcome() == EventType::kOk && done->succeeded.value_or(true); }
  int64_t completed() const {
    return done && done->type != EventType::kInfo ? done->time : StrongOp::kNeverReturned;
  }
};

std::map<uint64_t, Op> strong_ops(const History& h) {
  std::map<uint64_t, Op> ops;
  for (const auto& e : h.events()) {
    if (!e.op || !is_strong_f(e.f)) continue;
    if (e.type == EventType::kInvoke)
      ops[e.op].invoke = &e;
    else
      ops[e.op].done = &e;
  }
  for (auto it = ops.begin(); it != ops.end();) it = it->second.invoke ? std::next(it) : ops.erase(it);
  return ops;
}

bool parse_u64(const std::string& s, uint64_t& out) {
  if (s.empty()) return false;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc() && p == s.data() + s.size();
}

// "lock:token" -> (lock, token)
bool parse_fence(const std::string& fence, std::string& lock, uint64_t& token) {
  const auto colon = fence.rfind(':');
  if (colon == std::string::npos) return false;
  lock = fence.substr(0, colon);
  return parse_u64(fence.substr(colon + 1), token);
}

// --- linearizable ------------------------------------------------------------------

class LinearizableChecker : public Checker {
 public:
  std::string name() const override { return "linearizable"; }
  CheckResult check(const History& h, const FinalState&) const override {
    CheckResult r;
    r.name = name();
    std::vector<StrongOp> ops;
    size_t stale = 0;
    for (const auto& [id, op] : strong_ops(h)) {
      const HistoryEvent& in = *op.invoke;
      const std::string& f = in.f;
      if (f != "strong_put" && f != "strong_get" && f != "strong_del" && f != "strong_cas" && f != "strong_txn")
        continue;
      if (f == "strong_get" && in.stale) {
        ++stale;  // stale reads are allowed to be stale: excluded
        continue;
      }
      StrongOp s;
      s.id = id;
      s.process = in.process;
      s.invoke = in.time;
      s.complete = op.completed();
      switch (op.outcome()) {
        case EventType::kOk: s.outcome = StrongOp::Outcome::kOk; break;
        case EventType::kFail: s.outcome = StrongOp::Outcome::kFail; break;
        default: s.outcome = StrongOp::Outcome::kUnknown; break;
      }
      const bool ok = s.outcome == StrongOp::Outcome::kOk;
      s.succeeded = ok ? op.done->succeeded.value_or(true) : true;
      // A refused fenced write never applied; other refusals are failed
      // compares the model explains.
      if (ok && !s.succeeded && !in.fence.empty()) s.outcome = StrongOp::Outcome::kFail;
      // A refusal other than CONFLICT (BUSY, SESSION_EXPIRED...) applied
      // nothing either; a txn whose compares failed (no error) ran its
      // failure branch and is checked with it.
      if (ok && !s.succeeded && !op.done->error.empty() && op.done->error.rfind("CONFLICT", 0) != 0)
        s.outcome = StrongOp::Outcome::kFail;
      const std::string& key = in.key;
      if (f == "strong_put" || f == "strong_del") {
        if (in.expected_version)
          s.compares.push_back({key, TxnCompare::Target::kVersion, true, "", *in.expected_version, true});
        if (f == "strong_put") {
          s.success.push_back({TxnOp::Kind::kPut, key, in.value});
          s.success.push_back({TxnOp::Kind::kGet, key, ""});
          s.description = "put " + key + "=" + in.value +
                          (in.expected_version ? " if version " + std::to_string(*in.expected_version) : "");
        } else {
          s.success.push_back({TxnOp::Kind::kDelete, key, ""});
          s.description = "del " + key +
                          (in.expected_version ? " if version " + std::to_string(*in.expected_version) : "");
        }
      } else if (f == "strong_cas") {
        s.compares.push_back({key, TxnCompare::Target::kValue, true, in.expected_value.value_or(""), 0, true});
        s.success.push_back({TxnOp::Kind::kPut, key, in.value});
        s.success.push_back({TxnOp::Kind::kGet, key, ""});
        s.description = "cas " + key + " " + in.expected_value.value_or("") + "->" + in.value;
      } else if (f == "strong_get") {
        s.success.push_back({TxnOp::Kind::kGet, key, ""});
        s.description = "get " + key;
      } else {
        s.compares = in.compares;
        s.success = in.success_ops;
        s.failure = in.failure_ops;
        s.description = "txn on " + key;
      }
      if (s.outcome == StrongOp::Outcome::kOk) {
        s.reads = op.done->reads;
        // A put's or a CAS's reply says which version it made; without one
        // (older histories) drop the check rather than invent a read.
        const auto& branch = s.succeeded ? s.success : s.failure;
        size_t gets = 0;
        for (const auto& x : branch) gets += x.kind == TxnOp::Kind::kGet;
        if (s.reads.size() != gets) {
          if ((f == "strong_put" || f == "strong_cas") && s.reads.empty()) {
            s.success.pop_back();
          } else {
            r.fail("op " + std::to_string(id) + " (" + s.description + ") recorded " +
                               std::to_string(s.reads.size()) + " reads for " + std::to_string(gets) + " gets");
            continue;
          }
        }
        if (s.succeeded && (f == "strong_put" || f == "strong_cas") && !s.reads.empty())
          s.description += " -> version " + std::to_string(s.reads[0].version);
        if (f == "strong_get" && !s.reads.empty())
          s.description += s.reads[0].exists ? " -> " + s.reads[0].value + " (version " +
                                                   std::to_string(s.reads[0].version) + ")"
                                             : " -> absent";
      }
      s.description = in.process + " " + s.description + " [" + format_seconds(s.invoke) + ", " +
                      (s.complete == StrongOp::kNeverReturned ? std::string("?") : format_seconds(s.complete)) + "]" +
                      (s.outcome == StrongOp::Outcome::kUnknown ? " unknown" : "");
      ops.push_back(std::move(s));
    }
    const LinearizabilityResult res = check_linearizability(ops);
    for (const auto& f : res.findings) {
      if (res.verdict == LinearizabilityResult::Verdict::kViolation)
        r.fail(f);
      else
        r.note(f);
    }
    const std::string stats = std::to_string(res.operations) + " operations in " + std::to_string(res.groups) +
                              " groups, " + std::to_string(res.steps) + " search steps, " + std::to_string(stale) +
                              " stale reads excluded";
    switch (res.verdict) {
      case LinearizabilityResult::Verdict::kLinearizable:
        if (r.ok) r.summary = "linearizable: " + stats;
        break;
      case LinearizabilityResult::Verdict::kViolation:
        r.ok = false;
        r.summary = "NOT linearizable: " + stats;
        break;
      case LinearizabilityResult::Verdict::kInconclusive:
        r.inconclusive = true;
        r.summary = "inconclusive (search budget exhausted): " + stats;
        break;
    }
    if (!r.ok && r.summary.empty()) r.summary = "malformed strong history: " + stats;
    return r;
  }
};

// --- lock safety -------------------------------------------------------------------

class LockSafetyChecker : public Checker {
 public:
  std::string name() const override { return "lock-safety"; }
  CheckResult check(const History& h, const FinalState&) const override {
    CheckResult r;
    r.name = name();
    struct Grant {
      uint64_t op, token, session;
      std::string lock, process;
      int64_t invoke, complete;
    };
    struct Write {
      uint64_t op, token;
      std::string lock, key, value, process;
      int64_t invoke, complete;
    };
    std::vector<Grant> grants;
    std::vector<Write> writes;
    size_t refused = 0;
    for (const auto& [id, op] : strong_ops(h)) {
      const HistoryEvent& in = *op.invoke;
      if (in.f == "lock_acquire" && op.acked() && op.done->token) {
        grants.push_back({id, op.done->token, in.session, in.key, in.process, in.time, op.done->time});
      } else if (!in.fence.empty() && op.outcome() == EventType::kOk) {
        std::string lock;
        uint64_t token = 0;
        if (!parse_fence(in.fence, lock, token)) continue;
        if (!op.acked()) {
          ++refused;
          continue;
        }
        writes.push_back({id, token, lock, in.key, in.value, in.process, in.time, op.done->time});
        // The value names the token it was written under ("token:N:client").
        if (in.value.rfind("token:", 0) == 0) {
          const auto colon = in.value.find(':', 6);
          uint64_t named = 0;
          if (colon != std::string::npos && parse_u64(in.value.substr(6, colon - 6), named) && named != token)
            r.fail("op " + std::to_string(id) + ": " + in.value + " written under fence " + in.fence);
        }
      }
    }
    // Tokens: one session per (lock, token); a grant acknowledged before
    // another was invoked has a smaller token (equal: the same session
    // reacquiring the lock it holds).
    std::map<std::pair<std::string, uint64_t>, const Grant*> by_token;
    for (const auto& g : grants) {
      auto [it, inserted] = by_token.emplace(std::make_pair(g.lock, g.token), &g);
      if (!inserted && it->second->session != g.session)
        r.fail(g.lock + " token " + std::to_string(g.token) + " granted to session " +
                           std::to_string(it->second->session) + " (op " + std::to_string(it->second->op) +
                           ") and to session " + std::to_string(g.session) + " (op " + std::to_string(g.op) + ")");
    }
    for (const auto& a : grants)
      for (const auto& b : grants) {
        if (a.lock != b.lock || a.complete >= b.invoke) continue;
        if (a.token > b.token || (a.token == b.token && a.session != b.session))
          r.fail(a.lock + ": grant of token " + std::to_string(a.token) + " to " + a.process + " (op " +
                             std::to_string(a.op) + ", acknowledged " + format_seconds(a.complete) +
                             ") came before the grant of token " + std::to_string(b.token) + " to " + b.process +
                             " (op " + std::to_string(b.op) + ", invoked " + format_seconds(b.invoke) + ")");
      }
    // Fenced writes: accepted in token order. A write under token T invoked
    // after a write under a larger token was acknowledged, or after a larger
    // token was granted, was accepted with a stale fence.
    for (const auto& w : writes) {
      for (const auto& x : writes)
        if (x.lock == w.lock && x.key == w.key && x.token > w.token && x.complete < w.invoke)
          r.fail("fenced write " + w.key + "=" + w.value + " (op " + std::to_string(w.op) + ", token " +
                             std::to_string(w.token) + ", invoked " + format_seconds(w.invoke) +
                             ") accepted after the write under token " + std::to_string(x.token) + " (op " +
                             std::to_string(x.op) + ") was acknowledged at " + format_seconds(x.complete));
      for (const auto& g : grants)
        if (g.lock == w.lock && g.token > w.token && g.complete < w.invoke)
          r.fail("fenced write " + w.key + "=" + w.value + " (op " + std::to_string(w.op) + ", token " +
                             std::to_string(w.token) + ", invoked " + format_seconds(w.invoke) +
                             ") accepted after token " + std::to_string(g.token) + " was granted to " + g.process +
                             " (op " + std::to_string(g.op) + ") at " + format_seconds(g.complete));
    }
    if (r.ok)
      r.summary = std::to_string(grants.size()) + " grants with unique, increasing tokens; " +
                  std::to_string(writes.size()) + " fenced writes accepted in token order, " + std::to_string(refused) +
                  " refused";
    else
      r.summary = "lock safety violated (" + std::to_string(grants.size()) + " grants, " +
                  std::to_string(writes.size()) + " accepted fenced writes)";
    return r;
  }
};

// --- committed-not-lost ------------------------------------------------------------

std::string show(const RegisterValue& v) {
  return v.exists ? v.value + " (version " + std::to_string(v.version) + ")" : std::string("absent");
}

class CommittedNotLostChecker : public Checker {
 public:
  std::string name() const override { return "committed-not-lost"; }
  CheckResult check(const History& h, const FinalState& f) const override {
    CheckResult r;
    r.name = name();
    std::vector<const NodeFinal*> read;
    uint64_t max_commit = 0;
    for (const auto& n : f.nodes)
      if (n.up && n.strong_read) {
        read.push_back(&n);
        max_commit = std::max(max_commit, n.commit_index);
      }
    std::vector<const NodeFinal*> caught_up;
    for (const auto* n : read)
      if (n->commit_index == max_commit) caught_up.push_back(n);
    // After the final heal and the quiet period every node has applied the
    // whole committed log (the quiet period waits for equal commit indexes).
    if (caught_up.size() != read.size()) {
      std::string lag;
      for (const auto* n : read) lag += " " + n->node + "@" + std::to_string(n->commit_index);
      r.fail("only " + std::to_string(caught_up.size()) + " of " + std::to_string(read.size()) +
                         " nodes reached commit index " + std::to_string(max_commit) +
                         " after the final heal and quiet period:" + lag);
    }
    // State machine safety: nodes at the same commit index hold the same state.
    for (const auto* n : caught_up) {
      if (n == caught_up[0]) continue;
      std::set<std::string> keys;
      for (const auto& [k, v] : n->strong) keys.insert(k);
      for (const auto& [k, v] : caught_up[0]->strong) keys.insert(k);
      for (const auto& k : keys) {
        auto value = [&](const NodeFinal& x) {
          auto it = x.strong.find(k);
          return it == x.strong.end() ? RegisterValue{} : it->second;
        };
        if (value(*n) != value(*caught_up[0]))
          r.fail("at commit index " + std::to_string(max_commit) + " " + k + " is " + show(value(*caught_up[0])) +
                             " on " + caught_up[0]->node + " but " + show(value(*n)) + " on " + n->node);
      }
    }
    // Every acknowledged write is what its key held at its revision.
    const auto acked = acknowledged_strong_writes(h);
    size_t lost = 0;
    for (const auto& w : acked) {
      for (const auto* n : caught_up) {
        auto it = n->strong_at.find({w.key, w.revision});
        if (it == n->strong_at.end()) continue;
        const RegisterValue& v = it->second;
        const bool matches = w.deleted ? !v.exists : (v.exists && v.value == w.value);
        if (!matches) {
          ++lost;
          r.fail("acknowledged " + std::string(w.deleted ? "delete of " + w.key : "write " + w.key + "=" + w.value) +
                             " at revision " + std::to_string(w.revision) + " (op " + std::to_string(w.op) +
                             ") is not in " + n->node + "'s state machine: as of that revision it reads " + show(v));
          break;
        }
      }
    }
    if (r.ok)
      r.summary = std::to_string(acked.size()) + " acknowledged strong writes found at their revisions on " +
                  std::to_string(caught_up.size()) + " nodes that agree at commit index " + std::to_string(max_commit);
    else
      r.summary = std::to_string(lost) + " of " + std::to_string(acked.size()) +
                  " acknowledged strong writes lost, or nodes disagree on the applied state";
    return r;
  }
};

}  // namespace

bool has_strong_ops(const History& history) {
  for (const auto& e : history.events())
    if (e.op && is_strong_f(e.f)) return true;
  return false;
}

std::vector<std::unique_ptr<Checker>> strong_checkers() {
  std::vector<std::unique_ptr<Checker>> v;
  v.push_back(std::make_unique<LinearizableChecker>());
  v.push_back(std::make_unique<LockSafetyChecker>());
  v.push_back(std::make_unique<CommittedNotLostChecker>());
  v.push_back(election_safety_checker());
  v.push_back(state_machine_safety_checker());
  return v;
}

std::vector<AckedWrite> acknowledged_strong_writes(const History& history) {
  std::vector<AckedWrite> out;
  for (const auto& [id, op] : strong_ops(history)) {
    if (!op.acked() || op.done->revision == 0) continue;
    const HistoryEvent& in = *op.invoke;
    const uint64_t rev = op.done->revision;
    if (in.f == "strong_put" || in.f == "strong_cas")
      out.push_back({id, in.key, in.value, false, rev, op.done->version.value_or(0)});
    else if (in.f == "strong_del")
      out.push_back({id, in.key, "", true, rev, 0});
    else if (in.f == "strong_txn" && op.done->succeeded.value_or(false)) {
      std::map<std::string, AckedWrite> last;  // the branch's last write per key wins
      for (const auto& x : in.success_ops)
        if (x.kind != TxnOp::Kind::kGet)
          last[x.key] = AckedWrite{id, x.key, x.value, x.kind == TxnOp::Kind::kDelete, rev, 0};
      for (auto& [k, w] : last) out.push_back(std::move(w));
    }
  }
  return out;
}

std::set<std::string> strong_keys(const History& history) {
  std::set<std::string> keys;
  for (const auto& e : history.events()) {
    if (e.type != EventType::kInvoke) continue;
    if (e.f == "strong_put" || e.f == "strong_get" || e.f == "strong_del" || e.f == "strong_cas") keys.insert(e.key);
    for (const auto& c : e.compares) keys.insert(c.key);
    for (const auto& x : e.success_ops) keys.insert(x.key);
    for (const auto& x : e.failure_ops) keys.insert(x.key);
  }
  return keys;
}

void read_final_strong(const History& history, const std::function<pb::Response(pb::Request)>& ask,
                       NodeFinal& out) {
  auto get = [&](const std::string& key, uint64_t revision) {
    pb::Request q;
    auto* g = q.mutable_strong()->mutable_get();
    g->set_key(key);
    g->set_stale(true);
    g->set_revision(revision);
    const pb::Response got = ask(std::move(q));
    RegisterValue v;
    if (got.error() == pb::OK && got.strong().found()) v = RegisterValue{true, got.strong().kv().value(), got.strong().kv().version()};
    return std::make_pair(got.error() == pb::OK, v);
  };
  out.strong_read = true;
  for (const auto& k : strong_keys(history)) {
    auto [ok, v] = get(k, 0);
    if (ok) out.strong[k] = v;
  }
  for (const auto& w : acknowledged_strong_writes(history)) {
    auto [ok, v] = get(w.key, w.revision);
    if (ok) out.strong_at[{w.key, w.revision}] = v;
  }
}

}  // namespace stig::sim
