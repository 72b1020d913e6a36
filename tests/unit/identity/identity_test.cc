// Unit tests for identity keys, the label filter, deterministic allocation, CIDR identities
// and the ipcache's longest-prefix match.
#include "identity/identity.h"

#include <gtest/gtest.h>

#include <random>

#include "identity/ipcache.h"

namespace bulkhead::identity {
namespace {

using policy::Labels;
using policy::Protocol;

policy::Workload MakeWorkload(const std::string& ns, const std::string& name, Labels labels,
                              std::vector<policy::NamedPort> ports = {},
                              const std::string& sa = "default") {
  policy::Workload w;
  w.namespace_name = ns;
  w.name = name;
  w.labels = std::move(labels);
  w.named_ports = std::move(ports);
  w.service_account = sa;
  return w;
}

Cidr C(const std::string& text) { return *Cidr::Parse(text); }
IpAddr A(const std::string& text) { return *IpAddr::Parse(text); }

TEST(IdentityKey, LeavesOutUnselectableLabelsAndCanonicalisesPorts) {
  Labels ns = {{"kubernetes.io/metadata.name", "shop"}, {"team", "a"}};
  auto a = MakeWorkload("shop", "web-1", {{"app", "web"}, {"pod-template-hash", "abc"}},
                        {{"http", Protocol::kTCP, 80}, {"dns", Protocol::kUDP, 53}});
  auto b = MakeWorkload("shop", "web-2", {{"app", "web"}, {"pod-template-hash", "def"}},
                        {{"dns", Protocol::kUDP, 53}, {"http", Protocol::kTCP, 80}});
  LabelFilter filter;
  IdentityKey ka = MakeIdentityKey(ns, a, filter);
  IdentityKey kb = MakeIdentityKey(ns, b, filter);
  EXPECT_EQ(ka, kb);
  EXPECT_EQ(ka.ToString(),
            "ns:kubernetes.io/metadata.name=shop,ns:team=a,app=web,sa:default,"
            "port:dns=UDP/53,port:http=TCP/80");
}

TEST(IdentityKey, NamedPortsServiceAccountAndNamespaceLabelsDistinguish) {
  Labels ns = {{"kubernetes.io/metadata.name", "shop"}};
  LabelFilter filter;
  auto base = MakeWorkload("shop", "w", {{"app", "web"}}, {{"http", Protocol::kTCP, 80}});
  auto other_port = MakeWorkload("shop", "w", {{"app", "web"}}, {{"http", Protocol::kTCP, 8080}});
  auto other_sa = MakeWorkload("shop", "w", {{"app", "web"}}, {{"http", Protocol::kTCP, 80}}, "x");
  EXPECT_NE(MakeIdentityKey(ns, base, filter), MakeIdentityKey(ns, other_port, filter));
  EXPECT_NE(MakeIdentityKey(ns, base, filter), MakeIdentityKey(ns, other_sa, filter));
  Labels ns2 = ns;
  ns2["env"] = "prod";
  EXPECT_NE(MakeIdentityKey(ns, base, filter), MakeIdentityKey(ns2, base, filter));
}

TEST(LabelFilter, KeepsIgnoredKeysThatAPolicySelects) {
  policy::Cluster cluster;
  EXPECT_FALSE(LabelFilter::ForCluster(cluster).Keep("pod-template-hash"));
  policy::Policy p;
  policy::Rule r;
  policy::Peer peer;
  peer.pod_selector = policy::LabelSelector{};
  peer.pod_selector->match_expressions.push_back(
      {"statefulset.kubernetes.io/pod-name", policy::SelectorOperator::kIn, {"db-0"}});
  r.peers.push_back(peer);
  p.ingress.push_back(r);
  p.subject.pod_selector.match_labels["pod-template-hash"] = "abc";
  cluster.policies.push_back(p);
  LabelFilter f = LabelFilter::ForCluster(cluster);
  EXPECT_TRUE(f.Keep("pod-template-hash"));
  EXPECT_TRUE(f.Keep("statefulset.kubernetes.io/pod-name"));
  EXPECT_FALSE(f.Keep("controller-revision-hash"));
  EXPECT_TRUE(f.Keep("app"));
}

TEST(IdentityAllocator, IsDeterministicAndAppendsIncrementally) {
  LabelFilter filter;
  Labels ns = {{"kubernetes.io/metadata.name", "a"}};
  std::vector<IdentityKey> keys;
  for (const char* app : {"zeta", "alpha", "mid", "alpha"}) {
    keys.push_back(MakeIdentityKey(ns, MakeWorkload("a", app, {{"app", app}}), filter));
  }
  auto a1 = IdentityAllocator::ForKeys(keys);
  std::reverse(keys.begin(), keys.end());
  auto a2 = IdentityAllocator::ForKeys(keys);
  ASSERT_TRUE(a1.ok() && a2.ok());
  EXPECT_EQ(a1->identities(), a2->identities());
  ASSERT_EQ(a1->identities().size(), 3u);
  // Sorted key order: alpha < mid < zeta.
  EXPECT_EQ(a1->identities().at(256).labels.at("app"), "alpha");
  EXPECT_EQ(a1->identities().at(258).labels.at("app"), "zeta");
  bool created = true;
  auto again = a1->Allocate(keys[0], &created);
  ASSERT_TRUE(again.ok());
  EXPECT_FALSE(created);
  auto fresh = a1->Allocate(MakeIdentityKey(ns, MakeWorkload("a", "b", {{"app", "beta"}}), filter),
                            &created);
  ASSERT_TRUE(fresh.ok());
  EXPECT_TRUE(created);
  EXPECT_EQ(*fresh, 259u);  // next free, existing numbers unchanged
  EXPECT_EQ(a1->Find(keys[0]), a2->Find(keys[0]));
  EXPECT_EQ(KindOf(*fresh), IdentityKind::kWorkload);
  EXPECT_EQ(KindOf(kIdentityWorld), IdentityKind::kReserved);
  EXPECT_EQ(KindOf(kFirstCidrIdentity), IdentityKind::kCidr);
  EXPECT_STREQ(ReservedIdentityName(kIdentityWorld), "world");
}

TEST(IpCache, LongestPrefixWinsAndMissIsWorld) {
  IpCache c;
  c.Upsert(C("10.0.0.0/8"), 100, 0);
  c.Upsert(C("10.1.0.0/16"), 101, 0);
  c.Upsert(C("10.1.2.3/32"), 300, kIpCacheFlagWorkload);
  c.Upsert(C("fd00::/8"), 200, 0);
  EXPECT_EQ(c.Lookup(A("10.1.2.3")), 300u);
  EXPECT_EQ(c.Lookup(A("10.1.2.4")), 101u);
  EXPECT_EQ(c.Lookup(A("10.2.0.0")), 100u);
  EXPECT_EQ(c.Lookup(A("11.0.0.0")), kIdentityWorld);
  EXPECT_EQ(c.Lookup(A("fd12::1")), 200u);
  EXPECT_EQ(c.Lookup(A("fe00::1")), kIdentityWorld);
  // IPv4 prefixes never match IPv6 addresses and vice versa.
  c.Upsert(C("0.0.0.0/0"), 400, 0);
  EXPECT_EQ(c.Lookup(A("::1")), kIdentityWorld);
  EXPECT_EQ(c.Lookup(A("192.0.2.1")), 400u);
  c.Upsert(C("10.1.0.0/16"), 102, 0);  // replace
  EXPECT_EQ(c.size(), 5u);
  EXPECT_EQ(c.Lookup(A("10.1.9.9")), 102u);
  auto entries = c.Entries();
  ASSERT_EQ(entries.size(), 5u);
  EXPECT_EQ(entries.front().prefix, C("0.0.0.0/0"));
  EXPECT_EQ(entries.back().prefix, C("fd00::/8"));
}

TEST(PrefixOf, MasksHostBits) {
  EXPECT_EQ(PrefixOf(A("10.1.2.3"), 12).ToString(), "10.0.0.0/12");
  EXPECT_EQ(PrefixOf(A("10.255.2.3"), 12).ToString(), "10.240.0.0/12");
  EXPECT_EQ(PrefixOf(A("fd00:1234::5"), 20).ToString(), "fd00:1000::/20");
  EXPECT_EQ(HostPrefix(A("fd00::5")).prefix_len, 128);
  EXPECT_EQ(PrefixOf(A("10.1.2.3"), 0).ToString(), "0.0.0.0/0");
}

// The property the compiler relies on: the class of an outside address (its most specific
// containing cut CIDR) decides membership in every cut CIDR.
TEST(CidrIdentities, MostSpecificCidrDecidesMembershipInAll) {
  std::vector<Cidr> cut = {C("10.0.0.0/8"),  C("10.1.0.0/16"), C("10.1.128.0/17"),
                           C("10.1.0.0/24"), C("10.2.3.4/32"), C("192.168.0.0/16"),
                           C("fd00::/16"),   C("fd00:1::/32"), C("10.0.0.0/8")};
  auto ids = CidrIdentities::ForCidrs(cut);
  ASSERT_TRUE(ids.ok());
  EXPECT_EQ(ids->all().size(), 8u);  // deduplicated
  EXPECT_EQ(ids->all().front().id, kFirstCidrIdentity);
  EXPECT_EQ(ids->Find(C("10.0.0.0/8")), kFirstCidrIdentity);
  EXPECT_EQ(ids->Find(C("10.9.0.0/16")), 0u);
  std::mt19937 rng(7);
  std::vector<IpAddr> probes;
  for (const auto& c : ids->all()) {
    probes.push_back(c.cidr.First());
    probes.push_back(c.cidr.Last());
    if (auto p = common::PrevAddr(c.cidr.First())) probes.push_back(*p);
    if (auto n = common::NextAddr(c.cidr.Last())) probes.push_back(*n);
  }
  for (int i = 0; i < 2000; ++i) {
    IpAddr a = IpAddr::V4(0x0a000000u | (rng() & 0x03ffffffu));
    probes.push_back(a);
  }
  for (const auto& ip : probes) {
    NumericIdentity cls = ids->Classify(ip);
    if (cls == kIdentityWorld) {
      for (const auto& c : ids->all()) EXPECT_FALSE(c.cidr.Contains(ip)) << ip.ToString();
      continue;
    }
    Cidr class_cidr;
    for (const auto& c : ids->all()) {
      if (c.id == cls) class_cidr = c.cidr;
    }
    std::vector<Cidr> containing = ids->Containing(class_cidr);
    for (const auto& c : ids->all()) {
      bool in_all = std::find(containing.begin(), containing.end(), c.cidr) != containing.end();
      EXPECT_EQ(c.cidr.Contains(ip), in_all) << ip.ToString() << " in " << c.cidr.ToString();
    }
  }
}

}  // namespace
}  // namespace bulkhead::identity
