// Where an agent's apply spends its time, without a kernel: writes the benchmark's scenario,
// then times what the agent does for one policy change (read and validate every file,
// compile the node's view, turn the result into map entries) and prints the phases with
// their medians, and ratios against a baseline measured in the same run (reading the files'
// bytes). Usage: agent_apply_profile [--rules N] [--local N] [--remote N]
//                [--placement all|local] [--runs N] [--keep DIR]
#include <malloc.h>
#include <time.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

#include "engine/compiler.h"
#include "policy/loader.h"
#include "scenario.h"

namespace bulkhead::bench {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

double Ms(Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

// CPU time of this thread in ms: on a shared machine wall time also counts waiting for a core.
double CpuMs() {
  timespec t{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) * 1e3 + static_cast<double>(t.tv_nsec) * 1e-6;
}

struct Timing {
  std::string name;
  std::vector<double> ms;
  std::vector<double> cpu;
  double MedianCpu() const {
    std::vector<double> v = cpu;
    std::sort(v.begin(), v.end());
    return v.empty() ? 0 : v[v.size() / 2];
  }
  double Median() const {
    std::vector<double> v = ms;
    std::sort(v.begin(), v.end());
    return v.empty() ? 0 : v[v.size() / 2];
  }
  double Max() const { return ms.empty() ? 0 : *std::max_element(ms.begin(), ms.end()); }
};

int Main(int argc, char** argv) {
  ScenarioOptions o;
  int runs = 7;
  int compile_only = 0;  // N: load once, then only compile N times (for a profiler)
  bool memory = false;   // what an agent keeps, piece by piece
  std::string keep;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string flag = argv[i], value = argv[i + 1];
    if (flag == "--rules") {
      o.rules = std::stoi(value);
    } else if (flag == "--local") {
      o.local_workloads = std::stoi(value);
    } else if (flag == "--remote") {
      o.remote_workloads = std::stoi(value);
    } else if (flag == "--placement") {
      o.placement = value;
    } else if (flag == "--runs") {
      runs = std::stoi(value);
    } else if (flag == "--keep") {
      keep = value;
    } else if (flag == "--memory") {
      memory = value == "1";
    } else if (flag == "--compile-only") {
      compile_only = std::stoi(value);
    } else {
      std::fprintf(stderr, "unknown flag %s\n", flag.c_str());
      return 2;
    }
  }
  const fs::path dir =
      keep.empty() ? fs::temp_directory_path() / ("bh-apply-profile-" + std::to_string(getpid()))
                   : fs::path(keep);
  if (auto s = WriteScenario(o, dir.string()); !s.ok()) {
    std::fprintf(stderr, "%s\n", std::string(s.message()).c_str());
    return 1;
  }
  { std::ofstream(dir / "rules" / "probe.yaml") << ProbePolicy(o, true); }
  const std::vector<std::string> paths = {(dir / "rules").string(),
                                          (dir / "inventory.yaml").string()};

  if (memory) {
    // What an agent keeps between changes, piece by piece (heap in use after each), laid out
    // as the agent keeps it: the load cache, the files without their policies, the compiler
    // (which took the composed cluster over, and keeps what an in-place update needs), one
    // rule table; then the peak and the rest after one policy change updated in place.
    auto heap = [] { return static_cast<double>(mallinfo2().uordblks) / (1 << 20); };
    const double h0 = heap();
    policy::LoadCache cache;
    policy::LoadResult loaded = policy::LoadPaths(paths, &cache);
    if (!loaded.ok()) return 1;
    const double h1 = heap();
    policy::Cluster files;  // the agent's last good files: no policies
    files.namespaces = loaded.cluster.namespaces;
    files.workloads = loaded.cluster.workloads;
    files.nodes = loaded.cluster.nodes;
    const double h2 = heap();
    engine::CompilerOptions copts;
    copts.node = o.node;
    auto compiler = engine::PolicyCompiler::Create(std::move(loaded.cluster), copts);
    if (!compiler.ok()) return 1;
    loaded = policy::LoadResult{};
    const double h3 = heap();
    std::vector<engine::CompiledRule> rules_copy = (*compiler)->compiled().rules;
    auto ids_copy = (*compiler)->compiled().identities;
    const double h4 = heap();
    // One change, as the agent applies it.
    { std::ofstream(dir / "rules" / "probe.yaml") << ProbePolicy(o, false); }
    policy::LoadResult again = policy::LoadPaths(paths, &cache);
    if (!again.ok()) return 1;
    const double h5 = heap();
    auto upd = (*compiler)->UpdatePolicies(again.cluster.policies,
                                           (*compiler)->compiled().NextTableIdBase());
    if (!upd.ok() || !upd->incremental) return 1;
    again = policy::LoadResult{};
    const double h6 = heap();
    std::printf(
        "heap MiB: load cache + its result %.1f, files without policies %.1f, compiler (cluster, "
        "incremental state, output) %.1f, one rule table copy %.1f; kept by an agent ~%.1f\n"
        "  one policy change: load result in flight %.1f, after the update in place %.1f "
        "(+%.2f)\n",
        h1 - h0, h2 - h1, h3 - h2, h4 - h3, h4 - h0, h5 - h0, h6 - h0, h6 - h4);
    (void)files;
    compiler = nullptr;
    rules_copy.clear();
    ids_copy.clear();
    malloc_trim(0);
    {
      // The same with the policies shared between the load cache and the compiler
      // (LoadPathsShared, PolicyCompiler::Create with policies apart), as the agent keeps them.
      const double s0 = heap();
      policy::LoadCache shared_cache;
      policy::SharedLoadResult sl = policy::LoadPathsShared(paths, &shared_cache);
      if (!sl.ok()) return 1;
      policy::Cluster kept_files = sl.result.cluster;  // the agent's last good files
      auto shared_compiler = engine::PolicyCompiler::Create(std::move(sl.result.cluster),
                                                            std::move(sl.policies), copts);
      if (!shared_compiler.ok()) return 1;
      sl = policy::SharedLoadResult{};
      const double s1 = heap();
      { std::ofstream(dir / "rules" / "probe.yaml") << ProbePolicy(o, true); }
      policy::SharedLoadResult next = policy::LoadPathsShared(paths, &shared_cache);
      if (!next.ok()) return 1;
      const double s2 = heap();
      auto u =
          (*shared_compiler)
              ->UpdatePolicies(next.policies, (*shared_compiler)->compiled().NextTableIdBase());
      if (!u.ok() || !u->incremental) return 1;
      next = policy::SharedLoadResult{};
      const double s3 = heap();
      std::printf(
          "shared policies: load cache + files + compiler %.1f; one policy change: load result "
          "in flight %.1f, after the update in place %.1f (+%.2f)\n",
          s1 - s0, s2 - s0, s3 - s0, s3 - s1);
    }
    if (keep.empty()) fs::remove_all(dir);
    return 0;
  }
  if (compile_only > 0) {
    policy::LoadResult loaded = policy::LoadPaths(paths);
    if (!loaded.ok()) return 1;
    engine::CompilerOptions copts;
    copts.node = o.node;
    Timing t{"compile", {}, {}};
    for (int i = 0; i < compile_only; ++i) {
      auto t0 = Clock::now();
      auto compiled = engine::CompilePolicy(loaded.cluster, copts);
      t.ms.push_back(Ms(Clock::now() - t0));
      if (!compiled.ok()) return 1;
    }
    std::printf("compile only: median %.2f ms, max %.2f ms\n", t.Median(), t.Max());
    if (keep.empty()) fs::remove_all(dir);
    return 0;
  }

  Timing read{"read the files' bytes (baseline)", {}, {}};
  Timing load{"load + validate every file (policy::LoadPaths)", {}, {}};
  Timing compile{"compile the node's view (PolicyCompiler::Create)", {}, {}};
  Timing entries{"map entries as vectors (Entries())", {}, {}};
  Timing cached{"load, one file changed (policy::LoadCache)", {}, {}};
  Timing recompile{"recompile, pinned + tables reused", {}, {}};
  Timing update{"policy update in place (UpdatePolicies)", {}, {}};
  Timing shared_load{"load, one file changed, shared (LoadPathsShared)", {}, {}};
  Timing shared_update{"update in place, shared policies (UpdatePolicies)", {}, {}};
  size_t shared_unread = 0;
  size_t reused_tables = 0, rewritten_tables = 0;
  size_t updated_tables = 0;
  policy::LoadCache cache;
  (void)policy::LoadPaths(paths, &cache);  // warm
  // What the agent does now: one cache whose policies the compile in force shares.
  policy::LoadCache shared_cache;
  std::unique_ptr<engine::PolicyCompiler> shared_compiler;
  {
    policy::SharedLoadResult first = policy::LoadPathsShared(paths, &shared_cache);
    if (!first.ok()) return 1;
    engine::CompilerOptions copts;
    copts.node = o.node;
    auto c = engine::PolicyCompiler::Create(std::move(first.result.cluster),
                                            std::move(first.policies), copts);
    if (!c.ok()) return 1;
    shared_compiler = std::move(*c);
  }
  engine::CompileStats stats;
  size_t rules = 0, workloads = 0;
  for (int run = 0; run < runs; ++run) {
    auto t0 = Clock::now();
    const double c0 = CpuMs();
    size_t bytes = 0;
    for (const auto& e : fs::recursive_directory_iterator(dir)) {
      if (!e.is_regular_file()) continue;
      std::ifstream in(e.path(), std::ios::binary);
      std::stringstream ss;
      ss << in.rdbuf();
      bytes += ss.str().size();
    }
    auto t1 = Clock::now();
    const double c1 = CpuMs();
    policy::LoadResult loaded = policy::LoadPaths(paths);
    auto t2 = Clock::now();
    const double c2 = CpuMs();
    if (!loaded.ok()) {
      for (const auto& d : loaded.diagnostics) std::fprintf(stderr, "%s\n", d.ToString().c_str());
      return 1;
    }
    engine::CompilerOptions copts;
    copts.node = o.node;
    auto compiler = engine::PolicyCompiler::Create(loaded.cluster, copts);
    auto t3 = Clock::now();
    const double c3 = CpuMs();
    if (!compiler.ok()) {
      std::fprintf(stderr, "%s\n", std::string(compiler.status().message()).c_str());
      return 1;
    }
    const auto& maps = (*compiler)->compiled().maps;
    auto peers = maps.peers.Entries();
    auto ports = maps.ports.Entries();
    auto ipc = maps.ipcache.Entries();
    auto t4 = Clock::now();
    const double c4 = CpuMs();
    read.ms.push_back(Ms(t1 - t0));
    load.ms.push_back(Ms(t2 - t1));
    compile.ms.push_back(Ms(t3 - t2));
    entries.ms.push_back(Ms(t4 - t3));
    read.cpu.push_back(c1 - c0);
    load.cpu.push_back(c2 - c1);
    compile.cpu.push_back(c3 - c2);
    entries.cpu.push_back(c4 - c3);
    stats = engine::ComputeStats((*compiler)->compiled());
    // One policy changes (the probe's port flips): what the agent does with its cache and
    // the previous compile.
    { std::ofstream(dir / "rules" / "probe.yaml") << ProbePolicy(o, run % 2 == 1); }
    auto t5 = Clock::now();
    const double c5 = CpuMs();
    policy::LoadResult again = policy::LoadPaths(paths, &cache);
    auto t6 = Clock::now();
    const double c6 = CpuMs();
    if (!again.ok() || cache.parsed() != 1) {
      std::fprintf(stderr, "cached load: %zu parsed\n", cache.parsed());
      return 1;
    }
    const engine::CompiledPolicy& prev = (*compiler)->compiled();
    engine::CompilerOptions next;
    next.node = o.node;
    next.table_id_base = prev.NextTableIdBase();
    next.pinned_identities = engine::PinsOf(prev);
    next.pinned_rules = engine::RulePinsOf(prev);
    next.reuse_tables_of = &prev;
    auto re = engine::CompilePolicy(again.cluster, next);
    auto t7 = Clock::now();
    const double c7 = CpuMs();
    if (!re.ok()) return 1;
    cached.ms.push_back(Ms(t6 - t5));
    recompile.ms.push_back(Ms(t7 - t6));
    cached.cpu.push_back(c6 - c5);
    recompile.cpu.push_back(c7 - c6);
    // What the agent does now: the compile in force updated in place.
    auto kept = engine::PolicyCompiler::Create(loaded.cluster, copts);
    if (!kept.ok()) return 1;
    std::vector<policy::Policy> changed_policies = again.cluster.policies;
    auto t8 = Clock::now();
    const double c8 = CpuMs();
    auto upd = (*kept)->UpdatePolicies(changed_policies, next.table_id_base);
    auto t9 = Clock::now();
    const double c9 = CpuMs();
    if (!upd.ok() || !upd->incremental) {
      std::fprintf(stderr, "update not incremental: %s\n",
                   upd.ok() ? upd->why.c_str() : std::string(upd.status().message()).c_str());
      return 1;
    }
    update.ms.push_back(Ms(t9 - t8));
    update.cpu.push_back(c9 - c8);
    // The same change through the shared path (the files were rewritten above; the probe's
    // is the one changed since this cache's last load).
    auto t10 = Clock::now();
    const double c10 = CpuMs();
    policy::SharedLoadResult shared = policy::LoadPathsShared(paths, &shared_cache);
    auto t11 = Clock::now();
    const double c11 = CpuMs();
    if (!shared.ok() || shared_cache.parsed() != 1) {
      std::fprintf(stderr, "shared load: %zu parsed\n", shared_cache.parsed());
      return 1;
    }
    shared_unread = shared_cache.unread();
    auto t12 = Clock::now();
    const double c12 = CpuMs();
    auto supd = shared_compiler->UpdatePolicies(shared.policies,
                                                shared_compiler->compiled().NextTableIdBase());
    auto t13 = Clock::now();
    const double c13 = CpuMs();
    if (!supd.ok() || !supd->incremental || supd->policies_changed != 2) {
      std::fprintf(stderr, "shared update not incremental or not one policy: %s\n",
                   supd.ok() ? supd->why.c_str() : std::string(supd.status().message()).c_str());
      return 1;
    }
    shared_load.ms.push_back(Ms(t11 - t10));
    shared_load.cpu.push_back(c11 - c10);
    shared_update.ms.push_back(Ms(t13 - t12));
    shared_update.cpu.push_back(c13 - c12);
    updated_tables = upd->tables_written.size();
    reused_tables = rewritten_tables = 0;
    for (const auto& t : re->tables) {
      (t.table_id < next.table_id_base ? reused_tables : rewritten_tables)++;
    }
    rules = 0;
    for (const auto& p : loaded.cluster.policies) rules += p.ingress.size() + p.egress.size();
    workloads = loaded.cluster.workloads.size();
    (void)bytes;
  }
  std::printf("scenario: %zu workloads (%d local), %zu rules, placement %s\n", workloads,
              o.local_workloads, rules, o.placement.c_str());
  std::printf("compiled: %zu identities, %zu tables, %zu ipcache, %zu peer, %zu port entries\n",
              stats.identities, stats.tables, stats.ipcache_entries, stats.peer_entries,
              stats.port_entries);
  std::printf("heap in use after the runs: %.1f MiB\n",
              static_cast<double>(mallinfo2().uordblks) / (1 << 20));
  std::printf("\n%-52s %10s %10s %10s %8s\n", "phase", "CPU ms", "wall ms", "max wall", "ratio");
  const double base = read.MedianCpu();
  std::printf("after one policy change: %zu tables reused, %zu rewritten\n", reused_tables,
              rewritten_tables);
  std::printf("policy update in place: %zu tables written\n", updated_tables);
  std::printf("shared load: %zu files reused without reading them (last run)\n", shared_unread);
  for (const Timing* t : {&read, &load, &compile, &entries, &cached, &recompile, &update,
                          &shared_load, &shared_update}) {
    std::printf("%-52s %10.2f %10.2f %10.2f %7.1fx\n", t->name.c_str(), t->MedianCpu(), t->Median(),
                t->Max(), base > 0 ? t->MedianCpu() / base : 0);
  }
  if (keep.empty()) fs::remove_all(dir);
  return 0;
}

}  // namespace
}  // namespace bulkhead::bench

int main(int argc, char** argv) { return bulkhead::bench::Main(argc, argv); }
