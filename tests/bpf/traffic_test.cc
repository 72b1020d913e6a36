// The attached programs on a real veth: kernel-made packets, not test_run frames.
#include "absl/strings/str_cat.h"
#include "fixture.h"
#include "sandbox.h"

namespace bulkhead::bpftest {
namespace {

// A workload in its own netns at 10.0.1.1 behind veth bh-w (host side 10.0.1.254). This
// checks what BPF_PROG_TEST_RUN cannot: that the filters sit on the right hooks and see the
// right skb->ifindex and direction for packets the kernel itself sends and receives.
class RealTrafficTest : public DatapathTest {
 protected:
  static constexpr const char* kW = "10.0.1.1";
  static constexpr const char* kHost = "10.0.1.254";

  void SetUp() override {
    DatapathTest::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    auto w = WorkloadNetns::Start();
    ASSERT_TRUE(w.ok()) << w.status();
    workload_ = std::move(*w);
    auto idx = Veth("bh-w");
    ASSERT_TRUE(idx.ok()) << idx.status();
    if_w_ = *idx;
    ASSERT_TRUE(Shell(absl::StrCat("ip link set bh-w-p netns ", workload_->pid())).ok());
    ASSERT_TRUE(
        Shell(absl::StrCat("ip addr add ", kHost, "/24 dev bh-w && ip link set bh-w up")).ok());
    ASSERT_TRUE(workload_
                    ->Exec(absl::StrCat("ip addr add ", kW,
                                        "/24 dev bh-w-p && ip link set bh-w-p up && "
                                        "ip link set lo up"))
                    .ok());

    // Endpoint W: its egress may ping the host (identity HOST, class 1); nothing comes in.
    constexpr uint32_t kTable = 70;
    ASSERT_TRUE(dp_->UpsertIpcache({IpcacheEntry(kW, 32, 2000),
                                    IpcacheEntry(kHost, 32, BULKHEAD_IDENTITY_HOST)})
                    .ok());
    datapath::PolicyTables t;
    t.peers = {PeerEntry(kTable, BULKHEAD_IDENTITY_HOST, BULKHEAD_DIR_EGRESS, 1)};
    for (uint32_t cls : {0u, 1u})
      for (uint8_t proto : {kTcp, kUdp, kSctp, kIcmp, kIcmp6})
        for (uint8_t dir : {BULKHEAD_DIR_INGRESS, BULKHEAD_DIR_EGRESS})
          t.ports.push_back(PortEntry(kTable, cls, dir, proto, 0, 0, Deny(1)));
    t.ports.push_back(PortEntry(kTable, 1, BULKHEAD_DIR_EGRESS, kIcmp, 0, 0, Allow(2)));
    ASSERT_TRUE(dp_->WritePolicyTables(t).ok());
    datapath::Endpoint w_ep;
    w_ep.ifindex = if_w_;
    w_ep.endpoint_id = 9;
    w_ep.identity = 2000;
    w_ep.policy_table_id = kTable;
    w_ep.policy_generation = 1;
    w_ep.addresses = {datapath::EndpointAddress::V4({10, 0, 1, 1})};
    ASSERT_TRUE(dp_->UpsertEndpoint(w_ep).ok());
    absl::Status s = dp_->Attach(if_w_);
    ASSERT_TRUE(s.ok()) << s;
  }

  void TearDown() override {
    DatapathTest::TearDown();
    workload_.reset();
  }

  std::unique_ptr<WorkloadNetns> workload_;
  uint32_t if_w_ = 0;
};

TEST_F(RealTrafficTest, WorkloadEgressAllowedIngressDenied) {
  // The workload pings the host: request allowed by egress policy, reply rides conntrack.
  absl::Status s = workload_->Exec(absl::StrCat("ping -c 2 -i 0.2 -W 2 ", kHost));
  EXPECT_TRUE(s.ok()) << s;
  EXPECT_GE(Counter(BH_CTR_PASS_NEW), 1u);
  EXPECT_GE(Counter(BH_CTR_PASS_CT), 2u);

  bool saw_request = false;
  for (const auto& e : Events()) {
    if (e.kind != BH_EV_NEW_FLOW || e.protocol != kIcmp) continue;
    saw_request = true;
    EXPECT_EQ(e.ifindex, if_w_);
    EXPECT_EQ(e.direction, BULKHEAD_DIR_EGRESS) << "host ingress is the workload's egress";
    EXPECT_EQ(e.verdict, BH_EV_ALLOW) << Describe(e);
    EXPECT_EQ(e.peer_identity, BULKHEAD_IDENTITY_HOST);
    EXPECT_EQ(EventSrc(e), Ip::Parse(kW));
  }
  EXPECT_TRUE(saw_request);

  // The host pings the workload: its ingress denies ICMP, so no reply comes back.
  uint64_t drops = Counter(BH_CTR_DROP_POLICY);
  EXPECT_FALSE(Shell(absl::StrCat("ping -c 1 -W 1 ", kW)).ok());
  EXPECT_GT(Counter(BH_CTR_DROP_POLICY), drops);
  bool saw_deny = false;
  for (const auto& e : Events()) {
    if (e.verdict != BH_EV_DENY || e.protocol != kIcmp) continue;
    saw_deny = true;
    EXPECT_EQ(e.direction, BULKHEAD_DIR_INGRESS) << "host egress is the workload's ingress";
    EXPECT_EQ(e.icmp_type, 8);
  }
  EXPECT_TRUE(saw_deny);

  // Detached, the same ping goes through: the drop was ours.
  ASSERT_TRUE(dp_->Detach(if_w_).ok());
  s = Shell(absl::StrCat("ping -c 1 -W 2 ", kW));
  EXPECT_TRUE(s.ok()) << s;
}

}  // namespace
}  // namespace bulkhead::bpftest
