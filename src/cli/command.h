// The seam between main() and the subcommands: each subcommand lives in its own file and
// adds itself to the root CLI11 app through one registration function.
#pragma once

#include <CLI/CLI.hpp>
#include <iosfwd>
#include <memory>

namespace bulkhead::cli {

// The exit codes are a contract: CI gates and other tools branch on them.
enum ExitCode : int {
  kExitOk = 0,
  kExitError = 1,         // anything that is not the input's fault (internal, I/O)
  kExitInvalidInput = 2,  // bad flags, unreadable or invalid manifests, unknown names
};

// Options of the root command that every subcommand sees.
struct GlobalOptions {
  bool verbose = false;  // also print notices (e.g. ignored kinds)
};

// Where a subcommand writes, and whether it may colour its output for a person.
struct Terminal {
  std::ostream& out;
  std::ostream& err;
  bool color = false;
};

class Subcommand {
 public:
  virtual ~Subcommand() = default;
  // The CLI11 app this subcommand registered; main runs the one that was selected.
  virtual const CLI::App* app() const = 0;
  // Runs after a successful parse; returns an ExitCode.
  virtual int Run(const GlobalOptions& global, Terminal& term) = 0;
};

// A registration function adds the subcommand, its options and help to `root` and returns
// the object that will run it. New subcommands (agent, server, apply, ...) add one here and
// one line to main.cc's table.
using RegisterFn = std::unique_ptr<Subcommand> (*)(CLI::App& root);

std::unique_ptr<Subcommand> RegisterSimulate(CLI::App& root);
std::unique_ptr<Subcommand> RegisterAgent(CLI::App& root);
std::unique_ptr<Subcommand> RegisterEndpoints(CLI::App& root);
std::unique_ptr<Subcommand> RegisterObserve(CLI::App& root);
std::unique_ptr<Subcommand> RegisterExplain(CLI::App& root);
std::unique_ptr<Subcommand> RegisterLab(CLI::App& root);
std::unique_ptr<Subcommand> RegisterServer(CLI::App& root);
std::unique_ptr<Subcommand> RegisterApply(CLI::App& root);
std::unique_ptr<Subcommand> RegisterDiff(CLI::App& root);
std::unique_ptr<Subcommand> RegisterGet(CLI::App& root);
std::unique_ptr<Subcommand> RegisterDelete(CLI::App& root);
std::unique_ptr<Subcommand> RegisterHistory(CLI::App& root);
std::unique_ptr<Subcommand> RegisterRollback(CLI::App& root);
std::unique_ptr<Subcommand> RegisterMode(CLI::App& root);
std::unique_ptr<Subcommand> RegisterAudit(CLI::App& root);
std::unique_ptr<Subcommand> RegisterToken(CLI::App& root);
std::unique_ptr<Subcommand> RegisterAgents(CLI::App& root);
std::unique_ptr<Subcommand> RegisterIdentities(CLI::App& root);

}  // namespace bulkhead::cli
