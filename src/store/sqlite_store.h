// The embedded store: one SQLite file (WAL) owned by one server process, or memory for tests.
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "store/store.h"

namespace bulkhead::store {

// Opens (creating if absent) the SQLite store at `path`, or a private in-memory one for
// ":memory:". One process owns a file: a second opener, in this process or another, gets
// FailedPrecondition naming the owner's pid (the lock is `path` + "-lock", released when the
// owner exits, also by kill -9). Every Txn is durable (fsync'ed) before it returns.
absl::StatusOr<std::unique_ptr<IStore>> OpenSqliteStore(const std::string& path);

}  // namespace bulkhead::store
