// Stored objects: splitting manifests, canonical JSON, ids, changes, undo and diffs.
#include "server/objects.h"

#include <gtest/gtest.h>

namespace bulkhead::server {
namespace {

constexpr const char* kNp = R"(apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: web
  resourceVersion: "123"
  uid: abc
  annotations:
    kubectl.kubernetes.io/last-applied-configuration: "{}"
spec:
  podSelector: {matchLabels: {app: web}}
  ingress:
  - ports: [{port: 80}]
status: {}
)";

SplitResult Split(const std::string& text) { return SplitManifests({{"f.yaml", text}}); }

TEST(SplitManifestsTest, DefaultsNamespaceAndDropsManagedFields) {
  SplitResult r = Split(kNp);
  ASSERT_TRUE(r.ok());
  ASSERT_EQ(r.objects.size(), 1u);
  const StoredObject& o = r.objects[0];
  EXPECT_EQ(o.id.Display(), "NetworkPolicy default/web");
  EXPECT_EQ(o.id.group, "networking.k8s.io");
  EXPECT_EQ(o.api_version, "networking.k8s.io/v1");
  EXPECT_EQ(
      o.json,
      R"({"apiVersion":"networking.k8s.io/v1","kind":"NetworkPolicy","metadata":{"name":"web","namespace":"default"},"spec":{"ingress":[{"ports":[{"port":80}]}],"podSelector":{"matchLabels":{"app":"web"}}}})");
}

TEST(SplitManifestsTest, SameObjectWrittenDifferentlyIsSameBytes) {
  SplitResult a = Split(kNp);
  SplitResult b = Split(R"({"kind":"NetworkPolicy","apiVersion":"networking.k8s.io/v1",
    "spec":{"podSelector":{"matchLabels":{"app":"web"}},"ingress":[{"ports":[{"port":80}]}]},
    "metadata":{"namespace":"default","name":"web"}})");
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(a.objects[0].json, b.objects[0].json);
}

TEST(SplitManifestsTest, ListsAreExpandedAndClusterScopeDropsNamespace) {
  SplitResult r = Split(R"(apiVersion: v1
kind: NamespaceList
items:
- metadata: {name: shop, namespace: ignored, labels: {team: a}}
- metadata: {name: pay}
)");
  ASSERT_TRUE(r.ok());
  ASSERT_EQ(r.objects.size(), 2u);
  EXPECT_EQ(r.objects[0].id.Display(), "Namespace shop");
  EXPECT_EQ(r.objects[0].id.namespace_name, "");
  EXPECT_EQ(r.objects[0].json.find("ignored"), std::string::npos);
}

TEST(SplitManifestsTest, WorkloadsAreRefusedAndOtherKindsSkipped) {
  SplitResult r = Split(R"(apiVersion: v1
kind: Pod
metadata: {name: p}
---
apiVersion: v1
kind: Service
metadata: {name: s}
)");
  EXPECT_FALSE(r.ok());
  ASSERT_EQ(r.diagnostics.size(), 2u);
  EXPECT_EQ(r.diagnostics[0].severity, policy::Diagnostic::Severity::kError);
  EXPECT_NE(r.diagnostics[0].message.find("agents report them"), std::string::npos);
  EXPECT_EQ(r.diagnostics[0].where.file, "f.yaml");
  EXPECT_EQ(r.diagnostics[1].severity, policy::Diagnostic::Severity::kNotice);
  EXPECT_TRUE(r.objects.empty());
}

TEST(SplitManifestsTest, DuplicateAcrossFilesNamesBothPlaces) {
  SplitResult r = SplitManifests({{"a.yaml", kNp}, {"b.yaml", kNp}});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.diagnostics[0].where.file, "b.yaml");
  EXPECT_NE(r.diagnostics[0].message.find("a.yaml"), std::string::npos);
}

TEST(ObjectIdTest, KeyRoundTrips) {
  for (const ObjectId& id : {ObjectId{"", "Namespace", "", "shop"},
                             ObjectId{"networking.k8s.io", "NetworkPolicy", "shop", "web"},
                             ObjectId{"bulkhead.io", "DefaultDeny", "", "zt"}}) {
    ObjectId back;
    ASSERT_TRUE(ObjectId::FromKey(id.Key(), &back)) << id.Key();
    EXPECT_EQ(back, id);
  }
  ObjectId out;
  EXPECT_FALSE(ObjectId::FromKey("core/Namespace", &out));
  EXPECT_FALSE(ObjectId::FromKey("core/Namespace//a/b", &out));
  EXPECT_FALSE(ObjectId::FromKey("/Namespace//a", &out));
}

ObjectSet SetOf(const std::string& text) {
  ObjectSet set;
  for (StoredObject& o : Split(text).objects) set[o.id] = o;
  return set;
}

TEST(ChangesTest, CreateUpdateDeleteAndUndo) {
  ObjectSet from = SetOf(R"(apiVersion: v1
kind: Namespace
metadata: {name: a}
---
apiVersion: v1
kind: Namespace
metadata: {name: b}
)");
  ObjectSet to = SetOf(R"(apiVersion: v1
kind: Namespace
metadata: {name: b, labels: {x: "1"}}
---
apiVersion: v1
kind: Namespace
metadata: {name: c}
)");
  std::vector<ObjectChange> changes = Changes(from, to);
  ASSERT_EQ(changes.size(), 3u);
  EXPECT_EQ(changes[0].action, ObjectChange::Action::kDelete);
  EXPECT_EQ(changes[0].id.name, "a");
  EXPECT_EQ(changes[1].action, ObjectChange::Action::kUpdate);
  EXPECT_EQ(changes[2].action, ObjectChange::Action::kCreate);
  ObjectSet back = Undo(to, changes);
  ASSERT_EQ(back.size(), from.size());
  for (const auto& [id, o] : from) {
    ASSERT_TRUE(back.count(id));
    EXPECT_EQ(back.at(id).json, o.json);
    EXPECT_EQ(back.at(id).api_version, o.api_version);
  }
  EXPECT_TRUE(Changes(to, to).empty());
}

TEST(RenderDiffTest, UnifiedDiffOfYaml) {
  ObjectSet from = SetOf("apiVersion: v1\nkind: Namespace\nmetadata: {name: b}\n");
  ObjectSet to = SetOf("apiVersion: v1\nkind: Namespace\nmetadata: {name: b, labels: {x: '1'}}\n");
  std::string diff = RenderDiff(Changes(from, to));
  EXPECT_NE(diff.find("--- Namespace b\n+++ Namespace b\n"), std::string::npos) << diff;
  EXPECT_NE(diff.find("+  labels:"), std::string::npos) << diff;
  // The label value "1" stays a string when rendered.
  EXPECT_NE(diff.find("+    x: \"1\""), std::string::npos) << diff;
}

TEST(ToYamlTest, ReadsBackAsTheSameJson) {
  SplitResult r = Split(kNp);
  ASSERT_TRUE(r.ok());
  SplitResult back = Split(ToYaml(r.objects[0].json));
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(back.objects[0].json, r.objects[0].json);
}

}  // namespace
}  // namespace bulkhead::server
