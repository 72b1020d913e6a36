// Probes from inside a workload's netns: TCP connects and UDP exchanges with a lab server,
// many at once (non-blocking sockets on one epoll), so a matrix of denied flows costs one
// timeout, not one per flow.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/ip.h"
#include "policy/model.h"

namespace bulkhead::lab {

enum class ProbeOutcome {
  kConnected,    // the right workload answered
  kTimeout,      // no answer in time (what a policy drop looks like)
  kRefused,      // RST or ICMP port unreachable: nothing listens there
  kReset,        // connected, then reset before the answer
  kUnreachable,  // no route / host unreachable
  kWrongPeer,    // something answered, but not the workload that was meant
  kError,        // a local error (socket, namespace)
};
const char* ProbeOutcomeName(ProbeOutcome o);
// Connected means allowed; a wrong answer or a local error is neither allowed nor blocked.
inline bool IsBlocked(ProbeOutcome o) {
  return o == ProbeOutcome::kTimeout || o == ProbeOutcome::kRefused || o == ProbeOutcome::kReset ||
         o == ProbeOutcome::kUnreachable;
}

struct ProbeSpec {
  std::string source_netns;  // path of the source workload's netns; empty: our own
  common::IpAddr dst;
  uint16_t port = 0;
  policy::Protocol protocol = policy::Protocol::kTCP;
  std::string expect;  // the destination workload's id: the answer that proves who replied
};

struct ProbeResult {
  ProbeOutcome outcome = ProbeOutcome::kError;
  std::string detail;  // the answer of a wrong peer, or the error
  double millis = 0;   // until the outcome was known
};

// Runs every probe concurrently (in batches when there are more than open files allow), each
// with `timeout`. UDP datagrams are resent every 200 ms until answered. Results are in the
// order of `probes`.
absl::StatusOr<std::vector<ProbeResult>> RunProbes(const std::vector<ProbeSpec>& probes,
                                                   std::chrono::milliseconds timeout);

}  // namespace bulkhead::lab
