// Unit tests of the client library's strong path against in-process fake
// nodes: leader hints, retries under one request id, unknown outcomes,
// refusals that are not retried, lock waits, update(), LockGuard, and the
// text parsers the CLI uses (fences, times, durations).
#include <gtest/gtest.h>

#include <atomic>
#include <functional>
#include <mutex>
#include <thread>

#include "client/asio.h"
#include "stigmergy.pb.h"
#include "tests/unit/fake_node.h"
#include "stigmergy/client.h"
#include "stigmergy/lock_guard.h"
#include "stigmergy/text.h"
#include "wire/frame.h"

namespace {

namespace pb = stigmergy::v1;
using stigmergy::ErrorCode;
using namespace std::chrono_literals;

using stig::testing::FakeNode;

pb::Response strong_error(pb::ErrorCode code, const std::string& message, const std::string& leader_address = "") {
  pb::Response r;
  r.set_error(code);
  r.set_error_message(message);
  r.mutable_strong()->set_error(code);
  r.mutable_strong()->set_error_message(message);
  if (!leader_address.empty()) {
    r.set_leader_hint("leader");
    r.set_leader_address(leader_address);
  }
  return r;
}

pb::Response put_ok(const pb::Request& req, uint64_t version = 1, uint64_t revision = 7) {
  pb::Response r;
  auto* s = r.mutable_strong();
  s->set_revision(revision);
  s->set_found(true);
  auto* kv = s->mutable_kv();
  kv->set_key(req.strong().put().key());
  kv->set_value(req.strong().put().value());
  kv->set_version(version);
  kv->set_create_revision(revision);
  kv->set_mod_revision(revision);
  kv->set_modified_by(req.agent());
  return r;
}

stigmergy::ClientOptions options(std::vector<std::string> eps) {
  stigmergy::ClientOptions o;
  o.endpoints = std::move(eps);
  o.agent = "unit-test";
  o.timeout = 400ms;
  o.connect_timeout = 200ms;
  o.strong_deadline = 1500ms;
  o.strong_backoff_initial = 5ms;
  o.strong_backoff_max = 50ms;
  return o;
}

void expect_one_request_id(const std::vector<pb::Request>& reqs, const std::string& client_id) {
  ASSERT_FALSE(reqs.empty());
  for (const auto& r : reqs) {
    EXPECT_EQ(r.client_id(), client_id);
    EXPECT_EQ(r.seq(), reqs.front().seq()) << "a retry must reuse the request id";
  }
}

TEST(ClientStrong, FollowsTheLeaderHintWithTheSameRequestId) {
  FakeNode leader("n2", [](const pb::Request& req) { return put_ok(req); });
  FakeNode follower("n1", [&](const pb::Request&) {
    return strong_error(pb::NOT_LEADER, "node n1 is not the leader; the leader is n2", leader.endpoint());
  });
  // The leader is not even among the endpoints: its address comes from the hint.
  auto c = stigmergy::Client::create(options({follower.endpoint()}));
  ASSERT_TRUE(c.ok());
  auto r = c->strong_put("stock:sku-9", "1");
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->node, "n2");
  EXPECT_EQ(r->kv.version, 1u);
  EXPECT_EQ(r->revision, 7u);
  auto all = follower.requests();
  for (const auto& q : leader.requests()) all.push_back(q);
  expect_one_request_id(all, c->client_id());
  ASSERT_EQ(follower.requests().size(), 1u);
  EXPECT_TRUE(follower.requests()[0].has_strong());
  // The leader is remembered: the next call goes straight there.
  ASSERT_TRUE(c->strong_put("stock:sku-9", "0").ok());
  EXPECT_EQ(follower.requests().size(), 1u);
  EXPECT_EQ(leader.requests().size(), 2u);
  EXPECT_GT(leader.requests()[1].seq(), leader.requests()[0].seq());
}

TEST(ClientStrong, NoLeaderKnownTriesTheOthersUntilOneLeads) {
  std::atomic<int> n2_calls{0};
  FakeNode n1("n1", [](const pb::Request&) { return strong_error(pb::NOT_LEADER, "n1 knows no leader"); });
  FakeNode n2("n2", [&](const pb::Request& req) -> std::optional<pb::Response> {
    if (++n2_calls < 3) return strong_error(pb::NOT_LEADER, "n2 knows no leader");  // election under way
    return put_ok(req);
  });
  auto c = stigmergy::Client::create(options({n1.endpoint(), n2.endpoint()}));
  ASSERT_TRUE(c.ok());
  auto r = c->strong_put("k", "v");
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->node, "n2");
  auto all = n1.requests();
  for (const auto& q : n2.requests()) all.push_back(q);
  expect_one_request_id(all, c->client_id());
  EXPECT_GE(n1.requests().size(), 2u);
}

TEST(ClientStrong, NoLeaderWithinTheDeadlineIsNotLeaderNotUnknown) {
  FakeNode n1("n1", [](const pb::Request&) { return strong_error(pb::NOT_LEADER, "n1 knows no leader"); });
  auto o = options({n1.endpoint()});
  o.strong_deadline = 300ms;
  auto c = stigmergy::Client::create(o);
  ASSERT_TRUE(c.ok());
  const auto start = std::chrono::steady_clock::now();
  auto r = c->strong_put("k", "v");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::kNotLeader) << r.error().message;
  EXPECT_NE(r.error().message.find("no leader found"), std::string::npos) << r.error().message;
  EXPECT_LT(std::chrono::steady_clock::now() - start, 1500ms);
  EXPECT_GE(n1.requests().size(), 3u);  // retried with backoff
}

TEST(ClientStrong, OutcomeUnknownIsRetriedUnderTheSameIdAndResolved) {
  std::atomic<int> calls{0};
  FakeNode n1("n1", [&](const pb::Request& req) -> std::optional<pb::Response> {
    if (++calls == 1) return strong_error(pb::OUTCOME_UNKNOWN, "node n1 stopped being leader");
    return put_ok(req, 4);  // the new leader answers from its dedup table
  });
  auto c = stigmergy::Client::create(options({n1.endpoint()}));
  ASSERT_TRUE(c.ok());
  auto r = c->strong_put("k", "v");
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->kv.version, 4u);
  ASSERT_EQ(n1.requests().size(), 2u);
  expect_one_request_id(n1.requests(), c->client_id());
}

TEST(ClientStrong, UnresolvedOutcomeIsReportedAsUnknownNeverFailed) {
  FakeNode n1("n1", [](const pb::Request& req) -> std::optional<pb::Response> {
    if (req.strong().has_put()) return strong_error(pb::OUTCOME_UNKNOWN, "node n1 stopped being leader");
    return strong_error(pb::NOT_LEADER, "n1 knows no leader");
  });
  auto o = options({n1.endpoint()});
  o.strong_deadline = 300ms;
  auto c = stigmergy::Client::create(o);
  ASSERT_TRUE(c.ok());
  auto r = c->strong_put("k", "v");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::kOutcomeUnknown) << r.error().message;
  EXPECT_NE(r.error().message.find("may or may not have been applied"), std::string::npos);
}

TEST(ClientStrong, AWriteSentToASilentNodeHasAnUnknownOutcome) {
  FakeNode silent("n1", [](const pb::Request&) { return std::nullopt; });
  auto o = options({silent.endpoint()});
  o.timeout = 150ms;
  o.strong_deadline = 400ms;
  auto c = stigmergy::Client::create(o);
  ASSERT_TRUE(c.ok());
  auto w = c->strong_put("k", "v");
  ASSERT_FALSE(w.ok());
  EXPECT_EQ(w.error().code, ErrorCode::kOutcomeUnknown) << w.error().message;
  expect_one_request_id(silent.requests(), c->client_id());
  // A read that got no answer changed nothing: it is just unreachable.
  auto g = c->strong_get("k");
  ASSERT_FALSE(g.ok());
  EXPECT_EQ(g.error().code, ErrorCode::kUnreachable) << g.error().message;
}

TEST(ClientStrong, RefusalsAreValuesAndNotRetried) {
  FakeNode n1("n1", [](const pb::Request&) {
    return strong_error(pb::CONFLICT, "key 'k' is at version 3, not 2");
  });
  FakeNode n2("n2", [](const pb::Request& req) { return put_ok(req); });
  auto c = stigmergy::Client::create(options({n1.endpoint(), n2.endpoint()}));
  ASSERT_TRUE(c.ok());
  stigmergy::PutOptions po;
  po.expect_version = 2;
  auto r = c->strong_put("k", "v", po);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::kConflict);
  EXPECT_EQ(r.error().message, "key 'k' is at version 3, not 2 (CONFLICT, node n1)");
  EXPECT_TRUE(n2.requests().empty());
  ASSERT_EQ(n1.requests().size(), 1u);
  EXPECT_TRUE(n1.requests()[0].strong().put().has_expected_version());
  EXPECT_EQ(n1.requests()[0].strong().put().expected_version(), 2u);
}

TEST(ClientStrong, ConnectionFailuresMoveToTheNextEndpoint) {
  boost::asio::io_context io;
  boost::asio::ip::tcp::acceptor a(io, {boost::asio::ip::make_address("127.0.0.1"), 0});
  const std::string closed = "127.0.0.1:" + std::to_string(a.local_endpoint().port());
  a.close();
  FakeNode n2("n2", [](const pb::Request& req) { return put_ok(req); });
  auto c = stigmergy::Client::create(options({closed, n2.endpoint()}));
  ASSERT_TRUE(c.ok());
  auto r = c->strong_put("k", "v");
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->node, "n2");
}

TEST(ClientStrong, LockWaitExtendsTheAttemptTimeout) {
  FakeNode n1("n1", [](const pb::Request& req) -> std::optional<pb::Response> {
    std::this_thread::sleep_for(600ms);  // longer than the 400 ms attempt timeout
    pb::Response r;
    r.mutable_strong()->set_lock(req.strong().lock_acquire().name());
    r.mutable_strong()->set_token(12);
    return r;
  });
  auto c = stigmergy::Client::create(options({n1.endpoint()}));
  ASSERT_TRUE(c.ok());
  auto r = c->lock_acquire("charge", 5, 1000ms);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->token, 12u);
  ASSERT_EQ(n1.requests().size(), 1u);
  EXPECT_EQ(n1.requests()[0].strong().lock_acquire().wait_ms(), 1000);
  EXPECT_EQ(n1.requests()[0].strong().lock_acquire().session_id(), 5u);
}

TEST(ClientStrong, BadArgumentsAreRefusedLocally) {
  auto c = stigmergy::Client::create(options({"127.0.0.1:1"}));
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->strong_put("", "v").error().code, ErrorCode::kInvalidArgument);
  EXPECT_EQ(c->grant(0ms).error().code, ErrorCode::kInvalidArgument);
  EXPECT_EQ(c->grant(std::chrono::hours(25)).error().code, ErrorCode::kInvalidArgument);
  EXPECT_EQ(c->lock_acquire("", 1, 0ms).error().code, ErrorCode::kInvalidArgument);
  EXPECT_EQ(c->lock_acquire("l", 1, std::chrono::hours(2)).error().code, ErrorCode::kInvalidArgument);
  stigmergy::PutOptions po;
  po.fence = stigmergy::Fence{"lock", 0};
  EXPECT_EQ(c->strong_put("k", "v", po).error().code, ErrorCode::kInvalidArgument);
  stigmergy::GetOptions go;
  go.revision = 3;
  go.at_ms = 5;
  EXPECT_EQ(c->strong_get("k", go).error().code, ErrorCode::kInvalidArgument);
  EXPECT_EQ(c->strong_txn(stigmergy::Txn()).error().code, ErrorCode::kInvalidArgument);
}

TEST(ClientStrong, TxnBuilderSendsCompareAndBranches) {
  FakeNode n1("n1", [](const pb::Request&) {
    pb::Response r;
    auto* s = r.mutable_strong();
    s->set_succeeded(false);
    s->set_revision(9);
    auto* g = s->add_results();
    g->set_found(true);
    g->mutable_kv()->set_key("stock");
    g->mutable_kv()->set_value("0");
    return r;
  });
  auto c = stigmergy::Client::create(options({n1.endpoint()}));
  ASSERT_TRUE(c.ok());
  stigmergy::Txn t;
  t.if_value("stock", stigmergy::CompareOp::kEqual, "1")
      .if_exists("order", false)
      .if_version("v", stigmergy::CompareOp::kLess, 4)
      .then_put("stock", "0")
      .then_delete("hold")
      .else_get("stock")
      .with_fence({"charge", 3});
  auto r = c->strong_txn(t);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_FALSE(r->succeeded);
  ASSERT_EQ(r->results.size(), 1u);
  EXPECT_EQ(r->results[0].kind, stigmergy::TxnOp::Kind::kGet);
  EXPECT_EQ(r->results[0].kv.value, "0");
  const auto reqs = n1.requests();
  ASSERT_EQ(reqs.size(), 1u);
  const auto& sent = reqs[0].strong().txn();
  ASSERT_EQ(sent.compare_size(), 3);
  EXPECT_EQ(sent.compare(0).target(), pb::Compare::VALUE);
  EXPECT_EQ(sent.compare(1).target(), pb::Compare::EXISTS);
  EXPECT_FALSE(sent.compare(1).exists());
  EXPECT_EQ(sent.compare(2).op(), pb::Compare::LESS);
  EXPECT_EQ(sent.compare(2).number(), 4u);
  ASSERT_EQ(sent.success_size(), 2);
  EXPECT_TRUE(sent.success(1).has_delete_());
  ASSERT_EQ(sent.failure_size(), 1);
  EXPECT_EQ(sent.fence().lock(), "charge");
  EXPECT_EQ(sent.fence().token(), 3u);
}

TEST(ClientStrong, UpdateRetriesOnConflict) {
  std::mutex mu;
  uint64_t version = 2;
  std::string value = "5";
  int conflicts_left = 1;
  FakeNode n1("n1", [&](const pb::Request& req) -> std::optional<pb::Response> {
    std::lock_guard<std::mutex> l(mu);
    pb::Response r;
    if (req.strong().has_get()) {
      r.mutable_strong()->set_found(true);
      r.mutable_strong()->mutable_kv()->set_value(value);
      r.mutable_strong()->mutable_kv()->set_version(version);
      return r;
    }
    const auto& p = req.strong().put();
    if (conflicts_left > 0) {  // another writer got in between
      --conflicts_left;
      ++version;
      value = "4";
    }
    if (p.expected_version() != version) return strong_error(pb::CONFLICT, "version moved");
    ++version;
    value = p.value();
    return put_ok(req, version);
  });
  auto c = stigmergy::Client::create(options({n1.endpoint()}));
  ASSERT_TRUE(c.ok());
  std::vector<std::string> seen;
  auto r = c->update("stock", [&](const std::optional<std::string>& cur) -> stigmergy::Result<std::string> {
    seen.push_back(cur.value_or("missing"));
    return std::to_string(std::stoi(*cur) - 1);
  });
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(seen, (std::vector<std::string>{"5", "4"}));
  EXPECT_EQ(value, "3");
  // fn's own error aborts the update.
  auto stop = c->update("stock", [](const std::optional<std::string>&) -> stigmergy::Result<std::string> {
    return stigmergy::make_error(ErrorCode::kInvalidArgument, "out of stock");
  });
  ASSERT_FALSE(stop.ok());
  EXPECT_EQ(stop.error().message, "out of stock");
}

// A fake leader of sessions and one lock, for LockGuard.
struct LockServer {
  std::mutex mu;
  int keepalives = 0;
  bool released = false, revoked = false;
  bool expire = false;  // answer keepalives with SESSION_EXPIRED

  std::optional<pb::Response> handle(const pb::Request& req) {
    std::lock_guard<std::mutex> l(mu);
    pb::Response r;
    auto* s = r.mutable_strong();
    const auto& q = req.strong();
    if (q.has_session_grant()) {
      s->set_session_id(77);
      s->set_ttl_ms(q.session_grant().ttl_ms());
    } else if (q.has_session_keepalive()) {
      if (expire) return strong_error(pb::SESSION_EXPIRED, "session 77 expired");
      ++keepalives;
      s->set_session_id(77);
    } else if (q.has_lock_acquire()) {
      s->set_lock(q.lock_acquire().name());
      s->set_token(31);
    } else if (q.has_lock_release()) {
      released = q.lock_release().token() == 31 && q.lock_release().session_id() == 77;
    } else if (q.has_session_revoke()) {
      revoked = q.session_revoke().session_id() == 77;
    }
    return r;
  }
};

TEST(ClientStrong, LockGuardKeepsAliveAndReleasesOnScopeExit) {
  LockServer server;
  FakeNode n1("n1", [&](const pb::Request& req) { return server.handle(req); });
  auto c = stigmergy::Client::create(options({n1.endpoint()}));
  ASSERT_TRUE(c.ok());
  {
    stigmergy::LockOptions o;
    o.ttl = 300ms;
    auto guard = stigmergy::LockGuard::acquire(*c, "charge", o);
    ASSERT_TRUE(guard.ok()) << guard.error().message;
    EXPECT_EQ(guard->token(), 31u);
    EXPECT_EQ(guard->session_id(), 77u);
    EXPECT_EQ(guard->fence().lock, "charge");
    std::this_thread::sleep_for(450ms);  // several keepalive intervals (ttl/3)
    EXPECT_FALSE(guard->lost());
  }
  std::lock_guard<std::mutex> l(server.mu);
  EXPECT_GE(server.keepalives, 2);
  EXPECT_TRUE(server.released);
  EXPECT_TRUE(server.revoked);
}

TEST(ClientStrong, LockGuardReportsALostSession) {
  LockServer server;
  server.expire = true;
  FakeNode n1("n1", [&](const pb::Request& req) { return server.handle(req); });
  auto c = stigmergy::Client::create(options({n1.endpoint()}));
  ASSERT_TRUE(c.ok());
  std::atomic<bool> told{false};
  stigmergy::LockOptions o;
  o.ttl = 150ms;
  o.on_lost = [&](const std::string&) { told = true; };
  auto guard = stigmergy::LockGuard::acquire(*c, "charge", o);
  ASSERT_TRUE(guard.ok()) << guard.error().message;
  for (int i = 0; i < 100 && !guard->lost(); ++i) std::this_thread::sleep_for(10ms);
  EXPECT_TRUE(guard->lost());
  EXPECT_TRUE(told.load());
  EXPECT_NE(guard->lost_reason().find("SESSION_EXPIRED"), std::string::npos) << guard->lost_reason();
}

TEST(ClientStrong, ClusterStatusCarriesRaftFields) {
  FakeNode n1("n1", [](const pb::Request&) {
    pb::Response r;
    auto* self = r.mutable_cluster_status()->add_nodes();
    self->set_id("n1");
    self->set_state("self");
    self->set_role("leader");
    self->set_term(3);
    self->set_commit_index(42);
    r.mutable_cluster_status()->add_nodes()->set_id("n2");
    return r;
  });
  auto c = stigmergy::Client::create(options({n1.endpoint()}));
  ASSERT_TRUE(c.ok());
  auto s = c->cluster_status();
  ASSERT_TRUE(s.ok());
  ASSERT_EQ(s->nodes.size(), 2u);
  EXPECT_EQ(s->nodes[0].role, "leader");
  EXPECT_EQ(s->nodes[0].term, 3u);
  EXPECT_EQ(s->nodes[0].commit_index, 42u);
  EXPECT_TRUE(s->nodes[1].role.empty());
}

// --- text parsers ----------------------------------------------------------

TEST(ClientStrongText, Fence) {
  auto f = stigmergy::parse_fence("charge:order-17:42");
  ASSERT_TRUE(f.ok());
  EXPECT_EQ(f->lock, "charge:order-17");
  EXPECT_EQ(f->token, 42u);
  for (const char* bad : {"", "charge", "charge:", ":5", "charge:x", "charge:0", "charge:99999999999999999999"}) {
    auto r = stigmergy::parse_fence(bad);
    EXPECT_FALSE(r.ok()) << bad;
    if (!r.ok()) {
      EXPECT_EQ(r.error().code, ErrorCode::kInvalidArgument);
    }
  }
}

TEST(ClientStrongText, Time) {
  EXPECT_EQ(*stigmergy::parse_time_ms("1714566896789"), 1714566896789);
  EXPECT_EQ(*stigmergy::parse_time_ms("2024-05-01T12:34:56.789Z"), 1714566896789);
  EXPECT_EQ(*stigmergy::parse_time_ms("2024-05-01T14:34:56.789+02:00"), 1714566896789);
  EXPECT_EQ(*stigmergy::parse_time_ms("2024-05-01t12:34:56z"), 1714566896000);
  EXPECT_EQ(*stigmergy::parse_time_ms("1970-01-01T00:00:00Z"), 0);
  EXPECT_EQ(*stigmergy::parse_time_ms("2024-02-29T00:00:00Z"), 1709164800000);
  for (const char* bad : {"", "yesterday", "2024-05-01", "2024-13-01T00:00:00Z", "2023-02-29T00:00:00Z",
                          "2024-05-01T12:34:56", "2024-05-01T25:00:00Z", "2024-05-01T12:34:56Zjunk"}) {
    auto r = stigmergy::parse_time_ms(bad);
    EXPECT_FALSE(r.ok()) << bad;
    if (!r.ok()) {
      EXPECT_NE(r.error().message.find("RFC 3339"), std::string::npos);
    }
  }
}

TEST(ClientStrongText, Duration) {
  EXPECT_EQ(*stigmergy::parse_duration_ms("500ms"), 500);
  EXPECT_EQ(*stigmergy::parse_duration_ms("10s"), 10000);
  EXPECT_EQ(*stigmergy::parse_duration_ms("10"), 10000);
  EXPECT_EQ(*stigmergy::parse_duration_ms("1.5m"), 90000);
  EXPECT_EQ(*stigmergy::parse_duration_ms("2h"), 7200000);
  EXPECT_EQ(*stigmergy::parse_duration_ms("0"), 0);
  for (const char* bad : {"", "s", "-1s", "10d", "ten"}) EXPECT_FALSE(stigmergy::parse_duration_ms(bad).ok()) << bad;
}

}  // namespace
