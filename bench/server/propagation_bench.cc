// Propagation benchmark (issue #4): a real `bulkhead server` process and N simulated agents in
// this process, each the real agent client library (src/agentlink SyncClient: joined with a
// join token, its own certificate, its own mutual-TLS gRPC stream) with no datapath. For 1, 20
// and 200 agents: one-policy changes through the REST API, timed from the apply to the moment
// every agent's on_policy has the revision (the simulated agent "enforces" there and acks),
// and to the moment the server's agents list shows every ack. Baseline of the same run: the
// same applies with no agent connected. Then the server's memory per 10,000 endpoints.
//
//   propagation_bench --bulkhead build/src/cli/bulkhead [--agents 200] [--changes 60]
//                     [--endpoints 50] [--no-memory] [--smoke]
#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "agentlink/agentlink.h"
#include "server/server.h"
#include "server_process.h"

namespace {

using bulkhead::bench::CpuSeconds;
using bulkhead::bench::Percentile;
using bulkhead::bench::RssKiB;
using bulkhead::bench::SelfCpuSeconds;
using bulkhead::bench::ServerProcess;
using bulkhead::server::ApiClient;
using nlohmann::json;
using Clock = std::chrono::steady_clock;
namespace agentlink = bulkhead::agentlink;

constexpr int kNamespaces = 5;  // every agent has an endpoint in each: every change reaches all
constexpr int kPolicies = 10;   // the changes cycle over these (an update of one object each)
constexpr auto kPatience = std::chrono::seconds(120);

double Ms(Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

std::string Np(int policy, int port) {
  return "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p" +
         std::to_string(policy) + ", namespace: ns" + std::to_string(policy % kNamespaces) +
         "}\nspec:\n  podSelector: {matchLabels: {app: a" + std::to_string(policy) +
         "}}\n  ingress:\n  - from: [{podSelector: {matchLabels: {tier: web}}}]\n    ports: "
         "[{port: " +
         std::to_string(port) + ", protocol: TCP}]\n";
}

// Agent `agent`'s endpoints: `count` of them, spread over the namespaces.
std::vector<agentlink::Endpoint> Endpoints(int agent, int count) {
  std::vector<agentlink::Endpoint> out;
  for (int j = 0; j < count; ++j) {
    agentlink::Endpoint e;
    e.namespace_name = "ns" + std::to_string(j % kNamespaces);
    e.name = "ep" + std::to_string(j);
    e.labels = {{"app", "a" + std::to_string(j % kPolicies)}, {"tier", "web"}};
    e.service_account = "default";
    e.ips = {"10." + std::to_string(agent / 256) + "." + std::to_string(agent % 256) + "." +
             std::to_string(j + 1)};
    e.named_ports = {{"http", 8080, "TCP"}};
    out.push_back(std::move(e));
  }
  return out;
}

// The simulated agents and when each first saw each revision.
class Fleet {
 public:
  Fleet(int grpc_port, std::filesystem::path dir) : port_(grpc_port), dir_(std::move(dir)) {}
  ~Fleet() {
    for (auto& a : agents_) a->client->Stop();
  }

  // Joins `count` more agents (real Join: CA from the file, a key, a CSR, the certificate) and
  // starts their sessions; each acks every revision as soon as its on_policy has it.
  bool Add(int count, const std::string& join_token, int endpoints_each) {
    for (int k = 0; k < count; ++k) {
      int i = static_cast<int>(agents_.size());
      agentlink::JoinOptions jo;
      jo.server = "127.0.0.1:" + std::to_string(port_);
      jo.token = join_token;
      jo.node_name = "bench-node-" + std::to_string(i);
      jo.state_dir = (dir_ / ("agent-" + std::to_string(i))).string();
      // The first discovers the CA with the token; the others are given it (as --ca).
      if (i > 0) jo.ca_file = (dir_ / "server" / "ca.crt").string();
      auto creds = agentlink::Join(jo);
      if (!creds.ok()) {
        std::fprintf(stderr, "join %s: %s\n", jo.node_name.c_str(),
                     std::string(creds.status().message()).c_str());
        return false;
      }
      auto a = std::make_unique<Agent>();
      a->node = jo.node_name;
      agentlink::SyncOptions o;
      o.server = jo.server;
      o.credentials = *std::move(creds);
      o.initial_backoff = absl::Milliseconds(50);
      o.max_backoff = absl::Milliseconds(500);
      o.version = "propagation-bench";
      agentlink::SyncCallbacks cb;
      Agent* raw = a.get();
      cb.on_policy = [this, raw](const agentlink::PolicyUpdate&,
                                 const agentlink::PolicyState& state) {
        Seen(raw, state.revision);
        if (ack_) raw->client->Ack(state.revision, absl::OkStatus());
      };
      cb.on_endpoints = [raw](const agentlink::EndpointUpdate&,
                              const std::map<std::string, agentlink::Endpoint>& all) {
        raw->peer_endpoints = static_cast<int64_t>(all.size());
      };
      a->client = std::make_unique<agentlink::SyncClient>(o, cb);
      if (auto s = a->client->SetEndpoints(Endpoints(i, endpoints_each)); !s.ok()) {
        std::fprintf(stderr, "endpoints: %s\n", std::string(s.message()).c_str());
        return false;
      }
      a->client->Start();
      agents_.push_back(std::move(a));
    }
    return true;
  }

  // Waits until every agent has seen `revision` (a snapshot or a delta); the arrival time of
  // the last one, or nullopt after kPatience.
  std::optional<Clock::time_point> WaitAll(int64_t revision, std::vector<double>* each_ms,
                                           Clock::time_point from) {
    std::unique_lock<std::mutex> lock(mu_);
    bool ok = cv_.wait_for(lock, kPatience, [&] {
      auto it = arrivals_.find(revision);
      return it != arrivals_.end() && it->second.size() == agents_.size();
    });
    if (!ok) return std::nullopt;
    const std::vector<Clock::time_point>& times = arrivals_[revision];
    if (each_ms != nullptr) {
      for (auto t : times) each_ms->push_back(Ms(t - from));
    }
    return *std::max_element(times.begin(), times.end());
  }

  bool SetEndpoints(int each) {
    for (size_t i = 0; i < agents_.size(); ++i) {
      if (!agents_[i]->client->SetEndpoints(Endpoints(static_cast<int>(i), each)).ok())
        return false;
    }
    return true;
  }

  // Waits until every agent holds `count` endpoints of other nodes.
  bool WaitPeerEndpoints(int64_t count) {
    auto end = Clock::now() + kPatience;
    while (Clock::now() < end) {
      bool all = std::all_of(agents_.begin(), agents_.end(),
                             [&](const auto& a) { return a->peer_endpoints.load() == count; });
      if (all) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return false;
  }

  std::set<std::string> Nodes() const {
    std::set<std::string> out;
    for (const auto& a : agents_) out.insert(a->node);
    return out;
  }
  size_t size() const { return agents_.size(); }
  // Off: the agents stop acking, so that a run shows the delivery's cost without the acks'.
  void set_ack(bool on) { ack_ = on; }
  bool ack() const { return ack_; }

 private:
  struct Agent {
    std::string node;
    std::unique_ptr<agentlink::SyncClient> client;
    int64_t last = -1;  // the last revision it saw (fleet lock)
    std::atomic<int64_t> peer_endpoints{0};
  };

  void Seen(Agent* a, int64_t revision) {
    auto now = Clock::now();
    std::lock_guard<std::mutex> lock(mu_);
    // Once per revision and agent (a namespace change re-sends the same revision).
    for (int64_t r = std::max(a->last + 1, revision); r <= revision; ++r) {
      arrivals_[r].push_back(now);
    }
    a->last = std::max(a->last, revision);
    cv_.notify_all();
  }

  int port_;
  std::filesystem::path dir_;
  std::vector<std::unique_ptr<Agent>> agents_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::map<int64_t, std::vector<Clock::time_point>> arrivals_;
  std::atomic<bool> ack_{true};
};

std::string ErrorOf(const absl::StatusOr<bulkhead::server::ApiResponse>& r) {
  return r.ok() ? r->body.dump().substr(0, 400) : std::string(r.status().message());
}

// One apply of one policy; its revision (0 on failure).
int64_t ApplyOne(ApiClient& api, int change) {
  json files =
      json::array({{{"name", "p.yaml"}, {"content", Np(change % kPolicies, 1000 + change)}}});
  auto r = api.Post("/api/v1/apply", {{"files", files}});
  if (!r.ok() || r->status != 200) {
    std::fprintf(stderr, "apply failed: %s\n", ErrorOf(r).c_str());
    return 0;
  }
  return r->body.value("revision", int64_t{0});
}

// GET /api/v1/agents: true when every node of `nodes` is connected and its enforced revision
// is at least `revision` (and, when endpoints >= 0, it reports that many endpoints).
bool AllAcked(ApiClient& api, const std::set<std::string>& nodes, int64_t revision,
              int64_t endpoints = -1) {
  auto r = api.Get("/api/v1/agents");
  if (!r.ok() || r->status != 200) return false;
  size_t n = 0;
  for (const json& a : r->body["agents"]) {
    if (nodes.count(a.value("node", "")) == 0) continue;
    if (!a.value("connected", false) || a.value("enforcedRevision", int64_t{0}) < revision) {
      return false;
    }
    if (endpoints >= 0 && a.value("endpoints", int64_t{0}) != endpoints) return false;
    ++n;
  }
  return n == nodes.size();
}

template <typename Pred>
bool Eventually(Pred pred, std::chrono::milliseconds every) {
  auto end = Clock::now() + kPatience;
  while (Clock::now() < end) {
    if (pred()) return true;
    std::this_thread::sleep_for(every);
  }
  return false;
}

struct Row {
  int agents = 0;
  bool acks = true;
  std::vector<double> apply_ms;        // request sent -> apply returned
  std::vector<double> after_apply_ms;  // apply returned -> the last agent has it (>= 0)
  std::vector<double> from_send_ms;    // request sent -> the last agent has it
  std::vector<double> agent_ms;        // request sent -> each agent has it (all changes)
  std::vector<double> ack_ms;          // apply returned -> the agents list shows every ack
  int polls = 0;
  double server_cpu_ms = 0, bench_cpu_ms = 0, poll_cpu_ms = 0;
};

// `changes` one-policy changes, one at a time; each waits for every agent's on_policy and then
// for every ack in the agents list (polled every 2 ms only after the last on_policy, so the
// polls do not compete with the propagation they would measure).
bool Measure(ServerProcess& server, ApiClient& api, Fleet& fleet, int changes, int* next_change,
             Row* row) {
  std::set<std::string> nodes = fleet.Nodes();
  row->agents = static_cast<int>(fleet.size());
  row->acks = fleet.ack();
  double server_cpu0 = CpuSeconds(server.pid());
  double self_cpu0 = SelfCpuSeconds();
  for (int c = 0; c < changes; ++c) {
    auto sent = Clock::now();
    int64_t rev = ApplyOne(api, (*next_change)++);
    auto returned = Clock::now();
    if (rev == 0) return false;
    row->apply_ms.push_back(Ms(returned - sent));
    if (fleet.size() == 0) continue;
    auto last = fleet.WaitAll(rev, &row->agent_ms, sent);
    if (!last) {
      std::fprintf(stderr, "revision %lld did not reach every agent in %lld s\n",
                   static_cast<long long>(rev), static_cast<long long>(kPatience.count()));
      return false;
    }
    row->from_send_ms.push_back(Ms(*last - sent));
    row->after_apply_ms.push_back(std::max(0.0, Ms(*last - returned)));
    if (!fleet.ack()) continue;
    bool acked = Eventually(
        [&] {
          ++row->polls;
          return AllAcked(api, nodes, rev);
        },
        std::chrono::milliseconds(2));
    if (!acked) {
      std::fprintf(stderr, "acks of revision %lld missing\n", static_cast<long long>(rev));
      return false;
    }
    row->ack_ms.push_back(Ms(Clock::now() - returned));
  }
  row->server_cpu_ms = (CpuSeconds(server.pid()) - server_cpu0) * 1000 / changes;
  row->bench_cpu_ms = (SelfCpuSeconds() - self_cpu0) * 1000 / changes;
  if (fleet.size() > 0 && fleet.ack()) {
    // What one poll of the agents list costs the server, with no change in flight.
    const int polls = 100;
    double cpu0 = CpuSeconds(server.pid());
    for (int i = 0; i < polls; ++i) AllAcked(api, nodes, 0);
    row->poll_cpu_ms = (CpuSeconds(server.pid()) - cpu0) * 1000 / polls;
  }
  return true;
}

void PrintRows(const std::vector<Row>& rows) {
  const Row& base = rows.front();
  double base_p50 = Percentile(base.apply_ms, 0.5);
  std::printf("\n%-34s %7s %7s %7s %7s | %7s %7s %7s | %7s %7s | %8s %8s %8s\n", "", "p50", "p99",
              "max", "", "p50", "p99", "max", "p50", "p99", "server", "(polls)", "bench");
  std::printf("%-34s %31s | %23s | %15s | %26s\n", "agents: ms", "apply sent -> all agents have it",
              "apply returned -> all", "-> all acks listed", "CPU ms per change");
  for (const Row& r : rows) {
    if (r.agents == 0) {
      std::printf("%-34s %7.2f %7.2f %7.2f %7s | %7s %7s %7s | %7s %7s | %8.2f %8s %8.2f\n",
                  "0 (baseline: the apply alone)", Percentile(r.apply_ms, 0.5),
                  Percentile(r.apply_ms, 0.99), Percentile(r.apply_ms, 1), "", "", "", "", "", "",
                  r.server_cpu_ms, "", r.bench_cpu_ms);
      continue;
    }
    double polls_cpu = r.poll_cpu_ms * r.polls / static_cast<double>(r.apply_ms.size());
    std::printf(
        "%-34s %7.2f %7.2f %7.2f %7s | %7.2f %7.2f %7.2f | %7.1f %7.1f | %8.2f %8.2f %8.2f\n",
        (std::to_string(r.agents) + (r.acks ? " agents" : " agents, acks off")).c_str(),
        Percentile(r.from_send_ms, 0.5), Percentile(r.from_send_ms, 0.99),
        Percentile(r.from_send_ms, 1), "", Percentile(r.after_apply_ms, 0.5),
        Percentile(r.after_apply_ms, 0.99), Percentile(r.after_apply_ms, 1),
        Percentile(r.ack_ms, 0.5), Percentile(r.ack_ms, 0.99), r.server_cpu_ms, polls_cpu,
        r.bench_cpu_ms);
  }
  std::printf(
      "\n(server CPU includes the polls of the agents list; '(polls)' is their share, "
      "from a calibration of 100 polls with no change in flight)\n");
  for (const Row& r : rows) {
    if (r.agents == 0) continue;
    double apply_p50 = Percentile(r.apply_ms, 0.5);
    std::printf(
        "%d agents%s: p50 sent->all %.2fx the baseline apply (apply itself now %.2fx); median "
        "agent %.2f ms, p99 agent %.2f ms after the apply was sent; server CPU per change "
        "without polls %.2f ms (%.2fx the baseline apply's, %.3f ms per agent beyond it)\n",
        r.agents, r.acks ? "" : " (acks off)", Percentile(r.from_send_ms, 0.5) / base_p50,
        apply_p50 / base_p50, Percentile(r.agent_ms, 0.5), Percentile(r.agent_ms, 0.99),
        r.server_cpu_ms - r.poll_cpu_ms * r.polls / static_cast<double>(r.apply_ms.size()),
        (r.server_cpu_ms - r.poll_cpu_ms * r.polls / static_cast<double>(r.apply_ms.size())) /
            base.server_cpu_ms,
        (r.server_cpu_ms - r.poll_cpu_ms * r.polls / static_cast<double>(r.apply_ms.size()) -
         base.server_cpu_ms) /
            r.agents);
  }
}

std::string JoinToken(ApiClient& api) {
  auto r = api.Post("/api/v1/join-tokens", {{"ttl", "2h"}});
  if (!r.ok() || r->status != 201) {
    std::fprintf(stderr, "join token: %s\n", ErrorOf(r).c_str());
    return "";
  }
  return r->body.value("token", "");
}

uint64_t StoreBytes(const std::filesystem::path& dir) {
  uint64_t total = 0;
  for (const char* f : {"server.db", "server.db-wal"}) {
    std::error_code ec;
    auto n = std::filesystem::file_size(dir / f, ec);
    if (!ec) total += n;
  }
  return total;
}

struct Options {
  std::string binary;
  std::string store = "sqlite";
  std::vector<int> agent_counts = {1, 20, 200};
  int changes = 60;
  int warmup = 3;
  int endpoints_each = 5;          // in the propagation runs
  int memory_endpoints_each = 50;  // in the memory run (x the largest agent count)
};

// Part 1: propagation to 1, 20, 200 agents, with the apply alone as the baseline.
bool Propagation(const Options& opt, const std::filesystem::path& root) {
  auto dir = root / "propagation";
  auto init = bulkhead::server::InitServer({(dir / "server").string(), "", {}});
  if (!init.ok()) {
    std::fprintf(stderr, "init: %s\n", std::string(init.status().message()).c_str());
    return false;
  }
  ServerProcess server(opt.binary, dir / "server",
                       "sqlite:" + (dir / "server" / "server.db").string());
  if (!server.Start()) return false;
  auto api = server.Client();
  if (!api) return false;
  int next_change = 0;
  // The policies the changes update, so that every change is an update of one object.
  for (int p = 0; p < kPolicies; ++p) {
    if (ApplyOne(*api, next_change++) == 0) return false;
  }
  std::vector<Row> rows;
  Fleet fleet(server.grpc_port(), dir);
  {
    Row base;
    for (int w = 0; w < opt.warmup; ++w) ApplyOne(*api, next_change++);
    if (!Measure(server, *api, fleet, opt.changes, &next_change, &base)) return false;
    rows.push_back(std::move(base));
  }
  std::string token = JoinToken(*api);
  if (token.empty()) return false;
  for (int n : opt.agent_counts) {
    auto t0 = Clock::now();
    if (!fleet.Add(n - static_cast<int>(fleet.size()), token, opt.endpoints_each)) return false;
    // Every agent connected, its endpoints stored and its snapshot acked.
    int64_t head = 0;
    if (auto r = api->Get("/api/v1/agents"); r.ok()) head = r->body.value("revision", int64_t{0});
    if (!fleet.WaitAll(head, nullptr, t0) ||
        !Eventually([&] { return AllAcked(*api, fleet.Nodes(), head, opt.endpoints_each); },
                    std::chrono::milliseconds(50))) {
      std::fprintf(stderr, "%zu agents did not all connect\n", fleet.size());
      return false;
    }
    std::printf("%zu agents joined and in sync in %.1f s\n", fleet.size(),
                Ms(Clock::now() - t0) / 1000);
    std::fflush(stdout);
    Row warm;
    if (!Measure(server, *api, fleet, opt.warmup, &next_change, &warm)) return false;
    Row row;
    if (!Measure(server, *api, fleet, opt.changes, &next_change, &row)) return false;
    rows.push_back(std::move(row));
  }
  {
    // The same changes to the same agents with their acks off: the delivery alone, so that
    // the difference is what the acks cost the server.
    fleet.set_ack(false);
    Row row;
    if (!Measure(server, *api, fleet, opt.changes, &next_change, &row)) return false;
    rows.push_back(std::move(row));
    fleet.set_ack(true);
  }
  std::printf(
      "\n== propagation: SQLite store, %d changes per row, %d endpoints per agent in %d "
      "namespaces (every change reaches every agent) ==",
      opt.changes, opt.endpoints_each, kNamespaces);
  PrintRows(rows);
  std::printf("server RSS with %zu agents: %ld KiB\n", fleet.size(), RssKiB(server.pid()));
  return true;
}

// Part 2: the server's memory and the store's size with 0 and with agents x endpoints.
bool Memory(const Options& opt, const std::filesystem::path& root) {
  auto dir = root / "memory";
  auto init = bulkhead::server::InitServer({(dir / "server").string(), "", {}});
  if (!init.ok()) return false;
  ServerProcess server(opt.binary, dir / "server",
                       "sqlite:" + (dir / "server" / "server.db").string());
  if (!server.Start()) return false;
  auto api = server.Client();
  if (!api) return false;
  std::string token = JoinToken(*api);
  int agents = opt.agent_counts.back();
  Fleet fleet(server.grpc_port(), dir);
  auto t0 = Clock::now();
  if (!fleet.Add(agents, token, 0)) return false;
  if (!fleet.WaitAll(0, nullptr, t0) ||
      !Eventually([&] { return AllAcked(*api, fleet.Nodes(), 0, 0); },
                  std::chrono::milliseconds(50))) {
    return false;
  }
  std::this_thread::sleep_for(std::chrono::seconds(1));
  long rss0 = RssKiB(server.pid());
  uint64_t store0 = StoreBytes(dir / "server");
  int64_t total = static_cast<int64_t>(agents) * opt.memory_endpoints_each;
  t0 = Clock::now();
  if (!fleet.SetEndpoints(opt.memory_endpoints_each)) return false;
  bool stored =
      Eventually([&] { return AllAcked(*api, fleet.Nodes(), 0, opt.memory_endpoints_each); },
                 std::chrono::milliseconds(50));
  double stored_s = Ms(Clock::now() - t0) / 1000;
  bool spread = stored && fleet.WaitPeerEndpoints(total - opt.memory_endpoints_each);
  double spread_s = Ms(Clock::now() - t0) / 1000;
  if (!spread) {
    std::fprintf(stderr, "the endpoints did not reach every agent\n");
    return false;
  }
  std::this_thread::sleep_for(std::chrono::seconds(1));
  long rss1 = RssKiB(server.pid());
  uint64_t store1 = StoreBytes(dir / "server");
  std::printf(
      "\n== memory: %d agents connected, then %d endpoints each (%lld in all) ==\n"
      "stored by the server in %.1f s; every agent held the other %lld in %.1f s\n"
      "server RSS: %ld KiB with 0 endpoints, %ld KiB with %lld: %.1f MiB per 10,000 "
      "endpoints (%.0f bytes per endpoint)\n"
      "store (server.db + WAL): %.1f MiB -> %.1f MiB (%.0f bytes per endpoint, with the "
      "history log)\n",
      agents, opt.memory_endpoints_each, static_cast<long long>(total), stored_s,
      static_cast<long long>(total - opt.memory_endpoints_each), spread_s, rss0, rss1,
      static_cast<long long>(total),
      static_cast<double>(rss1 - rss0) / 1024.0 * 10000.0 / static_cast<double>(total),
      static_cast<double>(rss1 - rss0) * 1024.0 / static_cast<double>(total),
      static_cast<double>(store0) / (1 << 20), static_cast<double>(store1) / (1 << 20),
      static_cast<double>(store1 - store0) / static_cast<double>(total));
  return true;
}

int Main(int argc, char** argv) {
  Options opt;
  bool memory = true;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--bulkhead" && i + 1 < argc) {
      opt.binary = argv[++i];
    } else if (a == "--agents" && i + 1 < argc) {
      int n = std::stoi(argv[++i]);
      opt.agent_counts = {1};
      if (n > 20) opt.agent_counts.push_back(20);
      if (n > 1) opt.agent_counts.push_back(n);
    } else if (a == "--changes" && i + 1 < argc) {
      opt.changes = std::stoi(argv[++i]);
    } else if (a == "--endpoints" && i + 1 < argc) {
      opt.memory_endpoints_each = std::stoi(argv[++i]);
    } else if (a == "--no-memory") {
      memory = false;
    } else if (a == "--smoke") {
      // Keeps the bench from rotting (a ctest): every path, seconds, no figure worth reading.
      opt.agent_counts = {1, 5};
      opt.changes = 3;
      opt.warmup = 1;
      opt.memory_endpoints_each = 4;
    } else {
      std::fprintf(stderr,
                   "usage: propagation_bench --bulkhead PATH [--agents N] [--changes N] "
                   "[--endpoints N] [--no-memory] [--smoke]\n");
      return 2;
    }
  }
  if (opt.binary.empty()) {
    std::fprintf(stderr, "propagation_bench: --bulkhead PATH (the bulkhead binary) is required\n");
    return 2;
  }
  auto root = std::filesystem::temp_directory_path() /
              ("bulkhead_propagation_bench_" + std::to_string(getpid()));
  std::filesystem::create_directories(root);
  std::printf("propagation_bench: agents");
  for (int n : opt.agent_counts) std::printf(" %d", n);
  std::printf(", %d changes each; CPU count %u\n", opt.changes,
              std::thread::hardware_concurrency());
  std::fflush(stdout);
  bool ok = Propagation(opt, root);
  if (ok && memory) ok = Memory(opt, root);
  std::filesystem::remove_all(root);
  if (!ok) {
    std::fprintf(stderr, "propagation_bench: failed\n");
    return 1;
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return Main(argc, argv);
  } catch (const std::exception& e) {  // a malformed number (std::stoi) among the options
    std::fprintf(stderr, "propagation_bench: %s\n", e.what());
    return 2;
  }
}
