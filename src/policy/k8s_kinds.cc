// Decoders for the Kubernetes kinds that describe workloads and where they live: Namespace,
// Node, Pod, the pod controllers (Deployment, StatefulSet, ..., CronJob) and KubeVirt
// VirtualMachines, whose pod template has the same shape.
#include <algorithm>
#include <map>

#include "policy/kinds.h"

namespace bulkhead::policy::internal {

std::optional<Mode> ObjectContext::AnnotationMode(const Field& metadata, bool allow_learn) const {
  Field annotations = d->Get(metadata, "annotations");
  if (annotations.value == nullptr || !annotations.value->IsMap()) return std::nullopt;
  for (size_t i = 0; i < annotations.value->keys.size(); ++i) {
    if (annotations.value->keys[i].text != kModeAnnotation) continue;
    Field f;
    f.path = annotations.path + "[" + std::string(kModeAnnotation) + "]";
    f.anchor = &annotations.value->items[i];
    if (!f.anchor->IsNull()) f.value = f.anchor;
    if (!f.present()) {
      d->Error(f, "must be enforce, audit or learn");
      return std::nullopt;
    }
    return d->ModeValue(f, allow_learn);
  }
  return std::nullopt;
}

std::vector<NamedPort> DecodeContainerPorts(Decoder& d, const Field& pod_spec) {
  std::vector<NamedPort> out;
  struct FirstUse {
    std::string container;  // path of the container
    std::string path;       // path of the name
  };
  std::map<std::string, FirstUse> seen;
  for (const char* list : {"containers", "initContainers"}) {
    for (const Field& container : d.List(d.Get(pod_spec, list))) {
      if (!d.Map(container, true)) continue;
      // Init containers only serve ports when they are sidecars (restartPolicy Always).
      bool serves = true;
      if (std::string_view(list) == "initContainers") {
        auto restart = d.String(d.Get(container, "restartPolicy"));
        serves = restart && *restart == "Always";
      }
      for (const Field& port : d.List(d.Get(container, "ports"))) {
        if (!d.Map(port, true)) continue;
        auto number = d.PortNumber(d.Get(port, "containerPort"), true);
        auto protocol = d.PortProtocol(d.Get(port, "protocol"));
        Field name_field = d.Get(port, "name");
        auto name = d.String(name_field);
        if (!name) continue;
        std::string problem = CheckPortName(*name);
        if (!problem.empty()) {
          d.Error(name_field, "invalid port name \"" + *name + "\": " + problem);
          continue;
        }
        auto [it, inserted] = seen.emplace(*name, FirstUse{container.path, name_field.path});
        if (!inserted) {
          // The API server rejects a duplicate within one container; across containers it
          // is legal but makes the name ambiguous, and the first one wins.
          if (it->second.container == container.path) {
            d.Error(name_field,
                    "duplicate port name \"" + *name + "\" (also " + it->second.path + ")");
          } else {
            d.Warning(name_field, "port name \"" + *name + "\" is also used by " + it->second.path +
                                      "; policies resolve it to that one");
          }
          continue;
        }
        if (serves && number && protocol) out.push_back(NamedPort{*name, *protocol, *number});
      }
    }
  }
  return out;
}

namespace {

// A KubeVirt VM's ports are on its interfaces: spec.domain.devices.interfaces[].ports[].
std::vector<NamedPort> DecodeVmPorts(Decoder& d, const Field& vmi_spec) {
  std::vector<NamedPort> out;
  Field interfaces = d.Get(d.Get(d.Get(vmi_spec, "domain"), "devices"), "interfaces");
  for (const Field& iface : d.List(interfaces)) {
    if (!d.Map(iface, true)) continue;
    for (const Field& port : d.List(d.Get(iface, "ports"))) {
      if (!d.Map(port, true)) continue;
      auto number = d.PortNumber(d.Get(port, "port"), true);
      auto protocol = d.PortProtocol(d.Get(port, "protocol"));
      Field name_field = d.Get(port, "name");
      auto name = d.String(name_field);
      if (!name || !number || !protocol) continue;
      std::string problem = CheckPortName(*name);
      if (!problem.empty()) {
        d.Error(name_field, "invalid port name \"" + *name + "\": " + problem);
        continue;
      }
      if (std::none_of(out.begin(), out.end(),
                       [&](const NamedPort& p) { return p.name == *name; })) {
        out.push_back(NamedPort{*name, *protocol, *number});
      }
    }
  }
  return out;
}

std::string ServiceAccount(Decoder& d, const Field& pod_spec) {
  Field f = d.Get(pod_spec, "serviceAccountName");
  if (!f.present()) f = d.Get(pod_spec, "serviceAccount");  // deprecated alias
  auto sa = d.String(f);
  if (!sa) return "default";
  std::string problem = CheckDns1123Subdomain(*sa);
  if (!problem.empty()) {
    d.Error(f, "invalid service account name \"" + *sa + "\": " + problem);
    return "default";
  }
  return *sa;
}

}  // namespace

void DecodeNamespace(ObjectContext& ctx) {
  Decoder& d = *ctx.d;
  Field meta = ctx.Metadata();
  NamespacePiece piece;
  piece.object = ctx.object;
  Namespace& ns = piece.ns;
  ns.name = ctx.name;
  ns.labels = ctx.labels;
  ns.source = ctx.source;
  ns.mode = ctx.AnnotationMode(meta, /*allow_learn=*/true);
  auto it = ns.labels.find(std::string(kNamespaceNameLabel));
  if (it != ns.labels.end() && it->second != ns.name) {
    Field label = d.Get(d.Get(meta, "labels"), kNamespaceNameLabel);
    label.path = JoinPath(meta.path, "labels[" + std::string(kNamespaceNameLabel) + "]");
    d.Warning(label, "label " + std::string(kNamespaceNameLabel) + "=" + it->second +
                         " is replaced by " + ns.name + ": the API server sets it to the name");
  }
  ns.labels[std::string(kNamespaceNameLabel)] = ns.name;
  if (!ctx.name.empty()) ctx.out->namespaces.push_back(std::move(piece));
}

void DecodeNode(ObjectContext& ctx) {
  Decoder& d = *ctx.d;
  NodePiece piece;
  piece.object = ctx.object;
  piece.node.name = ctx.name;
  piece.node.labels = ctx.labels;
  piece.node.source = ctx.source;
  Field status = d.Get(ctx.root, "status");
  if (d.Map(status)) {
    for (const Field& addr : d.List(d.Get(status, "addresses"))) {
      if (!d.Map(addr, true)) continue;
      auto type = d.String(d.Get(addr, "type"));
      if (!type || (*type != "InternalIP" && *type != "ExternalIP")) continue;
      if (auto ip = d.IpValue(d.Get(addr, "address"))) {
        auto& ips = piece.node.ips;
        if (std::find(ips.begin(), ips.end(), *ip) == ips.end()) ips.push_back(*ip);
      }
    }
  }
  if (!ctx.name.empty()) ctx.out->nodes.push_back(std::move(piece));
}

void DecodePod(ObjectContext& ctx) {
  Decoder& d = *ctx.d;
  Field meta = ctx.Metadata();
  Field spec = ctx.Spec();
  WorkloadPiece piece;
  piece.object = ctx.object;
  Workload& w = piece.workload;
  w.namespace_name = ctx.namespace_name;
  w.name = ctx.name;
  w.kind = "Pod";
  w.labels = ctx.labels;
  w.source = ctx.source;
  w.mode = ctx.AnnotationMode(meta, /*allow_learn=*/true);

  // A pod managed by a controller is one replica of that controller's workload, named as
  // np-guard and `kubectl get` name it: after the owner. Mirror pods of static manifests
  // are "owned" by their Node and stay pods.
  Field owners = d.Get(meta, "ownerReferences");
  std::optional<Field> controller;
  for (const Field& ref : d.List(owners)) {
    if (!d.Map(ref, true)) continue;
    auto is_controller = d.Bool(d.Get(ref, "controller"));
    if (!is_controller || !*is_controller) continue;
    if (controller) {
      d.Error(ref,
              "only one ownerReference may have controller: true (also " + controller->path + ")");
      continue;
    }
    controller = ref;
  }
  if (controller) {
    Field owner_name = d.Get(*controller, "name");
    auto name = d.String(owner_name, true);
    auto kind = d.String(d.Get(*controller, "kind"));
    if (name && !IsUsableName(*name)) {
      d.Error(owner_name, "invalid owner name \"" + *name + "\"");
    } else if (name && kind.value_or("") != "Node") {
      w.name = *name;
      w.kind = kind && !kind->empty() ? *kind : "Pod";
    }
  }

  // Past the metadata, a pod's manifest is observed state: read what is usable and warn
  // about what an API server would have refused.
  LenientScope lenient(d.reporter());
  bool host_network = false;
  if (d.Map(spec)) {
    w.named_ports = DecodeContainerPorts(d, spec);
    w.service_account = ServiceAccount(d, spec);
    if (auto node = d.String(d.Get(spec, "nodeName"))) w.node = *node;
    host_network = d.Bool(d.Get(spec, "hostNetwork")).value_or(false);
  }
  Field status = d.Get(ctx.root, "status");
  if (d.Map(status)) {
    std::vector<Field> ip_fields;
    Field pod_ip = d.Get(status, "podIP");
    if (pod_ip.present()) ip_fields.push_back(pod_ip);
    for (const Field& entry : d.List(d.Get(status, "podIPs"))) {
      if (d.Map(entry, true)) ip_fields.push_back(d.Get(entry, "ip"));
    }
    for (const Field& f : ip_fields) {
      auto ip = d.IpValue(f);
      // A host-network pod shares its node's addresses: traffic from them is host traffic.
      if (!ip || host_network) continue;
      if (std::find(w.ips.begin(), w.ips.end(), *ip) == w.ips.end()) w.ips.push_back(*ip);
    }
  }
  if (!ctx.name.empty()) ctx.out->workloads.push_back(std::move(piece));
}

void DecodeController(ObjectContext& ctx) {
  Decoder& d = *ctx.d;
  Field spec = ctx.Spec();
  Field tmpl = ctx.kind == "CronJob" ? d.Get(d.Get(d.Get(spec, "jobTemplate"), "spec"), "template")
                                     : d.Get(spec, "template");
  {
    LenientScope lenient(d.reporter());
    if (!d.Map(spec, true) || !d.Map(tmpl, true)) return;
  }
  Field tmeta = d.Get(tmpl, "metadata");
  Field tspec = d.Get(tmpl, "spec");

  WorkloadPiece piece;
  piece.object = ctx.object;
  Workload& w = piece.workload;
  w.namespace_name = ctx.namespace_name;
  w.name = ctx.name;
  w.kind = ctx.kind;
  w.source = ctx.source;
  if (d.Map(tmeta)) {
    Field labels = d.Get(tmeta, "labels");
    if (labels.present()) w.labels = d.LabelMap(labels).value_or(Labels{});
  }
  w.mode = ctx.AnnotationMode(tmeta, /*allow_learn=*/true);
  if (!w.mode) w.mode = ctx.AnnotationMode(ctx.Metadata(), /*allow_learn=*/true);
  LenientScope lenient(d.reporter());
  if (ctx.kind == "VirtualMachine") {
    w.named_ports = DecodeVmPorts(d, tspec);
  } else if (d.Map(tspec)) {
    w.named_ports = DecodeContainerPorts(d, tspec);
    w.service_account = ServiceAccount(d, tspec);
  }

  // The controller only owns pods its selector matches; the API server rejects a template
  // the selector does not select.
  Field selector = d.Get(spec, "selector");
  if (ctx.kind == "ReplicationController") {
    if (selector.present()) {
      if (auto sel = d.LabelMap(selector)) {
        LabelSelector s;
        s.match_labels = *sel;
        if (!s.Matches(w.labels)) {
          d.Error(selector,
                  "selector " + s.ToString() + " does not match the pod template's labels");
        }
      }
    }
  } else if (ctx.kind != "CronJob" && ctx.kind != "VirtualMachine") {
    bool apps_v1 = ctx.api_version == "apps/v1";
    if (apps_v1 && !selector.present()) {
      d.Error(selector, "is required for " + ctx.kind + " in apps/v1");
    } else if (selector.present()) {
      if (auto sel = d.Selector(selector)) {
        if (apps_v1 && sel->IsEmpty()) {
          d.Error(selector, "must not be empty");
        } else if (!sel->Matches(w.labels)) {
          d.Error(selector,
                  "selector " + sel->ToString() + " does not match the pod template's labels");
        }
      }
    }
  }
  if (!ctx.name.empty()) ctx.out->workloads.push_back(std::move(piece));
}

}  // namespace bulkhead::policy::internal
