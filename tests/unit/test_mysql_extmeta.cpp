// mysql_response: MariaDB's extended metadata in column definitions
// (MARIADB_CLIENT_EXTENDED_METADATA, how MariaDB marks JSON columns):
// decoding it, and reshape_column_def, which sqlmux's relay uses to drop
// the field for clients that did not negotiate it (or add an empty one).
#include <catch2/catch.hpp>

#include <random>
#include <string>
#include <vector>

#include "protocol/mysql/packet.h"
#include "protocol/mysql/response.h"
#include "tests/unit/test_mysql_fixtures.h"

using namespace sqlmux::my;
using sqlmux::my::testing::ExactBuf;

namespace {

std::string unhex(std::string_view h) {
  std::string out;
  for (size_t i = 0; i + 1 < h.size(); i += 2) {
    out.push_back(static_cast<char>(std::stoi(std::string(h.substr(i, 2)), nullptr, 16)));
  }
  return out;
}

// Captured from MariaDB 10.11.19 (Debian 12) by a raw client with and
// without MARIADB_CLIENT_EXTENDED_METADATA (tests/integration/
// test_mysql_protocol.py, _metadata_responses): table appdb.extmeta (id INT
// PRIMARY KEY, doc JSON, pt POINT, v VARCHAR(10)), the text result of
// SELECT id, doc, pt, v, JSON_OBJECT('k', 1) AS j FROM extmeta, a
// COM_STMT_PREPARE parameter ('?') and COM_FIELD_LIST's definitions of doc
// and id (with their default values: NULL, '0').
struct Pair {
  const char* what;
  const char* with;     // the definition as sent with the capability
  const char* without;  // ... and without
  const char* ext;      // the extended-metadata field's contents
};
const Pair kCaptured[] = {
    {"id",
     "03646566056170706462076578746d657461076578746d657461026964026964000c3f000b000000030350000000",
     "03646566056170706462076578746d657461076578746d6574610269640269640c3f000b000000030350000000",
     ""},
    {"doc (JSON)",
     "03646566056170706462076578746d657461076578746d65746103646f6303646f630601046a736f6e0c2d00fffff"
     "f"
     "fffc9000000000",
     "03646566056170706462076578746d657461076578746d65746103646f6303646f630c2d00fffffffffc900000000"
     "0",
     "01046a736f6e"},
    {"pt (POINT)",
     "03646566056170706462076578746d657461076578746d657461027074027074070005706f696e740c3f00fffffff"
     "f"
     "ff9000000000",
     "03646566056170706462076578746d657461076578746d6574610270740270740c3f00ffffffffff9000000000",
     "0005706f696e74"},
    {"v",
     "03646566056170706462076578746d657461076578746d65746101760176000c2d0028000000fd0000000000",
     "03646566056170706462076578746d657461076578746d657461017601760c2d0028000000fd0000000000", ""},
    {"JSON_OBJECT()", "03646566000000016a000601046a736f6e0c2d0048000000fd0000270000",
     "03646566000000016a000c2d0048000000fd0000270000", "01046a736f6e"},
    {"parameter", "03646566000000013f00000c3f0000000000068000000000",
     "03646566000000013f000c3f0000000000068000000000", ""},
    {"field list: doc",
     "03646566056170706462076578746d657461076578746d65746103646f6303646f630601046a736f6e0c2d00fffff"
     "f"
     "fffc9000000000fb",
     "03646566056170706462076578746d657461076578746d65746103646f6303646f630c2d00fffffffffc900000000"
     "0"
     "fb",
     "01046a736f6e"},
    {"field list: id",
     "03646566056170706462076578746d657461076578746d657461026964026964000c3f000b0000000303500000000"
     "130",
     "03646566056170706462076578746d657461076578746d6574610269640269640c3f000b000000030350000000013"
     "0",
     ""},
};

constexpr uint64_t kExt = cap::kProtocol41 | cap::kMariaExtendedMetadata;
constexpr uint64_t kNoExt = cap::kProtocol41;

}  // namespace

TEST_CASE("mysql_extmeta: captured definitions with and without the extended metadata", "[mysql]") {
  for (const Pair& p : kCaptured) {
    INFO(p.what);
    const std::string with = unhex(p.with);
    const std::string without = unhex(p.without);
    ColumnDef a;
    ColumnDef b;
    REQUIRE(decode_column_def(with, kExt, a));
    REQUIRE(decode_column_def(without, kNoExt, b));
    CHECK(a.extended_metadata == unhex(p.ext));
    CHECK(b.extended_metadata.empty());
    ColumnDef a_plain = a;
    a_plain.extended_metadata.clear();
    CHECK(a_plain == b);  // the field is the only difference
    // Each layout misread as the other fails or reads something else.
    ColumnDef x;
    CHECK((!decode_column_def(with, kNoExt, x) || !(x == b)));
    // Dropping the field gives MariaDB's own bytes without the capability.
    std::string out = "junk";
    REQUIRE(reshape_column_def(with, kExt, kNoExt, out));
    CHECK(out == without);
    // Adding an empty field gives its bytes with it when it had none.
    REQUIRE(reshape_column_def(without, kNoExt, kExt, out));
    ColumnDef c;
    REQUIRE(decode_column_def(out, kExt, c));
    CHECK(c == a_plain);
    if (a.extended_metadata.empty()) CHECK(out == with);
    // Equal layouts: nothing to do.
    CHECK_FALSE(reshape_column_def(with, kExt, kExt, out));
    CHECK_FALSE(reshape_column_def(without, kNoExt, kNoExt, out));
  }
  // The JSON column is marked by its format name (type 1), a geometry by
  // its type name (type 0).
  ColumnDef doc;
  REQUIRE(decode_column_def(unhex(kCaptured[1].with), kExt, doc));
  CHECK(doc.type == static_cast<uint8_t>(FieldType::Blob));
  CHECK(doc.extended_metadata == std::string("\x01\x04json", 6));
}

TEST_CASE("mysql_extmeta: reshaping reads only what it must, and never past the end", "[mysql]") {
  const std::string with = unhex(kCaptured[1].with);
  // Where the copied tail starts: the 0x0C block (and its length byte)
  // follows the field, 7 bytes: its length and "\x01\x04json".
  const size_t head = with.size() - 13;
  const size_t field = 7;
  std::string out;
  for (size_t n = 0; n <= with.size(); ++n) {
    ExactBuf b(std::string_view(with).substr(0, n));
    const bool ok = reshape_column_def(b.view(), kExt, kNoExt, out);
    CHECK(ok == (n >= head));  // a cut tail is copied, a cut head fails
    if (ok) CHECK(out == unhex(kCaptured[1].without).substr(0, n - field));
  }
  const std::string without = unhex(kCaptured[1].without);
  const size_t head_plain = without.size() - 13;
  for (size_t n = 0; n <= without.size(); ++n) {
    ExactBuf b(std::string_view(without).substr(0, n));
    CHECK(reshape_column_def(b.view(), kNoExt, kExt, out) == (n >= head_plain));
  }
  // A length past the end of the payload, in a name and in the field.
  std::string bad = with;
  bad[0] = static_cast<char>(0xFC);  // catalog length 2 bytes: 0x6564 > what is left
  CHECK_FALSE(reshape_column_def(bad, kExt, kNoExt, out));
  bad = with;
  bad[head - field] = static_cast<char>(0x40);  // the field claims 64 bytes
  CHECK_FALSE(reshape_column_def(bad, kExt, kNoExt, out));
  bad[head - field] = static_cast<char>(0xFB);  // NULL is no string
  CHECK_FALSE(reshape_column_def(bad, kExt, kNoExt, out));
  CHECK_FALSE(reshape_column_def({}, kExt, kNoExt, out));
  size_t at = 0;
  size_t len = 0;
  CHECK_FALSE(column_def_extended_span({}, kNoExt, at, len));
  bad = with;
  bad[0] = static_cast<char>(0xFF);  // not a length
  CHECK_FALSE(column_def_extended_span(bad, kNoExt, at, len));
  bad[0] = static_cast<char>(0xFE);  // an 8-byte length past the end
  CHECK_FALSE(column_def_extended_span(bad, kNoExt, at, len));
}

TEST_CASE("mysql_extmeta: random definitions reshape both ways", "[mysql]") {
  std::mt19937 rng(35);
  auto rnd_str = [&](size_t max) {
    std::string s(rng() % (max + 1), '\0');
    for (char& ch : s) ch = static_cast<char>(rng());
    return s;
  };
  for (int i = 0; i < 2000; ++i) {
    ColumnDef c;
    c.catalog = rnd_str(4);
    c.schema = rnd_str(300);  // lenenc lengths of 1 and 3 bytes
    c.table = rnd_str(20);
    c.org_table = rnd_str(20);
    c.name = rnd_str(260);
    c.org_name = rnd_str(20);
    c.extended_metadata = rnd_str(i % 3 == 0 ? 0 : 270);
    c.charset = static_cast<uint16_t>(rng());
    c.length = static_cast<uint32_t>(rng());
    c.type = static_cast<uint8_t>(rng());
    c.flags = static_cast<uint16_t>(rng());
    c.decimals = static_cast<uint8_t>(rng());
    if (i % 4 == 0) c.default_value = rnd_str(10);
    std::string with;
    encode_column_def(with, c, kExt);
    std::string without;
    encode_column_def(without, c, kNoExt);
    std::string out;
    REQUIRE(reshape_column_def(with, kExt, kNoExt, out));
    CHECK(out == without);
    REQUIRE(reshape_column_def(without, kNoExt, kExt, out));
    ColumnDef back;
    REQUIRE(decode_column_def(out, kExt, back));
    c.extended_metadata.clear();
    CHECK(back == c);
    std::string plain;
    REQUIRE(reshape_column_def(out, kExt, kNoExt, plain));
    CHECK(plain == without);
  }
}

TEST_CASE("mysql_extmeta: the field's span, and a packet framed around it", "[mysql]") {
  for (const Pair& p : kCaptured) {
    INFO(p.what);
    const std::string with = unhex(p.with);
    const std::string without = unhex(p.without);
    const std::string ext = unhex(p.ext);
    size_t at = 99;
    size_t len = 99;
    REQUIRE(column_def_extended_span(with, kExt, at, len));
    CHECK(len == 1 + ext.size());
    CHECK(with.substr(at + 1, ext.size()) == ext);
    CHECK(with.substr(0, at) + with.substr(at + len) == without);
    size_t at2 = 99;
    size_t len2 = 99;
    REQUIRE(column_def_extended_span(without, kNoExt, at2, len2));
    CHECK(at2 == at);
    CHECK(len2 == 0);
    // Framed around the field: the bytes put_packet gives the reshaped payload.
    for (uint8_t seq0 : {0, 7, 255}) {
      std::string two;
      std::string one;
      uint8_t s2 = seq0;
      uint8_t s1 = seq0;
      put_packet(two, s2, std::string_view(with).substr(0, at),
                 std::string_view(with).substr(at + len));
      put_packet(one, s1, without);
      CHECK(two == one);
      CHECK(s2 == s1);
    }
  }
}

TEST_CASE("mysql_extmeta: put_packet in two pieces frames as one payload", "[mysql]") {
  // Around the chunk size too: a payload of 0xFFFFFF bytes or more is
  // several chunks (and an empty last one when it is a multiple).
  for (size_t n : {size_t{0}, size_t{1}, size_t{300}, size_t{kMaxChunk - 1}, size_t{kMaxChunk},
                   size_t{kMaxChunk + 5}}) {
    std::string payload(n, 'x');
    for (size_t i = 0; i < n; i += 4097) payload[i] = static_cast<char>(i);
    std::string one;
    uint8_t s1 = 250;
    put_packet(one, s1, payload);
    for (size_t cut : {size_t{0}, n / 2, n}) {
      std::string two = "keep";
      uint8_t s2 = 250;
      put_packet(two, s2, std::string_view(payload).substr(0, cut),
                 std::string_view(payload).substr(cut));
      CHECK(two.substr(0, 4) == "keep");
      CHECK(two.substr(4) == one);
      CHECK(s2 == s1);
    }
  }
}
