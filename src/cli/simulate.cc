// `bulkhead simulate`: evaluates a flow, a reachability matrix or the full connectivity of a
// set of manifests with the reference evaluator, and explains every verdict.
#include <charconv>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "cli/command.h"
#include "cli/simulate_report.h"
#include "cli/text.h"
#include "engine/connectivity.h"
#include "engine/evaluator.h"
#include "policy/loader.h"

namespace bulkhead::cli {
namespace {

constexpr const char* kName = "bulkhead simulate";

std::string Quote(const std::string& s) { return "\"" + s + "\""; }

// Errors and warnings to print, counted for the summary line.
struct Problems {
  std::vector<std::string> lines;
  int errors = 0;
  int warnings = 0;

  void Error(const std::string& what) {
    lines.push_back(std::string(kName) + ": error: " + what);
    ++errors;
  }
};

std::string Plural(int n, const char* word) {
  return std::to_string(n) + " " + word + (n == 1 ? "" : "s");
}

class SimulateCommand : public Subcommand {
 public:
  explicit SimulateCommand(CLI::App& root) {
    app_ = root.add_subcommand("simulate",
                               "Evaluate flows against policy manifests and explain "
                               "the verdicts (nothing is applied)");
    app_->footer(
        "Modes (exactly one):\n"
        "  --from SRC --to DST --port PORT   one flow, with the reason for each direction\n"
        "  --matrix --port PORT              every ordered pair of workloads on one port\n"
        "  --connectivity                    allowed protocols and ports between all workloads\n"
        "                                    and the address ranges outside the cluster\n"
        "\nSRC and DST are namespace/name of a workload or an IP address.\n"
        "Exit status: 0 success, 2 invalid input (nothing evaluated), 1 other errors.");
    app_->add_option("-f,--file", files_,
                     "Manifest file or directory (YAML/JSON, read recursively); repeatable")
        ->required()
        ->allow_extra_args(false)
        ->type_name("PATH");
    from_opt_ =
        app_->add_option("--from", from_, "Source: namespace/name or IP address")->type_name("SRC");
    to_opt_ = app_->add_option("--to", to_, "Destination: namespace/name or IP address")
                  ->type_name("DST");
    from_process_opt_ =
        app_->add_option("--from-process", from_process_,
                         "Executable name of the source process (for process selectors)")
            ->type_name("NAME");
    port_opt_ = app_->add_option("--port", port_, "Destination port, 1..65535")->type_name("PORT");
    protocol_opt_ =
        app_->add_option("--protocol", protocol_, "TCP (default), UDP or SCTP")->type_name("PROTO");
    app_->add_flag("--matrix", matrix_, "Reachability matrix of every pair of workloads");
    app_->add_flag("--connectivity", connectivity_,
                   "Allowed connections between workloads and outside ranges");
    app_->add_option("-o,--output", output_, "Output format: text (default) or json")
        ->type_name("FORMAT");
  }

  const CLI::App* app() const override { return app_; }

  int Run(const GlobalOptions& global, Terminal& term) override {
    Problems problems;
    CheckFlags(problems);

    // Load even when a flag is wrong, so that one run reports every problem at once.
    policy::LoadResult loaded = policy::LoadPaths(files_);
    for (const auto& d : loaded.diagnostics) {
      switch (d.severity) {
        case policy::Diagnostic::Severity::kError:
          ++problems.errors;
          break;
        case policy::Diagnostic::Severity::kWarning:
          ++problems.warnings;
          break;
        case policy::Diagnostic::Severity::kNotice:
          if (!global.verbose) continue;
          break;
      }
      problems.lines.push_back(d.ToString());
    }

    engine::Flow flow;
    if (loaded.ok() && Given(from_opt_) && Given(to_opt_)) {
      ResolveFlow(loaded.cluster, flow, problems);
    }

    for (const auto& line : problems.lines) term.err << line << "\n";
    if (problems.errors > 0) {
      term.err << kName << ": " << Plural(problems.errors, "error");
      if (problems.warnings > 0) term.err << ", " << Plural(problems.warnings, "warning");
      term.err << "; nothing evaluated\n";
      return kExitInvalidInput;
    }

    Style style(term.color);
    bool json = output_ == "json";
    if (connectivity_) {
      auto report = engine::ComputeConnectivity(loaded.cluster);
      if (json) {
        term.out << ConnectivityJson(report).dump(2) << "\n";
      } else {
        term.out << ConnectivityText(report, style);
      }
    } else if (matrix_) {
      auto m = ComputeMatrix(loaded.cluster, protocol_value_, port_value_);
      if (json) {
        term.out << MatrixJson(m).dump(2) << "\n";
      } else {
        term.out << MatrixText(m, style);
      }
    } else {
      engine::Evaluator evaluator(loaded.cluster);
      engine::Verdict verdict = evaluator.Evaluate(flow);
      if (json) {
        term.out << FlowJson(flow, verdict).dump(2) << "\n";
      } else {
        term.out << FlowText(flow, verdict, style);
      }
    }
    return kExitOk;
  }

 private:
  bool Given(const CLI::Option* opt) const { return opt->count() > 0; }
  bool IsSingleFlow() const { return Given(from_opt_) || Given(to_opt_); }

  // Flags alone: which mode, and whether its values are well formed.
  void CheckFlags(Problems& p) {
    int modes = (IsSingleFlow() ? 1 : 0) + (matrix_ ? 1 : 0) + (connectivity_ ? 1 : 0);
    if (modes == 0) {
      p.Error("choose what to simulate: --from and --to (one flow), --matrix, or --connectivity");
    } else if (modes > 1) {
      std::vector<std::string> given;
      if (IsSingleFlow()) given.emplace_back("--from/--to");
      if (matrix_) given.emplace_back("--matrix");
      if (connectivity_) given.emplace_back("--connectivity");
      std::string list;
      for (size_t i = 0; i < given.size(); ++i) {
        list += (i == 0 ? "" : i + 1 == given.size() ? " and " : ", ") + given[i];
      }
      p.Error(list + " cannot be used together: choose one mode");
    }
    if (IsSingleFlow()) {
      if (!Given(from_opt_)) p.Error("--from is required with --to (the source of the flow)");
      if (!Given(to_opt_)) p.Error("--to is required with --from (the destination of the flow)");
    }
    if (Given(from_process_opt_) && !IsSingleFlow()) {
      p.Error("--from-process applies to one flow: use it with --from and --to");
    }
    if (Given(from_process_opt_) && from_process_.empty()) {
      p.Error("--from-process: the process name is empty");
    }
    if (connectivity_) {
      if (Given(port_opt_))
        p.Error("--port cannot be used with --connectivity (it covers every port)");
      if (Given(protocol_opt_)) {
        p.Error("--protocol cannot be used with --connectivity (it covers every protocol)");
      }
    } else if (modes == 1 && !Given(port_opt_)) {
      p.Error(std::string("--port is required ") +
              (matrix_ ? "with --matrix" : "for a flow (--from/--to)"));
    }
    if (Given(port_opt_)) {
      unsigned value = 0;
      const char* end = port_.data() + port_.size();
      auto [ptr, ec] = std::from_chars(port_.data(), end, value);
      if (port_.empty() || ec != std::errc() || ptr != end || value < 1 || value > 65535) {
        p.Error("--port: " + Quote(port_) + " is not a port number (1..65535)");
      } else {
        port_value_ = static_cast<uint16_t>(value);
      }
    }
    if (Given(protocol_opt_)) {
      auto proto = policy::ParseProtocol(protocol_);
      if (!proto || !policy::HasPorts(*proto)) {
        p.Error("--protocol: " + Quote(protocol_) + " is not one of TCP, UDP, SCTP");
      } else {
        protocol_value_ = *proto;
      }
    }
    if (output_ != "json" && output_ != "text") {
      p.Error("--output: " + Quote(output_) + " is not one of json, text");
    }
  }

  // Resolves --from and --to in the loaded cluster.
  void ResolveFlow(const policy::Cluster& cluster, engine::Flow& flow, Problems& p) {
    auto src = ResolveOne(cluster, "--from", from_, p);
    auto dst = ResolveOne(cluster, "--to", to_, p);
    if (!src || !dst) return;
    if (src->workload == nullptr && dst->workload == nullptr) {
      p.Error("--from " + Quote(from_) + " and --to " + Quote(to_) +
              " are both outside the cluster: at least one end must be a workload");
      return;
    }
    flow.src = *src;
    flow.dst = *dst;
    flow.protocol = protocol_value_;
    flow.port = port_value_;
    flow.src_process = from_process_;
  }

  std::optional<engine::FlowEndpoint> ResolveOne(const policy::Cluster& cluster, const char* flag,
                                                 const std::string& text, Problems& p) {
    if (auto ep = engine::ResolveEndpoint(cluster, text)) return ep;
    // What did the caller mean? Say what is wrong in those terms.
    // Workload names never contain ':'; digits and dots only is an IPv4 attempt.
    bool ip_like = text.find(':') != std::string::npos ||
                   (text.find('.') != std::string::npos &&
                    text.find_first_not_of("0123456789.") == std::string::npos);
    auto slash = text.find('/');
    if (common::Cidr::Parse(text)) {
      p.Error(std::string(flag) + ": " + Quote(text) +
              " is an address range: give one address or a workload");
      return std::nullopt;
    }
    if (ip_like || text.empty() || slash == 0 || slash + 1 == text.size() ||
        (slash != std::string::npos && text.find('/', slash + 1) != std::string::npos)) {
      p.Error(std::string(flag) + ": " + Quote(text) +
              " is neither a workload (namespace/name) nor an IP address");
      return std::nullopt;
    }
    // A bare name is a workload in namespace "default", as kubectl reads it.
    std::string ns = slash == std::string::npos ? "default" : text.substr(0, slash);
    std::string name = slash == std::string::npos ? text : text.substr(slash + 1);
    std::string msg =
        std::string(flag) + ": no workload " + Quote(ns + "/" + name) + " in the input";
    std::vector<std::string> hints;
    for (const auto& w : cluster.workloads) {
      if (w.name == name || w.namespace_name == ns) hints.push_back(w.Id());
    }
    if (!hints.empty()) {
      std::string list;
      for (size_t i = 0; i < hints.size() && i < 8; ++i) list += (i ? ", " : "") + hints[i];
      if (hints.size() > 8) list += ", ...";
      msg += " (did you mean: " + list + "?)";
    } else if (cluster.FindNamespace(ns) == nullptr) {
      msg += " (no namespace " + Quote(ns) + " either)";
    }
    p.Error(msg);
    return std::nullopt;
  }

  CLI::App* app_ = nullptr;
  std::vector<std::string> files_;
  std::string from_, to_, from_process_, port_, protocol_;
  std::string output_ = "text";
  bool matrix_ = false;
  bool connectivity_ = false;
  CLI::Option* from_opt_ = nullptr;
  CLI::Option* to_opt_ = nullptr;
  CLI::Option* from_process_opt_ = nullptr;
  CLI::Option* port_opt_ = nullptr;
  CLI::Option* protocol_opt_ = nullptr;
  uint16_t port_value_ = 0;
  policy::Protocol protocol_value_ = policy::Protocol::kTCP;
};

}  // namespace

std::unique_ptr<Subcommand> RegisterSimulate(CLI::App& root) {
  return std::make_unique<SimulateCommand>(root);
}

}  // namespace bulkhead::cli
