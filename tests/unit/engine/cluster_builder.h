// Test helper: builds policy::Cluster values in code, readably, for evaluator and
// connectivity tests (the same shapes the loader produces after defaulting).
#pragma once

#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "engine/evaluator.h"
#include "policy/model.h"

namespace bulkhead::engine::testing {

using policy::Cidr;
using policy::Cluster;
using policy::IpAddr;
using policy::LabelRequirement;
using policy::Labels;
using policy::LabelSelector;
using policy::Mode;
using policy::NamedPort;
using policy::Peer;
using policy::Policy;
using policy::PortMatch;
using policy::Protocol;
using policy::Rule;
using policy::RuleAction;
using policy::SelectorOperator;
using policy::Tier;

inline IpAddr Ip(const std::string& s) { return *IpAddr::Parse(s); }
inline Cidr Net(const std::string& s) { return *Cidr::Parse(s); }

// Selectors.
inline LabelSelector Sel(Labels match_labels = {}) { return LabelSelector{match_labels, {}}; }
inline LabelSelector Expr(std::string key, SelectorOperator op,
                          std::vector<std::string> values = {}) {
  LabelSelector s;
  s.match_expressions.push_back(LabelRequirement{std::move(key), op, std::move(values)});
  return s;
}

// Peers.
// NetworkPolicy podSelector-only peer: workloads of `ns` (the policy's namespace).
inline Peer PodPeer(const std::string& ns, LabelSelector pods) {
  Peer p;
  p.kind = Peer::Kind::kPods;
  p.same_namespace = ns;
  p.pod_selector = std::move(pods);
  return p;
}
// namespaceSelector (and optionally podSelector in the same peer: both must match).
inline Peer NsPeer(LabelSelector namespaces, std::optional<LabelSelector> pods = std::nullopt) {
  Peer p;
  p.kind = Peer::Kind::kPods;
  p.namespace_selector = std::move(namespaces);
  p.pod_selector = std::move(pods);
  return p;
}
inline Peer IpBlock(const std::string& cidr, std::vector<std::string> except = {}) {
  Peer p;
  p.kind = Peer::Kind::kIpBlock;
  p.cidrs.push_back(Net(cidr));
  for (const auto& e : except) p.except.push_back(Net(e));
  return p;
}
inline Peer Networks(std::vector<std::string> cidrs) {
  Peer p;
  p.kind = Peer::Kind::kIpBlock;
  for (const auto& c : cidrs) p.cidrs.push_back(Net(c));
  return p;
}
inline Peer NodesPeer(LabelSelector nodes) {
  Peer p;
  p.kind = Peer::Kind::kNodes;
  p.node_selector = std::move(nodes);
  return p;
}

// Ports.
inline PortMatch Port(Protocol proto, uint16_t port) {
  PortMatch m;
  m.kind = PortMatch::Kind::kRange;
  m.protocol = proto;
  m.first = m.last = port;
  return m;
}
inline PortMatch Tcp(uint16_t port) { return Port(Protocol::kTCP, port); }
inline PortMatch Udp(uint16_t port) { return Port(Protocol::kUDP, port); }
inline PortMatch Sctp(uint16_t port) { return Port(Protocol::kSCTP, port); }
inline PortMatch Range(Protocol proto, uint16_t first, uint16_t last) {
  PortMatch m = Port(proto, first);
  m.last = last;
  return m;
}
inline PortMatch AllPortsOf(Protocol proto) {
  PortMatch m;
  m.kind = PortMatch::Kind::kAllPorts;
  m.protocol = proto;
  return m;
}
// NetworkPolicy named port (protocol defaulted to TCP by the loader); AdminNetworkPolicy
// namedPort has no protocol.
inline PortMatch Named(std::string name, std::optional<Protocol> proto = Protocol::kTCP) {
  PortMatch m;
  m.kind = PortMatch::Kind::kNamed;
  m.protocol = proto;
  m.name = std::move(name);
  return m;
}

// Rules.
inline Rule RuleOf(RuleAction action, std::vector<Peer> peers, std::vector<PortMatch> ports = {},
                   std::string name = {}) {
  Rule r;
  r.name = std::move(name);
  r.action = action;
  r.peers = std::move(peers);
  r.ports = std::move(ports);
  return r;
}
inline Rule Allow(std::vector<Peer> peers, std::vector<PortMatch> ports = {}) {
  return RuleOf(RuleAction::kAllow, std::move(peers), std::move(ports));
}
// NetworkPolicy rule with from/to absent: every peer.
inline Rule AllowAll(std::vector<PortMatch> ports = {}) {
  Rule r = Allow({}, std::move(ports));
  r.all_peers = true;
  return r;
}

// Policies.
struct PolicyTypes {
  bool ingress = true;
  bool egress = false;
};
inline constexpr PolicyTypes kIngressOnly{true, false};
inline constexpr PolicyTypes kEgressOnly{false, true};
inline constexpr PolicyTypes kBoth{true, true};

inline Policy NetPol(const std::string& ns, const std::string& name, LabelSelector pods,
                     PolicyTypes types, std::vector<Rule> ingress = {},
                     std::vector<Rule> egress = {}) {
  Policy p;
  p.kind = "NetworkPolicy";
  p.namespace_name = ns;
  p.name = name;
  p.tier = Tier::kNamespace;
  p.subject.namespace_name = ns;
  p.subject.pod_selector = std::move(pods);
  p.applies_ingress = types.ingress;
  p.applies_egress = types.egress;
  p.ingress = std::move(ingress);
  p.egress = std::move(egress);
  return p;
}

inline Policy NativePol(const std::string& ns, const std::string& name, LabelSelector pods,
                        PolicyTypes types, std::vector<Rule> ingress = {},
                        std::vector<Rule> egress = {}, Mode mode = Mode::kEnforce) {
  Policy p = NetPol(ns, name, std::move(pods), types, std::move(ingress), std::move(egress));
  p.kind = "BulkheadPolicy";
  p.mode = mode;
  return p;
}

// AdminNetworkPolicy; subject namespaces (and optionally pods).
inline Policy Anp(const std::string& name, int32_t priority, LabelSelector namespaces,
                  std::optional<LabelSelector> pods, std::vector<Rule> ingress = {},
                  std::vector<Rule> egress = {}) {
  Policy p;
  p.kind = "AdminNetworkPolicy";
  p.name = name;
  p.tier = Tier::kAdmin;
  p.priority = priority;
  p.subject.namespace_selector = std::move(namespaces);
  if (pods) p.subject.pod_selector = std::move(*pods);
  p.applies_ingress = !ingress.empty();
  p.applies_egress = !egress.empty();
  p.ingress = std::move(ingress);
  p.egress = std::move(egress);
  return p;
}

inline Policy Banp(LabelSelector namespaces, std::optional<LabelSelector> pods,
                   std::vector<Rule> ingress = {}, std::vector<Rule> egress = {}) {
  Policy p = Anp("default", 0, std::move(namespaces), std::move(pods), std::move(ingress),
                 std::move(egress));
  p.kind = "BaselineAdminNetworkPolicy";
  p.tier = Tier::kBaseline;
  return p;
}

inline Policy DefaultDenyPol(const std::string& name, std::string ns,
                             std::optional<LabelSelector> namespaces, LabelSelector pods,
                             PolicyTypes types = kBoth) {
  Policy p;
  p.kind = "DefaultDeny";
  p.namespace_name = ns;
  p.name = name;
  p.tier = Tier::kDefault;
  p.subject.namespace_name = std::move(ns);
  p.subject.namespace_selector = std::move(namespaces);
  p.subject.pod_selector = std::move(pods);
  p.applies_ingress = types.ingress;
  p.applies_egress = types.egress;
  return p;
}

// Cluster inventory.
class ClusterBuilder {
 public:
  ClusterBuilder& Ns(const std::string& name, Labels labels = {},
                     std::optional<Mode> mode = std::nullopt) {
    policy::Namespace ns;
    ns.name = name;
    ns.labels = std::move(labels);
    ns.labels["kubernetes.io/metadata.name"] = name;
    ns.mode = mode;
    cluster_.namespaces.push_back(std::move(ns));
    return *this;
  }
  ClusterBuilder& Pod(const std::string& ns, const std::string& name, Labels labels,
                      std::vector<std::string> ips, std::vector<NamedPort> ports = {},
                      std::optional<Mode> mode = std::nullopt) {
    policy::Workload w;
    w.namespace_name = ns;
    w.name = name;
    w.kind = "Pod";
    w.labels = std::move(labels);
    for (const auto& ip : ips) w.ips.push_back(Ip(ip));
    w.named_ports = std::move(ports);
    w.mode = mode;
    cluster_.workloads.push_back(std::move(w));
    return *this;
  }
  ClusterBuilder& Node(const std::string& name, Labels labels, std::vector<std::string> ips) {
    policy::Node n;
    n.name = name;
    n.labels = std::move(labels);
    for (const auto& ip : ips) n.ips.push_back(Ip(ip));
    cluster_.nodes.push_back(std::move(n));
    return *this;
  }
  ClusterBuilder& Add(Policy p) {
    cluster_.policies.push_back(std::move(p));
    return *this;
  }
  Cluster Build() const { return cluster_; }

 private:
  Cluster cluster_;
};

// A flow between two endpoints named "ns/name" or by address.
inline Flow MakeFlow(const Cluster& c, const std::string& src, const std::string& dst,
                     Protocol proto = Protocol::kTCP, uint16_t port = 80,
                     std::string process = {}) {
  Flow f;
  auto s = ResolveEndpoint(c, src);
  auto d = ResolveEndpoint(c, dst);
  if (!s || !d) throw std::invalid_argument("unknown endpoint in test flow: " + src + " " + dst);
  f.src = *s;
  f.dst = *d;
  f.protocol = proto;
  f.port = policy::HasPorts(proto) ? port : 0;
  f.src_process = std::move(process);
  return f;
}

}  // namespace bulkhead::engine::testing
