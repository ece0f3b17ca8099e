// MySQL KILL across the instances of a fleet (README "Running several
// instances"): a client's KILL of a thread id another instance issued is
// sent to that peer's [peers] address (its PostgreSQL listener) as a signed
// request (pool/peer_kill.h), and the peer's answer comes back; a request
// that a peer sends here is checked (server.peer_secret, time, nonce) and
// applied with the same rules as a local KILL (same user, else not owner).
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "daemon/core/log.h"
#include "pool/peer_kill.h"

namespace sqlmux {

class Worker;

// The peer's answer, or nullopt when there was none (unreachable, timed
// out after 2 s, or an answer that failed its MAC); called on `w`'s loop.
using PeerKillDone = std::function<void(Worker& w, std::optional<pool::PeerKillResult>)>;

// Sends `k` (its time and nonce filled in here) to peer `peer_id` of
// [peers]. False (and `done` never called) when forwarding is off
// (no peer_secret), the peer is not in [peers], or the connect cannot start.
[[nodiscard]] bool forward_kill(Worker& w, uint32_t peer_id, pool::PeerKill k, PeerKillDone done);

// A request that arrived on a PostgreSQL listener (the whole packet, its
// code kPeerKillCode): `reply` gets the signed answer, or stays empty when
// the request is refused (no peer_secret here, bad MAC, stale, replayed).
void answer_peer_kill(Worker& w, std::string_view packet, std::string& reply,
                      const log::ClientTag& from);

}  // namespace sqlmux
