// Crafted Ethernet frames for BPF tests: headers written byte by byte, in network order.
#include "packet.h"

#include <arpa/inet.h>

#include <cstdlib>
#include <iostream>

namespace bulkhead::bpftest {
namespace {

void Put16(std::vector<uint8_t>& b, uint16_t v) {
  b.push_back(static_cast<uint8_t>(v >> 8));
  b.push_back(static_cast<uint8_t>(v));
}
void Put32(std::vector<uint8_t>& b, uint32_t v) {
  Put16(b, static_cast<uint16_t>(v >> 16));
  Put16(b, static_cast<uint16_t>(v));
}

uint16_t Checksum(const uint8_t* data, size_t len) {
  uint32_t sum = 0;
  for (size_t i = 0; i + 1 < len; i += 2) sum += (data[i] << 8) | data[i + 1];
  if (len % 2) sum += data[len - 1] << 8;
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return static_cast<uint16_t>(~sum);
}

// The L4 header and payload (or, for a later fragment, only payload).
std::vector<uint8_t> L4(const Packet& p) {
  std::vector<uint8_t> b;
  const bool later = p.fragment && p.frag_offset > 0;
  if (!later) {
    switch (p.protocol) {
      case kTcp:
        Put16(b, p.sport);
        Put16(b, p.dport);
        Put32(b, 1000);                        // seq
        Put32(b, p.tcp_flags & kAck ? 1 : 0);  // ack
        b.push_back(5 << 4);                   // data offset: 20 bytes
        b.push_back(p.tcp_flags);
        Put16(b, 0xffff);  // window
        Put16(b, 0);       // checksum (the datapath does not verify it)
        Put16(b, 0);       // urgent
        break;
      case kUdp:
        Put16(b, p.sport);
        Put16(b, p.dport);
        Put16(b, static_cast<uint16_t>(8 + p.payload));
        Put16(b, 0);
        break;
      case kSctp:
        Put16(b, p.sport);
        Put16(b, p.dport);
        Put32(b, 0x01020304);  // verification tag
        Put32(b, 0);           // checksum
        b.push_back(p.sctp_chunk);
        b.push_back(0);
        Put16(b, 4);
        break;
      case kIcmp:
      case kIcmp6:
        b.push_back(p.icmp_type);
        b.push_back(p.icmp_code);
        Put16(b, 0);
        Put16(b, p.icmp_id);
        Put16(b, 1);  // sequence (unused field for errors)
        break;
      default:
        break;
    }
    if (p.l4_bytes > 0 && p.l4_bytes < b.size()) b.resize(p.l4_bytes);
  }
  if (!p.quoted.empty()) {
    b.insert(b.end(), p.quoted.begin(), p.quoted.end());
  } else if (p.l4_bytes == 0) {
    b.insert(b.end(), p.payload, 0xab);
  }
  return b;
}

}  // namespace

Ip Ip::Parse(const std::string& text) {
  Ip ip;
  if (inet_pton(AF_INET, text.c_str(), ip.bytes.data()) == 1) {
    ip.family = 4;
  } else if (inet_pton(AF_INET6, text.c_str(), ip.bytes.data()) == 1) {
    ip.family = 6;
  } else {
    std::cerr << "bad address in test: " << text << "\n";
    std::abort();
  }
  return ip;
}

std::string Ip::ToString() const {
  char buf[INET6_ADDRSTRLEN];
  inet_ntop(family == 4 ? AF_INET : AF_INET6, bytes.data(), buf, sizeof(buf));
  return buf;
}

std::vector<uint8_t> IpPacket(const Packet& p) {
  std::vector<uint8_t> l4 = L4(p);
  std::vector<uint8_t> b;
  if (p.src.family == 4) {
    b.push_back(0x45);
    b.push_back(0);
    Put16(b, static_cast<uint16_t>(20 + l4.size()));
    Put16(b, static_cast<uint16_t>(p.frag_id));
    uint16_t frag =
        p.fragment
            ? static_cast<uint16_t>((p.more_fragments ? 0x2000 : 0) | (p.frag_offset & 0x1fff))
            : 0x4000;  // DF on unfragmented packets
    Put16(b, frag);
    b.push_back(64);
    b.push_back(p.protocol);
    Put16(b, 0);
    b.insert(b.end(), p.src.bytes.begin(), p.src.bytes.begin() + 4);
    b.insert(b.end(), p.dst.bytes.begin(), p.dst.bytes.begin() + 4);
    uint16_t sum = Checksum(b.data(), 20);
    b[10] = static_cast<uint8_t>(sum >> 8);
    b[11] = static_cast<uint8_t>(sum);
    b.insert(b.end(), l4.begin(), l4.end());
    return b;
  }

  // IPv6: extension headers (hop-by-hop first), then the fragment header, then L4.
  std::vector<uint8_t> ext;
  std::vector<uint8_t> next_types;
  for (int i = 0; i < p.ipv6_ext_headers; i++) next_types.push_back(i == 0 ? 0 : 60);
  if (p.fragment) next_types.push_back(44);
  for (size_t i = 0; i < next_types.size(); i++) {
    uint8_t next = i + 1 < next_types.size() ? next_types[i + 1] : p.protocol;
    if (next_types[i] == 44) {
      ext.push_back(next);
      ext.push_back(0);
      Put16(ext, static_cast<uint16_t>((p.frag_offset << 3) | (p.more_fragments ? 1 : 0)));
      Put32(ext, p.frag_id);
    } else {
      // 8 bytes: next header, length 0, PadN option filling the rest.
      ext.push_back(next);
      ext.push_back(0);
      ext.push_back(1);
      ext.push_back(4);
      Put32(ext, 0);
    }
  }
  b.push_back(0x60);
  b.push_back(0);
  Put16(b, 0);
  Put16(b, static_cast<uint16_t>(ext.size() + l4.size()));
  b.push_back(next_types.empty() ? p.protocol : next_types[0]);
  b.push_back(64);
  b.insert(b.end(), p.src.bytes.begin(), p.src.bytes.end());
  b.insert(b.end(), p.dst.bytes.begin(), p.dst.bytes.end());
  b.insert(b.end(), ext.begin(), ext.end());
  b.insert(b.end(), l4.begin(), l4.end());
  return b;
}

namespace {
std::vector<uint8_t> Ethernet(uint16_t ethertype) {
  std::vector<uint8_t> b = {0x02, 0, 0, 0, 0, 0x02, 0x02, 0, 0, 0, 0, 0x01};
  Put16(b, ethertype);
  return b;
}
}  // namespace

std::vector<uint8_t> Frame(const Packet& p) {
  std::vector<uint8_t> b = Ethernet(p.src.family == 4 ? 0x0800 : 0x86dd);
  std::vector<uint8_t> ip = IpPacket(p);
  b.insert(b.end(), ip.begin(), ip.end());
  return b;
}

std::vector<uint8_t> ArpFrame(const Ip& sender_ip, const Ip& target_ip) {
  std::vector<uint8_t> b = Ethernet(0x0806);
  Put16(b, 1);       // Ethernet
  Put16(b, 0x0800);  // IPv4
  b.push_back(6);
  b.push_back(4);
  Put16(b, 1);  // request
  for (int i = 0; i < 6; i++) b.push_back(i == 0 ? 0x02 : 0x01);
  b.insert(b.end(), sender_ip.bytes.begin(), sender_ip.bytes.begin() + 4);
  for (int i = 0; i < 6; i++) b.push_back(0);
  b.insert(b.end(), target_ip.bytes.begin(), target_ip.bytes.begin() + 4);
  return b;
}

std::vector<uint8_t> RawFrame(uint16_t ethertype) {
  std::vector<uint8_t> b = Ethernet(ethertype);
  b.insert(b.end(), 46, 0);
  return b;
}

Packet Tcp(const std::string& src, uint16_t sport, const std::string& dst, uint16_t dport,
           uint8_t flags) {
  Packet p;
  p.src = Ip::Parse(src);
  p.dst = Ip::Parse(dst);
  p.protocol = kTcp;
  p.sport = sport;
  p.dport = dport;
  p.tcp_flags = flags;
  return p;
}

Packet Udp(const std::string& src, uint16_t sport, const std::string& dst, uint16_t dport) {
  Packet p = Tcp(src, sport, dst, dport, 0);
  p.protocol = kUdp;
  return p;
}

Packet Sctp(const std::string& src, uint16_t sport, const std::string& dst, uint16_t dport,
            uint8_t chunk) {
  Packet p = Tcp(src, sport, dst, dport, 0);
  p.protocol = kSctp;
  p.sctp_chunk = chunk;
  return p;
}

Packet Echo(const std::string& src, const std::string& dst, bool request, uint16_t id) {
  Packet p;
  p.src = Ip::Parse(src);
  p.dst = Ip::Parse(dst);
  const bool v4 = p.src.family == 4;
  p.protocol = v4 ? kIcmp : kIcmp6;
  p.icmp_type = v4 ? (request ? 8 : 0) : (request ? 128 : 129);
  p.icmp_id = id;
  return p;
}

Packet Icmp(const std::string& src, const std::string& dst, uint8_t type, uint8_t code,
            std::vector<uint8_t> quoted) {
  Packet p;
  p.src = Ip::Parse(src);
  p.dst = Ip::Parse(dst);
  p.protocol = p.src.family == 4 ? kIcmp : kIcmp6;
  p.icmp_type = type;
  p.icmp_code = code;
  p.quoted = std::move(quoted);
  return p;
}

}  // namespace bulkhead::bpftest
