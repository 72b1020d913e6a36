// Cluster-wide identities: the server allocates one number per identity key
// (identity::IdentityKey::ToString()) in the store, so that every node uses the same number
// for the same key, and frees it when no node holds the key any more.
//
// Store layout (docs/control-plane.md, "Identities"):
//   /bulkhead/identities/key/<escaped key>   {"key", "number", "holders": [nodes]}
//   /bulkhead/identities/number/<%010u>      {"key"}
// Both records of a key are created and deleted together, in one transaction whose
// conditions are the mod revisions of the records it read (0: absent), so that servers
// racing on one store never give one number to two keys nor two numbers to one key: the
// loser's transaction fails, it reads again and retries. The holders are the nodes whose
// agents use the key (their own endpoints' or their peers'); the key and its number are freed
// when the last holder lets it go. A freed number is taken by the next new key (the lowest
// free number first); since no node holds the old key at that point, no agent that follows
// the server still uses the number for the old key.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "store/store.h"

namespace bulkhead::server {

inline constexpr char kIdentitiesPrefix[] = "/bulkhead/identities/";
inline constexpr char kIdentityKeysPrefix[] = "/bulkhead/identities/key/";
inline constexpr char kIdentityNumbersPrefix[] = "/bulkhead/identities/number/";

struct IdentityRecord {
  std::string key;
  uint32_t number = 0;
  std::set<std::string> holders;  // node names
};

struct ClusterIdentitiesOptions {
  // The numbers handed out: identity::kFirstWorkloadIdentity .. kFirstCidrIdentity - 1 (the
  // workload range of the datapath). Tests narrow it to reach the end.
  uint32_t first = 256;
  uint32_t last = (uint32_t{1} << 24) - 1;
  // Transactions that may fail on a condition (another writer came first) before a call
  // gives up with Aborted. Every failure means someone else made progress.
  int max_conflicts = 1000;
};

// The store key of an identity key's record; bytes other than [A-Za-z0-9._~=,:+@-] are
// escaped as %XX.
std::string IdentityKeyRecordKey(std::string_view key);
std::string IdentityNumberRecordKey(uint32_t number);

class ClusterIdentities {
 public:
  explicit ClusterIdentities(store::IStore* store, ClusterIdentitiesOptions options = {});

  // From now on `node` holds exactly `keys`: it is added to the holders of each (allocating
  // the lowest free number for a key nobody held) and removed from those of every other key,
  // freeing keys it held last. Returns the number of each of `keys`. Errors (nothing of the
  // call left in the store, though the keys it already held stay held): InvalidArgument for a
  // key that ValidateIdentityKey refuses, ResourceExhausted when the range has fewer free
  // numbers than the new keys need, Aborted after max_conflicts lost races, the store's
  // errors.
  absl::StatusOr<std::map<std::string, uint32_t>> Hold(const std::string& node,
                                                       const std::set<std::string>& keys);

  // Removes `node` from the holders of every key (freeing keys it held last). With a guard,
  // every transaction also requires the guard key to be at the guard's mod revision, and the
  // call stops with FailedPrecondition when it is not (the agent record changed: the agent
  // came back and holds its keys again).
  absl::Status ReleaseNode(const std::string& node, const std::optional<store::Compare>& guard);

  // Every allocated identity, by number.
  absl::StatusOr<std::vector<IdentityRecord>> List();
  // The numbers of those of `keys` that have one now.
  absl::StatusOr<std::map<std::string, uint32_t>> Lookup(const std::set<std::string>& keys);

 private:
  struct Snapshot;
  absl::StatusOr<Snapshot> Read();
  // Removes `node` from the holders of `keys` (all of its keys when `keys` is null).
  absl::Status Release(const std::string& node, const std::set<std::string>* keys,
                       const std::optional<store::Compare>& guard);

  store::IStore* store_;
  ClusterIdentitiesOptions options_;
};

}  // namespace bulkhead::server
