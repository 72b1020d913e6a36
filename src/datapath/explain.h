// The datapath's policy decision for a new flow, computed in userspace from map lookups.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <optional>

#include "datapath/abi/bulkhead_abi.h"
#include "datapath/abi/datapath_abi.h"

namespace bulkhead::datapath {

// A new flow as one endpoint's hook would see it.
struct FlowQuery {
  uint32_t ifindex = 0;
  uint8_t direction = BULKHEAD_DIR_EGRESS;  // of the workload
  uint8_t family = BULKHEAD_FAMILY_IPV4;
  std::array<uint8_t, 16> peer{};  // the other side's address, network order
  uint8_t protocol = 6;
  uint16_t port = 0;  // destination port, host order (ignored for ICMP/ICMPv6)
};

// What the programs would decide for the first packet of that flow, and why.
struct FlowDecision {
  bh_endpoint_config endpoint{};
  uint32_t peer_identity = 0;
  uint32_t class_id = 0;
  std::optional<bulkhead_policy_port_value> entry;  // the table entry that decided, if any
  bool policy_denies = false;                       // before the mode
  bool audit = false;                               // allowed, flagged by an audit-mode policy
  uint8_t drop_reason = BH_DROP_NONE;  // why policy denies (BH_DROP_POLICY, _MISS, _PROTOCOL)
  uint8_t outcome = 0;                 // BH_EV_ALLOW, BH_EV_DENY, BH_EV_AUDIT or BH_EV_LEARN
};

// The three lookups the programs make, each answering like the kernel map would (longest
// prefix for the tries); nullopt for a miss.
struct TableLookups {
  std::function<std::optional<bulkhead_ipcache_value>(const bulkhead_ipcache_key&)> ipcache;
  std::function<std::optional<bulkhead_policy_peer_value>(const bulkhead_policy_peer_key&)> peer;
  std::function<std::optional<bulkhead_policy_port_value>(const bulkhead_policy_port_key&)> port;
};

// Mirrors bh_policy_decide and the mode handling of bh_new_flow (bpf/lib/policy.h and
// datapath.h): the bpf tests hold the two to the same answers.
FlowDecision DecideNewFlow(const bh_endpoint_config& endpoint, const FlowQuery& query,
                           const TableLookups& lookups);

}  // namespace bulkhead::datapath
