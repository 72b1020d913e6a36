// Exact connectivity analysis: cut port and address spaces at every policy boundary and
// evaluate one representative flow per piece with the reference evaluator.
#include "engine/connectivity.h"

#include <algorithm>
#include <set>

namespace bulkhead::engine {

using policy::IpAddr;
using policy::Peer;
using policy::PortMatch;

namespace {

constexpr uint32_t kMinPort = 1;
constexpr uint32_t kMaxPort = 65535;
constexpr Protocol kPortProtocols[] = {Protocol::kTCP, Protocol::kUDP, Protocol::kSCTP};

// Piece starts over [1, 65535]; the end sentinel 65536 is always present.
using PortCuts = std::set<uint32_t>;

void AddPortCut(PortCuts* cuts, uint32_t first, uint32_t last) {
  if (first > kMinPort && first <= kMaxPort) cuts->insert(first);
  if (last + 1 > kMinPort && last + 1 <= kMaxPort) cuts->insert(last + 1);
}

// Boundaries that numbered ports and ranges of any rule create, for every destination.
PortCuts GlobalPortCuts(const policy::Cluster& cluster) {
  PortCuts cuts = {kMinPort, kMaxPort + 1};
  for (const auto& p : cluster.policies) {
    for (const auto* rules : {&p.ingress, &p.egress}) {
      for (const auto& r : *rules) {
        for (const auto& pm : r.ports) {
          if (pm.kind == PortMatch::Kind::kRange) AddPortCut(&cuts, pm.first, pm.last);
        }
      }
    }
  }
  return cuts;
}

// Named ports resolve per destination, so each destination adds its own port numbers.
PortCuts CutsFor(const PortCuts& global, const policy::Workload* dst) {
  if (dst == nullptr || dst->named_ports.empty()) return global;
  PortCuts cuts = global;
  for (const auto& np : dst->named_ports) AddPortCut(&cuts, np.port, np.port);
  return cuts;
}

void AppendInterval(PortIntervals* out, uint16_t first, uint16_t last) {
  if (!out->empty() && out->back().second + 1 == first) {
    out->back().second = last;
  } else {
    out->emplace_back(first, last);
  }
}

// Whether the flow passes. Between a workload and an outside address only the workload's
// direction can deny (the outside end has no policy), so only that one is evaluated.
bool Allowed(const Evaluator& ev, const Flow& flow) {
  if (flow.src.workload == nullptr) return ev.Allows(flow, Direction::kIngress);
  if (flow.dst.workload == nullptr) return ev.Allows(flow, Direction::kEgress);
  return ev.Allows(flow);
}

ConnectionSet Connections(const Evaluator& ev, Flow flow, const PortCuts& cuts, bool v6) {
  ConnectionSet set;
  for (Protocol proto : kPortProtocols) {
    flow.protocol = proto;
    PortIntervals allowed;
    for (auto it = cuts.begin(); std::next(it) != cuts.end(); ++it) {
      flow.port = static_cast<uint16_t>(*it);
      if (Allowed(ev, flow)) {
        AppendInterval(&allowed, static_cast<uint16_t>(*it),
                       static_cast<uint16_t>(*std::next(it) - 1));
      }
    }
    if (!allowed.empty()) set.ports[proto] = std::move(allowed);
  }
  flow.protocol = v6 ? Protocol::kICMPv6 : Protocol::kICMP;
  flow.port = 0;
  set.other_protocols = Allowed(ev, flow);
  return set;
}

// Piece starts of one address family's space, from every CIDR, except and node address.
struct AddressCuts {
  std::set<IpAddr> v4;
  std::set<IpAddr> v6;
  bool any_v6 = false;
};

void AddAddressCut(AddressCuts* cuts, const IpAddr& first, const IpAddr& last) {
  auto& set = first.v6 ? cuts->v6 : cuts->v4;
  if (first.v6) cuts->any_v6 = true;
  set.insert(first);
  if (auto next = common::NextAddr(last)) set.insert(*next);
}

AddressCuts ExternalCuts(const policy::Cluster& cluster) {
  AddressCuts cuts;
  for (const auto& p : cluster.policies) {
    for (const auto* rules : {&p.ingress, &p.egress}) {
      for (const auto& r : *rules) {
        for (const auto& peer : r.peers) {
          if (peer.kind != Peer::Kind::kIpBlock) continue;
          for (const auto& c : peer.cidrs) AddAddressCut(&cuts, c.First(), c.Last());
          for (const auto& c : peer.except) AddAddressCut(&cuts, c.First(), c.Last());
        }
      }
    }
  }
  for (const auto& n : cluster.nodes) {
    for (const auto& ip : n.ips) AddAddressCut(&cuts, ip, ip);
  }
  cuts.v4.insert(IpAddr::V4(0));
  if (cuts.any_v6) cuts.v6.insert(IpAddr{true, {}});
  return cuts;
}

struct AddressPiece {
  IpAddr first, last;
};

std::vector<AddressPiece> Pieces(const std::set<IpAddr>& starts) {
  std::vector<AddressPiece> out;
  for (auto it = starts.begin(); it != starts.end(); ++it) {
    auto next = std::next(it);
    IpAddr last;
    if (next == starts.end()) {
      last = *it;
      last.bytes.fill(0);
      for (int i = 0; i < it->BitWidth() / 8; ++i) last.bytes[i] = 0xff;
    } else {
      last = *common::PrevAddr(*next);
    }
    out.push_back({*it, last});
  }
  return out;
}

// Adds one entry per run of adjacent address pieces with equal connections.
void AddExternalEntries(const Evaluator& ev, const policy::Workload& w,
                        const std::vector<AddressPiece>& pieces, bool egress, const PortCuts& cuts,
                        ConnectivityReport* report) {
  const size_t first_entry = report->entries.size();
  for (const auto& piece : pieces) {
    Flow flow;
    FlowEndpoint local{&w, std::nullopt};
    FlowEndpoint remote{nullptr, piece.first};
    flow.src = egress ? local : remote;
    flow.dst = egress ? remote : local;
    ConnectionSet set = Connections(ev, flow, cuts, piece.first.v6);
    if (report->entries.size() > first_entry && report->entries.back().allowed == set) {
      ConnectivityEntry& run = report->entries.back();
      (egress ? run.dst : run.src).last = piece.last;
      continue;
    }
    ConnEnd wl;
    wl.workload = &w;
    ConnEnd ext;
    ext.first = piece.first;
    ext.last = piece.last;
    report->entries.push_back({egress ? wl : ext, egress ? ext : wl, std::move(set)});
  }
}

std::string PortsToString(const PortIntervals& intervals) {
  std::string s;
  for (const auto& [a, b] : intervals) {
    if (!s.empty()) s += ",";
    s += std::to_string(a);
    if (b != a) s += "-" + std::to_string(b);
  }
  return s;
}

}  // namespace

bool ConnectionSet::IsEmpty() const {
  if (other_protocols) return false;
  return std::all_of(ports.begin(), ports.end(), [](const auto& kv) { return kv.second.empty(); });
}

bool ConnectionSet::IsAll() const {
  if (!other_protocols) return false;
  for (Protocol p : kPortProtocols) {
    auto it = ports.find(p);
    if (it == ports.end() || it->second.size() != 1 || it->second[0].first != kMinPort ||
        it->second[0].second != kMaxPort) {
      return false;
    }
  }
  return true;
}

std::string ConnectionSet::ToString() const {
  if (IsAll()) return "All Connections";
  if (IsEmpty()) return "No Connections";
  // Alphabetical by protocol name; "ICMP" stands for every portless protocol.
  std::vector<std::pair<std::string, std::string>> parts;
  for (const auto& [proto, intervals] : ports) {
    if (!intervals.empty())
      parts.emplace_back(policy::ProtocolName(proto), PortsToString(intervals));
  }
  if (other_protocols) parts.emplace_back("ICMP", "");
  std::sort(parts.begin(), parts.end());
  std::string s;
  for (const auto& [name, ranges] : parts) {
    if (!s.empty()) s += ",";
    s += name;
    if (!ranges.empty()) s += " " + ranges;
  }
  return s;
}

std::string ConnEnd::ToString() const {
  if (workload != nullptr) return workload->Id();
  return first.ToString() + "-" + last.ToString();
}

ConnectivityReport ComputeConnectivity(const policy::Cluster& cluster) {
  Evaluator ev(cluster);
  ConnectivityReport report;
  const PortCuts global = GlobalPortCuts(cluster);

  for (const auto& src : cluster.workloads) {
    for (const auto& dst : cluster.workloads) {
      if (&src == &dst) continue;
      Flow flow;
      flow.src.workload = &src;
      flow.dst.workload = &dst;
      ConnEnd s, d;
      s.workload = &src;
      d.workload = &dst;
      report.entries.push_back({s, d, Connections(ev, flow, CutsFor(global, &dst), false)});
    }
  }

  // IPv4 always; IPv6 only when some policy or node names an IPv6 address. Runs are merged
  // within one family only.
  AddressCuts cuts = ExternalCuts(cluster);
  std::vector<std::vector<AddressPiece>> families = {Pieces(cuts.v4)};
  if (cuts.any_v6) families.push_back(Pieces(cuts.v6));
  for (const auto& w : cluster.workloads) {
    for (const auto& pieces : families) {
      AddExternalEntries(ev, w, pieces, /*egress=*/true, global, &report);
    }
    for (const auto& pieces : families) {
      AddExternalEntries(ev, w, pieces, /*egress=*/false, CutsFor(global, &w), &report);
    }
  }
  return report;
}

}  // namespace bulkhead::engine
