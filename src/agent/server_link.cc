// ServerLink: the control plane session's callbacks record and wake; the agent loop applies.
#include "agent/server_link.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <limits>

#include "spdlog/spdlog.h"

namespace bulkhead::agent {
namespace {

// An endpoint as text, to tell whether the agent's endpoints changed since the last report.
std::string EndpointText(const agentlink::Endpoint& e) {
  std::string out = e.namespace_name + "/" + e.name + "|" + e.service_account + "|";
  for (const auto& [k, v] : e.labels) out += k + "=" + v + ",";
  out += "|";
  for (const auto& ip : e.ips) out += ip + ",";
  out += "|";
  for (const auto& p : e.named_ports) {
    out += p.name + ":" + std::to_string(p.port) + "/" + p.protocol + ",";
  }
  return out;
}

bool SameEndpoints(const std::vector<agentlink::Endpoint>& a,
                   const std::vector<agentlink::Endpoint>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (EndpointText(a[i]) != EndpointText(b[i])) return false;
  }
  return true;
}

}  // namespace

ServerLink::ServerLink(agentlink::SyncOptions options) : server_(options.server) {
  wake_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (wake_fd_ < 0) {
    // Without it the loop would never learn of the server's policy: a broken host.
    spdlog::critical("eventfd: {}", strerror(errno));
    std::abort();
  }
  agentlink::SyncCallbacks cb;
  cb.on_policy = [this](const agentlink::PolicyUpdate& u, const agentlink::PolicyState& state) {
    std::lock_guard<std::mutex> lock(mu_);
    if (u.snapshot) {
      // The Hello of this stream carried every endpoint reported so far: the snapshot has
      // the objects of all their namespaces.
      synced_ns_ = reported_ns_;
      pending_ns_.clear();
      ns_deltas_received_ = changes_sent_;
      ack_snapshot_ = true;  // a new session: its server hears the result again
    } else if (u.revision == last_revision_) {
      ++ns_deltas_received_;
      for (auto it = pending_ns_.begin(); it != pending_ns_.end();) {
        if (it->second <= ns_deltas_received_) {
          synced_ns_.insert(it->first);
          it = pending_ns_.erase(it);
        } else {
          ++it;
        }
      }
    }
    last_revision_ = u.revision;
    policy_ = state;
    dirty_ = true;
    Wake();
  };
  cb.on_endpoints = [this](const agentlink::EndpointUpdate&,
                           const std::map<std::string, agentlink::Endpoint>& all) {
    std::lock_guard<std::mutex> lock(mu_);
    peers_ = all;
    dirty_ = true;
    Wake();
  };
  cb.on_identities = [this](const std::map<std::string, uint32_t>& pins) {
    std::lock_guard<std::mutex> lock(mu_);
    pins_ = pins;
    Wake();
  };
  cb.on_connection = [this](bool connected, const absl::Status& why) {
    std::lock_guard<std::mutex> lock(mu_);
    connected_ = connected;
    status_due_ = status_due_ || connected;  // the new session's server hears it at once
    if (connected) {
      spdlog::info("connected to the server {}", server_);
    } else {
      spdlog::warn("server {} away ({}): the policy in force stays; reconnecting", server_,
                   std::string(why.message()));
    }
    Wake();
  };
  client_ = std::make_unique<agentlink::SyncClient>(std::move(options), std::move(cb));
}

ServerLink::~ServerLink() {
  Stop();
  client_.reset();
  if (wake_fd_ >= 0) close(wake_fd_);
}

void ServerLink::Wake() {
  const uint64_t one = 1;
  (void)!write(wake_fd_, &one, sizeof(one));
}

void ServerLink::Start(Agent& agent) {
  if (started_) return;
  started_ = true;
  // The Hello reports what this node enforces (from its persisted state) and its endpoints.
  if (agent.enforced_server_revision() > 0) {
    client_->Ack(agent.enforced_server_revision(), absl::OkStatus());
  }
  Process(agent);
  client_->Start();
}

void ServerLink::Stop() {
  if (client_ != nullptr) client_->Stop();
}

void ServerLink::NoteEndpointsLocked(const std::vector<agentlink::Endpoint>& endpoints) {
  std::set<std::string> now;
  for (const auto& e : endpoints) now.insert(e.namespace_name);
  if (now == reported_ns_) return;
  // Connected: the server answers this change with one namespace delta. Not connected: the
  // next Hello carries it and the snapshot answers.
  const uint64_t ticket = connected_ ? ++changes_sent_ : std::numeric_limits<uint64_t>::max();
  for (const auto& ns : now) {
    if (reported_ns_.count(ns) == 0 && synced_ns_.count(ns) == 0) pending_ns_[ns] = ticket;
  }
  for (const auto& ns : reported_ns_) {
    if (now.count(ns) == 0) {
      synced_ns_.erase(ns);  // the server deletes its objects
      pending_ns_.erase(ns);
    }
  }
  reported_ns_ = std::move(now);
}

void ServerLink::Process(Agent& agent) {
  uint64_t drained = 0;
  while (read(wake_fd_, &drained, sizeof(drained)) > 0) {
  }
  std::optional<ServerInput> input;
  bool force_ack = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (dirty_ && policy_.has_value()) {
      force_ack = ack_snapshot_;
      ack_snapshot_ = false;
      input.emplace();
      input->revision = policy_->revision;
      input->objects = policy_->objects;
      input->peers = peers_;
      input->synced_namespaces = synced_ns_;
      dirty_ = false;
    }
  }
  if (input) {
    const int64_t revision = input->revision;
    absl::Status st = agent.SetServerInput(*std::move(input));
    if (!st.ok()) {
      spdlog::error("server revision {} not applied (revision {} stays in force): {}", revision,
                    agent.enforced_server_revision(), std::string(st.message()));
    }
    // Once per revision and result: a peer change at the same revision needs no new ack (each
    // ack is a write of the agent's record in the store).
    const std::string result = st.ok() ? "" : std::string(st.message());
    if (force_ack || !acked_ || revision != acked_revision_ || result != acked_result_) {
      client_->Ack(revision, st);
      acked_ = true;
      acked_revision_ = revision;
      acked_result_ = result;
    }
  }
  // The cluster's identity numbers: a compile that numbered a key otherwise is redone with
  // them (every node then uses the same numbers).
  std::optional<std::map<std::string, uint32_t>> pins;
  {
    std::lock_guard<std::mutex> lock(mu_);
    pins.swap(pins_);
  }
  if (pins) {
    if (absl::Status st = agent.SetClusterIdentities(*pins); !st.ok()) {
      spdlog::error("cluster identity numbers not applied: {}", std::string(st.message()));
    }
  }
  // The identity keys of the compile in force, when they changed: the server answers with
  // their numbers.
  if (std::set<std::string> keys = agent.IdentityKeys(); agent.ready() && keys != keys_sent_) {
    if (absl::Status st = client_->SetIdentityKeys(keys); st.ok()) {
      keys_sent_ = std::move(keys);
    } else {
      spdlog::error("identity keys not sent to the server: {}", std::string(st.message()));
      keys_sent_ = std::move(keys);  // sent again when they change
    }
  }
  // This node's endpoints, when they changed (a CNI ADD or DEL, an inventory edit, a new
  // apply that changed labels, ports or addresses).
  std::vector<agentlink::Endpoint> endpoints = agent.LocalEndpoints();
  if (!reported_once_ || !SameEndpoints(endpoints, reported_)) {
    std::lock_guard<std::mutex> lock(mu_);
    absl::Status st = client_->SetEndpoints(endpoints);
    if (st.ok()) {
      NoteEndpointsLocked(endpoints);
      reported_ = std::move(endpoints);
      reported_once_ = true;
    } else {
      spdlog::error("endpoints not reported to the server: {}", std::string(st.message()));
      reported_ = std::move(endpoints);  // reported again when they change
      reported_once_ = true;
    }
  }
  const auto now = Clock::now();
  bool status_due = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    std::swap(status_due, status_due_);
  }
  if (status_due || now >= next_status_) {
    client_->ReportStatus(agentlink::ProcessUsage());
    next_status_ = now + kStatusInterval;
  }
  agent.SetServerStatus(StatusJson());
}

nlohmann::json ServerLink::StatusJson() const {
  const agentlink::SyncClient::Stats s = client_->stats();
  nlohmann::json j{{"address", server_},
                   {"connected", s.connected},
                   {"revision", s.revision},
                   {"acked_revision", s.enforced},
                   {"sessions", s.sessions},
                   {"failures", s.failures},
                   {"last_error", s.last_error.ok() ? "" : std::string(s.last_error.message())}};
  std::lock_guard<std::mutex> lock(mu_);
  j["pending_namespaces"] = nlohmann::json::array();
  for (const auto& [ns, ticket] : pending_ns_) j["pending_namespaces"].push_back(ns);
  return j;
}

}  // namespace bulkhead::agent
