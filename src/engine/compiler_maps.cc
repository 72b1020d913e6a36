// The policy peer and port map models: exact-match and longest-prefix lookups over entries
// grouped per table, with the kernel's key semantics.
#include "engine/compiler_maps.h"

#include <arpa/inet.h>

#include <cstdio>
#include <cstdlib>
#include <tuple>
#include <type_traits>

namespace bulkhead::engine {

namespace {

int DirSlot(uint8_t direction) { return direction == BULKHEAD_DIR_INGRESS ? 0 : 1; }

bool PadClear(const bulkhead_policy_peer_key& k) {
  return k.pad[0] == 0 && k.pad[1] == 0 && k.pad[2] == 0;
}

// Protocol slot of the port map, or -1 for a protocol the compiler never writes.
int ProtocolSlot(uint8_t protocol) {
  switch (protocol) {
    case 6:  // TCP
      return 0;
    case 17:  // UDP
      return 1;
    case 132:  // SCTP
      return 2;
    case 1:  // ICMP
      return 3;
    case 58:  // ICMPv6
      return 4;
    default:
      return -1;
  }
}
constexpr uint8_t kSlotProtocol[] = {6, 17, 132, 1, 58};

[[noreturn]] void BrokenInvariant(const char* what) {
  // The compiler builds every key; a malformed one is a bug, not input.
  std::fprintf(stderr, "bulkhead: policy map model: %s\n", what);
  std::abort();
}

uint16_t MaskPort(uint16_t port, uint8_t bits) {
  if (bits == 0) return 0;
  return static_cast<uint16_t>(port & (0xffffu << (16 - bits)));
}

}  // namespace

void PolicyPeerMap::Update(const bulkhead_policy_peer_key& key,
                           const bulkhead_policy_peer_value& value) {
  if (!PadClear(key)) BrokenInvariant("peer key with padding set");
  auto& rows = tables_[key.table_id][DirSlot(key.direction)];
  if (rows.empty() || rows.back().first < key.peer_identity) {
    rows.emplace_back(key.peer_identity, value);  // the compiler's common case
    ++size_;
    return;
  }
  auto it = std::lower_bound(rows.begin(), rows.end(), key.peer_identity,
                             [](const Row& r, uint32_t id) { return r.first < id; });
  if (it != rows.end() && it->first == key.peer_identity) {
    it->second = value;
  } else {
    rows.insert(it, Row{key.peer_identity, value});
    ++size_;
  }
}

bool PolicyPeerMap::Delete(const bulkhead_policy_peer_key& key) {
  if (!PadClear(key)) return false;
  auto t = tables_.find(key.table_id);
  if (t == tables_.end()) return false;
  auto& rows = t->second[DirSlot(key.direction)];
  auto it = std::lower_bound(rows.begin(), rows.end(), key.peer_identity,
                             [](const Row& r, uint32_t id) { return r.first < id; });
  if (it == rows.end() || it->first != key.peer_identity) return false;
  rows.erase(it);
  --size_;
  return true;
}

const bulkhead_policy_peer_value* PolicyPeerMap::Lookup(const bulkhead_policy_peer_key& key) const {
  if (!PadClear(key) ||
      (key.direction != BULKHEAD_DIR_INGRESS && key.direction != BULKHEAD_DIR_EGRESS)) {
    return nullptr;
  }
  auto t = tables_.find(key.table_id);
  if (t == tables_.end()) return nullptr;
  const auto& rows = t->second[DirSlot(key.direction)];
  auto it = std::lower_bound(rows.begin(), rows.end(), key.peer_identity,
                             [](const Row& r, uint32_t id) { return r.first < id; });
  return it != rows.end() && it->first == key.peer_identity ? &it->second : nullptr;
}

std::vector<std::pair<bulkhead_policy_peer_key, bulkhead_policy_peer_value>>
PolicyPeerMap::Entries() const {
  std::vector<uint32_t> ids;
  ids.reserve(tables_.size());
  for (const auto& [id, rows] : tables_) ids.push_back(id);
  std::sort(ids.begin(), ids.end());
  std::vector<std::pair<bulkhead_policy_peer_key, bulkhead_policy_peer_value>> out;
  out.reserve(size_);
  for (uint32_t id : ids) AppendTableEntries(id, &out);
  return out;
}

void PolicyPeerMap::AppendTableEntries(
    uint32_t table_id,
    std::vector<std::pair<bulkhead_policy_peer_key, bulkhead_policy_peer_value>>* out) const {
  auto it = tables_.find(table_id);
  if (it == tables_.end()) return;
  for (int d = 0; d < 2; ++d) {
    for (const auto& [peer, value] : it->second[d]) {
      bulkhead_policy_peer_key k{};
      k.table_id = table_id;
      k.peer_identity = peer;
      k.direction = d == 0 ? BULKHEAD_DIR_INGRESS : BULKHEAD_DIR_EGRESS;
      out->emplace_back(k, value);
    }
  }
}

void PolicyPeerMap::EraseTable(uint32_t table_id) {
  auto it = tables_.find(table_id);
  if (it == tables_.end()) return;
  size_ -= it->second[0].size() + it->second[1].size();
  tables_.erase(it);
}

namespace {
template <typename T>
void AppendRaw(std::string* out, const T& v) {
  out->append(reinterpret_cast<const char*>(&v), sizeof(v));
}
}  // namespace

void PolicyPeerMap::AppendTableContent(uint32_t table_id, std::string* out) const {
  auto it = tables_.find(table_id);
  if (it == tables_.end()) return;
  for (int d = 0; d < 2; ++d) {
    AppendRaw(out, static_cast<uint32_t>(it->second[d].size()));
    for (const auto& [peer, value] : it->second[d]) {
      AppendRaw(out, peer);
      AppendRaw(out, value.class_id);
    }
  }
}

void PolicyPeerMap::RenameTable(uint32_t from, uint32_t to) {
  auto node = tables_.extract(from);
  if (node.empty()) return;
  if (tables_.contains(to)) BrokenInvariant("renaming a peer table onto one that exists");
  node.key() = to;
  tables_.insert(std::move(node));
}

void PolicyPortMap::AppendTableContent(uint32_t table_id, std::string* out) const {
  auto it = tables_.find(table_id);
  if (it == tables_.end()) return;
  for (int d = 0; d < 2; ++d) {
    AppendRaw(out, static_cast<uint32_t>(it->second[d].size()));
    for (const ClassPorts& cls : it->second[d]) {
      for (const auto& group : cls) {
        AppendRaw(out, static_cast<uint32_t>(group.size()));
        for (const Prefix& p : group) {
          AppendRaw(out, p.port);
          AppendRaw(out, p.bits);
          AppendRaw(out, p.value);
        }
      }
    }
  }
}

void PolicyPortMap::RenameTable(uint32_t from, uint32_t to) {
  auto node = tables_.extract(from);
  if (node.empty()) return;
  if (tables_.contains(to)) BrokenInvariant("renaming a port table onto one that exists");
  node.key() = to;
  tables_.insert(std::move(node));
}

template <typename Tables>
auto* PolicyPortMap::GroupIn(Tables& tables, const bulkhead_policy_port_key& key) {
  using Group = std::remove_reference_t<decltype(tables.begin()->second[0][0][0])>;
  int slot = ProtocolSlot(key.protocol);
  if (slot < 0 || key.prefixlen < BULKHEAD_PORT_PREFIX_BASE ||
      (key.direction != BULKHEAD_DIR_INGRESS && key.direction != BULKHEAD_DIR_EGRESS)) {
    return static_cast<Group*>(nullptr);
  }
  auto t = tables.find(key.table_id);
  if (t == tables.end()) return static_cast<Group*>(nullptr);
  auto& classes = t->second[DirSlot(key.direction)];
  if (key.class_id >= classes.size()) return static_cast<Group*>(nullptr);
  return &classes[key.class_id][slot];
}

const std::vector<PolicyPortMap::Prefix>* PolicyPortMap::Group(
    const bulkhead_policy_port_key& key) const {
  return GroupIn(tables_, key);
}

void PolicyPortMap::Update(const bulkhead_policy_port_key& key,
                           const bulkhead_policy_port_value& value) {
  int slot = ProtocolSlot(key.protocol);
  if (slot < 0) BrokenInvariant("port entry for a protocol outside the table's five");
  if (key.prefixlen < BULKHEAD_PORT_PREFIX_BASE || key.prefixlen > BULKHEAD_PORT_PREFIX_FULL) {
    BrokenInvariant("port entry whose prefix does not fix table, class, direction, protocol");
  }
  if (key.direction != BULKHEAD_DIR_INGRESS && key.direction != BULKHEAD_DIR_EGRESS) {
    BrokenInvariant("port entry with an unknown direction");
  }
  auto& classes = tables_[key.table_id][DirSlot(key.direction)];
  if (key.class_id >= classes.size()) classes.resize(key.class_id + 1);
  auto& group = classes[key.class_id][slot];
  Prefix p;
  p.bits = static_cast<uint8_t>(key.prefixlen - BULKHEAD_PORT_PREFIX_BASE);
  p.port = MaskPort(ntohs(key.port), p.bits);
  p.value = value;
  auto less = [](const Prefix& a, const Prefix& b) {
    return std::tie(a.port, a.bits) < std::tie(b.port, b.bits);
  };
  if (group.empty() || less(group.back(), p)) {
    group.push_back(p);  // the compiler's order: by port, shorter prefixes first
    ++size_;
    return;
  }
  auto it = std::lower_bound(group.begin(), group.end(), p, less);
  if (it != group.end() && it->port == p.port && it->bits == p.bits) {
    it->value = value;
  } else {
    group.insert(it, p);
    ++size_;
  }
}

bool PolicyPortMap::Delete(const bulkhead_policy_port_key& key) {
  std::vector<Prefix>* g = GroupIn(tables_, key);
  if (g == nullptr) return false;
  auto& group = *g;
  uint8_t bits = static_cast<uint8_t>(key.prefixlen - BULKHEAD_PORT_PREFIX_BASE);
  uint16_t port = MaskPort(ntohs(key.port), bits);
  for (auto it = group.begin(); it != group.end(); ++it) {
    if (it->port == port && it->bits == bits) {
      group.erase(it);
      --size_;
      return true;
    }
  }
  return false;
}

const bulkhead_policy_port_value* PolicyPortMap::Find(const bulkhead_policy_port_key& key) const {
  const std::vector<Prefix>* g = Group(key);
  if (g == nullptr) return nullptr;
  uint8_t bits = static_cast<uint8_t>(std::min<uint32_t>(key.prefixlen, BULKHEAD_PORT_PREFIX_FULL) -
                                      BULKHEAD_PORT_PREFIX_BASE);
  uint16_t port = MaskPort(ntohs(key.port), bits);
  for (const auto& p : *g) {
    if (p.port == port && p.bits == bits) return &p.value;
  }
  return nullptr;
}

const bulkhead_policy_port_value* PolicyPortMap::Lookup(const bulkhead_policy_port_key& key) const {
  const std::vector<Prefix>* g = Group(key);
  if (g == nullptr) return nullptr;
  uint32_t max_bits =
      std::min<uint32_t>(key.prefixlen, BULKHEAD_PORT_PREFIX_FULL) - BULKHEAD_PORT_PREFIX_BASE;
  uint16_t port = ntohs(key.port);
  const Prefix* best = nullptr;
  for (const auto& p : *g) {
    if (p.bits > max_bits || MaskPort(port, p.bits) != p.port) continue;
    if (best == nullptr || p.bits > best->bits) best = &p;
  }
  return best != nullptr ? &best->value : nullptr;
}

std::vector<std::pair<bulkhead_policy_port_key, bulkhead_policy_port_value>>
PolicyPortMap::Entries() const {
  std::vector<uint32_t> ids;
  ids.reserve(tables_.size());
  for (const auto& [id, t] : tables_) ids.push_back(id);
  std::sort(ids.begin(), ids.end());
  std::vector<std::pair<bulkhead_policy_port_key, bulkhead_policy_port_value>> out;
  out.reserve(size_);
  for (uint32_t id : ids) AppendTableEntries(id, &out);
  return out;
}

void PolicyPortMap::AppendTableEntries(
    uint32_t table_id,
    std::vector<std::pair<bulkhead_policy_port_key, bulkhead_policy_port_value>>* out) const {
  auto it = tables_.find(table_id);
  if (it == tables_.end()) return;
  const TablePorts& t = it->second;
  for (int d = 0; d < 2; ++d) {
    for (uint32_t c = 0; c < t[d].size(); ++c) {
      for (int slot = 0; slot < kProtocolSlots; ++slot) {
        for (const auto& p : t[d][c][slot]) {
          bulkhead_policy_port_key k{};
          k.prefixlen = BULKHEAD_PORT_PREFIX_BASE + p.bits;
          k.table_id = table_id;
          k.class_id = c;
          k.direction = d == 0 ? BULKHEAD_DIR_INGRESS : BULKHEAD_DIR_EGRESS;
          k.protocol = kSlotProtocol[slot];
          k.port = htons(p.port);
          out->emplace_back(k, p.value);
        }
      }
    }
  }
}

void PolicyPortMap::EraseTable(uint32_t table_id) {
  auto it = tables_.find(table_id);
  if (it == tables_.end()) return;
  for (const auto& dir : it->second) {
    for (const ClassPorts& cls : dir) {
      for (const auto& group : cls) size_ -= group.size();
    }
  }
  tables_.erase(it);
}

}  // namespace bulkhead::engine
