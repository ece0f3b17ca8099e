// pg_codec: startup-phase packets (StartupMessage, SSLRequest, GSSENCRequest,
// CancelRequest, other protocol versions, garbage).
#include <catch2/catch.hpp>

#include <string>
#include <string_view>

#include "protocol/pg/codec.h"
#include "tests/unit/test_pg_codec_fixtures.h"

using namespace sqlmux::pg;
using namespace std::string_view_literals;
using sqlmux::pg::testing::bytes;
using sqlmux::pg::testing::ExactBuf;

namespace {

struct Result {
  Decode d;
  StartupPacket pkt;
  size_t consumed;
  std::string error;
};

Result startup(std::string_view wire) {
  ExactBuf buf(wire);
  Result r{Decode::NeedMore, {}, 12345, {}};
  r.d = decode_startup(buf.data(), buf.size(), r.pkt, r.consumed, r.error);
  return r;
}

std::string be32(uint32_t v) {
  return bytes({static_cast<int>(v >> 24), static_cast<int>((v >> 16) & 0xff),
                static_cast<int>((v >> 8) & 0xff), static_cast<int>(v & 0xff)});
}

// A length-prefixed startup packet around `rest` (code and payload).
std::string packet(std::string_view rest) {
  return be32(static_cast<uint32_t>(4 + rest.size())) + std::string(rest);
}

}  // namespace

TEST_CASE("pg_codec: v3 StartupMessage with parameters", "[pg_codec][startup]") {
  std::string wire;
  put_startup(wire, {{"user", "alice"}, {"database", "app"}, {"application_name", ""}});
  const Result r = startup(wire);
  REQUIRE(r.d == Decode::Complete);
  CHECK(r.consumed == wire.size());
  CHECK(r.pkt.kind == StartupKind::Startup);
  CHECK(r.pkt.protocol == kProtocolV3);
  REQUIRE(r.pkt.params.size() == 3);
  REQUIRE(r.pkt.param("user") != nullptr);
  CHECK(*r.pkt.param("user") == "alice");
  CHECK(*r.pkt.param("database") == "app");
  REQUIRE(r.pkt.param("application_name") != nullptr);
  CHECK(r.pkt.param("application_name")->empty());
  CHECK(r.pkt.param("options") == nullptr);
  CHECK(r.pkt.param("") == nullptr);
}

TEST_CASE("pg_codec: hand-written StartupMessage from the docs", "[pg_codec][startup]") {
  const std::string wire =
      bytes({0, 0, 0, 0x23, 0, 3, 0, 0}) + std::string("user\0postgres\0database\0db\0\0"sv);
  const Result r = startup(wire);
  REQUIRE(r.d == Decode::Complete);
  CHECK(r.consumed == 0x23);
  CHECK(*r.pkt.param("user") == "postgres");
  CHECK(*r.pkt.param("database") == "db");
}

TEST_CASE("pg_codec: StartupMessage details", "[pg_codec][startup]") {
  SECTION("no parameters at all (caller checks user)") {
    const Result r = startup(bytes({0, 0, 0, 9, 0, 3, 0, 0, 0}));
    REQUIRE(r.d == Decode::Complete);
    CHECK(r.pkt.params.empty());
    CHECK(r.pkt.param("user") == nullptr);
  }
  SECTION("duplicate names keep the last value") {
    const Result r =
        startup(packet(be32(kProtocolV3) + std::string("user\0a\0x\0y\0user\0b\0\0"sv)));
    REQUIRE(r.d == Decode::Complete);
    CHECK(r.pkt.params.size() == 2);
    CHECK(*r.pkt.param("user") == "b");
  }
  SECTION("protocol 3.2 parses parameters too") {
    const Result r = startup(packet(be32(0x00030002) + std::string("user\0u\0\0"sv)));
    REQUIRE(r.d == Decode::Complete);
    CHECK(r.pkt.protocol == 0x00030002);
    CHECK(*r.pkt.param("user") == "u");
  }
  SECTION("bytes after the packet are not consumed") {
    std::string wire;
    put_startup(wire, {{"user", "u"}});
    const size_t one = wire.size();
    put_ssl_request(wire);
    const Result r = startup(wire);
    REQUIRE(r.d == Decode::Complete);
    CHECK(r.consumed == one);
  }
  SECTION("decoding resets the output packet") {
    std::string wire;
    put_ssl_request(wire);
    ExactBuf buf(wire);
    StartupPacket pkt;
    pkt.params.emplace_back("user", "stale");
    size_t consumed = 0;
    std::string err;
    REQUIRE(decode_startup(buf.data(), buf.size(), pkt, consumed, err) == Decode::Complete);
    CHECK(pkt.kind == StartupKind::SslRequest);
    CHECK(pkt.params.empty());
  }
}

TEST_CASE("pg_codec: SSLRequest, GSSENCRequest, CancelRequest", "[pg_codec][startup]") {
  SECTION("SSLRequest") {
    std::string wire;
    put_ssl_request(wire);
    const Result r = startup(wire);
    REQUIRE(r.d == Decode::Complete);
    CHECK(r.pkt.kind == StartupKind::SslRequest);
    CHECK(r.consumed == 8);
  }
  SECTION("GSSENCRequest (hand-written)") {
    const Result r = startup(bytes({0, 0, 0, 8, 0x04, 0xD2, 0x16, 0x30}));
    REQUIRE(r.d == Decode::Complete);
    CHECK(r.pkt.kind == StartupKind::GssEncRequest);
    CHECK(r.consumed == 8);
  }
  SECTION("CancelRequest") {
    std::string wire;
    put_cancel_request(wire, 31337, -559038737);
    const Result r = startup(wire);
    REQUIRE(r.d == Decode::Complete);
    CHECK(r.pkt.kind == StartupKind::Cancel);
    CHECK(r.pkt.cancel_pid == 31337);
    CHECK(r.pkt.cancel_key == -559038737);
    CHECK(r.consumed == 16);
  }
  SECTION("wrong lengths are malformed") {
    for (const std::string& wire :
         {packet(be32(kSslRequestCode) + "x"), packet(be32(kGssEncRequestCode) + "abcd"),
          packet(be32(kCancelRequestCode) + "abcdefg"),
          packet(be32(kCancelRequestCode) + "abcdefghi"), packet(be32(kCancelRequestCode))}) {
      const Result r = startup(wire);
      CHECK(r.d == Decode::Malformed);
      CHECK_FALSE(r.error.empty());
    }
  }
}

TEST_CASE("pg_codec: other protocol versions decode for a clear rejection", "[pg_codec][startup]") {
  SECTION("2.0 (a 296-byte v2 packet)") {
    const std::string wire = packet(be32(131072) + std::string(288, '\0'));
    REQUIRE(wire.size() == 296);
    const Result r = startup(wire);
    REQUIRE(r.d == Decode::Complete);
    CHECK(r.pkt.kind == StartupKind::Startup);
    CHECK(r.pkt.protocol == 131072);
    CHECK(r.pkt.params.empty());
    CHECK(r.consumed == 296);
  }
  SECTION("1.0, 4.0 and a huge major, minimal length") {
    for (uint32_t code : {0x00010000u, 0x00040000u, 0x7fff0001u, 0xffff0000u}) {
      const Result r = startup(packet(be32(code)));
      REQUIRE(r.d == Decode::Complete);
      CHECK(r.pkt.kind == StartupKind::Startup);
      CHECK(r.pkt.protocol == static_cast<int32_t>(code));
      CHECK(r.pkt.params.empty());
    }
  }
  SECTION("garbage codes are malformed") {
    for (uint32_t code : {0u, 1u, 0x0000ffffu, 80877105u, 80877101u, 0x04d20000u}) {
      INFO(code);
      const Result r = startup(packet(be32(code) + std::string("user\0u\0\0"sv)));
      CHECK(r.d == Decode::Malformed);
      CHECK_FALSE(r.error.empty());
    }
  }
}

TEST_CASE("pg_codec: malformed startup packets", "[pg_codec][startup]") {
  SECTION("length too short") {
    for (uint32_t len : {0u, 1u, 4u, 7u}) {
      const Result r = startup(be32(len) + be32(kProtocolV3));
      CHECK(r.d == Decode::Malformed);
      CHECK_FALSE(r.error.empty());
    }
  }
  SECTION("length too long, checked before waiting for the body") {
    for (uint32_t len : {kMaxStartupLen + 1, 0x7fffffffu, 0x80000000u, 0xffffffffu}) {
      // Only the length field itself: nothing else to read.
      const Result r = startup(be32(len));
      CHECK(r.d == Decode::Malformed);
      CHECK_FALSE(r.error.empty());
    }
  }
  SECTION("maximum length is allowed") {
    std::string body = be32(kProtocolV3) + std::string("options\0"sv);
    body += std::string(kMaxStartupLen - 4 - body.size() - 2, 'x');
    body += std::string("\0\0"sv);
    const std::string wire = packet(body);
    REQUIRE(wire.size() == kMaxStartupLen);
    const Result r = startup(wire);
    REQUIRE(r.d == Decode::Complete);
    CHECK(r.pkt.param("options")->size() == kMaxStartupLen - 18);
  }
  SECTION("unterminated parameter list") {
    for (std::string rest : {std::string(""), std::string("user\0u\0"sv), std::string("user\0u"sv),
                             std::string("user"sv), std::string("user\0"sv)}) {
      const Result r = startup(packet(be32(kProtocolV3) + rest));
      CHECK(r.d == Decode::Malformed);
      CHECK_FALSE(r.error.empty());
    }
  }
  SECTION("peer bytes in the error are sanitised and capped") {
    const std::string name = std::string("\x01\n\xff") + std::string(200, 'n');
    const Result r = startup(packet(be32(kProtocolV3) + name + std::string(1, '\0')));
    REQUIRE(r.d == Decode::Malformed);
    CHECK(r.error.size() < 150);
    for (char ch : r.error) {
      CHECK((ch >= 0x20 && ch < 0x7f));
    }
  }
  SECTION("trailing garbage after the terminator") {
    const Result r = startup(packet(be32(kProtocolV3) + std::string("user\0u\0\0junk"sv)));
    CHECK(r.d == Decode::Malformed);
    CHECK_FALSE(r.error.empty());
    const Result r2 = startup(packet(be32(kProtocolV3) + std::string("\0\0"sv)));
    CHECK(r2.d == Decode::Malformed);
  }
}

TEST_CASE("pg_codec: truncated startup packets need more", "[pg_codec][startup]") {
  std::vector<std::string> wires;
  std::string s;
  put_startup(s, {{"user", "bob"}, {"database", "x"}});
  wires.push_back(s);
  s.clear();
  put_ssl_request(s);
  wires.push_back(s);
  s.clear();
  put_cancel_request(s, 1, 2);
  wires.push_back(s);
  for (const auto& w : wires) {
    for (size_t n = 0; n < w.size(); ++n) {
      const Result r = startup(w.substr(0, n));
      CHECK(r.d == Decode::NeedMore);
      CHECK(r.consumed == 0);
    }
    CHECK(startup(w).d == Decode::Complete);
  }
}

TEST_CASE("pg_codec: which malformed startup packets PostgreSQL closes without a word",
          "[pg_codec][startup]") {
  auto silent = [](std::string_view wire) {
    REQUIRE(startup(wire).d == Decode::Malformed);
    return startup_rejected_silently(reinterpret_cast<const uint8_t*>(wire.data()), wire.size());
  };
  // node-postgres's Terminate before the startup packet: length 0x58000000.
  CHECK(silent(std::string("X\0\0\0\x04"sv)));
  for (uint32_t len : {0u, 4u, 7u, kMaxStartupLen + 1, 0x80000000u, 0xffffffffu}) {
    CAPTURE(len);
    CHECK(silent(be32(len) + be32(kProtocolV3)));
  }
  // A CancelRequest of the wrong size is never answered either.
  CHECK(silent(packet(be32(static_cast<uint32_t>(kCancelRequestCode)) + be32(1))));
  // A FATAL for what has a valid length: bad layout, bad code.
  CHECK_FALSE(silent(packet(be32(kProtocolV3) + std::string("user\0u"sv))));
  CHECK_FALSE(silent(packet(be32(0) + std::string("user\0u\0\0"sv))));
}
