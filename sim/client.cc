#include "sim/client.h"

#include <algorithm>

namespace stig::sim {

namespace pb = stigmergy::v1;

SimClient::SimClient(int index, int nodes, Scheduler& scheduler, SimRandom& random, History& history,
                     std::vector<std::unique_ptr<ClientWorkload>> workloads, ClientOptions options, Send send)
    : index_(index),
      nodes_(nodes),
      name_("c" + std::to_string(index + 1)),
      scheduler_(scheduler),
      random_(random),
      history_(history),
      workloads_(std::move(workloads)),
      options_(options),
      send_(std::move(send)),
      node_(static_cast<int>(random.below(static_cast<uint64_t>(nodes)))),
      strong_node_(node_) {}

void SimClient::start() {
  if (workloads_.empty()) return;
  scheduler_.after(random_.range(0, options_.think_max_ms), [this] { begin(); });
}

void SimClient::begin() {
  if (stopped_ || current_) return;
  ClientWorkload* w = workloads_[random_.below(workloads_.size())].get();
  Current c;
  c.op = history_.new_op();
  c.request = w->next(random_);
  c.request.set_client_id(name_);
  c.request.set_seq(++seq_);
  c.request.set_agent("agent-" + name_);
  c.workload = w;
  c.invoked = scheduler_.now();
  c.strong = c.request.has_strong();
  if (!c.strong) c.horizons = node_dots_;
  // Now and then a strong op starts at a random node, as a client that just
  // started would: leader discovery goes through followers' hints, and
  // clients spread over both sides of a leader change.
  if (c.strong && nodes_ > 1 && random_.chance(0.2))
    strong_node_ = static_cast<int>(random_.below(static_cast<uint64_t>(nodes_)));
  HistoryEvent e;
  e.time = scheduler_.now();
  e.process = name_;
  e.type = EventType::kInvoke;
  e.op = c.op;
  e.node = "n" + std::to_string((c.strong ? strong_node_ : node_) + 1);
  describe_request(c.request, e);
  history_.add(std::move(e));
  current_ = std::move(c);
  attempt();
}

void SimClient::attempt() {
  Current& c = *current_;
  ++c.attempts;
  const replication::ClientToken token = (static_cast<uint64_t>(index_) << 32) | ++next_token_;
  c.tokens.insert(token);
  c.last_token = token;
  const uint64_t op = c.op;
  const int n = c.attempts;
  if (!c.strong && n > 1) {
    // A retry, as the real client sends it: the attempt number and, for each
    // node tried before, what the client knew of that node's dots.
    c.request.set_attempt(static_cast<uint32_t>(n));
    c.request.clear_tried();
    for (int t : c.tried) {
      const std::string id = "n" + std::to_string(t + 1);
      auto* tried = c.request.add_tried();
      tried->set_node(id);
      auto h = c.horizons.find(id);
      tried->set_horizon(h == c.horizons.end() ? 0 : h->second);
    }
  }
  if (!c.strong) c.tried.insert(node_);
  send_(c.strong ? strong_node_ : node_, token, c.request);
  scheduler_.after(options_.attempt_timeout_ms, [this, op, n] { timeout(op, n); });
}

void SimClient::timeout(uint64_t op, int attempt_number) {
  if (!current_ || current_->op != op || current_->attempts != attempt_number) return;
  current_->uncertain = true;
  if (current_->strong) {
    ++current_->timeouts;
    if (current_->timeouts >= options_.max_attempts) {
      complete(EventType::kInfo, nullptr, "timeout: no reply after " + std::to_string(current_->attempts) + " attempts");
      return;
    }
    if (nodes_ > 1)
      strong_node_ =
          (strong_node_ + 1 + static_cast<int>(random_.below(static_cast<uint64_t>(nodes_ - 1)))) % nodes_;
    attempt();
    return;
  }
  if (current_->attempts >= options_.max_attempts) {
    complete(EventType::kInfo, nullptr,
             "timeout: no reply after " + std::to_string(current_->attempts) + " attempts");
    return;
  }
  // Fail over to another node, as the real client does.
  if (nodes_ > 1) node_ = (node_ + 1 + static_cast<int>(random_.below(static_cast<uint64_t>(nodes_ - 1)))) % nodes_;
  attempt();
}

void SimClient::on_reply(replication::ClientToken token, const pb::Response& response) {
  if (!response.node().empty()) {
    uint64_t& d = node_dots_[response.node()];
    d = std::max(d, response.node_dot());
  }
  if (!current_ || !current_->tokens.count(token)) return;  // late reply to a finished op
  if (current_->strong) return on_strong_reply(token, response);
  switch (response.error()) {
    case pb::OK: return complete(EventType::kOk, &response, "");
    case pb::UNAVAILABLE:
      current_->uncertain = true;
      return timeout(current_->op, current_->attempts);
    case pb::DURABILITY_NOT_MET:  // stored on the coordinator, not on enough replicas
    case pb::RETRY_UNKNOWN:       // an earlier attempt may have been applied; not applied again
      return complete(EventType::kInfo, &response, "");
    default:
      return complete(current_->uncertain ? EventType::kInfo : EventType::kFail, &response, "");
  }
}

bool is_decided_refusal(pb::ErrorCode error) {
  switch (error) {
    case pb::CONFLICT:
    case pb::BUSY:
    case pb::DEADLOCK:
    case pb::SESSION_EXPIRED:
    case pb::NOT_FOUND:
      return true;  // applied (or answered from the dedup table) as a refusal
    default:
      return false;
  }
}

void SimClient::on_strong_reply(replication::ClientToken token, const pb::Response& response) {
  Current& c = *current_;
  if (is_decided_refusal(response.error())) return complete(EventType::kOk, &response, "");
  switch (response.error()) {
    case pb::OK:
      return complete(EventType::kOk, &response, "");
    case pb::OUTCOME_UNKNOWN:
    case pb::UNAVAILABLE:
      c.uncertain = true;
      if (token != c.last_token) return;  // an older attempt: the current one is still in flight
      return strong_retry(response.leader_hint());
    case pb::NOT_LEADER:
      if (token != c.last_token) return;
      return strong_retry(response.leader_hint());
    default:
      return complete(c.uncertain ? EventType::kInfo : EventType::kFail, &response, "");
  }
}

void SimClient::strong_retry(const std::string& leader_hint) {
  Current& c = *current_;
  if (scheduler_.now() - c.invoked >= options_.attempt_timeout_ms * options_.max_attempts) {
    const std::string why = "no leader answered within " + std::to_string(options_.max_attempts) +
                            " attempt timeouts (" + std::to_string(c.attempts) + " attempts)";
    return complete(c.uncertain ? EventType::kInfo : EventType::kFail, nullptr, why);
  }
  int hinted = -1;
  if (leader_hint.size() >= 2 && leader_hint[0] == 'n') {
    int k = 0;
    for (size_t i = 1; i < leader_hint.size() && k < 100000; ++i) {
      if (leader_hint[i] < '0' || leader_hint[i] > '9') {
        k = 0;
        break;
      }
      k = k * 10 + (leader_hint[i] - '0');
    }
    if (k >= 1 && k <= nodes_) hinted = k - 1;
  }
  int64_t backoff = random_.range(1, 5);
  if (hinted >= 0 && hinted != strong_node_) {
    strong_node_ = hinted;
  } else {
    strong_node_ = (strong_node_ + 1) % nodes_;
    backoff = random_.range(20, 60);  // no leader known (an election): do not spin
  }
  const uint64_t op = c.op;
  const int n = c.attempts;
  scheduler_.after(backoff, [this, op, n] {
    if (!current_ || current_->op != op || current_->attempts != n) return;
    attempt();
  });
}

void SimClient::complete(EventType type, const pb::Response* response, const std::string& error) {
  Current c = std::move(*current_);
  current_.reset();
  HistoryEvent e;
  e.time = scheduler_.now();
  e.process = name_;
  e.type = type;
  e.op = c.op;
  describe_request(c.request, e);
  e.context.reset();
  if (!c.strong) e.value.clear();
  if (c.request.has_put()) e.value = c.request.put().value();
  if (c.request.has_set_add()) e.value = c.request.set_add().element();
  if (c.request.has_set_remove()) e.value = c.request.set_remove().element();
  e.durability.clear();
  if (response) describe_response(*response, e);
  if (c.strong && response && response->error() != pb::OK && type == EventType::kOk) e.succeeded = false;
  if (!error.empty()) e.error = error;
  e.attempts = c.attempts;
  history_.add(std::move(e));
  c.workload->on_reply(c.request, type == EventType::kOk || type == EventType::kFail ? response : nullptr);
  scheduler_.after(random_.range(options_.think_min_ms, options_.think_max_ms), [this] { begin(); });
}

}  // namespace stig::sim
