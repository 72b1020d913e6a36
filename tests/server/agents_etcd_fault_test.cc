// Agents while etcd loses members (issue #4, "Faults"): two in-process server replicas on a
// real three-member etcd cluster, a real agent (server mode, FakeDatapath) joined to each.
// One member lost: applies through either replica reach both agents. Two lost: an apply fails
// with Unavailable and writes nothing, and both agents keep enforcing the last revision.
// Members back: the next apply reaches both agents again.
#include <gtest/gtest.h>
#include <poll.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "agent/agent.h"
#include "agent/server_link.h"
#include "agentlink/agentlink.h"
#include "datapath/fake_datapath.h"
#include "etcd_cluster.h"
#include "etcd_environment.h"
#include "server/agent_registry.h"
#include "server/auth.h"
#include "server/policy_repo.h"
#include "server/server.h"
#include "store/store.h"

namespace bulkhead::server {
namespace {

namespace fs = std::filesystem;
using store::testing::EtcdCluster;

// Waits are bounded only so that a broken build fails instead of hanging.
constexpr auto kPatience = std::chrono::seconds(60);

BULKHEAD_SHARED_ETCD_CLUSTER();

// The shared cluster (nullptr without etcd).
EtcdCluster* Cluster() { return store::testing::SharedEtcdCluster::Get(); }

std::string Ns(const std::string& name) {
  return "apiVersion: v1\nkind: Namespace\nmetadata: {name: " + name + "}\n";
}

// Every workload of shop admits every other one of shop on `port` only.
std::string ShopPolicy(int port) {
  return "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: shop-in, "
         "namespace: shop}\nspec:\n  podSelector: {}\n  ingress:\n  - from: [{podSelector: {}}]\n"
         "    ports: [{port: " +
         std::to_string(port) + "}]\n";
}

// One node: its inventory (one workload of shop), its fake kernel, the agent and its session.
struct Node {
  std::string name;
  std::string workload;  // "shop/web"
  std::string ip;        // the workload's address, a peer on the other node
  datapath::FakeDatapath dp;
  std::unique_ptr<agent::Agent> agent;
  std::unique_ptr<agent::ServerLink> link;
};

class AgentsEtcdFaultTest : public ::testing::Test {
 protected:
  void SetUp() override {
    REQUIRE_ETCD("agents are");
    dir_ = fs::temp_directory_path() /
           ("bulkhead-agents-etcd-" + std::to_string(getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    // The test binary's cluster is shared by its tests: start from an empty keyspace.
    auto clean = store::OpenStore(Cluster()->Url());
    ASSERT_TRUE(clean.ok()) << clean.status();
    ASSERT_TRUE((*clean)->Txn({}, {store::Op::DeletePrefix("/bulkhead/")}).ok());
    // One data dir (the CA, the server certificate) for both replicas, as on shared storage.
    auto init = InitServer({(dir_ / "server").string(), Cluster()->Url(), {}});
    ASSERT_TRUE(init.ok()) << init.status();
    for (int i = 0; i < 2; ++i) {
      auto replica = StartReplica(0);
      ASSERT_TRUE(replica.ok()) << replica.status();
      replicas_.push_back(*std::move(replica));
    }
  }

  // A server replica on the cluster, its agent listener on `grpc_port` (0: any free port).
  absl::StatusOr<std::unique_ptr<Server>> StartReplica(int grpc_port) {
    ServerOptions o;
    o.data_dir = (dir_ / "server").string();
    o.store_url = Cluster()->Url();
    o.listen = "127.0.0.1:0";
    o.grpc_listen = "127.0.0.1:" + std::to_string(grpc_port);
    // The default sweep (2 s): it is also what re-opens the feeds' store watches after a
    // failure, as in `bulkhead server`.
    return Server::Start(o);
  }

  void TearDown() override {
    // Sessions first (they call the servers), then the servers; the cluster's members are
    // started again for the next test whatever this one left.
    for (auto& n : nodes_) {
      n->link.reset();
      n->agent.reset();
    }
    nodes_.clear();
    replicas_.clear();
    if (Cluster() != nullptr) {
      for (int m = 0; m < Cluster()->size(); ++m) {
        if (!Cluster()->Running(m)) {
          EXPECT_TRUE(Cluster()->Restart(m).ok());
        }
      }
      EXPECT_TRUE(Cluster()->WaitHealthy().ok());
    }
    std::error_code ignored;
    if (!dir_.empty()) fs::remove_all(dir_, ignored);
  }

  std::string Target(int replica) const {
    return "127.0.0.1:" + std::to_string(replicas_[replica]->grpc_port());
  }

  // Joins `node` through `replica` and starts its agent with a session to that replica.
  Node* StartNode(int replica, const std::string& name, const std::string& workload,
                  const std::string& ip, uint32_t ifindex) {
    auto n = std::make_unique<Node>();
    n->name = name;
    n->workload = "shop/" + workload;
    n->ip = ip;
    const fs::path inventory = dir_ / (name + ".yaml");
    std::ofstream(inventory) << "apiVersion: bulkhead.io/v1alpha1\nkind: Inventory\nmetadata: "
                                "{name: "
                             << name << "}\nspec:\n  workloads:\n  - {name: " << workload
                             << ", namespace: shop, labels: {app: " << workload << "}, ips: [" << ip
                             << "], hostInterface: veth-" << workload << "}\n";
    TokenStore tokens(replicas_[replica]->store(), [] { return absl::Now(); });
    auto token = tokens.CreateJoinToken(absl::Hours(1), "test");
    EXPECT_TRUE(token.ok()) << token.status();
    if (!token.ok()) return nullptr;
    agentlink::JoinOptions jo;
    jo.server = Target(replica);
    jo.token = *token;
    jo.node_name = name;
    jo.state_dir = (dir_ / ("state-" + name)).string();
    auto creds = agentlink::Join(jo);
    EXPECT_TRUE(creds.ok()) << creds.status();
    if (!creds.ok()) return nullptr;

    agent::AgentOptions ao;
    ao.inventory_file = inventory.string();
    ao.state_dir = jo.state_dir;
    ao.node = name;
    ao.server_mode = true;
    const std::string host_interface = "veth-" + workload;
    n->agent = std::make_unique<agent::Agent>(
        ao, n->dp, [host_interface, ifindex](const std::string& i) -> absl::StatusOr<uint32_t> {
          if (i != host_interface) return absl::NotFoundError("no interface " + i);
          return ifindex;
        });
    absl::Status started = n->agent->Start();
    EXPECT_TRUE(started.ok()) << started;
    if (!started.ok()) return nullptr;
    agentlink::SyncOptions so;
    so.server = Target(replica);
    so.credentials = *creds;
    so.initial_backoff = absl::Milliseconds(20);
    so.max_backoff = absl::Milliseconds(200);
    n->link = std::make_unique<agent::ServerLink>(so);
    n->link->Start(*n->agent);
    nodes_.push_back(std::move(n));
    return nodes_.back().get();
  }

  // The agents' loops (as `bulkhead agent --server` runs them), both in this thread: process
  // what the sessions delivered until `pred` holds or `limit` passed; true if it held.
  template <typename Pred>
  bool Pump(Pred pred, std::chrono::milliseconds limit = kPatience) {
    const auto end = std::chrono::steady_clock::now() + limit;
    while (std::chrono::steady_clock::now() < end) {
      std::vector<pollfd> fds;
      for (auto& n : nodes_) {
        n->link->Process(*n->agent);
        fds.push_back({n->link->fd(), POLLIN, 0});
      }
      if (pred()) return true;
      (void)poll(fds.data(), fds.size(), 20);
    }
    return pred();
  }

  // Applies `docs` through `replica`'s store.
  absl::StatusOr<ChangeResult> Apply(int replica, const std::vector<std::string>& docs) {
    PolicyRepository repo(replicas_[replica]->store());
    ApplyRequest req;
    for (size_t i = 0; i < docs.size(); ++i) {
      req.files.push_back({"f" + std::to_string(i) + ".yaml", docs[i]});
    }
    return repo.Apply(req, Actor{"test", "admin", "local"});
  }
  int64_t MustApply(int replica, int port) {
    auto r = Apply(replica, {Ns("shop"), ShopPolicy(port)});
    EXPECT_TRUE(r.ok()) << r.status();
    if (!r.ok()) return 0;
    EXPECT_TRUE(r->valid && r->committed);
    if (!r->valid) {
      for (const auto& d : r->diagnostics) ADD_FAILURE() << d.ToString();
    }
    return r->committed ? r->revision : 0;
  }

  // Every agent enforces `revision` with shop synced and the other node's workload known.
  bool AllEnforce(int64_t revision) {
    for (auto& n : nodes_) {
      if (n->agent->enforced_server_revision() != revision) return false;
      if (!n->agent->held_namespaces().empty()) return false;
      if (n->agent->StatusJson()["server"].value("peers", 0) != 1) return false;
    }
    return true;
  }

  // Every agent's ack of `revision` is in the cluster's registry (read through `replica`).
  bool AllAckedInRegistry(int replica, int64_t revision) {
    auto list = ListAgents(replicas_[replica]->store());
    if (!list.ok()) return false;
    size_t acked = 0;
    for (const AgentRecord& r : *list) {
      if (r.enforced_revision == revision && r.health == "ok") ++acked;
    }
    return acked == nodes_.size();
  }

  // The verdict of the kernel of `to`'s node for a flow from `from`'s workload (a peer there).
  std::string Verdict(const Node& from, const Node& to, int port) {
    auto r = to.agent->Explain(from.ip, to.workload, static_cast<uint16_t>(port), "tcp");
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? r->value("verdict", "") : "";
  }

  // Both directions across the nodes, on `port`.
  std::string Verdicts(int port) {
    return Verdict(*nodes_[0], *nodes_[1], port) + "," + Verdict(*nodes_[1], *nodes_[0], port);
  }

  // What a fake kernel holds: endpoints with their tables and generations, the tables, the
  // sizes of the ipcache and the policy entries.
  static std::string KernelState(datapath::FakeDatapath& dp) {
    auto eps = dp.ListEndpoints();
    auto ids = dp.ListPolicyTables();
    EXPECT_TRUE(eps.ok() && ids.ok());
    if (!eps.ok() || !ids.ok()) return "";
    std::string out;
    for (const auto& e : *eps) {
      out += std::to_string(e.ifindex) + ":" + std::to_string(e.identity) + ":" +
             std::to_string(e.policy_table_id) + ":" + std::to_string(e.policy_generation) + ";";
    }
    for (uint32_t t : *ids) out += "t" + std::to_string(t) + ";";
    return out + "ipcache " + std::to_string(dp.ipcache_size()) + ", entries " +
           std::to_string(dp.policy_entries());
  }

  fs::path dir_;
  std::vector<std::unique_ptr<Server>> replicas_;
  std::vector<std::unique_ptr<Node>> nodes_;
};

TEST_F(AgentsEtcdFaultTest, AgentsKeepEnforcingThroughLostMembersAndConvergeAfter) {
  Node* web = StartNode(0, "node-1", "web", "10.9.0.1", 11);
  ASSERT_NE(web, nullptr);
  Node* api = StartNode(1, "node-2", "api", "10.9.0.2", 12);
  ASSERT_NE(api, nullptr);

  // Revision 1 through replica 1: shop admits shop on 80. Both agents, each on its replica.
  ASSERT_EQ(MustApply(0, 80), 1);
  ASSERT_TRUE(Pump([&] { return AllEnforce(1); })) << web->agent->StatusJson().dump() << "\n"
                                                   << api->agent->StatusJson().dump();
  EXPECT_EQ(Verdicts(80), "allow,allow");
  EXPECT_EQ(Verdicts(81), "deny,deny");
  ASSERT_TRUE(Pump([&] { return AllAckedInRegistry(1, 1); }));

  // One member lost: the one both replicas' stores talk to first (member 0), unless it leads;
  // then another follower.
  auto leader = Cluster()->Leader();
  ASSERT_TRUE(leader.ok()) << leader.status();
  const int first = *leader == 0 ? 1 : 0;
  const int second = 3 - *leader - first;
  Cluster()->Kill(first);
  ASSERT_EQ(MustApply(1, 81), 2);
  ASSERT_TRUE(Pump([&] { return AllEnforce(2); })) << web->agent->StatusJson().dump() << "\n"
                                                   << api->agent->StatusJson().dump();
  EXPECT_EQ(Verdicts(80), "deny,deny");
  EXPECT_EQ(Verdicts(81), "allow,allow");
  ASSERT_TRUE(Pump([&] { return AllAckedInRegistry(0, 2); }));

  // Two lost: no quorum. The apply fails clearly; the agents keep revision 2 in their kernels.
  const std::string web_kernel = KernelState(web->dp);
  const std::string api_kernel = KernelState(api->dp);
  ASSERT_NE(web->dp.policy_entries(), 0u);
  ASSERT_NE(api->dp.policy_entries(), 0u);
  Cluster()->Kill(second);
  auto failed = Apply(0, {Ns("shop"), ShopPolicy(82)});
  ASSERT_FALSE(failed.ok()) << "an apply without quorum was acknowledged, revision "
                            << failed->revision;
  EXPECT_EQ(failed.status().code(), absl::StatusCode::kUnavailable) << failed.status();
  EXPECT_NE(failed.status().message().find("no quorum or unreachable"), std::string::npos)
      << failed.status();
  // Replica 2 goes (its agent's stream ends; reconnecting is refused from then on) while
  // replica 1 keeps its agent's stream but cannot read or watch the store. Several seconds of
  // the agents' loops: each check runs on every round, so a change at any moment fails.
  const int replica2_port = replicas_[1]->grpc_port();
  replicas_[1].reset();
  const int api_failures = api->link->StatusJson().value("failures", 0);
  int rounds = 0;
  bool changed = Pump(
      [&] {
        ++rounds;
        return KernelState(web->dp) != web_kernel || KernelState(api->dp) != api_kernel ||
               web->agent->enforced_server_revision() != 2 ||
               api->agent->enforced_server_revision() != 2;
      },
      std::chrono::seconds(6));
  EXPECT_FALSE(changed) << "a kernel changed without quorum: " << KernelState(web->dp) << " / "
                        << KernelState(api->dp);
  EXPECT_GT(rounds, 10);
  EXPECT_FALSE(api->link->StatusJson().value("connected", true));
  EXPECT_GE(api->link->StatusJson().value("failures", 0), api_failures + 3)
      << api->link->StatusJson().dump();
  EXPECT_EQ(Verdicts(80), "deny,deny");
  EXPECT_EQ(Verdicts(81), "allow,allow");
  EXPECT_EQ(Verdicts(82), "deny,deny");

  // Members back: nothing was written meanwhile. Replica 2 starts again on its port; the next
  // apply reaches both agents (node-2 over a new stream; node-1 over its stream, or a new one
  // when replica 1 ended it because a store write of the session failed without quorum).
  ASSERT_TRUE(Cluster()->Restart(first).ok());
  ASSERT_TRUE(Cluster()->Restart(second).ok());
  ASSERT_TRUE(Cluster()->WaitHealthy().ok());
  auto head = PolicyRepository(replicas_[0]->store()).Read();
  ASSERT_TRUE(head.ok()) << head.status();
  EXPECT_EQ(head->first, 2) << "a revision was written without quorum";
  auto restarted = StartReplica(replica2_port);
  ASSERT_TRUE(restarted.ok()) << restarted.status();
  replicas_[1] = *std::move(restarted);
  ASSERT_EQ(MustApply(0, 83), 3);
  ASSERT_TRUE(Pump([&] { return AllEnforce(3); })) << web->agent->StatusJson().dump() << "\n"
                                                   << api->agent->StatusJson().dump();
  EXPECT_EQ(Verdicts(81), "deny,deny");
  EXPECT_EQ(Verdicts(83), "allow,allow");
  ASSERT_TRUE(Pump([&] { return AllAckedInRegistry(1, 3); }));
}

}  // namespace
}  // namespace bulkhead::server
