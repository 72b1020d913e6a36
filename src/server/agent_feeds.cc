// The policy and endpoint feeds of the agents' sessions (agent_feeds.h).
#include "server/agent_feeds.h"

#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "server/agent_registry.h"

namespace bulkhead::server {

v1::PolicyObject PolicyObjectProto(const StoredObject& o) {
  v1::PolicyObject p;
  p.set_group(o.id.group);
  p.set_kind(o.id.kind);
  p.set_namespace_(o.id.namespace_name);
  p.set_name(o.id.name);
  p.set_api_version(o.api_version);
  p.set_json(o.json);
  return p;
}

v1::ObjectRef ObjectRefProto(const ObjectId& id) {
  v1::ObjectRef r;
  r.set_group(id.group);
  r.set_kind(id.kind);
  r.set_namespace_(id.namespace_name);
  r.set_name(id.name);
  return r;
}

PolicyFeed::PolicyFeed(store::IStore* store, PolicyRepository* policies)
    : store_(store), policies_(policies) {}

PolicyFeed::~PolicyFeed() {
  std::lock_guard<std::mutex> lock(watch_mu_);
  watch_.reset();
}

absl::Status PolicyFeed::Start() {
  // Watch first, then read: a revision committed in between is both read and delivered, and
  // CatchUp ignores what it already has.
  if (absl::Status s = Watch(); !s.ok()) return s;
  absl::StatusOr<std::pair<int64_t, ObjectSet>> head = policies_->Read();
  if (!head.ok()) return head.status();
  std::lock_guard<std::mutex> lock(mu_);
  revision_ = head->first;
  set_ = std::make_shared<const ObjectSet>(std::move(head->second));
  return absl::OkStatus();
}

absl::Status PolicyFeed::Watch() {
  absl::StatusOr<std::unique_ptr<store::IWatch>> w = store_->Watch(
      kPolicyHeadKey, 0, [this](const absl::StatusOr<std::vector<store::Event>>& events) {
        if (!events.ok()) {
          std::lock_guard<std::mutex> lock(mu_);
          watch_broken_ = true;
          return;
        }
        // A failure leaves the cache where it was; the next head change or Maintain retries.
        CatchUp().IgnoreError();
      });
  if (!w.ok()) return w.status();
  std::lock_guard<std::mutex> lock(watch_mu_);
  watch_ = *std::move(w);
  return absl::OkStatus();
}

void PolicyFeed::Maintain() {
  bool broken = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    broken = watch_broken_;
    watch_broken_ = false;
  }
  if (broken) {
    {
      std::lock_guard<std::mutex> lock(watch_mu_);
      watch_.reset();
    }
    if (!Watch().ok()) {
      std::lock_guard<std::mutex> lock(mu_);
      watch_broken_ = true;
    }
  }
  // Also covers a head change that a broken watch did not deliver.
  CatchUp().IgnoreError();
}

absl::Status PolicyFeed::CatchUp() {
  std::lock_guard<std::mutex> one(catch_up_mu_);
  absl::StatusOr<int64_t> head = ReadPolicyHead(store_);
  if (!head.ok()) return head.status();
  int64_t have = 0;
  std::shared_ptr<const ObjectSet> set;
  {
    std::lock_guard<std::mutex> lock(mu_);
    have = revision_;
    set = set_;
  }
  for (int64_t n = have + 1; n <= *head; ++n) {
    absl::StatusOr<RevisionRecord> rec = policies_->Revision(n);
    if (!rec.ok()) return rec.status();
    auto next = std::make_shared<ObjectSet>(*set);
    for (const ObjectChange& c : rec->changes) {
      if (c.action == ObjectChange::Action::kDelete) {
        next->erase(c.id);
      } else {
        (*next)[c.id] = StoredObject{c.id, c.api_version, c.after};
      }
    }
    set = next;
    auto change = std::make_shared<Change>();
    change->revision = n;
    change->changes = std::move(rec->changes);
    change->set = set;
    v1::Delta* d = change->delta.mutable_delta();
    d->set_revision(n);
    for (const ObjectChange& c : change->changes) {
      if (c.action == ObjectChange::Action::kDelete) {
        *d->add_deletes() = ObjectRefProto(c.id);
      } else {
        *d->add_upserts() = PolicyObjectProto(StoredObject{c.id, c.api_version, c.after});
      }
    }
    // Caches the size now: the sessions then only read the message, from their own threads.
    change->delta.ByteSizeLong();
    std::shared_ptr<const Change> shared = std::move(change);
    std::lock_guard<std::mutex> lock(mu_);
    revision_ = n;
    set_ = set;
    for (auto& [id, listener] : listeners_) listener(shared);
  }
  return absl::OkStatus();
}

std::pair<int64_t, std::shared_ptr<const ObjectSet>> PolicyFeed::Subscribe(uint64_t id,
                                                                           Listener listener) {
  std::lock_guard<std::mutex> lock(mu_);
  listeners_[id] = std::move(listener);
  return {revision_, set_};
}

void PolicyFeed::Unsubscribe(uint64_t id) {
  std::lock_guard<std::mutex> lock(mu_);
  listeners_.erase(id);
}

EndpointFeed::EndpointFeed(store::IStore* store) : store_(store) {}

EndpointFeed::~EndpointFeed() {
  std::lock_guard<std::mutex> lock(watch_mu_);
  watch_.reset();
}

absl::Status EndpointFeed::Start() { return Resync(); }

void EndpointFeed::Maintain() {
  bool broken = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    broken = watch_broken_;
    watch_broken_ = false;
  }
  if (!broken) return;
  {
    std::lock_guard<std::mutex> lock(watch_mu_);
    watch_.reset();
  }
  if (!Resync().ok()) {
    std::lock_guard<std::mutex> lock(mu_);
    watch_broken_ = true;
  }
}

namespace {

// "/bulkhead/endpoints/<node>/<ns>/<name>" -> ref; false for other keys.
bool RefOfKey(std::string_view key, v1::EndpointRef* ref) {
  std::string_view prefix = kEndpointsPrefix;
  if (key.substr(0, prefix.size()) != prefix) return false;
  std::vector<std::string> parts = absl::StrSplit(std::string(key.substr(prefix.size())), '/');
  if (parts.size() != 3) return false;
  ref->set_node(parts[0]);
  ref->set_namespace_(parts[1]);
  ref->set_name(parts[2]);
  return true;
}

}  // namespace

absl::Status EndpointFeed::Resync() {
  absl::StatusOr<store::Range> r = store_->Get(kEndpointsPrefix, true);
  if (!r.ok()) return r.status();
  std::map<std::string, v1::Endpoint> now;
  for (const store::KeyValue& kv : r->kvs) {
    absl::StatusOr<v1::Endpoint> e = EndpointFromJson(kv.value);
    if (e.ok()) now[kv.key] = *std::move(e);
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto c = std::make_unique<Change>();
    v1::EndpointChanges* ec = c->message.mutable_endpoints();
    for (const auto& [key, e] : now) {
      auto it = endpoints_.find(key);
      if (it == endpoints_.end() || it->second.SerializeAsString() != e.SerializeAsString()) {
        *ec->add_upserts() = e;
      }
    }
    for (const auto& [key, e] : endpoints_) {
      v1::EndpointRef ref;
      if (now.count(key) == 0 && RefOfKey(key, &ref)) *ec->add_deletes() = std::move(ref);
    }
    endpoints_ = std::move(now);
    Publish(std::move(c));
  }
  absl::StatusOr<std::unique_ptr<store::IWatch>> w =
      store_->Watch(kEndpointsPrefix, r->revision + 1,
                    [this](const absl::StatusOr<std::vector<store::Event>>& events) {
                      if (!events.ok()) {
                        std::lock_guard<std::mutex> lock(mu_);
                        watch_broken_ = true;
                        return;
                      }
                      OnEvents(*events);
                    });
  if (!w.ok()) return w.status();
  std::lock_guard<std::mutex> lock(watch_mu_);
  watch_ = *std::move(w);
  return absl::OkStatus();
}

void EndpointFeed::OnEvents(const std::vector<store::Event>& events) {
  std::lock_guard<std::mutex> lock(mu_);
  auto c = std::make_unique<Change>();
  v1::EndpointChanges* ec = c->message.mutable_endpoints();
  for (const store::Event& ev : events) {
    v1::EndpointRef ref;
    if (!RefOfKey(ev.kv.key, &ref)) continue;
    if (ev.type == store::Event::Type::kDelete) {
      if (endpoints_.erase(ev.kv.key) > 0) *ec->add_deletes() = std::move(ref);
      continue;
    }
    absl::StatusOr<v1::Endpoint> e = EndpointFromJson(ev.kv.value);
    if (!e.ok()) continue;  // written by something else than a session: not an endpoint
    e->set_node(ref.node());
    endpoints_[ev.kv.key] = *e;
    *ec->add_upserts() = *std::move(e);
  }
  Publish(std::move(c));
}

void EndpointFeed::Publish(std::unique_ptr<Change> c) {
  const v1::EndpointChanges& ec = c->message.endpoints();
  if (ec.upserts_size() == 0 && ec.deletes_size() == 0) return;
  for (const v1::Endpoint& e : ec.upserts()) c->nodes.insert(e.node());
  for (const v1::EndpointRef& r : ec.deletes()) c->nodes.insert(r.node());
  // Caches the size now: the sessions then only read the message, from their own threads.
  c->message.ByteSizeLong();
  std::shared_ptr<const Change> shared = std::move(c);
  for (auto& [id, listener] : listeners_) listener(shared);
}

std::vector<v1::Endpoint> EndpointFeed::Subscribe(uint64_t id, Listener listener) {
  std::lock_guard<std::mutex> lock(mu_);
  listeners_[id] = std::move(listener);
  std::vector<v1::Endpoint> out;
  out.reserve(endpoints_.size());
  for (const auto& [key, e] : endpoints_) out.push_back(e);
  return out;
}

void EndpointFeed::Unsubscribe(uint64_t id) {
  std::lock_guard<std::mutex> lock(mu_);
  listeners_.erase(id);
}

}  // namespace bulkhead::server
