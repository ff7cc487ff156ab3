// Stigmergy C++ client.
//
//   stigmergy::ClientOptions opts;
//   opts.endpoints = {"127.0.0.1:7101", "127.0.0.1:7102"};
//   auto client = stigmergy::Client::create(opts);
//   if (!client) { std::cerr << client.error().to_string() << "\n"; return 1; }
//   auto got = client->get("order-17");
//   if (got && got->versions.size() > 1) { /* siblings: resolve with got->context */ }
//   auto put = client->put("order-17", "shipped", got->context);
//
// Errors are values (Result<T>); nothing throws across this API.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "stigmergy/context.h"
#include "stigmergy/result.h"
#include "stigmergy/strong.h"

namespace stigmergy {

// When a write is acknowledged.
enum class Durability {
  kLocal,   // after the coordinating node's fsync (default)
  kQuorum,  // after a majority of replicas stored it durably
  kAll,     // after every replica stored it durably
};

// "local" | "quorum" | "all" (case-sensitive).
Result<Durability> parse_durability(std::string_view text);
const char* durability_name(Durability d);

// A node address as given by the user.
struct Endpoint {
  std::string host;  // name, IPv4 address, or IPv6 address without brackets
  uint16_t port = 0;

  // "host:port", with brackets around IPv6 hosts.
  std::string to_string() const;
};

// Parses "HOST:PORT" ("[v6addr]:PORT" for IPv6). Port 1..65535.
Result<Endpoint> parse_endpoint(std::string_view text);
// Parses a comma-separated, non-empty list of endpoints. Blank items and
// duplicates are errors naming the offending item.
Result<std::vector<Endpoint>> parse_endpoints(std::string_view csv);

// The agent name used when none is configured: $STIG_AGENT if set and
// non-empty, else "$USER@hostname".
std::string default_agent();

// Configuration of a Client.
// Transport security (docs/security.md). With `ca_file` set the client
// speaks TLS 1.3 only, accepts only a node certificate (CN node:ID) signed by
// that CA, and presents `cert_file`/`key_file` (CN agent:NAME) as its agent
// credential; a node running with TLS refuses a client without one. Empty
// `ca_file`: plain TCP (a node started with --insecure-plaintext).
struct TlsOptions {
  std::string ca_file;
  std::string cert_file;
  std::string key_file;
};

struct ClientOptions {
  // "HOST:PORT" strings; at least one. Tried in order, starting with the first.
  std::vector<std::string> endpoints;
  // Who is acting; recorded as modified_by on every write. Empty: $STIG_AGENT
  // if set, else the agent of tls.cert_file if given, else default_agent().
  // Over TLS a node refuses an agent other than the credential's (except
  // for the cluster's admin agent, which may act for others).
  std::string agent;
  TlsOptions tls;
  // How long one attempt at one endpoint may take (connect + request + reply)
  // before the client gives up on that endpoint and fails over to the next.
  // Above the node's durability timeout (5 s, --durability-timeout-ms), so a
  // quorum or all write on a node cut off from the others is answered
  // DURABILITY_NOT_MET (applied there, not yet replicated) instead of timing
  // out and being sent to another node as if it had not happened.
  std::chrono::milliseconds timeout{8000};
  // Upper bound for establishing a TCP connection (capped by `timeout`), so a
  // dead host does not eat the whole attempt budget.
  std::chrono::milliseconds connect_timeout{1000};
  // Read-your-writes on get (see Client). Off: get returns the first answer.
  bool read_your_writes = true;
  // How long get may keep looking for a node that has seen this client's
  // last write of the key before returning what it has (marked stale).
  std::chrono::milliseconds read_your_writes_budget{500};
  // Unique per client instance; empty: 16 random hex characters.
  std::string client_id;

  // Strong path. One strong call (leader discovery, hint following and
  // retries with the same request id included) gives up after
  // `strong_deadline` (plus the wait of a lock acquire). Between rounds of
  // failed attempts it sleeps a capped exponential backoff with jitter.
  std::chrono::milliseconds strong_deadline{10000};
  std::chrono::milliseconds strong_backoff_initial{20};
  std::chrono::milliseconds strong_backoff_max{500};
};

// One version of a register key: a concurrent sibling, or the only value.
struct Version {
  std::string value;          // bytes
  std::string modified_by;    // agent that wrote it
  int64_t modified_at_ms = 0; // wall clock of the coordinating node, ms since epoch
  // The write that made this version, unique in the cluster: (node, counter).
  // Checkers use it to tell a superseded write from a lost one.
  std::string dot_node;
  uint64_t dot_counter = 0;
};

// Reply to get: every sibling of a register key and the context covering them.
struct GetReply {
  std::string key;
  std::vector<Version> versions;  // every concurrent sibling; empty if the key is missing
  std::string context;            // causal context bytes (see encode_context)
  std::string node;               // node that answered
  // True when read-your-writes could not be satisfied within its budget: no
  // node answered with a context covering this client's last write of the key.
  bool stale = false;

  // The sibling values, in order.
  std::vector<std::string> values() const;
};

// Reply to put and del: like a get right after the write.
struct PutReply {
  std::string key;
  std::string context;            // covers the write just made and the versions below
  std::vector<Version> versions;  // live siblings after the write (1 unless concurrent; 0 after del)
  std::string node;
  std::string dot_node;           // the dot of the write just made
  uint64_t dot_counter = 0;
  // The node had not yet seen every version the sent context named (a
  // context read from a node ahead of it): it applied only what it had seen,
  // so the unseen versions were not superseded and stay as siblings.
  bool context_cut = false;
};

// Reply to counter add/get: the counter's value as the answering node sees it.
struct CounterReply {
  std::string key;
  int64_t value = 0;
  std::string modified_by;     // last writer, when the node reports it
  int64_t modified_at_ms = 0;
  std::string node;
};

// Reply to set add/remove/get: the elements as the answering node sees them.
struct SetReply {
  std::string key;
  std::vector<std::string> elements;  // sorted; for add/remove as the node reports them
  std::string node;
};

// One node as the answering node's failure detector sees it.
struct NodeStatus {
  std::string id;
  std::string address;
  std::string state;  // self | up | suspect | down
  uint64_t keys = 0;
  uint64_t tombstones = 0;
  uint64_t digest = 0;
  int64_t last_heard_ms_ago = -1;  // -1 if never
  // The strong path's Raft as the node reports itself; role empty when not
  // reported (a node fills only its own row).
  std::string role;  // leader | follower | candidate | pre-candidate
  uint64_t term = 0;
  uint64_t commit_index = 0;
};

// Reply to cluster status: every node of the cluster, the answering one included.
struct ClusterStatus {
  std::vector<NodeStatus> nodes;
  std::string node;  // node that answered
};

// Reply to an admin command: what the node did, in one line.
struct AdminReply {
  std::string message;
  std::string node;
};

// A connection to a Stigmergy cluster on behalf of one agent.
//
// Guarantees:
// - Blocking calls, each bounded in time: at most `timeout` per endpoint tried
//   (plus `read_your_writes_budget` for get). Errors are values, never thrown.
// - Failover: when the current node is unreachable, times out, or answers
//   UNAVAILABLE, the same request (same client id and seq: it stays one
//   logical request, and a node that already applied it answers from its
//   dedup table instead of applying it twice) is sent to the next endpoint,
//   and the client then sticks to the node that worked. A lazy write applies
//   once on every node: the retry says it is one (attempt number, the nodes
//   tried before and the last dot counter each had reported), a node that
//   holds the write id answers it instead of applying it, and one that
//   cannot rule out an earlier attempt answers RETRY_UNKNOWN (kRetryUnknown)
//   rather than applying it again (docs/lazy-path.md "Retries"). The error
//   after every endpoint failed names each endpoint with its reason.
// - DURABILITY_NOT_MET and RETRY_UNKNOWN are returned, never retried: the
//   write was (or may have been) applied; only UNAVAILABLE and transport
//   failures fail over.
// - Read-your-writes: the client remembers the causal context it last
//   obtained for each key (from put, del and get replies). A get whose
//   returned context does not dominate the remembered one (the answering node
//   has not yet seen this client's write) is retried on the other endpoints
//   and, briefly, on the same ones, for up to `read_your_writes_budget`; if no
//   node catches up in time the first answer is returned with `stale` set.
//   A get that finds the key missing after this client deleted it counts as
//   caught up (deleted keys are eventually forgotten with their context).
//   This holds within one Client instance (not across processes).
// - admin_partition / admin_heal act on the node of the first endpoint only
//   (no failover: acting on another node would fault the wrong node).
//
// - Strong calls: see the section below.
//
// Not thread-safe: use one Client per thread. Movable, not copyable.
class Client {
 public:
  // Validates the options (endpoints, agent); does not connect yet.
  static Result<Client> create(ClientOptions options);

  Client(Client&&) noexcept;
  Client& operator=(Client&&) noexcept;
  ~Client();

  // Register operations. Keys are non-empty byte strings. `context` is raw
  // context bytes (decode_context turns the text form into bytes); empty
  // means "no version seen".
  Result<GetReply> get(std::string_view key);
  Result<PutReply> put(std::string_view key, std::string_view value, std::string_view context = {},
                       Durability durability = Durability::kLocal);
  Result<PutReply> del(std::string_view key, std::string_view context = {},
                       Durability durability = Durability::kLocal);

  // PN-counter: add a (possibly negative) delta; read the current value.
  Result<CounterReply> counter_add(std::string_view key, int64_t delta,
                                   Durability durability = Durability::kLocal);
  Result<CounterReply> counter_get(std::string_view key);

  // OR-set of byte-string elements.
  Result<SetReply> set_add(std::string_view key, std::string_view element,
                           Durability durability = Durability::kLocal);
  Result<SetReply> set_remove(std::string_view key, std::string_view element,
                              Durability durability = Durability::kLocal);
  Result<SetReply> set_get(std::string_view key);

  // Every node as seen by the answering node's failure detector.
  Result<ClusterStatus> cluster_status();

  // Fault injection on the first endpoint's node: drop all traffic to and
  // from the given peers until healed.
  Result<AdminReply> admin_partition(const std::vector<std::string>& drop_ids);
  Result<AdminReply> admin_heal();

  // --- Strong path (linearizable; docs/strong-path.md) -----------------------
  //
  // Every strong call goes to the Raft leader. The client starts at the
  // endpoint it last used, follows NOT_LEADER hints (the leader's address,
  // even one not in `endpoints`) and remembers the leader; on connection
  // failures and "no leader known" answers it tries the other endpoints,
  // sleeping a capped exponential backoff with jitter after each round,
  // until `strong_deadline`. Every retry of one call carries the same
  // (client id, seq), so a write is applied at most once even across leader
  // changes. When a write's outcome cannot be learned in time (the leader
  // answered OUTCOME_UNKNOWN, or the connection broke after sending, and no
  // retry got the answer) the error is kOutcomeUnknown, never a plain
  // failure. No leader in time: kNotLeader; nothing reachable: kUnreachable.
  // Refusals are values: kConflict (expected version, CAS, compare or
  // stale fence), kBusy, kDeadlock, kNotFound, kSessionExpired, kCompacted.
  Result<StrongWriteReply> strong_put(std::string_view key, std::string_view value, const PutOptions& options = {});
  Result<StrongGetReply> strong_get(std::string_view key, const GetOptions& options = {});
  Result<StrongWriteReply> strong_delete(std::string_view key, const DeleteOptions& options = {});
  // Sets `new_value` if the key's value is `expected`; CONFLICT otherwise
  // (including when the key is missing).
  Result<StrongWriteReply> strong_cas(std::string_view key, std::string_view expected, std::string_view new_value,
                                      const std::optional<Fence>& fence = std::nullopt);
  Result<TxnReply> strong_txn(const Txn& txn);
  Result<HistoryReply> strong_history(std::string_view key, const HistoryOptions& options = {});
  // One page of the live keys starting with `prefix` (empty: every key).
  Result<ListReply> strong_list(std::string_view prefix, const ListOptions& options = {});
  // Every page of a listing at one revision, up to `max_keys` keys (0: no
  // limit); `more` tells whether keys were left out.
  Result<ListReply> strong_list_all(std::string_view prefix, uint64_t revision = 0, size_t max_keys = 0);

  // Optimistic read-modify-write: reads `key`, calls fn(current value or
  // nullopt when missing) and writes its result with the version read as
  // the expected version; on CONFLICT (someone wrote in between) starts
  // over, up to `max_attempts` times. An error returned by fn aborts and is
  // returned as is.
  using UpdateFn = std::function<Result<std::string>(const std::optional<std::string>& current)>;
  Result<StrongWriteReply> update(std::string_view key, const UpdateFn& fn, int max_attempts = 10);

  // Sessions: a lease that locks are tied to. ttl 100 ms .. 1 day.
  Result<Session> grant(std::chrono::milliseconds ttl);
  Result<Session> keepalive(uint64_t session_id);
  Result<void> revoke(uint64_t session_id);

  // Locks. wait 0 = try: kBusy at once when held. Otherwise waits in FIFO
  // order up to `wait` (kBusy when it runs out); the call blocks that long.
  // The session must be kept alive meanwhile (LockGuard does it).
  Result<LockHold> lock_acquire(std::string_view name, uint64_t session_id, std::chrono::milliseconds wait);
  Result<void> lock_release(std::string_view name, uint64_t session_id, uint64_t token);

  // Access rules, kept in the strong store (docs/access-control.md). Changes
  // and listing need global admin when the cluster enforces rules. Revoking
  // a rule (or unbinding a role) that is not there is kNotFound.
  Result<void> acl_grant(const AclRule& rule);
  Result<void> acl_revoke(const AclRule& rule);
  Result<void> acl_bind(std::string_view agent, std::string_view role);
  Result<void> acl_unbind(std::string_view agent, std::string_view role);
  Result<AclListReply> acl_list();

  const std::string& client_id() const;
  const std::string& agent() const;
  const ClientOptions& options() const;
  // The endpoint the client currently sticks to, as "host:port".
  std::string current_endpoint() const;

  class Impl;

 private:
  explicit Client(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace stigmergy
