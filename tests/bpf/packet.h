// Crafted Ethernet frames (IPv4/IPv6, TCP/UDP/SCTP/ICMP/ICMPv6, fragments, ARP) for BPF tests.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

namespace bulkhead::bpftest {

// An IPv4 or IPv6 address: 16 bytes in network order, IPv4 in the first four (as the ABI).
struct Ip {
  uint8_t family = 4;  // 4 or 6
  std::array<uint8_t, 16> bytes{};

  // Parses "10.0.0.1" or "fd00::1"; aborts on a typo (test data is ours).
  static Ip Parse(const std::string& text);
  std::string ToString() const;
  bool operator==(const Ip&) const = default;
};

constexpr uint8_t kTcp = 6, kUdp = 17, kIcmp = 1, kIcmp6 = 58, kSctp = 132, kGre = 47;
constexpr uint8_t kFin = 0x01, kSyn = 0x02, kRst = 0x04, kPsh = 0x08, kAck = 0x10;

// One packet's headers. Unset fields are zero; the frame is built from the top down.
struct Packet {
  Ip src, dst;
  uint8_t protocol = kTcp;
  uint16_t sport = 0, dport = 0;
  uint8_t tcp_flags = 0;
  uint8_t icmp_type = 0, icmp_code = 0;
  uint16_t icmp_id = 0;
  uint8_t sctp_chunk = 1;  // INIT
  size_t payload = 16;     // bytes after the L4 header
  // Fragmentation: offset in 8-byte units; more_fragments for all but the last.
  bool fragment = false;
  uint16_t frag_offset = 0;
  bool more_fragments = false;
  uint32_t frag_id = 0;
  // IPv6 only: extension headers (hop-by-hop, destination options) before the L4 header.
  int ipv6_ext_headers = 0;
  // Bytes of L4 header to emit (0: the whole header); a short value makes a tiny fragment.
  size_t l4_bytes = 0;
  // ICMP errors: the quoted packet (an IP packet without Ethernet), placed after the 8-byte
  // ICMP header instead of the payload.
  std::vector<uint8_t> quoted;
};

// The frame for `p`, with Ethernet header (ethertype from the family).
std::vector<uint8_t> Frame(const Packet& p);
// The IP packet for `p` without Ethernet (for quoting in ICMP errors).
std::vector<uint8_t> IpPacket(const Packet& p);
// An ARP request from sender_ip (IPv4) asking for target_ip.
std::vector<uint8_t> ArpFrame(const Ip& sender_ip, const Ip& target_ip);
// A frame with an arbitrary ethertype and a short payload.
std::vector<uint8_t> RawFrame(uint16_t ethertype);

// Shorthands.
Packet Tcp(const std::string& src, uint16_t sport, const std::string& dst, uint16_t dport,
           uint8_t flags);
Packet Udp(const std::string& src, uint16_t sport, const std::string& dst, uint16_t dport);
Packet Sctp(const std::string& src, uint16_t sport, const std::string& dst, uint16_t dport,
            uint8_t chunk);
// ICMP (IPv4) or ICMPv6 echo, by the family of the addresses.
Packet Echo(const std::string& src, const std::string& dst, bool request, uint16_t id);
// An ICMP/ICMPv6 message of any type (errors quote `quoted`).
Packet Icmp(const std::string& src, const std::string& dst, uint8_t type, uint8_t code,
            std::vector<uint8_t> quoted = {});

}  // namespace bulkhead::bpftest
