// `bulkhead server`: the control plane process. Owns the store, the policy repository, the
// tokens, the audit log and the APIs; `server init` prepares its data directory (the
// cluster CA, the server's certificate, the first admin token).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "server/agent_service.h"
#include "server/rest.h"

namespace bulkhead::server {

struct ServerOptions {
  std::string data_dir = "/var/lib/bulkhead/server";
  std::string store_url;  // "" = sqlite:<data_dir>/server.db
  std::string listen = "127.0.0.1:8443";
  std::string grpc_listen = "127.0.0.1:8444";  // agents (mutual TLS); "" = none
  AgentServiceOptions agents;
  std::string version;
};

// Files of the data directory.
struct DataDir {
  explicit DataDir(std::string dir) : dir(std::move(dir)) {}
  std::string dir;
  std::string ca_cert() const { return dir + "/ca.crt"; }
  std::string ca_key() const { return dir + "/ca.key"; }
  std::string server_cert() const { return dir + "/server.crt"; }
  std::string server_key() const { return dir + "/server.key"; }
  std::string admin_token() const { return dir + "/admin.token"; }
  std::string default_store() const { return "sqlite:" + dir + "/server.db"; }
};

struct InitOptions {
  std::string data_dir;
  std::string store_url;           // "" = the data dir's SQLite file
  std::vector<std::string> names;  // extra DNS names / IPs of the server certificate
};

struct InitResult {
  std::string admin_token;  // also written to <data_dir>/admin.token (0600)
  std::string ca_cert_path;
};

// Creates the CA, the server certificate and an admin token. Refuses (AlreadyExists) when
// the data dir already holds a CA: a second init would orphan every agent's certificate.
absl::StatusOr<InitResult> InitServer(const InitOptions& options);

class Server {
 public:
  static absl::StatusOr<std::unique_ptr<Server>> Start(const ServerOptions& options);
  ~Server();
  int rest_port() const;
  int grpc_port() const;  // 0 without a gRPC listener
  store::IStore* store() { return store_.get(); }
  AgentService* agents() { return agents_.get(); }

 private:
  Server() = default;
  std::unique_ptr<store::IStore> store_;
  std::unique_ptr<AuditLog> audit_;
  std::unique_ptr<PolicyRepository> policies_;
  std::unique_ptr<TokenStore> tokens_;
  std::unique_ptr<RestServer> rest_;
  std::unique_ptr<AgentService> agents_;
};

}  // namespace bulkhead::server
