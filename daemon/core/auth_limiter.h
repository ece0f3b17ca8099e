// Rate limiting of authentication failures per client IP address
// (README "How it behaves"): after `limit` failures from one address within
// `window`, every login from that address is refused until the window that
// started with the limit's failure has passed.
//
// One table shared by all workers (clients of one address land on any
// worker), under a mutex. It is touched only when a login starts and when
// one fails, never on the query path; with no entry alive, a login start
// reads one atomic and takes no lock. The table has a fixed size (set-
// associative: an address hashes to one set of kWays entries, the oldest
// entry of a full set is replaced), so memory stays bounded whatever the
// number of addresses; an attacker with very many addresses can evict
// entries, which only weakens the limit for those addresses.
#pragma once

#include <sys/socket.h>

#include <array>
#include <atomic>
#include <cstdint>
#include <mutex>
#include <string>

namespace sqlmux {

// A client's IP address as a compact key; unix-socket clients have none
// and are never limited.
struct PeerAddress {
  uint8_t family = 0;  // 0 (none), 4 or 6
  std::array<uint8_t, 16> bytes{};

  [[nodiscard]] bool valid() const { return family != 0; }
  bool operator==(const PeerAddress&) const = default;
  [[nodiscard]] std::string text() const;  // "127.0.0.1", "::1"
  // From a socket's peer (getpeername); invalid for unix sockets.
  [[nodiscard]] static PeerAddress of_socket(int fd);
  [[nodiscard]] static PeerAddress from_sockaddr(const sockaddr* sa);
};

class AuthLimiter {
 public:
  static constexpr size_t kSets = 512;
  static constexpr size_t kWays = 8;  // 4096 addresses tracked at most

  enum class Verdict { Allow, Refuse };
  // A login from `a` starts. Refuse: the address is in its cool-down;
  // `retry_ms` says for how much longer.
  [[nodiscard]] Verdict check(const PeerAddress& a, uint64_t now_ms, uint64_t& retry_ms);
  // A login from `a` failed. True when this failure reached the limit
  // (the caller logs that once per address and window).
  bool failed(const PeerAddress& a, uint64_t now_ms, uint32_t limit, uint64_t window_ms);

  // Entries in use (tests, SHOW-style introspection).
  [[nodiscard]] size_t size();

 private:
  struct Entry {
    PeerAddress addr;
    uint64_t window_start = 0;   // ms; 0 = free
    uint64_t blocked_until = 0;  // ms; 0 = not blocked
    uint32_t failures = 0;
  };
  [[nodiscard]] static size_t set_of(const PeerAddress& a);
  [[nodiscard]] static bool expired(const Entry& e, uint64_t now_ms, uint64_t window_ms);

  std::mutex mu_;
  std::array<Entry, kSets * kWays> table_{};
  // Blocked entries whose cool-down may not have ended (0: check() needs
  // no lock). Only a hint: entries are expired lazily.
  std::atomic<uint32_t> blocked_{0};
};

}  // namespace sqlmux
