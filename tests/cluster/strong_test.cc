// The strong path (Raft) against real stigd processes: kill -9 of the
// leader, a partitioned minority, fencing tokens, a linearizability check of
// a history recorded under partitions and crashes, and bad input.
//
// The tests speak the client protocol directly (Request.strong) through
// process_cluster's StrongCaller, which follows NOT_LEADER to the leader.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <iostream>
#include <map>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "process_cluster.h"
#include "sim/linearizability.h"

namespace stig::testing {
namespace {

namespace pb = stigmergy::v1;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

pb::StrongRequest put_req(const std::string& key, const std::string& value) {
  pb::StrongRequest r;
  r.mutable_put()->set_key(key);
  r.mutable_put()->set_value(value);
  return r;
}

pb::StrongRequest get_req(const std::string& key) {
  pb::StrongRequest r;
  r.mutable_get()->set_key(key);
  return r;
}

pb::StrongRequest cas_req(const std::string& key, const std::string& expected, const std::string& value) {
  pb::StrongRequest r;
  r.mutable_cas()->set_key(key);
  r.mutable_cas()->set_expected_value(expected);
  r.mutable_cas()->set_new_value(value);
  return r;
}

pb::StrongRequest grant_req(int64_t ttl_ms) {
  pb::StrongRequest r;
  r.mutable_session_grant()->set_ttl_ms(ttl_ms);
  return r;
}

pb::StrongRequest acquire_req(const std::string& name, uint64_t session, int64_t wait_ms) {
  pb::StrongRequest r;
  r.mutable_lock_acquire()->set_name(name);
  r.mutable_lock_acquire()->set_session_id(session);
  r.mutable_lock_acquire()->set_wait_ms(wait_ms);
  return r;
}

pb::StrongRequest release_req(const std::string& name, uint64_t session, uint64_t token) {
  pb::StrongRequest r;
  r.mutable_lock_release()->set_name(name);
  r.mutable_lock_release()->set_session_id(session);
  r.mutable_lock_release()->set_token(token);
  return r;
}

pb::StrongRequest fenced_put(const std::string& key, const std::string& value, const std::string& lock, uint64_t token) {
  pb::StrongRequest r = put_req(key, value);
  r.mutable_put()->mutable_fence()->set_lock(lock);
  r.mutable_put()->mutable_fence()->set_token(token);
  return r;
}

std::string describe(const StrongCaller::Result& r) {
  if (!r.response) return "no answer after " + std::to_string(r.attempts) + " attempt(s)";
  return pb::ErrorCode_Name(r.response->error()) + ": " + r.response->error_message();
}

bool ok(const StrongCaller::Result& r) { return r.response && r.response->error() == pb::OK; }

// (a) kill -9 of the leader: a new leader is elected, strong writes resume,
// and every write acknowledged before the kill is still there.
TEST(Strong, KillLeaderElectsANewLeaderAndKeepsAcknowledgedWrites) {
  ProcessCluster cluster(3);
  const int leader = wait_leader(cluster);
  ASSERT_GE(leader, 0) << "no leader elected within 10 s";
  StrongCaller caller(cluster, "kill-leader");
  std::map<std::string, std::string> acked;
  for (int i = 0; i < 20; ++i) {
    const std::string key = "k" + std::to_string(i), value = "before-" + std::to_string(i);
    auto r = caller.call(put_req(key, value), 3s);
    ASSERT_TRUE(ok(r)) << key << ": " << describe(r);
    acked[key] = value;
  }
  const auto killed_at = Clock::now();
  cluster.kill9(leader);
  auto r = caller.call(put_req("after", "x"), 5s);
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - killed_at).count();
  ASSERT_TRUE(ok(r)) << "no strong write succeeded within 5 s of killing the leader " << cluster.id(leader) << ": "
                     << describe(r);
  EXPECT_NE(r.node, leader);
  acked["after"] = "x";
  std::cout << "[ strong   ] first write " << ms << " ms after kill -9 of leader " << cluster.id(leader) << "\n";
  const int next = wait_leader(cluster, 5s);
  ASSERT_GE(next, 0);
  EXPECT_NE(next, leader);
  for (const auto& [key, value] : acked) {
    auto g = caller.call(get_req(key), 3s);
    ASSERT_TRUE(ok(g)) << key << ": " << describe(g);
    EXPECT_TRUE(g.response->strong().found()) << key << " was acknowledged but is gone";
    EXPECT_EQ(g.response->strong().kv().value(), value) << key;
  }
  // The killed node comes back and catches up.
  cluster.start(leader);
  ASSERT_TRUE(cluster.wait_ready(leader));
  auto w = caller.call(put_req("rejoined", "y"), 5s);
  EXPECT_TRUE(ok(w)) << describe(w);
}

// (b) An isolated leader is a minority: a write sent to it is never
// acknowledged, and after the heal it is not there.
TEST(Strong, MinoritySideOfAPartitionNeverCommits) {
  ProcessCluster cluster(3);
  const int old_leader = wait_leader(cluster);
  ASSERT_GE(old_leader, 0);
  StrongCaller caller(cluster, "minority-main");
  ASSERT_TRUE(ok(caller.call(put_req("shared", "before"), 3s)));

  std::vector<std::string> others;
  for (int i = 0; i < cluster.size(); ++i) {
    if (i != old_leader) others.push_back(cluster.id(i));
  }
  auto admin = cluster.client(old_leader);
  ASSERT_TRUE(admin.admin_partition(others));

  // Straight to the isolated node, no redirect: whatever it says, not OK.
  RawConnection direct(port_of(cluster.endpoint(old_leader)));
  ASSERT_TRUE(direct.connected());
  pb::Request req;
  req.set_client_id("minority-writer");
  req.set_seq(1);
  *req.mutable_strong() = put_req("minority", "lost");
  auto resp = direct.call(req, 1500ms);
  bool minority_acked = resp && resp->error() == pb::OK;
  std::cout << "[ strong   ] isolated old leader answered a write: "
            << (resp ? pb::ErrorCode_Name(resp->error()) + ": " + resp->error_message() : std::string("nothing in 1.5 s"))
            << "\n";
  EXPECT_FALSE(minority_acked) << "the isolated node acknowledged a strong write";
  if (resp) {
    EXPECT_TRUE(resp->error() == pb::NOT_LEADER || resp->error() == pb::OUTCOME_UNKNOWN ||
                resp->error() == pb::UNAVAILABLE)
        << pb::ErrorCode_Name(resp->error()) << ": " << resp->error_message();
  }
  // The majority side elects a leader of its own and commits.
  auto w = caller.call(put_req("shared", "majority"), 5s);
  ASSERT_TRUE(ok(w)) << describe(w);
  EXPECT_NE(w.node, old_leader);
  // Another write to the isolated node, now surely deposed (check-quorum).
  req.set_seq(2);
  *req.mutable_strong() = put_req("minority", "lost-2");
  auto resp2 = direct.call(req, 1000ms);
  EXPECT_FALSE(resp2 && resp2->error() == pb::OK) << "the isolated node acknowledged a second strong write";
  minority_acked = minority_acked || (resp2 && resp2->error() == pb::OK);

  ASSERT_TRUE(admin.admin_heal());
  // After the heal, through the leader (the old one has rejoined as a follower).
  auto g = caller.call(get_req("minority"), 5s);
  ASSERT_TRUE(ok(g)) << describe(g);
  if (!minority_acked) {
    EXPECT_FALSE(g.response->strong().found()) << "an unacknowledged minority write committed";
  }
  auto s = caller.call(get_req("shared"), 3s);
  ASSERT_TRUE(ok(s)) << describe(s);
  EXPECT_EQ(s.response->strong().kv().value(), "majority");
  // The old leader serves again: as follower it redirects, and a read through it is current.
  for (int tries = 0; tries < 50; ++tries) {
    auto v = raft_view(port_of(cluster.endpoint(old_leader)));
    if (v && v->role == "follower") break;
    std::this_thread::sleep_for(100ms);
  }
  auto v = raft_view(port_of(cluster.endpoint(old_leader)));
  ASSERT_TRUE(v);
  EXPECT_NE(v->role, "candidate");
}

// (c) A fencing token of a holder that released (or expired) is refused.
TEST(Strong, StaleFencingTokenIsRefused) {
  ProcessCluster cluster(3);
  ASSERT_GE(wait_leader(cluster), 0);
  StrongCaller a(cluster, "fence-a"), b(cluster, "fence-b");

  auto ga = a.call(grant_req(30000), 3s);
  ASSERT_TRUE(ok(ga)) << describe(ga);
  const uint64_t sa = ga.response->strong().session_id();
  auto la = a.call(acquire_req("job", sa, 1000), 3s);
  ASSERT_TRUE(ok(la)) << describe(la);
  const uint64_t ta = la.response->strong().token();
  ASSERT_TRUE(ok(a.call(fenced_put("out", "a1", "job", ta), 3s)));
  auto ra = a.call(release_req("job", sa, ta), 3s);
  ASSERT_TRUE(ok(ra)) << describe(ra);

  auto gb = b.call(grant_req(30000), 3s);
  ASSERT_TRUE(ok(gb)) << describe(gb);
  const uint64_t sb = gb.response->strong().session_id();
  auto lb = b.call(acquire_req("job", sb, 1000), 3s);
  ASSERT_TRUE(ok(lb)) << describe(lb);
  const uint64_t tb = lb.response->strong().token();
  EXPECT_GT(tb, ta);

  auto stale = a.call(fenced_put("out", "a2", "job", ta), 3s);
  ASSERT_TRUE(stale.response) << describe(stale);
  EXPECT_EQ(stale.response->error(), pb::CONFLICT) << describe(stale);
  auto fresh = b.call(fenced_put("out", "b1", "job", tb), 3s);
  EXPECT_TRUE(ok(fresh)) << describe(fresh);
  auto g = b.call(get_req("out"), 3s);
  ASSERT_TRUE(ok(g));
  EXPECT_EQ(g.response->strong().kv().value(), "b1");

  // The same after an expiry: A's session runs out (no keepalive), B acquires.
  auto ge = a.call(grant_req(500), 3s);
  ASSERT_TRUE(ok(ge)) << describe(ge);
  const uint64_t se = ge.response->strong().session_id();
  auto le = a.call(acquire_req("job2", se, 1000), 3s);
  ASSERT_TRUE(ok(le)) << describe(le);
  const uint64_t te = le.response->strong().token();
  auto lb2 = b.call(acquire_req("job2", sb, 4000), 6s);  // granted once A's session expires
  ASSERT_TRUE(ok(lb2)) << describe(lb2);
  EXPECT_GT(lb2.response->strong().token(), te);
  auto stale2 = a.call(fenced_put("out2", "a", "job2", te), 3s);
  ASSERT_TRUE(stale2.response) << describe(stale2);
  EXPECT_EQ(stale2.response->error(), pb::CONFLICT) << describe(stale2);
}

// (d) A history of strong operations (put, CAS, linearizable get on a few
// keys, from several client threads) recorded against real stigd processes
// while the leader is partitioned away and nodes are killed with -9, checked
// for linearizability. Times are microseconds since the test started (the
// checker only compares them). An operation without a definite answer
// (none in time, or an error that does not say "not applied") is unknown.
TEST(Strong, HistoryUnderPartitionsAndCrashesIsLinearizable) {
  ProcessCluster cluster(3);
  ASSERT_GE(wait_leader(cluster), 0);
  const auto t0 = Clock::now();
  auto now_us = [&] { return std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - t0).count(); };
  const std::vector<std::string> keys = {"r0", "r1", "r2"};
  constexpr int kThreads = 4;
  std::mutex mu;
  std::vector<sim::StrongOp> history;
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> next_id{1};
  std::vector<std::thread> clients;
  for (int t = 0; t < kThreads; ++t) {
    clients.emplace_back([&, t] {
      StrongCaller caller(cluster, "lin-" + std::to_string(t));
      std::mt19937_64 rng(static_cast<uint64_t>(t) * 7919 + 1);
      std::map<std::string, std::string> seen;
      int n = 0;
      while (!stop.load()) {
        const std::string key = keys[rng() % keys.size()];
        const std::string value = "c" + std::to_string(t) + "-" + std::to_string(++n);
        const int pick = static_cast<int>(rng() % 10);
        sim::StrongOp op;
        op.id = next_id.fetch_add(1);
        op.process = "client-" + std::to_string(t);
        pb::StrongRequest req;
        if (pick < 4) {
          const std::string expected = seen.count(key) ? seen[key] : "none";
          req = cas_req(key, expected, value);
          op.description = "cas " + key + " " + expected + "->" + value;
          sim::TxnCompare c;
          c.key = key;
          c.target = sim::TxnCompare::Target::kValue;
          c.value = expected;
          op.compares.push_back(c);
          op.success.push_back({sim::TxnOp::Kind::kPut, key, value});
        } else if (pick < 7) {
          req = put_req(key, value);
          op.description = "put " + key + " " + value;
          op.success.push_back({sim::TxnOp::Kind::kPut, key, value});
        } else {
          req = get_req(key);
          op.description = "get " + key;
          op.success.push_back({sim::TxnOp::Kind::kGet, key, ""});
        }
        op.invoke = now_us();
        // Thread 0 gives up early and never retries an OUTCOME_UNKNOWN, so
        // the history holds operations of unknown outcome; the others retry
        // (same seq: at most once) for up to 2 s.
        auto r = t == 0 ? caller.call(req, 400ms, 400ms, false) : caller.call(req, 2s, 500ms);
        const int64_t done = now_us();
        if (r.response && r.response->error() == pb::OK) {
          op.outcome = sim::StrongOp::Outcome::kOk;
          op.complete = done;
          if (pick >= 7) {
            const auto& s = r.response->strong();
            sim::RegisterValue v;
            v.exists = s.found();
            if (v.exists) {
              v.value = s.kv().value();
              v.version = s.kv().version();
              seen[key] = v.value;
            }
            op.reads.push_back(v);
          } else {
            seen[key] = value;
          }
        } else if (r.response && r.response->error() == pb::CONFLICT && pick < 4) {
          op.outcome = sim::StrongOp::Outcome::kOk;  // the compare failed: the (empty) failure branch ran
          op.complete = done;
          op.succeeded = false;
          seen.erase(key);
        } else {
          op.outcome = sim::StrongOp::Outcome::kUnknown;  // may have been applied, any time after invoke
          op.complete = sim::StrongOp::kNeverReturned;
          if (r.response) op.description += " [" + pb::ErrorCode_Name(r.response->error()) + "]";
        }
        std::lock_guard<std::mutex> lock(mu);
        history.push_back(std::move(op));
      }
    });
  }

  // Nemesis: isolate the leader, heal; kill -9 the leader, restart; isolate
  // a follower, heal; kill -9 the leader again, restart.
  std::vector<std::string> timeline;
  auto others_of = [&](int i) {
    std::vector<std::string> ids;
    for (int j = 0; j < cluster.size(); ++j) {
      if (j != i) ids.push_back(cluster.id(j));
    }
    return ids;
  };
  std::this_thread::sleep_for(500ms);
  for (int round = 0; round < 4; ++round) {
    const int leader = wait_leader(cluster, 5s);
    if (leader < 0) {
      timeline.push_back("no leader before round " + std::to_string(round));
      continue;
    }
    if (round % 2 == 0) {
      const int victim = round == 0 ? leader : (leader + 1) % cluster.size();
      auto admin = cluster.client(victim);
      const bool parted = static_cast<bool>(admin.admin_partition(others_of(victim)));
      timeline.push_back(std::to_string(now_us() / 1000) + " ms: isolate " + cluster.id(victim) +
                         (victim == leader ? " (leader)" : " (follower)") + (parted ? "" : " FAILED"));
      std::this_thread::sleep_for(1500ms);
      const bool healed = static_cast<bool>(admin.admin_heal());
      timeline.push_back(std::to_string(now_us() / 1000) + " ms: heal" + (healed ? "" : " FAILED"));
    } else {
      cluster.kill9(leader);
      timeline.push_back(std::to_string(now_us() / 1000) + " ms: kill -9 " + cluster.id(leader) + " (leader)");
      std::this_thread::sleep_for(1000ms);
      cluster.start(leader);
      const bool ready = cluster.wait_ready(leader, 10s);
      timeline.push_back(std::to_string(now_us() / 1000) + " ms: restarted " + cluster.id(leader) +
                         (ready ? "" : " NOT READY"));
    }
    std::this_thread::sleep_for(700ms);
  }
  stop.store(true);
  for (auto& c : clients) c.join();

  size_t ok_ops = 0, unknown = 0;
  for (const auto& op : history) (op.outcome == sim::StrongOp::Outcome::kOk ? ok_ops : unknown)++;
  std::string tl;
  for (const auto& line : timeline) tl += "  " + line + "\n";
  std::cout << "[ strong   ] " << history.size() << " ops (" << ok_ops << " ok, " << unknown << " unknown)\n" << tl;
  ASSERT_GT(ok_ops, 50u) << "too few operations completed to say anything\n" << tl;
  const auto result = sim::check_linearizability(history);
  std::string findings;
  for (const auto& f : result.findings) findings += "  " + f + "\n";
  ASSERT_NE(result.verdict, sim::LinearizabilityResult::Verdict::kInconclusive)
      << "the checker ran out of budget (" << result.steps << " steps); inconclusive counts as a failure\n"
      << findings;
  EXPECT_EQ(result.verdict, sim::LinearizabilityResult::Verdict::kLinearizable)
      << "not linearizable:\n" << findings << "timeline:\n" << tl;
}

// (e) Bad input: one clear error each, and the node keeps serving.
TEST(Strong, BadInputGetsOneClearErrorAndTheClusterKeepsServing) {
  ProcessCluster cluster(3);
  ASSERT_GE(wait_leader(cluster), 0);
  StrongCaller c(cluster, "bad-input");
  auto expect_error = [&](const pb::StrongRequest& req, pb::ErrorCode code, const std::string& what,
                          pb::ErrorCode or_code = pb::OK) {
    auto r = c.call(req, 3s);
    ASSERT_TRUE(r.response) << what << ": " << describe(r);
    EXPECT_TRUE(r.response->error() == code || (or_code != pb::OK && r.response->error() == or_code))
        << what << ": " << describe(r);
    const std::string& msg = r.response->error_message();
    EXPECT_FALSE(msg.empty()) << what;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << what << ": not one line: " << msg;
    std::cout << "[ strong   ] " << what << " -> " << pb::ErrorCode_Name(r.response->error()) << ": " << msg << "\n";
  };

  pb::StrongRequest huge;
  for (int i = 0; i < 1000; ++i) {
    auto* p = huge.mutable_txn()->add_success()->mutable_put();
    p->set_key("t" + std::to_string(i));
    p->set_value("v");
  }
  expect_error(huge, pb::BAD_REQUEST, "txn with 1000 ops");

  pb::StrongRequest dup;
  for (int i = 0; i < 2; ++i) {
    auto* p = dup.mutable_txn()->add_success()->mutable_put();
    p->set_key("same");
    p->set_value("v" + std::to_string(i));
  }
  expect_error(dup, pb::BAD_REQUEST, "txn writing one key twice in a branch");

  pb::StrongRequest empty_op;
  empty_op.mutable_txn()->add_success();
  expect_error(empty_op, pb::BAD_REQUEST, "txn op with no operation");

  expect_error(grant_req(0), pb::BAD_REQUEST, "session TTL 0");
  expect_error(grant_req(int64_t{1} << 62), pb::BAD_REQUEST, "session TTL absurdly large");
  expect_error(fenced_put("k", "v", "no-such-lock", 7), pb::CONFLICT, "fence naming a lock that does not exist");
  expect_error(release_req("no-such-lock", 424242, 1), pb::NOT_FOUND, "release by a session never granted",
               pb::SESSION_EXPIRED);
  {
    auto g = c.call(grant_req(10000), 3s);
    ASSERT_TRUE(ok(g)) << describe(g);
    expect_error(release_req("no-such-lock", g.response->strong().session_id(), 1), pb::NOT_FOUND,
                 "release of a lock that does not exist");
    expect_error(acquire_req("", g.response->strong().session_id(), 0), pb::BAD_REQUEST, "lock with an empty name");
  }
  expect_error(pb::StrongRequest(), pb::BAD_REQUEST, "strong request with no op");

  // A strong write without a client id.
  {
    const int leader = wait_leader(cluster);
    ASSERT_GE(leader, 0);
    RawConnection direct(port_of(cluster.endpoint(leader)));
    pb::Request req;
    req.set_seq(1);
    *req.mutable_strong() = put_req("k", "v");
    auto r = direct.call(req, 3s);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->error(), pb::BAD_REQUEST) << r->error_message();
  }

  // Still serving, and nothing of the above was written.
  auto w = c.call(put_req("after-bad-input", "fine"), 3s);
  EXPECT_TRUE(ok(w)) << describe(w);
  for (const char* key : {"same", "t0", "k"}) {
    auto g = c.call(get_req(key), 3s);
    ASSERT_TRUE(ok(g)) << describe(g);
    EXPECT_FALSE(g.response->strong().found()) << key;
  }
  for (int i = 0; i < cluster.size(); ++i) EXPECT_TRUE(cluster.running(i) && cluster.wait_ready(i, 2s)) << cluster.id(i);
}

}  // namespace
}  // namespace stig::testing
