// Conformance against the np-guard/netpol-analyzer connectivity corpus in
// /work/shared/conformance/np-guard: load each case's manifests, compute connectivity, and
// compare with its expected-connlist.txt exactly (after normalising both sides).
//
// Normalisation, and why it is exact: np-guard splits external ranges at every ipBlock
// boundary of the whole input without merging neighbours with equal connections, while we
// merge them; both sides are therefore reduced to maximal runs of IPv4 ranges with equal
// connections per workload and direction. np-guard has no notion of ICMP (its "All
// Connections" means every port of TCP, UDP and SCTP), so only TCP/UDP/SCTP are compared.
// np-guard lists IPv4 external ranges only; our IPv6 entries are not compared.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "engine/connectivity.h"
#include "policy/loader.h"

namespace bulkhead::engine {
namespace {

namespace fs = std::filesystem;
using policy::IpAddr;
using policy::Protocol;

// Cases we cannot judge, with the reason. Everything else must pass.
const std::map<std::string, std::string>& SkippedCases() {
  static const std::map<std::string, std::string> kSkipped = {};
  return kSkipped;
}

fs::path CorpusDir() {
  return fs::path(BULKHEAD_SOURCE_DIR) / ".." / "shared" / "conformance" / "np-guard" / "cases";
}

std::string Trim(std::string s) {
  auto not_space = [](unsigned char c) { return !std::isspace(c); };
  s.erase(s.begin(), std::find_if(s.begin(), s.end(), not_space));
  s.erase(std::find_if(s.rbegin(), s.rend(), not_space).base(), s.end());
  return s;
}

constexpr Protocol kPortProtocols[] = {Protocol::kTCP, Protocol::kUDP, Protocol::kSCTP};

// Only TCP/UDP/SCTP are compared; "All Connections" is every port of the three.
ConnectionSet Normalise(ConnectionSet c) {
  bool all = true;
  for (Protocol p : kPortProtocols) {
    auto it = c.ports.find(p);
    all = all && it != c.ports.end() && it->second == PortIntervals{{1, 65535}};
  }
  c.other_protocols = all;  // so that ToString says "All Connections" exactly then
  return c;
}

bool ParseConnections(const std::string& text, ConnectionSet* out) {
  ConnectionSet c;
  if (text == "All Connections") {
    for (Protocol p : kPortProtocols) c.ports[p] = {{1, 65535}};
    *out = Normalise(c);
    return true;
  }
  if (text == "No Connections") {
    *out = c;
    return true;
  }
  std::optional<Protocol> current;
  std::stringstream ss(text);
  std::string token;
  while (std::getline(ss, token, ',')) {
    token = Trim(token);
    if (token.empty()) return false;
    if (std::isalpha(static_cast<unsigned char>(token[0]))) {
      auto space = token.find(' ');
      if (space == std::string::npos) return false;
      current = policy::ParseProtocol(token.substr(0, space));
      if (!current) return false;
      token = Trim(token.substr(space + 1));
    }
    if (!current) return false;
    auto dash = token.find('-');
    try {
      int a = std::stoi(token.substr(0, dash));
      int b = dash == std::string::npos ? a : std::stoi(token.substr(dash + 1));
      if (a < 1 || b > 65535 || a > b) return false;
      auto& iv = c.ports[*current];
      if (!iv.empty() && iv.back().second + 1 == a) {
        iv.back().second = static_cast<uint16_t>(b);
      } else {
        iv.emplace_back(static_cast<uint16_t>(a), static_cast<uint16_t>(b));
      }
    } catch (const std::exception&) {
      return false;
    }
  }
  *out = Normalise(c);
  return true;
}

struct ExtRange {
  IpAddr first, last;
  ConnectionSet conns;
};

// The comparable form of one connectivity listing.
struct Listing {
  std::map<std::pair<std::string, std::string>, ConnectionSet> pairs;  // workload -> workload
  // (workload, "egress"/"ingress") -> ranges (unsorted until Canonical()).
  std::map<std::pair<std::string, std::string>, std::vector<ExtRange>> external;

  // One line per maximal run, in np-guard's notation, for set comparison.
  std::set<std::string> Canonical() const {
    std::set<std::string> out;
    for (const auto& [k, c] : pairs) {
      if (!c.IsEmpty()) out.insert(k.first + " => " + k.second + " : " + c.ToString());
    }
    for (const auto& [k, ranges] : external) {
      std::vector<ExtRange> sorted = ranges;
      std::sort(sorted.begin(), sorted.end(),
                [](const ExtRange& a, const ExtRange& b) { return a.first < b.first; });
      std::vector<ExtRange> runs;
      for (const auto& r : sorted) {
        if (r.conns.IsEmpty()) continue;
        auto next = runs.empty() ? std::nullopt : common::NextAddr(runs.back().last);
        if (!runs.empty() && next && *next == r.first && runs.back().conns == r.conns) {
          runs.back().last = r.last;
        } else {
          runs.push_back(r);
        }
      }
      for (const auto& r : runs) {
        std::string ext = r.first.ToString() + "-" + r.last.ToString() + "[External]";
        out.insert(k.second == "egress" ? k.first + " => " + ext + " : " + r.conns.ToString()
                                        : ext + " => " + k.first + " : " + r.conns.ToString());
      }
    }
    return out;
  }
};

bool ParseRange(const std::string& text, IpAddr* first, IpAddr* last) {
  auto dash = text.find('-');
  if (dash == std::string::npos) return false;
  auto a = IpAddr::Parse(text.substr(0, dash));
  auto b = IpAddr::Parse(text.substr(dash + 1));
  if (!a || !b) return false;
  *first = *a;
  *last = *b;
  return true;
}

// Parses expected-connlist.txt. Returns an error message, or empty on success.
std::string ParseExpected(const fs::path& file, Listing* out) {
  std::ifstream in(file);
  if (!in) return "cannot read " + file.string();
  std::string line;
  int n = 0;
  while (std::getline(in, line)) {
    ++n;
    line = Trim(line);
    if (line.empty()) break;  // a blank line ends the listing (a mapping section may follow)
    if (line.find("{ingress-controller}") != std::string::npos) continue;
    auto arrow = line.find(" => ");
    auto colon = line.find(" : ");
    if (arrow == std::string::npos || colon == std::string::npos || colon < arrow) {
      return file.string() + ":" + std::to_string(n) + ": cannot parse: " + line;
    }
    std::string src = line.substr(0, arrow);
    std::string dst = line.substr(arrow + 4, colon - arrow - 4);
    ConnectionSet conns;
    if (!ParseConnections(line.substr(colon + 3), &conns)) {
      return file.string() + ":" + std::to_string(n) + ": cannot parse connections: " + line;
    }
    const std::string kExt = "[External]";
    auto is_ext = [&](const std::string& s) {
      return s.size() > kExt.size() && s.compare(s.size() - kExt.size(), kExt.size(), kExt) == 0;
    };
    if (is_ext(src) && is_ext(dst)) continue;
    if (is_ext(src) || is_ext(dst)) {
      const std::string& range = is_ext(src) ? src : dst;
      ExtRange r;
      if (!ParseRange(range.substr(0, range.size() - kExt.size()), &r.first, &r.last)) {
        return file.string() + ":" + std::to_string(n) + ": bad range: " + range;
      }
      r.conns = conns;
      out->external[{is_ext(src) ? dst : src, is_ext(src) ? "ingress" : "egress"}].push_back(r);
    } else {
      out->pairs[{src, dst}] = conns;
    }
  }
  return {};
}

std::string WorkloadName(const policy::Workload& w) { return w.Id() + "[" + w.kind + "]"; }

Listing FromReport(const ConnectivityReport& report) {
  Listing l;
  for (const auto& e : report.entries) {
    ConnectionSet conns = e.allowed;
    conns.other_protocols = false;
    conns = Normalise(conns);
    if (e.src.workload && e.dst.workload) {
      l.pairs[{WorkloadName(*e.src.workload), WorkloadName(*e.dst.workload)}] = conns;
      continue;
    }
    const ConnEnd& ext = e.src.workload ? e.dst : e.src;
    if (ext.first.v6) continue;  // np-guard lists IPv4 only
    const policy::Workload& w = e.src.workload ? *e.src.workload : *e.dst.workload;
    l.external[{WorkloadName(w), e.src.workload ? "egress" : "ingress"}].push_back(
        {ext.first, ext.last, conns});
  }
  return l;
}

std::string Diff(const std::set<std::string>& want, const std::set<std::string>& got) {
  std::string out;
  int shown = 0;
  constexpr int kMaxLines = 40;
  int total = 0;
  for (const auto& l : want) {
    if (got.count(l)) continue;
    ++total;
    if (shown++ < kMaxLines) out += "  - " + l + "\n";
  }
  for (const auto& l : got) {
    if (want.count(l)) continue;
    ++total;
    if (shown++ < kMaxLines) out += "  + " + l + "\n";
  }
  if (total > kMaxLines) out += "  ... " + std::to_string(total - kMaxLines) + " more\n";
  return out;
}

TEST(NpGuardConformance, ConnectivityMatchesExpected) {
  const fs::path corpus = CorpusDir();
  if (!fs::is_directory(corpus)) {
    GTEST_SKIP() << "np-guard corpus not found at " << corpus
                 << " (it lives in /work/shared, outside the repo); conformance not run";
  }
  const char* only = std::getenv("BULKHEAD_CONFORMANCE_CASE");  // debugging: one case
  std::vector<fs::path> cases;
  for (const auto& entry : fs::directory_iterator(corpus)) {
    if (entry.is_directory()) cases.push_back(entry.path());
  }
  std::sort(cases.begin(), cases.end());

  int passed = 0, failed = 0, skipped = 0;
  std::vector<std::string> failed_names;
  for (const auto& dir : cases) {
    const std::string name = dir.filename().string();
    if (only && name != only) continue;
    if (auto it = SkippedCases().find(name); it != SkippedCases().end()) {
      ++skipped;
      std::cout << "[ SKIP ] " << name << ": " << it->second << "\n";
      continue;
    }
    Listing want;
    if (std::string err = ParseExpected(dir / "expected-connlist.txt", &want); !err.empty()) {
      ++failed;
      failed_names.push_back(name);
      ADD_FAILURE() << name << ": " << err;
      continue;
    }
    policy::LoadResult load = policy::LoadPaths({(dir / "input").string()});
    if (!load.ok()) {
      std::string diags;
      for (const auto& d : load.diagnostics) {
        if (d.severity == policy::Diagnostic::Severity::kError) diags += "  " + d.ToString() + "\n";
      }
      ++failed;
      failed_names.push_back(name);
      ADD_FAILURE() << name << ": the loader rejected the input:\n" << diags;
      continue;
    }
    Listing got = FromReport(ComputeConnectivity(load.cluster));
    std::set<std::string> want_lines = want.Canonical();
    std::set<std::string> got_lines = got.Canonical();
    if (want_lines == got_lines) {
      ++passed;
      continue;
    }
    ++failed;
    failed_names.push_back(name);
    ADD_FAILURE() << name << ": connectivity differs (- expected only, + ours only):\n"
                  << Diff(want_lines, got_lines);
  }
  std::string failed_list;
  for (const auto& n : failed_names) failed_list += " " + n;
  std::cout << "np-guard conformance: " << passed << " passed, " << failed << " failed, " << skipped
            << " skipped" << (failed ? " (failed:" + failed_list + ")" : "") << "\n";
  RecordProperty("passed", passed);
  RecordProperty("failed", failed);
  RecordProperty("skipped", skipped);
}

}  // namespace
}  // namespace bulkhead::engine
