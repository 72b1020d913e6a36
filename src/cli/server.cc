// `bulkhead server` (the control plane process) and `bulkhead server init` (its CA, its
// certificate and the first admin token).
#include "server/server.h"

#include <csignal>
#include <ostream>
#include <string>

#include "absl/time/time.h"
#include "cli/command.h"

namespace bulkhead::cli {
namespace {

class ServerCommand : public Subcommand {
 public:
  explicit ServerCommand(CLI::App& root) {
    app_ = root.add_subcommand("server",
                               "Run the control plane server (REST API for people and the CLI)");
    app_->require_subcommand(0, 1);
    app_->add_option("--data-dir", options_.data_dir,
                     "CA, certificates and the default SQLite store")
        ->type_name("DIR")
        ->capture_default_str();
    app_->add_option("--store", options_.store_url,
                     "Store: sqlite:PATH (default: DATA_DIR/server.db) or etcd://HOST:PORT,...")
        ->type_name("URL");
    app_->add_option("--listen", options_.listen, "REST API address (HTTPS)")
        ->type_name("HOST:PORT")
        ->capture_default_str();
    app_->add_option("--grpc-listen", options_.grpc_listen,
                     "Agents' gRPC address (mutual TLS); empty: no agent listener")
        ->type_name("HOST:PORT")
        ->capture_default_str();
    app_->add_option("--agent-stale-after", stale_after_,
                     "An agent not seen for this long is shown stale (e.g. 30s, 2m)")
        ->type_name("DURATION")
        ->capture_default_str();
    app_->add_option("--endpoint-grace", endpoint_grace_,
                     "A stale agent's endpoints (and their identities) are kept this long")
        ->type_name("DURATION")
        ->capture_default_str();
    init_ = app_->add_subcommand(
        "init", "Create the cluster CA, the server certificate and an admin token");
    init_->add_option("--data-dir", init_options_.data_dir, "Where to write them")
        ->type_name("DIR")
        ->default_str("/var/lib/bulkhead/server");
    init_
        ->add_option("--store", init_options_.store_url,
                     "Store the admin token goes to (as for server)")
        ->type_name("URL");
    init_->add_option("--name", init_options_.names,
                      "Extra DNS name or IP address of the server certificate (repeatable)");
  }
  const CLI::App* app() const override { return app_; }

  int Run(const GlobalOptions&, Terminal& term) override {
    if (init_->parsed()) {
      if (init_options_.data_dir.empty()) init_options_.data_dir = "/var/lib/bulkhead/server";
      absl::StatusOr<server::InitResult> r = server::InitServer(init_options_);
      if (!r.ok()) {
        term.err << "bulkhead server init: error: " << r.status().message() << "\n";
        return r.status().code() == absl::StatusCode::kAlreadyExists ? kExitInvalidInput
                                                                     : kExitError;
      }
      term.out << "initialized " << init_options_.data_dir << "\n"
               << "admin token (also in " << init_options_.data_dir << "/admin.token):\n  "
               << r->admin_token << "\n"
               << "use it with:\n"
               << "  export BULKHEAD_SERVER=https://127.0.0.1:8443\n"
               << "  export BULKHEAD_CA=" << r->ca_cert_path << "\n"
               << "  export BULKHEAD_TOKEN=$(cat " << init_options_.data_dir << "/admin.token)\n";
      return kExitOk;
    }
    options_.version = BULKHEAD_VERSION_STRING;
    struct DurationFlag {
      const char* flag;
      const std::string* text;
      absl::Duration* into;
      bool zero_ok;
    };
    for (const DurationFlag& d :
         {DurationFlag{"--agent-stale-after", &stale_after_, &options_.agents.stale_after, false},
          DurationFlag{"--endpoint-grace", &endpoint_grace_, &options_.agents.endpoint_grace,
                       true}}) {
      absl::Duration v;
      if (!absl::ParseDuration(*d.text, &v) || v < absl::ZeroDuration() ||
          (!d.zero_ok && v == absl::ZeroDuration()) || v == absl::InfiniteDuration()) {
        term.err << "bulkhead server: error: " << d.flag << " '" << *d.text
                 << "' is not a duration such as 30s, 5m or 1h"
                 << (d.zero_ok ? "" : " (greater than zero)") << "\n";
        return kExitInvalidInput;
      }
      *d.into = v;
    }
    // Block the stop signals before any thread starts, so that only sigwait sees them.
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop, nullptr);
    absl::StatusOr<std::unique_ptr<server::Server>> s = server::Server::Start(options_);
    if (!s.ok()) {
      term.err << "bulkhead server: error: " << s.status().message() << "\n";
      return s.status().code() == absl::StatusCode::kInvalidArgument ? kExitInvalidInput
                                                                     : kExitError;
    }
    term.err << "bulkhead server: serving https on port " << (*s)->rest_port()
             << ", agents (gRPC) on port " << (*s)->grpc_port() << ", store "
             << (*s)->store()->Describe() << "\n";
    term.err.flush();
    int sig = 0;
    sigwait(&stop, &sig);
    term.err << "bulkhead server: stopping (signal " << sig << ")\n";
    return kExitOk;
  }

 private:
  CLI::App* app_ = nullptr;
  CLI::App* init_ = nullptr;
  server::ServerOptions options_;
  server::InitOptions init_options_;
  std::string stale_after_ = "30s";
  std::string endpoint_grace_ = "10m";
};

}  // namespace

std::unique_ptr<Subcommand> RegisterServer(CLI::App& root) {
  return std::make_unique<ServerCommand>(root);
}

}  // namespace bulkhead::cli
