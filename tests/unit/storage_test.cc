// node::Storage: RocksDB round trip, recovery after reopen, erase, group commit.
#include "node/storage.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <string>

namespace {

using stig::node::Storage;
using stig::replication::Persist;
using stig::replication::RecoveredState;

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

RecoveredState load(Storage& s) {
  RecoveredState state;
  auto st = s.load_all(state);
  EXPECT_TRUE(st.ok) << st.message;
  return state;
}

using Entries = std::vector<std::pair<std::string, std::string>>;

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

}  // namespace
