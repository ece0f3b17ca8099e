// PostgreSQL cancel keys that name the sqlmux instance that issued them.
//
// A BackendKeyData carries two int32s (process id, secret key). sqlmux
// makes both up; the process id holds, from the top:
//   bit 31      0 (a positive "pid", as clients expect)
//   bits 30..17 the issuing instance's peer_id (0: none configured)
//   bits 16..2  random
//   bits 1..0   hops left for forwarding between peers (kMaxHops when issued)
// and the secret key is 32 random bits. A CancelRequest that reaches an
// instance whose peer_id differs is forwarded to that peer with one hop
// fewer, so a misconfigured [peers] table cannot loop a request forever.
// The hop bits are not part of the key's identity (lookup_id masks them).
#pragma once

#include <cstdint>

namespace sqlmux::pool {

inline constexpr uint32_t kMaxPeerId = (1u << 14) - 1;  // 16383
inline constexpr uint32_t kMaxHops = 3;

struct CancelKey {
  int32_t pid = 0;
  int32_t key = 0;
};

// A key for instance `peer_id` (<= kMaxPeerId) from 8 random bytes.
[[nodiscard]] CancelKey make_cancel_key(uint32_t peer_id, const uint8_t random[8]);
[[nodiscard]] uint32_t cancel_peer(int32_t pid);
[[nodiscard]] uint32_t cancel_hops(int32_t pid);
// The same pid with `hops` hops left.
[[nodiscard]] int32_t with_hops(int32_t pid, uint32_t hops);
// The key's identity (hop bits cleared), for the instance's own table.
[[nodiscard]] uint64_t cancel_lookup_id(int32_t pid, int32_t key);

}  // namespace sqlmux::pool
