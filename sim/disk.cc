#include "sim/disk.h"

#include <algorithm>

#include "replication/key_space.h"

namespace stig::sim {

void SimDisk::stage(std::vector<replication::Persist> writes) {
  if (!writes.empty()) staged_.push_back(std::move(writes));
}

void SimDisk::finish_sync(size_t groups) {
  groups = std::min(groups, staged_.size());
  for (size_t g = 0; g < groups; ++g) {
    for (const auto& p : staged_[g]) replication::apply_persist(durable_, p);
  }
  staged_.erase(staged_.begin(), staged_.begin() + static_cast<std::ptrdiff_t>(groups));
  ++syncs_;
}

replication::RecoveredEntries SimDisk::recover() const {
  replication::RecoveredEntries r;
  r.entries.reserve(durable_.size());
  for (const auto& [k, v] : durable_) r.entries.emplace_back(k, v);
  return r;
}

}  // namespace stig::sim
