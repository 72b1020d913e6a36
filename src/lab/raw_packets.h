// SCTP and ICMP packets that the lab builds and reads itself on raw IP sockets: this kernel has
// no SCTP stack, so `lab serve` emulates the first step of an SCTP handshake (INIT -> INIT-ACK,
// or ABORT for a port it does not serve), and probes send ICMP echo requests.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace bulkhead::lab {

// CRC32c (Castagnoli), as SCTP's checksum uses it (RFC 9260 appendix A).
uint32_t Crc32c(const uint8_t* data, size_t size);

// SCTP chunk types the lab uses.
inline constexpr uint8_t kSctpInit = 1;
inline constexpr uint8_t kSctpInitAck = 2;
inline constexpr uint8_t kSctpAbort = 6;
// INIT-ACK parameter that carries the state cookie; our server puts its answer there.
inline constexpr uint16_t kSctpStateCookie = 7;

// The parts of an SCTP packet the lab reads: the common header and the first chunk.
struct SctpPacket {
  uint16_t src_port = 0;
  uint16_t dst_port = 0;
  uint32_t vtag = 0;
  uint8_t chunk = 0;  // type of the first chunk
  uint8_t chunk_flags = 0;
  uint32_t initiate_tag = 0;  // INIT and INIT-ACK
  std::string cookie;         // INIT-ACK: the State Cookie parameter's value
};

// A well-formed packet (common header, checksum filled in) with one chunk:
// INIT: vtag 0, our initiate tag, a receive window, 1 stream each way, an initial TSN.
std::vector<uint8_t> SctpInit(uint16_t src_port, uint16_t dst_port, uint32_t initiate_tag);
// INIT-ACK answering an INIT whose initiate tag was `peer_tag`, with our own tag and the
// State Cookie parameter holding `cookie`.
std::vector<uint8_t> SctpInitAck(uint16_t src_port, uint16_t dst_port, uint32_t peer_tag,
                                 uint32_t own_tag, std::string_view cookie);
// ABORT (no causes, T bit clear) with the peer's tag as verification tag.
std::vector<uint8_t> SctpAbort(uint16_t src_port, uint16_t dst_port, uint32_t peer_tag);

// Reads a packet (without the IP header); nullopt when it is too short, its checksum is
// wrong or its first chunk's length does not fit.
std::optional<SctpPacket> ParseSctp(const uint8_t* data, size_t size);

// ICMP (IPv4) and ICMPv6 echo. IPv4: the checksum is filled in; ICMPv6: left 0, the kernel
// computes it for raw ICMPv6 sockets (it covers a pseudo header we do not see).
std::vector<uint8_t> IcmpEcho(bool v6, uint16_t id, uint16_t seq, std::string_view payload);
// Whether `data` (without the IP header) is an echo reply with this id and sequence number.
bool IsEchoReply(bool v6, const uint8_t* data, size_t size, uint16_t id, uint16_t seq);

// The payload of an IPv4 packet as a raw IPv4 socket receives it (with its header): nullptr
// when it is shorter than its header says.
const uint8_t* SkipIpv4Header(const uint8_t* data, size_t size, size_t* payload_size);

}  // namespace bulkhead::lab
