#include "node/commit_pipeline.h"

#include <spdlog/spdlog.h>

#include <chrono>

namespace stig::node {

CommitPipeline::CommitPipeline(asio::io_context& io, Storage& storage, ReleaseFn release, FailureFn on_failure)
    : io_(io),
      storage_(storage),
      release_(std::move(release)),
      on_failure_(std::move(on_failure)),
      storage_work_(asio::make_work_guard(storage_io_)),
      storage_thread_([this] { storage_io_.run(); }) {}

CommitPipeline::~CommitPipeline() {
  storage_work_.reset();  // lets the storage thread finish the job it has, then return
  if (storage_thread_.joinable()) storage_thread_.join();
}

void CommitPipeline::submit(replication::Output&& out) {
  if (failed_) return;  // a write failed: nothing may be released any more
  Entry e;
  e.durable = out.persist.empty();
  e.written = e.durable;
  e.out = std::move(out);
  queue_.push_back(std::move(e));
  release_ready();
  maybe_start_write();
}

void CommitPipeline::maybe_start_write() {
  if (in_flight_ || failed_ || queue_.empty()) return;
  // Invariant here: the front entry is not durable (release_ready ran), so
  // every entry in the queue is either persist-less or unwritten; one write
  // covers them all.
  auto groups = std::make_shared<std::vector<std::vector<replication::Persist>>>();
  size_t persists = 0;
  bool sync = false;  // one output that needs an fsync makes the whole group wait for it
  for (Entry& e : queue_) {
    if (e.written) continue;
    sync |= e.out.sync;
    persists += e.out.persist.size();
    groups->push_back(std::move(e.out.persist));
    e.out.persist.clear();
    e.written = true;
  }
  if (groups->empty()) return;
  in_flight_ = true;
  const size_t covered = queue_.size();
  asio::post(storage_io_, [this, groups, covered, persists, sync] {
    const auto start = std::chrono::steady_clock::now();
    StorageStatus status = storage_.write_groups(*groups, sync);
    const auto us =
        std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - start).count();
    SPDLOG_TRACE("group commit: {} outputs, {} writes, {} us", groups->size(), persists, us);
    (void)us;
    asio::post(io_, [this, covered, persists, sync, status = std::move(status)] {
      on_write_done(covered, persists, sync, status);
    });
  });
}

void CommitPipeline::on_write_done(size_t covered, size_t persists, bool synced, const StorageStatus& status) {
  in_flight_ = false;
  if (!status.ok) {
    failed_ = true;
    if (on_failure_) on_failure_(status);
    return;
  }
  if (synced) ++syncs_;
  persists_written_ += persists;
  for (size_t i = 0; i < covered && i < queue_.size(); ++i) queue_[i].durable = true;
  release_ready();
  maybe_start_write();
}

void CommitPipeline::release_ready() {
  while (!queue_.empty() && queue_.front().durable) {
    replication::Output out = std::move(queue_.front().out);
    queue_.pop_front();
    release_(out);
  }
  if (idle() && on_idle_) on_idle_();
}

}  // namespace stig::node
