// Crafted packets through the real TC programs (BPF_PROG_TEST_RUN): verdicts, maps, events.
#include <linux/pkt_cls.h>

#include <optional>

#include "fixture.h"

namespace bulkhead::bpftest {
namespace {

using datapath::Mode;

constexpr int OK = TC_ACT_OK;
constexpr int SHOT = TC_ACT_SHOT;

// The conntrack entry of endpoint `ifindex` for the flow with these local/remote ports.
std::optional<bh_ct_entry> FindFlow(const std::vector<std::pair<bh_ct_key, bh_ct_entry>>& ct,
                                    uint32_t ifindex, uint8_t protocol, uint16_t local_port,
                                    uint16_t remote_port) {
  for (const auto& [k, e] : ct)
    if (k.ifindex == ifindex && k.protocol == protocol && k.local_port == local_port &&
        k.remote_port == remote_port)
      return e;
  return std::nullopt;
}

TEST_F(DatapathTest, SkbIfindexFromTestRunContextSelectsTheEndpoint) {
  // The same frame is allowed on A (egress to B:80 allowed) and dropped on C (no endpoint):
  // the program keys its endpoint on skb->ifindex, which test_run takes from ctx.ifindex.
  Packet p = Tcp(kA, 40000, kB, 80, kSyn);
  EXPECT_EQ(FromA(p), OK);
  EXPECT_EQ(Run(Program::kFromWorkload, if_c_, Frame(p)), SHOT);
  auto events = Events();
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0].ifindex, if_a_);
  EXPECT_EQ(events[1].ifindex, if_c_);
  EXPECT_EQ(events[1].drop_reason, BH_DROP_NO_ENDPOINT);
  EXPECT_EQ(Counter(BH_CTR_DROP_NO_ENDPOINT), 1u);
}

TEST_F(DatapathTest, AllowedNewFlowIsTrackedAndReported) {
  EXPECT_EQ(FromA(Tcp(kA, 40000, kB, 80, kSyn)), OK);

  auto ct = Conntrack();
  ASSERT_EQ(ct.size(), 1u);
  const auto& [key, entry] = ct[0];
  EXPECT_EQ(key.ifindex, if_a_);
  EXPECT_EQ(key.family, BULKHEAD_FAMILY_IPV4);
  EXPECT_EQ(key.protocol, kTcp);
  EXPECT_EQ(key.local_port, 40000);
  EXPECT_EQ(key.remote_port, 80);
  EXPECT_EQ(entry.origin, BULKHEAD_DIR_EGRESS);
  EXPECT_EQ(entry.state, BH_CT_NEW);
  EXPECT_EQ(entry.policy_generation, 1u);
  EXPECT_EQ(entry.peer_identity, kIdB);
  EXPECT_EQ(entry.rule_id, 11u);

  auto events = Events();
  ASSERT_EQ(events.size(), 1u);
  const bh_flow_event& e = events[0];
  EXPECT_EQ(e.kind, BH_EV_NEW_FLOW) << Describe(e);
  EXPECT_EQ(e.verdict, BH_EV_ALLOW);
  EXPECT_EQ(e.direction, BULKHEAD_DIR_EGRESS);
  EXPECT_EQ(e.endpoint_id, 1u);
  EXPECT_EQ(e.endpoint_identity, kIdA);
  EXPECT_EQ(e.peer_identity, kIdB);
  EXPECT_EQ(e.policy_table_id, kTableA);
  EXPECT_EQ(e.rule_id, 11u);
  EXPECT_EQ(e.tier, BULKHEAD_TIER_NAMESPACE);
  EXPECT_EQ(e.policy_verdict, BULKHEAD_VERDICT_ALLOW);
  EXPECT_EQ(e.protocol, kTcp);
  EXPECT_EQ(EventSrc(e), Ip::Parse(kA));
  EXPECT_EQ(EventDst(e), Ip::Parse(kB));
  EXPECT_EQ(e.src_port, 40000);
  EXPECT_EQ(e.dst_port, 80);
  EXPECT_EQ(e.tcp_flags, kSyn);
  EXPECT_EQ(e.drop_reason, BH_DROP_NONE);
  EXPECT_GT(e.timestamp_ns, 0u);

  EXPECT_EQ(Counter(BH_CTR_PASS_NEW), 1u);
  EXPECT_EQ(Counter(BH_CTR_CT_CREATED), 1u);
  EXPECT_EQ(Counter(BH_CTR_EVENTS_SENT), 1u);
}

TEST_F(DatapathTest, PortRangePrefixAllowsBothPortsAndNothingBeyond) {
  EXPECT_EQ(FromA(Tcp(kA, 40000, kB, 8000, kSyn)), OK);
  EXPECT_EQ(FromA(Tcp(kA, 40001, kB, 8001, kSyn)), OK);
  EXPECT_EQ(FromA(Tcp(kA, 40002, kB, 8002, kSyn)), SHOT);
  EXPECT_EQ(FromA(Tcp(kA, 40003, kB, 7999, kSyn)), SHOT);
}

TEST_F(DatapathTest, DeniedFlowIsDroppedReportedAndNotTracked) {
  EXPECT_EQ(FromA(Tcp(kA, 40000, kB, 22, kSyn)), SHOT);
  EXPECT_TRUE(Conntrack().empty());
  auto events = Events();
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].kind, BH_EV_NEW_FLOW);
  EXPECT_EQ(events[0].verdict, BH_EV_DENY);
  EXPECT_EQ(events[0].drop_reason, BH_DROP_POLICY);
  EXPECT_EQ(events[0].policy_verdict, BULKHEAD_VERDICT_DENY);
  EXPECT_EQ(events[0].policy_reason, BULKHEAD_REASON_ISOLATED);
  EXPECT_EQ(events[0].peer_identity, kIdB);
  EXPECT_EQ(events[0].dst_port, 22);
  EXPECT_EQ(Counter(BH_CTR_DROP_POLICY), 1u);
  // Every denied packet is dropped, not only the first.
  EXPECT_EQ(FromA(Tcp(kA, 40000, kB, 22, kSyn)), SHOT);
  EXPECT_EQ(Counter(BH_CTR_DROP_POLICY), 2u);
}

TEST_F(DatapathTest, UnknownPeerIsWorldAndCidrPeerGetsItsClass) {
  // World: class 0, everything denied on egress.
  EXPECT_EQ(FromA(Udp(kA, 5000, kWorld, 53)), SHOT);
  // The CIDR identity's class allows DNS.
  EXPECT_EQ(FromA(Udp(kA, 5000, kCidrPeer, 53)), OK);
  auto events = Events();
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0].peer_identity, BULKHEAD_IDENTITY_WORLD);
  EXPECT_EQ(events[1].peer_identity, kIdCidr);
  EXPECT_EQ(events[1].rule_id, 16u);
}

TEST_F(DatapathTest, RepliesAndEstablishedPacketsHitConntrack) {
  ASSERT_EQ(FromA(Tcp(kA, 40000, kB, 80, kSyn)), OK);
  // A's ingress denies everything from B but 443: the SYN-ACK passes as a reply.
  EXPECT_EQ(ToA(Tcp(kB, 80, kA, 40000, kSyn | kAck)), OK);
  EXPECT_EQ(FromA(Tcp(kA, 40000, kB, 80, kAck)), OK);
  EXPECT_EQ(ToA(Tcp(kB, 80, kA, 40000, kAck | kPsh)), OK);

  auto ct = Conntrack();
  ASSERT_EQ(ct.size(), 1u);
  EXPECT_EQ(ct[0].second.state, BH_CT_ESTABLISHED);
  EXPECT_TRUE(ct[0].second.flags & BH_CT_F_SEEN_REPLY);
  EXPECT_EQ(Counter(BH_CTR_PASS_CT), 3u);
  EXPECT_EQ(Counter(BH_CTR_PASS_NEW), 1u);
  EXPECT_EQ(Events().size(), 1u) << "only the new flow is reported";

  // The same packet from B on a port A did not talk to is a new, denied flow.
  EXPECT_EQ(ToA(Tcp(kB, 81, kA, 40000, kAck)), SHOT);
}

TEST_F(DatapathTest, UnsolicitedInboundFollowsIngressPolicy) {
  EXPECT_EQ(ToA(Tcp(kB, 50000, kA, 80, kSyn)), SHOT);
  EXPECT_EQ(ToA(Tcp(kB, 50000, kA, 443, kSyn)), OK);
  auto events = Events();
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0].direction, BULKHEAD_DIR_INGRESS);
  EXPECT_EQ(events[0].rule_id, 99u);
  EXPECT_EQ(events[0].policy_reason, BULKHEAD_REASON_DEFAULT_DENY);
  EXPECT_EQ(events[1].rule_id, 21u);
  auto ct = Conntrack();
  ASSERT_EQ(ct.size(), 1u);
  EXPECT_EQ(ct[0].second.origin, BULKHEAD_DIR_INGRESS);
  EXPECT_EQ(ct[0].first.local_port, 443);
  // A's answer is a reply, whatever A's egress policy says about port 50000.
  EXPECT_EQ(FromA(Tcp(kA, 443, kB, 50000, kSyn | kAck)), OK);
}

TEST_F(DatapathTest, EachEndpointEnforcesItsOwnSideOfALocalFlow) {
  // A may send to B:8000, but B's ingress only admits port 80: A's hook passes it, B's drops
  // it, and neither side's conntrack entry opens the other side.
  Packet p = Tcp(kA, 40000, kB, 8000, kSyn);
  EXPECT_EQ(FromA(p), OK);
  EXPECT_EQ(ToB(p), SHOT);
  Packet q = Tcp(kA, 40001, kB, 80, kSyn);
  EXPECT_EQ(FromA(q), OK);
  EXPECT_EQ(ToB(q), OK);
  EXPECT_EQ(FromB(Tcp(kB, 80, kA, 40001, kSyn | kAck)), OK);
  EXPECT_EQ(ToA(Tcp(kB, 80, kA, 40001, kSyn | kAck)), OK);
  auto ct = Conntrack();
  EXPECT_EQ(ct.size(), 3u);
  EXPECT_TRUE(FindFlow(ct, if_a_, kTcp, 40001, 80).has_value());
  EXPECT_TRUE(FindFlow(ct, if_b_, kTcp, 80, 40001).has_value());
  EXPECT_FALSE(FindFlow(ct, if_b_, kTcp, 8000, 40000).has_value());
}

TEST_F(DatapathTest, TcpFinFromBothSidesClosesAndShortTimeoutCleansUp) {
  bh_settings s{};
  s.ct_tcp_close_timeout_ns = 1;  // closing entries expire at their next packet
  ASSERT_TRUE(dp_->SetSettings(s).ok());
  ASSERT_EQ(FromA(Tcp(kA, 40000, kB, 80, kSyn)), OK);
  ASSERT_EQ(ToA(Tcp(kB, 80, kA, 40000, kSyn | kAck)), OK);
  ASSERT_EQ(FromA(Tcp(kA, 40000, kB, 80, kFin | kAck)), OK);
  auto ct = Conntrack();
  ASSERT_EQ(ct.size(), 1u);
  EXPECT_EQ(ct[0].second.state, BH_CT_ESTABLISHED);
  EXPECT_TRUE(ct[0].second.flags & BH_CT_F_FIN_ORIG);
  ASSERT_EQ(ToA(Tcp(kB, 80, kA, 40000, kFin | kAck)), OK);
  ct = Conntrack();
  ASSERT_EQ(ct.size(), 1u);
  EXPECT_EQ(ct[0].second.state, BH_CT_CLOSING);

  // The closing entry has timed out: a late packet from B is a new flow into A, denied.
  EXPECT_EQ(ToA(Tcp(kB, 80, kA, 40000, kAck)), SHOT);
  EXPECT_TRUE(Conntrack().empty());
  EXPECT_EQ(Counter(BH_CTR_CT_REMOVED), 1u);
}

TEST_F(DatapathTest, TcpRstRemovesTheFlowAtOnce) {
  ASSERT_EQ(FromA(Tcp(kA, 40000, kB, 80, kSyn)), OK);
  ASSERT_EQ(ToA(Tcp(kB, 80, kA, 40000, kSyn | kAck)), OK);
  ASSERT_EQ(Conntrack().size(), 1u);
  EXPECT_EQ(ToA(Tcp(kB, 80, kA, 40000, kRst)), OK) << "the RST itself belongs to the flow";
  EXPECT_TRUE(Conntrack().empty());
  EXPECT_EQ(ToA(Tcp(kB, 80, kA, 40000, kAck)), SHOT) << "nothing of the flow is left";
}

TEST_F(DatapathTest, SynReusingAClosingTupleIsDecidedAgain) {
  ASSERT_EQ(FromA(Tcp(kA, 40000, kB, 80, kSyn)), OK);
  ASSERT_EQ(ToA(Tcp(kB, 80, kA, 40000, kSyn | kAck)), OK);
  ASSERT_EQ(FromA(Tcp(kA, 40000, kB, 80, kFin | kAck)), OK);
  ASSERT_EQ(ToA(Tcp(kB, 80, kA, 40000, kFin | kAck)), OK);
  Events();
  EXPECT_EQ(FromA(Tcp(kA, 40000, kB, 80, kSyn)), OK);
  auto events = Events();
  ASSERT_EQ(events.size(), 1u) << "a fresh connection is a new flow";
  EXPECT_EQ(events[0].kind, BH_EV_NEW_FLOW);
  auto ct = Conntrack();
  ASSERT_EQ(ct.size(), 1u);
  EXPECT_EQ(ct[0].second.state, BH_CT_NEW);
}

TEST_F(DatapathTest, IdleUdpFlowExpires) {
  ASSERT_EQ(FromA(Udp(kA, 5000, kB, 53)), OK);
  EXPECT_EQ(ToA(Udp(kB, 53, kA, 5000)), OK) << "reply within the default timeout";
  bh_settings s{};
  s.ct_udp_timeout_ns = 1;
  ASSERT_TRUE(dp_->SetSettings(s).ok());
  EXPECT_EQ(ToA(Udp(kB, 53, kA, 5000)), SHOT) << "the entry idled out; A's ingress denies";
  EXPECT_TRUE(Conntrack().empty());
}

TEST_F(DatapathTest, PolicyChangeRevokesEstablishedFlows) {
  ASSERT_EQ(FromA(Tcp(kA, 40000, kB, 80, kSyn)), OK);
  ASSERT_EQ(ToA(Tcp(kB, 80, kA, 40000, kSyn | kAck)), OK);
  ASSERT_EQ(FromA(Tcp(kA, 40001, kB, 8000, kSyn)), OK);
  Events();

  // New table 20: like table 10 without port 80. Written beside the old one, then switched.
  datapath::PolicyTables t20 = TableA(20);
  std::erase_if(t20.ports, [](const auto& e) { return e.second.rule_id == 11; });
  ASSERT_TRUE(dp_->WritePolicyTables(t20).ok());
  absl::Status s = dp_->SwitchPolicy(if_a_, 20, 2);
  ASSERT_TRUE(s.ok()) << s;

  // The reply of the port-80 flow is re-checked under table 20 and dropped.
  EXPECT_EQ(ToA(Tcp(kB, 80, kA, 40000, kAck)), SHOT);
  auto events = Events();
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].kind, BH_EV_RECHECK) << Describe(events[0]);
  EXPECT_EQ(events[0].verdict, BH_EV_DENY);
  EXPECT_EQ(events[0].drop_reason, BH_DROP_REVOKED);
  EXPECT_EQ(events[0].policy_table_id, 20u);
  EXPECT_EQ(events[0].policy_generation, 2u);
  EXPECT_FALSE(FindFlow(Conntrack(), if_a_, kTcp, 40000, 80).has_value());
  EXPECT_EQ(FromA(Tcp(kA, 40000, kB, 80, kAck)), SHOT) << "the flow stays closed";
  EXPECT_EQ(Counter(BH_CTR_DROP_REVOKED), 1u);

  // The port-8000 flow is still allowed: it passes and is stamped with the new generation.
  EXPECT_EQ(ToA(Tcp(kB, 8000, kA, 40001, kSyn | kAck)), OK);
  std::optional<bh_ct_entry> e = FindFlow(Conntrack(), if_a_, kTcp, 40001, 8000);
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->policy_generation, 2u);
  EXPECT_EQ(e->rule_id, 12u);

  // The old table can go once nothing points at it.
  s = dp_->DeletePolicyTables({kTableA});
  EXPECT_TRUE(s.ok()) << s;
  auto tables = dp_->ListPolicyTables();
  ASSERT_TRUE(tables.ok());
  EXPECT_EQ(*tables, (std::vector<uint32_t>{kTableB, 20}));
}

TEST_F(DatapathTest, AuditModePassesWouldDenyAndReportsIt) {
  datapath::Endpoint a = EndpointA();
  a.mode = Mode::kAudit;
  ASSERT_TRUE(dp_->UpsertEndpoint(a).ok());
  EXPECT_EQ(FromA(Tcp(kA, 40000, kB, 22, kSyn)), OK);
  EXPECT_EQ(FromA(Tcp(kA, 40001, kB, 80, kSyn)), OK);
  auto events = Events();
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0].verdict, BH_EV_AUDIT) << Describe(events[0]);
  EXPECT_EQ(events[0].policy_verdict, BULKHEAD_VERDICT_DENY);
  EXPECT_EQ(events[0].mode, BH_MODE_AUDIT);
  EXPECT_EQ(events[1].verdict, BH_EV_ALLOW);
  std::optional<bh_ct_entry> e = FindFlow(Conntrack(), if_a_, kTcp, 40000, 22);
  ASSERT_TRUE(e.has_value());
  EXPECT_TRUE(e->flags & BH_CT_F_WOULD_DENY);
  EXPECT_EQ(Counter(BH_CTR_PASS_AUDIT), 1u);
  EXPECT_EQ(Counter(BH_CTR_PASS_NEW), 1u);

  // Switching the endpoint to enforce (same table, new generation) closes the audited flow.
  a.mode = Mode::kEnforce;
  a.policy_generation = 2;
  ASSERT_TRUE(dp_->UpsertEndpoint(a).ok());
  EXPECT_EQ(FromA(Tcp(kA, 40000, kB, 22, kAck)), SHOT);
  EXPECT_EQ(FromA(Tcp(kA, 40001, kB, 80, kAck)), OK);
}

TEST_F(DatapathTest, AuditRuleInEnforceModeIsReportedAsAudit) {
  datapath::PolicyTables t = TableA(kTableA);
  PortVerdict audited = Allow(40);
  audited.flags = BULKHEAD_POLICY_F_AUDIT_WOULD_DENY;
  t.ports = {PortEntry(kTableA, 1, BULKHEAD_DIR_EGRESS, kTcp, 9090, 16, audited)};
  t.peers.clear();
  ASSERT_TRUE(dp_->WritePolicyTables(t).ok());
  EXPECT_EQ(FromA(Tcp(kA, 40000, kB, 9090, kSyn)), OK);
  auto events = Events();
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].verdict, BH_EV_AUDIT);
  EXPECT_EQ(events[0].policy_verdict, BULKHEAD_VERDICT_ALLOW);
  EXPECT_EQ(events[0].policy_flags, BULKHEAD_POLICY_F_AUDIT_WOULD_DENY);
  EXPECT_EQ(events[0].rule_id, 40u);
}

TEST_F(DatapathTest, LearnModePassesEverythingAndRecordsWhatPolicySaid) {
  datapath::Endpoint a = EndpointA();
  a.mode = Mode::kLearn;
  ASSERT_TRUE(dp_->UpsertEndpoint(a).ok());
  EXPECT_EQ(FromA(Tcp(kA, 40000, kB, 22, kSyn)), OK);
  EXPECT_EQ(FromA(Tcp(kA, 40001, kB, 80, kSyn)), OK);
  EXPECT_EQ(ToA(Udp(kWorld, 53, kA, 7000)), OK);
  auto events = Events();
  ASSERT_EQ(events.size(), 3u);
  for (const auto& e : events) EXPECT_EQ(e.verdict, BH_EV_LEARN) << Describe(e);
  EXPECT_EQ(events[0].policy_verdict, BULKHEAD_VERDICT_DENY);
  EXPECT_EQ(events[1].policy_verdict, BULKHEAD_VERDICT_ALLOW);
  EXPECT_EQ(events[2].peer_identity, BULKHEAD_IDENTITY_WORLD);
  EXPECT_EQ(Counter(BH_CTR_PASS_LEARN), 3u);
  EXPECT_EQ(Conntrack().size(), 3u);
}

TEST_F(DatapathTest, SpoofedSourcesAreDropped) {
  EXPECT_EQ(FromA(Tcp("10.0.0.99", 40000, kB, 80, kSyn)), SHOT);
  EXPECT_EQ(FromA(Tcp(kB, 40000, kB, 80, kSyn)), SHOT) << "B's address is not A's";
  EXPECT_EQ(FromA(Tcp("fd00::99", 40000, kB6, 80, kSyn)), SHOT);
  auto events = Events();
  ASSERT_EQ(events.size(), 3u);
  for (const auto& e : events) {
    EXPECT_EQ(e.kind, BH_EV_PACKET);
    EXPECT_EQ(e.verdict, BH_EV_DENY);
    EXPECT_EQ(e.drop_reason, BH_DROP_SPOOFED);
  }
  EXPECT_EQ(Counter(BH_CTR_DROP_SPOOFED), 3u);
  EXPECT_TRUE(Conntrack().empty());

  // ARP: the sender address is checked too; a probe's 0.0.0.0 is fine.
  EXPECT_EQ(Run(Program::kFromWorkload, if_a_, ArpFrame(Ip::Parse(kA), Ip::Parse(kB))), OK);
  EXPECT_EQ(Run(Program::kFromWorkload, if_a_, ArpFrame(Ip::Parse(kB), Ip::Parse(kA))), SHOT);
  EXPECT_EQ(Run(Program::kFromWorkload, if_a_, ArpFrame(Ip::Parse("0.0.0.0"), Ip::Parse(kA))), OK);
  // Towards the workload nothing is checked for spoofing: the source is someone else.
  EXPECT_EQ(Run(Program::kToWorkload, if_a_, ArpFrame(Ip::Parse(kB), Ip::Parse(kA))), OK);

  // An endpoint that routes for others may switch anti-spoofing off.
  datapath::Endpoint a = EndpointA();
  a.antispoof = false;
  ASSERT_TRUE(dp_->UpsertEndpoint(a).ok());
  EXPECT_EQ(FromA(Tcp("10.0.0.99", 40000, kB, 80, kSyn)), OK);
}

TEST_F(DatapathTest, ChangingAddressesRemovesTheStaleOnes) {
  datapath::Endpoint a = EndpointA();
  a.addresses = {datapath::EndpointAddress::V4({10, 0, 0, 5})};
  ASSERT_TRUE(dp_->UpsertEndpoint(a).ok());
  EXPECT_EQ(FromA(Tcp(kA, 40000, kB, 80, kSyn)), SHOT);
  EXPECT_EQ(FromA(Tcp("10.0.0.5", 40000, kB, 80, kSyn)), OK);
  auto eps = dp_->ListEndpoints();
  ASSERT_TRUE(eps.ok());
  ASSERT_EQ(eps->size(), 2u);
  EXPECT_EQ((*eps)[0].ifindex, std::min(if_a_, if_b_));
  for (const auto& ep : *eps) {
    if (ep.ifindex == if_a_) {
      EXPECT_EQ(ep.addresses, a.addresses);
    }
  }
}

TEST_F(DatapathTest, Ipv6FlowsWithExtensionHeaders) {
  EXPECT_EQ(FromA(Tcp(kA6, 40000, kB6, 80, kSyn)), OK);
  EXPECT_EQ(ToA(Tcp(kB6, 80, kA6, 40000, kSyn | kAck)), OK);
  EXPECT_EQ(FromA(Tcp(kA6, 40001, kB6, 22, kSyn)), SHOT);
  // Ports behind hop-by-hop and destination options headers are still found.
  Packet p = Tcp(kA6, 40002, kB6, 22, kSyn);
  p.ipv6_ext_headers = 3;
  EXPECT_EQ(FromA(p), SHOT);
  p.dport = 80;
  EXPECT_EQ(FromA(p), OK);
  // More extension headers than the parser walks: refused, not guessed.
  p.ipv6_ext_headers = 7;
  EXPECT_EQ(FromA(p), SHOT);
  EXPECT_EQ(Counter(BH_CTR_DROP_MALFORMED), 1u);

  auto events = Events();
  ASSERT_GE(events.size(), 1u);
  EXPECT_EQ(events[0].family, BULKHEAD_FAMILY_IPV6);
  EXPECT_EQ(EventSrc(events[0]), Ip::Parse(kA6));
  EXPECT_EQ(EventDst(events[0]), Ip::Parse(kB6));
  EXPECT_EQ(events[0].peer_identity, kIdB);
}

TEST_F(DatapathTest, IcmpEchoIsTrackedByIdentifierAndDirection) {
  EXPECT_EQ(FromA(Echo(kA, kB, true, 77)), OK);
  EXPECT_EQ(ToA(Echo(kB, kA, false, 77)), OK) << "the reply";
  EXPECT_EQ(ToA(Echo(kB, kA, false, 78)), SHOT) << "a reply to no request";
  // B's own request with A's identifier does not ride on A's ping: A's ingress denies ICMP.
  EXPECT_EQ(ToA(Echo(kB, kA, true, 77)), SHOT);
  auto ct = Conntrack();
  ASSERT_EQ(ct.size(), 1u);
  EXPECT_EQ(ct[0].first.local_port, 77);
  EXPECT_EQ(ct[0].first.remote_port, BH_CT_ICMP_ECHO_OUT);
  auto events = Events();
  ASSERT_GE(events.size(), 1u);
  EXPECT_EQ(events[0].icmp_type, 8);
  EXPECT_EQ(events[0].rule_id, 15u);
}

TEST_F(DatapathTest, Icmpv6EchoAndNeighbourDiscovery) {
  EXPECT_EQ(FromA(Echo(kA6, kB6, true, 5)), OK);
  EXPECT_EQ(ToA(Echo(kB6, kA6, false, 5)), OK);
  EXPECT_EQ(ToA(Echo(kB6, kA6, true, 6)), SHOT);
  // Neighbour solicitation from the link-local address, and DAD from ::, pass as control.
  EXPECT_EQ(FromA(Icmp("fe80::1", "ff02::1:ff00:2", 135, 0)), OK);
  EXPECT_EQ(FromA(Icmp("::", "ff02::1:ff00:1", 135, 0)), OK);
  EXPECT_EQ(ToA(Icmp("fe80::2", "fe80::1", 136, 0)), OK);
  // ... but other ICMPv6 from a link-local source is not the workload's address.
  EXPECT_EQ(FromA(Echo("fe80::1", kB6, true, 9)), SHOT);
  EXPECT_EQ(Counter(BH_CTR_PASS_CONTROL), 3u);
}

TEST_F(DatapathTest, IcmpErrorsAboutTrackedFlowsAreRelated) {
  Packet udp = Udp(kA, 5000, kB, 53);
  ASSERT_EQ(FromA(udp), OK);
  // B answers "port unreachable", quoting A's datagram (IP header + 8 bytes).
  std::vector<uint8_t> quoted = IpPacket(udp);
  quoted.resize(28);
  EXPECT_EQ(ToA(Icmp(kB, kA, 3, 3, quoted)), OK);
  EXPECT_EQ(Counter(BH_CTR_PASS_RELATED), 1u);
  // An error quoting a flow A never had is decided by policy: A's ingress denies ICMP.
  std::vector<uint8_t> other = IpPacket(Udp(kA, 5001, kB, 53));
  other.resize(28);
  EXPECT_EQ(ToA(Icmp(kB, kA, 3, 3, other)), SHOT);
  // IPv6 packet-too-big about a tracked TCP flow (quoted with only 8 bytes of TCP).
  Packet tcp6 = Tcp(kA6, 40000, kB6, 80, kSyn);
  ASSERT_EQ(FromA(tcp6), OK);
  std::vector<uint8_t> q6 = IpPacket(tcp6);
  q6.resize(48);
  EXPECT_EQ(ToA(Icmp(kB6, kA6, 2, 0, q6)), OK);
  EXPECT_EQ(Counter(BH_CTR_PASS_RELATED), 2u);
}

TEST_F(DatapathTest, SctpAllowDenyAndAbort) {
  EXPECT_EQ(FromA(Sctp(kA, 3868, kB, 3868, 1)), OK);
  EXPECT_EQ(ToA(Sctp(kB, 3868, kA, 3868, 2)), OK) << "INIT ACK is a reply";
  EXPECT_EQ(FromA(Sctp(kA, 3000, kB, 2905, 1)), SHOT);
  ASSERT_TRUE(FindFlow(Conntrack(), if_a_, kSctp, 3868, 3868).has_value());
  EXPECT_EQ(ToA(Sctp(kB, 3868, kA, 3868, 6)), OK) << "ABORT passes and ends the association";
  EXPECT_FALSE(FindFlow(Conntrack(), if_a_, kSctp, 3868, 3868).has_value());
  auto events = Events();
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0].protocol, kSctp);
  EXPECT_EQ(events[0].rule_id, 14u);
}

TEST_F(DatapathTest, FragmentsFollowTheirFirstFragment) {
  // Allowed datagram: first fragment decided by policy, later ones follow it.
  Packet first = Udp(kA, 5000, kB, 53);
  first.fragment = true;
  first.more_fragments = true;
  first.frag_id = 0x1234;
  EXPECT_EQ(FromA(first), OK);
  Packet later = first;
  later.frag_offset = 3;
  EXPECT_EQ(FromA(later), OK);
  later.more_fragments = false;
  later.frag_offset = 6;
  EXPECT_EQ(FromA(later), OK);
  EXPECT_EQ(Counter(BH_CTR_PASS_FRAG), 2u);

  // Denied datagram: every fragment is dropped.
  Packet denied = Udp(kA, 5000, kB, 54);
  denied.fragment = true;
  denied.more_fragments = true;
  denied.frag_id = 0x2222;
  EXPECT_EQ(FromA(denied), SHOT);
  denied.frag_offset = 3;
  EXPECT_EQ(FromA(denied), SHOT);

  // A later fragment with no first fragment seen: dropped (never decided by policy).
  Packet orphan = later;
  orphan.frag_id = 0x9999;
  EXPECT_EQ(FromA(orphan), SHOT);
  EXPECT_EQ(Counter(BH_CTR_DROP_FRAGMENT), 2u);

  // Tiny first fragment hiding the TCP header: malformed, dropped.
  Packet tiny = Tcp(kA, 40000, kB, 80, kSyn);
  tiny.fragment = true;
  tiny.more_fragments = true;
  tiny.frag_id = 0x3333;
  tiny.l4_bytes = 8;
  EXPECT_EQ(FromA(tiny), SHOT);
  EXPECT_EQ(Counter(BH_CTR_DROP_MALFORMED), 1u);

  // IPv6 fragment header, same rules.
  Packet first6 = Udp(kA6, 5000, kB6, 53);
  first6.fragment = true;
  first6.more_fragments = true;
  first6.frag_id = 0xabcdef01;
  EXPECT_EQ(FromA(first6), OK);
  Packet later6 = first6;
  later6.frag_offset = 100;
  EXPECT_EQ(FromA(later6), OK);
  later6.frag_id = 0xabcdef02;
  EXPECT_EQ(FromA(later6), SHOT);
  Packet denied6 = Udp(kA6, 5000, kB6, 54);
  denied6.fragment = true;
  denied6.more_fragments = true;
  denied6.frag_id = 7;
  EXPECT_EQ(FromA(denied6), SHOT);
  denied6.frag_offset = 10;
  EXPECT_EQ(FromA(denied6), SHOT);

  auto events = Events();
  int fragment_drops = 0;
  for (const auto& e : events) {
    if (e.drop_reason != BH_DROP_FRAGMENT) continue;
    fragment_drops++;
    EXPECT_EQ(e.kind, BH_EV_PACKET);
  }
  EXPECT_EQ(fragment_drops, 4);
}

TEST_F(DatapathTest, FragmentOfATrackedFlowFollowsConntrack) {
  ASSERT_EQ(FromA(Udp(kA, 5000, kB, 53)), OK);
  // B's fragmented reply: its first fragment hits conntrack, the rest follow.
  Packet first = Udp(kB, 53, kA, 5000);
  first.fragment = true;
  first.more_fragments = true;
  first.frag_id = 42;
  EXPECT_EQ(ToA(first), OK);
  Packet later = first;
  later.frag_offset = 3;
  later.more_fragments = false;
  EXPECT_EQ(ToA(later), OK);
}

TEST_F(DatapathTest, MissingTableAndUnknownProtocolsFailClosed) {
  datapath::Endpoint a = EndpointA();
  a.policy_table_id = BULKHEAD_TABLE_NONE;
  ASSERT_TRUE(dp_->UpsertEndpoint(a).ok());
  EXPECT_EQ(FromA(Tcp(kA, 40000, kB, 80, kSyn)), SHOT);
  auto events = Events();
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].drop_reason, BH_DROP_POLICY_MISS);
  a.allow_on_miss = true;
  ASSERT_TRUE(dp_->UpsertEndpoint(a).ok());
  EXPECT_EQ(FromA(Tcp(kA, 40000, kB, 80, kSyn)), OK);

  // GRE is outside the policy model: no table can allow it.
  Packet gre = Udp(kA, 0, kB, 0);
  gre.protocol = kGre;
  EXPECT_EQ(FromB(Tcp(kB, 1, kA, 2, kSyn)), OK) << "B's egress allows all it knows";
  gre.src = Ip::Parse(kB);
  gre.dst = Ip::Parse(kA);
  EXPECT_EQ(FromB(gre), SHOT);
  events = Events();
  ASSERT_FALSE(events.empty());
  EXPECT_EQ(events.back().drop_reason, BH_DROP_PROTOCOL);
}

TEST_F(DatapathTest, NonIpEthertypesAreDroppedAndMalformedIpToo) {
  EXPECT_EQ(Run(Program::kFromWorkload, if_a_, RawFrame(0x88cc)), SHOT);  // LLDP
  EXPECT_EQ(Run(Program::kToWorkload, if_a_, RawFrame(0x8100)), SHOT);    // VLAN tag
  EXPECT_EQ(Counter(BH_CTR_DROP_L2), 2u);
  std::vector<uint8_t> bad = Frame(Tcp(kA, 1, kB, 80, kSyn));
  bad[14] = 0x43;  // IHL 3
  EXPECT_EQ(Run(Program::kFromWorkload, if_a_, bad), SHOT);
  std::vector<uint8_t> cut = Frame(Tcp(kA, 1, kB, 80, kSyn));
  cut.resize(14 + 20 + 10);  // TCP header cut short
  EXPECT_EQ(Run(Program::kFromWorkload, if_a_, cut), SHOT);
  EXPECT_EQ(Counter(BH_CTR_DROP_MALFORMED), 2u);
}

TEST_F(DatapathTest, EventClassesCanBeSwitchedOff) {
  bh_settings s{};
  s.events_off = BH_EVF_NEW_FLOWS;
  ASSERT_TRUE(dp_->SetSettings(s).ok());
  EXPECT_EQ(FromA(Tcp(kA, 40000, kB, 80, kSyn)), OK);
  EXPECT_EQ(FromA(Tcp(kA, 40000, kB, 22, kSyn)), SHOT);
  auto events = Events();
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].verdict, BH_EV_DENY);
  EXPECT_EQ(Counter(BH_CTR_PASS_NEW), 1u) << "counters do not depend on events";
}

}  // namespace
}  // namespace bulkhead::bpftest
