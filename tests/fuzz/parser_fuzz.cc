// libFuzzer target for the manifest loader: arbitrary bytes through LoadString must never
// crash, hang or leak, and whatever loads must satisfy the Cluster's invariants.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <set>
#include <string>
#include <string_view>

#include "policy/decode.h"
#include "policy/loader.h"

namespace {

using bulkhead::policy::Diagnostic;

[[noreturn]] void Broken(const char* what) {
  std::fprintf(stderr, "invariant broken: %s\n", what);
  std::abort();
}

void CheckInvariants(const bulkhead::policy::LoadResult& r) {
  using bulkhead::policy::internal::IsValidUtf8;
  for (const Diagnostic& d : r.diagnostics) {
    if (d.where.file != "fuzz.yaml") Broken("diagnostic without the file name");
    if (!IsValidUtf8(d.ToString())) Broken("diagnostic text is not valid UTF-8");
  }
  const auto& c = r.cluster;
  if (!r.ok()) {
    if (!c.namespaces.empty() || !c.workloads.empty() || !c.policies.empty() || !c.nodes.empty()) {
      Broken("a cluster with errors must be empty");
    }
    return;
  }
  std::set<std::string> namespaces;
  for (const auto& ns : c.namespaces) {
    if (!namespaces.insert(ns.name).second) Broken("duplicate namespace");
    auto it = ns.labels.find("kubernetes.io/metadata.name");
    if (it == ns.labels.end() || it->second != ns.name) Broken("namespace without name label");
  }
  std::set<std::string> ids;
  for (const auto& w : c.workloads) {
    if (!ids.insert(w.Id()).second) Broken("duplicate workload id");
    if (!namespaces.count(w.namespace_name)) Broken("workload in an undeclared namespace");
    if (w.name.empty()) Broken("workload without a name");
    if (!IsValidUtf8(w.Id()) || !IsValidUtf8(w.kind)) Broken("workload text is not UTF-8");
    for (const auto& [k, v] : w.labels) {
      if (!IsValidUtf8(k) || !IsValidUtf8(v)) Broken("label is not UTF-8");
    }
  }
  std::set<int> priorities;
  for (const auto& p : c.policies) {
    if (p.name.empty()) Broken("policy without a name");
    if (!IsValidUtf8(p.Id() + p.description + p.owner)) Broken("policy text is not UTF-8");
    if (!p.namespace_name.empty() && !namespaces.count(p.namespace_name)) {
      Broken("policy in an undeclared namespace");
    }
    if (p.tier == bulkhead::policy::Tier::kAdmin) {
      if (p.priority < 0 || p.priority > 1000) Broken("admin priority out of range");
      if (!priorities.insert(p.priority).second) Broken("duplicate admin priority");
    }
    for (const auto* rules : {&p.ingress, &p.egress}) {
      for (const auto& rule : *rules) {
        if (rule.all_peers && !rule.peers.empty()) Broken("all_peers with peers");
        for (const auto& port : rule.ports) {
          if (port.kind == bulkhead::policy::PortMatch::Kind::kRange &&
              (port.first == 0 || port.first > port.last)) {
            Broken("bad port range");
          }
        }
      }
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view content(reinterpret_cast<const char*>(data), size);
  CheckInvariants(bulkhead::policy::LoadString(content, "fuzz.yaml"));
  return 0;
}
