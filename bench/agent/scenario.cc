// Writes the agent benchmark's synthetic node (scenario.h) as YAML files.
#include "scenario.h"

#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"

namespace bulkhead::bench {
namespace {

namespace fs = std::filesystem;

const char* Tier(int app) {
  static const char* kTiers[] = {"front", "back", "data"};
  return kTiers[app % 3];
}

absl::Status WriteFile(const fs::path& path, const std::string& content) {
  std::ofstream out(path, std::ios::trunc);
  out << content;
  out.close();
  if (!out) return absl::UnavailableError(absl::StrCat("cannot write ", path.string()));
  return absl::OkStatus();
}

// App a: local workload a for a < local_workloads, else remote workload a - local.
std::string AppName(const ScenarioOptions& o, int a) {
  return a < o.local_workloads ? LocalName(a) : absl::StrCat("r", a - o.local_workloads);
}
std::string AppNamespace(const ScenarioOptions& o, int a) {
  return absl::StrCat("ns-", a % o.namespaces);
}

}  // namespace

std::string LocalName(int k) { return absl::StrCat("l", k); }
std::string LocalNamespace(const ScenarioOptions& o, int k) { return AppNamespace(o, k); }
std::string LocalIp(const ScenarioOptions& o, int k) {
  return absl::StrCat(o.ip_prefix, ".", k / 200, ".", k % 200 + 10);
}

absl::Status WriteScenario(const ScenarioOptions& o, const std::string& dir_text) {
  if (o.local_workloads < 2 || o.namespaces < 1 || o.rules_per_policy < 1 ||
      o.local_workloads > 200 * 250 || o.remote_workloads > 250 * 250) {
    return absl::InvalidArgumentError("scenario: at least 2 local workloads and 1 namespace");
  }
  const fs::path dir(dir_text);
  std::error_code ec;
  fs::create_directories(dir / "rules", ec);
  if (ec) return absl::UnavailableError(absl::StrCat("cannot create ", dir.string()));

  std::ostringstream inv;
  inv << "apiVersion: bulkhead.io/v1alpha1\nkind: Inventory\nmetadata: {name: agent-bench}\n"
         "spec:\n  namespaces:\n";
  for (int i = 0; i < o.namespaces; ++i) {
    inv << "  - {name: ns-" << i << ", labels: {team: t" << i
        << ", env: " << (i % 2 == 0 ? "prod" : "dev") << "}}\n";
  }
  inv << "  nodes:\n  - {name: " << o.node << ", ips: [192.0.2.1]}\n  workloads:\n";
  for (int k = 0; k < o.local_workloads; ++k) {
    inv << "  - {name: " << LocalName(k) << ", namespace: " << LocalNamespace(o, k)
        << ", labels: {app: " << LocalName(k) << ", tier: " << Tier(k) << "}, ips: ["
        << LocalIp(o, k) << "], node: " << o.node << ", netns: " << o.netns_prefix << k
        << ", hostInterface: " << o.if_prefix << k << "}\n";
  }
  for (int r = 0; r < o.remote_workloads; ++r) {
    const int a = o.local_workloads + r;
    inv << "  - {name: " << AppName(o, a) << ", namespace: " << AppNamespace(o, a)
        << ", labels: {app: " << AppName(o, a) << ", tier: " << Tier(a) << "}, ips: [10.78."
        << r / 250 << "." << r % 250 + 1 << "], node: remote-" << r % 20 << "}\n";
  }
  if (auto s = WriteFile(dir / "inventory.yaml", inv.str()); !s.ok()) return s;

  // The bulk rule set: policies of rules_per_policy rules (ingress mostly, some egress),
  // 10 policies per file.
  const int apps = o.local_workloads + o.remote_workloads;
  const int policies = (o.rules + o.rules_per_policy - 1) / o.rules_per_policy;
  int rules_left = o.rules;
  std::ostringstream file;
  int in_file = 0, file_index = 0;
  auto flush = [&]() -> absl::Status {
    if (in_file == 0) return absl::OkStatus();
    auto s = WriteFile(dir / "rules" / absl::StrCat("p-", file_index++, ".yaml"), file.str());
    file.str("");
    in_file = 0;
    return s;
  };
  for (int p = 0; p < policies; ++p) {
    const int app = o.placement == "local" ? p % o.local_workloads : p % apps;
    const int n = std::min(rules_left, o.rules_per_policy);
    rules_left -= n;
    std::ostringstream in, eg;
    int ingress = 0, egress = 0;
    for (int r = 0; r < n; ++r) {
      // Two in ten rules are egress, except for the probe client (local 0), whose egress
      // stays open so that the probe measures the server's ingress alone.
      const bool is_egress = r % 5 == 4 && app != 0;
      const int port = 1000 + (p * 7 + r * 13) % 200;
      const int peer_app = (p * 31 + r * 17) % apps;
      if (is_egress) {
        ++egress;
        if (r % 10 == 4) {
          eg << "  - to: [{podSelector: {matchLabels: {app: " << AppName(o, peer_app)
             << "}}, namespaceSelector: {}}]\n    ports: [{port: " << port << "}]\n";
        } else {
          eg << "  - to: [{ipBlock: {cidr: 172.16." << p % 256 << ".0/24}}]\n"
             << "    ports: [{port: 5432}]\n";
        }
      } else {
        ++ingress;
        if (r % 3 == 0) {
          in << "  - from: [{namespaceSelector: {matchLabels: {team: t" << (p + r) % o.namespaces
             << "}}, podSelector: {matchLabels: {tier: " << Tier(r) << "}}}]\n";
        } else {
          in << "  - from: [{namespaceSelector: {}, podSelector: {matchLabels: {app: "
             << AppName(o, peer_app) << "}}}]\n";
        }
        in << "    ports: [{port: " << port << ", protocol: " << (r % 4 == 3 ? "UDP" : "TCP")
           << "}]\n";
      }
    }
    file << "---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p" << p
         << ", namespace: " << AppNamespace(o, app) << "}\nspec:\n  podSelector: {matchLabels: "
         << "{app: " << AppName(o, app) << "}}\n  policyTypes: [Ingress"
         << (egress > 0 ? ", Egress" : "") << "]\n";
    if (ingress > 0) file << "  ingress:\n" << in.str();
    if (egress > 0) file << "  egress:\n" << eg.str();
    if (++in_file == 10) {
      if (auto s = flush(); !s.ok()) return s;
    }
  }
  if (auto s = flush(); !s.ok()) return s;
  return absl::OkStatus();
}

std::string ProbePolicy(const ScenarioOptions& o, bool allow) {
  return absl::StrCat("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\n",
                      "metadata: {name: probe, namespace: ", LocalNamespace(o, 1),
                      "}\nspec:\n  podSelector: {matchLabels: {app: ", LocalName(1),
                      "}}\n  ingress:\n  - from: [{namespaceSelector: {}, podSelector: "
                      "{matchLabels: {app: ",
                      LocalName(0), "}}}]\n    ports: [{port: ", allow ? kProbePort : 9998,
                      ", protocol: UDP}]\n");
}

}  // namespace bulkhead::bench
