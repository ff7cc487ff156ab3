// Private to the StateMachine's .cc files: the entry being applied.
#pragma once

#include "replication/strong/state_machine.h"

namespace stig::replication {

struct StateMachine::Context {
  uint64_t index = 0;
  const std::string* agent = nullptr;
  int64_t wall_ms = 0;  // monotonic over entries
  RequestId request;
  ApplyResult* result = nullptr;
  LockTable::Sink sink() { return LockTable::Sink{&result->completions, &result->lease}; }
};

inline bool is_error(const pb::StrongResponse& r) { return r.error() != pb::OK; }

}  // namespace stig::replication
