// Named network namespaces without iproute2: the same files and mounts `ip netns` uses, so
// both tools see the lab's namespaces.
#include "lab/netns.h"

#include <dirent.h>
#include <fcntl.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <thread>

#include "absl/strings/str_cat.h"

namespace bulkhead::lab {
namespace {

std::string ErrnoText(int err) { return std::strerror(err); }

absl::Status Errno(int err, const std::string& what) {
  return absl::Status(err == ENOENT                   ? absl::StatusCode::kNotFound
                      : err == EEXIST                 ? absl::StatusCode::kAlreadyExists
                      : err == EPERM || err == EACCES ? absl::StatusCode::kPermissionDenied
                                                      : absl::StatusCode::kInternal,
                      absl::StrCat(what, ": ", ErrnoText(err)));
}

// /run/netns must be a shared mount point, so that namespaces mounted on its files show in
// every mount namespace (iproute2 does the same).
absl::Status PrepareNetnsDir() {
  if (::mkdir(kNetnsDir, 0755) != 0 && errno != EEXIST) {
    return Errno(errno, absl::StrCat("creating ", kNetnsDir));
  }
  if (::mount("", kNetnsDir, "none", MS_SHARED | MS_REC, nullptr) == 0) return absl::OkStatus();
  if (errno != EINVAL) return Errno(errno, absl::StrCat("making ", kNetnsDir, " a shared mount"));
  // Not a mount point yet: bind it onto itself first.
  if (::mount(kNetnsDir, kNetnsDir, "none", MS_BIND | MS_REC, nullptr) != 0) {
    return Errno(errno, absl::StrCat("bind-mounting ", kNetnsDir));
  }
  if (::mount("", kNetnsDir, "none", MS_SHARED | MS_REC, nullptr) != 0) {
    return Errno(errno, absl::StrCat("making ", kNetnsDir, " a shared mount"));
  }
  return absl::OkStatus();
}

}  // namespace

Fd::~Fd() {
  if (fd_ >= 0) ::close(fd_);
}

Fd& Fd::operator=(Fd&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = other.release();
  }
  return *this;
}

std::string NetnsPath(const std::string& name) { return absl::StrCat(kNetnsDir, "/", name); }

bool NetnsExists(const std::string& name) {
  struct stat st {};
  return ::lstat(NetnsPath(name).c_str(), &st) == 0;
}

std::vector<std::string> ListNetns(std::string_view prefix) {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(kNetnsDir, ec)) {
    std::string name = entry.path().filename().string();
    if (name.rfind(prefix, 0) == 0) out.push_back(name);
  }
  std::sort(out.begin(), out.end());
  return out;
}

absl::Status CreateNetns(const std::string& name) {
  if (name.empty() || name.find('/') != std::string_view::npos || name == "." || name == "..") {
    return absl::InvalidArgumentError(absl::StrCat("invalid netns name \"", name, "\""));
  }
  if (auto s = PrepareNetnsDir(); !s.ok()) return s;
  std::string path = NetnsPath(name);
  int fd = ::open(path.c_str(), O_RDONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0);
  if (fd < 0) return Errno(errno, absl::StrCat("creating ", path));
  ::close(fd);
  // A thread of its own unshares, so that no other thread of ours changes namespace; the
  // bind mount keeps the namespace alive after the thread ends.
  absl::Status status;
  std::thread t([&] {
    if (::unshare(CLONE_NEWNET) != 0) {
      status = Errno(errno, "creating a network namespace");
      return;
    }
    if (::mount("/proc/thread-self/ns/net", path.c_str(), "none", MS_BIND, nullptr) != 0) {
      status = Errno(errno, absl::StrCat("mounting the network namespace on ", path));
    }
  });
  t.join();
  if (!status.ok()) ::unlink(path.c_str());
  return status;
}

absl::Status DeleteNetns(const std::string& name) {
  std::string path = NetnsPath(name);
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return absl::OkStatus();
    return Errno(errno, absl::StrCat("checking ", path));
  }
  // Not mounted (a crash between creating the file and mounting it) is fine.
  if (::umount2(path.c_str(), MNT_DETACH) != 0 && errno != EINVAL && errno != ENOENT) {
    return Errno(errno, absl::StrCat("unmounting ", path));
  }
  if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
    return Errno(errno, absl::StrCat("removing ", path));
  }
  return absl::OkStatus();
}

absl::StatusOr<Fd> OpenNetns(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Errno(errno, absl::StrCat("opening network namespace ", path));
  return Fd(fd);
}

absl::Status RunInNetns(const std::string& path, const std::function<absl::Status()>& fn) {
  auto ns = OpenNetns(path);
  if (!ns.ok()) return ns.status();
  absl::Status status;
  std::thread t([&] {
    if (::setns(ns->get(), CLONE_NEWNET) != 0) {
      status = Errno(errno, absl::StrCat("entering network namespace ", path));
      return;
    }
    status = fn();
  });
  t.join();
  return status;
}

absl::Status WriteSysctl(const std::string& key, const std::string& value) {
  // /proc/sys/net follows the network namespace of the calling thread.
  std::string path = absl::StrCat("/proc/sys/", key);
  int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) return Errno(errno, absl::StrCat("opening ", path));
  ssize_t n = ::write(fd, value.data(), value.size());
  int err = errno;
  ::close(fd);
  if (n != static_cast<ssize_t>(value.size())) {
    return Errno(n < 0 ? err : EIO, absl::StrCat("writing ", value, " to ", path));
  }
  return absl::OkStatus();
}

std::vector<pid_t> PidsInNetns(const std::string& path) {
  std::vector<pid_t> pids;
  struct stat want {};
  if (::stat(path.c_str(), &want) != 0) return pids;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator("/proc", ec)) {
    std::string name = entry.path().filename().string();
    if (name.empty() || name.find_first_not_of("0123456789") != std::string::npos) continue;
    struct stat st {};
    std::string ns = "/proc/" + name + "/ns/net";
    if (::stat(ns.c_str(), &st) != 0) continue;
    if (st.st_dev == want.st_dev && st.st_ino == want.st_ino) {
      pids.push_back(static_cast<pid_t>(std::stol(name)));
    }
  }
  return pids;
}

}  // namespace bulkhead::lab
