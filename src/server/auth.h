// People and agents proving who they are. People use API tokens bound to a role (admin,
// editor, viewer, auditor); agents join with a join token and from then on present the
// client certificate the server signed (pki.h). Only SHA-256 hashes of token secrets are
// stored; a token is shown once, when it is made.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "store/store.h"

namespace bulkhead::server {

inline constexpr char kTokensPrefix[] = "/bulkhead/tokens/";
inline constexpr char kTokenNamesPrefix[] = "/bulkhead/token-names/";
inline constexpr char kJoinTokensPrefix[] = "/bulkhead/join-tokens/";

enum class Role { kAdmin, kEditor, kViewer, kAuditor };
const char* RoleName(Role r);
std::optional<Role> ParseRole(std::string_view s);

enum class Permission {
  kReadPolicy,    // objects, revisions, diffs, agents, endpoints: every role
  kWritePolicy,   // apply, delete, rollback, mode: admin, editor
  kReadAudit,     // the audit log: admin, auditor
  kManageTokens,  // API and join tokens: admin
};
const char* PermissionName(Permission p);
bool Allows(Role role, Permission p);

struct TokenInfo {
  std::string id;
  std::string name;
  Role role = Role::kViewer;
  absl::Time created;
  absl::Time expires = absl::InfiniteFuture();
  std::string created_by;
};

class TokenStore {
 public:
  using Clock = std::function<absl::Time()>;
  explicit TokenStore(store::IStore* store, Clock clock = absl::Now);

  // Makes an API token; returns the secret ("bh_<id>.<secret>"), never stored. Names are
  // unique (AlreadyExists otherwise); ttl 0 = no expiry. `extra` ops (an audit entry) commit
  // in the same transaction.
  absl::StatusOr<std::string> Create(const std::string& name, Role role, absl::Duration ttl,
                                     const std::string& created_by,
                                     std::vector<store::Op> extra = {});
  // The token's identity, or Unauthenticated with the reason (malformed, unknown, expired).
  absl::StatusOr<TokenInfo> Authenticate(std::string_view token) const;
  absl::StatusOr<std::vector<TokenInfo>> List() const;
  absl::Status Revoke(const std::string& name, std::vector<store::Op> extra = {});

  // Join tokens: any number of agents may join with one until it expires (ttl required).
  absl::StatusOr<std::string> CreateJoinToken(absl::Duration ttl, const std::string& created_by,
                                              std::vector<store::Op> extra = {});
  absl::Status CheckJoinToken(std::string_view token) const;

 private:
  store::IStore* store_;
  Clock clock_;
};

}  // namespace bulkhead::server
