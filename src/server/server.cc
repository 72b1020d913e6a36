// Server start-up and `server init`.
#include "server/server.h"

#include <fcntl.h>
#include <malloc.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "server/pki.h"

namespace bulkhead::server {
namespace {

std::string Hostname() {
  char buf[256] = {};
  if (gethostname(buf, sizeof(buf) - 1) != 0) return "";
  return buf;
}

}  // namespace

absl::StatusOr<InitResult> InitServer(const InitOptions& options) {
  DataDir dir(options.data_dir);
  std::error_code ec;
  std::filesystem::create_directories(dir.dir, ec);
  if (ec) return absl::UnavailableError(absl::StrCat(dir.dir, ": ", ec.message()));
  ::chmod(dir.dir.c_str(), 0700);
  if (std::filesystem::exists(dir.ca_cert()) || std::filesystem::exists(dir.ca_key())) {
    return absl::AlreadyExistsError(
        absl::StrCat(dir.dir,
                     " already holds a cluster CA (ca.crt); a new one would orphan every agent's "
                     "certificate. Use another --data-dir, or remove it on purpose."));
  }
  absl::StatusOr<KeyAndCert> ca = CreateCa("bulkhead cluster CA", absl::Hours(24 * 3650));
  if (!ca.ok()) return ca.status();
  std::vector<std::string> names = {"localhost", "127.0.0.1", "::1"};
  if (std::string h = Hostname(); !h.empty()) names.push_back(h);
  names.insert(names.end(), options.names.begin(), options.names.end());
  absl::StatusOr<KeyAndCert> server =
      IssueCert(*ca, "bulkhead server", names, CertUsage::kServer, absl::Hours(24 * 825));
  if (!server.ok()) return server.status();

  std::string url = options.store_url.empty() ? dir.default_store() : options.store_url;
  absl::StatusOr<std::unique_ptr<store::IStore>> store = store::OpenStore(url);
  if (!store.ok()) return store.status();
  AuditLog audit(store->get());
  TokenStore tokens(store->get());
  AuditEntry e;
  e.time = audit.Now();
  e.actor = "server init";
  e.role = "admin";
  e.origin = "local";
  e.action = "token.create";
  e.target = "token admin";
  e.outcome = "ok";
  e.detail = "role admin (the first token, made by server init)";
  absl::StatusOr<std::string> token =
      tokens.Create("admin", Role::kAdmin, absl::ZeroDuration(), "server init", {audit.EntryOp(e)});
  if (!token.ok()) {
    if (token.status().code() == absl::StatusCode::kAlreadyExists) {
      return absl::AlreadyExistsError(absl::StrCat(
          "the store ", url, " already has an 'admin' token: it was initialized before"));
    }
    return token.status();
  }
  for (auto [path, content, mode] :
       {std::tuple{dir.ca_key(), ca->key_pem, 0600}, std::tuple{dir.ca_cert(), ca->cert_pem, 0644},
        std::tuple{dir.server_key(), server->key_pem, 0600},
        std::tuple{dir.server_cert(), server->cert_pem, 0644},
        std::tuple{dir.admin_token(), *token + "\n", 0600}}) {
    if (absl::Status s = WriteFileAtomic(path, content, mode); !s.ok()) return s;
  }
  return InitResult{*token, dir.ca_cert()};
}

absl::StatusOr<std::unique_ptr<Server>> Server::Start(const ServerOptions& options) {
  // Every request thread (REST pool, gRPC) would otherwise get a malloc arena of its own and
  // keep what a validation of the whole set allocated: measured, 2.5x the resident memory per
  // stored policy (docs/benchmarks.md, "Control plane").
  mallopt(M_ARENA_MAX, 2);
  DataDir dir(options.data_dir);
  for (const std::string& f : {dir.server_cert(), dir.server_key()}) {
    if (!std::filesystem::exists(f)) {
      return absl::FailedPreconditionError(absl::StrCat(
          f, " is missing: run 'bulkhead server init --data-dir ", dir.dir, "' first"));
    }
  }
  std::unique_ptr<Server> s(new Server());
  std::string url = options.store_url.empty() ? dir.default_store() : options.store_url;
  absl::StatusOr<std::unique_ptr<store::IStore>> store = store::OpenStore(url);
  if (!store.ok()) return store.status();
  s->store_ = *std::move(store);
  s->audit_ = std::make_unique<AuditLog>(s->store_.get());
  s->policies_ = std::make_unique<PolicyRepository>(s->store_.get(), absl::Now, s->audit_.get());
  s->tokens_ = std::make_unique<TokenStore>(s->store_.get());
  ApiContext ctx{s->store_.get(), s->policies_.get(), s->tokens_.get(), s->audit_.get(),
                 options.version};
  s->rest_ = std::make_unique<RestServer>(ctx, TlsFiles{dir.server_cert(), dir.server_key()});
  if (absl::Status st = s->rest_->Start(options.listen); !st.ok()) return st;
  if (!options.grpc_listen.empty()) {
    KeyAndCert ca, tls;
    for (auto [path, out] : {std::pair{dir.ca_cert(), &ca.cert_pem},
                             {dir.ca_key(), &ca.key_pem},
                             {dir.server_cert(), &tls.cert_pem},
                             {dir.server_key(), &tls.key_pem}}) {
      std::ifstream in(path);
      std::stringstream text;
      text << in.rdbuf();
      if (!in) return absl::FailedPreconditionError(absl::StrCat(path, ": cannot read it"));
      *out = text.str();
    }
    AgentServiceOptions agent_options = options.agents;
    agent_options.version = options.version;
    s->agents_ = std::make_unique<AgentService>(s->store_.get(), s->policies_.get(),
                                                s->tokens_.get(), s->audit_.get(), std::move(ca),
                                                std::move(tls), std::move(agent_options));
    if (absl::Status st = s->agents_->Start(options.grpc_listen); !st.ok()) return st;
  }
  return s;
}

Server::~Server() {
  if (agents_) agents_->Stop();
  if (rest_) rest_->Stop();
}

int Server::rest_port() const { return rest_->port(); }
int Server::grpc_port() const { return agents_ ? agents_->port() : 0; }

}  // namespace bulkhead::server
