// A real `bulkhead server` child process for the control-plane benchmarks: started on free
// ports with its own data dir, its ports read from its log, killed with the bench; and the
// /proc readings (CPU time, RSS) the benchmarks report about it.
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <regex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "server/api_client.h"

namespace bulkhead::bench {

inline double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  size_t i = static_cast<size_t>(p * static_cast<double>(v.size() - 1) + 0.5);
  return v[std::min(i, v.size() - 1)];
}

// utime + stime of a process, seconds (from /proc/PID/stat).
inline double CpuSeconds(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string s((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  size_t close = s.rfind(')');
  if (close == std::string::npos) return 0;
  std::istringstream rest(s.substr(close + 2));
  std::string field;
  double ticks = 0;
  for (int i = 3; i <= 15 && rest >> field; ++i) {
    if (i == 14 || i == 15) ticks += std::stod(field);
  }
  return ticks / static_cast<double>(sysconf(_SC_CLK_TCK));
}

// This process's CPU time (all threads), seconds; finer than /proc's clock ticks.
inline double SelfCpuSeconds() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
         static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}

inline long RssKiB(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
  }
  return 0;
}

class ServerProcess {
 public:
  ServerProcess(std::string binary, std::filesystem::path dir, std::string store)
      : binary_(std::move(binary)), dir_(std::move(dir)), store_(std::move(store)) {}
  ~ServerProcess() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
  }
  ServerProcess(const ServerProcess&) = delete;
  ServerProcess& operator=(const ServerProcess&) = delete;

  // Starts it and waits for its "serving" line (REST and gRPC ports); false (and the log on
  // stderr) when it exits or does not come up in 10 s.
  bool Start() {
    std::string log = (dir_ / "server.log").string();
    pid_ = fork();
    if (pid_ == 0) {
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      int fd = open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
      dup2(fd, 1);
      dup2(fd, 2);
      std::string d = dir_.string();
      execl(binary_.c_str(), binary_.c_str(), "server", "--data-dir", d.c_str(), "--store",
            store_.c_str(), "--listen", "127.0.0.1:0", "--grpc-listen", "127.0.0.1:0",
            static_cast<char*>(nullptr));
      _exit(127);
    }
    std::regex re("serving https on port ([0-9]+), agents \\(gRPC\\) on port ([0-9]+)");
    for (int i = 0; i < 500; ++i) {
      std::ifstream in(log);
      std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
      std::smatch m;
      if (std::regex_search(text, m, re)) {
        rest_port_ = std::stoi(m[1]);
        grpc_port_ = std::stoi(m[2]);
        return true;
      }
      if (waitpid(pid_, nullptr, WNOHANG) == pid_) {
        std::fprintf(stderr, "server exited: %s\n", text.c_str());
        pid_ = -1;
        return false;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    std::fprintf(stderr, "server did not start in 10 s (log %s)\n", log.c_str());
    return false;
  }
  std::unique_ptr<server::ApiClient> Client() const {
    std::ifstream in(dir_ / "admin.token");
    std::string token;
    std::getline(in, token);
    auto c = server::ApiClient::Create({"https://127.0.0.1:" + std::to_string(rest_port_), token,
                                        (dir_ / "ca.crt").string(), 120});
    return c.ok() ? *std::move(c) : nullptr;
  }
  pid_t pid() const { return pid_; }
  int grpc_port() const { return grpc_port_; }
  const std::filesystem::path& dir() const { return dir_; }

 private:
  std::string binary_;
  std::filesystem::path dir_;
  std::string store_;
  pid_t pid_ = -1;
  int rest_port_ = 0;
  int grpc_port_ = 0;
};

}  // namespace bulkhead::bench
