// Agent loop: one thread waits on the inotify watches, the API and metrics sockets, and the
// datapath's flow events (its readiness fd); everything the Agent does happens on this thread.
#include <arpa/inet.h>
#include <fcntl.h>
#include <malloc.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/inotify.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <filesystem>
#include <list>
#include <map>

#include "agent/api.h"
#include "agent/server_link.h"
#include "spdlog/spdlog.h"

namespace bulkhead::agent {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

// An owned file descriptor.
class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) close(fd_);
  }
  Fd(Fd&& o) noexcept : fd_(o.fd_) { o.fd_ = -1; }
  Fd& operator=(Fd&& o) noexcept {
    if (this != &o) {
      if (fd_ >= 0) close(fd_);
      fd_ = o.fd_;
      o.fd_ = -1;
    }
    return *this;
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }

 private:
  int fd_ = -1;
};

constexpr size_t kMaxClientBuffer = 1 << 20;  // an observer further behind loses events
constexpr size_t kMaxRequestLine = 64 * 1024;

struct Client {
  Fd fd;
  std::string in;
  std::string out;
  std::optional<ObserveFilter> observe;
  bool closing = false;
};

Fd ListenUnix(const std::string& path) {
  sockaddr_un addr{};
  if (path.size() >= sizeof(addr.sun_path)) {
    spdlog::error("socket path too long: {}", path);
    return Fd();
  }
  std::error_code ec;
  fs::create_directories(fs::path(path).parent_path(), ec);
  unlink(path.c_str());  // a socket left by a killed agent
  Fd fd(socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return Fd();
  addr.sun_family = AF_UNIX;
  std::copy(path.begin(), path.end(), addr.sun_path);
  if (bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      chmod(path.c_str(), 0660) != 0 || listen(fd.get(), 64) != 0) {
    spdlog::error("cannot listen on {}: {}", path, strerror(errno));
    return Fd();
  }
  return fd;
}

// Listens on host:port; only loopback addresses are accepted (metrics are not for the net).
Fd ListenMetrics(const std::string& addr_text) {
  size_t colon = addr_text.rfind(':');
  if (colon == std::string::npos) {
    spdlog::error("--metrics: expected HOST:PORT, got {}", addr_text);
    return Fd();
  }
  std::string host = addr_text.substr(0, colon);
  if (host.size() > 2 && host.front() == '[' && host.back() == ']')
    host = host.substr(1, host.size() - 2);
  int port = 0;
  try {
    port = std::stoi(addr_text.substr(colon + 1));
  } catch (const std::exception&) {
    port = -1;
  }
  if (port < 0 || port > 65535) {
    spdlog::error("--metrics: bad port in {}", addr_text);
    return Fd();
  }
  sockaddr_storage ss{};
  socklen_t len = 0;
  int family = AF_INET;
  in_addr a4{};
  in6_addr a6{};
  if (inet_pton(AF_INET, host.c_str(), &a4) == 1) {
    if ((ntohl(a4.s_addr) >> 24) != 127) {
      spdlog::error("--metrics: {} is not a loopback address", host);
      return Fd();
    }
    auto* sin = reinterpret_cast<sockaddr_in*>(&ss);
    sin->sin_family = AF_INET;
    sin->sin_port = htons(static_cast<uint16_t>(port));
    sin->sin_addr = a4;
    len = sizeof(*sin);
  } else if (inet_pton(AF_INET6, host.c_str(), &a6) == 1 && IN6_IS_ADDR_LOOPBACK(&a6)) {
    family = AF_INET6;
    auto* sin6 = reinterpret_cast<sockaddr_in6*>(&ss);
    sin6->sin6_family = AF_INET6;
    sin6->sin6_port = htons(static_cast<uint16_t>(port));
    sin6->sin6_addr = a6;
    len = sizeof(*sin6);
  } else {
    spdlog::error("--metrics: {} is not a loopback address", host);
    return Fd();
  }
  Fd fd(socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  int one = 1;
  setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (!fd.valid() || bind(fd.get(), reinterpret_cast<sockaddr*>(&ss), len) != 0 ||
      listen(fd.get(), 16) != 0) {
    spdlog::error("cannot listen on {}: {}", addr_text, strerror(errno));
    return Fd();
  }
  return fd;
}

// Sends what the client's buffer holds without blocking; false when the peer is gone.
bool Flush(Client& c) {
  while (!c.out.empty()) {
    ssize_t n = send(c.fd.get(), c.out.data(), c.out.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n > 0) {
      c.out.erase(0, static_cast<size_t>(n));
      continue;
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return true;
    if (n < 0 && errno == EINTR) continue;
    return false;
  }
  return true;
}

// Answers one HTTP request on a metrics connection (GET /metrics), then closes it.
void ServeMetrics(int listen_fd, Agent& agent) {
  Fd conn(accept4(listen_fd, nullptr, nullptr, SOCK_CLOEXEC));
  if (!conn.valid()) return;
  std::string req;
  char buf[2048];
  const auto deadline = Clock::now() + std::chrono::seconds(2);
  while (req.find("\r\n\r\n") == std::string::npos && req.size() < 16384 &&
         Clock::now() < deadline) {
    pollfd p{conn.get(), POLLIN, 0};
    if (poll(&p, 1, 200) <= 0) continue;
    ssize_t n = recv(conn.get(), buf, sizeof(buf), 0);
    if (n <= 0) break;
    req.append(buf, static_cast<size_t>(n));
  }
  std::string status = "200 OK";
  std::string body;
  if (req.rfind("GET /metrics", 0) == 0 || req.rfind("GET / ", 0) == 0) {
    body = agent.Metrics();
  } else {
    status = "404 Not Found";
    body = "only GET /metrics\n";
  }
  std::string resp = "HTTP/1.1 " + status +
                     "\r\nContent-Type: text/plain; version=0.0.4\r\nConnection: close\r\n"
                     "Content-Length: " +
                     std::to_string(body.size()) + "\r\n\r\n" + body;
  size_t off = 0;
  while (off < resp.size() && Clock::now() < deadline + std::chrono::seconds(2)) {
    ssize_t n = send(conn.get(), resp.data() + off, resp.size() - off, MSG_NOSIGNAL);
    if (n <= 0) break;
    off += static_cast<size_t>(n);
  }
}

// The directories watched with inotify, by watch descriptor.
struct Watches {
  std::map<int, fs::path> dirs;
  fs::path policies;       // the policy directory
  fs::path inventory_dir;  // the inventory file's directory
  std::string inventory;   // the inventory file's name in it
};

void AddWatches(int inotify_fd, const AgentOptions& o, Watches& w) {
  const uint32_t mask = IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_CREATE | IN_DELETE |
                        IN_DELETE_SELF | IN_ATTRIB;
  auto add = [&](const fs::path& dir) {
    int wd = inotify_add_watch(inotify_fd, dir.c_str(), mask);
    if (wd >= 0) w.dirs[wd] = dir;
  };
  std::error_code ec;
  if (!o.policies_dir.empty()) {  // none in server mode
    w.policies = fs::path(o.policies_dir);
    add(w.policies);
    for (fs::recursive_directory_iterator it(o.policies_dir, ec), end; !ec && it != end;
         it.increment(ec)) {
      if (it->is_directory(ec)) add(it->path());
    }
  }
  if (o.inventory_file.empty()) return;  // optional in server mode
  // The inventory's directory, so that an editor's rename-over is seen too.
  w.inventory_dir = fs::path(o.inventory_file).parent_path();
  if (w.inventory_dir.empty()) w.inventory_dir = ".";
  w.inventory = fs::path(o.inventory_file).filename().string();
  add(w.inventory_dir);
}

bool IsManifestName(const std::string& name) {
  std::string ext = fs::path(name).extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return ext == ".yaml" || ext == ".yml" || ext == ".json";
}

// What a batch of inotify events asks for.
enum class Trigger { kNone, kSettle, kNow };

// Reads every pending inotify event. A file that was written and closed, or renamed into
// place, is complete: reload now (atomic writers rename, editors close). Creations, removals,
// renames away and attribute changes may be the first step of a multi-step save (an editor
// renames the old file away before writing the new one): reload after a short settle, unless
// a completed write comes first. Events about other files (swap files, temporaries, backups)
// are ignored.
Trigger ReadInotify(int fd, const Watches& w) {
  Trigger t = Trigger::kNone;
  alignas(inotify_event) char buf[16384];
  for (;;) {
    ssize_t n = read(fd, buf, sizeof(buf));
    if (n <= 0) break;
    for (char* p = buf; p < buf + n;) {
      const auto* ev = reinterpret_cast<const inotify_event*>(p);
      p += sizeof(inotify_event) + ev->len;
      if (ev->mask & IN_Q_OVERFLOW) {
        t = std::max(t, Trigger::kSettle);  // events were lost: look at everything
        continue;
      }
      auto dir = w.dirs.find(ev->wd);
      if (dir == w.dirs.end()) continue;
      const std::string name = ev->len > 0 ? std::string(ev->name) : std::string();
      const bool is_dir = (ev->mask & IN_ISDIR) != 0;
      bool relevant = (ev->mask & IN_DELETE_SELF) != 0;
      if (!name.empty()) {
        const bool in_policies =
            !w.policies.empty() && (dir->second == w.policies ||
                                    dir->second.string().rfind(w.policies.string() + "/", 0) == 0);
        const bool is_inventory = dir->second == w.inventory_dir && name == w.inventory;
        relevant = is_inventory || (in_policies && (is_dir || IsManifestName(name)));
      }
      if (!relevant) continue;
      const bool complete = (ev->mask & (IN_CLOSE_WRITE | IN_MOVED_TO)) != 0;
      t = std::max(t, complete ? Trigger::kNow : Trigger::kSettle);
    }
  }
  return t;
}

// How long a removal, creation or rename-away waits for the rest of a multi-step save.
constexpr auto kSettle = std::chrono::milliseconds(150);
constexpr auto kRetryInterval = std::chrono::seconds(2);

}  // namespace

int RunAgentLoop(Agent& agent, const AgentOptions& agent_options, const RunOptions& options) {
  Fd sigfd;
  if (options.handle_signals) {
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGINT);
    sigaddset(&mask, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &mask, nullptr);
    signal(SIGPIPE, SIG_IGN);
    sigfd = Fd(signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC));
  }
  Fd inotify(inotify_init1(IN_NONBLOCK | IN_CLOEXEC));
  if (!inotify.valid() || (options.handle_signals && !sigfd.valid())) {
    spdlog::error("cannot set up signalfd/inotify: {}", strerror(errno));
    return 1;
  }
  Watches watches;
  AddWatches(inotify.get(), agent_options, watches);
  Fd api = ListenUnix(options.socket_path);
  if (!api.valid()) return 1;
  Fd metrics;
  if (!options.metrics_addr.empty()) {
    metrics = ListenMetrics(options.metrics_addr);
    if (!metrics.valid()) return 1;
  }
  spdlog::info("agent API on {}{}{}", options.socket_path,
               options.metrics_addr.empty() ? "" : ", metrics on http://",
               options.metrics_addr.empty() ? "" : options.metrics_addr + "/metrics");

  std::list<Client> clients;
  bool reload_pending = false;
  Clock::time_point reload_at = Clock::now();
  Clock::time_point next_retry = Clock::now() + kRetryInterval;
  const int events_fd = agent.datapath().EventsFd();
  Clock::time_point events_paused_until = Clock::now();
  ServerLink* server = options.server;
  bool stop = false;
  while (!stop) {
    std::vector<pollfd> fds;
    fds.push_back({sigfd.get(), POLLIN, 0});
    fds.push_back({inotify.get(), POLLIN, 0});
    fds.push_back({api.get(), POLLIN, 0});
    fds.push_back({metrics.valid() ? metrics.get() : -1, POLLIN, 0});
    fds.push_back({options.stop_fd, POLLIN, 0});
    const bool events_paused = Clock::now() < events_paused_until;
    fds.push_back({events_paused ? -1 : events_fd, POLLIN, 0});
    fds.push_back({server != nullptr ? server->fd() : -1, POLLIN, 0});
    for (auto& c : clients) {
      fds.push_back({c.fd.get(), static_cast<short>(POLLIN | (c.out.empty() ? 0 : POLLOUT)), 0});
    }
    // Sleep until something is ready or the next deadline (a settling reload, a retry).
    // Without a readiness fd for events, read them every 50 ms.
    int timeout_ms = events_fd < 0 ? 50 : -1;
    auto until = [&](Clock::time_point t) {
      auto ms = std::chrono::ceil<std::chrono::milliseconds>(t - Clock::now()).count();
      int clamped = static_cast<int>(std::clamp<int64_t>(ms, 0, 60000));
      timeout_ms = timeout_ms < 0 ? clamped : std::min(timeout_ms, clamped);
    };
    if (reload_pending) until(reload_at);
    if (agent.NeedsRetry()) until(next_retry);
    if (server != nullptr) until(server->next_deadline());
    if (events_paused) until(events_paused_until);
    int n = poll(fds.data(), fds.size(), timeout_ms);
    if (n < 0 && errno != EINTR) {
      spdlog::error("poll: {}", strerror(errno));
      return 1;
    }
    if (fds[0].revents & POLLIN) {
      signalfd_siginfo si;
      if (read(sigfd.get(), &si, sizeof(si)) > 0) {
        spdlog::info("signal {}: stopping (enforcement stays in the kernel)", si.ssi_signo);
        stop = true;
      }
    }
    if (fds[4].revents & (POLLIN | POLLHUP)) stop = true;
    bool reload_now = false;
    if (fds[1].revents & POLLIN) {
      switch (ReadInotify(inotify.get(), watches)) {
        case Trigger::kNow:
          reload_now = true;
          break;
        case Trigger::kSettle:
          if (!reload_pending) reload_at = Clock::now() + kSettle;
          reload_pending = true;
          break;
        case Trigger::kNone:
          break;
      }
    }
    const auto now = Clock::now();
    bool reloaded = false;
    if (reload_now || (reload_pending && now >= reload_at)) {
      reload_pending = false;
      AddWatches(inotify.get(), agent_options, watches);  // new subdirectories
      (void)agent.Reload();
      reloaded = true;
    } else if (agent.NeedsRetry() && now >= next_retry) {
      next_retry = now + kRetryInterval;
      (void)agent.Reload();
      reloaded = true;
    }
    // Server mode: the session delivered, a report is due, or the endpoints may have changed.
    bool server_due = server != nullptr &&
                      (reloaded || (fds[6].revents & POLLIN) || now >= server->next_deadline());
    // A reload briefly holds the old and the new input and compile side by side: give the
    // memory it freed back to the system (once the new policy is in force).
    if (reloaded) malloc_trim(0);

    // Flow events to observers.
    if (events_fd < 0 || (fds[5].revents & POLLIN) ||
        (events_paused && now >= events_paused_until)) {
      const bool observed =
          std::any_of(clients.begin(), clients.end(), [](const Client& c) { return c.observe; });
      const auto drain_start = Clock::now();
      auto polled = agent.datapath().PollEvents(0, [&](const bh_flow_event& ev) {
        if (!observed) {
          agent.CountEvent(ev);  // counted for the metrics; nobody to describe it to
          return;
        }
        nlohmann::json desc = agent.RecordEvent(ev);
        std::string line;
        for (auto& c : clients) {
          if (!c.observe || !c.observe->Matches(desc)) continue;
          if (line.empty()) line = nlohmann::json{{"event", desc}}.dump() + "\n";
          if (c.out.size() > kMaxClientBuffer) {
            agent.CountDroppedObserverEvents(1);
            continue;
          }
          c.out += line;
        }
      });
      if (!polled.ok()) {
        spdlog::warn("reading flow events: {}", std::string(polled.status().message()));
      } else if (*polled > 0 && events_fd >= 0 && options.events_batch.count() > 0) {
        // The next read comes events_batch after this one began (see RunOptions): a loop that
        // is behind (the read took longer) reads again at once instead of idling.
        events_paused_until = drain_start + options.events_batch;
      }
    }

    if (fds[2].revents & POLLIN) {
      for (;;) {
        int cfd = accept4(api.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (cfd < 0) break;
        clients.push_back(Client{Fd(cfd), "", "", std::nullopt, false});
      }
    }
    if (fds[3].revents & POLLIN) ServeMetrics(metrics.get(), agent);

    size_t i = 7;
    for (auto& c : clients) {
      const short rev = i < fds.size() && fds[i].fd == c.fd.get() ? fds[i].revents : 0;
      ++i;
      if (rev & (POLLIN | POLLHUP | POLLERR)) {
        char buf[4096];
        ssize_t r = recv(c.fd.get(), buf, sizeof(buf), 0);
        if (r <= 0 && !(r < 0 && (errno == EAGAIN || errno == EINTR))) {
          c.closing = true;
          continue;
        }
        if (r > 0) c.in.append(buf, static_cast<size_t>(r));
        size_t nl;
        while ((nl = c.in.find('\n')) != std::string::npos) {
          std::string line = c.in.substr(0, nl);
          c.in.erase(0, nl + 1);
          nlohmann::json resp;
          nlohmann::json req = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
          if (req.is_discarded()) {
            resp = {{"ok", false}, {"error", "request is not valid JSON"}};
          } else {
            resp = HandleRequest(agent, req, &c.observe);
            const std::string method = req.is_object() ? req.value("method", "") : "";
            if (method == "reload" || method.rfind("endpoint-", 0) == 0) {
              malloc_trim(0);
              server_due = true;
            }
          }
          c.out += resp.dump() + "\n";
        }
        if (c.in.size() > kMaxRequestLine) {
          c.out += nlohmann::json{{"ok", false}, {"error", "request line too long"}}.dump() + "\n";
          c.in.clear();
        }
      }
      if (!Flush(c)) c.closing = true;
    }
    clients.remove_if([](const Client& c) { return c.closing; });
    if (server_due && server != nullptr) server->Process(agent);
  }
  unlink(options.socket_path.c_str());
  return 0;
}

}  // namespace bulkhead::agent
