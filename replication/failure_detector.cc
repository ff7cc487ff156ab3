#include "replication/failure_detector.h"

#include "replication/invariant.h"

namespace stig::replication {

const char* peer_state_name(PeerState s) {
  switch (s) {
    case PeerState::kUp: return "up";
    case PeerState::kSuspect: return "suspect";
    case PeerState::kDown: return "down";
  }
  return "down";
}

FailureDetector::FailureDetector(const Config& config)
    : suspect_after_ms_(config.suspect_after_ms), down_after_ms_(config.down_after_ms) {
  for (const auto& p : config.peers) views_[p.id];
}

void FailureDetector::heard(const NodeId& peer, MonoTime now) {
  auto it = views_.find(peer);
  if (it == views_.end()) return;  // not a member: ignored, never tracked
  if (now > it->second.last_heard) it->second.last_heard = now;
}

void FailureDetector::heartbeat(const NodeId& peer, MonoTime now, uint64_t keys, uint64_t tombstones,
                                uint64_t digest) {
  auto it = views_.find(peer);
  if (it == views_.end()) return;
  heard(peer, now);
  it->second.keys = keys;
  it->second.tombstones = tombstones;
  it->second.digest = digest;
}

PeerState FailureDetector::state(const NodeId& peer, MonoTime now) const {
  const PeerView& v = view(peer);
  if (v.last_heard < 0) return PeerState::kDown;
  const int64_t age = now - v.last_heard;
  if (age <= suspect_after_ms_) return PeerState::kUp;
  if (age <= down_after_ms_) return PeerState::kSuspect;
  return PeerState::kDown;
}

const PeerView& FailureDetector::view(const NodeId& peer) const {
  auto it = views_.find(peer);
  STIG_INVARIANT(it != views_.end(), "failure detector asked about a non-member");
  return it->second;
}

}  // namespace stig::replication
