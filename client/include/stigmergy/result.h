// Errors as values for the Stigmergy client API.
//
// Nothing in the client library throws across its API: every operation returns
// a Result<T>, which holds either a T or an Error (a code plus a one-line,
// human-readable message that names what was wrong).
#pragma once

#include <cassert>
#include <optional>
#include <string>
#include <utility>
#include <variant>

namespace stigmergy {

// Why an operation failed. The first group mirrors stigmergy.v1.ErrorCode (the
// node answered with an error); the second group is detected by the client.
enum class ErrorCode {
  kOk = 0,
  // Reported by a node.
  kBadRequest,        // a field was missing or invalid
  kWrongType,         // e.g. counter add on a register key
  kTooManySiblings,   // the key already holds the maximum number of siblings
  kMalformedContext,  // the node could not use the causal context
  kDurabilityNotMet,  // stored locally, but not on enough replicas in time
  kFrameTooLarge,
  kMalformedFrame,
  kUnknownRequest,    // the node does not know this operation
  kInternal,
  kUnavailable,       // the node is shutting down or cannot serve
  kStaleRequest,      // the node already answered a newer request of this client
  kPermissionDenied,  // the node does not allow this request (admin verbs need stigd --enable-admin)
  // Reported by a node on the strong path.
  kConflict,          // compare, expected version or CAS failed, or the fence's token is stale
  kBusy,              // try-lock on a held lock, a full wait queue, or a lock wait that timed out
  kDeadlock,          // the lock wait would close a wait-for cycle between sessions
  kNotLeader,         // no leader could be found (after following hints and retrying)
  kNotFound,          // unknown session, or a lock that is not held
  kCompacted,         // the revision asked for was compacted away
  kSessionExpired,    // the session expired or was revoked
  // Reported by a node on the lazy path: a write retried on another node
  // (after a timeout) that the node could not check against the first
  // attempt, which may have been applied; it was not applied again. Read the
  // key to see. Never reported as a plain failure.
  kRetryUnknown,
  // The outcome of a strong write is unknown: the leader was lost (or the
  // connection dropped after sending) and no retry with the same request id
  // learned the answer within the deadline. The write may or may not have
  // been applied; it will not be applied later by this request id's retries
  // beyond what already happened. Never reported as a plain failure.
  kOutcomeUnknown,
  kServerOther,       // an error code this client version does not know
  // Detected by the client.
  kInvalidArgument,   // the caller passed something unusable (endpoint, context, key)
  kUnreachable,       // no endpoint could be reached or answered in time
  kProtocol,          // a node sent something this client does not understand
};

// Stable upper-case name of a code ("WRONG_TYPE", "UNREACHABLE", ...).
const char* error_code_name(ErrorCode code);

// True for codes a node reported (as opposed to client-side failures).
bool is_server_error(ErrorCode code);

// An error: a code and one line of text naming what was wrong. `node` is the
// id of the node that reported it, when a node did.
struct Error {
  ErrorCode code = ErrorCode::kInternal;
  std::string message;
  std::string node;

  // "<message>", suitable for "stig: error: <message>". Always one line.
  std::string to_string() const;
};

// Either a value or an Error, in the spirit of std::expected (C++23).
// Accessing value() of an error result (or error() of an ok one) is a
// programming error and asserts in debug builds.
template <class T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::in_place_index<0>, std::move(value)) {}   // NOLINT: implicit by design
  Result(Error error) : v_(std::in_place_index<1>, std::move(error)) {}  // NOLINT

  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }

  T& value() & { assert(ok()); return std::get<0>(v_); }
  const T& value() const& { assert(ok()); return std::get<0>(v_); }
  T&& value() && { assert(ok()); return std::get<0>(std::move(v_)); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

  const Error& error() const { assert(!ok()); return std::get<1>(v_); }

 private:
  std::variant<T, Error> v_;
};

// A result that carries no value: ok, or an Error.
template <>
class [[nodiscard]] Result<void> {
 public:
  Result() = default;
  Result(Error error) : error_(std::move(error)) {}  // NOLINT: implicit by design

  bool ok() const { return !error_.has_value(); }
  explicit operator bool() const { return ok(); }
  const Error& error() const { assert(!ok()); return *error_; }

 private:
  std::optional<Error> error_;
};

// Convenience constructor: make_error(ErrorCode::kInvalidArgument, "...").
inline Error make_error(ErrorCode code, std::string message, std::string node = {}) {
  return Error{code, std::move(message), std::move(node)};
}

}  // namespace stigmergy
