/* Flow events into the ring buffer; an event with no room is counted, never silently lost. */
#pragma once

#include "maps.h"
#include "parse.h"
#include "policy.h"

/* Everything an event says about where the packet was and what decided it. */
struct bh_event_ctx {
  const struct bh_endpoint_config* cfg; /* NULL when the interface has no endpoint */
  const struct bh_pkt* pkt;
  const struct bh_decision* decision; /* NULL when no policy was consulted */
  __u32 ifindex;
  __u32 pkt_len;
  __u8 direction;
};

static __always_inline void bh_emit(const struct bh_event_ctx* c, __u8 kind, __u8 verdict,
                                    __u8 drop_reason) {
  struct bh_flow_event* ev = bpf_ringbuf_reserve(&bh_events, sizeof(*ev), 0);
  if (!ev) {
    bh_count(BH_CTR_EVENTS_LOST);
    return;
  }
  __builtin_memset(ev, 0, sizeof(*ev));
  ev->timestamp_ns = bpf_ktime_get_ns();
  ev->ifindex = c->ifindex;
  ev->pkt_len = c->pkt_len;
  ev->kind = kind;
  ev->verdict = verdict;
  ev->drop_reason = drop_reason;
  ev->direction = c->direction;
  if (c->cfg) {
    ev->endpoint_id = c->cfg->endpoint_id;
    ev->endpoint_identity = c->cfg->identity;
    ev->policy_table_id = c->cfg->policy_table_id;
    ev->policy_generation = c->cfg->policy_generation;
    ev->mode = c->cfg->mode;
  }
  if (c->decision) {
    ev->peer_identity = c->decision->peer_identity;
    ev->rule_id = c->decision->rule_id;
    ev->tier = c->decision->tier;
    ev->policy_verdict = c->decision->verdict;
    ev->policy_flags = c->decision->flags;
    ev->policy_reason = c->decision->reason;
  }
  const struct bh_pkt* p = c->pkt;
  if (p) {
    ev->family = p->family;
    ev->protocol = p->protocol;
    ev->src_port = p->sport;
    ev->dst_port = p->dport;
    ev->tcp_flags = p->tcp_flags;
    ev->icmp_type = p->icmp_type;
    ev->icmp_code = p->icmp_code;
    bh_addr_copy(ev->src_addr, p->src);
    bh_addr_copy(ev->dst_addr, p->dst);
  }
  bpf_ringbuf_submit(ev, 0);
  bh_count(BH_CTR_EVENTS_SENT);
}

/* Emits only when the settings ask for this class of event. */
static __always_inline void bh_emit_if(const struct bh_event_ctx* c, __u32 event_flags,
                                       __u32 needed, __u8 kind, __u8 verdict, __u8 drop_reason) {
  if (event_flags & needed) bh_emit(c, kind, verdict, drop_reason);
}
