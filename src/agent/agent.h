// Agent: keeps the kernel datapath in step with the policy directory and the inventory file
// (standalone mode): load, validate, compile, apply atomically, adopt state after a restart.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "datapath/datapath.h"
#include "engine/compiler.h"
#include "nlohmann/json.hpp"

namespace bulkhead::agent {

struct AgentOptions {
  std::string policies_dir;    // watched; every *.yaml, *.yml, *.json below it
  std::string inventory_file;  // the Inventory (workloads, namespaces, nodes)
  std::string state_dir;       // state.json (generation, applied ipcache keys); may be empty
};

// Resolves a host interface name to its ifindex (if_nametoindex in production).
using InterfaceResolver = std::function<absl::StatusOr<uint32_t>(const std::string& name)>;

// One workload the agent enforces on (or wants to: `error` says why it cannot yet).
struct EndpointInfo {
  std::string workload;  // "ns/name"
  std::string host_interface;
  std::string netns;
  uint32_t ifindex = 0;  // 0 while unresolved
  uint32_t identity = 0;
  uint32_t table_id = 0;
  uint32_t generation = 0;
  policy::Mode mode = policy::Mode::kEnforce;
  std::vector<std::string> ips;
  std::string error;
};

// The rules of one compile, with the table ids that compile used, so that an event or a
// kernel answer is named by the rule table that produced its table.
struct RuleTable {
  uint32_t table_id_base = 0;
  uint32_t table_id_end = 0;  // exclusive
  std::vector<engine::CompiledRule> rules;
  std::vector<engine::CompiledIdentity> identities;
};

// Not thread-safe: one thread (the agent loop) calls everything.
class Agent {
 public:
  Agent(AgentOptions options, datapath::IDatapath& datapath, InterfaceResolver resolver);
  ~Agent();

  // Reads what a previous agent left (kernel endpoints and tables, state.json) so that the
  // first apply continues from it, then applies the files. Fails only when the kernel state
  // cannot be read; an invalid policy is reported in status like any later one.
  absl::Status Start();

  // Applies the files when their content changed since the last good apply (or `force`), or
  // when some endpoint is still waiting for its interface. An invalid input keeps the last
  // good policy in force and becomes last_error.
  absl::Status Reload(bool force = false);

  // True when some workload could not be applied yet (its interface is missing, or the
  // last datapath write failed): the loop retries.
  bool NeedsRetry() const { return needs_retry_; }

  bool ready() const { return ready_; }
  // "<counter>-<content hash>" of the applied policy; empty before the first good apply.
  std::string revision() const;
  const std::string& last_error() const { return last_error_; }
  const std::vector<EndpointInfo>& endpoints() const { return endpoints_; }

  // API bodies (the "result" of a response).
  nlohmann::json StatusJson() const;
  nlohmann::json EndpointsJson() const;
  // from/to: "ns/name" or an address; protocol: tcp, udp, sctp (default tcp).
  absl::StatusOr<nlohmann::json> Explain(const std::string& from, const std::string& to,
                                         uint16_t port, const std::string& protocol);
  // A flow event in words (workload, peer, verdict, policy and rule).
  nlohmann::json DescribeEvent(const bh_flow_event& event) const;
  // Prometheus text exposition.
  std::string Metrics();

  // Counts an event by verdict (for metrics) and returns its description.
  nlohmann::json RecordEvent(const bh_flow_event& event);
  void CountDroppedObserverEvents(uint64_t n) { observer_events_dropped_ += n; }

  datapath::IDatapath& datapath() { return datapath_; }

 private:
  struct Input;
  absl::StatusOr<std::string> HashInputs() const;
  absl::Status Apply(const policy::Cluster& cluster, const std::string& hash);
  absl::Status SaveState() const;
  void LoadState();
  const RuleTable* RulesForTable(uint32_t table_id) const;
  const EndpointInfo* FindEndpoint(const std::string& workload) const;
  const EndpointInfo* FindEndpointByIfindex(uint32_t ifindex) const;
  std::string PeerName(uint32_t identity, uint32_t table_id) const;

  AgentOptions options_;
  datapath::IDatapath& datapath_;
  InterfaceResolver resolver_;

  bool ready_ = false;
  bool needs_retry_ = false;
  std::string applied_hash_;
  std::string state_hash_;  // content hash a previous agent applied (state.json)
  uint64_t revision_counter_ = 0;
  std::string last_error_;
  uint64_t applies_ok_ = 0;
  uint64_t applies_failed_ = 0;
  uint32_t generation_ = 0;
  uint32_t next_table_base_ = 1;
  std::vector<uint32_t> live_tables_;
  std::vector<bulkhead_ipcache_key> live_ipcache_;
  std::unique_ptr<engine::PolicyCompiler> compiler_;
  std::vector<RuleTable> rule_tables_;  // the current compile's last, at most a few
  std::vector<EndpointInfo> endpoints_;
  std::map<std::string, uint64_t> verdict_counts_;  // events seen by verdict
  uint64_t events_seen_ = 0;
  uint64_t observer_events_dropped_ = 0;
};

}  // namespace bulkhead::agent
