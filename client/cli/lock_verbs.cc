// `stig lock NAME [--ttl D] [--wait D] -- CMD...` and `stig lock try NAME`.
//
// `lock -- CMD` holds the lock (under a session of its own, kept alive by a
// LockGuard's background thread) while CMD runs, with STIG_LOCK_NAME and
// STIG_FENCE_TOKEN in CMD's environment, then releases it and exits with
// CMD's status (128+N if a signal N killed it, 127 if it could not start).
// stig prints nothing on stdout, so CMD's output is all there is. SIGINT,
// SIGTERM and SIGHUP are passed on to CMD; the lock is released after it
// exits. If the session is lost while CMD runs, one warning line goes to
// stderr at once (CMD keeps running; writes fenced with its token will be
// refused from then on).
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <iostream>

#include "client/cli/common.h"
#include "stigmergy/lock_guard.h"
#include "stigmergy/text.h"

extern char** environ;

namespace stig_cli {
namespace {

volatile sig_atomic_t g_child = 0;

void forward_signal(int sig) {
  if (g_child > 0) ::kill(static_cast<pid_t>(g_child), sig);
}

struct LockArgs {
  std::string name;
  std::string ttl_text = "10s";
  std::string wait_text = "60s";
};

stigmergy::Result<std::chrono::milliseconds> duration_flag(const char* flag, const std::string& text, int64_t min_ms,
                                                          int64_t max_ms, const char* range) {
  auto d = stigmergy::parse_duration_ms(text);
  if (!d) return stigmergy::make_error(stigmergy::ErrorCode::kInvalidArgument, std::string(flag) + ": " + d.error().message);
  if (*d < min_ms || *d > max_ms) {
    return stigmergy::make_error(stigmergy::ErrorCode::kInvalidArgument,
                                 std::string(flag) + " " + text + " is out of range (" + range + ")");
  }
  return std::chrono::milliseconds(*d);
}

// Runs `command` with the lock's name and token in its environment; returns
// its exit status the way a shell reports it.
int run_command(const std::vector<std::string>& command, const stigmergy::LockGuard& guard) {
  // Everything the child needs is built before fork: between fork and exec a
  // multi-threaded process may only call async-signal-safe functions.
  std::vector<std::string> env_strings;
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
    if (std::strncmp(*e, "STIG_FENCE_TOKEN=", 17) == 0 || std::strncmp(*e, "STIG_LOCK_NAME=", 15) == 0 ||
        std::strncmp(*e, "STIG_LOCK_SESSION=", 18) == 0) {
      continue;
    }
    env_strings.emplace_back(*e);
  }
  env_strings.push_back("STIG_FENCE_TOKEN=" + std::to_string(guard.token()));
  env_strings.push_back("STIG_LOCK_NAME=" + guard.name());
  env_strings.push_back("STIG_LOCK_SESSION=" + std::to_string(guard.session_id()));
  std::vector<char*> envp;
  for (auto& s : env_strings) envp.push_back(s.data());
  envp.push_back(nullptr);
  std::vector<std::string> args = command;
  std::vector<char*> argv;
  for (auto& s : args) argv.push_back(s.data());
  argv.push_back(nullptr);
  const std::string cannot = "stig: error: cannot run '" + command.front() + "': ";

  struct sigaction sa {};
  sa.sa_handler = forward_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = 0;
  struct sigaction old_int {}, old_term {}, old_hup {};
  ::sigaction(SIGINT, &sa, &old_int);
  ::sigaction(SIGTERM, &sa, &old_term);
  ::sigaction(SIGHUP, &sa, &old_hup);

  std::cout.flush();
  const pid_t pid = ::fork();
  if (pid < 0) return fail(std::string("cannot fork: ") + std::strerror(errno), kExitFailure);
  if (pid == 0) {
    ::sigaction(SIGINT, &old_int, nullptr);
    ::sigaction(SIGTERM, &old_term, nullptr);
    ::sigaction(SIGHUP, &old_hup, nullptr);
    ::execvpe(argv[0], argv.data(), envp.data());
    const int err = errno;
    const char* why = std::strerror(err);
    (void)!::write(2, cannot.data(), cannot.size());
    (void)!::write(2, why, std::strlen(why));
    (void)!::write(2, "\n", 1);
    ::_exit(err == ENOENT ? 127 : 126);
  }
  g_child = pid;
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) {
      status = 0;
      break;
    }
  }
  g_child = 0;
  ::sigaction(SIGINT, &old_int, nullptr);
  ::sigaction(SIGTERM, &old_term, nullptr);
  ::sigaction(SIGHUP, &old_hup, nullptr);
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return kExitFailure;
}

}  // namespace

void add_lock_verbs(CLI::App& app, Globals& g, std::function<int()>& action, std::vector<std::string>& command) {
  static LockArgs a;
  auto* lock = app.add_subcommand("lock", "Run a command while holding a lock (fencing token in $STIG_FENCE_TOKEN)");
  lock->add_option("NAME", a.name, "Lock name");
  lock->add_option("--ttl", a.ttl_text,
                   "Session TTL: if stig dies, the lock frees this long after the last keepalive (default 10s; "
                   "100ms..24h)");
  lock->add_option("--wait", a.wait_text, "How long to wait for the lock (default 60s; 0 = fail at once if held; max 1h)");
  lock->footer(R"HELP(Usage: stig lock NAME [--ttl D] [--wait D] -- CMD [ARGS...]
       stig lock try NAME

Runs CMD while holding lock NAME. CMD gets STIG_LOCK_NAME, STIG_FENCE_TOKEN (and
STIG_LOCK_SESSION) in its environment; pass "$STIG_LOCK_NAME:$STIG_FENCE_TOKEN" as
--fence to strong writes so that a holder that lost the lock cannot overwrite the next
holder's work. The session is kept alive while CMD runs; the lock is released after CMD
exits, and stig exits with CMD's status. Waiters are served in FIFO order.
Durations: 500ms, 10s, 2m, 1h (a bare number is seconds).
If the lock cannot be had in time (held: BUSY): one line on stderr, exit 3.

Examples:
  stig lock charge:order-17 -- ./charge.sh order-17
  stig lock nightly-report --wait 0 -- sh -c 'echo "token $STIG_FENCE_TOKEN"')HELP");

  auto* try_cmd = lock->add_subcommand("try", "Take the lock if it is free at once and release it again; exit 3 if held");
  try_cmd->add_option("NAME", a.name, "Lock name")->required();
  try_cmd->footer(R"HELP(Acquires NAME without waiting, prints the fencing token it got, and releases it
before exiting (it does not stay held). Useful for scripts that check whether a lock
is free: exit 0 = it was free, exit 3 = held (one line on stderr naming the holder).
Output: "acquired NAME with token T (released)"; --json: {"lock":NAME,"acquired":true,"token":T}.

Example:
  stig lock try nightly-report && echo free)HELP");
  try_cmd->callback([&g, &action] {
    action = [&g]() -> int {
      auto c = connect(g);
      if (!c) return fail_strong(c.error());
      stigmergy::LockOptions o;
      o.ttl = std::chrono::seconds(10);
      o.wait = std::chrono::milliseconds(0);
      auto guard = stigmergy::LockGuard::acquire(*c, a.name, o);
      if (!guard) return fail_strong(guard.error());
      const uint64_t token = guard->token();
      auto released = guard->release();
      if (g.json) {
        print_json(json{{"lock", bytes_json(a.name)}, {"acquired", true}, {"token", token}});
      } else {
        std::cout << "acquired " << key_human(a.name) << " with token " << token << " (released)\n";
      }
      if (!released) std::cerr << "stig: warning: releasing " << key_human(a.name) << ": " << released.error().to_string() << "\n";
      return kExitOk;
    };
  });

  lock->callback([&g, &action, &command, try_cmd] {
    if (try_cmd->parsed()) return;
    action = [&g, &command]() -> int {
      if (a.name.empty()) return fail("missing lock NAME; see 'stig lock --help'", kExitUsage);
      auto ttl = duration_flag("--ttl", a.ttl_text, 100, 24LL * 3600 * 1000, "100ms .. 24h");
      if (!ttl) return fail_strong(ttl.error());
      auto wait = duration_flag("--wait", a.wait_text, 0, 3600LL * 1000, "0 .. 1h");
      if (!wait) return fail_strong(wait.error());
      if (command.empty()) {
        return fail("missing command: stig lock NAME [--ttl D] [--wait D] -- CMD [ARGS...]", kExitUsage);
      }
      auto c = connect(g);
      if (!c) return fail_strong(c.error());
      stigmergy::LockOptions o;
      o.ttl = *ttl;
      o.wait = *wait;
      const std::string shown = key_human(a.name);
      o.on_lost = [shown](const std::string& why) {
        std::cerr << "stig: warning: lock " << shown << " may be lost: " << why << "\n";
      };
      auto guard = stigmergy::LockGuard::acquire(*c, a.name, o);
      if (!guard) return fail_strong(guard.error());
      const int status = run_command(command, *guard);
      auto released = guard->release();
      if (!released && !guard->lost()) {
        std::cerr << "stig: warning: releasing " << shown << ": " << released.error().to_string() << "\n";
      }
      return status;
    };
  });

}

}  // namespace stig_cli
