// Runner: runs a simulation in a forked child, so a core invariant that
// aborts (STIG_INVARIANT) is reported as a failing seed instead of taking
// the whole `--seeds` sweep (or a test) down with it.
//
// Guarantees: the child's stderr (where the core prints the broken
// invariant) is captured; the parent always gets a verdict.
#pragma once

#include <string>

#include "sim/simulation.h"

namespace stig::sim {

struct IsolatedRun {
  enum class Verdict { kPassed, kViolations, kAborted, kError } verdict = Verdict::kError;
  std::string summary;  // the child's summary line, or what killed it
  std::string stderr_text;
};

IsolatedRun run_isolated(const SimOptions& options);

}  // namespace stig::sim
