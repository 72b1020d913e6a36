// Benchmarks of the policy compiler on a synthetic cluster of ~1,000 identities and ~3,000
// rules: a full compile of every endpoint's tables, and incremental additions of one
// workload. Machines are noisy, so the summary also prints ratios against baselines
// measured in the same run: the reference evaluator on random flows, and a naive
// evaluator-driven compile (one evaluation per local identity, peer, direction and
// protocol, sampled and extrapolated: a lower bound of what it would cost).
#include <benchmark/benchmark.h>
#include <malloc.h>
#include <time.h>

#include <chrono>
#include <cstdio>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <string>

#include "engine/compiler.h"
#include "engine/evaluator.h"
#include "synthetic_cluster.h"

namespace bulkhead::bench {
namespace {

using Clock = std::chrono::steady_clock;
using engine::CompiledPolicy;
using engine::CompilePolicy;
using engine::CompilerOptions;
using engine::PolicyCompiler;

// Options with a table id base and table sharing, the rest defaulted.
CompilerOptions Options(uint32_t table_id_base, bool share_tables) {
  CompilerOptions o;
  o.table_id_base = table_id_base;
  o.share_tables = share_tables;
  return o;
}

// Mean seconds per iteration of each benchmark, for the summary.
std::map<std::string, double>& Means() {
  static std::map<std::string, double> m;
  return m;
}
engine::CompileStats& Stats() {
  static engine::CompileStats s;
  return s;
}
std::map<std::string, double>& Numbers() {
  static std::map<std::string, double> m;
  return m;
}

const policy::Cluster& TheCluster() {
  static const policy::Cluster c = SyntheticCluster();
  return c;
}

size_t HeapInUse() { return mallinfo2().uordblks; }

double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

// CPU time of this thread: what the summary reports, since on a shared machine wall time
// also counts the time spent waiting for a core.
double CpuNow() {
  timespec t{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_nsec) * 1e-9;
}

// Mean CPU and wall seconds of one measured section.
struct Timer {
  double cpu = 0;
  double wall = 0;
  double cpu0 = 0;
  Clock::time_point wall0;
  void Start() {
    wall0 = Clock::now();
    cpu0 = CpuNow();
  }
  void Stop() {
    cpu += CpuNow() - cpu0;
    wall += Seconds(Clock::now() - wall0);
  }
  void Record(const std::string& name, double divisor) {
    Means()[name] = cpu / divisor;
    Means()[name + "_wall"] = wall / divisor;
  }
};

void BM_CompileAll(benchmark::State& st) {
  const policy::Cluster& c = TheCluster();
  const bool shared = st.range(0) != 0;
  Timer timer;
  size_t heap = 0;
  engine::CompileStats stats;
  for (auto _ : st) {
    size_t before = HeapInUse();
    timer.Start();
    auto r = CompilePolicy(c, Options(1, shared));
    timer.Stop();
    if (!r.ok()) {
      st.SkipWithError(std::string(r.status().message()).c_str());
      return;
    }
    st.PauseTiming();
    heap = HeapInUse() - before;
    stats = engine::ComputeStats(*r);
    r = absl::StatusOr<CompiledPolicy>();  // free outside the timed part
    st.ResumeTiming();
  }
  std::string name = shared ? "compile" : "compile_unshared";
  timer.Record(name, static_cast<double>(st.iterations()));
  Numbers()[name + "_heap"] = static_cast<double>(heap);
  if (shared) Stats() = stats;
  st.counters["identities"] = static_cast<double>(stats.identities);
  st.counters["tables"] = static_cast<double>(stats.tables);
  st.counters["classes"] = static_cast<double>(stats.classes);
  st.counters["ipcache"] = static_cast<double>(stats.ipcache_entries);
  st.counters["peer_entries"] = static_cast<double>(stats.peer_entries);
  st.counters["port_entries"] = static_cast<double>(stats.port_entries);
  st.counters["map_KiB"] = static_cast<double>(stats.map_bytes) / 1024.0;
  st.counters["heap_MiB"] = static_cast<double>(heap) / (1024.0 * 1024.0);
}
BENCHMARK(BM_CompileAll)
    ->Arg(1)
    ->Arg(0)
    ->ArgName("shared")
    ->Unit(benchmark::kMillisecond)
    ->MinTime(2);

// An agent's view: the tables of one node's endpoints (about a twentieth of them), with
// peers and the ipcache of the whole cluster.
void BM_CompileNode(benchmark::State& st) {
  const policy::Cluster& c = TheCluster();
  CompilerOptions options;
  options.node = "node-0";
  Timer timer;
  engine::CompileStats stats;
  size_t endpoints = 0;
  for (auto _ : st) {
    timer.Start();
    auto r = CompilePolicy(c, options);
    timer.Stop();
    if (!r.ok()) {
      st.SkipWithError(std::string(r.status().message()).c_str());
      return;
    }
    st.PauseTiming();
    stats = engine::ComputeStats(*r);
    endpoints = r->endpoints.size();
    r = absl::StatusOr<CompiledPolicy>();
    st.ResumeTiming();
  }
  timer.Record("compile_node", static_cast<double>(st.iterations()));
  Numbers()["node_endpoints"] = static_cast<double>(endpoints);
  Numbers()["node_tables"] = static_cast<double>(stats.tables);
  Numbers()["node_peers"] = static_cast<double>(stats.peer_entries);
  Numbers()["node_ports"] = static_cast<double>(stats.port_entries);
  Numbers()["node_bytes"] = static_cast<double>(stats.map_bytes);
  st.counters["endpoints"] = static_cast<double>(endpoints);
  st.counters["tables"] = static_cast<double>(stats.tables);
  st.counters["peer_entries"] = static_cast<double>(stats.peer_entries);
  st.counters["port_entries"] = static_cast<double>(stats.port_entries);
}
BENCHMARK(BM_CompileNode)->Unit(benchmark::kMillisecond)->MinTime(2);

// What one added workload is, per variant.
enum class AddKind { kReplica = 0, kNewIdentity = 1, kNewTable = 2 };

policy::Workload NewWorkload(AddKind kind, int64_t i) {
  policy::Workload w;
  w.kind = "Pod";
  w.name = "added-" + std::to_string(i);
  w.ips.push_back(policy::IpAddr::V4(0x0b000000u | static_cast<uint32_t>(i + 1)));  // 11.x
  const auto& apps = SyntheticApps();
  int ns = static_cast<int>(i % 38);
  w.namespace_name = "ns-" + std::to_string(ns);
  switch (kind) {
    case AddKind::kReplica:  // one more pod of an existing service: an existing identity
      w.namespace_name = "ns-0";
      w.labels = {{"app", apps[0]}, {"tier", SyntheticTier(0)}, {"pod-template-hash", "x"}};
      w.named_ports = {{"metrics", policy::Protocol::kTCP, 9090},
                       {"http", policy::Protocol::kTCP, 8080}};
      w.service_account = apps[0];
      break;
    case AddKind::kNewIdentity: {  // a new version of a service: new identity, same policy
      int a = static_cast<int>(i % 20) + 1;
      w.labels = {{"app", apps[static_cast<size_t>(a)]},
                  {"tier", SyntheticTier(a)},
                  {"version", "v" + std::to_string(i)}};
      w.named_ports = SyntheticPorts(a);
      break;
    }
    case AddKind::kNewTable:  // a canary whose policy was deployed first: a new table
      w.namespace_name = "ns-" + std::to_string(i % 38);
      w.labels = {{"app", "canary-" + std::to_string(i)}, {"tier", "back"}};
      w.named_ports = {{"grpc", policy::Protocol::kTCP, 9443}};
      break;
  }
  return w;
}

void BM_AddWorkload(benchmark::State& st) {
  auto kind = static_cast<AddKind>(st.range(0));
  auto created = PolicyCompiler::Create(TheCluster());
  if (!created.ok()) {
    st.SkipWithError(std::string(created.status().message()).c_str());
    return;
  }
  std::unique_ptr<PolicyCompiler> pc = std::move(*created);
  size_t state_heap = 0;
  int64_t i = 0;
  Timer timer;
  size_t writes = 0;
  for (auto _ : st) {
    policy::Workload w = NewWorkload(kind, i++);
    timer.Start();
    auto d = pc->AddWorkload(w);
    timer.Stop();
    if (!d.ok()) {
      st.SkipWithError(std::string(d.status().message()).c_str());
      return;
    }
    bool expected = kind == AddKind::kReplica       ? !d->new_identity
                    : kind == AddKind::kNewIdentity ? d->new_identity && !d->new_table
                                                    : d->new_table;
    if (!expected) {
      st.SkipWithError("the added workload did not have the intended effect");
      return;
    }
    writes += d->ports.size() + d->peers.size() + d->ipcache.size();
  }
  (void)state_heap;
  const char* names[] = {"add_replica", "add_new_identity", "add_new_table"};
  timer.Record(names[st.range(0)], static_cast<double>(st.iterations()));
  st.counters["map_writes"] =
      benchmark::Counter(static_cast<double>(writes), benchmark::Counter::kAvgIterations);
}
BENCHMARK(BM_AddWorkload)->Arg(0)->Iterations(200)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_AddWorkload)->Arg(1)->Iterations(200)->Unit(benchmark::kMicrosecond);
// One per canary policy of the synthetic cluster.
BENCHMARK(BM_AddWorkload)->Arg(2)->Iterations(64)->Unit(benchmark::kMicrosecond);

// Heap kept by the incremental compiler (its cluster copy, indexes and output).
void BM_CompilerState(benchmark::State& st) {
  size_t heap = 0;
  for (auto _ : st) {
    size_t before = HeapInUse();
    auto pc = PolicyCompiler::Create(TheCluster());
    heap = HeapInUse() - before;
    benchmark::DoNotOptimize(pc);
  }
  Numbers()["state_heap"] = static_cast<double>(heap);
  st.counters["heap_MiB"] = static_cast<double>(heap) / (1024.0 * 1024.0);
}
BENCHMARK(BM_CompilerState)->Iterations(2)->Unit(benchmark::kMillisecond);

// Baseline 1: the reference evaluator on random flows between workloads of the cluster.
void BM_EvaluatorFlows(benchmark::State& st) {
  const policy::Cluster& c = TheCluster();
  engine::Evaluator ev(c);
  std::mt19937_64 rng(1);
  const int kFlows = 20000;
  std::vector<engine::Flow> flows;
  for (int i = 0; i < kFlows; ++i) {
    engine::Flow f;
    const auto& s = c.workloads[rng() % c.workloads.size()];
    const auto& d = c.workloads[rng() % c.workloads.size()];
    f.src = engine::FlowEndpoint{&s, s.ips.front()};
    f.dst = engine::FlowEndpoint{&d, d.ips.front()};
    f.protocol = i % 5 == 0 ? policy::Protocol::kUDP : policy::Protocol::kTCP;
    f.port = d.named_ports.empty() ? 443 : d.named_ports.back().port;
    flows.push_back(f);
  }
  Timer timer;
  for (auto _ : st) {
    timer.Start();
    for (const auto& f : flows) benchmark::DoNotOptimize(ev.Evaluate(f));
    timer.Stop();
  }
  timer.Record("eval_flow", static_cast<double>(st.iterations()) * kFlows);
  st.counters["flows"] = kFlows;
}
BENCHMARK(BM_EvaluatorFlows)->Unit(benchmark::kMillisecond)->MinTime(2);

// Baseline 2: a naive evaluator-driven compile of a sample of tables: for each sampled
// local identity, one evaluation per peer (every workload identity and every CIDR class),
// direction and protocol. It ignores port segments, so the extrapolation to all identities
// is a lower bound of a naive compile.
void BM_NaiveTables(benchmark::State& st) {
  const policy::Cluster& c = TheCluster();
  engine::Evaluator ev(c);
  auto compiled = CompilePolicy(c);
  if (!compiled.ok()) {
    st.SkipWithError("compile failed");
    return;
  }
  // One representative endpoint per identity.
  std::map<uint32_t, engine::FlowEndpoint> reps;
  for (const auto& w : c.workloads) {
    uint32_t id = compiled->endpoints.at(w.Id()).identity;
    if (!reps.count(id)) reps[id] = engine::FlowEndpoint{&w, w.ips.front()};
  }
  std::vector<engine::FlowEndpoint> peers;
  for (const auto& [id, e] : reps) peers.push_back(e);
  for (const auto& ci : compiled->identities) {
    if (ci.kind == identity::IdentityKind::kCidr) {
      peers.push_back(engine::FlowEndpoint{nullptr, ci.cidr->First()});
    }
  }
  const size_t kSample = 8;
  std::vector<engine::FlowEndpoint> locals;
  for (const auto& [id, e] : reps) {
    if (locals.size() < kSample && id % 97 < 13) locals.push_back(e);
  }
  Timer timer;
  uint64_t evals = 0;
  for (auto _ : st) {
    timer.Start();
    for (const auto& local : locals) {
      for (const auto& peer : peers) {
        for (auto proto : {policy::Protocol::kTCP, policy::Protocol::kUDP, policy::Protocol::kSCTP,
                           policy::Protocol::kICMP, policy::Protocol::kICMPv6}) {
          engine::Flow out{local, peer, proto, 443, {}};
          engine::Flow in{peer, local, proto, 443, {}};
          benchmark::DoNotOptimize(ev.EvaluateDirection(out, policy::Direction::kEgress));
          benchmark::DoNotOptimize(ev.EvaluateDirection(in, policy::Direction::kIngress));
          evals += 2;
        }
      }
    }
    timer.Stop();
  }
  // Per table, times the number of tables a naive compile builds (one per identity).
  timer.Record("naive_compile", static_cast<double>(st.iterations()) *
                                    static_cast<double>(locals.size()) /
                                    static_cast<double>(reps.size()));
  st.counters["evaluations"] =
      benchmark::Counter(static_cast<double>(evals), benchmark::Counter::kAvgIterations);
  st.counters["extrapolated_s"] = Means()["naive_compile"];
}
BENCHMARK(BM_NaiveTables)->Unit(benchmark::kMillisecond)->Iterations(3);

void PrintSummary() {
  const policy::Cluster& c = TheCluster();
  auto& m = Means();
  auto& n = Numbers();
  std::printf("\n== compiler summary: %zu workloads, %zu policies, %zu rules, %zu nodes ==\n",
              c.workloads.size(), c.policies.size(), CountRules(c), c.nodes.size());
  const engine::CompileStats& s = Stats();
  if (s.identities > 0) {
    std::printf(
        "identities %zu (workload %zu, cidr %zu); tables %zu; classes %zu\n"
        "entries: ipcache %zu, peers %zu, ports %zu; map key+value bytes %.1f KiB\n",
        s.identities, s.workload_identities, s.cidr_identities, s.tables, s.classes,
        s.ipcache_entries, s.peer_entries, s.port_entries, static_cast<double>(s.map_bytes) / 1024);
  }
  auto ms = [](double sec) { return sec * 1e3; };
  auto line = [&](const char* label, const std::string& k, const char* unit_name, double scale) {
    if (!m.count(k)) return;
    std::printf("%-46s %9.3f %s CPU (%9.3f %s wall)\n", label, m[k] * scale, unit_name,
                m[k + "_wall"] * scale, unit_name);
  };
  line("full compile, shared tables:", "compile", "ms", 1e3);
  line("full compile, one table per identity:", "compile_unshared", "ms", 1e3);
  line("agent view of one node (node-0):", "compile_node", "ms", 1e3);
  line("add a workload, existing identity:", "add_replica", "ms", 1e3);
  line("add a workload, new identity, shared table:", "add_new_identity", "ms", 1e3);
  line("add a workload, new identity, new table:", "add_new_table", "ms", 1e3);
  line("baseline: evaluator, one flow (both dirs):", "eval_flow", "us", 1e6);
  line("baseline: naive evaluator-driven compile:", "naive_compile", "s ", 1.0);
  if (n.count("node_tables")) {
    std::printf(
        "agent view of node-0: %.0f endpoints, %.0f tables, %.0f peer and %.0f port entries, "
        "%.1f KiB\n",
        n["node_endpoints"], n["node_tables"], n["node_peers"], n["node_ports"],
        n["node_bytes"] / 1024);
  }
  if (n.count("compile_heap")) {
    std::printf("heap of the compiled result: %.1f MiB (one table per identity: %.1f MiB)\n",
                n["compile_heap"] / (1 << 20), n["compile_unshared_heap"] / (1 << 20));
  }
  if (n.count("state_heap")) {
    std::printf("heap of the incremental compiler (cluster copy, indexes, result): %.1f MiB\n",
                n["state_heap"] / (1 << 20));
  }
  if (m.count("eval_flow")) {
    double f = m["eval_flow"];
    if (m.count("compile")) {
      std::printf("ratio: full compile costs as much as %.0f evaluator flows\n", m["compile"] / f);
    }
    for (const char* k : {"add_replica", "add_new_identity", "add_new_table"}) {
      if (m.count(k)) std::printf("ratio: %s costs as much as %.1f evaluator flows\n", k, m[k] / f);
    }
  }
  if (m.count("naive_compile") && m.count("compile")) {
    std::printf("ratio: naive evaluator-driven compile (a lower bound) / compiler = %.0fx\n",
                m["naive_compile"] / m["compile"]);
  }
  (void)ms;
}

}  // namespace
}  // namespace bulkhead::bench

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  bulkhead::bench::PrintSummary();
  benchmark::Shutdown();
  return 0;
}
