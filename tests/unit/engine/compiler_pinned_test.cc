// Unit tests for pinned identity numbers (CompilerOptions::pinned_identities): numbers of
// keys still present are kept, pinned numbers are never given to another key, the result is
// deterministic, bad pins are errors, and verdicts do not depend on numbering.
#include <gtest/gtest.h>

#include <set>

#include "cluster_builder.h"
#include "engine/compiler.h"
#include "engine/evaluator.h"

namespace bulkhead::engine {
namespace {

using namespace testing;  // NOLINT: test builders
using identity::NumericIdentity;
using policy::Direction;

Cluster Shop() {
  return ClusterBuilder()
      .Ns("shop", {{"team", "shop"}})
      .Ns("ops", {{"team", "ops"}})
      .Pod("shop", "client", {{"app", "client"}}, {"10.0.0.1"})
      .Pod("shop", "web", {{"app", "web"}}, {"10.0.0.2"}, {{"http", Protocol::kTCP, 80}})
      .Pod("shop", "db", {{"app", "db"}}, {"10.0.0.3"})
      .Pod("ops", "mon", {{"app", "mon"}}, {"10.0.1.1"})
      .Add(NetPol("shop", "db", Sel({{"app", "db"}}), kIngressOnly,
                  {Allow({PodPeer("shop", Sel({{"app", "web"}}))}, {Tcp(5432)}),
                   Allow({NsPeer(Sel({{"team", "ops"}}))}, {Tcp(9187)}),
                   Allow({IpBlock("192.168.0.0/16", {"192.168.1.0/24"})}, {Tcp(5432)})}))
      .Add(NetPol("shop", "web", Sel({{"app", "web"}}), kEgressOnly, {},
                  {Allow({IpBlock("203.0.113.0/24")}, {Tcp(443)})}))
      .Build();
}

// The number of the workload identity of `workload` ("ns/name").
NumericIdentity IdOf(const CompiledPolicy& cp, const std::string& workload) {
  for (const auto& id : cp.identities) {
    for (const auto& w : id.workloads) {
      if (w == workload) return id.id;
    }
  }
  return 0;
}
NumericIdentity IdOfCidr(const CompiledPolicy& cp, const std::string& cidr) {
  for (const auto& id : cp.identities) {
    if (id.cidr && id.cidr->ToString() == cidr) return id.id;
  }
  return 0;
}

TEST(CompilerPinned, NoPinsNumbersFromTheStartOfEachRange) {
  auto cp = CompilePolicy(Shop());
  ASSERT_TRUE(cp.ok()) << cp.status();
  std::set<NumericIdentity> workload_ids, cidr_ids;
  for (const auto& id : cp->identities) {
    if (id.key) workload_ids.insert(id.id);
    if (id.cidr) cidr_ids.insert(id.id);
  }
  EXPECT_EQ(*workload_ids.begin(), identity::kFirstWorkloadIdentity);
  EXPECT_EQ(*workload_ids.rbegin(), identity::kFirstWorkloadIdentity + workload_ids.size() - 1);
  EXPECT_EQ(*cidr_ids.begin(), identity::kFirstCidrIdentity);
  EXPECT_EQ(*cidr_ids.rbegin(), identity::kFirstCidrIdentity + cidr_ids.size() - 1);
  // Pins of the same compile change nothing.
  CompilerOptions o;
  o.pinned_identities = PinsOf(*cp);
  auto again = CompilePolicy(Shop(), o);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(DumpCompiledPolicy(*again), DumpCompiledPolicy(*cp));
}

TEST(CompilerPinned, KeptNumbersAndNoReuseAcrossARenumberingChange) {
  auto before = CompilePolicy(Shop());
  ASSERT_TRUE(before.ok()) << before.status();
  // Without pins, removing "client" (the lowest key) renumbers every other identity, and
  // dropping 192.168.1.0/24 renumbers the CIDRs after it.
  Cluster after_cluster = Shop();
  after_cluster.workloads.erase(after_cluster.workloads.begin());  // shop/client
  after_cluster.policies[0].ingress[2].peers[0].except.clear();
  // A new workload whose key sorts last.
  policy::Workload aaa;
  aaa.namespace_name = "shop";
  aaa.name = "zzz";
  aaa.kind = "Pod";
  aaa.labels = {{"app", "zzz"}};
  aaa.ips = {Ip("10.0.0.20")};
  after_cluster.workloads.push_back(aaa);
  auto unpinned = CompilePolicy(after_cluster);
  ASSERT_TRUE(unpinned.ok());
  EXPECT_NE(IdOf(*unpinned, "shop/web"), IdOf(*before, "shop/web"));

  CompilerOptions o;
  o.pinned_identities = PinsOf(*before);
  auto after = CompilePolicy(after_cluster, o);
  ASSERT_TRUE(after.ok()) << after.status();
  for (const char* w : {"shop/web", "shop/db", "ops/mon"}) {
    EXPECT_EQ(IdOf(*after, w), IdOf(*before, w)) << w;
  }
  for (const char* c : {"192.168.0.0/16", "203.0.113.0/24"}) {
    EXPECT_EQ(IdOfCidr(*after, c), IdOfCidr(*before, c)) << c;
  }
  EXPECT_EQ(IdOfCidr(*after, "192.168.1.0/24"), 0u);
  // The new key takes a number nobody pinned: not shop/client's, though client is gone.
  std::set<NumericIdentity> pinned;
  for (const auto& [k, id] : o.pinned_identities.workloads) pinned.insert(id);
  const NumericIdentity fresh = IdOf(*after, "shop/zzz");
  EXPECT_EQ(pinned.count(fresh), 0u);
  EXPECT_EQ(fresh, *pinned.rbegin() + 1);  // the lowest free number
  EXPECT_NE(fresh, IdOf(*before, "shop/client"));

  // Deterministic for equal inputs.
  auto again = CompilePolicy(after_cluster, o);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(DumpCompiledPolicy(*again), DumpCompiledPolicy(*after));

  // Same verdicts as the unpinned compile, flow by flow (numbers aside).
  Evaluator ev(after_cluster);
  for (const auto& src : after_cluster.workloads) {
    for (const auto& dst : after_cluster.workloads) {
      for (uint16_t port : {80, 443, 5432, 9187}) {
        Flow f;
        f.src.workload = &src;
        f.src.ip = src.ips[0];
        f.dst.workload = &dst;
        f.dst.ip = dst.ips[0];
        f.protocol = Protocol::kTCP;
        f.port = port;
        for (Direction d : {Direction::kEgress, Direction::kIngress}) {
          const policy::Workload& local = d == Direction::kEgress ? src : dst;
          const policy::IpAddr& peer = d == Direction::kEgress ? dst.ips[0] : src.ips[0];
          LookupResult a = Lookup(after->maps, after->endpoints.at(local.Id()).table_id, d, peer,
                                  f.protocol, port);
          LookupResult b = Lookup(unpinned->maps, unpinned->endpoints.at(local.Id()).table_id, d,
                                  peer, f.protocol, port);
          EXPECT_EQ(a.allowed(), ev.EvaluateDirection(f, d).allowed)
              << src.Id() << " -> " << dst.Id() << ":" << port;
          EXPECT_EQ(a.allowed(), b.allowed());
          EXPECT_EQ(a.value.rule_id, b.value.rule_id);
        }
      }
    }
  }
  // Outside addresses land in the same CIDR classes.
  for (const char* addr : {"192.168.1.7", "192.168.2.7", "203.0.113.9", "198.51.100.1"}) {
    LookupResult a = Lookup(after->maps, after->endpoints.at("shop/db").table_id,
                            Direction::kIngress, Ip(addr), Protocol::kTCP, 5432);
    LookupResult b = Lookup(unpinned->maps, unpinned->endpoints.at("shop/db").table_id,
                            Direction::kIngress, Ip(addr), Protocol::kTCP, 5432);
    EXPECT_EQ(a.allowed(), b.allowed()) << addr;
  }
}

TEST(CompilerPinned, PinsOfAbsentKeysStayReservedForIncrementalAdds) {
  // The key of a workload that is not in the cluster, as a compile gives it.
  policy::Workload ghost;
  ghost.namespace_name = "shop";
  ghost.name = "ghost";
  ghost.kind = "Pod";
  ghost.labels = {{"app", "ghost"}};
  ghost.ips = {Ip("10.0.0.9")};
  Cluster with_ghost = Shop();
  with_ghost.workloads.push_back(ghost);
  auto ghost_cp = CompilePolicy(with_ghost);
  ASSERT_TRUE(ghost_cp.ok());
  const CompiledIdentity* ghost_id = ghost_cp->FindIdentity(IdOf(*ghost_cp, "shop/ghost"));
  ASSERT_NE(ghost_id, nullptr);
  // 256 .. 259 would be the first numbers: pin 257 to the absent key.
  CompilerOptions o;
  o.pinned_identities.workloads[*ghost_id->key] = 257;
  auto compiler = PolicyCompiler::Create(Shop(), o);
  ASSERT_TRUE(compiler.ok()) << compiler.status();
  std::set<NumericIdentity> used;
  for (const auto& id : (*compiler)->compiled().identities) {
    if (id.key) used.insert(id.id);
  }
  EXPECT_EQ(used, (std::set<NumericIdentity>{256, 258, 259, 260}));
  // An incremental add skips pinned numbers too.
  policy::Workload w;
  w.namespace_name = "ops";
  w.name = "new";
  w.kind = "Pod";
  w.labels = {{"app", "new"}};
  w.ips = {Ip("10.0.1.9")};
  auto delta = (*compiler)->AddWorkload(w);
  ASSERT_TRUE(delta.ok()) << delta.status();
  EXPECT_EQ(delta->binding.identity, 261u);
  // The ghost's own key, when it appears, gets its pinned number back.
  auto cp = CompilePolicy(with_ghost, o);
  ASSERT_TRUE(cp.ok());
  EXPECT_EQ(IdOf(*cp, "shop/ghost"), 257u);
}

TEST(CompilerPinned, BadPinsAreErrors) {
  auto base = CompilePolicy(Shop());
  ASSERT_TRUE(base.ok());
  const PinnedIdentities good = PinsOf(*base);
  ASSERT_GE(good.workloads.size(), 2u);

  CompilerOptions o;
  o.pinned_identities = good;
  o.pinned_identities.workloads.begin()->second = 7;  // a reserved number
  auto r = CompilePolicy(Shop(), o);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("pinned_identities"), std::string::npos) << r.status();
  EXPECT_NE(r.status().message().find("not a workload identity"), std::string::npos);

  o.pinned_identities = good;
  auto second = std::next(o.pinned_identities.workloads.begin());
  second->second = o.pinned_identities.workloads.begin()->second;  // one number, two keys
  r = CompilePolicy(Shop(), o);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("pinned to two keys"), std::string::npos) << r.status();

  o.pinned_identities = good;
  o.pinned_identities.cidrs.begin()->second = identity::kFirstWorkloadIdentity;
  r = CompilePolicy(Shop(), o);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("not a CIDR identity"), std::string::npos) << r.status();

  o.pinned_identities = good;
  auto c2 = std::next(o.pinned_identities.cidrs.begin());
  c2->second = o.pinned_identities.cidrs.begin()->second;
  r = CompilePolicy(Shop(), o);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("pinned to two CIDRs"), std::string::npos) << r.status();
}

TEST(CompilerPinned, PinnedCidrsMatchWithHostBitsCleared) {
  auto base = CompilePolicy(Shop());
  ASSERT_TRUE(base.ok());
  CompilerOptions o;
  const NumericIdentity far = identity::kFirstCidrIdentity + 1000;
  o.pinned_identities.cidrs[Net("203.0.113.77/24")] = far;  // written with host bits
  auto cp = CompilePolicy(Shop(), o);
  ASSERT_TRUE(cp.ok()) << cp.status();
  EXPECT_EQ(IdOfCidr(*cp, "203.0.113.0/24"), far);
  // Sorted by number in the output.
  for (size_t i = 1; i < cp->identities.size(); ++i) {
    EXPECT_LT(cp->identities[i - 1].id, cp->identities[i].id);
  }
  EXPECT_EQ(Lookup(cp->maps, cp->endpoints.at("shop/web").table_id, Direction::kEgress,
                   Ip("203.0.113.5"), Protocol::kTCP, 443)
                .peer_identity,
            far);
}

}  // namespace
}  // namespace bulkhead::engine
