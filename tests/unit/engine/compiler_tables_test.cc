// Unit tests for the policy compiler's tables: prefix encoding, the kernel map models,
// classes, coverage, identities and the ipcache, checked against the reference evaluator
// on hand-made clusters.
#include <gtest/gtest.h>

#include <random>
#include <set>

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
namespace ci = compiler_internal;
using policy::Direction;

// ---- prefix encoding

ci::Outcome O(uint32_t rule) {
  ci::Outcome o;
  o.rule_id = rule;
  o.verdict = rule % 2 ? BULKHEAD_VERDICT_ALLOW : BULKHEAD_VERDICT_DENY;
  return o;
}

// The value the longest matching prefix gives at every port (longer prefixes painted last).
std::vector<ci::Outcome> PaintLpm(std::vector<ci::PortPrefix> entries) {
  std::stable_sort(entries.begin(), entries.end(),
                   [](const auto& a, const auto& b) { return a.bits < b.bits; });
  std::vector<ci::Outcome> at(65536);
  std::vector<bool> covered(65536, false);
  for (const auto& e : entries) {
    uint32_t size = 65536u >> e.bits;
    EXPECT_EQ(e.port % size, 0u) << "unaligned prefix";
    for (uint32_t p = e.port; p < e.port + size; ++p) {
      at[p] = e.outcome;
      covered[p] = true;
    }
  }
  for (uint32_t p = 0; p < 65536; ++p) EXPECT_TRUE(covered[p]) << "port " << p << " uncovered";
  return at;
}

// Prefixes needed without nesting: the minimal disjoint cover of each piece.
size_t DisjointCover(const ci::PortFunction& f) {
  size_t n = 0;
  for (size_t i = 0; i < f.pieces.size(); ++i) {
    uint32_t lo = f.pieces[i].first;
    uint32_t hi = i + 1 < f.pieces.size() ? f.pieces[i + 1].first - 1 : 65535;
    while (lo <= hi) {
      uint32_t size = 1;
      while ((lo % (size * 2)) == 0 && lo + size * 2 - 1 <= hi && size < 65536) size *= 2;
      lo += size;
      ++n;
    }
  }
  return n;
}

TEST(CompilerPrefixes, SinglePortInDenyAllIsTwoEntries) {
  ci::PortFunction f;
  f.pieces = {{0, O(2)}, {80, O(1)}, {81, O(2)}};
  auto e = ci::EncodePrefixes(f);
  ASSERT_EQ(e.size(), 2u);
  EXPECT_EQ(e[0].bits, 0);
  EXPECT_EQ(e[1].port, 80);
  EXPECT_EQ(e[1].bits, 16);
  EXPECT_EQ(DisjointCover(f), 17u);
}

TEST(CompilerPrefixes, ConstantFunctionIsOneRootEntry) {
  ci::PortFunction f;
  f.pieces = {{0, O(3)}};
  auto e = ci::EncodePrefixes(f);
  ASSERT_EQ(e.size(), 1u);
  EXPECT_EQ(e[0].bits, 0);
  EXPECT_EQ(e[0].port, 0);
}

TEST(CompilerPrefixes, RandomFunctionsAreEncodedExactlyAndNoLargerThanDisjointCovers) {
  std::mt19937 rng(12345);
  for (int iter = 0; iter < 60; ++iter) {
    ci::PortFunction f;
    std::set<uint32_t> starts = {0};
    int cuts = 1 + static_cast<int>(rng() % 8);
    for (int i = 0; i < cuts; ++i) {
      // Bias towards realistic edges.
      uint32_t p = rng() % 3 == 0 ? (rng() % 2048) : rng() % 65536;
      starts.insert(p);
    }
    uint32_t prev = 99;
    for (uint32_t s : starts) {
      uint32_t v;
      do {
        v = rng() % 4;
      } while (v == prev);
      prev = v;
      f.pieces.emplace_back(s, O(v));
    }
    auto e = ci::EncodePrefixes(f);
    EXPECT_LE(e.size(), DisjointCover(f));
    ASSERT_FALSE(e.empty());
    EXPECT_EQ(e[0].bits, 0);  // full coverage
    std::vector<ci::Outcome> at = PaintLpm(e);
    size_t piece = 0;
    for (uint32_t port = 0; port < 65536; ++port) {
      if (piece + 1 < f.pieces.size() && f.pieces[piece + 1].first == port) ++piece;
      ASSERT_EQ(at[port], f.pieces[piece].second) << "iteration " << iter << " port " << port;
    }
  }
}

TEST(CompilerPrefixes, ManyDistinctOutcomesAreEncodedExactly) {
  // More than 64 distinct outcomes takes the encoder's general path.
  std::mt19937 rng(99);
  for (int iter = 0; iter < 5; ++iter) {
    ci::PortFunction f;
    std::set<uint32_t> starts = {0};
    while (starts.size() < 150) starts.insert(rng() % 65536);
    uint32_t v = 0;
    for (uint32_t s : starts) f.pieces.emplace_back(s, O(1000 + (v++ % 100)));
    auto e = ci::EncodePrefixes(f);
    EXPECT_LE(e.size(), DisjointCover(f));
    std::vector<ci::Outcome> at = PaintLpm(e);
    size_t piece = 0;
    for (uint32_t port = 0; port < 65536; ++port) {
      if (piece + 1 < f.pieces.size() && f.pieces[piece + 1].first == port) ++piece;
      ASSERT_EQ(at[port], f.pieces[piece].second) << "port " << port;
    }
  }
}

// ---- map models

TEST(CompilerMaps, LpmTrieReturnsLongestMatchingPrefix) {
  PolicyPortMap m;
  m.Update(PortKey(1, 0, Direction::kIngress, Protocol::kTCP, 0, 0), {1, 0, 0, 0, 10});
  m.Update(PortKey(1, 0, Direction::kIngress, Protocol::kTCP, 1024, 6), {2, 0, 0, 0, 11});
  m.Update(PortKey(1, 0, Direction::kIngress, Protocol::kTCP, 1030, 16), {1, 0, 0, 0, 12});
  auto at = [&](uint16_t port) {
    auto* v = m.Lookup(PortKey(1, 0, Direction::kIngress, Protocol::kTCP, port, 16));
    return v ? v->rule_id : 0u;
  };
  EXPECT_EQ(at(80), 10u);
  EXPECT_EQ(at(1024), 11u);
  EXPECT_EQ(at(2047), 11u);
  EXPECT_EQ(at(2048), 10u);
  EXPECT_EQ(at(1030), 12u);
  // Other tables, classes, directions and protocols never match.
  EXPECT_EQ(m.Lookup(PortKey(2, 0, Direction::kIngress, Protocol::kTCP, 80, 16)), nullptr);
  EXPECT_EQ(m.Lookup(PortKey(1, 1, Direction::kIngress, Protocol::kTCP, 80, 16)), nullptr);
  EXPECT_EQ(m.Lookup(PortKey(1, 0, Direction::kEgress, Protocol::kTCP, 80, 16)), nullptr);
  EXPECT_EQ(m.Lookup(PortKey(1, 0, Direction::kIngress, Protocol::kUDP, 80, 16)), nullptr);
  // Host bits beyond the prefix are ignored on update, as in the kernel.
  m.Update(PortKey(1, 0, Direction::kIngress, Protocol::kTCP, 1024 + 7, 6), {2, 0, 0, 0, 13});
  EXPECT_EQ(m.size(), 3u);
  EXPECT_EQ(at(1100), 13u);
  EXPECT_TRUE(m.Delete(PortKey(1, 0, Direction::kIngress, Protocol::kTCP, 1024, 6)));
  EXPECT_EQ(at(1100), 10u);
}

TEST(CompilerMaps, IpcacheKeysRoundTripAndPortIsNetworkOrder) {
  auto k = IpcacheKey(Net("192.0.2.0/24"));
  EXPECT_EQ(k.prefixlen, 32u + 24u);
  EXPECT_EQ(k.family, BULKHEAD_FAMILY_IPV4);
  EXPECT_EQ(k.addr[0], 192);
  EXPECT_EQ(k.addr[4], 0);
  EXPECT_EQ(IpcacheKeyPrefix(k), Net("192.0.2.0/24"));
  auto k6 = IpcacheKey(Net("fd00:1::/32"));
  EXPECT_EQ(k6.prefixlen, 32u + 32u);
  EXPECT_EQ(k6.family, BULKHEAD_FAMILY_IPV6);
  EXPECT_EQ(IpcacheKeyPrefix(k6), Net("fd00:1::/32"));
  auto pk = PortKey(7, 3, Direction::kEgress, Protocol::kUDP, 0x1234, 16);
  const auto* bytes = reinterpret_cast<const uint8_t*>(&pk.port);
  EXPECT_EQ(bytes[0], 0x12);
  EXPECT_EQ(bytes[1], 0x34);
  EXPECT_EQ(PortKeyPort(pk), 0x1234);
  EXPECT_EQ(pk.prefixlen, BULKHEAD_PORT_PREFIX_FULL);
  EXPECT_EQ(pk.direction, BULKHEAD_DIR_EGRESS);
}

// ---- compiled clusters

CompiledPolicy MustCompile(const Cluster& c, CompilerOptions o = {}) {
  auto r = CompilePolicy(c, o);
  EXPECT_TRUE(r.ok()) << r.status();
  return r.ok() ? std::move(*r) : CompiledPolicy{};
}

// Checks one flow direction against the evaluator.
void ExpectAgrees(const Cluster& c, const CompiledPolicy& cp, const Flow& f, Direction d) {
  Evaluator ev(c);
  DirectionVerdict v = ev.EvaluateDirection(f, d);
  const FlowEndpoint& local = d == Direction::kEgress ? f.src : f.dst;
  const FlowEndpoint& remote = d == Direction::kEgress ? f.dst : f.src;
  ASSERT_NE(local.workload, nullptr);
  IpAddr addr = remote.ip ? *remote.ip : remote.workload->ips.front();
  LookupResult r =
      Lookup(cp.maps, cp.endpoints.at(local.workload->Id()).table_id, d, addr, f.protocol, f.port);
  ASSERT_TRUE(r.found);
  EXPECT_EQ(r.allowed(), v.allowed) << v.Explain();
  EXPECT_EQ(r.would_deny(), v.would_deny) << v.Explain();
  if (v.reason == Reason::kRule || v.reason == Reason::kDefaultDeny) {
    ASSERT_LT(r.value.rule_id, cp.rules.size());
    EXPECT_EQ(cp.rules[r.value.rule_id].policy, v.policy);
    EXPECT_EQ(cp.rules[r.value.rule_id].rule_index, v.rule_index);
  } else {
    EXPECT_EQ(r.value.rule_id, BULKHEAD_RULE_NONE);
  }
}

Cluster ShopCluster() {
  return ClusterBuilder()
      .Ns("shop", {{"team", "shop"}})
      .Ns("ops", {{"team", "ops"}})
      .Pod("shop", "web", {{"app", "web"}}, {"10.0.0.1", "fd00::1"},
           {{"http", Protocol::kTCP, 8080}})
      .Pod("shop", "api", {{"app", "api"}}, {"10.0.0.2"}, {{"http", Protocol::kTCP, 9000}})
      .Pod("shop", "api-2", {{"app", "api"}, {"pod-template-hash", "x1"}}, {"10.0.0.3"},
           {{"http", Protocol::kTCP, 9000}})
      .Pod("shop", "db", {{"app", "db"}}, {"10.0.0.4"})
      .Pod("ops", "mon", {{"app", "mon"}}, {"10.0.1.1"})
      .Node("n1", {{"zone", "a"}}, {"192.0.2.10"})
      // db: only api on 5432; web: http (named) from anywhere.
      .Add(NetPol("shop", "db", Sel({{"app", "db"}}), kIngressOnly,
                  {Allow({PodPeer("shop", Sel({{"app", "api"}}))}, {Tcp(5432)})}))
      .Add(NetPol(
          "shop", "web", Sel({{"app", "web"}}), kIngressOnly,
          {AllowAll({Named("http")}), Allow({IpBlock("198.51.100.0/24", {"198.51.100.128/25"})},
                                            {Range(Protocol::kTCP, 1000, 2000)})}))
      .Add(Anp("ops-deny", 10, Sel({{"team", "shop"}}), std::nullopt,
               {RuleOf(RuleAction::kPass, {NsPeer(Sel({{"team", "ops"}}))}, {Tcp(9090)}),
                RuleOf(RuleAction::kDeny, {NodesPeer(Sel({{"zone", "a"}}))})}))
      .Build();
}

TEST(Compiler, ShopClusterAgreesWithEvaluatorOnChosenFlows) {
  Cluster c = ShopCluster();
  CompiledPolicy cp = MustCompile(c);
  struct Case {
    std::string src, dst;
    Protocol proto;
    uint16_t port;
  };
  std::vector<Case> cases = {
      {"shop/api", "shop/db", Protocol::kTCP, 5432},
      {"shop/api", "shop/db", Protocol::kTCP, 5433},
      {"shop/web", "shop/db", Protocol::kTCP, 5432},
      {"ops/mon", "shop/web", Protocol::kTCP, 8080},
      {"ops/mon", "shop/web", Protocol::kTCP, 80},
      {"198.51.100.1", "shop/web", Protocol::kTCP, 1000},
      {"198.51.100.200", "shop/web", Protocol::kTCP, 1000},
      {"198.51.100.1", "shop/web", Protocol::kTCP, 2001},
      {"192.0.2.10", "shop/web", Protocol::kTCP, 8080},
      {"192.0.2.11", "shop/web", Protocol::kTCP, 8080},
      {"ops/mon", "shop/db", Protocol::kICMP, 0},
      {"shop/api", "shop/web", Protocol::kUDP, 8080},
      {"shop/api-2", "shop/db", Protocol::kTCP, 5432},
      {"ops/mon", "shop/api", Protocol::kTCP, 9090},
  };
  for (const auto& k : cases) {
    SCOPED_TRACE(k.src + " -> " + k.dst + " " + policy::ProtocolName(k.proto) + "/" +
                 std::to_string(k.port));
    Flow f = MakeFlow(c, k.src, k.dst, k.proto, k.port);
    if (f.src.workload) ExpectAgrees(c, cp, f, Direction::kEgress);
    if (f.dst.workload) ExpectAgrees(c, cp, f, Direction::kIngress);
  }
}

TEST(Compiler, IdentitiesIgnoreRolloutLabelsAndIncludeNamedPorts) {
  Cluster c = ShopCluster();
  CompiledPolicy cp = MustCompile(c);
  // api and api-2 differ only in pod-template-hash: one identity.
  EXPECT_EQ(cp.endpoints.at("shop/api").identity, cp.endpoints.at("shop/api-2").identity);
  EXPECT_NE(cp.endpoints.at("shop/api").identity, cp.endpoints.at("shop/web").identity);
  const CompiledIdentity* id = cp.FindIdentity(cp.endpoints.at("shop/api").identity);
  ASSERT_NE(id, nullptr);
  EXPECT_EQ(id->workloads, (std::vector<std::string>{"shop/api", "shop/api-2"}));
  EXPECT_EQ(id->key->named_ports.size(), 1u);
  // Workload identities from 256 in sorted key order; reserved ones listed.
  EXPECT_EQ(cp.identities[0].id, identity::kIdentityHost);
  EXPECT_EQ(cp.identities[3].id, identity::kFirstWorkloadIdentity);
  // ipcache: workload /32 and /128, cut CIDRs, the node address.
  const auto* v = cp.maps.ipcache.Find(IpcacheKey(Net("fd00::1/128")));
  ASSERT_NE(v, nullptr);
  EXPECT_EQ(v->identity, cp.endpoints.at("shop/web").identity);
  EXPECT_EQ(v->flags, BULKHEAD_IPCACHE_F_WORKLOAD);
  const auto* node = cp.maps.ipcache.Find(IpcacheKey(Net("192.0.2.10/32")));
  ASSERT_NE(node, nullptr);
  EXPECT_EQ(node->flags, BULKHEAD_IPCACHE_F_NODE);
  EXPECT_GE(node->identity, identity::kFirstCidrIdentity);
  EXPECT_NE(cp.maps.ipcache.Find(IpcacheKey(Net("198.51.100.128/25"))), nullptr);
  auto miss = Lookup(cp.maps, cp.endpoints.at("shop/web").table_id, Direction::kIngress,
                     Ip("203.0.113.9"), Protocol::kTCP, 1);
  EXPECT_EQ(miss.peer_identity, identity::kIdentityWorld);
  EXPECT_EQ(miss.class_id, BULKHEAD_CLASS_DEFAULT);
}

TEST(Compiler, EveryTableClassDirectionAndProtocolIsFullyCovered) {
  Cluster c = ShopCluster();
  CompiledPolicy cp = MustCompile(c);
  size_t roots = 0;
  for (const auto& t : cp.tables) {
    for (int d = 0; d < 2; ++d) {
      for (uint32_t cls = 0; cls < t.classes[d]; ++cls) {
        for (Protocol p : ci::kProtocols) {
          ASSERT_NE(cp.maps.ports.Find(PortKey(t.table_id, cls, ci::DirOf(d), p, 0, 0)), nullptr)
              << "table " << t.table_id << " class " << cls;
          ++roots;
        }
      }
    }
  }
  EXPECT_GT(roots, 0u);
  // Every peer entry points at a class that exists.
  for (const auto& [k, v] : cp.maps.peers.Entries()) {
    const CompiledTable* t = cp.FindTable(k.table_id);
    ASSERT_NE(t, nullptr);
    EXPECT_LT(v.class_id, t->classes[k.direction]);
    EXPECT_NE(v.class_id, BULKHEAD_CLASS_DEFAULT);  // class 0 is implied by a miss
  }
}

TEST(Compiler, PeersWithEqualVerdictsShareAClassAndDefaultPeersHaveNoEntry) {
  // db admits app=api from two namespaces; two api identities (different service
  // accounts) must share one class, and world and others stay in class 0.
  Cluster c = ClusterBuilder()
                  .Ns("a")
                  .Ns("b")
                  .Pod("a", "db", {{"app", "db"}}, {"10.0.0.1"})
                  .Pod("a", "api", {{"app", "api"}}, {"10.0.0.2"})
                  .Pod("b", "api", {{"app", "api"}}, {"10.0.0.3"})
                  .Pod("b", "other", {{"app", "other"}}, {"10.0.0.4"})
                  .Add(NetPol("a", "db", Sel({{"app", "db"}}), kIngressOnly,
                              {Allow({NsPeer(Sel(), Sel({{"app", "api"}}))}, {Tcp(5432)})}))
                  .Build();
  CompiledPolicy cp = MustCompile(c);
  const CompiledTable* t = cp.FindTable(cp.endpoints.at("a/db").table_id);
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(t->classes[0], 2u);  // class 0 (isolated: deny) and the api class
  auto cls = [&](const std::string& w) {
    return LookupIdentity(cp.maps, t->table_id, Direction::kIngress, cp.endpoints.at(w).identity,
                          Protocol::kTCP, 5432)
        .class_id;
  };
  EXPECT_EQ(cls("a/api"), 1u);
  EXPECT_EQ(cls("b/api"), 1u);
  EXPECT_EQ(cls("b/other"), 0u);
  // Tables of workloads that nothing selects are all class 0, default allow, and shared.
  EXPECT_EQ(cp.endpoints.at("a/api").table_id, cp.endpoints.at("b/other").table_id);
  const CompiledTable* open = cp.FindTable(cp.endpoints.at("b/other").table_id);
  EXPECT_EQ(open->classes[0], 1u);
  EXPECT_EQ(open->classes[1], 1u);
  auto r = LookupIdentity(cp.maps, open->table_id, Direction::kEgress, identity::kIdentityWorld,
                          Protocol::kSCTP, 7);
  EXPECT_TRUE(r.allowed());
  EXPECT_EQ(r.value.reason, BULKHEAD_REASON_DEFAULT_ALLOW);
  // 2 tables x 2 directions x classes x 5 protocols; the db ingress api class needs 2 TCP
  // entries (deny all, allow 5432).
  EXPECT_EQ(cp.maps.ports.size(), (1 + 2 + 1 + 1) * 5u + 1);
}

TEST(Compiler, NamedPortsResolveAgainstTheDestination) {
  // Egress to "http" allows each destination's own port; ingress "http" the local one.
  Cluster c = ClusterBuilder()
                  .Ns("a")
                  .Pod("a", "client", {{"app", "client"}}, {"10.0.0.1"})
                  .Pod("a", "s1", {{"app", "s"}}, {"10.0.0.2"}, {{"http", Protocol::kTCP, 80}})
                  .Pod("a", "s2", {{"app", "s"}}, {"10.0.0.3"}, {{"http", Protocol::kTCP, 8080}})
                  .Pod("a", "s3", {{"app", "s"}}, {"10.0.0.4"}, {{"http", Protocol::kUDP, 80}})
                  .Add(NetPol("a", "client", Sel({{"app", "client"}}), kEgressOnly, {},
                              {Allow({PodPeer("a", Sel())}, {Named("http")})}))
                  .Add(NetPol("a", "s", Sel({{"app", "s"}}), kIngressOnly,
                              {AllowAll({Named("http", std::nullopt)})}))
                  .Build();
  CompiledPolicy cp = MustCompile(c);
  for (const char* dst : {"a/s1", "a/s2", "a/s3"}) {
    for (uint16_t port : {79, 80, 81, 8080}) {
      for (Protocol p : {Protocol::kTCP, Protocol::kUDP}) {
        SCOPED_TRACE(std::string(dst) + " " + std::to_string(port));
        Flow f = MakeFlow(c, "a/client", dst, p, port);
        ExpectAgrees(c, cp, f, Direction::kEgress);
        ExpectAgrees(c, cp, f, Direction::kIngress);
      }
    }
  }
  // s1, s2 and s3 are distinct identities (their named ports differ).
  EXPECT_NE(cp.endpoints.at("a/s1").identity, cp.endpoints.at("a/s2").identity);
  EXPECT_NE(cp.endpoints.at("a/s1").identity, cp.endpoints.at("a/s3").identity);
}

TEST(Compiler, AuditPoliciesSetTheWouldDenyFlagAndModesStayOutOfTables) {
  ClusterBuilder b;
  b.Ns("a")
      .Pod("a", "db", {{"app", "db"}}, {"10.0.0.1"})
      .Pod("a", "x", {{"app", "x"}}, {"10.0.0.2"});
  b.Add(NativePol("a", "lock", Sel({{"app", "db"}}), kIngressOnly,
                  {Allow({PodPeer("a", Sel({{"app", "api"}}))})}, {}, Mode::kAudit));
  Cluster c = b.Build();
  CompiledPolicy cp = MustCompile(c);
  Flow f = MakeFlow(c, "a/x", "a/db", Protocol::kTCP, 5432);
  ExpectAgrees(c, cp, f, Direction::kIngress);
  auto r = Lookup(cp.maps, cp.endpoints.at("a/db").table_id, Direction::kIngress, Ip("10.0.0.2"),
                  Protocol::kTCP, 5432);
  EXPECT_TRUE(r.allowed());
  EXPECT_TRUE(r.would_deny());
  // Workload and namespace modes are the datapath's: the dump is the same whatever they are
  // except for the endpoint bindings' mode.
  Cluster learn = c;
  learn.workloads[0].mode = Mode::kLearn;
  learn.namespaces[0].mode = Mode::kAudit;
  CompiledPolicy cp2 = MustCompile(learn);
  EXPECT_EQ(cp2.endpoints.at("a/db").mode, Mode::kLearn);
  EXPECT_EQ(cp2.endpoints.at("a/x").mode, Mode::kAudit);
  std::string d1 = DumpCompiledPolicy(cp), d2 = DumpCompiledPolicy(cp2);
  d1 = d1.substr(0, d1.find("\nendpoints\n"));
  d2 = d2.substr(0, d2.find("\nendpoints\n"));
  EXPECT_EQ(d1, d2);
  EXPECT_EQ(cp.maps.ports.Entries().size(), cp2.maps.ports.Entries().size());
}

TEST(Compiler, ProcessSelectorsMatchNoPacket) {
  Cluster c = ClusterBuilder()
                  .Ns("a")
                  .Pod("a", "db", {{"app", "db"}}, {"10.0.0.1"})
                  .Pod("a", "api", {{"app", "api"}}, {"10.0.0.2"})
                  .Build();
  Peer proc_peer = PodPeer("a", Sel({{"app", "api"}}));
  proc_peer.process = policy::ProcessSelector{{"psql"}, {}};
  c.policies.push_back(NativePol("a", "p", Sel({{"app", "db"}}), kIngressOnly,
                                 {Allow({proc_peer}), Allow({PodPeer("a", Sel())}, {Tcp(1)})}));
  Policy by_process = NativePol("a", "q", Sel({{"app", "api"}}), kEgressOnly, {}, {});
  by_process.subject.process = policy::ProcessSelector{{"curl"}, {}};
  c.policies.push_back(by_process);
  CompiledPolicy cp = MustCompile(c);
  Flow f = MakeFlow(c, "a/api", "a/db", Protocol::kTCP, 5432);
  ExpectAgrees(c, cp, f, Direction::kIngress);  // denied: the process rule cannot match
  ExpectAgrees(c, cp, f, Direction::kEgress);   // allowed: q selects no packet
  EXPECT_FALSE(Lookup(cp.maps, cp.endpoints.at("a/db").table_id, Direction::kIngress,
                      Ip("10.0.0.2"), Protocol::kTCP, 5432)
                   .allowed());
}

TEST(Compiler, DefaultDenyCarriesItsRuleId) {
  Cluster c = ClusterBuilder()
                  .Ns("a", {{"env", "prod"}})
                  .Pod("a", "w", {{"app", "w"}}, {"10.0.0.1"})
                  .Add(DefaultDenyPol("zt", "", Sel({{"env", "prod"}}), Sel(), kEgressOnly))
                  .Build();
  CompiledPolicy cp = MustCompile(c);
  auto r = Lookup(cp.maps, cp.endpoints.at("a/w").table_id, Direction::kEgress, Ip("8.8.8.8"),
                  Protocol::kUDP, 53);
  EXPECT_FALSE(r.allowed());
  EXPECT_EQ(r.value.reason, BULKHEAD_REASON_DEFAULT_DENY);
  EXPECT_EQ(r.value.tier, BULKHEAD_TIER_DEFAULT);
  ASSERT_LT(r.value.rule_id, cp.rules.size());
  EXPECT_EQ(cp.rules[r.value.rule_id].policy, "DefaultDeny zt");
  EXPECT_EQ(cp.rules[r.value.rule_id].rule_index, -1);
  EXPECT_EQ(cp.rules[r.value.rule_id].action, RuleAction::kDeny);
  auto in = Lookup(cp.maps, cp.endpoints.at("a/w").table_id, Direction::kIngress, Ip("8.8.8.8"),
                   Protocol::kUDP, 53);
  EXPECT_TRUE(in.allowed());
}

TEST(Compiler, SharedAndUnsharedTablesGiveTheSameVerdicts) {
  Cluster c = ShopCluster();
  CompiledPolicy shared = MustCompile(c);
  CompiledPolicy own = MustCompile(c, Options(100, false));
  EXPECT_EQ(own.tables.size(), own.identities.size() - 3 - ComputeStats(own).cidr_identities);
  EXPECT_LE(shared.tables.size(), own.tables.size());
  EXPECT_EQ(own.tables.front().table_id, 100u);
  for (const auto& w : c.workloads) {
    for (const auto& peer : {"10.0.0.1", "10.0.0.2", "10.0.0.4", "10.0.1.1", "192.0.2.10",
                             "198.51.100.1", "198.51.100.129", "1.1.1.1", "fd00::1"}) {
      for (Direction d : {Direction::kIngress, Direction::kEgress}) {
        for (Protocol p : ci::kProtocols) {
          for (uint16_t port : {0, 80, 999, 1000, 2000, 2001, 5432, 8080, 9000, 9090}) {
            auto a =
                Lookup(shared.maps, shared.endpoints.at(w.Id()).table_id, d, Ip(peer), p, port);
            auto b = Lookup(own.maps, own.endpoints.at(w.Id()).table_id, d, Ip(peer), p, port);
            ASSERT_TRUE(a.found && b.found);
            EXPECT_EQ(a.value.verdict, b.value.verdict);
            EXPECT_EQ(a.value.rule_id, b.value.rule_id);
            EXPECT_EQ(a.value.flags, b.value.flags);
          }
        }
      }
    }
  }
}

TEST(Compiler, TableIdBaseKeepsANewCompileApartFromTheLiveOne) {
  Cluster c = ShopCluster();
  CompiledPolicy live = MustCompile(c);
  CompiledPolicy next = MustCompile(c, Options(live.NextTableIdBase(), true));
  std::set<uint32_t> live_ids;
  for (const auto& t : live.tables) live_ids.insert(t.table_id);
  for (const auto& t : next.tables) EXPECT_EQ(live_ids.count(t.table_id), 0u);
  EXPECT_EQ(next.tables.front().table_id, live.tables.back().table_id + 1);
  EXPECT_FALSE(CompilePolicy(c, Options(0, true)).ok());
  EXPECT_FALSE(CompilePolicy(c, Options(0xffffffffu, true)).ok());
}

TEST(Compiler, RejectsOneAddressOnTwoWorkloadsAndDuplicateIds) {
  Cluster c = ClusterBuilder()
                  .Ns("a")
                  .Pod("a", "x", {}, {"10.0.0.1"})
                  .Pod("a", "y", {}, {"10.0.0.1"})
                  .Build();
  auto r = CompilePolicy(c);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("10.0.0.1"), std::string::npos) << r.status();
  EXPECT_NE(r.status().message().find("a/y"), std::string::npos) << r.status();
  Cluster d =
      ClusterBuilder().Ns("a").Pod("a", "x", {}, {"10.0.0.1"}).Pod("a", "x", {}, {}).Build();
  auto r2 = CompilePolicy(d);
  ASSERT_FALSE(r2.ok());
  EXPECT_NE(r2.status().message().find("more than once"), std::string::npos) << r2.status();
}

TEST(Compiler, WorkloadAddressInsideAnIpBlockIsAWorkloadNotACidr) {
  Cluster c = ClusterBuilder()
                  .Ns("a")
                  .Pod("a", "db", {{"app", "db"}}, {"10.0.0.1"})
                  .Pod("a", "x", {{"app", "x"}}, {"10.0.0.2"})
                  .Add(NetPol("a", "db", Sel({{"app", "db"}}), kIngressOnly,
                              {Allow({IpBlock("10.0.0.0/8"), IpBlock("10.0.0.2/32")})}))
                  .Build();
  CompiledPolicy cp = MustCompile(c);
  Flow in = MakeFlow(c, "a/x", "a/db", Protocol::kTCP, 1);
  ExpectAgrees(c, cp, in, Direction::kIngress);
  EXPECT_FALSE(Lookup(cp.maps, cp.endpoints.at("a/db").table_id, Direction::kIngress,
                      Ip("10.0.0.2"), Protocol::kTCP, 1)
                   .allowed());
  EXPECT_TRUE(Lookup(cp.maps, cp.endpoints.at("a/db").table_id, Direction::kIngress, Ip("10.0.0.3"),
                     Protocol::kTCP, 1)
                  .allowed());
}

}  // namespace
}  // namespace bulkhead::engine
