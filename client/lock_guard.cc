#include "stigmergy/lock_guard.h"

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <thread>

namespace stigmergy {

using Clock = std::chrono::steady_clock;

// Shared by the guard and its keepalive thread; lives on the heap so the
// guard can move while the thread runs.
struct LockGuard::State {
  Client* client = nullptr;
  std::string name;
  uint64_t token = 0;
  uint64_t session = 0;
  LockOptions options;
  ClientOptions client_options;

  std::thread thread;
  std::mutex mu;
  std::condition_variable cv;
  bool stop = false;
  std::atomic<bool> lost{false};
  std::string lost_reason;  // under mu
  bool released = false;

  void mark_lost(const std::string& why) {
    {
      std::lock_guard<std::mutex> l(mu);
      if (lost.load()) return;
      lost_reason = why;
      lost.store(true);
    }
    if (options.on_lost) options.on_lost(why);
  }

  void keepalive_loop() {
    ClientOptions o = client_options;
    o.client_id.clear();  // its own id: its seqs must not collide with the caller's
    const auto ttl = options.ttl;
    // One keepalive may not take longer than a third of the TTL, so a slow
    // attempt leaves time for another before the session could expire.
    o.strong_deadline = std::max(std::chrono::milliseconds(50), ttl / 3);
    o.timeout = std::min(o.timeout, o.strong_deadline);
    auto ka = Client::create(o);
    if (!ka) return mark_lost("cannot start the keepalive client: " + ka.error().to_string());
    auto last_ok = Clock::now();
    auto interval = ttl / 3;
    while (true) {
      {
        std::unique_lock<std::mutex> l(mu);
        if (cv.wait_for(l, interval, [&] { return stop; })) return;
      }
      auto r = ka->keepalive(session);
      if (r) {
        last_ok = Clock::now();
        interval = ttl / 3;
        continue;
      }
      const ErrorCode code = r.error().code;
      if (code == ErrorCode::kSessionExpired || code == ErrorCode::kNotFound) {
        return mark_lost("session " + std::to_string(session) + " is gone: " + r.error().to_string());
      }
      if (Clock::now() - last_ok >= ttl) {
        return mark_lost("no keepalive of session " + std::to_string(session) + " succeeded for a whole TTL (" +
                         std::to_string(ttl.count()) + " ms); the lock may have passed on. Last: " +
                         r.error().to_string());
      }
      interval = std::max(std::chrono::milliseconds(10), ttl / 10);
    }
  }

  void stop_thread() {
    {
      std::lock_guard<std::mutex> l(mu);
      stop = true;
    }
    cv.notify_all();
    if (thread.joinable()) thread.join();
  }
};

Result<LockGuard> LockGuard::acquire(Client& client, std::string_view name, const LockOptions& options) {
  auto state = std::make_unique<State>();
  state->client = &client;
  state->name = std::string(name);
  state->options = options;
  state->client_options = client.options();
  auto session = client.grant(options.ttl);
  if (!session) return session.error();
  state->session = session->id;
  // Keep the session alive while waiting too: a wait may outlast the TTL.
  State* s = state.get();
  state->thread = std::thread([s] { s->keepalive_loop(); });
  auto held = client.lock_acquire(name, session->id, options.wait);
  if (!held) {
    state->stop_thread();
    // Revoking frees the lock even if a grant's answer was lost. Once the
    // revoke is confirmed an unknown acquire is known: not held.
    auto revoked = client.revoke(session->id);
    if (held.error().code == ErrorCode::kOutcomeUnknown && revoked) {
      return make_error(ErrorCode::kUnreachable, "could not learn whether lock '" + std::string(name) +
                                                     "' was granted, so its session was revoked: not held (" +
                                                     held.error().to_string() + ")");
    }
    return held.error();
  }
  state->token = held->token;
  return LockGuard(std::move(state));
}

LockGuard::LockGuard(std::unique_ptr<State> state) : s_(std::move(state)) {}
LockGuard::LockGuard(LockGuard&&) noexcept = default;
LockGuard& LockGuard::operator=(LockGuard&& other) noexcept {
  if (this != &other) {
    (void)release();
    s_ = std::move(other.s_);
  }
  return *this;
}
LockGuard::~LockGuard() { (void)release(); }

const std::string& LockGuard::name() const { return s_->name; }
uint64_t LockGuard::token() const { return s_->token; }
uint64_t LockGuard::session_id() const { return s_->session; }
Fence LockGuard::fence() const { return Fence{s_->name, s_->token}; }
bool LockGuard::lost() const { return s_->lost.load(); }
std::string LockGuard::lost_reason() const {
  std::lock_guard<std::mutex> l(s_->mu);
  return s_->lost_reason;
}

Result<void> LockGuard::release() {
  if (!s_ || s_->released) return {};
  s_->released = true;
  s_->stop_thread();
  auto rel = s_->client->lock_release(s_->name, s_->session, s_->token);
  auto rev = s_->client->revoke(s_->session);
  if (!rel) return rel.error();
  return rev;
}

}  // namespace stigmergy
