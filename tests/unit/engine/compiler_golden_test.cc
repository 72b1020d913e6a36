// Golden tests: the compiler's text dump of small clusters (testdata/compiler_*.yaml, loaded
// by the real loader) is pinned in testdata/compiler_*.golden and is the same on every
// compile. Regenerate after an intended change with BULKHEAD_UPDATE_GOLDEN=1 and review the
// diff. Each golden cluster is also checked against the evaluator, so a golden never pins a
// wrong table.
#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <set>
#include <sstream>

#include "engine/compiler.h"
#include "engine/evaluator.h"
#include "policy/loader.h"

namespace bulkhead::engine {
namespace {

using policy::Direction;
using policy::Protocol;

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

policy::Cluster Load(const std::string& name) {
  std::string path = std::string(BULKHEAD_TESTDATA_DIR) + "/" + name + ".yaml";
  policy::LoadResult r = policy::LoadPaths({path});
  std::string diags;
  for (const auto& d : r.diagnostics) diags += d.ToString() + "\n";
  EXPECT_TRUE(r.ok()) << diags;
  return r.cluster;
}

// Every workload against every workload and the edges of every CIDR, in both directions,
// on every protocol and the ports the policies name (and their neighbours).
void CrossCheck(const policy::Cluster& c, const CompiledPolicy& cp) {
  Evaluator ev(c);
  std::set<policy::IpAddr> outside;
  std::set<int> ports = {0, 1, 53, 80, 443, 65535};
  for (const auto& p : c.policies) {
    for (const auto* rules : {&p.ingress, &p.egress}) {
      for (const auto& r : *rules) {
        for (const auto& peer : r.peers) {
          for (const auto* list : {&peer.cidrs, &peer.except}) {
            for (const auto& x : *list) {
              outside.insert(x.First());
              outside.insert(x.Last());
              if (auto q = common::PrevAddr(x.First())) outside.insert(*q);
              if (auto q = common::NextAddr(x.Last())) outside.insert(*q);
            }
          }
        }
        for (const auto& pm : r.ports) {
          for (int q : {pm.first - 1, int{pm.first}, int{pm.last}, pm.last + 1}) {
            if (q >= 0 && q <= 65535) ports.insert(q);
          }
        }
      }
    }
  }
  for (const auto& n : c.nodes) outside.insert(n.ips.begin(), n.ips.end());
  for (const auto& w : c.workloads) {
    for (const auto& np : w.named_ports) ports.insert(np.port);
  }
  std::vector<FlowEndpoint> ends;
  for (const auto& w : c.workloads) ends.push_back(FlowEndpoint{&w, w.ips.front()});
  for (const auto& ip : outside) {
    if (c.FindWorkloadByIp(ip) == nullptr) ends.push_back(FlowEndpoint{nullptr, ip});
  }
  int checked = 0;
  for (const auto& src : ends) {
    for (const auto& dst : ends) {
      if (src.workload == nullptr && dst.workload == nullptr) continue;
      for (Protocol proto :
           {Protocol::kTCP, Protocol::kUDP, Protocol::kSCTP, Protocol::kICMP, Protocol::kICMPv6}) {
        for (int port : ports) {
          if (!policy::HasPorts(proto) && port != 0) continue;
          Flow f{src, dst, proto, static_cast<uint16_t>(port), {}};
          for (Direction d : {Direction::kEgress, Direction::kIngress}) {
            const FlowEndpoint& local = d == Direction::kEgress ? src : dst;
            const FlowEndpoint& remote = d == Direction::kEgress ? dst : src;
            if (local.workload == nullptr) continue;
            DirectionVerdict v = ev.EvaluateDirection(f, d);
            auto r = Lookup(cp.maps, cp.endpoints.at(local.workload->Id()).table_id, d, *remote.ip,
                            proto, f.port);
            ++checked;
            ASSERT_TRUE(r.found);
            ASSERT_EQ(r.allowed(), v.allowed)
                << policy::DirectionName(d) << " " << src.ToString() << " -> " << dst.ToString()
                << " " << policy::ProtocolName(proto) << "/" << port << ": " << v.Explain();
            ASSERT_EQ(r.would_deny(), v.would_deny) << v.Explain();
            if (v.reason == Reason::kRule || v.reason == Reason::kDefaultDeny) {
              ASSERT_EQ(cp.rules[r.value.rule_id].policy, v.policy);
              ASSERT_EQ(cp.rules[r.value.rule_id].rule_index, v.rule_index);
            }
          }
        }
      }
    }
  }
  EXPECT_GT(checked, 100);
}

class CompilerGolden : public ::testing::TestWithParam<std::string> {};

TEST_P(CompilerGolden, DumpMatchesGoldenAndIsDeterministic) {
  const std::string name = GetParam();
  policy::Cluster cluster = Load(name);
  ASSERT_FALSE(::testing::Test::HasFailure());
  auto first = CompilePolicy(cluster);
  auto second = CompilePolicy(cluster);
  ASSERT_TRUE(first.ok()) << first.status();
  ASSERT_TRUE(second.ok()) << second.status();
  std::string dump = DumpCompiledPolicy(*first);
  EXPECT_EQ(dump, DumpCompiledPolicy(*second)) << "two compiles of one cluster differ";

  std::string golden_path = std::string(BULKHEAD_TESTDATA_DIR) + "/" + name + ".golden";
  const char* update = std::getenv("BULKHEAD_UPDATE_GOLDEN");
  if (update != nullptr && std::string(update) == "1") {
    std::ofstream(golden_path, std::ios::binary) << dump;
    std::cout << "updated " << golden_path << "\n";
  } else {
    std::string golden = ReadFile(golden_path);
    ASSERT_FALSE(golden.empty()) << golden_path << " is missing: run with BULKHEAD_UPDATE_GOLDEN=1";
    EXPECT_EQ(dump, golden) << "compiled output changed; if intended, regenerate with "
                               "BULKHEAD_UPDATE_GOLDEN=1 and review the diff";
  }
  CrossCheck(cluster, *first);
}

INSTANTIATE_TEST_SUITE_P(Clusters, CompilerGolden,
                         ::testing::Values("compiler_basic", "compiler_tiers", "compiler_ipv6"));

}  // namespace
}  // namespace bulkhead::engine
