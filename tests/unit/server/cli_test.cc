// The policy-as-code commands of the real `bulkhead` binary against a real server: exit
// codes (diff as a CI gate), errors with file and line, roles, get/history/rollback/mode/audit.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "server/server.h"

extern char** environ;

namespace bulkhead::server {
namespace {

namespace fs = std::filesystem;

struct Result {
  int exit_code = -1;
  std::string out, err;
};

std::string Slurp(const fs::path& p) {
  std::ifstream in(p);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

std::string Np(const std::string& name, const std::string& port) {
  return "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: " + name +
         ", namespace: shop}\nspec:\n  podSelector: {matchLabels: {app: " + name +
         "}}\n  ingress:\n  - ports: [{port: " + port + "}]\n";
}

class PolicyCliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::path(::testing::TempDir()) /
           ("bulkhead_cli_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    auto init = InitServer({(dir_ / "srv").string(), "", {}});
    ASSERT_TRUE(init.ok()) << init.status();
    token_ = init->admin_token;
    ServerOptions o;
    o.data_dir = (dir_ / "srv").string();
    o.listen = "127.0.0.1:0";
    o.grpc_listen = "127.0.0.1:0";
    auto s = Server::Start(o);
    ASSERT_TRUE(s.ok()) << s.status();
    server_ = *std::move(s);
    fs::create_directories(dir_ / "policies");
  }
  void TearDown() override {
    server_.reset();
    fs::remove_all(dir_);
  }

  void Write(const std::string& name, const std::string& content) {
    std::ofstream(dir_ / "policies" / name) << content;
  }

  Result Run(std::vector<std::string> args, const std::string& token = "") {
    std::vector<std::string> argv_s = {BULKHEAD_BINARY};
    argv_s.insert(argv_s.end(), args.begin(), args.end());
    std::vector<char*> argv;
    for (auto& a : argv_s) argv.push_back(a.data());
    argv.push_back(nullptr);
    std::vector<std::string> env_s = {
        "BULKHEAD_SERVER=https://127.0.0.1:" + std::to_string(server_->rest_port()),
        "BULKHEAD_CA=" + (dir_ / "srv" / "ca.crt").string(),
        "BULKHEAD_TOKEN=" + (token.empty() ? token_ : token), "NO_COLOR=1"};
    std::vector<char*> envp;
    for (auto& e : env_s) envp.push_back(e.data());
    envp.push_back(nullptr);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    std::string out = (dir_ / "stdout").string(), err = (dir_ / "stderr").string();
    posix_spawn_file_actions_addopen(&actions, 1, out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    posix_spawn_file_actions_addopen(&actions, 2, err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    pid_t pid = 0;
    Result r;
    int rc = posix_spawn(&pid, argv[0], &actions, nullptr, argv.data(), envp.data());
    posix_spawn_file_actions_destroy(&actions);
    EXPECT_EQ(rc, 0);
    if (rc != 0) return r;
    int status = 0;
    waitpid(pid, &status, 0);
    r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    r.out = Slurp(out);
    r.err = Slurp(err);
    return r;
  }

  std::string Policies() const { return (dir_ / "policies").string(); }

  fs::path dir_;
  std::string token_;
  std::unique_ptr<Server> server_;
};

TEST_F(PolicyCliTest, ApplyDiffGateHistoryRollback) {
  Write("web.yaml", Np("web", "80"));
  Write("svc.yaml", "apiVersion: v1\nkind: Service\nmetadata: {name: s}\n");
  Result diff0 = Run({"diff", "-f", Policies()});
  EXPECT_EQ(diff0.exit_code, 1) << diff0.err;  // the server has nothing yet
  EXPECT_NE(diff0.out.find("+++ NetworkPolicy shop/web"), std::string::npos) << diff0.out;

  Result dry = Run({"apply", "-f", Policies(), "--dry-run"});
  EXPECT_EQ(dry.exit_code, 0) << dry.err;
  EXPECT_NE(dry.out.find("would be created NetworkPolicy shop/web"), std::string::npos) << dry.out;
  Result apply = Run({"apply", "-f", Policies(), "-m", "first"});
  ASSERT_EQ(apply.exit_code, 0) << apply.err;
  EXPECT_NE(apply.out.find("created NetworkPolicy shop/web"), std::string::npos);
  EXPECT_NE(apply.out.find("revision 1"), std::string::npos);
  EXPECT_EQ(Run({"diff", "-f", Policies()}).exit_code, 0);

  Write("web.yaml", Np("web", "8080"));
  EXPECT_EQ(Run({"diff", "-f", Policies()}).exit_code, 1);
  ASSERT_EQ(Run({"apply", "-f", Policies()}).exit_code, 0);
  Result history = Run({"history"});
  EXPECT_EQ(history.exit_code, 0);
  EXPECT_NE(history.out.find("first"), std::string::npos) << history.out;
  Result rev2 = Run({"history", "2"});
  EXPECT_NE(rev2.out.find("+        - port: 8080"), std::string::npos) << rev2.out;
  Result rb = Run({"rollback", "1"});
  EXPECT_EQ(rb.exit_code, 0) << rb.err;
  EXPECT_NE(rb.out.find("revision 3"), std::string::npos) << rb.out;
  Result yaml = Run({"get", "np", "web", "-n", "shop", "-o", "yaml"});
  EXPECT_EQ(yaml.exit_code, 0);
  EXPECT_NE(yaml.out.find("- port: 80\n"), std::string::npos) << yaml.out;
  EXPECT_EQ(Run({"get", "np", "nothing", "-n", "shop"}).exit_code, 1);
}

TEST_F(PolicyCliTest, InvalidInputExits2WithFileAndLine) {
  Write("bad.yaml", Np("web", "99999"));
  Result diff = Run({"diff", "-f", Policies()});
  EXPECT_EQ(diff.exit_code, 2);
  Result apply = Run({"apply", "-f", Policies()});
  EXPECT_EQ(apply.exit_code, 2);
  EXPECT_NE(apply.err.find("bad.yaml:7:20:"), std::string::npos) << apply.err;
  EXPECT_NE(apply.err.find("spec.ingress[0].ports[0].port"), std::string::npos) << apply.err;
  EXPECT_NE(apply.err.find("nothing was changed"), std::string::npos) << apply.err;
  EXPECT_EQ(Run({"apply", "-f", (dir_ / "missing").string()}).exit_code, 2);
  EXPECT_EQ(Run({"history"}).out.find("apply"), std::string::npos);  // no revision made
}

TEST_F(PolicyCliTest, RolesTokensModeAudit) {
  Result t = Run({"token", "create", "--name", "ro", "--role", "viewer"});
  ASSERT_EQ(t.exit_code, 0) << t.err;
  std::string viewer = t.out.substr(0, t.out.find('\n'));
  Write("web.yaml", Np("web", "80"));
  Result denied = Run({"apply", "-f", Policies()}, viewer);
  EXPECT_EQ(denied.exit_code, 1);
  EXPECT_NE(denied.err.find("may not change the policy set"), std::string::npos) << denied.err;
  EXPECT_EQ(Run({"get"}, viewer).exit_code, 0);
  EXPECT_EQ(Run({"get"}, "bh_nope").exit_code, 1);

  ASSERT_EQ(Run({"apply", "-f", Policies()}).exit_code, 0);
  EXPECT_EQ(Run({"mode", "set", "audit", "--policy", "np/shop/web"}).exit_code, 0);
  EXPECT_EQ(Run({"mode", "set", "learn", "--namespace", "shop"}).exit_code, 0);
  EXPECT_EQ(Run({"mode", "set", "learn", "--policy", "np/shop/web"}).exit_code, 2);
  EXPECT_EQ(Run({"mode", "set", "audit"}).exit_code, 2);
  Result wl = Run({"mode", "set", "audit", "--workload", "shop/web"});
  EXPECT_EQ(wl.exit_code, 0) << wl.err;
  EXPECT_NE(wl.out.find("WorkloadMode shop/web"), std::string::npos) << wl.out;
  Result wm = Run({"get", "wm", "-n", "shop", "-o", "yaml"});
  EXPECT_NE(wm.out.find("mode: audit"), std::string::npos) << wm.out << wm.err;
  EXPECT_EQ(Run({"mode", "set", "audit", "--workload", "web"}).exit_code, 2);
  // The server's agent timers: a bad duration names the flag and starts nothing.
  Result stale = Run({"server", "--data-dir", (dir_ / "srv").string(), "--listen", "127.0.0.1:0",
                      "--grpc-listen", "127.0.0.1:0", "--agent-stale-after", "soon"});
  EXPECT_EQ(stale.exit_code, 2);
  EXPECT_NE(stale.err.find("--agent-stale-after 'soon'"), std::string::npos) << stale.err;
  Result grace = Run({"server", "--data-dir", (dir_ / "srv").string(), "--listen", "127.0.0.1:0",
                      "--grpc-listen", "127.0.0.1:0", "--endpoint-grace", "-5m"});
  EXPECT_EQ(grace.exit_code, 2);
  EXPECT_NE(grace.err.find("--endpoint-grace '-5m'"), std::string::npos) << grace.err;

  Result audit = Run({"audit", "--actor", "ro"});
  EXPECT_EQ(audit.exit_code, 0) << audit.err;
  EXPECT_NE(audit.out.find("denied"), std::string::npos) << audit.out;
  EXPECT_EQ(Run({"audit"}, viewer).exit_code, 1);
  Result join = Run({"token", "create", "--ttl", "1h"});
  EXPECT_EQ(join.out.rfind("bhj_", 0), 0u) << join.out;
  EXPECT_EQ(Run({"token", "create", "--name", "x"}).exit_code, 2);
  EXPECT_EQ(Run({"token", "revoke", "ro"}).exit_code, 0);
  EXPECT_EQ(Run({"get"}, viewer).exit_code, 1);
}

}  // namespace
}  // namespace bulkhead::server
