// The StateMachine's snapshot: one StrongSnapshot message built from ordered
// containers only, so equal states serialize to equal bytes; restore checks
// every field and every cross-reference before anything is used.
#include "replication/invariant.h"
#include "replication/strong/state_machine.h"

namespace stig::replication {

namespace {
constexpr uint32_t kSnapshotFormat = 1;
}

std::string StateMachine::snapshot() const {
  pb::StrongSnapshot s;
  s.set_format(kSnapshotFormat);
  s.set_applied_index(applied_index_);
  s.set_last_wall_ms(last_wall_ms_);
  store_.to_snapshot(&s);
  locks_.to_snapshot(&s);
  dedup_.to_snapshot(&s);
  std::string out;
  STIG_INVARIANT(s.SerializeToString(&out), "a snapshot serializes");
  return out;
}

Expected<StateMachine> StateMachine::restore(std::string_view bytes, StateMachineOptions options) {
  pb::StrongSnapshot s;
  if (!s.ParseFromArray(bytes.data(), static_cast<int>(bytes.size())))
    return Status::corruption("the strong snapshot does not parse");
  if (s.format() != kSnapshotFormat)
    return Status::corruption("unknown strong snapshot format " + std::to_string(s.format()));
  StateMachine m(options);
  m.applied_index_ = s.applied_index();
  m.last_wall_ms_ = s.last_wall_ms();
  if (Status st = m.store_.from_snapshot(s, m.options_); !st.is_ok()) return st;
  if (Status st = m.locks_.from_snapshot(s); !st.is_ok()) return st;
  if (Status st = m.dedup_.from_snapshot(s); !st.is_ok()) return st;
  if (s.revision_times_size() > 0 && s.revision_times(s.revision_times_size() - 1).wall_ms() > m.last_wall_ms_)
    return Status::corruption("a revision is later than the last applied wall time");
  for (const auto& w : m.dedup_.waiting())
    if (!m.locks_.is_waiting(w)) return Status::corruption("a waiting dedup slot has no waiter");
  for (const auto& sess : s.sessions())
    if (sess.renewed_index() == 0) return Status::corruption("a session was never granted at a log index");
  return m;
}

}  // namespace stig::replication
