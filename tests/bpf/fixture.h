// Test fixture for the datapath: a loaded BpfDatapath in a sandbox, two endpoints and a policy.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "datapath/bpf_datapath.h"
#include "packet.h"

namespace bulkhead::bpftest {

using datapath::BpfDatapath;
using datapath::Program;

// Compiler-ABI entries written by hand: what PolicyCompiler would emit for small policies.
std::pair<bulkhead_policy_peer_key, bulkhead_policy_peer_value> PeerEntry(uint32_t table,
                                                                          uint32_t identity,
                                                                          uint8_t direction,
                                                                          uint32_t class_id);
struct PortVerdict {
  uint8_t verdict = BULKHEAD_VERDICT_DENY;
  uint32_t rule_id = BULKHEAD_RULE_NONE;
  uint8_t tier = BULKHEAD_TIER_NAMESPACE;
  uint8_t reason = BULKHEAD_REASON_ISOLATED;
  uint8_t flags = 0;
};
PortVerdict Allow(uint32_t rule_id);
PortVerdict Deny(uint32_t rule_id, uint8_t reason = BULKHEAD_REASON_RULE);
// An entry for ports whose top `bits` bits equal those of `port` (bits 0: every port).
std::pair<bulkhead_policy_port_key, bulkhead_policy_port_value> PortEntry(
    uint32_t table, uint32_t class_id, uint8_t direction, uint8_t protocol, uint16_t port, int bits,
    const PortVerdict& v);
std::pair<bulkhead_ipcache_key, bulkhead_ipcache_value> IpcacheEntry(const std::string& cidr_addr,
                                                                     int prefix, uint32_t identity);

// The standard scene (every test starts from it unless it changes it):
//   endpoint A: veth bh-a, identity 1000, table 10, 10.0.0.1 and fd00::1, enforce;
//   endpoint B: veth bh-b, identity 1001, table 11, 10.0.0.2 and fd00::2, enforce;
//   ipcache: A's and B's addresses; 198.51.100.0/24 -> CIDR identity 0x1000001.
//   Table 10 (A) egress: to B (class 1) TCP 80, TCP 8000-8001, UDP 53, SCTP 3868, ICMP and
//     ICMPv6 allowed (rules 11..15); to the CIDR (class 2) UDP 53 allowed (rule 16);
//     everything else denied as isolated. Ingress: TCP 443 from B allowed (rule 21),
//     everything else denied by a DefaultDeny (rule 99).
//   Table 11 (B) ingress: TCP 80 from A allowed (rule 31), the rest denied (isolated);
//     egress: everything allowed by default.
class DatapathTest : public ::testing::Test {
 protected:
  static constexpr const char* kA = "10.0.0.1";
  static constexpr const char* kB = "10.0.0.2";
  static constexpr const char* kA6 = "fd00::1";
  static constexpr const char* kB6 = "fd00::2";
  static constexpr const char* kCidrPeer = "198.51.100.7";
  static constexpr const char* kWorld = "192.0.2.7";
  static constexpr uint32_t kIdA = 1000, kIdB = 1001, kIdCidr = 0x1000001;
  static constexpr uint32_t kTableA = 10, kTableB = 11;

  void SetUp() override;
  void TearDown() override;

  // Loads (or adopts) the datapath at this test's pin root.
  absl::StatusOr<std::unique_ptr<BpfDatapath>> OpenDatapath();
  void InstallScene();
  static datapath::PolicyTables TableA(uint32_t table_id);
  static datapath::PolicyTables TableB(uint32_t table_id);

  // Runs a frame through a program; a failure of the run itself fails the test.
  int Run(Program program, uint32_t ifindex, const std::vector<uint8_t>& frame);
  int FromA(const Packet& p) { return Run(Program::kFromWorkload, if_a_, Frame(p)); }
  int ToA(const Packet& p) { return Run(Program::kToWorkload, if_a_, Frame(p)); }
  int FromB(const Packet& p) { return Run(Program::kFromWorkload, if_b_, Frame(p)); }
  int ToB(const Packet& p) { return Run(Program::kToWorkload, if_b_, Frame(p)); }

  std::vector<bh_flow_event> Events();
  uint64_t Counter(int index);
  std::vector<std::pair<bh_ct_key, bh_ct_entry>> Conntrack();
  datapath::Endpoint EndpointA() const;
  datapath::Endpoint EndpointB() const;

  datapath::DatapathOptions options_;
  std::string pin_root_;
  uint32_t if_a_ = 0, if_b_ = 0, if_c_ = 0;
  std::unique_ptr<BpfDatapath> dp_;
};

// Event matchers' helpers.
std::string Describe(const bh_flow_event& e);
Ip EventSrc(const bh_flow_event& e);
Ip EventDst(const bh_flow_event& e);

}  // namespace bulkhead::bpftest
