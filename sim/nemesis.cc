#include "sim/nemesis.h"

#include <algorithm>
#include <charconv>
#include <cstdlib>
#include <sstream>

#include <nlohmann/json.hpp>

namespace stig::sim {

using Json = nlohmann::json;

std::string node_name(int index) { return "n" + std::to_string(index + 1); }

std::vector<std::string> nemesis_kinds() {
  return {"partition", "loss", "dup", "reorder", "spike", "crash", "clock", "leader", "vote-crash", "new-leader"};
}

namespace {
// Kinds "all" leaves out: targeted at the strong path, named explicitly.
bool targeted_kind(const std::string& kind) { return kind == "vote-crash" || kind == "new-leader"; }
}  // namespace

std::string parse_duration(const std::string& text, int64_t& ms) {
  if (text.empty()) return "empty duration";
  size_t i = 0;
  bool neg = false;
  if (text[0] == '-') neg = true, i = 1;
  size_t digits = i;
  while (digits < text.size() && (std::isdigit(static_cast<unsigned char>(text[digits])) || text[digits] == '.'))
    ++digits;
  if (digits == i) return "duration '" + text + "' does not start with a number";
  const std::string number = text.substr(i, digits - i);
  char* end = nullptr;
  const double value = std::strtod(number.c_str(), &end);
  if (end != number.c_str() + number.size()) return "duration '" + text + "' is not a number";
  const std::string unit = text.substr(digits);
  double scale = 0;
  if (unit.empty() || unit == "s") scale = 1000;
  else if (unit == "ms") scale = 1;
  else if (unit == "m" || unit == "min") scale = 60000;
  else if (unit == "h") scale = 3600000;
  else return "duration '" + text + "' has unknown unit '" + unit + "' (use ms, s, m or h)";
  ms = static_cast<int64_t>(value * scale + 0.5) * (neg ? -1 : 1);
  return {};
}

std::string parse_nemesis(const std::string& spec, NemesisOptions& out) {
  out.rates.clear();
  if (spec.empty() || spec == "none") return {};
  std::stringstream ss(spec);
  std::string item;
  const auto kinds = nemesis_kinds();
  while (std::getline(ss, item, ',')) {
    if (item.empty()) return "empty item in --nemesis '" + spec + "'";
    std::string name = item;
    double rate = 0.1;
    if (auto eq = item.find('='); eq != std::string::npos) {
      name = item.substr(0, eq);
      const std::string number = item.substr(eq + 1);
      char* end = nullptr;
      rate = std::strtod(number.c_str(), &end);
      if (number.empty() || end != number.c_str() + number.size())
        return "bad rate in --nemesis item '" + item + "' (faults per simulated second, e.g. crash=0.05)";
      if (rate <= 0 || rate > 10) return "rate in --nemesis item '" + item + "' must be in (0, 10] per second";
    }
    if (name == "all") {
      for (const auto& k : kinds)
        if (!targeted_kind(k)) out.rates[k] = rate;
      continue;
    }
    if (std::find(kinds.begin(), kinds.end(), name) == kinds.end()) {
      std::string list;
      for (const auto& k : kinds) list += (list.empty() ? "" : ", ") + k;
      return "unknown nemesis '" + name + "' (known: " + list + ", all, none)";
    }
    out.rates[name] = rate;
  }
  return {};
}

namespace {

SimTime gap(double rate, SimRandom& random) {
  const int64_t mean = static_cast<int64_t>(1000.0 / rate);
  return random.range(mean / 2, mean * 3 / 2);
}

}  // namespace

Scenario random_scenario(const NemesisOptions& o, int nodes, SimTime duration, SimRandom& random) {
  Scenario s;
  s.description = "random nemesis";
  // The leader kind draws from its own generator, forked without consuming a
  // draw, so adding it leaves every other kind's timeline as it was.
  SimRandom fork = random;
  SimRandom leader_random(fork.next() ^ 0x6c65616465720000ULL);
  // The targeted kinds likewise, each from its own generator.
  SimRandom targeted_random(fork.next() ^ 0x7461726765740000ULL);
  // Kinds in a fixed order (the map is ordered) so draws replay.
  for (const auto& [kind, rate] : o.rates) {
    if (targeted_kind(kind)) {
      for (SimTime t = gap(rate, targeted_random); t < duration; t += gap(rate, targeted_random)) {
        FaultEvent e;
        e.at = t;
        e.kind = FaultKind::kArm;
        e.shape = kind;
        s.events.push_back(e);
      }
      continue;
    }
    if (kind == "leader") {
      // Partitions aimed at whoever leads when they start: isolated, deaf
      // (its inbound links cut) or mute (its outbound links cut).
      static const std::vector<std::string> shapes = {"isolate-leader", "isolate-leader", "leader-deaf", "leader-mute"};
      for (SimTime t = gap(rate, leader_random); t < duration;) {
        FaultEvent e;
        e.at = t;
        e.kind = FaultKind::kPartition;
        e.shape = leader_random.pick(shapes);
        const SimTime end = t + leader_random.range(500, 3000);
        s.events.push_back(e);
        FaultEvent h;
        h.at = end;
        h.kind = FaultKind::kHeal;
        s.events.push_back(h);
        t = end + gap(rate, leader_random);
      }
      continue;
    }
    SimTime t = gap(rate, random);
    std::vector<SimTime> down_until(static_cast<size_t>(nodes), 0);
    while (t < duration) {
      FaultEvent e;
      e.at = t;
      SimTime end = t;
      if (kind == "partition") {
        static const std::vector<std::string> shapes = {"halves", "isolate", "bridge", "oneway", "random"};
        e.kind = FaultKind::kPartition;
        e.shape = random.pick(shapes);
        end = t + random.range(1000, 8000);
        s.events.push_back(e);
        FaultEvent h;
        h.at = end;
        h.kind = FaultKind::kHeal;
        s.events.push_back(h);
      } else if (kind == "loss" || kind == "dup" || kind == "spike") {
        e.kind = kind == "loss" ? FaultKind::kLoss : kind == "dup" ? FaultKind::kDuplicate : FaultKind::kSpike;
        e.rate = kind == "loss" ? o.loss : kind == "dup" ? o.duplicate : o.spike;
        e.ms = o.spike_ms;
        end = t + random.range(1000, 6000);
        s.events.push_back(e);
        FaultEvent off = e;
        off.at = end;
        off.rate = 0;
        s.events.push_back(off);
      } else if (kind == "reorder") {
        e.kind = FaultKind::kReorder;
        e.on = true;
        end = t + random.range(1000, 6000);
        s.events.push_back(e);
        FaultEvent off = e;
        off.at = end;
        off.on = false;
        s.events.push_back(off);
      } else if (kind == "crash") {
        std::vector<int> up;
        for (int n = 0; n < nodes; ++n)
          if (down_until[static_cast<size_t>(n)] <= t) up.push_back(n);
        if (up.size() > 1) {
          e.kind = FaultKind::kCrash;
          e.node = random.pick(up);
          end = t + random.range(200, 5000);
          down_until[static_cast<size_t>(e.node)] = end + 1;
          s.events.push_back(e);
          FaultEvent r;
          r.at = end;
          r.kind = FaultKind::kRestart;
          r.node = e.node;
          s.events.push_back(r);
        }
      } else if (kind == "clock") {
        e.kind = FaultKind::kClock;
        e.node = static_cast<int>(random.below(static_cast<uint64_t>(nodes)));
        e.on = random.chance(0.5);  // jump or skew
        e.ms = e.on ? (random.chance(0.5) ? 1 : -1) * random.range(60000, 3600000)
                    : random.range(-o.max_skew_ms, o.max_skew_ms);
        s.events.push_back(e);
      }
      t = end + gap(rate, random);
    }
  }
  std::stable_sort(s.events.begin(), s.events.end(), [](const FaultEvent& a, const FaultEvent& b) { return a.at < b.at; });
  return s;
}

namespace {

std::string parse_node(const Json& j, int nodes, int& out) {
  if (!j.is_string()) return "node must be a string like \"n2\"";
  const std::string s = j.get<std::string>();
  if (s.size() < 2 || s[0] != 'n') return "node '" + s + "' is not of the form nK";
  int k = 0;
  auto [p, ec] = std::from_chars(s.data() + 1, s.data() + s.size(), k);
  if (ec != std::errc() || p != s.data() + s.size()) return "node '" + s + "' is not of the form nK";
  out = k - 1;
  if (out < 0 || out >= nodes) return "node '" + s + "' is not in a cluster of " + std::to_string(nodes);
  return {};
}

std::string parse_group(const Json& j, int nodes, std::vector<int>& out) {
  if (!j.is_array()) return "a group must be a list of node names";
  for (const auto& x : j) {
    int n = -1;
    if (auto err = parse_node(x, nodes, n); !err.empty()) return err;
    out.push_back(n);
  }
  return {};
}

std::string time_of(const Json& j, const char* field, int64_t& ms) {
  if (!j.contains(field)) return std::string("missing \"") + field + "\"";
  const Json& v = j[field];
  if (v.is_number()) {
    ms = static_cast<int64_t>(v.get<double>() * 1000);
    return {};
  }
  if (!v.is_string()) return std::string("\"") + field + "\" must be a duration like \"2s\"";
  return parse_duration(v.get<std::string>(), ms);
}

std::string parse_event(const Json& j, int nodes, FaultEvent& e) {
  if (!j.is_object()) return "an event must be an object";
  if (auto err = time_of(j, "at", e.at); !err.empty()) return err;
  if (e.at < 0) return "\"at\" must not be negative";
  if (j.contains("op")) {
    e.kind = FaultKind::kOp;
    e.op = j.value("op", "");
    if (e.op != "put" && e.op != "get" && e.op != "del") return "op '" + e.op + "' is not one of put, get, del";
    e.agent = j.value("agent", "");
    if (e.agent.empty()) return "an op needs an \"agent\"";
    e.key = j.value("key", "");
    if (e.key.empty()) return "an op needs a \"key\"";
    e.value = j.value("value", "");
    e.with_context = j.value("context", std::string("none")) == "last";
    if (!j.contains("node")) return "an op needs the \"node\" it is sent to";
    return parse_node(j["node"], nodes, e.node);
  }
  const std::string fault = j.value("fault", "");
  if (fault == "partition") {
    e.kind = FaultKind::kPartition;
    if (j.contains("groups")) {
      e.shape = "groups";
      if (!j["groups"].is_array() || j["groups"].size() < 2) return "\"groups\" must list at least two groups";
      for (const auto& g : j["groups"]) {
        e.groups.emplace_back();
        if (auto err = parse_group(g, nodes, e.groups.back()); !err.empty()) return err;
      }
      return {};
    }
    e.shape = j.value("shape", "halves");
    static const std::vector<std::string> shapes = {"halves", "isolate",        "bridge",     "oneway",
                                                    "random", "isolate-leader", "leader-deaf", "leader-mute"};
    if (std::find(shapes.begin(), shapes.end(), e.shape) == shapes.end())
      return "unknown partition shape '" + e.shape +
             "' (halves, isolate, bridge, oneway, random, isolate-leader, leader-deaf, leader-mute, or \"groups\")";
    if (j.contains("node"))
      if (auto err = parse_node(j["node"], nodes, e.node); !err.empty()) return err;
    if (e.shape == "oneway" && j.contains("from")) {
      e.groups.resize(2);
      if (auto err = parse_group(j["from"], nodes, e.groups[0]); !err.empty()) return err;
      if (!j.contains("to")) return "a oneway partition with \"from\" needs \"to\"";
      if (auto err = parse_group(j["to"], nodes, e.groups[1]); !err.empty()) return err;
    }
    return {};
  }
  if (fault == "heal") {
    e.kind = FaultKind::kHeal;
    return {};
  }
  if (fault == "arm") {
    e.kind = FaultKind::kArm;
    e.shape = j.value("target", "");
    if (!targeted_kind(e.shape)) return "\"arm\" needs a \"target\": vote-crash or new-leader";
    return {};
  }
  if (fault == "loss" || fault == "dup" || fault == "spike") {
    e.kind = fault == "loss" ? FaultKind::kLoss : fault == "dup" ? FaultKind::kDuplicate : FaultKind::kSpike;
    e.rate = j.value("rate", 0.0);
    if (e.rate < 0 || e.rate > 1) return "\"rate\" must be a probability in [0, 1]";
    if (fault == "spike") {
      e.ms = 500;
      if (j.contains("delay"))
        if (auto err = time_of(j, "delay", e.ms); !err.empty()) return err;
    }
    return {};
  }
  if (fault == "reorder") {
    e.kind = FaultKind::kReorder;
    e.on = j.value("on", true);
    return {};
  }
  if (fault == "crash" || fault == "restart") {
    e.kind = fault == "crash" ? FaultKind::kCrash : FaultKind::kRestart;
    if (!j.contains("node")) return "\"" + fault + "\" needs a \"node\"";
    return parse_node(j["node"], nodes, e.node);
  }
  if (fault == "clock") {
    e.kind = FaultKind::kClock;
    if (!j.contains("node")) return "\"clock\" needs a \"node\"";
    if (auto err = parse_node(j["node"], nodes, e.node); !err.empty()) return err;
    if (j.contains("jump")) {
      e.on = true;
      return time_of(j, "jump", e.ms);
    }
    if (j.contains("skew")) return time_of(j, "skew", e.ms);
    return "\"clock\" needs \"skew\" or \"jump\"";
  }
  return "unknown fault '" + fault + "' (partition, heal, loss, dup, spike, reorder, crash, restart, clock, arm; or an \"op\")";
}

}  // namespace

std::string parse_scenario(const std::string& text, int nodes, Scenario& out) {
  Json j = Json::parse(text, nullptr, false, true);
  if (j.is_discarded()) return "scenario is not valid JSON";
  if (!j.is_object() || !j.contains("events") || !j["events"].is_array())
    return "scenario must be an object with an \"events\" list";
  out = Scenario{};
  out.description = j.contains("description") && j["description"].is_string() ? j["description"].get<std::string>() : "";
  int i = 0;
  for (const auto& ej : j["events"]) {
    ++i;
    FaultEvent e;
    std::string err;
    try {  // nlohmann throws on a field of the wrong type: keep it an error value
      err = parse_event(ej, nodes, e);
    } catch (const Json::exception& ex) {
      err = std::string("a field has the wrong type (") + ex.what() + ")";
    }
    if (!err.empty()) return "event " + std::to_string(i) + ": " + err;
    out.events.push_back(std::move(e));
  }
  std::stable_sort(out.events.begin(), out.events.end(),
                   [](const FaultEvent& a, const FaultEvent& b) { return a.at < b.at; });
  return {};
}

namespace {
std::string group_text(const std::vector<int>& g) {
  std::string s = "[";
  for (size_t i = 0; i < g.size(); ++i) s += (i ? " " : "") + node_name(g[i]);
  return s + "]";
}
}  // namespace

std::vector<std::pair<int, int>> partition_links(const FaultEvent& e, int nodes, SimRandom& random,
                                                 std::string& description) {
  std::vector<std::pair<int, int>> links;
  std::vector<int> all(static_cast<size_t>(nodes));
  for (int i = 0; i < nodes; ++i) all[static_cast<size_t>(i)] = i;
  auto cut = [&](const std::vector<int>& a, const std::vector<int>& b, bool both) {
    for (int x : a)
      for (int y : b)
        if (x != y) {
          links.emplace_back(x, y);
          if (both) links.emplace_back(y, x);
        }
  };
  if (e.shape == "groups") {
    std::vector<int> group_of(static_cast<size_t>(nodes), -1);
    for (size_t g = 0; g < e.groups.size(); ++g)
      for (int n : e.groups[g]) group_of[static_cast<size_t>(n)] = static_cast<int>(g);
    for (int a = 0; a < nodes; ++a)
      for (int b = 0; b < nodes; ++b)
        if (a != b && group_of[static_cast<size_t>(a)] != group_of[static_cast<size_t>(b)]) links.emplace_back(a, b);
    description = "groups";
    for (const auto& g : e.groups) description += " " + group_text(g);
  } else if (e.shape == "isolate") {
    const int lone = e.node >= 0 ? e.node : static_cast<int>(random.below(static_cast<uint64_t>(nodes)));
    std::vector<int> rest;
    for (int n : all)
      if (n != lone) rest.push_back(n);
    cut({lone}, rest, true);
    description = "isolate " + node_name(lone);
  } else if (e.shape == "bridge") {
    random.shuffle(all);
    const int bridge = all[0];
    std::vector<int> a(all.begin() + 1, all.begin() + 1 + (nodes - 1) / 2), b(all.begin() + 1 + (nodes - 1) / 2, all.end());
    cut(a, b, true);
    description = "bridge " + node_name(bridge) + " between " + group_text(a) + " and " + group_text(b);
  } else if (e.shape == "oneway") {
    std::vector<int> a, b;
    if (e.groups.size() == 2) {
      a = e.groups[0], b = e.groups[1];
    } else {
      random.shuffle(all);
      a.assign(all.begin(), all.begin() + nodes / 2);
      b.assign(all.begin() + nodes / 2, all.end());
    }
    cut(a, b, false);
    description = "oneway " + group_text(a) + " -> " + group_text(b) + " dropped";
  } else if (e.shape == "random") {
    for (int a = 0; a < nodes; ++a)
      for (int b = a + 1; b < nodes; ++b)
        if (random.chance(0.5)) cut({a}, {b}, true);
    description = "random (" + std::to_string(links.size() / 2) + " links cut)";
  } else {  // halves
    random.shuffle(all);
    std::vector<int> a(all.begin(), all.begin() + nodes / 2), b(all.begin() + nodes / 2, all.end());
    std::sort(a.begin(), a.end());
    std::sort(b.begin(), b.end());
    cut(a, b, true);
    description = "halves " + group_text(a) + " | " + group_text(b);
  }
  std::sort(links.begin(), links.end());
  links.erase(std::unique(links.begin(), links.end()), links.end());
  return links;
}

}  // namespace stig::sim
