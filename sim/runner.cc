#include "sim/runner.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>

namespace stig::sim {

namespace {

void write_all(int fd, const std::string& s) {
  size_t off = 0;
  while (off < s.size()) {
    const ssize_t n = ::write(fd, s.data() + off, s.size() - off);
    if (n <= 0) return;
    off += static_cast<size_t>(n);
  }
}

std::string read_all(int fd) {
  std::string out;
  char buf[4096];
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n <= 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

}  // namespace

IsolatedRun run_isolated(const SimOptions& options) {
  IsolatedRun r;
  int out_pipe[2], err_pipe[2];
  if (::pipe(out_pipe) != 0) return r;
  if (::pipe(err_pipe) != 0) {
    ::close(out_pipe[0]);
    ::close(out_pipe[1]);
    return r;
  }
  const pid_t pid = ::fork();
  if (pid < 0) {
    for (int fd : {out_pipe[0], out_pipe[1], err_pipe[0], err_pipe[1]}) ::close(fd);
    r.summary = std::string("fork failed: ") + std::strerror(errno);
    return r;
  }
  if (pid == 0) {
    ::close(out_pipe[0]);
    ::close(err_pipe[0]);
    ::dup2(err_pipe[1], STDERR_FILENO);
    ::signal(SIGABRT, SIG_DFL);
    const RunResult result = run_simulation(options);
    write_all(out_pipe[1], result.summary_line());
    ::_exit(result.ok() ? 0 : 1);
  }
  ::close(out_pipe[1]);
  ::close(err_pipe[1]);
  // Stderr is small; read summary after it (the child writes the summary last).
  r.stderr_text = read_all(err_pipe[0]);
  r.summary = read_all(out_pipe[0]);
  ::close(out_pipe[0]);
  ::close(err_pipe[0]);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (WIFEXITED(status)) {
    r.verdict = WEXITSTATUS(status) == 0 ? IsolatedRun::Verdict::kPassed
                : WEXITSTATUS(status) == 1 ? IsolatedRun::Verdict::kViolations
                                           : IsolatedRun::Verdict::kError;
  } else if (WIFSIGNALED(status)) {
    r.verdict = IsolatedRun::Verdict::kAborted;
    r.summary = "seed " + std::to_string(options.seed) + ": killed by signal " + std::to_string(WTERMSIG(status)) +
                " (" + strsignal(WTERMSIG(status)) + ")";
    // The core's own message names the invariant.
    if (auto pos = r.stderr_text.find("stigmergy invariant violated"); pos != std::string::npos) {
      auto end = r.stderr_text.find('\n', pos);
      r.summary += ": " + r.stderr_text.substr(pos, end == std::string::npos ? std::string::npos : end - pos);
    }
  }
  return r;
}

}  // namespace stig::sim
