// One 3-member etcd cluster shared by every test of a gtest binary (a global test
// environment), and the check each etcd test starts with. For test binaries only (gtest).
#pragma once

#include <gtest/gtest.h>

#include <cstdio>
#include <memory>
#include <string>

#include "etcd_cluster.h"

namespace bulkhead::store::testing {

class SharedEtcdCluster : public ::testing::Environment {
 public:
  // The running cluster, or nullptr when etcd is not installed or did not start.
  static EtcdCluster* Get() { return instance_; }

  void SetUp() override {
    if (EtcdCluster::Binary().empty()) return;
    auto c = EtcdCluster::Start(3);
    if (!c.ok()) {
      std::fprintf(stderr, "etcd cluster did not start: %s\n",
                   std::string(c.status().message()).c_str());
      return;
    }
    cluster_ = *std::move(c);
    instance_ = cluster_.get();
  }
  void TearDown() override {
    instance_ = nullptr;
    cluster_.reset();
  }

 private:
  static inline EtcdCluster* instance_ = nullptr;
  std::unique_ptr<EtcdCluster> cluster_;
};

}  // namespace bulkhead::store::testing

// Registers the shared cluster once per binary (use at namespace scope in one file).
#define BULKHEAD_SHARED_ETCD_CLUSTER()                               \
  const auto* const kSharedEtcdClusterEnvironment [[maybe_unused]] = \
      ::testing::AddGlobalTestEnvironment(new ::bulkhead::store::testing::SharedEtcdCluster)

// Skips loudly when etcd is not installed (naming what is then not tested); fails when it is
// but the cluster did not start.
#define REQUIRE_ETCD(what_is_not_tested)                                                 \
  do {                                                                                   \
    if (::bulkhead::store::testing::EtcdCluster::Binary().empty()) {                     \
      GTEST_SKIP() << "*** etcd is not installed (/usr/bin/etcd, package etcd-server): " \
                   << what_is_not_tested << " NOT tested on etcd ***";                   \
    }                                                                                    \
    ASSERT_NE(::bulkhead::store::testing::SharedEtcdCluster::Get(), nullptr)             \
        << "the etcd cluster did not start";                                             \
  } while (false)
