// Recovery: the core reads its key spaces back through RecoveredState::scan
// and refuses what it cannot trust, with one line saying what.
#include <stdexcept>
#include <string>

#include <gtest/gtest.h>

#include "replication/key_space.h"
#include "replication/replica.h"
#include "tests/unit/test_cluster.h"

namespace stig::replication {
namespace {

// A store that counts what the core read and can fail a scan.
struct CountingState final : RecoveredState {
  RecoveredEntries inner;
  mutable size_t visited = 0;
  bool fail = false;
  Status scan(std::string_view begin, std::string_view end, const Visitor& visit) const override {
    if (fail) return Status::corruption("reading '/data/n1' failed: IO error");
    return inner.scan(begin, end, [&](std::string_view k, std::string_view v) {
      ++visited;
      return visit(k, v);
    });
  }
};

Config single_node() {
  Config c;
  c.self = "n1";
  c.self_address = "n1:0";
  return c;
}

std::string refusal(const RecoveredState& state) {
  try {
    Replica r(single_node(), 1, state);
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "";
}

TEST(Recovery, WhatWasWrittenIsReadBack) {
  TestCluster c(1);
  ASSERT_EQ(c.put("n1", "order-1", "shipped").error(), pb::OK);
  ASSERT_EQ(c.put("n1", "order-2", "open").error(), pb::OK);
  c.crash("n1");
  c.start("n1");
  EXPECT_EQ(values_of(c.get("n1", "order-1")), std::vector<std::string>{"shipped"});
  EXPECT_EQ(c.node("n1").live_keys(), 2u);
  EXPECT_GE(c.node("n1").dot_counter(), 2u);
}

TEST(Recovery, UnknownKeysAreRefusedNamingTheKey) {
  CountingState s;
  s.inner.entries = {{"k", ""}, {std::string("\x01weird", 6), "x"}};
  std::sort(s.inner.entries.begin(), s.inner.entries.end());
  EXPECT_NE(refusal(s).find("unknown key in storage: '\\x01weird'"), std::string::npos) << refusal(s);
  s.inner.entries = {{"zzz", "1"}};
  EXPECT_NE(refusal(s).find("unknown key in storage: 'zzz'"), std::string::npos);
  s.inner.entries = {{storage_key(KeySpace::kMeta, "/other"), "1"}};
  EXPECT_NE(refusal(s).find("unknown key in storage"), std::string::npos);
}

TEST(Recovery, CorruptEntriesAreRefused) {
  CountingState s;
  s.inner.entries = {{storage_key(KeySpace::kMeta, "/dot_counter"), "12x"}};
  EXPECT_NE(refusal(s).find("stored dot counter is corrupt: '12x'"), std::string::npos);
  s.inner.entries = {{storage_key(KeySpace::kGrave, "r:gone"), "\xff\xff\xff"}};
  EXPECT_NE(refusal(s).find("stored tombstone grave is corrupt"), std::string::npos);
}

TEST(Recovery, AStoreThatCannotBeReadIsRefused) {
  CountingState s;
  s.fail = true;
  EXPECT_EQ(refusal(s), "reading '/data/n1' failed: IO error");
}

TEST(Recovery, EachKeyIsReadOnce) {
  TestCluster c(1);
  for (int i = 0; i < 50; ++i) ASSERT_EQ(c.put("n1", "k" + std::to_string(i), "v").error(), pb::OK);
  CountingState s;
  for (const auto& [k, v] : c.disk_["n1"]) s.inner.entries.emplace_back(k, v);
  Replica r(single_node(), 1, s);
  EXPECT_EQ(r.live_keys(), 50u);
  EXPECT_EQ(s.visited, s.inner.entries.size());
}

}  // namespace
}  // namespace stig::replication
