// bulkhead-cni: a chained CNI plugin (spec 1.0.0, and 0.4.0) that registers each pod's
// netns, interfaces and addresses with the node agent (docs/cni.md). Everything here is pure
// except through `PluginIo`, so that unit tests run the whole plugin without a kernel or an
// agent.
#pragma once

#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "agent/endpoint_registration.h"
#include "nlohmann/json.hpp"

namespace bulkhead::cni {

// Error codes of the CNI specification (1-99), then this plugin's own (100+).
enum ErrorCode : int {
  kIncompatibleVersion = 1,
  kUnsupportedField = 2,
  kUnknownContainer = 3,
  kInvalidEnvironment = 4,  // a CNI_* variable (CNI_ARGS included) is missing or invalid
  kIoFailure = 5,
  kDecodingFailure = 6,  // stdin is not JSON
  kInvalidConfig = 7,    // the network configuration (prevResult included) is invalid
  kTryAgainLater = 11,   // the agent is unreachable, not ready, or did not answer in time
  kAgentRefused = 100,   // the agent refused the endpoint (conflict, cannot enforce)
  kCheckFailed = 101,    // CHECK: not registered, not enforced, or not what prevResult says
};

inline constexpr const char* kSupportedVersions[] = {"0.4.0", "1.0.0"};
inline constexpr const char* kDefaultCniVersion = "1.0.0";
// How long the plugin waits for the agent's answer (an ADD compiles and applies the policy).
inline constexpr int kAgentTimeoutMs = 30000;

struct CniError {
  int code = kInvalidConfig;
  std::string msg;
  std::string details;
  // {"cniVersion", "code", "msg", "details"}
  nlohmann::json ToJson(const std::string& cni_version) const;
};

// The CNI_* environment variables.
struct Environment {
  std::string command;       // CNI_COMMAND
  std::string container_id;  // CNI_CONTAINERID
  std::string netns;         // CNI_NETNS
  std::string ifname;        // CNI_IFNAME
  std::string args;          // CNI_ARGS
  std::string path;          // CNI_PATH
};
Environment ReadEnvironment(const std::function<const char*(const char*)>& get);

// CNI_ARGS: "K=V;K2=V2" (an empty string is no arguments).
absl::StatusOr<std::map<std::string, std::string>> ParseCniArgs(const std::string& text);

// What the plugin reads from its network configuration.
struct NetConf {
  std::string cni_version;
  std::string name;
  std::string type;
  std::string agent_socket;                   // agentSocket (default /run/bulkhead/agent.sock)
  std::map<std::string, std::string> labels;  // args.cni.labels: [{"key","value"}]
  std::string service_account;                // args.bulkhead.serviceAccount (default "default")
  // args.bulkhead.namedPorts: [{"name", "port", "protocol"}], the pod's named container ports.
  std::vector<agent::RegisteredPort> named_ports;
  std::optional<nlohmann::json> prev_result;
};
// Parses stdin; errors are CNI errors (6 not JSON, 7 invalid, 1 unsupported version).
std::optional<CniError> ParseNetConf(const std::string& text, NetConf* out);

// The pod's interfaces and addresses as the plugins before this one report them.
struct PodNetwork {
  std::string container_interface;  // the interface with a sandbox named CNI_IFNAME
  std::string host_interface;       // the host side of its veth
  std::vector<std::string> ips;     // the container interface's addresses, without prefix
};
// Tells the host-side veth from the bridge among interfaces without a sandbox: returns the
// interface's driver ("veth", "bridge", ...) or "" when unknown.
using DriverOf = std::function<std::string(const std::string& ifname)>;
std::optional<CniError> ParsePrevResult(const nlohmann::json& prev, const std::string& ifname,
                                        const DriverOf& driver_of, PodNetwork* out);

// Everything the plugin does outside itself.
struct PluginIo {
  // One request to the agent's API (agent::CallAgent in production).
  std::function<absl::StatusOr<nlohmann::json>(const std::string& socket,
                                               const nlohmann::json& request)>
      call_agent;
  DriverOf driver_of;
};

// One invocation: the command in `env`, the configuration on stdin. Writes what the plugin
// prints on stdout to *out (the result, VERSION's answer, or an error) and returns the exit
// code (0 on success).
int RunPlugin(const Environment& env, const std::string& stdin_text, const PluginIo& io,
              std::string* out);

}  // namespace bulkhead::cni
