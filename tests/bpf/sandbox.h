// A private mount and network namespace for BPF tests: bpffs and veths that vanish with us.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace bulkhead::bpftest {

// The bpf tests need root (CAP_BPF, CAP_NET_ADMIN, CAP_SYS_ADMIN for the namespaces).
bool IsRoot();

// Moves this process, once, into new mount and network namespaces and mounts a fresh bpffs
// at /sys/fs/bpf there. Whatever the tests pin or create (maps, programs, interfaces,
// qdiscs) lives in these namespaces and is gone when the process ends, even on a crash;
// the host's /sys/fs/bpf and interfaces are never touched.
absl::Status EnterSandbox();

// Runs a shell command (iproute2) inside the sandbox; an error carries its exit status.
absl::Status Shell(const std::string& command);

// Creates the veth pair `name` <-> `name`-p (if missing) and returns `name`'s ifindex.
absl::StatusOr<uint32_t> Veth(const std::string& name);

// A workload: a child process in a network namespace of its own, holding the namespace
// open. It dies with the test process (PR_SET_PDEATHSIG) and is killed by the destructor.
class WorkloadNetns {
 public:
  static absl::StatusOr<std::unique_ptr<WorkloadNetns>> Start();
  ~WorkloadNetns();
  WorkloadNetns(const WorkloadNetns&) = delete;
  WorkloadNetns& operator=(const WorkloadNetns&) = delete;

  int pid() const { return pid_; }
  // Runs a shell command inside the workload's network namespace.
  absl::Status Exec(const std::string& command) const;

 private:
  explicit WorkloadNetns(int pid) : pid_(pid) {}
  int pid_;
};

}  // namespace bulkhead::bpftest
