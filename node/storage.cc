#include "node/storage.h"

#include <rocksdb/db.h>
#include <rocksdb/memtablerep.h>
#include <rocksdb/options.h>
#include <rocksdb/write_batch.h>

#include <filesystem>
#include <system_error>

namespace stig::node {


Storage::~Storage() {
  if (db_) {
    // Close explicitly so background work stops before the handle is freed;
    // every write was synced already, so nothing is lost if this fails.
    (void)db_->Close();
  }
}

std::unique_ptr<Storage> Storage::open(const std::string& dir, std::string* error) {
  auto fail = [&](const std::string& why) -> std::unique_ptr<Storage> {
    if (error) *error = "cannot open data dir '" + dir + "': " + why;
    return nullptr;
  };
  std::error_code ec;
  if (std::filesystem::exists(dir, ec) && !std::filesystem::is_directory(dir, ec))
    return fail("exists and is not a directory");
  std::filesystem::create_directories(dir, ec);
  if (ec) return fail(ec.message());
  if (!std::filesystem::is_directory(dir, ec)) return fail("not a directory");

  rocksdb::Options options;
  options.create_if_missing = true;
  options.max_background_jobs = 2;
  options.keep_log_file_num = 4;            // RocksDB's own info LOG files
  options.max_log_file_size = 8u << 20;
  options.max_manifest_file_size = 64u << 20;
  // The node reads the database only once, at start-up (load_all); after that
  // it only writes. A vector memtable appends in O(1) and sorts at flush,
  // where the default skip list pays a sorted insert on every write.
  options.memtable_factory.reset(new rocksdb::VectorRepFactory());
  options.allow_concurrent_memtable_write = false;  // required by the vector memtable
  // Reuse old log files: overwriting written blocks lets fdatasync skip the
  // file-system metadata a growing file needs, which halves the cost of a sync.
  options.recycle_log_file_num = 4;

  rocksdb::DB* raw = nullptr;
  rocksdb::Status s = rocksdb::DB::Open(options, dir, &raw);
  if (!s.ok()) {
    std::string why = s.ToString();
    if (s.IsIOError() && why.find("lock") != std::string::npos)
      why += " (is another stigd using this data dir?)";
    return fail(why);
  }
  return std::unique_ptr<Storage>(new Storage(dir, std::unique_ptr<rocksdb::DB>(raw)));
}

namespace {

// Recovery reads: forward scans of one range with a RocksDB iterator that
// does not fill the block cache (each key is read once).
class RocksRecoveredState final : public replication::RecoveredState {
 public:
  RocksRecoveredState(rocksdb::DB& db, const std::string& dir) : db_(db), dir_(dir) {}
  replication::Status scan(std::string_view begin, std::string_view end, const Visitor& visit) const override {
    rocksdb::ReadOptions ro;
    ro.fill_cache = false;
    const rocksdb::Slice upper(end.data(), end.size());
    ro.iterate_upper_bound = &upper;
    std::unique_ptr<rocksdb::Iterator> it(db_.NewIterator(ro));
    for (it->Seek(rocksdb::Slice(begin.data(), begin.size())); it->Valid(); it->Next())
      if (!visit(std::string_view(it->key().data(), it->key().size()),
                 std::string_view(it->value().data(), it->value().size())))
        break;
    if (!it->status().ok())
      return replication::Status::corruption("reading '" + dir_ + "' failed: " + it->status().ToString());
    return replication::Status::ok();
  }

 private:
  rocksdb::DB& db_;
  const std::string& dir_;
};

}  // namespace

Storage::Storage(std::string dir, std::unique_ptr<rocksdb::DB> db)
    : dir_(std::move(dir)), db_(std::move(db)), reader_(std::make_unique<RocksRecoveredState>(*db_, dir_)) {}

StorageStatus Storage::load_all(replication::RecoveredEntries& out) const {
  rocksdb::ReadOptions ro;
  ro.fill_cache = false;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro));
  for (it->SeekToFirst(); it->Valid(); it->Next())
    out.entries.emplace_back(it->key().ToString(), it->value().ToString());
  if (!it->status().ok()) return StorageStatus::failure("reading '" + dir_ + "' failed: " + it->status().ToString());
  return StorageStatus::success();
}

namespace {

void add_to_batch(rocksdb::WriteBatch& batch, const std::vector<replication::Persist>& writes,
                  rocksdb::Status& first_error) {
  for (const auto& w : writes) {
    rocksdb::Status s = !w.erase               ? batch.Put(w.key, w.value)
                        : w.range_end.empty() ? batch.Delete(w.key)
                                              : batch.DeleteRange(w.key, w.range_end);
    if (!s.ok() && first_error.ok()) first_error = s;
  }
}

}  // namespace

StorageStatus Storage::write(const std::vector<replication::Persist>& writes) {
  return write_groups({&writes, 1});
}

StorageStatus Storage::write_groups(std::span<const std::vector<replication::Persist>> groups, bool sync) {
  rocksdb::WriteBatch batch;
  rocksdb::Status s;
  for (const auto& g : groups) add_to_batch(batch, g, s);
  if (s.ok() && batch.Count() == 0) {
    if (sync) s = db_->SyncWAL();
  } else if (s.ok()) {
    rocksdb::WriteOptions wo;
    wo.sync = sync;
    s = db_->Write(wo, &batch);
  }
  if (!s.ok()) return StorageStatus::failure("write to '" + dir_ + "' failed: " + s.ToString());
  return StorageStatus::success();
}

}  // namespace stig::node
