// `bulkhead agents`: every agent the server knows, with the revision it enforces, its lag
// behind the head, its health, endpoints and resource use (REST GET /api/v1/agents).
#include <cstdio>
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

std::string Bytes(uint64_t n) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(n);
  size_t u = 0;
  while (v >= 1024 && u + 1 < std::size(units)) {
    v /= 1024;
    ++u;
  }
  char buf[32];
  std::snprintf(buf, sizeof(buf), u == 0 ? "%.0f %s" : "%.1f %s", v, units[u]);
  return buf;
}

std::string Seconds(double s) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.1fs", s);
  return buf;
}

class AgentsCommand : public Subcommand {
 public:
  explicit AgentsCommand(CLI::App& root) {
    app_ = root.add_subcommand(
        "agents", "List the agents: enforced revision, lag, health, endpoints, CPU, memory");
    AddServerFlags(app_, &flags_);
    app_->add_option("-o,--output", output_, "text (default) or json")
        ->check(CLI::IsMember({"text", "json"}));
  }
  const CLI::App* app() const override { return app_; }

  int Run(const GlobalOptions&, Terminal& term) override {
    int exit_code = kExitOk;
    std::optional<json> body =
        GetListing(flags_, "bulkhead agents", "/api/v1/agents", output_, term, &exit_code);
    if (!body) return exit_code;
    Style style(term.color);
    std::vector<std::vector<Cell>> rows;
    rows.push_back({{"NODE", Color::kBold},
                    {"ENFORCED", Color::kBold},
                    {"LAG", Color::kBold},
                    {"HEALTH", Color::kBold},
                    {"ENDPOINTS", Color::kBold},
                    {"CPU", Color::kBold},
                    {"RSS", Color::kBold},
                    {"LAST SEEN", Color::kBold}});
    for (const json& a : body->value("agents", json::array())) {
      std::string health = a.value("health", "");
      int64_t lag = a.value("lag", int64_t{0});
      Color hc = health == "ok"                            ? Color::kGreen
                 : health == "stale" || health == "joined" ? Color::kYellow
                                                           : Color::kRed;
      std::string shown = health;
      if (health == "error" && !a.value("error", "").empty()) shown += ": " + a.value("error", "");
      if (health == "stale" && a.value("endpointsRemoved", false)) shown += " (endpoints removed)";
      rows.push_back({{a.value("node", "")},
                      {std::to_string(a.value("enforcedRevision", int64_t{0}))},
                      {std::to_string(lag), lag == 0 ? Color::kPlain : Color::kYellow},
                      {shown, hc},
                      {std::to_string(a.value("endpoints", int64_t{0}))},
                      {Seconds(a.value("cpuSeconds", 0.0))},
                      {Bytes(a.value("rssBytes", uint64_t{0}))},
                      {a.value("lastSeen", "").substr(0, 19)}});
    }
    for (const std::string& line : AlignColumns(rows, "  ", style)) term.out << line << "\n";
    if (rows.size() == 1) term.err << "no agent has joined yet (bulkhead token create)\n";
    return kExitOk;
  }

 private:
  CLI::App* app_ = nullptr;
  ServerFlags flags_;
  std::string output_ = "text";
};

}  // namespace

std::unique_ptr<Subcommand> RegisterAgents(CLI::App& root) {
  return std::make_unique<AgentsCommand>(root);
}

}  // namespace bulkhead::cli
