// A small positioned YAML/JSON tree built from yaml-cpp parser events, so that decoders see
// exact line:column for every node and never touch yaml-cpp (or its exceptions) themselves.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace bulkhead::policy::internal {

struct YamlKey {
  std::string text;
  int line = 0;  // 1-based
  int column = 0;
};

struct YamlValue {
  enum class Type { kNull, kScalar, kSequence, kMap };
  Type type = Type::kNull;
  std::string text;     // kScalar
  bool quoted = false;  // kScalar written quoted (or tagged !!str): always a string
  int line = 0;         // 1-based position of the node
  int column = 0;
  std::vector<YamlValue> items;  // kSequence: the items; kMap: the values, parallel to `keys`
  std::vector<YamlKey> keys;     // kMap

  bool IsNull() const { return type == Type::kNull; }
  bool IsScalar() const { return type == Type::kScalar; }
  bool IsSequence() const { return type == Type::kSequence; }
  bool IsMap() const { return type == Type::kMap; }
  // kMap: the value of `key`, or nullptr.
  const YamlValue* Find(std::string_view key) const;
  const YamlKey* FindKey(std::string_view key) const;
};

// How a scalar reads under the YAML 1.2 core schema (what Kubernetes' YAML-to-JSON step does
// for the common cases): quoted scalars are always strings.
enum class ScalarKind { kString, kInt, kFloat, kBool };
ScalarKind ClassifyScalar(const YamlValue& v);
std::optional<int64_t> ScalarInt(const YamlValue& v);  // kInt scalars that fit in int64
std::optional<bool> ScalarBool(const YamlValue& v);    // kBool scalars
const char* DescribeType(const YamlValue& v);          // "a map", "a list", "a number", ...

struct YamlDocument {
  int index = 0;  // 1-based index in the stream (counting empty documents too)
  YamlValue root;
};

struct YamlError {
  int document = 0;  // 1-based; 0 when before any document
  int line = 0;
  int column = 0;
  std::string message;
};

struct YamlStream {
  std::vector<YamlDocument> documents;  // non-empty documents parsed before any error
  std::vector<YamlError> errors;        // at most one fatal parse error, plus tree errors
};

// Limits that keep hostile input (deep nesting, alias bombs) cheap.
inline constexpr int kMaxYamlDepth = 100;

// Parses a YAML (or JSON) stream. Never throws: yaml-cpp exceptions become YamlErrors.
YamlStream ReadYamlStream(std::string_view content);

}  // namespace bulkhead::policy::internal
