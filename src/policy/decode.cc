// Typed field readers and Kubernetes syntax checks used by every kind decoder.
#include "policy/decode.h"

#include <algorithm>
#include <array>

namespace bulkhead::policy::internal {

SourceRef Reporter::Where(const YamlValue* at) const {
  SourceRef ref;
  ref.file = file_;
  ref.document = document_;
  if (at != nullptr) {
    ref.line = at->line;
    ref.column = at->column;
  }
  return ref;
}

void Reporter::Report(Diagnostic::Severity severity, const YamlValue* at, std::string_view field,
                      std::string message) {
  if (severity == Diagnostic::Severity::kError && lenient_) {
    severity = Diagnostic::Severity::kWarning;
    message += " (accepted with a warning: the API server would reject it)";
  }
  if (severity == Diagnostic::Severity::kError) ++errors_;
  Diagnostic d;
  d.severity = severity;
  d.where = Where(at);
  d.object = object_;
  d.field = std::string(field);
  d.message = std::move(message);
  out_->push_back(std::move(d));
}

Field RootField(const YamlValue& root) { return Field{&root, &root, ""}; }

std::string JoinPath(std::string_view parent, std::string_view key) {
  if (parent.empty()) return std::string(key);
  return std::string(parent) + "." + std::string(key);
}

namespace {

// Position of a map key, for diagnostics about the key itself.
YamlValue KeyPosition(const YamlKey& key) {
  YamlValue v;
  v.line = key.line;
  v.column = key.column;
  return v;
}

// YAML 1.1 booleans that the YAML 1.2 core schema reads as strings; Kubernetes' YAML
// decoder (go-yaml v2) reads them as booleans, so a string field written this way is
// rejected by the API server.
bool IsYaml11Bool(const YamlValue& v) {
  static constexpr std::array<std::string_view, 16> kWords = {
      "y",  "Y",  "yes", "Yes", "YES", "n",   "N",   "no",
      "No", "NO", "on",  "On",  "ON",  "off", "Off", "OFF"};
  return !v.quoted && std::find(kWords.begin(), kWords.end(), v.text) != kWords.end();
}

size_t EditDistance(std::string_view a, std::string_view b) {
  std::vector<size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t sub = prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1);
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, sub});
    }
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

bool IsLowerAlnum(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }
bool IsAlnum(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

// [a-z0-9]([-a-z0-9]*[a-z0-9])?
bool MatchesDnsLabel(std::string_view s) {
  if (s.empty() || !IsLowerAlnum(s.front()) || !IsLowerAlnum(s.back())) return false;
  return std::all_of(s.begin(), s.end(), [](char c) { return IsLowerAlnum(c) || c == '-'; });
}

// ([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]
bool MatchesQualifiedNamePart(std::string_view s) {
  if (s.empty() || !IsAlnum(s.front()) || !IsAlnum(s.back())) return false;
  return std::all_of(s.begin(), s.end(),
                     [](char c) { return IsAlnum(c) || c == '-' || c == '_' || c == '.'; });
}

std::string Quote(std::string_view s) { return "\"" + std::string(s) + "\""; }

}  // namespace

std::string CheckDns1123Label(std::string_view s) {
  if (s.size() > 63) return "must be no more than 63 characters";
  if (!MatchesDnsLabel(s)) {
    return "must be a DNS-1123 label: lower case letters, digits and '-', starting and "
           "ending with a letter or digit";
  }
  return "";
}

std::string CheckDns1123Subdomain(std::string_view s) {
  if (s.size() > 253) return "must be no more than 253 characters";
  bool ok = !s.empty();
  size_t start = 0;
  while (ok) {
    size_t dot = s.find('.', start);
    ok = MatchesDnsLabel(s.substr(start, dot == std::string_view::npos ? dot : dot - start));
    if (dot == std::string_view::npos) break;
    start = dot + 1;
  }
  if (!ok) {
    return "must be a DNS-1123 subdomain: lower case letters, digits, '-' and '.', starting "
           "and ending with a letter or digit";
  }
  return "";
}

std::string CheckLabelKey(std::string_view s) {
  std::string_view name = s;
  size_t slash = s.find('/');
  if (slash != std::string_view::npos) {
    std::string_view prefix = s.substr(0, slash);
    name = s.substr(slash + 1);
    if (prefix.empty()) return "prefix before '/' must not be empty";
    std::string p = CheckDns1123Subdomain(prefix);
    if (!p.empty()) return "prefix " + Quote(prefix) + " " + p;
  }
  if (name.empty()) return "name part must not be empty";
  if (name.size() > 63) return "name part must be no more than 63 characters";
  if (!MatchesQualifiedNamePart(name)) {
    return "name part must consist of letters, digits, '-', '_' or '.', starting and ending "
           "with a letter or digit (at most one '/' after an optional DNS prefix)";
  }
  return "";
}

std::string CheckLabelValue(std::string_view s) {
  if (s.empty()) return "";
  if (s.size() > 63) return "must be no more than 63 characters";
  if (!MatchesQualifiedNamePart(s)) {
    return "must be empty or consist of letters, digits, '-', '_' or '.', starting and "
           "ending with a letter or digit";
  }
  return "";
}

std::string CheckPortName(std::string_view s) {
  if (s.empty()) return "must not be empty";
  if (s.size() > 15) return "must be no more than 15 characters (IANA_SVC_NAME)";
  if (!std::all_of(s.begin(), s.end(), [](char c) { return IsLowerAlnum(c) || c == '-'; })) {
    return "must contain only lower case letters, digits and '-' (IANA_SVC_NAME)";
  }
  if (!std::any_of(s.begin(), s.end(), [](char c) { return c >= 'a' && c <= 'z'; })) {
    return "must contain at least one letter (IANA_SVC_NAME)";
  }
  if (s.front() == '-' || s.back() == '-') {
    return "must not begin or end with '-' (IANA_SVC_NAME)";
  }
  if (s.find("--") != std::string_view::npos) {
    return "must not contain consecutive '-' (IANA_SVC_NAME)";
  }
  return "";
}

namespace {
// Length of the valid UTF-8 sequence starting at s[i], or 0 when it is not valid.
size_t Utf8SequenceLength(std::string_view s, size_t i) {
  auto byte = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  unsigned char c = byte(i);
  if (c < 0x80) return 1;
  size_t len = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC2 ? 2 : 0;
  if (len == 0 || c > 0xF4 || i + len > s.size()) return 0;
  for (size_t k = 1; k < len; ++k) {
    if ((byte(i + k) & 0xC0) != 0x80) return 0;
  }
  unsigned char c1 = byte(i + 1);
  if (c == 0xE0 && c1 < 0xA0) return 0;  // overlong
  if (c == 0xED && c1 > 0x9F) return 0;  // surrogates
  if (c == 0xF0 && c1 < 0x90) return 0;  // overlong
  if (c == 0xF4 && c1 > 0x8F) return 0;  // above U+10FFFF
  return len;
}
}  // namespace

bool IsValidUtf8(std::string_view s) {
  for (size_t i = 0; i < s.size();) {
    size_t len = Utf8SequenceLength(s, i);
    if (len == 0) return false;
    i += len;
  }
  return true;
}

std::string EscapeInvalidUtf8(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size();) {
    size_t len = Utf8SequenceLength(s, i);
    if (len == 0) {
      static constexpr char kHex[] = "0123456789abcdef";
      unsigned char c = static_cast<unsigned char>(s[i]);
      out += "\\x";
      out += kHex[c >> 4];
      out += kHex[c & 0xF];
      ++i;
      continue;
    }
    out.append(s.substr(i, len));
    i += len;
  }
  return out;
}

// IFNAMSIZ is 16 including the NUL.
constexpr size_t kMaxInterfaceName = 15;

std::string CheckInterfaceName(std::string_view s) {
  if (s.empty() || s.size() > kMaxInterfaceName) return "must be 1 to 15 characters";
  if (s == "." || s == "..") return "must not be . or ..";
  for (char c : s) {
    if (c == '/' || c == ':' || c <= ' ' || c == 0x7f) {
      return "must not contain '/', ':', spaces or control characters";
    }
  }
  return "";
}

std::string CheckNetns(std::string_view s) {
  if (s.empty()) return "must not be empty";
  for (char c : s) {
    if (c <= ' ' || c == 0x7f) return "must not contain spaces or control characters";
  }
  if (s.find('/') != std::string_view::npos && s.front() != '/') {
    return "must be a name under /var/run/netns or an absolute path";
  }
  return "";
}

bool IsUsableName(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) {
    return c > ' ' && c < 0x7f && c != '/' && c != '%';
  });
}

Field Decoder::Get(const Field& map, std::string_view key) const {
  Field f;
  f.path = JoinPath(map.path, key);
  f.anchor = map.at();
  if (map.value != nullptr && map.value->IsMap()) {
    const YamlValue* v = map.value->Find(key);
    if (v != nullptr && !v->IsNull()) {
      f.value = v;
    } else if (v != nullptr) {
      f.anchor = v;  // explicit null: point at it
    }
  }
  return f;
}

Field Decoder::Item(const Field& seq, size_t index) const {
  Field f;
  f.path = seq.path + "[" + std::to_string(index) + "]";
  f.anchor = seq.at();
  if (seq.value != nullptr && seq.value->IsSequence() && index < seq.value->items.size()) {
    const YamlValue* v = &seq.value->items[index];
    if (v->IsNull()) {
      f.anchor = v;
    } else {
      f.value = v;
    }
  }
  return f;
}

bool Decoder::TypeError(const Field& f, std::string_view expected) {
  std::string msg = "must be " + std::string(expected) + ", not " + DescribeType(*f.value);
  if (f.value->IsScalar() && expected == "a string")
    msg += " (quote it: \"" + f.value->text + "\")";
  Error(f, std::move(msg));
  return false;
}

void Decoder::Missing(const Field& f) {
  Error(f, f.explicit_null() ? "is required but empty" : "is required");
}

bool Decoder::Map(const Field& f, bool required) {
  if (!f.present()) {
    if (required) Missing(f);
    return false;
  }
  if (!f.value->IsMap()) return TypeError(f, "a map");
  return true;
}

std::vector<Field> Decoder::List(const Field& f, bool required) {
  std::vector<Field> out;
  if (!f.present()) {
    if (required) Missing(f);
    return out;
  }
  if (!f.value->IsSequence()) {
    TypeError(f, "a list");
    return out;
  }
  for (size_t i = 0; i < f.value->items.size(); ++i) out.push_back(Item(f, i));
  return out;
}

std::optional<std::string> Decoder::String(const Field& f, bool required) {
  if (!f.present()) {
    if (required) Missing(f);
    return std::nullopt;
  }
  if (!f.value->IsScalar() || ClassifyScalar(*f.value) != ScalarKind::kString) {
    TypeError(f, "a string");
    return std::nullopt;
  }
  if (!IsValidUtf8(f.value->text)) {
    Error(f, "is not valid UTF-8");
    return std::nullopt;
  }
  if (IsYaml11Bool(*f.value)) {
    Error(f, "\"" + f.value->text +
                 "\" is read as a boolean by Kubernetes (YAML 1.1); quote it to make it a "
                 "string");
    return std::nullopt;
  }
  return f.value->text;
}

std::optional<int64_t> Decoder::Int(const Field& f, bool required) {
  if (!f.present()) {
    if (required) Missing(f);
    return std::nullopt;
  }
  if (!f.value->IsScalar() || ClassifyScalar(*f.value) != ScalarKind::kInt) {
    TypeError(f, "an integer");
    return std::nullopt;
  }
  auto v = ScalarInt(*f.value);
  if (!v) Error(f, "integer " + f.value->text + " is out of range");
  return v;
}

std::optional<bool> Decoder::Bool(const Field& f, bool required) {
  if (!f.present()) {
    if (required) Missing(f);
    return std::nullopt;
  }
  if (auto b = ScalarBool(*f.value)) return b;
  if (f.value->IsScalar() && IsYaml11Bool(*f.value)) {
    char c = f.value->text[0];
    return c == 'y' || c == 'Y' || f.value->text == "on" || f.value->text == "On" ||
           f.value->text == "ON";
  }
  TypeError(f, "a boolean");
  return std::nullopt;
}

std::optional<std::vector<std::string>> Decoder::Strings(const Field& f, bool required) {
  if (!f.present()) {
    if (required) Missing(f);
    return std::nullopt;
  }
  if (!f.value->IsSequence()) {
    TypeError(f, "a list");
    return std::nullopt;
  }
  std::vector<std::string> out;
  bool ok = true;
  for (const Field& item : List(f)) {
    if (!item.present()) {
      Error(item, "must be a string, not null");
      ok = false;
      continue;
    }
    auto s = String(item);
    if (s) {
      out.push_back(*s);
    } else {
      ok = false;
    }
  }
  if (!ok) return std::nullopt;
  return out;
}

std::optional<std::vector<std::pair<std::string, Field>>> Decoder::Entries(const Field& f) {
  if (!Map(f)) return std::nullopt;
  std::vector<std::pair<std::string, Field>> out;
  for (size_t i = 0; i < f.value->keys.size(); ++i) {
    const YamlKey& key = f.value->keys[i];
    Field item;
    item.path = f.path + "[" + key.text + "]";
    item.anchor = &f.value->items[i];
    if (!f.value->items[i].IsNull()) item.value = &f.value->items[i];
    out.emplace_back(key.text, item);
  }
  return out;
}

void Decoder::OnlyKnownFields(const Field& map, const std::vector<std::string_view>& known) {
  if (map.value == nullptr || !map.value->IsMap()) return;
  for (const YamlKey& key : map.value->keys) {
    if (std::find(known.begin(), known.end(), key.text) != known.end()) continue;
    std::string msg = "unknown field \"" + key.text + "\"";
    std::string_view best;
    size_t best_distance = 3;
    for (std::string_view k : known) {
      size_t d = EditDistance(key.text, k);
      if (d < best_distance) best_distance = d, best = k;
    }
    if (!best.empty()) msg += " (did you mean \"" + std::string(best) + "\"?)";
    YamlValue pos = KeyPosition(key);
    r_->Error(&pos, JoinPath(map.path, key.text), std::move(msg));
  }
}

void Decoder::Forbid(const Field& f, std::string_view why) {
  if (f.present()) Error(f, "must not be set: " + std::string(why));
}

std::optional<Labels> Decoder::LabelMap(const Field& f) {
  auto entries = Entries(f);
  if (!entries) return std::nullopt;
  Labels labels;
  bool ok = true;
  for (size_t i = 0; i < entries->size(); ++i) {
    const auto& [key, item] = (*entries)[i];
    std::string key_problem = CheckLabelKey(key);
    if (!key_problem.empty()) {
      YamlValue pos = KeyPosition(f.value->keys[i]);
      r_->Error(&pos, item.path, "invalid label key \"" + key + "\": " + key_problem);
      ok = false;
    }
    std::string value;
    if (item.present()) {
      auto s = String(item);
      if (!s) {
        ok = false;
        continue;
      }
      value = *s;
    }
    std::string value_problem = CheckLabelValue(value);
    if (!value_problem.empty()) {
      Error(item, "invalid label value \"" + value + "\": " + value_problem);
      ok = false;
    }
    labels[key] = value;
  }
  if (!ok) return std::nullopt;
  return labels;
}

std::optional<LabelSelector> Decoder::Selector(const Field& f, bool required) {
  if (!Map(f, required)) return std::nullopt;
  OnlyKnownFields(f, {"matchLabels", "matchExpressions"});
  LabelSelector sel;
  bool ok = true;
  Field labels = Get(f, "matchLabels");
  if (labels.present()) {
    if (auto l = LabelMap(labels)) {
      sel.match_labels = *l;
    } else {
      ok = false;
    }
  }
  Field exprs = Get(f, "matchExpressions");
  if (exprs.present() && !exprs.value->IsSequence()) ok = false;
  for (const Field& e : List(exprs)) {
    if (!Map(e, true)) {
      ok = false;
      continue;
    }
    OnlyKnownFields(e, {"key", "operator", "values"});
    LabelRequirement req;
    Field key = Get(e, "key");
    if (auto k = String(key, true)) {
      std::string problem = CheckLabelKey(*k);
      if (!problem.empty()) {
        Error(key, "invalid label key \"" + *k + "\": " + problem);
        ok = false;
      }
      req.key = *k;
    } else {
      ok = false;
    }
    Field op = Get(e, "operator");
    auto op_text = String(op, true);
    if (!op_text) {
      ok = false;
    } else if (*op_text == "In") {
      req.op = SelectorOperator::kIn;
    } else if (*op_text == "NotIn") {
      req.op = SelectorOperator::kNotIn;
    } else if (*op_text == "Exists") {
      req.op = SelectorOperator::kExists;
    } else if (*op_text == "DoesNotExist") {
      req.op = SelectorOperator::kDoesNotExist;
    } else {
      Error(op, "unknown operator \"" + *op_text + "\" (In, NotIn, Exists, DoesNotExist)");
      ok = false;
      op_text.reset();
    }
    Field values = Get(e, "values");
    auto vals = Strings(values);
    if (values.present() && !vals) ok = false;
    if (vals) {
      for (size_t i = 0; i < vals->size(); ++i) {
        std::string problem = CheckLabelValue((*vals)[i]);
        if (!problem.empty()) {
          Error(Item(values, i), "invalid label value \"" + (*vals)[i] + "\": " + problem);
          ok = false;
        }
      }
      req.values = *vals;
    }
    if (op_text) {
      bool needs_values = req.op == SelectorOperator::kIn || req.op == SelectorOperator::kNotIn;
      if (needs_values && req.values.empty()) {
        Error(values, "must be non-empty when operator is " + *op_text);
        ok = false;
      } else if (!needs_values && !req.values.empty()) {
        Error(values, "must be empty when operator is " + *op_text);
        ok = false;
      }
    }
    sel.match_expressions.push_back(std::move(req));
  }
  if (!ok) return std::nullopt;
  return sel;
}

std::optional<Protocol> Decoder::PortProtocol(const Field& f) {
  if (!f.present()) return Protocol::kTCP;
  auto s = String(f);
  if (!s) return std::nullopt;
  if (*s == "TCP") return Protocol::kTCP;
  if (*s == "UDP") return Protocol::kUDP;
  if (*s == "SCTP") return Protocol::kSCTP;
  Error(f, "unsupported protocol \"" + *s + "\" (TCP, UDP or SCTP, in capitals)");
  return std::nullopt;
}

std::optional<uint16_t> Decoder::PortNumber(const Field& f, bool required) {
  auto v = Int(f, required);
  if (!v) return std::nullopt;
  if (*v < 1 || *v > 65535) {
    Error(f, "port " + std::to_string(*v) + " is out of range 1-65535");
    return std::nullopt;
  }
  return static_cast<uint16_t>(*v);
}

std::optional<Cidr> Decoder::CidrValue(const Field& f, bool warn_host_bits) {
  auto s = String(f, true);
  if (!s) return std::nullopt;
  auto loose = s->find('/') == std::string::npos ? std::nullopt : Cidr::Parse(*s, false);
  if (!loose) {
    Error(f, "invalid CIDR \"" + *s + "\" (expected address/prefix-length)");
    return std::nullopt;
  }
  if (warn_host_bits && !Cidr::Parse(*s, true)) {
    Warning(f, "CIDR \"" + *s + "\" has host bits set; it means the network " + loose->ToString());
  }
  return loose;
}

std::optional<IpAddr> Decoder::IpValue(const Field& f) {
  auto s = String(f, true);
  if (!s) return std::nullopt;
  auto ip = IpAddr::Parse(*s);
  if (!ip) Error(f, "invalid IP address \"" + *s + "\"");
  return ip;
}

std::optional<Mode> Decoder::ModeValue(const Field& f, bool allow_learn) {
  auto s = String(f);
  if (!s) return std::nullopt;
  if (*s == "enforce") return Mode::kEnforce;
  if (*s == "audit") return Mode::kAudit;
  if (*s == "learn" && allow_learn) return Mode::kLearn;
  Error(f, "unknown mode \"" + *s + "\" (" +
               (allow_learn ? "enforce, audit or learn)" : "enforce or audit)"));
  return std::nullopt;
}

}  // namespace bulkhead::policy::internal
