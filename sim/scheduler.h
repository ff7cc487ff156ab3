// Scheduler: the single-threaded discrete-event loop of the simulator.
//
// Events are closures due at a simulated time (milliseconds). They run in
// (time, insertion number) order, so two events due at the same millisecond
// always run in the order they were scheduled: a run is a pure function of
// the seed. Time only moves forward; an event scheduled in the past runs at
// the current time.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

namespace stig::sim {

using SimTime = int64_t;  // milliseconds since the start of the run

class Scheduler {
 public:
  using Fn = std::function<void()>;

  SimTime now() const { return now_; }
  void at(SimTime when, Fn fn);
  void after(SimTime delay, Fn fn) { at(now_ + delay, std::move(fn)); }

  // Runs every event due at or before `end`, then sets the time to `end`.
  void run_until(SimTime end);
  // Runs events until `stop()` returns true (checked after each event) or `end`.
  void run_until(SimTime end, const std::function<bool()>& stop);

  uint64_t events_run() const { return events_run_; }
  size_t pending() const { return heap_.size(); }

 private:
  struct Event {
    SimTime time;
    uint64_t seq;
    Fn fn;
  };
  struct Later {
    bool operator()(const Event& a, const Event& b) const {
      return a.time != b.time ? a.time > b.time : a.seq > b.seq;
    }
  };
  bool run_one(SimTime end);

  std::vector<Event> heap_;
  SimTime now_ = 0;
  uint64_t next_seq_ = 0;
  uint64_t events_run_ = 0;
};

}  // namespace stig::sim
