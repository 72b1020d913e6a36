// The agent benchmark's synthetic node: an inventory of local endpoints and remote peers, a
// policy directory of N rules, and the probe pair whose verdict the benchmark flips.
// Deterministic: the same parameters always write the same files.
#pragma once

#include <string>

#include "absl/status/status.h"

namespace bulkhead::bench {

struct ScenarioOptions {
  int namespaces = 10;
  int local_workloads = 100;   // endpoints on this node (hostInterface + netns)
  int remote_workloads = 900;  // peers on other nodes (distinct identities)
  int rules = 10000;           // spread over policies of `rules_per_policy` rules
  int rules_per_policy = 10;
  // Which workloads the policies select: "all" spreads them over every app (local and
  // remote, so a node's tables see a tenth of them); "local" makes every policy select a
  // local app (every rule lands in this node's tables: the worst case for the agent).
  std::string placement = "all";
  std::string node = "bench-node";  // the node of the local workloads
  // Local workload k gets hostInterface <if_prefix><k> and netns <netns_prefix><k>
  // (k = 0 .. local_workloads-1; the probe pair is 0 and 1).
  std::string if_prefix = "bhif";
  std::string netns_prefix = "bhns";
  std::string ip_prefix = "10.77";  // local k: <ip_prefix>.<k/200>.<k%200+10>
};

// The probe pair: local workloads 0 (client) and 1 (server). Every generated policy set
// isolates the server's ingress (a policy selects it), so the server's probe port is denied
// unless the probe policy allows it.
inline constexpr int kProbePort = 9999;

// Writes <dir>/inventory.yaml and <dir>/rules/*.yaml (the bulk rule set).
absl::Status WriteScenario(const ScenarioOptions& options, const std::string& dir);

// The probe policy file: a NetworkPolicy in the server's namespace that allows UDP
// kProbePort from the client when `allow`, and a port nobody probes otherwise (the same
// policy, one field different: a one-rule change).
std::string ProbePolicy(const ScenarioOptions& options, bool allow);

// Names and addresses of local workload k.
std::string LocalName(int k);
std::string LocalNamespace(const ScenarioOptions& options, int k);
std::string LocalIp(const ScenarioOptions& options, int k);

}  // namespace bulkhead::bench
