// Table tests of the Kubernetes name syntax checks: DNS-1123 labels and subdomains, label
// keys and values, and IANA service names (named ports).
#include <gtest/gtest.h>

#include <string>

#include "policy/decode.h"

namespace bulkhead::policy::internal {
namespace {

struct SyntaxCase {
  std::string (*check)(std::string_view);
  const char* check_name;
  std::string input;
  bool valid;
};

std::ostream& operator<<(std::ostream& os, const SyntaxCase& c) {
  return os << c.check_name << "(\"" << c.input << "\")";
}

class NameSyntax : public ::testing::TestWithParam<SyntaxCase> {};

TEST_P(NameSyntax, AcceptsExactlyWhatKubernetesAccepts) {
  const SyntaxCase& c = GetParam();
  std::string problem = c.check(c.input);
  if (c.valid) {
    EXPECT_EQ(problem, "") << c;
  } else {
    EXPECT_NE(problem, "") << c << " should be rejected";
  }
}

#define CASE(fn, input, valid) \
  SyntaxCase { fn, #fn, input, valid }

INSTANTIATE_TEST_SUITE_P(
    All, NameSyntax,
    ::testing::Values(
        CASE(CheckDns1123Label, "shop", true), CASE(CheckDns1123Label, "a-1", true),
        CASE(CheckDns1123Label, "1a", true), CASE(CheckDns1123Label, std::string(63, 'a'), true),
        CASE(CheckDns1123Label, std::string(64, 'a'), false), CASE(CheckDns1123Label, "", false),
        CASE(CheckDns1123Label, "Shop", false), CASE(CheckDns1123Label, "-a", false),
        CASE(CheckDns1123Label, "a-", false), CASE(CheckDns1123Label, "a.b", false),
        CASE(CheckDns1123Label, "a_b", false), CASE(CheckDns1123Subdomain, "web.shop", true),
        CASE(CheckDns1123Subdomain, "web-1", true), CASE(CheckDns1123Subdomain, "a..b", false),
        CASE(CheckDns1123Subdomain, ".a", false), CASE(CheckDns1123Subdomain, "a.", false),
        CASE(CheckDns1123Subdomain, "a_b", false),
        CASE(CheckDns1123Subdomain, std::string(254, 'a'), false), CASE(CheckLabelKey, "app", true),
        CASE(CheckLabelKey, "app.kubernetes.io/name", true),
        CASE(CheckLabelKey, "kubernetes.io/metadata.name", true),
        CASE(CheckLabelKey, "A_b.c-D", true), CASE(CheckLabelKey, "", false),
        CASE(CheckLabelKey, "/name", false), CASE(CheckLabelKey, "example.com/", false),
        CASE(CheckLabelKey, "a/b/c", false), CASE(CheckLabelKey, "Example.com/x", false),
        CASE(CheckLabelKey, "-app", false), CASE(CheckLabelKey, "app-", false),
        CASE(CheckLabelKey, "has space", false), CASE(CheckLabelKey, std::string(64, 'k'), false),
        CASE(CheckLabelValue, "", true), CASE(CheckLabelValue, "v1.2_x-Y", true),
        CASE(CheckLabelValue, std::string(63, 'v'), true),
        CASE(CheckLabelValue, std::string(64, 'v'), false), CASE(CheckLabelValue, "-v", false),
        CASE(CheckLabelValue, "v/1", false), CASE(CheckLabelValue, "a b", false),
        CASE(CheckPortName, "http", true), CASE(CheckPortName, "http-alt", true),
        CASE(CheckPortName, "h2c", true), CASE(CheckPortName, "abcdefghijklmno", true),
        CASE(CheckPortName, "abcdefghijklmnop", false), CASE(CheckPortName, "", false),
        CASE(CheckPortName, "80", false), CASE(CheckPortName, "HTTP", false),
        CASE(CheckPortName, "-http", false), CASE(CheckPortName, "http-", false),
        CASE(CheckPortName, "a--b", false), CASE(CheckPortName, "my_port", false)));

#undef CASE

}  // namespace
}  // namespace bulkhead::policy::internal
