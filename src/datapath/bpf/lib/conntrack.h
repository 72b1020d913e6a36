/* Conntrack: flow keys as the workload sees them, idle timeouts, TCP and SCTP teardown. */
#pragma once

#include "maps.h"
#include "parse.h"

/* A flow is tracked when its packets can be told apart by their header: TCP, UDP, SCTP and
 * other protocols by their ports (0 when there are none), ICMP by the echo identifier.
 * ICMP errors and other ICMP messages are not flows: errors pass when they quote a tracked
 * flow (bh_ct_related), the rest is decided by policy packet by packet. */
static __always_inline int bh_ct_trackable(const struct bh_pkt* p) {
  if (p->protocol == IPPROTO_ICMP || p->protocol == IPPROTO_ICMPV6) {
    if ((p->protocol == IPPROTO_ICMP) != (p->family == BULKHEAD_FAMILY_IPV4)) return 1;
    return bh_icmp_is_echo_request(p->family, p->icmp_type) ||
           bh_icmp_is_echo_reply(p->family, p->icmp_type);
  }
  return 1;
}

/* Builds the key of the packet's flow on endpoint `ifindex` for a packet travelling in `dir`
 * (workload POV): local is the workload's side. */
static __always_inline void bh_ct_key_build(const struct bh_pkt* p, __u32 ifindex, __u8 dir,
                                            struct bh_ct_key* k) {
  k->ifindex = ifindex;
  k->family = p->family;
  k->protocol = p->protocol;
  if (dir == BULKHEAD_DIR_EGRESS) {
    bh_addr_copy(k->local_addr, p->src);
    bh_addr_copy(k->remote_addr, p->dst);
    k->local_port = p->sport;
    k->remote_port = p->dport;
  } else {
    bh_addr_copy(k->local_addr, p->dst);
    bh_addr_copy(k->remote_addr, p->src);
    k->local_port = p->dport;
    k->remote_port = p->sport;
  }
  if ((p->protocol == IPPROTO_ICMP && p->family == BULKHEAD_FAMILY_IPV4) ||
      (p->protocol == IPPROTO_ICMPV6 && p->family == BULKHEAD_FAMILY_IPV6)) {
    /* Request and reply share the identifier; the key records who sent the request, so an
     * inbound request cannot ride on the entry of an outbound ping. */
    int request = bh_icmp_is_echo_request(p->family, p->icmp_type);
    int workload_asked = request == (dir == BULKHEAD_DIR_EGRESS);
    k->local_port = p->icmp_id;
    k->remote_port = workload_asked ? BH_CT_ICMP_ECHO_OUT : BH_CT_ICMP_ECHO_IN;
  }
}

static __always_inline __u64 bh_or_default(__u64 v, __u64 dflt) { return v ? v : dflt; }

/* Time since the entry was last seen. Another CPU may have stamped it after this packet
 * read the clock, so "later than now" counts as just seen (and never as an underflow that
 * would expire a live flow). */
static __always_inline __u64 bh_ct_idle(const struct bh_ct_entry* e, __u64 now) {
  __u64 last = e->last_seen_ns;
  return now > last ? now - last : 0;
}

static __always_inline __u64 bh_ct_timeout(const struct bh_settings* s, __u8 protocol,
                                           const struct bh_ct_entry* e) {
  if (protocol == IPPROTO_TCP) {
    if (e->state == BH_CT_CLOSING)
      return bh_or_default(s ? s->ct_tcp_close_timeout_ns : 0, BH_DEFAULT_CT_TCP_CLOSE_TIMEOUT_NS);
    if (e->state == BH_CT_ESTABLISHED)
      return bh_or_default(s ? s->ct_tcp_est_timeout_ns : 0, BH_DEFAULT_CT_TCP_EST_TIMEOUT_NS);
    return bh_or_default(s ? s->ct_tcp_syn_timeout_ns : 0, BH_DEFAULT_CT_TCP_SYN_TIMEOUT_NS);
  }
  if (protocol == IPPROTO_ICMP || protocol == IPPROTO_ICMPV6)
    return bh_or_default(s ? s->ct_icmp_timeout_ns : 0, BH_DEFAULT_CT_ICMP_TIMEOUT_NS);
  return bh_or_default(s ? s->ct_udp_timeout_ns : 0, BH_DEFAULT_CT_UDP_TIMEOUT_NS);
}

/* Looks up the packet's flow. An expired entry, or a TCP SYN reusing the tuple of a closing
 * connection, is removed and reported as a miss, so the packet is decided as a new flow. */
static __always_inline struct bh_ct_entry* bh_ct_lookup(const struct bh_ct_key* key,
                                                        const struct bh_pkt* p,
                                                        const struct bh_settings* s, __u64 now) {
  struct bh_ct_entry* e = bpf_map_lookup_elem(&bh_ct, key);
  if (!e) return NULL;
  int expired = bh_ct_idle(e, now) > bh_ct_timeout(s, key->protocol, e);
  int reused = p->protocol == IPPROTO_TCP && e->state == BH_CT_CLOSING &&
               (p->tcp_flags & (BH_TCP_SYN | BH_TCP_ACK)) == BH_TCP_SYN;
  if (expired || reused) {
    bpf_map_delete_elem(&bh_ct, key);
    bh_count(BH_CTR_CT_REMOVED);
    return NULL;
  }
  return e;
}

/* Advances the entry's state for a packet of the flow. Returns 1 when the packet ends the
 * flow at once (TCP RST, SCTP ABORT or SHUTDOWN COMPLETE): the caller passes the packet and
 * removes the entry. */
static __always_inline int bh_ct_update(struct bh_ct_entry* e, const struct bh_pkt* p, int is_reply,
                                        __u64 now) {
  __u8 flags = e->flags;
  __u8 state = e->state;
  if (is_reply) {
    flags |= BH_CT_F_SEEN_REPLY;
    if (state == BH_CT_NEW) state = BH_CT_ESTABLISHED;
  }
  if (p->protocol == IPPROTO_TCP) {
    if (p->tcp_flags & BH_TCP_RST) return 1;
    if (p->tcp_flags & BH_TCP_FIN) flags |= is_reply ? BH_CT_F_FIN_REPLY : BH_CT_F_FIN_ORIG;
    if ((flags & (BH_CT_F_FIN_ORIG | BH_CT_F_FIN_REPLY)) == (BH_CT_F_FIN_ORIG | BH_CT_F_FIN_REPLY))
      state = BH_CT_CLOSING;
  } else if (p->protocol == IPPROTO_SCTP) {
    if (p->sctp_chunk == BH_SCTP_ABORT || p->sctp_chunk == BH_SCTP_SHUTDOWN_COMPLETE) return 1;
  }
  /* Write only what changed, and the timestamp at most once per refresh interval: every
   * write dirties a cache line that all CPUs handling this flow share. */
  if (flags != e->flags) e->flags = flags;
  if (state != e->state) {
    e->state = state;
    e->last_seen_ns = now;
  } else if (bh_ct_idle(e, now) > BH_CT_REFRESH_NS) {
    e->last_seen_ns = now;
  }
  return 0;
}

static __always_inline void bh_ct_remove(const struct bh_ct_key* key) {
  if (bpf_map_delete_elem(&bh_ct, key) == 0) bh_count(BH_CTR_CT_REMOVED);
}

/* For an ICMP error, finds the tracked flow of the packet it quotes. The quoted packet went
 * the opposite way of the error, so its key is built with the direction reversed. */
static __always_inline int bh_ct_related(struct __sk_buff* skb, const struct bh_pkt* p,
                                         __u32 ifindex, __u8 dir, const struct bh_settings* s,
                                         __u64 now) {
  struct bh_pkt inner = {};
  __u32 off = p->l4_off + 8;
  int r;
  if (p->family == BULKHEAD_FAMILY_IPV4)
    r = bh_parse_ipv4(skb, off, &inner);
  else
    r = bh_parse_ipv6(skb, off, &inner);
  /* The quote may be cut short after 8 bytes of L4 header: TCP's flags are then missing,
   * but its ports are there, which is all the key needs. Retry the L4 part leniently. */
  if (r != BH_PARSE_IP && inner.family != 0 && inner.protocol == IPPROTO_TCP) {
    __u8 l4[4];
    if (bpf_skb_load_bytes(skb, inner.l4_off, l4, 4) < 0) return 0;
    inner.sport = ((__u16)l4[0] << 8) | l4[1];
    inner.dport = ((__u16)l4[2] << 8) | l4[3];
    r = BH_PARSE_IP;
  }
  if (r != BH_PARSE_IP || inner.family != p->family || inner.frag == BH_FRAG_LATER) return 0;
  if (!bh_ct_trackable(&inner)) return 0;
  struct bh_ct_key key = {};
  bh_ct_key_build(&inner, ifindex,
                  dir == BULKHEAD_DIR_EGRESS ? BULKHEAD_DIR_INGRESS : BULKHEAD_DIR_EGRESS, &key);
  struct bh_ct_entry* e = bpf_map_lookup_elem(&bh_ct, &key);
  if (!e) return 0;
  return bh_ct_idle(e, now) <= bh_ct_timeout(s, key.protocol, e);
}
