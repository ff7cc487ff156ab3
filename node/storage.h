// Durable storage of one node: a RocksDB database in the node's data dir.
//
// The core decides what to persist (replication::Persist: put or erase a
// key); Storage makes it durable. Every write() is ONE RocksDB WriteBatch
// written with sync=true, so when it returns ok every entry of the batch is
// on disk (WAL fsynced) and a crash cannot keep part of a batch. Errors are
// returned as values; nothing here throws.
//
// Thread safety: open/load_all at startup, then write() from the storage
// thread only (RocksDB itself is thread-safe; the runtime keeps one writer so
// group commits stay in order).
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "replication/replica.h"

namespace rocksdb {
class DB;
}

namespace stig::node {

// Outcome of a storage operation: ok, or a one-line message naming the failure.
struct StorageStatus {
  bool ok = true;
  std::string message;

  static StorageStatus success() { return {}; }
  static StorageStatus failure(std::string m) { return {false, std::move(m)}; }
};

class Storage {
 public:
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;

  // Opens (creating if missing) the database in `dir`. On failure returns
  // null and sets `error` to one line, e.g. "cannot open data dir 'x': ...".
  static std::unique_ptr<Storage> open(const std::string& dir, std::string* error);

  // Reads every (key, value) pair, in key order (tests and tools: the core
  // reads through recovered() instead).
  StorageStatus load_all(replication::RecoveredEntries& out) const;

  // The stored state as the core reads it at start: scans on demand, so
  // recovery never copies the whole database into memory.
  const replication::RecoveredState& recovered() const { return *reader_; }

  // Applies `writes` in order as one atomic, synced batch (erase -> Delete,
  // erase with a range_end -> DeleteRange).
  StorageStatus write(const std::vector<replication::Persist>& writes);

  // Group commit: applies every batch of `groups`, in order, as ONE atomic
  // batch with at most ONE sync. With no writes, a sync still syncs the WAL
  // (it covers earlier unsynced writes).
  // `sync`: wait for fsync (false: written to the WAL, durable once a later
  // synced write or the OS flushes it).
  StorageStatus write_groups(std::span<const std::vector<replication::Persist>> groups, bool sync = true);

  const std::string& dir() const { return dir_; }

 private:
  Storage(std::string dir, std::unique_ptr<rocksdb::DB> db);

  std::string dir_;
  std::unique_ptr<rocksdb::DB> db_;
  std::unique_ptr<replication::RecoveredState> reader_;
};

}  // namespace stig::node
