// Unit tests for address and prefix parsing, containment and arithmetic.
#include "common/ip.h"

#include <gtest/gtest.h>

namespace bulkhead::common {
namespace {

TEST(IpAddr, ParsesAndFormatsBothFamilies) {
  auto v4 = IpAddr::Parse("10.1.2.3");
  ASSERT_TRUE(v4);
  EXPECT_FALSE(v4->v6);
  EXPECT_EQ(v4->ToString(), "10.1.2.3");
  EXPECT_EQ(v4->V4HostOrder(), 0x0a010203u);
  auto v6 = IpAddr::Parse("fd00::1");
  ASSERT_TRUE(v6);
  EXPECT_TRUE(v6->v6);
  EXPECT_EQ(v6->ToString(), "fd00::1");
  EXPECT_FALSE(IpAddr::Parse("10.1.2"));
  EXPECT_FALSE(IpAddr::Parse("fd00:::1"));
  EXPECT_FALSE(IpAddr::Parse(""));
}

TEST(Cidr, ParsesMasksAndContains) {
  auto c = Cidr::Parse("10.1.2.3/16");
  ASSERT_TRUE(c);
  EXPECT_EQ(c->ToString(), "10.1.0.0/16");
  EXPECT_FALSE(Cidr::Parse("10.1.2.3/16", /*strict=*/true));
  EXPECT_TRUE(c->Contains(*IpAddr::Parse("10.1.255.255")));
  EXPECT_FALSE(c->Contains(*IpAddr::Parse("10.2.0.0")));
  EXPECT_FALSE(c->Contains(*IpAddr::Parse("::a01:0")));
  EXPECT_TRUE(c->Contains(*Cidr::Parse("10.1.4.0/24")));
  EXPECT_FALSE(Cidr::Parse("10.1.4.0/24")->Contains(*c));
  EXPECT_EQ(c->Last().ToString(), "10.1.255.255");
  EXPECT_FALSE(Cidr::Parse("10.0.0.0/33"));
  EXPECT_FALSE(Cidr::Parse("10.0.0.0/"));
  EXPECT_FALSE(Cidr::Parse("10.0.0.0/8x"));
  auto all6 = Cidr::Parse("::/0");
  ASSERT_TRUE(all6);
  EXPECT_TRUE(all6->Contains(*IpAddr::Parse("2001:db8::1")));
  EXPECT_EQ(Cidr::Parse("1.2.3.4")->prefix_len, 32);
}

TEST(IpAddr, NextAndPrevStopAtTheEdges) {
  EXPECT_EQ(NextAddr(*IpAddr::Parse("10.0.0.255"))->ToString(), "10.0.1.0");
  EXPECT_EQ(PrevAddr(*IpAddr::Parse("10.0.1.0"))->ToString(), "10.0.0.255");
  EXPECT_FALSE(NextAddr(*IpAddr::Parse("255.255.255.255")));
  EXPECT_FALSE(PrevAddr(*IpAddr::Parse("0.0.0.0")));
  EXPECT_FALSE(NextAddr(*IpAddr::Parse("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")));
}

}  // namespace
}  // namespace bulkhead::common
