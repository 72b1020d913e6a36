// Loads the third-party np-guard corpus (/work/shared/conformance/np-guard): every case
// input must load without error and name its workloads as np-guard does, and every invalid
// input must be refused with an error naming the offending object and field.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <set>
#include <sstream>
#include <string>

#include "policy/loader.h"

namespace bulkhead::policy {
namespace {

namespace fs = std::filesystem;

fs::path CorpusDir() {
  return fs::path(BULKHEAD_SOURCE_DIR) / ".." / "shared" / "conformance" / "np-guard";
}

std::string Errors(const LoadResult& r) {
  std::string s;
  for (const Diagnostic& d : r.diagnostics) {
    if (d.severity == Diagnostic::Severity::kError) s += "  " + d.ToString() + "\n";
  }
  return s;
}

// The `ns/name[Kind]` workload names of an expected-connlist.txt ("SRC => DST : ..." lines),
// up to its first blank line (some files append other sections after it).
std::set<std::string> ExpectedWorkloadNames(const fs::path& file) {
  std::ifstream in(file);
  std::set<std::string> names;
  std::string line;
  while (std::getline(in, line) && !line.empty()) {
    std::istringstream words(line);
    std::string src, arrow, dst;
    words >> src >> arrow >> dst;
    for (const std::string& end : {src, dst}) {
      // Workloads are ns/name[Kind]; addresses are ranges[External].
      size_t bracket = end.find('[');
      if (bracket == std::string::npos || end.back() != ']') continue;
      if (end.find('/') == std::string::npos || end.find('/') > bracket) continue;
      names.insert(end);
    }
  }
  return names;
}

TEST(NpGuardInputs, EveryCaseLoadsWithoutErrorAndNamesWorkloadsLikeNpGuard) {
  fs::path cases = CorpusDir() / "cases";
  if (!fs::exists(cases)) {
    GTEST_SKIP() << "np-guard corpus not found at " << cases.string()
                 << " (/work/shared is absent); skipping";
  }
  std::vector<fs::path> dirs;
  for (const auto& e : fs::directory_iterator(cases)) {
    if (fs::is_directory(e.path() / "input")) dirs.push_back(e.path());
  }
  std::sort(dirs.begin(), dirs.end());
  int loaded = 0, warnings = 0, notices = 0, names_checked = 0, workloads = 0, policies = 0;
  for (const fs::path& dir : dirs) {
    LoadResult r = LoadPaths({(dir / "input").string()});
    EXPECT_TRUE(r.ok()) << dir.filename().string() << " has errors:\n" << Errors(r);
    if (!r.ok()) continue;
    ++loaded;
    for (const Diagnostic& d : r.diagnostics) {
      warnings += d.severity == Diagnostic::Severity::kWarning;
      notices += d.severity == Diagnostic::Severity::kNotice;
    }
    workloads += static_cast<int>(r.cluster.workloads.size());
    policies += static_cast<int>(r.cluster.policies.size());
    std::set<std::string> ours;
    for (const Workload& w : r.cluster.workloads) ours.insert(w.Id() + "[" + w.kind + "]");
    for (const std::string& name : ExpectedWorkloadNames(dir / "expected-connlist.txt")) {
      ++names_checked;
      EXPECT_TRUE(ours.count(name)) << dir.filename().string() << ": np-guard names workload "
                                    << name << ", which the loader did not produce";
    }
  }
  std::cout << "[np-guard] " << loaded << "/" << dirs.size()
            << " case inputs loaded without error (" << workloads << " workloads, " << policies
            << " policies, " << warnings << " warnings, " << notices << " notices); "
            << names_checked << " workload names match np-guard's\n";
  // The corpus README documents 105 cases; a much smaller count means a broken checkout.
  EXPECT_GE(dirs.size(), 100u);
}

// What each invalid input must be refused for: the object and field an error names.
struct InvalidExpectation {
  std::string object;   // Diagnostic::object starts with this
  std::string field;    // Diagnostic::field equals this
  std::string message;  // and the message contains this (may be empty)
};

const std::map<std::string, InvalidExpectation>& InvalidExpectations() {
  static const std::map<std::string, InvalidExpectation> m = {
      {"np_bad_path_test_1",
       {"NetworkPolicy default/backend-netpol", "metadata.name", "duplicate"}},
      {"np_bad_path_test_2",
       {"NetworkPolicy default/backend-netpol", "spec.ingress[1].ports[0].endPort", "named port"}},
      {"np_test_with_empty_port_range",
       {"NetworkPolicy ns1/egress-empty-port-range", "spec.egress[0].ports[1].endPort",
        "greater than or equal"}},
      {"anp_bad_path_test_1", {"AdminNetworkPolicy same-priority", "spec.priority", "also used"}},
      {"anp_bad_path_test_2", {"AdminNetworkPolicy invalid-priority", "spec.priority", "1001"}},
      {"anp_bad_path_test_3", {"AdminNetworkPolicy same-name", "metadata.name", "duplicate"}},
      {"anp_bad_path_test_4", {"AdminNetworkPolicy ingress-tcp", "spec.subject", ""}},
      {"anp_bad_path_test_5", {"AdminNetworkPolicy egress-udp", "spec.subject", "exactly one"}},
      {"anp_bad_path_test_6", {"AdminNetworkPolicy egress-tcp", "spec.egress[0].to", "empty"}},
      {"anp_bad_path_test_7",
       {"AdminNetworkPolicy egress-tcp", "spec.egress[0].to[0]", "exactly one"}},
      {"anp_bad_path_test_8",
       {"AdminNetworkPolicy egress-tcp", "spec.egress[3].ports[0]", "exactly one"}},
      {"anp_bad_path_test_9", {"AdminNetworkPolicy egress-tcp", "spec.egress[1].action", "Accept"}},
      {"anp_bad_path_test_10", {"AdminNetworkPolicy egress-tcp", "spec.egress[0].to", "required"}},
      {"anp_bad_path_test_12",
       {"AdminNetworkPolicy egress-tcp", "spec.egress[0].action", "required"}},
      {"anp_bad_path_test_14",
       {"AdminNetworkPolicy ingress-udp", "spec.ingress[0].from", "required"}},
      {"anp_bad_path_test_15", {"AdminNetworkPolicy ingress-udp", "spec.ingress[0].from", "empty"}},
      {"anp_bad_path_test_16",
       {"AdminNetworkPolicy ingress-udp", "spec.ingress[0].from[0]", "exactly one"}},
      {"anp_bad_path_test_17",
       {"AdminNetworkPolicy ingress-udp", "spec.ingress[3].ports[0]", "exactly one"}},
      {"anp_test_with_empty_port_range",
       {"AdminNetworkPolicy pass-example", "spec.ingress[0].ports[0].portRange.end",
        "greater than start"}},
      {"anp_bad_path_test_18", {"AdminNetworkPolicy ingress-udp", "spec.ingress[0].action", "Ok"}},
      {"anp_bad_path_test_19",
       {"AdminNetworkPolicy ingress-udp", "spec.egress[0].to[0].networks[0]", "invalid CIDR"}},
      {"anp_bad_path_test_20", {"AdminNetworkPolicy invalid-priority", "spec.priority", "1001"}},
      {"banp_bad_path_test_1",
       {"BaselineAdminNetworkPolicy default", "metadata.name", "at most one"}},
      {"banp_bad_path_test_2",
       {"BaselineAdminNetworkPolicy banp-name", "metadata.name", "\"default\""}},
      {"banp_bad_path_test_3", {"BaselineAdminNetworkPolicy default", "spec.subject", ""}},
      {"banp_bad_path_test_4",
       {"BaselineAdminNetworkPolicy default", "spec.subject", "exactly one"}},
      {"banp_bad_path_test_5", {"BaselineAdminNetworkPolicy default", "spec.egress[0].to", ""}},
      {"banp_bad_path_test_6",
       {"BaselineAdminNetworkPolicy default", "spec.egress[0].to", "required"}},
      {"banp_bad_path_test_7",
       {"BaselineAdminNetworkPolicy default", "spec.egress[0].to[0]", "exactly one"}},
      {"banp_bad_path_test_8",
       {"BaselineAdminNetworkPolicy default", "spec.egress[0].action", "Pass"}},
      {"banp_bad_path_test_9",
       {"BaselineAdminNetworkPolicy default", "spec.egress[0].ports[0]", "exactly one"}},
      {"banp_bad_path_test_10",
       {"BaselineAdminNetworkPolicy default", "spec.ingress[0].from", "required"}},
      {"banp_bad_path_test_11", {"BaselineAdminNetworkPolicy default", "spec.ingress[0].from", ""}},
      {"banp_bad_path_test_12",
       {"BaselineAdminNetworkPolicy default", "spec.ingress[0].from[0]", "exactly one"}},
      {"banp_bad_path_test_13",
       {"BaselineAdminNetworkPolicy default", "spec.ingress[2].ports[0]", "exactly one"}},
      {"banp_bad_path_test_14",
       {"BaselineAdminNetworkPolicy default", "spec.ingress[0].action", "Pass"}},
      {"banp_bad_path_test_15",
       {"BaselineAdminNetworkPolicy default", "spec.egress[0].to[0].networks[0]", "invalid CIDR"}},
      {"bad_path_namespace_with_same_name", {"Namespace blue", "metadata.name", "duplicate"}},
      {"malformed-pod-example-4", {"document 1", "kind", "required"}},
      {"malformed-pod-example-5", {"document 2", "", "YAML syntax error"}},
  };
  return m;
}

TEST(NpGuardInputs, EveryInvalidInputIsRefusedNamingObjectAndField) {
  fs::path invalid = CorpusDir() / "invalid";
  if (!fs::exists(invalid / "INDEX.tsv")) {
    GTEST_SKIP() << "np-guard corpus not found at " << invalid.string()
                 << " (/work/shared is absent); skipping";
  }
  std::ifstream index(invalid / "INDEX.tsv");
  std::string line;
  int refused = 0, listed = 0;
  std::set<std::string> seen;
  while (std::getline(index, line)) {
    if (line.empty()) continue;
    std::string folder = line.substr(0, line.find('\t'));
    std::string why = line.substr(line.find('\t') + 1);
    ++listed;
    seen.insert(folder);
    auto it = InvalidExpectations().find(folder);
    if (it == InvalidExpectations().end()) {
      ADD_FAILURE() << "no expectation for invalid input " << folder << " (" << why << ")";
      continue;
    }
    const InvalidExpectation& want = it->second;
    LoadResult r = LoadPaths({(invalid / folder).string()});
    EXPECT_FALSE(r.ok()) << folder << " (" << why << ") was accepted";
    EXPECT_TRUE(r.cluster.workloads.empty() && r.cluster.policies.empty())
        << folder << ": a refused input must not yield a partial cluster";
    bool found = false;
    for (const Diagnostic& d : r.diagnostics) {
      if (d.severity != Diagnostic::Severity::kError) continue;
      if (d.object.rfind(want.object, 0) == 0 && d.field == want.field &&
          d.message.find(want.message) != std::string::npos) {
        found = true;
        EXPECT_FALSE(d.where.file.empty()) << d.ToString();
        EXPECT_GT(d.where.line, 0) << d.ToString();
        EXPECT_GT(d.where.document, 0) << d.ToString();
      }
    }
    EXPECT_TRUE(found) << folder << " (" << why << "): no error names object \"" << want.object
                       << "\" field \"" << want.field << "\" with \"" << want.message
                       << "\"; got:\n"
                       << Errors(r);
    refused += !r.ok() && found;
  }
  for (const auto& [folder, want] : InvalidExpectations()) {
    EXPECT_TRUE(seen.count(folder)) << folder << " is expected but not in INDEX.tsv";
  }
  std::cout << "[np-guard] " << refused << "/" << listed
            << " invalid inputs refused with an error naming the right object and field\n";
  EXPECT_GE(listed, 40);
}

}  // namespace
}  // namespace bulkhead::policy
