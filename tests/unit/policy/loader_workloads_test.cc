// Tests of how Namespaces, Nodes, Pods and pod controllers become the model's namespaces,
// nodes and workloads: defaulting, owner folding, merging and modes.
#include <gtest/gtest.h>

#include <string>

#include "unit/policy/loader_test_util.h"

namespace bulkhead::policy {
namespace {

using testing::AllDiagnostics;
using testing::Find;
using testing::FindError;
using testing::Load;
using testing::LoadOk;

TEST(LoaderNamespaces, AddsTheMetadataNameLabelAndReadsTheModeAnnotation) {
  Cluster c = LoadOk(R"(
apiVersion: v1
kind: Namespace
metadata:
  name: shop
  labels: {team: shop}
  annotations: {bulkhead.io/mode: audit}
)");
  ASSERT_EQ(c.namespaces.size(), 1u);
  const Namespace& ns = c.namespaces[0];
  EXPECT_EQ(ns.name, "shop");
  EXPECT_EQ(ns.labels, (Labels{{"team", "shop"}, {"kubernetes.io/metadata.name", "shop"}}));
  EXPECT_EQ(ns.mode, Mode::kAudit);
  EXPECT_FALSE(ns.implicit);
  EXPECT_EQ(ns.source.file, "test.yaml");
  EXPECT_EQ(ns.source.line, 2);
}

TEST(LoaderNamespaces, OverridesAWrongMetadataNameLabelWithAWarning) {
  LoadResult r = Load(R"(
apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {kubernetes.io/metadata.name: other}}
)");
  ASSERT_TRUE(r.ok()) << AllDiagnostics(r);
  EXPECT_EQ(r.cluster.namespaces[0].labels.at("kubernetes.io/metadata.name"), "shop");
  EXPECT_NE(Find(r, Diagnostic::Severity::kWarning, "metadata.labels[kubernetes.io/metadata.name]"),
            nullptr)
      << AllDiagnostics(r);
}

TEST(LoaderNamespaces, CreatesImplicitNamespacesForWorkloadsAndPolicies) {
  Cluster c = LoadOk(R"(
apiVersion: v1
kind: Pod
metadata: {name: a}
---
apiVersion: v1
kind: Pod
metadata: {name: b, namespace: shop}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: p, namespace: ops}
spec: {podSelector: {}}
---
apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {team: shop}}
)");
  ASSERT_EQ(c.workloads.size(), 2u);
  EXPECT_EQ(c.workloads[0].namespace_name, "default");  // no namespace: default
  ASSERT_NE(c.FindNamespace("default"), nullptr);
  EXPECT_TRUE(c.FindNamespace("default")->implicit);
  EXPECT_EQ(c.FindNamespace("default")->labels,
            (Labels{{"kubernetes.io/metadata.name", "default"}}));
  ASSERT_NE(c.FindNamespace("ops"), nullptr);
  EXPECT_TRUE(c.FindNamespace("ops")->implicit);
  ASSERT_NE(c.FindNamespace("shop"), nullptr);
  EXPECT_FALSE(c.FindNamespace("shop")->implicit);  // declared later in the input
  EXPECT_EQ(c.FindNamespace("shop")->labels.at("team"), "shop");
  EXPECT_EQ(c.namespaces.size(), 3u);
}

TEST(LoaderPods, ReadsLabelsPortsAddressesServiceAccountNodeAndMode) {
  Cluster c = LoadOk(R"(
apiVersion: v1
kind: Pod
metadata:
  name: web-1
  namespace: shop
  labels: {app: web}
  annotations: {bulkhead.io/mode: learn}
spec:
  serviceAccountName: web
  nodeName: node-a
  containers:
  - name: web
    ports:
    - {name: http, containerPort: 8080}
    - {name: dns, containerPort: 53, protocol: UDP}
    - {containerPort: 9999}
  - name: sidecar
    ports: [{name: metrics, containerPort: 9090, protocol: SCTP}]
  initContainers:
  - {name: init, ports: [{name: setup, containerPort: 1}]}
  - {name: proxy, restartPolicy: Always, ports: [{name: proxy, containerPort: 15001}]}
status:
  podIP: 10.0.0.5
  podIPs: [{ip: 10.0.0.5}, {ip: "fd00::5"}]
)");
  ASSERT_EQ(c.workloads.size(), 1u);
  const Workload& w = c.workloads[0];
  EXPECT_EQ(w.Id(), "shop/web-1");
  EXPECT_EQ(w.kind, "Pod");
  EXPECT_EQ(w.labels, (Labels{{"app", "web"}}));
  EXPECT_EQ(w.service_account, "web");
  EXPECT_EQ(w.node, "node-a");
  EXPECT_EQ(w.mode, Mode::kLearn);
  ASSERT_EQ(w.ips.size(), 2u);
  EXPECT_EQ(w.ips[0].ToString(), "10.0.0.5");
  EXPECT_EQ(w.ips[1].ToString(), "fd00::5");
  ASSERT_EQ(w.named_ports.size(), 4u);  // unnamed ports and non-sidecar init ports excluded
  EXPECT_EQ(w.named_ports[0].name, "http");
  EXPECT_EQ(w.named_ports[0].protocol, Protocol::kTCP);  // defaulted
  EXPECT_EQ(w.named_ports[0].port, 8080);
  EXPECT_EQ(w.named_ports[1].protocol, Protocol::kUDP);
  EXPECT_EQ(w.named_ports[2].name, "metrics");
  EXPECT_EQ(w.named_ports[2].protocol, Protocol::kSCTP);
  EXPECT_EQ(w.named_ports[3].name, "proxy");
}

TEST(LoaderPods, DefaultsServiceAccountAndLeavesHostNetworkPodsWithoutAddresses) {
  Cluster c = LoadOk(R"(
apiVersion: v1
kind: Pod
metadata: {name: agent}
spec: {hostNetwork: true, containers: [{name: a}]}
status: {podIP: 192.168.1.10}
)");
  ASSERT_EQ(c.workloads.size(), 1u);
  EXPECT_EQ(c.workloads[0].service_account, "default");
  EXPECT_TRUE(c.workloads[0].ips.empty());
}

TEST(LoaderPods, FoldsPodsOfOneControllerIntoOneWorkloadNamedAfterIt) {
  Cluster c = LoadOk(R"(
apiVersion: v1
kind: Pod
metadata:
  name: api-7d9-a
  labels: {app: api}
  ownerReferences:
  - {apiVersion: apps/v1, kind: Deployment, name: other, controller: false}
  - {apiVersion: apps/v1, kind: ReplicaSet, name: api-7d9, controller: true}
spec: {containers: [{name: c, ports: [{name: http, containerPort: 80}]}]}
status: {podIP: 10.0.1.1}
---
apiVersion: v1
kind: Pod
metadata:
  name: api-7d9-b
  labels: {app: api}
  ownerReferences: [{apiVersion: apps/v1, kind: ReplicaSet, name: api-7d9, controller: true}]
spec: {containers: [{name: c, ports: [{name: http, containerPort: 80}]}]}
status: {podIP: 10.0.1.2}
)");
  ASSERT_EQ(c.workloads.size(), 1u);
  const Workload& w = c.workloads[0];
  EXPECT_EQ(w.Id(), "default/api-7d9");
  EXPECT_EQ(w.kind, "ReplicaSet");
  ASSERT_EQ(w.ips.size(), 2u);
  EXPECT_EQ(w.named_ports.size(), 1u);
  EXPECT_EQ(c.FindWorkloadByIp(*IpAddr::Parse("10.0.1.2")), &w);
}

struct OwnerCase {
  std::string owner_refs;  // YAML flow list
  std::string want_id;
  std::string want_kind;
};

class LoaderPodOwners : public ::testing::TestWithParam<OwnerCase> {};

TEST_P(LoaderPodOwners, NamesTheWorkloadAsNpGuardDoes) {
  const OwnerCase& c = GetParam();
  Cluster cluster = LoadOk(
      "apiVersion: v1\nkind: Pod\nmetadata:\n  name: pod-1\n"
      "  namespace: ns\n  ownerReferences: " +
      c.owner_refs + "\n");
  ASSERT_EQ(cluster.workloads.size(), 1u);
  EXPECT_EQ(cluster.workloads[0].Id(), c.want_id);
  EXPECT_EQ(cluster.workloads[0].kind, c.want_kind);
}

INSTANTIATE_TEST_SUITE_P(
    All, LoaderPodOwners,
    ::testing::Values(
        OwnerCase{"[]", "ns/pod-1", "Pod"},
        OwnerCase{"[{kind: ReplicaSet, name: rs-1, controller: true}]", "ns/rs-1", "ReplicaSet"},
        OwnerCase{"[{kind: DaemonSet, name: ds, controller: true}]", "ns/ds", "DaemonSet"},
        OwnerCase{"[{kind: StatefulSet, name: db, controller: true}]", "ns/db", "StatefulSet"},
        OwnerCase{"[{kind: Job, name: j, controller: true}]", "ns/j", "Job"},
        // No kind: np-guard reports the owner's name with kind Pod.
        OwnerCase{"[{name: owner, controller: true}]", "ns/owner", "Pod"},
        // Mirror pods of static manifests are "owned" by their node and stay pods.
        OwnerCase{"[{kind: Node, name: minikube, controller: true}]", "ns/pod-1", "Pod"},
        // Only a controller reference makes the pod part of another workload.
        OwnerCase{"[{kind: ReplicaSet, name: rs-1}]", "ns/pod-1", "Pod"}));

TEST(LoaderPods, MergesPodsWithDifferentLabelsAndWarnsWhenASelectorSplitsThem) {
  LoadResult r = Load(R"(
apiVersion: v1
kind: Pod
metadata:
  name: pod-1
  labels: {app: a, shared: x}
  ownerReferences: [{name: owner, controller: true}]
---
apiVersion: v1
kind: Pod
metadata:
  name: pod-2
  labels: {app: b, shared: x}
  ownerReferences: [{name: owner, controller: true}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: splits}
spec:
  podSelector: {matchLabels: {shared: x}}
  ingress: [{from: [{podSelector: {matchLabels: {app: a}}}]}]
)");
  ASSERT_TRUE(r.ok()) << AllDiagnostics(r);
  ASSERT_EQ(r.cluster.workloads.size(), 1u);
  // The first pod's labels represent the workload.
  EXPECT_EQ(r.cluster.workloads[0].labels, (Labels{{"app", "a"}, {"shared", "x"}}));
  EXPECT_NE(Find(r, Diagnostic::Severity::kNotice, "metadata.labels", "different labels"), nullptr)
      << AllDiagnostics(r);
  // The subject selects both pods (no gap); the peer selects only pod-1.
  int gap_warnings = 0;
  for (const Diagnostic& d : r.diagnostics) {
    if (d.message.find("selects some pods") != std::string::npos) {
      ++gap_warnings;
      EXPECT_EQ(d.object, "NetworkPolicy default/splits");
      EXPECT_NE(d.message.find("ingress rule 0 peer app=a"), std::string::npos) << d.ToString();
    }
  }
  EXPECT_EQ(gap_warnings, 1) << AllDiagnostics(r);
}

struct ControllerCase {
  std::string kind;
  std::string api_version;
  std::string spec;  // YAML of spec, indented by 2
};

class LoaderControllers : public ::testing::TestWithParam<ControllerCase> {};

TEST_P(LoaderControllers, MakeOneWorkloadFromThePodTemplate) {
  const ControllerCase& c = GetParam();
  std::string yaml = "apiVersion: " + c.api_version + "\nkind: " + c.kind +
                     "\nmetadata: {name: app, namespace: ns, labels: {not: template}}\nspec:\n" +
                     c.spec;
  Cluster cluster = LoadOk(yaml);
  ASSERT_EQ(cluster.workloads.size(), 1u) << yaml;
  const Workload& w = cluster.workloads[0];
  EXPECT_EQ(w.Id(), "ns/app");
  EXPECT_EQ(w.kind, c.kind);
  EXPECT_EQ(w.labels, (Labels{{"app", "x"}}));  // the template's, not the object's
  ASSERT_EQ(w.named_ports.size(), 1u);
  EXPECT_EQ(w.named_ports[0].name, "http");
  EXPECT_EQ(w.named_ports[0].port, 80);
  EXPECT_EQ(w.mode, Mode::kAudit);
}

const char* kTemplate = R"(  template:
    metadata: {labels: {app: x}, annotations: {bulkhead.io/mode: audit}}
    spec: {containers: [{name: c, ports: [{name: http, containerPort: 80}]}]}
)";

INSTANTIATE_TEST_SUITE_P(
    All, LoaderControllers,
    ::testing::Values(
        ControllerCase{"Deployment", "apps/v1",
                       std::string("  selector: {matchLabels: {app: x}}\n") + kTemplate},
        ControllerCase{"Deployment", "extensions/v1beta1", kTemplate},
        ControllerCase{"StatefulSet", "apps/v1",
                       std::string("  selector: {matchLabels: {app: x}}\n") + kTemplate},
        ControllerCase{"DaemonSet", "apps/v1",
                       std::string("  selector: {matchLabels: {app: x}}\n") + kTemplate},
        ControllerCase{"ReplicaSet", "apps/v1",
                       std::string("  selector: {matchExpressions: [{key: app, operator: "
                                   "Exists}]}\n") +
                           kTemplate},
        ControllerCase{"ReplicationController", "v1",
                       std::string("  selector: {app: x}\n") + kTemplate},
        ControllerCase{"Job", "batch/v1", kTemplate},
        ControllerCase{"CronJob", "batch/v1",
                       R"(  schedule: "* * * * *"
  jobTemplate:
    spec:
      template:
        metadata: {labels: {app: x}, annotations: {bulkhead.io/mode: audit}}
        spec: {containers: [{name: c, ports: [{name: http, containerPort: 80}]}]}
)"},
        ControllerCase{"VirtualMachine", "kubevirt.io/v1",
                       R"(  template:
    metadata: {labels: {app: x}, annotations: {bulkhead.io/mode: audit}}
    spec:
      domain:
        devices:
          interfaces: [{name: default, ports: [{name: http, port: 80}]}]
)"}));

TEST(LoaderControllers, WarnsButLoadsWhatTheApiServerWouldRefuseInAWorkload) {
  // np-guard's corpus has a selector that misses the template and a misspelt
  // containerPort; the workload is still read, with warnings.
  LoadResult r = Load(R"(
apiVersion: apps/v1
kind: Deployment
metadata: {name: app}
spec:
  selector: {matchLabels: {app: other}}
  template:
    metadata: {labels: {app: x}}
    spec: {containers: [{name: c, ports: [{name: udps, containerport: 3535}]}]}
)");
  ASSERT_TRUE(r.ok()) << AllDiagnostics(r);
  ASSERT_EQ(r.cluster.workloads.size(), 1u);
  EXPECT_TRUE(r.cluster.workloads[0].named_ports.empty());
  const Diagnostic* d = Find(r, Diagnostic::Severity::kWarning, "spec.selector", "does not match");
  ASSERT_NE(d, nullptr) << AllDiagnostics(r);
  EXPECT_EQ(d->where.line, 6);
  EXPECT_NE(Find(r, Diagnostic::Severity::kWarning,
                 "spec.template.spec.containers[0].ports[0].containerPort", "required"),
            nullptr)
      << AllDiagnostics(r);
}

TEST(LoaderNodes, ReadsNodeLabelsAndAddresses) {
  Cluster c = LoadOk(R"(
apiVersion: v1
kind: Node
metadata: {name: worker-1, labels: {zone: b}}
status:
  addresses:
  - {type: InternalIP, address: 192.168.1.10}
  - {type: ExternalIP, address: "2001:db8::10"}
  - {type: Hostname, address: worker-1}
)");
  ASSERT_EQ(c.nodes.size(), 1u);
  EXPECT_EQ(c.nodes[0].name, "worker-1");
  EXPECT_EQ(c.nodes[0].labels, (Labels{{"zone", "b"}}));
  ASSERT_EQ(c.nodes[0].ips.size(), 2u);
  EXPECT_TRUE(c.namespaces.empty());
}

TEST(LoaderKinds, IgnoresKindsThatDoNotMatterWithANotice) {
  LoadResult r = Load(R"(
apiVersion: v1
kind: Service
metadata: {name: web}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: cfg}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: ing}
---
apiVersion: route.openshift.io/v1
kind: Route
metadata: {name: r}
)");
  ASSERT_TRUE(r.ok()) << AllDiagnostics(r);
  EXPECT_EQ(testing::Count(r, Diagnostic::Severity::kNotice), 4) << AllDiagnostics(r);
  EXPECT_EQ(r.diagnostics[0].object, "Service web");
  EXPECT_NE(r.diagnostics[0].message.find("ignored"), std::string::npos);
}

TEST(LoaderKinds, WarnsAboutPoliciesOfOtherApiGroups) {
  LoadResult r = Load(R"(
apiVersion: crd.projectcalico.org/v1
kind: NetworkPolicy
metadata: {name: calico}
)");
  ASSERT_TRUE(r.ok()) << AllDiagnostics(r);
  ASSERT_EQ(r.diagnostics.size(), 1u);
  EXPECT_EQ(r.diagnostics[0].severity, Diagnostic::Severity::kWarning);
  EXPECT_NE(r.diagnostics[0].message.find("networking.k8s.io/v1"), std::string::npos);
}

// WorkloadMode: a central mode for one workload, wherever the workload is declared.
TEST(WorkloadModeTest, OverridesTheWorkloadsOwnModeAndIsKeptForLaterWorkloads) {
  Cluster c = LoadOk(R"(
apiVersion: v1
kind: Pod
metadata:
  name: web
  namespace: shop
  annotations: {bulkhead.io/mode: audit}
  labels: {app: web}
---
apiVersion: bulkhead.io/v1alpha1
kind: WorkloadMode
metadata: {name: web, namespace: shop}
spec: {mode: learn}
---
apiVersion: bulkhead.io/v1alpha1
kind: WorkloadMode
metadata: {name: db, namespace: shop}
spec: {mode: enforce}
)");
  ASSERT_EQ(c.workloads.size(), 1u);
  EXPECT_EQ(c.workloads[0].mode, Mode::kLearn);
  // Sorted by workload id; the override for a workload not in this input is kept.
  ASSERT_EQ(c.workload_modes.size(), 2u);
  EXPECT_EQ(c.workload_modes[0].Id(), "shop/db");
  EXPECT_EQ(c.workload_modes[1].Id(), "shop/web");
  Workload db;
  db.namespace_name = "shop";
  db.name = "db";
  db.mode = Mode::kAudit;
  c.workloads.push_back(db);
  ApplyWorkloadModes(c);
  EXPECT_EQ(c.workloads[1].mode, Mode::kEnforce);
  EXPECT_EQ(c.workloads[0].mode, Mode::kLearn);
}

TEST(WorkloadModeTest, BadModesFieldsAndDuplicatesAreErrorsNamingTheField) {
  LoadResult missing = Load(R"(
apiVersion: bulkhead.io/v1alpha1
kind: WorkloadMode
metadata: {name: web, namespace: shop}
spec: {}
)");
  EXPECT_FALSE(missing.ok());
  EXPECT_NE(FindError(missing, "spec.mode"), nullptr) << AllDiagnostics(missing);
  LoadResult unknown = Load(R"(
apiVersion: bulkhead.io/v1alpha1
kind: WorkloadMode
metadata: {name: web, namespace: shop}
spec: {mode: block}
)");
  EXPECT_NE(FindError(unknown, "spec.mode", "unknown mode"), nullptr) << AllDiagnostics(unknown);
  LoadResult typo = Load(R"(
apiVersion: bulkhead.io/v1alpha1
kind: WorkloadMode
metadata: {name: web, namespace: shop}
spec: {mode: audit, modee: enforce}
)");
  EXPECT_FALSE(typo.ok()) << AllDiagnostics(typo);
  LoadResult twice = Load(R"(
apiVersion: bulkhead.io/v1alpha1
kind: WorkloadMode
metadata: {name: web, namespace: shop}
spec: {mode: audit}
---
apiVersion: bulkhead.io/v1alpha1
kind: WorkloadMode
metadata: {name: web, namespace: shop}
spec: {mode: learn}
)");
  EXPECT_NE(FindError(twice, "metadata.name", "duplicate"), nullptr) << AllDiagnostics(twice);
  EXPECT_TRUE(twice.cluster.workload_modes.empty());
}

}  // namespace
}  // namespace bulkhead::policy
