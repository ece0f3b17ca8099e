#include "pool/pg/cancel_key.h"

#include <cstring>

namespace sqlmux::pool {

namespace {
constexpr uint32_t kHopMask = 0x3;
constexpr int kPeerShift = 17;
constexpr uint32_t kRandomMask = 0x1fffc;  // bits 16..2
}  // namespace

CancelKey make_cancel_key(uint32_t peer_id, const uint8_t random[8]) {
  uint32_t r = 0;
  uint32_t k = 0;
  std::memcpy(&r, random, 4);
  std::memcpy(&k, random + 4, 4);
  const uint32_t pid = ((peer_id & kMaxPeerId) << kPeerShift) | (r & kRandomMask) | kMaxHops;
  CancelKey out;
  out.pid = static_cast<int32_t>(pid);
  out.key = static_cast<int32_t>(k);
  return out;
}

uint32_t cancel_peer(int32_t pid) {
  return (static_cast<uint32_t>(pid) >> kPeerShift) & kMaxPeerId;
}

uint32_t cancel_hops(int32_t pid) {
  return static_cast<uint32_t>(pid) & kHopMask;
}

int32_t with_hops(int32_t pid, uint32_t hops) {
  return static_cast<int32_t>((static_cast<uint32_t>(pid) & ~kHopMask) | (hops & kHopMask));
}

uint64_t cancel_lookup_id(int32_t pid, int32_t key) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(pid) & ~kHopMask) << 32) |
         static_cast<uint32_t>(key);
}

}  // namespace sqlmux::pool
