// Helpers for the loader's unit tests: load a string, find diagnostics, print them.
#pragma once

#include <gtest/gtest.h>

#include <string>
#include <string_view>

#include "policy/loader.h"

namespace bulkhead::policy::testing {

inline LoadResult Load(std::string_view yaml, std::string_view file = "test.yaml") {
  return LoadString(yaml, file);
}

// Every diagnostic, one per line, for failure messages.
inline std::string AllDiagnostics(const LoadResult& r) {
  std::string s;
  for (const Diagnostic& d : r.diagnostics) s += "  " + d.ToString() + "\n";
  return s.empty() ? "  (no diagnostics)\n" : s;
}

inline int Count(const LoadResult& r, Diagnostic::Severity severity) {
  int n = 0;
  for (const Diagnostic& d : r.diagnostics) n += d.severity == severity;
  return n;
}

// The first diagnostic of `severity` whose field is `field` (and whose message contains
// `text`), or nullptr.
inline const Diagnostic* Find(const LoadResult& r, Diagnostic::Severity severity,
                              std::string_view field, std::string_view text = "") {
  for (const Diagnostic& d : r.diagnostics) {
    if (d.severity == severity && d.field == field && d.message.find(text) != std::string::npos) {
      return &d;
    }
  }
  return nullptr;
}

inline const Diagnostic* FindError(const LoadResult& r, std::string_view field,
                                   std::string_view text = "") {
  return Find(r, Diagnostic::Severity::kError, field, text);
}

// Loads input that must be valid, failing the test with every diagnostic otherwise.
inline Cluster LoadOk(std::string_view yaml) {
  LoadResult r = Load(yaml);
  EXPECT_TRUE(r.ok()) << AllDiagnostics(r);
  return r.cluster;
}

inline const Policy* FindPolicy(const Cluster& c, std::string_view kind, std::string_view name) {
  for (const Policy& p : c.policies) {
    if (p.kind == kind && p.name == name) return &p;
  }
  return nullptr;
}

}  // namespace bulkhead::policy::testing
