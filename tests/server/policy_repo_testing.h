// Helpers the policy repository's tests share (unit_server and the etcd tests): a
// NetworkPolicy manifest, and the check that a repository's in-memory set equals the store's.
#pragma once

#include <gtest/gtest.h>

#include <string>

#include "server/policy_repo.h"

namespace bulkhead::server::testing {

// A NetworkPolicy `name` in namespace shop selecting app=`name`, admitting TCP `port`.
inline std::string Np(const std::string& name, int port) {
  return "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: " + name +
         ", namespace: shop}\nspec:\n  podSelector: {matchLabels: {app: " + name +
         "}}\n  ingress:\n  - ports: [{port: " + std::to_string(port) + "}]\n";
}

// The cached set equals what the store holds, object for object.
inline void ExpectCacheEqualsStore(PolicyRepository& repo, const std::string& where) {
  auto cached = repo.Read();
  auto stored = repo.ReadFromStore();
  ASSERT_TRUE(cached.ok()) << where << ": " << cached.status();
  ASSERT_TRUE(stored.ok()) << where << ": " << stored.status();
  EXPECT_EQ(cached->first, stored->first) << where;
  ASSERT_EQ(cached->second.size(), stored->second.size()) << where;
  for (const auto& [id, o] : stored->second) {
    auto it = cached->second.find(id);
    ASSERT_NE(it, cached->second.end()) << where << ": " << id.Display() << " not cached";
    EXPECT_EQ(it->second.api_version, o.api_version) << where << ": " << id.Display();
    EXPECT_EQ(it->second.json, o.json) << where << ": " << id.Display();
  }
}

}  // namespace bulkhead::server::testing
