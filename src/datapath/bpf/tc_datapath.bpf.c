/* TC (clsact, direct-action) programs on the host side of a workload's veth. */
#include "lib/datapath.h"

/* Host ingress: packets the workload sends (its egress). */
SEC("tc")
int bh_from_workload(struct __sk_buff* skb) { return bh_handle(skb, BULKHEAD_DIR_EGRESS); }

/* Host egress: packets delivered to the workload (its ingress). */
SEC("tc")
int bh_to_workload(struct __sk_buff* skb) { return bh_handle(skb, BULKHEAD_DIR_INGRESS); }

char LICENSE[] SEC("license") = "GPL";
