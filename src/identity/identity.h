// Security identities: small integers naming the distinct sets of identity-relevant
// workload attributes, allocated deterministically (design §3).
//
// Policy never names an individual workload: it selects by namespace labels, workload
// labels, service account, and resolves named ports against the destination. Workloads
// that agree on all of these are indistinguishable to every policy, so they share one
// identity, and the kernel's tables are keyed by identity instead of by address.
#pragma once

#include <compare>
#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "policy/model.h"

namespace bulkhead::identity {

// Numeric identity as carried by the ipcache and the policy maps (datapath ABI).
using NumericIdentity = uint32_t;

// Reserved identities (the ABI header repeats these values for BPF C).
inline constexpr NumericIdentity kIdentityHost = 1;     // the local host itself
inline constexpr NumericIdentity kIdentityWorld = 2;    // outside the cluster, no CIDR matched
inline constexpr NumericIdentity kIdentityUnknown = 3;  // not resolvable (yet)
// Workload identities: kFirstWorkloadIdentity .. kFirstCidrIdentity - 1.
inline constexpr NumericIdentity kFirstWorkloadIdentity = 256;
// CIDR identities (external address classes) come from their own range, so that a CIDR
// identity never collides with a workload identity however many workloads there are.
inline constexpr NumericIdentity kFirstCidrIdentity = NumericIdentity{1} << 24;

enum class IdentityKind { kReserved, kWorkload, kCidr };
IdentityKind KindOf(NumericIdentity id);
// "host", "world", "unknown" for reserved identities, "" otherwise.
const char* ReservedIdentityName(NumericIdentity id);

// One entry of a workload's named-port map, ordered so that the map has one canonical form.
struct PortDefinition {
  std::string name;
  policy::Protocol protocol = policy::Protocol::kTCP;
  uint16_t port = 0;
  // clang-tidy 14 misreads the defaulted comparison as a literal-0 comparison.
  auto operator<=>(const PortDefinition&) const = default;  // NOLINT(modernize-use-nullptr)
  bool operator==(const PortDefinition&) const = default;
};

// The identity-relevant attributes of a workload. Two workloads with equal keys get the
// same identity.
//
// The named-port map is part of the key although no selector matches on it: a rule's
// named port is resolved against the destination workload, so two workloads that differ
// only in "http -> TCP/8080" vs "http -> TCP/80" are allowed different ports by the same
// rule. Keeping the map in the key makes one compiled table exact for every endpoint that
// shares an identity (and lets a peer's class in another table account for the ports its
// named ports resolve to).
struct IdentityKey {
  std::string namespace_name;
  policy::Labels namespace_labels;  // shown with an "ns:" prefix
  policy::Labels labels;            // workload labels, filtered by LabelFilter
  std::string service_account;
  std::vector<PortDefinition> named_ports;  // sorted, unique

  // clang-tidy 14 misreads the defaulted comparison as a literal-0 comparison.
  auto operator<=>(const IdentityKey&) const = default;  // NOLINT(modernize-use-nullptr)
  bool operator==(const IdentityKey&) const = default;

  // The canonical attribute list: "ns:k=v" for namespace labels, "k=v" for workload
  // labels, "sa:name", "port:name=TCP/80", in that order, each group sorted.
  std::vector<std::string> Attributes() const;
  std::string ToString() const;  // Attributes joined with ","
};

// Decides which workload label keys are identity-relevant. Labels that no policy can
// sensibly select (they change with every rollout or name one replica) are left out so
// that identities stay few and stable across rollouts. A key on the ignore list is kept
// after all when some selector of the policy set references it, so that compiled tables
// stay exact whatever the policies say.
class LabelFilter {
 public:
  // pod-template-hash, controller-revision-hash, statefulset.kubernetes.io/pod-name,
  // pod-template-generation.
  static const std::vector<std::string>& DefaultIgnoredKeys();

  LabelFilter();  // ignores DefaultIgnoredKeys()
  explicit LabelFilter(std::set<std::string> ignored_keys);
  // The default ignore list minus every key referenced by a pod selector (subject or
  // peer) of `cluster`'s policies.
  static LabelFilter ForCluster(const policy::Cluster& cluster);

  bool Keep(std::string_view key) const {
    return ignored_.find(std::string(key)) == ignored_.end();
  }
  const std::set<std::string>& ignored_keys() const { return ignored_; }

 private:
  std::set<std::string> ignored_;
};

// The key of `workload`, whose namespace has `namespace_labels`.
IdentityKey MakeIdentityKey(const policy::Labels& namespace_labels,
                            const policy::Workload& workload, const LabelFilter& filter);

// Allocates workload identities. A full allocation over a set of keys is deterministic:
// the sorted keys get kFirstWorkloadIdentity, +1, ... so the same cluster always yields the
// same numbers. Later allocations (a workload added incrementally) take the next free
// number and never renumber existing identities.
//
// Pins carry numbers over from an earlier allocation (a previous compile, or numbers a
// server assigned cluster-wide): a pinned key that is among the keys keeps its number, and
// no other key ever gets a pinned number, even when the pinned key is absent, so a number
// never names two different keys between the earlier allocation and this one.
class IdentityAllocator {
 public:
  IdentityAllocator() = default;
  // Fails when there are more keys than workload identities.
  static absl::StatusOr<IdentityAllocator> ForKeys(std::vector<IdentityKey> keys);
  // The same with pins: pinned keys keep their number; the other keys, sorted, take the
  // lowest numbers from kFirstWorkloadIdentity that are neither pinned nor taken. Fails
  // (InvalidArgument) when a pinned number is outside the workload range or pinned to two
  // keys, and when the range is exhausted. Without pins, equal to ForKeys(keys).
  static absl::StatusOr<IdentityAllocator> ForKeys(
      std::vector<IdentityKey> keys, const std::map<IdentityKey, NumericIdentity>& pinned);

  // The identity of `key`, or 0 when it has none.
  NumericIdentity Find(const IdentityKey& key) const;
  // The identity of `key`, allocating the next free one when it has none. `created` tells
  // which. Fails when the workload range is exhausted.
  absl::StatusOr<NumericIdentity> Allocate(const IdentityKey& key, bool* created = nullptr);
  // nullptr when `id` was not allocated here.
  const IdentityKey* Key(NumericIdentity id) const;
  const std::map<NumericIdentity, IdentityKey>& identities() const { return by_id_; }

 private:
  // The lowest number >= next_ that is neither taken nor blocked (0 when exhausted).
  NumericIdentity NextFree();

  std::map<IdentityKey, NumericIdentity> by_key_;
  std::map<NumericIdentity, IdentityKey> by_id_;
  std::set<NumericIdentity> blocked_;  // pinned numbers: never given to another key
  NumericIdentity next_ = kFirstWorkloadIdentity;
};

}  // namespace bulkhead::identity
