// Invariant assertions of the core. They stay on in release builds: a broken
// invariant means replicated state may be wrong, and stopping loudly (with
// the simulator's seed) is better than spreading it.
#pragma once

#include <cstdio>
#include <cstdlib>

namespace stig::replication {

[[noreturn]] inline void invariant_failed(const char* expr, const char* file, int line, const char* why) {
  std::fprintf(stderr, "stigmergy invariant violated: %s (%s) at %s:%d\n", why, expr, file, line);
  std::abort();
}

}  // namespace stig::replication

#define STIG_INVARIANT(cond, why) \
  ((cond) ? void(0) : ::stig::replication::invariant_failed(#cond, __FILE__, __LINE__, why))
