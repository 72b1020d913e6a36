// The cluster-wide identity allocator on a real three-member etcd cluster: allocators on
// different members (as server replicas) racing from threads for the same new keys get the
// same numbers, and racing holds and releases leave consistent records (no number of two
// keys, no key with two numbers, holders exactly the nodes' last sets).
#include <gtest/gtest.h>

#include <atomic>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "etcd_cluster.h"
#include "etcd_environment.h"
#include "server/identities.h"
#include "store/store.h"

namespace bulkhead::server {
namespace {

using Pins = std::map<std::string, uint32_t>;
using store::testing::EtcdCluster;

BULKHEAD_SHARED_ETCD_CLUSTER();

// The shared cluster (nullptr without etcd).
EtcdCluster* Cluster() { return store::testing::SharedEtcdCluster::Get(); }

// One store per member, as replicas each talking to their nearest member; the identities
// are deleted first (the tests share the cluster).
std::vector<std::unique_ptr<store::IStore>> StoresOnEveryMember() {
  std::vector<std::unique_ptr<store::IStore>> out;
  for (int m = 0; m < Cluster()->size(); ++m) {
    auto s = store::OpenStore("etcd://" + Cluster()->Endpoint(m));
    EXPECT_TRUE(s.ok()) << s.status();
    if (!s.ok()) return {};
    out.push_back(*std::move(s));
  }
  auto r = out[0]->Txn({}, {store::Op::DeletePrefix(kIdentitiesPrefix)});
  EXPECT_TRUE(r.ok()) << r.status();
  return out;
}

// The records, checked: one number per key, one key per number, a number record per key.
std::map<std::string, IdentityRecord> CheckedRecords(store::IStore* store) {
  auto list = ClusterIdentities(store).List();
  EXPECT_TRUE(list.ok()) << list.status();
  std::map<std::string, IdentityRecord> out;
  std::set<uint32_t> numbers;
  for (const IdentityRecord& r : list.ok() ? *list : std::vector<IdentityRecord>{}) {
    EXPECT_TRUE(numbers.insert(r.number).second) << "number " << r.number << " used twice";
    auto n = store->Get(IdentityNumberRecordKey(r.number));
    EXPECT_TRUE(n.ok() && n->kvs.size() == 1 &&
                nlohmann::json::parse(n->kvs[0].value).value("key", "") == r.key)
        << r.number << " does not name " << r.key;
    out[r.key] = r;
  }
  auto all = store->Get(kIdentityNumbersPrefix, true);
  EXPECT_TRUE(all.ok());
  if (all.ok()) {
    EXPECT_EQ(all->kvs.size(), numbers.size()) << "number records without a key";
  }
  return out;
}

TEST(IdentitiesOnEtcdTest, ReplicasRacingForTheSameNewKeysGiveThemTheSameNumbers) {
  REQUIRE_ETCD("identities are");
  auto stores = StoresOnEveryMember();
  ASSERT_EQ(stores.size(), 3u);
  std::set<std::string> keys;
  for (int i = 0; i < 40; ++i) keys.insert(absl::StrCat("ns:team=shop,app=svc-", i));
  constexpr int kNodes = 6;
  std::vector<Pins> got(kNodes);
  std::vector<std::string> errors(kNodes);
  std::atomic<int> ready{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kNodes; ++t) {
    threads.emplace_back([&, t] {
      ClusterIdentities ids(stores[t % stores.size()].get());
      ++ready;
      while (ready < kNodes) std::this_thread::yield();  // all start together
      auto p = ids.Hold(absl::StrCat("node-", t), keys);
      if (p.ok()) {
        got[t] = *p;
      } else {
        errors[t] = p.status().ToString();
      }
    });
  }
  for (std::thread& th : threads) th.join();
  for (int t = 0; t < kNodes; ++t) {
    ASSERT_EQ(errors[t], "") << "node-" << t;
    EXPECT_EQ(got[t], got[0]) << "node-" << t << " got other numbers than node-0";
  }
  std::set<uint32_t> numbers;
  for (const auto& [k, n] : got[0]) numbers.insert(n);
  EXPECT_EQ(numbers.size(), keys.size());
  EXPECT_EQ(*numbers.begin(), 256u);
  EXPECT_EQ(*numbers.rbegin(), 256u + keys.size() - 1);  // no gaps: lowest free first
  auto records = CheckedRecords(stores[0].get());
  ASSERT_EQ(records.size(), keys.size());
  for (const auto& [k, r] : records) EXPECT_EQ(r.holders.size(), size_t{kNodes}) << k;
}

TEST(IdentitiesOnEtcdTest, RacingHoldsAndReleasesLeaveConsistentRecords) {
  REQUIRE_ETCD("identities are");
  auto stores = StoresOnEveryMember();
  ASSERT_EQ(stores.size(), 3u);
  std::set<std::string> anchor_keys;
  for (int i = 0; i < 6; ++i) anchor_keys.insert(absl::StrCat("anchor-", i));
  auto anchor = ClusterIdentities(stores[0].get()).Hold("anchor", anchor_keys);
  ASSERT_TRUE(anchor.ok()) << anchor.status();

  constexpr int kNodes = 6;
  constexpr int kRounds = 15;
  std::vector<std::set<std::string>> last(kNodes);
  std::vector<std::string> errors(kNodes);
  std::vector<std::thread> threads;
  for (int t = 0; t < kNodes; ++t) {
    threads.emplace_back([&, t] {
      ClusterIdentities ids(stores[t % stores.size()].get());
      std::mt19937 rng(static_cast<unsigned>(t + 7));
      for (int round = 0; round < kRounds; ++round) {
        std::set<std::string> keys;
        for (int i = 0; i < 5; ++i) keys.insert(absl::StrCat("shared-", rng() % 10));
        keys.insert(absl::StrCat("anchor-", rng() % 6));
        auto p = ids.Hold(absl::StrCat("node-", t), keys);
        if (!p.ok()) {
          errors[t] = p.status().ToString();
          return;
        }
        std::set<uint32_t> numbers;
        for (const auto& [k, n] : *p) {
          if (!numbers.insert(n).second) errors[t] = absl::StrCat("number ", n, " given twice");
          if (anchor->count(k) > 0 && anchor->at(k) != n) {
            errors[t] = absl::StrCat(k, " changed number from ", anchor->at(k), " to ", n);
          }
        }
        last[t] = keys;
      }
    });
  }
  for (std::thread& th : threads) th.join();
  for (int t = 0; t < kNodes; ++t) EXPECT_EQ(errors[t], "") << "node-" << t;
  std::map<std::string, std::set<std::string>> expected, actual;
  for (const std::string& k : anchor_keys) expected[k].insert("anchor");
  for (int t = 0; t < kNodes; ++t) {
    for (const std::string& k : last[t]) expected[k].insert(absl::StrCat("node-", t));
  }
  for (const auto& [k, r] : CheckedRecords(stores[1].get())) actual[k] = r.holders;
  EXPECT_EQ(actual, expected);
  // Every node lets go: nothing is left.
  for (int t = 0; t < kNodes; ++t) {
    ASSERT_TRUE(ClusterIdentities(stores[2].get())
                    .ReleaseNode(absl::StrCat("node-", t), std::nullopt)
                    .ok());
  }
  ASSERT_TRUE(ClusterIdentities(stores[0].get()).Hold("anchor", {}).ok());
  EXPECT_TRUE(CheckedRecords(stores[0].get()).empty());
}

}  // namespace
}  // namespace bulkhead::server
