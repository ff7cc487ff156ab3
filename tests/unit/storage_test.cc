// node::Storage: RocksDB round trip, recovery after reopen, erase, group
// commit; node::CommitPipeline: persist before release, in order.
#include "node/storage.h"

#include <gtest/gtest.h>

#include <chrono>

#include "node/commit_pipeline.h"
#include "replication/key_space.h"

#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <string>

namespace {

using stig::node::Storage;
using stig::replication::Persist;
using stig::replication::RecoveredEntries;

// A fresh directory under the test temp dir, removed at the end of the test.
class TempDir {
 public:
  TempDir() {
    std::random_device rd;
    path_ = std::filesystem::path(testing::TempDir()) / ("stig-storage-" + std::to_string(rd()) + std::to_string(rd()));
    std::filesystem::remove_all(path_);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  std::string path() const { return path_.string(); }

 private:
  std::filesystem::path path_;
};

std::unique_ptr<Storage> open_or_die(const std::string& dir) {
  std::string error;
  auto s = Storage::open(dir, &error);
  EXPECT_NE(s, nullptr) << error;
  return s;
}

RecoveredEntries load(Storage& s) {
  RecoveredEntries state;
  auto st = s.load_all(state);
  EXPECT_TRUE(st.ok) << st.message;
  return state;
}

using Entries = std::vector<std::pair<std::string, std::string>>;
using stig::replication::apply_persist;
using stig::replication::in_key_space;
using stig::replication::key_in_space;
using stig::replication::key_space_range;
using stig::replication::KeySpace;
using stig::replication::storage_key;

TEST(Storage, CreatesMissingDirAndStartsEmpty) {
  TempDir dir;
  auto s = open_or_die(dir.path() + "/nested/n1");
  ASSERT_NE(s, nullptr);
  EXPECT_TRUE(load(*s).entries.empty());
}

TEST(Storage, RoundTrip) {
  TempDir dir;
  auto s = open_or_die(dir.path());
  ASSERT_NE(s, nullptr);
  std::string binary("\0\x01\xff value", 10);
  ASSERT_TRUE(s->write({{"k/b", "2"}, {"k/a", "1"}, {"k/bin", binary}}).ok);
  EXPECT_EQ(load(*s).entries, (Entries{{"k/a", "1"}, {"k/b", "2"}, {"k/bin", binary}}));
}

TEST(Storage, ReopenRecoversEveryWrite) {
  TempDir dir;
  {
    auto s = open_or_die(dir.path());
    ASSERT_NE(s, nullptr);
    for (int i = 0; i < 100; ++i)
      ASSERT_TRUE(s->write({{"key" + std::to_string(i), "value" + std::to_string(i)}}).ok);
    ASSERT_TRUE(s->write({{"key7", "overwritten"}}).ok);
  }
  auto s = open_or_die(dir.path());
  ASSERT_NE(s, nullptr);
  auto state = load(*s);
  ASSERT_EQ(state.entries.size(), 100u);
  std::map<std::string, std::string> m(state.entries.begin(), state.entries.end());
  EXPECT_EQ(m["key0"], "value0");
  EXPECT_EQ(m["key99"], "value99");
  EXPECT_EQ(m["key7"], "overwritten");
}

TEST(Storage, EraseRemovesKeyAndSurvivesReopen) {
  TempDir dir;
  {
    auto s = open_or_die(dir.path());
    ASSERT_NE(s, nullptr);
    ASSERT_TRUE(s->write({{"a", "1"}, {"b", "2"}, {"c", "3"}}).ok);
    Persist erase_b{"b", "", true};
    ASSERT_TRUE(s->write({erase_b}).ok);
    EXPECT_EQ(load(*s).entries, (Entries{{"a", "1"}, {"c", "3"}}));
    // Erasing a missing key is not an error.
    ASSERT_TRUE(s->write({Persist{"zzz", "", true}}).ok);
  }
  auto s = open_or_die(dir.path());
  ASSERT_NE(s, nullptr);
  EXPECT_EQ(load(*s).entries, (Entries{{"a", "1"}, {"c", "3"}}));
}

// Range erase (log compaction) removes [key, range_end) and nothing else,
// survives a reopen, and means the same in RocksDB as in apply_persist(),
// which the simulator's disk and the tests' disks use.
TEST(Storage, RangeEraseMatchesTheInMemoryModel) {
  TempDir dir;
  const auto [log_begin, log_end] = key_space_range(KeySpace::kRaftLog);
  std::vector<Persist> writes = {{storage_key(KeySpace::kLazyKey, "r:a"), "1"},
                                 {storage_key(KeySpace::kRaftLog, "0001"), "e1"},
                                 {storage_key(KeySpace::kRaftLog, "0002"), "e2"},
                                 {storage_key(KeySpace::kRaftLog, "0003"), "e3"},
                                 {storage_key(KeySpace::kMeta, "/dot_counter"), "9"},
                                 // compact the log up to entry 3 (exclusive), then drop the rest
                                 Persist{storage_key(KeySpace::kRaftLog, "0001"), "", true,
                                         storage_key(KeySpace::kRaftLog, "0003")},
                                 {storage_key(KeySpace::kRaftLog, "0004"), "e4"}};
  std::map<std::string, std::string> model;
  for (const auto& w : writes) apply_persist(model, w);
  EXPECT_EQ(model.count(storage_key(KeySpace::kRaftLog, "0002")), 0u);
  EXPECT_EQ(model.count(storage_key(KeySpace::kRaftLog, "0003")), 1u);
  {
    auto s = open_or_die(dir.path());
    ASSERT_NE(s, nullptr);
    ASSERT_TRUE(s->write(writes).ok);
    ASSERT_TRUE(s->write({Persist{log_begin, "", true, log_end}, {storage_key(KeySpace::kRaftLog, "0005"), "e5"}}).ok);
  }
  apply_persist(model, Persist{log_begin, "", true, log_end});
  apply_persist(model, {storage_key(KeySpace::kRaftLog, "0005"), "e5"});
  auto s = open_or_die(dir.path());
  ASSERT_NE(s, nullptr);
  EXPECT_EQ(load(*s).entries, Entries(model.begin(), model.end()));
  EXPECT_EQ(model.size(), 3u);  // the lazy key, the dot counter, the new entry 5
}

TEST(KeySpace, RangesHoldExactlyTheirKeys) {
  for (KeySpace space : {KeySpace::kLazyKey, KeySpace::kGrave, KeySpace::kMeta, KeySpace::kRaftLog,
                         KeySpace::kRaftState, KeySpace::kStateMachine, KeySpace::kSnapshot}) {
    const auto [begin, end] = key_space_range(space);
    const std::string inside = storage_key(space, std::string(3, '\xff'));
    EXPECT_TRUE(in_key_space(inside, space));
    EXPECT_LE(begin, storage_key(space, ""));
    EXPECT_LT(inside, end);
    EXPECT_EQ(key_in_space(inside), std::string(3, '\xff'));
  }
  EXPECT_FALSE(in_key_space("", KeySpace::kMeta));
  EXPECT_FALSE(in_key_space(storage_key(KeySpace::kGrave, "r:k"), KeySpace::kLazyKey));
}

TEST(Storage, BatchAppliesInOrder) {
  TempDir dir;
  auto s = open_or_die(dir.path());
  ASSERT_NE(s, nullptr);
  // put, erase, put again of one key inside one batch: the last one wins.
  ASSERT_TRUE(s->write({{"k", "1"}, {"k", "", true}, {"k", "3"}, {"gone", "x"}, {"gone", "", true}}).ok);
  EXPECT_EQ(load(*s).entries, (Entries{{"k", "3"}}));
}

TEST(Storage, GroupCommitWritesEveryGroupInOrder) {
  TempDir dir;
  {
    auto s = open_or_die(dir.path());
    ASSERT_NE(s, nullptr);
    std::vector<std::vector<Persist>> groups;
    groups.push_back({{"a", "1"}, {"b", "1"}});
    groups.push_back({});
    groups.push_back({{"a", "2"}, {"b", "", true}});
    ASSERT_TRUE(s->write_groups(groups).ok);
    ASSERT_TRUE(s->write_groups({}).ok);
    ASSERT_TRUE(s->write({}).ok);
  }
  auto s = open_or_die(dir.path());
  ASSERT_NE(s, nullptr);
  EXPECT_EQ(load(*s).entries, (Entries{{"a", "2"}}));
}

TEST(Storage, SecondOpenOfSameDirFailsWithClearError) {
  TempDir dir;
  auto first = open_or_die(dir.path());
  ASSERT_NE(first, nullptr);
  std::string error;
  auto second = Storage::open(dir.path(), &error);
  EXPECT_EQ(second, nullptr);
  EXPECT_NE(error.find("cannot open data dir"), std::string::npos) << error;
  EXPECT_EQ(error.find('\n'), std::string::npos) << "one line: " << error;
}

TEST(Storage, DataDirThatIsAFileFailsWithClearError) {
  TempDir dir;
  std::filesystem::create_directories(dir.path());
  const std::string file = dir.path() + "/not-a-dir";
  std::ofstream(file) << "x";
  std::string error;
  auto s = Storage::open(file, &error);
  EXPECT_EQ(s, nullptr);
  EXPECT_NE(error.find("cannot open data dir '" + file + "'"), std::string::npos) << error;
}

// --- CommitPipeline ---------------------------------------------------------

using stig::node::CommitPipeline;
using stig::replication::Output;

// An output identified by one reply token, persisting `keys` (value = token).
Output make_output(uint64_t token, std::vector<std::string> keys) {
  static uint64_t next_id = 1;  // ids only need to increase
  Output out;
  out.id = next_id++;
  for (auto& k : keys) out.persist.push_back(Persist{std::move(k), std::to_string(token), false});
  out.replies.push_back({token, {}});
  return out;
}

// Runs the io loop until the pipeline is idle (or a generous deadline passes).
void run_until_idle(boost::asio::io_context& io, const CommitPipeline& p) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (!p.idle() && std::chrono::steady_clock::now() < deadline) {
    io.restart();
    io.run_for(std::chrono::milliseconds(5));
  }
  ASSERT_TRUE(p.idle());
}

struct PipelineFixture {
  TempDir dir;
  std::unique_ptr<Storage> storage = open_or_die(dir.path());
  boost::asio::io_context io;
  std::vector<uint64_t> released;
  std::vector<size_t> durable_keys_at_release;  // entries on disk when each was released
  std::vector<uint64_t> persisted;                // Persisted inputs the core would get
  bool failed = false;
  std::unique_ptr<CommitPipeline> pipeline;

  explicit PipelineFixture(std::chrono::microseconds gather = {}) {
    pipeline = std::make_unique<CommitPipeline>(
        io, *storage,
        [this](stig::runtime::ReleaseQueue::Released& out) {
          for (const auto& r : out.replies) {
            released.push_back(r.token);
            durable_keys_at_release.push_back(load(*storage).entries.size());
          }
        },
        [this](uint64_t through) { persisted.push_back(through); },
        [this](const stig::node::StorageStatus&) { failed = true; }, gather);
  }
};

TEST(CommitPipeline, OutputWithoutPersistIsReleasedAtOnce) {
  PipelineFixture f;
  f.pipeline->submit(make_output(1, {}));
  EXPECT_EQ(f.released, (std::vector<uint64_t>{1}));
  EXPECT_TRUE(f.pipeline->idle());
  EXPECT_EQ(f.pipeline->syncs(), 0u);
}

TEST(CommitPipeline, ReleasesOnlyAfterPersistAndInOrder) {
  PipelineFixture f;
  f.pipeline->submit(make_output(1, {"a"}));
  f.pipeline->submit(make_output(2, {}));  // behind an unsynced write: must wait
  f.pipeline->submit(make_output(3, {"b", "c"}));
  EXPECT_TRUE(f.released.empty());
  run_until_idle(f.io, *f.pipeline);
  EXPECT_EQ(f.released, (std::vector<uint64_t>{1, 2, 3}));
  // Each release saw its own persists (and all earlier ones) on disk already.
  ASSERT_EQ(f.durable_keys_at_release.size(), 3u);
  EXPECT_GE(f.durable_keys_at_release[0], 1u);
  EXPECT_GE(f.durable_keys_at_release[1], 1u);
  EXPECT_EQ(f.durable_keys_at_release[2], 3u);
  EXPECT_FALSE(f.failed);
}

TEST(CommitPipeline, WritesQueuedBehindAnInFlightWriteShareOneSync) {
  PipelineFixture f;
  f.pipeline->submit(make_output(0, {"first"}));  // starts a write at once
  for (uint64_t t = 1; t <= 50; ++t) f.pipeline->submit(make_output(t, {"k" + std::to_string(t)}));
  run_until_idle(f.io, *f.pipeline);
  ASSERT_EQ(f.released.size(), 51u);
  for (uint64_t t = 0; t <= 50; ++t) EXPECT_EQ(f.released[t], t);
  EXPECT_EQ(f.pipeline->syncs(), 2u);  // the first write, then one group of 50
  EXPECT_EQ(f.pipeline->persists_written(), 51u);
  ASSERT_EQ(f.persisted.size(), 2u);  // the core hears of each sync
  EXPECT_LT(f.persisted[0], f.persisted[1]);
  EXPECT_EQ(load(*f.storage).entries.size(), 51u);
}

}  // namespace

namespace {

TEST(CommitPipeline, AfterAGroupOfSeveralTheNextGathersForTheWindow) {
  PipelineFixture f(std::chrono::milliseconds(300));
  f.pipeline->submit(make_output(0, {"first"}));  // idle pipeline: written at once
  f.pipeline->submit(make_output(1, {"a"}));
  f.pipeline->submit(make_output(2, {"b"}));  // 1 and 2: one group of two
  run_until_idle(f.io, *f.pipeline);
  ASSERT_EQ(f.pipeline->syncs(), 2u);
  // Within the window after that group, writes wait and then share one sync.
  f.pipeline->submit(make_output(3, {"c"}));
  f.io.restart();
  f.io.run_for(std::chrono::milliseconds(30));
  EXPECT_EQ(f.released, (std::vector<uint64_t>{0, 1, 2}));  // gathering, not yet written
  f.pipeline->submit(make_output(4, {"d"}));
  run_until_idle(f.io, *f.pipeline);
  EXPECT_EQ(f.released, (std::vector<uint64_t>{0, 1, 2, 3, 4}));
  EXPECT_EQ(f.pipeline->syncs(), 3u);
  EXPECT_EQ(f.durable_keys_at_release.back(), 5u);
}

TEST(CommitPipeline, ALoneWriterNeverWaitsForTheWindow) {
  PipelineFixture f(std::chrono::seconds(30));
  for (uint64_t t = 0; t < 3; ++t) {
    f.pipeline->submit(make_output(t, {"k" + std::to_string(t)}));  // one output per group
    run_until_idle(f.io, *f.pipeline);  // would time out (20 s) if it waited 30 s
  }
  EXPECT_EQ(f.released, (std::vector<uint64_t>{0, 1, 2}));
  EXPECT_EQ(f.pipeline->syncs(), 3u);
}

TEST(CommitPipeline, OutputsThatNeedNoSyncAreWrittenWithoutOne) {
  PipelineFixture f;
  // What the core emits for a replica merging a push nobody waits for.
  auto written_only = [](Output out) {
    out.sync = false;
    for (auto& r : out.replies) r.after = stig::replication::ReleaseAfter::kWritten;
    return out;
  };
  Output unsynced = written_only(make_output(1, {"merged"}));
  f.pipeline->submit(std::move(unsynced));
  run_until_idle(f.io, *f.pipeline);
  EXPECT_EQ(f.released, (std::vector<uint64_t>{1}));
  EXPECT_EQ(f.pipeline->syncs(), 0u);
  EXPECT_EQ(load(*f.storage).entries.size(), 1u);  // written all the same
  // One output that needs a sync makes its whole group wait for one.
  f.pipeline->submit(make_output(3, {"y"}));  // starts a synced write at once
  f.pipeline->submit(written_only(make_output(2, {"x"})));
  f.pipeline->submit(make_output(4, {"z"}));
  run_until_idle(f.io, *f.pipeline);
  EXPECT_EQ(f.released, (std::vector<uint64_t>{1, 3, 2, 4}));
  EXPECT_EQ(f.pipeline->syncs(), 2u);
}

}  // namespace
