// Explain (userspace lookups on the live maps) agrees with the programs on random new flows.
#include <linux/pkt_cls.h>

#include <random>
#include <set>

#include "fixture.h"

namespace bulkhead::bpftest {
namespace {

TEST_F(DatapathTest, ExplainAgreesWithTheProgramsOnRandomNewFlows) {
  std::mt19937 rng(20240611);  // fixed seed: a failure reproduces
  auto pick = [&rng](const auto& v) { return v[rng() % v.size()]; };
  const std::vector<std::string> peers4 = {kA, kB, kCidrPeer, kWorld, "198.51.100.200"};
  const std::vector<std::string> peers6 = {kA6, kB6, "2001:db8::1"};
  const std::vector<uint8_t> protocols = {kTcp, kUdp, kSctp, kIcmp, kGre};
  const std::vector<uint16_t> ports = {22, 53, 80, 443, 3868, 7999, 8000, 8001, 8002, 9090};
  const std::vector<uint8_t> modes = {BH_MODE_ENFORCE, BH_MODE_ENFORCE, BH_MODE_AUDIT,
                                      BH_MODE_LEARN};

  uint16_t unique = 10000;
  std::set<std::string> gre_pairs;
  int denied = 0, allowed = 0;
  for (int round = 0; round < 300; round++) {
    // Every 25 flows, change the endpoints' modes and sometimes take a table away.
    if (round % 25 == 0) {
      for (datapath::Endpoint ep : {EndpointA(), EndpointB()}) {
        ep.mode = static_cast<datapath::Mode>(pick(modes));
        if (rng() % 5 == 0) ep.policy_table_id = BULKHEAD_TABLE_NONE;
        ep.policy_generation = static_cast<uint32_t>(round + 1);
        ASSERT_TRUE(dp_->UpsertEndpoint(ep).ok());
      }
    }
    const bool on_a = rng() % 2 == 0;
    const bool egress = rng() % 2 == 0;
    const bool v6 = rng() % 3 == 0;
    const uint32_t ifindex = on_a ? if_a_ : if_b_;
    const std::string self = on_a ? (v6 ? kA6 : kA) : (v6 ? kB6 : kB);
    const std::string peer = v6 ? pick(peers6) : pick(peers4);
    uint8_t proto = pick(protocols);
    if (v6 && proto == kIcmp) proto = kIcmp6;
    // Protocols without ports are one flow per address pair (either direction): only the
    // first is new.
    if (proto == kGre && !gre_pairs.insert(std::to_string(ifindex) + peer).second) proto = kUdp;
    const uint16_t port = rng() % 4 == 0 ? static_cast<uint16_t>(rng()) : pick(ports);
    const uint16_t sport = unique++;

    Packet p;
    if (proto == kIcmp || proto == kIcmp6) {
      p = egress ? Echo(self, peer, true, sport) : Echo(peer, self, true, sport);
    } else {
      p = egress ? Tcp(self, sport, peer, port, kSyn) : Tcp(peer, sport, self, port, kSyn);
      p.protocol = proto;
    }

    datapath::FlowQuery q;
    q.ifindex = ifindex;
    q.direction = egress ? BULKHEAD_DIR_EGRESS : BULKHEAD_DIR_INGRESS;
    q.family = v6 ? BULKHEAD_FAMILY_IPV6 : BULKHEAD_FAMILY_IPV4;
    q.peer = Ip::Parse(peer).bytes;
    q.protocol = proto;
    q.port = port;
    auto d = dp_->Explain(q);
    ASSERT_TRUE(d.ok()) << d.status();

    const int action =
        Run(egress ? Program::kFromWorkload : Program::kToWorkload, ifindex, Frame(p));
    const std::string what = "round " + std::to_string(round) + ": " + (on_a ? "A " : "B ") +
                             (egress ? "egress to " : "ingress from ") + peer + " proto " +
                             std::to_string(proto) + " port " + std::to_string(port);
    EXPECT_EQ(action, d->outcome == BH_EV_DENY ? TC_ACT_SHOT : TC_ACT_OK) << what;
    (d->outcome == BH_EV_DENY ? denied : allowed)++;

    auto events = Events();
    ASSERT_EQ(events.size(), 1u) << what;
    const bh_flow_event& e = events[0];
    EXPECT_EQ(e.kind, BH_EV_NEW_FLOW) << what;
    EXPECT_EQ(e.verdict, d->outcome) << what << " " << Describe(e);
    EXPECT_EQ(e.peer_identity, d->peer_identity) << what;
    EXPECT_EQ(e.drop_reason, d->outcome == BH_EV_DENY ? d->drop_reason : BH_DROP_NONE) << what;
    EXPECT_EQ(e.rule_id, d->entry ? d->entry->rule_id : 0u) << what;
    EXPECT_EQ(e.policy_verdict, d->entry ? d->entry->verdict : 0) << what;
  }
  // The walk covered both outcomes (the policy and seed make sure of it).
  EXPECT_GT(denied, 30);
  EXPECT_GT(allowed, 30);

  datapath::FlowQuery unknown;
  unknown.ifindex = if_c_;
  EXPECT_EQ(dp_->Explain(unknown).status().code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace bulkhead::bpftest
