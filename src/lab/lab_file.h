// The Lab file (`kind: Lab`): namespaces and workloads that `bulkhead lab up` builds in network
// namespaces, decoded with the policy loader's positioned YAML readers (docs/lab.md).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/ip.h"
#include "policy/loader.h"
#include "policy/model.h"

namespace bulkhead::lab {

// A port a workload's server listens on (TCP, UDP, or SCTP emulated on a raw socket), with
// its optional name (a Kubernetes container port name, what a policy's named port resolves to).
struct LabPort {
  uint16_t port = 0;
  policy::Protocol protocol = policy::Protocol::kTCP;
  std::string name;  // IANA_SVC_NAME, unique in the workload; empty: unnamed
  bool operator==(const LabPort&) const = default;
  // The same socket (port and protocol), whatever the names.
  bool SameSocket(const LabPort& o) const { return port == o.port && protocol == o.protocol; }
};

struct LabNamespace {
  std::string name;
  policy::Labels labels;  // as written (the agent adds kubernetes.io/metadata.name)
  std::optional<policy::Mode> mode;
};

struct LabWorkload {
  std::string namespace_name;
  std::string name;
  policy::Labels labels;
  std::string service_account = "default";
  std::vector<LabPort> ports;
  std::string host;  // the lab host it runs on (spec.hosts; set for every workload)

  std::string Id() const { return namespace_name + "/" + name; }
};

// Defaults of spec.ipv4Subnet and spec.ipv6Subnet. Every lab has its own host network
// namespace, so labs may all use the same ranges.
inline constexpr std::string_view kDefaultIpv4Subnet = "10.210.0.0/24";
inline constexpr std::string_view kDefaultIpv6Subnet = "fd00:b4:1ab::/64";

// A lab host: a network namespace with its own bridge, agent and workloads, and its share of
// the lab's subnets (the whole subnets when the lab has one host).
struct LabHost {
  std::string name;
  std::optional<common::Cidr> ipv4_subnet;
  std::optional<common::Cidr> ipv6_subnet;
};

// spec.hosts: at most this many hosts, host names at most this long (they go into netns
// names and state paths; the agent's socket path must stay under 108 bytes).
inline constexpr size_t kMaxHosts = 64;
inline constexpr size_t kMaxHostNameLength = 20;
// The name of the one host of a lab without spec.hosts.
inline constexpr std::string_view kDefaultHostName = "host";

// The underlay of a lab with several hosts: host i (0-based) and the core router share the
// point-to-point link i, 100.64.0.4i/30 (core .4i+1, host .4i+2) and fd00:b4:ff:i::/64
// (core ::1, host ::2). The lab's subnets must not overlap these ranges.
inline constexpr std::string_view kUnderlayIpv4 = "100.64.0.0/24";
inline constexpr std::string_view kUnderlayIpv6 = "fd00:b4:ff::/48";

// How many prefix bits the hosts' shares add to the lab's subnet: the smallest power of two
// that is at least `hosts` (0 for one host).
int HostSplitBits(size_t hosts);
// Share `index` of `subnet` split into 2^bits equal parts.
common::Cidr SplitSubnet(const common::Cidr& subnet, int bits, size_t index);

// Lab names are DNS-1123 labels of at most this length: they go into netns names, the
// state path and the agent's socket path (108 bytes at most).
inline constexpr size_t kMaxLabNameLength = 32;

struct LabSpec {
  std::string file;  // where it was read from
  std::string name;  // metadata.name
  // A family is served when its subnet is set (spec.ipFamilies; both by default).
  std::optional<common::Cidr> ipv4_subnet;
  std::optional<common::Cidr> ipv6_subnet;
  std::optional<policy::Mode> mode;  // default mode of namespaces that set none
  std::vector<LabNamespace> namespaces;
  std::vector<LabWorkload> workloads;
  // spec.hosts, at least one; without spec.hosts one host named "host" (kDefaultHostName).
  std::vector<LabHost> hosts;

  // Several hosts: a core router netns, an underlay and one agent per host.
  bool MultiHost() const { return hosts.size() > 1; }
  const LabWorkload* FindWorkload(std::string_view id) const;
  const LabHost* FindHost(std::string_view name) const;
  // The effective mode of a namespace: its own, else the lab's, else none (agent default).
  std::optional<policy::Mode> NamespaceMode(const LabNamespace& ns) const;
};

struct LabParseResult {
  LabSpec spec;
  std::vector<policy::Diagnostic> diagnostics;
  bool ok() const;
};

// Reads and validates a lab file. Every problem is a diagnostic naming file, line:column,
// the object and the field; when any is an error, `spec` must not be used.
LabParseResult ParseLabFile(const std::string& path);
LabParseResult ParseLab(std::string_view content, std::string_view file_name);

// Empty when `name` can name a lab, else what is wrong.
std::string CheckLabName(std::string_view name);

}  // namespace bulkhead::lab
