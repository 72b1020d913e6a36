// Endpoints registered at run time (CNI) against FakeDatapath: endpoint-add applied before it
// returns, refused conflicts, bad input naming the field, idempotent DEL, CHECK's view of the
// kernel, persistence across an agent restart, namespace labels and the node view.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <set>

#include "agent/agent.h"
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
  - {name: shop, labels: {team: shop}}
  workloads:
  - {name: api, namespace: shop, labels: {app: api}, ips: [10.9.0.2], hostInterface: veth-api}
)";

// api takes TCP 80 from app=web only; everything else in shop is default-deny.
constexpr const char* kPolicies = R"(apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: api-from-web, namespace: shop}
spec:
  podSelector: {matchLabels: {app: api}}
  ingress:
  - from: [{podSelector: {matchLabels: {app: web}}}]
    ports: [{port: 80}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: default-deny, namespace: shop}
spec:
  podSelector: {}
  policyTypes: [Ingress]
)";

class EndpointsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("bulkhead-endpoints-test-" + std::to_string(getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_ / "policies");
    Write("inventory.yaml", kInventory);
    Write("policies/shop.yaml", kPolicies);
    options_ = AgentOptions{(dir_ / "policies").string(), (dir_ / "inventory.yaml").string(),
                            (dir_ / "state").string(), "node-1"};
  }
  void TearDown() override { fs::remove_all(dir_); }

  void Write(const std::string& rel, const std::string& text) { std::ofstream(dir_ / rel) << text; }

  std::unique_ptr<Agent> MakeAgent() {
    auto a = std::make_unique<Agent>(options_, dp_,
                                     [this](const std::string& name) -> absl::StatusOr<uint32_t> {
                                       auto it = interfaces_.find(name);
                                       if (it == interfaces_.end())
                                         return absl::NotFoundError("no interface " + name);
                                       return it->second;
                                     });
    EXPECT_TRUE(a->Start().ok());
    return a;
  }

  static nlohmann::json Pod(const std::string& id, const std::string& name, const std::string& app,
                            const std::string& veth, std::vector<std::string> ips,
                            const std::string& ns = "shop") {
    return {{"id", id},
            {"namespace", ns},
            {"name", name},
            {"labels", {{"app", app}}},
            {"serviceAccount", "sa-" + app},
            {"netns", "/var/run/netns/" + name},
            {"interface", "eth0"},
            {"hostInterface", veth},
            {"ips", ips}};
  }

  nlohmann::json Call(Agent& a, nlohmann::json request) {
    std::optional<ObserveFilter> obs;
    return HandleRequest(a, request, &obs);
  }
  nlohmann::json Add(Agent& a, const nlohmann::json& endpoint) {
    return Call(a, {{"method", "endpoint-add"}, {"endpoint", endpoint}});
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
  std::string Verdict(Agent& a, const std::string& from, const std::string& to, int port) {
    auto r = a.Explain(from, to, static_cast<uint16_t>(port), "tcp");
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? r->value("verdict", "") : "";
  }

  fs::path dir_;
  AgentOptions options_;
  datapath::FakeDatapath dp_;
  std::map<std::string, uint32_t> interfaces_ = {
      {"veth-api", 12}, {"veth-c1", 21}, {"veth-c2", 22}, {"veth-c3", 23}};
};

TEST_F(EndpointsTest, AddIsEnforcedWhenItReturns) {
  auto a = MakeAgent();
  EXPECT_EQ(KernelEndpoints(), (std::set<uint32_t>{12}));
  const size_t ipcache_before = dp_.ipcache_size();
  auto r = Add(*a, Pod("c1/eth0", "web-1", "web", "veth-c1", {"10.9.1.1", "fd00::1:1"}));
  ASSERT_TRUE(r.value("ok", false)) << r.dump();
  EXPECT_TRUE(r["result"].value("enforced", false)) << r.dump();
  EXPECT_EQ(r["result"].value("workload", ""), "shop/web-1");
  EXPECT_EQ(KernelEndpoints(), (std::set<uint32_t>{12, 21}));
  EXPECT_EQ(Attached(), (std::set<uint32_t>{12, 21}));
  EXPECT_GT(dp_.ipcache_size(), ipcache_before);
  auto eps_now = dp_.ListEndpoints();
  ASSERT_TRUE(eps_now.ok());
  for (const auto& e : eps_now.value()) {
    if (e.ifindex == 21) {
      EXPECT_EQ(e.addresses.size(), 2u);  // both families, for anti-spoofing
    }
  }
  r = Add(*a, Pod("c2/eth0", "other-1", "other", "veth-c2", {"10.9.1.2"}));
  ASSERT_TRUE(r.value("ok", false)) << r.dump();
  // The policy holds for the new workloads, default deny included.
  EXPECT_EQ(Verdict(*a, "shop/web-1", "shop/api", 80), "allow");
  EXPECT_EQ(Verdict(*a, "fd00::1:1", "shop/api", 80), "allow");
  EXPECT_EQ(Verdict(*a, "shop/other-1", "shop/api", 80), "deny");
  EXPECT_EQ(Verdict(*a, "shop/api", "shop/web-1", 80), "deny");
  EXPECT_EQ(Verdict(*a, "shop/web-1", "shop/other-1", 80), "deny");

  auto eps = a->EndpointsJson();
  std::map<std::string, std::string> source;
  for (const auto& e : eps) source[e.value("workload", "")] = e.value("source", "");
  EXPECT_EQ(source,
            (std::map<std::string, std::string>{
                {"shop/api", "inventory"}, {"shop/web-1", "cni"}, {"shop/other-1", "cni"}}));
  EXPECT_EQ(a->StatusJson().value("registered_endpoints", 0), 2);
}

TEST_F(EndpointsTest, ReAddingTheSameEndpointIsANoOp) {
  auto a = MakeAgent();
  const auto pod = Pod("c1/eth0", "web-1", "web", "veth-c1", {"10.9.1.1"});
  ASSERT_TRUE(Add(*a, pod).value("ok", false));
  const auto gen = a->StatusJson().value("generation", 0U);
  const std::string rev = a->revision();
  // The same content, written differently (address spelling, default service account).
  auto again = pod;
  again["ips"] = {"10.9.1.1"};
  auto r = Add(*a, again);
  ASSERT_TRUE(r.value("ok", false)) << r.dump();
  EXPECT_TRUE(r["result"].value("enforced", false));
  EXPECT_EQ(a->StatusJson().value("generation", 0U), gen);
  EXPECT_EQ(a->revision(), rev);
}

TEST_F(EndpointsTest, ConflictsAreRefusedAndChangeNothing) {
  auto a = MakeAgent();
  ASSERT_TRUE(Add(*a, Pod("c1/eth0", "web-1", "web", "veth-c1", {"10.9.1.1"})).value("ok", false));
  const auto gen = a->StatusJson().value("generation", 0U);
  struct Case {
    const char* what;
    nlohmann::json endpoint;
    const char* code;
    const char* message;
  };
  const std::vector<Case> cases = {
      {"same id, other content", Pod("c1/eth0", "web-1", "web", "veth-c1", {"10.9.1.9"}),
       "already_exists", "already registered with other content"},
      {"same workload name", Pod("c2/eth0", "web-1", "web", "veth-c2", {"10.9.1.2"}),
       "already_exists", "workload shop/web-1 is registered endpoint c1/eth0"},
      {"inventory workload name", Pod("c2/eth0", "api", "web", "veth-c2", {"10.9.1.2"}),
       "already_exists", "workload shop/api is the inventory's workload shop/api"},
      {"address of a registration", Pod("c2/eth0", "web-2", "web", "veth-c2", {"10.9.1.1"}),
       "already_exists", "address 10.9.1.1 is used by registered endpoint c1/eth0"},
      {"address of the inventory", Pod("c2/eth0", "web-2", "web", "veth-c2", {"10.9.0.2"}),
       "already_exists", "address 10.9.0.2 is used by the inventory's workload shop/api"},
      {"host interface of a registration", Pod("c2/eth0", "web-2", "web", "veth-c1", {"10.9.1.2"}),
       "already_exists", "hostInterface veth-c1 is used by registered endpoint c1/eth0"},
      {"missing host interface", Pod("c2/eth0", "web-2", "web", "veth-gone", {"10.9.1.2"}),
       "failed_precondition", "cannot be enforced: no interface veth-gone"},
  };
  for (const Case& c : cases) {
    auto r = Add(*a, c.endpoint);
    EXPECT_FALSE(r.value("ok", true)) << c.what;
    EXPECT_EQ(r.value("code", ""), c.code) << c.what << ": " << r.dump();
    EXPECT_NE(r.value("error", "").find(c.message), std::string::npos)
        << c.what << ": " << r.dump();
  }
  EXPECT_EQ(a->registrations().size(), 1u);
  EXPECT_EQ(KernelEndpoints(), (std::set<uint32_t>{12, 21}));
  EXPECT_EQ(Attached(), (std::set<uint32_t>{12, 21}));
  // The refused missing-interface endpoint was applied and taken out again; the others never
  // reached the compiler.
  EXPECT_EQ(a->StatusJson().value("generation", 0U), gen + 2);
  std::ifstream in(dir_ / "state/endpoints.json");
  auto saved = nlohmann::json::parse(in);
  ASSERT_EQ(saved["endpoints"].size(), 1u);
  EXPECT_EQ(saved["endpoints"][0].value("id", ""), "c1/eth0");
}

TEST_F(EndpointsTest, BadInputNamesTheField) {
  auto a = MakeAgent();
  auto good = Pod("c1/eth0", "web-1", "web", "veth-c1", {"10.9.1.1"});
  struct Case {
    std::function<void(nlohmann::json&)> edit;
    const char* message;
  };
  const std::vector<Case> cases = {
      {[](auto& e) { e["ips"] = {"10.9.1.300"}; },
       "endpoint.ips[0]: \"10.9.1.300\" is not an IP address"},
      {[](auto& e) { e["ips"] = nlohmann::json::array(); }, "endpoint.ips: at least one address"},
      {[](auto& e) {
         e["ips"] = {"10.9.1.1", "10.9.1.1"};
       },
       "endpoint.ips[1]: 10.9.1.1 is listed twice"},
      {[](auto& e) { e["ips"] = "10.9.1.1"; }, "endpoint.ips: must be a list"},
      {[](auto& e) { e.erase("hostInterface"); }, "endpoint.hostInterface: missing"},
      {[](auto& e) { e["hostInterface"] = "a-very-long-interface"; },
       "endpoint.hostInterface: \"a-very-long-interface\" is not an interface name"},
      {[](auto& e) { e["namespace"] = "Shop"; }, "endpoint.namespace: \"Shop\" is not a valid"},
      {[](auto& e) { e["name"] = ""; }, "endpoint.name: \"\" is not a valid workload name"},
      {[](auto& e) {
         e["labels"] = {{"app", 3}};
       },
       "endpoint.labels.app: must be a string"},
      {[](auto& e) {
         e["labels"] = {{"-bad", "x"}};
       },
       "endpoint.labels: key \"-bad\""},
      {[](auto& e) {
         e["labels"] = {{"app", "no spaces"}};
       },
       "endpoint.labels.app: \"no spaces\""},
      {[](auto& e) { e["serviceAccount"] = "SA"; }, "endpoint.serviceAccount: \"SA\""},
      {[](auto& e) { e["netns"] = "rel/path"; }, "endpoint.netns: \"rel/path\" must be a name"},
      {[](auto& e) { e["id"] = "has space"; }, "endpoint.id: \"has space\" must be printable"},
      {[](auto& e) { e["colour"] = "red"; }, "endpoint.colour: unknown field"},
      {[](auto& e) { e = nlohmann::json::array(); }, "endpoint: must be an object"},
  };
  for (const Case& c : cases) {
    auto e = good;
    c.edit(e);
    auto r = Add(*a, e);
    EXPECT_FALSE(r.value("ok", true)) << e.dump();
    EXPECT_EQ(r.value("code", ""), "invalid_argument") << r.dump();
    EXPECT_NE(r.value("error", "").find(c.message), std::string::npos)
        << "want: " << c.message << "\ngot:  " << r.dump();
  }
  auto r = Call(*a, {{"method", "endpoint-add"}});
  EXPECT_EQ(r.value("error", ""), "endpoint: missing");
  r = Call(*a, {{"method", "endpoint-del"}});
  EXPECT_EQ(r.value("error", ""), "id: missing");
  r = Call(*a, {{"method", "endpoint-get"}, {"id", 7}});
  EXPECT_EQ(r.value("error", ""), "id: must be a non-empty string");
  EXPECT_TRUE(a->registrations().empty());
  EXPECT_EQ(KernelEndpoints(), (std::set<uint32_t>{12}));
}

TEST_F(EndpointsTest, DeleteRemovesKernelStateAndIsIdempotent) {
  auto a = MakeAgent();
  const size_t ipcache_before = dp_.ipcache_size();
  ASSERT_TRUE(Add(*a, Pod("c1/eth0", "web-1", "web", "veth-c1", {"10.9.1.1", "fd00::1"}))
                  .value("ok", false));
  ASSERT_EQ(KernelEndpoints(), (std::set<uint32_t>{12, 21}));
  auto r = Call(*a, {{"method", "endpoint-del"}, {"id", "c1/eth0"}});
  ASSERT_TRUE(r.value("ok", false)) << r.dump();
  EXPECT_TRUE(r["result"].value("removed", false));
  EXPECT_EQ(KernelEndpoints(), (std::set<uint32_t>{12}));
  EXPECT_EQ(Attached(), (std::set<uint32_t>{12}));
  EXPECT_EQ(dp_.ipcache_size(), ipcache_before);  // its /32 and /128 are gone
  EXPECT_TRUE(a->registrations().empty());
  EXPECT_FALSE(a->Explain("shop/web-1", "shop/api", 80, "tcp").ok());
  // Again, and an id never seen: fine (CNI DEL must be idempotent).
  r = Call(*a, {{"method", "endpoint-del"}, {"id", "c1/eth0"}});
  ASSERT_TRUE(r.value("ok", false)) << r.dump();
  EXPECT_FALSE(r["result"].value("removed", true));
  EXPECT_TRUE(Call(*a, {{"method", "endpoint-del"}, {"id", "never/eth0"}}).value("ok", false));
  r = Call(*a, {{"method", "endpoint-get"}, {"id", "c1/eth0"}});
  EXPECT_FALSE(r.value("ok", true));
  EXPECT_EQ(r.value("code", ""), "not_found");
}

TEST_F(EndpointsTest, DeleteAfterTheInterfaceIsGone) {
  auto a = MakeAgent();
  ASSERT_TRUE(Add(*a, Pod("c1/eth0", "web-1", "web", "veth-c1", {"10.9.1.1"})).value("ok", false));
  // The runtime removed the netns (and the veth with it) before DEL.
  interfaces_.erase("veth-c1");
  ASSERT_TRUE(Call(*a, {{"method", "endpoint-del"}, {"id", "c1/eth0"}}).value("ok", false));
  EXPECT_EQ(KernelEndpoints(), (std::set<uint32_t>{12}));
  EXPECT_EQ(Attached(), (std::set<uint32_t>{12}));
  EXPECT_FALSE(a->NeedsRetry());
}

TEST_F(EndpointsTest, GetReportsWhatTheKernelHolds) {
  auto a = MakeAgent();
  ASSERT_TRUE(Add(*a, Pod("c1/eth0", "web-1", "web", "veth-c1", {"10.9.1.1"})).value("ok", false));
  auto r = Call(*a, {{"method", "endpoint-get"}, {"id", "c1/eth0"}});
  ASSERT_TRUE(r.value("ok", false)) << r.dump();
  EXPECT_TRUE(r["result"].value("enforced", false)) << r.dump();
  EXPECT_EQ(r["result"]["endpoint"].value("hostInterface", ""), "veth-c1");
  EXPECT_EQ(r["result"].value("ifindex", 0), 21);
  // Someone removed our filters behind the agent's back.
  ASSERT_TRUE(dp_.Detach(21).ok());
  r = Call(*a, {{"method", "endpoint-get"}, {"id", "c1/eth0"}});
  EXPECT_FALSE(r["result"].value("enforced", true));
  EXPECT_EQ(r["result"].value("error", ""), "programs not attached");
  // The interface name now belongs to another interface.
  ASSERT_TRUE(dp_.Attach(21).ok());
  interfaces_["veth-c1"] = 99;
  r = Call(*a, {{"method", "endpoint-get"}, {"id", "c1/eth0"}});
  EXPECT_FALSE(r["result"].value("enforced", true));
  EXPECT_NE(r["result"].value("error", "").find("now ifindex 99"), std::string::npos) << r.dump();
}

TEST_F(EndpointsTest, RegistrationsSurviveAnAgentRestart) {
  std::string rev;
  {
    auto a = MakeAgent();
    ASSERT_TRUE(
        Add(*a, Pod("c1/eth0", "web-1", "web", "veth-c1", {"10.9.1.1"})).value("ok", false));
    ASSERT_TRUE(Add(*a, Pod("c2/eth0", "db-1", "db", "veth-c2", {"10.9.1.2"})).value("ok", false));
    ASSERT_TRUE(Call(*a, {{"method", "endpoint-del"}, {"id", "c2/eth0"}}).value("ok", false));
    rev = a->revision();
  }
  ASSERT_TRUE(fs::exists(dir_ / "state/endpoints.json"));
  EXPECT_FALSE(fs::exists(dir_ / "state/endpoints.json.tmp"));
  auto b = MakeAgent();
  ASSERT_EQ(b->registrations().size(), 1u);
  EXPECT_EQ(b->registrations().begin()->first, "c1/eth0");
  EXPECT_EQ(b->revision(), rev) << "same files and registrations: same revision";
  EXPECT_EQ(KernelEndpoints(), (std::set<uint32_t>{12, 21}));
  auto r = Call(*b, {{"method", "endpoint-get"}, {"id", "c1/eth0"}});
  EXPECT_TRUE(r["result"].value("enforced", false)) << r.dump();
  EXPECT_EQ(Verdict(*b, "shop/web-1", "shop/api", 80), "allow");
  // And it can be deleted by the new agent.
  ASSERT_TRUE(Call(*b, {{"method", "endpoint-del"}, {"id", "c1/eth0"}}).value("ok", false));
  EXPECT_EQ(KernelEndpoints(), (std::set<uint32_t>{12}));
  auto c = MakeAgent();
  EXPECT_TRUE(c->registrations().empty());
}

TEST_F(EndpointsTest, IdentityNumbersStayAcrossAddsAndRestarts) {
  auto identities = [&](Agent& a) {
    std::map<std::string, uint32_t> out;
    for (const auto& e : a.EndpointsJson()) out[e.value("workload", "")] = e.value("identity", 0U);
    return out;
  };
  std::map<std::string, uint32_t> before;
  {
    auto a = MakeAgent();
    ASSERT_TRUE(Add(*a, Pod("c1/eth0", "z-1", "zzz", "veth-c1", {"10.9.1.1"})).value("ok", false));
    const auto first = identities(*a);
    // A key that sorts before the others: a fresh numbering would shift theirs.
    ASSERT_TRUE(Add(*a, Pod("c2/eth0", "a-1", "aaa", "veth-c2", {"10.9.1.2"})).value("ok", false));
    before = identities(*a);
    EXPECT_EQ(before.at("shop/api"), first.at("shop/api"));
    EXPECT_EQ(before.at("shop/z-1"), first.at("shop/z-1"));
  }
  auto b = MakeAgent();
  EXPECT_EQ(identities(*b), before);
  auto kernel = dp_.ListEndpoints();
  ASSERT_TRUE(kernel.ok());
  std::map<uint32_t, uint32_t> by_ifindex;
  for (const auto& e : kernel.value()) by_ifindex[e.ifindex] = e.identity;
  EXPECT_EQ(by_ifindex.at(21), before.at("shop/z-1"));
  EXPECT_EQ(by_ifindex.at(22), before.at("shop/a-1"));
  // Unusable numbers in state.json: numbered afresh, still applied.
  b.reset();
  std::ifstream in(dir_ / "state/state.json");
  auto state = nlohmann::json::parse(in);
  in.close();
  for (auto& w : state["pins"]["workloads"]) w["id"] = 7;  // below the workload range
  Write("state/state.json", state.dump());
  auto c = MakeAgent();
  EXPECT_TRUE(c->ready());
  EXPECT_EQ(Verdict(*c, "shop/z-1", "shop/api", 80), "deny");
}

TEST_F(EndpointsTest, AnUnreadableEndpointsFileStopsTheStart) {
  fs::create_directories(dir_ / "state");
  Write("state/endpoints.json", R"({"endpoints": [{"id": "c1/eth0", "namespace": "shop"}]})");
  Agent a(options_, dp_, [](const std::string&) -> absl::StatusOr<uint32_t> { return 1; });
  absl::Status st = a.Start();
  EXPECT_FALSE(st.ok());
  EXPECT_NE(st.message().find("endpoints.json: endpoints[0].name: missing"), std::string::npos)
      << st;
}

TEST_F(EndpointsTest, NamespaceLabelsComeFromTheInventoryOrAreImplicit) {
  Write("policies/ns.yaml", R"(apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: api-from-namespaces, namespace: shop}
spec:
  podSelector: {matchLabels: {app: api}}
  ingress:
  - from: [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: batch}}}]
    ports: [{port: 9000}]
  - from: [{namespaceSelector: {matchLabels: {team: shop}}}]
    ports: [{port: 9001}]
)");
  auto a = MakeAgent();
  ASSERT_TRUE(
      Add(*a, Pod("c1/eth0", "job-1", "job", "veth-c1", {"10.9.1.1"}, "batch")).value("ok", false));
  ASSERT_TRUE(
      Add(*a, Pod("c2/eth0", "tool-1", "tool", "veth-c2", {"10.9.1.2"})).value("ok", false));
  EXPECT_EQ(Verdict(*a, "batch/job-1", "shop/api", 9000), "allow");  // implicit name label
  EXPECT_EQ(Verdict(*a, "batch/job-1", "shop/api", 9001), "deny");
  EXPECT_EQ(Verdict(*a, "shop/tool-1", "shop/api", 9001), "allow");  // the inventory's labels
  EXPECT_EQ(Verdict(*a, "shop/tool-1", "shop/api", 9000), "deny");
}

TEST_F(EndpointsTest, InventoryWorkloadsOnOtherNodesAreNotEndpointsHere) {
  Write("inventory.yaml", std::string(kInventory) +
                              "  - {name: remote, namespace: shop, labels: {app: web}, ips: "
                              "[10.9.0.7], hostInterface: veth-c3, node: node-2}\n"
                              "  - {name: local, namespace: shop, labels: {app: web}, ips: "
                              "[10.9.0.8], hostInterface: veth-c2, node: node-1}\n");
  auto a = MakeAgent();
  EXPECT_EQ(KernelEndpoints(), (std::set<uint32_t>{12, 22}));
  // The remote workload is still a peer: its address has its identity.
  EXPECT_EQ(Verdict(*a, "10.9.0.7", "shop/api", 80), "allow");
}

TEST_F(EndpointsTest, AddWhileTheFilesAreInvalidUsesTheLastGoodFiles) {
  auto a = MakeAgent();
  Write("policies/broken.yaml",
        "kind: NetworkPolicy\napiVersion: networking.k8s.io/v1\n"
        "metadata: {name: bad, namespace: shop}\nspec: {podSelector: 7}\n");
  EXPECT_FALSE(a->Reload().ok());
  auto r = Add(*a, Pod("c1/eth0", "web-1", "web", "veth-c1", {"10.9.1.1"}));
  ASSERT_TRUE(r.value("ok", false)) << r.dump();
  EXPECT_EQ(Verdict(*a, "shop/web-1", "shop/api", 80), "allow");
  EXPECT_NE(a->last_error().find("broken.yaml"), std::string::npos) << a->last_error();
  fs::remove(dir_ / "policies/broken.yaml");
  ASSERT_TRUE(a->Reload().ok());
  EXPECT_EQ(a->last_error(), "");
  EXPECT_EQ(KernelEndpoints(), (std::set<uint32_t>{12, 21}));
}

TEST_F(EndpointsTest, AnInventoryThatCollidesWithARegistrationIsNotApplied) {
  auto a = MakeAgent();
  ASSERT_TRUE(Add(*a, Pod("c1/eth0", "web-1", "web", "veth-c1", {"10.9.1.1"})).value("ok", false));
  const std::string rev = a->revision();
  Write("inventory.yaml", std::string(kInventory) +
                              "  - {name: squatter, namespace: shop, ips: [10.9.1.1], "
                              "hostInterface: veth-c3}\n");
  absl::Status st = a->Reload();
  EXPECT_FALSE(st.ok());
  EXPECT_NE(st.message().find("registered endpoint c1/eth0 (workload shop/web-1) collides"),
            std::string::npos)
      << st;
  EXPECT_EQ(a->revision(), rev);
  EXPECT_EQ(KernelEndpoints(), (std::set<uint32_t>{12, 21}));
}

TEST_F(EndpointsTest, NoRegistrationBeforeAValidPolicy) {
  Write("policies/broken.yaml",
        "kind: NetworkPolicy\napiVersion: networking.k8s.io/v1\n"
        "metadata: {name: bad, namespace: shop}\nspec: {podSelector: 7}\n");
  auto a = MakeAgent();
  auto r = Add(*a, Pod("c1/eth0", "web-1", "web", "veth-c1", {"10.9.1.1"}));
  EXPECT_FALSE(r.value("ok", true));
  EXPECT_EQ(r.value("code", ""), "unavailable") << r.dump();
  EXPECT_NE(r.value("error", "").find("no valid policy input"), std::string::npos);
  EXPECT_TRUE(a->registrations().empty());
}

// A WorkloadMode (what `bulkhead mode set --workload` stores) reaches inventory workloads and
// registered endpoints alike, before or after they appear.
TEST_F(EndpointsTest, WorkloadModesApplyToInventoryWorkloadsAndRegisteredEndpoints) {
  Write("policies/modes.yaml", R"(apiVersion: bulkhead.io/v1alpha1
kind: WorkloadMode
metadata: {name: web-1, namespace: shop}
spec: {mode: audit}
---
apiVersion: bulkhead.io/v1alpha1
kind: WorkloadMode
metadata: {name: api, namespace: shop}
spec: {mode: learn}
)");
  auto a = MakeAgent();
  ASSERT_TRUE(Add(*a, Pod("c1/eth0", "web-1", "web", "veth-c1", {"10.9.1.1"})).value("ok", false));
  auto modes_now = [&] {
    std::map<uint32_t, datapath::Mode> out;
    auto eps = dp_.ListEndpoints();
    EXPECT_TRUE(eps.ok());
    if (eps.ok()) {
      for (const auto& e : eps.value()) out[e.ifindex] = e.mode;
    }
    return out;
  };
  std::map<uint32_t, datapath::Mode> modes = modes_now();
  EXPECT_EQ(modes[21], datapath::Mode::kAudit);
  EXPECT_EQ(modes[12], datapath::Mode::kLearn);
  // Removing the override puts the workload back to its own (default: enforce) mode.
  Write("policies/modes.yaml", R"(apiVersion: bulkhead.io/v1alpha1
kind: WorkloadMode
metadata: {name: api, namespace: shop}
spec: {mode: learn}
)");
  ASSERT_TRUE(a->Reload().ok()) << a->last_error();
  modes = modes_now();
  EXPECT_EQ(modes[21], datapath::Mode::kEnforce);
  EXPECT_EQ(modes[12], datapath::Mode::kLearn);
}

}  // namespace
}  // namespace bulkhead::agent
