/* The datapath's own BPF ABI: endpoint config, conntrack, fragments, counters, settings and
 * flow events, shared by the BPF C programs and the C++ loader. */
#pragma once

/* Layout rules (both sides compile this file): fixed-width kernel types only, explicit
 * padding, no bitfields, no enums as field types (an enum's size is the compiler's choice),
 * and a static assert on every struct's size and on the offsets userspace relies on.
 * Addresses are 16 bytes in network order; IPv4 uses the first 4 and zeroes the rest.
 * Ports are in host byte order everywhere in this header. */

#include <linux/types.h>

/* Families (BULKHEAD_FAMILY_*), directions (BULKHEAD_DIR_*) and the policy verdict, tier,
 * reason and flag codes echoed in events come from the compiler's ABI. */
#include "datapath/abi/bulkhead_abi.h"

#ifdef __cplusplus
#include <cstddef>
#define BH_DP_STATIC_ASSERT(cond, msg) static_assert(cond, msg)
#else
#include <stddef.h>
#define BH_DP_STATIC_ASSERT(cond, msg) _Static_assert(cond, msg)
#endif

/* Endpoint modes (bh_endpoint_config.mode). */
#define BH_MODE_ENFORCE 0 /* deny drops */
#define BH_MODE_AUDIT 1   /* deny passes and is reported as AUDIT */
#define BH_MODE_LEARN 2   /* everything passes and is reported as LEARN */

/* ---- endpoint config: map bh_endpoints, key = host-side ifindex (__u32) ---- */
struct bh_endpoint_config {
  __u32 endpoint_id;       /* the agent's id of the workload, echoed in events */
  __u32 identity;          /* the workload's own security identity */
  __u32 policy_table_id;   /* table in bh_pol_peer / bh_pol_port in force for this endpoint */
  __u32 policy_generation; /* bumped on every policy, mode or peer change of this endpoint;
                              conntrack entries validated under another generation are
                              re-checked against the current table on their next packet */
  __u8 mode;               /* BH_MODE_* */
  __u8 miss_verdict;       /* BULKHEAD_VERDICT_* applied when the endpoint has no table yet
                              (policy_table_id BULKHEAD_TABLE_NONE) or a lookup misses (the
                              compiler covers every flow, so a miss is a bug): 0 means DENY */
  __u8 flags;              /* BH_EP_F_* */
  __u8 pad0;
  __u32 pad1;
};
BH_DP_STATIC_ASSERT(sizeof(struct bh_endpoint_config) == 24, "bh_endpoint_config size");
BH_DP_STATIC_ASSERT(offsetof(struct bh_endpoint_config, mode) == 16, "bh_endpoint_config.mode");

/* Anti-spoofing is on for every endpoint unless this flag is set (hosts that route for others). */
#define BH_EP_F_NO_ANTISPOOF 0x01

/* ---- the workload's own addresses: map bh_ep_addrs ---- */
struct bh_ep_addr_key {
  __u32 ifindex;
  __u8 family; /* BULKHEAD_FAMILY_* */
  __u8 pad[3];
  __u8 addr[16];
};
BH_DP_STATIC_ASSERT(sizeof(struct bh_ep_addr_key) == 24, "bh_ep_addr_key size");
/* value: __u32, unused (1) */

/* ---- conntrack: map bh_ct (LRU hash) ----
 * One entry per flow per endpoint, keyed as the workload sees the flow (local = the
 * workload's side), so the packets of both directions on that endpoint's veth find the
 * same entry, and the two endpoints of a same-host flow keep separate entries: each side's
 * policy is enforced on its own hook. ICMP echo: local_port = identifier, remote_port =
 * BH_CT_ICMP_ECHO_OUT or _IN (who sent the request), so an inbound request never matches
 * an outbound ping's entry. */
struct bh_ct_key {
  __u32 ifindex;
  __u8 family;
  __u8 protocol;
  __u16 local_port;
  __u16 remote_port;
  __u16 pad;
  __u8 local_addr[16];
  __u8 remote_addr[16];
};
BH_DP_STATIC_ASSERT(sizeof(struct bh_ct_key) == 44, "bh_ct_key size");
BH_DP_STATIC_ASSERT(offsetof(struct bh_ct_key, local_addr) == 12, "bh_ct_key.local_addr");

#define BH_CT_ICMP_ECHO_OUT 1 /* the workload sent the echo request */
#define BH_CT_ICMP_ECHO_IN 2  /* the peer sent the echo request */

/* Conntrack states (bh_ct_entry.state). */
#define BH_CT_NEW 0         /* only the originating direction seen */
#define BH_CT_ESTABLISHED 1 /* a reply was seen */
#define BH_CT_CLOSING 2     /* TCP FIN from both sides: short timeout */

/* Conntrack flags (bh_ct_entry.flags). */
#define BH_CT_F_WOULD_DENY 0x01 /* policy denies the flow; it passes in audit or learn mode */
#define BH_CT_F_FIN_ORIG 0x02   /* FIN seen from the originator */
#define BH_CT_F_FIN_REPLY 0x04  /* FIN seen from the responder */
#define BH_CT_F_SEEN_REPLY 0x08 /* at least one packet in the reply direction */

struct bh_ct_entry {
  __u64 created_ns;        /* bpf_ktime_get_ns() (CLOCK_MONOTONIC) */
  __u64 last_seen_ns;      /* refreshed at most every BH_CT_REFRESH_NS, or on a state change */
  __u32 policy_generation; /* generation the verdict was computed under */
  __u32 peer_identity;     /* identity of the remote side when the verdict was computed */
  __u32 rule_id;           /* rule that decided */
  __u8 origin;             /* direction (workload POV) of the first packet: BULKHEAD_DIR_* */
  __u8 state;              /* BH_CT_* state */
  __u8 flags;              /* BH_CT_F_* */
  __u8 tier;               /* tier that decided */
  __u8 mode;               /* endpoint mode the verdict was computed under */
  __u8 pad[7];
};
BH_DP_STATIC_ASSERT(sizeof(struct bh_ct_entry) == 40, "bh_ct_entry size");
BH_DP_STATIC_ASSERT(offsetof(struct bh_ct_entry, origin) == 28, "bh_ct_entry.origin");

/* ---- IP fragments: map bh_frags (LRU hash) ----
 * Non-first fragments carry no ports, so they cannot be looked up in policy. The datapath
 * decides a fragmented datagram on its first fragment (which carries the L4 header; a first
 * fragment too short to hold the ports is dropped) and records that decision here, keyed by
 * the datagram's (endpoint, direction, src, dst, protocol, IP id). Later fragments follow the
 * recorded decision; a later fragment with no record (first fragment not seen, reordered,
 * evicted or expired) is dropped. Reassembly in the workload then fails safe. */
struct bh_frag_key {
  __u32 ifindex;
  __u32 id; /* IPv4 identification (16 bits) or IPv6 fragment identification */
  __u8 family;
  __u8 protocol;
  __u8 direction; /* BULKHEAD_DIR_* of the packets (workload POV) */
  __u8 pad;
  __u8 src_addr[16];
  __u8 dst_addr[16];
};
BH_DP_STATIC_ASSERT(sizeof(struct bh_frag_key) == 44, "bh_frag_key size");

struct bh_frag_entry {
  __u64 expires_ns;
  __u32 peer_identity;
  __u32 rule_id;
  __u16 src_port; /* of the first fragment, for events */
  __u16 dst_port;
  __u8 allowed; /* 1: later fragments pass, 0: they are dropped */
  __u8 pad[3];
};
BH_DP_STATIC_ASSERT(sizeof(struct bh_frag_entry) == 24, "bh_frag_entry size");

/* ---- runtime settings: map bh_settings (array, one entry, key 0) ----
 * Written by the loader on every open; the programs read it per packet, so settings change
 * without reloading programs. All-zero settings mean the defaults below. */
struct bh_settings {
  __u64 ct_tcp_syn_timeout_ns;   /* TCP flow with no reply yet */
  __u64 ct_tcp_est_timeout_ns;   /* established TCP */
  __u64 ct_tcp_close_timeout_ns; /* after FIN both ways */
  __u64 ct_udp_timeout_ns;       /* UDP, SCTP and other protocols */
  __u64 ct_icmp_timeout_ns;      /* ICMP/ICMPv6 echo */
  __u64 frag_timeout_ns;         /* how long a first fragment's decision stands */
  __u32 events_off;              /* BH_EVF_* classes switched off (0: every event on) */
  __u32 pad;
};
BH_DP_STATIC_ASSERT(sizeof(struct bh_settings) == 56, "bh_settings size");

#define BH_DEFAULT_CT_TCP_SYN_TIMEOUT_NS (60ULL * 1000000000ULL)
#define BH_DEFAULT_CT_TCP_EST_TIMEOUT_NS (6ULL * 3600ULL * 1000000000ULL)
#define BH_DEFAULT_CT_TCP_CLOSE_TIMEOUT_NS (10ULL * 1000000000ULL)
#define BH_DEFAULT_CT_UDP_TIMEOUT_NS (60ULL * 1000000000ULL)
#define BH_DEFAULT_CT_ICMP_TIMEOUT_NS (30ULL * 1000000000ULL)
#define BH_DEFAULT_FRAG_TIMEOUT_NS (30ULL * 1000000000ULL)
/* last_seen is rewritten at most this often per entry, to keep cache lines quiet. */
#define BH_CT_REFRESH_NS 1000000000ULL

/* Classes of events (bh_settings.events_off switches them off; zeroed settings emit all).
 * Allowed new flows can be switched off to measure what events cost. */
#define BH_EVF_NEW_FLOWS 0x01 /* allowed new flows (ALLOW and LEARN) */
#define BH_EVF_DENIES 0x02    /* dropped packets */
#define BH_EVF_AUDITS 0x04    /* would-deny flows that passed (new or re-checked) */

/* ---- counters: map bh_counters (per-CPU array, __u64 per index) ---- */
#define BH_CTR_PASS_NEW 0          /* new flow allowed by policy */
#define BH_CTR_PASS_CT 1           /* packet of a tracked flow (either direction) */
#define BH_CTR_PASS_AUDIT 2        /* would-deny that passed in audit mode or by an audit rule */
#define BH_CTR_PASS_LEARN 3        /* new flow passed in learn mode */
#define BH_CTR_PASS_RELATED 4      /* ICMP error about a tracked flow */
#define BH_CTR_PASS_FRAG 5         /* later fragment of an allowed datagram */
#define BH_CTR_PASS_CONTROL 6      /* ARP, ICMPv6 neighbour discovery and MLD */
#define BH_CTR_DROP_POLICY 7       /* denied by policy (or a table miss in enforce mode) */
#define BH_CTR_DROP_REVOKED 8      /* tracked flow denied after a policy change */
#define BH_CTR_DROP_SPOOFED 9      /* source address not the workload's own */
#define BH_CTR_DROP_FRAGMENT 10    /* later fragment of a denied or unknown datagram */
#define BH_CTR_DROP_MALFORMED 11   /* truncated or invalid headers */
#define BH_CTR_DROP_NO_ENDPOINT 12 /* program on an interface with no endpoint config */
#define BH_CTR_DROP_L2 13          /* ethertype other than IPv4, IPv6 and ARP */
#define BH_CTR_EVENTS_SENT 14      /* events written to the ring buffer */
#define BH_CTR_EVENTS_LOST 15      /* events the ring buffer had no room for */
#define BH_CTR_CT_CREATED 16       /* conntrack entries created */
#define BH_CTR_CT_REMOVED 17 /* removed by RST, SCTP ABORT/SHUTDOWN COMPLETE, expiry or revoke */
#define BH_CTR_MAX 18

/* ---- flow events: map bh_events (ring buffer) ---- */
/* Event kinds. */
#define BH_EV_NEW_FLOW 1 /* first packet of a flow (its verdict says whether it passed) */
#define BH_EV_RECHECK 2  /* tracked flow re-checked after a policy change and now denied */
#define BH_EV_PACKET 3   /* a packet dropped outside any flow (spoofed, fragment, malformed) */

/* Event verdicts: what happened to the packet. */
#define BH_EV_ALLOW 1 /* passed: policy allows */
#define BH_EV_DENY 2  /* dropped */
#define BH_EV_AUDIT 3 /* passed: policy denies, endpoint in audit mode or rule in audit mode */
#define BH_EV_LEARN 4 /* passed: endpoint in learn mode (policy_verdict says what policy said) */

/* Datapath reasons (bh_flow_event.drop_reason), 0 for packets that passed. */
#define BH_DROP_NONE 0
#define BH_DROP_POLICY 1      /* policy denies */
#define BH_DROP_POLICY_MISS 2 /* no table entry; miss_verdict applied */
#define BH_DROP_REVOKED 3     /* established flow no longer allowed */
#define BH_DROP_SPOOFED 4     /* source not the workload's own */
#define BH_DROP_FRAGMENT 5    /* later fragment without an allowed first fragment */
#define BH_DROP_MALFORMED 6   /* truncated or invalid headers */
#define BH_DROP_NO_ENDPOINT 7 /* interface has no endpoint config */
#define BH_DROP_L2 8          /* unsupported ethertype */
#define BH_DROP_PROTOCOL                                         \
  9 /* IP protocol outside the policy model (not TCP, UDP, SCTP, \
       ICMP, ICMPv6): no table can allow it, so enforce drops it */

struct bh_flow_event {
  __u64 timestamp_ns;      /* bpf_ktime_get_ns() (CLOCK_MONOTONIC) */
  __u32 endpoint_id;       /* bh_endpoint_config.endpoint_id (0 when unknown) */
  __u32 ifindex;           /* host-side interface */
  __u32 endpoint_identity; /* the workload's identity */
  __u32 peer_identity;     /* identity of the other side (from the ipcache) */
  __u32 policy_table_id;
  __u32 policy_generation;
  __u32 rule_id;       /* rule that decided (compiler's id; BULKHEAD_RULE_NONE = none) */
  __u32 pkt_len;       /* bytes of the packet */
  __u8 kind;           /* BH_EV_NEW_FLOW / RECHECK / PACKET */
  __u8 verdict;        /* BH_EV_ALLOW / DENY / AUDIT / LEARN */
  __u8 direction;      /* BULKHEAD_DIR_* of the packet, workload POV */
  __u8 family;         /* BULKHEAD_FAMILY_* */
  __u8 protocol;       /* IP protocol number */
  __u8 tier;           /* BULKHEAD_TIER_* that decided */
  __u8 policy_verdict; /* BULKHEAD_VERDICT_* of the tables, before the mode; 0 if none */
  __u8 policy_flags;   /* BULKHEAD_POLICY_F_* of the table entry */
  __u8 policy_reason;  /* BULKHEAD_REASON_* of the table entry */
  __u8 drop_reason;    /* BH_DROP_* */
  __u8 mode;           /* endpoint mode */
  __u8 tcp_flags;      /* TCP flags byte of the packet */
  __u8 icmp_type;      /* ICMP/ICMPv6 type and code, else 0 */
  __u8 icmp_code;
  __u8 pad0[2];
  __u16 src_port; /* host order; 0 for protocols without ports */
  __u16 dst_port;
  __u8 src_addr[16]; /* as in the packet (the workload is src for egress) */
  __u8 dst_addr[16];
  __u32 pad1;
};
BH_DP_STATIC_ASSERT(sizeof(struct bh_flow_event) == 96, "bh_flow_event size");
BH_DP_STATIC_ASSERT(offsetof(struct bh_flow_event, kind) == 40, "bh_flow_event.kind");
BH_DP_STATIC_ASSERT(offsetof(struct bh_flow_event, src_port) == 56, "bh_flow_event.src_port");
BH_DP_STATIC_ASSERT(offsetof(struct bh_flow_event, src_addr) == 60, "bh_flow_event.src_addr");

/* ---- attachment registry: map bh_attach (hash, key = ifindex) ----
 * Not read by the programs: it records, next to the pinned maps, which interfaces carry our
 * filters and whether we created their clsact qdisc, so a restarted loader can re-point them
 * to new programs and a teardown removes exactly what was made. */
struct bh_attach_entry {
  __u32 flags; /* BH_ATT_F_* */
  __u32 pad;
};
BH_DP_STATIC_ASSERT(sizeof(struct bh_attach_entry) == 8, "bh_attach_entry size");
#define BH_ATT_F_CREATED_QDISC 0x01 /* we created the clsact qdisc: remove it on detach */

/* TC filter identity used on every interface (priority and handle of our filters). */
#define BH_TC_PRIORITY 0xb1
#define BH_TC_HANDLE 0xb1
