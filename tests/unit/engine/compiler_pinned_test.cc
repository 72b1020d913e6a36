// Unit tests for numbering carried over from an earlier compile: pinned identity numbers
// (kept for keys still present, never given to another key), pinned rule ids, and tables
// reused by content. Results are deterministic, bad pins are errors, and verdicts do not
// depend on numbering.
#include <gtest/gtest.h>

#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
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

// The rule id of `policy`'s ingress rule `index` (0: none).
uint32_t RuleIdOf(const CompiledPolicy& cp, const std::string& policy, int index,
                  Direction d = Direction::kIngress) {
  for (uint32_t id = 1; id < cp.rules.size(); ++id) {
    const CompiledRule& r = cp.rules[id];
    if (r.policy == policy && r.rule_index == index && r.direction == d) return id;
  }
  return 0;
}

// Every flow between the cluster's workloads on a few ports, as seen by the tables.
std::vector<std::string> Verdicts(const Cluster& c, const CompiledPolicy& cp) {
  std::vector<std::string> out;
  for (const auto& src : c.workloads) {
    for (const auto& dst : c.workloads) {
      for (uint16_t port : {80, 443, 5432, 8080, 9187}) {
        for (Direction d : {Direction::kEgress, Direction::kIngress}) {
          const policy::Workload& local = d == Direction::kEgress ? src : dst;
          const policy::IpAddr& peer = d == Direction::kEgress ? dst.ips[0] : src.ips[0];
          LookupResult r =
              Lookup(cp.maps, cp.endpoints.at(local.Id()).table_id, d, peer, Protocol::kTCP, port);
          const CompiledRule& rule = cp.rules[r.value.rule_id];
          out.push_back(absl::StrCat(src.Id(), ">", dst.Id(), ":", port, " ",
                                     policy::DirectionName(d), " ", r.allowed() ? "allow" : "deny",
                                     " ", rule.policy, "#", rule.rule_index));
        }
      }
    }
  }
  return out;
}

TEST(CompilerPinned, RuleIdsSurviveAPolicyRemovedBeforeThem) {
  auto before = CompilePolicy(Shop());
  ASSERT_TRUE(before.ok());
  const uint32_t web_rule = RuleIdOf(*before, "NetworkPolicy shop/web", 0, Direction::kEgress);
  ASSERT_NE(web_rule, 0u);
  // Without pins, removing the first policy renumbers the second's rules.
  Cluster after_cluster = Shop();
  after_cluster.policies.erase(after_cluster.policies.begin());
  // And a new policy with a rule of its own.
  after_cluster.policies.push_back(NetPol("ops", "mon", Sel({{"app", "mon"}}), kIngressOnly,
                                          {Allow({NsPeer(Sel({{"team", "shop"}}))}, {Tcp(8080)})}));
  auto unpinned = CompilePolicy(after_cluster);
  ASSERT_TRUE(unpinned.ok());
  EXPECT_NE(RuleIdOf(*unpinned, "NetworkPolicy shop/web", 0, Direction::kEgress), web_rule);

  CompilerOptions o;
  o.pinned_identities = PinsOf(*before);
  o.pinned_rules = RulePinsOf(*before);
  auto after = CompilePolicy(after_cluster, o);
  ASSERT_TRUE(after.ok()) << after.status();
  EXPECT_EQ(RuleIdOf(*after, "NetworkPolicy shop/web", 0, Direction::kEgress), web_rule);
  const uint32_t fresh = RuleIdOf(*after, "NetworkPolicy ops/mon", 0);
  ASSERT_NE(fresh, 0u);
  for (const auto& [key, id] : o.pinned_rules) EXPECT_NE(fresh, id) << "a pinned id reused";
  EXPECT_TRUE(after->rules[1].policy.empty()) << "the removed policy's ids stay free";
  EXPECT_EQ(ComputeStats(*after).rules, ComputeStats(*unpinned).rules);
  EXPECT_EQ(Verdicts(after_cluster, *after), Verdicts(after_cluster, *unpinned));
  auto again = CompilePolicy(after_cluster, o);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(DumpCompiledPolicy(*again), DumpCompiledPolicy(*after));

  o.pinned_rules.begin()->second = 0;
  auto bad = CompilePolicy(after_cluster, o);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("pinned_rules"), std::string::npos) << bad.status();
  o.pinned_rules = RulePinsOf(*before);
  std::next(o.pinned_rules.begin())->second = o.pinned_rules.begin()->second;
  bad = CompilePolicy(after_cluster, o);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("pinned to two rules"), std::string::npos) << bad.status();
}

TEST(CompilerPinned, UnchangedTablesKeepTheirIdsAndEntries) {
  // One table per identity, so that most tables are untouched by a change to one policy.
  CompilerOptions first;
  first.share_tables = false;
  auto before = CompilePolicy(Shop(), first);
  ASSERT_TRUE(before.ok());
  Cluster changed = Shop();
  changed.policies[0].ingress[0].ports = {Tcp(5433)};  // shop/db's table only
  CompilerOptions o;
  o.share_tables = false;
  o.table_id_base = before->NextTableIdBase();
  o.pinned_identities = PinsOf(*before);
  o.pinned_rules = RulePinsOf(*before);
  o.reuse_tables_of = &*before;
  auto after = CompilePolicy(changed, o);
  ASSERT_TRUE(after.ok()) << after.status();
  for (const auto& [workload, binding] : after->endpoints) {
    const uint32_t old_table = before->endpoints.at(workload).table_id;
    if (workload == "shop/db") {
      EXPECT_GE(binding.table_id, o.table_id_base) << "a changed table takes a new id";
    } else {
      EXPECT_EQ(binding.table_id, old_table) << workload << " keeps its table";
      std::string a, b;
      before->maps.peers.AppendTableContent(old_table, &a);
      before->maps.ports.AppendTableContent(old_table, &a);
      after->maps.peers.AppendTableContent(old_table, &b);
      after->maps.ports.AppendTableContent(old_table, &b);
      EXPECT_EQ(a, b);
    }
  }
  EXPECT_EQ(after->NextTableIdBase(), o.table_id_base + 1);
  // Tables stay sorted, and the verdicts are a fresh compile's.
  for (size_t i = 1; i < after->tables.size(); ++i) {
    EXPECT_LT(after->tables[i - 1].table_id, after->tables[i].table_id);
  }
  auto fresh = CompilePolicy(changed);
  ASSERT_TRUE(fresh.ok());
  EXPECT_EQ(Verdicts(changed, *after), Verdicts(changed, *fresh));
  // Deterministic; and no reuse without the earlier compile.
  auto again = CompilePolicy(changed, o);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(DumpCompiledPolicy(*again), DumpCompiledPolicy(*after));
  o.reuse_tables_of = nullptr;
  auto no_reuse = CompilePolicy(changed, o);
  ASSERT_TRUE(no_reuse.ok());
  for (const auto& t : no_reuse->tables) EXPECT_GE(t.table_id, o.table_id_base);
  // Ids at or above the base are never reused (they may be given out anew).
  o.reuse_tables_of = &*before;
  o.table_id_base = 1;
  auto low = CompilePolicy(changed, o);
  ASSERT_TRUE(low.ok());
  std::set<uint32_t> ids;
  for (const auto& t : low->tables) EXPECT_TRUE(ids.insert(t.table_id).second);
}

TEST(CompilerPinned, AMovedClusterAndDroppedIncrementalStateKeepTheOutput) {
  auto copied = PolicyCompiler::Create(Shop());
  ASSERT_TRUE(copied.ok());
  Cluster c = Shop();
  auto moved = PolicyCompiler::Create(std::move(c));
  ASSERT_TRUE(moved.ok());
  EXPECT_EQ(DumpCompiledPolicy((*moved)->compiled()), DumpCompiledPolicy((*copied)->compiled()));
  (*moved)->DropIncrementalState();
  EXPECT_EQ(DumpCompiledPolicy((*moved)->compiled()), DumpCompiledPolicy((*copied)->compiled()));
  EXPECT_EQ((*moved)->cluster().workloads.size(), Shop().workloads.size());
  policy::Workload w;
  w.namespace_name = "ops";
  w.name = "late";
  w.kind = "Pod";
  w.ips = {Ip("10.0.1.50")};
  EXPECT_EQ((*moved)->AddWorkload(w).status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE((*copied)->AddWorkload(w).ok());
  EXPECT_FALSE((*moved)->cluster().policies.empty());
  auto lean = PolicyCompiler::Create(Shop());
  ASSERT_TRUE(lean.ok());
  (*lean)->DropIncrementalState(/*keep_policies=*/false);
  EXPECT_TRUE((*lean)->cluster().policies.empty());
  EXPECT_EQ((*lean)->cluster().workloads.size(), Shop().workloads.size());
  auto fresh = CompilePolicy(Shop());
  ASSERT_TRUE(fresh.ok());
  EXPECT_EQ(DumpCompiledPolicy((*lean)->compiled()), DumpCompiledPolicy(*fresh));
}

}  // namespace
}  // namespace bulkhead::engine
