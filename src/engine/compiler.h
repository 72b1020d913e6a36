// The policy compiler: a cluster and its policies -> identities, the ipcache and the
// verdict tables the eBPF datapath looks up (design §1, §3, §4).
//
// Pure and deterministic: the same cluster and options always give the same tables, byte
// for byte; nothing here touches the kernel. The tables agree exactly with the reference
// evaluator (evaluator.h) for every flow without a process, with the workload in enforce
// mode: the datapath applies a workload's mode (enforce/audit/learn) from its endpoint
// config, so modes are not part of the tables. Policies and rules with process selectors
// match no packet in the kernel (packets carry no process), as the evaluator decides for
// flows that name no process.
//
// What one lookup does (Lookup below, and the datapath):
//   peer identity = ipcache LPM(peer address)                  (miss: world)
//   class         = peers[table, peer identity, direction]     (miss: class 0)
//   verdict       = ports LPM[table, class, direction, protocol, port]
// where `table` is the local workload's table and the peer is the other end of the flow
// (egress: the destination; ingress: the source).
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "absl/status/statusor.h"
#include "datapath/abi/bulkhead_abi.h"
#include "engine/compiler_maps.h"
#include "identity/identity.h"
#include "identity/ipcache.h"
#include "policy/model.h"

namespace bulkhead::engine {

// Identity numbers to keep from an earlier compile (PinsOf), or numbers assigned elsewhere
// (a server's cluster-wide identities). A key (workload identity key, or CIDR) that this
// compile has keeps its pinned number; a key it does not have keeps its number reserved: no
// other key gets it. New keys take, in sorted order, the lowest free numbers of their range
// that no pin holds. So between the pinned compile and this one an identity number never
// names two different things, and a live datapath can move from one to the other without a
// window in which the ipcache and the tables disagree on what a number means.
struct PinnedIdentities {
  std::map<identity::IdentityKey, identity::NumericIdentity> workloads;  // 256 .. 2^24-1
  std::map<policy::Cidr, identity::NumericIdentity> cidrs;               // from 2^24
  bool empty() const { return workloads.empty() && cidrs.empty(); }
};

// A rule as rule ids name it across compiles: its policy (Policy::Id()), direction and index
// in that direction's rules (-1: a DefaultDeny policy itself).
struct RuleKey {
  std::string policy;
  policy::Direction direction = policy::Direction::kIngress;
  int rule_index = -1;
  bool operator<(const RuleKey& o) const {
    return std::tie(policy, direction, rule_index) < std::tie(o.policy, o.direction, o.rule_index);
  }
  bool operator==(const RuleKey& o) const {
    return std::tie(policy, direction, rule_index) == std::tie(o.policy, o.direction, o.rule_index);
  }
};

struct CompiledPolicy;

struct CompilerOptions {
  // Table ids of this compile are table_id_base, +1, ... To switch a live datapath
  // atomically, pass a base above every live table id (CompiledPolicy::NextTableIdBase of
  // the live compile), write the new tables, then switch endpoints. Must be >= 1.
  uint32_t table_id_base = 1;
  // Identities whose policy is identical (same policies apply, same resolution of named
  // ports) share one table. Off: one table per identity (same verdicts, more entries).
  bool share_tables = true;
  // Non-empty: compile an agent's view for this node (Workload::node): tables only for the
  // identities of workloads on the node, and endpoints only for those workloads; the
  // ipcache and every table's peer classes still cover the whole cluster. Empty: every
  // workload is an endpoint.
  std::string node;
  // Numbers to keep (see PinnedIdentities). Empty: identities are numbered from the start of
  // their ranges in sorted key order. Invalid pins (a number outside its range, one number
  // pinned to two keys) are an error.
  PinnedIdentities pinned_identities;
  // Rule ids to keep (RulePinsOf an earlier compile), as pinned_identities does for
  // identities: a rule still present keeps its id, a pinned id whose rule is gone is given
  // to no other rule, new rules take the lowest free ids from 1 in input order. Then a table
  // whose verdicts did not change has the same entries as before (its values name rules by
  // id). Empty: rules are numbered 1, 2, ... in input order. Id 0, or one id pinned to two
  // rules, is an error.
  std::map<RuleKey, uint32_t> pinned_rules;
  // An earlier compile whose tables may be kept. A table of this compile whose entries equal
  // (table id aside) those of a table of `reuse_tables_of` keeps that table's id instead of
  // taking a new one from table_id_base: a loader need not write it again, nor switch the
  // endpoints that use it. Tables with ids below table_id_base are such reused tables. Only
  // useful with that compile's identities and rules pinned, since entries name both by
  // number. Read during the call, not kept. nullptr: every table takes a new id.
  const CompiledPolicy* reuse_tables_of = nullptr;
};

struct CompiledIdentity {
  identity::NumericIdentity id = 0;
  identity::IdentityKind kind = identity::IdentityKind::kWorkload;
  std::optional<identity::IdentityKey> key;  // workload identities
  std::optional<policy::Cidr> cidr;          // CIDR identities
  bool node = false;                         // CIDR identity of a node address
  std::vector<std::string> workloads;        // "ns/name", sorted (workload identities)
  uint32_t table_id = 0;  // the table of a workload identity (0: none on this node)
};

// One entry of the rule table; its index is the rule_id of the port map values.
struct CompiledRule {
  std::string policy;  // Policy::Id()
  std::string policy_kind;
  std::string policy_namespace;
  std::string policy_name;
  policy::Direction direction = policy::Direction::kIngress;
  int rule_index = -1;  // -1: the DefaultDeny policy itself
  std::string rule_name;
  policy::Tier tier = policy::Tier::kNamespace;
  policy::RuleAction action = policy::RuleAction::kAllow;  // DefaultDeny: kDeny
  policy::Mode mode = policy::Mode::kEnforce;              // the policy's mode
  bool operator==(const CompiledRule&) const = default;
};

struct CompiledTable {
  uint32_t table_id = 0;
  std::vector<identity::NumericIdentity> identities;  // local identities using it, sorted
  // Number of peer classes (class 0 included), [0] ingress, [1] egress.
  std::array<uint32_t, 2> classes{};
};

// What the datapath needs per endpoint (its endpoint config is the datapath's).
struct EndpointBinding {
  identity::NumericIdentity identity = 0;
  uint32_t table_id = 0;
  policy::Mode mode = policy::Mode::kEnforce;  // workload mode, else namespace mode
  bool operator==(const EndpointBinding&) const = default;
};

struct CompiledPolicy {
  uint32_t table_id_base = 1;
  std::vector<CompiledIdentity> identities;  // sorted by id: reserved, workload, CIDR
  // index = rule_id; [0] is "no rule". With pinned rules an id may be unused: its entry has
  // an empty `policy`.
  std::vector<CompiledRule> rules;
  std::vector<CompiledTable> tables;                 // sorted by table_id
  std::map<std::string, EndpointBinding> endpoints;  // local workload "ns/name" -> binding
  PolicyMaps maps;                                   // what the kernel maps hold

  const CompiledIdentity* FindIdentity(identity::NumericIdentity id) const;
  const CompiledTable* FindTable(uint32_t table_id) const;
  // One above the highest table id in use: a base for the next compile that does not
  // collide with this one.
  uint32_t NextTableIdBase() const;
};

// The identities of `compiled` (workload and CIDR) as pins for the next compile.
PinnedIdentities PinsOf(const CompiledPolicy& compiled);
// The rule ids of `compiled` as pins for the next compile.
std::map<RuleKey, uint32_t> RulePinsOf(const CompiledPolicy& compiled);

// The writes of an incremental update, in the order a loader must apply them so that no
// lookup ever sees a partial state: port entries of new classes and tables first, then
// peer entries, then ipcache entries, then the endpoint's binding (the switch).
struct CompileDelta {
  std::string workload;     // "ns/name"
  EndpointBinding binding;  // table_id 0 for a workload on another node
  bool new_identity = false;
  bool new_table = false;
  std::vector<std::pair<bulkhead_policy_port_key, bulkhead_policy_port_value>> ports;
  std::vector<std::pair<bulkhead_policy_peer_key, bulkhead_policy_peer_value>> peers;
  std::vector<std::pair<bulkhead_ipcache_key, bulkhead_ipcache_value>> ipcache;
};

// What PolicyCompiler::UpdatePolicies did.
struct PolicyUpdate {
  // False: the update was not done incrementally and nothing changed (`why` says why); the
  // caller compiles afresh (with PinsOf, RulePinsOf and reuse_tables_of of compiled()).
  bool incremental = false;
  std::string why;
  size_t policies_changed = 0;  // added, removed or replaced
  size_t tables_computed = 0;   // tables computed anew
  // Table ids in force after the update that it wrote (all >= the table_id_base given),
  // and the ids it dropped (no identity uses them any more). Every other table is unchanged.
  std::vector<uint32_t> tables_written;
  std::vector<uint32_t> tables_dropped;
  // A rule id was given to a new rule or freed: RulePinsOf(compiled()) changed. Identity
  // numbers and the ipcache never change in an incremental update.
  bool rule_ids_changed = false;
  // Some entry of compiled().rules changed (a rule renamed, its action or mode changed, an id
  // given or freed): a copy of the rule table made before the update is out of date.
  bool rule_table_changed = false;
};

// Compiles a validated cluster. Errors (as values) for input the tables cannot express:
// two workloads with one address, duplicate workload ids, identity or table id ranges
// exhausted, a table id base of 0.
absl::StatusOr<CompiledPolicy> CompilePolicy(const policy::Cluster& cluster,
                                             const CompilerOptions& options = {});

// A compiler that keeps what it needs to update its output incrementally.
class PolicyCompiler {
 public:
  // Copies the cluster and compiles it (the result equals CompilePolicy's).
  static absl::StatusOr<std::unique_ptr<PolicyCompiler>> Create(
      const policy::Cluster& cluster, const CompilerOptions& options = {});
  // The same, taking the cluster over instead of copying it (a large cluster is big).
  static absl::StatusOr<std::unique_ptr<PolicyCompiler>> Create(
      policy::Cluster&& cluster, const CompilerOptions& options = {});
  // The same, with the policies given apart (the cluster's own must be empty) and shared:
  // the compiler keeps these objects, not copies, so a loader that keeps them too (the
  // agent's load cache) holds the input once, and an UpdatePolicies that hands the same
  // objects back knows them unchanged without comparing them.
  static absl::StatusOr<std::unique_ptr<PolicyCompiler>> Create(
      policy::Cluster&& cluster, std::vector<std::shared_ptr<const policy::Policy>> policies,
      const CompilerOptions& options = {});
  ~PolicyCompiler();
  PolicyCompiler(const PolicyCompiler&) = delete;
  PolicyCompiler& operator=(const PolicyCompiler&) = delete;

  const CompiledPolicy& compiled() const;
  // The cluster compiled (its policies empty when they were given apart: see policies()).
  const policy::Cluster& cluster() const;

  // Adds one workload (its namespace must be in the cluster, or is implicit) and updates
  // only what it affects: its ipcache entries; for a new identity, its class in every
  // table whose verdicts distinguish it, with port entries for classes that did not exist
  // before; for a local workload whose identity has no table yet, that table (a new one,
  // or a shared one with identical policy). Applies the delta to compiled() and returns
  // it. A workload on another node (CompilerOptions::node) gets binding table 0 and no
  // endpoint. The result gives the same verdicts as a full
  // compile of the grown cluster; numbering may differ (new identities and tables take
  // the next free numbers, existing ones never change).
  absl::StatusOr<CompileDelta> AddWorkload(const policy::Workload& workload);

  // Replaces the cluster's policies by `policies` (a validated input's, in input order) and
  // updates compiled() in place, recomputing only the tables of the local identities whose
  // policies changed: those a removed or replaced version selected, and those a new version
  // selects. Identity numbers, the ipcache, unchanged tables and the ids of rules still
  // present stay; new rules take the lowest ids no rule held before (as a compile with
  // RulePinsOf(compiled()) pinned would give them); new tables take ids from
  // max(table_id_base, the next unused id). compiled() then equals, table contents per
  // endpoint, rule table, identities and ipcache, a compile of the new cluster with the old
  // numbers pinned. Not done (PolicyUpdate::incremental false, nothing changed, `policies`
  // untouched) when it cannot be sure of that: the set of CIDRs the policies name changed
  // (CIDR identities would change), the evaluation order of unchanged policies changed, two
  // policies share an id, tables are not shared, the incremental state was dropped, or
  // replaced versions have piled up (a full compile frees them). On success the changed
  // policies are moved out of `policies`. AddWorkload is not available afterwards.
  absl::StatusOr<PolicyUpdate> UpdatePolicies(std::vector<policy::Policy>& policies,
                                              uint32_t table_id_base);
  // The same with shared policies: one that is the very object compiled() was made of (a
  // loader's unchanged policy) is known unchanged without being compared, so an update in
  // which one policy of many changed costs about that policy's tables, not a comparison of
  // every policy. New versions are kept (shared), not copied; `policies` is never changed.
  absl::StatusOr<PolicyUpdate> UpdatePolicies(
      const std::vector<std::shared_ptr<const policy::Policy>>& policies, uint32_t table_id_base);
  // policies() as shared objects (those of the first compile's own cluster are copied).
  std::vector<std::shared_ptr<const policy::Policy>> shared_policies() const;
  // The policies compiled() is made of, in input order (cluster().policies is the first
  // compile's input, until DropIncrementalState).
  std::vector<const policy::Policy*> policies() const;

  // Frees what only AddWorkload needs (per-table classes, signatures and indexes), keeping
  // compiled() and cluster(): for a caller that recompiles instead. AddWorkload fails
  // (FailedPrecondition) afterwards. Without `keep_policies`, cluster() keeps only the
  // namespaces, workloads and nodes (the policies are in compiled(); in a large cluster they
  // are most of its memory).
  void DropIncrementalState(bool keep_policies = true);

  struct State;

 private:
  explicit PolicyCompiler(std::unique_ptr<State> state);
  std::unique_ptr<State> state_;
};

// The result of one datapath lookup.
struct LookupResult {
  identity::NumericIdentity peer_identity = 0;
  uint32_t class_id = 0;
  bool found = false;  // a port entry matched (always, with full coverage)
  bulkhead_policy_port_value value{};
  bool allowed() const { return found && value.verdict == BULKHEAD_VERDICT_ALLOW; }
  bool would_deny() const {
    return found && (value.flags & BULKHEAD_POLICY_F_AUDIT_WOULD_DENY) != 0;
  }
};

// Exactly the datapath's lookups over `maps`, for the workload whose table is `table_id`
// and a peer at `peer_address`.
LookupResult Lookup(const PolicyMaps& maps, uint32_t table_id, policy::Direction direction,
                    const policy::IpAddr& peer_address, policy::Protocol protocol, uint16_t port);
// The same, from the peer's identity (skipping the ipcache).
LookupResult LookupIdentity(const PolicyMaps& maps, uint32_t table_id, policy::Direction direction,
                            identity::NumericIdentity peer, policy::Protocol protocol,
                            uint16_t port);

// ABI key builders (zeroed padding, network byte order port).
bulkhead_ipcache_key IpcacheKey(const policy::Cidr& prefix);
bulkhead_ipcache_key IpcacheLookupKey(const policy::IpAddr& address);
policy::Cidr IpcacheKeyPrefix(const bulkhead_ipcache_key& key);
bulkhead_policy_peer_key PeerKey(uint32_t table_id, identity::NumericIdentity peer,
                                 policy::Direction direction);
bulkhead_policy_port_key PortKey(uint32_t table_id, uint32_t class_id, policy::Direction direction,
                                 policy::Protocol protocol, uint16_t port,
                                 uint32_t port_prefix_bits);
uint16_t PortKeyPort(const bulkhead_policy_port_key& key);  // host byte order

// A stable, human-readable text dump of everything compiled (golden tests, debugging).
std::string DumpCompiledPolicy(const CompiledPolicy& compiled);

// Names of the ABI's tier (BULKHEAD_TIER_*) and reason (BULKHEAD_REASON_*) codes, as the
// dump, the agent's events and `explain` print them; "?" for an unknown code.
const char* AbiTierName(uint8_t tier);
const char* AbiReasonName(uint8_t reason);

// Counts for benchmarks and the CLI.
struct CompileStats {
  size_t identities = 0;  // workload + CIDR identities
  size_t workload_identities = 0;
  size_t cidr_identities = 0;
  size_t tables = 0;
  size_t classes = 0;  // summed over tables and directions, class 0 included
  size_t ipcache_entries = 0;
  size_t peer_entries = 0;
  size_t port_entries = 0;
  size_t rules = 0;
  // Bytes of key + value over all entries (what the kernel stores, before its own
  // per-entry overhead).
  size_t map_bytes = 0;
};
CompileStats ComputeStats(const CompiledPolicy& compiled);

}  // namespace bulkhead::engine
