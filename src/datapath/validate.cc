// Input checks shared by every IDatapath implementation.
#include "datapath/validate.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace bulkhead::datapath {
namespace {

bool ValidFamily(uint8_t family) {
  return family == BULKHEAD_FAMILY_IPV4 || family == BULKHEAD_FAMILY_IPV6;
}

}  // namespace

absl::Status ValidateEndpoint(const Endpoint& ep) {
  if (ep.ifindex == 0) return absl::InvalidArgumentError("endpoint: ifindex is 0");
  const std::string what = absl::StrCat("endpoint ifindex ", ep.ifindex);
  if (ep.mode != Mode::kEnforce && ep.mode != Mode::kAudit && ep.mode != Mode::kLearn)
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": mode ", static_cast<int>(ep.mode), " invalid"));
  for (const EndpointAddress& a : ep.addresses) {
    if (!ValidFamily(a.family))
      return absl::InvalidArgumentError(
          absl::StrCat(what, ": address family ", static_cast<int>(a.family), " invalid"));
    if (a.family == BULKHEAD_FAMILY_IPV4 &&
        std::any_of(a.addr.begin() + 4, a.addr.end(), [](uint8_t b) { return b != 0; }))
      return absl::InvalidArgumentError(
          absl::StrCat(what, ": IPv4 address with non-zero bytes past the fourth"));
  }
  return absl::OkStatus();
}

absl::Status ValidateIpcache(
    const std::vector<std::pair<bulkhead_ipcache_key, bulkhead_ipcache_value>>& entries) {
  for (size_t i = 0; i < entries.size(); i++) {
    const auto& [key, value] = entries[i];
    const uint32_t bits = key.family == BULKHEAD_FAMILY_IPV4 ? 32 : 128;
    if (!ValidFamily(key.family) || key.prefixlen < BULKHEAD_IPCACHE_PREFIX_BASE ||
        key.prefixlen > BULKHEAD_IPCACHE_PREFIX_BASE + bits)
      return absl::InvalidArgumentError(absl::StrCat(
          "ipcache entry ", i, " (identity ", value.identity, "): family ",
          static_cast<int>(key.family), " with prefixlen ", key.prefixlen, " is invalid"));
  }
  return absl::OkStatus();
}

absl::Status ValidatePolicyTables(const PolicyTables& tables) {
  for (size_t i = 0; i < tables.peers.size(); i++) {
    const auto& key = tables.peers[i].first;
    if (key.table_id == BULKHEAD_TABLE_NONE)
      return absl::InvalidArgumentError(
          absl::StrCat("policy peer entry ", i, " (identity ", key.peer_identity, "): table_id 0"));
    if (key.direction > BULKHEAD_DIR_EGRESS)
      return absl::InvalidArgumentError(absl::StrCat("policy peer entry ", i, " of table ",
                                                     key.table_id, ": direction ",
                                                     static_cast<int>(key.direction)));
  }
  for (size_t i = 0; i < tables.ports.size(); i++) {
    const auto& [key, value] = tables.ports[i];
    const std::string what =
        absl::StrCat("policy port entry ", i, " of table ", key.table_id, " (class ", key.class_id,
                     ", protocol ", static_cast<int>(key.protocol), ")");
    if (key.table_id == BULKHEAD_TABLE_NONE)
      return absl::InvalidArgumentError(absl::StrCat(what, ": table_id 0"));
    if (key.direction > BULKHEAD_DIR_EGRESS)
      return absl::InvalidArgumentError(
          absl::StrCat(what, ": direction ", static_cast<int>(key.direction)));
    if (key.prefixlen < BULKHEAD_PORT_PREFIX_BASE || key.prefixlen > BULKHEAD_PORT_PREFIX_FULL)
      return absl::InvalidArgumentError(absl::StrCat(what, ": prefixlen ", key.prefixlen));
    if (value.verdict != BULKHEAD_VERDICT_ALLOW && value.verdict != BULKHEAD_VERDICT_DENY)
      return absl::InvalidArgumentError(
          absl::StrCat(what, ": verdict ", static_cast<int>(value.verdict)));
  }
  return absl::OkStatus();
}

absl::Status ValidateFlowQuery(const FlowQuery& q) {
  if (!ValidFamily(q.family) || q.direction > BULKHEAD_DIR_EGRESS)
    return absl::InvalidArgumentError(absl::StrCat("explain: family ", static_cast<int>(q.family),
                                                   " or direction ", static_cast<int>(q.direction),
                                                   " invalid"));
  return absl::OkStatus();
}

}  // namespace bulkhead::datapath
