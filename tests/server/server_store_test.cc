// The server over both stores, with faults: the policy repository on a real three-member
// etcd cluster (two replicas racing), the real `bulkhead server` killed -9 during a loop of
// applies (SQLite and etcd: no acknowledged revision lost, none half-applied), and etcd
// members lost under a serving server (one: it keeps serving; two: writes fail clearly and
// nothing is written; restarted: writes work again).
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <random>
#include <regex>
#include <thread>

#include "absl/cleanup/cleanup.h"
#include "etcd_cluster.h"
#include "etcd_environment.h"
#include "policy_repo_testing.h"
#include "server/api_client.h"
#include "server/policy_repo.h"
#include "server/server.h"
#include "store/store.h"

namespace bulkhead::server {
namespace {

using nlohmann::json;
using store::testing::EtcdCluster;
using testing::Np;

BULKHEAD_SHARED_ETCD_CLUSTER();

// The shared cluster (nullptr without etcd).
EtcdCluster* Cluster() { return store::testing::SharedEtcdCluster::Get(); }

std::filesystem::path TempDir(const std::string& tag) {
  auto dir = std::filesystem::path(::testing::TempDir()) /
             ("bulkhead_srv_" + std::to_string(::getpid()) + "_" + tag + "_" +
              ::testing::UnitTest::GetInstance()->current_test_info()->name());
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

// A store of its own on the shared cluster: every test writes under the same keys, so each
// starts by deleting them.
std::unique_ptr<store::IStore> CleanEtcdStore() {
  auto s = store::OpenStore(Cluster()->Url());
  EXPECT_TRUE(s.ok()) << s.status();
  if (!s.ok()) return nullptr;
  auto r = (*s)->Txn({}, {store::Op::DeletePrefix("/bulkhead/")});
  EXPECT_TRUE(r.ok()) << r.status();
  return *std::move(s);
}

TEST(RepositoryOnEtcdTest, TwoReplicasRacingEachLandOnceAndRollback) {
  REQUIRE_ETCD("the server is");
  auto a_store = CleanEtcdStore();
  auto b_store = store::OpenStore(Cluster()->Url());
  ASSERT_TRUE(b_store.ok());
  PolicyRepository a(a_store.get()), b(b_store->get());
  Actor actor{"t", "editor", "test"};
  constexpr int kEach = 6;
  std::thread ta([&] {
    for (int i = 0; i < kEach; ++i) {
      auto r = a.Apply({{{"f", Np("a" + std::to_string(i), 80)}}, false, false, ""}, actor);
      ASSERT_TRUE(r.ok() && r->committed) << (r.ok() ? "not committed" : r.status().ToString());
    }
  });
  std::thread tb([&] {
    for (int i = 0; i < kEach; ++i) {
      auto r = b.Apply({{{"f", Np("b" + std::to_string(i), 80)}}, false, false, ""}, actor);
      ASSERT_TRUE(r.ok() && r->committed) << (r.ok() ? "not committed" : r.status().ToString());
    }
  });
  ta.join();
  tb.join();
  auto set = a.Read();
  ASSERT_TRUE(set.ok());
  EXPECT_EQ(set->first, 2 * kEach);
  EXPECT_EQ(set->second.size(), 2u * kEach);
  auto rb = b.Rollback(3, false, "", actor);
  ASSERT_TRUE(rb.ok() && rb->committed);
  auto after = a.Read();
  ASSERT_TRUE(after.ok());
  EXPECT_EQ(after->second.size(), 3u);
  auto history = b.History();
  ASSERT_TRUE(history.ok());
  EXPECT_EQ(history->size(), 2u * kEach + 1);
}

// The real server binary, its stderr in a file, its HTTPS port read from it.
class ServerProcess {
 public:
  ServerProcess(std::filesystem::path dir, std::string store)
      : dir_(std::move(dir)), store_(std::move(store)) {}
  ~ServerProcess() { Kill(); }

  void Start() {
    std::string log = (dir_ / "server.log").string();
    std::filesystem::remove(log);
    pid_ = fork();
    if (pid_ == 0) {
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
      dup2(fd, 2);
      dup2(fd, 1);
      std::string data = dir_.string();
      execl(BULKHEAD_BINARY, BULKHEAD_BINARY, "server", "--data-dir", data.c_str(), "--store",
            store_.c_str(), "--listen", "127.0.0.1:0", "--grpc-listen", "127.0.0.1:0",
            static_cast<char*>(nullptr));
      _exit(127);
    }
    std::regex port_re("serving https on port ([0-9]+)");
    for (int i = 0; i < 300 && port_ == 0; ++i) {
      std::ifstream in(log);
      std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
      std::smatch m;
      if (std::regex_search(text, m, port_re)) port_ = std::stoi(m[1]);
      int status = 0;
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        FAIL() << "bulkhead server exited: " << text;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    ASSERT_GT(port_, 0) << "bulkhead server did not say its port";
  }

  void Kill() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
    pid_ = -1;
    port_ = 0;
  }

  std::unique_ptr<ApiClient> Client() {
    std::ifstream in(dir_ / "admin.token");
    std::string token;
    std::getline(in, token);
    auto c = ApiClient::Create(
        {"https://127.0.0.1:" + std::to_string(port_), token, (dir_ / "ca.crt").string(), 30});
    EXPECT_TRUE(c.ok()) << c.status();
    return c.ok() ? *std::move(c) : nullptr;
  }

 private:
  std::filesystem::path dir_;
  std::string store_;
  pid_t pid_ = -1;
  int port_ = 0;
};

// Applies revision after revision, each creating p-<i> and moving "marker" to port i+1, while
// the server is killed -9 at random moments and restarted; then checks that every
// acknowledged revision is there and that each stored revision is whole.
void KillDuringApplies(const std::string& store_url, const std::filesystem::path& dir) {
  auto init = InitServer({dir.string(), store_url, {}});
  ASSERT_TRUE(init.ok()) << init.status();
  ServerProcess server(dir, store_url);
  std::mt19937 rng(::testing::UnitTest::GetInstance()->random_seed());
  std::map<int64_t, int> acked;  // revision -> i
  int next = 0;
  for (int round = 0; round < 4; ++round) {
    ASSERT_NO_FATAL_FAILURE(server.Start());
    auto client = server.Client();
    ASSERT_NE(client, nullptr);
    std::atomic<bool> stop{false};
    std::thread killer([&] {
      std::this_thread::sleep_for(std::chrono::milliseconds(100 + rng() % 400));
      server.Kill();
      stop = true;
    });
    while (!stop) {
      int i = next++;
      json files = json::array({{{"name", "p.yaml"}, {"content", Np("p-" + std::to_string(i), 80)}},
                                {{"name", "m.yaml"}, {"content", Np("marker", i + 1)}}});
      auto r = client->Post("/api/v1/apply", {{"files", files}});
      if (r.ok() && r->status == 200 && r->body.value("committed", false)) {
        acked[r->body["revision"].get<int64_t>()] = i;
      }
    }
    killer.join();
  }
  ASSERT_NO_FATAL_FAILURE(server.Start());
  auto client = server.Client();
  ASSERT_NE(client, nullptr);
  ASSERT_FALSE(acked.empty()) << "no apply was acknowledged before the kills";
  // Every acknowledged revision is in the history with its own object.
  for (const auto& [rev, i] : acked) {
    auto r = client->Get("/api/v1/revisions/" + std::to_string(rev));
    ASSERT_TRUE(r.ok());
    ASSERT_EQ(r->status, 200) << "acknowledged revision " << rev << " lost";
    bool found = false;
    for (const json& c : r->body["changes"]) found = found || c["name"] == "p-" + std::to_string(i);
    EXPECT_TRUE(found) << "revision " << rev << " does not hold p-" << i;
  }
  // Whole revisions only: the head holds one p-* per revision and the marker of the last one.
  auto objects = client->Get("/api/v1/objects");
  ASSERT_TRUE(objects.ok());
  auto history = client->Get("/api/v1/revisions");
  ASSERT_TRUE(history.ok());
  int64_t head = history->body["revisions"][0]["revision"];
  int max_i = -1;
  size_t p_count = 0;
  int marker_port = 0;
  for (const json& o : objects->body["objects"]) {
    std::string name = o["name"];
    if (name == "marker") {
      marker_port = o["object"]["spec"]["ingress"][0]["ports"][0]["port"];
    } else {
      ++p_count;
      max_i = std::max(max_i, std::stoi(name.substr(2)));
    }
  }
  EXPECT_EQ(static_cast<int64_t>(p_count), head);
  EXPECT_EQ(marker_port, max_i + 1);
  for (const auto& [rev, i] : acked) EXPECT_LE(i, max_i);
  // And the server still takes applies.
  auto more = client->Post(
      "/api/v1/apply", {{"files", json::array({{{"name", "x"}, {"content", Np("after", 80)}}})}});
  ASSERT_TRUE(more.ok());
  EXPECT_EQ(more->status, 200);
  std::printf("%zu acknowledged revisions, head %lld, survived 4 kill -9\n", acked.size(),
              static_cast<long long>(head));
}

TEST(ServerFaultTest, KillDuringAppliesSqlite) {
  auto dir = TempDir("sqlite");
  absl::Cleanup remove = [&] { std::filesystem::remove_all(dir); };  // also when it fails
  KillDuringApplies("sqlite:" + (dir / "server.db").string(), dir);
}

TEST(ServerFaultTest, KillDuringAppliesEtcd) {
  REQUIRE_ETCD("the server is");
  CleanEtcdStore();
  auto dir = TempDir("etcd");
  absl::Cleanup remove = [&] { std::filesystem::remove_all(dir); };  // also when it fails
  KillDuringApplies(Cluster()->Url(), dir);
}

TEST(ServerFaultTest, EtcdMembersLost) {
  REQUIRE_ETCD("the server is");
  CleanEtcdStore();
  auto dir = TempDir("quorum");
  absl::Cleanup remove = [&] { std::filesystem::remove_all(dir); };  // also when it fails
  ASSERT_TRUE(InitServer({dir.string(), Cluster()->Url(), {}}).ok());
  ServerProcess server(dir, Cluster()->Url());
  ASSERT_NO_FATAL_FAILURE(server.Start());
  auto client = server.Client();
  auto apply = [&](const std::string& name) {
    json files = json::array({{{"name", name + ".yaml"}, {"content", Np(name, 80)}}});
    return client->Post("/api/v1/apply", {{"files", files}});
  };
  auto r1 = apply("one");
  ASSERT_TRUE(r1.ok());
  ASSERT_EQ(r1->status, 200);

  auto leader = Cluster()->Leader();
  ASSERT_TRUE(leader.ok());
  int follower = (*leader + 1) % 3, other = (*leader + 2) % 3;
  Cluster()->Kill(follower);
  auto r2 = apply("two");
  ASSERT_TRUE(r2.ok());
  EXPECT_EQ(r2->status, 200) << r2->body.dump();

  Cluster()->Kill(other);
  auto r3 = apply("three");
  ASSERT_TRUE(r3.ok());
  EXPECT_EQ(r3->status, 503) << r3->body.dump();
  std::string msg = r3->body["error"]["message"];
  EXPECT_NE(msg.find("quorum"), std::string::npos) << msg;

  ASSERT_TRUE(Cluster()->Restart(follower).ok());
  ASSERT_TRUE(Cluster()->Restart(other).ok());
  ASSERT_TRUE(Cluster()->WaitHealthy().ok());
  auto objects = client->Get("/api/v1/objects");
  ASSERT_TRUE(objects.ok());
  ASSERT_EQ(objects->status, 200);
  for (const json& o : objects->body["objects"])
    EXPECT_NE(o["name"], "three") << "written without quorum";
  EXPECT_EQ(objects->body["objects"].size(), 2u);
  auto r4 = apply("four");
  ASSERT_TRUE(r4.ok());
  EXPECT_EQ(r4->status, 200) << r4->body.dump();
}

}  // namespace
}  // namespace bulkhead::server
