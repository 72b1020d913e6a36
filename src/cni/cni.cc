// bulkhead-cni: configuration, environment and prevResult parsing, and the ADD, DEL, CHECK and
// VERSION commands against the agent's endpoint API.
#include "cni/cni.h"

#include <algorithm>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "agent/client.h"
#include "agent/endpoint_registration.h"

namespace bulkhead::cni {
namespace {

using nlohmann::json;

CniError Error(int code, std::string msg, std::string details = "") {
  return CniError{code, std::move(msg), std::move(details)};
}

bool Supported(const std::string& version) {
  return std::find_if(std::begin(kSupportedVersions), std::end(kSupportedVersions),
                      [&](const char* v) { return version == v; }) != std::end(kSupportedVersions);
}

std::string SupportedList() { return absl::StrJoin(kSupportedVersions, ", "); }

// Strips the prefix length of "10.1.0.5/24".
std::string AddressOf(const std::string& cidr) { return cidr.substr(0, cidr.find('/')); }

// The code for a failed call to the agent: transient trouble is "try again later".
int CodeFor(const absl::Status& st) {
  switch (st.code()) {
    case absl::StatusCode::kUnavailable:
    case absl::StatusCode::kDeadlineExceeded:
      return kTryAgainLater;
    case absl::StatusCode::kInvalidArgument:
      return kInvalidConfig;
    default:
      return kAgentRefused;
  }
}

// args.bulkhead.namedPorts: the shape here; names, numbers and duplicates are checked with the
// rest of the registration (agent::ValidateRegistration), as the agent checks them.
std::optional<CniError> ParseNamedPorts(const json& list, std::vector<agent::RegisteredPort>* out) {
  const std::string shape =
      "must be a list of {\"name\": string, \"port\": number, "
      "\"protocol\": \"TCP\"|\"UDP\"|\"SCTP\"}";
  if (!list.is_array()) return Error(kInvalidConfig, "args.bulkhead.namedPorts: " + shape);
  for (size_t i = 0; i < list.size(); ++i) {
    const json& p = list[i];
    const std::string at = absl::StrCat("args.bulkhead.namedPorts[", i, "]");
    if (!p.is_object()) return Error(kInvalidConfig, absl::StrCat(at, ": must be an object"));
    for (const auto& [key, value] : p.items()) {
      if (key != "name" && key != "port" && key != "protocol") {
        return Error(kUnsupportedField,
                     absl::StrCat(at, ".", key, ": unknown field; known: name, port, protocol"));
      }
    }
    agent::RegisteredPort rp;
    if (!p.contains("name") || !p["name"].is_string()) {
      return Error(kInvalidConfig, absl::StrCat(at, ".name: must be a string"));
    }
    rp.name = p["name"].get<std::string>();
    if (!p.contains("port") || !p["port"].is_number_integer() || p["port"].get<int64_t>() < 1 ||
        p["port"].get<int64_t>() > 65535) {
      return Error(kInvalidConfig, absl::StrCat(at, ".port: must be a number 1-65535"));
    }
    rp.port = static_cast<uint16_t>(p["port"].get<int64_t>());
    if (p.contains("protocol")) {  // Kubernetes' default: TCP
      const json& proto = p["protocol"];
      std::string text = proto.is_string() ? proto.get<std::string>() : std::string();
      if (text == "TCP") {
        rp.protocol = policy::Protocol::kTCP;
      } else if (text == "UDP") {
        rp.protocol = policy::Protocol::kUDP;
      } else if (text == "SCTP") {
        rp.protocol = policy::Protocol::kSCTP;
      } else {
        return Error(kInvalidConfig, absl::StrCat(at, ".protocol: ", proto.dump(),
                                                  " is not \"TCP\", \"UDP\" or \"SCTP\""));
      }
    }
    out->push_back(std::move(rp));
  }
  return std::nullopt;
}

// The parts of an invocation ADD and CHECK share: environment, configuration and prevResult
// turned into the registration the agent is (or should be) holding.
struct Invocation {
  NetConf conf;
  agent::EndpointRegistration registration;
};

std::optional<CniError> Require(const Environment& env, bool netns) {
  std::vector<std::string> missing;
  if (env.container_id.empty()) missing.emplace_back("CNI_CONTAINERID");
  if (netns && env.netns.empty()) missing.emplace_back("CNI_NETNS");
  if (env.ifname.empty()) missing.emplace_back("CNI_IFNAME");
  if (missing.empty()) return std::nullopt;
  return Error(kInvalidEnvironment,
               absl::StrCat("missing environment variable ", absl::StrJoin(missing, ", ")));
}

std::optional<CniError> BuildRegistration(const Environment& env, const NetConf& conf,
                                          const PluginIo& io, agent::EndpointRegistration* out) {
  if (auto e = Require(env, /*netns=*/true)) return e;
  auto args = ParseCniArgs(env.args);
  if (!args.ok()) return Error(kInvalidEnvironment, std::string(args.status().message()));
  for (const char* key : {"K8S_POD_NAMESPACE", "K8S_POD_NAME"}) {
    auto it = args->find(key);
    if (it == args->end() || it->second.empty()) {
      return Error(kInvalidEnvironment,
                   absl::StrCat("CNI_ARGS: ", key, " is missing (the pod's identity: ",
                                "K8S_POD_NAMESPACE=ns;K8S_POD_NAME=name)"));
    }
  }
  if (!conf.prev_result) {
    return Error(kInvalidConfig,
                 "prevResult is missing: bulkhead-cni is a chained plugin and runs after the "
                 "plugins that create the interface and assign its addresses (bridge, host-local)");
  }
  PodNetwork net;
  if (auto e = ParsePrevResult(*conf.prev_result, env.ifname, io.driver_of, &net)) return e;
  agent::EndpointRegistration r;
  r.id = absl::StrCat(env.container_id, "/", env.ifname);
  r.namespace_name = args->at("K8S_POD_NAMESPACE");
  r.name = args->at("K8S_POD_NAME");
  r.labels = conf.labels;
  r.service_account = conf.service_account;
  r.named_ports = conf.named_ports;
  r.netns = env.netns;
  r.interface = env.ifname;
  r.host_interface = net.host_interface;
  r.ips = net.ips;
  agent::RegistrationError where;
  auto valid = agent::ValidateRegistration(r, "endpoint", &where);
  if (!valid.ok()) {
    // Say where the bad value came from.
    using F = agent::RegistrationField;
    switch (where.field) {
      case F::kId:
        return Error(kInvalidEnvironment, absl::StrCat("CNI_CONTAINERID: ", where.message));
      case F::kNamespace:
        return Error(kInvalidEnvironment,
                     absl::StrCat("CNI_ARGS K8S_POD_NAMESPACE: ", where.message));
      case F::kName:
        return Error(kInvalidEnvironment, absl::StrCat("CNI_ARGS K8S_POD_NAME: ", where.message));
      case F::kNetns:
        return Error(kInvalidEnvironment, absl::StrCat("CNI_NETNS: ", where.message));
      case F::kInterface:
        return Error(kInvalidEnvironment, absl::StrCat("CNI_IFNAME: ", where.message));
      case F::kLabels:
        return Error(kInvalidConfig, absl::StrCat("args.cni.labels: ", where.message));
      case F::kServiceAccount:
        return Error(kInvalidConfig, absl::StrCat("args.bulkhead.serviceAccount: ", where.message));
      case F::kNamedPorts:
        return Error(kInvalidConfig, absl::StrCat("args.bulkhead.namedPorts: ", where.message));
      case F::kHostInterface:
      case F::kIps:
      case F::kObject:
        return Error(kInvalidConfig, absl::StrCat("prevResult: ", where.message));
    }
  }
  *out = *std::move(valid);
  return std::nullopt;
}

std::optional<CniError> Add(const Environment& env, const NetConf& conf, const PluginIo& io,
                            std::string* out) {
  agent::EndpointRegistration r;
  if (auto e = BuildRegistration(env, conf, io, &r)) return e;
  auto added =
      io.call_agent(conf.agent_socket, {{"method", "endpoint-add"}, {"endpoint", r.ToJson()}});
  if (!added.ok()) {
    return Error(CodeFor(added.status()),
                 absl::StrCat("registering ", r.Workload(), " (", r.id, ") with the agent at ",
                              conf.agent_socket, " failed"),
                 std::string(added.status().message()));
  }
  if (!added->value("enforced", false)) {
    // The agent had it already (a retried ADD) but cannot enforce it now.
    return Error(kAgentRefused, absl::StrCat(r.Workload(), " is registered but not enforced"),
                 added->value("error", ""));
  }
  // A chained plugin that changes nothing passes the previous result on.
  json result = *conf.prev_result;
  if (!result.contains("cniVersion")) result["cniVersion"] = conf.cni_version;
  *out = result.dump();
  return std::nullopt;
}

std::optional<CniError> Del(const Environment& env, const NetConf& conf, const PluginIo& io) {
  if (auto e = Require(env, /*netns=*/false)) return e;
  const std::string id = absl::StrCat(env.container_id, "/", env.ifname);
  auto removed = io.call_agent(conf.agent_socket, {{"method", "endpoint-del"}, {"id", id}});
  if (!removed.ok()) {
    // Not "done": the runtime retries DEL, and the endpoint (and its address) would otherwise
    // stay registered with the agent for good.
    return Error(
        CodeFor(removed.status()),
        absl::StrCat("removing endpoint ", id, " from the agent at ", conf.agent_socket, " failed"),
        std::string(removed.status().message()));
  }
  return std::nullopt;
}

std::optional<CniError> Check(const Environment& env, const NetConf& conf, const PluginIo& io) {
  agent::EndpointRegistration want;
  if (auto e = BuildRegistration(env, conf, io, &want)) return e;
  auto got = io.call_agent(conf.agent_socket, {{"method", "endpoint-get"}, {"id", want.id}});
  if (!got.ok()) {
    if (got.status().code() == absl::StatusCode::kNotFound) {
      return Error(kCheckFailed, absl::StrCat("endpoint ", want.id, " (", want.Workload(),
                                              ") is not registered with the agent"));
    }
    return Error(
        CodeFor(got.status()),
        absl::StrCat("asking the agent at ", conf.agent_socket, " about ", want.id, " failed"),
        std::string(got.status().message()));
  }
  auto have = agent::ParseRegistration(got->value("endpoint", json::object()));
  if (!have.ok()) {
    return Error(kCheckFailed, "the agent's answer has no valid endpoint",
                 std::string(have.status().message()));
  }
  std::vector<std::string> differ;
  if (have->Workload() != want.Workload()) differ.push_back("workload " + have->Workload());
  if (have->labels != want.labels) differ.emplace_back("labels");
  if (have->service_account != want.service_account) differ.emplace_back("serviceAccount");
  if (have->named_ports != want.named_ports) differ.emplace_back("namedPorts");
  if (have->host_interface != want.host_interface) {
    differ.push_back("hostInterface " + have->host_interface);
  }
  if (have->ips != want.ips) differ.push_back("ips " + absl::StrJoin(have->ips, ","));
  if (have->netns != want.netns) differ.push_back("netns " + have->netns);
  if (!differ.empty()) {
    return Error(kCheckFailed, absl::StrCat("endpoint ", want.id, " is registered differently: ",
                                            absl::StrJoin(differ, "; ")));
  }
  if (!got->value("enforced", false)) {
    return Error(kCheckFailed, absl::StrCat(want.Workload(), " is not enforced"),
                 got->value("error", ""));
  }
  return std::nullopt;
}

}  // namespace

json CniError::ToJson(const std::string& cni_version) const {
  json j{{"cniVersion", cni_version}, {"code", code}, {"msg", msg}};
  if (!details.empty()) j["details"] = details;
  return j;
}

Environment ReadEnvironment(const std::function<const char*(const char*)>& get) {
  auto str = [&](const char* name) {
    const char* v = get(name);
    return v == nullptr ? std::string() : std::string(v);
  };
  return Environment{str("CNI_COMMAND"), str("CNI_CONTAINERID"), str("CNI_NETNS"),
                     str("CNI_IFNAME"),  str("CNI_ARGS"),        str("CNI_PATH")};
}

absl::StatusOr<std::map<std::string, std::string>> ParseCniArgs(const std::string& text) {
  std::map<std::string, std::string> out;
  if (text.empty()) return out;
  for (absl::string_view pair : absl::StrSplit(text, ';')) {
    if (pair.empty()) continue;
    const size_t eq = pair.find('=');
    if (eq == absl::string_view::npos || eq == 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("CNI_ARGS: \"", pair, "\" is not KEY=VALUE (pairs are separated by ';')"));
    }
    out[std::string(pair.substr(0, eq))] = std::string(pair.substr(eq + 1));
  }
  return out;
}

std::optional<CniError> ParseNetConf(const std::string& text, NetConf* out) {
  json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return Error(kDecodingFailure, "the network configuration is not JSON");
  if (!j.is_object()) return Error(kDecodingFailure, "the network configuration is not an object");
  NetConf c;
  auto str = [&](const char* key, bool required, std::string* to) -> std::optional<CniError> {
    if (!j.contains(key)) {
      if (!required) return std::nullopt;
      return Error(kInvalidConfig, absl::StrCat("network configuration: \"", key, "\" is missing"));
    }
    if (!j[key].is_string()) {
      return Error(kInvalidConfig,
                   absl::StrCat("network configuration: \"", key, "\" must be a string"));
    }
    *to = j[key].get<std::string>();
    return std::nullopt;
  };
  if (auto e = str("cniVersion", true, &c.cni_version)) return e;
  if (auto e = str("name", true, &c.name)) return e;
  if (auto e = str("type", false, &c.type)) return e;
  c.agent_socket = agent::kDefaultSocket;
  if (auto e = str("agentSocket", false, &c.agent_socket)) return e;
  if (c.agent_socket.empty() || c.agent_socket.front() != '/') {
    return Error(kInvalidConfig, absl::StrCat("network configuration: \"agentSocket\" must be an "
                                              "absolute path, not \"",
                                              c.agent_socket, "\""));
  }
  if (!Supported(c.cni_version)) {
    return Error(kIncompatibleVersion,
                 absl::StrCat("cniVersion ", c.cni_version,
                              " is not supported (supported: ", SupportedList(), ")"));
  }
  if (j.contains("prevResult") && !j["prevResult"].is_null()) {
    if (!j["prevResult"].is_object()) {
      return Error(kInvalidConfig, "network configuration: \"prevResult\" must be an object");
    }
    c.prev_result = j["prevResult"];
  }
  // CNI conventions: "args" carries per-container arguments from the runtime.
  if (j.contains("args")) {
    const json& args = j["args"];
    if (!args.is_object()) return Error(kInvalidConfig, "args: must be an object");
    if (args.contains("cni")) {
      const json& cni = args["cni"];
      if (!cni.is_object()) return Error(kInvalidConfig, "args.cni: must be an object");
      if (cni.contains("labels")) {
        const json& labels = cni["labels"];
        if (!labels.is_array()) {
          return Error(kInvalidConfig,
                       "args.cni.labels: must be a list of {\"key\": ..., \"value\": ...}");
        }
        for (size_t i = 0; i < labels.size(); ++i) {
          const json& l = labels[i];
          const std::string at = absl::StrCat("args.cni.labels[", i, "]");
          if (!l.is_object() || !l.contains("key") || !l["key"].is_string() ||
              !l.contains("value") || !l["value"].is_string()) {
            return Error(kInvalidConfig,
                         absl::StrCat(at, ": must be {\"key\": string, \"value\": string}"));
          }
          const std::string key = l["key"].get<std::string>();
          if (!c.labels.emplace(key, l["value"].get<std::string>()).second) {
            return Error(kInvalidConfig, absl::StrCat(at, ": label ", key, " is given twice"));
          }
        }
      }
    }
    if (args.contains("bulkhead")) {
      const json& bh = args["bulkhead"];
      if (!bh.is_object()) return Error(kInvalidConfig, "args.bulkhead: must be an object");
      for (const auto& [key, value] : bh.items()) {
        if (key == "namedPorts") {
          if (auto e = ParseNamedPorts(value, &c.named_ports)) return e;
          continue;
        }
        if (key != "serviceAccount") {
          return Error(kUnsupportedField,
                       absl::StrCat("args.bulkhead.", key, ": unknown field (value ", value.dump(),
                                    "); known: serviceAccount, namedPorts"));
        }
        if (!value.is_string()) {
          return Error(kInvalidConfig, "args.bulkhead.serviceAccount: must be a string");
        }
        c.service_account = value.get<std::string>();
      }
    }
  }
  if (c.service_account.empty()) c.service_account = "default";
  *out = std::move(c);
  return std::nullopt;
}

std::optional<CniError> ParsePrevResult(const json& prev, const std::string& ifname,
                                        const DriverOf& driver_of, PodNetwork* out) {
  const json interfaces = prev.value("interfaces", json::array());
  if (!interfaces.is_array()) return Error(kInvalidConfig, "prevResult.interfaces: must be a list");
  int container = -1;
  std::vector<std::string> host_side;
  for (size_t i = 0; i < interfaces.size(); ++i) {
    const json& itf = interfaces[i];
    if (!itf.is_object() || !itf.contains("name") || !itf["name"].is_string()) {
      return Error(kInvalidConfig,
                   absl::StrCat("prevResult.interfaces[", i, "]: must be an object with a name"));
    }
    const std::string name = itf["name"].get<std::string>();
    const json sandbox = itf.value("sandbox", json(""));
    if (!sandbox.is_string()) {
      return Error(kInvalidConfig,
                   absl::StrCat("prevResult.interfaces[", i, "].sandbox: must be a string"));
    }
    if (!sandbox.get<std::string>().empty()) {
      if (name == ifname) container = static_cast<int>(i);
    } else {
      host_side.push_back(name);
    }
  }
  if (container < 0) {
    return Error(kInvalidConfig,
                 absl::StrCat("prevResult has no interface ", ifname,
                              " in a sandbox: the plugins before bulkhead-cni must create it"));
  }
  // The bridge plugin reports the bridge, the host veth and the container interface; ptp
  // reports the host veth and the container interface.
  std::string host;
  if (host_side.size() == 1) {
    host = host_side.front();
  } else {
    std::vector<std::string> veths;
    for (const auto& name : host_side) {
      if (driver_of && driver_of(name) == "veth") veths.push_back(name);
    }
    if (veths.size() != 1) {
      return Error(kInvalidConfig,
                   absl::StrCat("prevResult: cannot tell the host side of ", ifname,
                                "'s veth among the interfaces without a sandbox (",
                                host_side.empty() ? "none" : absl::StrJoin(host_side, ", "),
                                "): expected exactly one veth"));
    }
    host = veths.front();
  }
  const json ips = prev.value("ips", json::array());
  if (!ips.is_array()) return Error(kInvalidConfig, "prevResult.ips: must be a list");
  std::vector<std::string> addresses;
  for (size_t i = 0; i < ips.size(); ++i) {
    const json& ip = ips[i];
    if (!ip.is_object() || !ip.contains("address") || !ip["address"].is_string()) {
      return Error(kInvalidConfig,
                   absl::StrCat("prevResult.ips[", i, "]: must be an object with an address"));
    }
    if (ip.contains("interface")) {
      if (!ip["interface"].is_number_integer()) {
        return Error(kInvalidConfig,
                     absl::StrCat("prevResult.ips[", i, "].interface: must be an index"));
      }
      // An address of another interface (the bridge's gateway address, say) is not the pod's.
      if (ip["interface"].get<int>() != container) continue;
    }
    addresses.push_back(AddressOf(ip["address"].get<std::string>()));
  }
  if (addresses.empty()) {
    return Error(kInvalidConfig,
                 absl::StrCat("prevResult has no address for ", ifname,
                              ": an IPAM plugin (host-local) must assign one before bulkhead-cni"));
  }
  out->container_interface = ifname;
  out->host_interface = host;
  out->ips = std::move(addresses);
  return std::nullopt;
}

int RunPlugin(const Environment& env, const std::string& stdin_text, const PluginIo& io,
              std::string* out) {
  std::string version = kDefaultCniVersion;
  auto fail = [&](const CniError& e) {
    *out = e.ToJson(version).dump();
    return 1;
  };
  if (env.command == "VERSION") {
    // stdin carries {"cniVersion": ...}; answer in that version when it is one of ours.
    json j = json::parse(stdin_text, nullptr, false);
    if (j.is_object() && j.value("cniVersion", json()).is_string() &&
        Supported(j["cniVersion"].get<std::string>())) {
      version = j["cniVersion"].get<std::string>();
    }
    json supported = json::array();
    for (const char* v : kSupportedVersions) supported.push_back(v);
    *out = json{{"cniVersion", version}, {"supportedVersions", supported}}.dump();
    return 0;
  }
  if (env.command != "ADD" && env.command != "DEL" && env.command != "CHECK") {
    return fail(Error(kInvalidEnvironment,
                      env.command.empty()
                          ? std::string("CNI_COMMAND is missing")
                          : absl::StrCat("CNI_COMMAND ", env.command,
                                         " is not supported (ADD, DEL, CHECK, VERSION)")));
  }
  NetConf conf;
  if (auto e = ParseNetConf(stdin_text, &conf)) {
    // Answer in the version asked for when there is one.
    json j = json::parse(stdin_text, nullptr, false);
    if (j.is_object() && j.value("cniVersion", json()).is_string() &&
        Supported(j["cniVersion"].get<std::string>())) {
      version = j["cniVersion"].get<std::string>();
    }
    return fail(*e);
  }
  version = conf.cni_version;
  std::optional<CniError> e;
  std::string result;
  if (env.command == "ADD") {
    e = Add(env, conf, io, &result);
  } else if (env.command == "DEL") {
    e = Del(env, conf, io);
  } else {
    e = Check(env, conf, io);
  }
  if (e) return fail(*e);
  *out = result;
  return 0;
}

}  // namespace bulkhead::cni
