// The loader's entry points: reads files and directories, splits YAML/JSON streams into
// objects (unwrapping List kinds), dispatches each to its kind decoder, then assembles.
#include "policy/loader.h"

#include <sys/stat.h>
#include <time.h>

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <system_error>
#include <tuple>

#include "policy/kinds.h"
#include "policy/yaml_reader.h"

namespace bulkhead::policy {

namespace {
const char* SeverityName(Diagnostic::Severity s) {
  switch (s) {
    case Diagnostic::Severity::kError:
      return "error";
    case Diagnostic::Severity::kWarning:
      return "warning";
    case Diagnostic::Severity::kNotice:
      return "notice";
  }
  return "?";
}
}  // namespace

std::string Diagnostic::ToString() const {
  std::string s = where.ToString() + ": " + SeverityName(severity) + ": ";
  bool object_names_document = object.rfind("document ", 0) == 0;
  if (!object.empty()) {
    s += object;
    if (where.document > 0 && !object_names_document) {
      s += " (document " + std::to_string(where.document) + ")";
    }
    s += ": ";
  } else if (where.document > 0) {
    s += "document " + std::to_string(where.document) + ": ";
  }
  if (!field.empty()) s += field + ": ";
  s += message;
  return s;
}

bool LoadResult::ok() const {
  return std::none_of(diagnostics.begin(), diagnostics.end(), [](const Diagnostic& d) {
    return d.severity == Diagnostic::Severity::kError;
  });
}

namespace internal {
namespace {

enum class Scope { kNamespaced, kCluster, kEither };

struct KindInfo {
  std::string_view kind;
  std::string_view group;
  std::vector<std::string_view> versions;  // empty: known group, no supported version
  Scope scope;
  bool native;  // Bulkhead kind: strict names
  bool strict;  // unknown fields are errors (the policy kinds, where a typo changes meaning)
  void (*decode)(ObjectContext&);
};

const std::vector<KindInfo>& KindTable() {
  // clang-format off
  static const std::vector<KindInfo> table = {
      // kind, group, versions, scope, native, strict, decoder
      {"Namespace", "", {"v1"}, Scope::kCluster, false, false, DecodeNamespace},
      {"Node", "", {"v1"}, Scope::kCluster, false, false, DecodeNode},
      {"Pod", "", {"v1"}, Scope::kNamespaced, false, false, DecodePod},
      {"ReplicationController", "", {"v1"}, Scope::kNamespaced, false, false, DecodeController},
      {"Deployment", "apps", {"v1", "v1beta1", "v1beta2"}, Scope::kNamespaced, false, false, DecodeController},
      {"Deployment", "extensions", {"v1beta1"}, Scope::kNamespaced, false, false, DecodeController},
      {"StatefulSet", "apps", {"v1", "v1beta1", "v1beta2"}, Scope::kNamespaced, false, false, DecodeController},
      {"DaemonSet", "apps", {"v1", "v1beta2"}, Scope::kNamespaced, false, false, DecodeController},
      {"DaemonSet", "extensions", {"v1beta1"}, Scope::kNamespaced, false, false, DecodeController},
      {"ReplicaSet", "apps", {"v1", "v1beta2"}, Scope::kNamespaced, false, false, DecodeController},
      {"ReplicaSet", "extensions", {"v1beta1"}, Scope::kNamespaced, false, false, DecodeController},
      {"Job", "batch", {"v1"}, Scope::kNamespaced, false, false, DecodeController},
      {"CronJob", "batch", {"v1", "v1beta1"}, Scope::kNamespaced, false, false, DecodeController},
      {"VirtualMachine", "kubevirt.io", {"v1", "v1alpha3"}, Scope::kNamespaced, false, false, DecodeController},
      {"NetworkPolicy", "networking.k8s.io", {"v1"}, Scope::kNamespaced, false, true, DecodeNetworkPolicy},
      // Removed from Kubernetes in 1.16; say so rather than ignoring a policy.
      {"NetworkPolicy", "extensions", {}, Scope::kNamespaced, false, true, DecodeNetworkPolicy},
      {"AdminNetworkPolicy", "policy.networking.k8s.io", {"v1alpha1"}, Scope::kCluster, false, true, DecodeAdminNetworkPolicy},
      {"BaselineAdminNetworkPolicy", "policy.networking.k8s.io", {"v1alpha1"}, Scope::kCluster, false, true, DecodeBaselineAdminNetworkPolicy},
      {"Inventory", "bulkhead.io", {"v1alpha1"}, Scope::kCluster, true, true, DecodeInventory},
      {"BulkheadPolicy", "bulkhead.io", {"v1alpha1"}, Scope::kNamespaced, true, true, DecodeBulkheadPolicy},
      {"BulkheadClusterPolicy", "bulkhead.io", {"v1alpha1"}, Scope::kCluster, true, true, DecodeBulkheadClusterPolicy},
      {"DefaultDeny", "bulkhead.io", {"v1alpha1"}, Scope::kEither, true, true, DecodeDefaultDeny},
      {"WorkloadMode", "bulkhead.io", {"v1alpha1"}, Scope::kNamespaced, true, true, DecodeWorkloadMode},
  };
  // clang-format on
  return table;
}

constexpr std::string_view kNativeGroup = "bulkhead.io";
constexpr std::string_view kAnpGroup = "policy.networking.k8s.io";
constexpr int kMaxListDepth = 4;

// The metadata fields of ObjectMeta that may appear in a manifest.
const std::vector<std::string_view> kMetadataFields = {"name",
                                                       "generateName",
                                                       "namespace",
                                                       "selfLink",
                                                       "uid",
                                                       "resourceVersion",
                                                       "generation",
                                                       "creationTimestamp",
                                                       "deletionTimestamp",
                                                       "deletionGracePeriodSeconds",
                                                       "labels",
                                                       "annotations",
                                                       "ownerReferences",
                                                       "finalizers",
                                                       "managedFields",
                                                       "clusterName"};

// Best-effort "Kind ns/name" before anything is validated, for diagnostics.
std::string DisplayName(const YamlValue& root, std::string_view kind, bool namespaced,
                        std::string_view fallback) {
  const YamlValue* meta = root.Find("metadata");
  std::string name, ns;
  if (meta != nullptr && meta->IsMap()) {
    const YamlValue* n = meta->Find("name");
    if (n != nullptr && n->IsScalar()) name = n->text;
    const YamlValue* s = meta->Find("namespace");
    if (s != nullptr && s->IsScalar()) ns = s->text;
  }
  if (kind.empty() || name.empty()) {
    std::string d(fallback);
    if (!kind.empty()) d += " (" + std::string(kind) + ")";
    return d;
  }
  if (namespaced && ns.empty()) ns = "default";
  return std::string(kind) + " " + (ns.empty() ? "" : ns + "/") + name;
}

// "networking.k8s.io/v1" or "apps/v1, apps/v1beta1, ...": what the loader reads of a kind.
std::string SupportedVersions(std::string_view kind) {
  std::string supported;
  for (const KindInfo& k : KindTable()) {
    if (k.kind != kind) continue;
    for (std::string_view v : k.versions) {
      if (!supported.empty()) supported += ", ";
      supported += (k.group.empty() ? "" : std::string(k.group) + "/") + std::string(v);
    }
  }
  return supported;
}

class Dispatcher;

}  // namespace
}  // namespace internal

// One file as the last load through a LoadCache read it.
struct LoadCache::Impl {
  struct File {
    std::string content;
    // The file's objects; its policies are in `policies` (the pieces' own are empty), shared
    // with whoever LoadPathsShared gave them to.
    internal::Collected collected;
    std::vector<std::shared_ptr<const Policy>> policies;
    std::vector<Diagnostic> diagnostics;
    std::optional<FileStamp> stamp;  // taken before `content` was read (files only)
    int64_t read_at_ns = 0;          // when `content` was read (CLOCK_REALTIME, before the read)
    uint64_t version = 0;            // a new one each time the file is parsed
    bool has_rest = false;           // objects other than policies (namespaces, workloads, ...)
    bool seen = false;               // by the current load
  };
  std::map<std::string, File> files;
  size_t parsed = 0;
  size_t reused = 0;
  size_t unread = 0;
  uint64_t next_version = 1;
  // The assembly of everything but the policies at the last LoadPathsShared, and the files
  // (name, version) with such objects it was made of, in input order.
  std::vector<std::pair<std::string, uint64_t>> rest_files;
  std::optional<internal::RestAssembly> rest;
};

namespace internal {
namespace {

// The kinds whose objects are policies (Policy::kind): their names are checked for
// duplicates among themselves only, since an ObjectKey names its kind.
bool IsPolicyKind(std::string_view kind) {
  return kind == "NetworkPolicy" || kind == "AdminNetworkPolicy" ||
         kind == "BaselineAdminNetworkPolicy" || kind == "BulkheadPolicy" ||
         kind == "BulkheadClusterPolicy" || kind == "DefaultDeny";
}

void Append(Collected& to, const Collected& from) {
  to.keys.insert(to.keys.end(), from.keys.begin(), from.keys.end());
  to.namespaces.insert(to.namespaces.end(), from.namespaces.begin(), from.namespaces.end());
  to.workloads.insert(to.workloads.end(), from.workloads.begin(), from.workloads.end());
  to.nodes.insert(to.nodes.end(), from.nodes.begin(), from.nodes.end());
  to.policies.insert(to.policies.end(), from.policies.begin(), from.policies.end());
  to.workload_modes.insert(to.workload_modes.end(), from.workload_modes.begin(),
                           from.workload_modes.end());
}

class Dispatcher {
 public:
  Dispatcher(Collected* out, std::vector<Diagnostic>* diags, LoadCache::Impl* cache = nullptr,
             std::vector<LoadCache::Impl::File*>* record = nullptr)
      : out_(out), diags_(diags), cache_(cache), record_(record) {}

  // LoadContent, or what it produced for the same file and bytes at the last load.
  bool caching() const { return cache_ != nullptr; }

  // What the last load read of `file`, without reading it again, when its metadata says its
  // bytes are those (FileStamp). False: read it.
  bool ReuseUnread(const std::string& file, const FileStamp& stamp) {
    if (cache_ == nullptr) return false;
    auto it = cache_->files.find(file);
    if (it == cache_->files.end()) return false;
    LoadCache::Impl::File& f = it->second;
    if (f.seen || f.content.empty() || !f.stamp || !(*f.stamp == stamp) ||
        !StampSettled(*f.stamp, f.read_at_ns)) {
      return false;
    }
    ++cache_->reused;
    ++cache_->unread;
    Use(f);
    return true;
  }

  // LoadContent, or what it produced for the same file and bytes at the last load. `stamp`
  // and `read_at_ns`: the file's metadata and the time, both taken before it was read.
  void LoadFileContent(std::string content, const std::string& file,
                       std::optional<FileStamp> stamp = std::nullopt, int64_t read_at_ns = 0) {
    if (cache_ == nullptr) {
      LoadContent(content, file);
      return;
    }
    LoadCache::Impl::File& f = cache_->files[file];
    f.stamp = stamp;
    f.read_at_ns = read_at_ns;
    if (!f.seen && f.content == content && !f.content.empty()) {
      ++cache_->reused;
    } else {
      f.collected = Collected{};
      f.diagnostics.clear();
      Dispatcher parse(&f.collected, &f.diagnostics);
      parse.LoadContent(content, file);
      f.content = std::move(content);
      f.policies.clear();
      for (PolicyPiece& piece : f.collected.policies) {
        f.policies.push_back(std::make_shared<const Policy>(std::move(piece.policy)));
        piece.policy = Policy{};
      }
      f.has_rest = !f.collected.namespaces.empty() || !f.collected.workloads.empty() ||
                   !f.collected.nodes.empty() || !f.collected.workload_modes.empty() ||
                   std::any_of(f.collected.keys.begin(), f.collected.keys.end(),
                               [](const ObjectKey& k) { return !IsPolicyKind(k.kind); });
      f.version = cache_->next_version++;
      ++cache_->parsed;
    }
    Use(f);
  }

  // The file's objects and diagnostics into this load.
  void Use(LoadCache::Impl::File& f) {
    f.seen = true;
    diags_->insert(diags_->end(), f.diagnostics.begin(), f.diagnostics.end());
    if (record_ != nullptr) {
      record_->push_back(&f);
      return;
    }
    const size_t first = out_->policies.size();
    Append(*out_, f.collected);
    for (size_t k = 0; k < f.policies.size(); ++k)
      out_->policies[first + k].policy = *f.policies[k];
  }

  void LoadContent(std::string_view content, const std::string& file) {
    YamlStream stream = ReadYamlStream(content);
    for (const YamlError& e : stream.errors) {
      Diagnostic d;
      d.severity = Diagnostic::Severity::kError;
      d.where.file = file;
      d.where.document = e.document;
      d.where.line = e.line;
      d.where.column = e.column;
      d.object = e.document > 0 ? "document " + std::to_string(e.document) : "";
      d.message = e.message;
      diags_->push_back(std::move(d));
    }
    for (const YamlDocument& doc : stream.documents) {
      Reporter r(diags_, file, doc.index);
      Object(RootField(doc.root), r, "document " + std::to_string(doc.index), "", "", "", 0);
    }
  }

 private:
  // Decodes one object: a document, or an item of a List (`item_path` "items[3]"). A typed
  // list (PodList) gives its items a default kind and apiVersion, which they may omit.
  void Object(const Field& root, Reporter& r, const std::string& doc_name,
              const std::string& item_path, const std::string& default_kind,
              const std::string& default_api_version, int list_depth) {
    Decoder d(&r);
    std::string where_name = item_path.empty() ? doc_name : doc_name + " " + item_path;
    r.set_object(where_name);
    if (!root.present()) {
      d.Error(root, "is null, expected a Kubernetes object");
      return;
    }
    if (!root.value->IsMap()) {
      d.Error(root, std::string("must be a Kubernetes object (a map with apiVersion and "
                                "kind), not ") +
                        DescribeType(*root.value));
      return;
    }
    Field kind_field = d.Get(root, "kind");
    Field api_field = d.Get(root, "apiVersion");
    std::optional<std::string> kind =
        kind_field.present() || default_kind.empty() ? d.String(kind_field, true) : default_kind;
    std::optional<std::string> api = api_field.present() || default_api_version.empty()
                                         ? d.String(api_field, true)
                                         : default_api_version;
    if (kind && kind->empty()) {
      d.Error(kind_field, "must not be empty");
      kind.reset();
    }
    if (!kind || !api) return;

    if (*kind == "List" || (kind->size() > 4 && kind->ends_with("List"))) {
      if (list_depth >= kMaxListDepth) {
        d.Error(root, "lists nested deeper than " + std::to_string(kMaxListDepth) + " levels");
        return;
      }
      std::string item_kind = *kind == "List" ? "" : kind->substr(0, kind->size() - 4);
      std::string item_api = *kind == "List" ? "" : *api;
      Field items = d.Get(root, "items");
      std::vector<Field> item_fields = d.List(items);
      for (size_t i = 0; i < item_fields.size(); ++i) {
        const Field& item = item_fields[i];
        // Items report field paths relative to themselves; their name says where they are.
        std::string path =
            (item_path.empty() ? "" : item_path + ".") + "items[" + std::to_string(i) + "]";
        Object(Field{item.value, item.anchor, ""}, r, doc_name, path, item_kind, item_api,
               list_depth + 1);
      }
      return;
    }
    Known(root, r, d, *kind, *api, where_name, item_path);
  }

  void Known(const Field& root, Reporter& r, Decoder& d, const std::string& kind,
             const std::string& api, const std::string& where_name, const std::string& item_path) {
    auto display = [&](bool namespaced) {
      std::string name = DisplayName(*root.value, kind, namespaced, where_name);
      if (!item_path.empty() && name != where_name && name.rfind(where_name, 0) != 0) {
        name += " (" + item_path + ")";
      }
      return name;
    };
    std::string group, version = api;
    size_t slash = api.find('/');
    if (slash != std::string::npos) {
      group = api.substr(0, slash);
      version = api.substr(slash + 1);
    }
    Field api_field = d.Get(root, "apiVersion");
    if (api.empty() || version.empty() || version.find('/') != std::string::npos ||
        (slash != std::string::npos && group.empty())) {
      r.set_object(display(false));
      d.Error(api_field, "invalid apiVersion \"" + api + "\" (expected group/version or v1)");
      return;
    }
    const KindInfo* info = nullptr;
    for (const KindInfo& k : KindTable()) {
      if (k.kind == kind && k.group == group) {
        info = &k;
        break;
      }
    }
    std::string supported = SupportedVersions(kind);
    if (info == nullptr) {
      r.set_object(display(false));
      if (group == kNativeGroup) {
        d.Error(d.Get(root, "kind"),
                "unknown kind \"" + kind +
                    "\" in bulkhead.io (Inventory, BulkheadPolicy, BulkheadClusterPolicy, "
                    "DefaultDeny)");
      } else if (group == kAnpGroup || kind.find("Policy") != std::string::npos) {
        std::string msg = "ignored: " + kind + " of " + api + " is not a kind Bulkhead reads";
        if (!supported.empty()) msg += " (it reads " + kind + " of " + supported + ")";
        d.Warning(Field{nullptr, root.value, ""}, msg);
      } else {
        r.Notice(root.value, "", "ignored: " + kind + " does not affect network policy");
      }
      return;
    }
    bool namespaced = info->scope != Scope::kCluster;
    std::string object = display(info->scope == Scope::kNamespaced);
    r.set_object(object);
    if (std::find(info->versions.begin(), info->versions.end(), version) == info->versions.end()) {
      d.Error(api_field, "apiVersion " + api + " of " + kind + " is not supported (" +
                             (supported.empty() ? "none" : supported) + ")");
      return;
    }

    ObjectContext ctx;
    ctx.d = &d;
    ctx.root = root;
    ctx.api_version = api;
    ctx.kind = kind;
    ctx.source = r.Where(root.value);
    ctx.out = out_;
    ctx.object = object;
    if (info->strict) {
      if (info->native) {
        d.OnlyKnownFields(root, {"apiVersion", "kind", "metadata", "spec"});
      } else {
        d.OnlyKnownFields(root, {"apiVersion", "kind", "metadata", "spec", "status"});
      }
    }
    Metadata(ctx, *info, namespaced);
    if (!ctx.name.empty()) {
      out_->keys.push_back(ObjectKey{kind, info->scope == Scope::kCluster ? "" : ctx.namespace_name,
                                     ctx.name, object, "metadata.name", ctx.name_where});
    }
    info->decode(ctx);
  }

  void Metadata(ObjectContext& ctx, const KindInfo& info, bool namespaced) {
    Decoder& d = *ctx.d;
    Field meta = d.Get(ctx.root, "metadata");
    if (!d.Map(meta, /*required=*/true)) return;
    if (info.strict) d.OnlyKnownFields(meta, kMetadataFields);
    Field name_field = d.Get(meta, "name");
    ctx.name_where = d.reporter().Where(name_field.at());
    if (!name_field.present() && d.Get(meta, "generateName").present()) {
      d.Error(name_field,
              "is required (generateName is not supported: policy needs the final "
              "name)");
    } else if (auto name = d.String(name_field, /*required=*/true)) {
      std::string problem =
          ctx.kind == "Namespace" ? CheckDns1123Label(*name) : CheckDns1123Subdomain(*name);
      if (problem.empty()) {
        ctx.name = *name;
      } else if (ctx.kind == "Namespace" || info.native || !IsUsableName(*name)) {
        d.Error(name_field, "invalid name \"" + *name + "\": " + problem);
      } else {
        // Kubernetes would reject it, but the name plays no part in policy semantics.
        d.Warning(name_field,
                  "name \"" + *name + "\" " + problem + " (the API server would reject it)");
        ctx.name = *name;
      }
    }
    Field ns_field = d.Get(meta, "namespace");
    if (namespaced) {
      if (auto ns = d.String(ns_field)) {
        std::string problem = CheckDns1123Label(*ns);
        if (!problem.empty()) {
          d.Error(ns_field, "invalid namespace \"" + *ns + "\": " + problem);
        }
        ctx.namespace_name = *ns;
        ctx.namespace_given = true;
      } else if (info.scope == Scope::kNamespaced) {
        ctx.namespace_name = "default";  // as kubectl does without --namespace
      }
    } else if (ns_field.present()) {
      d.Warning(ns_field, "is ignored: " + ctx.kind + " is cluster-scoped");
    }
    Field labels = d.Get(meta, "labels");
    if (labels.present()) ctx.labels = d.LabelMap(labels).value_or(Labels{});
    Field annotations = d.Get(meta, "annotations");
    if (auto entries = d.Entries(annotations)) {
      for (size_t i = 0; i < entries->size(); ++i) {
        const auto& [key, value] = (*entries)[i];
        std::string problem = CheckLabelKey(key);
        if (!problem.empty()) {
          d.Error(value, "invalid annotation key \"" + key + "\": " + problem);
        }
        if (value.present()) d.String(value);
      }
    }
  }

  Collected* out_;
  std::vector<Diagnostic>* diags_;
  LoadCache::Impl* cache_;
  std::vector<LoadCache::Impl::File*>* record_;  // LoadPathsShared: the files, not their objects
};

// Manifests larger than this are refused rather than risking memory exhaustion.
constexpr std::uintmax_t kMaxFileBytes = 256u << 20;

Diagnostic FileError(const std::string& file, std::string message) {
  Diagnostic d;
  d.severity = Diagnostic::Severity::kError;
  d.where.file = file;
  d.message = std::move(message);
  return d;
}

bool IsManifestName(const std::filesystem::path& p) {
  std::string ext = p.extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return ext == ".yaml" || ext == ".yml" || ext == ".json";
}

void LoadFile(const std::string& file, Dispatcher& dispatcher, std::vector<Diagnostic>* diags) {
  std::optional<FileStamp> stamp;
  int64_t read_at_ns = 0;
  if (dispatcher.caching()) {
    stamp = StampFile(file);
    if (stamp && dispatcher.ReuseUnread(file, *stamp)) return;
    read_at_ns = RealtimeNs();
  }
  std::error_code ec;
  std::uintmax_t size = std::filesystem::file_size(file, ec);
  if (!ec && size > kMaxFileBytes) {
    diags->push_back(FileError(file, "file is larger than 256 MiB"));
    return;
  }
  std::ifstream in(file, std::ios::binary);
  if (!in) {
    diags->push_back(FileError(
        file, "cannot open: " + std::error_code(errno, std::generic_category()).message()));
    return;
  }
  std::ostringstream content;
  content << in.rdbuf();
  if (in.bad()) {
    diags->push_back(FileError(file, "cannot read"));
    return;
  }
  dispatcher.LoadFileContent(std::move(content).str(), file, stamp, read_at_ns);
}

void LoadPath(const std::string& path, Dispatcher& dispatcher, std::vector<Diagnostic>* diags) {
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::file_status st = fs::status(path, ec);
  if (ec || !fs::exists(st)) {
    diags->push_back(FileError(path, "no such file or directory"));
    return;
  }
  if (!fs::is_directory(st)) {
    LoadFile(path, dispatcher, diags);  // named explicitly: read whatever its extension
    return;
  }
  std::vector<std::string> files;
  fs::recursive_directory_iterator it(path, fs::directory_options::none, ec);
  for (; !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
    std::error_code type_ec;
    if (it->is_regular_file(type_ec) && IsManifestName(it->path())) {
      files.push_back(it->path().string());
    }
  }
  if (ec) {
    diags->push_back(FileError(path, "cannot list directory: " + ec.message()));
    return;
  }
  if (files.empty()) {
    Diagnostic d = FileError(path, "directory has no *.yaml, *.yml or *.json files");
    d.severity = Diagnostic::Severity::kWarning;
    diags->push_back(std::move(d));
  }
  std::sort(files.begin(), files.end());
  for (const std::string& f : files) LoadFile(f, dispatcher, diags);
}

void EscapeDiagnostics(std::vector<Diagnostic>& diags) {
  for (Diagnostic& d : diags) {
    for (std::string* text : {&d.where.file, &d.object, &d.field, &d.message}) {
      if (!IsValidUtf8(*text)) *text = EscapeInvalidUtf8(*text);
    }
  }
}

bool HasError(const std::vector<Diagnostic>& diags) {
  return std::any_of(diags.begin(), diags.end(), [](const Diagnostic& d) {
    return d.severity == Diagnostic::Severity::kError;
  });
}

LoadResult Finish(Collected collected, std::vector<Diagnostic> diags) {
  LoadResult result;
  Cluster cluster = Assemble(std::move(collected), &diags);
  EscapeDiagnostics(diags);
  result.diagnostics = std::move(diags);
  // Nothing is applied in part: a cluster with any error in its input stays empty.
  if (result.ok()) result.cluster = std::move(cluster);
  return result;
}

}  // namespace
}  // namespace internal

LoadResult LoadPaths(const std::vector<std::string>& paths) { return LoadPaths(paths, nullptr); }

std::optional<FileStamp> StampFile(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return std::nullopt;
  FileStamp s;
  s.device = static_cast<uint64_t>(st.st_dev);
  s.inode = static_cast<uint64_t>(st.st_ino);
  s.size = static_cast<int64_t>(st.st_size);
  s.mtime_ns = int64_t{st.st_mtim.tv_sec} * 1'000'000'000 + st.st_mtim.tv_nsec;
  s.ctime_ns = int64_t{st.st_ctim.tv_sec} * 1'000'000'000 + st.st_ctim.tv_nsec;
  return s;
}

int64_t RealtimeNs() {
  timespec t{};
  clock_gettime(CLOCK_REALTIME, &t);
  return int64_t{t.tv_sec} * 1'000'000'000 + t.tv_nsec;
}

bool StampSettled(const FileStamp& stamp, int64_t read_at_ns) {
  // File times come from a coarse clock (a timer tick, up to 10 ms): a write within the
  // same tick as the one read may leave every field of the stamp as it was. A write after
  // the read, when the read came a second after the last change, cannot.
  constexpr int64_t kMargin = 1'000'000'000;
  return stamp.ctime_ns + kMargin < read_at_ns && stamp.mtime_ns + kMargin < read_at_ns;
}

LoadCache::LoadCache() : impl_(std::make_unique<Impl>()) {}
LoadCache::~LoadCache() = default;
size_t LoadCache::parsed() const { return impl_->parsed; }
size_t LoadCache::reused() const { return impl_->reused; }
size_t LoadCache::unread() const { return impl_->unread; }

LoadResult LoadPaths(const std::vector<std::string>& paths, LoadCache* cache) {
  LoadCache::Impl* impl = cache == nullptr ? nullptr : cache->impl_.get();
  if (impl != nullptr) {
    impl->parsed = impl->reused = impl->unread = 0;
    for (auto& [file, f] : impl->files) f.seen = false;
  }
  internal::Collected collected;
  std::vector<Diagnostic> diags;
  internal::Dispatcher dispatcher(&collected, &diags, impl);
  if (paths.empty()) diags.push_back(internal::FileError("", "no input files"));
  for (const std::string& p : paths) internal::LoadPath(p, dispatcher, &diags);
  if (impl != nullptr) std::erase_if(impl->files, [](const auto& kv) { return !kv.second.seen; });
  return internal::Finish(std::move(collected), std::move(diags));
}

namespace {

// LoadPathsShared without the fast path: a full load, its policies made shared.
SharedLoadResult SharedFromFull(LoadResult full) {
  SharedLoadResult out;
  if (full.ok()) {
    out.policies.reserve(full.cluster.policies.size());
    for (Policy& p : full.cluster.policies) {
      out.policies.push_back(std::make_shared<const Policy>(std::move(p)));
    }
    full.cluster.policies.clear();
  }
  out.result = std::move(full);
  return out;
}

}  // namespace

SharedLoadResult LoadPathsShared(const std::vector<std::string>& paths, LoadCache* cache) {
  if (cache == nullptr || paths.empty()) return SharedFromFull(LoadPaths(paths, cache));
  LoadCache::Impl* impl = cache->impl_.get();
  impl->parsed = impl->reused = impl->unread = 0;
  for (auto& [file, f] : impl->files) f.seen = false;
  internal::Collected unused;
  std::vector<Diagnostic> diags;
  std::vector<LoadCache::Impl::File*> order;
  internal::Dispatcher dispatcher(&unused, &diags, impl, &order);
  for (const std::string& p : paths) internal::LoadPath(p, dispatcher, &diags);
  std::erase_if(impl->files, [](const auto& kv) { return !kv.second.seen; });
  // Errors, or a file read twice: the full load says exactly what (its files are cached now).
  std::set<const LoadCache::Impl::File*> distinct(order.begin(), order.end());
  auto full = [&] {
    impl->rest.reset();
    const size_t parsed = impl->parsed;
    SharedLoadResult r = SharedFromFull(LoadPaths(paths, cache));
    impl->parsed += parsed;
    return r;
  };
  if (internal::HasError(diags) || distinct.size() != order.size()) return full();

  // Everything but the policies: assembled again only when a file with such objects changed.
  // In input order, which need not be the map's (paths are given in any order).
  std::map<const LoadCache::Impl::File*, const std::string*> name_of;
  for (const auto& [name, f] : impl->files) name_of.emplace(&f, &name);
  std::vector<std::pair<std::string, uint64_t>> rest_files;
  for (const LoadCache::Impl::File* f : order) {
    if (f->has_rest) rest_files.emplace_back(*name_of.at(f), f->version);
  }
  if (!impl->rest || rest_files != impl->rest_files) {
    internal::Collected rest;
    for (const LoadCache::Impl::File* f : order) {
      if (!f->has_rest) continue;
      const internal::Collected& c = f->collected;
      for (const internal::ObjectKey& k : c.keys) {
        if (!internal::IsPolicyKind(k.kind)) rest.keys.push_back(k);
      }
      rest.namespaces.insert(rest.namespaces.end(), c.namespaces.begin(), c.namespaces.end());
      rest.workloads.insert(rest.workloads.end(), c.workloads.begin(), c.workloads.end());
      rest.nodes.insert(rest.nodes.end(), c.nodes.begin(), c.nodes.end());
      rest.workload_modes.insert(rest.workload_modes.end(), c.workload_modes.begin(),
                                 c.workload_modes.end());
    }
    impl->rest = internal::AssembleRest(std::move(rest));
    impl->rest_files = std::move(rest_files);
  }
  const internal::RestAssembly& rest = *impl->rest;
  if (internal::HasError(rest.diagnostics)) return full();

  // The policies against each other: duplicate names, admin priorities (errors: the full
  // load reports them, in its order).
  SharedLoadResult out;
  std::vector<const Policy*> policies;
  std::set<std::tuple<std::string_view, std::string_view, std::string_view>> names;
  std::set<int32_t> priorities;
  for (const LoadCache::Impl::File* f : order) {
    for (const internal::ObjectKey& k : f->collected.keys) {
      if (internal::IsPolicyKind(k.kind) &&
          !names.emplace(k.kind, k.namespace_name, k.name).second) {
        return full();
      }
    }
    for (size_t i = 0; i < f->policies.size(); ++i) {
      const internal::PolicyPiece& piece = f->collected.policies[i];
      const Policy& p = *f->policies[i];
      if (p.tier == Tier::kAdmin && piece.priority_valid && !priorities.insert(p.priority).second) {
        return full();
      }
      policies.push_back(&p);
      out.policies.push_back(f->policies[i]);
    }
  }
  Cluster& cluster = out.result.cluster;
  cluster.namespaces = rest.cluster.namespaces;
  cluster.workloads = rest.cluster.workloads;
  cluster.nodes = rest.cluster.nodes;
  cluster.workload_modes = rest.cluster.workload_modes;
  diags.insert(diags.end(), rest.diagnostics.begin(), rest.diagnostics.end());
  internal::AssemblePolicies(rest, policies, &cluster.namespaces, &diags);
  internal::EscapeDiagnostics(diags);
  out.result.diagnostics = std::move(diags);
  return out;
}

LoadResult LoadString(std::string_view content, std::string_view file_name) {
  internal::Collected collected;
  std::vector<Diagnostic> diags;
  internal::Dispatcher dispatcher(&collected, &diags);
  dispatcher.LoadContent(content, std::string(file_name));
  return internal::Finish(std::move(collected), std::move(diags));
}

KindScope LookupKindScope(std::string_view api_version, std::string_view kind) {
  size_t slash = api_version.find('/');
  std::string_view group = slash == std::string_view::npos ? "" : api_version.substr(0, slash);
  std::string_view version =
      slash == std::string_view::npos ? api_version : api_version.substr(slash + 1);
  for (const internal::KindInfo& k : internal::KindTable()) {
    if (k.kind != kind || k.group != group) continue;
    if (std::find(k.versions.begin(), k.versions.end(), version) == k.versions.end()) continue;
    switch (k.scope) {
      case internal::Scope::kNamespaced:
        return KindScope::kNamespaced;
      case internal::Scope::kCluster:
        return KindScope::kCluster;
      case internal::Scope::kEither:
        return KindScope::kEither;
    }
  }
  return KindScope::kUnknown;
}

LoadResult LoadSources(const std::vector<Source>& sources) { return LoadSources(sources, nullptr); }

LoadResult LoadSources(const std::vector<Source>& sources, LoadCache* cache) {
  LoadCache::Impl* impl = cache == nullptr ? nullptr : cache->impl_.get();
  if (impl != nullptr) {
    impl->parsed = impl->reused = impl->unread = 0;
    for (auto& [name, f] : impl->files) f.seen = false;
  }
  internal::Collected collected;
  std::vector<Diagnostic> diags;
  internal::Dispatcher dispatcher(&collected, &diags, impl);
  for (const Source& s : sources) dispatcher.LoadFileContent(s.content, s.name);
  if (impl != nullptr) std::erase_if(impl->files, [](const auto& kv) { return !kv.second.seen; });
  return internal::Finish(std::move(collected), std::move(diags));
}

}  // namespace bulkhead::policy
