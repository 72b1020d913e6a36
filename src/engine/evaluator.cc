// The reference evaluator: tiers, isolation, modes and the reason for every verdict.
#include "engine/evaluator.h"

#include <algorithm>
#include <tuple>
#include <unordered_map>

#include "engine/eval_match.h"

namespace bulkhead::engine {

using policy::Mode;
using policy::Policy;
using policy::RuleAction;
using policy::Tier;
using policy::Workload;

namespace internal {

// Which policies select one workload, per direction, in evaluation order.
// (clang-tidy 14 flags the implicit copy loop variable of the array members as reserved.)
struct WorkloadEntry {  // NOLINT(bugprone-reserved-identifier)
  const policy::Labels* ns_labels = nullptr;
  Mode mode = Mode::kEnforce;
  // Index 0 ingress, 1 egress.
  std::vector<const Policy*> admin[2];
  std::vector<const Policy*> ns_tier[2];
  std::vector<const Policy*> baseline[2];
  std::vector<const Policy*> defaults[2];
  bool has_audit[2] = {false, false};
};

struct EvalIndex {
  const policy::Cluster* cluster = nullptr;
  std::unordered_map<std::string, const policy::Namespace*> namespaces;
  // Labels of namespaces that workloads use without a Namespace object (the loader
  // normally declares them; kept so that hand-built clusters work too).
  std::unordered_map<std::string, policy::Labels> implicit_ns_labels;
  std::vector<const Policy*> admin, ns_tier, baseline, defaults;  // evaluation order
  std::unordered_map<const Workload*, WorkloadEntry> workloads;

  const policy::Labels& NamespaceLabels(const std::string& ns) const {
    auto it = namespaces.find(ns);
    if (it != namespaces.end()) return it->second->labels;
    auto jt = implicit_ns_labels.find(ns);
    if (jt != implicit_ns_labels.end()) return jt->second;
    static const policy::Labels kEmpty;
    return kEmpty;
  }

  WorkloadEntry BuildEntry(const Workload& w) const {
    WorkloadEntry e;
    e.ns_labels = &NamespaceLabels(w.namespace_name);
    auto ns = namespaces.find(w.namespace_name);
    if (w.mode) {
      e.mode = *w.mode;
    } else if (ns != namespaces.end() && ns->second->mode) {
      e.mode = *ns->second->mode;
    }
    auto add = [&](const std::vector<const Policy*>& from, std::vector<const Policy*>* to,
                   bool need_applies) {
      for (const Policy* p : from) {
        if (!internal::SubjectSelects(*p, w, *e.ns_labels)) continue;
        for (int d = 0; d < 2; ++d) {
          Direction dir = d == 0 ? Direction::kIngress : Direction::kEgress;
          // Admin and baseline policies act through their rules of a direction; the
          // namespace tier and DefaultDeny through their policy types.
          bool applies = need_applies ? p->Applies(dir) : !p->Rules(dir).empty();
          if (!applies) continue;
          to[d].push_back(p);
          if (p->mode != Mode::kEnforce) e.has_audit[d] = true;
        }
      }
    };
    add(admin, e.admin, false);
    add(ns_tier, e.ns_tier, true);
    add(baseline, e.baseline, false);
    add(defaults, e.defaults, true);
    return e;
  }
};

}  // namespace internal

namespace {

using internal::DirectionContext;
using internal::EvalIndex;
using internal::PortResult;
using internal::WorkloadEntry;

int DirIndex(Direction d) { return d == Direction::kIngress ? 0 : 1; }

// The result of running the tiers once, either with enforce-mode policies only or with
// audit-mode policies treated as enforced.
struct Outcome {
  DirectionVerdict v;
  const Policy* deciding = nullptr;
  std::vector<const Policy*> involved;  // passing and isolating policies, in order
};

void SetRule(Outcome* out, const Policy& p, int index, const policy::Rule& rule, bool explain) {
  DirectionVerdict& v = out->v;
  v.allowed = rule.action != RuleAction::kDeny;
  out->deciding = &p;
  if (!explain) return;
  v.reason = Reason::kRule;
  v.tier = p.tier;
  v.policy = p.Id();
  v.policy_kind = p.kind;
  v.policy_namespace = p.namespace_name;
  v.policy_name = p.name;
  v.rule_index = index;
  v.rule_name = rule.name;
  v.action = rule.action;
}

bool Considered(const Policy& p, bool include_audit) {
  return include_audit || p.mode == Mode::kEnforce;
}

// Runs an ordered admin or baseline tier. Returns true when a rule decided; a Pass rule
// ends the tier without deciding.
bool RunOrderedTier(const std::vector<const Policy*>& policies, const DirectionContext& ctx,
                    bool include_audit, bool explain, Outcome* out) {
  for (const Policy* p : policies) {
    if (!Considered(*p, include_audit)) continue;
    if (!internal::SubjectProcessMatches(p->subject, ctx)) continue;
    const auto& rules = p->Rules(ctx.dir);
    for (size_t i = 0; i < rules.size(); ++i) {
      const policy::Rule& r = rules[i];
      if (!internal::RulePeerMatches(*p, r, ctx)) continue;
      if (internal::MatchPorts(r.ports, *ctx.flow) != PortResult::kMatch) continue;
      if (r.action == RuleAction::kPass) {
        if (explain) {
          out->v.passed_by.push_back(p->Id() + " rule " + std::to_string(i) +
                                     (r.name.empty() ? "" : " (" + r.name + ")"));
        }
        out->involved.push_back(p);
        return false;
      }
      SetRule(out, *p, static_cast<int>(i), r, explain);
      return true;
    }
  }
  return false;
}

// How close a rule came to matching; higher is closer: the peer matched but the port
// (3) or the protocol (2) differed, the port matched but the peer differed (1), both
// differed (0). Returns -1 for a rule that matches (not a miss).
int MissScore(bool peer_ok, PortResult port) {
  if (peer_ok) {
    if (port == PortResult::kMatch) return -1;
    return port == PortResult::kPortDiffers ? 3 : 2;
  }
  return port == PortResult::kMatch ? 1 : 0;
}

NearMiss DescribeMiss(const Policy& p, int index, bool peer_ok, PortResult port,
                      const DirectionContext& ctx) {
  const policy::Rule& r = p.Rules(ctx.dir)[index];
  const std::string remote_word = ctx.dir == Direction::kIngress ? "from " : "to ";
  NearMiss m;
  m.policy = p.Id();
  m.rule_index = index;
  m.rule_name = r.name;
  const std::string rule_ports = internal::DescribePorts(r.ports);
  const std::string flow_port = internal::DescribeFlowPort(*ctx.flow);
  if (peer_ok) {
    m.differed = port == PortResult::kPortDiffers ? "port" : "protocol";
    m.detail = "rule allows " + rule_ports + ", flow is " + flow_port;
    return m;
  }
  const std::string rule_peer = internal::DescribeRulePeers(p, r);
  const std::string flow_peer = ctx.remote->ToString();
  m.differed = "peer";
  if (port == PortResult::kMatch) {
    m.detail = "rule allows " + remote_word + rule_peer + ", flow is " + remote_word + flow_peer;
  } else {
    m.detail = "rule allows " + remote_word + rule_peer + " on " + rule_ports + ", flow is " +
               remote_word + flow_peer + " on " + flow_port;
  }
  return m;
}

// Scores every allow rule cheaply and describes only the closest (first on ties).
std::optional<NearMiss> NearestMiss(const std::vector<const Policy*>& policies,
                                    const DirectionContext& ctx) {
  int best_score = -1;
  const Policy* best_policy = nullptr;
  int best_index = -1;
  bool best_peer_ok = false;
  PortResult best_port = PortResult::kMatch;
  for (const Policy* p : policies) {
    const auto& rules = p->Rules(ctx.dir);
    for (size_t i = 0; i < rules.size(); ++i) {
      if (rules[i].action != RuleAction::kAllow) continue;
      bool peer_ok = internal::RulePeerMatches(*p, rules[i], ctx);
      PortResult port = internal::MatchPorts(rules[i].ports, *ctx.flow);
      int score = MissScore(peer_ok, port);
      if (score > best_score) {
        best_score = score;
        best_policy = p;
        best_index = static_cast<int>(i);
        best_peer_ok = peer_ok;
        best_port = port;
      }
    }
  }
  if (best_policy == nullptr) return std::nullopt;
  return DescribeMiss(*best_policy, best_index, best_peer_ok, best_port, ctx);
}

// Runs the four tiers. Without `explain` only `allowed`, `reason` and the deciding policy
// are filled: no strings are built.
Outcome RunTiers(const WorkloadEntry& e, const DirectionContext& ctx, bool include_audit,
                 bool explain) {
  Outcome out;
  out.v.direction = ctx.dir;
  const int d = DirIndex(ctx.dir);

  // 1. Admin tier.
  if (RunOrderedTier(e.admin[d], ctx, include_audit, explain, &out)) return out;

  // 2. Namespace tier: isolation, explicit denies, union of allows.
  std::vector<const Policy*> isolating;
  for (const Policy* p : e.ns_tier[d]) {
    if (!Considered(*p, include_audit)) continue;
    if (!internal::SubjectProcessMatches(p->subject, ctx)) continue;
    isolating.push_back(p);
  }
  if (!isolating.empty()) {
    // A native Deny rule wins over every allow of the tier.
    for (const Policy* p : isolating) {
      const auto& rules = p->Rules(ctx.dir);
      for (size_t i = 0; i < rules.size(); ++i) {
        if (rules[i].action != RuleAction::kDeny) continue;
        if (!internal::RulePeerMatches(*p, rules[i], ctx)) continue;
        if (internal::MatchPorts(rules[i].ports, *ctx.flow) != PortResult::kMatch) continue;
        SetRule(&out, *p, static_cast<int>(i), rules[i], explain);
        if (explain) {
          for (const Policy* q : isolating) out.v.isolated_by.push_back(q->Id());
        }
        return out;
      }
    }
    for (const Policy* p : isolating) {
      const auto& rules = p->Rules(ctx.dir);
      for (size_t i = 0; i < rules.size(); ++i) {
        if (rules[i].action != RuleAction::kAllow) continue;
        if (!internal::RulePeerMatches(*p, rules[i], ctx)) continue;
        if (internal::MatchPorts(rules[i].ports, *ctx.flow) != PortResult::kMatch) continue;
        SetRule(&out, *p, static_cast<int>(i), rules[i], explain);
        if (explain) {
          for (const Policy* q : isolating) out.v.isolated_by.push_back(q->Id());
        }
        return out;
      }
    }
    out.v.allowed = false;
    out.v.reason = Reason::kIsolated;
    out.v.tier = Tier::kNamespace;
    out.involved.insert(out.involved.end(), isolating.begin(), isolating.end());
    if (explain) {
      for (const Policy* q : isolating) out.v.isolated_by.push_back(q->Id());
      out.v.nearest_miss = NearestMiss(isolating, ctx);
    }
    return out;
  }

  // 3. Baseline tier.
  if (RunOrderedTier(e.baseline[d], ctx, include_audit, explain, &out)) return out;

  // 4. Default.
  for (const Policy* p : e.defaults[d]) {
    if (!Considered(*p, include_audit)) continue;
    if (!internal::SubjectProcessMatches(p->subject, ctx)) continue;
    out.v.allowed = false;
    out.v.reason = Reason::kDefaultDeny;
    out.v.tier = Tier::kDefault;
    out.deciding = p;
    if (!explain) return out;
    out.v.policy = p->Id();
    out.v.policy_kind = p->kind;
    out.v.policy_namespace = p->namespace_name;
    out.v.policy_name = p->name;
    // The allow rules that could have let the flow through before the default.
    std::vector<const Policy*> candidates;
    for (const auto* tier : {&e.admin[d], &e.baseline[d]}) {
      for (const Policy* q : *tier) {
        if (Considered(*q, include_audit)) candidates.push_back(q);
      }
    }
    out.v.nearest_miss = NearestMiss(candidates, ctx);
    return out;
  }
  out.v.allowed = true;
  out.v.reason = Reason::kDefaultAllow;
  out.v.tier = Tier::kDefault;
  return out;
}

// The audit-mode policy responsible when enforcing audit policies would deny a flow.
std::string AuditCulprit(const Outcome& audit) {
  if (audit.deciding && audit.deciding->mode != Mode::kEnforce) return audit.deciding->Id();
  for (const Policy* p : audit.involved) {
    if (p->mode != Mode::kEnforce) return p->Id();
  }
  return audit.deciding ? audit.deciding->Id() : std::string();
}

}  // namespace

Evaluator::Evaluator(const policy::Cluster& cluster) : cluster_(cluster) {
  auto index = std::make_shared<EvalIndex>();
  index->cluster = &cluster;
  for (const auto& ns : cluster.namespaces) index->namespaces.emplace(ns.name, &ns);
  for (const auto& w : cluster.workloads) {
    if (!index->namespaces.count(w.namespace_name)) {
      index->implicit_ns_labels[w.namespace_name] = {
          {"kubernetes.io/metadata.name", w.namespace_name}};
    }
  }
  for (const auto& p : cluster.policies) {
    switch (p.tier) {
      case Tier::kAdmin:
        index->admin.push_back(&p);
        break;
      case Tier::kNamespace:
        index->ns_tier.push_back(&p);
        break;
      case Tier::kBaseline:
        index->baseline.push_back(&p);
        break;
      case Tier::kDefault:
        index->defaults.push_back(&p);
        break;
    }
  }
  // Lower priority number first; equal priorities (rejected by validation) by name so
  // the order never depends on input order.
  auto by_priority = [](const Policy* a, const Policy* b) {
    return std::tie(a->priority, a->name, a->kind) < std::tie(b->priority, b->name, b->kind);
  };
  std::stable_sort(index->admin.begin(), index->admin.end(), by_priority);
  std::stable_sort(index->baseline.begin(), index->baseline.end(), by_priority);
  for (const auto& w : cluster.workloads) index->workloads.emplace(&w, index->BuildEntry(w));
  index_ = std::move(index);
}

namespace {

// Runs one direction for a local workload: the shared body of EvaluateDirection and Allows.
// Returns the enforced outcome and sets *mode; with `explain`, also the audit verdict.
template <typename Fn>
auto WithContext(const EvalIndex& index, const policy::Cluster& cluster, const Flow& flow,
                 Direction direction, Fn&& fn) {
  const FlowEndpoint& local = direction == Direction::kEgress ? flow.src : flow.dst;
  const FlowEndpoint& remote = direction == Direction::kEgress ? flow.dst : flow.src;
  // Workloads of the cluster use the precomputed entry; any other Workload (a caller's
  // own object) is matched on the fly.
  WorkloadEntry scratch;
  const WorkloadEntry* entry;
  auto it = index.workloads.find(local.workload);
  if (it != index.workloads.end()) {
    entry = &it->second;
  } else {
    scratch = index.BuildEntry(*local.workload);
    entry = &scratch;
  }
  DirectionContext ctx;
  ctx.flow = &flow;
  ctx.dir = direction;
  ctx.local = local.workload;
  ctx.local_ns_labels = entry->ns_labels;
  ctx.remote = &remote;
  ctx.remote_ns_labels =
      remote.workload ? &index.NamespaceLabels(remote.workload->namespace_name) : nullptr;
  ctx.cluster = &cluster;
  return fn(*entry, ctx);
}

}  // namespace

DirectionVerdict Evaluator::EvaluateDirection(const Flow& flow, Direction direction) const {
  const FlowEndpoint& local = direction == Direction::kEgress ? flow.src : flow.dst;
  if (local.workload == nullptr) {
    DirectionVerdict v;
    v.direction = direction;
    v.allowed = true;
    v.reason = Reason::kExternal;
    v.tier = Tier::kDefault;
    return v;
  }
  return WithContext(*index_, cluster_, flow, direction,
                     [&](const WorkloadEntry& entry, const DirectionContext& ctx) {
                       Outcome enforced = RunTiers(entry, ctx, /*include_audit=*/false,
                                                   /*explain=*/true);
                       DirectionVerdict v = std::move(enforced.v);
                       v.mode = entry.mode;
                       if (entry.has_audit[DirIndex(direction)] && v.allowed) {
                         Outcome audit = RunTiers(entry, ctx, /*include_audit=*/true,
                                                  /*explain=*/false);
                         if (!audit.v.allowed) {
                           v.would_deny = true;
                           v.audit_policy = AuditCulprit(audit);
                         }
                       }
                       if (v.mode != Mode::kEnforce && !v.allowed) {
                         // audit and learn let the traffic pass; the reason still says
                         // what enforcement would have done.
                         v.allowed = true;
                         v.would_deny = true;
                       }
                       return v;
                     });
}

bool Evaluator::Allows(const Flow& flow, Direction direction) const {
  const FlowEndpoint& local = direction == Direction::kEgress ? flow.src : flow.dst;
  if (local.workload == nullptr) return true;
  return WithContext(
      *index_, cluster_, flow, direction,
      [&](const WorkloadEntry& entry, const DirectionContext& ctx) {
        // Audit-mode policies never change the verdict: not evaluated.
        if (entry.mode != Mode::kEnforce) return true;
        return RunTiers(entry, ctx, /*include_audit=*/false, /*explain=*/false).v.allowed;
      });
}

bool Evaluator::Allows(const Flow& flow) const {
  return Allows(flow, Direction::kEgress) && Allows(flow, Direction::kIngress);
}

Verdict Evaluator::Evaluate(const Flow& flow) const {
  Verdict v;
  v.egress = EvaluateDirection(flow, Direction::kEgress);
  v.ingress = EvaluateDirection(flow, Direction::kIngress);
  v.allowed = v.egress.allowed && v.ingress.allowed;
  return v;
}

}  // namespace bulkhead::engine
