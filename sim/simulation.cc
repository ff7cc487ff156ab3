#include "sim/simulation.h"

#include <algorithm>
#include <charconv>
#include <cstdio>
#include <map>
#include <memory>

#include "sim/raft_observer.h"
#include "wire/envelope.h"
#include "wire/frame.h"

namespace stig::sim {

namespace pb = stigmergy::v1;
using replication::ClientToken;

replication::Config sim_replica_defaults() {
  replication::Config c;
  c.strong_snapshot_entries = 400;
  c.strong_snapshot_catch_up_entries = 100;
  return c;
}

std::vector<std::string> injectable_bugs() {
  return {"lww-merge",          "anti-entropy-skips-bucket", "counter-merge-sums",      "set-remove-wins",
          "forget-dot-counter", "collect-tombstones-early",  "reply-before-fsync", "messages-before-fsync",
          "raft-commit-old-term", "raft-vote-not-durable", "raft-read-without-quorum",
          "strong-reads-skip-read-index", "lock-tokens-restart", "per-node-retry-dedup", "acl-allows-all"};
}

std::string inject_bug(const std::string& name, SimOptions& o) {
  replication::TestFaults& f = o.replica.test_faults;
  if (name == "reply-before-fsync") o.disk.reply_before_sync = true;
  else if (name == "messages-before-fsync") o.disk.messages_before_sync = true;
  else if (name == "lww-merge") f.lww_merge = true;
  else if (name == "anti-entropy-skips-bucket") f.anti_entropy_skips_bucket = true;
  else if (name == "counter-merge-sums") f.counter_merge_sums = true;
  else if (name == "set-remove-wins") f.set_remove_wins = true;
  else if (name == "forget-dot-counter") f.forget_dot_counter = true;
  else if (name == "collect-tombstones-early") f.collect_tombstones_early = true;
  else if (name == "raft-commit-old-term") f.raft_commit_from_old_term = true;
  else if (name == "raft-vote-not-durable") f.raft_vote_not_durable = true;
  else if (name == "raft-read-without-quorum") f.raft_read_without_quorum = true;
  else if (name == "strong-reads-skip-read-index") f.strong_reads_skip_read_index = true;
  else if (name == "lock-tokens-restart") f.strong_lock_tokens_restart = true;
  else if (name == "per-node-retry-dedup") f.per_node_retry_dedup = true;
  else if (name == "acl-allows-all") f.acl_allows_all = true;
  else return "unknown bug '" + name + "'";
  return {};
}

size_t RunResult::leader_changes() const {
  size_t n = 0;
  for (size_t i = 1; i < leaders.size(); ++i) n += leaders[i].node != leaders[i - 1].node;
  return n;
}

size_t RunResult::violations() const {
  size_t n = 0;
  for (const auto& c : checks)
    if (!c.ok) n += std::max<size_t>(1, c.findings.size());
  return n;
}

std::string RunResult::summary_line() const {
  char conv[64];
  if (final_state.converged_after_ms)
    std::snprintf(conv, sizeof conv, "converged %.3fs after heal", static_cast<double>(*final_state.converged_after_ms) / 1000.0);
  else
    std::snprintf(conv, sizeof conv, "did not converge");
  std::string failing, inconclusive;
  for (const auto& c : checks) {
    if (!c.ok) failing += (failing.empty() ? " (" : ", ") + c.name;
    if (c.inconclusive) inconclusive += (inconclusive.empty() ? ", inconclusive: " : ", ") + c.name;
  }
  if (!failing.empty()) failing += ")";
  failing += inconclusive;
  if (!leaders.empty())
    failing += ", " + std::to_string(leaders.size()) + " elections, " + std::to_string(leader_changes()) +
               " leader changes";
  return "seed " + std::to_string(options.seed) + ": " + std::to_string(history.operations()) + " operations, " +
         std::to_string(history.faults()) + " faults, " + std::to_string(violations()) + " violations" + failing +
         ", " + conv + ", " + std::to_string(end_ms / 1000) + "s simulated";
}

namespace {

constexpr int kAgentBase = 1 << 30;  // client index space of scripted agents
constexpr int64_t kSampleMs = 10;
constexpr int64_t kStableMs = 3000;  // digests equal this long (and clients idle): stop early

const char* fault_name(FaultKind k) {
  switch (k) {
    case FaultKind::kPartition: return "partition";
    case FaultKind::kHeal: return "heal";
    case FaultKind::kLoss: return "loss";
    case FaultKind::kDuplicate: return "dup";
    case FaultKind::kReorder: return "reorder";
    case FaultKind::kSpike: return "spike";
    case FaultKind::kCrash: return "crash";
    case FaultKind::kRestart: return "restart";
    case FaultKind::kClock: return "clock";
    case FaultKind::kOp: return "op";
    case FaultKind::kArm: return "arm";
  }
  return "?";
}

// One run: owns the scheduler, the random generator, the network, the nodes,
// the clients and the history, wires them together, applies the scenario's
// faults, runs scripted agents' operations, measures convergence after the
// final heal and reads the final states. Single-threaded; used once.
class Simulation {
 public:
  explicit Simulation(const SimOptions& o) : o_(o), random_(o.seed) {}

  RunResult run();

 private:
  void build();
  void to_node(int node, ClientToken token, const pb::Request& request);
  void to_client(int node, replication::Reply reply);
  void apply(const FaultEvent& e);
  void record_fault(const std::string& f, const std::string& description);
  void open_span(const std::string& id, Span s);
  void close_span(const std::string& id);
  void heal_all();
  void sample();
  void script_op(const FaultEvent& e);
  void script_reply(ClientToken token, const pb::Response& r);
  FinalState read_final();
  void poll_leaders();
  int current_leader() const;  // -1: no up node is leader
  // After every input a node steps: the omniscient Raft observer, and the
  // armed new-leader fault.
  void observe(SimNode& node);
  // A message leaves node `from`: the armed vote-crash fault watches for a
  // granted vote.
  void watch_message(int from, const replication::Outbound& m);
  // Targeted faults: crash `node` after `delay` ms, restart it `down` ms
  // later; cut `node` off every peer now, healed 0.3-2 s later; the
  // new-leader fault's second form, armed by observe().
  void crash_for(int node, int64_t delay, int64_t down, const std::string& why);
  void isolate(SimNode& node, const std::string& why);
  void cut_at_first_commit(SimNode& node, const replication::raft::Raft& raft);

  SimOptions o_;
  bool strong_ = false;  // a strong workload runs: the quiet period waits for Raft too
  std::vector<LeaderEvent> leaders_;
  std::map<std::string, uint64_t> leader_term_;  // node -> last term it was seen leading
  RaftObserver raft_observer_;
  bool vote_crash_armed_ = false;
  bool new_leader_armed_ = false;
  struct CutAtCommit {
    int node = -1;
    uint64_t term = 0, commit = 0;  // its term, and its commit index when it won
  };
  std::optional<CutAtCommit> cut_at_commit_;
  Scheduler sched_;
  SimRandom random_;
  History history_;
  std::unique_ptr<Network> net_;
  std::vector<std::unique_ptr<SimNode>> nodes_;
  std::vector<std::unique_ptr<SimClient>> clients_;
  std::vector<std::unique_ptr<Workload>> workloads_;
  LinkFaults faults_;
  std::map<std::string, Span> open_;
  std::vector<Span> spans_;
  int64_t healed_at_ = -1;
  int64_t equal_since_ = -1;
  bool stable_ = false;
  int64_t last_script_at_ = 0;

  struct AgentOp {
    uint64_t op;
    std::string agent;
    pb::Request request;
  };
  std::map<ClientToken, AgentOp> agent_ops_;
  std::map<std::string, int> agent_index_;
  std::map<std::pair<std::string, std::string>, std::string> agent_context_;
  uint32_t next_agent_token_ = 0;
};

void Simulation::build() {
  const int n = o_.nodes;
  // The acl workload runs the cluster with access control on; client c1
  // (agent-c1) is its admin agent and grants the others their prefixes.
  for (const auto& w : o_.workloads)
    if (w == "acl") {
      o_.replica.access_control = true;
      o_.replica.admin_agent = kAclAdminAgent;
    }
  net_ = std::make_unique<Network>(sched_, random_, n, o_.network, [this](int from, int to, pb::PeerMessage m) {
    SimNode& node = *nodes_[static_cast<size_t>(to)];
    node.deliver(replication::PeerInput{node_name(from), std::move(m)});
  });
  for (int i = 0; i < n; ++i) {
    replication::Config c = o_.replica;
    c.self = node_name(i);
    c.self_address = "sim:" + c.self;
    c.peers.clear();
    for (int p = 0; p < n; ++p)
      if (p != i) c.peers.push_back({node_name(p), "sim:" + node_name(p)});
    nodes_.push_back(std::make_unique<SimNode>(
        i, c, sched_, random_, o_.disk,
        [this](int from, const replication::Outbound& m) {
          watch_message(from, m);
          // Node ids are ours ("n1".."nN"): the index follows the 'n'.
          int idx = 0;
          std::from_chars(m.to.data() + 1, m.to.data() + m.to.size(), idx);
          if (idx >= 1 && idx <= o_.nodes) net_->send(from, idx - 1, m.message);
        },
        [this](int from, replication::Reply r) { to_client(from, std::move(r)); }));
    nodes_.back()->set_observer([this](SimNode& node) { observe(node); });
  }
  for (const auto& w : o_.workloads) {
    if (auto made = make_workload(w, o_.workload)) workloads_.push_back(std::move(made));
    if (w == "strong" || w == "locks" || w == "acl") strong_ = true;
  }
  for (int c = 0; c < o_.clients; ++c) {
    std::vector<std::unique_ptr<ClientWorkload>> per;
    for (const auto& w : workloads_) per.push_back(w->for_client(c));
    clients_.push_back(std::make_unique<SimClient>(
        c, n, sched_, random_, history_, std::move(per), o_.client,
        [this](int node, ClientToken token, const pb::Request& r) { to_node(node, token, r); }));
  }
}

// Client traffic: short latency, never partitioned (partitions cut node links),
// lost when the node is down on arrival. Through the codec when enabled.
void Simulation::to_node(int node, ClientToken token, const pb::Request& request) {
  std::shared_ptr<const std::string> frame;
  std::shared_ptr<const pb::Request> copy;
  if (o_.network.codec) {
    frame = wire::encode_request_frame(request);
  } else {
    copy = std::make_shared<const pb::Request>(request);
  }
  sched_.after(random_.range(1, 3), [this, node, token, frame, copy] {
    SimNode& n = *nodes_[static_cast<size_t>(node)];
    if (!n.up()) return;
    pb::Request r;
    if (frame) {
      wire::FrameDecoder d;
      d.feed(*frame);
      pb::Envelope env;
      if (!d.next(env) || !env.has_request()) return;
      r = std::move(*env.mutable_request());
    } else {
      r = *copy;
    }
    n.deliver(replication::ClientInput{token, std::move(r)});
  });
}

void Simulation::to_client(int node, replication::Reply reply) {
  (void)node;
  auto shared = std::make_shared<replication::Reply>(std::move(reply));
  std::shared_ptr<const std::string> frame;
  if (o_.network.codec) {
    frame = wire::encode_response_frame(shared->response);
  }
  sched_.after(random_.range(1, 3), [this, shared, frame] {
    if (frame) {
      wire::FrameDecoder d;
      d.feed(*frame);
      pb::Envelope env;
      if (!d.next(env) || !env.has_response()) return;
      shared->response = std::move(*env.mutable_response());
    }
    const int c = SimClient::client_of(shared->token);
    if (c >= kAgentBase) return script_reply(shared->token, shared->response);
    if (c < static_cast<int>(clients_.size())) clients_[static_cast<size_t>(c)]->on_reply(shared->token, shared->response);
  });
}

void Simulation::record_fault(const std::string& f, const std::string& description) {
  HistoryEvent e;
  e.time = sched_.now();
  e.process = "nemesis";
  e.type = EventType::kInfo;
  e.f = f;
  e.value = description;
  history_.add(std::move(e));
}

void Simulation::open_span(const std::string& id, Span s) {
  close_span(id);
  s.start = sched_.now();
  open_[id] = std::move(s);
}

void Simulation::close_span(const std::string& id) {
  auto it = open_.find(id);
  if (it == open_.end()) return;
  it->second.end = sched_.now();
  spans_.push_back(std::move(it->second));
  open_.erase(it);
}

void Simulation::observe(SimNode& node) {
  const replication::raft::Raft* raft = node.replica().raft();
  if (!raft) return;
  const bool won = raft_observer_.observe(sched_.now(), node.id(), node.crashes(), *raft);
  cut_at_first_commit(node, *raft);
  // Strike a leader in the step it won its term.
  if (!won || !new_leader_armed_ || healed_at_ >= 0) return;
  new_leader_armed_ = false;
  if (random_.chance(0.5)) return isolate(node, "won term " + std::to_string(raft->term()) + ": isolated at once");
  // Or once its commit index first moves in its term, before what it sends
  // next (the rest of a follower's catch-up, its own NOOP) arrives.
  cut_at_commit_ = CutAtCommit{node.index(), raft->term(), raft->commit_index()};
}

void Simulation::cut_at_first_commit(SimNode& node, const replication::raft::Raft& raft) {
  if (!cut_at_commit_ || cut_at_commit_->node != node.index() || healed_at_ >= 0) return;
  if (raft.role() != replication::raft::Role::kLeader || raft.term() != cut_at_commit_->term) {
    cut_at_commit_.reset();  // deposed first
    return;
  }
  if (raft.commit_index() <= cut_at_commit_->commit) return;
  const uint64_t from = cut_at_commit_->commit;
  cut_at_commit_.reset();
  isolate(node, "leading term " + std::to_string(raft.term()) + ", committed " + std::to_string(from + 1) + ".." +
                    std::to_string(raft.commit_index()) + ": isolated");
}

void Simulation::isolate(SimNode& node, const std::string& why) {
  // Synchronous, inside the node's step: what the step decided to send is
  // dropped, and so is everything still in flight to or from it.
  FaultEvent cut;
  cut.kind = FaultKind::kPartition;
  cut.shape = "isolate";
  cut.node = node.index();
  record_fault("targeted", node.id() + " " + why);
  apply(cut);
  sched_.after(random_.range(300, 2000), [this] {
    FaultEvent heal;
    heal.kind = FaultKind::kHeal;
    apply(heal);
  });
}

void Simulation::watch_message(int from, const replication::Outbound& m) {
  if (!vote_crash_armed_ || healed_at_ >= 0 || !m.message->has_raft()) return;
  const auto& raft = m.message->raft();
  if (raft.type() != pb::RaftMessage::VOTE_RESP || raft.reject()) return;
  vote_crash_armed_ = false;
  // Crashed as the grant leaves it, back before the election is over.
  crash_for(from, 0, random_.range(1, 10),
            "granted a vote in term " + std::to_string(raft.term()) + " to " + m.to + ", crashed as it left");
}

void Simulation::crash_for(int node, int64_t delay, int64_t down, const std::string& why) {
  sched_.after(delay, [this, node, down, why] {
    if (healed_at_ >= 0 || !nodes_[static_cast<size_t>(node)]->up()) return;
    record_fault("targeted", node_name(node) + " " + why);
    FaultEvent crash;
    crash.kind = FaultKind::kCrash;
    crash.node = node;
    apply(crash);
    sched_.after(down, [this, node] {
      FaultEvent restart;
      restart.kind = FaultKind::kRestart;
      restart.node = node;
      apply(restart);
    });
  });
}

void Simulation::apply(const FaultEvent& e) {
  if (e.kind == FaultKind::kOp) return script_op(e);
  if (healed_at_ >= 0) return;  // faults stop at the final heal
  char buf[96];
  switch (e.kind) {
    case FaultKind::kArm:
      if (e.shape == "vote-crash") vote_crash_armed_ = true;
      if (e.shape == "new-leader") new_leader_armed_ = true;
      record_fault("arm", e.shape + " armed");
      break;
    case FaultKind::kPartition: {
      std::string desc;
      net_->heal_links();
      FaultEvent shaped = e;
      std::string prefix;
      if (e.shape == "isolate-leader" || e.shape == "leader-deaf" || e.shape == "leader-mute") {
        // Ask who leads now: the highest-term leader among the up nodes.
        const int leader = current_leader();
        prefix = leader >= 0 ? "leader " : "no leader: ";
        const int target = leader >= 0 ? leader : static_cast<int>(random_.below(static_cast<uint64_t>(o_.nodes)));
        std::vector<int> rest;
        for (int i = 0; i < o_.nodes; ++i)
          if (i != target) rest.push_back(i);
        if (e.shape == "isolate-leader") {
          shaped.shape = "isolate";
          shaped.node = target;
        } else {
          shaped.shape = "oneway";  // deaf: nobody reaches it; mute: it reaches nobody
          shaped.groups = e.shape == "leader-deaf" ? std::vector<std::vector<int>>{rest, {target}}
                                                   : std::vector<std::vector<int>>{{target}, rest};
        }
      }
      for (const auto& [a, b] : partition_links(shaped, o_.nodes, random_, desc)) net_->block(a, b);
      desc = prefix + desc;
      record_fault("partition", desc);
      Span span{"network", 0, 0, "partition", desc, {}};
      // Sides: nodes that reach exactly the same set of nodes are on one side.
      std::map<std::vector<bool>, int> side_of;
      for (int a = 0; a < o_.nodes; ++a) {
        std::vector<bool> reach;
        for (int b = 0; b < o_.nodes; ++b) reach.push_back(!net_->blocked(a, b) && !net_->blocked(b, a));
        auto [it, inserted] = side_of.try_emplace(reach, static_cast<int>(side_of.size()));
        span.sides.push_back(it->second);
      }
      open_span("partition", std::move(span));
      break;
    }
    case FaultKind::kHeal:
      net_->heal_links();
      record_fault("heal", "all links restored");
      close_span("partition");
      break;
    case FaultKind::kLoss:
    case FaultKind::kDuplicate:
    case FaultKind::kSpike: {
      const std::string name = fault_name(e.kind);
      if (e.kind == FaultKind::kLoss) faults_.loss = e.rate;
      if (e.kind == FaultKind::kDuplicate) faults_.duplicate = e.rate;
      if (e.kind == FaultKind::kSpike) faults_.spike = e.rate, faults_.spike_ms = e.ms;
      net_->set_faults(faults_);
      if (e.kind == FaultKind::kSpike)
        std::snprintf(buf, sizeof buf, "%s %.2f (+%lld ms)", name.c_str(), e.rate, static_cast<long long>(e.ms));
      else
        std::snprintf(buf, sizeof buf, "%s %.2f", name.c_str(), e.rate);
      record_fault(name, e.rate > 0 ? buf : name + " off");
      if (e.rate > 0)
        open_span(name, Span{"network", 0, 0, name, buf, {}});
      else
        close_span(name);
      break;
    }
    case FaultKind::kReorder:
      faults_.reorder = e.on;
      net_->set_faults(faults_);
      record_fault("reorder", e.on ? "reorder on" : "reorder off");
      if (e.on)
        open_span("reorder", Span{"network", 0, 0, "reorder", "reorder", {}});
      else
        close_span("reorder");
      break;
    case FaultKind::kCrash: {
      SimNode& n = *nodes_[static_cast<size_t>(e.node)];
      if (!n.up()) break;
      n.crash();
      record_fault("crash", node_name(e.node) + " crashed (unsynced writes lost)");
      open_span("down:" + node_name(e.node), Span{node_name(e.node), 0, 0, "down", "crashed", {}});
      break;
    }
    case FaultKind::kRestart: {
      SimNode& n = *nodes_[static_cast<size_t>(e.node)];
      if (n.up()) break;
      if (n.start()) {
        record_fault("restart", node_name(e.node) + " restarted from its disk");
        close_span("down:" + node_name(e.node));
      } else {
        record_fault("restart", node_name(e.node) + " refused its disk: " + n.start_error());
      }
      break;
    }
    case FaultKind::kClock: {
      SimNode& n = *nodes_[static_cast<size_t>(e.node)];
      const int64_t before = n.skew();
      n.set_skew(e.on ? before + e.ms : e.ms);
      std::snprintf(buf, sizeof buf, "%s clock %s %+.3fs (skew now %+.3fs)", node_name(e.node).c_str(),
                    e.on ? "jumps" : "skewed to", static_cast<double>(e.on ? e.ms : e.ms) / 1000.0,
                    static_cast<double>(n.skew()) / 1000.0);
      record_fault("clock", buf);
      spans_.push_back(Span{node_name(e.node), sched_.now(), sched_.now(), "clock", buf, {}});
      break;
    }
    case FaultKind::kOp: break;
  }
}

int Simulation::current_leader() const {
  int best = -1;
  uint64_t term = 0;
  for (size_t i = 0; i < nodes_.size(); ++i) {
    SimNode& n = *nodes_[i];
    if (!n.up() || n.replica().raft_role() != "leader") continue;
    if (best < 0 || n.replica().raft_term() > term) best = static_cast<int>(i), term = n.replica().raft_term();
  }
  return best;
}

// Every 10 ms: which nodes lead, for the report's timeline. Reads only.
void Simulation::poll_leaders() {
  for (auto& np : nodes_) {
    SimNode& n = *np;
    if (!n.up() || n.replica().raft_role() != "leader") continue;
    const uint64_t term = n.replica().raft_term();
    auto [it, inserted] = leader_term_.try_emplace(n.id(), 0);
    if (it->second == term) continue;
    it->second = term;
    leaders_.push_back(LeaderEvent{sched_.now(), n.id(), term});
  }
  if (!stable_) sched_.after(kSampleMs, [this] { poll_leaders(); });
}

void Simulation::heal_all() {
  healed_at_ = sched_.now();
  net_->heal_links();
  faults_ = LinkFaults{};
  net_->set_faults(faults_);
  for (auto& n : nodes_)
    if (!n->up()) {
      n->start();
      close_span("down:" + n->id());
    }
  std::vector<std::string> ids;
  for (const auto& [id, s] : open_) ids.push_back(id);
  for (const auto& id : ids) close_span(id);
  for (auto& c : clients_) c->stop();
  record_fault("heal-all", "every fault healed, crashed nodes restarted; quiet period begins");
  sched_.after(0, [this] { sample(); });
}

void Simulation::sample() {
  bool equal = true;
  uint64_t digest = 0;
  for (size_t i = 0; i < nodes_.size(); ++i) {
    if (!nodes_[i]->up()) {
      equal = false;
      break;
    }
    const uint64_t d = nodes_[i]->replica().state_digest();
    if (i == 0) digest = d;
    equal &= d == digest;
    // The strong path settles too: every node has committed the same prefix.
    if (strong_) equal &= nodes_[i]->replica().raft_commit_index() == nodes_[0]->replica().raft_commit_index();
  }
  if (!equal)
    equal_since_ = -1;
  else if (equal_since_ < 0)
    equal_since_ = sched_.now();
  bool busy = !agent_ops_.empty() || sched_.now() < last_script_at_;
  for (const auto& c : clients_) busy |= c->busy();
  stable_ = !busy && equal_since_ >= 0 && sched_.now() - equal_since_ >= kStableMs;
  if (!stable_) sched_.after(kSampleMs, [this] { sample(); });
}

void Simulation::script_op(const FaultEvent& e) {
  pb::Request r;
  auto [it, inserted] = agent_index_.try_emplace(e.agent, static_cast<int>(agent_index_.size()));
  const std::string ctx = e.with_context ? agent_context_[{e.agent, e.key}] : std::string();
  if (e.op == "get") {
    r.mutable_get()->set_key(e.key);
  } else if (e.op == "put") {
    r.mutable_put()->set_key(e.key);
    r.mutable_put()->set_value(e.value);
    r.mutable_put()->set_context(ctx);
  } else {
    r.mutable_del()->set_key(e.key);
    r.mutable_del()->set_context(ctx);
  }
  r.set_client_id("agent-" + e.agent);
  r.set_seq(++next_agent_token_);
  r.set_agent(e.agent);
  const ClientToken token = (static_cast<uint64_t>(kAgentBase + it->second) << 32) | next_agent_token_;
  AgentOp op{history_.new_op(), e.agent, r};
  HistoryEvent ev;
  ev.time = sched_.now();
  ev.process = e.agent;
  ev.type = EventType::kInvoke;
  ev.op = op.op;
  ev.node = node_name(e.node);
  describe_request(r, ev);
  history_.add(std::move(ev));
  agent_ops_.emplace(token, std::move(op));
  to_node(e.node, token, r);
  sched_.after(o_.client.attempt_timeout_ms, [this, token] {
    auto it2 = agent_ops_.find(token);
    if (it2 == agent_ops_.end()) return;
    HistoryEvent done;
    done.time = sched_.now();
    done.process = it2->second.agent;
    done.type = EventType::kInfo;
    done.op = it2->second.op;
    describe_request(it2->second.request, done);
    done.context.reset();
    done.error = "timeout: no reply";
    done.attempts = 1;
    history_.add(std::move(done));
    agent_ops_.erase(it2);
  });
}

void Simulation::script_reply(ClientToken token, const pb::Response& r) {
  auto it = agent_ops_.find(token);
  if (it == agent_ops_.end()) return;
  HistoryEvent done;
  done.time = sched_.now();
  done.process = it->second.agent;
  done.type = r.error() == pb::OK ? EventType::kOk : EventType::kFail;
  done.op = it->second.op;
  describe_request(it->second.request, done);
  done.context.reset();
  done.durability.clear();
  describe_response(r, done);
  done.attempts = 1;
  const auto& req = it->second.request;
  const std::string key = req.has_get() ? req.get().key() : req.has_put() ? req.put().key() : req.del().key();
  if (r.has_get()) agent_context_[{it->second.agent, key}] = r.get().context();
  if (r.has_put()) agent_context_[{it->second.agent, key}] = r.put().context();
  history_.add(std::move(done));
  agent_ops_.erase(it);
}

FinalState Simulation::read_final() {
  FinalState f;
  f.healed_at = healed_at_;
  f.raft = raft_observer_.observations();
  if (equal_since_ >= 0) f.converged_after_ms = std::max<int64_t>(0, equal_since_ - healed_at_);
  const TouchedKeys keys = touched_keys(history_);
  const bool strong_history = has_strong_ops(history_);
  for (auto& np : nodes_) {
    SimNode& n = *np;
    NodeFinal nf;
    nf.node = n.id();
    nf.up = n.up();
    if (!n.start_error().empty()) f.invariant_failures.push_back(n.id() + " refused its own disk: " + n.start_error());
    if (!nf.up) {
      f.nodes.push_back(std::move(nf));
      continue;
    }
    replication::Replica& r = n.replica();
    r.take_output();
    nf.digest = r.state_digest();
    ClientToken token = 0;
    auto ask = [&](pb::Request req) -> pb::Response {
      // The omniscient reader acts as the admin agent (authenticated), so
      // access rules (the acl workload) never hide a final state.
      r.step(n.now(), replication::ClientInput{++token, std::move(req), {o_.replica.admin_agent, true}});
      replication::Output out = r.take_output();
      for (auto& reply : out.replies)
        if (reply.token == token) return reply.response;
      return pb::Response();
    };
    read_final_values(keys, ask, nf);
    if (strong_history) {
      nf.raft_role = r.raft_role();
      nf.raft_term = r.raft_term();
      nf.commit_index = r.raft_commit_index();
      read_final_strong(history_, ask, nf);
    }
    f.nodes.push_back(std::move(nf));
  }
  return f;
}

RunResult Simulation::run() {
  build();
  for (auto& n : nodes_) n->start();  // a node that refuses its disk stays down and is reported
  Scenario scenario = o_.scenario ? *o_.scenario : random_scenario(o_.nemesis, o_.nodes, o_.duration_ms, random_);
  for (const auto& e : scenario.events) {
    if (e.kind == FaultKind::kOp) last_script_at_ = std::max(last_script_at_, e.at + o_.client.attempt_timeout_ms);
    sched_.at(e.at, [this, e] { apply(e); });
  }
  for (auto& c : clients_) c->start();
  sched_.after(0, [this] { poll_leaders(); });
  sched_.run_until(o_.duration_ms);
  heal_all();
  sched_.run_until(o_.duration_ms + std::max<int64_t>(o_.quiet_ms, last_script_at_ - o_.duration_ms),
                   [this] { return stable_; });

  RunResult result;
  result.options = o_;
  result.end_ms = sched_.now();
  result.final_state = read_final();
  result.history = std::move(history_);
  result.checks = run_checkers(result.history, result.final_state);
  result.spans = std::move(spans_);
  result.events = sched_.events_run();
  result.network = net_->stats();
  for (const auto& n : nodes_) result.crashes += n->crashes();
  result.leaders = std::move(leaders_);
  return result;
}

}  // namespace

RunResult run_simulation(const SimOptions& options) {
  Simulation s(options);
  return s.run();
}

}  // namespace stig::sim
