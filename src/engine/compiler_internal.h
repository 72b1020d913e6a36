// Internals of the policy compiler shared by its .cc files: verdict functions of the
// port, the tier program of one table direction, and the prefix encoding of port ranges.
// Not part of the engine's interface.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "datapath/abi/bulkhead_abi.h"
#include "identity/identity.h"
#include "policy/model.h"

namespace bulkhead::engine::compiler_internal {

// The protocols every table covers, in table order.
inline constexpr std::array<policy::Protocol, 5> kProtocols = {
    policy::Protocol::kTCP, policy::Protocol::kUDP, policy::Protocol::kSCTP,
    policy::Protocol::kICMP, policy::Protocol::kICMPv6};
inline constexpr int kNumProtocols = static_cast<int>(kProtocols.size());
inline constexpr uint32_t kPortSpace = 65536;

inline int DirIndex(policy::Direction d) { return d == policy::Direction::kIngress ? 0 : 1; }
inline policy::Direction DirOf(int index) {
  return index == 0 ? policy::Direction::kIngress : policy::Direction::kEgress;
}
inline uint8_t AbiDirection(policy::Direction d) {
  return d == policy::Direction::kIngress ? BULKHEAD_DIR_INGRESS : BULKHEAD_DIR_EGRESS;
}

// One value of the port map.
struct Outcome {
  uint8_t verdict = BULKHEAD_VERDICT_ALLOW;
  uint8_t tier = BULKHEAD_TIER_DEFAULT;
  uint8_t flags = 0;
  uint8_t reason = BULKHEAD_REASON_DEFAULT_ALLOW;
  uint32_t rule_id = BULKHEAD_RULE_NONE;
  bool operator==(const Outcome&) const = default;
  bulkhead_policy_port_value ToAbi() const { return {verdict, tier, flags, reason, rule_id}; }
};

// A piecewise-constant function of the destination port for one protocol: pieces sorted by
// first port, the first at 0, adjacent pieces different. Portless protocols have one piece.
struct PortFunction {
  std::vector<std::pair<uint32_t, Outcome>> pieces;
  bool operator==(const PortFunction&) const = default;
};

// The verdicts of one peer class in one table direction: one function per kProtocols.
using VerdictFunction = std::array<PortFunction, kNumProtocols>;
// A byte string equal for equal functions (hash key for class sharing).
std::string SerializeFunction(const VerdictFunction& f);

// One rule of one policy and direction, as the compiler evaluates it.
struct RuleRec {
  uint32_t rule_id = 0;
  policy::RuleAction action = policy::RuleAction::kAllow;
  uint8_t tier = BULKHEAD_TIER_NAMESPACE;
  bool audit = false;           // the policy is not in enforce mode
  bool all_peers = false;       // NetworkPolicy from/to absent or empty
  std::vector<uint32_t> preds;  // global predicate ids of its peers (any of them)
  const std::vector<policy::PortMatch>* ports = nullptr;
  bool has_named_ports = false;
};

// A DefaultDeny that applies to the table's identities in this direction.
struct DefaultStep {
  uint32_t rule_id = 0;
  bool audit = false;
};

// The evaluation program of one table direction: the rules of the policies that apply to
// the local identities, in the evaluator's order.
struct TierProgram {
  std::vector<uint32_t> rules;  // RuleRec indices: admin, then namespace, then baseline
  uint32_t ns_begin = 0;        // first namespace-tier position in `rules`
  uint32_t baseline_begin = 0;  // first baseline-tier position
  std::vector<DefaultStep> defaults;
  bool ns_enforce = false;  // an enforce-mode namespace policy isolates
  bool ns_audit = false;    // an audit-mode namespace policy would isolate
  bool has_audit = false;   // any audit-mode policy applies
};

// The verdict function for a peer that matches exactly the rules whose position in
// `program.rules` has peer_ok[position] != 0, with `dst_ports` the named ports of the
// flow's destination (the local workload for ingress, the peer for egress).
VerdictFunction EvaluateFunction(const TierProgram& program, const std::vector<RuleRec>& rules,
                                 const std::vector<uint8_t>& peer_ok,
                                 const std::vector<identity::PortDefinition>& dst_ports);

// One entry of the port trie: the ports whose top `bits` bits equal those of `port`.
struct PortPrefix {
  uint16_t port = 0;
  uint8_t bits = 0;
  Outcome outcome;
};

// The fewest prefixes whose longest-prefix match gives `f` at every port (an optimal
// routing table construction: prefixes may nest, the longest wins). The first entry
// covers every port.
std::vector<PortPrefix> EncodePrefixes(const PortFunction& f);

}  // namespace bulkhead::engine::compiler_internal
