// Decodes and validates the Lab file with the policy loader's positioned readers, so its
// errors read like every other manifest error (file:line:col, object, field).
#include "lab/lab_file.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "policy/decode.h"
#include "policy/yaml_reader.h"

namespace bulkhead::lab {

using policy::Diagnostic;
using policy::internal::Decoder;
using policy::internal::Field;
using policy::internal::Reporter;

namespace {

constexpr std::string_view kApiVersion = "bulkhead.io/v1alpha1";

std::string Quote(std::string_view s) { return "\"" + std::string(s) + "\""; }

// Subnets that cannot hold workloads: packets to them never reach a bridge.
bool IsUnusableRange(const common::Cidr& c) {
  static const common::Cidr kBad[] = {
      *common::Cidr::Parse("0.0.0.0/8"),      *common::Cidr::Parse("127.0.0.0/8"),
      *common::Cidr::Parse("169.254.0.0/16"), *common::Cidr::Parse("224.0.0.0/3"),
      *common::Cidr::Parse("::/8"),           *common::Cidr::Parse("fe80::/10"),
      *common::Cidr::Parse("ff00::/8"),
  };
  for (const auto& bad : kBad) {
    if (bad.addr.v6 == c.addr.v6 && (bad.Contains(c) || c.Contains(bad))) return true;
  }
  return false;
}

// How many workload addresses host-local can hand out in `c`: the network address and the
// gateway (the bridge) are taken, and the broadcast address in IPv4.
uint64_t UsableAddresses(const common::Cidr& c) {
  int host_bits = c.addr.BitWidth() - c.prefix_len;
  if (host_bits >= 40) return UINT64_MAX;
  uint64_t size = uint64_t{1} << host_bits;
  uint64_t taken = c.addr.v6 ? 2 : 3;
  return size > taken ? size - taken : 0;
}

class LabDecoder {
 public:
  LabDecoder(LabParseResult* out, Reporter* r) : spec_(out->spec), d_(r) {}

  void Decode(const Field& root) {
    Reporter& r = d_.reporter();
    r.set_object("Lab");
    if (!root.present() || !root.value->IsMap()) {
      d_.Error(root, std::string("must be a Lab object (a map with apiVersion, kind, metadata "
                                 "and spec), not ") +
                         (root.present() ? policy::internal::DescribeType(*root.value) : "null"));
      return;
    }
    d_.OnlyKnownFields(root, {"apiVersion", "kind", "metadata", "spec"});
    // The name first, so that every later message names the lab.
    Field meta = d_.Get(root, "metadata");
    if (d_.Map(meta, true)) {
      d_.OnlyKnownFields(meta, {"name", "labels", "annotations"});
      Field name = d_.Get(meta, "name");
      if (auto n = d_.String(name, true)) {
        std::string problem = CheckLabName(*n);
        if (problem.empty()) {
          spec_.name = *n;
          r.set_object("Lab " + *n);
        } else {
          d_.Error(name, "invalid lab name " + Quote(*n) + ": " + problem);
        }
      }
      if (Field labels = d_.Get(meta, "labels"); labels.present()) d_.LabelMap(labels);
      if (Field notes = d_.Get(meta, "annotations"); notes.present()) d_.Entries(notes);
    }
    Field kind = d_.Get(root, "kind");
    if (auto k = d_.String(kind, true); k && *k != "Lab") {
      d_.Error(kind, "kind " + Quote(*k) + " is not a lab file (expected kind: Lab)");
      return;
    }
    Field api = d_.Get(root, "apiVersion");
    if (auto a = d_.String(api, true); a && *a != kApiVersion) {
      d_.Error(api, "apiVersion " + Quote(*a) + " of Lab is not supported (" +
                        std::string(kApiVersion) + ")");
    }
    Field spec = d_.Get(root, "spec");
    if (!d_.Map(spec, true)) return;
    d_.OnlyKnownFields(spec, {"ipFamilies", "ipv4Subnet", "ipv6Subnet", "mode", "hosts",
                              "namespaces", "workloads"});
    Families(spec);
    Hosts(d_.Get(spec, "hosts"));
    spec_.mode = d_.ModeValue(d_.Get(spec, "mode"), /*allow_learn=*/true);
    for (const Field& f : d_.List(d_.Get(spec, "namespaces"), /*required=*/true)) Namespace(f);
    Field workloads = d_.Get(spec, "workloads");
    std::vector<Field> items = d_.List(workloads, /*required=*/true);
    if (workloads.present() && workloads.value->IsSequence() && items.empty()) {
      d_.Error(workloads, "a lab needs at least one workload");
    }
    for (const Field& f : items) Workload(f);
    Capacity(spec);
  }

 private:
  // spec.hosts: a list of host names, or a count (hosts host-1 ... host-N).
  void Hosts(const Field& f) {
    if (!f.present()) {
      spec_.hosts.push_back(LabHost{std::string(kDefaultHostName), {}, {}});
      return;
    }
    hosts_field_ = f;
    if (f.value->IsSequence()) {
      std::map<std::string, int> lines;
      auto items = d_.List(f);
      if (items.empty()) d_.Error(f, "needs at least one host");
      if (items.size() > kMaxHosts) {
        d_.Error(f, "a lab has at most " + std::to_string(kMaxHosts) + " hosts, not " +
                        std::to_string(items.size()));
        hosts_ok_ = false;
        return;
      }
      for (const Field& item : items) {
        auto n = d_.String(item, true);
        if (!n) {
          hosts_ok_ = false;
          continue;
        }
        std::string problem = policy::internal::CheckDns1123Label(*n);
        if (problem.empty() && n->size() > kMaxHostNameLength) {
          problem = "must be no more than " + std::to_string(kMaxHostNameLength) + " characters";
        }
        if (!problem.empty()) {
          d_.Error(item, "invalid host name " + Quote(*n) + ": " + problem);
          hosts_ok_ = false;
          continue;
        }
        if (auto it = lines.find(*n); it != lines.end()) {
          d_.Error(item, "host " + Quote(*n) + " is already declared at line " +
                             std::to_string(it->second));
          hosts_ok_ = false;
          continue;
        }
        lines[*n] = item.at()->line;
        spec_.hosts.push_back(LabHost{*n, {}, {}});
      }
      if (spec_.hosts.empty()) hosts_ok_ = false;
      return;
    }
    if (!f.value->IsScalar()) {
      d_.Error(f, std::string("must be a list of host names or a number of hosts, not ") +
                      policy::internal::DescribeType(*f.value));
      hosts_ok_ = false;
      return;
    }
    auto n = d_.Int(f);
    if (!n) {
      hosts_ok_ = false;
      return;
    }
    if (*n < 1 || *n > static_cast<int64_t>(kMaxHosts)) {
      d_.Error(f,
               "a lab has 1 to " + std::to_string(kMaxHosts) + " hosts, not " + std::to_string(*n));
      hosts_ok_ = false;
      return;
    }
    for (int64_t i = 1; i <= *n; ++i) {
      spec_.hosts.push_back(LabHost{"host-" + std::to_string(i), {}, {}});
    }
  }

  void Families(const Field& spec) {
    bool v4 = true, v6 = true;
    Field fam = d_.Get(spec, "ipFamilies");
    if (fam.present()) {
      v4 = v6 = false;
      auto list = d_.List(fam);
      if (fam.value->IsSequence() && list.empty()) {
        d_.Error(fam, "needs at least one of IPv4, IPv6");
      }
      for (const Field& item : list) {
        auto s = d_.String(item, true);
        if (!s) continue;
        bool* which = *s == "IPv4" ? &v4 : *s == "IPv6" ? &v6 : nullptr;
        if (which == nullptr) {
          d_.Error(item, "unknown IP family " + Quote(*s) + " (IPv4 or IPv6)");
        } else if (*which) {
          d_.Error(item, "duplicate IP family " + Quote(*s));
        } else {
          *which = true;
        }
      }
    }
    spec_.ipv4_subnet = Subnet(d_.Get(spec, "ipv4Subnet"), false, v4, kDefaultIpv4Subnet);
    spec_.ipv6_subnet = Subnet(d_.Get(spec, "ipv6Subnet"), true, v6, kDefaultIpv6Subnet);
  }

  std::optional<common::Cidr> Subnet(const Field& f, bool v6, bool wanted,
                                     std::string_view fallback) {
    const char* family = v6 ? "IPv6" : "IPv4";
    if (!f.present()) {
      return wanted ? common::Cidr::Parse(fallback) : std::nullopt;
    }
    auto c = d_.CidrValue(f, /*warn_host_bits=*/true);
    if (!c) return std::nullopt;
    if (c->addr.v6 != v6) {
      d_.Error(f, c->ToString() + " is not an " + family + " range");
      return std::nullopt;
    }
    if (!wanted) {
      d_.Error(f, std::string("is set, but spec.ipFamilies leaves ") + family + " out");
      return std::nullopt;
    }
    if (IsUnusableRange(*c)) {
      d_.Error(f, c->ToString() +
                      " cannot hold workloads (loopback, link-local, multicast or "
                      "reserved addresses)");
      return std::nullopt;
    }
    if (UsableAddresses(*c) == 0) {
      d_.Error(f, c->ToString() + " is too small for a gateway and a workload");
      return std::nullopt;
    }
    subnet_fields_[v6 ? 1 : 0] = f;
    return c;
  }

  void Namespace(const Field& f) {
    if (!d_.Map(f, true)) return;
    d_.OnlyKnownFields(f, {"name", "labels", "mode"});
    Field name = d_.Get(f, "name");
    auto n = d_.String(name, true);
    if (!n) return;
    std::string problem = policy::internal::CheckDns1123Label(*n);
    if (!problem.empty()) {
      d_.Error(name, "invalid namespace name " + Quote(*n) + ": " + problem);
      return;
    }
    if (auto it = namespace_lines_.find(*n); it != namespace_lines_.end()) {
      d_.Error(name, "namespace " + Quote(*n) + " is already declared at line " +
                         std::to_string(it->second));
      return;
    }
    namespace_lines_[*n] = name.at()->line;
    LabNamespace ns;
    ns.name = *n;
    if (Field labels = d_.Get(f, "labels"); labels.present()) {
      ns.labels = d_.LabelMap(labels).value_or(policy::Labels{});
    }
    ns.mode = d_.ModeValue(d_.Get(f, "mode"), /*allow_learn=*/true);
    spec_.namespaces.push_back(std::move(ns));
  }

  void Workload(const Field& f) {
    if (!d_.Map(f, true)) return;
    d_.OnlyKnownFields(f, {"namespace", "name", "labels", "serviceAccount", "ports", "host"});
    LabWorkload w;
    bool ok = true;
    Field ns = d_.Get(f, "namespace");
    if (auto s = d_.String(ns, true)) {
      w.namespace_name = *s;
      if (namespace_lines_.count(*s) == 0) {
        d_.Error(ns, "namespace " + Quote(*s) + " is not declared in spec.namespaces");
        ok = false;
      }
    } else {
      ok = false;
    }
    Field name = d_.Get(f, "name");
    if (auto s = d_.String(name, true)) {
      std::string problem = policy::internal::CheckDns1123Subdomain(*s);
      if (!problem.empty()) {
        d_.Error(name, "invalid workload name " + Quote(*s) + ": " + problem);
        ok = false;
      }
      w.name = *s;
    } else {
      ok = false;
    }
    if (ok) {
      if (auto it = workload_lines_.find(w.Id()); it != workload_lines_.end()) {
        d_.Error(name, "workload " + Quote(w.Id()) + " is already declared at line " +
                           std::to_string(it->second));
        ok = false;
      } else {
        workload_lines_[w.Id()] = name.at()->line;
      }
    }
    if (Field labels = d_.Get(f, "labels"); labels.present()) {
      w.labels = d_.LabelMap(labels).value_or(policy::Labels{});
    }
    Field sa = d_.Get(f, "serviceAccount");
    if (auto s = d_.String(sa)) {
      std::string problem = policy::internal::CheckDns1123Subdomain(*s);
      if (!problem.empty()) {
        d_.Error(sa, "invalid service account name " + Quote(*s) + ": " + problem);
      }
      w.service_account = *s;
    }
    std::map<std::string, int> port_name_lines;
    for (const Field& pf : d_.List(d_.Get(f, "ports"))) {
      if (!d_.Map(pf, true)) continue;
      d_.OnlyKnownFields(pf, {"name", "port", "protocol"});
      auto number = d_.PortNumber(d_.Get(pf, "port"), true);
      Field proto_field = d_.Get(pf, "protocol");
      auto proto = d_.PortProtocol(proto_field);
      Field name_field = d_.Get(pf, "name");
      std::optional<std::string> port_name;
      if (name_field.present()) {
        port_name = d_.String(name_field);
        if (!port_name) continue;
        // As Kubernetes validates containers[].ports[].name: an IANA_SVC_NAME, unique in the pod.
        if (std::string problem = policy::internal::CheckPortName(*port_name); !problem.empty()) {
          d_.Error(name_field, "invalid port name " + Quote(*port_name) + ": " + problem);
          continue;
        }
        if (auto it = port_name_lines.find(*port_name); it != port_name_lines.end()) {
          d_.Error(name_field, "duplicate port name " + Quote(*port_name) +
                                   " (already used at line " + std::to_string(it->second) + ")");
          continue;
        }
        port_name_lines[*port_name] = name_field.at()->line;
      }
      // TCP, UDP or SCTP (PortProtocol refuses the rest): all three are served.
      if (!number || !proto) continue;
      LabPort p{*number, *proto, port_name.value_or("")};
      if (std::any_of(w.ports.begin(), w.ports.end(),
                      [&](const LabPort& q) { return q.SameSocket(p); })) {
        d_.Error(pf, "duplicate port " + std::to_string(p.port) + "/" +
                         policy::ProtocolName(p.protocol));
        continue;
      }
      w.ports.push_back(p);
    }
    Field host = d_.Get(f, "host");
    if (host.present()) {
      if (auto h = d_.String(host, true)) {
        w.host = *h;
        if (hosts_ok_ && spec_.FindHost(*h) == nullptr) {
          std::vector<std::string> known;
          known.reserve(spec_.hosts.size());
          for (const auto& x : spec_.hosts) known.push_back(Quote(x.name));
          std::string list;
          for (size_t i = 0; i < known.size(); ++i) list += (i ? ", " : "") + known[i];
          d_.Error(host, "host " + Quote(*h) + " is not in spec.hosts (" + list + ")");
          ok = false;
        }
      } else {
        ok = false;
      }
    } else if (hosts_ok_ && !spec_.hosts.empty()) {
      // Workloads without a host are spread over the hosts in file order.
      w.host = spec_.hosts[unplaced_++ % spec_.hosts.size()].name;
    }
    if (ok) spec_.workloads.push_back(std::move(w));
  }

  // Each host gets an equal share of each subnet (docs/lab.md); every share must hold its
  // host's gateway and workloads, and no share may overlap the underlay.
  void Capacity(const Field& spec) {
    if (!hosts_ok_) return;
    const std::optional<common::Cidr>* subnets[] = {&spec_.ipv4_subnet, &spec_.ipv6_subnet};
    const std::string_view underlays[] = {kUnderlayIpv4, kUnderlayIpv6};
    const size_t n = spec_.hosts.size();
    const int bits = HostSplitBits(n);
    std::map<std::string, size_t> per_host;
    for (const auto& w : spec_.workloads) ++per_host[w.host];
    for (int i = 0; i < 2; ++i) {
      const auto& s = *subnets[i];
      if (!s) continue;
      Field at = subnet_fields_[i].present() ? subnet_fields_[i]
                 : hosts_field_.present()    ? hosts_field_
                                             : d_.Get(spec, "workloads");
      if (n == 1) {
        if (UsableAddresses(*s) >= spec_.workloads.size()) continue;
        d_.Error(at, s->ToString() + " has room for " + std::to_string(UsableAddresses(*s)) +
                         " workloads, the lab has " + std::to_string(spec_.workloads.size()));
        continue;
      }
      auto underlay = *common::Cidr::Parse(underlays[i]);
      if (underlay.Contains(*s) || s->Contains(underlay)) {
        d_.Error(at, s->ToString() + " overlaps the underlay of a lab with several hosts (" +
                         underlay.ToString() + ")");
        continue;
      }
      if (s->prefix_len + bits > s->addr.BitWidth() ||
          UsableAddresses(SplitSubnet(*s, bits, 0)) == 0) {
        d_.Error(at, s->ToString() + " is too small to split over " + std::to_string(n) +
                         " hosts (each host needs a /" + std::to_string(s->addr.BitWidth() - 2) +
                         " at least: a gateway and a workload)");
        continue;
      }
      for (size_t h = 0; h < n; ++h) {
        common::Cidr share = SplitSubnet(*s, bits, h);
        (i == 0 ? spec_.hosts[h].ipv4_subnet : spec_.hosts[h].ipv6_subnet) = share;
        size_t count = per_host[spec_.hosts[h].name];
        if (UsableAddresses(share) >= count) continue;
        d_.Error(at, s->ToString() + " split over " + std::to_string(n) + " hosts gives host " +
                         Quote(spec_.hosts[h].name) + " " + share.ToString() + ", room for " +
                         std::to_string(UsableAddresses(share)) + " workloads; it has " +
                         std::to_string(count));
      }
    }
    if (n == 1) {
      spec_.hosts[0].ipv4_subnet = spec_.ipv4_subnet;
      spec_.hosts[0].ipv6_subnet = spec_.ipv6_subnet;
    }
  }

  LabSpec& spec_;
  Decoder d_;
  std::map<std::string, int> namespace_lines_;
  std::map<std::string, int> workload_lines_;
  Field subnet_fields_[2];
  Field hosts_field_;
  bool hosts_ok_ = true;  // spec.hosts is valid (else host references are not checked)
  size_t unplaced_ = 0;   // workloads placed round-robin so far
};

}  // namespace

const LabWorkload* LabSpec::FindWorkload(std::string_view id) const {
  for (const auto& w : workloads) {
    if (w.Id() == id) return &w;
  }
  return nullptr;
}

std::optional<policy::Mode> LabSpec::NamespaceMode(const LabNamespace& ns) const {
  return ns.mode ? ns.mode : mode;
}

const LabHost* LabSpec::FindHost(std::string_view name) const {
  for (const auto& h : hosts) {
    if (h.name == name) return &h;
  }
  return nullptr;
}

int HostSplitBits(size_t hosts) {
  int bits = 0;
  while ((size_t{1} << bits) < hosts) ++bits;
  return bits;
}

common::Cidr SplitSubnet(const common::Cidr& subnet, int bits, size_t index) {
  common::Cidr out = subnet;
  out.prefix_len = subnet.prefix_len + bits;
  for (int b = 0; b < bits; ++b) {
    int pos = subnet.prefix_len + b;  // bit `pos` of the address takes bit (bits-1-b) of index
    bool on = ((index >> (bits - 1 - b)) & 1) != 0;
    auto& byte = out.addr.bytes[pos / 8];
    auto mask = static_cast<uint8_t>(0x80u >> (pos % 8));
    byte = on ? static_cast<uint8_t>(byte | mask) : static_cast<uint8_t>(byte & ~mask);
  }
  return out;
}

bool LabParseResult::ok() const {
  for (const auto& d : diagnostics) {
    if (d.severity == Diagnostic::Severity::kError) return false;
  }
  return true;
}

std::string CheckLabName(std::string_view name) {
  std::string problem = policy::internal::CheckDns1123Label(name);
  if (!problem.empty()) return problem;
  if (name.size() > kMaxLabNameLength) {
    return "must be no more than " + std::to_string(kMaxLabNameLength) + " characters";
  }
  return "";
}

LabParseResult ParseLab(std::string_view content, std::string_view file_name) {
  LabParseResult out;
  out.spec.file = std::string(file_name);
  auto stream = policy::internal::ReadYamlStream(content);
  for (const auto& e : stream.errors) {
    Diagnostic d;
    d.where.file = std::string(file_name);
    d.where.document = e.document;
    d.where.line = e.line;
    d.where.column = e.column;
    d.object = e.document > 0 ? "document " + std::to_string(e.document) : "";
    d.message = e.message;
    out.diagnostics.push_back(std::move(d));
  }
  if (!stream.errors.empty()) return out;
  if (stream.documents.empty()) {
    Diagnostic d;
    d.where.file = std::string(file_name);
    d.message = "holds no Lab object";
    out.diagnostics.push_back(std::move(d));
    return out;
  }
  // A lab file is one object: positions need no document index unless there are more.
  Reporter r(&out.diagnostics, std::string(file_name), 0);
  LabDecoder(&out, &r).Decode(policy::internal::RootField(stream.documents[0].root));
  for (size_t i = 1; i < stream.documents.size(); ++i) {
    const auto& doc = stream.documents[i];
    Reporter extra(&out.diagnostics, std::string(file_name), doc.index);
    extra.set_object("document " + std::to_string(doc.index));
    extra.Error(&doc.root, "", "a lab file holds exactly one Lab object");
  }
  return out;
}

LabParseResult ParseLabFile(const std::string& path) {
  std::error_code ec;
  std::string problem;
  if (!std::filesystem::is_regular_file(path, ec)) {
    problem = std::filesystem::exists(path, ec) ? "is not a regular file" : "does not exist";
  }
  std::stringstream buf;
  if (problem.empty()) {
    std::ifstream in(path, std::ios::binary);
    if (in) buf << in.rdbuf();
    if (!in || in.bad()) problem = "cannot be read";
  }
  if (!problem.empty()) {
    LabParseResult out;
    out.spec.file = path;
    Diagnostic d;
    d.where.file = path;
    d.message = "the lab file " + problem;
    out.diagnostics.push_back(std::move(d));
    return out;
  }
  return ParseLab(buf.str(), path);
}

}  // namespace bulkhead::lab
