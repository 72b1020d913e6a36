// Unit tests for LoadCache: unchanged files are not parsed again, and a load through the
// cache gives exactly what a load without it gives (objects, diagnostics, errors).
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "loader_test_util.h"
#include "policy/loader.h"

namespace bulkhead::policy::testing {
namespace {

namespace fs = std::filesystem;

class LoaderCacheTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("bh-load-cache-" + std::to_string(getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_ / "sub");
    Write("a.yaml", Policy("a", 80));
    Write("sub/b.yaml", Policy("b", 81));
    Write("inventory.yaml", R"(apiVersion: bulkhead.io/v1alpha1
kind: Inventory
metadata: {name: lab}
spec:
  workloads:
  - {name: web, namespace: shop, labels: {app: web}, ips: [10.1.0.1]}
)");
  }
  void TearDown() override { fs::remove_all(dir_); }

  static std::string Policy(const std::string& name, int port) {
    return "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: " + name +
           ", namespace: shop}\nspec:\n  podSelector: {}\n  ingress:\n  - ports: [{port: " +
           std::to_string(port) + "}]\n";
  }
  void Write(const std::string& rel, const std::string& content) {
    std::ofstream(dir_ / rel, std::ios::trunc) << content;
  }
  LoadResult Load(LoadCache* cache) { return LoadPaths({dir_.string()}, cache); }

  // What a load gave, in words, to compare loads.
  static std::string Describe(const LoadResult& r) {
    std::string s = AllDiagnostics(r);
    for (const auto& p : r.cluster.policies) {
      s += p.Id() + " " + p.source.ToString();
      for (const auto& rule : p.ingress) {
        for (const auto& port : rule.ports) s += " " + std::to_string(port.first);
      }
      s += "\n";
    }
    for (const auto& w : r.cluster.workloads) s += w.Id() + "\n";
    for (const auto& n : r.cluster.namespaces) s += n.name + "\n";
    return s;
  }

  fs::path dir_;
};

TEST_F(LoaderCacheTest, UnchangedFilesAreReusedAndTheResultIsAFullLoads) {
  LoadCache cache;
  LoadResult first = Load(&cache);
  ASSERT_TRUE(first.ok()) << AllDiagnostics(first);
  EXPECT_EQ(cache.parsed(), 3u);
  EXPECT_EQ(cache.reused(), 0u);
  EXPECT_EQ(Describe(first), Describe(Load(nullptr)));

  LoadResult again = Load(&cache);
  EXPECT_EQ(cache.parsed(), 0u);
  EXPECT_EQ(cache.reused(), 3u);
  EXPECT_EQ(Describe(again), Describe(first));

  Write("sub/b.yaml", Policy("b", 82));
  LoadResult changed = Load(&cache);
  EXPECT_EQ(cache.parsed(), 1u);
  EXPECT_EQ(cache.reused(), 2u);
  EXPECT_EQ(Describe(changed), Describe(Load(nullptr)));
  EXPECT_NE(Describe(changed).find(" 82"), std::string::npos);

  // A new file, a removed one.
  Write("c.yaml", Policy("c", 83));
  fs::remove(dir_ / "a.yaml");
  LoadResult moved = Load(&cache);
  EXPECT_EQ(cache.parsed(), 1u);
  EXPECT_EQ(cache.reused(), 2u);
  EXPECT_EQ(Describe(moved), Describe(Load(nullptr)));
  EXPECT_EQ(Describe(moved).find("shop/a"), std::string::npos);
  // The removed file is forgotten: it comes back parsed.
  Write("a.yaml", Policy("a", 80));
  Load(&cache);
  EXPECT_EQ(cache.parsed(), 1u);
}

TEST_F(LoaderCacheTest, ErrorsOfUnchangedFilesAreReportedAgain) {
  LoadCache cache;
  Write("bad.yaml",
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\n"
        "metadata: {name: bad, namespace: shop}\nspec:\n  podSelector: 7\n");
  LoadResult first = Load(&cache);
  ASSERT_FALSE(first.ok());
  LoadResult again = Load(&cache);
  EXPECT_EQ(cache.reused(), 4u);
  ASSERT_FALSE(again.ok()) << "a cached file keeps its error";
  EXPECT_EQ(AllDiagnostics(again), AllDiagnostics(first));
  // Cross-file checks run over everything: a duplicate in a new file is found although the
  // other copy comes from the cache.
  fs::remove(dir_ / "bad.yaml");
  ASSERT_TRUE(Load(&cache).ok());
  Write("dup.yaml", Policy("a", 99));
  LoadResult dup = Load(&cache);
  EXPECT_EQ(cache.parsed(), 1u);
  EXPECT_FALSE(dup.ok()) << AllDiagnostics(dup);
  EXPECT_EQ(AllDiagnostics(dup), AllDiagnostics(Load(nullptr)));
}

}  // namespace
}  // namespace bulkhead::policy::testing
