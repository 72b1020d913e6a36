// SCTP (INIT, INIT-ACK, ABORT with CRC32c) and ICMP echo packets for the lab's raw sockets.
#include "lab/raw_packets.h"

#include <algorithm>
#include <array>

namespace bulkhead::lab {
namespace {

constexpr size_t kSctpHeader = 12;
constexpr size_t kIcmpHeader = 8;
// What our INITs and INIT-ACKs offer; any values a real stack would accept.
constexpr uint32_t kReceiveWindow = 65536;
constexpr uint16_t kStreams = 1;

std::array<uint32_t, 256> MakeCrcTable() {
  std::array<uint32_t, 256> t{};
  for (uint32_t i = 0; i < 256; ++i) {
    uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c & 1U) != 0 ? (c >> 1) ^ 0x82F63B78U : c >> 1;
    t[i] = c;
  }
  return t;
}

void Put16(std::vector<uint8_t>& b, size_t at, uint16_t v) {
  b[at] = static_cast<uint8_t>(v >> 8);
  b[at + 1] = static_cast<uint8_t>(v);
}
void Put32(std::vector<uint8_t>& b, size_t at, uint32_t v) {
  for (int i = 0; i < 4; ++i) b[at + i] = static_cast<uint8_t>(v >> (24 - 8 * i));
}
uint16_t Get16(const uint8_t* p) { return static_cast<uint16_t>(p[0] << 8 | p[1]); }
uint32_t Get32(const uint8_t* p) {
  return static_cast<uint32_t>(p[0]) << 24 | static_cast<uint32_t>(p[1]) << 16 |
         static_cast<uint32_t>(p[2]) << 8 | p[3];
}

// The common header, then the checksum over the whole packet with its field zero. SCTP
// stores the CRC least significant byte first (RFC 9260 appendix A; Linux: cpu_to_le32).
std::vector<uint8_t> Seal(uint16_t src_port, uint16_t dst_port, uint32_t vtag,
                          const std::vector<uint8_t>& chunk) {
  std::vector<uint8_t> b(kSctpHeader + chunk.size());
  Put16(b, 0, src_port);
  Put16(b, 2, dst_port);
  Put32(b, 4, vtag);
  std::copy(chunk.begin(), chunk.end(), b.begin() + kSctpHeader);
  uint32_t crc = Crc32c(b.data(), b.size());
  for (int i = 0; i < 4; ++i) b[8 + i] = static_cast<uint8_t>(crc >> (8 * i));
  return b;
}

// INIT and INIT-ACK share their fixed part.
std::vector<uint8_t> InitChunk(uint8_t type, uint32_t initiate_tag, size_t extra) {
  std::vector<uint8_t> c(20);
  c[0] = type;
  Put16(c, 2, static_cast<uint16_t>(20 + extra));
  Put32(c, 4, initiate_tag);
  Put32(c, 8, kReceiveWindow);
  Put16(c, 12, kStreams);
  Put16(c, 14, kStreams);
  Put32(c, 16, initiate_tag);  // initial TSN: any value; the tag is as good as another
  return c;
}

uint16_t InternetChecksum(const std::vector<uint8_t>& b) {
  uint32_t sum = 0;
  for (size_t i = 0; i + 1 < b.size(); i += 2) sum += Get16(&b[i]);
  if (b.size() % 2 != 0) sum += static_cast<uint32_t>(b.back()) << 8;
  while ((sum >> 16) != 0) sum = (sum & 0xffffU) + (sum >> 16);
  return static_cast<uint16_t>(~sum);
}

}  // namespace

uint32_t Crc32c(const uint8_t* data, size_t size) {
  static const std::array<uint32_t, 256> kTable = MakeCrcTable();
  uint32_t crc = 0xFFFFFFFFU;
  for (size_t i = 0; i < size; ++i) crc = kTable[(crc ^ data[i]) & 0xffU] ^ (crc >> 8);
  return ~crc;
}

std::vector<uint8_t> SctpInit(uint16_t src_port, uint16_t dst_port, uint32_t initiate_tag) {
  return Seal(src_port, dst_port, 0, InitChunk(kSctpInit, initiate_tag, 0));
}

std::vector<uint8_t> SctpInitAck(uint16_t src_port, uint16_t dst_port, uint32_t peer_tag,
                                 uint32_t own_tag, std::string_view cookie) {
  const size_t param = 4 + cookie.size();
  const size_t padded = (param + 3) / 4 * 4;
  // The chunk length counts the parameter without the padding after the last one.
  std::vector<uint8_t> c = InitChunk(kSctpInitAck, own_tag, param);
  c.resize(20 + padded, 0);
  Put16(c, 20, kSctpStateCookie);
  Put16(c, 22, static_cast<uint16_t>(param));
  std::copy(cookie.begin(), cookie.end(), c.begin() + 24);
  return Seal(src_port, dst_port, peer_tag, c);
}

std::vector<uint8_t> SctpAbort(uint16_t src_port, uint16_t dst_port, uint32_t peer_tag) {
  std::vector<uint8_t> c(4, 0);
  c[0] = kSctpAbort;
  Put16(c, 2, 4);
  return Seal(src_port, dst_port, peer_tag, c);
}

std::optional<SctpPacket> ParseSctp(const uint8_t* data, size_t size) {
  if (size < kSctpHeader + 4) return std::nullopt;
  std::vector<uint8_t> copy(data, data + size);
  uint32_t stored = 0;
  for (int i = 0; i < 4; ++i) stored |= static_cast<uint32_t>(copy[8 + i]) << (8 * i);
  for (int i = 0; i < 4; ++i) copy[8 + i] = 0;
  if (Crc32c(copy.data(), copy.size()) != stored) return std::nullopt;
  SctpPacket p;
  p.src_port = Get16(data);
  p.dst_port = Get16(data + 2);
  p.vtag = Get32(data + 4);
  const uint8_t* c = data + kSctpHeader;
  const size_t room = size - kSctpHeader;
  p.chunk = c[0];
  p.chunk_flags = c[1];
  const size_t len = Get16(c + 2);
  if (len < 4 || len > room) return std::nullopt;
  if (p.chunk == kSctpInit || p.chunk == kSctpInitAck) {
    if (len < 20) return std::nullopt;
    p.initiate_tag = Get32(c + 4);
    // Parameters follow the fixed part, each padded to 4 bytes.
    for (size_t at = 20; at + 4 <= len;) {
      const uint16_t type = Get16(c + at);
      const size_t plen = Get16(c + at + 2);
      if (plen < 4 || at + plen > len) return std::nullopt;
      if (type == kSctpStateCookie) {
        p.cookie.assign(reinterpret_cast<const char*>(c + at + 4), plen - 4);
      }
      at += (plen + 3) / 4 * 4;
    }
  }
  return p;
}

std::vector<uint8_t> IcmpEcho(bool v6, uint16_t id, uint16_t seq, std::string_view payload) {
  std::vector<uint8_t> b(kIcmpHeader + payload.size());
  b[0] = v6 ? 128 : 8;  // echo request
  Put16(b, 4, id);
  Put16(b, 6, seq);
  std::copy(payload.begin(), payload.end(), b.begin() + kIcmpHeader);
  if (!v6) Put16(b, 2, InternetChecksum(b));
  return b;
}

bool IsEchoReply(bool v6, const uint8_t* data, size_t size, uint16_t id, uint16_t seq) {
  if (size < kIcmpHeader) return false;
  return data[0] == (v6 ? 129 : 0) && data[1] == 0 && Get16(data + 4) == id &&
         Get16(data + 6) == seq;
}

const uint8_t* SkipIpv4Header(const uint8_t* data, size_t size, size_t* payload_size) {
  if (size < 20) return nullptr;
  const size_t ihl = static_cast<size_t>(data[0] & 0x0fU) * 4;
  if (ihl < 20 || ihl > size) return nullptr;
  *payload_size = size - ihl;
  return data + ihl;
}

}  // namespace bulkhead::lab
