#include "sim/scheduler.h"

#include <algorithm>

namespace stig::sim {

void Scheduler::at(SimTime when, Fn fn) {
  heap_.push_back(Event{std::max(when, now_), next_seq_++, std::move(fn)});
  std::push_heap(heap_.begin(), heap_.end(), Later());
}

bool Scheduler::run_one(SimTime end) {
  if (heap_.empty() || heap_.front().time > end) return false;
  std::pop_heap(heap_.begin(), heap_.end(), Later());
  Event e = std::move(heap_.back());
  heap_.pop_back();
  now_ = e.time;
  ++events_run_;
  e.fn();
  return true;
}

void Scheduler::run_until(SimTime end) {
  while (run_one(end)) {
  }
  now_ = std::max(now_, end);
}

void Scheduler::run_until(SimTime end, const std::function<bool()>& stop) {
  while (run_one(end))
    if (stop()) return;
  now_ = std::max(now_, end);
}

}  // namespace stig::sim
