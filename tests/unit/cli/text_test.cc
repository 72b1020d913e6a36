// Tests of the text helpers: ANSI styling on and off, column alignment.
#include "cli/text.h"

#include <gtest/gtest.h>

namespace bulkhead::cli {
namespace {

TEST(StyleTest, DisabledLeavesTextUnchanged) {
  Style plain(false);
  EXPECT_EQ(plain.Paint("deny", Color::kRed), "deny");
  EXPECT_FALSE(plain.enabled());
}

TEST(StyleTest, EnabledWrapsInEscapesAndResets) {
  Style color(true);
  EXPECT_EQ(color.Paint("deny", Color::kRed), "\033[31mdeny\033[0m");
  EXPECT_EQ(color.Paint("allow", Color::kGreen), "\033[32mallow\033[0m");
  // Plain cells and empty text get no escapes at all.
  EXPECT_EQ(color.Paint("x", Color::kPlain), "x");
  EXPECT_EQ(color.Paint("", Color::kRed), "");
}

TEST(AlignColumnsTest, PadsEveryColumnButTheLast) {
  Style plain(false);
  auto lines = AlignColumns(
      {{{"a"}, {"=>"}, {"long-name"}, {"x"}}, {{"longer"}, {"=>"}, {"b"}, {"yy"}}}, "  ", plain);
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(lines[0], "a       =>  long-name  x");
  EXPECT_EQ(lines[1], "longer  =>  b          yy");
}

TEST(AlignColumnsTest, LastCellOfARowDoesNotWidenItsColumn) {
  Style plain(false);
  // The second row ends in column 1 with a long text: column 1 of the first row stays narrow.
  auto lines =
      AlignColumns({{{"a"}, {"bb"}, {"c"}}, {{"d"}, {"a very long explanation"}}}, " ", plain);
  EXPECT_EQ(lines[0], "a bb c");
  EXPECT_EQ(lines[1], "d a very long explanation");
}

TEST(AlignColumnsTest, ColourDoesNotDisturbAlignment) {
  Style color(true);
  auto lines = AlignColumns({{{"ab", Color::kRed}, {"x"}}, {{"abcd"}, {"y"}}}, " ", color);
  // The escape wraps only the text; the padding follows the reset.
  EXPECT_EQ(lines[0], "\033[31mab\033[0m   x");
  EXPECT_EQ(lines[1], "abcd y");
}

TEST(AlignColumnsTest, CountsUtf8CodePointsAsOneColumn) {
  Style plain(false);
  auto lines = AlignColumns({{{"\u2713"}, {"x"}}, {{"ab"}, {"y"}}}, " ", plain);
  EXPECT_EQ(lines[0], "\u2713  x");
  EXPECT_EQ(lines[1], "ab y");
}

}  // namespace
}  // namespace bulkhead::cli
