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
#include "absl/strings/str_split.h"
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

// One workload of an Inventory: labels, service account, addresses, named ports, and (when
// `with_node`) the host it runs on.
std::string WorkloadYaml(const LabWorkload& w, const LabState& state, bool with_node) {
  std::string out = "  - name: " + Q(w.name) + "\n    namespace: " + Q(w.namespace_name) +
                    "\n    labels: " + LabelsFlow(w.labels) +
                    "\n    serviceAccount: " + Q(w.service_account) + "\n";
  if (with_node) out += "    node: " + Q(w.host) + "\n";
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

// The host's end of its underlay link (in the host's netns).
constexpr const char* kUnderlayInterface = "underlay";

// The lab's server: the name in its certificate (the agents check it), its ports in the core
// netns (the REST API on the core's loopback only).
constexpr const char* kServerName = "bulkhead-lab-server";
constexpr int kServerRestPort = 8443;
constexpr int kServerAgentsPort = 8444;

// Runs `bulkhead ARGS` in the lab's core netns; its stdout, or an error with its stderr.
absl::StatusOr<std::string> RunInCore(const LabState& st, const std::string& bulkhead,
                                      const std::vector<std::string>& args) {
  auto ns = OpenNetns(NetnsPath(st.core_netns));
  if (!ns.ok()) return ns.status();
  SpawnSpec spec;
  spec.path = bulkhead;
  spec.argv = {bulkhead};
  spec.argv.insert(spec.argv.end(), args.begin(), args.end());
  spec.env = CurrentEnvironment();
  spec.netns_fd = ns->get();
  auto r = RunCaptured(spec, "", std::chrono::seconds(60));
  if (!r.ok()) return r.status();
  if (r->exit_code != 0) {
    return absl::Status(
        r->exit_code == 2 ? absl::StatusCode::kInvalidArgument : absl::StatusCode::kInternal,
        absl::StrCat("bulkhead ", args.empty() ? "" : args[0], " exited ", r->exit_code, ": ",
                     r->err, r->out));
  }
  return r->out;
}

// The `ip` binary (iproute2) that makes the underlay's veths, addresses and routes.
std::string FindIp() {
  for (const char* p : {"/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"}) {
    if (::access(p, X_OK) == 0) return p;
  }
  return "";
}

// "10.0.0.1/30" -> "10.0.0.1".
std::string AddressPart(const std::string& cidr) { return cidr.substr(0, cidr.find('/')); }

absl::Status EnableForwarding(const std::string& netns_name, bool v4, bool v6) {
  return RunInNetns(NetnsPath(netns_name), [&] {
    if (v4) {
      if (auto s = WriteSysctl("net/ipv4/ip_forward", "1"); !s.ok()) return s;
    }
    if (v6) {
      if (auto s = WriteSysctl("net/ipv6/conf/all/forwarding", "1"); !s.ok()) return s;
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
    if (o_.server && !spec_.MultiHost()) {
      return absl::InvalidArgumentError(
          "--control-plane server needs a lab with several hosts (spec.hosts): the server runs "
          "in the core netns of their underlay");
    }
    if (spec_.MultiHost()) {
      ip_ = FindIp();
      if (ip_.empty()) {
        return absl::FailedPreconditionError(
            "a lab with several hosts needs iproute2's `ip` (for the underlay)");
      }
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
    const bool multi = spec_.MultiHost();
    st_.name = o_.name;
    st_.phase = "building";
    st_.lab_file = o_.lab_file;
    st_.policies = o_.policies;
    st_.pin_root = pin_root_;
    st_.cni_path = o_.cni_path;
    if (multi) st_.core_netns = names_.CoreNetns();
    if (o_.server) {
      st_.control_plane = "server";
      st_.server_dir = names_.StateDir() + "/server";
      st_.server_url = absl::StrCat("https://127.0.0.1:", kServerRestPort);
    }
    for (size_t i = 0; i < spec_.hosts.size(); ++i) {
      const LabHost& lh = spec_.hosts[i];
      LabNames::HostPaths p = names_.ForHost(lh.name, multi, pin_root_);
      HostState h;
      h.name = lh.name;
      h.netns = p.netns;
      h.bridge = names_.Bridge();
      h.pin_root = p.pin_root;
      h.agent_socket = p.agent_socket;
      h.agent_state_dir = p.agent_state_dir;
      h.agent_log = p.agent_log;
      h.inventory = p.inventory;
      h.conflist = p.conflist;
      h.ipam_dir = p.ipam_dir;
      if (lh.ipv4_subnet) h.subnets.push_back(lh.ipv4_subnet->ToString());
      if (lh.ipv6_subnet) h.subnets.push_back(lh.ipv6_subnet->ToString());
      if (multi) {
        UnderlayLink link =
            Underlay(i, spec_.ipv4_subnet.has_value(), spec_.ipv6_subnet.has_value());
        h.underlay = link.host;
        h.core_addresses = link.core;
        h.core_interface = link.core_interface;
      }
      st_.hosts.push_back(std::move(h));
    }
    for (const auto& w : spec_.workloads) {
      WorkloadState ws;
      ws.id = w.Id();
      ws.host = w.host;
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
    if (multi) {
      if (auto s = Core(); !s.ok()) return Annotate(s, "core netns");
    }
    for (auto& h : st_.hosts) {
      if (auto s = Host(h); !s.ok()) return Annotate(s, "host " + h.name);
    }
    if (o_.server) {
      if (auto s = StartControlPlane(); !s.ok()) return Annotate(s, "the lab's server");
    }
    // The agents start together and are waited for together: their start is most of `up`.
    for (auto& h : st_.hosts) {
      if (auto s = StartAgent(h); !s.ok()) return Annotate(s, AgentName(h));
    }
    for (auto& h : st_.hosts) {
      if (auto s = WaitAgent(h, ""); !s.ok()) return Annotate(s, AgentName(h));
    }
    for (auto& w : st_.workloads) {
      if (auto s = AddWorkload(w); !s.ok()) return Annotate(s, "workload " + w.id);
    }
    for (auto& w : st_.workloads) {
      if (auto s = StartServer(w); !s.ok()) return Annotate(s, "server of " + w.id);
    }
    if (o_.server) {
      if (auto s = WaitPeersFromServer(); !s.ok()) return s;
    } else if (multi) {
      if (auto s = Peers(); !s.ok()) return s;
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

  std::string AgentName(const HostState& h) const {
    return spec_.MultiHost() ? "the agent of host " + h.name : "the agent";
  }

  absl::Status Save() { return SaveState(names_, st_); }

  absl::Status Ip(const std::vector<std::string>& args) {
    SpawnSpec spec;
    spec.path = ip_;
    spec.argv = {ip_};
    spec.argv.insert(spec.argv.end(), args.begin(), args.end());
    spec.env = CurrentEnvironment();
    auto r = RunCaptured(spec, "", std::chrono::seconds(10));
    if (!r.ok()) return r.status();
    if (r->exit_code != 0) {
      return absl::InternalError(
          absl::StrCat("ip ", absl::StrJoin(args, " "), ": exit ", r->exit_code, ": ", r->err));
    }
    return absl::OkStatus();
  }

  absl::Status WriteFiles() {
    std::error_code ec;
    std::vector<std::string> dirs = {fs::path(names_.ServerLog("x/y")).parent_path().string()};
    for (const auto& h : st_.hosts) {
      dirs.push_back(h.agent_state_dir);
      dirs.push_back(h.ipam_dir);
    }
    for (const auto& dir : dirs) {
      fs::create_directories(dir, ec);
      if (ec) return absl::InternalError("creating " + dir + ": " + ec.message());
    }
    if (auto s = WriteFileAtomic(names_.LabCopyPath(), o_.lab_file_content); !s.ok()) return s;
    auto lo = CniNetwork::FromConflist(LoopbackConflist(names_));
    if (!lo.ok()) return lo.status();
    lo_.emplace(std::move(*lo));
    for (const auto& h : st_.hosts) {
      if (auto s = WriteFileAtomic(h.inventory, AgentInventoryYaml(spec_)); !s.ok()) return s;
      auto net = CniNetwork::FromConflist(HostConflist(names_, h));
      if (!net.ok()) return net.status();
      if (auto s = WriteFileAtomic(h.conflist, net->conflist().dump(2) + "\n"); !s.ok()) return s;
      HostRuntime rt{std::move(*net), std::make_unique<ProcessPluginExecutor>(NetnsPath(h.netns))};
      runtimes_.emplace(h.name, std::move(rt));
    }
    return absl::OkStatus();
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

  // The underlay's router: one veth per host (made with each host), forwarding on.
  absl::Status Core() {
    st_.core_created = true;
    if (auto s = Save(); !s.ok()) return s;
    if (auto s = CreateNetns(st_.core_netns); !s.ok()) return s;
    if (spec_.ipv6_subnet) {
      if (auto s = DisableDad(st_.core_netns); !s.ok()) return s;
    }
    if (auto s = Ip({"-n", st_.core_netns, "link", "set", "lo", "up"}); !s.ok()) return s;
    return EnableForwarding(st_.core_netns, spec_.ipv4_subnet.has_value(),
                            spec_.ipv6_subnet.has_value());
  }

  absl::Status Host(HostState& h) {
    h.netns_created = true;
    if (auto s = Save(); !s.ok()) return s;
    if (auto s = CreateNetns(h.netns); !s.ok()) return s;
    if (spec_.ipv6_subnet) {
      if (auto s = DisableDad(h.netns); !s.ok()) return s;
    }
    HostRuntime& rt = runtimes_.at(h.name);
    std::string lo_id = names_.ContainerId(spec_.MultiHost() ? "host/" + h.name : "host");
    auto lo = lo_->Add(LoopbackRuntime(lo_id, h.netns), o_.cni_path, *rt.exec);
    if (!lo.ok()) return Annotate(lo.status(), "loopback");
    if (spec_.MultiHost()) {
      if (auto s = Link(h); !s.ok()) return Annotate(s, "underlay");
    }
    progress_ << "lab " << o_.name << ": host " << h.name << ": netns " << h.netns << ", bridge "
              << h.bridge << ", pods " << absl::StrJoin(h.subnets, ", ");
    if (!h.underlay.empty()) progress_ << ", underlay " << absl::StrJoin(h.underlay, ", ");
    progress_ << "\n";
    return absl::OkStatus();
  }

  // The host's veth to the core, its addresses, and the routes: the host's default route
  // goes to the core, the core routes the host's pod subnets to the host. No NAT anywhere,
  // so a packet keeps its pod source address from one host to the other.
  absl::Status Link(const HostState& h) {
    const std::string& core = st_.core_netns;
    if (auto s =
            EnableForwarding(h.netns, spec_.ipv4_subnet.has_value(), spec_.ipv6_subnet.has_value());
        !s.ok()) {
      return s;
    }
    if (auto s = Ip({"-n", core, "link", "add", h.core_interface, "type", "veth", "peer", "name",
                     kUnderlayInterface, "netns", h.netns});
        !s.ok()) {
      return s;
    }
    for (size_t i = 0; i < h.underlay.size(); ++i) {
      bool v6 = h.underlay[i].find(':') != std::string::npos;
      std::vector<std::string> core_addr = {
          "-n", core, "addr", "add", h.core_addresses[i], "dev", h.core_interface};
      std::vector<std::string> host_addr = {"-n",  h.netns,           "addr", "add", h.underlay[i],
                                            "dev", kUnderlayInterface};
      if (v6) {
        core_addr.emplace_back("nodad");
        host_addr.emplace_back("nodad");
      }
      if (auto s = Ip(core_addr); !s.ok()) return s;
      if (auto s = Ip(host_addr); !s.ok()) return s;
    }
    if (auto s = Ip({"-n", core, "link", "set", h.core_interface, "up"}); !s.ok()) return s;
    if (auto s = Ip({"-n", h.netns, "link", "set", kUnderlayInterface, "up"}); !s.ok()) return s;
    for (size_t i = 0; i < h.underlay.size(); ++i) {
      bool v6 = h.underlay[i].find(':') != std::string::npos;
      std::string family = v6 ? "-6" : "-4";
      if (auto s = Ip({family, "-n", h.netns, "route", "add", "default", "via",
                       AddressPart(h.core_addresses[i]), "dev", kUnderlayInterface});
          !s.ok()) {
        return s;
      }
      for (const auto& subnet : h.subnets) {
        if ((subnet.find(':') != std::string::npos) != v6) continue;
        if (auto s = Ip({family, "-n", core, "route", "add", subnet, "via",
                         AddressPart(h.underlay[i]), "dev", h.core_interface});
            !s.ok()) {
          return s;
        }
      }
    }
    return absl::OkStatus();
  }

  absl::Status StartAgent(HostState& h) {
    int log = ::open(h.agent_log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (log < 0) return Errno("opening " + h.agent_log);
    Fd log_fd(log);
    auto ns = OpenNetns(NetnsPath(h.netns));
    if (!ns.ok()) return ns.status();
    SpawnSpec spec;
    spec.path = o_.bulkhead_binary;
    spec.argv = {o_.bulkhead_binary, "agent",        "--state-dir", h.agent_state_dir,
                 "--socket",         h.agent_socket, "--pin-root",  h.pin_root};
    if (o_.server) {
      // Joins the lab's server as node HOST; policies and namespaces come from the server,
      // the other hosts' workloads too (as peers).
      for (const std::string& a :
           {std::string("--server"), st_.server_agents_address, std::string("--token"), join_token_,
            std::string("--node-name"), h.name, std::string("--tls-server-name"),
            std::string(kServerName)}) {
        spec.argv.push_back(a);
      }
    } else {
      for (const std::string& a :
           {std::string("--policies"), o_.policies, std::string("--inventory"), h.inventory}) {
        spec.argv.push_back(a);
      }
    }
    if (spec_.MultiHost() && !o_.server) {
      // Its node name: inventory workloads of other hosts are its peers.
      spec.argv.emplace_back("--node");
      spec.argv.push_back(h.name);
    }
    spec.env = CurrentEnvironment();
    spec.netns_fd = ns->get();
    spec.new_session = true;
    spec.stdout_fd = log_fd.get();
    spec.stderr_fd = log_fd.get();
    auto pid = Spawn(spec);
    if (!pid.ok()) return Annotate(pid.status(), "starting");
    if (auto rec = RecordProcess(*pid)) h.agent = *rec;
    return Save();
  }

  // Waits until the agent is ready with a revision other than `old_revision`.
  absl::Status WaitAgent(const HostState& h, const std::string& old_revision) {
    auto deadline = std::chrono::steady_clock::now() + o_.agent_timeout;
    std::string last;
    while (std::chrono::steady_clock::now() < deadline) {
      if (!IsRunning(h.agent)) {
        return absl::InternalError(absl::StrCat("it exited; the end of ", h.agent_log, ":\n",
                                                TailOfFile(h.agent_log, 20)));
      }
      auto status = agent_status_(h.agent_socket);
      if (status.ok()) {
        std::string revision = status->value("revision", std::string());
        std::string err = status->value("last_error", std::string());
        // A server-mode agent reports the wait for its first snapshot as its error, and a
        // set it refused is acked to the server: wait, and name the error at the deadline.
        if (!err.empty() && !o_.server) {
          return absl::InvalidArgumentError("it refused the policies or inventory:\n" + err);
        }
        if (!err.empty()) {
          last = err;
          std::this_thread::sleep_for(std::chrono::milliseconds(50));
          continue;
        }
        if (status->value("ready", false) && revision != old_revision) {
          progress_ << "lab " << o_.name << ": " << AgentName(h) << " (pid " << h.agent.pid
                    << ") ready, revision " << revision << "\n";
          return absl::OkStatus();
        }
        last = status->value("ready", false) ? "still at revision " + revision : "not ready yet";
      } else {
        last = std::string(status.status().message());
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return absl::DeadlineExceededError(absl::StrCat("not ready after ", o_.agent_timeout.count(),
                                                    " ms (", last, "); the end of ", h.agent_log,
                                                    ":\n", TailOfFile(h.agent_log, 20)));
  }

  // `bulkhead server init` (its CA, certificate and admin token in STATE/server), the server
  // in the core netns (REST on its loopback, the agents' gRPC on every address), a join
  // token, and the lab's policies and namespaces applied over REST.
  absl::Status StartControlPlane() {
    SpawnSpec init;
    init.path = o_.bulkhead_binary;
    init.argv = {o_.bulkhead_binary, "server", "init",     "--data-dir",
                 st_.server_dir,     "--name", kServerName};
    init.env = CurrentEnvironment();
    auto r = RunCaptured(init, "", std::chrono::seconds(60));
    if (!r.ok()) return r.status();
    if (r->exit_code != 0) {
      return absl::InternalError("bulkhead server init: " + r->err);
    }
    std::string log_path = names_.StateDir() + "/server.log";
    int log = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (log < 0) return Errno("opening " + log_path);
    Fd log_fd(log);
    auto ns = OpenNetns(NetnsPath(st_.core_netns));
    if (!ns.ok()) return ns.status();
    // The agents reach the core over their own link; the server listens on every address.
    const HostState& first = st_.hosts.front();
    std::string core = AddressPart(first.core_addresses.front());
    bool v6 = core.find(':') != std::string::npos;
    SpawnSpec spec;
    spec.path = o_.bulkhead_binary;
    spec.argv = {o_.bulkhead_binary, "server",
                 "--data-dir",       st_.server_dir,
                 "--listen",         absl::StrCat("127.0.0.1:", kServerRestPort),
                 "--grpc-listen",    absl::StrCat(v6 ? "[::]:" : "0.0.0.0:", kServerAgentsPort)};
    spec.env = CurrentEnvironment();
    spec.netns_fd = ns->get();
    spec.new_session = true;
    spec.stdout_fd = log_fd.get();
    spec.stderr_fd = log_fd.get();
    auto pid = Spawn(spec);
    if (!pid.ok()) return pid.status();
    if (auto rec = RecordProcess(*pid)) st_.server = *rec;
    if (auto s = Save(); !s.ok()) return s;
    // A join token, once the REST API answers.
    auto deadline = std::chrono::steady_clock::now() + o_.agent_timeout;
    std::string last;
    while (join_token_.empty()) {
      if (!IsRunning(st_.server) || std::chrono::steady_clock::now() > deadline) {
        return absl::InternalError(absl::StrCat(
            IsRunning(st_.server) ? "no join token from it (" + last + ")" : "it exited",
            "; the end of ", log_path, ":\n", TailOfFile(log_path, 20)));
      }
      auto out =
          InCore({"token", "create", "--server", st_.server_url, "--ca", st_.server_dir + "/ca.crt",
                  "--token-file", st_.server_dir + "/admin.token", "--ttl", "24h"});
      if (out.ok()) {
        size_t at = out->find("bhj_");
        if (at != std::string::npos) {
          size_t end = out->find_first_of(" \n\t", at);
          join_token_ = out->substr(at, end == std::string::npos ? end : end - at);
          break;
        }
      }
      last = out.ok() ? "no token in its output" : std::string(out.status().message());
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    st_.server_agents_address = v6 ? absl::StrCat("[", core, "]:", kServerAgentsPort)
                                   : absl::StrCat(core, ":", kServerAgentsPort);
    if (auto s =
            WriteFileAtomic(names_.StateDir() + "/namespaces.yaml", NamespaceObjectsYaml(spec_));
        !s.ok()) {
      return s;
    }
    if (auto s = Save(); !s.ok()) return s;
    auto applied = ApplyToServer(names_, st_, o_.bulkhead_binary);
    if (!applied.ok()) return applied.status();
    progress_ << "lab " << o_.name << ": server (pid " << st_.server.pid << ") in "
              << st_.core_netns << ", agents join " << st_.server_agents_address << "; "
              << absl::StrJoin(absl::StrSplit(*applied, '\n', absl::SkipEmpty()), "; ") << "\n";
    return absl::OkStatus();
  }

  // Runs `bulkhead ARGS` in the core netns; its stdout, or an error with its stderr.
  absl::StatusOr<std::string> InCore(const std::vector<std::string>& args) {
    return RunInCore(st_, o_.bulkhead_binary, args);
  }

  // Server mode: each agent has every other host's workload as a peer (the server passes
  // endpoints between agents) and no namespace held at deny.
  absl::Status WaitPeersFromServer() {
    for (const auto& h : st_.hosts) {
      size_t want = 0;
      for (const auto& w : st_.workloads) want += w.host != h.name;
      auto deadline = std::chrono::steady_clock::now() + o_.agent_timeout;
      std::string last;
      for (;;) {
        auto status = agent_status_(h.agent_socket);
        if (status.ok()) {
          const auto& srv = status->value("server", Json::object());
          size_t peers = srv.value("peers", size_t{0});
          bool held = !srv.value("held_namespaces", Json::array()).empty() ||
                      !srv.value("pending_namespaces", Json::array()).empty();
          std::string err = status->value("last_error", std::string());
          if (peers == want && !held && err.empty() && status->value("ready", false)) break;
          last = absl::StrCat(peers, " of ", want, " peers", held ? ", namespaces held" : "",
                              err.empty() ? "" : ", " + err);
        } else {
          last = std::string(status.status().message());
        }
        if (std::chrono::steady_clock::now() > deadline) {
          return absl::DeadlineExceededError(
              absl::StrCat(AgentName(h), " did not get its peers from the server (", last,
                           "); the end of ", h.agent_log, ":\n", TailOfFile(h.agent_log, 20)));
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
      }
      progress_ << "lab " << o_.name << ": " << AgentName(h) << " has its " << want
                << " peers from the server\n";
    }
    return absl::OkStatus();
  }

  // Standalone agents learn the other hosts' workloads (their peers) from their inventory:
  // written once every workload has its addresses, then each agent must apply it.
  absl::Status Peers() {
    std::vector<std::string> before;
    for (const auto& h : st_.hosts) {
      auto status = agent_status_(h.agent_socket);
      before.push_back(status.ok() ? status->value("revision", std::string()) : std::string());
      if (auto s = WriteFileAtomic(h.inventory, PeerInventoryYaml(spec_, st_, h.name)); !s.ok()) {
        return s;
      }
    }
    for (size_t i = 0; i < st_.hosts.size(); ++i) {
      if (auto s = WaitAgent(st_.hosts[i], before[i]); !s.ok()) {
        return Annotate(s, AgentName(st_.hosts[i]) + " with its peers");
      }
    }
    return absl::OkStatus();
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
    HostRuntime& rt = runtimes_.at(w.host);
    auto lo = lo_->Add(LoopbackRuntime(w.container_id, w.netns), o_.cni_path, *rt.exec);
    if (!lo.ok()) return lo.status();
    auto result = rt.net.Add(WorkloadRuntime(w), o_.cni_path, *rt.exec);
    if (!result.ok()) return result.status();
    w.cni_result = *result;
    auto addrs = ParseAddResult(*result, NetnsPath(w.netns), st_.FindHost(w.host)->bridge);
    if (!addrs.ok()) return addrs.status();
    w.host_interface = addrs->host_interface;
    w.ips.clear();
    for (const auto& ip : addrs->ips) w.ips.push_back(ip.ToString());
    progress_ << "lab " << o_.name << ": " << w.id << " in netns " << w.netns << ": "
              << absl::StrJoin(w.ips, ", ") << " (host veth " << w.host_interface;
    if (spec_.MultiHost()) progress_ << " on " << w.host;
    progress_ << ")\n";
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
  std::optional<CniNetwork> lo_;
  // Per host: its workload network and the executor that runs plugins in its netns.
  struct HostRuntime {
    CniNetwork net;
    std::unique_ptr<ProcessPluginExecutor> exec;
  };
  std::map<std::string, HostRuntime> runtimes_;
  std::string ip_;
  std::string join_token_;
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
  for (const auto& w : spec.workloads) out += WorkloadYaml(w, state, spec.MultiHost());
  return out;
}

std::string PeerInventoryYaml(const LabSpec& spec, const LabState& state, const std::string& host) {
  std::string out = InventoryHead(
      spec,
      "The lab's namespaces and the workloads of the other hosts (peers), for the agent "
      "of host " +
          host + " (written by `bulkhead lab up`). Its own come from bulkhead-cni.");
  std::string workloads;
  for (const auto& w : spec.workloads) {
    if (w.host == host) continue;
    workloads += WorkloadYaml(w, state, /*with_node=*/true);
  }
  if (!workloads.empty()) out += "  workloads:\n" + workloads;
  return out;
}

std::string NamespaceObjectsYaml(const LabSpec& spec) {
  std::string out = "# The lab's namespaces, for its server (written by `bulkhead lab up`).\n";
  for (const auto& ns : spec.namespaces) {
    out += "---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: " + Q(ns.name) +
           "\n  labels: " + LabelsFlow(ns.labels) + "\n";
    // The namespace's mode (or the lab's default) as the annotation the loader reads.
    if (auto m = spec.NamespaceMode(ns)) {
      out += "  annotations: {bulkhead.io/mode: " + Q(policy::ModeName(*m)) + "}\n";
    }
  }
  return out;
}

absl::StatusOr<std::string> ApplyToServer(const LabNames& names, const LabState& state,
                                          const std::string& bulkhead_binary) {
  if (state.control_plane != "server") {
    return absl::FailedPreconditionError("lab " + state.name + " has no server: its agents watch " +
                                         state.policies);
  }
  return RunInCore(
      state, bulkhead_binary,
      {"apply", "--server", state.server_url, "--ca", state.server_dir + "/ca.crt", "--token-file",
       state.server_dir + "/admin.token", "-f", state.policies, "-f",
       names.StateDir() + "/namespaces.yaml", "--prune", "-m", "bulkhead lab " + state.name});
}

UnderlayLink Underlay(size_t index, bool v4, bool v6) {
  UnderlayLink link;
  link.core_interface = "uh" + std::to_string(index);
  if (v4) {
    uint32_t base =
        common::Cidr::Parse(kUnderlayIpv4)->addr.V4HostOrder() + static_cast<uint32_t>(index) * 4;
    link.core.push_back(common::IpAddr::V4(base + 1).ToString() + "/30");
    link.host.push_back(common::IpAddr::V4(base + 2).ToString() + "/30");
  }
  if (v6) {
    common::IpAddr a = common::Cidr::Parse(kUnderlayIpv6)->addr;
    a.bytes[6] = static_cast<uint8_t>(index >> 8);
    a.bytes[7] = static_cast<uint8_t>(index & 0xff);
    a.bytes[15] = 1;
    link.core.push_back(a.ToString() + "/64");
    a.bytes[15] = 2;
    link.host.push_back(a.ToString() + "/64");
  }
  return link;
}

Json WorkloadConflist(const LabSpec& spec, const LabNames& names) {
  HostState h;
  h.ipam_dir = names.IpamDir();
  h.agent_socket = names.AgentSocket();
  h.bridge = names.Bridge();
  if (spec.ipv4_subnet) h.subnets.push_back(spec.ipv4_subnet->ToString());
  if (spec.ipv6_subnet) h.subnets.push_back(spec.ipv6_subnet->ToString());
  return HostConflist(names, h);
}

Json HostConflist(const LabNames& names, const HostState& host) {
  Json ranges = Json::array();
  Json routes = Json::array();
  for (const auto& subnet : host.subnets) {
    bool v6 = subnet.find(':') != std::string::npos;
    ranges.push_back(Json::array({Json{{"subnet", subnet}}}));
    routes.push_back(Json{{"dst", v6 ? "::/0" : "0.0.0.0/0"}});
  }
  Json bridge = {{"type", kBridgePlugin},
                 {"bridge", host.bridge},
                 {"isGateway", true},
                 {"ipMasq", false},
                 {"hairpinMode", false},
                 {"ipam",
                  {{"type", "host-local"},
                   {"dataDir", host.ipam_dir},
                   {"ranges", ranges},
                   {"routes", routes}}}};
  Json bulkhead = {{"type", kBulkheadPlugin}, {"agentSocket", host.agent_socket}};
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
  if (st) {
    // A version 1 state (one host) names no files: they are the one-host paths.
    for (auto& h : st->hosts) {
      LabNames::HostPaths p = names.ForHost(h.name, st->hosts.size() > 1, pin_root);
      if (h.netns.empty()) h.netns = p.netns;
      if (h.conflist.empty()) h.conflist = p.conflist;
    }
  }

  // 1. CNI DEL while the agents may still answer bulkhead-cni, newest workload first.
  if (st) {
    auto lo = CniNetwork::FromConflist(LoopbackConflist(names));
    std::vector<std::string> cni_path =
        st->cni_path.empty() ? DefaultCniPath(SelfExecutable()) : st->cni_path;
    for (size_t i = st->workloads.size(); i-- > 0;) {
      const WorkloadState& w = st->workloads[i];
      const HostState* h = st->FindHost(w.host);
      if (h == nullptr && st->hosts.size() == 1) h = &st->hosts.front();
      if (!w.cni_added || h == nullptr || !NetnsExists(h->netns)) continue;
      ProcessPluginExecutor exec(NetnsPath(h->netns));
      auto net = ReadConflist(h->conflist);
      if (net.ok()) {
        auto s = net->Del(WorkloadRuntime(w), w.cni_result, cni_path, exec);
        if (!s.ok()) r.warnings.push_back("CNI DEL of " + w.id + ": " + std::string(s.message()));
      } else if (!absl::IsNotFound(net.status())) {
        r.warnings.emplace_back(net.status().message());
      }
      if (lo.ok()) {
        auto s = lo->Del(LoopbackRuntime(w.container_id, w.netns), Json(), cni_path, exec);
        if (!s.ok())
          r.warnings.push_back("loopback DEL of " + w.id + ": " + std::string(s.message()));
      }
    }
  }
  // 2. Servers, then the agents (they leave their pins: removed below).
  std::vector<ProcessRecord> processes;
  if (st) {
    for (const auto& w : st->workloads) {
      processes.push_back(w.server);
      if (auto s = StopProcess(w.server, std::chrono::milliseconds(1000)); !s.ok()) {
        r.warnings.push_back("server of " + w.id + ": " + std::string(s.message()));
      }
    }
    for (const auto& h : st->hosts) processes.push_back(h.agent);
    // SIGTERM to every agent first, so that they stop together.
    for (const auto& h : st->hosts) {
      if (IsRunning(h.agent)) ::kill(h.agent.pid, SIGTERM);
    }
    for (const auto& h : st->hosts) {
      if (auto s = StopProcess(h.agent, std::chrono::milliseconds(5000)); !s.ok()) {
        r.warnings.push_back("agent of " + h.name + ": " + std::string(s.message()));
      }
    }
    processes.push_back(st->server);
    if (auto s = StopProcess(st->server, std::chrono::milliseconds(5000)); !s.ok()) {
      r.warnings.push_back("server: " + std::string(s.message()));
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
  // 4. Namespaces: workloads first, then the hosts (they hold the bridges and the host ends of
  //    the veths), the core last.
  auto rank = [&](const std::string& n) {
    if (n.rfind(names.NetnsPrefix() + "w_", 0) == 0) return 0;
    if (n == names.CoreNetns()) return 2;
    return 1;
  };
  std::stable_sort(netns.begin(), netns.end(),
                   [&](const std::string& a, const std::string& b) { return rank(a) < rank(b); });
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
