// RAII owners and error helpers for the loader's libbpf calls (internal to src/datapath/).
#pragma once

#include <cstdint>
#include <cstring>
#include <functional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace bulkhead::datapath {

// Owns one file descriptor (a BPF map, program or link fd, a netlink socket ...).
class ScopedFd {
 public:
  ScopedFd() = default;
  explicit ScopedFd(int fd) : fd_(fd) {}
  ScopedFd(ScopedFd&& other) noexcept : fd_(other.Release()) {}
  ScopedFd& operator=(ScopedFd&& other) noexcept {
    if (this != &other) Reset(other.Release());
    return *this;
  }
  ScopedFd(const ScopedFd&) = delete;
  ScopedFd& operator=(const ScopedFd&) = delete;
  ~ScopedFd() { Reset(); }

  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  int Release() { return std::exchange(fd_, -1); }
  void Reset(int fd = -1);

 private:
  int fd_ = -1;
};

// An error from a libbpf or bpf syscall wrapper that returned -errno (libbpf 1.x convention)
// or set errno: "<what>: <strerror>", with the absl code matching the errno.
absl::Status ErrnoStatus(int err, const std::string& what);

// libbpf's own messages (verifier and loader diagnostics) are captured rather than printed:
// the tail is attached to the error that the failing call returns. Installed once.
void InstallLibbpfLogCapture();
// Returns and clears what libbpf logged since the last call (at most the last few KB).
std::string TakeLibbpfLog();

// Keys of a map, read with BPF_MAP_GET_NEXT_KEY (works for hash, LRU and LPM-trie maps).
// key_size is the map's key size; every key comes back as raw bytes. A hash map restarts
// from its first key when the previous one vanished under us (LRU eviction, a datapath
// delete), so the walk stops at max_keys (the map's capacity): a snapshot, not a promise.
absl::StatusOr<std::vector<std::vector<uint8_t>>> ListMapKeys(int map_fd, size_t key_size,
                                                              size_t max_keys,
                                                              const std::string& map_name);

// Typed view of the same, for the ABI key structs.
template <typename Key>
absl::StatusOr<std::vector<Key>> ListKeys(int map_fd, size_t max_keys,
                                          const std::string& map_name) {
  auto raw = ListMapKeys(map_fd, sizeof(Key), max_keys, map_name);
  if (!raw.ok()) return raw.status();
  static_assert(std::is_trivially_copyable_v<Key>);
  std::vector<Key> keys(raw->size());
  for (size_t i = 0; i < raw->size(); i++) std::memcpy(&keys[i], (*raw)[i].data(), sizeof(Key));
  return keys;
}

}  // namespace bulkhead::datapath
