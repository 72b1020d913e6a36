// The agents' trust bootstrap, shared by the server and the agents' client: how a join token
// vouches for the cluster CA that Discover returns over TLS nobody has verified yet.
#pragma once

#include <string>
#include <string_view>

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

}  // namespace bulkhead::server
