// Types of the strong (eager) path's client API: versioned keys, options,
// replies, the transaction builder and fences. The calls themselves are
// Client::strong_* (stigmergy/client.h); LockGuard is in stigmergy/lock_guard.h.
//
// The strong path is linearizable: one Raft leader orders every operation.
// Every key has a version (1 on create, +1 per write, back to 1 after a
// delete) and the revisions of its creation and last change; the cluster's
// revision grows by one per write. See docs/strong-path.md.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "stigmergy/result.h"

namespace stigmergy {

// One version of a strong key.
struct KeyValue {
  std::string key;
  std::string value;
  uint64_t version = 0;          // 1 on create, +1 per write; 0 for a deletion record
  uint64_t create_revision = 0;
  uint64_t mod_revision = 0;
  std::string modified_by;       // the agent that wrote it
  int64_t modified_at_ms = 0;    // the leader's wall clock, ms since epoch (monotonic over revisions)
  bool deleted = false;          // history only: this revision deleted the key
};

// A fencing token: a write carrying it is refused (CONFLICT) unless `lock` is
// held and `token` is its current holder's token.
struct Fence {
  std::string lock;
  uint64_t token = 0;
};

// Parses "LOCK:TOKEN" (the last ':' separates; TOKEN a positive decimal).
Result<Fence> parse_fence(std::string_view text);

struct PutOptions {
  std::optional<uint64_t> expect_version;  // refused (CONFLICT) unless the key is at it; 0 = must not exist
  std::optional<Fence> fence;
};

struct DeleteOptions {
  std::optional<uint64_t> expect_version;
  std::optional<Fence> fence;
};

struct GetOptions {
  uint64_t revision = 0;          // 0 = latest; else the key as of this revision
  std::optional<int64_t> at_ms;   // else the key as of this wall time (ms since epoch)
  // Answer from whichever node is asked, without confirming leadership: may
  // miss recent writes (not linearizable), but works without a leader.
  bool stale = false;
};

// Reply to strong_get.
struct StrongGetReply {
  bool found = false;
  KeyValue kv;            // when found
  uint64_t revision = 0;  // the revision read at
  std::string node;
};

// Reply to strong_put, strong_cas and strong_delete.
struct StrongWriteReply {
  bool found = false;     // delete: whether a live key was deleted; put/cas: true
  KeyValue kv;            // put/cas: the new version; delete: the deleted one
  uint64_t revision = 0;  // the revision the write committed at (unchanged if nothing changed)
  std::string node;
};

// A transaction: if every compare holds, run `success`, else `failure`,
// atomically at one revision. Build with the fluent methods:
//
//   stigmergy::Txn txn;
//   txn.if_version("stock:sku-9", stigmergy::CompareOp::kEqual, 3)
//      .then_put("stock:sku-9", "0").then_put("order-17", "reserved")
//      .else_get("stock:sku-9");
//   auto r = client.strong_txn(txn);
enum class CompareOp { kEqual, kNotEqual, kLess, kGreater };

// One condition of a transaction, on the key's latest state.
struct TxnCompare {
  enum class Target { kValue, kVersion, kExists, kModRevision };
  std::string key;
  Target target = Target::kVersion;
  CompareOp op = CompareOp::kEqual;
  std::string value;    // kValue
  uint64_t number = 0;  // kVersion, kModRevision
  bool exists = false;  // kExists (kEqual / kNotEqual only)
};

// One operation of a transaction branch. Fences and expected versions
// belong to the transaction (its fence, its compares), not to its ops.
struct TxnOp {
  enum class Kind { kPut, kDelete, kGet };
  Kind kind = Kind::kGet;
  std::string key;
  std::string value;  // kPut
};

// A transaction under construction (see the example above). Plain data
// plus fluent builders; nothing is checked until Client::strong_txn, which
// refuses empty keys locally and leaves the limits (128 compares and ops per
// branch, one write per key per branch) to the node (BAD_REQUEST).
class Txn {
 public:
  Txn& if_value(std::string key, CompareOp op, std::string value);
  Txn& if_version(std::string key, CompareOp op, uint64_t version);  // a missing key has version 0
  Txn& if_mod_revision(std::string key, CompareOp op, uint64_t revision);
  Txn& if_exists(std::string key, bool exists = true);
  Txn& then_put(std::string key, std::string value);
  Txn& then_delete(std::string key);
  Txn& then_get(std::string key);
  Txn& else_put(std::string key, std::string value);
  Txn& else_delete(std::string key);
  Txn& else_get(std::string key);
  Txn& with_fence(Fence fence);

  std::vector<TxnCompare> compares;
  std::vector<TxnOp> success;
  std::vector<TxnOp> failure;
  std::optional<Fence> fence;
};

// One operation's result in a transaction, in the order the ops ran.
struct TxnOpResult {
  TxnOp::Kind kind = TxnOp::Kind::kGet;
  bool found = false;  // get: key live; delete: a key was deleted; put: true
  KeyValue kv;         // get: the value; put: the new version; delete: the deleted one
};

struct TxnReply {
  bool succeeded = false;  // the compares held (success branch ran)
  std::vector<TxnOpResult> results;
  uint64_t revision = 0;
  std::string node;
};

struct ListOptions {
  uint32_t limit = 0;       // page size; 0 = the node's default (1000)
  uint64_t revision = 0;    // 0 = latest; later pages pass the first page's revision
  std::string start_after;  // continuation: the previous page's next_start_after
};

// Access rules (docs/access-control.md): `subject` ("agent:NAME" or
// "role:NAME") holds `permission` on every key and lock name starting with
// `prefix` ("" = every key). Admin implies write implies read.
enum class AclPermission { kRead, kWrite, kAdmin };
struct AclRule {
  std::string subject;
  AclPermission permission = AclPermission::kRead;
  std::string prefix;
};
// An agent holds the rules of every role it is bound to.
struct AclBinding {
  std::string agent;
  std::string role;
};
struct AclListReply {
  std::vector<AclRule> rules;        // by subject, then prefix, then permission
  std::vector<AclBinding> bindings;  // by agent, then role
  uint64_t revision = 0;
  std::string node;
};

// One page of a listing, in key order.
struct ListReply {
  std::vector<KeyValue> kvs;
  bool more = false;             // more keys after this page
  std::string next_start_after;  // pass as start_after (with `revision`) for the next page
  uint64_t revision = 0;         // the revision every page of this listing is read at
  std::string node;
};

struct HistoryOptions {
  uint32_t limit = 0;            // 0 = the node's default (100)
  uint64_t before_revision = 0;  // 0 = newest; else only versions with mod_revision below it
};

// A key's versions, newest first; deletions appear as records with deleted = true.
struct HistoryReply {
  std::vector<KeyValue> versions;
  bool more = false;
  uint64_t compact_revision = 0;  // versions before it are gone
  uint64_t revision = 0;
  std::string node;
};

// A session: locks die with it. Keep it alive well within its TTL.
struct Session {
  uint64_t id = 0;
  int64_t ttl_ms = 0;
};

// A held lock: its fencing token grows at every grant of this lock.
struct LockHold {
  std::string name;
  uint64_t token = 0;
  uint64_t session_id = 0;
};

}  // namespace stigmergy
