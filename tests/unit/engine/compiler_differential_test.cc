// Differential test: the compiled tables, looked up exactly as the datapath does, agree with
// the reference evaluator on random clusters, policy sets and flows.
//
// What is compared, per flow and per direction whose local end is a workload (egress: the
// source, ingress: the destination): the evaluator's verdict with the workload in enforce
// mode (the generator sets no workload or namespace modes; the datapath applies modes from
// endpoint config, outside the tables) against the table value:
//   allowed            == (verdict == ALLOW)
//   would_deny         == AUDIT_WOULD_DENY flag (an audit-mode policy would deny)
//   tier, reason       == tier, reason
//   policy, rule index == the rule table entry of rule_id (rule and DefaultDeny verdicts;
//                         rule_id 0 otherwise)
// Flows carry no process (the kernel sees none), where the evaluator lets process
// selectors match nothing. Every run checks at least BULKHEAD_DIFF_MIN_FLOWS (default
// 100000) directions of each kind. The run seed is random unless BULKHEAD_SEED is set; it
// is printed, and printed again with every failure for replay.
#include <gtest/gtest.h>

#include <cstdlib>
#include <iostream>
#include <map>
#include <random>
#include <set>
#include <sstream>

#include "cluster_builder.h"
#include "engine/compiler.h"
#include "engine/evaluator.h"

namespace bulkhead::engine {
namespace {

using namespace testing;  // NOLINT: test builders
using policy::Direction;

uint64_t EnvU64(const char* name, uint64_t fallback) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') return fallback;
  return std::strtoull(v, nullptr, 10);
}

class Gen {
 public:
  explicit Gen(uint64_t seed) : rng_(seed) {}
  int Int(int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng_); }
  bool Chance(double p) { return std::uniform_real_distribution<double>(0, 1)(rng_) < p; }
  template <typename T>
  const T& Pick(const std::vector<T>& v) {
    return v[static_cast<size_t>(Int(0, static_cast<int>(v.size()) - 1))];
  }
  std::mt19937_64& rng() { return rng_; }

 private:
  std::mt19937_64 rng_;
};

const std::vector<std::string> kApps = {"web", "api", "db", "cache", "mon"};
const std::vector<std::string> kEnvs = {"prod", "dev"};
const std::vector<std::string> kTeams = {"a", "b", "c"};
const std::vector<std::string> kAccounts = {"default", "api", "web"};

// Address classes outside the cluster, nested and disjoint, with excepts.
struct CidrChoice {
  std::string cidr;
  std::vector<std::string> except;
};
const std::vector<CidrChoice> kCidrs = {
    {"10.0.0.0/8", {}},  // contains the workload addresses: must not match them
    {"10.1.0.0/16", {"10.1.2.0/24"}},
    {"192.0.2.0/24", {"192.0.2.128/25"}},
    {"192.0.2.0/24", {"192.0.2.64/26", "192.0.2.10/32"}},
    {"192.0.2.128/25", {}},
    {"198.51.100.0/24", {}},
    {"203.0.113.0/25", {}},
    {"0.0.0.0/0", {"10.0.0.0/8"}},
    {"0.0.0.0/0", {"192.168.0.0/16", "172.16.0.0/12"}},
    {"172.16.0.0/12", {"172.16.5.0/24"}},
    {"fd00::/16", {}},
    {"2001:db8::/32", {"2001:db8:1::/48"}},
    {"2001:db8:1::/48", {}},
    {"::/0", {"fd00::/8"}},
};

LabelSelector RandomSelector(Gen& g, bool namespace_labels) {
  LabelSelector s;
  int n = g.Int(0, 2);
  for (int i = 0; i < n; ++i) {
    std::string key;
    std::vector<std::string> values;
    if (namespace_labels) {
      int k = g.Int(0, 2);
      key = k == 0 ? "env" : k == 1 ? "team" : "kubernetes.io/metadata.name";
      values = k == 0 ? kEnvs : k == 1 ? kTeams : std::vector<std::string>{"ns0", "ns1", "ns2"};
    } else {
      int k = g.Int(0, 9);
      key = k < 5 ? "app" : k < 7 ? "tier" : k < 9 ? "version" : "pod-template-hash";
      values = k < 5   ? kApps
               : k < 7 ? std::vector<std::string>{"front", "back"}
               : k < 9 ? std::vector<std::string>{"v1", "v2"}
                       : std::vector<std::string>{"h1", "h2"};
    }
    int op = g.Int(0, 5);
    if (op <= 2) {
      s.match_labels[key] = g.Pick(values);
    } else {
      LabelRequirement r;
      r.key = key;
      r.op = op == 3   ? SelectorOperator::kIn
             : op == 4 ? (g.Chance(0.5) ? SelectorOperator::kNotIn : SelectorOperator::kExists)
                       : SelectorOperator::kDoesNotExist;
      if (r.op == SelectorOperator::kIn || r.op == SelectorOperator::kNotIn) {
        r.values.push_back(g.Pick(values));
        if (g.Chance(0.4)) r.values.push_back(g.Pick(values));
      }
      s.match_expressions.push_back(std::move(r));
    }
  }
  return s;
}

PortMatch RandomPort(Gen& g, bool admin) {
  static const std::vector<Protocol> protos = {Protocol::kTCP, Protocol::kTCP, Protocol::kUDP,
                                               Protocol::kSCTP};
  int k = g.Int(0, 9);
  if (k <= 3) {
    static const std::vector<uint16_t> ports = {53, 80, 443, 3868, 5432, 8080, 9090, 1, 65535};
    return Port(g.Pick(protos), g.Pick(ports));
  }
  if (k <= 6) {
    int first = g.Chance(0.5) ? g.Pick(std::vector<int>{1, 1000, 5000, 8000, 32768, 65000})
                              : g.Int(1, 65535);
    int last = std::min(65535, first + g.Pick(std::vector<int>{0, 1, 15, 100, 1000, 40000}));
    return Range(g.Pick(protos), static_cast<uint16_t>(first), static_cast<uint16_t>(last));
  }
  if (k == 7 && !admin) return AllPortsOf(g.Pick(protos));
  static const std::vector<std::string> names = {"http", "dns", "metrics", "grpc", "nope"};
  if (admin) return Named(g.Pick(names), std::nullopt);  // ANP namedPort: no protocol
  return Named(g.Pick(names), g.Chance(0.7) ? Protocol::kTCP : g.Pick(protos));
}

std::vector<PortMatch> RandomPorts(Gen& g, bool admin) {
  std::vector<PortMatch> ports;
  if (g.Chance(0.3)) return ports;  // every port of every protocol
  int n = g.Int(1, 3);
  for (int i = 0; i < n; ++i) ports.push_back(RandomPort(g, admin));
  return ports;
}

Peer RandomIpBlock(Gen& g) {
  const CidrChoice& c = g.Pick(kCidrs);
  std::vector<std::string> except = c.except;
  if (!except.empty() && g.Chance(0.3)) except.pop_back();
  return IpBlock(c.cidr, except);
}

// A peer as a namespaced policy (NetworkPolicy, BulkheadPolicy) writes it.
Peer RandomNamespacedPeer(Gen& g, const std::string& ns, bool native) {
  Peer p;
  int k = g.Int(0, 9);
  if (k <= 3) {
    p = PodPeer(ns, RandomSelector(g, false));
  } else if (k <= 6) {
    p = NsPeer(RandomSelector(g, true), g.Chance(0.5)
                                            ? std::optional<LabelSelector>(RandomSelector(g, false))
                                            : std::nullopt);
  } else {
    return RandomIpBlock(g);
  }
  if (native && g.Chance(0.2)) p.service_account = g.Pick(kAccounts);
  if (native && g.Chance(0.05)) p.process = policy::ProcessSelector{{"psql"}, {}};
  return p;
}

// A peer as an admin or baseline policy writes it (namespaces, pods, networks, nodes).
Peer RandomAdminPeer(Gen& g) {
  int k = g.Int(0, 9);
  if (k <= 2) return NsPeer(RandomSelector(g, true));
  if (k <= 5) return NsPeer(RandomSelector(g, true), RandomSelector(g, false));
  if (k <= 8) {
    std::vector<std::string> cidrs = {g.Pick(kCidrs).cidr};
    if (g.Chance(0.3)) cidrs.push_back(g.Pick(kCidrs).cidr);
    return Networks(cidrs);
  }
  return NodesPeer(g.Chance(0.3) ? Sel() : Sel({{"zone", g.Chance(0.5) ? "a" : "b"}}));
}

std::vector<Rule> RandomNamespacedRules(Gen& g, const std::string& ns, bool native) {
  std::vector<Rule> rules;
  int n = g.Int(0, 3);
  for (int i = 0; i < n; ++i) {
    Rule r;
    r.action = native && g.Chance(0.35) ? RuleAction::kDeny : RuleAction::kAllow;
    if (g.Chance(0.15)) {
      r.all_peers = true;
    } else {
      int peers = g.Int(1, 3);
      for (int j = 0; j < peers; ++j) r.peers.push_back(RandomNamespacedPeer(g, ns, native));
    }
    r.ports = RandomPorts(g, false);
    rules.push_back(std::move(r));
  }
  return rules;
}

std::vector<Rule> RandomAdminRules(Gen& g, bool allow_pass) {
  std::vector<Rule> rules;
  int n = g.Int(0, 3);
  for (int i = 0; i < n; ++i) {
    Rule r;
    int a = g.Int(0, allow_pass ? 2 : 1);
    r.action = a == 0 ? RuleAction::kAllow : a == 1 ? RuleAction::kDeny : RuleAction::kPass;
    r.name = "r" + std::to_string(i);
    int peers = g.Int(1, 2);
    for (int j = 0; j < peers; ++j) r.peers.push_back(RandomAdminPeer(g));
    r.ports = RandomPorts(g, true);
    rules.push_back(std::move(r));
  }
  return rules;
}

// One random policy named `name` in one of the namespaces ns0..ns<namespaces-1> (or
// cluster-scoped): any kind, admin priorities unique (`priorities`), at most one BANP
// (`banp`).
Policy RandomPolicy(Gen& g, int namespaces, const std::string& name, std::set<int>& priorities,
                    bool& banp) {
  std::string ns = "ns" + std::to_string(g.Int(0, namespaces - 1));
  int kind = g.Int(0, 19);
  PolicyTypes types{g.Chance(0.7), g.Chance(0.5)};
  if (!types.ingress && !types.egress) types.ingress = true;
  if (kind <= 6) {
    return (NetPol(ns, name, RandomSelector(g, false), types,
                   types.ingress ? RandomNamespacedRules(g, ns, false) : std::vector<Rule>{},
                   types.egress ? RandomNamespacedRules(g, ns, false) : std::vector<Rule>{}));
  } else if (kind <= 10) {
    Policy p = NativePol(ns, name, RandomSelector(g, false), types,
                         types.ingress ? RandomNamespacedRules(g, ns, true) : std::vector<Rule>{},
                         types.egress ? RandomNamespacedRules(g, ns, true) : std::vector<Rule>{},
                         g.Chance(0.3) ? Mode::kAudit : Mode::kEnforce);
    if (g.Chance(0.05)) p.subject.process = policy::ProcessSelector{{"nginx"}, {}};
    return p;
  } else if (kind <= 14) {
    int prio;
    do {
      prio = g.Int(0, 50);
    } while (!priorities.insert(prio).second);
    Policy p =
        Anp(name, prio, RandomSelector(g, true),
            g.Chance(0.5) ? std::optional<LabelSelector>(RandomSelector(g, false)) : std::nullopt,
            RandomAdminRules(g, true), RandomAdminRules(g, true));
    if (g.Chance(0.3)) {
      p.kind = "BulkheadClusterPolicy";  // same shape, native: may be in audit mode
      p.mode = g.Chance(0.5) ? Mode::kAudit : Mode::kEnforce;
    }
    return p;
  } else if (kind <= 16) {
    Policy p =
        Banp(RandomSelector(g, true),
             g.Chance(0.5) ? std::optional<LabelSelector>(RandomSelector(g, false)) : std::nullopt,
             RandomAdminRules(g, false), RandomAdminRules(g, false));
    if (banp || g.Chance(0.4)) {
      p.kind = "BulkheadClusterPolicy";
      p.name = name;
      p.mode = g.Chance(0.4) ? Mode::kAudit : Mode::kEnforce;
    }
    banp = true;
    return p;
  } else {
    int scope = g.Int(0, 2);
    Policy p = DefaultDenyPol(
        name, scope == 0 ? ns : "",
        scope == 1 ? std::optional<LabelSelector>(RandomSelector(g, true)) : std::nullopt,
        g.Chance(0.5) ? RandomSelector(g, false) : Sel(), types);
    if (g.Chance(0.2)) p.mode = Mode::kAudit;
    return p;
  }
  return Policy{};
}

Cluster RandomCluster(Gen& g) {
  ClusterBuilder b;
  int namespaces = g.Int(1, 3);
  for (int i = 0; i < namespaces; ++i) {
    Labels l = {{"env", g.Pick(kEnvs)}};
    if (g.Chance(0.7)) l["team"] = g.Pick(kTeams);
    b.Ns("ns" + std::to_string(i), l);
  }
  int workloads = g.Int(2, 9);
  for (int i = 0; i < workloads; ++i) {
    int ns = g.Int(0, namespaces - 1);
    Labels l = {{"app", g.Pick(kApps)}};
    if (g.Chance(0.5)) l["tier"] = g.Chance(0.5) ? "front" : "back";
    if (g.Chance(0.3)) l["version"] = g.Chance(0.5) ? "v1" : "v2";
    if (g.Chance(0.5)) l["pod-template-hash"] = g.Chance(0.5) ? "h1" : "h2";
    std::vector<NamedPort> ports;
    if (g.Chance(0.6))
      ports.push_back({"http", Protocol::kTCP, g.Chance(0.5) ? uint16_t{80} : uint16_t{8080}});
    if (g.Chance(0.3)) ports.push_back({"metrics", Protocol::kTCP, 9090});
    if (g.Chance(0.3)) {
      ports.push_back({"dns", Protocol::kUDP, 53});
      if (g.Chance(0.5)) ports.push_back({"dns", Protocol::kTCP, 53});
    }
    if (g.Chance(0.2))
      ports.push_back({"grpc", g.Chance(0.7) ? Protocol::kTCP : Protocol::kSCTP,
                       static_cast<uint16_t>(g.Int(5000, 5100))});
    std::vector<std::string> ips = {"10." + std::to_string(ns) + ".0." + std::to_string(i + 1)};
    if (g.Chance(0.6)) ips.push_back("fd00::" + std::to_string(ns) + ":" + std::to_string(i + 1));
    b.Pod("ns" + std::to_string(ns), "w" + std::to_string(i), l, ips, ports);
  }
  if (g.Chance(0.6)) b.Node("n1", {{"zone", "a"}}, {"192.0.2.10", "fd00:ffff::1"});
  if (g.Chance(0.4)) b.Node("n2", {{"zone", "b"}}, {"10.255.0.1"});
  if (g.Chance(0.3)) b.Node("n3", {{"zone", "a"}}, {"192.0.2.200"});

  int policies = g.Int(1, 9);
  std::set<int> priorities;
  bool banp = false;
  for (int i = 0; i < policies; ++i) {
    b.Add(RandomPolicy(g, namespaces, "p" + std::to_string(i), priorities, banp));
  }
  Cluster c = b.Build();
  for (auto& w : c.workloads) w.node = g.Chance(0.5) ? "h1" : "h2";
  return c;
}

// Ports worth probing: every range edge and its neighbours, named port values, extremes.
std::vector<uint16_t> InterestingPorts(const Cluster& c) {
  std::set<int> s = {0, 1, 2, 53, 79, 80, 81, 443, 1023, 1024, 32767, 32768, 65534, 65535};
  auto add = [&s](int p) {
    for (int q : {p - 1, p, p + 1}) {
      if (q >= 0 && q <= 65535) s.insert(q);
    }
  };
  for (const auto& p : c.policies) {
    for (const auto* rules : {&p.ingress, &p.egress}) {
      for (const auto& r : *rules) {
        for (const auto& pm : r.ports) {
          if (pm.kind == PortMatch::Kind::kRange) {
            add(pm.first);
            add(pm.last);
          }
        }
      }
    }
  }
  for (const auto& w : c.workloads) {
    for (const auto& np : w.named_ports) add(np.port);
  }
  return std::vector<uint16_t>(s.begin(), s.end());
}

// Outside addresses worth probing: every CIDR's edges and their neighbours, node
// addresses, and a few others.
std::vector<IpAddr> InterestingAddresses(const Cluster& c, Gen& g) {
  std::set<IpAddr> s;
  auto add_cidr = [&](const Cidr& cidr) {
    s.insert(cidr.First());
    s.insert(cidr.Last());
    if (auto p = common::PrevAddr(cidr.First())) s.insert(*p);
    if (auto n = common::NextAddr(cidr.Last())) s.insert(*n);
    IpAddr mid = cidr.First();
    for (int i = cidr.prefix_len; i < mid.BitWidth(); ++i) {
      if (g.Chance(0.5)) mid.bytes[i / 8] |= static_cast<uint8_t>(1u << (7 - i % 8));
    }
    s.insert(mid);
  };
  for (const auto& p : c.policies) {
    for (const auto* rules : {&p.ingress, &p.egress}) {
      for (const auto& r : *rules) {
        for (const auto& peer : r.peers) {
          for (const auto& x : peer.cidrs) add_cidr(x);
          for (const auto& x : peer.except) add_cidr(x);
        }
      }
    }
  }
  for (const auto& n : c.nodes) {
    for (const auto& ip : n.ips) add_cidr(Cidr{ip, ip.BitWidth()});
  }
  for (const char* a : {"8.8.8.8", "1.1.1.1", "10.0.0.200", "192.0.2.10", "2001:db8::1",
                        "fd00::1:1", "fe80::1", "::1"}) {
    s.insert(Ip(a));
  }
  return std::vector<IpAddr>(s.begin(), s.end());
}

std::string DescribePolicy(const Policy& p) {
  std::ostringstream o;
  o << "  " << p.Id() << " tier=" << policy::TierName(p.tier) << " prio=" << p.priority
    << " mode=" << policy::ModeName(p.mode) << " subject ns=" << p.subject.namespace_name
    << " nssel=" << (p.subject.namespace_selector ? p.subject.namespace_selector->ToString() : "-")
    << " pods=" << p.subject.pod_selector.ToString() << (p.subject.process ? " process" : "")
    << " types=" << (p.applies_ingress ? "I" : "") << (p.applies_egress ? "E" : "") << "\n";
  for (Direction d : {Direction::kIngress, Direction::kEgress}) {
    const auto& rules = p.Rules(d);
    for (size_t i = 0; i < rules.size(); ++i) {
      const Rule& r = rules[i];
      o << "    " << policy::DirectionName(d) << "[" << i << "] " << policy::ActionName(r.action)
        << (r.all_peers ? " all-peers" : "");
      for (const auto& peer : r.peers) {
        switch (peer.kind) {
          case Peer::Kind::kPods:
            o << " pods(ns=" << peer.same_namespace
              << " nssel=" << (peer.namespace_selector ? peer.namespace_selector->ToString() : "-")
              << " pods=" << (peer.pod_selector ? peer.pod_selector->ToString() : "-")
              << (peer.service_account ? " sa=" + *peer.service_account : "")
              << (peer.process ? " process" : "") << ")";
            break;
          case Peer::Kind::kIpBlock:
            o << " ip(";
            for (const auto& x : peer.cidrs) o << x.ToString() << " ";
            for (const auto& x : peer.except) o << "-" << x.ToString() << " ";
            o << ")";
            break;
          case Peer::Kind::kNodes:
            o << " nodes(" << peer.node_selector.ToString() << ")";
            break;
        }
      }
      o << " ports:";
      for (const auto& pm : r.ports) o << " " << pm.ToString();
      o << "\n";
    }
  }
  return o.str();
}

std::string DescribeCluster(const Cluster& c) {
  std::ostringstream o;
  for (const auto& ns : c.namespaces) {
    o << "  ns " << ns.name << " " << LabelSelector{ns.labels, {}}.ToString() << "\n";
  }
  for (const auto& w : c.workloads) {
    o << "  workload " << w.Id() << " " << LabelSelector{w.labels, {}}.ToString()
      << " sa=" << w.service_account;
    for (const auto& ip : w.ips) o << " " << ip.ToString();
    for (const auto& np : w.named_ports) {
      o << " " << np.name << "=" << policy::ProtocolName(np.protocol) << "/" << np.port;
    }
    o << "\n";
  }
  for (const auto& n : c.nodes) {
    o << "  node " << n.name << " " << LabelSelector{n.labels, {}}.ToString();
    for (const auto& ip : n.ips) o << " " << ip.ToString();
    o << "\n";
  }
  for (const auto& p : c.policies) o << DescribePolicy(p);
  return o.str();
}

uint8_t AbiTierOf(policy::Tier t) {
  switch (t) {
    case policy::Tier::kAdmin:
      return BULKHEAD_TIER_ADMIN;
    case policy::Tier::kNamespace:
      return BULKHEAD_TIER_NAMESPACE;
    case policy::Tier::kBaseline:
      return BULKHEAD_TIER_BASELINE;
    case policy::Tier::kDefault:
      return BULKHEAD_TIER_DEFAULT;
  }
  return 255;
}

uint8_t AbiReasonOf(Reason r) {
  switch (r) {
    case Reason::kRule:
      return BULKHEAD_REASON_RULE;
    case Reason::kIsolated:
      return BULKHEAD_REASON_ISOLATED;
    case Reason::kDefaultAllow:
      return BULKHEAD_REASON_DEFAULT_ALLOW;
    case Reason::kDefaultDeny:
      return BULKHEAD_REASON_DEFAULT_DENY;
    case Reason::kExternal:
      return 255;
  }
  return 255;
}

// Empty when they agree, else what differs.
std::string Compare(const DirectionVerdict& v, const LookupResult& r, const CompiledPolicy& cp) {
  std::ostringstream o;
  if (!r.found) return "no port entry (coverage hole)";
  if (r.allowed() != v.allowed) o << " allowed " << r.allowed() << " vs " << v.allowed << ";";
  if (r.would_deny() != v.would_deny) {
    o << " would_deny " << r.would_deny() << " vs " << v.would_deny << ";";
  }
  if (r.value.tier != AbiTierOf(v.tier)) o << " tier " << int{r.value.tier} << ";";
  if (r.value.reason != AbiReasonOf(v.reason)) o << " reason " << int{r.value.reason} << ";";
  if (r.value.rule_id >= cp.rules.size()) {
    o << " rule_id " << r.value.rule_id << " out of range;";
  } else if (v.reason == Reason::kRule || v.reason == Reason::kDefaultDeny) {
    const CompiledRule& cr = cp.rules[r.value.rule_id];
    if (cr.policy != v.policy || cr.rule_index != v.rule_index || cr.direction != v.direction) {
      o << " rule " << cr.policy << "#" << cr.rule_index << " vs " << v.policy << "#"
        << v.rule_index << ";";
    }
  } else if (r.value.rule_id != BULKHEAD_RULE_NONE) {
    o << " rule_id " << r.value.rule_id << " where none decided;";
  }
  return o.str();
}

// How the cluster is compiled for one round: all at once; some workloads added one by one
// afterwards; one table per identity; an agent's view of node h1 (only its endpoints are
// checked); the agent's view built incrementally.
enum class Build { kFull, kIncremental, kUnshared, kNode, kNodeIncremental, kPinned };
const char* BuildName(Build b) {
  switch (b) {
    case Build::kFull:
      return "full";
    case Build::kIncremental:
      return "incremental";
    case Build::kUnshared:
      return "unshared";
    case Build::kNode:
      return "node h1";
    case Build::kNodeIncremental:
      return "node h1, incremental";
    case Build::kPinned:
      return "pinned to a previous compile, its tables reused";
  }
  return "?";
}

struct Totals {
  uint64_t egress = 0;
  uint64_t ingress = 0;
  uint64_t allowed = 0;
  uint64_t denied = 0;
  uint64_t would_deny = 0;
  uint64_t reused_tables = 0;  // pinned builds: tables that kept an earlier compile's id
  std::map<std::string, uint64_t> deciders;  // tier/reason/action seen
  int failures = 0;
};

void RunRound(uint64_t run_seed, int round, Totals& totals) {
  uint64_t seed = run_seed * 1000003u + static_cast<uint64_t>(round);
  Gen g(seed);
  Cluster cluster = RandomCluster(g);
  Build build = static_cast<Build>(round % 6);
  auto where = [&] {
    return "replay: BULKHEAD_SEED=" + std::to_string(run_seed) + " (round " +
           std::to_string(round) + ", " + BuildName(build) + ")\ncluster:\n" +
           DescribeCluster(cluster);
  };
  CompilerOptions options;
  options.share_tables = build != Build::kUnshared;
  if (build == Build::kNode || build == Build::kNodeIncremental) options.node = "h1";

  CompiledPolicy full_storage;
  absl::StatusOr<CompiledPolicy> prev_storage;
  std::unique_ptr<PolicyCompiler> inc;
  const CompiledPolicy* cp = nullptr;
  if (build == Build::kIncremental || build == Build::kNodeIncremental) {
    // Compile without the last few workloads, then add them one by one.
    Cluster partial = cluster;
    int withheld = std::min<int>(g.Int(1, 3), static_cast<int>(partial.workloads.size()) - 1);
    std::vector<policy::Workload> later(partial.workloads.end() - withheld,
                                        partial.workloads.end());
    partial.workloads.resize(partial.workloads.size() - withheld);
    auto created = PolicyCompiler::Create(partial, options);
    ASSERT_TRUE(created.ok()) << created.status() << "\n" << where();
    inc = std::move(*created);
    for (const auto& w : later) {
      auto delta = inc->AddWorkload(w);
      ASSERT_TRUE(delta.ok()) << delta.status() << "\n" << where();
    }
    cp = &inc->compiled();
  } else {
    if (build == Build::kPinned) {
      // Numbers from a previous compile of the cluster without some workloads and policies
      // (so keys and CIDRs come and go, and the unpinned numbering would shift).
      Cluster previous = cluster;
      for (int i = g.Int(1, 3); i > 0 && previous.workloads.size() > 1; --i) {
        previous.workloads.erase(previous.workloads.begin() +
                                 g.Int(0, static_cast<int>(previous.workloads.size()) - 1));
      }
      if (!previous.policies.empty() && g.Chance(0.5)) {
        previous.policies.erase(previous.policies.begin() +
                                g.Int(0, static_cast<int>(previous.policies.size()) - 1));
      }
      prev_storage = CompilePolicy(previous, options);
      ASSERT_TRUE(prev_storage.ok()) << prev_storage.status() << "\n" << where();
      // Its numbers, its rule ids and its tables where they are unchanged.
      options.pinned_identities = PinsOf(*prev_storage);
      options.pinned_rules = RulePinsOf(*prev_storage);
      options.reuse_tables_of = &*prev_storage;
      options.table_id_base = prev_storage->NextTableIdBase();
    }
    auto compiled = CompilePolicy(cluster, options);
    ASSERT_TRUE(compiled.ok()) << compiled.status() << "\n" << where();
    if (build == Build::kPinned) {
      for (const auto& t : compiled->tables) {
        if (t.table_id < options.table_id_base) ++totals.reused_tables;
      }
      std::set<identity::NumericIdentity> pinned;
      for (const auto& [k, id] : options.pinned_identities.workloads) pinned.insert(id);
      for (const auto& [k, id] : options.pinned_identities.cidrs) pinned.insert(id);
      for (const auto& id : compiled->identities) {
        const identity::NumericIdentity* want = nullptr;
        if (id.key) {
          auto it = options.pinned_identities.workloads.find(*id.key);
          if (it != options.pinned_identities.workloads.end()) want = &it->second;
        } else if (id.cidr) {
          auto it = options.pinned_identities.cidrs.find(*id.cidr);
          if (it != options.pinned_identities.cidrs.end()) want = &it->second;
        } else {
          continue;  // reserved
        }
        if (want != nullptr) {
          ASSERT_EQ(id.id, *want) << "a pinned identity was renumbered\n" << where();
        } else {
          ASSERT_EQ(pinned.count(id.id), 0u) << "a new key took pinned number " << id.id << "\n"
                                             << where();
        }
      }
    }
    full_storage = std::move(*compiled);
    cp = &full_storage;
    if (round % 10 == 0) {
      auto again = CompilePolicy(cluster, options);
      ASSERT_TRUE(again.ok());
      ASSERT_EQ(DumpCompiledPolicy(*again), DumpCompiledPolicy(full_storage))
          << "compile is not deterministic\n"
          << where();
    }
  }

  Evaluator ev(cluster);
  std::vector<uint16_t> ports = InterestingPorts(cluster);
  std::vector<IpAddr> outside = InterestingAddresses(cluster, g);
  static const std::vector<Protocol> protos = {Protocol::kTCP,  Protocol::kTCP,   Protocol::kTCP,
                                               Protocol::kUDP,  Protocol::kUDP,   Protocol::kSCTP,
                                               Protocol::kICMP, Protocol::kICMPv6};
  auto endpoint = [&](bool workload) {
    FlowEndpoint e;
    if (workload) {
      const policy::Workload& w = g.Pick(cluster.workloads);
      e.workload = &w;
      e.ip = g.Pick(w.ips);
      return e;
    }
    IpAddr ip = g.Pick(outside);
    e.workload = cluster.FindWorkloadByIp(ip);  // an address of a workload is that workload
    e.ip = ip;
    return e;
  };

  const int kFlows = 1500;
  for (int i = 0; i < kFlows && totals.failures < 5; ++i) {
    Flow f;
    bool src_workload = g.Chance(0.75);
    bool dst_workload = !src_workload || g.Chance(0.75);
    f.src = endpoint(src_workload);
    f.dst = endpoint(dst_workload);
    f.protocol = g.Pick(protos);
    f.port = policy::HasPorts(f.protocol)
                 ? (g.Chance(0.9) ? g.Pick(ports) : static_cast<uint16_t>(g.Int(0, 65535)))
                 : 0;
    for (Direction d : {Direction::kEgress, Direction::kIngress}) {
      const FlowEndpoint& local = d == Direction::kEgress ? f.src : f.dst;
      const FlowEndpoint& remote = d == Direction::kEgress ? f.dst : f.src;
      if (local.workload == nullptr) continue;
      auto endpoint_it = cp->endpoints.find(local.workload->Id());
      bool is_local = options.node.empty() || local.workload->node == options.node;
      if (endpoint_it == cp->endpoints.end()) {
        if (is_local) {
          ADD_FAILURE() << "no endpoint for local workload " << local.workload->Id() << "\n"
                        << where();
          ++totals.failures;
          return;
        }
        continue;  // another node's workload: no table in this agent's view
      }
      DirectionVerdict v = ev.EvaluateDirection(f, d);
      uint32_t table = endpoint_it->second.table_id;
      LookupResult r = Lookup(cp->maps, table, d, *remote.ip, f.protocol, f.port);
      std::string diff = Compare(v, r, *cp);
      (d == Direction::kEgress ? totals.egress : totals.ingress)++;
      (v.allowed ? totals.allowed : totals.denied)++;
      if (v.would_deny) ++totals.would_deny;
      totals.deciders[std::string(policy::TierName(v.tier)) + "/" + ReasonName(v.reason) +
                      (v.action ? std::string("/") + policy::ActionName(*v.action) : "")]++;
      if (!diff.empty()) {
        ++totals.failures;
        ADD_FAILURE() << policy::DirectionName(d) << " " << f.src.ToString() << " -> "
                      << f.dst.ToString() << " " << policy::ProtocolName(f.protocol) << "/"
                      << f.port << ":" << diff << "\n  evaluator: " << v.Explain() << "\n  table "
                      << table << " peer identity " << r.peer_identity << " class " << r.class_id
                      << " rule_id " << r.value.rule_id << "\n"
                      << where();
        return;
      }
    }
  }
}

TEST(CompilerDifferential, TablesAgreeWithTheEvaluatorOnRandomClustersAndFlows) {
  uint64_t seed = EnvU64("BULKHEAD_SEED", std::random_device{}());
  uint64_t min_flows = EnvU64("BULKHEAD_DIFF_MIN_FLOWS", 100000);
  std::cout << "compiler differential: seed " << seed << " (replay with BULKHEAD_SEED=" << seed
            << ")\n";
  Totals totals;
  int round = 0;
  while ((totals.egress < min_flows || totals.ingress < min_flows) && totals.failures == 0) {
    RunRound(seed, round++, totals);
    if (::testing::Test::HasFatalFailure()) break;
  }
  std::cout << "compiler differential: " << round << " clusters, " << totals.egress
            << " egress and " << totals.ingress << " ingress lookups, " << totals.allowed
            << " allowed, " << totals.denied << " denied, " << totals.would_deny
            << " audit would-deny\n";
  for (const auto& [k, n] : totals.deciders) std::cout << "  decided by " << k << ": " << n << "\n";
  EXPECT_EQ(totals.failures, 0) << "seed " << seed;
  EXPECT_GE(totals.egress, min_flows);
  EXPECT_GE(totals.ingress, min_flows);
  // The generator must reach every kind of decision, or the comparison proves little.
  for (const char* k : {"admin/rule/Allow", "admin/rule/Deny", "namespace/rule/Allow",
                        "namespace/rule/Deny", "namespace/isolated", "baseline/rule/Allow",
                        "baseline/rule/Deny", "default/default-allow", "default/default-deny"}) {
    EXPECT_GT(totals.deciders[k], 0u) << "no verdict decided by " << k;
  }
  EXPECT_GT(totals.would_deny, 0u);
  std::cout << "  tables reused from an earlier compile: " << totals.reused_tables << "\n";
  EXPECT_GT(totals.reused_tables, 0u) << "the pinned build never reused a table";
}

// ---- Incremental policy updates (PolicyCompiler::UpdatePolicies)

// One random change to a policy list, as an edit of the policy directory makes it: a
// policy's rules, ports, subject, priority or mode changed; a policy removed; a new one
// added anywhere; or one moved (which changes its input order).
std::string MutatePolicies(Gen& g, Cluster& c, int& next_name) {
  const int namespaces = static_cast<int>(c.namespaces.size());
  std::set<int> priorities;
  bool banp = false;
  for (const Policy& p : c.policies) {
    if (p.tier == policy::Tier::kAdmin) priorities.insert(p.priority);
    if (p.tier == policy::Tier::kBaseline) {
      priorities.insert(p.priority);
      banp = true;
    }
  }
  auto& ps = c.policies;
  const int op = ps.empty() ? 5 : g.Int(0, 11);
  const size_t i = ps.empty() ? 0 : static_cast<size_t>(g.Int(0, static_cast<int>(ps.size()) - 1));
  switch (op) {
    case 0:
    case 1: {  // new rules
      Policy& p = ps[i];
      const bool admin = p.tier == policy::Tier::kAdmin || p.tier == policy::Tier::kBaseline;
      const bool native = p.kind == "BulkheadPolicy";
      if (p.tier == policy::Tier::kDefault) return "no change (DefaultDeny has no rules)";
      if (admin) {
        if (!p.ingress.empty() || g.Chance(0.5))
          p.ingress = RandomAdminRules(g, p.tier == policy::Tier::kAdmin);
        if (!p.egress.empty() || g.Chance(0.5))
          p.egress = RandomAdminRules(g, p.tier == policy::Tier::kAdmin);
      } else {
        if (p.applies_ingress) p.ingress = RandomNamespacedRules(g, p.namespace_name, native);
        if (p.applies_egress) p.egress = RandomNamespacedRules(g, p.namespace_name, native);
      }
      return "rules of " + p.Id();
    }
    case 2:
    case 3: {  // one port of one rule (what the benchmark's probe flips)
      Policy& p = ps[i];
      auto& rules = !p.ingress.empty() ? p.ingress : p.egress;
      if (rules.empty()) return "no change (no rules)";
      Rule& r = rules[static_cast<size_t>(g.Int(0, static_cast<int>(rules.size()) - 1))];
      const bool admin = p.tier == policy::Tier::kAdmin || p.tier == policy::Tier::kBaseline;
      if (r.ports.empty() || g.Chance(0.3)) {
        r.ports.push_back(RandomPort(g, admin));
      } else {
        r.ports[0] = RandomPort(g, admin);
      }
      return "a port of " + p.Id();
    }
    case 4: {  // subject
      Policy& p = ps[i];
      p.subject.pod_selector = RandomSelector(g, false);
      if (p.subject.namespace_selector) p.subject.namespace_selector = RandomSelector(g, true);
      return "subject of " + p.Id();
    }
    case 5:
    case 6: {  // a new policy
      Policy p = RandomPolicy(g, namespaces, "q" + std::to_string(next_name++), priorities, banp);
      const std::string id = p.Id();
      ps.insert(ps.begin() + g.Int(0, static_cast<int>(ps.size())), std::move(p));
      return "added " + id;
    }
    case 7:
    case 8: {
      const std::string id = ps[i].Id();
      ps.erase(ps.begin() + static_cast<long>(i));
      return "removed " + id;
    }
    case 9: {  // priority or mode
      Policy& p = ps[i];
      if (p.tier == policy::Tier::kAdmin) {
        int prio;
        do {
          prio = g.Int(0, 50);
        } while (!priorities.insert(prio).second);
        p.priority = prio;
        return "priority of " + p.Id();
      }
      p.mode = p.mode == Mode::kEnforce ? Mode::kAudit : Mode::kEnforce;
      return "mode of " + p.Id();
    }
    case 10: {  // policy types
      Policy& p = ps[i];
      if (p.tier != policy::Tier::kNamespace && p.tier != policy::Tier::kDefault) {
        return "no change (admin tier)";
      }
      p.applies_egress = !p.applies_egress;
      if (!p.applies_egress) p.egress.clear();
      if (!p.applies_ingress && !p.applies_egress) p.applies_ingress = true;
      return "policy types of " + p.Id();
    }
    default: {  // moved
      Policy p = ps[i];
      ps.erase(ps.begin() + static_cast<long>(i));
      ps.insert(ps.begin() + g.Int(0, static_cast<int>(ps.size())), std::move(p));
      return "moved " + ps[i].Id();
    }
  }
}

// Empty when `inc` (updated in place) and `full` (compiled afresh with the previous numbers
// pinned) agree: the same rule table, identities and ipcache, the same endpoints with the
// same identity, mode and table contents, and nothing else in the maps.
std::string CompareUpdate(const CompiledPolicy& inc, const CompiledPolicy& full) {
  std::ostringstream o;
  if (inc.rules.size() != full.rules.size()) {
    o << " rule table size " << inc.rules.size() << " vs " << full.rules.size() << ";";
  }
  for (size_t id = 0; id < std::min(inc.rules.size(), full.rules.size()); ++id) {
    const CompiledRule& a = inc.rules[id];
    const CompiledRule& b = full.rules[id];
    if (std::tie(a.policy, a.policy_kind, a.policy_namespace, a.policy_name, a.direction,
                 a.rule_index, a.rule_name, a.tier, a.action, a.mode) !=
        std::tie(b.policy, b.policy_kind, b.policy_namespace, b.policy_name, b.direction,
                 b.rule_index, b.rule_name, b.tier, b.action, b.mode)) {
      o << " rule " << id << ": " << a.policy << "#" << a.rule_index << " vs " << b.policy << "#"
        << b.rule_index << ";";
    }
  }
  if (inc.identities.size() != full.identities.size()) o << " identity count differs;";
  for (size_t k = 0; k < std::min(inc.identities.size(), full.identities.size()); ++k) {
    const CompiledIdentity& a = inc.identities[k];
    const CompiledIdentity& b = full.identities[k];
    if (a.id != b.id || a.key != b.key || a.cidr != b.cidr || a.workloads != b.workloads ||
        (a.table_id == 0) != (b.table_id == 0)) {
      o << " identity " << a.id << " vs " << b.id << ";";
    }
  }
  auto ia = inc.maps.ipcache.Entries();
  auto ib = full.maps.ipcache.Entries();
  if (ia.size() != ib.size()) o << " ipcache size;";
  for (size_t k = 0; k < std::min(ia.size(), ib.size()); ++k) {
    if (ToBytes(ia[k].first) != ToBytes(ib[k].first) ||
        ToBytes(ia[k].second) != ToBytes(ib[k].second)) {
      o << " ipcache entry " << k << ";";
    }
  }
  if (inc.endpoints.size() != full.endpoints.size()) o << " endpoint count;";
  auto content = [](const CompiledPolicy& cp, uint32_t table_id) {
    std::string s;
    cp.maps.peers.AppendTableContent(table_id, &s);
    s += '|';
    cp.maps.ports.AppendTableContent(table_id, &s);
    return s;
  };
  for (const auto& [w, b] : full.endpoints) {
    auto it = inc.endpoints.find(w);
    if (it == inc.endpoints.end()) {
      o << " no endpoint " << w << ";";
      continue;
    }
    const EndpointBinding& a = it->second;
    if (a.identity != b.identity || a.mode != b.mode) o << " binding of " << w << ";";
    if (inc.FindTable(a.table_id) == nullptr) o << " " << w << "'s table is not listed;";
    if (content(inc, a.table_id) != content(full, b.table_id)) {
      o << " table of " << w << " (" << a.table_id << " vs " << b.table_id << ") differs;";
    }
  }
  if (inc.tables.size() != full.tables.size()) {
    o << " " << inc.tables.size() << " tables vs " << full.tables.size() << ";";
  }
  for (const CompiledTable& t : inc.tables) {
    const CompiledIdentity* id =
        t.identities.empty() ? nullptr : inc.FindIdentity(t.identities.front());
    if (id == nullptr || id->table_id != t.table_id) o << " table " << t.table_id << " unused;";
  }
  if (inc.maps.peers.size() != full.maps.peers.size() ||
      inc.maps.ports.size() != full.maps.ports.size()) {
    o << " map sizes " << inc.maps.peers.size() << "/" << inc.maps.ports.size() << " vs "
      << full.maps.peers.size() << "/" << full.maps.ports.size() << " (stale entries?);";
  }
  return o.str();
}

// The compile's policies as shared objects, as the agent's load cache hands them over: an
// unchanged policy is the object the compiler holds (known by its address), except now and
// then an equal copy (compared); a changed or new one is a new object.
std::vector<std::shared_ptr<const Policy>> SharedNext(const PolicyCompiler& inc,
                                                      const std::vector<Policy>& policies, Gen& g) {
  std::map<std::string, std::shared_ptr<const Policy>> held;
  for (auto& p : inc.shared_policies()) held[p->Id()] = p;
  std::vector<std::shared_ptr<const Policy>> next;
  for (const Policy& p : policies) {
    auto it = held.find(p.Id());
    if (it != held.end() && *it->second == p && !g.Chance(0.1)) {
      next.push_back(it->second);
    } else {
      next.push_back(std::make_shared<const Policy>(p));
    }
  }
  return next;
}

absl::StatusOr<std::unique_ptr<PolicyCompiler>> CreateShared(
    const Cluster& cluster, const CompilerOptions& options,
    std::vector<std::shared_ptr<const Policy>> policies) {
  Cluster rest = cluster;
  rest.policies.clear();
  return PolicyCompiler::Create(std::move(rest), std::move(policies), options);
}

// `shared`: the compiler is created and updated with shared policy objects
// (PolicyCompiler::Create with policies apart, UpdatePolicies of shared objects).
void RunPolicyUpdates(bool shared) {
  uint64_t seed = EnvU64("BULKHEAD_SEED", std::random_device{}());
  std::cout << "policy updates" << (shared ? " (shared)" : "") << ": seed " << seed
            << " (replay with BULKHEAD_SEED=" << seed << ")\n";
  int incremental = 0, refused = 0, flows = 0, tables_computed = 0;
  std::map<std::string, int> why_refused;
  for (int round = 0; round < 150 && !::testing::Test::HasFailure(); ++round) {
    Gen g(seed * 1000003u + static_cast<uint64_t>(round));
    Cluster cluster = RandomCluster(g);
    CompilerOptions options;
    if (round % 2 == 1) options.node = "h1";
    std::vector<std::shared_ptr<const Policy>> first;
    for (const Policy& p : cluster.policies) first.push_back(std::make_shared<const Policy>(p));
    auto created =
        shared ? CreateShared(cluster, options, first) : PolicyCompiler::Create(cluster, options);
    ASSERT_TRUE(created.ok()) << created.status();
    std::unique_ptr<PolicyCompiler> inc = std::move(*created);
    first.clear();  // the compiler keeps what it needs
    int next_name = 0;
    std::string history;
    for (int step = 0; step < 8; ++step) {
      const int changes = g.Int(1, 2);
      for (int k = 0; k < changes; ++k) history += MutatePolicies(g, cluster, next_name) + "; ";
      const CompiledPolicy prev = inc->compiled();
      CompilerOptions ref_options = options;
      ref_options.pinned_identities = PinsOf(prev);
      ref_options.pinned_rules = RulePinsOf(prev);
      ref_options.reuse_tables_of = &prev;
      ref_options.table_id_base = prev.NextTableIdBase();
      auto where = [&] {
        return "replay: BULKHEAD_SEED=" + std::to_string(seed) + " (round " +
               std::to_string(round) + ", step " + std::to_string(step) + ")\nchanges: " + history +
               "\ncluster now:\n" + DescribeCluster(cluster);
      };
      std::vector<Policy> next = cluster.policies;
      std::vector<std::shared_ptr<const Policy>> next_shared;
      if (shared) next_shared = SharedNext(*inc, cluster.policies, g);
      auto update = shared ? inc->UpdatePolicies(next_shared, ref_options.table_id_base)
                           : inc->UpdatePolicies(next, ref_options.table_id_base);
      ASSERT_TRUE(update.ok()) << update.status() << "\n" << where();
      if (update->incremental) {
        ++incremental;
        tables_computed += static_cast<int>(update->tables_computed);
        for (uint32_t t : update->tables_written) {
          ASSERT_GE(t, ref_options.table_id_base) << where();
        }
        if (!update->rule_table_changed) {
          ASSERT_TRUE(prev.rules == inc->compiled().rules) << "rule table changed\n" << where();
        }
        if (!update->rule_ids_changed) {
          ASSERT_TRUE(RulePinsOf(prev) == RulePinsOf(inc->compiled())) << where();
        }
      } else {
        ++refused;
        why_refused[update->why]++;
        // As the agent does: compile afresh with the numbers pinned.
        auto again = shared ? CreateShared(cluster, ref_options, next_shared)
                            : PolicyCompiler::Create(cluster, ref_options);
        ASSERT_TRUE(again.ok()) << again.status() << "\n" << where();
        inc = std::move(*again);
      }
      auto full = CompilePolicy(cluster, ref_options);
      ASSERT_TRUE(full.ok()) << full.status() << "\n" << where();
      const CompiledPolicy& cp = inc->compiled();
      std::string diff = CompareUpdate(cp, *full);
      ASSERT_TRUE(diff.empty()) << (update->incremental ? "incremental" : "refused") << ":" << diff
                                << "\n"
                                << where();
      std::vector<const Policy*> live = inc->policies();
      ASSERT_EQ(live.size(), cluster.policies.size()) << where();
      for (size_t k = 0; k < live.size(); ++k) {
        ASSERT_TRUE(*live[k] == cluster.policies[k]) << k << "\n" << where();
      }
      // And the tables agree with the evaluator on a sample of flows.
      Evaluator ev(cluster);
      std::vector<uint16_t> ports = InterestingPorts(cluster);
      std::vector<IpAddr> outside = InterestingAddresses(cluster, g);
      for (int f = 0; f < 200; ++f) {
        const policy::Workload& local = g.Pick(cluster.workloads);
        auto ep = cp.endpoints.find(local.Id());
        if (ep == cp.endpoints.end()) continue;
        Flow flow;
        FlowEndpoint self{&local, g.Pick(local.ips)};
        FlowEndpoint other;
        if (g.Chance(0.7)) {
          const policy::Workload& w = g.Pick(cluster.workloads);
          other = FlowEndpoint{&w, g.Pick(w.ips)};
        } else {
          IpAddr ip = g.Pick(outside);
          other = FlowEndpoint{cluster.FindWorkloadByIp(ip), ip};
        }
        const Direction d = g.Chance(0.5) ? Direction::kEgress : Direction::kIngress;
        flow.src = d == Direction::kEgress ? self : other;
        flow.dst = d == Direction::kEgress ? other : self;
        flow.protocol = g.Chance(0.6) ? Protocol::kTCP : Protocol::kUDP;
        flow.port = g.Pick(ports);
        DirectionVerdict v = ev.EvaluateDirection(flow, d);
        LookupResult r =
            Lookup(cp.maps, ep->second.table_id, d, *other.ip, flow.protocol, flow.port);
        std::string vdiff = Compare(v, r, cp);
        ASSERT_TRUE(vdiff.empty()) << policy::DirectionName(d) << " " << flow.src.ToString()
                                   << " -> " << flow.dst.ToString() << " port " << flow.port << ":"
                                   << vdiff << "\n  evaluator: " << v.Explain() << "\n"
                                   << where();
        ++flows;
      }
    }
  }
  std::cout << "policy updates: " << incremental << " incremental, " << refused
            << " compiled afresh, " << tables_computed << " tables computed, " << flows
            << " flows checked\n";
  for (const auto& [why, n] : why_refused)
    std::cout << "  afresh because " << why << ": " << n << "\n";
  EXPECT_GT(incremental, refused) << "the generator rarely reaches the incremental path";
  EXPECT_GT(tables_computed, 0);
}

TEST(CompilerDifferential, PolicyUpdatesEqualAFullCompileWithTheSameNumbers) {
  RunPolicyUpdates(/*shared=*/false);
}

TEST(CompilerDifferential, PolicyUpdatesOfSharedPoliciesEqualAFullCompileWithTheSameNumbers) {
  RunPolicyUpdates(/*shared=*/true);
}

}  // namespace
}  // namespace bulkhead::engine
