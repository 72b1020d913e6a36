// Typed, path-tracking access to a YamlValue tree for the kind decoders: every type or
// syntax problem becomes a Diagnostic naming the object, the field path and line:column.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "policy/loader.h"
#include "policy/model.h"
#include "policy/yaml_reader.h"

namespace bulkhead::policy::internal {

// Collects diagnostics about one object (or one document, before its kind is known).
class Reporter {
 public:
  Reporter(std::vector<Diagnostic>* out, std::string file, int document)
      : out_(out), file_(std::move(file)), document_(document) {}

  void set_object(std::string object) { object_ = std::move(object); }
  const std::string& object() const { return object_; }
  const std::string& file() const { return file_; }
  int document() const { return document_; }
  int errors() const { return errors_; }
  // In lenient mode errors are reported as warnings: used for the parts of workload
  // manifests that do not change policy meaning, where the input is observed state that
  // Bulkhead must read even when an API server would have refused it.
  bool lenient() const { return lenient_; }
  void set_lenient(bool lenient) { lenient_ = lenient; }

  SourceRef Where(const YamlValue* at) const;
  void Report(Diagnostic::Severity severity, const YamlValue* at, std::string_view field,
              std::string message);
  void Error(const YamlValue* at, std::string_view field, std::string message) {
    Report(Diagnostic::Severity::kError, at, field, std::move(message));
  }
  void Warning(const YamlValue* at, std::string_view field, std::string message) {
    Report(Diagnostic::Severity::kWarning, at, field, std::move(message));
  }
  void Notice(const YamlValue* at, std::string_view field, std::string message) {
    Report(Diagnostic::Severity::kNotice, at, field, std::move(message));
  }

 private:
  std::vector<Diagnostic>* out_;
  std::string file_;
  int document_;
  std::string object_;
  int errors_ = 0;
  bool lenient_ = false;
};

// Makes a Reporter lenient for a scope.
class LenientScope {
 public:
  explicit LenientScope(Reporter& r) : r_(r), was_(r.lenient()) { r_.set_lenient(true); }
  ~LenientScope() { r_.set_lenient(was_); }
  LenientScope(const LenientScope&) = delete;
  LenientScope& operator=(const LenientScope&) = delete;

 private:
  Reporter& r_;
  bool was_;
};

// A field of an object: its value (nullptr when absent or null, which Kubernetes treats
// alike), the nearest present node for positions, and its path ("spec.ingress[0].ports").
struct Field {
  const YamlValue* value = nullptr;
  const YamlValue* anchor = nullptr;
  std::string path;

  bool present() const { return value != nullptr; }
  // Written but empty (`to:` or `to: null`), as opposed to absent.
  bool explicit_null() const { return value == nullptr && anchor != nullptr && anchor->IsNull(); }
  const YamlValue* at() const { return value ? value : anchor; }
};

Field RootField(const YamlValue& root);
std::string JoinPath(std::string_view parent, std::string_view key);

// Typed readers. Each reports a wrong type (or a missing required field) and returns
// nullopt / false; absent optional fields return nullopt without a diagnostic.
class Decoder {
 public:
  explicit Decoder(Reporter* r) : r_(r) {}
  Reporter& reporter() { return *r_; }

  Field Get(const Field& map, std::string_view key) const;
  Field Item(const Field& seq, size_t index) const;

  // True when the field is present and a map; reports other types. `required` also
  // reports absence.
  bool Map(const Field& f, bool required = false);
  // The items of a list field (empty when absent or of the wrong type).
  std::vector<Field> List(const Field& f, bool required = false);
  std::optional<std::string> String(const Field& f, bool required = false);
  std::optional<int64_t> Int(const Field& f, bool required = false);
  std::optional<bool> Bool(const Field& f, bool required = false);
  // A list of strings.
  std::optional<std::vector<std::string>> Strings(const Field& f, bool required = false);
  // The entries of a map field with string values (labels, annotations).
  std::optional<std::vector<std::pair<std::string, Field>>> Entries(const Field& f);

  // Reports every key of `map` that is not in `known` (strict decoding).
  void OnlyKnownFields(const Field& map, const std::vector<std::string_view>& known);
  // Reports a present field that must not be used here.
  void Forbid(const Field& f, std::string_view why);

  // Validated Kubernetes structures.
  std::optional<Labels> LabelMap(const Field& f);
  std::optional<LabelSelector> Selector(const Field& f, bool required = false);
  std::optional<Protocol> PortProtocol(const Field& f);  // TCP (default), UDP, SCTP
  std::optional<uint16_t> PortNumber(const Field& f, bool required = false);  // 1..65535
  std::optional<Cidr> CidrValue(const Field& f, bool warn_host_bits);
  std::optional<IpAddr> IpValue(const Field& f);
  std::optional<Mode> ModeValue(const Field& f, bool allow_learn);

  void Error(const Field& f, std::string message) { r_->Error(f.at(), f.path, std::move(message)); }
  void Warning(const Field& f, std::string message) {
    r_->Warning(f.at(), f.path, std::move(message));
  }

 private:
  bool TypeError(const Field& f, std::string_view expected);
  void Missing(const Field& f);
  Reporter* r_;
};

// Kubernetes name and label syntax (k8s.io/apimachinery/pkg/util/validation). Each returns
// an empty string when valid, else what is wrong.
std::string CheckDns1123Label(std::string_view s);      // namespaces, ports, ...: <= 63
std::string CheckDns1123Subdomain(std::string_view s);  // most object names: <= 253
std::string CheckLabelKey(std::string_view s);          // [prefix/]name
std::string CheckLabelValue(std::string_view s);
std::string CheckPortName(std::string_view s);  // IANA_SVC_NAME
// Inventory and CNI endpoint fields: a host interface name (IFNAMSIZ), and a netns given as
// a name under /var/run/netns or an absolute path.
std::string CheckInterfaceName(std::string_view s);
std::string CheckNetns(std::string_view s);
// UTF-8 handling: the model and diagnostics only ever hold valid UTF-8 (JSON output of
// either must not fail on a stray byte from the input).
bool IsValidUtf8(std::string_view s);
std::string EscapeInvalidUtf8(std::string_view s);  // invalid bytes become "\xNN"

// Whether a name can at least be used in "namespace/name" identifiers and messages: printable
// ASCII without spaces, '/' or '%'.
bool IsUsableName(std::string_view s);

}  // namespace bulkhead::policy::internal
