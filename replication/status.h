// Errors as values inside the core.
#pragma once

#include <string>
#include <utility>

namespace stig::replication {

// A result without a value: ok, or an error code with a one-line message.
class Status {
 public:
  enum class Code { kOk, kInvalidArgument, kCorruption, kPermissionDenied };

  Status() = default;
  static Status ok() { return Status(); }
  static Status invalid_argument(std::string msg) { return Status(Code::kInvalidArgument, std::move(msg)); }
  static Status corruption(std::string msg) { return Status(Code::kCorruption, std::move(msg)); }
  // An access rule refused the request (replication/strong/acl.h).
  static Status permission_denied(std::string msg) { return Status(Code::kPermissionDenied, std::move(msg)); }

  bool is_ok() const { return code_ == Code::kOk; }
  Code code() const { return code_; }
  const std::string& message() const { return message_; }

 private:
  Status(Code c, std::string m) : code_(c), message_(std::move(m)) {}
  Code code_ = Code::kOk;
  std::string message_;
};

}  // namespace stig::replication
