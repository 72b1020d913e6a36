// `bulkhead agent`: runs the node agent (standalone mode: policy files; server mode: the
// control plane's policy) and `bulkhead agent status` asks a running one how it is.
#include "agent/agent.h"

#include <fcntl.h>
#include <net/if.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <ostream>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "absl/strings/str_split.h"
#include "agent/api.h"
#include "agent/client.h"
#include "agent/map_sizing.h"
#include "agent/server_link.h"
#include "agentlink/agentlink.h"
#include "cli/command.h"
#include "datapath/bpf_datapath.h"
#include "spdlog/spdlog.h"

namespace bulkhead::cli {
namespace {

class AgentCommand : public Subcommand {
 public:
  explicit AgentCommand(CLI::App& root) {
    app_ = root.add_subcommand("agent",
                               "Run the node agent: enforce the policy directory on "
                               "the inventory's workloads in the kernel");
    app_->add_option("--policies", policies_, "Directory of policy manifests (watched)")
        ->type_name("DIR");
    app_->add_option("--inventory", inventory_, "Inventory file of workloads (watched)")
        ->type_name("FILE");
    app_->add_option("--state-dir", state_dir_,
                     "Agent state, lock and (server mode) credentials and the last policy "
                     "received (default /var/lib/bulkhead)")
        ->type_name("DIR");
    app_->add_option("--server", server_,
                     "Server mode: take the policy from this control plane (its agents' "
                     "address HOST:PORT) instead of --policies")
        ->type_name("ADDR");
    app_->add_option("--token", token_,
                     "Join token (bulkhead token create), used when the state dir holds no "
                     "credentials yet")
        ->type_name("TOKEN");
    node_name_opt_ = app_->add_option("--node-name", node_name_,
                                      "Server mode: the node name to join as (default: the "
                                      "hostname; once joined, the certificate's)")
                         ->type_name("NAME");
    app_->add_option("--ca-file", ca_file_,
                     "Server mode: trust this CA (PEM) instead of discovering it with the token")
        ->type_name("FILE");
    app_->add_option("--tls-server-name", tls_server_name_,
                     "Server mode: the name the server certificate must carry (default: the "
                     "address's host)")
        ->type_name("NAME");
    app_->add_option(
            "--pin-root", pin_root_,
            "bpffs directory of the pinned datapath (default /sys/fs/bpf/bulkhead/default)")
        ->type_name("DIR");
    app_->add_option("--socket", socket_, "Local API socket (default /run/bulkhead/agent.sock)")
        ->type_name("PATH");
    app_->add_option("--metrics", metrics_, "Serve Prometheus metrics on a loopback HOST:PORT")
        ->type_name("ADDR");
    node_opt_ =
        app_->add_option("--node", node_,
                         "This node's name (default: the hostname): CNI endpoints and inventory "
                         "workloads without a node are local; \"\" makes every workload local")
            ->type_name("NAME");
    app_->add_option("--map-size", map_sizes_,
                     "Size of a datapath map, NAME=ENTRIES (repeatable; NAME: ipcache, "
                     "policy_peers, policy_ports, endpoints, endpoint_addresses, conntrack, "
                     "fragments, events_bytes). Default: big enough for the policy at start "
                     "(twice its entries), at least the built-in sizes. Maps already pinned keep "
                     "their size")
        ->type_name("NAME=N");
    app_->add_option("--events-off", events_off_,
                     "Flow event classes the datapath does not emit: new-flows, denies, audits "
                     "(comma-separated), or all")
        ->type_name("CLASSES");
    app_->add_option("--events-batch-ms", events_batch_ms_,
                     "After reading flow events, leave the ring this long so that the next ones "
                     "are read in one batch (fewer wake-ups under load; an event reaches "
                     "observers at most this late). 0: read every event as soon as it comes")
        ->type_name("MS")
        ->check(CLI::Range(0, 1000))
        ->default_val(10);
    app_->require_subcommand(0, 1);

    status_ = app_->add_subcommand("status", "Ask the running agent whether it is ready");
    status_->add_option("--socket", status_socket_, "Local API socket")->type_name("PATH");
    status_->add_option("-o,--output", output_, "text (default) or json")
        ->check(CLI::IsMember({"text", "json"}));
  }

  const CLI::App* app() const override { return app_; }

  int Run(const GlobalOptions& global, Terminal& term) override {
    if (status_->parsed()) return Status(term);
    if (!server_.empty()) return RunServerMode(global, term);
    return RunAgent(global, term);
  }

 private:
  int Status(Terminal& term) {
    std::string sock = !status_socket_.empty() ? status_socket_ : socket_;
    auto r = agent::CallAgent(sock, {{"method", "status"}});
    if (!r.ok()) {
      term.err << "bulkhead agent status: error: " << r.status().message() << "\n";
      return kExitError;
    }
    const bool ready = r->value("ready", false);
    if (output_ == "json") {
      term.out << r->dump(2) << "\n";
    } else {
      term.out << "ready:       " << (ready ? "yes" : "no") << "\n"
               << "revision:    " << r->value("revision", "") << "\n"
               << "generation:  " << r->value("generation", 0) << "\n"
               << "endpoints:   " << r->value("endpoints", 0) << " ("
               << r->value("endpoints_pending", 0) << " pending)\n"
               << "last error:  " << r->value("last_error", "") << "\n";
      if (r->contains("server") && (*r)["server"].is_object()) {
        const nlohmann::json& s = (*r)["server"];
        std::string held;
        for (const auto& ns : s.value("held_namespaces", nlohmann::json::array())) {
          held += (held.empty() ? "" : ",") + ns.get<std::string>();
        }
        term.out << "server:      " << s.value("address", "") << "\n"
                 << "connected:   " << (s.value("connected", false) ? "yes" : "no") << "\n"
                 << "server rev:  " << s.value("received_revision", int64_t{0}) << " received, "
                 << s.value("enforced_revision", int64_t{0}) << " enforced\n"
                 << "held ns:     " << held << "\n"
                 << "server err:  " << s.value("last_error", "") << "\n";
      }
    }
    return ready ? kExitOk : kExitError;
  }

  // Server mode: credentials (joining first if needed), then the agent with the session.
  int RunServerMode(const GlobalOptions& global, Terminal& term) {
    if (!policies_.empty()) {
      term.err << "bulkhead agent: error: --policies cannot be used with --server: the policy "
                  "comes from the server (bulkhead apply); --inventory may still list local "
                  "workloads\n";
      return kExitInvalidInput;
    }
    if (node_opt_->count() != 0) {
      term.err << "bulkhead agent: error: with --server the node is --node-name (and, once "
                  "joined, the name in the certificate); --node is for standalone mode\n";
      return kExitInvalidInput;
    }
    if (global.verbose) spdlog::set_level(spdlog::level::debug);
    auto target = agentlink::ServerTarget(server_);
    if (!target.ok()) {
      term.err << "bulkhead agent: error: --server: " << target.status().message() << "\n";
      return kExitInvalidInput;
    }
    auto creds = agentlink::LoadCredentials(state_dir_);
    if (creds.ok()) {
      if (node_name_opt_->count() != 0 && node_name_ != creds->node_name) {
        term.err << "bulkhead agent: error: " << state_dir_ << " holds the credentials of node "
                 << creds->node_name << ", not " << node_name_
                 << " (use another --state-dir to join as another node)\n";
        return kExitInvalidInput;
      }
      spdlog::info("credentials of node {} from {}", creds->node_name, state_dir_);
    } else if (creds.status().code() != absl::StatusCode::kNotFound) {
      term.err << "bulkhead agent: error: credentials in " << state_dir_ << ": "
               << creds.status().message() << "\n";
      return kExitError;
    } else if (token_.empty()) {
      term.err << "bulkhead agent: error: " << state_dir_
               << " holds no credentials and no --token was given to join with\n";
      return kExitInvalidInput;
    } else {
      if (node_name_opt_->count() == 0) {
        char host[256] = {};
        if (gethostname(host, sizeof(host) - 1) != 0) {
          term.err << "bulkhead agent: error: cannot read the hostname (" << strerror(errno)
                   << "); pass --node-name\n";
          return kExitError;
        }
        node_name_ = host;
      }
      agentlink::JoinOptions j;
      j.server = server_;
      j.token = token_;
      j.node_name = node_name_;
      j.state_dir = state_dir_;
      j.ca_file = ca_file_;
      j.tls_server_name = tls_server_name_;
      creds = agentlink::Join(j);
      if (!creds.ok()) {
        term.err << "bulkhead agent: error: cannot join " << server_ << " as " << node_name_ << ": "
                 << creds.status().message() << "\n";
        return kExitError;
      }
      spdlog::info("joined {} as node {}", server_, creds->node_name);
    }
    node_ = creds->node_name;
    agentlink::SyncOptions so;
    so.server = server_;
    so.credentials = *creds;
    so.tls_server_name = tls_server_name_;
    so.version = "bulkhead-agent";
    server_link_ = std::make_unique<agent::ServerLink>(std::move(so));
    return RunAgent(global, term);
  }

  int RunAgent(const GlobalOptions& global, Terminal& term) {
    const bool server_mode = server_link_ != nullptr;
    if (!server_mode && (policies_.empty() || inventory_.empty())) {
      term.err << "bulkhead agent: error: --policies and --inventory are required (or --server "
                  "for server mode)\n";
      return kExitInvalidInput;
    }
    if (global.verbose) spdlog::set_level(spdlog::level::debug);
    std::error_code ec;
    std::filesystem::create_directories(state_dir_, ec);
    // One agent per state directory (and so per pin root): the datapath has one writer.
    const std::string lock_path = state_dir_ + "/agent.lock";
    int lock_fd = open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (lock_fd < 0 || flock(lock_fd, LOCK_EX | LOCK_NB) != 0) {
      term.err << "bulkhead agent: error: cannot lock " << lock_path << ": "
               << (errno == EWOULDBLOCK ? "another agent runs" : strerror(errno)) << "\n";
      return kExitError;
    }
    datapath::DatapathOptions dopts;
    dopts.pin_root = pin_root_;
    if (!server_mode && !ResolveNode(term)) {
      close(lock_fd);
      return kExitError;
    }
    agent::AgentOptions aopts{policies_, inventory_, state_dir_, node_};
    aopts.server_mode = server_mode;
    if (int rc = DatapathSettings(aopts, dopts, term); rc != kExitOk) {
      close(lock_fd);
      return rc;
    }
    auto dp = datapath::BpfDatapath::Open(dopts);
    if (!dp.ok()) {
      term.err << "bulkhead agent: error: cannot open the datapath at " << pin_root_ << ": "
               << dp.status().message() << "\n";
      close(lock_fd);
      return kExitError;
    }
    spdlog::info("datapath {} at {}", (*dp)->adopted() ? "adopted" : "created", pin_root_);
    for (const auto& name : datapath::MapSizes::Names()) {
      if ((*dp)->sizes().Get(name) != dopts.sizes.Get(name) &&
          explicit_sizes_.count(std::string(name))) {
        spdlog::warn(
            "map {}: the pinned map keeps its {} entries (--map-size asked for {}); to "
            "resize it, stop the agent and remove the pin root {} (enforcement stops "
            "until the agent runs again)",
            name, (*dp)->sizes().Get(name), dopts.sizes.Get(name), pin_root_);
      }
    }
    spdlog::info("node {}", node_.empty() ? "(none: every workload is local)" : node_);
    agent::Agent a(aopts, **dp, [](const std::string& name) -> absl::StatusOr<uint32_t> {
      unsigned idx = if_nametoindex(name.c_str());
      if (idx == 0) {
        return absl::NotFoundError("interface " + name + ": " + strerror(errno));
      }
      return static_cast<uint32_t>(idx);
    });
    if (absl::Status st = a.Start(); !st.ok()) {
      term.err << "bulkhead agent: error: " << st.message() << "\n";
      close(lock_fd);
      return kExitError;
    }
    agent::RunOptions ropts{socket_, metrics_};
    ropts.events_batch = std::chrono::milliseconds(events_batch_ms_);
    if (server_mode) {
      spdlog::info("server mode: policy from {}", server_);
      server_link_->Start(a);
      ropts.server = server_link_.get();
    }
    int rc = agent::RunAgentLoop(a, aopts, ropts);
    if (server_mode) server_link_->Stop();
    close(lock_fd);
    return rc == 0 ? kExitOk : kExitError;
  }

  // --node, defaulted to the hostname. False (with the error printed) when that fails.
  bool ResolveNode(Terminal& term) {
    if (node_opt_->count() != 0) return true;
    char host[256] = {};
    if (gethostname(host, sizeof(host) - 1) != 0) {
      term.err << "bulkhead agent: error: cannot read the hostname (" << strerror(errno)
               << "); pass --node\n";
      return false;
    }
    node_ = host;
    return true;
  }

  // Map sizes and event classes for the datapath. A pin root without maps yet gets maps big
  // enough for the files' policy; --map-size overrides.
  int DatapathSettings(const agent::AgentOptions& aopts, datapath::DatapathOptions& dopts,
                       Terminal& term) {
    auto pinned = datapath::BpfDatapath::PinnedSizes(pin_root_);
    if (pinned.ok() && !pinned->has_value() && !aopts.server_mode) {
      auto stats = agent::EstimateCompile(aopts);
      if (stats.ok()) {
        dopts.sizes = agent::SizesFor(*stats, dopts.sizes);
        spdlog::info(
            "map sizes for {} ipcache, {} policy peer and {} policy port entries: {}, "
            "{}, {}",
            stats->ipcache_entries, stats->peer_entries, stats->port_entries, dopts.sizes.ipcache,
            dopts.sizes.policy_peers, dopts.sizes.policy_ports);
      } else {
        // The agent reports the input's errors itself; the built-in sizes will do until then.
        spdlog::info("map sizes: built-in (the files do not compile yet)");
      }
    }
    for (const std::string& assignment : map_sizes_) {
      if (absl::Status st = dopts.sizes.Set(assignment); !st.ok()) {
        term.err << "bulkhead agent: error: --map-size: " << st.message() << "\n";
        return kExitInvalidInput;
      }
      explicit_sizes_.insert(assignment.substr(0, assignment.find('=')));
    }
    if (!events_off_.empty()) {
      for (const std::string& cls : std::vector<std::string>(absl::StrSplit(events_off_, ','))) {
        if (cls == "new-flows") {
          dopts.settings.events_off |= BH_EVF_NEW_FLOWS;
        } else if (cls == "denies") {
          dopts.settings.events_off |= BH_EVF_DENIES;
        } else if (cls == "audits") {
          dopts.settings.events_off |= BH_EVF_AUDITS;
        } else if (cls == "all") {
          dopts.settings.events_off |= BH_EVF_NEW_FLOWS | BH_EVF_DENIES | BH_EVF_AUDITS;
        } else {
          term.err << "bulkhead agent: error: --events-off: unknown class \"" << cls
                   << "\" (new-flows, denies, audits, all)\n";
          return kExitInvalidInput;
        }
      }
      spdlog::info("flow events off: {}", events_off_);
    }
    return kExitOk;
  }

  CLI::App* app_ = nullptr;
  CLI::App* status_ = nullptr;
  std::string policies_, inventory_;
  std::string state_dir_ = "/var/lib/bulkhead";
  std::string pin_root_ = "/sys/fs/bpf/bulkhead/default";
  std::string socket_ = agent::kDefaultSocket;
  std::string status_socket_;
  std::string metrics_;
  std::string node_;
  CLI::Option* node_opt_ = nullptr;
  std::vector<std::string> map_sizes_;
  std::set<std::string> explicit_sizes_;
  std::string events_off_;
  int events_batch_ms_ = 10;
  std::string output_ = "text";
  std::string server_, token_, node_name_, ca_file_, tls_server_name_;
  CLI::Option* node_name_opt_ = nullptr;
  std::unique_ptr<agent::ServerLink> server_link_;
};

}  // namespace

std::unique_ptr<Subcommand> RegisterAgent(CLI::App& root) {
  return std::make_unique<AgentCommand>(root);
}

}  // namespace bulkhead::cli
