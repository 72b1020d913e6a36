// Tests of simulate's report builders on hand-made verdicts, clusters and connectivity.
#include "cli/simulate_report.h"

#include <gtest/gtest.h>

#include <string>

namespace bulkhead::cli {
namespace {

using common::IpAddr;
using json = Json;
using policy::Protocol;

IpAddr Ip(const char* s) { return *IpAddr::Parse(s); }

policy::Workload MakeWorkload(const std::string& ns, const std::string& name,
                              policy::Labels labels) {
  policy::Workload w;
  w.namespace_name = ns;
  w.name = name;
  w.kind = "Deployment";
  w.labels = std::move(labels);
  return w;
}

// Two namespaces; b/db accepts TCP on its named port "pg" (5432) from app=api only.
policy::Cluster SmallCluster() {
  policy::Cluster c;
  for (const char* ns : {"a", "b"}) {
    policy::Namespace n;
    n.name = ns;
    n.labels = {{"kubernetes.io/metadata.name", ns}};
    c.namespaces.push_back(n);
  }
  // Deliberately not in id order: the matrix sorts.
  c.workloads.push_back(MakeWorkload("b", "db", {{"app", "db"}}));
  c.workloads.back().named_ports.push_back({"pg", Protocol::kTCP, 5432});
  c.workloads.push_back(MakeWorkload("a", "web", {{"app", "web"}}));
  c.workloads.push_back(MakeWorkload("a", "api", {{"app", "api"}}));

  policy::Policy p;
  p.kind = "NetworkPolicy";
  p.namespace_name = "b";
  p.name = "db";
  p.tier = policy::Tier::kNamespace;
  p.subject.namespace_name = "b";
  p.subject.pod_selector.match_labels = {{"app", "db"}};
  p.applies_ingress = true;
  policy::Rule r;
  policy::Peer peer;
  peer.kind = policy::Peer::Kind::kPods;
  peer.namespace_selector = policy::LabelSelector{};
  peer.pod_selector = policy::LabelSelector{{{"app", "api"}}, {}};
  r.peers.push_back(peer);
  policy::PortMatch port;
  port.kind = policy::PortMatch::Kind::kNamed;
  port.protocol = Protocol::kTCP;
  port.name = "pg";
  r.ports.push_back(port);
  p.ingress.push_back(r);
  c.policies.push_back(p);
  return c;
}

engine::DirectionVerdict RuleAllow() {
  engine::DirectionVerdict v;
  v.direction = policy::Direction::kEgress;
  v.allowed = true;
  v.reason = engine::Reason::kRule;
  v.tier = policy::Tier::kBaseline;
  v.policy = "BaselineAdminNetworkPolicy default";
  v.policy_kind = "BaselineAdminNetworkPolicy";
  v.policy_name = "default";
  v.rule_index = 1;
  v.rule_name = "allow-web";
  v.action = policy::RuleAction::kAllow;
  return v;
}

engine::DirectionVerdict IsolatedDeny() {
  engine::DirectionVerdict v;
  v.direction = policy::Direction::kIngress;
  v.allowed = false;
  v.reason = engine::Reason::kIsolated;
  v.tier = policy::Tier::kNamespace;
  v.passed_by = {"AdminNetworkPolicy guard rule 1 \"pass\""};
  v.isolated_by = {"NetworkPolicy b/db", "NetworkPolicy b/default-deny"};
  v.nearest_miss =
      engine::NearMiss{"NetworkPolicy b/db", 0, "", "port", "rule allows TCP/5432, flow is TCP/80"};
  return v;
}

TEST(FlowJsonTest, DirectionWithRuleHasEveryKey) {
  json j = DirectionJson(RuleAllow());
  EXPECT_EQ(j["verdict"], "allow");
  EXPECT_EQ(j["reason"], "rule");
  EXPECT_EQ(j["tier"], "baseline");
  EXPECT_EQ(j["policy"]["id"], "BaselineAdminNetworkPolicy default");
  EXPECT_EQ(j["policy"]["kind"], "BaselineAdminNetworkPolicy");
  EXPECT_TRUE(j["policy"]["namespace"].is_null());  // cluster-scoped
  EXPECT_EQ(j["policy"]["name"], "default");
  EXPECT_EQ(j["ruleIndex"], 1);
  EXPECT_EQ(j["ruleName"], "allow-web");
  EXPECT_EQ(j["action"], "Allow");
  EXPECT_EQ(j["passedBy"], json::array());
  EXPECT_EQ(j["isolatedBy"], json::array());
  EXPECT_TRUE(j["nearestMiss"].is_null());
  EXPECT_EQ(j["mode"], "enforce");
  EXPECT_FALSE(j.contains("wouldDeny"));
  EXPECT_FALSE(j.contains("auditPolicy"));
  EXPECT_EQ(j["explanation"], RuleAllow().Explain());
}

TEST(FlowJsonTest, ImplicitDenyCarriesIsolationAndNearestMiss) {
  json j = DirectionJson(IsolatedDeny());
  EXPECT_EQ(j["verdict"], "deny");
  EXPECT_EQ(j["reason"], "isolated");
  EXPECT_TRUE(j["policy"].is_null());
  EXPECT_TRUE(j["ruleIndex"].is_null());
  EXPECT_TRUE(j["ruleName"].is_null());
  EXPECT_TRUE(j["action"].is_null());
  EXPECT_EQ(j["isolatedBy"], json({"NetworkPolicy b/db", "NetworkPolicy b/default-deny"}));
  EXPECT_EQ(j["passedBy"], json({"AdminNetworkPolicy guard rule 1 \"pass\""}));
  const json& m = j["nearestMiss"];
  EXPECT_EQ(m["policy"], "NetworkPolicy b/db");
  EXPECT_EQ(m["ruleIndex"], 0);
  EXPECT_TRUE(m["ruleName"].is_null());
  EXPECT_EQ(m["differed"], "port");
  EXPECT_EQ(m["detail"], "rule allows TCP/5432, flow is TCP/80");
}

TEST(FlowJsonTest, AuditFieldsOnlyWhenSet) {
  engine::DirectionVerdict v = RuleAllow();
  v.mode = policy::Mode::kAudit;
  v.would_deny = true;
  v.audit_policy = "BulkheadPolicy b/lockdown";
  json j = DirectionJson(v);
  EXPECT_EQ(j["mode"], "audit");
  EXPECT_EQ(j["wouldDeny"], true);
  EXPECT_EQ(j["auditPolicy"], "BulkheadPolicy b/lockdown");
}

TEST(FlowJsonTest, TopLevelShape) {
  policy::Cluster c = SmallCluster();
  engine::Flow flow;
  flow.src.workload = c.FindWorkload("a/web");
  flow.dst.workload = c.FindWorkload("b/db");
  flow.dst.ip = Ip("10.0.0.7");
  flow.protocol = Protocol::kUDP;
  flow.port = 53;
  engine::Verdict verdict{false, RuleAllow(), IsolatedDeny()};
  json j = FlowJson(flow, verdict);
  EXPECT_EQ(j["from"], "a/web");
  EXPECT_EQ(j["to"], "b/db");
  EXPECT_EQ(j["toAddress"], "10.0.0.7");
  EXPECT_FALSE(j.contains("fromAddress"));
  EXPECT_FALSE(j.contains("fromProcess"));
  EXPECT_EQ(j["port"], 53);
  EXPECT_EQ(j["protocol"], "UDP");
  EXPECT_EQ(j["verdict"], "deny");
  EXPECT_EQ(j["egress"]["verdict"], "allow");
  EXPECT_EQ(j["ingress"]["verdict"], "deny");

  flow.src = engine::FlowEndpoint{nullptr, Ip("203.0.113.9")};
  flow.src_process = "curl";
  j = FlowJson(flow, verdict);
  EXPECT_EQ(j["from"], "203.0.113.9");
  EXPECT_EQ(j["fromProcess"], "curl");
}

TEST(FlowTextTest, VerdictLineThenOneLinePerDirectionWithExplanation) {
  policy::Cluster c = SmallCluster();
  engine::Flow flow;
  flow.src.workload = c.FindWorkload("a/web");
  flow.dst.workload = c.FindWorkload("b/db");
  flow.port = 80;
  engine::Verdict verdict{false, RuleAllow(), IsolatedDeny()};
  std::string text = FlowText(flow, verdict, Style(false));
  EXPECT_EQ(text.rfind("DENIED  a/web -> b/db  TCP/80\n", 0), 0u) << text;
  EXPECT_NE(text.find("  egress   allow  a/web  baseline tier   BaselineAdminNetworkPolicy "
                      "default, rule 1 \"allow-web\" (Allow)\n"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("  ingress  deny   b/db   namespace tier  isolated, no rule allows\n"),
            std::string::npos)
      << text;
  // A multi-clause explanation is shown one clause per line, aligned under the first.
  std::string why = IsolatedDeny().Explain();
  size_t cut = why.find("; ");
  ASSERT_NE(cut, std::string::npos) << why;
  EXPECT_NE(text.find("why    " + why.substr(0, cut) + "\n"), std::string::npos) << text;
  size_t next = why.find("; ", cut + 2);
  EXPECT_NE(text.find("\n" + std::string(25, ' ') + why.substr(cut + 2, next - cut - 2) + "\n"),
            std::string::npos)
      << text;
  EXPECT_EQ(text.find("; "), std::string::npos) << text;
  EXPECT_NE(text.find("why    " + RuleAllow().Explain()), std::string::npos) << text;
  EXPECT_EQ(text.find('\033'), std::string::npos);  // no colour when disabled

  std::string colored = FlowText(flow, verdict, Style(true));
  EXPECT_NE(colored.find("\033[31mDENIED\033[0m"), std::string::npos);
}

TEST(FlowTextTest, AuditWouldDenyIsFlagged) {
  policy::Cluster c = SmallCluster();
  engine::Flow flow;
  flow.src.workload = c.FindWorkload("a/api");
  flow.dst.workload = c.FindWorkload("b/db");
  flow.port = 5432;
  engine::DirectionVerdict in = RuleAllow();
  in.direction = policy::Direction::kIngress;
  in.mode = policy::Mode::kAudit;
  in.would_deny = true;
  engine::Verdict verdict{true, RuleAllow(), in};
  std::string text = FlowText(flow, verdict, Style(false));
  EXPECT_EQ(text.rfind("ALLOWED  a/api -> b/db  TCP/5432\n", 0), 0u) << text;
  EXPECT_NE(text.find("would be denied when enforced"), std::string::npos) << text;
  EXPECT_NE(text.find("mode   audit: passes now, enforcement would deny it"), std::string::npos)
      << text;
}

TEST(MatrixTest, EveryOrderedPairIncludingSelfSortedById) {
  policy::Cluster c = SmallCluster();
  ReachabilityMatrix m = ComputeMatrix(c, Protocol::kTCP, 5432);
  ASSERT_EQ(m.workloads, (std::vector<std::string>{"a/api", "a/web", "b/db"}));
  ASSERT_EQ(m.cells.size(), 3u);
  for (const auto& row : m.cells) ASSERT_EQ(row.size(), 3u);
  // Only b/db is isolated (ingress), and only app=api may reach it on pg.
  EXPECT_TRUE(m.cells[0][2].allowed);   // a/api -> b/db
  EXPECT_FALSE(m.cells[1][2].allowed);  // a/web -> b/db
  EXPECT_FALSE(m.cells[2][2].allowed);  // b/db -> itself: evaluated like any flow
  EXPECT_TRUE(m.cells[0][0].allowed);
  EXPECT_TRUE(m.cells[2][0].allowed);

  json j = MatrixJson(m);
  EXPECT_EQ(j["port"], 5432);
  EXPECT_EQ(j["protocol"], "TCP");
  EXPECT_EQ(j["workloads"], json({"a/api", "a/web", "b/db"}));
  ASSERT_EQ(j["matrix"].size(), 3u);
  for (const auto& from : m.workloads) {
    ASSERT_EQ(j["matrix"][from].size(), 3u) << from;
    EXPECT_TRUE(j["matrix"][from].contains(from)) << from;
  }
  EXPECT_EQ(j["matrix"]["a/api"]["b/db"], "allow");
  EXPECT_EQ(j["matrix"]["a/web"]["b/db"], "deny");
  EXPECT_EQ(j["matrix"]["b/db"]["b/db"], "deny");

  // Another port: the named port no longer matches.
  EXPECT_FALSE(ComputeMatrix(c, Protocol::kTCP, 5433).cells[0][2].allowed);
}

TEST(MatrixTest, TextIsANumberedGridWithLegend) {
  ReachabilityMatrix m;
  m.protocol = Protocol::kUDP;
  m.port = 53;
  m.workloads = {"x/a", "y/long-name"};
  m.cells = {{{true, false}, {false, false}}, {{true, true}, {true, false}}};
  std::string text = MatrixText(m, Style(false));
  EXPECT_NE(text.find("Reachability on UDP/53"), std::string::npos) << text;
  EXPECT_NE(text.find("\n" + std::string(18, ' ') + "1  2\n"), std::string::npos) << text;
  EXPECT_NE(text.find("\n  1  x/a          +  -\n"), std::string::npos) << text;
  EXPECT_NE(text.find("\n  2  y/long-name  !  +\n"), std::string::npos) << text;
  EXPECT_NE(text.find("+ allowed"), std::string::npos);
  EXPECT_NE(text.find("- denied"), std::string::npos);
  EXPECT_NE(text.find("3 of 4 flows allowed"), std::string::npos) << text;

  EXPECT_EQ(MatrixText(ReachabilityMatrix{}, Style(false)),
            "No workloads: nothing to evaluate on TCP/0.\n");
}

TEST(RangeTest, CidrsCoverExactlyTheRange) {
  auto cidrs = [](const char* a, const char* b) {
    std::vector<std::string> out;
    for (const auto& c : RangeToCidrs(Ip(a), Ip(b))) out.push_back(c.ToString());
    return out;
  };
  EXPECT_EQ(cidrs("0.0.0.0", "255.255.255.255"), (std::vector<std::string>{"0.0.0.0/0"}));
  EXPECT_EQ(cidrs("10.0.0.0", "10.255.255.255"), (std::vector<std::string>{"10.0.0.0/8"}));
  EXPECT_EQ(cidrs("0.0.0.0", "9.255.255.255"),
            (std::vector<std::string>{"0.0.0.0/5", "8.0.0.0/7"}));
  EXPECT_EQ(cidrs("10.0.0.1", "10.0.0.6"),
            (std::vector<std::string>{"10.0.0.1/32", "10.0.0.2/31", "10.0.0.4/31", "10.0.0.6/32"}));
  EXPECT_EQ(cidrs("203.0.113.128", "255.255.255.255").back(), "224.0.0.0/3");
  EXPECT_EQ(cidrs("::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"),
            (std::vector<std::string>{"::/0"}));
  EXPECT_EQ(cidrs("fd00::", "fd00::1"), (std::vector<std::string>{"fd00::/127"}));
  EXPECT_TRUE(cidrs("10.0.0.2", "10.0.0.1").empty());
  EXPECT_TRUE(RangeToCidrs(Ip("10.0.0.1"), Ip("::1")).empty());

  EXPECT_EQ(DescribeRange(Ip("10.0.0.0"), Ip("10.255.255.255")), "10.0.0.0/8");
  EXPECT_EQ(DescribeRange(Ip("0.0.0.0"), Ip("9.255.255.255")), "0.0.0.0-9.255.255.255");
}

engine::ConnectionSet Set(std::map<Protocol, engine::PortIntervals> ports, bool other = false) {
  engine::ConnectionSet s;
  s.ports = std::move(ports);
  s.other_protocols = other;
  return s;
}

engine::ConnEnd End(const policy::Workload* w) {
  engine::ConnEnd e;
  e.workload = w;
  return e;
}

engine::ConnectivityEntry Entry(engine::ConnEnd src, engine::ConnEnd dst,
                                engine::ConnectionSet allowed) {
  engine::ConnectivityEntry e;
  e.src = std::move(src);
  e.dst = std::move(dst);
  e.allowed = std::move(allowed);
  return e;
}

engine::ConnEnd Range(const char* a, const char* b) {
  engine::ConnEnd e;
  e.first = Ip(a);
  e.last = Ip(b);
  return e;
}

TEST(ConnectivityTest, JsonSortedWithProtocolsAndRanges) {
  policy::Cluster c = SmallCluster();
  const auto* web = c.FindWorkload("a/web");
  const auto* api = c.FindWorkload("a/api");
  engine::ConnectivityReport report;
  report.entries.push_back(Entry(End(web), Range("11.0.0.0", "255.255.255.255"), Set({}, false)));
  report.entries.push_back(
      Entry(End(web), End(api),
            Set({{Protocol::kTCP, {{80, 80}, {8000, 8100}}}, {Protocol::kUDP, {{53, 53}}}})));
  report.entries.push_back(Entry(End(api), Range("10.0.0.0", "10.255.255.255"),
                                 Set({{Protocol::kTCP, {{1, 65535}}},
                                      {Protocol::kUDP, {{1, 65535}}},
                                      {Protocol::kSCTP, {{1, 65535}}}},
                                     true)));
  json j = ConnectivityJson(report);
  const json& conns = j["connections"];
  ASSERT_EQ(conns.size(), 3u);
  // a/api first (sorted by source id), then a/web's workload peer before its external peer.
  EXPECT_EQ(conns[0]["from"], "a/api");
  EXPECT_EQ(conns[0]["to"], "10.0.0.0/8");
  EXPECT_FALSE(conns[0].contains("fromRange"));
  EXPECT_EQ(conns[0]["toRange"]["first"], "10.0.0.0");
  EXPECT_EQ(conns[0]["toRange"]["last"], "10.255.255.255");
  EXPECT_EQ(conns[0]["toRange"]["cidrs"], json({"10.0.0.0/8"}));
  EXPECT_EQ(conns[0]["otherProtocols"], true);
  EXPECT_EQ(conns[0]["allowed"], report.entries[2].allowed.ToString());

  EXPECT_EQ(conns[1]["from"], "a/web");
  EXPECT_EQ(conns[1]["to"], "a/api");
  EXPECT_EQ(conns[1]["protocols"]["TCP"], json::parse("[[80,80],[8000,8100]]"));
  EXPECT_EQ(conns[1]["protocols"]["UDP"], json::parse("[[53,53]]"));
  EXPECT_FALSE(conns[1]["protocols"].contains("SCTP"));
  EXPECT_EQ(conns[1]["otherProtocols"], false);

  // Denied pairs stay in the JSON, with nothing allowed.
  EXPECT_EQ(conns[2]["to"], "11.0.0.0-255.255.255.255");
  EXPECT_EQ(conns[2]["protocols"], json::object());
  EXPECT_EQ(conns[2]["toRange"]["cidrs"].size(), 6u);  // 11/8, 12/6, 16/4, 32/3, 64/2, 128/1
}

TEST(ConnectivityTest, TextAlignsAndOmitsDeniedPairs) {
  policy::Cluster c = SmallCluster();
  const auto* web = c.FindWorkload("a/web");
  const auto* api = c.FindWorkload("a/api");
  const auto* db = c.FindWorkload("b/db");
  engine::ConnectivityReport report;
  report.entries.push_back(Entry(End(web), End(api), Set({{Protocol::kTCP, {{80, 80}}}})));
  report.entries.push_back(Entry(End(api), End(db), Set({})));
  report.entries.push_back(
      Entry(Range("0.0.0.0", "255.255.255.255"), End(web), Set({{Protocol::kTCP, {{443, 443}}}})));
  std::string text = ConnectivityText(report, Style(false));
  std::string tcp80 = report.entries[0].allowed.ToString();
  std::string tcp443 = report.entries[2].allowed.ToString();
  EXPECT_EQ(text, "a/web      =>  a/api  :  " + tcp80 + "\n" + "0.0.0.0/0  =>  a/web  :  " +
                      tcp443 + "\n" + "\n(1 pair has no allowed connection and is not shown)\n");

  engine::ConnectivityReport none;
  none.entries.push_back(Entry(End(api), End(db), Set({})));
  none.entries.push_back(Entry(End(db), End(api), Set({})));
  EXPECT_EQ(ConnectivityText(none, Style(false)),
            "No connections are allowed.\n\n(2 pairs have no allowed connection and are not "
            "shown)\n");
}

}  // namespace
}  // namespace bulkhead::cli
