// The strong path from the `stig` CLI against a real 3-node cluster: round
// trips with --json, exit codes for refusals (3), bad input (2), `stig lock
// -- CMD` with its fencing token, two locks serializing, a follower endpoint
// (leader hint followed) and cluster status showing one leader.
#include <stdlib.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <functional>
#include <set>
#include <thread>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "process_cluster.h"

namespace stig::testing {
namespace {

using namespace std::chrono_literals;
using json = nlohmann::json;

json parse(const CliResult& r) {
  json j = json::parse(r.out, nullptr, false);
  EXPECT_FALSE(j.is_discarded()) << describe(r);
  return j;
}

size_t lines(const std::string& s) { return static_cast<size_t>(std::count(s.begin(), s.end(), '\n')); }

// One cluster for the whole suite: elections and start-up dominate the time.
class StrongCli : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    cluster_ = new ProcessCluster(3);
    for (int i = 0; i < 3; ++i) ASSERT_TRUE(cluster_->wait_ready(i));
    // A leader exists once a linearizable read succeeds.
    ASSERT_TRUE(eventually([] { return stig({"strong", "get", "warm-up"}).status == 0; }, 30s));
  }
  static void TearDownTestSuite() {
    delete cluster_;
    cluster_ = nullptr;
  }
  static CliResult stig(const std::vector<std::string>& args) {
    return run_stig(cluster_->all_endpoints(), "cli-tester", args);
  }
  static CliResult stig_at(int node, const std::vector<std::string>& args) {
    return run_stig(cluster_->endpoint(node), "cli-tester", args);
  }
  // Runs `stig ARGS` with `input` on stdin (through sh, as run_command has no stdin).
  static CliResult stig_stdin(const std::string& input, const std::vector<std::string>& args) {
    // sh -c SCRIPT STIG INPUT ARGS...: $0 is stig, $1 the input; after the
    // shift "$@" is stig's arguments.
    std::vector<std::string> argv = {"/bin/sh", "-c", "in=\"$1\"; shift; printf '%s' \"$in\" | \"$0\" \"$@\"",
                                     std::string(STIG_BIN_DIR) + "/stig", input, "--endpoints",
                                     cluster_->all_endpoints(), "--agent", "cli-tester"};
    argv.insert(argv.end(), args.begin(), args.end());
    CliResult r;
    r.status = run_command(argv, &r.out, &r.err);
    return r;
  }
  static ProcessCluster* cluster_;
};

ProcessCluster* StrongCli::cluster_ = nullptr;

TEST_F(StrongCli, PutGetCasDelRoundTripWithJson) {
  auto put = stig({"--json", "strong", "put", "inv:a", "3"});
  ASSERT_EQ(put.status, 0) << describe(put);
  auto pj = parse(put);
  EXPECT_EQ(pj["version"], 1);
  EXPECT_EQ(pj["value"], "3");

  auto get = stig({"--json", "strong", "get", "inv:a"});
  ASSERT_EQ(get.status, 0) << describe(get);
  auto gj = parse(get);
  std::vector<std::string> keys;  // in the order printed
  const auto ordered = nlohmann::ordered_json::parse(get.out);
  for (auto it = ordered.begin(); it != ordered.end(); ++it) keys.push_back(it.key());
  EXPECT_EQ(keys, (std::vector<std::string>{"key", "value", "version", "create_revision", "mod_revision",
                                            "modified_by", "modified_at"}));
  EXPECT_EQ(gj["key"], "inv:a");
  EXPECT_EQ(gj["value"], "3");
  EXPECT_EQ(gj["version"], 1);
  EXPECT_EQ(gj["modified_by"], "cli-tester");
  EXPECT_EQ(gj["create_revision"], gj["mod_revision"]);
  EXPECT_EQ(lines(get.out), 1u);

  auto cas = stig({"--json", "strong", "cas", "inv:a", "3", "2"});
  ASSERT_EQ(cas.status, 0) << describe(cas);
  EXPECT_EQ(parse(cas)["version"], 2);

  // Reading at the first revision still sees the old value.
  auto old = stig({"--json", "strong", "get", "inv:a", "--rev", std::to_string(gj["mod_revision"].get<uint64_t>())});
  ASSERT_EQ(old.status, 0) << describe(old);
  EXPECT_EQ(parse(old)["value"], "3");

  auto del = stig({"--json", "strong", "del", "inv:a"});
  ASSERT_EQ(del.status, 0) << describe(del);
  EXPECT_EQ(parse(del)["deleted"], true);

  auto gone = stig({"--json", "strong", "get", "inv:a"});
  ASSERT_EQ(gone.status, 0) << describe(gone);
  auto gonej = parse(gone);
  EXPECT_TRUE(gonej["value"].is_null());
  EXPECT_EQ(gonej["version"], 0);

  auto human = stig({"strong", "get", "inv:a"});
  ASSERT_EQ(human.status, 0) << describe(human);
  EXPECT_NE(human.out.find("not found"), std::string::npos) << human.out;

  auto hist = stig({"--json", "strong", "history", "inv:a"});
  ASSERT_EQ(hist.status, 0) << describe(hist);
  auto hj = parse(hist);
  ASSERT_EQ(hj["versions"].size(), 3u) << hist.out;
  EXPECT_EQ(hj["versions"][0]["deleted"], true);
  EXPECT_EQ(hj["versions"][1]["value"], "2");
  EXPECT_EQ(hj["versions"][2]["value"], "3");
}

TEST_F(StrongCli, RefusalsExitThreeWithOneLine) {
  ASSERT_EQ(stig({"strong", "put", "inv:b", "1"}).status, 0);
  auto cas = stig({"strong", "cas", "inv:b", "7", "0"});
  EXPECT_EQ(cas.status, 3) << describe(cas);
  EXPECT_EQ(lines(cas.err), 1u) << cas.err;
  EXPECT_NE(cas.err.find("not the expected value"), std::string::npos) << cas.err;
  EXPECT_TRUE(cas.out.empty());

  auto ev = stig({"strong", "put", "inv:b", "2", "--expect-version", "0"});
  EXPECT_EQ(ev.status, 3) << describe(ev);
  EXPECT_NE(ev.err.find("CONFLICT"), std::string::npos) << ev.err;
  auto ok = stig({"strong", "put", "inv:b", "2", "--expect-version", "1"});
  EXPECT_EQ(ok.status, 0) << describe(ok);

  // A fence naming a lock nobody holds (an unknown lock) is refused.
  auto unknown = stig({"strong", "put", "inv:b", "3", "--fence", "no-such-lock:5"});
  EXPECT_EQ(unknown.status, 3) << describe(unknown);
  EXPECT_NE(unknown.err.find("nobody holds"), std::string::npos) << unknown.err;
  EXPECT_EQ(lines(unknown.err), 1u);
}

TEST_F(StrongCli, StaleFenceIsRefused) {
  // First holder: its token, taken in a command that prints it.
  auto first = stig({"lock", "fence-lock", "--", "sh", "-c", "echo $STIG_FENCE_TOKEN"});
  ASSERT_EQ(first.status, 0) << describe(first);
  const std::string old_token = first.out.substr(0, first.out.find('\n'));
  ASSERT_FALSE(old_token.empty());
  // Second holder writes with the old token while holding the lock itself.
  const std::string stig_bin = std::string(STIG_BIN_DIR) + "/stig";
  const std::string script = "\"" + stig_bin + "\" --endpoints " + cluster_->all_endpoints() +
                             " strong put fenced-key v --fence fence-lock:" + old_token +
                             "; echo status=$?; \"" + stig_bin + "\" --endpoints " + cluster_->all_endpoints() +
                             " strong put fenced-key v --fence \"$STIG_LOCK_NAME:$STIG_FENCE_TOKEN\"; echo status=$?";
  auto second = stig({"lock", "fence-lock", "--", "sh", "-c", script});
  ASSERT_EQ(second.status, 0) << describe(second);
  EXPECT_NE(second.out.find("status=3"), std::string::npos) << describe(second);
  EXPECT_NE(second.err.find("stale"), std::string::npos) << describe(second);
  EXPECT_NE(second.out.find("status=0"), std::string::npos) << describe(second);
}

TEST_F(StrongCli, TxnFromStdin) {
  ASSERT_EQ(stig({"strong", "put", "stock:last", "1"}).status, 0);
  const std::string reserve =
      R"({"compare":[{"key":"stock:last","value":"1"},{"key":"order:9","exists":false}],
          "success":[{"put":{"key":"stock:last","value":"0"}},{"put":{"key":"order:9","value":"reserved"}},
                     {"get":{"key":"order:9"}}],
          "failure":[{"get":{"key":"stock:last"}}]})";
  auto won = stig_stdin(reserve, {"--json", "strong", "txn"});
  ASSERT_EQ(won.status, 0) << describe(won);
  auto wj = parse(won);
  EXPECT_EQ(wj["succeeded"], true);
  ASSERT_EQ(wj["results"].size(), 3u);
  EXPECT_EQ(wj["results"][2]["value"], "reserved");
  // The same transaction again: the compares fail, the failure branch runs.
  auto lost = stig_stdin(reserve, {"--json", "strong", "txn"});
  ASSERT_EQ(lost.status, 0) << describe(lost);
  auto lj = parse(lost);
  EXPECT_EQ(lj["succeeded"], false);
  ASSERT_EQ(lj["results"].size(), 1u);
  EXPECT_EQ(lj["results"][0]["value"], "0");
}

TEST_F(StrongCli, BadInputIsOneLineAndNeverHurtsANode) {
  const std::vector<std::pair<std::string, std::string>> bad_txns = {
      {"{not json", "invalid JSON"},
      {"", "standard input is empty"},
      {"[]", "expected an object"},
      {R"({"success":[{"put":{"key":"k"}}]})", "missing \"value\""},
      {R"({"compare":[{"key":"k","version":1,"value":"x"}],"success":[{"get":{"key":"k"}}]})", "exactly one of"},
      {R"({"compare":[{"key":"k","version":1,"op":"~"}],"success":[{"get":{"key":"k"}}]})", "unknown op"},
      {R"({"success":[{"frob":{"key":"k"}}]})", "unknown op"},
      {R"({"sucess":[]})", "unknown field"},
      {R"({"success":[{"get":{"key":"k"}}],"fence":"nolock"})", "bad fence"},
  };
  for (const auto& [input, needle] : bad_txns) {
    auto r = stig_stdin(input, {"strong", "txn"});
    EXPECT_EQ(r.status, 2) << input << "\n" << describe(r);
    EXPECT_EQ(lines(r.err), 1u) << input << "\n" << r.err;
    EXPECT_NE(r.err.find(needle), std::string::npos) << input << "\n" << r.err;
  }
  auto ttl0 = stig({"lock", "bad-lock", "--ttl", "0", "--", "true"});
  EXPECT_EQ(ttl0.status, 2) << describe(ttl0);
  EXPECT_NE(ttl0.err.find("--ttl"), std::string::npos) << ttl0.err;
  auto huge = stig({"lock", "bad-lock", "--ttl", "1000h", "--", "true"});
  EXPECT_EQ(huge.status, 2) << describe(huge);
  auto no_cmd = stig({"lock", "bad-lock"});
  EXPECT_EQ(no_cmd.status, 2) << describe(no_cmd);
  auto bad_time = stig({"strong", "get", "k", "--at", "yesterday"});
  EXPECT_EQ(bad_time.status, 2) << describe(bad_time);
  EXPECT_NE(bad_time.err.find("RFC 3339"), std::string::npos);
  auto bad_fence = stig({"strong", "put", "k", "v", "--fence", "lock-without-token"});
  EXPECT_EQ(bad_fence.status, 2) << describe(bad_fence);
  // A txn with two writes to one key is refused by the node (BAD_REQUEST): exit 2.
  auto twice = stig_stdin(R"({"success":[{"put":{"key":"k","value":"1"}},{"put":{"key":"k","value":"2"}}]})",
                          {"strong", "txn"});
  EXPECT_EQ(twice.status, 2) << describe(twice);
  EXPECT_EQ(lines(twice.err), 1u);
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(cluster_->running(i)) << "node " << i << " died";
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(cluster_->wait_ready(i, 5s)) << "node " << i << " does not answer";
}

TEST_F(StrongCli, LockRunsTheCommandWithTheTokenAndItsStatus) {
  auto r = stig({"lock", "job-lock", "--", "sh", "-c", "echo $STIG_LOCK_NAME $STIG_FENCE_TOKEN; exit 7"});
  EXPECT_EQ(r.status, 7) << describe(r);
  const auto space = r.out.find(' ');
  ASSERT_NE(space, std::string::npos) << describe(r);
  EXPECT_EQ(r.out.substr(0, space), "job-lock");
  const std::string token = r.out.substr(space + 1, r.out.find('\n') - space - 1);
  EXPECT_GT(std::stoull(token), 0u);
  // Released after the command: a try gets it at once, with a newer token.
  auto t = stig({"--json", "lock", "try", "job-lock"});
  ASSERT_EQ(t.status, 0) << describe(t);
  auto tj = parse(t);
  EXPECT_EQ(tj["acquired"], true);
  EXPECT_GT(tj["token"].get<uint64_t>(), std::stoull(token));
  // A command that cannot run: 127, lock released.
  auto missing = stig({"lock", "job-lock", "--", "/no/such/program"});
  EXPECT_EQ(missing.status, 127) << describe(missing);
  EXPECT_EQ(stig({"lock", "try", "job-lock"}).status, 0);
}

TEST_F(StrongCli, LockKeepsItsSessionAliveWhileTheCommandRuns) {
  // A 300 ms TTL and a 2.5 s command: without keepalives the lock would free
  // itself long before the command ends.
  CliResult holder;
  std::thread t([&] { holder = stig({"lock", "ka-lock", "--ttl", "300ms", "--", "sleep", "2.5"}); });
  std::this_thread::sleep_for(1500ms);
  auto busy = stig({"lock", "try", "ka-lock"});
  // A bounded wait that runs out is BUSY too, exit 3, and CMD never runs.
  auto timed_out = stig({"lock", "ka-lock", "--wait", "200ms", "--", "echo", "ran"});
  t.join();
  EXPECT_EQ(holder.status, 0) << describe(holder);
  EXPECT_EQ(busy.status, 3) << describe(busy);
  EXPECT_EQ(timed_out.status, 3) << describe(timed_out);
  EXPECT_TRUE(timed_out.out.empty()) << describe(timed_out);
  EXPECT_EQ(lines(timed_out.err), 1u) << describe(timed_out);
  EXPECT_TRUE(holder.err.empty()) << holder.err;  // no "lost" warning
  EXPECT_EQ(stig({"lock", "try", "ka-lock"}).status, 0);
}

TEST_F(StrongCli, TwoLocksOnOneNameSerialize) {
  char tmpl[] = "/tmp/stig-lock-XXXXXX";
  const std::string dir = ::mkdtemp(tmpl);
  const std::string log = dir + "/log";
  auto holder = [&](const std::string& who) {
    return stig({"lock", "serial-lock", "--wait", "20s", "--", "sh", "-c",
                 "echo start-" + who + " >> " + log + "; sleep 1; echo end-" + who + " >> " + log});
  };
  CliResult a, b;
  std::thread ta([&] { a = holder("a"); });
  std::this_thread::sleep_for(300ms);
  // While a holds it, a try is refused at once with exit 3.
  auto busy = stig({"lock", "try", "serial-lock"});
  std::thread tb([&] { b = holder("b"); });
  ta.join();
  tb.join();
  EXPECT_EQ(a.status, 0) << describe(a);
  EXPECT_EQ(b.status, 0) << describe(b);
  EXPECT_EQ(busy.status, 3) << describe(busy);
  EXPECT_NE(busy.err.find("held"), std::string::npos) << busy.err;
  std::ifstream in(log);
  std::vector<std::string> events;
  for (std::string line; std::getline(in, line);) events.push_back(line);
  ASSERT_EQ(events.size(), 4u);
  // Never interleaved: each holder's start is followed by its own end.
  EXPECT_EQ(events[0].substr(6), events[1].substr(4)) << events[0] << " " << events[1];
  EXPECT_EQ(events[2].substr(6), events[3].substr(4)) << events[2] << " " << events[3];
  std::filesystem::remove_all(dir);
}

// The node that reports itself leader, or -1 (none right now: an election).
int find_leader(const std::function<CliResult(int, const std::vector<std::string>&)>& at) {
  for (int i = 0; i < 3; ++i) {
    auto s = at(i, {"--json", "cluster", "status"});
    if (s.status != 0) continue;
    json j = json::parse(s.out, nullptr, false);
    if (j.is_discarded()) continue;
    for (const auto& n : j["nodes"]) {
      if (n["state"] == "self" && n["role"] == "leader") return i;
    }
  }
  return -1;
}

TEST_F(StrongCli, FollowerEndpointFollowsTheLeaderHint) {
  // Find the leader, then talk to one follower only (if leadership moves
  // meanwhile, the hint still leads the client to whoever leads).
  int leader = -1;
  ASSERT_TRUE(eventually([&] { return (leader = find_leader(stig_at)) >= 0; }));
  const int follower = (leader + 1) % 3;
  auto put = stig_at(follower, {"--json", "strong", "put", "via-follower", "x"});
  ASSERT_EQ(put.status, 0) << describe(put);
  auto get = stig_at(follower, {"--json", "strong", "get", "via-follower"});
  ASSERT_EQ(get.status, 0) << describe(get);
  EXPECT_EQ(parse(get)["value"], "x");
  // A stale read is served by the follower itself.
  EXPECT_TRUE(eventually([&] {
    auto s = stig_at(follower, {"--json", "strong", "get", "via-follower", "--stale"});
    return s.status == 0 && parse(s)["value"] == "x";
  }));
}

TEST_F(StrongCli, ClusterStatusShowsExactlyOneLeader) {
  // Each node reports only its own role; ask all three. During an election
  // (or right after one, before the old leader hears of it) the count can
  // be off for a moment, so poll until the view is settled.
  std::string last;
  auto one_leader = [&] {
    int leaders = 0;
    std::set<uint64_t> terms;
    last.clear();
    for (int i = 0; i < 3; ++i) {
      auto s = stig_at(i, {"--json", "cluster", "status"});
      if (s.status != 0) return false;
      last += s.out;
      auto j = parse(s);
      for (const auto& n : j["nodes"]) {
        if (n["state"] == "self") {
          EXPECT_TRUE(n["role"].is_string()) << s.out;
          EXPECT_GT(n["commit_index"].get<uint64_t>(), 0u) << s.out;
          if (n["role"] == "leader") ++leaders;
          terms.insert(n["term"].get<uint64_t>());
        } else {
          EXPECT_TRUE(n["role"].is_null()) << s.out;  // only the answering node reports its own
        }
      }
    }
    return leaders == 1 && terms.size() == 1;
  };
  EXPECT_TRUE(eventually(one_leader)) << last;
  auto human = stig_at(0, {"cluster", "status"});
  ASSERT_EQ(human.status, 0);
  EXPECT_NE(human.out.find("ROLE"), std::string::npos) << human.out;
  EXPECT_NE(human.out.find("COMMIT"), std::string::npos) << human.out;
  EXPECT_NE(human.out.find(" - "), std::string::npos) << human.out;  // other nodes' roles are unknown
}

TEST_F(StrongCli, ListIsPaginatedAtOneRevision) {
  for (int i = 0; i < 5; ++i) ASSERT_EQ(stig({"strong", "put", "list:" + std::to_string(i), "v"}).status, 0);
  auto all = stig({"--json", "strong", "list", "list:"});
  ASSERT_EQ(all.status, 0) << describe(all);
  auto aj = parse(all);
  ASSERT_EQ(aj["kvs"].size(), 5u);
  EXPECT_EQ(aj["kvs"][0]["key"], "list:0");
  EXPECT_EQ(aj["more"], false);
  auto some = stig({"--json", "strong", "list", "list:", "--limit", "2"});
  ASSERT_EQ(some.status, 0) << describe(some);
  auto sj = parse(some);
  EXPECT_EQ(sj["kvs"].size(), 2u);
  EXPECT_EQ(sj["more"], true);
}

// Its own cluster: it kills nodes.
TEST(StrongCliFailover, LeaderKilledThenNoMajority) {
  ProcessCluster cluster(3);
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(cluster.wait_ready(i));
  auto stig = [&](const std::vector<std::string>& args) { return run_stig(cluster.all_endpoints(), "failover", args); };
  ASSERT_TRUE(eventually([&] { return stig({"strong", "put", "before", "1"}).status == 0; }, 30s));
  int leader = -1;
  ASSERT_TRUE(eventually([&] {
    return (leader = find_leader([&](int i, const std::vector<std::string>& args) {
              return run_stig(cluster.endpoint(i), "failover", args);
            })) >= 0;
  }));
  cluster.kill9(leader);
  // The CLI finds the new leader by itself (endpoints in any order, the dead one included).
  auto after = stig({"--json", "strong", "put", "after", "2"});
  ASSERT_EQ(after.status, 0) << describe(after);
  auto before = stig({"--json", "strong", "get", "before"});
  ASSERT_EQ(before.status, 0) << describe(before);
  EXPECT_EQ(parse(before)["value"], "1");
  // Kill the new leader too: the survivor, a follower, can never have a
  // majority. (Killing a follower instead would leave a leader that takes
  // the write into its log before check-quorum deposes it: the honest
  // answer then is "outcome unknown", exit 4.)
  int second = -1;
  ASSERT_TRUE(eventually([&] {
    return (second = find_leader([&](int i, const std::vector<std::string>& args) {
              if (!cluster.running(i)) return CliResult{};
              return run_stig(cluster.endpoint(i), "failover", args);
            })) >= 0;
  }));
  ASSERT_NE(second, leader);
  const int survivor = 3 - leader - second;
  cluster.kill9(second);
  const auto start = std::chrono::steady_clock::now();
  auto none = stig({"strong", "put", "never", "3"});
  EXPECT_EQ(none.status, 1) << describe(none);
  EXPECT_NE(none.err.find("no leader"), std::string::npos) << describe(none);
  EXPECT_EQ(lines(none.err), 1u) << none.err;
  EXPECT_LT(std::chrono::steady_clock::now() - start, 25s);
  // A stale read still answers, from the survivor.
  auto stale = run_stig(cluster.endpoint(survivor), "failover", {"--json", "strong", "get", "after", "--stale"});
  ASSERT_EQ(stale.status, 0) << describe(stale);
  EXPECT_EQ(parse(stale)["value"], "2");
  EXPECT_TRUE(cluster.running(survivor));
}

}  // namespace
}  // namespace stig::testing
