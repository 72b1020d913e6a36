// Connectivity analysis: for every ordered pair of workloads, and between workloads and the
// address ranges outside the cluster, the set of allowed protocols and port ranges.
//
// Computed exactly from the evaluator: the port space of each protocol is cut at every
// boundary that any policy (or a named port) creates, and the outside address space at
// every ipBlock/networks boundary; one representative per piece is evaluated.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "engine/evaluator.h"
#include "policy/model.h"

namespace bulkhead::engine {

// Sorted, disjoint, non-adjacent closed intervals of ports.
using PortIntervals = std::vector<std::pair<uint16_t, uint16_t>>;

struct ConnectionSet {
  std::map<Protocol, PortIntervals> ports;  // TCP, UDP, SCTP (absent: nothing)
  bool other_protocols = false;             // ICMP/ICMPv6 and other portless protocols

  bool IsEmpty() const;
  // Every port of TCP, UDP and SCTP, and other protocols.
  bool IsAll() const;
  // "All Connections", "No Connections", or "SCTP 1-9002,9004-65535,TCP 80,UDP 1-65535"
  // (protocols in alphabetical order; a single port without a dash).
  std::string ToString() const;
  bool operator==(const ConnectionSet&) const = default;
};

// One end of a connectivity entry.
struct ConnEnd {
  const policy::Workload* workload = nullptr;  // set for workloads
  policy::IpAddr first, last;                  // address range outside the cluster
  std::string ToString() const;                // "ns/name" or "A-B"
};

struct ConnectivityEntry {
  ConnEnd src;
  ConnEnd dst;
  ConnectionSet allowed;
};

struct ConnectivityReport {
  // Every ordered pair of distinct workloads, then workload<->external pairs, each with a
  // non-empty `allowed` only when something is allowed (empty entries are kept so that
  // callers can list denied pairs too).
  std::vector<ConnectivityEntry> entries;
};

ConnectivityReport ComputeConnectivity(const policy::Cluster& cluster);

}  // namespace bulkhead::engine
