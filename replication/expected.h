// Expected<T, E>: a value or an error, for results that can fail on
// untrusted input (C++20 has no std::expected). Errors are values in the
// core; nothing here throws. E defaults to Status.
#pragma once

#include <utility>
#include <variant>

#include "replication/invariant.h"
#include "replication/status.h"

namespace stig::replication {

template <class T, class E = Status>
class Expected {
 public:
  Expected(T value) : v_(std::in_place_index<0>, std::move(value)) {}  // NOLINT: implicit by design
  Expected(E error) : v_(std::in_place_index<1>, std::move(error)) {}  // NOLINT

  bool has_value() const { return v_.index() == 0; }
  explicit operator bool() const { return has_value(); }
  T& value() {
    STIG_INVARIANT(has_value(), "value() of an error");
    return std::get<0>(v_);
  }
  const T& value() const {
    STIG_INVARIANT(has_value(), "value() of an error");
    return std::get<0>(v_);
  }
  const E& error() const {
    STIG_INVARIANT(!has_value(), "error() of a value");
    return std::get<1>(v_);
  }
  T& operator*() { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

 private:
  std::variant<T, E> v_;
};

}  // namespace stig::replication
