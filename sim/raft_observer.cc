#include "sim/raft_observer.h"

#include <algorithm>
#include <string_view>

#include "replication/hash.h"

namespace stig::sim {

bool RaftObserver::observe(int64_t time, const std::string& node, uint64_t life,
                           const replication::raft::Raft& raft) {
  const bool won = raft.role() == replication::raft::Role::kLeader && led_.emplace(node, raft.term()).second;
  if (won) seen_.leaderships.push_back(RaftObservations::Leadership{time, node, raft.term()});

  Cursor& cursor = cursors_[node];
  if (cursor.life != life) cursor = Cursor{life, 0};
  const uint64_t applied = raft.applied();
  // Entries the log no longer holds (compacted into a snapshot, past its
  // catch-up tail) cannot be read.
  for (uint64_t i = std::max(cursor.applied + 1, raft.log().first_index()); i <= applied; ++i) {
    const auto& entry = raft.log().at(i);
    const uint64_t hash = replication::hash_bytes(entry.data(), static_cast<uint64_t>(entry.type()));
    ++seen_.applications;
    auto& variants = seen_.applied[i];
    const bool known = std::any_of(variants.begin(), variants.end(), [&](const RaftObservations::Applied& a) {
      return a.term == entry.term() && a.hash == hash;
    });
    if (!known) variants.push_back(RaftObservations::Applied{time, node, entry.term(), hash});
  }
  cursor.applied = std::max(cursor.applied, applied);
  return won;
}

}  // namespace stig::sim
