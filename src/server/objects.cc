// Splitting manifests into stored objects, canonical JSON, YAML rendering and diffs.
#include "server/objects.h"

#include <yaml-cpp/yaml.h>

#include <dtl/dtl.hpp>
#include <nlohmann/json.hpp>
#include <sstream>

#include "policy/yaml_reader.h"

namespace bulkhead::server {
namespace {

using nlohmann::json;
using policy::Diagnostic;
using policy::internal::YamlValue;

// Metadata the API server or a client tool writes; not part of what a user declares, so a
// manifest read back from a cluster (`kubectl get -o yaml`) compares equal to its source.
constexpr const char* kManagedMetadata[] = {"uid",
                                            "resourceVersion",
                                            "generation",
                                            "creationTimestamp",
                                            "deletionTimestamp",
                                            "selfLink",
                                            "deletionGracePeriodSeconds",
                                            "managedFields",
                                            "clusterName"};
constexpr const char* kLastApplied = "kubectl.kubernetes.io/last-applied-configuration";

// Workload kinds: observed state that agents report, never stored as policy.
bool IsWorkloadKind(std::string_view kind) {
  for (std::string_view k : {"Pod", "ReplicationController", "Deployment", "StatefulSet",
                             "DaemonSet", "ReplicaSet", "Job", "CronJob", "VirtualMachine"}) {
    if (kind == k) return true;
  }
  return false;
}

json ToJson(const YamlValue& v) {
  switch (v.type) {
    case YamlValue::Type::kNull:
      return nullptr;
    case YamlValue::Type::kSequence: {
      json a = json::array();
      for (const YamlValue& item : v.items) a.push_back(ToJson(item));
      return a;
    }
    case YamlValue::Type::kMap: {
      json o = json::object();
      for (size_t i = 0; i < v.keys.size(); ++i) o[v.keys[i].text] = ToJson(v.items[i]);
      return o;
    }
    case YamlValue::Type::kScalar:
      break;
  }
  switch (policy::internal::ClassifyScalar(v)) {
    case policy::internal::ScalarKind::kBool:
      return *policy::internal::ScalarBool(v);
    case policy::internal::ScalarKind::kInt:
      if (auto i = policy::internal::ScalarInt(v)) return *i;
      return v.text;
    case policy::internal::ScalarKind::kFloat:
      try {
        return std::stod(v.text);
      } catch (const std::exception&) {
        return v.text;  // .inf / .nan forms: keep the text
      }
    case policy::internal::ScalarKind::kString:
      break;
  }
  return v.text;
}

std::string StringField(const json& o, const char* key) {
  auto it = o.find(key);
  return it != o.end() && it->is_string() ? it->get<std::string>() : "";
}

std::string GroupOf(std::string_view api_version) {
  size_t slash = api_version.find('/');
  return slash == std::string_view::npos ? "" : std::string(api_version.substr(0, slash));
}

class Splitter {
 public:
  explicit Splitter(SplitResult* out) : out_(out) {}

  void Object(json obj, const policy::SourceRef& where, const std::string& default_kind,
              const std::string& default_api_version, int depth) {
    if (!obj.is_object()) return;  // LoadSources reported it
    std::string kind = StringField(obj, "kind");
    std::string api_version = StringField(obj, "apiVersion");
    if (kind.empty()) kind = default_kind;
    if (api_version.empty()) api_version = default_api_version;
    bool is_list = kind == "List" || (kind.size() > 4 && kind.ends_with("List"));
    if (is_list && depth < 4) {
      std::string item_kind = kind == "List" ? "" : kind.substr(0, kind.size() - 4);
      std::string item_api = kind == "List" ? "" : api_version;
      auto items = obj.find("items");
      if (items != obj.end() && items->is_array()) {
        for (json& item : *items) Object(std::move(item), where, item_kind, item_api, depth + 1);
      }
      return;
    }
    policy::KindScope scope = policy::LookupKindScope(api_version, kind);
    json& meta = obj["metadata"];
    std::string name = meta.is_object() ? StringField(meta, "name") : "";
    std::string ns = meta.is_object() ? StringField(meta, "namespace") : "";
    std::string shown = kind + " " + (ns.empty() ? "" : ns + "/") + name;
    if (scope == policy::KindScope::kUnknown) {
      Report(Diagnostic::Severity::kNotice, where, shown,
             "not stored: the policy set holds only the kinds Bulkhead reads (" + api_version +
                 " " + kind + " is not one)");
      return;
    }
    if (IsWorkloadKind(kind)) {
      Report(Diagnostic::Severity::kError, where, shown,
             "workloads are not applied to the server: agents report them (CNI, the "
             "inventory of each host); apply policies, Namespaces and Inventories");
      return;
    }
    if (!meta.is_object() || name.empty()) return;  // LoadSources reported it
    if (scope == policy::KindScope::kNamespaced && ns.empty()) ns = "default";
    if (scope == policy::KindScope::kCluster) ns.clear();
    Canonicalize(obj, ns, scope);
    StoredObject o;
    o.id = ObjectId{GroupOf(api_version), kind, ns, name};
    o.api_version = api_version;
    o.json = obj.dump();
    auto [it, inserted] = seen_.emplace(o.id, where);
    if (!inserted) {
      Report(Diagnostic::Severity::kError, where, o.id.Display(),
             "declared twice (also at " + it->second.ToString() + ")");
      return;
    }
    out_->objects.push_back(std::move(o));
  }

 private:
  static void Canonicalize(json& obj, const std::string& ns, policy::KindScope scope) {
    obj.erase("status");
    json& meta = obj["metadata"];
    for (const char* k : kManagedMetadata) meta.erase(k);
    if (scope == policy::KindScope::kCluster || ns.empty()) {
      meta.erase("namespace");
    } else {
      meta["namespace"] = ns;
    }
    auto ann = meta.find("annotations");
    if (ann != meta.end() && ann->is_object()) {
      ann->erase(kLastApplied);
      if (ann->empty()) meta.erase("annotations");
    }
  }

  void Report(Diagnostic::Severity severity, const policy::SourceRef& where,
              const std::string& object, std::string message) {
    Diagnostic d;
    d.severity = severity;
    d.where = where;
    d.object = object;
    d.message = std::move(message);
    out_->diagnostics.push_back(std::move(d));
  }

  SplitResult* out_;
  std::map<ObjectId, policy::SourceRef> seen_;
};

void EmitYaml(YAML::Emitter& out, const json& v) {
  switch (v.type()) {
    case json::value_t::object:
      if (v.empty()) out << YAML::Flow;  // {} inline, not on a line of its own
      out << YAML::BeginMap;
      for (const auto& [k, item] : v.items()) {
        out << YAML::Key << k << YAML::Value;
        EmitYaml(out, item);
      }
      out << YAML::EndMap;
      return;
    case json::value_t::array:
      if (v.empty()) out << YAML::Flow;
      out << YAML::BeginSeq;
      for (const json& item : v) EmitYaml(out, item);
      out << YAML::EndSeq;
      return;
    case json::value_t::string: {
      // Quote strings that would read back as another type (a number, a boolean, null).
      const std::string& s = v.get_ref<const std::string&>();
      policy::internal::YamlValue probe;
      probe.type = YamlValue::Type::kScalar;
      probe.text = s;
      bool ambiguous =
          s.empty() || s == "~" || s == "null" || s == "Null" || s == "NULL" ||
          policy::internal::ClassifyScalar(probe) != policy::internal::ScalarKind::kString;
      if (ambiguous) out << YAML::DoubleQuoted;
      out << s;
      return;
    }
    case json::value_t::null:
      out << YAML::Null;
      return;
    default:
      out << v.dump();  // numbers and booleans in JSON's spelling, which YAML reads alike
      return;
  }
}

std::vector<std::string> Lines(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

}  // namespace

std::string ObjectId::Display() const {
  return kind + " " + (namespace_name.empty() ? "" : namespace_name + "/") + name;
}

std::string ObjectId::Key() const {
  return (group.empty() ? "core" : group) + "/" + kind + "/" + namespace_name + "/" + name;
}

bool ObjectId::FromKey(std::string_view key, ObjectId* out) {
  std::vector<std::string> parts;
  size_t start = 0;
  for (int i = 0; i < 3; ++i) {
    size_t slash = key.find('/', start);
    if (slash == std::string_view::npos) return false;
    parts.emplace_back(key.substr(start, slash - start));
    start = slash + 1;
  }
  std::string_view name = key.substr(start);
  if (parts[0].empty() || parts[1].empty() || name.empty() ||
      name.find('/') != std::string_view::npos) {
    return false;
  }
  *out = ObjectId{parts[0] == "core" ? "" : parts[0], parts[1], parts[2], std::string(name)};
  return true;
}

bool SplitResult::ok() const {
  for (const Diagnostic& d : diagnostics) {
    if (d.severity == Diagnostic::Severity::kError) return false;
  }
  return true;
}

SplitResult SplitManifests(const std::vector<policy::Source>& sources) {
  SplitResult result;
  Splitter splitter(&result);
  for (const policy::Source& s : sources) {
    policy::internal::YamlStream stream = policy::internal::ReadYamlStream(s.content);
    for (const policy::internal::YamlDocument& doc : stream.documents) {
      policy::SourceRef where{s.name, doc.index, doc.root.line, doc.root.column};
      splitter.Object(ToJson(doc.root), where, "", "", 0);
    }
  }
  return result;
}

std::string ToYaml(const std::string& text) {
  YAML::Emitter out;
  out.SetIndent(2);
  EmitYaml(out, json::parse(text));
  return std::string(out.c_str()) + "\n";
}

const char* ActionName(ObjectChange::Action a) {
  switch (a) {
    case ObjectChange::Action::kCreate:
      return "create";
    case ObjectChange::Action::kUpdate:
      return "update";
    case ObjectChange::Action::kDelete:
      return "delete";
  }
  return "?";
}

std::vector<ObjectChange> Changes(const ObjectSet& from, const ObjectSet& to) {
  std::vector<ObjectChange> changes;
  auto a = from.begin();
  auto b = to.begin();
  while (a != from.end() || b != to.end()) {
    if (b == to.end() || (a != from.end() && a->first < b->first)) {
      changes.push_back(
          {ObjectChange::Action::kDelete, a->first, a->second.api_version, a->second.json, ""});
      ++a;
    } else if (a == from.end() || b->first < a->first) {
      changes.push_back(
          {ObjectChange::Action::kCreate, b->first, b->second.api_version, "", b->second.json});
      ++b;
    } else {
      if (a->second.json != b->second.json || a->second.api_version != b->second.api_version) {
        changes.push_back({ObjectChange::Action::kUpdate, b->first, b->second.api_version,
                           a->second.json, b->second.json});
      }
      ++a;
      ++b;
    }
  }
  return changes;
}

ObjectSet Undo(ObjectSet to, const std::vector<ObjectChange>& changes) {
  for (size_t i = changes.size(); i-- > 0;) {  // last change first
    const ObjectChange& c = changes[i];
    if (c.action == ObjectChange::Action::kCreate) {
      to.erase(c.id);
    } else {
      // Before an update or a delete the object was `before`; its apiVersion is in it.
      json before = json::parse(c.before);
      to[c.id] = StoredObject{c.id, StringField(before, "apiVersion"), c.before};
    }
  }
  return to;
}

std::string RenderDiff(const std::vector<ObjectChange>& changes) {
  std::ostringstream out;
  for (const ObjectChange& c : changes) {
    std::vector<std::string> a =
        c.before.empty() ? std::vector<std::string>{} : Lines(ToYaml(c.before));
    std::vector<std::string> b =
        c.after.empty() ? std::vector<std::string>{} : Lines(ToYaml(c.after));
    out << "--- " << (c.action == ObjectChange::Action::kCreate ? "/dev/null" : c.id.Display())
        << "\n+++ " << (c.action == ObjectChange::Action::kDelete ? "/dev/null" : c.id.Display())
        << "\n";
    dtl::Diff<std::string> diff(a, b);
    diff.compose();
    diff.composeUnifiedHunks();
    diff.printUnifiedFormat(out);
  }
  return out.str();
}

}  // namespace bulkhead::server
