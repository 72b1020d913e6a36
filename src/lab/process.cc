// fork/exec with namespace entry and exact error reporting, output capture, and stopping
// recorded processes without ever signalling a reused pid.
#include "lab/process.h"

#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <thread>

#include "absl/strings/str_cat.h"

extern char** environ;

namespace bulkhead::lab {
namespace {

#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif

std::string ErrnoText(int err) { return std::strerror(err); }

struct StatLine {
  char state = '?';
  uint64_t start_time = 0;
};

std::optional<StatLine> ReadStat(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!in || !std::getline(in, line)) return std::nullopt;
  // The command name (field 2) is in parentheses and may itself hold spaces or ')'.
  size_t close = line.rfind(')');
  if (close == std::string::npos) return std::nullopt;
  std::istringstream rest(line.substr(close + 1));
  StatLine s;
  std::string field;
  // Field 3 is the state; field 22 the start time.
  for (int i = 3; i <= 22 && rest >> field; ++i) {
    if (i == 3) s.state = field.empty() ? '?' : field[0];
    if (i == 22) s.start_time = std::strtoull(field.c_str(), nullptr, 10);
  }
  return s;
}

// What failed in the child before exec, sent to the parent through a close-on-exec pipe.
struct ChildFailure {
  int stage = 0;  // 1 setns, 2 exec, 3 fd setup
  int err = 0;
};

[[noreturn]] void ChildFail(int pipe_fd, int stage) {
  ChildFailure f{stage, errno};
  ssize_t ignored = ::write(pipe_fd, &f, sizeof f);
  (void)ignored;
  ::_exit(127);
}

// Puts `from` on fd `to` without close-on-exec.
bool MoveFd(int from, int to) {
  if (from == to) return ::fcntl(to, F_SETFD, 0) == 0;
  return ::dup2(from, to) == to;
}

}  // namespace

std::optional<uint64_t> ProcessStartTime(pid_t pid) {
  auto s = ReadStat(pid);
  if (!s) return std::nullopt;
  return s->start_time;
}

std::optional<ProcessRecord> RecordProcess(pid_t pid) {
  auto t = ProcessStartTime(pid);
  if (!t) return std::nullopt;
  return ProcessRecord{pid, *t};
}

bool IsRunning(const ProcessRecord& p) {
  if (p.empty()) return false;
  auto s = ReadStat(p.pid);
  if (!s || s->start_time != p.start_time) return false;
  return s->state != 'Z' && s->state != 'X';
}

std::string SelfExecutable() {
  char buf[4096];
  ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
  return n > 0 ? std::string(buf, static_cast<size_t>(n)) : std::string();
}

std::vector<std::string> CurrentEnvironment() {
  std::vector<std::string> env;
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) env.emplace_back(*e);
  return env;
}

absl::StatusOr<pid_t> Spawn(const SpawnSpec& spec) {
  // Everything the child needs is prepared before fork: after it, only async-signal-safe
  // calls.
  std::vector<char*> argv, envp;
  for (const auto& a : spec.argv) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  for (const auto& e : spec.env) envp.push_back(const_cast<char*>(e.c_str()));
  envp.push_back(nullptr);
  int devnull = ::open("/dev/null", O_RDWR | O_CLOEXEC);
  if (devnull < 0) return absl::InternalError("cannot open /dev/null: " + ErrnoText(errno));
  int in = spec.stdin_fd >= 0 ? spec.stdin_fd : devnull;
  int out = spec.stdout_fd >= 0 ? spec.stdout_fd : devnull;
  int err = spec.stderr_fd >= 0 ? spec.stderr_fd : devnull;
  int report[2];
  if (::pipe2(report, O_CLOEXEC) != 0) {
    int e = errno;
    ::close(devnull);
    return absl::InternalError("pipe: " + ErrnoText(e));
  }
  pid_t pid = ::fork();
  if (pid < 0) {
    int e = errno;
    ::close(devnull);
    ::close(report[0]);
    ::close(report[1]);
    return absl::InternalError("fork: " + ErrnoText(e));
  }
  if (pid == 0) {
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    ::signal(SIGPIPE, SIG_DFL);
    if (spec.netns_fd >= 0 && ::setns(spec.netns_fd, CLONE_NEWNET) != 0) ChildFail(report[1], 1);
    if (spec.new_session) ::setsid();
    // Standard fds first from sources that are all above 2 (ours are), then everything else
    // is closed on exec except what the caller passes on.
    if (!MoveFd(in, 0) || !MoveFd(out, 1) || !MoveFd(err, 2)) ChildFail(report[1], 3);
    if (::syscall(SYS_close_range, 3U, ~0U, CLOSE_RANGE_CLOEXEC) != 0) {
      for (int fd = 3; fd < 4096; ++fd) ::fcntl(fd, F_SETFD, FD_CLOEXEC);
    }
    for (int fd : spec.pass_fds) {
      if (::fcntl(fd, F_SETFD, 0) != 0) ChildFail(report[1], 3);
    }
    ::execve(spec.path.c_str(), argv.data(), envp.data());
    ChildFail(report[1], 2);
  }
  ::close(report[1]);
  ::close(devnull);
  ChildFailure failure;
  ssize_t n;
  do {
    n = ::read(report[0], &failure, sizeof failure);
  } while (n < 0 && errno == EINTR);
  ::close(report[0]);
  if (n == static_cast<ssize_t>(sizeof failure)) {
    ::waitpid(pid, nullptr, 0);
    const char* what = failure.stage == 1   ? "entering the network namespace for "
                       : failure.stage == 2 ? "executing "
                                            : "setting up the descriptors of ";
    return absl::FailedPreconditionError(
        absl::StrCat(what, spec.path, ": ", ErrnoText(failure.err)));
  }
  return pid;
}

absl::StatusOr<RunResult> RunCaptured(SpawnSpec spec, std::string_view input,
                                      std::chrono::milliseconds timeout) {
  // A plugin that exits before reading its config must not kill us with SIGPIPE.
  ::signal(SIGPIPE, SIG_IGN);
  int in[2], out[2], err[2];
  if (::pipe2(in, O_CLOEXEC) != 0) return absl::InternalError("pipe: " + ErrnoText(errno));
  if (::pipe2(out, O_CLOEXEC) != 0) {
    ::close(in[0]);
    ::close(in[1]);
    return absl::InternalError("pipe: " + ErrnoText(errno));
  }
  if (::pipe2(err, O_CLOEXEC) != 0) {
    for (int fd : {in[0], in[1], out[0], out[1]}) ::close(fd);
    return absl::InternalError("pipe: " + ErrnoText(errno));
  }
  spec.stdin_fd = in[0];
  spec.stdout_fd = out[1];
  spec.stderr_fd = err[1];
  // Its own session, hence its own process group: a timeout kills what it started too (a
  // plugin's helpers, a shell's children), which would otherwise outlive it.
  spec.new_session = true;
  auto pid = Spawn(spec);
  ::close(in[0]);
  ::close(out[1]);
  ::close(err[1]);
  if (!pid.ok()) {
    for (int fd : {in[1], out[0], err[0]}) ::close(fd);
    return pid.status();
  }
  ::fcntl(in[1], F_SETFL, O_NONBLOCK);
  RunResult result;
  size_t written = 0;
  int in_fd = in[1];
  if (input.empty()) {
    ::close(in_fd);
    in_fd = -1;
  }
  int fds[2] = {out[0], err[0]};
  std::string* sinks[2] = {&result.out, &result.err};
  auto deadline = std::chrono::steady_clock::now() + timeout;
  bool timed_out = false;
  while (fds[0] >= 0 || fds[1] >= 0 || in_fd >= 0) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      timed_out = true;
      break;
    }
    pollfd p[3];
    int np = 0;
    for (int fd : fds) {
      if (fd >= 0) p[np++] = {fd, POLLIN, 0};
    }
    if (in_fd >= 0) p[np++] = {in_fd, POLLOUT, 0};
    int r = ::poll(p, np, static_cast<int>(left.count()));
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) break;
    for (int i = 0; i < np; ++i) {
      if (p[i].revents == 0) continue;
      if (p[i].fd == in_fd) {
        ssize_t w = ::write(in_fd, input.data() + written, input.size() - written);
        if (w > 0) written += static_cast<size_t>(w);
        if (w < 0 && errno == EAGAIN) continue;
        if (w < 0 || written == input.size()) {
          ::close(in_fd);
          in_fd = -1;
        }
        continue;
      }
      int k = p[i].fd == fds[0] ? 0 : 1;
      char buf[65536];
      ssize_t got = ::read(fds[k], buf, sizeof buf);
      if (got > 0) {
        sinks[k]->append(buf, static_cast<size_t>(got));
      } else if (got == 0 || errno != EINTR) {
        ::close(fds[k]);
        fds[k] = -1;
      }
    }
  }
  if (in_fd >= 0) ::close(in_fd);
  for (int fd : fds) {
    if (fd >= 0) ::close(fd);
  }
  if (timed_out) {
    ::kill(-*pid, SIGKILL);  // the process group: the child and everything it started
    ::kill(*pid, SIGKILL);
    ::waitpid(*pid, nullptr, 0);
    return absl::DeadlineExceededError(
        absl::StrCat(spec.path, " did not finish within ", timeout.count(), " ms (killed)"));
  }
  int status = 0;
  while (::waitpid(*pid, &status, 0) < 0 && errno == EINTR) {
  }
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return result;
}

absl::Status StopProcess(const ProcessRecord& p, std::chrono::milliseconds grace) {
  auto reap = [&] { ::waitpid(p.pid, nullptr, WNOHANG); };
  if (!IsRunning(p)) {
    if (!p.empty()) reap();
    return absl::OkStatus();
  }
  ::kill(p.pid, SIGTERM);
  auto wait_gone = [&](std::chrono::milliseconds limit) {
    auto until = std::chrono::steady_clock::now() + limit;
    while (std::chrono::steady_clock::now() < until) {
      reap();
      if (!IsRunning(p)) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    reap();
    return !IsRunning(p);
  };
  if (wait_gone(grace)) return absl::OkStatus();
  ::kill(p.pid, SIGKILL);
  if (wait_gone(std::chrono::seconds(5))) return absl::OkStatus();
  return absl::InternalError(absl::StrCat("process ", p.pid, " survived SIGKILL"));
}

}  // namespace bulkhead::lab
