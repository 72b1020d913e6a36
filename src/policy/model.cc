// Small behaviour of the policy model: selector matching, names and formatting.
#include "policy/model.h"

#include <algorithm>
#include <cctype>
#include <map>

namespace bulkhead::policy {

std::string SourceRef::ToString() const {
  std::string s = file.empty() ? "<input>" : file;
  if (line > 0) {
    s += ":" + std::to_string(line);
    if (column > 0) s += ":" + std::to_string(column);
  }
  return s;
}

bool LabelRequirement::Matches(const Labels& labels) const {
  auto it = labels.find(key);
  bool has = it != labels.end();
  switch (op) {
    case SelectorOperator::kIn:
      return has && std::find(values.begin(), values.end(), it->second) != values.end();
    case SelectorOperator::kNotIn:
      return !has || std::find(values.begin(), values.end(), it->second) == values.end();
    case SelectorOperator::kExists:
      return has;
    case SelectorOperator::kDoesNotExist:
      return !has;
  }
  return false;
}

bool LabelSelector::Matches(const Labels& labels) const {
  for (const auto& [k, v] : match_labels) {
    auto it = labels.find(k);
    if (it == labels.end() || it->second != v) return false;
  }
  return std::all_of(match_expressions.begin(), match_expressions.end(),
                     [&](const LabelRequirement& r) { return r.Matches(labels); });
}

std::string LabelSelector::ToString() const {
  if (IsEmpty()) return "{}";
  std::string s;
  auto add = [&s](const std::string& part) {
    if (!s.empty()) s += ",";
    s += part;
  };
  for (const auto& [k, v] : match_labels) add(k + "=" + v);
  for (const auto& r : match_expressions) {
    std::string vals;
    for (const auto& v : r.values) vals += (vals.empty() ? "" : ",") + v;
    switch (r.op) {
      case SelectorOperator::kIn:
        add(r.key + " in (" + vals + ")");
        break;
      case SelectorOperator::kNotIn:
        add(r.key + " notin (" + vals + ")");
        break;
      case SelectorOperator::kExists:
        add(r.key);
        break;
      case SelectorOperator::kDoesNotExist:
        add("!" + r.key);
        break;
    }
  }
  return s;
}

const char* ProtocolName(Protocol p) {
  switch (p) {
    case Protocol::kICMP:
      return "ICMP";
    case Protocol::kTCP:
      return "TCP";
    case Protocol::kUDP:
      return "UDP";
    case Protocol::kICMPv6:
      return "ICMPv6";
    case Protocol::kSCTP:
      return "SCTP";
  }
  return "?";
}

std::optional<Protocol> ParseProtocol(std::string_view name) {
  std::string up;
  for (char c : name) up += static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  if (up == "TCP") return Protocol::kTCP;
  if (up == "UDP") return Protocol::kUDP;
  if (up == "SCTP") return Protocol::kSCTP;
  if (up == "ICMP") return Protocol::kICMP;
  if (up == "ICMPV6") return Protocol::kICMPv6;
  return std::nullopt;
}

const char* ModeName(Mode m) {
  switch (m) {
    case Mode::kEnforce:
      return "enforce";
    case Mode::kAudit:
      return "audit";
    case Mode::kLearn:
      return "learn";
  }
  return "?";
}

bool ProcessSelector::Matches(const std::string& name, const std::string& path) const {
  if (names.empty() && paths.empty()) return true;
  return std::find(names.begin(), names.end(), name) != names.end() ||
         std::find(paths.begin(), paths.end(), path) != paths.end();
}

const char* TierName(Tier t) {
  switch (t) {
    case Tier::kAdmin:
      return "admin";
    case Tier::kNamespace:
      return "namespace";
    case Tier::kBaseline:
      return "baseline";
    case Tier::kDefault:
      return "default";
  }
  return "?";
}

const char* ActionName(RuleAction a) {
  switch (a) {
    case RuleAction::kAllow:
      return "Allow";
    case RuleAction::kDeny:
      return "Deny";
    case RuleAction::kPass:
      return "Pass";
  }
  return "?";
}

const char* DirectionName(Direction d) { return d == Direction::kIngress ? "ingress" : "egress"; }

std::string PortMatch::ToString() const {
  std::string proto = protocol ? ProtocolName(*protocol) : "any";
  switch (kind) {
    case Kind::kAllPorts:
      return proto + "/*";
    case Kind::kRange:
      return first == last ? proto + "/" + std::to_string(first)
                           : proto + "/" + std::to_string(first) + "-" + std::to_string(last);
    case Kind::kNamed:
      return proto + "/" + name;
  }
  return "?";
}

std::string Policy::Id() const {
  return namespace_name.empty() ? kind + " " + name : kind + " " + namespace_name + "/" + name;
}

const Namespace* Cluster::FindNamespace(const std::string& name) const {
  for (const auto& ns : namespaces) {
    if (ns.name == name) return &ns;
  }
  return nullptr;
}

const Workload* Cluster::FindWorkload(const std::string& id) const {
  for (const auto& w : workloads) {
    if (w.Id() == id) return &w;
  }
  return nullptr;
}

const Workload* Cluster::FindWorkloadByIp(const IpAddr& ip) const {
  for (const auto& w : workloads) {
    if (std::find(w.ips.begin(), w.ips.end(), ip) != w.ips.end()) return &w;
  }
  return nullptr;
}

void ApplyWorkloadModes(Cluster& cluster) {
  if (cluster.workload_modes.empty()) return;
  std::map<std::string, Mode> by_id;
  for (const WorkloadModeOverride& o : cluster.workload_modes) by_id[o.Id()] = o.mode;
  for (Workload& w : cluster.workloads) {
    if (auto it = by_id.find(w.Id()); it != by_id.end()) w.mode = it->second;
  }
}

}  // namespace bulkhead::policy
