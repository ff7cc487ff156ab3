// TestCluster: a deterministic in-memory network of replicas for driving the
// core message by message in unit tests (the full simulator lives in sim/).
#pragma once

#include <algorithm>
#include <deque>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "replication/key_space.h"
#include "replication/replica.h"
#include "runtime/release_queue.h"

namespace stig::replication {

namespace pb = stigmergy::v1;

// A deterministic in-memory network of replicas, enough to drive the core
// step by step (the full simulator lives in sim/).
class TestCluster {
 public:
  explicit TestCluster(int n, Config base = Config()) {
    for (int i = 1; i <= n; ++i) ids_.push_back("n" + std::to_string(i));
    base_ = base;
    for (const auto& id : ids_) start(id);
  }

  Config config_for(const NodeId& id) const {
    Config c = base_;
    c.self = id;
    c.self_address = id + ":0";
    c.peers.clear();
    for (const auto& p : ids_)
      if (p != id) c.peers.push_back({p, p + ":0"});
    return c;
  }

  void start(const NodeId& id) {
    RecoveredEntries rec;
    for (const auto& [k, v] : disk_[id]) rec.entries.emplace_back(k, v);
    releases_.erase(id);  // a new replica numbers its outputs from 1
    nodes_[id] = std::make_unique<Replica>(config_for(id), 42, rec);
    drain(id);
  }
  void crash(const NodeId& id) {
    nodes_.erase(id);
    releases_.erase(id);
    wake_.erase(id);
  }

  Replica& node(const NodeId& id) { return *nodes_.at(id); }

  pb::Response request(const NodeId& id, pb::Request req) {
    const ClientToken token = next_token_++;
    if (req.client_id().empty()) req.set_client_id("client");
    if (req.seq() == 0) req.set_seq(next_seq_++);
    if (req.agent().empty()) req.set_agent("tester");
    step(id, ClientInput{token, req});
    for (int round = 0; round < 1000 && !replies_.count(token); ++round) {
      if (!deliver_one()) advance(50);
    }
    EXPECT_TRUE(replies_.count(token)) << "no reply";
    return replies_[token];
  }

  pb::Response put(const NodeId& id, const std::string& key, const std::string& value, const std::string& ctx = "",
                   pb::Durability d = pb::DURABILITY_LOCAL) {
    pb::Request r;
    auto* p = r.mutable_put();
    p->set_key(key);
    p->set_value(value);
    p->set_context(ctx);
    p->set_durability(d);
    return request(id, r);
  }
  pb::Response get(const NodeId& id, const std::string& key) {
    pb::Request r;
    r.mutable_get()->set_key(key);
    return request(id, r);
  }
  pb::Response del(const NodeId& id, const std::string& key, const std::string& ctx) {
    pb::Request r;
    r.mutable_del()->set_key(key);
    r.mutable_del()->set_context(ctx);
    return request(id, r);
  }

  void step(const NodeId& id, Input in) {
    auto it = nodes_.find(id);
    if (it == nodes_.end()) return;
    it->second->step(Now{now_, 1700000000000 + now_}, std::move(in));
    drain(id);
  }

  // Writes go through the runtime's ReleaseQueue, each made (and synced)
  // at once on the in-memory disk.
  void drain(const NodeId& id) {
    runtime::ReleaseQueue& release = releases_[id];
    Output output = nodes_.at(id)->take_output();
    wake_[id] = output.wake_at;
    release.push(std::move(output));
    bool synced = false;
    while (true) {
      auto out = release.take_released();
      for (auto& m : out.messages) {
        ++sent_;
        if (blocked_.count({id, m.to}) || blocked_.count({m.to, id})) continue;
        queue_.push_back({id, m.to, m.message});
      }
      for (auto& r : out.replies) replies_[r.token] = r.response;
      auto write = release.next_write();
      if (!write) break;
      for (const auto& group : write->groups)
        for (const auto& p : group) apply_persist(disk_[id], p);
      release.write_done(write->id);
      synced |= write->sync;
    }
    if (synced) step(id, Persisted{release.synced_through()});
  }

  bool deliver_one() {
    if (queue_.empty()) return false;
    auto [from, to, msg] = queue_.front();
    queue_.pop_front();
    if (msg->has_push()) pushed_states_ += msg->push().states_size();
    if (msg->has_ae_keys()) ae_states_ += msg->ae_keys().states_size();
    step(to, PeerInput{from, *msg});
    return true;
  }
  void deliver_all() {
    for (int i = 0; i < 100000 && deliver_one(); ++i) {
    }
  }
  void advance(int64_t ms) {
    const int64_t end = now_ + ms;
    while (now_ < end) {
      now_ += 10;
      for (const auto& id : ids_) step(id, Tick{});
      deliver_all();
    }
  }

  // Time passes as a real runtime lets it: a node is ticked only when the
  // wake_at it asked for comes (advance() ticks everyone every 10 ms, which
  // would hide a timer nobody asked to be woken for).
  void advance_by_wake(int64_t ms) {
    const int64_t end = now_ + ms;
    while (now_ < end) {
      MonoTime next = end;
      for (const auto& [id, at] : wake_) next = std::min(next, std::max(at, now_ + 1));
      now_ = next;
      for (const auto& id : ids_)
        if (wake_.count(id) && wake_[id] <= now_) step(id, Tick{});
      deliver_all();
    }
  }

  void partition(const std::set<NodeId>& side) {
    for (const auto& a : ids_)
      for (const auto& b : ids_)
        if (side.count(a) != side.count(b)) blocked_.insert({a, b});
  }
  void heal() { blocked_.clear(); }

  bool converged() {
    uint64_t d = 0;
    bool first = true;
    for (auto& [id, n] : nodes_) {
      drain(id);  // settle
      if (first) d = n->state_digest(), first = false;
      if (n->state_digest() != d) return false;
    }
    return true;
  }

  std::vector<NodeId> ids_;
  Config base_;
  std::map<NodeId, std::unique_ptr<Replica>> nodes_;
  std::map<NodeId, runtime::ReleaseQueue> releases_;
  std::map<NodeId, MonoTime> wake_;  // what each node's last output asked for
  std::map<NodeId, std::map<std::string, std::string>> disk_;
  struct InFlight {
    NodeId from, to;
    std::shared_ptr<const pb::PeerMessage> msg;
  };
  std::deque<InFlight> queue_;
  std::set<std::pair<NodeId, NodeId>> blocked_;
  std::map<ClientToken, pb::Response> replies_;
  MonoTime now_ = 1000;
  ClientToken next_token_ = 1;
  uint64_t next_seq_ = 1;
  uint64_t sent_ = 0, pushed_states_ = 0, ae_states_ = 0;
};

inline std::vector<std::string> values_of(const pb::Response& r) {
  std::vector<std::string> out;
  for (const auto& v : r.get().versions()) out.push_back(v.value());
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace stig::replication
