// The messages of an online upgrade (README "Upgrade procedure"), as bytes:
// pure, no sockets. The running process offers its listening sockets to
// `sqlmux --upgrade` on [server] upgrade_socket (a SOCK_SEQPACKET unix
// socket, one message per packet):
//
//   old -> new  "sqlmux-handover 1\n" then one line per descriptor passed
//               with the packet (SCM_RIGHTS, in the same order):
//               "<kind> <protocol> <address>\n", kind listener, admin,
//               metrics or upgrade, protocol postgres or mysql (listeners)
//               or "-", address as the configuration writes it
//   new -> old  "go <pid>\n": the new process serves on them; hand over
//   old -> new  "done <pid>\n": the old process no longer accepts
//
// A packet comes from another process: decoding never trusts it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace sqlmux::upgrade {

enum class SocketKind { Listener, Admin, Metrics, Upgrade };
[[nodiscard]] std::string_view to_string(SocketKind k);

struct SocketDesc {
  SocketKind kind = SocketKind::Listener;
  std::string protocol;  // "postgres" or "mysql" for a listener, else "-"
  std::string address;   // config::Address::text
  bool operator==(const SocketDesc&) const = default;
};

// SCM_RIGHTS carries at most 253 descriptors per message; sqlmux passes
// its listeners, the console's, the metrics' and the upgrade socket.
constexpr size_t kMaxSockets = 64;
constexpr size_t kMaxAddress = 512;
constexpr size_t kMaxMessage = 65536;

enum class WireError {
  None,
  BadHeader,     // not "sqlmux-handover 1"
  BadLine,       // a line is not "<kind> <protocol> <address>"
  BadKind,       // an unknown kind or protocol
  TooMany,       // more than kMaxSockets lines
  CountMismatch  // not one line per descriptor received
};
[[nodiscard]] std::string_view to_string(WireError e);

// The offer for `socks`; empty when one cannot be written (too many, an
// address with a newline or NUL, or longer than kMaxAddress).
[[nodiscard]] std::string encode_offer(const std::vector<SocketDesc>& socks);
// Parses an offer that came with `fds` descriptors into `out`.
[[nodiscard]] WireError decode_offer(std::string_view msg, size_t fds,
                                     std::vector<SocketDesc>& out);

// "go <pid>\n" / "done <pid>\n".
[[nodiscard]] std::string encode_go(int32_t pid);
[[nodiscard]] std::string encode_done(int32_t pid);
// The pid of a "go" / "done" message; 0 when `msg` is not one.
[[nodiscard]] int32_t decode_go(std::string_view msg);
[[nodiscard]] int32_t decode_done(std::string_view msg);

}  // namespace sqlmux::upgrade
