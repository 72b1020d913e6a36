// Agent: load -> validate -> compile -> write new tables -> switch endpoints -> delete old.
#include "agent/agent.h"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "policy/loader.h"
#include "spdlog/spdlog.h"

namespace bulkhead::agent {
namespace fs = std::filesystem;

namespace {

constexpr uint64_t kFnvOffset = 1469598103934665603ULL;
constexpr uint64_t kFnvPrime = 1099511628211ULL;

uint64_t Fnv1a(uint64_t h, std::string_view data) {
  for (unsigned char c : data) {
    h ^= c;
    h *= kFnvPrime;
  }
  return h;
}

bool IsManifest(const fs::path& p) {
  const std::string ext = p.extension().string();
  return ext == ".yaml" || ext == ".yml" || ext == ".json";
}

datapath::Mode ToDatapathMode(policy::Mode m) {
  switch (m) {
    case policy::Mode::kAudit:
      return datapath::Mode::kAudit;
    case policy::Mode::kLearn:
      return datapath::Mode::kLearn;
    case policy::Mode::kEnforce:
      break;
  }
  return datapath::Mode::kEnforce;
}

std::string KeyHex(const bulkhead_ipcache_key& key) {
  std::string out;
  const auto* p = reinterpret_cast<const uint8_t*>(&key);
  static constexpr char kHex[] = "0123456789abcdef";
  for (size_t i = 0; i < sizeof(key); ++i) {
    out.push_back(kHex[p[i] >> 4]);
    out.push_back(kHex[p[i] & 15]);
  }
  return out;
}

std::optional<bulkhead_ipcache_key> KeyFromHex(const std::string& hex) {
  bulkhead_ipcache_key key{};
  if (hex.size() != 2 * sizeof(key)) return std::nullopt;
  auto* p = reinterpret_cast<uint8_t*>(&key);
  for (size_t i = 0; i < sizeof(key); ++i) {
    auto nib = [](char c) -> int {
      if (c >= '0' && c <= '9') return c - '0';
      if (c >= 'a' && c <= 'f') return c - 'a' + 10;
      return -1;
    };
    int hi = nib(hex[2 * i]);
    int lo = nib(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) return std::nullopt;
    p[i] = static_cast<uint8_t>(hi << 4 | lo);
  }
  return key;
}

bool SameKey(const bulkhead_ipcache_key& a, const bulkhead_ipcache_key& b) {
  return std::memcmp(&a, &b, sizeof(a)) == 0;
}

}  // namespace

Agent::Agent(AgentOptions options, datapath::IDatapath& datapath, InterfaceResolver resolver)
    : options_(std::move(options)), datapath_(datapath), resolver_(std::move(resolver)) {}

Agent::~Agent() = default;

std::string Agent::revision() const {
  if (applied_hash_.empty()) return "";
  return absl::StrCat(revision_counter_, "-", applied_hash_);
}

absl::StatusOr<std::string> Agent::HashInputs() const {
  std::vector<fs::path> files;
  std::error_code ec;
  if (!fs::is_directory(options_.policies_dir, ec)) {
    return absl::NotFoundError(
        absl::StrCat("policy directory ", options_.policies_dir, " is not a directory"));
  }
  for (fs::recursive_directory_iterator it(options_.policies_dir, ec), end; !ec && it != end;
       it.increment(ec)) {
    if (it->is_regular_file(ec) && IsManifest(it->path())) files.push_back(it->path());
  }
  if (ec) return absl::UnavailableError(absl::StrCat(options_.policies_dir, ": ", ec.message()));
  std::sort(files.begin(), files.end());
  files.emplace_back(options_.inventory_file);
  uint64_t h = kFnvOffset;
  for (const auto& f : files) {
    std::ifstream in(f, std::ios::binary);
    if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", f.string()));
    std::stringstream ss;
    ss << in.rdbuf();
    h = Fnv1a(h, f.string());
    h = Fnv1a(h, std::string_view("\0", 1));
    h = Fnv1a(h, ss.str());
    h = Fnv1a(h, std::string_view("\0", 1));
  }
  char buf[17];
  snprintf(buf, sizeof(buf), "%016llx", static_cast<unsigned long long>(h));
  return std::string(buf);
}

void Agent::LoadState() {
  if (options_.state_dir.empty()) return;
  std::ifstream in(fs::path(options_.state_dir) / "state.json");
  if (!in) return;
  try {
    nlohmann::json j = nlohmann::json::parse(in);
    generation_ = std::max(generation_, j.value("generation", 0U));
    revision_counter_ = j.value("revision_counter", uint64_t{0});
    state_hash_ = j.value("content_hash", std::string());
    for (const auto& k : j.value("ipcache", std::vector<std::string>{})) {
      if (auto key = KeyFromHex(k)) live_ipcache_.push_back(*key);
    }
  } catch (const nlohmann::json::exception& e) {
    spdlog::warn("ignoring unreadable {}/state.json: {}", options_.state_dir, e.what());
  }
}

absl::Status Agent::SaveState() const {
  if (options_.state_dir.empty()) return absl::OkStatus();
  nlohmann::json j;
  j["generation"] = generation_;
  j["revision_counter"] = revision_counter_;
  j["revision"] = revision();
  j["content_hash"] = applied_hash_;
  std::vector<std::string> keys;
  for (const auto& k : live_ipcache_) keys.push_back(KeyHex(k));
  j["ipcache"] = keys;
  const fs::path dir(options_.state_dir);
  std::error_code ec;
  fs::create_directories(dir, ec);
  const fs::path tmp = dir / "state.json.tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << j.dump(1) << "\n";
    if (!out) return absl::UnavailableError(absl::StrCat("cannot write ", tmp.string()));
  }
  fs::rename(tmp, dir / "state.json", ec);
  if (ec)
    return absl::UnavailableError(absl::StrCat("cannot rename ", tmp.string(), ": ", ec.message()));
  return absl::OkStatus();
}

absl::Status Agent::Start() {
  LoadState();
  auto eps = datapath_.ListEndpoints();
  if (!eps.ok()) return eps.status();
  auto tables = datapath_.ListPolicyTables();
  if (!tables.ok()) return tables.status();
  for (const auto& e : *eps) generation_ = std::max(generation_, e.policy_generation);
  live_tables_ = *tables;
  for (uint32_t t : live_tables_) next_table_base_ = std::max(next_table_base_, t + 1);
  if (!eps->empty() || !live_tables_.empty()) {
    spdlog::info("adopting kernel state: {} endpoints, {} policy tables, generation {}",
                 eps->size(), live_tables_.size(), generation_);
  }
  (void)Reload(/*force=*/true);
  return absl::OkStatus();
}

absl::Status Agent::Reload(bool force) {
  auto hash = HashInputs();
  if (!hash.ok()) {
    last_error_ = std::string(hash.status().message());
    ++applies_failed_;
    spdlog::error("policy not applied (last good stays in force): {}", last_error_);
    return hash.status();
  }
  if (!force && *hash == applied_hash_) {
    if (!needs_retry_) return absl::OkStatus();
    // Re-apply only when a pending endpoint can now make progress: every apply bumps the
    // generation, which makes the datapath re-check every open flow.
    bool progress = false;
    for (const auto& e : endpoints_) {
      if (!e.error.empty() && (e.ifindex != 0 || resolver_(e.host_interface).ok())) progress = true;
    }
    if (!progress) return absl::OkStatus();
  }

  policy::LoadResult loaded = policy::LoadPaths({options_.policies_dir, options_.inventory_file});
  std::vector<std::string> errors;
  for (const auto& d : loaded.diagnostics) {
    if (d.severity == policy::Diagnostic::Severity::kError) {
      errors.push_back(d.ToString());
    } else if (d.severity == policy::Diagnostic::Severity::kWarning) {
      spdlog::warn("{}", d.ToString());
    }
  }
  if (!loaded.ok()) {
    last_error_ = absl::StrJoin(errors, "\n");
    ++applies_failed_;
    for (const auto& e : errors) spdlog::error("invalid policy input: {}", e);
    spdlog::error("policy not applied; revision {} stays in force", revision());
    needs_retry_ = false;
    return absl::InvalidArgumentError(last_error_);
  }
  absl::Status st = Apply(loaded.cluster, *hash);
  if (!st.ok()) {
    last_error_ = std::string(st.message());
    ++applies_failed_;
    spdlog::error("policy not applied: {}", last_error_);
  }
  return st;
}

absl::Status Agent::Apply(const policy::Cluster& cluster, const std::string& hash) {
  engine::CompilerOptions copts;
  copts.table_id_base = next_table_base_;
  auto compiler = engine::PolicyCompiler::Create(cluster, copts);
  if (!compiler.ok()) return compiler.status();
  const engine::CompiledPolicy& compiled = (*compiler)->compiled();

  // Which workloads get an endpoint here: those the inventory gives a host interface.
  std::vector<EndpointInfo> desired;
  bool missing = false;
  for (const auto& [id, binding] : compiled.endpoints) {
    const policy::Workload* w = cluster.FindWorkload(id);
    if (w == nullptr || w->host_interface.empty()) continue;
    EndpointInfo info;
    info.workload = id;
    info.host_interface = w->host_interface;
    info.netns = w->netns;
    info.identity = binding.identity;
    info.table_id = binding.table_id;
    info.mode = binding.mode;
    for (const auto& ip : w->ips) info.ips.push_back(ip.ToString());
    auto ifindex = resolver_(w->host_interface);
    if (!ifindex.ok()) {
      info.error = std::string(ifindex.status().message());
      missing = true;
    } else {
      info.ifindex = *ifindex;
    }
    desired.push_back(std::move(info));
  }

  // 1. New tables beside the old ones (fresh ids: nothing points at them yet).
  datapath::PolicyTables tables;
  tables.peers = compiled.maps.peers.Entries();
  tables.ports = compiled.maps.ports.Entries();
  std::vector<uint32_t> new_tables;
  for (const auto& t : compiled.tables) new_tables.push_back(t.table_id);
  if (absl::Status st = datapath_.WritePolicyTables(tables); !st.ok()) {
    (void)datapath_.DeletePolicyTables(new_tables);
    return st;
  }
  // 2. The ipcache: new and changed entries (stale ones go after the switch).
  auto ipcache = compiled.maps.ipcache.Entries();
  if (absl::Status st = datapath_.UpsertIpcache(ipcache); !st.ok()) {
    (void)datapath_.DeletePolicyTables(new_tables);
    return st;
  }
  // 3. Switch every endpoint: config (identity, table, generation, mode) in one map write,
  // before the filters are attached, so an interface never runs without config.
  ++generation_;
  absl::Status first_error;
  std::set<uint32_t> keep;
  for (auto& info : desired) {
    if (info.ifindex == 0) continue;
    datapath::Endpoint ep;
    ep.ifindex = info.ifindex;
    ep.endpoint_id = info.ifindex;
    ep.identity = info.identity;
    ep.policy_table_id = info.table_id;
    ep.policy_generation = generation_;
    ep.mode = ToDatapathMode(info.mode);
    const policy::Workload* w = cluster.FindWorkload(info.workload);
    for (const auto& ip : w->ips) {
      datapath::EndpointAddress a;
      a.family = ip.v6 ? BULKHEAD_FAMILY_IPV6 : BULKHEAD_FAMILY_IPV4;
      a.addr = ip.bytes;
      ep.addresses.push_back(a);
    }
    absl::Status st = datapath_.UpsertEndpoint(ep);
    if (st.ok()) st = datapath_.Attach(info.ifindex);
    if (!st.ok()) {
      info.error = std::string(st.message());
      missing = true;
      if (first_error.ok()) first_error = st;
      continue;
    }
    info.generation = generation_;
    keep.insert(info.ifindex);
  }
  // 4. Endpoints that are gone: detach first (an attached interface without config drops
  // everything), then delete.
  if (auto eps = datapath_.ListEndpoints(); eps.ok()) {
    for (const auto& e : *eps) {
      if (keep.count(e.ifindex) != 0) continue;
      // An endpoint whose switch failed above stays as it was, not removed.
      bool failed = std::any_of(desired.begin(), desired.end(),
                                [&](const EndpointInfo& d) { return d.ifindex == e.ifindex; });
      if (failed) continue;
      spdlog::info("removing stale endpoint ifindex {}", e.ifindex);
      (void)datapath_.Detach(e.ifindex);
      if (absl::Status st = datapath_.DeleteEndpoint(e.ifindex); !st.ok()) {
        spdlog::warn("cannot delete endpoint {}: {}", e.ifindex, std::string(st.message()));
      }
    }
  }
  if (auto att = datapath_.ListAttached(); att.ok()) {
    for (uint32_t ifindex : *att) {
      if (keep.count(ifindex) == 0 &&
          std::none_of(desired.begin(), desired.end(),
                       [&](const EndpointInfo& d) { return d.ifindex == ifindex; })) {
        (void)datapath_.Detach(ifindex);
      }
    }
  }
  // 5. Stale ipcache entries and the old tables.
  std::vector<bulkhead_ipcache_key> stale;
  for (const auto& k : live_ipcache_) {
    bool still = std::any_of(ipcache.begin(), ipcache.end(),
                             [&](const auto& e) { return SameKey(e.first, k); });
    if (!still) stale.push_back(k);
  }
  if (!stale.empty()) {
    if (absl::Status st = datapath_.DeleteIpcache(stale); !st.ok()) {
      spdlog::warn("cannot delete stale ipcache entries: {}", std::string(st.message()));
    }
  }
  live_ipcache_.clear();
  for (const auto& e : ipcache) live_ipcache_.push_back(e.first);
  std::vector<uint32_t> old_tables;
  if (auto listed = datapath_.ListPolicyTables(); listed.ok()) {
    for (uint32_t t : *listed) {
      if (std::find(new_tables.begin(), new_tables.end(), t) == new_tables.end()) {
        old_tables.push_back(t);
      }
    }
  }
  if (!old_tables.empty()) {
    if (absl::Status st = datapath_.DeletePolicyTables(old_tables); !st.ok()) {
      // Still used by an endpoint whose switch failed: retried on the next apply.
      spdlog::warn("old policy tables kept: {}", std::string(st.message()));
    }
  }
  live_tables_ = new_tables;
  next_table_base_ = std::max(next_table_base_, compiled.NextTableIdBase());

  RuleTable rt;
  rt.table_id_base = copts.table_id_base;
  rt.table_id_end = compiled.NextTableIdBase();
  rt.rules = compiled.rules;
  rt.identities = compiled.identities;
  rule_tables_.push_back(std::move(rt));
  if (rule_tables_.size() > 4) rule_tables_.erase(rule_tables_.begin());

  compiler_ = std::move(*compiler);
  endpoints_ = std::move(desired);
  needs_retry_ = missing;
  // A restarted agent applying the same files keeps the revision it had.
  if (hash != (applied_hash_.empty() ? state_hash_ : applied_hash_)) ++revision_counter_;
  applied_hash_ = hash;
  ready_ = true;
  if (first_error.ok()) {
    last_error_.clear();
  } else {
    last_error_ = std::string(first_error.message());
  }
  ++applies_ok_;
  if (absl::Status st = SaveState(); !st.ok()) spdlog::warn("{}", std::string(st.message()));
  spdlog::info("applied revision {}: {} endpoints, {} tables, generation {}", revision(),
               keep.size(), new_tables.size(), generation_);
  return first_error;
}

const RuleTable* Agent::RulesForTable(uint32_t table_id) const {
  for (const RuleTable& rt : rule_tables_) {
    if (table_id >= rt.table_id_base && table_id < rt.table_id_end) return &rt;
  }
  return rule_tables_.empty() ? nullptr : &rule_tables_.back();
}

const EndpointInfo* Agent::FindEndpoint(const std::string& workload) const {
  for (const auto& e : endpoints_) {
    if (e.workload == workload) return &e;
  }
  return nullptr;
}

const EndpointInfo* Agent::FindEndpointByIfindex(uint32_t ifindex) const {
  for (const auto& e : endpoints_) {
    if (e.ifindex == ifindex && ifindex != 0) return &e;
  }
  return nullptr;
}

std::string Agent::PeerName(uint32_t identity, uint32_t table_id) const {
  if (const char* r = identity::ReservedIdentityName(identity); r != nullptr && *r != '\0') {
    return r;
  }
  const RuleTable* rt = RulesForTable(table_id);
  if (rt != nullptr) {
    for (const auto& id : rt->identities) {
      if (id.id != identity) continue;
      if (!id.workloads.empty()) return absl::StrJoin(id.workloads, ",");
      if (id.cidr) return id.cidr->ToString();
    }
  }
  return absl::StrCat("identity:", identity);
}

nlohmann::json Agent::StatusJson() const {
  nlohmann::json j;
  j["ready"] = ready_;
  j["revision"] = revision();
  j["revision_counter"] = revision_counter_;
  j["content_hash"] = applied_hash_;
  j["last_error"] = last_error_;
  j["generation"] = generation_;
  j["applies_ok"] = applies_ok_;
  j["applies_failed"] = applies_failed_;
  size_t active = 0;
  for (const auto& e : endpoints_) active += e.ifindex != 0 && e.error.empty() ? 1 : 0;
  j["endpoints"] = active;
  j["endpoints_pending"] = endpoints_.size() - active;
  j["policy_tables"] = live_tables_.size();
  j["policies_dir"] = options_.policies_dir;
  j["inventory"] = options_.inventory_file;
  return j;
}

nlohmann::json Agent::EndpointsJson() const {
  nlohmann::json arr = nlohmann::json::array();
  for (const auto& e : endpoints_) {
    nlohmann::json j;
    j["workload"] = e.workload;
    j["interface"] = e.host_interface;
    j["netns"] = e.netns;
    j["ifindex"] = e.ifindex;
    j["identity"] = e.identity;
    j["mode"] = policy::ModeName(e.mode);
    j["table"] = e.table_id;
    j["generation"] = e.generation;
    j["ips"] = e.ips;
    j["error"] = e.error;
    arr.push_back(std::move(j));
  }
  return arr;
}

}  // namespace bulkhead::agent
