// SimDisk: one node's storage in the simulator.
//
// Writes are staged (in the page cache) and become durable only when a sync
// that started after them completes. A crash drops every staged write that
// no completed sync covered; what survives is exactly what recover() hands
// to the restarted replica. The durable map is ordered, so recovery order is
// deterministic.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "replication/replica.h"

namespace stig::sim {

class SimDisk {
 public:
  // Stages the writes of one output (in order).
  void stage(std::vector<replication::Persist> writes);
  // Begins a sync: returns how many staged groups it covers.
  size_t begin_sync() const { return staged_.size(); }
  // Completes a sync that covered the first `groups` staged groups.
  void finish_sync(size_t groups);
  // Power loss: unsynced writes are gone.
  void crash() { staged_.clear(); }

  replication::RecoveredEntries recover() const;

  size_t durable_keys() const { return durable_.size(); }
  uint64_t syncs() const { return syncs_; }
  uint64_t lost_writes() const { return lost_; }
  void note_lost() { lost_ += staged_.size(); }

 private:
  std::map<std::string, std::string> durable_;
  std::vector<std::vector<replication::Persist>> staged_;
  uint64_t syncs_ = 0;
  uint64_t lost_ = 0;
};

}  // namespace stig::sim
