// Network: the simulated links between nodes.
//
// Every message gets a latency drawn from [latency_min, latency_max] ms, plus
// a spike while a delay-spike fault is active. Links are FIFO (like the TCP
// connections of the real runtime) unless a reorder fault is active. Loss and
// duplication apply per message while active. Partitions are sets of blocked
// directed links (so asymmetric partitions are just one direction); a
// message is dropped if its link is blocked when it is sent or when it would
// arrive. With `codec` on, every message goes through the real wire framing
// (encode_frame, then FrameDecoder) so the encoding is exercised.
//
// Guarantees: all choices come from the shared SimRandom in a fixed order,
// so delivery order is a function of the seed.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "sim/random.h"
#include "sim/scheduler.h"
#include "stigmergy.pb.h"

namespace stig::sim {

struct NetworkOptions {
  int64_t latency_min_ms = 1;
  int64_t latency_max_ms = 8;
  bool codec = true;
};

// Faults of the whole network that the nemesis switches on and off.
struct LinkFaults {
  double loss = 0;        // probability a message is dropped
  double duplicate = 0;   // probability a message is delivered twice
  bool reorder = false;   // links stop being FIFO; latencies spread wider
  double spike = 0;       // probability a message is delayed by spike_ms
  int64_t spike_ms = 0;
};

struct NetworkStats {
  uint64_t sent = 0, delivered = 0, dropped_partition = 0, dropped_loss = 0, duplicated = 0, codec_errors = 0,
           bytes = 0;
};

class Network {
 public:
  using PeerMessage = stigmergy::v1::PeerMessage;
  using Deliver = std::function<void(int from, int to, PeerMessage message)>;

  Network(Scheduler& scheduler, SimRandom& random, int nodes, NetworkOptions options, Deliver deliver);

  void send(int from, int to, const std::shared_ptr<const PeerMessage>& message);

  void block(int from, int to) { blocked_.insert({from, to}); }
  void heal_links() { blocked_.clear(); }
  bool blocked(int from, int to) const { return blocked_.count({from, to}) != 0; }
  const std::set<std::pair<int, int>>& blocked_links() const { return blocked_; }

  void set_faults(const LinkFaults& f) { faults_ = f; }
  const LinkFaults& faults() const { return faults_; }

  const NetworkStats& stats() const { return stats_; }
  const NetworkOptions& options() const { return options_; }

 private:
  struct Packet {
    std::shared_ptr<const std::string> frame;  // with codec
    std::shared_ptr<const PeerMessage> message;  // without
  };
  SimTime delivery_time(int from, int to);
  void arrive(int from, int to, const Packet& p);

  Scheduler& scheduler_;
  SimRandom& random_;
  int nodes_;
  NetworkOptions options_;
  Deliver deliver_;
  LinkFaults faults_;
  std::set<std::pair<int, int>> blocked_;
  std::vector<SimTime> last_arrival_;  // per directed link, for FIFO
  NetworkStats stats_;
  std::shared_ptr<const PeerMessage> last_encoded_;  // broadcasts share one message: encode once (held, so its address is not reused)
  std::shared_ptr<const std::string> last_frame_;
};

}  // namespace stig::sim
