// Helpers for text meant for people: optional ANSI colour and column alignment.
#include "cli/text.h"

#include <unistd.h>

#include <algorithm>
#include <cstdlib>

namespace bulkhead::cli {

std::string Style::Paint(std::string_view text, Color color) const {
  if (!enabled_ || color == Color::kPlain || text.empty()) return std::string(text);
  const char* code = "";
  switch (color) {
    case Color::kPlain:
      break;
    case Color::kGreen:
      code = "\033[32m";
      break;
    case Color::kRed:
      code = "\033[31m";
      break;
    case Color::kYellow:
      code = "\033[33m";
      break;
    case Color::kBold:
      code = "\033[1m";
      break;
    case Color::kDim:
      code = "\033[2m";
      break;
  }
  return std::string(code) + std::string(text) + "\033[0m";
}

namespace {
// Display width of UTF-8 text: one column per code point (our names and marks have no wide
// or combining characters).
size_t DisplayWidth(std::string_view s) {
  return static_cast<size_t>(
      std::count_if(s.begin(), s.end(), [](char c) { return (c & 0xC0) != 0x80; }));
}
}  // namespace

std::vector<std::string> AlignColumns(const std::vector<std::vector<Cell>>& rows,
                                      std::string_view gap, const Style& style) {
  std::vector<size_t> widths;
  for (const auto& row : rows) {
    if (widths.size() < row.size()) widths.resize(row.size(), 0);
    // The last cell is never padded, so it does not widen its column either: a long
    // trailing text (an explanation) must not push the columns of other rows apart.
    for (size_t i = 0; i + 1 < row.size(); ++i) {
      widths[i] = std::max(widths[i], DisplayWidth(row[i].text));
    }
  }
  std::vector<std::string> lines;
  lines.reserve(rows.size());
  for (const auto& row : rows) {
    std::string line;
    for (size_t i = 0; i < row.size(); ++i) {
      if (i > 0) line += gap;
      std::string text = row[i].text;
      if (i + 1 < row.size()) text.append(widths[i] - DisplayWidth(text), ' ');
      // Colour only the text itself, not the padding after it.
      size_t len = row[i].text.size();
      line += style.Paint(text.substr(0, len), row[i].color) + text.substr(len);
    }
    lines.push_back(std::move(line));
  }
  return lines;
}

bool StdoutWantsColor() { return isatty(STDOUT_FILENO) == 1 && std::getenv("NO_COLOR") == nullptr; }

}  // namespace bulkhead::cli
