// PolicyRepository: validate in full, then one guarded store transaction per revision.
#include "server/policy_repo.h"

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace bulkhead::server {
namespace {

using nlohmann::json;
using policy::Diagnostic;

// How often a change is recomputed when another writer commits between its read and its
// transaction, before giving up with Aborted. Every lost attempt means another writer made
// progress. The bound is generous because the race is not fair between replicas: the writer
// that just committed has the head in memory, while the one that lost must first read the
// winner's revision record, one store round trip more, so against a replica applying
// back-to-back it may lose many times in a row (8 attempts lost 4 of 6 runs of
// tests/server/policy_cache_etcd_test.cc; the race ends when the other writer pauses).
constexpr int kMaxAttempts = 64;

std::string RevisionKey(int64_t n) { return absl::StrFormat("%s%020d", kPolicyRevisionsPrefix, n); }

std::string ObjectKey(const ObjectId& id) { return absl::StrCat(kPolicyObjectsPrefix, id.Key()); }

void Append(std::vector<Diagnostic>* to, std::vector<Diagnostic> from) {
  to->insert(to->end(), std::make_move_iterator(from.begin()), std::make_move_iterator(from.end()));
}

Diagnostic Error(std::string object, std::string field, std::string message) {
  Diagnostic d;
  d.severity = Diagnostic::Severity::kError;
  d.object = std::move(object);
  d.field = std::move(field);
  d.message = std::move(message);
  return d;
}

// The files' objects, or their diagnostics when they are not valid on their own.
struct FileObjects {
  std::vector<Diagnostic> diagnostics;
  std::vector<StoredObject> objects;
  bool ok = false;
};

FileObjects ReadFiles(const std::vector<policy::Source>& files) {
  FileObjects out;
  policy::LoadResult load = policy::LoadSources(files);
  bool load_ok = load.ok();
  out.diagnostics = std::move(load.diagnostics);
  if (!load_ok) return out;
  SplitResult split = SplitManifests(files);
  bool split_ok = split.ok();
  Append(&out.diagnostics, std::move(split.diagnostics));
  if (!split_ok) return out;
  out.objects = std::move(split.objects);
  out.ok = true;
  return out;
}

json ChangeToJson(const ObjectChange& c) {
  json j = {
      {"action", ActionName(c.action)},   {"group", c.id.group}, {"kind", c.id.kind},
      {"namespace", c.id.namespace_name}, {"name", c.id.name},   {"apiVersion", c.api_version}};
  if (!c.before.empty()) j["before"] = json::parse(c.before);
  if (!c.after.empty()) j["after"] = json::parse(c.after);
  return j;
}

}  // namespace

std::string RevisionRecordToJson(const RevisionRecord& r) {
  json changes = json::array();
  for (const ObjectChange& c : r.changes) changes.push_back(ChangeToJson(c));
  json j = {{"revision", r.info.number},
            {"operation", r.info.operation},
            {"author", r.info.author},
            {"origin", r.info.origin},
            {"time", absl::FormatTime(absl::RFC3339_full, r.info.time, absl::UTCTimeZone())},
            {"message", r.info.message},
            {"creates", r.info.creates},
            {"updates", r.info.updates},
            {"deletes", r.info.deletes},
            {"changes", std::move(changes)}};
  if (r.info.rollback_to != 0) j["rollbackTo"] = r.info.rollback_to;
  if (r.info.store_revision != 0) j["storeRevision"] = r.info.store_revision;
  return j.dump();
}

absl::StatusOr<RevisionRecord> RevisionRecordFromJson(std::string_view text) {
  RevisionRecord r;
  try {
    json j = json::parse(text);
    r.info.number = j.at("revision").get<int64_t>();
    r.info.operation = j.at("operation").get<std::string>();
    r.info.author = j.at("author").get<std::string>();
    r.info.origin = j.value("origin", "");
    std::string err;
    if (!absl::ParseTime(absl::RFC3339_full, j.at("time").get<std::string>(), &r.info.time, &err)) {
      return absl::DataLossError("revision record: time: " + err);
    }
    r.info.message = j.value("message", "");
    r.info.rollback_to = j.value("rollbackTo", int64_t{0});
    r.info.store_revision = j.value("storeRevision", int64_t{0});
    r.info.creates = j.value("creates", 0);
    r.info.updates = j.value("updates", 0);
    r.info.deletes = j.value("deletes", 0);
    for (const json& c : j.at("changes")) {
      ObjectChange oc;
      std::string action = c.at("action").get<std::string>();
      if (action == "create") {
        oc.action = ObjectChange::Action::kCreate;
      } else if (action == "update") {
        oc.action = ObjectChange::Action::kUpdate;
      } else if (action == "delete") {
        oc.action = ObjectChange::Action::kDelete;
      } else {
        return absl::DataLossError("revision record: unknown action " + action);
      }
      oc.id = ObjectId{c.at("group").get<std::string>(), c.at("kind").get<std::string>(),
                       c.at("namespace").get<std::string>(), c.at("name").get<std::string>()};
      oc.api_version = c.value("apiVersion", "");
      if (c.contains("before")) oc.before = c["before"].dump();
      if (c.contains("after")) oc.after = c["after"].dump();
      r.changes.push_back(std::move(oc));
    }
  } catch (const json::exception& e) {
    return absl::DataLossError(absl::StrCat("revision record is not valid: ", e.what()));
  }
  return r;
}

PolicyRepository::PolicyRepository(store::IStore* store, Clock clock, const AuditLog* audit)
    : store_(store), clock_(std::move(clock)), audit_(audit) {}

std::vector<Diagnostic> PolicyRepository::ValidateSet(const ObjectSet& set) {
  // Sources named "Kind ns/name", pretty-printed so that diagnostics point at a line; the
  // text and the parse of an unchanged object are reused.
  std::vector<policy::Source> sources;
  sources.reserve(set.size());
  for (const auto& [id, o] : set) {
    auto& [json_text, pretty] = pretty_[id];
    if (json_text != o.json) {
      json_text = o.json;
      pretty = json::parse(o.json).dump(2);
    }
    sources.push_back({id.Display(), pretty});
  }
  std::erase_if(pretty_, [&](const auto& kv) { return set.count(kv.first) == 0; });
  std::vector<Diagnostic> errors;
  for (Diagnostic& d : policy::LoadSources(sources, &validate_cache_).diagnostics) {
    if (d.severity == Diagnostic::Severity::kError) errors.push_back(std::move(d));
  }
  return errors;
}

absl::StatusOr<PolicyRepository::Head> PolicyRepository::ReadHead(int64_t at_store_revision) {
  absl::StatusOr<store::Range> r = store_->Get(kPolicyHeadKey, false, at_store_revision);
  if (!r.ok()) return r.status();
  Head head;
  head.read_at = r->revision;
  if (r->kvs.empty()) return head;
  try {
    head.revision = json::parse(r->kvs[0].value).at("revision").get<int64_t>();
  } catch (const json::exception& e) {
    return absl::DataLossError(absl::StrCat(kPolicyHeadKey, " is not valid: ", e.what()));
  }
  head.mod_revision = r->kvs[0].mod_revision;
  return head;
}

absl::StatusOr<ObjectSet> PolicyRepository::ReadObjects(int64_t at_store_revision) {
  absl::StatusOr<store::Range> r = store_->Get(kPolicyObjectsPrefix, true, at_store_revision);
  if (!r.ok()) return r.status();
  ObjectSet set;
  for (const store::KeyValue& kv : r->kvs) {
    ObjectId id;
    if (!ObjectId::FromKey(
            std::string_view(kv.key).substr(std::string_view(kPolicyObjectsPrefix).size()), &id)) {
      return absl::DataLossError("store key " + kv.key + " does not name an object");
    }
    std::string api_version;
    try {
      api_version = json::parse(kv.value).value("apiVersion", "");
    } catch (const json::exception& e) {
      return absl::DataLossError(absl::StrCat("store key ", kv.key, ": ", e.what()));
    }
    set[id] = StoredObject{id, std::move(api_version), kv.value};
  }
  return set;
}

absl::StatusOr<PolicyRepository::Current> PolicyRepository::ReadCurrent() {
  // The head and the objects at one store revision, so they belong together: the head's own
  // read gives that revision.
  absl::StatusOr<Head> head = ReadHead();
  if (!head.ok()) return head.status();
  Current c;
  c.head = *head;
  absl::StatusOr<ObjectSet> set = ReadObjects(head->read_at);
  if (!set.ok()) return set.status();
  c.set = *std::move(set);
  return c;
}

absl::StatusOr<std::pair<int64_t, ObjectSet>> PolicyRepository::ReadFromStore() {
  absl::StatusOr<Current> current = ReadCurrent();
  if (!current.ok()) return current.status();
  return std::make_pair(current->head.revision, std::move(current->set));
}

void PolicyRepository::Install(Cached c, int64_t stale_mod_revision) {
  std::lock_guard lock(cache_mu_);
  // A slower caller must not replace a later state with its older one; but a cache found
  // stale (the store went back: restored, or recreated) is replaced whatever it holds.
  if (!cache_ || c.head.read_at >= cache_->head.read_at ||
      cache_->head.mod_revision == stale_mod_revision) {
    cache_ = std::move(c);
  }
}

PolicyRepository::CacheStats PolicyRepository::cache_stats() {
  std::lock_guard lock(cache_mu_);
  return stats_;
}

absl::StatusOr<PolicyRepository::Cached> PolicyRepository::CurrentSet() {
  absl::StatusOr<Head> head = ReadHead();
  if (!head.ok()) return head.status();
  std::optional<Cached> have;
  {
    std::lock_guard lock(cache_mu_);
    have = cache_;
  }
  if (have && have->head.mod_revision == head->mod_revision &&
      have->head.revision == head->revision) {
    std::lock_guard lock(cache_mu_);
    ++stats_.hits;
    have->head.read_at = head->read_at;
    return *std::move(have);
  }
  int64_t stale = have ? have->head.mod_revision : -1;
  if (have && head->revision > have->head.revision &&
      head->mod_revision > have->head.mod_revision) {
    // Moved forward: the records in between say what changed (they are immutable once the
    // head names them). Any failure falls back to reading every object.
    auto next = std::make_shared<ObjectSet>(*have->set);
    bool complete = true;
    for (int64_t n = have->head.revision + 1; n <= head->revision && complete; ++n) {
      absl::StatusOr<RevisionRecord> rec = Revision(n);
      if (!rec.ok()) {
        complete = false;
        break;
      }
      for (const ObjectChange& c : rec->changes) {
        if (c.action == ObjectChange::Action::kDelete) {
          next->erase(c.id);
        } else {
          (*next)[c.id] = StoredObject{c.id, c.api_version, c.after};
        }
      }
    }
    if (complete) {
      Cached c{*head, std::move(next)};
      Install(c, stale);
      std::lock_guard lock(cache_mu_);
      ++stats_.catch_ups;
      return c;
    }
  }
  absl::StatusOr<ObjectSet> set = ReadObjects(head->read_at);
  if (!set.ok()) return set.status();
  Cached c{*head, std::make_shared<const ObjectSet>(*std::move(set))};
  Install(c, stale);
  std::lock_guard lock(cache_mu_);
  ++stats_.full_reads;
  return c;
}

absl::StatusOr<std::pair<int64_t, ObjectSet>> PolicyRepository::Read(int64_t revision) {
  absl::StatusOr<Cached> current = CurrentSet();
  if (!current.ok()) return current.status();
  const Head* head = &current->head;
  if (revision == 0 || revision == head->revision) {
    return std::make_pair(head->revision, ObjectSet(*current->set));
  }
  if (revision < 0 || revision > head->revision) {
    return absl::NotFoundError(
        absl::StrCat("revision ", revision, " does not exist (head is ", head->revision, ")"));
  }
  ObjectSet at = *current->set;
  for (int64_t n = head->revision; n > revision; --n) {
    absl::StatusOr<RevisionRecord> rec = Revision(n);
    if (!rec.ok()) return rec.status();
    at = Undo(std::move(at), rec->changes);
  }
  return std::make_pair(revision, std::move(at));
}

absl::StatusOr<RevisionRecord> PolicyRepository::Revision(int64_t number) {
  absl::StatusOr<store::Range> r = store_->Get(RevisionKey(number));
  if (!r.ok()) return r.status();
  if (r->kvs.empty())
    return absl::NotFoundError(absl::StrCat("revision ", number, " does not exist"));
  absl::StatusOr<RevisionRecord> rec = RevisionRecordFromJson(r->kvs[0].value);
  if (rec.ok() && rec->info.store_revision == 0) rec->info.store_revision = r->kvs[0].mod_revision;
  return rec;
}

absl::StatusOr<std::vector<RevisionInfo>> PolicyRepository::History(int limit) {
  absl::StatusOr<store::Range> r = store_->Get(kPolicyRevisionsPrefix, true);
  if (!r.ok()) return r.status();
  std::vector<RevisionInfo> out;
  for (size_t i = r->kvs.size(); i-- > 0;) {  // newest first
    const store::KeyValue& kv = r->kvs[i];
    if (limit > 0 && static_cast<int>(out.size()) >= limit) break;
    absl::StatusOr<RevisionRecord> rec = RevisionRecordFromJson(kv.value);
    if (!rec.ok()) return rec.status();
    rec->info.store_revision = kv.mod_revision;
    out.push_back(std::move(rec->info));
  }
  return out;
}

absl::StatusOr<ChangeResult> PolicyRepository::Change(
    const std::function<absl::StatusOr<ObjectSet>(const ObjectSet&, ChangeResult*)>& compute,
    const RevisionInfo& info, const Actor& actor, bool dry_run) {
  std::lock_guard lock(change_mu_);
  for (int attempt = 0; attempt < kMaxAttempts; ++attempt) {
    absl::StatusOr<Cached> read = CurrentSet();
    if (!read.ok()) return read.status();
    const Head* head = &read->head;
    const ObjectSet* current = read->set.get();

    ChangeResult result;
    result.revision = head->revision;
    absl::StatusOr<ObjectSet> target = compute(*current, &result);
    if (!target.ok()) return target.status();
    if (!result.valid) return result;
    result.changes = Changes(*current, *target);
    if (result.changes.empty()) return result;
    std::vector<Diagnostic> errors = ValidateSet(*target);
    if (!errors.empty()) {
      result.valid = false;
      Append(&result.diagnostics, std::move(errors));
      result.changes.clear();
      return result;
    }
    if (dry_run) return result;

    RevisionRecord record;
    record.info = info;
    record.info.number = head->revision + 1;
    record.info.time = clock_();
    for (const ObjectChange& c : result.changes) {
      switch (c.action) {
        case ObjectChange::Action::kCreate:
          ++record.info.creates;
          break;
        case ObjectChange::Action::kUpdate:
          ++record.info.updates;
          break;
        case ObjectChange::Action::kDelete:
          ++record.info.deletes;
          break;
      }
    }
    record.changes = result.changes;

    std::vector<store::Op> ops;
    for (const ObjectChange& c : result.changes) {
      if (c.action == ObjectChange::Action::kDelete) {
        ops.push_back(store::Op::Delete(ObjectKey(c.id)));
      } else {
        ops.push_back(store::Op::Put(ObjectKey(c.id), c.after));
      }
    }
    ops.push_back(store::Op::Put(RevisionKey(record.info.number), RevisionRecordToJson(record)));
    ops.push_back(
        store::Op::Put(std::string(kPolicyHeadKey), json{{"revision", record.info.number}}.dump()));
    if (audit_ != nullptr) {
      AuditEntry e;
      e.time = record.info.time;
      e.actor = actor.name;
      e.role = actor.role;
      e.origin = actor.origin;
      e.action = record.info.operation;
      e.target = "policy set";
      e.revision = record.info.number;
      e.outcome = "ok";
      e.detail = absl::StrCat(record.info.message.empty() ? "" : record.info.message + "\n",
                              RenderDiff(record.changes));
      ops.push_back(audit_->EntryOp(std::move(e)));
    }
    absl::StatusOr<store::TxnResult> txn =
        store_->Txn({store::Compare{std::string(kPolicyHeadKey), head->mod_revision}}, ops);
    if (!txn.ok()) return txn.status();
    if (!txn->succeeded) continue;  // another writer committed first: recompute on its result
    // The head key was written by this transaction, so its store revision is the head's.
    Install(Cached{Head{record.info.number, txn->revision, txn->revision},
                   std::make_shared<const ObjectSet>(*std::move(target))});
    {
      std::lock_guard cache_lock(cache_mu_);
      ++stats_.commits;
    }
    result.revision = record.info.number;
    result.committed = true;
    return result;
  }
  return absl::AbortedError(absl::StrCat("the policy set kept changing under this request (",
                                         kMaxAttempts, " attempts); retry"));
}

absl::StatusOr<ChangeResult> PolicyRepository::Apply(const ApplyRequest& request,
                                                     const Actor& actor) {
  FileObjects files = ReadFiles(request.files);
  if (!files.ok || files.objects.empty()) {
    ChangeResult result;
    result.diagnostics = std::move(files.diagnostics);
    if (files.ok) {
      result.diagnostics.push_back(Error("", "", "the files hold no object to store"));
    }
    result.valid = false;
    absl::StatusOr<Head> head = ReadHead();
    if (!head.ok()) return head.status();
    result.revision = head->revision;
    return result;
  }
  RevisionInfo info;
  info.operation = "apply";
  info.author = actor.name;
  info.origin = actor.origin;
  info.message = request.message;
  auto compute = [&](const ObjectSet& current, ChangeResult* result) -> absl::StatusOr<ObjectSet> {
    result->diagnostics = files.diagnostics;  // warnings and notices of the files
    for (const StoredObject& o : files.objects) result->file_objects.push_back(o.id);
    ObjectSet target = request.prune ? ObjectSet{} : current;
    for (const StoredObject& o : files.objects) target[o.id] = o;
    return target;
  };
  return Change(compute, info, actor, request.dry_run);
}

absl::StatusOr<ChangeResult> PolicyRepository::Diff(const std::vector<policy::Source>& files,
                                                    bool prune) {
  FileObjects read = ReadFiles(files);
  ChangeResult result;
  result.diagnostics = std::move(read.diagnostics);
  absl::StatusOr<std::pair<int64_t, ObjectSet>> current = Read();
  if (!current.ok()) return current.status();
  result.revision = current->first;
  if (!read.ok) {
    result.valid = false;
    return result;
  }
  ObjectSet target = prune ? ObjectSet{} : current->second;
  for (const StoredObject& o : read.objects) {
    target[o.id] = o;
    result.file_objects.push_back(o.id);
  }
  result.changes = Changes(current->second, target);
  return result;
}

absl::StatusOr<ChangeResult> PolicyRepository::Delete(const std::vector<ObjectId>& ids,
                                                      bool dry_run, const std::string& message,
                                                      const Actor& actor) {
  RevisionInfo info;
  info.operation = "delete";
  info.author = actor.name;
  info.origin = actor.origin;
  info.message = message;
  auto compute = [&](const ObjectSet& current, ChangeResult* result) -> absl::StatusOr<ObjectSet> {
    ObjectSet target = current;
    for (const ObjectId& id : ids) {
      if (target.erase(id) == 0) {
        result->valid = false;
        result->diagnostics.push_back(Error(id.Display(), "", "not found in the policy set"));
      }
    }
    return target;
  };
  return Change(compute, info, actor, dry_run);
}

absl::StatusOr<ChangeResult> PolicyRepository::Rollback(int64_t revision, bool dry_run,
                                                        const std::string& message,
                                                        const Actor& actor) {
  RevisionInfo info;
  info.operation = "rollback";
  info.author = actor.name;
  info.origin = actor.origin;
  info.message = message.empty() ? absl::StrCat("rollback to revision ", revision) : message;
  info.rollback_to = revision;
  absl::StatusOr<std::pair<int64_t, ObjectSet>> at = Read(revision);
  if (!at.ok()) return at.status();
  // The content of `revision` does not change once it exists, so it is read once; the
  // current set is re-read by Change on every attempt.
  ObjectSet wanted = std::move(at->second);
  auto compute = [&](const ObjectSet&, ChangeResult*) -> absl::StatusOr<ObjectSet> {
    return wanted;
  };
  return Change(compute, info, actor, dry_run);
}

absl::StatusOr<ChangeResult> PolicyRepository::SetMode(const ObjectId& target,
                                                       const std::string& mode,
                                                       const Actor& actor) {
  RevisionInfo info;
  info.operation = "mode";
  info.author = actor.name;
  info.origin = actor.origin;
  info.message = absl::StrCat("mode ", mode, " for ", target.Display());
  auto compute = [&](const ObjectSet& current, ChangeResult* result) -> absl::StatusOr<ObjectSet> {
    ObjectSet set = current;
    auto it = set.find(target);
    json obj;
    if (it != set.end()) {
      obj = json::parse(it->second.json);
    } else if (target.kind == "Namespace" && target.group.empty()) {
      obj = {{"apiVersion", "v1"}, {"kind", "Namespace"}, {"metadata", {{"name", target.name}}}};
    } else if (target.kind == "WorkloadMode" && target.group == "bulkhead.io") {
      // A workload's mode: workloads are reported by agents, so the mode is an object of
      // its own, named like the workload (it may be set before the workload starts).
      obj = {{"apiVersion", "bulkhead.io/v1alpha1"},
             {"kind", "WorkloadMode"},
             {"metadata", {{"name", target.name}, {"namespace", target.namespace_name}}},
             {"spec", json::object()}};
    } else {
      result->valid = false;
      result->diagnostics.push_back(Error(target.Display(), "", "not found in the policy set"));
      return set;
    }
    if (target.group == "bulkhead.io" && target.kind != "Inventory") {
      // Native policies carry their mode in spec.mode; an annotation that disagrees with it
      // is refused by the loader, so the annotation goes.
      obj["spec"]["mode"] = mode;
      if (obj["metadata"].contains("annotations")) {
        obj["metadata"]["annotations"].erase("bulkhead.io/mode");
        if (obj["metadata"]["annotations"].empty()) obj["metadata"].erase("annotations");
      }
    } else {
      obj["metadata"]["annotations"]["bulkhead.io/mode"] = mode;
    }
    StoredObject o{target, obj.value("apiVersion", ""), obj.dump()};
    set[target] = std::move(o);
    return set;
  };
  return Change(compute, info, actor, false);
}

}  // namespace bulkhead::server
