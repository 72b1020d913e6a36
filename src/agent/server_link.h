// Server mode's bridge between the control plane session (agentlink::SyncClient, which calls
// back on its own thread) and the agent loop: the callbacks only record what arrived and wake
// the loop; the loop applies it to the Agent, acks, and reports endpoints, the identity keys
// its compile uses and status, and recompiles with the cluster's identity numbers.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "agent/agent.h"
#include "agentlink/agentlink.h"
#include "nlohmann/json.hpp"

namespace bulkhead::agent {

class ServerLink {
 public:
  using Clock = std::chrono::steady_clock;
  static constexpr std::chrono::seconds kStatusInterval{10};

  explicit ServerLink(agentlink::SyncOptions options);
  ~ServerLink();  // Stop()
  ServerLink(const ServerLink&) = delete;
  ServerLink& operator=(const ServerLink&) = delete;

  // Readable when the session delivered something: the loop then calls Process.
  int fd() const { return wake_fd_; }
  // Tells the session what `agent` enforces already (a persisted revision, its endpoints),
  // then connects in the background.
  void Start(Agent& agent);
  void Stop();
  // On the loop thread: applies what arrived (the newest policy state, peers, namespace
  // coverage) to the agent and acks it; reports the agent's endpoints when they changed;
  // reports resource use every kStatusInterval. Call it after anything that may change the
  // agent's endpoints, and when fd() is readable or next_deadline() passed.
  void Process(Agent& agent);
  Clock::time_point next_deadline() const { return next_status_; }
  // server, connected, revision received, enforced, sessions, failures, last error.
  nlohmann::json StatusJson() const;
  // The cluster's identity numbers the server last sent, by identity key.
  std::map<std::string, uint32_t> identity_pins() const { return client_->identity_pins(); }

 private:
  void Wake();
  // The namespaces of `endpoints`; records which need a namespace delta (mu_ held).
  void NoteEndpointsLocked(const std::vector<agentlink::Endpoint>& endpoints);

  const std::string server_;
  int wake_fd_ = -1;
  std::unique_ptr<agentlink::SyncClient> client_;

  mutable std::mutex mu_;
  // From the session thread, consumed by Process.
  std::optional<agentlink::PolicyState> policy_;  // newest, while not yet applied
  std::map<std::string, agentlink::Endpoint> peers_;
  bool dirty_ = false;
  bool ack_snapshot_ = false;  // a snapshot arrived: ack its result even if unchanged
  std::optional<std::map<std::string, uint32_t>> pins_;  // the cluster's numbers, not yet applied
  bool connected_ = false;
  bool status_due_ = false;     // connected: report resource use now, not in up to 10 s
  int64_t last_revision_ = -1;  // of the last policy update on this stream
  // Namespace coverage (docs/agent.md): the server sends a namespace's objects in a delta at
  // the revision the agent has (a "namespace delta") after each change of the set of
  // namespaces the agent reports endpoints in. Each such change takes a ticket; a namespace
  // it added is synced when the delta of its ticket arrived, or with the next snapshot.
  std::set<std::string> reported_ns_;
  std::set<std::string> synced_ns_;
  std::map<std::string, uint64_t> pending_ns_;  // namespace -> ticket
  uint64_t changes_sent_ = 0;
  uint64_t ns_deltas_received_ = 0;

  // Loop thread only.
  bool started_ = false;
  std::vector<agentlink::Endpoint> reported_;  // what SetEndpoints last took
  bool reported_once_ = false;
  std::optional<std::set<std::string>> keys_sent_;  // the identity keys last sent
  bool acked_ = false;  // the last ack: its revision and error ("" for ok)
  int64_t acked_revision_ = 0;
  std::string acked_result_;
  Clock::time_point next_status_ = Clock::now();
};

}  // namespace bulkhead::agent
