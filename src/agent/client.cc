// Client side of the agent API: one unix-socket connection, newline-delimited JSON.
#include "agent/client.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"

namespace bulkhead::agent {
namespace {

class Connection {
 public:
  ~Connection() {
    if (fd_ >= 0) close(fd_);
  }
  absl::Status Open(const std::string& path, int timeout_ms) {
    sockaddr_un addr{};
    if (path.size() >= sizeof(addr.sun_path)) {
      return absl::InvalidArgumentError(absl::StrCat("socket path too long: ", path));
    }
    fd_ = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd_ < 0) return absl::InternalError(absl::StrCat("socket: ", strerror(errno)));
    if (timeout_ms > 0) {
      timeval tv{timeout_ms / 1000, static_cast<suseconds_t>((timeout_ms % 1000) * 1000)};
      setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
      setsockopt(fd_, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    }
    addr.sun_family = AF_UNIX;
    std::copy(path.begin(), path.end(), addr.sun_path);
    if (connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
      return absl::UnavailableError(
          absl::StrCat("cannot reach the agent at ", path, ": ", strerror(errno)));
    }
    return absl::OkStatus();
  }
  absl::Status Send(const std::string& line) {
    size_t off = 0;
    while (off < line.size()) {
      ssize_t n = send(fd_, line.data() + off, line.size() - off, MSG_NOSIGNAL);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return absl::UnavailableError(absl::StrCat("send: ", strerror(errno)));
      off += static_cast<size_t>(n);
    }
    return absl::OkStatus();
  }
  // The next line, without its newline; NotFound at end of stream.
  absl::StatusOr<std::string> ReadLine() {
    for (;;) {
      size_t nl = buf_.find('\n');
      if (nl != std::string::npos) {
        std::string line = buf_.substr(0, nl);
        buf_.erase(0, nl + 1);
        return line;
      }
      char tmp[4096];
      ssize_t n = recv(fd_, tmp, sizeof(tmp), 0);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        return absl::DeadlineExceededError("the agent did not answer in time");
      }
      if (n < 0) return absl::UnavailableError(absl::StrCat("recv: ", strerror(errno)));
      if (n == 0) return absl::NotFoundError("the agent closed the connection");
      buf_.append(tmp, static_cast<size_t>(n));
    }
  }

 private:
  int fd_ = -1;
  std::string buf_;
};

absl::StatusOr<nlohmann::json> ParseResponse(const std::string& line) {
  nlohmann::json resp = nlohmann::json::parse(line, nullptr, false);
  if (resp.is_discarded() || !resp.is_object()) {
    return absl::DataLossError("the agent sent a response that is not JSON");
  }
  if (!resp.value("ok", false)) {
    const nlohmann::json& code = resp.contains("code") ? resp["code"] : nlohmann::json();
    return absl::Status(ErrorCodeFromName(code.is_string() ? code.get<std::string>() : ""),
                        resp.value("error", std::string("unknown error")));
  }
  return resp.contains("result") ? resp["result"] : nlohmann::json();
}

constexpr absl::StatusCode kNamedCodes[] = {
    absl::StatusCode::kInvalidArgument,  absl::StatusCode::kNotFound,
    absl::StatusCode::kAlreadyExists,    absl::StatusCode::kFailedPrecondition,
    absl::StatusCode::kUnavailable,      absl::StatusCode::kInternal,
    absl::StatusCode::kDeadlineExceeded, absl::StatusCode::kResourceExhausted,
    absl::StatusCode::kPermissionDenied, absl::StatusCode::kAborted,
    absl::StatusCode::kOutOfRange,       absl::StatusCode::kUnimplemented,
    absl::StatusCode::kDataLoss,         absl::StatusCode::kUnknown,
};

}  // namespace

std::string ErrorCodeName(absl::StatusCode code) {
  return absl::AsciiStrToLower(absl::StatusCodeToString(code));
}

absl::StatusCode ErrorCodeFromName(std::string_view name) {
  for (absl::StatusCode c : kNamedCodes) {
    if (ErrorCodeName(c) == name) return c;
  }
  return absl::StatusCode::kFailedPrecondition;
}

absl::StatusOr<nlohmann::json> CallAgent(const std::string& socket_path,
                                         const nlohmann::json& request, int timeout_ms) {
  Connection c;
  if (absl::Status st = c.Open(socket_path, timeout_ms); !st.ok()) return st;
  if (absl::Status st = c.Send(request.dump() + "\n"); !st.ok()) return st;
  auto line = c.ReadLine();
  if (!line.ok()) {
    // The agent went away before it answered (it may or may not have acted).
    if (absl::IsNotFound(line.status())) {
      return absl::UnavailableError("the agent closed the connection before it answered");
    }
    return line.status();
  }
  return ParseResponse(*line);
}

absl::Status StreamAgent(const std::string& socket_path, const nlohmann::json& request,
                         const std::function<bool(const nlohmann::json&)>& on_event) {
  Connection c;
  if (absl::Status st = c.Open(socket_path, /*timeout_ms=*/0); !st.ok()) return st;
  if (absl::Status st = c.Send(request.dump() + "\n"); !st.ok()) return st;
  auto first = c.ReadLine();
  if (!first.ok()) return first.status();
  if (auto r = ParseResponse(*first); !r.ok()) return r.status();
  for (;;) {
    auto line = c.ReadLine();
    if (!line.ok()) return absl::IsNotFound(line.status()) ? absl::OkStatus() : line.status();
    nlohmann::json j = nlohmann::json::parse(*line, nullptr, false);
    if (j.is_discarded() || !j.contains("event")) continue;
    if (!on_event(j["event"])) return absl::OkStatus();
  }
}

}  // namespace bulkhead::agent
