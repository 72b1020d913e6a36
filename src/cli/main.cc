// The `bulkhead` binary: parses the command line and runs the selected subcommand.
#include <exception>
#include <iostream>
#include <memory>
#include <vector>

#include "cli/command.h"
#include "cli/text.h"

namespace bulkhead::cli {
namespace {

// Every subcommand, in help order. An explicit table rather than static self-registration:
// the subcommands live in a static library, and a linker drops objects that nothing
// references, static registrars included.
constexpr RegisterFn kSubcommands[] = {
    &RegisterSimulate, &RegisterExplain, &RegisterAgent,      &RegisterEndpoints, &RegisterObserve,
    &RegisterLab,      &RegisterServer,  &RegisterApply,      &RegisterDiff,      &RegisterGet,
    &RegisterDelete,   &RegisterHistory, &RegisterRollback,   &RegisterMode,      &RegisterAudit,
    &RegisterToken,    &RegisterAgents,  &RegisterIdentities,
};

int Main(int argc, char** argv) {
  CLI::App app{"Bulkhead: host micro-segmentation for containers.", "bulkhead"};
  app.set_version_flag("--version", BULKHEAD_VERSION);
  app.require_subcommand(1);
  // Inherited by the subcommands registered below: lets root flags such as -v come after
  // the subcommand too (`bulkhead simulate ... -v`).
  app.fallthrough();
  GlobalOptions global;
  app.add_flag("-v,--verbose", global.verbose, "Also print notices (e.g. ignored kinds) on stderr");

  std::vector<std::unique_ptr<Subcommand>> subcommands;
  for (RegisterFn reg : kSubcommands) subcommands.push_back(reg(app));

  try {
    app.parse(argc, argv);
  } catch (const CLI::Success& e) {  // --help, --version
    return app.exit(e, std::cout, std::cerr);
  } catch (const CLI::ParseError& e) {
    std::string cmd = "bulkhead";
    for (const auto* sub : app.get_subcommands()) cmd += " " + sub->get_name();
    std::cerr << cmd << ": error: " << e.what() << "\n"
              << "Run '" << cmd << " --help' for usage.\n";
    return kExitInvalidInput;
  }

  Terminal term{std::cout, std::cerr, StdoutWantsColor()};
  for (auto& sub : subcommands) {
    if (!sub->app()->parsed()) continue;
    int rc = sub->Run(global, term);
    // A report that did not reach its reader is a failure, not a success.
    std::cout.flush();
    if (!std::cout) {
      std::cerr << "bulkhead: error: cannot write the output to stdout\n";
      return kExitError;
    }
    return rc;
  }
  std::cerr << "bulkhead: error: no subcommand ran\n";
  return kExitError;
}

}  // namespace
}  // namespace bulkhead::cli

int main(int argc, char** argv) {
  try {
    return bulkhead::cli::Main(argc, argv);
  } catch (const std::exception& e) {
    std::cerr << "bulkhead: internal error: " << e.what() << "\n";
    return bulkhead::cli::kExitError;
  }
}
