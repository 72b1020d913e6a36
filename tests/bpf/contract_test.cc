// One IDatapath contract, run against BpfDatapath (kernel, root) and FakeDatapath (memory).
#include <gtest/gtest.h>
#include <linux/pkt_cls.h>
#include <poll.h>

#include <algorithm>
#include <array>
#include <memory>
#include <ostream>

#include "absl/strings/str_cat.h"
#include "datapath/bpf_datapath.h"
#include "datapath/fake_datapath.h"
#include "fixture.h"
#include "sandbox.h"

namespace bulkhead::bpftest {
namespace {

using datapath::Endpoint;
using datapath::EndpointAddress;
using datapath::FlowQuery;
using datapath::IDatapath;
using datapath::PolicyTables;

enum class Impl { kFake, kBpf };
void PrintTo(Impl impl, std::ostream* os) { *os << (impl == Impl::kFake ? "Fake" : "Bpf"); }

// Small capacities, the same for both, so that running out of room is part of the contract.
datapath::MapSizes SmallSizes() {
  datapath::MapSizes z;
  z.ipcache = 16;
  z.policy_peers = 8;
  z.policy_ports = 16;
  z.endpoints = 4;
  z.endpoint_addresses = 8;
  z.conntrack = 1024;
  z.events_bytes = 1 << 16;
  return z;
}

class ContractTest : public ::testing::TestWithParam<Impl> {
 protected:
  void SetUp() override {
    if (GetParam() == Impl::kFake) {
      dp_ = std::make_unique<datapath::FakeDatapath>(SmallSizes());
      ifindex_ = {101, 102, 103};
      return;
    }
    if (!IsRoot()) GTEST_SKIP() << "the kernel half of the contract needs root";
    absl::Status s = EnterSandbox();
    ASSERT_TRUE(s.ok()) << s;
    for (int i = 0; i < 3; i++) {
      auto idx = Veth(absl::StrCat("bh-k", i));
      ASSERT_TRUE(idx.ok()) << idx.status();
      ifindex_[i] = *idx;
    }
    datapath::DatapathOptions o;
    o.pin_root = absl::StrCat("/sys/fs/bpf/bulkhead-contract/",
                              ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::replace(o.pin_root.begin(), o.pin_root.end(), '.', '_');
    o.sizes = SmallSizes();
    auto dp = BpfDatapath::Open(o);
    ASSERT_TRUE(dp.ok()) << dp.status();
    bpf_ = dp->get();
    dp_ = std::move(*dp);
  }

  void TearDown() override {
    if (bpf_) {
      absl::Status s = bpf_->Teardown();
      EXPECT_TRUE(s.ok()) << s;
    }
  }

  IDatapath& Datapath() { return *dp_; }
  uint32_t ifindex(int i) const { return ifindex_[i]; }

  Endpoint MakeEndpoint(int i, uint32_t table) {
    Endpoint e;
    e.ifindex = ifindex(i);
    e.endpoint_id = static_cast<uint32_t>(i + 1);
    e.identity = 1000 + static_cast<uint32_t>(i);
    e.policy_table_id = table;
    e.policy_generation = 1;
    e.addresses = {EndpointAddress::V4({10, 0, 0, static_cast<uint8_t>(i + 1)})};
    return e;
  }

  std::unique_ptr<IDatapath> dp_;
  BpfDatapath* bpf_ = nullptr;  // dp_ when it is the kernel one
  std::array<uint32_t, 3> ifindex_{};
};

INSTANTIATE_TEST_SUITE_P(Fake, ContractTest, ::testing::Values(Impl::kFake));
INSTANTIATE_TEST_SUITE_P(Bpf, ContractTest, ::testing::Values(Impl::kBpf));

TEST_P(ContractTest, EndpointsRoundTrip) {
  IDatapath& dp = Datapath();
  Endpoint e = MakeEndpoint(0, 7);
  e.addresses = {EndpointAddress::V6(Ip::Parse("fd00::1").bytes),
                 EndpointAddress::V4({10, 0, 0, 9}), EndpointAddress::V4({10, 0, 0, 1}),
                 EndpointAddress::V4({10, 0, 0, 1})};
  e.mode = datapath::Mode::kAudit;
  e.allow_on_miss = true;
  ASSERT_TRUE(dp.UpsertEndpoint(e).ok());
  ASSERT_TRUE(dp.UpsertEndpoint(MakeEndpoint(1, 8)).ok());

  auto list = dp.ListEndpoints();
  ASSERT_TRUE(list.ok());
  ASSERT_EQ(list->size(), 2u);
  const Endpoint& got = (*list)[0].ifindex == ifindex(0) ? (*list)[0] : (*list)[1];
  EXPECT_EQ(got.identity, 1000u);
  EXPECT_EQ(got.endpoint_id, 1u);
  EXPECT_EQ(got.policy_table_id, 7u);
  EXPECT_EQ(got.mode, datapath::Mode::kAudit);
  EXPECT_TRUE(got.allow_on_miss);
  EXPECT_TRUE(got.antispoof);
  std::vector<EndpointAddress> want = {EndpointAddress::V4({10, 0, 0, 1}),
                                       EndpointAddress::V4({10, 0, 0, 9}),
                                       EndpointAddress::V6(Ip::Parse("fd00::1").bytes)};
  EXPECT_EQ(got.addresses, want) << "sorted, without duplicates";

  e.addresses = {EndpointAddress::V4({10, 0, 0, 2})};
  ASSERT_TRUE(dp.UpsertEndpoint(e).ok());
  list = dp.ListEndpoints();
  ASSERT_TRUE(list.ok());
  for (const Endpoint& ep : *list) {
    if (ep.ifindex == ifindex(0)) {
      EXPECT_EQ(ep.addresses, e.addresses);
    }
  }

  ASSERT_TRUE(dp.DeleteEndpoint(ifindex(0)).ok());
  ASSERT_TRUE(dp.DeleteEndpoint(ifindex(0)).ok());
  list = dp.ListEndpoints();
  ASSERT_TRUE(list.ok());
  ASSERT_EQ(list->size(), 1u);
  EXPECT_EQ((*list)[0].ifindex, ifindex(1));
}

TEST_P(ContractTest, SwitchPolicyAndTableLifecycle) {
  IDatapath& dp = Datapath();
  EXPECT_EQ(dp.SwitchPolicy(ifindex(0), 5, 2).code(), absl::StatusCode::kNotFound);
  PolicyTables t5;
  t5.peers = {PeerEntry(5, 1001, BULKHEAD_DIR_EGRESS, 1)};
  t5.ports = {PortEntry(5, 1, BULKHEAD_DIR_EGRESS, kTcp, 80, 16, Allow(1))};
  PolicyTables t6 = t5;
  t6.peers[0].first.table_id = 6;
  t6.ports[0].first.table_id = 6;
  ASSERT_TRUE(dp.WritePolicyTables(t5).ok());
  ASSERT_TRUE(dp.WritePolicyTables(t6).ok());
  ASSERT_TRUE(dp.UpsertEndpoint(MakeEndpoint(0, 5)).ok());
  auto ids = dp.ListPolicyTables();
  ASSERT_TRUE(ids.ok());
  EXPECT_EQ(*ids, (std::vector<uint32_t>{5, 6}));

  EXPECT_EQ(dp.DeletePolicyTables({5}).code(), absl::StatusCode::kFailedPrecondition);
  ASSERT_TRUE(dp.SwitchPolicy(ifindex(0), 6, 2).ok());
  auto list = dp.ListEndpoints();
  ASSERT_TRUE(list.ok());
  ASSERT_EQ(list->size(), 1u);
  EXPECT_EQ((*list)[0].policy_table_id, 6u);
  EXPECT_EQ((*list)[0].policy_generation, 2u);
  ASSERT_TRUE(dp.DeletePolicyTables({5}).ok());
  ids = dp.ListPolicyTables();
  ASSERT_TRUE(ids.ok());
  EXPECT_EQ(*ids, (std::vector<uint32_t>{6}));
}

TEST_P(ContractTest, BadInputAppliesNothing) {
  IDatapath& dp = Datapath();
  PolicyTables t;
  t.ports = {PortEntry(9, 0, BULKHEAD_DIR_EGRESS, kTcp, 0, 0, Allow(1)),
             PortEntry(9, 0, 3 /* no such direction */, kTcp, 0, 0, Allow(1))};
  absl::Status s = dp.WritePolicyTables(t);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("entry 1"), std::string::npos) << s;
  auto ids = dp.ListPolicyTables();
  ASSERT_TRUE(ids.ok());
  EXPECT_TRUE(ids->empty()) << "the good entry was not written either";

  ASSERT_TRUE(dp.UpsertEndpoint(MakeEndpoint(0, 9)).ok());
  auto bad = IpcacheEntry("10.1.0.0", 16, 77);
  bad.first.family = 9;
  s = dp.UpsertIpcache({IpcacheEntry("10.1.0.0", 16, 77), bad});
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  FlowQuery q;
  q.ifindex = ifindex(0);
  q.peer = Ip::Parse("10.1.2.3").bytes;
  auto d = dp.Explain(q);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->peer_identity, BULKHEAD_IDENTITY_WORLD) << "the good ipcache entry was not written";

  Endpoint e = MakeEndpoint(1, 9);
  e.ifindex = 0;
  EXPECT_EQ(dp.UpsertEndpoint(e).code(), absl::StatusCode::kInvalidArgument);
}

TEST_P(ContractTest, AttachmentRegistry) {
  IDatapath& dp = Datapath();
  ASSERT_TRUE(dp.Attach(ifindex(2)).ok());
  ASSERT_TRUE(dp.Attach(ifindex(1)).ok());
  ASSERT_TRUE(dp.Attach(ifindex(1)).ok());
  auto attached = dp.ListAttached();
  ASSERT_TRUE(attached.ok());
  EXPECT_EQ(*attached, (std::vector<uint32_t>{ifindex(1), ifindex(2)}));
  ASSERT_TRUE(dp.Detach(ifindex(1)).ok());
  ASSERT_TRUE(dp.Detach(ifindex(1)).ok());
  attached = dp.ListAttached();
  ASSERT_TRUE(attached.ok());
  EXPECT_EQ(*attached, std::vector<uint32_t>{ifindex(2)});
  EXPECT_EQ(dp.Attach(0).code(), absl::StatusCode::kInvalidArgument);
}

TEST_P(ContractTest, ExplainUsesLongestPrefixesAndTheMode) {
  IDatapath& dp = Datapath();
  ASSERT_TRUE(
      dp.UpsertIpcache({IpcacheEntry("10.1.0.0", 16, 100), IpcacheEntry("10.1.2.0", 24, 200),
                        IpcacheEntry("10.1.2.3", 32, 300), IpcacheEntry("2001:db8::", 32, 400)})
          .ok());
  PolicyTables t;
  t.peers = {PeerEntry(3, 200, BULKHEAD_DIR_EGRESS, 1)};
  for (uint32_t cls : {0u, 1u})
    t.ports.push_back(PortEntry(3, cls, BULKHEAD_DIR_EGRESS, kTcp, 0, 0, Deny(9)));
  t.ports.push_back(PortEntry(3, 1, BULKHEAD_DIR_EGRESS, kTcp, 8000, 14, Allow(10)));  // 8000-8003
  t.ports.push_back(PortEntry(3, 1, BULKHEAD_DIR_EGRESS, kTcp, 8002, 16, Deny(11)));   // but 8002
  t.ports.push_back(PortEntry(3, 1, BULKHEAD_DIR_EGRESS, kIcmp, 0, 0, Allow(12)));
  ASSERT_TRUE(dp.WritePolicyTables(t).ok());
  ASSERT_TRUE(dp.UpsertEndpoint(MakeEndpoint(0, 3)).ok());

  auto ask = [&](const std::string& peer, uint8_t proto, uint16_t port) {
    FlowQuery q;
    q.ifindex = ifindex(0);
    Ip ip = Ip::Parse(peer);
    q.family = ip.family;
    q.peer = ip.bytes;
    q.protocol = proto;
    q.port = port;
    auto d = dp.Explain(q);
    EXPECT_TRUE(d.ok()) << d.status();
    return d.ok() ? *d : datapath::FlowDecision{};
  };
  EXPECT_EQ(ask("10.1.9.9", kTcp, 80).peer_identity, 100u);
  EXPECT_EQ(ask("10.1.2.9", kTcp, 80).peer_identity, 200u);
  EXPECT_EQ(ask("10.1.2.3", kTcp, 80).peer_identity, 300u);
  EXPECT_EQ(ask("10.2.0.1", kTcp, 80).peer_identity, BULKHEAD_IDENTITY_WORLD);
  EXPECT_EQ(ask("2001:db8::5", kTcp, 80).peer_identity, 400u);

  for (uint16_t port : {8000, 8001, 8003}) {
    auto d = ask("10.1.2.9", kTcp, port);
    EXPECT_EQ(d.outcome, BH_EV_ALLOW) << port;
    ASSERT_TRUE(d.entry.has_value());
    EXPECT_EQ(d.entry->rule_id, 10u);
    EXPECT_EQ(d.class_id, 1u);
  }
  auto d = ask("10.1.2.9", kTcp, 8002);
  EXPECT_EQ(d.outcome, BH_EV_DENY);
  EXPECT_EQ(d.entry->rule_id, 11u);
  EXPECT_EQ(ask("10.1.2.9", kTcp, 8004).outcome, BH_EV_DENY);
  EXPECT_EQ(ask("10.1.2.9", kIcmp, 12345).outcome, BH_EV_ALLOW) << "ICMP ignores the port";
  d = ask("10.1.2.9", kUdp, 53);
  EXPECT_EQ(d.outcome, BH_EV_DENY) << "no UDP entry: a miss, denied";
  EXPECT_EQ(d.drop_reason, BH_DROP_POLICY_MISS);
  EXPECT_EQ(ask("10.1.2.9", kGre, 0).drop_reason, BH_DROP_PROTOCOL);

  Endpoint e = MakeEndpoint(0, 3);
  e.mode = datapath::Mode::kAudit;
  ASSERT_TRUE(dp.UpsertEndpoint(e).ok());
  EXPECT_EQ(ask("10.1.2.9", kTcp, 8002).outcome, BH_EV_AUDIT);
  e.mode = datapath::Mode::kLearn;
  ASSERT_TRUE(dp.UpsertEndpoint(e).ok());
  EXPECT_EQ(ask("10.1.2.9", kTcp, 8002).outcome, BH_EV_LEARN);

  ASSERT_TRUE(dp.DeleteIpcache({IpcacheEntry("10.1.2.3", 32, 0).first}).ok());
  EXPECT_EQ(ask("10.1.2.3", kTcp, 80).peer_identity, 200u);

  FlowQuery nobody;
  nobody.ifindex = ifindex(2);
  EXPECT_EQ(dp.Explain(nobody).status().code(), absl::StatusCode::kNotFound);
}

// The usage line of map `name`.
datapath::MapUsage UsageOf(const IDatapath& dp, const std::string& name) {
  for (const auto& u : dp.MapUsages()) {
    if (u.name == name) return u;
  }
  ADD_FAILURE() << "no usage for map " << name;
  return {};
}

TEST_P(ContractTest, WritesThatDoNotFitFailNamingTheMapTheNeedAndTheCapacity) {
  IDatapath& dp = Datapath();
  const datapath::MapSizes z = SmallSizes();
  EXPECT_EQ(UsageOf(dp, "policy_peers").entries, 0u);
  EXPECT_EQ(UsageOf(dp, "policy_peers").capacity, z.policy_peers);
  EXPECT_EQ(UsageOf(dp, "policy_peers").kernel_name, "bh_pol_peer");

  PolicyTables t;
  for (uint32_t i = 0; i < 6; ++i)
    t.peers.push_back(PeerEntry(5, 1000 + i, BULKHEAD_DIR_EGRESS, 1));
  t.ports = {PortEntry(5, 1, BULKHEAD_DIR_EGRESS, kTcp, 80, 16, Allow(1))};
  ASSERT_TRUE(dp.WritePolicyTables(t).ok());
  EXPECT_EQ(UsageOf(dp, "policy_peers").entries, 6u);
  EXPECT_EQ(UsageOf(dp, "policy_ports").entries, 1u);
  // Rewriting what is there adds nothing.
  ASSERT_TRUE(dp.WritePolicyTables(t).ok());
  EXPECT_EQ(UsageOf(dp, "policy_peers").entries, 6u);

  // A second table of 6 does not fit beside the first (8 entries).
  PolicyTables t2 = t;
  for (auto& [k, v] : t2.peers) k.table_id = 6;
  for (auto& [k, v] : t2.ports) k.table_id = 6;
  absl::Status s = dp.WritePolicyTables(t2);
  ASSERT_EQ(s.code(), absl::StatusCode::kResourceExhausted) << s;
  for (const char* part : {"policy_peers", "bh_pol_peer", "6 entries in use", "6 more needed",
                           "capacity 8", "--map-size policy_peers="}) {
    EXPECT_NE(s.message().find(part), std::string::npos) << part << " in: " << s.message();
  }
  auto ids = dp.ListPolicyTables();
  ASSERT_TRUE(ids.ok());
  EXPECT_EQ(*ids, std::vector<uint32_t>{5}) << "nothing of the table that did not fit";
  EXPECT_EQ(UsageOf(dp, "policy_peers").entries, 6u);
  // Once the first is gone it fits.
  ASSERT_TRUE(dp.DeletePolicyTables({5}).ok());
  EXPECT_EQ(UsageOf(dp, "policy_peers").entries, 0u);
  EXPECT_EQ(UsageOf(dp, "policy_ports").entries, 0u);
  ASSERT_TRUE(dp.WritePolicyTables(t2).ok());

  // The ipcache: 16 entries.
  std::vector<std::pair<bulkhead_ipcache_key, bulkhead_ipcache_value>> ipc;
  for (int i = 0; i < 17; ++i) ipc.push_back(IpcacheEntry(absl::StrCat("10.3.0.", i), 32, 300));
  s = dp.UpsertIpcache(ipc);
  ASSERT_EQ(s.code(), absl::StatusCode::kResourceExhausted) << s;
  EXPECT_NE(s.message().find("ipcache"), std::string::npos) << s;
  ipc.pop_back();
  ASSERT_TRUE(dp.UpsertIpcache(ipc).ok());
  EXPECT_EQ(UsageOf(dp, "ipcache").entries, 16u);
  ASSERT_TRUE(dp.UpsertIpcache(ipc).ok()) << "rewriting existing entries fits";
  ASSERT_TRUE(dp.DeleteIpcache({ipc[0].first}).ok());
  EXPECT_EQ(UsageOf(dp, "ipcache").entries, 15u);

  // Endpoint addresses: 8.
  Endpoint e = MakeEndpoint(0, 6);
  e.addresses.clear();
  for (uint8_t i = 1; i <= 9; ++i) e.addresses.push_back(EndpointAddress::V4({10, 4, 0, i}));
  s = dp.UpsertEndpoint(e);
  ASSERT_EQ(s.code(), absl::StatusCode::kResourceExhausted) << s;
  EXPECT_NE(s.message().find("endpoint_addresses"), std::string::npos) << s;
  e.addresses.pop_back();
  ASSERT_TRUE(dp.UpsertEndpoint(e).ok());
  EXPECT_EQ(UsageOf(dp, "endpoint_addresses").entries, 8u);
  EXPECT_EQ(UsageOf(dp, "endpoints").entries, 1u);
  e.addresses = {EndpointAddress::V4({10, 4, 0, 1})};
  ASSERT_TRUE(dp.UpsertEndpoint(e).ok());
  EXPECT_EQ(UsageOf(dp, "endpoint_addresses").entries, 1u);
  ASSERT_TRUE(dp.DeleteEndpoint(ifindex(0)).ok());
  EXPECT_EQ(UsageOf(dp, "endpoint_addresses").entries, 0u);
  EXPECT_EQ(UsageOf(dp, "endpoints").entries, 0u);
}

// Is `fd` readable within timeout_ms?
bool Readable(int fd, int timeout_ms) {
  pollfd p{fd, POLLIN, 0};
  return poll(&p, 1, timeout_ms) == 1 && (p.revents & POLLIN) != 0;
}

TEST_P(ContractTest, EventsFdIsReadableWhileEventsArePending) {
  IDatapath& dp = Datapath();
  const int fd = dp.EventsFd();
  ASSERT_GE(fd, 0);
  EXPECT_FALSE(Readable(fd, 0)) << "no event yet";
  // One event: a UDP packet from endpoint 0 whose table has no UDP entry (a denied miss).
  PolicyTables t;
  t.ports = {PortEntry(3, 0, BULKHEAD_DIR_EGRESS, kTcp, 0, 0, Allow(1))};
  ASSERT_TRUE(dp.WritePolicyTables(t).ok());
  ASSERT_TRUE(dp.UpsertEndpoint(MakeEndpoint(0, 3)).ok());
  auto produce = [&] {
    if (bpf_ != nullptr) {
      auto rc = bpf_->TestRun(datapath::Program::kFromWorkload, ifindex(0),
                              Frame(Udp("10.0.0.1", 1000, "10.9.9.9", 53)));
      ASSERT_TRUE(rc.ok()) << rc.status();
      EXPECT_EQ(*rc, TC_ACT_SHOT);
    } else {
      bh_flow_event ev{};
      ev.ifindex = ifindex(0);
      ev.verdict = BH_EV_DENY;
      static_cast<datapath::FakeDatapath&>(dp).PushEvent(ev);
    }
  };
  produce();
  EXPECT_TRUE(Readable(fd, 2000)) << "an event is pending";
  EXPECT_TRUE(Readable(fd, 0)) << "still pending until read";
  std::vector<bh_flow_event> got;
  auto n = dp.PollEvents(0, [&](const bh_flow_event& e) { got.push_back(e); });
  ASSERT_TRUE(n.ok()) << n.status();
  ASSERT_EQ(*n, 1u);
  EXPECT_EQ(got[0].ifindex, ifindex(0));
  EXPECT_EQ(got[0].verdict, BH_EV_DENY);
  EXPECT_FALSE(Readable(fd, 0)) << "every event delivered";
  // Readable again for the next one, and a wait on the fd ends when it comes.
  produce();
  produce();
  EXPECT_TRUE(Readable(fd, 2000));
  n = dp.PollEvents(0, [&](const bh_flow_event&) {});
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(*n, 2u);
  EXPECT_FALSE(Readable(fd, 0));
}

}  // namespace
}  // namespace bulkhead::bpftest
