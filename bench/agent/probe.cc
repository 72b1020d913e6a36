// The agent benchmark's traffic tool: runs inside network namespaces the benchmark made.
//
//   agent_bench_probe scenario --out DIR [scenario flags]
//       writes the synthetic node (inventory, rules/, probe-allow.yaml, probe-deny.yaml)
//   agent_bench_probe flip --client NETNS --server NETNS --to IP --port P
//                          --rename SRC DST --expect allow|deny [--interval-us N]
//       echoes UDP in the server namespace, probes from the client namespace every N µs,
//       renames SRC onto DST (the policy change) and reports how long after the rename the
//       first probe with the new verdict was sent (and that the verdict then stays)
//   agent_bench_probe flood --client NETNS --server NETNS --to IP --port P --rate R
//                           --seconds S [--new-flows]
//       sends UDP at R packets/s (0: as fast as it can) from the client to a sink in the
//       server namespace, one 5-tuple or a new source port per packet, and reports the rate
//       it reached and the CPU it used
//
// Output is one line of key=value pairs. Traffic goes only to the address given, which the
// benchmark gives to a namespace it created.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "scenario.h"

namespace bulkhead::bench {
namespace {

int64_t NowNs() {
  timespec t{};
  clock_gettime(CLOCK_MONOTONIC, &t);
  return int64_t{t.tv_sec} * 1000000000 + t.tv_nsec;
}

[[noreturn]] void Die(const std::string& what) {
  std::fprintf(stderr, "agent_bench_probe: %s: %s\n", what.c_str(), std::strerror(errno));
  std::exit(1);
}

// Moves the calling thread into a network namespace (a name under /var/run/netns or a path).
void EnterNetns(const std::string& netns) {
  std::string path = netns.find('/') == std::string::npos ? "/var/run/netns/" + netns : netns;
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) Die("opening " + path);
  if (setns(fd, CLONE_NEWNET) != 0) Die("entering " + path);
  close(fd);
}

sockaddr_in Addr(const std::string& ip, int port) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  if (inet_pton(AF_INET, ip.c_str(), &a.sin_addr) != 1) {
    errno = EINVAL;
    Die("address " + ip);
  }
  return a;
}

// A UDP socket in network namespace `netns`, bound to `port` (0: any) on every address.
int UdpSocketIn(const std::string& netns, int port) {
  EnterNetns(netns);
  int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) Die("socket");
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  if (bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) Die("bind");
  return fd;
}

struct Flags {
  std::map<std::string, std::string> values;
  bool Has(const std::string& k) const { return values.count(k) != 0; }
  std::string Get(const std::string& k, const std::string& def = "") const {
    auto it = values.find(k);
    return it == values.end() ? def : it->second;
  }
  int64_t Int(const std::string& k, int64_t def) const { return Has(k) ? std::stoll(Get(k)) : def; }
  std::string Need(const std::string& k) const {
    if (!Has(k)) {
      std::fprintf(stderr, "agent_bench_probe: --%s is required\n", k.c_str());
      std::exit(2);
    }
    return Get(k);
  }
};

Flags Parse(int argc, char** argv, int first) {
  Flags f;
  for (int i = first; i < argc; ++i) {
    std::string a = argv[i];
    if (a.rfind("--", 0) != 0) {
      std::fprintf(stderr, "agent_bench_probe: unexpected argument %s\n", a.c_str());
      std::exit(2);
    }
    a = a.substr(2);
    // Flags without a value: the next argument is another flag (or there is none).
    if (a == "new-flows" || i + 1 >= argc || std::string(argv[i + 1]).rfind("--", 0) == 0) {
      f.values[a] = "1";
    } else if (a == "rename") {
      f.values["rename-from"] = argv[++i];
      if (i + 1 >= argc) Die("--rename needs SRC DST");
      f.values["rename-to"] = argv[++i];
    } else {
      f.values[a] = argv[++i];
    }
  }
  return f;
}

// Echoes every datagram on `fd` back to its sender until `stop`.
void Echo(int fd, const std::atomic<bool>& stop, bool reply) {
  char buf[2048];
  while (!stop.load()) {
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, 20) <= 0) continue;
    sockaddr_in from{};
    socklen_t len = sizeof(from);
    ssize_t n =
        recvfrom(fd, buf, sizeof(buf), MSG_DONTWAIT, reinterpret_cast<sockaddr*>(&from), &len);
    if (n > 0 && reply) {
      sendto(fd, buf, static_cast<size_t>(n), 0, reinterpret_cast<sockaddr*>(&from), len);
    }
  }
}

int Flip(const Flags& f) {
  const std::string client = f.Need("client"), server = f.Need("server");
  const std::string to = f.Need("to");
  const int port = static_cast<int>(f.Int("port", kProbePort));
  const bool expect_allow = f.Need("expect") == "allow";
  const int64_t interval_ns = f.Int("interval-us", 200) * 1000;
  const int64_t settle_ns = f.Int("settle-ms", 200) * 1000000;
  const int64_t timeout_ns = f.Int("timeout-ms", 5000) * 1000000;
  const std::string from = f.Need("rename-from"), dest = f.Need("rename-to");

  std::atomic<bool> stop{false};
  int server_fd = UdpSocketIn(server, port);
  std::thread echo(Echo, server_fd, std::cref(stop), true);
  int fd = UdpSocketIn(client, 0);
  sockaddr_in dst = Addr(to, port);
  if (connect(fd, reinterpret_cast<sockaddr*>(&dst), sizeof(dst)) != 0) Die("connect");

  const size_t max_probes = static_cast<size_t>((timeout_ns + 2000000000) / interval_ns) + 16;
  std::vector<int64_t> sent(max_probes, 0);
  std::vector<std::atomic<int64_t>> replied(max_probes);
  for (auto& r : replied) r.store(0);
  std::thread receiver([&] {
    uint64_t seq;
    while (!stop.load()) {
      pollfd p{fd, POLLIN, 0};
      if (poll(&p, 1, 20) <= 0) continue;
      while (recv(fd, &seq, sizeof(seq), MSG_DONTWAIT) == sizeof(seq)) {
        if (seq < max_probes) replied[seq].store(NowNs());
      }
    }
  });
  size_t next = 0;
  auto send_one = [&] {
    uint64_t seq = next;
    sent[next++] = NowNs();
    (void)send(fd, &seq, sizeof(seq), 0);  // a refused send is a probe without a reply
  };
  // Sleeps (never spins: the agent and the echo need the CPUs of a small machine).
  auto pace = [&](int64_t until) {
    int64_t left = until - NowNs();
    if (left > 0) {
      timespec ts{left / 1000000000, left % 1000000000};
      nanosleep(&ts, nullptr);
    }
  };
  auto finish = [&](int rc) {
    stop = true;
    receiver.join();
    echo.join();
    close(fd);
    close(server_fd);
    return rc;
  };

  // Before: the old verdict must hold (probes for 60 ms, replies given 100 ms to come back).
  int64_t t = NowNs();
  const size_t before_first = next;
  while (NowNs() < t + 60000000) {
    send_one();
    pace(sent[next - 1] + interval_ns);
  }
  pace(NowNs() + 100000000);
  size_t before_replies = 0;
  for (size_t i = before_first; i < next; ++i) before_replies += replied[i].load() != 0 ? 1 : 0;
  const bool before_allowed = before_replies * 2 > next - before_first;
  if (before_allowed == expect_allow) {
    std::printf("error=the verdict is already %s before the change (%zu of %zu replies)\n",
                expect_allow ? "allow" : "deny", before_replies, next - before_first);
    return finish(1);
  }

  // The change, then probes until the new verdict seems to hold for settle_ns, then as long
  // again to confirm, then a pause for late replies (a busy machine delays them): the flip is
  // computed from every reply at the end, so a late reply cannot fake a deny.
  const size_t first_after = next;
  const int64_t t0 = NowNs();
  if (rename(from.c_str(), dest.c_str()) != 0) Die("rename " + from + " " + dest);
  // The first probe after the change from which on the new verdict holds, from what has come
  // back so far (SIZE_MAX: none yet).
  auto flip_point = [&](int64_t horizon) -> size_t {
    if (expect_allow) {
      for (size_t i = first_after; i < next && sent[i] <= horizon; ++i) {
        if (replied[i].load() != 0) return i;
      }
      return SIZE_MAX;
    }
    size_t after_last_reply = first_after;
    for (size_t i = first_after; i < next; ++i) {
      if (replied[i].load() != 0) after_last_reply = i + 1;
    }
    return after_last_reply < next && sent[after_last_reply] <= horizon ? after_last_reply
                                                                        : SIZE_MAX;
  };
  int64_t confirm_until = 0;
  while (NowNs() < t0 + timeout_ns && next < max_probes) {
    send_one();
    pace(sent[next - 1] + interval_ns);
    if (confirm_until != 0) {
      if (NowNs() >= confirm_until) break;
      continue;
    }
    const size_t f = flip_point(NowNs() - settle_ns);
    if (f != SIZE_MAX && (expect_allow ? NowNs() - sent[f] > settle_ns : true)) {
      confirm_until = NowNs() + settle_ns;
    }
  }
  pace(NowNs() + 300000000);
  const size_t flip = flip_point(sent[next - 1] - (expect_allow ? 0 : settle_ns / 2));
  if (flip == SIZE_MAX) {
    std::printf("error=no flip to %s within %lld ms probes=%zu\n", expect_allow ? "allow" : "deny",
                static_cast<long long>(timeout_ns / 1000000), next - first_after);
    return finish(1);
  }
  // Probes after the flip whose outcome was the old verdict (loss, for allow).
  size_t against = 0;
  for (size_t i = flip; i < next; ++i) {
    if ((replied[i].load() != 0) != expect_allow) ++against;
  }
  std::printf("latency_ms=%.3f probes=%zu against=%zu interval_us=%lld\n",
              static_cast<double>(sent[flip] - t0) / 1e6, next - first_after, against,
              static_cast<long long>(interval_ns / 1000));
  return finish(0);
}

double CpuSeconds() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
         static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}

int Flood(const Flags& f) {
  const std::string client = f.Need("client"), server = f.Need("server");
  const int port = static_cast<int>(f.Int("port", 7000));
  const int64_t rate = f.Int("rate", 0);
  const double seconds = std::stod(f.Get("seconds", "2"));
  const bool new_flows = f.Has("new-flows");
  std::atomic<bool> stop{false};
  int sink = UdpSocketIn(server, port);
  std::thread drain(Echo, sink, std::cref(stop), false);
  EnterNetns(client);
  sockaddr_in dst = Addr(f.Need("to"), port);
  int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) Die("socket");
  char payload[64] = {};
  const double cpu0 = CpuSeconds();
  const int64_t t0 = NowNs();
  const int64_t end = t0 + static_cast<int64_t>(seconds * 1e9);
  uint64_t sent = 0, failed = 0;
  for (;;) {
    const int64_t now = NowNs();
    if (now >= end) break;
    if (rate > 0) {
      // Paced: the packet due by now (in bursts of a few, to keep the clock reads cheap).
      const uint64_t due = static_cast<uint64_t>((now - t0) * rate / 1000000000);
      if (sent + failed >= due) continue;
    }
    int s = fd;
    if (new_flows) {
      s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);  // a new source port: a new flow
      if (s < 0) Die("socket");
    }
    if (sendto(s, payload, sizeof(payload), 0, reinterpret_cast<sockaddr*>(&dst), sizeof(dst)) ==
        sizeof(payload)) {
      ++sent;
    } else {
      ++failed;
    }
    if (new_flows) close(s);
  }
  const double elapsed = static_cast<double>(NowNs() - t0) / 1e9;
  const double cpu = CpuSeconds() - cpu0;
  stop = true;
  drain.join();
  close(fd);
  close(sink);
  std::printf("sent=%llu failed=%llu seconds=%.3f rate=%.0f cpu_seconds=%.3f\n",
              static_cast<unsigned long long>(sent), static_cast<unsigned long long>(failed),
              elapsed, static_cast<double>(sent) / elapsed, cpu);
  return 0;
}

int WriteScenarioFiles(const Flags& f) {
  ScenarioOptions o;
  o.local_workloads = static_cast<int>(f.Int("local", o.local_workloads));
  o.remote_workloads = static_cast<int>(f.Int("remote", o.remote_workloads));
  o.rules = static_cast<int>(f.Int("rules", o.rules));
  o.namespaces = static_cast<int>(f.Int("namespaces", o.namespaces));
  o.placement = f.Get("placement", o.placement);
  o.node = f.Get("node", o.node);
  o.if_prefix = f.Get("if-prefix", o.if_prefix);
  o.netns_prefix = f.Get("netns-prefix", o.netns_prefix);
  o.ip_prefix = f.Get("ip-prefix", o.ip_prefix);
  const std::string out = f.Need("out");
  if (auto s = WriteScenario(o, out); !s.ok()) {
    std::fprintf(stderr, "agent_bench_probe: %s\n", std::string(s.message()).c_str());
    return 1;
  }
  for (bool allow : {true, false}) {
    std::string path = out + (allow ? "/probe-allow.yaml" : "/probe-deny.yaml");
    FILE* file = std::fopen(path.c_str(), "w");
    if (file == nullptr) Die("writing " + path);
    std::string text = ProbePolicy(o, allow);
    std::fwrite(text.data(), 1, text.size(), file);
    std::fclose(file);
  }
  std::printf("client_ip=%s server_ip=%s\n", LocalIp(o, 0).c_str(), LocalIp(o, 1).c_str());
  return 0;
}

}  // namespace
}  // namespace bulkhead::bench

int main(int argc, char** argv) {
  using namespace bulkhead::bench;  // NOLINT: the tool's own namespace
  if (argc < 2) {
    std::fprintf(stderr, "usage: agent_bench_probe scenario|flip|flood --flags (see the source)\n");
    return 2;
  }
  std::string cmd = argv[1];
  Flags f = Parse(argc, argv, 2);
  if (cmd == "flip") return Flip(f);
  if (cmd == "flood") return Flood(f);
  if (cmd == "scenario") return WriteScenarioFiles(f);
  std::fprintf(stderr, "agent_bench_probe: unknown command %s\n", cmd.c_str());
  return 2;
}
