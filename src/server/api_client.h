// The REST API's client side, for the CLI: HTTPS to the server with an API token, the
// cluster CA as the only trust anchor, JSON in and out. Small on purpose: the CLI links this,
// not the server.
#pragma once

#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "absl/status/statusor.h"

namespace bulkhead::server {

struct ClientOptions {
  std::string server;   // https://HOST:PORT
  std::string token;    // API token (bh_...)
  std::string ca_file;  // PEM of the cluster CA (ca.crt of the server's data dir)
  int timeout_seconds = 60;
};

// NOLINTNEXTLINE(bugprone-exception-escape): json's default constructor allocates nothing
struct ApiResponse {
  int status = 0;
  nlohmann::json body;
  // The server's error message ("" on success).
  std::string ErrorMessage() const;
};

class ApiClient {
 public:
  // InvalidArgument when the URL is not https://HOST:PORT or the CA file is unreadable.
  // Sets SIGPIPE to ignored for the process (a server gone mid-request is an error to
  // report, not a reason to die).
  static absl::StatusOr<std::unique_ptr<ApiClient>> Create(const ClientOptions& options);
  ~ApiClient();

  // Unavailable when the server cannot be reached (the message names it and why).
  absl::StatusOr<ApiResponse> Get(const std::string& path_and_query);
  absl::StatusOr<ApiResponse> Post(const std::string& path, const nlohmann::json& body);
  absl::StatusOr<ApiResponse> Delete(const std::string& path);

  struct Impl;

 private:
  explicit ApiClient(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// "a b/c" -> "a%20b%2Fc", for query values and path segments.
std::string UrlEncode(std::string_view s);

}  // namespace bulkhead::server
