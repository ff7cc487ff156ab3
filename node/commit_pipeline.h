// Group commit for the real runtime: a runtime::ReleaseQueue driven by a
// storage thread.
//
// The io thread hands every replication::Output to submit() in the order the
// core produced them. The queue decides what to write and when each message
// and reply may leave; the pipeline makes the writes, one at a time on its
// storage thread, as one RocksDB batch each with at most one fsync, and
// hands what may leave to the release callback on the io thread. The more
// load, the more outputs share one write (the next group accumulates while
// one is in flight).
//
// Guarantees: those of runtime::ReleaseQueue; after each synced write,
// on_persisted is called with the last output it covered (the server steps
// it into the core as replication::Persisted). If a storage write fails,
// nothing it covers (nor anything after it) is ever released: on_failure is
// called once and the pipeline stops.
//
// All methods are called on the io thread; only the write itself runs on the
// storage thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <thread>

#include "node/asio.h"
#include "node/storage.h"
#include "replication/replica.h"
#include "runtime/release_queue.h"

namespace stig::node {

class CommitPipeline {
 public:
  using ReleaseFn = std::function<void(runtime::ReleaseQueue::Released&)>;
  using PersistedFn = std::function<void(uint64_t through_output)>;
  using FailureFn = std::function<void(const StorageStatus&)>;

  // `gather`: after a synced write of several outputs (load), how long the
  // next write waits for more outputs to join it (fewer fsyncs, at up to
  // that much latency).
  CommitPipeline(asio::io_context& io, Storage& storage, ReleaseFn release, PersistedFn on_persisted,
                 FailureFn on_failure, std::chrono::microseconds gather = {});
  ~CommitPipeline();  // joins the storage thread (after the in-flight write)
  CommitPipeline(const CommitPipeline&) = delete;
  CommitPipeline& operator=(const CommitPipeline&) = delete;

  void submit(replication::Output&& out);

  // Nothing queued and nothing in flight.
  bool idle() const { return queue_.idle(); }
  // Called once each time the pipeline becomes idle (used by shutdown).
  void set_on_idle(std::function<void()> fn) { on_idle_ = std::move(fn); }

  // Counters for logs and tests.
  uint64_t syncs() const { return syncs_; }
  uint64_t persists_written() const { return persists_written_; }

 private:
  // Releases what may leave, then starts the next write if one is due.
  void pump();
  void start_write();
  void on_write_done(uint64_t id, size_t persists, bool synced, size_t outputs, const StorageStatus& status);

  asio::io_context& io_;
  Storage& storage_;
  ReleaseFn release_;
  PersistedFn on_persisted_;
  FailureFn on_failure_;
  std::function<void()> on_idle_;

  runtime::ReleaseQueue queue_;
  bool failed_ = false;
  const std::chrono::microseconds gather_;
  asio::steady_timer gather_timer_{io_};
  bool gathering_ = false;  // the next write waits for gather_timer_
  uint64_t syncs_ = 0;
  uint64_t persists_written_ = 0;

  // The storage thread: its own io_context so jobs run one at a time, in order.
  asio::io_context storage_io_;
  asio::executor_work_guard<asio::io_context::executor_type> storage_work_;
  std::thread storage_thread_;
};

}  // namespace stig::node
