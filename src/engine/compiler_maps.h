// In-memory models of the BPF maps the policy compiler fills, with the kernel's lookup
// semantics (exact match for the peer hash map, longest prefix for the LPM tries) over the
// very key/value structs of the ABI header. The compiler writes into them, the loader copies
// their entries into the kernel, and Lookup() (compiler.h) reads them as the datapath does.
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "datapath/abi/bulkhead_abi.h"

namespace bulkhead::engine {

// A struct as the bytes the kernel hashes and compares.
template <typename T>
using KeyBytes = std::array<uint8_t, sizeof(T)>;

template <typename T>
KeyBytes<T> ToBytes(const T& v) {
  static_assert(std::is_trivially_copyable_v<T>);
  KeyBytes<T> b;
  std::memcpy(b.data(), &v, sizeof(T));
  return b;
}

template <typename T>
T FromBytes(const KeyBytes<T>& b) {
  T v;
  std::memcpy(&v, b.data(), sizeof(T));
  return v;
}

// Hashes key bytes in one go (absl would hash a std::array element by element).
struct KeyBytesHash {
  template <size_t N>
  size_t operator()(const std::array<uint8_t, N>& b) const {
    return absl::HashOf(std::string_view(reinterpret_cast<const char*>(b.data()), N));
  }
};

// BPF_MAP_TYPE_LPM_TRIE. Key starts with `__u32 prefixlen`; the data after it is matched
// on its first prefixlen bits, most significant bit of each byte first, as the kernel does.
template <typename Key, typename Value>
class LpmTrieModel {
 public:
  static constexpr uint32_t kDataBits = 8 * (sizeof(Key) - sizeof(uint32_t));

  // Stores `value` for the prefix `key` (bits beyond prefixlen are ignored, as in the
  // kernel). prefixlen must not exceed the data bits.
  void Update(const Key& key, const Value& value) {
    KeyBytes<Key> b = Normalize(key);
    auto [it, inserted] = map_.insert_or_assign(b, value);
    (void)it;
    if (inserted) ++length_count_[key.prefixlen];
  }
  void Reserve(size_t n) { map_.reserve(n); }
  bool Delete(const Key& key) {
    if (map_.erase(Normalize(key)) == 0) return false;
    --length_count_[key.prefixlen];
    return true;
  }
  // The value stored for exactly this prefix.
  const Value* Find(const Key& key) const {
    auto it = map_.find(Normalize(key));
    return it == map_.end() ? nullptr : &it->second;
  }
  // The value of the longest stored prefix (of length <= key.prefixlen) that matches the
  // key's data: what bpf_map_lookup_elem returns on an LPM trie.
  const Value* Lookup(const Key& key) const {
    for (int len = static_cast<int>(std::min<uint32_t>(key.prefixlen, kDataBits)); len >= 0;
         --len) {
      if (length_count_[len] == 0) continue;
      Key probe = key;
      probe.prefixlen = static_cast<uint32_t>(len);
      auto it = map_.find(Normalize(probe));
      if (it != map_.end()) return &it->second;
    }
    return nullptr;
  }
  size_t size() const { return map_.size(); }
  std::vector<std::pair<Key, Value>> Entries() const {
    std::vector<std::pair<KeyBytes<Key>, Value>> raw(map_.begin(), map_.end());
    std::sort(raw.begin(), raw.end(),
              [](const auto& a, const auto& b) { return a.first < b.first; });
    std::vector<std::pair<Key, Value>> out;
    out.reserve(raw.size());
    for (const auto& [k, v] : raw) out.emplace_back(FromBytes<Key>(k), v);
    return out;
  }

 private:
  // The key bytes with every data bit beyond prefixlen cleared.
  static KeyBytes<Key> Normalize(const Key& key) {
    KeyBytes<Key> b = ToBytes(key);
    uint32_t len = key.prefixlen;
    for (uint32_t bit = 0; bit < kDataBits; bit += 8) {
      uint8_t& byte = b[sizeof(uint32_t) + bit / 8];
      if (bit >= len) {
        byte = 0;
      } else if (bit + 8 > len) {
        byte &= static_cast<uint8_t>(0xffu << (8 - (len - bit)));
      }
    }
    return b;
  }

  absl::flat_hash_map<KeyBytes<Key>, Value, KeyBytesHash> map_;
  std::array<uint32_t, kDataBits + 1> length_count_{};
};

using IpcacheMap = LpmTrieModel<bulkhead_ipcache_key, bulkhead_ipcache_value>;

// The policy peers map (BPF_MAP_TYPE_HASH: exact match on the whole key). Held per table
// and direction as a vector sorted by peer identity, because the compiler writes it table
// by table (appends) and an incremental update touches one table's vector: far cheaper
// than scattered hash inserts for the hundreds of thousands of entries of a large cluster.
class PolicyPeerMap {
 public:
  // Keys must have zero padding (the compiler's PeerKey does); a key with padding set is a
  // broken invariant.
  void Update(const bulkhead_policy_peer_key& key, const bulkhead_policy_peer_value& value);
  bool Delete(const bulkhead_policy_peer_key& key);
  // nullptr when absent (a key with non-zero padding is never present, as in the kernel).
  const bulkhead_policy_peer_value* Lookup(const bulkhead_policy_peer_key& key) const;
  size_t size() const { return size_; }
  // Every entry, sorted by table, direction, peer identity.
  std::vector<std::pair<bulkhead_policy_peer_key, bulkhead_policy_peer_value>> Entries() const;
  // The entries of one table in that order, as bytes without the table id: equal for two
  // tables exactly when their entries are equal but for the id.
  void AppendTableContent(uint32_t table_id, std::string* out) const;
  // Moves every entry of table `from` to table `to` (which must have none).
  void RenameTable(uint32_t from, uint32_t to);
  // Appends the entries of one table, in Entries()' order (a loader writing one table).
  void AppendTableEntries(
      uint32_t table_id,
      std::vector<std::pair<bulkhead_policy_peer_key, bulkhead_policy_peer_value>>* out) const;
  // Removes every entry of one table.
  void EraseTable(uint32_t table_id);

 private:
  using Row = std::pair<uint32_t, bulkhead_policy_peer_value>;  // peer identity, class
  absl::flat_hash_map<uint32_t, std::array<std::vector<Row>, 2>> tables_;
  size_t size_ = 0;
};

// The policy ports map (BPF_MAP_TYPE_LPM_TRIE over table, class, direction, protocol and
// a port prefix). Held per table, direction, class and protocol as a short vector of port
// prefixes; lookup returns the longest prefix that matches, as the kernel's trie does.
// Entries must fix table, class, direction and protocol (prefixlen >= 80, one of the five
// protocols the compiler covers): anything else is a broken invariant.
class PolicyPortMap {
 public:
  void Update(const bulkhead_policy_port_key& key, const bulkhead_policy_port_value& value);
  bool Delete(const bulkhead_policy_port_key& key);
  // The value stored for exactly this prefix.
  const bulkhead_policy_port_value* Find(const bulkhead_policy_port_key& key) const;
  // The longest stored prefix (<= key.prefixlen) matching the key.
  const bulkhead_policy_port_value* Lookup(const bulkhead_policy_port_key& key) const;
  size_t size() const { return size_; }
  // Every entry, sorted by table, direction, class, protocol, port, prefix length.
  std::vector<std::pair<bulkhead_policy_port_key, bulkhead_policy_port_value>> Entries() const;
  // As PolicyPeerMap's.
  void AppendTableContent(uint32_t table_id, std::string* out) const;
  void RenameTable(uint32_t from, uint32_t to);
  void AppendTableEntries(
      uint32_t table_id,
      std::vector<std::pair<bulkhead_policy_port_key, bulkhead_policy_port_value>>* out) const;
  void EraseTable(uint32_t table_id);

 private:
  struct Prefix {
    uint16_t port = 0;  // host order, bits beyond `bits` clear
    uint8_t bits = 0;
    bulkhead_policy_port_value value{};
  };
  static constexpr int kProtocolSlots = 5;
  using ClassPorts = std::array<std::vector<Prefix>, kProtocolSlots>;
  using TablePorts = std::array<std::vector<ClassPorts>, 2>;  // [direction][class]
  const std::vector<Prefix>* Group(const bulkhead_policy_port_key& key) const;
  template <typename Tables>
  static auto* GroupIn(Tables& tables, const bulkhead_policy_port_key& key);
  absl::flat_hash_map<uint32_t, TablePorts> tables_;
  size_t size_ = 0;
};

// The three maps of one compiled policy, as the kernel will hold them.
struct PolicyMaps {
  IpcacheMap ipcache;
  PolicyPeerMap peers;
  PolicyPortMap ports;
};

}  // namespace bulkhead::engine
