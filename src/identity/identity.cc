// Identity keys, the label filter and deterministic identity allocation.
#include "identity/identity.h"

#include <algorithm>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace bulkhead::identity {

IdentityKind KindOf(NumericIdentity id) {
  if (id >= kFirstCidrIdentity) return IdentityKind::kCidr;
  if (id >= kFirstWorkloadIdentity) return IdentityKind::kWorkload;
  return IdentityKind::kReserved;
}

const char* ReservedIdentityName(NumericIdentity id) {
  switch (id) {
    case kIdentityHost:
      return "host";
    case kIdentityWorld:
      return "world";
    case kIdentityUnknown:
      return "unknown";
    default:
      return "";
  }
}

std::vector<std::string> IdentityKey::Attributes() const {
  std::vector<std::string> out;
  out.reserve(namespace_labels.size() + labels.size() + 1 + named_ports.size());
  for (const auto& [k, v] : namespace_labels) out.push_back(absl::StrCat("ns:", k, "=", v));
  for (const auto& [k, v] : labels) out.push_back(absl::StrCat(k, "=", v));
  out.push_back(absl::StrCat("sa:", service_account));
  for (const auto& p : named_ports) {
    out.push_back(
        absl::StrCat("port:", p.name, "=", policy::ProtocolName(p.protocol), "/", p.port));
  }
  return out;
}

std::string IdentityKey::ToString() const { return absl::StrJoin(Attributes(), ","); }

const std::vector<std::string>& LabelFilter::DefaultIgnoredKeys() {
  static const std::vector<std::string> keys = {
      "controller-revision-hash",
      "pod-template-generation",
      "pod-template-hash",
      "statefulset.kubernetes.io/pod-name",
  };
  return keys;
}

LabelFilter::LabelFilter() : ignored_(DefaultIgnoredKeys().begin(), DefaultIgnoredKeys().end()) {}

LabelFilter::LabelFilter(std::set<std::string> ignored_keys) : ignored_(std::move(ignored_keys)) {}

namespace {
void Unignore(const policy::LabelSelector& selector, std::set<std::string>& ignored) {
  for (const auto& [k, v] : selector.match_labels) ignored.erase(k);
  for (const auto& r : selector.match_expressions) ignored.erase(r.key);
}
}  // namespace

LabelFilter LabelFilter::ForCluster(const policy::Cluster& cluster) {
  std::set<std::string> ignored(DefaultIgnoredKeys().begin(), DefaultIgnoredKeys().end());
  for (const auto& p : cluster.policies) {
    Unignore(p.subject.pod_selector, ignored);
    for (const auto* rules : {&p.ingress, &p.egress}) {
      for (const auto& rule : *rules) {
        for (const auto& peer : rule.peers) {
          if (peer.pod_selector) Unignore(*peer.pod_selector, ignored);
        }
      }
    }
  }
  return LabelFilter(std::move(ignored));
}

IdentityKey MakeIdentityKey(const policy::Labels& namespace_labels,
                            const policy::Workload& workload, const LabelFilter& filter) {
  IdentityKey key;
  key.namespace_name = workload.namespace_name;
  key.namespace_labels = namespace_labels;
  for (const auto& [k, v] : workload.labels) {
    if (filter.Keep(k)) key.labels.emplace(k, v);
  }
  key.service_account = workload.service_account;
  for (const auto& np : workload.named_ports) {
    key.named_ports.push_back(PortDefinition{np.name, np.protocol, np.port});
  }
  std::sort(key.named_ports.begin(), key.named_ports.end());
  key.named_ports.erase(std::unique(key.named_ports.begin(), key.named_ports.end()),
                        key.named_ports.end());
  return key;
}

absl::StatusOr<IdentityAllocator> IdentityAllocator::ForKeys(std::vector<IdentityKey> keys) {
  return ForKeys(std::move(keys), {});
}

absl::StatusOr<IdentityAllocator> IdentityAllocator::ForKeys(
    std::vector<IdentityKey> keys, const std::map<IdentityKey, NumericIdentity>& pinned) {
  IdentityAllocator a;
  std::map<NumericIdentity, const IdentityKey*> owner;
  for (const auto& [key, id] : pinned) {
    if (KindOf(id) != IdentityKind::kWorkload) {
      return absl::InvalidArgumentError(absl::StrCat(
          "identity: pinned number ", id, " of ", key.ToString(), " is not a workload identity (",
          kFirstWorkloadIdentity, "..", kFirstCidrIdentity - 1, ")"));
    }
    auto [it, inserted] = owner.emplace(id, &key);
    if (!inserted) {
      return absl::InvalidArgumentError(
          absl::StrCat("identity: number ", id, " is pinned to two keys: ", it->second->ToString(),
                       " and ", key.ToString()));
    }
    a.blocked_.insert(id);
  }
  std::sort(keys.begin(), keys.end());
  keys.erase(std::unique(keys.begin(), keys.end()), keys.end());
  // Pinned keys first, so that the others find their numbers taken.
  for (const auto& key : keys) {
    auto it = pinned.find(key);
    if (it == pinned.end()) continue;
    a.by_key_.emplace(key, it->second);
    a.by_id_.emplace(it->second, key);
  }
  for (const auto& key : keys) {
    if (pinned.count(key) != 0) continue;
    auto id = a.Allocate(key);
    if (!id.ok()) return id.status();
  }
  return a;
}

NumericIdentity IdentityAllocator::NextFree() {
  while (next_ < kFirstCidrIdentity && (blocked_.count(next_) != 0 || by_id_.count(next_) != 0)) {
    ++next_;
  }
  return next_ < kFirstCidrIdentity ? next_ : 0;
}

NumericIdentity IdentityAllocator::Find(const IdentityKey& key) const {
  auto it = by_key_.find(key);
  return it == by_key_.end() ? 0 : it->second;
}

absl::StatusOr<NumericIdentity> IdentityAllocator::Allocate(const IdentityKey& key, bool* created) {
  if (created != nullptr) *created = false;
  if (NumericIdentity id = Find(key); id != 0) return id;
  if (NextFree() == 0) {
    return absl::ResourceExhaustedError(
        absl::StrCat("identity: more than ", kFirstCidrIdentity - kFirstWorkloadIdentity,
                     " distinct workload identities; cannot allocate one for ", key.ToString()));
  }
  NumericIdentity id = next_++;
  by_key_.emplace(key, id);
  by_id_.emplace(id, key);
  if (created != nullptr) *created = true;
  return id;
}

const IdentityKey* IdentityAllocator::Key(NumericIdentity id) const {
  auto it = by_id_.find(id);
  return it == by_id_.end() ? nullptr : &it->second;
}

}  // namespace bulkhead::identity
