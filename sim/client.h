// SimClient: one simulated agent issuing operations one at a time.
//
// It behaves like the real client library: every request carries the
// client's id and a sequence number; when a node does not answer within the
// attempt timeout (or answers UNAVAILABLE) the same request, with the same
// seq, is sent to another node, and the client then sticks to that node.
// Each operation is recorded as an invoke and one completion: ok (with the
// reply), fail (a definite error and no attempt that might have applied it)
// or info (unknown: every attempt timed out, or an error after a timeout).
//
// Strong requests (Request.strong) go to the leader the client last heard
// of: NOT_LEADER is followed to its leader hint (or the next node), with the
// same seq; OUTCOME_UNKNOWN and timeouts make the op uncertain and retry it
// (the state machine applies a (client id, seq) at most once). Definite
// refusals (CONFLICT, BUSY, DEADLOCK, SESSION_EXPIRED, NOT_FOUND) are
// recorded as ok with succeeded=false: the op took effect as a refusal.
//
// Guarantees: at most one operation in flight per client; replies to any
// attempt of the current operation complete it; late replies are ignored.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "replication/replica.h"
#include "sim/history.h"
#include "sim/random.h"
#include "sim/scheduler.h"
#include "sim/workload.h"

namespace stig::sim {

// A strong-path answer that refuses the request as applied (a CAS whose
// compare failed, a busy lock, ...): the request was decided, so the op
// completes (ok, with the refusal as its result), unlike NOT_LEADER (not
// applied) or OUTCOME_UNKNOWN (may have been applied).
bool is_decided_refusal(stigmergy::v1::ErrorCode error);

struct ClientOptions {
  int64_t attempt_timeout_ms = 1000;
  int max_attempts = 3;
  int64_t think_min_ms = 0;
  int64_t think_max_ms = 40;
};

class SimClient {
 public:
  // Sends `request` to node `node`; the reply comes back through on_reply.
  using Send = std::function<void(int node, replication::ClientToken token, const stigmergy::v1::Request& request)>;

  SimClient(int index, int nodes, Scheduler& scheduler, SimRandom& random, History& history,
            std::vector<std::unique_ptr<ClientWorkload>> workloads, ClientOptions options, Send send);

  static int client_of(replication::ClientToken token) { return static_cast<int>(token >> 32); }

  void start();
  // No new operations after this; the current one still completes.
  void stop() { stopped_ = true; }
  bool busy() const { return current_.has_value(); }
  void on_reply(replication::ClientToken token, const stigmergy::v1::Response& response);
  const std::string& name() const { return name_; }

 private:
  struct Current {
    uint64_t op;
    stigmergy::v1::Request request;
    ClientWorkload* workload;
    int attempts = 0;
    bool uncertain = false;  // an attempt timed out: it may have been applied
    std::set<replication::ClientToken> tokens;
    SimTime invoked = 0;
    // The strong path: redirects follow NOT_LEADER hints; timeouts are
    // counted apart from redirects.
    bool strong = false;
    int timeouts = 0;
    replication::ClientToken last_token = 0;
    // Lazy writes: each node's dot counter as last heard before the first
    // attempt (the retry's horizon), and the nodes earlier attempts went to.
    std::map<std::string, uint64_t> horizons;
    std::set<int> tried;
  };
  void on_strong_reply(replication::ClientToken token, const stigmergy::v1::Response& response);
  // Another attempt of the current strong op: to the hinted leader if it
  // names another node, else the next node, after a short backoff; gives up
  // (fail, or info when an attempt may have applied) once the op is older
  // than max_attempts attempt timeouts.
  void strong_retry(const std::string& leader_hint);
  void begin();
  void attempt();
  void timeout(uint64_t op, int attempt);
  void complete(EventType type, const stigmergy::v1::Response* response, const std::string& error);

  int index_;
  int nodes_;
  std::string name_;
  Scheduler& scheduler_;
  SimRandom& random_;
  History& history_;
  std::vector<std::unique_ptr<ClientWorkload>> workloads_;
  ClientOptions options_;
  Send send_;
  int node_;  // sticky node
  int strong_node_;  // where strong requests go: the leader last heard of
  bool stopped_ = false;
  uint64_t seq_ = 0;
  uint32_t next_token_ = 0;
  std::optional<Current> current_;
  std::map<std::string, uint64_t> node_dots_;  // Response.node_dot, highest heard from each node
};

}  // namespace stig::sim
