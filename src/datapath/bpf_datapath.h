// BpfDatapath: IDatapath on the real eBPF programs and maps, pinned under a bpffs directory.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "datapath/datapath.h"

namespace bulkhead::datapath {

struct DatapathOptions {
  // Directory on a bpffs mount for this instance's maps and programs, e.g.
  // /sys/fs/bpf/bulkhead/default. Created if missing (the bpffs mount must exist).
  std::string pin_root;
  // Sizes of the maps this open creates. A map already pinned under the pin root is adopted
  // with its contents and keeps the size it was created with (sizes() tells).
  MapSizes sizes;
  bh_settings settings{};  // written on every open; all zero means the defaults
};

// The two programs, named after what they see.
enum class Program {
  kFromWorkload,  // host ingress of the veth: the workload's egress
  kToWorkload,    // host egress of the veth: the workload's ingress
};

// Owns the loaded skeleton (programs, map fds) and the ring buffer reader. The kernel state
// it makes is pinned and outlives it on purpose: dropping this object leaves enforcement in
// place (filters attached, maps pinned); Open() on the same pin root adopts that state, and
// Teardown() removes it. Map reads and writes may come from several threads; PollEvents from
// one thread at a time. One BpfDatapath per pin root at a time (the caller holds a lock).
class BpfDatapath final : public IDatapath {
 public:
  // Loads the programs. Maps already pinned under the pin root are reused with their
  // contents (adoption); the others are created and pinned. Programs are always loaded
  // fresh, pinned (replacing older pins), and every interface in the attachment registry is
  // re-pointed to them with tc replace, so an upgrade or restart never leaves a gap.
  static absl::StatusOr<std::unique_ptr<BpfDatapath>> Open(const DatapathOptions& options);

  ~BpfDatapath() override;
  BpfDatapath(const BpfDatapath&) = delete;
  BpfDatapath& operator=(const BpfDatapath&) = delete;

  // True when Open() found this instance's maps already pinned and reused them.
  bool adopted() const { return adopted_; }
  // The sizes in force: the options' for maps created by this open, the pinned size for
  // adopted ones.
  const MapSizes& sizes() const { return sizes_; }
  // Whether an existing pin root holds this instance's maps (a later Open adopts them), and
  // their sizes; nullopt when nothing is pinned there yet. For sizing maps before the first
  // open.
  static absl::StatusOr<std::optional<MapSizes>> PinnedSizes(const std::string& pin_root);
  const std::string& pin_root() const { return pin_root_; }

  // Kernel ids of the maps by name (bh_ct, bh_endpoints, ...) and of the programs.
  absl::StatusOr<std::map<std::string, uint32_t>> MapIds() const;
  absl::StatusOr<uint32_t> ProgramId(Program program) const;
  // The program's fd, borrowed (valid while this object lives), e.g. for a TcHook.
  int program_fd(Program program) const;

  // Runs one Ethernet frame through a program with BPF_PROG_TEST_RUN, as if it arrived on
  // `ifindex` (which must exist in the caller's network namespace; 0 or 1 is loopback).
  // Returns the program's TC action (TC_ACT_OK, TC_ACT_SHOT). Maps are the live ones.
  absl::StatusOr<int> TestRun(Program program, uint32_t ifindex,
                              std::span<const uint8_t> frame) const;

  // Detaches every registered interface and removes every pin (maps, programs, the pin root
  // directory). The kernel frees the objects once nothing else holds them.
  absl::Status Teardown();

  // IDatapath
  absl::Status UpsertEndpoint(const Endpoint& endpoint) override;
  absl::Status DeleteEndpoint(uint32_t ifindex) override;
  absl::StatusOr<std::vector<Endpoint>> ListEndpoints() override;
  absl::Status SwitchPolicy(uint32_t ifindex, uint32_t table_id, uint32_t generation) override;
  absl::Status Attach(uint32_t ifindex) override;
  absl::Status Detach(uint32_t ifindex) override;
  absl::StatusOr<std::vector<uint32_t>> ListAttached() override;
  absl::Status UpsertIpcache(
      const std::vector<std::pair<bulkhead_ipcache_key, bulkhead_ipcache_value>>& entries) override;
  absl::Status DeleteIpcache(const std::vector<bulkhead_ipcache_key>& keys) override;
  absl::Status WritePolicyTables(const PolicyTables& tables) override;
  absl::Status DeletePolicyTables(const std::vector<uint32_t>& table_ids) override;
  absl::StatusOr<std::vector<uint32_t>> ListPolicyTables() override;
  absl::StatusOr<FlowDecision> Explain(const FlowQuery& query) override;
  absl::Status SetSettings(const bh_settings& settings) override;
  absl::StatusOr<Counters> ReadCounters() override;
  absl::StatusOr<ConntrackEntries> ListConntrack() override;
  absl::StatusOr<size_t> PollEvents(int timeout_ms, const EventCallback& callback) override;
  std::vector<MapUsage> MapUsages() const override;
  // The ring buffer's epoll fd (libbpf's ring_buffer__epoll_fd).
  int EventsFd() const override;

 private:
  struct State;  // libbpf objects (skeleton, ring buffer), kept out of this header
  explicit BpfDatapath(std::unique_ptr<State> state, std::string pin_root, MapSizes sizes,
                       bool adopted);

  absl::Status PinPrograms();
  absl::Status ReattachRegistered();
  // Reads what adopted maps hold into the in-memory index (once, at open).
  absl::Status IndexAdoptedMaps();

  std::unique_ptr<State> state_;
  std::string pin_root_;
  MapSizes sizes_;
  bool adopted_ = false;
};

}  // namespace bulkhead::datapath
