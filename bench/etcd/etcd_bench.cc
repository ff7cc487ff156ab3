// etcd-bench: a load generator for etcd over its native gRPC API (not the JSON
// gateway), to put etcd's numbers next to stig-bench's strong workloads.
//
//   etcd-bench --endpoints "$(bench/etcd-cluster up)" --workload txn --clients 64 --duration 10s
//
// C clients, each a closed loop with one request in flight, share --conns
// gRPC connections (HTTP/2 multiplexes many clients over one, as etcd's own
// `benchmark` tool does), spread round-robin over the endpoints (or all on the
// leader with --target leader), and are driven by --threads completion-queue
// threads. After a warm-up it measures for --duration and prints ops/s and
// p50/p99/p999 latency in microseconds (or one JSON object with --json, with
// stig-bench's field names). Workloads: put, get, txn, cas, lock (client.cc).
#include <CLI/CLI.hpp>

#include <grpcpp/grpcpp.h>

#include <cmath>
#include <cstdlib>
#include <cstdio>
#include <iostream>
#include <map>
#include <mutex>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "client.h"
#include "stats.h"

namespace {

using namespace etcdbench;

struct Options {
  std::string endpoints = "127.0.0.1:2379";
  std::string workload = "put";
  int clients = 16;
  int conns = 0;
  int threads = 1;
  std::string target = "all";
  std::string duration = "10s";
  std::string warmup = "1s";
  std::string timeout = "5s";
  int keys = 10000;
  int value_size = 100;
  uint64_t seed = 0;
  bool json = false;
  bool quiet = false;
};

int usage_error(const std::string& msg) {
  std::cerr << "etcd-bench: error: " << msg << "\n";
  return 2;
}

int fail(const std::string& msg) {
  std::cerr << "etcd-bench: error: " << msg << "\n";
  return 1;
}

std::vector<std::string> split_endpoints(const std::string& text) {
  std::vector<std::string> out;
  size_t pos = 0;
  while (pos <= text.size()) {
    size_t comma = text.find(',', pos);
    if (comma == std::string::npos) comma = text.size();
    std::string ep = text.substr(pos, comma - pos);
    for (const char* scheme : {"http://", "https://"}) {
      if (ep.rfind(scheme, 0) == 0) ep = ep.substr(std::string(scheme).size());
    }
    if (!ep.empty()) out.push_back(ep);
    pos = comma + 1;
  }
  return out;
}

std::shared_ptr<grpc::Channel> make_channel(const std::string& endpoint) {
  grpc::ChannelArguments args;
  // Each channel its own TCP connection, even to the same endpoint.
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  return grpc::CreateCustomChannel(endpoint, grpc::InsecureChannelCredentials(), args);
}

// The endpoint of the current leader, asked of each endpoint in turn (Maintenance.Status).
std::string find_leader(const std::vector<std::string>& endpoints, std::string& why) {
  for (const auto& ep : endpoints) {
    auto stub = etcdserverpb::Maintenance::NewStub(make_channel(ep));
    for (int attempt = 0; attempt < 20; ++attempt) {
      grpc::ClientContext ctx;
      ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(2));
      etcdserverpb::StatusResponse resp;
      const auto st = stub->Status(&ctx, etcdserverpb::StatusRequest(), &resp);
      if (!st.ok()) {
        why = ep + ": " + st.error_message();
        break;
      }
      if (resp.leader() != 0 && resp.leader() == resp.header().member_id()) return ep;
      if (resp.leader() != 0) break;  // a follower: try the next endpoint
      std::this_thread::sleep_for(std::chrono::milliseconds(100));  // no leader yet
    }
  }
  if (why.empty()) why = "no endpoint says it is the leader";
  return "";
}

// txn and cas: learns every bench key's mod_revision and value with paginated
// linearizable Ranges, so the measured conflicts come from concurrent writers,
// not from keys an earlier run left behind. Returns "" or what went wrong.
std::string learn_keys(const std::shared_ptr<grpc::Channel>& channel, Shared& sh) {
  auto kv = etcdserverpb::KV::NewStub(channel);
  std::string from = "bench/";
  const std::string end = "bench0";  // the prefix's range end ('/' + 1)
  int64_t revision = 0;
  for (;;) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    etcdserverpb::RangeRequest req;
    req.set_key(from);
    req.set_range_end(end);
    req.set_limit(1000);
    req.set_revision(revision);  // one consistent snapshot across pages
    etcdserverpb::RangeResponse resp;
    const auto st = kv->Range(&ctx, req, &resp);
    if (!st.ok()) return st.error_message();
    if (revision == 0) revision = resp.header().revision();
    for (const auto& item : resp.kvs()) {
      const std::string& key = item.key();
      char* stop = nullptr;
      const unsigned long k = std::strtoul(key.c_str() + 6, &stop, 10);
      if (stop == nullptr || *stop != '\0' || k >= static_cast<unsigned long>(sh.keys)) continue;
      sh.mod_revision[k].store(item.mod_revision());
      sh.values[k].known = true;
      sh.values[k].value = item.value();
    }
    if (!resp.more() || resp.kvs_size() == 0) return "";
    from = resp.kvs(resp.kvs_size() - 1).key() + std::string(1, '\0');
  }
}

}  // namespace

int main(int argc, char** argv) {
  Options opt;
  CLI::App app{"etcd-bench: load generator for etcd over its gRPC API (put, get, txn, cas, lock; C concurrent clients)",
               "etcd-bench"};
  app.add_option("--endpoints", opt.endpoints, "Comma-separated HOST:PORT list of etcd client URLs")
      ->capture_default_str();
  app.add_option("--workload,-w", opt.workload, "put | get (linearizable) | txn (mod_revision compare) | cas (value "
                                                "compare) | lock (v3lock Lock+Unlock)")
      ->check(CLI::IsMember({"put", "get", "txn", "cas", "lock"}))
      ->capture_default_str();
  app.add_option("--clients,-c", opt.clients, "Concurrent clients, one request in flight each")
      ->check(CLI::Range(1, 100000))
      ->capture_default_str();
  app.add_option("--conns", opt.conns, "gRPC connections the clients share (0: one per endpoint)")
      ->check(CLI::Range(0, 10000))
      ->capture_default_str();
  app.add_option("--threads", opt.threads, "Completion-queue threads driving the clients")
      ->check(CLI::Range(1, 64))
      ->capture_default_str();
  app.add_option("--target", opt.target, "all: connections spread over the endpoints; leader: all on the leader")
      ->check(CLI::IsMember({"all", "leader"}))
      ->capture_default_str();
  app.add_option("--duration,-d", opt.duration, "Measured time, e.g. 10s, 500ms, 1m")->capture_default_str();
  app.add_option("--warmup", opt.warmup, "Unmeasured warm-up before the measurement")->capture_default_str();
  app.add_option("--timeout", opt.timeout, "Deadline of each request")->capture_default_str();
  app.add_option("--keys", opt.keys, "Number of distinct keys (and lock names), chosen uniformly")
      ->check(CLI::Range(1, 100000000))
      ->capture_default_str();
  app.add_option("--value-size", opt.value_size, "Bytes per value written")
      ->check(CLI::Range(0, 1 << 20))
      ->capture_default_str();
  app.add_option("--seed", opt.seed, "Random seed (0: from the clock)");
  app.add_flag("--json", opt.json, "Print the result as one JSON object on stdout");
  app.add_flag("--quiet,-q", opt.quiet, "No progress lines on stderr");
  app.footer(R"(One op is: put = KV.Put; get = KV.Range (linearizable); txn = Txn(if mod_revision == last seen
then Put else Range); cas = Txn(if value == last seen then Put else Range); lock = Lock + Unlock
with the client's lease. txn and cas count conflicts (compare failed) as completed ops and
report succeeded/conflicts apart.

Examples:
  EP=$(bench/etcd-cluster up)              # a local 3-node cluster; prints its endpoints
  etcd-bench --endpoints "$EP" --workload put --clients 64 --duration 10s
  etcd-bench --endpoints "$EP" --workload txn --clients 16 --conns 4 --threads 2 --target leader --json
  bench/etcd-cluster down)");
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    return usage_error(std::string(e.what()) + "; see 'etcd-bench --help'");
  }

  Clock::duration duration{}, warmup{}, timeout{};
  if (!parse_duration(opt.duration, duration) || duration <= Clock::duration::zero()) {
    return usage_error("--duration '" + opt.duration + "' is not a positive duration like 10s, 500ms or 1m");
  }
  if (!parse_duration(opt.warmup, warmup)) {
    return usage_error("--warmup '" + opt.warmup + "' is not a duration like 1s, 500ms or 0");
  }
  if (!parse_duration(opt.timeout, timeout) || timeout <= Clock::duration::zero()) {
    return usage_error("--timeout '" + opt.timeout + "' is not a positive duration like 5s");
  }
  auto endpoints = split_endpoints(opt.endpoints);
  if (endpoints.empty()) return usage_error("--endpoints '" + opt.endpoints + "' names no endpoint");
  const size_t n_endpoints = endpoints.size();
  if (opt.target == "leader") {
    std::string why;
    const std::string leader = find_leader(endpoints, why);
    if (leader.empty()) return fail("cannot find etcd's leader (" + why + ")");
    endpoints = {leader};
  }

  auto sh = std::make_unique<Shared>();
  const std::map<std::string, Workload> workloads = {{"put", Workload::kPut}, {"get", Workload::kGet},
                                                     {"txn", Workload::kTxn}, {"cas", Workload::kCas},
                                                     {"lock", Workload::kLock}};
  sh->workload = workloads.at(opt.workload);
  sh->keys = opt.keys;
  sh->value_size = opt.value_size;
  sh->timeout = timeout;
  // One lease per lock client, outliving the run: no keepalive stream needed.
  sh->lease_ttl_s =
      static_cast<int64_t>(std::ceil(std::chrono::duration<double>(warmup + duration + 2 * timeout).count())) + 30;
  sh->init_keys();

  const int conns = opt.conns > 0 ? opt.conns : static_cast<int>(endpoints.size());
  std::vector<std::shared_ptr<grpc::Channel>> channels;
  for (int i = 0; i < conns; ++i) {
    const auto& ep = endpoints[static_cast<size_t>(i) % endpoints.size()];
    auto ch = make_channel(ep);
    if (!ch->WaitForConnected(std::chrono::system_clock::now() + std::chrono::seconds(5))) {
      return fail("cannot connect to etcd at " + ep + " (is it running? bench/etcd-cluster up starts one)");
    }
    channels.push_back(std::move(ch));
  }

  if (sh->workload == Workload::kTxn || sh->workload == Workload::kCas) {
    if (const std::string err = learn_keys(channels[0], *sh); !err.empty()) {
      return fail("cannot read the existing bench/ keys: " + err);
    }
  }

  const int nthreads = std::min(opt.threads, opt.clients);
  std::vector<std::unique_ptr<grpc::CompletionQueue>> cqs;
  for (int t = 0; t < nthreads; ++t) cqs.push_back(std::make_unique<grpc::CompletionQueue>());
  const uint64_t seed = opt.seed != 0 ? opt.seed : static_cast<uint64_t>(Clock::now().time_since_epoch().count());
  std::vector<std::unique_ptr<Client>> clients;
  for (int i = 0; i < opt.clients; ++i) {
    clients.push_back(std::make_unique<Client>(*sh, channels[static_cast<size_t>(i % conns)],
                                               cqs[static_cast<size_t>(i % nthreads)].get(), static_cast<size_t>(i),
                                               seed * 7919 + static_cast<uint64_t>(i)));
  }

  if (!opt.quiet) {
    std::cerr << "etcd-bench: " << opt.workload << ", " << opt.clients << " clients over " << conns
              << " connection(s) to " << endpoints.size() << " endpoint(s)" << (opt.target == "leader" ? " (leader)" : "")
              << ", " << nthreads << " thread(s), " << opt.keys << " keys, " << opt.value_size << "-byte values\n";
  }
  const auto start = Clock::now();
  sh->measure_start = start + warmup;
  sh->measure_end = sh->measure_start + duration;
  for (auto& c : clients) c->start();
  std::vector<std::thread> threads;
  for (auto& cq : cqs) {
    threads.emplace_back([q = cq.get()] {
      void* tag = nullptr;
      bool ok = false;
      while (q->Next(&tag, &ok)) static_cast<Client*>(tag)->on_done();
    });
  }

  uint64_t prev_ops = 0, prev_err = 0, prev_noted = 0;
  int second = 0;
  while (Clock::now() < sh->measure_end) {
    const auto next = start + std::chrono::seconds(++second);
    std::this_thread::sleep_until(std::min(next, sh->measure_end));
    const uint64_t ops = sh->done_ops.load(), errs = sh->done_errors.load();
    if (!opt.quiet && Clock::now() >= next - std::chrono::milliseconds(5)) {
      const bool warming = Clock::now() < sh->measure_start + std::chrono::milliseconds(5);
      char line[256];
      std::snprintf(line, sizeof line, "[%3ds] %s %9llu ops/s  errors %llu", second, warming ? "warm-up " : "measure ",
                    static_cast<unsigned long long>(ops - prev_ops), static_cast<unsigned long long>(errs - prev_err));
      std::cerr << line;
      if (const uint64_t noted = sh->last_error_count.load(); noted != prev_noted) {
        prev_noted = noted;
        std::lock_guard<std::mutex> lock(sh->last_error_mu);
        std::cerr << "  last error: " << sh->last_error;
      }
      std::cerr << "\n";
    }
    prev_ops = ops;
    prev_err = errs;
  }

  // Clients stop on their own past the window; every request has a deadline,
  // so the ones in flight (a lock's unlock included) end within two timeouts.
  sh->stopping.store(true);
  while (sh->running.load() > 0) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  for (auto& cq : cqs) cq->Shutdown();
  for (auto& t : threads) t.join();

  Stats total;
  for (auto& c : clients) total.merge(c->stats());
  const double secs = std::chrono::duration<double>(duration).count();
  const Summary s = summarize(total.latency_us, total.errors, secs);
  const bool compares = sh->workload == Workload::kTxn || sh->workload == Workload::kCas;

  if (opt.json) {
    std::string out = "{\"system\":\"etcd\"";
    out += ",\"workload\":\"" + opt.workload + "\"";
    out += ",\"endpoints\":" + std::to_string(n_endpoints);
    out += ",\"target\":\"" + opt.target + "\"";
    out += ",\"clients\":" + std::to_string(opt.clients);
    out += ",\"conns\":" + std::to_string(conns);
    out += ",\"pipeline\":1";
    out += ",\"threads\":" + std::to_string(nthreads);
    out += ",\"duration_s\":" + std::to_string(secs);
    out += ",\"keys\":" + std::to_string(opt.keys);
    out += ",\"value_size\":" + std::to_string(opt.value_size);
    out += ",\"durability\":\"quorum\"";
    out += ",\"" + opt.workload + "\":" + summary_json(s);
    out += ",\"all\":" + summary_json(s);
    if (compares) {
      out += ",\"succeeded\":" + std::to_string(total.succeeded);
      out += ",\"conflicts\":" + std::to_string(total.conflicts);
    }
    out += ",\"error_kinds\":" + stig::bench::error_kinds_json(total.error_kinds) + "}";
    std::cout << out << "\n";
  } else {
    std::printf("\n%-5s %10s %12s %9s %9s %9s %9s %9s %8s\n", "op", "ops", "ops/s", "mean us", "p50 us", "p99 us",
                "p999 us", "max us", "errors");
    std::printf("%-5s %10llu %12.1f %9.1f %9.0f %9.0f %9.0f %9.0f %8llu\n", opt.workload.c_str(),
                static_cast<unsigned long long>(s.ops), s.ops_per_sec, s.mean, s.p50, s.p99, s.p999, s.max,
                static_cast<unsigned long long>(s.errors));
    if (compares) {
      std::printf("%s: %llu succeeded, %llu conflicts (compare failed)\n", opt.workload.c_str(),
                  static_cast<unsigned long long>(total.succeeded), static_cast<unsigned long long>(total.conflicts));
    }
    stig::bench::print_error_kinds(total.error_kinds);
  }
  if (s.ops == 0) {
    std::string last;
    {
      std::lock_guard<std::mutex> lock(sh->last_error_mu);
      last = sh->last_error;
    }
    std::cerr << "etcd-bench: error: no request succeeded during the measurement"
              << (last.empty() ? "" : " (last error: " + last + ")") << "\n";
    return 1;
  }
  return 0;
}
