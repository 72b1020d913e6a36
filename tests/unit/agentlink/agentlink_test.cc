// The agent client library on its own: server addresses, the backoff schedule, and CA
// discovery against fake servers that forge the CA (a man in the middle) or vouch for it
// with the right key.
#include "agentlink/agentlink.h"

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include "bulkhead/v1/agent.grpc.pb.h"
#include "server/agent_trust.h"
#include "server/pki.h"

namespace bulkhead::agentlink {
namespace {

TEST(ServerTargetTest, AcceptsHostPortWithOrWithoutScheme) {
  EXPECT_EQ(*ServerTarget("10.0.0.1:8444"), "10.0.0.1:8444");
  EXPECT_EQ(*ServerTarget("grpcs://server.example:8444"), "server.example:8444");
  EXPECT_EQ(*ServerTarget("https://[::1]:8444/"), "[::1]:8444");
  for (const char* bad : {"", "server", "server:", ":8444", "server:http"}) {
    auto t = ServerTarget(bad);
    EXPECT_EQ(t.status().code(), absl::StatusCode::kInvalidArgument) << bad;
  }
}

TEST(BackoffTest, DoublesUpToTheCapWithJitterAroundIt) {
  absl::Duration initial = absl::Milliseconds(100), max = absl::Seconds(2);
  EXPECT_EQ(Backoff(1, initial, max, 0.0, 0.7), absl::Milliseconds(100));
  EXPECT_EQ(Backoff(2, initial, max, 0.0, 0.7), absl::Milliseconds(200));
  EXPECT_EQ(Backoff(5, initial, max, 0.0, 0.7), absl::Milliseconds(1600));
  EXPECT_EQ(Backoff(6, initial, max, 0.0, 0.7), absl::Seconds(2));
  EXPECT_EQ(Backoff(1000, initial, max, 0.0, 0.7), absl::Seconds(2));
  EXPECT_EQ(Backoff(6, initial, max, 0.25, 0.0), absl::Milliseconds(1500));
  EXPECT_EQ(Backoff(6, initial, max, 0.25, 1.0), absl::Milliseconds(2500));
  EXPECT_EQ(Backoff(6, initial, max, 0.25, 0.5), absl::Seconds(2));
}

TEST(ProcessUsageTest, ReportsThisProcess) {
  Usage u = ProcessUsage();
  EXPECT_GT(u.rss_bytes, 0u);
  EXPECT_GE(u.cpu_seconds, 0.0);
}

// A server that answers Discover with `ca_pem` and a MAC made with `mac_key`.
class FakeDiscovery final : public v1::AgentService::Service {
 public:
  FakeDiscovery(std::string ca_pem, std::string mac_key)
      : ca_pem_(std::move(ca_pem)), mac_key_(std::move(mac_key)) {}
  grpc::Status Discover(grpc::ServerContext*, const v1::DiscoverRequest* req,
                        v1::DiscoverResponse* resp) override {
    token_id = req->token_id();
    resp->set_ca_pem(ca_pem_);
    resp->set_ca_mac(server::CaMac(mac_key_, ca_pem_));
    return grpc::Status::OK;
  }
  std::string token_id;

 private:
  std::string ca_pem_;
  std::string mac_key_;
};

class DiscoveryTest : public ::testing::Test {
 protected:
  void Serve(const std::string& mac_key) {
    auto ca = server::CreateCa("fake CA", absl::Hours(1));
    ASSERT_TRUE(ca.ok());
    ca_pem_ = ca->cert_pem;
    auto tls =
        server::IssueCert(*ca, "fake", {"127.0.0.1"}, server::CertUsage::kServer, absl::Hours(1));
    ASSERT_TRUE(tls.ok());
    grpc::SslServerCredentialsOptions o;
    o.pem_key_cert_pairs.push_back({tls->key_pem, tls->cert_pem});
    service_ = std::make_unique<FakeDiscovery>(ca_pem_, mac_key);
    grpc::ServerBuilder b;
    b.AddListeningPort("127.0.0.1:0", grpc::SslServerCredentials(o), &port_);
    b.RegisterService(service_.get());
    server_ = b.BuildAndStart();
    ASSERT_NE(server_, nullptr);
  }
  void TearDown() override {
    if (server_) server_->Shutdown();
  }
  std::string Target() const { return "127.0.0.1:" + std::to_string(port_); }

  const std::string token_ = "bhj_0011223344556677." + std::string(64, 'c');
  std::string ca_pem_;
  std::unique_ptr<FakeDiscovery> service_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
};

TEST_F(DiscoveryTest, ACaVouchedForWithTheTokensHashIsAccepted) {
  Serve(server::Sha256Hex(std::string(64, 'c')));
  auto ca = DiscoverCa(Target(), token_, absl::Seconds(30));
  ASSERT_TRUE(ca.ok()) << ca.status();
  EXPECT_EQ(*ca, ca_pem_);
  EXPECT_EQ(service_->token_id, "0011223344556677");  // the secret never leaves the agent
}

TEST_F(DiscoveryTest, AManInTheMiddleWithoutTheTokenCannotForgeTheCa) {
  // It knows the token id (sent in the clear to it) but not the secret or its hash.
  Serve(server::Sha256Hex("a guess"));
  auto ca = DiscoverCa(Target(), token_, absl::Seconds(30));
  ASSERT_FALSE(ca.ok());
  EXPECT_EQ(ca.status().code(), absl::StatusCode::kPermissionDenied) << ca.status();
}

TEST(DiscoveryErrorsTest, MalformedTokensAndUnreachableServers) {
  EXPECT_EQ(DiscoverCa("127.0.0.1:1", "bh_x.y", absl::Seconds(5)).status().code(),
            absl::StatusCode::kInvalidArgument);
  auto down =
      DiscoverCa("127.0.0.1:1", "bhj_0011223344556677." + std::string(64, 'c'), absl::Seconds(5));
  EXPECT_EQ(down.status().code(), absl::StatusCode::kUnavailable) << down.status();
}

TEST(LoadCredentialsTest, AnEmptyStateDirIsNotFound) {
  auto c = LoadCredentials(::testing::TempDir() + "/no-such-agent-state");
  EXPECT_EQ(c.status().code(), absl::StatusCode::kNotFound);
}

TEST(SyncClientTest, InvalidEndpointsAreRefusedBeforeAnythingIsSent) {
  SyncClient client(SyncOptions{}, SyncCallbacks{});  // never started: nothing is sent
  Endpoint good;
  good.namespace_name = "shop";
  good.name = "web-1";
  good.ips = {"10.0.0.1", "fd00::1"};
  good.named_ports = {{"http", 8080, "TCP"}};
  EXPECT_TRUE(client.SetEndpoints({good}).ok());

  Endpoint bad_ip = good;
  bad_ip.ips = {"10.0.0.1", "10.0.0.300"};
  absl::Status s = client.SetEndpoints({bad_ip});
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("endpoint shop/web-1: ips[1] '10.0.0.300'"), std::string::npos) << s;

  Endpoint bad_port = good;
  bad_port.named_ports = {{"http", 0, "TCP"}};
  EXPECT_NE(client.SetEndpoints({bad_port}).message().find("namedPorts[0]"), std::string::npos);
  Endpoint slash = good;
  slash.name = "a/b";
  EXPECT_NE(client.SetEndpoints({slash}).message().find("name must be"), std::string::npos);
  EXPECT_NE(client.SetEndpoints({good, good}).message().find("listed twice"), std::string::npos);
}

TEST(SyncClientTest, InvalidIdentityKeysAreRefusedBeforeAnythingIsSent) {
  SyncClient client(SyncOptions{}, SyncCallbacks{});  // never started: nothing is sent
  EXPECT_TRUE(client.SetIdentityKeys({"app=web", "ns:team=shop,app=db,sa:default"}).ok());
  EXPECT_TRUE(client.SetIdentityKeys({}).ok());  // an agent without keys holds none
  absl::Status empty = client.SetIdentityKeys({"app=web", ""});
  EXPECT_EQ(empty.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(empty.message().find("keys[0] is empty"), std::string::npos) << empty;
  absl::Status big = client.SetIdentityKeys({std::string(server::kMaxIdentityKeyBytes + 1, 'a')});
  EXPECT_EQ(big.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(big.message().find("8193 bytes"), std::string::npos) << big;
  EXPECT_EQ(client.SetIdentityKeys({"bad\xff"}).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(client.identity_pins().empty());  // nothing from a server yet
}

}  // namespace
}  // namespace bulkhead::agentlink
