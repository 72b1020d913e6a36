// Matching primitives of the reference evaluator: subjects, peers and ports of one flow
// direction, and the human descriptions used by explain. Internal to src/engine.
#pragma once

#include <string>
#include <vector>

#include "engine/evaluator.h"
#include "policy/model.h"

namespace bulkhead::engine::internal {

// One direction of one flow, from the point of view of the workload whose policy is
// evaluated (`local`); `remote` is the other end.
struct DirectionContext {
  const Flow* flow = nullptr;
  Direction dir = Direction::kEgress;
  const policy::Workload* local = nullptr;           // never null
  const policy::Labels* local_ns_labels = nullptr;   // never null
  const FlowEndpoint* remote = nullptr;              // never null
  const policy::Labels* remote_ns_labels = nullptr;  // null when remote is not a workload
  const policy::Cluster* cluster = nullptr;          // for node peers
};

// Whether the policy's subject selects the workload, ignoring process selectors (which
// depend on the flow; see SubjectProcessMatches).
bool SubjectSelects(const policy::Policy& policy, const policy::Workload& workload,
                    const policy::Labels& ns_labels);

// A subject's process selector, checked against the flow. Only the source process of a
// flow is known, so a subject with a process selector matches egress flows whose
// src_process it selects, and never ingress flows.
bool SubjectProcessMatches(const policy::Subject& subject, const DirectionContext& ctx);

// Whether `process` (an executable name, or an absolute path) is selected. An empty
// process (the flow does not say) matches no selector.
bool ProcessMatches(const policy::ProcessSelector& selector, const std::string& process);

bool PeerMatches(const policy::Policy& policy, const policy::Peer& peer,
                 const DirectionContext& ctx);
bool RulePeerMatches(const policy::Policy& policy, const policy::Rule& rule,
                     const DirectionContext& ctx);

enum class PortResult { kMatch, kPortDiffers, kProtocolDiffers };
// Matches a rule's port list against the flow's protocol and destination port. Named
// ports resolve against the destination workload (flow.dst); an external destination
// has no named ports.
PortResult MatchPorts(const std::vector<policy::PortMatch>& ports, const Flow& flow);

// Human descriptions for explain.
std::string DescribePeer(const policy::Policy& policy, const policy::Peer& peer);
std::string DescribeRulePeers(const policy::Policy& policy, const policy::Rule& rule);
std::string DescribePorts(const std::vector<policy::PortMatch>& ports);
std::string DescribeFlowPort(const Flow& flow);  // "TCP/80", "ICMP"

}  // namespace bulkhead::engine::internal
