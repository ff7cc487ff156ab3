// Operations on the replicated state of one key (stigmergy.v1.KeyState).
//
// Registers and sets are "dot kernels": a set of (dot -> payload) entries plus
// the causal context (a version vector) of everything the state has seen. A
// dot is the event (node, counter) that created an entry. Counters are
// PN-counters: per-node increment and decrement totals.
//
// Every function keeps a KeyState canonical (siblings sorted by dot, counter
// entries and context entries sorted by node, no zero context entries,
// applied writes sorted by (client id, seq, node, dot)), so
// equal states serialize to equal bytes and hash equally on every replica.
//
// Dot counters are drawn from one per-node counter shared by all keys, never
// reused. The context's entry for node n is therefore the highest n-dot this
// key's history has seen, and covers every lower n-dot of this key: node n
// made each of them from a state that already held the ones before.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "replication/status.h"
#include "replication/time.h"
#include "stigmergy.pb.h"

namespace stig::replication {

namespace pb = stigmergy::v1;

// The highest dot counter any state may carry. Far above anything a node can
// issue (2^62 writes), and far enough below 2^64 that no counter arithmetic
// wraps. A node whose counter reaches it refuses writes instead of wrapping;
// a state or context claiming more is malformed.
constexpr uint64_t kMaxDotCounter = uint64_t{1} << 62;

// --- version vectors --------------------------------------------------------

uint64_t vv_get(const pb::VersionVector& vv, std::string_view node);
// Raises the entry for `node` to at least `counter`.
void vv_raise(pb::VersionVector& vv, std::string_view node, uint64_t counter);
// Pointwise maximum in one pass over both (sorted) vectors; returns true if
// `into` changed.
bool vv_join(pb::VersionVector& into, const pb::VersionVector& from);
// a >= b pointwise: a has seen everything b has.
bool vv_descends(const pb::VersionVector& a, const pb::VersionVector& b);
inline bool vv_covers(const pb::VersionVector& vv, std::string_view node, uint64_t counter) {
  return counter <= vv_get(vv, node);
}
// Sorted by node, unique, non-empty names, no zero counters, none above
// kMaxDotCounter.
Status vv_validate(const pb::VersionVector& vv);

// --- contexts handed to clients (opaque bytes: a serialized VersionVector) ---

std::string encode_context(const pb::VersionVector& vv);
Status decode_context(std::string_view bytes, pb::VersionVector& out);

// --- per-key state ----------------------------------------------------------

struct WriteMeta {
  std::string_view agent;
  WallTime wall = 0;
};

// Siblings the context does not cover: those a write with `ctx` keeps.
size_t surviving_siblings(const pb::KeyState& state, const pb::VersionVector& ctx);
// Bytes of values kept by a write with `ctx` (bound on a key's state size).
size_t surviving_bytes(const pb::KeyState& state, const pb::VersionVector& ctx);

// Register write (put, or delete when `tombstone`): drops the siblings `ctx`
// covers and adds one sibling with dot (node, counter).
void register_write(pb::KeyState& state, const pb::VersionVector& ctx, std::string_view node, uint64_t counter,
                    std::string_view value, bool tombstone, const WriteMeta& meta);

// OR-set (add wins): adding replaces the element's observed dots with a new
// one; removing drops every observed dot of the element (the context keeps
// the knowledge, so the removal propagates). Returns false if nothing changed.
void set_add(pb::KeyState& state, std::string_view element, std::string_view node, uint64_t counter,
             const WriteMeta& meta);
bool set_remove(pb::KeyState& state, std::string_view element);
std::vector<std::string> set_elements(const pb::KeyState& state);

void counter_add(pb::KeyState& state, std::string_view node, int64_t delta, const WriteMeta& meta);
int64_t counter_value(const pb::KeyState& state);

// --- applied writes: retries recognised on every node ------------------------
//
// A key keeps the write ids (client id, seq) of its most recent client
// writes, each with the node that applied it (AppliedWrite in the proto).
// They merge as a set, cut to the kMaxAppliedWritesPerNode of highest
// order that each node applied (a per-key Lamport order, so no clock decides
// what is kept; per node, so a node that was cut off keeps its writes however
// many the others took meanwhile, until it takes that many more itself). A write applied
// on two nodes before either heard of the other's copy is resolved in the
// merge, the same way on every replica: of the copies of one write id, the
// one with the smallest (node, dot) counts. A register keeps only that
// copy's sibling (and none if some copy was already superseded: the write
// was overwritten or deleted); a counter's extra copies are subtracted again
// by the node that applied them (compensate_duplicate_adds); a set shows the
// element once either way and keeps both dots until the element's next add
// or remove.

constexpr size_t kMaxAppliedWritesPerNode = 32;
constexpr size_t kMaxClientIdBytes = 256;  // longer client ids are not recorded

// The copy of write (client_id, seq) that counts: the record with the
// smallest (node, dot). nullptr when the key does not know the write.
const pb::AppliedWrite* find_applied(const pb::KeyState& state, std::string_view client_id, uint64_t seq);

// Records that `node` applied write (client_id, seq) to `state`, making the
// sibling with dot (node, dot_counter) (0: none) or adding `delta` to a
// counter. Does nothing for an empty or over-long client id, or when the
// write is recorded already. Returns true if the state changed.
// `cut_context`: a register write's context after it was cut (nullptr: not cut).
bool record_applied(pb::KeyState& state, std::string_view client_id, uint64_t seq, std::string_view node,
                    uint64_t dot_counter, int64_t delta, const pb::VersionVector* cut_context = nullptr);

// Counter adds `self` applied that another node had applied too, with a
// smaller node id: subtracts each from self's entry once and marks it
// compensated. Returns true if the state changed (it must then be pushed).
bool compensate_duplicate_adds(pb::KeyState& state, std::string_view self);

// Joins `remote` into `local` (same key and type). Commutative, associative
// and idempotent. Returns true if `local` changed.
bool merge_state(pb::KeyState& local, const pb::KeyState& remote);

// True when the key holds nothing live: a register whose siblings are all
// tombstones, or an empty set. Such keys are garbage once every replica has
// the same state. Counters are never garbage.
bool is_tombstone_only(const pb::KeyState& state);

// Checks the structural invariants of a state (from a peer or from disk).
Status validate_state(const pb::KeyState& state);

}  // namespace stig::replication
