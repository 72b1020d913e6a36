// Table test of every class of input error: each must be an error naming the object, the
// field path and the line, and must leave the cluster empty.
#include <gtest/gtest.h>

#include <string>

#include "unit/policy/loader_test_util.h"

namespace bulkhead::policy {
namespace {

using testing::AllDiagnostics;
using testing::Load;

struct ErrorCase {
  std::string name;
  std::string yaml;
  std::string object;   // Diagnostic::object
  std::string field;    // Diagnostic::field
  int line;             // Diagnostic::where.line
  std::string message;  // contained in Diagnostic::message
};

std::ostream& operator<<(std::ostream& os, const ErrorCase& c) { return os << c.name; }

class LoaderErrors : public ::testing::TestWithParam<ErrorCase> {};

TEST_P(LoaderErrors, NameObjectFieldAndLine) {
  const ErrorCase& c = GetParam();
  LoadResult r = Load(c.yaml, "in.yaml");
  EXPECT_FALSE(r.ok()) << c.name;
  EXPECT_TRUE(r.cluster.namespaces.empty() && r.cluster.workloads.empty() &&
              r.cluster.policies.empty() && r.cluster.nodes.empty())
      << "nothing is applied in part";
  const Diagnostic* hit = testing::FindError(r, c.field, c.message);
  ASSERT_NE(hit, nullptr) << c.name << ": no error on field \"" << c.field << "\" containing \""
                          << c.message << "\"; got:\n"
                          << AllDiagnostics(r);
  EXPECT_EQ(hit->object, c.object) << hit->ToString();
  EXPECT_EQ(hit->where.line, c.line) << hit->ToString();
  EXPECT_GT(hit->where.column, 0) << hit->ToString();
  EXPECT_EQ(hit->where.file, "in.yaml");
  EXPECT_GE(hit->where.document, 1);
}

const char* kNp = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: np}\n";
const char* kAnp =
    "apiVersion: policy.networking.k8s.io/v1alpha1\nkind: AdminNetworkPolicy\n"
    "metadata: {name: anp}\n";
const char* kBanp =
    "apiVersion: policy.networking.k8s.io/v1alpha1\nkind: BaselineAdminNetworkPolicy\n"
    "metadata: {name: default}\n";
const char* kNative = "apiVersion: bulkhead.io/v1alpha1\n";

std::string Np(const std::string& spec) { return kNp + spec; }
std::string Anp(const std::string& spec) { return kAnp + spec; }

const char* kNpObj = "NetworkPolicy default/np";
const char* kAnpObj = "AdminNetworkPolicy anp";
const char* kBanpObj = "BaselineAdminNetworkPolicy default";

INSTANTIATE_TEST_SUITE_P(
    Syntax, LoaderErrors,
    ::testing::Values(
        ErrorCase{"yaml_syntax", "a: 1\n---\nb: [1, 2\nc: d\n", "document 2", "", 4,
                  "YAML syntax error"},
        ErrorCase{"duplicate_key", "apiVersion: v1\nkind: Namespace\nkind: Pod\n", "document 1", "",
                  3, "duplicate key \"kind\""},
        ErrorCase{"not_a_map", "- a\n- b\n", "document 1", "", 1, "not a list"},
        ErrorCase{"missing_kind", "apiVersion: v1\nmetadata: {name: x}\n", "document 1", "kind", 1,
                  "is required"},
        ErrorCase{"missing_api_version", "kind: Namespace\nmetadata: {name: x}\n", "document 1",
                  "apiVersion", 1, "is required"},
        ErrorCase{"kind_not_string", "apiVersion: v1\nkind: 3\n", "document 1", "kind", 2,
                  "must be a string, not a number"},
        ErrorCase{"bad_api_version", "apiVersion: a/b/c\nkind: Pod\nmetadata: {name: p}\n", "Pod p",
                  "apiVersion", 1, "invalid apiVersion"},
        ErrorCase{"unsupported_version",
                  "apiVersion: networking.k8s.io/v2\nkind: NetworkPolicy\nmetadata: {name: np}\n",
                  "NetworkPolicy default/np", "apiVersion", 1, "networking.k8s.io/v1"},
        ErrorCase{"removed_extensions_np",
                  "apiVersion: extensions/v1beta1\nkind: NetworkPolicy\nmetadata: {name: np}\n",
                  "NetworkPolicy default/np", "apiVersion", 1, "not supported"},
        ErrorCase{"unknown_native_kind",
                  "apiVersion: bulkhead.io/v1alpha1\nkind: BulkheadPolicie\nmetadata: {name: x}\n",
                  "BulkheadPolicie x", "kind", 2, "unknown kind"},
        ErrorCase{"missing_metadata", "apiVersion: v1\nkind: Namespace\n", "document 1 (Namespace)",
                  "metadata", 1, "is required"},
        ErrorCase{"missing_name", "apiVersion: v1\nkind: Pod\nmetadata:\n  namespace: x\n",
                  "document 1 (Pod)", "metadata.name", 3, "is required"},
        ErrorCase{"generate_name", "apiVersion: v1\nkind: Pod\nmetadata:\n  generateName: web-\n",
                  "document 1 (Pod)", "metadata.name", 3, "generateName"},
        ErrorCase{"wrong_type_spec", Np("spec: allow-all\n"), kNpObj, "spec", 4,
                  "must be a map, not a string"},
        ErrorCase{"wrong_type_labels",
                  "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: x\n  labels: [a]\n",
                  "Namespace x", "metadata.labels", 5, "must be a map, not a list"},
        ErrorCase{"number_label_value",
                  "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: x\n  labels:\n"
                  "    version: 1.0\n",
                  "Namespace x", "metadata.labels[version]", 6, "quote it"},
        ErrorCase{"yaml11_bool_label_value",
                  "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: x\n  labels:\n"
                  "    enabled: on\n",
                  "Namespace x", "metadata.labels[enabled]", 6, "YAML 1.1"},
        ErrorCase{"list_item_missing_kind",
                  "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  metadata: {name: a}\n",
                  "document 1 items[0]", "kind", 4, "is required"},
        ErrorCase{"list_items_not_a_list", "apiVersion: v1\nkind: PodList\nitems: {a: b}\n",
                  "document 1", "items", 3, "must be a list"}));

INSTANTIATE_TEST_SUITE_P(
    Metadata, LoaderErrors,
    ::testing::Values(
        ErrorCase{"namespace_name_syntax",
                  "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: Shop\n", "Namespace Shop",
                  "metadata.name", 4, "DNS-1123 label"},
        ErrorCase{"object_namespace_syntax",
                  "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  namespace: my_ns\n",
                  "Pod my_ns/p", "metadata.namespace", 5, "DNS-1123 label"},
        ErrorCase{"name_with_slash", "apiVersion: v1\nkind: Pod\nmetadata:\n  name: a/b\n",
                  "Pod default/a/b", "metadata.name", 4, "invalid name"},
        ErrorCase{"native_name_syntax",
                  "apiVersion: bulkhead.io/v1alpha1\nkind: DefaultDeny\nmetadata:\n  name: Zero\n",
                  "DefaultDeny Zero", "metadata.name", 4, "DNS-1123 subdomain"},
        ErrorCase{"label_key_syntax",
                  "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  labels:\n    a/b/c: x\n",
                  "Pod default/p", "metadata.labels[a/b/c]", 6, "invalid label key"},
        ErrorCase{"label_value_syntax",
                  "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  labels:\n    app: -web\n",
                  "Pod default/p", "metadata.labels[app]", 6, "invalid label value"},
        ErrorCase{"annotation_key_syntax",
                  "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  annotations:\n"
                  "    \"bad key\": x\n",
                  "Pod default/p", "metadata.annotations[bad key]", 6, "invalid annotation key"},
        ErrorCase{"mode_annotation_value",
                  "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  annotations:\n"
                  "    bulkhead.io/mode: strict\n",
                  "Pod default/p", "metadata.annotations[bulkhead.io/mode]", 6, "unknown mode"},
        ErrorCase{"learn_mode_on_policy",
                  "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  name: np\n"
                  "  annotations: {bulkhead.io/mode: learn}\nspec: {podSelector: {}}\n",
                  kNpObj, "metadata.annotations[bulkhead.io/mode]", 5, "enforce or audit"},
        ErrorCase{"unknown_metadata_field_in_policy",
                  "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  name: np\n"
                  "  lables: {a: b}\n",
                  kNpObj, "metadata.lables", 5, "did you mean \"labels\""},
        ErrorCase{"duplicate_namespace",
                  "apiVersion: v1\nkind: Namespace\nmetadata: {name: blue}\n---\n"
                  "apiVersion: v1\nkind: Namespace\nmetadata: {name: blue}\n",
                  "Namespace blue", "metadata.name", 7, "duplicate Namespace blue"},
        ErrorCase{"duplicate_deployment",
                  "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\n---\n"
                  "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\n",
                  "Deployment default/web", "metadata.name", 7, "duplicate Deployment"},
        ErrorCase{"two_owner_controllers",
                  "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  ownerReferences:\n"
                  "  - {kind: ReplicaSet, name: a, controller: true}\n"
                  "  - {kind: ReplicaSet, name: b, controller: true}\n",
                  "Pod default/p", "metadata.ownerReferences[1]", 7, "only one"}));

INSTANTIATE_TEST_SUITE_P(
    NetworkPolicy, LoaderErrors,
    ::testing::Values(
        ErrorCase{"unknown_spec_field", Np("spec:\n  podSelecter: {}\n"), kNpObj,
                  "spec.podSelecter", 5, "did you mean \"podSelector\""},
        ErrorCase{"selector_operator",
                  Np("spec:\n  podSelector:\n    matchExpressions:\n"
                     "    - {key: app, operator: in, values: [a]}\n"),
                  kNpObj, "spec.podSelector.matchExpressions[0].operator", 7,
                  "unknown operator \"in\""},
        ErrorCase{"selector_in_without_values",
                  Np("spec:\n  podSelector:\n    matchExpressions:\n"
                     "    - {key: app, operator: In}\n"),
                  kNpObj, "spec.podSelector.matchExpressions[0].values", 7, "must be non-empty"},
        ErrorCase{"selector_exists_with_values",
                  Np("spec:\n  podSelector:\n    matchExpressions:\n"
                     "    - {key: app, operator: Exists, values: [x]}\n"),
                  kNpObj, "spec.podSelector.matchExpressions[0].values", 7, "must be empty"},
        ErrorCase{"selector_value_syntax",
                  Np("spec:\n  podSelector:\n    matchExpressions:\n"
                     "    - {key: app, operator: In, values: [\"a b\"]}\n"),
                  kNpObj, "spec.podSelector.matchExpressions[0].values[0]", 7,
                  "invalid label value"},
        ErrorCase{"selector_unknown_field", Np("spec:\n  podSelector:\n    matchLabel: {a: b}\n"),
                  kNpObj, "spec.podSelector.matchLabel", 6, "did you mean \"matchLabels\""},
        ErrorCase{"port_zero", Np("spec:\n  ingress:\n  - ports:\n    - port: 0\n"), kNpObj,
                  "spec.ingress[0].ports[0].port", 7, "out of range"},
        ErrorCase{"port_too_big", Np("spec:\n  ingress:\n  - ports:\n    - port: 65536\n"), kNpObj,
                  "spec.ingress[0].ports[0].port", 7, "out of range"},
        ErrorCase{"end_port_below_port",
                  Np("spec:\n  egress:\n  - ports:\n    - port: 10\n      endPort: 1\n"), kNpObj,
                  "spec.egress[0].ports[0].endPort", 8, "greater than or equal"},
        ErrorCase{"end_port_without_port", Np("spec:\n  ingress:\n  - ports:\n    - endPort: 10\n"),
                  kNpObj, "spec.ingress[0].ports[0].endPort", 7, "port is not specified"},
        ErrorCase{"end_port_with_named_port",
                  Np("spec:\n  ingress:\n  - ports:\n    - port: http\n      endPort: 90\n"),
                  kNpObj, "spec.ingress[0].ports[0].endPort", 8, "named port"},
        ErrorCase{"named_port_all_digits",
                  Np("spec:\n  ingress:\n  - ports:\n    - port: \"80\"\n"), kNpObj,
                  "spec.ingress[0].ports[0].port", 7, "at least one letter"},
        ErrorCase{"named_port_upper_case", Np("spec:\n  ingress:\n  - ports:\n    - port: HTTP\n"),
                  kNpObj, "spec.ingress[0].ports[0].port", 7, "IANA_SVC_NAME"},
        ErrorCase{"named_port_too_long",
                  Np("spec:\n  ingress:\n  - ports:\n    - port: abcdefghijklmnop\n"), kNpObj,
                  "spec.ingress[0].ports[0].port", 7, "15 characters"},
        ErrorCase{"protocol_lower_case", Np("spec:\n  ingress:\n  - ports:\n    - protocol: tcp\n"),
                  kNpObj, "spec.ingress[0].ports[0].protocol", 7, "unsupported protocol"},
        ErrorCase{"protocol_icmp", Np("spec:\n  ingress:\n  - ports:\n    - protocol: ICMP\n"),
                  kNpObj, "spec.ingress[0].ports[0].protocol", 7, "unsupported protocol"},
        ErrorCase{"cidr_syntax",
                  Np("spec:\n  egress:\n  - to:\n    - ipBlock: {cidr: 10.0.0.0/33}\n"), kNpObj,
                  "spec.egress[0].to[0].ipBlock.cidr", 7, "invalid CIDR"},
        ErrorCase{"cidr_bare_address",
                  Np("spec:\n  egress:\n  - to:\n    - ipBlock: {cidr: 10.0.0.1}\n"), kNpObj,
                  "spec.egress[0].to[0].ipBlock.cidr", 7, "invalid CIDR"},
        ErrorCase{"cidr_missing", Np("spec:\n  egress:\n  - to:\n    - ipBlock: {}\n"), kNpObj,
                  "spec.egress[0].to[0].ipBlock.cidr", 7, "is required"},
        ErrorCase{"except_outside_cidr",
                  Np("spec:\n  egress:\n  - to:\n    - ipBlock:\n        cidr: 10.0.0.0/8\n"
                     "        except: [11.0.0.0/16]\n"),
                  kNpObj, "spec.egress[0].to[0].ipBlock.except[0]", 9, "strict subset"},
        ErrorCase{"except_equal_to_cidr",
                  Np("spec:\n  egress:\n  - to:\n    - ipBlock:\n        cidr: 10.0.0.0/8\n"
                     "        except: [10.0.0.0/8]\n"),
                  kNpObj, "spec.egress[0].to[0].ipBlock.except[0]", 9, "strict subset"},
        ErrorCase{"except_other_family",
                  Np("spec:\n  egress:\n  - to:\n    - ipBlock:\n        cidr: 10.0.0.0/8\n"
                     "        except: [\"fd00::/8\"]\n"),
                  kNpObj, "spec.egress[0].to[0].ipBlock.except[0]", 9, "strict subset"},
        ErrorCase{"ip_block_with_selector",
                  Np("spec:\n  ingress:\n  - from:\n    - podSelector: {}\n"
                     "      ipBlock: {cidr: 10.0.0.0/8}\n"),
                  kNpObj, "spec.ingress[0].from[0].ipBlock", 8, "may not be combined"},
        ErrorCase{"empty_peer", Np("spec:\n  ingress:\n  - from:\n    - {}\n"), kNpObj,
                  "spec.ingress[0].from[0]", 7, "must specify a peer"},
        ErrorCase{"policy_type_unknown", Np("spec:\n  policyTypes: [Ingress, Egres]\n"), kNpObj,
                  "spec.policyTypes[1]", 5, "unknown policy type"},
        ErrorCase{"policy_type_duplicate", Np("spec:\n  policyTypes: [Egress, Egress]\n"), kNpObj,
                  "spec.policyTypes[1]", 5, "duplicate"},
        ErrorCase{"peer_field_native_only",
                  Np("spec:\n  ingress:\n  - from:\n    - serviceAccount: web\n"), kNpObj,
                  "spec.ingress[0].from[0].serviceAccount", 7, "unknown field"},
        ErrorCase{"duplicate_np", Np("spec: {}\n---\n") + Np("spec: {}\n"), kNpObj, "metadata.name",
                  8, "duplicate NetworkPolicy default/np"}));

INSTANTIATE_TEST_SUITE_P(
    AdminNetworkPolicy, LoaderErrors,
    ::testing::Values(
        ErrorCase{"priority_missing", Anp("spec:\n  subject: {namespaces: {}}\n"), kAnpObj,
                  "spec.priority", 4, "is required"},
        ErrorCase{"priority_too_big", Anp("spec:\n  priority: 1001\n  subject: {namespaces: {}}\n"),
                  kAnpObj, "spec.priority", 5, "out of range 0-1000"},
        ErrorCase{"priority_negative", Anp("spec:\n  priority: -1\n  subject: {namespaces: {}}\n"),
                  kAnpObj, "spec.priority", 5, "out of range"},
        ErrorCase{"priority_quoted", Anp("spec:\n  priority: \"5\"\n  subject: {namespaces: {}}\n"),
                  kAnpObj, "spec.priority", 5, "must be an integer, not a string"},
        ErrorCase{"priority_duplicate",
                  Anp("spec:\n  priority: 5\n  subject: {namespaces: {}}\n---\n") +
                      "apiVersion: policy.networking.k8s.io/v1alpha1\nkind: AdminNetworkPolicy\n"
                      "metadata: {name: other}\nspec:\n  priority: 5\n"
                      "  subject: {namespaces: {}}\n",
                  "AdminNetworkPolicy other", "spec.priority", 12, "also used by"},
        ErrorCase{"priority_shared_with_native",
                  Anp("spec:\n  priority: 5\n  subject: {namespaces: {}}\n---\n") +
                      "apiVersion: bulkhead.io/v1alpha1\nkind: BulkheadClusterPolicy\n"
                      "metadata: {name: other}\nspec:\n  priority: 5\n"
                      "  subject: {namespaces: {}}\n",
                  "BulkheadClusterPolicy other", "spec.priority", 12, "also used by"},
        ErrorCase{"subject_missing", Anp("spec:\n  priority: 1\n"), kAnpObj, "spec.subject", 4,
                  "is required"},
        ErrorCase{"subject_empty", Anp("spec:\n  priority: 1\n  subject: {}\n"), kAnpObj,
                  "spec.subject", 6, "none is set"},
        ErrorCase{"subject_both",
                  Anp("spec:\n  priority: 1\n  subject:\n    namespaces: {}\n"
                      "    pods: {namespaceSelector: {}, podSelector: {}}\n"),
                  kAnpObj, "spec.subject", 6, "namespaces and pods are set"},
        ErrorCase{"rule_without_action",
                  Anp("spec:\n  priority: 1\n  subject: {namespaces: {}}\n  ingress:\n"
                      "  - from: [{namespaces: {}}]\n"),
                  kAnpObj, "spec.ingress[0].action", 8, "is required"},
        ErrorCase{"rule_unknown_action",
                  Anp("spec:\n  priority: 1\n  subject: {namespaces: {}}\n  ingress:\n"
                      "  - action: Accept\n    from: [{namespaces: {}}]\n"),
                  kAnpObj, "spec.ingress[0].action", 8, "Allow, Deny or Pass"},
        ErrorCase{"rule_action_lower_case",
                  Anp("spec:\n  priority: 1\n  subject: {namespaces: {}}\n  egress:\n"
                      "  - action: allow\n    to: [{namespaces: {}}]\n"),
                  kAnpObj, "spec.egress[0].action", 8, "unknown action"},
        ErrorCase{"rule_without_peers",
                  Anp("spec:\n  priority: 1\n  subject: {namespaces: {}}\n  egress:\n"
                      "  - action: Allow\n"),
                  kAnpObj, "spec.egress[0].to", 8, "is required"},
        ErrorCase{"rule_empty_peers",
                  Anp("spec:\n  priority: 1\n  subject: {namespaces: {}}\n  egress:\n"
                      "  - action: Allow\n    to: []\n"),
                  kAnpObj, "spec.egress[0].to", 9, "at least one peer"},
        ErrorCase{
            "peer_two_fields",
            Anp("spec:\n  priority: 1\n  subject: {namespaces: {}}\n  egress:\n"
                "  - action: Allow\n    to:\n    - {namespaces: {}, networks: [10.0.0.0/8]}\n"),
            kAnpObj, "spec.egress[0].to[0]", 10, "namespaces and networks are set"},
        ErrorCase{"ingress_peer_networks",
                  Anp("spec:\n  priority: 1\n  subject: {namespaces: {}}\n  ingress:\n"
                      "  - action: Allow\n    from:\n    - networks: [10.0.0.0/8]\n"),
                  kAnpObj, "spec.ingress[0].from[0].networks", 10, "unknown field"},
        ErrorCase{"networks_empty",
                  Anp("spec:\n  priority: 1\n  subject: {namespaces: {}}\n  egress:\n"
                      "  - action: Allow\n    to:\n    - networks: []\n"),
                  kAnpObj, "spec.egress[0].to[0].networks", 10, "at least one CIDR"},
        ErrorCase{"networks_invalid",
                  Anp("spec:\n  priority: 1\n  subject: {namespaces: {}}\n  egress:\n"
                      "  - action: Allow\n    to:\n    - networks: [\"zc00::/8\"]\n"),
                  kAnpObj, "spec.egress[0].to[0].networks[0]", 10, "invalid CIDR"},
        ErrorCase{"port_two_fields",
                  Anp("spec:\n  priority: 1\n  subject: {namespaces: {}}\n  egress:\n"
                      "  - action: Allow\n    to: [{namespaces: {}}]\n    ports:\n"
                      "    - {portNumber: {port: 80}, namedPort: http}\n"),
                  kAnpObj, "spec.egress[0].ports[0]", 11, "portNumber and namedPort are set"},
        ErrorCase{"port_none",
                  Anp("spec:\n  priority: 1\n  subject: {namespaces: {}}\n  egress:\n"
                      "  - action: Allow\n    to: [{namespaces: {}}]\n    ports:\n    - {}\n"),
                  kAnpObj, "spec.egress[0].ports[0]", 11, "none is set"},
        ErrorCase{"port_range_reversed",
                  Anp("spec:\n  priority: 1\n  subject: {namespaces: {}}\n  egress:\n"
                      "  - action: Allow\n    to: [{namespaces: {}}]\n    ports:\n"
                      "    - portRange: {start: 10, end: 1}\n"),
                  kAnpObj, "spec.egress[0].ports[0].portRange.end", 11, "greater than start"},
        ErrorCase{"port_number_missing_port",
                  Anp("spec:\n  priority: 1\n  subject: {namespaces: {}}\n  egress:\n"
                      "  - action: Allow\n    to: [{namespaces: {}}]\n    ports:\n"
                      "    - portNumber: {protocol: UDP}\n"),
                  kAnpObj, "spec.egress[0].ports[0].portNumber.port", 11, "is required"},
        ErrorCase{"named_port_syntax",
                  Anp("spec:\n  priority: 1\n  subject: {namespaces: {}}\n  egress:\n"
                      "  - action: Allow\n    to: [{namespaces: {}}]\n    ports:\n"
                      "    - namedPort: my_port\n"),
                  kAnpObj, "spec.egress[0].ports[0].namedPort", 11, "IANA_SVC_NAME"},
        ErrorCase{"too_many_rules",
                  [] {
                    std::string y =
                        Anp("spec:\n  priority: 1\n  subject: {namespaces: {}}\n"
                            "  ingress:\n");
                    for (int i = 0; i < 101; ++i)
                      y += "  - {action: Allow, from: [{namespaces: {}}]}\n";
                    return y;
                  }(),
                  kAnpObj, "spec.ingress", 7, "at most 100"},
        ErrorCase{"banp_pass",
                  std::string(kBanp) + "spec:\n  subject: {namespaces: {}}\n  ingress:\n"
                                       "  - action: Pass\n    from: [{namespaces: {}}]\n",
                  kBanpObj, "spec.ingress[0].action", 7, "Allow or Deny"},
        ErrorCase{"banp_name",
                  "apiVersion: policy.networking.k8s.io/v1alpha1\n"
                  "kind: BaselineAdminNetworkPolicy\nmetadata:\n  name: baseline\n"
                  "spec: {subject: {namespaces: {}}}\n",
                  "BaselineAdminNetworkPolicy baseline", "metadata.name", 4, "\"default\""},
        ErrorCase{"banp_two",
                  std::string(kBanp) + "spec: {subject: {namespaces: {}}}\n---\n" + kBanp +
                      "spec: {subject: {namespaces: {}}}\n",
                  kBanpObj, "metadata.name", 8, "at most one"},
        ErrorCase{"banp_priority",
                  std::string(kBanp) + "spec:\n  priority: 3\n  subject: {namespaces: {}}\n",
                  kBanpObj, "spec.priority", 5, "unknown field"}));

INSTANTIATE_TEST_SUITE_P(
    Native, LoaderErrors,
    ::testing::Values(
        ErrorCase{"inventory_unknown_field",
                  std::string(kNative) + "kind: Inventory\nmetadata: {name: lab}\nspec:\n"
                                         "  workloads:\n  - name: web\n    colour: red\n",
                  "Inventory lab", "spec.workloads[0].colour", 7, "unknown field"},
        ErrorCase{"inventory_bad_ip",
                  std::string(kNative) + "kind: Inventory\nmetadata: {name: lab}\nspec:\n"
                                         "  workloads:\n  - name: web\n    ips: [10.0.0.300]\n",
                  "Inventory lab", "spec.workloads[0].ips[0]", 7, "invalid IP address"},
        ErrorCase{"inventory_duplicate_ip_across_workloads",
                  std::string(kNative) +
                      "kind: Inventory\nmetadata: {name: lab}\nspec:\n  workloads:\n"
                      "  - {name: a, ips: [10.0.0.1]}\n  - {name: b, ips: [10.0.0.1]}\n",
                  "Inventory lab", "spec.workloads[1].ips", 7, "also used by workload default/a"},
        ErrorCase{"inventory_duplicate_workload",
                  std::string(kNative) +
                      "kind: Inventory\nmetadata: {name: lab}\nspec:\n  workloads:\n"
                      "  - {name: a}\n  - {name: a}\n",
                  "Inventory lab", "spec.workloads[1].name", 7, "already declared"},
        ErrorCase{"inventory_namespace_twice",
                  "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n---\n" +
                      std::string(kNative) +
                      "kind: Inventory\nmetadata: {name: lab}\nspec:\n  namespaces:\n"
                      "  - name: shop\n",
                  "Inventory lab", "spec.namespaces[0].name", 10, "duplicate Namespace shop"},
        ErrorCase{"inventory_port_without_name",
                  std::string(kNative) + "kind: Inventory\nmetadata: {name: lab}\nspec:\n"
                                         "  workloads:\n  - name: web\n    ports:\n"
                                         "    - {port: 80}\n",
                  "Inventory lab", "spec.workloads[0].ports[0].name", 8, "is required"},
        ErrorCase{"inventory_bad_interface",
                  std::string(kNative) + "kind: Inventory\nmetadata: {name: lab}\nspec:\n"
                                         "  workloads:\n  - name: web\n"
                                         "    hostInterface: a-very-long-interface\n",
                  "Inventory lab", "spec.workloads[0].hostInterface", 7, "1 to 15 characters"},
        ErrorCase{"policy_pass_action",
                  std::string(kNative) + "kind: BulkheadPolicy\nmetadata: {name: p}\nspec:\n"
                                         "  ingress:\n  - action: Pass\n",
                  "BulkheadPolicy default/p", "spec.ingress[0].action", 6, "Allow or Deny"},
        ErrorCase{"policy_duplicate_rule_name",
                  std::string(kNative) + "kind: BulkheadPolicy\nmetadata: {name: p}\nspec:\n"
                                         "  ingress:\n  - name: a\n  - name: a\n",
                  "BulkheadPolicy default/p", "spec.ingress[1].name", 7, "duplicate rule name"},
        ErrorCase{"policy_relative_process_path",
                  std::string(kNative) + "kind: BulkheadPolicy\nmetadata: {name: p}\nspec:\n"
                                         "  process: {paths: [bin/sh]}\n",
                  "BulkheadPolicy default/p", "spec.process.paths[0]", 5, "must be absolute"},
        ErrorCase{"policy_empty_process",
                  std::string(kNative) + "kind: BulkheadPolicy\nmetadata: {name: p}\nspec:\n"
                                         "  process: {}\n",
                  "BulkheadPolicy default/p", "spec.process", 5, "at least one"},
        ErrorCase{"policy_long_process_name",
                  std::string(kNative) + "kind: BulkheadPolicy\nmetadata: {name: p}\nspec:\n"
                                         "  process: {names: [a-very-long-command]}\n",
                  "BulkheadPolicy default/p", "spec.process.names[0]", 5, "15 characters"},
        ErrorCase{"policy_mode_learn",
                  std::string(kNative) + "kind: BulkheadPolicy\nmetadata: {name: p}\nspec:\n"
                                         "  mode: learn\n",
                  "BulkheadPolicy default/p", "spec.mode", 5, "enforce or audit"},
        ErrorCase{"policy_mode_contradicts_annotation",
                  std::string(kNative) +
                      "kind: BulkheadPolicy\nmetadata:\n  name: p\n"
                      "  annotations: {bulkhead.io/mode: audit}\nspec:\n  mode: enforce\n",
                  "BulkheadPolicy default/p", "spec.mode", 7, "contradicts"},
        ErrorCase{"policy_peer_sa_syntax",
                  std::string(kNative) + "kind: BulkheadPolicy\nmetadata: {name: p}\nspec:\n"
                                         "  ingress:\n  - from:\n    - serviceAccount: Web\n",
                  "BulkheadPolicy default/p", "spec.ingress[0].from[0].serviceAccount", 7,
                  "invalid service account"},
        ErrorCase{"policy_unknown_top_level_field",
                  std::string(kNative) + "kind: BulkheadPolicy\nmetadata: {name: p}\nstatus: {}\n",
                  "BulkheadPolicy default/p", "status", 4, "unknown field"},
        ErrorCase{"cluster_policy_bad_tier",
                  std::string(kNative) + "kind: BulkheadClusterPolicy\nmetadata: {name: c}\n"
                                         "spec:\n  tier: namespace\n  priority: 1\n"
                                         "  subject: {namespaces: {}}\n",
                  "BulkheadClusterPolicy c", "spec.tier", 5, "admin or baseline"},
        ErrorCase{"cluster_policy_baseline_priority",
                  std::string(kNative) + "kind: BulkheadClusterPolicy\nmetadata: {name: c}\n"
                                         "spec:\n  tier: baseline\n  priority: 1\n"
                                         "  subject: {namespaces: {}}\n",
                  "BulkheadClusterPolicy c", "spec.priority", 6, "no priority"},
        ErrorCase{"default_deny_namespace_selector_in_namespace",
                  std::string(kNative) + "kind: DefaultDeny\nmetadata: {name: d, namespace: x}\n"
                                         "spec:\n  namespaceSelector: {}\n",
                  "DefaultDeny x/d", "spec.namespaceSelector", 5, "that namespace only"},
        ErrorCase{"default_deny_policy_type",
                  std::string(kNative) + "kind: DefaultDeny\nmetadata: {name: d}\n"
                                         "spec:\n  policyTypes: [ingress]\n",
                  "DefaultDeny d", "spec.policyTypes[0]", 5, "unknown policy type"}));

TEST(LoaderErrorsAll, ReportsEveryErrorOfEveryDocumentInOneRun) {
  LoadResult r = Load(std::string(kNp) +
                      "spec:\n  ingress:\n  - ports: [{port: 0}, {port: 1, endPort: 0}]\n---\n" +
                      kAnp + "spec: {priority: 2000, subject: {}}\n---\n" +
                      "apiVersion: v1\nkind: Namespace\nmetadata: {name: Bad}\n");
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(testing::Count(r, Diagnostic::Severity::kError), 5) << AllDiagnostics(r);
  std::set<int> documents;
  for (const Diagnostic& d : r.diagnostics) documents.insert(d.where.document);
  EXPECT_EQ(documents, (std::set<int>{1, 2, 3}));
}

TEST(LoaderErrorsAll, DiagnosticTextNamesFileLineDocumentObjectAndField) {
  LoadResult r =
      Load(std::string(kNp) + "spec:\n  ingress:\n  - ports:\n    - port: 0\n", "dir/np.yaml");
  ASSERT_EQ(r.diagnostics.size(), 1u) << AllDiagnostics(r);
  EXPECT_EQ(r.diagnostics[0].ToString(),
            "dir/np.yaml:7:13: error: NetworkPolicy default/np (document 1): "
            "spec.ingress[0].ports[0].port: port 0 is out of range 1-65535");
}

}  // namespace
}  // namespace bulkhead::policy
