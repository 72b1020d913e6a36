// The reference evaluator: the one definition of what a set of policies allows.
//
// A pure function of (cluster, flow). Each direction is evaluated separately: the egress
// of the source workload and the ingress of the destination workload; the flow passes
// only when both pass. Tiers: admin (ANP, BulkheadClusterPolicy tier admin) in priority
// order with Allow/Deny/Pass; namespace (NetworkPolicy, BulkheadPolicy): isolation + union
// of allows, explicit native denies win; baseline (BANP); default: allow, or deny where a
// DefaultDeny selects the workload. Every verdict carries its reason.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "policy/model.h"

namespace bulkhead::engine {

using policy::Direction;
using policy::Protocol;

// One end of a flow: a workload of the cluster, or an address outside it.
struct FlowEndpoint {
  const policy::Workload* workload = nullptr;  // set for workloads
  std::optional<policy::IpAddr> ip;            // set for external addresses (and optionally
                                               // for a workload: the address it used)
  std::string ToString() const;                // "ns/name" or the address
};

struct Flow {
  FlowEndpoint src;
  FlowEndpoint dst;
  Protocol protocol = Protocol::kTCP;
  uint16_t port = 0;        // destination port; 0 for ICMP
  std::string src_process;  // optional: executable name of the source process
};

// What decided one direction.
enum class Reason {
  kRule,          // a rule matched (tier, policy, rule index, action say which)
  kIsolated,      // namespace tier: selected by policies, no rule allowed (implicit deny)
  kDefaultAllow,  // no policy applies: default allow
  kDefaultDeny,   // zero-trust DefaultDeny selects the workload
  kExternal,      // this end is outside the cluster: nothing to enforce here
};
const char* ReasonName(
    Reason r);  // "rule", "isolated", "default-allow", "default-deny", "external"

// The nearest rule that did not match an implicitly denied flow, and what differed.
struct NearMiss {
  std::string policy;   // Policy::Id()
  int rule_index = -1;  // index in the policy's rules of this direction
  std::string rule_name;
  std::string differed;  // "port", "peer", "protocol"
  std::string detail;    // e.g. "rule allows TCP/443, flow is TCP/80"
};

struct DirectionVerdict {
  Direction direction = Direction::kEgress;
  bool allowed = true;  // what happens to the traffic in this direction
  Reason reason = Reason::kDefaultAllow;
  policy::Tier tier = policy::Tier::kDefault;
  // The deciding policy and rule (Reason kRule; kDefaultDeny names the DefaultDeny policy).
  std::string policy;  // Policy::Id(), empty when none
  std::string policy_kind;
  std::string policy_namespace;
  std::string policy_name;
  int rule_index = -1;
  std::string rule_name;
  std::optional<policy::RuleAction> action;
  // Admin/baseline Pass rules that sent evaluation to the next tier, in order.
  std::vector<std::string> passed_by;
  // Namespace tier: policies that select the workload for this direction.
  std::vector<std::string> isolated_by;
  std::optional<NearMiss> nearest_miss;  // for kIsolated and kDefaultDeny
  // Mode of the workload for this direction, and the verdict enforcement would give when
  // mode or an audit-mode policy let traffic pass that enforcement would drop.
  policy::Mode mode = policy::Mode::kEnforce;
  bool would_deny = false;   // audit/learn: enforcement would drop this flow
  std::string audit_policy;  // the audit-mode policy that would deny, if any

  std::string Explain() const;  // one line for people
};

struct Verdict {
  bool allowed = true;  // egress.allowed && ingress.allowed
  DirectionVerdict egress;
  DirectionVerdict ingress;
};

namespace internal {
struct EvalIndex;  // per-cluster lookups, built by the Evaluator constructor (evaluator.cc)
}  // namespace internal

// Pure evaluation over a validated cluster. Construction precomputes which policies select
// which workload (linear in workloads x policies); Evaluate is const and thread-safe. The
// cluster must outlive the Evaluator and must not change under it: after editing the
// cluster, construct a new Evaluator.
class Evaluator {
 public:
  explicit Evaluator(const policy::Cluster& cluster);
  Verdict Evaluate(const Flow& flow) const;
  DirectionVerdict EvaluateDirection(const Flow& flow, Direction direction) const;
  // Just the effective verdict (Verdict::allowed / DirectionVerdict::allowed), without
  // building the explanation: for bulk analyses such as connectivity and replay.
  bool Allows(const Flow& flow) const;
  bool Allows(const Flow& flow, Direction direction) const;

 private:
  const policy::Cluster& cluster_;
  std::shared_ptr<const internal::EvalIndex> index_;
};

// Resolves "ns/name" or an IP address to a FlowEndpoint; an IP that belongs to a
// workload resolves to that workload. Returns nullopt when neither.
std::optional<FlowEndpoint> ResolveEndpoint(const policy::Cluster& cluster,
                                            const std::string& text);

}  // namespace bulkhead::engine
