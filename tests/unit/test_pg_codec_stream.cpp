// pg_codec: peek_header / decode_message length handling and StreamDecoder
// over every fixture, whole, split at every offset, byte by byte and
// concatenated with other messages.
#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include "protocol/pg/codec.h"
#include "tests/unit/test_pg_codec_fixtures.h"

using namespace sqlmux::pg;
using sqlmux::pg::testing::bytes;
using sqlmux::pg::testing::ExactBuf;
using sqlmux::pg::testing::Fixture;
using sqlmux::pg::testing::Recorder;
using sqlmux::pg::testing::typed_fixtures;

namespace {

Decode feed_str(StreamDecoder& d, std::string_view s) {
  ExactBuf buf(s);
  return d.feed(buf.data(), buf.size());
}

// The type and body a fixture should decode to.
Recorder::Got expected(const Fixture& f) {
  return {f.wire[0], f.wire.substr(5)};
}

void check_got(const Recorder& rec, const std::vector<const Fixture*>& want) {
  REQUIRE(rec.malformed.empty());
  REQUIRE(rec.messages.size() == want.size());
  for (size_t i = 0; i < want.size(); ++i) {
    const auto e = expected(*want[i]);
    CHECK(rec.messages[i].type == e.type);
    CHECK(rec.messages[i].body == e.body);
  }
}

}  // namespace

TEST_CASE("pg_codec: fixtures are self-consistent", "[pg_codec]") {
  for (const auto& f : typed_fixtures()) {
    INFO(f.name);
    ExactBuf buf(f.wire);
    Message m;
    size_t consumed = 0;
    REQUIRE(decode_message(buf.data(), buf.size(), kMaxMessageLen, m, consumed) ==
            Decode::Complete);
    CHECK(consumed == f.wire.size());
    CHECK(m.type == f.wire[0]);
    CHECK(m.body.size() == f.wire.size() - 5);
    CHECK(static_cast<const void*>(m.body.data()) == static_cast<const void*>(buf.data() + 5));
    Header h;
    REQUIRE(peek_header(buf.data(), 5, kMaxMessageLen, h) == Decode::Complete);
    CHECK(h.type == f.wire[0]);
    CHECK(h.total() == f.wire.size());
    CHECK(h.body_len() == f.wire.size() - 5);
  }
}

TEST_CASE("pg_codec: truncated messages need more", "[pg_codec]") {
  for (const auto& f : typed_fixtures()) {
    INFO(f.name);
    for (size_t n = 0; n < f.wire.size(); ++n) {
      INFO("prefix " << n);
      ExactBuf buf(f.wire.substr(0, n));
      Message m;
      size_t consumed = 99;
      CHECK(decode_message(buf.data(), buf.size(), kMaxMessageLen, m, consumed) ==
            Decode::NeedMore);
      CHECK(consumed == 0);
      Header h;
      CHECK(peek_header(buf.data(), buf.size(), kMaxMessageLen, h) ==
            (n < 5 ? Decode::NeedMore : Decode::Complete));
    }
  }
}

TEST_CASE("pg_codec: bad length fields are malformed without reading the body", "[pg_codec]") {
  struct Case {
    uint32_t len;
    uint32_t max;
    Decode want;
  };
  const std::vector<Case> cases = {
      {0, kMaxMessageLen, Decode::Malformed},
      {1, kMaxMessageLen, Decode::Malformed},
      {3, kMaxMessageLen, Decode::Malformed},
      {4, kMaxMessageLen, Decode::Complete},
      {5, kMaxMessageLen, Decode::NeedMore},
      {kMaxMessageLen, kMaxMessageLen, Decode::NeedMore},
      {kMaxMessageLen + 1, kMaxMessageLen, Decode::Malformed},
      {0x7fffffffu, kMaxMessageLen, Decode::Malformed},
      {0x80000000u, kMaxMessageLen, Decode::Malformed},  // 2 GiB
      {0xffffffffu, kMaxMessageLen, Decode::Malformed},
      {0xffffffffu, 0xffffffffu, Decode::NeedMore},  // allowed, but not all there
      {100, 100, Decode::NeedMore},
      {101, 100, Decode::Malformed},
      {4, 3, Decode::Malformed},
  };
  for (const auto& c : cases) {
    INFO("len " << c.len << " max " << c.max);
    const std::string wire =
        bytes({'Q', static_cast<int>(c.len >> 24), static_cast<int>((c.len >> 16) & 0xff),
               static_cast<int>((c.len >> 8) & 0xff), static_cast<int>(c.len & 0xff)});
    ExactBuf buf(wire);  // exactly the header: any body read is an overflow
    Header h;
    const Decode peek = peek_header(buf.data(), buf.size(), c.max, h);
    CHECK(peek == (c.want == Decode::Malformed ? Decode::Malformed : Decode::Complete));
    Message m;
    size_t consumed = 0;
    CHECK(decode_message(buf.data(), buf.size(), c.max, m, consumed) == c.want);
    if (c.want == Decode::Complete) CHECK(consumed == 5);

    Recorder rec;
    StreamDecoder dec(rec, c.max);
    CHECK(dec.feed(buf.data(), buf.size()) == c.want);
    CHECK(rec.malformed.size() == (c.want == Decode::Malformed ? 1u : 0u));
  }
}

TEST_CASE("pg_codec: StreamDecoder delivers each fixture whole", "[pg_codec]") {
  for (const auto& f : typed_fixtures()) {
    INFO(f.name);
    Recorder rec;
    StreamDecoder dec(rec);
    CHECK(feed_str(dec, f.wire) == Decode::Complete);
    check_got(rec, {&f});
    CHECK(dec.buffered() == 0);
  }
}

TEST_CASE("pg_codec: StreamDecoder with a fixture split at every offset", "[pg_codec]") {
  for (const auto& f : typed_fixtures()) {
    INFO(f.name);
    for (size_t cut = 0; cut <= f.wire.size(); ++cut) {
      INFO("cut at " << cut);
      Recorder rec;
      StreamDecoder dec(rec);
      const Decode first = feed_str(dec, f.wire.substr(0, cut));
      CHECK(first == (cut == f.wire.size() ? Decode::Complete
                                           : (cut == 0 ? Decode::Complete : Decode::NeedMore)));
      CHECK(rec.messages.size() == (cut == f.wire.size() ? 1u : 0u));
      CHECK(dec.buffered() == (cut == f.wire.size() ? 0u : cut));
      CHECK(feed_str(dec, f.wire.substr(cut)) == Decode::Complete);
      check_got(rec, {&f});
    }
  }
}

TEST_CASE("pg_codec: StreamDecoder fed one byte at a time", "[pg_codec]") {
  for (const auto& f : typed_fixtures()) {
    INFO(f.name);
    Recorder rec;
    StreamDecoder dec(rec);
    for (size_t i = 0; i < f.wire.size(); ++i) {
      const Decode d = feed_str(dec, f.wire.substr(i, 1));
      if (i + 1 < f.wire.size()) {
        CHECK(d == Decode::NeedMore);
        CHECK(rec.messages.empty());
      } else {
        CHECK(d == Decode::Complete);
      }
    }
    check_got(rec, {&f});
  }
}

TEST_CASE("pg_codec: StreamDecoder with two and three messages in one buffer", "[pg_codec]") {
  const auto fx = typed_fixtures();
  for (size_t i = 0; i < fx.size(); ++i) {
    const Fixture& a = fx[i];
    const Fixture& b = fx[(i + 1) % fx.size()];
    const Fixture& c = fx[(i + 2) % fx.size()];
    INFO(a.name << " + " << b.name << " + " << c.name);
    {
      Recorder rec;
      StreamDecoder dec(rec);
      CHECK(feed_str(dec, a.wire + b.wire) == Decode::Complete);
      check_got(rec, {&a, &b});
    }
    {
      Recorder rec;
      StreamDecoder dec(rec);
      CHECK(feed_str(dec, a.wire + b.wire + c.wire) == Decode::Complete);
      check_got(rec, {&a, &b, &c});
    }
    {  // two messages and part of a third, then the rest
      const std::string all = a.wire + b.wire + c.wire;
      for (size_t cut = 0; cut <= all.size(); ++cut) {
        Recorder rec;
        StreamDecoder dec(rec);
        (void)feed_str(dec, all.substr(0, cut));
        CHECK(feed_str(dec, all.substr(cut)) == Decode::Complete);
        check_got(rec, {&a, &b, &c});
      }
    }
  }
}

TEST_CASE("pg_codec: StreamDecoder stays failed after a malformed message", "[pg_codec]") {
  const auto fx = typed_fixtures();
  Recorder rec;
  StreamDecoder dec(rec);
  // A good message, then a header with length 3.
  const std::string bad = fx[0].wire + bytes({'Q', 0, 0, 0, 3}) + fx[1].wire;
  CHECK(feed_str(dec, bad) == Decode::Malformed);
  REQUIRE(rec.messages.size() == 1);  // the one before the bad header
  REQUIRE(rec.malformed.size() == 1);
  CHECK_FALSE(rec.malformed[0].empty());
  CHECK(feed_str(dec, fx[2].wire) == Decode::Malformed);
  CHECK(feed_str(dec, "") == Decode::Malformed);
  CHECK(rec.messages.size() == 1);
  CHECK(rec.malformed.size() == 1);
}

TEST_CASE("pg_codec: StreamDecoder max_len and bad headers split across feeds", "[pg_codec]") {
  Recorder rec;
  StreamDecoder dec(rec, 16);
  std::string ok;
  put_query(ok, "SELECT 1");  // length 13
  CHECK(feed_str(dec, ok) == Decode::Complete);
  std::string big;
  put_query(big, "SELECT 1234567890");  // length 22 > 16
  CHECK(feed_str(dec, big.substr(0, 3)) == Decode::NeedMore);
  CHECK(rec.malformed.empty());
  CHECK(feed_str(dec, big.substr(3, 2)) == Decode::Malformed);
  CHECK(rec.malformed.size() == 1);
  CHECK(rec.messages.size() == 1);
}

TEST_CASE("pg_codec: StreamDecoder accepts empty feeds", "[pg_codec]") {
  Recorder rec;
  StreamDecoder dec(rec);
  CHECK(dec.feed(nullptr, 0) == Decode::Complete);
  CHECK(feed_str(dec, "Z") == Decode::NeedMore);
  CHECK(dec.feed(nullptr, 0) == Decode::NeedMore);
  CHECK(dec.buffered() == 1);
  CHECK(feed_str(dec, bytes({0, 0, 0, 5, 'I'})) == Decode::Complete);
  REQUIRE(rec.messages.size() == 1);
  CHECK(rec.messages[0].type == 'Z');
  CHECK(rec.messages[0].body == "I");
}
