#include "replication/test_faults.h"

#include <set>
#include <string>
#include <tuple>

namespace stig::replication::test_faults {

bool merge_register_lww(pb::KeyState& local, const pb::KeyState& remote) {
  bool changed = merge_state(local, remote);
  if (local.siblings_size() <= 1) return changed;
  int best = 0;
  const auto rank = [&](int i) {
    const auto& s = local.siblings(i);
    return std::make_tuple(s.modified_at_ms(), std::string_view(s.dot_node()), s.dot_counter());
  };
  for (int i = 1; i < local.siblings_size(); ++i)
    if (rank(i) > rank(best)) best = i;
  pb::Sibling keep = local.siblings(best);
  local.clear_siblings();
  *local.add_siblings() = std::move(keep);
  return true;
}

bool merge_counter_summing(pb::KeyState& local, const pb::KeyState& remote) {
  pb::KeyState adjusted = remote;
  for (auto& r : *adjusted.mutable_counter()) {
    for (const auto& mine : local.counter()) {
      if (mine.node() != r.node()) continue;
      r.set_increments(r.increments() + mine.increments());
      r.set_decrements(r.decrements() + mine.decrements());
    }
  }
  return merge_state(local, adjusted);
}

bool merge_set_remove_wins(pb::KeyState& local, const pb::KeyState& remote) {
  if (vv_descends(remote.context(), local.context())) return merge_state(local, remote);
  std::set<std::string> present;
  for (const auto& s : local.siblings()) present.insert(s.value());
  pb::KeyState filtered = remote;
  filtered.clear_siblings();
  for (const auto& s : remote.siblings())
    if (present.count(s.value())) *filtered.add_siblings() = s;
  return merge_state(local, filtered);
}

}  // namespace stig::replication::test_faults
