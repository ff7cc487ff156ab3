// stig-sim: runs the real replication core under a seeded, simulated network
// with faults, checks the history, and writes a history and an HTML report.
// The CLI edge: flags are parsed here (exceptions stay here); everything
// below works with values.
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <sstream>

#include <CLI/CLI.hpp>

#include "sim/nemesis.h"
#include "sim/report.h"
#include "sim/runner.h"
#include "sim/simulation.h"

namespace {

using namespace stig::sim;

char g_abort_message[4096];

// A core invariant (STIG_INVARIANT) aborts: name the seed and how to replay
// it, then exit 1 like any other violation (debuggers still stop at abort()).
void on_abort(int) {
  const ssize_t unused = ::write(STDERR_FILENO, g_abort_message, std::strlen(g_abort_message));
  (void)unused;
  ::_exit(1);
}

std::string shell_quote(const std::string& s) {
  if (!s.empty() && s.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./=:,@") ==
                        std::string::npos)
    return s;
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

// The command line that replays `seed`: the same flags, --seeds replaced.
std::string replay_command(int argc, char** argv, uint64_t seed) {
  std::string cmd = "stig-sim";
  bool seed_added = false;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--seeds" || a == "--seed") {
      ++i;
      continue;
    }
    if (a.rfind("--seeds=", 0) == 0 || a.rfind("--seed=", 0) == 0) continue;
    cmd += " " + shell_quote(a);
  }
  if (!seed_added) cmd += " --seed " + std::to_string(seed);
  return cmd;
}

int fail(const std::string& message) {
  std::cerr << "stig-sim: " << message << "\n";
  return 2;
}

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, sep))
    if (!item.empty()) out.push_back(item);
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "stig-sim: runs N replicas of the real Stigmergy core and M clients in one process under a seeded,\n"
      "simulated network with faults (partitions, loss, duplication, reordering, delay spikes, crashes,\n"
      "clock skew), then checks convergence, lost writes, counters and sets. The same seed and flags\n"
      "give the same history, byte for byte.\n\n"
      "  stig-sim --nodes 5 --clients 10 --duration 60s --seed 7 --nemesis partition,crash,clock \\\n"
      "           --history out.jsonl --report out.html\n"
      "  stig-sim --seeds 1..200 --duration 10s          # many seeds; failing ones print a replay command\n"
      "  stig-sim --scenario examples/sim-two-agents.json --clients 0 --report two-agents.html\n\n"
      "Exit status: 0 no violation, 1 a checker found a violation (or the core aborted), 2 bad usage."};
  app.get_formatter()->column_width(34);

  SimOptions o;
  std::string duration = "60s", quiet = "30s", nemesis = "partition,loss,dup,reorder,spike,crash,clock";
  std::string workload = "registers,counters,sets", history_path, report_path, scenario_path, seeds, bug;
  std::string timeout = "1s";
  bool no_codec = false, bench = false, verbose = false;
  app.add_option("--nodes", o.nodes, "replicas (n1..nN)")->check(CLI::Range(1, 64))->capture_default_str();
  app.add_option("--clients", o.clients, "concurrent simulated clients (c1..cM)")->check(CLI::Range(0, 1000))->capture_default_str();
  app.add_option("--duration", duration, "simulated time of workload and faults (60s, 1500ms, 2m)")->capture_default_str();
  app.add_option("--quiet", quiet, "longest quiet period after the final heal (ends early once converged)")->capture_default_str();
  app.add_option("--seed", o.seed, "seed of the run")->capture_default_str();
  app.add_option("--seeds", seeds, "run every seed in A..B (each in a child process), print failing seeds");
  app.add_option("--nemesis", nemesis,
                 "random faults: partition, loss, dup, reorder, spike, crash, clock, leader, all, none;\n"
                 "targeted at Raft (not in all): vote-crash, new-leader;\n"
                 "KIND=RATE: faults per simulated second (default 0.1)")
      ->capture_default_str();
  app.add_option("--scenario", scenario_path, "JSON file of timed fault events (replaces --nemesis)");
  app.add_option("--workload", workload,
                 "comma list of registers, counters, sets, retries (lazy path), strong, locks (strong path),\nacl (access control on; run it alone)")->capture_default_str();
  app.add_option("--keys", o.workload.keys, "keys per workload (fewer keys: more contention)")->check(CLI::Range(1, 100000))->capture_default_str();
  app.add_option("--value-bytes", o.workload.strong_value_bytes,
                 "pad every value the strong workload writes to this many bytes (bigger Raft entries)")
      ->check(CLI::Range(0, 1 << 20))
      ->capture_default_str();
  app.add_option("--history", history_path, "write the history as JSON lines to this file");
  app.add_option("--report", report_path, "write a self-contained HTML report to this file");
  app.add_option("--loss-rate", o.nemesis.loss, "message loss probability while a loss fault is active")->check(CLI::Range(0.0, 1.0))->capture_default_str();
  app.add_option("--dup-rate", o.nemesis.duplicate, "duplication probability while a dup fault is active")->check(CLI::Range(0.0, 1.0))->capture_default_str();
  app.add_option("--latency-min", o.network.latency_min_ms, "minimum one-way latency between nodes, ms")->check(CLI::Range(0, 100000))->capture_default_str();
  app.add_option("--latency-max", o.network.latency_max_ms, "maximum one-way latency between nodes, ms")->check(CLI::Range(0, 100000))->capture_default_str();
  app.add_option("--fsync-max", o.disk.fsync_max_ms, "maximum fsync latency, ms (minimum 1)")->check(CLI::Range(1, 100000))->capture_default_str();
  app.add_option("--raft-frame-bytes", o.replica.raft_snapshot_chunk_bytes,
                 "largest Raft APPEND and snapshot chunk, bytes (stigd derives it from --max-frame-bytes);\n"
                 "small: a leader catches a follower up in many APPENDs")
      ->check(CLI::Range(uint64_t{1024}, uint64_t{1} << 30))
      ->capture_default_str();
  app.add_option("--strong-snapshot-entries", o.replica.strong_snapshot_entries,
                 "strong path: snapshot every this many applied entries (stigd's default: 100000)")
      ->check(CLI::Range(uint64_t{1}, uint64_t{1} << 40))
      ->capture_default_str();
  app.add_option("--strong-catch-up-entries", o.replica.strong_snapshot_catch_up_entries,
                 "strong path: entries a snapshot covers that stay in the log (stigd's default: 5000)")
      ->check(CLI::Range(uint64_t{0}, uint64_t{1} << 40))
      ->capture_default_str();
  app.add_option("--timeout", timeout, "client attempt timeout before failing over to another node")->capture_default_str();
  app.add_flag("--no-codec", no_codec, "pass messages as objects instead of through the wire encoding (faster)");
  app.add_flag("--bench", bench, "print simulated seconds per wall-clock second");
  app.add_flag("-v,--verbose", verbose, "print every checker's summary, not only failing ones");
  app.add_option("--inject-bug", bug, "test only: inject a known protocol bug")->group("");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }

  if (auto err = parse_duration(duration, o.duration_ms); !err.empty()) return fail("--duration: " + err);
  if (o.duration_ms <= 0) return fail("--duration must be positive");
  if (auto err = parse_duration(quiet, o.quiet_ms); !err.empty()) return fail("--quiet: " + err);
  if (o.quiet_ms < 0) return fail("--quiet must not be negative");
  if (auto err = parse_duration(timeout, o.client.attempt_timeout_ms); !err.empty()) return fail("--timeout: " + err);
  if (o.client.attempt_timeout_ms <= 0) return fail("--timeout must be positive");
  if (o.network.latency_max_ms < o.network.latency_min_ms) return fail("--latency-max is below --latency-min");
  o.network.codec = !no_codec;
  if (auto err = parse_nemesis(nemesis, o.nemesis); !err.empty()) return fail(err);
  o.workloads.clear();
  if (workload != "none") {
    for (const auto& w : split(workload, ',')) {
      if (!make_workload(w, o.workload)) return fail("unknown workload '" + w + "' (known: registers, counters, sets, retries, strong, locks, acl, none)");
      o.workloads.push_back(w);
    }
  }
  if (!bug.empty())
    if (auto err = inject_bug(bug, o); !err.empty()) {
      std::string known;
      for (const auto& b : injectable_bugs()) known += (known.empty() ? "" : ", ") + b;
      return fail("--inject-bug: " + err + " (known: " + known + ")");
    }
  if (!scenario_path.empty()) {
    std::ifstream f(scenario_path);
    if (!f) return fail("cannot read scenario file '" + scenario_path + "'");
    std::stringstream ss;
    ss << f.rdbuf();
    Scenario s;
    if (auto err = parse_scenario(ss.str(), o.nodes, s); !err.empty()) return fail(scenario_path + ": " + err);
    for (size_t i = 0; i < s.events.size(); ++i)
      if (s.events[i].kind != FaultKind::kOp && s.events[i].at >= o.duration_ms)
        std::cerr << "stig-sim: warning: " << scenario_path << ": a fault at " << s.events[i].at
                  << " ms is not before --duration " << duration << " and will not run\n";
    o.scenario = s;
  }

  if (!seeds.empty()) {
    const auto dots = seeds.find("..");
    uint64_t a = 0, b = 0;
    try {
      if (dots == std::string::npos) throw std::invalid_argument("no ..");
      size_t used = 0;
      a = std::stoull(seeds.substr(0, dots), &used);
      if (used != dots) throw std::invalid_argument("a");
      b = std::stoull(seeds.substr(dots + 2), &used);
      if (used != seeds.size() - dots - 2) throw std::invalid_argument("b");
    } catch (const std::exception&) {
      return fail("--seeds must be A..B with A <= B, e.g. 1..200 (got '" + seeds + "')");
    }
    if (b < a) return fail("--seeds must be A..B with A <= B, e.g. 1..200 (got '" + seeds + "')");
    if (!history_path.empty() || !report_path.empty())
      return fail("--history and --report write one run: use them with --seed, not --seeds");
    const auto start = std::chrono::steady_clock::now();
    uint64_t failing = 0, done = 0;
    const uint64_t total = b - a + 1;
    const bool tty = ::isatty(STDERR_FILENO);
    for (uint64_t s = a; s <= b; ++s) {
      o.seed = s;
      IsolatedRun r = run_isolated(o);
      ++done;
      if (r.verdict != IsolatedRun::Verdict::kPassed) {
        ++failing;
        if (tty) std::cerr << "\r\033[K";
        std::cout << "FAIL " << r.summary << "\n  replay: " << replay_command(argc, argv, s) << std::endl;
      }
      if (tty || done == total || done % 50 == 0)
        std::cerr << (tty ? "\r" : "") << "seeds " << done << "/" << total << ", " << failing << " failing"
                  << (tty && done != total ? "" : "\n") << std::flush;
      if (s == b) break;
    }
    const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::cout << "seeds " << a << ".." << b << ": " << total << " runs, " << failing << " failing";
    if (bench) std::cout << ", " << wall << " s wall";
    std::cout << std::endl;
    return failing ? 1 : 0;
  }

  std::snprintf(g_abort_message, sizeof g_abort_message,
                "stig-sim: a core invariant failed with seed %llu; replay: %s\n",
                static_cast<unsigned long long>(o.seed), replay_command(argc, argv, o.seed).c_str());
  ::signal(SIGABRT, on_abort);

  const auto start = std::chrono::steady_clock::now();
  RunResult result = run_simulation(o);
  const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

  if (!history_path.empty())
    if (auto err = result.history.write_jsonl(history_path); !err.empty()) return fail(err);
  if (!report_path.empty())
    if (auto err = write_report(result, replay_command(argc, argv, o.seed), report_path); !err.empty())
      return fail(err);
  for (const auto& c : result.checks) {
    if (c.ok && !c.inconclusive && !verbose) continue;
    std::cout << (!c.ok ? "FAIL " : c.inconclusive ? "INCONCLUSIVE " : "pass ") << c.name << ": " << c.summary << "\n";
    for (const auto& f : c.findings) std::cout << "  " << f << "\n";
  }
  if (verbose) {
    for (const auto& l : result.leaders) std::cout << "leader: " << leader_line(l) << "\n";
    for (const auto& [f, c] : strong_op_stats(result.history))
      std::cout << "strong: " << f << " " << c.ok << " ok, " << c.refused << " refused, " << c.fail << " fail, "
                << c.unknown << " unknown\n";
  }
  if (bench)
    std::printf("bench: %.1f simulated s in %.3f wall s = %.1f simulated s per wall s; %llu events, %.0f events/s\n",
                static_cast<double>(result.end_ms) / 1000.0, wall, static_cast<double>(result.end_ms) / 1000.0 / wall,
                static_cast<unsigned long long>(result.events), static_cast<double>(result.events) / wall);
  std::cout << result.summary_line() << std::endl;
  if (!result.ok()) std::cout << "replay: " << replay_command(argc, argv, o.seed) << std::endl;
  return result.ok() ? 0 : 1;
}
