// ApiClient over cpp-httplib's SSLClient (OpenSSL), verifying the server against the CA.
#include "server/api_client.h"

#include <httplib.h>

#include <csignal>
#include <filesystem>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace bulkhead::server {

struct ApiClient::Impl {
  ClientOptions options;
  std::string host;
  int port = 0;
  std::unique_ptr<httplib::SSLClient> http;

  absl::StatusOr<ApiResponse> Finish(const httplib::Result& r, const std::string& what) {
    if (!r) {
      std::string why = httplib::to_string(r.error());
      if (r.error() == httplib::Error::SSLServerVerification) {
        why +=
            " (is --ca the server's cluster CA, and the address one of its certificate's names?)";
      }
      return absl::UnavailableError(
          absl::StrCat("cannot reach ", options.server, " (", what, "): ", why));
    }
    ApiResponse resp;
    resp.status = r->status;
    if (!r->body.empty()) {
      try {
        resp.body = nlohmann::json::parse(r->body);
      } catch (const nlohmann::json::exception&) {
        return absl::DataLossError(absl::StrCat(options.server, " answered ", what,
                                                " with something that is not JSON (HTTP ",
                                                r->status, ")"));
      }
    }
    return resp;
  }

  httplib::Headers Headers() const { return {{"Authorization", "Bearer " + options.token}}; }
};

std::string ApiResponse::ErrorMessage() const {
  if (body.is_object() && body.contains("error") && body["error"].is_object()) {
    return body["error"].value("message", "");
  }
  return status >= 400 ? absl::StrCat("HTTP ", status) : "";
}

ApiClient::ApiClient(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
ApiClient::~ApiClient() = default;

absl::StatusOr<std::unique_ptr<ApiClient>> ApiClient::Create(const ClientOptions& options) {
  constexpr std::string_view kScheme = "https://";
  std::string_view rest = options.server;
  if (rest.substr(0, kScheme.size()) != kScheme) {
    return absl::InvalidArgumentError("--server '" + options.server +
                                      "' must be https://HOST:PORT (set it or BULKHEAD_SERVER)");
  }
  rest.remove_prefix(kScheme.size());
  while (!rest.empty() && rest.back() == '/') rest.remove_suffix(1);
  size_t colon = rest.rfind(':');
  int port = 0;
  std::string host(colon == std::string_view::npos ? rest : rest.substr(0, colon));
  if (colon == std::string_view::npos ||
      !absl::SimpleAtoi(std::string(rest.substr(colon + 1)), &port) || port <= 0 || port > 65535 ||
      host.empty() || rest.find('/') != std::string_view::npos) {
    return absl::InvalidArgumentError("--server '" + options.server +
                                      "' must be https://HOST:PORT");
  }
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']')
    host = host.substr(1, host.size() - 2);
  if (options.ca_file.empty()) {
    return absl::InvalidArgumentError(
        "--ca is required: the cluster CA's certificate (ca.crt in the server's data dir; or "
        "BULKHEAD_CA)");
  }
  std::error_code ec;
  if (!std::filesystem::is_regular_file(options.ca_file, ec)) {
    return absl::InvalidArgumentError("--ca '" + options.ca_file + "': no such file");
  }
  // OpenSSL writes to the socket with write(2): a server that dies mid-request would kill
  // this process with SIGPIPE instead of giving the caller an error.
  std::signal(SIGPIPE, SIG_IGN);
  auto impl = std::make_unique<Impl>();
  impl->options = options;
  impl->host = host;
  impl->port = port;
  impl->http = std::make_unique<httplib::SSLClient>(host, port);
  impl->http->set_ca_cert_path(options.ca_file);
  impl->http->enable_server_certificate_verification(true);
  impl->http->set_connection_timeout(10, 0);
  impl->http->set_read_timeout(options.timeout_seconds, 0);
  impl->http->set_write_timeout(options.timeout_seconds, 0);
  return std::unique_ptr<ApiClient>(new ApiClient(std::move(impl)));
}

absl::StatusOr<ApiResponse> ApiClient::Get(const std::string& path) {
  return impl_->Finish(impl_->http->Get(path, impl_->Headers()), "GET " + path);
}

absl::StatusOr<ApiResponse> ApiClient::Post(const std::string& path, const nlohmann::json& body) {
  return impl_->Finish(impl_->http->Post(path, impl_->Headers(), body.dump(), "application/json"),
                       "POST " + path);
}

absl::StatusOr<ApiResponse> ApiClient::Delete(const std::string& path) {
  return impl_->Finish(impl_->http->Delete(path, impl_->Headers()), "DELETE " + path);
}

std::string UrlEncode(std::string_view s) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back('%');
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 15]);
    }
  }
  return out;
}

}  // namespace bulkhead::server
