// One simulated etcd client of etcd-bench: a closed loop (one request in flight)
// driven by a gRPC completion queue, running one workload against etcd's native
// gRPC API (KV, Lease and the v3lock Lock service).
#pragma once

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <vector>

#include "etcd/etcdserver/api/v3lock/v3lockpb/v3lock.grpc.pb.h"
#include "etcd/etcdserver/etcdserverpb/rpc.grpc.pb.h"
#include "stats.h"

namespace etcdbench {

enum class Workload { kPut, kGet, kTxn, kCas, kLock };
const char* workload_name(Workload w);

// What every client shares: the workload, the timing of the phases, progress
// counters, and the latest mod_revision / value seen per key (txn, cas).
struct Shared {
  Workload workload = Workload::kPut;
  int keys = 10000;
  int value_size = 100;
  int64_t lease_ttl_s = 60;
  Clock::duration timeout = std::chrono::seconds(5);
  Clock::time_point measure_start, measure_end;

  std::atomic<bool> stopping{false};
  std::atomic<int> running{0};  // clients that have not stopped yet
  std::atomic<uint64_t> done_ops{0}, done_errors{0};
  std::atomic<uint64_t> last_error_count{0};
  std::mutex last_error_mu;
  std::string last_error;

  // txn: the newest mod_revision seen per key (0 = absent); only grows.
  std::unique_ptr<std::atomic<int64_t>[]> mod_revision;
  // cas: the latest value seen per key ("known" false = absent or unknown).
  struct Known {
    std::mutex mu;
    bool known = false;
    std::string value;
  };
  std::unique_ptr<Known[]> values;

  void init_keys();
  void note_error(const std::string& what);
};

class Client {
 public:
  Client(Shared& sh, const std::shared_ptr<grpc::Channel>& channel, grpc::CompletionQueue* cq, size_t index,
         uint64_t seed);
  // Sends the first request (the lease grant for lock). Any thread, once.
  void start();
  // The completion of the request in flight; called on the queue's thread.
  void on_done();
  const Stats& stats() const { return stats_; }

 private:
  enum class Stage { kGrant, kPut, kRange, kTxn, kLock, kUnlock };

  void issue();
  void stop();
  void new_context();
  void finish_op(bool ok, Clock::time_point now);
  void record_error(const grpc::Status& st, Clock::time_point now);
  std::string key_name(size_t k) const;
  void fresh_value();
  void handle_txn();

  Shared& sh_;
  grpc::CompletionQueue* cq_;
  std::unique_ptr<etcdserverpb::KV::Stub> kv_;
  std::unique_ptr<etcdserverpb::Lease::Stub> lease_;
  std::unique_ptr<v3lockpb::Lock::Stub> lock_;
  size_t index_;
  std::mt19937_64 rng_;
  std::string value_;
  uint64_t writes_ = 0;
  int64_t lease_id_ = 0;

  Stage stage_ = Stage::kPut;
  size_t key_ = 0;
  Clock::time_point op_start_;
  std::unique_ptr<grpc::ClientContext> ctx_;
  grpc::Status status_;
  etcdserverpb::PutRequest put_req_;
  etcdserverpb::PutResponse put_resp_;
  etcdserverpb::RangeRequest range_req_;
  etcdserverpb::RangeResponse range_resp_;
  etcdserverpb::TxnRequest txn_req_;
  etcdserverpb::TxnResponse txn_resp_;
  etcdserverpb::LeaseGrantRequest grant_req_;
  etcdserverpb::LeaseGrantResponse grant_resp_;
  v3lockpb::LockRequest lock_req_;
  v3lockpb::LockResponse lock_resp_;
  v3lockpb::UnlockRequest unlock_req_;
  v3lockpb::UnlockResponse unlock_resp_;
  std::unique_ptr<grpc::ClientAsyncResponseReader<etcdserverpb::PutResponse>> put_rpc_;
  std::unique_ptr<grpc::ClientAsyncResponseReader<etcdserverpb::RangeResponse>> range_rpc_;
  std::unique_ptr<grpc::ClientAsyncResponseReader<etcdserverpb::TxnResponse>> txn_rpc_;
  std::unique_ptr<grpc::ClientAsyncResponseReader<etcdserverpb::LeaseGrantResponse>> grant_rpc_;
  std::unique_ptr<grpc::ClientAsyncResponseReader<v3lockpb::LockResponse>> lock_rpc_;
  std::unique_ptr<grpc::ClientAsyncResponseReader<v3lockpb::UnlockResponse>> unlock_rpc_;
  Stats stats_;
};

}  // namespace etcdbench
