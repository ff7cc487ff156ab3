// Replica: one Stigmergy node's protocol logic, with no I/O.
//
// The runtime (node/ for real processes, sim/ for the simulator) feeds it
// inputs through step() and drains what it decided through take_output():
//
//   for each input that arrived:  replica.step(now, input);
//   Output out = replica.take_output();
//   make out.persist durable (one batch, one sync)   <- group commit
//   then send out.messages and out.replies
//   call step(now, Tick{}) again no later than out.wake_at
//
// Guarantees: the same seed, config, recovered state and sequence of
// (time, input) pairs produce the same outputs, byte for byte. Nothing in
// Output::messages or Output::replies may be released before every Persist
// of the same and all earlier outputs is written, and synced to disk when
// Output::sync is set.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <variant>
#include <vector>

#include "replication/config.h"
#include "replication/time.h"
#include "stigmergy.pb.h"

namespace stig::replication {

class ReplicaImpl;

// A storage write: put `value` under `key`, or erase `key`, or (erase with a
// range_end) erase every key in [key, range_end). Keys are storage keys
// (replication/key_space.h).
struct Persist {
  std::string key;
  std::string value;
  bool erase = false;
  std::string range_end = {};  // with erase: erase [key, range_end) instead of key alone
};

// What a node reads back from disk at start: every (key, value) it persisted.
struct RecoveredState {
  std::vector<std::pair<std::string, std::string>> entries;
};

// A peer message to send. Shared so one batch bound for N peers is one object.
struct Outbound {
  NodeId to;
  std::shared_ptr<const stigmergy::v1::PeerMessage> message;
};

// Identifies the client connection/request a reply belongs to; opaque to the core.
using ClientToken = uint64_t;

struct Reply {
  ClientToken token;
  stigmergy::v1::Response response;
};

struct ClientInput {
  ClientToken token;
  stigmergy::v1::Request request;
};
struct PeerInput {
  NodeId from;  // as authenticated by the connection's hello
  stigmergy::v1::PeerMessage message;
};
struct Tick {};

using Input = std::variant<ClientInput, PeerInput, Tick>;

struct Output {
  std::vector<Persist> persist;
  std::vector<Outbound> messages;
  std::vector<Reply> replies;
  MonoTime wake_at = kNever;
  // False when nothing released with this output relies on its persists
  // surviving a power loss: they only merge states that are already durable
  // on the node that took the write (a replica receiving a push for a
  // `local` write). The runtime must still write them before releasing the
  // output, but need not wait for an fsync; a later synced write covers them.
  bool sync = true;

  bool empty() const { return persist.empty() && messages.empty() && replies.empty(); }
};

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

  // Test-only fault switches used to prove the simulator's checkers can fail.
  ReplicaImpl& impl() { return *impl_; }

 private:
  std::unique_ptr<ReplicaImpl> impl_;
};

}  // namespace stig::replication
