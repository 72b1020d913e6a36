// The agents' trust bootstrap, shared by the server and the agents' client: how a join token
// vouches for the cluster CA that Discover returns over TLS nobody has verified yet.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace bulkhead::server {

// The parts of a join token "bhj_<id>.<secret>".
struct JoinTokenParts {
  std::string id;
  std::string secret;
};
absl::StatusOr<JoinTokenParts> ParseJoinToken(std::string_view token);

// HMAC-SHA256 of the CA certificate (PEM) keyed by the join token's stored hash (the
// lower-case hex SHA-256 of its secret, as TokenStore keeps it), lower-case hex. The server
// computes it from the store, the agent from its token; only someone who knows the secret
// or the store's hash can make one that matches.
std::string CaMac(std::string_view token_hash_hex, std::string_view ca_pem);

// True when two MACs (hex) are equal, in constant time.
bool SameMac(std::string_view a, std::string_view b);

// Node names become certificate common names and store key segments: 1-253 characters of
// a-z, 0-9, '-', '.', '_', starting and ending with a letter or digit.
absl::Status ValidateNodeName(std::string_view name);

// What an agent reports of one endpoint, checked the same way on both sides (the agent
// before it sends, the server before it stores): namespace and name are 1-253 characters
// without '/', IPs parse, named ports have a name, a port 1-65535 and protocol TCP, UDP or
// SCTP. The message names the endpoint and the field.
struct EndpointFields {
  std::string_view namespace_name;
  std::string_view name;
  std::vector<std::string_view> ips;
  struct Port {
    std::string_view name;
    uint32_t port = 0;
    std::string_view protocol;
  };
  std::vector<Port> named_ports;
};
absl::Status ValidateEndpointFields(const EndpointFields& e);

// An identity key as agents send it (identity::IdentityKey::ToString()): not empty, valid
// UTF-8 without control characters, and at most kMaxIdentityKeyBytes (a key becomes part of a store
// key; etcd limits requests to 1.5 MiB and a node's keys travel together). Checked by the agent
// before it sends and by the server before it allocates. `what` names the key in the message
// ("keys[3]").
inline constexpr size_t kMaxIdentityKeyBytes = 8192;
absl::Status ValidateIdentityKey(std::string_view key, std::string_view what);

}  // namespace bulkhead::server
