// Subject, peer and port matching for the reference evaluator, and their descriptions.
#include "engine/eval_match.h"

#include <algorithm>

namespace bulkhead::engine::internal {

using policy::Labels;
using policy::Peer;
using policy::PortMatch;

namespace {

// The namespace a namespaced policy lives in, for subjects and podSelector-only peers the
// loader left without an explicit namespace.
bool NamespaceScopeMatches(const std::string& explicit_name,
                           const std::optional<policy::LabelSelector>& selector,
                           const policy::Policy& policy, const std::string& ns,
                           const Labels& ns_labels) {
  if (selector) return selector->Matches(ns_labels);
  if (!explicit_name.empty()) return ns == explicit_name;
  if (!policy.namespace_name.empty()) return ns == policy.namespace_name;
  return true;  // cluster-scoped, no namespace selector: every namespace
}

// Prefix containment by whole bytes and one masked byte: the evaluator's hot path (an
// ipBlock rule with hundreds of CIDRs is checked for every flow to an outside address).
bool InPrefix(const policy::Cidr& c, const policy::IpAddr& ip) {
  if (c.addr.v6 != ip.v6) return false;
  const int full = c.prefix_len / 8;
  for (int i = 0; i < full; ++i) {
    if (c.addr.bytes[i] != ip.bytes[i]) return false;
  }
  const int rest = c.prefix_len % 8;
  if (rest == 0) return true;
  const uint8_t mask = static_cast<uint8_t>(0xff00 >> rest);
  return (c.addr.bytes[full] & mask) == (ip.bytes[full] & mask);
}

bool IpBlockMatches(const Peer& peer, const policy::IpAddr& ip) {
  bool in = std::any_of(peer.cidrs.begin(), peer.cidrs.end(),
                        [&](const policy::Cidr& c) { return InPrefix(c, ip); });
  if (!in) return false;
  return std::none_of(peer.except.begin(), peer.except.end(),
                      [&](const policy::Cidr& c) { return InPrefix(c, ip); });
}

bool NodePeerMatches(const Peer& peer, const policy::IpAddr& ip, const policy::Cluster& cluster) {
  for (const auto& node : cluster.nodes) {
    if (!peer.node_selector.Matches(node.labels)) continue;
    if (std::find(node.ips.begin(), node.ips.end(), ip) != node.ips.end()) return true;
  }
  return false;
}

bool ProtocolMatches(const PortMatch& pm, policy::Protocol p) {
  return !pm.protocol || *pm.protocol == p;
}

std::string Join(const std::vector<std::string>& parts, const std::string& sep) {
  std::string s;
  for (const auto& p : parts) {
    if (!s.empty()) s += sep;
    s += p;
  }
  return s;
}

}  // namespace

bool SubjectSelects(const policy::Policy& policy, const policy::Workload& workload,
                    const Labels& ns_labels) {
  const policy::Subject& s = policy.subject;
  if (!NamespaceScopeMatches(s.namespace_name, s.namespace_selector, policy,
                             workload.namespace_name, ns_labels)) {
    return false;
  }
  return s.pod_selector.Matches(workload.labels);
}

bool ProcessMatches(const policy::ProcessSelector& selector, const std::string& process) {
  if (process.empty()) return false;
  std::string name = process;
  std::string path;
  if (process.front() == '/') {
    path = process;
    name = process.substr(process.rfind('/') + 1);
  }
  return selector.Matches(name, path);
}

bool SubjectProcessMatches(const policy::Subject& subject, const DirectionContext& ctx) {
  if (!subject.process) return true;
  if (ctx.dir == Direction::kIngress) return false;  // the destination process is unknown
  return ProcessMatches(*subject.process, ctx.flow->src_process);
}

bool PeerMatches(const policy::Policy& policy, const Peer& peer, const DirectionContext& ctx) {
  const FlowEndpoint& remote = *ctx.remote;
  switch (peer.kind) {
    case Peer::Kind::kPods: {
      if (remote.workload == nullptr) return false;
      const policy::Workload& w = *remote.workload;
      if (!NamespaceScopeMatches(peer.same_namespace, peer.namespace_selector, policy,
                                 w.namespace_name, *ctx.remote_ns_labels)) {
        return false;
      }
      if (peer.pod_selector && !peer.pod_selector->Matches(w.labels)) return false;
      if (peer.service_account && *peer.service_account != w.service_account) return false;
      if (peer.process) {
        // Only the source process is known: for ingress that is the peer's.
        if (ctx.dir == Direction::kEgress) return false;
        if (!ProcessMatches(*peer.process, ctx.flow->src_process)) return false;
      }
      return true;
    }
    case Peer::Kind::kIpBlock:
      // ipBlock selects addresses outside the cluster only: a workload's own address is
      // matched by selectors, never by CIDR (the choice of the NetworkPolicy docs for pod
      // IPs, which are ephemeral; it keeps the compiler's identity tables exact).
      return remote.workload == nullptr && remote.ip && IpBlockMatches(peer, *remote.ip);
    case Peer::Kind::kNodes:
      return remote.workload == nullptr && remote.ip &&
             NodePeerMatches(peer, *remote.ip, *ctx.cluster);
  }
  return false;
}

bool RulePeerMatches(const policy::Policy& policy, const policy::Rule& rule,
                     const DirectionContext& ctx) {
  if (rule.all_peers) return true;
  return std::any_of(rule.peers.begin(), rule.peers.end(),
                     [&](const Peer& p) { return PeerMatches(policy, p, ctx); });
}

PortResult MatchPorts(const std::vector<PortMatch>& ports, const Flow& flow) {
  if (ports.empty()) return PortResult::kMatch;
  if (!policy::HasPorts(flow.protocol)) return PortResult::kProtocolDiffers;
  bool protocol_seen = false;
  for (const auto& pm : ports) {
    switch (pm.kind) {
      case PortMatch::Kind::kAllPorts:
        if (ProtocolMatches(pm, flow.protocol)) return PortResult::kMatch;
        break;
      case PortMatch::Kind::kRange:
        if (!ProtocolMatches(pm, flow.protocol)) break;
        protocol_seen = true;
        if (flow.port >= pm.first && flow.port <= pm.last) return PortResult::kMatch;
        break;
      case PortMatch::Kind::kNamed: {
        // With a protocol set the named port must be of that protocol; without one
        // (AdminNetworkPolicy namedPort) any protocol the port declares.
        if (!ProtocolMatches(pm, flow.protocol)) break;
        if (pm.protocol) protocol_seen = true;
        const policy::Workload* dst = flow.dst.workload;
        if (dst == nullptr) break;  // an address outside the cluster has no named ports
        for (const auto& np : dst->named_ports) {
          if (np.name != pm.name || np.protocol != flow.protocol) continue;
          protocol_seen = true;
          if (np.port == flow.port) return PortResult::kMatch;
        }
        break;
      }
    }
  }
  return protocol_seen ? PortResult::kPortDiffers : PortResult::kProtocolDiffers;
}

std::string DescribePeer(const policy::Policy& policy, const Peer& peer) {
  switch (peer.kind) {
    case Peer::Kind::kPods: {
      std::string s = peer.pod_selector
                          ? (peer.pod_selector->IsEmpty() ? "all pods"
                                                          : "pods " + peer.pod_selector->ToString())
                          : "all pods";
      if (peer.namespace_selector) {
        s += peer.namespace_selector->IsEmpty()
                 ? " in all namespaces"
                 : " in namespaces " + peer.namespace_selector->ToString();
      } else if (!peer.same_namespace.empty()) {
        s += " in namespace " + peer.same_namespace;
      } else if (!policy.namespace_name.empty()) {
        s += " in namespace " + policy.namespace_name;
      }
      if (peer.service_account) s += " with service account " + *peer.service_account;
      if (peer.process) {
        std::vector<std::string> procs = peer.process->names;
        procs.insert(procs.end(), peer.process->paths.begin(), peer.process->paths.end());
        s += " process " + Join(procs, "|");
      }
      return s;
    }
    case Peer::Kind::kIpBlock: {
      std::vector<std::string> cidrs, except;
      for (const auto& c : peer.cidrs) cidrs.push_back(c.ToString());
      for (const auto& c : peer.except) except.push_back(c.ToString());
      std::string s = "addresses " + Join(cidrs, ",");
      if (!except.empty()) s += " except " + Join(except, ",");
      return s;
    }
    case Peer::Kind::kNodes:
      return "nodes " + peer.node_selector.ToString();
  }
  return "?";
}

std::string DescribeRulePeers(const policy::Policy& policy, const policy::Rule& rule) {
  if (rule.all_peers) return "any peer";
  if (rule.peers.empty()) return "no peer";
  std::vector<std::string> parts;
  parts.reserve(rule.peers.size());
  for (const auto& p : rule.peers) parts.push_back(DescribePeer(policy, p));
  return Join(parts, " or ");
}

std::string DescribePorts(const std::vector<PortMatch>& ports) {
  if (ports.empty()) return "any port";
  std::vector<std::string> parts;
  parts.reserve(ports.size());
  for (const auto& p : ports) parts.push_back(p.ToString());
  return Join(parts, ", ");
}

std::string DescribeFlowPort(const Flow& flow) {
  std::string s = policy::ProtocolName(flow.protocol);
  if (policy::HasPorts(flow.protocol)) s += "/" + std::to_string(flow.port);
  return s;
}

}  // namespace bulkhead::engine::internal
