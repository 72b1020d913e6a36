/* Policy lookup for a new (or re-checked) flow: peer identity, peer class, port verdict. */
#pragma once

#include "maps.h"

/* Lookup precedence (bulkhead_abi.h has the table contract):
 *   1. ipcache, longest prefix of the peer address -> peer identity; a miss is WORLD.
 *   2. bh_pol_peer {table, peer identity, direction} -> class; a miss is class 0, the class
 *      of peers no specific rule names.
 *   3. bh_pol_port {table, class, direction, protocol, port} longest prefix -> verdict, tier,
 *      flags, reason and rule. The compiler covers every port of TCP, UDP, SCTP, ICMP and
 *      ICMPv6 for every class, so this lookup does not miss for those protocols.
 * What cannot be decided by the tables is decided by the endpoint's miss_verdict (an
 * endpoint with no table yet, a missing entry) or denied (a protocol the policy model does
 * not know: no rule can allow it). The mode (enforce, audit, learn) is applied after this,
 * by the caller. */

struct bh_decision {
  __u32 peer_identity;
  __u32 rule_id;
  __u8 verdict; /* BULKHEAD_VERDICT_* of the tables; 0 when they had no answer */
  __u8 tier;
  __u8 flags;
  __u8 reason;
  __u8 deny;        /* the flow is denied by policy (before the mode) */
  __u8 audit;       /* allowed, but an audit-mode policy would deny it */
  __u8 drop_reason; /* BH_DROP_* explaining `deny` */
  __u8 pad;
};

static __always_inline int bh_policy_protocol_known(__u8 protocol) {
  return protocol == IPPROTO_TCP || protocol == IPPROTO_UDP || protocol == IPPROTO_SCTP ||
         protocol == IPPROTO_ICMP || protocol == IPPROTO_ICMPV6;
}

static __always_inline __u32 bh_peer_identity(__u8 family, const __u8* addr) {
  struct bulkhead_ipcache_key key = {};
  key.prefixlen = BULKHEAD_IPCACHE_PREFIX_BASE + (family == BULKHEAD_FAMILY_IPV4 ? 32 : 128);
  key.family = family;
  bh_addr_copy(key.addr, addr);
  struct bulkhead_ipcache_value* v = bpf_map_lookup_elem(&bh_ipcache, &key);
  return v ? v->identity : BULKHEAD_IDENTITY_WORLD;
}

/* Decides a flow of `protocol` to destination port `dport` (host order; 0 for ICMP) in
 * `direction` (workload POV) between the endpoint and the peer at `peer_addr`. */
static __always_inline void bh_policy_decide(const struct bh_endpoint_config* cfg, __u8 direction,
                                             __u8 family, const __u8* peer_addr, __u8 protocol,
                                             __u16 dport, struct bh_decision* d) {
  d->peer_identity = bh_peer_identity(family, peer_addr);

  if (!bh_policy_protocol_known(protocol)) {
    d->deny = 1;
    d->drop_reason = BH_DROP_PROTOCOL;
    return;
  }
  if (protocol == IPPROTO_ICMP || protocol == IPPROTO_ICMPV6) dport = 0;

  struct bulkhead_policy_peer_key pk = {};
  pk.table_id = cfg->policy_table_id;
  pk.peer_identity = d->peer_identity;
  pk.direction = direction;
  struct bulkhead_policy_peer_value* pv = bpf_map_lookup_elem(&bh_pol_peer, &pk);

  struct bulkhead_policy_port_key key = {};
  key.prefixlen = BULKHEAD_PORT_PREFIX_FULL;
  key.table_id = cfg->policy_table_id;
  key.class_id = pv ? pv->class_id : BULKHEAD_CLASS_DEFAULT;
  key.direction = direction;
  key.protocol = protocol;
  key.port = bpf_htons(dport);
  struct bulkhead_policy_port_value* v = NULL;
  if (cfg->policy_table_id != BULKHEAD_TABLE_NONE) v = bpf_map_lookup_elem(&bh_pol_port, &key);

  if (!v) {
    d->verdict = cfg->miss_verdict == BULKHEAD_VERDICT_ALLOW ? BULKHEAD_VERDICT_ALLOW : 0;
    d->deny = d->verdict != BULKHEAD_VERDICT_ALLOW;
    d->drop_reason = d->deny ? BH_DROP_POLICY_MISS : BH_DROP_NONE;
    return;
  }
  d->verdict = v->verdict;
  d->tier = v->tier;
  d->flags = v->flags;
  d->reason = v->reason;
  d->rule_id = v->rule_id;
  /* Anything but an explicit ALLOW denies: an unknown verdict code fails closed. */
  d->deny = v->verdict != BULKHEAD_VERDICT_ALLOW;
  d->audit = !d->deny && (v->flags & BULKHEAD_POLICY_F_AUDIT_WOULD_DENY);
  d->drop_reason = d->deny ? BH_DROP_POLICY : BH_DROP_NONE;
}
