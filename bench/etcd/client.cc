// One simulated etcd client of etcd-bench: see client.h.
//
// Workloads (one op = what is timed and counted):
//   put   KV.Put of a uniformly random key.
//   get   KV.Range of one random key, linearizable (serializable = false).
//   txn   expected-version write: Txn(if mod_revision(key) == last seen
//         then Put(key) else Range(key)). A success teaches the new
//         mod_revision (the response's header revision), a conflict the
//         current one (from the Range), so the next attempt can succeed.
//   cas   compare-and-set on the value: Txn(if value(key) == last seen value
//         then Put(key, new) else Range(key)); an absent key is compared as
//         version == 0 (etcd fails value compares on absent keys).
//   lock  v3lock Lock(name, lease) then Unlock(key): one op is a whole
//         acquire + release. Each client grants itself one lease first
//         (Lease.Grant, TTL past the run's end so no keepalive is needed).
#include "client.h"

#include <algorithm>
#include <cstdio>

namespace etcdbench {

const char* workload_name(Workload w) {
  switch (w) {
    case Workload::kPut: return "put";
    case Workload::kGet: return "get";
    case Workload::kTxn: return "txn";
    case Workload::kCas: return "cas";
    case Workload::kLock: return "lock";
  }
  return "?";
}

namespace {
const char* code_name(grpc::StatusCode c) {
  switch (c) {
    case grpc::StatusCode::CANCELLED: return "cancelled";
    case grpc::StatusCode::UNKNOWN: return "unknown";
    case grpc::StatusCode::INVALID_ARGUMENT: return "invalid_argument";
    case grpc::StatusCode::DEADLINE_EXCEEDED: return "deadline_exceeded";
    case grpc::StatusCode::NOT_FOUND: return "not_found";
    case grpc::StatusCode::ALREADY_EXISTS: return "already_exists";
    case grpc::StatusCode::PERMISSION_DENIED: return "permission_denied";
    case grpc::StatusCode::RESOURCE_EXHAUSTED: return "resource_exhausted";
    case grpc::StatusCode::FAILED_PRECONDITION: return "failed_precondition";
    case grpc::StatusCode::ABORTED: return "aborted";
    case grpc::StatusCode::OUT_OF_RANGE: return "out_of_range";
    case grpc::StatusCode::UNIMPLEMENTED: return "unimplemented";
    case grpc::StatusCode::INTERNAL: return "internal";
    case grpc::StatusCode::UNAVAILABLE: return "unavailable";
    case grpc::StatusCode::DATA_LOSS: return "data_loss";
    case grpc::StatusCode::UNAUTHENTICATED: return "unauthenticated";
    default: return "other";
  }
}
}  // namespace

void Shared::init_keys() {
  mod_revision = std::make_unique<std::atomic<int64_t>[]>(static_cast<size_t>(keys));
  for (int i = 0; i < keys; ++i) mod_revision[i].store(0);
  values = std::make_unique<Known[]>(static_cast<size_t>(keys));
}

void Shared::note_error(const std::string& what) {
  std::lock_guard<std::mutex> lock(last_error_mu);
  last_error = what;
  last_error_count.fetch_add(1);
}

Client::Client(Shared& sh, const std::shared_ptr<grpc::Channel>& channel, grpc::CompletionQueue* cq, size_t index,
               uint64_t seed)
    : sh_(sh),
      cq_(cq),
      kv_(etcdserverpb::KV::NewStub(channel)),
      lease_(etcdserverpb::Lease::NewStub(channel)),
      lock_(v3lockpb::Lock::NewStub(channel)),
      index_(index),
      rng_(seed) {
  value_.resize(static_cast<size_t>(sh_.value_size));
  for (auto& c : value_) c = static_cast<char>('a' + rng_() % 26);
}

std::string Client::key_name(size_t k) const {
  char buf[32];
  std::snprintf(buf, sizeof buf, "bench/%08zu", k);
  return buf;
}

// Makes value_ unique to this write (client index and write count up front),
// so a value compare can tell writes apart.
void Client::fresh_value() {
  char buf[24];
  std::snprintf(buf, sizeof buf, "%06zx-%09llx-", index_ & 0xffffff,
                static_cast<unsigned long long>(writes_++ & 0xfffffffffULL));
  std::copy_n(buf, std::min(value_.size(), sizeof buf - 1), value_.begin());
}

void Client::new_context() {
  ctx_ = std::make_unique<grpc::ClientContext>();
  ctx_->set_deadline(std::chrono::system_clock::now() + sh_.timeout);
  // Queue while a connection is (re)established instead of failing at once.
  ctx_->set_wait_for_ready(true);
}

void Client::start() {
  sh_.running.fetch_add(1);
  if (sh_.workload == Workload::kLock) {
    stage_ = Stage::kGrant;
    new_context();
    grant_req_.set_ttl(sh_.lease_ttl_s);
    grant_rpc_ = lease_->AsyncLeaseGrant(ctx_.get(), grant_req_, cq_);
    grant_rpc_->Finish(&grant_resp_, &status_, this);
    return;
  }
  issue();
}

void Client::stop() { sh_.running.fetch_sub(1); }

void Client::issue() {
  const auto now = Clock::now();
  if (sh_.stopping.load(std::memory_order_relaxed) || now >= sh_.measure_end) {
    stop();
    return;
  }
  key_ = static_cast<size_t>(rng_() % static_cast<uint64_t>(sh_.keys));
  const std::string key = key_name(key_);
  new_context();
  op_start_ = now;
  switch (sh_.workload) {
    case Workload::kPut:
      stage_ = Stage::kPut;
      fresh_value();
      put_req_.set_key(key);
      put_req_.set_value(value_);
      put_rpc_ = kv_->AsyncPut(ctx_.get(), put_req_, cq_);
      put_rpc_->Finish(&put_resp_, &status_, this);
      break;
    case Workload::kGet:
      stage_ = Stage::kRange;
      range_req_.set_key(key);
      range_rpc_ = kv_->AsyncRange(ctx_.get(), range_req_, cq_);
      range_rpc_->Finish(&range_resp_, &status_, this);
      break;
    case Workload::kTxn:
    case Workload::kCas: {
      stage_ = Stage::kTxn;
      fresh_value();
      txn_req_.Clear();
      auto* cmp = txn_req_.add_compare();
      cmp->set_key(key);
      cmp->set_result(etcdserverpb::Compare::EQUAL);
      if (sh_.workload == Workload::kTxn) {
        cmp->set_target(etcdserverpb::Compare::MOD);
        cmp->set_mod_revision(sh_.mod_revision[key_].load(std::memory_order_relaxed));
      } else {
        auto& known = sh_.values[key_];
        std::lock_guard<std::mutex> lock(known.mu);
        if (known.known) {
          cmp->set_target(etcdserverpb::Compare::VALUE);
          cmp->set_value(known.value);
        } else {
          cmp->set_target(etcdserverpb::Compare::VERSION);
          cmp->set_version(0);
        }
      }
      auto* put = txn_req_.add_success()->mutable_request_put();
      put->set_key(key);
      put->set_value(value_);
      txn_req_.add_failure()->mutable_request_range()->set_key(key);
      txn_rpc_ = kv_->AsyncTxn(ctx_.get(), txn_req_, cq_);
      txn_rpc_->Finish(&txn_resp_, &status_, this);
      break;
    }
    case Workload::kLock:
      stage_ = Stage::kLock;
      lock_req_.set_name("bench-lock/" + key.substr(6));
      lock_req_.set_lease(lease_id_);
      lock_rpc_ = lock_->AsyncLock(ctx_.get(), lock_req_, cq_);
      lock_rpc_->Finish(&lock_resp_, &status_, this);
      break;
  }
}

void Client::finish_op(bool ok, Clock::time_point now) {
  sh_.done_ops.fetch_add(1, std::memory_order_relaxed);
  if (!ok) return;
  if (op_start_ >= sh_.measure_start && now <= sh_.measure_end) {
    const auto us = std::chrono::duration_cast<std::chrono::microseconds>(now - op_start_).count();
    stats_.latency_us.push_back(static_cast<uint32_t>(std::min<int64_t>(us, UINT32_MAX)));
  }
}

void Client::record_error(const grpc::Status& st, Clock::time_point now) {
  sh_.done_errors.fetch_add(1, std::memory_order_relaxed);
  if (op_start_ >= sh_.measure_start && op_start_ <= sh_.measure_end && now >= sh_.measure_start) {
    stats_.errors++;
    stats_.error_kinds[code_name(st.error_code())]++;
  }
  sh_.note_error(std::string(code_name(st.error_code())) + ": " + st.error_message());
}

void Client::handle_txn() {
  const bool measured = op_start_ >= sh_.measure_start && Clock::now() <= sh_.measure_end;
  if (txn_resp_.succeeded()) {
    if (measured) stats_.succeeded++;
    if (sh_.workload == Workload::kTxn) {
      // The put is the txn's only write: the key's mod_revision is the header's revision.
      auto& rev = sh_.mod_revision[key_];
      int64_t seen = rev.load(std::memory_order_relaxed);
      const int64_t now_rev = txn_resp_.header().revision();
      while (seen < now_rev && !rev.compare_exchange_weak(seen, now_rev, std::memory_order_relaxed)) {
      }
    } else {
      auto& known = sh_.values[key_];
      std::lock_guard<std::mutex> lock(known.mu);
      known.known = true;
      known.value = value_;
    }
    return;
  }
  if (measured) stats_.conflicts++;
  const etcdserverpb::RangeResponse* rr = nullptr;
  if (txn_resp_.responses_size() > 0 && txn_resp_.responses(0).has_response_range()) {
    rr = &txn_resp_.responses(0).response_range();
  }
  if (sh_.workload == Workload::kTxn) {
    const int64_t cur = rr && rr->kvs_size() > 0 ? rr->kvs(0).mod_revision() : 0;
    // Only the latest knowledge matters; a delete is never done here, so revisions only grow.
    auto& rev = sh_.mod_revision[key_];
    int64_t seen = rev.load(std::memory_order_relaxed);
    while (seen < cur && !rev.compare_exchange_weak(seen, cur, std::memory_order_relaxed)) {
    }
  } else {
    auto& known = sh_.values[key_];
    std::lock_guard<std::mutex> lock(known.mu);
    known.known = rr && rr->kvs_size() > 0;
    known.value = known.known ? rr->kvs(0).value() : std::string();
  }
}

void Client::on_done() {
  const auto now = Clock::now();
  const grpc::Status st = status_;
  switch (stage_) {
    case Stage::kGrant:
      if (!st.ok()) {
        record_error(st, now);
        sh_.note_error("Lease.Grant failed: " + st.error_message());
        stop();  // without a lease this client cannot lock
        return;
      }
      lease_id_ = grant_resp_.id();
      break;
    case Stage::kPut:
    case Stage::kRange:
      if (!st.ok()) record_error(st, now);
      finish_op(st.ok(), now);
      break;
    case Stage::kTxn:
      if (!st.ok()) {
        record_error(st, now);
      } else {
        handle_txn();
      }
      finish_op(st.ok(), now);
      break;
    case Stage::kLock:
      if (!st.ok()) {
        record_error(st, now);
        finish_op(false, now);
        break;
      }
      // Release at once, even after the measured window, so no lock is left held.
      stage_ = Stage::kUnlock;
      new_context();
      unlock_req_.set_key(lock_resp_.key());
      unlock_rpc_ = lock_->AsyncUnlock(ctx_.get(), unlock_req_, cq_);
      unlock_rpc_->Finish(&unlock_resp_, &status_, this);
      return;
    case Stage::kUnlock:
      if (!st.ok()) record_error(st, now);
      finish_op(st.ok(), now);
      break;
  }
  issue();
}

}  // namespace etcdbench
