// Lab naming, the state file's round trip, the lock, name resolution, and the Inventories the
// lab writes (read back by the real policy loader).
#include "lab/state.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>

#include "lab/lab.h"
#include "policy/loader.h"

namespace bulkhead::lab {
namespace {

namespace fs = std::filesystem;

TEST(LabNames, Scheme) {
  LabNames n{"demo", "/run/bulkhead/lab"};
  EXPECT_EQ(n.StateDir(), "/run/bulkhead/lab/demo");
  EXPECT_EQ(n.AgentSocket(), "/run/bulkhead/lab/demo/agent.sock");
  EXPECT_EQ(n.HostNetns(), "bhlab-demo_host");
  EXPECT_EQ(n.WorkloadNetns("x/a"), "bhlab-demo_w_x_a");
  EXPECT_EQ(n.ContainerId("x/a"), "bhlab_demo_x_a");
  EXPECT_EQ(n.DefaultPinRoot(), "/sys/fs/bpf/bulkhead/lab-demo");
  // Every netns of the lab shares the prefix, and no other lab's netns has it (lab names have
  // no '_').
  EXPECT_EQ(n.HostNetns().rfind(n.NetnsPrefix(), 0), 0u);
  const LabNames other{"demo-2", ""};
  EXPECT_NE(other.HostNetns().rfind(n.NetnsPrefix(), 0), 0u);
  // Interface names are at most 15 characters, and labs get different bridges.
  EXPECT_LE(n.Bridge().size(), 15u);
  const LabNames longest{std::string(kMaxLabNameLength, 'z'), kDefaultRunDir};
  EXPECT_LE(longest.Bridge().size(), 15u);
  EXPECT_NE(n.Bridge(), other.Bridge());
  // A long workload name still makes a usable file name, distinct per workload.
  std::string a = n.WorkloadNetns("x/" + std::string(250, 'a'));
  std::string b = n.WorkloadNetns("x/" + std::string(249, 'a') + "b");
  EXPECT_LE(a.size(), 200u);
  EXPECT_NE(a, b);
  // The agent's socket path fits sockaddr_un even for the longest lab name.
  EXPECT_LT(longest.AgentSocket().size(), 108u);
}

TEST(LabState, RoundTrip) {
  LabState s;
  s.name = "demo";
  s.phase = "up";
  s.lab_file = "/tmp/lab.yaml";
  s.policies = "/tmp/p";
  s.pin_root = "/sys/fs/bpf/bulkhead/lab-demo";
  s.bpffs_mounted = true;
  s.cni_path = {"/usr/lib/cni"};
  s.core_netns = "bhlab-demo_core";
  s.core_created = true;
  LabNames names{"demo", "/run/bulkhead/lab"};
  for (const char* name : {"a", "b"}) {
    LabNames::HostPaths p = names.ForHost(name, true, s.pin_root);
    HostState h;
    h.name = name;
    h.netns = p.netns;
    h.netns_created = true;
    h.bridge = "bhbr00000000";
    h.pin_root = p.pin_root;
    h.agent_socket = p.agent_socket;
    h.agent_state_dir = p.agent_state_dir;
    h.agent_log = p.agent_log;
    h.inventory = p.inventory;
    h.conflist = p.conflist;
    h.ipam_dir = p.ipam_dir;
    h.subnets = {"10.0.0.0/25", "fd00::/65"};
    h.underlay = {"100.64.0.2/30"};
    h.core_interface = "uh0";
    h.core_addresses = {"100.64.0.1/30"};
    h.agent = {1234, 5678};
    s.hosts.push_back(h);
  }
  EXPECT_EQ(s.hosts[1].netns, "bhlab-demo_h_b");
  EXPECT_EQ(s.hosts[1].agent_socket, "/run/bulkhead/lab/demo/hosts/b/agent.sock");
  EXPECT_EQ(s.hosts[1].pin_root, "/sys/fs/bpf/bulkhead/lab-demo/b");
  // One host keeps the one-host paths.
  EXPECT_EQ(names.ForHost("host", false, s.pin_root).netns, names.HostNetns());
  EXPECT_EQ(names.ForHost("host", false, s.pin_root).agent_socket, names.AgentSocket());
  WorkloadState w;
  w.id = "x/a";
  w.host = "b";
  w.ports = {{80, policy::Protocol::kTCP, "http"},
             {81, policy::Protocol::kUDP, ""},
             {82, policy::Protocol::kSCTP, "sig"}};
  w.netns = "bhlab-demo_w_x_a";
  w.container_id = "bhlab_demo_x_a";
  w.cni_args = "IgnoreUnknown=1";
  w.netconf_args = {{"cni", {{"labels", nlohmann::json::array()}}}};
  w.netns_created = true;
  w.cni_added = true;
  w.cni_result = {{"cniVersion", "1.0.0"}};
  w.ips = {"10.0.0.2", "fd00::2"};
  w.host_interface = "veth1";
  w.server = {99, 100};
  s.workloads.push_back(w);
  auto back = StateFromJson(nlohmann::json::parse(StateToJson(s).dump()));
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(StateToJson(*back), StateToJson(s));
  EXPECT_EQ(back->workloads[0].ports[0], (LabPort{80, policy::Protocol::kTCP, "http"}));
  EXPECT_EQ(back->workloads[0].ports[1], (LabPort{81, policy::Protocol::kUDP, ""}));
  EXPECT_EQ(back->workloads[0].ports[2], (LabPort{82, policy::Protocol::kSCTP, "sig"}));
  EXPECT_EQ(back->hosts[1].agent.start_time, 5678u);
  EXPECT_EQ(back->workloads[0].host, "b");
  EXPECT_NE(back->FindWorkload("x/a"), nullptr);
  EXPECT_EQ(back->FindWorkload("x/b"), nullptr);
  EXPECT_NE(back->FindHost("b"), nullptr);
  EXPECT_EQ(back->FindHost("c"), nullptr);
  EXPECT_FALSE(StateFromJson(nlohmann::json{{"version", 3}, {"name", "x"}}).ok());
  EXPECT_FALSE(StateFromJson(nlohmann::json{{"version", 2}}).ok());  // no name
  EXPECT_FALSE(StateFromJson(nlohmann::json{{"version", 1}}).ok());  // no name
}

// A state written before labs had several hosts reads as a lab with one host.
TEST(LabState, VersionOneIsOneHost) {
  nlohmann::json v1 = {{"version", 1},
                       {"name", "old"},
                       {"host_netns", "bhlab-old_host"},
                       {"host_netns_created", true},
                       {"bridge", "bhbr12345678"},
                       {"agent", {{"pid", 7}, {"start_time", 8}}},
                       {"workloads", nlohmann::json::array({{{"id", "x/a"}}})}};
  auto s = StateFromJson(v1);
  ASSERT_TRUE(s.ok()) << s.status();
  ASSERT_EQ(s->hosts.size(), 1u);
  EXPECT_EQ(s->hosts[0].netns, "bhlab-old_host");
  EXPECT_EQ(s->hosts[0].bridge, "bhbr12345678");
  EXPECT_EQ(s->hosts[0].agent.pid, 7);
  EXPECT_EQ(s->workloads[0].host, s->hosts[0].name);
}

class LabDirTest : public testing::Test {
 protected:
  void SetUp() override {
    run_ = fs::temp_directory_path() / ("bh-lab-state-" + std::to_string(::getpid()));
    fs::create_directories(run_);
  }
  void TearDown() override { fs::remove_all(run_); }
  fs::path run_;
};

TEST_F(LabDirTest, SaveLoadListAndResolve) {
  LabNames n{"one", run_.string()};
  EXPECT_TRUE(absl::IsNotFound(LoadState(n).status()));
  EXPECT_TRUE(absl::IsNotFound(ResolveLabName("", run_.string()).status()));
  fs::create_directories(n.StateDir());
  LabState s;
  s.name = "one";
  s.phase = "building";
  ASSERT_TRUE(SaveState(n, s).ok());
  auto loaded = LoadState(n);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ(loaded->phase, "building");
  EXPECT_FALSE(fs::exists(n.StatePath() + ".tmp"));
  EXPECT_EQ(ResolveLabName("", run_.string()).value(), "one");
  EXPECT_EQ(ResolveLabName("two", run_.string()).value(), "two");
  EXPECT_TRUE(absl::IsInvalidArgument(ResolveLabName("Bad_Name", run_.string()).status()));
  fs::create_directories(run_ / "two");
  EXPECT_EQ(ListLabs(run_.string()), (std::vector<std::string>{"one", "two"}));
  auto ambiguous = ResolveLabName("", run_.string());
  ASSERT_FALSE(ambiguous.ok());
  EXPECT_NE(ambiguous.status().message().find("several labs are up (one, two)"), std::string::npos);
  // A state file that is not JSON is an error, not an empty lab.
  ASSERT_TRUE(WriteFileAtomic(n.StatePath(), "{not json").ok());
  EXPECT_TRUE(absl::IsInvalidArgument(LoadState(n).status()));
}

TEST_F(LabDirTest, LockIsExclusive) {
  std::string path = (run_ / "lock").string();
  auto first = LabLock::Acquire(path, 0);
  ASSERT_TRUE(first.ok()) << first.status();
  auto second = LabLock::Acquire(path, 100);
  ASSERT_FALSE(second.ok());
  EXPECT_TRUE(absl::IsUnavailable(second.status()));
  { auto released = std::move(*first); }
  first = absl::UnavailableError("moved");
  EXPECT_TRUE(LabLock::Acquire(path, 0).ok());
}

TEST(LabInventories, ReadBackByThePolicyLoader) {
  auto parsed = ParseLab(R"(apiVersion: bulkhead.io/v1alpha1
kind: Lab
metadata: {name: inv}
spec:
  mode: audit
  namespaces:
  - {name: x, labels: {team: "x-y", "example.com/tier": "1"}}
  - {name: "y", mode: enforce}
  workloads:
  - namespace: x
    name: a
    labels: {pod: a, "on": "true"}
    serviceAccount: sa
    ports: [{name: http, port: 80}, {port: 81}, {name: sig, port: 80, protocol: SCTP}]
  - {namespace: "y", name: b}
)",
                         "inv.yaml");
  ASSERT_TRUE(parsed.ok()) << (parsed.diagnostics.empty() ? "" : parsed.diagnostics[0].ToString());
  auto agent = policy::LoadString(AgentInventoryYaml(parsed.spec), "inventory.yaml");
  ASSERT_TRUE(agent.ok()) << AgentInventoryYaml(parsed.spec);
  EXPECT_TRUE(agent.cluster.workloads.empty());
  const policy::Namespace* x = agent.cluster.FindNamespace("x");
  ASSERT_NE(x, nullptr);
  EXPECT_EQ(x->labels.at("team"), "x-y");
  EXPECT_EQ(x->labels.at("example.com/tier"), "1");
  EXPECT_EQ(x->mode, policy::Mode::kAudit);
  EXPECT_EQ(agent.cluster.FindNamespace("y")->mode, policy::Mode::kEnforce);

  LabState st;
  WorkloadState wa;
  wa.id = "x/a";
  wa.ips = {"10.210.0.2", "fd00:b4:1ab::2"};
  st.workloads.push_back(wa);
  std::string yaml = ClusterInventoryYaml(parsed.spec, st);
  auto cluster = policy::LoadString(yaml, "cluster.yaml");
  ASSERT_TRUE(cluster.ok()) << yaml;
  ASSERT_EQ(cluster.cluster.workloads.size(), 2u);
  const policy::Workload* a = nullptr;
  for (const auto& w : cluster.cluster.workloads) {
    if (w.Id() == "x/a") a = &w;
  }
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(a->labels.at("on"), "true");
  EXPECT_EQ(a->service_account, "sa");
  ASSERT_EQ(a->ips.size(), 2u);
  EXPECT_EQ(a->ips[1].ToString(), "fd00:b4:1ab::2");
  // Only named ports: they are what simulate resolves a policy's named port with.
  ASSERT_EQ(a->named_ports.size(), 2u) << yaml;
  EXPECT_EQ(a->named_ports[0].name, "http");
  EXPECT_EQ(a->named_ports[0].port, 80);
  EXPECT_EQ(a->named_ports[0].protocol, policy::Protocol::kTCP);
  EXPECT_EQ(a->named_ports[1].name, "sig");
  EXPECT_EQ(a->named_ports[1].protocol, policy::Protocol::kSCTP);
}

// Several hosts: each standalone agent's inventory has the other hosts' workloads (with their
// node, addresses and named ports) and not its own; the server gets Namespace objects.
TEST(LabInventories, PeersAndNamespacesOfSeveralHosts) {
  auto parsed = ParseLab(R"(apiVersion: bulkhead.io/v1alpha1
kind: Lab
metadata: {name: mh}
spec:
  hosts: [a, b]
  namespaces: [{name: x, labels: {team: x}}, {name: audited, mode: audit}]
  workloads:
  - {namespace: x, name: p, host: a, ports: [{name: http, port: 80}]}
  - {namespace: x, name: q, host: b}
  - {namespace: x, name: r, host: b}
)",
                         "mh.yaml");
  ASSERT_TRUE(parsed.ok()) << (parsed.diagnostics.empty() ? "" : parsed.diagnostics[0].ToString());
  LabState st;
  for (const char* id : {"x/p", "x/q", "x/r"}) {
    WorkloadState w;
    w.id = id;
    w.host = parsed.spec.FindWorkload(id)->host;
    w.ips = {std::string("10.210.0.") + (id[2] == 'p' ? "2" : id[2] == 'q' ? "130" : "131")};
    st.workloads.push_back(w);
  }
  std::string yaml = PeerInventoryYaml(parsed.spec, st, "b");
  auto inv = policy::LoadString(yaml, "inventory.yaml");
  ASSERT_TRUE(inv.ok()) << yaml;
  ASSERT_EQ(inv.cluster.workloads.size(), 1u) << yaml;
  const policy::Workload& p = inv.cluster.workloads[0];
  EXPECT_EQ(p.Id(), "x/p");
  EXPECT_EQ(p.node, "a");
  EXPECT_EQ(p.ips[0].ToString(), "10.210.0.2");
  ASSERT_EQ(p.named_ports.size(), 1u);
  EXPECT_EQ(PeerInventoryYaml(parsed.spec, st, "a").find("x/p"), std::string::npos);

  // simulate's view names every workload's node.
  auto cluster = policy::LoadString(ClusterInventoryYaml(parsed.spec, st), "cluster.yaml");
  ASSERT_TRUE(cluster.ok());
  for (const auto& w : cluster.cluster.workloads) EXPECT_FALSE(w.node.empty()) << w.Id();

  auto ns = policy::LoadString(NamespaceObjectsYaml(parsed.spec), "namespaces.yaml");
  ASSERT_TRUE(ns.ok()) << NamespaceObjectsYaml(parsed.spec);
  const policy::Namespace* x = ns.cluster.FindNamespace("x");
  ASSERT_NE(x, nullptr);
  EXPECT_EQ(x->labels.at("team"), "x");
  EXPECT_FALSE(x->mode.has_value());
  const policy::Namespace* y = ns.cluster.FindNamespace("audited");
  ASSERT_NE(y, nullptr);
  EXPECT_EQ(y->mode, policy::Mode::kAudit);
}

TEST(LabUnderlay, PointToPointLinksPerHost) {
  UnderlayLink l0 = Underlay(0, true, true);
  EXPECT_EQ(l0.core_interface, "uh0");
  EXPECT_EQ(l0.core, (std::vector<std::string>{"100.64.0.1/30", "fd00:b4:ff::1/64"}));
  EXPECT_EQ(l0.host, (std::vector<std::string>{"100.64.0.2/30", "fd00:b4:ff::2/64"}));
  UnderlayLink l63 = Underlay(63, true, false);
  EXPECT_EQ(l63.core, (std::vector<std::string>{"100.64.0.253/30"}));
  EXPECT_EQ(l63.host, (std::vector<std::string>{"100.64.0.254/30"}));
  EXPECT_EQ(Underlay(17, false, true).host, (std::vector<std::string>{"fd00:b4:ff:11::2/64"}));

  // A host's CNI network: its share, its own store and agent socket.
  HostState h;
  h.bridge = "bhbr1";
  h.ipam_dir = "/run/x/hosts/a/ipam";
  h.agent_socket = "/run/x/hosts/a/agent.sock";
  h.subnets = {"10.210.0.0/25", "fd00::/65"};
  nlohmann::json c = HostConflist(LabNames{"mh", "/run/x"}, h);
  EXPECT_EQ(c["plugins"][0]["ipam"]["ranges"][1][0]["subnet"], "fd00::/65");
  EXPECT_EQ(c["plugins"][0]["ipam"]["routes"][1]["dst"], "::/0");
  EXPECT_EQ(c["plugins"][0]["ipam"]["dataDir"], h.ipam_dir);
  EXPECT_EQ(c["plugins"][1]["agentSocket"], h.agent_socket);
}

TEST(LabCniPath, DefaultsPutOurOwnDirectoryFirst) {
  EXPECT_EQ(DefaultCniPath("/opt/bh/bin/bulkhead"),
            (std::vector<std::string>{"/opt/bh/bin", "/usr/lib/cni", "/opt/cni/bin"}));
  EXPECT_EQ(DefaultCniPath("/usr/lib/cni/bulkhead"),
            (std::vector<std::string>{"/usr/lib/cni", "/opt/cni/bin"}));
}

}  // namespace
}  // namespace bulkhead::lab
