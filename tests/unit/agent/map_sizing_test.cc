// Unit tests for map sizes derived from a compile (agent/map_sizing.h).
#include "agent/map_sizing.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

namespace bulkhead::agent {
namespace {

namespace fs = std::filesystem;

TEST(MapSizing, TwiceTheNeedRoundedUpNeverBelowTheBase) {
  const datapath::MapSizes base;
  engine::CompileStats small;
  small.ipcache_entries = 100;
  small.peer_entries = 1000;
  small.port_entries = 500;
  datapath::MapSizes z = SizesFor(small, base);
  EXPECT_EQ(z.ipcache, base.ipcache);
  EXPECT_EQ(z.policy_peers, base.policy_peers);
  EXPECT_EQ(z.policy_ports, base.policy_ports);
  EXPECT_EQ(z.conntrack, base.conntrack);

  // The compiler benchmark's whole cluster: 359,457 peer entries (more than the default).
  engine::CompileStats big;
  big.ipcache_entries = 40000;
  big.peer_entries = 359457;
  big.port_entries = 75194;
  z = SizesFor(big, base);
  EXPECT_EQ(z.policy_peers, 1u << 20);  // 2 x 359,457 = 718,914 -> 1,048,576
  EXPECT_EQ(z.policy_ports, base.policy_ports);
  EXPECT_EQ(z.ipcache, 1u << 17);  // 80,000 -> 131,072
  EXPECT_EQ(z.endpoints, base.endpoints);
}

TEST(MapSizing, EstimatesTheNodesViewOfTheFiles) {
  const fs::path dir = fs::temp_directory_path() / ("bh-map-sizing-" + std::to_string(getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir / "policies");
  std::ofstream(dir / "inventory.yaml") << R"(apiVersion: bulkhead.io/v1alpha1
kind: Inventory
metadata: {name: lab}
spec:
  workloads:
  - {name: a, labels: {app: a}, ips: [10.8.0.1]}
  - {name: b, labels: {app: b}, ips: [10.8.0.2], node: elsewhere}
)";
  std::ofstream(dir / "policies/b.yaml") << R"(apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: b-in, namespace: default}
spec:
  podSelector: {}
  ingress:
  - from: [{podSelector: {matchLabels: {app: a}}}]
)";
  AgentOptions o;
  o.policies_dir = (dir / "policies").string();
  o.inventory_file = (dir / "inventory.yaml").string();
  o.node = "here";
  auto stats = EstimateCompile(o);
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_EQ(stats->tables, 1u) << "only a's table: b is on another node";
  EXPECT_EQ(stats->ipcache_entries, 2u);
  EXPECT_GT(stats->port_entries, 0u);
  std::ofstream(dir / "policies/bad.yaml") << "kind: [\n";
  EXPECT_FALSE(EstimateCompile(o).ok());
  fs::remove_all(dir);
}

}  // namespace
}  // namespace bulkhead::agent
