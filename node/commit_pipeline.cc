#include "node/commit_pipeline.h"

#include <spdlog/spdlog.h>

#include <chrono>
#include <memory>

namespace stig::node {

CommitPipeline::CommitPipeline(asio::io_context& io, Storage& storage, ReleaseFn release, PersistedFn on_persisted,
                               FailureFn on_failure, std::chrono::microseconds gather)
    : io_(io),
      storage_(storage),
      release_(std::move(release)),
      on_persisted_(std::move(on_persisted)),
      on_failure_(std::move(on_failure)),
      gather_(gather),
      storage_work_(asio::make_work_guard(storage_io_)),
      storage_thread_([this] { storage_io_.run(); }) {}

CommitPipeline::~CommitPipeline() {
  storage_work_.reset();  // lets the storage thread finish the job it has, then return
  if (storage_thread_.joinable()) storage_thread_.join();
}

void CommitPipeline::submit(replication::Output&& out) {
  if (failed_) return;  // a write failed: nothing may be released any more
  queue_.push(std::move(out));
  pump();
}

void CommitPipeline::pump() {
  if (failed_) return;
  auto released = queue_.take_released();
  if (!released.empty()) release_(released);
  if (gathering_) return;
  start_write();
}

void CommitPipeline::start_write() {
  if (auto write = queue_.next_write()) {
    auto job = std::make_shared<runtime::ReleaseQueue::Write>(std::move(*write));
    asio::post(storage_io_, [this, job] {
      const auto start = std::chrono::steady_clock::now();
      StorageStatus status = storage_.write_groups(job->groups, job->sync);
      const auto us =
          std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - start).count();
      SPDLOG_TRACE("group commit: {} outputs, {} writes, {} us", job->groups.size(), job->persists, us);
      (void)us;
      asio::post(io_, [this, job, status = std::move(status)] {
        on_write_done(job->id, job->persists, job->sync, job->groups.size(), status);
      });
    });
  }
  if (queue_.idle() && on_idle_) on_idle_();
}

void CommitPipeline::on_write_done(uint64_t id, size_t persists, bool synced, size_t outputs,
                                   const StorageStatus& status) {
  if (!status.ok) {
    failed_ = true;
    if (on_failure_) on_failure_(status);
    return;
  }
  if (synced) ++syncs_;
  persists_written_ += persists;
  queue_.write_done(id);
  if (synced && on_persisted_) on_persisted_(queue_.synced_through());
  if (synced && outputs > 1 && gather_.count() > 0) {
    // Under load (this group gathered several outputs) the next group is
    // already forming; waiting a little lets more writes share its fsync.
    // A lone writer (one output per group) never waits: each of its writes
    // would pay the whole window.
    gathering_ = true;
    gather_timer_.expires_after(gather_);
    gather_timer_.async_wait([this](const boost::system::error_code&) {
      gathering_ = false;
      pump();
    });
  }
  pump();
}

}  // namespace stig::node
