// The server every lab workload runs (`bulkhead lab serve`, started by `lab up` inside the
// workload's netns): it answers each TCP connection and UDP datagram on the workload's ports
// with the workload's id, so that a probe knows which workload it reached.
#pragma once

#include <sys/socket.h>

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "common/ip.h"
#include "lab/lab_file.h"

namespace bulkhead::lab {

struct ServeOptions {
  std::string answer;                     // the workload id ("x/a")
  std::vector<common::IpAddr> addresses;  // bound one by one (replies leave from them)
  std::vector<LabPort> ports;
  int ready_fd = -1;  // >= 0: "ready\n" is written there (and it is closed) once all listen
  int stop_fd = -1;   // >= 0: Serve returns once this fd is readable (tests; the lab kills)
};

// Binds every address and port, then answers until the process is killed (or stop_fd is
// readable: then it returns OK). Returns an error when a socket cannot be set up.
absl::Status Serve(const ServeOptions& options);

// The line a server sends: the id and a newline.
std::string ServerAnswer(const std::string& workload_id);

// Whether this kernel has an SCTP stack (socket(AF_INET, SOCK_STREAM, IPPROTO_SCTP) works).
// With one, the server and the prober use real SCTP sockets, exactly as they use TCP (a stack
// would answer INITs itself and race an emulation); without one (EPROTONOSUPPORT: no sctp
// module), SCTP is emulated on raw sockets (serve.cc, raw_packets.h).
bool KernelHasSctp();

// Fills *ss with ip:port (IPv4 or IPv6) for bind/connect/sendto; returns its length.
socklen_t FillAddr(const common::IpAddr& ip, uint16_t port, sockaddr_storage* ss);

}  // namespace bulkhead::lab
