// The control plane's store: a revisioned key-value space with atomic transactions and watch.
//
// The server keeps everything it owns (policy sets and their revisions, identities, endpoints,
// agents, tokens, the audit log) as keys in one IStore. The model is etcd v3's, because etcd is
// one of the two implementations and the other (SQLite, embedded, the default) can provide it
// exactly: one global revision that every successful transaction that changes something
// increments by one; each key remembers the revision that created it and the one that last
// modified it; a transaction is a list of conditions on keys and a list of writes applied all
// together or not at all; a watch delivers, in revision order, every change under a prefix from
// a start revision on. docs/store.md describes both implementations and their failure modes.
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

// Keys and values are byte strings (any bytes, keys not empty), ordered bytewise.
struct KeyValue {
  std::string key;
  std::string value;
  int64_t create_revision = 0;  // revision of the write that created the key
  int64_t mod_revision = 0;     // revision of its last write
  int64_t version = 0;          // number of writes since it was created (1 after creation)
};

// The result of a read: the keys found (sorted by key, descending if asked) and the store's
// current revision at the read (also when the read was at an earlier revision).
struct Range {
  std::vector<KeyValue> kvs;
  int64_t revision = 0;
  bool more = false;  // a limit left out keys of the range
};

// How GetRange reads.
struct ReadOptions {
  int64_t limit = 0;        // at most this many keys (0: all)
  bool descending = false;  // largest key first (with limit: the last keys of the range)
  int64_t at_revision = 0;  // 0: now; otherwise an earlier revision that is not compacted
};

// A condition of a transaction. Keys are compared by their last-modified revision; 0 stands
// for "the key does not exist", so {key, 0} is "create only if absent".
struct Compare {
  std::string key;
  int64_t mod_revision = 0;
};

// A write of a transaction. One transaction may not put a key twice nor put a key that one of
// its deletes covers (etcd refuses such a transaction; so does every IStore: InvalidArgument).
struct Op {
  enum class Kind { kPut, kDelete, kDeletePrefix };
  Kind kind = Kind::kPut;
  std::string key;    // the key, or the prefix for kDeletePrefix ("" = every key)
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
  // The revision of the transaction when it succeeded and changed something; the current
  // revision otherwise (a failed transaction, or one whose deletes found nothing, writes no
  // revision, as in etcd).
  int64_t revision = 0;
};

// One change seen by a watch. A transaction's changes share its revision and arrive together.
struct Event {
  enum class Type { kPut, kDelete };
  Type type = Type::kPut;
  KeyValue kv;  // for kDelete: the key and the deleting revision as mod_revision, no value
};

// A live watch; destroying it stops the deliveries (no callback runs after the destructor
// returns). It may be destroyed from inside its own callback, and after its store.
class IWatch {
 public:
  virtual ~IWatch() = default;
};

// Called on a store thread with the events of one or more whole revisions, in revision order,
// or once with an error after which the watch is over (absl::OutOfRange: the watch fell behind
// a compaction, re-read and watch again from the read's revision + 1; absl::Unavailable: the
// store is unreachable). Callbacks of one watch never overlap. They may call the store (Get,
// Txn, Watch) but should return quickly: with SQLite one thread serves every watch.
using WatchCallback = std::function<void(absl::StatusOr<std::vector<Event>>)>;

class IStore {
 public:
  virtual ~IStore() = default;

  // Reads one key (prefix=false) or every key that starts with `key` (prefix=true; "" reads
  // everything), at the current revision (at_revision=0) or at an earlier one that is not
  // compacted (OutOfRange for a compacted or a future revision).
  absl::StatusOr<Range> Get(std::string_view key, bool prefix = false, int64_t at_revision = 0);

  // Reads the keys in [begin, end) ("" as end: up to the last key), for paging with a limit:
  // continue from the last key returned + '\0' (or, descending, up to that key).
  virtual absl::StatusOr<Range> GetRange(std::string_view begin, std::string_view end,
                                         const ReadOptions& options = {}) = 0;

  // Applies `ops` atomically if every condition holds; nothing is written otherwise. Returns
  // only once the transaction is durable. Errors (store unreachable, no quorum, a timeout)
  // leave the outcome unknown to the caller only for etcd when the request was sent and no
  // answer came; the message says so. Every other error means nothing was written.
  virtual absl::StatusOr<TxnResult> Txn(const std::vector<Compare>& conditions,
                                        const std::vector<Op>& ops) = 0;

  // Delivers every change under `prefix` ("" = every key) with revision >= start_revision,
  // then the live ones. start_revision=0 means "after the current revision": any transaction
  // that starts after Watch returned is delivered. A compacted start gives OutOfRange, from
  // Watch itself or (if the compaction raced with it) from the callback.
  virtual absl::StatusOr<std::unique_ptr<IWatch>> Watch(std::string prefix, int64_t start_revision,
                                                        WatchCallback callback) = 0;

  // Forgets history before `revision`: reads at and watches from older revisions fail with
  // OutOfRange; `revision` itself stays readable. Compacting to a revision at or before the
  // last compaction does nothing; a future revision is OutOfRange.
  virtual absl::Status Compact(int64_t revision) = 0;

  // What this store is, for logs and status: "sqlite:/var/lib/bulkhead/server.db",
  // "etcd://127.0.0.1:2379,127.0.0.1:22379".
  virtual std::string Describe() const = 0;
};

// The end of the range of keys that start with `prefix`: "" when every key longer than the
// prefix's run of 0xff bytes qualifies (as etcd's range_end "\0").
std::string PrefixEnd(std::string_view prefix);

struct StoreOptions {
  // etcd: time allowed for one request (retries on other members included) before it fails
  // with Unavailable (a member without quorum would block writes for seconds otherwise).
  int request_timeout_ms = 5000;
};

// Opens a store from a URL: "sqlite:PATH" or a plain path (created if absent, WAL mode),
// "sqlite::memory:" for tests, or "etcd://HOST:PORT[,HOST:PORT...]" (http) for a cluster.
absl::StatusOr<std::unique_ptr<IStore>> OpenStore(std::string_view url,
                                                  const StoreOptions& options = {});

}  // namespace bulkhead::store
