// `bulkhead identities`: the cluster-wide identity numbers, the key each names and the nodes
// holding it (REST GET /api/v1/identities).
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
    const std::string cmd = "bulkhead identities";
    auto client = ConnectOrReport(flags_, cmd, term);
    if (!client) return kExitInvalidInput;
    auto r = client->Get("/api/v1/identities");
    if (!r.ok() || r->status != 200) return ReportFailure(r, cmd, term);
    if (output_ == "json") {
      term.out << r->body.dump(2) << "\n";
      return kExitOk;
    }
    Style style(term.color);
    std::vector<std::vector<Cell>> rows;
    rows.push_back({{"NUMBER", Color::kBold}, {"HOLDERS", Color::kBold}, {"KEY", Color::kBold}});
    for (const json& id : r->body.value("identities", json::array())) {
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
