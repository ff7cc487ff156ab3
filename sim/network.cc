#include "sim/network.h"

#include <algorithm>

#include "wire/envelope.h"
#include "wire/frame.h"

namespace stig::sim {

Network::Network(Scheduler& scheduler, SimRandom& random, int nodes, NetworkOptions options, Deliver deliver)
    : scheduler_(scheduler),
      random_(random),
      nodes_(nodes),
      options_(options),
      deliver_(std::move(deliver)),
      last_arrival_(static_cast<size_t>(nodes) * static_cast<size_t>(nodes), 0) {}

SimTime Network::delivery_time(int from, int to) {
  int64_t latency = random_.range(options_.latency_min_ms, options_.latency_max_ms);
  if (faults_.reorder) latency += random_.range(0, 4 * options_.latency_max_ms);
  if (faults_.spike > 0 && random_.chance(faults_.spike)) latency += faults_.spike_ms;
  SimTime t = scheduler_.now() + latency;
  SimTime& last = last_arrival_[static_cast<size_t>(from) * static_cast<size_t>(nodes_) + static_cast<size_t>(to)];
  if (!faults_.reorder) t = std::max(t, last);
  last = std::max(last, t);
  return t;
}

void Network::send(int from, int to, const std::shared_ptr<const PeerMessage>& message) {
  ++stats_.sent;
  if (blocked(from, to)) {
    ++stats_.dropped_partition;
    return;
  }
  if (faults_.loss > 0 && random_.chance(faults_.loss)) {
    ++stats_.dropped_loss;
    return;
  }
  Packet p;
  if (options_.codec) {
    if (message != last_encoded_ || !last_frame_) {
      last_frame_ = wire::encode_peer_frame(*message);
      last_encoded_ = message;
    }
    p.frame = last_frame_;
    stats_.bytes += p.frame->size();
  } else {
    p.message = message;
  }
  const int copies = faults_.duplicate > 0 && random_.chance(faults_.duplicate) ? 2 : 1;
  if (copies == 2) ++stats_.duplicated;
  for (int c = 0; c < copies; ++c) {
    const SimTime t = delivery_time(from, to);
    scheduler_.at(t, [this, from, to, p] { arrive(from, to, p); });
  }
}

void Network::arrive(int from, int to, const Packet& p) {
  if (blocked(from, to)) {
    ++stats_.dropped_partition;
    return;
  }
  PeerMessage message;
  if (p.frame) {
    wire::FrameDecoder decoder;
    decoder.feed(*p.frame);
    stigmergy::v1::Envelope env;
    if (!decoder.next(env) || !env.has_peer()) {
      ++stats_.codec_errors;
      return;
    }
    message = std::move(*env.mutable_peer());
  } else {
    message = *p.message;
  }
  ++stats_.delivered;
  deliver_(from, to, std::move(message));
}

}  // namespace stig::sim
