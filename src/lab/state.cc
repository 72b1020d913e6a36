// The lab's state file and naming scheme, and the lock that keeps `up` and `down` apart.
#include "lab/state.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace bulkhead::lab {
namespace {

using Json = nlohmann::json;

uint32_t Fnv1a32(std::string_view s) {
  uint32_t h = 2166136261u;
  for (char c : s) {
    h ^= static_cast<uint8_t>(c);
    h *= 16777619u;
  }
  return h;
}

std::string Flat(std::string_view workload_id) {
  std::string s(workload_id);
  for (char& c : s) {
    if (c == '/') c = '_';
  }
  return s;
}

Json ProcessJson(const ProcessRecord& p) {
  return Json{{"pid", p.pid}, {"start_time", p.start_time}};
}

ProcessRecord ProcessFrom(const Json& j) {
  ProcessRecord p;
  if (j.is_object()) {
    p.pid = j.value("pid", 0);
    p.start_time = j.value("start_time", uint64_t{0});
  }
  return p;
}

}  // namespace

std::string LabNames::StateDir() const { return absl::StrCat(run_dir, "/", lab); }
std::string LabNames::StatePath() const { return StateDir() + "/state.json"; }
std::string LabNames::LockPath() const { return StateDir() + "/lock"; }
std::string LabNames::LabCopyPath() const { return StateDir() + "/lab.yaml"; }
std::string LabNames::InventoryPath() const { return StateDir() + "/inventory.yaml"; }
std::string LabNames::ClusterPath() const { return StateDir() + "/cluster.yaml"; }
std::string LabNames::NetConflistPath() const { return StateDir() + "/net.conflist"; }
std::string LabNames::AgentStateDir() const { return StateDir() + "/agent"; }
std::string LabNames::AgentSocket() const { return StateDir() + "/agent.sock"; }
std::string LabNames::AgentLog() const { return StateDir() + "/agent.log"; }
std::string LabNames::IpamDir() const { return StateDir() + "/ipam"; }
std::string LabNames::ServerLog(const std::string& workload_id) const {
  return absl::StrCat(StateDir(), "/servers/", Flat(workload_id), ".log");
}
std::string LabNames::NetnsPrefix() const { return absl::StrCat("bhlab-", lab, "_"); }
std::string LabNames::HostNetns() const { return NetnsPrefix() + "host"; }
std::string LabNames::CoreNetns() const { return NetnsPrefix() + "core"; }
LabNames::HostPaths LabNames::ForHost(const std::string& host, bool multi_host,
                                      const std::string& pin_root) const {
  if (!multi_host) {
    return HostPaths{HostNetns(),     AgentSocket(),     AgentStateDir(), AgentLog(),
                     InventoryPath(), NetConflistPath(), IpamDir(),       pin_root};
  }
  std::string dir = absl::StrCat(StateDir(), "/hosts/", host);
  return HostPaths{
      NetnsPrefix() + "h_" + host, dir + "/agent.sock",   dir + "/agent", dir + "/agent.log",
      dir + "/inventory.yaml",     dir + "/net.conflist", dir + "/ipam",  pin_root + "/" + host};
}
std::string LabNames::WorkloadNetns(const std::string& workload_id) const {
  std::string name = NetnsPrefix() + "w_" + Flat(workload_id);
  // Workload names may be long (DNS subdomains); a netns name is a file name.
  if (name.size() > 200) {
    name = absl::StrCat(name.substr(0, 180), "_", absl::Hex(Fnv1a32(workload_id), absl::kZeroPad8));
  }
  return name;
}
std::string LabNames::ContainerId(const std::string& workload_id) const {
  return absl::StrCat("bhlab_", lab, "_", Flat(workload_id));
}
std::string LabNames::Bridge() const {
  return absl::StrCat("bhbr", absl::Hex(Fnv1a32(lab), absl::kZeroPad8));
}
std::string LabNames::DefaultPinRoot() const {
  return absl::StrCat(kDefaultPinParent, "/lab-", lab);
}

WorkloadState* LabState::FindWorkload(std::string_view id) {
  for (auto& w : workloads) {
    if (w.id == id) return &w;
  }
  return nullptr;
}

const WorkloadState* LabState::FindWorkload(std::string_view id) const {
  for (const auto& w : workloads) {
    if (w.id == id) return &w;
  }
  return nullptr;
}

HostState* LabState::FindHost(std::string_view name) {
  for (auto& h : hosts) {
    if (h.name == name) return &h;
  }
  return nullptr;
}

const HostState* LabState::FindHost(std::string_view name) const {
  for (const auto& h : hosts) {
    if (h.name == name) return &h;
  }
  return nullptr;
}

Json StateToJson(const LabState& s) {
  Json workloads = Json::array();
  for (const auto& w : s.workloads) {
    Json ports = Json::array();
    for (const auto& p : w.ports) {
      Json pj = {{"port", p.port}, {"protocol", policy::ProtocolName(p.protocol)}};
      if (!p.name.empty()) pj["name"] = p.name;
      ports.push_back(std::move(pj));
    }
    workloads.push_back({{"id", w.id},
                         {"host", w.host},
                         {"ports", ports},
                         {"netns", w.netns},
                         {"container_id", w.container_id},
                         {"ifname", w.ifname},
                         {"cni_args", w.cni_args},
                         {"netconf_args", w.netconf_args},
                         {"netns_created", w.netns_created},
                         {"cni_added", w.cni_added},
                         {"cni_result", w.cni_result},
                         {"ips", w.ips},
                         {"host_interface", w.host_interface},
                         {"server", ProcessJson(w.server)}});
  }
  Json hosts = Json::array();
  for (const auto& h : s.hosts) {
    hosts.push_back({{"name", h.name},
                     {"netns", h.netns},
                     {"netns_created", h.netns_created},
                     {"bridge", h.bridge},
                     {"pin_root", h.pin_root},
                     {"agent_socket", h.agent_socket},
                     {"agent_state_dir", h.agent_state_dir},
                     {"agent_log", h.agent_log},
                     {"inventory", h.inventory},
                     {"conflist", h.conflist},
                     {"ipam_dir", h.ipam_dir},
                     {"subnets", h.subnets},
                     {"underlay", h.underlay},
                     {"core_interface", h.core_interface},
                     {"core_addresses", h.core_addresses},
                     {"agent", ProcessJson(h.agent)}});
  }
  return Json{{"version", 2},
              {"name", s.name},
              {"phase", s.phase},
              {"lab_file", s.lab_file},
              {"policies", s.policies},
              {"pin_root", s.pin_root},
              {"bpffs_mounted", s.bpffs_mounted},
              {"cni_path", s.cni_path},
              {"core_netns", s.core_netns},
              {"core_created", s.core_created},
              {"control_plane", s.control_plane},
              {"server_dir", s.server_dir},
              {"server_url", s.server_url},
              {"server_agents_address", s.server_agents_address},
              {"server", ProcessJson(s.server)},
              {"hosts", hosts},
              {"workloads", workloads}};
}

absl::StatusOr<LabState> StateFromJson(const Json& j) {
  try {
    // Version 1 (one host, before issue #4) is read too, so a lab brought up by an older
    // bulkhead can be taken down.
    int version = j.is_object() ? j.value("version", 0) : 0;
    if (version != 1 && version != 2) {
      return absl::InvalidArgumentError("not a version 1 or 2 lab state");
    }
    LabState s;
    s.name = j.at("name").get<std::string>();
    s.phase = j.value("phase", "");
    s.lab_file = j.value("lab_file", "");
    s.policies = j.value("policies", "");
    s.pin_root = j.value("pin_root", "");
    s.bpffs_mounted = j.value("bpffs_mounted", false);
    s.cni_path = j.value("cni_path", std::vector<std::string>{});
    s.core_netns = j.value("core_netns", "");
    s.core_created = j.value("core_created", false);
    s.control_plane = j.value("control_plane", "standalone");
    s.server_dir = j.value("server_dir", "");
    s.server_url = j.value("server_url", "");
    s.server_agents_address = j.value("server_agents_address", "");
    s.server = ProcessFrom(j.value("server", Json()));
    if (version == 1) {
      HostState h;
      h.name = std::string(kDefaultHostName);
      h.netns = j.value("host_netns", "");
      h.netns_created = j.value("host_netns_created", false);
      h.bridge = j.value("bridge", "");
      h.pin_root = s.pin_root;
      h.agent = ProcessFrom(j.value("agent", Json()));
      s.hosts.push_back(std::move(h));
    }
    for (const auto& hj : j.value("hosts", Json::array())) {
      HostState h;
      h.name = hj.at("name").get<std::string>();
      h.netns = hj.value("netns", "");
      h.netns_created = hj.value("netns_created", false);
      h.bridge = hj.value("bridge", "");
      h.pin_root = hj.value("pin_root", "");
      h.agent_socket = hj.value("agent_socket", "");
      h.agent_state_dir = hj.value("agent_state_dir", "");
      h.agent_log = hj.value("agent_log", "");
      h.inventory = hj.value("inventory", "");
      h.conflist = hj.value("conflist", "");
      h.ipam_dir = hj.value("ipam_dir", "");
      h.subnets = hj.value("subnets", std::vector<std::string>{});
      h.underlay = hj.value("underlay", std::vector<std::string>{});
      h.core_interface = hj.value("core_interface", "");
      h.core_addresses = hj.value("core_addresses", std::vector<std::string>{});
      h.agent = ProcessFrom(hj.value("agent", Json()));
      s.hosts.push_back(std::move(h));
    }
    for (const auto& wj : j.value("workloads", Json::array())) {
      WorkloadState w;
      w.id = wj.at("id").get<std::string>();
      w.host = wj.value("host", std::string(kDefaultHostName));
      for (const auto& pj : wj.value("ports", Json::array())) {
        LabPort p;
        p.port = pj.at("port").get<uint16_t>();
        auto proto = policy::ParseProtocol(pj.at("protocol").get<std::string>());
        if (!proto) return absl::InvalidArgumentError("bad protocol in the state of " + w.id);
        p.protocol = *proto;
        p.name = pj.value("name", "");
        w.ports.push_back(p);
      }
      w.netns = wj.value("netns", "");
      w.container_id = wj.value("container_id", "");
      w.ifname = wj.value("ifname", "eth0");
      w.cni_args = wj.value("cni_args", "");
      w.netconf_args = wj.value("netconf_args", Json());
      w.netns_created = wj.value("netns_created", false);
      w.cni_added = wj.value("cni_added", false);
      w.cni_result = wj.value("cni_result", Json());
      w.ips = wj.value("ips", std::vector<std::string>{});
      w.host_interface = wj.value("host_interface", "");
      w.server = ProcessFrom(wj.value("server", Json()));
      s.workloads.push_back(std::move(w));
    }
    return s;
  } catch (const Json::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("malformed lab state: ", e.what()));
  }
}

absl::StatusOr<LabState> LoadState(const LabNames& names) {
  std::ifstream in(names.StatePath());
  if (!in) return absl::NotFoundError("no state file " + names.StatePath());
  std::stringstream buf;
  buf << in.rdbuf();
  Json j = Json::parse(buf.str(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return absl::InvalidArgumentError(names.StatePath() + ": not JSON");
  auto s = StateFromJson(j);
  if (!s.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(names.StatePath(), ": ", s.status().message()));
  }
  return s;
}

absl::Status WriteFileAtomic(const std::string& path, std::string_view content) {
  std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out << content;
    out.flush();
    if (!out) return absl::InternalError("cannot write " + tmp);
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    return absl::InternalError(absl::StrCat("cannot rename ", tmp, ": ", std::strerror(errno)));
  }
  return absl::OkStatus();
}

absl::Status SaveState(const LabNames& names, const LabState& s) {
  return WriteFileAtomic(names.StatePath(), StateToJson(s).dump(2) + "\n");
}

std::vector<std::string> ListLabs(const std::string& run_dir) {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(run_dir, ec)) {
    if (e.is_directory(ec)) out.push_back(e.path().filename().string());
  }
  std::sort(out.begin(), out.end());
  return out;
}

absl::StatusOr<LabLock> LabLock::Acquire(const std::string& path, int wait_ms) {
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0)
    return absl::InternalError(absl::StrCat("cannot open ", path, ": ", std::strerror(errno)));
  Fd owned(fd);
  for (int waited = 0;; waited += 50) {
    if (::flock(fd, LOCK_EX | LOCK_NB) == 0) return LabLock(std::move(owned));
    if (errno != EWOULDBLOCK && errno != EINTR) {
      return absl::InternalError(absl::StrCat("cannot lock ", path, ": ", std::strerror(errno)));
    }
    if (waited >= wait_ms) {
      return absl::UnavailableError(
          absl::StrCat("the lab is busy: another `bulkhead lab` command holds ", path));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

}  // namespace bulkhead::lab
