// Processes the lab starts and stops: fork/exec into a network namespace (CNI plugins, the
// agent, workload servers), capture of a plugin's output, and pid records that survive pid reuse.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace bulkhead::lab {

// A process as the lab records it: the pid and the kernel's start time of that pid (field 22
// of /proc/PID/stat), so a recorded pid that the kernel has since given to another process
// is never signalled.
struct ProcessRecord {
  pid_t pid = 0;
  uint64_t start_time = 0;
  bool empty() const { return pid <= 0; }
};

// The start time of `pid`, or nullopt when there is no such process.
std::optional<uint64_t> ProcessStartTime(pid_t pid);
// Record of a live process.
std::optional<ProcessRecord> RecordProcess(pid_t pid);
// True while the recorded process exists and has not exited (a zombie has exited).
bool IsRunning(const ProcessRecord& p);

// What to run and where.
struct SpawnSpec {
  std::string path;               // executable
  std::vector<std::string> argv;  // argv[0] included
  std::vector<std::string> env;   // the whole environment ("K=V")
  int netns_fd = -1;              // >= 0: the child enters this network namespace first
  bool new_session = false;       // setsid(): detached from our terminal and process group
  int stdin_fd = -1;              // -1: /dev/null
  int stdout_fd = -1;             // -1: /dev/null
  int stderr_fd = -1;             // -1: /dev/null
  std::vector<int> pass_fds;      // further fds the child keeps (same numbers)
};

// Starts the process; fails (and nothing runs) when entering the namespace or exec fails.
absl::StatusOr<pid_t> Spawn(const SpawnSpec& spec);

struct RunResult {
  int exit_code = 0;  // the exit status, or 128 + signal
  std::string out;
  std::string err;
};

// Runs to completion, writing `input` to its stdin and capturing stdout and stderr. A process
// still running after `timeout` is killed with the processes it started (it runs in its own
// session and process group) and reported as an error.
absl::StatusOr<RunResult> RunCaptured(SpawnSpec spec, std::string_view input,
                                      std::chrono::milliseconds timeout);

// Stops a recorded process: SIGTERM, then SIGKILL after `grace`; waits until it has exited
// (reaping it when it is our child). OK when it is already gone.
absl::Status StopProcess(const ProcessRecord& p, std::chrono::milliseconds grace);

// The path of the running executable (/proc/self/exe resolved).
std::string SelfExecutable();

// Our environment as "K=V" strings.
std::vector<std::string> CurrentEnvironment();

}  // namespace bulkhead::lab
