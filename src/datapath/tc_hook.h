// Our TC filters on one interface (clsact qdisc, direct-action, both directions), as an owner.
#pragma once

#include <cstdint>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace bulkhead::datapath {

// Which side of the clsact qdisc.
enum class TcDirection { kIngress, kEgress };

// Owns the filters it attached (and the clsact qdisc, if it created it): the destructor
// detaches them. Release() hands them to the kernel instead, so that enforcement outlives
// the process; DetachPersistent() removes such filters later, from this or another process.
// Our filters are recognised by their fixed handle and priority (BH_TC_HANDLE/PRIORITY).
class TcHook {
 public:
  // Attaches the programs at the interface's ingress and egress, creating the clsact qdisc
  // if it is missing. Our earlier filters there are replaced in one step each (tc replace),
  // so packets never pass unfiltered while the programs are swapped.
  static absl::StatusOr<TcHook> Attach(uint32_t ifindex, int ingress_prog_fd, int egress_prog_fd);

  // Removes our filters from the interface and, when remove_qdisc, the clsact qdisc. A missing
  // filter or interface is not an error: the goal is that nothing of ours is left.
  static absl::Status DetachPersistent(uint32_t ifindex, bool remove_qdisc);

  // The id of the BPF program in our filter at that side; 0 when there is none.
  static absl::StatusOr<uint32_t> QueryProgramId(uint32_t ifindex, TcDirection direction);

  TcHook(TcHook&& other) noexcept;
  TcHook& operator=(TcHook&& other) noexcept;
  TcHook(const TcHook&) = delete;
  TcHook& operator=(const TcHook&) = delete;
  ~TcHook();

  uint32_t ifindex() const { return ifindex_; }
  bool created_qdisc() const { return created_qdisc_; }

  // Leaves the filters (and qdisc) attached when this object goes away.
  void Release() { owned_ = false; }

 private:
  TcHook(uint32_t ifindex, bool created_qdisc)
      : ifindex_(ifindex), created_qdisc_(created_qdisc), owned_(true) {}
  void DetachIfOwned();

  uint32_t ifindex_ = 0;
  bool created_qdisc_ = false;
  bool owned_ = false;
};

}  // namespace bulkhead::datapath
