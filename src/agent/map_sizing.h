// Map sizes from what a compile needs: a new pin root's maps are created big enough for the
// policy the agent will apply (with room for the switch, when old and new tables coexist).
#pragma once

#include "absl/status/statusor.h"
#include "agent/agent.h"
#include "datapath/datapath.h"
#include "engine/compiler.h"

namespace bulkhead::agent {

// `base` grown so that each map the compiler fills holds twice what `stats` needs (old and
// new tables side by side during a switch), rounded up to a power of two. Never smaller
// than `base`.
datapath::MapSizes SizesFor(const engine::CompileStats& stats, const datapath::MapSizes& base);

// The statistics of compiling the agent's files as it will (its node's view). Endpoints
// registered later (CNI) are not in it: the sizes above leave room for them.
absl::StatusOr<engine::CompileStats> EstimateCompile(const AgentOptions& options);

}  // namespace bulkhead::agent
