#include "sim/workload.h"

#include <algorithm>

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
  RegisterClient(int client, WorkloadOptions o, std::string prefix = "reg-")
      : client_(client), options_(o), prefix_(std::move(prefix)) {}

  pb::Request next(SimRandom& random) override {
    pb::Request r;
    const std::string key = prefix_ + std::to_string(random.below(static_cast<uint64_t>(options_.keys)));
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
  std::string prefix_;
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
  explicit CounterClient(WorkloadOptions o, std::string prefix = "ctr-") : options_(o), prefix_(std::move(prefix)) {}
  pb::Request next(SimRandom& random) override {
    pb::Request r;
    const std::string key = prefix_ + std::to_string(random.below(static_cast<uint64_t>(options_.keys)));
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
  std::string prefix_;
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
  explicit SetClient(WorkloadOptions o, std::string prefix = "set-") : options_(o), prefix_(std::move(prefix)) {}
  pb::Request next(SimRandom& random) override {
    pb::Request r;
    const std::string key = prefix_ + std::to_string(random.below(static_cast<uint64_t>(options_.keys)));
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
  std::string prefix_;
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

// Retries: registers, counters and sets on keys of their own ("rtr-reg-N",
// "rtr-ctr-N", "rtr-set-N"), most writes asking for quorum durability. A
// write to a node cut off from the majority waits for acknowledgements past
// the client's attempt timeout, so the client sends it again, with the same
// client id and seq, to another node, which has not heard of the first
// attempt yet: both apply it, and the merge must count it once (the
// applied-once checker). Writes that do reach every node first are retried
// too (after a reply was lost) and must be answered, not applied.
class RetryClient : public ClientWorkload {
 public:
  RetryClient(int client, WorkloadOptions o)
      : registers_(client, with_quorum(o), "rtr-reg-"),
        counters_(with_quorum(o), "rtr-ctr-"),
        sets_(with_quorum(o), "rtr-set-") {}
  pb::Request next(SimRandom& random) override {
    switch (random.below(3)) {
      case 0: return registers_.next(random);
      case 1: return counters_.next(random);
      default: return sets_.next(random);
    }
  }
  void on_reply(const pb::Request& request, const pb::Response* reply) override {
    switch (request.op_case()) {
      case pb::Request::kPut:
      case pb::Request::kGet:
      case pb::Request::kDel: return registers_.on_reply(request, reply);
      case pb::Request::kCounterAdd:
      case pb::Request::kCounterGet: return counters_.on_reply(request, reply);
      default: return sets_.on_reply(request, reply);
    }
  }

 private:
  static WorkloadOptions with_quorum(WorkloadOptions o) {
    o.quorum_writes = std::max(o.quorum_writes, 0.7);
    return o;
  }
  RegisterClient registers_;
  CounterClient counters_;
  SetClient sets_;
};

class RetryWorkload : public Workload {
 public:
  explicit RetryWorkload(WorkloadOptions o) : options_(o) {}
  std::string name() const override { return "retries"; }
  std::unique_ptr<ClientWorkload> for_client(int client) const override {
    return std::make_unique<RetryClient>(client, options_);
  }

 private:
  WorkloadOptions options_;
};

// --- the strong path -----------------------------------------------------------------

pb::Request strong_request() {
  pb::Request r;
  r.mutable_strong();
  return r;
}

// Strong registers: linearizable gets (and a few stale ones), blind puts,
// puts with an expected version, CAS on the value, deletes and two-key
// transactions (compare the first key's version; then write both, or read
// both). Values are unique ("c3-17") so the checkers can trace them; the
// expected versions and values come from what this client last saw.
class StrongClient : public ClientWorkload {
 public:
  StrongClient(int client, WorkloadOptions o) : client_(client), options_(o) {}

  pb::Request next(SimRandom& random) override {
    pb::Request r = strong_request();
    auto* s = r.mutable_strong();
    const uint64_t nkeys = static_cast<uint64_t>(options_.keys);
    const std::string key = "strong-" + std::to_string(random.below(nkeys));
    const Seen& seen = seen_[key];
    const uint64_t roll = random.below(100);
    if (roll < 20) {
      s->mutable_get()->set_key(key);
    } else if (roll < 25) {
      s->mutable_get()->set_key(key);
      s->mutable_get()->set_stale(true);
    } else if (roll < 42) {
      s->mutable_put()->set_key(key);
      s->mutable_put()->set_value(fresh());
    } else if (roll < 57) {
      auto* p = s->mutable_put();
      p->set_key(key);
      p->set_value(fresh());
      p->set_has_expected_version(true);
      p->set_expected_version(random.chance(0.15) ? 0 : seen.version);
    } else if (roll < 77) {
      auto* c = s->mutable_cas();
      c->set_key(key);
      c->set_expected_value(seen.value);
      c->set_new_value(fresh());
    } else if (roll < 82) {
      auto* d = s->mutable_delete_();
      d->set_key(key);
      if (random.chance(0.5)) {
        d->set_has_expected_version(true);
        d->set_expected_version(seen.version);
      }
    } else {
      const std::string other = "strong-" + std::to_string(random.below(nkeys));
      auto* t = s->mutable_txn();
      auto* cmp = t->add_compare();
      cmp->set_key(key);
      cmp->set_target(pb::Compare::VERSION);
      cmp->set_op(pb::Compare::EQUAL);
      cmp->set_number(seen.version);
      auto* p1 = t->add_success()->mutable_put();
      p1->set_key(key);
      p1->set_value(fresh());
      if (other != key) {
        auto* p2 = t->add_success()->mutable_put();
        p2->set_key(other);
        p2->set_value(fresh());
      }
      t->add_failure()->mutable_get()->set_key(key);
      if (other != key) t->add_failure()->mutable_get()->set_key(other);
    }
    return r;
  }

  void on_reply(const pb::Request& request, const pb::Response* reply) override {
    if (!reply || !reply->has_strong() || reply->error() != pb::OK) return;
    const auto& s = reply->strong();
    const auto& q = request.strong();
    auto learn = [&](const std::string& key, const pb::StrongResponse& r) {
      if (r.found() || r.kv().version() != 0)
        seen_[key] = Seen{r.kv().value(), r.kv().version()};
      else
        seen_[key] = Seen{};
    };
    if (q.has_get()) learn(q.get().key(), s);
    if (q.has_put()) learn(q.put().key(), s);
    if (q.has_cas()) learn(q.cas().key(), s);
    if (q.has_delete_()) seen_[q.delete_().key()] = Seen{};
    if (q.has_txn() && !s.succeeded())
      for (int i = 0; i < q.txn().failure_size() && i < s.results_size(); ++i)
        if (q.txn().failure(i).has_get()) learn(q.txn().failure(i).get().key(), s.results(i));
  }

 private:
  struct Seen {
    std::string value;
    uint64_t version = 0;
  };
  std::string fresh() {
    std::string v = "c" + std::to_string(client_ + 1) + "-" + std::to_string(++written_);
    if (v.size() < static_cast<size_t>(options_.strong_value_bytes)) v.resize(static_cast<size_t>(options_.strong_value_bytes), '.');
    return v;
  }

  int client_;
  WorkloadOptions options_;
  uint64_t written_ = 0;
  std::map<std::string, Seen> seen_;
};

class StrongWorkload : public Workload {
 public:
  explicit StrongWorkload(WorkloadOptions o) : options_(o) {}
  std::string name() const override { return "strong"; }
  std::unique_ptr<ClientWorkload> for_client(int client) const override {
    return std::make_unique<StrongClient>(client, options_);
  }

 private:
  WorkloadOptions options_;
};

// Lock contention: grant a session, acquire "lock-0" with a wait, write a
// fenced value "token:N:cK" to the shared key "fenced-0" (twice, with a
// keepalive between), release, and sometimes read the shared key. A session
// that expired or was refused starts over with a new one; an acquire or a
// release whose outcome is unknown revokes the session (whatever it holds
// is released through the log).
class LockClient : public ClientWorkload {
 public:
  LockClient(int client, WorkloadOptions o) : client_(client), options_(o) {}

  static constexpr const char* kLock = "lock-0";
  static constexpr const char* kShared = "fenced-0";

  pb::Request next(SimRandom& random) override {
    pb::Request r = strong_request();
    auto* s = r.mutable_strong();
    if (random.chance(0.1)) {  // anyone may read the shared key
      s->mutable_get()->set_key(kShared);
      return r;
    }
    switch (state_) {
      case State::kNoSession:
        s->mutable_session_grant()->set_ttl_ms(random.range(1500, 4000));
        break;
      case State::kRevoke:
        s->mutable_session_revoke()->set_session_id(session_);
        break;
      case State::kSession: {
        auto* a = s->mutable_lock_acquire();
        a->set_name(kLock);
        a->set_session_id(session_);
        a->set_wait_ms(random.range(100, 700));
        break;
      }
      case State::kHolding:
        if (writes_ == 1 && !kept_alive_) {
          s->mutable_session_keepalive()->set_session_id(session_);
        } else if (writes_ < 2) {
          auto* p = s->mutable_put();
          p->set_key(kShared);
          p->set_value("token:" + std::to_string(token_) + ":c" + std::to_string(client_ + 1));
          p->mutable_fence()->set_lock(kLock);
          p->mutable_fence()->set_token(token_);
        } else {
          auto* rel = s->mutable_lock_release();
          rel->set_name(kLock);
          rel->set_session_id(session_);
          rel->set_token(token_);
        }
        break;
    }
    return r;
  }

  void on_reply(const pb::Request& request, const pb::Response* reply) override {
    const auto& q = request.strong();
    if (q.has_get()) return;
    const bool ok = reply && reply->error() == pb::OK;
    const pb::ErrorCode err = reply ? reply->error() : pb::OUTCOME_UNKNOWN;
    const bool gone = err == pb::SESSION_EXPIRED || err == pb::NOT_FOUND;
    if (q.has_session_grant()) {
      if (ok) {
        session_ = reply->strong().session_id();
        state_ = State::kSession;
      }
    } else if (q.has_session_revoke()) {
      if (reply) state_ = State::kNoSession;  // any definite answer: that session is gone
    } else if (q.has_lock_acquire()) {
      if (ok) {
        state_ = State::kHolding;
        token_ = reply->strong().token();
        writes_ = 0;
        kept_alive_ = false;
      } else if (gone) {
        state_ = State::kNoSession;
      } else if (!reply) {
        state_ = State::kRevoke;  // maybe granted: give it up through the log
      }  // BUSY / DEADLOCK: try again later
    } else if (q.has_put()) {
      ++writes_;
      if (reply && err == pb::CONFLICT) writes_ = 2;  // the fence is stale: release (or learn the session is gone)
      if (gone) state_ = State::kNoSession;
    } else if (q.has_session_keepalive()) {
      kept_alive_ = true;
      if (gone) state_ = State::kNoSession;
    } else if (q.has_lock_release()) {
      if (ok || reply) state_ = ok ? State::kSession : (gone ? State::kNoSession : State::kSession);
      else state_ = State::kRevoke;
    }
  }

 private:
  enum class State { kNoSession, kSession, kHolding, kRevoke };
  int client_;
  WorkloadOptions options_;
  State state_ = State::kNoSession;
  uint64_t session_ = 0;
  uint64_t token_ = 0;
  int writes_ = 0;
  bool kept_alive_ = false;
};

class LockWorkload : public Workload {
 public:
  explicit LockWorkload(WorkloadOptions o) : options_(o) {}
  std::string name() const override { return "locks"; }
  std::unique_ptr<ClientWorkload> for_client(int client) const override {
    return std::make_unique<LockClient>(client, options_);
  }

 private:
  WorkloadOptions options_;
};


// The acl workload: c1 (the admin agent) first grants each other client
// write on its own prefix, then reads; the others write lazy and strong
// registers under their own prefix or under "acl-shared/" (never granted).
class AclClient : public ClientWorkload {
 public:
  static constexpr int kGrantedClients = 64;  // c2..c65 get a prefix (more clients write nothing granted)
  AclClient(int client, WorkloadOptions o) : client_(client), options_(o) {}
  pb::Request next(SimRandom& random) override {
    pb::Request r;
    const std::string k = std::to_string(random.below(static_cast<uint64_t>(options_.keys)));
    if (client_ == 0) {
      if (granted_ < kGrantedClients) {
        const std::string name = "c" + std::to_string(2 + granted_++);
        auto* rule = r.mutable_strong()->mutable_acl_grant()->mutable_rule();
        rule->set_subject("agent:agent-" + name);
        rule->set_permission(pb::ACL_WRITE);
        rule->set_prefix(acl_prefix_of(name));
        return r;
      }
      r.mutable_get()->set_key(acl_prefix_of("c" + std::to_string(2 + random.below(4))) + k);
      return r;
    }
    const std::string key =
        (random.chance(0.5) ? acl_prefix_of("c" + std::to_string(client_ + 1)) : std::string("acl-shared/")) + k;
    const std::string value = "c" + std::to_string(client_ + 1) + "-" + std::to_string(++writes_);
    if (random.chance(0.5)) {
      auto* p = r.mutable_put();
      p->set_key(key);
      p->set_value(value);
    } else {
      auto* p = r.mutable_strong()->mutable_put();
      p->set_key(key);
      p->set_value(value);
    }
    return r;
  }

 private:
  int client_;
  WorkloadOptions options_;
  int granted_ = 0;
  uint64_t writes_ = 0;
};

class AclWorkload : public Workload {
 public:
  explicit AclWorkload(WorkloadOptions o) : options_(o) {}
  std::string name() const override { return "acl"; }
  std::unique_ptr<ClientWorkload> for_client(int client) const override {
    return std::make_unique<AclClient>(client, options_);
  }

 private:
  WorkloadOptions options_;
};

}  // namespace

std::string acl_prefix_of(const std::string& client) { return "acl-" + client + "/"; }


std::unique_ptr<Workload> make_workload(const std::string& name, const WorkloadOptions& options) {
  if (name == "registers") return std::make_unique<RegisterWorkload>(options);
  if (name == "counters") return std::make_unique<CounterWorkload>(options);
  if (name == "sets") return std::make_unique<SetWorkload>(options);
  if (name == "acl") return std::make_unique<AclWorkload>(options);
  if (name == "retries") return std::make_unique<RetryWorkload>(options);
  if (name == "strong") return std::make_unique<StrongWorkload>(options);
  if (name == "locks") return std::make_unique<LockWorkload>(options);
  return nullptr;
}

std::vector<std::string> workload_names() { return {"registers", "counters", "sets", "retries", "strong", "locks"}; }

}  // namespace stig::sim
