// pg_codec: random bytes (fixed seed) through every decoder and body parser.
// Nothing here checks results beyond basic invariants: the point is that no
// input crashes, asserts, throws or reads out of bounds (run under ASan).
#include <catch2/catch.hpp>

#include <random>
#include <string>
#include <vector>

#include "protocol/pg/codec.h"
#include "tests/unit/test_pg_codec_fixtures.h"

using namespace sqlmux::pg;
using sqlmux::pg::testing::ExactBuf;
using sqlmux::pg::testing::typed_fixtures;

namespace {

// Runs every body parser on `body`.
void parse_all(std::string_view body) {
  ErrorFields ef;
  std::string_view a, b;
  char c = 0;
  int32_t i = 0, j = 0;
  std::vector<uint32_t> types;
  (void)parse_error_fields(body, ef);
  (void)parse_parameter_status(body, a, b);
  (void)parse_ready_for_query(body, c);
  (void)parse_backend_key_data(body, i, j);
  (void)parse_query(body, a);
  (void)parse_password(body, a);
  (void)parse_sasl_initial_response(body, a, b);
  (void)parse_authentication(body, i, a);
  (void)parse_parse(body, a, b, types);
  (void)parse_bind_names(body, a, b);
  (void)parse_close_or_describe(body, c, a);
  (void)parse_command_complete(body, a);
}

struct ParseAll : MessageCallbacks {
  size_t messages = 0;
  size_t malformed = 0;
  void on_message(const Message& m) override {
    ++messages;
    (void)frontend_message_name(m.type);
    (void)backend_message_name(m.type);
    parse_all(m.body);
  }
  void on_malformed(std::string_view) override { ++malformed; }
};

std::string random_bytes(std::mt19937& rng, size_t n, bool small_alphabet) {
  std::uniform_int_distribution<int> any(0, 255);
  // A small alphabet makes NULs, small lengths and valid type bytes likely.
  static const char kSmall[] = {0,   0,   0,   1,   4,   5,   8,   'S',
                                'P', 'I', 'E', 'V', 'C', 'M', 'x', '\xff'};
  std::uniform_int_distribution<size_t> pick(0, sizeof(kSmall) - 1);
  std::string s(n, '\0');
  for (auto& ch : s) ch = small_alphabet ? kSmall[pick(rng)] : static_cast<char>(any(rng));
  return s;
}

// Overwrites bytes of a valid fixture, keeping most of its structure.
std::string mutate(std::mt19937& rng, std::string s) {
  if (s.empty()) return s;
  std::uniform_int_distribution<size_t> pos(0, s.size() - 1);
  std::uniform_int_distribution<int> byte(0, 255);
  std::uniform_int_distribution<int> count(1, 4);
  for (int k = count(rng); k > 0; --k) s[pos(rng)] = static_cast<char>(byte(rng));
  if (rng() % 4 == 0) s.resize(pos(rng));
  return s;
}

}  // namespace

TEST_CASE("pg_codec: random bytes never crash the decoders", "[pg_codec][random]") {
  std::mt19937 rng(20240611);
  std::uniform_int_distribution<size_t> len_dist(0, 96);
  const auto fixtures = typed_fixtures();
  std::vector<std::string> startups;
  {
    std::string s;
    put_startup(s, {{"user", "u"}, {"database", "d"}});
    startups.push_back(s);
    s.clear();
    put_cancel_request(s, 7, 8);
    startups.push_back(s);
    s.clear();
    put_ssl_request(s);
    startups.push_back(s);
  }

  size_t complete = 0, need_more = 0, malformed = 0;
  for (int iter = 0; iter < 20000; ++iter) {
    std::string data;
    switch (iter % 4) {
      case 0:
        data = random_bytes(rng, len_dist(rng), false);
        break;
      case 1:
        data = random_bytes(rng, len_dist(rng), true);
        break;
      case 2: {
        const size_t x = rng() % fixtures.size();  // sequenced: same on every compiler
        const size_t y = rng() % fixtures.size();
        data = mutate(rng, fixtures[x].wire + fixtures[y].wire);
        break;
      }
      default:
        data = mutate(rng, startups[rng() % startups.size()]);
        break;
    }
    const ExactBuf buf(data);

    // Untyped startup packet.
    StartupPacket pkt;
    size_t consumed = 0;
    std::string error;
    const Decode sd = decode_startup(buf.data(), buf.size(), pkt, consumed, error);
    if (sd == Decode::Complete) REQUIRE(consumed <= buf.size());
    if (sd == Decode::Malformed) REQUIRE_FALSE(error.empty());

    // A typed message, and every parser on its body and on the raw bytes.
    Message m;
    const Decode md = decode_message(buf.data(), buf.size(), kMaxMessageLen, m, consumed);
    if (md == Decode::Complete) {
      REQUIRE(consumed <= buf.size());
      parse_all(m.body);
      ++complete;
    } else if (md == Decode::NeedMore) {
      ++need_more;
    } else {
      ++malformed;
    }
    parse_all(std::string_view(reinterpret_cast<const char*>(buf.data()), buf.size()));

    // The stream decoder, with a small maximum so that Malformed is common,
    // whole and in two pieces.
    ParseAll cb;
    StreamDecoder dec(cb, static_cast<uint32_t>(rng() % 128));
    (void)dec.feed(buf.data(), buf.size());
    REQUIRE(cb.malformed <= 1);
    const size_t cut = data.empty() ? 0 : rng() % data.size();
    ParseAll cb2;
    StreamDecoder dec2(cb2);
    const ExactBuf head(std::string_view(data).substr(0, cut));
    const ExactBuf tail(std::string_view(data).substr(cut));
    (void)dec2.feed(head.data(), head.size());
    (void)dec2.feed(tail.data(), tail.size());
    REQUIRE(cb2.malformed <= 1);
  }
  // The generators reach every outcome.
  CHECK(complete > 0);
  CHECK(need_more > 0);
  CHECK(malformed > 0);
}
