// Concurrent probes: sockets are created inside their source netns on a helper thread (a
// socket keeps the namespace it was made in), then driven together on one epoll. SCTP and
// ICMP go over raw sockets (see raw_packets.h): an SCTP INIT answered by INIT-ACK, an ICMP
// echo request answered by the kernel's echo reply.
#include "lab/probe.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sched.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <map>
#include <random>
#include <thread>

#include "absl/strings/str_cat.h"
#include "lab/netns.h"
#include "lab/raw_packets.h"
#include "lab/serve.h"

namespace bulkhead::lab {
namespace {

using Clock = std::chrono::steady_clock;
constexpr auto kUdpResend = std::chrono::milliseconds(200);
constexpr size_t kMaxAnswer = 4096;

ProbeOutcome FromErrno(int err) {
  switch (err) {
    case ECONNREFUSED:
      return ProbeOutcome::kRefused;
    case ECONNRESET:
    case EPIPE:
      return ProbeOutcome::kReset;
    case ENETUNREACH:
    case EHOSTUNREACH:
    case ENETDOWN:
    case EHOSTDOWN:
    case EADDRNOTAVAIL:
      return ProbeOutcome::kUnreachable;
    case ETIMEDOUT:
      return ProbeOutcome::kTimeout;
    default:
      return ProbeOutcome::kError;
  }
}

enum class Kind { kTcp, kUdp, kSctp, kIcmp };

Kind KindOf(policy::Protocol p) {
  switch (p) {
    case policy::Protocol::kUDP:
      return Kind::kUdp;
    case policy::Protocol::kSCTP:
      return Kind::kSctp;
    case policy::Protocol::kICMP:
    case policy::Protocol::kICMPv6:
      return Kind::kIcmp;
    default:
      return Kind::kTcp;
  }
}

struct Live {
  Fd fd;
  std::string error;  // set when the socket could not be made
  Kind kind = Kind::kTcp;
  bool tcp = true;  // kind == kTcp: a stream; everything else is resent until answered
  bool v6 = false;
  uint16_t src_port = 0;  // SCTP: the port our INIT comes from (a raw socket has none)
  uint32_t tag = 0;       // SCTP: our initiate tag, the verification tag of the answer
  uint16_t icmp_id = 0;   // ICMP: echo identifier (unique in the batch)
  bool connected = false;
  bool done = false;
  std::string answer;
  Clock::time_point start;
  Clock::time_point next_send;
};

// Opens one socket per probe, each in its source namespace.
void OpenSockets(const std::vector<ProbeSpec>& probes, size_t begin, size_t end,
                 std::vector<Live>& live) {
  std::thread t([&] {
    // The namespace this thread started in stands for "our own" (an empty source_netns).
    auto own = OpenNetns("/proc/thread-self/ns/net");
    std::string current;
    for (size_t i = begin; i < end; ++i) {
      const ProbeSpec& p = probes[i];
      Live& l = live[i - begin];
      l.kind = KindOf(p.protocol);
      // A kernel with an SCTP stack answers INITs itself: then SCTP is a stream like TCP.
      const bool real_sctp = l.kind == Kind::kSctp && KernelHasSctp();
      if (real_sctp) l.kind = Kind::kTcp;
      l.tcp = l.kind == Kind::kTcp;
      l.v6 = p.dst.v6;
      if (p.source_netns != current) {
        absl::StatusOr<Fd> ns =
            p.source_netns.empty()
                ? (own.ok() ? absl::StatusOr<Fd>(Fd(::dup(own->get()))) : own.status())
                : OpenNetns(p.source_netns);
        if (!ns.ok() || !ns->valid()) {
          l.error = ns.ok() ? absl::StrCat("dup: ", std::strerror(errno))
                            : std::string(ns.status().message());
          continue;
        }
        if (::setns(ns->get(), CLONE_NEWNET) != 0) {
          l.error =
              absl::StrCat("entering ", p.source_netns.empty() ? "our own netns" : p.source_netns,
                           ": ", std::strerror(errno));
          current.assign(1, '\n');  // unknown: enter again next time
          continue;
        }
        current = p.source_netns;
      }
      int type = l.kind == Kind::kTcp ? SOCK_STREAM : l.kind == Kind::kUdp ? SOCK_DGRAM : SOCK_RAW;
      int proto = 0;
      if (l.kind == Kind::kSctp || real_sctp) proto = IPPROTO_SCTP;
      if (l.kind == Kind::kIcmp) proto = p.dst.v6 ? int{IPPROTO_ICMPV6} : int{IPPROTO_ICMP};
      int fd = ::socket(p.dst.v6 ? AF_INET6 : AF_INET, type | SOCK_NONBLOCK | SOCK_CLOEXEC, proto);
      if (fd < 0) {
        l.error = absl::StrCat("socket: ", std::strerror(errno));
        continue;
      }
      l.fd = Fd(fd);
    }
  });
  t.join();
}

void Finish(Live& l, ProbeResult& r, ProbeOutcome o, std::string detail) {
  l.done = true;
  r.outcome = o;
  r.detail = std::move(detail);
  r.millis = std::chrono::duration<double, std::milli>(Clock::now() - l.start).count();
  l.fd = Fd();
}

// An answer line decides the probe: the right id, or someone else.
bool Judge(Live& l, ProbeResult& r, const ProbeSpec& p, bool eof) {
  size_t nl = l.answer.find('\n');
  if (nl == std::string::npos && !eof) return false;
  std::string line = l.answer.substr(0, nl);
  if (line == p.expect) {
    Finish(l, r, ProbeOutcome::kConnected, "");
  } else if (line.empty()) {
    Finish(l, r, ProbeOutcome::kReset, "closed without an answer");
  } else {
    Finish(l, r, ProbeOutcome::kWrongPeer, "answered by \"" + line + "\"");
  }
  return true;
}

// A UDP datagram, an SCTP INIT or an ICMP echo request; sent again until answered.
void SendDatagram(Live& l, const ProbeSpec& p) {
  static constexpr char kProbe[] = "probe\n";
  if (l.kind == Kind::kSctp) {
    auto init = SctpInit(l.src_port, p.port, l.tag);
    ::send(l.fd.get(), init.data(), init.size(), MSG_NOSIGNAL);
  } else if (l.kind == Kind::kIcmp) {
    auto echo = IcmpEcho(l.v6, l.icmp_id, 1, "bulkhead lab probe");
    ::send(l.fd.get(), echo.data(), echo.size(), MSG_NOSIGNAL);
  } else {
    ::send(l.fd.get(), kProbe, sizeof kProbe - 1, MSG_NOSIGNAL);
  }
  l.next_send = Clock::now() + kUdpResend;
}

// One packet read from a raw socket (connected to the destination, so it came from there):
// whether it decides the probe.
void ReadRaw(Live& l, ProbeResult& r, const ProbeSpec& p, const uint8_t* buf, size_t size) {
  const uint8_t* data = buf;
  if (!l.v6) data = SkipIpv4Header(buf, size, &size);  // raw IPv4 reads include the header
  if (data == nullptr) return;
  if (l.kind == Kind::kIcmp) {
    // The kernel of the destination answers; only its address (the socket is connected to
    // it) says who answered.
    if (IsEchoReply(l.v6, data, size, l.icmp_id, 1)) Finish(l, r, ProbeOutcome::kConnected, "");
    return;
  }
  auto sctp = ParseSctp(data, size);
  if (!sctp || sctp->src_port != p.port || sctp->dst_port != l.src_port || sctp->vtag != l.tag) {
    return;  // another probe's, or not SCTP we can read
  }
  if (sctp->chunk == kSctpAbort) {
    Finish(l, r, ProbeOutcome::kRefused, "ABORT: nothing serves SCTP on that port");
  } else if (sctp->chunk == kSctpInitAck) {
    // Close the half-open association (the datapath drops its conntrack entry on ABORT).
    auto abort = SctpAbort(l.src_port, p.port, sctp->initiate_tag);
    ::send(l.fd.get(), abort.data(), abort.size(), MSG_NOSIGNAL);
    l.answer = sctp->cookie;
    Judge(l, r, p, /*eof=*/true);
  }
}

absl::Status RunBatch(const std::vector<ProbeSpec>& probes, size_t begin, size_t end,
                      std::chrono::milliseconds timeout, std::vector<ProbeResult>& results) {
  std::vector<Live> live(end - begin);
  OpenSockets(probes, begin, end, live);
  // Source ports, tags and echo ids that other probes and earlier runs are unlikely to use.
  std::mt19937 rng(std::random_device{}());
  const auto icmp_base = static_cast<uint16_t>(rng());
  for (size_t k = 0; k < live.size(); ++k) {
    live[k].src_port = static_cast<uint16_t>(32768 + rng() % 28232);
    while (live[k].tag == 0) live[k].tag = rng();
    live[k].icmp_id = static_cast<uint16_t>(icmp_base + k);
  }
  int ep = ::epoll_create1(EPOLL_CLOEXEC);
  if (ep < 0) return absl::InternalError(absl::StrCat("epoll: ", std::strerror(errno)));
  Fd epoll_fd(ep);
  size_t pending = 0;
  for (size_t k = 0; k < live.size(); ++k) {
    Live& l = live[k];
    const ProbeSpec& p = probes[begin + k];
    ProbeResult& r = results[begin + k];
    l.start = Clock::now();
    if (!l.fd.valid()) {
      Finish(l, r, ProbeOutcome::kError, l.error);
      continue;
    }
    sockaddr_storage ss;
    // A raw socket's port field must be 0 (or name its protocol).
    socklen_t len = FillAddr(p.dst, l.kind == Kind::kTcp || l.kind == Kind::kUdp ? p.port : 0, &ss);
    int rc = ::connect(l.fd.get(), reinterpret_cast<sockaddr*>(&ss), len);
    if (rc != 0 && errno != EINPROGRESS) {
      int err = errno;
      Finish(l, r, FromErrno(err), std::strerror(err));
      continue;
    }
    epoll_event ev{};
    ev.data.u64 = k;
    if (l.tcp) {
      l.connected = rc == 0;
      ev.events = l.connected ? EPOLLIN | EPOLLRDHUP : EPOLLOUT;
    } else {
      SendDatagram(l, p);
      ev.events = EPOLLIN;
    }
    if (::epoll_ctl(ep, EPOLL_CTL_ADD, l.fd.get(), &ev) != 0) {
      Finish(l, r, ProbeOutcome::kError, absl::StrCat("epoll_ctl: ", std::strerror(errno)));
      continue;
    }
    ++pending;
  }
  auto deadline = Clock::now() + timeout;
  std::vector<epoll_event> events(256);
  while (pending > 0) {
    auto now = Clock::now();
    if (now >= deadline) break;
    auto wake = deadline;
    for (const auto& l : live) {
      if (!l.done && !l.tcp) wake = std::min(wake, l.next_send);
    }
    // A resend time already past (the loop lagged on a busy machine) must not become a
    // negative timeout: epoll_wait would then wait forever for answers that never come.
    int wait_ms = std::max<int>(
        0, static_cast<int>(
               std::chrono::duration_cast<std::chrono::milliseconds>(wake - now).count()) +
               1);
    int n = ::epoll_wait(ep, events.data(), static_cast<int>(events.size()), wait_ms);
    if (n < 0 && errno != EINTR) {
      return absl::InternalError(absl::StrCat("epoll_wait: ", std::strerror(errno)));
    }
    for (int e = 0; e < n; ++e) {
      size_t k = events[e].data.u64;
      Live& l = live[k];
      if (l.done) continue;
      const ProbeSpec& p = probes[begin + k];
      ProbeResult& r = results[begin + k];
      uint32_t what = events[e].events;
      if (l.tcp && !l.connected) {
        int err = 0;
        socklen_t elen = sizeof err;
        ::getsockopt(l.fd.get(), SOL_SOCKET, SO_ERROR, &err, &elen);
        if (err != 0) {
          Finish(l, r, FromErrno(err), std::strerror(err));
          --pending;
          continue;
        }
        if ((what & EPOLLOUT) == 0) continue;
        l.connected = true;
        epoll_event ev{};
        ev.data.u64 = k;
        ev.events = EPOLLIN | EPOLLRDHUP;
        ::epoll_ctl(ep, EPOLL_CTL_MOD, l.fd.get(), &ev);
        continue;
      }
      // Readable, hung up or in error: read what is there.
      const bool raw = l.kind == Kind::kSctp || l.kind == Kind::kIcmp;
      while (!l.done && raw) {
        uint8_t buf[2048];
        ssize_t got = ::recv(l.fd.get(), buf, sizeof buf, 0);
        if (got >= 0) {
          ReadRaw(l, r, p, buf, static_cast<size_t>(got));
          continue;
        }
        if (errno == EAGAIN || errno == EINTR) break;
        int err = errno;
        // Protocol unreachable: no raw socket takes SCTP at the destination.
        Finish(l, r, err == ENOPROTOOPT ? ProbeOutcome::kRefused : FromErrno(err),
               std::strerror(err));
      }
      while (!l.done && !raw) {
        char buf[1024];
        ssize_t got = ::recv(l.fd.get(), buf, sizeof buf, 0);
        if (got > 0) {
          l.answer.append(buf, static_cast<size_t>(std::min<size_t>(got, kMaxAnswer)));
          if (!l.tcp) {
            Judge(l, r, p, /*eof=*/true);
          } else {
            Judge(l, r, p, /*eof=*/false);
          }
          continue;
        }
        if (got == 0 && l.tcp) {
          Judge(l, r, p, /*eof=*/true);
          break;
        }
        if (got < 0 && (errno == EAGAIN || errno == EINTR)) break;
        int err = got < 0 ? errno : 0;
        if (got < 0) Finish(l, r, FromErrno(err), std::strerror(err));
        break;
      }
      if (l.done) --pending;
    }
    now = Clock::now();
    for (size_t k = 0; k < live.size(); ++k) {
      Live& l = live[k];
      if (!l.done && !l.tcp && now >= l.next_send) SendDatagram(l, probes[begin + k]);
    }
  }
  for (size_t k = 0; k < live.size(); ++k) {
    Live& l = live[k];
    if (l.done) continue;
    Finish(l, results[begin + k], ProbeOutcome::kTimeout,
           absl::StrCat(l.tcp && l.connected ? "connected, but no answer" : "no answer", " within ",
                        timeout.count(), " ms"));
  }
  return absl::OkStatus();
}

size_t BatchSize() {
  rlimit rl{};
  if (::getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = std::min<rlim_t>(rl.rlim_max, 65536);
    ::setrlimit(RLIMIT_NOFILE, &rl);
    ::getrlimit(RLIMIT_NOFILE, &rl);
  }
  // Room for the fds the process already has (stdio, epoll, netns, ...).
  return rl.rlim_cur > 128 ? static_cast<size_t>(rl.rlim_cur - 64) : 64;
}

}  // namespace

const char* ProbeOutcomeName(ProbeOutcome o) {
  switch (o) {
    case ProbeOutcome::kConnected:
      return "connected";
    case ProbeOutcome::kTimeout:
      return "timeout";
    case ProbeOutcome::kRefused:
      return "refused";
    case ProbeOutcome::kReset:
      return "reset";
    case ProbeOutcome::kUnreachable:
      return "unreachable";
    case ProbeOutcome::kWrongPeer:
      return "wrong-peer";
    case ProbeOutcome::kError:
      return "error";
  }
  return "error";
}

absl::StatusOr<std::vector<ProbeResult>> RunProbes(const std::vector<ProbeSpec>& probes,
                                                   std::chrono::milliseconds timeout) {
  std::vector<ProbeResult> results(probes.size());
  size_t batch = BatchSize();
  for (size_t begin = 0; begin < probes.size(); begin += batch) {
    size_t end = std::min(probes.size(), begin + batch);
    if (auto s = RunBatch(probes, begin, end, timeout, results); !s.ok()) return s;
  }
  return results;
}

}  // namespace bulkhead::lab
