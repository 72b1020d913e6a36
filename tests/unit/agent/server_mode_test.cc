// The agent in server mode against a real in-process control plane (init, SQLite in a temp
// dir, TLS on loopback, the agentlink session) and FakeDatapath: snapshot, compile, ack; new
// revisions; an invalid set; peers from another node; the server away and back; an agent
// restarted while the server is down; endpoints of a namespace not synced yet held at deny.
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <set>
#include <thread>

#include "agent/agent.h"
#include "agent/server_link.h"
#include "agentlink/agentlink.h"
#include "datapath/fake_datapath.h"
#include "server/agent_registry.h"
#include "server/auth.h"
#include "server/policy_repo.h"
#include "server/server.h"
#include "store/store.h"

namespace bulkhead::agent {
namespace {

namespace fs = std::filesystem;

// Waits are bounded only so that a broken build fails instead of hanging.
constexpr auto kPatience = std::chrono::seconds(60);

constexpr const char* kInventory = R"(apiVersion: bulkhead.io/v1alpha1
kind: Inventory
metadata: {name: node-1}
spec:
  workloads:
  - {name: web, namespace: shop, labels: {app: web}, ips: [10.9.0.1], hostInterface: veth-web}
  - {name: api, namespace: shop, labels: {app: api}, ips: [10.9.0.2], hostInterface: veth-api}
)";

std::string Ns(const std::string& name) {
  return "apiVersion: v1\nkind: Namespace\nmetadata: {name: " + name + ", labels: {team: " + name +
         "}}\n";
}

// api admits `from_app` on `port` only.
std::string ApiPolicy(int port, const std::string& from_app = "web") {
  return "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: api-in, "
         "namespace: shop}\nspec:\n  podSelector: {matchLabels: {app: api}}\n  ingress:\n  - "
         "from: [{podSelector: {matchLabels: {app: " +
         from_app + "}}}]\n    ports: [{port: " + std::to_string(port) + "}]\n";
}

class ServerModeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("bulkhead-agent-server-" + std::to_string(getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    std::ofstream(dir_ / "inventory.yaml") << kInventory;
    auto init = server::InitServer({(dir_ / "server").string(), "", {}});
    ASSERT_TRUE(init.ok()) << init.status();
    StartServer(0);
  }
  void TearDown() override {
    link_.reset();
    agent_.reset();
    server_.reset();
    fs::remove_all(dir_);
  }

  void StartServer(int grpc_port) {
    server::ServerOptions o;
    o.data_dir = (dir_ / "server").string();
    o.listen = "127.0.0.1:0";
    o.grpc_listen = "127.0.0.1:" + std::to_string(grpc_port);
    o.agents.sweep_interval = absl::ZeroDuration();
    auto s = server::Server::Start(o);
    ASSERT_TRUE(s.ok()) << s.status();
    server_ = *std::move(s);
    port_ = server_->grpc_port();
  }

  std::string Target() const { return "127.0.0.1:" + std::to_string(port_); }

  agentlink::Credentials Join(const std::string& node) {
    server::TokenStore tokens(server_->store(), [] { return absl::Now(); });
    auto token = tokens.CreateJoinToken(absl::Hours(1), "test");
    EXPECT_TRUE(token.ok()) << token.status();
    agentlink::JoinOptions o;
    o.server = Target();
    o.token = token.ok() ? *token : "";
    o.node_name = node;
    o.state_dir = (dir_ / ("state-" + node)).string();
    auto c = agentlink::Join(o);
    EXPECT_TRUE(c.ok()) << c.status();
    return c.ok() ? *c : agentlink::Credentials{};
  }

  static int64_t Apply(store::IStore* store, const std::vector<std::string>& docs) {
    server::PolicyRepository repo(store);
    server::ApplyRequest req;
    for (size_t i = 0; i < docs.size(); ++i) {
      req.files.push_back({"f" + std::to_string(i) + ".yaml", docs[i]});
    }
    auto r = repo.Apply(req, server::Actor{"test", "admin", "local"});
    EXPECT_TRUE(r.ok()) << r.status();
    EXPECT_TRUE(r.ok() && r->valid && r->committed);
    if (r.ok() && !r->valid) {
      for (const auto& d : r->diagnostics) ADD_FAILURE() << d.ToString();
    }
    return r.ok() ? r->revision : 0;
  }
  int64_t Apply(const std::vector<std::string>& docs) { return Apply(server_->store(), docs); }

  AgentOptions Options() const {
    AgentOptions o;
    o.inventory_file = (dir_ / "inventory.yaml").string();
    o.state_dir = (dir_ / "state-node-1").string();
    o.node = "node-1";
    o.server_mode = true;
    return o;
  }

  std::unique_ptr<Agent> MakeAgent(datapath::FakeDatapath& dp) {
    return std::make_unique<Agent>(Options(), dp,
                                   [this](const std::string& name) -> absl::StatusOr<uint32_t> {
                                     auto it = interfaces_.find(name);
                                     if (it == interfaces_.end())
                                       return absl::NotFoundError("no interface " + name);
                                     return it->second;
                                   });
  }

  // The agent and its session, as `bulkhead agent --server` runs them (the loop is Pump).
  void StartAgent(const agentlink::Credentials& creds, datapath::FakeDatapath& dp) {
    agent_ = MakeAgent(dp);
    ASSERT_TRUE(agent_->Start().ok());
    agentlink::SyncOptions so;
    so.server = Target();
    so.credentials = creds;
    so.initial_backoff = absl::Milliseconds(20);
    so.max_backoff = absl::Milliseconds(200);
    link_ = std::make_unique<ServerLink>(so);
    link_->Start(*agent_);
  }

  // The agent loop's part for the session: waits for it, processes, until `pred` holds.
  template <typename Pred>
  bool Pump(Pred pred) {
    const auto end = std::chrono::steady_clock::now() + kPatience;
    while (std::chrono::steady_clock::now() < end) {
      link_->Process(*agent_);
      if (pred()) return true;
      pollfd p{link_->fd(), POLLIN, 0};
      (void)poll(&p, 1, 20);
    }
    return pred();
  }

  // Waits for `pred` without an agent (the session of another node).
  template <typename Pred>
  static bool Pump0(Pred pred) {
    const auto end = std::chrono::steady_clock::now() + kPatience;
    while (std::chrono::steady_clock::now() < end) {
      if (pred()) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return pred();
  }

  std::optional<server::AgentRecord> Record(const std::string& node) {
    auto list = server::ListAgents(server_->store());
    if (!list.ok()) return std::nullopt;
    for (const server::AgentRecord& r : *list) {
      if (r.node == node) return r;
    }
    return std::nullopt;
  }

  std::string Verdict(const std::string& from, const std::string& to, int port) {
    auto r = agent_->Explain(from, to, static_cast<uint16_t>(port), "tcp");
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? r->value("verdict", "") : "";
  }

  // What the fake kernel holds, to compare before and after; with `tables`, the table ids
  // and generations too (a restarted agent writes fresh tables for the same policy).
  static std::string KernelState(datapath::FakeDatapath& dp, bool tables = true) {
    std::string out;
    auto eps = dp.ListEndpoints();
    auto ids = dp.ListPolicyTables();
    EXPECT_TRUE(eps.ok() && ids.ok());
    if (!eps.ok() || !ids.ok()) return "";
    for (const auto& e : *eps) {
      out += std::to_string(e.ifindex) + ":" + std::to_string(e.identity);
      if (tables) {
        out += ":" + std::to_string(e.policy_table_id) + ":" + std::to_string(e.policy_generation);
      }
      out += ";";
    }
    if (tables) {
      for (uint32_t t : *ids) out += "t" + std::to_string(t) + ";";
    }
    out += "ipcache " + std::to_string(dp.ipcache_size()) + ", entries " +
           std::to_string(dp.policy_entries());
    return out;
  }

  fs::path dir_;
  std::unique_ptr<server::Server> server_;
  int port_ = 0;
  datapath::FakeDatapath dp_;
  std::map<std::string, uint32_t> interfaces_ = {{"veth-web", 11}, {"veth-api", 12}};
  std::unique_ptr<Agent> agent_;
  std::unique_ptr<ServerLink> link_;
};

TEST_F(ServerModeTest, SnapshotIsEnforcedAckedAndNewRevisionsFollow) {
  ASSERT_EQ(Apply({Ns("shop"), ApiPolicy(80)}), 1);
  const agentlink::Credentials creds = Join("node-1");
  StartAgent(creds, dp_);
  // Nothing persisted, nothing received: nothing applied (never an empty policy).
  EXPECT_TRUE(dp_.ListEndpoints()->empty());
  EXPECT_FALSE(agent_->ready());

  // The snapshot, then (once the agent reported its endpoints in shop) shop's objects.
  ASSERT_TRUE(Pump([&] {
    return agent_->enforced_server_revision() == 1 && agent_->held_namespaces().empty() &&
           agent_->StatusJson()["server"].value("pending_namespaces", nlohmann::json()).empty();
  }));
  EXPECT_EQ(Verdict("shop/web", "shop/api", 80), "allow");
  EXPECT_EQ(Verdict("shop/web", "shop/api", 81), "deny");
  EXPECT_EQ(dp_.ListEndpoints()->size(), 2u);
  ASSERT_TRUE(Pump([&] {
    auto r = Record("node-1");
    return r && r->enforced_revision == 1 && r->health == "ok" && r->endpoints == 2;
  }));
  // Resource use reaches the registry (bulkhead agents' CPU and RSS) once connected.
  ASSERT_TRUE(Pump([&] {
    auto r = Record("node-1");
    return r && r->rss_bytes > 0 && r->cpu_seconds > 0;
  }));

  // The cluster's identity numbers are in force (a later renumbering would be a full compile).
  ASSERT_TRUE(Pump([&] {
    auto pins = link_->identity_pins();
    std::set<uint32_t> numbers;
    for (const auto& [key, n] : pins) numbers.insert(n);
    for (const std::string& key : agent_->IdentityKeys()) {
      if (pins.count(key) == 0) return false;
    }
    for (const auto& e : agent_->EndpointsJson()) {
      if (numbers.count(e.value("identity", 0u)) == 0) return false;
    }
    return true;
  }));

  // A new revision through the repository reaches the datapath.
  ASSERT_EQ(Apply({Ns("shop"), ApiPolicy(81)}), 2);
  ASSERT_TRUE(Pump([&] { return agent_->enforced_server_revision() == 2; }));
  EXPECT_EQ(Verdict("shop/web", "shop/api", 80), "deny");
  EXPECT_EQ(Verdict("shop/web", "shop/api", 81), "allow");
  // Only a policy changed: the compile in force was updated in place, as for a file edit.
  EXPECT_NE(agent_->Metrics().find("bulkhead_agent_last_apply_incremental 1"), std::string::npos);
  ASSERT_TRUE(Pump([&] {
    auto r = Record("node-1");
    return r && r->enforced_revision == 2;
  }));
  nlohmann::json status = agent_->StatusJson();
  EXPECT_EQ(status["server"].value("enforced_revision", 0), 2);
  EXPECT_EQ(status["server"].value("connected", false), true);
}

TEST_F(ServerModeTest, AnInvalidSetIsAckedWithTheErrorAndTheLastGoodPolicyStays) {
  ASSERT_EQ(Apply({Ns("shop"), ApiPolicy(80)}), 1);
  StartAgent(Join("node-1"), dp_);
  ASSERT_TRUE(Pump([&] {
    return agent_->enforced_server_revision() == 1 && agent_->held_namespaces().empty();
  }));
  ASSERT_EQ(Verdict("shop/web", "shop/api", 80), "allow");
  const std::string before = KernelState(dp_);
  // Valid for the server, not with this node's inventory: the server's Inventory declares
  // shop/web too.
  ASSERT_EQ(Apply({Ns("shop"), ApiPolicy(81),
                   "apiVersion: bulkhead.io/v1alpha1\nkind: Inventory\nmetadata: {name: "
                   "central}\nspec:\n  workloads:\n  - {name: web, namespace: shop, labels: "
                   "{app: web}, ips: [10.9.0.1]}\n"}),
            2);
  ASSERT_TRUE(Pump([&] {
    auto r = Record("node-1");
    return r && r->health == "error";
  }));
  auto r = Record("node-1");
  EXPECT_EQ(r->enforced_revision, 1);
  EXPECT_NE(r->error.find("shop/web"), std::string::npos) << r->error;
  EXPECT_EQ(agent_->enforced_server_revision(), 1);
  EXPECT_EQ(KernelState(dp_), before);
  EXPECT_EQ(Verdict("shop/web", "shop/api", 80), "allow");
  EXPECT_EQ(Verdict("shop/web", "shop/api", 81), "deny");
}

TEST_F(ServerModeTest, OtherNodesEndpointsArePeersInTheIpcache) {
  ASSERT_EQ(Apply({Ns("shop"), ApiPolicy(80, "db")}), 1);
  // node-2 reports shop/db at 10.9.1.5.
  agentlink::SyncOptions other;
  other.server = Target();
  other.credentials = Join("node-2");
  agentlink::SyncClient node2(other, {});
  agentlink::Endpoint db;
  db.namespace_name = "shop";
  db.name = "db";
  db.labels = {{"app", "db"}};
  db.service_account = "default";
  db.ips = {"10.9.1.5"};
  ASSERT_TRUE(node2.SetEndpoints({db}).ok());
  node2.Start();

  StartAgent(Join("node-1"), dp_);
  ASSERT_TRUE(Pump([&] {
    return agent_->enforced_server_revision() == 1 && agent_->held_namespaces().empty() &&
           agent_->StatusJson()["server"].value("peers", 0) == 1;
  }));
  // The kernel knows 10.9.1.5 as shop/db: admitted on 80; an unknown address is not.
  EXPECT_EQ(Verdict("10.9.1.5", "shop/api", 80), "allow");
  EXPECT_EQ(Verdict("10.9.1.6", "shop/api", 80), "deny");
  EXPECT_EQ(Verdict("shop/web", "shop/api", 80), "deny");

  // The peer goes: its address is unknown again.
  ASSERT_TRUE(node2.SetEndpoints({}).ok());
  ASSERT_TRUE(Pump([&] { return agent_->StatusJson()["server"].value("peers", 1) == 0; }));
  EXPECT_EQ(Verdict("10.9.1.5", "shop/api", 80), "deny");
  node2.Stop();
}

TEST_F(ServerModeTest, ServerAwayKeepsThePolicyAndAfterItsRestartTheAgentConverges) {
  ASSERT_EQ(Apply({Ns("shop"), ApiPolicy(80)}), 1);
  const agentlink::Credentials creds = Join("node-1");
  StartAgent(creds, dp_);
  ASSERT_TRUE(Pump([&] {
    return agent_->enforced_server_revision() == 1 && agent_->held_namespaces().empty();
  }));
  const std::string before = KernelState(dp_);
  const int port = port_;

  server_.reset();
  ASSERT_TRUE(Pump([&] { return !agent_->StatusJson()["server"].value("connected", true); }));
  {
    auto store = store::OpenStore("sqlite:" + (dir_ / "server" / "server.db").string());
    ASSERT_TRUE(store.ok()) << store.status();
    ASSERT_EQ(Apply(store->get(), {Ns("shop"), ApiPolicy(82)}), 2);
  }
  // Several reconnect attempts fail meanwhile; the kernel is untouched.
  ASSERT_TRUE(Pump([&] { return agent_->StatusJson()["server"].value("failures", 0) >= 3; }));
  EXPECT_EQ(KernelState(dp_), before);
  EXPECT_EQ(Verdict("shop/web", "shop/api", 80), "allow");
  EXPECT_EQ(agent_->enforced_server_revision(), 1);

  StartServer(port);
  ASSERT_TRUE(Pump([&] { return agent_->enforced_server_revision() == 2; }));
  EXPECT_EQ(Verdict("shop/web", "shop/api", 80), "deny");
  EXPECT_EQ(Verdict("shop/web", "shop/api", 82), "allow");
}

TEST_F(ServerModeTest, AnAgentRestartedWhileTheServerIsDownEnforcesThePersistedPolicy) {
  ASSERT_EQ(Apply({Ns("shop"), ApiPolicy(80)}), 1);
  const agentlink::Credentials creds = Join("node-1");
  StartAgent(creds, dp_);
  ASSERT_TRUE(Pump([&] {
    return agent_->enforced_server_revision() == 1 && agent_->held_namespaces().empty();
  }));
  ASSERT_EQ(Apply({Ns("shop"), ApiPolicy(81)}), 2);
  ASSERT_TRUE(Pump([&] { return agent_->enforced_server_revision() == 2; }));
  const std::string before = KernelState(dp_, /*tables=*/false);
  server_.reset();
  link_.reset();
  agent_.reset();

  // Same kernel: the restarted agent applies the same policy (same identities, entries).
  agent_ = MakeAgent(dp_);
  ASSERT_TRUE(agent_->Start().ok());
  EXPECT_EQ(agent_->enforced_server_revision(), 2);
  EXPECT_TRUE(agent_->held_namespaces().empty());
  EXPECT_EQ(Verdict("shop/web", "shop/api", 81), "allow");
  EXPECT_EQ(Verdict("shop/web", "shop/api", 80), "deny");
  EXPECT_EQ(KernelState(dp_, /*tables=*/false), before);
  agent_.reset();

  // An empty kernel (a reboot): the persisted policy is what gets enforced.
  datapath::FakeDatapath fresh;
  agent_ = MakeAgent(fresh);
  ASSERT_TRUE(agent_->Start().ok());
  EXPECT_EQ(agent_->enforced_server_revision(), 2);
  EXPECT_EQ(fresh.ListEndpoints()->size(), 2u);
  EXPECT_EQ(Verdict("shop/web", "shop/api", 81), "allow");
  EXPECT_EQ(Verdict("shop/web", "shop/api", 80), "deny");
}

TEST_F(ServerModeTest, ACniEndpointInANewNamespaceIsHeldUntilItsObjectsArrive) {
  // bank's policy admits web on 80 only.
  ASSERT_EQ(Apply({Ns("shop"), Ns("bank"), ApiPolicy(80),
                   "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: "
                   "pay-in, namespace: bank}\nspec:\n  podSelector: {}\n  ingress:\n  - from: "
                   "[{namespaceSelector: {}}]\n    ports: [{port: 80}]\n"}),
            1);
  StartAgent(Join("node-1"), dp_);
  ASSERT_TRUE(Pump([&] {
    return agent_->enforced_server_revision() == 1 && agent_->held_namespaces().empty();
  }));
  // A CNI ADD in bank: enforced at once, held at deny (bank's objects are not here yet).
  interfaces_["veth-pay"] = 14;
  EndpointRegistration r;
  r.id = "c0ffee/eth0";
  r.namespace_name = "bank";
  r.name = "pay";
  r.labels = {{"app", "pay"}};
  r.netns = "/var/run/netns/pay";
  r.interface = "eth0";
  r.host_interface = "veth-pay";
  r.ips = {"10.9.0.9"};
  auto added = agent_->AddEndpoint(r);
  ASSERT_TRUE(added.ok()) << added.status();
  EXPECT_EQ(agent_->held_namespaces(), std::set<std::string>{"bank"});
  EXPECT_EQ(Verdict("shop/web", "bank/pay", 80), "deny");
  EXPECT_EQ(Verdict("bank/pay", "shop/web", 80), "deny");
  // Reported; the server sends bank's objects; the hold ends and bank's policy applies.
  ASSERT_TRUE(Pump([&] { return agent_->held_namespaces().empty(); }));
  EXPECT_EQ(Verdict("shop/web", "bank/pay", 80), "allow");
  EXPECT_EQ(Verdict("shop/web", "bank/pay", 81), "deny");
  EXPECT_EQ(Verdict("bank/pay", "shop/web", 80), "allow");
  ASSERT_TRUE(Pump([&] {
    auto rec = Record("node-1");
    return rec && rec->endpoints == 3;
  }));
  // CNI DEL: reported as gone.
  ASSERT_TRUE(agent_->RemoveEndpoint(r.id).ok());
  ASSERT_TRUE(Pump([&] {
    auto rec = Record("node-1");
    return rec && rec->endpoints == 2;
  }));
}

TEST_F(ServerModeTest, IdentitiesTakeTheClusterNumbers) {
  ASSERT_EQ(Apply({Ns("shop"), ApiPolicy(80)}), 1);
  // node-2 holds another key first: the cluster's lowest number is taken, so this agent's
  // own numbering (lowest first) differs from the cluster's.
  agentlink::SyncOptions other;
  other.server = Target();
  other.credentials = Join("node-2");
  agentlink::SyncClient node2(other, {});
  ASSERT_TRUE(node2.SetIdentityKeys({"ns:kubernetes.io/metadata.name=else,app=else"}).ok());
  node2.Start();
  ASSERT_TRUE(Pump0([&] { return !node2.identity_pins().empty(); }));
  const uint32_t taken = node2.identity_pins().begin()->second;

  StartAgent(Join("node-1"), dp_);
  auto identity_of = [&](const std::string& workload) -> uint32_t {
    for (const auto& e : agent_->EndpointsJson()) {
      if (e.value("workload", "") == workload) return e.value("identity", 0u);
    }
    return 0;
  };
  auto key_of = [&](const std::string& app) {
    for (const std::string& k : agent_->IdentityKeys()) {
      if (k.find("app=" + app) != std::string::npos) return k;
    }
    return std::string();
  };
  ASSERT_TRUE(Pump([&] {
    auto pins = link_->identity_pins();
    auto web = pins.find(key_of("web"));
    auto api = pins.find(key_of("api"));
    return agent_->enforced_server_revision() == 1 && agent_->held_namespaces().empty() &&
           web != pins.end() && api != pins.end() && identity_of("shop/web") == web->second &&
           identity_of("shop/api") == api->second;
  }));
  EXPECT_NE(identity_of("shop/web"), taken);
  EXPECT_NE(identity_of("shop/api"), taken);
  EXPECT_EQ(Verdict("shop/web", "shop/api", 80), "allow");
  EXPECT_EQ(Verdict("shop/web", "shop/api", 81), "deny");
  node2.Stop();
}

// Without a server: an Agent given an input whose namespace is not synced holds its
// endpoints at deny (no NetworkPolicy of shop known yet would mean allow-all).
TEST_F(ServerModeTest, EndpointsOfANamespaceNotSyncedAreHeldAtDeny) {
  agent_ = MakeAgent(dp_);
  ASSERT_TRUE(agent_->Start().ok());
  ServerInput in;
  in.revision = 7;
  ASSERT_TRUE(agent_->SetServerInput(in).ok());
  EXPECT_EQ(agent_->held_namespaces(), std::set<std::string>{"shop"});
  EXPECT_EQ(Verdict("shop/web", "shop/api", 80), "deny");
  EXPECT_EQ(Verdict("shop/api", "shop/web", 443), "deny");

  // The namespace synced (no policy there): Kubernetes' default, allow.
  in.synced_namespaces = {"shop"};
  ASSERT_TRUE(agent_->SetServerInput(in).ok());
  EXPECT_TRUE(agent_->held_namespaces().empty());
  EXPECT_EQ(Verdict("shop/web", "shop/api", 80), "allow");
  EXPECT_EQ(agent_->enforced_server_revision(), 7);
}

// The real binary's refusals in server mode (no server needed: each is refused before any
// connection, or the connection is refused).
TEST(AgentServerCliTest, RefusesClearly) {
  const fs::path dir =
      fs::temp_directory_path() / ("bulkhead-agent-server-cli-" + std::to_string(getpid()));
  fs::remove_all(dir);
  auto run = [&](const std::string& args) -> std::pair<int, std::string> {
    const std::string cmd = std::string(BULKHEAD_BINARY) + " agent " + args + " --state-dir " +
                            (dir / "state").string() + " --socket " +
                            (dir / "agent.sock").string() + " 2>&1";
    FILE* p = popen(cmd.c_str(), "r");
    if (p == nullptr) return {-1, ""};
    std::string out;
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof(buf), p)) > 0) out.append(buf, n);
    int st = pclose(p);
    return {WIFEXITED(st) ? WEXITSTATUS(st) : -1, out};
  };
  auto [code, out] = run("--server 127.0.0.1:1");
  EXPECT_EQ(code, 2) << out;
  EXPECT_NE(out.find("holds no credentials and no --token"), std::string::npos) << out;
  std::tie(code, out) = run("--server 127.0.0.1:1 --token bhj_x.y --policies /tmp");
  EXPECT_EQ(code, 2) << out;
  EXPECT_NE(out.find("--policies cannot be used with --server"), std::string::npos) << out;
  std::tie(code, out) = run("--server 127.0.0.1:1 --token bhj_x.y --node n1");
  EXPECT_EQ(code, 2) << out;
  EXPECT_NE(out.find("--node is for standalone mode"), std::string::npos) << out;
  std::tie(code, out) = run("--server nohost --token bhj_x.y");
  EXPECT_EQ(code, 2) << out;
  EXPECT_NE(out.find("--server:"), std::string::npos) << out;
  std::tie(code, out) = run("--server 127.0.0.1:1 --token bhj_x.y --node-name n1");
  EXPECT_EQ(code, 1) << out;
  EXPECT_NE(out.find("cannot join 127.0.0.1:1 as n1"), std::string::npos) << out;
  fs::remove_all(dir);
}

}  // namespace
}  // namespace bulkhead::agent
