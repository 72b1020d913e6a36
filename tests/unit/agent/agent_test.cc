// Agent against FakeDatapath: apply, invalid input keeps the last good policy, endpoints
// coming and going, revisions, restart adoption and the local API's requests.
#include "agent/agent.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>

#include "agent/api.h"
#include "datapath/fake_datapath.h"

namespace bulkhead::agent {
namespace {

namespace fs = std::filesystem;

constexpr const char* kInventory = R"(apiVersion: bulkhead.io/v1alpha1
kind: Inventory
metadata: {name: lab}
spec:
  namespaces:
  - name: shop
  workloads:
  - {name: web, namespace: shop, labels: {app: web}, ips: [10.9.0.1], hostInterface: veth-web}
  - {name: api, namespace: shop, labels: {app: api}, ips: [10.9.0.2], hostInterface: veth-api}
  - {name: db, namespace: shop, labels: {app: db}, ips: [10.9.0.3], hostInterface: veth-db}
)";

constexpr const char* kApiPolicy = R"(apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: api-from-web, namespace: shop}
spec:
  podSelector: {matchLabels: {app: api}}
  ingress:
  - from: [{podSelector: {matchLabels: {app: web}}}]
    ports: [{port: 80}]
)";

class AgentTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("bulkhead-agent-test-" + std::to_string(getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_ / "policies");
    Write("inventory.yaml", kInventory);
    Write("policies/api.yaml", kApiPolicy);
    options_ = AgentOptions{(dir_ / "policies").string(), (dir_ / "inventory.yaml").string(),
                            (dir_ / "state").string(), /*node=*/""};
  }
  void TearDown() override { fs::remove_all(dir_); }

  void Write(const std::string& rel, const std::string& text) { std::ofstream(dir_ / rel) << text; }

  std::unique_ptr<Agent> MakeAgent() {
    return std::make_unique<Agent>(options_, dp_,
                                   [this](const std::string& name) -> absl::StatusOr<uint32_t> {
                                     auto it = interfaces_.find(name);
                                     if (it == interfaces_.end())
                                       return absl::NotFoundError("no interface " + name);
                                     return it->second;
                                   });
  }

  std::set<uint32_t> KernelEndpoints() {
    std::set<uint32_t> out;
    auto eps = dp_.ListEndpoints();
    EXPECT_TRUE(eps.ok());
    for (const auto& e : eps.value()) out.insert(e.ifindex);
    return out;
  }
  std::set<uint32_t> Attached() {
    auto a = *dp_.ListAttached();
    return {a.begin(), a.end()};
  }

  fs::path dir_;
  AgentOptions options_;
  datapath::FakeDatapath dp_;
  std::map<std::string, uint32_t> interfaces_ = {
      {"veth-web", 11}, {"veth-api", 12}, {"veth-db", 13}, {"veth-new", 14}};
};

std::string Verdict(Agent& a, const std::string& from, const std::string& to, int port) {
  auto r = a.Explain(from, to, static_cast<uint16_t>(port), "tcp");
  EXPECT_TRUE(r.ok()) << r.status();
  return r.ok() ? r->value("verdict", "") : "";
}

TEST_F(AgentTest, AppliesPolicyToEveryEndpoint) {
  auto a = MakeAgent();
  ASSERT_TRUE(a->Start().ok());
  EXPECT_TRUE(a->ready());
  EXPECT_EQ(a->last_error(), "");
  EXPECT_EQ(a->revision().rfind("1-", 0), 0u) << a->revision();
  EXPECT_EQ(KernelEndpoints(), (std::set<uint32_t>{11, 12, 13}));
  EXPECT_EQ(Attached(), (std::set<uint32_t>{11, 12, 13}));
  EXPECT_EQ(Verdict(*a, "shop/web", "shop/api", 80), "allow");
  EXPECT_EQ(Verdict(*a, "shop/web", "shop/api", 81), "deny");
  EXPECT_EQ(Verdict(*a, "shop/db", "shop/api", 80), "deny");
  EXPECT_EQ(Verdict(*a, "shop/api", "shop/db", 5432), "allow");
  // The kernel's answer is named by the rule table.
  auto r = a->Explain("shop/web", "10.9.0.2", 80, "tcp");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ((*r)["ingress"].value("policy", ""), "NetworkPolicy shop/api-from-web") << r->dump(1);
  EXPECT_EQ((*r)["ingress"].value("peer", ""), "shop/web");
  // Endpoints carry the identity, table and generation the kernel holds.
  auto eps_now = dp_.ListEndpoints();
  ASSERT_TRUE(eps_now.ok());
  for (const auto& e : eps_now.value()) {
    EXPECT_NE(e.policy_table_id, 0u);
    EXPECT_EQ(e.policy_generation, 1u);
    ASSERT_EQ(e.addresses.size(), 1u);
  }
}

TEST_F(AgentTest, InvalidPolicyKeepsLastGoodInForce) {
  auto a = MakeAgent();
  ASSERT_TRUE(a->Start().ok());
  const std::string rev = a->revision();
  auto tables = *dp_.ListPolicyTables();
  Write("policies/broken.yaml",
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: bad, "
        "namespace: shop}\nspec:\n  podSelector: {}\n  ingress:\n  - ports: [{port: 70000}]\n");
  absl::Status st = a->Reload();
  EXPECT_FALSE(st.ok());
  EXPECT_NE(a->last_error().find("broken.yaml"), std::string::npos) << a->last_error();
  EXPECT_EQ(a->revision(), rev);
  EXPECT_TRUE(a->ready());
  EXPECT_EQ(*dp_.ListPolicyTables(), tables);
  EXPECT_EQ(Verdict(*a, "shop/web", "shop/api", 80), "allow");
  EXPECT_EQ(a->StatusJson().value("last_error", ""), a->last_error());
  // Fixing it applies a new revision and clears the error.
  fs::remove(dir_ / "policies/broken.yaml");
  Write("policies/deny-db.yaml", R"(apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: db-closed, namespace: shop}
spec:
  podSelector: {matchLabels: {app: db}}
)");
  ASSERT_TRUE(a->Reload().ok());
  EXPECT_EQ(a->last_error(), "");
  EXPECT_EQ(a->revision().rfind("2-", 0), 0u) << a->revision();
  EXPECT_EQ(Verdict(*a, "shop/api", "shop/db", 5432), "deny");
}

TEST_F(AgentTest, UnchangedFilesAreNotReapplied) {
  auto a = MakeAgent();
  ASSERT_TRUE(a->Start().ok());
  const std::string rev = a->revision();
  const uint32_t gen = a->StatusJson().value("generation", 0U);
  ASSERT_TRUE(a->Reload().ok());
  EXPECT_EQ(a->revision(), rev);
  EXPECT_EQ(a->StatusJson().value("generation", 0U), gen);
}

TEST_F(AgentTest, OnlyChangedTablesAreWrittenAndOnlyTheirEndpointsSwitched) {
  auto a = MakeAgent();
  ASSERT_TRUE(a->Start().ok());
  auto before = *dp_.ListPolicyTables();
  std::map<uint32_t, datapath::Endpoint> eps_before;
  auto listed = dp_.ListEndpoints();
  ASSERT_TRUE(listed.ok());
  for (const auto& e : *listed) eps_before[e.ifindex] = e;
  // A policy change that touches shop/api's table only.
  Write("policies/api.yaml", std::string(kApiPolicy) + "  - ports: [{port: 81}]\n");
  ASSERT_TRUE(a->Reload().ok());
  auto after = *dp_.ListPolicyTables();
  std::set<uint32_t> used;
  listed = dp_.ListEndpoints();
  ASSERT_TRUE(listed.ok());
  for (const auto& e : *listed) {
    used.insert(e.policy_table_id);
    const datapath::Endpoint& was = eps_before.at(e.ifindex);
    if (e.ifindex == 12) {  // shop/api: a new table, switched under a new generation
      EXPECT_EQ(std::count(before.begin(), before.end(), e.policy_table_id), 0);
      EXPECT_EQ(e.policy_generation, 2u);
    } else {  // the others keep their table and generation: their open flows stay as they are
      EXPECT_EQ(e.policy_table_id, was.policy_table_id) << e.ifindex;
      EXPECT_EQ(e.policy_generation, was.policy_generation) << e.ifindex;
    }
  }
  // The old table of shop/api is gone; the kernel holds exactly the tables in use.
  EXPECT_EQ(used, std::set<uint32_t>(after.begin(), after.end()));
  EXPECT_EQ(std::count(after.begin(), after.end(), eps_before.at(12).policy_table_id), 0);
  EXPECT_EQ(Verdict(*a, "shop/db", "shop/api", 81), "allow");
  EXPECT_EQ(Verdict(*a, "shop/web", "shop/api", 80), "allow");
  // The metrics say what the apply wrote.
  const std::string m = a->Metrics();
  EXPECT_NE(m.find("bulkhead_agent_last_apply_writes{what=\"tables_written\"} 1\n"),
            std::string::npos)
      << m;
  EXPECT_NE(m.find("bulkhead_agent_last_apply_writes{what=\"endpoints_switched\"} 1\n"),
            std::string::npos);
  EXPECT_NE(m.find("bulkhead_agent_last_apply_seconds{phase=\"total\"}"), std::string::npos);
  EXPECT_NE(m.find("bulkhead_datapath_map_capacity{map=\"policy_peers\"} 262144"),
            std::string::npos);

  // An inventory change that gives an address to another identity re-checks every
  // endpoint's flows: all are switched under a new generation.
  std::string inv = kInventory;
  const size_t at = inv.find("app: db");
  ASSERT_NE(at, std::string::npos);
  inv.replace(at, 7, "app: db, tier: data");
  Write("inventory.yaml", inv);
  ASSERT_TRUE(a->Reload().ok());
  listed = dp_.ListEndpoints();
  ASSERT_TRUE(listed.ok());
  for (const auto& e : *listed) EXPECT_EQ(e.policy_generation, 3u) << e.ifindex;
}

std::string ReadFile(const fs::path& p) {
  std::ifstream in(p);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

TEST_F(AgentTest, APolicyChangeUpdatesTheCompileInPlaceAndStateOnlyWhenNumbersChange) {
  auto a = MakeAgent();
  ASSERT_TRUE(a->Start().ok());
  const fs::path state = dir_ / "state" / "state.json";
  const std::string state_before = ReadFile(state);
  ASSERT_NE(state_before, "");
  // A port changes: the same rules (same ids), one table rewritten, in place.
  std::string changed = kApiPolicy;
  changed.replace(changed.find("port: 80"), 8, "port: 8080");
  Write("policies/api.yaml", changed);
  ASSERT_TRUE(a->Reload().ok()) << a->last_error();
  std::string m = a->Metrics();
  EXPECT_NE(m.find("bulkhead_agent_last_apply_incremental 1\n"), std::string::npos) << m;
  EXPECT_NE(m.find("bulkhead_agent_last_apply_writes{what=\"tables_written\"} 1\n"),
            std::string::npos);
  EXPECT_NE(m.find("bulkhead_agent_last_apply_writes{what=\"ipcache_entries\"} 0\n"),
            std::string::npos);
  EXPECT_EQ(Verdict(*a, "shop/web", "shop/api", 8080), "allow");
  EXPECT_EQ(Verdict(*a, "shop/web", "shop/api", 80), "deny");
  EXPECT_EQ(ReadFile(state), state_before) << "no number changed: state.json is not rewritten";
  // A new policy: new rule ids, so state.json is rewritten (with them).
  Write("policies/db.yaml", R"(apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: db-from-api, namespace: shop}
spec:
  podSelector: {matchLabels: {app: db}}
  ingress:
  - from: [{podSelector: {matchLabels: {app: api}}}]
    ports: [{port: 5432}]
)");
  ASSERT_TRUE(a->Reload().ok()) << a->last_error();
  m = a->Metrics();
  EXPECT_NE(m.find("bulkhead_agent_last_apply_incremental 1\n"), std::string::npos) << m;
  EXPECT_EQ(Verdict(*a, "shop/api", "shop/db", 5432), "allow");
  EXPECT_EQ(Verdict(*a, "shop/web", "shop/db", 5432), "deny");
  const std::string state_now = ReadFile(state);
  EXPECT_NE(state_now, state_before);
  EXPECT_NE(state_now.find("NetworkPolicy shop/db-from-api"), std::string::npos);
  // The events of the new table are named by the rule table.
  auto r = a->Explain("shop/api", "10.9.0.3", 5432, "tcp");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ((*r)["ingress"].value("policy", ""), "NetworkPolicy shop/db-from-api") << r->dump(1);
  // An invalid file changes nothing; removing it changes nothing either.
  const auto tables = *dp_.ListPolicyTables();
  Write("policies/broken.yaml", "kind: NetworkPolicy\n");
  EXPECT_FALSE(a->Reload().ok());
  EXPECT_EQ(*dp_.ListPolicyTables(), tables);
  fs::remove(dir_ / "policies/broken.yaml");
  EXPECT_TRUE(a->Reload().ok());
  EXPECT_EQ(*dp_.ListPolicyTables(), tables);
  // A workload change compiles everything.
  std::string inv = kInventory;
  inv.replace(inv.find("app: web"), 8, "app: web, tier: front");
  Write("inventory.yaml", inv);
  ASSERT_TRUE(a->Reload().ok());
  m = a->Metrics();
  EXPECT_NE(m.find("bulkhead_agent_last_apply_incremental 0\n"), std::string::npos) << m;
  EXPECT_EQ(Verdict(*a, "shop/web", "shop/api", 8080), "allow");
  EXPECT_EQ(Verdict(*a, "shop/api", "shop/db", 5432), "allow");
  // A restarted agent continues from the numbers state.json holds.
  a.reset();
  auto b = MakeAgent();
  ASSERT_TRUE(b->Start().ok());
  EXPECT_EQ(Verdict(*b, "shop/web", "shop/api", 8080), "allow");
  EXPECT_EQ(Verdict(*b, "shop/web", "shop/db", 5432), "deny");
}

TEST_F(AgentTest, AMapTooSmallForTheCompileIsAClearErrorAndTheLastGoodStays) {
  datapath::MapSizes small;
  small.policy_ports = 40;  // the first compile (26 entries) fits, a bigger one does not
  datapath::FakeDatapath tiny(small);
  auto a = std::make_unique<Agent>(options_, tiny,
                                   [this](const std::string& name) -> absl::StatusOr<uint32_t> {
                                     auto it = interfaces_.find(name);
                                     if (it == interfaces_.end())
                                       return absl::NotFoundError("no interface " + name);
                                     return it->second;
                                   });
  ASSERT_TRUE(a->Start().ok());
  ASSERT_TRUE(a->ready()) << a->last_error();
  const std::string rev = a->revision();
  auto tables = *tiny.ListPolicyTables();
  std::string big = kApiPolicy;
  for (int p = 1000; p < 1040; p += 2) big += "  - ports: [{port: " + std::to_string(p) + "}]\n";
  Write("policies/api.yaml", big);
  absl::Status st = a->Reload();
  ASSERT_EQ(st.code(), absl::StatusCode::kResourceExhausted) << st;
  for (const char* part : {"policy_ports", "entries in use", "more needed", "capacity 40",
                           "--map-size policy_ports="}) {
    EXPECT_NE(a->last_error().find(part), std::string::npos) << part << " in " << a->last_error();
  }
  EXPECT_EQ(a->revision(), rev);
  EXPECT_EQ(*tiny.ListPolicyTables(), tables) << "nothing of the new compile is left";
}

TEST_F(AgentTest, WorkloadsComeAndGo) {
  auto a = MakeAgent();
  ASSERT_TRUE(a->Start().ok());
  std::string inv = kInventory;
  inv.erase(inv.find("  - {name: db"));
  inv +=
      "  - {name: new, namespace: shop, labels: {app: new}, ips: [10.9.0.4], hostInterface: "
      "veth-new}\n";
  Write("inventory.yaml", inv);
  ASSERT_TRUE(a->Reload().ok());
  EXPECT_EQ(KernelEndpoints(), (std::set<uint32_t>{11, 12, 14}));
  EXPECT_EQ(Attached(), (std::set<uint32_t>{11, 12, 14}));
  EXPECT_EQ(Verdict(*a, "shop/new", "shop/api", 80), "deny");
  EXPECT_FALSE(a->Explain("shop/db", "shop/api", 80, "tcp").ok());  // gone from the cluster
}

TEST_F(AgentTest, MissingInterfaceIsRetriedAndReported) {
  interfaces_.erase("veth-db");
  auto a = MakeAgent();
  ASSERT_TRUE(a->Start().ok());
  EXPECT_TRUE(a->NeedsRetry());
  EXPECT_EQ(KernelEndpoints(), (std::set<uint32_t>{11, 12}));
  auto eps = a->EndpointsJson();
  auto db = std::find_if(eps.begin(), eps.end(),
                         [](const auto& e) { return e.value("workload", "") == "shop/db"; });
  ASSERT_NE(db, eps.end());
  EXPECT_NE(db->value("error", "").find("veth-db"), std::string::npos);
  // Still missing: no re-apply (it would bump the generation and re-check every flow).
  const uint32_t gen = a->StatusJson().value("generation", 0U);
  ASSERT_TRUE(a->Reload().ok());
  EXPECT_EQ(a->StatusJson().value("generation", 0U), gen);
  EXPECT_TRUE(a->NeedsRetry());
  interfaces_["veth-db"] = 13;
  ASSERT_TRUE(a->Reload().ok());
  EXPECT_FALSE(a->NeedsRetry());
  EXPECT_EQ(KernelEndpoints(), (std::set<uint32_t>{11, 12, 13}));
}

TEST_F(AgentTest, RestartAdoptsStateAndRemovesStaleEndpoints) {
  {
    auto a = MakeAgent();
    ASSERT_TRUE(a->Start().ok());
  }
  // Left behind by an earlier inventory: an endpoint the files no longer name.
  datapath::Endpoint stale;
  stale.ifindex = 77;
  stale.identity = 300;
  stale.addresses.push_back(datapath::EndpointAddress::V4({10, 9, 0, 77}));
  ASSERT_TRUE(dp_.UpsertEndpoint(stale).ok());
  ASSERT_TRUE(dp_.Attach(77).ok());
  auto old_tables = *dp_.ListPolicyTables();

  auto b = MakeAgent();
  ASSERT_TRUE(b->Start().ok());
  EXPECT_EQ(KernelEndpoints(), (std::set<uint32_t>{11, 12, 13}));
  EXPECT_EQ(Attached(), (std::set<uint32_t>{11, 12, 13}));
  auto eps_now = dp_.ListEndpoints();
  ASSERT_TRUE(eps_now.ok());
  for (const auto& e : eps_now.value()) EXPECT_EQ(e.policy_generation, 2u);
  auto tables = *dp_.ListPolicyTables();
  for (uint32_t t : tables) {
    EXPECT_EQ(std::count(old_tables.begin(), old_tables.end(), t), 0)
        << "new tables must not reuse live ids";
  }
  EXPECT_EQ(b->revision().rfind("1-", 0), 0u) << "same files: same revision counter";
  EXPECT_EQ(Verdict(*b, "shop/web", "shop/api", 80), "allow");
}

TEST_F(AgentTest, ApiRequests) {
  auto a = MakeAgent();
  ASSERT_TRUE(a->Start().ok());
  std::optional<ObserveFilter> obs;
  auto r = HandleRequest(*a, {{"method", "status"}}, &obs);
  EXPECT_TRUE(r.value("ok", false));
  EXPECT_TRUE(r["result"].value("ready", false));
  EXPECT_EQ(r["result"].value("revision", ""), a->revision());

  r = HandleRequest(*a, {{"method", "endpoints"}}, &obs);
  ASSERT_TRUE(r.value("ok", false));
  EXPECT_EQ(r["result"].size(), 3u);

  r = HandleRequest(
      *a, {{"method", "explain"}, {"from", "shop/web"}, {"to", "shop/api"}, {"port", 80}}, &obs);
  ASSERT_TRUE(r.value("ok", false)) << r.dump();
  EXPECT_EQ(r["result"].value("verdict", ""), "allow");

  r = HandleRequest(*a, {{"method", "explain"}, {"from", "shop/nope"}, {"to", "shop/api"}}, &obs);
  EXPECT_FALSE(r.value("ok", true));
  EXPECT_NE(r.value("error", "").find("shop/nope"), std::string::npos);

  r = HandleRequest(*a, {{"method", "frobnicate"}}, &obs);
  EXPECT_FALSE(r.value("ok", true));
  r = HandleRequest(*a, nlohmann::json::array(), &obs);
  EXPECT_FALSE(r.value("ok", true));
  EXPECT_FALSE(obs.has_value());

  r = HandleRequest(*a, {{"method", "observe"}, {"verdict", "maybe"}}, &obs);
  EXPECT_FALSE(r.value("ok", true));
  r = HandleRequest(*a, {{"method", "observe"}, {"verdict", "deny"}, {"port", 81}}, &obs);
  ASSERT_TRUE(r.value("ok", false));
  ASSERT_TRUE(obs.has_value());
  EXPECT_TRUE(obs->Matches({{"verdict", "deny"}, {"dst_port", 81}}));
  EXPECT_FALSE(obs->Matches({{"verdict", "allow"}, {"dst_port", 81}}));
  EXPECT_FALSE(obs->Matches({{"verdict", "deny"}, {"dst_port", 80}}));
  ObserveFilter wf;
  wf.workload = "shop/web";
  EXPECT_TRUE(wf.Matches({{"workload", "shop/api"}, {"peer", "shop/x,shop/web"}}));
  EXPECT_FALSE(wf.Matches({{"workload", "shop/api"}, {"peer", "shop/webx"}}));
}

TEST_F(AgentTest, EventsAreNamedByTheRuleTable) {
  auto a = MakeAgent();
  ASSERT_TRUE(a->Start().ok());
  auto ex = a->Explain("shop/web", "shop/api", 80, "tcp");
  ASSERT_TRUE(ex.ok());
  const auto& in = (*ex)["ingress"];
  bh_flow_event ev{};
  ev.ifindex = 12;
  ev.kind = BH_EV_NEW_FLOW;
  ev.verdict = BH_EV_ALLOW;
  ev.direction = BULKHEAD_DIR_INGRESS;
  ev.family = BULKHEAD_FAMILY_IPV4;
  ev.protocol = 6;
  ev.dst_port = 80;
  ev.src_port = 40000;
  ev.peer_identity = in.value("peer_identity", 0U);
  ev.policy_table_id = in.value("table", 0U);
  ev.rule_id = in.value("rule_id", 0U);
  const uint8_t src[4] = {10, 9, 0, 1}, dst[4] = {10, 9, 0, 2};
  std::copy(src, src + 4, ev.src_addr);
  std::copy(dst, dst + 4, ev.dst_addr);
  dp_.PushEvent(ev);
  std::vector<nlohmann::json> seen;
  ASSERT_TRUE(a->datapath()
                  .PollEvents(0, [&](const bh_flow_event& e) { seen.push_back(a->RecordEvent(e)); })
                  .ok());
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].value("workload", ""), "shop/api");
  EXPECT_EQ(seen[0].value("peer", ""), "shop/web");
  EXPECT_EQ(seen[0].value("verdict", ""), "allow");
  EXPECT_EQ(seen[0].value("src", ""), "10.9.0.1");
  EXPECT_EQ(seen[0].value("policy", ""), "NetworkPolicy shop/api-from-web");
  EXPECT_NE(seen[0].value("rule", ""), "");
  const std::string m = a->Metrics();
  EXPECT_NE(m.find("bulkhead_agent_flow_events_total{verdict=\"allow\"} 1"), std::string::npos)
      << m;
  EXPECT_NE(m.find("bulkhead_agent_resident_memory_bytes "), std::string::npos);
  EXPECT_NE(m.find("bulkhead_agent_ready 1"), std::string::npos);
}

}  // namespace
}  // namespace bulkhead::agent
