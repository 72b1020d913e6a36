// EtcdStore against a real three-member etcd cluster on loopback: the IStore contract, then
// faults (one member lost, two lost, restarted), a client killed mid-transaction, and an
// unreachable cluster. One cluster serves the whole binary; fault tests restore it.
#include "store/etcd_store.h"

#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>

#include "absl/strings/match.h"
#include "contract.h"
#include "crash_harness.h"
#include "etcd_cluster.h"

namespace bulkhead::store::testing {
namespace {

EtcdCluster* g_cluster = nullptr;
absl::Status g_cluster_status = absl::OkStatus();

class ClusterEnvironment : public ::testing::Environment {
 public:
  void SetUp() override {
    if (EtcdCluster::Binary().empty()) return;
    auto started = std::chrono::steady_clock::now();
    absl::StatusOr<std::unique_ptr<EtcdCluster>> cluster = EtcdCluster::Start(3);
    if (!cluster.ok()) {
      g_cluster_status = cluster.status();
      return;
    }
    cluster_ = std::move(*cluster);
    g_cluster = cluster_.get();
    std::printf("etcd cluster %s up in %lld ms\n", g_cluster->Url().c_str(),
                static_cast<long long>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                           std::chrono::steady_clock::now() - started)
                                           .count()));
  }
  void TearDown() override {
    g_cluster = nullptr;
    cluster_.reset();
  }

 private:
  std::unique_ptr<EtcdCluster> cluster_;
};

std::string SkipWithoutEtcd() {
  if (!EtcdCluster::Binary().empty()) return "";
  return "*** etcd is not installed (/usr/bin/etcd, package etcd-server): the etcd store is NOT "
         "tested ***";
}

// Skips loudly without etcd, fails when it is there but the cluster did not start.
#define REQUIRE_CLUSTER()                                                                \
  do {                                                                                   \
    if (std::string reason = SkipWithoutEtcd(); !reason.empty()) GTEST_SKIP() << reason; \
    ASSERT_NE(g_cluster, nullptr) << "etcd cluster did not start: " << g_cluster_status; \
  } while (false)

absl::StatusOr<std::unique_ptr<IStore>> OpenCluster(int timeout_ms = 5000) {
  if (g_cluster == nullptr) return absl::FailedPreconditionError("no etcd cluster");
  StoreOptions options;
  options.request_timeout_ms = timeout_ms;
  return OpenStore(g_cluster->Url(), options);
}

INSTANTIATE_TEST_SUITE_P(Etcd, StoreContractTest,
                         ::testing::Values(StoreTarget{"Etcd3Members", [] { return OpenCluster(); },
                                                       SkipWithoutEtcd}),
                         StoreTargetName);

class EtcdFaultTest : public ::testing::Test {
 protected:
  void SetUp() override { REQUIRE_CLUSTER(); }
  // Leaves the cluster whole for the next test, and shows the members' logs on failure.
  void TearDown() override {
    if (g_cluster == nullptr) return;
    if (HasFailure()) {
      for (int i = 0; i < g_cluster->size(); ++i) {
        std::printf("--- etcd member %d log tail:\n%s\n", i, g_cluster->LogTail(i).c_str());
      }
    }
    for (int i = 0; i < g_cluster->size(); ++i) {
      if (!g_cluster->Running(i)) {
        EXPECT_TRUE(g_cluster->Restart(i).ok());
      }
    }
    absl::Status healthy = g_cluster->WaitHealthy();
    EXPECT_TRUE(healthy.ok()) << healthy;
  }

  static std::string Prefix(const char* test) {
    return absl::StrCat("fault/", test, "/",
                        std::chrono::steady_clock::now().time_since_epoch().count(), "/");
  }
};

TEST_F(EtcdFaultTest, FollowerLostReadsWritesAndWatchesGoOn) {
  const std::string p = Prefix("follower");
  absl::StatusOr<int> leader = g_cluster->Leader();
  ASSERT_TRUE(leader.ok()) << leader.status();
  const int victim = (*leader + 1) % g_cluster->size();
  // The victim first: the watch streams from it and requests try it first.
  std::string url = "etcd://" + g_cluster->Endpoint(victim);
  for (int i = 0; i < g_cluster->size(); ++i) {
    if (i != victim) url += "," + g_cluster->Endpoint(i);
  }
  absl::StatusOr<std::unique_ptr<IStore>> store = OpenStore(url);
  ASSERT_TRUE(store.ok()) << store.status();
  EventLog log;
  absl::StatusOr<std::unique_ptr<IWatch>> watch = (*store)->Watch(p, 0, log.Callback());
  ASSERT_TRUE(watch.ok()) << watch.status();
  absl::StatusOr<TxnResult> first = (*store)->Txn({}, {Op::Put(p + "1", "before")});
  ASSERT_TRUE(first.ok()) << first.status();
  ASSERT_TRUE(log.WaitForEvents(1));

  g_cluster->Kill(victim);
  absl::StatusOr<TxnResult> second = (*store)->Txn({}, {Op::Put(p + "2", "after")});
  ASSERT_TRUE(second.ok()) << second.status();
  absl::StatusOr<TxnResult> third =
      (*store)->Txn({{p + "2", second->revision}}, {Op::Put(p + "2", "again")});
  ASSERT_TRUE(third.ok()) << third.status();
  EXPECT_TRUE(third->succeeded);
  absl::StatusOr<Range> read = (*store)->Get(p, /*prefix=*/true);
  ASSERT_TRUE(read.ok()) << read.status();
  ASSERT_EQ(read->kvs.size(), 2u);
  EXPECT_EQ(read->kvs[1].value, "again");
  // The watch moved to another member and resumed after the last revision it delivered.
  ASSERT_TRUE(log.WaitForEvents(3)) << log.error();
  std::vector<Event> events = log.events();
  ASSERT_EQ(events.size(), 3u) << log.error();
  EXPECT_EQ(events[0].kv.mod_revision, first->revision);
  EXPECT_EQ(events[1].kv.mod_revision, second->revision);
  EXPECT_EQ(events[2].kv.mod_revision, third->revision);
  EXPECT_TRUE(log.error().ok()) << log.error();
  // A new client whose first endpoint is the dead member works too.
  absl::StatusOr<std::unique_ptr<IStore>> fresh = OpenStore(url);
  ASSERT_TRUE(fresh.ok()) << fresh.status();
}

TEST_F(EtcdFaultTest, LeaderLostServiceResumesAfterTheElection) {
  const std::string p = Prefix("leader");
  absl::StatusOr<std::unique_ptr<IStore>> store = OpenCluster(/*timeout_ms=*/2000);
  ASSERT_TRUE(store.ok()) << store.status();
  ASSERT_TRUE((*store)->Txn({}, {Op::Put(p + "counter", "0")}).ok());
  absl::StatusOr<int> leader = g_cluster->Leader();
  ASSERT_TRUE(leader.ok()) << leader.status();
  g_cluster->Kill(*leader);
  // Until the others elect a leader, requests fail with Unavailable (a write in flight may
  // be "outcome unknown"): the caller re-reads and retries its compare-and-swap.
  auto started = std::chrono::steady_clock::now();
  int failures = 0;
  std::string last_error;
  for (int attempt = 0;; ++attempt) {
    ASSERT_LT(attempt, 30) << "no write succeeded after the leader died: " << last_error;
    absl::StatusOr<Range> r = (*store)->Get(p + "counter");
    if (!r.ok()) {
      EXPECT_TRUE(absl::IsUnavailable(r.status())) << r.status();
      last_error = std::string(r.status().message());
      ++failures;
      continue;
    }
    ASSERT_EQ(r->kvs.size(), 1u);
    int value = std::stoi(r->kvs[0].value);
    absl::StatusOr<TxnResult> t =
        (*store)->Txn({{p + "counter", r->kvs[0].mod_revision}},
                      {Op::Put(p + "counter", std::to_string(value + 1))});
    if (!t.ok()) {
      EXPECT_TRUE(absl::IsUnavailable(t.status())) << t.status();
      last_error = std::string(t.status().message());
      ++failures;
      continue;
    }
    if (t->succeeded) break;
  }
  std::printf("leader lost: writes back after %lld ms, %d failed requests (last: %s)\n",
              static_cast<long long>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                         std::chrono::steady_clock::now() - started)
                                         .count()),
              failures, last_error.c_str());
  // Two members left: both answer.
  absl::StatusOr<TxnResult> more = (*store)->Txn({}, {Op::Put(p + "more", "x")});
  ASSERT_TRUE(more.ok()) << more.status();
  absl::StatusOr<Range> read = (*store)->Get(p, true);
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_EQ(read->kvs.size(), 2u);
}

TEST_F(EtcdFaultTest, TwoMembersLostWritesFailClearlyAndNothingIsWritten) {
  const std::string p = Prefix("two");
  constexpr int kTimeoutMs = 2000;
  absl::StatusOr<std::unique_ptr<IStore>> store = OpenCluster(kTimeoutMs);
  ASSERT_TRUE(store.ok()) << store.status();
  EventLog log;
  absl::StatusOr<std::unique_ptr<IWatch>> watch = (*store)->Watch(p, 0, log.Callback());
  ASSERT_TRUE(watch.ok()) << watch.status();

  g_cluster->Kill(1);
  g_cluster->Kill(2);
  // Once the survivor knows it has no leader, reads fail too (they are linearizable). Until
  // then a write could reach a leader that does not know yet, whose outcome is unknown.
  for (int i = 0;; ++i) {
    absl::StatusOr<Range> r = (*store)->Get(p);
    if (absl::IsUnavailable(r.status())) break;
    ASSERT_LT(i, 60) << "reads still work without quorum: " << r.status();
  }
  auto started = std::chrono::steady_clock::now();
  absl::StatusOr<TxnResult> write = (*store)->Txn({}, {Op::Put(p + "lost", "must not land")});
  auto elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(
                     std::chrono::steady_clock::now() - started)
                     .count();
  ASSERT_TRUE(absl::IsUnavailable(write.status())) << write.status();
  std::string message(write.status().message());
  EXPECT_TRUE(absl::StrContains(message, "no quorum or unreachable")) << message;
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(absl::StrContains(message, g_cluster->Endpoint(i)));
  EXPECT_TRUE(absl::StrContains(message, "nothing was written")) << message;
  // Within the request timeout (plus the last attempt's slack), not etcd's own 7 s or forever.
  EXPECT_LT(elapsed, kTimeoutMs + 1500) << message;
  std::printf("write without quorum failed after %lld ms: %s\n", static_cast<long long>(elapsed),
              message.c_str());
  // The watch reports that no member serves it any more.
  ASSERT_TRUE(log.WaitForError());
  EXPECT_TRUE(absl::IsUnavailable(log.error())) << log.error();
  EXPECT_TRUE(absl::StrContains(log.error().message(), "no quorum or unreachable")) << log.error();

  ASSERT_TRUE(g_cluster->Restart(1).ok());
  ASSERT_TRUE(g_cluster->Restart(2).ok());
  ASSERT_TRUE(g_cluster->WaitHealthy().ok());
  absl::StatusOr<Range> absent = (*store)->Get(p + "lost");
  ASSERT_TRUE(absent.ok()) << absent.status();
  EXPECT_TRUE(absent->kvs.empty()) << "a write that failed landed";
  absl::StatusOr<TxnResult> back = (*store)->Txn({}, {Op::Put(p + "back", "quorum again")});
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_TRUE(back->succeeded);
}

TEST_F(EtcdFaultTest, ClientKilledMidTransactionLeavesWholeAcknowledgedRevisions) {
  CrashTestOptions options;
  options.url = g_cluster->Url();
  options.key_prefix = Prefix("crash");
  options.rounds = 4;
  options.open = [] { return OpenCluster(); };
  int acknowledged = 0;
  RunCrashRounds(options, &acknowledged);
  std::printf("etcd crash test: %d acknowledged transactions checked\n", acknowledged);
  EXPECT_GT(acknowledged, 0);
}

TEST_F(EtcdFaultTest, ClusterLimitsAreClearErrorsAndWriteNothing) {
  const std::string p = Prefix("limits");
  absl::StatusOr<std::unique_ptr<IStore>> store = OpenCluster();
  ASSERT_TRUE(store.ok()) << store.status();
  // etcd refuses more than --max-txn-ops (128 by default) writes in one transaction; SQLite
  // has no such limit, so a caller that must work on both keeps transactions below it.
  std::vector<Op> ops;
  for (int i = 0; i < 129; ++i) ops.push_back(Op::Put(p + std::to_string(i), "v"));
  absl::StatusOr<TxnResult> big = (*store)->Txn({}, ops);
  ASSERT_TRUE(absl::IsInvalidArgument(big.status())) << big.status();
  EXPECT_TRUE(absl::StrContains(big.status().message(), "--max-txn-ops")) << big.status();
  ops.pop_back();
  ops.pop_back();
  absl::StatusOr<TxnResult> fits = (*store)->Txn({}, ops);
  ASSERT_TRUE(fits.ok()) << fits.status();
  absl::StatusOr<Range> r = (*store)->Get(p, true);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->kvs.size(), 127u);
}

TEST(EtcdUnreachableTest, OpenFailsWithTheEndpointsNamed) {
  // Ports just released by the kernel: nothing listens there.
  StoreOptions options;
  options.request_timeout_ms = 300;
  absl::StatusOr<std::unique_ptr<IStore>> store =
      OpenStore("etcd://127.0.0.1:1,127.0.0.1:2", options);
  ASSERT_TRUE(absl::IsUnavailable(store.status())) << store.status();
  std::string message(store.status().message());
  EXPECT_TRUE(absl::StrContains(message, "no quorum or unreachable")) << message;
  EXPECT_TRUE(absl::StrContains(message, "127.0.0.1:1")) << message;
  EXPECT_TRUE(absl::StrContains(message, "127.0.0.1:2")) << message;
}

}  // namespace
}  // namespace bulkhead::store::testing

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  if (bulkhead::store::testing::EtcdCluster::Binary().empty()) {
    std::fprintf(stderr,
                 "\n*** SKIPPING the etcd store tests: /usr/bin/etcd is not installed "
                 "(scripts/install-deps.sh installs etcd-server) ***\n\n");
  }
  ::testing::AddGlobalTestEnvironment(new bulkhead::store::testing::ClusterEnvironment());
  return RUN_ALL_TESTS();
}
