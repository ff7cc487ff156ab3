// StateMachine: the strong path's replicated state machine.
//
// Raft commits StrongCommands; every replica applies the same commands in the
// same order with apply() and so reaches byte-identical state and answers:
// nothing here reads a clock or iterates an unordered container, and the
// leader's wall time arrives inside each command (made monotonic: a leader
// whose clock jumps back cannot make time run backwards).
//
// It composes four parts: MvccStore (versioned KV with history), LockTable
// (sessions, locks, waits), DedupTable (at-most-once answers) and AclTable
// (access rules). With access control on, every request is checked against
// the rules as applied so far, by the agent the command carries: a refused
// request changes nothing (its refusal is remembered for retries), and a
// rule change orders with writes exactly as the log does. Every field
// of a command is untrusted: a bad one gets a one-line error and changes
// nothing; no input reaches an invariant abort.
//
// Answers for other requests: an entry may decide requests that came earlier
// (a lock released or a session ended grants the lock to the next waiter; a
// CancelWait or a session end drops a wait). Those come back in
// ApplyResult::completions, keyed by (client_id, seq), and are also recorded
// for dedup, so a later retry of them gets the same answer.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "replication/strong/acl.h"
#include "replication/strong/dedup_table.h"
#include "replication/expected.h"
#include "replication/strong/lock_table.h"
#include "replication/strong/mvcc_store.h"
#include "replication/strong/options.h"

namespace stig::replication {

struct ApplyResult {
  enum class Kind {
    kDecided,    // `response` is this request's answer, decided now
    kDuplicate,  // a retry of an answered request: `response` is the first answer, nothing applied
    kWaiting,    // a lock acquire was queued: no response; a Completion for (client_id, seq) answers it
    kRejoined,   // a retry of a request that is still waiting: no response; answer it with that Completion
    kInternal,   // ExpireSession / CancelWait / an empty command: `response` tells what happened, for logs
  };
  Kind kind = Kind::kDecided;
  std::optional<pb::StrongResponse> response;
  std::vector<Completion> completions;  // other requests decided by this entry, in decision order
  LeaseChanges lease;                   // for the leader's LeaseKeeper
};

class StateMachine {
 public:
  explicit StateMachine(StateMachineOptions options = {});

  // Applies the committed entry at `log_index` (strictly increasing; gaps
  // are entries that were not StrongCommands).
  ApplyResult apply(uint64_t log_index, const pb::StrongCommand& command);

  // Serves get, range and history from the applied state (the glue decides
  // whether ReadIndex came first). Other ops get BAD_REQUEST.
  pb::StrongResponse read(const pb::StrongRequest& request) const;

  uint64_t applied_index() const { return applied_index_; }
  uint64_t revision() const { return store_.revision(); }
  uint64_t compact_revision() const { return store_.compact_revision(); }
  int64_t last_wall_ms() const { return last_wall_ms_; }
  const StateMachineOptions& options() const { return options_; }
  const MvccStore& store() const { return store_; }
  const LockTable& locks() const { return locks_; }
  const DedupTable& dedup() const { return dedup_; }
  const AclTable& acl() const { return acl_; }
  // For LeaseKeeper::on_become_leader.
  std::vector<SessionLease> live_sessions() const { return locks_.live_sessions(); }
  std::vector<WaitLease> live_waits() const { return locks_.live_waits(); }

  // Deterministic bytes: equal states give equal snapshots.
  std::string snapshot() const;
  // Validates everything; a corrupt snapshot is an error, never an abort.
  static Expected<StateMachine> restore(std::string_view bytes, StateMachineOptions options = {});

 private:
  struct Context;  // the entry being applied

  void apply_request(Context& ctx, const pb::StrongRequest& request);
  pb::StrongResponse mutate(Context& ctx, const pb::StrongRequest& request, bool* waiting);
  pb::StrongResponse put(Context& ctx, const pb::StrongPut& put);
  pb::StrongResponse erase(Context& ctx, const pb::StrongDelete& del);
  pb::StrongResponse cas(Context& ctx, const pb::StrongCas& cas);
  pb::StrongResponse txn(Context& ctx, const pb::StrongTxn& txn);
  pb::StrongResponse compact(const pb::StrongCompact& compact);
  pb::StrongResponse change_acl(const pb::StrongRequest& request);
  pb::StrongResponse get(const pb::StrongGet& get) const;
  pb::StrongResponse range(const pb::StrongRange& range) const;
  pb::StrongResponse history(const pb::StrongHistory& history) const;

  // Errors as responses; an OK status (error OK) means "go on".
  pb::StrongResponse check_key(std::string_view key, std::string_view what) const;
  pb::StrongResponse check_value(std::string_view value) const;
  pb::StrongResponse check_fence(const pb::Fence& fence) const;
  pb::StrongResponse check_txn(const pb::StrongTxn& txn) const;
  // Resolves a read revision (0 = latest) or a wall time (at_ms != 0).
  pb::StrongResponse resolve_revision(uint64_t revision, int64_t at_ms, uint64_t* out) const;
  // Compacts by the retention setting, deterministically at apply time.
  void retain();

  StateMachineOptions options_;
  MvccStore store_;
  LockTable locks_;
  DedupTable dedup_;
  AclTable acl_;
  uint64_t applied_index_ = 0;
  int64_t last_wall_ms_ = 0;
};

}  // namespace stig::replication
