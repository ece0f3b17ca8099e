#include "daemon/core/auth_limiter.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <algorithm>
#include <cstring>
#include <random>
#include <unordered_set>

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

uint64_t PeerAddress::hash() const {
  // FNV-1a over the address bytes.
  uint64_t h = 1469598103934665603ull ^ family;
  for (uint8_t b : bytes) h = (h ^ b) * 1099511628211ull;
  return h;
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

AuthLimiter::Policy auth_policy(const config::ServerConfig& s) {
  AuthLimiter::Policy p;
  p.free_failures = s.auth_failure_limit;
  p.window_ms = static_cast<uint64_t>(s.auth_failure_window.count());
  p.base_delay_ms = static_cast<uint64_t>(s.auth_failure_delay.count());
  p.max_delay_ms = static_cast<uint64_t>(s.auth_failure_max_delay.count());
  return p;
}

uint64_t AuthLimiter::delay_for(const Policy& p, uint32_t n) {
  if (p.free_failures == 0 || p.base_delay_ms == 0 || n <= p.free_failures) return 0;
  const uint32_t doublings = std::min<uint32_t>(n - p.free_failures - 1, 40);
  const uint64_t d = p.base_delay_ms << doublings;
  return std::min(d >> doublings == p.base_delay_ms ? d : p.max_delay_ms, p.max_delay_ms);
}

AuthLimiter::AuthLimiter() : seed_(std::random_device{}()) {}

size_t AuthLimiter::set_of(const PeerAddress& a, std::string_view user) const {
  uint64_t h = a.hash() ^ seed_;
  for (char c : user) h = (h ^ static_cast<uint8_t>(c)) * 1099511628211ull;
  return static_cast<size_t>(h % kSets);
}

uint64_t AuthLimiter::failed(const PeerAddress& a, std::string_view user, uint64_t now_ms,
                             const Policy& p) {
  if (!a.valid() || p.free_failures == 0 || p.base_delay_ms == 0) return 0;
  if (now_ms == 0) now_ms = 1;  // 0 marks a free entry
  user = user.substr(0, kMaxUserBytes);
  std::lock_guard lk(mu_);
  Entry* set = &table_[set_of(a, user) * kWays];
  Entry* hit = nullptr;
  for (size_t i = 0; i < kWays && hit == nullptr; ++i) {
    if (set[i].last_ms != 0 && set[i].addr == a && set[i].user == user) hit = &set[i];
  }
  if (hit != nullptr && !live(*hit, now_ms, p)) hit->failures = 0;  // forgotten: afresh
  if (hit == nullptr) {
    // A free or forgotten entry, else the one with the fewest failures (the
    // oldest of those): failures under other user names cannot push out an
    // entry being delayed and so start its count afresh.
    for (size_t i = 0; i < kWays; ++i) {
      Entry& e = set[i];
      if (!live(e, now_ms, p)) {
        hit = &e;
        break;
      }
      if (hit == nullptr || e.failures < hit->failures ||
          (e.failures == hit->failures && e.last_ms < hit->last_ms)) {
        hit = &e;
      }
    }
    hit->addr = a;
    hit->user.assign(user);
    hit->failures = 0;
  }
  if (hit->failures < UINT32_MAX) ++hit->failures;
  // Another worker's loop time may be a little older: never backwards.
  hit->last_ms = std::max(hit->last_ms, now_ms);
  hit->last_delay_ms = delay_for(p, hit->failures);
  if (hit->last_delay_ms > 0) {
    ++delayed_;
    delay_ms_sum_ += hit->last_delay_ms;
  }
  return hit->last_delay_ms;
}

bool AuthLimiter::login_started(const PeerAddress& a, uint32_t max, uint64_t now_ms, bool& log,
                                uint64_t& suppressed) {
  log = false;
  suppressed = 0;
  if (!a.valid()) return true;
  std::lock_guard lk(mu_);
  uint32_t& n = logins_[a];
  if (max == 0 || n < max) {
    ++n;
    return true;
  }
  ++refused_;
  if (last_log_ms_ == 0 || now_ms >= last_log_ms_ + 1000) {
    log = true;
    suppressed = unlogged_;
    unlogged_ = 0;
    last_log_ms_ = now_ms == 0 ? 1 : now_ms;
  } else {
    ++unlogged_;
  }
  return false;
}

void AuthLimiter::login_ended(const PeerAddress& a) {
  if (!a.valid()) return;
  std::lock_guard lk(mu_);
  auto it = logins_.find(a);
  if (it == logins_.end()) return;
  if (--it->second == 0) logins_.erase(it);
}

std::vector<AuthLimiter::Row> AuthLimiter::top(size_t n, uint64_t now_ms, const Policy& p) {
  std::vector<Row> rows;
  std::lock_guard lk(mu_);
  for (const Entry& e : table_) {
    if (!live(e, now_ms, p)) continue;
    auto it = logins_.find(e.addr);
    rows.push_back({e.addr, e.user, e.failures, e.last_delay_ms,
                    delay_for(p, e.failures == UINT32_MAX ? e.failures : e.failures + 1),
                    now_ms > e.last_ms ? now_ms - e.last_ms : 0,
                    it == logins_.end() ? 0 : it->second});
  }
  std::sort(rows.begin(), rows.end(), [](const Row& x, const Row& y) {
    if (x.failures != y.failures) return x.failures > y.failures;
    return x.idle_ms < y.idle_ms;
  });
  if (rows.size() > n) rows.resize(n);
  return rows;
}

AuthLimiter::Totals AuthLimiter::totals(uint64_t now_ms, const Policy& p) {
  Totals t;
  std::unordered_set<PeerAddress, AddrHash> delayed;
  std::lock_guard lk(mu_);
  t.refused = refused_;
  t.delayed = delayed_;
  t.delay_ms_sum = delay_ms_sum_;
  for (const Entry& e : table_) {
    if (!live(e, now_ms, p) || delay_for(p, e.failures + 1) == 0)
      continue;  // (failures < 2^32 - 1)
    delayed.insert(e.addr);
  }
  t.delayed_addresses = delayed.size();
  for (const auto& [addr, count] : logins_) t.logins += count;
  return t;
}

size_t AuthLimiter::size(uint64_t now_ms, const Policy& p) {
  std::lock_guard lk(mu_);
  size_t n = 0;
  for (const Entry& e : table_) n += live(e, now_ms, p) ? 1 : 0;
  return n;
}

}  // namespace sqlmux
