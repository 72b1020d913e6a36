// BpfDatapath: loads the skeleton, pins and adopts maps, and implements IDatapath on them.
#include "datapath/bpf_datapath.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/magic.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <set>
#include <system_error>
#include <utility>

#include "absl/strings/str_cat.h"
#include "datapath/libbpf_util.h"
#include "datapath/tc_hook.h"

// The generated skeleton is C; it compiles as C++ but is not written to our warning set.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#pragma GCC diagnostic ignored "-Wpedantic"
#include "datapath/bulkhead_bpf.skel.h"
#pragma GCC diagnostic pop

namespace bulkhead::datapath {
namespace {

struct SkeletonDeleter {
  void operator()(bulkhead_bpf* skel) const { bulkhead_bpf__destroy(skel); }
};
struct RingBufferDeleter {
  void operator()(ring_buffer* rb) const { ring_buffer__free(rb); }
};

// Is `path` (or its nearest existing ancestor) on a bpffs mount?
absl::Status CheckOnBpffs(const std::filesystem::path& path) {
  std::filesystem::path p = path;
  std::error_code ec;
  while (!p.empty() && !std::filesystem::exists(p, ec)) p = p.parent_path();
  struct statfs st {};
  if (p.empty() || ::statfs(p.c_str(), &st) != 0)
    return ErrnoStatus(errno, absl::StrCat("checking the pin root ", path.string()));
  if (static_cast<unsigned long>(st.f_type) != BPF_FS_MAGIC)
    return absl::FailedPreconditionError(
        absl::StrCat("pin root ", path.string(), " is not on a bpffs mount (", p.string(),
                     " is not bpffs; mount one with: mount -t bpf bpf /sys/fs/bpf)"));
  return absl::OkStatus();
}

absl::Status MapUpdate(const bpf_map* map, const void* key, const void* value, uint64_t flags,
                       const std::string& what) {
  if (bpf_map_update_elem(bpf_map__fd(map), key, value, flags) != 0)
    return ErrnoStatus(errno, absl::StrCat(what, " (map ", bpf_map__name(map), ")"));
  return absl::OkStatus();
}

// Deleting what is already gone is success: the caller wants it absent.
absl::Status MapDelete(const bpf_map* map, const void* key, const std::string& what) {
  if (bpf_map_delete_elem(bpf_map__fd(map), key) != 0 && errno != ENOENT)
    return ErrnoStatus(errno, absl::StrCat(what, " (map ", bpf_map__name(map), ")"));
  return absl::OkStatus();
}

// Reads one value; false when the key is absent.
absl::StatusOr<bool> MapLookup(const bpf_map* map, const void* key, void* value,
                               const std::string& what) {
  if (bpf_map_lookup_elem(bpf_map__fd(map), key, value) == 0) return true;
  if (errno == ENOENT) return false;
  return ErrnoStatus(errno, absl::StrCat(what, " (map ", bpf_map__name(map), ")"));
}

template <typename Key>
absl::StatusOr<std::vector<Key>> Keys(const bpf_map* map) {
  return ListKeys<Key>(bpf_map__fd(map), bpf_map__max_entries(map), bpf_map__name(map));
}

bool ValidFamily(uint8_t family) {
  return family == BULKHEAD_FAMILY_IPV4 || family == BULKHEAD_FAMILY_IPV6;
}

}  // namespace

struct BpfDatapath::State {
  std::unique_ptr<bulkhead_bpf, SkeletonDeleter> skel;
  std::unique_ptr<ring_buffer, RingBufferDeleter> events;
  // Set for the duration of one PollEvents call.
  const EventCallback* callback = nullptr;
  size_t delivered = 0;

  static int OnEvent(void* ctx, void* data, size_t size) {
    auto* self = static_cast<State*>(ctx);
    if (size < sizeof(bh_flow_event) || self->callback == nullptr) return 0;
    bh_flow_event ev;
    std::memcpy(&ev, data, sizeof(ev));
    (*self->callback)(ev);
    self->delivered++;
    return 0;
  }
};

BpfDatapath::BpfDatapath(std::unique_ptr<State> state, std::string pin_root, MapSizes sizes,
                         bool adopted)
    : state_(std::move(state)), pin_root_(std::move(pin_root)), sizes_(sizes), adopted_(adopted) {}

BpfDatapath::~BpfDatapath() = default;

absl::StatusOr<std::unique_ptr<BpfDatapath>> BpfDatapath::Open(const DatapathOptions& options) {
  InstallLibbpfLogCapture();
  TakeLibbpfLog();
  if (options.pin_root.empty()) return absl::InvalidArgumentError("datapath: pin root is empty");
  const std::filesystem::path root(options.pin_root);
  if (auto s = CheckOnBpffs(root); !s.ok()) return s;
  std::error_code ec;
  for (std::filesystem::path p = root; !p.empty() && p != p.root_path(); p = p.parent_path()) {
    if (std::filesystem::exists(p, ec)) break;
    if (p.filename().string().find('.') != std::string::npos)
      return absl::InvalidArgumentError(absl::StrCat(
          "pin root ", root.string(), ": bpffs does not allow '.' in names (", p.string(), ")"));
  }
  std::filesystem::create_directories(root, ec);
  if (ec)
    return absl::Status(absl::ErrnoToStatusCode(ec.value()),
                        absl::StrCat("creating pin root ", root.string(), ": ", ec.message()));
  const bool adopted = std::filesystem::exists(root / "bh_endpoints", ec);

  auto state = std::make_unique<State>();
  LIBBPF_OPTS(bpf_object_open_opts, open_opts, .pin_root_path = options.pin_root.c_str());
  state->skel.reset(bulkhead_bpf__open_opts(&open_opts));
  if (!state->skel) return ErrnoStatus(errno, "opening the BPF object");
  bulkhead_bpf* skel = state->skel.get();

  const MapSizes& z = options.sizes;
  const std::pair<bpf_map*, uint32_t> sizes[] = {
      {skel->maps.bh_ipcache, z.ipcache},
      {skel->maps.bh_pol_peer, z.policy_peers},
      {skel->maps.bh_pol_port, z.policy_ports},
      {skel->maps.bh_endpoints, z.endpoints},
      {skel->maps.bh_ep_addrs, z.endpoint_addresses},
      {skel->maps.bh_ct, z.conntrack},
      {skel->maps.bh_frags, z.fragments},
      {skel->maps.bh_events, z.events_bytes},
      {skel->maps.bh_attach, z.endpoints},
  };
  for (const auto& [map, n] : sizes) {
    if (n == 0)
      return absl::InvalidArgumentError(
          absl::StrCat("datapath: size of map ", bpf_map__name(map), " is 0"));
    if (int err = bpf_map__set_max_entries(map, n); err != 0)
      return ErrnoStatus(err, absl::StrCat("sizing map ", bpf_map__name(map)));
  }
  if (int err = bulkhead_bpf__load(skel); err != 0)
    return ErrnoStatus(err,
                       absl::StrCat("loading the BPF programs with pin root ", options.pin_root,
                                    adopted ? " (adopting pinned maps: their sizes must "
                                              "match the options)"
                                            : ""));

  auto dp = std::unique_ptr<BpfDatapath>(
      new BpfDatapath(std::move(state), options.pin_root, options.sizes, adopted));
  if (auto s = dp->SetSettings(options.settings); !s.ok()) return s;
  if (auto s = dp->PinPrograms(); !s.ok()) return s;
  if (auto s = dp->ReattachRegistered(); !s.ok()) return s;

  State* st = dp->state_.get();
  st->events.reset(
      ring_buffer__new(bpf_map__fd(skel->maps.bh_events), &State::OnEvent, st, nullptr));
  if (!st->events) return ErrnoStatus(errno, "opening the flow event ring buffer");
  return dp;
}

absl::Status BpfDatapath::PinPrograms() {
  for (bpf_program* prog :
       {state_->skel->progs.bh_from_workload, state_->skel->progs.bh_to_workload}) {
    std::string path = absl::StrCat(pin_root_, "/", bpf_program__name(prog));
    // The older program stays in its filters until they are re-pointed; only the pin moves.
    if (::unlink(path.c_str()) != 0 && errno != ENOENT)
      return ErrnoStatus(errno, absl::StrCat("removing the old program pin ", path));
    if (int err = bpf_program__pin(prog, path.c_str()); err != 0)
      return ErrnoStatus(err, absl::StrCat("pinning program at ", path));
  }
  return absl::OkStatus();
}

absl::Status BpfDatapath::ReattachRegistered() {
  auto ifindexes = ListAttached();
  if (!ifindexes.ok()) return ifindexes.status();
  for (uint32_t ifindex : *ifindexes) {
    auto hook = TcHook::Attach(ifindex, bpf_program__fd(state_->skel->progs.bh_from_workload),
                               bpf_program__fd(state_->skel->progs.bh_to_workload));
    if (hook.ok()) {
      hook->Release();
      continue;
    }
    // The interface went away while nobody was looking (its workload was deleted): the
    // kernel removed its filters with it, so only the registry entry is left to drop.
    if (hook.status().code() == absl::StatusCode::kNotFound) {  // ENODEV, ENOENT
      if (auto s = MapDelete(state_->skel->maps.bh_attach, &ifindex, "forgetting an interface");
          !s.ok())
        return s;
      continue;
    }
    return absl::Status(hook.status().code(), absl::StrCat("re-attaching adopted interface ",
                                                           ifindex, ": ", hook.status().message()));
  }
  return absl::OkStatus();
}

int BpfDatapath::events_fd() const { return ring_buffer__epoll_fd(state_->events.get()); }

absl::StatusOr<std::map<std::string, uint32_t>> BpfDatapath::MapIds() const {
  std::map<std::string, uint32_t> ids;
  bpf_map* map;
  bpf_object__for_each_map(map, state_->skel->obj) {
    bpf_map_info info{};
    uint32_t len = sizeof(info);
    if (bpf_obj_get_info_by_fd(bpf_map__fd(map), &info, &len) != 0)
      return ErrnoStatus(errno, absl::StrCat("reading info of map ", bpf_map__name(map)));
    ids[bpf_map__name(map)] = info.id;
  }
  return ids;
}

int BpfDatapath::program_fd(Program program) const {
  return bpf_program__fd(program == Program::kFromWorkload ? state_->skel->progs.bh_from_workload
                                                           : state_->skel->progs.bh_to_workload);
}

absl::StatusOr<uint32_t> BpfDatapath::ProgramId(Program program) const {
  bpf_program* prog = program == Program::kFromWorkload ? state_->skel->progs.bh_from_workload
                                                        : state_->skel->progs.bh_to_workload;
  bpf_prog_info info{};
  uint32_t len = sizeof(info);
  if (bpf_obj_get_info_by_fd(bpf_program__fd(prog), &info, &len) != 0)
    return ErrnoStatus(errno, absl::StrCat("reading info of program ", bpf_program__name(prog)));
  return info.id;
}

absl::StatusOr<int> BpfDatapath::TestRun(Program program, uint32_t ifindex,
                                         std::span<const uint8_t> frame) const {
  bpf_program* prog = program == Program::kFromWorkload ? state_->skel->progs.bh_from_workload
                                                        : state_->skel->progs.bh_to_workload;
  // The kernel builds an skb on the device named by ctx.ifindex, so the program's
  // skb->ifindex is the endpoint key, as on a real veth.
  __sk_buff ctx{};
  ctx.ifindex = ifindex;
  LIBBPF_OPTS(bpf_test_run_opts, opts, .data_in = frame.data(),
              .data_size_in = static_cast<uint32_t>(frame.size()), .ctx_in = &ctx,
              .ctx_size_in = sizeof(ctx), .repeat = 1);
  if (int err = bpf_prog_test_run_opts(bpf_program__fd(prog), &opts); err != 0)
    return ErrnoStatus(err, absl::StrCat("BPF_PROG_TEST_RUN of ", bpf_program__name(prog),
                                         " on ifindex ", ifindex));
  return static_cast<int>(opts.retval);
}

absl::Status BpfDatapath::Teardown() {
  absl::Status status;
  auto attached = ListAttached();
  if (attached.ok()) {
    for (uint32_t ifindex : *attached) status.Update(Detach(ifindex));
  } else {
    status.Update(attached.status());
  }
  bpf_map* map;
  bpf_object__for_each_map(map, state_->skel->obj) {
    if (!bpf_map__is_pinned(map)) continue;
    if (int err = bpf_map__unpin(map, nullptr); err != 0)
      status.Update(ErrnoStatus(err, absl::StrCat("unpinning map ", bpf_map__name(map))));
  }
  for (bpf_program* prog :
       {state_->skel->progs.bh_from_workload, state_->skel->progs.bh_to_workload}) {
    std::string path = absl::StrCat(pin_root_, "/", bpf_program__name(prog));
    if (::unlink(path.c_str()) != 0 && errno != ENOENT)
      status.Update(ErrnoStatus(errno, absl::StrCat("removing program pin ", path)));
  }
  if (::rmdir(pin_root_.c_str()) != 0 && errno != ENOENT)
    status.Update(ErrnoStatus(errno, absl::StrCat("removing pin root ", pin_root_)));
  return status;
}

// ---- endpoints ----

absl::Status BpfDatapath::UpsertEndpoint(const Endpoint& ep) {
  const std::string what = absl::StrCat("endpoint ifindex ", ep.ifindex);
  if (ep.ifindex == 0) return absl::InvalidArgumentError("endpoint: ifindex 0");
  if (ep.mode != Mode::kEnforce && ep.mode != Mode::kAudit && ep.mode != Mode::kLearn)
    return absl::InvalidArgumentError(absl::StrCat(what, ": invalid mode"));
  std::set<std::pair<uint8_t, std::array<uint8_t, 16>>> wanted;
  for (const EndpointAddress& a : ep.addresses) {
    if (!ValidFamily(a.family))
      return absl::InvalidArgumentError(
          absl::StrCat(what, ": address family ", static_cast<int>(a.family), " invalid"));
    if (a.family == BULKHEAD_FAMILY_IPV4 &&
        std::any_of(a.addr.begin() + 4, a.addr.end(), [](uint8_t b) { return b != 0; }))
      return absl::InvalidArgumentError(absl::StrCat(what, ": IPv4 address with bytes past 4"));
    wanted.insert({a.family, a.addr});
  }
  bulkhead_bpf* skel = state_->skel.get();

  // Addresses first, so that the config never points at a workload whose own packets would
  // be dropped as spoofed; stale ones go last.
  for (const auto& [family, addr] : wanted) {
    bh_ep_addr_key k{};
    k.ifindex = ep.ifindex;
    k.family = family;
    std::copy(addr.begin(), addr.end(), k.addr);
    uint32_t one = 1;
    if (auto s = MapUpdate(skel->maps.bh_ep_addrs, &k, &one, BPF_ANY,
                           absl::StrCat(what, ": writing an address"));
        !s.ok())
      return s;
  }

  bh_endpoint_config cfg{};
  cfg.endpoint_id = ep.endpoint_id;
  cfg.identity = ep.identity;
  cfg.policy_table_id = ep.policy_table_id;
  cfg.policy_generation = ep.policy_generation;
  cfg.mode = static_cast<uint8_t>(ep.mode);
  cfg.miss_verdict = ep.allow_on_miss ? BULKHEAD_VERDICT_ALLOW : BULKHEAD_VERDICT_DENY;
  cfg.flags = ep.antispoof ? 0 : BH_EP_F_NO_ANTISPOOF;
  if (auto s = MapUpdate(skel->maps.bh_endpoints, &ep.ifindex, &cfg, BPF_ANY,
                         absl::StrCat(what, ": writing config"));
      !s.ok())
    return s;

  auto keys = Keys<bh_ep_addr_key>(skel->maps.bh_ep_addrs);
  if (!keys.ok()) return keys.status();
  for (const bh_ep_addr_key& k : *keys) {
    if (k.ifindex != ep.ifindex) continue;
    std::array<uint8_t, 16> addr;
    std::copy(std::begin(k.addr), std::end(k.addr), addr.begin());
    if (wanted.count({k.family, addr})) continue;
    if (auto s =
            MapDelete(skel->maps.bh_ep_addrs, &k, absl::StrCat(what, ": removing a stale address"));
        !s.ok())
      return s;
  }
  return absl::OkStatus();
}

absl::Status BpfDatapath::DeleteEndpoint(uint32_t ifindex) {
  const std::string what = absl::StrCat("deleting endpoint ifindex ", ifindex);
  bulkhead_bpf* skel = state_->skel.get();
  if (auto s = MapDelete(skel->maps.bh_endpoints, &ifindex, what); !s.ok()) return s;

  auto addrs = Keys<bh_ep_addr_key>(skel->maps.bh_ep_addrs);
  if (!addrs.ok()) return addrs.status();
  for (const auto& k : *addrs)
    if (k.ifindex == ifindex)
      if (auto s = MapDelete(skel->maps.bh_ep_addrs, &k, what); !s.ok()) return s;

  auto flows = Keys<bh_ct_key>(skel->maps.bh_ct);
  if (!flows.ok()) return flows.status();
  for (const auto& k : *flows)
    if (k.ifindex == ifindex)
      if (auto s = MapDelete(skel->maps.bh_ct, &k, what); !s.ok()) return s;

  auto frags = Keys<bh_frag_key>(skel->maps.bh_frags);
  if (!frags.ok()) return frags.status();
  for (const auto& k : *frags)
    if (k.ifindex == ifindex)
      if (auto s = MapDelete(skel->maps.bh_frags, &k, what); !s.ok()) return s;
  return absl::OkStatus();
}

absl::StatusOr<std::vector<Endpoint>> BpfDatapath::ListEndpoints() {
  bulkhead_bpf* skel = state_->skel.get();
  auto ifindexes = Keys<uint32_t>(skel->maps.bh_endpoints);
  if (!ifindexes.ok()) return ifindexes.status();
  auto addrs = Keys<bh_ep_addr_key>(skel->maps.bh_ep_addrs);
  if (!addrs.ok()) return addrs.status();
  std::sort(ifindexes->begin(), ifindexes->end());

  std::vector<Endpoint> out;
  for (uint32_t ifindex : *ifindexes) {
    bh_endpoint_config cfg{};
    auto found = MapLookup(skel->maps.bh_endpoints, &ifindex, &cfg,
                           absl::StrCat("reading endpoint ifindex ", ifindex));
    if (!found.ok()) return found.status();
    if (!*found) continue;  // deleted since the key walk
    Endpoint ep;
    ep.ifindex = ifindex;
    ep.endpoint_id = cfg.endpoint_id;
    ep.identity = cfg.identity;
    ep.policy_table_id = cfg.policy_table_id;
    ep.policy_generation = cfg.policy_generation;
    ep.mode = static_cast<Mode>(cfg.mode);
    ep.allow_on_miss = cfg.miss_verdict == BULKHEAD_VERDICT_ALLOW;
    ep.antispoof = (cfg.flags & BH_EP_F_NO_ANTISPOOF) == 0;
    for (const auto& k : *addrs) {
      if (k.ifindex != ifindex) continue;
      EndpointAddress a;
      a.family = k.family;
      std::copy(std::begin(k.addr), std::end(k.addr), a.addr.begin());
      ep.addresses.push_back(a);
    }
    std::sort(ep.addresses.begin(), ep.addresses.end());
    out.push_back(std::move(ep));
  }
  return out;
}

absl::Status BpfDatapath::SwitchPolicy(uint32_t ifindex, uint32_t table_id, uint32_t generation) {
  const std::string what = absl::StrCat("switching the policy of endpoint ifindex ", ifindex,
                                        " to table ", table_id, " generation ", generation);
  bulkhead_bpf* skel = state_->skel.get();
  bh_endpoint_config cfg{};
  auto found = MapLookup(skel->maps.bh_endpoints, &ifindex, &cfg, what);
  if (!found.ok()) return found.status();
  if (!*found) return absl::NotFoundError(absl::StrCat(what, ": no such endpoint"));
  cfg.policy_table_id = table_id;
  cfg.policy_generation = generation;
  // One update of the whole element: packets see the old table or the new one.
  return MapUpdate(skel->maps.bh_endpoints, &ifindex, &cfg, BPF_EXIST, what);
}

// ---- attachment ----

absl::Status BpfDatapath::Attach(uint32_t ifindex) {
  if (ifindex == 0) return absl::InvalidArgumentError("attach: ifindex 0");
  bulkhead_bpf* skel = state_->skel.get();
  auto hook = TcHook::Attach(ifindex, bpf_program__fd(skel->progs.bh_from_workload),
                             bpf_program__fd(skel->progs.bh_to_workload));
  if (!hook.ok()) return hook.status();
  bh_attach_entry entry{};
  auto found = MapLookup(skel->maps.bh_attach, &ifindex, &entry, "reading the registry");
  if (!found.ok()) return found.status();
  if (hook->created_qdisc()) entry.flags |= BH_ATT_F_CREATED_QDISC;
  if (auto s = MapUpdate(skel->maps.bh_attach, &ifindex, &entry, BPF_ANY,
                         absl::StrCat("registering attached ifindex ", ifindex));
      !s.ok())
    return s;  // the hook's destructor takes the filters off again
  hook->Release();
  return absl::OkStatus();
}

absl::Status BpfDatapath::Detach(uint32_t ifindex) {
  bulkhead_bpf* skel = state_->skel.get();
  bh_attach_entry entry{};
  auto found = MapLookup(skel->maps.bh_attach, &ifindex, &entry, "reading the registry");
  if (!found.ok()) return found.status();
  bool remove_qdisc = *found && (entry.flags & BH_ATT_F_CREATED_QDISC);
  if (auto s = TcHook::DetachPersistent(ifindex, remove_qdisc); !s.ok()) return s;
  return MapDelete(skel->maps.bh_attach, &ifindex, absl::StrCat("unregistering ifindex ", ifindex));
}

absl::StatusOr<std::vector<uint32_t>> BpfDatapath::ListAttached() {
  auto keys = Keys<uint32_t>(state_->skel->maps.bh_attach);
  if (keys.ok()) std::sort(keys->begin(), keys->end());
  return keys;
}

// ---- ipcache and policy ----

absl::Status BpfDatapath::UpsertIpcache(
    const std::vector<std::pair<bulkhead_ipcache_key, bulkhead_ipcache_value>>& entries) {
  for (const auto& [key, value] : entries) {
    uint32_t bits = key.family == BULKHEAD_FAMILY_IPV4 ? 32 : 128;
    if (!ValidFamily(key.family) || key.prefixlen < BULKHEAD_IPCACHE_PREFIX_BASE ||
        key.prefixlen > BULKHEAD_IPCACHE_PREFIX_BASE + bits)
      return absl::InvalidArgumentError(absl::StrCat("ipcache entry for identity ", value.identity,
                                                     ": family ", static_cast<int>(key.family),
                                                     " prefixlen ", key.prefixlen, " invalid"));
    if (auto s = MapUpdate(state_->skel->maps.bh_ipcache, &key, &value, BPF_ANY,
                           absl::StrCat("writing ipcache entry for identity ", value.identity));
        !s.ok())
      return s;
  }
  return absl::OkStatus();
}

absl::Status BpfDatapath::DeleteIpcache(const std::vector<bulkhead_ipcache_key>& keys) {
  for (const auto& key : keys)
    if (auto s = MapDelete(state_->skel->maps.bh_ipcache, &key, "deleting an ipcache entry");
        !s.ok())
      return s;
  return absl::OkStatus();
}

absl::Status BpfDatapath::WritePolicyTables(const PolicyTables& tables) {
  bulkhead_bpf* skel = state_->skel.get();
  for (const auto& [key, value] : tables.peers) {
    if (key.table_id == BULKHEAD_TABLE_NONE || key.direction > BULKHEAD_DIR_EGRESS)
      return absl::InvalidArgumentError(
          absl::StrCat("policy peer entry (table ", key.table_id, ", identity ", key.peer_identity,
                       "): table id 0 or direction ", static_cast<int>(key.direction), " invalid"));
    if (auto s = MapUpdate(skel->maps.bh_pol_peer, &key, &value, BPF_ANY,
                           absl::StrCat("writing policy peer entry of table ", key.table_id));
        !s.ok())
      return s;
  }
  for (const auto& [key, value] : tables.ports) {
    if (key.table_id == BULKHEAD_TABLE_NONE || key.direction > BULKHEAD_DIR_EGRESS ||
        key.prefixlen < BULKHEAD_PORT_PREFIX_BASE || key.prefixlen > BULKHEAD_PORT_PREFIX_FULL ||
        (value.verdict != BULKHEAD_VERDICT_ALLOW && value.verdict != BULKHEAD_VERDICT_DENY))
      return absl::InvalidArgumentError(absl::StrCat(
          "policy port entry (table ", key.table_id, ", class ", key.class_id, ", protocol ",
          static_cast<int>(key.protocol), "): table id 0, direction, prefixlen ", key.prefixlen,
          " or verdict ", static_cast<int>(value.verdict), " invalid"));
    if (auto s = MapUpdate(skel->maps.bh_pol_port, &key, &value, BPF_ANY,
                           absl::StrCat("writing policy port entry of table ", key.table_id));
        !s.ok())
      return s;
  }
  return absl::OkStatus();
}

absl::Status BpfDatapath::DeletePolicyTables(const std::vector<uint32_t>& table_ids) {
  const std::set<uint32_t> doomed(table_ids.begin(), table_ids.end());
  auto endpoints = ListEndpoints();
  if (!endpoints.ok()) return endpoints.status();
  for (const Endpoint& ep : *endpoints)
    if (doomed.count(ep.policy_table_id))
      return absl::FailedPreconditionError(absl::StrCat("deleting policy table ",
                                                        ep.policy_table_id, ": endpoint ifindex ",
                                                        ep.ifindex, " still uses it"));
  bulkhead_bpf* skel = state_->skel.get();
  auto peers = Keys<bulkhead_policy_peer_key>(skel->maps.bh_pol_peer);
  if (!peers.ok()) return peers.status();
  for (const auto& k : *peers)
    if (doomed.count(k.table_id))
      if (auto s = MapDelete(skel->maps.bh_pol_peer, &k, "deleting a policy peer entry"); !s.ok())
        return s;
  auto ports = Keys<bulkhead_policy_port_key>(skel->maps.bh_pol_port);
  if (!ports.ok()) return ports.status();
  for (const auto& k : *ports)
    if (doomed.count(k.table_id))
      if (auto s = MapDelete(skel->maps.bh_pol_port, &k, "deleting a policy port entry"); !s.ok())
        return s;
  return absl::OkStatus();
}

absl::StatusOr<std::vector<uint32_t>> BpfDatapath::ListPolicyTables() {
  std::set<uint32_t> ids;
  auto peers = Keys<bulkhead_policy_peer_key>(state_->skel->maps.bh_pol_peer);
  if (!peers.ok()) return peers.status();
  for (const auto& k : *peers) ids.insert(k.table_id);
  auto ports = Keys<bulkhead_policy_port_key>(state_->skel->maps.bh_pol_port);
  if (!ports.ok()) return ports.status();
  for (const auto& k : *ports) ids.insert(k.table_id);
  return std::vector<uint32_t>(ids.begin(), ids.end());
}

// ---- settings, counters, conntrack, events ----

absl::Status BpfDatapath::SetSettings(const bh_settings& settings) {
  uint32_t zero = 0;
  return MapUpdate(state_->skel->maps.bh_settings, &zero, &settings, BPF_ANY,
                   "writing datapath settings");
}

absl::StatusOr<Counters> BpfDatapath::ReadCounters() {
  int ncpu = libbpf_num_possible_cpus();
  if (ncpu <= 0) return ErrnoStatus(ncpu, "counting possible CPUs");
  std::vector<uint64_t> per_cpu(static_cast<size_t>(ncpu));
  Counters out;
  for (uint32_t i = 0; i < BH_CTR_MAX; i++) {
    auto found = MapLookup(state_->skel->maps.bh_counters, &i, per_cpu.data(),
                           absl::StrCat("reading counter ", i));
    if (!found.ok()) return found.status();
    uint64_t sum = 0;
    for (uint64_t v : per_cpu) sum += v;
    out.values[i] = sum;
  }
  return out;
}

absl::StatusOr<ConntrackEntries> BpfDatapath::ListConntrack() {
  const bpf_map* map = state_->skel->maps.bh_ct;
  auto keys = Keys<bh_ct_key>(map);
  if (!keys.ok()) return keys.status();
  ConntrackEntries out;
  for (const bh_ct_key& k : *keys) {
    bh_ct_entry e{};
    auto found = MapLookup(map, &k, &e, "reading a conntrack entry");
    if (!found.ok()) return found.status();
    if (*found) out.emplace_back(k, e);
  }
  return out;
}

absl::StatusOr<size_t> BpfDatapath::PollEvents(int timeout_ms, const EventCallback& callback) {
  State* st = state_.get();
  st->callback = &callback;
  st->delivered = 0;
  int n = timeout_ms == 0 ? ring_buffer__consume(st->events.get())
                          : ring_buffer__poll(st->events.get(), timeout_ms);
  st->callback = nullptr;
  if (n < 0 && n != -EINTR) return ErrnoStatus(n, "reading flow events");
  return st->delivered;
}

}  // namespace bulkhead::datapath
