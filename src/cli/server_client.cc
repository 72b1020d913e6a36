// Connection flags, error reporting and file reading for the commands that use the server.
#include "cli/server_client.h"

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"

namespace bulkhead::cli {
namespace {

std::string Env(const char* name) {
  const char* v = std::getenv(name);
  return v == nullptr ? "" : v;
}

bool IsManifest(const std::filesystem::path& p) {
  std::string ext = p.extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return ext == ".yaml" || ext == ".yml" || ext == ".json";
}

absl::StatusOr<std::string> Slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot open: ", std::strerror(errno)));
  std::ostringstream s;
  s << in.rdbuf();
  if (in.bad()) return absl::DataLossError(absl::StrCat(path, ": cannot read"));
  return s.str();
}

}  // namespace

void AddServerFlags(CLI::App* app, ServerFlags* flags) {
  app->add_option("--server", flags->server, "Server URL, https://HOST:PORT (env BULKHEAD_SERVER)")
      ->type_name("URL");
  app->add_option("--token", flags->token, "API token (env BULKHEAD_TOKEN)")->type_name("TOKEN");
  app->add_option("--token-file", flags->token_file, "Read the API token from this file")
      ->type_name("FILE");
  app->add_option("--ca", flags->ca, "Cluster CA certificate, ca.crt (env BULKHEAD_CA)")
      ->type_name("FILE");
}

std::unique_ptr<server::ApiClient> ConnectOrReport(const ServerFlags& flags, const std::string& cmd,
                                                   Terminal& term) {
  server::ClientOptions o;
  o.server = flags.server.empty() ? Env("BULKHEAD_SERVER") : flags.server;
  o.token = flags.token.empty() ? Env("BULKHEAD_TOKEN") : flags.token;
  o.ca_file = flags.ca.empty() ? Env("BULKHEAD_CA") : flags.ca;
  if (!flags.token_file.empty()) {
    absl::StatusOr<std::string> t = Slurp(flags.token_file);
    if (!t.ok()) {
      term.err << cmd << ": error: --token-file " << t.status().message() << "\n";
      return nullptr;
    }
    o.token = *t;
    while (!o.token.empty() && std::isspace(static_cast<unsigned char>(o.token.back()))) {
      o.token.pop_back();
    }
  }
  if (o.server.empty()) {
    term.err << cmd
             << ": error: no server: pass --server https://HOST:PORT or set BULKHEAD_SERVER\n";
    return nullptr;
  }
  if (o.token.empty()) {
    term.err << cmd << ": error: no API token: pass --token, --token-file or set BULKHEAD_TOKEN\n";
    return nullptr;
  }
  absl::StatusOr<std::unique_ptr<server::ApiClient>> c = server::ApiClient::Create(o);
  if (!c.ok()) {
    term.err << cmd << ": error: " << c.status().message() << "\n";
    return nullptr;
  }
  return *std::move(c);
}

void PrintDiagnostics(const nlohmann::json& body, bool verbose, Terminal& term) {
  const nlohmann::json* diags = nullptr;
  if (body.contains("diagnostics")) diags = &body["diagnostics"];
  if (body.contains("error") && body["error"].contains("diagnostics")) {
    diags = &body["error"]["diagnostics"];
  }
  if (diags == nullptr || !diags->is_array()) return;
  for (const auto& d : *diags) {
    std::string sev = d.value("severity", "error");
    if (sev != "error" && !(verbose || sev == "warning")) continue;
    term.err << d.value("text", d.value("message", "")) << "\n";
  }
}

std::optional<nlohmann::json> GetListing(const ServerFlags& flags, const std::string& cmd,
                                         const std::string& path, const std::string& output,
                                         Terminal& term, int* exit_code) {
  auto client = ConnectOrReport(flags, cmd, term);
  if (!client) {
    *exit_code = kExitInvalidInput;
    return std::nullopt;
  }
  auto r = client->Get(path);
  if (!r.ok() || r->status != 200) {
    *exit_code = ReportFailure(r, cmd, term);
    return std::nullopt;
  }
  if (output == "json") {
    term.out << r->body.dump(2) << "\n";
    *exit_code = kExitOk;
    return std::nullopt;
  }
  return std::move(r->body);
}

int ReportFailure(const absl::StatusOr<server::ApiResponse>& r, const std::string& cmd,
                  Terminal& term) {
  if (!r.ok()) {
    term.err << cmd << ": error: " << r.status().message() << "\n";
    return kExitError;
  }
  PrintDiagnostics(r->body, false, term);
  term.err << cmd << ": error: " << r->ErrorMessage() << "\n";
  return r->status == 400 || r->status == 422 ? kExitInvalidInput : kExitError;
}

absl::StatusOr<std::vector<policy::Source>> ReadManifestFiles(
    const std::vector<std::string>& paths) {
  namespace fs = std::filesystem;
  std::vector<policy::Source> out;
  for (const std::string& p : paths) {
    std::error_code ec;
    fs::file_status st = fs::status(p, ec);
    if (ec || !fs::exists(st)) return absl::NotFoundError(p + ": no such file or directory");
    if (!fs::is_directory(st)) {
      absl::StatusOr<std::string> content = Slurp(p);
      if (!content.ok()) return content.status();
      out.push_back({p, *std::move(content)});
      continue;
    }
    std::vector<std::string> files;
    for (fs::recursive_directory_iterator it(p, ec), end; !ec && it != end; it.increment(ec)) {
      if (it->is_regular_file() && IsManifest(it->path())) files.push_back(it->path().string());
    }
    if (ec) return absl::UnavailableError(p + ": cannot list directory: " + ec.message());
    std::sort(files.begin(), files.end());
    for (const std::string& f : files) {
      absl::StatusOr<std::string> content = Slurp(f);
      if (!content.ok()) return content.status();
      out.push_back({f, *std::move(content)});
    }
  }
  return out;
}

}  // namespace bulkhead::cli
