// The reports of `bulkhead simulate` as JSON for tools and aligned text for people.
#include "cli/simulate_report.h"

#include <algorithm>
#include <tuple>

namespace bulkhead::cli {

namespace {

const char* VerdictWord(bool allowed) { return allowed ? "allow" : "deny"; }

// "ns/name" for a workload, the address for an external end.
std::string EndpointName(const engine::FlowEndpoint& ep) {
  if (ep.workload != nullptr) return ep.workload->Id();
  if (ep.ip) return ep.ip->ToString();
  return "?";
}

Json NullIfEmpty(const std::string& s) { return s.empty() ? Json(nullptr) : Json(s); }

std::string RuleLabel(int index, const std::string& name) {
  std::string s = "rule " + std::to_string(index);
  if (!name.empty()) s += " \"" + name + "\"";
  return s;
}

// What decided a direction, in a few words (the explanation line says the rest).
std::string DecisionSummary(const engine::DirectionVerdict& v) {
  switch (v.reason) {
    case engine::Reason::kRule: {
      std::string s = v.policy + ", " + RuleLabel(v.rule_index, v.rule_name);
      if (v.action) s += std::string(" (") + policy::ActionName(*v.action) + ")";
      return s;
    }
    case engine::Reason::kIsolated:
      return "isolated, no rule allows";
    case engine::Reason::kDefaultAllow:
      return "no policy applies: default allow";
    case engine::Reason::kDefaultDeny:
      return v.policy.empty() ? "default deny" : "default deny (" + v.policy + ")";
    case engine::Reason::kExternal:
      return "outside the cluster: nothing enforced here";
  }
  return "?";
}

}  // namespace

// ---- single flow ----

Json DirectionJson(const engine::DirectionVerdict& v) {
  Json j;
  j["verdict"] = VerdictWord(v.allowed);
  j["reason"] = engine::ReasonName(v.reason);
  j["tier"] = policy::TierName(v.tier);
  if (v.policy.empty()) {
    j["policy"] = nullptr;
  } else {
    j["policy"] = {{"id", v.policy},
                   {"kind", v.policy_kind},
                   {"namespace", NullIfEmpty(v.policy_namespace)},
                   {"name", v.policy_name}};
  }
  j["ruleIndex"] = v.rule_index >= 0 ? Json(v.rule_index) : Json(nullptr);
  j["ruleName"] = NullIfEmpty(v.rule_name);
  j["action"] = v.action ? Json(policy::ActionName(*v.action)) : Json(nullptr);
  j["passedBy"] = v.passed_by;
  j["isolatedBy"] = v.isolated_by;
  if (v.nearest_miss) {
    const auto& m = *v.nearest_miss;
    j["nearestMiss"] = {{"policy", m.policy},
                        {"ruleIndex", m.rule_index >= 0 ? Json(m.rule_index) : Json(nullptr)},
                        {"ruleName", NullIfEmpty(m.rule_name)},
                        {"differed", m.differed},
                        {"detail", m.detail}};
  } else {
    j["nearestMiss"] = nullptr;
  }
  j["mode"] = policy::ModeName(v.mode);
  if (v.would_deny) j["wouldDeny"] = true;
  if (!v.audit_policy.empty()) j["auditPolicy"] = v.audit_policy;
  j["explanation"] = v.Explain();
  return j;
}

Json FlowJson(const engine::Flow& flow, const engine::Verdict& verdict) {
  Json j;
  j["from"] = EndpointName(flow.src);
  j["to"] = EndpointName(flow.dst);
  // A workload named by one of its addresses: keep the address the caller gave.
  if (flow.src.workload != nullptr && flow.src.ip) j["fromAddress"] = flow.src.ip->ToString();
  if (flow.dst.workload != nullptr && flow.dst.ip) j["toAddress"] = flow.dst.ip->ToString();
  if (!flow.src_process.empty()) j["fromProcess"] = flow.src_process;
  j["port"] = flow.port;
  j["protocol"] = policy::ProtocolName(flow.protocol);
  j["verdict"] = VerdictWord(verdict.allowed);
  j["egress"] = DirectionJson(verdict.egress);
  j["ingress"] = DirectionJson(verdict.ingress);
  return j;
}

std::string FlowText(const engine::Flow& flow, const engine::Verdict& verdict, const Style& style) {
  std::string out;
  std::string src = EndpointName(flow.src);
  std::string dst = EndpointName(flow.dst);
  if (flow.src.workload != nullptr && flow.src.ip) src += " (" + flow.src.ip->ToString() + ")";
  if (flow.dst.workload != nullptr && flow.dst.ip) dst += " (" + flow.dst.ip->ToString() + ")";
  std::string what = src + " -> " + dst + "  " + policy::ProtocolName(flow.protocol) + "/" +
                     std::to_string(flow.port);
  if (!flow.src_process.empty()) what += "  process " + flow.src_process;

  bool would_deny = verdict.egress.would_deny || verdict.ingress.would_deny;
  out += style.Paint(verdict.allowed ? "ALLOWED" : "DENIED",
                     verdict.allowed ? (would_deny ? Color::kYellow : Color::kGreen) : Color::kRed);
  out += "  " + style.Paint(what, Color::kBold) + "\n";
  if (verdict.allowed && would_deny) {
    out += "  " + style.Paint("would be denied when enforced (audit/learn mode)", Color::kYellow) +
           "\n";
  }
  out += "\n";

  struct Dir {
    const engine::DirectionVerdict* v;
    std::string endpoint;
  };
  const Dir dirs[] = {{&verdict.egress, EndpointName(flow.src)},
                      {&verdict.ingress, EndpointName(flow.dst)}};
  // One table: a line per direction, its details underneath in the endpoint column.
  std::vector<std::vector<Cell>> rows;
  for (const auto& d : dirs) {
    const auto& v = *d.v;
    rows.push_back({{policy::DirectionName(v.direction), Color::kBold},
                    {VerdictWord(v.allowed), v.allowed ? Color::kGreen : Color::kRed},
                    {d.endpoint},
                    {std::string(policy::TierName(v.tier)) + " tier"},
                    {DecisionSummary(v)}});
    auto detail = [&rows](std::string label, std::string text, Color color = Color::kPlain) {
      rows.push_back({{""}, {""}, {std::move(label), Color::kDim}, {std::move(text), color}});
    };
    // The evaluator's explanation already names isolating policies, Pass rules, the
    // nearest miss and audit would-denies, as "; "-separated clauses: one line each reads
    // better than one long line. Only the mode is added, when it is not enforce.
    std::string why = v.Explain();
    bool first = true;
    for (size_t start = 0; start <= why.size();) {
      size_t end = why.find("; ", start);
      if (end == std::string::npos) end = why.size();
      detail(first ? "why" : "", why.substr(start, end - start));
      first = false;
      start = end + 2;
    }
    if (v.mode != policy::Mode::kEnforce) {
      std::string m = std::string(policy::ModeName(v.mode)) +
                      (v.would_deny ? ": passes now, enforcement would deny it"
                                    : ": traffic is not dropped in this mode");
      detail("mode", m, v.would_deny ? Color::kYellow : Color::kPlain);
    }
  }
  for (const auto& line : AlignColumns(rows, "  ", style)) out += "  " + line + "\n";
  return out;
}

// ---- reachability matrix ----

ReachabilityMatrix ComputeMatrix(const policy::Cluster& cluster, policy::Protocol protocol,
                                 uint16_t port) {
  std::vector<const policy::Workload*> ws;
  for (const auto& w : cluster.workloads) ws.push_back(&w);
  std::sort(ws.begin(), ws.end(),
            [](const policy::Workload* a, const policy::Workload* b) { return a->Id() < b->Id(); });
  ReachabilityMatrix m;
  m.protocol = protocol;
  m.port = port;
  engine::Evaluator evaluator(cluster);
  for (const auto* w : ws) m.workloads.push_back(w->Id());
  m.cells.assign(ws.size(), std::vector<MatrixCell>(ws.size()));
  for (size_t i = 0; i < ws.size(); ++i) {
    for (size_t k = 0; k < ws.size(); ++k) {
      engine::Flow flow;
      flow.src.workload = ws[i];
      flow.dst.workload = ws[k];
      flow.protocol = protocol;
      flow.port = port;
      engine::Verdict v = evaluator.Evaluate(flow);
      m.cells[i][k] = {v.allowed, v.allowed && (v.egress.would_deny || v.ingress.would_deny)};
    }
  }
  return m;
}

Json MatrixJson(const ReachabilityMatrix& m) {
  Json j;
  j["port"] = m.port;
  j["protocol"] = policy::ProtocolName(m.protocol);
  j["workloads"] = m.workloads;
  Json matrix = Json::object();
  for (size_t i = 0; i < m.workloads.size(); ++i) {
    Json row = Json::object();
    for (size_t k = 0; k < m.workloads.size(); ++k) {
      row[m.workloads[k]] = VerdictWord(m.cells[i][k].allowed);
    }
    matrix[m.workloads[i]] = std::move(row);
  }
  j["matrix"] = std::move(matrix);
  return j;
}

std::string MatrixText(const ReachabilityMatrix& m, const Style& style) {
  std::string proto_port =
      std::string(policy::ProtocolName(m.protocol)) + "/" + std::to_string(m.port);
  if (m.workloads.empty()) return "No workloads: nothing to evaluate on " + proto_port + ".\n";
  std::string out =
      style.Paint("Reachability on " + proto_port, Color::kBold) + "  (row: from, column: to)\n\n";
  // Columns are numbered: names are too long for column headers.
  std::vector<std::vector<Cell>> rows;
  std::vector<Cell> header = {{""}, {""}};
  for (size_t k = 0; k < m.workloads.size(); ++k) header.push_back({std::to_string(k + 1)});
  rows.push_back(std::move(header));
  size_t allowed = 0;
  for (size_t i = 0; i < m.workloads.size(); ++i) {
    std::vector<Cell> row = {{std::to_string(i + 1)}, {m.workloads[i]}};
    for (size_t k = 0; k < m.workloads.size(); ++k) {
      const auto& c = m.cells[i][k];
      if (c.allowed) ++allowed;
      if (!c.allowed) {
        row.push_back({"-", Color::kRed});
      } else if (c.would_deny) {
        row.push_back({"!", Color::kYellow});
      } else {
        row.push_back({"+", Color::kGreen});
      }
    }
    rows.push_back(std::move(row));
  }
  for (const auto& line : AlignColumns(rows, "  ", style)) out += "  " + line + "\n";
  size_t total = m.workloads.size() * m.workloads.size();
  out += "\n  " + style.Paint("+", Color::kGreen) + " allowed   " + style.Paint("-", Color::kRed) +
         " denied   " + style.Paint("!", Color::kYellow) +
         " allowed by audit/learn mode, denied when enforced\n";
  out += "  " + std::to_string(allowed) + " of " + std::to_string(total) +
         " flows allowed (each workload to itself included)\n";
  return out;
}

// ---- connectivity ----

std::vector<common::Cidr> RangeToCidrs(const common::IpAddr& first, const common::IpAddr& last) {
  std::vector<common::Cidr> out;
  if (first.v6 != last.v6 || last < first) return out;
  common::IpAddr cur = first;
  while (true) {
    // The shortest prefix that starts at `cur` and ends inside the range.
    common::Cidr best{cur, cur.BitWidth()};
    for (int len = 0; len <= cur.BitWidth(); ++len) {
      common::Cidr c{cur, len};
      if (c.Contains(cur) && !(last < c.Last())) {
        best = c;
        break;
      }
    }
    out.push_back(best);
    common::IpAddr end = best.Last();
    if (!(end < last)) break;
    auto next = common::NextAddr(end);
    if (!next) break;
    cur = *next;
  }
  return out;
}

std::string DescribeRange(const common::IpAddr& first, const common::IpAddr& last) {
  auto cidrs = RangeToCidrs(first, last);
  if (cidrs.size() == 1) return cidrs[0].ToString();
  return first.ToString() + "-" + last.ToString();
}

std::string DescribeEnd(const engine::ConnEnd& end) {
  if (end.workload != nullptr) return end.workload->Id();
  return DescribeRange(end.first, end.last);
}

namespace {
// Workloads by id before external ranges by (family, first address).
bool EndLess(const engine::ConnEnd& a, const engine::ConnEnd& b) {
  bool ae = a.workload == nullptr;
  bool be = b.workload == nullptr;
  if (ae != be) return !ae;
  if (!ae) return a.workload->Id() < b.workload->Id();
  return std::tie(a.first, a.last) < std::tie(b.first, b.last);
}

Json RangeJson(const engine::ConnEnd& end) {
  Json cidrs = Json::array();
  for (const auto& c : RangeToCidrs(end.first, end.last)) cidrs.push_back(c.ToString());
  return {{"first", end.first.ToString()}, {"last", end.last.ToString()}, {"cidrs", cidrs}};
}
}  // namespace

std::vector<engine::ConnectivityEntry> SortedEntries(const engine::ConnectivityReport& report) {
  auto entries = report.entries;
  std::stable_sort(entries.begin(), entries.end(),
                   [](const engine::ConnectivityEntry& a, const engine::ConnectivityEntry& b) {
                     if (EndLess(a.src, b.src)) return true;
                     if (EndLess(b.src, a.src)) return false;
                     return EndLess(a.dst, b.dst);
                   });
  return entries;
}

Json ConnectivityJson(const engine::ConnectivityReport& report) {
  Json connections = Json::array();
  for (const auto& e : SortedEntries(report)) {
    Json c;
    c["from"] = DescribeEnd(e.src);
    c["to"] = DescribeEnd(e.dst);
    if (e.src.workload == nullptr) c["fromRange"] = RangeJson(e.src);
    if (e.dst.workload == nullptr) c["toRange"] = RangeJson(e.dst);
    c["allowed"] = e.allowed.ToString();
    Json protocols = Json::object();
    for (const auto& [proto, intervals] : e.allowed.ports) {
      if (intervals.empty()) continue;
      Json list = Json::array();
      for (const auto& [lo, hi] : intervals) list.push_back({lo, hi});
      protocols[policy::ProtocolName(proto)] = std::move(list);
    }
    c["protocols"] = std::move(protocols);
    c["otherProtocols"] = e.allowed.other_protocols;
    connections.push_back(std::move(c));
  }
  return {{"connections", std::move(connections)}};
}

std::string ConnectivityText(const engine::ConnectivityReport& report, const Style& style) {
  std::vector<std::vector<Cell>> rows;
  size_t omitted = 0;
  for (const auto& e : SortedEntries(report)) {
    if (e.allowed.IsEmpty()) {
      ++omitted;
      continue;
    }
    rows.push_back({{DescribeEnd(e.src)},
                    {"=>", Color::kDim},
                    {DescribeEnd(e.dst)},
                    {":", Color::kDim},
                    {e.allowed.ToString(), e.allowed.IsAll() ? Color::kYellow : Color::kGreen}});
  }
  std::string out;
  if (rows.empty()) {
    out += "No connections are allowed.\n";
  } else {
    for (const auto& line : AlignColumns(rows, "  ", style)) out += line + "\n";
  }
  if (omitted > 0) {
    out += "\n" +
           style.Paint(
               "(" + std::to_string(omitted) + (omitted == 1 ? " pair has" : " pairs have") +
                   " no allowed connection and " + (omitted == 1 ? "is" : "are") + " not shown)",
               Color::kDim) +
           "\n";
  }
  return out;
}

}  // namespace bulkhead::cli
