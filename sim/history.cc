#include "sim/history.h"

#include <charconv>
#include <fstream>
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
  } else if (e.f == "del") {
    j["value"] = nullptr;
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
