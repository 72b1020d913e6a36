// What every store shares: OpenStore's URL parsing, prefix ranges and the transaction checks.
#include "store/store.h"

#include <set>
#include <string>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "store/etcd_store.h"
#include "store/sqlite_store.h"
#include "store/txn_check.h"

namespace bulkhead::store {

std::string PrefixEnd(std::string_view prefix) {
  std::string end(prefix);
  while (!end.empty()) {
    auto last = static_cast<unsigned char>(end.back());
    if (last < 0xff) {
      end.back() = static_cast<char>(last + 1);
      return end;
    }
    end.pop_back();  // "a\xff" ends where "b" begins
  }
  return end;  // only 0xff bytes (or nothing): no upper bound
}

absl::StatusOr<Range> IStore::Get(std::string_view key, bool prefix, int64_t at_revision) {
  ReadOptions options;
  options.at_revision = at_revision;
  if (prefix) return GetRange(key, PrefixEnd(key), options);
  if (key.empty()) return absl::InvalidArgumentError("store: Get of an empty key");
  std::string end(key);
  end.push_back('\0');  // the smallest key after `key`
  return GetRange(key, end, options);
}

namespace internal {

bool InRange(std::string_view key, std::string_view begin, std::string_view end) {
  return key >= begin && (end.empty() || key < end);
}

KeyRange DeleteRange(const Op& op) {
  if (op.kind == Op::Kind::kDeletePrefix) return {op.key, PrefixEnd(op.key)};
  std::string end = op.key;
  end.push_back('\0');
  return {op.key, end};
}

absl::Status CheckTxn(const std::vector<Compare>& conditions, const std::vector<Op>& ops) {
  for (const Compare& c : conditions) {
    if (c.key.empty())
      return absl::InvalidArgumentError("store: transaction compares an empty key");
    if (c.mod_revision < 0) {
      return absl::InvalidArgumentError(absl::StrCat("store: transaction compares key '",
                                                     absl::CHexEscape(c.key),
                                                     "' with a negative revision"));
    }
  }
  std::set<absl::string_view> puts;
  std::vector<KeyRange> deletes;
  for (const Op& op : ops) {
    if (op.key.empty() && op.kind != Op::Kind::kDeletePrefix) {
      return absl::InvalidArgumentError("store: transaction writes an empty key");
    }
    if (op.kind == Op::Kind::kPut) {
      if (!puts.insert(absl::string_view(op.key)).second) {
        return absl::InvalidArgumentError(
            absl::StrCat("store: transaction puts key '", absl::CHexEscape(op.key), "' twice"));
      }
    } else {
      deletes.push_back(DeleteRange(op));
    }
  }
  for (absl::string_view key : puts) {
    for (const KeyRange& d : deletes) {
      if (InRange(std::string_view(key.data(), key.size()), d.begin, d.end)) {
        return absl::InvalidArgumentError(
            absl::StrCat("store: transaction both puts and deletes key '", absl::CHexEscape(key),
                         "' (one write per key)"));
      }
    }
  }
  return absl::OkStatus();
}

absl::Status CheckRead(const ReadOptions& options) {
  if (options.limit < 0) return absl::InvalidArgumentError("store: read with a negative limit");
  if (options.at_revision < 0) {
    return absl::InvalidArgumentError("store: read at a negative revision");
  }
  return absl::OkStatus();
}

}  // namespace internal

namespace {

// "HOST:PORT" or "[V6]:PORT" with a port in 1..65535.
absl::Status CheckEndpoint(absl::string_view url, absl::string_view endpoint) {
  size_t colon = endpoint.rfind(':');
  absl::string_view host = colon == absl::string_view::npos ? "" : endpoint.substr(0, colon);
  if (absl::StartsWith(host, "[") && absl::EndsWith(host, "]")) host = host.substr(1);
  int port = 0;
  if (colon == absl::string_view::npos || host.empty() ||
      !absl::SimpleAtoi(endpoint.substr(colon + 1), &port) || port < 1 || port > 65535) {
    return absl::InvalidArgumentError(absl::StrCat("store URL '", url, "': endpoint '", endpoint,
                                                   "' is not HOST:PORT (port 1-65535)"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<IStore>> OpenStore(std::string_view url_view,
                                                  const StoreOptions& options) {
  // Debian's abseil has its own string_view type.
  const absl::string_view url(url_view.data(), url_view.size());
  static constexpr absl::string_view kForms =
      "use sqlite:PATH, a plain file path, sqlite::memory: or etcd://HOST:PORT[,HOST:PORT...]";
  if (url.empty()) return absl::InvalidArgumentError(absl::StrCat("empty store URL; ", kForms));
  if (absl::StartsWith(url, "etcd://")) {
    absl::string_view list = url.substr(7);
    if (list.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("store URL '", url, "' names no etcd endpoint; ", kForms));
    }
    if (options.request_timeout_ms <= 0) {
      return absl::InvalidArgumentError("store: request timeout must be positive");
    }
    std::vector<std::string> endpoints = absl::StrSplit(list, ',');
    for (const std::string& endpoint : endpoints) {
      if (absl::StrContains(endpoint, '/')) {
        return absl::InvalidArgumentError(
            absl::StrCat("store URL '", url, "': endpoint '", endpoint, "' has a path; ", kForms));
      }
      if (absl::Status s = CheckEndpoint(url, endpoint); !s.ok()) return s;
    }
    return OpenEtcdStore(endpoints, options);
  }
  if (url == "sqlite::memory:") return OpenSqliteStore(":memory:");
  if (absl::StartsWith(url, "sqlite:")) {
    absl::string_view path = url.substr(7);
    if (path.empty() || absl::StartsWith(path, "//")) {
      return absl::InvalidArgumentError(
          absl::StrCat("store URL '", url, "': sqlite:PATH takes a file path (sqlite:/var/lib/",
                       "bulkhead/server.db or sqlite:server.db)"));
    }
    return OpenSqliteStore(std::string(path));
  }
  // Any other "scheme:" is a mistake rather than a file name (sqlite:PATH takes any name).
  size_t colon = url.find(':');
  if (colon != absl::string_view::npos && url.find('/') > colon) {
    return absl::InvalidArgumentError(absl::StrCat("store URL '", url, "': unknown scheme '",
                                                   url.substr(0, colon), "'; ", kForms));
  }
  return OpenSqliteStore(std::string(url));
}

}  // namespace bulkhead::store
