// The audit log: who did what, when, from where, and what it changed. Every change to the
// policy set writes its entry in the same store transaction as the change itself (so there
// is no change without an entry, and no entry for a change that did not happen); refused
// requests (invalid input, missing permission, bad credentials) are logged too.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "store/store.h"

namespace bulkhead::server {

inline constexpr char kAuditPrefix[] = "/bulkhead/audit/";

struct AuditEntry {
  absl::Time time;
  std::string actor;  // token name ("" when the credentials were refused)
  std::string role;
  std::string origin;    // client address
  std::string action;    // "apply", "delete", "rollback", "mode", "token.create", ...
  std::string target;    // what it acted on: "policy set", "token ci", "agent node-1"
  int64_t revision = 0;  // the policy revision it made, when it made one
  std::string outcome;   // "ok", "invalid", "denied", "unauthenticated", "error"
  std::string detail;    // the diff of a change, or why it was refused
};

struct AuditQuery {
  absl::Time since = absl::InfinitePast();
  absl::Time until = absl::InfiniteFuture();
  std::string actor;    // "" any
  std::string action;   // "" any
  std::string outcome;  // "" any
  int limit = 0;        // newest first; 0: all
};

class AuditLog {
 public:
  using Clock = std::function<absl::Time()>;
  explicit AuditLog(store::IStore* store, Clock clock = absl::Now);

  // The store write of an entry, for a caller's own transaction. Entries sort by time.
  store::Op EntryOp(AuditEntry entry) const;
  absl::Status Append(AuditEntry entry);
  absl::StatusOr<std::vector<AuditEntry>> Query(const AuditQuery& q);
  absl::Time Now() const { return clock_(); }

 private:
  store::IStore* store_;
  Clock clock_;
};

std::string AuditEntryToJson(const AuditEntry& e);

}  // namespace bulkhead::server
