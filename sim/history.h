// History: what every client invoked and what came back, plus the faults the
// nemesis applied, in the order they happened.
//
// One operation is an invoke event and one completion (ok: it happened, with
// the reply; fail: it definitely did not happen; info: unknown, e.g. a
// timeout). Events are written as JSON lines with fields in a fixed order, so
// equal histories are equal bytes. The same structure is recorded by the
// simulator and by the real-cluster nemesis test, and the checkers read it.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "sim/linearizability.h"
#include "stigmergy.pb.h"

namespace stig::sim {

enum class EventType { kInvoke, kOk, kFail, kInfo };
const char* event_type_name(EventType t);

// The write event that made a version: (node, counter).
struct Dot {
  std::string node;
  uint64_t counter = 0;
  bool operator<(const Dot& o) const { return node != o.node ? node < o.node : counter < o.counter; }
  bool operator==(const Dot& o) const { return node == o.node && counter == o.counter; }
  std::string to_string() const { return node + ":" + std::to_string(counter); }
};

struct SeenVersion {
  std::string value;
  Dot dot;
  std::string modified_by;
  int64_t modified_at_ms = 0;
};

using VersionMap = std::map<std::string, uint64_t>;  // decoded causal context

struct HistoryEvent {
  int64_t time = 0;     // ms: simulated time, or since the start of a real-cluster test
  std::string process;  // "c3", an agent name, or "nemesis"
  EventType type = EventType::kInvoke;
  std::string f;        // put get del counter_add counter_get set_add set_rm set_get; nemesis: the fault
  std::string key;
  std::string value;    // put value, set element, or the fault's description
  int64_t delta = 0;    // counter_add
  uint64_t op = 0;      // links an invoke to its completion (0 for nemesis events)
  std::string node;     // node tried first (invoke) or that answered (completion)
  std::optional<VersionMap> context;   // sent (invoke) or returned (ok)
  std::vector<SeenVersion> versions;   // get and put replies
  std::optional<Dot> dot;              // put/del ok: the write just made
  // put/del ok, when the node cut the sent context to what it had seen: the
  // context it applied (what the write superseded).
  std::optional<VersionMap> applied_context;
  std::optional<int64_t> counter;      // counter replies
  std::vector<std::string> elements;   // set_get replies
  std::string durability;              // writes: local | quorum | all
  std::string error;                   // fail/info: why
  int attempts = 0;                    // completion: requests sent (one per node tried)

  // --- the strong path (f strong_put strong_get strong_del strong_cas
  // strong_txn session_grant session_keepalive session_revoke lock_acquire
  // lock_release); every field is optional in the JSON, so lazy lines are
  // unchanged.
  std::optional<uint64_t> expected_version;  // put/del with an expected version (0 = must not exist)
  std::optional<std::string> expected_value; // cas
  bool stale = false;                        // strong_get served locally without ReadIndex
  std::optional<bool> found;                 // strong_get ok: the key exists
  std::optional<uint64_t> version;           // ok: version read (get) or written (put, cas)
  uint64_t revision = 0;                     // ok: revision the write committed at / the read was served at
  std::optional<bool> succeeded;             // ok: compares held / lock granted (false: definite refusal)
  uint64_t session = 0;                      // session and lock ops
  uint64_t token = 0;                        // lock_acquire ok: the fencing token; lock_release: the token released
  std::string fence;                         // fenced writes: "lock:token"
  int64_t ttl_ms = 0;                        // session_grant; lock_acquire: the wait
  // strong_txn: the compares and branches (invoke); ok: what each get read
  // (strong_get ok and put/cas ok fill `reads` with the one value seen).
  std::vector<TxnCompare> compares;
  std::vector<TxnOp> success_ops, failure_ops;
  std::vector<RegisterValue> reads;
};

class History {
 public:
  void add(HistoryEvent e) { events_.push_back(std::move(e)); }
  // A fresh operation id (1, 2, ...), unique within this history.
  uint64_t new_op() { return ++last_op_; }
  const std::vector<HistoryEvent>& events() const { return events_; }
  size_t operations() const;  // invokes by clients
  size_t faults() const;      // nemesis events

  std::string to_jsonl() const;
  // Returns an error message, empty on success.
  std::string write_jsonl(const std::string& path) const;
  // Parses what to_jsonl wrote (for `stig-sim --check`); error message on failure.
  static std::string from_jsonl(const std::string& text, History& out);

 private:
  std::vector<HistoryEvent> events_;
  uint64_t last_op_ = 0;
};

// Fills f, key, value, delta, context and durability of an invoke from a request.
void describe_request(const stigmergy::v1::Request& request, HistoryEvent& e);
// Fills node, versions, dot, context, counter, elements and error from a reply.
void describe_response(const stigmergy::v1::Response& response, HistoryEvent& e);
// True for the strong path's f names (strong_*, session_*, lock_*).
bool is_strong_f(const std::string& f);
// Decodes context bytes (empty optional if they do not decode).
std::optional<VersionMap> decode_version_map(const std::string& bytes);

}  // namespace stig::sim
