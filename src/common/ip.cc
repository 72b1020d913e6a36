// Parsing, formatting and prefix arithmetic for IpAddr and Cidr.
#include "common/ip.h"

#include <arpa/inet.h>

#include <charconv>

namespace bulkhead::common {

std::optional<IpAddr> IpAddr::Parse(std::string_view text) {
  std::string s(text);
  IpAddr ip;
  if (s.find(':') != std::string::npos) {
    ip.v6 = true;
    if (inet_pton(AF_INET6, s.c_str(), ip.bytes.data()) != 1) return std::nullopt;
    return ip;
  }
  if (inet_pton(AF_INET, s.c_str(), ip.bytes.data()) != 1) return std::nullopt;
  return ip;
}

IpAddr IpAddr::V4(uint32_t host_order) {
  IpAddr ip;
  ip.bytes[0] = static_cast<uint8_t>(host_order >> 24);
  ip.bytes[1] = static_cast<uint8_t>(host_order >> 16);
  ip.bytes[2] = static_cast<uint8_t>(host_order >> 8);
  ip.bytes[3] = static_cast<uint8_t>(host_order);
  return ip;
}

uint32_t IpAddr::V4HostOrder() const {
  return (uint32_t{bytes[0]} << 24) | (uint32_t{bytes[1]} << 16) | (uint32_t{bytes[2]} << 8) |
         uint32_t{bytes[3]};
}

std::string IpAddr::ToString() const {
  char buf[INET6_ADDRSTRLEN] = {};
  inet_ntop(v6 ? AF_INET6 : AF_INET, bytes.data(), buf, sizeof(buf));
  return buf;
}

namespace {
IpAddr MaskTo(IpAddr ip, int prefix_len, bool set_host_bits) {
  int width = ip.BitWidth();
  for (int i = prefix_len; i < width; ++i) {
    uint8_t mask = static_cast<uint8_t>(1u << (7 - i % 8));
    if (set_host_bits) {
      ip.bytes[i / 8] |= mask;
    } else {
      ip.bytes[i / 8] &= static_cast<uint8_t>(~mask);
    }
  }
  return ip;
}
}  // namespace

std::optional<Cidr> Cidr::Parse(std::string_view text, bool strict) {
  auto slash = text.find('/');
  auto ip = IpAddr::Parse(text.substr(0, slash));
  if (!ip) return std::nullopt;
  int len = ip->BitWidth();
  if (slash != std::string_view::npos) {
    auto digits = text.substr(slash + 1);
    if (digits.empty() || digits.size() > 3) return std::nullopt;
    auto [ptr, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), len);
    if (ec != std::errc() || ptr != digits.data() + digits.size()) return std::nullopt;
    if (len < 0 || len > ip->BitWidth()) return std::nullopt;
  }
  Cidr c{MaskTo(*ip, len, false), len};
  if (strict && c.addr != *ip) return std::nullopt;
  return c;
}

std::string Cidr::ToString() const { return addr.ToString() + "/" + std::to_string(prefix_len); }

bool Cidr::Contains(const IpAddr& ip) const {
  if (ip.v6 != addr.v6) return false;
  return MaskTo(ip, prefix_len, false) == addr;
}

bool Cidr::Contains(const Cidr& other) const {
  return other.addr.v6 == addr.v6 && other.prefix_len >= prefix_len && Contains(other.addr);
}

IpAddr Cidr::First() const { return addr; }
IpAddr Cidr::Last() const { return MaskTo(addr, prefix_len, true); }

std::optional<IpAddr> NextAddr(const IpAddr& ip) {
  IpAddr r = ip;
  for (int i = ip.BitWidth() / 8 - 1; i >= 0; --i) {
    if (++r.bytes[i] != 0) return r;
  }
  return std::nullopt;
}

std::optional<IpAddr> PrevAddr(const IpAddr& ip) {
  IpAddr r = ip;
  for (int i = ip.BitWidth() / 8 - 1; i >= 0; --i) {
    if (r.bytes[i]-- != 0) return r;
  }
  return std::nullopt;
}

}  // namespace bulkhead::common
