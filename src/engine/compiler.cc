// The policy compiler: identities, the ipcache, per-identity tables with shared peer
// classes, and incremental updates when a workload is added.
//
// How a table is computed. For one local identity and direction the verdict depends on
// the peer only through which rule peers (pod/namespace selectors, ipBlocks, node
// selectors: "predicates") the peer matches and, for egress, how the rules' named ports
// resolve on the peer. That is the peer's signature. Each distinct signature is evaluated
// once (the evaluator's tier logic over port segments); signatures whose verdict
// functions are equal share a class. The class of a peer matching no predicate is class
// 0, and every peer whose function equals class 0's gets no peer entry at all.
#include "engine/compiler.h"

#include <algorithm>
#include <deque>
#include <functional>
#include <limits>
#include <set>
#include <tuple>
#include <unordered_map>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/hash/hash.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/types/span.h"
#include "engine/compiler_internal.h"

namespace bulkhead::engine {

using identity::NumericIdentity;
using identity::PortDefinition;
using policy::Direction;
using policy::Tier;

namespace ci = compiler_internal;

namespace {

constexpr const char* kMetadataNameLabel = "kubernetes.io/metadata.name";

uint8_t AbiTier(Tier t) {
  switch (t) {
    case Tier::kAdmin:
      return BULKHEAD_TIER_ADMIN;
    case Tier::kNamespace:
      return BULKHEAD_TIER_NAMESPACE;
    case Tier::kBaseline:
      return BULKHEAD_TIER_BASELINE;
    case Tier::kDefault:
      return BULKHEAD_TIER_DEFAULT;
  }
  return BULKHEAD_TIER_DEFAULT;
}

// The evaluator's namespace scope of a subject or pod peer: a namespace selector when
// set, else the explicit namespace, else the policy's own namespace, else every namespace.
bool NamespaceScopeMatches(const std::string& explicit_name,
                           const std::optional<policy::LabelSelector>& selector,
                           const policy::Policy& policy, const std::string& ns,
                           const policy::Labels& ns_labels) {
  if (selector) return selector->Matches(ns_labels);
  if (!explicit_name.empty()) return ns == explicit_name;
  if (!policy.namespace_name.empty()) return ns == policy.namespace_name;
  return true;
}

// The single namespace a scope is limited to, or "" when it may match several.
std::string FixedNamespace(const std::string& explicit_name,
                           const std::optional<policy::LabelSelector>& selector,
                           const policy::Policy& policy) {
  if (selector) return "";
  if (!explicit_name.empty()) return explicit_name;
  return policy.namespace_name;
}

// A canonical byte string of a label selector (length-prefixed, so distinct selectors
// never collide).
void AppendString(std::string& s, const std::string& v) { absl::StrAppend(&s, v.size(), ":", v); }
void AppendSelector(std::string& s, const policy::LabelSelector& sel) {
  s += "{";
  for (const auto& [k, v] : sel.match_labels) {
    AppendString(s, k);
    AppendString(s, v);
  }
  s += "|";
  std::vector<std::string> exprs;
  for (const auto& r : sel.match_expressions) {
    std::string e = absl::StrCat(static_cast<int>(r.op), ";");
    AppendString(e, r.key);
    std::vector<std::string> values = r.values;
    std::sort(values.begin(), values.end());
    values.erase(std::unique(values.begin(), values.end()), values.end());
    for (const auto& v : values) AppendString(e, v);
    exprs.push_back(std::move(e));
  }
  std::sort(exprs.begin(), exprs.end());
  for (const auto& e : exprs) AppendString(s, e);
  s += "}";
}

// Every CIDR a policy's rules name (ipBlock cidrs and excepts): each is a CIDR identity.
std::vector<policy::Cidr> PolicyCidrs(const policy::Policy& p) {
  std::vector<policy::Cidr> out;
  for (const auto* rules_d : {&p.ingress, &p.egress}) {
    for (const auto& rule : *rules_d) {
      for (const auto& peer : rule.peers) {
        if (peer.kind != policy::Peer::Kind::kIpBlock) continue;
        out.insert(out.end(), peer.cidrs.begin(), peer.cidrs.end());
        out.insert(out.end(), peer.except.begin(), peer.except.end());
      }
    }
  }
  return out;
}

// The keys of LabelFilter's default ignore list that a policy's pod selectors (subject and
// peers) reference: a policy set that references one makes it identity-relevant
// (LabelFilter::ForCluster), which changes identity keys.
std::vector<std::string> PolicyUnignoredKeys(const policy::Policy& p) {
  std::vector<std::string> out;
  auto scan = [&](const policy::LabelSelector& sel) {
    for (const std::string& key : identity::LabelFilter::DefaultIgnoredKeys()) {
      bool used = sel.match_labels.count(key) != 0 ||
                  std::any_of(sel.match_expressions.begin(), sel.match_expressions.end(),
                              [&](const policy::LabelRequirement& r) { return r.key == key; });
      if (used && std::find(out.begin(), out.end(), key) == out.end()) out.push_back(key);
    }
  };
  scan(p.subject.pod_selector);
  for (const auto* rules_d : {&p.ingress, &p.egress}) {
    for (const auto& rule : *rules_d) {
      for (const auto& peer : rule.peers) {
        if (peer.pod_selector) scan(*peer.pod_selector);
      }
    }
  }
  return out;
}

// Invalid pins are the caller's input: say which option they came from.
absl::Status PinError(const absl::Status& s) {
  if (s.code() != absl::StatusCode::kInvalidArgument) return s;
  return absl::InvalidArgumentError(absl::StrCat("compiler: pinned_identities: ", s.message()));
}

// One peer identity the tables distinguish: a workload identity or a CIDR identity.
struct PeerRec {
  NumericIdentity id = 0;
  bool workload = false;
  const identity::IdentityKey* key = nullptr;  // workload identities
  policy::Cidr cidr;                           // CIDR identities
  std::vector<uint32_t> nodes;                 // nodes whose address is exactly `cidr`
};

// A distinct rule peer ("predicate") and the peers it matches.
struct PredRec {
  const policy::Policy* policy = nullptr;
  const policy::Peer* peer = nullptr;
  std::vector<uint32_t> matches;  // peer indices, ascending
};

struct PolicyRec {
  const policy::Policy* policy = nullptr;
  uint8_t tier = BULKHEAD_TIER_NAMESPACE;
  bool audit = false;
  bool subject_has_process = false;
  uint32_t order = 0;  // position in evaluation order (tier, then priority or input order)
  std::array<std::vector<uint32_t>, 2> rules;  // RuleRec indices per direction
  std::array<uint32_t, 2> default_rule_id{};   // DefaultDeny: its rule id per direction
  std::array<bool, 2> named_ports{};           // some rule of the direction has a named port
  std::array<bool, 2> listed{};                // the evaluator lists it for the direction
};

// What a table's policy depends on: the policies that apply per direction (in evaluation
// order) and, when ingress rules use named ports, the local named ports they resolve to.
struct TableKey {
  std::array<std::vector<uint32_t>, 2> policies;
  std::vector<PortDefinition> local_ports;
  bool operator<(const TableKey& o) const {
    return std::tie(policies, local_ports) < std::tie(o.policies, o.local_ports);
  }
};

// Signatures are stored as vectors and looked up by span (no allocation per lookup).
using Sig = absl::Span<const uint32_t>;
struct SigHash {
  using is_transparent = void;
  size_t operator()(Sig s) const { return absl::HashOf(s); }
  size_t operator()(const std::vector<uint32_t>& v) const { return absl::HashOf(Sig(v)); }
};
struct SigEq {
  using is_transparent = void;
  bool operator()(Sig a, Sig b) const { return a == b; }
};

// One direction of a table: its program and its classes.
struct TableDir {
  ci::TierProgram program;
  std::vector<std::vector<uint32_t>> pos_preds;  // per program position: local pred ids
  std::vector<uint8_t> pos_all_peers;
  std::vector<uint32_t> local_preds;                   // local -> global pred id
  absl::flat_hash_map<uint32_t, uint32_t> pred_local;  // global -> local
  std::vector<uint32_t> named_refs;                    // egress: name ids, sorted
  absl::flat_hash_map<std::vector<uint32_t>, uint32_t, SigHash, SigEq> sig_class;
  absl::flat_hash_map<std::string, uint32_t> fn_class;
  std::vector<ci::VerdictFunction> classes;                 // index: class id
  std::vector<std::pair<uint32_t, uint32_t>> peer_classes;  // (peer index, class != 0)
};

struct TableRec {
  TableKey key;
  std::array<TableDir, 2> dirs;
  std::vector<NumericIdentity> identities;  // ascending
  std::vector<uint32_t> table_ids;          // one when shared; else one per identity
};

}  // namespace

struct PolicyCompiler::State {
  CompilerOptions options;
  std::optional<policy::Cluster> owned;  // PolicyCompiler's own copy (AddWorkload grows it)
  const policy::Cluster* cluster = nullptr;
  identity::LabelFilter filter;
  std::map<std::string, policy::Labels> ns_labels;
  identity::IdentityAllocator allocator;
  identity::CidrIdentities cidrs;

  std::vector<PeerRec> peers;
  std::unordered_map<NumericIdentity, uint32_t> peer_index;
  std::map<std::string, std::vector<uint32_t>> ns_peers;  // namespace -> workload peers
  std::vector<PredRec> preds;
  std::map<std::string, uint32_t> name_ids;       // named-port names used by rules
  std::vector<std::vector<uint32_t>> name_peers;  // name id -> peers with a port of that name

  std::vector<ci::RuleRec> rules;
  std::vector<uint32_t> rule_ids;  // the id of each rule, in IndexPolicies' order
  // Policies by slot: the input's policies first, in input order, then the versions that
  // UpdatePolicies added. A slot whose policy was removed or replaced stays (dead), so that
  // the predicates and rules that point into it stay valid.
  std::vector<PolicyRec> policies;
  std::vector<uint8_t> slot_live;              // per slot
  std::vector<uint32_t> input_slots;           // live slots in input order
  std::map<std::string, uint32_t> slot_by_id;  // Policy::Id() -> live slot
  // Who keeps each slot's policy alive: null for a slot of cluster->policies, else the
  // shared version (given to Create or UpdatePolicies; a loader may hold the same object).
  std::vector<std::shared_ptr<const policy::Policy>> slot_owner;
  // Live slots by their policy's address: a caller that hands back the very object a slot
  // holds (shared with its loader) is known unchanged without comparing it.
  absl::flat_hash_map<const policy::Policy*, uint32_t> slot_by_address;
  // The first compile's policies in input order (cluster->policies, or the shared ones).
  std::vector<const policy::Policy*> input_policies;
  bool shared_input = false;                      // created with policies apart from the cluster
  std::map<policy::Cidr, uint32_t> policy_cidrs;  // CIDRs live policies name, with counts
  std::map<std::string, uint32_t> unignored;      // PolicyUnignoredKeys of live policies, counted
  absl::flat_hash_map<std::string, uint32_t> pred_by_canon;  // canonical peer -> predicate
  size_t dead_rules = 0;                                     // rules of dead slots (compaction)
  bool policies_updated = false;     // UpdatePolicies ran: AddWorkload cannot
  std::vector<uint32_t> eval_order;  // live slots in evaluation order
  std::map<std::string, std::vector<uint32_t>> policies_by_ns;  // fixed-namespace subjects
  std::vector<uint32_t> policies_any_ns;                        // the others

  std::vector<std::unique_ptr<TableRec>> tables;
  std::map<TableKey, uint32_t> table_by_key;
  std::unordered_map<NumericIdentity, uint32_t> table_of;     // identity -> TableRec index
  std::unordered_map<NumericIdentity, uint32_t> table_id_of;  // identity -> table id
  // Which table directions use a predicate / an egress named-port name (incremental).
  struct PredUse {
    uint32_t table = 0;
    uint8_t dir = 0;
    uint32_t local = 0;
  };
  std::vector<std::vector<PredUse>> pred_users;
  std::vector<std::vector<uint32_t>> name_users;  // name id -> TableRec indices (egress)

  std::map<policy::IpAddr, std::string> workload_ips;
  std::set<std::string> workload_ids;
  uint32_t next_table_id = 1;
  bool dropped = false;  // DropIncrementalState ran: AddWorkload cannot
  // Scratch buffers reused across tables (ComputeTable, ClassFor).
  std::vector<uint32_t> scratch_count, scratch_offset, scratch_flat, scratch_sig, scratch_touched;
  std::vector<uint8_t> scratch_named, scratch_matched, scratch_peer_ok;
  CompiledPolicy out;

  // ---- building blocks
  const policy::Labels& NamespaceLabels(const std::string& ns);
  absl::Status ValidateWorkload(const policy::Workload& w) const;
  absl::Status AssignRuleIds();  // rule_ids: in IndexPolicies' order
  void IndexPolicies();
  // One policy into `slot` (policies[slot] must exist), its rules numbered by rule_id_of.
  void IndexPolicy(uint32_t slot, const policy::Policy& p,
                   const std::function<uint32_t(Direction, int)>& rule_id_of);
  void AddSubjectIndex(uint32_t slot);
  void RemoveSubjectIndex(uint32_t slot);
  // Positions of `in_order` (input order) in evaluation order.
  static std::vector<uint32_t> EvalOrderOf(const std::vector<const policy::Policy*>& in_order);
  void ComputeEvalOrder();  // eval_order and PolicyRec::order from input_slots
  void IndexPredicates();
  // The predicates of one policy's rules; those it creates are appended to new_preds.
  void IndexPolicyPredicates(uint32_t slot, std::vector<uint32_t>* new_preds);
  // `next` in input order; adopt(i) gives the owner of next[i] when it becomes a new slot.
  absl::StatusOr<PolicyUpdate> UpdatePolicies(
      const std::vector<const policy::Policy*>& next,
      const std::function<std::shared_ptr<const policy::Policy>(size_t)>& adopt,
      uint32_t table_id_base);
  bool PredMatches(const PredRec& pred, const PeerRec& peer) const;
  uint32_t AddPeer(PeerRec peer);
  TableKey KeyFor(const identity::IdentityKey& key) const;
  void BuildProgram(TableRec& rec, int d);
  uint32_t ClassFor(TableRec& rec, int d, Sig sig, const std::vector<PortDefinition>& dst_ports,
                    bool* created);
  void ComputeTable(uint32_t rec_index);
  std::vector<uint32_t> PeerSignatureNamed(const TableDir& td, const PeerRec& peer) const;
  const std::vector<PortDefinition>& DstPorts(const TableRec& rec, int d,
                                              const PeerRec& peer) const;
  void EmitClass(const TableRec& rec, int d, uint32_t class_id, uint32_t table_id,
                 CompileDelta* delta);
  void EmitPeer(uint32_t table_id, int d, const PeerRec& peer, uint32_t class_id,
                CompileDelta* delta);
  void EmitIpcache(const policy::Cidr& prefix, NumericIdentity id, uint32_t flags,
                   CompileDelta* delta);
  policy::Mode ModeOf(const policy::Workload& w) const;
  bool IsLocal(const policy::Workload& w) const {
    return options.node.empty() || w.node == options.node;
  }
  CompiledTable* MutableTable(uint32_t table_id);
  CompiledIdentity* MutableIdentity(NumericIdentity id);
  // Incremental steps: a new peer's class in every existing table; an identity's table.
  void AddPeerToTables(uint32_t p, const std::vector<uint32_t>& matched, CompileDelta* delta);
  bool EnsureTable(NumericIdentity id, CompileDelta* delta);  // true: a new table id
  absl::Status CompileAll();
};

namespace {
const std::vector<PortDefinition> kNoPorts;
}  // namespace

const policy::Labels& PolicyCompiler::State::NamespaceLabels(const std::string& ns) {
  auto it = ns_labels.find(ns);
  if (it != ns_labels.end()) return it->second;
  // A namespace used without a Namespace object has just its name label (as the loader
  // and the evaluator give it).
  return ns_labels.emplace(ns, policy::Labels{{kMetadataNameLabel, ns}}).first->second;
}

absl::Status PolicyCompiler::State::ValidateWorkload(const policy::Workload& w) const {
  for (const auto& ip : w.ips) {
    auto it = workload_ips.find(ip);
    if (it != workload_ips.end() && it->second != w.Id()) {
      return absl::InvalidArgumentError(
          absl::StrCat(w.source.ToString(), ": workload ", w.Id(), ": ips: address ", ip.ToString(),
                       " is already the address of workload ", it->second,
                       "; the ipcache maps one address to one identity"));
    }
  }
  return absl::OkStatus();
}

policy::Mode PolicyCompiler::State::ModeOf(const policy::Workload& w) const {
  if (w.mode) return *w.mode;
  const policy::Namespace* ns = cluster->FindNamespace(w.namespace_name);
  if (ns != nullptr && ns->mode) return *ns->mode;
  return policy::Mode::kEnforce;
}

absl::Status PolicyCompiler::State::AssignRuleIds() {
  // The rules in the order IndexPolicies numbers them.
  std::vector<RuleKey> keys;
  for (const policy::Policy* pp : input_policies) {
    const policy::Policy& p = *pp;
    for (int d = 0; d < 2; ++d) {
      Direction dir = ci::DirOf(d);
      if (p.tier == Tier::kDefault) {
        if (p.Applies(dir)) keys.push_back(RuleKey{p.Id(), dir, -1});
        continue;
      }
      for (size_t r = 0; r < p.Rules(dir).size(); ++r) {
        keys.push_back(RuleKey{p.Id(), dir, static_cast<int>(r)});
      }
    }
  }
  std::set<uint32_t> blocked;
  std::map<uint32_t, const RuleKey*> owner;
  for (const auto& [key, id] : options.pinned_rules) {
    if (id == BULKHEAD_RULE_NONE) {
      return absl::InvalidArgumentError(absl::StrCat("compiler: pinned_rules: ", key.policy, " ",
                                                     policy::DirectionName(key.direction), " rule ",
                                                     key.rule_index, " is pinned to id 0"));
    }
    auto [it, inserted] = owner.emplace(id, &key);
    if (!inserted) {
      return absl::InvalidArgumentError(absl::StrCat(
          "compiler: pinned_rules: id ", id, " is pinned to two rules: ", it->second->policy,
          " rule ", it->second->rule_index, " and ", key.policy, " rule ", key.rule_index));
    }
    blocked.insert(id);
  }
  rule_ids.clear();
  rule_ids.reserve(keys.size());
  std::set<uint32_t> used;
  uint32_t next = 1;
  uint32_t max_id = 0;
  for (const RuleKey& k : keys) {
    uint32_t id = 0;
    if (auto it = options.pinned_rules.find(k);
        it != options.pinned_rules.end() && used.count(it->second) == 0) {
      id = it->second;
    } else {
      while (blocked.count(next) != 0 || used.count(next) != 0) ++next;
      id = next++;
    }
    used.insert(id);
    rule_ids.push_back(id);
    max_id = std::max(max_id, id);
  }
  if (max_id > keys.size() + blocked.size() + (1u << 20)) {
    // A pin far beyond the rules makes a huge, sparse rule table: refuse rather than allocate.
    return absl::InvalidArgumentError(absl::StrCat("compiler: pinned_rules: id ", max_id,
                                                   " is far above the ", keys.size(), " rules"));
  }
  out.rules.assign(max_id + 1, CompiledRule{});
  return absl::OkStatus();
}

void PolicyCompiler::State::IndexPolicies() {
  const auto& ps = input_policies;
  policies.resize(ps.size());
  slot_live.assign(ps.size(), 1);
  slot_owner.resize(ps.size());
  input_slots.clear();
  // Rule table: [0] none, then every rule of every policy in input order, so that rule
  // ids do not depend on workloads (and stay put when workloads are added). Pinned rules
  // keep their ids (AssignRuleIds).
  size_t next_rule = 0;
  for (uint32_t i = 0; i < ps.size(); ++i) {
    IndexPolicy(i, *ps[i], [&](Direction, int) { return rule_ids[next_rule++]; });
    input_slots.push_back(i);
    slot_by_id.emplace(ps[i]->Id(), i);
    slot_by_address.emplace(ps[i], i);
    AddSubjectIndex(i);
    for (const policy::Cidr& c : PolicyCidrs(*ps[i])) ++policy_cidrs[c];
    for (const std::string& k : PolicyUnignoredKeys(*ps[i])) ++unignored[k];
  }
  ComputeEvalOrder();
}

void PolicyCompiler::State::IndexPolicy(uint32_t slot, const policy::Policy& p,
                                        const std::function<uint32_t(Direction, int)>& rule_id_of) {
  PolicyRec& rec = policies[slot];
  rec.policy = &p;
  rec.tier = AbiTier(p.tier);
  rec.audit = p.mode != policy::Mode::kEnforce;
  rec.subject_has_process = p.subject.process.has_value();
  for (int d = 0; d < 2; ++d) {
    Direction dir = ci::DirOf(d);
    auto base_rule = [&](int index, const std::string& rule_name, policy::RuleAction action) {
      CompiledRule r;
      r.policy = p.Id();
      r.policy_kind = p.kind;
      r.policy_namespace = p.namespace_name;
      r.policy_name = p.name;
      r.direction = dir;
      r.rule_index = index;
      r.rule_name = rule_name;
      r.tier = p.tier;
      r.action = action;
      r.mode = p.mode;
      const uint32_t id = rule_id_of(dir, index);
      if (id >= out.rules.size()) out.rules.resize(id + 1);
      out.rules[id] = std::move(r);
      return id;
    };
    if (p.tier == Tier::kDefault) {
      rec.listed[d] = p.Applies(dir);
      if (rec.listed[d]) rec.default_rule_id[d] = base_rule(-1, "", policy::RuleAction::kDeny);
      continue;
    }
    // Admin and baseline policies act through their rules of a direction; the
    // namespace tier through its policy types (as the evaluator lists them).
    rec.listed[d] = p.tier == Tier::kNamespace ? p.Applies(dir) : !p.Rules(dir).empty();
    const auto& rules_d = p.Rules(dir);
    for (size_t r = 0; r < rules_d.size(); ++r) {
      const policy::Rule& rule = rules_d[r];
      ci::RuleRec rr;
      rr.rule_id = base_rule(static_cast<int>(r), rule.name, rule.action);
      rr.action = rule.action;
      rr.tier = rec.tier;
      rr.audit = rec.audit;
      rr.all_peers = rule.all_peers;
      rr.ports = &rule.ports;
      for (const auto& pm : rule.ports) {
        if (pm.kind == policy::PortMatch::Kind::kNamed) rr.has_named_ports = true;
      }
      rec.named_ports[d] = rec.named_ports[d] || rr.has_named_ports;
      rec.rules[d].push_back(static_cast<uint32_t>(rules.size()));
      rules.push_back(std::move(rr));
    }
  }
}

void PolicyCompiler::State::AddSubjectIndex(uint32_t slot) {
  const policy::Policy& p = *policies[slot].policy;
  std::string fixed = FixedNamespace(p.subject.namespace_name, p.subject.namespace_selector, p);
  if (fixed.empty()) {
    policies_any_ns.push_back(slot);
  } else {
    policies_by_ns[fixed].push_back(slot);
  }
}

void PolicyCompiler::State::RemoveSubjectIndex(uint32_t slot) {
  const policy::Policy& p = *policies[slot].policy;
  std::string fixed = FixedNamespace(p.subject.namespace_name, p.subject.namespace_selector, p);
  std::vector<uint32_t>& list = fixed.empty() ? policies_any_ns : policies_by_ns[fixed];
  std::erase(list, slot);
}

std::vector<uint32_t> PolicyCompiler::State::EvalOrderOf(
    const std::vector<const policy::Policy*>& in_order) {
  // Admin and baseline by (priority, name, kind), as the evaluator sorts them; the
  // namespace tier and DefaultDeny in input order.
  std::array<std::vector<uint32_t>, 4> by_tier;
  for (uint32_t i = 0; i < in_order.size(); ++i) {
    by_tier[static_cast<int>(in_order[i]->tier)].push_back(i);
  }
  auto by_priority = [&](uint32_t a, uint32_t b) {
    const auto& pa = *in_order[a];
    const auto& pb = *in_order[b];
    return std::tie(pa.priority, pa.name, pa.kind) < std::tie(pb.priority, pb.name, pb.kind);
  };
  std::stable_sort(by_tier[0].begin(), by_tier[0].end(), by_priority);
  std::stable_sort(by_tier[2].begin(), by_tier[2].end(), by_priority);
  std::vector<uint32_t> order;
  order.reserve(in_order.size());
  for (const auto& tier : by_tier) order.insert(order.end(), tier.begin(), tier.end());
  return order;
}

void PolicyCompiler::State::ComputeEvalOrder() {
  std::vector<const policy::Policy*> in_order;
  in_order.reserve(input_slots.size());
  for (uint32_t slot : input_slots) in_order.push_back(policies[slot].policy);
  eval_order.clear();
  for (uint32_t position : EvalOrderOf(in_order)) {
    const uint32_t slot = input_slots[position];
    policies[slot].order = static_cast<uint32_t>(eval_order.size());
    eval_order.push_back(slot);
  }
}

bool PolicyCompiler::State::PredMatches(const PredRec& pred, const PeerRec& peer) const {
  const policy::Peer& p = *pred.peer;
  switch (p.kind) {
    case policy::Peer::Kind::kPods: {
      if (!peer.workload) return false;
      const identity::IdentityKey& k = *peer.key;
      if (!NamespaceScopeMatches(p.same_namespace, p.namespace_selector, *pred.policy,
                                 k.namespace_name, k.namespace_labels)) {
        return false;
      }
      if (p.pod_selector && !p.pod_selector->Matches(k.labels)) return false;
      if (p.service_account && *p.service_account != k.service_account) return false;
      // Packets carry no process: a peer that names processes matches no packet.
      return !p.process.has_value();
    }
    case policy::Peer::Kind::kIpBlock: {
      if (peer.workload) return false;
      // Every address of the class lies in a cut CIDR iff the class's CIDR does.
      bool in = std::any_of(p.cidrs.begin(), p.cidrs.end(),
                            [&](const policy::Cidr& c) { return c.Contains(peer.cidr); });
      return in && std::none_of(p.except.begin(), p.except.end(),
                                [&](const policy::Cidr& c) { return c.Contains(peer.cidr); });
    }
    case policy::Peer::Kind::kNodes:
      if (peer.workload) return false;
      return std::any_of(peer.nodes.begin(), peer.nodes.end(), [&](uint32_t n) {
        return p.node_selector.Matches(cluster->nodes[n].labels);
      });
  }
  return false;
}

void PolicyCompiler::State::IndexPredicates() {
  for (uint32_t slot = 0; slot < policies.size(); ++slot) IndexPolicyPredicates(slot, nullptr);
  name_peers.assign(name_ids.size(), {});
  name_users.assign(name_ids.size(), {});
  pred_users.assign(preds.size(), {});
}

void PolicyCompiler::State::IndexPolicyPredicates(uint32_t slot, std::vector<uint32_t>* new_preds) {
  const PolicyRec& prec = policies[slot];
  const policy::Policy& p = *prec.policy;
  for (int d = 0; d < 2; ++d) {
    const auto& rules_d = p.Rules(ci::DirOf(d));
    if (p.tier == Tier::kDefault) continue;  // its rules are not evaluated (IndexPolicy)
    for (size_t r = 0; r < rules_d.size(); ++r) {
      ci::RuleRec& rr = rules[prec.rules[d][r]];
      for (const auto& peer : rules_d[r].peers) {
        std::string canon = absl::StrCat(static_cast<int>(peer.kind), "/");
        switch (peer.kind) {
          case policy::Peer::Kind::kPods: {
            std::string fixed = FixedNamespace(peer.same_namespace, peer.namespace_selector, p);
            if (peer.namespace_selector) {
              canon += "sel";
              AppendSelector(canon, *peer.namespace_selector);
            } else {
              canon += "ns";
              AppendString(canon, fixed);
            }
            canon += peer.pod_selector ? "pod" : "any";
            if (peer.pod_selector) AppendSelector(canon, *peer.pod_selector);
            canon += peer.service_account ? "sa" : "-";
            if (peer.service_account) AppendString(canon, *peer.service_account);
            canon += peer.process ? "proc" : "-";
            break;
          }
          case policy::Peer::Kind::kIpBlock: {
            std::vector<policy::Cidr> c = peer.cidrs, e = peer.except;
            std::sort(c.begin(), c.end());
            std::sort(e.begin(), e.end());
            for (const auto& x : c) absl::StrAppend(&canon, x.ToString(), ",");
            canon += "except";
            for (const auto& x : e) absl::StrAppend(&canon, x.ToString(), ",");
            break;
          }
          case policy::Peer::Kind::kNodes:
            AppendSelector(canon, peer.node_selector);
            break;
        }
        auto [it, inserted] = pred_by_canon.emplace(canon, static_cast<uint32_t>(preds.size()));
        if (inserted) {
          preds.push_back(PredRec{&p, &peer, {}});
          if (new_preds != nullptr) new_preds->push_back(it->second);
        }
        if (std::find(rr.preds.begin(), rr.preds.end(), it->second) == rr.preds.end()) {
          rr.preds.push_back(it->second);
        }
      }
      for (const auto& pm : rules_d[r].ports) {
        if (pm.kind == policy::PortMatch::Kind::kNamed) {
          name_ids.emplace(pm.name, static_cast<uint32_t>(name_ids.size()));
        }
      }
    }
  }
}

uint32_t PolicyCompiler::State::AddPeer(PeerRec peer) {
  uint32_t index = static_cast<uint32_t>(peers.size());
  peer_index[peer.id] = index;
  if (peer.workload) {
    ns_peers[peer.key->namespace_name].push_back(index);
    for (const auto& np : peer.key->named_ports) {
      auto it = name_ids.find(np.name);
      if (it == name_ids.end()) continue;
      auto& list = name_peers[it->second];
      if (list.empty() || list.back() != index) list.push_back(index);
    }
  }
  peers.push_back(std::move(peer));
  return index;
}

TableKey PolicyCompiler::State::KeyFor(const identity::IdentityKey& key) const {
  std::vector<uint32_t> candidates = policies_any_ns;
  if (auto it = policies_by_ns.find(key.namespace_name); it != policies_by_ns.end()) {
    candidates.insert(candidates.end(), it->second.begin(), it->second.end());
  }
  std::sort(candidates.begin(), candidates.end(),
            [&](uint32_t a, uint32_t b) { return policies[a].order < policies[b].order; });
  TableKey tk;
  bool ingress_named = false;
  for (uint32_t pi : candidates) {
    const PolicyRec& rec = policies[pi];
    if (!rec.listed[0] && !rec.listed[1]) continue;
    // Packets carry no process: a subject that names processes selects no packet.
    if (rec.subject_has_process) continue;
    const policy::Policy& p = *rec.policy;
    if (!NamespaceScopeMatches(p.subject.namespace_name, p.subject.namespace_selector, p,
                               key.namespace_name, key.namespace_labels)) {
      continue;
    }
    if (!p.subject.pod_selector.Matches(key.labels)) continue;
    for (int d = 0; d < 2; ++d) {
      if (rec.listed[d]) tk.policies[d].push_back(pi);
    }
    ingress_named = ingress_named || (rec.listed[0] && rec.named_ports[0]);
  }
  if (ingress_named) tk.local_ports = key.named_ports;
  return tk;
}

void PolicyCompiler::State::BuildProgram(TableRec& rec, int d) {
  TableDir& td = rec.dirs[d];
  ci::TierProgram& prog = td.program;
  bool ns_started = false, baseline_started = false;
  auto start_ns = [&] {
    if (!ns_started) prog.ns_begin = static_cast<uint32_t>(prog.rules.size());
    ns_started = true;
  };
  auto start_baseline = [&] {
    start_ns();
    if (!baseline_started) prog.baseline_begin = static_cast<uint32_t>(prog.rules.size());
    baseline_started = true;
  };
  std::set<uint32_t> named;
  for (uint32_t pi : rec.key.policies[d]) {
    const PolicyRec& p = policies[pi];
    prog.has_audit = prog.has_audit || p.audit;
    if (p.tier == BULKHEAD_TIER_DEFAULT) {
      prog.defaults.push_back(ci::DefaultStep{p.default_rule_id[d], p.audit});
      continue;
    }
    if (p.tier == BULKHEAD_TIER_NAMESPACE) {
      start_ns();
      (p.audit ? prog.ns_audit : prog.ns_enforce) = true;
    } else if (p.tier == BULKHEAD_TIER_BASELINE) {
      start_baseline();
    }
    for (uint32_t r : p.rules[d]) {
      const ci::RuleRec& rr = rules[r];
      prog.rules.push_back(r);
      std::vector<uint32_t> locals;
      for (uint32_t g : rr.preds) {
        auto [it, inserted] =
            td.pred_local.emplace(g, static_cast<uint32_t>(td.local_preds.size()));
        if (inserted) td.local_preds.push_back(g);
        locals.push_back(it->second);
      }
      td.pos_preds.push_back(std::move(locals));
      td.pos_all_peers.push_back(rr.all_peers ? 1 : 0);
      if (d == 1 && rr.has_named_ports) {
        for (const auto& pm : *rr.ports) {
          if (pm.kind == policy::PortMatch::Kind::kNamed) named.insert(name_ids.at(pm.name));
        }
      }
    }
  }
  start_baseline();
  td.named_refs.assign(named.begin(), named.end());
}

const std::vector<PortDefinition>& PolicyCompiler::State::DstPorts(const TableRec& rec, int d,
                                                                   const PeerRec& peer) const {
  if (d == 0) return rec.key.local_ports;  // ingress: the local workload is the destination
  return peer.workload ? peer.key->named_ports : kNoPorts;
}

// The part of a peer's signature that comes from egress named ports: marker, name id,
// then the protocol/port of each of the peer's ports with that name.
std::vector<uint32_t> PolicyCompiler::State::PeerSignatureNamed(const TableDir& td,
                                                                const PeerRec& peer) const {
  std::vector<uint32_t> sig;
  if (!peer.workload || td.named_refs.empty()) return sig;
  for (uint32_t n : td.named_refs) {
    bool marked = false;
    for (const auto& np : peer.key->named_ports) {
      auto it = name_ids.find(np.name);
      if (it == name_ids.end() || it->second != n) continue;
      if (!marked) sig.push_back(0x80000000u | n);
      marked = true;
      sig.push_back((static_cast<uint32_t>(np.protocol) << 16) | np.port);
    }
  }
  return sig;
}

uint32_t PolicyCompiler::State::ClassFor(TableRec& rec, int d, Sig sig,
                                         const std::vector<PortDefinition>& dst_ports,
                                         bool* created) {
  *created = false;
  TableDir& td = rec.dirs[d];
  if (auto it = td.sig_class.find(sig); it != td.sig_class.end()) return it->second;
  // Which program positions this signature's peers match.
  std::vector<uint8_t>& matched_local = scratch_matched;
  matched_local.assign(td.local_preds.size(), 0);
  for (uint32_t v : sig) {
    if ((v & 0x80000000u) != 0) break;  // named-port part follows the predicates
    matched_local[v] = 1;
  }
  std::vector<uint8_t>& peer_ok = scratch_peer_ok;
  peer_ok.assign(td.program.rules.size(), 0);
  for (size_t pos = 0; pos < peer_ok.size(); ++pos) {
    bool ok = td.pos_all_peers[pos] != 0;
    for (uint32_t l : td.pos_preds[pos]) ok = ok || matched_local[l] != 0;
    peer_ok[pos] = ok ? 1 : 0;
  }
  ci::VerdictFunction f = ci::EvaluateFunction(td.program, rules, peer_ok, dst_ports);
  std::string ser = ci::SerializeFunction(f);
  uint32_t cls;
  if (auto it = td.fn_class.find(ser); it != td.fn_class.end()) {
    cls = it->second;
  } else {
    cls = static_cast<uint32_t>(td.classes.size());
    td.fn_class.emplace(std::move(ser), cls);
    td.classes.push_back(std::move(f));
    *created = true;
  }
  td.sig_class.emplace(std::vector<uint32_t>(sig.begin(), sig.end()), cls);
  return cls;
}

void PolicyCompiler::State::ComputeTable(uint32_t rec_index) {
  TableRec& rec = *tables[rec_index];
  for (int d = 0; d < 2; ++d) {
    BuildProgram(rec, d);
    TableDir& td = rec.dirs[d];
    bool created;
    // Class 0: a peer matching no predicate (world), with no named ports.
    ClassFor(rec, d, {}, d == 0 ? rec.key.local_ports : kNoPorts, &created);
    for (uint32_t l = 0; l < td.local_preds.size(); ++l) {
      pred_users[td.local_preds[l]].push_back(PredUse{rec_index, static_cast<uint8_t>(d), l});
    }
    for (uint32_t n : td.named_refs) name_users[n].push_back(rec_index);
    // Signatures of every peer that matches a predicate or has a referenced named port,
    // built in one flat buffer: count, offsets in peer order, fill in predicate order (so
    // each signature is sorted).
    std::vector<uint32_t>& count = scratch_count;
    std::vector<uint32_t>& offset = scratch_offset;
    std::vector<uint8_t>& named = scratch_named;
    count.resize(peers.size(), 0);
    offset.resize(peers.size(), 0);
    named.resize(peers.size(), 0);
    for (uint32_t g : td.local_preds) {
      for (uint32_t p : preds[g].matches) ++count[p];
    }
    for (uint32_t n : td.named_refs) {
      for (uint32_t p : name_peers[n]) named[p] = 1;
    }
    std::vector<uint32_t>& touched = scratch_touched;
    touched.clear();
    uint32_t total = 0;
    for (uint32_t p = 0; p < peers.size(); ++p) {
      if (count[p] == 0 && named[p] == 0) continue;
      touched.push_back(p);
      offset[p] = total;
      total += count[p];
    }
    std::vector<uint32_t>& flat = scratch_flat;
    flat.resize(total);
    for (uint32_t l = 0; l < td.local_preds.size(); ++l) {
      for (uint32_t p : preds[td.local_preds[l]].matches) flat[offset[p]++] = l;
    }
    for (uint32_t p : touched) {
      uint32_t n = count[p];
      Sig sig(flat.data() + offset[p] - n, n);
      if (named[p]) {
        scratch_sig.assign(sig.begin(), sig.end());
        std::vector<uint32_t> part = PeerSignatureNamed(td, peers[p]);
        scratch_sig.insert(scratch_sig.end(), part.begin(), part.end());
        sig = Sig(scratch_sig);
      }
      uint32_t cls = ClassFor(rec, d, sig, DstPorts(rec, d, peers[p]), &created);
      if (cls != BULKHEAD_CLASS_DEFAULT) td.peer_classes.emplace_back(p, cls);
      count[p] = 0;
      named[p] = 0;
    }
  }
}

void PolicyCompiler::State::EmitClass(const TableRec& rec, int d, uint32_t class_id,
                                      uint32_t table_id, CompileDelta* delta) {
  const ci::VerdictFunction& f = rec.dirs[d].classes[class_id];
  for (int k = 0; k < ci::kNumProtocols; ++k) {
    for (const ci::PortPrefix& e : ci::EncodePrefixes(f[k])) {
      bulkhead_policy_port_key key =
          PortKey(table_id, class_id, ci::DirOf(d), ci::kProtocols[k], e.port, e.bits);
      bulkhead_policy_port_value value = e.outcome.ToAbi();
      out.maps.ports.Update(key, value);
      if (delta != nullptr) delta->ports.emplace_back(key, value);
    }
  }
}

void PolicyCompiler::State::EmitPeer(uint32_t table_id, int d, const PeerRec& peer,
                                     uint32_t class_id, CompileDelta* delta) {
  bulkhead_policy_peer_key key = PeerKey(table_id, peer.id, ci::DirOf(d));
  bulkhead_policy_peer_value value{class_id};
  out.maps.peers.Update(key, value);
  if (delta != nullptr) delta->peers.emplace_back(key, value);
}

void PolicyCompiler::State::EmitIpcache(const policy::Cidr& prefix, NumericIdentity id,
                                        uint32_t flags, CompileDelta* delta) {
  bulkhead_ipcache_key key = IpcacheKey(prefix);
  bulkhead_ipcache_value value{id, flags};
  out.maps.ipcache.Update(key, value);
  if (delta != nullptr) delta->ipcache.emplace_back(key, value);
}

absl::Status PolicyCompiler::State::CompileAll() {
  if (options.table_id_base == BULKHEAD_TABLE_NONE) {
    return absl::InvalidArgumentError("compiler: table_id_base must be at least 1");
  }
  for (const auto& ns : cluster->namespaces) ns_labels[ns.name] = ns.labels;
  {
    // LabelFilter::ForCluster over input_policies (which need not be cluster->policies).
    std::set<std::string> ignored(identity::LabelFilter::DefaultIgnoredKeys().begin(),
                                  identity::LabelFilter::DefaultIgnoredKeys().end());
    for (const policy::Policy* p : input_policies) {
      for (const std::string& k : PolicyUnignoredKeys(*p)) ignored.erase(k);
    }
    filter = identity::LabelFilter(std::move(ignored));
  }

  // Workload identities.
  std::vector<identity::IdentityKey> keys;
  for (const auto& w : cluster->workloads) {
    if (!workload_ids.insert(w.Id()).second) {
      return absl::InvalidArgumentError(
          absl::StrCat(w.source.ToString(), ": workload ", w.Id(), ": defined more than once"));
    }
    if (absl::Status s = ValidateWorkload(w); !s.ok()) return s;
    for (const auto& ip : w.ips) workload_ips.emplace(ip, w.Id());
    keys.push_back(identity::MakeIdentityKey(NamespaceLabels(w.namespace_name), w, filter));
  }
  auto allocator_or =
      identity::IdentityAllocator::ForKeys(keys, options.pinned_identities.workloads);
  if (!allocator_or.ok()) return PinError(allocator_or.status());
  allocator = std::move(*allocator_or);
  // The identities that need a table: those of the workloads on this node (all without one).
  std::set<NumericIdentity> local_ids;
  for (size_t i = 0; i < keys.size(); ++i) {
    if (IsLocal(cluster->workloads[i])) local_ids.insert(allocator.Find(keys[i]));
  }

  // CIDR identities: every CIDR policy names, and every node address.
  std::vector<policy::Cidr> cut;
  for (const policy::Policy* p : input_policies) {
    std::vector<policy::Cidr> named = PolicyCidrs(*p);
    cut.insert(cut.end(), named.begin(), named.end());
  }
  for (const auto& node : cluster->nodes) {
    for (const auto& ip : node.ips) cut.push_back(identity::HostPrefix(ip));
  }
  auto cidrs_or =
      identity::CidrIdentities::ForCidrs(std::move(cut), options.pinned_identities.cidrs);
  if (!cidrs_or.ok()) return PinError(cidrs_or.status());
  cidrs = std::move(*cidrs_or);

  if (absl::Status st = AssignRuleIds(); !st.ok()) return st;
  IndexPolicies();
  IndexPredicates();

  // Peers: workload identities, then CIDR identities, each ascending.
  for (const auto& [id, key] : allocator.identities()) {
    PeerRec peer;
    peer.id = id;
    peer.workload = true;
    peer.key = &key;
    AddPeer(std::move(peer));
  }
  for (const auto& ci_entry : cidrs.all()) {
    PeerRec peer;
    peer.id = ci_entry.id;
    peer.cidr = ci_entry.cidr;
    for (uint32_t n = 0; n < cluster->nodes.size(); ++n) {
      const auto& node_ips = cluster->nodes[n].ips;
      if (ci_entry.cidr.prefix_len == ci_entry.cidr.addr.BitWidth() &&
          std::find(node_ips.begin(), node_ips.end(), ci_entry.cidr.addr) != node_ips.end()) {
        peer.nodes.push_back(n);
      }
    }
    AddPeer(std::move(peer));
  }

  // Predicate matches. A pod predicate whose pod selector requires labels looks only at
  // the workload identities that carry one of them (the rarest); the others look only at the
  // namespaces in their scope.
  std::map<std::pair<std::string, std::string>, std::vector<uint32_t>> by_label;
  uint32_t first_cidr_peer = static_cast<uint32_t>(peers.size());
  for (uint32_t p = 0; p < peers.size(); ++p) {
    if (!peers[p].workload) {
      first_cidr_peer = std::min(first_cidr_peer, p);
      continue;
    }
    for (const auto& label : peers[p].key->labels) by_label[label].push_back(p);
  }
  const std::vector<uint32_t> no_peers;
  for (auto& pred : preds) {
    const policy::Peer& peer = *pred.peer;
    if (peer.kind == policy::Peer::Kind::kPods && peer.pod_selector &&
        !peer.pod_selector->match_labels.empty()) {
      const std::vector<uint32_t>* candidates = nullptr;
      for (const auto& label : peer.pod_selector->match_labels) {
        auto it = by_label.find(label);
        const std::vector<uint32_t>* list = it == by_label.end() ? &no_peers : &it->second;
        if (candidates == nullptr || list->size() < candidates->size()) candidates = list;
      }
      for (uint32_t p : *candidates) {
        if (PredMatches(pred, peers[p])) pred.matches.push_back(p);  // ascending already
      }
    } else if (peer.kind == policy::Peer::Kind::kPods) {
      std::string fixed =
          FixedNamespace(peer.same_namespace, peer.namespace_selector, *pred.policy);
      for (const auto& [ns, members] : ns_peers) {
        if (!fixed.empty() && ns != fixed) continue;
        if (peer.namespace_selector &&
            !peer.namespace_selector->Matches(peers[members.front()].key->namespace_labels)) {
          continue;
        }
        for (uint32_t p : members) {
          if (PredMatches(pred, peers[p])) pred.matches.push_back(p);
        }
      }
      std::sort(pred.matches.begin(), pred.matches.end());
    } else {
      for (uint32_t p = first_cidr_peer; p < peers.size(); ++p) {
        if (!peers[p].workload && PredMatches(pred, peers[p])) pred.matches.push_back(p);
      }
    }
  }

  // Tables, in order of their first identity.
  for (const auto& [id, key] : allocator.identities()) {
    if (local_ids.count(id) == 0) continue;
    TableKey tk = KeyFor(key);
    auto [it, inserted] = table_by_key.emplace(std::move(tk), static_cast<uint32_t>(tables.size()));
    if (inserted) {
      auto rec = std::make_unique<TableRec>();
      rec->key = it->first;
      tables.push_back(std::move(rec));
      ComputeTable(it->second);
    }
    tables[it->second]->identities.push_back(id);
    table_of[id] = it->second;
  }

  // Table ids and map entries.
  uint64_t needed = options.share_tables ? tables.size() : local_ids.size();
  if (uint64_t{options.table_id_base} + needed > std::numeric_limits<uint32_t>::max()) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "compiler: table ids from ", options.table_id_base, " cannot hold ", needed, " tables"));
  }
  next_table_id = options.table_id_base;
  out.table_id_base = options.table_id_base;
  // Tables of the earlier compile by content (entries without the table id), for reuse.
  // Only ids below this compile's base can be reused: the others may be given out anew.
  absl::flat_hash_map<std::string, std::vector<uint32_t>> earlier;
  std::set<uint32_t> claimed;
  if (const CompiledPolicy* prev = options.reuse_tables_of; prev != nullptr) {
    for (const CompiledTable& t : prev->tables) {
      if (t.table_id >= options.table_id_base) continue;
      std::string content;
      prev->maps.peers.AppendTableContent(t.table_id, &content);
      content += '|';
      prev->maps.ports.AppendTableContent(t.table_id, &content);
      earlier[content].push_back(t.table_id);
    }
  }
  // The tables in order (with shared tables one per TableRec; else one per local identity),
  // each written under the next new id, then renamed to an earlier table's id when its
  // entries are those of that table.
  std::vector<std::pair<uint32_t, std::vector<NumericIdentity>>> table_order;  // rec, ids
  if (options.share_tables) {
    for (uint32_t t = 0; t < tables.size(); ++t) table_order.emplace_back(t, tables[t]->identities);
  } else {
    for (NumericIdentity id : local_ids) table_order.push_back({table_of[id], {id}});
  }
  for (const auto& [t, ids] : table_order) {
    TableRec& rec = *tables[t];
    uint32_t tid = next_table_id;
    CompiledTable ct;
    for (int d = 0; d < 2; ++d) {
      ct.classes[d] = static_cast<uint32_t>(rec.dirs[d].classes.size());
      for (uint32_t c = 0; c < rec.dirs[d].classes.size(); ++c) EmitClass(rec, d, c, tid, nullptr);
      for (const auto& [p, c] : rec.dirs[d].peer_classes) EmitPeer(tid, d, peers[p], c, nullptr);
    }
    uint32_t reused = BULKHEAD_TABLE_NONE;
    if (!earlier.empty()) {
      std::string content;
      out.maps.peers.AppendTableContent(tid, &content);
      content += '|';
      out.maps.ports.AppendTableContent(tid, &content);
      if (auto it = earlier.find(content); it != earlier.end()) {
        for (uint32_t candidate : it->second) {
          if (claimed.insert(candidate).second) {
            reused = candidate;
            break;
          }
        }
      }
    }
    if (reused != BULKHEAD_TABLE_NONE) {
      out.maps.peers.RenameTable(tid, reused);
      out.maps.ports.RenameTable(tid, reused);
      tid = reused;
    } else {
      ++next_table_id;
    }
    rec.table_ids.push_back(tid);
    for (NumericIdentity id : ids) table_id_of[id] = tid;
    ct.table_id = tid;
    ct.identities = ids;
    out.tables.push_back(std::move(ct));
  }
  std::sort(out.tables.begin(), out.tables.end(),
            [](const CompiledTable& a, const CompiledTable& b) { return a.table_id < b.table_id; });

  // Identities, ipcache, endpoints.
  for (NumericIdentity r :
       {identity::kIdentityHost, identity::kIdentityWorld, identity::kIdentityUnknown}) {
    CompiledIdentity ci_out;
    ci_out.id = r;
    ci_out.kind = identity::IdentityKind::kReserved;
    out.identities.push_back(std::move(ci_out));
  }
  std::map<NumericIdentity, std::vector<std::string>> workloads_of;
  std::vector<NumericIdentity> workload_identity(keys.size());
  for (size_t i = 0; i < keys.size(); ++i) {
    const policy::Workload& w = cluster->workloads[i];
    NumericIdentity id = allocator.Find(keys[i]);
    workload_identity[i] = id;
    workloads_of[id].push_back(w.Id());
    if (IsLocal(w)) out.endpoints[w.Id()] = EndpointBinding{id, table_id_of.at(id), ModeOf(w)};
  }
  for (const auto& [id, key] : allocator.identities()) {
    CompiledIdentity ci_out;
    ci_out.id = id;
    ci_out.kind = identity::IdentityKind::kWorkload;
    ci_out.key = key;
    ci_out.workloads = workloads_of[id];
    std::sort(ci_out.workloads.begin(), ci_out.workloads.end());
    auto tid = table_id_of.find(id);
    ci_out.table_id = tid == table_id_of.end() ? BULKHEAD_TABLE_NONE : tid->second;
    out.identities.push_back(std::move(ci_out));
  }
  for (const auto& c : cidrs.all()) {
    CompiledIdentity ci_out;
    ci_out.id = c.id;
    ci_out.kind = identity::IdentityKind::kCidr;
    ci_out.cidr = c.cidr;
    ci_out.node = !peers[peer_index[c.id]].nodes.empty();
    EmitIpcache(c.cidr, c.id, ci_out.node ? BULKHEAD_IPCACHE_F_NODE : 0, nullptr);
    out.identities.push_back(std::move(ci_out));
  }
  // Workload addresses last: where a workload address equals a cut /32 or /128, the
  // workload wins (a workload's address is never "outside").
  for (size_t i = 0; i < keys.size(); ++i) {
    for (const auto& ip : cluster->workloads[i].ips) {
      EmitIpcache(identity::HostPrefix(ip), workload_identity[i], BULKHEAD_IPCACHE_F_WORKLOAD,
                  nullptr);
    }
  }
  return absl::OkStatus();
}

// ---- PolicyCompiler

PolicyCompiler::PolicyCompiler(std::unique_ptr<State> state) : state_(std::move(state)) {}
PolicyCompiler::~PolicyCompiler() = default;

absl::StatusOr<std::unique_ptr<PolicyCompiler>> PolicyCompiler::Create(
    const policy::Cluster& cluster, const CompilerOptions& options) {
  auto state = std::make_unique<State>();
  state->options = options;
  state->owned = cluster;
  state->cluster = &*state->owned;
  for (const policy::Policy& p : state->cluster->policies) state->input_policies.push_back(&p);
  if (absl::Status s = state->CompileAll(); !s.ok()) return s;
  state->options.reuse_tables_of = nullptr;  // read during the compile only
  return std::unique_ptr<PolicyCompiler>(new PolicyCompiler(std::move(state)));
}

absl::StatusOr<std::unique_ptr<PolicyCompiler>> PolicyCompiler::Create(
    policy::Cluster&& cluster, const CompilerOptions& options) {
  auto state = std::make_unique<State>();
  state->options = options;
  state->owned = std::move(cluster);
  state->cluster = &*state->owned;
  for (const policy::Policy& p : state->cluster->policies) state->input_policies.push_back(&p);
  if (absl::Status s = state->CompileAll(); !s.ok()) return s;
  state->options.reuse_tables_of = nullptr;  // read during the compile only
  return std::unique_ptr<PolicyCompiler>(new PolicyCompiler(std::move(state)));
}

absl::StatusOr<std::unique_ptr<PolicyCompiler>> PolicyCompiler::Create(
    policy::Cluster&& cluster, std::vector<std::shared_ptr<const policy::Policy>> policies,
    const CompilerOptions& options) {
  if (!cluster.policies.empty()) {
    return absl::InvalidArgumentError(
        "compiler: the cluster's policies must be empty when policies are given apart");
  }
  auto state = std::make_unique<State>();
  state->options = options;
  state->owned = std::move(cluster);
  state->cluster = &*state->owned;
  for (const auto& p : policies) {
    if (p == nullptr) return absl::InvalidArgumentError("compiler: a policy is null");
    state->input_policies.push_back(p.get());
  }
  if (absl::Status s = state->CompileAll(); !s.ok()) return s;
  // Every slot keeps its shared policy alive (the caller may drop its own references).
  for (size_t i = 0; i < policies.size(); ++i) state->slot_owner[i] = std::move(policies[i]);
  state->shared_input = true;
  state->options.reuse_tables_of = nullptr;  // read during the compile only
  return std::unique_ptr<PolicyCompiler>(new PolicyCompiler(std::move(state)));
}

namespace {
// Frees a container's memory, not just its elements.
template <typename T>
void Free(T& container) {
  T().swap(container);
}
}  // namespace

void PolicyCompiler::DropIncrementalState(bool keep_policies) {
  State& s = *state_;
  s.dropped = true;
  if (s.owned && keep_policies && (s.policies_updated || s.shared_input)) {
    // cluster() keeps the policies in force, not the first compile's.
    std::vector<policy::Policy> live;
    for (uint32_t slot : s.input_slots) live.push_back(*s.policies[slot].policy);
    s.owned->policies = std::move(live);
  }
  if (!keep_policies && s.owned) Free(s.owned->policies);
  // Everything but the cluster and the output (whose CompiledIdentity copies its key).
  Free(s.peers);
  Free(s.peer_index);
  Free(s.ns_peers);
  Free(s.preds);
  Free(s.name_ids);
  Free(s.name_peers);
  Free(s.rules);
  Free(s.rule_ids);
  Free(s.policies);
  Free(s.eval_order);
  Free(s.policies_by_ns);
  Free(s.policies_any_ns);
  Free(s.slot_live);
  Free(s.slot_by_id);
  Free(s.policy_cidrs);
  Free(s.unignored);
  Free(s.pred_by_canon);
  Free(s.input_slots);
  Free(s.slot_owner);
  Free(s.slot_by_address);
  Free(s.input_policies);
  Free(s.tables);
  Free(s.table_by_key);
  Free(s.table_of);
  Free(s.table_id_of);
  Free(s.pred_users);
  Free(s.name_users);
  Free(s.workload_ips);
  Free(s.workload_ids);
  s.allocator = identity::IdentityAllocator();
  s.cidrs = identity::CidrIdentities();
  Free(s.ns_labels);
  Free(s.scratch_count);
  Free(s.scratch_offset);
  Free(s.scratch_flat);
  Free(s.scratch_sig);
  Free(s.scratch_touched);
  Free(s.scratch_named);
  Free(s.scratch_matched);
  Free(s.scratch_peer_ok);
}

const CompiledPolicy& PolicyCompiler::compiled() const { return state_->out; }
const policy::Cluster& PolicyCompiler::cluster() const { return *state_->cluster; }

CompiledTable* PolicyCompiler::State::MutableTable(uint32_t table_id) {
  auto it = std::lower_bound(out.tables.begin(), out.tables.end(), table_id,
                             [](const CompiledTable& a, uint32_t b) { return a.table_id < b; });
  return it != out.tables.end() && it->table_id == table_id ? &*it : nullptr;
}

CompiledIdentity* PolicyCompiler::State::MutableIdentity(NumericIdentity id) {
  auto it = std::lower_bound(out.identities.begin(), out.identities.end(), id,
                             [](const CompiledIdentity& a, NumericIdentity b) { return a.id < b; });
  return it != out.identities.end() && it->id == id ? &*it : nullptr;
}

void PolicyCompiler::State::AddPeerToTables(uint32_t p, const std::vector<uint32_t>& matched,
                                            CompileDelta* delta) {
  const PeerRec& np = peers[p];
  // The table directions where the peer matches a predicate or has a named port that an
  // egress rule names; everywhere else its signature is empty: class 0, no entry.
  std::map<std::pair<uint32_t, int>, std::vector<uint32_t>> touched;
  for (uint32_t g : matched) {
    for (const auto& use : pred_users[g]) touched[{use.table, use.dir}].push_back(use.local);
  }
  for (const auto& npd : np.key->named_ports) {
    auto nit = name_ids.find(npd.name);
    if (nit == name_ids.end()) continue;
    for (uint32_t t : name_users[nit->second]) touched[{t, 1}];
  }
  for (auto& [where, locals] : touched) {
    auto [t, d] = where;
    TableRec& rec = *tables[t];
    std::sort(locals.begin(), locals.end());
    locals.erase(std::unique(locals.begin(), locals.end()), locals.end());
    std::vector<uint32_t> sig = locals;
    if (d == 1) {
      std::vector<uint32_t> named = PeerSignatureNamed(rec.dirs[d], np);
      sig.insert(sig.end(), named.begin(), named.end());
    }
    if (sig.empty()) continue;
    bool new_class = false;
    uint32_t cls = ClassFor(rec, d, sig, DstPorts(rec, d, np), &new_class);
    if (new_class) {
      for (uint32_t table_id : rec.table_ids) {
        EmitClass(rec, d, cls, table_id, delta);
        MutableTable(table_id)->classes[d] = static_cast<uint32_t>(rec.dirs[d].classes.size());
      }
    }
    if (cls == BULKHEAD_CLASS_DEFAULT) continue;
    rec.dirs[d].peer_classes.emplace_back(p, cls);
    for (uint32_t table_id : rec.table_ids) EmitPeer(table_id, d, np, cls, delta);
  }
}

bool PolicyCompiler::State::EnsureTable(NumericIdentity id, CompileDelta* delta) {
  TableKey tk = KeyFor(*allocator.Key(id));
  auto [it, inserted] = table_by_key.emplace(std::move(tk), static_cast<uint32_t>(tables.size()));
  uint32_t rec_index = it->second;
  if (inserted) {
    auto rec = std::make_unique<TableRec>();
    rec->key = it->first;
    tables.push_back(std::move(rec));
    ComputeTable(rec_index);  // over every peer, this identity included
  }
  TableRec& own = *tables[rec_index];
  own.identities.insert(std::upper_bound(own.identities.begin(), own.identities.end(), id), id);
  table_of[id] = rec_index;
  bool new_table_id = inserted || !options.share_tables;
  uint32_t tid;
  if (new_table_id) {
    tid = next_table_id++;
    own.table_ids.push_back(tid);
    for (int d = 0; d < 2; ++d) {
      for (uint32_t c = 0; c < own.dirs[d].classes.size(); ++c) EmitClass(own, d, c, tid, delta);
      for (const auto& [q, c] : own.dirs[d].peer_classes) EmitPeer(tid, d, peers[q], c, delta);
    }
    CompiledTable ct;
    ct.table_id = tid;
    ct.identities = {id};
    ct.classes = {static_cast<uint32_t>(own.dirs[0].classes.size()),
                  static_cast<uint32_t>(own.dirs[1].classes.size())};
    out.tables.push_back(std::move(ct));  // ids only grow: stays sorted
  } else {
    tid = own.table_ids.front();
    auto& ids = MutableTable(tid)->identities;
    ids.insert(std::upper_bound(ids.begin(), ids.end(), id), id);
  }
  table_id_of[id] = tid;
  MutableIdentity(id)->table_id = tid;
  return new_table_id;
}

absl::StatusOr<CompileDelta> PolicyCompiler::AddWorkload(const policy::Workload& workload) {
  State& s = *state_;
  if (s.dropped || s.policies_updated) {
    return absl::FailedPreconditionError(
        "compiler: incremental state dropped (DropIncrementalState) or policies updated "
        "(UpdatePolicies); compile again");
  }
  if (s.workload_ids.count(workload.Id()) != 0) {
    return absl::AlreadyExistsError(absl::StrCat(workload.source.ToString(), ": workload ",
                                                 workload.Id(), ": already in the cluster"));
  }
  if (absl::Status st = s.ValidateWorkload(workload); !st.ok()) return st;
  // Checked before anything changes, so that a failure leaves the output as it was.
  if (s.next_table_id == std::numeric_limits<uint32_t>::max()) {
    return absl::ResourceExhaustedError(
        "compiler: table ids exhausted; recompile with a lower base");
  }
  identity::IdentityKey key =
      identity::MakeIdentityKey(s.NamespaceLabels(workload.namespace_name), workload, s.filter);
  bool created = false;
  auto id_or = s.allocator.Allocate(key, &created);
  if (!id_or.ok()) return id_or.status();
  NumericIdentity id = *id_or;

  CompileDelta delta;
  delta.workload = workload.Id();
  delta.new_identity = created;
  s.owned->workloads.push_back(workload);
  s.workload_ids.insert(workload.Id());
  for (const auto& ip : workload.ips) s.workload_ips.emplace(ip, workload.Id());

  if (created) {
    PeerRec peer;
    peer.id = id;
    peer.workload = true;
    peer.key = s.allocator.Key(id);
    uint32_t p = s.AddPeer(std::move(peer));
    std::vector<uint32_t> matched;
    for (uint32_t g = 0; g < s.preds.size(); ++g) {
      if (s.PredMatches(s.preds[g], s.peers[p])) {
        s.preds[g].matches.push_back(p);
        matched.push_back(g);
      }
    }
    // Its class in every existing table that distinguishes it.
    s.AddPeerToTables(p, matched, &delta);
    CompiledIdentity ci_out;
    ci_out.id = id;
    ci_out.kind = identity::IdentityKind::kWorkload;
    ci_out.key = key;
    auto pos =
        std::lower_bound(s.out.identities.begin(), s.out.identities.end(), id,
                         [](const CompiledIdentity& a, NumericIdentity b) { return a.id < b; });
    s.out.identities.insert(pos, std::move(ci_out));
  }
  // A local workload needs its identity's table: shared with identical policy, or new.
  bool local = s.IsLocal(workload);
  if (local && s.table_id_of.count(id) == 0) delta.new_table = s.EnsureTable(id, &delta);

  delta.binding =
      EndpointBinding{id, local ? s.table_id_of.at(id) : BULKHEAD_TABLE_NONE, s.ModeOf(workload)};
  for (const auto& ip : workload.ips) {
    s.EmitIpcache(identity::HostPrefix(ip), id, BULKHEAD_IPCACHE_F_WORKLOAD, &delta);
  }
  if (local) s.out.endpoints[workload.Id()] = delta.binding;
  auto& names = s.MutableIdentity(id)->workloads;
  names.insert(std::upper_bound(names.begin(), names.end(), workload.Id()), workload.Id());
  return delta;
}

absl::StatusOr<PolicyUpdate> PolicyCompiler::UpdatePolicies(std::vector<policy::Policy>& policies,
                                                            uint32_t table_id_base) {
  std::vector<const policy::Policy*> next;
  next.reserve(policies.size());
  for (const policy::Policy& p : policies) next.push_back(&p);
  return state_->UpdatePolicies(
      next,
      [&](size_t i) { return std::make_shared<const policy::Policy>(std::move(policies[i])); },
      table_id_base);
}

absl::StatusOr<PolicyUpdate> PolicyCompiler::UpdatePolicies(
    const std::vector<std::shared_ptr<const policy::Policy>>& policies, uint32_t table_id_base) {
  std::vector<const policy::Policy*> next;
  next.reserve(policies.size());
  for (const auto& p : policies) {
    if (p == nullptr) return absl::InvalidArgumentError("compiler: a policy is null");
    next.push_back(p.get());
  }
  return state_->UpdatePolicies(
      next, [&](size_t i) { return policies[i]; }, table_id_base);
}

std::vector<std::shared_ptr<const policy::Policy>> PolicyCompiler::shared_policies() const {
  const State& s = *state_;
  std::vector<std::shared_ptr<const policy::Policy>> out;
  if (s.dropped) {
    for (const policy::Policy& p : s.cluster->policies) {
      out.push_back(std::make_shared<const policy::Policy>(p));
    }
    return out;
  }
  out.reserve(s.input_slots.size());
  for (uint32_t slot : s.input_slots) {
    // A slot of the first compile's own cluster: an aliasing pointer that keeps this
    // compiler's state alive is not possible, so the policy is copied (and then compared,
    // not recognised by address, when handed back).
    out.push_back(s.slot_owner[slot] != nullptr
                      ? s.slot_owner[slot]
                      : std::make_shared<const policy::Policy>(*s.policies[slot].policy));
  }
  return out;
}

std::vector<const policy::Policy*> PolicyCompiler::policies() const {
  std::vector<const policy::Policy*> out;
  if (state_->dropped) {
    for (const policy::Policy& p : state_->cluster->policies) out.push_back(&p);
    return out;
  }
  out.reserve(state_->input_slots.size());
  for (uint32_t slot : state_->input_slots) out.push_back(state_->policies[slot].policy);
  return out;
}

absl::StatusOr<PolicyUpdate> PolicyCompiler::State::UpdatePolicies(
    const std::vector<const policy::Policy*>& next,
    const std::function<std::shared_ptr<const policy::Policy>(size_t)>& adopt,
    uint32_t table_id_base) {
  PolicyUpdate result;
  auto refuse = [&](std::string why) {
    result.why = std::move(why);
    return result;
  };
  if (dropped) return refuse("the incremental state was dropped");
  if (!options.share_tables) return refuse("tables are not shared");
  if (table_id_base == BULKHEAD_TABLE_NONE) {
    return absl::InvalidArgumentError("compiler: table_id_base must be at least 1");
  }

  // 1. What changed: next[i] keeps the slot of an identical live policy of the same id
  // (the very object the slot holds, or an equal one); other versions take new slots.
  // Nothing is changed before every check has passed.
  std::vector<uint32_t> slot_of(next.size());  // kNewSlot: needs a new slot
  constexpr uint32_t kNewSlot = std::numeric_limits<uint32_t>::max();
  std::vector<uint8_t> kept(policies.size(), 0);          // by slot
  absl::flat_hash_map<std::string, size_t> compared_ids;  // ids of next[i] not known by address
  std::vector<size_t> added;                              // indices into next
  for (size_t i = 0; i < next.size(); ++i) {
    const policy::Policy& p = *next[i];
    if (auto at = slot_by_address.find(&p); at != slot_by_address.end()) {
      // Live slots have distinct ids: only the same object twice repeats one.
      if (kept[at->second] != 0) return refuse(absl::StrCat("two policies are named ", p.Id()));
      slot_of[i] = at->second;
      kept[at->second] = 1;
      continue;
    }
    std::string id = p.Id();
    auto it = slot_by_id.find(id);
    if (!compared_ids.emplace(id, i).second || (it != slot_by_id.end() && kept[it->second] != 0)) {
      return refuse(absl::StrCat("two policies are named ", id));
    }
    if (it != slot_by_id.end() && *policies[it->second].policy == p) {
      slot_of[i] = it->second;
      kept[it->second] = 1;
    } else {
      slot_of[i] = kNewSlot;
      added.push_back(i);
    }
  }
  // An added version whose id a live slot kept by address also has: two policies of one id.
  for (size_t i : added) {
    auto it = slot_by_id.find(next[i]->Id());
    if (it != slot_by_id.end() && kept[it->second] != 0) {
      return refuse(absl::StrCat("two policies are named ", next[i]->Id()));
    }
  }
  std::vector<uint32_t> removed;  // live slots not kept
  for (uint32_t slot : input_slots) {
    if (kept[slot] == 0) removed.push_back(slot);
  }
  result.policies_changed = added.size() + removed.size();
  // The CIDR identities stay only if the set of CIDRs named stays.
  std::map<policy::Cidr, uint32_t> cidrs_after = policy_cidrs;
  for (uint32_t slot : removed) {
    for (const policy::Cidr& c : PolicyCidrs(*policies[slot].policy)) {
      if (--cidrs_after[c] == 0) cidrs_after.erase(c);
    }
  }
  for (size_t i : added) {
    for (const policy::Cidr& c : PolicyCidrs(*next[i])) ++cidrs_after[c];
  }
  if (cidrs_after.size() != policy_cidrs.size() ||
      !std::equal(cidrs_after.begin(), cidrs_after.end(), policy_cidrs.begin(),
                  [](const auto& a, const auto& b) { return a.first == b.first; })) {
    return refuse("the set of CIDRs the policies name changed");
  }
  // Identity keys stay only if the labels they keep stay (LabelFilter::ForCluster).
  std::map<std::string, uint32_t> unignored_after = unignored;
  for (uint32_t slot : removed) {
    for (const std::string& k : PolicyUnignoredKeys(*policies[slot].policy)) {
      if (--unignored_after[k] == 0) unignored_after.erase(k);
    }
  }
  for (size_t i : added) {
    for (const std::string& k : PolicyUnignoredKeys(*next[i])) ++unignored_after[k];
  }
  {
    std::set<std::string> ignored_after(identity::LabelFilter::DefaultIgnoredKeys().begin(),
                                        identity::LabelFilter::DefaultIgnoredKeys().end());
    for (const auto& [k, n] : unignored_after) ignored_after.erase(k);
    if (ignored_after != filter.ignored_keys()) {
      return refuse(
          "the labels identities keep changed (a policy selects or stops selecting "
          "an ignored label key)");
    }
  }
  // Tables keep the order of the policies they list: unchanged policies must keep their
  // order relative to each other.
  std::vector<const policy::Policy*> in_order;
  in_order.reserve(next.size());
  for (size_t i = 0; i < next.size(); ++i) {
    in_order.push_back(slot_of[i] == kNewSlot ? next[i] : policies[slot_of[i]].policy);
  }
  std::vector<uint32_t> new_eval = EvalOrderOf(in_order);
  {
    std::vector<uint32_t> before, after;
    for (uint32_t slot : eval_order) {
      if (kept[slot] != 0) before.push_back(slot);
    }
    for (uint32_t position : new_eval) {
      if (slot_of[position] != kNewSlot) after.push_back(slot_of[position]);
    }
    if (before != after) return refuse("the evaluation order of unchanged policies changed");
  }
  size_t removed_rules = 0, live_rules = 0;
  for (uint32_t slot : removed) {
    removed_rules += policies[slot].rules[0].size() + policies[slot].rules[1].size();
  }
  for (uint32_t slot : input_slots) {
    live_rules += policies[slot].rules[0].size() + policies[slot].rules[1].size();
  }
  if (dead_rules + removed_rules > live_rules / 2 + 64) {
    return refuse("replaced policy versions piled up (a full compile frees them)");
  }
  if (next_table_id == std::numeric_limits<uint32_t>::max() ||
      uint64_t{std::max(next_table_id, table_id_base)} + table_of.size() >
          std::numeric_limits<uint32_t>::max()) {
    return refuse("table ids are running out");
  }

  // 2. Rule ids: a rule still present (same policy id, direction and index) keeps its id;
  // new rules take, in input order, the lowest ids no rule held before this update.
  std::map<RuleKey, uint32_t> old_ids;
  for (uint32_t slot : removed) {
    const policy::Policy& p = *policies[slot].policy;
    for (int d = 0; d < 2; ++d) {
      if (policies[slot].default_rule_id[d] != 0) {
        old_ids.emplace(RuleKey{p.Id(), ci::DirOf(d), -1}, policies[slot].default_rule_id[d]);
      }
      for (uint32_t r : policies[slot].rules[d]) {
        const CompiledRule& cr = out.rules[rules[r].rule_id];
        old_ids.emplace(RuleKey{cr.policy, cr.direction, cr.rule_index}, rules[r].rule_id);
      }
    }
  }
  std::vector<uint8_t> held(out.rules.size(), 0);
  for (uint32_t id = 1; id < out.rules.size(); ++id)
    held[id] = out.rules[id].policy.empty() ? 0 : 1;
  uint32_t free_cursor = 1;
  std::set<uint32_t> reused_ids;
  std::map<uint32_t, CompiledRule> before;  // entries a new version may overwrite
  for (const auto& [key, id] : old_ids) before.emplace(id, out.rules[id]);

  // 3. Commit: retire the removed slots, index the new versions.
  policies_updated = true;
  for (uint32_t slot : removed) {
    const PolicyRec& rec = policies[slot];
    slot_live[slot] = 0;
    slot_by_id.erase(rec.policy->Id());
    slot_by_address.erase(rec.policy);
    RemoveSubjectIndex(slot);
    dead_rules += rec.rules[0].size() + rec.rules[1].size();
  }
  std::vector<uint32_t> new_slots;
  std::vector<uint32_t> new_preds;
  const size_t names_before = name_ids.size();
  for (size_t i : added) {
    const uint32_t slot = static_cast<uint32_t>(policies.size());
    slot_owner.push_back(adopt(i));
    const policy::Policy& p = *slot_owner.back();
    policies.emplace_back();
    slot_live.push_back(1);
    slot_by_address.emplace(&p, slot);
    slot_of[i] = slot;
    const std::string pid = p.Id();
    IndexPolicy(slot, p, [&](Direction dir, int index) {
      if (auto it = old_ids.find(RuleKey{pid, dir, index}); it != old_ids.end()) {
        reused_ids.insert(it->second);
        return it->second;
      }
      while (free_cursor < held.size() && held[free_cursor] != 0) ++free_cursor;
      result.rule_ids_changed = true;
      const uint32_t id = free_cursor++;
      if (id < held.size()) held[id] = 1;
      return id;
    });
    slot_by_id[pid] = slot;
    AddSubjectIndex(slot);
    IndexPolicyPredicates(slot, &new_preds);
    new_slots.push_back(slot);
  }
  // Ids of removed rules that no new version took: free (their entries empty).
  for (const auto& [key, id] : old_ids) {
    if (reused_ids.count(id) != 0) continue;
    out.rules[id] = CompiledRule{};
    result.rule_ids_changed = true;
  }
  while (out.rules.size() > 1 && out.rules.back().policy.empty()) out.rules.pop_back();
  result.rule_table_changed = result.rule_ids_changed;
  for (const auto& [id, rule] : before) {
    if (id >= out.rules.size() || !(out.rules[id] == rule)) result.rule_table_changed = true;
  }
  policy_cidrs = std::move(cidrs_after);
  unignored = std::move(unignored_after);
  input_slots = slot_of;
  ComputeEvalOrder();

  // New predicates match over every peer; new named-port names list their peers.
  for (uint32_t g : new_preds) {
    for (uint32_t p = 0; p < peers.size(); ++p) {
      if (PredMatches(preds[g], peers[p])) preds[g].matches.push_back(p);
    }
  }
  pred_users.resize(preds.size());
  name_peers.resize(name_ids.size());
  name_users.resize(name_ids.size());
  if (name_ids.size() > names_before) {
    for (const auto& [name, n] : name_ids) {
      if (n < names_before) continue;
      for (uint32_t p = 0; p < peers.size(); ++p) {
        if (!peers[p].workload) continue;
        for (const auto& np : peers[p].key->named_ports) {
          if (np.name == name) {
            name_peers[n].push_back(p);
            break;
          }
        }
      }
    }
  }

  // 4. The local identities whose policies may have changed: a removed version is in their
  // table's key, or a new version's subject selects them. Their keys are computed again.
  std::map<NumericIdentity, uint32_t> moving;  // identity -> old TableRec
  for (const auto& [id, t] : table_of) {
    const TableRec& rec = *tables[t];
    bool affected = false;
    for (int d = 0; d < 2 && !affected; ++d) {
      for (uint32_t slot : rec.key.policies[d]) {
        if (slot_live[slot] == 0) {
          affected = true;
          break;
        }
      }
    }
    const identity::IdentityKey& key = *allocator.Key(id);
    for (size_t k = 0; k < new_slots.size() && !affected; ++k) {
      const PolicyRec& prec = policies[new_slots[k]];
      const policy::Policy& p = *prec.policy;
      if ((!prec.listed[0] && !prec.listed[1]) || prec.subject_has_process) continue;
      affected = NamespaceScopeMatches(p.subject.namespace_name, p.subject.namespace_selector, p,
                                       key.namespace_name, key.namespace_labels) &&
                 p.subject.pod_selector.Matches(key.labels);
    }
    if (affected) moving.emplace(id, t);
  }
  next_table_id = std::max(next_table_id, table_id_base);
  out.table_id_base = table_id_base;
  std::set<uint32_t> touched_recs;
  for (const auto& [id, old_t] : moving) {
    TableKey tk = KeyFor(*allocator.Key(id));
    if (tk.policies == tables[old_t]->key.policies &&
        tk.local_ports == tables[old_t]->key.local_ports) {
      continue;  // e.g. a new version that lists no direction
    }
    // Leave the old table.
    TableRec& old_rec = *tables[old_t];
    std::erase(old_rec.identities, id);
    const uint32_t old_tid = old_rec.table_ids.front();
    std::erase(MutableTable(old_tid)->identities, id);
    if (old_rec.identities.empty()) {
      out.maps.peers.EraseTable(old_tid);
      out.maps.ports.EraseTable(old_tid);
      out.tables.erase(std::find_if(out.tables.begin(), out.tables.end(),
                                    [&](const CompiledTable& t) { return t.table_id == old_tid; }));
      table_by_key.erase(old_rec.key);
      tables[old_t].reset();
      result.tables_dropped.push_back(old_tid);
    }
    // Join the table of its new key: an existing one, or one computed now.
    auto [it, inserted] = table_by_key.emplace(std::move(tk), static_cast<uint32_t>(tables.size()));
    const uint32_t rec_index = it->second;
    uint32_t tid;
    if (inserted) {
      auto rec = std::make_unique<TableRec>();
      rec->key = it->first;
      tables.push_back(std::move(rec));
      ComputeTable(rec_index);
      ++result.tables_computed;
      TableRec& own = *tables[rec_index];
      tid = next_table_id++;
      own.table_ids.push_back(tid);
      CompiledTable ct;
      ct.table_id = tid;
      for (int d = 0; d < 2; ++d) {
        ct.classes[d] = static_cast<uint32_t>(own.dirs[d].classes.size());
        for (uint32_t c = 0; c < own.dirs[d].classes.size(); ++c)
          EmitClass(own, d, c, tid, nullptr);
        for (const auto& [q, c] : own.dirs[d].peer_classes) EmitPeer(tid, d, peers[q], c, nullptr);
      }
      out.tables.push_back(std::move(ct));  // ids only grow: stays sorted
      result.tables_written.push_back(tid);
    } else {
      tid = tables[rec_index]->table_ids.front();
    }
    TableRec& own = *tables[rec_index];
    own.identities.insert(std::upper_bound(own.identities.begin(), own.identities.end(), id), id);
    auto& tids = MutableTable(tid)->identities;
    tids.insert(std::upper_bound(tids.begin(), tids.end(), id), id);
    table_of[id] = rec_index;
    table_id_of[id] = tid;
    CompiledIdentity* ci_out = MutableIdentity(id);
    ci_out->table_id = tid;
    for (const std::string& w : ci_out->workloads) {
      if (auto e = out.endpoints.find(w); e != out.endpoints.end()) e->second.table_id = tid;
    }
  }
  // A table written and dropped in one update (an identity moved on) is neither.
  std::sort(result.tables_written.begin(), result.tables_written.end());
  std::erase_if(result.tables_written, [&](uint32_t t) { return MutableTable(t) == nullptr; });
  std::erase_if(result.tables_dropped, [&](uint32_t t) { return t >= table_id_base; });
  std::sort(result.tables_dropped.begin(), result.tables_dropped.end());
  result.incremental = true;
  return result;
}

PinnedIdentities PinsOf(const CompiledPolicy& compiled) {
  PinnedIdentities pins;
  for (const CompiledIdentity& ci_entry : compiled.identities) {
    if (ci_entry.key) pins.workloads.emplace(*ci_entry.key, ci_entry.id);
    if (ci_entry.cidr) pins.cidrs.emplace(*ci_entry.cidr, ci_entry.id);
  }
  return pins;
}

std::map<RuleKey, uint32_t> RulePinsOf(const CompiledPolicy& compiled) {
  std::map<RuleKey, uint32_t> pins;
  for (uint32_t id = 1; id < compiled.rules.size(); ++id) {
    const CompiledRule& r = compiled.rules[id];
    if (r.policy.empty()) continue;  // an id no rule uses
    pins.emplace(RuleKey{r.policy, r.direction, r.rule_index}, id);
  }
  return pins;
}

absl::StatusOr<CompiledPolicy> CompilePolicy(const policy::Cluster& cluster,
                                             const CompilerOptions& options) {
  // A one-shot compile needs no copy of the cluster: it is not kept.
  PolicyCompiler::State state;
  state.options = options;
  state.cluster = &cluster;
  for (const policy::Policy& p : cluster.policies) state.input_policies.push_back(&p);
  if (absl::Status s = state.CompileAll(); !s.ok()) return s;
  return std::move(state.out);
}

}  // namespace bulkhead::engine
