// The Lab file decoder: the examples parse to what they say, and each kind of mistake is
// reported with the file, line, object and field that hold it.
#include "lab/lab_file.h"

#include <gtest/gtest.h>

#include <string>

namespace bulkhead::lab {
namespace {

std::string AllDiagnostics(const LabParseResult& r) {
  std::string out;
  for (const auto& d : r.diagnostics) out += d.ToString() + "\n";
  return out;
}

TEST(LabFile, SmallExample) {
  auto r = ParseLabFile(std::string(BULKHEAD_SOURCE_DIR) + "/examples/lab/small.yaml");
  ASSERT_TRUE(r.ok()) << AllDiagnostics(r);
  const LabSpec& s = r.spec;
  EXPECT_EQ(s.name, "small");
  ASSERT_EQ(s.namespaces.size(), 2u);
  EXPECT_EQ(s.namespaces[0].name, "shop");
  EXPECT_EQ(s.namespaces[0].labels.at("team"), "shop");
  ASSERT_EQ(s.workloads.size(), 3u);
  const LabWorkload* db = s.FindWorkload("shop/db");
  ASSERT_NE(db, nullptr);
  EXPECT_EQ(db->service_account, "db");
  EXPECT_EQ(db->labels.at("app"), "db");
  // The YAML alias gives every workload the same four ports.
  ASSERT_EQ(db->ports.size(), 4u);
  EXPECT_EQ(db->ports[1], (LabPort{80, policy::Protocol::kUDP, ""}));
  EXPECT_EQ(s.FindWorkload("shop/web")->service_account, "default");
  // Dual stack by default.
  ASSERT_TRUE(s.ipv4_subnet.has_value());
  ASSERT_TRUE(s.ipv6_subnet.has_value());
  EXPECT_EQ(s.ipv4_subnet->ToString(), kDefaultIpv4Subnet);
  EXPECT_EQ(s.ipv6_subnet->ToString(), kDefaultIpv6Subnet);
  EXPECT_FALSE(s.mode.has_value());
}

TEST(LabFile, KubernetesGridExample) {
  auto r = ParseLabFile(std::string(BULKHEAD_SOURCE_DIR) + "/examples/lab/k8s-grid.yaml");
  ASSERT_TRUE(r.ok()) << AllDiagnostics(r);
  ASSERT_EQ(r.spec.namespaces.size(), 3u);
  ASSERT_EQ(r.spec.workloads.size(), 9u);
  for (const char* ns : {"x", "y", "z"}) {
    for (const char* pod : {"a", "b", "c"}) {
      const LabWorkload* w = r.spec.FindWorkload(std::string(ns) + "/" + pod);
      ASSERT_NE(w, nullptr) << ns << "/" << pod;
      EXPECT_EQ(w->labels.at("pod"), pod);
      EXPECT_EQ(w->ports.size(), 4u);
    }
  }
}

// The e2e grid's lab: every workload serves TCP, UDP and SCTP, named as in its inventory.
TEST(LabFile, NamedPortsAndSctp) {
  auto r = ParseLabFile(std::string(BULKHEAD_SOURCE_DIR) + "/tests/netns/e2e/lab.yaml");
  ASSERT_TRUE(r.ok()) << AllDiagnostics(r);
  ASSERT_EQ(r.spec.workloads.size(), 9u);
  const LabWorkload* w = r.spec.FindWorkload("y/b");
  ASSERT_NE(w, nullptr);
  ASSERT_EQ(w->ports.size(), 8u);
  EXPECT_EQ(w->ports[0], (LabPort{80, policy::Protocol::kTCP, "serve-80-tcp"}));
  EXPECT_EQ(w->ports[5], (LabPort{81, policy::Protocol::kSCTP, "serve-81-sctp"}));
  EXPECT_EQ(w->ports[6], (LabPort{82, policy::Protocol::kTCP, ""}));
  // One name per workload, but the same name in another workload is fine; the same port
  // under two protocols is two sockets.
  auto two = ParseLab(R"(apiVersion: bulkhead.io/v1alpha1
kind: Lab
metadata: {name: t}
spec:
  namespaces: [{name: x}]
  workloads:
  - {namespace: x, name: a, ports: [{name: dns, port: 53, protocol: UDP}, {name: dns-tcp, port: 53}]}
  - {namespace: x, name: b, ports: [{name: dns, port: 5353, protocol: UDP}]}
)",
                      "two.yaml");
  ASSERT_TRUE(two.ok()) << AllDiagnostics(two);
  EXPECT_EQ(two.spec.workloads[1].ports[0].name, "dns");
}

TEST(LabFile, FamiliesSubnetsAndModes) {
  auto r = ParseLab(R"(apiVersion: bulkhead.io/v1alpha1
kind: Lab
metadata: {name: v6only}
spec:
  ipFamilies: [IPv6]
  ipv6Subnet: fd99::/120
  mode: audit
  namespaces:
  - {name: a, mode: enforce}
  - {name: b}
  workloads:
  - {namespace: a, name: w}
)",
                    "v6.yaml");
  ASSERT_TRUE(r.ok()) << AllDiagnostics(r);
  EXPECT_FALSE(r.spec.ipv4_subnet.has_value());
  ASSERT_TRUE(r.spec.ipv6_subnet.has_value());
  EXPECT_EQ(r.spec.ipv6_subnet->ToString(), "fd99::/120");
  EXPECT_EQ(r.spec.NamespaceMode(r.spec.namespaces[0]), policy::Mode::kEnforce);
  EXPECT_EQ(r.spec.NamespaceMode(r.spec.namespaces[1]), policy::Mode::kAudit);
  EXPECT_TRUE(r.spec.workloads[0].ports.empty());
}

TEST(LabFile, Hosts) {
  // No hosts: one host, the whole subnets.
  auto one = ParseLabFile(std::string(BULKHEAD_SOURCE_DIR) + "/examples/lab/small.yaml");
  ASSERT_TRUE(one.ok()) << AllDiagnostics(one);
  ASSERT_EQ(one.spec.hosts.size(), 1u);
  EXPECT_FALSE(one.spec.MultiHost());
  EXPECT_EQ(one.spec.hosts[0].name, kDefaultHostName);
  EXPECT_EQ(one.spec.hosts[0].ipv4_subnet, one.spec.ipv4_subnet);
  for (const auto& w : one.spec.workloads) EXPECT_EQ(w.host, kDefaultHostName);

  // A count names host-1..host-N; workloads without a host go round-robin in file order,
  // skipping none; each host gets an equal power-of-two share of each subnet.
  auto three = ParseLab(R"(apiVersion: bulkhead.io/v1alpha1
kind: Lab
metadata: {name: t}
spec:
  hosts: 3
  namespaces: [{name: x}]
  workloads:
  - {namespace: x, name: a}
  - {namespace: x, name: b, host: host-3}
  - {namespace: x, name: c}
  - {namespace: x, name: d}
)",
                        "three.yaml");
  ASSERT_TRUE(three.ok()) << AllDiagnostics(three);
  const LabSpec& s = three.spec;
  ASSERT_EQ(s.hosts.size(), 3u);
  EXPECT_TRUE(s.MultiHost());
  EXPECT_EQ(s.hosts[2].name, "host-3");
  EXPECT_EQ(s.FindWorkload("x/a")->host, "host-1");
  EXPECT_EQ(s.FindWorkload("x/b")->host, "host-3");
  EXPECT_EQ(s.FindWorkload("x/c")->host, "host-2");
  EXPECT_EQ(s.FindWorkload("x/d")->host, "host-3");
  EXPECT_EQ(s.hosts[0].ipv4_subnet->ToString(), "10.210.0.0/26");
  EXPECT_EQ(s.hosts[1].ipv4_subnet->ToString(), "10.210.0.64/26");
  EXPECT_EQ(s.hosts[2].ipv4_subnet->ToString(), "10.210.0.128/26");
  EXPECT_EQ(s.hosts[2].ipv6_subnet->ToString(), "fd00:b4:1ab:0:8000::/66");

  auto example = ParseLabFile(std::string(BULKHEAD_SOURCE_DIR) + "/examples/lab/multihost.yaml");
  ASSERT_TRUE(example.ok()) << AllDiagnostics(example);
  EXPECT_EQ(example.spec.hosts.size(), 3u);
}

TEST(LabFile, SplitSubnet) {
  EXPECT_EQ(HostSplitBits(1), 0);
  EXPECT_EQ(HostSplitBits(2), 1);
  EXPECT_EQ(HostSplitBits(3), 2);
  EXPECT_EQ(HostSplitBits(64), 6);
  auto v4 = *common::Cidr::Parse("10.1.0.0/16");
  EXPECT_EQ(SplitSubnet(v4, 2, 3).ToString(), "10.1.192.0/18");
  EXPECT_EQ(SplitSubnet(v4, 0, 0), v4);
  auto v6 = *common::Cidr::Parse("fd00:1::/64");
  EXPECT_EQ(SplitSubnet(v6, 6, 63).ToString(), "fd00:1:0:0:fc00::/70");
}

constexpr const char* kHead = R"(apiVersion: bulkhead.io/v1alpha1
kind: Lab
metadata: {name: t}
)";

struct BadCase {
  const char* name;
  std::string yaml;
  std::string want;  // a substring of the diagnostics
};

class LabFileErrors : public testing::TestWithParam<BadCase> {};

TEST_P(LabFileErrors, NameTheField) {
  const BadCase& c = GetParam();
  auto r = ParseLab(c.yaml, "lab.yaml");
  EXPECT_FALSE(r.ok());
  EXPECT_NE(AllDiagnostics(r).find(c.want), std::string::npos) << "want: " << c.want << "\ngot:\n"
                                                               << AllDiagnostics(r);
}

const std::string kNs = "  namespaces: [{name: x}]\n";

INSTANTIATE_TEST_SUITE_P(
    Cases, LabFileErrors,
    testing::Values(
        BadCase{"WrongKind",
                "apiVersion: bulkhead.io/v1alpha1\nkind: Inventory\nmetadata: {name: t}\n",
                "lab.yaml:2:7: error: Lab t: kind: kind \"Inventory\" is not a lab file"},
        BadCase{
            "WrongApiVersion", "apiVersion: v1\nkind: Lab\nmetadata: {name: t}\nspec: {}\n",
            "lab.yaml:1:13: error: Lab t: apiVersion: apiVersion \"v1\" of Lab is not supported"},
        BadCase{"NoName", "apiVersion: bulkhead.io/v1alpha1\nkind: Lab\nmetadata: {}\n",
                "metadata.name: is required"},
        BadCase{"BadName",
                "apiVersion: bulkhead.io/v1alpha1\nkind: Lab\nmetadata: {name: My_Lab}\n",
                "lab.yaml:3:18: error: Lab: metadata.name: invalid lab name \"My_Lab\""},
        BadCase{"LongName",
                "apiVersion: bulkhead.io/v1alpha1\nkind: Lab\nmetadata: {name: "
                "abcdefghijabcdefghijabcdefghijabc}\n",
                "must be no more than 32 characters"},
        BadCase{"NoSpec", std::string(kHead), "lab.yaml:1:1: error: Lab t: spec: is required"},
        BadCase{"UnknownField", std::string(kHead) + "spec:\n" + kNs + "  workload: []\n",
                "lab.yaml:6:3: error: Lab t: spec.workload: unknown field \"workload\" (did you "
                "mean \"workloads\"?)"},
        BadCase{"NoWorkloads", std::string(kHead) + "spec:\n" + kNs,
                "Lab t: spec.workloads: is required"},
        BadCase{"EmptyWorkloads", std::string(kHead) + "spec:\n" + kNs + "  workloads: []\n",
                "spec.workloads: a lab needs at least one workload"},
        BadCase{
            "UndeclaredNamespace",
            std::string(kHead) + "spec:\n" + kNs + "  workloads:\n  - {namespace: q, name: a}\n",
            "lab.yaml:7:17: error: Lab t: spec.workloads[0].namespace: namespace \"q\" is not "
            "declared in spec.namespaces"},
        BadCase{"DuplicateWorkload",
                std::string(kHead) + "spec:\n" + kNs +
                    "  workloads:\n  - {namespace: x, name: a}\n  - {namespace: x, name: a}\n",
                "lab.yaml:8:26: error: Lab t: spec.workloads[1].name: workload \"x/a\" is already "
                "declared at line 7"},
        BadCase{"DuplicateNamespace",
                std::string(kHead) +
                    "spec:\n  namespaces: [{name: x}, {name: x}]\n  workloads: [{namespace: x, "
                    "name: a}]\n",
                "spec.namespaces[1].name: namespace \"x\" is already declared at line 5"},
        BadCase{"BadNamespaceName",
                std::string(kHead) + "spec:\n  namespaces: [{name: X}]\n  workloads: []\n",
                "spec.namespaces[0].name: invalid namespace name \"X\""},
        BadCase{"BadLabel",
                std::string(kHead) + "spec:\n" + kNs +
                    "  workloads:\n  - {namespace: x, name: a, labels: {\"-bad\": v}}\n",
                "lab.yaml:7:38: error: Lab t: spec.workloads[0].labels[-bad]: invalid label key "
                "\"-bad\""},
        BadCase{"PortOutOfRange",
                std::string(kHead) + "spec:\n" + kNs +
                    "  workloads:\n  - namespace: x\n    name: a\n    ports: [{port: 70000}]\n",
                "lab.yaml:9:20: error: Lab t: spec.workloads[0].ports[0].port: port 70000 is out "
                "of range"},
        BadCase{"Icmp",
                std::string(kHead) + "spec:\n" + kNs +
                    "  workloads:\n  - namespace: x\n    name: a\n    ports: [{port: 80, "
                    "protocol: ICMP}]\n",
                "lab.yaml:9:34: error: Lab t: spec.workloads[0].ports[0].protocol: unsupported "
                "protocol \"ICMP\""},
        BadCase{"PortNameWithCapitals",
                std::string(kHead) + "spec:\n" + kNs +
                    "  workloads:\n  - namespace: x\n    name: a\n    ports: [{name: Http, "
                    "port: 80}]\n",
                "lab.yaml:9:20: error: Lab t: spec.workloads[0].ports[0].name: invalid port name "
                "\"Http\": must contain only lower case letters"},
        BadCase{"PortNameTooLong",
                std::string(kHead) + "spec:\n" + kNs +
                    "  workloads:\n  - namespace: x\n    name: a\n    ports: [{name: "
                    "abcdefghijklmnop, port: 80}]\n",
                "spec.workloads[0].ports[0].name: invalid port name \"abcdefghijklmnop\": must "
                "be no more than 15 characters"},
        BadCase{"PortNameOnlyDigits",
                std::string(kHead) + "spec:\n" + kNs +
                    "  workloads:\n  - namespace: x\n    name: a\n    ports: [{name: \"8080\", "
                    "port: 8080}]\n",
                "spec.workloads[0].ports[0].name: invalid port name \"8080\": must contain at "
                "least one letter"},
        BadCase{"PortNameDoubleHyphen",
                std::string(kHead) + "spec:\n" + kNs +
                    "  workloads:\n  - namespace: x\n    name: a\n    ports: [{name: a--b, "
                    "port: 80}]\n",
                "spec.workloads[0].ports[0].name: invalid port name \"a--b\": must not contain "
                "consecutive '-'"},
        BadCase{"PortNameNotAString",
                std::string(kHead) + "spec:\n" + kNs +
                    "  workloads:\n  - namespace: x\n    name: a\n    ports: [{name: [h], "
                    "port: 80}]\n",
                "lab.yaml:9:20: error: Lab t: spec.workloads[0].ports[0].name:"},
        BadCase{"DuplicatePortName",
                std::string(kHead) + "spec:\n" + kNs +
                    "  workloads:\n  - namespace: x\n    name: a\n    ports:\n    - {name: "
                    "web, port: 80}\n    - {name: web, port: 81, protocol: UDP}\n",
                "lab.yaml:11:14: error: Lab t: spec.workloads[0].ports[1].name: duplicate port "
                "name \"web\" (already used at line 10)"},
        BadCase{"DuplicatePort",
                std::string(kHead) + "spec:\n" + kNs +
                    "  workloads:\n  - namespace: x\n    name: a\n    ports: [{port: 80}, {port: "
                    "80, protocol: TCP}]\n",
                "spec.workloads[0].ports[1]: duplicate port 80/TCP"},
        BadCase{"BadSubnet",
                std::string(kHead) + "spec:\n  ipv4Subnet: 10.1.0.0\n" + kNs +
                    "  workloads: [{namespace: x, name: a}]\n",
                "lab.yaml:5:15: error: Lab t: spec.ipv4Subnet: invalid CIDR \"10.1.0.0\""},
        BadCase{"SubnetOfOtherFamily",
                std::string(kHead) + "spec:\n  ipv4Subnet: fd00::/64\n" + kNs +
                    "  workloads: [{namespace: x, name: a}]\n",
                "spec.ipv4Subnet: fd00::/64 is not an IPv4 range"},
        BadCase{"SubnetOfExcludedFamily",
                std::string(kHead) + "spec:\n  ipFamilies: [IPv6]\n  ipv4Subnet: 10.0.0.0/24\n" +
                    kNs + "  workloads: [{namespace: x, name: a}]\n",
                "spec.ipv4Subnet: is set, but spec.ipFamilies leaves IPv4 out"},
        BadCase{"LoopbackSubnet",
                std::string(kHead) + "spec:\n  ipv4Subnet: 127.0.0.0/24\n" + kNs +
                    "  workloads: [{namespace: x, name: a}]\n",
                "spec.ipv4Subnet: 127.0.0.0/24 cannot hold workloads"},
        BadCase{"SubnetTooSmall",
                std::string(kHead) + "spec:\n  ipv4Subnet: 10.0.0.0/30\n" + kNs +
                    "  workloads: [{namespace: x, name: a}, {namespace: x, name: b}]\n",
                "spec.ipv4Subnet: 10.0.0.0/30 has room for 1 workloads, the lab has 2"},
        BadCase{"UnknownFamily",
                std::string(kHead) + "spec:\n  ipFamilies: [IPv5]\n" + kNs +
                    "  workloads: [{namespace: x, name: a}]\n",
                "spec.ipFamilies[0]: unknown IP family \"IPv5\""},
        BadCase{"BadMode",
                std::string(kHead) + "spec:\n  mode: strict\n" + kNs +
                    "  workloads: [{namespace: x, name: a}]\n",
                "spec.mode: unknown mode \"strict\""},
        BadCase{"BadServiceAccount",
                std::string(kHead) + "spec:\n" + kNs +
                    "  workloads: [{namespace: x, name: a, serviceAccount: \"No Good\"}]\n",
                "spec.workloads[0].serviceAccount: invalid service account name \"No Good\""},
        BadCase{"TwoDocuments",
                std::string(kHead) + "spec:\n" + kNs +
                    "  workloads: [{namespace: x, name: a}]\n---\n" + kHead,
                "document 2: a lab file holds exactly one Lab object"},
        BadCase{"Syntax", "kind: Lab\nmetadata: {name: [\n", "lab.yaml:"},
        BadCase{"NotAMap", "- 1\n- 2\n", "must be a Lab object"},
        BadCase{"Empty", "", "lab.yaml: error: holds no Lab object"},
        BadCase{"UnknownHost",
                std::string(kHead) + "spec:\n  hosts: [a, b]\n" + kNs +
                    "  workloads:\n  - {namespace: x, name: w, host: c}\n",
                "lab.yaml:8:35: error: Lab t: spec.workloads[0].host: host \"c\" is not in "
                "spec.hosts (\"a\", \"b\")"},
        BadCase{"DuplicateHost",
                std::string(kHead) + "spec:\n  hosts: [a, a]\n" + kNs +
                    "  workloads: [{namespace: x, name: w}]\n",
                "lab.yaml:5:14: error: Lab t: spec.hosts[1]: host \"a\" is already declared at "
                "line 5"},
        BadCase{"BadHostName",
                std::string(kHead) + "spec:\n  hosts: [A_1]\n" + kNs +
                    "  workloads: [{namespace: x, name: w}]\n",
                "lab.yaml:5:11: error: Lab t: spec.hosts[0]: invalid host name \"A_1\""},
        BadCase{"LongHostName",
                std::string(kHead) + "spec:\n  hosts: [abcdefghijabcdefghijk]\n" + kNs +
                    "  workloads: [{namespace: x, name: w}]\n",
                "spec.hosts[0]: invalid host name \"abcdefghijabcdefghijk\": must be no more than "
                "20 characters"},
        BadCase{"NoHosts",
                std::string(kHead) + "spec:\n  hosts: []\n" + kNs +
                    "  workloads: [{namespace: x, name: w}]\n",
                "lab.yaml:5:10: error: Lab t: spec.hosts: needs at least one host"},
        BadCase{"HostCountZero",
                std::string(kHead) + "spec:\n  hosts: 0\n" + kNs +
                    "  workloads: [{namespace: x, name: w}]\n",
                "lab.yaml:5:10: error: Lab t: spec.hosts: a lab has 1 to 64 hosts, not 0"},
        BadCase{"HostCountTooMany",
                std::string(kHead) + "spec:\n  hosts: 65\n" + kNs +
                    "  workloads: [{namespace: x, name: w}]\n",
                "spec.hosts: a lab has 1 to 64 hosts, not 65"},
        BadCase{"HostsAMap",
                std::string(kHead) + "spec:\n  hosts: {a: 1}\n" + kNs +
                    "  workloads: [{namespace: x, name: w}]\n",
                "spec.hosts: must be a list of host names or a number of hosts, not a map"},
        BadCase{"HostShareTooSmall",
                std::string(kHead) +
                    "spec:\n  ipFamilies: [IPv4]\n  ipv4Subnet: 10.9.0.0/29\n"
                    "  hosts: [a, b]\n" +
                    kNs +
                    "  workloads:\n  - {namespace: x, name: w, host: a}\n"
                    "  - {namespace: x, name: v, host: a}\n",
                "lab.yaml:6:15: error: Lab t: spec.ipv4Subnet: 10.9.0.0/29 split over 2 hosts "
                "gives host \"a\" 10.9.0.0/30, room for 1 workloads; it has 2"},
        BadCase{"SubnetTooSmallToSplit",
                std::string(kHead) +
                    "spec:\n  ipFamilies: [IPv4]\n  ipv4Subnet: 10.9.0.0/30\n"
                    "  hosts: 3\n" +
                    kNs + "  workloads: [{namespace: x, name: w}]\n",
                "spec.ipv4Subnet: 10.9.0.0/30 is too small to split over 3 hosts (each host "
                "needs a /30 at least"},
        BadCase{"SubnetOverlapsUnderlay",
                std::string(kHead) +
                    "spec:\n  ipFamilies: [IPv4]\n  ipv4Subnet: 100.64.0.0/16\n"
                    "  hosts: 2\n" +
                    kNs + "  workloads: [{namespace: x, name: w}]\n",
                "spec.ipv4Subnet: 100.64.0.0/16 overlaps the underlay of a lab with several "
                "hosts (100.64.0.0/24)"}),
    [](const testing::TestParamInfo<BadCase>& info) { return info.param.name; });

TEST(LabFile, MissingFile) {
  auto r = ParseLabFile("/nonexistent/lab.yaml");
  EXPECT_FALSE(r.ok());
  EXPECT_NE(AllDiagnostics(r).find("/nonexistent/lab.yaml: error: the lab file does not exist"),
            std::string::npos)
      << AllDiagnostics(r);
}

TEST(LabFile, LabNames) {
  EXPECT_EQ(CheckLabName("demo-1"), "");
  EXPECT_NE(CheckLabName("Demo"), "");
  EXPECT_NE(CheckLabName("a_b"), "");
  EXPECT_NE(CheckLabName(""), "");
  EXPECT_NE(CheckLabName(std::string(33, 'a')), "");
}

}  // namespace
}  // namespace bulkhead::lab
