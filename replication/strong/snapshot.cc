// The StateMachine's snapshot: one StrongSnapshot message built from ordered
// containers only, so equal states serialize to equal bytes; restore checks
// every field and every cross-reference before anything is used.
//
// Bytes: an 8-byte little-endian hash_bytes() of the message, then the
// message. Protobuf parses a message cut at a field boundary as a valid,
// smaller one, so without the checksum a truncated snapshot could restore
// as a consistent but older-looking state.
#include <google/protobuf/arena.h>

#include "replication/hash.h"
#include "replication/invariant.h"
#include "replication/strong/state_machine.h"

namespace stig::replication {

namespace {
constexpr uint32_t kSnapshotFormat = 1;
}

std::string StateMachine::snapshot() const {
  // Built on an arena: a snapshot is one message per key, revision, session
  // and remembered answer, and the arena frees them all at once instead of
  // one by one (which cost as much as building them).
  google::protobuf::Arena arena;
  auto* s = google::protobuf::Arena::CreateMessage<pb::StrongSnapshot>(&arena);
  s->set_format(kSnapshotFormat);
  s->set_applied_index(applied_index_);
  s->set_last_wall_ms(last_wall_ms_);
  store_.to_snapshot(s);
  locks_.to_snapshot(s);
  dedup_.to_snapshot(s);
  acl_.to_snapshot(s);
  const size_t body_size = s->ByteSizeLong();
  std::string out(8 + body_size, '\0');
  STIG_INVARIANT(s->SerializeWithCachedSizesToArray(reinterpret_cast<uint8_t*>(out.data() + 8)) ==
                     reinterpret_cast<uint8_t*>(out.data() + 8 + body_size),
                 "a snapshot serializes to its computed size");
  const uint64_t sum = hash_bytes(std::string_view(out).substr(8));
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((sum >> (8 * i)) & 0xff);
  return out;
}

Expected<StateMachine> StateMachine::restore(std::string_view bytes, StateMachineOptions options) {
  if (bytes.size() < 8) return Status::corruption("the strong snapshot is shorter than its checksum");
  uint64_t sum = 0;
  for (int i = 0; i < 8; ++i) sum |= uint64_t(static_cast<unsigned char>(bytes[i])) << (8 * i);
  const std::string_view body = bytes.substr(8);
  if (hash_bytes(body) != sum) return Status::corruption("the strong snapshot's checksum does not match");
  if (body.size() > static_cast<size_t>(INT32_MAX)) return Status::corruption("the strong snapshot is too large");
  google::protobuf::Arena arena;  // as in snapshot(): freed at once
  pb::StrongSnapshot& s = *google::protobuf::Arena::CreateMessage<pb::StrongSnapshot>(&arena);
  if (!s.ParseFromArray(body.data(), static_cast<int>(body.size())))
    return Status::corruption("the strong snapshot does not parse");
  if (s.format() != kSnapshotFormat)
    return Status::corruption("unknown strong snapshot format " + std::to_string(s.format()));
  StateMachine m(options);
  m.applied_index_ = s.applied_index();
  m.last_wall_ms_ = s.last_wall_ms();
  if (Status st = m.store_.from_snapshot(s, m.options_); !st.is_ok()) return st;
  if (Status st = m.locks_.from_snapshot(s); !st.is_ok()) return st;
  if (Status st = m.dedup_.from_snapshot(s); !st.is_ok()) return st;
  if (Status st = m.acl_.from_snapshot(s); !st.is_ok()) return st;
  if (s.revision_times_size() > 0 && s.revision_times(s.revision_times_size() - 1).wall_ms() > m.last_wall_ms_)
    return Status::corruption("a revision is later than the last applied wall time");
  for (const auto& w : m.dedup_.waiting())
    if (!m.locks_.is_waiting(w)) return Status::corruption("a waiting dedup slot has no waiter");
  for (const auto& sess : s.sessions())
    if (sess.renewed_index() == 0) return Status::corruption("a session was never granted at a log index");
  return m;
}

}  // namespace stig::replication
