// The embedded store on SQLite: current keys in `kv`, every change in `log` (for reads at past
// revisions and for watches), the revision counters in `meta`; watches are served in-process
// by one dispatcher thread that reads the log after each commit.
#include "store/sqlite_store.h"

#include <fcntl.h>
#include <sqlite3.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <optional>
#include <thread>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "store/txn_check.h"

namespace bulkhead::store {
namespace {

// Revisions a watch reads from the log per round, so that a watch far behind delivers in
// bounded batches (whole revisions each) and other watches get their turn.
constexpr int64_t kWatchWindow = 256;

// The schema this code writes; a file with another one is refused rather than misread.
constexpr int64_t kSchemaVersion = 1;

// `kv` holds each live key; `log` every change: a put with the key's value, create revision
// and version after it, or a tombstone (deleted = 1). `seq` keeps a transaction's writes in
// their order, as etcd delivers them. Keys are BLOBs, so SQLite orders them bytewise (memcmp)
// exactly as etcd does.
constexpr const char* kSchema = R"sql(
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS kv (
  key BLOB PRIMARY KEY, value BLOB NOT NULL, create_revision INTEGER NOT NULL,
  mod_revision INTEGER NOT NULL, version INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS log (
  revision INTEGER NOT NULL, seq INTEGER NOT NULL, key BLOB NOT NULL, deleted INTEGER NOT NULL,
  value BLOB, create_revision INTEGER NOT NULL, version INTEGER NOT NULL,
  PRIMARY KEY (revision, seq)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS log_by_key ON log (key, revision);
INSERT OR IGNORE INTO meta VALUES ('schema_version', 1), ('revision', 1), ('compact_revision', 0);
)sql";

struct DbCloser {
  void operator()(sqlite3* db) const { sqlite3_close_v2(db); }
};
using DbPtr = std::unique_ptr<sqlite3, DbCloser>;

class FileDescriptor {
 public:
  explicit FileDescriptor(int fd = -1) : fd_(fd) {}
  FileDescriptor(FileDescriptor&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  FileDescriptor& operator=(FileDescriptor&& other) noexcept {
    std::swap(fd_, other.fd_);
    return *this;
  }
  FileDescriptor(const FileDescriptor&) = delete;
  FileDescriptor& operator=(const FileDescriptor&) = delete;
  ~FileDescriptor() {
    if (fd_ >= 0) close(fd_);
  }
  int get() const { return fd_; }

 private:
  int fd_;
};

// One prepared statement; columns and parameters are 1-based for Bind, 0-based for columns,
// as in SQLite's own API.
class Statement {
 public:
  Statement(sqlite3* db, sqlite3_stmt* stmt) : db_(db), stmt_(stmt) {}
  Statement(Statement&& other) noexcept
      : db_(other.db_), stmt_(std::exchange(other.stmt_, nullptr)) {}
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;
  Statement& operator=(Statement&&) = delete;
  ~Statement() { sqlite3_finalize(stmt_); }

  Statement& Bind(int index, int64_t value) {
    sqlite3_bind_int64(stmt_, index, value);
    return *this;
  }
  // Binds bytes as a BLOB; an empty string stays an empty BLOB (never NULL).
  Statement& Bind(int index, std::string_view bytes) {
    if (bytes.empty()) {
      sqlite3_bind_zeroblob(stmt_, index, 0);
    } else {
      sqlite3_bind_blob64(stmt_, index, bytes.data(), bytes.size(), SQLITE_TRANSIENT);
    }
    return *this;
  }
  Statement& BindText(int index, std::string_view text) {
    sqlite3_bind_text64(stmt_, index, text.data(), text.size(), SQLITE_TRANSIENT, SQLITE_UTF8);
    return *this;
  }
  // True with a row to read, false when done.
  absl::StatusOr<bool> Step() {
    int rc = sqlite3_step(stmt_);
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    return absl::InternalError(sqlite3_errmsg(db_));
  }
  absl::Status Run() {
    absl::StatusOr<bool> row = Step();
    return row.ok() ? absl::OkStatus() : row.status();
  }
  int64_t Int(int column) const { return sqlite3_column_int64(stmt_, column); }
  std::string Bytes(int column) const {
    const void* data = sqlite3_column_blob(stmt_, column);
    int size = sqlite3_column_bytes(stmt_, column);
    if (data == nullptr || size <= 0) return {};
    return std::string(static_cast<const char*>(data), static_cast<size_t>(size));
  }

 private:
  sqlite3* db_;
  sqlite3_stmt* stmt_;
};

// What the dispatcher knows of one watch. `next` (the first revision not yet delivered) is
// written by Watch before registration and by the dispatcher after.
struct WatchState {
  uint64_t id = 0;
  std::string begin;
  std::string end;
  int64_t next = 0;
  WatchCallback callback;
};

// State shared by the store, its dispatcher and the watch handles, which may outlive the
// store. `mu` guards everything here.
struct WatchHub {
  std::mutex mu;
  std::condition_variable wake;       // the dispatcher: a commit, a new watch, or stopping
  std::condition_variable delivered;  // a handle waiting for its callback to return
  std::map<uint64_t, std::shared_ptr<WatchState>> watches;
  uint64_t next_id = 1;
  int64_t revision = 0;     // the last committed revision
  uint64_t delivering = 0;  // the watch whose callback runs now (0: none)
  std::thread::id dispatcher;
  bool stopping = false;
};

class SqliteWatch : public IWatch {
 public:
  SqliteWatch(std::shared_ptr<WatchHub> hub, uint64_t id) : hub_(std::move(hub)), id_(id) {}
  ~SqliteWatch() override {
    std::unique_lock lock(hub_->mu);
    hub_->watches.erase(id_);
    // From inside its own callback the dispatcher is this thread: nothing to wait for.
    if (std::this_thread::get_id() != hub_->dispatcher) {
      hub_->delivered.wait(lock, [&] { return hub_->delivering != id_; });
    }
  }
  SqliteWatch(const SqliteWatch&) = delete;
  SqliteWatch& operator=(const SqliteWatch&) = delete;

 private:
  std::shared_ptr<WatchHub> hub_;
  uint64_t id_;
};

class SqliteStore : public IStore {
 public:
  SqliteStore(std::string path, DbPtr db, FileDescriptor lock_file)
      : path_(std::move(path)),
        lock_file_(std::move(lock_file)),
        db_(std::move(db)),
        hub_(std::make_shared<WatchHub>()) {}

  ~SqliteStore() override {
    {
      std::lock_guard lock(hub_->mu);
      if (std::this_thread::get_id() == hub_->dispatcher) {
        std::fprintf(stderr, "store: a SqliteStore was destroyed inside a watch callback\n");
        std::abort();
      }
      hub_->stopping = true;
      hub_->watches.clear();
    }
    hub_->wake.notify_all();
    if (dispatcher_.joinable()) dispatcher_.join();
  }
  SqliteStore(const SqliteStore&) = delete;
  SqliteStore& operator=(const SqliteStore&) = delete;

  // Creates the schema, reads the counters and starts the dispatcher.
  absl::Status Init() {
    // synchronous=FULL: in WAL mode, NORMAL may lose the last commits on a power loss or an
    // OS crash; the server tells users and agents about a revision once Txn returns, so the
    // commit must be on disk by then. The cost is one fsync of the WAL per transaction.
    for (const char* pragma : {"PRAGMA busy_timeout = 5000", "PRAGMA synchronous = FULL"}) {
      if (absl::Status s = Exec(pragma); !s.ok()) return s;
    }
    std::string mode;
    {
      absl::StatusOr<Statement> wal = Prepare("PRAGMA journal_mode = WAL");
      if (!wal.ok()) return wal.status();
      absl::StatusOr<bool> row = wal->Step();
      if (!row.ok()) return row.status();
      if (*row) mode = wal->Bytes(0);
    }
    if (path_ != ":memory:" && mode != "wal") {
      return absl::FailedPreconditionError(
          absl::StrCat("cannot use WAL journaling (journal mode '", mode, "')"));
    }
    if (absl::Status s = Exec("BEGIN IMMEDIATE"); !s.ok()) return s;
    absl::Status s = Exec(kSchema);
    if (s.ok()) s = Exec("COMMIT");
    if (!s.ok()) {
      Exec("ROLLBACK").IgnoreError();
      return s;
    }
    absl::StatusOr<int64_t> schema = Meta("schema_version");
    if (!schema.ok()) return schema.status();
    if (*schema != kSchemaVersion) {
      return absl::FailedPreconditionError(absl::StrCat(Where(), ": schema version ", *schema,
                                                        ", this bulkhead reads ", kSchemaVersion,
                                                        " (written by another version?)"));
    }
    absl::StatusOr<int64_t> revision = Meta("revision");
    if (!revision.ok()) return revision.status();
    absl::StatusOr<int64_t> compacted = Meta("compact_revision");
    if (!compacted.ok()) return compacted.status();
    revision_ = *revision;
    compact_revision_ = *compacted;
    hub_->revision = revision_;
    dispatcher_ = std::thread([this] { Dispatch(); });
    std::lock_guard lock(hub_->mu);
    hub_->dispatcher = dispatcher_.get_id();
    return absl::OkStatus();
  }

  absl::StatusOr<Range> GetRange(std::string_view begin, std::string_view end,
                                 const ReadOptions& options) override {
    if (absl::Status s = internal::CheckRead(options); !s.ok()) return s;
    std::lock_guard lock(db_mu_);
    Range range;
    range.revision = revision_;
    int64_t at = options.at_revision;
    if (at > revision_) {
      return absl::OutOfRangeError(absl::StrCat(Where(), ": read at revision ", at,
                                                ", a future revision (current ", revision_, ")"));
    }
    if (at != 0 && at < compact_revision_) {
      return absl::OutOfRangeError(absl::StrCat(Where(), ": read at revision ", at,
                                                ", compacted (history starts at ",
                                                compact_revision_, ")"));
    }
    std::string where = end.empty() ? "key >= ?1" : "key >= ?1 AND key < ?2";
    std::string order = options.descending ? " ORDER BY key DESC" : " ORDER BY key";
    std::string limit = options.limit > 0 ? " LIMIT ?3" : "";
    std::string sql;
    if (at == 0 || at == revision_) {
      sql = absl::StrCat("SELECT key, value, create_revision, mod_revision, version FROM kv WHERE ",
                         where, order, limit);
    } else {
      // The newest change of each key at or before `at`, if it is a put. Compaction keeps,
      // below its revision, each key's newest put (see Compact), so this holds for any
      // revision not compacted.
      sql = absl::StrCat(
          "SELECT key, value, create_revision, revision, version FROM log AS l WHERE ", where,
          " AND deleted = 0 AND revision = (SELECT MAX(revision) FROM log WHERE key = l.key",
          " AND revision <= ?4)", order, limit);
    }
    absl::StatusOr<Statement> stmt = Prepare(sql);
    if (!stmt.ok()) return stmt.status();
    stmt->Bind(1, begin);
    if (!end.empty()) stmt->Bind(2, end);
    if (options.limit > 0) stmt->Bind(3, options.limit + 1);  // one more: is there more?
    if (at != 0 && at != revision_) stmt->Bind(4, at);
    for (;;) {
      absl::StatusOr<bool> row = stmt->Step();
      if (!row.ok()) return Error("read", row.status());
      if (!*row) break;
      if (options.limit > 0 && static_cast<int64_t>(range.kvs.size()) == options.limit) {
        range.more = true;
        break;
      }
      range.kvs.push_back(
          KeyValue{stmt->Bytes(0), stmt->Bytes(1), stmt->Int(2), stmt->Int(3), stmt->Int(4)});
    }
    return range;
  }

  absl::StatusOr<TxnResult> Txn(const std::vector<Compare>& conditions,
                                const std::vector<Op>& ops) override {
    if (absl::Status s = internal::CheckTxn(conditions, ops); !s.ok()) return s;
    std::lock_guard lock(db_mu_);
    if (absl::Status s = Exec("BEGIN IMMEDIATE"); !s.ok()) return Error("transaction", s);
    absl::StatusOr<Outcome> outcome = ApplyTxn(conditions, ops);
    if (!outcome.ok() || *outcome != Outcome::kWritten) {
      Exec("ROLLBACK").IgnoreError();
      if (!outcome.ok()) return Error("transaction (nothing written)", outcome.status());
      // Conditions failed, or the deletes found nothing: no revision is written.
      return TxnResult{*outcome == Outcome::kNothingToWrite, revision_};
    }
    // synchronous=FULL: COMMIT returns once the WAL is fsync'ed.
    if (absl::Status s = Exec("COMMIT"); !s.ok()) {
      Exec("ROLLBACK").IgnoreError();
      return Error("commit (nothing written)", s);
    }
    ++revision_;
    {
      std::lock_guard hub_lock(hub_->mu);
      hub_->revision = revision_;
    }
    hub_->wake.notify_all();
    return TxnResult{true, revision_};
  }

  absl::StatusOr<std::unique_ptr<IWatch>> Watch(std::string prefix, int64_t start_revision,
                                                WatchCallback callback) override {
    if (start_revision < 0) {
      return absl::InvalidArgumentError("store: watch from a negative revision");
    }
    // Under db_mu_ no transaction commits between reading the revision and registering, so
    // "from now on" loses nothing.
    std::lock_guard lock(db_mu_);
    if (start_revision != 0 && start_revision < compact_revision_) {
      return absl::OutOfRangeError(absl::StrCat(Where(), ": watch from revision ", start_revision,
                                                ", compacted (history starts at ",
                                                compact_revision_, ")"));
    }
    auto state = std::make_shared<WatchState>();
    state->end = PrefixEnd(prefix);
    state->begin = std::move(prefix);
    state->next = start_revision == 0 ? revision_ + 1 : start_revision;
    state->callback = std::move(callback);
    uint64_t id = 0;
    {
      std::lock_guard hub_lock(hub_->mu);
      id = hub_->next_id++;
      state->id = id;
      hub_->watches.emplace(id, std::move(state));
    }
    hub_->wake.notify_all();
    return std::make_unique<SqliteWatch>(hub_, id);
  }

  absl::Status Compact(int64_t revision) override {
    std::lock_guard lock(db_mu_);
    if (revision > revision_) {
      return absl::OutOfRangeError(absl::StrCat(Where(), ": compact to revision ", revision,
                                                ", a future revision (current ", revision_, ")"));
    }
    if (revision <= compact_revision_) return absl::OkStatus();
    if (absl::Status s = Exec("BEGIN IMMEDIATE"); !s.ok()) return Error("compact", s);
    // Below `revision`, keep only each key's newest change if it is a put: reads at
    // `revision` or later still find every live key; nothing reads deletions that old.
    absl::StatusOr<Statement> drop = Prepare(
        "DELETE FROM log WHERE revision < ?1 AND (deleted = 1 OR EXISTS (SELECT 1 FROM log AS "
        "newer WHERE newer.key = log.key AND newer.revision > log.revision AND "
        "newer.revision <= ?1))");
    absl::Status s = drop.ok() ? drop->Bind(1, revision).Run() : drop.status();
    if (s.ok()) s = SetMeta("compact_revision", revision);
    if (s.ok()) s = Exec("COMMIT");
    if (!s.ok()) {
      Exec("ROLLBACK").IgnoreError();
      return Error("compact", s);
    }
    compact_revision_ = revision;
    return absl::OkStatus();
  }

  std::string Describe() const override {
    return path_ == ":memory:" ? "sqlite::memory:" : absl::StrCat("sqlite:", path_);
  }

 private:
  std::string Where() const { return absl::StrCat("store ", Describe()); }

  absl::Status Error(absl::string_view what, const absl::Status& cause) const {
    return absl::Status(cause.code(), absl::StrCat(Where(), ": ", what, ": ", cause.message()));
  }

  absl::Status Exec(const char* sql) {
    char* message = nullptr;
    int rc = sqlite3_exec(db_.get(), sql, nullptr, nullptr, &message);
    if (rc == SQLITE_OK) return absl::OkStatus();
    std::string text = message != nullptr ? message : sqlite3_errstr(rc);
    sqlite3_free(message);
    // A full disk or a failing device is the environment, not our invariant.
    if (rc == SQLITE_FULL) return absl::ResourceExhaustedError(text);
    return absl::InternalError(text);
  }

  absl::StatusOr<Statement> Prepare(std::string_view sql) {
    sqlite3_stmt* stmt = nullptr;
    if (sqlite3_prepare_v2(db_.get(), sql.data(), static_cast<int>(sql.size()), &stmt, nullptr) !=
        SQLITE_OK) {
      return Error("prepare", absl::InternalError(sqlite3_errmsg(db_.get())));
    }
    return Statement(db_.get(), stmt);
  }

  absl::StatusOr<int64_t> Meta(const char* name) {
    absl::StatusOr<Statement> stmt = Prepare("SELECT value FROM meta WHERE name = ?1");
    if (!stmt.ok()) return stmt.status();
    stmt->BindText(1, name);
    absl::StatusOr<bool> row = stmt->Step();
    if (!row.ok()) return Error("read meta", row.status());
    if (!*row) return absl::DataLossError(absl::StrCat(Where(), ": meta '", name, "' missing"));
    return stmt->Int(0);
  }

  absl::Status SetMeta(const char* name, int64_t value) {
    absl::StatusOr<Statement> stmt = Prepare("UPDATE meta SET value = ?2 WHERE name = ?1");
    if (!stmt.ok()) return stmt.status();
    return stmt->BindText(1, name).Bind(2, value).Run();
  }

  enum class Outcome { kConditionFailed, kNothingToWrite, kWritten };

  // Inside BEGIN: checks the conditions, then writes the ops at revision_ + 1. The caller
  // commits kWritten and rolls back anything else.
  absl::StatusOr<Outcome> ApplyTxn(const std::vector<Compare>& conditions,
                                   const std::vector<Op>& ops) {
    for (const Compare& c : conditions) {
      absl::StatusOr<Statement> q = Prepare("SELECT mod_revision FROM kv WHERE key = ?1");
      if (!q.ok()) return q.status();
      q->Bind(1, c.key);
      absl::StatusOr<bool> row = q->Step();
      if (!row.ok()) return row.status();
      if ((*row ? q->Int(0) : 0) != c.mod_revision) return Outcome::kConditionFailed;
    }
    const int64_t rev = revision_ + 1;
    int64_t seq = 0;
    // Appends one change to the log.
    auto log = [&](std::string_view key, bool deleted, std::string_view value, int64_t create,
                   int64_t version) -> absl::Status {
      absl::StatusOr<Statement> ins = Prepare(
          "INSERT INTO log (revision, seq, key, deleted, value, create_revision, version) "
          "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)");
      if (!ins.ok()) return ins.status();
      ins->Bind(1, rev).Bind(2, seq++).Bind(3, key).Bind(4, int64_t{deleted}).Bind(6, create);
      ins->Bind(7, version);
      if (!deleted) ins->Bind(5, value);
      return ins->Run();
    };
    for (const Op& op : ops) {
      if (op.kind == Op::Kind::kPut) {
        absl::StatusOr<Statement> q =
            Prepare("SELECT create_revision, version FROM kv WHERE key = ?1");
        if (!q.ok()) return q.status();
        q->Bind(1, op.key);
        absl::StatusOr<bool> row = q->Step();
        if (!row.ok()) return row.status();
        int64_t create = *row ? q->Int(0) : rev;
        int64_t version = (*row ? q->Int(1) : 0) + 1;
        absl::StatusOr<Statement> put = Prepare(
            "INSERT OR REPLACE INTO kv (key, value, create_revision, mod_revision, version) "
            "VALUES (?1, ?2, ?3, ?4, ?5)");
        if (!put.ok()) return put.status();
        put->Bind(1, op.key).Bind(2, op.value).Bind(3, create).Bind(4, rev).Bind(5, version);
        if (absl::Status s = put->Run(); !s.ok()) return s;
        if (absl::Status s = log(op.key, false, op.value, create, version); !s.ok()) return s;
        continue;
      }
      internal::KeyRange range = internal::DeleteRange(op);
      absl::StatusOr<Statement> q =
          Prepare(range.end.empty() ? "SELECT key FROM kv WHERE key >= ?1 ORDER BY key"
                                    : "SELECT key FROM kv WHERE key >= ?1 AND key < ?2 "
                                      "ORDER BY key");
      if (!q.ok()) return q.status();
      q->Bind(1, range.begin);
      if (!range.end.empty()) q->Bind(2, range.end);
      std::vector<std::string> keys;
      for (;;) {
        absl::StatusOr<bool> row = q->Step();
        if (!row.ok()) return row.status();
        if (!*row) break;
        keys.push_back(q->Bytes(0));
      }
      for (const std::string& key : keys) {
        absl::StatusOr<Statement> del = Prepare("DELETE FROM kv WHERE key = ?1");
        if (!del.ok()) return del.status();
        if (absl::Status s = del->Bind(1, key).Run(); !s.ok()) return s;
        if (absl::Status s = log(key, true, {}, 0, 0); !s.ok()) return s;
      }
    }
    if (seq == 0) return Outcome::kNothingToWrite;
    if (absl::Status s = SetMeta("revision", rev); !s.ok()) return s;
    return Outcome::kWritten;
  }

  // The changes under [begin, end) in revisions [from, to], in order.
  absl::StatusOr<std::vector<Event>> ReadEvents(const WatchState& w, int64_t from, int64_t to) {
    std::lock_guard lock(db_mu_);
    if (from < compact_revision_) {
      return absl::OutOfRangeError(absl::StrCat(Where(), ": watch fell behind compaction (at ",
                                                from, ", history starts at ", compact_revision_,
                                                "); re-read and watch again"));
    }
    absl::StatusOr<Statement> q = Prepare(absl::StrCat(
        "SELECT revision, key, deleted, value, create_revision, version FROM log WHERE ",
        "revision >= ?3 AND revision <= ?4 AND key >= ?1", w.end.empty() ? "" : " AND key < ?2",
        " ORDER BY revision, seq"));
    if (!q.ok()) return q.status();
    q->Bind(1, w.begin).Bind(3, from).Bind(4, to);
    if (!w.end.empty()) q->Bind(2, w.end);
    std::vector<Event> events;
    for (;;) {
      absl::StatusOr<bool> row = q->Step();
      if (!row.ok()) return Error("watch read", row.status());
      if (!*row) break;
      Event e;
      e.type = q->Int(2) != 0 ? Event::Type::kDelete : Event::Type::kPut;
      e.kv.key = q->Bytes(1);
      e.kv.mod_revision = q->Int(0);
      if (e.type == Event::Type::kPut) {
        e.kv.value = q->Bytes(3);
        e.kv.create_revision = q->Int(4);
        e.kv.version = q->Int(5);
      }
      events.push_back(std::move(e));
    }
    return events;
  }

  // The dispatcher: after each commit (or new watch), brings every watch up to the last
  // revision, a window at a time, calling back without holding any lock.
  void Dispatch() {
    std::unique_lock lock(hub_->mu);
    for (;;) {
      hub_->wake.wait(lock, [&] {
        if (hub_->stopping) return true;
        return std::any_of(hub_->watches.begin(), hub_->watches.end(),
                           [&](const auto& w) { return w.second->next <= hub_->revision; });
      });
      if (hub_->stopping) return;
      std::vector<std::shared_ptr<WatchState>> due;
      for (const auto& [id, w] : hub_->watches) {
        if (w->next <= hub_->revision) due.push_back(w);
      }
      const int64_t upto = hub_->revision;
      for (const std::shared_ptr<WatchState>& w : due) {
        int64_t from = w->next;
        int64_t to = std::min(upto, from + kWatchWindow - 1);
        lock.unlock();
        absl::StatusOr<std::vector<Event>> events = ReadEvents(*w, from, to);
        lock.lock();
        if (hub_->stopping) return;
        if (!hub_->watches.contains(w->id)) continue;  // destroyed meanwhile
        if (events.ok()) {
          w->next = to + 1;
          if (events->empty()) continue;
        } else {
          hub_->watches.erase(w->id);  // an error ends the watch
        }
        hub_->delivering = w->id;
        lock.unlock();
        w->callback(std::move(events));
        lock.lock();
        hub_->delivering = 0;
        hub_->delivered.notify_all();
        if (hub_->stopping) return;
      }
    }
  }

  const std::string path_;
  FileDescriptor lock_file_;  // flock'ed for the store's life: destroyed after db_ (closed)
  DbPtr db_;
  std::mutex db_mu_;  // the connection and the counters below
  int64_t revision_ = 0;
  int64_t compact_revision_ = 0;
  std::shared_ptr<WatchHub> hub_;
  std::thread dispatcher_;
};

// Takes `path`-lock for this process, or says who holds it.
absl::StatusOr<FileDescriptor> LockStoreFile(const std::string& path) {
  std::string lock_path = path + "-lock";
  FileDescriptor fd(open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
  if (fd.get() < 0) {
    return absl::PermissionDeniedError(absl::StrCat("store sqlite:", path, ": cannot open lock ",
                                                    lock_path, ": ", std::strerror(errno)));
  }
  if (flock(fd.get(), LOCK_EX | LOCK_NB) != 0) {
    if (errno != EWOULDBLOCK) {
      return absl::InternalError(absl::StrCat("store sqlite:", path, ": cannot lock ", lock_path,
                                              ": ", std::strerror(errno)));
    }
    char buf[32] = {};
    ssize_t n = pread(fd.get(), buf, sizeof(buf) - 1, 0);
    std::string owner = n > 0 ? std::string(absl::StripAsciiWhitespace(std::string(buf, n)))
                              : std::string("unknown");
    return absl::FailedPreconditionError(absl::StrCat(
        "store sqlite:", path, " is in use by another process (pid ", owner, ", lock ", lock_path,
        "): one server process owns a SQLite store; use etcd to run several servers"));
  }
  std::string pid = absl::StrCat(getpid(), "\n");
  if (ftruncate(fd.get(), 0) != 0 ||
      pwrite(fd.get(), pid.data(), pid.size(), 0) != static_cast<ssize_t>(pid.size())) {
    return absl::InternalError(absl::StrCat("store sqlite:", path, ": cannot write ", lock_path,
                                            ": ", std::strerror(errno)));
  }
  return fd;
}

}  // namespace

absl::StatusOr<std::unique_ptr<IStore>> OpenSqliteStore(const std::string& path) {
  if (path.empty()) return absl::InvalidArgumentError("store: empty SQLite path");
  FileDescriptor lock_file;
  if (path != ":memory:") {
    absl::StatusOr<FileDescriptor> locked = LockStoreFile(path);
    if (!locked.ok()) return locked.status();
    lock_file = std::move(*locked);
  }
  sqlite3* raw = nullptr;
  int rc = sqlite3_open_v2(path.c_str(), &raw, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nullptr);
  DbPtr db(raw);
  if (rc != SQLITE_OK) {
    return absl::UnavailableError(
        absl::StrCat("store sqlite:", path,
                     ": cannot open: ", raw != nullptr ? sqlite3_errmsg(raw) : sqlite3_errstr(rc)));
  }
  auto store = std::make_unique<SqliteStore>(path, std::move(db), std::move(lock_file));
  if (absl::Status s = store->Init(); !s.ok()) {
    if (absl::StartsWith(s.message(), "store ")) return s;
    return absl::Status(s.code(), absl::StrCat("store ", store->Describe(), ": ", s.message()));
  }
  return store;
}

}  // namespace bulkhead::store
