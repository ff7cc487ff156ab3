// SimNode: one replica of the real core inside the simulator, with its disk,
// its clocks and its commit pipeline.
//
// Inputs that arrive in the same simulated millisecond are stepped into the
// replica and drained with one take_output (group commit). Outputs go
// through the same runtime::ReleaseQueue as stigd's: one write at a time is
// staged on the disk, a sync takes a random fsync latency, and each message
// and reply leaves once what it waits for is durable. After each sync the
// replica is told (replication::Persisted). A crash drops the replica, every
// unsynced write and every unreleased message and reply; restart rebuilds
// the replica from the durable disk only.
//
// Clocks: the monotonic clock is the simulated time plus a per-node base;
// the wall clock is an epoch plus the simulated time plus a skew the nemesis
// can change (skew and jumps, forwards or backwards).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "replication/replica.h"
#include "runtime/release_queue.h"
#include "sim/disk.h"
#include "sim/random.h"
#include "sim/scheduler.h"

namespace stig::sim {

struct NodeOptions {
  int64_t fsync_min_ms = 1;
  int64_t fsync_max_ms = 4;
  // Test-only runtime bug: replies leave before their writes are durable (what
  // an fsync-less or misordered runtime does). Peer messages still wait.
  bool reply_before_sync = false;
  // Test-only runtime bug: peer messages leave before the writes they depend
  // on are durable (a Raft follower acks, or votes, before its fsync).
  bool messages_before_sync = false;
};

class SimNode {
 public:
  using SendPeer = std::function<void(int from, const replication::Outbound& message)>;
  using SendReply = std::function<void(int from, replication::Reply reply)>;

  static constexpr int64_t kWallEpochMs = 1767225600000;  // 2026-01-01T00:00:00Z

  SimNode(int index, replication::Config config, Scheduler& scheduler, SimRandom& random, NodeOptions options,
          SendPeer send_peer, SendReply send_reply);

  // (Re)builds the replica from the durable disk. Returns false (and keeps the
  // node down) if the core refused the recovered state; see start_error().
  bool start();
  void crash();
  bool up() const { return replica_ != nullptr; }

  // Steps one input now; the output is drained at the end of this millisecond.
  void deliver(replication::Input input);
  // Called right after every input the replica stepped, with the replica
  // settled for reading: the simulator's omniscient observers (read only).
  using Observe = std::function<void(SimNode& node)>;
  void set_observer(Observe observe) { observe_ = std::move(observe); }

  void set_skew(int64_t ms) { skew_ms_ = ms; }
  int64_t skew() const { return skew_ms_; }
  replication::Now now() const;

  int index() const { return index_; }
  const std::string& id() const { return config_.self; }
  // Only while up; the state is settled (outputs are drained every millisecond).
  replication::Replica& replica() { return *replica_; }
  const std::string& start_error() const { return start_error_; }
  const SimDisk& disk() const { return disk_; }
  uint64_t crashes() const { return crashes_; }

 private:
  void flush();
  // Releases what may leave and starts the next write, if one is due.
  void pump();
  void sync_done(uint64_t epoch, uint64_t write_id, size_t groups);
  void schedule_tick(replication::MonoTime wake);
  void tick(uint64_t epoch, SimTime at);

  int index_;
  replication::Config config_;
  Scheduler& scheduler_;
  SimRandom& random_;
  NodeOptions options_;
  SendPeer send_peer_;
  SendReply send_reply_;
  Observe observe_;

  std::unique_ptr<replication::Replica> replica_;
  SimDisk disk_;
  int64_t mono_base_;
  int64_t skew_ms_ = 0;
  uint64_t epoch_ = 0;  // bumped on crash: events of an earlier life are ignored
  bool flush_scheduled_ = false;
  SimTime scheduled_tick_ = INT64_MAX;

  runtime::ReleaseQueue queue_;
  std::string start_error_;
  uint64_t crashes_ = 0;
};

}  // namespace stig::sim
