// TimerSet: every deadline the core has armed, earliest first.
//
// The replica's wake_at is the earliest armed timer, so no expiry depends on
// some other input (a heartbeat, a client) happening to arrive. A timer is
// named by (kind, id); arming a named timer again moves it, and cancelling
// an unknown one is a no-op. Due timers pop in (deadline, kind, id) order, so
// timers due at the same moment fire in the same order on every run and a
// seed replays exactly. No clock: time is whatever the caller passes in.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <tuple>
#include <utility>

#include "replication/time.h"

namespace stig::replication {

enum class TimerKind : uint8_t {
  kHeartbeat,         // broadcast a heartbeat
  kAntiEntropy,       // start an anti-entropy round with a random peer
  kWriteDeadline,     // id: a quorum/all write gives up waiting for acks
  kBatchExpiry,       // id: a push batch's acks no longer matter
  kGraveExpiry,       // the earliest tombstone grave expires
  kRetryCacheExpiry,  // the least recently active client of the retry cache expires
};

struct Timer {
  MonoTime at = 0;
  TimerKind kind = TimerKind::kHeartbeat;
  uint64_t id = 0;

  friend bool operator<(const Timer& a, const Timer& b) {
    return std::tie(a.at, a.kind, a.id) < std::tie(b.at, b.kind, b.id);
  }
};

class TimerSet {
 public:
  // Arms (kind, id) at `at`, replacing its earlier deadline if armed.
  void arm(TimerKind kind, uint64_t id, MonoTime at);
  // Disarms (kind, id); false if it was not armed.
  bool cancel(TimerKind kind, uint64_t id);
  // The deadline of (kind, id), if armed.
  std::optional<MonoTime> deadline(TimerKind kind, uint64_t id) const;
  // The earliest deadline, kNever if nothing is armed.
  MonoTime next() const { return by_time_.empty() ? kNever : by_time_.begin()->at; }
  // Disarms and returns the earliest timer whose deadline is at or before
  // `now`, if any.
  std::optional<Timer> pop_due(MonoTime now);
  size_t size() const { return by_time_.size(); }

 private:
  std::set<Timer> by_time_;
  std::map<std::pair<TimerKind, uint64_t>, MonoTime> armed_;
};

}  // namespace stig::replication
