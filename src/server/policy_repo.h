// The versioned policy set of the control plane, kept in an IStore.
//
// Every change (apply, delete, rollback, mode) is validated in full against the whole
// resulting set first, then committed in one store transaction that writes the changed
// objects, a revision record (author, time, message, origin, every object's before and
// after) and the new head, guarded by the head's store revision, so two servers applying at
// once never interleave and a crash never leaves half a revision. Revisions are numbered
// 1, 2, 3, ... and never erased; rollback is a new revision whose content is an old one's.
//
// The set at the head is kept in memory, so that a change reads only the head key (not every
// object): the cache is the set at one head, tagged with the head key's store revision. Every
// use reads the head key first; when it moved (another replica, or a write this process did
// not see), the cache catches up by the revision records in between, or re-reads the whole
// set when that fails. The head's compare-and-swap orders the commit as before.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "server/audit.h"
#include "server/objects.h"
#include "store/store.h"

namespace bulkhead::server {

// Store keys (docs/store.md, "Keys used by the server").
inline constexpr char kPolicyHeadKey[] = "/bulkhead/policy/head";
inline constexpr char kPolicyObjectsPrefix[] = "/bulkhead/policy/objects/";
inline constexpr char kPolicyRevisionsPrefix[] = "/bulkhead/policy/revisions/";

// Who asks, for revision records and the audit log.
struct Actor {
  std::string name;    // the API token's name, or "local" for the CLI on the server's host
  std::string role;    // admin, editor, viewer, auditor
  std::string origin;  // the client's address
};

struct RevisionInfo {
  int64_t number = 0;
  std::string operation;  // "apply", "delete", "rollback", "mode"
  std::string author;
  std::string origin;
  absl::Time time;
  std::string message;
  int64_t rollback_to = 0;  // "rollback": the revision whose content this is
  int creates = 0, updates = 0, deletes = 0;
  int64_t store_revision = 0;  // the store transaction that committed it
};

struct RevisionRecord {
  RevisionInfo info;
  std::vector<ObjectChange> changes;
};

// What a change did or, with dry_run, would do.
struct ChangeResult {
  // Validation of the input and of the resulting set; any error means nothing changed.
  std::vector<policy::Diagnostic> diagnostics;
  bool valid = true;
  std::vector<ObjectChange> changes;  // empty: the set already is what was asked
  int64_t revision = 0;  // the new revision, or the head when nothing changed or dry_run
  bool committed = false;
  std::vector<ObjectId> file_objects;  // Apply, Diff: the objects the files declare
};

struct ApplyRequest {
  std::vector<policy::Source> files;  // manifests as the client read them (name = its path)
  bool prune = false;                 // also delete stored objects the files do not contain
  bool dry_run = false;               // validate and compute the changes, commit nothing
  std::string message;
};

class PolicyRepository {
 public:
  using Clock = std::function<absl::Time()>;
  // With `audit`, every committed revision writes its audit entry in its own transaction.
  explicit PolicyRepository(store::IStore* store, Clock clock = absl::Now,
                            const AuditLog* audit = nullptr);

  // Makes the stored set contain the files' objects (and only them with prune).
  absl::StatusOr<ChangeResult> Apply(const ApplyRequest& request, const Actor& actor);

  // The changes Apply would make (no validation of the resulting set beyond the files').
  absl::StatusOr<ChangeResult> Diff(const std::vector<policy::Source>& files, bool prune);

  // Deletes objects by id; an id that is not stored is an error (nothing deleted).
  absl::StatusOr<ChangeResult> Delete(const std::vector<ObjectId>& ids, bool dry_run,
                                      const std::string& message, const Actor& actor);

  // Makes the set what it was at `revision`, as a new revision.
  absl::StatusOr<ChangeResult> Rollback(int64_t revision, bool dry_run, const std::string& message,
                                        const Actor& actor);

  // Sets the bulkhead.io/mode annotation of a stored policy, or of a Namespace (creating
  // the Namespace object when the set has none), as a new revision.
  absl::StatusOr<ChangeResult> SetMode(const ObjectId& target, const std::string& mode,
                                       const Actor& actor);

  // The head revision (0 before the first change) and the set at it, or at an older one.
  absl::StatusOr<std::pair<int64_t, ObjectSet>> Read(int64_t revision = 0);

  // Revisions newest first, at most `limit` (0: all).
  absl::StatusOr<std::vector<RevisionInfo>> History(int limit = 0);
  absl::StatusOr<RevisionRecord> Revision(int64_t number);

  // The head and its set read from the store alone (every object), bypassing the cache: what
  // Read() must always equal. For tests and diagnostics.
  absl::StatusOr<std::pair<int64_t, ObjectSet>> ReadFromStore();

  // How the cached set was brought up to date, for tests and the benchmark's explanations.
  struct CacheStats {
    int64_t hits = 0;        // the head had not moved
    int64_t catch_ups = 0;   // moved: caught up by revision records
    int64_t full_reads = 0;  // every object read (the first use, or a catch-up that failed)
    int64_t commits = 0;     // updated by this repository's own commit
  };
  CacheStats cache_stats();

 private:
  struct Head {
    int64_t revision = 0;
    int64_t mod_revision = 0;  // of the head key in the store, 0 when absent
    int64_t read_at = 0;       // the store revision of the read
  };
  absl::StatusOr<Head> ReadHead(int64_t at_store_revision = 0);
  struct Current {
    Head head;
    ObjectSet set;
  };
  // The head and the set, read at one store revision.
  absl::StatusOr<Current> ReadCurrent();
  absl::StatusOr<ObjectSet> ReadObjects(int64_t at_store_revision);
  // The head (read now) and the set at it, from the cache when the head key has not moved.
  struct Cached {
    Head head;
    std::shared_ptr<const ObjectSet> set;
  };
  absl::StatusOr<Cached> CurrentSet();
  // Installs `c` unless the cache already holds a later head.
  void Install(Cached c, int64_t stale_mod_revision = -1);
  // Validates `target` in full and commits target - current as one revision. `compute`
  // builds the target from the current set (called again when another writer got first).
  absl::StatusOr<ChangeResult> Change(
      const std::function<absl::StatusOr<ObjectSet>(const ObjectSet& current, ChangeResult*)>&
          compute,
      const RevisionInfo& info, const Actor& actor, bool dry_run);

  // Validates a whole set, reparsing only objects that changed since the last validation.
  std::vector<policy::Diagnostic> ValidateSet(const ObjectSet& set);

  store::IStore* store_;
  Clock clock_;
  const AuditLog* audit_;
  // Changes of one process queue here rather than race on the head (the compare-and-swap
  // still orders them against other replicas); guards the caches below.
  std::mutex change_mu_;
  policy::LoadCache validate_cache_;
  std::map<ObjectId, std::pair<std::string, std::string>> pretty_;  // json -> pretty text
  std::mutex cache_mu_;  // cache_ and stats_ (Read does not take change_mu_)
  std::optional<Cached> cache_;
  CacheStats stats_;
};

// Revision records as JSON (the store's value, and the REST API's).
std::string RevisionRecordToJson(const RevisionRecord& r);
absl::StatusOr<RevisionRecord> RevisionRecordFromJson(std::string_view text);

}  // namespace bulkhead::server
