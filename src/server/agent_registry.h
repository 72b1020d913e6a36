// What the server keeps about its agents in the store: one record per node under
// /bulkhead/agents/<node> (enforced revision, last seen, health, usage) and the endpoints each
// node reports under /bulkhead/endpoints/<node>/<namespace>/<name>, which together form the
// cluster-wide IP -> endpoint map that every agent receives.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "bulkhead/v1/agent.pb.h"
#include "store/store.h"

namespace bulkhead::server {

inline constexpr char kAgentsPrefix[] = "/bulkhead/agents/";
inline constexpr char kEndpointsPrefix[] = "/bulkhead/endpoints/";

struct AgentRecord {
  std::string node;
  absl::Time joined = absl::UnixEpoch();
  absl::Time last_seen = absl::UnixEpoch();
  bool connected = false;
  // "joined" (never synced), "ok", "error" (its last ack failed), "stale" (not seen for the
  // stale timeout).
  std::string health = "joined";
  std::string error;  // the last failed ack's message
  int64_t enforced_revision = 0;
  int64_t endpoints = 0;
  bool endpoints_removed = false;  // the grace period ended and its endpoints were deleted
  double cpu_seconds = 0;
  uint64_t rss_bytes = 0;
  std::string version;
};

std::string AgentKey(std::string_view node);
std::string EndpointNodePrefix(std::string_view node);
std::string EndpointKey(std::string_view node, std::string_view ns, std::string_view name);

std::string AgentRecordToJson(const AgentRecord& r);
absl::StatusOr<AgentRecord> AgentRecordFromJson(std::string_view text);

std::string EndpointToJson(const v1::Endpoint& e);
absl::StatusOr<v1::Endpoint> EndpointFromJson(std::string_view text);

// Every agent record, by node name.
absl::StatusOr<std::vector<AgentRecord>> ListAgents(store::IStore* store);

// The policy set's head revision (0 before the first change).
absl::StatusOr<int64_t> ReadPolicyHead(store::IStore* store);

// An endpoint an agent reports, checked before it is stored: namespace and name are
// non-empty store key segments, IPs parse, named ports have a name, a port and a protocol.
// The message names the endpoint and the field.
absl::Status ValidateEndpoint(const v1::Endpoint& e);

}  // namespace bulkhead::server
