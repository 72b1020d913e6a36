// Agent records and endpoints as store values (agent_registry.h).
#include "server/agent_registry.h"

#include <google/protobuf/util/json_util.h>

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "server/agent_trust.h"
#include "server/policy_repo.h"

namespace bulkhead::server {
namespace {

using nlohmann::json;

std::string TimeText(absl::Time t) {
  return absl::FormatTime(absl::RFC3339_full, t, absl::UTCTimeZone());
}

absl::Time ParseTime(const std::string& s) {
  absl::Time t = absl::UnixEpoch();
  std::string err;
  if (!s.empty()) absl::ParseTime(absl::RFC3339_full, s, &t, &err);
  return t;
}

}  // namespace

std::string AgentKey(std::string_view node) {
  return absl::StrCat(kAgentsPrefix, std::string(node));
}

std::string EndpointNodePrefix(std::string_view node) {
  return absl::StrCat(kEndpointsPrefix, std::string(node), "/");
}

std::string EndpointKey(std::string_view node, std::string_view ns, std::string_view name) {
  return absl::StrCat(kEndpointsPrefix, std::string(node), "/", std::string(ns), "/",
                      std::string(name));
}

std::string AgentRecordToJson(const AgentRecord& r) {
  return json{{"node", r.node},
              {"joined", TimeText(r.joined)},
              {"lastSeen", TimeText(r.last_seen)},
              {"connected", r.connected},
              {"health", r.health},
              {"error", r.error},
              {"enforcedRevision", r.enforced_revision},
              {"endpoints", r.endpoints},
              {"endpointsRemoved", r.endpoints_removed},
              {"cpuSeconds", r.cpu_seconds},
              {"rssBytes", r.rss_bytes},
              {"version", r.version}}
      .dump();
}

absl::StatusOr<AgentRecord> AgentRecordFromJson(std::string_view text) {
  try {
    json j = json::parse(text);
    AgentRecord r;
    r.node = j.at("node").get<std::string>();
    r.joined = ParseTime(j.value("joined", ""));
    r.last_seen = ParseTime(j.value("lastSeen", ""));
    r.connected = j.value("connected", false);
    r.health = j.value("health", "joined");
    r.error = j.value("error", "");
    r.enforced_revision = j.value("enforcedRevision", int64_t{0});
    r.endpoints = j.value("endpoints", int64_t{0});
    r.endpoints_removed = j.value("endpointsRemoved", false);
    r.cpu_seconds = j.value("cpuSeconds", 0.0);
    r.rss_bytes = j.value("rssBytes", uint64_t{0});
    r.version = j.value("version", "");
    return r;
  } catch (const json::exception& e) {
    return absl::DataLossError(absl::StrCat("agent record is not valid: ", e.what()));
  }
}

std::string EndpointToJson(const v1::Endpoint& e) {
  std::string out;
  google::protobuf::util::JsonPrintOptions o;
  o.preserve_proto_field_names = true;
  // Serializing a message we built cannot fail; the status only reports bad descriptors.
  (void)google::protobuf::util::MessageToJsonString(e, &out, o);
  return out;
}

absl::StatusOr<v1::Endpoint> EndpointFromJson(std::string_view text) {
  v1::Endpoint e;
  google::protobuf::util::JsonParseOptions o;
  o.ignore_unknown_fields = true;
  auto s = google::protobuf::util::JsonStringToMessage(std::string(text), &e, o);
  if (!s.ok())
    return absl::DataLossError(absl::StrCat("endpoint record is not valid: ", s.ToString()));
  return e;
}

absl::StatusOr<std::vector<AgentRecord>> ListAgents(store::IStore* store) {
  absl::StatusOr<store::Range> r = store->Get(kAgentsPrefix, true);
  if (!r.ok()) return r.status();
  std::vector<AgentRecord> out;
  for (const store::KeyValue& kv : r->kvs) {
    absl::StatusOr<AgentRecord> a = AgentRecordFromJson(kv.value);
    if (!a.ok()) return absl::DataLossError(absl::StrCat(kv.key, ": ", a.status().message()));
    out.push_back(*std::move(a));
  }
  return out;
}

absl::StatusOr<int64_t> ReadPolicyHead(store::IStore* store) {
  absl::StatusOr<store::Range> r = store->Get(kPolicyHeadKey);
  if (!r.ok()) return r.status();
  if (r->kvs.empty()) return 0;
  try {
    return json::parse(r->kvs[0].value).at("revision").get<int64_t>();
  } catch (const json::exception& e) {
    return absl::DataLossError(absl::StrCat(kPolicyHeadKey, " is not valid: ", e.what()));
  }
}

absl::Status ValidateEndpoint(const v1::Endpoint& e) {
  EndpointFields f;
  f.namespace_name = e.namespace_();
  f.name = e.name();
  for (const std::string& ip : e.ips()) f.ips.push_back(ip);
  for (const v1::NamedPort& p : e.named_ports()) {
    f.named_ports.push_back({p.name(), p.port(), p.protocol()});
  }
  return ValidateEndpointFields(f);
}

}  // namespace bulkhead::server
