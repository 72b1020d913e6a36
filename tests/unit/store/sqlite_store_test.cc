// SqliteStore: the IStore contract (in memory and on a file), one owner per file, what survives
// a reopen, kill -9 of a writer mid-transaction, and clear errors for files it cannot use.
#include "store/sqlite_store.h"

#include <gtest/gtest.h>
#include <spawn.h>
#include <sys/wait.h>

#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <mutex>

#include "absl/strings/match.h"
#include "contract.h"
#include "crash_harness.h"

extern char** environ;

namespace bulkhead::store::testing {
namespace {

// One directory per test process (each test runs in its own process under ctest).
const std::string& ProcessTempDir() {
  static TempDir dir;
  return dir.path();
}

absl::StatusOr<std::unique_ptr<IStore>> OpenFreshFile() {
  static int count = 0;
  return OpenStore(absl::StrCat("sqlite:", ProcessTempDir(), "/contract-", ++count, ".db"));
}

INSTANTIATE_TEST_SUITE_P(
    Sqlite, StoreContractTest,
    ::testing::Values(StoreTarget{"SqliteMemory", [] { return OpenStore("sqlite::memory:"); }, {}},
                      StoreTarget{"SqliteFile", OpenFreshFile, {}}),
    StoreTargetName);

TEST(SqliteStoreTest, OneOwnerPerFile) {
  TempDir dir;
  const std::string path = dir.path() + "/owned.db";
  absl::StatusOr<std::unique_ptr<IStore>> first = OpenStore(path);
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ((*first)->Describe(), "sqlite:" + path);

  // In this process...
  absl::StatusOr<std::unique_ptr<IStore>> second = OpenStore("sqlite:" + path);
  ASSERT_TRUE(absl::IsFailedPrecondition(second.status())) << second.status();
  std::string message(second.status().message());
  EXPECT_TRUE(absl::StrContains(message, path)) << message;
  EXPECT_TRUE(absl::StrContains(message, "in use by another process")) << message;
  EXPECT_TRUE(absl::StrContains(message, absl::StrCat("pid ", getpid()))) << message;
  EXPECT_TRUE(absl::StrContains(message, "use etcd")) << message;

  // ...and in another one (the crash writer opens the store first and fails).
  std::string binary = BULKHEAD_STORE_CRASH_WRITER;
  std::string url = "sqlite:" + path;
  std::string prefix = "x/";
  std::vector<char*> argv = {binary.data(), url.data(), prefix.data(), nullptr};
  pid_t pid = -1;
  ASSERT_EQ(posix_spawn(&pid, binary.c_str(), nullptr, nullptr, argv.data(), environ), 0);
  int status = 0;
  waitpid(pid, &status, 0);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 1) << status;

  // Closing releases it.
  first->reset();
  absl::StatusOr<std::unique_ptr<IStore>> third = OpenStore(path);
  EXPECT_TRUE(third.ok()) << third.status();
}

TEST(SqliteStoreTest, EverythingSurvivesAReopen) {
  TempDir dir;
  const std::string url = "sqlite:" + dir.path() + "/reopen.db";
  int64_t r1 = 0;
  int64_t r2 = 0;
  int64_t r3 = 0;
  {
    absl::StatusOr<std::unique_ptr<IStore>> store = OpenStore(url);
    ASSERT_TRUE(store.ok()) << store.status();
    r1 = (*store)->Txn({}, {Op::Put("a", "1"), Op::Put("b", "1")})->revision;
    r2 = (*store)->Txn({}, {Op::Put("a", "2")})->revision;
    r3 = (*store)->Txn({}, {Op::Delete("b")})->revision;
    ASSERT_TRUE((*store)->Compact(r2).ok());
  }
  absl::StatusOr<std::unique_ptr<IStore>> store = OpenStore(url);
  ASSERT_TRUE(store.ok()) << store.status();
  absl::StatusOr<Range> now = (*store)->Get("", /*prefix=*/true);
  ASSERT_TRUE(now.ok()) << now.status();
  EXPECT_EQ(now->revision, r3);
  ASSERT_EQ(now->kvs.size(), 1u);
  EXPECT_EQ(now->kvs[0].value, "2");
  EXPECT_EQ(now->kvs[0].version, 2);
  EXPECT_EQ(now->kvs[0].create_revision, r1);
  // History from the compaction on, and the compaction itself, are kept.
  absl::StatusOr<Range> then = (*store)->Get("", true, r2);
  ASSERT_TRUE(then.ok()) << then.status();
  EXPECT_EQ(then->kvs.size(), 2u);
  EXPECT_TRUE(absl::IsOutOfRange((*store)->Get("a", false, r1).status()));
  EventLog log;
  absl::StatusOr<std::unique_ptr<IWatch>> watch = (*store)->Watch("", r2, log.Callback());
  ASSERT_TRUE(watch.ok()) << watch.status();
  ASSERT_TRUE(log.WaitForEvents(2));
  EXPECT_EQ(log.events()[1].type, Event::Type::kDelete);
  // The next revision follows on.
  absl::StatusOr<TxnResult> next = (*store)->Txn({}, {Op::Put("c", "1")});
  ASSERT_TRUE(next.ok());
  EXPECT_EQ(next->revision, r3 + 1);
}

TEST(SqliteStoreTest, WatchFallingBehindACompactionEndsWithOutOfRange) {
  absl::StatusOr<std::unique_ptr<IStore>> store = OpenStore("sqlite::memory:");
  ASSERT_TRUE(store.ok()) << store.status();
  // One dispatcher serves every watch: while `blocker`'s callback waits, `behind` gets
  // nothing, and a compaction passes it.
  std::mutex mu;
  std::condition_variable cv;
  bool entered = false;
  bool release = false;
  absl::StatusOr<std::unique_ptr<IWatch>> blocker =
      (*store)->Watch("block/", 0, [&](absl::StatusOr<std::vector<Event>>) {
        std::unique_lock lock(mu);
        entered = true;
        cv.notify_all();
        cv.wait(lock, [&] { return release; });
      });
  ASSERT_TRUE(blocker.ok());
  EventLog behind;
  absl::StatusOr<std::unique_ptr<IWatch>> watch = (*store)->Watch("data/", 0, behind.Callback());
  ASSERT_TRUE(watch.ok());
  ASSERT_TRUE((*store)->Txn({}, {Op::Put("block/x", "1")}).ok());
  {
    std::unique_lock lock(mu);
    cv.wait(lock, [&] { return entered; });
  }
  ASSERT_TRUE((*store)->Txn({}, {Op::Put("data/a", "1")}).ok());
  absl::StatusOr<TxnResult> last = (*store)->Txn({}, {Op::Put("data/a", "2")});
  ASSERT_TRUE(last.ok());
  ASSERT_TRUE((*store)->Compact(last->revision).ok());
  {
    std::lock_guard lock(mu);
    release = true;
  }
  cv.notify_all();
  ASSERT_TRUE(behind.WaitForError());
  EXPECT_TRUE(absl::IsOutOfRange(behind.error())) << behind.error();
  EXPECT_TRUE(absl::StrContains(behind.error().message(), "re-read")) << behind.error();
  EXPECT_TRUE(behind.events().empty());
  // The recovery: re-read, watch from the read's revision + 1.
  absl::StatusOr<Range> reread = (*store)->Get("data/", true);
  ASSERT_TRUE(reread.ok());
  EventLog again;
  absl::StatusOr<std::unique_ptr<IWatch>> resumed =
      (*store)->Watch("data/", reread->revision + 1, again.Callback());
  ASSERT_TRUE(resumed.ok()) << resumed.status();
  ASSERT_TRUE((*store)->Txn({}, {Op::Put("data/a", "3")}).ok());
  ASSERT_TRUE(again.WaitForEvents(1));
  EXPECT_EQ(again.events()[0].kv.value, "3");
}

TEST(SqliteStoreTest, WriterKilledMidTransactionLosesNoAcknowledgedRevision) {
  TempDir dir;
  const std::string url = "sqlite:" + dir.path() + "/crash.db";
  CrashTestOptions options;
  options.url = url;
  options.key_prefix = "crash/";
  options.rounds = 8;
  options.open = [url] { return OpenStore(url); };
  int acknowledged = 0;
  RunCrashRounds(options, &acknowledged);
  std::printf("sqlite crash test: %d acknowledged transactions checked\n", acknowledged);
  EXPECT_GT(acknowledged, 0);
}

TEST(SqliteStoreTest, FilesItCannotUseGiveClearErrors) {
  TempDir dir;
  const std::string missing_dir = dir.path() + "/no/such/dir/x.db";
  absl::StatusOr<std::unique_ptr<IStore>> missing = OpenStore(missing_dir);
  ASSERT_FALSE(missing.ok());
  EXPECT_TRUE(absl::StrContains(missing.status().message(), missing_dir)) << missing.status();

  const std::string garbage = dir.path() + "/garbage.db";
  std::ofstream(garbage) << std::string(8192, 'x');
  absl::StatusOr<std::unique_ptr<IStore>> bad = OpenStore(garbage);
  ASSERT_FALSE(bad.ok());
  EXPECT_TRUE(absl::StrContains(bad.status().message(), garbage)) << bad.status();
  EXPECT_TRUE(absl::StrContains(bad.status().message(), "not a database")) << bad.status();
}

}  // namespace
}  // namespace bulkhead::store::testing
