// ClientSessions: at-most-once application of client mutations.
//
// Each client names itself (client_id) and numbers its requests (seq). The
// outcome of the most recent requests of each client is remembered, so a
// retry of an applied request gets the first answer again instead of being
// applied twice. Pipelined clients keep a window of seqs in flight. Memory is
// bounded: the least recently started clients are forgotten first.
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "replication/replica.h"

namespace stig::replication {

class ClientSessions {
 public:
  static constexpr size_t kWindow = 256;  // seqs remembered per client

  explicit ClientSessions(size_t max_clients) : max_clients_(max_clients) {}

  enum class Admission { kNew, kDuplicateDone, kDuplicateInFlight, kStale };
  struct Decision {
    Admission admission;
    const stigmergy::v1::Response* cached = nullptr;  // kDuplicateDone
  };

  // Call before applying a mutation. kNew records it as in flight (the caller
  // answers `token` itself); kDuplicateInFlight adds `token` to those answered
  // when it completes.
  Decision admit(const std::string& client_id, uint64_t seq, ClientToken token);

  // Records the final response; returns the tokens of retries waiting for it.
  std::vector<ClientToken> complete(const std::string& client_id, uint64_t seq,
                                    const stigmergy::v1::Response& response);

 private:
  struct Slot {
    std::optional<stigmergy::v1::Response> response;
    std::vector<ClientToken> waiting;
  };
  struct Session {
    std::map<uint64_t, Slot> slots;
    uint64_t forgotten_below = 0;  // seqs below this were dropped from the window
  };
  size_t max_clients_;
  std::map<std::string, Session> sessions_;
  std::deque<std::string> order_;
};

}  // namespace stig::replication
