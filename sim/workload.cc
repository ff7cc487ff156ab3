#include "sim/workload.h"

namespace stig::sim {

namespace pb = stigmergy::v1;

namespace {

pb::Durability pick_durability(SimRandom& random, double quorum) {
  return random.chance(quorum) ? pb::DURABILITY_QUORUM : pb::DURABILITY_LOCAL;
}

// Registers: gets; puts with the context last seen for the key (the way an
// agent resolves siblings); blind puts with no context; deletes with context.
// Every written value is unique ("c3-17"), so checkers can trace it.
class RegisterClient : public ClientWorkload {
 public:
  RegisterClient(int client, WorkloadOptions o) : client_(client), options_(o) {}

  pb::Request next(SimRandom& random) override {
    pb::Request r;
    const std::string key = "reg-" + std::to_string(random.below(static_cast<uint64_t>(options_.keys)));
    const uint64_t roll = random.below(100);
    auto ctx = contexts_.find(key);
    const std::string context = ctx == contexts_.end() ? std::string() : ctx->second;
    if (roll < 30) {
      r.mutable_get()->set_key(key);
    } else if (roll < 90) {
      auto* p = r.mutable_put();
      p->set_key(key);
      p->set_value("c" + std::to_string(client_ + 1) + "-" + std::to_string(++written_));
      if (roll < 75) p->set_context(context);  // else blind
      p->set_durability(pick_durability(random, options_.quorum_writes));
    } else {
      auto* d = r.mutable_del();
      d->set_key(key);
      d->set_context(context);
      d->set_durability(pick_durability(random, options_.quorum_writes));
    }
    return r;
  }

  void on_reply(const pb::Request& request, const pb::Response* reply) override {
    if (!reply || reply->error() != pb::OK) return;
    if (reply->has_get()) contexts_[request.get().key()] = reply->get().context();
    if (reply->has_put()) contexts_[reply->put().key()] = reply->put().context();
  }

 private:
  int client_;
  WorkloadOptions options_;
  uint64_t written_ = 0;
  std::map<std::string, std::string> contexts_;
};

// Makes one RegisterClient per client; keys "reg-0".."reg-(keys-1)".
class RegisterWorkload : public Workload {
 public:
  explicit RegisterWorkload(WorkloadOptions o) : options_(o) {}
  std::string name() const override { return "registers"; }
  std::unique_ptr<ClientWorkload> for_client(int client) const override {
    return std::make_unique<RegisterClient>(client, options_);
  }

 private:
  WorkloadOptions options_;
};

// Counters: adds of small positive and negative deltas, and reads.
class CounterClient : public ClientWorkload {
 public:
  explicit CounterClient(WorkloadOptions o) : options_(o) {}
  pb::Request next(SimRandom& random) override {
    pb::Request r;
    const std::string key = "ctr-" + std::to_string(random.below(static_cast<uint64_t>(options_.keys)));
    if (random.below(100) < 65) {
      auto* a = r.mutable_counter_add();
      a->set_key(key);
      int64_t delta = random.range(-3, 6);
      if (delta == 0) delta = 1;
      a->set_delta(delta);
      a->set_durability(pick_durability(random, options_.quorum_writes));
    } else {
      r.mutable_counter_get()->set_key(key);
    }
    return r;
  }

 private:
  WorkloadOptions options_;
};

// Makes one CounterClient per client; keys "ctr-0".."ctr-(keys-1)".
class CounterWorkload : public Workload {
 public:
  explicit CounterWorkload(WorkloadOptions o) : options_(o) {}
  std::string name() const override { return "counters"; }
  std::unique_ptr<ClientWorkload> for_client(int) const override { return std::make_unique<CounterClient>(options_); }

 private:
  WorkloadOptions options_;
};

// Sets: adds, removes and reads of a few elements per key.
class SetClient : public ClientWorkload {
 public:
  explicit SetClient(WorkloadOptions o) : options_(o) {}
  pb::Request next(SimRandom& random) override {
    pb::Request r;
    const std::string key = "set-" + std::to_string(random.below(static_cast<uint64_t>(options_.keys)));
    const std::string element = "e" + std::to_string(random.below(static_cast<uint64_t>(options_.set_elements)));
    const uint64_t roll = random.below(100);
    if (roll < 45) {
      auto* a = r.mutable_set_add();
      a->set_key(key);
      a->set_element(element);
      a->set_durability(pick_durability(random, options_.quorum_writes));
    } else if (roll < 75) {
      auto* m = r.mutable_set_remove();
      m->set_key(key);
      m->set_element(element);
      m->set_durability(pick_durability(random, options_.quorum_writes));
    } else {
      r.mutable_set_get()->set_key(key);
    }
    return r;
  }

 private:
  WorkloadOptions options_;
};

// Makes one SetClient per client; keys "set-0".."set-(keys-1)".
class SetWorkload : public Workload {
 public:
  explicit SetWorkload(WorkloadOptions o) : options_(o) {}
  std::string name() const override { return "sets"; }
  std::unique_ptr<ClientWorkload> for_client(int) const override { return std::make_unique<SetClient>(options_); }

 private:
  WorkloadOptions options_;
};

}  // namespace

std::unique_ptr<Workload> make_workload(const std::string& name, const WorkloadOptions& options) {
  if (name == "registers") return std::make_unique<RegisterWorkload>(options);
  if (name == "counters") return std::make_unique<CounterWorkload>(options);
  if (name == "sets") return std::make_unique<SetWorkload>(options);
  return nullptr;
}

std::vector<std::string> workload_names() { return {"registers", "counters", "sets"}; }

}  // namespace stig::sim
