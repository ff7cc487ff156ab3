#include "client/cli/txn_json.h"

#include <nlohmann/json.hpp>
#include <set>

#include "stigmergy/text.h"

namespace stig_cli {
namespace {

using json = nlohmann::json;
using stigmergy::CompareOp;
using stigmergy::ErrorCode;
using stigmergy::make_error;

stigmergy::Error bad(const std::string& where, const std::string& why) {
  return make_error(ErrorCode::kInvalidArgument, "txn: " + where + ": " + why);
}

std::string type_name(const json& j) { return j.type_name(); }

// A key or value: a string, or {"base64": "..."} for bytes.
stigmergy::Result<std::string> bytes_of(const json& j, const std::string& where) {
  if (j.is_string()) return j.get<std::string>();
  if (j.is_object() && j.size() == 1 && j.contains("base64") && j["base64"].is_string()) {
    auto b = stigmergy::base64_decode(j["base64"].get<std::string>());
    if (!b) return bad(where, b.error().message);
    return *b;
  }
  return bad(where, "expected a string or {\"base64\":\"...\"}, got " + type_name(j));
}

stigmergy::Result<void> only_fields(const json& j, const std::string& where, const std::set<std::string>& allowed) {
  for (auto it = j.begin(); it != j.end(); ++it) {
    if (allowed.count(it.key()) == 0) {
      std::string list;
      for (const auto& a : allowed) list += (list.empty() ? "" : ", ") + a;
      return bad(where, "unknown field \"" + it.key() + "\" (expected " + list + ")");
    }
  }
  return {};
}

stigmergy::Result<uint64_t> number_of(const json& j, const std::string& where) {
  if (!j.is_number_unsigned() && !(j.is_number_integer() && j.get<int64_t>() >= 0)) {
    return bad(where, "expected a non-negative integer, got " + (j.is_number() ? j.dump() : type_name(j)));
  }
  return j.get<uint64_t>();
}

stigmergy::Result<stigmergy::TxnCompare> compare_of(const json& c, const std::string& where) {
  if (!c.is_object()) return bad(where, "expected an object, got " + type_name(c));
  if (auto ok = only_fields(c, where, {"key", "op", "value", "version", "exists", "mod_revision"}); !ok) return ok.error();
  if (!c.contains("key")) return bad(where, "missing \"key\"");
  stigmergy::TxnCompare out;
  auto key = bytes_of(c["key"], where + ".key");
  if (!key) return key.error();
  if (key->empty()) return bad(where + ".key", "must not be empty");
  out.key = *key;
  int targets = 0;
  for (const char* t : {"value", "version", "exists", "mod_revision"}) targets += c.contains(t) ? 1 : 0;
  if (targets != 1) return bad(where, "needs exactly one of \"value\", \"version\", \"exists\", \"mod_revision\"");
  if (c.contains("op")) {
    if (!c["op"].is_string()) return bad(where + ".op", "expected one of \"=\", \"!=\", \"<\", \">\"");
    const std::string op = c["op"].get<std::string>();
    if (op == "=" || op == "==") {
      out.op = CompareOp::kEqual;
    } else if (op == "!=") {
      out.op = CompareOp::kNotEqual;
    } else if (op == "<") {
      out.op = CompareOp::kLess;
    } else if (op == ">") {
      out.op = CompareOp::kGreater;
    } else {
      return bad(where + ".op", "unknown op \"" + op + "\" (expected =, !=, < or >)");
    }
  }
  if (c.contains("value")) {
    auto v = bytes_of(c["value"], where + ".value");
    if (!v) return v.error();
    out.target = stigmergy::TxnCompare::Target::kValue;
    out.value = *v;
  } else if (c.contains("version")) {
    auto n = number_of(c["version"], where + ".version");
    if (!n) return n.error();
    out.target = stigmergy::TxnCompare::Target::kVersion;
    out.number = *n;
  } else if (c.contains("mod_revision")) {
    auto n = number_of(c["mod_revision"], where + ".mod_revision");
    if (!n) return n.error();
    out.target = stigmergy::TxnCompare::Target::kModRevision;
    out.number = *n;
  } else {
    if (!c["exists"].is_boolean()) return bad(where + ".exists", "expected true or false, got " + type_name(c["exists"]));
    if (out.op != CompareOp::kEqual && out.op != CompareOp::kNotEqual) {
      return bad(where + ".op", "an \"exists\" compare takes only = or !=");
    }
    out.target = stigmergy::TxnCompare::Target::kExists;
    out.exists = c["exists"].get<bool>();
  }
  return out;
}

stigmergy::Result<stigmergy::TxnOp> op_of(const json& o, const std::string& where) {
  if (!o.is_object() || o.size() != 1) {
    return bad(where, "expected an object with one of \"put\", \"del\", \"get\"");
  }
  const std::string kind = o.begin().key();
  const json& body = o.begin().value();
  const std::string here = where + "." + kind;
  stigmergy::TxnOp out;
  if (kind == "put") {
    out.kind = stigmergy::TxnOp::Kind::kPut;
  } else if (kind == "del" || kind == "delete") {
    out.kind = stigmergy::TxnOp::Kind::kDelete;
  } else if (kind == "get") {
    out.kind = stigmergy::TxnOp::Kind::kGet;
  } else {
    return bad(where, "unknown op \"" + kind + "\" (expected put, del or get)");
  }
  if (!body.is_object()) return bad(here, "expected an object, got " + type_name(body));
  if (out.kind == stigmergy::TxnOp::Kind::kPut) {
    if (auto ok = only_fields(body, here, {"key", "value"}); !ok) return ok.error();
  } else {
    if (auto ok = only_fields(body, here, {"key"}); !ok) return ok.error();
  }
  if (!body.contains("key")) return bad(here, "missing \"key\"");
  auto key = bytes_of(body["key"], here + ".key");
  if (!key) return key.error();
  if (key->empty()) return bad(here + ".key", "must not be empty");
  out.key = *key;
  if (out.kind == stigmergy::TxnOp::Kind::kPut) {
    if (!body.contains("value")) return bad(here, "missing \"value\"");
    auto v = bytes_of(body["value"], here + ".value");
    if (!v) return v.error();
    out.value = *v;
  }
  return out;
}

}  // namespace

stigmergy::Result<stigmergy::Txn> parse_txn_json(const std::string& text) {
  json j;
  try {
    j = json::parse(text);
  } catch (const json::parse_error& e) {
    std::string what = e.what();
    // "[json.exception.parse_error.101] parse error at line 1, column 2: ..." -> after the tag
    if (auto p = what.find("] "); p != std::string::npos) what = what.substr(p + 2);
    if (text.find_first_not_of(" \t\r\n") == std::string::npos) what = "standard input is empty";
    return make_error(ErrorCode::kInvalidArgument, "txn: invalid JSON on standard input: " + what);
  }
  if (!j.is_object()) return bad("top level", "expected an object, got " + type_name(j));
  if (auto ok = only_fields(j, "top level", {"compare", "success", "failure", "fence"}); !ok) return ok.error();
  stigmergy::Txn txn;
  if (j.contains("compare")) {
    if (!j["compare"].is_array()) return bad("compare", "expected an array, got " + type_name(j["compare"]));
    for (size_t i = 0; i < j["compare"].size(); ++i) {
      auto c = compare_of(j["compare"][i], "compare[" + std::to_string(i) + "]");
      if (!c) return c.error();
      txn.compares.push_back(std::move(*c));
    }
  }
  for (const char* branch : {"success", "failure"}) {
    if (!j.contains(branch)) continue;
    if (!j[branch].is_array()) return bad(branch, "expected an array, got " + type_name(j[branch]));
    for (size_t i = 0; i < j[branch].size(); ++i) {
      auto op = op_of(j[branch][i], std::string(branch) + "[" + std::to_string(i) + "]");
      if (!op) return op.error();
      (std::string(branch) == "success" ? txn.success : txn.failure).push_back(std::move(*op));
    }
  }
  if (txn.success.empty() && txn.failure.empty()) return bad("top level", "no operations in \"success\" or \"failure\"");
  if (j.contains("fence")) {
    if (!j["fence"].is_string()) return bad("fence", "expected \"LOCK:TOKEN\", got " + type_name(j["fence"]));
    auto f = stigmergy::parse_fence(j["fence"].get<std::string>());
    if (!f) return bad("fence", f.error().message);
    txn.fence = *f;
  }
  return txn;
}

}  // namespace stig_cli
