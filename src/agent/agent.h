// Agent: keeps the kernel datapath in step with its policy input (the policy directory and the
// inventory file in standalone mode, the control plane's policy objects and other nodes'
// endpoints in server mode) and the endpoints registered at run time by the CNI plugin: load,
// validate, compile, apply atomically, adopt state after a restart.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "agent/endpoint_registration.h"
#include "agentlink/agentlink.h"
#include "datapath/datapath.h"
#include "engine/compiler.h"
#include "nlohmann/json.hpp"
#include "policy/loader.h"

namespace bulkhead::agent {

struct AgentOptions {
  std::string policies_dir;    // watched; every *.yaml, *.yml, *.json below it
  std::string inventory_file;  // the Inventory (workloads, namespaces, nodes)
  std::string state_dir;       // state.json (generation, applied ipcache keys) and endpoints.json
                               // (registered endpoints); may be empty (nothing persisted)
  // This node's name: registered (CNI) endpoints are on it, and so are inventory workloads
  // without a `node`; inventory workloads on other nodes are peers, not endpoints here.
  // Empty: every workload is local.
  std::string node;
  // Server mode: the policy comes from the control plane (SetServerInput), not from
  // policies_dir (which must be empty); inventory_file is optional and may only describe
  // workloads, namespaces and nodes. `node` must be set (the certificate's node name).
  bool server_mode = false;
};

// Server mode: what the control plane sent, as the agent applies it.
struct ServerInput {
  int64_t revision = 0;
  std::map<std::string, agentlink::PolicyObject> objects;  // by ObjectRef::Key()
  std::map<std::string, agentlink::Endpoint> peers;        // other nodes' endpoints, by Key()
  // Namespaces whose objects the server has sent (it sends a namespace's objects only once
  // this node reported an endpoint there). A local endpoint in any other namespace is held
  // at default deny until they arrive.
  std::set<std::string> synced_namespaces;
};

// Resolves a host interface name to its ifindex (if_nametoindex in production).
using InterfaceResolver = std::function<absl::StatusOr<uint32_t>(const std::string& name)>;

// One workload the agent enforces on (or wants to: `error` says why it cannot yet).
struct EndpointInfo {
  std::string workload;  // "ns/name"
  std::string source;    // "inventory" or "cni"
  std::string id;        // the registration id of a "cni" endpoint
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
// Shared between the rule tables of compiles that did not change them (an incremental update
// keeps identities, and usually the rules), so that a change does not copy them.
struct RuleTable {
  uint32_t table_id_base = 0;
  uint32_t table_id_end = 0;  // exclusive
  std::shared_ptr<const std::vector<engine::CompiledRule>> rules;
  std::shared_ptr<const std::vector<engine::CompiledIdentity>> identities;
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

  // Registers a workload (CNI ADD) and applies it before returning: on success its endpoint
  // is enforced (default deny included). Re-adding an identical registration is a no-op;
  // a different registration under the same id, a workload name or address already in use,
  // or an interface that cannot be enforced are refused and nothing changes. Persisted in
  // the state dir (endpoints.json, replaced atomically). Returns GetEndpoint's answer.
  absl::StatusOr<nlohmann::json> AddEndpoint(const EndpointRegistration& registration);
  // Removes a registration and its kernel state (CNI DEL). An unknown id is not an error.
  absl::Status RemoveEndpoint(const std::string& id);
  // A registration and whether the kernel enforces it now (CNI CHECK): NotFound when unknown.
  absl::StatusOr<nlohmann::json> GetEndpoint(const std::string& id);
  const std::map<std::string, EndpointRegistration>& registrations() const {
    return registrations_;
  }

  // True when some workload could not be applied yet (its interface is missing, or the
  // last datapath write failed): the loop retries.
  bool NeedsRetry() const { return needs_retry_; }

  // Server mode: replaces the control plane's input and applies it like a file reload. OK
  // when the input is in force (an endpoint whose interface is missing is retried, not an
  // error of the input); otherwise why not, and the last good policy stays in force. What
  // is in force is persisted in the state dir (server-state.json, replaced atomically) so
  // that an agent restarted while the server is away enforces it again at Start.
  absl::Status SetServerInput(ServerInput input);
  bool has_server_input() const { return server_input_ != nullptr; }
  // The server revision in force (0: none).
  int64_t enforced_server_revision() const { return enforced_server_revision_; }
  // This node's endpoints as the server wants them (CNI registrations and local inventory
  // workloads of the compile in force).
  std::vector<agentlink::Endpoint> LocalEndpoints() const;
  // Namespaces of this node's endpoints held at deny (their objects have not arrived).
  std::set<std::string> held_namespaces() const;
  // IdentityKey::ToString() of every workload identity the compile in force uses.
  std::set<std::string> IdentityKeys() const;
  // The cluster's numbers for identity keys (the server's pins). When one differs from the
  // number the compile in force uses, compiles again with them pinned and applies. Keys the
  // compile does not use are ignored.
  absl::Status SetClusterIdentities(const std::map<std::string, uint32_t>& pins);
  // Shown under "server" in StatusJson (the session's state, set by the loop).
  void SetServerStatus(nlohmann::json status) { server_status_ = std::move(status); }

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
  // Counts it only (no description: when nobody observes, the loop saves that work).
  void CountEvent(const bh_flow_event& event);
  void CountDroppedObserverEvents(uint64_t n) { observer_events_dropped_ += n; }

  datapath::IDatapath& datapath() { return datapath_; }

 private:
  struct Input;
  absl::StatusOr<std::string> HashInputs() const;
  // Server mode: the server's objects (and the inventory file) through the policy loader,
  // with the peers added as workloads of their nodes.
  policy::LoadResult LoadServerInput();
  absl::Status SaveServerState() const;
  void LoadServerState();
  // Applies `composed` (taken over): an incremental update of the compile in force when only
  // policies changed (UpdatePolicies), else a full compile (Apply).
  // The policies are `policies` (shared with the load cache and the compile in force)
  // followed by composed.policies.
  using SharedPolicy = std::shared_ptr<const policy::Policy>;
  absl::Status ApplyComposed(policy::Cluster composed, std::vector<SharedPolicy> policies,
                             const std::string& hash);
  // Compiles `composed` (taken over) and applies it.
  absl::Status Apply(policy::Cluster composed, std::vector<SharedPolicy> policies,
                     const std::string& hash);
  // The kernel phase of an apply: writes `fresh_tables` of `compiled`, the ipcache entries
  // that differ from `prev` (all when prev is nullptr; none when ipcache_unchanged), switches
  // the endpoints whose binding changed, removes what is gone. An error before any endpoint
  // was switched (the last good policy stays in force) is returned; a failed switch of one
  // endpoint is recorded in *first_error and the apply counts as done.
  absl::Status WriteKernel(const engine::CompiledPolicy& compiled, const policy::Cluster& cluster,
                           const std::vector<uint32_t>& fresh_tables,
                           const engine::CompiledPolicy* prev, bool ipcache_unchanged,
                           std::vector<EndpointInfo>* desired, absl::Status* first_error);
  // After a successful kernel phase: the endpoints, revision, rule tables and state.json.
  void FinishApply(const engine::CompiledPolicy& compiled, uint32_t table_id_base,
                   std::vector<EndpointInfo> desired, const std::string& hash, bool rules_changed,
                   bool numbers_changed, const absl::Status& first_error);
  // The files' cluster with the registered endpoints added (and inventory workloads without
  // a node placed on this one); an error when a registration collides with the files.
  absl::StatusOr<policy::Cluster> Compose(policy::Cluster files) const;
  // The last good files: their namespaces, workloads and nodes; *policies: the compile's
  // policies (its objects), but for those Compose adds.
  policy::Cluster LastGoodFiles(std::vector<SharedPolicy>* policies) const;
  // Applies the last good files with the current registrations.
  absl::Status ApplyRegistrations();
  std::string CombinedHash(const std::string& files_hash) const;
  // Why `r` cannot join the last good files and the other registrations ("" when it can).
  std::string Conflict(const EndpointRegistration& r) const;
  absl::Status SaveState() const;
  void LoadState();
  absl::Status LoadEndpoints();
  absl::Status SaveEndpoints() const;
  // Detaches and deletes a registered endpoint's kernel entry directly (when no apply can
  // run).
  void ForgetKernelEndpoint(const EndpointRegistration& r);
  const RuleTable* RulesForTable(uint32_t table_id) const;
  const EndpointInfo* FindEndpoint(const std::string& workload) const;
  const EndpointInfo* FindEndpointByIfindex(uint32_t ifindex) const;
  std::string PeerName(uint32_t identity, uint32_t table_id) const;

  AgentOptions options_;
  datapath::IDatapath& datapath_;
  InterfaceResolver resolver_;

  bool ready_ = false;
  bool needs_retry_ = false;
  std::string applied_hash_;  // files and registrations together
  // The last files that loaded and applied without error (without their policies: those are
  // the compile's, compiler_->policies()), and their content hash: what registrations are
  // applied with while the files on disk are invalid.
  std::unique_ptr<policy::Cluster> files_cluster_;
  std::string files_hash_;
  std::map<std::string, EndpointRegistration> registrations_;  // by id
  std::string input_error_;  // why the files on disk are not applied ("" when they are)
  // Identity and rule numbers of the previous agent's last compile (state.json), pinned in
  // this agent's first compile.
  engine::PinnedIdentities state_identity_pins_;
  std::map<engine::RuleKey, uint32_t> state_rule_pins_;
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
  // compiler_ was updated in place but its tables could not be written: the kernel still
  // enforces the compile before it, so the next apply compiles afresh and rewrites all.
  bool rebuild_next_ = false;
  std::vector<RuleTable> rule_tables_;  // the current compile's last, at most a few
  std::vector<EndpointInfo> endpoints_;
  // Server mode: the input being applied (the last received), what is in force.
  std::unique_ptr<ServerInput> server_input_;
  int64_t enforced_server_revision_ = 0;
  // The cluster's identity numbers (SetClusterIdentities), pinned in every full compile.
  std::map<identity::IdentityKey, identity::NumericIdentity> cluster_pins_;
  nlohmann::json server_status_;
  // Files parsed by earlier loads: a change re-parses only the files it touched.
  policy::LoadCache load_cache_;
  // The content hash of each input file, with its metadata when hashed (HashInputs).
  struct HashedFile {
    policy::FileStamp stamp;
    int64_t read_at_ns = 0;
    uint64_t hash = 0;
  };
  mutable std::map<std::string, HashedFile> file_hashes_;
  // What the last apply took (milliseconds; load: the files' read before it), for the log
  // and the metrics.
  struct ApplyTimes {
    double load = 0, compile = 0, kernel = 0, total = 0;
    size_t tables_written = 0, tables_kept = 0, endpoints_switched = 0, ipcache_written = 0;
    bool incremental = false;  // an in-place policy update, not a full compile
  };
  ApplyTimes last_apply_;
  size_t last_switched_ = 0;         // endpoints the last kernel phase switched
  size_t last_ipcache_written_ = 0;  // ipcache entries it wrote
  void LogApply() const;
  double last_load_ms_ = 0;
  std::map<std::string, uint64_t> verdict_counts_;  // events seen by verdict
  uint64_t events_seen_ = 0;
  uint64_t observer_events_dropped_ = 0;
};

}  // namespace bulkhead::agent
