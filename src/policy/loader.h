// Reads Kubernetes and Bulkhead manifests (YAML/JSON files, directories) into a validated
// policy::Cluster, applying API-server defaulting and reporting every error with its place.
#pragma once

#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "policy/model.h"

namespace bulkhead::policy {

struct Diagnostic {
  enum class Severity { kError, kWarning, kNotice };
  Severity severity = Severity::kError;
  SourceRef where;      // file, document, line:column of the offending node
  std::string object;   // "NetworkPolicy default/web-allow" (or "document 3" when unnamed)
  std::string field;    // "spec.ingress[0].ports[1].endPort" (empty for whole-object errors)
  std::string message;  // what is wrong, in words
  // "file:line:col: error: NetworkPolicy default/web: spec.ingress[0].ports[1].endPort: ..."
  std::string ToString() const;
};

struct LoadResult {
  Cluster cluster;
  std::vector<Diagnostic> diagnostics;
  bool ok() const;  // no diagnostic of severity kError
};

// Loads every path (a file, or a directory read recursively for *.yaml, *.yml, *.json in
// sorted order) into one Cluster. All errors of all files are reported; when any error is
// found the returned cluster must not be used.
LoadResult LoadPaths(const std::vector<std::string>& paths);

// One in-memory document stream and the name its diagnostics carry as their file (the
// control plane's stored objects: "Kind ns/name" or the path a client sent).
struct Source {
  std::string name;
  std::string content;
};

struct SharedLoadResult;

// What a file's metadata says about its bytes. Bytes read at a time (CLOCK_REALTIME, taken
// before the read, as the stamp was) at least a second after the file's last change are
// still its bytes while its stamp stays the same (StampSettled): a later write changes the
// change time (ctime), and a rename into place the inode. LoadCache reads a file again only
// when this does not tell.
struct FileStamp {
  uint64_t device = 0;
  uint64_t inode = 0;
  int64_t size = 0;
  int64_t mtime_ns = 0;
  int64_t ctime_ns = 0;
  bool operator==(const FileStamp&) const = default;
};
std::optional<FileStamp> StampFile(const std::string& path);  // nullopt: cannot stat
int64_t RealtimeNs();
bool StampSettled(const FileStamp& stamp, int64_t read_at_ns);

// Parsed files kept from one load to the next, for a caller that loads the same paths again
// after a change (the agent, on every edit of its policy directory). A file whose path and
// bytes are those it had at the previous load is not parsed again: its objects and
// diagnostics are reused. Cross-object checks and defaulting always run over everything, so
// the result is exactly LoadPaths(paths)'s. Files gone from a load are forgotten. Holds a
// copy of each file's bytes and decoded objects. A file whose metadata is unchanged since a
// read that came well after its last change (FileStamp) is not even read again.
class LoadCache {
 public:
  LoadCache();
  ~LoadCache();
  LoadCache(const LoadCache&) = delete;
  LoadCache& operator=(const LoadCache&) = delete;

  // Files parsed and files reused by the last load through this cache.
  size_t parsed() const;
  size_t reused() const;
  // Of those reused, the files not even read (their FileStamp told).
  size_t unread() const;

  struct Impl;

 private:
  friend LoadResult LoadPaths(const std::vector<std::string>& paths, LoadCache* cache);
  friend LoadResult LoadSources(const std::vector<Source>& sources, LoadCache* cache);
  friend SharedLoadResult LoadPathsShared(const std::vector<std::string>& paths, LoadCache* cache);
  std::unique_ptr<Impl> impl_;
};

// LoadPaths(paths), parsing only the files that changed since the last load through `cache`
// (nullptr: parse everything).
LoadResult LoadPaths(const std::vector<std::string>& paths, LoadCache* cache);

// A load whose policies are shared objects, apart from the cluster (LoadPathsShared).
struct SharedLoadResult {
  LoadResult result;  // result.cluster.policies is empty: they are in `policies`
  std::vector<std::shared_ptr<const Policy>> policies;  // in input order; empty unless ok()
  bool ok() const { return result.ok(); }
};

// LoadPaths(paths, cache) with the policies handed over as shared objects that the cache
// keeps too: a policy of a file that did not change is the very object the previous load
// gave (a consumer that keeps them, the agent's compiler, holds the input once and knows an
// unchanged policy by its address; PolicyCompiler::UpdatePolicies). The diagnostics and the
// content are exactly LoadPaths(paths)'s (result.cluster with `policies` as its policies).
// When the files that changed hold only policies, only they are parsed, and only the
// policies are checked against each other (names, admin priorities, the namespaces they
// imply, selectors that split a merged workload); the rest of the input is not assembled
// again. Input with an error is loaded in full, so that its diagnostics are a full load's.
SharedLoadResult LoadPathsShared(const std::vector<std::string>& paths, LoadCache* cache);

// Loads one in-memory document stream, as if it were a file named `file_name`.
LoadResult LoadString(std::string_view content, std::string_view file_name);

// How a kind the loader reads is scoped: namespaced (metadata.namespace defaults to
// "default"), cluster-scoped (metadata.namespace ignored), or either (DefaultDeny: namespaced
// when metadata.namespace is given). kUnknown for kinds and apiVersions the loader does not
// read (they are ignored with a notice, or refused).
enum class KindScope { kUnknown, kNamespaced, kCluster, kEither };
KindScope LookupKindScope(std::string_view api_version, std::string_view kind);

// Loads several in-memory document streams into one Cluster, as LoadPaths does files.
LoadResult LoadSources(const std::vector<Source>& sources);

// LoadSources(sources), parsing only the streams whose name or content changed since the last
// load through `cache` (the server validates its whole stored set on every change).
LoadResult LoadSources(const std::vector<Source>& sources, LoadCache* cache);

}  // namespace bulkhead::policy
