// Access rules (replication/strong/acl.h): the pure evaluation, the state
// machine that stores them (apply, snapshot, restore, malformed commands),
// and enforcement in the core message by message: lazy and strong keys,
// locks, admin verbs, the identity ("acting for") rule, and that a refused
// write leaves nothing behind.
#include <gtest/gtest.h>

#include "replication/hash.h"
#include "replication/replica.h"
#include "replication/strong/acl.h"
#include "replication/strong/state_machine.h"
#include "tests/unit/test_cluster.h"

namespace stig::replication {
namespace {

pb::AclRule Rule(const std::string& subject, pb::AclPermission p, const std::string& prefix) {
  pb::AclRule r;
  r.set_subject(subject);
  r.set_permission(p);
  r.set_prefix(prefix);
  return r;
}
pb::AclBinding Binding(const std::string& agent, const std::string& role) {
  pb::AclBinding b;
  b.set_agent(agent);
  b.set_role(role);
  return b;
}

// --- evaluation -------------------------------------------------------------------

TEST(AclTable, PrefixesRolesImplicationAndTheAdminAgent) {
  AclTable t;
  ASSERT_TRUE(t.grant(Rule("agent:bob", pb::ACL_WRITE, "orders/")).is_ok());
  ASSERT_TRUE(t.grant(Rule("role:auditors", pb::ACL_READ, "")).is_ok());
  ASSERT_TRUE(t.grant(Rule("role:ops", pb::ACL_ADMIN, "stock/")).is_ok());
  ASSERT_TRUE(t.bind(Binding("carol", "auditors")).is_ok());
  ASSERT_TRUE(t.bind(Binding("dave", "ops")).is_ok());

  // Prefixes: a rule covers exactly the keys that start with its prefix.
  EXPECT_TRUE(t.allows("bob", Permission::kWrite, "orders/17"));
  EXPECT_TRUE(t.allows("bob", Permission::kWrite, "orders/"));
  EXPECT_FALSE(t.allows("bob", Permission::kWrite, "orders"));
  EXPECT_FALSE(t.allows("bob", Permission::kWrite, "stock/1"));
  EXPECT_FALSE(t.allows("bob", Permission::kWrite, "order"));
  // Implication: write implies read, not admin.
  EXPECT_TRUE(t.allows("bob", Permission::kRead, "orders/17"));
  EXPECT_FALSE(t.allows("bob", Permission::kAdmin, "orders/17"));
  // Roles: the empty prefix covers every key, read only.
  EXPECT_TRUE(t.allows("carol", Permission::kRead, "anything"));
  EXPECT_TRUE(t.allows("carol", Permission::kRead, ""));
  EXPECT_FALSE(t.allows("carol", Permission::kWrite, "orders/1"));
  EXPECT_TRUE(t.allows("dave", Permission::kWrite, "stock/9"));
  EXPECT_TRUE(t.allows("dave", Permission::kAdmin, "stock/9"));
  EXPECT_FALSE(t.is_global_admin("dave"));
  // An unknown agent holds nothing (secure default); the admin agent everything.
  EXPECT_FALSE(t.allows("mallory", Permission::kRead, "orders/1"));
  EXPECT_TRUE(t.allows("admin", Permission::kAdmin, "x"));
  EXPECT_TRUE(t.is_global_admin("admin"));
  // A role's name is not an agent's: binding is what grants.
  EXPECT_FALSE(t.allows("auditors", Permission::kRead, "x"));

  // The refusal names the agent, the key and the missing permission.
  Status st = t.check("bob", Permission::kWrite, "stock/1");
  EXPECT_EQ(st.code(), Status::Code::kPermissionDenied);
  EXPECT_EQ(st.message(), "agent 'bob' may not write 'stock/1' (no rule grants write on a prefix of it)");
}

TEST(AclTable, AdminOnTheEmptyPrefixIsGlobalAdminAndTheAdminAgentCanBeRenamed) {
  AccessOptions o;
  o.admin_agent = "root";
  AclTable t(o);
  EXPECT_FALSE(t.is_global_admin("admin"));
  EXPECT_TRUE(t.is_global_admin("root"));
  ASSERT_TRUE(t.grant(Rule("agent:ops-lead", pb::ACL_ADMIN, "")).is_ok());
  EXPECT_TRUE(t.is_global_admin("ops-lead"));
  EXPECT_TRUE(t.allows("ops-lead", Permission::kWrite, "anything"));
}

TEST(AclTable, RevokeAndUnbindRemoveExactlyWhatTheyName) {
  AclTable t;
  ASSERT_TRUE(t.grant(Rule("agent:bob", pb::ACL_WRITE, "orders/")).is_ok());
  ASSERT_TRUE(t.grant(Rule("agent:bob", pb::ACL_READ, "orders/")).is_ok());
  ASSERT_TRUE(t.grant(Rule("agent:bob", pb::ACL_WRITE, "orders/")).is_ok());  // again: a no-op
  EXPECT_EQ(t.rules(), 2u);
  bool removed = false;
  ASSERT_TRUE(t.revoke(Rule("agent:bob", pb::ACL_ADMIN, "orders/"), &removed).is_ok());
  EXPECT_FALSE(removed);
  ASSERT_TRUE(t.revoke(Rule("agent:bob", pb::ACL_WRITE, "orders/"), &removed).is_ok());
  EXPECT_TRUE(removed);
  EXPECT_FALSE(t.allows("bob", Permission::kWrite, "orders/1"));
  EXPECT_TRUE(t.allows("bob", Permission::kRead, "orders/1"));
  EXPECT_EQ(t.rules(), 1u);

  ASSERT_TRUE(t.grant(Rule("role:w", pb::ACL_WRITE, "")).is_ok());
  ASSERT_TRUE(t.bind(Binding("bob", "w")).is_ok());
  EXPECT_TRUE(t.allows("bob", Permission::kWrite, "x"));
  ASSERT_TRUE(t.unbind(Binding("bob", "w"), &removed).is_ok());
  EXPECT_TRUE(removed);
  EXPECT_FALSE(t.allows("bob", Permission::kWrite, "x"));
  ASSERT_TRUE(t.unbind(Binding("bob", "w"), &removed).is_ok());
  EXPECT_FALSE(removed);
  EXPECT_EQ(t.bindings(), 0u);
}

TEST(AclTable, MalformedRulesAreRefusedAndChangeNothing) {
  AccessOptions o;
  o.max_rules = 2;
  o.max_bindings = 1;
  AclTable t(o);
  const std::string long_name(o.max_name_bytes + 1, 'a');
  const std::string long_prefix(o.max_prefix_bytes + 1, 'p');
  for (const auto& bad : {Rule("bob", pb::ACL_READ, ""), Rule("agent:", pb::ACL_READ, ""),
                          Rule("role:", pb::ACL_READ, ""), Rule("user:bob", pb::ACL_READ, ""),
                          Rule("agent:bob", pb::ACL_PERMISSION_UNSPECIFIED, ""),
                          Rule("agent:bob", static_cast<pb::AclPermission>(7), ""),
                          Rule("agent:" + long_name, pb::ACL_READ, ""), Rule("agent:bob", pb::ACL_READ, long_prefix)}) {
    Status st = t.grant(bad);
    EXPECT_EQ(st.code(), Status::Code::kInvalidArgument) << bad.ShortDebugString();
    EXPECT_EQ(st.message().find('\n'), std::string::npos);
    bool removed = true;
    EXPECT_FALSE(t.revoke(bad, &removed).is_ok());
    EXPECT_FALSE(removed);
  }
  EXPECT_EQ(t.rules(), 0u);
  EXPECT_FALSE(t.bind(Binding("", "r")).is_ok());
  EXPECT_FALSE(t.bind(Binding("a", "")).is_ok());
  EXPECT_FALSE(t.bind(Binding(long_name, "r")).is_ok());
  EXPECT_EQ(t.bindings(), 0u);
  // Bounded: past the limits, nothing more is stored.
  ASSERT_TRUE(t.grant(Rule("agent:a", pb::ACL_READ, "1")).is_ok());
  ASSERT_TRUE(t.grant(Rule("agent:a", pb::ACL_READ, "2")).is_ok());
  EXPECT_FALSE(t.grant(Rule("agent:a", pb::ACL_READ, "3")).is_ok());
  EXPECT_TRUE(t.grant(Rule("agent:a", pb::ACL_READ, "2")).is_ok());  // already there: fine at the limit
  ASSERT_TRUE(t.bind(Binding("a", "r")).is_ok());
  EXPECT_FALSE(t.bind(Binding("a", "s")).is_ok());
  EXPECT_EQ(t.rules(), 2u);
  EXPECT_EQ(t.bindings(), 1u);
}

TEST(AclTable, RequestsNeedWhatTheyTouch) {
  AclTable t;
  ASSERT_TRUE(t.grant(Rule("agent:bob", pb::ACL_WRITE, "orders/")).is_ok());
  ASSERT_TRUE(t.grant(Rule("agent:bob", pb::ACL_READ, "stock/")).is_ok());
  auto txn = [](std::vector<std::pair<char, std::string>> ops) {
    pb::StrongRequest r;
    for (const auto& [kind, key] : ops) {
      if (kind == 'c') r.mutable_txn()->add_compare()->set_key(key);
      if (kind == 'p') r.mutable_txn()->add_success()->mutable_put()->set_key(key);
      if (kind == 'g') r.mutable_txn()->add_failure()->mutable_get()->set_key(key);
      if (kind == 'd') r.mutable_txn()->add_failure()->mutable_delete_()->set_key(key);
    }
    return r;
  };
  EXPECT_TRUE(t.authorize("bob", txn({{'c', "stock/1"}, {'p', "orders/1"}, {'g', "stock/2"}})).is_ok());
  EXPECT_FALSE(t.authorize("bob", txn({{'c', "stock/1"}, {'p', "stock/1"}})).is_ok());
  EXPECT_FALSE(t.authorize("bob", txn({{'c', "other"}, {'p', "orders/1"}})).is_ok());
  EXPECT_FALSE(t.authorize("bob", txn({{'p', "orders/1"}, {'d', "stock/3"}})).is_ok());

  // Ranges need read on the prefix all their keys share.
  pb::StrongRequest range;
  range.mutable_range()->set_prefix("stock/");
  EXPECT_TRUE(t.authorize("bob", range).is_ok());
  range.mutable_range()->set_prefix("");
  EXPECT_FALSE(t.authorize("bob", range).is_ok());
  range.mutable_range()->set_start("stock/a");
  range.mutable_range()->set_end("stock/m");
  EXPECT_EQ(range_prefix(range.range()), "stock/");
  EXPECT_TRUE(t.authorize("bob", range).is_ok());
  range.mutable_range()->set_end("");  // open-ended: reaches every later key
  EXPECT_FALSE(t.authorize("bob", range).is_ok());
  range.mutable_range()->set_start("stock/a");
  range.mutable_range()->set_end("su");
  EXPECT_EQ(range_prefix(range.range()), "s");
  EXPECT_FALSE(t.authorize("bob", range).is_ok());

  // Fences read the lock's state; locks are written.
  pb::StrongRequest put;
  put.mutable_put()->set_key("orders/1");
  put.mutable_put()->mutable_fence()->set_lock("locks/charge");
  put.mutable_put()->mutable_fence()->set_token(1);
  EXPECT_FALSE(t.authorize("bob", put).is_ok());
  ASSERT_TRUE(t.grant(Rule("agent:bob", pb::ACL_READ, "locks/")).is_ok());
  EXPECT_TRUE(t.authorize("bob", put).is_ok());
  pb::StrongRequest acquire;
  acquire.mutable_lock_acquire()->set_name("locks/charge");
  EXPECT_FALSE(t.authorize("bob", acquire).is_ok());
  acquire.mutable_lock_acquire()->set_name("orders/lock");
  EXPECT_TRUE(t.authorize("bob", acquire).is_ok());

  // Sessions and cluster status need nothing; compaction and ACL changes need global admin.
  pb::StrongRequest grant;
  grant.mutable_session_grant()->set_ttl_ms(1000);
  EXPECT_TRUE(t.authorize("nobody", grant).is_ok());
  pb::Request status;
  status.mutable_cluster_status();
  EXPECT_TRUE(t.authorize("nobody", status).is_ok());
  pb::StrongRequest compact;
  compact.mutable_compact()->set_revision(1);
  EXPECT_FALSE(t.authorize("bob", compact).is_ok());
  EXPECT_TRUE(t.authorize("admin", compact).is_ok());
  pb::Request heal;
  heal.mutable_admin_heal();
  Status st = t.authorize("bob", heal);
  EXPECT_EQ(st.code(), Status::Code::kPermissionDenied);
  EXPECT_NE(st.message().find("agent 'bob' may not run admin heal"), std::string::npos) << st.message();
}

// --- the state machine ----------------------------------------------------------------

class AclStateMachineTest : public ::testing::Test {
 protected:
  static StateMachineOptions Enforcing() {
    StateMachineOptions o;
    o.access.enabled = true;
    return o;
  }
  pb::StrongResponse Run(const pb::StrongRequest& req, const std::string& agent) {
    pb::StrongCommand c;
    c.set_client_id("client-" + agent);
    c.set_seq(++seq);
    c.set_agent(agent);
    c.set_leader_wall_ms(1000);
    *c.mutable_request() = req;
    auto r = sm.apply(++index, c);
    EXPECT_TRUE(r.response.has_value());
    return r.response.value_or(pb::StrongResponse());
  }
  static pb::StrongRequest Grant(const pb::AclRule& rule) {
    pb::StrongRequest r;
    *r.mutable_acl_grant()->mutable_rule() = rule;
    return r;
  }
  static pb::StrongRequest Revoke(const pb::AclRule& rule) {
    pb::StrongRequest r;
    *r.mutable_acl_revoke()->mutable_rule() = rule;
    return r;
  }
  static pb::StrongRequest Bind(const std::string& agent, const std::string& role) {
    pb::StrongRequest r;
    *r.mutable_acl_bind()->mutable_binding() = Binding(agent, role);
    return r;
  }
  static pb::StrongRequest Put(const std::string& key) {
    pb::StrongRequest r;
    r.mutable_put()->set_key(key);
    r.mutable_put()->set_value("v");
    return r;
  }
  static pb::StrongRequest List() {
    pb::StrongRequest r;
    r.mutable_acl_list();
    return r;
  }

  StateMachine sm{Enforcing()};
  uint64_t index = 0, seq = 0;
};

TEST_F(AclStateMachineTest, RulesChangeByAppliedCommandsAndOnlyByAnAdmin) {
  EXPECT_EQ(Run(Grant(Rule("agent:bob", pb::ACL_WRITE, "orders/")), "admin").error(), pb::OK);
  // bob cannot change rules, even on his own prefix.
  auto refused = Run(Grant(Rule("agent:bob", pb::ACL_WRITE, "")), "bob");
  EXPECT_EQ(refused.error(), pb::PERMISSION_DENIED);
  EXPECT_EQ(refused.error_message(),
            "agent 'bob' may not change access rules (needs admin on every key: a rule granting admin on the empty "
            "prefix)");
  EXPECT_EQ(Run(List(), "bob").error(), pb::PERMISSION_DENIED);

  EXPECT_EQ(Run(Put("orders/1"), "bob").error(), pb::OK);
  const uint64_t rev = sm.revision();
  auto denied = Run(Put("stock/1"), "bob");
  EXPECT_EQ(denied.error(), pb::PERMISSION_DENIED);
  EXPECT_EQ(denied.error_message(), "agent 'bob' may not write 'stock/1' (no rule grants write on a prefix of it)");
  EXPECT_EQ(sm.revision(), rev) << "a refused write makes no revision";
  EXPECT_EQ(sm.store().latest("stock/1"), nullptr);

  // A global admin made by a rule may change rules too; roles apply once bound.
  EXPECT_EQ(Run(Grant(Rule("role:ops", pb::ACL_ADMIN, "")), "admin").error(), pb::OK);
  EXPECT_EQ(Run(Bind("olga", "ops"), "admin").error(), pb::OK);
  EXPECT_EQ(Run(Grant(Rule("agent:bob", pb::ACL_WRITE, "stock/")), "olga").error(), pb::OK);
  EXPECT_EQ(Run(Put("stock/1"), "bob").error(), pb::OK);
  // Revoking takes effect at the next entry; revoking what is not there is NOT_FOUND.
  EXPECT_EQ(Run(Revoke(Rule("agent:bob", pb::ACL_WRITE, "stock/")), "olga").error(), pb::OK);
  EXPECT_EQ(Run(Put("stock/2"), "bob").error(), pb::PERMISSION_DENIED);
  EXPECT_EQ(Run(Revoke(Rule("agent:bob", pb::ACL_WRITE, "stock/")), "olga").error(), pb::NOT_FOUND);

  auto list = Run(List(), "admin");
  ASSERT_EQ(list.error(), pb::OK);
  ASSERT_EQ(list.acl_rules_size(), 2);
  EXPECT_EQ(list.acl_rules(0).subject(), "agent:bob");
  EXPECT_EQ(list.acl_rules(0).prefix(), "orders/");
  EXPECT_EQ(list.acl_rules(1).subject(), "role:ops");
  ASSERT_EQ(list.acl_bindings_size(), 1);
  EXPECT_EQ(list.acl_bindings(0).agent(), "olga");
}

TEST_F(AclStateMachineTest, MalformedAclCommandsAreBadRequestsAndChangeNothing) {
  for (const auto& req : {Grant(Rule("bob", pb::ACL_READ, "")), Grant(Rule("agent:bob", pb::ACL_PERMISSION_UNSPECIFIED, "")),
                          Grant(Rule("agent:bob", static_cast<pb::AclPermission>(99), "")),
                          Grant(Rule("agent:bob", pb::ACL_READ, std::string(5000, 'k'))),
                          Revoke(Rule("role:", pb::ACL_READ, "")), Bind("", "ops"), Bind("bob", "")}) {
    auto r = Run(req, "admin");
    EXPECT_EQ(r.error(), pb::BAD_REQUEST) << req.ShortDebugString();
    EXPECT_EQ(r.error_message().find('\n'), std::string::npos);
  }
  pb::StrongRequest empty_grant;
  empty_grant.mutable_acl_grant();  // no rule at all
  EXPECT_EQ(Run(empty_grant, "admin").error(), pb::BAD_REQUEST);
  EXPECT_EQ(sm.acl().rules(), 0u);
  EXPECT_EQ(sm.acl().bindings(), 0u);
}

TEST_F(AclStateMachineTest, SnapshotAndRestoreKeepTheRules) {
  ASSERT_EQ(Run(Grant(Rule("agent:bob", pb::ACL_WRITE, "orders/")), "admin").error(), pb::OK);
  ASSERT_EQ(Run(Grant(Rule("role:auditors", pb::ACL_READ, "")), "admin").error(), pb::OK);
  ASSERT_EQ(Run(Bind("carol", "auditors"), "admin").error(), pb::OK);
  const std::string bytes = sm.snapshot();
  auto restored = StateMachine::restore(bytes, Enforcing());
  ASSERT_TRUE(restored) << restored.error().message();
  EXPECT_EQ(restored->snapshot(), bytes);
  EXPECT_EQ(restored->acl().rules(), 2u);
  EXPECT_TRUE(restored->acl().allows("bob", Permission::kWrite, "orders/9"));
  EXPECT_TRUE(restored->acl().allows("carol", Permission::kRead, "x"));
  EXPECT_FALSE(restored->acl().allows("carol", Permission::kWrite, "x"));

  // A snapshot with a bad or repeated rule does not restore.
  pb::StrongSnapshot s;
  ASSERT_TRUE(s.ParseFromString(bytes.substr(8)));
  auto reseal = [](const pb::StrongSnapshot& snap) {
    std::string body = snap.SerializeAsString();
    std::string out(8, '\0');
    const uint64_t sum = hash_bytes(body);
    for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((sum >> (8 * i)) & 0xff);
    return out + body;
  };
  ASSERT_TRUE(StateMachine::restore(reseal(s), Enforcing()));
  pb::StrongSnapshot repeated = s;
  *repeated.add_acl_rules() = s.acl_rules(0);
  EXPECT_FALSE(StateMachine::restore(reseal(repeated), Enforcing()));
  pb::StrongSnapshot bad = s;
  bad.mutable_acl_rules(0)->set_permission(static_cast<pb::AclPermission>(42));
  EXPECT_FALSE(StateMachine::restore(reseal(bad), Enforcing()));
}

TEST_F(AclStateMachineTest, WithAccessControlOffRulesAreStoredButNotChecked) {
  StateMachine off;  // default options: access control off
  pb::StrongCommand c;
  c.set_client_id("c");
  c.set_seq(1);
  c.set_agent("bob");
  *c.mutable_request() = Grant(Rule("agent:bob", pb::ACL_READ, "x"));
  auto r = off.apply(1, c);
  ASSERT_TRUE(r.response);
  EXPECT_EQ(r.response->error(), pb::OK);
  c.set_seq(2);
  *c.mutable_request() = Put("stock/1");
  r = off.apply(2, c);
  EXPECT_EQ(r.response->error(), pb::OK);
  EXPECT_EQ(off.acl().rules(), 1u);
}

// --- enforcement in the core, message by message ------------------------------------------

Config Enforced() {
  Config c;
  c.access_control = true;
  return c;
}

pb::Request As(const std::string& agent, pb::Request r) {
  r.set_agent(agent);
  return r;
}
pb::Request LazyPut(const std::string& key, const std::string& value) {
  pb::Request r;
  r.mutable_put()->set_key(key);
  r.mutable_put()->set_value(value);
  return r;
}
pb::Request LazyGet(const std::string& key) {
  pb::Request r;
  r.mutable_get()->set_key(key);
  return r;
}
pb::Request Strong(const pb::StrongRequest& s) {
  pb::Request r;
  *r.mutable_strong() = s;
  return r;
}
pb::Request StrongPut(const std::string& key, const std::string& value) {
  pb::StrongRequest s;
  s.mutable_put()->set_key(key);
  s.mutable_put()->set_value(value);
  return Strong(s);
}
pb::Request StrongGet(const std::string& key) {
  pb::StrongRequest s;
  s.mutable_get()->set_key(key);
  return Strong(s);
}
pb::Request AclGrant(const std::string& subject, pb::AclPermission p, const std::string& prefix) {
  pb::StrongRequest s;
  *s.mutable_acl_grant()->mutable_rule() = Rule(subject, p, prefix);
  return Strong(s);
}

NodeId Leader(TestCluster& c) {
  c.advance(2000);
  for (auto& [id, n] : c.nodes_)
    if (n->raft_role() == "leader") return id;
  ADD_FAILURE() << "no leader";
  return "";
}

// A cluster enforcing rules, where the admin granted bob write on orders/
// and every node applied it.
class AclEnforcementTest : public ::testing::Test {
 protected:
  AclEnforcementTest() : c(3, Enforced()) {
    leader = Leader(c);
    for (const auto& [id, n] : c.nodes_)
      if (id != leader) follower = id;
    EXPECT_EQ(c.request(leader, As("admin", AclGrant("agent:bob", pb::ACL_WRITE, "orders/"))).error(), pb::OK);
    c.advance(500);  // followers apply the entry with the next heartbeat
  }
  TestCluster c;
  NodeId leader, follower;
};

TEST_F(AclEnforcementTest, LazyWritesOutsideTheGrantsAreRefusedAndNothingIsWritten) {
  const uint64_t pushed = c.pushed_states_;
  const uint64_t keys = c.node(follower).live_keys();
  auto refused = c.request(follower, As("bob", LazyPut("stock/1", "5")));
  EXPECT_EQ(refused.error(), pb::PERMISSION_DENIED);
  EXPECT_EQ(refused.error_message(), "agent 'bob' may not write 'stock/1' (no rule grants write on a prefix of it)");
  c.advance(2000);  // any push or anti-entropy would have happened
  EXPECT_EQ(c.pushed_states_, pushed);
  for (auto& [id, n] : c.nodes_) EXPECT_EQ(n->live_keys(), keys) << id;
  auto read = c.request(follower, As("admin", LazyGet("stock/1")));
  ASSERT_EQ(read.error(), pb::OK);
  EXPECT_EQ(read.get().versions_size(), 0) << "no sibling";

  // Inside the grant: written, recorded as bob's, and bob may read it back.
  ASSERT_EQ(c.request(follower, As("bob", LazyPut("orders/1", "new"))).error(), pb::OK);
  auto mine = c.request(follower, As("bob", LazyGet("orders/1")));
  ASSERT_EQ(mine.error(), pb::OK);
  ASSERT_EQ(mine.get().versions_size(), 1);
  EXPECT_EQ(mine.get().versions(0).modified_by(), "bob");
  // Reads need read: bob holds none on stock/, nobody holds anything.
  EXPECT_EQ(c.request(follower, As("bob", LazyGet("stock/1"))).error(), pb::PERMISSION_DENIED);
  EXPECT_EQ(c.request(follower, As("nobody", LazyGet("orders/1"))).error(), pb::PERMISSION_DENIED);
}

TEST_F(AclEnforcementTest, CountersAndSetsAreCheckedLikeRegisters) {
  pb::Request add;
  add.mutable_counter_add()->set_key("stock/count");
  add.mutable_counter_add()->set_delta(1);
  EXPECT_EQ(c.request(leader, As("bob", add)).error(), pb::PERMISSION_DENIED);
  add.mutable_counter_add()->set_key("orders/count");
  EXPECT_EQ(c.request(leader, As("bob", add)).error(), pb::OK);
  pb::Request cget;
  cget.mutable_counter_get()->set_key("orders/count");
  auto counter = c.request(leader, As("bob", cget));
  ASSERT_EQ(counter.error(), pb::OK);
  EXPECT_EQ(counter.counter().value(), 1);
  cget.mutable_counter_get()->set_key("stock/count");
  EXPECT_EQ(c.request(leader, As("bob", cget)).error(), pb::PERMISSION_DENIED);

  pb::Request sadd;
  sadd.mutable_set_add()->set_key("stock/tags");
  sadd.mutable_set_add()->set_element("x");
  EXPECT_EQ(c.request(leader, As("bob", sadd)).error(), pb::PERMISSION_DENIED);
  pb::Request srm;
  srm.mutable_set_remove()->set_key("stock/tags");
  srm.mutable_set_remove()->set_element("x");
  EXPECT_EQ(c.request(leader, As("bob", srm)).error(), pb::PERMISSION_DENIED);
  pb::Request sget;
  sget.mutable_set_get()->set_key("stock/tags");
  EXPECT_EQ(c.request(leader, As("bob", sget)).error(), pb::PERMISSION_DENIED);
  sadd.mutable_set_add()->set_key("orders/tags");
  EXPECT_EQ(c.request(leader, As("bob", sadd)).error(), pb::OK);
  EXPECT_EQ(c.node(leader).live_keys(), 2u) << "orders/count and orders/tags only";
}

TEST_F(AclEnforcementTest, StrongWritesOutsideTheGrantsMakeNoRevision) {
  auto before = c.request(leader, As("admin", StrongGet("stock/1")));
  ASSERT_EQ(before.error(), pb::OK);
  const uint64_t commit = c.node(leader).raft_commit_index();
  auto refused = c.request(leader, As("bob", StrongPut("stock/1", "5")));
  EXPECT_EQ(refused.error(), pb::PERMISSION_DENIED);
  EXPECT_EQ(refused.strong().error(), pb::PERMISSION_DENIED);
  EXPECT_EQ(c.node(leader).raft_commit_index(), commit) << "refused before it reached the log";
  auto after = c.request(leader, As("admin", StrongGet("stock/1")));
  EXPECT_FALSE(after.strong().found());
  EXPECT_EQ(after.strong().revision(), before.strong().revision());

  auto ok = c.request(leader, As("bob", StrongPut("orders/1", "new")));
  ASSERT_EQ(ok.error(), pb::OK) << ok.error_message();
  EXPECT_EQ(ok.strong().kv().modified_by(), "bob");

  pb::StrongRequest cas;
  cas.mutable_cas()->set_key("stock/1");
  cas.mutable_cas()->set_new_value("1");
  EXPECT_EQ(c.request(leader, As("bob", Strong(cas))).error(), pb::PERMISSION_DENIED);
  cas.mutable_cas()->set_key("orders/1");
  cas.mutable_cas()->set_expected_value("new");
  EXPECT_EQ(c.request(leader, As("bob", Strong(cas))).error(), pb::OK);

  // A transaction needs every key it touches: one key outside refuses all.
  pb::StrongRequest txn;
  txn.mutable_txn()->add_success()->mutable_put()->set_key("orders/2");
  txn.mutable_txn()->add_success()->mutable_put()->set_key("stock/2");
  EXPECT_EQ(c.request(leader, As("bob", Strong(txn))).error(), pb::PERMISSION_DENIED);
  auto o2 = c.request(leader, As("admin", StrongGet("orders/2")));
  EXPECT_FALSE(o2.strong().found()) << "no part of a refused txn applies";
  txn.mutable_txn()->mutable_success()->RemoveLast();
  EXPECT_EQ(c.request(leader, As("bob", Strong(txn))).error(), pb::OK);
  // Strong reads need read.
  EXPECT_EQ(c.request(leader, As("bob", StrongGet("stock/1"))).error(), pb::PERMISSION_DENIED);
  EXPECT_EQ(c.request(leader, As("bob", StrongGet("orders/1"))).error(), pb::OK);
}

TEST_F(AclEnforcementTest, LocksNeedWriteOnTheirName) {
  pb::StrongRequest grant;
  grant.mutable_session_grant()->set_ttl_ms(10000);
  auto session = c.request(leader, As("bob", Strong(grant)));  // sessions need no rule
  ASSERT_EQ(session.error(), pb::OK);
  pb::StrongRequest acquire;
  acquire.mutable_lock_acquire()->set_name("stock/lock");
  acquire.mutable_lock_acquire()->set_session_id(session.strong().session_id());
  auto refused = c.request(leader, As("bob", Strong(acquire)));
  EXPECT_EQ(refused.error(), pb::PERMISSION_DENIED);
  EXPECT_NE(refused.error_message().find("may not write 'stock/lock'"), std::string::npos);
  acquire.mutable_lock_acquire()->set_name("orders/lock");
  auto held = c.request(leader, As("bob", Strong(acquire)));
  ASSERT_EQ(held.error(), pb::OK) << held.error_message();
  pb::StrongRequest release;
  release.mutable_lock_release()->set_name("orders/lock");
  release.mutable_lock_release()->set_session_id(session.strong().session_id());
  release.mutable_lock_release()->set_token(held.strong().token());
  EXPECT_EQ(c.request(leader, As("mallory", Strong(release))).error(), pb::PERMISSION_DENIED);
  EXPECT_EQ(c.request(leader, As("bob", Strong(release))).error(), pb::OK);
}

TEST_F(AclEnforcementTest, AclChangesAndAdminVerbsNeedGlobalAdminOnEveryNode) {
  auto refused = c.request(leader, As("bob", AclGrant("agent:bob", pb::ACL_WRITE, "")));
  EXPECT_EQ(refused.error(), pb::PERMISSION_DENIED);
  // The follower enforces the rule it applied: bob may write orders/ there too.
  EXPECT_EQ(c.request(follower, As("bob", LazyPut("orders/5", "x"))).error(), pb::OK);
  pb::Request heal = As("bob", pb::Request());
  heal.mutable_admin_heal();
  for (auto& [id, n] : c.nodes_) {
    EXPECT_EQ(n->authorize(ClientIdentity{}, heal).code(), Status::Code::kPermissionDenied) << id;
    EXPECT_TRUE(n->authorize(ClientIdentity{}, As("admin", heal)).is_ok()) << id;
  }
  // A rule granting admin on '' makes another global admin, on every node once applied.
  ASSERT_EQ(c.request(leader, As("admin", AclGrant("agent:ops", pb::ACL_ADMIN, ""))).error(), pb::OK);
  c.advance(500);
  for (auto& [id, n] : c.nodes_) EXPECT_TRUE(n->authorize(ClientIdentity{}, As("ops", heal)).is_ok()) << id;
}

TEST(AclIdentity, AuthenticatedClientsActAsTheirIdentityUnlessAnAdminActsForAnother) {
  TestCluster c(1);  // access control off: only the identity rule applies
  const NodeId n = Leader(c);
  auto send = [&](ClientToken token, ClientIdentity id, pb::Request r) {
    r.set_client_id("client");
    r.set_seq(token);
    c.step(n, ClientInput{token, std::move(r), std::move(id)});
    for (int i = 0; i < 100 && !c.replies_.count(token); ++i) c.advance(10);
    return c.replies_[token];
  };
  auto by = [&](const std::string& key) {
    auto r = c.request(n, LazyGet(key));
    return r.get().versions_size() == 1 ? r.get().versions(0).modified_by() : std::string("?");
  };
  // Empty or equal Request.agent: acts as the identity, whatever it claims.
  EXPECT_EQ(send(101, {"alice", true}, As("", LazyPut("a", "1"))).error(), pb::OK);
  EXPECT_EQ(by("a"), "alice");
  EXPECT_EQ(send(102, {"alice", true}, As("alice", LazyPut("b", "1"))).error(), pb::OK);
  EXPECT_EQ(by("b"), "alice");
  // Naming another agent needs global admin.
  auto refused = send(103, {"alice", true}, As("bob", LazyPut("c", "1")));
  EXPECT_EQ(refused.error(), pb::PERMISSION_DENIED);
  EXPECT_EQ(refused.error_message(), "agent 'alice' may not act as 'bob' (needs admin)");
  EXPECT_EQ(c.request(n, LazyGet("c")).get().versions_size(), 0);
  // The admin's credential acts for any agent (stig --agent fulfilment put ...).
  EXPECT_EQ(send(104, {"admin", true}, As("fulfilment", LazyPut("d", "1"))).error(), pb::OK);
  EXPECT_EQ(by("d"), "fulfilment");
  // Strong writes record the acting agent too.
  auto sp = send(105, {"alice", true}, As("", StrongPut("s", "1")));
  ASSERT_EQ(sp.error(), pb::OK) << sp.error_message();
  EXPECT_EQ(sp.strong().kv().modified_by(), "alice");
  EXPECT_EQ(send(106, {"alice", true}, As("bob", StrongPut("s", "2"))).error(), pb::PERMISSION_DENIED);
  // Unauthenticated: the claim stands (a cluster without auth, the simulator).
  EXPECT_EQ(send(107, {}, As("bob", LazyPut("e", "1"))).error(), pb::OK);
  EXPECT_EQ(by("e"), "bob");
}

TEST(AclIdentity, WithAccessControlOffNothingIsChecked) {
  TestCluster c(1);
  const NodeId n = Leader(c);
  EXPECT_EQ(c.request(n, As("bob", LazyPut("stock/1", "1"))).error(), pb::OK);
  EXPECT_EQ(c.request(n, As("bob", StrongPut("stock/1", "1"))).error(), pb::OK);
  pb::Request heal = As("bob", pb::Request());
  heal.mutable_admin_heal();
  EXPECT_TRUE(c.node(n).authorize(ClientIdentity{}, heal).is_ok());
}

}  // namespace
}  // namespace stig::replication
