// A realistic synthetic cluster for benchmarks: namespaces of micro-services in tiers, a
// NetworkPolicy per service, egress policies, a few cluster-wide admin policies, a baseline,
// native denies, ipBlocks and a zero-trust default for production. Deterministic.
#pragma once

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "policy/model.h"

namespace bulkhead::bench {

using policy::Cidr;
using policy::IpAddr;
using policy::LabelRequirement;
using policy::Labels;
using policy::LabelSelector;
using policy::NamedPort;
using policy::Peer;
using policy::Policy;
using policy::PortMatch;
using policy::Protocol;
using policy::Rule;
using policy::RuleAction;
using policy::SelectorOperator;
using policy::Tier;

struct SyntheticOptions {
  int app_namespaces = 38;
  int apps_per_namespace = 26;
  int replicas = 2;
  int canary_policies = 64;  // policies for apps that have no workload yet (see below)
  uint64_t seed = 42;
};

namespace synth {

inline LabelSelector Sel(Labels l) { return LabelSelector{std::move(l), {}}; }
inline Cidr Net(const std::string& s) { return *Cidr::Parse(s); }

inline PortMatch Tcp(uint16_t port) {
  PortMatch m;
  m.kind = PortMatch::Kind::kRange;
  m.protocol = Protocol::kTCP;
  m.first = m.last = port;
  return m;
}
inline PortMatch Udp(uint16_t port) {
  PortMatch m = Tcp(port);
  m.protocol = Protocol::kUDP;
  return m;
}
inline PortMatch NamedTcp(const std::string& name) {
  PortMatch m;
  m.kind = PortMatch::Kind::kNamed;
  m.protocol = Protocol::kTCP;
  m.name = name;
  return m;
}
inline PortMatch TcpRange(uint16_t first, uint16_t last) {
  PortMatch m = Tcp(first);
  m.last = last;
  return m;
}
inline Peer Pods(const std::string& ns, LabelSelector pods) {
  Peer p;
  p.same_namespace = ns;
  p.pod_selector = std::move(pods);
  return p;
}
inline Peer NsPods(LabelSelector ns, std::optional<LabelSelector> pods = std::nullopt) {
  Peer p;
  p.namespace_selector = std::move(ns);
  p.pod_selector = std::move(pods);
  return p;
}
inline Peer Block(const std::string& cidr, std::vector<std::string> except = {}) {
  Peer p;
  p.kind = Peer::Kind::kIpBlock;
  p.cidrs.push_back(Net(cidr));
  for (const auto& e : except) p.except.push_back(Net(e));
  return p;
}
inline Rule R(RuleAction a, std::vector<Peer> peers, std::vector<PortMatch> ports,
              std::string name = {}) {
  Rule r;
  r.action = a;
  r.name = std::move(name);
  r.peers = std::move(peers);
  r.ports = std::move(ports);
  return r;
}
inline Policy NetPol(const std::string& ns, const std::string& name, LabelSelector pods) {
  Policy p;
  p.kind = "NetworkPolicy";
  p.namespace_name = ns;
  p.name = name;
  p.tier = Tier::kNamespace;
  p.subject.namespace_name = ns;
  p.subject.pod_selector = std::move(pods);
  return p;
}
inline Policy ClusterPol(const std::string& kind, const std::string& name, Tier tier, int priority,
                         LabelSelector ns) {
  Policy p;
  p.kind = kind;
  p.name = name;
  p.tier = tier;
  p.priority = priority;
  p.subject.namespace_selector = std::move(ns);
  return p;
}

}  // namespace synth

// The app names of a namespace and their tier: front ends, back ends, data stores.
inline const std::vector<std::string>& SyntheticApps() {
  static const std::vector<std::string> apps = {
      "web",    "mobile-api", "admin-ui", "cart",     "checkout", "catalog",   "search",
      "reco",   "pricing",    "orders",   "payments", "shipping", "users",     "auth",
      "notify", "reviews",    "media",    "reports",  "worker",   "scheduler", "postgres",
      "redis",  "kafka",      "elastic",  "mongo",    "minio"};
  return apps;
}
inline const char* SyntheticTier(int app) { return app < 3 ? "front" : app < 20 ? "back" : "data"; }
// The named ports of app number `app`: they vary per app, so that named ports resolve
// differently from one service to the next.
inline std::vector<NamedPort> SyntheticPorts(int app) {
  std::vector<NamedPort> ports = {{"metrics", Protocol::kTCP, 9090}};
  std::string tier = SyntheticTier(app);
  if (tier == "front") ports.push_back({"http", Protocol::kTCP, static_cast<uint16_t>(8080 + app)});
  if (tier == "back") ports.push_back({"grpc", Protocol::kTCP, static_cast<uint16_t>(9000 + app)});
  if (tier == "data") ports.push_back({"db", Protocol::kTCP, static_cast<uint16_t>(5400 + app)});
  return ports;
}

inline policy::Cluster SyntheticCluster(const SyntheticOptions& o = {}) {
  using namespace synth;  // NOLINT: builders
  std::mt19937_64 rng(o.seed);
  policy::Cluster c;
  const auto& apps = SyntheticApps();
  auto ns_name = [](int i) { return "ns-" + std::to_string(i); };
  const char* envs[] = {"prod", "prod", "staging", "dev"};

  auto add_ns = [&c](const std::string& name, Labels labels) {
    policy::Namespace ns;
    ns.name = name;
    ns.labels = std::move(labels);
    ns.labels["kubernetes.io/metadata.name"] = name;
    c.namespaces.push_back(std::move(ns));
  };
  for (int i = 0; i < o.app_namespaces; ++i) {
    add_ns(ns_name(i), {{"env", envs[i % 4]}, {"team", "team-" + std::to_string(i % 10)}});
  }
  add_ns("monitoring", {{"team", "observability"}});
  add_ns("kube-system", {{"team", "platform"}});

  int ip_seq = 0;
  auto add_workload = [&](const std::string& ns, const std::string& name, Labels labels,
                          std::vector<NamedPort> ports, const std::string& sa) {
    for (int r = 0; r < o.replicas; ++r) {
      policy::Workload w;
      w.namespace_name = ns;
      w.name = name + "-" + std::to_string(r);
      w.kind = "Pod";
      w.labels = labels;
      w.labels["pod-template-hash"] = std::to_string(rng() % 100000);
      w.service_account = sa;
      w.named_ports = ports;
      int n = ip_seq++;
      w.node = "node-" + std::to_string(n % 20);  // replicas land on different nodes
      w.ips.push_back(IpAddr::V4(0x0a000000u | static_cast<uint32_t>(n + 1)));
      if (n % 2 == 0) {
        IpAddr v6 = *IpAddr::Parse("fd00::");
        v6.bytes[14] = static_cast<uint8_t>((n + 1) >> 8);
        v6.bytes[15] = static_cast<uint8_t>(n + 1);
        w.ips.push_back(v6);
      }
      c.workloads.push_back(std::move(w));
    }
  };

  // Services. Ports vary per app so that named ports resolve differently.
  for (int i = 0; i < o.app_namespaces; ++i) {
    for (int a = 0; a < o.apps_per_namespace; ++a) {
      const std::string& app = apps[static_cast<size_t>(a) % apps.size()];
      std::string tier = SyntheticTier(a % static_cast<int>(apps.size()));
      std::vector<NamedPort> ports = {{"metrics", Protocol::kTCP, 9090}};
      if (tier == "front")
        ports.push_back({"http", Protocol::kTCP, static_cast<uint16_t>(8080 + a)});
      if (tier == "back")
        ports.push_back({"grpc", Protocol::kTCP, static_cast<uint16_t>(9000 + a)});
      if (tier == "data") ports.push_back({"db", Protocol::kTCP, static_cast<uint16_t>(5400 + a)});
      add_workload(ns_name(i), app, {{"app", app}, {"tier", tier}}, ports,
                   a % 3 == 0 ? app : "default");
    }
  }
  for (const char* app : {"prometheus", "grafana", "alertmanager", "loki", "tempo", "agent"}) {
    add_workload("monitoring", app, {{"app", app}}, {{"http", Protocol::kTCP, 3000}}, app);
  }
  for (const char* app : {"kube-dns", "metrics-server", "ingress", "cert-manager", "csi", "cni"}) {
    add_workload("kube-system", app, {{"k8s-app", app}},
                 {{"dns", Protocol::kUDP, 53}, {"dns-tcp", Protocol::kTCP, 53}}, app);
  }
  for (int n = 0; n < 20; ++n) {
    policy::Node node;
    node.name = "node-" + std::to_string(n);
    node.labels = {{"zone", n % 2 ? "a" : "b"}};
    node.ips.push_back(IpAddr::V4(0xc0a86400u | static_cast<uint32_t>(n + 1)));  // 192.168.100.x
    c.nodes.push_back(std::move(node));
  }

  const Labels monitoring = {{"kubernetes.io/metadata.name", "monitoring"}};
  // Partner networks: nested and disjoint external CIDRs.
  std::vector<std::string> partners;
  for (int k = 0; k < 24; ++k) partners.push_back("100.64." + std::to_string(k) + ".0/24");

  // One NetworkPolicy per service: ingress by tier, egress for a third of them.
  for (int i = 0; i < o.app_namespaces; ++i) {
    std::string ns = ns_name(i);
    for (int a = 0; a < o.apps_per_namespace; ++a) {
      const std::string& app = apps[static_cast<size_t>(a) % apps.size()];
      std::string tier = SyntheticTier(a % static_cast<int>(apps.size()));
      Policy p = NetPol(ns, app, Sel({{"app", app}}));
      p.applies_ingress = true;
      if (tier == "front") {
        p.ingress.push_back(
            R(RuleAction::kAllow, {Block("0.0.0.0/0", {"10.0.0.0/8"})}, {NamedTcp("http")}));
      } else if (tier == "back") {
        p.ingress.push_back(
            R(RuleAction::kAllow,
              {Pods(ns, Sel({{"tier", "front"}})), Pods(ns, Sel({{"app", apps[(a + 1) % 20]}}))},
              {NamedTcp("grpc")}));
      } else {
        p.ingress.push_back(
            R(RuleAction::kAllow, {Pods(ns, Sel({{"tier", "back"}}))}, {NamedTcp("db")}));
      }
      p.ingress.push_back(R(RuleAction::kAllow,
                            {NsPods(Sel(monitoring), Sel({{"app", "prometheus"}}))},
                            {NamedTcp("metrics")}));
      if (a % 3 == 0 && a > 0) {
        p.applies_egress = true;
        Labels dns_ns = {{"kubernetes.io/metadata.name", "kube-system"}};
        p.egress.push_back(R(RuleAction::kAllow,
                             {NsPods(Sel(dns_ns), Sel({{"k8s-app", "kube-dns"}}))},
                             {Udp(53), Tcp(53)}));
        p.egress.push_back(
            R(RuleAction::kAllow, {Pods(ns, Sel({{"tier", "data"}}))}, {TcpRange(5400, 5499)}));
        p.egress.push_back(R(RuleAction::kAllow,
                             {Block(partners[static_cast<size_t>(a + i) % partners.size()])},
                             {Tcp(443)}));
      }
      c.policies.push_back(std::move(p));
    }
  }
  // Policies deployed ahead of their workloads (canaries): they select nothing yet, and a
  // workload added later gets a table of its own.
  for (int k = 0; k < o.canary_policies; ++k) {
    std::string ns = ns_name(k % o.app_namespaces);
    Policy p =
        NetPol(ns, "canary-" + std::to_string(k), Sel({{"app", "canary-" + std::to_string(k)}}));
    p.applies_ingress = true;
    p.ingress.push_back(R(RuleAction::kAllow, {Pods(ns, Sel({{"tier", "front"}}))}, {Tcp(8443)}));
    c.policies.push_back(std::move(p));
  }
  // Native namespace policies with explicit denies, in a third of the namespaces.
  for (int i = 0; i < o.app_namespaces; i += 3) {
    std::string ns = ns_name(i);
    Policy p = NetPol(ns, "lockdown", Sel({{"tier", "data"}}));
    p.kind = "BulkheadPolicy";
    p.mode = i % 2 ? policy::Mode::kAudit : policy::Mode::kEnforce;
    p.applies_ingress = true;
    p.ingress.push_back(R(RuleAction::kDeny, {Pods(ns, Sel({{"tier", "front"}}))}, {}, "no-front"));
    p.ingress.push_back(R(RuleAction::kDeny, {Block("100.64.0.0/10")}, {}, "no-partners"));
    c.policies.push_back(std::move(p));
  }
  // Admin tier.
  {
    Policy p =
        ClusterPol("AdminNetworkPolicy", "isolate-dev", Tier::kAdmin, 10, Sel({{"env", "prod"}}));
    p.ingress.push_back(R(RuleAction::kDeny, {NsPods(Sel({{"env", "dev"}}))}, {}, "from-dev"));
    p.ingress.push_back(
        R(RuleAction::kAllow, {NsPods(Sel(monitoring))}, {Tcp(9090)}, "monitoring"));
    p.ingress.push_back(R(RuleAction::kPass, {NsPods(Sel({{"env", "prod"}}))}, {}, "prod"));
    p.egress.push_back(R(RuleAction::kDeny, {NsPods(Sel({{"env", "dev"}}))}, {}, "to-dev"));
    p.applies_ingress = p.applies_egress = true;
    c.policies.push_back(std::move(p));
  }
  {
    Policy p = ClusterPol("AdminNetworkPolicy", "dns", Tier::kAdmin, 20, LabelSelector{});
    Labels dns_ns = {{"kubernetes.io/metadata.name", "kube-system"}};
    p.egress.push_back(R(RuleAction::kAllow, {NsPods(Sel(dns_ns), Sel({{"k8s-app", "kube-dns"}}))},
                         {Udp(53), Tcp(53)}, "dns"));
    p.egress.push_back(R(RuleAction::kDeny, {Block("169.254.169.254/32")}, {}, "no-metadata"));
    p.applies_egress = true;
    c.policies.push_back(std::move(p));
  }
  for (int t = 0; t < 10; ++t) {
    Policy p = ClusterPol("AdminNetworkPolicy", "team-" + std::to_string(t), Tier::kAdmin, 100 + t,
                          Sel({{"team", "team-" + std::to_string(t)}}));
    p.ingress.push_back(R(RuleAction::kPass, {NsPods(Sel({{"team", "team-" + std::to_string(t)}}))},
                          {}, "same-team"));
    p.ingress.push_back(R(RuleAction::kDeny,
                          {NsPods(Sel({{"team", "team-" + std::to_string((t + 1) % 10)}}))},
                          {TcpRange(1, 1023)}, "no-privileged-from-neighbour"));
    p.egress.push_back(R(RuleAction::kAllow, {Block(partners[static_cast<size_t>(t)], {})},
                         {TcpRange(8000, 8999)}, "partner"));
    Peer nodes;
    nodes.kind = Peer::Kind::kNodes;
    nodes.node_selector = Sel({{"zone", t % 2 ? "a" : "b"}});
    p.egress.push_back(R(RuleAction::kAllow, {nodes}, {Tcp(10250)}, "kubelet"));
    p.applies_ingress = p.applies_egress = true;
    c.policies.push_back(std::move(p));
  }
  // Baseline tier.
  {
    Policy p =
        ClusterPol("BaselineAdminNetworkPolicy", "default", Tier::kBaseline, 0, LabelSelector{});
    p.ingress.push_back(R(RuleAction::kAllow, {NsPods(Sel(monitoring))}, {}, "monitoring"));
    p.ingress.push_back(R(RuleAction::kDeny, {NsPods(LabelSelector{})}, {}, "cluster"));
    p.egress.push_back(R(RuleAction::kAllow, {Block("0.0.0.0/0", {"10.0.0.0/8", "192.168.0.0/16"})},
                         {Tcp(443), Tcp(80)}, "internet"));
    p.egress.push_back(R(RuleAction::kDeny, {Block("192.168.0.0/16")}, {}, "infra"));
    p.applies_ingress = p.applies_egress = true;
    c.policies.push_back(std::move(p));
  }
  // Zero trust in production.
  {
    Policy p;
    p.kind = "DefaultDeny";
    p.name = "zero-trust-prod";
    p.tier = Tier::kDefault;
    p.subject.namespace_selector = Sel({{"env", "prod"}});
    p.applies_ingress = p.applies_egress = true;
    c.policies.push_back(std::move(p));
  }
  return c;
}

inline size_t CountRules(const policy::Cluster& c) {
  size_t n = 0;
  for (const auto& p : c.policies) n += p.ingress.size() + p.egress.size();
  return n;
}

}  // namespace bulkhead::bench
