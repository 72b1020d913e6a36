// Join token parsing, the CA's MAC and node name rules (agent_trust.h).
#include "server/agent_trust.h"

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

}  // namespace bulkhead::server
