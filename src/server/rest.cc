// REST routes: authenticate, authorize, parse, call the repository, answer JSON, audit.
#include "server/rest.h"

#include <httplib.h>

#include <atomic>
#include <chrono>
#include <nlohmann/json.hpp>
#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "server/agent_registry.h"
#include "server/identities.h"

namespace bulkhead::server {
namespace {

using nlohmann::json;

// Kinds that the policy set stores, by the names people type, with their group.
struct KindName {
  const char* kind;
  const char* group;
  std::vector<const char*> aliases;
};
const std::vector<KindName>& KindNames() {
  static const std::vector<KindName> names = {
      {"NetworkPolicy", "networking.k8s.io", {"networkpolicy", "networkpolicies", "netpol", "np"}},
      {"AdminNetworkPolicy", "policy.networking.k8s.io", {"adminnetworkpolicy", "anp"}},
      {"BaselineAdminNetworkPolicy",
       "policy.networking.k8s.io",
       {"baselineadminnetworkpolicy", "banp"}},
      {"BulkheadPolicy", "bulkhead.io", {"bulkheadpolicy", "bp"}},
      {"BulkheadClusterPolicy", "bulkhead.io", {"bulkheadclusterpolicy", "bcp"}},
      {"DefaultDeny", "bulkhead.io", {"defaultdeny", "dd"}},
      {"Inventory", "bulkhead.io", {"inventory", "inv"}},
      {"WorkloadMode", "bulkhead.io", {"workloadmode", "wm"}},
      {"Namespace", "", {"namespace", "namespaces", "ns"}},
      {"Node", "", {"node", "nodes"}},
  };
  return names;
}

// The stored kind and group of what a person typed ("np", "NetworkPolicy", ...).
bool ResolveKind(const std::string& typed, std::string* kind, std::string* group) {
  std::string lower;
  for (char c : typed)
    lower.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(c))));
  for (const KindName& k : KindNames()) {
    bool match = typed == k.kind;
    for (const char* a : k.aliases) match = match || lower == a;
    if (match) {
      *kind = k.kind;
      *group = k.group;
      return true;
    }
  }
  return false;
}

json DiagnosticJson(const policy::Diagnostic& d) {
  const char* sev = d.severity == policy::Diagnostic::Severity::kError     ? "error"
                    : d.severity == policy::Diagnostic::Severity::kWarning ? "warning"
                                                                           : "notice";
  return {{"severity", sev},          {"file", d.where.file},         {"line", d.where.line},
          {"column", d.where.column}, {"document", d.where.document}, {"object", d.object},
          {"field", d.field},         {"message", d.message},         {"text", d.ToString()}};
}

json ChangeJson(const ObjectChange& c) {
  return {{"action", ActionName(c.action)},   {"group", c.id.group}, {"kind", c.id.kind},
          {"namespace", c.id.namespace_name}, {"name", c.id.name},   {"object", c.id.Display()}};
}

json ResultJson(const ChangeResult& r) {
  json changes = json::array();
  for (const ObjectChange& c : r.changes) changes.push_back(ChangeJson(c));
  json diags = json::array();
  for (const policy::Diagnostic& d : r.diagnostics) diags.push_back(DiagnosticJson(d));
  json objects = json::array();
  for (const ObjectId& id : r.file_objects) {
    objects.push_back({{"group", id.group},
                       {"kind", id.kind},
                       {"namespace", id.namespace_name},
                       {"name", id.name}});
  }
  return {{"valid", r.valid},       {"objects", objects}, {"committed", r.committed},
          {"revision", r.revision}, {"changes", changes}, {"diff", RenderDiff(r.changes)},
          {"diagnostics", diags}};
}

json RevisionInfoJson(const RevisionInfo& i) {
  json j = {{"revision", i.number},
            {"operation", i.operation},
            {"author", i.author},
            {"origin", i.origin},
            {"time", absl::FormatTime(absl::RFC3339_full, i.time, absl::UTCTimeZone())},
            {"message", i.message},
            {"creates", i.creates},
            {"updates", i.updates},
            {"deletes", i.deletes}};
  if (i.rollback_to != 0) j["rollbackTo"] = i.rollback_to;
  return j;
}

json AuditJson(const AuditEntry& e) { return json::parse(AuditEntryToJson(e)); }

int HttpStatusOf(const absl::Status& s) {
  switch (s.code()) {
    case absl::StatusCode::kInvalidArgument:
      return 400;
    case absl::StatusCode::kUnauthenticated:
      return 401;
    case absl::StatusCode::kPermissionDenied:
      return 403;
    case absl::StatusCode::kNotFound:
      return 404;
    case absl::StatusCode::kAlreadyExists:
    case absl::StatusCode::kAborted:
    case absl::StatusCode::kFailedPrecondition:
      return 409;
    case absl::StatusCode::kUnavailable:
    case absl::StatusCode::kDeadlineExceeded:
      return 503;
    default:
      return 500;
  }
}

const char* CodeName(int http) {
  switch (http) {
    case 400:
      return "bad_request";
    case 401:
      return "unauthenticated";
    case 403:
      return "forbidden";
    case 404:
      return "not_found";
    case 409:
      return "conflict";
    case 422:
      return "invalid";
    case 503:
      return "unavailable";
    default:
      return "internal";
  }
}

void SendJson(httplib::Response& res, int status, const json& body) {
  res.status = status;
  res.set_content(body.dump(2) + "\n", "application/json");
}

void SendError(httplib::Response& res, int status, const std::string& message,
               json extra = json::object()) {
  extra["code"] = CodeName(status);
  extra["message"] = message;
  SendJson(res, status, json{{"error", extra}});
}

// A request body field with its type checked; errors name the field.
class Body {
 public:
  explicit Body(const std::string& text) {
    try {
      j_ = json::parse(text.empty() ? "{}" : text);
      if (!j_.is_object()) error_ = "request body must be a JSON object";
    } catch (const json::exception& e) {
      error_ = absl::StrCat("request body is not JSON: ", e.what());
    }
  }
  const std::string& error() const { return error_; }
  bool Bool(const char* field, bool dflt = false) {
    if (!error_.empty() || !j_.contains(field)) return dflt;
    if (!j_[field].is_boolean()) Fail(field, "a boolean");
    return error_.empty() ? j_[field].get<bool>() : dflt;
  }
  std::string String(const char* field, bool required = false) {
    if (!error_.empty()) return "";
    if (!j_.contains(field)) {
      if (required) error_ = absl::StrCat("field '", field, "' is required");
      return "";
    }
    if (!j_[field].is_string()) Fail(field, "a string");
    return error_.empty() ? j_[field].get<std::string>() : "";
  }
  int64_t Int(const char* field, bool required = false) {
    if (!error_.empty()) return 0;
    if (!j_.contains(field)) {
      if (required) error_ = absl::StrCat("field '", field, "' is required");
      return 0;
    }
    if (!j_[field].is_number_integer()) Fail(field, "an integer");
    return error_.empty() ? j_[field].get<int64_t>() : 0;
  }
  const json* Array(const char* field) {
    if (!error_.empty()) return nullptr;
    if (!j_.contains(field) || !j_[field].is_array()) {
      Fail(field, "a list");
      return nullptr;
    }
    return &j_[field];
  }

 private:
  void Fail(const char* field, const char* expected) {
    error_ = absl::StrCat("field '", field, "' must be ", expected);
  }
  json j_;
  std::string error_;
};

// Reads `{kind, group?, namespace?, name}` of item `i` of `field`.
bool ReadObjectId(const json& item, const std::string& where, ObjectId* id, std::string* error) {
  if (!item.is_object() || !item.contains("kind") || !item["kind"].is_string() ||
      !item.contains("name") || !item["name"].is_string()) {
    *error = where + " must be an object with string fields 'kind' and 'name'";
    return false;
  }
  std::string kind, group;
  if (!ResolveKind(item["kind"].get<std::string>(), &kind, &group)) {
    *error = where + ".kind: unknown kind '" + item["kind"].get<std::string>() + "'";
    return false;
  }
  std::string ns = item.value("namespace", "");
  policy::KindScope scope = policy::LookupKindScope(
      group.empty() ? "v1" : group + (group == "networking.k8s.io" ? "/v1" : "/v1alpha1"), kind);
  if (scope == policy::KindScope::kNamespaced && ns.empty()) ns = "default";
  if (scope == policy::KindScope::kCluster) ns.clear();
  *id = ObjectId{group, kind, ns, item["name"].get<std::string>()};
  return true;
}

}  // namespace

struct RestServer::Impl {
  ApiContext ctx;
  std::unique_ptr<httplib::SSLServer> http;
  std::thread thread;
  std::atomic<bool> listen_done{false};  // listen_after_bind returned

  // The caller's identity, or an answer (401) already sent and audited.
  std::optional<TokenInfo> Authenticate(const httplib::Request& req, httplib::Response& res,
                                        const char* action) {
    std::string header = req.get_header_value("Authorization");
    constexpr std::string_view kBearer = "Bearer ";
    absl::Status why;
    if (header.substr(0, kBearer.size()) != kBearer) {
      why = absl::UnauthenticatedError(
          "missing credentials: send 'Authorization: Bearer <API token>'");
    } else {
      absl::StatusOr<TokenInfo> who = ctx.tokens->Authenticate(header.substr(kBearer.size()));
      if (who.ok()) return *who;
      why = who.status();
    }
    int http = HttpStatusOf(why);
    if (http == 401) {
      AuditEntry e;
      e.origin = req.remote_addr;
      e.action = action;
      e.outcome = "unauthenticated";
      e.detail = std::string(why.message());
      ctx.audit->Append(std::move(e)).IgnoreError();
    }
    SendError(res, http, std::string(why.message()));
    return std::nullopt;
  }

  // Authenticated and allowed, or an answer (401/403) already sent and audited.
  std::optional<Actor> Authorize(const httplib::Request& req, httplib::Response& res, Permission p,
                                 const char* action) {
    std::optional<TokenInfo> who = Authenticate(req, res, action);
    if (!who) return std::nullopt;
    Actor actor{who->name, RoleName(who->role), req.remote_addr};
    if (!Allows(who->role, p)) {
      std::string msg = absl::StrCat("token '", who->name, "' (role ", RoleName(who->role),
                                     ") may not ", PermissionName(p));
      Audit(actor, action, "", 0, "denied", msg);
      SendError(res, 403, msg);
      return std::nullopt;
    }
    return actor;
  }

  // An audit entry of `a` doing `action` on `target`.
  AuditEntry Entry(const Actor& a, const std::string& action, const std::string& target,
                   int64_t rev, const std::string& outcome, const std::string& detail) const {
    AuditEntry e;
    e.time = ctx.audit->Now();
    e.actor = a.name;
    e.role = a.role;
    e.origin = a.origin;
    e.action = action;
    e.target = target;
    e.revision = rev;
    e.outcome = outcome;
    e.detail = detail;
    return e;
  }

  void Audit(const Actor& a, const std::string& action, const std::string& target, int64_t rev,
             const std::string& outcome, const std::string& detail) {
    ctx.audit->Append(Entry(a, action, target, rev, outcome, detail)).IgnoreError();
  }

  // Answers a change: 200 with the result, or 422 when it was invalid (audited).
  void SendChange(httplib::Response& res, const Actor& actor, const char* action,
                  const absl::StatusOr<ChangeResult>& r) {
    if (!r.ok()) {
      SendError(res, HttpStatusOf(r.status()), std::string(r.status().message()));
      return;
    }
    if (!r->valid) {
      std::string detail;
      for (const policy::Diagnostic& d : r->diagnostics) {
        if (d.severity == policy::Diagnostic::Severity::kError) detail += d.ToString() + "\n";
      }
      Audit(actor, action, "policy set", 0, "invalid", detail);
      json extra = ResultJson(*r);
      SendError(res, 422, "invalid: nothing was changed", extra);
      return;
    }
    SendJson(res, 200, ResultJson(*r));
  }

  static bool ReadFiles(Body& body, std::vector<policy::Source>* files) {
    const json* list = body.Array("files");
    if (list == nullptr) return false;
    for (const json& f : *list) {
      if (!f.is_object() || !f.contains("name") || !f["name"].is_string() ||
          !f.contains("content") || !f["content"].is_string()) {
        return false;
      }
      files->push_back({f["name"].get<std::string>(), f["content"].get<std::string>()});
    }
    return true;
  }

  void Routes() {
    http->Get("/api/v1/status", [this](const httplib::Request& req, httplib::Response& res) {
      if (!Authorize(req, res, Permission::kReadPolicy, "status")) return;
      absl::StatusOr<std::vector<RevisionInfo>> h = ctx.policies->History(1);
      if (!h.ok())
        return SendError(res, HttpStatusOf(h.status()), std::string(h.status().message()));
      SendJson(res, 200,
               {{"ready", true},
                {"version", ctx.version},
                {"store", ctx.store->Describe()},
                {"revision", h->empty() ? 0 : h->front().number}});
    });

    http->Get("/api/v1/agents", [this](const httplib::Request& req, httplib::Response& res) {
      if (!Authorize(req, res, Permission::kReadPolicy, "agents")) return;
      absl::StatusOr<int64_t> head = ReadPolicyHead(ctx.store);
      absl::StatusOr<std::vector<AgentRecord>> agents =
          head.ok() ? ListAgents(ctx.store) : head.status();
      if (!agents.ok()) {
        return SendError(res, HttpStatusOf(agents.status()),
                         std::string(agents.status().message()));
      }
      json list = json::array();
      for (const AgentRecord& a : *agents) {
        json j = json::parse(AgentRecordToJson(a));
        j["lag"] = std::max<int64_t>(0, *head - a.enforced_revision);
        list.push_back(j);
      }
      SendJson(res, 200, {{"revision", *head}, {"agents", list}});
    });

    http->Get("/api/v1/identities", [this](const httplib::Request& req, httplib::Response& res) {
      if (!Authorize(req, res, Permission::kReadPolicy, "identities")) return;
      absl::StatusOr<std::vector<IdentityRecord>> ids = ClusterIdentities(ctx.store).List();
      if (!ids.ok()) {
        return SendError(res, HttpStatusOf(ids.status()), std::string(ids.status().message()));
      }
      json list = json::array();
      for (const IdentityRecord& r : *ids) {
        list.push_back({{"number", r.number}, {"key", r.key}, {"holders", r.holders}});
      }
      SendJson(res, 200, {{"identities", list}});
    });

    http->Post("/api/v1/apply", [this](const httplib::Request& req, httplib::Response& res) {
      std::optional<Actor> actor = Authorize(req, res, Permission::kWritePolicy, "apply");
      if (!actor) return;
      Body body(req.body);
      ApplyRequest a;
      bool files_ok = ReadFiles(body, &a.files);
      a.prune = body.Bool("prune");
      a.dry_run = body.Bool("dryRun");
      a.message = body.String("message");
      if (!body.error().empty() || !files_ok) {
        return SendError(res, 400,
                         body.error().empty()
                             ? "field 'files' must be a list of {name, content} strings"
                             : body.error());
      }
      SendChange(res, *actor, "apply", ctx.policies->Apply(a, *actor));
    });

    http->Post("/api/v1/diff", [this](const httplib::Request& req, httplib::Response& res) {
      if (!Authorize(req, res, Permission::kReadPolicy, "diff")) return;
      Body body(req.body);
      std::vector<policy::Source> files;
      bool files_ok = ReadFiles(body, &files);
      bool prune = body.Bool("prune");
      if (!body.error().empty() || !files_ok) {
        return SendError(res, 400,
                         body.error().empty()
                             ? "field 'files' must be a list of {name, content} strings"
                             : body.error());
      }
      absl::StatusOr<ChangeResult> r = ctx.policies->Diff(files, prune);
      if (!r.ok())
        return SendError(res, HttpStatusOf(r.status()), std::string(r.status().message()));
      if (!r->valid) return SendError(res, 422, "invalid input", ResultJson(*r));
      SendJson(res, 200, ResultJson(*r));
    });

    http->Get("/api/v1/objects", [this](const httplib::Request& req, httplib::Response& res) {
      if (!Authorize(req, res, Permission::kReadPolicy, "get")) return;
      int64_t revision = 0;
      if (req.has_param("revision") &&
          !absl::SimpleAtoi(req.get_param_value("revision"), &revision)) {
        return SendError(res, 400, "query parameter 'revision' must be an integer");
      }
      std::string kind, group;
      if (req.has_param("kind") && !ResolveKind(req.get_param_value("kind"), &kind, &group)) {
        return SendError(
            res, 400, "query parameter 'kind': unknown kind '" + req.get_param_value("kind") + "'");
      }
      std::string ns = req.get_param_value("namespace");
      std::string name = req.get_param_value("name");
      bool yaml = req.get_param_value("yaml") == "1";
      absl::StatusOr<std::pair<int64_t, ObjectSet>> set = ctx.policies->Read(revision);
      if (!set.ok())
        return SendError(res, HttpStatusOf(set.status()), std::string(set.status().message()));
      json objects = json::array();
      for (const auto& [id, o] : set->second) {
        if (!kind.empty() && (id.kind != kind || id.group != group)) continue;
        if (!ns.empty() && id.namespace_name != ns) continue;
        if (!name.empty() && id.name != name) continue;
        objects.push_back({{"group", id.group},
                           {"kind", id.kind},
                           {"namespace", id.namespace_name},
                           {"name", id.name},
                           {"object", json::parse(o.json)}});
        if (yaml) objects.back()["yaml"] = ToYaml(o.json);
      }
      SendJson(res, 200, {{"revision", set->first}, {"objects", objects}});
    });

    http->Post("/api/v1/delete", [this](const httplib::Request& req, httplib::Response& res) {
      std::optional<Actor> actor = Authorize(req, res, Permission::kWritePolicy, "delete");
      if (!actor) return;
      Body body(req.body);
      const json* list = body.Array("objects");
      bool dry_run = body.Bool("dryRun");
      std::string message = body.String("message");
      if (!body.error().empty()) return SendError(res, 400, body.error());
      std::vector<ObjectId> ids;
      for (size_t i = 0; i < list->size(); ++i) {
        ObjectId id;
        std::string err;
        if (!ReadObjectId((*list)[i], absl::StrCat("objects[", i, "]"), &id, &err)) {
          return SendError(res, 400, err);
        }
        ids.push_back(std::move(id));
      }
      if (ids.empty()) return SendError(res, 400, "field 'objects' is empty");
      SendChange(res, *actor, "delete", ctx.policies->Delete(ids, dry_run, message, *actor));
    });

    http->Get("/api/v1/revisions", [this](const httplib::Request& req, httplib::Response& res) {
      if (!Authorize(req, res, Permission::kReadPolicy, "history")) return;
      int limit = 0;
      if (req.has_param("limit") &&
          (!absl::SimpleAtoi(req.get_param_value("limit"), &limit) || limit < 0)) {
        return SendError(res, 400, "query parameter 'limit' must be a non-negative integer");
      }
      absl::StatusOr<std::vector<RevisionInfo>> h = ctx.policies->History(limit);
      if (!h.ok())
        return SendError(res, HttpStatusOf(h.status()), std::string(h.status().message()));
      json list = json::array();
      for (const RevisionInfo& i : *h) list.push_back(RevisionInfoJson(i));
      SendJson(res, 200, {{"revisions", list}});
    });

    http->Get(
        R"(/api/v1/revisions/(\d+))", [this](const httplib::Request& req, httplib::Response& res) {
          if (!Authorize(req, res, Permission::kReadPolicy, "history")) return;
          int64_t n = 0;
          if (!absl::SimpleAtoi(req.matches[1].str(), &n))
            return SendError(res, 400, "bad revision");
          absl::StatusOr<RevisionRecord> r = ctx.policies->Revision(n);
          if (!r.ok())
            return SendError(res, HttpStatusOf(r.status()), std::string(r.status().message()));
          json j = RevisionInfoJson(r->info);
          json changes = json::array();
          for (const ObjectChange& c : r->changes) changes.push_back(ChangeJson(c));
          j["changes"] = changes;
          j["diff"] = RenderDiff(r->changes);
          SendJson(res, 200, j);
        });

    http->Post("/api/v1/rollback", [this](const httplib::Request& req, httplib::Response& res) {
      std::optional<Actor> actor = Authorize(req, res, Permission::kWritePolicy, "rollback");
      if (!actor) return;
      Body body(req.body);
      int64_t revision = body.Int("revision", true);
      bool dry_run = body.Bool("dryRun");
      std::string message = body.String("message");
      if (!body.error().empty()) return SendError(res, 400, body.error());
      SendChange(res, *actor, "rollback",
                 ctx.policies->Rollback(revision, dry_run, message, *actor));
    });

    http->Post("/api/v1/mode", [this](const httplib::Request& req, httplib::Response& res) {
      std::optional<Actor> actor = Authorize(req, res, Permission::kWritePolicy, "mode");
      if (!actor) return;
      Body body(req.body);
      std::string mode = body.String("mode", true);
      if (!body.error().empty()) return SendError(res, 400, body.error());
      if (mode != "enforce" && mode != "audit" && mode != "learn") {
        return SendError(res, 400,
                         "field 'mode' must be enforce, audit or learn, not '" + mode + "'");
      }
      ObjectId id;
      std::string err;
      if (!ReadObjectId(json::parse(req.body), "target", &id, &err))
        return SendError(res, 400, err);
      SendChange(res, *actor, "mode", ctx.policies->SetMode(id, mode, *actor));
    });

    http->Get("/api/v1/audit", [this](const httplib::Request& req, httplib::Response& res) {
      std::optional<Actor> actor = Authorize(req, res, Permission::kReadAudit, "audit.read");
      if (!actor) return;
      AuditQuery q;
      for (const char* p : {"since", "until"}) {
        if (!req.has_param(p)) continue;
        absl::Time t;
        std::string err;
        if (!absl::ParseTime(absl::RFC3339_full, req.get_param_value(p), &t, &err)) {
          return SendError(
              res, 400, absl::StrCat("query parameter '", p, "' must be an RFC 3339 time: ", err));
        }
        (std::string_view(p) == "since" ? q.since : q.until) = t;
      }
      q.actor = req.get_param_value("actor");
      q.action = req.get_param_value("action");
      q.outcome = req.get_param_value("outcome");
      if (req.has_param("limit") &&
          (!absl::SimpleAtoi(req.get_param_value("limit"), &q.limit) || q.limit < 0)) {
        return SendError(res, 400, "query parameter 'limit' must be a non-negative integer");
      }
      absl::StatusOr<std::vector<AuditEntry>> entries = ctx.audit->Query(q);
      if (!entries.ok())
        return SendError(res, HttpStatusOf(entries.status()),
                         std::string(entries.status().message()));
      json list = json::array();
      for (const AuditEntry& e : *entries) list.push_back(AuditJson(e));
      SendJson(res, 200, {{"entries", list}});
    });

    http->Post("/api/v1/tokens", [this](const httplib::Request& req, httplib::Response& res) {
      std::optional<Actor> actor = Authorize(req, res, Permission::kManageTokens, "token.create");
      if (!actor) return;
      Body body(req.body);
      std::string name = body.String("name", true);
      std::string role_text = body.String("role", true);
      std::string ttl_text = body.String("ttl");
      if (!body.error().empty()) return SendError(res, 400, body.error());
      std::optional<Role> role = ParseRole(role_text);
      if (!role) {
        return SendError(
            res, 400,
            "field 'role' must be admin, editor, viewer or auditor, not '" + role_text + "'");
      }
      absl::Duration ttl = absl::ZeroDuration();
      if (!ttl_text.empty()) {
        absl::StatusOr<absl::Duration> d = ParseTtl(ttl_text);
        if (!d.ok())
          return SendError(res, 400, "field 'ttl': " + std::string(d.status().message()));
        ttl = *d;
      }
      AuditEntry e =
          Entry(*actor, "token.create", "token " + name, 0, "ok",
                absl::StrCat("role ", role_text, ttl_text.empty() ? "" : ", ttl " + ttl_text));
      absl::StatusOr<std::string> token =
          ctx.tokens->Create(name, *role, ttl, actor->name, {ctx.audit->EntryOp(e)});
      if (!token.ok())
        return SendError(res, HttpStatusOf(token.status()), std::string(token.status().message()));
      SendJson(res, 201, {{"name", name}, {"role", role_text}, {"token", *token}});
    });

    http->Get("/api/v1/tokens", [this](const httplib::Request& req, httplib::Response& res) {
      if (!Authorize(req, res, Permission::kManageTokens, "token.list")) return;
      absl::StatusOr<std::vector<TokenInfo>> list = ctx.tokens->List();
      if (!list.ok())
        return SendError(res, HttpStatusOf(list.status()), std::string(list.status().message()));
      json out = json::array();
      for (const TokenInfo& t : *list) {
        out.push_back(
            {{"name", t.name},
             {"role", RoleName(t.role)},
             {"created", absl::FormatTime(absl::RFC3339_full, t.created, absl::UTCTimeZone())},
             {"expires",
              t.expires == absl::InfiniteFuture()
                  ? ""
                  : absl::FormatTime(absl::RFC3339_full, t.expires, absl::UTCTimeZone())},
             {"createdBy", t.created_by}});
      }
      SendJson(res, 200, {{"tokens", out}});
    });

    http->Delete(R"(/api/v1/tokens/([^/]+))", [this](const httplib::Request& req,
                                                     httplib::Response& res) {
      std::optional<Actor> actor = Authorize(req, res, Permission::kManageTokens, "token.revoke");
      if (!actor) return;
      std::string name = req.matches[1].str();
      AuditEntry e = Entry(*actor, "token.revoke", "token " + name, 0, "ok", "");
      absl::Status s = ctx.tokens->Revoke(name, {ctx.audit->EntryOp(e)});
      if (!s.ok()) return SendError(res, HttpStatusOf(s), std::string(s.message()));
      SendJson(res, 200, {{"revoked", name}});
    });

    http->Post("/api/v1/join-tokens", [this](const httplib::Request& req, httplib::Response& res) {
      std::optional<Actor> actor =
          Authorize(req, res, Permission::kManageTokens, "join-token.create");
      if (!actor) return;
      Body body(req.body);
      std::string ttl_text = body.String("ttl");
      if (!body.error().empty()) return SendError(res, 400, body.error());
      absl::StatusOr<absl::Duration> ttl = ParseTtl(ttl_text.empty() ? "24h" : ttl_text);
      if (!ttl.ok())
        return SendError(res, 400, "field 'ttl': " + std::string(ttl.status().message()));
      AuditEntry e = Entry(*actor, "join-token.create", "join token", 0, "ok",
                           "ttl " + (ttl_text.empty() ? std::string("24h") : ttl_text));
      absl::StatusOr<std::string> token =
          ctx.tokens->CreateJoinToken(*ttl, actor->name, {ctx.audit->EntryOp(e)});
      if (!token.ok())
        return SendError(res, HttpStatusOf(token.status()), std::string(token.status().message()));
      SendJson(res, 201, {{"token", *token}});
    });

    http->set_error_handler([](const httplib::Request& req, httplib::Response& res) {
      if (res.status == 404 && res.body.empty()) {
        SendError(res, 404, "no route " + req.method + " " + req.path);
      }
    });
    http->set_exception_handler(
        [](const httplib::Request&, httplib::Response& res, const std::exception_ptr& ep) {
          std::string what = "internal error";
          try {
            if (ep) std::rethrow_exception(ep);
          } catch (const std::exception& e) {
            what = std::string("internal error: ") + e.what();
          } catch (...) {
          }
          SendError(res, 500, what);
        });
    http->set_payload_max_length(64u << 20);
  }
};

RestServer::RestServer(ApiContext ctx, const TlsFiles& tls) : impl_(std::make_unique<Impl>()) {
  impl_->ctx = std::move(ctx);
  impl_->http = std::make_unique<httplib::SSLServer>(tls.cert.c_str(), tls.key.c_str());
}

RestServer::~RestServer() { Stop(); }

absl::Status RestServer::Start(const std::string& listen) {
  std::string host;
  int port = 0;
  if (absl::Status s = ParseListen(listen, "--listen", &host, &port); !s.ok()) return s;
  if (!impl_->http->is_valid()) {
    return absl::FailedPreconditionError("cannot load the server's TLS certificate and key");
  }
  impl_->Routes();
  if (port == 0) {
    port = impl_->http->bind_to_any_port(host);
  } else if (!impl_->http->bind_to_port(host, port)) {
    port = -1;
  }
  if (port <= 0) {
    return absl::UnavailableError(
        absl::StrCat("cannot listen on ", listen, ": ", std::strerror(errno)));
  }
  port_ = port;
  impl_->listen_done = false;
  impl_->thread = std::thread([this] {
    impl_->http->listen_after_bind();
    impl_->listen_done = true;
  });
  return absl::OkStatus();
}

void RestServer::Stop() {
  if (impl_->thread.joinable()) {
    // httplib's stop() does nothing until the listen loop has begun (it checks is_running),
    // so a Stop right after Start could leave the loop running forever: stop until it ends.
    while (!impl_->listen_done) {
      impl_->http->stop();
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    impl_->thread.join();
  }
}

absl::Status ParseListen(const std::string& listen, const std::string& what, std::string* host,
                         int* port) {
  size_t colon = listen.rfind(':');
  std::string h = colon == std::string::npos ? "" : listen.substr(0, colon);
  std::string p = colon == std::string::npos ? "" : listen.substr(colon + 1);
  if (h.size() >= 2 && h.front() == '[' && h.back() == ']') h = h.substr(1, h.size() - 2);
  int n = 0;
  if (h.empty() || !absl::SimpleAtoi(p, &n) || n < 0 || n > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " '", listen, "' must be HOST:PORT (e.g. 127.0.0.1:8443, [::1]:8443)"));
  }
  *host = h;
  *port = n;
  return absl::OkStatus();
}

absl::StatusOr<absl::Duration> ParseTtl(const std::string& text) {
  int64_t n = 0;
  if (absl::SimpleAtoi(text, &n) && n >= 0) return absl::Seconds(n);
  if (text.size() >= 2) {
    char unit = text.back();
    int64_t count = 0;
    if (absl::SimpleAtoi(text.substr(0, text.size() - 1), &count) && count >= 0) {
      switch (unit) {
        case 's':
          return absl::Seconds(count);
        case 'm':
          return absl::Minutes(count);
        case 'h':
          return absl::Hours(count);
        case 'd':
          return absl::Hours(24 * count);
        default:
          break;
      }
    }
  }
  return absl::InvalidArgumentError("'" + text +
                                    "' is not a duration (30s, 15m, 24h, 7d or seconds)");
}

}  // namespace bulkhead::server
