// Crash test shared by the SQLite and etcd suites: a child process loops two-key transactions
// and reports each acknowledged revision; it is kill -9'ed at random moments, the store is
// reopened, and every acknowledged revision must be there with no transaction half-applied.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "store/store.h"

namespace bulkhead::store::testing {

struct CrashTestOptions {
  std::string url;         // what the child opens (OpenStore)
  std::string key_prefix;  // its two keys: PREFIX + "a", PREFIX + "b"
  int rounds = 6;
  // Opens the store to check, after the child died.
  std::function<absl::StatusOr<std::unique_ptr<IStore>>()> open;
};

// Runs the rounds with GoogleTest assertions; counts the acknowledged transactions.
void RunCrashRounds(const CrashTestOptions& options, int* acknowledged);

// A fresh temporary directory, removed with everything in it.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

}  // namespace bulkhead::store::testing
