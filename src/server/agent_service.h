// The server's gRPC API for agents (proto/bulkhead/v1/agent.proto, docs/agent-protocol.md):
// Discover and Join (the trust bootstrap with a join token) and one Sync stream per agent
// over mutual TLS, which carries a snapshot of what the agent's endpoints need, then a delta
// per policy revision and the other nodes' endpoint changes, and brings back the agent's
// endpoints, acks and status. Also keeps the agents' registry: stale after a timeout,
// endpoints removed after a grace period. Allocates the cluster-wide identity numbers of the
// keys each agent reports (server/identities.h) and sends each agent the numbers of its keys.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "server/audit.h"
#include "server/auth.h"
#include "server/identities.h"
#include "server/pki.h"
#include "server/policy_repo.h"
#include "store/store.h"

namespace bulkhead::server {

struct AgentServiceOptions {
  std::function<absl::Time()> clock = absl::Now;
  // An agent not seen for this long (no stream on any server) is marked stale.
  absl::Duration stale_after = absl::Seconds(30);
  // A stale agent's endpoints stay in the cluster's map (so peers keep their identities)
  // until it has been away this long; then they are deleted.
  absl::Duration endpoint_grace = absl::Minutes(10);
  // How often the registry is swept (stale marks, grace ends, last-seen refreshes of this
  // server's connected agents). Zero: never in the background (tests call Sweep()).
  absl::Duration sweep_interval = absl::Seconds(2);
  // Acks and status reports only update an agent's registry record: those records are
  // written together, one store transaction per this interval for all agents, instead of one
  // fsync'd commit per message (200 agents acking a revision cost the server four times the
  // delivery). Zero: each is written at once. What `bulkhead agents` shows lags by at most
  // this much; endpoints, connects and disconnects are always written at once.
  absl::Duration record_batch = absl::Milliseconds(50);
  absl::Duration cert_validity = absl::Hours(24 * 365);
  std::string version;
  // The cluster-wide identity numbers (their range; tests narrow it).
  ClusterIdentitiesOptions identities;
};

class AgentService {
 public:
  // `ca` signs the agents' certificates and verifies them; `server_tls` is what the gRPC
  // listener presents (the server certificate the CA issued).
  AgentService(store::IStore* store, PolicyRepository* policies, TokenStore* tokens,
               AuditLog* audit, KeyAndCert ca, KeyAndCert server_tls, AgentServiceOptions options);
  ~AgentService();
  AgentService(const AgentService&) = delete;
  AgentService& operator=(const AgentService&) = delete;

  // Starts the feeds, the sweeper and the gRPC listener on `listen` ("127.0.0.1:8444",
  // port 0: any free port).
  absl::Status Start(const std::string& listen);
  int port() const;
  // Ends every session (agents see their stream end and reconnect elsewhere or later).
  void Stop();

  // One pass over the registry (see sweep_interval).
  absl::Status Sweep();

  class Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace bulkhead::server
