// The SCTP and ICMP packets of the lab's raw sockets: CRC32c against published check values,
// the packets' layout byte by byte, round trips through the parser, and corrupt input refused.
#include "lab/raw_packets.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace bulkhead::lab {
namespace {

TEST(LabRawPackets, Crc32cCheckValues) {
  const std::string digits = "123456789";
  EXPECT_EQ(Crc32c(reinterpret_cast<const uint8_t*>(digits.data()), digits.size()), 0xE3069283U);
  // RFC 3720 B.4: 32 bytes of zeros; 32 bytes of 0xff.
  std::vector<uint8_t> zeros(32, 0);
  EXPECT_EQ(Crc32c(zeros.data(), zeros.size()), 0x8A9136AAU);
  std::vector<uint8_t> ones(32, 0xff);
  EXPECT_EQ(Crc32c(ones.data(), ones.size()), 0x62A8AB43U);
}

TEST(LabRawPackets, InitLayout) {
  std::vector<uint8_t> p = SctpInit(40000, 80, 0x01020304);
  ASSERT_EQ(p.size(), 32u);  // common header 12 + INIT chunk 20
  EXPECT_EQ(p[0] << 8 | p[1], 40000);
  EXPECT_EQ(p[2] << 8 | p[3], 80);
  EXPECT_EQ(p[4] | p[5] | p[6] | p[7], 0);  // an INIT's verification tag is 0
  EXPECT_EQ(p[12], kSctpInit);
  EXPECT_EQ(p[14] << 8 | p[15], 20);  // chunk length
  EXPECT_EQ(std::vector<uint8_t>(p.begin() + 16, p.begin() + 20),
            (std::vector<uint8_t>{1, 2, 3, 4}));  // initiate tag
  // The checksum, least significant byte first, over the packet with the field zero.
  std::vector<uint8_t> zeroed = p;
  for (int i = 8; i < 12; ++i) zeroed[i] = 0;
  uint32_t crc = Crc32c(zeroed.data(), zeroed.size());
  EXPECT_EQ(p[8] | p[9] << 8 | p[10] << 16 | static_cast<uint32_t>(p[11]) << 24, crc);

  auto parsed = ParseSctp(p.data(), p.size());
  ASSERT_TRUE(parsed.has_value());
  EXPECT_EQ(parsed->src_port, 40000);
  EXPECT_EQ(parsed->dst_port, 80);
  EXPECT_EQ(parsed->vtag, 0u);
  EXPECT_EQ(parsed->chunk, kSctpInit);
  EXPECT_EQ(parsed->initiate_tag, 0x01020304U);
}

TEST(LabRawPackets, InitAckCarriesTheCookiePadded) {
  // "x/a\n" is 4 bytes; "ns/b\n" is 5 and needs 3 bytes of padding.
  for (std::string cookie : {"x/a\n", "ns/b\n"}) {
    std::vector<uint8_t> p = SctpInitAck(80, 40000, 0xAABBCCDD, 0x11223344, cookie);
    EXPECT_EQ(p.size() % 4, 0u) << cookie;
    const size_t chunk_len = static_cast<size_t>(p[14] << 8 | p[15]);
    EXPECT_EQ(chunk_len, 20 + 4 + cookie.size()) << "the last parameter's padding is not counted";
    auto parsed = ParseSctp(p.data(), p.size());
    ASSERT_TRUE(parsed.has_value()) << cookie;
    EXPECT_EQ(parsed->chunk, kSctpInitAck);
    EXPECT_EQ(parsed->vtag, 0xAABBCCDDU);  // the INIT's initiate tag
    EXPECT_EQ(parsed->initiate_tag, 0x11223344U);
    EXPECT_EQ(parsed->src_port, 80);
    EXPECT_EQ(parsed->dst_port, 40000);
    EXPECT_EQ(parsed->cookie, cookie);
  }
}

TEST(LabRawPackets, Abort) {
  std::vector<uint8_t> p = SctpAbort(80, 40000, 0x0A0B0C0D);
  ASSERT_EQ(p.size(), 16u);
  auto parsed = ParseSctp(p.data(), p.size());
  ASSERT_TRUE(parsed.has_value());
  EXPECT_EQ(parsed->chunk, kSctpAbort);
  EXPECT_EQ(parsed->chunk_flags, 0);  // T bit clear: the tag is the peer's
  EXPECT_EQ(parsed->vtag, 0x0A0B0C0DU);
}

TEST(LabRawPackets, CorruptSctpIsRefused) {
  std::vector<uint8_t> p = SctpInitAck(80, 40000, 1, 2, "x/a\n");
  for (size_t i = 0; i < p.size(); ++i) {
    std::vector<uint8_t> bad = p;
    bad[i] ^= 0x40;
    EXPECT_FALSE(ParseSctp(bad.data(), bad.size()).has_value()) << "byte " << i;
  }
  EXPECT_FALSE(ParseSctp(p.data(), 15).has_value());  // shorter than header and chunk header
  EXPECT_FALSE(ParseSctp(p.data(), p.size() - 4).has_value());  // checksum no longer matches
  // A chunk length beyond the packet, with a valid checksum.
  std::vector<uint8_t> init = SctpInit(1, 2, 3);
  init[14] = 0x01;  // length 256 + 20
  for (int i = 8; i < 12; ++i) init[i] = 0;
  uint32_t crc = Crc32c(init.data(), init.size());
  for (int i = 0; i < 4; ++i) init[8 + i] = static_cast<uint8_t>(crc >> (8 * i));
  EXPECT_FALSE(ParseSctp(init.data(), init.size()).has_value());
}

TEST(LabRawPackets, IcmpEcho) {
  std::vector<uint8_t> v4 = IcmpEcho(false, 0x1234, 7, "abc");  // odd length
  ASSERT_EQ(v4.size(), 11u);
  EXPECT_EQ(v4[0], 8);  // echo request
  // The Internet checksum of a correct packet sums to 0xffff.
  uint32_t sum = 0;
  for (size_t i = 0; i < v4.size(); i += 2) {
    sum += static_cast<uint32_t>(v4[i] << 8) | (i + 1 < v4.size() ? v4[i + 1] : 0);
  }
  while ((sum >> 16) != 0) sum = (sum & 0xffffU) + (sum >> 16);
  EXPECT_EQ(sum, 0xffffU);
  std::vector<uint8_t> v6 = IcmpEcho(true, 0x1234, 7, "abc");
  EXPECT_EQ(v6[0], 128);
  EXPECT_EQ(v6[2] | v6[3], 0);  // the kernel fills it in for ICMPv6

  // A reply is the request with the type changed.
  std::vector<uint8_t> reply = v4;
  reply[0] = 0;
  EXPECT_TRUE(IsEchoReply(false, reply.data(), reply.size(), 0x1234, 7));
  EXPECT_FALSE(IsEchoReply(false, reply.data(), reply.size(), 0x1235, 7));
  EXPECT_FALSE(IsEchoReply(false, reply.data(), reply.size(), 0x1234, 8));
  EXPECT_FALSE(IsEchoReply(false, v4.data(), v4.size(), 0x1234, 7));  // a request
  EXPECT_FALSE(IsEchoReply(true, reply.data(), reply.size(), 0x1234, 7));
  reply = v6;
  reply[0] = 129;
  EXPECT_TRUE(IsEchoReply(true, reply.data(), reply.size(), 0x1234, 7));
  EXPECT_FALSE(IsEchoReply(true, reply.data(), 7, 0x1234, 7));
}

TEST(LabRawPackets, SkipIpv4Header) {
  std::vector<uint8_t> packet(28, 0);
  packet[0] = 0x45;  // version 4, 5 words
  size_t size = 0;
  EXPECT_EQ(SkipIpv4Header(packet.data(), packet.size(), &size), packet.data() + 20);
  EXPECT_EQ(size, 8u);
  packet[0] = 0x46;  // with options
  EXPECT_EQ(SkipIpv4Header(packet.data(), packet.size(), &size), packet.data() + 24);
  packet[0] = 0x4f;  // 60 bytes of header in 28
  EXPECT_EQ(SkipIpv4Header(packet.data(), packet.size(), &size), nullptr);
  EXPECT_EQ(SkipIpv4Header(packet.data(), 10, &size), nullptr);
}

}  // namespace
}  // namespace bulkhead::lab
