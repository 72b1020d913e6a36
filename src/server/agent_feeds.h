// What a server streams to its agents, kept current from the store and shared by every
// session of that server: the policy set at its head revision (learned by a watch on the head
// key, so that several replicas on one etcd all push every revision, whoever applied it) and
// the cluster's endpoints (a watch on /bulkhead/endpoints/). Sessions subscribe and receive
// every change after the state they were given, in order.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "bulkhead/v1/agent.pb.h"
#include "server/objects.h"
#include "server/policy_repo.h"
#include "store/store.h"

namespace bulkhead::server {

class PolicyFeed {
 public:
  struct Change {
    int64_t revision = 0;
    std::vector<ObjectChange> changes;     // from the revision's record
    std::shared_ptr<const ObjectSet> set;  // the whole set at `revision`
  };
  // Called with the feed's lock held, on a store thread: must only hand the change over.
  using Listener = std::function<void(const Change&)>;

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
    std::vector<v1::Endpoint> upserts;     // node set
    std::vector<v1::EndpointRef> deletes;  // node set
  };
  using Listener = std::function<void(const Change&)>;

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
  void Publish(const Change& c);

  store::IStore* store_;
  std::mutex mu_;
  std::map<std::string, v1::Endpoint> endpoints_;  // by store key
  std::map<uint64_t, Listener> listeners_;
  std::mutex watch_mu_;
  std::unique_ptr<store::IWatch> watch_;
  bool watch_broken_ = false;
};

}  // namespace bulkhead::server
