// IDatapath: the agent's whole view of the kernel datapath (endpoints, tables, events).
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "datapath/abi/bulkhead_abi.h"
#include "datapath/abi/datapath_abi.h"
#include "datapath/explain.h"

namespace bulkhead::datapath {

enum class Mode : uint8_t {
  kEnforce = BH_MODE_ENFORCE,
  kAudit = BH_MODE_AUDIT,
  kLearn = BH_MODE_LEARN,
};

// One of the workload's own addresses (anti-spoofing): 16 bytes in network order, IPv4 in
// the first four.
struct EndpointAddress {
  uint8_t family = BULKHEAD_FAMILY_IPV4;  // BULKHEAD_FAMILY_*
  std::array<uint8_t, 16> addr{};

  static EndpointAddress V4(const std::array<uint8_t, 4>& a) {
    EndpointAddress e;
    e.family = BULKHEAD_FAMILY_IPV4;
    std::copy(a.begin(), a.end(), e.addr.begin());
    return e;
  }
  static EndpointAddress V6(const std::array<uint8_t, 16>& a) {
    EndpointAddress e;
    e.family = BULKHEAD_FAMILY_IPV6;
    e.addr = a;
    return e;
  }
  bool operator==(const EndpointAddress& o) const { return family == o.family && addr == o.addr; }
  bool operator<(const EndpointAddress& o) const {
    return family != o.family ? family < o.family : addr < o.addr;
  }
};

// What the datapath knows of a workload, keyed by its host-side interface.
struct Endpoint {
  uint32_t ifindex = 0;
  uint32_t endpoint_id = 0;  // the agent's id, echoed in events
  uint32_t identity = 0;
  uint32_t policy_table_id = BULKHEAD_TABLE_NONE;
  uint32_t policy_generation = 0;
  Mode mode = Mode::kEnforce;
  // Verdict when the endpoint has no table yet or a lookup misses: deny unless told.
  bool allow_on_miss = false;
  bool antispoof = true;
  std::vector<EndpointAddress> addresses;
};

// Compiled policy tables (one or more table ids), as the compiler hands them over.
struct PolicyTables {
  std::vector<std::pair<bulkhead_policy_peer_key, bulkhead_policy_peer_value>> peers;
  std::vector<std::pair<bulkhead_policy_port_key, bulkhead_policy_port_value>> ports;
};

// Map capacities (entries; bytes for the event ring). A BpfDatapath creates its maps with
// these sizes; maps already pinned keep the size they were created with. The FakeDatapath
// enforces them too.
struct MapSizes {
  uint32_t ipcache = 65536;
  uint32_t policy_peers = 262144;
  uint32_t policy_ports = 262144;
  uint32_t endpoints = 4096;
  uint32_t endpoint_addresses = 16384;
  uint32_t conntrack = 262144;
  uint32_t fragments = 8192;
  uint32_t events_bytes = 4 * 1024 * 1024;  // ring buffer: a power of two, >= page size

  // The names above ("policy_peers", ...), in declaration order.
  static const std::vector<std::string_view>& Names();
  // The field called `name`, or nullptr.
  uint32_t* Find(std::string_view name);
  uint32_t Get(std::string_view name) const;
  // Sets a field from "name=value" (the agent's --map-size flag). InvalidArgument for an
  // unknown name or a value that is not a positive 32-bit number.
  absl::Status Set(std::string_view assignment);
};

// How full one of the maps the agent writes is.
struct MapUsage {
  std::string name;         // the MapSizes field: "ipcache", "policy_peers", ...
  std::string kernel_name;  // "bh_ipcache", "bh_pol_peer", ...
  uint64_t entries = 0;
  uint64_t capacity = 0;
};

// Counters summed over CPUs, indexed by BH_CTR_*.
struct Counters {
  std::array<uint64_t, BH_CTR_MAX> values{};
  uint64_t operator[](int index) const { return values.at(static_cast<size_t>(index)); }
};

// Conntrack entries as read from the kernel (a snapshot).
using ConntrackEntries = std::vector<std::pair<bh_ct_key, bh_ct_entry>>;

using EventCallback = std::function<void(const bh_flow_event&)>;

// The kernel datapath behind one small interface. Everything here survives the caller: the
// programs keep enforcing what was last written while no agent runs.
//
// Policy changes are atomic per endpoint: WritePolicyTables under ids no endpoint uses,
// then SwitchPolicy for each endpoint (one map write: table id and generation together),
// then DeletePolicyTables for the old ids. Packets of flows that the old policy allowed are
// re-checked under the new table when the generation changes.
class IDatapath {
 public:
  virtual ~IDatapath() = default;

  // Writes the endpoint's config and its addresses (stale addresses are removed after the
  // new ones are in place). Replaces any earlier config for the interface.
  virtual absl::Status UpsertEndpoint(const Endpoint& endpoint) = 0;
  // Removes the endpoint's config, addresses, conntrack and fragment entries. Detach first:
  // an attached interface without config drops everything (fails closed).
  virtual absl::Status DeleteEndpoint(uint32_t ifindex) = 0;
  virtual absl::StatusOr<std::vector<Endpoint>> ListEndpoints() = 0;
  // Points the endpoint at `table_id` under `generation` in one map write. The endpoint must
  // exist.
  virtual absl::Status SwitchPolicy(uint32_t ifindex, uint32_t table_id, uint32_t generation) = 0;

  // Attaches the programs to the interface (both directions); idempotent, and re-points an
  // interface that carries older programs of ours without a gap.
  virtual absl::Status Attach(uint32_t ifindex) = 0;
  // Removes our filters (and the clsact qdisc if we created it).
  virtual absl::Status Detach(uint32_t ifindex) = 0;
  virtual absl::StatusOr<std::vector<uint32_t>> ListAttached() = 0;

  virtual absl::Status UpsertIpcache(
      const std::vector<std::pair<bulkhead_ipcache_key, bulkhead_ipcache_value>>& entries) = 0;
  virtual absl::Status DeleteIpcache(const std::vector<bulkhead_ipcache_key>& keys) = 0;

  // Writes the entries of one or more tables: all port entries, then all peer entries, so
  // that a class a peer moves into is complete before the peer points at it (what the
  // compiler's incremental updates of live tables rely on). A whole new policy goes under
  // fresh table ids and is switched to with SwitchPolicy.
  virtual absl::Status WritePolicyTables(const PolicyTables& tables) = 0;
  // Removes every entry of these tables. Refuses (FailedPrecondition) while an endpoint still
  // points at one of them.
  virtual absl::Status DeletePolicyTables(const std::vector<uint32_t>& table_ids) = 0;
  // Table ids that have entries in the policy maps.
  virtual absl::StatusOr<std::vector<uint32_t>> ListPolicyTables() = 0;

  // What the programs would decide for a new flow on that endpoint, from the tables as
  // loaded (for `explain`): the same lookups as the programs, without touching conntrack,
  // counters or events. NotFound when the endpoint is unknown.
  virtual absl::StatusOr<FlowDecision> Explain(const FlowQuery& query) = 0;

  virtual absl::Status SetSettings(const bh_settings& settings) = 0;
  virtual absl::StatusOr<Counters> ReadCounters() = 0;
  virtual absl::StatusOr<ConntrackEntries> ListConntrack() = 0;

  // Delivers pending flow events to `callback`, waiting up to timeout_ms (0: do not wait,
  // -1: wait for at least one). Returns how many were delivered.
  virtual absl::StatusOr<size_t> PollEvents(int timeout_ms, const EventCallback& callback) = 0;
  // Entries in use and capacity of the maps the agent fills: ipcache, policy_peers,
  // policy_ports, endpoints, endpoint_addresses (in that order). Cheap (kept in memory), so a
  // caller can check that a write fits before making it. A write that does not fit fails with
  // ResourceExhausted naming the map, what it holds, what the write needed and the capacity.
  virtual std::vector<MapUsage> MapUsages() const = 0;

  // A file descriptor that poll()/epoll report readable (POLLIN) while flow events are
  // pending, and not readable once PollEvents(0, ...) has delivered them all: a caller that
  // waits on several sources waits on this one instead of polling on a timer. Owned by the
  // datapath and valid while it lives.
  virtual int EventsFd() const = 0;
};

}  // namespace bulkhead::datapath
