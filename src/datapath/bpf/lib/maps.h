/* The datapath's BTF-defined maps. All are pinned by name under the loader's pin root, so
 * they outlive the loader and a restarted loader adopts them. */
#pragma once

#include "common.h"

/* Default sizes; the loader may resize (bpf_map__set_max_entries) before the first load.
 * Reusing pinned maps requires the same sizes, so the loader's options must stay stable. */
#define BH_IPCACHE_MAX 65536
#define BH_POL_PEER_MAX 262144
#define BH_POL_PORT_MAX 262144
#define BH_ENDPOINTS_MAX 4096
#define BH_EP_ADDRS_MAX 16384
#define BH_CT_MAX 262144
#define BH_FRAGS_MAX 8192
#define BH_EVENTS_BYTES (4 * 1024 * 1024)

/* peer address -> identity (compiler's ABI) */
struct {
  __uint(type, BPF_MAP_TYPE_LPM_TRIE);
  __uint(max_entries, BH_IPCACHE_MAX);
  __type(key, struct bulkhead_ipcache_key);
  __type(value, struct bulkhead_ipcache_value);
  __uint(map_flags, BPF_F_NO_PREALLOC);
  __uint(pinning, LIBBPF_PIN_BY_NAME);
} bh_ipcache SEC(".maps");

/* {table, peer identity, direction} -> class (compiler's ABI) */
struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, BH_POL_PEER_MAX);
  __type(key, struct bulkhead_policy_peer_key);
  __type(value, struct bulkhead_policy_peer_value);
  __uint(map_flags, BPF_F_NO_PREALLOC);
  __uint(pinning, LIBBPF_PIN_BY_NAME);
} bh_pol_peer SEC(".maps");

/* {table, class, direction, protocol, port prefix} -> verdict (compiler's ABI) */
struct {
  __uint(type, BPF_MAP_TYPE_LPM_TRIE);
  __uint(max_entries, BH_POL_PORT_MAX);
  __type(key, struct bulkhead_policy_port_key);
  __type(value, struct bulkhead_policy_port_value);
  __uint(map_flags, BPF_F_NO_PREALLOC);
  __uint(pinning, LIBBPF_PIN_BY_NAME);
} bh_pol_port SEC(".maps");

/* host-side ifindex -> endpoint config. A hash map (not an array): an update replaces the
 * element as a whole, so a packet sees either the old or the new table id and generation,
 * never a mix. That one write is what makes a policy switch atomic per endpoint. */
struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, BH_ENDPOINTS_MAX);
  __type(key, __u32);
  __type(value, struct bh_endpoint_config);
  __uint(pinning, LIBBPF_PIN_BY_NAME);
} bh_endpoints SEC(".maps");

/* {ifindex, family, address} -> 1: the workload's own addresses (anti-spoofing) */
struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, BH_EP_ADDRS_MAX);
  __type(key, struct bh_ep_addr_key);
  __type(value, __u32);
  __uint(pinning, LIBBPF_PIN_BY_NAME);
} bh_ep_addrs SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_LRU_HASH);
  __uint(max_entries, BH_CT_MAX);
  __type(key, struct bh_ct_key);
  __type(value, struct bh_ct_entry);
  __uint(pinning, LIBBPF_PIN_BY_NAME);
} bh_ct SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_LRU_HASH);
  __uint(max_entries, BH_FRAGS_MAX);
  __type(key, struct bh_frag_key);
  __type(value, struct bh_frag_entry);
  __uint(pinning, LIBBPF_PIN_BY_NAME);
} bh_frags SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_ARRAY);
  __uint(max_entries, 1);
  __type(key, __u32);
  __type(value, struct bh_settings);
  __uint(pinning, LIBBPF_PIN_BY_NAME);
} bh_settings SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
  __uint(max_entries, BH_CTR_MAX);
  __type(key, __u32);
  __type(value, __u64);
  __uint(pinning, LIBBPF_PIN_BY_NAME);
} bh_counters SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_RINGBUF);
  __uint(max_entries, BH_EVENTS_BYTES);
  __uint(pinning, LIBBPF_PIN_BY_NAME);
} bh_events SEC(".maps");

/* Userspace-only registry of attached interfaces (see bh_attach_entry). */
struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, BH_ENDPOINTS_MAX);
  __type(key, __u32);
  __type(value, struct bh_attach_entry);
  __uint(pinning, LIBBPF_PIN_BY_NAME);
} bh_attach SEC(".maps");

static __always_inline void bh_count(__u32 idx) {
  __u64* v = bpf_map_lookup_elem(&bh_counters, &idx);
  if (v) *v += 1; /* per-CPU slot: no other writer */
}
