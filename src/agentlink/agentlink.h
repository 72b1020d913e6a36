// The agent's side of the control plane (docs/agent-protocol.md): joining a cluster with a
// join token (CA discovery, a CSR, state files) and the Sync session with the server, kept up
// with reconnects and capped, jittered exponential backoff. Knows nothing of the engine or
// the datapath: it hands the policy objects and endpoints it receives to callbacks, and
// never discards the last snapshot it received, so the agent keeps enforcing while the
// server is away.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace bulkhead::agentlink {

// What a joined agent holds (PEM) and keeps in its state directory.
struct Credentials {
  std::string node_name;  // the common name of its certificate
  std::string ca_pem;
  std::string key_pem;
  std::string cert_pem;
};

// Files of the agent's state directory (all 0600, the directory 0700).
struct StateFiles {
  explicit StateFiles(std::string dir) : dir(std::move(dir)) {}
  std::string dir;
  std::string ca() const { return dir + "/ca.crt"; }
  std::string key() const { return dir + "/agent.key"; }
  std::string cert() const { return dir + "/agent.crt"; }
};

struct JoinOptions {
  std::string server;           // the server's gRPC address: HOST:PORT (grpcs:// or https:// ok)
  std::string token;            // a join token "bhj_<id>.<secret>"
  std::string node_name;        // this host's name in the cluster
  std::string state_dir;        // where the credentials are written
  std::string ca_file;          // trust this CA (PEM file) instead of discovering it
  std::string tls_server_name;  // the name the server certificate must carry ("" = HOST)
  absl::Duration timeout = absl::Seconds(10);
};

// "grpcs://h:p", "https://h:p/", "h:p" -> "h:p"; InvalidArgument without a port.
absl::StatusOr<std::string> ServerTarget(const std::string& server);

// Asks the server for its CA over TLS without verifying it, and accepts the CA only when the
// MAC that comes with it matches the one computed from `token` (a man in the middle does
// not know the token's secret, nor the store's hash of it). Errors: PermissionDenied for a
// MAC mismatch, the server's refusal (Unauthenticated for an unknown or expired token),
// Unavailable when it cannot be reached.
absl::StatusOr<std::string> DiscoverCa(const std::string& server, const std::string& token,
                                       absl::Duration timeout);

// Discovers the CA (or reads ca_file), makes a key and a CSR, exchanges the CSR and the
// token for a client certificate, and writes ca.crt, agent.key and agent.crt.
absl::StatusOr<Credentials> Join(const JoinOptions& options);

// The credentials of a state directory that Join wrote; NotFound when it has none.
absl::StatusOr<Credentials> LoadCredentials(const std::string& state_dir);

// --- What the server sends -----------------------------------------------------------------

struct ObjectRef {
  std::string group;
  std::string kind;
  std::string namespace_name;  // "" for cluster-scoped objects
  std::string name;
  std::string Key() const;  // "group/kind/namespace/name"
};

struct PolicyObject {
  ObjectRef ref;
  std::string api_version;
  std::string json;  // canonical JSON, as the server stores it
};

struct NamedPort {
  std::string name;
  uint32_t port = 0;
  std::string protocol = "TCP";
};

struct Endpoint {
  std::string node;  // set by the server on endpoints of other nodes
  std::string namespace_name;
  std::string name;
  std::map<std::string, std::string> labels;
  std::string service_account;
  std::vector<std::string> ips;
  std::vector<NamedPort> named_ports;
  std::string Key() const;  // "node/namespace/name"
};

struct EndpointRef {
  std::string node;
  std::string namespace_name;
  std::string name;
  std::string Key() const;
};

// The policy objects the agent has, at the revision of the last snapshot or delta.
struct PolicyState {
  int64_t revision = 0;
  std::map<std::string, PolicyObject> objects;  // by ObjectRef::Key()
};

struct PolicyUpdate {
  bool snapshot = false;  // replaces everything (after a connect or reconnect)
  int64_t revision = 0;
  std::vector<PolicyObject> upserts;  // the snapshot's objects, or the delta's
  std::vector<ObjectRef> deletes;
};

struct EndpointUpdate {
  bool snapshot = false;
  std::vector<Endpoint> upserts;
  std::vector<EndpointRef> deletes;
};

struct SyncCallbacks {
  // After each snapshot or delta, with the state it produced. The agent compiles and
  // enforces the state, then calls Ack(state.revision, result).
  std::function<void(const PolicyUpdate&, const PolicyState&)> on_policy;
  // Other nodes' endpoints (the cluster's IP -> endpoint map), by Endpoint::Key().
  std::function<void(const EndpointUpdate&, const std::map<std::string, Endpoint>&)> on_endpoints;
  // connected: a snapshot arrived; disconnected: the stream ended with `why`.
  std::function<void(bool connected, const absl::Status& why)> on_connection;
  // The cluster-wide numbers of the identity keys the agent holds (its last
  // SetIdentityKeys), by key: the whole map, after each answer of the server to the keys and
  // whenever a number changes. The agent compiles with these as pins.
  std::function<void(const std::map<std::string, uint32_t>& pins)> on_identities;
};

struct SyncOptions {
  std::string server;  // as for JoinOptions
  Credentials credentials;
  std::string tls_server_name;
  absl::Duration initial_backoff = absl::Milliseconds(500);
  absl::Duration max_backoff = absl::Seconds(30);
  double jitter = 0.2;  // each wait is the backoff times a random factor in [1-j, 1+j]
  absl::Duration keepalive = absl::Seconds(20);  // pings that notice a dead server
  std::string version;
};

// The wait before reconnect attempt `failures` (1 = after the first failure):
// initial * 2^(failures-1), capped at max, times (1 - jitter + 2 * jitter * random01).
absl::Duration Backoff(int failures, absl::Duration initial, absl::Duration max, double jitter,
                       double random01);

// CPU seconds (user + system) and resident memory of this process, for Status.
struct Usage {
  double cpu_seconds = 0;
  uint64_t rss_bytes = 0;
};
Usage ProcessUsage();

class SyncClient {
 public:
  SyncClient(SyncOptions options, SyncCallbacks callbacks);
  ~SyncClient();  // Stop()
  SyncClient(const SyncClient&) = delete;
  SyncClient& operator=(const SyncClient&) = delete;

  // Connects in the background and stays connected until Stop.
  void Start();
  void Stop();

  // The agent's own endpoints, all of them; the server gets the changes (or all of them in
  // the Hello of the next connection). InvalidArgument naming the endpoint and field (and
  // nothing changed) when one is not valid (server::ValidateEndpointFields) or two share a
  // namespace and name.
  absl::Status SetEndpoints(std::vector<Endpoint> endpoints);
  // Every identity key (identity::IdentityKey::ToString()) the agent's compile uses, its own
  // endpoints' and its peers': the whole set, replacing the one before. Sent now when
  // connected and again after the Hello of every reconnect; the server answers with the
  // numbers (on_identities). InvalidArgument (and nothing sent or changed) for an empty key
  // or one over server::kMaxIdentityKeyBytes. Until it is first called the server is told
  // nothing, and keeps what this node held before.
  absl::Status SetIdentityKeys(std::set<std::string> keys);
  // The last numbers the server sent (kept across disconnects: the agent keeps enforcing
  // with them), by key.
  std::map<std::string, uint32_t> identity_pins() const;
  // The result of enforcing `revision`; an ok one is also what the next Hello reports.
  void Ack(int64_t revision, const absl::Status& result);
  void ReportStatus(const Usage& usage);

  struct Stats {
    bool connected = false;
    int64_t revision = 0;   // of the policy state
    int64_t enforced = 0;   // last ok ack
    uint64_t sessions = 0;  // snapshots received
    uint64_t failures = 0;  // streams that ended or never started
    absl::Status last_error;
  };
  Stats stats() const;
  PolicyState policy() const;
  std::map<std::string, Endpoint> endpoints() const;  // other nodes'

  class Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace bulkhead::agentlink
