/* IP fragments: the first fragment's decision, recorded for the later fragments of its
 * datagram (the policy on fragments is documented at bh_frag_key in datapath_abi.h). */
#pragma once

#include "maps.h"
#include "parse.h"

static __always_inline void bh_frag_key_build(const struct bh_pkt* p, __u32 ifindex, __u8 dir,
                                              struct bh_frag_key* k) {
  k->ifindex = ifindex;
  k->id = p->frag_id;
  k->family = p->family;
  k->protocol = p->protocol;
  k->direction = dir;
  bh_addr_copy(k->src_addr, p->src);
  bh_addr_copy(k->dst_addr, p->dst);
}

/* Records the decision taken on a first fragment. */
static __always_inline void bh_frag_record(const struct bh_pkt* p, __u32 ifindex, __u8 dir,
                                           int allowed, __u32 peer_identity, __u32 rule_id,
                                           const struct bh_settings* s, __u64 now) {
  struct bh_frag_key k = {};
  bh_frag_key_build(p, ifindex, dir, &k);
  struct bh_frag_entry e = {};
  __u64 timeout = s && s->frag_timeout_ns ? s->frag_timeout_ns : BH_DEFAULT_FRAG_TIMEOUT_NS;
  e.expires_ns = now + timeout;
  e.peer_identity = peer_identity;
  e.rule_id = rule_id;
  e.src_port = p->sport;
  e.dst_port = p->dport;
  e.allowed = allowed ? 1 : 0;
  bpf_map_update_elem(&bh_frags, &k, &e, BPF_ANY);
}

/* Finds the recorded decision for a later fragment; NULL when there is none in force. */
static __always_inline struct bh_frag_entry* bh_frag_lookup(const struct bh_pkt* p, __u32 ifindex,
                                                            __u8 dir, __u64 now) {
  struct bh_frag_key k = {};
  bh_frag_key_build(p, ifindex, dir, &k);
  struct bh_frag_entry* e = bpf_map_lookup_elem(&bh_frags, &k);
  if (e && now > e->expires_ns) return NULL;
  return e;
}
