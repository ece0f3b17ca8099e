#include <arpa/inet.h>
#include <netinet/in.h>

#include <catch2/catch.hpp>

#include <string>

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

AuthLimiter::Policy policy() {
  AuthLimiter::Policy p;
  p.free_failures = 3;
  p.window_ms = 10000;
  p.base_delay_ms = 100;
  p.max_delay_ms = 1000;
  return p;
}

TEST_CASE("auth limiter: delays double past the free failures, up to the cap", "[auth_limiter]") {
  const auto p = policy();
  CHECK(AuthLimiter::delay_for(p, 1) == 0);
  CHECK(AuthLimiter::delay_for(p, 3) == 0);
  CHECK(AuthLimiter::delay_for(p, 4) == 100);
  CHECK(AuthLimiter::delay_for(p, 5) == 200);
  CHECK(AuthLimiter::delay_for(p, 7) == 800);
  CHECK(AuthLimiter::delay_for(p, 8) == 1000);
  CHECK(AuthLimiter::delay_for(p, 4000000000u) == 1000);  // no overflow
  auto off = p;
  off.free_failures = 0;
  CHECK(AuthLimiter::delay_for(off, 100) == 0);
  off = p;
  off.base_delay_ms = 0;
  CHECK(AuthLimiter::delay_for(off, 100) == 0);
  // Forgotten after the window, but never before twice the longest delay.
  CHECK(p.forget_ms() == 10000);
  off = p;
  off.max_delay_ms = 8000;
  CHECK(off.forget_ms() == 16000);
}

TEST_CASE("auth limiter: per address and user; forgotten after a quiet window", "[auth_limiter]") {
  AuthLimiter l;
  const auto p = policy();
  const PeerAddress a = v4("127.0.0.2");
  const PeerAddress b = v4("127.0.0.3");
  uint64_t t = 1000;
  for (int i = 0; i < 3; ++i) CHECK(l.failed(a, "app", t++, p) == 0);
  CHECK(l.failed(a, "app", t++, p) == 100);
  CHECK(l.failed(a, "app", t++, p) == 200);
  // Another user from the same address, the same user from another: afresh.
  CHECK(l.failed(a, "other", t, p) == 0);
  CHECK(l.failed(b, "app", t, p) == 0);
  // Still counted just before the window of quiet ends, forgotten at its end.
  CHECK(l.failed(a, "app", t + 9998, p) == 400);  // the previous one was at t - 1
  t += 9998;
  CHECK(l.failed(a, "app", t + 10000, p) == 0);
  const auto totals = l.totals(t + 10000, p);
  CHECK(totals.delayed == 3);
  CHECK(totals.delay_ms_sum == 700);
  CHECK(totals.delayed_addresses == 0);  // a's "app" has one failure again
  // Unix-socket clients are never delayed.
  PeerAddress none;
  for (int i = 0; i < 10; ++i) CHECK(l.failed(none, "app", t, p) == 0);
}

TEST_CASE("auth limiter: top lists the most failures with their delays", "[auth_limiter]") {
  AuthLimiter l;
  const auto p = policy();
  const PeerAddress a = v4("10.0.0.1");
  const PeerAddress b = v4("10.0.0.2");
  for (int i = 0; i < 5; ++i) (void)l.failed(a, "app", 100, p);
  (void)l.failed(b, "app", 100, p);
  bool log = false;
  uint64_t suppressed = 0;
  REQUIRE(l.login_started(a, 10, 100, log, suppressed));
  auto rows = l.top(10, 150, p);
  REQUIRE(rows.size() == 2);
  CHECK(rows[0].addr == a);
  CHECK(rows[0].user == "app");
  CHECK(rows[0].failures == 5);
  CHECK(rows[0].last_delay_ms == 200);
  CHECK(rows[0].next_delay_ms == 400);
  CHECK(rows[0].idle_ms == 50);
  CHECK(rows[0].logins == 1);
  CHECK(rows[1].addr == b);
  CHECK(rows[1].next_delay_ms == 0);
  CHECK(l.top(1, 150, p).size() == 1);
  CHECK(l.totals(150, p).delayed_addresses == 1);
  l.login_ended(a);
  CHECK(l.top(10, 150, p)[0].logins == 0);
}

TEST_CASE("auth limiter: logins in progress capped per address", "[auth_limiter]") {
  AuthLimiter l;
  const PeerAddress a = v4("10.0.0.1");
  const PeerAddress b = v4("10.0.0.2");
  bool log = false;
  uint64_t suppressed = 0;
  CHECK(l.login_started(a, 2, 1000, log, suppressed));
  CHECK(l.login_started(a, 2, 1000, log, suppressed));
  CHECK_FALSE(l.login_started(a, 2, 1000, log, suppressed));
  CHECK(log);  // the first refusal is logged
  CHECK_FALSE(l.login_started(a, 2, 1500, log, suppressed));
  CHECK_FALSE(log);  // within a second: not logged, counted
  CHECK_FALSE(l.login_started(a, 2, 2000, log, suppressed));
  CHECK(log);
  CHECK(suppressed == 1);
  CHECK(l.login_started(b, 2, 2000, log, suppressed));  // other addresses unaffected
  l.login_ended(a);
  CHECK(l.login_started(a, 2, 2000, log, suppressed));
  CHECK(l.totals(2000, policy()).refused == 3);
  CHECK(l.totals(2000, policy()).logins == 3);
  // No cap, and unix sockets, always start.
  for (int i = 0; i < 100; ++i) CHECK(l.login_started(b, 0, 2000, log, suppressed));
  CHECK(l.login_started(PeerAddress{}, 1, 2000, log, suppressed));
}

TEST_CASE("auth limiter: bounded table", "[auth_limiter]") {
  AuthLimiter l;
  const auto p = policy();
  for (uint32_t i = 0; i < 20000; ++i) {
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(0x0a000000u + i);
    (void)l.failed(PeerAddress::from_sockaddr(reinterpret_cast<const sockaddr*>(&sa)), "u", 10, p);
  }
  CHECK(l.size(10, p) == AuthLimiter::kSets * AuthLimiter::kWays);
  CHECK(l.size(10 + p.forget_ms(), p) == 0);
}

TEST_CASE("auth limiter: failures under other names do not push out a delayed entry",
          "[auth_limiter]") {
  AuthLimiter l;
  const auto p = policy();
  const PeerAddress a = v4("10.9.9.9");
  for (int i = 0; i < 8; ++i) (void)l.failed(a, "victim", 100, p);
  // Far more (address, user) pairs than the table holds, one failure each.
  for (uint32_t i = 0; i < 50000; ++i) {
    (void)l.failed(a, "junk" + std::to_string(i), 200, p);
  }
  CHECK(l.failed(a, "victim", 300, p) == 1000);  // its 9th failure: still at the cap
}
