// Input checks shared by every IDatapath implementation: what the kernel maps must never hold.
#pragma once

#include <cstdint>
#include <string_view>
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

// ResourceExhausted for a write that does not fit in a map: names the map (its MapSizes name
// and kernel name), the entries in use, how many more the write needs, the capacity, and how
// to raise it.
absl::Status MapFullError(std::string_view name, std::string_view kernel_name, uint64_t in_use,
                          uint64_t more, uint64_t capacity);

}  // namespace bulkhead::datapath
