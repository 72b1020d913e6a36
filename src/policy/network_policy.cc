// Decoders for NetworkPolicy (networking.k8s.io/v1) and its native superset BulkheadPolicy:
// validation as the API server does it, then policyTypes defaulting and mapping to Policy.
#include <algorithm>
#include <set>

#include "policy/kinds.h"

namespace bulkhead::policy::internal {
namespace {

struct NpFlavor {
  bool native = false;  // BulkheadPolicy: rule names and actions, serviceAccount, process
};

std::vector<PortMatch> DecodeNpPorts(Decoder& d, const Field& ports, const Reporter& r) {
  std::vector<PortMatch> out;
  for (const Field& pf : d.List(ports)) {
    if (!pf.present()) {
      // A null entry decodes as an empty port: every TCP port.
      PortMatch all;
      all.protocol = Protocol::kTCP;
      all.source = r.Where(pf.at());
      out.push_back(std::move(all));
      continue;
    }
    if (!d.Map(pf, true)) continue;
    d.OnlyKnownFields(pf, {"protocol", "port", "endPort"});
    PortMatch pm;
    pm.source = r.Where(pf.at());
    auto protocol = d.PortProtocol(d.Get(pf, "protocol"));
    if (!protocol) continue;
    pm.protocol = *protocol;
    Field port = d.Get(pf, "port");
    Field end_port = d.Get(pf, "endPort");
    // port is an IntOrString: a number, or the name of a container port.
    bool named = port.present() && port.value->IsScalar() &&
                 ClassifyScalar(*port.value) == ScalarKind::kString;
    if (!port.present()) {
      if (end_port.present()) {
        d.Error(end_port, "may not be specified when port is not specified");
        continue;
      }
      pm.kind = PortMatch::Kind::kAllPorts;
    } else if (named) {
      auto name = d.String(port);
      if (!name) continue;
      std::string problem = CheckPortName(*name);
      if (!problem.empty()) {
        d.Error(port, "invalid named port \"" + *name + "\": " + problem);
        continue;
      }
      if (end_port.present()) {
        d.Error(end_port, "may not be specified when port is a named port (\"" + *name + "\")");
        continue;
      }
      pm.kind = PortMatch::Kind::kNamed;
      pm.name = *name;
    } else {
      auto first = d.PortNumber(port);
      if (!first) continue;
      pm.kind = PortMatch::Kind::kRange;
      pm.first = pm.last = *first;
      if (end_port.present()) {
        auto last = d.PortNumber(end_port);
        if (!last) continue;
        if (*last < *first) {
          d.Error(end_port, "endPort " + std::to_string(*last) +
                                " must be greater than or equal to port " + std::to_string(*first));
          continue;
        }
        pm.last = *last;
      }
    }
    out.push_back(std::move(pm));
  }
  return out;
}

std::optional<Peer> DecodeNpPeer(Decoder& d, const Field& pf, const ObjectContext& ctx,
                                 NpFlavor flavor) {
  if (!d.Map(pf, true)) return std::nullopt;
  if (flavor.native) {
    d.OnlyKnownFields(pf,
                      {"podSelector", "namespaceSelector", "ipBlock", "serviceAccount", "process"});
  } else {
    d.OnlyKnownFields(pf, {"podSelector", "namespaceSelector", "ipBlock"});
  }
  Peer peer;
  peer.source = d.reporter().Where(pf.at());
  Field pod_sel = d.Get(pf, "podSelector");
  Field ns_sel = d.Get(pf, "namespaceSelector");
  Field ip_block = d.Get(pf, "ipBlock");
  Field sa = d.Get(pf, "serviceAccount");
  Field process = d.Get(pf, "process");
  bool has_pods = pod_sel.present() || ns_sel.present() || sa.present() || process.present();
  if (!has_pods && !ip_block.present()) {
    d.Error(pf, flavor.native ? "must specify a peer: podSelector, namespaceSelector, ipBlock, "
                                "serviceAccount or process"
                              : "must specify a peer: podSelector, namespaceSelector or ipBlock");
    return std::nullopt;
  }
  if (ip_block.present()) {
    if (has_pods) {
      d.Error(ip_block, "may not be combined with another peer field in the same peer");
      return std::nullopt;
    }
    if (!d.Map(ip_block, true)) return std::nullopt;
    d.OnlyKnownFields(ip_block, {"cidr", "except"});
    peer.kind = Peer::Kind::kIpBlock;
    auto cidr = d.CidrValue(d.Get(ip_block, "cidr"), /*warn_host_bits=*/true);
    if (!cidr) return std::nullopt;
    peer.cidrs.push_back(*cidr);
    Field except = d.Get(ip_block, "except");
    bool ok = true;
    for (const Field& ef : d.List(except)) {
      auto e = d.CidrValue(ef, /*warn_host_bits=*/true);
      if (!e) {
        ok = false;
        continue;
      }
      // The API server requires each except to be a strict subset of cidr.
      if (e->addr.v6 != cidr->addr.v6 || !cidr->Contains(*e) || e->prefix_len <= cidr->prefix_len) {
        d.Error(ef,
                "except " + e->ToString() + " must be a strict subset of cidr " + cidr->ToString());
        ok = false;
        continue;
      }
      peer.except.push_back(*e);
    }
    if (!ok) return std::nullopt;
    return peer;
  }
  peer.kind = Peer::Kind::kPods;
  bool ok = true;
  if (ns_sel.present()) {
    peer.namespace_selector = d.Selector(ns_sel);
    ok &= peer.namespace_selector.has_value();
  } else {
    peer.same_namespace = ctx.namespace_name;
  }
  if (pod_sel.present()) {
    peer.pod_selector = d.Selector(pod_sel);
    ok &= peer.pod_selector.has_value();
  }
  if (sa.present()) {
    auto name = d.String(sa);
    if (name) {
      std::string problem = CheckDns1123Subdomain(*name);
      if (!problem.empty()) {
        d.Error(sa, "invalid service account name \"" + *name + "\": " + problem);
        ok = false;
      }
      peer.service_account = *name;
    } else {
      ok = false;
    }
  }
  if (process.present()) {
    peer.process = DecodeProcessSelector(d, process);
    ok &= peer.process.has_value();
  }
  if (!ok) return std::nullopt;
  return peer;
}

std::vector<Rule> DecodeNpRules(Decoder& d, const Field& rules, Direction dir,
                                const ObjectContext& ctx, NpFlavor flavor) {
  std::vector<Rule> out;
  const char* peers_key = dir == Direction::kIngress ? "from" : "to";
  std::set<std::string> names;
  for (const Field& rf : d.List(rules)) {
    if (rf.value == nullptr) {
      // `- ` (a null rule) decodes as an empty rule: every peer, every port.
      Rule rule;
      rule.all_peers = true;
      rule.source = d.reporter().Where(rf.at());
      out.push_back(std::move(rule));
      continue;
    }
    if (!d.Map(rf, true)) continue;
    if (flavor.native) {
      d.OnlyKnownFields(rf, {"name", "action", peers_key, "ports"});
    } else {
      d.OnlyKnownFields(rf, {peers_key, "ports"});
    }
    Rule rule;
    rule.source = d.reporter().Where(rf.at());
    if (flavor.native) {
      Field name = d.Get(rf, "name");
      if (auto n = d.String(name)) {
        if (n->empty() || n->size() > 100) {
          d.Error(name, "must be 1 to 100 characters");
        } else if (!names.insert(*n).second) {
          d.Error(name, "duplicate rule name \"" + *n + "\" in " + DirectionName(dir));
        }
        rule.name = *n;
      }
      Field action = d.Get(rf, "action");
      if (auto a = d.String(action)) {
        if (*a == "Allow") {
          rule.action = RuleAction::kAllow;
        } else if (*a == "Deny") {
          rule.action = RuleAction::kDeny;
        } else {
          d.Error(action, "unknown action \"" + *a + "\" (Allow or Deny)");
        }
      }
    }
    Field peers = d.Get(rf, peers_key);
    std::vector<Field> peer_fields = d.List(peers);
    // Absent or empty from/to: every source/destination, in the cluster or outside it.
    rule.all_peers = peer_fields.empty();
    for (const Field& pf : peer_fields) {
      if (auto peer = DecodeNpPeer(d, pf, ctx, flavor)) rule.peers.push_back(std::move(*peer));
    }
    rule.ports = DecodeNpPorts(d, d.Get(rf, "ports"), d.reporter());
    out.push_back(std::move(rule));
  }
  return out;
}

void DecodeNpLike(ObjectContext& ctx, NpFlavor flavor) {
  Decoder& d = *ctx.d;
  Field spec = ctx.Spec();
  PolicyPiece piece;
  piece.object = ctx.object;
  piece.name_where = ctx.name_where;
  Policy& p = piece.policy;
  p.kind = ctx.kind;
  p.namespace_name = ctx.namespace_name;
  p.name = ctx.name;
  p.tier = Tier::kNamespace;
  p.source = ctx.source;
  p.subject.namespace_name = ctx.namespace_name;
  std::optional<Mode> annotation_mode = ctx.AnnotationMode(ctx.Metadata(), false);

  if (!spec.present()) {
    // The API server accepts this: an empty spec selects every pod and denies ingress.
    d.Warning(spec, "is missing: the policy selects every pod in namespace " + ctx.namespace_name +
                        " and denies all their ingress");
  } else if (!d.Map(spec)) {
    return;
  }
  if (flavor.native) {
    d.OnlyKnownFields(spec, {"podSelector", "policyTypes", "ingress", "egress", "description",
                             "owner", "mode", "process"});
  } else {
    d.OnlyKnownFields(spec, {"podSelector", "policyTypes", "ingress", "egress"});
  }
  Field pod_sel = d.Get(spec, "podSelector");
  if (pod_sel.present()) p.subject.pod_selector = d.Selector(pod_sel).value_or(LabelSelector{});

  Field ingress = d.Get(spec, "ingress");
  Field egress = d.Get(spec, "egress");
  p.ingress = DecodeNpRules(d, ingress, Direction::kIngress, ctx, flavor);
  p.egress = DecodeNpRules(d, egress, Direction::kEgress, ctx, flavor);

  Field types = d.Get(spec, "policyTypes");
  auto type_list = d.Strings(types);
  if (type_list && !type_list->empty()) {
    std::set<std::string> seen;
    for (size_t i = 0; i < type_list->size(); ++i) {
      const std::string& t = (*type_list)[i];
      Field tf = d.Item(types, i);
      if (t != "Ingress" && t != "Egress") {
        d.Error(tf, "unknown policy type \"" + t + "\" (Ingress or Egress)");
      } else if (!seen.insert(t).second) {
        d.Error(tf, "duplicate policy type \"" + t + "\"");
      }
    }
    p.applies_ingress = seen.count("Ingress") > 0;
    p.applies_egress = seen.count("Egress") > 0;
  } else {
    // API-server defaulting: Ingress always, Egress when there are egress rules.
    p.applies_ingress = true;
    p.applies_egress = !p.egress.empty();
  }
  if (!p.applies_ingress && !p.ingress.empty()) {
    d.Warning(ingress, "is ignored: policyTypes does not include Ingress");
    p.ingress.clear();
  }
  if (!p.applies_egress && !p.egress.empty()) {
    d.Warning(egress, "is ignored: policyTypes does not include Egress");
    p.egress.clear();
  }

  if (flavor.native) {
    DecodeNativePolicyFields(d, spec, annotation_mode, p);
    Field process = d.Get(spec, "process");
    if (process.present()) p.subject.process = DecodeProcessSelector(d, process);
  } else {
    p.mode = annotation_mode.value_or(Mode::kEnforce);
  }
  if (!ctx.name.empty()) ctx.out->policies.push_back(std::move(piece));
}

}  // namespace

void DecodeNetworkPolicy(ObjectContext& ctx) { DecodeNpLike(ctx, NpFlavor{false}); }
void DecodeBulkheadPolicy(ObjectContext& ctx) { DecodeNpLike(ctx, NpFlavor{true}); }

}  // namespace bulkhead::policy::internal
