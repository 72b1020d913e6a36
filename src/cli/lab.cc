// `bulkhead lab up|down|status|probe` (and the hidden `lab serve` that runs in each workload):
// a local lab of workloads in network namespaces, built through the real CNI chain and
// enforced by the real agent, and probes whose matrix has the shape of `simulate --matrix`.
#include "lab/lab.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <optional>
#include <ostream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "agent/client.h"
#include "cli/command.h"
#include "cli/simulate_report.h"
#include "cli/text.h"
#include "lab/netns.h"
#include "lab/probe.h"
#include "lab/serve.h"

namespace bulkhead::cli {
namespace {

namespace fs = std::filesystem;

// Probe exit codes (documented in docs/cli.md): connected, blocked, usage or lab error.
constexpr int kProbeConnected = 0;
constexpr int kProbeBlocked = 1;
constexpr int kProbeError = 2;

std::string Quote(const std::string& s) { return "\"" + s + "\""; }

// "x/a" stays, a bare name is in namespace default (as simulate reads it).
std::string WorkloadId(const std::string& text) {
  return text.find('/') == std::string::npos ? "default/" + text : text;
}

std::string PortsText(const std::vector<lab::LabPort>& ports) {
  std::vector<std::string> parts;
  parts.reserve(ports.size());
  for (const auto& p : ports) {
    parts.push_back(absl::StrCat(p.port, "/", policy::ProtocolName(p.protocol),
                                 p.name.empty() ? "" : absl::StrCat(" (", p.name, ")")));
  }
  return parts.empty() ? "-" : absl::StrJoin(parts, " ");
}

std::optional<common::IpAddr> AddressOf(const lab::WorkloadState& w, int family) {
  for (const auto& text : w.ips) {
    auto ip = common::IpAddr::Parse(text);
    if (ip && ip->v6 == (family == 6)) return ip;
  }
  return std::nullopt;
}

absl::StatusOr<nlohmann::json> AgentStatus(const std::string& socket) {
  return agent::CallAgent(socket, {{"method", "status"}});
}

class LabCommand : public Subcommand {
 public:
  explicit LabCommand(CLI::App& root) {
    app_ = root.add_subcommand("lab",
                               "A local lab: workloads in network namespaces, attached through "
                               "the CNI chain and enforced by the agent (needs root)");
    app_->require_subcommand(1);
    app_->footer("Labs keep their state in /run/bulkhead/lab/NAME. See docs/lab.md.");

    up_ =
        app_->add_subcommand("up", "Build a lab from a Lab file and start its agents (and server)");
    up_->add_option("-f,--file", lab_file_, "Lab file (kind: Lab)")->required()->type_name("FILE");
    up_->add_option("--policies", policies_, "Policy directory the lab's agent enforces (watched)")
        ->required()
        ->type_name("DIR");
    up_->add_option("--name", name_, "Lab name (default: the file's metadata.name)")
        ->type_name("NAME");
    up_->add_option("--pin-root", pin_root_,
                    "bpffs directory for the agent's pins (default /sys/fs/bpf/bulkhead/lab-NAME)")
        ->type_name("DIR");
    up_->add_option("--cni-path", cni_path_,
                    "Directories searched for CNI plugins, in order (default: the bulkhead "
                    "binary's directory, /usr/lib/cni, /opt/cni/bin)")
        ->delimiter(':')
        ->type_name("DIR[:DIR...]");
    up_->add_option("--control-plane", control_plane_,
                    "server: one `bulkhead server` in the lab, agents joined to it, the "
                    "policies applied over REST (default with several hosts); standalone: "
                    "agents on the policy dir (default, and the only choice, with one host)")
        ->check(CLI::IsMember({"server", "standalone"}));
    up_->add_flag("--keep-on-failure", keep_on_failure_,
                  "Leave a lab that failed to come up for inspection (remove it with down)");
    up_->add_option("-o,--output", output_, "text (default) or json")
        ->check(CLI::IsMember({"text", "json"}));

    down_ = app_->add_subcommand("down", "Remove everything a lab made (also after a crash)");
    down_->add_option("--name", name_, "Lab name (default: the only lab)")->type_name("NAME");

    apply_ = app_->add_subcommand(
        "apply", "Apply the lab's policy dir to its server again (server mode; --prune)");
    apply_->add_option("--name", name_, "Lab name (default: the only lab)")->type_name("NAME");

    status_ = app_->add_subcommand("status", "Show a lab's workloads, addresses and agent");
    status_->add_option("--name", name_, "Lab name (default: the only lab)")->type_name("NAME");
    status_->add_option("-o,--output", output_, "text (default) or json")
        ->check(CLI::IsMember({"text", "json"}));

    probe_ = app_->add_subcommand("probe",
                                  "Connect from one workload to another (or every pair: --matrix)");
    probe_->footer(
        "One flow:  --from NS/NAME --to NS/NAME --port PORT (no --port for icmp)\n"
        "           exit 0 connected (the right workload answered), 1 blocked (timeout,\n"
        "           refused, reset), 2 usage or lab error\n"
        "Matrix:    --matrix --port PORT[,PORT...] [--protocol tcp,udp] [--family 4,6]\n"
        "           every ordered pair, concurrently; one combination prints exactly what\n"
        "           `bulkhead simulate --matrix` prints; exit 0, or 2 on a lab error");
    probe_->add_option("--name", name_, "Lab name (default: the only lab)")->type_name("NAME");
    from_opt_ = probe_->add_option("--from", from_, "Source workload")->type_name("NS/NAME");
    to_opt_ = probe_->add_option("--to", to_, "Destination workload")->type_name("NS/NAME");
    probe_->add_flag("--matrix", matrix_, "Probe every ordered pair of workloads");
    probe_->add_option("--port", ports_, "Destination port(s); not for icmp")
        ->delimiter(',')
        ->check(CLI::Range(1, 65535))
        ->type_name("PORT");
    probe_
        ->add_option("--protocol", protocols_,
                     "tcp (default), udp, sctp or icmp (echo; ICMPv6 over IPv6); a list with "
                     "--matrix")
        ->delimiter(',')
        ->transform(CLI::IsMember({"tcp", "udp", "sctp", "icmp"}, CLI::ignore_case))
        ->type_name("PROTO");
    probe_
        ->add_option("--family", families_,
                     "4 or 6 (default: 4, or 6 in an IPv6-only lab); a list with --matrix")
        ->delimiter(',')
        ->check(CLI::IsMember({4, 6}))
        ->type_name("4|6");
    probe_->add_option("--timeout", timeout_ms_, "Milliseconds before a probe counts as blocked")
        ->check(CLI::Range(1, 600000))
        ->type_name("MS");
    probe_->add_option("-o,--output", output_, "text (default) or json")
        ->check(CLI::IsMember({"text", "json"}));

    serve_ = app_->add_subcommand("serve", "Run a lab workload's server (started by lab up)");
    serve_->group("");  // hidden: an implementation detail of `lab up`
    serve_->add_option("--workload", serve_workload_)->required();
    serve_->add_option("--address", serve_addresses_)->required();
    serve_->add_option("--port", serve_ports_)->required();
    serve_->add_option("--ready-fd", serve_ready_fd_);
  }

  const CLI::App* app() const override { return app_; }

  int Run(const GlobalOptions& global, Terminal& term) override {
    (void)global;
    if (up_->parsed()) return Up(term);
    if (down_->parsed()) return Down(term);
    if (status_->parsed()) return Status(term);
    if (apply_->parsed()) return Apply(term);
    if (probe_->parsed()) return Probe(term);
    if (serve_->parsed()) return Serve(term);
    return kExitInvalidInput;
  }

 private:
  // ---- up ----
  int Up(Terminal& term) {
    const char* me = "bulkhead lab up";
    lab::LabParseResult parsed = lab::ParseLabFile(lab_file_);
    for (const auto& d : parsed.diagnostics) term.err << d.ToString() << "\n";
    if (!parsed.ok()) {
      term.err << me << ": the lab file is invalid; nothing was made\n";
      return kExitInvalidInput;
    }
    lab::UpOptions o;
    o.name = name_.empty() ? parsed.spec.name : name_;
    if (std::string problem = lab::CheckLabName(o.name); !problem.empty()) {
      term.err << me << ": error: --name: invalid lab name " << Quote(o.name) << ": " << problem
               << "\n";
      return kExitInvalidInput;
    }
    std::error_code ec;
    o.policies = fs::absolute(policies_, ec).lexically_normal().string();
    o.lab_file = fs::absolute(lab_file_, ec).lexically_normal().string();
    {
      std::ifstream in(lab_file_, std::ios::binary);
      std::stringstream buf;
      buf << in.rdbuf();
      o.lab_file_content = buf.str();
    }
    o.pin_root = pin_root_;
    o.bulkhead_binary = lab::SelfExecutable();
    o.cni_path = cni_path_.empty() ? lab::DefaultCniPath(o.bulkhead_binary) : cni_path_;
    o.keep_on_failure = keep_on_failure_;
    o.server = control_plane_.empty() ? parsed.spec.MultiHost() : control_plane_ == "server";
    auto state = lab::Up(parsed.spec, o, AgentStatus, term.err);
    if (!state.ok()) {
      term.err << me << ": error: " << state.status().message() << "\n";
      return absl::IsInvalidArgument(state.status()) || absl::IsAlreadyExists(state.status())
                 ? kExitInvalidInput
                 : kExitError;
    }
    lab::LabNames names{o.name, lab::kDefaultRunDir};
    if (output_ == "json") {
      term.out << StatusJson(names, *state).dump(2) << "\n";
    } else {
      PrintWorkloads(term, *state);
      term.out << "\nLab " << o.name << " is up. Probe it with `bulkhead lab probe --name "
               << o.name
               << " --from NS/NAME --to NS/NAME --port PORT`;\ncompare with `bulkhead simulate -f "
               << o.policies << " -f " << names.ClusterPath() << " --matrix --port PORT`.\n";
    }
    return kExitOk;
  }

  // ---- apply ----
  int Apply(Terminal& term) {
    const char* me = "bulkhead lab apply";
    auto name = lab::ResolveLabName(name_, lab::kDefaultRunDir);
    if (!name.ok()) {
      term.err << me << ": error: " << name.status().message() << "\n";
      return kExitInvalidInput;
    }
    lab::LabNames names{*name, lab::kDefaultRunDir};
    auto st = lab::LoadState(names);
    if (!st.ok()) {
      term.err << me << ": error: lab " << *name << ": " << st.status().message() << "\n";
      return kExitInvalidInput;
    }
    auto out = lab::ApplyToServer(names, *st, lab::SelfExecutable());
    if (!out.ok()) {
      term.err << me << ": error: " << out.status().message() << "\n";
      return absl::IsFailedPrecondition(out.status()) || absl::IsInvalidArgument(out.status())
                 ? kExitInvalidInput
                 : kExitError;
    }
    term.out << *out;
    return kExitOk;
  }

  // ---- down ----
  int Down(Terminal& term) {
    const char* me = "bulkhead lab down";
    std::vector<std::string> names;
    if (!name_.empty()) {
      auto n = lab::ResolveLabName(name_, lab::kDefaultRunDir);
      if (!n.ok()) {
        term.err << me << ": error: " << n.status().message() << "\n";
        return kExitInvalidInput;
      }
      names.push_back(*n);
    } else {
      names = lab::ListLabs(lab::kDefaultRunDir);
      if (names.size() > 1) {
        term.err << me << ": error: several labs are up (" << absl::StrJoin(names, ", ")
                 << "): choose one with --name\n";
        return kExitInvalidInput;
      }
      if (names.empty()) {
        term.out << "No lab is up.\n";
        return kExitOk;
      }
    }
    if (::geteuid() != 0) {
      term.err << me << ": error: needs root (network namespaces, bpffs)\n";
      return kExitError;
    }
    lab::DownReport r = lab::Down(lab::LabNames{names.front(), lab::kDefaultRunDir}, term.err);
    for (const auto& w : r.warnings) term.err << me << ": warning: " << w << "\n";
    if (!r.left.empty()) {
      for (const auto& l : r.left) term.err << me << ": still there: " << l << "\n";
      return kExitError;
    }
    term.out << (r.found ? "Lab " + names.front() + " is down.\n"
                         : "No lab " + names.front() + ": nothing to remove.\n");
    return kExitOk;
  }

  // ---- status ----
  // One host's agent as its status API reports it.
  static nlohmann::ordered_json AgentJson(const lab::HostState& h) {
    nlohmann::ordered_json agent;
    agent["pid"] = h.agent.pid;
    agent["running"] = lab::IsRunning(h.agent);
    auto status = AgentStatus(h.agent_socket);
    agent["ready"] = status.ok() && status->value("ready", false);
    agent["revision"] = status.ok() ? status->value("revision", std::string()) : std::string();
    agent["endpoints"] = status.ok() ? status->value("endpoints", 0) : 0;
    agent["error"] = status.ok() ? status->value("last_error", std::string())
                                 : std::string(status.status().message());
    return agent;
  }

  nlohmann::ordered_json StatusJson(const lab::LabNames& names, const lab::LabState& st) {
    nlohmann::ordered_json j;
    j["name"] = st.name;
    j["phase"] = st.phase;
    j["lab_file"] = st.lab_file;
    j["policies"] = st.policies;
    j["cluster_inventory"] = names.ClusterPath();
    j["pin_root"] = st.pin_root;
    // The first host's netns, bridge and agent at the top (the only host of a one-host lab).
    const lab::HostState* first = st.hosts.empty() ? nullptr : &st.hosts.front();
    j["host_netns"] = first ? first->netns : "";
    j["bridge"] = first ? first->bridge : "";
    j["agent_socket"] = first ? first->agent_socket : "";
    j["agent_log"] = first ? first->agent_log : "";
    nlohmann::ordered_json hosts = nlohmann::ordered_json::array();
    for (const auto& h : st.hosts) {
      nlohmann::ordered_json o;
      o["name"] = h.name;
      o["netns"] = h.netns;
      o["bridge"] = h.bridge;
      o["subnets"] = h.subnets;
      o["underlay"] = h.underlay;
      o["pin_root"] = h.pin_root;
      o["agent_socket"] = h.agent_socket;
      o["agent_log"] = h.agent_log;
      o["agent"] = AgentJson(h);
      hosts.push_back(std::move(o));
    }
    j["agent"] = hosts.empty() ? nlohmann::ordered_json::object() : hosts[0]["agent"];
    j["core_netns"] = st.core_netns;
    j["control_plane"] = st.control_plane;
    if (st.control_plane == "server") {
      j["server"] = {{"pid", st.server.pid},
                     {"running", lab::IsRunning(st.server)},
                     {"url", st.server_url},
                     {"agents_address", st.server_agents_address},
                     {"data_dir", st.server_dir}};
    }
    j["hosts"] = hosts;
    nlohmann::ordered_json ws = nlohmann::ordered_json::array();
    for (const auto& w : st.workloads) {
      nlohmann::ordered_json o;
      o["workload"] = w.id;
      o["host"] = w.host;
      o["netns"] = w.netns;
      o["ips"] = w.ips;
      o["host_interface"] = w.host_interface;
      nlohmann::ordered_json ports = nlohmann::ordered_json::array();
      for (const auto& p : w.ports) {
        nlohmann::ordered_json pj = {{"port", p.port},
                                     {"protocol", policy::ProtocolName(p.protocol)}};
        if (!p.name.empty()) pj["name"] = p.name;
        ports.push_back(std::move(pj));
      }
      o["ports"] = ports;
      o["server_pid"] = w.server.pid;
      o["server_running"] = lab::IsRunning(w.server);
      ws.push_back(o);
    }
    j["workloads"] = ws;
    return j;
  }

  void PrintWorkloads(Terminal& term, const lab::LabState& st) {
    Style style(term.color);
    const bool multi = st.hosts.size() > 1;  // a HOST column only when there is a choice
    std::vector<Cell> head = {{"WORKLOAD", Color::kBold}};
    if (multi) head.push_back({"HOST", Color::kBold});
    for (const char* h : {"NETNS", "ADDRESSES", "HOST VETH", "PORTS"}) {
      head.push_back({h, Color::kBold});
    }
    std::vector<std::vector<Cell>> rows = {head};
    for (const auto& w : st.workloads) {
      std::vector<Cell> row = {{w.id}};
      if (multi) row.push_back({w.host});
      row.push_back({w.netns});
      row.push_back({w.ips.empty() ? "-" : absl::StrJoin(w.ips, " ")});
      row.push_back({w.host_interface.empty() ? "-" : w.host_interface});
      row.push_back({PortsText(w.ports)});
      rows.push_back(std::move(row));
    }
    for (const auto& line : AlignColumns(rows, "  ", style)) term.out << line << "\n";
  }

  int Status(Terminal& term) {
    const char* me = "bulkhead lab status";
    auto name = lab::ResolveLabName(name_, lab::kDefaultRunDir);
    if (!name.ok()) {
      term.err << me << ": error: " << name.status().message() << "\n";
      return kExitInvalidInput;
    }
    lab::LabNames names{*name, lab::kDefaultRunDir};
    auto st = lab::LoadState(names);
    if (!st.ok()) {
      term.err << me << ": error: lab " << *name << ": " << st.status().message() << "\n";
      return absl::IsNotFound(st.status()) ? kExitInvalidInput : kExitError;
    }
    auto j = StatusJson(names, *st);
    bool healthy = st->phase == "up" && !j["hosts"].empty();
    for (const auto& h : j["hosts"]) {
      if (!h["agent"]["ready"].get<bool>()) healthy = false;
    }
    for (const auto& w : st->workloads) {
      if (!w.ports.empty() && !lab::IsRunning(w.server)) healthy = false;
    }
    if (st->control_plane == "server" && !lab::IsRunning(st->server)) healthy = false;
    if (output_ == "json") {
      term.out << j.dump(2) << "\n";
      return healthy ? kExitOk : kExitError;
    }
    term.out << "Lab " << st->name << " (" << st->phase << "), from " << st->lab_file << "\n"
             << "  policies:  " << st->policies << "\n";
    if (!st->core_netns.empty()) term.out << "  core:      netns " << st->core_netns << "\n";
    if (st->control_plane == "server") {
      term.out << "  server:    pid " << st->server.pid << ", "
               << (lab::IsRunning(st->server) ? "running" : "not running") << ", " << st->server_url
               << " in the core netns, agents join " << st->server_agents_address << "\n";
    }
    for (const auto& h : j["hosts"]) {
      const auto& a = h["agent"];
      term.out << "  host " << h["name"].get<std::string>() << ": netns "
               << h["netns"].get<std::string>() << ", bridge " << h["bridge"].get<std::string>()
               << ", pods " << absl::StrJoin(h["subnets"].get<std::vector<std::string>>(), " ");
      if (!h["underlay"].empty()) {
        term.out << ", underlay "
                 << absl::StrJoin(h["underlay"].get<std::vector<std::string>>(), " ");
      }
      term.out << "\n    agent: pid " << a["pid"].get<int>() << ", "
               << (a["running"].get<bool>() ? "running" : "not running") << ", "
               << (a["ready"].get<bool>() ? "ready, revision " + a["revision"].get<std::string>()
                                          : "not ready")
               << ", " << a["endpoints"].get<int>() << " endpoints\n";
      if (!a["error"].get<std::string>().empty()) {
        term.out << "    agent error: " << a["error"].get<std::string>() << "\n";
      }
    }
    term.out << "  pins:      " << st->pin_root << "\n"
             << "  simulate:  bulkhead simulate -f " << st->policies << " -f "
             << names.ClusterPath() << " --matrix --port PORT\n\n";
    PrintWorkloads(term, *st);
    for (const auto& w : st->workloads) {
      if (!w.ports.empty() && !lab::IsRunning(w.server)) {
        term.out << "  server of " << w.id << " is not running (log: " << names.ServerLog(w.id)
                 << ")\n";
      }
    }
    return healthy ? kExitOk : kExitError;
  }

  // ---- probe ----
  int Probe(Terminal& term) {
    const char* me = "bulkhead lab probe";
    auto usage = [&](const std::string& msg) {
      term.err << me << ": error: " << msg << "\n";
      return kProbeError;
    };
    bool single = from_opt_->count() > 0 || to_opt_->count() > 0;
    if (single == matrix_) {
      return usage(single ? "--matrix cannot be used with --from/--to: choose one"
                          : "choose --from and --to (one flow) or --matrix (every pair)");
    }
    if (single && (from_opt_->count() == 0 || to_opt_->count() == 0)) {
      return usage("--from and --to go together");
    }
    const bool only_icmp =
        !protocols_.empty() && std::all_of(protocols_.begin(), protocols_.end(),
                                           [](const std::string& p) { return p == "icmp"; });
    if (ports_.empty() && !only_icmp) return usage("--port is required (except for icmp)");
    if (!ports_.empty() && only_icmp) return usage("--port: icmp has no ports");
    if (single &&
        ((ports_.size() != 1 && !only_icmp) || protocols_.size() > 1 || families_.size() > 1)) {
      return usage("one flow takes one --port, --protocol and --family (lists are for --matrix)");
    }
    auto name = lab::ResolveLabName(name_, lab::kDefaultRunDir);
    if (!name.ok()) return usage(std::string(name.status().message()));
    lab::LabNames names{*name, lab::kDefaultRunDir};
    auto st = lab::LoadState(names);
    if (!st.ok()) return usage("lab " + *name + ": " + std::string(st.status().message()));
    if (st->phase != "up") return usage("lab " + *name + " is not up (phase " + st->phase + ")");
    std::vector<std::string> protocols =
        protocols_.empty() ? std::vector<std::string>{"tcp"} : protocols_;
    std::vector<int> families = families_;
    if (families.empty()) {
      bool v4 = !st->workloads.empty() && AddressOf(st->workloads.front(), 4).has_value();
      families = {v4 ? 4 : 6};
    }
    for (int f : families) {
      for (const auto& w : st->workloads) {
        if (!AddressOf(w, f)) {
          return usage(absl::StrCat("--family ", f, ": lab ", *name, " has no IPv", f,
                                    " address for ", w.id));
        }
      }
    }
    auto timeout = std::chrono::milliseconds(timeout_ms_);
    return single ? ProbeOne(term, *st, protocols[0], families[0], timeout)
                  : ProbeMatrix(term, *st, protocols, families, timeout);
  }

  // ICMP over IPv6 is ICMPv6.
  static policy::Protocol ToProtocol(const std::string& p, int family) {
    if (p == "udp") return policy::Protocol::kUDP;
    if (p == "sctp") return policy::Protocol::kSCTP;
    if (p == "icmp") return family == 6 ? policy::Protocol::kICMPv6 : policy::Protocol::kICMP;
    return policy::Protocol::kTCP;
  }

  static bool IsIcmp(policy::Protocol p) {
    return p == policy::Protocol::kICMP || p == policy::Protocol::kICMPv6;
  }

  // Every workload's kernel answers echo requests; ports are served by `lab serve`.
  static bool Serves(const lab::WorkloadState& w, uint16_t port, policy::Protocol proto) {
    if (IsIcmp(proto)) return true;
    lab::LabPort want{port, proto, ""};
    return std::any_of(w.ports.begin(), w.ports.end(),
                       [&](const lab::LabPort& p) { return p.SameSocket(want); });
  }

  // "TCP/80", or "ICMP" (no port).
  static std::string FlowText(policy::Protocol proto, uint16_t port) {
    if (IsIcmp(proto)) return policy::ProtocolName(proto);
    return absl::StrCat(policy::ProtocolName(proto), "/", port);
  }

  int ProbeOne(Terminal& term, const lab::LabState& st, const std::string& protocol, int family,
               std::chrono::milliseconds timeout) {
    const char* me = "bulkhead lab probe";
    std::string from = WorkloadId(from_), to = WorkloadId(to_);
    const auto* src = st.FindWorkload(from);
    const auto* dst = st.FindWorkload(to);
    for (const auto& [flag, id, w] :
         {std::tuple{"--from", from, src}, std::tuple{"--to", to, dst}}) {
      if (w == nullptr) {
        std::vector<std::string> ids;
        for (const auto& x : st.workloads) ids.push_back(x.id);
        term.err << me << ": error: " << flag << ": no workload " << Quote(id) << " in lab "
                 << st.name << " (it has: " << absl::StrJoin(ids, ", ") << ")\n";
        return kProbeError;
      }
    }
    policy::Protocol proto = ToProtocol(protocol, family);
    auto port = static_cast<uint16_t>(ports_.empty() ? 0 : ports_[0]);
    if (!Serves(*dst, port, proto)) {
      term.err << me << ": error: " << to << " serves no " << FlowText(proto, port)
               << " (its ports: " << PortsText(dst->ports) << ")\n";
      return kProbeError;
    }
    lab::ProbeSpec spec{lab::NetnsPath(src->netns), *AddressOf(*dst, family), port, proto, to};
    auto results = lab::RunProbes({spec}, timeout);
    if (!results.ok()) {
      term.err << me << ": error: " << results.status().message() << "\n";
      return kProbeError;
    }
    const lab::ProbeResult& r = results->front();
    bool connected = r.outcome == lab::ProbeOutcome::kConnected;
    bool blocked = lab::IsBlocked(r.outcome);
    std::string result = connected ? "connected" : blocked ? "blocked" : "error";
    if (output_ == "json") {
      nlohmann::ordered_json j;
      j["from"] = from;
      j["to"] = to;
      j["address"] = spec.dst.ToString();
      j["port"] = port;
      j["protocol"] = policy::ProtocolName(proto);
      j["family"] = family;
      j["result"] = result;
      j["outcome"] = lab::ProbeOutcomeName(r.outcome);
      j["detail"] = r.detail;
      j["millis"] = r.millis;
      term.out << j.dump(2) << "\n";
    } else {
      Style style(term.color);
      term.out << from << " -> " << to << " " << FlowText(proto, port) << " over IPv" << family
               << " (" << spec.dst.ToString()
               << "): " << style.Paint(result, connected ? Color::kGreen : Color::kRed);
      if (connected) {
        char ms[32];
        std::snprintf(ms, sizeof ms, "%.1f", r.millis);
        // An echo reply says only that it came from the destination's address.
        term.out << " (answered by " << (IsIcmp(proto) ? spec.dst.ToString() : to) << ", " << ms
                 << " ms)";
      } else {
        term.out << " (" << lab::ProbeOutcomeName(r.outcome)
                 << (r.detail.empty() ? "" : ": " + r.detail) << ")";
      }
      term.out << "\n";
    }
    if (!connected && !blocked) {
      term.err << me << ": error: the lab misbehaves: " << lab::ProbeOutcomeName(r.outcome) << " "
               << r.detail << "\n";
    }
    return connected ? kProbeConnected : blocked ? kProbeBlocked : kProbeError;
  }

  int ProbeMatrix(Terminal& term, const lab::LabState& st, const std::vector<std::string>& protos,
                  const std::vector<int>& families, std::chrono::milliseconds timeout) {
    const char* me = "bulkhead lab probe";
    // Workloads in simulate's order (sorted ids).
    std::vector<const lab::WorkloadState*> ws;
    for (const auto& w : st.workloads) ws.push_back(&w);
    std::sort(ws.begin(), ws.end(), [](auto* a, auto* b) { return a->id < b->id; });
    struct Combo {
      int family;
      policy::Protocol protocol;
      uint16_t port;
    };
    std::vector<Combo> combos;
    for (int f : families) {
      for (const auto& p : protos) {
        if (p == "icmp") {
          combos.push_back({f, ToProtocol(p, f), 0});
          continue;
        }
        for (int port : ports_) {
          combos.push_back({f, ToProtocol(p, f), static_cast<uint16_t>(port)});
        }
      }
    }
    std::vector<lab::ProbeSpec> specs;
    for (const auto& c : combos) {
      for (const auto* from : ws) {
        for (const auto* to : ws) {
          specs.push_back(
              {lab::NetnsPath(from->netns), *AddressOf(*to, c.family), c.port, c.protocol, to->id});
        }
      }
    }
    auto results = lab::RunProbes(specs, timeout);
    if (!results.ok()) {
      term.err << me << ": error: " << results.status().message() << "\n";
      return kProbeError;
    }
    int errors = 0;
    std::vector<ReachabilityMatrix> matrices;
    size_t k = 0;
    for (const auto& c : combos) {
      ReachabilityMatrix m;
      m.protocol = c.protocol;
      m.port = c.port;
      for (const auto* w : ws) m.workloads.push_back(w->id);
      m.cells.assign(ws.size(), std::vector<MatrixCell>(ws.size()));
      for (size_t i = 0; i < ws.size(); ++i) {
        for (size_t j = 0; j < ws.size(); ++j, ++k) {
          const lab::ProbeResult& r = (*results)[k];
          m.cells[i][j].allowed = r.outcome == lab::ProbeOutcome::kConnected;
          if (r.outcome != lab::ProbeOutcome::kConnected && !lab::IsBlocked(r.outcome)) {
            ++errors;
            term.err << me << ": error: " << ws[i]->id << " -> " << ws[j]->id << " "
                     << FlowText(c.protocol, c.port) << " IPv" << c.family << ": "
                     << lab::ProbeOutcomeName(r.outcome) << " " << r.detail << "\n";
          }
        }
      }
      for (const auto* w : ws) {
        if (!Serves(*w, c.port, c.protocol)) {
          term.err << me << ": note: " << w->id << " serves no " << FlowText(c.protocol, c.port)
                   << ": its column shows refused connections, not policy\n";
        }
      }
      matrices.push_back(std::move(m));
    }
    Style style(term.color);
    if (output_ == "json") {
      if (matrices.size() == 1) {
        term.out << MatrixJson(matrices[0]).dump(2) << "\n";
      } else {
        Json all = Json::array();
        for (size_t i = 0; i < matrices.size(); ++i) {
          Json doc = MatrixJson(matrices[i]);
          Json j;
          j["family"] = combos[i].family;
          for (auto it = doc.begin(); it != doc.end(); ++it) j[it.key()] = it.value();
          all.push_back(std::move(j));
        }
        term.out << all.dump(2) << "\n";
      }
    } else {
      for (size_t i = 0; i < matrices.size(); ++i) {
        // One combination prints exactly simulate's text; several name their family.
        if (i > 0) term.out << "\n";
        if (matrices.size() > 1) {
          term.out << style.Paint("IPv" + std::to_string(combos[i].family), Color::kBold) << "  ";
        }
        term.out << MatrixText(matrices[i], style);
      }
    }
    return errors == 0 ? kExitOk : kProbeError;
  }

  // ---- serve (hidden) ----
  int Serve(Terminal& term) {
    lab::ServeOptions o;
    o.answer = serve_workload_;
    o.ready_fd = serve_ready_fd_;
    for (const auto& a : serve_addresses_) {
      auto ip = common::IpAddr::Parse(a);
      if (!ip) {
        term.err << "bulkhead lab serve: error: --address " << Quote(a) << " is not an address\n";
        return kExitInvalidInput;
      }
      o.addresses.push_back(*ip);
    }
    for (const auto& p : serve_ports_) {
      std::vector<std::string> parts = absl::StrSplit(p, '/');
      unsigned port = 0;
      auto proto = parts.size() == 2 ? policy::ParseProtocol(parts[1]) : std::nullopt;
      if (parts.size() != 2 || !absl::SimpleAtoi(parts[0], &port) || port < 1 || port > 65535 ||
          !proto ||
          (*proto != policy::Protocol::kTCP && *proto != policy::Protocol::kUDP &&
           *proto != policy::Protocol::kSCTP)) {
        term.err << "bulkhead lab serve: error: --port " << Quote(p)
                 << " is not PORT/TCP|UDP|SCTP\n";
        return kExitInvalidInput;
      }
      o.ports.push_back({static_cast<uint16_t>(port), *proto, ""});
    }
    auto s = lab::Serve(o);
    term.err << "bulkhead lab serve: error: " << s.message() << "\n";
    return kExitError;
  }

  CLI::App* app_ = nullptr;
  CLI::App* up_ = nullptr;
  CLI::App* down_ = nullptr;
  CLI::App* status_ = nullptr;
  CLI::App* apply_ = nullptr;
  std::string control_plane_;
  CLI::App* probe_ = nullptr;
  CLI::App* serve_ = nullptr;
  std::string lab_file_, policies_, name_, pin_root_;
  std::vector<std::string> cni_path_;
  bool keep_on_failure_ = false;
  std::string output_ = "text";
  CLI::Option* from_opt_ = nullptr;
  CLI::Option* to_opt_ = nullptr;
  std::string from_, to_;
  bool matrix_ = false;
  std::vector<int> ports_;
  std::vector<std::string> protocols_;
  std::vector<int> families_;
  int timeout_ms_ = 1000;
  std::string serve_workload_;
  std::vector<std::string> serve_addresses_;
  std::vector<std::string> serve_ports_;
  int serve_ready_fd_ = -1;
};

}  // namespace

std::unique_ptr<Subcommand> RegisterLab(CLI::App& root) {
  return std::make_unique<LabCommand>(root);
}

}  // namespace bulkhead::cli
