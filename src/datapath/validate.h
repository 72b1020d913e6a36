// Input checks shared by every IDatapath implementation: what the kernel maps must never hold.
#pragma once

#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "datapath/datapath.h"

namespace bulkhead::datapath {

// Each returns InvalidArgument naming the entry and the field at fault. Implementations
// check a whole request before writing any of it, so a bad entry applies nothing.
absl::Status ValidateEndpoint(const Endpoint& endpoint);
absl::Status ValidateIpcache(
    const std::vector<std::pair<bulkhead_ipcache_key, bulkhead_ipcache_value>>& entries);
absl::Status ValidatePolicyTables(const PolicyTables& tables);
absl::Status ValidateFlowQuery(const FlowQuery& query);

}  // namespace bulkhead::datapath
