// The reports of `bulkhead simulate` (single flow, reachability matrix, connectivity) as
// JSON documents for tools and as aligned text for people. docs/cli.md is their contract.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "cli/text.h"
#include "common/ip.h"
#include "engine/connectivity.h"
#include "engine/evaluator.h"
#include "policy/model.h"

namespace bulkhead::cli {

// Keys keep the order they are written in (the documented order), for people reading JSON.
using Json = nlohmann::ordered_json;

// ---- single flow ----

Json DirectionJson(const engine::DirectionVerdict& v);
Json FlowJson(const engine::Flow& flow, const engine::Verdict& verdict);
std::string FlowText(const engine::Flow& flow, const engine::Verdict& verdict, const Style& style);

// ---- reachability matrix: one port and protocol, every ordered pair of workloads ----

struct MatrixCell {
  bool allowed = false;
  // Allowed only because a workload or policy is in audit/learn mode: enforcement would
  // drop it.
  bool would_deny = false;
};

struct ReachabilityMatrix {
  policy::Protocol protocol = policy::Protocol::kTCP;
  uint16_t port = 0;
  std::vector<std::string> workloads;          // workload ids, sorted
  std::vector<std::vector<MatrixCell>> cells;  // cells[from][to], both indexes into workloads
};

// Evaluates every ordered pair of workloads of `cluster`, each workload with itself too.
ReachabilityMatrix ComputeMatrix(const policy::Cluster& cluster, policy::Protocol protocol,
                                 uint16_t port);
Json MatrixJson(const ReachabilityMatrix& m);
std::string MatrixText(const ReachabilityMatrix& m, const Style& style);

// ---- connectivity ----

// Report entries in a stable order: workload sources before external ranges, workloads
// by id, ranges by address; the same for destinations.
std::vector<engine::ConnectivityEntry> SortedEntries(const engine::ConnectivityReport& report);
Json ConnectivityJson(const engine::ConnectivityReport& report);
std::string ConnectivityText(const engine::ConnectivityReport& report, const Style& style);

// The smallest list of prefixes that covers exactly first..last (same family, first <= last).
std::vector<common::Cidr> RangeToCidrs(const common::IpAddr& first, const common::IpAddr& last);
// A range for people: "10.0.0.0/8" when it is exactly one prefix, else "first-last".
std::string DescribeRange(const common::IpAddr& first, const common::IpAddr& last);
// A connectivity end: the workload id, or DescribeRange of an external range.
std::string DescribeEnd(const engine::ConnEnd& end);

}  // namespace bulkhead::cli
