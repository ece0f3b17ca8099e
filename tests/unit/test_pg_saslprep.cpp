// SASLprep of SCRAM passwords (protocol/pg/saslprep.cpp): RFC 4013's
// examples and PostgreSQL's fallbacks to the raw bytes.
#include "protocol/pg/saslprep.h"

#include <catch2/catch.hpp>
#include <string>

#include "protocol/pg/auth.h"

using namespace sqlmux::pg::auth;
using namespace std::string_view_literals;

namespace {

std::string prep(std::string_view in, SaslPrep want) {
  std::string out = "unset";
  CHECK(saslprep(in, out) == want);
  return out;
}

}  // namespace

TEST_CASE("saslprep: RFC 4013 section 3 examples", "[pg_auth][saslprep]") {
  CHECK(prep("I\xC2\xADX", SaslPrep::Success) == "IX");  // SOFT HYPHEN mapped to nothing
  CHECK(prep("user", SaslPrep::Success) == "user");
  CHECK(prep("USER", SaslPrep::Success) == "USER");
  CHECK(prep("\xC2\xAA", SaslPrep::Success) == "a");       // U+00AA, NFKC
  CHECK(prep("\xE2\x85\xA8", SaslPrep::Success) == "IX");  // U+2168 ROMAN NUMERAL NINE
  prep("\xC2\xAA\x07", SaslPrep::Prohibited);              // U+0007 with a non-ASCII character
  prep(
      "\xD8\xA7"
      "1",
      SaslPrep::Prohibited);  // RandALCat first, not last
}

TEST_CASE("saslprep: mapping, normalization, prohibited output and bidi", "[pg_auth][saslprep]") {
  CHECK(prep("a\xC2\xA0"
             "b",
             SaslPrep::Success) == "a b");  // U+00A0 to space
  CHECK(prep("a\xE2\x80\x8D"
             "b",
             SaslPrep::Success) == "ab");  // U+200D to nothing
  // U+200B is in B.1 and C.1.2; PostgreSQL checks C.1.2 first: a space.
  CHECK(prep("a\xE2\x80\x8B"
             "b",
             SaslPrep::Success) == "a b");
  CHECK(prep("e\xCC\x81", SaslPrep::Success) == "\xC3\xA9");                     // composed
  CHECK(prep("\xEF\xAC\x81", SaslPrep::Success) == "fi");                        // U+FB01 ligature
  CHECK(prep("\xE1\x84\x80\xE1\x85\xA1", SaslPrep::Success) == "\xEA\xB0\x80");  // Hangul LV
  CHECK(prep("\xEA\xB0\x80\xE1\x86\xA8", SaslPrep::Success) == "\xEA\xB0\x81");  // Hangul LV+T
  CHECK(prep("\xE1\xB8\x8B\xCC\xA3", SaslPrep::Success) ==  // U+1E0B U+0323: reordered, composed
        "\xE1\xB8\x8D\xCC\x87");
  CHECK(prep("\xD8\xA7\xD8\xA8", SaslPrep::Success) == "\xD8\xA7\xD8\xA8");  // all RandALCat
  prep(
      "\xD8\xA7"
      "a\xD8\xA8",
      SaslPrep::Prohibited);                        // RandALCat and LCat
  prep("\xC2\xAD", SaslPrep::Prohibited);           // empty once mapped
  prep("a\xEE\x80\x80", SaslPrep::Prohibited);      // private use
  prep("a\xF0\x9F\x98\x80", SaslPrep::Prohibited);  // U+1F600: unassigned in Unicode 3.2
}

TEST_CASE("saslprep: ASCII is left alone, bad UTF-8 is refused", "[pg_auth][saslprep]") {
  CHECK(prep("\x07", SaslPrep::Success) == "\x07");  // pure ASCII: no checks, as PostgreSQL
  CHECK(prep("", SaslPrep::Success).empty());
  for (std::string_view bad : {"\xFF"sv, "\xC3"sv, "\xC0\xAF"sv, "\xED\xA0\x80"sv,
                               "\xF4\x90\x80\x80"sv, "\xE2\x85"sv, "a\x80"sv}) {
    std::string out = "unset";
    CHECK(saslprep(bad, out) == SaslPrep::InvalidUtf8);
    CHECK(out == "unset");
  }
}

TEST_CASE("saslprep: SCRAM uses the prepared form or the raw bytes", "[pg_auth][saslprep]") {
  CHECK(scram_password("\xE2\x85\xA8") == "IX");
  CHECK(scram_password("I\xC2\xADX") == "IX");
  CHECK(scram_password("\x07") == "\x07");
  CHECK(scram_password("\xC2\xAA\x07") == "\xC2\xAA\x07");  // prohibited: raw
  CHECK(scram_password("\xFF\xFE") == "\xFF\xFE");          // not UTF-8: raw
  const std::string salt = "0123456789abcdef";
  const auto nine = make_scram_verifier("\xE2\x85\xA8", salt, 16);
  const auto ix = make_scram_verifier("IX", salt, 16);
  CHECK(nine.stored_key == ix.stored_key);
  CHECK(nine.server_key == ix.server_key);
  CHECK(make_scram_verifier("\xFF", salt, 16).stored_key !=
        make_scram_verifier("\xC3\xBF", salt, 16).stored_key);
  // A client typing U+2168 logs in against a verifier made from "IX".
  ScramServer server(ix, "srvnonce");
  std::string server_first, server_final, error;
  REQUIRE(server.handle_client_first("n,,n=,r=clinonce", server_first, error));
  const auto final_msg = scram_client_final("\xE2\x85\xA8", "n=,r=clinonce", server_first);
  REQUIRE(final_msg);
  CHECK(server.handle_client_final(*final_msg, server_final, error));
  CHECK(server.authenticated());
}
