// Agent: load -> validate -> compile -> write new tables -> switch endpoints -> delete old.
#include "agent/agent.h"

#include <fcntl.h>
#include <malloc.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <set>
#include <sstream>
#include <stdexcept>

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

// Identity and rule numbers of the compile in force, for state.json: a restarted agent
// compiles with them pinned, so that the numbers in the kernel keep their meaning.
nlohmann::json PinsToJson(const engine::PinnedIdentities& ids,
                          const std::map<engine::RuleKey, uint32_t>& rules) {
  nlohmann::json workloads = nlohmann::json::array();
  for (const auto& [key, id] : ids.workloads) {
    nlohmann::json ports = nlohmann::json::array();
    for (const auto& p : key.named_ports) {
      ports.push_back(
          {{"name", p.name}, {"protocol", policy::ProtocolName(p.protocol)}, {"port", p.port}});
    }
    workloads.push_back({{"id", id},
                         {"namespace", key.namespace_name},
                         {"namespaceLabels", key.namespace_labels},
                         {"labels", key.labels},
                         {"serviceAccount", key.service_account},
                         {"namedPorts", ports}});
  }
  nlohmann::json cidrs = nlohmann::json::array();
  for (const auto& [cidr, id] : ids.cidrs) cidrs.push_back({{"id", id}, {"cidr", cidr.ToString()}});
  nlohmann::json rule_list = nlohmann::json::array();
  for (const auto& [key, id] : rules) {
    rule_list.push_back({{"id", id},
                         {"policy", key.policy},
                         {"direction", policy::DirectionName(key.direction)},
                         {"index", key.rule_index}});
  }
  return {{"workloads", workloads}, {"cidrs", cidrs}, {"rules", rule_list}};
}

// The inverse; throws nlohmann::json::exception or std::invalid_argument on a bad entry.
void PinsFromJson(const nlohmann::json& j, engine::PinnedIdentities* ids,
                  std::map<engine::RuleKey, uint32_t>* rules) {
  for (const auto& w : j.at("workloads")) {
    identity::IdentityKey key;
    key.namespace_name = w.at("namespace").get<std::string>();
    key.namespace_labels = w.at("namespaceLabels").get<policy::Labels>();
    key.labels = w.at("labels").get<policy::Labels>();
    key.service_account = w.at("serviceAccount").get<std::string>();
    for (const auto& p : w.at("namedPorts")) {
      auto proto = policy::ParseProtocol(p.at("protocol").get<std::string>());
      if (!proto) throw std::invalid_argument("unknown protocol in namedPorts");
      key.named_ports.push_back(
          {p.at("name").get<std::string>(), *proto, p.at("port").get<uint16_t>()});
    }
    ids->workloads[key] = w.at("id").get<identity::NumericIdentity>();
  }
  for (const auto& c : j.at("cidrs")) {
    auto cidr = policy::Cidr::Parse(c.at("cidr").get<std::string>());
    if (!cidr) throw std::invalid_argument("bad cidr");
    ids->cidrs[*cidr] = c.at("id").get<identity::NumericIdentity>();
  }
  for (const auto& r : j.at("rules")) {
    engine::RuleKey key;
    key.policy = r.at("policy").get<std::string>();
    key.direction = r.at("direction").get<std::string>() == "egress" ? policy::Direction::kEgress
                                                                     : policy::Direction::kIngress;
    key.rule_index = r.at("index").get<int>();
    (*rules)[key] = r.at("id").get<uint32_t>();
  }
}

using Clock = std::chrono::steady_clock;
double MsSince(Clock::time_point t) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t).count();
}

// Orders ipcache keys by their bytes (for sets of keys).
struct KeyLess {
  bool operator()(const bulkhead_ipcache_key& a, const bulkhead_ipcache_key& b) const {
    return std::memcmp(&a, &b, sizeof(a)) < 0;
  }
};

// Writes `content` to `path` so that a reader (or a restarted agent) sees the old file or the
// new one, never a part: a temporary file beside it, synced, renamed over it, and the
// directory synced so that the rename survives a crash.
absl::Status WriteFileAtomically(const fs::path& path, const std::string& content) {
  std::error_code ec;
  fs::create_directories(path.parent_path(), ec);
  const fs::path tmp = path.string() + ".tmp";
  int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) {
    return absl::UnavailableError(
        absl::StrCat("cannot write ", tmp.string(), ": ", strerror(errno)));
  }
  size_t off = 0;
  while (off < content.size()) {
    ssize_t n = write(fd, content.data() + off, content.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const int err = errno;
      close(fd);
      return absl::UnavailableError(
          absl::StrCat("cannot write ", tmp.string(), ": ", strerror(err)));
    }
    off += static_cast<size_t>(n);
  }
  if (fsync(fd) != 0) {
    const int err = errno;
    close(fd);
    return absl::UnavailableError(absl::StrCat("cannot sync ", tmp.string(), ": ", strerror(err)));
  }
  close(fd);
  fs::rename(tmp, path, ec);
  if (ec) {
    return absl::UnavailableError(absl::StrCat("cannot rename ", tmp.string(), ": ", ec.message()));
  }
  int dfd = open(path.parent_path().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    (void)fsync(dfd);
    close(dfd);
  }
  return absl::OkStatus();
}

constexpr const char* kSourceInventory = "inventory";
constexpr const char* kSourceCni = "cni";
// Source files of what server mode adds to the loaded objects: other nodes' endpoints, and
// the default deny of a namespace held until its objects arrive.
constexpr const char kPeerSource[] = "server peer ";
constexpr const char kHeldSource[] = "held namespace ";

bool IsPeer(const policy::Workload& w) { return w.source.file.rfind(kPeerSource, 0) == 0; }
bool IsHeld(const policy::Policy& p) { return p.source.file.rfind(kHeldSource, 0) == 0; }

// The name a server object's diagnostics carry, as the server names it ("Kind ns/name").
std::string ObjectSourceName(const agentlink::ObjectRef& ref) {
  return absl::StrCat("server: ", ref.kind, " ",
                      ref.namespace_name.empty() ? "" : ref.namespace_name + "/", ref.name);
}

nlohmann::json EndpointToJson(const agentlink::Endpoint& e) {
  nlohmann::json ports = nlohmann::json::array();
  for (const auto& p : e.named_ports) {
    ports.push_back({{"name", p.name}, {"port", p.port}, {"protocol", p.protocol}});
  }
  return {{"node", e.node},     {"namespace", e.namespace_name},       {"name", e.name},
          {"labels", e.labels}, {"serviceAccount", e.service_account}, {"ips", e.ips},
          {"namedPorts", ports}};
}

// The inverse; throws nlohmann::json::exception on a bad entry.
agentlink::Endpoint EndpointFromJson(const nlohmann::json& j) {
  agentlink::Endpoint e;
  e.node = j.at("node").get<std::string>();
  e.namespace_name = j.at("namespace").get<std::string>();
  e.name = j.at("name").get<std::string>();
  e.labels = j.at("labels").get<std::map<std::string, std::string>>();
  e.service_account = j.at("serviceAccount").get<std::string>();
  e.ips = j.at("ips").get<std::vector<std::string>>();
  for (const auto& p : j.at("namedPorts")) {
    e.named_ports.push_back({p.at("name").get<std::string>(), p.at("port").get<uint32_t>(),
                             p.at("protocol").get<std::string>()});
  }
  return e;
}

// The policy that holds namespace `ns` at deny (both directions) while its objects are on
// their way: cluster-wide policies still apply, the namespace's default becomes deny.
std::optional<policy::Policy> HeldPolicy(const std::string& ns) {
  const std::string text = absl::StrCat(
      "apiVersion: bulkhead.io/v1alpha1\nkind: DefaultDeny\nmetadata: {name: "
      "bulkhead-held-until-synced, namespace: \"",
      ns, "\"}\nspec: {policyTypes: [Ingress, Egress]}\n");
  policy::LoadResult r = policy::LoadString(text, absl::StrCat(kHeldSource, ns));
  if (!r.ok() || r.cluster.policies.size() != 1) return std::nullopt;
  return std::move(r.cluster.policies[0]);
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
  if (options_.server_mode) {
    if (server_input_ == nullptr) {
      return absl::UnavailableError("no policy from the server yet (waiting for its snapshot)");
    }
    uint64_t h = kFnvOffset;
    auto add = [&h](std::string_view part) {
      h = Fnv1a(h, part);
      h = Fnv1a(h, std::string_view("\0", 1));
    };
    for (const auto& [key, o] : server_input_->objects) {
      add(key);
      add(o.json);
    }
    add("peers");
    for (const auto& [key, e] : server_input_->peers) add(EndpointToJson(e).dump());
    add("synced");
    for (const auto& ns : server_input_->synced_namespaces) add(ns);
    if (!options_.inventory_file.empty()) {
      std::ifstream in(options_.inventory_file, std::ios::binary);
      if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", options_.inventory_file));
      std::stringstream ss;
      ss << in.rdbuf();
      add(options_.inventory_file);
      add(ss.str());
    }
    char buf[17];
    snprintf(buf, sizeof(buf), "%016llx", static_cast<unsigned long long>(h));
    return std::string(buf);
  }
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
  // Each file's bytes are hashed only when its metadata cannot tell that they are those
  // hashed before (policy::FileStamp): a change reads the changed file, not all of them.
  std::map<std::string, HashedFile> hashed;
  uint64_t h = kFnvOffset;
  for (const auto& f : files) {
    const std::string name = f.string();
    std::optional<policy::FileStamp> stamp = policy::StampFile(name);
    auto known = file_hashes_.find(name);
    HashedFile entry;
    if (stamp && known != file_hashes_.end() && known->second.stamp == *stamp &&
        policy::StampSettled(*stamp, known->second.read_at_ns)) {
      entry = known->second;
    } else {
      entry.read_at_ns = policy::RealtimeNs();
      std::ifstream in(f, std::ios::binary);
      if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", name));
      std::stringstream ss;
      ss << in.rdbuf();
      entry.hash = Fnv1a(kFnvOffset, ss.str());
      if (stamp) entry.stamp = *stamp;
    }
    char file_hash[17];
    snprintf(file_hash, sizeof(file_hash), "%016llx", static_cast<unsigned long long>(entry.hash));
    h = Fnv1a(h, name);
    h = Fnv1a(h, std::string_view("\0", 1));
    h = Fnv1a(h, file_hash);
    h = Fnv1a(h, std::string_view("\0", 1));
    // A file that could not be stamped is never taken as known (its read_at_ns is 0).
    if (!stamp) entry.read_at_ns = 0;
    hashed.emplace(name, entry);
  }
  file_hashes_ = std::move(hashed);  // files gone are forgotten
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
    if (j.contains("pins")) {
      try {
        PinsFromJson(j["pins"], &state_identity_pins_, &state_rule_pins_);
      } catch (const std::exception& e) {
        // Numbering afresh is safe, only not seamless (docs/agent.md, known limits).
        state_identity_pins_ = {};
        state_rule_pins_.clear();
        spdlog::warn("ignoring the identity numbers in {}/state.json: {}", options_.state_dir,
                     e.what());
      }
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
  if (compiler_ != nullptr) {
    j["pins"] = PinsToJson(engine::PinsOf(compiler_->compiled()),
                           engine::RulePinsOf(compiler_->compiled()));
  }
  return WriteFileAtomically(fs::path(options_.state_dir) / "state.json", j.dump(1) + "\n");
}

absl::Status Agent::LoadEndpoints() {
  if (options_.state_dir.empty()) return absl::OkStatus();
  const fs::path path = fs::path(options_.state_dir) / "endpoints.json";
  std::ifstream in(path);
  if (!in) return absl::OkStatus();  // none registered yet
  // Refusing to start beats dropping what it lists: the pods it names would lose enforcement.
  nlohmann::json j = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object() || !j.contains("endpoints") ||
      !j["endpoints"].is_array()) {
    return absl::DataLossError(absl::StrCat(
        path.string(), ": not an object with an \"endpoints\" list; fix or remove the file"));
  }
  std::map<std::string, EndpointRegistration> loaded;
  for (size_t i = 0; i < j["endpoints"].size(); ++i) {
    auto r = ParseRegistration(j["endpoints"][i], absl::StrCat("endpoints[", i, "]"));
    if (!r.ok())
      return absl::DataLossError(absl::StrCat(path.string(), ": ", r.status().message()));
    const std::string id = r->id;
    if (!loaded.emplace(id, *std::move(r)).second) {
      return absl::DataLossError(
          absl::StrCat(path.string(), ": endpoints[", i, "]: id ", id, " is listed twice"));
    }
  }
  registrations_ = std::move(loaded);
  if (!registrations_.empty()) {
    spdlog::info("{} registered endpoints from {}", registrations_.size(), path.string());
  }
  return absl::OkStatus();
}

absl::Status Agent::SaveEndpoints() const {
  if (options_.state_dir.empty()) return absl::OkStatus();
  nlohmann::json list = nlohmann::json::array();
  for (const auto& [id, r] : registrations_) list.push_back(r.ToJson());
  nlohmann::json j{{"endpoints", std::move(list)}};
  return WriteFileAtomically(fs::path(options_.state_dir) / "endpoints.json", j.dump(1) + "\n");
}

std::string Agent::CombinedHash(const std::string& files_hash) const {
  // Without registrations the files alone make the hash (and the revision), as before CNI.
  if (registrations_.empty()) return files_hash;
  uint64_t h = Fnv1a(kFnvOffset, files_hash);
  for (const auto& [id, r] : registrations_) {
    h = Fnv1a(h, std::string_view("\0", 1));
    h = Fnv1a(h, r.ToJson().dump());
  }
  char buf[17];
  snprintf(buf, sizeof(buf), "%016llx", static_cast<unsigned long long>(h));
  return std::string(buf);
}

namespace {

// Why registration `r` cannot sit beside the files' workloads and the other registrations
// (all but `r` itself): its workload name, an address or its host interface is taken.
std::string Collision(const policy::Cluster& files,
                      const std::map<std::string, EndpointRegistration>& registrations,
                      const EndpointRegistration& r) {
  const std::string workload = r.Workload();
  std::vector<policy::IpAddr> ips;
  for (const auto& text : r.ips) ips.push_back(*policy::IpAddr::Parse(text));
  for (const policy::Workload& w : files.workloads) {
    // Another node's endpoint that claims a local address is dropped (Compose), not a
    // reason to refuse a local one.
    if (IsPeer(w)) continue;
    const std::string where =
        absl::StrCat("the inventory's workload ", w.Id(), " (", w.source.ToString(), ")");
    if (w.Id() == workload) return absl::StrCat("workload ", workload, " is ", where);
    for (const auto& ip : ips) {
      if (std::find(w.ips.begin(), w.ips.end(), ip) != w.ips.end()) {
        return absl::StrCat("address ", ip.ToString(), " is used by ", where);
      }
    }
    if (!w.host_interface.empty() && w.host_interface == r.host_interface) {
      return absl::StrCat("hostInterface ", r.host_interface, " is used by ", where);
    }
  }
  for (const auto& [id, other] : registrations) {
    if (id == r.id) continue;
    const std::string where =
        absl::StrCat("registered endpoint ", id, " (workload ", other.Workload(), ")");
    if (other.Workload() == workload) return absl::StrCat("workload ", workload, " is ", where);
    for (const auto& ip : r.ips) {
      if (std::find(other.ips.begin(), other.ips.end(), ip) != other.ips.end()) {
        return absl::StrCat("address ", ip, " is used by ", where);
      }
    }
    if (other.host_interface == r.host_interface) {
      return absl::StrCat("hostInterface ", r.host_interface, " is used by ", where);
    }
  }
  return "";
}

}  // namespace

std::string Agent::Conflict(const EndpointRegistration& r) const {
  if (files_cluster_ == nullptr) return "";
  return Collision(*files_cluster_, registrations_, r);
}

absl::StatusOr<policy::Cluster> Agent::Compose(policy::Cluster files) const {
  policy::Cluster cluster = std::move(files);
  if (!options_.node.empty()) {
    for (policy::Workload& w : cluster.workloads) {
      // Server mode: only this node's inventory file describes local workloads; the server's
      // Inventories describe the cluster (a workload there without a node is nobody's).
      if (options_.server_mode && w.source.file != options_.inventory_file) continue;
      if (w.node.empty()) w.node = options_.node;
    }
  }
  for (const auto& [id, r] : registrations_) {
    // Registrations were checked against each other when added; the files may have changed
    // since.
    if (std::string c = Collision(cluster, {}, r); !c.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "registered endpoint ", id, " (workload ", r.Workload(), ") collides with the files: ", c,
          "; change the inventory or delete the endpoint"));
    }
  }
  for (const auto& [id, r] : registrations_) {
    if (cluster.FindNamespace(r.namespace_name) == nullptr) {
      // As Kubernetes does for every namespace: its name is a label.
      policy::Namespace ns;
      ns.name = r.namespace_name;
      ns.labels["kubernetes.io/metadata.name"] = r.namespace_name;
      ns.implicit = true;
      ns.source.file = absl::StrCat("endpoint ", id);
      cluster.namespaces.push_back(std::move(ns));
    }
    policy::Workload w;
    w.namespace_name = r.namespace_name;
    w.name = r.name;
    w.kind = "Pod";
    w.labels = policy::Labels(r.labels.begin(), r.labels.end());
    w.service_account = r.service_account;
    for (const auto& text : r.ips) w.ips.push_back(*policy::IpAddr::Parse(text));
    w.netns = r.netns;
    w.host_interface = r.host_interface;
    for (const auto& p : r.named_ports) w.named_ports.push_back({p.name, p.protocol, p.port});
    w.node = options_.node;
    w.source.file = absl::StrCat("endpoint ", id);
    cluster.workloads.push_back(std::move(w));
  }
  if (options_.server_mode) {
    // Peers that claim the name or an address of a local endpoint lose: the local one is
    // what this node enforces (the server may still list a pod that moved here).
    std::set<std::string> local_ids;
    std::set<policy::IpAddr> local_ips;
    for (const policy::Workload& w : cluster.workloads) {
      if (IsPeer(w) || w.node != options_.node) continue;
      local_ids.insert(w.Id());
      local_ips.insert(w.ips.begin(), w.ips.end());
    }
    std::erase_if(cluster.workloads, [&](const policy::Workload& w) {
      if (!IsPeer(w)) return false;
      bool clash = local_ids.count(w.Id()) > 0 ||
                   std::any_of(w.ips.begin(), w.ips.end(),
                               [&](const policy::IpAddr& ip) { return local_ips.count(ip) > 0; });
      if (clash) spdlog::warn("{} ({}) clashes with a local endpoint: ignored", w.Id(), w.node);
      return clash;
    });
    // Local endpoints in namespaces whose objects have not arrived: held at deny.
    std::set<std::string> held;
    for (const policy::Workload& w : cluster.workloads) {
      if (IsPeer(w) || w.node != options_.node) continue;
      if (server_input_ == nullptr || server_input_->synced_namespaces.count(w.namespace_name) == 0)
        held.insert(w.namespace_name);
    }
    for (const std::string& ns : held) {
      auto p = HeldPolicy(ns);
      if (!p) return absl::InternalError(absl::StrCat("cannot hold namespace ", ns, " at deny"));
      cluster.policies.push_back(*std::move(p));
    }
  }
  // Registered endpoints and peers take the modes set centrally for their names too.
  policy::ApplyWorkloadModes(cluster);
  return cluster;
}

policy::Cluster Agent::LastGoodFiles(std::vector<SharedPolicy>* policies) const {
  policy::Cluster files;
  files.namespaces = files_cluster_->namespaces;
  files.workloads = files_cluster_->workloads;
  files.nodes = files_cluster_->nodes;
  files.workload_modes = files_cluster_->workload_modes;
  policies->clear();
  if (compiler_ != nullptr) {
    // The compile's own objects: an update in place knows them unchanged by their address.
    for (SharedPolicy& p : compiler_->shared_policies()) {
      if (!IsHeld(*p)) policies->push_back(std::move(p));  // Compose decides those again
    }
  }
  return files;
}

absl::Status Agent::ApplyRegistrations() {
  if (files_cluster_ == nullptr) {
    return absl::UnavailableError(
        absl::StrCat("no valid policy input has been applied yet",
                     last_error_.empty() ? std::string() : absl::StrCat(" (", last_error_, ")")));
  }
  std::vector<SharedPolicy> policies;
  auto cluster = Compose(LastGoodFiles(&policies));
  if (!cluster.ok()) return cluster.status();
  absl::Status st =
      ApplyComposed(std::move(*cluster), std::move(policies), CombinedHash(files_hash_));
  // The files on disk may be invalid while the last good ones are applied with the new
  // registrations: status keeps saying so.
  if (last_error_.empty() && !input_error_.empty()) last_error_ = input_error_;
  return st;
}

void Agent::ForgetKernelEndpoint(const EndpointRegistration& r) {
  uint32_t ifindex = 0;
  for (const EndpointInfo& e : endpoints_) {
    if (e.workload == r.Workload()) ifindex = e.ifindex;
  }
  if (ifindex != 0) {
    // Detach first: an attached interface without config drops everything.
    if (absl::Status st = datapath_.Detach(ifindex); !st.ok()) {
      spdlog::warn("endpoint {}: cannot detach ifindex {}: {}", r.id, ifindex,
                   std::string(st.message()));
    }
    if (absl::Status st = datapath_.DeleteEndpoint(ifindex); !st.ok()) {
      spdlog::warn("endpoint {}: cannot delete ifindex {}: {}", r.id, ifindex,
                   std::string(st.message()));
    }
  }
  std::erase_if(endpoints_, [&](const EndpointInfo& e) { return e.workload == r.Workload(); });
}

absl::StatusOr<nlohmann::json> Agent::AddEndpoint(const EndpointRegistration& input) {
  auto valid = ValidateRegistration(input);
  if (!valid.ok()) return valid.status();
  const EndpointRegistration& r = *valid;
  if (auto it = registrations_.find(r.id); it != registrations_.end()) {
    if (it->second == r) return GetEndpoint(r.id);  // a retried ADD
    return absl::AlreadyExistsError(
        absl::StrCat("endpoint ", r.id, " is already registered with other content (workload ",
                     it->second.Workload(), ", ips ", absl::StrJoin(it->second.ips, ","),
                     ", hostInterface ", it->second.host_interface, "); delete it first"));
  }
  if (files_cluster_ == nullptr) return ApplyRegistrations();  // says why not
  if (std::string c = Conflict(r); !c.empty()) {
    return absl::AlreadyExistsError(
        absl::StrCat("endpoint ", r.id, " (workload ", r.Workload(), ") refused: ", c));
  }
  registrations_.emplace(r.id, r);
  const std::string before = applied_hash_;
  absl::Status st = ApplyRegistrations();
  const EndpointInfo* info = FindEndpoint(r.Workload());
  std::string why;
  if (info == nullptr) {
    why = st.ok() ? "the compile gave it no endpoint" : std::string(st.message());
  } else if (info->ifindex == 0 || !info->error.empty()) {
    why = info->error;
  }
  if (why.empty()) {
    if (absl::Status saved = SaveEndpoints(); !saved.ok()) why = std::string(saved.message());
  }
  if (!why.empty()) {
    registrations_.erase(r.id);
    // Take it out of the kernel again if the apply got that far.
    if (applied_hash_ != before) {
      if (absl::Status undo = ApplyRegistrations(); !undo.ok()) {
        spdlog::error("endpoint {}: cannot undo its apply: {}", r.id, std::string(undo.message()));
        ForgetKernelEndpoint(r);
      }
    }
    spdlog::warn("endpoint {} ({}) not registered: {}", r.id, r.Workload(), why);
    return absl::FailedPreconditionError(absl::StrCat("endpoint ", r.id, " (workload ",
                                                      r.Workload(), ") cannot be enforced: ", why));
  }
  spdlog::info("endpoint {} registered: {} on {} ({})", r.id, r.Workload(), r.host_interface,
               absl::StrJoin(r.ips, ","));
  return GetEndpoint(r.id);
}

absl::Status Agent::RemoveEndpoint(const std::string& id) {
  auto it = registrations_.find(id);
  if (it == registrations_.end()) return absl::OkStatus();  // CNI DEL is idempotent
  const EndpointRegistration r = it->second;
  registrations_.erase(it);
  if (absl::Status st = SaveEndpoints(); !st.ok()) {
    // Still listed on disk: a restarted agent would enforce it again. Keep it and say so.
    registrations_.emplace(id, r);
    return st;
  }
  absl::Status st = ApplyRegistrations();
  if (FindEndpoint(r.Workload()) != nullptr) {
    // The apply did not run (or did not get to the switch): the pod is gone either way, so
    // its kernel entry goes directly; its ipcache entries go with the next apply.
    spdlog::warn("endpoint {}: apply failed ({}); removing its kernel entry directly", id,
                 std::string(st.message()));
    ForgetKernelEndpoint(r);
  }
  spdlog::info("endpoint {} ({}) removed", id, r.Workload());
  return absl::OkStatus();
}

absl::StatusOr<nlohmann::json> Agent::GetEndpoint(const std::string& id) {
  auto it = registrations_.find(id);
  if (it == registrations_.end()) {
    return absl::NotFoundError(absl::StrCat("endpoint ", id, " is not registered"));
  }
  const EndpointRegistration& r = it->second;
  nlohmann::json j;
  j["id"] = id;
  j["workload"] = r.Workload();
  j["source"] = kSourceCni;
  j["endpoint"] = r.ToJson();
  std::string why;
  const EndpointInfo* info = FindEndpoint(r.Workload());
  if (info == nullptr) {
    why = last_error_.empty() ? "not applied" : absl::StrCat("not applied: ", last_error_);
  } else {
    j["ifindex"] = info->ifindex;
    j["identity"] = info->identity;
    j["table"] = info->table_id;
    j["generation"] = info->generation;
    j["mode"] = policy::ModeName(info->mode);
    if (info->ifindex == 0 || !info->error.empty()) why = info->error;
  }
  if (why.empty()) {
    // What the kernel holds, not what the agent meant to write.
    auto now = resolver_(r.host_interface);
    auto eps = datapath_.ListEndpoints();
    auto attached = datapath_.ListAttached();
    if (!now.ok()) {
      why = std::string(now.status().message());
    } else if (*now != info->ifindex) {
      why = absl::StrCat("hostInterface ", r.host_interface, " is now ifindex ", *now,
                         ", enforced ifindex ", info->ifindex);
    } else if (!eps.ok() || !attached.ok()) {
      why = std::string((!eps.ok() ? eps.status() : attached.status()).message());
    } else {
      auto e = std::find_if(eps->begin(), eps->end(), [&](const datapath::Endpoint& x) {
        return x.ifindex == info->ifindex;
      });
      if (e == eps->end()) {
        why = "no endpoint config in the kernel";
      } else if (e->policy_table_id != info->table_id || e->identity != info->identity ||
                 e->policy_generation != info->generation) {
        why = absl::StrCat("the kernel holds identity ", e->identity, " table ", e->policy_table_id,
                           " generation ", e->policy_generation);
      } else if (std::find(attached->begin(), attached->end(), info->ifindex) == attached->end()) {
        why = "programs not attached";
      }
    }
  }
  j["enforced"] = why.empty();
  j["error"] = why;
  return j;
}

absl::Status Agent::Start() {
  LoadState();
  if (absl::Status st = LoadEndpoints(); !st.ok()) return st;
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
  if (options_.server_mode) {
    // Never an empty policy: without the server's input (none persisted) nothing is applied
    // and the kernel keeps what a previous agent left until the first snapshot.
    LoadServerState();
    if (server_input_ == nullptr) {
      spdlog::info("no persisted server policy in {}: waiting for the server's snapshot",
                   options_.state_dir);
      last_error_ = "waiting for the server's first policy snapshot";
      return absl::OkStatus();
    }
    const int64_t revision = server_input_->revision;
    // In force even when an endpoint waits for its interface (Reload's error then).
    (void)Reload(/*force=*/true);
    auto hash = HashInputs();
    if (hash.ok() && applied_hash_ == CombinedHash(*hash)) {
      enforced_server_revision_ = revision;
      spdlog::info("enforcing server revision {} from {}/server-state.json", revision,
                   options_.state_dir);
    }
    return absl::OkStatus();
  }
  (void)Reload(/*force=*/true);
  return absl::OkStatus();
}

absl::Status Agent::Reload(bool force) {
  auto hash = HashInputs();
  if (!hash.ok()) {
    last_error_ = std::string(hash.status().message());
    input_error_ = last_error_;
    ++applies_failed_;
    spdlog::error("policy not applied (last good stays in force): {}", last_error_);
    return hash.status();
  }
  const std::string combined = CombinedHash(*hash);
  if (!force && combined == applied_hash_ && !rebuild_next_) {
    // The files are back to what is applied: an error about other content is history.
    if (!input_error_.empty()) {
      if (last_error_ == input_error_) last_error_.clear();
      input_error_.clear();
    }
    if (!needs_retry_) return absl::OkStatus();
    // Re-apply only when a pending endpoint can now make progress: every apply bumps the
    // generation, which makes the datapath re-check every open flow.
    bool progress = false;
    for (const auto& e : endpoints_) {
      if (!e.error.empty() && (e.ifindex != 0 || resolver_(e.host_interface).ok())) progress = true;
    }
    if (!progress) return absl::OkStatus();
  }

  // Unchanged files are not parsed again (a registration changed, or a retry). The files'
  // policies are shared objects: those of unchanged files are the ones the compile holds.
  policy::LoadResult loaded;
  std::vector<SharedPolicy> policies;
  const bool reuse = files_cluster_ != nullptr && *hash == files_hash_;
  last_load_ms_ = 0;
  if (!reuse) {
    const auto load_start = Clock::now();
    if (options_.server_mode) {
      loaded = LoadServerInput();
    } else {
      policy::SharedLoadResult shared =
          policy::LoadPathsShared({options_.policies_dir, options_.inventory_file}, &load_cache_);
      loaded = std::move(shared.result);
      policies = std::move(shared.policies);
    }
    last_load_ms_ = MsSince(load_start);
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
      input_error_ = last_error_;
      ++applies_failed_;
      for (const auto& e : errors) spdlog::error("invalid policy input: {}", e);
      spdlog::error("policy not applied; revision {} stays in force", revision());
      needs_retry_ = false;
      return absl::InvalidArgumentError(last_error_);
    }
  }
  // The files without their policies become the last good files once applied (the policies
  // live on in the compile).
  std::unique_ptr<policy::Cluster> files_now;
  if (!reuse) {
    files_now = std::make_unique<policy::Cluster>();
    files_now->namespaces = loaded.cluster.namespaces;
    files_now->workloads = loaded.cluster.workloads;
    files_now->nodes = loaded.cluster.nodes;
    files_now->workload_modes = loaded.cluster.workload_modes;
  }
  auto cluster = Compose(reuse ? LastGoodFiles(&policies) : std::move(loaded.cluster));
  if (!cluster.ok()) {
    last_error_ = std::string(cluster.status().message());
    input_error_ = last_error_;
    ++applies_failed_;
    spdlog::error("policy not applied; revision {} stays in force: {}", revision(), last_error_);
    needs_retry_ = false;
    return cluster.status();
  }
  absl::Status st = ApplyComposed(std::move(*cluster), std::move(policies), combined);
  if (applied_hash_ == combined) {
    // Applied (an endpoint may still have failed its switch: Apply's error names it).
    input_error_.clear();
    if (!reuse) {
      files_cluster_ = std::move(files_now);
      files_hash_ = *hash;
    }
  }
  if (!st.ok()) {
    last_error_ = std::string(st.message());
    ++applies_failed_;
    spdlog::error("policy not applied: {}", last_error_);
  }
  return st;
}

absl::Status Agent::ApplyComposed(policy::Cluster composed, std::vector<SharedPolicy> policies,
                                  const std::string& hash) {
  // The policies Compose added (held namespaces) and those of a loader that does not share
  // its policies (server mode) come after the files' shared ones, in their order.
  for (policy::Policy& p : composed.policies) {
    policies.push_back(std::make_shared<const policy::Policy>(std::move(p)));
  }
  composed.policies.clear();
  // Only policies changed: update the compile in force in place (only the tables whose
  // policies changed are computed and written; identities, rule ids and the ipcache stay).
  if (compiler_ != nullptr && !rebuild_next_ &&
      composed.namespaces == compiler_->cluster().namespaces &&
      composed.workloads == compiler_->cluster().workloads &&
      composed.nodes == compiler_->cluster().nodes) {
    const auto apply_start = Clock::now();
    const uint32_t base = next_table_base_;
    auto update = compiler_->UpdatePolicies(policies, base);
    if (!update.ok()) return update.status();
    if (update->incremental) {
      const engine::CompiledPolicy& compiled = compiler_->compiled();
      ApplyTimes times;
      times.incremental = true;
      times.load = last_load_ms_;
      times.compile = MsSince(apply_start);
      const auto kernel_start = Clock::now();
      std::vector<EndpointInfo> desired;
      absl::Status first_error;
      if (absl::Status st =
              WriteKernel(compiled, compiler_->cluster(), update->tables_written, &compiled,
                          /*ipcache_unchanged=*/true, &desired, &first_error);
          !st.ok()) {
        // The kernel still enforces the compile before the update: rewrite all next time.
        rebuild_next_ = true;
        return st;
      }
      times.tables_written = update->tables_written.size();
      times.tables_kept = compiled.tables.size() - update->tables_written.size();
      times.endpoints_switched = last_switched_;
      times.kernel = MsSince(kernel_start);
      last_apply_ = times;
      FinishApply(compiled, base, std::move(desired), hash, update->rule_table_changed,
                  update->rule_ids_changed, first_error);
      // The load's assembled input was freed: give it back to the system.
      malloc_trim(0);
      last_apply_.total = last_load_ms_ + MsSince(apply_start);
      LogApply();
      return first_error;
    }
    spdlog::info("full compile: {}", update->why);
  }
  return Apply(std::move(composed), std::move(policies), hash);
}

absl::Status Agent::Apply(policy::Cluster composed, std::vector<SharedPolicy> policies,
                          const std::string& hash) {
  for (policy::Policy& p : composed.policies) {
    policies.push_back(std::make_shared<const policy::Policy>(std::move(p)));
  }
  composed.policies.clear();
  const auto apply_start = Clock::now();
  engine::CompilerOptions copts;
  copts.table_id_base = next_table_base_;
  copts.node = options_.node;
  // Numbers and tables carried over from the compile in force: an identity or rule number
  // keeps its meaning, and a table whose entries did not change keeps its id, so it is
  // neither written again nor switched to. After a failed in-place update the kernel does
  // not hold that compile's new tables: none is reused then.
  const engine::CompiledPolicy* prev = compiler_ != nullptr ? &compiler_->compiled() : nullptr;
  if (prev != nullptr) {
    copts.pinned_identities = engine::PinsOf(*prev);
    copts.pinned_rules = engine::RulePinsOf(*prev);
    if (!rebuild_next_) copts.reuse_tables_of = prev;
  }
  // A restarted agent: the numbers its predecessor left in the kernel (state.json). Should
  // they not fit this input, number afresh (safe, only not seamless).
  std::optional<policy::Cluster> spare;
  if (prev == nullptr && (!state_identity_pins_.empty() || !state_rule_pins_.empty())) {
    copts.pinned_identities = state_identity_pins_;
    copts.pinned_rules = state_rule_pins_;
    spare = composed;
  }
  const std::vector<SharedPolicy> spare_policies = policies;  // the objects, not copies
  // The cluster's numbers win over this node's own (SetClusterIdentities).
  auto pin_cluster = [this](engine::PinnedIdentities& pins) {
    for (const auto& [key, id] : cluster_pins_) {
      std::erase_if(pins.workloads, [&, id = id](const auto& kv) { return kv.second == id; });
      pins.workloads[key] = id;
    }
  };
  if (!cluster_pins_.empty()) {
    pin_cluster(copts.pinned_identities);
    if (!spare) spare = composed;
  }
  auto compiler = engine::PolicyCompiler::Create(std::move(composed), std::move(policies), copts);
  if (!compiler.ok() && spare) {
    spdlog::warn("identity and rule numbers from state.json not used: {}",
                 std::string(compiler.status().message()));
    copts.pinned_identities = {};
    copts.pinned_rules.clear();
    pin_cluster(copts.pinned_identities);
    compiler = engine::PolicyCompiler::Create(std::move(*spare), spare_policies, copts);
  }
  if (!compiler.ok()) return compiler.status();
  const policy::Cluster& cluster = (*compiler)->cluster();
  const engine::CompiledPolicy& compiled = (*compiler)->compiled();
  ApplyTimes times;
  times.load = last_load_ms_;
  times.compile = MsSince(apply_start);
  const auto kernel_start = Clock::now();

  std::vector<uint32_t> fresh_tables;
  for (const auto& t : compiled.tables) {
    if (t.table_id >= copts.table_id_base) fresh_tables.push_back(t.table_id);
  }
  std::vector<EndpointInfo> desired;
  absl::Status first_error;
  if (absl::Status st = WriteKernel(compiled, cluster, fresh_tables, rebuild_next_ ? nullptr : prev,
                                    /*ipcache_unchanged=*/false, &desired, &first_error);
      !st.ok()) {
    return st;
  }
  times.tables_written = fresh_tables.size();
  times.tables_kept = compiled.tables.size() - fresh_tables.size();
  times.endpoints_switched = last_switched_;
  times.kernel = MsSince(kernel_start);
  last_apply_ = times;
  // Numbers change in a full compile unless every pin held; state.json is rewritten.
  bool numbers_changed = prev == nullptr || engine::RulePinsOf(compiled) != copts.pinned_rules;
  if (!numbers_changed) {
    const engine::PinnedIdentities pins = engine::PinsOf(compiled);
    numbers_changed = pins.workloads != copts.pinned_identities.workloads ||
                      pins.cidrs != copts.pinned_identities.cidrs;
  }
  compiler_ = std::move(*compiler);
  rebuild_next_ = false;
  FinishApply(compiler_->compiled(), copts.table_id_base, std::move(desired), hash,
              /*rules_changed=*/true, numbers_changed, first_error);
  // An apply briefly holds two compiles; give what it freed back to the system.
  malloc_trim(0);
  last_apply_.total = last_load_ms_ + MsSince(apply_start);
  LogApply();
  return first_error;
}

void Agent::LogApply() const {
  const ApplyTimes& t = last_apply_;
  spdlog::info(
      "applied revision {} in {:.1f} ms (load {:.1f}, compile {:.1f}, kernel {:.1f}; {}): {} "
      "endpoints ({} switched), {} tables ({} written, {} kept), {} ipcache entries written, "
      "generation {}",
      revision(), t.total, t.load, t.compile, t.kernel, t.incremental ? "policy update" : "full",
      endpoints_.size(), t.endpoints_switched, live_tables_.size(), t.tables_written, t.tables_kept,
      t.ipcache_written, generation_);
}

absl::Status Agent::WriteKernel(const engine::CompiledPolicy& compiled,
                                const policy::Cluster& cluster,
                                const std::vector<uint32_t>& fresh_tables,
                                const engine::CompiledPolicy* prev, bool ipcache_unchanged,
                                std::vector<EndpointInfo>* desired_out, absl::Status* first_error) {
  last_switched_ = 0;
  last_ipcache_written_ = 0;
  // Which workloads get an endpoint here: those the inventory gives a host interface.
  std::vector<EndpointInfo>& desired = *desired_out;
  bool missing = false;
  for (const auto& [id, binding] : compiled.endpoints) {
    const policy::Workload* w = cluster.FindWorkload(id);
    if (w == nullptr || w->host_interface.empty()) continue;
    EndpointInfo info;
    info.workload = id;
    info.source = kSourceInventory;
    for (const auto& [reg_id, r] : registrations_) {
      if (r.namespace_name == w->namespace_name && r.name == w->name) {
        info.source = kSourceCni;
        info.id = reg_id;
      }
    }
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

  // 1. New tables beside the old ones (fresh ids: nothing points at them yet), only their
  // entries. The other tables in force are kept: already in the kernel.
  datapath::PolicyTables tables;
  for (uint32_t t : fresh_tables) {
    compiled.maps.peers.AppendTableEntries(t, &tables.peers);
    compiled.maps.ports.AppendTableEntries(t, &tables.ports);
  }
  std::vector<uint32_t> new_tables;
  for (const auto& t : compiled.tables) new_tables.push_back(t.table_id);
  if (absl::Status st = datapath_.WritePolicyTables(tables); !st.ok()) {
    (void)datapath_.DeletePolicyTables(fresh_tables);
    return st;
  }
  // 2. The ipcache: new and changed entries (stale ones go after the switch).
  std::vector<bulkhead_ipcache_key> stale;
  bool addresses_moved = false;
  if (!ipcache_unchanged) {
    auto ipcache = compiled.maps.ipcache.Entries();
    std::vector<std::pair<bulkhead_ipcache_key, bulkhead_ipcache_value>> ipcache_changes;
    for (const auto& e : ipcache) {
      const bulkhead_ipcache_value* old =
          prev != nullptr ? prev->maps.ipcache.Find(e.first) : nullptr;
      if (old == nullptr || old->identity != e.second.identity || old->flags != e.second.flags) {
        ipcache_changes.push_back(e);
      }
    }
    if (absl::Status st = datapath_.UpsertIpcache(ipcache_changes); !st.ok()) {
      (void)datapath_.DeletePolicyTables(fresh_tables);
      return st;
    }
    last_ipcache_written_ = ipcache_changes.size();
    std::set<bulkhead_ipcache_key, KeyLess> wanted_keys;
    for (const auto& e : ipcache) wanted_keys.insert(e.first);
    for (const auto& k : live_ipcache_) {
      if (wanted_keys.count(k) == 0) stale.push_back(k);
    }
    // When an address may now belong to another identity, every endpoint's open flows are
    // re-checked; otherwise only those of endpoints whose table or config changed.
    addresses_moved = prev == nullptr || !ipcache_changes.empty() || !stale.empty();
    live_ipcache_.clear();
    for (const auto& e : ipcache) live_ipcache_.push_back(e.first);
  }
  std::map<std::string, const EndpointInfo*> before;
  for (const auto& e : endpoints_) before[e.workload] = &e;
  auto unchanged = [&](const EndpointInfo& info) {
    auto it = before.find(info.workload);
    if (it == before.end()) return false;
    const EndpointInfo& b = *it->second;
    return b.error.empty() && b.ifindex == info.ifindex && b.identity == info.identity &&
           b.table_id == info.table_id && b.mode == info.mode && b.ips == info.ips;
  };
  auto attached = [&](const EndpointInfo& info) {
    auto it = before.find(info.workload);
    return it != before.end() && it->second->error.empty() && it->second->ifindex == info.ifindex;
  };
  // 3. Switch the endpoints that changed: config (identity, table, generation, mode) in one
  // map write, before the filters are attached, so an interface never runs without config.
  bool switching = false;
  for (const auto& info : desired) {
    if (info.ifindex != 0 && (addresses_moved || !unchanged(info))) switching = true;
  }
  if (switching) ++generation_;
  std::set<uint32_t> keep;
  for (auto& info : desired) {
    if (info.ifindex == 0) continue;
    if (!addresses_moved && unchanged(info)) {
      info.generation = before.at(info.workload)->generation;
      keep.insert(info.ifindex);
      continue;
    }
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
    // Filters already attached by this agent stay; new interfaces get them.
    if (st.ok() && !attached(info)) st = datapath_.Attach(info.ifindex);
    if (!st.ok()) {
      info.error = std::string(st.message());
      missing = true;
      if (first_error->ok()) *first_error = st;
      continue;
    }
    info.generation = generation_;
    keep.insert(info.ifindex);
    ++last_switched_;
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
  if (!stale.empty()) {
    if (absl::Status st = datapath_.DeleteIpcache(stale); !st.ok()) {
      spdlog::warn("cannot delete stale ipcache entries: {}", std::string(st.message()));
    }
  }
  std::vector<uint32_t> old_tables;
  if (auto listed = datapath_.ListPolicyTables(); listed.ok()) {
    for (uint32_t t : *listed) {
      if (!std::binary_search(new_tables.begin(), new_tables.end(), t)) old_tables.push_back(t);
    }
  }
  if (!old_tables.empty()) {
    if (absl::Status st = datapath_.DeletePolicyTables(old_tables); !st.ok()) {
      // Still used by an endpoint whose switch failed: retried on the next apply.
      spdlog::warn("old policy tables kept: {}", std::string(st.message()));
    }
  }
  live_tables_ = std::move(new_tables);
  next_table_base_ = std::max(next_table_base_, compiled.NextTableIdBase());
  needs_retry_ = missing;
  return absl::OkStatus();
}

void Agent::FinishApply(const engine::CompiledPolicy& compiled, uint32_t table_id_base,
                        std::vector<EndpointInfo> desired, const std::string& hash,
                        bool rules_changed, bool numbers_changed, const absl::Status& first_error) {
  RuleTable rt;
  rt.table_id_base = table_id_base;
  rt.table_id_end = compiled.NextTableIdBase();
  // Rule ids are pinned across compiles: an unchanged rule table is shared, not copied.
  if (rules_changed || rule_tables_.empty()) {
    rt.rules = std::make_shared<const std::vector<engine::CompiledRule>>(compiled.rules);
  } else {
    rt.rules = rule_tables_.back().rules;
  }
  if (numbers_changed || rule_tables_.empty()) {
    rt.identities =
        std::make_shared<const std::vector<engine::CompiledIdentity>>(compiled.identities);
  } else {
    rt.identities = rule_tables_.back().identities;
  }
  rule_tables_.push_back(std::move(rt));
  // Rule ids are pinned across compiles, so the newest rule table names the tables in force;
  // one older one names events still in flight from tables just retired.
  if (rule_tables_.size() > 2) rule_tables_.erase(rule_tables_.begin());

  endpoints_ = std::move(desired);
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
  last_apply_.ipcache_written = last_ipcache_written_;
  // state.json holds the numbers a restarted agent pins: rewritten when they change (not on a
  // policy update that kept every rule id), atomically.
  if (numbers_changed) {
    if (absl::Status st = SaveState(); !st.ok()) spdlog::warn("{}", std::string(st.message()));
  }
}

const RuleTable* Agent::RulesForTable(uint32_t table_id) const {
  // A table in force was written or kept by the last compile, whose rule ids are pinned
  // across compiles: its rule table names them (and has any rule renamed since).
  if (!rule_tables_.empty() &&
      std::binary_search(live_tables_.begin(), live_tables_.end(), table_id)) {
    return &rule_tables_.back();
  }
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
    for (const auto& id : *rt->identities) {
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
  j["node"] = options_.node;
  j["registered_endpoints"] = registrations_.size();
  if (options_.server_mode) {
    nlohmann::json server = server_status_.is_object() ? server_status_ : nlohmann::json::object();
    server["enforced_revision"] = enforced_server_revision_;
    server["received_revision"] = server_input_ != nullptr ? server_input_->revision : 0;
    server["held_namespaces"] = held_namespaces();
    server["peers"] = server_input_ != nullptr ? server_input_->peers.size() : 0;
    j["server"] = std::move(server);
  }
  return j;
}

nlohmann::json Agent::EndpointsJson() const {
  nlohmann::json arr = nlohmann::json::array();
  for (const auto& e : endpoints_) {
    nlohmann::json j;
    j["workload"] = e.workload;
    j["source"] = e.source;
    j["id"] = e.id;
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

// --- Server mode -----------------------------------------------------------------------------

policy::LoadResult Agent::LoadServerInput() {
  std::vector<policy::Source> sources;
  sources.reserve(server_input_->objects.size() + 1);
  for (const auto& [key, o] : server_input_->objects) {
    sources.push_back({ObjectSourceName(o.ref), o.json});
  }
  policy::LoadResult result;
  auto fail = [&result](const std::string& file, const std::string& object,
                        const std::string& message) {
    policy::Diagnostic d;
    d.where.file = file;
    d.object = object;
    d.message = message;
    result.diagnostics.push_back(std::move(d));
    return std::move(result);
  };
  if (!options_.inventory_file.empty()) {
    std::ifstream in(options_.inventory_file, std::ios::binary);
    if (!in) return fail(options_.inventory_file, "", "cannot read the inventory file");
    std::stringstream ss;
    ss << in.rdbuf();
    sources.push_back({options_.inventory_file, ss.str()});
  }
  result = policy::LoadSources(sources, &load_cache_);
  if (!result.ok()) return result;
  for (const policy::Policy& p : result.cluster.policies) {
    if (!options_.inventory_file.empty() && p.source.file == options_.inventory_file) {
      return fail(options_.inventory_file, p.Id(),
                  "policies come from the server in server mode (bulkhead apply); the "
                  "inventory may only list namespaces, workloads and nodes");
    }
  }
  // Other nodes' endpoints: workloads of their nodes, so that the ipcache maps their
  // addresses to their identities. Their namespace's labels come from the Namespace objects
  // (cluster-scoped: every agent has them), else the implicit name label.
  std::set<std::string> ids;
  for (const policy::Workload& w : result.cluster.workloads) ids.insert(w.Id());
  for (const auto& [key, e] : server_input_->peers) {
    if (e.node == options_.node) continue;  // the server never sends our own back
    policy::Workload w;
    w.namespace_name = e.namespace_name;
    w.name = e.name;
    w.kind = "Pod";
    w.labels = policy::Labels(e.labels.begin(), e.labels.end());
    w.service_account = e.service_account.empty() ? "default" : e.service_account;
    w.node = e.node;
    w.source.file = absl::StrCat(kPeerSource, key);
    bool valid = true;
    for (const std::string& text : e.ips) {
      auto ip = policy::IpAddr::Parse(text);
      if (!ip) valid = false;
      if (ip) w.ips.push_back(*ip);
    }
    for (const auto& p : e.named_ports) {
      auto proto = policy::ParseProtocol(p.protocol);
      if (!proto || p.port == 0 || p.port > 65535) valid = false;
      if (proto) w.named_ports.push_back({p.name, *proto, static_cast<uint16_t>(p.port)});
    }
    if (!valid) {
      spdlog::warn("peer endpoint {}: invalid address or named port, ignored", key);
      continue;
    }
    if (!ids.insert(w.Id()).second) {
      spdlog::warn("peer endpoint {}: workload {} is already known, ignored", key, w.Id());
      continue;
    }
    if (result.cluster.FindNamespace(w.namespace_name) == nullptr) {
      policy::Namespace ns;
      ns.name = w.namespace_name;
      ns.labels["kubernetes.io/metadata.name"] = w.namespace_name;
      ns.implicit = true;
      ns.source.file = w.source.file;
      result.cluster.namespaces.push_back(std::move(ns));
    }
    result.cluster.workloads.push_back(std::move(w));
  }
  return result;
}

absl::Status Agent::SetServerInput(ServerInput input) {
  if (!options_.server_mode) {
    return absl::FailedPreconditionError("the agent is not in server mode");
  }
  const int64_t revision = input.revision;
  server_input_ = std::make_unique<ServerInput>(std::move(input));
  absl::Status st = Reload();
  auto hash = HashInputs();
  if (!hash.ok()) return hash.status();
  if (applied_hash_ != CombinedHash(*hash)) {
    return st.ok() ? absl::InternalError("the server's policy was not applied") : st;
  }
  if (!st.ok()) {
    // In force; an endpoint could not be switched yet (its interface): retried by the loop.
    spdlog::warn("server revision {} in force; an endpoint is pending: {}", revision,
                 std::string(st.message()));
  }
  enforced_server_revision_ = revision;
  if (absl::Status saved = SaveServerState(); !saved.ok()) {
    spdlog::warn("server policy not persisted: {}", std::string(saved.message()));
  }
  return absl::OkStatus();
}

absl::Status Agent::SaveServerState() const {
  if (options_.state_dir.empty() || server_input_ == nullptr) return absl::OkStatus();
  nlohmann::json objects = nlohmann::json::array();
  for (const auto& [key, o] : server_input_->objects) {
    objects.push_back({{"group", o.ref.group},
                       {"kind", o.ref.kind},
                       {"namespace", o.ref.namespace_name},
                       {"name", o.ref.name},
                       {"apiVersion", o.api_version},
                       {"json", o.json}});
  }
  nlohmann::json peers = nlohmann::json::array();
  for (const auto& [key, e] : server_input_->peers) peers.push_back(EndpointToJson(e));
  nlohmann::json j{{"revision", server_input_->revision},
                   {"objects", std::move(objects)},
                   {"peers", std::move(peers)},
                   {"syncedNamespaces", server_input_->synced_namespaces}};
  return WriteFileAtomically(fs::path(options_.state_dir) / "server-state.json", j.dump() + "\n");
}

void Agent::LoadServerState() {
  if (options_.state_dir.empty()) return;
  const fs::path path = fs::path(options_.state_dir) / "server-state.json";
  std::ifstream in(path);
  if (!in) return;
  try {
    nlohmann::json j = nlohmann::json::parse(in);
    auto input = std::make_unique<ServerInput>();
    input->revision = j.at("revision").get<int64_t>();
    for (const auto& o : j.at("objects")) {
      agentlink::PolicyObject po;
      po.ref = {o.at("group").get<std::string>(), o.at("kind").get<std::string>(),
                o.at("namespace").get<std::string>(), o.at("name").get<std::string>()};
      po.api_version = o.at("apiVersion").get<std::string>();
      po.json = o.at("json").get<std::string>();
      input->objects[po.ref.Key()] = std::move(po);
    }
    for (const auto& p : j.at("peers")) {
      agentlink::Endpoint e = EndpointFromJson(p);
      input->peers[e.Key()] = std::move(e);
    }
    input->synced_namespaces = j.at("syncedNamespaces").get<std::set<std::string>>();
    server_input_ = std::move(input);
  } catch (const nlohmann::json::exception& e) {
    // The server's next snapshot replaces it; until then nothing new is applied.
    spdlog::warn("ignoring unreadable {}: {}", path.string(), e.what());
  }
}

std::set<std::string> Agent::held_namespaces() const {
  std::set<std::string> out;
  if (compiler_ == nullptr) return out;
  for (const policy::Policy* p : compiler_->policies()) {
    if (IsHeld(*p)) out.insert(p->namespace_name);
  }
  return out;
}

std::vector<agentlink::Endpoint> Agent::LocalEndpoints() const {
  std::vector<agentlink::Endpoint> out;
  if (compiler_ == nullptr) return out;
  for (const policy::Workload& w : compiler_->cluster().workloads) {
    if (IsPeer(w) || w.node != options_.node) continue;
    agentlink::Endpoint e;
    e.namespace_name = w.namespace_name;
    e.name = w.name;
    e.labels = std::map<std::string, std::string>(w.labels.begin(), w.labels.end());
    e.service_account = w.service_account;
    for (const auto& ip : w.ips) e.ips.push_back(ip.ToString());
    for (const auto& p : w.named_ports) {
      e.named_ports.push_back({p.name, p.port, policy::ProtocolName(p.protocol)});
    }
    out.push_back(std::move(e));
  }
  return out;
}

std::set<std::string> Agent::IdentityKeys() const {
  std::set<std::string> out;
  if (compiler_ == nullptr) return out;
  for (const auto& [key, id] : engine::PinsOf(compiler_->compiled()).workloads) {
    out.insert(key.ToString());
  }
  return out;
}

absl::Status Agent::SetClusterIdentities(const std::map<std::string, uint32_t>& pins) {
  if (compiler_ == nullptr) return absl::OkStatus();  // the next compile asks again
  std::map<identity::IdentityKey, identity::NumericIdentity> wanted;
  bool differs = false;
  for (const auto& [key, id] : engine::PinsOf(compiler_->compiled()).workloads) {
    auto it = pins.find(key.ToString());
    if (it == pins.end()) continue;
    wanted[key] = it->second;
    if (it->second != id) differs = true;
  }
  cluster_pins_ = std::move(wanted);
  if (!differs || files_cluster_ == nullptr) return absl::OkStatus();
  spdlog::info("renumbering identities to the cluster's numbers");
  std::vector<SharedPolicy> policies;
  auto cluster = Compose(LastGoodFiles(&policies));
  if (!cluster.ok()) return cluster.status();
  // A full compile: an in-place update keeps the numbers it has.
  absl::Status st = Apply(std::move(*cluster), std::move(policies), CombinedHash(files_hash_));
  if (last_error_.empty() && !input_error_.empty()) last_error_ = input_error_;
  return st;
}

}  // namespace bulkhead::agent
