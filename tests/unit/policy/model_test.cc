// Tests of the model's own behaviour: selector matching with Kubernetes semantics and the
// text forms other modules print.
#include "policy/model.h"

#include <gtest/gtest.h>

namespace bulkhead::policy {
namespace {

LabelRequirement Req(std::string key, SelectorOperator op, std::vector<std::string> values = {}) {
  return LabelRequirement{std::move(key), op, std::move(values)};
}

TEST(LabelSelector, EmptyMatchesEverything) {
  EXPECT_TRUE(LabelSelector{}.Matches({}));
  EXPECT_TRUE(LabelSelector{}.Matches({{"a", "b"}}));
  EXPECT_EQ(LabelSelector{}.ToString(), "{}");
}

struct MatchCase {
  LabelRequirement req;
  Labels labels;
  bool matches;
};

class LabelRequirementMatch : public ::testing::TestWithParam<MatchCase> {};

TEST_P(LabelRequirementMatch, FollowsKubernetesSemantics) {
  const MatchCase& c = GetParam();
  EXPECT_EQ(c.req.Matches(c.labels), c.matches);
}

INSTANTIATE_TEST_SUITE_P(
    All, LabelRequirementMatch,
    ::testing::Values(MatchCase{Req("a", SelectorOperator::kIn, {"x", "y"}), {{"a", "y"}}, true},
                      MatchCase{Req("a", SelectorOperator::kIn, {"x"}), {{"a", "z"}}, false},
                      MatchCase{Req("a", SelectorOperator::kIn, {"x"}), {}, false},
                      // NotIn matches when the label is absent.
                      MatchCase{Req("a", SelectorOperator::kNotIn, {"x"}), {}, true},
                      MatchCase{Req("a", SelectorOperator::kNotIn, {"x"}), {{"a", "x"}}, false},
                      MatchCase{Req("a", SelectorOperator::kExists), {{"a", ""}}, true},
                      MatchCase{Req("a", SelectorOperator::kExists), {{"b", "a"}}, false},
                      MatchCase{Req("a", SelectorOperator::kDoesNotExist), {}, true},
                      MatchCase{Req("a", SelectorOperator::kDoesNotExist), {{"a", "1"}}, false}));

TEST(LabelSelector, RequiresEveryLabelAndExpression) {
  LabelSelector s;
  s.match_labels = {{"app", "web"}};
  s.match_expressions = {Req("tier", SelectorOperator::kIn, {"a", "b"}),
                         Req("debug", SelectorOperator::kDoesNotExist)};
  EXPECT_TRUE(s.Matches({{"app", "web"}, {"tier", "a"}}));
  EXPECT_FALSE(s.Matches({{"app", "web"}, {"tier", "c"}}));
  EXPECT_FALSE(s.Matches({{"app", "web"}, {"tier", "a"}, {"debug", "1"}}));
  EXPECT_FALSE(s.Matches({{"tier", "a"}}));
  EXPECT_EQ(s.ToString(), "app=web,tier in (a,b),!debug");
}

TEST(Model, TextForms) {
  EXPECT_EQ((SourceRef{"f.yaml", 1, 3, 4}).ToString(), "f.yaml:3:4");
  EXPECT_EQ((SourceRef{"f.yaml", 1, 3, 0}).ToString(), "f.yaml:3");
  EXPECT_EQ((SourceRef{}).ToString(), "<input>");
  EXPECT_EQ(ParseProtocol("sctp"), Protocol::kSCTP);
  EXPECT_EQ(ParseProtocol("ICMPv6"), Protocol::kICMPv6);
  EXPECT_EQ(ParseProtocol("gre"), std::nullopt);
  PortMatch range{PortMatch::Kind::kRange, Protocol::kUDP, 1000, 2000, "", {}};
  EXPECT_EQ(range.ToString(), "UDP/1000-2000");
  PortMatch named{PortMatch::Kind::kNamed, std::nullopt, 0, 0, "dns", {}};
  EXPECT_EQ(named.ToString(), "any/dns");
  Policy p;
  p.kind = "NetworkPolicy";
  p.name = "web";
  EXPECT_EQ(p.Id(), "NetworkPolicy web");
  p.namespace_name = "shop";
  EXPECT_EQ(p.Id(), "NetworkPolicy shop/web");
  EXPECT_STREQ(TierName(Tier::kBaseline), "baseline");
  EXPECT_STREQ(ActionName(RuleAction::kPass), "Pass");
  EXPECT_STREQ(ModeName(Mode::kLearn), "learn");
}

TEST(ProcessSelector, MatchesNameOrPath) {
  ProcessSelector s{{"nginx"}, {"/usr/bin/api"}};
  EXPECT_TRUE(s.Matches("nginx", "/opt/nginx"));
  EXPECT_TRUE(s.Matches("api", "/usr/bin/api"));
  EXPECT_FALSE(s.Matches("sh", "/bin/sh"));
}

}  // namespace
}  // namespace bulkhead::policy
