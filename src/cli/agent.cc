// `bulkhead agent`: runs the node agent (standalone mode) and `bulkhead agent status` asks a
// running one how it is.
#include "agent/agent.h"

#include <fcntl.h>
#include <net/if.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <ostream>
#include <string>

#include "agent/api.h"
#include "agent/client.h"
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
    app_->add_option("--state-dir", state_dir_, "Agent state and lock (default /var/lib/bulkhead)")
        ->type_name("DIR");
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
    app_->require_subcommand(0, 1);

    status_ = app_->add_subcommand("status", "Ask the running agent whether it is ready");
    status_->add_option("--socket", status_socket_, "Local API socket")->type_name("PATH");
    status_->add_option("-o,--output", output_, "text (default) or json")
        ->check(CLI::IsMember({"text", "json"}));
  }

  const CLI::App* app() const override { return app_; }

  int Run(const GlobalOptions& global, Terminal& term) override {
    if (status_->parsed()) return Status(term);
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
    }
    return ready ? kExitOk : kExitError;
  }

  int RunAgent(const GlobalOptions& global, Terminal& term) {
    if (policies_.empty() || inventory_.empty()) {
      term.err << "bulkhead agent: error: --policies and --inventory are required\n";
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
    auto dp = datapath::BpfDatapath::Open(dopts);
    if (!dp.ok()) {
      term.err << "bulkhead agent: error: cannot open the datapath at " << pin_root_ << ": "
               << dp.status().message() << "\n";
      close(lock_fd);
      return kExitError;
    }
    spdlog::info("datapath {} at {}", (*dp)->adopted() ? "adopted" : "created", pin_root_);
    if (node_opt_->count() == 0) {
      char host[256] = {};
      if (gethostname(host, sizeof(host) - 1) != 0) {
        term.err << "bulkhead agent: error: cannot read the hostname (" << strerror(errno)
                 << "); pass --node\n";
        close(lock_fd);
        return kExitError;
      }
      node_ = host;
    }
    agent::AgentOptions aopts{policies_, inventory_, state_dir_, node_};
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
    int rc = agent::RunAgentLoop(a, aopts, agent::RunOptions{socket_, metrics_});
    close(lock_fd);
    return rc == 0 ? kExitOk : kExitError;
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
  std::string output_ = "text";
};

}  // namespace

std::unique_ptr<Subcommand> RegisterAgent(CLI::App& root) {
  return std::make_unique<AgentCommand>(root);
}

}  // namespace bulkhead::cli
