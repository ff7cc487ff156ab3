// Write ids kept with a key, so a client write retried on any node applies
// once (docs/lazy-path.md "Retries").
//
// KeyState.writes holds records of the key's recent client writes: for each
// node, its last kWriteIdsPerNode writes of the key, plus up to
// kPinnedWriteIdsPerNode *pinned* ones (writes at risk of being applied
// twice: quorum and all writes, which a cut-off node keeps waiting on while
// the client retries elsewhere, and retries applied without finding the
// first attempt). A record is the node, the node's dot for the write (every
// recorded write draws one; for a register put or set add it is the dot of
// the sibling it made), a 64-bit write id (a hash of the client id and the
// seq: a client can only aim a collision at a write whose client id it
// knows, and with that id it could already send the write itself), flags
// and, for a counter add, its delta. Beside them, each node's *floor*: the
// highest dot of that node's records cut from the window. Records merge as a
// set, floors by maximum, and the windows are cut per node to the highest
// dots, a pure function of what was merged, so every replica cuts alike and
// the merge stays commutative, associative and idempotent.
//
// A retry whose write id the key holds is answered, not applied. One that is
// not held and names a node it was sent to whose floor is above the client's
// horizon for that node (the node's dot counter as last heard by the client,
// before the first attempt) may have been applied there and cut since: it is
// refused (RETRY_UNKNOWN). Otherwise it is applied (pinned); if the first
// attempt was applied too (on a node whose state had not arrived yet), the
// copies meet in a merge, where the one with the smallest (node, dot)
// counts: registers keep only its sibling, counters' other copies are
// subtracted again by the node that applied them, sets keep both dots (the
// element shows once).
//
// Layout (varints are LEB128, canonical; fixed64 little-endian):
//   varint nodes; nodes x { u8 len, node, varint floor }   sorted by node, unique; each
//                                                          with a floor or a record
//   varint records; records x { u8 node index, varint dot, fixed64 write id, u8 flags,
//                               [varint zigzag(delta) if flags & kWriteHasDelta]
//                               [varint len, context if flags & kWriteCutContext] }
//                                                          sorted by (node, dot)
// An empty ledger is the empty string.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "replication/status.h"
#include "stigmergy.pb.h"

namespace stig::replication {

namespace pb = stigmergy::v1;

constexpr size_t kWriteIdsPerNode = 1;         // unpinned records kept per node
constexpr size_t kPinnedWriteIdsPerNode = 16;  // pinned quorum/all writes kept per node
constexpr size_t kRetryWriteIdsPerNode = 16;   // pinned retries kept per node
constexpr size_t kMaxWriteNodeBytes = 255;
constexpr size_t kMaxCutContextBytes = 1u << 16;  // a cut context kept with a record

enum WriteFlags : uint8_t {
  kWriteCompensated = 1,  // counter: a duplicate copy its node has subtracted again
  kWriteCollapsed = 2,    // register: a duplicate copy whose sibling was dropped
  kWriteNoSibling = 4,    // register or set: the write made no sibling (a set remove)
  kWritePinned = 8,       // a quorum or all write: kept in the pinned window
  kWriteHasDelta = 16,    // a counter add with a nonzero delta (encoded after the flags)
  kWriteRetry = 32,       // a retry applied without finding its first attempt: kept in the retry window
  kWriteCutContext = 64,  // a register write whose context was cut: the context it applied follows
  kWriteKnownFlags = 127,
};

// The write id of request (client_id, seq) as records hold it.
uint64_t write_id(std::string_view client_id, uint64_t seq);

struct WriteRecord {
  std::string_view node;
  uint64_t dot = 0;
  uint64_t id = 0;  // write_id(client id, seq)
  int64_t delta = 0;
  uint8_t flags = 0;  // without kWriteHasDelta: encoding sets it
  // With kWriteCutContext, a register write whose context was cut
  // (PutResult.context_cut): the serialized context it applied (maybe
  // empty), so a retry is answered as the first attempt was.
  std::string_view cut_context;
};

struct WriteLedger {
  std::vector<std::pair<std::string_view, uint64_t>> floors;  // by node, no zeros
  std::vector<WriteRecord> records;                           // by (node, dot)
};

// Parses and checks the layout, order and bounds (views point into `bytes`).
Status decode_writes(std::string_view bytes, WriteLedger& out);
std::string encode_writes(const WriteLedger& ledger);
void encode_writes_into(const WriteLedger& ledger, std::string& out);

// The copy of write (client_id, seq) that counts: the record with the
// smallest (node, dot). nullopt when the key does not hold it.
std::optional<WriteRecord> find_write(const pb::KeyState& state, std::string_view client_id, uint64_t seq);
// The highest dot of `node`'s records cut from the key's windows (0: none).
uint64_t write_floor(const pb::KeyState& state, std::string_view node);
// Every node the ledger names satisfies `member` (a peer's state names only
// nodes of the cluster).
Status check_write_nodes(const pb::KeyState& state, const std::function<bool(std::string_view)>& member);
// Calls `f(node, dot)` for every floor and record: dots a node has issued
// (a node that lost its disk learns its own back, so it never reissues one).
void for_each_write_dot(const pb::KeyState& state, const std::function<void(std::string_view, uint64_t)>& f);
// True when any node's floor is above zero.
bool any_write_floor(const pb::KeyState& state);

// Records that `node` applied write (client_id, seq) with `dot` (above every
// dot of that node the key holds). Cuts the node's windows.
void record_write(pb::KeyState& state, std::string_view node, uint64_t dot, std::string_view client_id, uint64_t seq,
                  int64_t delta, uint8_t flags, std::string_view cut_context = {});

// Joins remote's ledger into local's (same key), then resolves copies of one
// write id: registers keep the sibling of the first copy only (none when a
// copy was superseded). `kernel_changed`: the siblings changed in this merge.
// Returns true if local changed.
bool merge_writes(pb::KeyState& local, const pb::KeyState& remote, bool kernel_changed);

// Counter adds `self` applied that another node had applied first: subtracts
// each from self's entry once and marks it compensated. Returns true if the
// state changed (it must then be pushed).
bool compensate_duplicate_adds(pb::KeyState& state, std::string_view self);

// Type-specific checks of a decoded ledger (validate_state calls it).
Status validate_writes(const pb::KeyState& state);

}  // namespace stig::replication
