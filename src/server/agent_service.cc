// The agents' gRPC service: trust bootstrap, Sync sessions and the registry sweeper.
#include "server/agent_service.h"

#include <grpcpp/grpcpp.h>
#include <grpcpp/security/server_credentials.h>

#include <atomic>
#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>
#include <variant>

#include "absl/strings/str_cat.h"
#include "bulkhead/v1/agent.grpc.pb.h"
#include "server/agent_feeds.h"
#include "server/agent_registry.h"
#include "server/agent_trust.h"
#include "server/identities.h"
#include "server/rest.h"

namespace bulkhead::server {
namespace {

using Stream = grpc::ServerReaderWriter<v1::ServerMessage, v1::AgentMessage>;

grpc::Status ToGrpc(const absl::Status& s) {
  return grpc::Status(static_cast<grpc::StatusCode>(s.code()), std::string(s.message()));
}

v1::PolicyObject ToProto(const StoredObject& o) { return PolicyObjectProto(o); }
v1::ObjectRef RefOf(const ObjectId& id) { return ObjectRefProto(id); }

std::string OwnKey(const std::string& ns, const std::string& name) {
  return absl::StrCat(ns, "/", name);
}

}  // namespace

class AgentService::Impl final : public v1::AgentService::Service {
 public:
  class Session;

  Impl(store::IStore* store, PolicyRepository* policies, TokenStore* tokens, AuditLog* audit,
       KeyAndCert ca, KeyAndCert server_tls, AgentServiceOptions options)
      : store_(store),
        tokens_(tokens),
        audit_(audit),
        ca_(std::move(ca)),
        server_tls_(std::move(server_tls)),
        options_(std::move(options)),
        policy_feed_(store, policies),
        endpoint_feed_(store),
        identities_(store, options_.identities) {}

  grpc::Status Discover(grpc::ServerContext* ctx, const v1::DiscoverRequest* req,
                        v1::DiscoverResponse* resp) override;
  grpc::Status Join(grpc::ServerContext* ctx, const v1::JoinRequest* req,
                    v1::JoinResponse* resp) override;
  grpc::Status Sync(grpc::ServerContext* ctx, Stream* stream) override;

  absl::Status Start(const std::string& listen);
  void Stop();
  absl::Status Sweep();
  // Watches the identity key records and tells the sessions of the keys that changed.
  absl::Status WatchIdentities();
  void AuditJoin(const std::string& node, const std::string& origin, const std::string& outcome,
                 const std::string& detail);

  store::IStore* store_;
  TokenStore* tokens_;
  AuditLog* audit_;
  KeyAndCert ca_;
  KeyAndCert server_tls_;
  AgentServiceOptions options_;
  PolicyFeed policy_feed_;
  EndpointFeed endpoint_feed_;
  ClusterIdentities identities_;
  std::mutex identity_watch_mu_;  // the watch; never taken by its callback
  std::unique_ptr<store::IWatch> identity_watch_;
  std::atomic<bool> identity_watch_broken_{false};
  std::unique_ptr<grpc::Server> grpc_;
  int port_ = 0;

  std::mutex sessions_mu_;
  std::map<std::string, Session*> sessions_;  // the live session of each node on this server
  std::atomic<uint64_t> next_id_{1};

  std::mutex sweeper_mu_;
  std::condition_variable sweeper_cv_;
  bool stopping_ = false;
  std::thread sweeper_;

  // Registry records waiting for the record writer (see AgentServiceOptions::record_batch).
  // A session's direct write of its record takes flush_mu_ and drops its pending one first,
  // so an older pending record never lands after a newer direct one.
  void QueueRecord(const std::string& node, std::string json);
  absl::Status WriteRecordNow(const std::string& node, std::string json);
  absl::Status FlushRecords();
  std::mutex flush_mu_;    // one writer of agent records at a time; taken before pending_mu_
  std::mutex pending_mu_;  // pending_records_
  std::map<std::string, std::string> pending_records_;  // node -> record JSON
  std::condition_variable writer_cv_;                   // with pending_mu_
  bool writer_stopping_ = false;
  std::thread writer_;
};

void AgentService::Impl::QueueRecord(const std::string& node, std::string json) {
  if (options_.record_batch <= absl::ZeroDuration()) {
    WriteRecordNow(node, std::move(json)).IgnoreError();
    return;
  }
  std::lock_guard<std::mutex> lock(pending_mu_);
  pending_records_[node] = std::move(json);
}

absl::Status AgentService::Impl::WriteRecordNow(const std::string& node, std::string json) {
  std::lock_guard<std::mutex> flush(flush_mu_);
  {
    std::lock_guard<std::mutex> lock(pending_mu_);
    pending_records_.erase(node);
  }
  absl::StatusOr<store::TxnResult> t =
      store_->Txn({}, {store::Op::Put(AgentKey(node), std::move(json))});
  return t.ok() ? absl::OkStatus() : t.status();
}

absl::Status AgentService::Impl::FlushRecords() {
  std::lock_guard<std::mutex> flush(flush_mu_);
  std::map<std::string, std::string> batch;
  {
    std::lock_guard<std::mutex> lock(pending_mu_);
    batch.swap(pending_records_);
  }
  // etcd takes at most 128 operations per transaction by default.
  constexpr size_t kMaxOps = 64;
  absl::Status first_error;
  std::vector<store::Op> ops;
  auto it = batch.begin();
  while (it != batch.end()) {
    ops.clear();
    auto chunk_begin = it;
    for (; it != batch.end() && ops.size() < kMaxOps; ++it) {
      ops.push_back(store::Op::Put(AgentKey(it->first), it->second));
    }
    absl::StatusOr<store::TxnResult> t = store_->Txn({}, ops);
    if (!t.ok()) {
      if (first_error.ok()) first_error = t.status();
      // Kept for the next flush unless a newer record was queued meanwhile.
      std::lock_guard<std::mutex> lock(pending_mu_);
      for (auto k = chunk_begin; k != it; ++k) pending_records_.emplace(k->first, k->second);
    }
  }
  return first_error;
}

// One agent's stream. The handler's thread runs the session (every write and every store
// write of the agent's record happen there); a reader thread turns the agent's messages into
// events; the feeds and the sweeper post events too.
class AgentService::Impl::Session {
 public:
  struct Touch {};
  struct Closed {};
  // Identity key records that changed in the store: record key -> number (0: deleted).
  struct IdentityChanges {
    std::shared_ptr<const std::map<std::string, uint32_t>> records;
  };
  // The feeds' changes are shared by every session, never copied per session.
  using Event =
      std::variant<v1::AgentMessage, std::shared_ptr<const PolicyFeed::Change>,
                   std::shared_ptr<const EndpointFeed::Change>, IdentityChanges, Touch, Closed>;

  Session(Impl* svc, std::string node, grpc::ServerContext* ctx, Stream* stream)
      : svc_(svc), node_(std::move(node)), ctx_(ctx), stream_(stream), id_(svc->next_id_++) {}

  void Post(Event e) {
    std::lock_guard<std::mutex> lock(mu_);
    queue_.push_back(std::move(e));
    cv_.notify_one();
  }
  void Cancel() { ctx_->TryCancel(); }
  const std::string& node() const { return node_; }

  grpc::Status Run(const v1::Hello& hello) {
    std::thread reader([this] {
      v1::AgentMessage m;
      while (stream_->Read(&m)) Post(m);
      Post(Closed{});
    });
    grpc::Status result = Serve(hello);
    svc_->policy_feed_.Unsubscribe(id_);
    svc_->endpoint_feed_.Unsubscribe(id_);
    if (!result.ok() && result.error_code() != grpc::StatusCode::CANCELLED) {
      // The reader can only be stopped by cancelling the call, which replaces the status
      // the agent sees: tell it why first.
      v1::ServerMessage refusal;
      refusal.mutable_refusal()->set_code(static_cast<int>(result.error_code()));
      refusal.mutable_refusal()->set_message(result.error_message());
      stream_->Write(refusal);
    }
    ctx_->TryCancel();  // ends the reader when the session ended first
    reader.join();
    bool current = false;
    {
      std::lock_guard<std::mutex> lock(svc_->sessions_mu_);
      auto it = svc_->sessions_.find(node_);
      if (it != svc_->sessions_.end() && it->second == this) {
        svc_->sessions_.erase(it);
        current = true;
      }
    }
    if (current && started_) {
      record_.connected = false;
      record_.last_seen = svc_->options_.clock();
      Save().IgnoreError();  // the sweeper marks it stale from last_seen either way
    }
    return result;
  }

 private:
  grpc::Status Serve(const v1::Hello& hello) {
    // Own endpoints: the stored ones are replaced by what the agent has now.
    absl::StatusOr<store::Range> stored = svc_->store_->Get(EndpointNodePrefix(node_), true);
    if (!stored.ok()) return ToGrpc(stored.status());
    for (const store::KeyValue& kv : stored->kvs) {
      absl::StatusOr<v1::Endpoint> e = EndpointFromJson(kv.value);
      if (!e.ok()) continue;
      std::string key = OwnKey(e->namespace_(), e->name());
      own_[key] = *std::move(e);
    }
    std::vector<v1::EndpointRef> gone;
    std::set<std::string> reported;
    for (const v1::Endpoint& e : hello.endpoints())
      reported.insert(OwnKey(e.namespace_(), e.name()));
    for (const auto& [key, e] : own_) {
      if (reported.count(key) == 0) {
        v1::EndpointRef r;
        r.set_namespace_(e.namespace_());
        r.set_name(e.name());
        gone.push_back(r);
      }
    }
    std::vector<v1::Endpoint> upserts(hello.endpoints().begin(), hello.endpoints().end());
    if (absl::Status s = WriteEndpoints(upserts, gone); !s.ok()) return ToGrpc(s);

    absl::StatusOr<store::Range> rec = svc_->store_->Get(AgentKey(node_));
    if (!rec.ok()) return ToGrpc(rec.status());
    absl::Time now = svc_->options_.clock();
    if (!rec->kvs.empty()) {
      absl::StatusOr<AgentRecord> r = AgentRecordFromJson(rec->kvs[0].value);
      if (r.ok()) record_ = *std::move(r);
    } else {
      record_.joined = now;
    }
    record_.node = node_;
    record_.connected = true;
    record_.last_seen = now;
    record_.health = "ok";
    record_.error.clear();
    record_.enforced_revision = hello.enforced_revision();
    record_.endpoints = static_cast<int64_t>(own_.size());
    record_.endpoints_removed = false;
    record_.version = hello.version();
    if (absl::Status s = Save(); !s.ok()) return ToGrpc(s);
    started_ = true;

    // Subscribe, then send the state the subscriptions start from: every later change
    // arrives as an event, in order.
    auto [revision, set] = svc_->policy_feed_.Subscribe(
        id_, [this](const std::shared_ptr<const PolicyFeed::Change>& c) { Post(c); });
    revision_ = revision;
    set_ = set;
    std::vector<v1::Endpoint> endpoints = svc_->endpoint_feed_.Subscribe(
        id_, [this](const std::shared_ptr<const EndpointFeed::Change>& c) { Post(c); });
    v1::ServerMessage snap;
    v1::Snapshot* s = snap.mutable_snapshot();
    s->set_revision(revision_);
    for (const auto& [id, o] : *set_) {
      if (Wanted(id)) *s->add_objects() = ToProto(o);
    }
    for (v1::Endpoint& e : endpoints) {
      if (e.node() != node_) *s->add_endpoints() = std::move(e);
    }
    if (!stream_->Write(snap)) return grpc::Status(grpc::StatusCode::CANCELLED, "stream closed");

    while (true) {
      Event ev;
      {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait(lock, [this] { return !queue_.empty(); });
        ev = std::move(queue_.front());
        queue_.pop_front();
      }
      if (std::holds_alternative<Closed>(ev)) {
        return ctx_->IsCancelled() ? grpc::Status(grpc::StatusCode::CANCELLED, "cancelled")
                                   : grpc::Status::OK;
      }
      grpc::Status st = Handle(ev);
      if (!st.ok()) return st;
    }
  }

  grpc::Status Handle(Event& ev) {
    if (auto* m = std::get_if<v1::AgentMessage>(&ev)) return HandleAgent(*m);
    if (auto* p = std::get_if<std::shared_ptr<const PolicyFeed::Change>>(&ev)) {
      const PolicyFeed::Change& c = **p;
      if (c.revision <= revision_) return grpc::Status::OK;
      revision_ = c.revision;
      set_ = c.set;
      bool all = true;
      for (const ObjectChange& ch : c.changes) all = all && Wanted(ch.id);
      if (all) return Write(c.delta);  // the message every such session shares
      v1::ServerMessage out;
      v1::Delta* d = out.mutable_delta();
      d->set_revision(c.revision);
      for (const ObjectChange& ch : c.changes) {
        if (!Wanted(ch.id)) continue;
        if (ch.action == ObjectChange::Action::kDelete) {
          *d->add_deletes() = RefOf(ch.id);
        } else {
          *d->add_upserts() = ToProto(StoredObject{ch.id, ch.api_version, ch.after});
        }
      }
      return Write(out);
    }
    if (auto* p = std::get_if<std::shared_ptr<const EndpointFeed::Change>>(&ev)) {
      const EndpointFeed::Change& c = **p;
      // Other nodes' changes go as they are; its own endpoints are left out.
      if (c.nodes.count(node_) == 0) return Write(c.message);
      v1::ServerMessage out;
      v1::EndpointChanges* ec = out.mutable_endpoints();
      for (const v1::Endpoint& e : c.message.endpoints().upserts()) {
        if (e.node() != node_) *ec->add_upserts() = e;
      }
      for (const v1::EndpointRef& r : c.message.endpoints().deletes()) {
        if (r.node() != node_) *ec->add_deletes() = r;
      }
      if (ec->upserts_size() == 0 && ec->deletes_size() == 0) return grpc::Status::OK;
      return Write(out);
    }
    if (auto* c = std::get_if<IdentityChanges>(&ev)) return CheckIdentities(*c->records);
    if (std::holds_alternative<Touch>(ev)) {
      record_.last_seen = svc_->options_.clock();
      if (absl::Status s = Save(); !s.ok()) return ToGrpc(s);
    }
    return grpc::Status::OK;
  }

  grpc::Status HandleAgent(const v1::AgentMessage& m) {
    absl::Time now = svc_->options_.clock();
    switch (m.msg_case()) {
      case v1::AgentMessage::kHello:
        return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                            "Hello is the first message of a Sync stream, and only the first");
      case v1::AgentMessage::kEndpoints: {
        std::set<std::string> before = Namespaces();
        std::vector<v1::Endpoint> upserts(m.endpoints().upserts().begin(),
                                          m.endpoints().upserts().end());
        std::vector<v1::EndpointRef> deletes(m.endpoints().deletes().begin(),
                                             m.endpoints().deletes().end());
        if (absl::Status s = WriteEndpoints(upserts, deletes); !s.ok()) return ToGrpc(s);
        record_.endpoints = static_cast<int64_t>(own_.size());
        record_.last_seen = now;
        if (absl::Status s = Save(); !s.ok()) return ToGrpc(s);
        return SendNamespaceChanges(before);
      }
      case v1::AgentMessage::kAck:
        if (m.ack().ok()) {
          record_.enforced_revision = m.ack().revision();
          record_.health = "ok";
          record_.error.clear();
        } else {
          record_.health = "error";
          record_.error = m.ack().error();
        }
        record_.last_seen = now;
        svc_->QueueRecord(node_, AgentRecordToJson(record_));
        return grpc::Status::OK;
      case v1::AgentMessage::kStatus:
        record_.cpu_seconds = m.status().cpu_seconds();
        record_.rss_bytes = m.status().rss_bytes();
        record_.last_seen = now;
        svc_->QueueRecord(node_, AgentRecordToJson(record_));
        return grpc::Status::OK;
      case v1::AgentMessage::kIdentityKeys: {
        std::set<std::string> keys(m.identity_keys().keys().begin(),
                                   m.identity_keys().keys().end());
        // Refused (the stream ends with a Refusal) when a key is invalid or the range is
        // exhausted: the node keeps what it held, the agent what it was sent.
        absl::StatusOr<std::map<std::string, uint32_t>> pins = svc_->identities_.Hold(node_, keys);
        if (!pins.ok()) return ToGrpc(pins.status());
        identity_keys_ = std::move(keys);
        identity_records_.clear();
        for (const std::string& k : identity_keys_) {
          identity_records_[IdentityKeyRecordKey(k)] = k;
        }
        pins_ = *std::move(pins);
        return SendPins();
      }
      case v1::AgentMessage::MSG_NOT_SET:
        break;
    }
    return grpc::Status::OK;  // a newer agent's message this server does not know
  }

  grpc::Status SendPins() {
    v1::ServerMessage out;
    v1::IdentityPins* p = out.mutable_identities();
    for (const auto& [key, number] : pins_) {
      v1::IdentityPin* pin = p->add_pins();
      pin->set_key(key);
      pin->set_number(number);
    }
    return Write(out);
  }

  // A record of one of the agent's keys changed: a number that differs from the one sent
  // (or a key freed while the node holds it, which only a hand-edited store or a sweep that
  // raced with this agent's return can do) gets the keys held again and the pins resent.
  grpc::Status CheckIdentities(const std::map<std::string, uint32_t>& records) {
    bool stale = false;
    for (const auto& [rec_key, number] : records) {
      auto it = identity_records_.find(rec_key);
      if (it == identity_records_.end()) continue;
      auto pin = pins_.find(it->second);
      if (number == 0 || pin == pins_.end() || pin->second != number) stale = true;
    }
    if (!stale) return grpc::Status::OK;
    absl::StatusOr<std::map<std::string, uint32_t>> pins =
        svc_->identities_.Hold(node_, identity_keys_);
    if (!pins.ok()) return ToGrpc(pins.status());
    if (*pins == pins_) return grpc::Status::OK;
    pins_ = *std::move(pins);
    return SendPins();
  }

  // Sends the objects of namespaces the agent just got endpoints in (and deletes those of
  // namespaces it has none in any more), at the revision it already has.
  grpc::Status SendNamespaceChanges(const std::set<std::string>& before) {
    std::set<std::string> after = Namespaces();
    if (after == before) return grpc::Status::OK;
    v1::ServerMessage out;
    v1::Delta* d = out.mutable_delta();
    d->set_revision(revision_);
    for (const auto& [id, o] : *set_) {
      if (id.namespace_name.empty()) continue;
      bool was = before.count(id.namespace_name) > 0;
      bool is = after.count(id.namespace_name) > 0;
      if (is && !was) *d->add_upserts() = ToProto(o);
      if (was && !is) *d->add_deletes() = RefOf(id);
    }
    return Write(out);
  }

  // Validates and stores the agent's endpoint changes in one transaction.
  absl::Status WriteEndpoints(std::vector<v1::Endpoint> upserts,
                              const std::vector<v1::EndpointRef>& deletes) {
    std::vector<store::Op> ops;
    std::set<std::string> put;
    for (v1::Endpoint& e : upserts) {
      if (absl::Status s = ValidateEndpoint(e); !s.ok()) return s;
      e.set_node(node_);
      std::string key = OwnKey(e.namespace_(), e.name());
      if (!put.insert(key).second) {
        return absl::InvalidArgumentError(
            absl::StrCat("endpoint ", key, " is reported twice in one message"));
      }
      auto it = own_.find(key);
      if (it != own_.end() && it->second.SerializeAsString() == e.SerializeAsString()) continue;
      ops.push_back(
          store::Op::Put(EndpointKey(node_, e.namespace_(), e.name()), EndpointToJson(e)));
    }
    for (const v1::EndpointRef& r : deletes) {
      std::string key = OwnKey(r.namespace_(), r.name());
      if (put.count(key) > 0 || own_.count(key) == 0) continue;
      ops.push_back(store::Op::Delete(EndpointKey(node_, r.namespace_(), r.name())));
    }
    if (!ops.empty()) {
      absl::StatusOr<store::TxnResult> t = svc_->store_->Txn({}, ops);
      if (!t.ok()) return t.status();
    }
    for (const v1::EndpointRef& r : deletes) own_.erase(OwnKey(r.namespace_(), r.name()));
    for (v1::Endpoint& e : upserts) own_[OwnKey(e.namespace_(), e.name())] = std::move(e);
    return absl::OkStatus();
  }

  std::set<std::string> Namespaces() const {
    std::set<std::string> out;
    for (const auto& [key, e] : own_) out.insert(e.namespace_());
    return out;
  }

  // Cluster-scoped objects always; namespaced ones of the namespaces it has endpoints in.
  bool Wanted(const ObjectId& id) const {
    if (id.namespace_name.empty()) return true;
    for (const auto& [key, e] : own_) {
      if (e.namespace_() == id.namespace_name) return true;
    }
    return false;
  }

  grpc::Status Write(const v1::ServerMessage& m) {
    if (!stream_->Write(m)) return grpc::Status(grpc::StatusCode::CANCELLED, "stream closed");
    return grpc::Status::OK;
  }

  absl::Status Save() { return svc_->WriteRecordNow(node_, AgentRecordToJson(record_)); }

  Impl* svc_;
  std::string node_;
  grpc::ServerContext* ctx_;
  Stream* stream_;
  uint64_t id_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Event> queue_;
  // Session thread only:
  bool started_ = false;
  AgentRecord record_;
  int64_t revision_ = 0;
  std::shared_ptr<const ObjectSet> set_;
  std::map<std::string, v1::Endpoint> own_;              // by "namespace/name"
  std::set<std::string> identity_keys_;                  // its last IdentityKeys
  std::map<std::string, std::string> identity_records_;  // record key -> identity key
  std::map<std::string, uint32_t> pins_;                 // what it was sent
};

grpc::Status AgentService::Impl::Discover(grpc::ServerContext*, const v1::DiscoverRequest* req,
                                          v1::DiscoverResponse* resp) {
  const std::string& id = req->token_id();
  bool hex = id.size() == 16 && id.find_first_not_of("0123456789abcdef") == std::string::npos;
  if (!hex) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                        "token_id must be the 16 hex digits after 'bhj_' of a join token");
  }
  absl::StatusOr<store::Range> r = store_->Get(absl::StrCat(kJoinTokensPrefix, id));
  if (!r.ok()) return ToGrpc(r.status());
  if (r->kvs.empty()) return grpc::Status(grpc::StatusCode::UNAUTHENTICATED, "unknown join token");
  std::string hash;
  try {
    nlohmann::json j = nlohmann::json::parse(r->kvs[0].value);
    hash = j.at("sha256").get<std::string>();
    absl::Time expires;
    std::string err;
    if (!absl::ParseTime(absl::RFC3339_full, j.value("expires", ""), &expires, &err) ||
        options_.clock() >= expires) {
      return grpc::Status(grpc::StatusCode::UNAUTHENTICATED, "join token expired");
    }
  } catch (const nlohmann::json::exception& e) {
    return grpc::Status(grpc::StatusCode::DATA_LOSS,
                        std::string("join token record is not valid: ") + e.what());
  }
  resp->set_ca_pem(ca_.cert_pem);
  resp->set_ca_mac(CaMac(hash, ca_.cert_pem));
  return grpc::Status::OK;
}

void AgentService::Impl::AuditJoin(const std::string& node, const std::string& origin,
                                   const std::string& outcome, const std::string& detail) {
  AuditEntry e;
  e.actor = "agent " + node;
  e.role = "agent";
  e.origin = origin;
  e.action = "agent.join";
  e.target = "agent " + node;
  e.outcome = outcome;
  e.detail = detail;
  if (audit_ != nullptr) audit_->Append(std::move(e)).IgnoreError();
}

grpc::Status AgentService::Impl::Join(grpc::ServerContext* ctx, const v1::JoinRequest* req,
                                      v1::JoinResponse* resp) {
  if (absl::Status s = tokens_->CheckJoinToken(req->token()); !s.ok()) {
    AuditJoin(req->node_name(), ctx->peer(), "unauthenticated", std::string(s.message()));
    return ToGrpc(s);
  }
  if (absl::Status s = ValidateNodeName(req->node_name()); !s.ok()) return ToGrpc(s);
  absl::StatusOr<std::string> cert =
      SignClientCsr(ca_, req->csr_pem(), req->node_name(), options_.cert_validity);
  if (!cert.ok()) return ToGrpc(cert.status());
  absl::StatusOr<store::Range> r = store_->Get(AgentKey(req->node_name()));
  if (!r.ok()) return ToGrpc(r.status());
  AgentRecord record;
  if (!r->kvs.empty()) {
    absl::StatusOr<AgentRecord> old = AgentRecordFromJson(r->kvs[0].value);
    if (old.ok()) record = *std::move(old);
  }
  absl::Time now = options_.clock();
  record.node = req->node_name();
  record.joined = now;
  if (r->kvs.empty()) record.last_seen = now;
  absl::StatusOr<store::TxnResult> t =
      store_->Txn({}, {store::Op::Put(AgentKey(record.node), AgentRecordToJson(record))});
  if (!t.ok()) return ToGrpc(t.status());
  AuditJoin(record.node, ctx->peer(), "ok", r->kvs.empty() ? "joined" : "joined again");
  resp->set_cert_pem(*cert);
  resp->set_ca_pem(ca_.cert_pem);
  return grpc::Status::OK;
}

grpc::Status AgentService::Impl::Sync(grpc::ServerContext* ctx, Stream* stream) {
  std::shared_ptr<const grpc::AuthContext> auth = ctx->auth_context();
  std::vector<grpc::string_ref> cn =
      auth ? auth->FindPropertyValues("x509_common_name") : std::vector<grpc::string_ref>{};
  if (!auth || !auth->IsPeerAuthenticated() || cn.empty()) {
    return grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                        "Sync needs the client certificate that Join issued (mutual TLS)");
  }
  std::string node(cn[0].data(), cn[0].size());
  if (absl::Status s = ValidateNodeName(node); !s.ok()) {
    return grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                        absl::StrCat("client certificate: ", s.message()));
  }
  v1::AgentMessage first;
  if (!stream->Read(&first)) return grpc::Status(grpc::StatusCode::CANCELLED, "no Hello");
  if (!first.has_hello()) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                        "the first message of a Sync stream must be Hello");
  }
  Session session(this, node, ctx, stream);
  {
    std::lock_guard<std::mutex> lock(sessions_mu_);
    if (stopping_) return grpc::Status(grpc::StatusCode::UNAVAILABLE, "server stopping");
    // A node has one session: a reconnect replaces a stream the agent gave up on.
    auto it = sessions_.find(node);
    if (it != sessions_.end()) it->second->Cancel();
    sessions_[node] = &session;
  }
  return session.Run(first.hello());
}

absl::Status AgentService::Impl::Start(const std::string& listen) {
  std::string host;
  int port = 0;
  if (absl::Status s = ParseListen(listen, "--grpc-listen", &host, &port); !s.ok()) return s;
  if (absl::Status s = policy_feed_.Start(); !s.ok()) return s;
  if (absl::Status s = endpoint_feed_.Start(); !s.ok()) return s;
  if (absl::Status s = WatchIdentities(); !s.ok()) return s;

  grpc::SslServerCredentialsOptions tls(GRPC_SSL_REQUEST_CLIENT_CERTIFICATE_AND_VERIFY);
  tls.pem_root_certs = ca_.cert_pem;
  tls.pem_key_cert_pairs.push_back({server_tls_.key_pem, server_tls_.cert_pem});
  grpc::ServerBuilder builder;
  builder.AddListeningPort(
      absl::StrCat(host.find(':') != std::string::npos ? "[" + host + "]" : host, ":", port),
      grpc::SslServerCredentials(tls), &port_);
  builder.RegisterService(this);
  // Never share the port with another process (gRPC sets SO_REUSEPORT by default): two
  // servers on one port would split the agents between them without a word.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  // A Hello carries every endpoint of a node; gRPC's default limit is 4 MiB.
  builder.SetMaxReceiveMessageSize(256 << 20);
  // Agents ping to notice a dead server; the server pings to notice a dead agent.
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, 5000);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS, 30000);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 10000);
  grpc_ = builder.BuildAndStart();
  if (!grpc_ || port_ <= 0) {
    return absl::UnavailableError(absl::StrCat("cannot listen for agents on ", listen));
  }
  if (options_.sweep_interval > absl::ZeroDuration()) {
    sweeper_ = std::thread([this] {
      std::unique_lock<std::mutex> lock(sweeper_mu_);
      while (!stopping_) {
        sweeper_cv_.wait_for(lock, absl::ToChronoNanoseconds(options_.sweep_interval));
        if (stopping_) break;
        lock.unlock();
        policy_feed_.Maintain();
        endpoint_feed_.Maintain();
        // Changes missed while the watch was down matter only for numbers that changed
        // under a holder, which the next IdentityKeys of that agent also repairs.
        if (identity_watch_broken_) WatchIdentities().IgnoreError();
        Sweep().IgnoreError();  // the store may be away; the next pass retries
        lock.lock();
      }
    });
  }
  if (options_.record_batch > absl::ZeroDuration()) {
    writer_ = std::thread([this] {
      std::unique_lock<std::mutex> lock(pending_mu_);
      while (!writer_stopping_) {
        writer_cv_.wait_for(lock, absl::ToChronoNanoseconds(options_.record_batch));
        if (pending_records_.empty()) continue;
        lock.unlock();
        FlushRecords().IgnoreError();  // kept and retried at the next interval
        lock.lock();
      }
    });
  }
  return absl::OkStatus();
}

void AgentService::Impl::Stop() {
  {
    std::lock_guard<std::mutex> lock(sweeper_mu_);
    std::lock_guard<std::mutex> lock2(sessions_mu_);
    stopping_ = true;
    sweeper_cv_.notify_all();
  }
  if (grpc_) {
    // Cancels every stream at once; their handlers end and Shutdown returns after them.
    grpc_->Shutdown(std::chrono::system_clock::now());
    grpc_->Wait();
    grpc_.reset();
  }
  if (sweeper_.joinable()) sweeper_.join();
  if (writer_.joinable()) {
    {
      std::lock_guard<std::mutex> lock(pending_mu_);
      writer_stopping_ = true;
      writer_cv_.notify_all();
    }
    writer_.join();
  }
  // The sessions have ended: what they queued last goes to the store now.
  FlushRecords().IgnoreError();
  std::lock_guard<std::mutex> lock(identity_watch_mu_);
  identity_watch_.reset();
}

absl::Status AgentService::Impl::WatchIdentities() {
  std::lock_guard<std::mutex> lock(identity_watch_mu_);
  identity_watch_.reset();
  absl::StatusOr<std::unique_ptr<store::IWatch>> w = store_->Watch(
      kIdentityKeysPrefix, 0, [this](absl::StatusOr<std::vector<store::Event>> events) {
        if (!events.ok()) {
          identity_watch_broken_ = true;  // the maintenance pass watches again
          return;
        }
        auto records = std::make_shared<std::map<std::string, uint32_t>>();
        for (const store::Event& e : *events) {
          uint32_t number = 0;
          if (e.type == store::Event::Type::kPut) {
            try {
              number = nlohmann::json::parse(e.kv.value).at("number").get<uint32_t>();
            } catch (const nlohmann::json::exception&) {
              number = 0;  // unreadable: treated as gone, the sessions hold their keys again
            }
          }
          (*records)[e.kv.key] = number;
        }
        std::lock_guard<std::mutex> l(sessions_mu_);
        for (auto& [node, session] : sessions_) session->Post(Session::IdentityChanges{records});
      });
  if (!w.ok()) {
    identity_watch_broken_ = true;
    return w.status();
  }
  identity_watch_ = *std::move(w);
  identity_watch_broken_ = false;
  return absl::OkStatus();
}

absl::Status AgentService::Impl::Sweep() {
  absl::StatusOr<store::Range> r = store_->Get(kAgentsPrefix, true);
  if (!r.ok()) return r.status();
  absl::Time now = options_.clock();
  absl::Status result;
  for (const store::KeyValue& kv : r->kvs) {
    absl::StatusOr<AgentRecord> rec = AgentRecordFromJson(kv.value);
    if (!rec.ok()) continue;
    {
      std::lock_guard<std::mutex> lock(sessions_mu_);
      auto it = sessions_.find(rec->node);
      if (it != sessions_.end()) {
        // Connected here: keep its last-seen fresh for the other replicas' sweepers.
        if (now - rec->last_seen >= options_.stale_after / 3) it->second->Post(Session::Touch{});
        continue;
      }
    }
    int64_t mod = kv.mod_revision;
    if (rec->health != "stale" && now - rec->last_seen > options_.stale_after) {
      rec->health = "stale";
      rec->connected = false;
      absl::StatusOr<store::TxnResult> t =
          store_->Txn({{kv.key, mod}}, {store::Op::Put(kv.key, AgentRecordToJson(*rec))});
      if (!t.ok()) {
        result.Update(t.status());
        continue;
      }
      if (!t->succeeded) continue;  // it came back meanwhile
      mod = t->revision;
    }
    if (rec->health == "stale" && !rec->endpoints_removed &&
        now - rec->last_seen > options_.endpoint_grace) {
      // Its identity keys go with its endpoints, and only while its record is unchanged: an
      // agent that came back meanwhile (its Hello rewrote the record) holds them again.
      if (absl::Status s = identities_.ReleaseNode(rec->node, store::Compare{kv.key, mod});
          !s.ok()) {
        if (!absl::IsFailedPrecondition(s)) result.Update(s);
        continue;
      }
      rec->endpoints_removed = true;
      rec->endpoints = 0;
      absl::StatusOr<store::TxnResult> t =
          store_->Txn({{kv.key, mod}}, {store::Op::DeletePrefix(EndpointNodePrefix(rec->node)),
                                        store::Op::Put(kv.key, AgentRecordToJson(*rec))});
      if (!t.ok()) result.Update(t.status());
    }
  }
  return result;
}

AgentService::AgentService(store::IStore* store, PolicyRepository* policies, TokenStore* tokens,
                           AuditLog* audit, KeyAndCert ca, KeyAndCert server_tls,
                           AgentServiceOptions options)
    : impl_(std::make_unique<Impl>(store, policies, tokens, audit, std::move(ca),
                                   std::move(server_tls), std::move(options))) {}

AgentService::~AgentService() { Stop(); }

absl::Status AgentService::Start(const std::string& listen) { return impl_->Start(listen); }
int AgentService::port() const { return impl_->port_; }
void AgentService::Stop() { impl_->Stop(); }
absl::Status AgentService::Sweep() { return impl_->Sweep(); }

}  // namespace bulkhead::server
