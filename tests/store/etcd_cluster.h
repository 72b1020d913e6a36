// A real etcd cluster for tests: N members of /usr/bin/etcd on 127.0.0.1 with free ports and
// temporary data dirs, killed and removed when the object goes (and killed by the kernel if the
// test process dies: PR_SET_PDEATHSIG). Members can be killed and restarted for fault tests.
#pragma once

#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace bulkhead::store::testing {

class EtcdCluster {
 public:
  // The etcd binary: $BULKHEAD_ETCD or /usr/bin/etcd; empty when there is none.
  static std::string Binary();

  static absl::StatusOr<std::unique_ptr<EtcdCluster>> Start(int members = 3);
  ~EtcdCluster();
  EtcdCluster(const EtcdCluster&) = delete;
  EtcdCluster& operator=(const EtcdCluster&) = delete;

  int size() const { return static_cast<int>(members_.size()); }
  std::string Endpoint(int member) const;  // "127.0.0.1:PORT"
  std::string Url() const;                 // "etcd://127.0.0.1:P1,127.0.0.1:P2,..."
  bool Running(int member) const { return members_[member].pid > 0; }

  void Kill(int member);             // SIGKILL, and wait for it
  absl::Status Restart(int member);  // same name, ports and data dir
  // Waits until every running member answers a linearizable read (a hang guard bounds it).
  absl::Status WaitHealthy();
  std::string LogTail(int member, size_t bytes = 3000) const;
  // The member that leads now, by asking the running members (/v3/maintenance/status).
  absl::StatusOr<int> Leader() const;

 private:
  struct Member {
    std::string name;
    int client_port = 0;
    int peer_port = 0;
    pid_t pid = -1;
  };
  EtcdCluster() = default;
  absl::Status Launch(int member);
  std::string DataDir(int member) const;

  std::string binary_;
  std::string dir_;
  std::string token_;
  std::vector<Member> members_;
};

}  // namespace bulkhead::store::testing
