// The ipcache model (longest-prefix match over address prefixes) and CIDR identities.
#include "identity/ipcache.h"

#include <algorithm>

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
  for (auto& c : cidrs) c = PrefixOf(c.addr, c.prefix_len);
  std::sort(cidrs.begin(), cidrs.end());
  cidrs.erase(std::unique(cidrs.begin(), cidrs.end()), cidrs.end());
  if (cidrs.size() > (uint64_t{1} << 32) - kFirstCidrIdentity) {
    return absl::ResourceExhaustedError(
        absl::StrCat("identity: too many distinct CIDRs (", cidrs.size(), ")"));
  }
  CidrIdentities out;
  NumericIdentity next = kFirstCidrIdentity;
  for (const auto& c : cidrs) {
    out.all_.push_back(CidrIdentity{c, next});
    out.index_.Upsert(c, next, 0);
    ++next;
  }
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
