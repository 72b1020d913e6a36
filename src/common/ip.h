// IPv4/IPv6 addresses and CIDR prefixes as plain values, with parsing and formatting.
#pragma once

#include <array>
#include <compare>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace bulkhead::common {

// An IPv4 or IPv6 address. IPv4 is stored in the first four bytes of `bytes`.
struct IpAddr {
  bool v6 = false;
  std::array<uint8_t, 16> bytes{};

  static std::optional<IpAddr> Parse(std::string_view text);
  static IpAddr V4(uint32_t host_order);
  std::string ToString() const;
  int BitWidth() const { return v6 ? 128 : 32; }
  // Value of bit `i` (0 = most significant).
  bool Bit(int i) const { return (bytes[i / 8] >> (7 - i % 8)) & 1; }
  uint32_t V4HostOrder() const;

  // clang-tidy 14 misreads the defaulted comparison as a literal-0 comparison.
  auto operator<=>(const IpAddr&) const = default;  // NOLINT(modernize-use-nullptr)
  bool operator==(const IpAddr&) const = default;
};

// A prefix: the address with all host bits cleared, and its length.
struct Cidr {
  IpAddr addr;
  int prefix_len = 0;

  // Accepts "a.b.c.d/n", "x::y/n" and a bare address (as a full-length prefix).
  // Rejects host bits set only when `strict` is true.
  static std::optional<Cidr> Parse(std::string_view text, bool strict = false);
  std::string ToString() const;
  bool Contains(const IpAddr& ip) const;
  bool Contains(const Cidr& other) const;
  // First and last address of the prefix.
  IpAddr First() const;
  IpAddr Last() const;

  // clang-tidy 14 misreads the defaulted comparison as a literal-0 comparison.
  auto operator<=>(const Cidr&) const = default;  // NOLINT(modernize-use-nullptr)
  bool operator==(const Cidr&) const = default;
};

// Address arithmetic used by range splitting: returns nullopt on overflow/underflow.
std::optional<IpAddr> NextAddr(const IpAddr& ip);
std::optional<IpAddr> PrevAddr(const IpAddr& ip);

}  // namespace bulkhead::common
