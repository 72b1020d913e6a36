// A private mount and network namespace for BPF tests.
#include "sandbox.h"

#include <net/if.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace bulkhead::bpftest {
namespace {

absl::Status Errno(const std::string& what) {
  int err = errno;
  return absl::Status(absl::ErrnoToStatusCode(err), absl::StrCat(what, ": ", strerror(err)));
}

absl::Status DoEnter() {
  if (::unshare(CLONE_NEWNS | CLONE_NEWNET) != 0) return Errno("unshare(mount, net)");
  // Nothing we mount may propagate back to the host's namespace.
  if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0)
    return Errno("making / private");
  if (::mount("bpf", "/sys/fs/bpf", "bpf", 0, "mode=0700") != 0)
    return Errno("mounting bpffs at /sys/fs/bpf");
  return absl::OkStatus();
}

}  // namespace

bool IsRoot() { return ::geteuid() == 0; }

absl::Status EnterSandbox() {
  static const absl::Status status = DoEnter();
  return status;
}

absl::Status Shell(const std::string& command) {
  std::string quiet = absl::StrCat(command, " >/dev/null 2>&1");
  int rc = std::system(quiet.c_str());
  if (rc == -1) return Errno(absl::StrCat("running: ", command));
  if (!WIFEXITED(rc) || WEXITSTATUS(rc) != 0)
    return absl::InternalError(absl::StrCat("command failed (status ", rc, "): ", command));
  return absl::OkStatus();
}

absl::StatusOr<uint32_t> Veth(const std::string& name) {
  if (::if_nametoindex(name.c_str()) == 0) {
    if (auto s = Shell(absl::StrCat("ip link add ", name, " type veth peer name ", name, "-p"));
        !s.ok())
      return s;
  }
  unsigned idx = ::if_nametoindex(name.c_str());
  if (idx == 0) return Errno(absl::StrCat("if_nametoindex(", name, ")"));
  return static_cast<uint32_t>(idx);
}

absl::StatusOr<std::unique_ptr<WorkloadNetns>> WorkloadNetns::Start() {
  int ready[2];
  if (::pipe(ready) != 0) return Errno("pipe");
  pid_t pid = ::fork();
  if (pid < 0) return Errno("fork");
  if (pid == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    ::close(ready[0]);
    char ok = ::unshare(CLONE_NEWNET) == 0 ? 1 : 0;
    (void)!::write(ready[1], &ok, 1);
    ::close(ready[1]);
    for (;;) ::pause();
  }
  ::close(ready[1]);
  char ok = 0;
  ssize_t n = ::read(ready[0], &ok, 1);
  ::close(ready[0]);
  auto w = std::unique_ptr<WorkloadNetns>(new WorkloadNetns(pid));
  if (n != 1 || !ok) return absl::InternalError("the workload child could not unshare its netns");
  return w;
}

WorkloadNetns::~WorkloadNetns() {
  ::kill(pid_, SIGKILL);
  ::waitpid(pid_, nullptr, 0);
}

absl::Status WorkloadNetns::Exec(const std::string& command) const {
  return Shell(absl::StrCat("nsenter -t ", pid_, " -n sh -c '", command, "'"));
}

}  // namespace bulkhead::bpftest
