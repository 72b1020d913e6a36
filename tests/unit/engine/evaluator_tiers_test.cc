// Reference evaluator: admin and baseline tiers, Pass, priorities, native deny, DefaultDeny,
// modes, audit-mode policies, process selectors, IPv6, and the fields explain relies on.
#include <gtest/gtest.h>

#include "engine/evaluator.h"
#include "unit/engine/cluster_builder.h"

namespace bulkhead::engine {
namespace {

using namespace testing;  // NOLINT: the builder vocabulary

ClusterBuilder Base() {
  ClusterBuilder b;
  b.Ns("prod", {{"env", "prod"}})
      .Ns("dev", {{"env", "dev"}})
      .Ns("mon", {{"team", "mon"}})
      .Pod("prod", "web", {{"app", "web"}}, {"10.1.0.1", "fd01::1"},
           {{"http", Protocol::kTCP, 8080}})
      .Pod("prod", "db", {{"app", "db"}}, {"10.1.0.2"},
           {{"pg", Protocol::kTCP, 5432}, {"dns", Protocol::kUDP, 53}})
      .Pod("dev", "tool", {{"app", "tool"}}, {"10.2.0.1", "fd02::1"})
      .Pod("mon", "prom", {{"app", "prom"}}, {"10.3.0.1"})
      .Node("n1", {{"role", "worker"}}, {"192.0.2.100"})
      .Node("n2", {{"role", "infra"}}, {"192.0.2.101"});
  return b;
}

Policy ClusterPol(const std::string& name, int32_t priority, LabelSelector namespaces,
                  std::vector<Rule> ingress, std::vector<Rule> egress = {},
                  Mode mode = Mode::kEnforce, Tier tier = Tier::kAdmin) {
  Policy p = Anp(name, priority, std::move(namespaces), std::nullopt, std::move(ingress),
                 std::move(egress));
  p.kind = "BulkheadClusterPolicy";
  p.mode = mode;
  p.tier = tier;
  return p;
}

Rule Act(RuleAction a, std::vector<Peer> peers, std::vector<PortMatch> ports = {},
         std::string name = {}) {
  return RuleOf(a, std::move(peers), std::move(ports), std::move(name));
}
const RuleAction kAllowA = RuleAction::kAllow;
const RuleAction kDenyA = RuleAction::kDeny;
const RuleAction kPassA = RuleAction::kPass;

LabelSelector EnvSel(const std::string& env) { return Sel({{"env", env}}); }

class TiersTest : public ::testing::Test {
 protected:
  Verdict Eval(const std::string& src, const std::string& dst, Protocol proto = Protocol::kTCP,
               uint16_t port = 80, const std::string& process = {}) {
    c_ = b_.Build();
    Evaluator ev(c_);
    return ev.Evaluate(MakeFlow(c_, src, dst, proto, port, process));
  }
  ClusterBuilder b_ = Base();
  Cluster c_;
};

TEST_F(TiersTest, AdminDenyBeatsNetworkPolicyAllow) {
  b_.Add(Anp("deny-dev", 10, EnvSel("prod"), std::nullopt,
             {Act(kDenyA, {NsPeer(EnvSel("dev"))}, {}, "no-dev")}));
  b_.Add(NetPol("prod", "open", Sel(), kIngressOnly, {AllowAll()}));
  Verdict v = Eval("dev/tool", "prod/web");
  EXPECT_FALSE(v.allowed);
  EXPECT_EQ(v.ingress.reason, Reason::kRule);
  EXPECT_EQ(v.ingress.tier, Tier::kAdmin);
  EXPECT_EQ(v.ingress.policy, "AdminNetworkPolicy deny-dev");
  EXPECT_EQ(v.ingress.policy_kind, "AdminNetworkPolicy");
  EXPECT_EQ(v.ingress.policy_name, "deny-dev");
  EXPECT_EQ(v.ingress.rule_index, 0);
  EXPECT_EQ(v.ingress.rule_name, "no-dev");
  EXPECT_EQ(v.ingress.action, RuleAction::kDeny);
  EXPECT_TRUE(v.egress.allowed);
  EXPECT_EQ(v.egress.reason, Reason::kDefaultAllow);
  // Other sources are not matched by the ANP and reach the NetworkPolicy.
  Verdict w = Eval("mon/prom", "prod/web");
  EXPECT_TRUE(w.allowed);
  EXPECT_EQ(w.ingress.policy, "NetworkPolicy prod/open");
}

TEST_F(TiersTest, AdminAllowBeatsNetworkPolicyIsolation) {
  b_.Add(Anp("allow-mon", 10, EnvSel("prod"), std::nullopt,
             {Act(kAllowA, {NsPeer(Sel({{"team", "mon"}}))})}));
  b_.Add(NetPol("prod", "deny-all", Sel(), kIngressOnly));
  EXPECT_TRUE(Eval("mon/prom", "prod/web").allowed);
  Verdict v = Eval("dev/tool", "prod/web");
  EXPECT_FALSE(v.allowed);
  EXPECT_EQ(v.ingress.reason, Reason::kIsolated);
  EXPECT_EQ(v.ingress.isolated_by, std::vector<std::string>{"NetworkPolicy prod/deny-all"});
}

TEST_F(TiersTest, LowerPriorityNumberFirst) {
  b_.Add(
      Anp("allow-dev", 20, EnvSel("prod"), std::nullopt, {Act(kAllowA, {NsPeer(EnvSel("dev"))})}));
  b_.Add(Anp("deny-dev", 10, EnvSel("prod"), std::nullopt, {Act(kDenyA, {NsPeer(EnvSel("dev"))})}));
  Verdict v = Eval("dev/tool", "prod/web");
  EXPECT_FALSE(v.allowed);
  EXPECT_EQ(v.ingress.policy_name, "deny-dev");
}

TEST_F(TiersTest, PriorityChangeFlipsVerdict) {
  b_.Add(
      Anp("allow-dev", 5, EnvSel("prod"), std::nullopt, {Act(kAllowA, {NsPeer(EnvSel("dev"))})}));
  b_.Add(Anp("deny-dev", 10, EnvSel("prod"), std::nullopt, {Act(kDenyA, {NsPeer(EnvSel("dev"))})}));
  Verdict v = Eval("dev/tool", "prod/web");
  EXPECT_TRUE(v.allowed);
  EXPECT_EQ(v.ingress.policy_name, "allow-dev");
}

TEST_F(TiersTest, EqualPrioritiesOrderedByName) {
  b_.Add(Anp("b-deny", 10, EnvSel("prod"), std::nullopt, {Act(kDenyA, {NsPeer(EnvSel("dev"))})}));
  b_.Add(Anp("a-allow", 10, EnvSel("prod"), std::nullopt, {Act(kAllowA, {NsPeer(EnvSel("dev"))})}));
  EXPECT_EQ(Eval("dev/tool", "prod/web").ingress.policy_name, "a-allow");
}

TEST_F(TiersTest, FirstMatchingRuleInOrderWins) {
  b_.Add(Anp("ordered", 10, EnvSel("prod"), std::nullopt,
             {Act(kAllowA, {NsPeer(EnvSel("dev"))}, {Tcp(443)}),
              Act(kDenyA, {NsPeer(EnvSel("dev"))}), Act(kAllowA, {NsPeer(EnvSel("dev"))})}));
  Verdict ok = Eval("dev/tool", "prod/web", Protocol::kTCP, 443);
  EXPECT_TRUE(ok.allowed);
  EXPECT_EQ(ok.ingress.rule_index, 0);
  Verdict no = Eval("dev/tool", "prod/web", Protocol::kTCP, 80);
  EXPECT_FALSE(no.allowed);
  EXPECT_EQ(no.ingress.rule_index, 1);
}

TEST_F(TiersTest, PassSkipsToNamespaceTierThenBaseline) {
  b_.Add(Anp("pass-dev", 10, EnvSel("prod"), std::nullopt,
             {Act(kPassA, {NsPeer(EnvSel("dev"))}, {}, "to-teams")}));
  b_.Add(Anp("deny-dev-later", 20, EnvSel("prod"), std::nullopt,
             {Act(kDenyA, {NsPeer(EnvSel("dev"))})}));
  b_.Add(Banp(EnvSel("prod"), std::nullopt, {Act(kDenyA, {NsPeer(EnvSel("dev"))}, {}, "base")}));
  // No NetworkPolicy: the baseline decides; the lower ANP is never consulted.
  Verdict v = Eval("dev/tool", "prod/web");
  EXPECT_FALSE(v.allowed);
  EXPECT_EQ(v.ingress.tier, Tier::kBaseline);
  EXPECT_EQ(v.ingress.policy, "BaselineAdminNetworkPolicy default");
  EXPECT_EQ(v.ingress.rule_name, "base");
  ASSERT_EQ(v.ingress.passed_by.size(), 1u);
  EXPECT_NE(v.ingress.passed_by[0].find("AdminNetworkPolicy pass-dev"), std::string::npos);
  // A NetworkPolicy that isolates and allows: the baseline is not consulted.
  b_.Add(NetPol("prod", "allow-dev", Sel({{"app", "web"}}), kIngressOnly,
                {Allow({NsPeer(EnvSel("dev"))})}));
  Verdict w = Eval("dev/tool", "prod/web");
  EXPECT_TRUE(w.allowed);
  EXPECT_EQ(w.ingress.tier, Tier::kNamespace);
  EXPECT_EQ(w.ingress.passed_by.size(), 1u);
}

TEST_F(TiersTest, BaselineOnlyWhenNamespaceTierDidNotIsolate) {
  b_.Add(Banp(EnvSel("prod"), std::nullopt, {Act(kAllowA, {NsPeer(EnvSel("dev"))})}));
  EXPECT_TRUE(Eval("dev/tool", "prod/web").allowed);
  EXPECT_EQ(Eval("dev/tool", "prod/web").ingress.tier, Tier::kBaseline);
  b_.Add(NetPol("prod", "only-mon", Sel({{"app", "web"}}), kIngressOnly,
                {Allow({NsPeer(Sel({{"team", "mon"}}))})}));
  Verdict v = Eval("dev/tool", "prod/web");
  EXPECT_FALSE(v.allowed);
  EXPECT_EQ(v.ingress.reason, Reason::kIsolated);
  // The db is not isolated: the baseline still allows it.
  EXPECT_TRUE(Eval("dev/tool", "prod/db").allowed);
}

TEST_F(TiersTest, AdminSubjectPodSelector) {
  b_.Add(Anp("db-only", 10, EnvSel("prod"), Sel({{"app", "db"}}), {Act(kDenyA, {NsPeer(Sel())})}));
  EXPECT_FALSE(Eval("dev/tool", "prod/db").allowed);
  EXPECT_TRUE(Eval("dev/tool", "prod/web").allowed);
}

TEST_F(TiersTest, AdminEgressNetworksAndNodes) {
  b_.Add(Anp("egress", 10, EnvSel("prod"), std::nullopt, {},
             {Act(kAllowA, {NodesPeer(Sel({{"role", "worker"}}))}),
              Act(kDenyA, {Networks({"192.0.2.0/24"})}),
              Act(kDenyA, {NodesPeer(Sel({{"role", "infra"}}))})}));
  EXPECT_TRUE(Eval("prod/web", "192.0.2.100").allowed);   // worker node
  EXPECT_FALSE(Eval("prod/web", "192.0.2.101").allowed);  // in the network
  EXPECT_FALSE(Eval("prod/web", "192.0.2.5").allowed);
  EXPECT_TRUE(Eval("prod/web", "198.51.100.1").allowed);
  // Networks never match workloads: 10.2.0.1 is dev/tool.
  EXPECT_TRUE(Eval("prod/web", "10.2.0.1").allowed);
  EXPECT_FALSE(Eval("prod/web", "192.0.2.5").egress.allowed);
  EXPECT_EQ(Eval("prod/web", "192.0.2.5").egress.rule_index, 1);
}

TEST_F(TiersTest, AdminNamedPortMatchesAnyProtocolOfDestination) {
  b_.Add(Anp("named", 10, EnvSel("prod"), std::nullopt,
             {Act(kAllowA, {NsPeer(EnvSel("dev"))},
                  {Named("pg", std::nullopt), Named("dns", std::nullopt)}),
              Act(kDenyA, {NsPeer(EnvSel("dev"))})}));
  EXPECT_TRUE(Eval("dev/tool", "prod/db", Protocol::kTCP, 5432).allowed);
  EXPECT_TRUE(Eval("dev/tool", "prod/db", Protocol::kUDP, 53).allowed);
  EXPECT_FALSE(Eval("dev/tool", "prod/db", Protocol::kUDP, 5432).allowed);
  EXPECT_FALSE(Eval("dev/tool", "prod/db", Protocol::kTCP, 53).allowed);
  EXPECT_FALSE(Eval("dev/tool", "prod/web", Protocol::kTCP, 5432).allowed);  // web has no pg
}

TEST_F(TiersTest, AdminPortRange) {
  b_.Add(Anp("range", 10, EnvSel("prod"), std::nullopt,
             {Act(kDenyA, {NsPeer(Sel())}, {Range(Protocol::kUDP, 1000, 2000)})}));
  EXPECT_FALSE(Eval("dev/tool", "prod/web", Protocol::kUDP, 1000).allowed);
  EXPECT_FALSE(Eval("dev/tool", "prod/web", Protocol::kUDP, 2000).allowed);
  EXPECT_TRUE(Eval("dev/tool", "prod/web", Protocol::kUDP, 2001).allowed);
  EXPECT_TRUE(Eval("dev/tool", "prod/web", Protocol::kTCP, 1500).allowed);
}

TEST_F(TiersTest, NativeDenyWinsOverAllows) {
  b_.Add(NativePol("prod", "lockdown", Sel({{"app", "db"}}), kIngressOnly,
                   {Act(kDenyA, {NsPeer(Sel(), Sel({{"app", "tool"}}))}, {}, "no-tools"),
                    Allow({NsPeer(Sel())})}));
  b_.Add(NetPol("prod", "tools-welcome", Sel({{"app", "db"}}), kIngressOnly,
                {Allow({NsPeer(EnvSel("dev"))})}));
  Verdict v = Eval("dev/tool", "prod/db");
  EXPECT_FALSE(v.allowed);
  EXPECT_EQ(v.ingress.reason, Reason::kRule);
  EXPECT_EQ(v.ingress.policy, "BulkheadPolicy prod/lockdown");
  EXPECT_EQ(v.ingress.rule_name, "no-tools");
  EXPECT_EQ(v.ingress.action, RuleAction::kDeny);
  EXPECT_EQ(v.ingress.isolated_by.size(), 2u);
  EXPECT_TRUE(Eval("mon/prom", "prod/db").allowed);
}

TEST_F(TiersTest, DefaultDenyClusterScopeWithNamespaceSelector) {
  b_.Add(DefaultDenyPol("zero-trust", "", EnvSel("prod"), Sel()));
  Verdict v = Eval("dev/tool", "prod/web");
  EXPECT_FALSE(v.allowed);
  EXPECT_EQ(v.ingress.reason, Reason::kDefaultDeny);
  EXPECT_EQ(v.ingress.policy, "DefaultDeny zero-trust");
  EXPECT_TRUE(v.egress.allowed);  // dev is not covered
  EXPECT_FALSE(Eval("prod/web", "dev/tool").egress.allowed);
  EXPECT_TRUE(Eval("mon/prom", "dev/tool").allowed);
}

TEST_F(TiersTest, DefaultDenyYieldsToEveryTier) {
  b_.Add(DefaultDenyPol("zt", "prod", std::nullopt, Sel(), kIngressOnly));
  b_.Add(Banp(EnvSel("prod"), std::nullopt, {Act(kAllowA, {NsPeer(Sel({{"team", "mon"}}))})}));
  b_.Add(Anp("allow-dev-443", 10, EnvSel("prod"), std::nullopt,
             {Act(kAllowA, {NsPeer(EnvSel("dev"))}, {Tcp(443)}, "dev-https")}));
  EXPECT_TRUE(Eval("mon/prom", "prod/web").allowed);                       // baseline
  EXPECT_TRUE(Eval("dev/tool", "prod/web", Protocol::kTCP, 443).allowed);  // admin
  Verdict v = Eval("dev/tool", "prod/web", Protocol::kTCP, 80);
  EXPECT_FALSE(v.allowed);
  EXPECT_EQ(v.ingress.reason, Reason::kDefaultDeny);
  EXPECT_EQ(v.ingress.policy, "DefaultDeny prod/zt");
  ASSERT_TRUE(v.ingress.nearest_miss);
  EXPECT_EQ(v.ingress.nearest_miss->policy, "AdminNetworkPolicy allow-dev-443");
  EXPECT_EQ(v.ingress.nearest_miss->differed, "port");
  EXPECT_TRUE(Eval("prod/web", "dev/tool").allowed);  // egress not covered
  b_.Add(NetPol("prod", "np", Sel(), kIngressOnly, {Allow({NsPeer(EnvSel("dev"))})}));
  EXPECT_TRUE(Eval("dev/tool", "prod/web", Protocol::kTCP, 80).allowed);  // namespace tier
}

TEST_F(TiersTest, DefaultDenyWorkloadScope) {
  b_.Add(DefaultDenyPol("pci", "", std::nullopt, Sel({{"app", "db"}})));
  EXPECT_FALSE(Eval("prod/web", "prod/db").allowed);
  EXPECT_TRUE(Eval("dev/tool", "prod/web").allowed);
}

TEST_F(TiersTest, WorkloadAuditModeLetsTrafficPass) {
  b_ = ClusterBuilder();
  b_.Ns("prod", {{"env", "prod"}}, Mode::kAudit)
      .Ns("dev", {{"env", "dev"}})
      .Pod("prod", "web", {{"app", "web"}}, {"10.1.0.1"})
      .Pod("prod", "db", {{"app", "db"}}, {"10.1.0.2"}, {}, Mode::kEnforce)
      .Pod("dev", "tool", {{"app", "tool"}}, {"10.2.0.1"}, {}, Mode::kLearn)
      .Add(NetPol("prod", "deny", Sel(), kIngressOnly))
      .Add(NetPol("dev", "deny", Sel(), kIngressOnly));
  Verdict web = Eval("dev/tool", "prod/web");  // prod is audit: passes, would deny
  EXPECT_TRUE(web.allowed);
  EXPECT_EQ(web.ingress.mode, Mode::kAudit);
  EXPECT_TRUE(web.ingress.would_deny);
  EXPECT_EQ(web.ingress.reason, Reason::kIsolated);
  EXPECT_NE(web.ingress.Explain().find("enforcement would deny"), std::string::npos);
  Verdict db = Eval("dev/tool", "prod/db");  // the workload's own enforce wins
  EXPECT_FALSE(db.allowed);
  EXPECT_FALSE(db.ingress.would_deny);
  Verdict tool = Eval("prod/web", "dev/tool");  // learn
  EXPECT_TRUE(tool.allowed);
  EXPECT_EQ(tool.ingress.mode, Mode::kLearn);
  EXPECT_TRUE(tool.ingress.would_deny);
  Verdict fine = Eval("prod/db", "prod/web", Protocol::kUDP, 1);
  EXPECT_TRUE(fine.ingress.would_deny);
  EXPECT_FALSE(Eval("prod/db", "dev/tool").egress.would_deny);
}

TEST_F(TiersTest, AuditPolicyNeverChangesVerdict) {
  b_.Add(NativePol("prod", "trial", Sel({{"app", "web"}}), kIngressOnly,
                   {Allow({NsPeer(Sel({{"team", "mon"}}))})}, {}, Mode::kAudit));
  Verdict v = Eval("dev/tool", "prod/web");
  EXPECT_TRUE(v.allowed);
  EXPECT_EQ(v.ingress.reason, Reason::kDefaultAllow);  // audit policies do not isolate
  EXPECT_TRUE(v.ingress.would_deny);
  EXPECT_EQ(v.ingress.audit_policy, "BulkheadPolicy prod/trial");
  Verdict ok = Eval("mon/prom", "prod/web");
  EXPECT_TRUE(ok.allowed);
  EXPECT_FALSE(ok.ingress.would_deny);
  // An audit policy that would allow does not let an enforced deny through.
  b_.Add(NetPol("prod", "deny", Sel({{"app", "db"}}), kIngressOnly));
  b_.Add(NativePol("prod", "trial-open", Sel({{"app", "db"}}), kIngressOnly, {AllowAll()}, {},
                   Mode::kAudit));
  EXPECT_FALSE(Eval("mon/prom", "prod/db").allowed);
}

TEST_F(TiersTest, AuditClusterPolicyDeny) {
  b_.Add(ClusterPol("trial-deny", 10, EnvSel("prod"), {Act(kDenyA, {NsPeer(EnvSel("dev"))})}, {},
                    Mode::kAudit));
  Verdict v = Eval("dev/tool", "prod/web");
  EXPECT_TRUE(v.allowed);
  EXPECT_TRUE(v.ingress.would_deny);
  EXPECT_EQ(v.ingress.audit_policy, "BulkheadClusterPolicy trial-deny");
  EXPECT_NE(v.ingress.Explain().find("audit-mode BulkheadClusterPolicy trial-deny"),
            std::string::npos);
}

TEST_F(TiersTest, BaselineClusterPolicy) {
  b_.Add(ClusterPol("base", 0, EnvSel("prod"), {Act(kDenyA, {NsPeer(EnvSel("dev"))})}, {},
                    Mode::kEnforce, Tier::kBaseline));
  Verdict v = Eval("dev/tool", "prod/web");
  EXPECT_FALSE(v.allowed);
  EXPECT_EQ(v.ingress.tier, Tier::kBaseline);
  EXPECT_EQ(v.ingress.policy, "BulkheadClusterPolicy base");
}

TEST_F(TiersTest, EgressSubjectProcessSelector) {
  Policy p = NativePol("prod", "curl-out", Sel({{"app", "web"}}), kEgressOnly, {},
                       {Allow({Networks({"198.51.100.0/24"})})});
  p.subject.process = policy::ProcessSelector{{"curl"}, {}};
  b_.Add(p);
  EXPECT_FALSE(Eval("prod/web", "192.0.2.5", Protocol::kTCP, 443, "curl").allowed);
  EXPECT_FALSE(Eval("prod/web", "192.0.2.5", Protocol::kTCP, 443, "/usr/bin/curl").allowed);
  EXPECT_TRUE(Eval("prod/web", "198.51.100.9", Protocol::kTCP, 443, "curl").allowed);
  EXPECT_TRUE(Eval("prod/web", "192.0.2.5", Protocol::kTCP, 443, "nginx").allowed);
  EXPECT_TRUE(Eval("prod/web", "192.0.2.5", Protocol::kTCP, 443).allowed);  // not named
}

// A flow names only its source process, so an ingress subject with a process selector
// (the destination process) never matches: it does not isolate.
TEST_F(TiersTest, IngressSubjectProcessNeverMatches) {
  Policy p = NativePol("prod", "pg-only", Sel({{"app", "db"}}), kIngressOnly,
                       {Allow({NsPeer(EnvSel("prod"))})});
  p.subject.process = policy::ProcessSelector{{"postgres"}, {}};
  b_.Add(p);
  Verdict v = Eval("dev/tool", "prod/db", Protocol::kTCP, 5432, "postgres");
  EXPECT_TRUE(v.allowed);
  EXPECT_EQ(v.ingress.reason, Reason::kDefaultAllow);
}

// A Workload object that is not one of the cluster's is matched on the fly.
TEST_F(TiersTest, WorkloadOutsideTheClusterObject) {
  b_.Add(NetPol("prod", "deny", Sel({{"app", "web"}}), kIngressOnly));
  c_ = b_.Build();
  Evaluator ev(c_);
  policy::Workload copy = *c_.FindWorkload("prod/web");
  Flow f = MakeFlow(c_, "dev/tool", "prod/web");
  f.dst.workload = &copy;
  EXPECT_FALSE(ev.Evaluate(f).allowed);
  copy.labels["app"] = "other";
  EXPECT_TRUE(ev.Evaluate(f).allowed);
}

TEST_F(TiersTest, IngressPeerProcessAndServiceAccount) {
  Peer from_psql = NsPeer(Sel(), Sel({{"app", "tool"}}));
  from_psql.process = policy::ProcessSelector{{"psql"}, {"/opt/pg/bin/psql"}};
  Peer from_sa = NsPeer(Sel());
  from_sa.service_account = "monitor";
  b_.Add(NativePol("prod", "db-in", Sel({{"app", "db"}}), kIngressOnly,
                   {Allow({from_psql}, {Tcp(5432)}), Allow({from_sa})}));
  EXPECT_TRUE(Eval("dev/tool", "prod/db", Protocol::kTCP, 5432, "psql").allowed);
  EXPECT_TRUE(Eval("dev/tool", "prod/db", Protocol::kTCP, 5432, "/opt/pg/bin/psql").allowed);
  EXPECT_FALSE(Eval("dev/tool", "prod/db", Protocol::kTCP, 5432, "bash").allowed);
  EXPECT_FALSE(Eval("dev/tool", "prod/db", Protocol::kTCP, 5432).allowed);
  EXPECT_FALSE(Eval("mon/prom", "prod/db").allowed);
  c_ = b_.Build();
  for (auto& w : c_.workloads) {
    if (w.Id() == "mon/prom") w.service_account = "monitor";
  }
  Evaluator ev(c_);
  EXPECT_TRUE(ev.Evaluate(MakeFlow(c_, "mon/prom", "prod/db")).allowed);
}

TEST_F(TiersTest, Ipv6NetworksAndIcmpv6) {
  b_.Add(Anp("v6", 10, EnvSel("prod"), std::nullopt, {},
             {Act(kAllowA, {Networks({"2001:db8::/32"})}), Act(kDenyA, {Networks({"::/0"})})}));
  EXPECT_TRUE(Eval("prod/web", "2001:db8::5", Protocol::kICMPv6, 0).allowed);
  EXPECT_FALSE(Eval("prod/web", "2001:db9::5", Protocol::kICMPv6, 0).allowed);
  EXPECT_TRUE(Eval("prod/web", "192.0.2.5", Protocol::kICMP, 0).allowed);  // v4 not in ::/0
  // fd02::1 is dev/tool: a workload, never matched by networks.
  EXPECT_TRUE(Eval("prod/web", "fd02::1").allowed);
}

TEST_F(TiersTest, NearestMissPrefersPeerMatchOverPortMatch) {
  b_.Add(NetPol("prod", "web-in", Sel({{"app", "web"}}), kIngressOnly,
                {Allow({NsPeer(Sel({{"team", "mon"}}))}, {Tcp(80)}),
                 Allow({NsPeer(EnvSel("dev"))}, {Tcp(443)})}));
  Verdict v = Eval("dev/tool", "prod/web", Protocol::kTCP, 80);
  ASSERT_FALSE(v.allowed);
  EXPECT_EQ(v.ingress.reason, Reason::kIsolated);
  ASSERT_TRUE(v.ingress.nearest_miss);
  EXPECT_EQ(v.ingress.nearest_miss->policy, "NetworkPolicy prod/web-in");
  EXPECT_EQ(v.ingress.nearest_miss->rule_index, 1);
  EXPECT_EQ(v.ingress.nearest_miss->differed, "port");
  EXPECT_EQ(v.ingress.nearest_miss->detail, "rule allows TCP/443, flow is TCP/80");
  std::string explain = v.ingress.Explain();
  EXPECT_NE(explain.find("ingress denied"), std::string::npos) << explain;
  EXPECT_NE(explain.find("isolated by NetworkPolicy prod/web-in"), std::string::npos) << explain;
  EXPECT_NE(explain.find("rule 1"), std::string::npos) << explain;

  Verdict u = Eval("mon/prom", "prod/web", Protocol::kUDP, 80);
  ASSERT_TRUE(u.ingress.nearest_miss);
  EXPECT_EQ(u.ingress.nearest_miss->rule_index, 0);
  EXPECT_EQ(u.ingress.nearest_miss->differed, "protocol");

  Verdict p = Eval("prod/db", "prod/web", Protocol::kTCP, 443);
  ASSERT_TRUE(p.ingress.nearest_miss);
  EXPECT_EQ(p.ingress.nearest_miss->rule_index, 1);
  EXPECT_EQ(p.ingress.nearest_miss->differed, "peer");
  EXPECT_NE(p.ingress.nearest_miss->detail.find("from prod/db"), std::string::npos);
}

// Allows() is the fast path of Evaluate(): the same verdict for every flow of a cluster
// that uses every tier, modes and audit policies.
TEST_F(TiersTest, AllowsAgreesWithEvaluate) {
  b_ = ClusterBuilder();
  b_.Ns("prod", {{"env", "prod"}})
      .Ns("dev", {{"env", "dev"}}, Mode::kAudit)
      .Ns("mon", {{"team", "mon"}})
      .Pod("prod", "web", {{"app", "web"}}, {"10.1.0.1"}, {{"http", Protocol::kTCP, 8080}})
      .Pod("prod", "db", {{"app", "db"}}, {"10.1.0.2"}, {{"pg", Protocol::kTCP, 5432}})
      .Pod("dev", "tool", {{"app", "tool"}}, {"10.2.0.1"})
      .Pod("mon", "prom", {{"app", "prom"}}, {"10.3.0.1"}, {}, Mode::kLearn)
      .Node("n1", {{"role", "worker"}}, {"192.0.2.100"})
      .Add(Anp("guard", 10, EnvSel("prod"), std::nullopt,
               {Act(kDenyA, {NsPeer(EnvSel("dev"))}, {Tcp(22)}),
                Act(kPassA, {NsPeer(Sel({{"team", "mon"}}))})},
               {Act(kAllowA, {NodesPeer(Sel({{"role", "worker"}}))}, {Tcp(6443)})}))
      .Add(ClusterPol("trial", 20, Sel(), {Act(kDenyA, {NsPeer(Sel())}, {Udp(53)})}, {},
                      Mode::kAudit))
      .Add(NetPol("prod", "web", Sel({{"app", "web"}}), kIngressOnly,
                  {Allow({NsPeer(Sel())}, {Named("http")})}))
      .Add(NativePol("prod", "db", Sel({{"app", "db"}}), kBoth,
                     {Act(kDenyA, {NsPeer(EnvSel("dev"))}), Allow({PodPeer("prod", Sel())})},
                     {Allow({IpBlock("198.51.100.0/24", {"198.51.100.128/25"})})}))
      .Add(Banp(Sel(), std::nullopt, {},
                {Act(kDenyA, {Networks({"203.0.113.0/24"})}), Act(kAllowA, {NsPeer(Sel())})}))
      .Add(DefaultDenyPol("zt", "", EnvSel("prod"), Sel(), kEgressOnly));
  c_ = b_.Build();
  Evaluator ev(c_);
  std::vector<std::string> ends = {"198.51.100.1", "198.51.100.200", "203.0.113.1", "192.0.2.100",
                                   "8.8.8.8"};
  for (const auto& w : c_.workloads) ends.push_back(w.Id());
  int checked = 0;
  for (const auto& s : ends) {
    for (const auto& d : ends) {
      if (s == d) continue;
      for (auto [proto, port] : {std::pair{Protocol::kTCP, 22},
                                 {Protocol::kTCP, 8080},
                                 {Protocol::kTCP, 6443},
                                 {Protocol::kUDP, 53},
                                 {Protocol::kICMP, 0}}) {
        Flow f = MakeFlow(c_, s, d, proto, static_cast<uint16_t>(port));
        Verdict v = ev.Evaluate(f);
        EXPECT_EQ(ev.Allows(f), v.allowed) << s << " -> " << d << " " << port;
        EXPECT_EQ(ev.Allows(f, Direction::kEgress), v.egress.allowed) << s << " -> " << d;
        EXPECT_EQ(ev.Allows(f, Direction::kIngress), v.ingress.allowed) << s << " -> " << d;
        ++checked;
      }
    }
  }
  EXPECT_GT(checked, 300);
}

TEST_F(TiersTest, ExplainAndReasonNames) {
  EXPECT_STREQ(ReasonName(Reason::kRule), "rule");
  EXPECT_STREQ(ReasonName(Reason::kIsolated), "isolated");
  EXPECT_STREQ(ReasonName(Reason::kDefaultAllow), "default-allow");
  EXPECT_STREQ(ReasonName(Reason::kDefaultDeny), "default-deny");
  EXPECT_STREQ(ReasonName(Reason::kExternal), "external");
  Verdict v = Eval("192.0.2.7", "prod/web");
  EXPECT_EQ(v.egress.reason, Reason::kExternal);
  EXPECT_EQ(v.egress.Explain(),
            "egress allowed: this end is outside the cluster, no policy applies");
  EXPECT_EQ(v.ingress.Explain(),
            "ingress allowed: no policy selects the workload for ingress (default allow)");
  c_ = b_.Build();
  auto ep = ResolveEndpoint(c_, "10.1.0.2");
  ASSERT_TRUE(ep);
  EXPECT_EQ(ep->ToString(), "prod/db");
  EXPECT_EQ(ResolveEndpoint(c_, "192.0.2.9")->ToString(), "192.0.2.9");
  EXPECT_EQ(ResolveEndpoint(c_, "dev/tool")->workload->name, "tool");
  EXPECT_FALSE(ResolveEndpoint(c_, "dev/none"));
}

}  // namespace
}  // namespace bulkhead::engine
