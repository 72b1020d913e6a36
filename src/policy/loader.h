// Reads Kubernetes and Bulkhead manifests (YAML/JSON files, directories) into a validated
// policy::Cluster, applying API-server defaulting and reporting every error with its place.
#pragma once

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

// Loads one in-memory document stream, as if it were a file named `file_name`.
LoadResult LoadString(std::string_view content, std::string_view file_name);

}  // namespace bulkhead::policy
