// The StateMachine's key-value operations: validation, fences, put, delete,
// CAS, txn, compaction and the reads.
#include <set>

#include "replication/invariant.h"
#include "replication/printable.h"
#include "replication/strong/state_machine.h"
#include "replication/strong/state_machine_internal.h"

namespace stig::replication {

namespace {

std::string key_name(std::string_view key) { return "key " + printable(key, 64); }

// The smallest key above every key with this prefix ("" = none).
std::string prefix_end(std::string prefix) {
  while (!prefix.empty() && static_cast<unsigned char>(prefix.back()) == 0xff) prefix.pop_back();
  if (!prefix.empty()) prefix.back() = static_cast<char>(static_cast<unsigned char>(prefix.back()) + 1);
  return prefix;
}

bool compare_numbers(pb::Compare::Op op, uint64_t have, uint64_t want) {
  switch (op) {
    case pb::Compare::EQUAL: return have == want;
    case pb::Compare::NOT_EQUAL: return have != want;
    case pb::Compare::LESS: return have < want;
    case pb::Compare::GREATER: return have > want;
    default: return false;
  }
}

// A compare on a missing key sees version 0, mod revision 0 and no value: a
// VALUE compare on it is false whatever the operator.
bool evaluate(const pb::Compare& c, const MvccStore::Version* v) {
  switch (c.target()) {
    case pb::Compare::VALUE: {
      if (v == nullptr) return false;
      const int cmp = v->value.compare(c.value());
      switch (c.op()) {
        case pb::Compare::EQUAL: return cmp == 0;
        case pb::Compare::NOT_EQUAL: return cmp != 0;
        case pb::Compare::LESS: return cmp < 0;
        case pb::Compare::GREATER: return cmp > 0;
        default: return false;
      }
    }
    case pb::Compare::VERSION: return compare_numbers(c.op(), v ? v->version : 0, c.number());
    case pb::Compare::MOD_REVISION: return compare_numbers(c.op(), v ? v->revision : 0, c.number());
    case pb::Compare::EXISTS:
      return c.op() == pb::Compare::EQUAL ? (v != nullptr) == c.exists() : (v != nullptr) != c.exists();
    default: return false;
  }
}

}  // namespace

pb::StrongResponse StateMachine::check_key(std::string_view key, std::string_view what) const {
  if (key.empty()) return error_response(pb::BAD_REQUEST, std::string(what) + " is empty");
  if (key.size() > options_.max_key_bytes)
    return error_response(pb::BAD_REQUEST, std::string(what) + " is " + std::to_string(key.size()) +
                                               " bytes, over the limit of " + std::to_string(options_.max_key_bytes));
  return {};
}

pb::StrongResponse StateMachine::check_value(std::string_view value) const {
  if (value.size() > options_.max_value_bytes)
    return error_response(pb::BAD_REQUEST, "value is " + std::to_string(value.size()) + " bytes, over the limit of " +
                                               std::to_string(options_.max_value_bytes));
  return {};
}

pb::StrongResponse StateMachine::check_fence(const pb::Fence& fence) const {
  if (auto bad = check_key(fence.lock(), "fence lock name"); is_error(bad)) return bad;
  const LockTable::Lock* l = locks_.lock(fence.lock());
  const std::string lock = "lock " + printable(fence.lock(), 64);
  if (l == nullptr) return error_response(pb::CONFLICT, "fence names " + lock + " which nobody holds");
  if (l->token != fence.token())
    return error_response(pb::CONFLICT, "fence token " + std::to_string(fence.token()) + " for " + lock +
                                            " is stale: the current holder's token is " + std::to_string(l->token));
  return {};
}

pb::StrongResponse StateMachine::put(Context& ctx, const pb::StrongPut& put) {
  if (auto bad = check_key(put.key(), "key"); is_error(bad)) return bad;
  if (auto bad = check_value(put.value()); is_error(bad)) return bad;
  if (put.has_fence())
    if (auto bad = check_fence(put.fence()); is_error(bad)) return bad;
  const MvccStore::Version* cur = store_.latest(put.key());
  if (put.has_expected_version()) {
    const uint64_t have = cur ? cur->version : 0;
    if (have != put.expected_version())
      return error_response(pb::CONFLICT, key_name(put.key()) + " is at version " + std::to_string(have) +
                                              ", expected " + std::to_string(put.expected_version()));
  }
  const auto& v = store_.put(put.key(), put.value(), *ctx.agent, ctx.wall_ms);
  pb::StrongResponse r;
  r.set_found(true);
  to_key_value(put.key(), v, r.mutable_kv());
  store_.commit(ctx.wall_ms);
  r.set_revision(store_.revision());
  return r;
}

pb::StrongResponse StateMachine::erase(Context& ctx, const pb::StrongDelete& del) {
  if (auto bad = check_key(del.key(), "key"); is_error(bad)) return bad;
  if (del.has_fence())
    if (auto bad = check_fence(del.fence()); is_error(bad)) return bad;
  const MvccStore::Version* cur = store_.latest(del.key());
  if (del.has_expected_version()) {
    const uint64_t have = cur ? cur->version : 0;
    if (have != del.expected_version())
      return error_response(pb::CONFLICT, key_name(del.key()) + " is at version " + std::to_string(have) +
                                              ", expected " + std::to_string(del.expected_version()));
  }
  pb::StrongResponse r;
  if (cur != nullptr) {
    r.set_found(true);
    to_key_value(del.key(), *cur, r.mutable_kv());  // the deleted value
    store_.erase(del.key(), *ctx.agent, ctx.wall_ms);
    store_.commit(ctx.wall_ms);
  }
  r.set_revision(store_.revision());
  return r;
}

pb::StrongResponse StateMachine::cas(Context& ctx, const pb::StrongCas& cas) {
  if (auto bad = check_key(cas.key(), "key"); is_error(bad)) return bad;
  if (auto bad = check_value(cas.new_value()); is_error(bad)) return bad;
  if (cas.has_fence())
    if (auto bad = check_fence(cas.fence()); is_error(bad)) return bad;
  const MvccStore::Version* cur = store_.latest(cas.key());
  if (cur == nullptr) return error_response(pb::CONFLICT, key_name(cas.key()) + " does not exist");
  if (cur->value != cas.expected_value())
    return error_response(pb::CONFLICT, "the value of " + key_name(cas.key()) + " is not the expected value");
  pb::StrongPut put;
  put.set_key(cas.key());
  put.set_value(cas.new_value());
  return this->put(ctx, put);
}

pb::StrongResponse StateMachine::check_txn(const pb::StrongTxn& txn) const {
  const size_t max = options_.max_txn_ops;
  if (static_cast<size_t>(txn.compare_size()) > max || static_cast<size_t>(txn.success_size()) > max ||
      static_cast<size_t>(txn.failure_size()) > max)
    return error_response(pb::BAD_REQUEST, "a transaction has at most " + std::to_string(max) +
                                               " compares and " + std::to_string(max) + " ops per branch");
  for (const auto& c : txn.compare()) {
    if (auto bad = check_key(c.key(), "compare key"); is_error(bad)) return bad;
    if (!pb::Compare::Target_IsValid(c.target()) || !pb::Compare::Op_IsValid(c.op()))
      return error_response(pb::BAD_REQUEST, "compare on " + key_name(c.key()) + " has an unknown target or operator");
    if (c.target() == pb::Compare::EXISTS && c.op() != pb::Compare::EQUAL && c.op() != pb::Compare::NOT_EQUAL)
      return error_response(pb::BAD_REQUEST, "an EXISTS compare takes EQUAL or NOT_EQUAL only");
    if (c.target() == pb::Compare::VALUE) {
      if (auto bad = check_value(c.value()); is_error(bad)) return bad;
    }
  }
  for (const auto* branch : {&txn.success(), &txn.failure()}) {
    const char* name = branch == &txn.success() ? "success" : "failure";
    std::set<std::string_view> written;
    for (const auto& op : *branch) {
      switch (op.op_case()) {
        case pb::TxnOp::kPut: {
          const auto& p = op.put();
          if (auto bad = check_key(p.key(), "key"); is_error(bad)) return bad;
          if (auto bad = check_value(p.value()); is_error(bad)) return bad;
          if (p.has_fence() || p.has_expected_version())
            return error_response(pb::BAD_REQUEST, "a put inside a transaction takes no fence or expected version "
                                                   "(use the transaction's fence and compares)");
          if (!written.insert(p.key()).second)
            return error_response(pb::BAD_REQUEST, "the " + std::string(name) + " branch writes " +
                                                       key_name(p.key()) + " more than once");
          break;
        }
        case pb::TxnOp::kDelete: {
          const auto& d = op.delete_();
          if (auto bad = check_key(d.key(), "key"); is_error(bad)) return bad;
          if (d.has_fence() || d.has_expected_version())
            return error_response(pb::BAD_REQUEST, "a delete inside a transaction takes no fence or expected version "
                                                   "(use the transaction's fence and compares)");
          if (!written.insert(d.key()).second)
            return error_response(pb::BAD_REQUEST, "the " + std::string(name) + " branch writes " +
                                                       key_name(d.key()) + " more than once");
          break;
        }
        case pb::TxnOp::kGet: {
          const auto& g = op.get();
          if (auto bad = check_key(g.key(), "key"); is_error(bad)) return bad;
          if (g.revision() != 0 || g.at_ms() != 0)
            return error_response(pb::BAD_REQUEST, "a get inside a transaction reads the transaction's revision "
                                                   "(no revision or at_ms)");
          break;
        }
        case pb::TxnOp::OP_NOT_SET:
          return error_response(pb::BAD_REQUEST, "a transaction op names no operation");
      }
    }
  }
  return {};
}

pb::StrongResponse StateMachine::txn(Context& ctx, const pb::StrongTxn& txn) {
  // Everything that can refuse is checked before the first write, so the
  // chosen branch runs to the end: atomic, one revision.
  if (auto bad = check_txn(txn); is_error(bad)) return bad;
  if (txn.has_fence())
    if (auto bad = check_fence(txn.fence()); is_error(bad)) return bad;
  bool ok = true;
  for (const auto& c : txn.compare()) ok = ok && evaluate(c, store_.latest(c.key()));
  pb::StrongResponse r;
  r.set_succeeded(ok);
  for (const auto& op : ok ? txn.success() : txn.failure()) {
    pb::StrongResponse* o = r.add_results();
    switch (op.op_case()) {
      case pb::TxnOp::kPut: {
        const auto& v = store_.put(op.put().key(), op.put().value(), *ctx.agent, ctx.wall_ms);
        o->set_found(true);
        to_key_value(op.put().key(), v, o->mutable_kv());
        break;
      }
      case pb::TxnOp::kDelete:
        if (const auto* cur = store_.latest(op.delete_().key())) {
          o->set_found(true);
          to_key_value(op.delete_().key(), *cur, o->mutable_kv());
          store_.erase(op.delete_().key(), *ctx.agent, ctx.wall_ms);
        }
        break;
      case pb::TxnOp::kGet:
        if (const auto* cur = store_.latest(op.get().key())) {  // sees this txn's earlier writes
          o->set_found(true);
          to_key_value(op.get().key(), *cur, o->mutable_kv());
        }
        break;
      case pb::TxnOp::OP_NOT_SET:
        STIG_INVARIANT(false, "validated above");
    }
  }
  store_.commit(ctx.wall_ms);
  r.set_revision(store_.revision());
  for (auto& o : *r.mutable_results()) o.set_revision(store_.revision());
  return r;
}

pb::StrongResponse StateMachine::compact(const pb::StrongCompact& compact) {
  const uint64_t rev = compact.revision();
  if (rev == 0) return error_response(pb::BAD_REQUEST, "compact needs a revision");
  if (rev > store_.revision())
    return error_response(pb::BAD_REQUEST, "revision " + std::to_string(rev) + " is in the future (current " +
                                               std::to_string(store_.revision()) + ")");
  if (rev <= store_.compact_revision())
    return error_response(pb::COMPACTED, "history is already compacted up to revision " +
                                             std::to_string(store_.compact_revision()));
  store_.compact(rev);
  pb::StrongResponse r;
  r.set_revision(store_.revision());
  r.set_compact_revision(rev);
  return r;
}

pb::StrongResponse StateMachine::resolve_revision(uint64_t revision, int64_t at_ms, uint64_t* out) const {
  if (revision != 0 && at_ms != 0) return error_response(pb::BAD_REQUEST, "give a revision or a time, not both");
  if (at_ms < 0) return error_response(pb::BAD_REQUEST, "at_ms is negative");
  if (at_ms != 0) {
    const auto rev = store_.revision_at_time(at_ms);
    if (!rev)
      return error_response(pb::COMPACTED, "history before revision " + std::to_string(store_.compact_revision()) +
                                               " is compacted");
    *out = *rev;
    return {};
  }
  if (revision == 0) {
    *out = store_.revision();
    return {};
  }
  if (revision > store_.revision())
    return error_response(pb::BAD_REQUEST, "revision " + std::to_string(revision) + " is in the future (current " +
                                               std::to_string(store_.revision()) + ")");
  if (revision < store_.compact_revision())
    return error_response(pb::COMPACTED, "revision " + std::to_string(revision) + " is compacted (history starts at " +
                                             std::to_string(store_.compact_revision()) + ")");
  *out = revision;
  return {};
}

pb::StrongResponse StateMachine::get(const pb::StrongGet& get) const {
  if (auto bad = check_key(get.key(), "key"); is_error(bad)) return bad;
  uint64_t rev = 0;
  if (auto bad = resolve_revision(get.revision(), get.at_ms(), &rev); is_error(bad)) return bad;
  pb::StrongResponse r;
  r.set_revision(rev);
  if (const auto* v = store_.get(get.key(), rev)) {
    r.set_found(true);
    to_key_value(get.key(), *v, r.mutable_kv());
  }
  return r;
}

pb::StrongResponse StateMachine::range(const pb::StrongRange& range) const {
  std::string begin, end;
  if (range.start().empty() && range.end().empty()) {
    if (range.prefix().size() > options_.max_key_bytes)
      return error_response(pb::BAD_REQUEST, "prefix is over " + std::to_string(options_.max_key_bytes) + " bytes");
    begin = range.prefix();
    end = prefix_end(range.prefix());
  } else {
    if (!range.prefix().empty()) return error_response(pb::BAD_REQUEST, "give a prefix or a key range, not both");
    if (range.start().size() > options_.max_key_bytes || range.end().size() > options_.max_key_bytes)
      return error_response(pb::BAD_REQUEST, "range bounds are over " + std::to_string(options_.max_key_bytes) +
                                                 " bytes");
    if (!range.end().empty() && range.start() >= range.end())
      return error_response(pb::BAD_REQUEST, "range start is not below its end");
    begin = range.start();
    end = range.end();
  }
  if (range.start_after().size() > options_.max_key_bytes)
    return error_response(pb::BAD_REQUEST, "start_after is over " + std::to_string(options_.max_key_bytes) + " bytes");
  uint64_t rev = 0;
  if (auto bad = resolve_revision(range.revision(), 0, &rev); is_error(bad)) return bad;
  size_t limit = range.limit() == 0 ? options_.default_range_limit : range.limit();
  limit = std::min<size_t>(limit, options_.max_range_limit);
  const auto page = store_.range(begin, end, range.start_after(), rev, limit, options_.max_result_bytes);
  pb::StrongResponse r;
  r.set_revision(rev);
  for (const auto& e : page.entries) to_key_value(*e.key, *e.version, r.add_kvs());
  r.set_more(page.more);
  if (page.more && !page.entries.empty()) r.set_next_start_after(*page.entries.back().key);
  return r;
}

pb::StrongResponse StateMachine::history(const pb::StrongHistory& history) const {
  if (auto bad = check_key(history.key(), "key"); is_error(bad)) return bad;
  size_t limit = history.limit() == 0 ? options_.default_history_limit : history.limit();
  limit = std::min<size_t>(limit, options_.max_history_limit);
  bool more = false;
  const auto versions = store_.history(history.key(), history.before_revision(), limit, options_.max_result_bytes,
                                       &more);
  pb::StrongResponse r;
  r.set_revision(store_.revision());
  r.set_compact_revision(store_.compact_revision());
  for (const auto* v : versions) to_key_value(history.key(), *v, r.add_kvs());
  r.set_more(more);
  return r;
}

}  // namespace stig::replication
