// Connectivity analysis: exact port and address splitting, per-destination named ports,
// merging of equal neighbours, and the np-guard style text of connection sets.
#include "engine/connectivity.h"

#include <gtest/gtest.h>

#include "unit/engine/cluster_builder.h"

namespace bulkhead::engine {
namespace {

using namespace testing;  // NOLINT: the builder vocabulary

// "src => dst : conns" for every entry with something allowed, plus external entries with
// nothing allowed marked "none", so splits are visible.
std::vector<std::string> Lines(const ConnectivityReport& r, bool include_empty = false) {
  std::vector<std::string> out;
  for (const auto& e : r.entries) {
    if (e.allowed.IsEmpty() && !include_empty) continue;
    out.push_back(e.src.ToString() + " => " + e.dst.ToString() + " : " + e.allowed.ToString());
  }
  return out;
}

const ConnectivityEntry* Find(const ConnectivityReport& r, const std::string& src,
                              const std::string& dst) {
  for (const auto& e : r.entries) {
    if (e.src.ToString() == src && e.dst.ToString() == dst) return &e;
  }
  return nullptr;
}

ClusterBuilder Two() {
  ClusterBuilder b;
  b.Ns("x")
      .Pod("x", "client", {{"app", "client"}}, {"10.0.0.1"})
      .Pod("x", "web", {{"app", "web"}}, {"10.0.0.2"}, {{"http", Protocol::kTCP, 8080}});
  return b;
}

TEST(ConnectionSetText, Formats) {
  ConnectionSet none;
  EXPECT_TRUE(none.IsEmpty());
  EXPECT_EQ(none.ToString(), "No Connections");
  ConnectionSet all;
  for (auto p : {Protocol::kTCP, Protocol::kUDP, Protocol::kSCTP}) all.ports[p] = {{1, 65535}};
  all.other_protocols = true;
  EXPECT_TRUE(all.IsAll());
  EXPECT_EQ(all.ToString(), "All Connections");
  ConnectionSet some;
  some.ports[Protocol::kUDP] = {{1, 65535}};
  some.ports[Protocol::kTCP] = {{1, 79}, {81, 65535}};
  some.ports[Protocol::kSCTP] = {{1, 9002}, {9004, 65535}};
  EXPECT_EQ(some.ToString(), "SCTP 1-9002,9004-65535,TCP 1-79,81-65535,UDP 1-65535");
  ConnectionSet one;
  one.ports[Protocol::kTCP] = {{80, 80}};
  one.other_protocols = true;
  EXPECT_FALSE(one.IsAll());
  EXPECT_EQ(one.ToString(), "ICMP,TCP 80");
}

TEST(Connectivity, NoPolicyAllowsEverything) {
  Cluster c = Two().Build();
  ConnectivityReport r = ComputeConnectivity(c);
  EXPECT_EQ(Lines(r, true), (std::vector<std::string>{
                                "x/client => x/web : All Connections",
                                "x/web => x/client : All Connections",
                                "x/client => 0.0.0.0-255.255.255.255 : All Connections",
                                "0.0.0.0-255.255.255.255 => x/client : All Connections",
                                "x/web => 0.0.0.0-255.255.255.255 : All Connections",
                                "0.0.0.0-255.255.255.255 => x/web : All Connections",
                            }));
}

TEST(Connectivity, PortsAndNamedPortsPerDestination) {
  ClusterBuilder b = Two();
  b.Pod("x", "api", {{"app", "api"}}, {"10.0.0.3"}, {{"http", Protocol::kTCP, 9090}});
  b.Add(NetPol("x", "client-out", Sel({{"app", "client"}}), kEgressOnly, {},
               {AllowAll({Named("http"), Range(Protocol::kUDP, 5000, 5010), Tcp(443)})}));
  Cluster c = b.Build();
  ConnectivityReport r = ComputeConnectivity(c);
  ASSERT_TRUE(Find(r, "x/client", "x/web"));
  EXPECT_EQ(Find(r, "x/client", "x/web")->allowed.ToString(), "TCP 443,8080,UDP 5000-5010");
  EXPECT_EQ(Find(r, "x/client", "x/api")->allowed.ToString(), "TCP 443,9090,UDP 5000-5010");
  EXPECT_EQ(Find(r, "x/web", "x/client")->allowed.ToString(), "All Connections");
  // External destinations have no named ports.
  EXPECT_EQ(Find(r, "x/client", "0.0.0.0-255.255.255.255")->allowed.ToString(),
            "TCP 443,UDP 5000-5010");
}

TEST(Connectivity, AdminDenySlicesOutPorts) {
  ClusterBuilder b = Two();
  b.Add(Anp("deny-some", 10, Sel(), std::nullopt,
            {RuleOf(RuleAction::kDeny, {NsPeer(Sel())}, {Tcp(80), Sctp(9003)})}));
  Cluster c = b.Build();
  ConnectivityReport r = ComputeConnectivity(c);
  EXPECT_EQ(Find(r, "x/client", "x/web")->allowed.ToString(),
            "ICMP,SCTP 1-9002,9004-65535,TCP 1-79,81-65535,UDP 1-65535");
  // The ANP ingress peers are pods only: external sources are unaffected.
  EXPECT_EQ(Find(r, "0.0.0.0-255.255.255.255", "x/web")->allowed.ToString(), "All Connections");
}

TEST(Connectivity, ExternalRangesSplitAtIpBlockBoundariesAndMerge) {
  ClusterBuilder b = Two();
  b.Add(NetPol("x", "web-out", Sel({{"app", "web"}}), kEgressOnly, {},
               {Allow({IpBlock("192.0.2.0/24", {"192.0.2.128/25"})}),
                Allow({IpBlock("198.51.100.0/24")}, {Tcp(443)}),
                Allow({IpBlock("203.0.113.0/24")}, {Tcp(443)})}));
  Cluster c = b.Build();
  ConnectivityReport r = ComputeConnectivity(c);
  std::vector<std::string> web_out;
  for (const auto& e : r.entries) {
    if (e.src.workload && e.src.workload->name == "web" && !e.dst.workload) {
      web_out.push_back(e.dst.ToString() + " : " + e.allowed.ToString());
    }
  }
  EXPECT_EQ(web_out, (std::vector<std::string>{
                         "0.0.0.0-192.0.1.255 : No Connections",
                         "192.0.2.0-192.0.2.127 : All Connections",
                         "192.0.2.128-198.51.99.255 : No Connections",
                         "198.51.100.0-198.51.100.255 : TCP 443",
                         "198.51.101.0-203.0.112.255 : No Connections",
                         "203.0.113.0-203.0.113.255 : TCP 443",
                         "203.0.114.0-255.255.255.255 : No Connections",
                     }));
}

TEST(Connectivity, Ipv6SpaceOnlyWhenPoliciesUseIt) {
  ClusterBuilder b = Two();
  b.Add(NetPol("x", "web-out", Sel({{"app", "web"}}), kEgressOnly, {},
               {Allow({IpBlock("2001:db8::/32")})}));
  Cluster c = b.Build();
  ConnectivityReport r = ComputeConnectivity(c);
  std::vector<std::string> lines = Lines(r);
  EXPECT_NE(
      std::find(lines.begin(), lines.end(),
                "x/web => 2001:db8::-2001:db8:ffff:ffff:ffff:ffff:ffff:ffff : All Connections"),
      lines.end());
  EXPECT_NE(std::find(lines.begin(), lines.end(),
                      "x/client => ::-ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff : All Connections"),
            lines.end());
  EXPECT_EQ(Find(r, "x/web", "0.0.0.0-255.255.255.255")->allowed.ToString(), "No Connections");
}

TEST(Connectivity, NodeAddressesAreSplitOut) {
  ClusterBuilder b = Two();
  b.Node("n1", {{"role", "worker"}}, {"192.0.2.100"});
  b.Add(Anp("nodes", 10, Sel(), Sel({{"app", "web"}}), {},
            {RuleOf(RuleAction::kDeny, {NodesPeer(Sel({{"role", "worker"}}))})}));
  Cluster c = b.Build();
  ConnectivityReport r = ComputeConnectivity(c);
  EXPECT_EQ(Find(r, "x/web", "192.0.2.100-192.0.2.100")->allowed.ToString(), "No Connections");
  EXPECT_EQ(Find(r, "x/web", "0.0.0.0-192.0.2.99")->allowed.ToString(), "All Connections");
  EXPECT_EQ(Find(r, "x/web", "192.0.2.101-255.255.255.255")->allowed.ToString(), "All Connections");
}

TEST(Connectivity, IsolatedPairHasEmptyEntry) {
  ClusterBuilder b = Two();
  b.Add(NetPol("x", "deny", Sel(), kIngressOnly));
  Cluster c = b.Build();
  ConnectivityReport r = ComputeConnectivity(c);
  ASSERT_TRUE(Find(r, "x/client", "x/web"));
  EXPECT_TRUE(Find(r, "x/client", "x/web")->allowed.IsEmpty());
  EXPECT_EQ(Find(r, "0.0.0.0-255.255.255.255", "x/web")->allowed.ToString(), "No Connections");
}

}  // namespace
}  // namespace bulkhead::engine
