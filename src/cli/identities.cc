// `bulkhead identities`: the cluster-wide identity numbers, the key each names and the nodes
// holding it (REST GET /api/v1/identities).
#include <optional>
#include <ostream>
#include <string>

#include "cli/command.h"
#include "cli/server_client.h"
#include "cli/text.h"
#include "server/api_client.h"

namespace bulkhead::cli {
namespace {

using nlohmann::json;

class IdentitiesCommand : public Subcommand {
 public:
  explicit IdentitiesCommand(CLI::App& root) {
    app_ = root.add_subcommand("identities",
                               "List the cluster-wide identities: number, key, nodes holding it");
    AddServerFlags(app_, &flags_);
    app_->add_option("-o,--output", output_, "text (default) or json")
        ->check(CLI::IsMember({"text", "json"}));
  }
  const CLI::App* app() const override { return app_; }

  int Run(const GlobalOptions&, Terminal& term) override {
    int exit_code = kExitOk;
    std::optional<json> body =
        GetListing(flags_, "bulkhead identities", "/api/v1/identities", output_, term, &exit_code);
    if (!body) return exit_code;
    Style style(term.color);
    std::vector<std::vector<Cell>> rows;
    rows.push_back({{"NUMBER", Color::kBold}, {"HOLDERS", Color::kBold}, {"KEY", Color::kBold}});
    for (const json& id : body->value("identities", json::array())) {
      std::string holders;
      for (const json& h : id.value("holders", json::array())) {
        if (!holders.empty()) holders += ",";
        holders += h.get<std::string>();
      }
      rows.push_back(
          {{std::to_string(id.value("number", uint64_t{0}))}, {holders}, {id.value("key", "")}});
    }
    for (const std::string& line : AlignColumns(rows, "  ", style)) term.out << line << "\n";
    if (rows.size() == 1) term.err << "no identity is allocated (no agent reported keys yet)\n";
    return kExitOk;
  }

 private:
  CLI::App* app_ = nullptr;
  ServerFlags flags_;
  std::string output_ = "text";
};

}  // namespace

std::unique_ptr<Subcommand> RegisterIdentities(CLI::App& root) {
  return std::make_unique<IdentitiesCommand>(root);
}

}  // namespace bulkhead::cli
