// LoadSources: several in-memory streams load as one cluster, diagnostics name each stream.
#include <gtest/gtest.h>

#include "policy/loader.h"

namespace bulkhead::policy {
namespace {

constexpr const char* kPolicy = R"(apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web, namespace: shop}
spec:
  podSelector: {matchLabels: {app: web}}
)";

TEST(LoadSourcesTest, LoadsEveryStreamIntoOneCluster) {
  LoadResult r =
      LoadSources({{"a.yaml", kPolicy},
                   {"b.yaml", "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n"}});
  ASSERT_TRUE(r.ok());
  ASSERT_EQ(r.cluster.policies.size(), 1u);
  EXPECT_EQ(r.cluster.policies[0].source.file, "a.yaml");
  EXPECT_EQ(r.cluster.namespaces.size(), 1u);
}

TEST(LoadSourcesTest, EmptyInputIsAnEmptyCluster) {
  LoadResult r = LoadSources({});
  EXPECT_TRUE(r.ok());
  EXPECT_TRUE(r.cluster.policies.empty());
}

TEST(LoadSourcesTest, CrossStreamDuplicateNamesTheStream) {
  LoadResult r = LoadSources({{"first", kPolicy}, {"second", kPolicy}});
  ASSERT_FALSE(r.ok());
  bool named = false;
  for (const Diagnostic& d : r.diagnostics) {
    if (d.severity == Diagnostic::Severity::kError &&
        (d.where.file == "second" || d.where.file == "first")) {
      named = true;
    }
  }
  EXPECT_TRUE(named);
  EXPECT_TRUE(r.cluster.policies.empty());
}

TEST(LoadSourcesTest, SyntaxErrorNamesStreamAndLine) {
  LoadResult r = LoadSources({{"good", kPolicy}, {"bad", "kind: [\n"}});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.diagnostics[0].where.file, "bad");
  EXPECT_GT(r.diagnostics[0].where.line, 0);
}

}  // namespace
}  // namespace bulkhead::policy

namespace bulkhead::policy {
namespace {

TEST(LookupKindScopeTest, KnownKindsAndVersions) {
  EXPECT_EQ(LookupKindScope("networking.k8s.io/v1", "NetworkPolicy"), KindScope::kNamespaced);
  EXPECT_EQ(LookupKindScope("v1", "Namespace"), KindScope::kCluster);
  EXPECT_EQ(LookupKindScope("policy.networking.k8s.io/v1alpha1", "AdminNetworkPolicy"),
            KindScope::kCluster);
  EXPECT_EQ(LookupKindScope("bulkhead.io/v1alpha1", "DefaultDeny"), KindScope::kEither);
  EXPECT_EQ(LookupKindScope("networking.k8s.io/v2", "NetworkPolicy"), KindScope::kUnknown);
  EXPECT_EQ(LookupKindScope("v1", "Service"), KindScope::kUnknown);
  EXPECT_EQ(LookupKindScope("crd.projectcalico.org/v1", "NetworkPolicy"), KindScope::kUnknown);
}

}  // namespace
}  // namespace bulkhead::policy
