// What a lab has made, recorded in /run/bulkhead/lab/NAME/state.json before each thing is
// made, so that `lab down` can undo any lab, also one whose `up` was killed halfway.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "lab/lab_file.h"
#include "lab/netns.h"
#include "lab/process.h"
#include "nlohmann/json.hpp"

namespace bulkhead::lab {

inline constexpr const char* kDefaultRunDir = "/run/bulkhead/lab";
inline constexpr const char* kDefaultPinParent = "/sys/fs/bpf/bulkhead";

// Names and paths derived from a lab's name. Every netns of lab NAME starts with
// "bhlab-NAME_" (lab names have no '_'), so leftovers are found even without a state file.
struct LabNames {
  std::string lab;
  std::string run_dir;  // parent of every lab's state dir

  std::string StateDir() const;
  std::string StatePath() const;  // state.json
  std::string LockPath() const;
  std::string LabCopyPath() const;      // lab.yaml: the lab file as it was brought up
  std::string InventoryPath() const;    // the agent's Inventory: namespaces only
  std::string ClusterPath() const;      // Inventory with the workloads and their IPs (simulate)
  std::string NetConflistPath() const;  // the workloads' CNI network
  std::string AgentStateDir() const;
  std::string AgentSocket() const;
  std::string AgentLog() const;
  std::string IpamDir() const;
  std::string ServerLog(const std::string& workload_id) const;
  std::string NetnsPrefix() const;  // "bhlab-NAME_"
  std::string HostNetns() const;    // the host of a one-host lab: "bhlab-NAME_host"
  std::string CoreNetns() const;    // the underlay's router of a lab with several hosts
  // A host's netns, files and pins: a one-host lab keeps the paths above (agent.sock, ...);
  // with several hosts each has its own under STATE/hosts/HOST/ and PINS/HOST.
  struct HostPaths {
    std::string netns, agent_socket, agent_state_dir, agent_log, inventory, conflist, ipam_dir,
        pin_root;
  };
  HostPaths ForHost(const std::string& host, bool multi_host, const std::string& pin_root) const;
  std::string WorkloadNetns(const std::string& workload_id) const;
  std::string ContainerId(const std::string& workload_id) const;
  std::string Bridge() const;          // at most 15 characters
  std::string DefaultPinRoot() const;  // /sys/fs/bpf/bulkhead/lab-NAME
};

struct WorkloadState {
  std::string id;    // namespace/name
  std::string host;  // the lab host it runs on
  std::vector<LabPort> ports;
  std::string netns;  // name under /run/netns
  std::string container_id;
  std::string ifname = "eth0";
  std::string cni_args;         // CNI_ARGS
  nlohmann::json netconf_args;  // "args" given to every plugin
  bool netns_created = false;   // set before the netns is made
  bool cni_added = false;       // set before ADD runs: DEL must run
  nlohmann::json cni_result;    // the chain's ADD result (prevResult of DEL)
  std::vector<std::string> ips;
  std::string host_interface;
  ProcessRecord server;
};

// A lab host: its netns, bridge, agent and files.
struct HostState {
  std::string name;
  std::string netns;
  std::string bridge;
  std::string pin_root;
  std::string agent_socket;
  std::string agent_state_dir;
  std::string agent_log;
  std::string inventory;  // the agent's Inventory
  std::string conflist;   // the workloads' CNI network on this host
  std::string ipam_dir;
  std::vector<std::string> subnets;  // its pod subnets (its share of the lab's)
  // Several hosts: its end of the underlay link ("underlay", CIDRs) and the core's end
  // (core_interface in the core netns), which the host routes through.
  std::vector<std::string> underlay;
  std::string core_interface;
  std::vector<std::string> core_addresses;
  bool netns_created = false;  // set before the netns is made
  ProcessRecord agent;
};

struct LabState {
  std::string name;
  std::string phase;  // "building", "up"
  std::string lab_file;
  std::string policies;
  std::string pin_root;  // the lab's; a host's pins are under it when there are several
  std::vector<std::string> cni_path;
  bool bpffs_mounted = false;  // this lab mounted bpffs on /sys/fs/bpf (left mounted by down)
  std::string core_netns;      // empty in a one-host lab
  bool core_created = false;
  // "standalone" (agents on the policy dir) or "server" (one `bulkhead server` in the core
  // netns; its data dir, REST URL there, the agents' address, pid).
  std::string control_plane = "standalone";
  std::string server_dir;
  std::string server_url;
  std::string server_agents_address;
  ProcessRecord server;
  std::vector<HostState> hosts;
  std::vector<WorkloadState> workloads;

  WorkloadState* FindWorkload(std::string_view id);
  const WorkloadState* FindWorkload(std::string_view id) const;
  HostState* FindHost(std::string_view name);
  const HostState* FindHost(std::string_view name) const;
};

nlohmann::json StateToJson(const LabState& s);
absl::StatusOr<LabState> StateFromJson(const nlohmann::json& j);

absl::StatusOr<LabState> LoadState(const LabNames& names);
// Atomically replaces state.json (write to a temporary file, then rename).
absl::Status SaveState(const LabNames& names, const LabState& s);

// The names of the labs that have a state dir under `run_dir`, sorted.
std::vector<std::string> ListLabs(const std::string& run_dir);

// An exclusive lock on a lab (flock on its lock file), released on destruction. Held by `up`
// for its whole run and by `down`, so the two never interleave.
class LabLock {
 public:
  // Waits up to `wait_ms` for the lock.
  static absl::StatusOr<LabLock> Acquire(const std::string& path, int wait_ms);

 private:
  explicit LabLock(Fd fd) : fd_(std::move(fd)) {}
  Fd fd_;
};

// Writes `content` to `path` through a temporary file and a rename.
absl::Status WriteFileAtomic(const std::string& path, std::string_view content);

}  // namespace bulkhead::lab
