// stig-failover: how long the strong path is unavailable for writes after
// kill -9 of the Raft leader.
//
// Starts a 3-node stigd cluster on free loopback ports (a temp dir), keeps a
// writer doing strong puts (following NOT_LEADER to the leader), then, N
// times: kill -9 the leader, measure the time from the kill to the first
// strong write acknowledged by another node, restart the killed node and let
// it catch up. Prints each run and the distribution (min/p50/p90/max).
#include <CLI/CLI.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "process_cluster.h"

namespace {

namespace pb = stigmergy::v1;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;
using stig::testing::ProcessCluster;
using stig::testing::StrongCaller;

struct Ack {
  Clock::time_point at;
  int node;
};

double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t rank = static_cast<size_t>(std::ceil(p * static_cast<double>(v.size())));
  return v[std::min(v.size() - 1, rank == 0 ? 0 : rank - 1)];
}

}  // namespace

int main(int argc, char** argv) {
  int runs = 20, nodes = 3;
  double limit_s = 10;
  bool json = false;
  std::vector<std::string> stigd_flags;
  CLI::App app{"stig-failover: time from kill -9 of the Raft leader to the first strong write through the new leader",
               "stig-failover"};
  app.add_option("--runs,-n", runs, "Kills to measure")->check(CLI::Range(1, 1000))->capture_default_str();
  app.add_option("--nodes", nodes, "Cluster size")->check(CLI::Range(3, 7))->capture_default_str();
  app.add_option("--limit", limit_s, "Give up on a run after this many seconds")->capture_default_str();
  app.add_option("--stigd-flag", stigd_flags, "Extra flag for every stigd (repeatable, e.g. --stigd-flag=--log-level=warn)");
  app.add_flag("--json", json, "Print one JSON object on stdout");
  CLI11_PARSE(app, argc, argv);

  std::unique_ptr<ProcessCluster> cluster;
  try {
    cluster = std::make_unique<ProcessCluster>(nodes, stigd_flags);
  } catch (const std::exception& e) {
    std::cerr << "stig-failover: error: " << e.what() << "\n";
    return 1;
  }
  if (stig::testing::wait_leader(*cluster, 15s) < 0) {
    std::cerr << "stig-failover: error: no leader elected within 15 s\n";
    return 1;
  }

  std::mutex mu;
  std::vector<Ack> acks;
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> writes{0}, failures{0};
  std::thread writer([&] {
    StrongCaller caller(*cluster, "failover-writer", "stig-failover");
    uint64_t i = 0;
    while (!stop.load()) {
      pb::StrongRequest req;
      req.mutable_put()->set_key("failover:" + std::to_string(i++ % 100));
      req.mutable_put()->set_value("v" + std::to_string(i));
      auto r = caller.call(req, 2s, 300ms);
      if (r.response && r.response->error() == pb::OK) {
        writes.fetch_add(1);
        std::lock_guard<std::mutex> lock(mu);
        acks.push_back({Clock::now(), r.node});
        if (acks.size() > 100000) acks.erase(acks.begin(), acks.begin() + 50000);
      } else {
        failures.fetch_add(1);
      }
    }
  });

  std::vector<double> ms;
  int failed_runs = 0;
  for (int run = 1; run <= runs; ++run) {
    std::this_thread::sleep_for(500ms);  // steady writes before the kill
    const int leader = stig::testing::wait_leader(*cluster, 10s);
    if (leader < 0) {
      std::cerr << "stig-failover: run " << run << ": no leader; stopping\n";
      ++failed_runs;
      break;
    }
    const auto killed_at = Clock::now();
    cluster->kill9(leader);
    std::optional<double> took;
    while (Clock::now() < killed_at + std::chrono::duration<double>(limit_s)) {
      {
        std::lock_guard<std::mutex> lock(mu);
        for (const auto& a : acks) {
          if (a.at > killed_at && a.node != leader) {
            took = std::chrono::duration<double, std::milli>(a.at - killed_at).count();
            break;
          }
        }
      }
      if (took) break;
      std::this_thread::sleep_for(1ms);
    }
    if (took) {
      ms.push_back(*took);
      if (!json) std::printf("run %2d: killed leader %s, first strong write after %7.1f ms\n", run,
                             cluster->id(leader).c_str(), *took);
    } else {
      ++failed_runs;
      std::fprintf(json ? stderr : stdout, "run %2d: killed leader %s, NO strong write within %.1f s\n", run,
                   cluster->id(leader).c_str(), limit_s);
    }
    std::fflush(stdout);
    cluster->start(leader);
    if (!cluster->wait_ready(leader, 15s)) {
      std::cerr << "stig-failover: " << cluster->id(leader) << " did not restart:\n" << cluster->read_log(leader) << "\n";
      ++failed_runs;
      break;
    }
    std::this_thread::sleep_for(1000ms);  // let it catch up before the next kill
  }
  stop.store(true);
  writer.join();

  const double mn = ms.empty() ? 0 : *std::min_element(ms.begin(), ms.end());
  const double mx = ms.empty() ? 0 : *std::max_element(ms.begin(), ms.end());
  if (json) {
    std::printf("{\"runs\":%zu,\"failed_runs\":%d,\"min_ms\":%.1f,\"p50_ms\":%.1f,\"p90_ms\":%.1f,\"max_ms\":%.1f,"
                "\"writes\":%llu,\"samples_ms\":[",
                ms.size(), failed_runs, mn, percentile(ms, 0.5), percentile(ms, 0.9), mx,
                static_cast<unsigned long long>(writes.load()));
    for (size_t i = 0; i < ms.size(); ++i) std::printf("%s%.1f", i ? "," : "", ms[i]);
    std::printf("]}\n");
  } else {
    std::printf("\n%zu runs (%d failed): min %.1f ms, p50 %.1f ms, p90 %.1f ms, max %.1f ms; %llu writes acknowledged, "
                "%llu write attempts without an answer in 2 s\n",
                ms.size(), failed_runs, mn, percentile(ms, 0.5), percentile(ms, 0.9), mx,
                static_cast<unsigned long long>(writes.load()), static_cast<unsigned long long>(failures.load()));
  }
  return failed_runs == 0 && !ms.empty() ? 0 : 1;
}
