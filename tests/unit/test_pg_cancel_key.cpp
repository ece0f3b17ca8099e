#include <catch2/catch.hpp>

#include <cstdint>

#include "pool/pg/cancel_key.h"

using namespace sqlmux::pool;

TEST_CASE("cancel key: carries the peer id and the hops, pid positive", "[cancel_key]") {
  const uint8_t ones[8] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
  const uint8_t zeros[8] = {};
  for (uint32_t peer : {0u, 1u, 2u, 77u, kMaxPeerId}) {
    for (const uint8_t* rnd : {ones, zeros}) {
      const CancelKey k = make_cancel_key(peer, rnd);
      CHECK(k.pid > 0);
      CHECK(cancel_peer(k.pid) == peer);
      CHECK(cancel_hops(k.pid) == kMaxHops);
    }
  }
  const CancelKey k = make_cancel_key(5, ones);
  CHECK(k.key == -1);
  // The random bits of the pid survive; the peer bits are not random.
  CHECK((static_cast<uint32_t>(k.pid) & 0x1fffc) == 0x1fffc);
  CHECK(make_cancel_key(5, zeros).pid == static_cast<int32_t>((5u << 17) | kMaxHops));
}

TEST_CASE("cancel key: hops change neither the peer nor the identity", "[cancel_key]") {
  const uint8_t rnd[8] = {0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0};
  const CancelKey k = make_cancel_key(42, rnd);
  for (uint32_t h = 0; h <= kMaxHops; ++h) {
    const int32_t pid = with_hops(k.pid, h);
    CHECK(cancel_hops(pid) == h);
    CHECK(cancel_peer(pid) == 42);
    CHECK(cancel_lookup_id(pid, k.key) == cancel_lookup_id(k.pid, k.key));
  }
  CHECK(cancel_lookup_id(k.pid, k.key) != cancel_lookup_id(k.pid, k.key ^ 1));
  CHECK(cancel_lookup_id(k.pid, k.key) != cancel_lookup_id(k.pid ^ 4, k.key));
  // Any 32-bit pid from a client decodes without trouble.
  CHECK(cancel_peer(-1) == kMaxPeerId);
  CHECK(cancel_hops(-1) == 3);
}
