// Helpers for text meant for people: optional ANSI colour and column alignment.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace bulkhead::cli {

enum class Color { kPlain, kGreen, kRed, kYellow, kBold, kDim };

// Paints text with ANSI escapes when enabled; a disabled Style returns text unchanged, so
// output piped to files and tools stays plain.
class Style {
 public:
  explicit Style(bool enabled) : enabled_(enabled) {}
  bool enabled() const { return enabled_; }
  std::string Paint(std::string_view text, Color color) const;

 private:
  bool enabled_;
};

// One cell of an aligned table. The colour is applied after padding so escapes never
// disturb alignment.
struct Cell {
  std::string text;
  Color color = Color::kPlain;
};

// Renders rows as lines with every column padded to its widest cell and columns joined by
// `gap`. The last cell of a row is neither padded (no trailing blanks) nor counted in its
// column's width. Rows may be ragged.
std::vector<std::string> AlignColumns(const std::vector<std::vector<Cell>>& rows,
                                      std::string_view gap, const Style& style);

// Whether the text output of this process should be coloured: stdout is a terminal and
// NO_COLOR is not set (https://no-color.org).
bool StdoutWantsColor();

}  // namespace bulkhead::cli
