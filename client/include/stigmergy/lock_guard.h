// LockGuard: hold a strong-path lock for a scope, RAII style.
//
//   auto guard = stigmergy::LockGuard::acquire(client, "charge:order-17", {.wait = std::chrono::seconds(30)});
//   if (!guard) { /* kBusy: someone else holds it; kOutcomeUnknown, ... */ }
//   client.strong_put("order-17:charged", "yes", {.fence = guard->fence()});
//   // ~LockGuard releases the lock and revokes the session.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "stigmergy/client.h"
#include "stigmergy/result.h"
#include "stigmergy/strong.h"

namespace stigmergy {

struct LockOptions {
  // The session's TTL: if this process dies, the lock is freed this long after
  // its last keepalive. 100 ms .. 24 h.
  std::chrono::milliseconds ttl{10000};
  // How long to wait for the lock; 0 = try once (kBusy at once when held).
  std::chrono::milliseconds wait{0};
  // Called once, from the keepalive thread, when the session is known or
  // presumed lost (see LockGuard::lost). Must be thread-safe and quick.
  std::function<void(const std::string& reason)> on_lost;
};

// Holds one lock under a session of its own while it lives.
//
// Guarantees:
// - acquire() grants a session, starts keeping it alive, then acquires; on
//   any failure it revokes the session, so nothing stays held (even a grant
//   whose answer was lost), and returns the acquire's error (an unknown
//   outcome whose session revoke succeeded is reported as kUnreachable: the
//   lock is then known not to be held).
// - While held, a background thread (one per guard, with its own Client and
//   client id, so the caller's Client is never used concurrently) sends a
//   keepalive every ttl/3, sooner after a failure.
// - lost() turns true when the node says the session expired or is unknown,
//   or when no keepalive succeeded for a whole TTL (the session may then have
//   expired). After that the lock may have passed to someone else: writes
//   fenced with fence() are refused, which is what fences are for.
// - release() (or the destructor) stops the thread, releases the lock and
//   revokes the session, using the Client given to acquire(): that Client
//   must outlive the guard and not be used by another thread meanwhile.
class LockGuard {
 public:
  static Result<LockGuard> acquire(Client& client, std::string_view name, const LockOptions& options = {});

  LockGuard(LockGuard&&) noexcept;
  LockGuard& operator=(LockGuard&&) noexcept;
  ~LockGuard();

  const std::string& name() const;
  uint64_t token() const;
  uint64_t session_id() const;
  // {name, token}: pass to strong writes so a holder that lost the lock
  // cannot overwrite the next holder's work.
  Fence fence() const;

  bool lost() const;
  std::string lost_reason() const;

  // Releases now; later calls and the destructor do nothing. The error, if
  // any, is the first of release and revoke (the lock is free either way once
  // the session is gone or expires).
  Result<void> release();

  struct State;

 private:
  explicit LockGuard(std::unique_ptr<State> state);
  std::unique_ptr<State> s_;
};

}  // namespace stigmergy
