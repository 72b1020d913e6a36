// A workload registered with the agent at run time (by `bulkhead-cni`): the body of the
// local API's `endpoint-add`, its JSON form and its validation, shared by the agent and its
// clients so that both sides agree on one shape.
#pragma once

#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"
#include "policy/model.h"

namespace bulkhead::agent {

// A container port with a name (Kubernetes `containers[].ports[]`): what a policy's named
// port resolves to on this workload.
struct RegisteredPort {
  std::string name;  // IANA_SVC_NAME
  policy::Protocol protocol = policy::Protocol::kTCP;
  uint16_t port = 0;
  bool operator==(const RegisteredPort&) const = default;
};

struct EndpointRegistration {
  std::string id;  // "<containerId>/<ifname>": what CNI DEL and CHECK name it by
  std::string namespace_name;
  std::string name;
  std::map<std::string, std::string> labels;
  std::string service_account = "default";
  std::string netns;             // the workload's netns (path or name under /var/run/netns)
  std::string interface;         // the interface inside the netns (CNI_IFNAME)
  std::string host_interface;    // the host side of its veth: where the agent attaches
  std::vector<std::string> ips;  // canonical text ("10.1.0.5", "fd00::5"), in given order
  std::vector<RegisteredPort> named_ports;  // names unique; TCP, UDP or SCTP

  std::string Workload() const { return namespace_name + "/" + name; }
  bool operator==(const EndpointRegistration&) const = default;

  // {"id", "namespace", "name", "labels", "serviceAccount", "netns", "interface",
  // "hostInterface", "ips"}, and "namedPorts" ([{"name", "port", "protocol"}]) only when there
  // are some (so that registrations without them hash as before).
  nlohmann::json ToJson() const;
};

// Which field of a registration an error is about, so that a caller can tell input it took
// from its environment from input it took from its configuration.
enum class RegistrationField {
  kObject,  // not an object, or an unknown field
  kId,
  kNamespace,
  kName,
  kLabels,
  kServiceAccount,
  kNetns,
  kInterface,
  kHostInterface,
  kIps,
  kNamedPorts,
};

struct RegistrationError {
  RegistrationField field = RegistrationField::kObject;
  std::string message;  // "endpoint.ips[1]: \"10.0.0.300\" is not an IP address"
};

// Validates a registration: Kubernetes name and label syntax, interface names (IFNAMSIZ),
// netns, at least one address, addresses parsed and written canonically, named ports (name
// IANA_SVC_NAME and unique, port 1-65535, TCP, UDP or SCTP). `where` prefixes
// every field in the message ("endpoint" -> "endpoint.namespace"). Returns the registration
// with its addresses canonical, or the first error.
absl::StatusOr<EndpointRegistration> ValidateRegistration(EndpointRegistration registration,
                                                          std::string_view where = "endpoint",
                                                          RegistrationError* error = nullptr);

// Decodes and validates the JSON form (strict: unknown fields are errors). `serviceAccount`
// defaults to "default"; `labels` to none.
absl::StatusOr<EndpointRegistration> ParseRegistration(const nlohmann::json& json,
                                                       std::string_view where = "endpoint",
                                                       RegistrationError* error = nullptr);

}  // namespace bulkhead::agent
