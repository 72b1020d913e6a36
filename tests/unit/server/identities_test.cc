// Tests of the cluster-wide identity allocator (server/identities.h) on a real SQLite store.
#include "server/identities.h"

#include <gtest/gtest.h>

#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "server/agent_trust.h"
#include "test_store.h"

namespace bulkhead::server {
namespace {

using Pins = std::map<std::string, uint32_t>;

// The store's identity records, checked for consistency: every key record has a number
// record naming it back, no number is used twice, and there is no other number record.
std::map<std::string, IdentityRecord> CheckedRecords(store::IStore* store) {
  ClusterIdentities ids(store);
  absl::StatusOr<std::vector<IdentityRecord>> list = ids.List();
  EXPECT_TRUE(list.ok()) << list.status();
  std::map<std::string, IdentityRecord> out;
  std::set<uint32_t> numbers;
  for (const IdentityRecord& r : list.ok() ? *list : std::vector<IdentityRecord>{}) {
    EXPECT_TRUE(numbers.insert(r.number).second) << "number " << r.number << " used twice";
    EXPECT_FALSE(r.holders.empty()) << r.key << " is stored without holders";
    absl::StatusOr<store::Range> n = store->Get(IdentityNumberRecordKey(r.number));
    EXPECT_TRUE(n.ok() && n->kvs.size() == 1 &&
                nlohmann::json::parse(n->kvs[0].value).value("key", "") == r.key)
        << "number record of " << r.number << " does not name " << r.key;
    out[r.key] = r;
  }
  absl::StatusOr<store::Range> all = store->Get(kIdentityNumbersPrefix, true);
  EXPECT_TRUE(all.ok());
  if (all.ok()) {
    EXPECT_EQ(all->kvs.size(), numbers.size()) << "number records without a key";
  }
  return out;
}

TEST(ClusterIdentitiesTest, SameKeySameNumberLowestFirstAndHoldersPerNode) {
  testing::TempStore store;
  ClusterIdentities ids(store.get());
  absl::StatusOr<Pins> a = ids.Hold("node-a", {"app=web", "app=db"});
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(*a, (Pins{{"app=db", 256}, {"app=web", 257}}));  // sorted keys, from 256
  absl::StatusOr<Pins> b = ids.Hold("node-b", {"app=web", "app=cache"});
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(*b, (Pins{{"app=cache", 258}, {"app=web", 257}}));
  auto records = CheckedRecords(store.get());
  ASSERT_EQ(records.size(), 3u);
  EXPECT_EQ(records["app=web"].holders, (std::set<std::string>{"node-a", "node-b"}));
  EXPECT_EQ(records["app=db"].holders, (std::set<std::string>{"node-a"}));
  // Holding the same keys again changes nothing.
  absl::StatusOr<store::Range> before = store.get()->Get(kIdentitiesPrefix, true);
  ASSERT_TRUE(ids.Hold("node-a", {"app=web", "app=db"}).ok());
  absl::StatusOr<store::Range> after = store.get()->Get(kIdentitiesPrefix, true);
  EXPECT_EQ(before->revision, after->revision);
}

TEST(ClusterIdentitiesTest, AKeyIsFreedWhenItsLastHolderLetsGoAndItsNumberIsReused) {
  testing::TempStore store;
  ClusterIdentities ids(store.get());
  ASSERT_TRUE(ids.Hold("node-a", {"k1", "k2", "k3"}).ok());  // 256, 257, 258
  ASSERT_TRUE(ids.Hold("node-b", {"k2"}).ok());
  ASSERT_TRUE(ids.Hold("node-a", {"k3"}).ok());  // lets go of k1 (freed) and k2 (b keeps it)
  auto records = CheckedRecords(store.get());
  EXPECT_EQ(records.count("k1"), 0u);
  EXPECT_EQ(records["k2"].holders, (std::set<std::string>{"node-b"}));
  EXPECT_EQ(records["k2"].number, 257u);
  absl::StatusOr<store::Range> n = store.get()->Get(IdentityNumberRecordKey(256));
  ASSERT_TRUE(n.ok());
  EXPECT_TRUE(n->kvs.empty()) << "the freed number's record is deleted with its key";
  // The lowest free number goes to the next new key.
  absl::StatusOr<Pins> c = ids.Hold("node-c", {"k9", "k2"});
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(*c, (Pins{{"k2", 257}, {"k9", 256}}));
  ASSERT_TRUE(ids.Hold("node-b", {}).ok());
  ASSERT_TRUE(ids.Hold("node-c", {}).ok());
  ASSERT_TRUE(ids.Hold("node-a", {}).ok());
  EXPECT_TRUE(CheckedRecords(store.get()).empty());
}

TEST(ClusterIdentitiesTest, TooManyKeysForTheRangeAllocateNothing) {
  testing::TempStore store;
  ClusterIdentitiesOptions o;
  o.first = 256;
  o.last = 259;  // four numbers
  ClusterIdentities ids(store.get(), o);
  ASSERT_TRUE(ids.Hold("node-a", {"a1", "a2"}).ok());
  ASSERT_TRUE(ids.Hold("node-b", {"b1"}).ok());
  absl::StatusOr<Pins> b = ids.Hold("node-b", {"a1", "b2", "b3"});  // two new, one free
  ASSERT_FALSE(b.ok());
  EXPECT_EQ(b.status().code(), absl::StatusCode::kResourceExhausted) << b.status();
  EXPECT_NE(b.status().message().find("needs 2 new identities but only 1"), std::string::npos)
      << b.status();
  auto records = CheckedRecords(store.get());
  ASSERT_EQ(records.size(), 3u);  // a1, a2, b1: node-b neither gained a1 nor lost b1
  EXPECT_EQ(records["a1"].holders, (std::set<std::string>{"node-a"}));
  EXPECT_EQ(records["b1"].holders, (std::set<std::string>{"node-b"}));
  // A set that fits once b1 is let go of fits.
  absl::StatusOr<Pins> fits = ids.Hold("node-b", {"b2"});
  ASSERT_TRUE(fits.ok()) << fits.status();
  EXPECT_EQ(fits->at("b2"), 259u);
}

TEST(ClusterIdentitiesTest, InvalidKeysAreRefusedAndNothingIsStored) {
  testing::TempStore store;
  ClusterIdentities ids(store.get());
  absl::StatusOr<Pins> empty = ids.Hold("node-a", {"ok", ""});
  ASSERT_FALSE(empty.ok());
  EXPECT_EQ(empty.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(empty.status().message().find("keys[0]"), std::string::npos) << empty.status();
  absl::StatusOr<Pins> big = ids.Hold("node-a", {std::string(kMaxIdentityKeyBytes + 1, 'x')});
  ASSERT_FALSE(big.ok());
  EXPECT_EQ(big.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(CheckedRecords(store.get()).empty());
}

TEST(ClusterIdentitiesTest, KeysWithAnyTextGetDistinctRecordsAndOtherBytesAreRefused) {
  testing::TempStore store;
  ClusterIdentities ids(store.get());
  std::set<std::string> keys = {"ns:team=a,app=web,sa:default,port:http=TCP/80",
                                "a/b",
                                "a%2Fb",
                                "app=caf\xc3\xa9 bar",
                                "x\"y\\z",
                                "\xf0\x9f\x90\xb3"};
  absl::StatusOr<Pins> p = ids.Hold("node-a", keys);
  ASSERT_TRUE(p.ok()) << p.status();
  auto records = CheckedRecords(store.get());
  ASSERT_EQ(records.size(), keys.size());
  for (const std::string& k : keys) EXPECT_EQ(records[k].number, p->at(k));
  EXPECT_NE(IdentityKeyRecordKey("a/b"), IdentityKeyRecordKey("a%2Fb"));
  EXPECT_EQ(IdentityKeyRecordKey("a/b"), std::string(kIdentityKeysPrefix) + "a%2Fb");
  // Not UTF-8 (neither protobuf strings nor JSON can carry it), or control characters.
  for (std::string bad : {std::string("\xff\xfe"), std::string("caf\xc3"),
                          std::string("nul\0byte", 8), std::string("tab\there")}) {
    absl::StatusOr<Pins> r = ids.Hold("node-b", {bad});
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(r.status().message().find("not valid UTF-8"), std::string::npos) << r.status();
  }
  EXPECT_EQ(CheckedRecords(store.get()).size(), keys.size());
}

TEST(ClusterIdentitiesTest, ReleaseNodeOnlyWhileTheGuardHolds) {
  testing::TempStore store;
  ClusterIdentities ids(store.get());
  ASSERT_TRUE(ids.Hold("node-a", {"k1", "k2"}).ok());
  ASSERT_TRUE(ids.Hold("node-b", {"k2"}).ok());
  absl::StatusOr<store::TxnResult> t =
      store.get()->Txn({}, {store::Op::Put("/bulkhead/agents/node-a", "{}")});
  ASSERT_TRUE(t.ok());
  // The agent record changed since the sweep read it: the node keeps its identities.
  absl::Status s = ids.ReleaseNode("node-a", store::Compare{"/bulkhead/agents/node-a", 1});
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
  EXPECT_EQ(CheckedRecords(store.get()).size(), 2u);
  s = ids.ReleaseNode("node-a", store::Compare{"/bulkhead/agents/node-a", t->revision});
  ASSERT_TRUE(s.ok()) << s;
  auto records = CheckedRecords(store.get());
  ASSERT_EQ(records.size(), 1u);
  EXPECT_EQ(records["k2"].holders, (std::set<std::string>{"node-b"}));
}

TEST(ClusterIdentitiesTest, ManyKeysSpanSeveralTransactions) {
  testing::TempStore store;
  ClusterIdentities ids(store.get());
  std::set<std::string> keys;
  for (int i = 0; i < 300; ++i) keys.insert(absl::StrCat("app=k", 1000 + i));
  absl::StatusOr<Pins> p = ids.Hold("node-a", keys);
  ASSERT_TRUE(p.ok()) << p.status();
  uint32_t expected = 256;
  for (const auto& [k, n] : *p) EXPECT_EQ(n, expected++) << k;
  ASSERT_TRUE(ids.Hold("node-a", {}).ok());
  EXPECT_TRUE(CheckedRecords(store.get()).empty());
}

// A store that runs `before_next_txn` once, just before the next transaction reaches the
// real store: another replica's writes land between an allocator's read and its write.
class InterleavingStore : public store::IStore {
 public:
  explicit InterleavingStore(store::IStore* real) : real_(real) {}
  absl::StatusOr<store::Range> GetRange(std::string_view begin, std::string_view end,
                                        const store::ReadOptions& options) override {
    return real_->GetRange(begin, end, options);
  }
  absl::StatusOr<store::TxnResult> Txn(const std::vector<store::Compare>& conditions,
                                       const std::vector<store::Op>& ops) override {
    if (before_next_txn) {
      auto f = std::move(before_next_txn);
      before_next_txn = nullptr;
      f();
    }
    return real_->Txn(conditions, ops);
  }
  absl::StatusOr<std::unique_ptr<store::IWatch>> Watch(std::string prefix, int64_t start,
                                                       store::WatchCallback cb) override {
    return real_->Watch(std::move(prefix), start, std::move(cb));
  }
  absl::Status Compact(int64_t revision) override { return real_->Compact(revision); }
  std::string Describe() const override { return "interleaving " + real_->Describe(); }

  std::function<void()> before_next_txn;

 private:
  store::IStore* real_;
};

TEST(ClusterIdentitiesTest, AReplicaThatReadBeforeAnotherWroteNeverGivesAKeyASecondNumber) {
  testing::TempStore store;
  InterleavingStore racing(store.get());
  ClusterIdentities a(&racing), b(store.get());
  ASSERT_TRUE(b.Hold("node-x", {"old"}).ok());  // 256
  // a reads (256 taken) and would create "new" at 257; meanwhile b frees 256 and creates
  // "new" there. a's create must fail and a must join b's number.
  racing.before_next_txn = [&] {
    ASSERT_TRUE(b.Hold("node-x", {}).ok());
    absl::StatusOr<Pins> p = b.Hold("node-b", {"new"});
    ASSERT_TRUE(p.ok()) << p.status();
    EXPECT_EQ(p->at("new"), 256u);
  };
  absl::StatusOr<Pins> p = a.Hold("node-a", {"new"});
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->at("new"), 256u);
  auto records = CheckedRecords(store.get());
  ASSERT_EQ(records.size(), 1u);
  EXPECT_EQ(records["new"].holders, (std::set<std::string>{"node-a", "node-b"}));
}

TEST(ClusterIdentitiesTest, AReplicaThatReadBeforeAnotherWroteNeverGivesANumberASecondKey) {
  testing::TempStore store;
  InterleavingStore racing(store.get());
  ClusterIdentities a(&racing), b(store.get());
  // a reads (nothing taken) and would create "p" at 256; meanwhile b creates "q" at 256.
  racing.before_next_txn = [&] { ASSERT_TRUE(b.Hold("node-b", {"q"}).ok()); };
  absl::StatusOr<Pins> p = a.Hold("node-a", {"p"});
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->at("p"), 257u);
  auto records = CheckedRecords(store.get());
  ASSERT_EQ(records.size(), 2u);
  EXPECT_EQ(records["q"].number, 256u);
}

// Two allocators (as two server replicas) on one store, threads holding overlapping sets of
// keys at once. A node "anchor" holds a fixed set throughout, so those keys never change
// number: every answer must give them the same number, and no answer may give one number to
// two keys. At the end the store's records are consistent and hold exactly the last sets.
TEST(ClusterIdentitiesTest, TwoAllocatorsRacingFromThreadsNeverConflict) {
  testing::TempStore store;
  ClusterIdentities first(store.get()), second(store.get());
  std::set<std::string> anchor_keys;
  for (int i = 0; i < 8; ++i) anchor_keys.insert(absl::StrCat("anchor-", i));
  absl::StatusOr<Pins> anchor = first.Hold("anchor", anchor_keys);
  ASSERT_TRUE(anchor.ok()) << anchor.status();

  constexpr int kThreads = 4;
  constexpr int kRounds = 40;
  std::vector<std::set<std::string>> last(kThreads);
  std::vector<std::string> errors(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      ClusterIdentities& ids = t % 2 == 0 ? first : second;
      std::mt19937 rng(static_cast<unsigned>(t + 1));
      std::string node = absl::StrCat("node-", t);
      for (int round = 0; round < kRounds; ++round) {
        std::set<std::string> keys;
        for (int i = 0; i < 6; ++i) keys.insert(absl::StrCat("shared-", rng() % 12));
        keys.insert(absl::StrCat("anchor-", rng() % 8));
        absl::StatusOr<Pins> p = ids.Hold(node, keys);
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
  for (int t = 0; t < kThreads; ++t) EXPECT_EQ(errors[t], "") << "thread " << t;
  auto records = CheckedRecords(store.get());
  std::map<std::string, std::set<std::string>> expected;
  for (const std::string& k : anchor_keys) expected[k].insert("anchor");
  for (int t = 0; t < kThreads; ++t) {
    for (const std::string& k : last[t]) expected[k].insert(absl::StrCat("node-", t));
  }
  std::map<std::string, std::set<std::string>> actual;
  for (const auto& [k, r] : records) actual[k] = r.holders;
  EXPECT_EQ(actual, expected);
}

}  // namespace
}  // namespace bulkhead::server
