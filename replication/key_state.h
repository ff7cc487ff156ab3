// Operations on the replicated state of one key (stigmergy.v1.KeyState).
//
// Registers and sets are "dot kernels": a set of (dot -> payload) entries plus
// the causal context (a version vector) of everything the state has seen. A
// dot is the event (node, counter) that created an entry. Counters are
// PN-counters: per-node increment and decrement totals.
//
// Every function keeps a KeyState canonical (siblings sorted by dot, counter
// entries and context entries sorted by node, no zero context entries), so
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

// Joins `remote` into `local` (same key and type). Commutative, associative
// and idempotent. Returns true if `local` changed.
bool merge_state(pb::KeyState& local, const pb::KeyState& remote);
// The same join, free to move what it keeps out of `remote` (left in an
// unspecified but valid state, its key and type untouched): no sibling is
// copied. For states parsed from a peer's message and then dropped.
bool merge_state(pb::KeyState& local, pb::KeyState&& remote);

// True when the key holds nothing live: a register whose siblings are all
// tombstones, or an empty set. Such keys are garbage once every replica has
// the same state. Counters are never garbage.
bool is_tombstone_only(const pb::KeyState& state);

// Checks the structural invariants of a state (from a peer or from disk).
Status validate_state(const pb::KeyState& state);

}  // namespace stig::replication
