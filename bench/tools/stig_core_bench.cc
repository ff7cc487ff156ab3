// stig-core-bench: the CPU the replication core spends per lazy operation,
// without sockets, disks or threads.
//
// A node's CPU per put on a shared 2-vCPU machine swings by 10-20% from run
// to run (bench/README.md "CPU per put"), which hides any change to the core
// smaller than that. This drives N Replica objects in one thread, as the
// runtime does: client requests arrive in groups per node (parsed from their
// wire bytes), each group's output is taken, its peer messages are
// serialized once and parsed by each receiver, replies are serialized, and
// the persists are counted (the disk is the runtime's, not the core's). The
// thread's CPU time per operation is what the core and its protobuf work
// cost, the same every run to a few percent.
#include <time.h>

#include <algorithm>
#include <cstdio>
#include <deque>
#include <memory>
#include <random>
#include <string>
#include <unordered_map>
#include <vector>

#include <CLI/CLI.hpp>

#include "replication/replica.h"

namespace {

using namespace stig::replication;
namespace pb = stigmergy::v1;

double thread_cpu_us() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) * 1e6 + static_cast<double>(ts.tv_nsec) / 1e3;
}

struct Options {
  size_t nodes = 3;
  size_t clients = 50;
  size_t keys = 10000;
  size_t value_size = 100;
  size_t group = 16;  // client requests per node between two outputs (a group commit)
  size_t ops = 300000;
  size_t warmup = 50000;
  unsigned put_percent = 100;
  uint64_t seed = 1;
};

// The cluster and the counts of what crossed its edges.
class CoreCluster {
 public:
  explicit CoreCluster(const Options& o) : o_(o), rng_(o.seed) {
    for (size_t i = 0; i < o.nodes; ++i) ids_.push_back("n" + std::to_string(i + 1));
    RecoveredEntries nothing;
    for (const auto& id : ids_) {
      Config c;
      c.self = id;
      c.self_address = id + ":0";
      for (const auto& p : ids_)
        if (p != id) c.peers.push_back({p, p + ":0"});
      nodes_.push_back(std::make_unique<Replica>(c, 42, nothing));
    }
    inbox_.resize(o.nodes);
    seqs_.assign(o.clients, 0);
    contexts_.resize(o.keys);
    value_.assign(o.value_size, 'v');
  }

  // `n` operations, `put_percent` of them puts, spread over the clients,
  // each client on node (client % nodes).
  void run(size_t n, unsigned put_percent) {
    put_percent_ = put_percent;
    size_t done = 0;
    while (done < n) {
      for (size_t node = 0; node < nodes_.size() && done < n; ++node) {
        for (size_t i = 0; i < o_.group && done < n; ++i, ++done) send_request(node);
        drain(node);
      }
      deliver_all();
      ++now_;
    }
  }

  uint64_t replies = 0, errors = 0, messages = 0, message_bytes = 0, persists = 0;

 private:
  // A put carries the latest context seen for its key, as stig-bench's
  // clients do (blind puts would pile up siblings to the limit).
  void send_request(size_t node) {
    const size_t n = nodes_.size();
    const size_t client = node + n * pick((o_.clients - node + n - 1) / n);  // a client of this node
    pb::Request& r = request_;
    r.Clear();
    r.set_client_id("client-" + std::to_string(client));
    r.set_seq(++seqs_[client]);
    const size_t key = pick(o_.keys);
    if (pick(100) < put_percent_) {
      r.mutable_put()->set_key("key-" + std::to_string(key));
      r.mutable_put()->set_value(value_);
      r.mutable_put()->set_context(contexts_[key]);
      r.mutable_put()->set_durability(pb::DURABILITY_LOCAL);
    } else {
      r.mutable_get()->set_key("key-" + std::to_string(key));
    }
    r.SerializeToString(&wire_);
    ClientInput in{++next_token_, pb::Request(), ClientIdentity{"bench", false}};
    if (!in.request.ParseFromString(wire_)) std::abort();
    key_of_token_[in.token] = key;
    nodes_[node]->step(Now{now_, 1700000000000 + now_}, std::move(in));
  }

  // Takes a node's output as the runtime would: peer messages to the
  // receivers' inboxes (serialized once, parsed by each), replies
  // serialized, persists acknowledged as written and synced.
  void drain(size_t node) {
    Output out = nodes_[node]->take_output();
    persists += out.persist.size();
    for (auto& m : out.messages) {
      m.message->SerializeToString(&wire_);
      ++messages;
      message_bytes += wire_.size();
      const size_t to = index_of(m.to);
      PeerInput in{ids_[node], pb::PeerMessage()};
      if (!in.message.ParseFromString(wire_)) std::abort();
      inbox_[to].push_back(std::move(in));
    }
    for (auto& r : out.replies) {
      r.response.SerializeToString(&wire_);
      ++replies;
      if (r.response.error() != pb::OK) ++errors;
      auto k = key_of_token_.find(r.token);
      if (k == key_of_token_.end()) continue;
      if (r.response.has_put()) contexts_[k->second] = r.response.put().context();
      if (r.response.has_get() && !r.response.get().context().empty()) contexts_[k->second] = r.response.get().context();
      key_of_token_.erase(k);
    }
    if (!out.persist.empty()) nodes_[node]->step(Now{now_, 1700000000000 + now_}, Persisted{out.id});
  }

  void deliver_all() {
    bool any = true;
    while (any) {
      any = false;
      for (size_t node = 0; node < nodes_.size(); ++node) {
        if (inbox_[node].empty()) continue;
        any = true;
        std::deque<PeerInput> batch;
        batch.swap(inbox_[node]);
        for (auto& in : batch) nodes_[node]->step(Now{now_, 1700000000000 + now_}, std::move(in));
        drain(node);
      }
    }
  }

  size_t index_of(const NodeId& id) const {
    for (size_t i = 0; i < ids_.size(); ++i)
      if (ids_[i] == id) return i;
    std::abort();
  }
  size_t pick(size_t n) { return std::uniform_int_distribution<size_t>(0, n - 1)(rng_); }

  Options o_;
  std::mt19937_64 rng_;
  std::vector<NodeId> ids_;
  std::vector<std::unique_ptr<Replica>> nodes_;
  std::vector<std::deque<PeerInput>> inbox_;
  std::vector<uint64_t> seqs_;
  std::vector<std::string> contexts_;  // by key
  std::unordered_map<ClientToken, size_t> key_of_token_;
  std::string value_, wire_;
  pb::Request request_;
  ClientToken next_token_ = 0;
  MonoTime now_ = 1000;
  unsigned put_percent_ = 100;
};

}  // namespace

int main(int argc, char** argv) {
  Options o;
  std::string ratio = "100:0";
  size_t rounds = 5;
  CLI::App app{
      "stig-core-bench: CPU of the replication core per lazy operation, in one thread without I/O\n"
      "(N replicas in memory; requests in groups per node, peer messages and replies serialized)"};
  app.add_option("--nodes", o.nodes, "replicas")->check(CLI::Range(1, 7))->capture_default_str();
  app.add_option("--clients", o.clients, "clients, each on node (client % nodes); at least --nodes")
      ->check(CLI::Range(1, 100000))
      ->capture_default_str();
  app.add_option("--keys", o.keys, "key space")->check(CLI::Range(1, 100000000))->capture_default_str();
  app.add_option("--value-size", o.value_size, "value bytes")->check(CLI::Range(0, 1 << 20))->capture_default_str();
  app.add_option("--group", o.group, "client requests per node between two outputs (a group commit)")
      ->check(CLI::Range(1, 100000))
      ->capture_default_str();
  app.add_option("--ops", o.ops, "operations measured per round")->check(CLI::Range(1, 1000000000))->capture_default_str();
  app.add_option("--warmup", o.warmup, "puts before the first round (they create the keys)")
      ->capture_default_str();
  app.add_option("--rounds", rounds, "measured rounds (the median is printed)")->check(CLI::Range(1, 1000))->capture_default_str();
  app.add_option("--ratio", ratio, "put:get, e.g. 100:0 or 0:100")->capture_default_str();
  app.add_option("--seed", o.seed, "random seed")->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  unsigned puts = 0, gets = 0;
  if (std::sscanf(ratio.c_str(), "%u:%u", &puts, &gets) != 2 || puts + gets == 0) {
    std::fprintf(stderr, "stig-core-bench: --ratio must be PUT:GET, e.g. 100:0 (got '%s')\n", ratio.c_str());
    return 2;
  }
  o.put_percent = puts * 100 / (puts + gets);
  if (o.clients < o.nodes) {
    std::fprintf(stderr, "stig-core-bench: --clients (%zu) must be at least --nodes (%zu)\n", o.clients, o.nodes);
    return 2;
  }

  CoreCluster cluster(o);
  cluster.run(o.warmup, 100);  // puts: the keys exist before gets are measured
  const uint64_t messages0 = cluster.messages, bytes0 = cluster.message_bytes, persists0 = cluster.persists;
  std::vector<double> per_op;
  for (size_t r = 0; r < rounds; ++r) {
    const uint64_t errors_before = cluster.errors;
    const double t0 = thread_cpu_us();
    cluster.run(o.ops, o.put_percent);
    per_op.push_back((thread_cpu_us() - t0) / static_cast<double>(o.ops));
    std::printf("round %zu: %.2f us per op (all %zu nodes)%s\n", r + 1, per_op.back(), o.nodes,
                cluster.errors > errors_before ? "  (some requests failed)" : "");
  }
  std::sort(per_op.begin(), per_op.end());
  std::printf(
      "median %.2f us per op; %zu nodes, %zu clients, %zu keys, %zu-byte values, put:get %u:%u, groups of %zu; "
      "per op: %.2f peer messages (%.0f bytes), %.2f persists\n",
      per_op[per_op.size() / 2], o.nodes, o.clients, o.keys, o.value_size, puts, gets, o.group,
      static_cast<double>(cluster.messages - messages0) / static_cast<double>(rounds * o.ops),
      static_cast<double>(cluster.message_bytes - bytes0) / static_cast<double>(rounds * o.ops),
      static_cast<double>(cluster.persists - persists0) / static_cast<double>(rounds * o.ops));
  return cluster.errors ? 1 : 0;
}
