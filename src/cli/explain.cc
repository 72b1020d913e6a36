// `bulkhead explain`: what the kernel, as the running agent loaded it, decides for a new flow,
// named by the policy and rule that decide it.
#include <ostream>
#include <string>

#include "agent/client.h"
#include "cli/command.h"

namespace bulkhead::cli {
namespace {

class ExplainCommand : public Subcommand {
 public:
  explicit ExplainCommand(CLI::App& root) {
    app_ = root.add_subcommand(
        "explain", "Explain a new flow from the tables the kernel has loaded (running agent)");
    app_->add_option("--socket", socket_, "Local API socket")->type_name("PATH");
    app_->add_option("--from", from_, "Source: namespace/name or IP address")->required();
    app_->add_option("--to", to_, "Destination: namespace/name or IP address")->required();
    app_->add_option("--port", port_, "Destination port")->required()->check(CLI::Range(0, 65535));
    app_->add_option("--protocol", protocol_, "tcp (default), udp, sctp, icmp")
        ->check(CLI::IsMember({"tcp", "udp", "sctp", "icmp", "icmpv6"}, CLI::ignore_case));
    app_->add_option("-o,--output", output_, "text (default) or json")
        ->check(CLI::IsMember({"text", "json"}));
  }
  const CLI::App* app() const override { return app_; }

  int Run(const GlobalOptions&, Terminal& term) override {
    auto r = agent::CallAgent(socket_, {{"method", "explain"},
                                        {"from", from_},
                                        {"to", to_},
                                        {"port", port_},
                                        {"protocol", protocol_}});
    if (!r.ok()) {
      term.err << "bulkhead explain: error: " << r.status().message() << "\n";
      return kExitError;
    }
    if (output_ == "json") {
      term.out << r->dump(2) << "\n";
      return kExitOk;
    }
    term.out << r->value("from", "") << " -> " << r->value("to", "") << " "
             << r->value("protocol", "") << "/" << port_ << ": " << r->value("verdict", "") << "\n";
    for (const char* dir : {"egress", "ingress"}) {
      if (!r->contains(dir)) continue;
      const auto& d = (*r)[dir];
      term.out << "  " << dir << " of " << d.value("workload", "") << ": ";
      if (!d.value("enforced", false)) {
        term.out << "not enforced by this agent\n";
        continue;
      }
      term.out << d.value("verdict", "") << " (table " << d.value("table", 0) << ", generation "
               << d.value("generation", 0) << ", peer " << d.value("peer", "") << ")";
      const std::string policy = d.value("policy", "");
      if (!policy.empty()) {
        term.out << " by " << policy << " " << d.value("rule", "");
      } else {
        term.out << " by " << d.value("reason", "");
      }
      term.out << "\n";
    }
    return kExitOk;
  }

 private:
  CLI::App* app_ = nullptr;
  std::string socket_ = agent::kDefaultSocket;
  std::string from_, to_;
  int port_ = 0;
  std::string protocol_ = "tcp";
  std::string output_ = "text";
};

}  // namespace

std::unique_ptr<Subcommand> RegisterExplain(CLI::App& root) {
  return std::make_unique<ExplainCommand>(root);
}

}  // namespace bulkhead::cli
