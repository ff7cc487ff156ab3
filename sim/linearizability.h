// Linearizability of strong operations: Wing & Gong's search with Lowe's
// memoization (the algorithm of Knossos' "linear" checker and Porcupine).
//
// Every strong operation is modelled as a transaction over registers: its
// compares (on value, version or existence) pick the success or the failure
// branch, whose puts, deletes and reads then run atomically. A plain put,
// an expected-version put, a CAS, a delete and a get are one-branch cases.
// The checker asks: is there a total order of the operations, consistent
// with real time (an operation that completed before another was invoked
// comes first), in which each operation's results are what the model gives?
//
// Outcomes: ok operations must be placed with their recorded results; failed
// ones (definitely not applied) are left out; unknown ones (the client never
// heard: timeout, leader lost) may be placed anywhere after their invoke,
// with any result, including never (placing one last is the same as never
// for every other operation's results).
//
// Operations are split into independent groups (keys linked by a multi-key
// transaction are one group) and each group is searched alone: the cost
// grows with the concurrency within a key, not with the history. A search
// that exceeds its step budget is inconclusive, reported as such, never as
// a pass or a violation.
#pragma once

#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <vector>

namespace stig::sim {

// What a register looks like to the model; version 0 = absent.
struct RegisterValue {
  bool exists = false;
  std::string value;
  uint64_t version = 0;
  bool operator==(const RegisterValue&) const = default;
};

struct TxnCompare {
  enum class Target { kValue, kVersion, kExists };
  std::string key;
  Target target = Target::kValue;
  bool equal = true;  // false: not equal
  std::string value;  // kValue
  uint64_t version = 0;  // kVersion
  bool exists = true;    // kExists
};

struct TxnOp {
  enum class Kind { kPut, kDelete, kGet };
  Kind kind = Kind::kGet;
  std::string key;
  std::string value;  // kPut
};

struct StrongOp {
  enum class Outcome { kOk, kFail, kUnknown };
  static constexpr int64_t kNeverReturned = std::numeric_limits<int64_t>::max();

  uint64_t id = 0;       // the history's op id, for findings
  std::string process;   // who ran it
  int64_t invoke = 0;    // ms
  int64_t complete = kNeverReturned;
  Outcome outcome = Outcome::kUnknown;
  std::string description;  // one line for findings, e.g. "cas k a->b"

  std::vector<TxnCompare> compares;
  std::vector<TxnOp> success, failure;
  // ok only: which branch ran, and what each kGet of it read (in order).
  bool succeeded = true;
  std::vector<RegisterValue> reads;
};

struct LinearizabilityResult {
  enum class Verdict { kLinearizable, kViolation, kInconclusive };
  Verdict verdict = Verdict::kLinearizable;
  size_t groups = 0;
  size_t operations = 0;
  uint64_t steps = 0;
  // kViolation: the group's keys and the operations no order could place
  // (one line each); kInconclusive: which group ran out of budget.
  std::vector<std::string> findings;
};

struct LinearizabilityOptions {
  uint64_t max_steps_per_group = 5'000'000;
};

LinearizabilityResult check_linearizability(const std::vector<StrongOp>& ops,
                                            const LinearizabilityOptions& options = {});

}  // namespace stig::sim
