// Unit tests for incremental compilation: adding one workload updates only what it
// affects, the returned delta is exactly the change to the maps, and the result gives the
// same verdicts as a full compile of the grown cluster.
#include <gtest/gtest.h>

#include "cluster_builder.h"
#include "engine/compiler.h"
#include "engine/compiler_internal.h"
#include "engine/evaluator.h"

namespace bulkhead::engine {
namespace {

// Options with a table id base and table sharing, the rest defaulted.
CompilerOptions Options(uint32_t table_id_base, bool share_tables) {
  CompilerOptions o;
  o.table_id_base = table_id_base;
  o.share_tables = share_tables;
  return o;
}

using namespace testing;  // NOLINT: test builders
using policy::Direction;
namespace ci = compiler_internal;

policy::Workload MakeWorkload(const std::string& ns, const std::string& name, Labels labels,
                              std::vector<std::string> ips, std::vector<NamedPort> ports = {}) {
  policy::Workload w;
  w.namespace_name = ns;
  w.name = name;
  w.kind = "Pod";
  w.labels = std::move(labels);
  for (const auto& ip : ips) w.ips.push_back(Ip(ip));
  w.named_ports = std::move(ports);
  return w;
}

Cluster BaseCluster() {
  return ClusterBuilder()
      .Ns("shop", {{"team", "shop"}})
      .Ns("ops", {{"team", "ops"}})
      .Pod("shop", "client", {{"app", "client"}}, {"10.0.0.1"})
      .Pod("shop", "web", {{"app", "web"}}, {"10.0.0.2"}, {{"http", Protocol::kTCP, 80}})
      .Pod("shop", "db", {{"app", "db"}}, {"10.0.0.3"})
      .Pod("ops", "mon", {{"app", "mon"}}, {"10.0.1.1"})
      // client may reach any peer, in or out of the cluster, on its named port "http".
      .Add(NetPol("shop", "client", Sel({{"app", "client"}}), kEgressOnly, {},
                  {AllowAll({Named("http")})}))
      .Add(NetPol("shop", "db", Sel({{"app", "db"}}), kIngressOnly,
                  {Allow({PodPeer("shop", Sel({{"app", "web"}}))}, {Tcp(5432)}),
                   Allow({NsPeer(Sel({{"team", "ops"}}))}, {Tcp(9187)})}))
      .Add(Anp("deny-sandbox", 5, Sel(), std::nullopt,
               {RuleOf(RuleAction::kDeny, {NsPeer(Sel({{"env", "sandbox"}}))})}))
      .Build();
}

// Applies a delta's writes to `maps`, in the order given.
void Apply(const CompileDelta& d, PolicyMaps& maps) {
  for (const auto& [k, v] : d.ports) maps.ports.Update(k, v);
  for (const auto& [k, v] : d.peers) maps.peers.Update(k, v);
  for (const auto& [k, v] : d.ipcache) maps.ipcache.Update(k, v);
}

template <typename Map>
void ExpectSameEntries(const Map& a, const Map& b) {
  auto ea = a.Entries();
  auto eb = b.Entries();
  ASSERT_EQ(ea.size(), eb.size());
  for (size_t i = 0; i < ea.size(); ++i) {
    EXPECT_EQ(ToBytes(ea[i].first), ToBytes(eb[i].first)) << i;
    EXPECT_EQ(ToBytes(ea[i].second), ToBytes(eb[i].second)) << i;
  }
}

// Every workload against every workload address and some outside addresses, both
// directions, every protocol, edge ports: same verdict, reason and rule in both.
void ExpectSameVerdicts(const Cluster& c, const CompiledPolicy& a, const CompiledPolicy& b) {
  std::vector<IpAddr> peers = {Ip("8.8.8.8"), Ip("fd00::99")};
  for (const auto& w : c.workloads) peers.insert(peers.end(), w.ips.begin(), w.ips.end());
  for (const auto& w : c.workloads) {
    for (const auto& peer : peers) {
      for (Direction d : {Direction::kIngress, Direction::kEgress}) {
        for (Protocol p : ci::kProtocols) {
          for (uint16_t port : {0, 79, 80, 81, 5432, 8080, 9187}) {
            auto ra = Lookup(a.maps, a.endpoints.at(w.Id()).table_id, d, peer, p, port);
            auto rb = Lookup(b.maps, b.endpoints.at(w.Id()).table_id, d, peer, p, port);
            ASSERT_TRUE(ra.found && rb.found) << w.Id();
            EXPECT_EQ(ra.value.verdict, rb.value.verdict) << w.Id() << " " << peer.ToString();
            EXPECT_EQ(ra.value.rule_id, rb.value.rule_id) << w.Id() << " " << peer.ToString();
            EXPECT_EQ(ra.value.reason, rb.value.reason);
            EXPECT_EQ(ra.value.flags, rb.value.flags);
          }
        }
      }
    }
  }
}

std::unique_ptr<PolicyCompiler> MustCreate(const Cluster& c, CompilerOptions o = {}) {
  auto r = PolicyCompiler::Create(c, o);
  EXPECT_TRUE(r.ok()) << r.status();
  return r.ok() ? std::move(*r) : nullptr;
}

TEST(CompilerIncremental, AWorkloadWithAnExistingIdentityOnlyAddsItsAddresses) {
  auto pc = MustCreate(BaseCluster());
  size_t ports = pc->compiled().maps.ports.size();
  size_t peers = pc->compiled().maps.peers.size();
  auto d = pc->AddWorkload(MakeWorkload("shop", "db-2", {{"app", "db"}}, {"10.0.0.4", "fd00::4"}));
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_FALSE(d->new_identity);
  EXPECT_FALSE(d->new_table);
  EXPECT_TRUE(d->ports.empty());
  EXPECT_TRUE(d->peers.empty());
  EXPECT_EQ(d->ipcache.size(), 2u);
  EXPECT_EQ(d->binding, pc->compiled().endpoints.at("shop/db"));
  EXPECT_EQ(pc->compiled().maps.ports.size(), ports);
  EXPECT_EQ(pc->compiled().maps.peers.size(), peers);
  const CompiledIdentity* id = pc->compiled().FindIdentity(d->binding.identity);
  EXPECT_EQ(id->workloads, (std::vector<std::string>{"shop/db", "shop/db-2"}));
}

TEST(CompilerIncremental, ANewIdentityGetsItsTableAndItsClassWhereItMatters) {
  Cluster base = BaseCluster();
  auto pc = MustCreate(base);
  PolicyMaps before = pc->compiled().maps;
  // A new app in ops: a new identity; ops peers are a class in db's ingress table.
  policy::Workload w = MakeWorkload("ops", "alert", {{"app", "alert"}}, {"10.0.1.2"});
  auto d = pc->AddWorkload(w);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_TRUE(d->new_identity);
  // Nothing selects it but the ANP, like mon: it shares mon's table.
  EXPECT_FALSE(d->new_table);
  EXPECT_EQ(d->binding.table_id, pc->compiled().endpoints.at("ops/mon").table_id);
  // Its class in db's ingress table already existed (mon's): one peer entry, no ports.
  EXPECT_TRUE(d->ports.empty());
  ASSERT_EQ(d->peers.size(), 1u);
  EXPECT_EQ(d->peers[0].first.table_id, pc->compiled().endpoints.at("shop/db").table_id);
  EXPECT_EQ(d->peers[0].first.direction, BULKHEAD_DIR_INGRESS);
  Apply(*d, before);
  ExpectSameEntries(before.ports, pc->compiled().maps.ports);
  ExpectSameEntries(before.peers, pc->compiled().maps.peers);
  ExpectSameEntries(before.ipcache, pc->compiled().maps.ipcache);

  Cluster grown = base;
  grown.workloads.push_back(w);
  auto full = CompilePolicy(grown);
  ASSERT_TRUE(full.ok());
  ExpectSameVerdicts(grown, pc->compiled(), *full);
}

TEST(CompilerIncremental, APeerDistinguishedOnlyByItsNamedPortsGetsAClass) {
  // client's egress allows every peer on the peer's own "http" port: a new identity with
  // "http" on 8080 must get a class in client's table although it matches no selector.
  Cluster base = BaseCluster();
  auto pc = MustCreate(base);
  PolicyMaps before = pc->compiled().maps;
  policy::Workload w = MakeWorkload("ops", "proxy", {{"app", "proxy"}}, {"10.0.1.3"},
                                    {{"http", Protocol::kTCP, 8080}});
  auto d = pc->AddWorkload(w);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_TRUE(d->new_identity);
  uint32_t client_table = pc->compiled().endpoints.at("shop/client").table_id;
  bool found = false;
  for (const auto& [k, v] : d->peers) {
    if (k.table_id == client_table && k.direction == BULKHEAD_DIR_EGRESS) found = true;
  }
  EXPECT_TRUE(found) << "no peer entry in the client's egress table";
  EXPECT_FALSE(d->ports.empty());  // 8080 is a new verdict function there: a new class
  Cluster grown = base;
  grown.workloads.push_back(w);
  Evaluator ev(grown);
  for (uint16_t port : {80, 8080}) {
    Flow f = MakeFlow(grown, "shop/client", "ops/proxy", Protocol::kTCP, port);
    auto r = Lookup(pc->compiled().maps, client_table, Direction::kEgress, Ip("10.0.1.3"),
                    Protocol::kTCP, port);
    EXPECT_EQ(r.allowed(), ev.EvaluateDirection(f, Direction::kEgress).allowed) << port;
  }
  Apply(*d, before);
  ExpectSameEntries(before.ports, pc->compiled().maps.ports);
  ExpectSameEntries(before.peers, pc->compiled().maps.peers);
  auto full = CompilePolicy(grown);
  ASSERT_TRUE(full.ok());
  ExpectSameVerdicts(grown, pc->compiled(), *full);
}

TEST(CompilerIncremental, ANewPolicySetGetsANewTableAboveTheLiveIds) {
  Cluster base = BaseCluster();
  base.namespaces.push_back(policy::Namespace{
      "lab", {{"kubernetes.io/metadata.name", "lab"}, {"env", "sandbox"}}, {}, false, {}});
  auto pc = MustCreate(base);
  uint32_t next = pc->compiled().NextTableIdBase();
  PolicyMaps before = pc->compiled().maps;
  policy::Workload w =
      MakeWorkload("shop", "db-admin", {{"app", "db"}, {"role", "admin"}}, {"10.0.0.9"});
  // Same policies as db (app=db), different labels: shares db's table.
  auto shared = pc->AddWorkload(w);
  ASSERT_TRUE(shared.ok());
  EXPECT_TRUE(shared->new_identity);
  EXPECT_FALSE(shared->new_table);
  // A workload in the sandbox namespace: every table's ANP deny now distinguishes it.
  policy::Workload s = MakeWorkload("lab", "x", {{"app", "x"}}, {"10.0.9.1"});
  auto d = pc->AddWorkload(s);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_TRUE(d->new_identity);
  EXPECT_FALSE(d->new_table);                                // nothing new selects it
  EXPECT_GE(d->peers.size(), pc->compiled().tables.size());  // ingress of every table
  // One with an egress policy of its own: a new table, numbered above the live ones.
  Cluster with_policy = base;
  with_policy.policies.push_back(
      NetPol("lab", "y", Sel({{"app", "y"}}), kEgressOnly, {}, {AllowAll({Tcp(53)})}));
  auto pc2 = MustCreate(with_policy);
  uint32_t next2 = pc2->compiled().NextTableIdBase();
  auto d2 = pc2->AddWorkload(MakeWorkload("lab", "y", {{"app", "y"}}, {"10.0.9.2"}));
  ASSERT_TRUE(d2.ok());
  EXPECT_TRUE(d2->new_table);
  EXPECT_EQ(d2->binding.table_id, next2);
  EXPECT_GT(next, 0u);

  Cluster grown = with_policy;
  grown.workloads.push_back(MakeWorkload("lab", "y", {{"app", "y"}}, {"10.0.9.2"}));
  auto full = CompilePolicy(grown);
  ASSERT_TRUE(full.ok());
  ExpectSameVerdicts(grown, pc2->compiled(), *full);
  Cluster grown1 = base;
  grown1.workloads.push_back(w);
  grown1.workloads.push_back(s);
  auto full1 = CompilePolicy(grown1);
  ASSERT_TRUE(full1.ok());
  ExpectSameVerdicts(grown1, pc->compiled(), *full1);
  Apply(*shared, before);
  Apply(*d, before);
  ExpectSameEntries(before.ports, pc->compiled().maps.ports);
  ExpectSameEntries(before.peers, pc->compiled().maps.peers);
  ExpectSameEntries(before.ipcache, pc->compiled().maps.ipcache);
}

TEST(CompilerIncremental, UnsharedTablesGetTheirOwnCopy) {
  Cluster base = BaseCluster();
  auto pc = MustCreate(base, Options(10, false));
  size_t tables = pc->compiled().tables.size();
  policy::Workload w =
      MakeWorkload("shop", "db-admin", {{"app", "db"}, {"role", "admin"}}, {"10.0.0.9"});
  auto d = pc->AddWorkload(w);
  ASSERT_TRUE(d.ok());
  EXPECT_TRUE(d->new_table);
  EXPECT_EQ(pc->compiled().tables.size(), tables + 1);
  EXPECT_NE(d->binding.table_id, pc->compiled().endpoints.at("shop/db").table_id);
  Cluster grown = base;
  grown.workloads.push_back(w);
  auto full = CompilePolicy(grown);
  ASSERT_TRUE(full.ok());
  ExpectSameVerdicts(grown, pc->compiled(), *full);
}

TEST(CompilerIncremental, AnAgentsViewHasTablesOnlyForItsNodeAndGrowsThemOnDemand) {
  Cluster base = BaseCluster();
  for (auto& w : base.workloads) w.node = w.name == "db" ? "h1" : "h2";
  CompilerOptions h1;
  h1.node = "h1";
  auto pc = MustCreate(base, h1);
  const CompiledPolicy& cp = pc->compiled();
  ASSERT_EQ(cp.endpoints.size(), 1u);
  EXPECT_EQ(cp.endpoints.count("shop/db"), 1u);
  EXPECT_EQ(cp.tables.size(), 1u);
  // Identities of other nodes exist (they are peers) but have no table.
  const CompiledIdentity* web = nullptr;
  for (const auto& id : cp.identities) {
    if (id.kind == identity::IdentityKind::kWorkload && id.workloads.front() == "shop/web")
      web = &id;
  }
  ASSERT_NE(web, nullptr);
  EXPECT_EQ(web->table_id, BULKHEAD_TABLE_NONE);
  // db's table still tells every peer of the cluster apart.
  auto full = CompilePolicy(base);
  ASSERT_TRUE(full.ok());
  for (const char* peer : {"10.0.0.1", "10.0.0.2", "10.0.1.1", "8.8.8.8"}) {
    for (uint16_t port : {5432, 9187, 80}) {
      auto a = Lookup(cp.maps, cp.endpoints.at("shop/db").table_id, Direction::kIngress, Ip(peer),
                      Protocol::kTCP, port);
      auto b = Lookup(full->maps, full->endpoints.at("shop/db").table_id, Direction::kIngress,
                      Ip(peer), Protocol::kTCP, port);
      EXPECT_EQ(a.value.verdict, b.value.verdict) << peer << " " << port;
      EXPECT_EQ(a.value.rule_id, b.value.rule_id) << peer << " " << port;
    }
  }
  // A workload on another node: ipcache only, no endpoint, no table.
  policy::Workload remote =
      MakeWorkload("shop", "web-2", {{"app", "web"}}, {"10.0.0.7"}, {{"http", Protocol::kTCP, 80}});
  remote.node = "h2";
  auto d1 = pc->AddWorkload(remote);
  ASSERT_TRUE(d1.ok()) << d1.status();
  EXPECT_EQ(d1->binding.table_id, BULKHEAD_TABLE_NONE);
  EXPECT_FALSE(d1->new_table);
  EXPECT_EQ(cp.endpoints.count("shop/web-2"), 0u);
  EXPECT_EQ(d1->ipcache.size(), 1u);
  // The first web pod on h1: web's identity exists but had no table here; now it does.
  PolicyMaps before = cp.maps;
  policy::Workload local = remote;
  local.name = "web-3";
  local.ips = {Ip("10.0.0.8")};
  local.node = "h1";
  auto d2 = pc->AddWorkload(local);
  ASSERT_TRUE(d2.ok()) << d2.status();
  EXPECT_FALSE(d2->new_identity);
  EXPECT_TRUE(d2->new_table);
  EXPECT_NE(d2->binding.table_id, BULKHEAD_TABLE_NONE);
  EXPECT_EQ(cp.endpoints.at("shop/web-3").table_id, d2->binding.table_id);
  EXPECT_FALSE(d2->ports.empty());
  Apply(*d2, before);
  ExpectSameEntries(before.ports, cp.maps.ports);
  ExpectSameEntries(before.peers, cp.maps.peers);
  ExpectSameEntries(before.ipcache, cp.maps.ipcache);
  Cluster grown = base;
  grown.workloads.push_back(remote);
  grown.workloads.push_back(local);
  auto grown_full = CompilePolicy(grown);
  ASSERT_TRUE(grown_full.ok());
  Evaluator ev(grown);
  for (const char* src : {"shop/client", "ops/mon", "shop/db"}) {
    for (uint16_t port : {79, 80, 81}) {
      Flow f = MakeFlow(grown, src, "shop/web-3", Protocol::kTCP, port);
      auto r = Lookup(cp.maps, d2->binding.table_id, Direction::kIngress, *f.src.ip, Protocol::kTCP,
                      port);
      auto v = ev.EvaluateDirection(f, Direction::kIngress);
      EXPECT_EQ(r.allowed(), v.allowed) << src << " " << port << ": " << v.Explain();
    }
  }
}

TEST(CompilerIncremental, RejectsDuplicatesWithoutChangingAnything) {
  auto pc = MustCreate(BaseCluster());
  std::string dump = DumpCompiledPolicy(pc->compiled());
  auto dup = pc->AddWorkload(MakeWorkload("shop", "db", {{"app", "db"}}, {"10.0.0.8"}));
  EXPECT_FALSE(dup.ok());
  auto clash = pc->AddWorkload(MakeWorkload("shop", "other", {{"app", "db"}}, {"10.0.0.3"}));
  ASSERT_FALSE(clash.ok());
  EXPECT_NE(clash.status().message().find("shop/db"), std::string::npos) << clash.status();
  EXPECT_EQ(DumpCompiledPolicy(pc->compiled()), dump);
}

}  // namespace
}  // namespace bulkhead::engine
