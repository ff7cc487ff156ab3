// Unit tests of the client library: context text form, version vector
// dominance (read-your-writes), endpoint parsing, text helpers, and the
// client's failover / timeout / read-your-writes behaviour against
// in-process fake nodes speaking the wire protocol.
#include <gtest/gtest.h>

#include <atomic>
#include <functional>
#include <mutex>
#include <thread>

#include "client/asio.h"
#include "stigmergy.pb.h"
#include "tests/unit/fake_node.h"
#include "stigmergy/client.h"
#include "stigmergy/text.h"
#include "wire/frame.h"

namespace {

namespace pb = stigmergy::v1;
using stigmergy::VersionVector;

std::string vv_bytes(std::initializer_list<std::pair<const char*, uint64_t>> entries) {
  pb::VersionVector vv;
  for (const auto& [node, counter] : entries) {
    auto* e = vv.add_entries();
    e->set_node(node);
    e->set_counter(counter);
  }
  std::string out;
  vv.SerializeToString(&out);
  return out;
}

// --- contexts ----------------------------------------------------------------

TEST(ClientContext, RoundTrip) {
  for (const std::string& bytes :
       {std::string(), vv_bytes({{"n1", 1}}), vv_bytes({{"n1", 3}, {"n2", 300}, {"n3", 1ull << 40}})}) {
    const std::string text = stigmergy::encode_context(bytes);
    EXPECT_EQ(text.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"),
              std::string::npos)
        << text;
    auto back = stigmergy::decode_context(text);
    ASSERT_TRUE(back.ok()) << back.error().message;
    EXPECT_EQ(*back, bytes);
  }
  EXPECT_EQ(stigmergy::encode_context(""), "");
}

TEST(ClientContext, RejectsMalformedText) {
  const std::string good = stigmergy::encode_context(vv_bytes({{"n1", 3}, {"n2", 1}}));
  const std::vector<std::string> bad = {
      good + "=",                       // padding
      good.substr(0, good.size() - 1) + "+",  // standard-base64 character
      good + "/",
      good + "A",                       // impossible length or stray bits
      good.substr(1),                   // shifted: stray bits or garbage bytes
      "has space",
      "héllo",
      "x",                              // length 1 is impossible
      stigmergy::base64url_encode("\xff\xff\xff"),  // not a version vector
      stigmergy::base64url_encode("not a context at all"),
  };
  for (const auto& text : bad) {
    auto r = stigmergy::decode_context(text);
    EXPECT_FALSE(r.ok()) << "accepted '" << text << "'";
    if (!r.ok()) {
      EXPECT_EQ(r.error().code, stigmergy::ErrorCode::kInvalidArgument);
      EXPECT_NE(r.error().message.find("malformed context"), std::string::npos) << r.error().message;
      EXPECT_EQ(r.error().message.find('\n'), std::string::npos);
    }
  }
}

TEST(ClientContext, RejectsVectorsNodesNeverSend) {
  // Unsorted entries and zero counters decode as protobuf but cannot be real.
  EXPECT_FALSE(stigmergy::decode_context(stigmergy::encode_context(vv_bytes({{"n2", 1}, {"n1", 1}}))).ok());
  EXPECT_FALSE(stigmergy::decode_context(stigmergy::encode_context(vv_bytes({{"n1", 0}}))).ok());
  EXPECT_FALSE(stigmergy::decode_context(stigmergy::encode_context(vv_bytes({{"n1", 1}, {"n1", 2}}))).ok());
  EXPECT_FALSE(stigmergy::decode_context(stigmergy::encode_context(vv_bytes({{"", 2}}))).ok());
}

TEST(ClientContext, ParseGivesEntries) {
  auto vv = stigmergy::parse_context(vv_bytes({{"n1", 3}, {"n2", 7}}));
  ASSERT_TRUE(vv.ok());
  EXPECT_EQ(*vv, (VersionVector{{"n1", 3}, {"n2", 7}}));
  EXPECT_EQ(stigmergy::to_string(*vv), "{n1:3, n2:7}");
  auto empty = stigmergy::parse_context("");
  ASSERT_TRUE(empty.ok());
  EXPECT_TRUE(empty->empty());
}

TEST(ClientContext, Dominance) {
  const VersionVector empty;
  const VersionVector a{{"n1", 3}, {"n2", 1}};
  const VersionVector b{{"n1", 3}};
  const VersionVector c{{"n1", 2}, {"n2", 5}};
  const VersionVector d{{"n3", 1}};
  EXPECT_TRUE(stigmergy::dominates(a, a));
  EXPECT_TRUE(stigmergy::dominates(a, empty));
  EXPECT_TRUE(stigmergy::dominates(empty, empty));
  EXPECT_FALSE(stigmergy::dominates(empty, a));
  EXPECT_TRUE(stigmergy::dominates(a, b));
  EXPECT_FALSE(stigmergy::dominates(b, a));  // missing entry counts as zero
  EXPECT_FALSE(stigmergy::dominates(a, c));  // n2 smaller
  EXPECT_FALSE(stigmergy::dominates(c, a));  // n1 smaller: concurrent
  EXPECT_FALSE(stigmergy::dominates(a, d));
  EXPECT_TRUE(stigmergy::dominates(a, VersionVector{{"n9", 0}}));  // explicit zero is absent
  const auto m = stigmergy::merge(a, c);
  EXPECT_EQ(m, (VersionVector{{"n1", 3}, {"n2", 5}}));
  EXPECT_TRUE(stigmergy::dominates(m, a));
  EXPECT_TRUE(stigmergy::dominates(m, c));
}

// --- endpoints and options ---------------------------------------------------

TEST(ClientEndpoints, ParsesValidLists) {
  auto eps = stigmergy::parse_endpoints("127.0.0.1:7101, localhost:7102,[::1]:7103");
  ASSERT_TRUE(eps.ok()) << eps.error().message;
  ASSERT_EQ(eps->size(), 3u);
  EXPECT_EQ((*eps)[0].host, "127.0.0.1");
  EXPECT_EQ((*eps)[0].port, 7101);
  EXPECT_EQ((*eps)[1].host, "localhost");
  EXPECT_EQ((*eps)[2].host, "::1");
  EXPECT_EQ((*eps)[2].to_string(), "[::1]:7103");
  EXPECT_EQ((*eps)[0].to_string(), "127.0.0.1:7101");
}

TEST(ClientEndpoints, RejectsBadInputNamingIt) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"", "no endpoints"},
      {"127.0.0.1", "missing ':PORT'"},
      {"127.0.0.1:", "missing port"},
      {":7101", "missing host"},
      {"host:abc", "not a number"},
      {"host:70000", "out of range"},
      {"host:0", "port 0"},
      {"a:1,,b:2", "empty item"},
      {"a:1,", "empty item"},
      {"::1:7101", "brackets"},
      {"[::1:7101", "missing ']'"},
      {"a:1,a:1", "listed twice"},
  };
  for (const auto& [text, needle] : cases) {
    auto r = stigmergy::parse_endpoints(text);
    EXPECT_FALSE(r.ok()) << "accepted '" << text << "'";
    if (!r.ok()) {
      EXPECT_EQ(r.error().code, stigmergy::ErrorCode::kInvalidArgument);
      EXPECT_NE(r.error().message.find(needle), std::string::npos) << text << " -> " << r.error().message;
    }
  }
}

TEST(ClientOptions, CreateValidates) {
  stigmergy::ClientOptions o;
  EXPECT_FALSE(stigmergy::Client::create(o).ok());
  o.endpoints = {"127.0.0.1:7101", "127.0.0.1:notaport"};
  auto r = stigmergy::Client::create(o);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("127.0.0.1:notaport"), std::string::npos);
  o.endpoints = {"127.0.0.1:7101"};
  o.agent = "tester";
  auto c = stigmergy::Client::create(o);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->agent(), "tester");
  EXPECT_EQ(c->client_id().size(), 16u);
  EXPECT_EQ(c->current_endpoint(), "127.0.0.1:7101");
  auto other = stigmergy::Client::create(o);
  ASSERT_TRUE(other.ok());
  EXPECT_NE(c->client_id(), other->client_id());
}

TEST(ClientOptions, Durability) {
  EXPECT_EQ(*stigmergy::parse_durability("quorum"), stigmergy::Durability::kQuorum);
  EXPECT_EQ(*stigmergy::parse_durability("all"), stigmergy::Durability::kAll);
  EXPECT_EQ(*stigmergy::parse_durability("local"), stigmergy::Durability::kLocal);
  auto bad = stigmergy::parse_durability("majority");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.error().message.find("majority"), std::string::npos);
}

TEST(ClientOptions, DefaultAgentFromEnvironment) {
  ::setenv("STIG_AGENT", "fulfilment-bot", 1);
  EXPECT_EQ(stigmergy::default_agent(), "fulfilment-bot");
  ::unsetenv("STIG_AGENT");
  EXPECT_FALSE(stigmergy::default_agent().empty());
}

// --- text helpers ------------------------------------------------------------

TEST(ClientText, Base64) {
  for (const std::string s : {"", "f", "fo", "foo", "foob", "fooba", "foobar", "\xff\x00\x80"}) {
    auto back = stigmergy::base64_decode(stigmergy::base64_encode(s));
    ASSERT_TRUE(back.ok());
    EXPECT_EQ(*back, s);
    auto back_url = stigmergy::base64url_decode(stigmergy::base64url_encode(s));
    ASSERT_TRUE(back_url.ok());
    EXPECT_EQ(*back_url, s);
  }
  EXPECT_EQ(stigmergy::base64_encode("foobar"), "Zm9vYmFy");
  EXPECT_EQ(stigmergy::base64_encode("fo"), "Zm8=");
  EXPECT_EQ(stigmergy::base64url_encode("fo"), "Zm8");
  EXPECT_EQ(stigmergy::base64url_encode("\xfb\xff"), "-_8");
  EXPECT_FALSE(stigmergy::base64_decode("Zm9=v").ok());
}

TEST(ClientText, Utf8) {
  EXPECT_TRUE(stigmergy::is_valid_utf8(""));
  EXPECT_TRUE(stigmergy::is_valid_utf8("shipped"));
  EXPECT_TRUE(stigmergy::is_valid_utf8("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x93\xa6"));
  EXPECT_FALSE(stigmergy::is_valid_utf8("\xff"));
  EXPECT_FALSE(stigmergy::is_valid_utf8("\xc0\xaf"));          // overlong
  EXPECT_FALSE(stigmergy::is_valid_utf8("\xed\xa0\x80"));      // surrogate
  EXPECT_FALSE(stigmergy::is_valid_utf8("\xf4\x90\x80\x80"));  // above U+10FFFF
  EXPECT_FALSE(stigmergy::is_valid_utf8("\xe2\x82"));          // truncated
}

TEST(ClientText, Iso8601) {
  EXPECT_EQ(stigmergy::format_iso8601_ms(0), "1970-01-01T00:00:00.000Z");
  EXPECT_EQ(stigmergy::format_iso8601_ms(1714566896789), "2024-05-01T12:34:56.789Z");
  EXPECT_EQ(stigmergy::format_iso8601_ms(-1), "1969-12-31T23:59:59.999Z");
}

// --- behaviour against fake nodes --------------------------------------------

using stig::testing::FakeNode;

// A loopback port with nothing listening (bound, then released).
std::string closed_endpoint() {
  boost::asio::io_context io;
  boost::asio::ip::tcp::acceptor a(io, {boost::asio::ip::make_address("127.0.0.1"), 0});
  const auto port = a.local_endpoint().port();
  a.close();
  return "127.0.0.1:" + std::to_string(port);
}

pb::Response put_reply(const std::string& key, const std::string& ctx) {
  pb::Response r;
  r.mutable_put()->set_key(key);
  r.mutable_put()->set_context(ctx);
  return r;
}

pb::Response get_reply(const std::string& key, const std::string& value, const std::string& ctx) {
  pb::Response r;
  auto* g = r.mutable_get();
  g->set_key(key);
  if (!value.empty()) {
    auto* v = g->add_versions();
    v->set_value(value);
    v->set_modified_by("someone");
    v->set_modified_at_ms(1714566896789);
  }
  g->set_context(ctx);
  return r;
}

stigmergy::ClientOptions options(std::vector<std::string> eps) {
  stigmergy::ClientOptions o;
  o.endpoints = std::move(eps);
  o.agent = "unit-test";
  o.timeout = std::chrono::milliseconds(400);
  o.connect_timeout = std::chrono::milliseconds(200);
  o.read_your_writes_budget = std::chrono::milliseconds(300);
  return o;
}

TEST(ClientBehaviour, UnreachableNamesEveryEndpoint) {
  const auto a = closed_endpoint();
  const auto b = closed_endpoint();
  auto c = stigmergy::Client::create(options({a, b}));
  ASSERT_TRUE(c.ok());
  auto r = c->get("k");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, stigmergy::ErrorCode::kUnreachable);
  EXPECT_NE(r.error().message.find(a), std::string::npos) << r.error().message;
  EXPECT_NE(r.error().message.find(b), std::string::npos) << r.error().message;
  EXPECT_NE(r.error().message.find("connection refused"), std::string::npos) << r.error().message;
}

TEST(ClientBehaviour, FailsOverWithTheSameSeqAndSticks) {
  FakeNode silent("n1", [](const pb::Request&) { return std::nullopt; });  // never answers
  FakeNode good("n2", [](const pb::Request& req) { return put_reply(req.put().key(), vv_bytes({{"n2", 1}})); });
  auto c = stigmergy::Client::create(options({closed_endpoint(), silent.endpoint(), good.endpoint()}));
  ASSERT_TRUE(c.ok());
  const auto start = std::chrono::steady_clock::now();
  auto r = c->put("order-1", "packed");
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->node, "n2");
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(2));
  EXPECT_EQ(c->current_endpoint(), good.endpoint());
  ASSERT_EQ(silent.requests().size(), 1u);
  ASSERT_EQ(good.requests().size(), 1u);
  EXPECT_EQ(silent.requests()[0].seq(), good.requests()[0].seq());  // a retry reuses its seq
  EXPECT_EQ(good.requests()[0].agent(), "unit-test");
  EXPECT_EQ(good.requests()[0].client_id(), c->client_id());
  // The next request goes straight to the node that worked, with a new seq.
  auto again = c->put("order-1", "shipped", r->context);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(silent.requests().size(), 1u);
  ASSERT_EQ(good.requests().size(), 2u);
  EXPECT_GT(good.requests()[1].seq(), good.requests()[0].seq());
  EXPECT_EQ(good.requests()[1].put().context(), r->context);
}

TEST(ClientBehaviour, ALazyWriteSentAgainSaysItIsARetryWithTheFirstNodesHorizon) {
  std::atomic<int> calls{0};
  FakeNode flaky("n1", [&](const pb::Request&) -> std::optional<pb::Response> {
    if (calls++ > 0) return std::nullopt;  // answers the first request only
    pb::Response r;
    r.set_node_dot(42);
    r.mutable_counter()->set_value(1);
    return r;
  });
  FakeNode other("n2", [](const pb::Request&) {
    pb::Response r;
    r.set_error(pb::RETRY_UNKNOWN);
    r.set_error_message("retry cannot be checked");
    return r;
  });
  auto c = stigmergy::Client::create(options({flaky.endpoint(), other.endpoint()}));
  ASSERT_TRUE(c.ok());
  ASSERT_TRUE(c->counter_add("hits", 1).ok());
  auto r = c->counter_add("hits", 5);  // n1 does not answer: sent to n2 as a retry
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, stigmergy::ErrorCode::kRetryUnknown);  // returned, not retried again
  ASSERT_EQ(flaky.requests().size(), 2u);
  EXPECT_EQ(flaky.requests()[1].attempt(), 0u);  // a first attempt says nothing
  ASSERT_EQ(other.requests().size(), 1u);
  const pb::Request retry = other.requests()[0];
  EXPECT_EQ(retry.seq(), flaky.requests()[1].seq());
  EXPECT_EQ(retry.attempt(), 2u);
  ASSERT_EQ(retry.tried_size(), 1);
  EXPECT_EQ(retry.tried(0).node(), "n1");
  EXPECT_EQ(retry.tried(0).horizon(), 42u);
  EXPECT_FALSE(retry.tried_unknown());
}

TEST(ClientBehaviour, TimeoutIsReportedWhenNothingAnswers) {
  FakeNode silent("n1", [](const pb::Request&) { return std::nullopt; });
  auto c = stigmergy::Client::create(options({silent.endpoint()}));
  ASSERT_TRUE(c.ok());
  auto r = c->put("k", "v");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, stigmergy::ErrorCode::kUnreachable);
  EXPECT_NE(r.error().message.find("no reply within 400 ms"), std::string::npos) << r.error().message;
  EXPECT_NE(r.error().message.find("may or may not have been applied"), std::string::npos) << r.error().message;
}

TEST(ClientBehaviour, ServerErrorsAreValuesAndNotRetriedElsewhere) {
  FakeNode n1("n1", [](const pb::Request&) {
    pb::Response r;
    r.set_error(pb::WRONG_TYPE);
    r.set_error_message("key 'k' holds a register, not a counter");
    return r;
  });
  FakeNode n2("n2", [](const pb::Request&) { return pb::Response(); });
  auto c = stigmergy::Client::create(options({n1.endpoint(), n2.endpoint()}));
  ASSERT_TRUE(c.ok());
  auto r = c->counter_add("k", 1);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, stigmergy::ErrorCode::kWrongType);
  EXPECT_EQ(r.error().node, "n1");
  EXPECT_EQ(r.error().message, "key 'k' holds a register, not a counter (WRONG_TYPE, node n1)");
  EXPECT_TRUE(n2.requests().empty());
}

TEST(ClientBehaviour, UnavailableFailsOver) {
  FakeNode n1("n1", [](const pb::Request&) {
    pb::Response r;
    r.set_error(pb::UNAVAILABLE);
    r.set_error_message("node is shutting down");
    return r;
  });
  FakeNode n2("n2", [](const pb::Request& req) {
    pb::Response r;
    r.mutable_counter()->set_key(req.counter_add().key());
    r.mutable_counter()->set_value(5);
    return r;
  });
  auto c = stigmergy::Client::create(options({n1.endpoint(), n2.endpoint()}));
  ASSERT_TRUE(c.ok());
  auto r = c->counter_add("hits", 5);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->value, 5);
  EXPECT_EQ(r->node, "n2");
}

TEST(ClientBehaviour, ReadYourWritesTriesOtherNodes) {
  const std::string written = vv_bytes({{"n1", 4}});
  // n1 took the write but answers gets from an old state (as a lagging node would);
  // n2 has seen the write.
  FakeNode n1("n1", [&](const pb::Request& req) -> std::optional<pb::Response> {
    if (req.has_put()) return put_reply(req.put().key(), written);
    return get_reply(req.get().key(), "old", vv_bytes({{"n1", 3}}));
  });
  FakeNode n2("n2", [&](const pb::Request& req) -> std::optional<pb::Response> {
    return get_reply(req.get().key(), "new", vv_bytes({{"n1", 4}, {"n2", 1}}));
  });
  auto c = stigmergy::Client::create(options({n1.endpoint(), n2.endpoint()}));
  ASSERT_TRUE(c.ok());
  ASSERT_TRUE(c->put("k", "new").ok());
  auto r = c->get("k");
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_FALSE(r->stale);
  EXPECT_EQ(r->node, "n2");
  ASSERT_EQ(r->values(), std::vector<std::string>{"new"});
  EXPECT_EQ(c->current_endpoint(), n2.endpoint());
  // Keys never written by this client are not held back.
  auto other = c->get("other");
  ASSERT_TRUE(other.ok());
  EXPECT_FALSE(other->stale);
}

TEST(ClientBehaviour, ReadYourWritesGivesUpAndMarksStale) {
  FakeNode n1("n1", [&](const pb::Request& req) -> std::optional<pb::Response> {
    if (req.has_put()) return put_reply(req.put().key(), vv_bytes({{"n1", 9}}));
    return get_reply(req.get().key(), "old", vv_bytes({{"n1", 8}}));
  });
  stigmergy::ClientOptions o = options({n1.endpoint()});
  auto c = stigmergy::Client::create(o);
  ASSERT_TRUE(c.ok());
  ASSERT_TRUE(c->put("k", "new").ok());
  const auto start = std::chrono::steady_clock::now();
  auto r = c->get("k");
  const auto took = std::chrono::steady_clock::now() - start;
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->stale);
  EXPECT_GE(took, std::chrono::milliseconds(250));
  EXPECT_LT(took, std::chrono::milliseconds(1500));
  EXPECT_GE(n1.requests().size(), 3u);  // put, first get, at least one retry

  // With read-your-writes off, the first answer is returned as is.
  o.read_your_writes = false;
  auto plain = stigmergy::Client::create(o);
  ASSERT_TRUE(plain.ok());
  ASSERT_TRUE(plain->put("k", "new").ok());
  auto r2 = plain->get("k");
  ASSERT_TRUE(r2.ok());
  EXPECT_FALSE(r2->stale);
}

TEST(ClientBehaviour, DeleteThenMissingIsCaughtUp) {
  FakeNode n1("n1", [&](const pb::Request& req) -> std::optional<pb::Response> {
    if (req.has_del()) return put_reply(req.del().key(), vv_bytes({{"n1", 5}}));
    return get_reply(req.get().key(), "", "");  // tombstone collected: nothing left
  });
  auto c = stigmergy::Client::create(options({n1.endpoint()}));
  ASSERT_TRUE(c.ok());
  ASSERT_TRUE(c->del("k").ok());
  auto r = c->get("k");
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(r->stale);
  EXPECT_TRUE(r->versions.empty());
  EXPECT_EQ(n1.requests().size(), 2u);
}

TEST(ClientBehaviour, AdminActsOnTheFirstEndpointOnly) {
  FakeNode n2("n2", [](const pb::Request&) {
    pb::Response r;
    r.mutable_admin()->set_message("ok");
    return r;
  });
  const auto first = closed_endpoint();
  auto c = stigmergy::Client::create(options({first, n2.endpoint()}));
  ASSERT_TRUE(c.ok());
  auto r = c->admin_partition({"n3"});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find(first), std::string::npos) << r.error().message;
  EXPECT_NE(r.error().message.find("first endpoint"), std::string::npos) << r.error().message;
  EXPECT_TRUE(n2.requests().empty());
}

TEST(ClientBehaviour, RejectsBadKeysLocally) {
  auto c = stigmergy::Client::create(options({closed_endpoint()}));
  ASSERT_TRUE(c.ok());
  auto r = c->get("");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, stigmergy::ErrorCode::kInvalidArgument);
  auto r2 = c->put("", "v");
  ASSERT_FALSE(r2.ok());
  EXPECT_EQ(r2.error().code, stigmergy::ErrorCode::kInvalidArgument);
  auto r3 = c->counter_add("", 1);
  ASSERT_FALSE(r3.ok());
  EXPECT_EQ(r3.error().code, stigmergy::ErrorCode::kInvalidArgument);
}

}  // namespace
