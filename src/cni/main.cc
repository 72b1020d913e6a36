// bulkhead-cni's entry point: reads the configuration from stdin and the CNI_* variables,
// talks to the agent over its unix socket, prints the result or a CNI error on stdout.
#include <linux/ethtool.h>
#include <linux/sockios.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <iostream>
#include <iterator>
#include <string>

#include "agent/client.h"
#include "cni/cni.h"

namespace {

// The driver of a network interface in this netns ("veth", "bridge"), from the ethtool
// ioctl: unlike /sys/class/net it answers for the netns the plugin runs in.
std::string DriverOf(const std::string& ifname) {
  if (ifname.size() >= IFNAMSIZ) return "";
  int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return "";
  ethtool_drvinfo info{};
  info.cmd = ETHTOOL_GDRVINFO;
  ifreq ifr{};
  std::memcpy(ifr.ifr_name, ifname.data(), ifname.size());
  ifr.ifr_data = reinterpret_cast<char*>(&info);
  const int rc = ioctl(fd, SIOCETHTOOL, &ifr);
  close(fd);
  if (rc != 0) return "";
  return std::string(info.driver, strnlen(info.driver, sizeof(info.driver)));
}

}  // namespace

int main() {
  using bulkhead::cni::CniError;
  std::string input((std::istreambuf_iterator<char>(std::cin)), std::istreambuf_iterator<char>());
  if (std::cin.bad()) {
    std::cout << CniError{bulkhead::cni::kIoFailure, "cannot read the configuration from stdin", ""}
                     .ToJson(bulkhead::cni::kDefaultCniVersion)
                     .dump()
              << "\n";
    return 1;
  }
  bulkhead::cni::PluginIo io;
  io.call_agent = [](const std::string& socket, const nlohmann::json& request) {
    return bulkhead::agent::CallAgent(socket, request, bulkhead::cni::kAgentTimeoutMs);
  };
  io.driver_of = DriverOf;
  std::string out;
  const int rc = bulkhead::cni::RunPlugin(
      bulkhead::cni::ReadEnvironment([](const char* name) { return std::getenv(name); }), input, io,
      &out);
  if (!out.empty()) std::cout << out << "\n";
  std::cout.flush();
  return rc;
}
