#include "daemon/core/auth_limiter.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <cstring>

namespace sqlmux {

std::string PeerAddress::text() const {
  char buf[INET6_ADDRSTRLEN] = "";
  if (family == 4) {
    inet_ntop(AF_INET, bytes.data(), buf, sizeof buf);
  } else if (family == 6) {
    inet_ntop(AF_INET6, bytes.data(), buf, sizeof buf);
  } else {
    return "local";
  }
  return buf;
}

PeerAddress PeerAddress::from_sockaddr(const sockaddr* sa) {
  PeerAddress a;
  if (sa->sa_family == AF_INET) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(sa);
    a.family = 4;
    std::memcpy(a.bytes.data(), &in->sin_addr, 4);
  } else if (sa->sa_family == AF_INET6) {
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(sa);
    if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr)) {  // ::ffff:a.b.c.d is a.b.c.d
      a.family = 4;
      std::memcpy(a.bytes.data(), in6->sin6_addr.s6_addr + 12, 4);
    } else {
      a.family = 6;
      std::memcpy(a.bytes.data(), in6->sin6_addr.s6_addr, 16);
    }
  }
  return a;
}

PeerAddress PeerAddress::of_socket(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (::getpeername(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return {};
  return from_sockaddr(reinterpret_cast<const sockaddr*>(&ss));
}

size_t AuthLimiter::set_of(const PeerAddress& a) {
  // FNV-1a over the address bytes.
  uint64_t h = 1469598103934665603ull ^ a.family;
  for (uint8_t b : a.bytes) h = (h ^ b) * 1099511628211ull;
  return static_cast<size_t>(h % kSets);
}

bool AuthLimiter::expired(const Entry& e, uint64_t now_ms, uint64_t window_ms) {
  if (e.window_start == 0) return true;
  if (e.blocked_until != 0) return now_ms >= e.blocked_until;
  // Sums, not differences: another worker's loop time may be a little older.
  return now_ms >= e.window_start + window_ms;
}

AuthLimiter::Verdict AuthLimiter::check(const PeerAddress& a, uint64_t now_ms, uint64_t& retry_ms) {
  if (!a.valid() || blocked_.load(std::memory_order_relaxed) == 0) return Verdict::Allow;
  std::lock_guard lk(mu_);
  Entry* set = &table_[set_of(a) * kWays];
  for (size_t i = 0; i < kWays; ++i) {
    Entry& e = set[i];
    if (e.window_start == 0 || !(e.addr == a) || e.blocked_until == 0) continue;
    if (now_ms < e.blocked_until) {
      retry_ms = e.blocked_until - now_ms;
      return Verdict::Refuse;
    }
    // Cool-down over: the address starts afresh.
    e = Entry{};
    blocked_.fetch_sub(1, std::memory_order_relaxed);
  }
  return Verdict::Allow;
}

bool AuthLimiter::failed(const PeerAddress& a, uint64_t now_ms, uint32_t limit,
                         uint64_t window_ms) {
  if (!a.valid() || limit == 0) return false;
  if (now_ms == 0) now_ms = 1;  // 0 marks a free entry
  std::lock_guard lk(mu_);
  Entry* set = &table_[set_of(a) * kWays];
  Entry* hit = nullptr;
  for (size_t i = 0; i < kWays && hit == nullptr; ++i) {
    if (set[i].window_start != 0 && set[i].addr == a) hit = &set[i];
  }
  Entry* victim = nullptr;  // a free or expired entry, else the oldest
  for (size_t i = 0; i < kWays && hit == nullptr; ++i) {
    Entry& e = set[i];
    if (expired(e, now_ms, window_ms)) {
      victim = &e;
      break;
    }
    if (victim == nullptr || e.window_start < victim->window_start) victim = &e;
  }
  if (hit == nullptr) {
    hit = victim;
    if (hit->blocked_until != 0) blocked_.fetch_sub(1, std::memory_order_relaxed);
    *hit = Entry{a, now_ms, 0, 0};
  } else if (hit->blocked_until == 0 && now_ms >= hit->window_start + window_ms) {
    hit->window_start = now_ms;  // a new window
    hit->failures = 0;
  } else if (hit->blocked_until != 0) {
    if (now_ms < hit->blocked_until) return false;  // refused logins do not get here
    blocked_.fetch_sub(1, std::memory_order_relaxed);
    *hit = Entry{a, now_ms, 0, 0};
  }
  if (++hit->failures < limit) return false;
  hit->blocked_until = now_ms + window_ms;
  blocked_.fetch_add(1, std::memory_order_relaxed);
  return true;
}

size_t AuthLimiter::size() {
  std::lock_guard lk(mu_);
  size_t n = 0;
  for (const Entry& e : table_) n += e.window_start != 0 ? 1 : 0;
  return n;
}

}  // namespace sqlmux
