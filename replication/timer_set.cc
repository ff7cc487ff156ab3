#include "replication/timer_set.h"

#include "replication/invariant.h"

namespace stig::replication {

void TimerSet::arm(TimerKind kind, uint64_t id, MonoTime at) {
  auto [it, inserted] = armed_.try_emplace({kind, id}, at);
  if (!inserted) {
    if (it->second == at) return;
    by_time_.erase(Timer{it->second, kind, id});
    it->second = at;
  }
  by_time_.insert(Timer{at, kind, id});
  STIG_INVARIANT(by_time_.size() == armed_.size(), "timer indexes disagree");
}

bool TimerSet::cancel(TimerKind kind, uint64_t id) {
  auto it = armed_.find({kind, id});
  if (it == armed_.end()) return false;
  by_time_.erase(Timer{it->second, kind, id});
  armed_.erase(it);
  return true;
}

std::optional<MonoTime> TimerSet::deadline(TimerKind kind, uint64_t id) const {
  auto it = armed_.find({kind, id});
  if (it == armed_.end()) return std::nullopt;
  return it->second;
}

std::optional<Timer> TimerSet::pop_due(MonoTime now) {
  if (by_time_.empty() || by_time_.begin()->at > now) return std::nullopt;
  Timer t = *by_time_.begin();
  by_time_.erase(by_time_.begin());
  armed_.erase({t.kind, t.id});
  return t;
}

}  // namespace stig::replication
