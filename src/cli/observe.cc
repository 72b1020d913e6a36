// `bulkhead observe`: a live stream of the running agent's flow events, filtered.
#include <ostream>
#include <string>

#include "agent/client.h"
#include "cli/command.h"

namespace bulkhead::cli {
namespace {

class ObserveCommand : public Subcommand {
 public:
  explicit ObserveCommand(CLI::App& root) {
    app_ = root.add_subcommand("observe", "Stream flow events (verdict, policy, rule) live");
    app_->add_option("--socket", socket_, "Local API socket")->type_name("PATH");
    app_->add_option("--workload", workload_, "Only flows of this workload (ns/name)");
    app_->add_option("--verdict", verdict_, "Only this verdict")
        ->check(CLI::IsMember({"allow", "deny", "audit", "learn"}));
    app_->add_option("--port", port_, "Only flows to this destination port")
        ->check(CLI::Range(1, 65535));
    app_->add_option("-n,--count", count_, "Stop after this many events (0: never)");
    app_->add_option("-o,--output", output_, "text (default) or json (one object per line)")
        ->check(CLI::IsMember({"text", "json"}));
  }
  const CLI::App* app() const override { return app_; }

  int Run(const GlobalOptions&, Terminal& term) override {
    nlohmann::json req = {{"method", "observe"}};
    if (!workload_.empty()) req["workload"] = workload_;
    if (!verdict_.empty()) req["verdict"] = verdict_;
    if (port_ != 0) req["port"] = port_;
    size_t seen = 0;
    absl::Status st = agent::StreamAgent(socket_, req, [&](const nlohmann::json& e) {
      if (output_ == "json") {
        term.out << e.dump() << "\n";
      } else {
        std::string rule = e.value("policy", "");
        if (!rule.empty()) rule += " " + e.value("rule", "");
        if (rule.empty()) rule = e.value("reason", "");
        term.out << e.value("verdict", "") << " " << e.value("kind", "") << " "
                 << e.value("workload", "") << " " << e.value("direction", "") << " "
                 << e.value("protocol", "") << " " << e.value("src", "") << ":"
                 << e.value("src_port", 0) << " -> " << e.value("dst", "") << ":"
                 << e.value("dst_port", 0) << " peer=" << e.value("peer", "") << " by=" << rule;
        const std::string drop = e.value("drop_reason", "");
        if (!drop.empty()) term.out << " drop=" << drop;
        term.out << "\n";
      }
      term.out.flush();
      return count_ == 0 || ++seen < count_;
    });
    if (!st.ok()) {
      term.err << "bulkhead observe: error: " << st.message() << "\n";
      return kExitError;
    }
    return kExitOk;
  }

 private:
  CLI::App* app_ = nullptr;
  std::string socket_ = agent::kDefaultSocket;
  std::string workload_, verdict_;
  int port_ = 0;
  size_t count_ = 0;
  std::string output_ = "text";
};

}  // namespace

std::unique_ptr<Subcommand> RegisterObserve(CLI::App& root) {
  return std::make_unique<ObserveCommand>(root);
}

}  // namespace bulkhead::cli
