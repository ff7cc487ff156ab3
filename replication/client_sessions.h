// ClientSessions: at-most-once application of client mutations.
//
// Each client names itself (client_id) and numbers its requests (seq). The
// outcome of the most recent requests of each client is remembered, so a
// retry of an applied request gets the first answer again instead of being
// applied twice. Pipelined clients keep a window of seqs in flight.
//
// Memory is bounded three ways, because client ids and seqs are untrusted:
// at most kWindow seqs per client, at most `max_clients` clients and at most
// `max_bytes` of remembered answers (the least recently active clients are
// forgotten first), and a client idle for `idle_ms` is forgotten. The caller
// stores answers in their compact form (see Replica: a put's sibling values
// are not kept, only what a retry needs to rebuild the answer). A forgotten
// client's retried write is still recognised by the write id kept with the
// key's state (replication/write_ids.h), which also covers retries that
// reach another node; this cache answers the fast way and covers reads.
#pragma once

#include <cstdint>
#include <deque>
#include <list>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "replication/replica.h"
#include "replication/time.h"

namespace stig::replication {

class ClientSessions {
 public:
  static constexpr size_t kWindow = 256;  // seqs remembered per client

  struct Limits {
    size_t max_clients = 10000;
    size_t max_bytes = 64u << 20;
    MonoTime idle_ms = 10 * 60 * 1000;
  };

  explicit ClientSessions(Limits limits) : limits_(limits) {}

  enum class Admission { kNew, kDuplicateDone, kDuplicateInFlight, kStale };
  struct Decision {
    Admission admission;
    const stigmergy::v1::Response* cached = nullptr;  // kDuplicateDone
  };

  // Call before applying a mutation. kNew records it as in flight (the caller
  // answers `token` itself); kDuplicateInFlight adds `token` to those answered
  // when it completes.
  Decision admit(const std::string& client_id, uint64_t seq, ClientToken token, MonoTime now);

  // Records the (compact) final response; returns the tokens of retries
  // waiting for it.
  std::vector<ClientToken> complete(const std::string& client_id, uint64_t seq, stigmergy::v1::Response response);

  // Forgets clients idle since before now - idle_ms.
  void expire(MonoTime now);
  // When the next client would expire (kNever when none is remembered).
  MonoTime next_expiry() const;

  size_t clients() const { return sessions_.size(); }
  size_t bytes() const { return bytes_; }

 private:
  struct Slot {
    std::optional<stigmergy::v1::Response> response;
    std::vector<ClientToken> waiting;
    size_t bytes = 0;  // accounted for this slot
  };
  // A client's window, by seq ascending: contiguous, and a client's next
  // seq goes at the back, so the common admit and complete touch the end
  // of it (a map put every request in a node of its own, and its lookup
  // missed the cache at every level).
  using Slots = std::deque<std::pair<uint64_t, Slot>>;
  struct Session {
    Slots slots;
    uint64_t forgotten_below = 0;  // seqs below this were dropped from the window
    MonoTime last_active = 0;
    std::list<std::string>::iterator lru;  // position in lru_
    size_t bytes = 0;
  };
  using SessionMap = std::unordered_map<std::string, Session>;  // never iterated: lru_ keeps the order

  void forget(SessionMap::iterator it);
  // The first slot of a seq at or after `seq` (where `seq` goes), and the
  // slot of `seq` itself; slots.end() when none.
  static Slots::iterator first_at_or_after(Session& s, uint64_t seq);
  static Slots::iterator find_slot(Session& s, uint64_t seq);
  // Forgets the least recently active clients other than `keep` until the
  // bounds hold again.
  void enforce_bounds(const std::string& keep);

  Limits limits_;
  SessionMap sessions_;
  std::list<std::string> lru_;  // least recently active first
  size_t bytes_ = 0;
};

}  // namespace stig::replication
