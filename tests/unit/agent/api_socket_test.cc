// The agent loop end to end without a kernel: the real unix-socket API (client and server),
// the inotify watch and the event stream, over a FakeDatapath behind a lock.
#include <gtest/gtest.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <thread>

#include "agent/agent.h"
#include "agent/api.h"
#include "agent/client.h"
#include "datapath/fake_datapath.h"

namespace bulkhead::agent {
namespace {

namespace fs = std::filesystem;

// FakeDatapath is single-threaded; the loop and the test thread share it through this lock.
class LockedDatapath final : public datapath::IDatapath {
 public:
  template <typename F>
  auto With(F f) {
    std::lock_guard<std::mutex> l(mu_);
    return f(fake_);
  }
  absl::Status UpsertEndpoint(const datapath::Endpoint& e) override {
    return With([&](auto& d) { return d.UpsertEndpoint(e); });
  }
  absl::Status DeleteEndpoint(uint32_t i) override {
    return With([&](auto& d) { return d.DeleteEndpoint(i); });
  }
  absl::StatusOr<std::vector<datapath::Endpoint>> ListEndpoints() override {
    return With([&](auto& d) { return d.ListEndpoints(); });
  }
  absl::Status SwitchPolicy(uint32_t i, uint32_t t, uint32_t g) override {
    return With([&](auto& d) { return d.SwitchPolicy(i, t, g); });
  }
  absl::Status Attach(uint32_t i) override {
    return With([&](auto& d) { return d.Attach(i); });
  }
  absl::Status Detach(uint32_t i) override {
    return With([&](auto& d) { return d.Detach(i); });
  }
  absl::StatusOr<std::vector<uint32_t>> ListAttached() override {
    return With([&](auto& d) { return d.ListAttached(); });
  }
  absl::Status UpsertIpcache(
      const std::vector<std::pair<bulkhead_ipcache_key, bulkhead_ipcache_value>>& e) override {
    return With([&](auto& d) { return d.UpsertIpcache(e); });
  }
  absl::Status DeleteIpcache(const std::vector<bulkhead_ipcache_key>& k) override {
    return With([&](auto& d) { return d.DeleteIpcache(k); });
  }
  absl::Status WritePolicyTables(const datapath::PolicyTables& t) override {
    return With([&](auto& d) { return d.WritePolicyTables(t); });
  }
  absl::Status DeletePolicyTables(const std::vector<uint32_t>& t) override {
    return With([&](auto& d) { return d.DeletePolicyTables(t); });
  }
  absl::StatusOr<std::vector<uint32_t>> ListPolicyTables() override {
    return With([&](auto& d) { return d.ListPolicyTables(); });
  }
  absl::StatusOr<datapath::FlowDecision> Explain(const datapath::FlowQuery& q) override {
    return With([&](auto& d) { return d.Explain(q); });
  }
  absl::Status SetSettings(const bh_settings& s) override {
    return With([&](auto& d) { return d.SetSettings(s); });
  }
  absl::StatusOr<datapath::Counters> ReadCounters() override {
    return With([&](auto& d) { return d.ReadCounters(); });
  }
  absl::StatusOr<datapath::ConntrackEntries> ListConntrack() override {
    return With([&](auto& d) { return d.ListConntrack(); });
  }
  absl::StatusOr<size_t> PollEvents(int timeout_ms, const datapath::EventCallback& cb) override {
    // Take the events under the lock, deliver them outside it.
    std::vector<bh_flow_event> events;
    auto n = With([&](auto& d) {
      return d.PollEvents(timeout_ms, [&](const bh_flow_event& e) { events.push_back(e); });
    });
    for (const auto& e : events) cb(e);
    return n;
  }
  int EventsFd() const override { return fake_.EventsFd(); }  // fixed for the fake's life
  std::vector<datapath::MapUsage> MapUsages() const override {
    std::lock_guard<std::mutex> l(mu_);
    return fake_.MapUsages();
  }

 private:
  mutable std::mutex mu_;
  datapath::FakeDatapath fake_;
};

class AgentLoopTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("bh-loop-" + std::to_string(getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_ / "policies");
    std::ofstream(dir_ / "inventory.yaml") << R"(apiVersion: bulkhead.io/v1alpha1
kind: Inventory
metadata: {name: lab}
spec:
  workloads:
  - {name: a, labels: {app: a}, ips: [10.8.0.1], hostInterface: va}
  - {name: b, labels: {app: b}, ips: [10.8.0.2], hostInterface: vb}
)";
    std::ofstream(dir_ / "policies/b.yaml") << R"(apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: b-in, namespace: default}
spec:
  podSelector: {matchLabels: {app: b}}
  ingress:
  - from: [{podSelector: {matchLabels: {app: a}}}]
    ports: [{port: 80}]
)";
    options_ = {(dir_ / "policies").string(), (dir_ / "inventory.yaml").string(),
                (dir_ / "state").string(), /*node=*/""};
    socket_ = (dir_ / "api.sock").string();
    agent_ = std::make_unique<Agent>(
        options_, dp_,
        [](const std::string& n) -> absl::StatusOr<uint32_t> { return n == "va" ? 21u : 22u; });
    ASSERT_TRUE(agent_->Start().ok());
    stop_fd_ = eventfd(0, EFD_CLOEXEC);
    ASSERT_GE(stop_fd_, 0);
    RunOptions ro;
    ro.socket_path = socket_;
    ro.stop_fd = stop_fd_;
    ro.handle_signals = false;
    loop_ = std::thread([this, ro] { rc_ = RunAgentLoop(*agent_, options_, ro); });
    // The socket exists once the loop listens.
    for (int i = 0; i < 500 && !CallAgent(socket_, {{"method", "status"}}).ok(); ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  }
  void TearDown() override {
    uint64_t one = 1;
    if (stop_fd_ >= 0) {
      EXPECT_EQ(write(stop_fd_, &one, sizeof(one)), 8);
      if (loop_.joinable()) loop_.join();
      close(stop_fd_);
    }
    EXPECT_EQ(rc_, 0);
    fs::remove_all(dir_);
  }

  fs::path dir_;
  AgentOptions options_;
  std::string socket_;
  LockedDatapath dp_;
  std::unique_ptr<Agent> agent_;
  int stop_fd_ = -1;
  int rc_ = 0;
  std::thread loop_;
};

TEST_F(AgentLoopTest, AnswersOverTheSocket) {
  auto st = CallAgent(socket_, {{"method", "status"}});
  ASSERT_TRUE(st.ok()) << st.status();
  EXPECT_TRUE(st->value("ready", false));
  EXPECT_EQ(st->value("revision", "").rfind("1-", 0), 0u);

  auto eps = CallAgent(socket_, {{"method", "endpoints"}});
  ASSERT_TRUE(eps.ok());
  ASSERT_EQ(eps->size(), 2u);

  auto ex = CallAgent(
      socket_, {{"method", "explain"}, {"from", "default/a"}, {"to", "10.8.0.2"}, {"port", 80}});
  ASSERT_TRUE(ex.ok()) << ex.status();
  EXPECT_EQ(ex->value("verdict", ""), "allow");
  EXPECT_EQ((*ex)["ingress"].value("policy", ""), "NetworkPolicy default/b-in");

  auto bad = CallAgent(socket_, {{"method", "nope"}});
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("unknown method"), std::string::npos);
}

TEST_F(AgentLoopTest, WatchAppliesAChangedPolicyFile) {
  std::ofstream(dir_ / "policies/b.yaml") << R"(apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: b-in, namespace: default}
spec:
  podSelector: {matchLabels: {app: b}}
)";
  // inotify -> debounce -> reload; wait for the new revision (bounded, not a timing check).
  std::string now;
  for (int i = 0; i < 1000; ++i) {
    auto st = CallAgent(socket_, {{"method", "status"}});
    ASSERT_TRUE(st.ok());
    now = st->value("revision", "");
    if (now.rfind("2-", 0) == 0) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_EQ(now.rfind("2-", 0), 0u) << now;
  auto ex = CallAgent(
      socket_, {{"method", "explain"}, {"from", "default/a"}, {"to", "default/b"}, {"port", 80}});
  ASSERT_TRUE(ex.ok());
  EXPECT_EQ(ex->value("verdict", ""), "deny");
}

TEST_F(AgentLoopTest, ObserveStreamsFilteredEvents) {
  std::vector<nlohmann::json> got;  // written by the reader, read after join
  std::atomic<bool> received{false};
  std::thread reader([&] {
    absl::Status st = StreamAgent(socket_, {{"method", "observe"}, {"verdict", "deny"}},
                                  [&](const nlohmann::json& e) {
                                    got.push_back(e);
                                    received = true;
                                    return false;  // one is enough
                                  });
    EXPECT_TRUE(st.ok()) << st;
  });
  // Keep offering an allow and a deny event until the reader has its one deny event (the
  // subscription races with the first pushes; events before it are not for this client).
  // Bounded by time, generously for a loaded machine.
  const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (std::chrono::steady_clock::now() < end) {
    bh_flow_event allow{};
    allow.ifindex = 21;
    allow.kind = BH_EV_NEW_FLOW;
    allow.verdict = BH_EV_ALLOW;
    allow.protocol = 6;
    allow.dst_port = 80;
    bh_flow_event deny = allow;
    deny.verdict = BH_EV_DENY;
    deny.drop_reason = BH_DROP_POLICY;
    deny.dst_port = 81;
    dp_.With([&](auto& d) {
      d.PushEvent(allow);
      d.PushEvent(deny);
      return 0;
    });
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    if (received) break;
  }
  if (!received) {
    // The reader would wait forever: stopping the loop closes its stream.
    ADD_FAILURE() << "the observer got no deny event in 60 s";
    uint64_t one = 1;
    EXPECT_EQ(write(stop_fd_, &one, sizeof(one)), 8);
  }
  reader.join();
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].value("verdict", ""), "deny");
  EXPECT_EQ(got[0].value("workload", ""), "default/a");
  EXPECT_EQ(got[0].value("dst_port", 0), 81);
  EXPECT_EQ(got[0].value("drop_reason", ""), "policy");
}

}  // namespace
}  // namespace bulkhead::agent
