// Tests of the loader's inputs: JSON, multi-document files, List and *List kinds,
// directories (recursive, sorted, by extension) and unreadable paths.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "unit/policy/loader_test_util.h"

namespace bulkhead::policy {
namespace {

namespace fs = std::filesystem;
using testing::AllDiagnostics;
using testing::Load;
using testing::LoadOk;

// A fresh directory under the system temp dir, removed at the end of the test.
class TempDir {
 public:
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "bulkhead-loader-XXXXXX").string();
    char* made = mkdtemp(tmpl.data());
    EXPECT_NE(made, nullptr);
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const fs::path& path() const { return path_; }
  void Write(const std::string& relative, const std::string& content) const {
    fs::path p = path_ / relative;
    fs::create_directories(p.parent_path());
    std::ofstream(p) << content;
  }

 private:
  fs::path path_;
};

std::string Namespace(const std::string& name) {
  return "apiVersion: v1\nkind: Namespace\nmetadata: {name: " + name + "}\n";
}

TEST(LoaderInputs, ReadsJson) {
  Cluster c = LoadOk(R"({
  "apiVersion": "networking.k8s.io/v1",
  "kind": "NetworkPolicy",
  "metadata": {"name": "web", "namespace": "shop"},
  "spec": {
    "podSelector": {"matchLabels": {"app": "web"}},
    "ingress": [{"ports": [{"port": 80}, {"port": "http", "protocol": "UDP"}]}]
  }
})");
  ASSERT_EQ(c.policies.size(), 1u);
  const Policy& p = c.policies[0];
  EXPECT_EQ(p.Id(), "NetworkPolicy shop/web");
  ASSERT_EQ(p.ingress[0].ports.size(), 2u);
  EXPECT_EQ(p.ingress[0].ports[0].ToString(), "TCP/80");    // a JSON number is a port number
  EXPECT_EQ(p.ingress[0].ports[1].ToString(), "UDP/http");  // a JSON string is a named port
}

TEST(LoaderInputs, JsonErrorsHaveLineAndColumn) {
  LoadResult r = Load(
      "{\n  \"apiVersion\": \"v1\",\n  \"kind\": \"Namespace\",\n"
      "  \"metadata\": {\"name\": \"x\", \"labels\": {\"a\": 1}}\n}\n",
      "ns.json");
  ASSERT_FALSE(r.ok());
  const Diagnostic* d = testing::FindError(r, "metadata.labels[a]");
  ASSERT_NE(d, nullptr) << AllDiagnostics(r);
  EXPECT_EQ(d->where.file, "ns.json");
  EXPECT_EQ(d->where.line, 4);
  EXPECT_EQ(d->where.column, 45);
}

TEST(LoaderInputs, ReadsMultiDocumentStreamsAndSkipsEmptyDocuments) {
  LoadResult r = Load("---\n" + Namespace("a") + "---\n# nothing here\n---\n" + Namespace("b") +
                      "...\n---\n" + "apiVersion: v1\nkind: Namespace\nmetadata: {name: C}\n");
  ASSERT_FALSE(r.ok());
  const Diagnostic* d = testing::FindError(r, "metadata.name");
  ASSERT_NE(d, nullptr) << AllDiagnostics(r);
  EXPECT_EQ(d->where.document, 4);  // counting the empty document
}

TEST(LoaderInputs, ReadsListsAndTypedListsWhoseItemsOmitKind) {
  Cluster c = LoadOk(R"(
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: NamespaceList
  items:
  - metadata: {name: a}
  - metadata: {name: b}
- apiVersion: v1
  kind: PodList
  items:
  - metadata: {name: p1, namespace: a}
  - {apiVersion: v1, kind: Pod, metadata: {name: p2, namespace: b}}
- apiVersion: networking.k8s.io/v1
  kind: NetworkPolicyList
  items:
  - metadata: {name: np, namespace: a}
    spec: {podSelector: {}}
- apiVersion: v1
  kind: Namespace
  metadata: {name: c}
)");
  EXPECT_EQ(c.namespaces.size(), 3u);
  EXPECT_NE(c.FindWorkload("a/p1"), nullptr);
  EXPECT_NE(c.FindWorkload("b/p2"), nullptr);
  EXPECT_EQ(c.policies.size(), 1u);
}

TEST(LoaderInputs, NamesListItemsInDiagnostics) {
  LoadResult r = Load(R"(apiVersion: v1
kind: PodList
items:
- metadata: {name: ok}
- metadata: {name: bad, labels: {"-x": v}}
)");
  ASSERT_FALSE(r.ok());
  ASSERT_EQ(r.diagnostics.size(), 1u) << AllDiagnostics(r);
  EXPECT_EQ(r.diagnostics[0].object, "Pod default/bad (items[1])");
  EXPECT_EQ(r.diagnostics[0].field, "metadata.labels[-x]");
  EXPECT_EQ(r.diagnostics[0].where.line, 5);
  EXPECT_EQ(r.diagnostics[0].where.document, 1);
}

TEST(LoaderInputs, RefusesListsNestedTooDeeply) {
  std::string yaml;
  std::string indent;
  for (int i = 0; i < 6; ++i) {
    yaml += indent + (i ? "- " : "") + "apiVersion: v1\n" + indent + (i ? "  " : "") +
            "kind: List\n" + indent + (i ? "  " : "") + "items:\n";
    indent += i ? "  " : "";
  }
  LoadResult r = Load(yaml);
  EXPECT_FALSE(r.ok());
  bool found = false;
  for (const Diagnostic& d : r.diagnostics)
    found |= d.message.find("nested deeper") != std::string::npos;
  EXPECT_TRUE(found) << AllDiagnostics(r);
}

TEST(LoaderInputs, ReadsDirectoriesRecursivelyInSortedOrderByExtension) {
  TempDir dir;
  dir.Write("b.yaml", Namespace("from-b"));
  dir.Write("a.yml", Namespace("from-a"));
  dir.Write("sub/c.json",
            R"({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "from-c"}})");
  dir.Write("sub/deeper/d.YAML", Namespace("from-d"));
  dir.Write("README.md", "not a manifest: {{{");
  dir.Write("notes.txt", "- also not");
  LoadResult r = LoadPaths({dir.path().string()});
  ASSERT_TRUE(r.ok()) << AllDiagnostics(r);
  ASSERT_EQ(r.cluster.namespaces.size(), 4u);
  EXPECT_EQ(r.cluster.namespaces[0].name, "from-a");
  EXPECT_EQ(r.cluster.namespaces[1].name, "from-b");
  EXPECT_EQ(r.cluster.namespaces[2].name, "from-c");
  EXPECT_EQ(r.cluster.namespaces[3].name, "from-d");
  EXPECT_EQ(r.cluster.namespaces[2].source.file, (dir.path() / "sub/c.json").string());
}

TEST(LoaderInputs, ReportsErrorsOfAllFilesAndKeepsNothing) {
  TempDir dir;
  dir.Write("1.yaml", Namespace("ok"));
  dir.Write("2.yaml", Namespace("Bad1"));
  dir.Write("3.json", "{\"apiVersion\": \"v1\", \"kind\": \"Namespace\", \"metadata\": {}}");
  LoadResult r = LoadPaths({dir.path().string(), (dir.path() / "missing.yaml").string()});
  EXPECT_FALSE(r.ok());
  EXPECT_TRUE(r.cluster.namespaces.empty());
  std::set<std::string> files;
  for (const Diagnostic& d : r.diagnostics) {
    if (d.severity == Diagnostic::Severity::kError) {
      files.insert(fs::path(d.where.file).filename().string());
    }
  }
  EXPECT_EQ(files, (std::set<std::string>{"2.yaml", "3.json", "missing.yaml"}))
      << AllDiagnostics(r);
}

TEST(LoaderInputs, ReadsAnExplicitFileWhateverItsExtension) {
  TempDir dir;
  dir.Write("policy.txt", Namespace("txt"));
  Cluster c = LoadPaths({(dir.path() / "policy.txt").string()}).cluster;
  ASSERT_EQ(c.namespaces.size(), 1u);
  EXPECT_EQ(c.namespaces[0].name, "txt");
}

TEST(LoaderInputs, WarnsAboutADirectoryWithoutManifests) {
  TempDir dir;
  dir.Write("notes.txt", "x");
  LoadResult r = LoadPaths({dir.path().string()});
  EXPECT_TRUE(r.ok());
  ASSERT_EQ(r.diagnostics.size(), 1u);
  EXPECT_EQ(r.diagnostics[0].severity, Diagnostic::Severity::kWarning);
}

TEST(LoaderInputs, MissingPathIsAnError) {
  LoadResult r = LoadPaths({"/nonexistent/bulkhead/input.yaml"});
  EXPECT_FALSE(r.ok());
  ASSERT_EQ(r.diagnostics.size(), 1u);
  EXPECT_EQ(r.diagnostics[0].where.file, "/nonexistent/bulkhead/input.yaml");
  EXPECT_NE(r.diagnostics[0].message.find("no such file"), std::string::npos);
}

TEST(LoaderInputs, NoPathsIsAnError) { EXPECT_FALSE(LoadPaths({}).ok()); }

TEST(LoaderInputs, MergesObjectsAcrossFiles) {
  TempDir dir;
  dir.Write("ns.yaml", Namespace("shop"));
  dir.Write("pods/a.yaml",
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web-a\n  namespace: shop\n"
            "  ownerReferences: [{kind: ReplicaSet, name: web-1, controller: true}]\n"
            "status: {podIP: 10.0.0.1}\n");
  dir.Write("pods/b.yaml",
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web-b\n  namespace: shop\n"
            "  ownerReferences: [{kind: ReplicaSet, name: web-1, controller: true}]\n"
            "status: {podIP: 10.0.0.2}\n");
  LoadResult r = LoadPaths({dir.path().string()});
  ASSERT_TRUE(r.ok()) << AllDiagnostics(r);
  ASSERT_EQ(r.cluster.workloads.size(), 1u);
  EXPECT_EQ(r.cluster.workloads[0].Id(), "shop/web-1");
  EXPECT_EQ(r.cluster.workloads[0].ips.size(), 2u);
  EXPECT_FALSE(r.cluster.FindNamespace("shop")->implicit);
}

TEST(LoaderInputs, RefusesInvalidUtf8AndEscapesItInDiagnostics) {
  LoadResult r = Load(
      "apiVersion: bulkhead.io/v1alpha1\nkind: BulkheadPolicy\nmetadata: {name: p}\n"
      "spec:\n  description: \"caf\xe9\"\n  ingress:\n  - from: [{podSelector: {x\xff: a}}]\n");
  ASSERT_FALSE(r.ok());
  const Diagnostic* d = testing::FindError(r, "spec.description", "UTF-8");
  ASSERT_NE(d, nullptr) << AllDiagnostics(r);
  EXPECT_EQ(d->where.line, 5);
  bool escaped = false;
  for (const Diagnostic& diag : r.diagnostics) {
    escaped |= diag.message.find("x\\xff") != std::string::npos;
    EXPECT_EQ(diag.message.find('\xff'), std::string::npos) << diag.ToString();
  }
  EXPECT_TRUE(escaped) << AllDiagnostics(r);
}

TEST(LoaderInputs, DiagnosticToStringFormats) {
  Diagnostic d;
  d.severity = Diagnostic::Severity::kWarning;
  d.where = SourceRef{"a.yaml", 2, 7, 3};
  d.object = "Pod default/x";
  d.field = "spec";
  d.message = "m";
  EXPECT_EQ(d.ToString(), "a.yaml:7:3: warning: Pod default/x (document 2): spec: m");
  d.object = "document 2";
  d.field.clear();
  d.severity = Diagnostic::Severity::kNotice;
  EXPECT_EQ(d.ToString(), "a.yaml:7:3: notice: document 2: m");
  d.object.clear();
  d.where = SourceRef{"b", 0, 0, 0};
  d.severity = Diagnostic::Severity::kError;
  EXPECT_EQ(d.ToString(), "b: error: m");
}

}  // namespace
}  // namespace bulkhead::policy
