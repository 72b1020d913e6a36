// bulkhead-cni without a kernel or an agent: configuration, CNI_ARGS and prevResult parsing
// (table-driven bad inputs with their CNI codes), the error JSON, and ADD, DEL, CHECK and
// VERSION against a scripted agent.
#include "cni/cni.h"

#include <gtest/gtest.h>

#include <deque>

#include "absl/status/status.h"

namespace bulkhead::cni {
namespace {

using nlohmann::json;

// What the bridge plugin reports: the bridge, the host veth, the container interface.
json BridgeResult() {
  return json::parse(R"({
    "cniVersion": "1.0.0",
    "interfaces": [
      {"name": "bhbr0", "mac": "aa:00:00:00:00:01"},
      {"name": "veth1234", "mac": "aa:00:00:00:00:02"},
      {"name": "eth0", "mac": "aa:00:00:00:00:03", "sandbox": "/var/run/netns/pod1"}
    ],
    "ips": [
      {"address": "10.77.0.5/24", "gateway": "10.77.0.1", "interface": 2},
      {"address": "fd00:77::5/64", "gateway": "fd00:77::1", "interface": 2}
    ],
    "routes": [{"dst": "0.0.0.0/0"}],
    "dns": {}
  })");
}

std::string Driver(const std::string& name) {
  if (name == "bhbr0") return "bridge";
  if (name.rfind("veth", 0) == 0) return "veth";
  return "";
}

json Conf(const json& prev = BridgeResult()) {
  json c = {{"cniVersion", "1.0.0"},
            {"name", "podnet"},
            {"type", "bulkhead-cni"},
            {"agentSocket", "/run/test/agent.sock"},
            {"args",
             {{"cni", {{"labels", json::array({{{"key", "app"}, {"value", "web"}}})}}},
              {"bulkhead", {{"serviceAccount", "web-sa"}}}}}};
  if (!prev.is_null()) c["prevResult"] = prev;
  return c;
}

Environment Env(const std::string& command) {
  Environment e;
  e.command = command;
  e.container_id = "c0ffee";
  e.netns = "/var/run/netns/pod1";
  e.ifname = "eth0";
  e.args = "IgnoreUnknown=1;K8S_POD_NAMESPACE=shop;K8S_POD_NAME=web-1";
  e.path = "/usr/lib/cni";
  return e;
}

// An agent that records requests and answers from a script.
struct ScriptedAgent {
  std::vector<std::pair<std::string, json>> requests;
  std::deque<absl::StatusOr<json>> answers;
  PluginIo Io() {
    PluginIo io;
    io.call_agent = [this](const std::string& socket, const json& req) -> absl::StatusOr<json> {
      requests.emplace_back(socket, req);
      if (answers.empty()) return absl::UnavailableError("no answer scripted");
      auto a = answers.front();
      answers.pop_front();
      return a;
    };
    io.driver_of = Driver;
    return io;
  }
};

struct Outcome {
  int rc = -1;
  json out;
};

Outcome Invoke(const Environment& env, const json& conf, ScriptedAgent& agent) {
  std::string out;
  Outcome r;
  r.rc = RunPlugin(env, conf.dump(), agent.Io(), &out);
  r.out = out.empty() ? json() : json::parse(out);
  return r;
}

TEST(CniArgs, Parses) {
  auto a = ParseCniArgs("IgnoreUnknown=1;K8S_POD_NAMESPACE=ns;K8S_POD_NAME=p;EMPTY=");
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->at("K8S_POD_NAMESPACE"), "ns");
  EXPECT_EQ(a->at("K8S_POD_NAME"), "p");
  EXPECT_EQ(a->at("EMPTY"), "");
  EXPECT_TRUE(ParseCniArgs("")->empty());
  EXPECT_TRUE(ParseCniArgs("A=1;;B=2").ok());
  EXPECT_FALSE(ParseCniArgs("A=1;nonsense").ok());
  EXPECT_FALSE(ParseCniArgs("=1").ok());
}

TEST(NetConf, ParsesWhatThePluginUses) {
  NetConf c;
  ASSERT_FALSE(ParseNetConf(Conf().dump(), &c).has_value());
  EXPECT_EQ(c.cni_version, "1.0.0");
  EXPECT_EQ(c.name, "podnet");
  EXPECT_EQ(c.agent_socket, "/run/test/agent.sock");
  EXPECT_EQ(c.labels, (std::map<std::string, std::string>{{"app", "web"}}));
  EXPECT_EQ(c.service_account, "web-sa");
  ASSERT_TRUE(c.prev_result.has_value());

  NetConf d;
  ASSERT_FALSE(ParseNetConf(R"({"cniVersion": "0.4.0", "name": "n"})", &d).has_value());
  EXPECT_EQ(d.agent_socket, "/run/bulkhead/agent.sock");
  EXPECT_EQ(d.service_account, "default");
  EXPECT_TRUE(d.labels.empty());
  EXPECT_TRUE(d.named_ports.empty());
  EXPECT_FALSE(d.prev_result.has_value());
}

TEST(NetConf, NamedPorts) {
  json conf = Conf();
  conf["args"]["bulkhead"]["namedPorts"] = json::parse(R"([
      {"name": "http", "port": 8080, "protocol": "TCP"},
      {"name": "dns", "port": 53, "protocol": "UDP"},
      {"name": "sig", "port": 2905, "protocol": "SCTP"},
      {"name": "admin", "port": 9000}])");
  NetConf c;
  ASSERT_FALSE(ParseNetConf(conf.dump(), &c).has_value());
  using P = policy::Protocol;
  EXPECT_EQ(c.named_ports, (std::vector<agent::RegisteredPort>{{"http", P::kTCP, 8080},
                                                               {"dns", P::kUDP, 53},
                                                               {"sig", P::kSCTP, 2905},
                                                               {"admin", P::kTCP, 9000}}));
  EXPECT_EQ(c.service_account, "web-sa");
}

TEST(NetConf, BadConfigurationsGetTheirCode) {
  struct Case {
    std::string text;
    int code;
    std::string msg;
  };
  auto edit = [](auto f) {
    json c = Conf();
    f(c);
    return c.dump();
  };
  const std::vector<Case> cases = {
      {"{not json", kDecodingFailure, "not JSON"},
      {"[1, 2]", kDecodingFailure, "not an object"},
      {edit([](json& c) { c.erase("cniVersion"); }), kInvalidConfig, "\"cniVersion\" is missing"},
      {edit([](json& c) { c.erase("name"); }), kInvalidConfig, "\"name\" is missing"},
      {edit([](json& c) { c["name"] = 5; }), kInvalidConfig, "\"name\" must be a string"},
      {edit([](json& c) { c["cniVersion"] = "0.3.1"; }), kIncompatibleVersion,
       "cniVersion 0.3.1 is not supported (supported: 0.4.0, 1.0.0)"},
      {edit([](json& c) { c["agentSocket"] = "agent.sock"; }), kInvalidConfig,
       "\"agentSocket\" must be an absolute path"},
      {edit([](json& c) { c["agentSocket"] = 7; }), kInvalidConfig,
       "\"agentSocket\" must be a string"},
      {edit([](json& c) { c["prevResult"] = "x"; }), kInvalidConfig,
       "\"prevResult\" must be an object"},
      {edit([](json& c) { c["args"] = 1; }), kInvalidConfig, "args: must be an object"},
      {edit([](json& c) { c["args"]["cni"]["labels"] = json::object(); }), kInvalidConfig,
       "args.cni.labels: must be a list"},
      {edit([](json& c) {
         c["args"]["cni"]["labels"] = json::array({{{"key", "a"}}});
       }),
       kInvalidConfig, "args.cni.labels[0]: must be {\"key\": string, \"value\": string}"},
      {edit([](json& c) {
         c["args"]["cni"]["labels"] =
             json::array({{{"key", "a"}, {"value", "1"}}, {{"key", "a"}, {"value", "2"}}});
       }),
       kInvalidConfig, "args.cni.labels[1]: label a is given twice"},
      {edit([](json& c) { c["args"]["bulkhead"]["colour"] = "red"; }), kUnsupportedField,
       "args.bulkhead.colour: unknown field (value \"red\")"},
      {edit([](json& c) { c["args"]["bulkhead"]["serviceAccount"] = true; }), kInvalidConfig,
       "args.bulkhead.serviceAccount: must be a string"},
      {edit([](json& c) { c["args"]["bulkhead"]["namedPorts"] = "http"; }), kInvalidConfig,
       "args.bulkhead.namedPorts: must be a list of {\"name\": string"},
      {edit([](json& c) { c["args"]["bulkhead"]["namedPorts"] = json::array({1}); }),
       kInvalidConfig, "args.bulkhead.namedPorts[0]: must be an object"},
      {edit(
           [](json& c) { c["args"]["bulkhead"]["namedPorts"] = json::parse(R"([{"port": 80}])"); }),
       kInvalidConfig, "args.bulkhead.namedPorts[0].name: must be a string"},
      {edit([](json& c) {
         c["args"]["bulkhead"]["namedPorts"] = json::parse(R"([{"name": "a", "port": "80"}])");
       }),
       kInvalidConfig, "args.bulkhead.namedPorts[0].port: must be a number 1-65535"},
      {edit([](json& c) {
         c["args"]["bulkhead"]["namedPorts"] =
             json::parse(R"([{"name": "a", "port": 80}, {"name": "b", "port": 0}])");
       }),
       kInvalidConfig, "args.bulkhead.namedPorts[1].port: must be a number 1-65535"},
      {edit([](json& c) {
         c["args"]["bulkhead"]["namedPorts"] = json::parse(R"([{"name": "a", "port": 65536}])");
       }),
       kInvalidConfig, "args.bulkhead.namedPorts[0].port: must be a number 1-65535"},
      {edit([](json& c) {
         c["args"]["bulkhead"]["namedPorts"] =
             json::parse(R"([{"name": "a", "port": 80, "protocol": "ICMP"}])");
       }),
       kInvalidConfig,
       "args.bulkhead.namedPorts[0].protocol: \"ICMP\" is not \"TCP\", \"UDP\" or \"SCTP\""},
      {edit([](json& c) {
         c["args"]["bulkhead"]["namedPorts"] =
             json::parse(R"([{"name": "a", "port": 80, "protocol": "tcp"}])");
       }),
       kInvalidConfig, "args.bulkhead.namedPorts[0].protocol: \"tcp\" is not"},
      {edit([](json& c) {
         c["args"]["bulkhead"]["namedPorts"] =
             json::parse(R"([{"name": "a", "port": 80, "hostPort": 8080}])");
       }),
       kUnsupportedField, "args.bulkhead.namedPorts[0].hostPort: unknown field"},
  };
  for (const Case& c : cases) {
    NetConf out;
    auto e = ParseNetConf(c.text, &out);
    ASSERT_TRUE(e.has_value()) << c.text;
    EXPECT_EQ(e->code, c.code) << c.text << ": " << e->msg;
    EXPECT_NE(e->msg.find(c.msg), std::string::npos) << "want: " << c.msg << "\ngot:  " << e->msg;
  }
}

TEST(PrevResult, FindsTheVethAndThePodsAddresses) {
  PodNetwork net;
  ASSERT_FALSE(ParsePrevResult(BridgeResult(), "eth0", Driver, &net).has_value());
  EXPECT_EQ(net.host_interface, "veth1234");
  EXPECT_EQ(net.ips, (std::vector<std::string>{"10.77.0.5", "fd00:77::5"}));

  // ptp-style: only the host veth has no sandbox, so no driver is needed; 0.4.0 fields.
  json ptp = json::parse(R"({
    "cniVersion": "0.4.0",
    "interfaces": [{"name": "vethabc"}, {"name": "eth1", "sandbox": "/proc/7/ns/net"}],
    "ips": [{"version": "4", "address": "10.5.0.2/32", "interface": 1},
            {"version": "4", "address": "10.5.0.1/32", "interface": 0}]
  })");
  ASSERT_FALSE(ParsePrevResult(ptp, "eth1", nullptr, &net).has_value());
  EXPECT_EQ(net.host_interface, "vethabc");
  EXPECT_EQ(net.ips, (std::vector<std::string>{"10.5.0.2"}));  // not the host side's address

  // Addresses without an interface index belong to the pod.
  json bare = BridgeResult();
  bare["ips"] = json::array({{{"address", "10.77.0.9/24"}}});
  ASSERT_FALSE(ParsePrevResult(bare, "eth0", Driver, &net).has_value());
  EXPECT_EQ(net.ips, (std::vector<std::string>{"10.77.0.9"}));
}

TEST(PrevResult, BadResultsAreInvalidConfig) {
  struct Case {
    std::function<void(json&)> edit;
    std::string ifname;
    std::string msg;
  };
  const std::vector<Case> cases = {
      {[](json&) {}, "eth9", "prevResult has no interface eth9 in a sandbox"},
      {[](json& p) { p["interfaces"][2].erase("sandbox"); }, "eth0", "no interface eth0"},
      {[](json& p) { p["interfaces"] = 3; }, "eth0", "prevResult.interfaces: must be a list"},
      {[](json& p) { p["interfaces"][1] = json::object(); }, "eth0",
       "prevResult.interfaces[1]: must be an object with a name"},
      {[](json& p) {
         p["interfaces"][1]["name"] = "veth9";
         p["interfaces"][0]["name"] = "veth8";
       },
       "eth0",
       "cannot tell the host side of eth0's veth among the interfaces without a sandbox "
       "(veth8, veth9)"},
      {[](json& p) { p["interfaces"][1]["name"] = "tap0"; }, "eth0", "cannot tell the host side"},
      {[](json& p) { p["ips"] = json::array(); }, "eth0", "prevResult has no address for eth0"},
      {[](json& p) {
         p["ips"][0]["interface"] = 1;
         p["ips"][1]["interface"] = 0;
       },
       "eth0", "no address for eth0"},
      {[](json& p) { p["ips"][0].erase("address"); }, "eth0",
       "prevResult.ips[0]: must be an object with an address"},
      {[](json& p) { p["ips"][1]["interface"] = "2"; }, "eth0",
       "prevResult.ips[1].interface: must be an index"},
  };
  for (const Case& c : cases) {
    json prev = BridgeResult();
    c.edit(prev);
    PodNetwork net;
    auto e = ParsePrevResult(prev, c.ifname, Driver, &net);
    ASSERT_TRUE(e.has_value()) << prev.dump();
    EXPECT_EQ(e->code, kInvalidConfig);
    EXPECT_NE(e->msg.find(c.msg), std::string::npos) << "want: " << c.msg << "\ngot:  " << e->msg;
  }
}

TEST(ErrorJson, HasTheSpecsFields) {
  json j = CniError{kTryAgainLater, "agent down", "connect: refused"}.ToJson("0.4.0");
  EXPECT_EQ(j, json::parse(R"({"cniVersion": "0.4.0", "code": 11, "msg": "agent down",
                               "details": "connect: refused"})"));
  const CniError bare{kInvalidConfig, "x", ""};
  EXPECT_FALSE(bare.ToJson("1.0.0").contains("details"));
}

TEST(Plugin, VersionListsWhatIsSupported) {
  ScriptedAgent agent;
  std::string out;
  EXPECT_EQ(RunPlugin(Env("VERSION"), R"({"cniVersion": "0.4.0"})", agent.Io(), &out), 0);
  EXPECT_EQ(json::parse(out), json::parse(R"({"cniVersion": "0.4.0",
                                             "supportedVersions": ["0.4.0", "1.0.0"]})"));
  EXPECT_EQ(RunPlugin(Env("VERSION"), "", agent.Io(), &out), 0);
  EXPECT_EQ(json::parse(out).value("cniVersion", ""), "1.0.0");
  EXPECT_TRUE(agent.requests.empty());
}

TEST(Plugin, AddRegistersAndPassesThePreviousResultOn) {
  ScriptedAgent agent;
  agent.answers.push_back(json{{"enforced", true}, {"error", ""}});
  Outcome r = Invoke(Env("ADD"), Conf(), agent);
  ASSERT_EQ(r.rc, 0) << r.out.dump();
  EXPECT_EQ(r.out, BridgeResult());
  ASSERT_EQ(agent.requests.size(), 1u);
  EXPECT_EQ(agent.requests[0].first, "/run/test/agent.sock");
  EXPECT_EQ(agent.requests[0].second, json::parse(R"({"method": "endpoint-add", "endpoint": {
      "id": "c0ffee/eth0", "namespace": "shop", "name": "web-1", "labels": {"app": "web"},
      "serviceAccount": "web-sa", "netns": "/var/run/netns/pod1", "interface": "eth0",
      "hostInterface": "veth1234", "ips": ["10.77.0.5", "fd00:77::5"]}})"));

  // Named ports go to the agent as the registration's namedPorts (protocol written out).
  ScriptedAgent named;
  named.answers.push_back(json{{"enforced", true}, {"error", ""}});
  json conf = Conf();
  conf["args"]["bulkhead"]["namedPorts"] =
      json::parse(R"([{"name": "http", "port": 8080}, {"name": "dns", "port": 53,
                       "protocol": "UDP"}])");
  r = Invoke(Env("ADD"), conf, named);
  ASSERT_EQ(r.rc, 0) << r.out.dump();
  ASSERT_EQ(named.requests.size(), 1u);
  EXPECT_EQ(named.requests[0].second["endpoint"]["namedPorts"],
            json::parse(R"([{"name": "http", "port": 8080, "protocol": "TCP"},
                            {"name": "dns", "port": 53, "protocol": "UDP"}])"));
}

TEST(Plugin, AddErrorsCarryTheirCode) {
  struct Case {
    std::string what;
    std::function<void(Environment&, json&)> edit;
    std::optional<absl::StatusOr<json>> answer;
    int code;
    std::string msg;
  };
  const std::vector<Case> cases = {
      {"no pod name", [](Environment& e, json&) { e.args = "K8S_POD_NAMESPACE=shop"; },
       std::nullopt, kInvalidEnvironment, "CNI_ARGS: K8S_POD_NAME is missing"},
      {"no CNI_ARGS", [](Environment& e, json&) { e.args.clear(); }, std::nullopt,
       kInvalidEnvironment, "K8S_POD_NAMESPACE is missing"},
      {"bad CNI_ARGS", [](Environment& e, json&) { e.args = "x"; }, std::nullopt,
       kInvalidEnvironment, "CNI_ARGS: \"x\" is not KEY=VALUE"},
      {"bad pod name",
       [](Environment& e, json&) { e.args = "K8S_POD_NAMESPACE=shop;K8S_POD_NAME=Web_1"; },
       std::nullopt, kInvalidEnvironment, "CNI_ARGS K8S_POD_NAME: endpoint.name: \"Web_1\""},
      {"no netns", [](Environment& e, json&) { e.netns.clear(); }, std::nullopt,
       kInvalidEnvironment, "missing environment variable CNI_NETNS"},
      {"no container id", [](Environment& e, json&) { e.container_id.clear(); }, std::nullopt,
       kInvalidEnvironment, "CNI_CONTAINERID"},
      {"no prevResult", [](Environment&, json& c) { c.erase("prevResult"); }, std::nullopt,
       kInvalidConfig, "prevResult is missing: bulkhead-cni is a chained plugin"},
      {"bad label",
       [](Environment&, json& c) {
         c["args"]["cni"]["labels"] = json::array({{{"key", "app"}, {"value", "a b"}}});
       },
       std::nullopt, kInvalidConfig, "args.cni.labels: endpoint.labels.app: \"a b\""},
      {"bad service account",
       [](Environment&, json& c) { c["args"]["bulkhead"]["serviceAccount"] = "Nope!"; },
       std::nullopt, kInvalidConfig, "args.bulkhead.serviceAccount: endpoint.serviceAccount"},
      {"bad port name",
       [](Environment&, json& c) {
         c["args"]["bulkhead"]["namedPorts"] = json::parse(R"([{"name": "Web", "port": 80}])");
       },
       std::nullopt, kInvalidConfig,
       "args.bulkhead.namedPorts: endpoint.namedPorts[0].name: \"Web\" is not a valid port "
       "name: must contain only lower case letters"},
      {"port name of digits only",
       [](Environment&, json& c) {
         c["args"]["bulkhead"]["namedPorts"] = json::parse(R"([{"name": "8080", "port": 80}])");
       },
       std::nullopt, kInvalidConfig, "must contain at least one letter"},
      {"port name twice",
       [](Environment&, json& c) {
         c["args"]["bulkhead"]["namedPorts"] = json::parse(
             R"([{"name": "web", "port": 80}, {"name": "web", "port": 81, "protocol": "UDP"}])");
       },
       std::nullopt, kInvalidConfig,
       "args.bulkhead.namedPorts: endpoint.namedPorts[1].name: \"web\" is listed twice"},
      {"agent down", [](Environment&, json&) {},
       absl::StatusOr<json>(absl::UnavailableError("cannot reach the agent")), kTryAgainLater,
       "registering shop/web-1 (c0ffee/eth0) with the agent at /run/test/agent.sock failed"},
      {"agent slow", [](Environment&, json&) {},
       absl::StatusOr<json>(absl::DeadlineExceededError("late")), kTryAgainLater, "failed"},
      {"agent refuses", [](Environment&, json&) {},
       absl::StatusOr<json>(absl::AlreadyExistsError("address 10.77.0.5 is used")), kAgentRefused,
       "failed"},
      {"agent finds it invalid", [](Environment&, json&) {},
       absl::StatusOr<json>(absl::InvalidArgumentError("endpoint.ips[0]: ...")), kInvalidConfig,
       "failed"},
      {"registered but not enforced", [](Environment&, json&) {},
       absl::StatusOr<json>(json{{"enforced", false}, {"error", "no interface veth1234"}}),
       kAgentRefused, "shop/web-1 is registered but not enforced"},
      {"unsupported version", [](Environment&, json& c) { c["cniVersion"] = "0.2.0"; },
       std::nullopt, kIncompatibleVersion, "cniVersion 0.2.0 is not supported"},
  };
  for (const Case& c : cases) {
    Environment env = Env("ADD");
    json conf = Conf();
    c.edit(env, conf);
    ScriptedAgent agent;
    if (c.answer) agent.answers.push_back(*c.answer);
    Outcome r = Invoke(env, conf, agent);
    EXPECT_EQ(r.rc, 1) << c.what;
    EXPECT_EQ(r.out.value("code", 0), c.code) << c.what << ": " << r.out.dump();
    EXPECT_NE(r.out.value("msg", "").find(c.msg), std::string::npos)
        << c.what << "\nwant: " << c.msg << "\ngot:  " << r.out.dump();
    EXPECT_EQ(r.out.value("cniVersion", ""),
              conf.value("cniVersion", "") == "0.2.0" ? "1.0.0" : conf.value("cniVersion", ""));
    // The agent is asked only once the input is good.
    EXPECT_EQ(agent.requests.size(), c.answer ? 1u : 0u) << c.what;
    if (c.answer && !c.answer->ok()) {
      EXPECT_EQ(r.out.value("details", ""), c.answer->status().message()) << c.what;
    }
  }
}

TEST(Plugin, DelAsksTheAgentAndFailsOnlyWhenItCannot) {
  ScriptedAgent agent;
  agent.answers.push_back(json{{"id", "c0ffee/eth0"}, {"removed", false}});
  // DEL needs neither prevResult nor the pod's name nor a netns.
  Environment env = Env("DEL");
  env.netns.clear();
  env.args.clear();
  Outcome r = Invoke(env, Conf(nullptr), agent);
  EXPECT_EQ(r.rc, 0) << r.out.dump();
  EXPECT_TRUE(r.out.is_null());
  ASSERT_EQ(agent.requests.size(), 1u);
  EXPECT_EQ(agent.requests[0].second,
            json::parse(R"({"method":"endpoint-del","id":"c0ffee/eth0"})"));

  agent.answers.push_back(absl::UnavailableError("cannot reach the agent"));
  r = Invoke(env, Conf(nullptr), agent);
  EXPECT_EQ(r.rc, 1);
  EXPECT_EQ(r.out.value("code", 0), kTryAgainLater);
  EXPECT_NE(r.out.value("msg", "").find("removing endpoint c0ffee/eth0"), std::string::npos);

  env.container_id.clear();
  r = Invoke(env, Conf(nullptr), agent);
  EXPECT_EQ(r.out.value("code", 0), kInvalidEnvironment);
}

TEST(Plugin, CheckComparesWhatTheAgentHolds) {
  const json registered = json::parse(R"({"id": "c0ffee/eth0", "namespace": "shop",
      "name": "web-1", "labels": {"app": "web"}, "serviceAccount": "web-sa",
      "netns": "/var/run/netns/pod1", "interface": "eth0", "hostInterface": "veth1234",
      "ips": ["10.77.0.5", "fd00:77::5"]})");
  auto answer = [&](bool enforced, const json& endpoint) {
    return json{{"enforced", enforced},
                {"error", enforced ? "" : "programs not attached"},
                {"endpoint", endpoint}};
  };
  ScriptedAgent agent;
  agent.answers.push_back(answer(true, registered));
  Outcome r = Invoke(Env("CHECK"), Conf(), agent);
  EXPECT_EQ(r.rc, 0) << r.out.dump();
  ASSERT_EQ(agent.requests.size(), 1u);
  EXPECT_EQ(agent.requests[0].second.value("method", ""), "endpoint-get");

  struct Case {
    absl::StatusOr<json> answer;
    int code;
    std::string msg;
  };
  json other_ips = registered;
  other_ips["ips"] = {"10.77.0.6"};
  json other_labels = registered;
  other_labels["labels"] = {{"app", "db"}};
  json other_ports = registered;
  other_ports["namedPorts"] = json::parse(R"([{"name": "http", "port": 80}])");
  const std::vector<Case> cases = {
      {answer(false, registered), kCheckFailed, "shop/web-1 is not enforced"},
      {answer(true, other_ips), kCheckFailed, "registered differently: ips 10.77.0.6"},
      {answer(true, other_labels), kCheckFailed, "registered differently: labels"},
      {answer(true, other_ports), kCheckFailed, "registered differently: namedPorts"},
      {absl::NotFoundError("endpoint c0ffee/eth0 is not registered"), kCheckFailed,
       "endpoint c0ffee/eth0 (shop/web-1) is not registered with the agent"},
      {absl::UnavailableError("cannot reach the agent"), kTryAgainLater, "asking the agent"},
  };
  for (const Case& c : cases) {
    ScriptedAgent a;
    a.answers.push_back(c.answer);
    Outcome run = Invoke(Env("CHECK"), Conf(), a);
    EXPECT_EQ(run.rc, 1);
    EXPECT_EQ(run.out.value("code", 0), c.code) << run.out.dump();
    EXPECT_NE(run.out.value("msg", "").find(c.msg), std::string::npos)
        << "want: " << c.msg << "\ngot:  " << run.out.dump();
  }
  ScriptedAgent a;
  Outcome run = Invoke(Env("CHECK"), Conf(nullptr), a);
  EXPECT_EQ(run.out.value("code", 0), kInvalidConfig);
  EXPECT_TRUE(a.requests.empty());
}

TEST(Plugin, UnknownCommandsAreInvalidEnvironment) {
  ScriptedAgent agent;
  for (const char* cmd : {"", "GC", "add"}) {
    Outcome r = Invoke(Env(cmd), Conf(), agent);
    EXPECT_EQ(r.rc, 1) << cmd;
    EXPECT_EQ(r.out.value("code", 0), kInvalidEnvironment) << cmd;
    EXPECT_NE(r.out.value("msg", "").find("CNI_COMMAND"), std::string::npos) << cmd;
  }
  EXPECT_TRUE(agent.requests.empty());
}

TEST(Plugin, ReadsTheEnvironment) {
  std::map<std::string, std::string> vars = {
      {"CNI_COMMAND", "ADD"}, {"CNI_CONTAINERID", "c"},       {"CNI_NETNS", "/n"},
      {"CNI_IFNAME", "eth0"}, {"CNI_ARGS", "K8S_POD_NAME=p"}, {"CNI_PATH", "/p"}};
  Environment e = ReadEnvironment([&](const char* name) -> const char* {
    auto it = vars.find(name);
    return it == vars.end() ? nullptr : it->second.c_str();
  });
  EXPECT_EQ(e.command, "ADD");
  EXPECT_EQ(e.container_id, "c");
  EXPECT_EQ(e.netns, "/n");
  EXPECT_EQ(e.ifname, "eth0");
  EXPECT_EQ(e.args, "K8S_POD_NAME=p");
  EXPECT_EQ(e.path, "/p");
  vars.clear();
  EXPECT_EQ(ReadEnvironment([&](const char*) -> const char* { return nullptr; }).command, "");
}

}  // namespace
}  // namespace bulkhead::cni

// The registration the plugin sends, as the agent decodes it: namedPorts round trip (absent
// when empty, so registrations without them hash as before) and bad entries named.
namespace bulkhead::cni {
namespace {

TEST(Registration, NamedPortsRoundTripAndErrors) {
  json j = json::parse(R"({"id": "c/eth0", "namespace": "shop", "name": "web-1",
      "netns": "/var/run/netns/p", "interface": "eth0", "hostInterface": "veth1",
      "ips": ["10.0.0.5"]})");
  auto plain = agent::ParseRegistration(j);
  ASSERT_TRUE(plain.ok()) << plain.status();
  EXPECT_FALSE(plain->ToJson().contains("namedPorts"));
  j["namedPorts"] = json::parse(R"([{"name": "http", "port": 80},
                                    {"name": "sig", "port": 2905, "protocol": "SCTP"}])");
  auto named = agent::ParseRegistration(j);
  ASSERT_TRUE(named.ok()) << named.status();
  ASSERT_EQ(named->named_ports.size(), 2u);
  EXPECT_EQ(named->named_ports[1], (agent::RegisteredPort{"sig", policy::Protocol::kSCTP, 2905}));
  EXPECT_EQ(named->ToJson()["namedPorts"],
            json::parse(R"([{"name": "http", "port": 80, "protocol": "TCP"},
                            {"name": "sig", "port": 2905, "protocol": "SCTP"}])"));
  EXPECT_EQ(*agent::ParseRegistration(named->ToJson()), *named);

  const std::vector<std::pair<std::string, std::string>> bad = {
      {R"("http")", "endpoint.namedPorts: must be a list"},
      {R"([{"name": "http", "port": 80, "x": 1}])", "endpoint.namedPorts[0].x: unknown field"},
      {R"([{"name": "http"}])", "endpoint.namedPorts[0].port: must be a number 1-65535"},
      {R"([{"name": "http", "port": 80, "protocol": "ICMP"}])",
       "endpoint.namedPorts[0].protocol: ICMP has no ports"},
      {R"([{"name": "http", "port": 80, "protocol": "GRE"}])",
       "endpoint.namedPorts[0].protocol: must be TCP, UDP or SCTP"},
      {R"([{"name": "-http", "port": 80}])",
       "endpoint.namedPorts[0].name: \"-http\" is not a valid port name"},
      {R"([{"name": "a", "port": 80}, {"name": "a", "port": 81}])",
       "endpoint.namedPorts[1].name: \"a\" is listed twice"},
  };
  for (const auto& [ports, want] : bad) {
    j["namedPorts"] = json::parse(ports);
    agent::RegistrationError where;
    auto r = agent::ParseRegistration(j, "endpoint", &where);
    ASSERT_FALSE(r.ok()) << ports;
    EXPECT_EQ(where.field, agent::RegistrationField::kNamedPorts) << ports;
    EXPECT_NE(r.status().message().find(want), std::string::npos)
        << "want: " << want << "\ngot:  " << r.status().message();
  }
}

}  // namespace
}  // namespace bulkhead::cni
