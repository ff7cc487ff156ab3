// FailureDetector: up / suspect / down per peer, from the time since the peer
// was last heard (any message counts; heartbeats guarantee a steady flow).
//
// Heartbeats also carry the peer's key count and state digest, so any node
// can report the whole cluster's view. The detector only informs (status,
// choice of anti-entropy partner); no safety decision depends on it.
#pragma once

#include <map>
#include <string>

#include "replication/config.h"
#include "replication/time.h"

namespace stig::replication {

enum class PeerState { kUp, kSuspect, kDown };
const char* peer_state_name(PeerState s);

struct PeerView {
  MonoTime last_heard = -1;  // -1: never
  uint64_t keys = 0;
  uint64_t tombstones = 0;
  uint64_t digest = 0;
};

class FailureDetector {
 public:
  FailureDetector(const Config& config);

  void heard(const NodeId& peer, MonoTime now);
  void heartbeat(const NodeId& peer, MonoTime now, uint64_t keys, uint64_t tombstones, uint64_t digest);

  PeerState state(const NodeId& peer, MonoTime now) const;
  const PeerView& view(const NodeId& peer) const;
  const std::map<NodeId, PeerView>& views() const { return views_; }

 private:
  int64_t suspect_after_ms_;
  int64_t down_after_ms_;
  std::map<NodeId, PeerView> views_;
};

}  // namespace stig::replication
