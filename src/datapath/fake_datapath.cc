// FakeDatapath: the datapath's state in std::maps, with the kernel maps' matching rules.
#include "datapath/fake_datapath.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "datapath/validate.h"

namespace bulkhead::datapath {
namespace {

template <typename T>
std::vector<uint8_t> ToBytes(const T& v) {
  std::vector<uint8_t> b(sizeof(T));
  std::memcpy(b.data(), &v, sizeof(T));
  return b;
}

template <typename T>
T FromBytes(const std::vector<uint8_t>& b) {
  T v;
  std::memcpy(&v, b.data(), sizeof(T));
  return v;
}

// An LPM-trie key (u32 prefixlen, then data) as the trie sees it: data bits past prefixlen
// do not exist.
template <typename Key>
std::vector<uint8_t> LpmBytes(Key key, uint32_t prefixlen) {
  std::memcpy(&key, &prefixlen, sizeof(prefixlen));
  std::vector<uint8_t> b = ToBytes(key);
  for (size_t bit = prefixlen; bit < (b.size() - 4) * 8; bit++)
    b[4 + bit / 8] &= static_cast<uint8_t>(~(0x80u >> (bit % 8)));
  return b;
}

// Longest-prefix lookup: the longest stored prefix (not longer than the key's) that matches.
template <typename Key, typename Value>
std::optional<Value> LpmLookup(const std::map<std::vector<uint8_t>, Value>& table, const Key& key) {
  uint32_t prefixlen;
  std::memcpy(&prefixlen, &key, sizeof(prefixlen));
  for (int64_t len = prefixlen; len >= 0; len--) {
    auto it = table.find(LpmBytes(key, static_cast<uint32_t>(len)));
    if (it != table.end()) return it->second;
  }
  return std::nullopt;
}

template <typename Key>
uint32_t PrefixOf(const Key& key) {
  uint32_t prefixlen;
  std::memcpy(&prefixlen, &key, sizeof(prefixlen));
  return prefixlen;
}

}  // namespace

FakeDatapath::FakeDatapath(MapSizes sizes)
    : events_fd_(eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)), sizes_(sizes) {
  // Without it the fake cannot keep its EventsFd contract: a broken test environment.
  if (events_fd_ < 0) std::abort();
}

FakeDatapath::~FakeDatapath() { close(events_fd_); }

void FakeDatapath::PushEvent(const bh_flow_event& event) {
  events_.push_back(event);
  const uint64_t one = 1;
  // The counter only needs to be non-zero; a full counter (never, in a test) stays readable.
  (void)!write(events_fd_, &one, sizeof(one));
}

absl::Status FakeDatapath::TakeInjectedFailure() {
  if (!fail_next_write_) return absl::OkStatus();
  absl::Status s = *fail_next_write_;
  fail_next_write_.reset();
  return s;
}

void FakeDatapath::SetConntrack(const bh_ct_key& key, const bh_ct_entry& entry) {
  conntrack_[ToBytes(key)] = {key, entry};
}

std::vector<MapUsage> FakeDatapath::MapUsages() const {
  size_t addresses = 0;
  for (const auto& [ifindex, ep] : endpoints_) addresses += ep.addresses.size();
  return {{"ipcache", "bh_ipcache", ipcache_.size(), sizes_.ipcache},
          {"policy_peers", "bh_pol_peer", peers_.size(), sizes_.policy_peers},
          {"policy_ports", "bh_pol_port", ports_.size(), sizes_.policy_ports},
          {"endpoints", "bh_endpoints", endpoints_.size(), sizes_.endpoints},
          {"endpoint_addresses", "bh_ep_addrs", addresses, sizes_.endpoint_addresses}};
}

absl::Status FakeDatapath::UpsertEndpoint(const Endpoint& endpoint) {
  if (auto s = TakeInjectedFailure(); !s.ok()) return s;
  if (auto s = ValidateEndpoint(endpoint); !s.ok()) return s;
  Endpoint stored = endpoint;
  std::sort(stored.addresses.begin(), stored.addresses.end());
  stored.addresses.erase(std::unique(stored.addresses.begin(), stored.addresses.end()),
                         stored.addresses.end());
  // As the kernel maps hold them: new addresses are written before stale ones go.
  size_t addresses = 0, added = 0;
  for (const auto& [ifindex, ep] : endpoints_) addresses += ep.addresses.size();
  auto old = endpoints_.find(endpoint.ifindex);
  for (const auto& a : stored.addresses) {
    if (old == endpoints_.end() ||
        std::find(old->second.addresses.begin(), old->second.addresses.end(), a) ==
            old->second.addresses.end())
      ++added;
  }
  if (addresses + added > sizes_.endpoint_addresses)
    return MapFullError("endpoint_addresses", "bh_ep_addrs", addresses, added,
                        sizes_.endpoint_addresses);
  if (old == endpoints_.end() && endpoints_.size() + 1 > sizes_.endpoints)
    return MapFullError("endpoints", "bh_endpoints", endpoints_.size(), 1, sizes_.endpoints);
  endpoints_[endpoint.ifindex] = std::move(stored);
  return absl::OkStatus();
}

absl::Status FakeDatapath::DeleteEndpoint(uint32_t ifindex) {
  if (auto s = TakeInjectedFailure(); !s.ok()) return s;
  endpoints_.erase(ifindex);
  std::erase_if(conntrack_,
                [ifindex](const auto& kv) { return kv.second.first.ifindex == ifindex; });
  return absl::OkStatus();
}

absl::StatusOr<std::vector<Endpoint>> FakeDatapath::ListEndpoints() {
  std::vector<Endpoint> out;
  for (const auto& [ifindex, ep] : endpoints_) out.push_back(ep);
  return out;
}

absl::Status FakeDatapath::SwitchPolicy(uint32_t ifindex, uint32_t table_id, uint32_t generation) {
  if (auto s = TakeInjectedFailure(); !s.ok()) return s;
  auto it = endpoints_.find(ifindex);
  if (it == endpoints_.end())
    return absl::NotFoundError(absl::StrCat("switching the policy of endpoint ifindex ", ifindex,
                                            " to table ", table_id, ": no such endpoint"));
  it->second.policy_table_id = table_id;
  it->second.policy_generation = generation;
  return absl::OkStatus();
}

absl::Status FakeDatapath::Attach(uint32_t ifindex) {
  if (auto s = TakeInjectedFailure(); !s.ok()) return s;
  if (ifindex == 0) return absl::InvalidArgumentError("attach: ifindex 0");
  attached_.insert(ifindex);
  return absl::OkStatus();
}

absl::Status FakeDatapath::Detach(uint32_t ifindex) {
  if (auto s = TakeInjectedFailure(); !s.ok()) return s;
  attached_.erase(ifindex);
  return absl::OkStatus();
}

absl::StatusOr<std::vector<uint32_t>> FakeDatapath::ListAttached() {
  return std::vector<uint32_t>(attached_.begin(), attached_.end());
}

absl::Status FakeDatapath::UpsertIpcache(
    const std::vector<std::pair<bulkhead_ipcache_key, bulkhead_ipcache_value>>& entries) {
  if (auto s = TakeInjectedFailure(); !s.ok()) return s;
  if (auto s = ValidateIpcache(entries); !s.ok()) return s;
  std::set<std::vector<uint8_t>> added;
  for (const auto& [key, value] : entries) {
    auto b = LpmBytes(key, PrefixOf(key));
    if (ipcache_.count(b) == 0) added.insert(std::move(b));
  }
  if (ipcache_.size() + added.size() > sizes_.ipcache)
    return MapFullError("ipcache", "bh_ipcache", ipcache_.size(), added.size(), sizes_.ipcache);
  for (const auto& [key, value] : entries) ipcache_[LpmBytes(key, PrefixOf(key))] = value;
  return absl::OkStatus();
}

absl::Status FakeDatapath::DeleteIpcache(const std::vector<bulkhead_ipcache_key>& keys) {
  if (auto s = TakeInjectedFailure(); !s.ok()) return s;
  for (const auto& key : keys) ipcache_.erase(LpmBytes(key, PrefixOf(key)));
  return absl::OkStatus();
}

absl::Status FakeDatapath::WritePolicyTables(const PolicyTables& tables) {
  if (auto s = TakeInjectedFailure(); !s.ok()) return s;
  if (auto s = ValidatePolicyTables(tables); !s.ok()) return s;
  std::set<std::vector<uint8_t>> new_ports, new_peers;
  for (const auto& [key, value] : tables.ports) {
    auto b = LpmBytes(key, PrefixOf(key));
    if (ports_.count(b) == 0) new_ports.insert(std::move(b));
  }
  for (const auto& [key, value] : tables.peers) {
    auto b = ToBytes(key);
    if (peers_.count(b) == 0) new_peers.insert(std::move(b));
  }
  if (ports_.size() + new_ports.size() > sizes_.policy_ports)
    return MapFullError("policy_ports", "bh_pol_port", ports_.size(), new_ports.size(),
                        sizes_.policy_ports);
  if (peers_.size() + new_peers.size() > sizes_.policy_peers)
    return MapFullError("policy_peers", "bh_pol_peer", peers_.size(), new_peers.size(),
                        sizes_.policy_peers);
  for (const auto& [key, value] : tables.ports) ports_[LpmBytes(key, PrefixOf(key))] = value;
  for (const auto& [key, value] : tables.peers) peers_[ToBytes(key)] = value;
  return absl::OkStatus();
}

absl::Status FakeDatapath::DeletePolicyTables(const std::vector<uint32_t>& table_ids) {
  if (auto s = TakeInjectedFailure(); !s.ok()) return s;
  const std::set<uint32_t> doomed(table_ids.begin(), table_ids.end());
  for (const auto& [ifindex, ep] : endpoints_)
    if (doomed.count(ep.policy_table_id))
      return absl::FailedPreconditionError(absl::StrCat("deleting policy table ",
                                                        ep.policy_table_id, ": endpoint ifindex ",
                                                        ifindex, " still uses it"));
  std::erase_if(peers_, [&](const auto& kv) {
    return doomed.count(FromBytes<bulkhead_policy_peer_key>(kv.first).table_id) > 0;
  });
  std::erase_if(ports_, [&](const auto& kv) {
    return doomed.count(FromBytes<bulkhead_policy_port_key>(kv.first).table_id) > 0;
  });
  return absl::OkStatus();
}

absl::StatusOr<std::vector<uint32_t>> FakeDatapath::ListPolicyTables() {
  std::set<uint32_t> ids;
  for (const auto& [k, v] : peers_) ids.insert(FromBytes<bulkhead_policy_peer_key>(k).table_id);
  for (const auto& [k, v] : ports_) ids.insert(FromBytes<bulkhead_policy_port_key>(k).table_id);
  return std::vector<uint32_t>(ids.begin(), ids.end());
}

absl::StatusOr<FlowDecision> FakeDatapath::Explain(const FlowQuery& query) {
  auto it = endpoints_.find(query.ifindex);
  if (it == endpoints_.end())
    return absl::NotFoundError(absl::StrCat("explain: no endpoint on ifindex ", query.ifindex));
  if (auto s = ValidateFlowQuery(query); !s.ok()) return s;
  const Endpoint& ep = it->second;
  bh_endpoint_config cfg{};
  cfg.endpoint_id = ep.endpoint_id;
  cfg.identity = ep.identity;
  cfg.policy_table_id = ep.policy_table_id;
  cfg.policy_generation = ep.policy_generation;
  cfg.mode = static_cast<uint8_t>(ep.mode);
  cfg.miss_verdict = ep.allow_on_miss ? BULKHEAD_VERDICT_ALLOW : BULKHEAD_VERDICT_DENY;
  cfg.flags = ep.antispoof ? 0 : BH_EP_F_NO_ANTISPOOF;
  TableLookups lookups;
  lookups.ipcache = [this](const bulkhead_ipcache_key& k) { return LpmLookup(ipcache_, k); };
  lookups.peer =
      [this](const bulkhead_policy_peer_key& k) -> std::optional<bulkhead_policy_peer_value> {
    auto p = peers_.find(ToBytes(k));
    if (p == peers_.end()) return std::nullopt;
    return p->second;
  };
  lookups.port = [this](const bulkhead_policy_port_key& k) { return LpmLookup(ports_, k); };
  return DecideNewFlow(cfg, query, lookups);
}

absl::Status FakeDatapath::SetSettings(const bh_settings& settings) {
  if (auto s = TakeInjectedFailure(); !s.ok()) return s;
  settings_ = settings;
  return absl::OkStatus();
}

absl::StatusOr<ConntrackEntries> FakeDatapath::ListConntrack() {
  ConntrackEntries out;
  for (const auto& [bytes, kv] : conntrack_) out.push_back(kv);
  return out;
}

absl::StatusOr<size_t> FakeDatapath::PollEvents(int /*timeout_ms*/, const EventCallback& callback) {
  // Reset the eventfd first: an event pushed by the callback makes it readable again.
  uint64_t count = 0;
  while (read(events_fd_, &count, sizeof(count)) < 0 && errno == EINTR) {
  }
  size_t n = 0;
  while (!events_.empty()) {
    bh_flow_event e = events_.front();
    events_.pop_front();
    callback(e);
    n++;
  }
  return n;
}

}  // namespace bulkhead::datapath
