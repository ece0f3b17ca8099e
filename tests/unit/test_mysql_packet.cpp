// mysql_packet: framing (peek_header, peek_packet, decode_packet,
// put_packet) over real and hand-made packets, split at every offset, two
// in one buffer, truncated, over the maximum, 16 MiB + 5 split/join; the
// Reader/Writer and length-encoded integers; the constant names.
#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include "protocol/mysql/packet.h"
#include "tests/unit/test_mysql_fixtures.h"

using namespace sqlmux::my;
using sqlmux::my::testing::bytes;
using sqlmux::my::testing::ExactBuf;
using sqlmux::my::testing::frame;
using sqlmux::my::testing::kRealPackets;

namespace {

// Decodes every logical packet in `wire` fed in two pieces split at `cut`
// (the way a relay buffer fills), returning the payloads.
std::vector<std::string> decode_split(std::string_view wire, size_t cut, uint32_t max_len) {
  std::vector<std::string> got;
  std::string buf;
  auto drain = [&]() {
    ExactBuf b(buf);
    size_t off = 0;
    for (;;) {
      Packet p;
      size_t consumed = 0;
      const Decode d = decode_packet(b.data() + off, b.size() - off, max_len, p, consumed);
      REQUIRE(d != Decode::Malformed);
      if (d == Decode::NeedMore) {
        REQUIRE(consumed == 0);
        break;
      }
      got.emplace_back(p.payload());
      off += consumed;
    }
    buf.erase(0, off);
  };
  buf.append(wire.substr(0, cut));
  drain();
  buf.append(wire.substr(cut));
  drain();
  CHECK(buf.empty());
  return got;
}

std::string big_payload(size_t n) {
  std::string s(n, '\0');
  for (size_t i = 0; i < n; ++i) s[i] = static_cast<char>((i * 131 + 7) & 0xff);
  return s;
}

}  // namespace

TEST_CASE("mysql_packet: real packets frame and decode", "[mysql]") {
  for (const auto& rp : kRealPackets) {
    INFO(rp.session << " " << rp.label);
    ExactBuf buf(rp.wire);
    PacketHeader h;
    REQUIRE(peek_header(buf.data(), buf.size(), kMaxPacketLimit, h) == Decode::Complete);
    CHECK(h.total() == rp.wire.size());
    CHECK_FALSE(h.continued());
    Packet p;
    size_t consumed = 0;
    REQUIRE(decode_packet(buf.data(), buf.size(), kMaxPacketLimit, p, consumed) ==
            Decode::Complete);
    CHECK(consumed == rp.wire.size());
    PacketExtent ext;
    REQUIRE(peek_packet(buf.data(), buf.size(), kMaxPacketLimit, ext) == Decode::Complete);
    std::string unused;
    CHECK(packet_payload(buf.data(), ext, unused) == p.payload());
    CHECK(unused.empty());  // one chunk: a view, no copy
    CHECK(p.payload() == rp.wire.substr(4));
    CHECK(p.seq() == static_cast<uint8_t>(rp.wire[3]));
    CHECK(p.chunks() == 1);
    CHECK_FALSE(p.joined());
    // Zero-copy: a single chunk points into the caller's buffer.
    CHECK(static_cast<const void*>(p.payload().data()) == static_cast<const void*>(buf.data() + 4));
    // Re-framing gives the same bytes.
    std::string again;
    uint8_t seq = p.seq();
    put_packet(again, seq, p.payload());
    CHECK(again == rp.wire);
    CHECK(seq == static_cast<uint8_t>(p.seq() + 1));
  }
}

TEST_CASE("mysql_packet: truncated packets need more", "[mysql]") {
  for (const auto& rp : kRealPackets) {
    INFO(rp.session << " " << rp.label);
    for (size_t n = 0; n < rp.wire.size(); ++n) {
      ExactBuf buf(rp.wire.substr(0, n));
      Packet p;
      size_t consumed = 99;
      CHECK(decode_packet(buf.data(), buf.size(), kMaxPacketLimit, p, consumed) ==
            Decode::NeedMore);
      CHECK(consumed == 0);
      PacketHeader h;
      CHECK(peek_header(buf.data(), buf.size(), kMaxPacketLimit, h) ==
            (n < 4 ? Decode::NeedMore : Decode::Complete));
    }
  }
}

TEST_CASE("mysql_packet: a session's stream split at every offset", "[mysql]") {
  // Every server packet of the DEPRECATE_EOF session, back to back.
  std::string stream;
  std::vector<std::string> want;
  for (const auto* rp : sqlmux::my::testing::real("de", {}, 'S')) {
    stream.append(rp->wire);
    want.emplace_back(rp->wire.substr(4));
  }
  REQUIRE(want.size() > 30);
  for (size_t cut = 0; cut <= stream.size(); ++cut) {
    INFO("cut " << cut);
    REQUIRE(decode_split(stream, cut, kMaxPacketLimit) == want);
  }
}

TEST_CASE("mysql_packet: two packets in one buffer", "[mysql]") {
  const std::string wire = frame(0, "\x03SELECT 1") + frame(0, "\x0e");
  ExactBuf buf(wire);
  Packet p;
  size_t consumed = 0;
  REQUIRE(decode_packet(buf.data(), buf.size(), 1024, p, consumed) == Decode::Complete);
  CHECK(p.payload() == "\x03SELECT 1");
  REQUIRE(consumed == 13);
  REQUIRE(decode_packet(buf.data() + consumed, buf.size() - consumed, 1024, p, consumed) ==
          Decode::Complete);
  CHECK(p.payload() == "\x0e");
  CHECK(consumed == 5);
}

TEST_CASE("mysql_packet: empty payload and the maximum", "[mysql]") {
  const std::string empty = frame(3, "");
  ExactBuf b(empty);
  Packet p;
  size_t consumed = 0;
  REQUIRE(decode_packet(b.data(), b.size(), 0, p, consumed) == Decode::Complete);
  CHECK(p.payload().empty());
  CHECK(p.seq() == 3);
  CHECK(consumed == 4);

  // Over the caller's maximum: malformed from the header alone, before
  // any payload byte has arrived.
  const std::string hdr = bytes({0x01, 0x00, 0x01, 0x00});  // 65537
  ExactBuf h(hdr);
  PacketHeader ph;
  CHECK(peek_header(h.data(), h.size(), 65536, ph) == Decode::Malformed);
  CHECK(peek_header(h.data(), h.size(), 65537, ph) == Decode::Complete);
  CHECK(ph.len == 65537);
  CHECK(decode_packet(h.data(), h.size(), 65536, p, consumed) == Decode::Malformed);
  CHECK(decode_packet(h.data(), h.size(), 65537, p, consumed) == Decode::NeedMore);

  const std::string small = frame(0, "abcdef");
  ExactBuf s(small);
  CHECK(decode_packet(s.data(), s.size(), 5, p, consumed) == Decode::Malformed);
  CHECK(decode_packet(s.data(), s.size(), 6, p, consumed) == Decode::Complete);
}

TEST_CASE("mysql_packet: 16 MiB + 5 payload splits and joins", "[mysql]") {
  const size_t n = (16u << 20) + 5;
  const std::string payload = big_payload(n);
  std::string wire;
  uint8_t seq = 250;  // wraps past 255
  put_packet(wire, seq, payload);
  // 0xFFFFFF + (n - 0xFFFFFF) = two chunks: 0xFFFFFF and 6 bytes.
  REQUIRE(chunk_count(n) == 2);
  REQUIRE(wire.size() == n + 8);
  CHECK(seq == 252);
  CHECK(static_cast<uint8_t>(wire[0]) == 0xff);
  CHECK(static_cast<uint8_t>(wire[1]) == 0xff);
  CHECK(static_cast<uint8_t>(wire[2]) == 0xff);
  CHECK(static_cast<uint8_t>(wire[3]) == 250);
  const size_t second = 4 + kMaxChunk;
  CHECK(static_cast<uint8_t>(wire[second]) == n - kMaxChunk);
  CHECK(wire[second + 1] == 0);
  CHECK(wire[second + 2] == 0);
  CHECK(static_cast<uint8_t>(wire[second + 3]) == 251);

  ExactBuf buf(wire);
  PacketHeader h;
  REQUIRE(peek_header(buf.data(), buf.size(), kMaxPacketLimit, h) == Decode::Complete);
  CHECK(h.continued());
  PacketExtent ext;
  REQUIRE(peek_packet(buf.data(), buf.size(), kMaxPacketLimit, ext) == Decode::Complete);
  CHECK(ext.wire_len == wire.size());
  CHECK(ext.payload_len == n);
  CHECK(ext.chunks == 2);
  CHECK(ext.first_seq == 250);
  CHECK(ext.last_seq == 251);
  std::string joined;
  join_payload(buf.data(), ext, joined);
  CHECK(joined == payload);
  std::string scratch = "left over";
  CHECK(packet_payload(buf.data(), ext, scratch) == payload);

  Packet p;
  size_t consumed = 0;
  REQUIRE(decode_packet(buf.data(), buf.size(), kMaxPacketLimit, p, consumed) == Decode::Complete);
  CHECK(consumed == wire.size());
  CHECK(p.joined());
  CHECK(p.chunks() == 2);
  CHECK(p.payload() == payload);
  // A copy keeps its own storage.
  Packet copy = p;
  CHECK(copy.payload() == payload);

  // The logical size counts against the maximum, and the check happens as
  // soon as the header of the chunk that crosses it is there.
  CHECK(decode_packet(buf.data(), buf.size(), n - 1, p, consumed) == Decode::Malformed);
  CHECK(peek_packet(buf.data(), second + 4, n - 1, ext) == Decode::Malformed);
  CHECK(peek_packet(buf.data(), second + 4, n, ext) == Decode::NeedMore);
  // A truncated continuation needs more; the first chunk alone needs more.
  CHECK(peek_packet(buf.data(), second, kMaxPacketLimit, ext) == Decode::NeedMore);
  CHECK(peek_packet(buf.data(), wire.size() - 1, kMaxPacketLimit, ext) == Decode::NeedMore);

  // Out-of-sequence continuation.
  std::string bad = wire;
  bad[second + 3] = static_cast<char>(7);
  ExactBuf b2(bad);
  CHECK(decode_packet(b2.data(), b2.size(), kMaxPacketLimit, p, consumed) == Decode::Malformed);
}

TEST_CASE("mysql_packet: exactly 0xFFFFFF ends with an empty chunk", "[mysql]") {
  const std::string payload = big_payload(kMaxChunk);
  std::string wire;
  uint8_t seq = 0;
  put_packet(wire, seq, payload);
  REQUIRE(chunk_count(kMaxChunk) == 2);
  REQUIRE(wire.size() == kMaxChunk + 8);
  CHECK(seq == 2);
  CHECK(wire.substr(wire.size() - 4) == bytes({0, 0, 0, 1}));
  ExactBuf buf(wire);
  Packet p;
  size_t consumed = 0;
  // Without the empty chunk the packet is not complete.
  CHECK(decode_packet(buf.data(), buf.size() - 4, kMaxPacketLimit, p, consumed) ==
        Decode::NeedMore);
  REQUIRE(decode_packet(buf.data(), buf.size(), kMaxPacketLimit, p, consumed) == Decode::Complete);
  CHECK(p.payload() == payload);
  CHECK(p.chunks() == 2);
  CHECK(p.last_seq() == 1);

  // Two full chunks plus 5 bytes, and a small packet after it.
  const std::string two = big_payload(2 * static_cast<size_t>(kMaxChunk) + 5);
  std::string wire2;
  seq = 0;
  put_packet(wire2, seq, two);
  CHECK(seq == 3);
  put_packet(wire2, seq, "\x0e");
  ExactBuf b2(wire2);
  REQUIRE(decode_packet(b2.data(), b2.size(), kMaxPacketLimit, p, consumed) == Decode::Complete);
  CHECK(p.chunks() == 3);
  CHECK(p.payload() == two);
  REQUIRE(decode_packet(b2.data() + consumed, b2.size() - consumed, kMaxPacketLimit, p, consumed) ==
          Decode::Complete);
  CHECK(p.payload() == "\x0e");
  CHECK(p.seq() == 3);
}

TEST_CASE("mysql_packet: length-encoded integers", "[mysql]") {
  struct Case {
    uint64_t v;
    std::string wire;
  };
  const std::vector<Case> cases = {
      {0, bytes({0x00})},
      {250, bytes({0xfa})},
      {251, bytes({0xfc, 0xfb, 0x00})},
      {0xffff, bytes({0xfc, 0xff, 0xff})},
      {0x10000, bytes({0xfd, 0x00, 0x00, 0x01})},
      {0xffffff, bytes({0xfd, 0xff, 0xff, 0xff})},
      {0x1000000, bytes({0xfe, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00})},
      {UINT64_MAX, bytes({0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff})},
  };
  for (const auto& c : cases) {
    INFO(c.v);
    std::string out;
    Writer(out).lenenc(c.v);
    CHECK(out == c.wire);
    CHECK(lenenc_size(c.v) == c.wire.size());
    ExactBuf buf(c.wire);
    Reader r(buf.data(), buf.size());
    uint64_t v = 0;
    REQUIRE(r.lenenc(v));
    CHECK(v == c.v);
    CHECK(r.at_end());
    // Every truncation fails and stays failed.
    for (size_t n = 0; n < c.wire.size(); ++n) {
      ExactBuf t(c.wire.substr(0, n));
      Reader rt(t.data(), t.size());
      CHECK_FALSE(rt.lenenc(v));
      CHECK_FALSE(rt.ok());
      uint8_t b = 0;
      CHECK_FALSE(rt.u8(b));
    }
  }
  // A non-minimal encoding is still read.
  {
    const std::string w = bytes({0xfc, 0x05, 0x00});
    Reader r(w);
    uint64_t v = 0;
    REQUIRE(r.lenenc(v));
    CHECK(v == 5);
  }
  // 0xFF is never an integer; 0xFB is NULL, not an integer.
  for (int first : {0xff, 0xfb}) {
    const std::string w = bytes({first, 0, 0, 0, 0, 0, 0, 0, 0});
    Reader r(w);
    uint64_t v = 0;
    CHECK_FALSE(r.lenenc(v));
    CHECK_FALSE(r.ok());
  }
  {
    const std::string w = bytes({0xfb});
    Reader r(w);
    uint64_t v = 7;
    bool is_null = false;
    REQUIRE(r.lenenc_or_null(v, is_null));
    CHECK(is_null);
    CHECK(v == 0);
    const std::string w2 = bytes({0xff});
    Reader r2(w2);
    CHECK_FALSE(r2.lenenc_or_null(v, is_null));
  }
}

TEST_CASE("mysql_packet: length-encoded strings", "[mysql]") {
  std::string out;
  Writer w(out);
  w.lenenc_str("abc");
  w.lenenc_str(std::string(300, 'x'));
  w.lenenc_null();
  w.lenenc_str("");
  CHECK(out.substr(0, 4) ==
        "\x03"
        "abc");
  CHECK(out.substr(4, 3) == bytes({0xfc, 0x2c, 0x01}));
  ExactBuf buf(out);
  Reader r(buf.data(), buf.size());
  std::string_view s;
  std::optional<std::string_view> o;
  REQUIRE(r.lenenc_str(s));
  CHECK(s == "abc");
  REQUIRE(r.lenenc_str(s));
  CHECK(s == std::string(300, 'x'));
  REQUIRE(r.lenenc_str_or_null(o));
  CHECK_FALSE(o.has_value());
  REQUIRE(r.lenenc_str_or_null(o));
  REQUIRE(o.has_value());
  CHECK(o->empty());
  CHECK(r.at_end());

  // A length beyond the data (including a huge 8-byte one) fails without
  // reading past the buffer.
  for (const std::string& bad : {bytes({0x05, 'a', 'b'}), bytes({0xfc, 0x00, 0x01, 'a'}),
                                 bytes({0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 'a'}),
                                 bytes({0xfd, 0x01}), bytes({0xff, 'a'})}) {
    ExactBuf b(bad);
    Reader rb(b.data(), b.size());
    CHECK_FALSE(rb.lenenc_str(s));
    Reader rb2(b.data(), b.size());
    CHECK_FALSE(rb2.lenenc_str_or_null(o));
  }
}

TEST_CASE("mysql_packet: fixed-width little-endian values", "[mysql]") {
  std::string out;
  Writer w(out);
  w.u8(0x01);
  w.u16(0x0302);
  w.u24(0x060504);
  w.u32(0x0a090807);
  w.u64(0x1211100f0e0d0c0bull);
  w.cstr("hi");
  w.zeros(2);
  CHECK(out ==
        bytes({1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 'h', 'i', 0, 0, 0}));
  ExactBuf buf(out);
  Reader r(buf.data(), buf.size());
  uint8_t a = 0;
  uint16_t b = 0;
  uint32_t c = 0;
  uint32_t d = 0;
  uint64_t e = 0;
  std::string_view s;
  REQUIRE((r.u8(a) && r.u16(b) && r.u24(c) && r.u32(d) && r.u64(e) && r.cstr(s)));
  CHECK(a == 1);
  CHECK(b == 0x0302);
  CHECK(c == 0x060504);
  CHECK(d == 0x0a090807);
  CHECK(e == 0x1211100f0e0d0c0bull);
  CHECK(s == "hi");
  uint8_t next = 0;
  REQUIRE(r.peek(next));
  CHECK(next == 0);
  CHECK(r.skip(2));
  CHECK(r.at_end());
  CHECK_FALSE(r.peek(next));
  CHECK_FALSE(r.skip(1));
  CHECK_FALSE(r.ok());
  // cstr without a NUL fails.
  const std::string nonul = "abc";
  Reader r2(nonul);
  CHECK_FALSE(r2.cstr(s));
}

TEST_CASE("mysql_packet: constant names", "[mysql]") {
  CHECK(to_string(Command::Query) == "COM_QUERY");
  CHECK(to_string(Command::ResetConnection) == "COM_RESET_CONNECTION");
  CHECK(command_name(0x17) == "COM_STMT_EXECUTE");
  CHECK(command_name(0x77) == "COM_UNKNOWN");
  CHECK_FALSE(command_expects_response(0x01));
  CHECK_FALSE(command_expects_response(0x19));
  CHECK_FALSE(command_expects_response(0x18));
  CHECK(command_expects_response(0x03));
  CHECK(to_string(ErrorCode::AccessDeniedError) == "ER_ACCESS_DENIED_ERROR");
  CHECK(static_cast<int>(ErrorCode::AccessDeniedError) == 1045);
  CHECK(sqlstate(ErrorCode::AccessDeniedError) == "28000");
  CHECK(static_cast<int>(ErrorCode::BadDbError) == 1049);
  CHECK(sqlstate(ErrorCode::BadDbError) == "42000");
  CHECK(static_cast<int>(ErrorCode::ConCountError) == 1040);
  CHECK(sqlstate(ErrorCode::ConCountError) == "08004");
  CHECK(static_cast<int>(ErrorCode::UnknownComError) == 1047);
  CHECK(sqlstate(ErrorCode::UnknownComError) == "08S01");
  CHECK(static_cast<int>(ErrorCode::NetPacketTooLarge) == 1153);
  CHECK(sqlstate(ErrorCode::NetPacketTooLarge) == "08S01");
  CHECK(static_cast<int>(ErrorCode::HandshakeError) == 1043);
  CHECK(static_cast<int>(ErrorCode::NetPacketsOutOfOrder) == 1156);
  CHECK(to_string(static_cast<ErrorCode>(9999)) == "ER_UNKNOWN");
  CHECK(sqlstate(static_cast<ErrorCode>(9999)) == "HY000");
  CHECK(to_string(FieldType::VarString) == "MYSQL_TYPE_VAR_STRING");
  CHECK(to_string(Decode::NeedMore) == "need-more");
  CHECK(capabilities_to_string(cap::kProtocol41 | cap::kSsl) == "CLIENT_PROTOCOL_41|CLIENT_SSL");
  CHECK(capabilities_to_string(cap::kMariaProgress) == "MARIADB_CLIENT_PROGRESS");
  CHECK(capabilities_to_string(1ull << 40) == "0x10000000000");
  CHECK(status_to_string(status::kInTrans | status::kAutocommit) ==
        "SERVER_STATUS_IN_TRANS|SERVER_STATUS_AUTOCOMMIT");
  CHECK(status_to_string(0).empty());
  // The documented bit values.
  CHECK(cap::kProtocol41 == 512);
  CHECK(cap::kSecureConnection == 32768);
  CHECK(cap::kPluginAuth == 0x80000);
  CHECK(cap::kDeprecateEof == 0x1000000);
  CHECK(status::kMoreResultsExist == 8);
  CHECK(status::kSessionStateChanged == 0x4000);
}
