// What the compiler hands on: ABI key builders, the datapath's lookup over the compiled
// maps, the stable text dump (golden tests) and entry statistics.
#include <arpa/inet.h>

#include <algorithm>
#include <cstring>
#include <tuple>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "engine/compiler.h"
#include "engine/compiler_internal.h"

namespace bulkhead::engine {

using identity::NumericIdentity;
using policy::Direction;
using policy::Protocol;

namespace ci = compiler_internal;

const CompiledIdentity* CompiledPolicy::FindIdentity(NumericIdentity id) const {
  auto it = std::lower_bound(identities.begin(), identities.end(), id,
                             [](const CompiledIdentity& a, NumericIdentity b) { return a.id < b; });
  return it != identities.end() && it->id == id ? &*it : nullptr;
}

const CompiledTable* CompiledPolicy::FindTable(uint32_t table_id) const {
  auto it = std::lower_bound(tables.begin(), tables.end(), table_id,
                             [](const CompiledTable& a, uint32_t b) { return a.table_id < b; });
  return it != tables.end() && it->table_id == table_id ? &*it : nullptr;
}

uint32_t CompiledPolicy::NextTableIdBase() const {
  return tables.empty() ? table_id_base : tables.back().table_id + 1;
}

bulkhead_ipcache_key IpcacheKey(const policy::Cidr& prefix) {
  bulkhead_ipcache_key key{};
  key.prefixlen = BULKHEAD_IPCACHE_PREFIX_BASE + static_cast<uint32_t>(prefix.prefix_len);
  key.family = prefix.addr.v6 ? BULKHEAD_FAMILY_IPV6 : BULKHEAD_FAMILY_IPV4;
  std::memcpy(key.addr, prefix.addr.bytes.data(), prefix.addr.v6 ? 16 : 4);
  return key;
}

bulkhead_ipcache_key IpcacheLookupKey(const policy::IpAddr& address) {
  return IpcacheKey(identity::HostPrefix(address));
}

policy::Cidr IpcacheKeyPrefix(const bulkhead_ipcache_key& key) {
  policy::IpAddr addr;
  addr.v6 = key.family == BULKHEAD_FAMILY_IPV6;
  std::memcpy(addr.bytes.data(), key.addr, addr.v6 ? 16 : 4);
  return identity::PrefixOf(addr, static_cast<int>(key.prefixlen - BULKHEAD_IPCACHE_PREFIX_BASE));
}

bulkhead_policy_peer_key PeerKey(uint32_t table_id, NumericIdentity peer, Direction direction) {
  bulkhead_policy_peer_key key{};
  key.table_id = table_id;
  key.peer_identity = peer;
  key.direction = ci::AbiDirection(direction);
  return key;
}

bulkhead_policy_port_key PortKey(uint32_t table_id, uint32_t class_id, Direction direction,
                                 Protocol protocol, uint16_t port, uint32_t port_prefix_bits) {
  bulkhead_policy_port_key key{};
  key.prefixlen = BULKHEAD_PORT_PREFIX_BASE + port_prefix_bits;
  key.table_id = table_id;
  key.class_id = class_id;
  key.direction = ci::AbiDirection(direction);
  key.protocol = static_cast<uint8_t>(protocol);
  key.port = htons(port);
  return key;
}

uint16_t PortKeyPort(const bulkhead_policy_port_key& key) { return ntohs(key.port); }

LookupResult LookupIdentity(const PolicyMaps& maps, uint32_t table_id, Direction direction,
                            NumericIdentity peer, Protocol protocol, uint16_t port) {
  LookupResult r;
  r.peer_identity = peer;
  const bulkhead_policy_peer_value* pv = maps.peers.Lookup(PeerKey(table_id, peer, direction));
  r.class_id = pv != nullptr ? pv->class_id : BULKHEAD_CLASS_DEFAULT;
  // Portless protocols look up port 0; their entry covers no port bits.
  uint16_t key_port = policy::HasPorts(protocol) ? port : 0;
  const bulkhead_policy_port_value* v =
      maps.ports.Lookup(PortKey(table_id, r.class_id, direction, protocol, key_port, 16));
  if (v != nullptr) {
    r.found = true;
    r.value = *v;
  }
  return r;
}

LookupResult Lookup(const PolicyMaps& maps, uint32_t table_id, Direction direction,
                    const policy::IpAddr& peer_address, Protocol protocol, uint16_t port) {
  const bulkhead_ipcache_value* iv = maps.ipcache.Lookup(IpcacheLookupKey(peer_address));
  NumericIdentity peer = iv != nullptr ? iv->identity : identity::kIdentityWorld;
  return LookupIdentity(maps, table_id, direction, peer, protocol, port);
}

const char* AbiTierName(uint8_t t) {
  switch (t) {
    case BULKHEAD_TIER_ADMIN:
      return "admin";
    case BULKHEAD_TIER_NAMESPACE:
      return "namespace";
    case BULKHEAD_TIER_BASELINE:
      return "baseline";
    case BULKHEAD_TIER_DEFAULT:
      return "default";
    default:
      return "?";
  }
}

const char* AbiReasonName(uint8_t r) {
  switch (r) {
    case BULKHEAD_REASON_RULE:
      return "rule";
    case BULKHEAD_REASON_ISOLATED:
      return "isolated";
    case BULKHEAD_REASON_DEFAULT_ALLOW:
      return "default-allow";
    case BULKHEAD_REASON_DEFAULT_DENY:
      return "default-deny";
    default:
      return "?";
  }
}

namespace {

const char* VerdictName(uint8_t v) {
  switch (v) {
    case BULKHEAD_VERDICT_ALLOW:
      return "ALLOW";
    case BULKHEAD_VERDICT_DENY:
      return "DENY";
    default:
      return "?";
  }
}

std::string ProtocolNumberName(uint8_t p) {
  for (Protocol proto : ci::kProtocols) {
    if (static_cast<uint8_t>(proto) == p) return policy::ProtocolName(proto);
  }
  return absl::StrCat("proto-", p);
}

std::string ValueText(const bulkhead_policy_port_value& v) {
  std::string s =
      absl::StrCat(VerdictName(v.verdict), " ", AbiTierName(v.tier), " ", AbiReasonName(v.reason));
  if (v.rule_id != BULKHEAD_RULE_NONE) absl::StrAppend(&s, " #", v.rule_id);
  if (v.flags & BULKHEAD_POLICY_F_AUDIT_WOULD_DENY) s += " audit-would-deny";
  return s;
}

}  // namespace

std::string DumpCompiledPolicy(const CompiledPolicy& c) {
  std::string s = "# bulkhead compiled policy\n";
  absl::StrAppend(&s, "table_id_base ", c.table_id_base, "\n");

  s += "\nidentities\n";
  for (const auto& id : c.identities) {
    switch (id.kind) {
      case identity::IdentityKind::kReserved:
        absl::StrAppend(&s, "  ", id.id, " reserved ", identity::ReservedIdentityName(id.id), "\n");
        break;
      case identity::IdentityKind::kWorkload:
        absl::StrAppend(&s, "  ", id.id, " workload table ", id.table_id, " [",
                        absl::StrJoin(id.workloads, " "), "] ", id.key->ToString(), "\n");
        break;
      case identity::IdentityKind::kCidr:
        absl::StrAppend(&s, "  ", id.id, " cidr ", id.cidr->ToString(), id.node ? " node" : "",
                        "\n");
        break;
    }
  }

  s += "\nipcache\n";
  {
    std::vector<std::pair<policy::Cidr, bulkhead_ipcache_value>> entries;
    for (const auto& [k, v] : c.maps.ipcache.Entries())
      entries.emplace_back(IpcacheKeyPrefix(k), v);
    std::sort(entries.begin(), entries.end(),
              [](const auto& a, const auto& b) { return a.first < b.first; });
    for (const auto& [prefix, v] : entries) {
      absl::StrAppend(&s, "  ", prefix.ToString(), " -> ", v.identity,
                      (v.flags & BULKHEAD_IPCACHE_F_WORKLOAD) ? " workload" : "",
                      (v.flags & BULKHEAD_IPCACHE_F_NODE) ? " node" : "", "\n");
    }
  }

  s += "\nrules\n";
  for (size_t i = 1; i < c.rules.size(); ++i) {
    const CompiledRule& r = c.rules[i];
    if (r.policy.empty()) continue;  // an id kept free by pinned rules
    absl::StrAppend(&s, "  ", i, " ", r.policy, " ", policy::DirectionName(r.direction), " ",
                    r.rule_index < 0 ? std::string("default") : absl::StrCat("rule ", r.rule_index),
                    r.rule_name.empty() ? "" : absl::StrCat(" (", r.rule_name, ")"), " ",
                    policy::TierName(r.tier), " ", policy::ActionName(r.action), " ",
                    policy::ModeName(r.mode), "\n");
  }

  s += "\nendpoints\n";
  for (const auto& [name, b] : c.endpoints) {
    absl::StrAppend(&s, "  ", name, " identity ", b.identity, " table ", b.table_id, " mode ",
                    policy::ModeName(b.mode), "\n");
  }

  // Peer and port entries grouped per table and direction.
  using PeerRow = std::tuple<uint32_t, uint8_t, uint32_t, uint32_t>;  // table, dir, peer, class
  std::vector<PeerRow> peer_rows;
  for (const auto& [k, v] : c.maps.peers.Entries()) {
    peer_rows.emplace_back(k.table_id, k.direction, k.peer_identity, v.class_id);
  }
  std::sort(peer_rows.begin(), peer_rows.end());
  // table, dir, class, protocol, port, prefix bits
  using PortRow = std::tuple<uint32_t, uint8_t, uint32_t, uint8_t, uint16_t, uint32_t,
                             bulkhead_policy_port_value>;
  std::vector<PortRow> port_rows;
  for (const auto& [k, v] : c.maps.ports.Entries()) {
    port_rows.emplace_back(k.table_id, k.direction, k.class_id, k.protocol, PortKeyPort(k),
                           k.prefixlen - BULKHEAD_PORT_PREFIX_BASE, v);
  }
  std::sort(port_rows.begin(), port_rows.end(), [](const PortRow& a, const PortRow& b) {
    return std::tie(std::get<0>(a), std::get<1>(a), std::get<2>(a), std::get<3>(a), std::get<4>(a),
                    std::get<5>(a)) < std::tie(std::get<0>(b), std::get<1>(b), std::get<2>(b),
                                               std::get<3>(b), std::get<4>(b), std::get<5>(b));
  });
  size_t pi = 0, qi = 0;
  for (const auto& t : c.tables) {
    absl::StrAppend(&s, "\ntable ", t.table_id, " identities ", absl::StrJoin(t.identities, ","),
                    " classes ingress ", t.classes[0], " egress ", t.classes[1], "\n");
    for (uint8_t dir : {uint8_t{BULKHEAD_DIR_INGRESS}, uint8_t{BULKHEAD_DIR_EGRESS}}) {
      const char* dname = dir == BULKHEAD_DIR_INGRESS ? "ingress" : "egress";
      absl::StrAppend(&s, "  ", dname, " peers\n");
      while (pi < peer_rows.size() && std::get<0>(peer_rows[pi]) < t.table_id) ++pi;
      for (; pi < peer_rows.size() && std::get<0>(peer_rows[pi]) == t.table_id &&
             std::get<1>(peer_rows[pi]) == dir;
           ++pi) {
        absl::StrAppend(&s, "    ", std::get<2>(peer_rows[pi]), " -> class ",
                        std::get<3>(peer_rows[pi]), "\n");
      }
      while (qi < port_rows.size() && std::get<0>(port_rows[qi]) < t.table_id) ++qi;
      uint32_t current_class = UINT32_MAX;
      for (; qi < port_rows.size() && std::get<0>(port_rows[qi]) == t.table_id &&
             std::get<1>(port_rows[qi]) == dir;
           ++qi) {
        const auto& [tid, d, cls, proto, port, bits, v] = port_rows[qi];
        if (cls != current_class) {
          absl::StrAppend(&s, "  ", dname, " class ", cls, "\n");
          current_class = cls;
        }
        std::string ports;
        if (bits == 0 && port == 0) {
          ports = "*";
        } else {
          uint32_t last = port + (65536u >> bits) - 1;
          ports = last == port ? absl::StrCat(port) : absl::StrCat(port, "-", last);
          absl::StrAppend(&ports, "/", bits);
        }
        absl::StrAppend(&s, "    ", ProtocolNumberName(proto), " ", ports, " ", ValueText(v), "\n");
      }
    }
  }
  return s;
}

CompileStats ComputeStats(const CompiledPolicy& c) {
  CompileStats st;
  for (const auto& id : c.identities) {
    if (id.kind == identity::IdentityKind::kWorkload) ++st.workload_identities;
    if (id.kind == identity::IdentityKind::kCidr) ++st.cidr_identities;
  }
  st.identities = st.workload_identities + st.cidr_identities;
  st.tables = c.tables.size();
  for (const auto& t : c.tables) st.classes += t.classes[0] + t.classes[1];
  st.ipcache_entries = c.maps.ipcache.size();
  st.peer_entries = c.maps.peers.size();
  st.port_entries = c.maps.ports.size();
  st.rules = 0;
  for (size_t i = 1; i < c.rules.size(); ++i) st.rules += c.rules[i].policy.empty() ? 0 : 1;
  st.map_bytes =
      st.ipcache_entries * (sizeof(bulkhead_ipcache_key) + sizeof(bulkhead_ipcache_value)) +
      st.peer_entries * (sizeof(bulkhead_policy_peer_key) + sizeof(bulkhead_policy_peer_value)) +
      st.port_entries * (sizeof(bulkhead_policy_port_key) + sizeof(bulkhead_policy_port_value));
  return st;
}

}  // namespace bulkhead::engine
