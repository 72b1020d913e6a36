// The agents' feeds over a real store: every session receives the same immutable change (one
// object and one message per change, whatever the number of sessions), with what it carries.
#include "server/agent_feeds.h"

#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <map>
#include <mutex>

#include "server/agent_registry.h"
#include "test_store.h"

namespace bulkhead::server {
namespace {

constexpr auto kPatience = std::chrono::seconds(20);

// Collects what each listener received, by listener.
template <typename Change>
class Listeners {
 public:
  typename std::function<void(const std::shared_ptr<const Change>&)> For(uint64_t id) {
    return [this, id](const std::shared_ptr<const Change>& c) {
      std::lock_guard<std::mutex> lock(mu_);
      got_[id].push_back(c);
      cv_.notify_all();
    };
  }
  // Waits until every one of `n` listeners has `count` changes.
  bool WaitFor(int n, size_t count) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, kPatience, [&] {
      if (static_cast<int>(got_.size()) < n) return false;
      for (const auto& [id, v] : got_) {
        if (v.size() < count) return false;
      }
      return true;
    });
  }
  std::map<uint64_t, std::vector<std::shared_ptr<const Change>>> got() {
    std::lock_guard<std::mutex> lock(mu_);
    return got_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::map<uint64_t, std::vector<std::shared_ptr<const Change>>> got_;
};

TEST(AgentFeedsTest, EverySubscriberGetsTheSameRevisionAndItsDelta) {
  testing::TempStore store;
  PolicyRepository repo(store.get());
  PolicyFeed feed(store.get(), &repo);
  ASSERT_TRUE(feed.Start().ok());
  constexpr int kSessions = 50;
  Listeners<PolicyFeed::Change> listeners;
  for (uint64_t id = 1; id <= kSessions; ++id) {
    auto [revision, set] = feed.Subscribe(id, listeners.For(id));
    EXPECT_EQ(revision, 0);
  }
  auto r = repo.Apply(
      ApplyRequest{{{"ns.yaml", "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n"}},
                   false,
                   false,
                   ""},
      Actor{"test", "admin", "local"});
  ASSERT_TRUE(r.ok() && r->committed) << r.status();
  ASSERT_TRUE(listeners.WaitFor(kSessions, 1));
  auto got = listeners.got();
  const PolicyFeed::Change* first = got.begin()->second[0].get();
  for (const auto& [id, changes] : got) {
    ASSERT_EQ(changes.size(), 1u) << "session " << id;
    EXPECT_EQ(changes[0].get(), first) << "session " << id << " got a copy of its own";
  }
  EXPECT_EQ(first->revision, 1);
  ASSERT_EQ(first->set->size(), 1u);
  ASSERT_TRUE(first->delta.has_delta());
  EXPECT_EQ(first->delta.delta().revision(), 1);
  ASSERT_EQ(first->delta.delta().upserts_size(), 1);
  EXPECT_EQ(first->delta.delta().upserts(0).kind(), "Namespace");
  EXPECT_EQ(first->delta.delta().upserts(0).name(), "shop");
  EXPECT_EQ(first->delta.delta().upserts(0).json(), first->set->begin()->second.json);

  // A delete arrives as a reference.
  auto d = repo.Delete({ObjectId{"", "Namespace", "", "shop"}}, false, "", Actor{"t", "admin", ""});
  ASSERT_TRUE(d.ok() && d->committed) << d.status();
  ASSERT_TRUE(listeners.WaitFor(kSessions, 2));
  const PolicyFeed::Change& second = *listeners.got().begin()->second[1];
  EXPECT_EQ(second.revision, 2);
  ASSERT_EQ(second.delta.delta().deletes_size(), 1);
  EXPECT_EQ(second.delta.delta().deletes(0).name(), "shop");
  EXPECT_EQ(second.delta.delta().upserts_size(), 0);
  for (uint64_t id = 1; id <= kSessions; ++id) feed.Unsubscribe(id);
}

v1::Endpoint Ep(const std::string& node, const std::string& ns, const std::string& name) {
  v1::Endpoint e;
  e.set_node(node);
  e.set_namespace_(ns);
  e.set_name(name);
  e.add_ips("10.0.0.1");
  return e;
}

TEST(AgentFeedsTest, EverySubscriberGetsTheSameEndpointChangeWithItsNodes) {
  testing::TempStore store;
  EndpointFeed feed(store.get());
  ASSERT_TRUE(feed.Start().ok());
  constexpr int kSessions = 50;
  Listeners<EndpointFeed::Change> listeners;
  for (uint64_t id = 1; id <= kSessions; ++id) {
    EXPECT_TRUE(feed.Subscribe(id, listeners.For(id)).empty());
  }
  // Two nodes' endpoints in one transaction: one change.
  auto t = store.get()->Txn(
      {},
      {store::Op::Put(EndpointKey("node-a", "shop", "web"), EndpointToJson(Ep("", "shop", "web"))),
       store::Op::Put(EndpointKey("node-b", "shop", "db"), EndpointToJson(Ep("", "shop", "db")))});
  ASSERT_TRUE(t.ok()) << t.status();
  ASSERT_TRUE(listeners.WaitFor(kSessions, 1));
  auto got = listeners.got();
  const EndpointFeed::Change* first = got.begin()->second[0].get();
  for (const auto& [id, changes] : got) {
    ASSERT_EQ(changes.size(), 1u) << "session " << id;
    EXPECT_EQ(changes[0].get(), first) << "session " << id << " got a copy of its own";
  }
  EXPECT_EQ(first->nodes, (std::set<std::string>{"node-a", "node-b"}));
  ASSERT_EQ(first->message.endpoints().upserts_size(), 2);
  EXPECT_EQ(first->message.endpoints().upserts(0).node(), "node-a");  // from the key
  EXPECT_EQ(first->message.endpoints().upserts(1).node(), "node-b");

  auto del = store.get()->Txn({}, {store::Op::Delete(EndpointKey("node-b", "shop", "db"))});
  ASSERT_TRUE(del.ok()) << del.status();
  ASSERT_TRUE(listeners.WaitFor(kSessions, 2));
  const EndpointFeed::Change& second = *listeners.got().begin()->second[1];
  EXPECT_EQ(second.nodes, std::set<std::string>{"node-b"});
  ASSERT_EQ(second.message.endpoints().deletes_size(), 1);
  EXPECT_EQ(second.message.endpoints().deletes(0).name(), "db");
  EXPECT_EQ(second.message.endpoints().upserts_size(), 0);
  for (uint64_t id = 1; id <= kSessions; ++id) feed.Unsubscribe(id);
}

}  // namespace
}  // namespace bulkhead::server
