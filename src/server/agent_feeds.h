// What a server streams to its agents, kept current from the store and shared by every
// session of that server: the policy set at its head revision (learned by a watch on the head
// key, so that several replicas on one etcd all push every revision, whoever applied it) and
// the cluster's endpoints (a watch on /bulkhead/endpoints/). Sessions subscribe and receive
// every change after the state they were given, in order.
//
// A change is built once and shared, immutable, by every session (a shared_ptr in each
// session's queue): with 200 agents, one endpoint report or one revision is one copy, and the
// message that carries all of it to an agent is built once; a session that must leave part of
// it out (objects of namespaces it has no endpoint in, its own node's endpoints) builds its own.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "bulkhead/v1/agent.pb.h"
#include "server/objects.h"
#include "server/policy_repo.h"
#include "store/store.h"

namespace bulkhead::server {

// A stored object as the agents receive it, and its reference.
v1::PolicyObject PolicyObjectProto(const StoredObject& o);
v1::ObjectRef ObjectRefProto(const ObjectId& id);

class PolicyFeed {
 public:
  struct Change {
    int64_t revision = 0;
    std::vector<ObjectChange> changes;     // from the revision's record
    std::shared_ptr<const ObjectSet> set;  // the whole set at `revision`
    v1::ServerMessage delta;               // a Delta of every change of `changes`
  };
  // Called with the feed's lock held, on a store thread: must only hand the change over.
  using Listener = std::function<void(const std::shared_ptr<const Change>&)>;

  PolicyFeed(store::IStore* store, PolicyRepository* policies);
  ~PolicyFeed();

  // Reads the head and starts watching it.
  absl::Status Start();
  // Re-creates a watch that ended with an error and catches up; called periodically.
  void Maintain();

  // Registers `listener` and returns the state it starts from, atomically: the listener
  // receives every revision after the returned one.
  std::pair<int64_t, std::shared_ptr<const ObjectSet>> Subscribe(uint64_t id, Listener listener);
  void Unsubscribe(uint64_t id);  // no call of its listener runs after this returns

  // Reads the revisions after the cached one and publishes each.
  absl::Status CatchUp();

 private:
  absl::Status Watch();

  store::IStore* store_;
  PolicyRepository* policies_;
  std::mutex catch_up_mu_;  // one catch-up at a time (watch thread, maintenance)
  std::mutex mu_;           // the state and the listeners
  int64_t revision_ = 0;
  std::shared_ptr<const ObjectSet> set_;
  std::map<uint64_t, Listener> listeners_;
  std::mutex watch_mu_;
  std::unique_ptr<store::IWatch> watch_;
  bool watch_broken_ = false;
};

class EndpointFeed {
 public:
  struct Change {
    // EndpointChanges of every upsert and delete (each with its node set).
    v1::ServerMessage message;
    std::set<std::string> nodes;  // the nodes they belong to
  };
  using Listener = std::function<void(const std::shared_ptr<const Change>&)>;

  explicit EndpointFeed(store::IStore* store);
  ~EndpointFeed();

  absl::Status Start();
  void Maintain();

  // Registers `listener` and returns every endpoint of the cluster (all nodes) at that moment.
  std::vector<v1::Endpoint> Subscribe(uint64_t id, Listener listener);
  void Unsubscribe(uint64_t id);

 private:
  // Re-reads every endpoint, publishes the difference to the cache and watches from there.
  absl::Status Resync();
  void OnEvents(const std::vector<store::Event>& events);
  // Publishes the upserts and deletes collected in `c` (nothing when it is empty).
  void Publish(std::unique_ptr<Change> c);

  store::IStore* store_;
  std::mutex mu_;
  std::map<std::string, v1::Endpoint> endpoints_;  // by store key
  std::map<uint64_t, Listener> listeners_;
  std::mutex watch_mu_;
  std::unique_ptr<store::IWatch> watch_;
  bool watch_broken_ = false;
};

}  // namespace bulkhead::server
