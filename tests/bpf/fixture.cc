// Test fixture for the datapath: sandbox, loader at a per-test pin root, the standard scene.
#include "fixture.h"

#include <arpa/inet.h>

#include <iostream>

#include "absl/strings/str_cat.h"
#include "sandbox.h"

namespace bulkhead::bpftest {

using datapath::Endpoint;
using datapath::EndpointAddress;
using datapath::PolicyTables;

std::pair<bulkhead_policy_peer_key, bulkhead_policy_peer_value> PeerEntry(uint32_t table,
                                                                          uint32_t identity,
                                                                          uint8_t direction,
                                                                          uint32_t class_id) {
  bulkhead_policy_peer_key k{};
  k.table_id = table;
  k.peer_identity = identity;
  k.direction = direction;
  bulkhead_policy_peer_value v{};
  v.class_id = class_id;
  return {k, v};
}

PortVerdict Allow(uint32_t rule_id) {
  PortVerdict v;
  v.verdict = BULKHEAD_VERDICT_ALLOW;
  v.rule_id = rule_id;
  v.reason = BULKHEAD_REASON_RULE;
  return v;
}

PortVerdict Deny(uint32_t rule_id, uint8_t reason) {
  PortVerdict v;
  v.verdict = BULKHEAD_VERDICT_DENY;
  v.rule_id = rule_id;
  v.reason = reason;
  return v;
}

std::pair<bulkhead_policy_port_key, bulkhead_policy_port_value> PortEntry(
    uint32_t table, uint32_t class_id, uint8_t direction, uint8_t protocol, uint16_t port, int bits,
    const PortVerdict& v) {
  bulkhead_policy_port_key k{};
  k.prefixlen = BULKHEAD_PORT_PREFIX_BASE + static_cast<uint32_t>(bits);
  k.table_id = table;
  k.class_id = class_id;
  k.direction = direction;
  k.protocol = protocol;
  k.port = htons(port);
  bulkhead_policy_port_value val{};
  val.verdict = v.verdict;
  val.tier = v.tier;
  val.flags = v.flags;
  val.reason = v.reason;
  val.rule_id = v.rule_id;
  return {k, val};
}

std::pair<bulkhead_ipcache_key, bulkhead_ipcache_value> IpcacheEntry(const std::string& addr,
                                                                     int prefix,
                                                                     uint32_t identity) {
  Ip ip = Ip::Parse(addr);
  bulkhead_ipcache_key k{};
  k.prefixlen = BULKHEAD_IPCACHE_PREFIX_BASE + static_cast<uint32_t>(prefix);
  k.family = ip.family;
  std::copy(ip.bytes.begin(), ip.bytes.end(), k.addr);
  bulkhead_ipcache_value v{};
  v.identity = identity;
  v.flags = BULKHEAD_IPCACHE_F_WORKLOAD;
  return {k, v};
}

void DatapathTest::SetUp() {
  if (!IsRoot()) {
    std::cerr << "\n*** bpf tests SKIPPED: they load eBPF programs and need root "
                 "(CAP_BPF, CAP_NET_ADMIN, CAP_SYS_ADMIN). CI runs them as root. ***\n\n";
    GTEST_SKIP() << "bpf tests need root";
  }
  absl::Status sandbox = EnterSandbox();
  ASSERT_TRUE(sandbox.ok()) << sandbox;
  for (auto [name, out] : {std::pair{"bh-a", &if_a_}, {"bh-b", &if_b_}, {"bh-c", &if_c_}}) {
    auto idx = Veth(name);
    ASSERT_TRUE(idx.ok()) << idx.status();
    *out = *idx;
  }
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  // bpffs refuses names with dots.
  pin_root_ =
      absl::StrCat("/sys/fs/bpf/bulkhead-test/", info->test_suite_name(), "_", info->name());
  options_.pin_root = pin_root_;
  // Small maps: creation is faster and nothing here needs more.
  options_.sizes.ipcache = 1024;
  options_.sizes.policy_peers = 4096;
  options_.sizes.policy_ports = 4096;
  options_.sizes.endpoints = 64;
  options_.sizes.endpoint_addresses = 256;
  options_.sizes.conntrack = 4096;
  options_.sizes.fragments = 256;
  options_.sizes.events_bytes = 1 << 20;
  auto dp = OpenDatapath();
  ASSERT_TRUE(dp.ok()) << dp.status();
  dp_ = std::move(*dp);
  ASSERT_FALSE(dp_->adopted()) << "a fresh pin root must not hold maps: " << pin_root_;
  InstallScene();
}

void DatapathTest::TearDown() {
  if (dp_) {
    absl::Status s = dp_->Teardown();
    EXPECT_TRUE(s.ok()) << s;
    dp_.reset();
  }
}

absl::StatusOr<std::unique_ptr<BpfDatapath>> DatapathTest::OpenDatapath() {
  return BpfDatapath::Open(options_);
}

Endpoint DatapathTest::EndpointA() const {
  Endpoint a;
  a.ifindex = if_a_;
  a.endpoint_id = 1;
  a.identity = kIdA;
  a.policy_table_id = kTableA;
  a.policy_generation = 1;
  a.addresses = {EndpointAddress::V6(Ip::Parse(kA6).bytes)};
  EndpointAddress v4;
  v4.family = BULKHEAD_FAMILY_IPV4;
  v4.addr = Ip::Parse(kA).bytes;
  a.addresses.push_back(v4);
  return a;
}

Endpoint DatapathTest::EndpointB() const {
  Endpoint b;
  b.ifindex = if_b_;
  b.endpoint_id = 2;
  b.identity = kIdB;
  b.policy_table_id = kTableB;
  b.policy_generation = 1;
  EndpointAddress v4;
  v4.family = BULKHEAD_FAMILY_IPV4;
  v4.addr = Ip::Parse(kB).bytes;
  b.addresses = {v4, EndpointAddress::V6(Ip::Parse(kB6).bytes)};
  return b;
}

PolicyTables DatapathTest::TableA(uint32_t t) {
  constexpr uint8_t E = BULKHEAD_DIR_EGRESS, I = BULKHEAD_DIR_INGRESS;
  PolicyTables tables;
  tables.peers = {PeerEntry(t, kIdB, E, 1), PeerEntry(t, kIdB, I, 1), PeerEntry(t, kIdCidr, E, 2)};
  for (uint32_t cls : {0u, 1u, 2u}) {
    for (uint8_t proto : {kTcp, kUdp, kSctp, kIcmp, kIcmp6}) {
      tables.ports.push_back(
          PortEntry(t, cls, E, proto, 0, 0, Deny(BULKHEAD_RULE_NONE, BULKHEAD_REASON_ISOLATED)));
      tables.ports.push_back(
          PortEntry(t, cls, I, proto, 0, 0, Deny(99, BULKHEAD_REASON_DEFAULT_DENY)));
    }
  }
  tables.ports.push_back(PortEntry(t, 1, E, kTcp, 80, 16, Allow(11)));
  tables.ports.push_back(PortEntry(t, 1, E, kTcp, 8000, 15, Allow(12)));  // 8000-8001
  tables.ports.push_back(PortEntry(t, 1, E, kUdp, 53, 16, Allow(13)));
  tables.ports.push_back(PortEntry(t, 1, E, kSctp, 3868, 16, Allow(14)));
  tables.ports.push_back(PortEntry(t, 1, E, kIcmp, 0, 0, Allow(15)));
  tables.ports.push_back(PortEntry(t, 1, E, kIcmp6, 0, 0, Allow(15)));
  tables.ports.push_back(PortEntry(t, 2, E, kUdp, 53, 16, Allow(16)));
  tables.ports.push_back(PortEntry(t, 1, I, kTcp, 443, 16, Allow(21)));
  return tables;
}

PolicyTables DatapathTest::TableB(uint32_t t) {
  constexpr uint8_t E = BULKHEAD_DIR_EGRESS, I = BULKHEAD_DIR_INGRESS;
  PolicyTables tables;
  tables.peers = {PeerEntry(t, kIdA, I, 1)};
  PortVerdict default_allow = Allow(BULKHEAD_RULE_NONE);
  default_allow.tier = BULKHEAD_TIER_DEFAULT;
  default_allow.reason = BULKHEAD_REASON_DEFAULT_ALLOW;
  for (uint32_t cls : {0u, 1u}) {
    for (uint8_t proto : {kTcp, kUdp, kSctp, kIcmp, kIcmp6}) {
      tables.ports.push_back(PortEntry(t, cls, E, proto, 0, 0, default_allow));
      tables.ports.push_back(
          PortEntry(t, cls, I, proto, 0, 0, Deny(BULKHEAD_RULE_NONE, BULKHEAD_REASON_ISOLATED)));
    }
  }
  tables.ports.push_back(PortEntry(t, 1, I, kTcp, 80, 16, Allow(31)));
  return tables;
}

void DatapathTest::InstallScene() {
  ASSERT_TRUE(dp_->UpsertIpcache({IpcacheEntry(kA, 32, kIdA), IpcacheEntry(kB, 32, kIdB),
                                  IpcacheEntry(kA6, 128, kIdA), IpcacheEntry(kB6, 128, kIdB),
                                  IpcacheEntry("198.51.100.0", 24, kIdCidr)})
                  .ok());
  absl::Status s = dp_->WritePolicyTables(TableA(kTableA));
  ASSERT_TRUE(s.ok()) << s;
  s = dp_->WritePolicyTables(TableB(kTableB));
  ASSERT_TRUE(s.ok()) << s;
  s = dp_->UpsertEndpoint(EndpointA());
  ASSERT_TRUE(s.ok()) << s;
  s = dp_->UpsertEndpoint(EndpointB());
  ASSERT_TRUE(s.ok()) << s;
}

int DatapathTest::Run(Program program, uint32_t ifindex, const std::vector<uint8_t>& frame) {
  auto r = dp_->TestRun(program, ifindex, frame);
  EXPECT_TRUE(r.ok()) << r.status();
  return r.ok() ? *r : -1000;
}

std::vector<bh_flow_event> DatapathTest::Events() {
  std::vector<bh_flow_event> out;
  auto n = dp_->PollEvents(0, [&](const bh_flow_event& e) { out.push_back(e); });
  EXPECT_TRUE(n.ok()) << n.status();
  return out;
}

uint64_t DatapathTest::Counter(int index) {
  auto c = dp_->ReadCounters();
  EXPECT_TRUE(c.ok()) << c.status();
  return c.ok() ? (*c)[index] : ~0ull;
}

std::vector<std::pair<bh_ct_key, bh_ct_entry>> DatapathTest::Conntrack() {
  auto c = dp_->ListConntrack();
  EXPECT_TRUE(c.ok()) << c.status();
  return c.ok() ? *c : std::vector<std::pair<bh_ct_key, bh_ct_entry>>{};
}

Ip EventSrc(const bh_flow_event& e) {
  Ip ip;
  ip.family = e.family;
  std::copy(std::begin(e.src_addr), std::end(e.src_addr), ip.bytes.begin());
  return ip;
}

Ip EventDst(const bh_flow_event& e) {
  Ip ip;
  ip.family = e.family;
  std::copy(std::begin(e.dst_addr), std::end(e.dst_addr), ip.bytes.begin());
  return ip;
}

std::string Describe(const bh_flow_event& e) {
  return absl::StrCat("event{kind=", e.kind, " verdict=", e.verdict, " drop=", e.drop_reason,
                      " dir=", e.direction, " proto=", e.protocol, " ", EventSrc(e).ToString(), ":",
                      e.src_port, " -> ", EventDst(e).ToString(), ":", e.dst_port,
                      " peer=", e.peer_identity, " rule=", e.rule_id, " tier=", e.tier,
                      " policy_verdict=", e.policy_verdict, " ep=", e.endpoint_id, "}");
}

}  // namespace bulkhead::bpftest
