// MySQL codec: random bytes (fixed seed) and mutated captures through every
// decoder. Nothing here checks results beyond basic invariants: the point is
// that no input crashes, throws or reads out of bounds (run under ASan).
#include <catch2/catch.hpp>

#include <random>
#include <string>
#include <vector>

#include "protocol/mysql/command.h"
#include "protocol/mysql/handshake.h"
#include "protocol/mysql/packet.h"
#include "protocol/mysql/reader.h"
#include "protocol/mysql/response.h"
#include "tests/unit/test_mysql_fixtures.h"

using namespace sqlmux::my;
using sqlmux::my::testing::ExactBuf;
using sqlmux::my::testing::kRealPackets;

namespace {

const uint64_t kCapsVariants[] = {
    cap::kProtocol41,
    cap::kProtocol41 | cap::kDeprecateEof,
    cap::kProtocol41 | cap::kSessionTrack,
    cap::kProtocol41 | cap::kSessionTrack | cap::kDeprecateEof | cap::kMariaProgress |
        cap::kMariaExtendedMetadata,
};

const ResponseKind kKinds[] = {
    ResponseKind::Query,     ResponseKind::Execute, ResponseKind::Fetch,     ResponseKind::Prepare,
    ResponseKind::FieldList, ResponseKind::Simple,  ResponseKind::Statistics};

// Runs every payload decoder on `p`.
void decode_all(std::string_view p) {
  Greeting g;
  HandshakeResponse h;
  SslRequest s;
  AuthSwitchRequest a;
  std::string_view v;
  CachingSha2Status cs{};
  ErrPacket e;
  EofPacket eof;
  PrepareOk po;
  SessionState ss;
  StmtExecute se;
  uint16_t st = 0;
  uint16_t w = 0;
  uint32_t id = 0;
  uint8_t c = 0;
  std::string out;
  (void)decode_greeting(p, g);
  (void)decode_handshake_response(p, h);
  (void)decode_ssl_request(p, s);
  (void)is_ssl_request(p);
  (void)decode_auth_switch(p, a);
  (void)decode_auth_more_data(p, v);
  (void)decode_caching_sha2_status(p, cs);
  (void)decode_err(p, e);
  (void)decode_eof(p, eof);
  (void)decode_prepare_ok(p, po);
  (void)decode_session_state(p, ss);
  (void)statement_id_of(p, id);
  (void)decode_command(p, c, v);
  (void)eof_to_ok_terminator(p, out);
  for (uint64_t caps : kCapsVariants) {
    OkPacket ok;
    ColumnDef col;
    (void)decode_ok(p, caps, ok);
    (void)decode_ok_status(p, caps, st, w);
    (void)decode_column_def(p, caps, col);
    (void)ok_terminator_to_eof(p, caps, out);
    (void)is_result_terminator(p, caps);
  }
  for (uint16_t n : {0, 1, 2, 7, 8, 9, 300, 65535}) {
    (void)decode_stmt_execute(p, n, se);
    (void)bind_param_types(p, n, std::vector<ParamType>(n), out);
  }
  std::string copy(p);
  (void)rewrite_statement_id(copy, 42);
}

// Feeds a sequence of payloads to readers of every kind and caps, and
// translates what they accept.
void read_all(const std::vector<std::string>& packets) {
  for (ResponseKind kind : kKinds) {
    for (uint64_t caps : kCapsVariants) {
      ResponseReader r(kind, caps);
      for (const auto& p : packets) {
        const Step s = r.feed(p);
        if (s == Step::Malformed) {
          CHECK(r.failed());
          break;
        }
        std::vector<std::string> out;
        (void)translate_for_client(r, p, true, out);
        (void)translate_for_client(r, p, false, out);
        if (s == Step::Done) break;
      }
    }
  }
}

std::string random_bytes(std::mt19937& rng, size_t n, bool small_alphabet) {
  std::uniform_int_distribution<int> any(0, 255);
  // Likely header bytes, lenenc prefixes, NULs and small lengths.
  static const uint8_t kSmall[] = {0x00, 0x00, 0x01, 0x02, 0x03, 0x05, 0x0a, 0x0c,
                                   0x17, 0x40, 0xfb, 0xfc, 0xfd, 0xfe, 0xff, '#'};
  std::uniform_int_distribution<size_t> pick(0, sizeof(kSmall) - 1);
  std::string s(n, '\0');
  for (auto& ch : s) {
    ch = static_cast<char>(small_alphabet ? kSmall[pick(rng)] : any(rng));
  }
  return s;
}

}  // namespace

TEST_CASE("mysql random: decoders survive random payloads", "[mysql]") {
  std::mt19937 rng(20261130);
  std::uniform_int_distribution<size_t> len(0, 80);
  for (int i = 0; i < 3000; ++i) {
    const std::string p = random_bytes(rng, len(rng), i % 2 == 0);
    ExactBuf b(p);
    decode_all(b.view());
  }
}

TEST_CASE("mysql random: framing survives random streams", "[mysql]") {
  std::mt19937 rng(7);
  std::uniform_int_distribution<size_t> len(0, 200);
  for (int i = 0; i < 2000; ++i) {
    const std::string s = random_bytes(rng, len(rng), i % 2 == 0);
    ExactBuf b(s);
    size_t off = 0;
    for (;;) {
      Packet p;
      size_t consumed = 0;
      const Decode d = decode_packet(b.data() + off, b.size() - off, 1024, p, consumed);
      if (d != Decode::Complete) {
        CHECK(consumed == 0);
        break;
      }
      REQUIRE(consumed >= kHeaderLen);
      CHECK(p.payload().size() <= 1024);
      decode_all(p.payload());
      off += consumed;
    }
  }
}

TEST_CASE("mysql random: readers survive random packet sequences", "[mysql]") {
  std::mt19937 rng(99);
  std::uniform_int_distribution<size_t> len(0, 24);
  std::uniform_int_distribution<size_t> count(1, 12);
  for (int i = 0; i < 400; ++i) {
    std::vector<std::string> packets;
    const size_t n = count(rng);
    for (size_t k = 0; k < n; ++k) packets.push_back(random_bytes(rng, len(rng), true));
    read_all(packets);
  }
}

TEST_CASE("mysql random: mutated captures", "[mysql]") {
  std::mt19937 rng(1234);
  std::vector<std::string> server;
  for (const auto& rp : kRealPackets) {
    if (rp.dir == 'S') server.emplace_back(rp.wire.substr(4));
  }
  for (const auto& rp : kRealPackets) {
    std::string p(rp.wire.substr(4));
    if (p.empty()) continue;
    std::uniform_int_distribution<size_t> pos(0, p.size() - 1);
    std::uniform_int_distribution<int> byte(0, 255);
    for (int k = 0; k < 20; ++k) {
      std::string m = p;
      m[pos(rng)] = static_cast<char>(byte(rng));
      if (k % 3 == 0) m.resize(pos(rng));
      ExactBuf b(m);
      decode_all(b.view());
    }
  }
  // Whole server streams with one packet damaged.
  for (int k = 0; k < 200; ++k) {
    std::vector<std::string> seq(server.begin(), server.end());
    std::uniform_int_distribution<size_t> which(0, seq.size() - 1);
    std::string& victim = seq[which(rng)];
    if (!victim.empty()) {
      std::uniform_int_distribution<size_t> pos(0, victim.size() - 1);
      victim[pos(rng)] = static_cast<char>(rng() & 0xff);
    }
    const size_t start = which(rng);
    read_all(std::vector<std::string>(
        seq.begin() + static_cast<std::ptrdiff_t>(start),
        seq.begin() + static_cast<std::ptrdiff_t>(std::min(seq.size(), start + 12))));
  }
}
