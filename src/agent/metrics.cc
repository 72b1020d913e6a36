// Agent: Prometheus text metrics (kernel counters, map fill, events, own CPU and RSS).
#include <unistd.h>

#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "agent/agent.h"

namespace bulkhead::agent {
namespace {

constexpr const char* kCounterNames[BH_CTR_MAX] = {
    "pass_new",      "pass_ct",        "pass_audit",       "pass_learn",   "pass_related",
    "pass_frag",     "pass_control",   "drop_policy",      "drop_revoked", "drop_spoofed",
    "drop_fragment", "drop_malformed", "drop_no_endpoint", "drop_l2",      "events_sent",
    "events_lost",   "ct_created",     "ct_removed",
};

// utime + stime in seconds and resident bytes, from /proc/self.
void ProcessUsage(double& cpu_seconds, uint64_t& rss_bytes) {
  cpu_seconds = 0;
  rss_bytes = 0;
  std::ifstream stat("/proc/self/stat");
  std::string line;
  if (std::getline(stat, line)) {
    // Fields after the command name (which may hold spaces) start after the last ')'.
    size_t close = line.rfind(')');
    if (close != std::string::npos) {
      std::istringstream rest(line.substr(close + 2));
      std::string field;
      unsigned long long utime = 0, stime = 0;
      for (int i = 3; rest >> field; ++i) {
        if (i == 14) utime = std::stoull(field);
        if (i == 15) {
          stime = std::stoull(field);
          break;
        }
      }
      cpu_seconds = static_cast<double>(utime + stime) / static_cast<double>(sysconf(_SC_CLK_TCK));
    }
  }
  std::ifstream statm("/proc/self/statm");
  unsigned long long size = 0, resident = 0;
  if (statm >> size >> resident) {
    rss_bytes = resident * static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
  }
}

}  // namespace

std::string Agent::Metrics() {
  std::string out;
  auto add = [&](const std::string& name, const std::string& type, const std::string& help) {
    absl::StrAppend(&out, "# HELP ", name, " ", help, "\n# TYPE ", name, " ", type, "\n");
  };
  add("bulkhead_agent_ready", "gauge", "1 when a policy revision is applied");
  absl::StrAppend(&out, "bulkhead_agent_ready ", ready_ ? 1 : 0, "\n");
  add("bulkhead_agent_revision", "gauge", "Applied policy revision counter");
  absl::StrAppend(&out, "bulkhead_agent_revision ", revision_counter_, "\n");
  add("bulkhead_agent_applies_total", "counter", "Policy applies by result");
  absl::StrAppend(&out, "bulkhead_agent_applies_total{result=\"ok\"} ", applies_ok_, "\n");
  absl::StrAppend(&out, "bulkhead_agent_applies_total{result=\"failed\"} ", applies_failed_, "\n");
  add("bulkhead_agent_last_apply_seconds", "gauge",
      "Time the last policy apply took, by phase (load: reading the changed files; kernel: "
      "map writes and switches)");
  for (const auto& [phase, ms] : {std::pair<const char*, double>{"load", last_apply_.load},
                                  {"compile", last_apply_.compile},
                                  {"kernel", last_apply_.kernel},
                                  {"total", last_apply_.total}}) {
    absl::StrAppend(&out, "bulkhead_agent_last_apply_seconds{phase=\"", phase, "\"} ", ms / 1000,
                    "\n");
  }
  add("bulkhead_agent_last_apply_writes", "gauge",
      "What the last apply wrote: tables written and kept, endpoints switched, ipcache entries");
  absl::StrAppend(&out, "bulkhead_agent_last_apply_writes{what=\"tables_written\"} ",
                  last_apply_.tables_written, "\n");
  absl::StrAppend(&out, "bulkhead_agent_last_apply_writes{what=\"tables_kept\"} ",
                  last_apply_.tables_kept, "\n");
  absl::StrAppend(&out, "bulkhead_agent_last_apply_writes{what=\"endpoints_switched\"} ",
                  last_apply_.endpoints_switched, "\n");
  absl::StrAppend(&out, "bulkhead_agent_last_apply_writes{what=\"ipcache_entries\"} ",
                  last_apply_.ipcache_written, "\n");
  add("bulkhead_agent_last_apply_incremental", "gauge",
      "1 when the last apply updated the compile in force in place (only policies changed), 0 "
      "when it compiled everything");
  absl::StrAppend(&out, "bulkhead_agent_last_apply_incremental ", last_apply_.incremental ? 1 : 0,
                  "\n");
  add("bulkhead_agent_endpoints", "gauge", "Endpoints enforced by this agent");
  size_t active = 0;
  for (const auto& e : endpoints_) active += e.ifindex != 0 && e.error.empty() ? 1 : 0;
  absl::StrAppend(&out, "bulkhead_agent_endpoints ", active, "\n");

  if (auto c = datapath_.ReadCounters(); c.ok()) {
    add("bulkhead_datapath_packets_total", "counter",
        "Packets by datapath outcome (pass_* and drop_*), summed over CPUs");
    for (int i = 0; i < BH_CTR_MAX; ++i) {
      std::string name = kCounterNames[i];
      if (name.rfind("pass_", 0) == 0 || name.rfind("drop_", 0) == 0) {
        absl::StrAppend(&out, "bulkhead_datapath_packets_total{outcome=\"", name, "\"} ", (*c)[i],
                        "\n");
      }
    }
    add("bulkhead_datapath_events_total", "counter",
        "Flow events the programs sent and lost (ring buffer full)");
    absl::StrAppend(&out, "bulkhead_datapath_events_total{result=\"sent\"} ",
                    (*c)[BH_CTR_EVENTS_SENT], "\n");
    absl::StrAppend(&out, "bulkhead_datapath_events_total{result=\"lost\"} ",
                    (*c)[BH_CTR_EVENTS_LOST], "\n");
    add("bulkhead_datapath_conntrack_total", "counter", "Conntrack entries created and removed");
    absl::StrAppend(&out, "bulkhead_datapath_conntrack_total{op=\"created\"} ",
                    (*c)[BH_CTR_CT_CREATED], "\n");
    absl::StrAppend(&out, "bulkhead_datapath_conntrack_total{op=\"removed\"} ",
                    (*c)[BH_CTR_CT_REMOVED], "\n");
  }
  add("bulkhead_agent_flow_events_total", "counter", "Flow events read by the agent, by verdict");
  for (const char* v : {"allow", "deny", "audit", "learn"}) {
    auto it = verdict_counts_.find(v);
    absl::StrAppend(&out, "bulkhead_agent_flow_events_total{verdict=\"", v, "\"} ",
                    it == verdict_counts_.end() ? 0 : it->second, "\n");
  }
  add("bulkhead_agent_observer_events_dropped_total", "counter",
      "Events not delivered to a slow `observe` client");
  absl::StrAppend(&out, "bulkhead_agent_observer_events_dropped_total ", observer_events_dropped_,
                  "\n");

  add("bulkhead_datapath_map_capacity", "gauge",
      "Capacity of the datapath maps the agent fills (entries); a compile that needs more is "
      "not applied");
  for (const auto& u : datapath_.MapUsages()) {
    absl::StrAppend(&out, "bulkhead_datapath_map_capacity{map=\"", u.name, "\"} ", u.capacity,
                    "\n");
  }
  add("bulkhead_datapath_map_entries", "gauge", "Entries in the datapath maps");
  absl::StrAppend(&out, "bulkhead_datapath_map_entries{map=\"ipcache\"} ", live_ipcache_.size(),
                  "\n");
  if (compiler_ != nullptr) {
    const auto& m = compiler_->compiled().maps;
    absl::StrAppend(&out, "bulkhead_datapath_map_entries{map=\"policy_peers\"} ", m.peers.size(),
                    "\n");
    absl::StrAppend(&out, "bulkhead_datapath_map_entries{map=\"policy_ports\"} ", m.ports.size(),
                    "\n");
  }
  if (auto ct = datapath_.ListConntrack(); ct.ok()) {
    absl::StrAppend(&out, "bulkhead_datapath_map_entries{map=\"conntrack\"} ", ct->size(), "\n");
  }
  absl::StrAppend(&out, "bulkhead_datapath_map_entries{map=\"endpoints\"} ", active, "\n");

  double cpu = 0;
  uint64_t rss = 0;
  ProcessUsage(cpu, rss);
  add("bulkhead_agent_cpu_seconds_total", "counter", "CPU time of the agent (user + system)");
  absl::StrAppend(&out, "bulkhead_agent_cpu_seconds_total ", cpu, "\n");
  add("bulkhead_agent_resident_memory_bytes", "gauge", "Resident set size of the agent");
  absl::StrAppend(&out, "bulkhead_agent_resident_memory_bytes ", rss, "\n");
  return out;
}

}  // namespace bulkhead::agent
