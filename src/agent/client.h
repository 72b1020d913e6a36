// Client side of the agent's local API (used by `bulkhead agent status`, `endpoints`,
// `observe` and `explain`).
#pragma once

#include <functional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace bulkhead::agent {

inline constexpr const char* kDefaultSocket = "/run/bulkhead/agent.sock";

// Sends one request and returns the "result" of a successful response; an {"ok": false}
// response becomes an error carrying the agent's message.
absl::StatusOr<nlohmann::json> CallAgent(const std::string& socket_path,
                                         const nlohmann::json& request);

// Sends an "observe" request and calls `on_event` with each event until the agent closes the
// stream or on_event returns false.
absl::Status StreamAgent(const std::string& socket_path, const nlohmann::json& request,
                         const std::function<bool(const nlohmann::json&)>& on_event);

}  // namespace bulkhead::agent
