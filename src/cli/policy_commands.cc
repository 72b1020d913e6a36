// Policy as code against `bulkhead server`: apply, diff, get, delete, history, rollback and
// mode. Each is a thin client of the REST API (api/openapi.yaml); the server validates.
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "cli/command.h"
#include "cli/server_client.h"
#include "cli/text.h"
#include "server/api_client.h"

namespace bulkhead::cli {
namespace {

using nlohmann::json;

// Files as the API takes them.
json FilesJson(const std::vector<policy::Source>& sources) {
  json files = json::array();
  for (const policy::Source& s : sources)
    files.push_back({{"name", s.name}, {"content", s.content}});
  return files;
}

// "created NetworkPolicy shop/web" lines and a summary.
void PrintChanges(const json& body, bool dry_run, Terminal& term) {
  Style style(term.color);
  const json& changes = body["changes"];
  for (const json& c : changes) {
    std::string action = c.value("action", "");
    Color color = action == "create"   ? Color::kGreen
                  : action == "delete" ? Color::kRed
                                       : Color::kYellow;
    std::string verb = action == "create" ? "created" : action == "delete" ? "deleted" : "updated";
    if (dry_run) verb = "would be " + verb;
    term.out << style.Paint(verb, color) << " " << c.value("object", "") << "\n";
  }
  if (changes.empty()) {
    term.out << "no change: the server already holds this (revision " << body.value("revision", 0)
             << ")\n";
  } else if (dry_run) {
    term.out << "dry run: nothing changed (server at revision " << body.value("revision", 0)
             << ")\n";
  } else {
    term.out << "revision " << body.value("revision", 0) << "\n";
  }
}

class ServerCommand : public Subcommand {
 public:
  const CLI::App* app() const override { return app_; }

 protected:
  CLI::App* Add(CLI::App& root, const char* name, const char* help) {
    app_ = root.add_subcommand(name, help);
    AddServerFlags(app_, &flags_);
    return app_;
  }
  std::string Cmd() const { return "bulkhead " + app_->get_name(); }

  // The files as the API takes them, or an error printed and nullopt.
  std::optional<json> ReadFiles(const std::vector<std::string>& paths, Terminal& term) const {
    absl::StatusOr<std::vector<policy::Source>> files = ReadManifestFiles(paths);
    if (!files.ok()) {
      term.err << Cmd() << ": error: " << files.status().message() << "\n";
      return std::nullopt;
    }
    return FilesJson(*files);
  }

  CLI::App* app_ = nullptr;
  ServerFlags flags_;
  std::string output_ = "text";
};

class ApplyCommand : public ServerCommand {
 public:
  explicit ApplyCommand(CLI::App& root) {
    Add(root, "apply", "Make the server's policy set hold these files' objects (a new revision)");
    app_->add_option("-f,--filename", files_, "Manifest files or directories")
        ->required()
        ->type_name("PATH");
    app_->add_flag("--dry-run", dry_run_, "Validate and print the changes; change nothing");
    app_->add_flag("--prune", prune_, "Also delete stored objects the files no longer contain");
    app_->add_option("-m,--message", message_, "Why (kept in the revision and the audit log)");
    app_->add_option("-o,--output", output_, "text (default) or json")
        ->check(CLI::IsMember({"text", "json"}));
  }

  int Run(const GlobalOptions& global, Terminal& term) override {
    std::optional<json> files = ReadFiles(files_, term);
    if (!files) return kExitInvalidInput;
    auto client = ConnectOrReport(flags_, Cmd(), term);
    if (!client) return kExitInvalidInput;
    auto r = client->Post(
        "/api/v1/apply",
        {{"files", *files}, {"prune", prune_}, {"dryRun", dry_run_}, {"message", message_}});
    if (!r.ok() || r->status != 200) return ReportFailure(r, Cmd(), term);
    if (output_ == "json") {
      term.out << r->body.dump(2) << "\n";
      return kExitOk;
    }
    PrintDiagnostics(r->body, global.verbose, term);
    if (dry_run_) term.out << r->body.value("diff", "");
    PrintChanges(r->body, dry_run_, term);
    return kExitOk;
  }

 private:
  std::vector<std::string> files_;
  bool dry_run_ = false;
  bool prune_ = false;
  std::string message_;
};

class DiffCommand : public ServerCommand {
 public:
  explicit DiffCommand(CLI::App& root) {
    Add(root, "diff",
        "Show how the server's policy set differs from these files; exit 0 when it matches, 1 "
        "when it differs, 2 on invalid input");
    app_->add_option("-f,--filename", files_, "Manifest files or directories")
        ->required()
        ->type_name("PATH");
    app_->add_flag("--prune", prune_, "Also count stored objects the files do not contain");
    app_->add_option("-o,--output", output_, "text (default) or json")
        ->check(CLI::IsMember({"text", "json"}));
  }

  int Run(const GlobalOptions& global, Terminal& term) override {
    std::optional<json> files = ReadFiles(files_, term);
    if (!files) return kExitInvalidInput;
    auto client = ConnectOrReport(flags_, Cmd(), term);
    if (!client) return kExitInvalidInput;
    auto r = client->Post("/api/v1/diff", {{"files", *files}, {"prune", prune_}});
    if (!r.ok() || r->status != 200) return ReportFailure(r, Cmd(), term);
    bool differs = !r->body["changes"].empty();
    if (output_ == "json") {
      term.out << r->body.dump(2) << "\n";
    } else {
      PrintDiagnostics(r->body, global.verbose, term);
      term.out << r->body.value("diff", "");
    }
    return differs ? 1 : kExitOk;
  }

 private:
  std::vector<std::string> files_;
  bool prune_ = false;
};

class GetCommand : public ServerCommand {
 public:
  explicit GetCommand(CLI::App& root) {
    Add(root, "get", "List or show stored objects (at the head or an earlier revision)");
    app_->add_option("kind", kind_, "Kind (NetworkPolicy, np, anp, ns, ...); all when omitted");
    app_->add_option("name", name_, "Object name");
    app_->add_option("-n,--namespace", namespace_, "Only this namespace");
    app_->add_option("--revision", revision_, "Read the set as it was at this revision")
        ->check(CLI::NonNegativeNumber);
    app_->add_option("-o,--output", output_, "text (default), yaml or json")
        ->check(CLI::IsMember({"text", "yaml", "json"}));
  }

  int Run(const GlobalOptions&, Terminal& term) override {
    auto client = ConnectOrReport(flags_, Cmd(), term);
    if (!client) return kExitInvalidInput;
    std::string q = "/api/v1/objects?";
    if (!kind_.empty()) q += "kind=" + server::UrlEncode(kind_) + "&";
    if (!name_.empty()) q += "name=" + server::UrlEncode(name_) + "&";
    if (!namespace_.empty()) q += "namespace=" + server::UrlEncode(namespace_) + "&";
    if (revision_ > 0) q += "revision=" + std::to_string(revision_) + "&";
    if (output_ == "yaml") q += "yaml=1&";
    q.pop_back();
    auto r = client->Get(q);
    if (!r.ok() || r->status != 200) return ReportFailure(r, Cmd(), term);
    const json& objects = r->body["objects"];
    if (!name_.empty() && objects.empty()) {
      term.err << Cmd() << ": error: " << kind_ << " "
               << (namespace_.empty() ? "" : namespace_ + "/") << name_ << " not found at revision "
               << r->body.value("revision", 0) << "\n";
      return kExitError;
    }
    if (output_ == "json") {
      term.out << r->body.dump(2) << "\n";
    } else if (output_ == "yaml") {
      bool first = true;
      for (const json& o : objects) {
        if (!first) term.out << "---\n";
        first = false;
        term.out << o.value("yaml", "");
      }
    } else {
      Style style(term.color);
      std::vector<std::vector<Cell>> rows;
      rows.push_back({{"KIND", Color::kBold}, {"NAMESPACE", Color::kBold}, {"NAME", Color::kBold}});
      for (const json& o : objects) {
        rows.push_back({{o.value("kind", "")}, {o.value("namespace", "")}, {o.value("name", "")}});
      }
      for (const auto& line : AlignColumns(rows, "  ", style)) term.out << line << "\n";
      term.out << "(revision " << r->body.value("revision", 0) << ", " << objects.size()
               << " objects)\n";
    }
    return kExitOk;
  }

 private:
  std::string kind_, name_, namespace_;
  int64_t revision_ = 0;
};

class DeleteCommand : public ServerCommand {
 public:
  explicit DeleteCommand(CLI::App& root) {
    Add(root, "delete", "Delete stored objects by kind and name, or those a file declares");
    app_->add_option("kind", kind_, "Kind (NetworkPolicy, np, anp, ns, ...)");
    app_->add_option("names", names_, "Object names");
    app_->add_option("-n,--namespace", namespace_,
                     "Namespace of namespaced kinds (default: default)");
    app_->add_option("-f,--filename", files_, "Delete the objects these files declare")
        ->type_name("PATH");
    app_->add_flag("--dry-run", dry_run_, "Print what would be deleted; change nothing");
    app_->add_option("-m,--message", message_, "Why");
  }

  int Run(const GlobalOptions&, Terminal& term) override {
    json objects = json::array();
    if (!files_.empty()) {
      if (!kind_.empty()) {
        term.err << Cmd() << ": error: give either KIND NAME... or -f, not both\n";
        return kExitInvalidInput;
      }
      std::optional<json> files = ReadFiles(files_, term);
      if (!files) return kExitInvalidInput;
      // The server names objects; ask it how it reads these files.
      auto client = ConnectOrReport(flags_, Cmd(), term);
      if (!client) return kExitInvalidInput;
      auto d = client->Post("/api/v1/diff", {{"files", *files}, {"prune", false}});
      if (!d.ok() || d->status != 200) return ReportFailure(d, Cmd(), term);
      for (const json& o : d->body["objects"]) objects.push_back(o);
      return Delete(*client, objects, term);
    }
    if (kind_.empty() || names_.empty()) {
      term.err << Cmd() << ": error: give KIND NAME... (or -f FILE)\n";
      return kExitInvalidInput;
    }
    for (const std::string& n : names_) {
      objects.push_back({{"kind", kind_}, {"namespace", namespace_}, {"name", n}});
    }
    auto client = ConnectOrReport(flags_, Cmd(), term);
    if (!client) return kExitInvalidInput;
    return Delete(*client, objects, term);
  }

 private:
  int Delete(server::ApiClient& client, const json& objects, Terminal& term) {
    auto r = client.Post("/api/v1/delete",
                         {{"objects", objects}, {"dryRun", dry_run_}, {"message", message_}});
    if (!r.ok() || r->status != 200) return ReportFailure(r, Cmd(), term);
    PrintChanges(r->body, dry_run_, term);
    return kExitOk;
  }
  std::string kind_, namespace_, message_;
  std::vector<std::string> names_, files_;
  bool dry_run_ = false;
};

class HistoryCommand : public ServerCommand {
 public:
  explicit HistoryCommand(CLI::App& root) {
    Add(root, "history", "List the policy set's revisions, or show one with its diff");
    app_->add_option("revision", revision_, "Show this revision")->check(CLI::PositiveNumber);
    app_->add_option("--limit", limit_, "At most this many, newest first")
        ->check(CLI::NonNegativeNumber);
    app_->add_option("-o,--output", output_, "text (default) or json")
        ->check(CLI::IsMember({"text", "json"}));
  }

  int Run(const GlobalOptions&, Terminal& term) override {
    auto client = ConnectOrReport(flags_, Cmd(), term);
    if (!client) return kExitInvalidInput;
    if (revision_ > 0) {
      auto r = client->Get("/api/v1/revisions/" + std::to_string(revision_));
      if (!r.ok() || r->status != 200) return ReportFailure(r, Cmd(), term);
      if (output_ == "json") {
        term.out << r->body.dump(2) << "\n";
        return kExitOk;
      }
      const json& b = r->body;
      term.out << "revision " << b.value("revision", 0) << "  " << b.value("operation", "")
               << (b.contains("rollbackTo") ? absl::StrCat(" to ", b.value("rollbackTo", 0)) : "")
               << "\nauthor   " << b.value("author", "") << " from " << b.value("origin", "")
               << "\ntime     " << b.value("time", "") << "\nmessage  " << b.value("message", "")
               << "\n\n"
               << b.value("diff", "");
      return kExitOk;
    }
    auto r =
        client->Get("/api/v1/revisions" + (limit_ > 0 ? "?limit=" + std::to_string(limit_) : ""));
    if (!r.ok() || r->status != 200) return ReportFailure(r, Cmd(), term);
    if (output_ == "json") {
      term.out << r->body.dump(2) << "\n";
      return kExitOk;
    }
    Style style(term.color);
    std::vector<std::vector<Cell>> rows;
    rows.push_back({{"REVISION", Color::kBold},
                    {"TIME", Color::kBold},
                    {"AUTHOR", Color::kBold},
                    {"OPERATION", Color::kBold},
                    {"CHANGES", Color::kBold},
                    {"MESSAGE", Color::kBold}});
    for (const json& i : r->body["revisions"]) {
      std::string op = i.value("operation", "");
      if (i.contains("rollbackTo")) op += " to " + std::to_string(i.value("rollbackTo", 0));
      rows.push_back({{std::to_string(i.value("revision", 0))},
                      {i.value("time", "").substr(0, 19)},
                      {i.value("author", "")},
                      {op},
                      {absl::StrCat("+", i.value("creates", 0), " ~", i.value("updates", 0), " -",
                                    i.value("deletes", 0))},
                      {i.value("message", "")}});
    }
    for (const auto& line : AlignColumns(rows, "  ", style)) term.out << line << "\n";
    return kExitOk;
  }

 private:
  int64_t revision_ = 0;
  int limit_ = 0;
};

class RollbackCommand : public ServerCommand {
 public:
  explicit RollbackCommand(CLI::App& root) {
    Add(root, "rollback", "Make the policy set what it was at REVISION (as a new revision)");
    app_->add_option("revision", revision_, "The revision to return to")
        ->required()
        ->check(CLI::NonNegativeNumber);
    app_->add_flag("--dry-run", dry_run_, "Print the changes; change nothing");
    app_->add_option("-m,--message", message_, "Why");
  }

  int Run(const GlobalOptions&, Terminal& term) override {
    auto client = ConnectOrReport(flags_, Cmd(), term);
    if (!client) return kExitInvalidInput;
    auto r = client->Post("/api/v1/rollback",
                          {{"revision", revision_}, {"dryRun", dry_run_}, {"message", message_}});
    if (!r.ok() || r->status != 200) return ReportFailure(r, Cmd(), term);
    if (dry_run_) term.out << r->body.value("diff", "");
    PrintChanges(r->body, dry_run_, term);
    return kExitOk;
  }

 private:
  int64_t revision_ = -1;
  bool dry_run_ = false;
  std::string message_;
};

class ModeCommand : public ServerCommand {
 public:
  explicit ModeCommand(CLI::App& root) {
    app_ = root.add_subcommand("mode",
                               "Set the enforcement mode of a namespace, a workload or a policy");
    set_ = app_->add_subcommand("set", "Set a mode: learn, audit or enforce");
    app_->require_subcommand(1);
    AddServerFlags(set_, &flags_);
    set_->add_option("mode", mode_, "learn, audit or enforce")
        ->required()
        ->check(CLI::IsMember({"learn", "audit", "enforce"}));
    auto* ns = set_->add_option("--namespace", namespace_, "A namespace");
    auto* pol =
        set_->add_option("--policy", policy_, "A stored policy: KIND/NAME or KIND/NAMESPACE/NAME");
    auto* wl = set_->add_option("--workload", workload_,
                                "A workload: NAMESPACE/NAME (stored as a WorkloadMode object)");
    ns->excludes(pol);
    wl->excludes(ns);
    wl->excludes(pol);
    set_->add_option("-n", policy_namespace_, "Namespace of --policy KIND/NAME");
  }

  int Run(const GlobalOptions&, Terminal& term) override {
    const std::string cmd = "bulkhead mode set";
    json body = {{"mode", mode_}};
    if (!namespace_.empty()) {
      body["kind"] = "Namespace";
      body["name"] = namespace_;
    } else if (!policy_.empty()) {
      std::vector<std::string> parts = absl::StrSplit(policy_, '/');
      if (parts.size() < 2 || parts.size() > 3 || parts.front().empty() || parts.back().empty()) {
        term.err << cmd << ": error: --policy '" << policy_
                 << "' must be KIND/NAME or KIND/NAMESPACE/NAME\n";
        return kExitInvalidInput;
      }
      body["kind"] = parts[0];
      body["name"] = parts.back();
      body["namespace"] = parts.size() == 3 ? parts[1] : policy_namespace_;
    } else if (!workload_.empty()) {
      std::vector<std::string> parts = absl::StrSplit(workload_, '/');
      if (parts.size() != 2 || parts[0].empty() || parts[1].empty()) {
        term.err << cmd << ": error: --workload '" << workload_ << "' must be NAMESPACE/NAME\n";
        return kExitInvalidInput;
      }
      body["kind"] = "WorkloadMode";
      body["namespace"] = parts[0];
      body["name"] = parts[1];
    } else {
      term.err << cmd
               << ": error: name what to set: --namespace NS, --workload NS/NAME or --policy "
                  "KIND/[NS/]NAME\n";
      return kExitInvalidInput;
    }
    auto client = ConnectOrReport(flags_, cmd, term);
    if (!client) return kExitInvalidInput;
    auto r = client->Post("/api/v1/mode", body);
    if (!r.ok() || r->status != 200) return ReportFailure(r, cmd, term);
    PrintChanges(r->body, false, term);
    return kExitOk;
  }

 private:
  CLI::App* set_ = nullptr;
  std::string mode_, namespace_, policy_, policy_namespace_, workload_;
};

}  // namespace

std::unique_ptr<Subcommand> RegisterApply(CLI::App& root) {
  return std::make_unique<ApplyCommand>(root);
}
std::unique_ptr<Subcommand> RegisterDiff(CLI::App& root) {
  return std::make_unique<DiffCommand>(root);
}
std::unique_ptr<Subcommand> RegisterGet(CLI::App& root) {
  return std::make_unique<GetCommand>(root);
}
std::unique_ptr<Subcommand> RegisterDelete(CLI::App& root) {
  return std::make_unique<DeleteCommand>(root);
}
std::unique_ptr<Subcommand> RegisterHistory(CLI::App& root) {
  return std::make_unique<HistoryCommand>(root);
}
std::unique_ptr<Subcommand> RegisterRollback(CLI::App& root) {
  return std::make_unique<RollbackCommand>(root);
}
std::unique_ptr<Subcommand> RegisterMode(CLI::App& root) {
  return std::make_unique<ModeCommand>(root);
}

}  // namespace bulkhead::cli
