// Server benchmark: apply throughput and latency through the real `bulkhead server` (REST,
// TLS, validation, one store transaction per revision) against the store alone doing the same
// transactions in this process (the baseline of the same run), the server's CPU time per
// apply, and its memory per 1,000 stored policies. On SQLite and, when /usr/bin/etcd is
// there, on a three-member etcd cluster on loopback.
//
//   server_bench --bulkhead build/src/cli/bulkhead [--applies 200] [--policies 5000] [--quick]
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "etcd_cluster.h"
#include "server/api_client.h"
#include "server/server.h"
#include "server_process.h"
#include "store/store.h"

namespace {

using bulkhead::bench::CpuSeconds;
using bulkhead::bench::Percentile;
using bulkhead::bench::RssKiB;
using bulkhead::bench::ServerProcess;
using bulkhead::server::ApiClient;
using nlohmann::json;
using Clock = std::chrono::steady_clock;

std::string Np(int i, int port) {
  return "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p" +
         std::to_string(i) + ", namespace: ns" + std::to_string(i % 20) +
         "}\nspec:\n  podSelector: {matchLabels: {app: a" + std::to_string(i) +
         "}}\n  ingress:\n  - from: [{podSelector: {matchLabels: {tier: t" + std::to_string(i % 7) +
         "}}}]\n    ports: [{port: " + std::to_string(port) + ", protocol: TCP}]\n";
}

struct Figures {
  double per_s = 0, p50_ms = 0, p99_ms = 0, cpu_ms = 0;
};

// The store alone: the transaction of one apply (object, revision record, head, audit entry),
// guarded by the head, as the repository writes it.
Figures StoreBaseline(bulkhead::store::IStore* store, int n) {
  namespace st = bulkhead::store;
  std::vector<double> lat;
  std::string record(1500, 'r');
  auto t0 = Clock::now();
  double cpu0 = CpuSeconds(getpid());
  for (int i = 0; i < n; ++i) {
    auto s = Clock::now();
    auto head = store->Get("/bench/head");
    int64_t mod = head.ok() && !head->kvs.empty() ? head->kvs[0].mod_revision : 0;
    auto r = store->Txn({{"/bench/head", mod}},
                        {st::Op::Put("/bench/objects/p" + std::to_string(i), Np(i, 80)),
                         st::Op::Put("/bench/revisions/" + std::to_string(i), record),
                         st::Op::Put("/bench/head", std::to_string(i)),
                         st::Op::Put("/bench/audit/" + std::to_string(i), record)});
    if (!r.ok() || !r->succeeded) std::fprintf(stderr, "baseline txn failed\n");
    lat.push_back(std::chrono::duration<double, std::milli>(Clock::now() - s).count());
  }
  double secs = std::chrono::duration<double>(Clock::now() - t0).count();
  Figures f{n / secs, Percentile(lat, 0.5), Percentile(lat, 0.99),
            (CpuSeconds(getpid()) - cpu0) * 1000 / n};
  auto cleanup = store->Txn({}, {st::Op::DeletePrefix("/bench/")});
  (void)cleanup;
  return f;
}

Figures ServerApplies(ServerProcess& server, ApiClient& client, int n, int first) {
  std::vector<double> lat;
  double cpu0 = CpuSeconds(server.pid());
  auto t0 = Clock::now();
  for (int i = 0; i < n; ++i) {
    json files = json::array({{{"name", "p.yaml"}, {"content", Np(first + i, 80)}}});
    auto s = Clock::now();
    auto r = client.Post("/api/v1/apply", {{"files", files}});
    if (!r.ok() || r->status != 200) {
      std::fprintf(stderr, "apply failed: %s\n",
                   r.ok() ? r->body.dump().c_str() : std::string(r.status().message()).c_str());
    }
    lat.push_back(std::chrono::duration<double, std::milli>(Clock::now() - s).count());
  }
  double secs = std::chrono::duration<double>(Clock::now() - t0).count();
  return Figures{n / secs, Percentile(lat, 0.5), Percentile(lat, 0.99),
                 (CpuSeconds(server.pid()) - cpu0) * 1000 / n};
}

// Stores `count` more policies in applies of 100 (etcd's default transaction limit is 128
// writes), and returns the server's RSS after.
long BulkLoad(ServerProcess& server, ApiClient& client, int first, int count) {
  for (int base = 0; base < count; base += 100) {
    json files = json::array();
    for (int i = base; i < std::min(count, base + 100); ++i) {
      files.push_back(
          {{"name", "p" + std::to_string(first + i) + ".yaml"}, {"content", Np(first + i, 443)}});
    }
    auto r = client.Post("/api/v1/apply", {{"files", files}});
    if (!r.ok() || r->status != 200) {
      std::fprintf(stderr, "bulk apply failed: %s\n",
                   r.ok() ? r->body.dump().substr(0, 400).c_str()
                          : std::string(r.status().message()).c_str());
      return -1;
    }
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  return RssKiB(server.pid());
}

void Run(const std::string& name, const std::string& binary, const std::string& store_url,
         const std::filesystem::path& dir, int applies, int policies,
         bulkhead::store::IStore* baseline_store) {
  std::printf("\n== %s ==\n", name.c_str());
  auto init = bulkhead::server::InitServer({dir.string(), store_url, {}});
  if (!init.ok()) {
    std::fprintf(stderr, "init: %s\n", std::string(init.status().message()).c_str());
    return;
  }
  Figures base = StoreBaseline(baseline_store, applies);
  ServerProcess server(binary, dir, store_url);
  if (!server.Start()) return;
  auto client = server.Client();
  long rss0 = RssKiB(server.pid());
  Figures one = ServerApplies(server, *client, applies, 0);
  std::printf("%-44s %10s %9s %9s %12s\n", "", "per s", "p50 ms", "p99 ms", "CPU ms/op");
  std::printf("%-44s %10.1f %9.2f %9.2f %12.3f\n",
              "store alone: one apply's transaction (baseline)", base.per_s, base.p50_ms,
              base.p99_ms, base.cpu_ms);
  std::printf("%-44s %10.1f %9.2f %9.2f %12.3f\n", "server: apply of one policy (REST, sequential)",
              one.per_s, one.p50_ms, one.p99_ms, one.cpu_ms);
  std::printf("ratio server/baseline: throughput %.2fx, p50 %.2fx\n", one.per_s / base.per_s,
              one.p50_ms / base.p50_ms);
  // Four clients at once (each apply's compare-and-swap may lose and be recomputed).
  {
    std::vector<std::thread> threads;
    std::vector<Figures> f(4);
    auto t0 = Clock::now();
    for (int t = 0; t < 4; ++t) {
      threads.emplace_back([&, t] {
        auto c = server.Client();
        f[t] = ServerApplies(server, *c, applies / 4, 100000 + t * 10000);
      });
    }
    for (auto& th : threads) th.join();
    double secs = std::chrono::duration<double>(Clock::now() - t0).count();
    std::printf("server: 4 clients at once: %.1f applies/s (p99 of one client %.2f ms)\n",
                4 * (applies / 4) / secs, f[0].p99_ms);
  }
  long rss1 = RssKiB(server.pid());
  long rss2 = BulkLoad(server, *client, 200000, policies);
  std::printf(
      "server RSS: started %ld KiB, after %d applies %ld KiB, after %d more policies %ld KiB "
      "(%.1f KiB per 1,000 policies)\n",
      rss0, applies, rss1, policies, rss2,
      rss2 > 0 ? static_cast<double>(rss2 - rss1) * 1000.0 / policies : 0.0);
  // An apply with that many policies stored: validation covers the whole set.
  Figures big = ServerApplies(server, *client, std::max(10, applies / 10), 300000);
  std::printf(
      "server: apply of one policy with %d stored: %.1f per s, p50 %.2f ms, p99 %.2f ms, "
      "CPU %.3f ms/op (%.2fx the empty set's CPU)\n",
      policies + applies * 2, big.per_s, big.p50_ms, big.p99_ms, big.cpu_ms,
      big.cpu_ms / one.cpu_ms);
}

}  // namespace

int main(int argc, char** argv) {
  std::string binary;
  int applies = 200, policies = 5000;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--bulkhead" && i + 1 < argc) {
      binary = argv[++i];
    } else if (a == "--applies" && i + 1 < argc) {
      applies = std::stoi(argv[++i]);
    } else if (a == "--policies" && i + 1 < argc) {
      policies = std::stoi(argv[++i]);
    } else if (a == "--quick") {
      applies = 40;
      policies = 1000;
    } else {
      std::fprintf(stderr,
                   "usage: server_bench --bulkhead PATH [--applies N] [--policies N] [--quick]\n");
      return 2;
    }
  }
  if (binary.empty()) {
    std::fprintf(stderr, "server_bench: --bulkhead PATH (the bulkhead binary) is required\n");
    return 2;
  }
  auto root = std::filesystem::temp_directory_path() /
              ("bulkhead_server_bench_" + std::to_string(getpid()));
  std::filesystem::create_directories(root);
  std::printf("server_bench: %d sequential applies, %d policies bulk-loaded; CPU count %u\n",
              applies, policies, std::thread::hardware_concurrency());
  {
    auto base = bulkhead::store::OpenStore("sqlite:" + (root / "baseline.db").string());
    if (base.ok()) {
      Run("SQLite", binary, "sqlite:" + (root / "sqlite" / "server.db").string(), root / "sqlite",
          applies, policies, base->get());
    }
  }
  if (!bulkhead::store::testing::EtcdCluster::Binary().empty()) {
    auto cluster = bulkhead::store::testing::EtcdCluster::Start(3);
    if (cluster.ok()) {
      auto base = bulkhead::store::OpenStore((*cluster)->Url());
      if (base.ok()) {
        Run("etcd, 3 members on loopback", binary, (*cluster)->Url(), root / "etcd", applies,
            policies, base->get());
      }
    } else {
      std::printf("etcd cluster did not start: %s\n",
                  std::string(cluster.status().message()).c_str());
    }
  } else {
    std::printf("\n(etcd not installed: etcd figures skipped)\n");
  }
  std::filesystem::remove_all(root);
  return 0;
}
