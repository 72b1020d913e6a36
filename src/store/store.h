// The control plane's store: a revisioned key-value space with atomic transactions and watch.
//
// The server keeps everything it owns (policy sets and their revisions, identities, endpoints,
// agents, tokens, the audit log) as keys in one IStore. The model is etcd v3's, because etcd is
// one of the two implementations and the other (SQLite, embedded, the default) can provide it
// exactly: one global revision that every successful write transaction increments by one; each
// key remembers the revision that created it and the one that last modified it; a transaction
// is a list of conditions on keys and a list of writes applied all together or not at all; a
// watch delivers, in revision order, every change under a prefix from a start revision on.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace bulkhead::store {

struct KeyValue {
  std::string key;
  std::string value;
  int64_t create_revision = 0;  // revision of the write that created the key
  int64_t mod_revision = 0;     // revision of its last write
  int64_t version = 0;          // number of writes since it was created (1 after creation)
};

// The result of a read: the keys found (sorted by key) and the store's revision at the read.
struct Range {
  std::vector<KeyValue> kvs;
  int64_t revision = 0;
};

// A condition of a transaction. Keys are compared by their last-modified revision; 0 stands
// for "the key does not exist", so {key, 0} is "create only if absent".
struct Compare {
  std::string key;
  int64_t mod_revision = 0;
};

// A write of a transaction.
struct Op {
  enum class Kind { kPut, kDelete, kDeletePrefix };
  Kind kind = Kind::kPut;
  std::string key;    // the key, or the prefix for kDeletePrefix
  std::string value;  // kPut only

  static Op Put(std::string key, std::string value) {
    return Op{Kind::kPut, std::move(key), std::move(value)};
  }
  static Op Delete(std::string key) { return Op{Kind::kDelete, std::move(key), {}}; }
  static Op DeletePrefix(std::string prefix) {
    return Op{Kind::kDeletePrefix, std::move(prefix), {}};
  }
};

struct TxnResult {
  bool succeeded = false;  // every Compare held and every Op was applied
  int64_t revision = 0;    // the new revision when succeeded (the current one otherwise)
};

// One change seen by a watch. A transaction's changes share its revision and arrive together.
struct Event {
  enum class Type { kPut, kDelete };
  Type type = Type::kPut;
  KeyValue kv;  // for kDelete: the key and the deleting revision as mod_revision, no value
};

// A live watch; destroying it stops the deliveries (no callback runs after the destructor).
class IWatch {
 public:
  virtual ~IWatch() = default;
};

// Called on a store thread with the events of one or more revisions, in revision order, or
// once with an error after which the watch is over (absl::OutOfRange: the start revision was
// compacted away, re-read and watch again from the read's revision; absl::Unavailable: the
// store is unreachable).
using WatchCallback = std::function<void(absl::StatusOr<std::vector<Event>>)>;

class IStore {
 public:
  virtual ~IStore() = default;

  // Reads one key (prefix=false) or every key that starts with `key` (prefix=true), at the
  // current revision (at_revision=0) or at an earlier one that is not compacted.
  virtual absl::StatusOr<Range> Get(std::string_view key, bool prefix = false,
                                    int64_t at_revision = 0) = 0;

  // Applies `ops` atomically if every condition holds; nothing is written otherwise.
  // Errors (store unreachable, no quorum, a timeout) mean the outcome is unknown to the
  // caller only for etcd when the connection broke after sending; the message says so.
  virtual absl::StatusOr<TxnResult> Txn(const std::vector<Compare>& conditions,
                                        const std::vector<Op>& ops) = 0;

  // Delivers every change under `prefix` with revision >= start_revision, then the live
  // ones. start_revision=0 means "from now on".
  virtual absl::StatusOr<std::unique_ptr<IWatch>> Watch(std::string prefix, int64_t start_revision,
                                                        WatchCallback callback) = 0;

  // Forgets history before `revision` (reads at and watches from older revisions fail).
  virtual absl::Status Compact(int64_t revision) = 0;

  // What this store is, for logs and status: "sqlite:/var/lib/bulkhead/server.db",
  // "etcd://127.0.0.1:2379,127.0.0.1:22379".
  virtual std::string Describe() const = 0;
};

struct StoreOptions {
  // etcd: time allowed for one request before it fails with Unavailable (a member without
  // quorum blocks writes forever otherwise).
  int request_timeout_ms = 5000;
};

// Opens a store from a URL: "sqlite:PATH" or a plain path (created if absent, WAL mode),
// "sqlite::memory:" for tests, or "etcd://HOST:PORT[,HOST:PORT...]" (http) for a cluster.
absl::StatusOr<std::unique_ptr<IStore>> OpenStore(std::string_view url,
                                                  const StoreOptions& options = {});

}  // namespace bulkhead::store
