#include "stigmergy/context.h"

#include <algorithm>

#include "stigmergy.pb.h"
#include "stigmergy/text.h"

namespace stigmergy {

std::string encode_context(std::string_view bytes) { return base64url_encode(bytes); }

Result<std::string> decode_context(std::string_view text) {
  auto bytes = base64url_decode(text);
  if (!bytes) {
    return make_error(ErrorCode::kInvalidArgument,
                      "malformed context '" + std::string(text.substr(0, 64)) + (text.size() > 64 ? "..." : "") +
                          "': " + bytes.error().message + "; pass the context string exactly as a get or put printed it");
  }
  auto vv = parse_context(*bytes);
  if (vv) {
    // What nodes hand out: entries sorted by node, no zero counters.
    stigmergy::v1::VersionVector pb;
    pb.ParseFromArray(bytes->data(), static_cast<int>(bytes->size()));
    for (int i = 0; i < pb.entries_size(); ++i) {
      if (pb.entries(i).counter() == 0) {
        vv = make_error(ErrorCode::kInvalidArgument, "version vector has a zero entry");
      } else if (i > 0 && !(pb.entries(i - 1).node() < pb.entries(i).node())) {
        vv = make_error(ErrorCode::kInvalidArgument, "version vector entries are not sorted");
      }
    }
    if (!bytes->empty() && pb.entries_size() == 0) {
      vv = make_error(ErrorCode::kInvalidArgument, "bytes do not form a version vector");
    }
  }
  if (!vv) {
    return make_error(ErrorCode::kInvalidArgument,
                      "malformed context '" + std::string(text.substr(0, 64)) + (text.size() > 64 ? "..." : "") +
                          "': " + vv.error().message + "; pass the context string exactly as a get or put printed it");
  }
  return std::move(bytes).value();
}

Result<VersionVector> parse_context(std::string_view bytes) {
  VersionVector out;
  if (bytes.empty()) return out;
  stigmergy::v1::VersionVector pb;
  if (!pb.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) {
    return make_error(ErrorCode::kInvalidArgument, "bytes do not form a version vector");
  }
  for (const auto& e : pb.entries()) {
    if (e.node().empty()) {
      return make_error(ErrorCode::kInvalidArgument, "version vector has an entry without a node id");
    }
    auto [it, inserted] = out.emplace(e.node(), e.counter());
    if (!inserted) {
      return make_error(ErrorCode::kInvalidArgument, "version vector names node '" + e.node() + "' twice");
    }
  }
  return out;
}

bool dominates(const VersionVector& a, const VersionVector& b) {
  for (const auto& [node, counter] : b) {
    if (counter == 0) continue;
    auto it = a.find(node);
    if (it == a.end() || it->second < counter) return false;
  }
  return true;
}

VersionVector merge(const VersionVector& a, const VersionVector& b) {
  VersionVector out = a;
  for (const auto& [node, counter] : b) {
    auto& slot = out[node];
    slot = std::max(slot, counter);
  }
  return out;
}

std::string to_string(const VersionVector& vv) {
  std::string out = "{";
  bool first = true;
  for (const auto& [node, counter] : vv) {
    if (!first) out += ", ";
    first = false;
    out += node + ":" + std::to_string(counter);
  }
  return out + "}";
}

}  // namespace stigmergy
