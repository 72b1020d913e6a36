// The in-memory policy model shared by the parser, the evaluator, the compiler and the CLI.
//
// Every Kubernetes and native Bulkhead kind is normalised into these few types by the
// loader (src/policy/loader.h), after API-server defaulting, so that the evaluator and the
// compiler see one shape. Nothing here touches files or the kernel.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "common/ip.h"

namespace bulkhead::policy {

using common::Cidr;
using common::IpAddr;

// Where an object or field came from. line/column are 1-based; 0 when unknown.
struct SourceRef {
  std::string file;
  int document = 0;  // 1-based index of the YAML document in the file (0 when unknown)
  int line = 0;
  int column = 0;
  std::string ToString() const;  // "file:line:column" (or fewer parts when unknown)
  bool operator==(const SourceRef&) const = default;
};

using Labels = std::map<std::string, std::string>;

enum class SelectorOperator { kIn, kNotIn, kExists, kDoesNotExist };

struct LabelRequirement {
  std::string key;
  SelectorOperator op = SelectorOperator::kIn;
  std::vector<std::string> values;
  bool Matches(const Labels& labels) const;
  bool operator==(const LabelRequirement&) const = default;
};

// metav1.LabelSelector. An empty selector matches everything.
struct LabelSelector {
  Labels match_labels;
  std::vector<LabelRequirement> match_expressions;

  bool Matches(const Labels& labels) const;
  bool IsEmpty() const { return match_labels.empty() && match_expressions.empty(); }
  std::string ToString() const;  // "app=web,tier in (a,b)" ; "{}" when empty
  bool operator==(const LabelSelector&) const = default;
};

// IP protocol numbers. Policy ports use TCP, UDP and SCTP; flows may also be ICMP/ICMPv6,
// which only rules without port restrictions allow.
enum class Protocol : uint8_t { kICMP = 1, kTCP = 6, kUDP = 17, kICMPv6 = 58, kSCTP = 132 };
const char* ProtocolName(Protocol p);  // "TCP", "UDP", "SCTP", "ICMP", "ICMPv6"
std::optional<Protocol> ParseProtocol(std::string_view name);  // case-insensitive
inline bool HasPorts(Protocol p) {
  return p == Protocol::kTCP || p == Protocol::kUDP || p == Protocol::kSCTP;
}

enum class Mode { kEnforce, kAudit, kLearn };
const char* ModeName(Mode m);  // "enforce", "audit", "learn"

// A container port with a name, from a pod template, a Pod or an Inventory workload.
struct NamedPort {
  std::string name;
  Protocol protocol = Protocol::kTCP;
  uint16_t port = 0;
  bool operator==(const NamedPort&) const = default;
};

// Selects processes inside a workload (native kinds). Modelled and evaluated when a flow
// names its process; not yet enforced by the datapath.
struct ProcessSelector {
  std::vector<std::string> names;  // executable names (comm), any of
  std::vector<std::string> paths;  // absolute executable paths, any of
  bool Matches(const std::string& name, const std::string& path) const;
  bool operator==(const ProcessSelector&) const = default;
};

struct Namespace {
  std::string name;
  Labels labels;  // always includes kubernetes.io/metadata.name=<name>
  std::optional<Mode> mode;
  bool implicit = false;  // created because a workload used it without a Namespace object
  SourceRef source;
  bool operator==(const Namespace&) const = default;
};

// One workload: a Pod, the pods of one controller, or a native Inventory workload.
struct Workload {
  std::string namespace_name;
  std::string name;
  std::string kind;  // "Pod", "Deployment", ..., "Workload" (Inventory)
  Labels labels;
  std::string service_account = "default";
  std::vector<IpAddr> ips;
  std::vector<NamedPort> named_ports;
  std::optional<Mode> mode;
  std::string netns;           // Inventory: netns name or path (datapath)
  std::string host_interface;  // Inventory: host-side veth (datapath)
  std::string node;
  SourceRef source;

  std::string Id() const { return namespace_name + "/" + name; }
  bool operator==(const Workload&) const = default;
};

// A cluster node (Inventory), selectable by AdminNetworkPolicy `nodes` peers.
struct Node {
  std::string name;
  Labels labels;
  std::vector<IpAddr> ips;
  SourceRef source;
  bool operator==(const Node&) const = default;
};

enum class Tier { kAdmin, kNamespace, kBaseline, kDefault };
const char* TierName(Tier t);  // "admin", "namespace", "baseline", "default"

enum class RuleAction { kAllow, kDeny, kPass };
const char* ActionName(RuleAction a);  // "Allow", "Deny", "Pass"

enum class Direction { kIngress, kEgress };
const char* DirectionName(Direction d);  // "ingress", "egress"

// One entry of a rule's port list.
struct PortMatch {
  enum class Kind {
    kAllPorts,  // every port of `protocol` (NetworkPolicy port with a protocol and no port)
    kRange,     // first..last of `protocol` (a single port has first == last)
    kNamed,     // a named port of the destination; `protocol` unset means the named
                // port's own protocol (AdminNetworkPolicy namedPort)
  };
  Kind kind = Kind::kAllPorts;
  std::optional<Protocol> protocol;
  uint16_t first = 0;
  uint16_t last = 0;
  std::string name;
  SourceRef source;
  std::string ToString() const;  // "TCP/80", "UDP/1000-2000", "TCP/http", "TCP/*"
  bool operator==(const PortMatch&) const = default;
};

// One peer of a rule. Exactly one of the kinds applies.
struct Peer {
  enum class Kind {
    kPods,     // workloads: namespace scope + pod selector
    kIpBlock,  // addresses outside the cluster: NetworkPolicy ipBlock, ANP networks
    kNodes,    // ANP nodes: node IPs by node labels
  };
  Kind kind = Kind::kPods;

  // kPods. Namespace scope: when `namespace_selector` is set it selects namespaces;
  // otherwise the peer is in `same_namespace` (NetworkPolicy podSelector-only peer).
  std::optional<LabelSelector> namespace_selector;
  std::string same_namespace;
  std::optional<LabelSelector> pod_selector;   // unset: every workload in scope
  std::optional<std::string> service_account;  // native kinds
  std::optional<ProcessSelector> process;      // native kinds

  // kIpBlock: addresses in any of `cidrs` and in none of `except`.
  std::vector<Cidr> cidrs;
  std::vector<Cidr> except;

  // kNodes
  LabelSelector node_selector;

  SourceRef source;
  bool operator==(const Peer&) const = default;
};

struct Rule {
  std::string name;  // ANP/BANP/native rule name; empty for NetworkPolicy
  RuleAction action = RuleAction::kAllow;
  // NetworkPolicy from/to absent or empty: every peer, in the cluster and outside it.
  bool all_peers = false;
  std::vector<Peer> peers;
  std::vector<PortMatch> ports;  // empty: every port of every protocol
  SourceRef source;
  bool operator==(const Rule&) const = default;
};

// Which workloads a policy applies to.
struct Subject {
  // Namespace scope: `namespace_name` for namespaced kinds, else `namespace_selector`
  // (unset: every namespace).
  std::string namespace_name;
  std::optional<LabelSelector> namespace_selector;
  LabelSelector pod_selector;  // empty: every workload in scope
  std::optional<ProcessSelector> process;
  bool operator==(const Subject&) const = default;
};

struct Policy {
  std::string kind;  // "NetworkPolicy", "AdminNetworkPolicy", "BaselineAdminNetworkPolicy",
                     // "BulkheadPolicy", "BulkheadClusterPolicy", "DefaultDeny"
  std::string namespace_name;  // empty for cluster-scoped kinds
  std::string name;
  Tier tier = Tier::kNamespace;
  int32_t priority = 0;  // admin tier: lower number evaluated first
  Subject subject;
  // Directions this policy isolates / applies to (NetworkPolicy policyTypes).
  bool applies_ingress = false;
  bool applies_egress = false;
  std::vector<Rule> ingress;
  std::vector<Rule> egress;
  Mode mode = Mode::kEnforce;  // audit: evaluated, would-deny reported, never denies
  std::string description;
  std::string owner;
  SourceRef source;

  std::string Id() const;  // "Kind ns/name" or "Kind name"
  const std::vector<Rule>& Rules(Direction d) const {
    return d == Direction::kIngress ? ingress : egress;
  }
  bool Applies(Direction d) const {
    return d == Direction::kIngress ? applies_ingress : applies_egress;
  }
  // Field by field, sources included (the compiler's incremental update compares versions).
  bool operator==(const Policy&) const = default;
};

// Everything a set of manifests describes, after defaulting and validation.
// A mode set centrally for one workload (native kind WorkloadMode, what `bulkhead mode set
// --workload` stores on the server): the workload itself may be declared anywhere (a Pod,
// an Inventory, a CNI registration on some node), or not exist yet.
struct WorkloadModeOverride {
  std::string namespace_name;
  std::string name;  // the workload's name
  Mode mode = Mode::kEnforce;
  SourceRef source;
  std::string Id() const { return namespace_name + "/" + name; }
  bool operator==(const WorkloadModeOverride&) const = default;
};

struct Cluster {
  std::vector<Namespace> namespaces;
  std::vector<Workload> workloads;
  std::vector<Node> nodes;
  std::vector<Policy> policies;
  // Sorted by Id(), unique. Already applied to `workloads` by the loader; whoever adds
  // workloads later (the agent's registered endpoints) calls ApplyWorkloadModes again.
  std::vector<WorkloadModeOverride> workload_modes;

  const Namespace* FindNamespace(const std::string& name) const;
  const Workload* FindWorkload(const std::string& id) const;  // "namespace/name"
  const Workload* FindWorkloadByIp(const IpAddr& ip) const;
};

// Sets the mode of every workload named by an override of `cluster` (an override wins over
// the workload's own annotation or Inventory mode: it is the operator's central decision).
void ApplyWorkloadModes(Cluster& cluster);

}  // namespace bulkhead::policy
