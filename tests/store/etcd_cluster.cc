// Starts, kills, restarts and removes a loopback etcd cluster for the store's tests.
#include "etcd_cluster.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "store/etcd_store.h"

namespace bulkhead::store::testing {
namespace {

namespace fs = std::filesystem;

// Only here so that a cluster that never comes up fails the test instead of hanging it.
constexpr auto kHangGuard = std::chrono::seconds(60);

// Free loopback ports, held open together so that they differ, then released for etcd.
std::vector<int> FreePorts(int count) {
  std::vector<int> fds;
  std::vector<int> ports;
  for (int i = 0; i < count; ++i) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(addr);
    if (fd < 0 || bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
        getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
      if (fd >= 0) close(fd);
      break;
    }
    fds.push_back(fd);
    ports.push_back(ntohs(addr.sin_port));
  }
  for (int fd : fds) close(fd);
  return ports;
}

// Alive and not a zombie (a killed test process may wait to be reaped).
bool ProcessAlive(pid_t pid) {
  if (kill(pid, 0) != 0 && errno != EPERM) return false;
  std::ifstream stat(absl::StrCat("/proc/", pid, "/stat"));
  std::string line;
  std::getline(stat, line);
  size_t paren = line.rfind(')');
  return paren == std::string::npos || paren + 2 >= line.size() || line[paren + 2] != 'Z';
}

// Removes data dirs left by test processes that died (a crash skips the destructor).
void RemoveStaleDirs() {
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(fs::temp_directory_path(), ec)) {
    std::string name = entry.path().filename().string();
    if (!absl::StartsWith(name, "bulkhead-etcd-")) continue;
    std::string pid_part = name.substr(14, name.find('-', 14) - 14);
    int pid = 0;
    if (absl::SimpleAtoi(pid_part, &pid) && pid > 0 && !ProcessAlive(pid)) {
      fs::remove_all(entry.path(), ec);
    }
  }
}

size_t Append(char* data, size_t size, size_t count, void* out) {
  static_cast<std::string*>(out)->append(data, size * count);
  return size * count;
}

// POSTs `body` to a member's gateway; the answer's body, or "" on any failure.
std::string PostJson(const std::string& url, const std::string& body) {
  CURL* h = curl_easy_init();
  if (h == nullptr) return "";
  std::string out;
  curl_easy_setopt(h, CURLOPT_URL, url.c_str());
  curl_easy_setopt(h, CURLOPT_POSTFIELDS, body.c_str());
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, Append);
  curl_easy_setopt(h, CURLOPT_WRITEDATA, &out);
  curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 2000L);
  curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(h, CURLOPT_NOPROXY, "*");
  CURLcode rc = curl_easy_perform(h);
  curl_easy_cleanup(h);
  return rc == CURLE_OK ? out : "";
}

}  // namespace

std::string EtcdCluster::Binary() {
  const char* env = std::getenv("BULKHEAD_ETCD");
  std::string path = env != nullptr && *env != '\0' ? env : "/usr/bin/etcd";
  return access(path.c_str(), X_OK) == 0 ? path : "";
}

absl::StatusOr<std::unique_ptr<EtcdCluster>> EtcdCluster::Start(int members) {
  std::string binary = Binary();
  if (binary.empty()) return absl::NotFoundError("no etcd binary (/usr/bin/etcd, $BULKHEAD_ETCD)");
  RemoveStaleDirs();
  absl::Status last;
  // A port taken between FreePorts and etcd's bind makes a member exit: try new ports.
  for (int attempt = 0; attempt < 3; ++attempt) {
    std::unique_ptr<EtcdCluster> cluster(new EtcdCluster());
    cluster->binary_ = binary;
    std::string tmpl =
        (fs::temp_directory_path() / absl::StrCat("bulkhead-etcd-", getpid(), "-XXXXXX")).string();
    if (mkdtemp(tmpl.data()) == nullptr) {
      return absl::InternalError(absl::StrCat("mkdtemp: ", std::strerror(errno)));
    }
    cluster->dir_ = tmpl;
    cluster->token_ = fs::path(tmpl).filename().string();
    std::vector<int> ports = FreePorts(2 * members);
    if (static_cast<int>(ports.size()) != 2 * members) {
      return absl::InternalError("cannot find free loopback ports");
    }
    for (int i = 0; i < members; ++i) {
      cluster->members_.push_back(Member{absl::StrCat("m", i), ports[2 * i], ports[2 * i + 1], -1});
    }
    bool launched = true;
    for (int i = 0; i < members && launched; ++i) {
      last = cluster->Launch(i);
      launched = last.ok();
    }
    if (launched) {
      last = cluster->WaitHealthy();
      if (last.ok()) return cluster;
    }
    std::string logs;
    for (int i = 0; i < members; ++i)
      logs += "\n--- " + cluster->members_[i].name + ":\n" + cluster->LogTail(i, 1500);
    last = absl::Status(last.code(), absl::StrCat(last.message(), logs));
  }
  return last;
}

EtcdCluster::~EtcdCluster() {
  for (int i = 0; i < size(); ++i) Kill(i);
  std::error_code ignored;
  if (!dir_.empty()) fs::remove_all(dir_, ignored);
}

std::string EtcdCluster::Endpoint(int member) const {
  return absl::StrCat("127.0.0.1:", members_[member].client_port);
}

std::string EtcdCluster::Url() const {
  std::vector<std::string> endpoints;
  for (int i = 0; i < size(); ++i) endpoints.push_back(Endpoint(i));
  return absl::StrCat("etcd://", absl::StrJoin(endpoints, ","));
}

std::string EtcdCluster::DataDir(int member) const {
  return absl::StrCat(dir_, "/", members_[member].name);
}

absl::Status EtcdCluster::Launch(int member) {
  Member& m = members_[member];
  std::vector<std::string> initial;
  for (const Member& other : members_) {
    initial.push_back(absl::StrCat(other.name, "=http://127.0.0.1:", other.peer_port));
  }
  const std::string peer = absl::StrCat("http://127.0.0.1:", m.peer_port);
  const std::string client = absl::StrCat("http://", Endpoint(member));
  std::vector<std::string> args = {binary_,
                                   "--name",
                                   m.name,
                                   "--data-dir",
                                   DataDir(member),
                                   "--listen-peer-urls",
                                   peer,
                                   "--initial-advertise-peer-urls",
                                   peer,
                                   "--listen-client-urls",
                                   client,
                                   "--advertise-client-urls",
                                   client,
                                   "--initial-cluster",
                                   absl::StrJoin(initial, ","),
                                   "--initial-cluster-state",
                                   "new",
                                   "--initial-cluster-token",
                                   token_,
                                   "--heartbeat-interval",
                                   "100",
                                   "--election-timeout",
                                   "1000"};
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  const std::string log = absl::StrCat(dir_, "/", m.name, ".log");
  int log_fd = open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (log_fd < 0)
    return absl::InternalError(absl::StrCat("open ", log, ": ", std::strerror(errno)));
  const pid_t parent = getpid();
  pid_t pid = fork();
  if (pid == 0) {
    // Only async-signal-safe calls between fork and exec. The member dies with this process.
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(1);
    int devnull = open("/dev/null", O_RDONLY);
    if (devnull >= 0) dup2(devnull, STDIN_FILENO);
    dup2(log_fd, STDOUT_FILENO);
    dup2(log_fd, STDERR_FILENO);
    execv(argv[0], argv.data());
    _exit(127);
  }
  close(log_fd);
  if (pid < 0) return absl::InternalError(absl::StrCat("fork: ", std::strerror(errno)));
  m.pid = pid;
  return absl::OkStatus();
}

void EtcdCluster::Kill(int member) {
  Member& m = members_[member];
  if (m.pid <= 0) return;
  kill(m.pid, SIGKILL);
  waitpid(m.pid, nullptr, 0);
  m.pid = -1;
}

absl::Status EtcdCluster::Restart(int member) {
  Kill(member);
  return Launch(member);
}

absl::Status EtcdCluster::WaitHealthy() {
  const auto deadline = std::chrono::steady_clock::now() + kHangGuard;
  StoreOptions options;
  options.request_timeout_ms = 500;
  for (int i = 0; i < size(); ++i) {
    if (!Running(i)) continue;
    for (;;) {
      int status = 0;
      if (waitpid(members_[i].pid, &status, WNOHANG) == members_[i].pid) {
        members_[i].pid = -1;
        return absl::InternalError(
            absl::StrCat("etcd member ", members_[i].name, " exited (status ", status, ")"));
      }
      absl::StatusOr<std::unique_ptr<IStore>> probe = OpenEtcdStore({Endpoint(i)}, options);
      if (probe.ok()) break;
      if (std::chrono::steady_clock::now() > deadline) {
        return absl::DeadlineExceededError(absl::StrCat(
            "etcd member ", members_[i].name, " not healthy: ", probe.status().message()));
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<int> EtcdCluster::Leader() const {
  std::vector<std::string> ids(members_.size());
  std::string leader;
  for (int i = 0; i < size(); ++i) {
    if (!Running(i)) continue;
    nlohmann::json status = nlohmann::json::parse(
        PostJson(absl::StrCat("http://", Endpoint(i), "/v3/maintenance/status"), "{}"), nullptr,
        /*allow_exceptions=*/false);
    if (!status.is_object() || !status.contains("header")) continue;
    ids[i] = status["header"].value("member_id", "");
    if (leader.empty()) leader = status.value("leader", "");
  }
  for (int i = 0; i < size(); ++i) {
    if (!leader.empty() && ids[i] == leader) return i;
  }
  return absl::UnavailableError("no member reports a running leader");
}

std::string EtcdCluster::LogTail(int member, size_t bytes) const {
  std::ifstream in(absl::StrCat(dir_, "/", members_[member].name, ".log"));
  std::stringstream all;
  all << in.rdbuf();
  std::string text = all.str();
  return text.size() > bytes ? text.substr(text.size() - bytes) : text;
}

}  // namespace bulkhead::store::testing
