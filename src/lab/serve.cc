// A single-threaded poll loop over the workload's listening TCP and UDP sockets and its raw
// SCTP sockets; every connection, datagram or SCTP INIT gets the workload's id back at once.
#include "lab/serve.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <random>

#include "absl/strings/str_cat.h"
#include "lab/netns.h"
#include "lab/raw_packets.h"

namespace bulkhead::lab {

socklen_t FillAddr(const common::IpAddr& ip, uint16_t port, sockaddr_storage* ss) {
  std::memset(ss, 0, sizeof *ss);
  if (ip.v6) {
    auto* s6 = reinterpret_cast<sockaddr_in6*>(ss);
    s6->sin6_family = AF_INET6;
    s6->sin6_port = htons(port);
    std::memcpy(&s6->sin6_addr, ip.bytes.data(), 16);
    return sizeof(sockaddr_in6);
  }
  auto* s4 = reinterpret_cast<sockaddr_in*>(ss);
  s4->sin_family = AF_INET;
  s4->sin_port = htons(port);
  std::memcpy(&s4->sin_addr, ip.bytes.data(), 4);
  return sizeof(sockaddr_in);
}

bool KernelHasSctp() {
  static const bool has = [] {
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, IPPROTO_SCTP);
    if (fd < 0) return false;
    ::close(fd);
    return true;
  }();
  return has;
}

namespace {

struct Listener {
  Fd fd;
  bool tcp = false;
  bool sctp = false;  // a raw SCTP socket for one address, all its SCTP ports
  bool v6 = false;
  std::vector<uint16_t> ports;  // sctp: the ports that answer INIT-ACK (others: ABORT)
};

// There is no SCTP stack in the kernel to listen with (socket(..., IPPROTO_SCTP) fails with
// EPROTONOSUPPORT where the sctp module is absent), so the server reads SCTP on a raw socket
// bound to the address and emulates the first step of the handshake: an INIT to a served port
// gets an INIT-ACK whose State Cookie is the workload's answer; an INIT to another port gets
// an ABORT, as a real stack answers an INIT nobody listens for. Nothing else is answered. A
// raw socket that takes the packet also keeps the kernel from sending "protocol unreachable".
absl::StatusOr<Listener> ListenSctp(const common::IpAddr& ip, std::vector<uint16_t> ports) {
  std::string what = absl::StrCat(ip.v6 ? "[" : "", ip.ToString(), ip.v6 ? "]" : "", "/SCTP (raw)");
  int fd =
      ::socket(ip.v6 ? AF_INET6 : AF_INET, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_SCTP);
  if (fd < 0)
    return absl::InternalError(absl::StrCat("socket for ", what, ": ", std::strerror(errno)));
  Listener l{Fd(fd), false, true, ip.v6, std::move(ports)};
  sockaddr_storage ss;
  socklen_t len = FillAddr(ip, 0, &ss);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&ss), len) != 0) {
    return absl::InternalError(absl::StrCat("bind ", what, ": ", std::strerror(errno)));
  }
  return l;
}

void AnswerSctp(const Listener& l, const std::string& answer, std::mt19937& rng) {
  while (true) {
    uint8_t buf[2048];
    sockaddr_storage from;
    socklen_t len = sizeof from;
    ssize_t got =
        ::recvfrom(l.fd.get(), buf, sizeof buf, 0, reinterpret_cast<sockaddr*>(&from), &len);
    if (got <= 0) return;
    size_t size = static_cast<size_t>(got);
    const uint8_t* data = buf;
    if (!l.v6) data = SkipIpv4Header(buf, size, &size);  // raw IPv4 reads include the header
    if (data == nullptr) continue;
    auto p = ParseSctp(data, size);
    if (!p || p->chunk != kSctpInit || p->vtag != 0 || p->initiate_tag == 0) continue;
    bool served = std::find(l.ports.begin(), l.ports.end(), p->dst_port) != l.ports.end();
    uint32_t own_tag = 0;
    while (own_tag == 0) own_tag = rng();
    std::vector<uint8_t> reply =
        served ? SctpInitAck(p->dst_port, p->src_port, p->initiate_tag, own_tag, answer)
               : SctpAbort(p->dst_port, p->src_port, p->initiate_tag);
    // The port field of a raw socket's address must not name another protocol: zero it.
    if (l.v6) {
      reinterpret_cast<sockaddr_in6*>(&from)->sin6_port = 0;
    } else {
      reinterpret_cast<sockaddr_in*>(&from)->sin_port = 0;
    }
    ::sendto(l.fd.get(), reply.data(), reply.size(), MSG_NOSIGNAL,
             reinterpret_cast<sockaddr*>(&from), len);
  }
}

// TCP, UDP, or SCTP on a kernel with an SCTP stack (a one-to-one socket: served as TCP is).
absl::StatusOr<Listener> Listen(const common::IpAddr& ip, const LabPort& p) {
  bool sctp = p.protocol == policy::Protocol::kSCTP;
  bool tcp = p.protocol == policy::Protocol::kTCP || sctp;
  std::string what = absl::StrCat(ip.v6 ? "[" : "", ip.ToString(), ip.v6 ? "]" : "", ":", p.port,
                                  "/", policy::ProtocolName(p.protocol));
  int fd = ::socket(ip.v6 ? AF_INET6 : AF_INET,
                    (tcp ? SOCK_STREAM : SOCK_DGRAM) | SOCK_NONBLOCK | SOCK_CLOEXEC,
                    sctp ? IPPROTO_SCTP : 0);
  if (fd < 0)
    return absl::InternalError(absl::StrCat("socket for ", what, ": ", std::strerror(errno)));
  Listener l;
  l.fd = Fd(fd);
  l.tcp = tcp;
  int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (ip.v6) ::setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
  sockaddr_storage ss;
  socklen_t len = FillAddr(ip, p.port, &ss);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&ss), len) != 0) {
    return absl::InternalError(absl::StrCat("bind ", what, ": ", std::strerror(errno)));
  }
  if (tcp && ::listen(fd, 1024) != 0) {
    return absl::InternalError(absl::StrCat("listen ", what, ": ", std::strerror(errno)));
  }
  return l;
}

}  // namespace

std::string ServerAnswer(const std::string& workload_id) { return workload_id + "\n"; }

absl::Status Serve(const ServeOptions& options) {
  std::vector<Listener> listeners;
  for (const auto& ip : options.addresses) {
    std::vector<uint16_t> sctp;
    for (const auto& p : options.ports) {
      if (p.protocol == policy::Protocol::kSCTP && !KernelHasSctp()) {
        sctp.push_back(p.port);
        continue;
      }
      auto l = Listen(ip, p);
      if (!l.ok()) return l.status();
      listeners.push_back(std::move(*l));
    }
    if (!sctp.empty()) {
      auto l = ListenSctp(ip, std::move(sctp));
      if (!l.ok()) return l.status();
      listeners.push_back(std::move(*l));
    }
  }
  std::mt19937 rng(std::random_device{}());
  if (options.ready_fd >= 0) {
    const char ready[] = "ready\n";
    ssize_t n = ::write(options.ready_fd, ready, sizeof ready - 1);
    (void)n;
    ::close(options.ready_fd);
  }
  std::string answer = ServerAnswer(options.answer);
  std::vector<pollfd> fds;
  fds.reserve(listeners.size() + 1);
  for (const auto& l : listeners) fds.push_back({l.fd.get(), POLLIN, 0});
  if (options.stop_fd >= 0) fds.push_back({options.stop_fd, POLLIN, 0});
  while (true) {
    int r = ::poll(fds.data(), fds.size(), -1);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return absl::InternalError(absl::StrCat("poll: ", std::strerror(errno)));
    for (size_t i = 0; i < fds.size(); ++i) {
      if (fds[i].revents == 0) continue;
      if (i == listeners.size()) return absl::OkStatus();  // stop_fd
      int fd = fds[i].fd;
      if (listeners[i].sctp) {
        AnswerSctp(listeners[i], answer, rng);
      } else if (listeners[i].tcp) {
        while (true) {
          int c = ::accept4(fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
          if (c < 0) break;
          // One small write always fits a fresh socket's buffer; close sends FIN after it.
          ssize_t n = ::send(c, answer.data(), answer.size(), MSG_NOSIGNAL);
          (void)n;
          ::close(c);
        }
      } else {
        while (true) {
          char buf[2048];
          sockaddr_storage from;
          socklen_t len = sizeof from;
          ssize_t got =
              ::recvfrom(fd, buf, sizeof buf, 0, reinterpret_cast<sockaddr*>(&from), &len);
          if (got < 0) break;
          ::sendto(fd, answer.data(), answer.size(), MSG_NOSIGNAL,
                   reinterpret_cast<sockaddr*>(&from), len);
        }
      }
    }
  }
}

}  // namespace bulkhead::lab
