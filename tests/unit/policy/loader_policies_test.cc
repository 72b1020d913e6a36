// Tests of how NetworkPolicy, AdminNetworkPolicy, BaselineAdminNetworkPolicy and the native
// policy kinds map into model Policies, including API-server defaulting.
#include <gtest/gtest.h>

#include <string>

#include "unit/policy/loader_test_util.h"

namespace bulkhead::policy {
namespace {

using testing::AllDiagnostics;
using testing::Find;
using testing::FindPolicy;
using testing::Load;
using testing::LoadOk;

TEST(LoaderNetworkPolicy, MapsSubjectPeersAndPorts) {
  Cluster c = LoadOk(R"(
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: db, namespace: shop}
spec:
  podSelector: {matchLabels: {app: db}}
  ingress:
  - from:
    - podSelector: {matchLabels: {app: api}}
    - namespaceSelector: {matchLabels: {team: ops}}
    - namespaceSelector: {}
      podSelector: {matchExpressions: [{key: tier, operator: NotIn, values: [a, b]}]}
    - ipBlock: {cidr: 192.0.2.0/24, except: [192.0.2.128/25]}
    ports:
    - {protocol: TCP, port: 5432}
    - {port: 7000, endPort: 7100}
    - {port: pg}
    - {protocol: UDP}
)");
  const Policy* p = FindPolicy(c, "NetworkPolicy", "db");
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(p->Id(), "NetworkPolicy shop/db");
  EXPECT_EQ(p->tier, Tier::kNamespace);
  EXPECT_EQ(p->namespace_name, "shop");
  EXPECT_EQ(p->subject.namespace_name, "shop");
  EXPECT_FALSE(p->subject.namespace_selector.has_value());
  EXPECT_EQ(p->subject.pod_selector.ToString(), "app=db");
  EXPECT_TRUE(p->applies_ingress);
  EXPECT_FALSE(p->applies_egress);
  EXPECT_EQ(p->mode, Mode::kEnforce);
  ASSERT_EQ(p->ingress.size(), 1u);
  const Rule& rule = p->ingress[0];
  EXPECT_FALSE(rule.all_peers);
  EXPECT_EQ(rule.action, RuleAction::kAllow);
  ASSERT_EQ(rule.peers.size(), 4u);

  // podSelector only: pods of the policy's own namespace.
  EXPECT_EQ(rule.peers[0].kind, Peer::Kind::kPods);
  EXPECT_EQ(rule.peers[0].same_namespace, "shop");
  EXPECT_FALSE(rule.peers[0].namespace_selector.has_value());
  EXPECT_EQ(rule.peers[0].pod_selector->ToString(), "app=api");
  // namespaceSelector only: every pod of the selected namespaces.
  EXPECT_EQ(rule.peers[1].namespace_selector->ToString(), "team=ops");
  EXPECT_FALSE(rule.peers[1].pod_selector.has_value());
  // both.
  EXPECT_TRUE(rule.peers[2].namespace_selector->IsEmpty());
  EXPECT_EQ(rule.peers[2].pod_selector->ToString(), "tier notin (a,b)");
  // ipBlock.
  EXPECT_EQ(rule.peers[3].kind, Peer::Kind::kIpBlock);
  ASSERT_EQ(rule.peers[3].cidrs.size(), 1u);
  EXPECT_EQ(rule.peers[3].cidrs[0].ToString(), "192.0.2.0/24");
  ASSERT_EQ(rule.peers[3].except.size(), 1u);
  EXPECT_EQ(rule.peers[3].except[0].ToString(), "192.0.2.128/25");
  EXPECT_EQ(rule.peers[3].source.line, 13);

  ASSERT_EQ(rule.ports.size(), 4u);
  EXPECT_EQ(rule.ports[0].ToString(), "TCP/5432");
  EXPECT_EQ(rule.ports[1].ToString(), "TCP/7000-7100");  // protocol defaulted
  EXPECT_EQ(rule.ports[2].kind, PortMatch::Kind::kNamed);
  EXPECT_EQ(rule.ports[2].ToString(), "TCP/pg");
  EXPECT_EQ(rule.ports[3].kind, PortMatch::Kind::kAllPorts);
  EXPECT_EQ(rule.ports[3].ToString(), "UDP/*");
}

TEST(LoaderNetworkPolicy, AbsentOrEmptyPeersMeanEveryPeerAndAbsentPortsEveryPort) {
  Cluster c = LoadOk(R"(
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: open}
spec:
  podSelector: {}
  ingress:
  - {}
  - from: []
    ports: [{port: 80}]
  egress:
  - to: [{podSelector: {}}]
    ports: []
)");
  const Policy* p = FindPolicy(c, "NetworkPolicy", "open");
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(p->namespace_name, "default");
  ASSERT_EQ(p->ingress.size(), 2u);
  EXPECT_TRUE(p->ingress[0].all_peers);
  EXPECT_TRUE(p->ingress[0].peers.empty());
  EXPECT_TRUE(p->ingress[0].ports.empty());
  EXPECT_TRUE(p->ingress[1].all_peers);
  EXPECT_EQ(p->ingress[1].ports.size(), 1u);
  ASSERT_EQ(p->egress.size(), 1u);
  EXPECT_FALSE(p->egress[0].all_peers);
  EXPECT_TRUE(p->egress[0].ports.empty());
  EXPECT_TRUE(p->subject.pod_selector.IsEmpty());
}

struct PolicyTypesCase {
  std::string spec_extra;  // YAML lines after podSelector, indented by 2
  bool ingress;
  bool egress;
};

class LoaderPolicyTypes : public ::testing::TestWithParam<PolicyTypesCase> {};

TEST_P(LoaderPolicyTypes, DefaultLikeTheApiServer) {
  const PolicyTypesCase& c = GetParam();
  Cluster cluster = LoadOk(
      "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p}\n"
      "spec:\n  podSelector: {}\n" +
      c.spec_extra);
  ASSERT_EQ(cluster.policies.size(), 1u);
  EXPECT_EQ(cluster.policies[0].applies_ingress, c.ingress) << c.spec_extra;
  EXPECT_EQ(cluster.policies[0].applies_egress, c.egress) << c.spec_extra;
}

INSTANTIATE_TEST_SUITE_P(
    All, LoaderPolicyTypes,
    ::testing::Values(PolicyTypesCase{"", true, false},
                      PolicyTypesCase{"  ingress: [{}]\n", true, false},
                      PolicyTypesCase{"  egress: [{}]\n", true, true},
                      PolicyTypesCase{"  egress: []\n", true, false},
                      PolicyTypesCase{"  policyTypes: []\n  egress: [{}]\n", true, true},
                      PolicyTypesCase{"  policyTypes: [Egress]\n", false, true},
                      PolicyTypesCase{"  policyTypes: [Ingress]\n  egress: [{}]\n", true, false},
                      PolicyTypesCase{"  policyTypes: [Ingress, Egress]\n", true, true}));

TEST(LoaderNetworkPolicy, DropsRulesOfADirectionPolicyTypesExcludesWithAWarning) {
  LoadResult r = Load(R"(
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: p}
spec:
  podSelector: {}
  policyTypes: [Ingress]
  egress: [{}]
)");
  ASSERT_TRUE(r.ok()) << AllDiagnostics(r);
  EXPECT_TRUE(r.cluster.policies[0].egress.empty());
  EXPECT_NE(Find(r, Diagnostic::Severity::kWarning, "spec.egress", "policyTypes"), nullptr)
      << AllDiagnostics(r);
}

TEST(LoaderNetworkPolicy, ReadsTheModeAnnotation) {
  Cluster c = LoadOk(R"(
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: p, annotations: {bulkhead.io/mode: audit}}
spec: {podSelector: {}}
)");
  EXPECT_EQ(c.policies[0].mode, Mode::kAudit);
}

TEST(LoaderAdminNetworkPolicy, MapsEveryField) {
  Cluster c = LoadOk(R"(
apiVersion: policy.networking.k8s.io/v1alpha1
kind: AdminNetworkPolicy
metadata: {name: control}
spec:
  priority: 10
  subject:
    pods:
      namespaceSelector: {matchLabels: {env: prod}}
      podSelector: {matchLabels: {app: web}}
  ingress:
  - name: from-monitoring
    action: Allow
    from: [{namespaces: {matchLabels: {team: monitoring}}}]
    ports: [{portNumber: {protocol: TCP, port: 9090}}]
  - name: pass
    action: Pass
    from: [{pods: {namespaceSelector: {}, podSelector: {matchLabels: {app: x}}}}]
  egress:
  - name: deny-out
    action: Deny
    to: [{networks: [0.0.0.0/0, "::/0"]}]
    ports: [{portRange: {start: 1000, end: 2000}}, {namedPort: dns}]
  - name: to-nodes
    action: Allow
    to: [{nodes: {matchExpressions: [{key: role, operator: Exists}]}}]
)");
  const Policy* p = FindPolicy(c, "AdminNetworkPolicy", "control");
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(p->Id(), "AdminNetworkPolicy control");
  EXPECT_EQ(p->tier, Tier::kAdmin);
  EXPECT_EQ(p->priority, 10);
  EXPECT_TRUE(p->namespace_name.empty());
  EXPECT_EQ(p->subject.namespace_selector->ToString(), "env=prod");
  EXPECT_EQ(p->subject.pod_selector.ToString(), "app=web");
  EXPECT_TRUE(p->applies_ingress);
  EXPECT_TRUE(p->applies_egress);
  ASSERT_EQ(p->ingress.size(), 2u);
  EXPECT_EQ(p->ingress[0].name, "from-monitoring");
  EXPECT_FALSE(p->ingress[0].all_peers);
  EXPECT_EQ(p->ingress[0].peers[0].namespace_selector->ToString(), "team=monitoring");
  EXPECT_FALSE(p->ingress[0].peers[0].pod_selector.has_value());
  EXPECT_EQ(p->ingress[0].ports[0].ToString(), "TCP/9090");
  EXPECT_EQ(p->ingress[1].action, RuleAction::kPass);
  EXPECT_EQ(p->ingress[1].peers[0].pod_selector->ToString(), "app=x");
  ASSERT_EQ(p->egress.size(), 2u);
  EXPECT_EQ(p->egress[0].action, RuleAction::kDeny);
  EXPECT_EQ(p->egress[0].peers[0].kind, Peer::Kind::kIpBlock);
  EXPECT_EQ(p->egress[0].peers[0].cidrs.size(), 2u);
  EXPECT_EQ(p->egress[0].ports[0].ToString(), "TCP/1000-2000");  // protocol defaulted
  EXPECT_EQ(p->egress[0].ports[1].kind, PortMatch::Kind::kNamed);
  EXPECT_FALSE(p->egress[0].ports[1].protocol.has_value());  // the named port's own
  EXPECT_EQ(p->egress[1].peers[0].kind, Peer::Kind::kNodes);
  EXPECT_EQ(p->egress[1].peers[0].node_selector.ToString(), "role");
}

TEST(LoaderAdminNetworkPolicy, AppliesOnlyInDirectionsWithRules) {
  Cluster c = LoadOk(R"(
apiVersion: policy.networking.k8s.io/v1alpha1
kind: AdminNetworkPolicy
metadata: {name: a}
spec:
  priority: 0
  subject: {namespaces: {}}
  egress: [{action: Allow, to: [{namespaces: {}}]}]
)");
  EXPECT_FALSE(c.policies[0].applies_ingress);
  EXPECT_TRUE(c.policies[0].applies_egress);
  EXPECT_TRUE(c.policies[0].subject.namespace_selector->IsEmpty());
}

TEST(LoaderAdminNetworkPolicy, TreatsAMissingNamespacedPodSelectorAsEmptyWithAWarning) {
  LoadResult r = Load(R"(
apiVersion: policy.networking.k8s.io/v1alpha1
kind: AdminNetworkPolicy
metadata: {name: a}
spec:
  priority: 1
  subject: {pods: {podSelector: {matchLabels: {app: x}}}}
  ingress: [{action: Deny, from: [{pods: {namespaceSelector: {}}}]}]
)");
  ASSERT_TRUE(r.ok()) << AllDiagnostics(r);
  EXPECT_TRUE(r.cluster.policies[0].subject.namespace_selector->IsEmpty());
  EXPECT_TRUE(r.cluster.policies[0].ingress[0].peers[0].pod_selector->IsEmpty());
  EXPECT_NE(Find(r, Diagnostic::Severity::kWarning, "spec.subject.pods.namespaceSelector"),
            nullptr);
  EXPECT_NE(Find(r, Diagnostic::Severity::kWarning, "spec.ingress[0].from[0].pods.podSelector"),
            nullptr);
}

TEST(LoaderBaselineAdminNetworkPolicy, IsTheBaselineTier) {
  Cluster c = LoadOk(R"(
apiVersion: policy.networking.k8s.io/v1alpha1
kind: BaselineAdminNetworkPolicy
metadata: {name: default}
spec:
  subject: {namespaces: {matchLabels: {env: dev}}}
  ingress: [{name: deny-all, action: Deny, from: [{namespaces: {}}]}]
)");
  const Policy* p = FindPolicy(c, "BaselineAdminNetworkPolicy", "default");
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(p->tier, Tier::kBaseline);
  EXPECT_EQ(p->ingress[0].action, RuleAction::kDeny);
  EXPECT_TRUE(p->applies_ingress);
  EXPECT_FALSE(p->applies_egress);
}

TEST(LoaderBulkheadPolicy, AddsDenyModeServiceAccountProcessDescriptionAndOwner) {
  Cluster c = LoadOk(R"(
apiVersion: bulkhead.io/v1alpha1
kind: BulkheadPolicy
metadata: {name: db-lockdown, namespace: shop}
spec:
  description: only the API may reach the database
  owner: team-shop
  mode: audit
  podSelector: {matchLabels: {app: db}}
  process: {names: [postgres]}
  policyTypes: [Ingress]
  ingress:
  - name: deny-debug
    action: Deny
    from: [{podSelector: {matchLabels: {app: debug}}}]
  - from:
    - podSelector: {matchLabels: {app: api}}
      serviceAccount: api
      process: {names: [api-server], paths: [/usr/bin/api]}
    - serviceAccount: batch
    ports: [{protocol: TCP, port: 5432}, {port: pg}, {port: 7000, endPort: 7100}]
)");
  const Policy* p = FindPolicy(c, "BulkheadPolicy", "db-lockdown");
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(p->tier, Tier::kNamespace);
  EXPECT_EQ(p->mode, Mode::kAudit);
  EXPECT_EQ(p->description, "only the API may reach the database");
  EXPECT_EQ(p->owner, "team-shop");
  ASSERT_TRUE(p->subject.process.has_value());
  EXPECT_EQ(p->subject.process->names, std::vector<std::string>{"postgres"});
  ASSERT_EQ(p->ingress.size(), 2u);
  EXPECT_EQ(p->ingress[0].name, "deny-debug");
  EXPECT_EQ(p->ingress[0].action, RuleAction::kDeny);
  EXPECT_EQ(p->ingress[1].action, RuleAction::kAllow);  // default
  const Peer& api = p->ingress[1].peers[0];
  EXPECT_EQ(api.service_account, "api");
  ASSERT_TRUE(api.process.has_value());
  EXPECT_EQ(api.process->paths, std::vector<std::string>{"/usr/bin/api"});
  // serviceAccount alone: that account's pods in the policy's namespace.
  const Peer& batch = p->ingress[1].peers[1];
  EXPECT_EQ(batch.kind, Peer::Kind::kPods);
  EXPECT_EQ(batch.same_namespace, "shop");
  EXPECT_FALSE(batch.pod_selector.has_value());
  EXPECT_EQ(batch.service_account, "batch");
  EXPECT_EQ(p->ingress[1].ports.size(), 3u);
}

TEST(LoaderBulkheadClusterPolicy, AdminAndBaselineTiers) {
  Cluster c = LoadOk(R"(
apiVersion: bulkhead.io/v1alpha1
kind: BulkheadClusterPolicy
metadata: {name: pci}
spec:
  priority: 3
  mode: audit
  description: PCI isolation
  owner: security
  subject: {namespaces: {matchLabels: {pci: "true"}}}
  egress: [{name: out, action: Deny, to: [{namespaces: {}}]}]
  ingress: [{action: Pass, from: [{networks: [10.0.0.0/8]}]}]
---
apiVersion: bulkhead.io/v1alpha1
kind: BulkheadClusterPolicy
metadata: {name: floor}
spec:
  tier: baseline
  subject: {namespaces: {}}
  ingress: [{action: Allow, from: [{nodes: {}}]}]
)");
  const Policy* pci = FindPolicy(c, "BulkheadClusterPolicy", "pci");
  ASSERT_NE(pci, nullptr);
  EXPECT_EQ(pci->tier, Tier::kAdmin);  // default tier
  EXPECT_EQ(pci->priority, 3);
  EXPECT_EQ(pci->mode, Mode::kAudit);
  EXPECT_EQ(pci->description, "PCI isolation");
  EXPECT_EQ(pci->owner, "security");
  EXPECT_EQ(pci->ingress[0].action, RuleAction::kPass);
  EXPECT_EQ(pci->ingress[0].peers[0].kind, Peer::Kind::kIpBlock);  // networks on ingress
  const Policy* floor = FindPolicy(c, "BulkheadClusterPolicy", "floor");
  ASSERT_NE(floor, nullptr);
  EXPECT_EQ(floor->tier, Tier::kBaseline);
  EXPECT_EQ(floor->ingress[0].peers[0].kind, Peer::Kind::kNodes);
}

TEST(LoaderDefaultDeny, ClusterAndNamespaceScope) {
  Cluster c = LoadOk(R"(
apiVersion: bulkhead.io/v1alpha1
kind: DefaultDeny
metadata: {name: zero-trust}
spec:
  namespaceSelector: {matchLabels: {env: prod}}
  podSelector: {matchLabels: {tier: pci}}
---
apiVersion: bulkhead.io/v1alpha1
kind: DefaultDeny
metadata: {name: shop-only, namespace: shop}
spec: {policyTypes: [Egress], mode: audit}
---
apiVersion: bulkhead.io/v1alpha1
kind: DefaultDeny
metadata: {name: everything}
)");
  const Policy* zt = FindPolicy(c, "DefaultDeny", "zero-trust");
  ASSERT_NE(zt, nullptr);
  EXPECT_EQ(zt->tier, Tier::kDefault);
  EXPECT_TRUE(zt->namespace_name.empty());
  EXPECT_EQ(zt->subject.namespace_selector->ToString(), "env=prod");
  EXPECT_EQ(zt->subject.pod_selector.ToString(), "tier=pci");
  EXPECT_TRUE(zt->applies_ingress && zt->applies_egress);  // default both
  EXPECT_TRUE(zt->ingress.empty() && zt->egress.empty());
  const Policy* shop = FindPolicy(c, "DefaultDeny", "shop-only");
  ASSERT_NE(shop, nullptr);
  EXPECT_EQ(shop->namespace_name, "shop");
  EXPECT_EQ(shop->subject.namespace_name, "shop");
  EXPECT_FALSE(shop->applies_ingress);
  EXPECT_TRUE(shop->applies_egress);
  EXPECT_EQ(shop->mode, Mode::kAudit);
  EXPECT_TRUE(c.FindNamespace("shop")->implicit);
  const Policy* all = FindPolicy(c, "DefaultDeny", "everything");
  ASSERT_NE(all, nullptr);
  EXPECT_FALSE(all->subject.namespace_selector.has_value());  // every namespace
  EXPECT_TRUE(all->subject.pod_selector.IsEmpty());
}

TEST(LoaderInventory, DeclaresNamespacesWorkloadsAndNodes) {
  Cluster c = LoadOk(R"(
apiVersion: bulkhead.io/v1alpha1
kind: Inventory
metadata: {name: lab}
spec:
  namespaces:
  - {name: shop, labels: {team: shop}, mode: enforce}
  workloads:
  - name: web
    namespace: shop
    labels: {app: web}
    serviceAccount: web
    ips: [10.10.0.2, "fd10::2"]
    ports: [{name: http, port: 80, protocol: TCP}, {name: dns, port: 53, protocol: UDP}]
    mode: audit
    netns: shop-web
    hostInterface: veth-web
    node: host-1
  - {name: batch, ips: [10.10.0.3]}
  nodes:
  - {name: host-1, labels: {zone: a}, ips: [192.0.2.1]}
)");
  ASSERT_EQ(c.workloads.size(), 2u);
  const Workload* web = c.FindWorkload("shop/web");
  ASSERT_NE(web, nullptr);
  EXPECT_EQ(web->kind, "Workload");
  EXPECT_EQ(web->labels, (Labels{{"app", "web"}}));
  EXPECT_EQ(web->service_account, "web");
  EXPECT_EQ(web->ips.size(), 2u);
  ASSERT_EQ(web->named_ports.size(), 2u);
  EXPECT_EQ(web->named_ports[1].protocol, Protocol::kUDP);
  EXPECT_EQ(web->mode, Mode::kAudit);
  EXPECT_EQ(web->netns, "shop-web");
  EXPECT_EQ(web->host_interface, "veth-web");
  EXPECT_EQ(web->node, "host-1");
  const Workload* batch = c.FindWorkload("default/batch");
  ASSERT_NE(batch, nullptr);
  EXPECT_EQ(batch->service_account, "default");
  const Namespace* shop = c.FindNamespace("shop");
  ASSERT_NE(shop, nullptr);
  EXPECT_FALSE(shop->implicit);
  EXPECT_EQ(shop->mode, Mode::kEnforce);
  EXPECT_EQ(shop->labels.at("kubernetes.io/metadata.name"), "shop");
  EXPECT_TRUE(c.FindNamespace("default")->implicit);
  ASSERT_EQ(c.nodes.size(), 1u);
  EXPECT_EQ(c.nodes[0].ips[0].ToString(), "192.0.2.1");
}

}  // namespace
}  // namespace bulkhead::policy
