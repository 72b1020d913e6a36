// Load generator of the datapath traffic benchmark (bench/datapath/run.sh): a TCP server, and
// clients for the new-connection rate, UDP packets per second, request/response latency and bulk
// TCP throughput; each client prints one JSON line with its figure and the CPU time that the whole
// machine, the agent and our own processes spent over the measured window.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include "CLI/CLI.hpp"

namespace bulkhead::bench {
namespace {

using Clock = std::chrono::steady_clock;

// The first byte a client sends on a TCP connection says what it wants from the server.
constexpr char kModeConnect = 'C';  // one byte back, then the server closes
constexpr char kModeEcho = 'R';     // every byte echoed
constexpr char kModeStream = 'S';   // bytes counted; at EOF the count (8 bytes) comes back

[[noreturn]] void Die(const std::string& what) {
  std::fprintf(stderr, "loadgen: %s: %s\n", what.c_str(), std::strerror(errno));
  std::exit(2);
}

double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

// Owns one file descriptor.
class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() { Reset(); }
  Fd(Fd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  Fd& operator=(Fd&& other) noexcept {
    if (this != &other) {
      Reset();
      fd_ = std::exchange(other.fd_, -1);
    }
    return *this;
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }
  void Reset() {
    if (fd_ >= 0) close(fd_);
    fd_ = -1;
  }

 private:
  int fd_ = -1;
};

// ---- CPU accounting ----

// Which processes' CPU time a client reports besides the machine's: the agent's (the cost of
// the system under test), and our own (this process, the server, the UDP sink, ksoftirqd), whose
// system time holds the packet path that ran in their context, without other users' noise.
struct Watch {
  std::vector<int> agent;
  std::vector<int> own;
};

// /proc/stat's aggregate "cpu" line and the user/system ticks of watched processes.
struct CpuSnapshot {
  uint64_t user = 0, nice = 0, system = 0, idle = 0, iowait = 0, irq = 0, softirq = 0, steal = 0;
  std::vector<std::pair<uint64_t, uint64_t>> agent, own;  // utime, stime of each pid
};

std::pair<uint64_t, uint64_t> ProcTicks(int pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(in, line)) return {0, 0};  // gone: counts nothing
  // The command name (field 2) may hold spaces; fields after its closing parenthesis are
  // plain. utime and stime are fields 14 and 15 (the state is field 3). For a process they
  // include its threads, also those that have ended.
  std::istringstream rest(line.substr(line.rfind(')') + 2));
  std::string field;
  uint64_t utime = 0, stime = 0;
  for (int i = 3; i <= 15 && rest >> field; ++i) {
    if (i == 14) utime = std::stoull(field);
    if (i == 15) stime = std::stoull(field);
  }
  return {utime, stime};
}

CpuSnapshot TakeCpu(const Watch& watch) {
  CpuSnapshot s;
  std::ifstream in("/proc/stat");
  std::string label;
  in >> label >> s.user >> s.nice >> s.system >> s.idle >> s.iowait >> s.irq >> s.softirq >>
      s.steal;
  if (label != "cpu") {
    std::fprintf(stderr, "loadgen: /proc/stat does not start with the cpu line\n");
    std::exit(2);
  }
  for (int pid : watch.agent) s.agent.push_back(ProcTicks(pid));
  s.own.push_back(ProcTicks(getpid()));
  for (int pid : watch.own) s.own.push_back(ProcTicks(pid));
  return s;
}

// The CPU seconds spent between two snapshots, as JSON fields (no braces).
std::string CpuJson(const CpuSnapshot& a, const CpuSnapshot& b) {
  const double tick = 1.0 / static_cast<double>(sysconf(_SC_CLK_TCK));
  auto d = [tick](uint64_t x, uint64_t y) { return static_cast<double>(y - x) * tick; };
  auto sum = [&](const auto& x, const auto& y, bool user) {
    double total = 0;
    for (size_t i = 0; i < x.size(); ++i) {
      total += user ? d(x[i].first, y[i].first) : d(x[i].second, y[i].second);
    }
    return total;
  };
  char buf[640];
  std::snprintf(buf, sizeof(buf),
                "\"cpu_user_s\":%.3f,\"cpu_sys_s\":%.3f,\"cpu_irq_s\":%.3f,"
                "\"cpu_softirq_s\":%.3f,\"cpu_idle_s\":%.3f,\"cpu_steal_s\":%.3f,"
                "\"agent_user_s\":%.3f,\"agent_sys_s\":%.3f,\"own_user_s\":%.3f,"
                "\"own_sys_s\":%.3f,\"cpus\":%ld",
                d(a.user, b.user) + d(a.nice, b.nice), d(a.system, b.system), d(a.irq, b.irq),
                d(a.softirq, b.softirq), d(a.idle, b.idle) + d(a.iowait, b.iowait),
                d(a.steal, b.steal), sum(a.agent, b.agent, true), sum(a.agent, b.agent, false),
                sum(a.own, b.own, true), sum(a.own, b.own, false), sysconf(_SC_NPROCESSORS_ONLN));
  return buf;
}

// ---- sockets ----

sockaddr_in ParseEndpoint(const std::string& text) {
  const size_t colon = text.rfind(':');
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  if (colon == std::string::npos ||
      inet_pton(AF_INET, text.substr(0, colon).c_str(), &sa.sin_addr) != 1) {
    std::fprintf(stderr, "loadgen: --to %s: expected IPV4:PORT\n", text.c_str());
    std::exit(2);
  }
  const int port = std::atoi(text.substr(colon + 1).c_str());
  if (port <= 0 || port > 65535) {
    std::fprintf(stderr, "loadgen: --to %s: bad port\n", text.c_str());
    std::exit(2);
  }
  sa.sin_port = htons(static_cast<uint16_t>(port));
  return sa;
}

void SetInt(int fd, int level, int name, int value) {
  if (setsockopt(fd, level, name, &value, sizeof(value)) != 0) Die("setsockopt");
}

void SetTimeout(int fd, int name, std::chrono::milliseconds ms) {
  timeval tv{};
  tv.tv_sec = static_cast<time_t>(ms.count() / 1000);
  tv.tv_usec = static_cast<suseconds_t>((ms.count() % 1000) * 1000);
  if (setsockopt(fd, SOL_SOCKET, name, &tv, sizeof(tv)) != 0) Die("setsockopt timeout");
}

// Writes all of `len` bytes (blocking socket); false on error.
bool WriteAll(int fd, const char* data, size_t len) {
  while (len > 0) {
    const ssize_t n = send(fd, data, len, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    data += n;
    len -= static_cast<size_t>(n);
  }
  return true;
}

// Reads exactly `len` bytes (blocking socket); false on error, timeout or EOF.
bool ReadAll(int fd, char* data, size_t len) {
  while (len > 0) {
    const ssize_t n = recv(fd, data, len, 0);
    if (n <= 0) {
      if (n < 0 && errno == EINTR) continue;
      return false;
    }
    data += n;
    len -= static_cast<size_t>(n);
  }
  return true;
}

// A TCP connection to `to` that has sent its mode byte, or -1.
Fd Connect(const sockaddr_in& to, char mode, std::chrono::milliseconds timeout) {
  Fd fd(socket(AF_INET, SOCK_STREAM, 0));
  if (fd.get() < 0) Die("socket");
  SetInt(fd.get(), IPPROTO_TCP, TCP_NODELAY, 1);
  SetTimeout(fd.get(), SO_SNDTIMEO, timeout);  // bounds connect() too
  SetTimeout(fd.get(), SO_RCVTIMEO, timeout);
  if (connect(fd.get(), reinterpret_cast<const sockaddr*>(&to), sizeof(to)) != 0) return Fd();
  if (!WriteAll(fd.get(), &mode, 1)) return Fd();
  return fd;
}

// ---- server ----

struct ServerConn {
  char mode = 0;
  uint64_t bytes = 0;
};

// One epoll loop over its own SO_REUSEPORT listeners; connections stay on the thread that
// accepted them.
void ServeLoop(const std::vector<int>& ports) {
  Fd ep(epoll_create1(0));
  if (ep.get() < 0) Die("epoll_create1");
  std::vector<Fd> listeners;
  for (int port : ports) {
    Fd l(socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0));
    if (l.get() < 0) Die("socket");
    SetInt(l.get(), SOL_SOCKET, SO_REUSEADDR, 1);
    SetInt(l.get(), SOL_SOCKET, SO_REUSEPORT, 1);
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_port = htons(static_cast<uint16_t>(port));
    if (bind(l.get(), reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) != 0) Die("bind");
    if (listen(l.get(), 4096) != 0) Die("listen");
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.fd = l.get();
    if (epoll_ctl(ep.get(), EPOLL_CTL_ADD, l.get(), &ev) != 0) Die("epoll_ctl");
    listeners.push_back(std::move(l));
  }
  auto is_listener = [&](int fd) {
    return std::any_of(listeners.begin(), listeners.end(),
                       [fd](const Fd& l) { return l.get() == fd; });
  };
  std::unordered_map<int, ServerConn> conns;
  auto drop = [&](int fd) {
    conns.erase(fd);
    close(fd);  // also removes it from the epoll set
  };
  std::vector<char> buf(256 * 1024);
  std::vector<epoll_event> events(256);
  for (;;) {
    const int n = epoll_wait(ep.get(), events.data(), static_cast<int>(events.size()), -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      Die("epoll_wait");
    }
    for (int i = 0; i < n; ++i) {
      const int fd = events[i].data.fd;
      if (is_listener(fd)) {
        for (;;) {
          const int c = accept4(fd, nullptr, nullptr, SOCK_NONBLOCK);
          if (c < 0) break;  // EAGAIN, or a connection reset before we took it
          SetInt(c, IPPROTO_TCP, TCP_NODELAY, 1);
          epoll_event ev{};
          ev.events = EPOLLIN;
          ev.data.fd = c;
          if (epoll_ctl(ep.get(), EPOLL_CTL_ADD, c, &ev) != 0) Die("epoll_ctl");
          conns[c] = ServerConn{};
        }
        continue;
      }
      ServerConn& conn = conns[fd];
      for (;;) {
        const ssize_t r = recv(fd, buf.data(), buf.size(), 0);
        if (r < 0) {
          if (errno == EAGAIN || errno == EINTR) break;
          drop(fd);  // reset by the client (the connection test closes with RST)
          break;
        }
        if (r == 0) {
          if (conn.mode == kModeStream) {
            const uint64_t count = conn.bytes;
            (void)send(fd, &count, sizeof(count), MSG_NOSIGNAL);
          }
          drop(fd);
          break;
        }
        const char* data = buf.data();
        size_t len = static_cast<size_t>(r);
        if (conn.mode == 0) {
          conn.mode = data[0];
          ++data;
          --len;
          if (conn.mode == kModeConnect) {
            const char reply = 'c';
            (void)send(fd, &reply, 1, MSG_NOSIGNAL);
            drop(fd);
            break;
          }
        }
        if (conn.mode == kModeEcho) {
          // Small messages: the socket buffer takes them at once; a partial write means the
          // client broke the protocol, and the connection is dropped.
          if (len > 0 && send(fd, data, len, MSG_NOSIGNAL) != static_cast<ssize_t>(len)) {
            drop(fd);
            break;
          }
        } else if (conn.mode == kModeStream) {
          conn.bytes += len;
        } else {
          drop(fd);
          break;
        }
      }
    }
  }
}

int RunServer(const std::vector<int>& ports, int threads) {
  // SIGTERM ends the server with status 0: the driver stops it that way between configurations.
  std::signal(SIGTERM, [](int) { _exit(0); });
  std::vector<std::thread> workers;
  workers.reserve(static_cast<size_t>(threads));
  for (int i = 0; i < threads; ++i) workers.emplace_back(ServeLoop, ports);
  std::printf("{\"serving\":true}\n");
  std::fflush(stdout);
  for (auto& t : workers) t.join();
  return 0;
}

// ---- clients ----

// New connections: connect, send the mode byte, read one byte back, close with RST
// (SO_LINGER 0) so that no TIME_WAIT holds the client's ports.
int RunConnect(const sockaddr_in& to, double duration, int threads, const Watch& watch) {
  std::atomic<uint64_t> ok{0}, failed{0};
  const CpuSnapshot before = TakeCpu(watch);
  const auto start = Clock::now();
  const auto end =
      start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(duration));
  std::vector<std::thread> workers;
  workers.reserve(static_cast<size_t>(threads));
  for (int t = 0; t < threads; ++t) {
    workers.emplace_back([&] {
      uint64_t my_ok = 0, my_failed = 0;
      while (Clock::now() < end) {
        Fd fd = Connect(to, kModeConnect, std::chrono::milliseconds(1000));
        char reply = 0;
        if (fd.get() >= 0 && recv(fd.get(), &reply, 1, 0) == 1) {
          ++my_ok;
        } else {
          ++my_failed;
        }
        if (fd.get() >= 0) {
          linger lg{1, 0};
          setsockopt(fd.get(), SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
        }
      }
      ok += my_ok;
      failed += my_failed;
    });
  }
  for (auto& t : workers) t.join();
  const double wall = Seconds(Clock::now() - start);
  const CpuSnapshot after = TakeCpu(watch);
  std::printf(
      "{\"test\":\"connect\",\"ops\":%lu,\"failed\":%lu,\"wall_s\":%.3f,\"rate\":%.1f,%s}\n",
      static_cast<unsigned long>(ok.load()), static_cast<unsigned long>(failed.load()), wall,
      static_cast<double>(ok.load()) / wall, CpuJson(before, after).c_str());
  return ok.load() > 0 ? 0 : 1;
}

// Request/response on one connection: `size` bytes out, the same back, one at a time; the
// latency of each round trip goes into the percentiles.
int RunRequestResponse(const sockaddr_in& to, double duration, int size, const Watch& watch) {
  Fd fd = Connect(to, kModeEcho, std::chrono::milliseconds(2000));
  if (fd.get() < 0) Die("connect");
  std::vector<char> msg(static_cast<size_t>(size), 'r'), back(static_cast<size_t>(size));
  for (int i = 0; i < 200; ++i) {  // warm-up: caches, ARP, conntrack entries
    if (!WriteAll(fd.get(), msg.data(), msg.size()) || !ReadAll(fd.get(), back.data(), back.size()))
      Die("warm-up round trip");
  }
  std::vector<double> lat_us;
  lat_us.reserve(1 << 20);
  const CpuSnapshot before = TakeCpu(watch);
  const auto start = Clock::now();
  const auto end =
      start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(duration));
  for (auto t0 = Clock::now(); t0 < end;) {
    if (!WriteAll(fd.get(), msg.data(), msg.size()) || !ReadAll(fd.get(), back.data(), back.size()))
      Die("round trip");
    const auto t1 = Clock::now();
    lat_us.push_back(std::chrono::duration<double, std::micro>(t1 - t0).count());
    t0 = t1;
  }
  const double wall = Seconds(Clock::now() - start);
  const CpuSnapshot after = TakeCpu(watch);
  std::sort(lat_us.begin(), lat_us.end());
  auto pct = [&](double p) {
    return lat_us[std::min(lat_us.size() - 1,
                           static_cast<size_t>(p * static_cast<double>(lat_us.size())))];
  };
  std::printf(
      "{\"test\":\"rr\",\"ops\":%zu,\"wall_s\":%.3f,\"rate\":%.1f,\"p50_us\":%.2f,"
      "\"p90_us\":%.2f,\"p99_us\":%.2f,\"p999_us\":%.2f,%s}\n",
      lat_us.size(), wall, static_cast<double>(lat_us.size()) / wall, pct(0.50), pct(0.90),
      pct(0.99), pct(0.999), CpuJson(before, after).c_str());
  return 0;
}

// Bulk TCP: writes for `duration`, then half-closes and waits for the server's count of bytes
// received; throughput is that count over the time until it arrived.
int RunStream(const sockaddr_in& to, double duration, const Watch& watch) {
  Fd fd = Connect(to, kModeStream, std::chrono::milliseconds(10000));
  if (fd.get() < 0) Die("connect");
  std::vector<char> buf(128 * 1024, 's');
  const CpuSnapshot before = TakeCpu(watch);
  const auto start = Clock::now();
  const auto end =
      start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(duration));
  while (Clock::now() < end) {
    if (!WriteAll(fd.get(), buf.data(), buf.size())) Die("stream write");
  }
  if (shutdown(fd.get(), SHUT_WR) != 0) Die("shutdown");
  uint64_t count = 0;
  if (!ReadAll(fd.get(), reinterpret_cast<char*>(&count), sizeof(count))) Die("stream count");
  const double wall = Seconds(Clock::now() - start);
  const CpuSnapshot after = TakeCpu(watch);
  std::printf("{\"test\":\"stream\",\"bytes\":%lu,\"wall_s\":%.3f,\"gbit_s\":%.3f,%s}\n",
              static_cast<unsigned long>(count), wall, static_cast<double>(count) * 8 / wall / 1e9,
              CpuJson(before, after).c_str());
  return 0;
}

// UDP flood: `size`-byte datagrams, 64 per sendmmsg, for `duration`.
int RunUdpFlood(const sockaddr_in& to, double duration, int size, const Watch& watch) {
  Fd fd(socket(AF_INET, SOCK_DGRAM, 0));
  if (fd.get() < 0) Die("socket");
  if (connect(fd.get(), reinterpret_cast<const sockaddr*>(&to), sizeof(to)) != 0) Die("connect");
  constexpr int kBatch = 64;
  std::vector<char> payload(static_cast<size_t>(size), 'u');
  std::vector<iovec> iov(kBatch);
  std::vector<mmsghdr> msgs(kBatch);
  for (int i = 0; i < kBatch; ++i) {
    iov[i] = {payload.data(), payload.size()};
    msgs[i] = {};
    msgs[i].msg_hdr.msg_iov = &iov[i];
    msgs[i].msg_hdr.msg_iovlen = 1;
  }
  uint64_t sent = 0, errors = 0;
  const CpuSnapshot before = TakeCpu(watch);
  const auto start = Clock::now();
  const auto end =
      start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(duration));
  while (Clock::now() < end) {
    const int n = sendmmsg(fd.get(), msgs.data(), kBatch, 0);
    if (n < 0) {
      ++errors;  // ENOBUFS and the like: the sender outran its own queue
      continue;
    }
    sent += static_cast<uint64_t>(n);
  }
  const double wall = Seconds(Clock::now() - start);
  const CpuSnapshot after = TakeCpu(watch);
  std::printf("{\"test\":\"udp-flood\",\"sent\":%lu,\"send_errors\":%lu,\"wall_s\":%.3f,%s}\n",
              static_cast<unsigned long>(sent), static_cast<unsigned long>(errors), wall,
              CpuJson(before, after).c_str());
  return 0;
}

// UDP sink: counts datagrams from the first one until `idle_ms` pass without any.
int RunUdpSink(int port, int idle_ms, double max_wait) {
  Fd fd(socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0));
  if (fd.get() < 0) Die("socket");
  SetInt(fd.get(), SOL_SOCKET, SO_REUSEADDR, 1);
  const int rcvbuf = 8 << 20;  // the sink must not be what limits the rate
  if (setsockopt(fd.get(), SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof(rcvbuf)) != 0)
    SetInt(fd.get(), SOL_SOCKET, SO_RCVBUF, rcvbuf);  // not root: as much as rmem_max allows
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(static_cast<uint16_t>(port));
  if (bind(fd.get(), reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) != 0) Die("bind");
  std::printf("{\"listening\":true}\n");
  std::fflush(stdout);
  constexpr int kBatch = 256;
  std::vector<char> bufs(kBatch * 2048);
  std::vector<iovec> iov(kBatch);
  std::vector<mmsghdr> msgs(kBatch);
  for (int i = 0; i < kBatch; ++i) {
    iov[i] = {bufs.data() + static_cast<ptrdiff_t>(i) * 2048, 2048};
    msgs[i] = {};
    msgs[i].msg_hdr.msg_iov = &iov[i];
    msgs[i].msg_hdr.msg_iovlen = 1;
  }
  uint64_t packets = 0, bytes = 0;
  const auto opened = Clock::now();
  Clock::time_point first, last;
  for (;;) {
    pollfd p{fd.get(), POLLIN, 0};
    const int timeout = packets == 0 ? 100 : idle_ms;
    const int r = poll(&p, 1, timeout);
    if (r < 0 && errno != EINTR) Die("poll");
    if (r == 0) {
      if (packets > 0) break;
      if (Seconds(Clock::now() - opened) > max_wait) break;
      continue;
    }
    for (;;) {
      const int n = recvmmsg(fd.get(), msgs.data(), kBatch, MSG_DONTWAIT, nullptr);
      if (n <= 0) break;
      const auto now = Clock::now();
      if (packets == 0) first = now;
      last = now;
      packets += static_cast<uint64_t>(n);
      for (int i = 0; i < n; ++i) bytes += msgs[i].msg_len;
    }
  }
  const double span = packets > 1 ? Seconds(last - first) : 0;
  std::printf(
      "{\"test\":\"udp-sink\",\"packets\":%lu,\"bytes\":%lu,\"span_s\":%.3f,\"pps\":%.1f}\n",
      static_cast<unsigned long>(packets), static_cast<unsigned long>(bytes), span,
      span > 0 ? static_cast<double>(packets) / span : 0.0);
  return packets > 0 ? 0 : 1;
}

// One connection exchange within `timeout_ms`: exit 0 when it completes (the path is open).
int RunProbe(const sockaddr_in& to, int timeout_ms) {
  Fd fd = Connect(to, kModeConnect, std::chrono::milliseconds(timeout_ms));
  char reply = 0;
  const bool ok = fd.get() >= 0 && recv(fd.get(), &reply, 1, 0) == 1;
  std::printf("{\"test\":\"probe\",\"open\":%s}\n", ok ? "true" : "false");
  return ok ? 0 : 1;
}

int Main(int argc, char** argv) {
  CLI::App app{"Load generator of the Bulkhead datapath benchmark (bench/datapath/run.sh)"};
  app.require_subcommand(1);
  std::string to;
  double duration = 5;
  int threads = 2, size = 1, port = 5001, idle_ms = 500, timeout_ms = 1000;
  double max_wait = 30;
  std::vector<int> ports;
  Watch watch;

  auto* server =
      app.add_subcommand("server", "TCP server for connect, rr and stream (runs until killed)");
  server->add_option("--port", ports, "Port to listen on (repeatable)")->required();
  server->add_option("--threads", threads, "Event loops (SO_REUSEPORT)");

  auto add_client = [&](CLI::App* c) {
    c->add_option("--to", to, "Server IPV4:PORT")->required();
    c->add_option("--duration", duration, "Seconds of load");
    c->add_option("--agent-pid", watch.agent, "Report this process's CPU time as the agent's");
    c->add_option("--own-pid", watch.own,
                  "Count this process's CPU time with ours (server, sink, ksoftirqd)");
  };
  auto* connect =
      app.add_subcommand("connect", "New connections per second (connect, 1 byte each way, close)");
  add_client(connect);
  connect->add_option("--threads", threads, "Concurrent connection loops");
  auto* rr = app.add_subcommand("rr", "Request/response latency on one TCP connection");
  add_client(rr);
  rr->add_option("--size", size, "Bytes per request and per response");
  auto* stream = app.add_subcommand("stream", "Bulk TCP throughput");
  add_client(stream);
  auto* flood = app.add_subcommand("udp-flood", "Small UDP datagrams as fast as possible");
  add_client(flood);
  flood->add_option("--size", size, "UDP payload bytes");
  auto* sink = app.add_subcommand("udp-sink", "Count UDP datagrams until the flood stops");
  sink->add_option("--port", port, "UDP port");
  sink->add_option("--idle-ms", idle_ms, "End after this long without a datagram");
  sink->add_option("--max-wait", max_wait, "Give up after this many seconds without any datagram");
  auto* probe = app.add_subcommand("probe", "Exit 0 when one connection exchange completes");
  probe->add_option("--to", to, "Server IPV4:PORT")->required();
  probe->add_option("--timeout-ms", timeout_ms, "Give up after this long");

  CLI11_PARSE(app, argc, argv);
  if (threads < 1 || size < 1 || duration <= 0) {
    std::fprintf(stderr, "loadgen: --threads, --size and --duration must be positive\n");
    return 2;
  }
  if (*server) return RunServer(ports, threads);
  if (*sink) return RunUdpSink(port, idle_ms, max_wait);
  const sockaddr_in dest = ParseEndpoint(to);
  if (*connect) return RunConnect(dest, duration, threads, watch);
  if (*rr) return RunRequestResponse(dest, duration, size, watch);
  if (*stream) return RunStream(dest, duration, watch);
  if (*flood) return RunUdpFlood(dest, duration, size, watch);
  return RunProbe(dest, timeout_ms);
}

}  // namespace
}  // namespace bulkhead::bench

int main(int argc, char** argv) {
  try {
    return bulkhead::bench::Main(argc, argv);
  } catch (const std::exception& e) {  // threads that cannot start, and the like
    std::fprintf(stderr, "loadgen: %s\n", e.what());
  } catch (...) {
    std::fprintf(stderr, "loadgen: unknown exception\n");
  }
  return 2;
}
