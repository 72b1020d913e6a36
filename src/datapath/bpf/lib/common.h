/* Common ground of the TC datapath: kernel UAPI includes, packet directions and small helpers. */
#pragma once

/* No CO-RE here: the TC datapath reads only packets and its own maps, so the UAPI headers
 * describe everything it touches and the object loads on any kernel with these helpers. */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/pkt_cls.h>

/* libbpf's BPF-side headers need the kernel types above. */
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "datapath/abi/bulkhead_abi.h"
#include "datapath/abi/datapath_abi.h"

#ifndef IPPROTO_ICMPV6
#define IPPROTO_ICMPV6 58
#endif

/* Copies a 16-byte address; constant size so the compiler emits plain loads and stores. */
static __always_inline void bh_addr_copy(__u8* dst, const __u8* src) {
  __builtin_memcpy(dst, src, 16);
}

/* Addresses in our structs sit at 4-byte aligned offsets, so word access is safe. */
static __always_inline int bh_addr_is_zero(const __u8* a) {
  const __u32* w = (const __u32*)a;
  return (w[0] | w[1] | w[2] | w[3]) == 0;
}
