// MySQL KILL between the instances of a fleet (README "Running several
// instances"): the thread ids that carry an instance's peer_id, and the
// authenticated request/answer a peer sends for a KILL of an id of another
// instance. Pure code: no sockets, no clocks (callers pass the time).
//
// A thread id (what a MySQL client sees as its connection id, 4 bytes in
// the handshake) holds, from the top, when peer_id is set:
//   bit 31      0 (below 2^31, for clients that read it as a signed int)
//   bits 30..17 the instance's peer_id (1..16383)
//   bits 16..0  a sequence number, unique among the instance's live clients
// Without peer_id ids are a plain counter and never forwarded.
//
// The request travels on the peer's [peers] address, its PostgreSQL
// listener, framed as a PostgreSQL startup-phase request with a code of
// sqlmux's own (kPeerKillCode, in the range 1234.xxxx PostgreSQL reserves
// for special requests, like CancelRequest's 1234.5678). Big-endian:
//   int32  length of the whole request (including itself)
//   int32  kPeerKillCode
//   uint8  version (1)
//   uint8  flags (bit 0: KILL QUERY)
//   uint32 thread id
//   uint64 unix time in seconds when sent
//   16     random nonce
//   uint16 user length, then the requesting client's user name
//   32     HMAC-SHA256 with server.peer_secret over every byte before it
// The answer, sent by the peer before it closes:
//   4      "SQMK"
//   uint8  version (1)
//   uint8  result (PeerKillResult)
//   32     HMAC-SHA256 over the 6 bytes above and the request's nonce
// A request whose MAC, time or nonce is wrong gets no answer.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <map>
#include <string>
#include <string_view>

namespace sqlmux::pool {

// --- thread ids ---

inline constexpr uint32_t kThreadPeerMax = 16383;  // as server.peer_id
inline constexpr uint32_t kThreadSeqBits = 17;
inline constexpr uint32_t kThreadSeqMask = (1u << kThreadSeqBits) - 1;  // 131071

// The thread id of sequence number `seq` (masked to 17 bits) of instance
// `peer_id` (1..kThreadPeerMax).
[[nodiscard]] uint32_t peer_thread_id(uint32_t peer_id, uint32_t seq);
// The instance that issued `thread_id` under the layout above (0 for ids
// at or above 2^31, which no instance with a peer_id issues).
[[nodiscard]] uint32_t thread_peer(uint64_t thread_id);

// --- the request and its answer ---

inline constexpr int32_t kPeerKillCode = (1234 << 16) | 5901;  // 80877325
inline constexpr uint8_t kPeerKillVersion = 1;
inline constexpr size_t kPeerNonceLen = 16;
inline constexpr size_t kPeerMacLen = 32;
inline constexpr size_t kPeerMaxUser = 512;
inline constexpr size_t kPeerKillMinLen = 4 + 4 + 1 + 1 + 4 + 8 + kPeerNonceLen + 2 + kPeerMacLen;
inline constexpr size_t kPeerKillMaxLen = kPeerKillMinLen + kPeerMaxUser;
inline constexpr size_t kPeerReplyLen = 4 + 1 + 1 + kPeerMacLen;
// How far a request's time may be from the receiver's clock (either way).
inline constexpr uint64_t kPeerKillWindowS = 30;

using PeerNonce = std::array<uint8_t, kPeerNonceLen>;

struct PeerKill {
  uint32_t thread_id = 0;
  bool query_only = false;
  uint64_t unix_time = 0;
  PeerNonce nonce{};
  std::string user;
};

// What the peer answered (the wire's result byte).
enum class PeerKillResult : uint8_t {
  Ok = 0,            // killed (KILL QUERY: sent on; KILL CONNECTION: closed)
  NoSuchThread = 1,  // ERR 1094
  NotOwner = 2,      // ERR 1095
};
[[nodiscard]] std::string_view to_string(PeerKillResult r);

// Why a request or an answer was refused; labels logs.
enum class PeerKillError : uint8_t {
  None,
  BadLength,   // length field outside kPeerKillMinLen..kPeerKillMaxLen or not the user's
  BadCode,     // not kPeerKillCode / not "SQMK"
  BadVersion,  // a version this build does not speak
  BadFlags,    // flag bits this version does not define
  BadResult,   // an answer's result byte out of range
  BadMac,      // HMAC mismatch: another secret, or forged
  Stale,       // time outside kPeerKillWindowS of the receiver's clock
  Replayed,    // a nonce seen within the window
  Full,        // the nonce table is full (a flood): refused until entries age
};
[[nodiscard]] std::string_view to_string(PeerKillError e);

enum class PeerDecode { Complete, NeedMore, Malformed };

// Appends the signed request.
void put_peer_kill(std::string& out, const PeerKill& k, std::string_view secret);

// Decodes one request from `p[0..n)` and checks its MAC with `secret`.
// Complete: `out` filled, `consumed` its length. Malformed: `error` says
// why (a bad MAC included). Never reads past `n`, trusts no length.
[[nodiscard]] PeerDecode decode_peer_kill(const uint8_t* p, size_t n, std::string_view secret,
                                          PeerKill& out, size_t& consumed, PeerKillError& error);

// Appends the signed answer to the request that carried `nonce`.
void put_peer_kill_reply(std::string& out, PeerKillResult r, const PeerNonce& nonce,
                         std::string_view secret);
// Decodes the answer to the request that carried `nonce`.
[[nodiscard]] PeerDecode decode_peer_kill_reply(const uint8_t* p, size_t n, std::string_view secret,
                                                const PeerNonce& nonce, PeerKillResult& out,
                                                PeerKillError& error);

// --- replay protection ---

// The nonces of requests accepted within the last window: a request is
// taken once, and only within kPeerKillWindowS of `now` (unix seconds).
// Not thread-safe (the owner locks).
class PeerNonces {
 public:
  explicit PeerNonces(size_t max_entries = 65536) : max_(max_entries) {}
  // None when `k` is fresh (and remembers it), else Stale, Replayed or Full.
  [[nodiscard]] PeerKillError accept(const PeerKill& k, uint64_t now);
  [[nodiscard]] size_t size() const { return seen_.size(); }

 private:
  void prune(uint64_t now);
  size_t max_;
  std::map<PeerNonce, uint64_t> seen_;                    // nonce -> its request's time
  std::deque<std::pair<uint64_t, PeerNonce>> by_expiry_;  // (expiry, nonce), in accept order
};

}  // namespace sqlmux::pool
