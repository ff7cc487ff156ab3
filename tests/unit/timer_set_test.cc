// TimerSet: deadlines pop in (time, kind, id) order; re-arming moves a timer.
#include <gtest/gtest.h>

#include "replication/replica.h"
#include "replication/timer_set.h"
#include "tests/unit/test_cluster.h"

namespace stig::replication {
namespace {

TEST(TimerSet, PopsDueTimersInDeadlineThenKindThenIdOrder) {
  TimerSet t;
  EXPECT_EQ(t.next(), kNever);
  t.arm(TimerKind::kWriteDeadline, 7, 100);
  t.arm(TimerKind::kWriteDeadline, 3, 100);
  t.arm(TimerKind::kHeartbeat, 0, 100);
  t.arm(TimerKind::kGraveExpiry, 0, 50);
  EXPECT_EQ(t.next(), 50);
  EXPECT_FALSE(t.pop_due(49));
  std::vector<std::pair<TimerKind, uint64_t>> order;
  while (auto timer = t.pop_due(100)) order.emplace_back(timer->kind, timer->id);
  EXPECT_EQ(order, (std::vector<std::pair<TimerKind, uint64_t>>{{TimerKind::kGraveExpiry, 0},
                                                                 {TimerKind::kHeartbeat, 0},
                                                                 {TimerKind::kWriteDeadline, 3},
                                                                 {TimerKind::kWriteDeadline, 7}}));
  EXPECT_EQ(t.size(), 0u);
  EXPECT_EQ(t.next(), kNever);
}

TEST(TimerSet, ArmingAgainMovesAndCancelDisarms) {
  TimerSet t;
  t.arm(TimerKind::kBatchExpiry, 1, 500);
  t.arm(TimerKind::kBatchExpiry, 1, 200);
  EXPECT_EQ(t.size(), 1u);
  EXPECT_EQ(t.deadline(TimerKind::kBatchExpiry, 1), 200);
  EXPECT_TRUE(t.cancel(TimerKind::kBatchExpiry, 1));
  EXPECT_FALSE(t.cancel(TimerKind::kBatchExpiry, 1));
  EXPECT_FALSE(t.deadline(TimerKind::kBatchExpiry, 1));
  EXPECT_EQ(t.next(), kNever);
}

// wake_at is the earliest armed deadline, so expiries happen on time even
// on a node that hears nothing: here a one-node cluster (no heartbeats).
TEST(TimerSet, ReplicaWakesForEveryExpiryWithoutOtherInput) {
  Config cfg;
  cfg.tombstone_grace_ms = 60000;
  cfg.dedup_idle_ms = 120000;
  TestCluster c(1, cfg);
  auto put = c.put("n1", "k", "v");
  ASSERT_EQ(c.del("n1", "k", put.put().context()).error(), pb::OK);  // collected at once: a grave
  const MonoTime deleted_at = c.now_;
  ASSERT_EQ(c.disk_["n1"].count("gr:k"), 1u) << "the collected key left no grave";
  // Woken only when it asks (Raft's timers ask too), the node forgets its
  // grave once its grace is over, and then the idle client.
  auto wake_until = [&](MonoTime until) {
    for (Output out = c.node("n1").take_output(); out.wake_at <= until; out = c.node("n1").take_output()) {
      EXPECT_GT(out.wake_at, deleted_at);
      c.now_ = out.wake_at;
      c.step("n1", Tick{});
    }
  };
  wake_until(deleted_at + cfg.tombstone_grace_ms - 1);
  EXPECT_EQ(c.disk_["n1"].count("gr:k"), 1u) << "the grave went before its grace was over";
  wake_until(deleted_at + cfg.tombstone_grace_ms);
  EXPECT_EQ(c.disk_["n1"].count("gr:k"), 0u) << "the grave outlived its grace";
  EXPECT_EQ(c.node("n1").retry_cache_clients(), 1u);
  wake_until(deleted_at + cfg.dedup_idle_ms);
  EXPECT_EQ(c.node("n1").retry_cache_clients(), 0u);
}

}  // namespace
}  // namespace stig::replication
