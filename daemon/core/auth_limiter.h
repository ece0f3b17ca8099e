// Failed logins and logins in progress per client IP address (README "Failed
// logins"). Nothing here refuses a correct password:
//
// - A failed login is answered late. The first `free_failures` failures of
//   one (address, user) are answered at once (typos); each later one waits
//   base_delay, doubling per failure up to max_delay (PostgreSQL's
//   auth_delay answers every failure late; fail2ban's bantime.increment
//   doubles). An (address, user) with no failure for `forget` is forgotten.
// - Logins in progress (connected, not yet authenticated, a late failure
//   included) are counted per address; over the cap a new connection from
//   that address is refused with the protocol's too-many-connections error.
//   A failure holds its connection's slot for its delay, so one address's
//   guesses per second are bounded by cap / delay.
//
// One table shared by all workers (clients of one address land on any
// worker), under a mutex, touched when a connection is accepted, when a
// login ends and when one fails, never on the query path. The failure table
// has a fixed size (set-associative: an (address, user) hashes, with a
// per-process random seed, to one set of kWays entries; in a full set the
// entry with the fewest failures is replaced), so memory stays
// bounded whatever the number of addresses and user names; the counts of
// logins in progress have one entry per address with a login in progress
// (bounded by max_client_conn). Times are passed in (milliseconds): the
// policy is testable without a clock.
#pragma once

#include <sys/socket.h>

#include <array>
#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "config/config.h"

namespace sqlmux {

// A client's IP address as a compact key; unix-socket clients have none
// and are never limited.
struct PeerAddress {
  uint8_t family = 0;  // 0 (none), 4 or 6
  std::array<uint8_t, 16> bytes{};

  [[nodiscard]] bool valid() const { return family != 0; }
  bool operator==(const PeerAddress&) const = default;
  [[nodiscard]] std::string text() const;  // "127.0.0.1", "::1"
  [[nodiscard]] uint64_t hash() const;
  // From a socket's peer (getpeername); invalid for unix sockets.
  [[nodiscard]] static PeerAddress of_socket(int fd);
  [[nodiscard]] static PeerAddress from_sockaddr(const sockaddr* sa);
};

class AuthLimiter {
 public:
  static constexpr size_t kSets = 512;
  static constexpr size_t kWays = 8;           // 4096 (address, user) pairs tracked at most
  static constexpr size_t kMaxUserBytes = 64;  // longer names are kept cut (one entry)

  AuthLimiter();

  struct Policy {
    uint32_t free_failures = 5;  // 0: failures are never delayed
    uint64_t window_ms = 10000;
    uint64_t base_delay_ms = 200;  // 0: failures are never delayed
    uint64_t max_delay_ms = 5000;
    // An (address, user) with no failure for this long starts afresh:
    // the window, but at least twice the longest delay (so that a client
    // retrying as fast as it is answered is never forgotten).
    [[nodiscard]] uint64_t forget_ms() const {
      return window_ms > 2 * max_delay_ms ? window_ms : 2 * max_delay_ms;
    }
  };

  // Pure: how late the `n`th failure (n >= 1) of one (address, user) is answered.
  [[nodiscard]] static uint64_t delay_for(const Policy& p, uint32_t n);

  // A login from `a` as `user` failed: how long to wait before answering it
  // (0: at once). Unix-socket clients (invalid `a`) are never delayed.
  uint64_t failed(const PeerAddress& a, std::string_view user, uint64_t now_ms, const Policy& p);

  // A connection from `a` starts its login. False (and counted as refused)
  // when `a` has `max` logins in progress already (max 0: no cap). `log`
  // is set for at most one refusal per second (all addresses), with
  // `suppressed` the refusals not logged since the last logged one.
  [[nodiscard]] bool login_started(const PeerAddress& a, uint32_t max, uint64_t now_ms, bool& log,
                                   uint64_t& suppressed);
  // Its login ended (authenticated, answered, or closed). Once per true login_started().
  void login_ended(const PeerAddress& a);

  // The (address, user) pairs with the most failures, most first.
  struct Row {
    PeerAddress addr;
    std::string user;
    uint32_t failures = 0;
    uint64_t last_delay_ms = 0;  // the delay the latest failure got
    uint64_t next_delay_ms = 0;  // the delay the next failure would get
    uint64_t idle_ms = 0;        // since the latest failure
    uint32_t logins = 0;         // the address's logins in progress
  };
  [[nodiscard]] std::vector<Row> top(size_t n, uint64_t now_ms, const Policy& p);

  struct Totals {
    uint64_t refused = 0;            // connections refused by the cap
    uint64_t delayed = 0;            // failures answered late
    uint64_t delay_ms_sum = 0;       // their delays added up
    uint64_t delayed_addresses = 0;  // addresses whose next failure would be delayed
    uint64_t logins = 0;             // logins in progress (IP clients)
  };
  [[nodiscard]] Totals totals(uint64_t now_ms, const Policy& p);

  // (address, user) entries alive (tests).
  [[nodiscard]] size_t size(uint64_t now_ms, const Policy& p);

 private:
  struct Entry {
    PeerAddress addr;
    std::string user;
    uint64_t last_ms = 0;  // the latest failure; 0 = free
    uint64_t last_delay_ms = 0;
    uint32_t failures = 0;
  };
  struct AddrHash {
    size_t operator()(const PeerAddress& a) const { return static_cast<size_t>(a.hash()); }
  };
  [[nodiscard]] size_t set_of(const PeerAddress& a, std::string_view user) const;
  [[nodiscard]] static bool live(const Entry& e, uint64_t now_ms, const Policy& p) {
    return e.last_ms != 0 && now_ms < e.last_ms + p.forget_ms();
  }

  const uint64_t seed_;  // the sets an attacker's names land in are not predictable
  std::mutex mu_;
  std::array<Entry, kSets * kWays> table_{};
  std::unordered_map<PeerAddress, uint32_t, AddrHash> logins_;
  uint64_t refused_ = 0, delayed_ = 0, delay_ms_sum_ = 0;
  uint64_t last_log_ms_ = 0, unlogged_ = 0;
};

// The policy the [server] keys set (read at each use: a reload applies).
[[nodiscard]] AuthLimiter::Policy auth_policy(const config::ServerConfig& s);

}  // namespace sqlmux
