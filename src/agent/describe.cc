// Agent: flow events and kernel decisions in words (workload, peer, policy, rule).
#include <arpa/inet.h>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "agent/agent.h"
#include "policy/model.h"

namespace bulkhead::agent {
namespace {

std::string AddrString(uint8_t family, const uint8_t* addr) {
  char buf[INET6_ADDRSTRLEN] = {};
  inet_ntop(family == BULKHEAD_FAMILY_IPV6 ? AF_INET6 : AF_INET, addr, buf, sizeof(buf));
  return buf;
}

const char* VerdictName(uint8_t v) {
  switch (v) {
    case BH_EV_ALLOW:
      return "allow";
    case BH_EV_DENY:
      return "deny";
    case BH_EV_AUDIT:
      return "audit";
    case BH_EV_LEARN:
      return "learn";
    default:
      return "unknown";
  }
}

const char* KindName(uint8_t k) {
  switch (k) {
    case BH_EV_NEW_FLOW:
      return "new";
    case BH_EV_RECHECK:
      return "recheck";
    case BH_EV_PACKET:
      return "packet";
    default:
      return "unknown";
  }
}

const char* DropName(uint8_t d) {
  switch (d) {
    case BH_DROP_NONE:
      return "";
    case BH_DROP_POLICY:
      return "policy";
    case BH_DROP_POLICY_MISS:
      return "policy-miss";
    case BH_DROP_REVOKED:
      return "revoked";
    case BH_DROP_SPOOFED:
      return "spoofed";
    case BH_DROP_FRAGMENT:
      return "fragment";
    case BH_DROP_MALFORMED:
      return "malformed";
    case BH_DROP_NO_ENDPOINT:
      return "no-endpoint";
    case BH_DROP_L2:
      return "l2";
    default:
      return "protocol";
  }
}

std::string ProtocolString(uint8_t p) {
  switch (p) {
    case 6:
      return "tcp";
    case 17:
      return "udp";
    case 132:
      return "sctp";
    case 1:
      return "icmp";
    case 58:
      return "icmpv6";
    default:
      return absl::StrCat(p);
  }
}

// The rule as people name it: policy, and the rule's name or its place.
void NameRule(const RuleTable* rt, uint32_t rule_id, uint8_t reason, nlohmann::json& j) {
  j["rule_id"] = rule_id;
  j["reason"] = engine::AbiReasonName(reason);
  j["policy"] = "";
  j["rule"] = "";
  if (rt == nullptr || rule_id == BULKHEAD_RULE_NONE || rule_id >= rt->rules->size()) return;
  const engine::CompiledRule& r = (*rt->rules)[rule_id];
  j["policy"] = r.policy;
  j["policy_kind"] = r.policy_kind;
  if (r.rule_index < 0) {
    j["rule"] = "default-deny";
  } else if (!r.rule_name.empty()) {
    j["rule"] = r.rule_name;
  } else {
    j["rule"] = absl::StrCat(policy::DirectionName(r.direction), "[", r.rule_index, "]");
  }
  j["action"] = policy::ActionName(r.action);
}

}  // namespace

nlohmann::json Agent::DescribeEvent(const bh_flow_event& ev) const {
  nlohmann::json j;
  j["time_ns"] = ev.timestamp_ns;
  const EndpointInfo* ep = FindEndpointByIfindex(ev.ifindex);
  j["workload"] = ep != nullptr ? ep->workload : "";
  j["ifindex"] = ev.ifindex;
  j["kind"] = KindName(ev.kind);
  j["verdict"] = VerdictName(ev.verdict);
  j["direction"] = ev.direction == BULKHEAD_DIR_EGRESS ? "egress" : "ingress";
  j["protocol"] = ProtocolString(ev.protocol);
  j["src"] = AddrString(ev.family, ev.src_addr);
  j["dst"] = AddrString(ev.family, ev.dst_addr);
  j["src_port"] = ev.src_port;
  j["dst_port"] = ev.dst_port;
  j["peer_identity"] = ev.peer_identity;
  j["peer"] = PeerName(ev.peer_identity, ev.policy_table_id);
  j["table"] = ev.policy_table_id;
  j["generation"] = ev.policy_generation;
  j["tier"] = engine::AbiTierName(ev.tier);
  j["drop_reason"] = DropName(ev.drop_reason);
  NameRule(RulesForTable(ev.policy_table_id), ev.rule_id, ev.policy_reason, j);
  return j;
}

nlohmann::json Agent::RecordEvent(const bh_flow_event& ev) {
  CountEvent(ev);
  return DescribeEvent(ev);
}

void Agent::CountEvent(const bh_flow_event& ev) {
  ++events_seen_;
  ++verdict_counts_[VerdictName(ev.verdict)];
}

absl::StatusOr<nlohmann::json> Agent::Explain(const std::string& from, const std::string& to,
                                              uint16_t port, const std::string& protocol) {
  if (compiler_ == nullptr) return absl::FailedPreconditionError("no policy applied yet");
  const policy::Cluster& cluster = compiler_->cluster();
  auto proto = policy::ParseProtocol(protocol.empty() ? "tcp" : protocol);
  if (!proto) return absl::InvalidArgumentError(absl::StrCat("unknown protocol ", protocol));
  struct Side {
    std::string name;
    policy::IpAddr addr;
    const EndpointInfo* endpoint = nullptr;
  };
  auto resolve = [&](const std::string& text) -> absl::StatusOr<Side> {
    Side s;
    s.name = text;
    if (auto ip = policy::IpAddr::Parse(text)) {
      s.addr = *ip;
      if (const policy::Workload* w = cluster.FindWorkloadByIp(*ip)) {
        s.endpoint = FindEndpoint(w->Id());
        s.name = w->Id();
      }
      return s;
    }
    const policy::Workload* w = cluster.FindWorkload(text);
    if (w == nullptr) return absl::NotFoundError(absl::StrCat("no workload ", text));
    if (w->ips.empty())
      return absl::NotFoundError(absl::StrCat("workload ", text, " has no address"));
    s.addr = w->ips.front();
    s.endpoint = FindEndpoint(text);
    return s;
  };
  auto src = resolve(from);
  if (!src.ok()) return src.status();
  auto dst = resolve(to);
  if (!dst.ok()) return dst.status();

  nlohmann::json out;
  out["from"] = src->name;
  out["to"] = dst->name;
  out["port"] = port;
  out["protocol"] = ProtocolString(static_cast<uint8_t>(*proto));
  bool allowed = true;
  bool decided = false;
  auto ask = [&](const Side& local, const Side& peer, uint8_t direction) -> absl::Status {
    nlohmann::json j;
    j["direction"] = direction == BULKHEAD_DIR_EGRESS ? "egress" : "ingress";
    j["workload"] = local.name;
    if (local.endpoint == nullptr || local.endpoint->ifindex == 0) {
      j["enforced"] = false;
      out[direction == BULKHEAD_DIR_EGRESS ? "egress" : "ingress"] = j;
      return absl::OkStatus();
    }
    datapath::FlowQuery q;
    q.ifindex = local.endpoint->ifindex;
    q.direction = direction;
    q.family = peer.addr.v6 ? BULKHEAD_FAMILY_IPV6 : BULKHEAD_FAMILY_IPV4;
    q.peer = peer.addr.bytes;
    q.protocol = static_cast<uint8_t>(*proto);
    q.port = port;
    auto d = datapath_.Explain(q);
    if (!d.ok()) return d.status();
    decided = true;
    j["enforced"] = true;
    j["ifindex"] = q.ifindex;
    j["table"] = d->endpoint.policy_table_id;
    j["generation"] = d->endpoint.policy_generation;
    j["peer_identity"] = d->peer_identity;
    j["peer"] = PeerName(d->peer_identity, d->endpoint.policy_table_id);
    j["class"] = d->class_id;
    j["verdict"] = VerdictName(d->outcome);
    j["policy_denies"] = d->policy_denies;
    j["drop_reason"] = DropName(d->drop_reason);
    if (d->entry) {
      j["tier"] = engine::AbiTierName(d->entry->tier);
      NameRule(RulesForTable(d->endpoint.policy_table_id), d->entry->rule_id, d->entry->reason, j);
    }
    if (d->outcome == BH_EV_DENY) allowed = false;
    out[direction == BULKHEAD_DIR_EGRESS ? "egress" : "ingress"] = j;
    return absl::OkStatus();
  };
  if (absl::Status st = ask(*src, *dst, BULKHEAD_DIR_EGRESS); !st.ok()) return st;
  if (absl::Status st = ask(*dst, *src, BULKHEAD_DIR_INGRESS); !st.ok()) return st;
  out["verdict"] = !decided ? "not-enforced-here" : (allowed ? "allow" : "deny");
  return out;
}

}  // namespace bulkhead::agent
