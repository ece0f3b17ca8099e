// Tests for pool/peer_kill: thread ids that carry the peer id, and the
// signed KILL request/answer between instances (split at every byte,
// truncated, oversized, tampered, wrong secret, stale, replayed).
#include "pool/peer_kill.h"

#include <catch2/catch.hpp>

#include <cstdint>
#include <set>
#include <string>

#include "protocol/pg/codec.h"

using namespace sqlmux::pool;

namespace {

const std::string kSecret = "fleet-secret-0123456789";

PeerKill sample(std::string user = "app") {
  PeerKill k;
  k.thread_id = peer_thread_id(2, 77);
  k.query_only = true;
  k.unix_time = 1800000000;
  for (size_t i = 0; i < k.nonce.size(); ++i) k.nonce[i] = static_cast<uint8_t>(i * 7 + 1);
  k.user = std::move(user);
  return k;
}

PeerDecode decode(const std::string& wire, const std::string& secret, PeerKill& out, size_t& used,
                  PeerKillError& err) {
  return decode_peer_kill(reinterpret_cast<const uint8_t*>(wire.data()), wire.size(), secret, out,
                          used, err);
}

}  // namespace

TEST_CASE("peer kill: thread ids carry the peer id, fit 31 bits, unique per sequence",
          "[peer_kill]") {
  for (uint32_t peer : {1u, 2u, 77u, kThreadPeerMax}) {
    for (uint32_t seq : {0u, 1u, 12345u, kThreadSeqMask}) {
      const uint32_t id = peer_thread_id(peer, seq);
      CHECK(id < (1u << 31));
      CHECK(id != 0);
      CHECK(thread_peer(id) == peer);
      CHECK((id & kThreadSeqMask) == seq);
    }
  }
  // The sequence wraps within its 17 bits, never into the peer's.
  CHECK(peer_thread_id(3, kThreadSeqMask + 1) == peer_thread_id(3, 0));
  std::set<uint32_t> ids;
  for (uint32_t seq = 0; seq < 1000; ++seq) ids.insert(peer_thread_id(9, seq));
  CHECK(ids.size() == 1000);
  // Ids at or above 2^31 (no instance with a peer id issues them) name no peer;
  // 64-bit KILL arguments neither.
  CHECK(thread_peer(0x80000000u) == 0);
  CHECK(thread_peer(0x1'0000'0000ull | peer_thread_id(5, 1)) == 0);
}

TEST_CASE("peer kill: the request code is the one the PostgreSQL codec frames", "[peer_kill]") {
  STATIC_REQUIRE(kPeerKillCode == sqlmux::pg::kPeerKillRequestCode);
  std::string wire;
  put_peer_kill(wire, sample(), kSecret);
  sqlmux::pg::StartupPacket pkt;
  size_t used = 0;
  std::string err;
  REQUIRE(sqlmux::pg::decode_startup(reinterpret_cast<const uint8_t*>(wire.data()), wire.size(),
                                     pkt, used, err) == sqlmux::pg::Decode::Complete);
  CHECK(pkt.kind == sqlmux::pg::StartupKind::PeerKill);
  CHECK(pkt.peer_request == wire);
  CHECK(used == wire.size());
}

TEST_CASE("peer kill: a request round-trips, split at every byte", "[peer_kill]") {
  for (const std::string& user :
       {std::string(), std::string("app"), std::string(kPeerMaxUser, 'u')}) {
    PeerKill k = sample(user);
    for (bool q : {true, false}) {
      k.query_only = q;
      std::string wire;
      put_peer_kill(wire, k, kSecret);
      CHECK(wire.size() == kPeerKillMinLen + user.size());
      for (size_t cut = 0; cut < wire.size(); ++cut) {
        PeerKill out;
        size_t used = 99;
        PeerKillError err{};
        INFO(cut);
        REQUIRE(decode(wire.substr(0, cut), kSecret, out, used, err) == PeerDecode::NeedMore);
        CHECK(used == 0);
      }
      PeerKill out;
      size_t used = 0;
      PeerKillError err{};
      REQUIRE(decode(wire + "trailing", kSecret, out, used, err) == PeerDecode::Complete);
      CHECK(used == wire.size());
      CHECK(out.thread_id == k.thread_id);
      CHECK(out.query_only == q);
      CHECK(out.unix_time == k.unix_time);
      CHECK(out.nonce == k.nonce);
      CHECK(out.user == user);
    }
  }
}

TEST_CASE("peer kill: a user name longer than the limit is cut, still signed", "[peer_kill]") {
  std::string wire;
  put_peer_kill(wire, sample(std::string(kPeerMaxUser + 10, 'x')), kSecret);
  PeerKill out;
  size_t used = 0;
  PeerKillError err{};
  REQUIRE(decode(wire, kSecret, out, used, err) == PeerDecode::Complete);
  CHECK(out.user.size() == kPeerMaxUser);
}

TEST_CASE("peer kill: forged, tampered and malformed requests are refused", "[peer_kill]") {
  std::string wire;
  put_peer_kill(wire, sample(), kSecret);
  PeerKill out;
  size_t used = 0;
  PeerKillError err{};

  SECTION("another secret, or none") {
    CHECK(decode(wire, "another-secret-0123456789", out, used, err) == PeerDecode::Malformed);
    CHECK(err == PeerKillError::BadMac);
    CHECK(decode(wire, "", out, used, err) == PeerDecode::Malformed);
    CHECK(err == PeerKillError::BadMac);
  }
  SECTION("every byte after the code flipped: the MAC no longer matches") {
    for (size_t i = 8; i < wire.size(); ++i) {
      std::string bad = wire;
      bad[i] = static_cast<char>(bad[i] ^ 0x01);
      INFO(i);
      const PeerDecode d = decode(bad, kSecret, out, used, err);
      CHECK(d == PeerDecode::Malformed);
      CHECK((err == PeerKillError::BadMac || err == PeerKillError::BadLength));
    }
  }
  SECTION("a length that is not the user's, too small or too large") {
    for (uint32_t len : {0u, 8u, static_cast<uint32_t>(kPeerKillMinLen - 1),
                         static_cast<uint32_t>(wire.size() + 1),
                         static_cast<uint32_t>(kPeerKillMaxLen + 1), 0xffffffffu}) {
      std::string bad = wire;
      bad[0] = static_cast<char>(len >> 24);
      bad[1] = static_cast<char>(len >> 16);
      bad[2] = static_cast<char>(len >> 8);
      bad[3] = static_cast<char>(len);
      bad += std::string(1024, '\0');  // enough bytes for any claimed length within the limit
      INFO(len);
      CHECK(decode(bad, kSecret, out, used, err) == PeerDecode::Malformed);
      CHECK(err == PeerKillError::BadLength);
    }
  }
  SECTION("another code") {
    std::string bad = wire;
    bad[7] = static_cast<char>(bad[7] ^ 0x01);
    CHECK(decode(bad, kSecret, out, used, err) == PeerDecode::Malformed);
    CHECK(err == PeerKillError::BadCode);
  }
}

TEST_CASE("peer kill: the answer is bound to the request's nonce and the secret", "[peer_kill]") {
  const PeerNonce nonce = sample().nonce;
  for (PeerKillResult r :
       {PeerKillResult::Ok, PeerKillResult::NoSuchThread, PeerKillResult::NotOwner}) {
    std::string wire;
    put_peer_kill_reply(wire, r, nonce, kSecret);
    REQUIRE(wire.size() == kPeerReplyLen);
    const auto* p = reinterpret_cast<const uint8_t*>(wire.data());
    PeerKillResult out{};
    PeerKillError err{};
    for (size_t cut = 0; cut < wire.size(); ++cut) {
      CHECK(decode_peer_kill_reply(p, cut, kSecret, nonce, out, err) == PeerDecode::NeedMore);
    }
    REQUIRE(decode_peer_kill_reply(p, wire.size(), kSecret, nonce, out, err) ==
            PeerDecode::Complete);
    CHECK(out == r);
    PeerNonce other = nonce;
    other[0] ^= 1;
    CHECK(decode_peer_kill_reply(p, wire.size(), kSecret, other, out, err) ==
          PeerDecode::Malformed);
    CHECK(err == PeerKillError::BadMac);
    CHECK(decode_peer_kill_reply(p, wire.size(), "another-secret-0123456789", nonce, out, err) ==
          PeerDecode::Malformed);
    for (size_t i = 0; i < wire.size(); ++i) {
      std::string bad = wire;
      bad[i] = static_cast<char>(bad[i] ^ 0x01);
      INFO(i);
      CHECK(decode_peer_kill_reply(reinterpret_cast<const uint8_t*>(bad.data()), bad.size(),
                                   kSecret, nonce, out, err) == PeerDecode::Malformed);
    }
  }
  const uint8_t junk[] = {'H', 'T', 'T', 'P'};
  PeerKillResult out{};
  PeerKillError err{};
  CHECK(decode_peer_kill_reply(junk, 1, kSecret, nonce, out, err) == PeerDecode::Malformed);
  CHECK(err == PeerKillError::BadCode);
}

TEST_CASE("peer kill: a request is taken once, within the window", "[peer_kill]") {
  PeerNonces nonces(4);
  PeerKill k = sample();
  const uint64_t now = k.unix_time;
  CHECK(nonces.accept(k, now) == PeerKillError::None);
  CHECK(nonces.accept(k, now) == PeerKillError::Replayed);
  CHECK(nonces.accept(k, now + kPeerKillWindowS) == PeerKillError::Replayed);
  CHECK(nonces.accept(k, now + kPeerKillWindowS + 1) == PeerKillError::Stale);

  PeerKill early = sample();
  early.nonce[0] = 0xee;
  early.unix_time = now + kPeerKillWindowS + 1;  // the sender's clock ahead by more than the window
  CHECK(nonces.accept(early, now) == PeerKillError::Stale);
  early.unix_time = now - kPeerKillWindowS - 1;
  CHECK(nonces.accept(early, now) == PeerKillError::Stale);
  early.unix_time = UINT64_MAX;  // no overflow into "fresh"
  CHECK(nonces.accept(early, now) == PeerKillError::Stale);

  // A full table refuses until entries age out; then it takes new ones.
  for (uint8_t i = 1; i < 4; ++i) {
    PeerKill n = sample();
    n.nonce[0] = i;
    n.nonce[1] = 0x55;
    CHECK(nonces.accept(n, now) == PeerKillError::None);
  }
  CHECK(nonces.size() == 4);
  PeerKill more = sample();
  more.nonce[0] = 0x99;
  CHECK(nonces.accept(more, now) == PeerKillError::Full);
  more.unix_time = now + 2 * kPeerKillWindowS + 1;
  CHECK(nonces.accept(more, now + 2 * kPeerKillWindowS + 1) == PeerKillError::None);
  CHECK(nonces.size() == 1);
}

TEST_CASE("peer kill: every error and result has a name", "[peer_kill]") {
  for (int i = 0; i <= static_cast<int>(PeerKillError::Full); ++i) {
    CHECK(to_string(static_cast<PeerKillError>(i)) != "unknown");
  }
  for (int i = 0; i <= static_cast<int>(PeerKillResult::NotOwner); ++i) {
    CHECK(to_string(static_cast<PeerKillResult>(i)) != "unknown");
  }
}
