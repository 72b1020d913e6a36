// The lab's CNI runtime without root: plugin configs and environment, the ADD chain's
// prevResult hand-over and DEL's reverse order (fake executor), error objects, plugin lookup,
// ADD result parsing, and the real executor running a script plugin.
#include "lab/cni.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>

#include "lab/lab.h"

namespace bulkhead::lab {
namespace {

using Json = nlohmann::json;
namespace fs = std::filesystem;

std::string EnvValue(const std::vector<std::string>& env, const std::string& key) {
  for (const auto& e : env) {
    if (e.rfind(key + "=", 0) == 0) return e.substr(key.size() + 1);
  }
  return "<unset>";
}

// Plays the plugins: records each call; ADD answers with the prevResult plus its own mark,
// or with a configured CNI error.
class FakeExecutor : public PluginExecutor {
 public:
  absl::StatusOr<PluginOutput> Run(const PluginCall& call) override {
    calls.push_back(call);
    Json config = Json::parse(call.config);
    std::string command = EnvValue(call.env, "CNI_COMMAND");
    if (fail.count(call.plugin + " " + command) != 0) {
      return PluginOutput{1, fail[call.plugin + " " + command], "some stderr\n"};
    }
    if (command != "ADD") return PluginOutput{0, "", ""};
    Json result = config.contains("prevResult")
                      ? config["prevResult"]
                      : Json{{"cniVersion", "1.0.0"}, {"marks", Json::array()}};
    result["marks"].push_back(call.plugin);
    return PluginOutput{0, result.dump(), ""};
  }
  std::vector<PluginCall> calls;
  std::map<std::string, std::string> fail;  // "plugin COMMAND" -> stdout
};

class CniTest : public testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("bh-cni-test-" + std::to_string(::getpid()));
    fs::create_directories(dir_);
    for (const char* p : {"first", "second", "third"}) MakeExecutable(p, "#!/bin/sh\nexit 0\n");
  }
  void TearDown() override { fs::remove_all(dir_); }

  void MakeExecutable(const std::string& name, const std::string& content) {
    std::ofstream(dir_ / name) << content;
    fs::permissions(dir_ / name, fs::perms::owner_all);
  }

  CniNetwork Net() {
    auto net = CniNetwork::FromConflist(Json{
        {"cniVersion", "1.0.0"},
        {"name", "testnet"},
        {"plugins", {{{"type", "first"}, {"opt", 1}}, {{"type", "second"}}, {{"type", "third"}}}}});
    EXPECT_TRUE(net.ok()) << net.status();
    return *net;
  }

  CniRuntime Runtime() {
    CniRuntime rt;
    rt.container_id = "c1";
    rt.netns = "/run/netns/n1";
    rt.ifname = "eth0";
    rt.args = "IgnoreUnknown=1;K8S_POD_NAMESPACE=x;K8S_POD_NAME=a";
    rt.netconf_args = Json{{"cni", {{"labels", {{{"key", "pod"}, {"value", "a"}}}}}}};
    return rt;
  }

  std::vector<std::string> Path() { return {"/nonexistent", dir_.string()}; }

  fs::path dir_;
};

TEST_F(CniTest, ConflistShape) {
  EXPECT_FALSE(CniNetwork::FromConflist(Json::array()).ok());
  EXPECT_FALSE(
      CniNetwork::FromConflist(Json{{"cniVersion", "1.0.0"}, {"plugins", {{{"type", "x"}}}}}).ok());
  auto old = CniNetwork::FromConflist(
      Json{{"cniVersion", "0.4.0"}, {"name", "n"}, {"plugins", {{{"type", "x"}}}}});
  ASSERT_FALSE(old.ok());
  EXPECT_NE(old.status().message().find("cniVersion"), std::string::npos);
  EXPECT_FALSE(CniNetwork::FromConflist(
                   Json{{"cniVersion", "1.0.0"}, {"name", "n"}, {"plugins", Json::array()}})
                   .ok());
  auto no_type = CniNetwork::FromConflist(
      Json{{"cniVersion", "1.0.0"}, {"name", "n"}, {"plugins", {{{"bridge", "x"}}}}});
  ASSERT_FALSE(no_type.ok());
  EXPECT_NE(no_type.status().message().find("plugins[0]"), std::string::npos);
  auto path_type = CniNetwork::FromConflist(
      Json{{"cniVersion", "1.0.0"}, {"name", "n"}, {"plugins", {{{"type", "../x"}}}}});
  EXPECT_FALSE(path_type.ok());
  EXPECT_EQ(Net().PluginTypes(), (std::vector<std::string>{"first", "second", "third"}));
}

TEST_F(CniTest, PluginConfigCarriesNameVersionArgsAndPrevResult) {
  CniNetwork net = Net();
  Json c0 = net.PluginConfig(0, Runtime(), Json());
  EXPECT_EQ(c0["type"], "first");
  EXPECT_EQ(c0["opt"], 1);
  EXPECT_EQ(c0["name"], "testnet");
  EXPECT_EQ(c0["cniVersion"], "1.0.0");
  EXPECT_EQ(c0["args"]["cni"]["labels"][0]["value"], "a");
  EXPECT_FALSE(c0.contains("prevResult"));
  Json prev = {{"cniVersion", "1.0.0"}, {"ips", Json::array()}};
  EXPECT_EQ(net.PluginConfig(1, Runtime(), prev)["prevResult"], prev);
  CniRuntime bare = Runtime();
  bare.netconf_args = Json();
  EXPECT_FALSE(net.PluginConfig(1, bare, Json()).contains("args"));
}

TEST_F(CniTest, Environment) {
  auto env = CniNetwork::Environment("ADD", Runtime(), {"/a", "/b"});
  EXPECT_EQ(EnvValue(env, "CNI_COMMAND"), "ADD");
  EXPECT_EQ(EnvValue(env, "CNI_CONTAINERID"), "c1");
  EXPECT_EQ(EnvValue(env, "CNI_NETNS"), "/run/netns/n1");
  EXPECT_EQ(EnvValue(env, "CNI_IFNAME"), "eth0");
  EXPECT_EQ(EnvValue(env, "CNI_ARGS"), "IgnoreUnknown=1;K8S_POD_NAMESPACE=x;K8S_POD_NAME=a");
  EXPECT_EQ(EnvValue(env, "CNI_PATH"), "/a:/b");
  EXPECT_NE(EnvValue(env, "PATH"), "<unset>");
}

TEST_F(CniTest, AddChainsPrevResultInOrder) {
  FakeExecutor exec;
  auto result = Net().Add(Runtime(), Path(), exec);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ((*result)["marks"], Json({"first", "second", "third"}));
  ASSERT_EQ(exec.calls.size(), 3u);
  EXPECT_EQ(exec.calls[0].path, (dir_ / "first").string());
  EXPECT_FALSE(Json::parse(exec.calls[0].config).contains("prevResult"));
  EXPECT_EQ(Json::parse(exec.calls[2].config)["prevResult"]["marks"], Json({"first", "second"}));
}

TEST_F(CniTest, AddStopsAtTheFirstErrorAndSaysWhy) {
  FakeExecutor exec;
  exec.fail["second ADD"] =
      R"({"cniVersion":"1.0.0","code":11,"msg":"agent unreachable","details":"dial: refused"})";
  auto result = Net().Add(Runtime(), Path(), exec);
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(exec.calls.size(), 2u);
  std::string msg(result.status().message());
  EXPECT_NE(msg.find("CNI plugin second ADD failed: agent unreachable (code 11): dial: refused"),
            std::string::npos)
      << msg;
  EXPECT_NE(msg.find("some stderr"), std::string::npos) << msg;
}

TEST_F(CniTest, DelRunsEveryPluginInReverseWithTheCachedResult) {
  FakeExecutor exec;
  exec.fail["second DEL"] = "not json";
  Json cached = {{"cniVersion", "1.0.0"}, {"marks", {"first", "second", "third"}}};
  auto s = Net().Del(Runtime(), cached, Path(), exec);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("CNI plugin second DEL failed with exit status 1: not json"),
            std::string::npos)
      << s.message();
  ASSERT_EQ(exec.calls.size(), 3u);
  EXPECT_EQ(exec.calls[0].plugin, "third");
  EXPECT_EQ(exec.calls[1].plugin, "second");
  EXPECT_EQ(exec.calls[2].plugin, "first");
  for (const auto& c : exec.calls) {
    EXPECT_EQ(EnvValue(c.env, "CNI_COMMAND"), "DEL");
    EXPECT_EQ(Json::parse(c.config)["prevResult"], cached);
  }
}

TEST_F(CniTest, FindPlugin) {
  auto found = FindPlugin("second", Path());
  ASSERT_TRUE(found.ok());
  EXPECT_EQ(*found, (dir_ / "second").string());
  std::ofstream(dir_ / "plain") << "not executable";
  fs::permissions(dir_ / "plain", fs::perms::owner_read);
  auto missing = FindPlugin("plain", Path());
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("CNI plugin \"plain\" not found in /nonexistent:"),
            std::string::npos);
  FakeExecutor exec;
  auto net = CniNetwork::FromConflist(
      Json{{"cniVersion", "1.0.0"}, {"name", "n"}, {"plugins", {{{"type", "absent"}}}}});
  ASSERT_TRUE(net.ok());
  EXPECT_FALSE(net->Add(Runtime(), Path(), exec).ok());
  EXPECT_TRUE(exec.calls.empty());
}

TEST_F(CniTest, ParseBridgeResult) {
  // The shape Debian's bridge + host-local print (trimmed).
  Json result = Json::parse(R"({
    "cniVersion": "1.0.0",
    "interfaces": [
      {"name": "bhbr1", "mac": "aa:bb:cc:00:00:01"},
      {"name": "veth1234", "mac": "aa:bb:cc:00:00:02"},
      {"name": "eth0", "mac": "aa:bb:cc:00:00:03", "sandbox": "/run/netns/n1"}],
    "ips": [
      {"interface": 2, "address": "10.210.0.2/24", "gateway": "10.210.0.1"},
      {"interface": 2, "address": "fd00:b4:1ab::2/64", "gateway": "fd00:b4:1ab::1"}]})");
  auto a = ParseAddResult(result, "/run/netns/n1", "bhbr1");
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->host_interface, "veth1234");
  ASSERT_EQ(a->ips.size(), 2u);
  EXPECT_EQ(a->ips[0].ToString(), "10.210.0.2");
  EXPECT_EQ(a->ips[1].ToString(), "fd00:b4:1ab::2");
  // Another netns's addresses are not this container's.
  EXPECT_FALSE(ParseAddResult(result, "/run/netns/other", "bhbr1").ok());
  Json bad_index = result;
  bad_index["ips"][0]["interface"] = 7;
  auto bi = ParseAddResult(bad_index, "/run/netns/n1", "bhbr1");
  ASSERT_FALSE(bi.ok());
  EXPECT_NE(bi.status().message().find("ips[0] does not name an interface"), std::string::npos);
  Json no_veth = result;
  no_veth["interfaces"].erase(1);
  EXPECT_FALSE(ParseAddResult(no_veth, "/run/netns/n1", "bhbr1").ok());
}

TEST_F(CniTest, ProcessExecutorRunsAPluginWithItsEnvironmentAndStdin) {
  // A script plugin that echoes what a runtime gave it: the real fork/exec path, no netns.
  MakeExecutable(
      "echoer",
      "#!/bin/sh\n"
      "config=$(cat)\n"
      "printf '{\"cniVersion\":\"1.0.0\",\"command\":\"%s\",\"ifname\":\"%s\",\"config\":%s}'"
      " \"$CNI_COMMAND\" \"$CNI_IFNAME\" \"$config\"\n");
  auto net = CniNetwork::FromConflist(
      Json{{"cniVersion", "1.0.0"}, {"name", "n"}, {"plugins", {{{"type", "echoer"}}}}});
  ASSERT_TRUE(net.ok());
  ProcessPluginExecutor exec("");
  auto result = net->Add(Runtime(), Path(), exec);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ((*result)["command"], "ADD");
  EXPECT_EQ((*result)["ifname"], "eth0");
  EXPECT_EQ((*result)["config"]["name"], "n");
  // A plugin that fails with a CNI error object.
  MakeExecutable("failer",
                 "#!/bin/sh\necho '{\"code\":7,\"msg\":\"bad config\"}'\necho oops >&2\nexit 1\n");
  auto failing = CniNetwork::FromConflist(
      Json{{"cniVersion", "1.0.0"}, {"name", "n"}, {"plugins", {{{"type", "failer"}}}}});
  ASSERT_TRUE(failing.ok());
  auto err = failing->Add(Runtime(), Path(), exec);
  ASSERT_FALSE(err.ok());
  EXPECT_NE(err.status().message().find("bad config (code 7)"), std::string::npos);
  EXPECT_NE(err.status().message().find("[stderr: oops]"), std::string::npos);
}

TEST(LabCni, WorkloadConflistAndArgs) {
  LabSpec spec;
  spec.name = "demo";
  spec.ipv4_subnet = common::Cidr::Parse("10.1.2.0/24");
  spec.ipv6_subnet = common::Cidr::Parse("fd00:1::/64");
  LabNames names{"demo", "/run/bulkhead/lab"};
  Json c = WorkloadConflist(spec, names);
  ASSERT_TRUE(CniNetwork::FromConflist(c).ok());
  ASSERT_EQ(c["plugins"].size(), 2u);
  const Json& bridge = c["plugins"][0];
  EXPECT_EQ(bridge["type"], "bridge");
  EXPECT_EQ(bridge["bridge"], names.Bridge());
  EXPECT_EQ(bridge["isGateway"], true);
  EXPECT_EQ(bridge["ipam"]["type"], "host-local");
  EXPECT_EQ(bridge["ipam"]["dataDir"], "/run/bulkhead/lab/demo/ipam");
  EXPECT_EQ(bridge["ipam"]["ranges"][0][0]["subnet"], "10.1.2.0/24");
  EXPECT_EQ(bridge["ipam"]["ranges"][1][0]["subnet"], "fd00:1::/64");
  EXPECT_EQ(c["plugins"][1]["type"], "bulkhead-cni");
  EXPECT_EQ(c["plugins"][1]["agentSocket"], "/run/bulkhead/lab/demo/agent.sock");
  spec.ipv6_subnet.reset();
  EXPECT_EQ(WorkloadConflist(spec, names)["plugins"][0]["ipam"]["ranges"].size(), 1u);

  LabWorkload w;
  w.namespace_name = "x";
  w.name = "a";
  w.labels = {{"pod", "a"}, {"tier", "1"}};
  w.service_account = "sa";
  EXPECT_EQ(WorkloadCniArgs(w, "cid"),
            "IgnoreUnknown=1;K8S_POD_NAMESPACE=x;K8S_POD_NAME=a;K8S_POD_INFRA_CONTAINER_ID=cid");
  Json args = WorkloadNetconfArgs(w);
  EXPECT_EQ(args["cni"]["labels"],
            Json::parse(R"([{"key":"pod","value":"a"},{"key":"tier","value":"1"}])"));
  EXPECT_EQ(args["bulkhead"]["serviceAccount"], "sa");
  // Without named ports the key is absent (bulkhead-cni needs no new field for them).
  EXPECT_FALSE(args["bulkhead"].contains("namedPorts"));
  w.ports = {{80, policy::Protocol::kTCP, "http"},
             {81, policy::Protocol::kUDP, ""},
             {82, policy::Protocol::kSCTP, "sig"}};
  EXPECT_EQ(WorkloadNetconfArgs(w)["bulkhead"]["namedPorts"],
            Json::parse(R"([{"name":"http","port":80,"protocol":"TCP"},
                            {"name":"sig","port":82,"protocol":"SCTP"}])"));
}

}  // namespace
}  // namespace bulkhead::lab
