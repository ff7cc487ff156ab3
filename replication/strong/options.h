// Limits and settings of the strong path's state machine, and the small
// value types its parts share.
//
// Every limit here is part of the replicated behaviour: all replicas must run
// with the same options, or the same log could be decided differently.
#pragma once

#include <compare>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "replication/strong/acl.h"
#include "strong.pb.h"

namespace stig::replication {

namespace pb = stigmergy::v1;

struct StateMachineOptions {
  // Keep at least this many revisions of history; older ones are compacted at
  // apply time (0 = keep everything until an explicit compact).
  uint64_t history_retention_revisions = 0;

  size_t max_key_bytes = 4096;          // keys and lock names
  size_t max_value_bytes = 1u << 20;    // one value
  size_t max_id_bytes = 256;            // client ids and agent names
  size_t max_txn_ops = 128;             // compares, and ops per branch

  uint32_t default_range_limit = 1000;
  uint32_t max_range_limit = 10000;     // larger limits are capped
  uint32_t default_history_limit = 100;
  uint32_t max_history_limit = 1000;
  size_t max_result_bytes = 3u << 20;   // a range/history page stops here (always >= 1 entry)

  int64_t min_session_ttl_ms = 100;
  int64_t max_session_ttl_ms = 24 * 3600 * 1000;  // one day
  size_t max_sessions = 100000;
  int64_t max_lock_wait_ms = 3600 * 1000;         // one hour
  size_t max_waiters_per_lock = 128;
  size_t max_waiters_total = 4096;
  size_t max_locks = 100000;                      // names held or waited for

  // At-most-once table: the last `dedup_window` answered seqs per client, at
  // most `dedup_max_clients` clients and `dedup_max_bytes` of answers; the
  // client whose last command is oldest (by log index) is forgotten first.
  size_t dedup_window = 64;
  size_t dedup_max_clients = 10000;
  size_t dedup_max_bytes = 64u << 20;

  // Access rules: whether they are enforced and who the admin agent is
  // (replication/strong/acl.h). Rules are stored whether or not enforced.
  AccessOptions access;

  // Test only (stig-sim --inject-bug lock-tokens-restart): a lock taken
  // while free gets token 1 instead of the next from the counter, so a
  // stale holder's token can equal a later one. Proves lock-safety fails.
  bool test_lock_tokens_restart = false;
};

// A client's request: the dedup key and the key of a waiting lock acquire.
struct RequestId {
  std::string client_id;
  uint64_t seq = 0;
  auto operator<=>(const RequestId&) const = default;
  bool operator==(const RequestId&) const = default;
};

// A decision about an earlier request, made by a later entry: a lock granted
// to a waiter, or a wait dropped (timed out, session ended).
struct Completion {
  RequestId request;
  pb::StrongResponse response;
};

// What the leader's LeaseKeeper must learn from an applied entry.
struct SessionLease {
  uint64_t session_id = 0;
  int64_t ttl_ms = 0;
  uint64_t renewed_index = 0;  // log index of the grant or last keepalive
};
struct WaitLease {
  RequestId request;
  uint64_t session_id = 0;
  int64_t wait_ms = 0;
};
struct LeaseChanges {
  std::vector<SessionLease> sessions_renewed;  // granted or kept alive
  std::vector<uint64_t> sessions_ended;        // expired or revoked
  std::vector<WaitLease> waits_started;
  std::vector<RequestId> waits_ended;          // granted, cancelled, or dropped
  bool empty() const {
    return sessions_renewed.empty() && sessions_ended.empty() && waits_started.empty() && waits_ended.empty();
  }
};

// Builds an error response with a one-line, valid UTF-8 message.
pb::StrongResponse error_response(pb::ErrorCode code, std::string_view message);

}  // namespace stig::replication
