// The datapath's policy decision for a new flow, mirrored in userspace.
#include "datapath/explain.h"

#include <arpa/inet.h>

#include <algorithm>

namespace bulkhead::datapath {
namespace {

constexpr uint8_t kTcp = 6, kUdp = 17, kSctp = 132, kIcmp = 1, kIcmp6 = 58;

bool ProtocolKnown(uint8_t p) {
  return p == kTcp || p == kUdp || p == kSctp || p == kIcmp || p == kIcmp6;
}

}  // namespace

FlowDecision DecideNewFlow(const bh_endpoint_config& endpoint, const FlowQuery& q,
                           const TableLookups& lookups) {
  FlowDecision d;
  d.endpoint = endpoint;

  bulkhead_ipcache_key ik{};
  ik.prefixlen = BULKHEAD_IPCACHE_PREFIX_BASE + (q.family == BULKHEAD_FAMILY_IPV4 ? 32 : 128);
  ik.family = q.family;
  std::copy(q.peer.begin(), q.peer.end(), ik.addr);
  auto ip = lookups.ipcache(ik);
  d.peer_identity = ip ? ip->identity : BULKHEAD_IDENTITY_WORLD;

  if (!ProtocolKnown(q.protocol)) {
    d.policy_denies = true;
    d.drop_reason = BH_DROP_PROTOCOL;
  } else {
    uint16_t port = (q.protocol == kIcmp || q.protocol == kIcmp6) ? 0 : q.port;
    bulkhead_policy_peer_key pk{};
    pk.table_id = endpoint.policy_table_id;
    pk.peer_identity = d.peer_identity;
    pk.direction = q.direction;
    auto cls = lookups.peer(pk);
    d.class_id = cls ? cls->class_id : BULKHEAD_CLASS_DEFAULT;

    if (endpoint.policy_table_id != BULKHEAD_TABLE_NONE) {
      bulkhead_policy_port_key k{};
      k.prefixlen = BULKHEAD_PORT_PREFIX_FULL;
      k.table_id = endpoint.policy_table_id;
      k.class_id = d.class_id;
      k.direction = q.direction;
      k.protocol = q.protocol;
      k.port = htons(port);
      d.entry = lookups.port(k);
    }
    if (!d.entry) {
      d.policy_denies = endpoint.miss_verdict != BULKHEAD_VERDICT_ALLOW;
      d.drop_reason = d.policy_denies ? BH_DROP_POLICY_MISS : BH_DROP_NONE;
    } else {
      d.policy_denies = d.entry->verdict != BULKHEAD_VERDICT_ALLOW;
      d.audit = !d.policy_denies && (d.entry->flags & BULKHEAD_POLICY_F_AUDIT_WOULD_DENY);
      d.drop_reason = d.policy_denies ? BH_DROP_POLICY : BH_DROP_NONE;
    }
  }

  if (d.policy_denies && endpoint.mode == BH_MODE_ENFORCE)
    d.outcome = BH_EV_DENY;
  else if (endpoint.mode == BH_MODE_LEARN)
    d.outcome = BH_EV_LEARN;
  else if (d.policy_denies || d.audit)
    d.outcome = BH_EV_AUDIT;
  else
    d.outcome = BH_EV_ALLOW;
  return d;
}

}  // namespace bulkhead::datapath
