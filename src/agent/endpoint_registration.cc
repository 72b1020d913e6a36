// Endpoint registrations: JSON form and validation (Kubernetes syntax, interface names,
// addresses), with errors that name the field.
#include "agent/endpoint_registration.h"

#include <set>

#include "absl/strings/str_cat.h"
#include "common/ip.h"
#include "policy/decode.h"

namespace bulkhead::agent {
namespace {

namespace pi = policy::internal;

// Longer ids are not container ids (runtimes use 64 hex digits) and would bloat the state.
constexpr size_t kMaxIdLength = 512;

absl::Status Fail(RegistrationError* out, RegistrationField field, const std::string& message) {
  if (out != nullptr) *out = RegistrationError{field, message};
  return absl::InvalidArgumentError(message);
}

// Printable ASCII without spaces: safe in messages, file names of logs and JSON.
std::string CheckId(std::string_view id) {
  if (id.empty()) return "must not be empty";
  if (id.size() > kMaxIdLength)
    return absl::StrCat("must be at most ", kMaxIdLength, " characters");
  for (char c : id) {
    if (c <= ' ' || c >= 0x7f) return "must be printable ASCII without spaces";
  }
  return "";
}

std::string Quoted(std::string_view s) {
  return absl::StrCat("\"", pi::EscapeInvalidUtf8(s), "\"");
}

}  // namespace

nlohmann::json EndpointRegistration::ToJson() const {
  nlohmann::json j;
  j["id"] = id;
  j["namespace"] = namespace_name;
  j["name"] = name;
  j["labels"] = labels;
  j["serviceAccount"] = service_account;
  j["netns"] = netns;
  j["interface"] = interface;
  j["hostInterface"] = host_interface;
  j["ips"] = ips;
  if (!named_ports.empty()) {
    nlohmann::json ports = nlohmann::json::array();
    for (const auto& p : named_ports) {
      ports.push_back(
          {{"name", p.name}, {"port", p.port}, {"protocol", policy::ProtocolName(p.protocol)}});
    }
    j["namedPorts"] = std::move(ports);
  }
  return j;
}

absl::StatusOr<EndpointRegistration> ValidateRegistration(EndpointRegistration r,
                                                          std::string_view where,
                                                          RegistrationError* error) {
  const std::string w(where);
  auto field = [&](const char* name) { return absl::StrCat(w, ".", name); };
  if (std::string p = CheckId(r.id); !p.empty()) {
    return Fail(error, RegistrationField::kId,
                absl::StrCat(field("id"), ": ", Quoted(r.id), " ", p));
  }
  if (std::string p = pi::CheckDns1123Label(r.namespace_name); !p.empty()) {
    return Fail(error, RegistrationField::kNamespace,
                absl::StrCat(field("namespace"), ": ", Quoted(r.namespace_name),
                             " is not a valid namespace name: ", p));
  }
  if (std::string p = pi::CheckDns1123Subdomain(r.name); !p.empty()) {
    return Fail(
        error, RegistrationField::kName,
        absl::StrCat(field("name"), ": ", Quoted(r.name), " is not a valid workload name: ", p));
  }
  for (const auto& [key, value] : r.labels) {
    if (std::string p = pi::CheckLabelKey(key); !p.empty()) {
      return Fail(
          error, RegistrationField::kLabels,
          absl::StrCat(field("labels"), ": key ", Quoted(key), " is not a valid label key: ", p));
    }
    if (std::string p = pi::CheckLabelValue(value); !p.empty()) {
      return Fail(error, RegistrationField::kLabels,
                  absl::StrCat(field("labels"), ".", key, ": ", Quoted(value),
                               " is not a valid label value: ", p));
    }
  }
  if (std::string p = pi::CheckDns1123Subdomain(r.service_account); !p.empty()) {
    return Fail(error, RegistrationField::kServiceAccount,
                absl::StrCat(field("serviceAccount"), ": ", Quoted(r.service_account),
                             " is not a valid service account name: ", p));
  }
  if (std::string p = pi::CheckNetns(r.netns); !p.empty()) {
    return Fail(error, RegistrationField::kNetns,
                absl::StrCat(field("netns"), ": ", Quoted(r.netns), " ", p));
  }
  if (std::string p = pi::CheckInterfaceName(r.interface); !p.empty()) {
    return Fail(error, RegistrationField::kInterface,
                absl::StrCat(field("interface"), ": ", Quoted(r.interface),
                             " is not an interface name: ", p));
  }
  if (std::string p = pi::CheckInterfaceName(r.host_interface); !p.empty()) {
    return Fail(error, RegistrationField::kHostInterface,
                absl::StrCat(field("hostInterface"), ": ", Quoted(r.host_interface),
                             " is not an interface name: ", p));
  }
  if (r.ips.empty()) {
    return Fail(error, RegistrationField::kIps,
                absl::StrCat(field("ips"), ": at least one address is needed"));
  }
  std::set<common::IpAddr> seen;
  for (size_t i = 0; i < r.ips.size(); ++i) {
    const std::string at = absl::StrCat(field("ips"), "[", i, "]");
    auto ip = common::IpAddr::Parse(r.ips[i]);
    if (!ip) {
      return Fail(error, RegistrationField::kIps,
                  absl::StrCat(at, ": ", Quoted(r.ips[i]), " is not an IP address"));
    }
    if (!seen.insert(*ip).second) {
      return Fail(error, RegistrationField::kIps,
                  absl::StrCat(at, ": ", ip->ToString(), " is listed twice"));
    }
    r.ips[i] = ip->ToString();
  }
  std::set<std::string> names;
  for (size_t i = 0; i < r.named_ports.size(); ++i) {
    const RegisteredPort& p = r.named_ports[i];
    const std::string at = absl::StrCat(field("namedPorts"), "[", i, "]");
    if (std::string problem = pi::CheckPortName(p.name); !problem.empty()) {
      return Fail(
          error, RegistrationField::kNamedPorts,
          absl::StrCat(at, ".name: ", Quoted(p.name), " is not a valid port name: ", problem));
    }
    if (!names.insert(p.name).second) {
      return Fail(error, RegistrationField::kNamedPorts,
                  absl::StrCat(at, ".name: ", Quoted(p.name), " is listed twice"));
    }
    if (p.port == 0) {
      return Fail(error, RegistrationField::kNamedPorts,
                  absl::StrCat(at, ".port: must be 1-65535"));
    }
    if (p.protocol != policy::Protocol::kTCP && p.protocol != policy::Protocol::kUDP &&
        p.protocol != policy::Protocol::kSCTP) {
      return Fail(error, RegistrationField::kNamedPorts,
                  absl::StrCat(at, ".protocol: ", policy::ProtocolName(p.protocol),
                               " has no ports (TCP, UDP or SCTP)"));
    }
  }
  return r;
}

absl::StatusOr<EndpointRegistration> ParseRegistration(const nlohmann::json& j,
                                                       std::string_view where,
                                                       RegistrationError* error) {
  const std::string w(where);
  if (!j.is_object()) {
    return Fail(error, RegistrationField::kObject, absl::StrCat(w, ": must be an object"));
  }
  static const std::map<std::string, RegistrationField, std::less<>> kFields = {
      {"id", RegistrationField::kId},
      {"namespace", RegistrationField::kNamespace},
      {"name", RegistrationField::kName},
      {"labels", RegistrationField::kLabels},
      {"serviceAccount", RegistrationField::kServiceAccount},
      {"netns", RegistrationField::kNetns},
      {"interface", RegistrationField::kInterface},
      {"hostInterface", RegistrationField::kHostInterface},
      {"ips", RegistrationField::kIps},
      {"namedPorts", RegistrationField::kNamedPorts},
  };
  for (const auto& [key, value] : j.items()) {
    if (kFields.count(key) == 0) {
      return Fail(
          error, RegistrationField::kObject,
          absl::StrCat(w, ".", pi::EscapeInvalidUtf8(key),
                       ": unknown field (known: id, namespace, name, labels, "
                       "serviceAccount, netns, interface, hostInterface, ips, namedPorts)"));
    }
  }
  EndpointRegistration r;
  // A required or optional string field.
  auto str = [&](const char* key, bool required, std::string& out) -> absl::Status {
    const RegistrationField f = kFields.find(key)->second;
    if (!j.contains(key)) {
      if (!required) return absl::OkStatus();
      return Fail(error, f, absl::StrCat(w, ".", key, ": missing"));
    }
    if (!j[key].is_string()) {
      return Fail(error, f, absl::StrCat(w, ".", key, ": must be a string"));
    }
    out = j[key].get<std::string>();
    return absl::OkStatus();
  };
  for (auto [key, required, out] :
       {std::tuple{"id", true, &r.id}, std::tuple{"namespace", true, &r.namespace_name},
        std::tuple{"name", true, &r.name}, std::tuple{"serviceAccount", false, &r.service_account},
        std::tuple{"netns", true, &r.netns}, std::tuple{"interface", true, &r.interface},
        std::tuple{"hostInterface", true, &r.host_interface}}) {
    if (absl::Status st = str(key, required, *out); !st.ok()) return st;
  }
  if (j.contains("labels")) {
    const auto& labels = j["labels"];
    if (!labels.is_object()) {
      return Fail(error, RegistrationField::kLabels,
                  absl::StrCat(w, ".labels: must be an object of strings"));
    }
    for (const auto& [key, value] : labels.items()) {
      if (!value.is_string()) {
        return Fail(error, RegistrationField::kLabels,
                    absl::StrCat(w, ".labels.", pi::EscapeInvalidUtf8(key), ": must be a string"));
      }
      r.labels[key] = value.get<std::string>();
    }
  }
  if (!j.contains("ips")) {
    return Fail(error, RegistrationField::kIps, absl::StrCat(w, ".ips: missing"));
  }
  if (!j["ips"].is_array()) {
    return Fail(error, RegistrationField::kIps,
                absl::StrCat(w, ".ips: must be a list of addresses"));
  }
  for (size_t i = 0; i < j["ips"].size(); ++i) {
    if (!j["ips"][i].is_string()) {
      return Fail(error, RegistrationField::kIps,
                  absl::StrCat(w, ".ips[", i, "]: must be a string"));
    }
    r.ips.push_back(j["ips"][i].get<std::string>());
  }
  if (j.contains("namedPorts")) {
    const auto& ports = j["namedPorts"];
    auto bad = [&](const std::string& at, const char* what) {
      return Fail(error, RegistrationField::kNamedPorts, absl::StrCat(at, ": ", what));
    };
    if (!ports.is_array()) {
      return bad(absl::StrCat(w, ".namedPorts"),
                 "must be a list of {\"name\", \"port\", \"protocol\"}");
    }
    for (size_t i = 0; i < ports.size(); ++i) {
      const auto& p = ports[i];
      const std::string at = absl::StrCat(w, ".namedPorts[", i, "]");
      if (!p.is_object()) return bad(at, "must be an object");
      for (const auto& [key, value] : p.items()) {
        if (key != "name" && key != "port" && key != "protocol") {
          return bad(absl::StrCat(at, ".", pi::EscapeInvalidUtf8(key)),
                     "unknown field (known: name, port, protocol)");
        }
      }
      RegisteredPort rp;
      if (!p.contains("name") || !p["name"].is_string()) {
        return bad(at + ".name", "must be a string");
      }
      rp.name = p["name"].get<std::string>();
      if (!p.contains("port") || !p["port"].is_number_integer() || p["port"].get<int64_t>() < 1 ||
          p["port"].get<int64_t>() > 65535) {
        return bad(at + ".port", "must be a number 1-65535");
      }
      rp.port = static_cast<uint16_t>(p["port"].get<int64_t>());
      // Kubernetes defaults a container port's protocol to TCP.
      if (p.contains("protocol")) {
        if (!p["protocol"].is_string()) return bad(at + ".protocol", "must be a string");
        auto proto = policy::ParseProtocol(p["protocol"].get<std::string>());
        if (!proto) return bad(at + ".protocol", "must be TCP, UDP or SCTP");
        rp.protocol = *proto;
      }
      r.named_ports.push_back(std::move(rp));
    }
  }
  return ValidateRegistration(std::move(r), where, error);
}

}  // namespace bulkhead::agent
