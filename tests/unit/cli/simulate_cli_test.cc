// Runs the real `bulkhead` binary on examples/shop and on small temporary manifests: output
// shapes, exit codes, error texts.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <spawn.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <string>
#include <vector>

extern char** environ;

namespace bulkhead::cli {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

const std::string kExamples = std::string(BULKHEAD_SOURCE_DIR) + "/examples/shop";

struct Result {
  int exit_code = -1;
  std::string out;
  std::string err;
};

struct RunOptions {
  std::string stdout_path;  // redirect stdout to this file instead of capturing it
  bool tty = false;         // stdout is a pseudo-terminal
  bool no_color = false;    // set NO_COLOR=1 (it is always removed otherwise)
};

RunOptions OnTerminal(bool no_color) {
  RunOptions o;
  o.tty = true;
  o.no_color = no_color;
  return o;
}

std::string ReadFile(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

class SimulateCliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "bulkhead-cli-test-XXXXXX").string();
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr) << strerror(errno);
    dir_ = tmpl;
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string Write(const std::string& name, const std::string& content) {
    fs::path p = dir_ / name;
    fs::create_directories(p.parent_path());
    std::ofstream(p) << content;
    return p.string();
  }

  Result Run(const std::vector<std::string>& args, const RunOptions& opt = {}) {
    std::vector<std::string> argv_s = {BULKHEAD_BINARY};
    argv_s.insert(argv_s.end(), args.begin(), args.end());
    std::vector<char*> argv;
    for (auto& a : argv_s) argv.push_back(a.data());
    argv.push_back(nullptr);

    std::vector<std::string> env_s;
    for (char** e = environ; *e != nullptr; ++e) {
      if (std::string(*e).rfind("NO_COLOR=", 0) != 0) env_s.push_back(*e);
    }
    if (opt.no_color) env_s.push_back("NO_COLOR=1");
    std::vector<char*> envp;
    for (auto& e : env_s) envp.push_back(e.data());
    envp.push_back(nullptr);

    std::string out_path = opt.stdout_path.empty() ? (dir_ / "stdout").string() : opt.stdout_path;
    std::string err_path = (dir_ / "stderr").string();
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    int master = -1;
    int slave = -1;
    if (opt.tty) {
      master = posix_openpt(O_RDWR | O_NOCTTY);
      EXPECT_GE(master, 0);
      EXPECT_EQ(grantpt(master), 0);
      EXPECT_EQ(unlockpt(master), 0);
      std::string slave_path = ptsname(master);
      // Held open by the parent so that the master never sees a hang-up before the child
      // has written.
      slave = open(slave_path.c_str(), O_RDWR | O_NOCTTY);
      EXPECT_GE(slave, 0);
      posix_spawn_file_actions_adddup2(&actions, slave, 1);
    } else {
      posix_spawn_file_actions_addopen(&actions, 1, out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC,
                                       0600);
    }
    posix_spawn_file_actions_addopen(&actions, 2, err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC,
                                     0600);
    pid_t pid = 0;
    int rc = posix_spawn(&pid, argv[0], &actions, nullptr, argv.data(), envp.data());
    posix_spawn_file_actions_destroy(&actions);
    Result r;
    EXPECT_EQ(rc, 0) << "cannot run " << argv[0] << ": " << strerror(rc);
    if (rc != 0) return r;
    int status = 0;
    EXPECT_EQ(waitpid(pid, &status, 0), pid);
    r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    if (opt.tty) {
      close(slave);
      fcntl(master, F_SETFL, O_NONBLOCK);
      char buf[4096];
      ssize_t n;
      while ((n = read(master, buf, sizeof(buf))) > 0) r.out.append(buf, static_cast<size_t>(n));
      close(master);
    } else if (opt.stdout_path.empty()) {
      r.out = ReadFile(out_path);
    }
    r.err = ReadFile(err_path);
    return r;
  }

  // Runs and parses stdout as JSON, expecting success.
  json RunJson(std::vector<std::string> args) {
    args.push_back("-o");
    args.push_back("json");
    Result r = Run(args);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    try {
      return json::parse(r.out);
    } catch (const json::exception& e) {
      ADD_FAILURE() << "not JSON: " << e.what() << "\n" << r.out;
      return json();
    }
  }

  json Flow(const std::string& from, const std::string& to, const std::string& port,
            std::vector<std::string> extra = {}) {
    std::vector<std::string> args = {"simulate", "-f", kExamples, "--from", from,
                                     "--to",     to,   "--port",  port};
    args.insert(args.end(), extra.begin(), extra.end());
    return RunJson(args);
  }

  fs::path dir_;
};

// ---- root command ----

TEST_F(SimulateCliTest, VersionAndHelp) {
  Result r = Run({"--version"});
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_EQ(r.out, "0.1.0\n");

  r = Run({"--help"});
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_NE(r.out.find("simulate"), std::string::npos) << r.out;

  r = Run({"simulate", "--help"});
  EXPECT_EQ(r.exit_code, 0);
  for (const char* flag : {"--from", "--to", "--port", "--protocol", "--matrix", "--connectivity",
                           "--from-process", "--output", "--file"}) {
    EXPECT_NE(r.out.find(flag), std::string::npos) << flag << "\n" << r.out;
  }
}

TEST_F(SimulateCliTest, MissingSubcommandOrUnknownFlagIsInvalidInput) {
  Result r = Run({});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("subcommand"), std::string::npos) << r.err;

  r = Run({"simulate", "-f", kExamples, "--connectivity", "--bogus"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("--bogus"), std::string::npos) << r.err;
  EXPECT_TRUE(r.out.empty());

  r = Run({"simulate", "--connectivity"});  // no -f
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("--file"), std::string::npos) << r.err;
}

// ---- single flows on the example estate ----

TEST_F(SimulateCliTest, AllowedFlowJsonShape) {
  json j = Flow("frontend/web", "shop/api", "8080");
  EXPECT_EQ(j["from"], "frontend/web");
  EXPECT_EQ(j["to"], "shop/api");
  EXPECT_EQ(j["port"], 8080);
  EXPECT_EQ(j["protocol"], "TCP");
  EXPECT_EQ(j["verdict"], "allow");
  for (const char* dir : {"egress", "ingress"}) {
    const json& d = j[dir];
    for (const char* key :
         {"verdict", "reason", "tier", "policy", "ruleIndex", "ruleName", "action", "passedBy",
          "isolatedBy", "nearestMiss", "mode", "explanation"}) {
      EXPECT_TRUE(d.contains(key)) << dir << "." << key << "\n" << d.dump(2);
    }
    EXPECT_EQ(d["verdict"], "allow");
    EXPECT_FALSE(d["explanation"].get<std::string>().empty());
  }
  // The frontend's egress is not isolated by any NetworkPolicy: the baseline decides.
  EXPECT_EQ(j["egress"]["tier"], "baseline");
  EXPECT_EQ(j["egress"]["policy"]["kind"], "BaselineAdminNetworkPolicy");
  EXPECT_EQ(j["egress"]["ruleName"], "allow-web-to-api");
  EXPECT_EQ(j["egress"]["action"], "Allow");
  // The API's ingress: its NetworkPolicy's first rule, by the named port http (8080).
  EXPECT_EQ(j["ingress"]["reason"], "rule");
  EXPECT_EQ(j["ingress"]["tier"], "namespace");
  EXPECT_EQ(j["ingress"]["policy"], json({{"id", "NetworkPolicy shop/api"},
                                          {"kind", "NetworkPolicy"},
                                          {"namespace", "shop"},
                                          {"name", "api"}}));
  EXPECT_EQ(j["ingress"]["ruleIndex"], 0);
  EXPECT_EQ(j["ingress"]["isolatedBy"].size(), 2u);  // shop/api and shop/default-deny
}

TEST_F(SimulateCliTest, AdminDenyNamesPolicyAndRule) {
  json j = Flow("frontend/web", "payments/gateway", "8443");
  EXPECT_EQ(j["verdict"], "deny");
  EXPECT_EQ(j["ingress"]["verdict"], "deny");
  EXPECT_EQ(j["ingress"]["tier"], "admin");
  EXPECT_EQ(j["ingress"]["policy"]["kind"], "AdminNetworkPolicy");
  EXPECT_TRUE(j["ingress"]["policy"]["namespace"].is_null());
  EXPECT_EQ(j["ingress"]["policy"]["name"], "pci-guardrails");
  EXPECT_EQ(j["ingress"]["ruleIndex"], 0);
  EXPECT_EQ(j["ingress"]["ruleName"], "deny-from-frontend");
  EXPECT_EQ(j["ingress"]["action"], "Deny");
  EXPECT_EQ(j["egress"]["verdict"], "deny");
  EXPECT_EQ(j["egress"]["ruleName"], "deny-rest-of-cluster");
}

TEST_F(SimulateCliTest, NamedPortAcrossNamespacesAndPass) {
  // shop/api's egress rule names port "https": the gateway's own 8443.
  json j = Flow("shop/api", "payments/gateway", "8443");
  EXPECT_EQ(j["verdict"], "allow") << j.dump(2);
  EXPECT_EQ(j["egress"]["policy"]["id"], "NetworkPolicy shop/api");
  EXPECT_EQ(j["egress"]["ruleIndex"], 1);
  EXPECT_EQ(j["ingress"]["policy"]["id"], "NetworkPolicy payments/gateway");
  ASSERT_EQ(j["ingress"]["passedBy"].size(), 1u);
  EXPECT_NE(j["ingress"]["passedBy"][0].get<std::string>().find("pci-guardrails"),
            std::string::npos);

  // Any other port is an implicit deny, with the nearest rule and what differed.
  j = Flow("shop/api", "payments/gateway", "8080");
  EXPECT_EQ(j["verdict"], "deny");
  EXPECT_EQ(j["egress"]["reason"], "isolated");
  ASSERT_TRUE(j["egress"]["nearestMiss"].is_object()) << j.dump(2);
  EXPECT_EQ(j["egress"]["nearestMiss"]["differed"], "port");
  for (const char* key : {"policy", "ruleIndex", "ruleName", "differed", "detail"}) {
    EXPECT_TRUE(j["egress"]["nearestMiss"].contains(key)) << key;
  }
}

TEST_F(SimulateCliTest, NamedPortOfTheDestinationDecides) {
  // cart's "http" is 8081 while api's is 8080: the same rule text, different numbers.
  EXPECT_EQ(Flow("shop/api", "shop/cart", "8081")["verdict"], "allow");
  EXPECT_EQ(Flow("shop/api", "shop/cart", "8080")["verdict"], "deny");
}

TEST_F(SimulateCliTest, IpEndpointsResolveToWorkloadsAndAuditIsReported) {
  // 10.20.0.5 is the ledger VM (Inventory); the db-lockdown policy is in audit mode.
  json j = Flow("10.20.0.5", "payments/db", "5432");
  EXPECT_EQ(j["from"], "payments/ledger");
  EXPECT_EQ(j["fromAddress"], "10.20.0.5");
  EXPECT_EQ(j["verdict"], "allow") << j.dump(2);
  EXPECT_EQ(j["ingress"]["wouldDeny"], true) << j.dump(2);
  EXPECT_EQ(j["ingress"]["auditPolicy"], "BulkheadPolicy payments/db-lockdown");
  EXPECT_FALSE(j["egress"].contains("wouldDeny"));

  Result r = Run({"simulate", "-f", kExamples, "--from", "10.20.0.5", "--to", "payments/db",
                  "--port", "5432"});
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_NE(r.out.find("would be denied when enforced"), std::string::npos) << r.out;
}

TEST_F(SimulateCliTest, ExternalAddressesAndIpBlockExcept) {
  json j = Flow("payments/gateway", "203.0.113.10", "443");
  EXPECT_EQ(j["to"], "203.0.113.10");
  EXPECT_FALSE(j.contains("toAddress"));
  EXPECT_EQ(j["verdict"], "allow") << j.dump(2);
  EXPECT_EQ(j["ingress"]["reason"], "external");
  // 203.0.113.128/25 is excepted from the ipBlock.
  EXPECT_EQ(Flow("payments/gateway", "203.0.113.200", "443")["verdict"], "deny");
  // The web tier's ingress from the internet, except an abusive range.
  EXPECT_EQ(Flow("192.0.2.44", "frontend/web", "80")["verdict"], "allow");
  EXPECT_EQ(Flow("198.51.100.7", "frontend/web", "80")["verdict"], "deny");
}

TEST_F(SimulateCliTest, ProtocolIsCaseInsensitive) {
  json j = Flow("shop/api", "10.96.0.10", "53", {"--protocol", "udp"});
  EXPECT_EQ(j["protocol"], "UDP");
  EXPECT_EQ(j["verdict"], "allow") << j.dump(2);
  EXPECT_EQ(Flow("shop/api", "10.96.0.10", "53", {"--protocol", "SCTP"})["verdict"], "deny");
}

TEST_F(SimulateCliTest, FlowTextIsReadable) {
  Result r = Run({"simulate", "-f", kExamples, "--from", "frontend/web", "--to", "payments/gateway",
                  "--port", "8443"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out.rfind("DENIED  frontend/web -> payments/gateway  TCP/8443\n", 0), 0u) << r.out;
  EXPECT_NE(r.out.find("  egress   deny"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("  ingress  deny"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("AdminNetworkPolicy pci-guardrails, rule 0 \"deny-from-frontend\" (Deny)"),
            std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("why"), std::string::npos);
  EXPECT_EQ(r.out.find('\033'), std::string::npos) << "no colour when stdout is not a TTY";
}

TEST_F(SimulateCliTest, ColourOnlyOnATerminalWithoutNoColor) {
  std::vector<std::string> args = {"simulate", "-f",         kExamples, "--from", "shop/cart",
                                   "--to",     "shop/redis", "--port",  "6379"};
  Result r = Run(args, OnTerminal(false));
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("\033[32mALLOWED"), std::string::npos) << r.out;
  r = Run(args, OnTerminal(true));
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("ALLOWED"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find('\033'), std::string::npos) << r.out;
}

TEST_F(SimulateCliTest, FromProcessIsEchoed) {
  json j = Flow("shop/cart", "shop/redis", "6379", {"--from-process", "cart-server"});
  EXPECT_EQ(j["fromProcess"], "cart-server");
}

// ---- matrix ----

TEST_F(SimulateCliTest, MatrixIsCompleteWithSelfAndSorted) {
  json j = RunJson({"simulate", "-f", kExamples, "--matrix", "--port", "5432"});
  EXPECT_EQ(j["port"], 5432);
  EXPECT_EQ(j["protocol"], "TCP");
  std::vector<std::string> ws = j["workloads"];
  ASSERT_EQ(ws.size(), 7u);
  EXPECT_TRUE(std::is_sorted(ws.begin(), ws.end()));
  EXPECT_EQ(std::set<std::string>(ws.begin(), ws.end()).size(), ws.size());
  ASSERT_EQ(j["matrix"].size(), ws.size());
  for (const auto& from : ws) {
    const json& row = j["matrix"][from];
    ASSERT_EQ(row.size(), ws.size()) << from;
    for (const auto& to : ws) {
      ASSERT_TRUE(row.contains(to)) << from << " -> " << to;
      EXPECT_TRUE(row[to] == "allow" || row[to] == "deny") << row[to];
    }
  }
  EXPECT_EQ(j["matrix"]["payments/gateway"]["payments/db"], "allow");
  EXPECT_EQ(j["matrix"]["payments/ledger"]["payments/db"], "allow");  // audit: passes
  EXPECT_EQ(j["matrix"]["shop/api"]["payments/db"], "deny");
  EXPECT_EQ(j["matrix"]["payments/db"]["payments/db"], "deny");  // self, evaluated
  int allowed = 0;
  for (const auto& from : ws) {
    for (const auto& to : ws) allowed += j["matrix"][from][to] == "allow";
  }
  EXPECT_EQ(allowed, 2);

  // The same answers as single flows.
  for (const auto& from : ws) {
    EXPECT_EQ(j["matrix"][from]["payments/db"], Flow(from, "payments/db", "5432")["verdict"])
        << from;
  }
}

TEST_F(SimulateCliTest, MatrixText) {
  Result r = Run({"simulate", "-f", kExamples, "--matrix", "--port", "5432"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("Reachability on TCP/5432"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("frontend/web"), std::string::npos);
  EXPECT_NE(r.out.find("2 of 49 flows allowed"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("! allowed by audit/learn mode"), std::string::npos) << r.out;
}

// ---- connectivity ----

TEST_F(SimulateCliTest, ConnectivityJsonCoversEveryPair) {
  json j = RunJson({"simulate", "-f", kExamples, "--connectivity"});
  ASSERT_TRUE(j["connections"].is_array());
  std::set<std::pair<std::string, std::string>> workload_pairs;
  bool saw_external = false;
  for (const auto& c : j["connections"]) {
    for (const char* key : {"from", "to", "allowed", "protocols", "otherProtocols"}) {
      ASSERT_TRUE(c.contains(key)) << key << "\n" << c.dump(2);
    }
    for (const auto& [proto, ranges] : c["protocols"].items()) {
      EXPECT_TRUE(proto == "TCP" || proto == "UDP" || proto == "SCTP") << proto;
      for (const auto& range : ranges) {
        ASSERT_EQ(range.size(), 2u);
        EXPECT_LE(range[0].get<int>(), range[1].get<int>());
        EXPECT_GE(range[0].get<int>(), 1);
        EXPECT_LE(range[1].get<int>(), 65535);
      }
    }
    if (c.contains("fromRange") || c.contains("toRange")) {
      saw_external = true;
      const json& range = c.contains("toRange") ? c["toRange"] : c["fromRange"];
      EXPECT_FALSE(range["cidrs"].empty());
    } else {
      workload_pairs.insert({c["from"].get<std::string>(), c["to"].get<std::string>()});
    }
  }
  EXPECT_EQ(workload_pairs.size(), 7u * 6u);  // every ordered pair of distinct workloads
  EXPECT_TRUE(saw_external);

  auto find = [&](const std::string& from, const std::string& to) -> json {
    for (const auto& c : j["connections"]) {
      if (c["from"] == from && c["to"] == to) return c;
    }
    return json();
  };
  json c = find("payments/gateway", "payments/ledger");
  EXPECT_EQ(c["protocols"], json::parse(R"({"TCP":[[7000,7100]]})")) << c.dump(2);
  EXPECT_EQ(c["allowed"], "TCP 7000-7100");
  EXPECT_EQ(c["otherProtocols"], false);
  c = find("shop/api", "shop/cart");
  EXPECT_EQ(c["allowed"], "TCP 8081") << c.dump(2);
  c = find("payments/gateway", "203.0.113.0/25");
  EXPECT_EQ(c["allowed"], "TCP 443") << j.dump(2);
  EXPECT_EQ(c["toRange"]["first"], "203.0.113.0");
  EXPECT_EQ(c["toRange"]["last"], "203.0.113.127");
  c = find("frontend/web", "shop/cart");
  EXPECT_EQ(c["allowed"], "No Connections") << c.dump(2);
  EXPECT_EQ(c["protocols"], json::object());
}

TEST_F(SimulateCliTest, ConnectivityTextIsAlignedAndOmitsDenied) {
  Result r = Run({"simulate", "-f", kExamples, "--connectivity"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  std::istringstream in(r.out);
  std::string line;
  size_t arrow_col = std::string::npos;
  size_t colon_col = std::string::npos;
  int lines = 0;
  while (std::getline(in, line) && !line.empty()) {
    ++lines;
    size_t arrow = line.find("  =>  ");
    size_t colon = line.find("  :  ");
    ASSERT_NE(arrow, std::string::npos) << line;
    ASSERT_NE(colon, std::string::npos) << line;
    if (arrow_col == std::string::npos) {
      arrow_col = arrow;
      colon_col = colon;
    }
    EXPECT_EQ(arrow, arrow_col) << line;
    EXPECT_EQ(colon, colon_col) << line;
    EXPECT_EQ(line.find("No Connections"), std::string::npos) << line;
  }
  EXPECT_GT(lines, 5);
  EXPECT_NE(r.out.find("payments/gateway"), std::string::npos);
  EXPECT_NE(r.out.find("not shown"), std::string::npos) << r.out;
}

// ---- invalid input: exit 2, every error, nothing on stdout ----

struct BadFlags {
  std::vector<std::string> args;
  std::string expected;  // in stderr
};

TEST_F(SimulateCliTest, BadFlagsAreInvalidInput) {
  const std::vector<BadFlags> cases = {
      {{"--from", "shop/nope", "--to", "shop/api", "--port", "80"}, "--from: no workload"},
      {{"--from", "shop/api", "--to", "nowhere/x", "--port", "80"}, "no namespace \"nowhere\""},
      // A bare name is looked up in namespace default, and close names are suggested.
      {{"--from", "web", "--to", "shop/api", "--port", "80"},
       "--from: no workload \"default/web\" in the input (did you mean: frontend/web?)"},
      {{"--from", "shop/api", "--to", "fe80::zz", "--port", "80"},
       "--to: \"fe80::zz\" is neither a workload (namespace/name) nor an IP address"},
      {{"--from", "shop/api", "--to", "10.0.0.300", "--port", "80"},
       "--to: \"10.0.0.300\" is neither a workload (namespace/name) nor an IP address"},
      {{"--from", "10.0.0.0/8", "--to", "shop/api", "--port", "80"}, "is an address range"},
      {{"--from", "8.8.8.8", "--to", "1.1.1.1", "--port", "80"}, "both outside the cluster"},
      {{"--from", "shop/api", "--to", "shop/cart", "--port", "0"}, "--port: \"0\" is not a port"},
      {{"--from", "shop/api", "--to", "shop/cart", "--port", "65536"}, "--port: \"65536\""},
      {{"--from", "shop/api", "--to", "shop/cart", "--port", "http"}, "--port: \"http\""},
      {{"--from", "shop/api", "--to", "shop/cart", "--port", "80", "--protocol", "ICMP"},
       "--protocol: \"ICMP\" is not one of TCP, UDP, SCTP"},
      {{"--from", "shop/api", "--to", "shop/cart", "--port", "80", "--protocol", "foo"},
       "--protocol: \"foo\""},
      {{"--from", "shop/api", "--to", "shop/cart", "--port", "80", "-o", "yaml"},
       "--output: \"yaml\" is not one of json, text"},
      {{"--from", "shop/api", "--to", "shop/cart"}, "--port is required"},
      {{"--from", "shop/api", "--port", "80"}, "--to is required"},
      {{"--matrix"}, "--port is required with --matrix"},
      {{"--port", "80"}, "choose what to simulate"},
      {{"--matrix", "--connectivity", "--port", "80"}, "cannot be used together"},
      {{"--from", "shop/api", "--to", "shop/cart", "--port", "80", "--matrix"},
       "--from/--to and --matrix cannot be used together"},
      {{"--connectivity", "--port", "80"}, "--port cannot be used with --connectivity"},
      {{"--connectivity", "--protocol", "UDP"}, "--protocol cannot be used with --connectivity"},
      {{"--matrix", "--port", "80", "--from-process", "x"}, "--from-process applies to one flow"},
  };
  for (const auto& c : cases) {
    std::vector<std::string> args = {"simulate", "-f", kExamples};
    args.insert(args.end(), c.args.begin(), c.args.end());
    Result r = Run(args);
    std::string shown;
    for (const auto& a : c.args) shown += a + " ";
    EXPECT_EQ(r.exit_code, 2) << shown << "\n" << r.err;
    EXPECT_NE(r.err.find(c.expected), std::string::npos) << shown << "\n" << r.err;
    EXPECT_NE(r.err.find("nothing evaluated"), std::string::npos) << shown << "\n" << r.err;
    EXPECT_TRUE(r.out.empty()) << shown << "\n" << r.out;
  }
}

TEST_F(SimulateCliTest, EveryFlagErrorIsReportedAtOnce) {
  Result r = Run({"simulate", "-f", kExamples, "--from", "shop/api", "--to", "shop/cart", "--port",
                  "99999", "--protocol", "gre", "-o", "xml"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("--port"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("--protocol"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("--output"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("3 errors; nothing evaluated"), std::string::npos) << r.err;
}

TEST_F(SimulateCliTest, MissingPathIsInvalidInput) {
  std::string missing = (dir_ / "does-not-exist.yaml").string();
  Result r = Run({"simulate", "-f", missing, "--connectivity"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find(missing), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("nothing evaluated"), std::string::npos) << r.err;
  EXPECT_TRUE(r.out.empty());
}

TEST_F(SimulateCliTest, ManifestErrorsNameFileObjectAndFieldAllOfThem) {
  std::string bad = Write("bad.yaml", R"(apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: broken, namespace: a}
spec:
  podSelector: {}
  ingress:
  - ports:
    - {protocol: TCP, port: 9000, endPort: 8000}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: also-broken, namespace: a}
spec:
  podSelector: {}
  ingress:
  - from:
    - ipBlock: {cidr: 10.0.0.0/33}
)");
  std::string good = Write("good.yaml", R"(apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: a}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: c, image: x}]
)");
  Result r = Run({"simulate", "-f", good, "-f", bad, "--matrix", "--port", "80"});
  EXPECT_EQ(r.exit_code, 2) << r.out;
  EXPECT_TRUE(r.out.empty()) << r.out;
  EXPECT_NE(r.err.find(bad), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("NetworkPolicy a/broken"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("spec.ingress[0].ports[0].endPort"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("NetworkPolicy a/also-broken"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("spec.ingress[0].from[0].ipBlock.cidr"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("2 errors; nothing evaluated"), std::string::npos) << r.err;
}

// ---- small temporary estates ----

constexpr const char* kTinyEstate = R"(apiVersion: v1
kind: Namespace
metadata: {name: a, labels: {team: a}}
---
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: a, labels: {app: client}}
spec:
  containers: [{name: c, image: x}]
status:
  podIP: 10.1.0.2
---
apiVersion: v1
kind: Pod
metadata: {name: server, namespace: a, labels: {app: server}}
spec:
  containers:
  - name: s
    image: x
    ports: [{name: web, containerPort: 8080}, {name: dns, containerPort: 5353, protocol: UDP}]
status:
  podIP: 10.1.0.3
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: server, namespace: a}
spec:
  podSelector: {matchLabels: {app: server}}
  ingress:
  - from: [{podSelector: {matchLabels: {app: client}}}]
    ports: [{port: web}, {protocol: UDP, port: dns}]
)";

TEST_F(SimulateCliTest, TinyEstateNamedPortsAndPodIps) {
  std::string f = Write("estate/tiny.yaml", kTinyEstate);
  auto flow = [&](const std::string& from, const std::string& to, const std::string& port,
                  const std::string& proto = "TCP") {
    return RunJson(
        {"simulate", "-f", f, "--from", from, "--to", to, "--port", port, "--protocol", proto});
  };
  EXPECT_EQ(flow("a/client", "a/server", "8080")["verdict"], "allow");
  EXPECT_EQ(flow("a/client", "a/server", "8081")["verdict"], "deny");
  EXPECT_EQ(flow("a/client", "a/server", "5353", "UDP")["verdict"], "allow");
  EXPECT_EQ(flow("a/client", "a/server", "5353", "TCP")["verdict"], "deny");
  json j = flow("10.1.0.2", "10.1.0.3", "8080");
  EXPECT_EQ(j["from"], "a/client");
  EXPECT_EQ(j["to"], "a/server");
  EXPECT_EQ(j["toAddress"], "10.1.0.3");
  EXPECT_EQ(j["verdict"], "allow");
  EXPECT_EQ(flow("a/server", "a/client", "8080")["verdict"], "allow");  // client not isolated

  // A directory is read recursively.
  json m = RunJson({"simulate", "-f", (dir_ / "estate").string(), "--matrix", "--port", "8080"});
  EXPECT_EQ(m["workloads"], json({"a/client", "a/server"}));
  EXPECT_EQ(m["matrix"]["a/client"]["a/server"], "allow");
  EXPECT_EQ(m["matrix"]["a/server"]["a/server"], "deny");
  EXPECT_EQ(m["matrix"]["a/server"]["a/client"], "allow");
  EXPECT_EQ(m["matrix"]["a/client"]["a/client"], "allow");

  json c = RunJson({"simulate", "-f", f, "--connectivity"});
  bool found = false;
  for (const auto& e : c["connections"]) {
    if (e["from"] == "a/client" && e["to"] == "a/server") {
      found = true;
      EXPECT_EQ(e["allowed"], "TCP 8080,UDP 5353");
      EXPECT_EQ(e["protocols"], json::parse(R"({"TCP":[[8080,8080]],"UDP":[[5353,5353]]})"));
    }
  }
  EXPECT_TRUE(found) << c.dump(2);
}

TEST_F(SimulateCliTest, EmptyEstateHasAnEmptyMatrix) {
  std::string f = Write("ns.yaml", "apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n");
  json m = RunJson({"simulate", "-f", f, "--matrix", "--port", "80"});
  EXPECT_EQ(m["workloads"], json::array());
  EXPECT_EQ(m["matrix"], json::object());
}

TEST_F(SimulateCliTest, NoticesOnlyWhenVerbose) {
  // examples/shop has a Service, which Bulkhead ignores with a notice.
  std::vector<std::string> args = {"simulate", "-f",         kExamples, "--from", "shop/cart",
                                   "--to",     "shop/redis", "--port",  "6379"};
  Result quiet = Run(args);
  EXPECT_EQ(quiet.exit_code, 0);
  EXPECT_EQ(quiet.err.find("Service"), std::string::npos) << quiet.err;
  args.push_back("-v");
  Result verbose = Run(args);
  EXPECT_EQ(verbose.exit_code, 0);
  EXPECT_NE(verbose.err.find("Service"), std::string::npos) << verbose.err;
  EXPECT_EQ(quiet.out, verbose.out);
}

TEST_F(SimulateCliTest, WarningsArePrintedWithoutVerboseAndDoNotFail) {
  // A CIDR with host bits set is accepted (as the API server does) with a warning.
  std::string f = Write("warn.yaml", R"(apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: loose, namespace: a}
spec:
  podSelector: {}
  policyTypes: [Egress]
  egress:
  - to:
    - ipBlock: {cidr: 10.0.0.1/8}
---
apiVersion: v1
kind: Pod
metadata: {name: p, namespace: a}
spec:
  containers: [{name: c, image: x}]
)");
  Result r = Run({"simulate", "-f", f, "--from", "a/p", "--to", "10.9.9.9", "--port", "80"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("warning"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("NetworkPolicy a/loose"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("10.0.0.1/8"), std::string::npos) << r.err;
  EXPECT_EQ(r.out.rfind("ALLOWED", 0), 0u) << r.out;
}

// ---- other errors: exit 1 ----

TEST_F(SimulateCliTest, UnwritableOutputIsAnError) {
  if (access("/dev/full", W_OK) != 0) GTEST_SKIP() << "/dev/full is not available";
  RunOptions to_full;
  to_full.stdout_path = "/dev/full";
  Result r = Run({"simulate", "-f", kExamples, "--connectivity"}, to_full);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("cannot write the output"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace bulkhead::cli
