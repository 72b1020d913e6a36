// Builds the positioned YamlValue tree from yaml-cpp's event stream, with limits on nesting
// and alias expansion, duplicate-key detection and `<<` merge keys.
#include "policy/yaml_reader.h"

#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/exceptions.h>
#include <yaml-cpp/mark.h>
#include <yaml-cpp/parser.h>

#include <algorithm>
#include <charconv>
#include <map>
#include <set>
#include <sstream>

namespace bulkhead::policy::internal {

const YamlValue* YamlValue::Find(std::string_view key) const {
  if (type != Type::kMap) return nullptr;
  for (size_t i = 0; i < keys.size(); ++i) {
    if (keys[i].text == key) return &items[i];
  }
  return nullptr;
}

const YamlKey* YamlValue::FindKey(std::string_view key) const {
  if (type != Type::kMap) return nullptr;
  for (const auto& k : keys) {
    if (k.text == key) return &k;
  }
  return nullptr;
}

namespace {

bool AllOf(std::string_view s, bool (*pred)(char)) {
  return !s.empty() && std::all_of(s.begin(), s.end(), pred);
}
bool IsDigit(char c) { return c >= '0' && c <= '9'; }
bool IsOctal(char c) { return c >= '0' && c <= '7'; }
bool IsHex(char c) { return IsDigit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }

bool IsPlainNull(std::string_view s) {
  return s.empty() || s == "~" || s == "null" || s == "Null" || s == "NULL";
}

bool IsCoreInt(std::string_view s) {
  if (s.size() > 2 && s[0] == '0' && s[1] == 'o') return AllOf(s.substr(2), IsOctal);
  if (s.size() > 2 && s[0] == '0' && s[1] == 'x') return AllOf(s.substr(2), IsHex);
  if (!s.empty() && (s[0] == '-' || s[0] == '+')) s.remove_prefix(1);
  return AllOf(s, IsDigit);
}

bool IsCoreFloat(std::string_view s) {
  if (!s.empty() && (s[0] == '-' || s[0] == '+')) s.remove_prefix(1);
  if (s == ".inf" || s == ".Inf" || s == ".INF") return true;
  if (s == ".nan" || s == ".NaN" || s == ".NAN") return true;
  size_t i = 0;
  size_t int_digits = 0;
  while (i < s.size() && IsDigit(s[i])) ++i, ++int_digits;
  size_t frac_digits = 0;
  if (i < s.size() && s[i] == '.') {
    ++i;
    while (i < s.size() && IsDigit(s[i])) ++i, ++frac_digits;
  }
  if (int_digits + frac_digits == 0) return false;
  if (i < s.size() && (s[i] == 'e' || s[i] == 'E')) {
    ++i;
    if (i < s.size() && (s[i] == '-' || s[i] == '+')) ++i;
    size_t exp_digits = 0;
    while (i < s.size() && IsDigit(s[i])) ++i, ++exp_digits;
    if (exp_digits == 0) return false;
  }
  return i == s.size();
}

// Thrown from the event handler to abort a stream that exceeds a limit.
struct TreeLimitExceeded {
  int line;
  int column;
  std::string message;
};

class TreeBuilder : public YAML::EventHandler {
 public:
  TreeBuilder(YamlStream* out, size_t input_size)
      : out_(out), node_budget_(4096 + 4 * input_size), text_budget_((1u << 20) + 4 * input_size) {}

  int document_index() const { return document_index_; }

  void OnDocumentStart(const YAML::Mark&) override {
    ++document_index_;
    stack_.clear();
    anchors_.clear();
    root_.reset();
  }

  void OnDocumentEnd() override {
    if (root_ && !root_->IsNull()) {
      out_->documents.push_back(YamlDocument{document_index_, std::move(*root_)});
    }
    root_.reset();
    anchors_.clear();
  }

  void OnNull(const YAML::Mark& mark, YAML::anchor_t anchor) override {
    YamlValue v;
    SetMark(v, mark);
    Add(std::move(v), anchor);
  }

  void OnAlias(const YAML::Mark& mark, YAML::anchor_t anchor) override {
    auto it = anchors_.find(anchor);
    if (it == anchors_.end()) {
      // yaml-cpp registers an anchor when its node starts, so this is an alias to an
      // enclosing, unfinished node: a cycle.
      throw TreeLimitExceeded{mark.line + 1, mark.column + 1,
                              "alias refers to a node that contains it (recursive alias)"};
    }
    Charge(it->second, mark);
    YamlValue copy = it->second;
    SetMark(copy, mark);
    Add(std::move(copy), 0);
  }

  void OnScalar(const YAML::Mark& mark, const std::string& tag, YAML::anchor_t anchor,
                const std::string& value) override {
    YamlValue v;
    SetMark(v, mark);
    // yaml-cpp tags plain scalars "?" and quoted or block scalars "!".
    bool core_tag = tag.rfind("tag:yaml.org,2002:", 0) == 0;
    bool is_string =
        tag == "!" || tag == "tag:yaml.org,2002:str" || (!tag.empty() && tag != "?" && !core_tag);
    if (!is_string && (IsPlainNull(value) || tag == "tag:yaml.org,2002:null")) {
      v.type = YamlValue::Type::kNull;
    } else {
      v.type = YamlValue::Type::kScalar;
      v.text = value;
      v.quoted = is_string;
    }
    text_used_ += value.size();
    if (text_used_ > text_budget_) {
      throw TreeLimitExceeded{v.line, v.column, "input expands to too much text"};
    }
    Add(std::move(v), anchor);
  }

  void OnSequenceStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t anchor,
                       YAML::EmitterStyle::value) override {
    Push(YamlValue::Type::kSequence, mark, anchor);
  }
  void OnSequenceEnd() override { Pop(); }

  void OnMapStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t anchor,
                  YAML::EmitterStyle::value) override {
    Push(YamlValue::Type::kMap, mark, anchor);
  }
  void OnMapEnd() override { Pop(); }

 private:
  struct Frame {
    YamlValue value;
    YAML::anchor_t anchor = 0;
    bool have_key = false;    // kMap: a key was read, its value comes next
    bool drop_value = false;  // kMap: the key was not a scalar; skip its value
    YamlKey key;
  };

  static void SetMark(YamlValue& v, const YAML::Mark& mark) {
    if (!mark.is_null()) {
      v.line = mark.line + 1;
      v.column = mark.column + 1;
    }
  }

  void CountNode(int line, int column) {
    if (++nodes_used_ > node_budget_) {
      throw TreeLimitExceeded{line, column, "input expands to too many nodes (alias expansion?)"};
    }
  }

  // Charges the budget for copying `v` (an alias), without recursing deeply.
  void Charge(const YamlValue& v, const YAML::Mark& mark) {
    std::vector<const YamlValue*> todo{&v};
    while (!todo.empty()) {
      const YamlValue* cur = todo.back();
      todo.pop_back();
      CountNode(mark.line + 1, mark.column + 1);
      text_used_ += cur->text.size();
      if (text_used_ > text_budget_) {
        throw TreeLimitExceeded{mark.line + 1, mark.column + 1,
                                "input expands to too much text (alias expansion?)"};
      }
      for (const auto& child : cur->items) todo.push_back(&child);
    }
  }

  void Push(YamlValue::Type type, const YAML::Mark& mark, YAML::anchor_t anchor) {
    Frame f;
    f.value.type = type;
    SetMark(f.value, mark);
    f.anchor = anchor;
    if (static_cast<int>(stack_.size()) >= kMaxYamlDepth) {
      throw TreeLimitExceeded{f.value.line, f.value.column,
                              "nesting deeper than " + std::to_string(kMaxYamlDepth) + " levels"};
    }
    stack_.push_back(std::move(f));
  }

  void Pop() {
    Frame f = std::move(stack_.back());
    stack_.pop_back();
    if (f.value.IsMap()) FinishMap(f.value);
    Add(std::move(f.value), f.anchor);
  }

  void Add(YamlValue v, YAML::anchor_t anchor) {
    CountNode(v.line, v.column);
    if (anchor != 0) {
      Charge(v, YAML::Mark());
      anchors_[anchor] = v;
    }
    if (stack_.empty()) {
      root_ = std::move(v);
      return;
    }
    Frame& top = stack_.back();
    if (top.value.IsSequence()) {
      top.value.items.push_back(std::move(v));
      return;
    }
    if (!top.have_key) {
      top.have_key = true;
      top.drop_value = false;
      top.key = YamlKey{v.text, v.line, v.column};
      if (v.IsMap() || v.IsSequence()) {
        Error(v.line, v.column, "a map key must be a string, not " + std::string(DescribeType(v)));
        top.drop_value = true;
      }
      return;
    }
    top.have_key = false;
    if (top.drop_value) return;
    // yaml-cpp places an empty value at the next token, and a block collection at its first
    // entry, both on a later line; the key is where a reader looks for them.
    if (v.IsNull() || ((v.IsMap() || v.IsSequence()) && v.line > top.key.line)) {
      v.line = top.key.line;
      v.column = top.key.column;
    }
    top.value.keys.push_back(std::move(top.key));
    top.value.items.push_back(std::move(v));
  }

  // Applies `<<` merge keys (explicit keys win, earlier merged maps win over later ones)
  // and reports duplicate keys, which Kubernetes rejects.
  void FinishMap(YamlValue& map) {
    std::vector<YamlKey> keys;
    std::vector<YamlValue> items;
    std::vector<const YamlValue*> merges;
    std::map<std::string, size_t> seen;
    for (size_t i = 0; i < map.keys.size(); ++i) {
      if (map.keys[i].text == "<<" && !map.items[i].quoted) {
        const YamlValue& src = map.items[i];
        if (src.IsMap()) {
          merges.push_back(&src);
        } else if (src.IsSequence() && std::all_of(src.items.begin(), src.items.end(),
                                                   [](const YamlValue& m) { return m.IsMap(); })) {
          for (const auto& m : src.items) merges.push_back(&m);
        } else {
          Error(map.keys[i].line, map.keys[i].column, "merge key << needs a map or a list of maps");
        }
        continue;
      }
      auto [it, inserted] = seen.emplace(map.keys[i].text, keys.size());
      if (!inserted) {
        const YamlKey& first = keys[it->second];
        Error(map.keys[i].line, map.keys[i].column,
              "duplicate key \"" + map.keys[i].text + "\" (first at line " +
                  std::to_string(first.line) + ":" + std::to_string(first.column) + ")");
        continue;
      }
      keys.push_back(map.keys[i]);
      items.push_back(std::move(map.items[i]));
    }
    for (const YamlValue* m : merges) {
      for (size_t i = 0; i < m->keys.size(); ++i) {
        if (seen.emplace(m->keys[i].text, keys.size()).second) {
          keys.push_back(m->keys[i]);
          items.push_back(m->items[i]);
        }
      }
    }
    map.keys = std::move(keys);
    map.items = std::move(items);
  }

  void Error(int line, int column, std::string message) {
    out_->errors.push_back(YamlError{document_index_, line, column, std::move(message)});
  }

  YamlStream* out_;
  size_t node_budget_;
  size_t text_budget_;
  size_t nodes_used_ = 0;
  size_t text_used_ = 0;
  int document_index_ = 0;
  std::vector<Frame> stack_;
  std::map<YAML::anchor_t, YamlValue> anchors_;
  std::optional<YamlValue> root_;
};

}  // namespace

ScalarKind ClassifyScalar(const YamlValue& v) {
  if (v.quoted) return ScalarKind::kString;
  const std::string& s = v.text;
  if (s == "true" || s == "True" || s == "TRUE" || s == "false" || s == "False" || s == "FALSE") {
    return ScalarKind::kBool;
  }
  if (IsCoreInt(s)) return ScalarKind::kInt;
  if (IsCoreFloat(s)) return ScalarKind::kFloat;
  return ScalarKind::kString;
}

std::optional<int64_t> ScalarInt(const YamlValue& v) {
  if (!v.IsScalar() || ClassifyScalar(v) != ScalarKind::kInt) return std::nullopt;
  std::string_view s = v.text;
  int base = 10;
  bool negative = false;
  if (s.size() > 2 && s[0] == '0' && (s[1] == 'o' || s[1] == 'x')) {
    base = s[1] == 'o' ? 8 : 16;
    s.remove_prefix(2);
  } else if (s[0] == '+' || s[0] == '-') {
    negative = s[0] == '-';
    s.remove_prefix(1);
  }
  uint64_t magnitude = 0;
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), magnitude, base);
  if (ec != std::errc() || ptr != s.data() + s.size()) return std::nullopt;
  if (magnitude > static_cast<uint64_t>(INT64_MAX)) return std::nullopt;
  int64_t value = static_cast<int64_t>(magnitude);
  return negative ? -value : value;
}

std::optional<bool> ScalarBool(const YamlValue& v) {
  if (!v.IsScalar() || ClassifyScalar(v) != ScalarKind::kBool) return std::nullopt;
  return v.text[0] == 't' || v.text[0] == 'T';
}

const char* DescribeType(const YamlValue& v) {
  switch (v.type) {
    case YamlValue::Type::kNull:
      return "null";
    case YamlValue::Type::kSequence:
      return "a list";
    case YamlValue::Type::kMap:
      return "a map";
    case YamlValue::Type::kScalar:
      break;
  }
  switch (ClassifyScalar(v)) {
    case ScalarKind::kString:
      return "a string";
    case ScalarKind::kInt:
    case ScalarKind::kFloat:
      return "a number";
    case ScalarKind::kBool:
      return "a boolean";
  }
  return "a scalar";
}

YamlStream ReadYamlStream(std::string_view content) {
  YamlStream out;
  std::string text(content);
  // A UTF-8 byte order mark is legal at the start of a stream; yaml-cpp does not skip it.
  if (text.rfind("\xEF\xBB\xBF", 0) == 0) text.erase(0, 3);
  std::istringstream stream(text);
  TreeBuilder builder(&out, text.size());
  try {
    YAML::Parser parser(stream);
    while (parser.HandleNextDocument(builder)) {
    }
  } catch (const TreeLimitExceeded& e) {
    out.errors.push_back(YamlError{builder.document_index(), e.line, e.column, e.message});
  } catch (const YAML::Exception& e) {
    int line = e.mark.is_null() ? 0 : e.mark.line + 1;
    int column = e.mark.is_null() ? 0 : e.mark.column + 1;
    out.errors.push_back(YamlError{std::max(builder.document_index(), 1), line, column,
                                   "YAML syntax error: " + e.msg});
  } catch (const std::exception& e) {
    out.errors.push_back(
        YamlError{builder.document_index(), 0, 0, std::string("cannot parse: ") + e.what()});
  }
  return out;
}

}  // namespace bulkhead::policy::internal
