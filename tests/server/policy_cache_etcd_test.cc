// The policy repository's in-memory head on a real three-member etcd cluster: replicas on
// different members applying at once (and rolling back) each keep a set equal to the store's,
// and follow each other's revisions by their records rather than by reading every object.
#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "etcd_cluster.h"
#include "etcd_environment.h"
#include "policy_repo_testing.h"
#include "server/policy_repo.h"
#include "store/store.h"

namespace bulkhead::server {
namespace {

using store::testing::EtcdCluster;
using testing::ExpectCacheEqualsStore;
using testing::Np;

BULKHEAD_SHARED_ETCD_CLUSTER();

EtcdCluster* Cluster() { return store::testing::SharedEtcdCluster::Get(); }

TEST(PolicyCacheOnEtcdTest, ReplicasApplyingAtOnceKeepTheirSetsEqualToTheStore) {
  REQUIRE_ETCD("the policy set cache of replicas is");
  std::vector<std::unique_ptr<store::IStore>> stores;
  for (int m = 0; m < 2; ++m) {
    auto s = store::OpenStore("etcd://" + Cluster()->Endpoint(m));
    ASSERT_TRUE(s.ok()) << s.status();
    stores.push_back(*std::move(s));
  }
  ASSERT_TRUE(stores[0]->Txn({}, {store::Op::DeletePrefix("/bulkhead/policy/")}).ok());
  PolicyRepository a(stores[0].get());
  PolicyRepository b(stores[1].get());
  Actor actor{"test", "admin", "local"};
  constexpr int kEach = 8;
  std::vector<std::thread> threads;
  for (PolicyRepository* repo : {&a, &b}) {
    threads.emplace_back([&, repo] {
      std::string who = repo == &a ? "a" : "b";
      for (int i = 0; i < kEach; ++i) {
        auto r = repo->Apply(ApplyRequest{{{"f", Np(absl::StrCat(who, i), 80)}}, false, false, ""},
                             actor);
        ASSERT_TRUE(r.ok()) << who << i << ": " << r.status();
        ASSERT_TRUE(r->committed) << who << i;
        // Every other apply also changes a shared object, so the two race on one key too.
        auto s =
            repo->Apply(ApplyRequest{{{"f", Np("shared", 1000 + i)}}, false, false, ""}, actor);
        ASSERT_TRUE(s.ok()) << s.status();
      }
    });
  }
  for (auto& t : threads) t.join();
  ExpectCacheEqualsStore(a, "a after the race");
  ExpectCacheEqualsStore(b, "b after the race");
  auto head = a.Read();
  ASSERT_TRUE(head.ok());
  EXPECT_EQ(head->second.size(), static_cast<size_t>(2 * kEach + 1));

  // A rollback on one replica, an apply on the other.
  auto rolled = a.Rollback(3, false, "", actor);
  ASSERT_TRUE(rolled.ok()) << rolled.status();
  ASSERT_TRUE(rolled->committed);
  auto after = b.Apply(ApplyRequest{{{"f", Np("late", 81)}}, false, false, ""}, actor);
  ASSERT_TRUE(after.ok() && after->committed) << after.status();
  ExpectCacheEqualsStore(a, "a after the rollback");
  ExpectCacheEqualsStore(b, "b after its apply");
  // Each read every object once (its first use); the rest came from records and commits.
  EXPECT_EQ(a.cache_stats().full_reads, 1);
  EXPECT_EQ(b.cache_stats().full_reads, 1);
  EXPECT_GT(a.cache_stats().catch_ups + b.cache_stats().catch_ups, 0);
}

}  // namespace
}  // namespace bulkhead::server
