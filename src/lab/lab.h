// `bulkhead lab up|down|status`: builds a lab from a Lab file — a host network namespace
// running the real agent, and one netns per workload attached through the real CNI chain
// (bridge + host-local, then bulkhead-cni) with a server in it — and takes it all down again.
#pragma once

#include <chrono>
#include <functional>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "lab/lab_file.h"
#include "lab/state.h"
#include "nlohmann/json.hpp"

namespace bulkhead::lab {

// Asks the agent at `socket` for its status (the local API's "status" result). Injected, so
// this module does not depend on the agent library.
using AgentStatusFn = std::function<absl::StatusOr<nlohmann::json>(const std::string& socket)>;

// The CNI plugins the lab chains for every workload, in order.
inline constexpr const char* kBridgePlugin = "bridge";
inline constexpr const char* kBulkheadPlugin = "bulkhead-cni";
inline constexpr const char* kLoopbackPlugin = "loopback";

struct UpOptions {
  std::string name;      // the lab's name (validated by the caller)
  std::string policies;  // policy directory for the agent (absolute)
  std::string lab_file;  // absolute path, recorded for status
  std::string lab_file_content;
  std::string pin_root;               // empty: /sys/fs/bpf/bulkhead/lab-NAME
  std::vector<std::string> cni_path;  // where plugins are looked up, in order
  std::string bulkhead_binary;        // runs `agent` and `lab serve`
  std::string run_dir = kDefaultRunDir;
  std::chrono::milliseconds agent_timeout{30000};
  bool keep_on_failure = false;  // leave a failed lab for inspection (down removes it)
  // Several hosts only: one `bulkhead server` in the core netns, the agents joined to it and
  // the policies applied over its REST API, instead of standalone agents on the policy dir.
  bool server = false;
};

// Builds the lab. On failure everything made so far is removed (unless keep_on_failure)
// and the error says which step failed. Progress lines go to `progress`.
absl::StatusOr<LabState> Up(const LabSpec& spec, const UpOptions& options,
                            const AgentStatusFn& agent_status, std::ostream& progress);

struct DownReport {
  bool found = false;                 // there was something of this lab
  std::vector<std::string> warnings;  // steps that failed but did not stop the teardown
  std::vector<std::string> left;      // what still exists afterwards (empty: all gone)
};

// Removes everything of lab `names.lab`: CNI DEL for each workload, servers and agent, every
// process still in its namespaces, the namespaces, pins and state dir. Works from the state
// file, and from the naming scheme when there is none (a lab whose `up` was killed early).
// Idempotent.
DownReport Down(const LabNames& names, std::ostream& progress);

// What of lab `names.lab` still exists (netns, pin root, state dir, recorded processes).
std::vector<std::string> Leftovers(const LabNames& names, const std::string& pin_root,
                                   const std::vector<ProcessRecord>& processes);

// The Inventory the agent reads: the lab's namespaces (labels, modes), no workloads (those
// come from bulkhead-cni).
std::string AgentInventoryYaml(const LabSpec& spec);
// An Inventory of namespaces and workloads with their addresses, for `bulkhead simulate` on
// the same policies (the reference evaluator's view of the lab).
std::string ClusterInventoryYaml(const LabSpec& spec, const LabState& state);

// The Inventory of the standalone agent of `host` in a lab with several hosts: the namespaces
// and the other hosts' workloads with `node`, addresses and named ports (its peers).
std::string PeerInventoryYaml(const LabSpec& spec, const LabState& state, const std::string& host);

// The lab's Namespace objects (name, labels) for its server: in server mode namespaces reach
// the agents from the server's set, not from an inventory.
std::string NamespaceObjectsYaml(const LabSpec& spec);

// Server mode: applies the lab's policy directory and its Namespace objects to the lab's
// server (`bulkhead apply --prune` run in the core netns). Returns what apply printed.
absl::StatusOr<std::string> ApplyToServer(const LabNames& names, const LabState& state,
                                          const std::string& bulkhead_binary);

// Host `index`'s link to the core router of a lab with several hosts (CIDRs of the families
// asked for; the layout is in lab_file.h at kUnderlayIpv4).
struct UnderlayLink {
  std::string core_interface;     // in the core netns
  std::vector<std::string> core;  // the core's addresses on it, "100.64.0.1/30"
  std::vector<std::string> host;  // the host's, on its "underlay" interface
};
UnderlayLink Underlay(size_t index, bool v4, bool v6);

// The workloads' CNI network of a one-host lab, of one host, and the loopback network.
nlohmann::json WorkloadConflist(const LabSpec& spec, const LabNames& names);
nlohmann::json HostConflist(const LabNames& names, const HostState& host);
nlohmann::json LoopbackConflist(const LabNames& names);

// CNI_ARGS and the netconf "args" (labels, service account) of one workload.
std::string WorkloadCniArgs(const LabWorkload& w, const std::string& container_id);
nlohmann::json WorkloadNetconfArgs(const LabWorkload& w);

// Default plugin search path: the directory of the bulkhead binary (bulkhead-cni is built
// next to it), then Debian's and the usual CNI directories.
std::vector<std::string> DefaultCniPath(const std::string& bulkhead_binary);

// Resolves --name: the given one, else the only lab that exists.
absl::StatusOr<std::string> ResolveLabName(const std::string& given, const std::string& run_dir);

}  // namespace bulkhead::lab
