// Report: a self-contained HTML page for one run (no network access: the
// data, script, styles and SVG are inline).
//
// It shows one lane per node (crashes shaded, clock faults marked) and per
// client (each operation a bar from invoke to completion, coloured by
// outcome), network faults shaded across the node lanes, the final heal and
// the moment the replicas converged, and what every checker found.
#pragma once

#include <map>
#include <string>

#include "sim/simulation.h"

namespace stig::sim {

// "12.345s n3 became leader of term 7"
std::string leader_line(const LeaderEvent& l);

// Per strong f (stale gets as strong_get_stale): how the operations ended.
struct StrongOpCounts {
  uint64_t ok = 0, refused = 0, fail = 0, unknown = 0;
};
std::map<std::string, StrongOpCounts> strong_op_stats(const History& h);

std::string render_report(const RunResult& result, const std::string& command_line);
// Returns an error message, empty on success.
std::string write_report(const RunResult& result, const std::string& command_line, const std::string& path);

}  // namespace stig::sim
