/* Packet parsing for the TC datapath: Ethernet, IPv4/IPv6 (with extension headers and
 * fragments), and the L4 fields policy and conntrack need. */
#pragma once

#include "common.h"

/* Headers are copied out with bpf_skb_load_bytes rather than read in place: it works on
 * non-linear skbs (GRO, large packets) without bpf_skb_pull_data, and keeps every bounds
 * check in one helper. */

#define BH_ETH_HLEN 14
#define BH_IPV6_HLEN 40
/* IPv6 extension headers walked before giving up (and dropping: nothing skips policy). */
#define BH_MAX_IPV6_EXT 6

#define BH_IPV4_MF 0x2000
#define BH_IPV4_OFFSET 0x1fff

/* IPv6 extension header numbers. */
#define BH_NEXTHDR_HOP 0
#define BH_NEXTHDR_ROUTING 43
#define BH_NEXTHDR_FRAGMENT 44
#define BH_NEXTHDR_AUTH 51
#define BH_NEXTHDR_NONE 59
#define BH_NEXTHDR_DEST 60

/* TCP flags byte. */
#define BH_TCP_FIN 0x01
#define BH_TCP_SYN 0x02
#define BH_TCP_RST 0x04
#define BH_TCP_ACK 0x10

/* SCTP chunk types that end an association. */
#define BH_SCTP_ABORT 6
#define BH_SCTP_SHUTDOWN_COMPLETE 14

/* Where a packet stands with respect to IP fragmentation. */
#define BH_FRAG_NONE 0
#define BH_FRAG_FIRST 1 /* offset 0, more fragments follow: carries the L4 header */
#define BH_FRAG_LATER 2 /* offset > 0: no L4 header */

/* Parse results. */
#define BH_PARSE_IP 0
#define BH_PARSE_ARP 1
#define BH_PARSE_OTHER_L2 2
#define BH_PARSE_MALFORMED 3

struct bh_pkt {
  __u8 src[16];
  __u8 dst[16];
  __u32 l4_off;
  __u32 frag_id;
  __u16 sport; /* host order; ICMP: 0 */
  __u16 dport;
  __u16 icmp_id; /* ICMP/ICMPv6 echo identifier */
  __u8 family;
  __u8 protocol;
  __u8 frag;
  __u8 tcp_flags;
  __u8 icmp_type;
  __u8 icmp_code;
  __u8 sctp_chunk; /* type of the first SCTP chunk */
  __u8 pad[3];
};

/* ICMP helpers, shared by parsing and conntrack. */
static __always_inline int bh_icmp_is_echo_request(__u8 family, __u8 type) {
  return family == BULKHEAD_FAMILY_IPV4 ? type == 8 : type == 128;
}
static __always_inline int bh_icmp_is_echo_reply(__u8 family, __u8 type) {
  return family == BULKHEAD_FAMILY_IPV4 ? type == 0 : type == 129;
}
/* Errors that quote the packet they are about (destination unreachable, packet too big,
 * time exceeded, parameter problem; IPv4 source quench and redirect). */
static __always_inline int bh_icmp_is_error(__u8 family, __u8 type) {
  if (family == BULKHEAD_FAMILY_IPV4)
    return type == 3 || type == 4 || type == 5 || type == 11 || type == 12;
  return type >= 1 && type <= 4;
}
/* ICMPv6 link control that IPv6 cannot work without: MLD (130-132, 143) and neighbour
 * discovery (133-137). They never leave the link, so they pass as control traffic. */
static __always_inline int bh_icmp6_is_link_control(__u8 type) {
  return (type >= 130 && type <= 137) || type == 143;
}

/* Reads the L4 fields at p->l4_off. Returns BH_PARSE_IP or BH_PARSE_MALFORMED: a first
 * fragment or whole packet too short for the ports is malformed (the tiny-fragment attack
 * hides ports in a later fragment; RFC 1858). */
static __always_inline int bh_parse_l4(struct __sk_buff* skb, struct bh_pkt* p) {
  __u8 l4[20];

  switch (p->protocol) {
    case IPPROTO_TCP:
      if (bpf_skb_load_bytes(skb, p->l4_off, l4, 20) < 0) return BH_PARSE_MALFORMED;
      p->sport = ((__u16)l4[0] << 8) | l4[1];
      p->dport = ((__u16)l4[2] << 8) | l4[3];
      p->tcp_flags = l4[13];
      return BH_PARSE_IP;
    case IPPROTO_UDP:
      if (bpf_skb_load_bytes(skb, p->l4_off, l4, 8) < 0) return BH_PARSE_MALFORMED;
      p->sport = ((__u16)l4[0] << 8) | l4[1];
      p->dport = ((__u16)l4[2] << 8) | l4[3];
      return BH_PARSE_IP;
    case IPPROTO_SCTP:
      if (bpf_skb_load_bytes(skb, p->l4_off, l4, 12) < 0) return BH_PARSE_MALFORMED;
      p->sport = ((__u16)l4[0] << 8) | l4[1];
      p->dport = ((__u16)l4[2] << 8) | l4[3];
      /* The first chunk type, when present, tells of an association's end. */
      if (bpf_skb_load_bytes(skb, p->l4_off + 12, l4, 1) == 0) p->sctp_chunk = l4[0];
      return BH_PARSE_IP;
    case IPPROTO_ICMP:
    case IPPROTO_ICMPV6:
      if ((p->protocol == IPPROTO_ICMP) != (p->family == BULKHEAD_FAMILY_IPV4))
        return BH_PARSE_IP; /* ICMP over IPv6 or ICMPv6 over IPv4: an opaque protocol */
      if (bpf_skb_load_bytes(skb, p->l4_off, l4, 8) < 0) return BH_PARSE_MALFORMED;
      p->icmp_type = l4[0];
      p->icmp_code = l4[1];
      p->icmp_id = ((__u16)l4[4] << 8) | l4[5];
      return BH_PARSE_IP;
    default:
      return BH_PARSE_IP; /* no ports: policy sees port 0 */
  }
}

static __always_inline int bh_parse_ipv4(struct __sk_buff* skb, __u32 off, struct bh_pkt* p) {
  __u8 h[20];
  if (bpf_skb_load_bytes(skb, off, h, 20) < 0) return BH_PARSE_MALFORMED;
  __u8 ihl = h[0] & 0x0f;
  if ((h[0] >> 4) != 4 || ihl < 5) return BH_PARSE_MALFORMED;

  p->family = BULKHEAD_FAMILY_IPV4;
  p->protocol = h[9];
  __builtin_memcpy(p->src, &h[12], 4);
  __builtin_memcpy(p->dst, &h[16], 4);
  p->l4_off = off + (__u32)ihl * 4;

  __u16 frag_off = ((__u16)h[6] << 8) | h[7];
  if (frag_off & BH_IPV4_OFFSET)
    p->frag = BH_FRAG_LATER;
  else if (frag_off & BH_IPV4_MF)
    p->frag = BH_FRAG_FIRST;
  p->frag_id = ((__u32)h[4] << 8) | h[5];
  if (p->frag == BH_FRAG_LATER) return BH_PARSE_IP;
  return bh_parse_l4(skb, p);
}

static __always_inline int bh_parse_ipv6(struct __sk_buff* skb, __u32 off, struct bh_pkt* p) {
  __u8 h[40];
  if (bpf_skb_load_bytes(skb, off, h, 40) < 0) return BH_PARSE_MALFORMED;
  if ((h[0] >> 4) != 6) return BH_PARSE_MALFORMED;

  p->family = BULKHEAD_FAMILY_IPV6;
  __builtin_memcpy(p->src, &h[8], 16);
  __builtin_memcpy(p->dst, &h[24], 16);

  __u8 nexthdr = h[6];
  off += BH_IPV6_HLEN;
#pragma unroll
  for (int i = 0; i < BH_MAX_IPV6_EXT; i++) {
    if (nexthdr != BH_NEXTHDR_HOP && nexthdr != BH_NEXTHDR_ROUTING &&
        nexthdr != BH_NEXTHDR_FRAGMENT && nexthdr != BH_NEXTHDR_AUTH && nexthdr != BH_NEXTHDR_DEST)
      break;
    __u8 ext[8];
    if (bpf_skb_load_bytes(skb, off, ext, 8) < 0) return BH_PARSE_MALFORMED;
    if (nexthdr == BH_NEXTHDR_FRAGMENT) {
      __u16 fo = ((__u16)ext[2] << 8) | ext[3];
      p->frag_id = ((__u32)ext[4] << 24) | ((__u32)ext[5] << 16) | ((__u32)ext[6] << 8) | ext[7];
      if (fo & 0xfff8)
        p->frag = BH_FRAG_LATER;
      else if (fo & 1)
        p->frag = BH_FRAG_FIRST;
      off += 8;
    } else if (nexthdr == BH_NEXTHDR_AUTH) {
      off += ((__u32)ext[1] + 2) * 4;
    } else {
      off += ((__u32)ext[1] + 1) * 8;
    }
    nexthdr = ext[0];
    if (p->frag == BH_FRAG_LATER) break; /* what follows is payload, not headers */
  }
  p->protocol = nexthdr;
  p->l4_off = off;
  if (p->frag == BH_FRAG_LATER) return BH_PARSE_IP;
  /* Still an extension header after the walk: too many to inspect, so refuse the packet
   * rather than guess where the ports are. */
  if (nexthdr == BH_NEXTHDR_HOP || nexthdr == BH_NEXTHDR_ROUTING ||
      nexthdr == BH_NEXTHDR_FRAGMENT || nexthdr == BH_NEXTHDR_AUTH || nexthdr == BH_NEXTHDR_DEST)
    return BH_PARSE_MALFORMED;
  return bh_parse_l4(skb, p);
}

/* Parses the frame into *p (which the caller zeroes). ARP's sender address lands in
 * p->src (first 4 bytes) so the caller can check it for spoofing. */
static __always_inline int bh_parse(struct __sk_buff* skb, struct bh_pkt* p) {
  __u8 eth[BH_ETH_HLEN];
  if (bpf_skb_load_bytes(skb, 0, eth, BH_ETH_HLEN) < 0) return BH_PARSE_MALFORMED;
  __u16 proto = ((__u16)eth[12] << 8) | eth[13];

  if (proto == ETH_P_IP) return bh_parse_ipv4(skb, BH_ETH_HLEN, p);
  if (proto == ETH_P_IPV6) return bh_parse_ipv6(skb, BH_ETH_HLEN, p);
  if (proto == ETH_P_ARP) {
    /* Ethernet/IPv4 ARP only: htype 1, ptype 0x0800, hlen 6, plen 4. */
    __u8 arp[28];
    if (bpf_skb_load_bytes(skb, BH_ETH_HLEN, arp, 28) < 0) return BH_PARSE_MALFORMED;
    if (arp[0] != 0 || arp[1] != 1 || arp[2] != 0x08 || arp[3] != 0x00 || arp[4] != 6 ||
        arp[5] != 4)
      return BH_PARSE_MALFORMED;
    p->family = BULKHEAD_FAMILY_IPV4;
    __builtin_memcpy(p->src, &arp[14], 4);
    return BH_PARSE_ARP;
  }
  return BH_PARSE_OTHER_L2;
}
