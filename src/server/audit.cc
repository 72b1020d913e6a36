// AuditLog: entries as JSON under /bulkhead/audit/<time>-<random>, queried newest first.
#include "server/audit.h"

#include <nlohmann/json.hpp>

#include "absl/strings/str_format.h"
#include "server/pki.h"

namespace bulkhead::server {
namespace {

using nlohmann::json;

absl::StatusOr<AuditEntry> FromJson(const std::string& text) {
  AuditEntry e;
  try {
    json j = json::parse(text);
    std::string err;
    if (!absl::ParseTime(absl::RFC3339_full, j.at("time").get<std::string>(), &e.time, &err)) {
      return absl::DataLossError("audit entry: time: " + err);
    }
    e.actor = j.value("actor", "");
    e.role = j.value("role", "");
    e.origin = j.value("origin", "");
    e.action = j.value("action", "");
    e.target = j.value("target", "");
    e.revision = j.value("revision", int64_t{0});
    e.outcome = j.value("outcome", "");
    e.detail = j.value("detail", "");
  } catch (const json::exception& ex) {
    return absl::DataLossError(std::string("audit entry is not valid: ") + ex.what());
  }
  return e;
}

}  // namespace

std::string AuditEntryToJson(const AuditEntry& e) {
  json j = {{"time", absl::FormatTime(absl::RFC3339_full, e.time, absl::UTCTimeZone())},
            {"actor", e.actor},
            {"role", e.role},
            {"origin", e.origin},
            {"action", e.action},
            {"target", e.target},
            {"outcome", e.outcome},
            {"detail", e.detail}};
  if (e.revision != 0) j["revision"] = e.revision;
  return j.dump();
}

AuditLog::AuditLog(store::IStore* store, Clock clock) : store_(store), clock_(std::move(clock)) {}

store::Op AuditLog::EntryOp(AuditEntry entry) const {
  if (entry.time == absl::Time()) entry.time = clock_();
  // Time first so that keys sort by time; a random suffix keeps two entries of one
  // nanosecond (two servers) apart.
  std::string key =
      absl::StrFormat("%s%020d-%s", kAuditPrefix, absl::ToUnixNanos(entry.time), RandomHex(4));
  return store::Op::Put(std::move(key), AuditEntryToJson(entry));
}

absl::Status AuditLog::Append(AuditEntry entry) {
  absl::StatusOr<store::TxnResult> r = store_->Txn({}, {EntryOp(std::move(entry))});
  return r.ok() ? absl::OkStatus() : r.status();
}

absl::StatusOr<std::vector<AuditEntry>> AuditLog::Query(const AuditQuery& q) {
  absl::StatusOr<store::Range> r = store_->Get(kAuditPrefix, true);
  if (!r.ok()) return r.status();
  std::vector<AuditEntry> out;
  for (size_t i = r->kvs.size(); i-- > 0;) {  // newest first
    absl::StatusOr<AuditEntry> e = FromJson(r->kvs[i].value);
    if (!e.ok()) return e.status();
    if (e->time < q.since || e->time > q.until) continue;
    if (!q.actor.empty() && e->actor != q.actor) continue;
    if (!q.action.empty() && e->action != q.action) continue;
    if (!q.outcome.empty() && e->outcome != q.outcome) continue;
    out.push_back(*std::move(e));
    if (q.limit > 0 && static_cast<int>(out.size()) >= q.limit) break;
  }
  return out;
}

}  // namespace bulkhead::server
