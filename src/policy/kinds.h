// Internal interface between the loader's dispatch, the per-kind decoders and the
// cross-object assembly step. Not part of the policy module's public API.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "policy/decode.h"
#include "policy/model.h"

namespace bulkhead::policy::internal {

// The annotation that sets a workload's, namespace's or policy's mode.
inline constexpr std::string_view kModeAnnotation = "bulkhead.io/mode";
inline constexpr std::string_view kNamespaceNameLabel = "kubernetes.io/metadata.name";

// An object identity (kind, namespace, name) seen in the input, to find duplicates.
struct ObjectKey {
  std::string kind;
  std::string namespace_name;
  std::string name;
  std::string object;  // display name, "Kind ns/name"
  std::string field;   // "metadata.name", or "spec.namespaces[2].name" inside an Inventory
  SourceRef where;     // of that field
};

struct NamespacePiece {
  Namespace ns;
  std::string object;
};

struct WorkloadPiece {
  Workload workload;
  std::string object;  // "Pod default/web-1", "Deployment shop/web", "Inventory lab"
  std::string field;   // "" or, for Inventory, "spec.workloads[2]"
  bool from_inventory = false;
};

struct NodePiece {
  Node node;
  std::string object;
  std::string field;
};

struct PolicyPiece {
  Policy policy;
  std::string object;
  SourceRef priority_where;     // admin tier: where spec.priority is
  bool priority_valid = false;  // admin tier: spec.priority was present and in range
  SourceRef name_where;         // where metadata.name is
};

struct WorkloadModePiece {
  WorkloadModeOverride override_;
  std::string object;
};

// Everything the decoders produced, in input order.
struct Collected {
  std::vector<ObjectKey> keys;
  std::vector<NamespacePiece> namespaces;
  std::vector<WorkloadPiece> workloads;
  std::vector<NodePiece> nodes;
  std::vector<PolicyPiece> policies;
  std::vector<WorkloadModePiece> workload_modes;
};

// What the dispatcher has read of an object before its kind decoder runs.
struct ObjectContext {
  Decoder* d = nullptr;
  Field root;
  std::string api_version;
  std::string kind;
  std::string name;            // metadata.name ("" when missing or invalid)
  std::string namespace_name;  // namespaced kinds: defaulted to "default"
  bool namespace_given = false;
  Labels labels;     // metadata.labels (validated)
  SourceRef source;  // the object's first line
  SourceRef name_where;
  std::string object;  // "Kind ns/name"
  Collected* out = nullptr;

  Field Metadata() const { return d->Get(root, "metadata"); }
  Field Spec() const { return d->Get(root, "spec"); }
  // The bulkhead.io/mode annotation of `metadata` (any map with an `annotations` field).
  std::optional<Mode> AnnotationMode(const Field& metadata, bool allow_learn) const;
};

// Kubernetes kinds (k8s_kinds.cc).
void DecodeNamespace(ObjectContext& ctx);
void DecodeNode(ObjectContext& ctx);
void DecodePod(ObjectContext& ctx);
void DecodeController(ObjectContext& ctx);  // Deployment, ..., CronJob, VirtualMachine

// NetworkPolicy and its native superset BulkheadPolicy (network_policy.cc).
void DecodeNetworkPolicy(ObjectContext& ctx);
void DecodeBulkheadPolicy(ObjectContext& ctx);

// AdminNetworkPolicy, BaselineAdminNetworkPolicy and BulkheadClusterPolicy
// (admin_policy.cc).
void DecodeAdminNetworkPolicy(ObjectContext& ctx);
void DecodeBaselineAdminNetworkPolicy(ObjectContext& ctx);
void DecodeBulkheadClusterPolicy(ObjectContext& ctx);

// Inventory and DefaultDeny (native_kinds.cc).
void DecodeInventory(ObjectContext& ctx);
void DecodeDefaultDeny(ObjectContext& ctx);
void DecodeWorkloadMode(ObjectContext& ctx);

// Shared by the workload decoders: named ports of a pod spec's containers.
std::vector<NamedPort> DecodeContainerPorts(Decoder& d, const Field& pod_spec);
// Shared by the native kinds: a process selector.
std::optional<ProcessSelector> DecodeProcessSelector(Decoder& d, const Field& f);

// Cross-object checks, defaulting and merging into the Cluster (assemble.cc).
Cluster Assemble(Collected collected, std::vector<Diagnostic>* diagnostics);

// A workload merged from objects with different labels (their label sets, display names).
struct LabelGap {
  size_t workload = 0;  // index in the cluster's workloads
  std::vector<Labels> label_sets;
  std::vector<std::string> objects;
};

// Assemble's work on input without policies, but for the label-gap diagnostics, which need
// the policies: what LoadPathsShared keeps while only policies change.
struct RestAssembly {
  Cluster cluster;  // no policies; namespaces implied by workloads included
  std::vector<Diagnostic> diagnostics;
  std::vector<LabelGap> gaps;
};
RestAssembly AssembleRest(Collected rest);
// Completes `rest` with `policies` (in input order) as Assemble would for input whose
// policies have no duplicate names or admin priorities: appends the namespaces the policies
// imply to *namespaces (a copy of rest.cluster.namespaces) and the label-gap diagnostics.
void AssemblePolicies(const RestAssembly& rest, const std::vector<const Policy*>& policies,
                      std::vector<Namespace>* namespaces, std::vector<Diagnostic>* diagnostics);

// The fields every native policy kind shares: spec.description, spec.owner and spec.mode
// (which must agree with the bulkhead.io/mode annotation when both are given).
void DecodeNativePolicyFields(Decoder& d, const Field& spec, std::optional<Mode> annotation_mode,
                              Policy& p);

}  // namespace bulkhead::policy::internal
