// api/openapi.yaml and the server agree: every documented route answers (not "no route"),
// and every route rest.cc registers is documented.
#include <gtest/gtest.h>
#include <unistd.h>
#include <yaml-cpp/yaml.h>

#include <filesystem>
#include <fstream>
#include <regex>
#include <set>

#include "server/api_client.h"
#include "server/server.h"

namespace bulkhead::server {
namespace {

const std::string kSource = BULKHEAD_SOURCE_DIR;

std::set<std::string> DocumentedRoutes() {
  YAML::Node doc = YAML::LoadFile(kSource + "/api/openapi.yaml");
  std::set<std::string> routes;
  for (const auto& path : doc["paths"]) {
    for (const auto& method : path.second) {
      std::string m = method.first.as<std::string>();
      for (char& c : m) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
      routes.insert(m + " " + path.first.as<std::string>());
    }
  }
  return routes;
}

// "http->Get(R"(/api/v1/revisions/(\d+))"" -> "GET /api/v1/revisions/{}".
std::set<std::string> RegisteredRoutes() {
  std::set<std::string> routes;
  for (const char* file : {"/src/server/rest.cc"}) {
    std::ifstream in(kSource + file);
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    // http->Get("/api/v1/status", ...) and http->Get(R"(/api/v1/revisions/(\d+))", ...).
    std::regex plain(R"re(http->(Get|Post|Delete|Put|Patch)\(\s*"(/api/[^"]*)")re");
    std::regex raw(R"re(http->(Get|Post|Delete|Put|Patch)\(\s*R"\((/api/.*?)\)")re");
    for (const std::regex& route : {plain, raw}) {
      for (std::sregex_iterator it(text.begin(), text.end(), route), end; it != end; ++it) {
        std::string method = (*it)[1];
        for (char& c : method) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
        std::string path = std::regex_replace((*it)[2].str(), std::regex(R"(\([^)]*\))"), "{}");
        routes.insert(method + " " + path);
      }
    }
  }
  return routes;
}

std::string Normalize(const std::string& route) {
  return std::regex_replace(route, std::regex(R"(\{[^}]*\})"), "{}");
}

TEST(OpenApiTest, EveryRegisteredRouteIsDocumented) {
  std::set<std::string> documented;
  for (const std::string& r : DocumentedRoutes()) documented.insert(Normalize(r));
  std::set<std::string> registered = RegisteredRoutes();
  ASSERT_GE(registered.size(), 10u) << "the route scan found too little; did rest.cc change shape?";
  for (const std::string& r : registered)
    EXPECT_TRUE(documented.count(r)) << r << " is not in api/openapi.yaml";
}

TEST(OpenApiTest, EveryDocumentedRouteAnswers) {
  auto dir = std::filesystem::path(::testing::TempDir()) /
             ("bulkhead_openapi_" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  auto init = InitServer({dir.string(), "", {}});
  ASSERT_TRUE(init.ok()) << init.status();
  ServerOptions o;
  o.data_dir = dir.string();
  o.listen = "127.0.0.1:0";
  o.grpc_listen = "127.0.0.1:0";
  auto server = Server::Start(o);
  ASSERT_TRUE(server.ok()) << server.status();
  auto client = ApiClient::Create({"https://127.0.0.1:" + std::to_string((*server)->rest_port()),
                                   init->admin_token, (dir / "ca.crt").string(), 30});
  ASSERT_TRUE(client.ok());
  for (const std::string& route : DocumentedRoutes()) {
    std::string method = route.substr(0, route.find(' '));
    std::string path =
        std::regex_replace(route.substr(route.find(' ') + 1), std::regex(R"(\{[^}]*\})"), "1");
    absl::StatusOr<ApiResponse> r = method == "GET" ? (*client)->Get(path)
                                    : method == "DELETE"
                                        ? (*client)->Delete(path)
                                        : (*client)->Post(path, nlohmann::json::object());
    ASSERT_TRUE(r.ok()) << route << ": " << r.status();
    EXPECT_EQ(r->ErrorMessage().rfind("no route", 0), std::string::npos) << route;
  }
  server->reset();
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace bulkhead::server
