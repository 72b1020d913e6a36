// Join token parsing, the CA's MAC and node name rules (agent_trust.h).
#include "server/agent_trust.h"

#include <arpa/inet.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "absl/strings/str_cat.h"

namespace bulkhead::server {
namespace {

constexpr size_t kIdHex = 16;
constexpr size_t kSecretHex = 64;

bool IsLowerHex(std::string_view s) {
  for (char c : s) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

bool IsKeySegment(std::string_view s) {
  return !s.empty() && s.size() <= 253 && s.find('/') == std::string_view::npos &&
         s.find('\0') == std::string_view::npos;
}

bool IsAlnum(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }

}  // namespace

absl::StatusOr<JoinTokenParts> ParseJoinToken(std::string_view token) {
  constexpr std::string_view kPrefix = "bhj_";
  if (token.substr(0, kPrefix.size()) == kPrefix) {
    std::string_view rest = token.substr(kPrefix.size());
    size_t dot = rest.find('.');
    if (dot == kIdHex && rest.size() == kIdHex + 1 + kSecretHex &&
        IsLowerHex(rest.substr(0, dot)) && IsLowerHex(rest.substr(dot + 1))) {
      return JoinTokenParts{std::string(rest.substr(0, dot)), std::string(rest.substr(dot + 1))};
    }
  }
  return absl::InvalidArgumentError(
      "malformed join token (expected bhj_<16 hex>.<64 hex>, as `bulkhead token create` prints)");
}

std::string CaMac(std::string_view token_hash_hex, std::string_view ca_pem) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha256(), token_hash_hex.data(), static_cast<int>(token_hash_hex.size()),
       reinterpret_cast<const unsigned char*>(ca_pem.data()), ca_pem.size(), md, &len);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (unsigned int i = 0; i < len; ++i) {
    out.push_back(kHex[md[i] >> 4]);
    out.push_back(kHex[md[i] & 15]);
  }
  return out;
}

bool SameMac(std::string_view a, std::string_view b) {
  return a.size() == b.size() && CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

absl::Status ValidateNodeName(std::string_view name) {
  bool ok = !name.empty() && name.size() <= 253 && IsAlnum(name.front()) && IsAlnum(name.back());
  for (char c : name) ok = ok && (IsAlnum(c) || c == '-' || c == '.' || c == '_');
  if (ok) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat("node name '", std::string(name),
                   "' must be 1-253 characters of a-z, 0-9, '-', '.', '_', starting and ending "
                   "with a letter or digit"));
}

absl::Status ValidateEndpointFields(const EndpointFields& e) {
  std::string what =
      absl::StrCat("endpoint ", std::string(e.namespace_name), "/", std::string(e.name));
  if (!IsKeySegment(e.namespace_name)) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": namespace must be 1-253 characters without '/'"));
  }
  if (!IsKeySegment(e.name)) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": name must be 1-253 characters without '/'"));
  }
  for (size_t i = 0; i < e.ips.size(); ++i) {
    unsigned char buf[16];
    std::string ip(e.ips[i]);
    if (inet_pton(AF_INET, ip.c_str(), buf) != 1 && inet_pton(AF_INET6, ip.c_str(), buf) != 1) {
      return absl::InvalidArgumentError(
          absl::StrCat(what, ": ips[", i, "] '", ip, "' is not an IP address"));
    }
  }
  for (size_t i = 0; i < e.named_ports.size(); ++i) {
    const EndpointFields::Port& p = e.named_ports[i];
    if (p.name.empty() || p.port == 0 || p.port > 65535 ||
        (p.protocol != "TCP" && p.protocol != "UDP" && p.protocol != "SCTP")) {
      return absl::InvalidArgumentError(
          absl::StrCat(what, ": namedPorts[", i,
                       "] needs a name, a port 1-65535 and protocol TCP, UDP or SCTP"));
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateIdentityKey(std::string_view key, std::string_view what) {
  if (key.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("identity key ", std::string(what), " is empty"));
  }
  // Keys travel as protobuf strings and are stored in JSON: both need UTF-8. Control
  // characters have no place in label text and would garble `bulkhead identities`.
  for (size_t i = 0; i < key.size();) {
    auto c = static_cast<unsigned char>(key[i]);
    size_t len = c < 0x80           ? 1
                 : (c >> 5) == 0x6  ? 2
                 : (c >> 4) == 0xe  ? 3
                 : (c >> 3) == 0x1e ? 4
                                    : 0;
    bool ok = len > 0 && i + len <= key.size() && (len > 1 || (c >= 0x20 && c != 0x7f));
    for (size_t k = 1; ok && k < len; ++k) {
      ok = (static_cast<unsigned char>(key[i + k]) & 0xc0) == 0x80;
    }
    if (!ok) {
      return absl::InvalidArgumentError(absl::StrCat("identity key ", std::string(what),
                                                     " has a control character or is not "
                                                     "valid UTF-8 at byte ",
                                                     i));
    }
    i += len;
  }
  if (key.size() > kMaxIdentityKeyBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("identity key ", std::string(what), " ('", std::string(key.substr(0, 64)),
                     "...') has ", key.size(), " bytes, more than ", kMaxIdentityKeyBytes));
  }
  return absl::OkStatus();
}

}  // namespace bulkhead::server
