/* The decision for one packet on a workload's host veth: endpoint, anti-spoofing, fragments,
 * conntrack, policy for new flows, the endpoint's mode, counters and events. */
#pragma once

#include "conntrack.h"
#include "events.h"
#include "fragments.h"
#include "maps.h"
#include "parse.h"
#include "policy.h"

/* Order of checks for a packet in direction `dir` (workload POV) on interface ifindex:
 *   1. endpoint config for ifindex (none: drop, fail closed);
 *   2. parse (malformed IP: drop; ARP: sender checked, then pass; other ethertypes: drop);
 *   3. egress: the source must be one of the workload's addresses (ICMPv6 link control from
 *      link-local or unspecified sources excepted);
 *   4. ICMPv6 neighbour discovery and MLD pass;
 *   5. later fragments follow their first fragment's recorded decision, else drop;
 *   6. conntrack hit: re-check under the current policy if the endpoint's generation or mode
 *      changed since the entry was validated, advance TCP/SCTP state, pass;
 *   7. ICMP errors quoting a tracked flow pass;
 *   8. new flow: policy decides, the mode applies, the flow is tracked and reported. */

static __always_inline int bh_drop(const struct bh_event_ctx* ec, __u32 events_off, __u32 ctr,
                                   __u8 kind, __u8 reason) {
  bh_count(ctr);
  bh_emit_if(ec, ~events_off, BH_EVF_DENIES, kind, BH_EV_DENY, reason);
  return TC_ACT_SHOT;
}

static __always_inline int bh_addr_is_own(__u32 ifindex, const struct bh_pkt* p) {
  struct bh_ep_addr_key k = {};
  k.ifindex = ifindex;
  k.family = p->family;
  bh_addr_copy(k.addr, p->src);
  return bpf_map_lookup_elem(&bh_ep_addrs, &k) != NULL;
}

static __always_inline int bh_ipv6_link_local_or_unspecified(const __u8* a) {
  return (a[0] == 0xfe && (a[1] & 0xc0) == 0x80) || bh_addr_is_zero(a);
}

static __always_inline int bh_is_icmp6_link_control(const struct bh_pkt* p) {
  return p->family == BULKHEAD_FAMILY_IPV6 && p->protocol == IPPROTO_ICMPV6 &&
         p->frag == BH_FRAG_NONE && bh_icmp6_is_link_control(p->icmp_type);
}

/* The verdict reported for a flow that passes, given what policy said and the mode. */
static __always_inline __u8 bh_pass_verdict(const struct bh_endpoint_config* cfg,
                                            const struct bh_decision* d) {
  if (cfg->mode == BH_MODE_LEARN) return BH_EV_LEARN;
  if (d->deny || d->audit) return BH_EV_AUDIT;
  return BH_EV_ALLOW;
}

/* A tracked flow's packet. Returns the TC action. */
static __always_inline int bh_ct_hit(struct __sk_buff* skb, struct bh_event_ctx* ec,
                                     const struct bh_endpoint_config* cfg, struct bh_pkt* p,
                                     const struct bh_ct_key* key, struct bh_ct_entry* e,
                                     const struct bh_settings* s, __u32 events_off, __u64 now) {
  if (e->policy_generation != cfg->policy_generation || e->mode != cfg->mode) {
    /* The endpoint's policy changed since this flow was allowed: decide it again as its
     * first packet was decided (origin direction, the originator's destination port). */
    __u8 origin = e->origin;
    __u16 dport = origin == BULKHEAD_DIR_EGRESS ? key->remote_port : key->local_port;
    struct bh_decision d = {};
    bh_policy_decide(cfg, origin, key->family, key->remote_addr, key->protocol, dport, &d);
    ec->decision = &d;
    if (d.deny && cfg->mode == BH_MODE_ENFORCE) {
      bh_ct_remove(key);
      return bh_drop(ec, events_off, BH_CTR_DROP_REVOKED, BH_EV_RECHECK, BH_DROP_REVOKED);
    }
    e->policy_generation = cfg->policy_generation;
    e->mode = cfg->mode;
    e->peer_identity = d.peer_identity;
    e->rule_id = d.rule_id;
    e->tier = d.tier;
    if (d.deny || d.audit) {
      e->flags |= BH_CT_F_WOULD_DENY;
      bh_emit_if(ec, ~events_off, BH_EVF_AUDITS, BH_EV_RECHECK, bh_pass_verdict(cfg, &d),
                 BH_DROP_NONE);
    } else {
      e->flags &= ~BH_CT_F_WOULD_DENY;
    }
  }

  int is_reply = ec->direction != e->origin;
  if (p->frag == BH_FRAG_FIRST)
    bh_frag_record(p, key->ifindex, ec->direction, 1, e->peer_identity, e->rule_id, s, now);
  if (bh_ct_update(e, p, is_reply, now)) bh_ct_remove(key);
  bh_count(BH_CTR_PASS_CT);
  return TC_ACT_OK;
}

/* A packet that starts a flow (or an untracked ICMP message). Returns the TC action. */
static __always_inline int bh_new_flow(struct bh_event_ctx* ec,
                                       const struct bh_endpoint_config* cfg, struct bh_pkt* p,
                                       const struct bh_ct_key* key, int trackable,
                                       const struct bh_settings* s, __u32 events_off, __u64 now) {
  __u8 dir = ec->direction;
  struct bh_decision d = {};
  bh_policy_decide(cfg, dir, p->family, key->remote_addr, p->protocol, p->dport, &d);
  ec->decision = &d;

  int pass = !d.deny || cfg->mode != BH_MODE_ENFORCE;
  if (p->frag == BH_FRAG_FIRST)
    bh_frag_record(p, key->ifindex, dir, pass, d.peer_identity, d.rule_id, s, now);
  if (!pass) return bh_drop(ec, events_off, BH_CTR_DROP_POLICY, BH_EV_NEW_FLOW, d.drop_reason);

  __u8 verdict = bh_pass_verdict(cfg, &d);
  if (trackable && !(p->protocol == IPPROTO_TCP && (p->tcp_flags & BH_TCP_RST))) {
    struct bh_ct_entry e = {};
    e.created_ns = now;
    e.last_seen_ns = now;
    e.policy_generation = cfg->policy_generation;
    e.peer_identity = d.peer_identity;
    e.rule_id = d.rule_id;
    e.origin = dir;
    e.state = BH_CT_NEW;
    e.flags = (d.deny || d.audit) ? BH_CT_F_WOULD_DENY : 0;
    if (p->protocol == IPPROTO_TCP && (p->tcp_flags & BH_TCP_FIN)) e.flags |= BH_CT_F_FIN_ORIG;
    e.tier = d.tier;
    e.mode = cfg->mode;
    if (bpf_map_update_elem(&bh_ct, key, &e, BPF_ANY) == 0) bh_count(BH_CTR_CT_CREATED);
  }
  if (verdict == BH_EV_AUDIT) {
    bh_count(BH_CTR_PASS_AUDIT);
    bh_emit_if(ec, ~events_off, BH_EVF_AUDITS, BH_EV_NEW_FLOW, verdict, BH_DROP_NONE);
  } else {
    bh_count(verdict == BH_EV_LEARN ? BH_CTR_PASS_LEARN : BH_CTR_PASS_NEW);
    bh_emit_if(ec, ~events_off, BH_EVF_NEW_FLOWS, BH_EV_NEW_FLOW, verdict, BH_DROP_NONE);
  }
  return TC_ACT_OK;
}

static __always_inline int bh_handle(struct __sk_buff* skb, __u8 dir) {
  __u32 ifindex = skb->ifindex;
  __u32 zero = 0;
  const struct bh_settings* s = bpf_map_lookup_elem(&bh_settings, &zero);
  __u32 events_off = s ? s->events_off : 0;

  struct bh_pkt pkt = {};
  struct bh_event_ctx ec = {};
  ec.ifindex = ifindex;
  ec.pkt_len = skb->len;
  ec.direction = dir;

  int parsed = bh_parse(skb, &pkt);
  ec.pkt = &pkt;

  struct bh_endpoint_config* cfgp = bpf_map_lookup_elem(&bh_endpoints, &ifindex);
  if (!cfgp)
    return bh_drop(&ec, events_off, BH_CTR_DROP_NO_ENDPOINT, BH_EV_PACKET, BH_DROP_NO_ENDPOINT);
  /* One copy: the loader replaces the whole element on a policy switch, and this packet is
   * decided under one consistent config. */
  struct bh_endpoint_config cfg = *cfgp;
  ec.cfg = &cfg;
  int antispoof = dir == BULKHEAD_DIR_EGRESS && !(cfg.flags & BH_EP_F_NO_ANTISPOOF);

  if (parsed == BH_PARSE_MALFORMED)
    return bh_drop(&ec, events_off, BH_CTR_DROP_MALFORMED, BH_EV_PACKET, BH_DROP_MALFORMED);
  if (parsed == BH_PARSE_OTHER_L2)
    return bh_drop(&ec, events_off, BH_CTR_DROP_L2, BH_EV_PACKET, BH_DROP_L2);
  if (parsed == BH_PARSE_ARP) {
    /* 0.0.0.0 is an ARP probe's sender (RFC 5227). */
    if (antispoof && !bh_addr_is_zero(pkt.src) && !bh_addr_is_own(ifindex, &pkt))
      return bh_drop(&ec, events_off, BH_CTR_DROP_SPOOFED, BH_EV_PACKET, BH_DROP_SPOOFED);
    bh_count(BH_CTR_PASS_CONTROL);
    return TC_ACT_OK;
  }

  int link_control = bh_is_icmp6_link_control(&pkt);
  if (antispoof && !(link_control && bh_ipv6_link_local_or_unspecified(pkt.src)) &&
      !bh_addr_is_own(ifindex, &pkt))
    return bh_drop(&ec, events_off, BH_CTR_DROP_SPOOFED, BH_EV_PACKET, BH_DROP_SPOOFED);
  if (link_control) {
    bh_count(BH_CTR_PASS_CONTROL);
    return TC_ACT_OK;
  }

  __u64 now = bpf_ktime_get_ns();
  if (pkt.frag == BH_FRAG_LATER) {
    struct bh_frag_entry* f = bh_frag_lookup(&pkt, ifindex, dir, now);
    if (f) {
      pkt.sport = f->src_port;
      pkt.dport = f->dst_port;
    }
    if ((f && f->allowed) || (!f && cfg.mode != BH_MODE_ENFORCE)) {
      bh_count(BH_CTR_PASS_FRAG);
      return TC_ACT_OK;
    }
    return bh_drop(&ec, events_off, BH_CTR_DROP_FRAGMENT, BH_EV_PACKET, BH_DROP_FRAGMENT);
  }

  struct bh_ct_key key = {};
  bh_ct_key_build(&pkt, ifindex, dir, &key);
  int trackable = bh_ct_trackable(&pkt);
  if (trackable) {
    struct bh_ct_entry* e = bh_ct_lookup(&key, &pkt, s, now);
    if (e) return bh_ct_hit(skb, &ec, &cfg, &pkt, &key, e, s, events_off, now);
  } else if (bh_icmp_is_error(pkt.family, pkt.icmp_type) &&
             bh_ct_related(skb, &pkt, ifindex, dir, s, now)) {
    bh_count(BH_CTR_PASS_RELATED);
    return TC_ACT_OK;
  }
  return bh_new_flow(&ec, &cfg, &pkt, &key, trackable, s, events_off, now);
}
