// Decoders for the native kinds that are not policies with rules: Inventory (workloads
// outside Kubernetes) and DefaultDeny (zero trust), plus the shared process selector.
#include <algorithm>
#include <set>

#include "policy/kinds.h"

namespace bulkhead::policy::internal {

namespace {

// The kernel keeps a task's command name in 16 bytes including the terminating NUL.
constexpr size_t kMaxCommLength = 15;

void DecodeInventoryNamespace(ObjectContext& ctx, const Field& f) {
  Decoder& d = *ctx.d;
  if (!d.Map(f, true)) return;
  d.OnlyKnownFields(f, {"name", "labels", "mode"});
  Field name_field = d.Get(f, "name");
  auto name = d.String(name_field, true);
  if (!name) return;
  std::string problem = CheckDns1123Label(*name);
  if (!problem.empty()) {
    d.Error(name_field, "invalid namespace name \"" + *name + "\": " + problem);
    return;
  }
  NamespacePiece piece;
  piece.object = ctx.object;
  piece.ns.name = *name;
  piece.ns.source = d.reporter().Where(f.at());
  Field labels = d.Get(f, "labels");
  if (labels.present()) piece.ns.labels = d.LabelMap(labels).value_or(Labels{});
  piece.ns.labels[std::string(kNamespaceNameLabel)] = *name;
  piece.ns.mode = d.ModeValue(d.Get(f, "mode"), /*allow_learn=*/true);
  ctx.out->keys.push_back(ObjectKey{"Namespace", "", *name, ctx.object, name_field.path,
                                    d.reporter().Where(name_field.at())});
  ctx.out->namespaces.push_back(std::move(piece));
}

std::vector<IpAddr> DecodeIps(Decoder& d, const Field& f) {
  std::vector<IpAddr> ips;
  for (const Field& item : d.List(f)) {
    auto ip = d.IpValue(item);
    if (!ip) continue;
    if (std::find(ips.begin(), ips.end(), *ip) != ips.end()) {
      d.Error(item, "duplicate address " + ip->ToString());
      continue;
    }
    ips.push_back(*ip);
  }
  return ips;
}

void DecodeInventoryWorkload(ObjectContext& ctx, const Field& f) {
  Decoder& d = *ctx.d;
  if (!d.Map(f, true)) return;
  d.OnlyKnownFields(f, {"name", "namespace", "labels", "serviceAccount", "ips", "ports", "mode",
                        "netns", "hostInterface", "node"});
  WorkloadPiece piece;
  piece.object = ctx.object;
  piece.field = f.path;
  piece.from_inventory = true;
  Workload& w = piece.workload;
  w.kind = "Workload";
  w.source = d.reporter().Where(f.at());

  Field name_field = d.Get(f, "name");
  auto name = d.String(name_field, true);
  bool ok = name.has_value();
  if (name) {
    std::string problem = CheckDns1123Subdomain(*name);
    if (!problem.empty()) {
      d.Error(name_field, "invalid workload name \"" + *name + "\": " + problem);
      ok = false;
    }
    w.name = *name;
  }
  Field ns_field = d.Get(f, "namespace");
  w.namespace_name = d.String(ns_field).value_or("default");
  std::string ns_problem = CheckDns1123Label(w.namespace_name);
  if (!ns_problem.empty()) {
    d.Error(ns_field, "invalid namespace name \"" + w.namespace_name + "\": " + ns_problem);
    ok = false;
  }
  Field labels = d.Get(f, "labels");
  if (labels.present()) w.labels = d.LabelMap(labels).value_or(Labels{});
  Field sa = d.Get(f, "serviceAccount");
  if (auto s = d.String(sa)) {
    std::string problem = CheckDns1123Subdomain(*s);
    if (!problem.empty()) d.Error(sa, "invalid service account name \"" + *s + "\": " + problem);
    w.service_account = *s;
  }
  w.ips = DecodeIps(d, d.Get(f, "ips"));
  std::set<std::string> port_names;
  for (const Field& pf : d.List(d.Get(f, "ports"))) {
    if (!d.Map(pf, true)) continue;
    d.OnlyKnownFields(pf, {"name", "port", "protocol"});
    Field pname = d.Get(pf, "name");
    auto port_name = d.String(pname, true);
    auto number = d.PortNumber(d.Get(pf, "port"), true);
    auto protocol = d.PortProtocol(d.Get(pf, "protocol"));
    if (!port_name || !number || !protocol) continue;
    std::string problem = CheckPortName(*port_name);
    if (!problem.empty()) {
      d.Error(pname, "invalid port name \"" + *port_name + "\": " + problem);
      continue;
    }
    if (!port_names.insert(*port_name).second) {
      d.Error(pname, "duplicate port name \"" + *port_name + "\"");
      continue;
    }
    w.named_ports.push_back(NamedPort{*port_name, *protocol, *number});
  }
  w.mode = d.ModeValue(d.Get(f, "mode"), /*allow_learn=*/true);
  Field netns = d.Get(f, "netns");
  if (auto s = d.String(netns)) {
    std::string problem = CheckNetns(*s);
    if (!problem.empty()) d.Error(netns, "invalid netns \"" + *s + "\": " + problem);
    w.netns = *s;
  }
  Field host_if = d.Get(f, "hostInterface");
  if (auto s = d.String(host_if)) {
    std::string problem = CheckInterfaceName(*s);
    if (!problem.empty()) d.Error(host_if, "invalid interface name \"" + *s + "\": " + problem);
    w.host_interface = *s;
  }
  if (auto s = d.String(d.Get(f, "node"))) w.node = *s;
  if (ok) ctx.out->workloads.push_back(std::move(piece));
}

void DecodeInventoryNode(ObjectContext& ctx, const Field& f) {
  Decoder& d = *ctx.d;
  if (!d.Map(f, true)) return;
  d.OnlyKnownFields(f, {"name", "labels", "ips"});
  Field name_field = d.Get(f, "name");
  auto name = d.String(name_field, true);
  if (!name) return;
  std::string problem = CheckDns1123Subdomain(*name);
  if (!problem.empty()) {
    d.Error(name_field, "invalid node name \"" + *name + "\": " + problem);
    return;
  }
  NodePiece piece;
  piece.object = ctx.object;
  piece.field = f.path;
  piece.node.name = *name;
  piece.node.source = d.reporter().Where(f.at());
  Field labels = d.Get(f, "labels");
  if (labels.present()) piece.node.labels = d.LabelMap(labels).value_or(Labels{});
  piece.node.ips = DecodeIps(d, d.Get(f, "ips"));
  ctx.out->keys.push_back(ObjectKey{"Node", "", *name, ctx.object, name_field.path,
                                    d.reporter().Where(name_field.at())});
  ctx.out->nodes.push_back(std::move(piece));
}

}  // namespace

std::optional<ProcessSelector> DecodeProcessSelector(Decoder& d, const Field& f) {
  if (!d.Map(f, true)) return std::nullopt;
  d.OnlyKnownFields(f, {"names", "paths"});
  ProcessSelector sel;
  bool ok = true;
  Field names = d.Get(f, "names");
  if (auto list = d.Strings(names)) {
    for (size_t i = 0; i < list->size(); ++i) {
      const std::string& n = (*list)[i];
      if (n.empty() || n.size() > kMaxCommLength || n.find('/') != std::string::npos) {
        d.Error(d.Item(names, i),
                "process name \"" + n +
                    "\" must be 1 to 15 characters without '/' (it is matched against the "
                    "kernel's command name; use paths for full paths)");
        ok = false;
      }
    }
    sel.names = *list;
  } else if (names.present()) {
    ok = false;
  }
  Field paths = d.Get(f, "paths");
  if (auto list = d.Strings(paths)) {
    for (size_t i = 0; i < list->size(); ++i) {
      if ((*list)[i].empty() || (*list)[i][0] != '/') {
        d.Error(d.Item(paths, i), "process path \"" + (*list)[i] + "\" must be absolute");
        ok = false;
      }
    }
    sel.paths = *list;
  } else if (paths.present()) {
    ok = false;
  }
  if (ok && sel.names.empty() && sel.paths.empty()) {
    d.Error(f, "must list at least one process name or path");
    ok = false;
  }
  if (!ok) return std::nullopt;
  return sel;
}

void DecodeInventory(ObjectContext& ctx) {
  Decoder& d = *ctx.d;
  Field spec = ctx.Spec();
  if (!d.Map(spec, /*required=*/true)) return;
  d.OnlyKnownFields(spec, {"namespaces", "workloads", "nodes"});
  for (const Field& f : d.List(d.Get(spec, "namespaces"))) DecodeInventoryNamespace(ctx, f);
  for (const Field& f : d.List(d.Get(spec, "workloads"))) DecodeInventoryWorkload(ctx, f);
  for (const Field& f : d.List(d.Get(spec, "nodes"))) DecodeInventoryNode(ctx, f);
}

void DecodeDefaultDeny(ObjectContext& ctx) {
  Decoder& d = *ctx.d;
  Field spec = ctx.Spec();
  PolicyPiece piece;
  piece.object = ctx.object;
  piece.name_where = ctx.name_where;
  Policy& p = piece.policy;
  p.kind = ctx.kind;
  p.name = ctx.name;
  p.tier = Tier::kDefault;
  p.source = ctx.source;
  std::optional<Mode> annotation_mode = ctx.AnnotationMode(ctx.Metadata(), false);
  if (spec.present() && !d.Map(spec)) return;
  d.OnlyKnownFields(
      spec, {"namespaceSelector", "podSelector", "policyTypes", "mode", "description", "owner"});
  Field ns_sel = d.Get(spec, "namespaceSelector");
  if (ctx.namespace_given) {
    p.namespace_name = ctx.namespace_name;
    p.subject.namespace_name = ctx.namespace_name;
    d.Forbid(ns_sel, "a DefaultDeny with metadata.namespace covers that namespace only");
  } else if (ns_sel.present()) {
    p.subject.namespace_selector = d.Selector(ns_sel).value_or(LabelSelector{});
  }
  Field pod_sel = d.Get(spec, "podSelector");
  if (pod_sel.present()) p.subject.pod_selector = d.Selector(pod_sel).value_or(LabelSelector{});

  Field types = d.Get(spec, "policyTypes");
  auto type_list = d.Strings(types);
  if (type_list && !type_list->empty()) {
    std::set<std::string> seen;
    for (size_t i = 0; i < type_list->size(); ++i) {
      const std::string& t = (*type_list)[i];
      if (t != "Ingress" && t != "Egress") {
        d.Error(d.Item(types, i), "unknown policy type \"" + t + "\" (Ingress or Egress)");
      } else if (!seen.insert(t).second) {
        d.Error(d.Item(types, i), "duplicate policy type \"" + t + "\"");
      }
    }
    p.applies_ingress = seen.count("Ingress") > 0;
    p.applies_egress = seen.count("Egress") > 0;
  } else {
    p.applies_ingress = p.applies_egress = true;
  }
  DecodeNativePolicyFields(d, spec, annotation_mode, p);
  if (!ctx.name.empty()) ctx.out->policies.push_back(std::move(piece));
}

void DecodeNativePolicyFields(Decoder& d, const Field& spec, std::optional<Mode> annotation_mode,
                              Policy& p) {
  if (auto s = d.String(d.Get(spec, "description"))) p.description = *s;
  if (auto s = d.String(d.Get(spec, "owner"))) p.owner = *s;
  Field mode = d.Get(spec, "mode");
  std::optional<Mode> spec_mode = d.ModeValue(mode, /*allow_learn=*/false);
  if (spec_mode && annotation_mode && *spec_mode != *annotation_mode) {
    d.Error(mode, std::string("spec.mode ") + ModeName(*spec_mode) + " contradicts annotation " +
                      std::string(kModeAnnotation) + "=" + ModeName(*annotation_mode));
  }
  p.mode = spec_mode.value_or(annotation_mode.value_or(Mode::kEnforce));
}

// WorkloadMode: metadata.name is the workload's name in metadata.namespace; spec.mode the
// mode. Strict: a mistyped field would silently leave the workload enforced.
void DecodeWorkloadMode(ObjectContext& ctx) {
  Decoder& d = *ctx.d;
  Field spec = ctx.Spec();
  if (!d.Map(spec, true)) return;
  d.OnlyKnownFields(spec, {"mode"});
  Field mode_field = d.Get(spec, "mode");
  if (!d.String(mode_field, /*required=*/true)) return;
  std::optional<Mode> mode = d.ModeValue(mode_field, /*allow_learn=*/true);
  if (!mode) return;
  if (ctx.name.empty()) return;
  WorkloadModePiece piece;
  piece.object = ctx.object;
  piece.override_.namespace_name = ctx.namespace_name;
  piece.override_.name = ctx.name;
  piece.override_.mode = *mode;
  piece.override_.source = ctx.source;
  ctx.out->workload_modes.push_back(std::move(piece));
}

}  // namespace bulkhead::policy::internal
