// Differential tests for LoadPathsShared: on random edits of a policy directory (policies
// changed, added, deleted, renamed, made invalid, duplicated; admin priorities that clash;
// policies in new namespaces; merged workloads whose pods differ; inventory edits) its result
// equals a full LoadPaths of the same files, diagnostics included, and the policies of files
// that did not change are the very objects the previous load gave.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "loader_test_util.h"
#include "policy/loader.h"

namespace bulkhead::policy::testing {
namespace {

namespace fs = std::filesystem;

std::vector<std::string> Lines(const std::vector<Diagnostic>& diags) {
  std::vector<std::string> out;
  out.reserve(diags.size());
  for (const Diagnostic& d : diags) out.push_back(d.ToString());
  return out;
}

class LoaderSharedTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("bh-load-shared-" + std::to_string(getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_ / "rules" / "sub");
  }
  void TearDown() override { fs::remove_all(dir_); }

  void Write(const fs::path& path, const std::string& content) {
    std::ofstream(path, std::ios::trunc) << content;
  }
  std::vector<std::string> Paths() const {
    return {(dir_ / "rules").string(), (dir_ / "inventory.yaml").string()};
  }

  // One policy document, chosen from a few shapes by `shape`.
  static std::string PolicyDoc(const std::string& name, int shape, int port,
                               const std::string& ns) {
    switch (shape % 6) {
      case 0:
        return "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: " + name +
               ", namespace: " + ns +
               "}\nspec:\n  podSelector: {matchLabels: {app: web}}\n  ingress:\n  - from: "
               "[{podSelector: {matchLabels: {app: db}}}]\n    ports: [{port: " +
               std::to_string(port) + "}]\n";
      case 1:
        return "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: " + name +
               ", namespace: " + ns +
               "}\nspec:\n  podSelector: {matchLabels: {shared: x}}\n  ingress:\n  - from: "
               "[{podSelector: {matchLabels: {app: a}}}]\n  egress:\n  - to: [{ipBlock: {cidr: "
               "10.9.0.0/16}}]\n    ports: [{protocol: UDP, port: " +
               std::to_string(port) + "}]\n";
      case 2:
        // Admin priorities clash when two share one.
        return "apiVersion: policy.networking.k8s.io/v1alpha1\nkind: AdminNetworkPolicy\n"
               "metadata: {name: " +
               name + "}\nspec:\n  priority: " + std::to_string(port % 16) +
               "\n  subject: {namespaces: {}}\n  ingress:\n  - name: r\n    action: Deny\n    "
               "from: [{namespaces: {matchLabels: {team: b}}}]\n";
      case 3:
        return "apiVersion: bulkhead.io/v1alpha1\nkind: DefaultDeny\nmetadata: {name: " + name +
               ", namespace: " + ns + "}\nspec: {policyTypes: [Ingress]}\n";
      case 4:
        // Invalid: a port out of range (file, object and field in the error).
        return "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: " + name +
               ", namespace: " + ns +
               "}\nspec:\n  podSelector: {}\n  ingress:\n  - ports: [{port: 70000}]\n";
      default:
        // Not YAML at all.
        return "apiVersion: [unclosed\n";
    }
  }

  static std::string Inventory(int variant) {
    std::string s =
        "apiVersion: bulkhead.io/v1alpha1\nkind: Inventory\nmetadata: {name: lab}\nspec:\n"
        "  namespaces:\n  - {name: shop, labels: {team: a}}\n  - {name: ops, labels: {team: b}}\n"
        "  workloads:\n  - {name: web, namespace: shop, labels: {app: web}, ips: [10.1.0.1]}\n"
        "  - {name: db, namespace: shop, labels: {app: db}, ips: [10.1.0.2]}\n";
    if (variant % 3 == 1) {
      s += "  - {name: tool, namespace: ops, labels: {app: tool}, ips: [10.1.0.3]}\n";
    }
    if (variant % 3 == 2) {
      // The same address twice: an error of the inventory.
      s += "  - {name: dup, namespace: ops, labels: {app: dup}, ips: [10.1.0.1]}\n";
    }
    return s;
  }

  // Two pods of one owner with different labels: a merged workload whose label gap the
  // policies selecting `shared: x` report.
  static std::string Pods(int variant) {
    return "apiVersion: v1\nkind: Pod\nmetadata:\n  name: pod-1\n  namespace: shop\n  labels: "
           "{app: a, shared: x}\n  ownerReferences: [{name: owner, controller: true}]\n---\n"
           "apiVersion: v1\nkind: Pod\nmetadata:\n  name: pod-2\n  namespace: shop\n  labels: "
           "{app: " +
           std::string(variant % 2 == 0 ? "b" : "a") +
           ", shared: x}\n  ownerReferences: [{name: owner, controller: true}]\n";
  }

  fs::path dir_;
};

TEST_F(LoaderSharedTest, RandomEditsGiveAFullLoadsResultAndShareUnchangedPolicies) {
  std::mt19937 rng(20261129);
  auto pick = [&](int n) { return static_cast<int>(rng() % static_cast<unsigned>(n)); };
  const std::vector<std::string> names = {"a.yaml", "b.yaml", "sub/c.yaml", "d.yml", "e.json"};
  const std::vector<std::string> namespaces = {"shop", "ops", "newns"};
  Write(dir_ / "inventory.yaml", Inventory(0));
  for (int i = 0; i < 3; ++i) {
    Write(dir_ / "rules" / names[i], PolicyDoc("p" + std::to_string(i), 0, 80 + i, "shop"));
  }

  LoadCache cache;
  std::map<std::string, const Policy*> previous;  // Policy::Id() -> object of the last load
  std::map<std::string, std::string> previous_file;
  std::vector<std::shared_ptr<const Policy>> held;
  int fast = 0, errors = 0, shared_checked = 0;
  for (int step = 0; step < 400; ++step) {
    std::string touched;  // the file this step changed ("" for a no-op)
    const int op = pick(10);
    const std::string& file = names[pick(static_cast<int>(names.size()))];
    const fs::path path = dir_ / "rules" / file;
    if (op <= 4) {
      // Rewrite a file with one or two policies (mostly valid).
      // Names mostly of this file (a name of another file now and then: a duplicate).
      const std::string stem = pick(8) == 0 ? "any" : fs::path(file).stem().string();
      int shape = pick(10) < 8 ? pick(4) : 4 + pick(2);
      std::string doc = PolicyDoc(stem + "-p" + std::to_string(pick(2)), shape, 80 + pick(50),
                                  namespaces[pick(3)]);
      if (pick(3) == 0) {
        doc += "---\n" + PolicyDoc(stem + "-q" + std::to_string(pick(2)), pick(4), 90 + pick(20),
                                   namespaces[pick(3)]);
      }
      Write(path, doc);
      touched = path.string();
    } else if (op == 5) {
      fs::remove(path);
      touched = path.string();
    } else if (op == 6) {
      // Rename into another name (possibly over an existing file).
      const fs::path to = dir_ / "rules" / names[pick(static_cast<int>(names.size()))];
      std::error_code ec;
      fs::rename(path, to, ec);
      touched = "*";
    } else if (op == 7) {
      Write(dir_ / "inventory.yaml", Inventory(pick(5) == 0 ? 2 : pick(2)));
      touched = "*";
    } else if (op == 8) {
      if (pick(2) == 0) {
        Write(dir_ / "rules" / "pods.yaml", Pods(pick(2)));
      } else {
        fs::remove(dir_ / "rules" / "pods.yaml");
      }
      touched = "*";
    }
    // op 9: nothing changed.

    SharedLoadResult shared = LoadPathsShared(Paths(), &cache);
    LoadResult full = LoadPaths(Paths());
    SCOPED_TRACE("step " + std::to_string(step) + " op " + std::to_string(op) + " " + file);
    ASSERT_EQ(Lines(shared.result.diagnostics), Lines(full.diagnostics));
    ASSERT_EQ(shared.ok(), full.ok());
    if (!full.ok()) {
      ++errors;
      EXPECT_TRUE(shared.policies.empty());
      EXPECT_TRUE(shared.result.cluster.workloads.empty());
      previous.clear();
      continue;
    }
    ASSERT_TRUE(shared.result.cluster.policies.empty());
    EXPECT_EQ(shared.result.cluster.namespaces, full.cluster.namespaces);
    EXPECT_EQ(shared.result.cluster.workloads, full.cluster.workloads);
    EXPECT_EQ(shared.result.cluster.nodes, full.cluster.nodes);
    EXPECT_EQ(shared.result.cluster.workload_modes, full.cluster.workload_modes);
    ASSERT_EQ(shared.policies.size(), full.cluster.policies.size());
    for (size_t i = 0; i < shared.policies.size(); ++i) {
      ASSERT_EQ(*shared.policies[i], full.cluster.policies[i]) << full.cluster.policies[i].Id();
    }
    if (cache.parsed() <= 1) ++fast;
    // After an edit of one file, the other files' policies are the objects of the last load.
    if (touched != "*") {
      for (const auto& p : shared.policies) {
        auto it = previous.find(p->Id());
        if (it == previous.end() || p->source.file == touched) continue;
        if (previous_file[p->Id()] != p->source.file) continue;
        EXPECT_EQ(p.get(), it->second) << p->Id() << " of unchanged " << p->source.file;
        ++shared_checked;
      }
    }
    previous.clear();
    previous_file.clear();
    for (const auto& p : shared.policies) {
      previous[p->Id()] = p.get();
      previous_file[p->Id()] = p->source.file;
    }
    // The objects stay alive until the next comparison (as a consumer keeps them), so that
    // no new object can take an old one's address.
    held = shared.policies;
  }
  // The walk covered both kinds of outcome and the sharing check ran.
  std::cout << "400 edits: " << errors << " with errors, " << fast
            << " valid loads that parsed at most one file, " << shared_checked
            << " unchanged policies found shared\n";
  EXPECT_GT(errors, 20);
  EXPECT_GT(fast, 30);
  EXPECT_GT(shared_checked, 50);
}

TEST_F(LoaderSharedTest, AFixedFileAfterAnErrorIsLoadedAndTheErrorNamesFileObjectAndField) {
  Write(dir_ / "inventory.yaml", Inventory(0));
  Write(dir_ / "rules" / "a.yaml", PolicyDoc("a", 0, 80, "shop"));
  LoadCache cache;
  SharedLoadResult first = LoadPathsShared(Paths(), &cache);
  ASSERT_TRUE(first.ok()) << AllDiagnostics(first.result);
  ASSERT_EQ(first.policies.size(), 1u);

  Write(dir_ / "rules" / "a.yaml", PolicyDoc("a", 4, 80, "shop"));
  SharedLoadResult bad = LoadPathsShared(Paths(), &cache);
  ASSERT_FALSE(bad.ok());
  EXPECT_TRUE(bad.policies.empty());
  const std::string all = AllDiagnostics(bad.result);
  EXPECT_NE(all.find("a.yaml"), std::string::npos) << all;
  EXPECT_NE(all.find("NetworkPolicy shop/a"), std::string::npos) << all;
  EXPECT_NE(all.find("spec.ingress[0].ports[0].port"), std::string::npos) << all;

  Write(dir_ / "rules" / "a.yaml", PolicyDoc("a", 0, 81, "shop"));
  SharedLoadResult fixed = LoadPathsShared(Paths(), &cache);
  ASSERT_TRUE(fixed.ok()) << AllDiagnostics(fixed.result);
  ASSERT_EQ(fixed.policies.size(), 1u);
  EXPECT_EQ(fixed.policies[0]->ingress[0].ports[0].first, 81);
}

TEST_F(LoaderSharedTest, SettledFilesAreNotReadAgainAndAnyWriteIsSeen) {
  Write(dir_ / "inventory.yaml", Inventory(0));
  Write(dir_ / "rules" / "a.yaml", PolicyDoc("a", 0, 80, "shop"));
  Write(dir_ / "rules" / "b.yaml", PolicyDoc("b", 0, 81, "shop"));
  LoadCache cache;
  // Read right after the writes: the stamps cannot tell yet, so the next load reads again.
  ASSERT_TRUE(LoadPathsShared(Paths(), &cache).ok());
  ASSERT_TRUE(LoadPathsShared(Paths(), &cache).ok());
  EXPECT_EQ(cache.unread(), 0u);
  // A read more than a second after the last change settles them (StampSettled).
  sleep(2);
  ASSERT_TRUE(LoadPathsShared(Paths(), &cache).ok());
  SharedLoadResult settled = LoadPathsShared(Paths(), &cache);
  ASSERT_TRUE(settled.ok());
  EXPECT_EQ(cache.unread(), 3u);
  EXPECT_EQ(cache.parsed(), 0u);
  // A write of the same size in place, right away: the change time moved, so it is read.
  Write(dir_ / "rules" / "b.yaml", PolicyDoc("b", 0, 82, "shop"));
  SharedLoadResult changed = LoadPathsShared(Paths(), &cache);
  ASSERT_TRUE(changed.ok());
  EXPECT_EQ(cache.parsed(), 1u);
  EXPECT_EQ(cache.unread(), 2u);
  ASSERT_EQ(changed.policies.size(), 2u);
  EXPECT_EQ(changed.policies[1]->ingress[0].ports[0].first, 82);
  EXPECT_EQ(changed.policies[0].get(), settled.policies[0].get());  // a.yaml's, shared
}

}  // namespace
}  // namespace bulkhead::policy::testing
