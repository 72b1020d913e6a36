// The loader against the kernel: pinning and adoption, TC attach/detach, tables, event loss.
#include <linux/pkt_cls.h>
#include <sys/stat.h>

#include <algorithm>
#include <filesystem>
#include <map>
#include <string>

#include "datapath/tc_hook.h"
#include "fixture.h"
#include "sandbox.h"

namespace bulkhead::bpftest {
namespace {

using datapath::TcDirection;
using datapath::TcHook;

constexpr int OK = TC_ACT_OK;
constexpr int SHOT = TC_ACT_SHOT;

uint32_t AttachedProgram(uint32_t ifindex, TcDirection d) {
  auto id = TcHook::QueryProgramId(ifindex, d);
  EXPECT_TRUE(id.ok()) << id.status();
  return id.ok() ? *id : 0;
}

bool HasClsact(const std::string& dev) {
  // `tc qdisc show dev X` lists "qdisc clsact ffff:" when present.
  return Shell("tc qdisc show dev " + dev + " | grep -q clsact").ok();
}

TEST_F(DatapathTest, MapsAndProgramsArePinnedUnderThePinRoot) {
  for (const char* name : {"bh_ipcache", "bh_pol_peer", "bh_pol_port", "bh_endpoints",
                           "bh_ep_addrs", "bh_ct", "bh_frags", "bh_settings", "bh_counters",
                           "bh_events", "bh_attach", "bh_from_workload", "bh_to_workload"})
    EXPECT_TRUE(std::filesystem::exists(pin_root_ + "/" + name)) << name;
}

TEST_F(DatapathTest, RestartedLoaderAdoptsPinnedStateWithoutAGap) {
  ASSERT_TRUE(dp_->Attach(if_a_).ok());
  ASSERT_EQ(FromA(Tcp(kA, 40000, kB, 80, kSyn)), OK);
  auto maps_before = dp_->MapIds();
  ASSERT_TRUE(maps_before.ok());
  auto prog_before = dp_->ProgramId(Program::kFromWorkload);
  ASSERT_TRUE(prog_before.ok());
  EXPECT_EQ(AttachedProgram(if_a_, TcDirection::kIngress), *prog_before);

  // The agent goes away: no teardown, the object is simply dropped.
  dp_.reset();
  EXPECT_EQ(AttachedProgram(if_a_, TcDirection::kIngress), *prog_before)
      << "the filter keeps enforcing while no loader runs";
  EXPECT_TRUE(std::filesystem::exists(pin_root_ + "/bh_ct"));

  auto reopened = OpenDatapath();
  ASSERT_TRUE(reopened.ok()) << reopened.status();
  dp_ = std::move(*reopened);
  EXPECT_TRUE(dp_->adopted());
  auto maps_after = dp_->MapIds();
  ASSERT_TRUE(maps_after.ok());
  EXPECT_EQ(*maps_after, *maps_before) << "the same kernel maps, not copies";

  // The filter now runs the new program: it was replaced in place, not removed and re-added.
  auto prog_after = dp_->ProgramId(Program::kFromWorkload);
  ASSERT_TRUE(prog_after.ok());
  EXPECT_NE(*prog_after, *prog_before);
  EXPECT_EQ(AttachedProgram(if_a_, TcDirection::kIngress), *prog_after);
  auto to_after = dp_->ProgramId(Program::kToWorkload);
  ASSERT_TRUE(to_after.ok());
  EXPECT_EQ(AttachedProgram(if_a_, TcDirection::kEgress), *to_after);

  // State survived: endpoints, policy, and the established flow (the reply passes on
  // conntrack; A's ingress policy alone would deny it).
  auto eps = dp_->ListEndpoints();
  ASSERT_TRUE(eps.ok());
  EXPECT_EQ(eps->size(), 2u);
  EXPECT_EQ(Conntrack().size(), 1u);
  EXPECT_EQ(ToA(Tcp(kB, 80, kA, 40000, kSyn | kAck)), OK);
  EXPECT_EQ(FromA(Tcp(kA, 40001, kB, 22, kSyn)), SHOT);
  auto attached = dp_->ListAttached();
  ASSERT_TRUE(attached.ok());
  EXPECT_EQ(*attached, std::vector<uint32_t>{if_a_});
}

TEST_F(DatapathTest, AdoptionKeepsThePinnedSizes) {
  const uint32_t created = options_.sizes.conntrack;
  dp_.reset();
  auto pinned = BpfDatapath::PinnedSizes(options_.pin_root);
  ASSERT_TRUE(pinned.ok()) << pinned.status();
  ASSERT_TRUE(pinned->has_value());
  EXPECT_EQ((*pinned)->conntrack, created);
  EXPECT_EQ((*pinned)->policy_peers, options_.sizes.policy_peers);
  // Other sizes asked for: the pinned maps are adopted as they are, and say so.
  options_.sizes.conntrack = created * 2;
  options_.sizes.policy_peers = options_.sizes.policy_peers * 2;
  auto reopened = OpenDatapath();
  ASSERT_TRUE(reopened.ok()) << reopened.status();
  dp_ = std::move(*reopened);
  EXPECT_TRUE(dp_->adopted());
  EXPECT_EQ(dp_->sizes().conntrack, created);
  EXPECT_EQ(dp_->sizes().policy_peers, options_.sizes.policy_peers / 2);
  for (const auto& u : dp_->MapUsages()) {
    if (u.name == "policy_peers") {
      EXPECT_EQ(u.capacity, options_.sizes.policy_peers / 2);
    }
  }
  // Nothing pinned: nothing to adopt.
  auto none = BpfDatapath::PinnedSizes(options_.pin_root + "/nothing-here");
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none->has_value());
}

TEST_F(DatapathTest, AdoptionReadsWhatThePinnedMapsHold) {
  // Tables, ipcache and addresses written by one instance are known to the next: listing,
  // counting and deleting them needs no key walk after the open. (The fixture has written
  // tables of its own.)
  auto usage = [&] {
    std::map<std::string, uint64_t> used;
    for (const auto& u : dp_->MapUsages()) used[u.name] = u.entries;
    return used;
  };
  auto tables_before = dp_->ListPolicyTables();
  ASSERT_TRUE(tables_before.ok());
  auto before = usage();
  datapath::PolicyTables t;
  t.peers = {PeerEntry(7, 1001, BULKHEAD_DIR_EGRESS, 1),
             PeerEntry(8, 1001, BULKHEAD_DIR_EGRESS, 1)};
  t.ports = {PortEntry(7, 1, BULKHEAD_DIR_EGRESS, kTcp, 80, 16, Allow(1))};
  ASSERT_TRUE(dp_->WritePolicyTables(t).ok());
  ASSERT_TRUE(dp_->UpsertIpcache({IpcacheEntry("10.99.0.0", 16, 400)}).ok());
  dp_.reset();
  auto reopened = OpenDatapath();
  ASSERT_TRUE(reopened.ok()) << reopened.status();
  dp_ = std::move(*reopened);
  auto ids = dp_->ListPolicyTables();
  ASSERT_TRUE(ids.ok());
  std::vector<uint32_t> want = *tables_before;
  want.push_back(7);
  want.push_back(8);
  std::sort(want.begin(), want.end());
  EXPECT_EQ(*ids, want);
  auto after = usage();
  EXPECT_EQ(after["policy_peers"], before["policy_peers"] + 2);
  EXPECT_EQ(after["policy_ports"], before["policy_ports"] + 1);
  EXPECT_EQ(after["ipcache"], before["ipcache"] + 1);
  EXPECT_EQ(after["endpoints"], before["endpoints"]);
  EXPECT_EQ(after["endpoint_addresses"], before["endpoint_addresses"]);
  ASSERT_TRUE(dp_->DeletePolicyTables({7, 8}).ok());
  ids = dp_->ListPolicyTables();
  ASSERT_TRUE(ids.ok());
  EXPECT_EQ(*ids, *tables_before);
  after = usage();
  EXPECT_EQ(after["policy_peers"], before["policy_peers"]);
  EXPECT_EQ(after["policy_ports"], before["policy_ports"]);
}

TEST_F(DatapathTest, AdoptionDropsInterfacesThatVanished) {
  auto idx = Veth("bh-gone");
  ASSERT_TRUE(idx.ok());
  ASSERT_TRUE(dp_->Attach(*idx).ok());
  dp_.reset();
  ASSERT_TRUE(Shell("ip link del bh-gone").ok());
  auto reopened = OpenDatapath();
  ASSERT_TRUE(reopened.ok()) << reopened.status();
  dp_ = std::move(*reopened);
  auto attached = dp_->ListAttached();
  ASSERT_TRUE(attached.ok());
  EXPECT_TRUE(attached->empty());
}

TEST_F(DatapathTest, AttachAndDetachCleanUpTheQdiscTheyMade) {
  ASSERT_FALSE(HasClsact("bh-b"));
  absl::Status s = dp_->Attach(if_b_);
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_TRUE(HasClsact("bh-b"));
  EXPECT_NE(AttachedProgram(if_b_, TcDirection::kIngress), 0u);
  EXPECT_NE(AttachedProgram(if_b_, TcDirection::kEgress), 0u);
  ASSERT_TRUE(dp_->Attach(if_b_).ok()) << "attach is idempotent";
  s = dp_->Detach(if_b_);
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_EQ(AttachedProgram(if_b_, TcDirection::kIngress), 0u);
  EXPECT_FALSE(HasClsact("bh-b"));

  // A clsact qdisc someone else made stays when we leave.
  ASSERT_TRUE(Shell("tc qdisc add dev bh-c clsact").ok());
  ASSERT_TRUE(dp_->Attach(if_c_).ok());
  ASSERT_TRUE(dp_->Detach(if_c_).ok());
  EXPECT_EQ(AttachedProgram(if_c_, TcDirection::kIngress), 0u);
  EXPECT_TRUE(HasClsact("bh-c"));
  ASSERT_TRUE(Shell("tc qdisc del dev bh-c clsact").ok());
}

TEST_F(DatapathTest, TcHookOwnerDetachesOnDestruction) {
  int from = dp_->program_fd(Program::kFromWorkload);
  int to = dp_->program_fd(Program::kToWorkload);
  {
    auto hook = TcHook::Attach(if_c_, from, to);
    ASSERT_TRUE(hook.ok()) << hook.status();
    EXPECT_TRUE(hook->created_qdisc());
    EXPECT_TRUE(HasClsact("bh-c"));
    EXPECT_NE(AttachedProgram(if_c_, TcDirection::kIngress), 0u);
    TcHook moved = std::move(*hook);  // ownership moves; the moved-from owner does nothing
    EXPECT_NE(AttachedProgram(if_c_, TcDirection::kEgress), 0u);
  }
  EXPECT_EQ(AttachedProgram(if_c_, TcDirection::kIngress), 0u);
  EXPECT_EQ(AttachedProgram(if_c_, TcDirection::kEgress), 0u);
  EXPECT_FALSE(HasClsact("bh-c"));
  {
    auto hook = TcHook::Attach(if_c_, from, to);
    ASSERT_TRUE(hook.ok()) << hook.status();
    hook->Release();
  }
  EXPECT_NE(AttachedProgram(if_c_, TcDirection::kIngress), 0u) << "released: left in place";
  ASSERT_TRUE(TcHook::DetachPersistent(if_c_, true).ok());
  EXPECT_FALSE(HasClsact("bh-c"));
}

TEST_F(DatapathTest, TeardownRemovesFiltersAndPins) {
  ASSERT_TRUE(dp_->Attach(if_a_).ok());
  ASSERT_TRUE(dp_->Attach(if_b_).ok());
  absl::Status s = dp_->Teardown();
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_EQ(AttachedProgram(if_a_, TcDirection::kIngress), 0u);
  EXPECT_EQ(AttachedProgram(if_b_, TcDirection::kEgress), 0u);
  EXPECT_FALSE(HasClsact("bh-a"));
  EXPECT_FALSE(std::filesystem::exists(pin_root_));
  dp_.reset();
}

TEST_F(DatapathTest, LostEventsAreCounted) {
  dp_->Teardown().IgnoreError();
  dp_.reset();
  options_.sizes.events_bytes = 4096;  // one page: room for a few dozen events
  auto dp = OpenDatapath();
  ASSERT_TRUE(dp.ok()) << dp.status();
  dp_ = std::move(*dp);
  InstallScene();

  constexpr int kPackets = 200;
  for (int i = 0; i < kPackets; i++)
    ASSERT_EQ(FromA(Tcp(kA, static_cast<uint16_t>(30000 + i), kB, 22, kSyn)), SHOT);
  uint64_t sent = Counter(BH_CTR_EVENTS_SENT);
  uint64_t lost = Counter(BH_CTR_EVENTS_LOST);
  EXPECT_GT(lost, 0u);
  EXPECT_GT(sent, 0u);
  EXPECT_EQ(sent + lost, static_cast<uint64_t>(kPackets)) << "every event is sent or counted";
  EXPECT_EQ(Events().size(), sent) << "what was sent can be read";
  EXPECT_EQ(Counter(BH_CTR_DROP_POLICY), static_cast<uint64_t>(kPackets));
  // With room again, events flow again.
  ASSERT_EQ(FromA(Tcp(kA, 29999, kB, 22, kSyn)), SHOT);
  EXPECT_EQ(Events().size(), 1u);
}

TEST_F(DatapathTest, DeleteEndpointRemovesItsStateOnly) {
  ASSERT_EQ(FromA(Tcp(kA, 40000, kB, 80, kSyn)), OK);
  ASSERT_EQ(FromB(Tcp(kB, 40000, kA, 443, kSyn)), OK);
  Packet frag = Udp(kA, 5000, kB, 53);
  frag.fragment = true;
  frag.more_fragments = true;
  frag.frag_id = 1;
  ASSERT_EQ(FromA(frag), OK);
  ASSERT_EQ(Conntrack().size(), 3u);
  absl::Status s = dp_->DeleteEndpoint(if_a_);
  ASSERT_TRUE(s.ok()) << s;
  auto ct = Conntrack();
  ASSERT_EQ(ct.size(), 1u);
  EXPECT_EQ(ct[0].first.ifindex, if_b_);
  auto eps = dp_->ListEndpoints();
  ASSERT_TRUE(eps.ok());
  ASSERT_EQ(eps->size(), 1u);
  EXPECT_EQ((*eps)[0].ifindex, if_b_);
  // A's interface now has no endpoint: its packets are dropped (fail closed).
  EXPECT_EQ(FromA(Tcp(kA, 40000, kB, 80, kAck)), SHOT);
  frag.frag_offset = 3;
  EXPECT_EQ(FromA(frag), SHOT);
  EXPECT_TRUE(dp_->DeleteEndpoint(if_a_).ok()) << "deleting twice is fine";
}

TEST_F(DatapathTest, PolicyTablesAreListedAndProtectedWhileInUse) {
  auto tables = dp_->ListPolicyTables();
  ASSERT_TRUE(tables.ok());
  EXPECT_EQ(*tables, (std::vector<uint32_t>{kTableA, kTableB}));
  absl::Status s = dp_->DeletePolicyTables({kTableB});
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
  EXPECT_NE(s.message().find("still uses"), std::string::npos);
  ASSERT_TRUE(dp_->WritePolicyTables(TableB(50)).ok());
  ASSERT_TRUE(dp_->SwitchPolicy(if_b_, 50, 2).ok());
  ASSERT_TRUE(dp_->DeletePolicyTables({kTableB}).ok());
  tables = dp_->ListPolicyTables();
  ASSERT_TRUE(tables.ok());
  EXPECT_EQ(*tables, (std::vector<uint32_t>{kTableA, 50}));
  EXPECT_EQ(dp_->SwitchPolicy(if_c_, 50, 1).code(), absl::StatusCode::kNotFound);
}

TEST_F(DatapathTest, InvalidEntriesAreRejectedWithContext) {
  auto bad_ip = IpcacheEntry(kA, 33, kIdA);  // /33 on IPv4
  absl::Status s = dp_->UpsertIpcache({bad_ip});
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("prefixlen"), std::string::npos) << s;

  datapath::PolicyTables t;
  PortVerdict weird = Allow(1);
  weird.verdict = 7;
  t.ports = {PortEntry(60, 0, BULKHEAD_DIR_EGRESS, kTcp, 0, 0, weird)};
  s = dp_->WritePolicyTables(t);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("table 60"), std::string::npos) << s;
  t.ports = {PortEntry(BULKHEAD_TABLE_NONE, 0, BULKHEAD_DIR_EGRESS, kTcp, 0, 0, Allow(1))};
  EXPECT_EQ(dp_->WritePolicyTables(t).code(), absl::StatusCode::kInvalidArgument);

  datapath::Endpoint e = EndpointA();
  e.addresses[0].family = 5;
  EXPECT_EQ(dp_->UpsertEndpoint(e).code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(DatapathTest, PinRootMustBeOnBpffs) {
  datapath::DatapathOptions o = options_;
  o.pin_root = "/tmp/bulkhead-not-bpffs/x";
  auto dp = BpfDatapath::Open(o);
  ASSERT_FALSE(dp.ok());
  EXPECT_EQ(dp.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(dp.status().message().find("bpffs"), std::string::npos) << dp.status();
  EXPECT_FALSE(std::filesystem::exists("/tmp/bulkhead-not-bpffs"));
}

}  // namespace
}  // namespace bulkhead::bpftest
