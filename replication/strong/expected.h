// Expected<T>: a value or a Status error, for results that can fail on
// untrusted input (C++20 has no std::expected). Errors are values in the
// core; nothing here throws.
#pragma once

#include <optional>
#include <utility>

#include "replication/invariant.h"
#include "replication/status.h"

namespace stig::replication {

template <class T>
class Expected {
 public:
  Expected(T value) : value_(std::move(value)) {}  // NOLINT: implicit by design
  Expected(Status error) : status_(std::move(error)) {  // NOLINT
    STIG_INVARIANT(!status_.is_ok(), "an Expected without a value holds an error");
  }

  bool has_value() const { return value_.has_value(); }
  explicit operator bool() const { return has_value(); }
  const Status& status() const { return status_; }
  T& value() {
    STIG_INVARIANT(value_.has_value(), "value() of an error");
    return *value_;
  }
  T& operator*() { return value(); }
  T* operator->() { return &value(); }

 private:
  std::optional<T> value_;
  Status status_;
};

}  // namespace stig::replication
