// The REST API end to end: a real server (init, TLS, SQLite) and the real client, through
// authentication, roles, policy changes, history, rollback, audit and tokens.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>

#include "server/api_client.h"
#include "server/server.h"

namespace bulkhead::server {
namespace {

using nlohmann::json;

constexpr const char* kNp = R"(apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web, namespace: shop}
spec:
  podSelector: {matchLabels: {app: web}}
  ingress:
  - ports: [{port: 80}]
)";

class RestTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::path(::testing::TempDir()) /
           ("bulkhead_rest_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    auto init = InitServer({dir_.string(), "", {}});
    ASSERT_TRUE(init.ok()) << init.status();
    admin_token_ = init->admin_token;
    ServerOptions o;
    o.data_dir = dir_.string();
    o.listen = "127.0.0.1:0";
    o.grpc_listen = "127.0.0.1:0";
    auto s = Server::Start(o);
    ASSERT_TRUE(s.ok()) << s.status();
    server_ = *std::move(s);
    admin_ = Client(admin_token_);
  }
  void TearDown() override {
    server_.reset();
    std::filesystem::remove_all(dir_);
  }

  std::unique_ptr<ApiClient> Client(const std::string& token) {
    auto c = ApiClient::Create({"https://127.0.0.1:" + std::to_string(server_->rest_port()), token,
                                (dir_ / "ca.crt").string(), 30});
    EXPECT_TRUE(c.ok()) << c.status();
    return c.ok() ? *std::move(c) : nullptr;
  }

  ApiResponse Call(ApiClient& c, const std::string& method, const std::string& path,
                   const json& body = json::object()) {
    absl::StatusOr<ApiResponse> r = method == "GET"    ? c.Get(path)
                                    : method == "POST" ? c.Post(path, body)
                                                       : c.Delete(path);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? *r : ApiResponse{};
  }

  std::string Token(const std::string& name, const std::string& role) {
    ApiResponse r = Call(*admin_, "POST", "/api/v1/tokens", {{"name", name}, {"role", role}});
    EXPECT_EQ(r.status, 201) << r.body.dump();
    return r.body.value("token", "");
  }

  static json Files(const std::string& content) {
    return json::array({{{"name", "np.yaml"}, {"content", content}}});
  }

  std::filesystem::path dir_;
  std::string admin_token_;
  std::unique_ptr<Server> server_;
  std::unique_ptr<ApiClient> admin_;
};

TEST_F(RestTest, ApplyDiffHistoryRollback) {
  ApiResponse dry =
      Call(*admin_, "POST", "/api/v1/apply", {{"files", Files(kNp)}, {"dryRun", true}});
  ASSERT_EQ(dry.status, 200) << dry.body.dump();
  EXPECT_FALSE(dry.body["committed"].get<bool>());
  EXPECT_NE(dry.body["diff"].get<std::string>().find("+++ NetworkPolicy shop/web"),
            std::string::npos);

  ApiResponse applied =
      Call(*admin_, "POST", "/api/v1/apply", {{"files", Files(kNp)}, {"message", "m1"}});
  ASSERT_EQ(applied.status, 200);
  EXPECT_EQ(applied.body["revision"], 1);
  ApiResponse same = Call(*admin_, "POST", "/api/v1/diff", {{"files", Files(kNp)}});
  ASSERT_EQ(same.status, 200);
  EXPECT_TRUE(same.body["changes"].empty());

  std::string np81 = kNp;
  np81.replace(np81.find("80"), 2, "81");
  ASSERT_EQ(Call(*admin_, "POST", "/api/v1/apply", {{"files", Files(np81)}}).status, 200);
  ApiResponse history = Call(*admin_, "GET", "/api/v1/revisions");
  ASSERT_EQ(history.status, 200);
  ASSERT_EQ(history.body["revisions"].size(), 2u);
  EXPECT_EQ(history.body["revisions"][0]["revision"], 2);
  ApiResponse rev2 = Call(*admin_, "GET", "/api/v1/revisions/2");
  EXPECT_NE(rev2.body["diff"].get<std::string>().find("+        - port: 81"), std::string::npos)
      << rev2.body["diff"];

  ApiResponse rb = Call(*admin_, "POST", "/api/v1/rollback", {{"revision", 1}});
  ASSERT_EQ(rb.status, 200);
  EXPECT_EQ(rb.body["revision"], 3);
  ApiResponse objects = Call(*admin_, "GET", "/api/v1/objects?kind=np&namespace=shop");
  ASSERT_EQ(objects.body["objects"].size(), 1u);
  EXPECT_EQ(objects.body["objects"][0]["object"]["spec"]["ingress"][0]["ports"][0]["port"], 80);
  ApiResponse at2 = Call(*admin_, "GET", "/api/v1/objects?revision=2");
  EXPECT_EQ(at2.body["objects"][0]["object"]["spec"]["ingress"][0]["ports"][0]["port"], 81);
  EXPECT_EQ(Call(*admin_, "GET", "/api/v1/revisions/9").status, 404);

  ApiResponse del =
      Call(*admin_, "POST", "/api/v1/delete",
           {{"objects", json::array({{{"kind", "np"}, {"namespace", "shop"}, {"name", "web"}}})}});
  ASSERT_EQ(del.status, 200) << del.body.dump();
  EXPECT_EQ(del.body["revision"], 4);
}

TEST_F(RestTest, InvalidInputIs422Or400AndChangesNothing) {
  std::string bad = kNp;
  bad.replace(bad.find("80"), 2, "99999");
  ApiResponse r = Call(*admin_, "POST", "/api/v1/apply", {{"files", Files(bad)}});
  EXPECT_EQ(r.status, 422);
  EXPECT_EQ(r.body["error"]["code"], "invalid");
  ASSERT_FALSE(r.body["error"]["diagnostics"].empty());
  EXPECT_EQ(r.body["error"]["diagnostics"][0]["file"], "np.yaml");
  EXPECT_NE(r.body["error"]["diagnostics"][0]["field"].get<std::string>().find("port"),
            std::string::npos);
  EXPECT_EQ(Call(*admin_, "GET", "/api/v1/revisions").body["revisions"].size(), 0u);

  EXPECT_EQ(Call(*admin_, "POST", "/api/v1/apply", {{"files", "nope"}}).status, 400);
  EXPECT_EQ(Call(*admin_, "POST", "/api/v1/rollback", json::object()).status, 400);
  ApiResponse kind = Call(*admin_, "POST", "/api/v1/delete",
                          {{"objects", json::array({{{"kind", "Pod"}, {"name", "x"}}})}});
  EXPECT_EQ(kind.status, 400);
  EXPECT_NE(kind.body["error"]["message"].get<std::string>().find("objects[0].kind"),
            std::string::npos);
  EXPECT_EQ(Call(*admin_, "GET", "/api/v1/nothing").status, 404);
}

TEST_F(RestTest, RolesAreEnforcedAndRefusalsAudited) {
  std::string viewer = Token("viewer-1", "viewer");
  std::string editor = Token("editor-1", "editor");
  std::string auditor = Token("auditor-1", "auditor");
  auto v = Client(viewer);
  auto e = Client(editor);
  auto a = Client(auditor);
  EXPECT_EQ(Call(*v, "POST", "/api/v1/apply", {{"files", Files(kNp)}}).status, 403);
  EXPECT_EQ(Call(*v, "GET", "/api/v1/objects").status, 200);
  EXPECT_EQ(Call(*v, "GET", "/api/v1/audit").status, 403);
  EXPECT_EQ(Call(*e, "POST", "/api/v1/apply", {{"files", Files(kNp)}}).status, 200);
  EXPECT_EQ(Call(*e, "POST", "/api/v1/tokens", {{"name", "x"}, {"role", "admin"}}).status, 403);
  EXPECT_EQ(Call(*a, "POST", "/api/v1/rollback", {{"revision", 0}}).status, 403);
  auto nobody = Client(
      "bh_0000000000000000.0000000000000000000000000000000000000000000000000000000000000000");
  EXPECT_EQ(Call(*nobody, "GET", "/api/v1/objects").status, 401);

  ApiResponse log = Call(*a, "GET", "/api/v1/audit");
  ASSERT_EQ(log.status, 200);
  int denied = 0, unauthenticated = 0, applied = 0;
  for (const json& entry : log.body["entries"]) {
    std::string outcome = entry["outcome"];
    denied += outcome == "denied";
    unauthenticated += outcome == "unauthenticated";
    if (entry["action"] == "apply" && outcome == "ok") {
      ++applied;
      EXPECT_EQ(entry["actor"], "editor-1");
      EXPECT_EQ(entry["origin"], "127.0.0.1");
      EXPECT_EQ(entry["revision"], 1);
      EXPECT_NE(entry["detail"].get<std::string>().find("NetworkPolicy shop/web"),
                std::string::npos);
    }
  }
  EXPECT_EQ(denied, 4);
  EXPECT_EQ(unauthenticated, 1);
  EXPECT_EQ(applied, 1);
  ApiResponse only = Call(*a, "GET", "/api/v1/audit?actor=viewer-1");
  EXPECT_EQ(only.body["entries"].size(), 2u);
}

TEST_F(RestTest, TokensRevokeAndJoinTokens) {
  std::string t = Token("short", "viewer");
  auto c = Client(t);
  EXPECT_EQ(Call(*c, "GET", "/api/v1/status").status, 200);
  EXPECT_EQ(Call(*admin_, "DELETE", "/api/v1/tokens/short").status, 200);
  EXPECT_EQ(Call(*c, "GET", "/api/v1/status").status, 401);
  EXPECT_EQ(Call(*admin_, "DELETE", "/api/v1/tokens/short").status, 404);
  ApiResponse j = Call(*admin_, "POST", "/api/v1/join-tokens", {{"ttl", "1h"}});
  ASSERT_EQ(j.status, 201);
  EXPECT_EQ(j.body["token"].get<std::string>().rfind("bhj_", 0), 0u);
  EXPECT_EQ(Call(*admin_, "POST", "/api/v1/join-tokens", {{"ttl", "soon"}}).status, 400);
  EXPECT_EQ(Call(*admin_, "POST", "/api/v1/tokens", {{"name", "r"}, {"role", "root"}}).status, 400);
}

TEST_F(RestTest, ClientRefusesWrongCaAndBadUrl) {
  EXPECT_FALSE(ApiClient::Create({"http://127.0.0.1:1", "t", (dir_ / "ca.crt").string(), 5}).ok());
  EXPECT_FALSE(ApiClient::Create({"https://127.0.0.1", "t", (dir_ / "ca.crt").string(), 5}).ok());
  EXPECT_FALSE(ApiClient::Create({"https://127.0.0.1:1", "t", "/nonexistent", 5}).ok());
  // A CA that did not sign the server's certificate: the connection is refused.
  auto other = InitServer({(dir_ / "other").string(), "", {}});
  ASSERT_TRUE(other.ok());
  auto c = ApiClient::Create({"https://127.0.0.1:" + std::to_string(server_->rest_port()),
                              admin_token_, (dir_ / "other" / "ca.crt").string(), 5});
  ASSERT_TRUE(c.ok());
  auto r = (*c)->Get("/api/v1/status");
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable);
  // A second init of the same data dir is refused.
  EXPECT_EQ(InitServer({dir_.string(), "", {}}).status().code(), absl::StatusCode::kAlreadyExists);
}

}  // namespace
}  // namespace bulkhead::server

namespace bulkhead::server {
namespace {

// A server stopped right after it started (before its REST listener loop may have begun)
// stops: httplib ignores stop() until that loop runs, which once hung a test forever.
TEST_F(RestTest, AServerStoppedRightAfterStartStops) {
  server_.reset();
  ServerOptions o;
  o.data_dir = dir_.string();
  o.listen = "127.0.0.1:0";
  o.grpc_listen = "";
  for (int i = 0; i < 20; ++i) {
    auto s = Server::Start(o);
    ASSERT_TRUE(s.ok()) << s.status();
    s->reset();  // must return
  }
}

}  // namespace
}  // namespace bulkhead::server
