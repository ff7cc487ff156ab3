// etcd-bench's numbers: see stats.h.
#include "stats.h"

namespace etcdbench {

void Stats::merge(const Stats& o) {
  latency_us.insert(latency_us.end(), o.latency_us.begin(), o.latency_us.end());
  errors += o.errors;
  succeeded += o.succeeded;
  conflicts += o.conflicts;
  for (const auto& [k, n] : o.error_kinds) error_kinds[k] += n;
}

}  // namespace etcdbench
