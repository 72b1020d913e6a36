// The IStore contract: reads, revisions, transactions, deletes, history, watch, compaction and
// concurrent compare-and-swap, run against every implementation (see contract.h).
#include "contract.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <set>
#include <thread>

namespace bulkhead::store::testing {

// A bound on waiting for a watch: only here so that a broken store fails instead of hanging.
constexpr auto kHangGuard = std::chrono::seconds(30);

std::string StoreTargetName(const ::testing::TestParamInfo<StoreTarget>& info) {
  return info.param.name;
}

WatchCallback EventLog::Callback() {
  return [this](absl::StatusOr<std::vector<Event>> events) {
    std::lock_guard lock(mu_);
    ++callbacks_;
    if (events.ok()) {
      batches_.push_back(std::move(*events));
    } else {
      error_ = events.status();
    }
    cv_.notify_all();
  };
}

bool EventLog::WaitForEvents(size_t n) {
  std::unique_lock lock(mu_);
  return cv_.wait_for(lock, kHangGuard, [&] {
    size_t count = 0;
    for (const auto& b : batches_) count += b.size();
    return count >= n || !error_.ok();
  });
}

bool EventLog::WaitForError() {
  std::unique_lock lock(mu_);
  return cv_.wait_for(lock, kHangGuard, [&] { return !error_.ok(); });
}

std::vector<Event> EventLog::events() const {
  std::lock_guard lock(mu_);
  std::vector<Event> all;
  for (const auto& b : batches_) all.insert(all.end(), b.begin(), b.end());
  return all;
}

std::vector<std::vector<Event>> EventLog::batches() const {
  std::lock_guard lock(mu_);
  return batches_;
}

absl::Status EventLog::error() const {
  std::lock_guard lock(mu_);
  return error_;
}

size_t EventLog::callbacks() const {
  std::lock_guard lock(mu_);
  return callbacks_;
}

void StoreContractTest::SetUp() {
  if (GetParam().skip) {
    if (std::string reason = GetParam().skip(); !reason.empty()) GTEST_SKIP() << reason;
  }
  absl::StatusOr<std::unique_ptr<IStore>> store = GetParam().open();
  ASSERT_TRUE(store.ok()) << store.status();
  store_ = std::move(*store);
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  // Unique per run too: an etcd cluster may be shared with earlier tests of the same name.
  prefix_ = std::string("contract/") + info->name() + "/" +
            std::to_string(std::chrono::steady_clock::now().time_since_epoch().count()) + "/";
}

int64_t StoreContractTest::Put(std::string_view key, std::string_view value) {
  absl::StatusOr<TxnResult> r = store_->Txn({}, {Op::Put(std::string(key), std::string(value))});
  EXPECT_TRUE(r.ok()) << r.status();
  if (!r.ok()) return 0;
  EXPECT_TRUE(r->succeeded);
  return r->revision;
}

int64_t StoreContractTest::CurrentRevision() {
  absl::StatusOr<Range> r = store_->Get(K("no-such-key"));
  EXPECT_TRUE(r.ok()) << r.status();
  return r.ok() ? r->revision : 0;
}

namespace {

std::vector<std::string> Keys(const Range& range) {
  std::vector<std::string> keys;
  for (const KeyValue& kv : range.kvs) keys.push_back(kv.key);
  return keys;
}

TEST_P(StoreContractTest, PutThenGetOneKey) {
  int64_t before = CurrentRevision();
  int64_t rev = Put(K("a"), "one");
  EXPECT_EQ(rev, before + 1);
  absl::StatusOr<Range> r = store_->Get(K("a"));
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->kvs.size(), 1u);
  EXPECT_EQ(r->kvs[0].key, K("a"));
  EXPECT_EQ(r->kvs[0].value, "one");
  EXPECT_EQ(r->kvs[0].create_revision, rev);
  EXPECT_EQ(r->kvs[0].mod_revision, rev);
  EXPECT_EQ(r->kvs[0].version, 1);
  EXPECT_EQ(r->revision, rev);
  EXPECT_FALSE(r->more);

  absl::StatusOr<Range> missing = store_->Get(K("b"));
  ASSERT_TRUE(missing.ok()) << missing.status();
  EXPECT_TRUE(missing->kvs.empty());
  EXPECT_EQ(missing->revision, rev);
  // A single-key read is not a prefix read.
  Put(K("ab"), "x");
  absl::StatusOr<Range> exact = store_->Get(K("a"));
  ASSERT_TRUE(exact.ok());
  EXPECT_EQ(Keys(*exact), std::vector<std::string>{K("a")});
}

TEST_P(StoreContractTest, ValuesAndKeysAreBytes) {
  std::string value("bin\0ary\xff", 8);
  std::string key = K(std::string("k\0\x01\xfe", 4));
  Put(key, value);
  Put(K("empty"), "");
  absl::StatusOr<Range> r = store_->Get(key);
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->kvs.size(), 1u);
  EXPECT_EQ(r->kvs[0].key, key);
  EXPECT_EQ(r->kvs[0].value, value);
  absl::StatusOr<Range> e = store_->Get(K("empty"));
  ASSERT_TRUE(e.ok());
  ASSERT_EQ(e->kvs.size(), 1u);
  EXPECT_EQ(e->kvs[0].value, "");
}

TEST_P(StoreContractTest, PrefixReadsAreSortedAndBounded) {
  // Written out of order, in several transactions and one.
  Put(K("p/c"), "3");
  Put(K("p/a"), "1");
  ASSERT_TRUE(store_->Txn({}, {Op::Put(K("p/b"), "2"), Op::Put(K("p/a/x"), "4")}).ok());
  Put(K("p"), "no slash");
  Put(K("q/a"), "other");
  Put(K("p0"), "after p/");
  absl::StatusOr<Range> r = store_->Get(K("p/"), /*prefix=*/true);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(Keys(*r), (std::vector<std::string>{K("p/a"), K("p/a/x"), K("p/b"), K("p/c")}));
  EXPECT_EQ(r->kvs[0].value, "1");
  EXPECT_EQ(r->kvs[3].value, "3");

  // [begin, end), a limit with "more", descending, and paging.
  absl::StatusOr<Range> mid = store_->GetRange(K("p/a/x"), K("p/c"));
  ASSERT_TRUE(mid.ok()) << mid.status();
  EXPECT_EQ(Keys(*mid), (std::vector<std::string>{K("p/a/x"), K("p/b")}));
  ReadOptions two;
  two.limit = 2;
  absl::StatusOr<Range> page = store_->GetRange(K("p/"), PrefixEnd(K("p/")), two);
  ASSERT_TRUE(page.ok()) << page.status();
  EXPECT_EQ(Keys(*page), (std::vector<std::string>{K("p/a"), K("p/a/x")}));
  EXPECT_TRUE(page->more);
  absl::StatusOr<Range> next =
      store_->GetRange(page->kvs.back().key + std::string(1, '\0'), PrefixEnd(K("p/")), two);
  ASSERT_TRUE(next.ok()) << next.status();
  EXPECT_EQ(Keys(*next), (std::vector<std::string>{K("p/b"), K("p/c")}));
  EXPECT_FALSE(next->more);
  ReadOptions last;
  last.limit = 3;
  last.descending = true;
  absl::StatusOr<Range> down = store_->GetRange(K("p/"), PrefixEnd(K("p/")), last);
  ASSERT_TRUE(down.ok()) << down.status();
  EXPECT_EQ(Keys(*down), (std::vector<std::string>{K("p/c"), K("p/b"), K("p/a/x")}));
  EXPECT_TRUE(down->more);

  // The test's whole prefix, and everything ("" prefix) contains it.
  absl::StatusOr<Range> mine = store_->Get(prefix_, /*prefix=*/true);
  ASSERT_TRUE(mine.ok());
  EXPECT_EQ(mine->kvs.size(), 7u);
  absl::StatusOr<Range> all = store_->Get("", /*prefix=*/true);
  ASSERT_TRUE(all.ok()) << all.status();
  EXPECT_TRUE(std::is_sorted(all->kvs.begin(), all->kvs.end(),
                             [](const KeyValue& a, const KeyValue& b) { return a.key < b.key; }));
  EXPECT_GE(all->kvs.size(), 7u);
}

TEST_P(StoreContractTest, PrefixOfHighBytes) {
  std::string high = K("\xff");
  Put(high + "a", "1");
  Put(high + "\xff", "2");
  Put(K("\xfe"), "not under");
  absl::StatusOr<Range> r = store_->Get(high, /*prefix=*/true);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(Keys(*r), (std::vector<std::string>{high + "a", high + "\xff"}));
  EXPECT_EQ(PrefixEnd("a\xff\xff"), "b");
  EXPECT_EQ(PrefixEnd("\xff"), "");
  EXPECT_EQ(PrefixEnd(""), "");
}

TEST_P(StoreContractTest, RevisionsCreateModVersion) {
  int64_t r1 = Put(K("k"), "v1");
  int64_t r2 = Put(K("k"), "v2");
  int64_t r3 = Put(K("other"), "x");
  EXPECT_EQ(r2, r1 + 1);
  EXPECT_EQ(r3, r2 + 1);
  absl::StatusOr<Range> r = store_->Get(K("k"));
  ASSERT_TRUE(r.ok());
  ASSERT_EQ(r->kvs.size(), 1u);
  EXPECT_EQ(r->kvs[0].create_revision, r1);
  EXPECT_EQ(r->kvs[0].mod_revision, r2);
  EXPECT_EQ(r->kvs[0].version, 2);
  EXPECT_EQ(r->revision, r3);

  // A transaction of several writes is one revision.
  absl::StatusOr<TxnResult> t =
      store_->Txn({}, {Op::Put(K("k"), "v3"), Op::Put(K("new"), "n"), Op::Delete(K("other"))});
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_TRUE(t->succeeded);
  EXPECT_EQ(t->revision, r3 + 1);
  absl::StatusOr<Range> after = store_->Get(prefix_, true);
  ASSERT_TRUE(after.ok());
  ASSERT_EQ(Keys(*after), (std::vector<std::string>{K("k"), K("new")}));
  EXPECT_EQ(after->kvs[0].mod_revision, t->revision);
  EXPECT_EQ(after->kvs[0].version, 3);
  EXPECT_EQ(after->kvs[1].create_revision, t->revision);

  // Deleted and created again: a new life (create revision, version 1).
  ASSERT_TRUE(store_->Txn({}, {Op::Delete(K("k"))}).ok());
  int64_t again = Put(K("k"), "reborn");
  absl::StatusOr<Range> reborn = store_->Get(K("k"));
  ASSERT_TRUE(reborn.ok());
  ASSERT_EQ(reborn->kvs.size(), 1u);
  EXPECT_EQ(reborn->kvs[0].create_revision, again);
  EXPECT_EQ(reborn->kvs[0].version, 1);
}

TEST_P(StoreContractTest, TxnCompareHoldsOrNothingIsWritten) {
  int64_t r1 = Put(K("cas"), "1");
  // Holds: the key's mod revision, and {key, 0} for an absent key.
  absl::StatusOr<TxnResult> ok = store_->Txn({{K("cas"), r1}, {K("absent"), 0}},
                                             {Op::Put(K("cas"), "2"), Op::Put(K("absent"), "x")});
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_TRUE(ok->succeeded);
  EXPECT_EQ(ok->revision, r1 + 1);

  // Fails: a stale revision, even with another condition that holds; nothing is written and
  // no revision is spent.
  absl::StatusOr<TxnResult> stale = store_->Txn(
      {{K("absent"), ok->revision}, {K("cas"), r1}},
      {Op::Put(K("cas"), "3"), Op::Put(K("side"), "effect"), Op::DeletePrefix(K("absent"))});
  ASSERT_TRUE(stale.ok()) << stale.status();
  EXPECT_FALSE(stale->succeeded);
  EXPECT_EQ(stale->revision, ok->revision);
  // Fails: "create only if absent" on a key that exists.
  absl::StatusOr<TxnResult> exists = store_->Txn({{K("cas"), 0}}, {Op::Put(K("cas"), "4")});
  ASSERT_TRUE(exists.ok()) << exists.status();
  EXPECT_FALSE(exists->succeeded);
  absl::StatusOr<Range> r = store_->Get(prefix_, true);
  ASSERT_TRUE(r.ok());
  ASSERT_EQ(Keys(*r), (std::vector<std::string>{K("absent"), K("cas")}));
  EXPECT_EQ(r->kvs[1].value, "2");
  EXPECT_EQ(r->revision, ok->revision);
  EXPECT_EQ(CurrentRevision(), ok->revision);

  // A compare on a deleted key sees it absent again.
  ASSERT_TRUE(store_->Txn({}, {Op::Delete(K("absent"))}).ok());
  absl::StatusOr<TxnResult> recreate =
      store_->Txn({{K("absent"), 0}}, {Op::Put(K("absent"), "back")});
  ASSERT_TRUE(recreate.ok());
  EXPECT_TRUE(recreate->succeeded);
}

TEST_P(StoreContractTest, InvalidTransactionsAreRefused) {
  int64_t before = Put(K("x"), "1");
  struct Case {
    const char* what;
    std::vector<Compare> conditions;
    std::vector<Op> ops;
  };
  std::vector<Case> cases = {
      {"key put twice", {}, {Op::Put(K("a"), "1"), Op::Put(K("a"), "2")}},
      {"put and delete", {}, {Op::Put(K("x"), "1"), Op::Delete(K("x"))}},
      {"put under a deleted prefix", {}, {Op::DeletePrefix(K("")), Op::Put(K("y"), "1")}},
      {"empty key", {}, {Op::Put("", "1")}},
      {"empty compare key", {{"", 0}}, {Op::Put(K("z"), "1")}},
  };
  for (const Case& c : cases) {
    absl::StatusOr<TxnResult> r = store_->Txn(c.conditions, c.ops);
    EXPECT_TRUE(absl::IsInvalidArgument(r.status())) << c.what << ": " << r.status();
  }
  EXPECT_EQ(CurrentRevision(), before);
  absl::StatusOr<Range> r = store_->Get(prefix_, true);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(Keys(*r), std::vector<std::string>{K("x")});
  EXPECT_TRUE(absl::IsInvalidArgument(store_->Get("").status()));
  // Deletes may overlap each other.
  absl::StatusOr<TxnResult> overlap =
      store_->Txn({}, {Op::Delete(K("x")), Op::DeletePrefix(K("")), Op::Put(K("w"), "1")});
  EXPECT_TRUE(absl::IsInvalidArgument(overlap.status())) << overlap.status();
  absl::StatusOr<TxnResult> deletes =
      store_->Txn({}, {Op::Delete(K("x")), Op::DeletePrefix(K(""))});
  ASSERT_TRUE(deletes.ok()) << deletes.status();
  EXPECT_TRUE(deletes->succeeded);
  EXPECT_EQ(deletes->revision, before + 1);
}

TEST_P(StoreContractTest, DeleteAndDeletePrefix) {
  Put(K("d/a"), "1");
  Put(K("d/b"), "2");
  Put(K("d/b/c"), "3");
  Put(K("d"), "4");
  int64_t last = Put(K("e/a"), "5");
  // One key only, not the keys it prefixes.
  absl::StatusOr<TxnResult> one = store_->Txn({}, {Op::Delete(K("d/b"))});
  ASSERT_TRUE(one.ok());
  EXPECT_TRUE(one->succeeded);
  EXPECT_EQ(one->revision, last + 1);
  absl::StatusOr<Range> r = store_->Get(prefix_, true);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(Keys(*r), (std::vector<std::string>{K("d"), K("d/a"), K("d/b/c"), K("e/a")}));
  // Deleting nothing succeeds and spends no revision (as in etcd).
  absl::StatusOr<TxnResult> none = store_->Txn({}, {Op::Delete(K("nothing"))});
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->succeeded);
  EXPECT_EQ(none->revision, one->revision);
  EXPECT_EQ(CurrentRevision(), one->revision);
  // A prefix, in one revision.
  absl::StatusOr<TxnResult> prefix = store_->Txn({}, {Op::DeletePrefix(K("d/"))});
  ASSERT_TRUE(prefix.ok());
  EXPECT_EQ(prefix->revision, one->revision + 1);
  r = store_->Get(prefix_, true);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(Keys(*r), (std::vector<std::string>{K("d"), K("e/a")}));
}

TEST_P(StoreContractTest, GetAtPastRevisions) {
  int64_t r1 = Put(K("h/a"), "a1");
  int64_t r2 = Put(K("h/b"), "b1");
  int64_t r3 = Put(K("h/a"), "a2");
  absl::StatusOr<TxnResult> del = store_->Txn({}, {Op::Delete(K("h/b"))});
  ASSERT_TRUE(del.ok());
  int64_t r4 = del->revision;
  int64_t r5 = Put(K("h/c"), "c1");

  auto at = [&](int64_t rev) {
    absl::StatusOr<Range> r = store_->Get(K("h/"), /*prefix=*/true, rev);
    EXPECT_TRUE(r.ok()) << r.status();
    std::vector<std::string> out;
    if (r.ok()) {
      EXPECT_EQ(r->revision, r5);  // the store's revision, not the one read at
      for (const KeyValue& kv : r->kvs) out.push_back(kv.key + "=" + kv.value);
    }
    return out;
  };
  EXPECT_EQ(at(r1 - 1), std::vector<std::string>{});
  EXPECT_EQ(at(r1), std::vector<std::string>{K("h/a") + "=a1"});
  EXPECT_EQ(at(r2), (std::vector<std::string>{K("h/a") + "=a1", K("h/b") + "=b1"}));
  EXPECT_EQ(at(r3), (std::vector<std::string>{K("h/a") + "=a2", K("h/b") + "=b1"}));
  EXPECT_EQ(at(r4), std::vector<std::string>{K("h/a") + "=a2"});
  EXPECT_EQ(at(r5), (std::vector<std::string>{K("h/a") + "=a2", K("h/c") + "=c1"}));
  // Metadata as it was then.
  absl::StatusOr<Range> old = store_->Get(K("h/a"), false, r2);
  ASSERT_TRUE(old.ok());
  ASSERT_EQ(old->kvs.size(), 1u);
  EXPECT_EQ(old->kvs[0].mod_revision, r1);
  EXPECT_EQ(old->kvs[0].create_revision, r1);
  EXPECT_EQ(old->kvs[0].version, 1);
  // Limit and order hold in the past too.
  ReadOptions options;
  options.at_revision = r3;
  options.limit = 1;
  options.descending = true;
  absl::StatusOr<Range> last = store_->GetRange(K("h/"), PrefixEnd(K("h/")), options);
  ASSERT_TRUE(last.ok()) << last.status();
  EXPECT_EQ(Keys(*last), std::vector<std::string>{K("h/b")});
  EXPECT_TRUE(last->more);
  // The future is out of range.
  absl::StatusOr<Range> future = store_->Get(K("h/a"), false, r5 + 100);
  EXPECT_TRUE(absl::IsOutOfRange(future.status())) << future.status();
}

TEST_P(StoreContractTest, WatchReplaysHistoryThenLiveInOrder) {
  int64_t r1 = Put(K("w/a"), "1");
  Put(K("w/b"), "2");
  ASSERT_TRUE(store_->Txn({}, {Op::Delete(K("w/a"))}).ok());
  EventLog log;
  absl::StatusOr<std::unique_ptr<IWatch>> watch = store_->Watch(K("w/"), r1, log.Callback());
  ASSERT_TRUE(watch.ok()) << watch.status();
  ASSERT_TRUE(log.WaitForEvents(3));
  int64_t r4 = Put(K("w/a"), "3");
  int64_t r5 = Put(K("w/c"), "4");
  ASSERT_TRUE(log.WaitForEvents(5));
  std::vector<Event> events = log.events();
  ASSERT_EQ(events.size(), 5u) << log.error();
  std::vector<std::string> seen;
  for (const Event& e : events) {
    seen.push_back((e.type == Event::Type::kPut ? "put " : "del ") + e.kv.key + "@" +
                   std::to_string(e.kv.mod_revision - r1));
  }
  EXPECT_EQ(seen, (std::vector<std::string>{"put " + K("w/a") + "@0", "put " + K("w/b") + "@1",
                                            "del " + K("w/a") + "@2", "put " + K("w/a") + "@3",
                                            "put " + K("w/c") + "@4"}));
  EXPECT_EQ(events[0].kv.value, "1");
  EXPECT_EQ(events[0].kv.version, 1);
  EXPECT_TRUE(events[2].kv.value.empty());
  EXPECT_EQ(events[3].kv.create_revision, r4);  // a new life after the delete
  EXPECT_EQ(events[4].kv.mod_revision, r5);
  EXPECT_TRUE(log.error().ok());
}

TEST_P(StoreContractTest, WatchFarBehindCatchesUpWithWholeRevisions) {
  // More revisions than one delivery round of the SQLite dispatcher (256).
  constexpr int kRevisions = 260;
  int64_t first = 0;
  for (int i = 0; i < kRevisions; ++i) {
    absl::StatusOr<TxnResult> t = store_->Txn(
        {}, {Op::Put(K("far/a"), std::to_string(i)), Op::Put(K("far/b"), std::to_string(i))});
    ASSERT_TRUE(t.ok()) << t.status();
    if (i == 0) first = t->revision;
  }
  EventLog log;
  absl::StatusOr<std::unique_ptr<IWatch>> watch = store_->Watch(K("far/"), first, log.Callback());
  ASSERT_TRUE(watch.ok()) << watch.status();
  ASSERT_TRUE(log.WaitForEvents(2 * kRevisions));
  std::vector<Event> events = log.events();
  ASSERT_EQ(events.size(), 2u * kRevisions);
  for (int i = 0; i < kRevisions; ++i) {
    EXPECT_EQ(events[2 * i].kv.mod_revision, first + i);
    EXPECT_EQ(events[2 * i].kv.key, K("far/a"));
    EXPECT_EQ(events[2 * i + 1].kv.mod_revision, first + i);
    EXPECT_EQ(events[2 * i + 1].kv.value, std::to_string(i));
  }
  for (const auto& batch : log.batches()) {
    ASSERT_FALSE(batch.empty());
    EXPECT_EQ(batch.size() % 2, 0u) << "a revision split across callbacks";
  }
}

TEST_P(StoreContractTest, WatchDeliversATransactionTogether) {
  EventLog log;
  absl::StatusOr<std::unique_ptr<IWatch>> watch = store_->Watch(K("t/"), 0, log.Callback());
  ASSERT_TRUE(watch.ok()) << watch.status();
  Put(K("t/z"), "first");
  absl::StatusOr<TxnResult> t =
      store_->Txn({}, {Op::Put(K("t/c"), "1"), Op::Put(K("t/a"), "2"),
                       Op::Put(K("u/not-watched"), "3"), Op::Put(K("t/b"), "4")});
  ASSERT_TRUE(t.ok());
  absl::StatusOr<TxnResult> d = store_->Txn({}, {Op::DeletePrefix(K("t/"))});
  ASSERT_TRUE(d.ok());
  ASSERT_TRUE(log.WaitForEvents(8));
  // Every batch holds whole revisions: the 3 watched puts of the transaction, in the order
  // written, share its revision and arrive in one callback; so do the 4 deletes.
  std::vector<std::string> order;
  for (const auto& batch : log.batches()) {
    std::set<int64_t> revisions;
    for (const Event& e : batch) revisions.insert(e.kv.mod_revision);
    for (int64_t rev : revisions) {
      size_t in_batch = std::count_if(batch.begin(), batch.end(),
                                      [&](const Event& e) { return e.kv.mod_revision == rev; });
      if (rev == t->revision) {
        EXPECT_EQ(in_batch, 3u);
      }
      if (rev == d->revision) {
        EXPECT_EQ(in_batch, 4u);
      }
    }
    for (const Event& e : batch) {
      if (e.kv.mod_revision == t->revision) order.push_back(e.kv.key);
    }
  }
  EXPECT_EQ(order, (std::vector<std::string>{K("t/c"), K("t/a"), K("t/b")}));
  std::vector<Event> events = log.events();
  ASSERT_EQ(events.size(), 8u);
  EXPECT_EQ(events[0].kv.key, K("t/z"));
  for (size_t i = 4; i < 8; ++i) {
    EXPECT_EQ(events[i].type, Event::Type::kDelete);
    EXPECT_EQ(events[i].kv.mod_revision, d->revision);
  }
}

TEST_P(StoreContractTest, WatchFiltersByPrefixAndStartsNow) {
  Put(K("f/before"), "not delivered: before the watch");
  EventLog log;
  EventLog everything;
  absl::StatusOr<std::unique_ptr<IWatch>> watch = store_->Watch(K("f/"), 0, log.Callback());
  ASSERT_TRUE(watch.ok()) << watch.status();
  absl::StatusOr<std::unique_ptr<IWatch>> all = store_->Watch("", 0, everything.Callback());
  ASSERT_TRUE(all.ok()) << all.status();
  Put(K("g/x"), "other prefix");
  Put(K("f"), "the prefix without slash");
  int64_t rev = Put(K("f/yes"), "delivered");
  ASSERT_TRUE(log.WaitForEvents(1));
  ASSERT_TRUE(everything.WaitForEvents(3));
  std::vector<Event> events = log.events();
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].kv.key, K("f/yes"));
  EXPECT_EQ(events[0].kv.mod_revision, rev);
  std::vector<Event> seen = everything.events();
  ASSERT_GE(seen.size(), 3u);
  EXPECT_EQ(seen[0].kv.key, K("g/x"));
  EXPECT_EQ(seen[2].kv.key, K("f/yes"));
}

TEST_P(StoreContractTest, DestroyedWatchStopsCallbacks) {
  EventLog stopped;
  absl::StatusOr<std::unique_ptr<IWatch>> watch = store_->Watch(K("s/"), 0, stopped.Callback());
  ASSERT_TRUE(watch.ok()) << watch.status();
  Put(K("s/1"), "seen");
  ASSERT_TRUE(stopped.WaitForEvents(1));
  watch->reset();
  int64_t rev = Put(K("s/2"), "not seen");
  // A later watch from that revision proves the write was published.
  EventLog witness;
  absl::StatusOr<std::unique_ptr<IWatch>> later = store_->Watch(K("s/"), rev, witness.Callback());
  ASSERT_TRUE(later.ok()) << later.status();
  ASSERT_TRUE(witness.WaitForEvents(1));
  Put(K("s/3"), "not seen either");
  ASSERT_TRUE(witness.WaitForEvents(2));
  EXPECT_EQ(stopped.events().size(), 1u);
  EXPECT_EQ(stopped.callbacks(), 1u);
}

TEST_P(StoreContractTest, WatchMayBeDestroyedFromItsCallbackAndMayWrite) {
  // The callback writes to the store (as the server does) and ends its own watch.
  std::mutex mu;
  std::unique_ptr<IWatch> self;
  std::atomic<int> calls{0};
  absl::StatusOr<std::unique_ptr<IWatch>> watch =
      store_->Watch(K("cb/"), 0, [&](absl::StatusOr<std::vector<Event>> events) {
        ++calls;
        if (!events.ok()) return;
        absl::StatusOr<TxnResult> r = store_->Txn({}, {Op::Put(K("reply"), "from callback")});
        EXPECT_TRUE(r.ok()) << r.status();
        std::lock_guard lock(mu);
        self.reset();
      });
  ASSERT_TRUE(watch.ok()) << watch.status();
  {
    std::lock_guard lock(mu);
    self = std::move(*watch);
  }
  EventLog replies;
  absl::StatusOr<std::unique_ptr<IWatch>> reply_watch =
      store_->Watch(K("reply"), 0, replies.Callback());
  ASSERT_TRUE(reply_watch.ok());
  Put(K("cb/1"), "go");
  ASSERT_TRUE(replies.WaitForEvents(1));
  int64_t rev = Put(K("cb/2"), "after the watch ended");
  EventLog witness;
  absl::StatusOr<std::unique_ptr<IWatch>> later = store_->Watch(K("cb/"), rev, witness.Callback());
  ASSERT_TRUE(later.ok());
  ASSERT_TRUE(witness.WaitForEvents(1));
  EXPECT_EQ(calls.load(), 1);
  std::lock_guard lock(mu);
  EXPECT_EQ(self, nullptr);
}

TEST_P(StoreContractTest, CompactionMakesOlderRevisionsOutOfRange) {
  int64_t r1 = Put(K("c/a"), "1");
  int64_t r2 = Put(K("c/a"), "2");
  int64_t r3 = Put(K("c/b"), "1");
  absl::StatusOr<TxnResult> del = store_->Txn({}, {Op::Delete(K("c/b"))});
  ASSERT_TRUE(del.ok());
  int64_t r5 = Put(K("c/c"), "1");
  ASSERT_TRUE(store_->Compact(r3).ok());

  absl::StatusOr<Range> gone = store_->Get(K("c/a"), false, r1);
  EXPECT_TRUE(absl::IsOutOfRange(gone.status())) << gone.status();
  gone = store_->Get(K("c/a"), false, r2);
  EXPECT_TRUE(absl::IsOutOfRange(gone.status())) << gone.status();
  // The compaction revision and later stay readable, with their metadata.
  absl::StatusOr<Range> at3 = store_->Get(K("c/"), true, r3);
  ASSERT_TRUE(at3.ok()) << at3.status();
  ASSERT_EQ(Keys(*at3), (std::vector<std::string>{K("c/a"), K("c/b")}));
  EXPECT_EQ(at3->kvs[0].value, "2");
  EXPECT_EQ(at3->kvs[0].mod_revision, r2);
  EXPECT_EQ(at3->kvs[0].create_revision, r1);
  absl::StatusOr<Range> at4 = store_->Get(K("c/"), true, del->revision);
  ASSERT_TRUE(at4.ok());
  EXPECT_EQ(Keys(*at4), std::vector<std::string>{K("c/a")});

  // A watch from before the compaction is refused, by Watch or its callback.
  EventLog old;
  absl::StatusOr<std::unique_ptr<IWatch>> w = store_->Watch(K("c/"), r2, old.Callback());
  if (w.ok()) {
    ASSERT_TRUE(old.WaitForError());
    EXPECT_TRUE(absl::IsOutOfRange(old.error())) << old.error();
    EXPECT_TRUE(old.events().empty());
  } else {
    EXPECT_TRUE(absl::IsOutOfRange(w.status())) << w.status();
  }
  // From the compaction revision on, history is whole.
  EventLog fresh;
  absl::StatusOr<std::unique_ptr<IWatch>> ok = store_->Watch(K("c/"), r3 + 1, fresh.Callback());
  ASSERT_TRUE(ok.ok()) << ok.status();
  ASSERT_TRUE(fresh.WaitForEvents(2));
  std::vector<Event> events = fresh.events();
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0].type, Event::Type::kDelete);
  EXPECT_EQ(events[1].kv.mod_revision, r5);

  // Compacting again to an older revision does nothing; the future is out of range.
  EXPECT_TRUE(store_->Compact(r1).ok());
  absl::Status future = store_->Compact(r5 + 100);
  EXPECT_TRUE(absl::IsOutOfRange(future)) << future;
  absl::StatusOr<Range> current = store_->Get(K("c/"), true);
  ASSERT_TRUE(current.ok());
  EXPECT_EQ(Keys(*current), (std::vector<std::string>{K("c/a"), K("c/c")}));
}

TEST_P(StoreContractTest, ConcurrentCompareAndSwapLosesNoIncrement) {
  constexpr int kThreads = 4;
  constexpr int kIncrements = 25;
  Put(K("counter"), "0");
  std::vector<std::thread> threads;
  std::mutex mu;
  std::vector<int64_t> revisions;
  std::atomic<int> errors{0};
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      for (int done = 0; done < kIncrements;) {
        absl::StatusOr<Range> r = store_->Get(K("counter"));
        if (!r.ok() || r->kvs.size() != 1) {
          ++errors;
          return;
        }
        int value = std::stoi(r->kvs[0].value);
        absl::StatusOr<TxnResult> t =
            store_->Txn({{K("counter"), r->kvs[0].mod_revision}},
                        {Op::Put(K("counter"), std::to_string(value + 1))});
        if (!t.ok()) {
          ++errors;
          return;
        }
        if (t->succeeded) {
          ++done;
          std::lock_guard lock(mu);
          revisions.push_back(t->revision);
        }
      }
    });
  }
  for (std::thread& t : threads) t.join();
  ASSERT_EQ(errors.load(), 0);
  absl::StatusOr<Range> r = store_->Get(K("counter"));
  ASSERT_TRUE(r.ok());
  ASSERT_EQ(r->kvs.size(), 1u);
  EXPECT_EQ(r->kvs[0].value, std::to_string(kThreads * kIncrements));
  EXPECT_EQ(r->kvs[0].version, kThreads * kIncrements + 1);
  std::set<int64_t> unique(revisions.begin(), revisions.end());
  EXPECT_EQ(unique.size(), static_cast<size_t>(kThreads * kIncrements));
}

}  // namespace
}  // namespace bulkhead::store::testing
