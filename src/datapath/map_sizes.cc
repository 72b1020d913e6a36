// MapSizes by name (the agent's --map-size flag) and the error of a write that does not fit.
#include <charconv>

#include "absl/strings/str_cat.h"
#include "datapath/datapath.h"
#include "datapath/validate.h"

namespace bulkhead::datapath {

const std::vector<std::string_view>& MapSizes::Names() {
  static const std::vector<std::string_view> names = {
      "ipcache",   "policy_peers", "policy_ports", "endpoints", "endpoint_addresses",
      "conntrack", "fragments",    "events_bytes"};
  return names;
}

uint32_t* MapSizes::Find(std::string_view name) {
  uint32_t* fields[] = {&ipcache,   &policy_peers, &policy_ports, &endpoints, &endpoint_addresses,
                        &conntrack, &fragments,    &events_bytes};
  const auto& names = Names();
  for (size_t i = 0; i < names.size(); ++i) {
    if (names[i] == name) return fields[i];
  }
  return nullptr;
}

uint32_t MapSizes::Get(std::string_view name) const {
  const uint32_t* f = const_cast<MapSizes*>(this)->Find(name);
  return f == nullptr ? 0 : *f;
}

absl::Status MapSizes::Set(std::string_view assignment) {
  const size_t eq = assignment.find('=');
  std::string_view name = assignment.substr(0, eq);
  uint32_t* field = eq == std::string_view::npos ? nullptr : Find(name);
  if (field == nullptr) {
    std::string known;
    for (auto n : Names()) absl::StrAppend(&known, known.empty() ? "" : ", ", std::string(n));
    return absl::InvalidArgumentError(absl::StrCat("map size \"", std::string(assignment),
                                                   "\": expected NAME=ENTRIES with NAME one of ",
                                                   known));
  }
  std::string_view value = assignment.substr(eq + 1);
  uint64_t v = 0;
  auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), v);
  if (ec != std::errc() || end != value.data() + value.size() || v == 0 || v > 0xffffffffu) {
    return absl::InvalidArgumentError(absl::StrCat("map size \"", std::string(assignment),
                                                   "\": ", std::string(value),
                                                   " is not a number from 1 to 4294967295"));
  }
  *field = static_cast<uint32_t>(v);
  return absl::OkStatus();
}

absl::Status MapFullError(std::string_view name, std::string_view kernel_name, uint64_t in_use,
                          uint64_t more, uint64_t capacity) {
  return absl::ResourceExhaustedError(absl::StrCat(
      "map ", std::string(name), " (", std::string(kernel_name), ") is too small: ", in_use,
      " entries in use + ", more, " more needed = ", in_use + more, " > capacity ", capacity,
      "; give it more with `bulkhead agent --map-size ", std::string(name),
      "=N` (a map pinned under the pin ",
      "root keeps the size it was created with until the pin root is removed)"));
}

}  // namespace bulkhead::datapath
