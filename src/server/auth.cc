// Tokens: "bh_<id>.<secret>" (API) and "bhj_<id>.<secret>" (join); the store keeps the id,
// the name, the role and SHA-256(secret), compared in constant time.
#include "server/auth.h"

#include <openssl/crypto.h>

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "server/pki.h"

namespace bulkhead::server {
namespace {

using nlohmann::json;

constexpr size_t kIdBytes = 8;
constexpr size_t kSecretBytes = 32;

std::string Format(absl::Time t) {
  return t == absl::InfiniteFuture() ? ""
                                     : absl::FormatTime(absl::RFC3339_full, t, absl::UTCTimeZone());
}

absl::Time Parse(const std::string& s) {
  absl::Time t = absl::InfiniteFuture();
  std::string err;
  if (!s.empty()) absl::ParseTime(absl::RFC3339_full, s, &t, &err);
  return t;
}

// Splits "<prefix><id>.<secret>"; false when malformed.
bool SplitToken(std::string_view token, std::string_view prefix, std::string* id,
                std::string* secret) {
  if (token.substr(0, prefix.size()) != prefix) return false;
  token.remove_prefix(prefix.size());
  size_t dot = token.find('.');
  if (dot != kIdBytes * 2 || token.size() != dot + 1 + kSecretBytes * 2) return false;
  for (char c : token) {
    if (c != '.' && !((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  *id = std::string(token.substr(0, dot));
  *secret = std::string(token.substr(dot + 1));
  return true;
}

bool SameHash(const std::string& a, const std::string& b) {
  return a.size() == b.size() && CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

absl::StatusOr<TokenInfo> InfoFromJson(const std::string& text, std::string* hash) {
  try {
    json j = json::parse(text);
    TokenInfo t;
    t.id = j.at("id").get<std::string>();
    t.name = j.value("name", "");
    std::optional<Role> role = ParseRole(j.value("role", ""));
    if (!role) return absl::DataLossError("token " + t.id + ": unknown role");
    t.role = *role;
    t.created = Parse(j.value("created", ""));
    t.expires = Parse(j.value("expires", ""));
    t.created_by = j.value("createdBy", "");
    if (hash != nullptr) *hash = j.at("sha256").get<std::string>();
    return t;
  } catch (const json::exception& e) {
    return absl::DataLossError(std::string("token record is not valid: ") + e.what());
  }
}

}  // namespace

const char* RoleName(Role r) {
  switch (r) {
    case Role::kAdmin:
      return "admin";
    case Role::kEditor:
      return "editor";
    case Role::kViewer:
      return "viewer";
    case Role::kAuditor:
      return "auditor";
  }
  return "?";
}

std::optional<Role> ParseRole(std::string_view s) {
  for (Role r : {Role::kAdmin, Role::kEditor, Role::kViewer, Role::kAuditor}) {
    if (s == RoleName(r)) return r;
  }
  return std::nullopt;
}

const char* PermissionName(Permission p) {
  switch (p) {
    case Permission::kReadPolicy:
      return "read the policy set";
    case Permission::kWritePolicy:
      return "change the policy set";
    case Permission::kReadAudit:
      return "read the audit log";
    case Permission::kManageTokens:
      return "manage tokens";
  }
  return "?";
}

bool Allows(Role role, Permission p) {
  switch (p) {
    case Permission::kReadPolicy:
      return true;
    case Permission::kWritePolicy:
      return role == Role::kAdmin || role == Role::kEditor;
    case Permission::kReadAudit:
      return role == Role::kAdmin || role == Role::kAuditor;
    case Permission::kManageTokens:
      return role == Role::kAdmin;
  }
  return false;
}

TokenStore::TokenStore(store::IStore* store, Clock clock)
    : store_(store), clock_(std::move(clock)) {}

absl::StatusOr<std::string> TokenStore::Create(const std::string& name, Role role,
                                               absl::Duration ttl, const std::string& created_by,
                                               std::vector<store::Op> extra) {
  if (name.empty() || name.size() > 63 ||
      name.find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789-_.") != std::string::npos) {
    return absl::InvalidArgumentError("token name '" + name +
                                      "' must be 1-63 characters of a-z, 0-9, '-', '_', '.'");
  }
  if (ttl < absl::ZeroDuration())
    return absl::InvalidArgumentError("token ttl must not be negative");
  std::string id = RandomHex(kIdBytes);
  std::string secret = RandomHex(kSecretBytes);
  absl::Time now = clock_();
  json record = {{"id", id},
                 {"name", name},
                 {"role", RoleName(role)},
                 {"sha256", Sha256Hex(secret)},
                 {"created", Format(now)},
                 {"expires", ttl == absl::ZeroDuration() ? "" : Format(now + ttl)},
                 {"createdBy", created_by}};
  std::string name_key = absl::StrCat(kTokenNamesPrefix, name);
  extra.push_back(store::Op::Put(name_key, id));
  extra.push_back(store::Op::Put(absl::StrCat(kTokensPrefix, id), record.dump()));
  absl::StatusOr<store::TxnResult> r = store_->Txn({store::Compare{name_key, 0}}, extra);
  if (!r.ok()) return r.status();
  if (!r->succeeded) return absl::AlreadyExistsError("a token named '" + name + "' exists");
  return absl::StrCat("bh_", id, ".", secret);
}

absl::StatusOr<TokenInfo> TokenStore::Authenticate(std::string_view token) const {
  std::string id, secret;
  if (!SplitToken(token, "bh_", &id, &secret)) {
    return absl::UnauthenticatedError("malformed API token (expected bh_<id>.<secret>)");
  }
  absl::StatusOr<store::Range> r = store_->Get(absl::StrCat(kTokensPrefix, id));
  if (!r.ok()) return r.status();
  if (r->kvs.empty()) return absl::UnauthenticatedError("unknown or revoked API token");
  std::string hash;
  absl::StatusOr<TokenInfo> info = InfoFromJson(r->kvs[0].value, &hash);
  if (!info.ok()) return info.status();
  if (!SameHash(hash, Sha256Hex(secret))) {
    return absl::UnauthenticatedError("unknown or revoked API token");
  }
  if (clock_() >= info->expires) {
    return absl::UnauthenticatedError("API token '" + info->name + "' expired at " +
                                      Format(info->expires));
  }
  return info;
}

absl::StatusOr<std::vector<TokenInfo>> TokenStore::List() const {
  absl::StatusOr<store::Range> r = store_->Get(kTokensPrefix, true);
  if (!r.ok()) return r.status();
  std::vector<TokenInfo> out;
  for (const store::KeyValue& kv : r->kvs) {
    absl::StatusOr<TokenInfo> t = InfoFromJson(kv.value, nullptr);
    if (!t.ok()) return t.status();
    out.push_back(*std::move(t));
  }
  std::sort(out.begin(), out.end(),
            [](const TokenInfo& a, const TokenInfo& b) { return a.name < b.name; });
  return out;
}

absl::Status TokenStore::Revoke(const std::string& name, std::vector<store::Op> extra) {
  std::string name_key = absl::StrCat(kTokenNamesPrefix, name);
  absl::StatusOr<store::Range> r = store_->Get(name_key);
  if (!r.ok()) return r.status();
  if (r->kvs.empty()) return absl::NotFoundError("no token named '" + name + "'");
  extra.push_back(store::Op::Delete(name_key));
  extra.push_back(store::Op::Delete(absl::StrCat(kTokensPrefix, r->kvs[0].value)));
  absl::StatusOr<store::TxnResult> t =
      store_->Txn({store::Compare{name_key, r->kvs[0].mod_revision}}, extra);
  if (!t.ok()) return t.status();
  if (!t->succeeded) return absl::AbortedError("token '" + name + "' changed meanwhile; retry");
  return absl::OkStatus();
}

absl::StatusOr<std::string> TokenStore::CreateJoinToken(absl::Duration ttl,
                                                        const std::string& created_by,
                                                        std::vector<store::Op> extra) {
  if (ttl <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("a join token needs a positive ttl");
  }
  std::string id = RandomHex(kIdBytes);
  std::string secret = RandomHex(kSecretBytes);
  absl::Time now = clock_();
  json record = {{"id", id},
                 {"role", "agent"},
                 {"sha256", Sha256Hex(secret)},
                 {"created", Format(now)},
                 {"expires", Format(now + ttl)},
                 {"createdBy", created_by}};
  extra.push_back(store::Op::Put(absl::StrCat(kJoinTokensPrefix, id), record.dump()));
  absl::StatusOr<store::TxnResult> r = store_->Txn({}, extra);
  if (!r.ok()) return r.status();
  return absl::StrCat("bhj_", id, ".", secret);
}

absl::Status TokenStore::CheckJoinToken(std::string_view token) const {
  std::string id, secret;
  if (!SplitToken(token, "bhj_", &id, &secret)) {
    return absl::UnauthenticatedError("malformed join token (expected bhj_<id>.<secret>)");
  }
  absl::StatusOr<store::Range> r = store_->Get(absl::StrCat(kJoinTokensPrefix, id));
  if (!r.ok()) return r.status();
  if (r->kvs.empty()) return absl::UnauthenticatedError("unknown join token");
  try {
    json j = json::parse(r->kvs[0].value);
    if (!SameHash(j.at("sha256").get<std::string>(), Sha256Hex(secret))) {
      return absl::UnauthenticatedError("unknown join token");
    }
    if (clock_() >= Parse(j.value("expires", ""))) {
      return absl::UnauthenticatedError("join token expired at " + j.value("expires", ""));
    }
  } catch (const json::exception& e) {
    return absl::DataLossError(std::string("join token record is not valid: ") + e.what());
  }
  return absl::OkStatus();
}

}  // namespace bulkhead::server
