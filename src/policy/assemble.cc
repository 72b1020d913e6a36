// Cross-object work after every document is decoded: duplicate identities, merging the pods
// of one owner into one workload, implicit namespaces, and admin-priority uniqueness.
#include <algorithm>
#include <map>
#include <set>
#include <tuple>

#include "policy/kinds.h"

namespace bulkhead::policy::internal {
namespace {

void Report(std::vector<Diagnostic>* diags, Diagnostic::Severity severity, const SourceRef& where,
            std::string object, std::string field, std::string message) {
  Diagnostic d;
  d.severity = severity;
  d.where = where;
  d.object = std::move(object);
  d.field = std::move(field);
  d.message = std::move(message);
  diags->push_back(std::move(d));
}

bool NamespaceInScope(const Cluster& cluster, const std::string& ns_name,
                      const std::string& same_namespace,
                      const std::optional<LabelSelector>& selector) {
  if (selector) {
    const Namespace* ns = cluster.FindNamespace(ns_name);
    return ns != nullptr && selector->Matches(ns->labels);
  }
  return same_namespace.empty() || same_namespace == ns_name;
}

// Warns when a selector picks some objects of a merged workload but not others: then the
// workload-level answer cannot be exact for all of its pods.
void CheckGap(const Cluster& cluster, const Policy& p, const Workload& w, const LabelGap& gap,
              std::vector<Diagnostic>* diags) {
  auto splits = [&](const LabelSelector& sel) {
    size_t matched = std::count_if(gap.label_sets.begin(), gap.label_sets.end(),
                                   [&](const Labels& l) { return sel.Matches(l); });
    return matched > 0 && matched < gap.label_sets.size();
  };
  auto warn = [&](const SourceRef& where, const std::string& what) {
    Report(diags, Diagnostic::Severity::kWarning, where, p.Id(), "",
           what + " selects some pods of workload " + w.Id() +
               " but not others; Bulkhead evaluates the workload with the labels of " +
               gap.objects.front());
  };
  const Subject& s = p.subject;
  if (NamespaceInScope(cluster, w.namespace_name, s.namespace_name, s.namespace_selector) &&
      splits(s.pod_selector)) {
    warn(p.source, "the policy's subject");
  }
  for (Direction dir : {Direction::kIngress, Direction::kEgress}) {
    const std::vector<Rule>& rules = p.Rules(dir);
    for (size_t r = 0; r < rules.size(); ++r) {
      for (const Peer& peer : rules[r].peers) {
        if (peer.kind != Peer::Kind::kPods || !peer.pod_selector) continue;
        if (!NamespaceInScope(cluster, w.namespace_name, peer.same_namespace,
                              peer.namespace_selector)) {
          continue;
        }
        if (splits(*peer.pod_selector)) {
          warn(peer.source, std::string(DirectionName(dir)) + " rule " + std::to_string(r) +
                                " peer " + peer.pod_selector->ToString());
        }
      }
    }
  }
}

// The notice for a workload whose objects have different labels, then a warning for each
// selector of `policies` that tells them apart.
void ReportLabelGap(const Cluster& cluster, const LabelGap& gap,
                    const std::vector<const Policy*>& policies, std::vector<Diagnostic>* diags) {
  const Workload& w = cluster.workloads[gap.workload];
  LabelSelector shown;
  shown.match_labels = w.labels;
  Report(diags, Diagnostic::Severity::kNotice, w.source, gap.objects.front(), "metadata.labels",
         "the " + std::to_string(gap.objects.size()) + " objects of workload " + w.Id() +
             " have different labels; the workload uses these: " + shown.ToString());
  for (const Policy* p : policies) CheckGap(cluster, *p, w, gap, diags);
}

class Assembler {
 public:
  Assembler(Collected collected, std::vector<Diagnostic>* diags)
      : in_(std::move(collected)), diags_(diags) {}

  Cluster Run() {
    RunRest();
    WarnAboutLabelGaps();
    return std::move(cluster_);
  }

  // What Run does for input without policies, but for the label-gap diagnostics, which
  // AssemblePolicies reports with the policies (LoadPathsShared reuses this between loads).
  RestAssembly Rest() {
    RunRest();
    RestAssembly rest;
    for (size_t i = 0; i < cluster_.workloads.size(); ++i) {
      const Members& m = members_[i];
      bool differ = std::any_of(m.label_sets.begin(), m.label_sets.end(),
                                [&](const Labels& l) { return l != m.label_sets.front(); });
      if (differ) rest.gaps.push_back(LabelGap{i, m.label_sets, m.objects});
    }
    rest.cluster = std::move(cluster_);
    return rest;
  }

 private:
  void RunRest() {
    CheckDuplicateObjects();
    AddNamespaces();
    AddNodes();
    MergeWorkloads();
    AddPolicies();
    AddWorkloadModes();
    AddImplicitNamespaces();
    CheckDuplicateIps();
  }

  // One workload of the cluster and what it was made of.
  struct Members {
    std::vector<Labels> label_sets;    // one per contributing object, in input order
    std::vector<std::string> objects;  // their display names
    bool from_inventory = false;
    std::string field;  // Inventory: spec.workloads[i]
  };

  void Report(Diagnostic::Severity severity, const SourceRef& where, std::string object,
              std::string field, std::string message) {
    internal::Report(diags_, severity, where, std::move(object), std::move(field),
                     std::move(message));
  }

  void CheckDuplicateObjects() {
    std::map<std::tuple<std::string, std::string, std::string>, const ObjectKey*> first;
    for (const ObjectKey& key : in_.keys) {
      auto [it, inserted] = first.emplace(std::tuple{key.kind, key.namespace_name, key.name}, &key);
      if (inserted) continue;
      const ObjectKey& other = *it->second;
      std::string what =
          key.kind + " " + (key.namespace_name.empty() ? "" : key.namespace_name + "/") + key.name;
      std::string msg = "duplicate " + what + ": also defined by " + other.object +
                        (other.field == "metadata.name" ? "" : " " + other.field) + " at " +
                        other.where.ToString();
      if (key.kind == "BaselineAdminNetworkPolicy") {
        msg += " (a cluster has at most one BaselineAdminNetworkPolicy)";
      }
      Report(Diagnostic::Severity::kError, key.where, key.object, key.field, msg);
    }
  }

  // Overrides sorted by workload id (duplicates were reported by CheckDuplicateObjects), then
  // applied to the workloads of this input.
  void AddWorkloadModes() {
    std::map<std::string, WorkloadModeOverride> by_id;
    for (WorkloadModePiece& piece : in_.workload_modes) {
      by_id.emplace(piece.override_.Id(), std::move(piece.override_));
    }
    for (auto& [id, o] : by_id) cluster_.workload_modes.push_back(std::move(o));
    ApplyWorkloadModes(cluster_);
  }

  void AddNamespaces() {
    std::set<std::string> seen;
    for (NamespacePiece& piece : in_.namespaces) {
      if (!seen.insert(piece.ns.name).second) continue;  // duplicate, reported
      cluster_.namespaces.push_back(std::move(piece.ns));
    }
  }

  void AddNodes() {
    std::set<std::string> seen;
    for (NodePiece& piece : in_.nodes) {
      if (!seen.insert(piece.node.name).second) continue;  // duplicate, reported
      cluster_.nodes.push_back(std::move(piece.node));
    }
  }

  void MergeWorkloads() {
    std::map<std::string, size_t> index;
    for (WorkloadPiece& piece : in_.workloads) {
      Workload& w = piece.workload;
      auto [it, inserted] = index.emplace(w.Id(), cluster_.workloads.size());
      if (inserted) {
        Members m;
        m.label_sets.push_back(w.labels);
        m.objects.push_back(piece.object);
        m.from_inventory = piece.from_inventory;
        m.field = piece.field;
        members_.push_back(std::move(m));
        cluster_.workloads.push_back(std::move(w));
        continue;
      }
      Workload& into = cluster_.workloads[it->second];
      Members& m = members_[it->second];
      if (piece.from_inventory || m.from_inventory) {
        // Inventory workloads are declarations, not observations: two of one id conflict.
        Report(Diagnostic::Severity::kError, w.source, piece.object,
               piece.field.empty() ? "metadata.name" : piece.field + ".name",
               "workload " + w.Id() + " is already declared by " + m.objects.front() +
                   (m.field.empty() ? "" : " " + m.field) + " at " + into.source.ToString());
        continue;
      }
      Merge(into, m, piece);
    }
  }

  // Folds another object (a further pod of one owner, or the owner object itself) into a
  // workload. The first object's labels stay the workload's labels; WarnAboutLabelGaps
  // reports any selector for which that choice matters.
  void Merge(Workload& into, Members& m, WorkloadPiece& piece) {
    Workload& w = piece.workload;
    auto warn = [&](const std::string& msg) {
      Report(Diagnostic::Severity::kWarning, w.source, piece.object, "", msg);
    };
    if (w.kind != into.kind) {
      warn(w.kind + " and " + m.objects.front() + " both map to workload " + into.Id() +
           "; treated as one workload of kind " + into.kind);
    }
    m.label_sets.push_back(w.labels);
    m.objects.push_back(piece.object);
    for (const IpAddr& ip : w.ips) {
      if (std::find(into.ips.begin(), into.ips.end(), ip) == into.ips.end()) {
        into.ips.push_back(ip);
      }
    }
    for (const NamedPort& np : w.named_ports) {
      auto same_name = std::find_if(into.named_ports.begin(), into.named_ports.end(),
                                    [&](const NamedPort& p) { return p.name == np.name; });
      if (same_name == into.named_ports.end()) {
        into.named_ports.push_back(np);
      } else if (same_name->port != np.port || same_name->protocol != np.protocol) {
        warn("named port " + np.name + " is " + ProtocolName(np.protocol) + "/" +
             std::to_string(np.port) + " here but " + ProtocolName(same_name->protocol) + "/" +
             std::to_string(same_name->port) + " in " + m.objects.front() + " (kept)");
      }
    }
    if (w.service_account != into.service_account) {
      warn("service account " + w.service_account + " differs from " + into.service_account +
           " of " + m.objects.front() + " (kept)");
    }
    if (w.mode != into.mode) {
      warn(std::string("mode ") + (w.mode ? ModeName(*w.mode) : "unset") + " differs from " +
           (into.mode ? ModeName(*into.mode) : "unset") + " of " + m.objects.front() + " (kept)");
    }
    // Replicas run on several nodes; a node is only meaningful when all agree.
    if (w.node != into.node) into.node.clear();
  }

  void AddPolicies() {
    std::map<int32_t, const PolicyPiece*> priorities;
    for (const PolicyPiece& piece : in_.policies) {
      const Policy& p = piece.policy;
      if (p.tier != Tier::kAdmin || !piece.priority_valid) continue;
      auto [it, inserted] = priorities.emplace(p.priority, &piece);
      if (inserted) continue;
      Report(Diagnostic::Severity::kError, piece.priority_where, piece.object, "spec.priority",
             "priority " + std::to_string(p.priority) + " is also used by " + it->second->object +
                 " at " + it->second->priority_where.ToString() +
                 ": admin-tier priorities must be unique, or the order of the two is undefined");
    }
    for (PolicyPiece& piece : in_.policies) cluster_.policies.push_back(std::move(piece.policy));
  }

  void AddImplicitNamespaces() {
    std::set<std::string> known;
    for (const Namespace& ns : cluster_.namespaces) known.insert(ns.name);
    auto ensure = [&](const std::string& name, const SourceRef& source) {
      if (name.empty() || !known.insert(name).second) return;
      Namespace ns;
      ns.name = name;
      ns.labels[std::string(kNamespaceNameLabel)] = name;
      ns.implicit = true;
      ns.source = source;
      cluster_.namespaces.push_back(std::move(ns));
    };
    for (const Workload& w : cluster_.workloads) ensure(w.namespace_name, w.source);
    for (const Policy& p : cluster_.policies) ensure(p.namespace_name, p.source);
  }

  void CheckDuplicateIps() {
    std::map<IpAddr, size_t> owner;
    for (size_t i = 0; i < cluster_.workloads.size(); ++i) {
      const Workload& w = cluster_.workloads[i];
      for (const IpAddr& ip : w.ips) {
        auto [it, inserted] = owner.emplace(ip, i);
        if (inserted) continue;
        const Workload& other = cluster_.workloads[it->second];
        // Finished pods keep their address in status, so Kubernetes input may repeat one;
        // an Inventory declares addresses and must not.
        bool declared = members_[i].from_inventory || members_[it->second].from_inventory;
        Report(declared ? Diagnostic::Severity::kError : Diagnostic::Severity::kWarning, w.source,
               members_[i].objects.front(),
               members_[i].field.empty() ? "status.podIPs" : members_[i].field + ".ips",
               "address " + ip.ToString() + " is also used by workload " + other.Id() +
                   "; flows from it are attributed to " + other.Id());
      }
    }
  }

  void WarnAboutLabelGaps() {
    for (size_t i = 0; i < cluster_.workloads.size(); ++i) {
      const Members& m = members_[i];
      bool differ = std::any_of(m.label_sets.begin(), m.label_sets.end(),
                                [&](const Labels& l) { return l != m.label_sets.front(); });
      if (!differ) continue;
      std::vector<const Policy*> policies;
      for (const Policy& p : cluster_.policies) policies.push_back(&p);
      ReportLabelGap(cluster_, LabelGap{i, m.label_sets, m.objects}, policies, diags_);
    }
  }

  Collected in_;
  std::vector<Diagnostic>* diags_;
  Cluster cluster_;
  std::vector<Members> members_;  // parallel to cluster_.workloads
};

}  // namespace

Cluster Assemble(Collected collected, std::vector<Diagnostic>* diagnostics) {
  return Assembler(std::move(collected), diagnostics).Run();
}

RestAssembly AssembleRest(Collected rest) {
  std::vector<Diagnostic> diags;
  RestAssembly out = Assembler(std::move(rest), &diags).Rest();
  out.diagnostics = std::move(diags);
  return out;
}

void AssemblePolicies(const RestAssembly& rest, const std::vector<const Policy*>& policies,
                      std::vector<Namespace>* namespaces, std::vector<Diagnostic>* diagnostics) {
  // AddImplicitNamespaces: the rest's namespaces already hold those of its workloads, so
  // the policies' come after them, as in a full assembly.
  std::set<std::string> known;
  for (const Namespace& ns : *namespaces) known.insert(ns.name);
  for (const Policy* p : policies) {
    if (p->namespace_name.empty() || !known.insert(p->namespace_name).second) continue;
    Namespace ns;
    ns.name = p->namespace_name;
    ns.labels[std::string(kNamespaceNameLabel)] = p->namespace_name;
    ns.implicit = true;
    ns.source = p->source;
    namespaces->push_back(std::move(ns));
  }
  for (const LabelGap& gap : rest.gaps) ReportLabelGap(rest.cluster, gap, policies, diagnostics);
}

}  // namespace bulkhead::policy::internal
