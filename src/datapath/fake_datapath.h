// FakeDatapath: an in-memory IDatapath for unit tests of the agent (no kernel, no root).
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <set>
#include <vector>

#include "absl/status/status.h"
#include "datapath/datapath.h"

namespace bulkhead::datapath {

// Keeps what a BpfDatapath would keep in its maps, with the same validation, the same
// longest-prefix matching in the ipcache and port tables, and the same Explain; the bpf
// tests run one contract suite against both. It has no packets: events, counters and
// conntrack entries are whatever the test puts in.
class FakeDatapath final : public IDatapath {
 public:
  // Capacities as a BpfDatapath with these sizes has them (writes that do not fit fail).
  explicit FakeDatapath(MapSizes sizes = {});
  ~FakeDatapath() override;
  FakeDatapath(const FakeDatapath&) = delete;
  FakeDatapath& operator=(const FakeDatapath&) = delete;

  // ---- test controls ----
  // Queues an event (EventsFd() becomes readable).
  void PushEvent(const bh_flow_event& event);
  void AddToCounter(int index, uint64_t delta) { counters_.values.at(index) += delta; }
  void SetConntrack(const bh_ct_key& key, const bh_ct_entry& entry);
  // The next call that writes (Upsert*, Delete*, Write*, Switch*, Attach, Detach,
  // SetSettings) fails with `status` and changes nothing.
  void FailNextWrite(absl::Status status) { fail_next_write_ = std::move(status); }
  const bh_settings& settings() const { return settings_; }
  size_t ipcache_size() const { return ipcache_.size(); }
  size_t policy_entries() const { return peers_.size() + ports_.size(); }

  // ---- IDatapath ----
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
  absl::StatusOr<Counters> ReadCounters() override { return counters_; }
  absl::StatusOr<ConntrackEntries> ListConntrack() override;
  absl::StatusOr<size_t> PollEvents(int timeout_ms, const EventCallback& callback) override;
  std::vector<MapUsage> MapUsages() const override;
  // An eventfd, readable while events are queued.
  int EventsFd() const override { return events_fd_; }

 private:
  using Bytes = std::vector<uint8_t>;
  absl::Status TakeInjectedFailure();

  std::map<uint32_t, Endpoint> endpoints_;
  std::set<uint32_t> attached_;
  // Keys as raw bytes; LPM keys with the bits past their prefix cleared, as the kernel's
  // trie treats them.
  std::map<Bytes, bulkhead_ipcache_value> ipcache_;
  std::map<Bytes, bulkhead_policy_peer_value> peers_;
  std::map<Bytes, bulkhead_policy_port_value> ports_;
  std::map<Bytes, std::pair<bh_ct_key, bh_ct_entry>> conntrack_;
  std::deque<bh_flow_event> events_;
  int events_fd_ = -1;
  MapSizes sizes_;
  Counters counters_;
  bh_settings settings_{};
  std::optional<absl::Status> fail_next_write_;
};

}  // namespace bulkhead::datapath
