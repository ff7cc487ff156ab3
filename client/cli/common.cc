#include "client/cli/common.h"

#include <algorithm>
#include <iostream>

#include "stigmergy/text.h"

namespace stig_cli {

using stigmergy::ErrorCode;

int fail(const std::string& message, int code) {
  std::string line = message;
  for (char& c : line) {
    if (c == '\n' || c == '\r') c = ' ';
  }
  std::cerr << "stig: error: " << line << "\n";
  return code;
}

int fail(const stigmergy::Error& e) {
  if (e.code == ErrorCode::kRetryUnknown) return fail(e.to_string(), kExitUnknown);  // may have been applied
  if (e.code == ErrorCode::kPermissionDenied) return fail(e.to_string(), kExitDenied);
  return fail(e.to_string(), e.code == ErrorCode::kInvalidArgument ? kExitUsage : kExitFailure);
}

int fail_strong(const stigmergy::Error& e) {
  switch (e.code) {
    case ErrorCode::kInvalidArgument:
    case ErrorCode::kBadRequest: return fail(e.to_string(), kExitUsage);
    case ErrorCode::kConflict:
    case ErrorCode::kBusy:
    case ErrorCode::kDeadlock: return fail(e.to_string(), kExitRefused);
    case ErrorCode::kOutcomeUnknown: return fail(e.to_string(), kExitUnknown);
    case ErrorCode::kPermissionDenied: return fail(e.to_string(), kExitDenied);
    default: return fail(e.to_string(), kExitFailure);
  }
}

json bytes_json(const std::string& bytes) {
  if (stigmergy::is_valid_utf8(bytes)) return bytes;
  return json{{"base64", stigmergy::base64_encode(bytes)}};
}

std::string bytes_human(const std::string& bytes) {
  if (stigmergy::is_valid_utf8(bytes)) return bytes;
  return "base64:" + stigmergy::base64_encode(bytes);
}

std::string key_human(const std::string& key) {
  const bool plain = stigmergy::is_valid_utf8(key) && std::none_of(key.begin(), key.end(), [](char c) {
                       const auto b = static_cast<unsigned char>(c);
                       return b < 0x20 || b == 0x7F;
                     });
  return plain ? key : "base64:" + stigmergy::base64_encode(key);
}

std::string shell_quote(const std::string& s) {
  if (!s.empty() && s.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_./:@,+=") ==
                        std::string::npos) {
    return s;
  }
  if (key_human(s) != s) {  // binary or control characters: bash's $'...' with \xNN escapes
    static constexpr char kHex[] = "0123456789abcdef";
    std::string out = "$'";
    for (char c : s) {
      const auto b = static_cast<unsigned char>(c);
      if (b < 0x20 || b >= 0x7F || c == '\\' || c == '\'') {
        out += "\\x";
        out += kHex[b >> 4];
        out += kHex[b & 0xF];
      } else {
        out += c;
      }
    }
    return out + "'";
  }
  std::string out = "'";
  for (char c : s) {
    if (c == '\'') {
      out += "'\\''";
    } else {
      out += c;
    }
  }
  return out + "'";
}

void print_json(const json& j) { std::cout << j.dump(-1, ' ', false, json::error_handler_t::replace) << "\n"; }

stigmergy::Result<stigmergy::Client> connect(const Globals& g) {
  stigmergy::ClientOptions o;
  auto eps = stigmergy::parse_endpoints(g.endpoints);
  if (!eps) return eps.error();
  for (const auto& ep : *eps) o.endpoints.push_back(ep.to_string());
  o.agent = g.agent;
  o.tls = {g.ca, g.cert, g.key};
  o.timeout = std::chrono::milliseconds(g.timeout_ms);
  o.connect_timeout = std::min(o.timeout, std::chrono::milliseconds(1000));
  return stigmergy::Client::create(std::move(o));
}

}  // namespace stig_cli
