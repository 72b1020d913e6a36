// Client side of the agent's local API (used by `bulkhead agent status`, `endpoints`,
// `observe`, `explain` and by `bulkhead-cni`).
#pragma once

#include <functional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace bulkhead::agent {

inline constexpr const char* kDefaultSocket = "/run/bulkhead/agent.sock";

// Sends one request and returns the "result" of a successful response; an {"ok": false}
// response becomes an error carrying the agent's message, with the status code the agent
// named in "code" (FailedPrecondition when it named none). Not reaching the agent, or losing
// it before the answer, is Unavailable; no answer within timeout_ms (> 0) is
// DeadlineExceeded.
absl::StatusOr<nlohmann::json> CallAgent(const std::string& socket_path,
                                         const nlohmann::json& request, int timeout_ms = 0);

// The "code" of an {"ok": false} response: the status code in lower case
// ("invalid_argument", "already_exists", "not_found", "failed_precondition", ...), and back
// (unknown names give kFailedPrecondition).
std::string ErrorCodeName(absl::StatusCode code);
absl::StatusCode ErrorCodeFromName(std::string_view name);

// Sends an "observe" request and calls `on_event` with each event until the agent closes the
// stream or on_event returns false.
absl::Status StreamAgent(const std::string& socket_path, const nlohmann::json& request,
                         const std::function<bool(const nlohmann::json&)>& on_event);

}  // namespace bulkhead::agent
