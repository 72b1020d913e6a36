/* The binary interface between the policy compiler (C++) and the eBPF datapath (BPF C):
 * keys, values and constants of the ipcache and policy maps.
 *
 * Included by BPF programs (clang -target bpf, with linux/types.h) and by C++. Every struct
 * has fixed-width fields, explicit padding (which writers must zero: the kernel compares
 * whole keys) and no bitfields; the static asserts below pin sizes and offsets so that a
 * change on one side that the other does not see fails to compile.
 *
 * One policy decision in the kernel is at most three lookups (design §4):
 *   1. ipcache (LPM trie): the peer's address -> peer identity (miss: WORLD).
 *   2. policy peers (hash): {table, peer identity, direction} -> class (miss: class 0).
 *   3. policy ports (LPM trie): {table, class, direction, protocol, port} -> verdict.
 * The compiler writes full coverage: for every table, every class (0 included), both
 * directions and each of TCP, UDP, SCTP, ICMP and ICMPv6 the port trie has an entry that
 * covers every port, so lookup 3 never misses; a miss is a datapath bug and must drop.
 */
#ifndef BULKHEAD_DATAPATH_ABI_BULKHEAD_ABI_H_
#define BULKHEAD_DATAPATH_ABI_BULKHEAD_ABI_H_

#include <linux/types.h>

#ifdef __cplusplus
#define BULKHEAD_STATIC_ASSERT(cond, msg) static_assert(cond, msg)
#else
#define BULKHEAD_STATIC_ASSERT(cond, msg) _Static_assert(cond, msg)
#endif
#define BULKHEAD_ASSERT_LAYOUT(type, field, offset) \
  BULKHEAD_STATIC_ASSERT(__builtin_offsetof(type, field) == (offset), #type "." #field)

/* ---- Identities ---------------------------------------------------------------------- */
/* Reserved identities. */
#define BULKHEAD_IDENTITY_HOST 1U    /* the local host */
#define BULKHEAD_IDENTITY_WORLD 2U   /* outside the cluster and in no CIDR policy names */
#define BULKHEAD_IDENTITY_UNKNOWN 3U /* not resolvable */
/* Workload identities are allocated from here ... */
#define BULKHEAD_IDENTITY_FIRST_WORKLOAD 256U
/* ... and CIDR identities (external address classes) from here. */
#define BULKHEAD_IDENTITY_FIRST_CIDR (1U << 24)

/* ---- ipcache: BPF_MAP_TYPE_LPM_TRIE, key bulkhead_ipcache_key -> bulkhead_ipcache_value */
#define BULKHEAD_FAMILY_IPV4 4
#define BULKHEAD_FAMILY_IPV6 6

/* prefixlen counts bits from `family`: family and pad are always matched in full
 * (BULKHEAD_IPCACHE_PREFIX_BASE bits), then the first n bits of addr for a /n prefix.
 * An IPv4 address occupies addr[0..3]; addr[4..15] are zero. */
struct bulkhead_ipcache_key {
  __u32 prefixlen;
  __u8 family; /* BULKHEAD_FAMILY_IPV4 or _IPV6 */
  __u8 pad[3];
  __u8 addr[16]; /* network byte order */
};
#define BULKHEAD_IPCACHE_PREFIX_BASE 32U

/* ipcache value flags */
#define BULKHEAD_IPCACHE_F_WORKLOAD 1U /* the address of a workload */
#define BULKHEAD_IPCACHE_F_NODE 2U     /* the address of a cluster node */

struct bulkhead_ipcache_value {
  __u32 identity;
  __u32 flags;
};

BULKHEAD_STATIC_ASSERT(sizeof(struct bulkhead_ipcache_key) == 24, "ipcache key size");
BULKHEAD_ASSERT_LAYOUT(struct bulkhead_ipcache_key, prefixlen, 0);
BULKHEAD_ASSERT_LAYOUT(struct bulkhead_ipcache_key, family, 4);
BULKHEAD_ASSERT_LAYOUT(struct bulkhead_ipcache_key, pad, 5);
BULKHEAD_ASSERT_LAYOUT(struct bulkhead_ipcache_key, addr, 8);
BULKHEAD_STATIC_ASSERT(sizeof(struct bulkhead_ipcache_value) == 8, "ipcache value size");
BULKHEAD_ASSERT_LAYOUT(struct bulkhead_ipcache_value, identity, 0);
BULKHEAD_ASSERT_LAYOUT(struct bulkhead_ipcache_value, flags, 4);

/* ---- Policy tables --------------------------------------------------------------------
 * A policy table is the complete policy of one local identity (identities with identical
 * policy may share a table). Every endpoint points at a table id (the endpoint map is the
 * datapath's). Updates are atomic per endpoint: a compile writes its tables under ids
 * that no live table uses (the caller passes a base), then switches each endpoint's table
 * id with one map write, then deletes the old tables. Table id 0 is never used. */
#define BULKHEAD_TABLE_NONE 0U

#define BULKHEAD_DIR_INGRESS 0 /* traffic into the local workload */
#define BULKHEAD_DIR_EGRESS 1  /* traffic out of the local workload */

/* ---- policy peers: BPF_MAP_TYPE_HASH, bulkhead_policy_peer_key -> _value --------------
 * Peers whose verdicts (for every protocol and port) are equal share a class. A peer
 * identity absent from the map is in class 0, BULKHEAD_CLASS_DEFAULT: the class of a peer
 * that matches no specific rule peer (no pod/namespace selector, ipBlock or node
 * selector), only rules that allow every peer. WORLD, HOST and UNKNOWN are always in
 * class 0, and so is every identity whose verdicts equal class 0's (it gets no entry). */
#define BULKHEAD_CLASS_DEFAULT 0U

struct bulkhead_policy_peer_key {
  __u32 table_id;
  __u32 peer_identity;
  __u8 direction; /* BULKHEAD_DIR_* */
  __u8 pad[3];
};

struct bulkhead_policy_peer_value {
  __u32 class_id;
};

BULKHEAD_STATIC_ASSERT(sizeof(struct bulkhead_policy_peer_key) == 12, "peer key size");
BULKHEAD_ASSERT_LAYOUT(struct bulkhead_policy_peer_key, table_id, 0);
BULKHEAD_ASSERT_LAYOUT(struct bulkhead_policy_peer_key, peer_identity, 4);
BULKHEAD_ASSERT_LAYOUT(struct bulkhead_policy_peer_key, direction, 8);
BULKHEAD_ASSERT_LAYOUT(struct bulkhead_policy_peer_key, pad, 9);
BULKHEAD_STATIC_ASSERT(sizeof(struct bulkhead_policy_peer_value) == 4, "peer value size");

/* ---- policy ports: BPF_MAP_TYPE_LPM_TRIE, bulkhead_policy_port_key -> _value ----------
 * prefixlen counts bits from table_id: table_id, class_id, direction and protocol are
 * always matched in full (BULKHEAD_PORT_PREFIX_BASE = 80 bits), then the first n bits of
 * the port for an entry covering the ports whose top n bits equal those of `port`. Port
 * ranges are expanded into such prefixes, nested where that needs fewer entries (the
 * longest match wins). Lookups use prefixlen BULKHEAD_PORT_PREFIX_FULL with the
 * destination port; protocols without ports (ICMP, ICMPv6) use port 0, and their one
 * entry covers no port bits (prefixlen BULKHEAD_PORT_PREFIX_BASE). */
struct bulkhead_policy_port_key {
  __u32 prefixlen;
  __u32 table_id;
  __u32 class_id;
  __u8 direction; /* BULKHEAD_DIR_* */
  __u8 protocol;  /* IPPROTO_TCP, _UDP, _SCTP, _ICMP, _ICMPV6 */
  __u16 port;     /* destination port, network byte order */
};
#define BULKHEAD_PORT_PREFIX_BASE 80U
#define BULKHEAD_PORT_PREFIX_FULL 96U

/* verdict */
#define BULKHEAD_VERDICT_ALLOW 1
#define BULKHEAD_VERDICT_DENY 2

/* tier that decided (as in the reference evaluator) */
#define BULKHEAD_TIER_ADMIN 0
#define BULKHEAD_TIER_NAMESPACE 1
#define BULKHEAD_TIER_BASELINE 2
#define BULKHEAD_TIER_DEFAULT 3

/* reason */
#define BULKHEAD_REASON_RULE 0          /* rule_id says which rule matched */
#define BULKHEAD_REASON_ISOLATED 1      /* namespace tier: selected, no rule allowed */
#define BULKHEAD_REASON_DEFAULT_ALLOW 2 /* no policy decided */
#define BULKHEAD_REASON_DEFAULT_DENY 3  /* a DefaultDeny selects the workload (rule_id) */

/* flags */
/* An audit-mode policy would deny this allowed flow if it were enforced (report it as
 * AUDIT). Set only together with BULKHEAD_VERDICT_ALLOW. */
#define BULKHEAD_POLICY_F_AUDIT_WOULD_DENY 1U

/* rule_id indexes the compiler's rule table (policy, direction, rule index, tier,
 * action), for explain and flow events. 0: no rule (default allow, isolation). */
#define BULKHEAD_RULE_NONE 0U

struct bulkhead_policy_port_value {
  __u8 verdict; /* BULKHEAD_VERDICT_* */
  __u8 tier;    /* BULKHEAD_TIER_* */
  __u8 flags;   /* BULKHEAD_POLICY_F_* */
  __u8 reason;  /* BULKHEAD_REASON_* */
  __u32 rule_id;
};

BULKHEAD_STATIC_ASSERT(sizeof(struct bulkhead_policy_port_key) == 16, "port key size");
BULKHEAD_ASSERT_LAYOUT(struct bulkhead_policy_port_key, prefixlen, 0);
BULKHEAD_ASSERT_LAYOUT(struct bulkhead_policy_port_key, table_id, 4);
BULKHEAD_ASSERT_LAYOUT(struct bulkhead_policy_port_key, class_id, 8);
BULKHEAD_ASSERT_LAYOUT(struct bulkhead_policy_port_key, direction, 12);
BULKHEAD_ASSERT_LAYOUT(struct bulkhead_policy_port_key, protocol, 13);
BULKHEAD_ASSERT_LAYOUT(struct bulkhead_policy_port_key, port, 14);
BULKHEAD_STATIC_ASSERT(sizeof(struct bulkhead_policy_port_value) == 8, "port value size");
BULKHEAD_ASSERT_LAYOUT(struct bulkhead_policy_port_value, verdict, 0);
BULKHEAD_ASSERT_LAYOUT(struct bulkhead_policy_port_value, tier, 1);
BULKHEAD_ASSERT_LAYOUT(struct bulkhead_policy_port_value, flags, 2);
BULKHEAD_ASSERT_LAYOUT(struct bulkhead_policy_port_value, reason, 3);
BULKHEAD_ASSERT_LAYOUT(struct bulkhead_policy_port_value, rule_id, 4);
BULKHEAD_STATIC_ASSERT(BULKHEAD_PORT_PREFIX_BASE ==
                           8 * (__builtin_offsetof(struct bulkhead_policy_port_key, port) -
                                __builtin_offsetof(struct bulkhead_policy_port_key, table_id)),
                       "port prefix base counts table_id..protocol");
BULKHEAD_STATIC_ASSERT(BULKHEAD_IPCACHE_PREFIX_BASE ==
                           8 * (__builtin_offsetof(struct bulkhead_ipcache_key, addr) -
                                __builtin_offsetof(struct bulkhead_ipcache_key, family)),
                       "ipcache prefix base counts family and pad");

#endif /* BULKHEAD_DATAPATH_ABI_BULKHEAD_ABI_H_ */
