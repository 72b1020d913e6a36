// CNI 1.0.0 runtime side: plugin configs with prevResult, the CNI_* environment, plugin
// lookup, error objects and the fields of an ADD result the lab uses.
#include "lab/cni.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "lab/netns.h"
#include "lab/process.h"

namespace bulkhead::lab {
namespace {

using Json = nlohmann::json;

std::string Trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ' || s.back() == '\r')) s.pop_back();
  size_t start = s.find_first_not_of(" \n\r");
  return start == std::string::npos ? "" : s.substr(start);
}

std::string Truncate(std::string s, size_t max) {
  if (s.size() > max) s = s.substr(0, max) + "...";
  return s;
}

}  // namespace

absl::StatusOr<PluginOutput> ProcessPluginExecutor::Run(const PluginCall& call) {
  SpawnSpec spec;
  spec.path = call.path;
  spec.argv = {call.path};
  spec.env = call.env;
  Fd ns;
  if (!netns_path_.empty()) {
    auto opened = OpenNetns(netns_path_);
    if (!opened.ok()) return opened.status();
    ns = std::move(*opened);
    spec.netns_fd = ns.get();
  }
  auto run = RunCaptured(std::move(spec), call.config, timeout_);
  if (!run.ok()) return run.status();
  return PluginOutput{run->exit_code, std::move(run->out), std::move(run->err)};
}

absl::StatusOr<CniNetwork> CniNetwork::FromConflist(Json conflist) {
  if (!conflist.is_object()) return absl::InvalidArgumentError("CNI config list: not an object");
  CniNetwork net;
  auto name = conflist.find("name");
  if (name == conflist.end() || !name->is_string() || name->get<std::string>().empty()) {
    return absl::InvalidArgumentError("CNI config list: \"name\" must be a non-empty string");
  }
  net.name_ = name->get<std::string>();
  auto version = conflist.find("cniVersion");
  if (version == conflist.end() || !version->is_string() || *version != kCniVersion) {
    return absl::InvalidArgumentError(
        absl::StrCat("CNI config list ", net.name_, ": \"cniVersion\" must be ", kCniVersion));
  }
  auto plugins = conflist.find("plugins");
  if (plugins == conflist.end() || !plugins->is_array() || plugins->empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("CNI config list ", net.name_, ": \"plugins\" must be a non-empty list"));
  }
  for (size_t i = 0; i < plugins->size(); ++i) {
    const Json& p = (*plugins)[i];
    auto type = p.is_object() ? p.find("type") : p.end();
    if (!p.is_object() || type == p.end() || !type->is_string() ||
        type->get<std::string>().empty() ||
        type->get<std::string>().find('/') != std::string::npos) {
      return absl::InvalidArgumentError(absl::StrCat("CNI config list ", net.name_, ": plugins[", i,
                                                     "] needs a \"type\" (a plugin name)"));
    }
  }
  net.conflist_ = std::move(conflist);
  return net;
}

std::vector<std::string> CniNetwork::PluginTypes() const {
  std::vector<std::string> out;
  for (const auto& p : conflist_["plugins"]) out.push_back(p["type"].get<std::string>());
  return out;
}

Json CniNetwork::PluginConfig(size_t index, const CniRuntime& rt, const Json& prev_result) const {
  Json config = conflist_["plugins"][index];
  config["cniVersion"] = conflist_["cniVersion"];
  config["name"] = name_;
  if (!rt.netconf_args.is_null()) {
    if (!config.contains("args") || !config["args"].is_object()) config["args"] = Json::object();
    for (const auto& [key, value] : rt.netconf_args.items()) config["args"][key] = value;
  }
  if (!prev_result.is_null()) config["prevResult"] = prev_result;
  return config;
}

std::vector<std::string> CniNetwork::Environment(const std::string& command, const CniRuntime& rt,
                                                 const std::vector<std::string>& cni_path) {
  std::vector<std::string> env = {
      absl::StrCat("CNI_COMMAND=", command),
      absl::StrCat("CNI_CONTAINERID=", rt.container_id),
      absl::StrCat("CNI_NETNS=", rt.netns),
      absl::StrCat("CNI_IFNAME=", rt.ifname),
      absl::StrCat("CNI_PATH=", absl::StrJoin(cni_path, ":")),
  };
  if (!rt.args.empty()) env.push_back(absl::StrCat("CNI_ARGS=", rt.args));
  // Plugins may run helpers (iptables, ...): give them a search path.
  const char* path = std::getenv("PATH");
  env.push_back(absl::StrCat("PATH=", path != nullptr && *path != '\0'
                                          ? path
                                          : "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:"
                                            "/sbin:/bin"));
  return env;
}

absl::StatusOr<Json> CniNetwork::RunPlugin(size_t index, const std::string& command,
                                           const CniRuntime& rt, const Json& prev,
                                           const std::vector<std::string>& cni_path,
                                           PluginExecutor& exec) const {
  std::string type = conflist_["plugins"][index]["type"].get<std::string>();
  auto path = FindPlugin(type, cni_path);
  if (!path.ok()) return path.status();
  PluginCall call{type, *path, Environment(command, rt, cni_path),
                  PluginConfig(index, rt, prev).dump()};
  auto out = exec.Run(call);
  if (!out.ok()) {
    return absl::Status(out.status().code(), absl::StrCat("CNI plugin ", type, " ", command, ": ",
                                                          out.status().message()));
  }
  if (out->exit_code != 0) return PluginFailure(type, command, *out);
  if (command != "ADD") return Json();
  Json result = Json::parse(out->out, nullptr, /*allow_exceptions=*/false);
  if (!result.is_object()) {
    return absl::InternalError(absl::StrCat(
        "CNI plugin ", type, " ADD printed no JSON result: ", Truncate(Trim(out->out), 500)));
  }
  return result;
}

absl::StatusOr<Json> CniNetwork::Add(const CniRuntime& rt, const std::vector<std::string>& cni_path,
                                     PluginExecutor& exec) const {
  Json prev;
  for (size_t i = 0; i < conflist_["plugins"].size(); ++i) {
    auto result = RunPlugin(i, "ADD", rt, prev, cni_path, exec);
    if (!result.ok()) return result.status();
    prev = std::move(*result);
  }
  return prev;
}

absl::Status CniNetwork::Del(const CniRuntime& rt, const Json& prev_result,
                             const std::vector<std::string>& cni_path, PluginExecutor& exec) const {
  std::vector<std::string> errors;
  for (size_t i = conflist_["plugins"].size(); i-- > 0;) {
    auto result = RunPlugin(i, "DEL", rt, prev_result, cni_path, exec);
    if (!result.ok()) errors.emplace_back(result.status().message());
  }
  if (errors.empty()) return absl::OkStatus();
  return absl::InternalError(absl::StrJoin(errors, "; "));
}

absl::StatusOr<std::string> FindPlugin(const std::string& type,
                                       const std::vector<std::string>& dirs) {
  for (const auto& dir : dirs) {
    if (dir.empty()) continue;
    std::string path = absl::StrCat(dir, "/", type);
    struct stat st {};
    if (::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode) &&
        ::access(path.c_str(), X_OK) == 0) {
      return path;
    }
  }
  return absl::NotFoundError(
      absl::StrCat("CNI plugin \"", type, "\" not found in ",
                   dirs.empty() ? "(empty CNI path)" : absl::StrJoin(dirs, ":")));
}

absl::Status PluginFailure(const std::string& plugin, const std::string& command,
                           const PluginOutput& output) {
  std::string what = absl::StrCat("CNI plugin ", plugin, " ", command, " failed");
  Json err = Json::parse(output.out, nullptr, /*allow_exceptions=*/false);
  if (err.is_object() && err.contains("msg")) {
    absl::StrAppend(&what, ": ",
                    err["msg"].is_string() ? err["msg"].get<std::string>() : err["msg"].dump());
    if (err.contains("code")) absl::StrAppend(&what, " (code ", err["code"].dump(), ")");
    if (err.contains("details") && err["details"].is_string() &&
        !err["details"].get<std::string>().empty()) {
      absl::StrAppend(&what, ": ", err["details"].get<std::string>());
    }
  } else {
    absl::StrAppend(&what, " with exit status ", output.exit_code);
    std::string out = Trim(output.out);
    if (!out.empty()) absl::StrAppend(&what, ": ", Truncate(out, 1000));
  }
  std::string err_text = Trim(output.err);
  if (!err_text.empty()) absl::StrAppend(&what, " [stderr: ", Truncate(err_text, 1000), "]");
  return absl::InternalError(what);
}

absl::StatusOr<CniAddresses> ParseAddResult(const Json& result, const std::string& netns,
                                            const std::string& bridge) {
  auto bad = [](const std::string& why) {
    return absl::InvalidArgumentError("CNI result: " + why);
  };
  if (!result.is_object()) return bad("not an object");
  const Json* interfaces = result.contains("interfaces") ? &result["interfaces"] : nullptr;
  if (interfaces == nullptr || !interfaces->is_array()) return bad("no \"interfaces\" list");
  CniAddresses out;
  std::vector<bool> in_container(interfaces->size(), false);
  for (size_t i = 0; i < interfaces->size(); ++i) {
    const Json& itf = (*interfaces)[i];
    if (!itf.is_object() || !itf.contains("name") || !itf["name"].is_string()) {
      return bad("interfaces[" + std::to_string(i) + "] has no name");
    }
    std::string sandbox = itf.contains("sandbox") && itf["sandbox"].is_string()
                              ? itf["sandbox"].get<std::string>()
                              : "";
    std::string name = itf["name"].get<std::string>();
    if (!sandbox.empty()) {
      in_container[i] = sandbox == netns;
    } else if (name != bridge && out.host_interface.empty()) {
      out.host_interface = name;
    }
  }
  if (out.host_interface.empty()) return bad("no host-side interface (veth) in \"interfaces\"");
  if (!result.contains("ips") || !result["ips"].is_array()) return bad("no \"ips\" list");
  for (size_t i = 0; i < result["ips"].size(); ++i) {
    const Json& ip = result["ips"][i];
    std::string where = "ips[" + std::to_string(i) + "]";
    if (!ip.is_object() || !ip.contains("address") || !ip["address"].is_string()) {
      return bad(where + " has no address");
    }
    if (!ip.contains("interface") || !ip["interface"].is_number_unsigned() ||
        ip["interface"].get<size_t>() >= interfaces->size()) {
      return bad(where + " does not name an interface of the result");
    }
    if (!in_container[ip["interface"].get<size_t>()]) continue;
    std::string text = ip["address"].get<std::string>();
    auto addr = common::IpAddr::Parse(text.substr(0, text.find('/')));
    if (!addr) return bad(where + ": invalid address \"" + text + "\"");
    out.ips.push_back(*addr);
  }
  if (out.ips.empty()) return bad("no address on an interface in " + std::string(netns));
  return out;
}

}  // namespace bulkhead::lab
