#include "sim/history.h"

#include <charconv>
#include <fstream>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

#include "replication/key_state.h"

namespace stig::sim {

namespace pb = stigmergy::v1;
using Json = nlohmann::ordered_json;

const char* event_type_name(EventType t) {
  switch (t) {
    case EventType::kInvoke: return "invoke";
    case EventType::kOk: return "ok";
    case EventType::kFail: return "fail";
    case EventType::kInfo: return "info";
  }
  return "?";
}

size_t History::operations() const {
  size_t n = 0;
  for (const auto& e : events_)
    if (e.type == EventType::kInvoke && e.process != "nemesis") ++n;
  return n;
}

size_t History::faults() const {
  size_t n = 0;
  for (const auto& e : events_)
    if (e.process == "nemesis") ++n;
  return n;
}

namespace {

const char* compare_target_name(TxnCompare::Target t) {
  switch (t) {
    case TxnCompare::Target::kValue: return "value";
    case TxnCompare::Target::kVersion: return "version";
    case TxnCompare::Target::kExists: return "exists";
  }
  return "?";
}

const char* txn_op_name(TxnOp::Kind k) {
  switch (k) {
    case TxnOp::Kind::kPut: return "put";
    case TxnOp::Kind::kDelete: return "del";
    case TxnOp::Kind::kGet: return "get";
  }
  return "?";
}

Json ops_json(const std::vector<TxnOp>& ops) {
  Json a = Json::array();
  for (const auto& o : ops) {
    Json x;
    x["op"] = txn_op_name(o.kind);
    x["key"] = o.key;
    if (o.kind == TxnOp::Kind::kPut) x["value"] = o.value;
    a.push_back(x);
  }
  return a;
}

// The strong path's fields, after the lazy ones, each only when set.
void add_strong_fields(const HistoryEvent& e, Json& j) {
  if (e.expected_version) j["expected_version"] = *e.expected_version;
  if (e.expected_value) j["expected_value"] = *e.expected_value;
  if (e.stale) j["stale"] = true;
  if (e.found) j["found"] = *e.found;
  if (e.version) j["version"] = *e.version;
  if (e.revision) j["revision"] = e.revision;
  if (e.succeeded) j["succeeded"] = *e.succeeded;
  if (e.session) j["session"] = e.session;
  if (e.token) j["token"] = e.token;
  if (!e.fence.empty()) j["fence"] = e.fence;
  if (e.ttl_ms) j["ttl_ms"] = e.ttl_ms;
  if (!e.compares.empty() || !e.success_ops.empty() || !e.failure_ops.empty()) {
    Json t;
    Json cs = Json::array();
    for (const auto& c : e.compares) {
      Json x;
      x["key"] = c.key;
      x["target"] = compare_target_name(c.target);
      x["equal"] = c.equal;
      if (c.target == TxnCompare::Target::kValue) x["value"] = c.value;
      if (c.target == TxnCompare::Target::kVersion) x["version"] = c.version;
      if (c.target == TxnCompare::Target::kExists) x["exists"] = c.exists;
      cs.push_back(x);
    }
    t["compare"] = cs;
    t["success"] = ops_json(e.success_ops);
    t["failure"] = ops_json(e.failure_ops);
    j["txn"] = t;
  }
  if (!e.reads.empty()) {
    Json rs = Json::array();
    for (const auto& r : e.reads)
      rs.push_back(r.exists ? Json{{"value", r.value}, {"version", r.version}} : Json(nullptr));
    j["reads"] = rs;
  }
}

std::vector<TxnOp> ops_from_json(const Json& a) {
  std::vector<TxnOp> out;
  if (!a.is_array()) return out;
  for (const auto& x : a) {
    TxnOp o;
    const std::string op = x.value("op", "get");
    o.kind = op == "put" ? TxnOp::Kind::kPut : op == "del" ? TxnOp::Kind::kDelete : TxnOp::Kind::kGet;
    o.key = x.value("key", "");
    o.value = x.value("value", "");
    out.push_back(o);
  }
  return out;
}

void strong_fields_from_json(const Json& j, HistoryEvent& e) {
  if (j.contains("expected_version")) e.expected_version = j["expected_version"].get<uint64_t>();
  if (j.contains("expected_value")) e.expected_value = j["expected_value"].get<std::string>();
  e.stale = j.value("stale", false);
  if (j.contains("found")) e.found = j["found"].get<bool>();
  if (j.contains("version")) e.version = j["version"].get<uint64_t>();
  e.revision = j.value("revision", uint64_t{0});
  if (j.contains("succeeded")) e.succeeded = j["succeeded"].get<bool>();
  e.session = j.value("session", uint64_t{0});
  e.token = j.value("token", uint64_t{0});
  e.fence = j.value("fence", "");
  e.ttl_ms = j.value("ttl_ms", int64_t{0});
  if (j.contains("txn") && j["txn"].is_object()) {
    const Json& t = j["txn"];
    if (t.contains("compare") && t["compare"].is_array())
      for (const auto& x : t["compare"]) {
        TxnCompare c;
        c.key = x.value("key", "");
        const std::string target = x.value("target", "value");
        c.target = target == "version" ? TxnCompare::Target::kVersion
                   : target == "exists" ? TxnCompare::Target::kExists
                                        : TxnCompare::Target::kValue;
        c.equal = x.value("equal", true);
        c.value = x.value("value", "");
        c.version = x.value("version", uint64_t{0});
        c.exists = x.value("exists", true);
        e.compares.push_back(c);
      }
    if (t.contains("success")) e.success_ops = ops_from_json(t["success"]);
    if (t.contains("failure")) e.failure_ops = ops_from_json(t["failure"]);
  }
  if (j.contains("reads") && j["reads"].is_array())
    for (const auto& x : j["reads"]) {
      RegisterValue r;
      if (x.is_object()) {
        r.exists = true;
        r.value = x.value("value", "");
        r.version = x.value("version", uint64_t{0});
      }
      e.reads.push_back(r);
    }
}

Json to_json(const HistoryEvent& e) {
  Json j;
  j["process"] = e.process;
  j["type"] = event_type_name(e.type);
  j["f"] = e.f;
  if (!e.key.empty()) j["key"] = e.key;
  // "value": what was written on invoke, what was read on ok.
  const bool done = e.type != EventType::kInvoke;
  if (e.f == "counter_add") {
    j["value"] = done && e.counter ? Json(*e.counter) : Json(e.delta);
  } else if (e.f == "counter_get") {
    j["value"] = e.counter ? Json(*e.counter) : Json(nullptr);
  } else if (e.f == "set_get") {
    j["value"] = done ? Json(e.elements) : Json(nullptr);
  } else if (e.f == "get") {
    Json vals = Json::array();
    for (const auto& v : e.versions) vals.push_back(v.value);
    j["value"] = done && e.type == EventType::kOk ? vals : Json(nullptr);
  } else if (e.f == "del" || e.f == "strong_del") {
    j["value"] = nullptr;
  } else if (e.f == "strong_get") {
    j["value"] = done && e.found && *e.found ? Json(e.value) : Json(nullptr);
  } else {
    j["value"] = e.value;
  }
  j["time"] = e.time;
  if (e.op) j["op"] = e.op;
  if (!e.node.empty()) j["node"] = e.node;
  if (e.f == "counter_add") j["delta"] = e.delta;
  if (e.context) j["context"] = *e.context;
  if (e.applied_context) j["applied_context"] = *e.applied_context;
  if (e.dot) j["dot"] = e.dot->to_string();
  if (!e.versions.empty()) {
    Json vs = Json::array();
    for (const auto& v : e.versions)
      vs.push_back(Json{{"value", v.value}, {"dot", v.dot.to_string()}, {"modified_by", v.modified_by},
                        {"modified_at", v.modified_at_ms}});
    j["versions"] = vs;
  }
  if (!e.durability.empty()) j["durability"] = e.durability;
  if (!e.error.empty()) j["error"] = e.error;
  if (e.attempts) j["attempts"] = e.attempts;
  add_strong_fields(e, j);
  return j;
}

std::optional<Dot> parse_dot(const std::string& s) {
  auto colon = s.rfind(':');
  if (colon == std::string::npos) return std::nullopt;
  Dot d;
  d.node = s.substr(0, colon);
  const char* first = s.data() + colon + 1;
  const char* last = s.data() + s.size();
  auto [p, ec] = std::from_chars(first, last, d.counter);
  if (ec != std::errc() || p != last || first == last) return std::nullopt;
  return d;
}

}  // namespace

std::string History::to_jsonl() const {
  std::string out;
  for (const auto& e : events_) {
    out += to_json(e).dump(-1, ' ', false, Json::error_handler_t::replace);
    out += '\n';
  }
  return out;
}

std::string History::write_jsonl(const std::string& path) const {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  if (!f) return "cannot open history file '" + path + "' for writing";
  f << to_jsonl();
  f.close();
  if (!f) return "cannot write history file '" + path + "'";
  return {};
}

namespace {
std::string event_from_json(const Json& j, HistoryEvent& e);
}  // namespace

std::string History::from_jsonl(const std::string& text, History& out) {
  std::istringstream in(text);
  std::string line;
  int n = 0;
  while (std::getline(in, line)) {
    ++n;
    if (line.empty()) continue;
    Json j = Json::parse(line, nullptr, false);
    if (j.is_discarded() || !j.is_object()) return "line " + std::to_string(n) + ": not a JSON object";
    HistoryEvent e;
    if (auto err = event_from_json(j, e); !err.empty()) return "line " + std::to_string(n) + ": " + err;
    out.add(std::move(e));
  }
  return {};
}

namespace {

// Reads the fields to_json wrote. nlohmann reports a field of the wrong type
// by throwing; that stays in here and comes out as an error message.
std::string event_from_json(const Json& j, HistoryEvent& e) try {
    e.process = j.value("process", "");
    const std::string type = j.value("type", "");
    if (type == "invoke") e.type = EventType::kInvoke;
    else if (type == "ok") e.type = EventType::kOk;
    else if (type == "fail") e.type = EventType::kFail;
    else if (type == "info") e.type = EventType::kInfo;
    else return "unknown type '" + type + "'";
    e.f = j.value("f", "");
    e.key = j.value("key", "");
    e.time = j.value("time", int64_t{0});
    e.op = j.value("op", uint64_t{0});
    e.node = j.value("node", "");
    e.durability = j.value("durability", "");
    e.error = j.value("error", "");
    e.attempts = j.value("attempts", 0);
    const Json& v = j.contains("value") ? j["value"] : Json(nullptr);
    if (e.f == "counter_add") {
      e.delta = j.value("delta", int64_t{0});
      if (e.type != EventType::kInvoke && v.is_number_integer()) e.counter = v.get<int64_t>();
    } else if (e.f == "counter_get") {
      if (v.is_number_integer()) e.counter = v.get<int64_t>();
    } else if (e.f == "set_get") {
      if (v.is_array())
        for (const auto& x : v) e.elements.push_back(x.is_string() ? x.get<std::string>() : x.dump());
    } else if (v.is_string()) {
      e.value = v.get<std::string>();
    }
    const auto version_map = [&](const char* field) -> std::optional<VersionMap> {
      if (!j.contains(field) || !j[field].is_object()) return std::nullopt;
      VersionMap m;
      for (auto it = j[field].begin(); it != j[field].end(); ++it)
        if (it.value().is_number_unsigned()) m[it.key()] = it.value().get<uint64_t>();
      return m;
    };
    e.context = version_map("context");
    e.applied_context = version_map("applied_context");
    if (j.contains("dot") && j["dot"].is_string()) e.dot = parse_dot(j["dot"].get<std::string>());
    if (j.contains("versions") && j["versions"].is_array()) {
      for (const auto& x : j["versions"]) {
        SeenVersion sv;
        sv.value = x.value("value", "");
        if (auto d = parse_dot(x.value("dot", ""))) sv.dot = *d;
        sv.modified_by = x.value("modified_by", "");
        sv.modified_at_ms = x.value("modified_at", int64_t{0});
        e.versions.push_back(sv);
      }
    }
    strong_fields_from_json(j, e);
    return {};
} catch (const Json::exception& ex) {
  return std::string("bad field: ") + ex.what();
}

}  // namespace

std::optional<VersionMap> decode_version_map(const std::string& bytes) {
  pb::VersionVector vv;
  if (!replication::decode_context(bytes, vv).is_ok()) return std::nullopt;
  VersionMap m;
  for (const auto& e : vv.entries()) m[e.node()] = e.counter();
  return m;
}

namespace {
const char* durability_name(pb::Durability d) {
  switch (d) {
    case pb::DURABILITY_QUORUM: return "quorum";
    case pb::DURABILITY_ALL: return "all";
    default: return "local";
  }
}
}  // namespace

namespace {

std::string fence_text(const pb::Fence& f) {
  if (f.lock().empty()) return {};
  return f.lock() + ":" + std::to_string(f.token());
}

TxnOp txn_op(const pb::TxnOp& o) {
  TxnOp t;
  if (o.has_put()) {
    t.kind = TxnOp::Kind::kPut;
    t.key = o.put().key();
    t.value = o.put().value();
  } else if (o.has_delete_()) {
    t.kind = TxnOp::Kind::kDelete;
    t.key = o.delete_().key();
  } else {
    t.kind = TxnOp::Kind::kGet;
    t.key = o.get().key();
  }
  return t;
}

void describe_strong_request(const pb::StrongRequest& s, HistoryEvent& e) {
  switch (s.op_case()) {
    case pb::StrongRequest::kPut:
      e.f = "strong_put";
      e.key = s.put().key();
      e.value = s.put().value();
      if (s.put().has_expected_version()) e.expected_version = s.put().expected_version();
      e.fence = fence_text(s.put().fence());
      break;
    case pb::StrongRequest::kGet:
      e.f = "strong_get";
      e.key = s.get().key();
      e.stale = s.get().stale();
      break;
    case pb::StrongRequest::kDelete:
      e.f = "strong_del";
      e.key = s.delete_().key();
      if (s.delete_().has_expected_version()) e.expected_version = s.delete_().expected_version();
      e.fence = fence_text(s.delete_().fence());
      break;
    case pb::StrongRequest::kCas:
      e.f = "strong_cas";
      e.key = s.cas().key();
      e.expected_value = s.cas().expected_value();
      e.value = s.cas().new_value();
      e.fence = fence_text(s.cas().fence());
      break;
    case pb::StrongRequest::kTxn: {
      e.f = "strong_txn";
      const auto& t = s.txn();
      for (const auto& c : t.compare()) {
        TxnCompare x;
        x.key = c.key();
        x.target = c.target() == pb::Compare::VERSION ? TxnCompare::Target::kVersion
                   : c.target() == pb::Compare::EXISTS ? TxnCompare::Target::kExists
                                                       : TxnCompare::Target::kValue;
        x.equal = c.op() != pb::Compare::NOT_EQUAL;
        x.value = c.value();
        x.version = c.number();
        x.exists = c.exists();
        e.compares.push_back(x);
      }
      for (const auto& o : t.success()) e.success_ops.push_back(txn_op(o));
      for (const auto& o : t.failure()) e.failure_ops.push_back(txn_op(o));
      std::set<std::string> keys;
      for (const auto& c : e.compares) keys.insert(c.key);
      for (const auto& o : e.success_ops) keys.insert(o.key);
      for (const auto& o : e.failure_ops) keys.insert(o.key);
      for (const auto& k : keys) e.key += (e.key.empty() ? "" : ",") + k;
      e.fence = fence_text(t.fence());
      break;
    }
    case pb::StrongRequest::kSessionGrant:
      e.f = "session_grant";
      e.ttl_ms = s.session_grant().ttl_ms();
      break;
    case pb::StrongRequest::kSessionKeepalive:
      e.f = "session_keepalive";
      e.session = s.session_keepalive().session_id();
      break;
    case pb::StrongRequest::kSessionRevoke:
      e.f = "session_revoke";
      e.session = s.session_revoke().session_id();
      break;
    case pb::StrongRequest::kLockAcquire:
      e.f = "lock_acquire";
      e.key = s.lock_acquire().name();
      e.session = s.lock_acquire().session_id();
      e.ttl_ms = s.lock_acquire().wait_ms();
      break;
    case pb::StrongRequest::kLockRelease:
      e.f = "lock_release";
      e.key = s.lock_release().name();
      e.session = s.lock_release().session_id();
      e.token = s.lock_release().token();
      break;
    case pb::StrongRequest::kAclGrant:
      e.f = "acl_grant";
      e.key = s.acl_grant().rule().prefix();
      e.value = s.acl_grant().rule().subject();
      break;
    default:
      e.f = "strong_other";
      break;
  }
}

RegisterValue seen(const pb::StrongResponse& r) {
  RegisterValue v;
  if (r.found() || r.kv().version() != 0) {
    v.exists = true;
    v.value = r.kv().value();
    v.version = r.kv().version();
  }
  return v;
}

void describe_strong_response(const pb::StrongResponse& s, HistoryEvent& e) {
  e.revision = s.revision();
  if (e.f == "strong_get") {
    const RegisterValue v = seen(s);
    e.found = v.exists;
    e.value = v.value;
    if (v.exists) e.version = v.version;
    e.reads = {v};
  } else if (e.f == "strong_put" || e.f == "strong_cas") {
    e.succeeded = true;
    e.version = s.kv().version();
    e.reads = {RegisterValue{true, e.value, s.kv().version()}};
  } else if (e.f == "strong_del") {
    e.succeeded = true;
    e.found = s.found();
  } else if (e.f == "strong_txn") {
    e.succeeded = s.succeeded();
    const auto& ops = s.succeeded() ? e.success_ops : e.failure_ops;
    for (size_t i = 0; i < ops.size(); ++i)
      if (ops[i].kind == TxnOp::Kind::kGet)
        e.reads.push_back(i < static_cast<size_t>(s.results_size()) ? seen(s.results(static_cast<int>(i)))
                                                                    : RegisterValue{});
  } else if (e.f == "session_grant") {
    e.session = s.session_id();
    e.ttl_ms = s.ttl_ms();
    e.succeeded = true;
  } else if (e.f == "lock_acquire") {
    e.token = s.token();
    e.succeeded = true;
  } else {
    e.succeeded = true;
  }
}

}  // namespace

bool is_strong_f(const std::string& f) {
  return f.rfind("strong_", 0) == 0 || f.rfind("session_", 0) == 0 || f.rfind("lock_", 0) == 0;
}

void describe_request(const pb::Request& r, HistoryEvent& e) {
  switch (r.op_case()) {
    case pb::Request::kPut:
      e.f = "put";
      e.key = r.put().key();
      e.value = r.put().value();
      e.context = decode_version_map(r.put().context());
      e.durability = durability_name(r.put().durability());
      break;
    case pb::Request::kGet:
      e.f = "get";
      e.key = r.get().key();
      break;
    case pb::Request::kDel:
      e.f = "del";
      e.key = r.del().key();
      e.context = decode_version_map(r.del().context());
      e.durability = durability_name(r.del().durability());
      break;
    case pb::Request::kCounterAdd:
      e.f = "counter_add";
      e.key = r.counter_add().key();
      e.delta = r.counter_add().delta();
      e.durability = durability_name(r.counter_add().durability());
      break;
    case pb::Request::kCounterGet:
      e.f = "counter_get";
      e.key = r.counter_get().key();
      break;
    case pb::Request::kSetAdd:
      e.f = "set_add";
      e.key = r.set_add().key();
      e.value = r.set_add().element();
      e.durability = durability_name(r.set_add().durability());
      break;
    case pb::Request::kSetRemove:
      e.f = "set_rm";
      e.key = r.set_remove().key();
      e.value = r.set_remove().element();
      e.durability = durability_name(r.set_remove().durability());
      break;
    case pb::Request::kSetGet:
      e.f = "set_get";
      e.key = r.set_get().key();
      break;
    case pb::Request::kStrong:
      describe_strong_request(r.strong(), e);
      break;
    default:
      e.f = "other";
      break;
  }
}

namespace {
void add_versions(const google::protobuf::RepeatedPtrField<pb::Version>& vs, HistoryEvent& e) {
  for (const auto& v : vs)
    e.versions.push_back(SeenVersion{v.value(), Dot{v.dot_node(), v.dot_counter()}, v.modified_by(), v.modified_at_ms()});
}
}  // namespace

void describe_response(const pb::Response& r, HistoryEvent& e) {
  e.node = r.node();
  if (r.error() != pb::OK) {
    e.error = pb::ErrorCode_Name(r.error()) + ": " + r.error_message();
    return;
  }
  switch (r.result_case()) {
    case pb::Response::kStrong:
      describe_strong_response(r.strong(), e);
      break;
    case pb::Response::kGet:
      add_versions(r.get().versions(), e);
      e.context = decode_version_map(r.get().context());
      break;
    case pb::Response::kPut:
      add_versions(r.put().versions(), e);
      e.context = decode_version_map(r.put().context());
      if (r.put().dot_counter() != 0) e.dot = Dot{r.put().dot_node(), r.put().dot_counter()};
      if (r.put().context_cut()) e.applied_context = decode_version_map(r.put().applied_context());
      break;
    case pb::Response::kCounter:
      e.counter = r.counter().value();
      break;
    case pb::Response::kSet:
      for (const auto& x : r.set().elements()) e.elements.push_back(x);
      break;
    default:
      break;
  }
}

}  // namespace stig::sim
