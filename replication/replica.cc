#include "replication/replica.h"

#include <algorithm>
#include <stdexcept>

#include "replication/hash.h"
#include "replication/key_space.h"
#include "replication/lazy_path.h"
#include "replication/printable.h"
#include "replication/strong/strong_path.h"

namespace stig::replication {

namespace {

// The key spaces some path of the core reads back at start. Anything else
// on disk is refused: a key nobody owns means a newer or foreign format.
constexpr KeySpace kOwnedSpaces[] = {KeySpace::kLazyKey,  KeySpace::kGrave,     KeySpace::kMeta,
                                     KeySpace::kRaftLog,  KeySpace::kRaftState, KeySpace::kSnapshot};

void refuse_unowned_keys(const RecoveredState& recovered) {
  std::string owned;
  for (KeySpace s : kOwnedSpaces) owned.push_back(static_cast<char>(s));
  std::sort(owned.begin(), owned.end());
  // Scan each gap between owned spaces; the first key found is an error.
  std::string from;  // "" = the start of the store
  auto check_gap = [&](std::string_view begin, std::string_view end) {
    std::string unknown;
    Status st = recovered.scan(begin, end, [&](std::string_view key, std::string_view) {
      unknown = std::string(key);
      return false;
    });
    if (!st.is_ok()) throw std::invalid_argument(st.message());
    if (!unknown.empty()) throw std::invalid_argument("unknown key in storage: '" + printable(unknown) + "'");
  };
  for (char c : owned) {
    check_gap(from, std::string(1, c));
    from = std::string(1, static_cast<char>(c + 1));
  }
  check_gap(from, std::string(1, '\xff') + std::string(8, '\xff'));
}

// Appends `part` to `into`, taking the vector whole when `into` is empty:
// usually one path has all the messages and replies, and moving element by
// element costs a Response each a new message and a swap.
template <typename T>
void append(std::vector<T>& into, std::vector<T>& part) {
  if (into.empty())
    into.swap(part);
  else
    std::move(part.begin(), part.end(), std::back_inserter(into));
}

// Appends `part` to `into`: persists and items keep their order within the
// part; a sync is owed if any part with persists owes one.
void merge_output(Output& into, Output&& part) {
  if (!part.persist.empty()) into.sync = (into.persist.empty() ? false : into.sync) || part.sync;
  append(into.persist, part.persist);
  append(into.messages, part.messages);
  append(into.replies, part.replies);
  into.wake_at = std::min(into.wake_at, part.wake_at);
}

}  // namespace

Status RecoveredEntries::scan(std::string_view begin, std::string_view end, const Visitor& visit) const {
  auto it = std::lower_bound(entries.begin(), entries.end(), begin,
                             [](const auto& e, std::string_view k) { return std::string_view(e.first) < k; });
  for (; it != entries.end() && std::string_view(it->first) < end; ++it)
    if (!visit(it->first, it->second)) break;
  return Status::ok();
}

Replica::Replica(const Config& config, uint64_t seed, const RecoveredState& recovered) {
  refuse_unowned_keys(recovered);
  lazy_ = std::make_unique<LazyPath>(config, seed, recovered);
  // Its own seed, so the lazy path's random choices do not shift Raft's,
  // and mixed with the node's id: nodes handed one seed must still draw
  // different election timeouts, or their elections split forever.
  strong_ = std::make_unique<StrongPath>(config, mix64(seed ^ hash_bytes(config.self)), recovered);
  // Injected bug (stig-sim --inject-bug acl-allows-all): rules are not checked.
  access_control_ = config.access_control && !config.test_faults.acl_allows_all;
}

Replica::~Replica() = default;

void Replica::step(const Now& now, Input input) {
  // Off the hot path unless there is something to check: an unauthenticated
  // request with access control off acts as it claims, unchecked.
  if (auto* c = std::get_if<ClientInput>(&input); c && (access_control_ || c->identity.authenticated))
    if (!admit(*c)) return;
  if (auto* c = std::get_if<ClientInput>(&input); c && c->request.has_strong())
    return strong_->on_client(now, c->token, c->request);
  if (auto* p = std::get_if<PeerInput>(&input); p && p->message.has_raft()) {
    if (!is_cluster_member(p->from)) return;  // only cluster members take part in Raft
    strong_->on_peer(now, p->from, p->message.raft());
    return lazy_->step(now, Tick{});  // the lazy path's timers still run
  }
  if (std::holds_alternative<Leave>(input)) {
    strong_->on_leave(now);
    return lazy_->step(now, Tick{});
  }
  if (auto* d = std::get_if<Persisted>(&input)) {
    strong_->on_persisted(now, d->through_output);
    return lazy_->step(now, Tick{});
  }
  // Lazy requests, gossip and ticks; every path sees the time pass.
  lazy_->step(now, input);
  strong_->on_tick(now);
}

Status Replica::acting_agent(const ClientIdentity& identity, const pb::Request& request,
                             std::string_view* agent) const {
  *agent = request.agent();
  if (!identity.authenticated) return Status::ok();  // as claimed
  if (request.agent().empty() || request.agent() == identity.agent) {
    *agent = identity.agent;
    return Status::ok();
  }
  // Acting for another agent (like Kubernetes impersonation): an admin's
  // credential may name any agent, e.g. `stig --agent fulfilment put ...`.
  if (strong_->state_machine().acl().is_global_admin(identity.agent)) return Status::ok();
  return Status::permission_denied("agent '" + printable(identity.agent, 128) + "' may not act as '" +
                                   printable(request.agent(), 128) + "' (needs admin)");
}

Status Replica::authorize(const ClientIdentity& identity, const pb::Request& request) const {
  std::string_view agent;
  if (Status st = acting_agent(identity, request, &agent); !st.is_ok()) return st;
  if (!access_control_) return Status::ok();
  return strong_->state_machine().acl().authorize(agent, request);
}

bool Replica::admit(ClientInput& input) {
  std::string_view agent;
  Status st = acting_agent(input.identity, input.request, &agent);
  if (st.is_ok() && agent.data() != input.request.agent().data()) input.request.set_agent(std::string(agent));
  if (st.is_ok() && access_control_)
    st = strong_->state_machine().acl().authorize(input.request.agent(), input.request);
  if (st.is_ok()) return true;
  // Refused before any path saw it: nothing was written, pushed or proposed.
  pb::Response r;
  r.set_seq(input.request.seq());
  r.set_node(id());
  r.set_node_dot(lazy_->dot_counter());
  r.set_error(pb::PERMISSION_DENIED);
  r.set_error_message(one_line_utf8(st.message()));
  if (input.request.has_strong()) {
    r.mutable_strong()->set_error(pb::PERMISSION_DENIED);
    r.mutable_strong()->set_error_message(r.error_message());
  }
  refused_.push_back(Reply{input.token, std::move(r), ReleaseAfter::kAtOnce});
  return false;
}

Output Replica::take_output() {
  Output out;
  out.sync = false;
  const uint64_t id = ++outputs_;
  std::move(refused_.begin(), refused_.end(), std::back_inserter(out.replies));
  refused_.clear();
  merge_output(out, lazy_->take_output());
  merge_output(out, strong_->take_output(id));
  if (out.persist.empty()) out.sync = true;  // nothing to sync; keep the safe default
  add_raft_status(out);
  out.id = id;
  return out;
}

bool Replica::is_cluster_member(const NodeId& id) const {
  const Config& c = lazy_->config();
  for (const auto& p : c.peers)
    if (p.id == id) return true;
  return false;
}

// Cluster status is the lazy path's answer; this node's Raft view is added
// to its own line.
void Replica::add_raft_status(Output& out) const {
  for (auto& r : out.replies) {
    if (!r.response.has_cluster_status()) continue;
    for (auto& n : *r.response.mutable_cluster_status()->mutable_nodes()) {
      if (n.id() != id()) continue;
      n.set_role(strong_->role());
      n.set_term(strong_->term());
      n.set_commit_index(strong_->commit_index());
    }
  }
}

const NodeId& Replica::id() const { return lazy_->config().self; }
uint64_t Replica::state_digest() const { return lazy_->store().digest(); }
uint64_t Replica::live_keys() const { return lazy_->store().live_keys(); }
uint64_t Replica::tombstone_keys() const { return lazy_->store().tombstone_keys(); }
size_t Replica::retry_cache_clients() const { return lazy_->retry_cache_clients(); }
uint64_t Replica::pushes_adopted() const { return lazy_->pushes_adopted(); }
size_t Replica::retry_cache_bytes() const { return lazy_->retry_cache_bytes(); }
uint64_t Replica::dot_counter() const { return lazy_->dot_counter(); }
std::string Replica::raft_role() const { return strong_->role(); }
uint64_t Replica::raft_term() const { return strong_->term(); }
uint64_t Replica::raft_commit_index() const { return strong_->commit_index(); }
NodeId Replica::raft_leader() const { return strong_->leader(); }
const raft::Raft* Replica::raft() const { return strong_->raft(); }

}  // namespace stig::replication
