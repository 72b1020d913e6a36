// Agent API: request dispatch and observe filters (transport in run.cc).
#include "absl/strings/ascii.h"
#include "agent/api.h"
#include "agent/client.h"

namespace bulkhead::agent {

bool ObserveFilter::Matches(const nlohmann::json& event) const {
  if (!verdict.empty() && event.value("verdict", "") != verdict) return false;
  if (port != 0 && event.value("dst_port", 0) != port) return false;
  if (!workload.empty()) {
    if (event.value("workload", "") == workload) return true;
    // The peer may be a list of workloads sharing an identity.
    const std::string peer = event.value("peer", "");
    size_t pos = 0;
    while (pos <= peer.size()) {
      size_t comma = peer.find(',', pos);
      if (comma == std::string::npos) comma = peer.size();
      if (peer.compare(pos, comma - pos, workload) == 0) return true;
      pos = comma + 1;
    }
    return false;
  }
  return true;
}

nlohmann::json HandleRequest(Agent& agent, const nlohmann::json& request,
                             std::optional<ObserveFilter>* observe) {
  auto error = [](const std::string& message) {
    return nlohmann::json{{"ok", false}, {"error", message}};
  };
  // An error with its kind, so that a client (bulkhead-cni) can tell "try again later" from
  // "refused".
  auto failed = [](const absl::Status& st) {
    return nlohmann::json{
        {"ok", false}, {"error", std::string(st.message())}, {"code", ErrorCodeName(st.code())}};
  };
  // The "id" of endpoint-del and endpoint-get.
  auto id_of = [](const nlohmann::json& req, std::string* id) -> absl::Status {
    if (!req.contains("id")) return absl::InvalidArgumentError("id: missing");
    if (!req["id"].is_string() || req["id"].get<std::string>().empty()) {
      return absl::InvalidArgumentError("id: must be a non-empty string");
    }
    *id = req["id"].get<std::string>();
    return absl::OkStatus();
  };
  auto ok = [](nlohmann::json result) {
    return nlohmann::json{{"ok", true}, {"result", std::move(result)}};
  };
  if (!request.is_object() || !request.contains("method") || !request["method"].is_string()) {
    return error("request must be an object with a string \"method\"");
  }
  const std::string method = request["method"];
  try {
    if (method == "status") return ok(agent.StatusJson());
    if (method == "endpoints") return ok(agent.EndpointsJson());
    if (method == "reload") {
      absl::Status st = agent.Reload(/*force=*/true);
      if (!st.ok()) return error(std::string(st.message()));
      return ok(agent.StatusJson());
    }
    if (method == "explain") {
      const std::string from = request.value("from", "");
      const std::string to = request.value("to", "");
      const int port = request.value("port", 0);
      if (from.empty() || to.empty()) return error("explain needs \"from\" and \"to\"");
      if (port < 0 || port > 65535) return error("explain: \"port\" must be 0..65535");
      auto r = agent.Explain(from, to, static_cast<uint16_t>(port),
                             absl::AsciiStrToLower(request.value("protocol", "tcp")));
      if (!r.ok()) return error(std::string(r.status().message()));
      return ok(*r);
    }
    if (method == "endpoint-add") {
      if (!request.contains("endpoint")) {
        return failed(absl::InvalidArgumentError("endpoint: missing"));
      }
      auto r = ParseRegistration(request["endpoint"], "endpoint");
      if (!r.ok()) return failed(r.status());
      auto added = agent.AddEndpoint(*r);
      if (!added.ok()) return failed(added.status());
      return ok(*added);
    }
    if (method == "endpoint-del") {
      std::string id;
      if (absl::Status st = id_of(request, &id); !st.ok()) return failed(st);
      const bool known = agent.registrations().count(id) != 0;
      if (absl::Status st = agent.RemoveEndpoint(id); !st.ok()) return failed(st);
      return ok(nlohmann::json{{"id", id}, {"removed", known}});
    }
    if (method == "endpoint-get") {
      std::string id;
      if (absl::Status st = id_of(request, &id); !st.ok()) return failed(st);
      auto got = agent.GetEndpoint(id);
      if (!got.ok()) return failed(got.status());
      return ok(*got);
    }
    if (method == "observe") {
      ObserveFilter f;
      f.workload = request.value("workload", "");
      f.verdict = absl::AsciiStrToLower(request.value("verdict", ""));
      const int port = request.value("port", 0);
      if (port < 0 || port > 65535) return error("observe: \"port\" must be 0..65535");
      f.port = static_cast<uint16_t>(port);
      if (!f.verdict.empty() && f.verdict != "allow" && f.verdict != "deny" &&
          f.verdict != "audit" && f.verdict != "learn") {
        return error("observe: \"verdict\" must be allow, deny, audit or learn");
      }
      if (observe != nullptr) *observe = f;
      return ok(nlohmann::json{{"observing", true}});
    }
  } catch (const nlohmann::json::exception& e) {
    return error(std::string("bad request field: ") + e.what());
  }
  return error("unknown method \"" + method + "\"");
}

}  // namespace bulkhead::agent
