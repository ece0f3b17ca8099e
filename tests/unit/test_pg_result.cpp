// Tests for protocol/pg_result.cpp: RowDescription and DataRow builders.
#include "protocol/pg/result.h"

#include <catch2/catch.hpp>

#include "protocol/pg/codec.h"

using namespace sqlmux::pg;

TEST_CASE("pg_result: RowDescription bytes", "[pg_codec]") {
  std::string out;
  put_row_description(out, {"a", "bc"});
  const std::string want = std::string("T\0\0\0\x2f\0\x02", 7) +                        //
                           std::string("a\0", 2) + std::string("\0\0\0\0\0\0", 6) +     //
                           std::string("\0\0\0\x19\xff\xff\xff\xff\xff\xff\0\0", 12) +  //
                           std::string("bc\0", 3) + std::string("\0\0\0\0\0\0", 6) +    //
                           std::string("\0\0\0\x19\xff\xff\xff\xff\xff\xff\0\0", 12);
  CHECK(out == want);
  Message m;
  size_t used = 0;
  REQUIRE(decode_message(reinterpret_cast<const uint8_t*>(out.data()), out.size(), kMaxMessageLen,
                         m, used) == Decode::Complete);
  CHECK(used == out.size());
  CHECK(m.type == 'T');
}

TEST_CASE("pg_result: typed RowDescription carries each column's type oid", "[pg_codec]") {
  std::string out;
  put_typed_row_description(out, {{"n", kInt4Oid}, {"t"}, {"x", kNumericOid}});
  const std::string tail = std::string("\0\0\0\0\0\0", 6);
  const std::string rest = std::string("\xff\xff\xff\xff\xff\xff\0\0", 8);
  const std::string want = std::string("T\0\0\0\x42\0\x03", 7) +                                 //
                           std::string("n\0", 2) + tail + std::string("\0\0\0\x17", 4) + rest +  //
                           std::string("t\0", 2) + tail + std::string("\0\0\0\x19", 4) + rest +  //
                           std::string("x\0", 2) + tail + std::string("\0\0\x06\xa4", 4) + rest;
  CHECK(out == want);
  std::string text;
  put_row_description(text, {"n", "t", "x"});
  CHECK(text.size() == out.size());  // the same layout, every column text
}

TEST_CASE("pg_result: DataRow with values and NULL", "[pg_codec]") {
  std::string out = "x";  // appends
  put_data_row(out, {std::string("12"), std::nullopt, std::string()});
  const std::string want = std::string("xD\0\0\0\x14\0\x03", 8) +
                           std::string(
                               "\0\0\0\x02"
                               "12",
                               6) +
                           std::string("\xff\xff\xff\xff", 4) + std::string("\0\0\0\0", 4);
  CHECK(out == want);
  Reader r(std::string_view(out).substr(6));
  int16_t n = 0;
  int32_t len = 0;
  std::string_view v;
  REQUIRE(r.i16(n));
  CHECK(n == 3);
  REQUIRE(r.i32(len));
  REQUIRE(r.bytes(static_cast<size_t>(len), v));
  CHECK(v == "12");
  REQUIRE(r.i32(len));
  CHECK(len == -1);
  REQUIRE(r.i32(len));
  CHECK(len == 0);
  CHECK(r.at_end());
}

TEST_CASE("pg_result: column counts past 32767 are written unsigned", "[pg_codec]") {
  for (const size_t cols : {size_t{32767}, size_t{32768}, size_t{65535}}) {
    CAPTURE(cols);
    std::string out;
    put_data_row(out, std::vector<std::optional<std::string>>(cols));
    Reader r(std::string_view(out).substr(5));
    uint16_t n = 0;
    REQUIRE(r.u16(n));
    CHECK(n == cols);
    CHECK(r.remaining() == cols * 4);
  }
}
