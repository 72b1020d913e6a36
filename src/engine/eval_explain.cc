// Human-facing side of the evaluator: reason names, one-line explanations, endpoint text.
#include <string>

#include "engine/evaluator.h"

namespace bulkhead::engine {

const char* ReasonName(Reason r) {
  switch (r) {
    case Reason::kRule:
      return "rule";
    case Reason::kIsolated:
      return "isolated";
    case Reason::kDefaultAllow:
      return "default-allow";
    case Reason::kDefaultDeny:
      return "default-deny";
    case Reason::kExternal:
      return "external";
  }
  return "?";
}

std::string FlowEndpoint::ToString() const {
  if (workload != nullptr) return workload->Id();
  if (ip) return ip->ToString();
  return "<unknown>";
}

namespace {

std::string JoinIds(const std::vector<std::string>& ids) {
  std::string s;
  for (size_t i = 0; i < ids.size(); ++i) {
    if (i > 0) s += i + 1 == ids.size() ? " and " : ", ";
    s += ids[i];
  }
  return s;
}

std::string RuleRef(const DirectionVerdict& v) {
  std::string s = v.policy + " rule " + std::to_string(v.rule_index);
  if (!v.rule_name.empty()) s += " \"" + v.rule_name + "\"";
  return s;
}

}  // namespace

std::string DirectionVerdict::Explain() const {
  const bool enforced_allow = allowed && !(would_deny && mode != policy::Mode::kEnforce);
  std::string s = DirectionName(direction);
  s +=
      enforced_allow
          ? " allowed"
          : (allowed ? " allowed (" + std::string(ModeName(mode)) + " mode; enforcement would deny)"
                     : " denied");
  s += ": ";
  switch (reason) {
    case Reason::kExternal:
      s += "this end is outside the cluster, no policy applies";
      break;
    case Reason::kDefaultAllow:
      s += "no policy selects the workload for " + std::string(DirectionName(direction)) +
           " (default allow)";
      break;
    case Reason::kDefaultDeny:
      s += "default deny by " + policy + ", no rule allows it";
      break;
    case Reason::kRule:
      s += std::string(action ? ActionName(*action) : "?") + " by " + RuleRef(*this) + " (" +
           TierName(tier) + " tier)";
      break;
    case Reason::kIsolated:
      s += "isolated by " + JoinIds(isolated_by) + " and no rule allows it";
      break;
  }
  if (!passed_by.empty()) s += "; passed by " + JoinIds(passed_by);
  if (nearest_miss) {
    s += "; nearest rule: " + nearest_miss->policy + " rule " +
         std::to_string(nearest_miss->rule_index);
    if (!nearest_miss->rule_name.empty()) s += " \"" + nearest_miss->rule_name + "\"";
    s += " (" + nearest_miss->differed + " differs: " + nearest_miss->detail + ")";
  }
  if (would_deny && !audit_policy.empty()) {
    s += "; audit-mode " + audit_policy + " would deny it";
  }
  return s;
}

std::optional<FlowEndpoint> ResolveEndpoint(const policy::Cluster& cluster,
                                            const std::string& text) {
  if (auto ip = policy::IpAddr::Parse(text)) {
    FlowEndpoint e;
    e.ip = *ip;
    e.workload = cluster.FindWorkloadByIp(*ip);
    return e;
  }
  std::string id = text.find('/') == std::string::npos ? "default/" + text : text;
  if (const policy::Workload* w = cluster.FindWorkload(id)) {
    FlowEndpoint e;
    e.workload = w;
    return e;
  }
  return std::nullopt;
}

}  // namespace bulkhead::engine
