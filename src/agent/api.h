// The agent's local API: newline-delimited JSON requests and responses on a unix socket
// (docs/agent.md), and the loop that serves it next to the watches and the event reader.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>

#include "agent/agent.h"
#include "nlohmann/json.hpp"

namespace bulkhead::agent {

class ServerLink;

// Which events an `observe` stream wants; empty fields match everything.
struct ObserveFilter {
  std::string workload;  // "ns/name": the event's endpoint or its peer
  std::string verdict;   // allow, deny, audit, learn
  uint16_t port = 0;     // destination port
  bool Matches(const nlohmann::json& event) const;
};

// Answers one request: {"method": "status"|"endpoints"|"explain"|"reload"|"observe"|
// "endpoint-add"|"endpoint-del"|"endpoint-get", ...}. The response is
// {"ok": true, "result": ...} or {"ok": false, "error": "...", "code": "..."} (code: see
// ErrorCodeName in client.h; the older methods may omit it). For
// "observe", *observe is set and the caller streams {"event": {...}} lines afterwards.
nlohmann::json HandleRequest(Agent& agent, const nlohmann::json& request,
                             std::optional<ObserveFilter>* observe);

struct RunOptions {
  std::string socket_path;   // unix socket of the local API
  std::string metrics_addr;  // "127.0.0.1:9470"; empty: no metrics listener
  // After a read that found flow events, the loop leaves the ring this long. The kernel wakes
  // a reader only when the ring was empty at submit (adaptive wake-up), so events arriving
  // meanwhile queue without a wake-up each and are read in one batch: under a flood the agent
  // wakes ~1/events_batch times a second instead of for nearly every event, while an idle
  // ring still wakes it at once. An event reaches observers at most this late. Zero: read
  // every event as soon as it comes.
  std::chrono::milliseconds events_batch{10};
  // When >= 0, the loop also stops once this fd is readable (an eventfd or pipe: lets a test
  // or an embedding program stop it without signals).
  int stop_fd = -1;
  // When set, handles SIGINT/SIGTERM (blocks them in the calling thread, reads a signalfd).
  bool handle_signals = true;
  // Server mode: the control plane session (started by the caller). The loop applies what
  // it delivers and reports the agent's endpoints and resource use through it.
  ServerLink* server = nullptr;
};

// Serves until SIGINT or SIGTERM (or stop_fd): watches the policy directory and the inventory
// (inotify), reloads on change, applies the server's policy (server mode), reads flow events,
// answers the API and metrics. Returns 0 on a clean stop, 1 when a listener cannot be set up.
int RunAgentLoop(Agent& agent, const AgentOptions& agent_options, const RunOptions& options);

}  // namespace bulkhead::agent
