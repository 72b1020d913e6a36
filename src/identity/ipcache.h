// External address classes (CIDR identities) and the ipcache model: address -> identity by
// longest-prefix match, as the kernel's LPM trie answers it.
//
// The outside address space is cut at every CIDR that policy names (ipBlock cidr and
// except, AdminNetworkPolicy networks) and at every node address; each such CIDR is one
// identity. Prefixes are nested or disjoint, so the most specific cut CIDR containing an
// address is contained in every other cut CIDR that contains the address: one LPM lookup
// yields exactly the address's equivalence class with respect to all of them.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <vector>

#include "absl/status/statusor.h"
#include "common/ip.h"
#include "identity/identity.h"

namespace bulkhead::identity {

using common::Cidr;
using common::IpAddr;

// The prefix of `ip` of length `prefix_len` (host bits cleared).
Cidr PrefixOf(const IpAddr& ip, int prefix_len);
// The full-length prefix of one address (/32 or /128).
inline Cidr HostPrefix(const IpAddr& ip) { return PrefixOf(ip, ip.BitWidth()); }

// Flags of an ipcache entry (the ABI header repeats these values).
inline constexpr uint32_t kIpCacheFlagWorkload = 1;  // the address of a workload
inline constexpr uint32_t kIpCacheFlagNode = 2;      // the address of a cluster node

struct IpCacheEntry {
  Cidr prefix;
  NumericIdentity identity = 0;
  uint32_t flags = 0;
  bool operator==(const IpCacheEntry&) const = default;
};

// The ipcache: workload addresses (/32, /128) -> workload identity; cut CIDRs -> CIDR
// identity; a miss -> world.
class IpCache {
 public:
  // Inserts or replaces the entry for `prefix` (whose host bits must be clear).
  void Upsert(const Cidr& prefix, NumericIdentity identity, uint32_t flags);
  // The entry stored for exactly `prefix`, or nullptr.
  const IpCacheEntry* Find(const Cidr& prefix) const;
  // The longest stored prefix containing `ip`, or nullptr.
  const IpCacheEntry* LookupEntry(const IpAddr& ip) const;
  // The identity of `ip`: its longest-prefix entry, or world on a miss.
  NumericIdentity Lookup(const IpAddr& ip) const;
  // Every entry, sorted by prefix (IPv4 first, then address, then length).
  std::vector<IpCacheEntry> Entries() const;
  size_t size() const { return entries_.size(); }

 private:
  std::map<Cidr, IpCacheEntry> entries_;
  // How many entries have each prefix length, per family: lookups probe only those.
  std::array<int, 33> v4_lengths_{};
  std::array<int, 129> v6_lengths_{};
};

struct CidrIdentity {
  Cidr cidr;
  NumericIdentity id = 0;
};

// The cut of the outside address space: one identity per distinct CIDR, numbered from
// kFirstCidrIdentity in sorted CIDR order (deterministic for a given set).
class CidrIdentities {
 public:
  CidrIdentities() = default;
  // Fails when there are more CIDRs than the CIDR identity range holds.
  static absl::StatusOr<CidrIdentities> ForCidrs(std::vector<Cidr> cidrs);
  // The same with pins (as IdentityAllocator's): a pinned CIDR among `cidrs` keeps its
  // number; the others, sorted, take the lowest numbers from kFirstCidrIdentity that are not
  // pinned (to any CIDR, present or not). Fails (InvalidArgument) when a pinned number is not
  // a CIDR identity or is pinned to two CIDRs. Pinned CIDRs are compared with their host
  // bits cleared. Without pins, equal to ForCidrs(cidrs).
  static absl::StatusOr<CidrIdentities> ForCidrs(std::vector<Cidr> cidrs,
                                                 const std::map<Cidr, NumericIdentity>& pinned);

  // Sorted by identity.
  const std::vector<CidrIdentity>& all() const { return all_; }
  // The identity of exactly `cidr`, or 0 when it is not a cut CIDR.
  NumericIdentity Find(const Cidr& cidr) const;
  // The class of an outside address: the identity of the most specific cut CIDR that
  // contains it, or world.
  NumericIdentity Classify(const IpAddr& ip) const;
  // The cut CIDRs that contain every address of class `cidr` (itself included).
  std::vector<Cidr> Containing(const Cidr& cidr) const;

 private:
  std::vector<CidrIdentity> all_;
  IpCache index_;
};

}  // namespace bulkhead::identity
