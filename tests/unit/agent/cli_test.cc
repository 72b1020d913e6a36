// The `bulkhead` binary's agent client commands (agent status, endpoints, explain, observe)
// against an agent loop over a FakeDatapath, and their errors when no agent answers.
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

namespace bulkhead::agent {
namespace {

namespace fs = std::filesystem;

struct Result {
  int code = -1;
  std::string out;  // stdout and stderr
};

Result Bulkhead(const std::string& args) {
  Result r;
  const std::string cmd = std::string(BULKHEAD_BINARY) + " " + args + " 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  if (p == nullptr) return r;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), p)) > 0) r.out.append(buf, n);
  int st = pclose(p);
  r.code = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  return r;
}

TEST(AgentCliTest, ClientCommandsFailClearlyWithoutAnAgent) {
  const std::string sock = "--socket /nonexistent-bulkhead/agent.sock";
  Result r = Bulkhead("agent status " + sock);
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.out.find("cannot reach the agent at /nonexistent-bulkhead/agent.sock"),
            std::string::npos)
      << r.out;
  r = Bulkhead("endpoints " + sock);
  EXPECT_EQ(r.code, 1);
  r = Bulkhead("explain --from a/b --to c/d --port 80 " + sock);
  EXPECT_EQ(r.code, 1);
  r = Bulkhead("observe " + sock);
  EXPECT_EQ(r.code, 1);
}

TEST(AgentCliTest, BadFlagsAreInvalidInput) {
  Result r = Bulkhead("agent");
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.out.find("--policies and --inventory are required"), std::string::npos) << r.out;
  EXPECT_EQ(Bulkhead("explain --from a/b --to c/d").code, 2);
  EXPECT_EQ(Bulkhead("observe --verdict maybe").code, 2);
  EXPECT_EQ(Bulkhead("agent status -o yaml").code, 2);
}

TEST(AgentCliTest, ClientCommandsTalkToARunningAgent) {
  const fs::path dir = fs::temp_directory_path() / ("bh-cli-" + std::to_string(getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir / "policies");
  std::ofstream(dir / "inventory.yaml") << R"(apiVersion: bulkhead.io/v1alpha1
kind: Inventory
metadata: {name: lab}
spec:
  workloads:
  - {name: a, labels: {app: a}, ips: [10.8.0.1], hostInterface: va}
  - {name: b, labels: {app: b}, ips: [10.8.0.2], hostInterface: vb, mode: audit}
)";
  std::ofstream(dir / "policies/b.yaml") << R"(apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: b-in, namespace: default}
spec:
  podSelector: {matchLabels: {app: b}}
  ingress:
  - from: [{podSelector: {matchLabels: {app: a}}}]
    ports: [{port: 80}]
)";
  AgentOptions options{(dir / "policies").string(), (dir / "inventory.yaml").string(), "",
                       /*node=*/""};
  datapath::FakeDatapath dp;
  Agent agent(options, dp, [](const std::string& n) -> absl::StatusOr<uint32_t> {
    return n == "va" ? 21u : 22u;
  });
  ASSERT_TRUE(agent.Start().ok());
  const std::string socket = (dir / "api.sock").string();
  int stop = eventfd(0, EFD_CLOEXEC);
  ASSERT_GE(stop, 0);
  RunOptions ro;
  ro.socket_path = socket;
  ro.stop_fd = stop;
  ro.handle_signals = false;
  std::thread loop([&] { RunAgentLoop(agent, options, ro); });
  for (int i = 0; i < 500 && !CallAgent(socket, {{"method", "status"}}).ok(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  const std::string sock = " --socket " + socket;

  Result r = Bulkhead("agent status -o json" + sock);
  EXPECT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("\"ready\": true"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("\"revision\": \"1-"), std::string::npos) << r.out;

  r = Bulkhead("endpoints" + sock);
  EXPECT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("WORKLOAD"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("default/b"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("audit"), std::string::npos) << r.out;

  r = Bulkhead("explain --from default/a --to default/b --port 80" + sock);
  EXPECT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("default/a -> default/b tcp/80: allow"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("by NetworkPolicy default/b-in ingress[0]"), std::string::npos) << r.out;
  // b is in audit mode: policy denies port 81, the kernel lets it pass as AUDIT.
  r = Bulkhead("explain --from default/a --to default/b --port 81 -o json" + sock);
  EXPECT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("\"verdict\": \"audit\""), std::string::npos) << r.out;

  uint64_t one = 1;
  EXPECT_EQ(write(stop, &one, sizeof(one)), 8);
  loop.join();
  close(stop);
  fs::remove_all(dir);
}

}  // namespace
}  // namespace bulkhead::agent
