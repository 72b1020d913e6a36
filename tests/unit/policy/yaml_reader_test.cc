// Tests of the positioned YAML/JSON tree: positions, scalar typing, nulls, duplicate and merge
// keys, aliases, limits on hostile input, multi-document streams and syntax errors.
#include "policy/yaml_reader.h"

#include <gtest/gtest.h>

#include <string>

namespace bulkhead::policy::internal {
namespace {

TEST(YamlReader, KeepsOneBasedLineAndColumnOfEveryNode) {
  YamlStream s = ReadYamlStream("a:\n  b: [1, two]\n  c: {d: x}\n");
  ASSERT_TRUE(s.errors.empty());
  ASSERT_EQ(s.documents.size(), 1u);
  const YamlValue& root = s.documents[0].root;
  const YamlValue* b = root.Find("a")->Find("b");
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(b->line, 2);
  EXPECT_EQ(b->column, 6);
  EXPECT_EQ(b->items[1].text, "two");
  EXPECT_EQ(b->items[1].line, 2);
  EXPECT_EQ(b->items[1].column, 10);
  const YamlKey* c = root.Find("a")->FindKey("c");
  ASSERT_NE(c, nullptr);
  EXPECT_EQ(c->line, 3);
  EXPECT_EQ(c->column, 3);
  const YamlValue* d = root.Find("a")->Find("c")->Find("d");
  EXPECT_EQ(d->line, 3);
  EXPECT_EQ(d->column, 10);
}

TEST(YamlReader, EmptyValuesArePlacedAtTheirKey) {
  // yaml-cpp would place the empty value at the next token, on the next line.
  YamlStream s = ReadYamlStream("to:\nnext: 1\n");
  ASSERT_TRUE(s.errors.empty());
  const YamlValue* to = s.documents[0].root.Find("to");
  ASSERT_NE(to, nullptr);
  EXPECT_TRUE(to->IsNull());
  EXPECT_EQ(to->line, 1);
  EXPECT_EQ(to->column, 1);
}

struct ScalarCase {
  std::string yaml;  // the value of key `v`
  YamlValue::Type type;
  ScalarKind kind;  // when a scalar
};

class ScalarTyping : public ::testing::TestWithParam<ScalarCase> {};

TEST_P(ScalarTyping, FollowsTheYaml12CoreSchemaAndQuoting) {
  const ScalarCase& c = GetParam();
  YamlStream s = ReadYamlStream("v: " + c.yaml + "\n");
  ASSERT_TRUE(s.errors.empty()) << c.yaml;
  const YamlValue* v = s.documents[0].root.Find("v");
  ASSERT_NE(v, nullptr);
  EXPECT_EQ(v->type, c.type) << c.yaml;
  if (c.type == YamlValue::Type::kScalar) {
    EXPECT_EQ(ClassifyScalar(*v), c.kind) << c.yaml;
  }
}

INSTANTIATE_TEST_SUITE_P(
    All, ScalarTyping,
    ::testing::Values(ScalarCase{"", YamlValue::Type::kNull, ScalarKind::kString},
                      ScalarCase{"~", YamlValue::Type::kNull, ScalarKind::kString},
                      ScalarCase{"null", YamlValue::Type::kNull, ScalarKind::kString},
                      ScalarCase{"NULL", YamlValue::Type::kNull, ScalarKind::kString},
                      ScalarCase{"\"null\"", YamlValue::Type::kScalar, ScalarKind::kString},
                      ScalarCase{"'~'", YamlValue::Type::kScalar, ScalarKind::kString},
                      ScalarCase{"80", YamlValue::Type::kScalar, ScalarKind::kInt},
                      ScalarCase{"-3", YamlValue::Type::kScalar, ScalarKind::kInt},
                      ScalarCase{"0x1F", YamlValue::Type::kScalar, ScalarKind::kInt},
                      ScalarCase{"0o17", YamlValue::Type::kScalar, ScalarKind::kInt},
                      ScalarCase{"\"80\"", YamlValue::Type::kScalar, ScalarKind::kString},
                      ScalarCase{"1.0", YamlValue::Type::kScalar, ScalarKind::kFloat},
                      ScalarCase{"1e3", YamlValue::Type::kScalar, ScalarKind::kFloat},
                      ScalarCase{".inf", YamlValue::Type::kScalar, ScalarKind::kFloat},
                      ScalarCase{"true", YamlValue::Type::kScalar, ScalarKind::kBool},
                      ScalarCase{"False", YamlValue::Type::kScalar, ScalarKind::kBool},
                      ScalarCase{"\"true\"", YamlValue::Type::kScalar, ScalarKind::kString},
                      ScalarCase{"yes", YamlValue::Type::kScalar, ScalarKind::kString},
                      ScalarCase{"10.0.0.0/8", YamlValue::Type::kScalar, ScalarKind::kString},
                      ScalarCase{"1.2.3", YamlValue::Type::kScalar, ScalarKind::kString},
                      ScalarCase{"!!str 123", YamlValue::Type::kScalar, ScalarKind::kString},
                      ScalarCase{"|\n  80", YamlValue::Type::kScalar, ScalarKind::kString},
                      ScalarCase{"[]", YamlValue::Type::kSequence, ScalarKind::kString},
                      ScalarCase{"{}", YamlValue::Type::kMap, ScalarKind::kString}));

TEST(YamlReader, ScalarIntAndBool) {
  YamlStream s = ReadYamlStream("[65535, -1, 0x10, 99999999999999999999, true, 'x']");
  const auto& items = s.documents[0].root.items;
  EXPECT_EQ(ScalarInt(items[0]), 65535);
  EXPECT_EQ(ScalarInt(items[1]), -1);
  EXPECT_EQ(ScalarInt(items[2]), 16);
  EXPECT_EQ(ScalarInt(items[3]), std::nullopt);  // out of int64 range
  EXPECT_EQ(ScalarBool(items[4]), true);
  EXPECT_EQ(ScalarBool(items[5]), std::nullopt);
}

TEST(YamlReader, ReportsDuplicateKeysWithBothPositions) {
  YamlStream s = ReadYamlStream("a: 1\nb: 2\na: 3\n");
  ASSERT_EQ(s.errors.size(), 1u);
  EXPECT_EQ(s.errors[0].line, 3);
  EXPECT_EQ(s.errors[0].column, 1);
  EXPECT_EQ(s.errors[0].document, 1);
  EXPECT_NE(s.errors[0].message.find("duplicate key \"a\" (first at line 1:1)"), std::string::npos);
  // The first value is kept.
  EXPECT_EQ(s.documents[0].root.Find("a")->text, "1");
}

TEST(YamlReader, AppliesMergeKeysWithExplicitKeysWinning) {
  YamlStream s = ReadYamlStream(
      "base: &b {x: 1, y: 2}\n"
      "other: &o {y: 9, z: 3}\n"
      "m: {<<: [*b, *o], x: 7}\n");
  ASSERT_TRUE(s.errors.empty());
  const YamlValue* m = s.documents[0].root.Find("m");
  ASSERT_NE(m, nullptr);
  EXPECT_EQ(m->Find("x")->text, "7");  // explicit key wins
  EXPECT_EQ(m->Find("y")->text, "2");  // earlier merged map wins
  EXPECT_EQ(m->Find("z")->text, "3");
  EXPECT_EQ(m->Find("<<"), nullptr);
}

TEST(YamlReader, RejectsAMergeKeyThatIsNotAMap) {
  YamlStream s = ReadYamlStream("m: {<<: 3}\n");
  ASSERT_EQ(s.errors.size(), 1u);
  EXPECT_NE(s.errors[0].message.find("merge key"), std::string::npos);
}

TEST(YamlReader, ExpandsAliases) {
  YamlStream s = ReadYamlStream("a: &x {k: v}\nb: *x\n");
  ASSERT_TRUE(s.errors.empty());
  const YamlValue* b = s.documents[0].root.Find("b");
  ASSERT_TRUE(b->IsMap());
  EXPECT_EQ(b->Find("k")->text, "v");
  EXPECT_EQ(b->line, 2);  // the alias's position, where the value is used
}

TEST(YamlReader, StopsAnAliasBombWithAnError) {
  std::string yaml = "a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n";
  for (int i = 1; i < 10; ++i) {
    yaml += "a" + std::to_string(i) + ": &a" + std::to_string(i) + " [";
    for (int j = 0; j < 10; ++j) yaml += (j ? ", *a" : "*a") + std::to_string(i - 1);
    yaml += "]\n";
  }
  YamlStream s = ReadYamlStream(yaml);
  ASSERT_EQ(s.errors.size(), 1u);
  EXPECT_NE(s.errors[0].message.find("too many nodes"), std::string::npos);
}

TEST(YamlReader, StopsDeepNestingWithAnError) {
  std::string flow(100000, '[');
  std::string block;
  for (int i = 0; i < 5000; ++i) block += "- ";
  block += "x\n";
  for (const std::string& yaml : {flow, block}) {
    YamlStream s = ReadYamlStream(yaml);
    ASSERT_FALSE(s.errors.empty());
    EXPECT_GT(s.errors[0].line, 0);
    EXPECT_TRUE(s.documents.empty());
  }
}

TEST(YamlReader, NumbersDocumentsAndSkipsEmptyOnes) {
  YamlStream s = ReadYamlStream("a: 1\n---\n# nothing\n---\nb: 2\n---\n");
  ASSERT_TRUE(s.errors.empty());
  ASSERT_EQ(s.documents.size(), 2u);
  EXPECT_EQ(s.documents[0].index, 1);
  EXPECT_EQ(s.documents[1].index, 3);
}

TEST(YamlReader, KeepsDocumentsBeforeASyntaxErrorAndNamesItsDocumentAndLine) {
  YamlStream s = ReadYamlStream("a: 1\n---\nb: [1, 2\nc: 3\n");
  ASSERT_EQ(s.documents.size(), 1u);
  ASSERT_EQ(s.errors.size(), 1u);
  EXPECT_EQ(s.errors[0].document, 2);
  EXPECT_GT(s.errors[0].line, 2);
  EXPECT_NE(s.errors[0].message.find("YAML syntax error"), std::string::npos);
}

TEST(YamlReader, ReadsJsonWithTabsAndAByteOrderMark) {
  YamlStream s = ReadYamlStream("\xEF\xBB\xBF{\n\t\"a\": [1, \"x\"],\n\t\"b\": {\"c\": null}\n}\n");
  ASSERT_TRUE(s.errors.empty()) << s.errors[0].message;
  const YamlValue& root = s.documents[0].root;
  EXPECT_EQ(ClassifyScalar(root.Find("a")->items[0]), ScalarKind::kInt);
  EXPECT_TRUE(root.Find("a")->items[1].quoted);
  EXPECT_TRUE(root.Find("b")->Find("c")->IsNull());
  EXPECT_EQ(root.Find("b")->line, 3);
}

TEST(YamlReader, RejectsNonScalarKeys) {
  YamlStream s = ReadYamlStream("? [a, b]\n: c\nd: e\n");
  ASSERT_EQ(s.errors.size(), 1u);
  EXPECT_NE(s.errors[0].message.find("map key must be a string"), std::string::npos);
  EXPECT_EQ(s.documents[0].root.keys.size(), 1u);
}

}  // namespace
}  // namespace bulkhead::policy::internal
