// A real SQLite store in a fresh temp dir per test, removed afterwards.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <memory>
#include <string>

#include "store/store.h"

namespace bulkhead::server::testing {

class TempStore {
 public:
  TempStore() {
    dir_ = std::filesystem::path(::testing::TempDir()) /
           ("bulkhead_server_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    auto s = store::OpenStore("sqlite:" + (dir_ / "server.db").string());
    EXPECT_TRUE(s.ok()) << s.status();
    if (s.ok()) store_ = *std::move(s);
  }
  ~TempStore() {
    store_.reset();
    std::filesystem::remove_all(dir_);
  }
  store::IStore* get() { return store_.get(); }
  const std::filesystem::path& dir() const { return dir_; }

 private:
  std::filesystem::path dir_;
  std::unique_ptr<store::IStore> store_;
};

}  // namespace bulkhead::server::testing
