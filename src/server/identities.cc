// The cluster-wide identity allocator over the store (identities.h).
#include "server/identities.h"

#include <nlohmann/json.hpp>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "server/agent_trust.h"

namespace bulkhead::server {
namespace {

using nlohmann::json;

// etcd refuses transactions of more than 128 writes (or conditions) by default: a chunk of
// changes stays below that whatever mix of creates (2 writes, 2 conditions) it holds.
constexpr size_t kMaxOpsPerTxn = 64;

bool Plain(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
         std::string_view("._~=,:+@-").find(c) != std::string_view::npos;
}

std::string RecordJson(const IdentityRecord& r) {
  return json{{"key", r.key},
              {"number", r.number},
              {"holders", std::vector<std::string>(r.holders.begin(), r.holders.end())}}
      .dump();
}

}  // namespace

std::string IdentityKeyRecordKey(std::string_view key) {
  std::string out = kIdentityKeysPrefix;
  for (char c : key) {
    if (Plain(c)) {
      out += c;
    } else {
      out += absl::StrFormat("%%%02X", static_cast<unsigned char>(c));
    }
  }
  return out;
}

std::string IdentityNumberRecordKey(uint32_t number) {
  // Zero-padded so that the store's byte order is the numbers' order.
  return absl::StrFormat("%s%010u", kIdentityNumbersPrefix, number);
}

// One read of every identity record, with the mod revisions the writes are conditioned on.
struct ClusterIdentities::Snapshot {
  struct Entry {
    IdentityRecord record;
    int64_t mod = 0;
  };
  std::map<std::string, Entry> by_key;  // by identity key
  std::map<uint32_t, int64_t> numbers;  // every number record: number -> mod revision
};

ClusterIdentities::ClusterIdentities(store::IStore* store, ClusterIdentitiesOptions options)
    : store_(store), options_(options) {}

absl::StatusOr<ClusterIdentities::Snapshot> ClusterIdentities::Read() {
  absl::StatusOr<store::Range> r = store_->Get(kIdentitiesPrefix, true);
  if (!r.ok()) return r.status();
  Snapshot s;
  const std::string_view numbers_prefix = kIdentityNumbersPrefix;
  const std::string_view keys_prefix = kIdentityKeysPrefix;
  for (const store::KeyValue& kv : r->kvs) {
    if (kv.key.rfind(numbers_prefix, 0) == 0) {
      uint32_t n = 0;
      if (!absl::SimpleAtoi(kv.key.substr(numbers_prefix.size()), &n)) {
        return absl::DataLossError(absl::StrCat(kv.key, ": not an identity number"));
      }
      s.numbers[n] = kv.mod_revision;
    } else if (kv.key.rfind(keys_prefix, 0) == 0) {
      Snapshot::Entry e;
      try {
        json j = json::parse(kv.value);
        e.record.key = j.at("key").get<std::string>();
        e.record.number = j.at("number").get<uint32_t>();
        for (const json& h : j.at("holders")) e.record.holders.insert(h.get<std::string>());
      } catch (const json::exception& ex) {
        return absl::DataLossError(
            absl::StrCat(kv.key, ": identity record is not valid: ", ex.what()));
      }
      e.mod = kv.mod_revision;
      std::string key = e.record.key;
      s.by_key[key] = std::move(e);
    }
  }
  return s;
}

absl::StatusOr<std::map<std::string, uint32_t>> ClusterIdentities::Hold(
    const std::string& node, const std::set<std::string>& keys) {
  size_t i = 0;
  for (const std::string& k : keys) {
    if (absl::Status s = ValidateIdentityKey(k, absl::StrCat("keys[", i, "]")); !s.ok()) return s;
    ++i;
  }
  std::set<std::string> gained;  // keys this call made `node` a holder of
  int conflicts = 0;
  const uint64_t range = uint64_t{options_.last} - options_.first + 1;
  while (true) {
    absl::StatusOr<Snapshot> snap = Read();
    if (!snap.ok()) return snap.status();
    std::vector<store::Compare> conditions;
    std::vector<store::Op> ops;
    std::set<std::string> adding;

    // First the keys it gains, so that a call that cannot complete has released nothing.
    size_t creates = 0;
    for (const std::string& k : keys) creates += snap->by_key.count(k) == 0 ? 1 : 0;
    uint64_t used = 0;
    for (const auto& [n, mod] : snap->numbers) {
      if (n >= options_.first && n <= options_.last) ++used;
    }
    if (creates > range - used) {
      absl::Status undo = Release(node, &gained, std::nullopt);
      return absl::ResourceExhaustedError(absl::StrCat(
          "node ", node, " needs ", creates, " new identities but only ", range - used, " of ",
          range, " numbers (", options_.first, "-", options_.last, ") are free",
          undo.ok()
              ? ""
              : absl::StrCat(" (and undoing this call's holds failed: ", undo.message(), ")")));
    }
    uint32_t candidate = options_.first;
    auto used_it = snap->numbers.lower_bound(candidate);
    for (const std::string& k : keys) {
      if (ops.size() >= kMaxOpsPerTxn) break;
      auto it = snap->by_key.find(k);
      std::string rec_key = IdentityKeyRecordKey(k);
      if (it != snap->by_key.end()) {
        if (it->second.record.holders.count(node) > 0) continue;
        IdentityRecord r = it->second.record;
        r.holders.insert(node);
        conditions.push_back({rec_key, it->second.mod});
        ops.push_back(store::Op::Put(rec_key, RecordJson(r)));
      } else {
        // The lowest number that no record has (nor an earlier create of this chunk).
        while (used_it != snap->numbers.end() && used_it->first == candidate) {
          ++candidate;
          ++used_it;
        }
        IdentityRecord r{k, candidate, {node}};
        ++candidate;
        std::string num_key = IdentityNumberRecordKey(r.number);
        conditions.push_back({rec_key, 0});
        conditions.push_back({num_key, 0});
        ops.push_back(store::Op::Put(rec_key, RecordJson(r)));
        ops.push_back(store::Op::Put(num_key, json{{"key", k}}.dump()));
      }
      adding.insert(k);
    }
    if (ops.empty()) {
      // Then the keys it no longer holds.
      std::set<std::string> drop;
      for (const auto& [k, e] : snap->by_key) {
        if (e.record.holders.count(node) > 0 && keys.count(k) == 0) drop.insert(k);
      }
      if (absl::Status s = Release(node, &drop, std::nullopt); !s.ok()) return s;
      std::map<std::string, uint32_t> out;
      for (const std::string& k : keys) out[k] = snap->by_key.at(k).record.number;
      return out;
    }
    absl::StatusOr<store::TxnResult> t = store_->Txn(conditions, ops);
    if (!t.ok()) return t.status();
    if (t->succeeded) {
      gained.insert(adding.begin(), adding.end());
    } else if (++conflicts > options_.max_conflicts) {
      absl::Status undo = Release(node, &gained, std::nullopt);
      return absl::AbortedError(absl::StrCat(
          "allocating identities for node ", node, ": ", conflicts,
          " transactions lost to concurrent writers; retry", undo.ok() ? "" : " (undoing failed)"));
    }
  }
}

absl::Status ClusterIdentities::ReleaseNode(const std::string& node,
                                            const std::optional<store::Compare>& guard) {
  return Release(node, nullptr, guard);
}

absl::Status ClusterIdentities::Release(const std::string& node, const std::set<std::string>* keys,
                                        const std::optional<store::Compare>& guard) {
  int conflicts = 0;
  while (true) {
    absl::StatusOr<Snapshot> snap = Read();
    if (!snap.ok()) return snap.status();
    std::vector<store::Compare> conditions;
    std::vector<store::Op> ops;
    if (guard.has_value()) conditions.push_back(*guard);
    for (const auto& [k, e] : snap->by_key) {
      if (ops.size() >= kMaxOpsPerTxn) break;
      if (e.record.holders.count(node) == 0) continue;
      if (keys != nullptr && keys->count(k) == 0) continue;
      std::string rec_key = IdentityKeyRecordKey(k);
      conditions.push_back({rec_key, e.mod});
      if (e.record.holders.size() == 1) {
        // The last holder: the key and its number go together.
        std::string num_key = IdentityNumberRecordKey(e.record.number);
        auto n = snap->numbers.find(e.record.number);
        conditions.push_back({num_key, n == snap->numbers.end() ? 0 : n->second});
        ops.push_back(store::Op::Delete(rec_key));
        if (n != snap->numbers.end()) ops.push_back(store::Op::Delete(num_key));
      } else {
        IdentityRecord r = e.record;
        r.holders.erase(node);
        ops.push_back(store::Op::Put(rec_key, RecordJson(r)));
      }
    }
    if (ops.empty()) return absl::OkStatus();
    absl::StatusOr<store::TxnResult> t = store_->Txn(conditions, ops);
    if (!t.ok()) return t.status();
    if (t->succeeded) continue;
    if (guard.has_value()) {
      absl::StatusOr<store::Range> g = store_->Get(guard->key);
      if (!g.ok()) return g.status();
      int64_t mod = g->kvs.empty() ? 0 : g->kvs[0].mod_revision;
      if (mod != guard->mod_revision) {
        return absl::FailedPreconditionError(
            absl::StrCat(guard->key, " changed: node ", node, " keeps its identities"));
      }
    }
    if (++conflicts > options_.max_conflicts) {
      return absl::AbortedError(absl::StrCat("releasing identities of node ", node, ": ", conflicts,
                                             " transactions lost to concurrent writers; retry"));
    }
  }
}

absl::StatusOr<std::vector<IdentityRecord>> ClusterIdentities::List() {
  absl::StatusOr<Snapshot> snap = Read();
  if (!snap.ok()) return snap.status();
  std::map<uint32_t, IdentityRecord> by_number;
  for (auto& [k, e] : snap->by_key) by_number[e.record.number] = std::move(e.record);
  std::vector<IdentityRecord> out;
  out.reserve(by_number.size());
  for (auto& [n, r] : by_number) out.push_back(std::move(r));
  return out;
}

absl::StatusOr<std::map<std::string, uint32_t>> ClusterIdentities::Lookup(
    const std::set<std::string>& keys) {
  absl::StatusOr<Snapshot> snap = Read();
  if (!snap.ok()) return snap.status();
  std::map<std::string, uint32_t> out;
  for (const std::string& k : keys) {
    auto it = snap->by_key.find(k);
    if (it != snap->by_key.end()) out[k] = it->second.record.number;
  }
  return out;
}

}  // namespace bulkhead::server
