// The server's REST/JSON API for people, the CLI and the console (api/openapi.yaml): HTTPS,
// API tokens in `Authorization: Bearer`, a role check per route, every change and every
// refusal in the audit log.
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "server/audit.h"
#include "server/auth.h"
#include "server/policy_repo.h"

namespace bulkhead::server {

// What the API serves from; owned by the server.
struct ApiContext {
  store::IStore* store = nullptr;
  PolicyRepository* policies = nullptr;
  TokenStore* tokens = nullptr;
  AuditLog* audit = nullptr;
  std::string version;
};

struct TlsFiles {
  std::string cert;  // PEM files
  std::string key;
};

// An HTTPS server on a thread pool. Start() binds (port 0: any free port) and serves on a
// thread of its own until Stop() or destruction.
class RestServer {
 public:
  RestServer(ApiContext ctx, const TlsFiles& tls);
  ~RestServer();
  RestServer(const RestServer&) = delete;
  RestServer& operator=(const RestServer&) = delete;

  // "127.0.0.1:8443", "[::1]:0", "0.0.0.0:8443".
  absl::Status Start(const std::string& listen);
  int port() const { return port_; }
  void Stop();

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
  int port_ = 0;
};

// Splits "host:port" / "[v6]:port"; InvalidArgument naming `what` otherwise.
absl::Status ParseListen(const std::string& listen, const std::string& what, std::string* host,
                         int* port);

// "30s", "15m", "24h", "7d", or a number of seconds; InvalidArgument otherwise.
absl::StatusOr<absl::Duration> ParseTtl(const std::string& text);

}  // namespace bulkhead::server
