// The ipcache model (longest-prefix match over address prefixes) and CIDR identities.
#include "identity/ipcache.h"

#include <algorithm>
#include <limits>
#include <set>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace bulkhead::identity {

Cidr PrefixOf(const IpAddr& ip, int prefix_len) {
  Cidr c{ip, prefix_len};
  int width = ip.BitWidth();
  for (int byte = 0; byte < 16; ++byte) {
    int first_bit = byte * 8;
    if (first_bit >= width || first_bit >= prefix_len) {
      c.addr.bytes[byte] = 0;  // beyond the address or the prefix
    } else if (first_bit + 8 <= prefix_len) {
      continue;
    } else {
      int keep = prefix_len - first_bit;
      c.addr.bytes[byte] &= static_cast<uint8_t>(0xffu << (8 - keep));
    }
  }
  return c;
}

void IpCache::Upsert(const Cidr& prefix, NumericIdentity identity, uint32_t flags) {
  auto [it, inserted] = entries_.insert_or_assign(prefix, IpCacheEntry{prefix, identity, flags});
  (void)it;
  if (inserted) {
    if (prefix.addr.v6) {
      ++v6_lengths_[prefix.prefix_len];
    } else {
      ++v4_lengths_[prefix.prefix_len];
    }
  }
}

const IpCacheEntry* IpCache::Find(const Cidr& prefix) const {
  auto it = entries_.find(prefix);
  return it == entries_.end() ? nullptr : &it->second;
}

const IpCacheEntry* IpCache::LookupEntry(const IpAddr& ip) const {
  auto probe = [&](const auto& lengths) -> const IpCacheEntry* {
    for (int len = static_cast<int>(lengths.size()) - 1; len >= 0; --len) {
      if (lengths[len] == 0) continue;
      if (const IpCacheEntry* e = Find(PrefixOf(ip, len))) return e;
    }
    return nullptr;
  };
  return ip.v6 ? probe(v6_lengths_) : probe(v4_lengths_);
}

NumericIdentity IpCache::Lookup(const IpAddr& ip) const {
  const IpCacheEntry* e = LookupEntry(ip);
  return e == nullptr ? kIdentityWorld : e->identity;
}

std::vector<IpCacheEntry> IpCache::Entries() const {
  std::vector<IpCacheEntry> out;
  out.reserve(entries_.size());
  for (const auto& [prefix, entry] : entries_) out.push_back(entry);
  return out;
}

absl::StatusOr<CidrIdentities> CidrIdentities::ForCidrs(std::vector<Cidr> cidrs) {
  return ForCidrs(std::move(cidrs), {});
}

absl::StatusOr<CidrIdentities> CidrIdentities::ForCidrs(
    std::vector<Cidr> cidrs, const std::map<Cidr, NumericIdentity>& pinned) {
  for (auto& c : cidrs) c = PrefixOf(c.addr, c.prefix_len);
  std::sort(cidrs.begin(), cidrs.end());
  cidrs.erase(std::unique(cidrs.begin(), cidrs.end()), cidrs.end());
  if (cidrs.size() > (uint64_t{1} << 32) - kFirstCidrIdentity) {
    return absl::ResourceExhaustedError(
        absl::StrCat("identity: too many distinct CIDRs (", cidrs.size(), ")"));
  }
  std::map<Cidr, NumericIdentity> pins;  // normalized
  std::map<NumericIdentity, Cidr> owner;
  for (const auto& [cidr, id] : pinned) {
    if (KindOf(id) != IdentityKind::kCidr) {
      return absl::InvalidArgumentError(
          absl::StrCat("identity: pinned number ", id, " of ", cidr.ToString(),
                       " is not a CIDR identity (from ", kFirstCidrIdentity, ")"));
    }
    const Cidr c = PrefixOf(cidr.addr, cidr.prefix_len);
    auto [it, inserted] = owner.emplace(id, c);
    if (!inserted && !(it->second == c)) {
      return absl::InvalidArgumentError(
          absl::StrCat("identity: number ", id, " is pinned to two CIDRs: ", it->second.ToString(),
                       " and ", c.ToString()));
    }
    auto [pit, pin_inserted] = pins.emplace(c, id);
    if (!pin_inserted && pit->second != id) {
      return absl::InvalidArgumentError(absl::StrCat("identity: CIDR ", c.ToString(),
                                                     " is pinned to two numbers: ", pit->second,
                                                     " and ", id));
    }
  }
  CidrIdentities out;
  std::set<NumericIdentity> taken;
  for (const auto& [id, c] : owner) taken.insert(id);
  uint64_t next = kFirstCidrIdentity;
  for (const auto& c : cidrs) {
    NumericIdentity id;
    if (auto it = pins.find(c); it != pins.end()) {
      id = it->second;
    } else {
      while (next <= std::numeric_limits<NumericIdentity>::max() &&
             taken.count(static_cast<NumericIdentity>(next)) != 0) {
        ++next;
      }
      if (next > std::numeric_limits<NumericIdentity>::max()) {
        return absl::ResourceExhaustedError(
            absl::StrCat("identity: no CIDR identity left for ", c.ToString()));
      }
      id = static_cast<NumericIdentity>(next++);
    }
    out.all_.push_back(CidrIdentity{c, id});
    out.index_.Upsert(c, id, 0);
  }
  std::sort(out.all_.begin(), out.all_.end(),
            [](const CidrIdentity& a, const CidrIdentity& b) { return a.id < b.id; });
  return out;
}

NumericIdentity CidrIdentities::Find(const Cidr& cidr) const {
  const IpCacheEntry* e = index_.Find(PrefixOf(cidr.addr, cidr.prefix_len));
  return e == nullptr ? 0 : e->identity;
}

NumericIdentity CidrIdentities::Classify(const IpAddr& ip) const { return index_.Lookup(ip); }

std::vector<Cidr> CidrIdentities::Containing(const Cidr& cidr) const {
  std::vector<Cidr> out;
  for (int len = cidr.prefix_len; len >= 0; --len) {
    Cidr up = PrefixOf(cidr.addr, len);
    if (index_.Find(up) != nullptr) out.push_back(up);
  }
  return out;
}

}  // namespace bulkhead::identity
