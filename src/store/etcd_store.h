// The shared store: an etcd v3 cluster reached through its JSON gateway (HTTP) over libcurl.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "store/store.h"

namespace bulkhead::store {

// Connects to the etcd members at `endpoints` ("HOST:PORT", plain http) and checks that one
// answers with a leader (Unavailable naming them otherwise). Requests go to the member that
// answered last and move on to the next when it cannot be reached or has no leader.
absl::StatusOr<std::unique_ptr<IStore>> OpenEtcdStore(const std::vector<std::string>& endpoints,
                                                      const StoreOptions& options = {});

}  // namespace bulkhead::store
