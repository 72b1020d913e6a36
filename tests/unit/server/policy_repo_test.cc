// PolicyRepository over a real store: apply, dry-run, prune, validation of the whole set,
// delete, history, rollback, mode, and two writers racing.
#include "server/policy_repo.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <thread>

#include "absl/strings/str_format.h"
#include "server/policy_repo_testing.h"
#include "store/store.h"

namespace bulkhead::server {
namespace {

using testing::ExpectCacheEqualsStore;
using testing::Np;

constexpr const char* kNs = R"(apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {team: shop}}
)";

std::string Anp(const std::string& name, int priority) {
  return "apiVersion: policy.networking.k8s.io/v1alpha1\nkind: AdminNetworkPolicy\nmetadata: "
         "{name: " +
         name + "}\nspec:\n  priority: " + std::to_string(priority) +
         "\n  subject: {namespaces: {}}\n  ingress:\n  - action: Deny\n    from: [{namespaces: "
         "{}}]\n";
}

class PolicyRepositoryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::path(::testing::TempDir()) /
           ("policy_repo_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    auto s = store::OpenStore("sqlite:" + (dir_ / "server.db").string());
    ASSERT_TRUE(s.ok()) << s.status();
    store_ = *std::move(s);
    repo_ = std::make_unique<PolicyRepository>(store_.get(), [this] { return now_; });
  }

  ChangeResult Apply(std::vector<policy::Source> files, bool prune = false, bool dry_run = false,
                     const std::string& message = "") {
    ApplyRequest req{std::move(files), prune, dry_run, message};
    auto r = repo_->Apply(req, alice_);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? *r : ChangeResult{};
  }

  size_t Count() {
    auto r = repo_->Read();
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? r->second.size() : 0;
  }

  void TearDown() override {
    repo_.reset();
    store_.reset();
    std::filesystem::remove_all(dir_);
  }

  std::filesystem::path dir_;
  std::unique_ptr<store::IStore> store_;
  std::unique_ptr<PolicyRepository> repo_;
  absl::Time now_ = absl::FromUnixSeconds(1'800'000'000);
  Actor alice_{"alice", "editor", "127.0.0.1"};
};

TEST_F(PolicyRepositoryTest, ApplyCreatesRevisionAndReapplyIsNoChange) {
  ChangeResult r = Apply({{"ns.yaml", kNs}, {"np.yaml", Np("web", 80)}}, false, false, "first");
  ASSERT_TRUE(r.valid);
  EXPECT_TRUE(r.committed);
  EXPECT_EQ(r.revision, 1);
  EXPECT_EQ(r.changes.size(), 2u);
  EXPECT_EQ(Count(), 2u);

  ChangeResult again = Apply({{"ns.yaml", kNs}, {"np.yaml", Np("web", 80)}});
  EXPECT_TRUE(again.valid);
  EXPECT_FALSE(again.committed);
  EXPECT_TRUE(again.changes.empty());
  EXPECT_EQ(again.revision, 1);

  auto history = repo_->History();
  ASSERT_TRUE(history.ok());
  ASSERT_EQ(history->size(), 1u);
  EXPECT_EQ((*history)[0].author, "alice");
  EXPECT_EQ((*history)[0].origin, "127.0.0.1");
  EXPECT_EQ((*history)[0].message, "first");
  EXPECT_EQ((*history)[0].creates, 2);
  EXPECT_EQ((*history)[0].time, now_);
}

TEST_F(PolicyRepositoryTest, DryRunChangesNothing) {
  ChangeResult r = Apply({{"np.yaml", Np("web", 80)}}, false, true);
  EXPECT_TRUE(r.valid);
  EXPECT_FALSE(r.committed);
  EXPECT_EQ(r.changes.size(), 1u);
  EXPECT_EQ(r.revision, 0);
  EXPECT_EQ(Count(), 0u);
  auto history = repo_->History();
  ASSERT_TRUE(history.ok());
  EXPECT_TRUE(history->empty());
}

TEST_F(PolicyRepositoryTest, InvalidFileChangesNothingAndNamesFileAndField) {
  Apply({{"np.yaml", Np("web", 80)}});
  ChangeResult r = Apply({{"bad.yaml", Np("api", 70000)}, {"ok.yaml", Np("db", 5432)}});
  EXPECT_FALSE(r.valid);
  EXPECT_FALSE(r.committed);
  ASSERT_FALSE(r.diagnostics.empty());
  EXPECT_EQ(r.diagnostics[0].where.file, "bad.yaml");
  EXPECT_NE(r.diagnostics[0].field.find("port"), std::string::npos);
  EXPECT_EQ(Count(), 1u);
  EXPECT_EQ(r.revision, 1);
}

TEST_F(PolicyRepositoryTest, ConflictWithStoredObjectIsRefused) {
  // Two admin policies may not share a priority: one stored, one applied later.
  Apply({{"a.yaml", Anp("a", 10)}});
  ChangeResult r = Apply({{"b.yaml", Anp("b", 10)}});
  EXPECT_FALSE(r.valid);
  ASSERT_FALSE(r.diagnostics.empty());
  bool named = false;
  for (const auto& d : r.diagnostics) {
    named = named || d.ToString().find("AdminNetworkPolicy") != std::string::npos;
  }
  EXPECT_TRUE(named);
  EXPECT_EQ(Count(), 1u);
}

TEST_F(PolicyRepositoryTest, PruneDeletesWhatFilesNoLongerHold) {
  Apply({{"ns.yaml", kNs}, {"a.yaml", Np("web", 80)}, {"b.yaml", Np("db", 5432)}});
  ChangeResult keep = Apply({{"a.yaml", Np("web", 80)}});
  EXPECT_FALSE(keep.committed);  // without prune, the others stay
  ChangeResult r = Apply({{"a.yaml", Np("web", 80)}}, true);
  ASSERT_TRUE(r.committed);
  EXPECT_EQ(r.changes.size(), 2u);
  EXPECT_EQ(Count(), 1u);
}

TEST_F(PolicyRepositoryTest, DiffComparesFilesWithStoredSet) {
  Apply({{"a.yaml", Np("web", 80)}, {"b.yaml", Np("db", 5432)}});
  auto same = repo_->Diff({{"a.yaml", Np("web", 80)}}, false);
  ASSERT_TRUE(same.ok());
  EXPECT_TRUE(same->changes.empty());
  auto pruned = repo_->Diff({{"a.yaml", Np("web", 80)}}, true);
  ASSERT_TRUE(pruned.ok());
  ASSERT_EQ(pruned->changes.size(), 1u);
  EXPECT_EQ(pruned->changes[0].action, ObjectChange::Action::kDelete);
  auto changed = repo_->Diff({{"a.yaml", Np("web", 81)}}, false);
  ASSERT_TRUE(changed.ok());
  ASSERT_EQ(changed->changes.size(), 1u);
  EXPECT_NE(RenderDiff(changed->changes).find("+        - port: 81"), std::string::npos)
      << RenderDiff(changed->changes);
  auto bad = repo_->Diff({policy::Source{"x.yaml", "kind: [\n"}}, false);
  ASSERT_TRUE(bad.ok());
  EXPECT_FALSE(bad->valid);
}

TEST_F(PolicyRepositoryTest, DeleteAndRollback) {
  Apply({{"a.yaml", Np("web", 80)}});                           // 1
  Apply({{"a.yaml", Np("web", 81)}, {"b.yaml", Np("db", 1)}});  // 2
  ObjectId web{"networking.k8s.io", "NetworkPolicy", "shop", "web"};
  auto del = repo_->Delete({web}, false, "bye", alice_);  // 3
  ASSERT_TRUE(del.ok());
  EXPECT_TRUE(del->committed);
  EXPECT_EQ(del->revision, 3);
  auto missing = repo_->Delete({web}, false, "", alice_);
  ASSERT_TRUE(missing.ok());
  EXPECT_FALSE(missing->valid);
  EXPECT_EQ(missing->diagnostics[0].object, "NetworkPolicy shop/web");

  auto at1 = repo_->Read(1);
  ASSERT_TRUE(at1.ok());
  ASSERT_EQ(at1->second.size(), 1u);
  EXPECT_NE(at1->second.begin()->second.json.find("\"port\":80"), std::string::npos);

  auto rb = repo_->Rollback(1, false, "", alice_);  // 4
  ASSERT_TRUE(rb.ok()) << rb.status();
  EXPECT_TRUE(rb->committed);
  EXPECT_EQ(rb->revision, 4);
  auto now = repo_->Read();
  ASSERT_TRUE(now.ok());
  ASSERT_EQ(now->second.size(), 1u);
  EXPECT_EQ(now->second.begin()->second.json, at1->second.begin()->second.json);
  auto rec = repo_->Revision(4);
  ASSERT_TRUE(rec.ok());
  EXPECT_EQ(rec->info.operation, "rollback");
  EXPECT_EQ(rec->info.rollback_to, 1);
  EXPECT_EQ(rec->info.message, "rollback to revision 1");
  // Rolling back to the state we are in changes nothing; an unknown revision is NotFound.
  auto noop = repo_->Rollback(4, false, "", alice_);
  ASSERT_TRUE(noop.ok());
  EXPECT_FALSE(noop->committed);
  EXPECT_EQ(repo_->Rollback(9, false, "", alice_).status().code(), absl::StatusCode::kNotFound);
  // Rollback to the empty set before the first revision.
  auto zero = repo_->Rollback(0, true, "", alice_);
  ASSERT_TRUE(zero.ok()) << zero.status();
}

TEST_F(PolicyRepositoryTest, ModeOnPolicyAndNamespace) {
  Apply({{"a.yaml", Np("web", 80)}});
  ObjectId web{"networking.k8s.io", "NetworkPolicy", "shop", "web"};
  auto r = repo_->SetMode(web, "audit", alice_);
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->committed);
  auto ns = repo_->SetMode(ObjectId{"", "Namespace", "", "shop"}, "learn", alice_);
  ASSERT_TRUE(ns.ok());
  EXPECT_TRUE(ns->committed);
  EXPECT_EQ(ns->changes[0].action, ObjectChange::Action::kCreate);
  auto set = repo_->Read();
  ASSERT_TRUE(set.ok());
  EXPECT_NE(set->second.at(web).json.find("\"bulkhead.io/mode\":\"audit\""), std::string::npos);
  // A mode policies cannot have is refused by validation, naming the object.
  auto bad = repo_->SetMode(web, "learn", alice_);
  ASSERT_TRUE(bad.ok());
  EXPECT_FALSE(bad->valid);
  auto missing =
      repo_->SetMode(ObjectId{"networking.k8s.io", "NetworkPolicy", "x", "y"}, "audit", alice_);
  ASSERT_TRUE(missing.ok());
  EXPECT_FALSE(missing->valid);
  // A workload's mode is an object of its own, created on first use, updated after.
  ObjectId wm{"bulkhead.io", "WorkloadMode", "shop", "web-1"};
  auto w = repo_->SetMode(wm, "learn", alice_);
  ASSERT_TRUE(w.ok()) << w.status();
  ASSERT_TRUE(w->committed);
  EXPECT_EQ(w->changes[0].action, ObjectChange::Action::kCreate);
  auto w2 = repo_->SetMode(wm, "enforce", alice_);
  ASSERT_TRUE(w2.ok()) << w2.status();
  ASSERT_TRUE(w2->committed);
  EXPECT_EQ(w2->changes[0].action, ObjectChange::Action::kUpdate);
  set = repo_->Read();
  ASSERT_TRUE(set.ok());
  EXPECT_NE(set->second.at(wm).json.find("\"mode\":\"enforce\""), std::string::npos);
}

TEST_F(PolicyRepositoryTest, ConcurrentAppliesEachLandOnce) {
  constexpr int kThreads = 4, kEach = 5;
  std::vector<std::thread> threads;
  threads.reserve(kThreads);
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kEach; ++i) {
        ApplyRequest req{
            {{"f", Np("p" + std::to_string(t) + "-" + std::to_string(i), 80)}}, false, false, ""};
        auto r = repo_->Apply(req, alice_);
        ASSERT_TRUE(r.ok()) << r.status();
        ASSERT_TRUE(r->committed);
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(Count(), static_cast<size_t>(kThreads * kEach));
  auto history = repo_->History();
  ASSERT_TRUE(history.ok());
  ASSERT_EQ(history->size(), static_cast<size_t>(kThreads * kEach));
  EXPECT_EQ((*history)[0].number, kThreads * kEach);
}

// A store that fails on demand, for the cache's recovery: reads that fail, and transactions
// that commit but whose answer is lost (as with etcd when a member dies mid-request).
class FaultyStore : public store::IStore {
 public:
  explicit FaultyStore(store::IStore* real) : real_(real) {}
  absl::StatusOr<store::Range> GetRange(std::string_view begin, std::string_view end,
                                        const store::ReadOptions& options) override {
    if (begin.substr(0, std::string_view(kPolicyObjectsPrefix).size()) == kPolicyObjectsPrefix) {
      ++object_reads;
    }
    if (fail_reads) return absl::UnavailableError("injected: store unreachable");
    return real_->GetRange(begin, end, options);
  }
  absl::StatusOr<store::TxnResult> Txn(const std::vector<store::Compare>& conditions,
                                       const std::vector<store::Op>& ops) override {
    if (fail_reads) return absl::UnavailableError("injected: store unreachable");
    auto r = real_->Txn(conditions, ops);
    if (lose_txn_answers && r.ok()) {
      return absl::UnavailableError("injected: no answer (the transaction may have committed)");
    }
    return r;
  }
  absl::StatusOr<std::unique_ptr<store::IWatch>> Watch(std::string prefix, int64_t start,
                                                       store::WatchCallback cb) override {
    return real_->Watch(std::move(prefix), start, std::move(cb));
  }
  absl::Status Compact(int64_t revision) override { return real_->Compact(revision); }
  std::string Describe() const override { return "faulty:" + real_->Describe(); }

  std::atomic<bool> fail_reads{false};
  std::atomic<bool> lose_txn_answers{false};
  std::atomic<int> object_reads{0};  // reads of the objects' prefix (or of one object)

 private:
  store::IStore* real_;
};

// Two repositories on one store are two server replicas: each keeps the set in memory and
// follows the other's revisions by their records, without reading every object again.
TEST_F(PolicyRepositoryTest, TheCachedSetFollowsAnotherReplicaByItsRecords) {
  FaultyStore counted(store_.get());
  PolicyRepository a(&counted, [this] { return now_; });
  PolicyRepository b(store_.get(), [this] { return now_; });
  auto apply = [&](PolicyRepository& repo, std::vector<policy::Source> files) {
    auto r = repo.Apply(ApplyRequest{std::move(files), false, false, ""}, alice_);
    ASSERT_TRUE(r.ok()) << r.status();
    ASSERT_TRUE(r->committed);
  };
  apply(a, {{"ns.yaml", kNs}, {"web.yaml", Np("web", 80)}});
  ExpectCacheEqualsStore(a, "a after its first apply");
  apply(b, {{"db.yaml", Np("db", 5432)}});
  apply(a, {{"web.yaml", Np("web", 81)}});  // a catches up on b's revision 2 first
  ExpectCacheEqualsStore(a, "a after b's apply and its own");
  ExpectCacheEqualsStore(b, "b after a's apply");
  auto rolled = b.Rollback(1, false, "", alice_);
  ASSERT_TRUE(rolled.ok()) << rolled.status();
  ASSERT_TRUE(rolled->committed);
  ExpectCacheEqualsStore(a, "a after b's rollback");
  auto deleted =
      a.Delete({ObjectId{"networking.k8s.io", "NetworkPolicy", "shop", "web"}}, false, "", alice_);
  ASSERT_TRUE(deleted.ok()) << deleted.status();
  ASSERT_TRUE(deleted->committed);
  auto mode = b.SetMode(ObjectId{"", "Namespace", "", "shop"}, "audit", alice_);
  ASSERT_TRUE(mode.ok()) << mode.status();
  ASSERT_TRUE(mode->committed);
  ExpectCacheEqualsStore(a, "a after b's mode");
  ExpectCacheEqualsStore(b, "b after a's delete and its mode");
  // A dry run and a diff see b's last revision too.
  auto diff = a.Diff({{"web.yaml", Np("web", 81)}}, false);
  ASSERT_TRUE(diff.ok()) << diff.status();
  EXPECT_EQ(diff->revision, 6);
  ASSERT_EQ(diff->changes.size(), 1u);
  EXPECT_EQ(diff->changes[0].action, ObjectChange::Action::kCreate);

  // Only the first use read every object (ReadFromStore's own reads aside).
  PolicyRepository::CacheStats stats = a.cache_stats();
  EXPECT_EQ(stats.full_reads, 1);
  EXPECT_GE(stats.catch_ups, 2);
  EXPECT_EQ(stats.commits, 3);
  int reads_before = counted.object_reads.load();
  apply(a, {{"api.yaml", Np("api", 8080)}});
  EXPECT_EQ(counted.object_reads.load(), reads_before) << "an apply read the stored objects";
}

// Replicas applying at once: every apply lands once and both caches equal the store.
TEST_F(PolicyRepositoryTest, ConcurrentAppliesFromTwoReplicasKeepBothCachesExact) {
  PolicyRepository a(store_.get(), [this] { return now_; });
  PolicyRepository b(store_.get(), [this] { return now_; });
  constexpr int kEach = 6;
  std::vector<std::thread> threads;
  for (PolicyRepository* repo : {&a, &b}) {
    threads.emplace_back([&, repo] {
      for (int i = 0; i < kEach; ++i) {
        std::string name = (repo == &a ? "a" : "b") + std::to_string(i);
        auto r = repo->Apply(ApplyRequest{{{"f", Np(name, 80 + i)}}, false, false, ""}, alice_);
        ASSERT_TRUE(r.ok()) << r.status();
        ASSERT_TRUE(r->committed);
      }
    });
  }
  for (auto& t : threads) t.join();
  ExpectCacheEqualsStore(a, "a");
  ExpectCacheEqualsStore(b, "b");
  auto r = a.Read();
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->first, 2 * kEach);
  EXPECT_EQ(r->second.size(), static_cast<size_t>(2 * kEach));
}

// After store errors the cache is brought back to the store's state: a transaction that
// committed though its answer was lost, reads that failed, a revision record that is gone.
TEST_F(PolicyRepositoryTest, AfterAStoreErrorTheCacheIsReadAgain) {
  FaultyStore faulty(store_.get());
  PolicyRepository repo(&faulty, [this] { return now_; });
  auto apply = [&](const std::string& name, int port) {
    return repo.Apply(ApplyRequest{{{"f", Np(name, port)}}, false, false, ""}, alice_);
  };
  ASSERT_TRUE(apply("web", 80).ok());

  faulty.lose_txn_answers = true;
  auto lost = apply("db", 5432);
  EXPECT_FALSE(lost.ok());
  faulty.lose_txn_answers = false;
  // It did commit: the cache must not keep the set without it.
  ExpectCacheEqualsStore(repo, "after a lost answer");
  auto read = repo.Read();
  ASSERT_TRUE(read.ok());
  EXPECT_EQ(read->first, 2);
  EXPECT_EQ(read->second.size(), 2u);

  faulty.fail_reads = true;
  auto failed = apply("api", 8080);
  ASSERT_FALSE(failed.ok());
  EXPECT_TRUE(absl::IsUnavailable(failed.status())) << failed.status();
  EXPECT_FALSE(repo.Read().ok());
  faulty.fail_reads = false;
  ExpectCacheEqualsStore(repo, "after failed reads");

  // Another writer's revision whose record cannot be read: the whole set is read again.
  PolicyRepository other(store_.get(), [this] { return now_; });
  auto r = other.Apply(ApplyRequest{{{"f", Np("cache", 6379)}}, false, false, ""}, alice_);
  ASSERT_TRUE(r.ok() && r->committed);
  auto gone = store_->Txn(
      {}, {store::Op::Put(absl::StrFormat("%s%020d", kPolicyRevisionsPrefix, r->revision),
                          "not a record")});
  ASSERT_TRUE(gone.ok());
  int64_t full_reads = repo.cache_stats().full_reads;
  ExpectCacheEqualsStore(repo, "after an unreadable record");
  EXPECT_EQ(repo.cache_stats().full_reads, full_reads + 1);
  ASSERT_TRUE(apply("api", 8080).ok());
  ExpectCacheEqualsStore(repo, "after the next apply");
}

// The store went back (restored from a backup, or recreated): the cache follows it back.
TEST_F(PolicyRepositoryTest, AStoreThatWentBackIsReadAgain) {
  ASSERT_TRUE(Apply({{"f", kNs}}).committed);
  ASSERT_TRUE(Apply({{"f", Np("web", 80)}}).committed);
  ASSERT_EQ(Count(), 2u);
  // Revision 2 undone behind the repository's back, as a restore of revision 1 would.
  auto undo = store_->Txn(
      {}, {store::Op::Delete(std::string(kPolicyObjectsPrefix) +
                             ObjectId{"networking.k8s.io", "NetworkPolicy", "shop", "web"}.Key()),
           store::Op::Delete(absl::StrFormat("%s%020d", kPolicyRevisionsPrefix, 2)),
           store::Op::Put(kPolicyHeadKey, nlohmann::json{{"revision", 1}}.dump())});
  ASSERT_TRUE(undo.ok());
  ExpectCacheEqualsStore(*repo_, "after the store went back");
  EXPECT_EQ(Count(), 1u);
  ASSERT_TRUE(Apply({{"f", Np("db", 5432)}}).committed);
  ExpectCacheEqualsStore(*repo_, "after the next apply");
}

}  // namespace
}  // namespace bulkhead::server
