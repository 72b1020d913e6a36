// Checks shared by every IStore implementation: what makes a transaction or a read invalid,
// so that SQLite refuses exactly what etcd refuses.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "store/store.h"

namespace bulkhead::store::internal {

// InvalidArgument for an empty key, a key put twice, or a put inside a delete's range.
absl::Status CheckTxn(const std::vector<Compare>& conditions, const std::vector<Op>& ops);

// The range [begin, end) an Op deletes ("" as end: up to the last key).
struct KeyRange {
  std::string begin;
  std::string end;
};
KeyRange DeleteRange(const Op& op);

// True when `key` is in [begin, end) ("" as end: no upper bound).
bool InRange(std::string_view key, std::string_view begin, std::string_view end);

// InvalidArgument for a negative limit or revision.
absl::Status CheckRead(const ReadOptions& options);

}  // namespace bulkhead::store::internal
