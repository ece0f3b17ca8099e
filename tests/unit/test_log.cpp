#include <catch2/catch.hpp>

#include <string>

#include "daemon/core/log.h"

using sqlmux::log::append_json_escaped;

namespace {
std::string esc(std::string_view s) {
  std::string out;
  append_json_escaped(out, s);
  return out;
}
}  // namespace

TEST_CASE("log: JSON escaping", "[log]") {
  CHECK(esc("plain") == "plain");
  CHECK(esc("a\"b\\c") == "a\\\"b\\\\c");
  CHECK(esc("l1\nl2\tx\r") == "l1\\nl2\\tx\\r");
  CHECK(esc(std::string("\x01\x1f\x7f", 3)) == "\\u0001\\u001f\\u007f");
  CHECK(esc(std::string("nul\0x", 5)) == "nul\\u0000x");
  // Well-formed UTF-8 is kept: 2, 3 and 4 bytes.
  CHECK(esc("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80") ==
        "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80");
  // Not UTF-8: one U+FFFD per byte that does not start a well-formed sequence.
  CHECK(esc("\xff") == "\xef\xbf\xbd");
  CHECK(esc("a\xc3") == "a\xef\xbf\xbd");                                // truncated
  CHECK(esc("\xc0\xaf") == "\xef\xbf\xbd\xef\xbf\xbd");                  // overlong '/'
  CHECK(esc("\xed\xa0\x80") == "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd");  // a surrogate
  CHECK(esc("\xf4\x90\x80\x80") ==
        "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd");  // > U+10FFFF
  CHECK(esc("\xe2\x82x") == "\xef\xbf\xbd\xef\xbf\xbdx");
}
