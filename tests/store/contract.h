// The IStore contract suite: value-parameterized tests that every store implementation passes.
// A test binary instantiates it with its targets:
//   INSTANTIATE_TEST_SUITE_P(Sqlite, StoreContractTest, ::testing::Values(target...),
//                            StoreTargetName);
#pragma once

#include <gtest/gtest.h>

#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "store/store.h"

namespace bulkhead::store::testing {

struct StoreTarget {
  std::string name;  // a test name suffix: letters and digits
  // Opens the store a test uses; each call may return a fresh store (SQLite) or a new client
  // of the same cluster (etcd), so tests keep their keys under their own prefix.
  std::function<absl::StatusOr<std::unique_ptr<IStore>>()> open;
  // When set and it returns a reason, the tests skip (loudly) instead of opening.
  std::function<std::string()> skip;
};

std::string StoreTargetName(const ::testing::TestParamInfo<StoreTarget>& info);

// Collects what a watch delivers, for tests.
class EventLog {
 public:
  WatchCallback Callback();
  // Waits until `n` events (or an error) arrived; false after a generous bound (a hang guard,
  // not a timing check).
  bool WaitForEvents(size_t n);
  bool WaitForError();
  std::vector<Event> events() const;
  std::vector<std::vector<Event>> batches() const;
  absl::Status error() const;
  size_t callbacks() const;

 private:
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::vector<Event>> batches_;
  absl::Status error_;
  size_t callbacks_ = 0;
};

class StoreContractTest : public ::testing::TestWithParam<StoreTarget> {
 protected:
  void SetUp() override;

  // A key under this test's own prefix.
  std::string K(std::string_view name) const { return prefix_ + std::string(name); }
  int64_t Put(std::string_view key, std::string_view value);  // the revision written
  int64_t CurrentRevision();

  std::unique_ptr<IStore> store_;
  std::string prefix_;
};

}  // namespace bulkhead::store::testing
