#include "sim/report.h"

#include <algorithm>
#include <cstdio>

#include <fstream>
#include <map>

#include <nlohmann/json.hpp>

namespace stig::sim {

using Json = nlohmann::ordered_json;

namespace {

const char* kPage = R"HTML(<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>stig-sim report</title>
<style>
body{font:13px/1.4 system-ui,sans-serif;margin:16px;color:#222;background:#fff}
h1{font-size:18px;margin:0 0 4px}
.meta{color:#555;margin-bottom:8px}
code{background:#f3f3f3;padding:1px 4px;border-radius:3px}
#timeline{border:1px solid #ddd;background:#fcfcfc}
.legend span{display:inline-block;margin-right:14px}
.sw{display:inline-block;width:12px;height:10px;margin-right:4px;vertical-align:middle}
table{border-collapse:collapse;margin-top:10px}
td,th{border:1px solid #ddd;padding:3px 8px;text-align:left;vertical-align:top}
.pass{color:#1a7f37;font-weight:600}.fail{color:#c62828;font-weight:600}
#ops tr:hover{background:#f5f5f5}
</style></head>
<body>
<h1>stig-sim report</h1>
<div class="meta" id="meta"></div>
<div class="legend">
<span><i class="sw" style="background:#2e9e4f"></i>ok</span>
<span><i class="sw" style="background:#d93a3a"></i>fail</span>
<span><i class="sw" style="background:#f0a020"></i>info (unknown outcome)</span>
<span><i class="sw" style="background:rgba(90,90,255,.30)"></i><i class="sw" style="background:rgba(200,60,200,.30)"></i>partition (one colour per side)</span>
<span><i class="sw" style="background:rgba(255,160,0,.25)"></i>loss / dup / reorder / spike</span>
<span><i class="sw" style="background:rgba(60,60,60,.35)"></i>node down</span>
<span><i class="sw" style="background:#7b1fa2"></i>clock fault</span>
<span><i class="sw" style="background:#1565c0"></i>final heal</span>
<span><i class="sw" style="background:#1a7f37"></i>converged</span>
</div>
<svg id="timeline" xmlns="http://www.w3.org/2000/svg" width="1200" height="100"></svg>
<h2 style="font-size:15px">Checkers</h2>
<table id="checks"><tr><th>checker</th><th>verdict</th><th>summary</th><th>findings</th></tr></table>
<h2 style="font-size:15px">Strong operations</h2>
<table id="strong"><tr><th>f</th><th>ok</th><th>refused (ok, succeeded=false)</th><th>fail</th><th>unknown</th></tr></table>
<h2 style="font-size:15px">Faults and leadership</h2>
<table id="faults"><tr><th>time</th><th>fault</th><th>what</th></tr></table>
<script type="application/json" id="data">@DATA@</script>
<script>
(function(){
  "use strict";
  var data = JSON.parse(document.getElementById("data").textContent);
  var NS = "http://www.w3.org/2000/svg";
  var svg = document.getElementById("timeline");
  var left = 90, width = 1200, plot = width - left - 10, laneH = 18, top = 24;
  var lanes = data.lanes, laneIndex = {};
  lanes.forEach(function(l, i){ laneIndex[l] = i; });
  var height = top + lanes.length * laneH + 20;
  svg.setAttribute("height", height);
  svg.setAttribute("viewBox", "0 0 " + width + " " + height);
  var end = Math.max(1, data.meta.end);
  function x(t){ return left + plot * Math.max(0, Math.min(t, end)) / end; }
  function el(name, attrs, title){
    var e = document.createElementNS(NS, name);
    for (var k in attrs) e.setAttribute(k, attrs[k]);
    if (title){ var t = document.createElementNS(NS, "title"); t.textContent = title; e.appendChild(t); }
    svg.appendChild(e); return e;
  }
  function secs(ms){ return (ms/1000).toFixed(3) + "s"; }
  var nodeLanes = lanes.filter(function(l){ return /^n\d+$/.test(l); }).length;
  // Time axis.
  for (var s = 0; s <= end; s += Math.max(1000, Math.ceil(end / 12000) * 1000)) {
    el("line", {x1:x(s), x2:x(s), y1:top-4, y2:height-16, stroke:"#eee"});
    var lbl = el("text", {x:x(s), y:top-8, "font-size":10, "text-anchor":"middle", fill:"#888"});
    lbl.textContent = (s/1000) + "s";
  }
  lanes.forEach(function(l, i){
    var t = el("text", {x:4, y:top + i*laneH + 13, "font-size":11, fill:"#333"}); t.textContent = l;
    el("line", {x1:left, x2:width-10, y1:top+(i+1)*laneH, y2:top+(i+1)*laneH, stroke:"#f0f0f0"});
  });
  var faultsDrawn = 0;
  data.spans.forEach(function(sp){
    var w = Math.max(2, x(sp.end) - x(sp.start));
    if (sp.lane === "network" && sp.kind === "partition" && sp.sides.length) {
      // One band per node, coloured by the side of the partition it is on.
      var sideColours = ["rgba(90,90,255,.30)", "rgba(200,60,200,.30)", "rgba(40,160,160,.30)", "rgba(160,120,40,.30)", "rgba(120,120,120,.30)"];
      sp.sides.forEach(function(side, n){
        el("rect", {x:x(sp.start), y:top + n*laneH, width:w, height:laneH, fill:sideColours[side % sideColours.length], "class":"fault"},
           "partition " + secs(sp.start) + "-" + secs(sp.end) + ": " + sp.label + " (n" + (n+1) + " on side " + (side+1) + ")");
      });
    } else if (sp.lane === "network") {
      var fill = sp.kind === "partition" ? "rgba(120,120,255,.25)" : "rgba(255,160,0,.25)";
      el("rect", {x:x(sp.start), y:top, width:w, height:nodeLanes*laneH, fill:fill, "class":"fault"},
         sp.kind + " " + secs(sp.start) + "-" + secs(sp.end) + ": " + sp.label);
    } else if (sp.kind === "leader") {
      el("rect", {x:x(sp.start)-1, y:top + laneIndex[sp.lane]*laneH + 1, width:3, height:laneH-2, fill:"#e6a800", "class":"leader"},
         secs(sp.start) + ": " + sp.label);
      return;
    } else if (sp.kind === "clock") {
      el("rect", {x:x(sp.start)-1, y:top + laneIndex[sp.lane]*laneH + 1, width:3, height:laneH-2, fill:"#7b1fa2", "class":"fault"},
         secs(sp.start) + ": " + sp.label);
    } else {
      el("rect", {x:x(sp.start), y:top + laneIndex[sp.lane]*laneH + 1, width:w, height:laneH-2, fill:"rgba(60,60,60,.35)", "class":"fault"},
         sp.lane + " " + sp.label + " " + secs(sp.start) + "-" + secs(sp.end));
    }
    faultsDrawn++;
  });
  var colours = {ok:"#2e9e4f", fail:"#d93a3a", info:"#f0a020"};
  var opsDrawn = 0;
  data.ops.forEach(function(o){
    var lane = laneIndex[o.process];
    if (lane === undefined) return;
    var w = Math.max(1.5, x(o.end) - x(o.start));
    el("rect", {x:x(o.start), y:top + lane*laneH + 3, width:w, height:laneH-6, fill:colours[o.type] || "#999", "class":"op"},
       o.process + " " + o.f + " " + (o.key||"") + " " + (o.value||"") + " → " + o.type + (o.node ? " @" + o.node : "") +
       " [" + secs(o.start) + " - " + secs(o.end) + "]" + (o.error ? " " + o.error : ""));
    opsDrawn++;
  });
  if (data.meta.healed >= 0) {
    el("line", {x1:x(data.meta.healed), x2:x(data.meta.healed), y1:top-4, y2:height-16, stroke:"#1565c0", "stroke-width":2, id:"heal"},
       "final heal at " + secs(data.meta.healed));
  }
  if (data.meta.converged >= 0) {
    var cx = x(data.meta.healed + data.meta.converged);
    el("rect", {x:x(data.meta.healed), y:height-14, width:Math.max(2, cx - x(data.meta.healed)), height:8, fill:"#1a7f37", id:"converged"},
       "converged " + secs(data.meta.converged) + " after the final heal");
    var ct = el("text", {x:cx + 4, y:height-6, "font-size":10, fill:"#1a7f37"});
    ct.textContent = "converged +" + secs(data.meta.converged);
  } else if (data.meta.healed >= 0) {
    var nt = el("text", {x:x(data.meta.healed) + 4, y:height-6, "font-size":10, fill:"#c62828", id:"not-converged"});
    nt.textContent = "did not converge";
  }
  var m = document.getElementById("meta");
  m.textContent = data.meta.summary;
  var cmd = document.createElement("div"); cmd.innerHTML = "replay: <code></code>";
  cmd.querySelector("code").textContent = data.meta.command; m.appendChild(cmd);
  var checks = document.getElementById("checks");
  data.checks.forEach(function(c){
    var tr = document.createElement("tr");
    [c.name, c.ok ? (c.inconclusive ? "INCONCLUSIVE" : "pass") : "FAIL", c.summary, c.findings.join("\n")].forEach(function(v, i){
      var td = document.createElement("td"); td.textContent = v;
      if (i === 1) td.className = c.ok ? "pass" : "fail";
      if (i === 3) td.style.whiteSpace = "pre-wrap";
      tr.appendChild(td);
    });
    checks.appendChild(tr);
  });
  var strong = document.getElementById("strong");
  (data.strong || []).forEach(function(row){
    var tr = document.createElement("tr");
    row.forEach(function(v){ var td = document.createElement("td"); td.textContent = v; tr.appendChild(td); });
    strong.appendChild(tr);
  });
  var faults = document.getElementById("faults");
  data.faults.forEach(function(f){
    var tr = document.createElement("tr");
    [secs(f.time), f.f, f.value].forEach(function(v){ var td = document.createElement("td"); td.textContent = v; tr.appendChild(td); });
    faults.appendChild(tr);
  });
  svg.setAttribute("data-ops-drawn", opsDrawn);
  svg.setAttribute("data-faults-drawn", faultsDrawn);
  document.body.setAttribute("data-rendered", "yes");
})();
</script>
</body></html>
)HTML";

}  // namespace

std::string leader_line(const LeaderEvent& l) {
  char buf[96];
  std::snprintf(buf, sizeof buf, "%.3fs %s became leader of term %llu", static_cast<double>(l.time) / 1000.0,
                l.node.c_str(), static_cast<unsigned long long>(l.term));
  return buf;
}

std::map<std::string, StrongOpCounts> strong_op_stats(const History& h) {
  std::map<std::string, StrongOpCounts> out;
  std::map<uint64_t, std::string> open;
  for (const auto& e : h.events()) {
    if (!e.op || !is_strong_f(e.f)) continue;
    std::string f = e.f == "strong_get" && e.stale ? "strong_get_stale" : e.f;
    if (e.type == EventType::kInvoke) {
      open[e.op] = f;
      continue;
    }
    auto it = open.find(e.op);
    if (it == open.end()) continue;
    StrongOpCounts& c = out[it->second];
    if (e.type == EventType::kOk) (e.succeeded.value_or(true) ? c.ok : c.refused)++;
    else if (e.type == EventType::kFail) c.fail++;
    else c.unknown++;
    open.erase(it);
  }
  for (const auto& [op, f] : open) out[f].unknown++;  // never completed
  return out;
}

std::string render_report(const RunResult& r, const std::string& command_line) {
  Json data;
  Json meta;
  meta["seed"] = r.options.seed;
  meta["end"] = r.end_ms;
  meta["healed"] = r.final_state.healed_at;
  meta["converged"] = r.final_state.converged_after_ms ? *r.final_state.converged_after_ms : -1;
  meta["summary"] = r.summary_line();
  meta["command"] = command_line;
  data["meta"] = meta;
  Json lanes = Json::array();
  for (int i = 0; i < r.options.nodes; ++i) lanes.push_back("n" + std::to_string(i + 1));
  std::map<std::string, bool> seen;
  for (int i = 0; i < r.options.clients; ++i) lanes.push_back("c" + std::to_string(i + 1)), seen["c" + std::to_string(i + 1)] = true;
  Json ops = Json::array(), faults = Json::array();
  std::map<uint64_t, const HistoryEvent*> open;
  for (const auto& e : r.history.events()) {
    if (e.process == "nemesis") {
      faults.push_back(Json{{"time", e.time}, {"f", e.f}, {"value", e.value}});
      continue;
    }
    if (!seen.count(e.process)) {
      seen[e.process] = true;
      lanes.push_back(e.process);  // scripted agents
    }
    if (e.type == EventType::kInvoke) {
      open[e.op] = &e;
      continue;
    }
    auto it = open.find(e.op);
    if (it == open.end()) continue;
    const HistoryEvent& in = *it->second;
    Json o;
    o["process"] = e.process;
    o["f"] = e.f;
    o["key"] = e.key;
    std::string value = in.value;
    if (e.f == "counter_add") value = std::to_string(in.delta);
    if (e.type == EventType::kOk && e.f == "get") {
      value = "[";
      for (size_t i = 0; i < e.versions.size(); ++i)
        value += (i ? ", " : "") + e.versions[i].value + " by " + e.versions[i].modified_by;
      value += "]";
    }
    if (e.counter && e.f == "counter_get") value = std::to_string(*e.counter);
    o["value"] = value;
    o["type"] = event_type_name(e.type);
    o["start"] = in.time;
    o["end"] = e.time;
    o["node"] = e.node;
    if (!e.error.empty()) o["error"] = e.error;
    ops.push_back(o);
    open.erase(it);
  }
  data["lanes"] = lanes;
  data["ops"] = ops;
  Json spans = Json::array();
  for (const auto& s : r.spans)
    spans.push_back(Json{{"lane", s.lane}, {"start", s.start}, {"end", s.end}, {"kind", s.kind}, {"label", s.label},
                         {"sides", s.sides}});
  // Elections on the node lanes and in the list of faults, in time order.
  for (const auto& l : r.leaders) {
    const std::string what = leader_line(l);
    spans.push_back(Json{{"lane", l.node}, {"start", l.time}, {"end", l.time}, {"kind", "leader"}, {"label", what},
                         {"sides", Json::array()}});
    faults.push_back(Json{{"time", l.time}, {"f", "leader"}, {"value", what}});
  }
  std::vector<Json> sorted(faults.begin(), faults.end());
  std::stable_sort(sorted.begin(), sorted.end(),
                   [](const Json& a, const Json& b) { return a["time"].get<int64_t>() < b["time"].get<int64_t>(); });
  faults = Json::array();
  for (auto& f : sorted) faults.push_back(std::move(f));
  data["spans"] = spans;
  data["faults"] = faults;
  Json strong = Json::array();
  for (const auto& [f, c] : strong_op_stats(r.history))
    strong.push_back(Json::array({f, c.ok, c.refused, c.fail, c.unknown}));
  data["strong"] = strong;
  Json checks = Json::array();
  for (const auto& c : r.checks) checks.push_back(Json{{"name", c.name}, {"ok", c.ok}, {"inconclusive", c.inconclusive}, {"summary", c.summary}, {"findings", c.findings}});
  data["checks"] = checks;

  std::string json = data.dump(-1, ' ', false, Json::error_handler_t::replace);
  std::string safe;
  safe.reserve(json.size());
  for (char ch : json) {
    if (ch == '<')
      safe += "\\u003c";
    else
      safe += ch;
  }
  std::string page = kPage;
  page.replace(page.find("@DATA@"), 6, safe);
  return page;
}

std::string write_report(const RunResult& result, const std::string& command_line, const std::string& path) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  if (!f) return "cannot open report file '" + path + "' for writing";
  f << render_report(result, command_line);
  f.close();
  if (!f) return "cannot write report file '" + path + "'";
  return {};
}

}  // namespace stig::sim
