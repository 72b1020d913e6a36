// The real bulkhead-cni binary (environment, stdin, stdout, exit code) against an agent loop
// on its real unix socket, over a FakeDatapath: ADD, CHECK, a retried ADD, a refused ADD,
// DEL twice, and the codes it gives when the agent is gone.
#include <gtest/gtest.h>
#include <sys/eventfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <thread>

#include "agent/agent.h"
#include "agent/api.h"
#include "agent/client.h"
#include "datapath/fake_datapath.h"

namespace bulkhead {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

struct Result {
  int code = -1;
  json out;  // stdout, parsed (null when empty)
  std::string raw;
};

class PluginAgentTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("bh-cni-" + std::to_string(getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_ / "policies");
    std::ofstream(dir_ / "inventory.yaml") << R"(apiVersion: bulkhead.io/v1alpha1
kind: Inventory
metadata: {name: cni}
spec:
  namespaces:
  - {name: shop, labels: {team: shop}}
)";
    std::ofstream(dir_ / "policies/shop.yaml") << R"(apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: api-from-web, namespace: shop}
spec:
  podSelector: {matchLabels: {app: api}}
  ingress:
  - from: [{podSelector: {matchLabels: {app: web}}}]
    ports: [{port: 80}]
)";
    options_ = {(dir_ / "policies").string(), (dir_ / "inventory.yaml").string(),
                (dir_ / "state").string(), "node-1"};
    socket_ = (dir_ / "agent.sock").string();
    agent_ = std::make_unique<agent::Agent>(options_, dp_,
                                            [](const std::string& n) -> absl::StatusOr<uint32_t> {
                                              if (n == "veth-web") return 31u;
                                              if (n == "veth-api") return 32u;
                                              return absl::NotFoundError("no interface " + n);
                                            });
    ASSERT_TRUE(agent_->Start().ok());
    stop_fd_ = eventfd(0, EFD_CLOEXEC);
    ASSERT_GE(stop_fd_, 0);
    agent::RunOptions ro;
    ro.socket_path = socket_;
    ro.stop_fd = stop_fd_;
    ro.handle_signals = false;
    loop_ = std::thread([this, ro] { rc_ = agent::RunAgentLoop(*agent_, options_, ro); });
    for (int i = 0; i < 500 && !agent::CallAgent(socket_, {{"method", "status"}}).ok(); ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  }
  void TearDown() override {
    StopAgent();
    close(stop_fd_);
    fs::remove_all(dir_);
  }
  void StopAgent() {
    if (!loop_.joinable()) return;
    uint64_t one = 1;
    ASSERT_EQ(write(stop_fd_, &one, sizeof(one)), 8);
    loop_.join();
    EXPECT_EQ(rc_, 0);
  }

  // ptp-style prevResult: one interface without a sandbox (the host veth), so the plugin
  // needs no kernel to tell it from a bridge.
  static json Prev(const std::string& veth, const std::string& ip) {
    return {{"cniVersion", "1.0.0"},
            {"interfaces",
             json::array({{{"name", veth}}, {{"name", "eth0"}, {"sandbox", "/var/run/netns/x"}}})},
            {"ips", json::array({{{"address", ip + "/32"}, {"interface", 1}}})}};
  }

  Result Plugin(const std::string& command, const std::string& container, const std::string& pod,
                const std::string& app, const json& prev) {
    json conf = {
        {"cniVersion", "1.0.0"},
        {"name", "podnet"},
        {"type", "bulkhead-cni"},
        {"agentSocket", socket_},
        {"args", {{"cni", {{"labels", json::array({{{"key", "app"}, {"value", app}}})}}}}}};
    if (!prev.is_null()) conf["prevResult"] = prev;
    const fs::path in = dir_ / "conf.json";
    std::ofstream(in) << conf.dump();
    const std::string cmd = "env -i CNI_COMMAND=" + command + " CNI_CONTAINERID=" + container +
                            " CNI_NETNS=/var/run/netns/" + pod +
                            " CNI_IFNAME=eth0 CNI_PATH=/usr/lib/cni"
                            " 'CNI_ARGS=IgnoreUnknown=1;K8S_POD_NAMESPACE=shop;K8S_POD_NAME=" +
                            pod + "' " + BULKHEAD_CNI_BINARY + " < " + in.string();
    Result r;
    FILE* p = popen(cmd.c_str(), "r");
    if (p == nullptr) return r;
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof(buf), p)) > 0) r.raw.append(buf, n);
    int st = pclose(p);
    r.code = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    r.out = r.raw.empty() ? json() : json::parse(r.raw, nullptr, false);
    return r;
  }

  fs::path dir_;
  agent::AgentOptions options_;
  std::string socket_;
  datapath::FakeDatapath dp_;
  std::unique_ptr<agent::Agent> agent_;
  int stop_fd_ = -1;
  std::thread loop_;
  int rc_ = -1;
};

TEST_F(PluginAgentTest, ChainContractEndToEnd) {
  const json web = Prev("veth-web", "10.66.0.2");
  Result r = Plugin("ADD", "c1", "web-1", "web", web);
  ASSERT_EQ(r.code, 0) << r.raw;
  EXPECT_EQ(r.out, web) << "ADD passes prevResult on unchanged";
  r = Plugin("ADD", "c2", "api-1", "api", Prev("veth-api", "10.66.0.3"));
  ASSERT_EQ(r.code, 0) << r.raw;

  r = Plugin("CHECK", "c1", "web-1", "web", web);
  EXPECT_EQ(r.code, 0) << r.raw;
  EXPECT_TRUE(r.raw.empty()) << r.raw;
  // CHECK with other labels than registered fails.
  r = Plugin("CHECK", "c1", "web-1", "db", web);
  EXPECT_EQ(r.code, 1);
  EXPECT_EQ(r.out.value("code", 0), 101) << r.raw;

  // A retried ADD is fine; another pod with the same address is refused.
  EXPECT_EQ(Plugin("ADD", "c1", "web-1", "web", web).code, 0);
  r = Plugin("ADD", "c3", "web-2", "web", Prev("veth-new", "10.66.0.2"));
  EXPECT_EQ(r.code, 1);
  EXPECT_EQ(r.out.value("code", 0), 100) << r.raw;
  EXPECT_NE(
      r.out.value("details", "").find("address 10.66.0.2 is used by registered endpoint c1/eth0"),
      std::string::npos)
      << r.raw;

  auto ex = agent::CallAgent(
      socket_, {{"method", "explain"}, {"from", "shop/web-1"}, {"to", "shop/api-1"}, {"port", 80}});
  ASSERT_TRUE(ex.ok()) << ex.status();
  EXPECT_EQ(ex->value("verdict", ""), "allow");
  ex = agent::CallAgent(
      socket_, {{"method", "explain"}, {"from", "shop/api-1"}, {"to", "shop/web-1"}, {"port", 80}});
  ASSERT_TRUE(ex.ok()) << ex.status();
  EXPECT_EQ(ex->value("verdict", ""), "allow") << "web-1 is not isolated";

  // DEL twice (the runtime may repeat it), and CHECK after it fails.
  r = Plugin("DEL", "c1", "web-1", "web", json());
  EXPECT_EQ(r.code, 0) << r.raw;
  r = Plugin("DEL", "c1", "web-1", "web", json());
  EXPECT_EQ(r.code, 0) << r.raw;
  r = Plugin("CHECK", "c1", "web-1", "web", web);
  EXPECT_EQ(r.code, 1);
  EXPECT_EQ(r.out.value("code", 0), 101) << r.raw;
  auto eps = agent::CallAgent(socket_, {{"method", "endpoints"}});
  ASSERT_TRUE(eps.ok());
  ASSERT_EQ(eps->size(), 1u) << eps->dump();
  EXPECT_EQ((*eps)[0].value("workload", ""), "shop/api-1");
  EXPECT_EQ((*eps)[0].value("source", ""), "cni");

  // The agent is gone: ADD and DEL both ask to be retried.
  StopAgent();
  r = Plugin("ADD", "c4", "web-3", "web", Prev("veth-web", "10.66.0.4"));
  EXPECT_EQ(r.code, 1);
  EXPECT_EQ(r.out.value("code", 0), 11) << r.raw;
  r = Plugin("DEL", "c2", "api-1", "api", json());
  EXPECT_EQ(r.code, 1);
  EXPECT_EQ(r.out.value("code", 0), 11) << r.raw;
  EXPECT_NE(r.out.value("details", "").find("cannot reach the agent"), std::string::npos) << r.raw;

  // The kernel (the fake) holds exactly the remaining endpoint.
  auto kernel = dp_.ListEndpoints();
  ASSERT_TRUE(kernel.ok());
  ASSERT_EQ(kernel->size(), 1u);
  EXPECT_EQ(kernel.value()[0].ifindex, 32u);
}

TEST_F(PluginAgentTest, VersionNeedsNoAgent) {
  StopAgent();
  Result r = Plugin("VERSION", "", "x", "x", json());
  EXPECT_EQ(r.code, 0) << r.raw;
  EXPECT_EQ(r.out.value("supportedVersions", json()), json::parse(R"(["0.4.0", "1.0.0"])"));
}

}  // namespace
}  // namespace bulkhead
