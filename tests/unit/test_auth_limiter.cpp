#include <arpa/inet.h>
#include <netinet/in.h>

#include <catch2/catch.hpp>

#include "daemon/core/auth_limiter.h"

using sqlmux::AuthLimiter;
using sqlmux::PeerAddress;

namespace {

PeerAddress v4(const char* text) {
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  REQUIRE(inet_pton(AF_INET, text, &sa.sin_addr) == 1);
  return PeerAddress::from_sockaddr(reinterpret_cast<const sockaddr*>(&sa));
}

PeerAddress v6(const char* text) {
  sockaddr_in6 sa{};
  sa.sin6_family = AF_INET6;
  REQUIRE(inet_pton(AF_INET6, text, &sa.sin6_addr) == 1);
  return PeerAddress::from_sockaddr(reinterpret_cast<const sockaddr*>(&sa));
}

}  // namespace

TEST_CASE("auth limiter: addresses", "[auth_limiter]") {
  CHECK(v4("127.0.0.2").text() == "127.0.0.2");
  CHECK(v6("::1").text() == "::1");
  CHECK(v6("::ffff:10.1.2.3") == v4("10.1.2.3"));
  sockaddr sa{};
  sa.sa_family = AF_UNIX;
  CHECK_FALSE(PeerAddress::from_sockaddr(&sa).valid());
}

TEST_CASE("auth limiter: refuses after the limit until the window ends", "[auth_limiter]") {
  AuthLimiter l;
  const PeerAddress bad = v4("127.0.0.2");
  const PeerAddress good = v4("127.0.0.1");
  uint64_t retry = 0;
  uint64_t t = 1000;
  for (int i = 0; i < 4; ++i) {
    CHECK(l.check(bad, t, retry) == AuthLimiter::Verdict::Allow);
    CHECK_FALSE(l.failed(bad, t, 5, 10000));
    t += 100;
  }
  CHECK(l.check(bad, t, retry) == AuthLimiter::Verdict::Allow);
  CHECK(l.failed(bad, t, 5, 10000));  // the fifth: limit reached (reported once)
  CHECK(l.check(bad, t + 1, retry) == AuthLimiter::Verdict::Refuse);
  CHECK(retry == 9999);
  CHECK(l.check(good, t + 1, retry) == AuthLimiter::Verdict::Allow);
  CHECK(l.check(bad, t + 10000, retry) == AuthLimiter::Verdict::Allow);  // cool-down over
  // A fresh start: one failure is not enough.
  CHECK_FALSE(l.failed(bad, t + 10001, 5, 10000));
  CHECK(l.check(bad, t + 10002, retry) == AuthLimiter::Verdict::Allow);
}

TEST_CASE("auth limiter: failures spread over windows do not add up", "[auth_limiter]") {
  AuthLimiter l;
  const PeerAddress a = v6("2001:db8::7");
  uint64_t retry = 0;
  for (uint64_t t = 1; t < 100000; t += 3000) CHECK_FALSE(l.failed(a, t, 5, 10000));
  CHECK(l.check(a, 100000, retry) == AuthLimiter::Verdict::Allow);
}

TEST_CASE("auth limiter: bounded table, unix sockets and limit 0 never limited", "[auth_limiter]") {
  AuthLimiter l;
  uint64_t retry = 0;
  for (uint32_t i = 0; i < 100000; ++i) {
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(0x0a000000u + i);
    (void)l.failed(PeerAddress::from_sockaddr(reinterpret_cast<const sockaddr*>(&sa)), 5, 1, 10000);
  }
  CHECK(l.size() == AuthLimiter::kSets * AuthLimiter::kWays);
  PeerAddress none;
  for (int i = 0; i < 10; ++i) CHECK_FALSE(l.failed(none, 10, 1, 10000));
  CHECK(l.check(none, 11, retry) == AuthLimiter::Verdict::Allow);
  const PeerAddress a = v4("192.0.2.1");
  for (int i = 0; i < 10; ++i) CHECK_FALSE(l.failed(a, 10, 0, 10000));
  CHECK(l.check(a, 11, retry) == AuthLimiter::Verdict::Allow);
}
