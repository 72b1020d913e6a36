// Decoders for AdminNetworkPolicy and BaselineAdminNetworkPolicy
// (policy.networking.k8s.io/v1alpha1) and the native BulkheadClusterPolicy that shares their
// shape, with the CRDs' validation rules (unions, ranges, list sizes) enforced.
#include <algorithm>
#include <string>
#include <tuple>
#include <vector>

#include "policy/kinds.h"

namespace bulkhead::policy::internal {
namespace {

enum class AdminFlavor { kAnp, kBanp, kNative };

constexpr size_t kMaxRules = 100;    // per direction (CRD MaxItems)
constexpr size_t kMaxPeers = 100;    // per rule
constexpr size_t kMaxPorts = 100;    // per rule
constexpr size_t kMaxNetworks = 25;  // per networks peer
constexpr int64_t kMaxPriority = 1000;

std::string JoinNames(const std::vector<std::string_view>& names) {
  std::string s;
  for (size_t i = 0; i < names.size(); ++i) {
    if (i > 0) s += i + 1 == names.size() ? " and " : ", ";
    s += names[i];
  }
  return s;
}

// Checks a "exactly one of" union; returns the field that is set, or "".
std::string_view OneOf(Decoder& d, const Field& f, const std::vector<std::string_view>& fields) {
  std::vector<std::string_view> set;
  for (std::string_view name : fields) {
    if (d.Get(f, name).present()) set.push_back(name);
  }
  if (set.size() == 1) return set[0];
  std::string options;
  for (size_t i = 0; i < fields.size(); ++i) {
    options += (i == 0 ? "" : ", ") + std::string(fields[i]);
  }
  if (set.empty()) {
    d.Error(f, "must set exactly one of " + options + " (none is set)");
  } else {
    d.Error(f, "must set exactly one of " + options + " (" + JoinNames(set) + " are set)");
  }
  return "";
}

// NamespacedPod: both selectors are required.
bool DecodeNamespacedPod(Decoder& d, const Field& f, std::optional<LabelSelector>* ns,
                         std::optional<LabelSelector>* pods) {
  if (!d.Map(f, true)) return false;
  d.OnlyKnownFields(f, {"namespaceSelector", "podSelector"});
  bool ok = true;
  for (auto [key, out, what] :
       {std::tuple{"namespaceSelector", ns, "namespace"}, std::tuple{"podSelector", pods, "pod"}}) {
    Field sel = d.Get(f, key);
    if (!sel.present()) {
      // The CRD marks both required, but the Go type decodes a missing one as empty, and
      // manifests in the wild (np-guard's among them) rely on that.
      d.Warning(sel, std::string("is missing: treated as {} (every ") + what + ")");
      *out = LabelSelector{};
      continue;
    }
    *out = d.Selector(sel);
    ok &= out->has_value();
  }
  return ok;
}

std::optional<Peer> DecodeAdminPeer(Decoder& d, const Field& f, Direction dir, AdminFlavor flavor) {
  if (!d.Map(f, true)) return std::nullopt;
  std::vector<std::string_view> fields = {"namespaces", "pods"};
  // ANP ingress peers are in-cluster only; the native kind also takes networks and nodes.
  if (dir == Direction::kEgress || flavor == AdminFlavor::kNative) {
    fields.emplace_back("nodes");
    fields.emplace_back("networks");
  }
  if (fields.size() == 2) {
    d.OnlyKnownFields(f, {"namespaces", "pods"});
  } else {
    d.OnlyKnownFields(f, {"namespaces", "pods", "nodes", "networks"});
  }
  std::string_view which = OneOf(d, f, fields);
  Peer peer;
  peer.source = d.reporter().Where(f.at());
  if (which == "namespaces") {
    peer.kind = Peer::Kind::kPods;
    peer.namespace_selector = d.Selector(d.Get(f, "namespaces"));
    if (!peer.namespace_selector) return std::nullopt;
  } else if (which == "pods") {
    peer.kind = Peer::Kind::kPods;
    if (!DecodeNamespacedPod(d, d.Get(f, "pods"), &peer.namespace_selector, &peer.pod_selector)) {
      return std::nullopt;
    }
  } else if (which == "nodes") {
    peer.kind = Peer::Kind::kNodes;
    auto sel = d.Selector(d.Get(f, "nodes"));
    if (!sel) return std::nullopt;
    peer.node_selector = *sel;
  } else if (which == "networks") {
    peer.kind = Peer::Kind::kIpBlock;
    Field networks = d.Get(f, "networks");
    std::vector<Field> items = d.List(networks);
    if (networks.value != nullptr && networks.value->IsSequence()) {
      if (items.empty()) d.Error(networks, "must list at least one CIDR");
      if (items.size() > kMaxNetworks) {
        d.Error(networks, "must list at most " + std::to_string(kMaxNetworks) + " CIDRs");
      }
    }
    bool ok = !items.empty();
    for (const Field& item : items) {
      auto cidr = d.CidrValue(item, /*warn_host_bits=*/true);
      if (!cidr) {
        ok = false;
        continue;
      }
      if (std::find(peer.cidrs.begin(), peer.cidrs.end(), *cidr) != peer.cidrs.end()) {
        d.Error(item, "duplicate CIDR " + cidr->ToString());
        ok = false;
        continue;
      }
      peer.cidrs.push_back(*cidr);
    }
    if (!ok) return std::nullopt;
  } else {
    return std::nullopt;
  }
  return peer;
}

std::optional<PortMatch> DecodeAdminPort(Decoder& d, const Field& f) {
  if (!d.Map(f, true)) return std::nullopt;
  d.OnlyKnownFields(f, {"portNumber", "namedPort", "portRange"});
  std::string_view which = OneOf(d, f, {"portNumber", "namedPort", "portRange"});
  PortMatch pm;
  pm.source = d.reporter().Where(f.at());
  if (which == "portNumber") {
    Field pn = d.Get(f, "portNumber");
    if (!d.Map(pn, true)) return std::nullopt;
    d.OnlyKnownFields(pn, {"protocol", "port"});
    auto protocol = d.PortProtocol(d.Get(pn, "protocol"));
    auto port = d.PortNumber(d.Get(pn, "port"), /*required=*/true);
    if (!protocol || !port) return std::nullopt;
    pm.kind = PortMatch::Kind::kRange;
    pm.protocol = *protocol;
    pm.first = pm.last = *port;
  } else if (which == "namedPort") {
    Field np = d.Get(f, "namedPort");
    auto name = d.String(np);
    if (!name) return std::nullopt;
    std::string problem = CheckPortName(*name);
    if (!problem.empty()) {
      d.Error(np, "invalid named port \"" + *name + "\": " + problem);
      return std::nullopt;
    }
    pm.kind = PortMatch::Kind::kNamed;
    pm.name = *name;  // protocol unset: the named port's own protocol
  } else if (which == "portRange") {
    Field pr = d.Get(f, "portRange");
    if (!d.Map(pr, true)) return std::nullopt;
    d.OnlyKnownFields(pr, {"protocol", "start", "end"});
    auto protocol = d.PortProtocol(d.Get(pr, "protocol"));
    Field end_field = d.Get(pr, "end");
    auto start = d.PortNumber(d.Get(pr, "start"), /*required=*/true);
    auto end = d.PortNumber(end_field, /*required=*/true);
    if (!protocol || !start || !end) return std::nullopt;
    if (*start >= *end) {
      d.Error(end_field, "end " + std::to_string(*end) + " must be greater than start " +
                             std::to_string(*start));
      return std::nullopt;
    }
    pm.kind = PortMatch::Kind::kRange;
    pm.protocol = *protocol;
    pm.first = *start;
    pm.last = *end;
  } else {
    return std::nullopt;
  }
  return pm;
}

std::vector<Rule> DecodeAdminRules(Decoder& d, const Field& rules, Direction dir, Tier tier,
                                   AdminFlavor flavor) {
  std::vector<Rule> out;
  std::vector<Field> items = d.List(rules);
  if (items.size() > kMaxRules) {
    d.Error(rules, "must have at most " + std::to_string(kMaxRules) + " rules");
  }
  const char* peers_key = dir == Direction::kIngress ? "from" : "to";
  for (const Field& rf : items) {
    if (!d.Map(rf, true)) continue;
    d.OnlyKnownFields(rf, {"name", "action", peers_key, "ports"});
    Rule rule;
    rule.source = d.reporter().Where(rf.at());
    Field name = d.Get(rf, "name");
    if (auto n = d.String(name)) {
      if (n->size() > 100) d.Error(name, "must be at most 100 characters");
      rule.name = *n;
    }
    Field action = d.Get(rf, "action");
    if (auto a = d.String(action, /*required=*/true)) {
      bool pass_allowed = tier == Tier::kAdmin;
      if (*a == "Allow") {
        rule.action = RuleAction::kAllow;
      } else if (*a == "Deny") {
        rule.action = RuleAction::kDeny;
      } else if (*a == "Pass" && pass_allowed) {
        rule.action = RuleAction::kPass;
      } else {
        d.Error(action, "unknown action \"" + *a + "\" (" +
                            (pass_allowed ? "Allow, Deny or Pass)" : "Allow or Deny)"));
      }
    }
    Field peers = d.Get(rf, peers_key);
    std::vector<Field> peer_items = d.List(peers, /*required=*/true);
    if (peers.value != nullptr && peers.value->IsSequence()) {
      if (peer_items.empty()) d.Error(peers, "must list at least one peer");
      if (peer_items.size() > kMaxPeers) {
        d.Error(peers, "must list at most " + std::to_string(kMaxPeers) + " peers");
      }
    }
    for (const Field& pf : peer_items) {
      if (auto peer = DecodeAdminPeer(d, pf, dir, flavor)) rule.peers.push_back(std::move(*peer));
    }
    Field ports = d.Get(rf, "ports");
    std::vector<Field> port_items = d.List(ports);
    if (port_items.size() > kMaxPorts) {
      d.Error(ports, "must list at most " + std::to_string(kMaxPorts) + " ports");
    }
    for (const Field& portf : port_items) {
      if (auto pm = DecodeAdminPort(d, portf)) rule.ports.push_back(std::move(*pm));
    }
    out.push_back(std::move(rule));
  }
  return out;
}

void DecodeAdminLike(ObjectContext& ctx, AdminFlavor flavor) {
  Decoder& d = *ctx.d;
  Field spec = ctx.Spec();
  PolicyPiece piece;
  piece.object = ctx.object;
  piece.name_where = ctx.name_where;
  Policy& p = piece.policy;
  p.kind = ctx.kind;
  p.name = ctx.name;
  p.source = ctx.source;
  std::optional<Mode> annotation_mode = ctx.AnnotationMode(ctx.Metadata(), false);
  if (!d.Map(spec, /*required=*/true)) return;

  switch (flavor) {
    case AdminFlavor::kAnp:
      d.OnlyKnownFields(spec, {"priority", "subject", "ingress", "egress"});
      p.tier = Tier::kAdmin;
      break;
    case AdminFlavor::kBanp:
      d.OnlyKnownFields(spec, {"subject", "ingress", "egress"});
      p.tier = Tier::kBaseline;
      if (!ctx.name.empty() && ctx.name != "default") {
        d.Error(d.Get(ctx.Metadata(), "name"),
                "a BaselineAdminNetworkPolicy must be named \"default\", not \"" + ctx.name + "\"");
      }
      break;
    case AdminFlavor::kNative: {
      d.OnlyKnownFields(spec, {"tier", "priority", "subject", "ingress", "egress", "mode",
                               "description", "owner"});
      p.tier = Tier::kAdmin;
      Field tier = d.Get(spec, "tier");
      if (auto t = d.String(tier)) {
        if (*t == "baseline") {
          p.tier = Tier::kBaseline;
        } else if (*t != "admin") {
          d.Error(tier, "unknown tier \"" + *t + "\" (admin or baseline)");
        }
      }
      break;
    }
  }

  Field priority = d.Get(spec, "priority");
  if (p.tier == Tier::kAdmin) {
    piece.priority_where = d.reporter().Where(priority.at());
    if (auto prio = d.Int(priority, /*required=*/true)) {
      if (*prio < 0 || *prio > kMaxPriority) {
        d.Error(priority, "priority " + std::to_string(*prio) + " is out of range 0-" +
                              std::to_string(kMaxPriority));
      } else {
        p.priority = static_cast<int32_t>(*prio);
        piece.priority_valid = true;
      }
    }
  } else if (flavor == AdminFlavor::kNative) {
    d.Forbid(priority, "the baseline tier has no priority");
  }

  Field subject = d.Get(spec, "subject");
  if (d.Map(subject, /*required=*/true)) {
    d.OnlyKnownFields(subject, {"namespaces", "pods"});
    std::string_view which = OneOf(d, subject, {"namespaces", "pods"});
    if (which == "namespaces") {
      p.subject.namespace_selector =
          d.Selector(d.Get(subject, "namespaces")).value_or(LabelSelector{});
    } else if (which == "pods") {
      std::optional<LabelSelector> pods;
      DecodeNamespacedPod(d, d.Get(subject, "pods"), &p.subject.namespace_selector, &pods);
      p.subject.pod_selector = pods.value_or(LabelSelector{});
    }
  }

  p.ingress = DecodeAdminRules(d, d.Get(spec, "ingress"), Direction::kIngress, p.tier, flavor);
  p.egress = DecodeAdminRules(d, d.Get(spec, "egress"), Direction::kEgress, p.tier, flavor);
  // These tiers never isolate: a policy "applies" in the directions it has rules for.
  p.applies_ingress = !p.ingress.empty();
  p.applies_egress = !p.egress.empty();

  if (flavor == AdminFlavor::kNative) {
    DecodeNativePolicyFields(d, spec, annotation_mode, p);
  } else {
    p.mode = annotation_mode.value_or(Mode::kEnforce);
  }
  if (!ctx.name.empty()) ctx.out->policies.push_back(std::move(piece));
}

}  // namespace

void DecodeAdminNetworkPolicy(ObjectContext& ctx) { DecodeAdminLike(ctx, AdminFlavor::kAnp); }
void DecodeBaselineAdminNetworkPolicy(ObjectContext& ctx) {
  DecodeAdminLike(ctx, AdminFlavor::kBanp);
}
void DecodeBulkheadClusterPolicy(ObjectContext& ctx) { DecodeAdminLike(ctx, AdminFlavor::kNative); }

}  // namespace bulkhead::policy::internal
