// The agents' gRPC API end to end: a real server (init, TLS, SQLite, the gRPC listener on
// loopback) and the real agent client library (src/agentlink): trust bootstrap, refusals,
// snapshot and deltas, namespace filtering, endpoints between agents, acks and lag, server
// restart, and an agent that goes away (stale, grace, removal) on an injected clock.
#include "server/agent_service.h"

#include <fcntl.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <optional>
#include <set>
#include <sstream>
#include <thread>

#include "agentlink/agentlink.h"
#include "bulkhead/v1/agent.grpc.pb.h"
#include "server/agent_registry.h"
#include "server/api_client.h"
#include "server/identities.h"
#include "server/server.h"

namespace bulkhead::server {
namespace {

using agentlink::Credentials;
using agentlink::Endpoint;

// Waits are bounded only so that a broken build fails instead of hanging; nothing here
// depends on how fast anything is.
constexpr auto kPatience = std::chrono::seconds(60);

std::string Np(const std::string& ns, const std::string& name, int port) {
  return "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: " + name +
         ", namespace: " + ns + "}\nspec:\n  podSelector: {matchLabels: {app: " + name +
         "}}\n  ingress:\n  - ports: [{port: " + std::to_string(port) + "}]\n";
}

std::string Ns(const std::string& name) {
  return "apiVersion: v1\nkind: Namespace\nmetadata: {name: " + name + ", labels: {team: " + name +
         "}}\n";
}

Endpoint Ep(const std::string& ns, const std::string& name, const std::string& ip) {
  Endpoint e;
  e.namespace_name = ns;
  e.name = name;
  e.labels = {{"app", name}};
  e.service_account = "default";
  e.ips = {ip};
  e.named_ports = {{"http", 8080, "TCP"}};
  return e;
}

std::string ReadText(const std::filesystem::path& p) {
  std::ifstream in(p);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// Polls `pred` until it holds (for state that changes in the store or another process).
template <typename Pred>
bool Eventually(Pred pred) {
  auto end = std::chrono::steady_clock::now() + kPatience;
  while (std::chrono::steady_clock::now() < end) {
    if (pred()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return pred();
}

// An agent made of the real client library, recording what it receives.
class TestAgent {
 public:
  struct Seen {
    bool snapshot;
    int64_t revision;
    std::vector<std::string> upserts;  // ObjectRef keys
    std::vector<std::string> deletes;
  };

  TestAgent(int port, Credentials creds, bool auto_ack, std::vector<Endpoint> endpoints = {},
            std::optional<std::set<std::string>> identity_keys = std::nullopt) {
    agentlink::SyncOptions o;
    o.server = "127.0.0.1:" + std::to_string(port);
    o.credentials = std::move(creds);
    o.initial_backoff = absl::Milliseconds(20);
    o.max_backoff = absl::Milliseconds(200);
    o.version = "test";
    agentlink::SyncCallbacks cb;
    cb.on_policy = [this, auto_ack](const agentlink::PolicyUpdate& u,
                                    const agentlink::PolicyState& state) {
      Seen s{u.snapshot, u.revision, {}, {}};
      for (const auto& o : u.upserts) s.upserts.push_back(o.ref.Key());
      for (const auto& r : u.deletes) s.deletes.push_back(r.Key());
      {
        std::lock_guard<std::mutex> lock(mu_);
        seen_.push_back(std::move(s));
        revision_ = state.revision;
        cv_.notify_all();
      }
      if (auto_ack) client_->Ack(state.revision, absl::OkStatus());
    };
    cb.on_endpoints = [this](const agentlink::EndpointUpdate&,
                             const std::map<std::string, Endpoint>&) {
      std::lock_guard<std::mutex> lock(mu_);
      ++endpoint_updates_;
      cv_.notify_all();
    };
    cb.on_identities = [this](const std::map<std::string, uint32_t>& pins) {
      std::lock_guard<std::mutex> lock(mu_);
      pins_ = pins;
      ++pin_updates_;
      cv_.notify_all();
    };
    client_ = std::make_unique<agentlink::SyncClient>(o, cb);
    EXPECT_TRUE(client_->SetEndpoints(std::move(endpoints)).ok());
    if (identity_keys) {
      EXPECT_TRUE(client_->SetIdentityKeys(*identity_keys).ok());
    }
    client_->Start();
  }

  // Waits until `pred` (run under the agent's lock) holds; false after kPatience.
  template <typename Pred>
  bool WaitFor(Pred pred) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, kPatience, [&] { return pred(); });
  }
  bool WaitForRevision(int64_t rev) {
    return WaitFor([&] { return !seen_.empty() && revision_ == rev; });
  }
  std::vector<Seen> seen() {
    std::lock_guard<std::mutex> lock(mu_);
    return seen_;
  }
  agentlink::SyncClient& client() { return *client_; }

  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<Seen> seen_;
  int64_t revision_ = -1;
  int endpoint_updates_ = 0;
  std::map<std::string, uint32_t> pins_;  // the last on_identities
  int pin_updates_ = 0;

 private:
  std::unique_ptr<agentlink::SyncClient> client_;
};

class AgentServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::path(::testing::TempDir()) /
           ("bulkhead_agents_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    auto init = InitServer({(dir_ / "server").string(), "", {}});
    ASSERT_TRUE(init.ok()) << init.status();
    admin_token_ = init->admin_token;
    StartServer(0);
  }
  void TearDown() override {
    server_.reset();
    std::filesystem::remove_all(dir_);
  }

  void StartServer(int grpc_port, bool background_sweeps = false) {
    ServerOptions o;
    o.data_dir = (dir_ / "server").string();
    o.listen = "127.0.0.1:0";
    o.grpc_listen = "127.0.0.1:" + std::to_string(grpc_port);
    o.agents.clock = [this] {
      std::lock_guard<std::mutex> lock(clock_mu_);
      return now_;
    };
    o.agents.stale_after = absl::Seconds(30);
    o.agents.endpoint_grace = absl::Minutes(5);
    o.agents.sweep_interval = absl::ZeroDuration();  // the tests sweep
    o.agents.identities = identity_range_;
    if (background_sweeps) {
      // The real clock and the sweeper thread, with timeouts so short that any pass after
      // the agent left finds it stale and past its grace.
      o.agents.clock = absl::Now;
      o.agents.stale_after = absl::Milliseconds(1);
      o.agents.endpoint_grace = absl::Milliseconds(1);
      o.agents.sweep_interval = absl::Milliseconds(10);
    }
    auto s = Server::Start(o);
    ASSERT_TRUE(s.ok()) << s.status();
    server_ = *std::move(s);
    port_ = server_->grpc_port();
    ASSERT_GT(port_, 0);
  }

  void Advance(absl::Duration d) {
    std::lock_guard<std::mutex> lock(clock_mu_);
    now_ += d;
  }

  std::string Target() const { return "127.0.0.1:" + std::to_string(port_); }

  std::string JoinToken(absl::Duration ttl = absl::Hours(1), absl::Time made = absl::Now()) {
    TokenStore tokens(server_->store(), [made] { return made; });
    auto t = tokens.CreateJoinToken(ttl, "test");
    EXPECT_TRUE(t.ok()) << t.status();
    return t.ok() ? *t : "";
  }

  absl::StatusOr<Credentials> Join(const std::string& node, const std::string& token) {
    agentlink::JoinOptions o;
    o.server = Target();
    o.token = token;
    o.node_name = node;
    o.state_dir = (dir_ / ("agent-" + node)).string();
    return agentlink::Join(o);
  }

  Credentials MustJoin(const std::string& node) {
    auto c = Join(node, JoinToken());
    EXPECT_TRUE(c.ok()) << c.status();
    return c.ok() ? *c : Credentials{};
  }

  int64_t Apply(store::IStore* store, const std::vector<std::string>& docs) {
    PolicyRepository repo(store);
    ApplyRequest req;
    for (size_t i = 0; i < docs.size(); ++i) {
      req.files.push_back({"f" + std::to_string(i) + ".yaml", docs[i]});
    }
    auto r = repo.Apply(req, Actor{"test", "admin", "local"});
    EXPECT_TRUE(r.ok()) << r.status();
    EXPECT_TRUE(r.ok() && r->valid && r->committed);
    return r.ok() ? r->revision : 0;
  }
  int64_t Apply(const std::vector<std::string>& docs) { return Apply(server_->store(), docs); }

  std::optional<AgentRecord> Record(const std::string& node) {
    auto list = ListAgents(server_->store());
    EXPECT_TRUE(list.ok()) << list.status();
    if (!list.ok()) return std::nullopt;
    for (const AgentRecord& r : *list) {
      if (r.node == node) return r;
    }
    return std::nullopt;
  }

  // Runs the real `bulkhead` binary against this server; returns {exit code, stdout}.
  std::pair<int, std::string> Cli(std::vector<std::string> args) {
    std::vector<std::string> argv_s = {BULKHEAD_BINARY};
    argv_s.insert(argv_s.end(), args.begin(), args.end());
    std::vector<char*> argv;
    argv.reserve(argv_s.size() + 1);
    for (auto& a : argv_s) argv.push_back(a.data());
    argv.push_back(nullptr);
    std::vector<std::string> env_s = {
        "BULKHEAD_SERVER=https://127.0.0.1:" + std::to_string(server_->rest_port()),
        "BULKHEAD_CA=" + (dir_ / "server" / "ca.crt").string(), "BULKHEAD_TOKEN=" + admin_token_,
        "NO_COLOR=1"};
    std::vector<char*> envp;
    envp.reserve(env_s.size() + 1);
    for (auto& e : env_s) envp.push_back(e.data());
    envp.push_back(nullptr);
    std::string out = (dir_ / "cli.out").string();
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 1, out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    pid_t pid = 0;
    int rc = posix_spawn(&pid, argv[0], &actions, nullptr, argv.data(), envp.data());
    posix_spawn_file_actions_destroy(&actions);
    EXPECT_EQ(rc, 0);
    if (rc != 0) return {-1, ""};
    int status = 0;
    waitpid(pid, &status, 0);
    return {WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status), ReadText(out)};
  }

  std::unique_ptr<ApiClient> Rest() {
    auto c = ApiClient::Create({"https://127.0.0.1:" + std::to_string(server_->rest_port()),
                                admin_token_, (dir_ / "server" / "ca.crt").string(), 30});
    EXPECT_TRUE(c.ok()) << c.status();
    return c.ok() ? *std::move(c) : nullptr;
  }

  std::filesystem::path dir_;
  std::string admin_token_;
  std::unique_ptr<Server> server_;
  int port_ = 0;
  std::mutex clock_mu_;
  absl::Time now_ = absl::Now();  // advanced by hand (join tokens expire by the real clock)
  ClusterIdentitiesOptions identity_range_;
};

TEST_F(AgentServiceTest, DiscoveryReturnsTheCaOnlyForTheRightToken) {
  std::string token = JoinToken();
  auto ca = agentlink::DiscoverCa(Target(), token, absl::Seconds(30));
  ASSERT_TRUE(ca.ok()) << ca.status();
  EXPECT_EQ(*ca, ReadText(dir_ / "server" / "ca.crt"));

  // Same id, another secret: the server answers, but its MAC does not match this token.
  std::string wrong = token.substr(0, token.size() - 4) +
                      (token.substr(token.size() - 4) == "0000" ? "1111" : "0000");
  auto forged = agentlink::DiscoverCa(Target(), wrong, absl::Seconds(30));
  ASSERT_FALSE(forged.ok());
  EXPECT_EQ(forged.status().code(), absl::StatusCode::kPermissionDenied) << forged.status();
  EXPECT_NE(forged.status().message().find("MAC mismatch"), std::string::npos);

  // An id the server does not know.
  auto unknown = agentlink::DiscoverCa(Target(), "bhj_0123456789abcdef." + std::string(64, 'a'),
                                       absl::Seconds(30));
  EXPECT_EQ(unknown.status().code(), absl::StatusCode::kUnauthenticated) << unknown.status();
}

TEST_F(AgentServiceTest, JoinIssuesACertificateForTheNodeAndWritesPrivateStateFiles) {
  auto c = Join("node-1", JoinToken());
  ASSERT_TRUE(c.ok()) << c.status();
  auto cn = CommonNameOf(c->cert_pem);
  ASSERT_TRUE(cn.ok());
  EXPECT_EQ(*cn, "node-1");
  agentlink::StateFiles files((dir_ / "agent-node-1").string());
  for (const std::string& f : {files.ca(), files.key(), files.cert()}) {
    struct stat st {};
    ASSERT_EQ(::stat(f.c_str(), &st), 0) << f;
    EXPECT_EQ(st.st_mode & 0777, 0600u) << f;
  }
  auto loaded = agentlink::LoadCredentials(files.dir);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ(loaded->node_name, "node-1");
  EXPECT_EQ(loaded->key_pem, c->key_pem);
  auto record = Record("node-1");
  ASSERT_TRUE(record.has_value());
  EXPECT_EQ(record->health, "joined");

  // With --ca the agent skips discovery.
  agentlink::JoinOptions o;
  o.server = Target();
  o.token = JoinToken();
  o.node_name = "node-2";
  o.state_dir = (dir_ / "agent-node-2").string();
  o.ca_file = (dir_ / "server" / "ca.crt").string();
  auto c2 = agentlink::Join(o);
  ASSERT_TRUE(c2.ok()) << c2.status();
}

TEST_F(AgentServiceTest, JoinWithAnUnknownOrExpiredTokenIsRefused) {
  auto unknown = Join("node-1", "bhj_0123456789abcdef." + std::string(64, 'b'));
  ASSERT_FALSE(unknown.ok());
  EXPECT_EQ(unknown.status().code(), absl::StatusCode::kUnauthenticated) << unknown.status();

  std::string expired = JoinToken(absl::Hours(1), absl::Now() - absl::Hours(2));
  auto e = Join("node-1", expired);
  ASSERT_FALSE(e.ok());
  EXPECT_EQ(e.status().code(), absl::StatusCode::kUnauthenticated) << e.status();
  EXPECT_NE(e.status().message().find("expired"), std::string::npos) << e.status();

  // Past discovery (the CA given), the join itself refuses the token.
  agentlink::JoinOptions o;
  o.server = Target();
  o.token = expired;
  o.node_name = "node-1";
  o.state_dir = (dir_ / "agent-node-1").string();
  o.ca_file = (dir_ / "server" / "ca.crt").string();
  auto j = agentlink::Join(o);
  ASSERT_FALSE(j.ok());
  EXPECT_EQ(j.status().code(), absl::StatusCode::kUnauthenticated) << j.status();
  EXPECT_NE(j.status().message().find("expired"), std::string::npos) << j.status();
  EXPECT_FALSE(Record("node-1").has_value());
  EXPECT_FALSE(std::filesystem::exists(dir_ / "agent-node-1" / "agent.crt"));

  auto bad_name = Join("Node_1!", JoinToken());
  EXPECT_EQ(bad_name.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(AgentServiceTest, SyncWithoutAClientCertificateIsUnauthenticated) {
  grpc::SslCredentialsOptions tls;
  tls.pem_root_certs = ReadText(dir_ / "server" / "ca.crt");
  auto stub = v1::AgentService::NewStub(grpc::CreateChannel(Target(), grpc::SslCredentials(tls)));
  grpc::ClientContext ctx;
  auto stream = stub->Sync(&ctx);
  v1::AgentMessage hello;
  hello.mutable_hello();
  stream->Write(hello);
  v1::ServerMessage m;
  EXPECT_FALSE(stream->Read(&m));
  grpc::Status st = stream->Finish();
  EXPECT_EQ(st.error_code(), grpc::StatusCode::UNAUTHENTICATED) << st.error_message();
}

TEST_F(AgentServiceTest, AClientCertificateFromAnotherCaIsRefused) {
  auto other = CreateCa("another CA", absl::Hours(1));
  ASSERT_TRUE(other.ok());
  auto cert = IssueCert(*other, "node-1", {}, CertUsage::kClient, absl::Hours(1));
  ASSERT_TRUE(cert.ok());
  Credentials c{"node-1", ReadText(dir_ / "server" / "ca.crt"), cert->key_pem, cert->cert_pem};
  TestAgent agent(port_, c, true);
  ASSERT_TRUE(Eventually([&] { return agent.client().stats().failures >= 2; }));
  EXPECT_EQ(agent.client().stats().sessions, 0u);
  EXPECT_TRUE(agent.seen().empty());
  EXPECT_FALSE(Record("node-1").has_value());
}

TEST_F(AgentServiceTest, SnapshotThenADeltaPerRevisionInOrder) {
  TestAgent agent(port_, MustJoin("node-1"), true, {Ep("shop", "web-1", "10.0.0.1")});
  ASSERT_TRUE(agent.WaitForRevision(0));
  ASSERT_EQ(Apply({Np("shop", "web", 80)}), 1);
  ASSERT_EQ(Apply({Np("shop", "web", 81), Np("shop", "db", 5432)}), 2);
  ASSERT_TRUE(agent.WaitForRevision(2));
  std::vector<TestAgent::Seen> seen = agent.seen();
  ASSERT_EQ(seen.size(), 3u);
  EXPECT_TRUE(seen[0].snapshot);
  EXPECT_EQ(seen[0].revision, 0);
  EXPECT_FALSE(seen[1].snapshot);
  EXPECT_EQ(seen[1].revision, 1);
  EXPECT_EQ(seen[1].upserts, std::vector<std::string>{"networking.k8s.io/NetworkPolicy/shop/web"});
  EXPECT_EQ(seen[2].revision, 2);
  EXPECT_EQ(seen[2].upserts.size(), 2u);
  agentlink::PolicyState state = agent.client().policy();
  EXPECT_EQ(state.revision, 2);
  ASSERT_EQ(state.objects.size(), 2u);
  EXPECT_NE(state.objects["networking.k8s.io/NetworkPolicy/shop/web"].json.find("81"),
            std::string::npos);
  // The acks reach the registry.
  ASSERT_TRUE(Eventually([&] {
    auto r = Record("node-1");
    return r && r->enforced_revision == 2;
  }));
  EXPECT_EQ(Record("node-1")->health, "ok");
  EXPECT_TRUE(Record("node-1")->connected);
  EXPECT_EQ(Record("node-1")->endpoints, 1);
}

TEST_F(AgentServiceTest, AnAgentGetsClusterObjectsAndOnlyTheNamespacesOfItsEndpoints) {
  ASSERT_EQ(Apply({Ns("shop"), Ns("bank"), Np("shop", "web", 80), Np("bank", "vault", 443)}), 1);
  TestAgent agent(port_, MustJoin("node-1"), true, {Ep("shop", "web-1", "10.0.0.1")});
  ASSERT_TRUE(agent.WaitForRevision(1));
  auto keys = [&] {
    std::vector<std::string> out;
    for (const auto& [k, o] : agent.client().policy().objects) out.push_back(k);
    return out;
  };
  EXPECT_EQ(keys(), (std::vector<std::string>{"/Namespace//bank", "/Namespace//shop",
                                              "networking.k8s.io/NetworkPolicy/shop/web"}));

  // A first endpoint in bank: bank's objects arrive at the revision the agent has.
  ASSERT_TRUE(
      agent.client()
          .SetEndpoints({Ep("shop", "web-1", "10.0.0.1"), Ep("bank", "vault-1", "10.0.0.2")})
          .ok());
  ASSERT_TRUE(agent.WaitFor([&] { return agent.seen_.size() == 2; }));
  EXPECT_EQ(agent.seen()[1].revision, 1);
  EXPECT_EQ(agent.seen()[1].upserts,
            std::vector<std::string>{"networking.k8s.io/NetworkPolicy/bank/vault"});

  // The last endpoint in shop gone: shop's objects are deleted.
  ASSERT_TRUE(agent.client().SetEndpoints({Ep("bank", "vault-1", "10.0.0.2")}).ok());
  ASSERT_TRUE(agent.WaitFor([&] { return agent.seen_.size() == 3; }));
  EXPECT_EQ(agent.seen()[2].deletes,
            std::vector<std::string>{"networking.k8s.io/NetworkPolicy/shop/web"});

  // A change in shop reaches it as an empty delta (the revision moves on), one in bank whole.
  ASSERT_EQ(Apply({Np("shop", "web", 81)}), 2);
  ASSERT_EQ(Apply({Np("bank", "vault", 8443)}), 3);
  ASSERT_TRUE(agent.WaitForRevision(3));
  auto seen = agent.seen();
  ASSERT_EQ(seen.size(), 5u);
  EXPECT_TRUE(seen[3].upserts.empty());
  EXPECT_EQ(seen[4].upserts,
            std::vector<std::string>{"networking.k8s.io/NetworkPolicy/bank/vault"});
  EXPECT_EQ(keys(), (std::vector<std::string>{"/Namespace//bank", "/Namespace//shop",
                                              "networking.k8s.io/NetworkPolicy/bank/vault"}));
}

TEST_F(AgentServiceTest, EndpointsOfOneAgentReachTheOthers) {
  TestAgent a(port_, MustJoin("node-a"), true, {Ep("shop", "web-1", "10.0.0.1")});
  ASSERT_TRUE(a.WaitForRevision(0));
  TestAgent b(port_, MustJoin("node-b"), true, {Ep("shop", "db-1", "10.0.1.1")});
  ASSERT_TRUE(b.WaitForRevision(0));
  // B's snapshot has A's endpoint; A learns of B's through a change.
  auto eps = b.client().endpoints();
  ASSERT_EQ(eps.size(), 1u);
  const Endpoint& e = eps.begin()->second;
  EXPECT_EQ(eps.begin()->first, "node-a/shop/web-1");
  EXPECT_EQ(e.node, "node-a");
  EXPECT_EQ(e.ips, std::vector<std::string>{"10.0.0.1"});
  EXPECT_EQ(e.labels.at("app"), "web-1");
  ASSERT_EQ(e.named_ports.size(), 1u);
  EXPECT_EQ(e.named_ports[0].port, 8080u);
  ASSERT_TRUE(Eventually([&] { return a.client().endpoints().count("node-b/shop/db-1") == 1; }));
  EXPECT_EQ(a.client().endpoints().size(), 1u);  // its own are not echoed back

  ASSERT_TRUE(a.client().SetEndpoints({Ep("shop", "web-2", "10.0.0.2")}).ok());
  ASSERT_TRUE(Eventually([&] {
    auto m = b.client().endpoints();
    return m.count("node-a/shop/web-2") == 1 && m.count("node-a/shop/web-1") == 0;
  }));
  // A second agent cannot report for another node: the node is its certificate's.
  EXPECT_EQ(Record("node-a")->endpoints, 1);
}

// Acks only update the registry: the server writes the records of many agents together
// (AgentServiceOptions::record_batch), not one store commit per ack.
TEST_F(AgentServiceTest, AcksOfManyAgentsAreWrittenTogether) {
  constexpr int kAgents = 8;
  std::vector<std::unique_ptr<TestAgent>> agents;
  for (int i = 0; i < kAgents; ++i) {
    std::string node = "node-" + std::to_string(i);
    agents.push_back(
        std::make_unique<TestAgent>(port_, MustJoin(node), false,
                                    std::vector<Endpoint>{Ep("shop", "web-" + std::to_string(i),
                                                             "10.0.0." + std::to_string(i + 1))}));
  }
  ASSERT_EQ(Apply({Np("shop", "web", 80)}), 1);
  for (auto& a : agents) ASSERT_TRUE(a->WaitForRevision(1));
  // Let the connects' and endpoints' own writes land first.
  ASSERT_TRUE(Eventually([&] {
    for (int i = 0; i < kAgents; ++i) {
      auto r = Record("node-" + std::to_string(i));
      if (!r || !r->connected || r->endpoints != 1) return false;
    }
    return true;
  }));
  auto before = server_->store()->Get("/bulkhead/");
  ASSERT_TRUE(before.ok());
  for (auto& a : agents) a->client().Ack(1, absl::OkStatus());
  ASSERT_TRUE(Eventually([&] {
    for (int i = 0; i < kAgents; ++i) {
      auto r = Record("node-" + std::to_string(i));
      if (!r || r->enforced_revision != 1) return false;
    }
    return true;
  }));
  auto after = server_->store()->Get("/bulkhead/");
  ASSERT_TRUE(after.ok());
  EXPECT_LT(after->revision - before->revision, kAgents)
      << "one store commit per ack: the records were not written together";
}

TEST_F(AgentServiceTest, AcksUpdateTheRegistryAndTheLagShows) {
  TestAgent agent(port_, MustJoin("node-1"), false, {Ep("shop", "web-1", "10.0.0.1")});
  ASSERT_TRUE(agent.WaitForRevision(0));
  ASSERT_EQ(Apply({Np("shop", "web", 80)}), 1);
  ASSERT_EQ(Apply({Np("shop", "web", 81)}), 2);
  ASSERT_TRUE(agent.WaitForRevision(2));
  agent.client().Ack(1, absl::OkStatus());
  auto rest = Rest();
  ASSERT_NE(rest, nullptr);
  auto agents = [&] {
    auto r = rest->Get("/api/v1/agents");
    EXPECT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r.ok() ? r->status : 0, 200);
    return r.ok() ? r->body : nlohmann::json();
  };
  ASSERT_TRUE(Eventually([&] { return agents()["agents"][0]["enforcedRevision"] == 1; }));
  nlohmann::json j = agents();
  EXPECT_EQ(j["revision"], 2);
  EXPECT_EQ(j["agents"][0]["node"], "node-1");
  EXPECT_EQ(j["agents"][0]["lag"], 1);
  EXPECT_EQ(j["agents"][0]["health"], "ok");
  EXPECT_EQ(j["agents"][0]["endpoints"], 1);

  agent.client().Ack(2, absl::InternalError("compile failed: too many rules"));
  ASSERT_TRUE(Eventually([&] { return agents()["agents"][0]["health"] == "error"; }));
  j = agents();
  EXPECT_EQ(j["agents"][0]["error"], "compile failed: too many rules");
  EXPECT_EQ(j["agents"][0]["enforcedRevision"], 1);

  agent.client().ReportStatus({12.5, 64u << 20});
  ASSERT_TRUE(Eventually([&] { return agents()["agents"][0]["rssBytes"] == (64u << 20); }));
  EXPECT_EQ(agents()["agents"][0]["cpuSeconds"], 12.5);
  agent.client().Ack(2, absl::OkStatus());
  ASSERT_TRUE(Eventually([&] { return agents()["agents"][0]["lag"] == 0; }));
  EXPECT_EQ(agents()["agents"][0]["health"], "ok");
}

TEST_F(AgentServiceTest, BulkheadAgentsShowsEnforcedRevisionLagAndHealth) {
  TestAgent agent(port_, MustJoin("node-1"), false, {Ep("shop", "web-1", "10.0.0.1")});
  ASSERT_TRUE(agent.WaitForRevision(0));
  ASSERT_EQ(Apply({Np("shop", "web", 80)}), 1);
  ASSERT_EQ(Apply({Np("shop", "web", 81)}), 2);
  ASSERT_TRUE(agent.WaitForRevision(2));
  agent.client().Ack(1, absl::OkStatus());
  ASSERT_TRUE(Eventually([&] { return Record("node-1")->enforced_revision == 1; }));
  auto [rc, out] = Cli({"agents"});
  ASSERT_EQ(rc, 0) << out;
  std::istringstream lines(out);
  std::string header, row;
  std::getline(lines, header);
  std::getline(lines, row);
  EXPECT_EQ(header.substr(0, header.find("LAST SEEN")),
            "NODE    ENFORCED  LAG  HEALTH  ENDPOINTS  CPU   RSS  ");
  std::istringstream cells(row);
  std::string node, enforced, lag, health, endpoints;
  cells >> node >> enforced >> lag >> health >> endpoints;
  EXPECT_EQ(node, "node-1");
  EXPECT_EQ(enforced, "1");
  EXPECT_EQ(lag, "1");
  EXPECT_EQ(health, "ok");
  EXPECT_EQ(endpoints, "1");
  auto [rc_json, json_out] = Cli({"agents", "-o", "json"});
  ASSERT_EQ(rc_json, 0);
  nlohmann::json j = nlohmann::json::parse(json_out);
  EXPECT_EQ(j["revision"], 2);
  EXPECT_EQ(j["agents"][0]["lag"], 1);
}

TEST_F(AgentServiceTest, ARollbackReachesTheAgentAsADelta) {
  TestAgent agent(port_, MustJoin("node-1"), true, {Ep("shop", "web-1", "10.0.0.1")});
  ASSERT_EQ(Apply({Np("shop", "web", 80)}), 1);
  ASSERT_EQ(Apply({Np("shop", "db", 5432)}), 2);
  ASSERT_TRUE(agent.WaitForRevision(2));
  PolicyRepository repo(server_->store());
  auto rb = repo.Rollback(1, false, "back", Actor{"test", "admin", "local"});
  ASSERT_TRUE(rb.ok() && rb->committed) << rb.status();
  ASSERT_TRUE(agent.WaitForRevision(3));
  EXPECT_EQ(agent.seen().back().deletes,
            std::vector<std::string>{"networking.k8s.io/NetworkPolicy/shop/db"});
  EXPECT_EQ(agent.client().policy().objects.size(), 1u);
}

TEST_F(AgentServiceTest, TheBackgroundSweeperMarksAnAgentAwayStaleAndRemovesItsEndpoints) {
  server_.reset();
  StartServer(0, /*background_sweeps=*/true);
  auto a = std::make_unique<TestAgent>(port_, MustJoin("node-a"), true,
                                       std::vector<Endpoint>{Ep("shop", "web-1", "10.0.0.1")});
  ASSERT_TRUE(a->WaitForRevision(0));
  TestAgent b(port_, MustJoin("node-b"), true, {Ep("shop", "db-1", "10.0.1.1")});
  ASSERT_TRUE(b.WaitForRevision(0));
  ASSERT_TRUE(Eventually([&] { return b.client().endpoints().count("node-a/shop/web-1") == 1; }));
  a.reset();
  ASSERT_TRUE(Eventually([&] {
    auto r = Record("node-a");
    return r && r->health == "stale" && r->endpoints_removed;
  }));
  ASSERT_TRUE(Eventually([&] { return b.client().endpoints().empty(); }));
  // The connected agent's last-seen is kept fresh by its server: never stale.
  EXPECT_EQ(Record("node-b")->health, "ok");
  EXPECT_TRUE(b.client().stats().connected);
}

TEST_F(AgentServiceTest, TwoReplicasOnOneStoreBothPushEveryRevisionAndEveryEndpoint) {
  // A second agent listener on the same store, as a second server replica on one etcd.
  PolicyRepository policies(server_->store());
  TokenStore tokens(server_->store());
  AuditLog audit(server_->store());
  KeyAndCert ca{ReadText(dir_ / "server" / "ca.key"), ReadText(dir_ / "server" / "ca.crt")};
  KeyAndCert tls{ReadText(dir_ / "server" / "server.key"),
                 ReadText(dir_ / "server" / "server.crt")};
  AgentServiceOptions o;
  o.sweep_interval = absl::ZeroDuration();
  AgentService replica(server_->store(), &policies, &tokens, &audit, ca, tls, o);
  ASSERT_TRUE(replica.Start("127.0.0.1:0").ok());

  TestAgent a(port_, MustJoin("node-a"), true, {Ep("shop", "web-1", "10.0.0.1")});
  TestAgent b(replica.port(), MustJoin("node-b"), true, {Ep("shop", "db-1", "10.0.1.1")});
  ASSERT_TRUE(a.WaitForRevision(0));
  ASSERT_TRUE(b.WaitForRevision(0));
  ASSERT_EQ(Apply({Np("shop", "web", 80)}), 1);
  ASSERT_EQ(Apply({Np("shop", "web", 81)}), 2);
  ASSERT_TRUE(a.WaitForRevision(2));
  ASSERT_TRUE(b.WaitForRevision(2));
  EXPECT_EQ(b.seen().size(), 3u);  // snapshot, delta 1, delta 2
  ASSERT_TRUE(Eventually([&] { return a.client().endpoints().count("node-b/shop/db-1") == 1; }));
  ASSERT_TRUE(Eventually([&] { return b.client().endpoints().count("node-a/shop/web-1") == 1; }));
  ASSERT_TRUE(Eventually([&] {
    auto ra = Record("node-a"), rb = Record("node-b");
    return ra && rb && ra->enforced_revision == 2 && rb->enforced_revision == 2;
  }));
  replica.Stop();
}

// Many sessions on one change (the feeds share one message among them): agents with endpoints
// in every namespace of a revision get all of it, the others only their namespaces' part; an
// endpoint report reaches every other agent and is not echoed to its own.
TEST_F(AgentServiceTest, ManyAgentsGetEachRevisionAndEndpointChangeWithTheirShare) {
  constexpr int kAgents = 12;
  std::vector<std::unique_ptr<TestAgent>> agents;
  for (int i = 0; i < kAgents; ++i) {
    std::vector<Endpoint> eps = {Ep("shop", "web-" + std::to_string(i), "10.0.0.1")};
    if (i % 2 == 0) eps.push_back(Ep("bank", "vault-" + std::to_string(i), "10.0.1.1"));
    agents.push_back(
        std::make_unique<TestAgent>(port_, MustJoin("node-" + std::to_string(i)), true, eps));
  }
  for (auto& a : agents) ASSERT_TRUE(a->WaitForRevision(0));
  ASSERT_EQ(Apply({Np("shop", "web", 80), Np("bank", "vault", 443)}), 1);
  ASSERT_EQ(Apply({Np("shop", "web", 81)}), 2);
  for (int i = 0; i < kAgents; ++i) {
    TestAgent& a = *agents[i];
    ASSERT_TRUE(a.WaitForRevision(2)) << i;
    auto seen = a.seen();
    ASSERT_EQ(seen.size(), 3u) << i;
    std::vector<std::string> want = {"networking.k8s.io/NetworkPolicy/shop/web"};
    if (i % 2 == 0) want.insert(want.begin(), "networking.k8s.io/NetworkPolicy/bank/vault");
    std::sort(seen[1].upserts.begin(), seen[1].upserts.end());
    EXPECT_EQ(seen[1].upserts, want) << "agent " << i;
    EXPECT_EQ(seen[2].upserts, std::vector<std::string>{"networking.k8s.io/NetworkPolicy/shop/web"})
        << "agent " << i;
    EXPECT_NE(
        a.client().policy().objects["networking.k8s.io/NetworkPolicy/shop/web"].json.find("81"),
        std::string::npos);
  }
  // Each agent holds every other agent's endpoints and none of its own.
  for (int i = 0; i < kAgents; ++i) {
    ASSERT_TRUE(Eventually([&] {
      return agents[i]->client().endpoints().size() ==
             static_cast<size_t>((kAgents - 1) + (kAgents / 2) - (i % 2 == 0 ? 1 : 0));
    })) << "agent "
        << i << " holds " << agents[i]->client().endpoints().size();
    EXPECT_EQ(agents[i]->client().endpoints().count("node-" + std::to_string(i) + "/shop/web-" +
                                                    std::to_string(i)),
              0u);
  }
  // One agent's change reaches the other eleven.
  ASSERT_TRUE(agents[0]->client().SetEndpoints({Ep("shop", "web-new", "10.0.0.9")}).ok());
  for (int i = 1; i < kAgents; ++i) {
    ASSERT_TRUE(Eventually([&] {
      auto m = agents[i]->client().endpoints();
      return m.count("node-0/shop/web-new") == 1 && m.count("node-0/shop/web-0") == 0 &&
             m.count("node-0/bank/vault-0") == 0;
    })) << "agent "
        << i;
  }
  EXPECT_EQ(agents[0]->client().endpoints().count("node-0/shop/web-new"), 0u);
}

TEST_F(AgentServiceTest, ASecondListenerOnTheSamePortIsRefused) {
  PolicyRepository policies(server_->store());
  TokenStore tokens(server_->store());
  KeyAndCert ca{ReadText(dir_ / "server" / "ca.key"), ReadText(dir_ / "server" / "ca.crt")};
  KeyAndCert tls{ReadText(dir_ / "server" / "server.key"),
                 ReadText(dir_ / "server" / "server.crt")};
  AgentServiceOptions o;
  o.sweep_interval = absl::ZeroDuration();
  AgentService second(server_->store(), &policies, &tokens, nullptr, ca, tls, o);
  absl::Status s = second.Start(Target());
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable) << s;
  EXPECT_NE(s.message().find("cannot listen for agents on " + Target()), std::string::npos) << s;
}

TEST_F(AgentServiceTest, AnInvalidEndpointEndsTheStreamAndNothingOfItIsStored) {
  Credentials c = MustJoin("node-1");
  grpc::SslCredentialsOptions tls;
  tls.pem_root_certs = c.ca_pem;
  tls.pem_private_key = c.key_pem;
  tls.pem_cert_chain = c.cert_pem;
  auto stub = v1::AgentService::NewStub(grpc::CreateChannel(Target(), grpc::SslCredentials(tls)));
  grpc::ClientContext ctx;
  auto stream = stub->Sync(&ctx);
  v1::AgentMessage hello;
  v1::Endpoint* good = hello.mutable_hello()->add_endpoints();
  good->set_namespace_("shop");
  good->set_name("web-1");
  good->add_ips("10.0.0.1");
  v1::Endpoint* bad = hello.mutable_hello()->add_endpoints();
  bad->set_namespace_("shop");
  bad->set_name("web-2");
  bad->add_ips("not-an-ip");
  ASSERT_TRUE(stream->Write(hello));
  // The server says why, then ends the stream; no snapshot comes.
  v1::ServerMessage m;
  ASSERT_TRUE(stream->Read(&m));
  ASSERT_TRUE(m.has_refusal());
  EXPECT_EQ(m.refusal().code(), static_cast<int>(grpc::StatusCode::INVALID_ARGUMENT));
  EXPECT_NE(m.refusal().message().find("endpoint shop/web-2: ips[0] 'not-an-ip'"),
            std::string::npos)
      << m.refusal().message();
  EXPECT_FALSE(stream->Read(&m));
  EXPECT_FALSE(stream->Finish().ok());
  auto stored = server_->store()->Get(kEndpointsPrefix, true);
  ASSERT_TRUE(stored.ok());
  EXPECT_TRUE(stored->kvs.empty());
}

TEST_F(AgentServiceTest, ASnapshotLargerThanGrpcsDefaultLimitArrives) {
  // One policy with a 5 MiB annotation: over gRPC's default 4 MiB message limit.
  std::string big =
      "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  name: web\n"
      "  namespace: shop\n  annotations: {note: " +
      std::string(5 << 20, 'x') + "}\nspec:\n  podSelector: {}\n  ingress: []\n";
  ASSERT_EQ(Apply({big}), 1);
  TestAgent agent(port_, MustJoin("node-1"), true, {Ep("shop", "web-1", "10.0.0.1")});
  ASSERT_TRUE(agent.WaitForRevision(1));
  auto objects = agent.client().policy().objects;
  ASSERT_EQ(objects.size(), 1u);
  EXPECT_GT(objects.begin()->second.json.size(), size_t{5} << 20);
}

TEST_F(AgentServiceTest, AfterAServerRestartTheAgentKeepsItsStateReconnectsAndConverges) {
  TestAgent agent(port_, MustJoin("node-1"), true, {Ep("shop", "web-1", "10.0.0.1")});
  ASSERT_EQ(Apply({Np("shop", "web", 80)}), 1);
  ASSERT_TRUE(agent.WaitForRevision(1));
  int port = port_;

  server_.reset();
  ASSERT_TRUE(Eventually([&] { return !agent.client().stats().connected; }));
  // Server away: the last state stays.
  EXPECT_EQ(agent.client().policy().revision, 1);
  EXPECT_EQ(agent.client().policy().objects.size(), 1u);
  {
    // Changes made meanwhile (another replica, or before this one is back).
    auto store = store::OpenStore("sqlite:" + (dir_ / "server" / "server.db").string());
    ASSERT_TRUE(store.ok()) << store.status();
    ASSERT_EQ(Apply(store->get(), {Np("shop", "web", 81)}), 2);
    ASSERT_EQ(Apply(store->get(), {Np("shop", "db", 5432)}), 3);
  }
  ASSERT_TRUE(Eventually([&] { return agent.client().stats().failures >= 3; }));
  EXPECT_EQ(agent.client().policy().revision, 1);

  StartServer(port);
  ASSERT_TRUE(agent.WaitForRevision(3));
  auto seen = agent.seen();
  EXPECT_TRUE(seen.back().snapshot);  // a fresh snapshot on reconnect
  EXPECT_EQ(agent.client().policy().objects.size(), 2u);
  EXPECT_EQ(agent.client().stats().sessions, 2u);
  ASSERT_TRUE(Eventually([&] {
    auto r = Record("node-1");
    return r && r->enforced_revision == 3 && r->connected;
  }));
  // And it follows new revisions again.
  ASSERT_EQ(Apply({Np("shop", "web", 82)}), 4);
  ASSERT_TRUE(agent.WaitForRevision(4));
}

TEST_F(AgentServiceTest, AnAgentAwayTurnsStaleKeepsItsEndpointsForTheGracePeriodThenLosesThem) {
  auto a = std::make_unique<TestAgent>(port_, MustJoin("node-a"), true,
                                       std::vector<Endpoint>{Ep("shop", "web-1", "10.0.0.1")});
  ASSERT_TRUE(a->WaitForRevision(0));
  TestAgent b(port_, MustJoin("node-b"), true, {Ep("shop", "db-1", "10.0.1.1")});
  ASSERT_TRUE(b.WaitForRevision(0));
  ASSERT_EQ(b.client().endpoints().count("node-a/shop/web-1"), 1u);
  Credentials a_creds = *agentlink::LoadCredentials((dir_ / "agent-node-a").string());

  a.reset();
  ASSERT_TRUE(Eventually([&] { return !Record("node-a")->connected; }));
  ASSERT_TRUE(server_->agents()->Sweep().ok());
  EXPECT_EQ(Record("node-a")->health, "ok");  // not yet past the stale timeout

  Advance(absl::Seconds(31));
  ASSERT_TRUE(server_->agents()->Sweep().ok());
  EXPECT_EQ(Record("node-a")->health, "stale");
  EXPECT_EQ(Record("node-b")->health, "ok");  // connected: never stale
  EXPECT_EQ(b.client().endpoints().count("node-a/shop/web-1"), 1u);

  Advance(absl::Minutes(5));
  ASSERT_TRUE(server_->agents()->Sweep().ok());
  ASSERT_TRUE(Eventually([&] { return b.client().endpoints().empty(); }));
  EXPECT_TRUE(Record("node-a")->endpoints_removed);
  EXPECT_EQ(Record("node-a")->endpoints, 0);
  EXPECT_EQ(Record("node-b")->health, "ok");
  EXPECT_EQ(Record("node-b")->endpoints, 1);

  // It comes back: healthy again, its endpoints with it.
  TestAgent again(port_, a_creds, true, {Ep("shop", "web-1", "10.0.0.1")});
  ASSERT_TRUE(again.WaitForRevision(0));
  ASSERT_TRUE(Eventually([&] { return b.client().endpoints().count("node-a/shop/web-1") == 1; }));
  EXPECT_EQ(Record("node-a")->health, "ok");
  EXPECT_FALSE(Record("node-a")->endpoints_removed);
}

// Identities: the server numbers each key once for the cluster.
using Pins = std::map<std::string, uint32_t>;

TEST_F(AgentServiceTest, TwoAgentsWithOverlappingKeysGetTheSameNumbers) {
  // a's keys are set before it connects (they follow its Hello), b's once it is connected.
  TestAgent a(port_, MustJoin("node-a"), true, {Ep("shop", "web-1", "10.0.0.1")},
              std::set<std::string>{"app=web", "app=db"});
  TestAgent b(port_, MustJoin("node-b"), true, {Ep("shop", "db-1", "10.0.1.1")});
  ASSERT_TRUE(a.WaitFor([&] { return a.pins_.size() == 2; }));
  ASSERT_TRUE(b.WaitForRevision(0));
  ASSERT_TRUE(b.client().SetIdentityKeys({"app=db", "app=cache"}).ok());
  ASSERT_TRUE(b.WaitFor([&] { return b.pins_.size() == 2; }));
  EXPECT_EQ(a.client().identity_pins(), (Pins{{"app=db", 256}, {"app=web", 257}}));
  EXPECT_EQ(b.client().identity_pins(), (Pins{{"app=cache", 258}, {"app=db", 256}}));

  // GET /api/v1/identities (and the same through `bulkhead identities -o json`).
  auto rest = Rest();
  ASSERT_TRUE(rest);
  auto r = rest->Get("/api/v1/identities");
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->status, 200) << r->body.dump();
  auto ids = r->body.at("identities");
  ASSERT_EQ(ids.size(), 3u);
  EXPECT_EQ(ids[0].at("number"), 256);
  EXPECT_EQ(ids[0].at("key"), "app=db");
  EXPECT_EQ(ids[0].at("holders"), nlohmann::json::array({"node-a", "node-b"}));
  EXPECT_EQ(ids[2].at("holders"), nlohmann::json::array({"node-b"}));
  auto [rc, out] = Cli({"identities"});
  ASSERT_EQ(rc, 0) << out;
  EXPECT_EQ(out,
            "NUMBER  HOLDERS        KEY\n"
            "256     node-a,node-b  app=db\n"
            "257     node-a         app=web\n"
            "258     node-b         app=cache\n");
  auto [rc_json, json_out] = Cli({"identities", "-o", "json"});
  ASSERT_EQ(rc_json, 0);
  EXPECT_EQ(nlohmann::json::parse(json_out), r->body);

  // a drops app=db (b keeps it) and adds app=api: the lowest free number.
  ASSERT_TRUE(a.client().SetIdentityKeys({"app=web", "app=api"}).ok());
  ASSERT_TRUE(a.WaitFor([&] { return a.pins_.count("app=api") == 1; }));
  EXPECT_EQ(a.client().identity_pins(), (Pins{{"app=api", 259}, {"app=web", 257}}));
  // b drops app=cache: freed, and the next new key gets its number.
  ASSERT_TRUE(b.client().SetIdentityKeys({"app=db"}).ok());
  ASSERT_TRUE(b.WaitFor([&] { return b.pins_.size() == 1; }));
  ASSERT_TRUE(b.client().SetIdentityKeys({"app=db", "app=queue"}).ok());
  ASSERT_TRUE(b.WaitFor([&] { return b.pins_.size() == 2; }));
  EXPECT_EQ(b.client().identity_pins(), (Pins{{"app=db", 256}, {"app=queue", 258}}));

  // An invalid key is refused by the library: nothing sent, the pins stay.
  absl::Status bad = b.client().SetIdentityKeys({"app=db", ""});
  EXPECT_EQ(bad.code(), absl::StatusCode::kInvalidArgument) << bad;
  EXPECT_EQ(b.client().identity_pins().size(), 2u);
}

TEST_F(AgentServiceTest, IdentitiesOfAnAgentAwayStayForTheGracePeriodThenAreFreed) {
  auto a = std::make_unique<TestAgent>(port_, MustJoin("node-a"), true,
                                       std::vector<Endpoint>{Ep("shop", "web-1", "10.0.0.1")},
                                       std::set<std::string>{"app=web", "app=shared"});
  TestAgent b(port_, MustJoin("node-b"), true, {Ep("shop", "db-1", "10.0.1.1")},
              std::set<std::string>{"app=db", "app=shared"});
  ASSERT_TRUE(a->WaitFor([&] { return a->pins_.size() == 2; }));
  ASSERT_TRUE(b.WaitFor([&] { return b.pins_.size() == 2; }));
  Pins a_pins = a->client().identity_pins();
  Credentials a_creds = *agentlink::LoadCredentials((dir_ / "agent-node-a").string());
  ClusterIdentities ids(server_->store());
  auto holders = [&] {
    std::map<std::string, std::set<std::string>> out;
    auto list = ids.List();
    EXPECT_TRUE(list.ok()) << list.status();
    for (const IdentityRecord& r : list.ok() ? *list : std::vector<IdentityRecord>{}) {
      out[r.key] = r.holders;
    }
    return out;
  };

  a.reset();
  ASSERT_TRUE(Eventually([&] { return !Record("node-a")->connected; }));
  Advance(absl::Seconds(31));
  ASSERT_TRUE(server_->agents()->Sweep().ok());
  EXPECT_EQ(Record("node-a")->health, "stale");
  // Stale but within its grace: it keeps its keys.
  EXPECT_EQ(holders()["app=web"], (std::set<std::string>{"node-a"}));

  Advance(absl::Minutes(5));
  ASSERT_TRUE(server_->agents()->Sweep().ok());
  auto after = holders();
  EXPECT_EQ(after.count("app=web"), 0u);  // freed with its endpoints
  EXPECT_EQ(after["app=shared"], (std::set<std::string>{"node-b"}));
  EXPECT_EQ(b.client().identity_pins().at("app=shared"), a_pins.at("app=shared"));

  // It comes back and holds its keys again; app=shared keeps its number throughout.
  TestAgent again(port_, a_creds, true, {Ep("shop", "web-1", "10.0.0.1")},
                  std::set<std::string>{"app=web", "app=shared"});
  ASSERT_TRUE(again.WaitFor([&] { return again.pins_.size() == 2; }));
  EXPECT_EQ(again.client().identity_pins().at("app=shared"), a_pins.at("app=shared"));
  EXPECT_EQ(holders()["app=web"], (std::set<std::string>{"node-a"}));
}

TEST_F(AgentServiceTest, ANumberChangedInTheStoreIsSentAgainToItsHolders) {
  TestAgent a(port_, MustJoin("node-a"), true, {Ep("shop", "web-1", "10.0.0.1")},
              std::set<std::string>{"app=web", "app=db"});
  ASSERT_TRUE(a.WaitFor([&] { return a.pins_.size() == 2; }));
  ASSERT_EQ(a.client().identity_pins().at("app=db"), 256u);
  // By hand (no server does this): app=db's records go and its number names another key.
  // The session sees its key gone, holds its keys again and sends the new numbers.
  auto t = server_->store()->Txn(
      {}, {store::Op::Delete(IdentityKeyRecordKey("app=db")),
           store::Op::Put(IdentityNumberRecordKey(256), R"({"key":"intruder"})")});
  ASSERT_TRUE(t.ok() && t->succeeded);
  ASSERT_TRUE(a.WaitFor([&] { return a.pins_.count("app=db") && a.pins_.at("app=db") != 256; }));
  EXPECT_EQ(a.client().identity_pins(), (Pins{{"app=db", 258}, {"app=web", 257}}));
}

TEST_F(AgentServiceTest, MoreKeysThanFreeNumbersAreRefusedAndNothingIsAllocated) {
  // Restart with a narrow range. The REST listener must be up first: RestServer::Stop right
  // after Start can lose httplib's stop (it hung once here).
  auto rest = Rest();
  ASSERT_TRUE(rest);
  ASSERT_TRUE(rest->Get("/api/v1/status").ok());
  server_.reset();
  identity_range_.first = 256;
  identity_range_.last = 258;  // three numbers
  StartServer(0);
  TestAgent a(port_, MustJoin("node-a"), true, {Ep("shop", "web-1", "10.0.0.1")},
              std::set<std::string>{"app=web", "app=db"});
  ASSERT_TRUE(a.WaitFor([&] { return a.pins_.size() == 2; }));
  TestAgent b(port_, MustJoin("node-b"), true, {Ep("shop", "db-1", "10.0.1.1")},
              std::set<std::string>{"app=db", "app=x", "app=y"});
  // b's stream ends with the refusal (and again after each reconnect): it has no pins.
  ASSERT_TRUE(Eventually([&] {
    return b.client().stats().last_error.code() == absl::StatusCode::kResourceExhausted;
  }));
  EXPECT_NE(b.client().stats().last_error.message().find(
                "node node-b needs 2 new identities but only 1 of 3 numbers (256-258) are free"),
            std::string::npos)
      << b.client().stats().last_error;
  EXPECT_TRUE(b.client().identity_pins().empty());
  auto list = ClusterIdentities(server_->store()).List();
  ASSERT_TRUE(list.ok());
  ASSERT_EQ(list->size(), 2u);  // a's two keys; b holds nothing, not even app=db
  for (const IdentityRecord& r : *list) EXPECT_EQ(r.holders, (std::set<std::string>{"node-a"}));
  // With fewer keys it fits.
  ASSERT_TRUE(b.client().SetIdentityKeys({"app=db", "app=x"}).ok());
  ASSERT_TRUE(b.WaitFor([&] { return b.pins_.size() == 2; }));
  EXPECT_EQ(b.client().identity_pins(), (Pins{{"app=db", 256}, {"app=x", 258}}));
}

TEST_F(AgentServiceTest, AnInvalidIdentityKeyEndsTheStreamWithARefusal) {
  Credentials c = MustJoin("node-1");
  grpc::SslCredentialsOptions tls;
  tls.pem_root_certs = c.ca_pem;
  tls.pem_private_key = c.key_pem;
  tls.pem_cert_chain = c.cert_pem;
  auto stub = v1::AgentService::NewStub(grpc::CreateChannel(Target(), grpc::SslCredentials(tls)));
  grpc::ClientContext ctx;
  auto stream = stub->Sync(&ctx);
  v1::AgentMessage hello;
  hello.mutable_hello();
  ASSERT_TRUE(stream->Write(hello));
  v1::AgentMessage keys;
  keys.mutable_identity_keys()->add_keys("app=web");
  keys.mutable_identity_keys()->add_keys("");
  ASSERT_TRUE(stream->Write(keys));
  v1::ServerMessage m;
  bool refused = false;
  while (stream->Read(&m)) {
    if (!m.has_refusal()) continue;
    refused = true;
    EXPECT_EQ(m.refusal().code(), static_cast<int>(grpc::StatusCode::INVALID_ARGUMENT));
    EXPECT_NE(m.refusal().message().find("is empty"), std::string::npos) << m.refusal().message();
  }
  EXPECT_TRUE(refused);
  stream->Finish();
  auto list = ClusterIdentities(server_->store()).List();
  ASSERT_TRUE(list.ok());
  EXPECT_TRUE(list->empty());
}

}  // namespace
}  // namespace bulkhead::server
