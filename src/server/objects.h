// The objects of a policy set as the control plane stores them: one manifest object each
// (a policy, a Namespace, an Inventory, ...), named by group, kind, namespace and name, held
// as canonical JSON so that the same object applied twice is the same bytes.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "policy/loader.h"

namespace bulkhead::server {

struct ObjectId {
  std::string group;  // "" for the core group, "networking.k8s.io", "bulkhead.io", ...
  std::string kind;
  std::string namespace_name;  // "" for cluster-scoped objects
  std::string name;

  // "NetworkPolicy shop/web", "AdminNetworkPolicy deny-all": how people name it.
  std::string Display() const;
  // "networking.k8s.io/NetworkPolicy/shop/web", "core/Namespace//shop": the store key suffix;
  // orders objects by group, kind, namespace and name.
  std::string Key() const;
  static bool FromKey(std::string_view key, ObjectId* out);
  // NOLINTNEXTLINE(modernize-use-nullptr): clang-tidy 14 misreads a defaulted <=>
  auto operator<=>(const ObjectId&) const = default;
};

struct StoredObject {
  ObjectId id;
  std::string api_version;
  std::string json;  // canonical: sorted keys, compact, server-managed fields removed
};

// A policy set: every stored object by id.
using ObjectSet = std::map<ObjectId, StoredObject>;

struct SplitResult {
  std::vector<StoredObject> objects;
  std::vector<policy::Diagnostic> diagnostics;  // errors: objects is unusable
  bool ok() const;
};

// Splits manifest streams into stored objects: every document, and every item of a List.
// Kinds the loader does not read (Service, ConfigMap, CRDs of other products) are left out
// with a notice; workload kinds (Pod, Deployment, ...) are refused: workloads come from the
// agents (CNI, inventories on the hosts), not from policy files. Two objects with one id
// are an error. Expects sources that policy::LoadSources accepted (it reports syntax and
// field errors with their places; this does not repeat them).
SplitResult SplitManifests(const std::vector<policy::Source>& sources);

// An object as YAML (block style, keys sorted), for diffs and `bulkhead get -o yaml`.
std::string ToYaml(const std::string& json);

// One object's change between two sets.
struct ObjectChange {
  enum class Action { kCreate, kUpdate, kDelete };
  Action action = Action::kCreate;
  ObjectId id;
  std::string api_version;
  std::string before;  // canonical JSON ("" for kCreate)
  std::string after;   // canonical JSON ("" for kDelete)
};
const char* ActionName(ObjectChange::Action a);  // "create", "update", "delete"

// The changes that turn `from` into `to`, in id order.
std::vector<ObjectChange> Changes(const ObjectSet& from, const ObjectSet& to);

// `to` with `changes` undone (the set before them).
ObjectSet Undo(ObjectSet to, const std::vector<ObjectChange>& changes);

// A unified diff of the changes, object by object, on their YAML renderings:
//   --- NetworkPolicy shop/web
//   +++ NetworkPolicy shop/web
//   @@ -3,4 +3,4 @@
//   ...
std::string RenderDiff(const std::vector<ObjectChange>& changes);

}  // namespace bulkhead::server
