// The crash test's parent side: spawn the writer, read its acknowledgements, kill -9 it at a
// random moment, reopen and check (see crash_harness.h).
#include "crash_harness.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <random>
#include <sstream>
#include <thread>
#include <utility>
#include <vector>

extern char** environ;

namespace bulkhead::store::testing {

TempDir::TempDir() {
  std::string tmpl = (std::filesystem::temp_directory_path() / "bulkhead-store-XXXXXX").string();
  char* made = mkdtemp(tmpl.data());
  if (made == nullptr) {
    ADD_FAILURE() << "mkdtemp: " << std::strerror(errno);
    return;
  }
  path_ = made;
}

TempDir::~TempDir() {
  std::error_code ignored;
  if (!path_.empty()) std::filesystem::remove_all(path_, ignored);
}

namespace {

struct Ack {
  int64_t revision = 0;
  int64_t value = 0;
};

// Reads every complete "REVISION VALUE" line in `buffer`, keeping an incomplete tail.
void ParseAcks(std::string& buffer, std::vector<Ack>& acks) {
  size_t nl;
  while ((nl = buffer.find('\n')) != std::string::npos) {
    std::istringstream line(buffer.substr(0, nl));
    buffer.erase(0, nl + 1);
    Ack ack;
    line >> ack.revision >> ack.value;
    acks.push_back(ack);
  }
}

// Spawns the writer with its stdout on a pipe; returns the pid and the pipe's read end.
std::pair<pid_t, int> SpawnWriter(const CrashTestOptions& options) {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) {
    ADD_FAILURE() << "pipe: " << std::strerror(errno);
    return {-1, -1};
  }
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, fds[1], STDOUT_FILENO);
  std::string binary = BULKHEAD_STORE_CRASH_WRITER;
  std::vector<char*> argv = {binary.data(), const_cast<char*>(options.url.c_str()),
                             const_cast<char*>(options.key_prefix.c_str()), nullptr};
  pid_t pid = -1;
  int rc = posix_spawn(&pid, binary.c_str(), &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  close(fds[1]);
  if (rc != 0) {
    ADD_FAILURE() << "spawn " << binary << ": " << std::strerror(rc);
    close(fds[0]);
    return {-1, -1};
  }
  return {pid, fds[0]};
}

}  // namespace

void RunCrashRounds(const CrashTestOptions& options, int* acknowledged) {
  std::random_device seed_source;
  const unsigned seed = seed_source();
  std::mt19937 random(seed);
  SCOPED_TRACE("crash test seed " + std::to_string(seed));
  std::vector<Ack> all;
  for (int round = 0; round < options.rounds; ++round) {
    SCOPED_TRACE("round " + std::to_string(round));
    auto [pid, out] = SpawnWriter(options);
    if (pid < 0) return;
    // Kill after a random number of acknowledgements plus a random delay: the child is then
    // anywhere in a transaction (before, inside or after its commit).
    const size_t kill_after = std::uniform_int_distribution<size_t>(1, 30)(random);
    const int delay_us = std::uniform_int_distribution<int>(0, 5000)(random);
    std::vector<Ack> acks;
    std::string buffer;
    char chunk[4096];
    while (acks.size() < kill_after) {
      ssize_t n = read(out, chunk, sizeof(chunk));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;  // the writer died on its own: reported below
      buffer.append(chunk, static_cast<size_t>(n));
      ParseAcks(buffer, acks);
    }
    std::this_thread::sleep_for(std::chrono::microseconds(delay_us));
    kill(pid, SIGKILL);
    int status = 0;
    waitpid(pid, &status, 0);
    EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL)
        << "the writer exited by itself (status " << status << ") after " << acks.size()
        << " acknowledgements; see its stderr above";
    // What it acknowledged before dying is still in the pipe.
    for (;;) {
      ssize_t n = read(out, chunk, sizeof(chunk));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
      buffer.append(chunk, static_cast<size_t>(n));
    }
    close(out);
    ParseAcks(buffer, acks);
    EXPECT_GE(acks.size(), kill_after);

    absl::StatusOr<std::unique_ptr<IStore>> store = options.open();
    if (!store.ok()) {
      ADD_FAILURE() << "reopening after kill -9: " << store.status();
      return;
    }
    all.insert(all.end(), acks.begin(), acks.end());
    *acknowledged = static_cast<int>(all.size());
    const std::string a = options.key_prefix + "a";
    const std::string b = options.key_prefix + "b";
    // Every acknowledged revision is there, with both keys written by it.
    int64_t last_revision = 0;
    for (const Ack& ack : all) {
      EXPECT_GT(ack.revision, last_revision) << "revisions must grow";
      last_revision = ack.revision;
      for (const std::string& key : {a, b}) {
        absl::StatusOr<Range> r = (*store)->Get(key, false, ack.revision);
        ASSERT_TRUE(r.ok()) << r.status();
        ASSERT_EQ(r->kvs.size(), 1u) << key << " missing at acknowledged revision " << ack.revision;
        EXPECT_EQ(r->kvs[0].mod_revision, ack.revision) << key;
        EXPECT_EQ(r->kvs[0].value, std::to_string(ack.value)) << key;
      }
    }
    // Now: both keys from one transaction (an unacknowledged one may have committed whole).
    absl::StatusOr<Range> now = (*store)->Get(options.key_prefix, /*prefix=*/true);
    ASSERT_TRUE(now.ok()) << now.status();
    ASSERT_EQ(now->kvs.size(), 2u);
    EXPECT_EQ(now->kvs[0].mod_revision, now->kvs[1].mod_revision) << "half-applied transaction";
    EXPECT_EQ(now->kvs[0].value, now->kvs[1].value) << "half-applied transaction";
    if (!all.empty()) {
      EXPECT_GE(std::stoll(now->kvs[0].value), all.back().value);
      EXPECT_GE(now->kvs[0].mod_revision, all.back().revision);
    }
  }
}

}  // namespace bulkhead::store::testing
