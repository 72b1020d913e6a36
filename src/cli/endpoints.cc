// `bulkhead endpoints`: the workloads the running agent enforces on, as a table or JSON.
#include <ostream>
#include <string>

#include "agent/client.h"
#include "cli/command.h"
#include "cli/text.h"

namespace bulkhead::cli {
namespace {

class EndpointsCommand : public Subcommand {
 public:
  explicit EndpointsCommand(CLI::App& root) {
    app_ = root.add_subcommand("endpoints", "List the endpoints of the running agent");
    app_->add_option("--socket", socket_, "Local API socket")->type_name("PATH");
    app_->add_option("-o,--output", output_, "text (default) or json")
        ->check(CLI::IsMember({"text", "json"}));
  }
  const CLI::App* app() const override { return app_; }

  int Run(const GlobalOptions&, Terminal& term) override {
    auto r = agent::CallAgent(socket_, {{"method", "endpoints"}});
    if (!r.ok()) {
      term.err << "bulkhead endpoints: error: " << r.status().message() << "\n";
      return kExitError;
    }
    if (output_ == "json") {
      term.out << r->dump(2) << "\n";
      return kExitOk;
    }
    Style style(term.color);
    std::vector<std::vector<Cell>> rows;
    rows.push_back({{"WORKLOAD", Color::kBold},
                    {"SOURCE", Color::kBold},
                    {"INTERFACE", Color::kBold},
                    {"IFINDEX", Color::kBold},
                    {"IDENTITY", Color::kBold},
                    {"MODE", Color::kBold},
                    {"TABLE", Color::kBold},
                    {"GENERATION", Color::kBold},
                    {"STATUS", Color::kBold}});
    for (const auto& e : *r) {
      const std::string err = e.value("error", "");
      rows.push_back({{e.value("workload", "")},
                      {e.value("source", "")},
                      {e.value("interface", "")},
                      {std::to_string(e.value("ifindex", 0))},
                      {std::to_string(e.value("identity", 0))},
                      {e.value("mode", "")},
                      {std::to_string(e.value("table", 0))},
                      {std::to_string(e.value("generation", 0))},
                      {err.empty() ? "ok" : err, err.empty() ? Color::kGreen : Color::kRed}});
    }
    for (const auto& line : AlignColumns(rows, "  ", style)) term.out << line << "\n";
    return kExitOk;
  }

 private:
  CLI::App* app_ = nullptr;
  std::string socket_ = agent::kDefaultSocket;
  std::string output_ = "text";
};

}  // namespace

std::unique_ptr<Subcommand> RegisterEndpoints(CLI::App& root) {
  return std::make_unique<EndpointsCommand>(root);
}

}  // namespace bulkhead::cli
