// What every command that talks to `bulkhead server` shares: --server, --token (or
// --token-file), --ca, with BULKHEAD_SERVER, BULKHEAD_TOKEN and BULKHEAD_CA as defaults,
// and how server errors become messages and exit codes.
#pragma once

#include <CLI/CLI.hpp>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "cli/command.h"
#include "policy/loader.h"
#include "server/api_client.h"

namespace bulkhead::cli {

struct ServerFlags {
  std::string server;
  std::string token;
  std::string token_file;
  std::string ca;
};

void AddServerFlags(CLI::App* app, ServerFlags* flags);

// The client, or an error printed (prefixed with `cmd`) and nullptr.
std::unique_ptr<server::ApiClient> ConnectOrReport(const ServerFlags& flags, const std::string& cmd,
                                                   Terminal& term);

// Prints a failed call (transport error or HTTP error with the server's message and
// diagnostics) and returns the exit code: 2 for invalid input (400, 422), 1 otherwise.
int ReportFailure(const absl::StatusOr<server::ApiResponse>& r, const std::string& cmd,
                  Terminal& term);

// For a listing command (`agents`, `identities`): GETs `path`. Returns the body to print as
// text; or nullopt with *exit_code set when the command is done (the failure reported, or
// the body printed as JSON for `-o json`).
std::optional<nlohmann::json> GetListing(const ServerFlags& flags, const std::string& cmd,
                                         const std::string& path, const std::string& output,
                                         Terminal& term, int* exit_code);

// Prints the server's diagnostics (errors always; warnings and notices with -v).
void PrintDiagnostics(const nlohmann::json& body, bool verbose, Terminal& term);

// Reads manifest files and directories (*.yaml, *.yml, *.json, recursively, sorted) into
// sources named by their paths; errors name the path.
absl::StatusOr<std::vector<policy::Source>> ReadManifestFiles(
    const std::vector<std::string>& paths);

}  // namespace bulkhead::cli
