// Our TC filters on one interface, attached and detached through libbpf's netlink helpers.
#include "datapath/tc_hook.h"

#include <bpf/libbpf.h>
#include <linux/pkt_cls.h>

#include <cerrno>
#include <utility>

#include "absl/strings/str_cat.h"
#include "datapath/abi/datapath_abi.h"
#include "datapath/libbpf_util.h"

namespace bulkhead::datapath {
namespace {

bpf_tc_attach_point Point(TcDirection d) {
  return d == TcDirection::kIngress ? BPF_TC_INGRESS : BPF_TC_EGRESS;
}
const char* Name(TcDirection d) { return d == TcDirection::kIngress ? "ingress" : "egress"; }

// A filter, qdisc or interface that is already gone. The kernel answers EINVAL when asked
// about a filter on an interface without a clsact qdisc (no such block); our handle and
// priority are constants, so EINVAL cannot mean a malformed request here.
bool Gone(int err) { return err == -ENOENT || err == -ENODEV || err == -EINVAL; }

absl::Status AttachOne(uint32_t ifindex, TcDirection d, int prog_fd) {
  LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = static_cast<int>(ifindex), .attach_point = Point(d));
  LIBBPF_OPTS(bpf_tc_opts, opts, .prog_fd = prog_fd, .flags = BPF_TC_F_REPLACE,
              .handle = BH_TC_HANDLE, .priority = BH_TC_PRIORITY);
  int err = bpf_tc_attach(&hook, &opts);
  if (err != 0)
    return ErrnoStatus(err,
                       absl::StrCat("attaching the ", Name(d), " TC program to ifindex ", ifindex));
  return absl::OkStatus();
}

absl::Status DetachOne(uint32_t ifindex, TcDirection d) {
  LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = static_cast<int>(ifindex), .attach_point = Point(d));
  LIBBPF_OPTS(bpf_tc_opts, opts, .handle = BH_TC_HANDLE, .priority = BH_TC_PRIORITY);
  int err = bpf_tc_detach(&hook, &opts);
  if (err != 0 && !Gone(err))
    return ErrnoStatus(
        err, absl::StrCat("detaching the ", Name(d), " TC program from ifindex ", ifindex));
  return absl::OkStatus();
}

absl::Status DestroyQdisc(uint32_t ifindex) {
  LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = static_cast<int>(ifindex),
              .attach_point = static_cast<bpf_tc_attach_point>(BPF_TC_INGRESS | BPF_TC_EGRESS));
  int err = bpf_tc_hook_destroy(&hook);
  if (err != 0 && !Gone(err))
    return ErrnoStatus(err, absl::StrCat("removing the clsact qdisc of ifindex ", ifindex));
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<TcHook> TcHook::Attach(uint32_t ifindex, int ingress_prog_fd, int egress_prog_fd) {
  InstallLibbpfLogCapture();
  LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = static_cast<int>(ifindex),
              .attach_point = static_cast<bpf_tc_attach_point>(BPF_TC_INGRESS | BPF_TC_EGRESS));
  int err = bpf_tc_hook_create(&hook);
  if (err != 0 && err != -EEXIST)
    return ErrnoStatus(err, absl::StrCat("creating the clsact qdisc on ifindex ", ifindex));
  TakeLibbpfLog();  // an existing qdisc is fine; forget libbpf's complaint about it
  // From here the owner cleans up whatever a later failure leaves behind.
  TcHook owner(ifindex, err == 0);
  if (auto s = AttachOne(ifindex, TcDirection::kIngress, ingress_prog_fd); !s.ok()) return s;
  if (auto s = AttachOne(ifindex, TcDirection::kEgress, egress_prog_fd); !s.ok()) return s;
  return owner;
}

absl::Status TcHook::DetachPersistent(uint32_t ifindex, bool remove_qdisc) {
  InstallLibbpfLogCapture();
  absl::Status status = DetachOne(ifindex, TcDirection::kIngress);
  status.Update(DetachOne(ifindex, TcDirection::kEgress));
  if (remove_qdisc) status.Update(DestroyQdisc(ifindex));
  TakeLibbpfLog();
  return status;
}

absl::StatusOr<uint32_t> TcHook::QueryProgramId(uint32_t ifindex, TcDirection direction) {
  InstallLibbpfLogCapture();
  LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = static_cast<int>(ifindex),
              .attach_point = Point(direction));
  LIBBPF_OPTS(bpf_tc_opts, opts, .handle = BH_TC_HANDLE, .priority = BH_TC_PRIORITY);
  int err = bpf_tc_query(&hook, &opts);
  if (err != 0) {
    TakeLibbpfLog();
    if (Gone(err)) return 0u;
    return ErrnoStatus(
        err, absl::StrCat("querying the ", Name(direction), " TC filter of ifindex ", ifindex));
  }
  return opts.prog_id;
}

TcHook::TcHook(TcHook&& other) noexcept
    : ifindex_(other.ifindex_),
      created_qdisc_(other.created_qdisc_),
      owned_(std::exchange(other.owned_, false)) {}

TcHook& TcHook::operator=(TcHook&& other) noexcept {
  if (this != &other) {
    DetachIfOwned();
    ifindex_ = other.ifindex_;
    created_qdisc_ = other.created_qdisc_;
    owned_ = std::exchange(other.owned_, false);
  }
  return *this;
}

TcHook::~TcHook() { DetachIfOwned(); }

void TcHook::DetachIfOwned() {
  if (!owned_) return;
  owned_ = false;
  // Nothing to report to from a destructor; DetachPersistent already treats "gone" as done.
  (void)DetachPersistent(ifindex_, created_qdisc_);
}

}  // namespace bulkhead::datapath
