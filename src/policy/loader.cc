// The loader's entry points: reads files and directories, splits YAML/JSON streams into
// objects (unwrapping List kinds), dispatches each to its kind decoder, then assembles.
#include "policy/loader.h"

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <sstream>
#include <system_error>

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
    internal::Collected collected;
    std::vector<Diagnostic> diagnostics;
    bool seen = false;  // by the current load
  };
  std::map<std::string, File> files;
  size_t parsed = 0;
  size_t reused = 0;
};

namespace internal {
namespace {

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
  Dispatcher(Collected* out, std::vector<Diagnostic>* diags, LoadCache::Impl* cache = nullptr)
      : out_(out), diags_(diags), cache_(cache) {}

  // LoadContent, or what it produced for the same file and bytes at the last load.
  void LoadFileContent(std::string content, const std::string& file) {
    if (cache_ == nullptr) {
      LoadContent(content, file);
      return;
    }
    LoadCache::Impl::File& f = cache_->files[file];
    if (!f.seen && f.content == content && !f.content.empty()) {
      ++cache_->reused;
    } else {
      f.collected = Collected{};
      f.diagnostics.clear();
      Dispatcher parse(&f.collected, &f.diagnostics);
      parse.LoadContent(content, file);
      f.content = std::move(content);
      ++cache_->parsed;
    }
    f.seen = true;
    Append(*out_, f.collected);
    diags_->insert(diags_->end(), f.diagnostics.begin(), f.diagnostics.end());
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
  dispatcher.LoadFileContent(std::move(content).str(), file);
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

LoadResult Finish(Collected collected, std::vector<Diagnostic> diags) {
  LoadResult result;
  Cluster cluster = Assemble(std::move(collected), &diags);
  for (Diagnostic& d : diags) {
    for (std::string* text : {&d.where.file, &d.object, &d.field, &d.message}) {
      if (!IsValidUtf8(*text)) *text = EscapeInvalidUtf8(*text);
    }
  }
  result.diagnostics = std::move(diags);
  // Nothing is applied in part: a cluster with any error in its input stays empty.
  if (result.ok()) result.cluster = std::move(cluster);
  return result;
}

}  // namespace
}  // namespace internal

LoadResult LoadPaths(const std::vector<std::string>& paths) { return LoadPaths(paths, nullptr); }

LoadCache::LoadCache() : impl_(std::make_unique<Impl>()) {}
LoadCache::~LoadCache() = default;
size_t LoadCache::parsed() const { return impl_->parsed; }
size_t LoadCache::reused() const { return impl_->reused; }

LoadResult LoadPaths(const std::vector<std::string>& paths, LoadCache* cache) {
  LoadCache::Impl* impl = cache == nullptr ? nullptr : cache->impl_.get();
  if (impl != nullptr) {
    impl->parsed = impl->reused = 0;
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
    impl->parsed = impl->reused = 0;
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
