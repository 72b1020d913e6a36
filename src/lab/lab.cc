// Lab up and down. Up records each thing in state.json before making it; down undoes from
// that record and from the naming scheme, so no crash leaves something it cannot remove.
#include "lab/lab.h"

#include <fcntl.h>
#include <linux/magic.h>
#include <poll.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "lab/cni.h"
#include "lab/netns.h"
#include "lab/process.h"

namespace bulkhead::lab {
namespace {

using Json = nlohmann::json;
namespace fs = std::filesystem;

constexpr const char* kBpffsRoot = "/sys/fs/bpf";

// A JSON string is a YAML double-quoted scalar: safe for any label value.
std::string Q(const std::string& s) { return Json(s).dump(); }

std::string LabelsFlow(const policy::Labels& labels) {
  Json j = Json::object();
  for (const auto& [k, v] : labels) j[k] = v;
  return j.dump();
}

std::string InventoryHead(const LabSpec& spec, const std::string& comment) {
  std::string out = "# " + comment + "\n";
  out += "apiVersion: bulkhead.io/v1alpha1\nkind: Inventory\nmetadata:\n  name: " +
         Q("lab-" + spec.name) + "\nspec:\n  namespaces:\n";
  for (const auto& ns : spec.namespaces) {
    out += "  - name: " + Q(ns.name) + "\n    labels: " + LabelsFlow(ns.labels) + "\n";
    if (auto m = spec.NamespaceMode(ns)) out += "    mode: " + Q(policy::ModeName(*m)) + "\n";
  }
  return out;
}

std::string TailOfFile(const std::string& path, size_t lines) {
  std::ifstream in(path);
  std::vector<std::string> all;
  std::string line;
  while (std::getline(in, line)) all.push_back(line);
  size_t from = all.size() > lines ? all.size() - lines : 0;
  std::string out;
  for (size_t i = from; i < all.size(); ++i) out += "  | " + all[i] + "\n";
  return out.empty() ? "  (empty)\n" : out;
}

bool IsBpffs(const char* path) {
  struct statfs st {};
  return ::statfs(path, &st) == 0 && static_cast<unsigned long>(st.f_type) == BPF_FS_MAGIC;
}

absl::Status Errno(const std::string& what) {
  return absl::InternalError(absl::StrCat(what, ": ", std::strerror(errno)));
}

absl::StatusOr<CniNetwork> ReadConflist(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError("no CNI config " + path);
  std::stringstream buf;
  buf << in.rdbuf();
  Json j = Json::parse(buf.str(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return absl::InvalidArgumentError(path + ": not JSON");
  return CniNetwork::FromConflist(std::move(j));
}

CniRuntime LoopbackRuntime(const std::string& container_id, const std::string& netns_name) {
  CniRuntime rt;
  rt.container_id = container_id;
  rt.netns = NetnsPath(netns_name);
  rt.ifname = "lo";
  return rt;
}

CniRuntime WorkloadRuntime(const WorkloadState& w) {
  CniRuntime rt;
  rt.container_id = w.container_id;
  rt.netns = NetnsPath(w.netns);
  rt.ifname = w.ifname;
  rt.args = w.cni_args;
  rt.netconf_args = w.netconf_args;
  return rt;
}

// Duplicate address detection would hold new IPv6 addresses back for a second or more.
absl::Status DisableDad(const std::string& netns_name) {
  return RunInNetns(NetnsPath(netns_name), [] {
    for (const char* key : {"net/ipv6/conf/all/accept_dad", "net/ipv6/conf/default/accept_dad"}) {
      if (auto s = WriteSysctl(key, "0"); !s.ok()) return s;
    }
    return absl::OkStatus();
  });
}

class Builder {
 public:
  Builder(const LabSpec& spec, const UpOptions& o, const AgentStatusFn& agent_status,
          std::ostream& progress)
      : spec_(spec),
        o_(o),
        agent_status_(agent_status),
        progress_(progress),
        names_{o.name, o.run_dir} {}

  LabState& state() { return st_; }
  const LabNames& names() const { return names_; }
  void ReleaseLock() { lock_.reset(); }

  // The steps before the state dir exists: failures here leave nothing to undo.
  absl::Status Check() {
    if (::geteuid() != 0) {
      return absl::PermissionDeniedError(
          "bulkhead lab up needs root (network namespaces, bpffs, TC filters)");
    }
    if (spec_.ipv6_subnet && !fs::exists("/proc/sys/net/ipv6")) {
      return absl::FailedPreconditionError(
          "IPv6 is disabled on this machine: set spec.ipFamilies: [IPv4] in the lab file");
    }
    std::error_code ec;
    if (!fs::is_directory(o_.policies, ec)) {
      return absl::InvalidArgumentError("--policies " + o_.policies + " is not a directory");
    }
    pin_root_ = o_.pin_root.empty() ? names_.DefaultPinRoot() : o_.pin_root;
    std::vector<std::string> old = ListNetns(names_.NetnsPrefix());
    if (fs::exists(names_.StateDir(), ec) || !old.empty() || fs::exists(pin_root_, ec)) {
      return absl::AlreadyExistsError(
          absl::StrCat("lab ", o_.name, " is up or left over (",
                       fs::exists(names_.StateDir(), ec) ? names_.StateDir()
                       : !old.empty()                    ? NetnsPath(old.front())
                                                         : pin_root_,
                       "): run `bulkhead lab down --name ", o_.name, "` first"));
    }
    for (const auto& plugin : {kLoopbackPlugin, kBridgePlugin, "host-local", kBulkheadPlugin}) {
      if (auto p = FindPlugin(plugin, o_.cni_path); !p.ok()) return p.status();
    }
    return absl::OkStatus();
  }

  // Creates the state dir and takes the lab's lock. From here on, Down can undo.
  absl::Status Claim() {
    std::error_code ec;
    fs::create_directories(o_.run_dir, ec);
    if (::mkdir(names_.StateDir().c_str(), 0700) != 0) {
      if (errno == EEXIST) {
        return absl::AlreadyExistsError(absl::StrCat(
            "lab ", o_.name, " is up: run `bulkhead lab down --name ", o_.name, "` first"));
      }
      return Errno("creating " + names_.StateDir());
    }
    auto lock = LabLock::Acquire(names_.LockPath(), 0);
    if (!lock.ok()) return lock.status();
    lock_.emplace(std::move(*lock));
    return absl::OkStatus();
  }

  absl::Status Build() {
    st_.name = o_.name;
    st_.phase = "building";
    st_.lab_file = o_.lab_file;
    st_.policies = o_.policies;
    st_.host_netns = names_.HostNetns();
    st_.bridge = names_.Bridge();
    st_.pin_root = pin_root_;
    st_.cni_path = o_.cni_path;
    for (const auto& w : spec_.workloads) {
      WorkloadState ws;
      ws.id = w.Id();
      ws.ports = w.ports;
      ws.netns = names_.WorkloadNetns(ws.id);
      ws.container_id = names_.ContainerId(ws.id);
      ws.cni_args = WorkloadCniArgs(w, ws.container_id);
      ws.netconf_args = WorkloadNetconfArgs(w);
      st_.workloads.push_back(std::move(ws));
    }
    if (auto s = Save(); !s.ok()) return s;
    if (auto s = WriteFiles(); !s.ok()) return s;
    if (auto s = Bpffs(); !s.ok()) return s;
    if (auto s = Host(); !s.ok()) return s;
    if (auto s = StartAgent(); !s.ok()) return s;
    for (auto& w : st_.workloads) {
      if (auto s = AddWorkload(w); !s.ok()) return Annotate(s, "workload " + w.id);
    }
    for (auto& w : st_.workloads) {
      if (auto s = StartServer(w); !s.ok()) return Annotate(s, "server of " + w.id);
    }
    if (auto s = WriteFileAtomic(names_.ClusterPath(), ClusterInventoryYaml(spec_, st_)); !s.ok()) {
      return s;
    }
    st_.phase = "up";
    return Save();
  }

 private:
  static absl::Status Annotate(const absl::Status& s, const std::string& what) {
    return absl::Status(s.code(), absl::StrCat(what, ": ", s.message()));
  }

  absl::Status Save() { return SaveState(names_, st_); }

  absl::Status WriteFiles() {
    std::error_code ec;
    for (const auto& dir : {names_.AgentStateDir(), names_.IpamDir(),
                            fs::path(names_.ServerLog("x/y")).parent_path().string()}) {
      fs::create_directories(dir, ec);
      if (ec) return absl::InternalError("creating " + dir + ": " + ec.message());
    }
    if (auto s = WriteFileAtomic(names_.LabCopyPath(), o_.lab_file_content); !s.ok()) return s;
    if (auto s = WriteFileAtomic(names_.InventoryPath(), AgentInventoryYaml(spec_)); !s.ok()) {
      return s;
    }
    auto net = CniNetwork::FromConflist(WorkloadConflist(spec_, names_));
    if (!net.ok()) return net.status();
    net_.emplace(std::move(*net));
    auto lo = CniNetwork::FromConflist(LoopbackConflist(names_));
    if (!lo.ok()) return lo.status();
    lo_.emplace(std::move(*lo));
    return WriteFileAtomic(names_.NetConflistPath(), net_->conflist().dump(2) + "\n");
  }

  // The agent pins under /sys/fs/bpf; a machine that has no bpffs there gets the standard
  // mount (as systemd makes at boot).
  absl::Status Bpffs() {
    if (st_.pin_root.rfind(std::string(kBpffsRoot) + "/", 0) != 0 || IsBpffs(kBpffsRoot)) {
      return absl::OkStatus();
    }
    st_.bpffs_mounted = true;
    if (auto s = Save(); !s.ok()) return s;
    if (::mount("bpf", kBpffsRoot, "bpf", 0, "mode=0700") != 0) {
      return Errno("mounting bpffs on /sys/fs/bpf");
    }
    progress_ << "lab " << o_.name << ": mounted bpffs on " << kBpffsRoot << "\n";
    return absl::OkStatus();
  }

  absl::Status Host() {
    st_.host_netns_created = true;
    if (auto s = Save(); !s.ok()) return s;
    if (auto s = CreateNetns(st_.host_netns); !s.ok()) return Annotate(s, "host netns");
    if (spec_.ipv6_subnet) {
      if (auto s = DisableDad(st_.host_netns); !s.ok()) return Annotate(s, "host netns");
    }
    exec_ = std::make_unique<ProcessPluginExecutor>(NetnsPath(st_.host_netns));
    auto lo =
        lo_->Add(LoopbackRuntime(names_.ContainerId("host"), st_.host_netns), o_.cni_path, *exec_);
    if (!lo.ok()) return Annotate(lo.status(), "host netns loopback");
    progress_ << "lab " << o_.name << ": host netns " << st_.host_netns << ", bridge " << st_.bridge
              << "\n";
    return absl::OkStatus();
  }

  absl::Status StartAgent() {
    int log = ::open(names_.AgentLog().c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (log < 0) return Errno("opening " + names_.AgentLog());
    Fd log_fd(log);
    auto ns = OpenNetns(NetnsPath(st_.host_netns));
    if (!ns.ok()) return ns.status();
    SpawnSpec spec;
    spec.path = o_.bulkhead_binary;
    spec.argv = {o_.bulkhead_binary, "agent",
                 "--policies",       o_.policies,
                 "--inventory",      names_.InventoryPath(),
                 "--state-dir",      names_.AgentStateDir(),
                 "--socket",         names_.AgentSocket(),
                 "--pin-root",       st_.pin_root};
    spec.env = CurrentEnvironment();
    spec.netns_fd = ns->get();
    spec.new_session = true;
    spec.stdout_fd = log_fd.get();
    spec.stderr_fd = log_fd.get();
    auto pid = Spawn(spec);
    if (!pid.ok()) return Annotate(pid.status(), "starting the agent");
    if (auto rec = RecordProcess(*pid)) st_.agent = *rec;
    if (auto s = Save(); !s.ok()) return s;
    auto deadline = std::chrono::steady_clock::now() + o_.agent_timeout;
    std::string last;
    while (std::chrono::steady_clock::now() < deadline) {
      if (!IsRunning(st_.agent)) {
        return absl::InternalError(absl::StrCat("the agent exited; the end of ", names_.AgentLog(),
                                                ":\n", TailOfFile(names_.AgentLog(), 20)));
      }
      auto status = agent_status_(names_.AgentSocket());
      if (status.ok()) {
        if (status->value("ready", false)) {
          progress_ << "lab " << o_.name << ": agent (pid " << st_.agent.pid << ") ready, revision "
                    << status->value("revision", std::string("?")) << "\n";
          return absl::OkStatus();
        }
        std::string err = status->value("last_error", std::string());
        if (!err.empty()) {
          return absl::InvalidArgumentError("the agent refused the policies or inventory:\n" + err);
        }
        last = "not ready yet";
      } else {
        last = std::string(status.status().message());
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return absl::DeadlineExceededError(absl::StrCat(
        "the agent was not ready after ", o_.agent_timeout.count(), " ms (", last, "); the end of ",
        names_.AgentLog(), ":\n", TailOfFile(names_.AgentLog(), 20)));
  }

  absl::Status AddWorkload(WorkloadState& w) {
    w.netns_created = true;
    if (auto s = Save(); !s.ok()) return s;
    if (auto s = CreateNetns(w.netns); !s.ok()) return s;
    if (spec_.ipv6_subnet) {
      if (auto s = DisableDad(w.netns); !s.ok()) return s;
    }
    w.cni_added = true;
    if (auto s = Save(); !s.ok()) return s;
    auto lo = lo_->Add(LoopbackRuntime(w.container_id, w.netns), o_.cni_path, *exec_);
    if (!lo.ok()) return lo.status();
    auto result = net_->Add(WorkloadRuntime(w), o_.cni_path, *exec_);
    if (!result.ok()) return result.status();
    w.cni_result = *result;
    auto addrs = ParseAddResult(*result, NetnsPath(w.netns), st_.bridge);
    if (!addrs.ok()) return addrs.status();
    w.host_interface = addrs->host_interface;
    w.ips.clear();
    for (const auto& ip : addrs->ips) w.ips.push_back(ip.ToString());
    progress_ << "lab " << o_.name << ": " << w.id << " in netns " << w.netns << ": "
              << absl::StrJoin(w.ips, ", ") << " (host veth " << w.host_interface << ")\n";
    return Save();
  }

  absl::Status StartServer(WorkloadState& w) {
    if (w.ports.empty()) return absl::OkStatus();
    int pipe_fds[2];
    if (::pipe2(pipe_fds, O_CLOEXEC) != 0) return Errno("pipe");
    Fd ready_read(pipe_fds[0]);
    Fd ready_write(pipe_fds[1]);
    std::string log_path = names_.ServerLog(w.id);
    int log = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (log < 0) return Errno("opening " + log_path);
    Fd log_fd(log);
    auto ns = OpenNetns(NetnsPath(w.netns));
    if (!ns.ok()) return ns.status();
    SpawnSpec spec;
    spec.path = o_.bulkhead_binary;
    spec.argv = {o_.bulkhead_binary,
                 "lab",
                 "serve",
                 "--workload",
                 w.id,
                 "--ready-fd",
                 std::to_string(ready_write.get())};
    for (const auto& ip : w.ips) {
      spec.argv.emplace_back("--address");
      spec.argv.push_back(ip);
    }
    for (const auto& p : w.ports) {
      spec.argv.emplace_back("--port");
      spec.argv.push_back(absl::StrCat(p.port, "/", policy::ProtocolName(p.protocol)));
    }
    spec.env = CurrentEnvironment();
    spec.netns_fd = ns->get();
    spec.new_session = true;
    spec.stdout_fd = log_fd.get();
    spec.stderr_fd = log_fd.get();
    spec.pass_fds = {ready_write.get()};
    auto pid = Spawn(spec);
    if (!pid.ok()) return pid.status();
    ready_write = Fd();
    if (auto rec = RecordProcess(*pid)) w.server = *rec;
    if (auto s = Save(); !s.ok()) return s;
    pollfd p{ready_read.get(), POLLIN, 0};
    char buf[16] = {};
    if (::poll(&p, 1, 10000) == 1 && ::read(ready_read.get(), buf, sizeof buf - 1) > 0 &&
        std::string_view(buf).rfind("ready", 0) == 0) {
      return absl::OkStatus();
    }
    return absl::InternalError(absl::StrCat("the server did not start; the end of ", log_path,
                                            ":\n", TailOfFile(log_path, 10)));
  }

  const LabSpec& spec_;
  const UpOptions& o_;
  const AgentStatusFn& agent_status_;
  std::ostream& progress_;
  LabNames names_;
  std::string pin_root_;
  LabState st_;
  std::optional<LabLock> lock_;
  std::optional<CniNetwork> net_;
  std::optional<CniNetwork> lo_;
  std::unique_ptr<ProcessPluginExecutor> exec_;
};

}  // namespace

std::string AgentInventoryYaml(const LabSpec& spec) {
  return InventoryHead(spec,
                       "The lab's namespaces, for its agent (written by `bulkhead lab up`). "
                       "Workloads come from bulkhead-cni.");
}

std::string ClusterInventoryYaml(const LabSpec& spec, const LabState& state) {
  std::string out = InventoryHead(
      spec,
      "The lab's namespaces and workloads with their addresses (written by `bulkhead lab up`), "
      "for `bulkhead simulate -f POLICIES -f THIS`.");
  out += "  workloads:\n";
  for (const auto& w : spec.workloads) {
    out += "  - name: " + Q(w.name) + "\n    namespace: " + Q(w.namespace_name) +
           "\n    labels: " + LabelsFlow(w.labels) +
           "\n    serviceAccount: " + Q(w.service_account) + "\n";
    if (const WorkloadState* ws = state.FindWorkload(w.Id()); ws != nullptr && !ws->ips.empty()) {
      out += "    ips: " + Json(ws->ips).dump() + "\n";
    }
    // Only named ports: an Inventory's ports exist for named-port resolution.
    std::string named;
    for (const auto& p : w.ports) {
      if (p.name.empty()) continue;
      named += "    - {name: " + Q(p.name) + ", port: " + std::to_string(p.port) +
               ", protocol: " + policy::ProtocolName(p.protocol) + "}\n";
    }
    if (!named.empty()) out += "    ports:\n" + named;
  }
  return out;
}

Json WorkloadConflist(const LabSpec& spec, const LabNames& names) {
  Json ranges = Json::array();
  Json routes = Json::array();
  if (spec.ipv4_subnet) {
    ranges.push_back(Json::array({Json{{"subnet", spec.ipv4_subnet->ToString()}}}));
    routes.push_back(Json{{"dst", "0.0.0.0/0"}});
  }
  if (spec.ipv6_subnet) {
    ranges.push_back(Json::array({Json{{"subnet", spec.ipv6_subnet->ToString()}}}));
    routes.push_back(Json{{"dst", "::/0"}});
  }
  Json bridge = {{"type", kBridgePlugin},
                 {"bridge", names.Bridge()},
                 {"isGateway", true},
                 {"ipMasq", false},
                 {"hairpinMode", false},
                 {"ipam",
                  {{"type", "host-local"},
                   {"dataDir", names.IpamDir()},
                   {"ranges", ranges},
                   {"routes", routes}}}};
  Json bulkhead = {{"type", kBulkheadPlugin}, {"agentSocket", names.AgentSocket()}};
  return Json{{"cniVersion", kCniVersion},
              {"name", "bhlab-" + names.lab},
              {"plugins", Json::array({bridge, bulkhead})}};
}

Json LoopbackConflist(const LabNames& names) {
  return Json{{"cniVersion", kCniVersion},
              {"name", "bhlab-" + names.lab + "-lo"},
              {"plugins", Json::array({Json{{"type", kLoopbackPlugin}}})}};
}

std::string WorkloadCniArgs(const LabWorkload& w, const std::string& container_id) {
  // IgnoreUnknown: the Go plugins refuse CNI_ARGS keys they do not know without it.
  return absl::StrCat("IgnoreUnknown=1;K8S_POD_NAMESPACE=", w.namespace_name,
                      ";K8S_POD_NAME=", w.name, ";K8S_POD_INFRA_CONTAINER_ID=", container_id);
}

Json WorkloadNetconfArgs(const LabWorkload& w) {
  Json labels = Json::array();
  for (const auto& [k, v] : w.labels) labels.push_back(Json{{"key", k}, {"value", v}});
  Json bulkhead = {{"serviceAccount", w.service_account}};
  Json named = Json::array();
  for (const auto& p : w.ports) {
    if (p.name.empty()) continue;
    named.push_back(
        Json{{"name", p.name}, {"port", p.port}, {"protocol", policy::ProtocolName(p.protocol)}});
  }
  if (!named.empty()) bulkhead["namedPorts"] = std::move(named);
  return Json{{"cni", {{"labels", labels}}}, {"bulkhead", std::move(bulkhead)}};
}

std::vector<std::string> DefaultCniPath(const std::string& bulkhead_binary) {
  std::vector<std::string> out;
  std::string own = fs::path(bulkhead_binary).parent_path().string();
  for (const std::string& d : {own, std::string("/usr/lib/cni"), std::string("/opt/cni/bin")}) {
    if (!d.empty() && std::find(out.begin(), out.end(), d) == out.end()) out.push_back(d);
  }
  return out;
}

absl::StatusOr<std::string> ResolveLabName(const std::string& given, const std::string& run_dir) {
  if (!given.empty()) {
    std::string problem = CheckLabName(given);
    if (!problem.empty()) {
      return absl::InvalidArgumentError("--name: invalid lab name \"" + given + "\": " + problem);
    }
    return given;
  }
  std::vector<std::string> labs = ListLabs(run_dir);
  if (labs.empty()) return absl::NotFoundError("no lab is up (nothing in " + run_dir + ")");
  if (labs.size() > 1) {
    return absl::InvalidArgumentError("several labs are up (" + absl::StrJoin(labs, ", ") +
                                      "): choose one with --name");
  }
  return labs.front();
}

absl::StatusOr<LabState> Up(const LabSpec& spec, const UpOptions& options,
                            const AgentStatusFn& agent_status, std::ostream& progress) {
  Builder b(spec, options, agent_status, progress);
  if (auto s = b.Check(); !s.ok()) return s;
  if (auto s = b.Claim(); !s.ok()) return s;
  absl::Status s = b.Build();
  if (s.ok()) return b.state();
  if (options.keep_on_failure) {
    progress << "lab " << options.name << ": failed; kept for inspection (" << b.names().StateDir()
             << "); remove it with `bulkhead lab down --name " << options.name << "`\n";
    return s;
  }
  progress << "lab " << options.name << ": failed; removing what was made\n";
  // The Builder still holds the lock, which Down takes.
  b.ReleaseLock();
  DownReport report = Down(b.names(), progress);
  for (const auto& w : report.warnings) progress << "lab " << options.name << ": " << w << "\n";
  for (const auto& l : report.left) {
    progress << "lab " << options.name << ": left behind: " << l << "\n";
  }
  return s;
}

std::vector<std::string> Leftovers(const LabNames& names, const std::string& pin_root,
                                   const std::vector<ProcessRecord>& processes) {
  std::vector<std::string> left;
  for (const auto& ns : ListNetns(names.NetnsPrefix())) left.push_back("netns " + ns);
  std::error_code ec;
  if (!pin_root.empty() && fs::exists(pin_root, ec)) left.push_back("pins " + pin_root);
  if (fs::exists(names.StateDir(), ec)) left.push_back("state dir " + names.StateDir());
  for (const auto& p : processes) {
    if (IsRunning(p)) left.push_back("process " + std::to_string(p.pid));
  }
  return left;
}

DownReport Down(const LabNames& names, std::ostream& progress) {
  DownReport r;
  std::error_code ec;
  std::string prefix = "lab " + names.lab + ": ";
  bool have_dir = fs::exists(names.StateDir(), ec);
  std::optional<LabLock> lock;
  std::optional<LabState> st;
  if (have_dir) {
    r.found = true;
    auto l = LabLock::Acquire(names.LockPath(), 15000);
    if (!l.ok()) {
      r.warnings.emplace_back(l.status().message());
      r.left = Leftovers(names, "", {});
      return r;
    }
    lock.emplace(std::move(*l));
    auto loaded = LoadState(names);
    if (loaded.ok()) {
      st = std::move(*loaded);
    } else if (!absl::IsNotFound(loaded.status())) {
      r.warnings.push_back("state unreadable, removing by name: " +
                           std::string(loaded.status().message()));
    }
  }
  std::string pin_root = st && !st->pin_root.empty() ? st->pin_root : names.DefaultPinRoot();
  std::string host = names.HostNetns();

  // 1. CNI DEL while the agent may still answer bulkhead-cni, newest workload first.
  if (st && NetnsExists(host)) {
    auto net = ReadConflist(names.NetConflistPath());
    auto lo = CniNetwork::FromConflist(LoopbackConflist(names));
    ProcessPluginExecutor exec(NetnsPath(host));
    std::vector<std::string> cni_path =
        st->cni_path.empty() ? DefaultCniPath(SelfExecutable()) : st->cni_path;
    for (size_t i = st->workloads.size(); i-- > 0;) {
      const WorkloadState& w = st->workloads[i];
      if (!w.cni_added) continue;
      if (net.ok()) {
        auto s = net->Del(WorkloadRuntime(w), w.cni_result, cni_path, exec);
        if (!s.ok()) r.warnings.push_back("CNI DEL of " + w.id + ": " + std::string(s.message()));
      }
      if (lo.ok()) {
        auto s = lo->Del(LoopbackRuntime(w.container_id, w.netns), Json(), cni_path, exec);
        if (!s.ok())
          r.warnings.push_back("loopback DEL of " + w.id + ": " + std::string(s.message()));
      }
    }
    if (!net.ok() && !absl::IsNotFound(net.status())) {
      r.warnings.emplace_back(net.status().message());
    }
  }
  // 2. Servers, then the agent (it leaves its pins: removed below).
  std::vector<ProcessRecord> processes;
  if (st) {
    for (const auto& w : st->workloads) {
      processes.push_back(w.server);
      if (auto s = StopProcess(w.server, std::chrono::milliseconds(1000)); !s.ok()) {
        r.warnings.push_back("server of " + w.id + ": " + std::string(s.message()));
      }
    }
    processes.push_back(st->agent);
    if (auto s = StopProcess(st->agent, std::chrono::milliseconds(5000)); !s.ok()) {
      r.warnings.push_back("agent: " + std::string(s.message()));
    }
  }
  // 3. Whatever still lives in the lab's namespaces (processes that were started but not yet
  //    recorded, plugins of an `up` that was killed).
  std::vector<std::string> netns = ListNetns(names.NetnsPrefix());
  if (!netns.empty()) r.found = true;
  for (const auto& ns : netns) {
    for (pid_t pid : PidsInNetns(NetnsPath(ns))) {
      if (pid == ::getpid()) continue;
      if (auto rec = RecordProcess(pid)) {
        processes.push_back(*rec);
        ::kill(pid, SIGKILL);
        if (auto s = StopProcess(*rec, std::chrono::milliseconds(0)); !s.ok()) {
          r.warnings.push_back("process " + std::to_string(pid) + " in " + ns + ": " +
                               std::string(s.message()));
        }
      }
    }
  }
  // 4. Namespaces: the host's last, it holds the bridge and the host ends of the veths.
  std::stable_partition(netns.begin(), netns.end(),
                        [&](const std::string& n) { return n != host; });
  for (const auto& ns : netns) {
    if (auto s = DeleteNetns(ns); !s.ok()) r.warnings.emplace_back(s.message());
  }
  // 5. Pins of the agent's datapath.
  if (fs::exists(pin_root, ec)) {
    r.found = true;
    fs::remove_all(pin_root, ec);
    if (ec) r.warnings.push_back("removing " + pin_root + ": " + ec.message());
    // The shared parent goes too when this was its last lab.
    if (fs::path(pin_root).parent_path() == kDefaultPinParent) {
      ::rmdir(kDefaultPinParent);
    }
  }
  // 6. The state dir (with the lock file: its open descriptor stays valid until we exit).
  if (have_dir) {
    fs::remove_all(names.StateDir(), ec);
    if (ec) r.warnings.push_back("removing " + names.StateDir() + ": " + ec.message());
  }
  r.left = Leftovers(names, pin_root, processes);
  if (r.found) {
    progress << prefix << (r.left.empty() ? "removed" : "partly removed") << "\n";
  }
  return r;
}

}  // namespace bulkhead::lab
