// DedupTable: at-most-once application of strong requests, replicated.
//
// The state machine remembers the answers of each client's recent requests
// (client_id, seq), so a retry, even one that reaches a new leader and is
// committed a second time, gets the first answer instead of being applied
// again. A lock acquire that is waiting has a "waiting" slot: a retry of it
// rejoins the wait instead of queueing twice.
//
// Bounds (every one deterministic, decided at apply time, so every replica
// forgets the same things):
//  - per client, the `dedup_window` highest answered seqs; an older seq that
//    is no longer remembered is STALE_REQUEST, never applied again;
//  - at most `dedup_max_clients` clients and `dedup_max_bytes` of answers:
//    the client whose last command has the lowest log index is forgotten
//    first. A forgotten client's retry is applied again: the guarantee holds
//    for clients that are not crowded out.
// Waiting slots are not counted in the window, and a client with a waiting
// request is never the one forgotten (so its answer is remembered when the
// wait ends): the lock table's max_waiters_total bounds how far that can take
// the client count over dedup_max_clients.
#pragma once

#include <cstdint>
#include <list>
#include <map>
#include <optional>
#include <set>
#include <string>

#include "replication/status.h"
#include "replication/strong/options.h"

namespace stig::replication {

class DedupTable {
 public:
  explicit DedupTable(const StateMachineOptions& options) : options_(options) {}

  enum class Seen { kNew, kDone, kWaiting, kStale };
  struct Lookup {
    Seen seen = Seen::kNew;
    const pb::StrongResponse* response = nullptr;  // kDone
  };
  Lookup lookup(const RequestId& id) const;

  // Records that `id` waits for a lock (answered later by record_done).
  void record_waiting(const RequestId& id, uint64_t log_index);
  // Records `id`'s final answer; then enforces the bounds.
  void record_done(const RequestId& id, const pb::StrongResponse& response, uint64_t log_index);

  size_t clients() const { return clients_.size(); }
  size_t bytes() const { return bytes_; }

  void to_snapshot(pb::StrongSnapshot* out) const;
  Status from_snapshot(const pb::StrongSnapshot& in);
  // Every waiting slot, for cross-checks at restore.
  std::set<RequestId> waiting() const;

 private:
  struct Slot {
    std::optional<pb::StrongResponse> response;  // absent while waiting
    size_t bytes = 0;
  };
  struct Client {
    std::map<uint64_t, Slot> slots;
    uint64_t forgotten_below = 0;  // answered seqs below this are no longer remembered
    uint64_t last_index = 0;       // log index of the client's last activity (LRU)
    size_t done = 0;
    size_t bytes = 0;
    std::list<std::pair<const std::string, Client>*>::iterator lru;  // this client's place in lru_
  };
  using ClientEntry = std::pair<const std::string, Client>;  // a node of clients_

  Client& touch(const std::string& client_id, uint64_t log_index);
  // Moves `c` (last_index set) to its place in lru_, from the end backwards.
  void place_in_lru(Client& c);
  void drop_oldest_done(Client& c);
  void forget(const std::string& client_id);
  void enforce_bounds(const std::string& keep);

  StateMachineOptions options_;  // a copy: the owner may move
  std::map<std::string, Client> clients_;
  // Clients (pointing into clients_' nodes) by (last_index, client_id),
  // least recent first. A list, so that touching a client moves it without
  // allocating: log indexes only grow, so it moves to the end (or next to
  // the clients touched by the same entry).
  std::list<ClientEntry*> lru_;
  size_t bytes_ = 0;
};

}  // namespace stig::replication
