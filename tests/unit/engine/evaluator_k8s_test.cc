// Reference evaluator against the behaviours of the upstream Kubernetes NetworkPolicy e2e
// suite: a 3x3 grid of namespaces x,y,z and pods a,b,c, a policy set per case, and the full
// reachability matrix for one protocol and port.
#include <gtest/gtest.h>

#include <functional>

#include "engine/evaluator.h"
#include "unit/engine/cluster_builder.h"

namespace bulkhead::engine {
namespace {

using namespace testing;  // NOLINT: the builder vocabulary

const std::vector<std::string> kNamespaces = {"x", "y", "z"};
const std::vector<std::string> kPods = {"a", "b", "c"};

// The e2e model: every pod serves TCP, UDP and SCTP on 80 and 81 under named ports like
// "serve-80-tcp"; pods b also carry tier=web.
ClusterBuilder Grid() {
  ClusterBuilder b;
  for (size_t n = 0; n < kNamespaces.size(); ++n) b.Ns(kNamespaces[n], {{"ns", kNamespaces[n]}});
  for (size_t n = 0; n < kNamespaces.size(); ++n) {
    for (size_t p = 0; p < kPods.size(); ++p) {
      Labels labels = {{"pod", kPods[p]}};
      if (kPods[p] == "b") labels["tier"] = "web";
      std::vector<NamedPort> ports;
      for (auto [proto, pname] :
           {std::pair{Protocol::kTCP, "tcp"}, {Protocol::kUDP, "udp"}, {Protocol::kSCTP, "sctp"}}) {
        for (uint16_t port : {80, 81}) {
          ports.push_back({"serve-" + std::to_string(port) + "-" + pname, proto, port});
        }
      }
      b.Pod(kNamespaces[n], kPods[p], labels,
            {"10.0." + std::to_string(n) + "." + std::to_string(p + 1),
             "fd00::" + std::to_string(n) + ":" + std::to_string(p + 1)},
            ports);
    }
  }
  return b;
}

std::string NsOf(const std::string& id) { return id.substr(0, id.find('/')); }
std::string PodOf(const std::string& id) { return id.substr(id.find('/') + 1); }

using Expectation = std::function<bool(const std::string& src, const std::string& dst)>;

// Evaluates every ordered pair of distinct pods and lists the ones that differ from `want`.
std::string ReachabilityDiff(const Cluster& c, Protocol proto, uint16_t port,
                             const Expectation& want) {
  Evaluator ev(c);
  std::string diff;
  for (const auto& s : c.workloads) {
    for (const auto& d : c.workloads) {
      if (&s == &d) continue;
      Verdict v = ev.Evaluate(MakeFlow(c, s.Id(), d.Id(), proto, port));
      bool expected = want(s.Id(), d.Id());
      if (ev.Allows(MakeFlow(c, s.Id(), d.Id(), proto, port)) != v.allowed) {
        diff += s.Id() + " -> " + d.Id() + ": Allows() disagrees with Evaluate()\n";
      }
      if (v.allowed != expected) {
        diff += s.Id() + " -> " + d.Id() + ": got " + (v.allowed ? "allowed" : "denied") +
                ", want " + (expected ? "allowed" : "denied") + " [" + v.egress.Explain() + " | " +
                v.ingress.Explain() + "]\n";
      }
    }
  }
  return diff;
}

struct GridCase {
  std::string name;
  std::vector<Policy> policies;
  Protocol proto;
  uint16_t port;
  Expectation want;
};

void PrintTo(const GridCase& c, std::ostream* os) { *os << c.name; }

class K8sGridTest : public ::testing::TestWithParam<GridCase> {};

TEST_P(K8sGridTest, Reachability) {
  const GridCase& tc = GetParam();
  ClusterBuilder b = Grid();
  for (const auto& p : tc.policies) b.Add(p);
  Cluster c = b.Build();
  EXPECT_EQ(ReachabilityDiff(c, tc.proto, tc.port, tc.want), "");
}

const Protocol TCP = Protocol::kTCP;
const Protocol UDP = Protocol::kUDP;
const Protocol SCTP = Protocol::kSCTP;

Policy IngressToXA(std::vector<Rule> rules, const std::string& name = "allow-to-a") {
  return NetPol("x", name, Sel({{"pod", "a"}}), kIngressOnly, std::move(rules));
}

std::vector<GridCase> GridCases() {
  auto all = [](const std::string&, const std::string&) { return true; };
  auto to_xa_only_from = [](std::function<bool(const std::string&)> ok) -> Expectation {
    return [ok](const std::string& s, const std::string& d) { return d != "x/a" || ok(s); };
  };
  std::vector<GridCase> cases;
  cases.push_back({"NoPolicyAllowsAll", {}, TCP, 80, all});
  cases.push_back({"DefaultDenyIngress",
                   {NetPol("x", "deny", Sel(), kIngressOnly)},
                   TCP,
                   80,
                   [](auto&, auto& d) { return NsOf(d) != "x"; }});
  cases.push_back(
      {"DefaultDenyEgress", {NetPol("x", "deny", Sel(), kEgressOnly)}, TCP, 80, [](auto& s, auto&) {
         return NsOf(s) != "x";
       }});
  cases.push_back(
      {"DefaultDenyBoth", {NetPol("x", "deny", Sel(), kBoth)}, UDP, 81, [](auto& s, auto& d) {
         return NsOf(s) != "x" && NsOf(d) != "x";
       }});
  cases.push_back({"AllowAllIngressRuleWithoutPeers",
                   {NetPol("x", "deny", Sel(), kIngressOnly), IngressToXA({AllowAll()})},
                   TCP,
                   80,
                   [](auto&, auto& d) { return NsOf(d) != "x" || d == "x/a"; }});
  cases.push_back({"PodSelectorOnlyPeerIsSameNamespace",
                   {IngressToXA({Allow({PodPeer("x", Sel({{"pod", "b"}}))})})},
                   TCP,
                   80,
                   to_xa_only_from([](auto& s) { return s == "x/b"; })});
  cases.push_back({"EmptyPodSelectorPeerIsWholeSameNamespace",
                   {IngressToXA({Allow({PodPeer("x", Sel())})})},
                   TCP,
                   80,
                   to_xa_only_from([](auto& s) { return NsOf(s) == "x"; })});
  cases.push_back({"NamespaceSelectorOnlyPeerIsAllPodsOfMatchingNamespaces",
                   {IngressToXA({Allow({NsPeer(Sel({{"ns", "y"}}))})})},
                   TCP,
                   80,
                   to_xa_only_from([](auto& s) { return NsOf(s) == "y"; })});
  cases.push_back(
      {"EmptyNamespaceSelectorIsEveryPod", {IngressToXA({Allow({NsPeer(Sel())})})}, TCP, 80, all});
  cases.push_back({"NamespaceMatchExpressionIn",
                   {IngressToXA({Allow({NsPeer(Expr("ns", SelectorOperator::kIn, {"y", "z"}))})})},
                   TCP,
                   80,
                   to_xa_only_from([](auto& s) { return NsOf(s) != "x"; })});
  cases.push_back({"NamespaceMatchExpressionNotIn",
                   {IngressToXA({Allow({NsPeer(Expr("ns", SelectorOperator::kNotIn, {"y"}))})})},
                   TCP,
                   80,
                   to_xa_only_from([](auto& s) { return NsOf(s) != "y"; })});
  cases.push_back({"PodMatchExpressionExists",
                   {IngressToXA({Allow({NsPeer(Sel(), Expr("tier", SelectorOperator::kExists))})})},
                   TCP,
                   80,
                   to_xa_only_from([](auto& s) { return PodOf(s) == "b"; })});
  cases.push_back(
      {"PodMatchExpressionDoesNotExist",
       {IngressToXA({Allow({NsPeer(Sel(), Expr("tier", SelectorOperator::kDoesNotExist))})})},
       TCP,
       80,
       to_xa_only_from([](auto& s) { return PodOf(s) != "b"; })});
  cases.push_back(
      {"PodMatchExpressionInSameNamespace",
       {IngressToXA({Allow({PodPeer("x", Expr("pod", SelectorOperator::kIn, {"c"}))})})},
       TCP,
       80,
       to_xa_only_from([](auto& s) { return s == "x/c"; })});
  cases.push_back({"BothSelectorsInOnePeerAreAnd",
                   {IngressToXA({Allow({NsPeer(Sel({{"ns", "y"}}), Sel({{"pod", "b"}}))})})},
                   TCP,
                   80,
                   to_xa_only_from([](auto& s) { return s == "y/b"; })});
  cases.push_back(
      {"TwoPeersAreOr",
       {IngressToXA({Allow({NsPeer(Sel({{"ns", "y"}})), PodPeer("x", Sel({{"pod", "b"}}))})})},
       TCP,
       80,
       to_xa_only_from([](auto& s) { return NsOf(s) == "y" || s == "x/b"; })});
  cases.push_back({"StackedPoliciesAreUnion",
                   {IngressToXA({Allow({PodPeer("x", Sel({{"pod", "b"}}))})}, "p1"),
                    IngressToXA({Allow({NsPeer(Sel({{"ns", "z"}}))})}, "p2")},
                   TCP,
                   80,
                   to_xa_only_from([](auto& s) { return s == "x/b" || NsOf(s) == "z"; })});
  cases.push_back({"NumberedPortMatches", {IngressToXA({AllowAll({Tcp(81)})})}, TCP, 81, all});
  cases.push_back({"NumberedPortOtherPortDenied",
                   {IngressToXA({AllowAll({Tcp(81)})})},
                   TCP,
                   80,
                   to_xa_only_from([](auto&) { return false; })});
  cases.push_back(
      {"NamedPortMatches", {IngressToXA({AllowAll({Named("serve-81-tcp")})})}, TCP, 81, all});
  cases.push_back({"NamedPortOtherPortDenied",
                   {IngressToXA({AllowAll({Named("serve-81-tcp")})})},
                   TCP,
                   80,
                   to_xa_only_from([](auto&) { return false; })});
  cases.push_back({"NamedPortOfOtherProtocolDenied",
                   {IngressToXA({AllowAll({Named("serve-81-udp", TCP)})})},
                   TCP,
                   81,
                   to_xa_only_from([](auto&) { return false; })});
  cases.push_back(
      {"NamedUdpPort", {IngressToXA({AllowAll({Named("serve-81-udp", UDP)})})}, UDP, 81, all});
  cases.push_back(
      {"EndPortRangeInside", {IngressToXA({AllowAll({Range(TCP, 80, 81)})})}, TCP, 81, all});
  cases.push_back({"EndPortRangeOutside",
                   {IngressToXA({AllowAll({Range(TCP, 80, 81)})})},
                   TCP,
                   82,
                   to_xa_only_from([](auto&) { return false; })});
  cases.push_back({"TcpRuleDoesNotAllowUdp",
                   {IngressToXA({AllowAll({Tcp(80)})})},
                   UDP,
                   80,
                   to_xa_only_from([](auto&) { return false; })});
  cases.push_back({"TcpRuleDoesNotAllowSctp",
                   {IngressToXA({AllowAll({Tcp(80)})})},
                   SCTP,
                   80,
                   to_xa_only_from([](auto&) { return false; })});
  cases.push_back({"SctpRuleAllowsSctp", {IngressToXA({AllowAll({Sctp(80)})})}, SCTP, 80, all});
  cases.push_back({"ProtocolWithoutPortAllowsEveryPort",
                   {IngressToXA({AllowAll({AllPortsOf(UDP)})})},
                   UDP,
                   5353,
                   all});
  cases.push_back({"RuleWithoutPortsAllowsIcmp",
                   {IngressToXA({Allow({PodPeer("x", Sel())})})},
                   Protocol::kICMP,
                   0,
                   to_xa_only_from([](auto& s) { return NsOf(s) == "x"; })});
  cases.push_back({"RuleWithPortsDoesNotAllowIcmp",
                   {IngressToXA({AllowAll({Tcp(80), AllPortsOf(UDP)})})},
                   Protocol::kICMP,
                   0,
                   to_xa_only_from([](auto&) { return false; })});
  // Egress: x/a may only reach y/*; its ingress stays open (isolated independently).
  cases.push_back({"EgressIsolationLeavesIngressOpen",
                   {NetPol("x", "egress", Sel({{"pod", "a"}}), kEgressOnly, {},
                           {Allow({NsPeer(Sel({{"ns", "y"}}))})})},
                   TCP,
                   80,
                   [](auto& s, auto& d) { return s != "x/a" || NsOf(d) == "y"; }});
  cases.push_back({"IngressIsolationLeavesEgressOpen",
                   {IngressToXA({Allow({PodPeer("x", Sel({{"pod", "b"}}))})})},
                   UDP,
                   80,
                   [](auto& s, auto& d) { return d != "x/a" || s == "x/b"; }});
  // Egress named port resolves against the destination's ports.
  cases.push_back({"EgressNamedPortResolvedAtDestination",
                   {NetPol("x", "egress", Sel({{"pod", "a"}}), kEgressOnly, {},
                           {AllowAll({Named("serve-81-udp", UDP)})})},
                   UDP,
                   81,
                   all});
  cases.push_back({"EgressNamedPortOtherPortDenied",
                   {NetPol("x", "egress", Sel({{"pod", "a"}}), kEgressOnly, {},
                           {AllowAll({Named("serve-81-udp", UDP)})})},
                   UDP,
                   80,
                   [](auto& s, auto&) { return s != "x/a"; }});
  // policyTypes [Ingress, Egress] with only ingress rules: egress is denied entirely.
  cases.push_back({"PolicyTypesEgressWithoutRulesDeniesEgress",
                   {NetPol("y", "both", Sel({{"pod", "c"}}), kBoth, {AllowAll()})},
                   TCP,
                   80,
                   [](auto& s, auto&) { return s != "y/c"; }});
  return cases;
}

INSTANTIATE_TEST_SUITE_P(UpstreamE2E, K8sGridTest, ::testing::ValuesIn(GridCases()),
                         [](const auto& info) { return info.param.name; });

// Label changes: the verdicts follow the model after it is edited and a new Evaluator is
// built, as the e2e tests relabel pods and namespaces.
TEST(K8sLabelChange, NamespaceRelabelGrantsAccess) {
  ClusterBuilder b = Grid();
  b.Add(IngressToXA({Allow({NsPeer(Sel({{"team", "blue"}}))})}));
  Cluster c = b.Build();
  {
    Evaluator ev(c);
    EXPECT_FALSE(ev.Evaluate(MakeFlow(c, "y/b", "x/a")).allowed);
  }
  c.namespaces[1].labels["team"] = "blue";  // y
  {
    Evaluator ev(c);
    EXPECT_TRUE(ev.Evaluate(MakeFlow(c, "y/b", "x/a")).allowed);
    EXPECT_FALSE(ev.Evaluate(MakeFlow(c, "z/b", "x/a")).allowed);
  }
  c.namespaces[1].labels.erase("team");
  {
    Evaluator ev(c);
    EXPECT_FALSE(ev.Evaluate(MakeFlow(c, "y/b", "x/a")).allowed);
  }
}

TEST(K8sLabelChange, PodRelabelChangesPeerAndSubject) {
  ClusterBuilder b = Grid();
  b.Add(IngressToXA({Allow({PodPeer("x", Sel({{"pod", "b"}}))})}));
  Cluster c = b.Build();
  auto find = [&](const std::string& id) {
    for (auto& w : c.workloads) {
      if (w.Id() == id) return &w;
    }
    throw std::logic_error("no workload " + id);
  };
  {
    Evaluator ev(c);
    EXPECT_FALSE(ev.Evaluate(MakeFlow(c, "x/c", "x/a")).allowed);
  }
  find("x/c")->labels["pod"] = "b";  // x/c now looks like b: allowed as a peer
  {
    Evaluator ev(c);
    EXPECT_TRUE(ev.Evaluate(MakeFlow(c, "x/c", "x/a")).allowed);
  }
  find("x/c")->labels["pod"] = "c";
  find("x/a")->labels["pod"] = "changed";  // x/a no longer selected: not isolated
  {
    Evaluator ev(c);
    DirectionVerdict v = ev.Evaluate(MakeFlow(c, "x/c", "x/a")).ingress;
    EXPECT_TRUE(v.allowed);
    EXPECT_EQ(v.reason, Reason::kDefaultAllow);
  }
}

// ipBlock: addresses outside the cluster, with except; never a workload's own address.
class IpBlockTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ClusterBuilder b = Grid();
    b.Add(NetPol("x", "egress-cidr", Sel({{"pod", "a"}}), kEgressOnly, {},
                 {Allow({IpBlock("192.0.2.0/24", {"192.0.2.128/25"}), IpBlock("10.0.0.0/8"),
                         IpBlock("2001:db8::/32", {"2001:db8:1::/48"})})}));
    b.Add(NetPol("x", "ingress-cidr", Sel({{"pod", "a"}}), kIngressOnly,
                 {Allow({IpBlock("198.51.100.0/24")}, {Tcp(443)})}));
    c_ = b.Build();
  }
  bool Allowed(const std::string& src, const std::string& dst, uint16_t port = 80) {
    Evaluator ev(c_);
    return ev.Evaluate(MakeFlow(c_, src, dst, Protocol::kTCP, port)).allowed;
  }
  Cluster c_;
};

TEST_F(IpBlockTest, EgressInsideCidr) { EXPECT_TRUE(Allowed("x/a", "192.0.2.10")); }
TEST_F(IpBlockTest, EgressInExcept) { EXPECT_FALSE(Allowed("x/a", "192.0.2.200")); }
TEST_F(IpBlockTest, EgressOutsideCidr) { EXPECT_FALSE(Allowed("x/a", "203.0.113.1")); }
TEST_F(IpBlockTest, CidrDoesNotSelectWorkloadAddresses) {
  // 10.0.1.2 is y/b: selectors decide for workloads, so 10.0.0.0/8 does not allow it.
  EXPECT_FALSE(Allowed("x/a", "10.0.1.2"));
  // An address of 10/8 that no workload has is outside the cluster and matches.
  EXPECT_TRUE(Allowed("x/a", "10.9.9.9"));
}
TEST_F(IpBlockTest, Ipv6CidrAndExcept) {
  EXPECT_TRUE(Allowed("x/a", "2001:db8::1"));
  EXPECT_FALSE(Allowed("x/a", "2001:db8:1::1"));
  EXPECT_FALSE(Allowed("x/a", "2001:db9::1"));
}
TEST_F(IpBlockTest, IngressFromCidrWithPort) {
  EXPECT_TRUE(Allowed("198.51.100.7", "x/a", 443));
  EXPECT_FALSE(Allowed("198.51.100.7", "x/a", 80));
  EXPECT_FALSE(Allowed("203.0.113.1", "x/a", 443));
}
TEST_F(IpBlockTest, ExternalEndHasNoPolicy) {
  Evaluator ev(c_);
  Verdict v = ev.Evaluate(MakeFlow(c_, "198.51.100.7", "x/a", Protocol::kTCP, 443));
  EXPECT_EQ(v.egress.reason, Reason::kExternal);
  EXPECT_TRUE(v.egress.allowed);
  EXPECT_EQ(v.ingress.reason, Reason::kRule);
  EXPECT_EQ(v.ingress.policy, "NetworkPolicy x/ingress-cidr");
}
TEST_F(IpBlockTest, NamedPortNeverMatchesExternalDestination) {
  ClusterBuilder b = Grid();
  b.Add(NetPol("x", "egress-named", Sel({{"pod", "a"}}), kEgressOnly, {},
               {AllowAll({Named("serve-80-tcp")})}));
  Cluster c = b.Build();
  Evaluator ev(c);
  EXPECT_TRUE(ev.Evaluate(MakeFlow(c, "x/a", "y/a", Protocol::kTCP, 80)).allowed);
  EXPECT_FALSE(ev.Evaluate(MakeFlow(c, "x/a", "192.0.2.1", Protocol::kTCP, 80)).allowed);
}

TEST(NamedPort, DestinationWithoutThePortMatchesNothing) {
  Cluster c = ClusterBuilder()
                  .Ns("x")
                  .Pod("x", "client", {{"app", "client"}}, {"10.0.0.1"})
                  .Pod("x", "web", {{"app", "web"}}, {"10.0.0.2"}, {{"http", Protocol::kTCP, 8080}})
                  .Pod("x", "db", {{"app", "db"}}, {"10.0.0.3"}, {{"pg", Protocol::kTCP, 5432}})
                  .Add(NetPol("x", "client-out", Sel({{"app", "client"}}), kEgressOnly, {},
                              {AllowAll({Named("http")})}))
                  .Build();
  Evaluator ev(c);
  EXPECT_TRUE(ev.Evaluate(MakeFlow(c, "x/client", "x/web", Protocol::kTCP, 8080)).allowed);
  EXPECT_FALSE(ev.Evaluate(MakeFlow(c, "x/client", "x/web", Protocol::kTCP, 80)).allowed);
  EXPECT_FALSE(ev.Evaluate(MakeFlow(c, "x/client", "x/db", Protocol::kTCP, 8080)).allowed);
  EXPECT_FALSE(ev.Evaluate(MakeFlow(c, "x/client", "x/db", Protocol::kTCP, 5432)).allowed);
}

TEST(Implicit, NamespaceWithoutObjectHasItsNameLabel) {
  Cluster c = ClusterBuilder()
                  .Ns("x")
                  .Pod("x", "a", {{"app", "a"}}, {"10.0.0.1"})
                  .Pod("ghost", "b", {{"app", "b"}}, {"10.0.0.2"})
                  .Add(NetPol("x", "from-ghost", Sel(), kIngressOnly,
                              {Allow({NsPeer(Sel({{"kubernetes.io/metadata.name", "ghost"}}))})}))
                  .Build();
  Evaluator ev(c);
  EXPECT_TRUE(ev.Evaluate(MakeFlow(c, "ghost/b", "x/a")).allowed);
}

}  // namespace
}  // namespace bulkhead::engine
