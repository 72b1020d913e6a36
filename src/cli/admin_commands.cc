// `bulkhead audit` (the server's audit log) and `bulkhead token` (join tokens for agents,
// API tokens for people and CI).
#include <ostream>
#include <string>

#include "cli/command.h"
#include "cli/server_client.h"
#include "cli/text.h"
#include "server/api_client.h"

namespace bulkhead::cli {
namespace {

using nlohmann::json;

class AuditCommand : public Subcommand {
 public:
  explicit AuditCommand(CLI::App& root) {
    app_ = root.add_subcommand("audit", "Query the server's audit log (roles admin, auditor)");
    AddServerFlags(app_, &flags_);
    app_->add_option("--since", since_, "From this time (RFC 3339)");
    app_->add_option("--until", until_, "Up to this time (RFC 3339)");
    app_->add_option("--actor", actor_, "Only this token name");
    app_->add_option("--action", action_,
                     "Only this action (apply, delete, rollback, mode, token.create, ...)");
    app_->add_option("--outcome", outcome_,
                     "Only this outcome (ok, invalid, denied, unauthenticated)");
    app_->add_option("--limit", limit_, "At most this many, newest first")
        ->check(CLI::NonNegativeNumber);
    app_->add_flag("--diff", show_detail_, "Also print each entry's detail (the diff of a change)");
    app_->add_option("-o,--output", output_, "text (default) or json")
        ->check(CLI::IsMember({"text", "json"}));
  }
  const CLI::App* app() const override { return app_; }

  int Run(const GlobalOptions&, Terminal& term) override {
    const std::string cmd = "bulkhead audit";
    auto client = ConnectOrReport(flags_, cmd, term);
    if (!client) return kExitInvalidInput;
    std::string q = "/api/v1/audit?";
    for (auto [k, v] : {std::pair{"since", &since_},
                        {"until", &until_},
                        {"actor", &actor_},
                        {"action", &action_},
                        {"outcome", &outcome_}}) {
      if (!v->empty()) q += std::string(k) + "=" + server::UrlEncode(*v) + "&";
    }
    if (limit_ > 0) q += "limit=" + std::to_string(limit_) + "&";
    q.pop_back();
    auto r = client->Get(q);
    if (!r.ok() || r->status != 200) return ReportFailure(r, cmd, term);
    if (output_ == "json") {
      term.out << r->body.dump(2) << "\n";
      return kExitOk;
    }
    Style style(term.color);
    std::vector<std::vector<Cell>> rows;
    rows.push_back({{"TIME", Color::kBold},
                    {"ACTOR", Color::kBold},
                    {"ROLE", Color::kBold},
                    {"FROM", Color::kBold},
                    {"ACTION", Color::kBold},
                    {"TARGET", Color::kBold},
                    {"REVISION", Color::kBold},
                    {"OUTCOME", Color::kBold}});
    for (const json& e : r->body["entries"]) {
      std::string outcome = e.value("outcome", "");
      rows.push_back({{e.value("time", "").substr(0, 19)},
                      {e.value("actor", "")},
                      {e.value("role", "")},
                      {e.value("origin", "")},
                      {e.value("action", "")},
                      {e.value("target", "")},
                      {e.contains("revision") ? std::to_string(e.value("revision", 0)) : ""},
                      {outcome, outcome == "ok" ? Color::kGreen : Color::kRed}});
    }
    std::vector<std::string> lines = AlignColumns(rows, "  ", style);
    size_t i = 0;
    for (const std::string& line : lines) {
      term.out << line << "\n";
      if (show_detail_ && i > 0) {
        std::string detail = r->body["entries"][i - 1].value("detail", "");
        if (!detail.empty()) term.out << detail << (detail.back() == '\n' ? "" : "\n");
      }
      ++i;
    }
    return kExitOk;
  }

 private:
  CLI::App* app_ = nullptr;
  ServerFlags flags_;
  std::string since_, until_, actor_, action_, outcome_, output_ = "text";
  int limit_ = 0;
  bool show_detail_ = false;
};

class TokenCommand : public Subcommand {
 public:
  explicit TokenCommand(CLI::App& root) {
    app_ = root.add_subcommand("token",
                               "Join tokens for agents and API tokens for people (role admin)");
    app_->require_subcommand(1);
    create_ = app_->add_subcommand(
        "create", "Make a join token for agents, or with --name and --role an API token");
    AddServerFlags(create_, &flags_);
    create_->add_option("--name", name_, "API token: its name (unique)");
    create_->add_option("--role", role_, "API token: admin, editor, viewer or auditor")
        ->check(CLI::IsMember({"admin", "editor", "viewer", "auditor"}));
    create_->add_option("--ttl", ttl_,
                        "Lifetime: 30m, 24h, 7d (join tokens: default 24h; API tokens: none)");
    list_ = app_->add_subcommand("list", "List API tokens (never their secrets)");
    AddServerFlags(list_, &flags_);
    revoke_ = app_->add_subcommand("revoke", "Revoke an API token by name");
    AddServerFlags(revoke_, &flags_);
    revoke_->add_option("name", revoke_name_, "Token name")->required();
  }
  const CLI::App* app() const override { return app_; }

  int Run(const GlobalOptions&, Terminal& term) override {
    const std::string cmd = "bulkhead token " + std::string(create_->parsed() ? "create"
                                                            : list_->parsed() ? "list"
                                                                              : "revoke");
    if (create_->parsed() && (name_.empty() != role_.empty())) {
      term.err << cmd
               << ": error: an API token needs both --name and --role (a join token neither)\n";
      return kExitInvalidInput;
    }
    auto client = ConnectOrReport(flags_, cmd, term);
    if (!client) return kExitInvalidInput;
    if (create_->parsed()) {
      json body = ttl_.empty() ? json::object() : json{{"ttl", ttl_}};
      std::string path = "/api/v1/join-tokens";
      if (!name_.empty()) {
        body["name"] = name_;
        body["role"] = role_;
        path = "/api/v1/tokens";
      }
      auto r = client->Post(path, body);
      if (!r.ok() || r->status != 201) return ReportFailure(r, cmd, term);
      term.out << r->body.value("token", "") << "\n";
      return kExitOk;
    }
    if (list_->parsed()) {
      auto r = client->Get("/api/v1/tokens");
      if (!r.ok() || r->status != 200) return ReportFailure(r, cmd, term);
      Style style(term.color);
      std::vector<std::vector<Cell>> rows;
      rows.push_back({{"NAME", Color::kBold},
                      {"ROLE", Color::kBold},
                      {"CREATED", Color::kBold},
                      {"BY", Color::kBold},
                      {"EXPIRES", Color::kBold}});
      for (const json& t : r->body["tokens"]) {
        std::string exp = t.value("expires", "");
        rows.push_back({{t.value("name", "")},
                        {t.value("role", "")},
                        {t.value("created", "").substr(0, 19)},
                        {t.value("createdBy", "")},
                        {exp.empty() ? "never" : exp.substr(0, 19)}});
      }
      for (const auto& line : AlignColumns(rows, "  ", style)) term.out << line << "\n";
      return kExitOk;
    }
    auto r = client->Delete("/api/v1/tokens/" + server::UrlEncode(revoke_name_));
    if (!r.ok() || r->status != 200) return ReportFailure(r, cmd, term);
    term.out << "revoked " << revoke_name_ << "\n";
    return kExitOk;
  }

 private:
  CLI::App* app_ = nullptr;
  CLI::App* create_ = nullptr;
  CLI::App* list_ = nullptr;
  CLI::App* revoke_ = nullptr;
  ServerFlags flags_;
  std::string name_, role_, ttl_, revoke_name_;
};

}  // namespace

std::unique_ptr<Subcommand> RegisterAudit(CLI::App& root) {
  return std::make_unique<AuditCommand>(root);
}
std::unique_ptr<Subcommand> RegisterToken(CLI::App& root) {
  return std::make_unique<TokenCommand>(root);
}

}  // namespace bulkhead::cli
