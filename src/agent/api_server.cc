// Agent API: request dispatch and observe filters (transport in run.cc).
#include "absl/strings/ascii.h"
#include "agent/api.h"

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
