// A small CNI runtime (spec 1.0.0): runs the plugins of a network configuration list in
// order for ADD (each one's result is the next one's prevResult) and in reverse for DEL, the
// way container runtimes do, so the lab builds workloads through the same chain a node uses.
#pragma once

#include <chrono>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/ip.h"
#include "nlohmann/json.hpp"

namespace bulkhead::lab {

inline constexpr const char* kCniVersion = "1.0.0";

// The runtime's side of one operation on one container.
// nlohmann::json moves are noexcept; clang-tidy 14 cannot see through its invariant check.
// NOLINTNEXTLINE(bugprone-exception-escape)
struct CniRuntime {
  std::string container_id;
  std::string netns;   // path of the container's network namespace
  std::string ifname;  // interface to create in it
  std::string args;    // CNI_ARGS: "K=V;K=V"
  // Inserted as "args" into every plugin's configuration (e.g. args.cni.labels), the
  // runtime-provided arguments of the CNI conventions. Null: none.
  nlohmann::json netconf_args;
};

// One plugin execution: what a PluginExecutor is given.
struct PluginCall {
  std::string plugin;            // type, for messages
  std::string path;              // executable
  std::vector<std::string> env;  // CNI_* variables (and PATH)
  std::string config;            // stdin
};

struct PluginOutput {
  int exit_code = 0;
  std::string out;
  std::string err;
};

// Runs plugin executables. The real one forks and execs inside a network namespace (the
// lab's host); tests use fakes.
class PluginExecutor {
 public:
  virtual ~PluginExecutor() = default;
  virtual absl::StatusOr<PluginOutput> Run(const PluginCall& call) = 0;
};

class ProcessPluginExecutor : public PluginExecutor {
 public:
  // `netns_path` empty: plugins run in our own network namespace.
  explicit ProcessPluginExecutor(std::string netns_path,
                                 std::chrono::milliseconds timeout = std::chrono::seconds(60))
      : netns_path_(std::move(netns_path)), timeout_(timeout) {}
  absl::StatusOr<PluginOutput> Run(const PluginCall& call) override;

 private:
  std::string netns_path_;
  std::chrono::milliseconds timeout_;
};

// A network configuration list (name, cniVersion, plugins).
// NOLINTNEXTLINE(bugprone-exception-escape): as for CniRuntime
class CniNetwork {
 public:
  // Validates the shape: name, cniVersion 1.0.0, a non-empty plugins list whose entries are
  // objects with a string "type".
  static absl::StatusOr<CniNetwork> FromConflist(nlohmann::json conflist);

  const nlohmann::json& conflist() const { return conflist_; }
  const std::string& name() const { return name_; }
  std::vector<std::string> PluginTypes() const;

  // The stdin of plugin `index`: its own configuration plus name, cniVersion, the runtime's
  // args and prevResult (when not null).
  nlohmann::json PluginConfig(size_t index, const CniRuntime& rt,
                              const nlohmann::json& prev_result) const;
  // The environment of a plugin run; `cni_path` is searched for plugins (CNI_PATH).
  static std::vector<std::string> Environment(const std::string& command, const CniRuntime& rt,
                                              const std::vector<std::string>& cni_path);

  // ADD through the whole chain; returns the last plugin's result. On failure the caller
  // runs Del (the spec's cleanup for a failed ADD).
  absl::StatusOr<nlohmann::json> Add(const CniRuntime& rt, const std::vector<std::string>& cni_path,
                                     PluginExecutor& exec) const;
  // DEL in reverse order, every plugin given `prev_result` (the cached ADD result; null when
  // ADD never finished). Every plugin runs even when one fails; the errors are joined.
  absl::Status Del(const CniRuntime& rt, const nlohmann::json& prev_result,
                   const std::vector<std::string>& cni_path, PluginExecutor& exec) const;

 private:
  absl::StatusOr<nlohmann::json> RunPlugin(size_t index, const std::string& command,
                                           const CniRuntime& rt, const nlohmann::json& prev,
                                           const std::vector<std::string>& cni_path,
                                           PluginExecutor& exec) const;

  nlohmann::json conflist_;
  std::string name_;
};

// The executable for plugin `type`: the first `dir/type` that is an executable file.
absl::StatusOr<std::string> FindPlugin(const std::string& type,
                                       const std::vector<std::string>& dirs);

// A failed plugin run as a status: the CNI error object's code, msg and details when the
// plugin printed one, else its exit code and stderr.
absl::Status PluginFailure(const std::string& plugin, const std::string& command,
                           const PluginOutput& output);

// What the lab needs from an ADD result (CNI 1.0 result: interfaces, ips).
struct CniAddresses {
  std::vector<common::IpAddr> ips;  // of the container interface, in result order
  std::string host_interface;       // the host end of the container's veth
};
// Reads the container's addresses (ips whose interface is in `netns`) and the host-side
// interface (an interface without sandbox that is not `bridge`).
absl::StatusOr<CniAddresses> ParseAddResult(const nlohmann::json& result, const std::string& netns,
                                            const std::string& bridge);

}  // namespace bulkhead::lab
