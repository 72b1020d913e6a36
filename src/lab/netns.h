// Named network namespaces as iproute2 keeps them (/run/netns/NAME bind mounts), running code
// inside one, and the processes that live in one.
#pragma once

#include <sys/types.h>

#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace bulkhead::lab {

inline constexpr const char* kNetnsDir = "/run/netns";

// An owned file descriptor (closed on destruction).
class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd();
  Fd(Fd&& other) noexcept : fd_(other.release()) {}
  Fd& operator=(Fd&& other) noexcept;
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }
  int release() {
    int fd = fd_;
    fd_ = -1;
    return fd;
  }
  bool valid() const { return fd_ >= 0; }

 private:
  int fd_ = -1;
};

std::string NetnsPath(const std::string& name);
bool NetnsExists(const std::string& name);
// Names under /run/netns that start with `prefix`.
std::vector<std::string> ListNetns(std::string_view prefix);

// Creates /run/netns/NAME holding a new, empty network namespace (what `ip netns add` does,
// including the shared mount of /run/netns). Fails when the name exists.
absl::Status CreateNetns(const std::string& name);
// Removes /run/netns/NAME (what `ip netns del` does); OK when it does not exist. The
// namespace goes away once no process lives in it.
absl::Status DeleteNetns(const std::string& name);

absl::StatusOr<Fd> OpenNetns(const std::string& path);

// Runs `fn` on a new thread that has entered the namespace (the calling thread never moves).
absl::Status RunInNetns(const std::string& path, const std::function<absl::Status()>& fn);

// Writes a sysctl of the calling thread's network namespace, e.g.
// "net/ipv6/conf/default/accept_dad".
absl::Status WriteSysctl(const std::string& key, const std::string& value);

// Processes whose network namespace is the one at `path` (what `ip netns pids` lists).
std::vector<pid_t> PidsInNetns(const std::string& path);

}  // namespace bulkhead::lab
