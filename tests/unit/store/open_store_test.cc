// OpenStore's URL forms: which open what, and the errors for everything else.
#include <gtest/gtest.h>

#include "absl/strings/match.h"
#include "crash_harness.h"
#include "store/store.h"

namespace bulkhead::store {
namespace {

TEST(OpenStoreTest, SqliteForms) {
  absl::StatusOr<std::unique_ptr<IStore>> memory = OpenStore("sqlite::memory:");
  ASSERT_TRUE(memory.ok()) << memory.status();
  EXPECT_EQ((*memory)->Describe(), "sqlite::memory:");

  testing::TempDir dir;
  const std::string path = dir.path() + "/plain.db";
  absl::StatusOr<std::unique_ptr<IStore>> plain = OpenStore(path);
  ASSERT_TRUE(plain.ok()) << plain.status();
  EXPECT_EQ((*plain)->Describe(), "sqlite:" + path);
  plain->reset();
  absl::StatusOr<std::unique_ptr<IStore>> prefixed = OpenStore("sqlite:" + path);
  ASSERT_TRUE(prefixed.ok()) << prefixed.status();
  EXPECT_EQ((*prefixed)->Describe(), "sqlite:" + path);
}

TEST(OpenStoreTest, BadUrlsAreRefusedClearly) {
  struct Case {
    std::string url;
    std::string says;
  };
  const std::vector<Case> cases = {
      {"", "empty store URL"},
      {"mysql://db:3306", "unknown scheme 'mysql'"},
      {"http://127.0.0.1:2379", "unknown scheme 'http'"},
      {"etcd:127.0.0.1:2379", "unknown scheme 'etcd'"},
      {"etcd://", "names no etcd endpoint"},
      {"etcd://127.0.0.1", "endpoint '127.0.0.1' is not HOST:PORT"},
      {"etcd://127.0.0.1:0", "is not HOST:PORT"},
      {"etcd://127.0.0.1:65536", "is not HOST:PORT"},
      {"etcd://127.0.0.1:2379,", "endpoint '' is not HOST:PORT"},
      {"etcd://:2379", "is not HOST:PORT"},
      {"etcd://127.0.0.1:2379/v3", "has a path"},
      {"sqlite:", "takes a file path"},
      {"sqlite://var/lib/x.db", "takes a file path"},
  };
  for (const Case& c : cases) {
    absl::StatusOr<std::unique_ptr<IStore>> store = OpenStore(c.url);
    ASSERT_TRUE(absl::IsInvalidArgument(store.status())) << c.url << ": " << store.status();
    EXPECT_TRUE(absl::StrContains(store.status().message(), c.says))
        << c.url << ": " << store.status();
  }
}

TEST(OpenStoreTest, EtcdFormsParse) {
  // Well-formed, nothing listening: the probe read fails with the endpoints named.
  StoreOptions options;
  options.request_timeout_ms = 200;
  absl::StatusOr<std::unique_ptr<IStore>> store =
      OpenStore("etcd://127.0.0.1:1,[::1]:1,localhost:1", options);
  ASSERT_TRUE(absl::IsUnavailable(store.status())) << store.status();
  EXPECT_TRUE(absl::StrContains(store.status().message(), "[::1]:1")) << store.status();
  options.request_timeout_ms = 0;
  EXPECT_TRUE(absl::IsInvalidArgument(OpenStore("etcd://127.0.0.1:1", options).status()));
}

}  // namespace
}  // namespace bulkhead::store
