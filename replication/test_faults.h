// Deliberately wrong merges, used only when a TestFaults switch is on
// (see Config::test_faults). They exist so the simulator's checkers can be
// shown to fail on a real protocol bug; production paths never call them.
#pragma once

#include "replication/key_state.h"

namespace stig::replication::test_faults {

// Register merge by last-writer-wins on the wall clock: after the correct
// join, keeps only the sibling with the highest (modified_at, dot). Loses
// concurrent writes (what Jepsen found in Riak with allow_mult=false).
bool merge_register_lww(pb::KeyState& local, const pb::KeyState& remote);

// Counter merge that adds the remote totals instead of taking the maximum:
// not idempotent, so every re-delivery counts again.
bool merge_counter_summing(pb::KeyState& local, const pb::KeyState& remote);

// Set merge where an absence wins: when the local side has seen something the
// remote has not, remote elements missing locally are taken as removed.
bool merge_set_remove_wins(pb::KeyState& local, const pb::KeyState& remote);

}  // namespace stig::replication::test_faults
