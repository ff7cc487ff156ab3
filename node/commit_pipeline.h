// Group commit: enforces "persist, then send and reply" for the real runtime.
//
// The io thread hands every replication::Output to submit() in the order the
// core produced them. The pipeline keeps them in a FIFO; the storage thread
// writes the persists of ALL queued-but-unwritten outputs as one RocksDB batch
// with one sync, then the io thread releases (sends the messages and replies
// of) every output that batch covered, in order. At most one storage write is
// in flight; the next group accumulates meanwhile, so the more load, the more
// writes share one fsync.
//
// Guarantees:
//  - an output is released only after its own persists and those of every
//    earlier output are written, and synced when any of them has
//    Output::sync set (RocksDB's WAL is sequential, so a sync also covers
//    every unsynced write before it); outputs are released in submit order;
//  - an output without persists behind nothing unwritten is released at once,
//    inside submit();
//  - if a storage write fails, nothing it covers (nor anything after it) is
//    ever released: on_failure is called once and the pipeline stops.
//
// All methods are called on the io thread; only the write itself runs on the
// storage thread.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <thread>
#include <vector>

#include "node/asio.h"
#include "node/storage.h"
#include "replication/replica.h"

namespace stig::node {

class CommitPipeline {
 public:
  // Called with each output once its persists are durable (persist is empty).
  using ReleaseFn = std::function<void(replication::Output&)>;
  using FailureFn = std::function<void(const StorageStatus&)>;

  CommitPipeline(asio::io_context& io, Storage& storage, ReleaseFn release, FailureFn on_failure);
  ~CommitPipeline();  // joins the storage thread (after the in-flight write)
  CommitPipeline(const CommitPipeline&) = delete;
  CommitPipeline& operator=(const CommitPipeline&) = delete;

  void submit(replication::Output&& out);

  // Nothing queued and nothing in flight.
  bool idle() const { return queue_.empty() && !in_flight_; }
  // Called once each time the pipeline becomes idle (used by shutdown).
  void set_on_idle(std::function<void()> fn) { on_idle_ = std::move(fn); }

  // Counters for logs and tests.
  uint64_t syncs() const { return syncs_; }
  uint64_t persists_written() const { return persists_written_; }

 private:
  struct Entry {
    replication::Output out;
    bool durable = false;  // its persists are on disk (or it had none)
    bool written = false;  // its persists were handed to the storage thread
  };

  void maybe_start_write();
  void on_write_done(size_t covered, size_t persists, bool synced, const StorageStatus& status);
  void release_ready();

  asio::io_context& io_;
  Storage& storage_;
  ReleaseFn release_;
  FailureFn on_failure_;
  std::function<void()> on_idle_;

  std::deque<Entry> queue_;
  size_t unwritten_from_ = 0;  // index in queue_ of the first entry not yet written
  bool in_flight_ = false;
  bool failed_ = false;
  uint64_t syncs_ = 0;
  uint64_t persists_written_ = 0;

  // The storage thread: its own io_context so jobs run one at a time, in order.
  asio::io_context storage_io_;
  asio::executor_work_guard<asio::io_context::executor_type> storage_work_;
  std::thread storage_thread_;
};

}  // namespace stig::node
