// Processes and probes: RunCaptured and Spawn errors, stopping a process, and the workload
// server answered by the concurrent prober over loopback (connected, wrong peer, refused, and
// silence that times out); SCTP on the server's raw sockets and ICMP echo need root (raw
// sockets) and are skipped without it.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <string>
#include <thread>

#include "lab/netns.h"
#include "lab/probe.h"
#include "lab/process.h"
#include "lab/serve.h"

namespace bulkhead::lab {
namespace {

using std::chrono::milliseconds;

SpawnSpec Shell(const std::string& script) {
  SpawnSpec s;
  s.path = "/bin/sh";
  s.argv = {"/bin/sh", "-c", script};
  s.env = {"PATH=/usr/bin:/bin", "GREETING=hi"};
  return s;
}

TEST(LabProcess, RunCapturedFeedsStdinAndCapturesBothStreams) {
  auto r = RunCaptured(Shell("read line; echo \"$GREETING $line\"; echo err >&2; exit 3"),
                       "there\n", milliseconds(10000));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->exit_code, 3);
  EXPECT_EQ(r->out, "hi there\n");
  EXPECT_EQ(r->err, "err\n");
  // Large input through a pipe: no deadlock while the child also writes.
  std::string big(1 << 20, 'x');
  auto cat = RunCaptured(Shell("cat"), big, milliseconds(10000));
  ASSERT_TRUE(cat.ok());
  EXPECT_EQ(cat->out.size(), big.size());
}

TEST(LabProcess, TimeoutKills) {
  auto r = RunCaptured(Shell("exec sleep 30"), "", milliseconds(200));
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(absl::IsDeadlineExceeded(r.status()));
}

// A process's state letter from /proc ('\0' once it is gone).
char ProcessState(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  size_t close = stat.rfind(')');
  return close == std::string::npos || close + 2 >= stat.size() ? '\0' : stat[close + 2];
}

TEST(LabProcess, TimeoutKillsWhatTheProcessStarted) {
  // The shell forks a sleep that holds the output pipe; the timeout must not leave it.
  const std::string pid_file =
      ::testing::TempDir() + "/bh_lab_grandchild_" + std::to_string(::getpid());
  auto r = RunCaptured(Shell("sleep 30 & echo $! > " + pid_file + "; wait"), "", milliseconds(500));
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(absl::IsDeadlineExceeded(r.status()));
  std::ifstream in(pid_file);
  pid_t grandchild = 0;
  in >> grandchild;
  std::remove(pid_file.c_str());
  ASSERT_GT(grandchild, 0) << "the shell did not write its child's pid";
  // Killed: gone, or a zombie until whoever inherited it reaps it.
  char state = ProcessState(grandchild);
  for (int i = 0; i < 100 && state != '\0' && state != 'Z'; ++i) {
    std::this_thread::sleep_for(milliseconds(20));
    state = ProcessState(grandchild);
  }
  EXPECT_TRUE(state == '\0' || state == 'Z') << "grandchild " << grandchild << " state " << state;
  if (state != '\0' && state != 'Z') ::kill(grandchild, SIGKILL);
}

TEST(LabProcess, ExecFailureIsAnError) {
  SpawnSpec s;
  s.path = "/nonexistent/plugin";
  s.argv = {s.path};
  auto pid = Spawn(s);
  ASSERT_FALSE(pid.ok());
  EXPECT_NE(pid.status().message().find("executing /nonexistent/plugin"), std::string::npos);
}

TEST(LabProcess, RecordAndStop) {
  auto pid = Spawn(Shell("exec sleep 30"));
  ASSERT_TRUE(pid.ok());
  auto rec = RecordProcess(*pid);
  ASSERT_TRUE(rec.has_value());
  EXPECT_TRUE(IsRunning(*rec));
  // A record whose start time differs is another process: never "running".
  EXPECT_FALSE(IsRunning(ProcessRecord{rec->pid, rec->start_time + 1}));
  EXPECT_TRUE(StopProcess(*rec, milliseconds(2000)).ok());
  EXPECT_FALSE(IsRunning(*rec));
  EXPECT_TRUE(StopProcess(*rec, milliseconds(10)).ok());  // already gone
  EXPECT_FALSE(IsRunning(ProcessRecord{}));
}

// A free port for both TCP and UDP on 127.0.0.1 (bound and released; good enough for a test).
uint16_t FreePort() {
  for (int attempt = 0; attempt < 20; ++attempt) {
    int t = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    ::bind(t, reinterpret_cast<sockaddr*>(&a), sizeof a);
    ::getsockname(t, reinterpret_cast<sockaddr*>(&a), &len);
    int u = ::socket(AF_INET, SOCK_DGRAM, 0);
    bool ok = ::bind(u, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
    ::close(t);
    ::close(u);
    if (ok) return ntohs(a.sin_port);
  }
  return 0;
}

class ServeProbe : public testing::Test {
 protected:
  void SetUp() override {
    port_ = FreePort();
    ASSERT_NE(port_, 0);
    stop_ = Fd(::eventfd(0, EFD_CLOEXEC));
    int ready[2];
    ASSERT_EQ(::pipe(ready), 0);
    ServeOptions o;
    o.answer = "x/a";
    o.addresses = {*common::IpAddr::Parse("127.0.0.1")};
    o.ports = {{port_, policy::Protocol::kTCP, ""}, {port_, policy::Protocol::kUDP, ""}};
    o.ready_fd = ready[1];
    o.stop_fd = stop_.get();
    server_ = std::thread([o, this] { status_ = Serve(o); });
    char buf[8] = {};
    ASSERT_GT(::read(ready[0], buf, sizeof buf), 0);
    ::close(ready[0]);
    EXPECT_EQ(std::string(buf, 6), "ready\n");
  }
  void TearDown() override {
    uint64_t one = 1;
    EXPECT_EQ(::write(stop_.get(), &one, sizeof one), 8);
    server_.join();
    EXPECT_TRUE(status_.ok()) << status_;
  }
  ProbeSpec Spec(policy::Protocol proto, uint16_t port, const std::string& expect) {
    return ProbeSpec{"", *common::IpAddr::Parse("127.0.0.1"), port, proto, expect};
  }

  uint16_t port_ = 0;
  Fd stop_;
  std::thread server_;
  absl::Status status_;
};

TEST_F(ServeProbe, ConnectedWrongPeerRefusedAndTimeoutTogether) {
  // A TCP listener that never accepts and a UDP socket that never answers: silence, as a
  // policy drop looks to a prober.
  int silent_tcp = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int silent_udp = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  ASSERT_EQ(::bind(silent_tcp, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  ASSERT_EQ(::listen(silent_tcp, 1), 0);
  ::getsockname(silent_tcp, reinterpret_cast<sockaddr*>(&a), &len);
  uint16_t silent = ntohs(a.sin_port);
  ASSERT_EQ(::bind(silent_udp, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  // A port nobody listens on: refused (RST for TCP, port unreachable for UDP).
  uint16_t closed = FreePort();

  std::vector<ProbeSpec> specs = {
      Spec(policy::Protocol::kTCP, port_, "x/a"),  Spec(policy::Protocol::kUDP, port_, "x/a"),
      Spec(policy::Protocol::kTCP, port_, "y/b"),  Spec(policy::Protocol::kUDP, port_, "y/b"),
      Spec(policy::Protocol::kTCP, closed, "x/a"), Spec(policy::Protocol::kUDP, closed, "x/a"),
      Spec(policy::Protocol::kTCP, silent, "x/a"), Spec(policy::Protocol::kUDP, silent, "x/a"),
  };
  // Many concurrent probes to the same server as well.
  for (int i = 0; i < 50; ++i) specs.push_back(Spec(policy::Protocol::kUDP, port_, "x/a"));
  auto r = RunProbes(specs, milliseconds(700));
  ASSERT_TRUE(r.ok()) << r.status();
  auto outcome = [&](size_t i) { return ProbeOutcomeName((*r)[i].outcome); };
  EXPECT_STREQ(outcome(0), "connected");
  EXPECT_STREQ(outcome(1), "connected");
  EXPECT_STREQ(outcome(2), "wrong-peer");
  EXPECT_EQ((*r)[2].detail, "answered by \"x/a\"");
  EXPECT_STREQ(outcome(3), "wrong-peer");
  EXPECT_STREQ(outcome(4), "refused");
  EXPECT_STREQ(outcome(5), "refused");
  EXPECT_STREQ(outcome(6), "timeout");
  EXPECT_EQ((*r)[6].detail, "connected, but no answer within 700 ms");
  EXPECT_STREQ(outcome(7), "timeout");
  for (size_t i = 8; i < specs.size(); ++i) EXPECT_STREQ(outcome(i), "connected") << i;
  EXPECT_TRUE(IsBlocked(ProbeOutcome::kTimeout));
  EXPECT_FALSE(IsBlocked(ProbeOutcome::kWrongPeer));
  ::close(silent_tcp);
  ::close(silent_udp);
}

// SCTP is served on raw sockets (the kernel may have no SCTP stack): an INIT to a served port
// gets INIT-ACK with the workload's answer, to another port ABORT. ICMP echo is answered by
// the kernel. Over 127.0.0.1 and ::1 only.
TEST(LabRawProbe, SctpAndIcmpOverLoopback) {
  if (::geteuid() != 0) {
    GTEST_SKIP() << "SKIPPED: raw SCTP and ICMP sockets need root (CAP_NET_RAW); run as root";
  }
  const auto v4 = *common::IpAddr::Parse("127.0.0.1");
  const auto v6 = *common::IpAddr::Parse("::1");
  const uint16_t served = 5000;
  const uint16_t other = 5001;
  Fd stop(::eventfd(0, EFD_CLOEXEC));
  int ready[2];
  ASSERT_EQ(::pipe(ready), 0);
  ServeOptions o;
  o.answer = "x/a";
  o.addresses = {v4, v6};
  o.ports = {{served, policy::Protocol::kSCTP, "sig"}};
  o.ready_fd = ready[1];
  o.stop_fd = stop.get();
  absl::Status status;
  std::thread server([o, &status] { status = Serve(o); });
  char buf[8] = {};
  ASSERT_GT(::read(ready[0], buf, sizeof buf), 0);
  ::close(ready[0]);
  std::vector<ProbeSpec> specs = {
      {"", v4, served, policy::Protocol::kSCTP, "x/a"},
      {"", v6, served, policy::Protocol::kSCTP, "x/a"},
      {"", v4, served, policy::Protocol::kSCTP, "y/b"},
      {"", v4, other, policy::Protocol::kSCTP, "x/a"},
      {"", v6, other, policy::Protocol::kSCTP, "x/a"},
      {"", v4, 0, policy::Protocol::kICMP, "x/a"},
      {"", v6, 0, policy::Protocol::kICMPv6, "x/a"},
  };
  for (int i = 0; i < 20; ++i) specs.push_back({"", v6, served, policy::Protocol::kSCTP, "x/a"});
  auto r = RunProbes(specs, milliseconds(2000));
  uint64_t one = 1;
  EXPECT_EQ(::write(stop.get(), &one, sizeof one), 8);
  server.join();
  EXPECT_TRUE(status.ok()) << status;
  ASSERT_TRUE(r.ok()) << r.status();
  auto outcome = [&](size_t i) { return ProbeOutcomeName((*r)[i].outcome); };
  EXPECT_STREQ(outcome(0), "connected") << (*r)[0].detail;
  EXPECT_STREQ(outcome(1), "connected") << (*r)[1].detail;
  EXPECT_STREQ(outcome(2), "wrong-peer");
  EXPECT_EQ((*r)[2].detail, "answered by \"x/a\"");
  EXPECT_STREQ(outcome(3), "refused");
  if (!KernelHasSctp()) {
    EXPECT_EQ((*r)[3].detail, "ABORT: nothing serves SCTP on that port");
  }
  EXPECT_STREQ(outcome(4), "refused");
  EXPECT_STREQ(outcome(5), "connected") << (*r)[5].detail;
  EXPECT_STREQ(outcome(6), "connected") << (*r)[6].detail;
  for (size_t i = 7; i < specs.size(); ++i) EXPECT_STREQ(outcome(i), "connected") << i;
}

TEST(LabProbe, MissingNamespaceIsAnErrorNotABlock) {
  auto r = RunProbes({ProbeSpec{"/nonexistent/netns", *common::IpAddr::Parse("127.0.0.1"), 9,
                                policy::Protocol::kTCP, "x/a"}},
                     milliseconds(100));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ((*r)[0].outcome, ProbeOutcome::kError);
  EXPECT_NE((*r)[0].detail.find("/nonexistent/netns"), std::string::npos);
}

}  // namespace
}  // namespace bulkhead::lab
