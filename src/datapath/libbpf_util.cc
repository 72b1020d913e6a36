// RAII owners and error helpers for the loader's libbpf calls.
#include "datapath/libbpf_util.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <unistd.h>

#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <mutex>

#include "absl/strings/str_cat.h"

namespace bulkhead::datapath {

void ScopedFd::Reset(int fd) {
  if (fd_ >= 0) ::close(fd_);
  fd_ = fd;
}

absl::Status ErrnoStatus(int err, const std::string& what) {
  if (err < 0) err = -err;
  if (err == 0) err = EIO;  // a failure reported without an errno is still a failure
  std::string msg = absl::StrCat(what, ": ", std::strerror(err));
  std::string log = TakeLibbpfLog();
  if (!log.empty()) absl::StrAppend(&msg, "\nlibbpf: ", log);
  return absl::Status(absl::ErrnoToStatusCode(err), msg);
}

namespace {

constexpr size_t kLogKeep = 8192;

std::mutex& LogMutex() {
  static std::mutex m;
  return m;
}
std::string& LogBuffer() {
  static std::string buf;
  return buf;
}

int CaptureLibbpfPrint(enum libbpf_print_level level, const char* format, va_list args) {
  if (level == LIBBPF_DEBUG) return 0;
  char line[1024];
  int n = std::vsnprintf(line, sizeof(line), format, args);
  if (n <= 0) return n;
  std::lock_guard<std::mutex> lock(LogMutex());
  std::string& buf = LogBuffer();
  buf.append(line);
  // Keep the tail: the last messages before a failure are the ones that explain it.
  if (buf.size() > kLogKeep) buf.erase(0, buf.size() - kLogKeep);
  return n;
}

}  // namespace

void InstallLibbpfLogCapture() {
  static std::once_flag once;
  std::call_once(once, [] { libbpf_set_print(CaptureLibbpfPrint); });
}

std::string TakeLibbpfLog() {
  std::lock_guard<std::mutex> lock(LogMutex());
  std::string out;
  out.swap(LogBuffer());
  while (!out.empty() && out.back() == '\n') out.pop_back();
  return out;
}

absl::StatusOr<std::vector<std::vector<uint8_t>>> ListMapKeys(int map_fd, size_t key_size,
                                                              size_t max_keys,
                                                              const std::string& map_name) {
  std::vector<std::vector<uint8_t>> keys;
  std::vector<uint8_t> cur(key_size), next(key_size);
  const void* prev = nullptr;  // NULL asks for the first key
  for (;;) {
    if (bpf_map_get_next_key(map_fd, prev, next.data()) != 0) {
      if (errno == ENOENT) break;
      return ErrnoStatus(errno, absl::StrCat("listing keys of map ", map_name));
    }
    keys.push_back(next);
    if (keys.size() >= max_keys) break;
    cur = next;
    prev = cur.data();
  }
  return keys;
}

}  // namespace bulkhead::datapath
