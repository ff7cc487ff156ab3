// runtime::ReleaseQueue: what may leave a node when, for every runtime.
#include "runtime/release_queue.h"

#include <gtest/gtest.h>

namespace stig::runtime {
namespace {

using replication::Output;
using replication::Persist;
using replication::ReleaseAfter;

Output output(uint64_t id, int persists, bool sync, std::vector<std::pair<std::string, ReleaseAfter>> replies) {
  Output o;
  o.id = id;
  for (int i = 0; i < persists; ++i) o.persist.push_back(Persist{"k" + std::to_string(id) + "." + std::to_string(i), "v"});
  o.sync = sync;
  for (auto& [text, after] : replies) {
    replication::Reply r;
    r.token = id;
    r.response.set_error_message(text);
    r.after = after;
    o.replies.push_back(std::move(r));
  }
  return o;
}

std::vector<std::string> texts(const ReleaseQueue::Released& r) {
  std::vector<std::string> out;
  for (const auto& reply : r.replies) out.push_back(reply.response.error_message());
  return out;
}

TEST(ReleaseQueue, SyncedRepliesWaitForTheSyncOfEveryEarlierPersist) {
  ReleaseQueue q;
  q.push(output(1, 1, true, {{"a", ReleaseAfter::kSynced}}));
  EXPECT_TRUE(texts(q.take_released()).empty());
  auto w = q.next_write();
  ASSERT_TRUE(w);
  EXPECT_TRUE(w->sync);
  EXPECT_EQ(w->persists, 1u);
  // While the write is in flight, the next output waits for it and for its own.
  q.push(output(2, 2, true, {{"b", ReleaseAfter::kSynced}}));
  EXPECT_FALSE(q.next_write());  // one write at a time
  q.write_done(w->id);
  EXPECT_EQ(texts(q.take_released()), std::vector<std::string>{"a"});
  EXPECT_EQ(q.synced_through(), 1u);
  auto w2 = q.next_write();
  ASSERT_TRUE(w2);
  EXPECT_EQ(w2->groups.size(), 1u);
  q.write_done(w2->id);
  EXPECT_EQ(texts(q.take_released()), std::vector<std::string>{"b"});
  EXPECT_EQ(q.synced_through(), 2u);
  EXPECT_TRUE(q.idle());
}

TEST(ReleaseQueue, OutputsArrivingDuringAWriteShareTheNextOne) {
  ReleaseQueue q;
  q.push(output(1, 1, true, {}));
  auto w = q.next_write();
  for (uint64_t id = 2; id <= 10; ++id) q.push(output(id, 1, true, {{std::to_string(id), ReleaseAfter::kSynced}}));
  q.write_done(w->id);
  auto group = q.next_write();
  ASSERT_TRUE(group);
  EXPECT_EQ(group->groups.size(), 9u);
  EXPECT_EQ(group->through_output, 10u);
  q.write_done(group->id);
  EXPECT_EQ(texts(q.take_released()).size(), 9u);
}

TEST(ReleaseQueue, AtOnceItemsOvertakeAndWrittenItemsSkipTheSync) {
  ReleaseQueue q;
  q.push(output(1, 1, false, {{"written", ReleaseAfter::kWritten}, {"now", ReleaseAfter::kAtOnce}}));
  EXPECT_EQ(texts(q.take_released()), std::vector<std::string>{"now"});
  auto w = q.next_write();
  ASSERT_TRUE(w);
  EXPECT_FALSE(w->sync);  // nothing asked for one
  q.write_done(w->id);
  EXPECT_EQ(texts(q.take_released()), std::vector<std::string>{"written"});
  EXPECT_EQ(q.synced_through(), 0u);
  EXPECT_TRUE(q.idle());
}

TEST(ReleaseQueue, ASyncedItemAfterUnsyncedWritesGetsASyncOnlyWrite) {
  ReleaseQueue q;
  q.push(output(1, 1, false, {}));
  auto w = q.next_write();
  q.write_done(w->id);
  EXPECT_FALSE(q.next_write());
  // No persists of its own, but it depends on output 1's being synced.
  q.push(output(2, 0, true, {{"read", ReleaseAfter::kSynced}}));
  EXPECT_TRUE(texts(q.take_released()).empty());
  auto sync = q.next_write();
  ASSERT_TRUE(sync);
  EXPECT_TRUE(sync->sync);
  EXPECT_TRUE(sync->groups.empty());
  q.write_done(sync->id);
  EXPECT_EQ(texts(q.take_released()), std::vector<std::string>{"read"});
}

TEST(ReleaseQueue, OrderIsKeptBehindASync) {
  ReleaseQueue q;
  q.push(output(1, 1, true, {{"first", ReleaseAfter::kSynced}}));
  q.push(output(2, 0, false, {{"second", ReleaseAfter::kWritten}}));
  auto w = q.next_write();
  EXPECT_TRUE(texts(q.take_released()).empty());  // "second" may not overtake "first"
  q.write_done(w->id);
  EXPECT_EQ(texts(q.take_released()), (std::vector<std::string>{"first", "second"}));
}

TEST(ReleaseQueue, ItemsWithoutPersistsBehindNothingLeaveAtOnce) {
  ReleaseQueue q;
  q.push(output(1, 0, true, {{"get", ReleaseAfter::kSynced}}));
  EXPECT_EQ(texts(q.take_released()), std::vector<std::string>{"get"});
  EXPECT_FALSE(q.next_write());
}

TEST(ReleaseQueue, ClearForgetsEverythingUnreleased) {
  ReleaseQueue q;
  q.push(output(5, 1, true, {{"lost", ReleaseAfter::kSynced}}));
  q.clear();
  EXPECT_TRUE(q.idle());
  q.push(output(1, 0, true, {{"new life", ReleaseAfter::kSynced}}));
  EXPECT_EQ(texts(q.take_released()), std::vector<std::string>{"new life"});
}

}  // namespace
}  // namespace stig::runtime
