// Replica: one Stigmergy node's protocol logic, with no I/O.
//
// The runtime (node/ for real processes, sim/ for the simulator) feeds it
// inputs through step() and drains what it decided through take_output():
//
//   for each input that arrived:  replica.step(now, input);
//   Output out = replica.take_output();
//   hand `out` to a runtime::ReleaseQueue, which says what to write and
//   sync (group commit) and which messages and replies may leave when
//   after each synced write: step(now, Persisted{queue.synced_through()})
//   call step(now, Tick{}) again no later than out.wake_at
//
// Guarantees: the same seed, config, recovered state and sequence of
// (time, input) pairs produce the same outputs, byte for byte. Each message
// and reply says what it waits for (ReleaseAfter): by default, that the
// persists of its own output and of every earlier output are synced.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "replication/config.h"
#include "replication/status.h"
#include "replication/time.h"
#include "stigmergy.pb.h"

namespace stig::replication {

class LazyPath;
class StrongPath;
namespace raft {
class Raft;
}

// A storage write: put `value` under `key`, or erase `key`, or (erase with a
// range_end) erase every key in [key, range_end). Keys are storage keys
// (replication/key_space.h).
struct Persist {
  std::string key;
  std::string value;
  bool erase = false;
  std::string range_end = {};  // with erase: erase [key, range_end) instead of key alone
};

// What a node reads back from disk at start, read on demand: each path of
// the core scans only its own key spaces (replication/key_space.h) and keeps
// what it needs, so recovery never holds the whole disk in memory at once.
// Runtimes implement it over their store (stigd: a RocksDB iterator).
class RecoveredState {
 public:
  // Return false to stop the scan.
  using Visitor = std::function<bool(std::string_view key, std::string_view value)>;
  virtual ~RecoveredState() = default;
  // Calls `visit` with each stored pair whose key is in [begin, end), in key
  // order. An error is a store that could not be read (one line).
  virtual Status scan(std::string_view begin, std::string_view end, const Visitor& visit) const = 0;
};

// A RecoveredState held in memory (the simulator's disk, tests, fuzzers).
struct RecoveredEntries final : RecoveredState {
  std::vector<std::pair<std::string, std::string>> entries;  // sorted by key, unique
  Status scan(std::string_view begin, std::string_view end, const Visitor& visit) const override;
};

// What a message or reply must wait for before it leaves the node: the
// persists of its own output and of every earlier output being synced (the
// default), merely written (they only repeat what is durable elsewhere), or
// nothing (a Raft leader's appends, sent while its own append is in flight).
enum class ReleaseAfter : uint8_t { kSynced, kWritten, kAtOnce };

// A peer message to send. Shared so one batch bound for N peers is one object.
struct Outbound {
  NodeId to;
  std::shared_ptr<const stigmergy::v1::PeerMessage> message;
  ReleaseAfter after = ReleaseAfter::kSynced;
};

// Identifies the client connection/request a reply belongs to; opaque to the core.
using ClientToken = uint64_t;

struct Reply {
  ClientToken token;
  stigmergy::v1::Response response;
  ReleaseAfter after = ReleaseAfter::kSynced;
};

// Who sent a client request, as the runtime's transport established it.
// `authenticated`: the agent name comes from a verified credential (a client
// certificate); the core may then trust it over Request.agent, which is only
// the client's claim. Unauthenticated (a cluster without auth, the
// simulator): the core uses Request.agent as before.
struct ClientIdentity {
  std::string agent;
  bool authenticated = false;
};

struct ClientInput {
  ClientToken token;
  stigmergy::v1::Request request;
  ClientIdentity identity = {};
};
struct PeerInput {
  NodeId from;  // as authenticated by the connection's hello
  stigmergy::v1::PeerMessage message;
};
struct Tick {};
// The runtime synced the persists of every output up to `through_output`
// (Output::id). A Raft leader counts its own log only from here.
struct Persisted {
  uint64_t through_output = 0;
};

// The node is shutting down gracefully: a Raft leader hands its leadership
// to the most up-to-date follower (thesis §3.10), so the cluster does not
// wait an election timeout. The runtime keeps stepping peer messages until
// raft_role() is no longer "leader" or a short grace period ends.
struct Leave {};

using Input = std::variant<ClientInput, PeerInput, Tick, Persisted, Leave>;

struct Output {
  // 1, 2, 3... in the order take_output returned them, per Replica object.
  uint64_t id = 0;
  std::vector<Persist> persist;
  std::vector<Outbound> messages;
  std::vector<Reply> replies;
  MonoTime wake_at = kNever;
  // Sync these persists promptly even if nothing released waits for it.
  // False only when they merely merge states already durable on the node
  // that took the write (a replica receiving a push for a `local` write):
  // a later synced write covers them.
  bool sync = true;

  bool empty() const { return persist.empty() && messages.empty() && replies.empty(); }
};

// Replica: the core of one node. It routes each input to the path it
// belongs to (LazyPath: lazy requests and gossip; StrongPath: strong
// requests and Raft) and merges what they decide into one Output, so a
// runtime sees one step/output contract however many paths there are.
class Replica {
 public:
  // Throws std::invalid_argument (a program edge) when `config` is invalid or
  // the recovered state is corrupt; never after construction.
  Replica(const Config& config, uint64_t seed, const RecoveredState& recovered);
  ~Replica();
  Replica(const Replica&) = delete;
  Replica& operator=(const Replica&) = delete;

  void step(const Now& now, Input input);

  // Everything decided since the last call. wake_at is the next time the
  // replica wants a Tick even if no input arrives.
  Output take_output();

  // Introspection for runtimes, tests and checkers.
  const NodeId& id() const;
  uint64_t state_digest() const;
  uint64_t live_keys() const;
  uint64_t tombstone_keys() const;
  // The at-most-once retry cache: clients remembered and bytes kept for them.
  size_t retry_cache_clients() const;
  size_t retry_cache_bytes() const;
  // The last dot this node issued.
  uint64_t dot_counter() const;
  // Pushed states this node took as they were, without a merge (it held
  // exactly the state they were made from; LazyPath::merge_remote).
  uint64_t pushes_adopted() const;
  // The strong path's Raft as this node sees it.
  std::string raft_role() const;
  uint64_t raft_term() const;
  uint64_t raft_commit_index() const;
  NodeId raft_leader() const;
  // Who `request` acts as, and whether it may do what it asks, by the access
  // rules this node has applied (replication/strong/acl.h). The identity
  // rule: an authenticated client acts as its identity's agent; naming
  // another agent in Request.agent ("acting for" it) needs global admin;
  // an unauthenticated client acts as the agent it claims. With access
  // control on, the acting agent must then hold every permission the
  // request needs. step() applies this to every client request before any
  // path sees it (and overwrites Request.agent with the acting agent, so
  // modified_by records it); runtimes call it for what they serve
  // themselves (node/: admin partition and heal). An error is
  // PERMISSION_DENIED with a one-line message.
  Status authorize(const ClientIdentity& identity, const stigmergy::v1::Request& request) const;
  // The agent `request` acts as, or the refusal of the identity rule.
  Status acting_agent(const ClientIdentity& identity, const stigmergy::v1::Request& request,
                      std::string_view* agent) const;

  // The strong path's Raft node itself, read-only (the simulator's
  // omniscient checkers read every node's role, term and applied log);
  // nullptr until the first input starts it.
  const raft::Raft* raft() const;

 private:
  bool is_cluster_member(const NodeId& id) const;
  // authorize() for a request about to be routed: on success Request.agent
  // names the acting agent; on refusal the reply is queued and false returned.
  bool admit(ClientInput& input);
  void add_raft_status(Output& out) const;

  // The paths inputs are routed to; their outputs are merged into one.
  std::unique_ptr<LazyPath> lazy_;
  std::unique_ptr<StrongPath> strong_;
  uint64_t outputs_ = 0;  // the last Output::id handed out
  bool access_control_ = false;
  std::vector<Reply> refused_;  // refusals decided by admit(), for the next output
};

}  // namespace stig::replication
