// Map sizes from a compile's statistics (map_sizing.h).
#include "agent/map_sizing.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "policy/loader.h"

namespace bulkhead::agent {
namespace {

uint32_t Grow(uint32_t base, size_t need) {
  uint64_t want = 2 * static_cast<uint64_t>(need);
  uint64_t n = 1;
  while (n < want) n <<= 1;
  return static_cast<uint32_t>(std::min<uint64_t>(std::max<uint64_t>(base, n), 1u << 31));
}

}  // namespace

datapath::MapSizes SizesFor(const engine::CompileStats& stats, const datapath::MapSizes& base) {
  datapath::MapSizes z = base;
  z.ipcache = Grow(base.ipcache, stats.ipcache_entries);
  z.policy_peers = Grow(base.policy_peers, stats.peer_entries);
  z.policy_ports = Grow(base.policy_ports, stats.port_entries);
  return z;
}

absl::StatusOr<engine::CompileStats> EstimateCompile(const AgentOptions& options) {
  policy::LoadResult loaded = policy::LoadPaths({options.policies_dir, options.inventory_file});
  if (!loaded.ok()) {
    std::vector<std::string> errors;
    for (const auto& d : loaded.diagnostics) {
      if (d.severity == policy::Diagnostic::Severity::kError) errors.push_back(d.ToString());
    }
    return absl::InvalidArgumentError(absl::StrJoin(errors, "\n"));
  }
  // As the agent composes it: inventory workloads without a node are on this one.
  if (!options.node.empty()) {
    for (policy::Workload& w : loaded.cluster.workloads) {
      if (w.node.empty()) w.node = options.node;
    }
  }
  engine::CompilerOptions copts;
  copts.node = options.node;
  auto compiled = engine::CompilePolicy(loaded.cluster, copts);
  if (!compiled.ok()) return compiled.status();
  return engine::ComputeStats(*compiled);
}

}  // namespace bulkhead::agent
