// mysql_response: OK / ERR / EOF, session-state tracking, column
// definitions, PREPARE_OK, the ResponseReader over whole captured MariaDB
// sessions (with and without DEPRECATE_EOF), and terminator translation.
#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include "protocol/mysql/command.h"
#include "protocol/mysql/handshake.h"
#include "protocol/mysql/reader.h"
#include "protocol/mysql/response.h"
#include "tests/unit/test_mysql_fixtures.h"

using namespace sqlmux::my;
using sqlmux::my::testing::bytes;
using sqlmux::my::testing::ExactBuf;
using sqlmux::my::testing::payload_of;
using sqlmux::my::testing::real;
using sqlmux::my::testing::real_one;
using sqlmux::my::testing::RealPacket;

namespace {

// The capabilities both sides ended up with in each captured session.
constexpr uint64_t kDeCaps = 0x01bfa288u;  // DEPRECATE_EOF, SESSION_TRACK
constexpr uint64_t kEofCaps = 0x000fa289u;

uint64_t caps_of(std::string_view session) {
  return session == "de" ? kDeCaps : kEofCaps;
}

struct Exchange {
  std::string label;
  uint8_t command = 0;
  std::vector<std::string> server;  // payloads
};

// Groups a captured session into commands and their server packets (the
// login and the LOCAL INFILE data packet are skipped, so the server's answer
// to the file joins the LOCAL INFILE exchange).
std::vector<Exchange> exchanges(std::string_view session) {
  std::vector<Exchange> out;
  for (const RealPacket* p : real(session)) {
    const std::string_view label = p->label;
    if (label == "greeting" || label == "handshake_response" || label == "login_result" ||
        label == "local_infile_data") {
      continue;
    }
    if (p->dir == 'C') {
      out.push_back({std::string(label), static_cast<uint8_t>(payload_of(*p)[0]), {}});
    } else {
      REQUIRE_FALSE(out.empty());
      out.back().server.emplace_back(payload_of(*p));
    }
  }
  return out;
}

Exchange find(const std::vector<Exchange>& xs, std::string_view label) {
  for (const auto& x : xs) {
    if (x.label == label) return x;
  }
  FAIL("no exchange " << label);
  return {};
}

// Feeds a response; REQUIREs More before the last packet and returns the
// last step.
Step run(ResponseReader& r, const std::vector<std::string>& packets) {
  Step s = Step::Malformed;
  for (size_t i = 0; i < packets.size(); ++i) {
    ExactBuf b(packets[i]);
    s = r.feed(b.view());
    INFO("packet " << i << " role " << to_string(r.role()));
    if (i + 1 < packets.size()) {
      REQUIRE((s == Step::More || s == Step::LocalInfile));
    }
  }
  return s;
}

// Translates a whole response for a client with the other DEPRECATE_EOF.
std::vector<std::string> translate_all(ResponseKind kind, uint64_t backend_caps,
                                       const std::vector<std::string>& packets,
                                       bool client_deprecate_eof, uint16_t status = 0) {
  ResponseReader r(kind, backend_caps, status);
  std::vector<std::string> out;
  for (const auto& p : packets) {
    const Step s = r.feed(p);
    REQUIRE(s != Step::Malformed);
    std::vector<std::string> repl;
    if (translate_for_client(r, p, client_deprecate_eof, repl)) {
      out.insert(out.end(), repl.begin(), repl.end());
    } else {
      out.push_back(p);
    }
  }
  REQUIRE(r.done());
  return out;
}

}  // namespace

TEST_CASE("mysql_response: every captured response ends where the server stopped", "[mysql]") {
  for (const char* session : {"de", "eof"}) {
    INFO(session);
    const uint64_t caps = caps_of(session);
    for (const auto& x : exchanges(session)) {
      INFO(x.label);
      ResponseKind kind{};
      if (!response_kind_for(x.command, kind)) {
        CHECK(x.server.empty());  // QUIT, STMT_CLOSE: no answer
        continue;
      }
      ResponseReader r(kind, caps, status::kAutocommit);
      const Step last = run(r, x.server);
      CHECK(last == Step::Done);
      CHECK(r.done());
      // Feeding after the end is malformed.
      CHECK(r.feed(bytes({0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00})) == Step::Malformed);
    }
  }
}

TEST_CASE("mysql_response: result sets with DEPRECATE_EOF (captured)", "[mysql]") {
  const auto xs = exchanges("de");
  {
    ResponseReader r(ResponseKind::Query, kDeCaps);
    const Exchange x = find(xs, "select_items");
    REQUIRE(x.server.size() == 7);  // count, 3 columns, 2 rows, OK(0xFE)
    REQUIRE(run(r, x.server) == Step::Done);
    CHECK(r.column_count() == 3);
    CHECK(r.rows() == 2);
    CHECK(r.result_sets() == 1);
    CHECK(r.role() == PacketRole::Terminator);
    CHECK(r.status() == (status::kAutocommit | status::kNoIndexUsed));
    CHECK_FALSE(r.in_transaction());
    CHECK_FALSE(r.error().has_value());
  }
  {
    ResponseReader r(ResponseKind::Query, kDeCaps);
    const Exchange x = find(xs, "no_such_table");
    REQUIRE(run(r, x.server) == Step::Done);
    CHECK(r.role() == PacketRole::Err);
    REQUIRE(r.error().has_value());
    CHECK(r.error()->code == static_cast<uint16_t>(ErrorCode::NoSuchTable));
    CHECK(r.error()->sqlstate == "42S02");
    CHECK(r.error()->message == "Table 'shop.nosuch' doesn't exist");
  }
  {
    // Two result sets: the first terminator carries MORE_RESULTS_EXISTS.
    ResponseReader r(ResponseKind::Query, kDeCaps);
    const Exchange x = find(xs, "multi");
    // count, column, row, OK(0xFE) + MORE_RESULTS; count, 2 columns, row, OK(0xFE)
    REQUIRE(x.server.size() == 9);
    for (size_t i = 0; i < 3; ++i) REQUIRE(r.feed(x.server[i]) == Step::More);
    REQUIRE(r.feed(x.server[3]) == Step::More);
    CHECK(r.role() == PacketRole::Terminator);
    CHECK(r.ended_result());
    CHECK((r.status() & status::kMoreResultsExist) != 0);
    CHECK(r.in_transaction());
    for (size_t i = 4; i < 8; ++i) REQUIRE(r.feed(x.server[i]) == Step::More);
    REQUIRE(r.feed(x.server[8]) == Step::Done);
    CHECK(r.result_sets() == 2);
    CHECK(r.rows() == 2);
    CHECK(r.column_count() == 2);
    CHECK(r.in_transaction());
    CHECK((r.status() & status::kInTransReadonly) != 0);
  }
  {
    ResponseReader r(ResponseKind::Query, kDeCaps);
    REQUIRE(run(r, find(xs, "begin").server) == Step::Done);
    CHECK(r.role() == PacketRole::Ok);
    CHECK(r.in_transaction());
    ResponseReader c(ResponseKind::Query, kDeCaps, r.status());
    REQUIRE(run(c, find(xs, "commit").server) == Step::Done);
    CHECK_FALSE(c.in_transaction());
  }
  {
    ResponseReader r(ResponseKind::Prepare, kDeCaps);
    const Exchange x = find(xs, "prepare");
    REQUIRE(x.server.size() == 5);  // PREPARE_OK, 2 params, 2 columns, no EOFs
    REQUIRE(r.feed(x.server[0]) == Step::More);
    CHECK(r.role() == PacketRole::PrepareOk);
    CHECK(r.prepare_ok().statement_id > 0);
    CHECK(r.prepare_ok().num_params == 2);
    CHECK(r.prepare_ok().num_columns == 2);
    REQUIRE(r.feed(x.server[1]) == Step::More);
    CHECK(r.role() == PacketRole::ParamDef);
    CHECK_FALSE(r.last_definition());
    REQUIRE(r.feed(x.server[2]) == Step::More);
    CHECK(r.last_definition());
    REQUIRE(r.feed(x.server[3]) == Step::More);
    CHECK(r.role() == PacketRole::ColumnDef);
    REQUIRE(r.feed(x.server[4]) == Step::Done);
    CHECK(r.last_definition());
  }
  {
    ResponseReader r(ResponseKind::Execute, kDeCaps);
    REQUIRE(run(r, find(xs, "execute_types").server) == Step::Done);
    CHECK(r.rows() == 2);
    ResponseReader r2(ResponseKind::Execute, kDeCaps);
    REQUIRE(run(r2, find(xs, "execute_null_no_types").server) == Step::Done);
    CHECK(r2.rows() == 0);  // id > NULL matches nothing
  }
  {
    // LOCAL INFILE: 0xFB, then (after the client's empty packet) the OK.
    ResponseReader r(ResponseKind::Query, kDeCaps);
    const Exchange x = find(xs, "local_infile");
    REQUIRE(x.server.size() == 2);
    REQUIRE(r.feed(x.server[0]) == Step::LocalInfile);
    CHECK(r.role() == PacketRole::LocalInfile);
    CHECK(x.server[0].substr(1) == "/nonexistent.csv");
    REQUIRE(r.feed(x.server[1]) == Step::Done);
    CHECK(r.role() == PacketRole::Ok);
  }
}

TEST_CASE("mysql_response: result sets with EOF packets (captured)", "[mysql]") {
  const auto xs = exchanges("eof");
  {
    ResponseReader r(ResponseKind::Query, kEofCaps);
    const Exchange x = find(xs, "select_items");
    REQUIRE(x.server.size() == 8);
    const PacketRole roles[] = {PacketRole::ColumnCount, PacketRole::ColumnDef,
                                PacketRole::ColumnDef,   PacketRole::ColumnDef,
                                PacketRole::MetadataEof, PacketRole::Row,
                                PacketRole::Row,         PacketRole::Terminator};
    for (size_t i = 0; i < 8; ++i) {
      const Step s = r.feed(x.server[i]);
      CHECK(s == (i == 7 ? Step::Done : Step::More));
      CHECK(r.role() == roles[i]);
    }
    CHECK(r.rows() == 2);
  }
  {
    ResponseReader r(ResponseKind::Query, kEofCaps);
    const Exchange x = find(xs, "empty_result");
    REQUIRE(x.server.size() == 4);  // count, column, EOF, EOF
    REQUIRE(run(r, x.server) == Step::Done);
    CHECK(r.rows() == 0);
  }
  {
    ResponseReader r(ResponseKind::Prepare, kEofCaps);
    const Exchange x = find(xs, "prepare");
    REQUIRE(x.server.size() == 6);  // OK, 1 param, EOF, 2 columns, EOF
    REQUIRE(run(r, x.server) == Step::Done);
    CHECK(r.prepare_ok().num_params == 1);
    CHECK(r.prepare_ok().num_columns == 2);
    CHECK(r.role() == PacketRole::MetadataEof);
  }
  {
    // A read-only cursor: the metadata EOF says CURSOR_EXISTS and ends it.
    ResponseReader r(ResponseKind::Execute, kEofCaps);
    const Exchange x = find(xs, "execute_cursor");
    REQUIRE(x.server.size() == 4);
    REQUIRE(run(r, x.server) == Step::Done);
    CHECK(r.role() == PacketRole::MetadataEof);
    CHECK((r.status() & status::kCursorExists) != 0);
    ResponseReader f(ResponseKind::Fetch, kEofCaps);
    REQUIRE(run(f, find(xs, "fetch").server) == Step::Done);
    CHECK(f.rows() == 1);
    CHECK((f.status() & status::kLastRowSent) != 0);
  }
  {
    ResponseReader r(ResponseKind::FieldList, kEofCaps);
    const Exchange x = find(xs, "field_list");
    REQUIRE(run(r, x.server) == Step::Done);
    CHECK(r.column_count() == 3);
    ColumnDef c;
    REQUIRE(decode_column_def(x.server[0], kEofCaps, c));
    CHECK(c.name == "id");
    REQUIRE(c.default_value.has_value());
    CHECK(*c.default_value == "0");
    REQUIRE(decode_column_def(x.server[1], kEofCaps, c));
    CHECK(c.name == "name");
    CHECK_FALSE(c.default_value.has_value());  // NULL default
  }
  {
    ResponseReader r(ResponseKind::Simple, kEofCaps);
    REQUIRE(run(r, find(xs, "set_option").server) == Step::Done);
    CHECK(r.role() == PacketRole::Eof);
    ResponseReader s(ResponseKind::Statistics, kEofCaps);
    const Exchange st = find(xs, "statistics");
    REQUIRE(run(s, st.server) == Step::Done);
    CHECK(s.role() == PacketRole::Text);
    CHECK(st.server[0].substr(0, 7) == "Uptime:");
    ResponseReader rs(ResponseKind::Simple, kEofCaps);
    REQUIRE(run(rs, find(xs, "stmt_reset").server) == Step::Done);
    CHECK(rs.role() == PacketRole::Ok);
  }
}

TEST_CASE("mysql_response: captured column definitions", "[mysql]") {
  const Exchange x = find(exchanges("de"), "select_items");
  ColumnDef c;
  REQUIRE(decode_column_def(x.server[1], kDeCaps, c));
  CHECK(c.catalog == "def");
  CHECK(c.schema == "shop");
  CHECK(c.table == "items");
  CHECK(c.org_table == "items");
  CHECK(c.name == "id");
  CHECK(c.org_name == "id");
  CHECK(c.charset == 63);  // binary
  CHECK(c.length == 11);
  CHECK(c.type == static_cast<uint8_t>(FieldType::Long));
  CHECK(c.flags == (column_flag::kNotNull | column_flag::kPrimaryKey | column_flag::kAutoIncrement |
                    column_flag::kPartKey));
  CHECK(c.decimals == 0);
  std::string again;
  encode_column_def(again, c, kDeCaps);
  CHECK(again == x.server[1]);
  REQUIRE(decode_column_def(x.server[3], kDeCaps, c));
  CHECK(c.name == "price");
  CHECK(c.type == static_cast<uint8_t>(FieldType::NewDecimal));
  CHECK(c.decimals == 2);
  // Truncations fail.
  for (size_t n = 0; n < x.server[1].size(); ++n) {
    ExactBuf b(std::string_view(x.server[1]).substr(0, n));
    CHECK_FALSE(decode_column_def(b.view(), kDeCaps, c));
  }
  // MariaDB extended metadata (a lenenc string after org_name).
  ColumnDef e = c;
  e.extended_metadata = bytes({0x00, 0x04, 'j', 's', 'o', 'n'});
  std::string w;
  encode_column_def(w, e, cap::kMariaExtendedMetadata);
  ColumnDef back;
  REQUIRE(decode_column_def(w, cap::kMariaExtendedMetadata, back));
  CHECK(back == e);
  CHECK_FALSE(decode_column_def(w, 0, back));
}

TEST_CASE("mysql_response: captured OK packets and session state", "[mysql]") {
  {
    OkPacket ok;
    const std::string_view login = real_one("de", "login_result", 'S');
    REQUIRE(decode_ok(login, kDeCaps, ok));
    CHECK(ok.status == (status::kAutocommit | status::kSessionStateChanged));
    REQUIRE(ok.has_session_state);
    REQUIRE(ok.session_state.schema.has_value());
    CHECK(*ok.session_state.schema == "shop");
    std::string again;
    encode_ok(again, ok, kDeCaps);
    CHECK(again == login);
  }
  const auto xs = exchanges("de");
  auto ok_of = [&](std::string_view label) {
    OkPacket ok;
    const Exchange x = find(xs, label);
    REQUIRE(decode_ok(x.server.back(), kDeCaps, ok));
    std::string again;
    encode_ok(again, ok, kDeCaps);
    CHECK(again == x.server.back());  // encode(decode(x)) == x
    return ok;
  };
  {
    const OkPacket ok = ok_of("track_vars");
    CHECK(ok.session_state.state_changed == std::optional<bool>(true));
    CHECK(ok.session_state.transaction_state == std::optional<std::string>("________"));
    CHECK(ok.session_state.transaction_characteristics == std::optional<std::string>(""));
  }
  {
    const OkPacket ok = ok_of("set_autocommit");
    CHECK((ok.status & status::kAutocommit) == 0);
    REQUIRE(ok.session_state.system_variables.size() == 1);
    CHECK(ok.session_state.system_variables[0].first == "autocommit");
    CHECK(ok.session_state.system_variables[0].second == "OFF");
  }
  {
    const OkPacket ok = ok_of("init_db");
    CHECK(ok.session_state.schema == std::optional<std::string>("shop"));
  }
  {
    const OkPacket ok = ok_of("begin");
    CHECK((ok.status & status::kInTrans) != 0);
    CHECK((ok.status & status::kInTransReadonly) != 0);
    CHECK(ok.session_state.transaction_state == std::optional<std::string>("T_______"));
    CHECK(ok.session_state.transaction_characteristics ==
          std::optional<std::string>("START TRANSACTION READ ONLY;"));
  }
  {
    // After COM_RESET_CONNECTION: autocommit again, nothing tracked changed.
    const OkPacket ok = ok_of("local_infile");
    CHECK(ok.info == "Records: 0  Deleted: 0  Skipped: 0  Warnings: 0");
    CHECK(ok.status == status::kAutocommit);
    CHECK_FALSE(ok.has_session_state);
  }
  {
    // The OK(0xFE) terminator of the first of two results.
    const Exchange x = find(xs, "multi");
    OkPacket ok;
    REQUIRE(decode_ok(x.server[3], kDeCaps, ok));
    CHECK(ok.header == 0xFE);
    CHECK((ok.status & status::kMoreResultsExist) != 0);
    CHECK(ok.session_state.transaction_state == std::optional<std::string>("T_____S_"));
    // Without DEPRECATE_EOF a 0xFE packet is never an OK.
    CHECK_FALSE(decode_ok(x.server[3], kDeCaps & ~cap::kDeprecateEof, ok));
  }
  {
    // Without SESSION_TRACK: the OKs of the EOF session.
    OkPacket ok;
    REQUIRE(decode_ok(real_one("eof", "login_result", 'S'), kEofCaps, ok));
    CHECK(ok.status == status::kAutocommit);
    CHECK(ok.info.empty());
    CHECK_FALSE(ok.has_session_state);
  }
}

TEST_CASE("mysql_response: OK encode/decode round trips", "[mysql]") {
  OkPacket ok;
  ok.affected_rows = 70000;
  ok.last_insert_id = 1ull << 40;
  ok.status = status::kAutocommit | status::kSessionStateChanged;
  ok.warnings = 3;
  ok.info = "Rows matched: 1";
  ok.has_session_state = true;
  ok.session_state.system_variables = {{"autocommit", "ON"}, {"time_zone", "+00:00"}};
  ok.session_state.schema = "db";
  ok.session_state.state_changed = true;
  ok.session_state.gtids = "0-1-42";
  ok.session_state.gtids_encoding = 0;
  ok.session_state.transaction_characteristics = "SET TRANSACTION READ ONLY;";
  ok.session_state.transaction_state = "T___W___";
  const uint64_t track = cap::kProtocol41 | cap::kSessionTrack;
  std::string wire;
  encode_ok(wire, ok, track);
  OkPacket back;
  REQUIRE(decode_ok(wire, track, back));
  CHECK(back == ok);
  // Every strict prefix fails or decodes to something else.
  for (size_t n = 0; n < wire.size(); ++n) {
    ExactBuf b(std::string_view(wire).substr(0, n));
    OkPacket part;
    if (decode_ok(b.view(), track, part)) CHECK_FALSE(part == ok);
  }
  // Without SESSION_TRACK: info is the rest, no state.
  OkPacket plain;
  plain.affected_rows = 1;
  plain.status = status::kAutocommit;
  plain.info = "x";
  wire.clear();
  encode_ok(wire, plain, cap::kProtocol41);
  CHECK(wire == bytes({0x00, 0x01, 0x00, 0x02, 0x00, 0x00, 0x00, 'x'}));
  REQUIRE(decode_ok(wire, cap::kProtocol41, back));
  CHECK(back == plain);
  // OK with 0xFE header (DEPRECATE_EOF).
  OkPacket fe = plain;
  fe.header = 0xFE;
  fe.info.clear();
  wire.clear();
  encode_ok(wire, fe, cap::kProtocol41 | cap::kDeprecateEof);
  REQUIRE(decode_ok(wire, cap::kProtocol41 | cap::kDeprecateEof, back));
  CHECK(back == fe);
  CHECK(is_result_terminator(wire, cap::kDeprecateEof));
  CHECK(is_result_terminator(wire, 0));  // 7 bytes: < 9 also reads as EOF
  CHECK_FALSE(decode_ok(wire, cap::kProtocol41, back));
  // Malformed: lenenc 0xFF, truncated lenenc, unknown header.
  CHECK_FALSE(decode_ok(bytes({0x00, 0xff, 0x00, 0x02, 0x00, 0x00, 0x00}), cap::kProtocol41, back));
  CHECK_FALSE(decode_ok(bytes({0x00, 0xfc, 0x01}), cap::kProtocol41, back));
  CHECK_FALSE(decode_ok(bytes({0x00, 0x00, 0x00, 0x02}), cap::kProtocol41, back));
  CHECK_FALSE(decode_ok(bytes({0x01, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00}), cap::kProtocol41, back));
  // A session-state blob whose length overruns the packet.
  CHECK_FALSE(
      decode_ok(bytes({0x00, 0x00, 0x00, 0x00, 0x40, 0x00, 0x00, 0x00, 0x09, 0x01}), track, back));
}

TEST_CASE("mysql_response: session state entries", "[mysql]") {
  SessionState s;
  // Unknown types are skipped by their length.
  std::string data = bytes({0x07, 0x03, 'a', 'b', 'c'});
  encode_session_state(data, SessionState{{}, std::string("x"), {}, {}, 0, {}, {}, 0});
  REQUIRE(decode_session_state(data, s));
  CHECK(s.unknown_entries == 1);
  CHECK(s.schema == std::optional<std::string>("x"));
  // An unknown type whose length overruns fails.
  CHECK_FALSE(decode_session_state(bytes({0x07, 0x05, 'a'}), s));
  // A known type whose inner data does not fit its entry fails.
  CHECK_FALSE(decode_session_state(bytes({0x01, 0x02, 0x05, 'a'}), s));
  CHECK_FALSE(decode_session_state(bytes({0x00, 0x03, 0x01, 'a', 0x05}), s));
  // Extra bytes inside a known entry fail.
  CHECK_FALSE(decode_session_state(bytes({0x02, 0x03, 0x01, '1', 'x'}), s));
  // GTIDs: spec byte + lenenc.
  REQUIRE(decode_session_state(bytes({0x03, 0x05, 0x00, 0x03, '1', '-', '2'}), s));
  CHECK(s.gtids == std::optional<std::string>("1-2"));
  CHECK(to_string(SessionTrack::TransactionState) == "SESSION_TRACK_TRANSACTION_STATE");
  // Empty is fine.
  REQUIRE(decode_session_state({}, s));
  CHECK(s == SessionState{});
}

TEST_CASE("mysql_response: ERR and EOF", "[mysql]") {
  ErrPacket e{1045, "28000", "Access denied"};
  std::string wire;
  encode_err(wire, e);
  CHECK(wire == bytes({0xff, 0x15, 0x04, '#', '2', '8', '0', '0', '0'}) + "Access denied");
  ErrPacket back;
  REQUIRE(decode_err(wire, back));
  CHECK(back == e);
  wire.clear();
  encode_err(wire, ErrorCode::NetPacketTooLarge, "Got a packet bigger than 'max_allowed_packet'");
  REQUIRE(decode_err(wire, back));
  CHECK(back.code == 1153);
  CHECK(back.sqlstate == "08S01");
  CHECK_FALSE(decode_err(bytes({0xff, 0x15}), back));
  CHECK_FALSE(decode_err(bytes({0xff, 0x15, 0x04, '#', '2', '8'}), back));  // marker, short state
  CHECK_FALSE(decode_err(bytes({0x00, 0x15, 0x04}), back));
  REQUIRE(decode_err(bytes({0xff, 0x15, 0x04}), back));
  CHECK(back.message.empty());

  EofPacket eof{2, status::kAutocommit | status::kMoreResultsExist};
  wire.clear();
  encode_eof(wire, eof);
  CHECK(wire == bytes({0xfe, 0x02, 0x00, 0x0a, 0x00}));
  EofPacket eb;
  REQUIRE(decode_eof(wire, eb));
  CHECK(eb == eof);
  CHECK(is_eof(wire));
  CHECK_FALSE(is_eof(bytes({0xfe, 1, 2, 3, 4, 5, 6, 7, 8})));  // 9 bytes: a row
  CHECK_FALSE(decode_eof(bytes({0xfe, 0x00}), eb));
  // Terminator conversions.
  std::string ok;
  REQUIRE(eof_to_ok_terminator(wire, ok));
  CHECK(ok == bytes({0xfe, 0x00, 0x00, 0x0a, 0x00, 0x02, 0x00}));
  std::string eof_again;
  REQUIRE(ok_terminator_to_eof(ok, cap::kProtocol41, eof_again));
  CHECK(eof_again == wire);
  CHECK_FALSE(eof_to_ok_terminator(ok, eof_again));
  CHECK_FALSE(ok_terminator_to_eof(bytes({0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00}),
                                   cap::kProtocol41, eof_again));
}

TEST_CASE("mysql_response: PREPARE_OK", "[mysql]") {
  PrepareOk p{7, 3, 2, 1};
  std::string wire;
  encode_prepare_ok(wire, p);
  CHECK(wire.size() == 12);
  PrepareOk back;
  REQUIRE(decode_prepare_ok(wire, back));
  CHECK(back == p);
  REQUIRE(decode_prepare_ok(wire + '\x01', back));  // MySQL 8 metadata_follows
  CHECK_FALSE(decode_prepare_ok(wire + "ab", back));
  for (size_t n = 0; n < 10; ++n) {
    CHECK_FALSE(decode_prepare_ok(std::string_view(wire).substr(0, n), back));
  }
  REQUIRE(decode_prepare_ok(std::string_view(wire).substr(0, 10), back));  // no warnings
  CHECK(back.warnings == 0);
}

TEST_CASE("mysql_response: reader rejects what is not a response", "[mysql]") {
  ResponseReader r(ResponseKind::Query, kDeCaps);
  CHECK(r.feed({}) == Step::Malformed);
  CHECK(r.failed());
  CHECK(r.feed(bytes({0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00})) == Step::Malformed);
  // Column count 0, too large, or with trailing bytes.
  for (const std::string& bad : {bytes({0x00}), bytes({0xfe, 0, 0, 0, 0, 0, 0, 1, 0}),
                                 bytes({0x02, 0x00}), bytes({0xfc, 0x00, 0x00})}) {
    ResponseReader q(ResponseKind::Query, 0);
    CHECK(q.feed(bad) == Step::Malformed);
  }
  // A binary row must start with 0x00.
  ResponseReader x(ResponseKind::Execute, kDeCaps);
  REQUIRE(x.feed(bytes({0x01})) == Step::More);
  REQUIRE(x.feed(bytes({0x03, 'd', 'e', 'f'})) == Step::More);
  CHECK(x.feed(bytes({0x01, 'a'})) == Step::Malformed);
  // LOCAL INFILE is not an EXECUTE answer.
  ResponseReader e(ResponseKind::Execute, kDeCaps);
  CHECK(e.feed(bytes({0xfb, 'f'})) == Step::Malformed);
  // Without DEPRECATE_EOF the metadata must end in EOF.
  ResponseReader m(ResponseKind::Query, kEofCaps);
  REQUIRE(m.feed(bytes({0x01})) == Step::More);
  REQUIRE(m.feed(bytes({0x03, 'd', 'e', 'f'})) == Step::More);
  CHECK(m.feed(bytes({0x01, 'a'})) == Step::Malformed);
  // An ERR in the middle of rows ends the response.
  ResponseReader mid(ResponseKind::Query, kEofCaps);
  REQUIRE(mid.feed(bytes({0x01})) == Step::More);
  REQUIRE(mid.feed(bytes({0x03, 'd', 'e', 'f'})) == Step::More);
  REQUIRE(mid.feed(bytes({0xfe, 0, 0, 2, 0})) == Step::More);
  REQUIRE(mid.feed(bytes({0x01, 'a'})) == Step::More);
  std::string err;
  encode_err(err, ErrorCode::QueryInterrupted, "Query execution was interrupted");
  CHECK(mid.feed(err) == Step::Done);
  CHECK(mid.role() == PacketRole::Err);
  CHECK(mid.rows() == 1);
  // An ERR where a PREPARE's final EOF belongs is malformed (a DEPRECATE_EOF
  // client would already have taken the response as complete); found by
  // fuzz_mysql_response. Before the parameters' EOF, with columns to come,
  // it ends the response like anywhere else.
  {
    std::string prep_ok;
    encode_prepare_ok(prep_ok, PrepareOk{4, 1, 1, 0});
    const std::string def = bytes({0x03, 'd', 'e', 'f'});
    ResponseReader p(ResponseKind::Prepare, kEofCaps);
    REQUIRE(p.feed(prep_ok) == Step::More);
    REQUIRE(p.feed(def) == Step::More);
    REQUIRE(p.feed(bytes({0xfe, 0, 0, 2, 0})) == Step::More);
    REQUIRE(p.feed(def) == Step::More);
    CHECK(p.feed(err) == Step::Malformed);
    ResponseReader q(ResponseKind::Prepare, kEofCaps);
    REQUIRE(q.feed(prep_ok) == Step::More);
    REQUIRE(q.feed(def) == Step::More);
    CHECK(q.feed(err) == Step::Done);
    CHECK(q.role() == PacketRole::Err);
    ResponseReader n(ResponseKind::Prepare, kEofCaps);
    std::string params_only;
    encode_prepare_ok(params_only, PrepareOk{4, 0, 1, 0});
    REQUIRE(n.feed(params_only) == Step::More);
    REQUIRE(n.feed(def) == Step::More);
    CHECK(n.feed(err) == Step::Malformed);
  }
  // A MariaDB progress report is not the end.
  ResponseReader pr(ResponseKind::Query, kEofCaps | cap::kMariaProgress);
  CHECK(pr.feed(bytes({0xff, 0xff, 0xff, 0x01, 0x01, 0x02})) == Step::More);
  CHECK(pr.role() == PacketRole::Progress);
  CHECK(pr.feed(bytes({0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00})) == Step::Done);
  // A row of 9+ bytes starting with 0xFE is a row, not a terminator.
  ResponseReader big(ResponseKind::Query, kEofCaps);
  REQUIRE(big.feed(bytes({0x01})) == Step::More);
  REQUIRE(big.feed(bytes({0x03, 'd', 'e', 'f'})) == Step::More);
  REQUIRE(big.feed(bytes({0xfe, 0, 0, 2, 0})) == Step::More);
  CHECK(big.feed(bytes({0xfe, 1, 0, 0, 0, 0, 0, 0, 0, 'x'})) == Step::More);
  CHECK(big.role() == PacketRole::Row);
  CHECK(to_string(Step::LocalInfile) == "local-infile");
  CHECK(to_string(ResponseKind::Prepare) == "prepare");
  CHECK(to_string(PacketRole::MetadataEof) == "metadata-eof");
  ResponseKind k{};
  CHECK_FALSE(response_kind_for(0x01, k));
  REQUIRE(response_kind_for(0x1f, k));
  CHECK(k == ResponseKind::Simple);
}

TEST_CASE("mysql_response: translating EOF-style results for a DEPRECATE_EOF client", "[mysql]") {
  // The same SELECT captured in both styles: translating the EOF-style one
  // gives exactly the DEPRECATE_EOF capture.
  const Exchange eof_x = find(exchanges("eof"), "select_items");
  const Exchange de_x = find(exchanges("de"), "select_items");
  const auto out = translate_all(ResponseKind::Query, kEofCaps, eof_x.server, true);
  CHECK(out == de_x.server);
  // And the translated response reads as a DEPRECATE_EOF one.
  ResponseReader r(ResponseKind::Query, kDeCaps);
  REQUIRE(run(r, out) == Step::Done);
  CHECK(r.rows() == 2);

  // Empty result; PREPARE; a cursor's metadata (its EOF becomes the OK).
  for (const char* label : {"empty_result", "prepare", "execute_cursor", "set_option"}) {
    INFO(label);
    const Exchange x = find(exchanges("eof"), label);
    ResponseKind kind{};
    REQUIRE(response_kind_for(x.command, kind));
    const auto t = translate_all(kind, kEofCaps, x.server, true);
    ResponseReader d(kind, kDeCaps);
    REQUIRE(run(d, t) == Step::Done);
    for (const auto& p : t) {
      CHECK_FALSE((is_eof(p) && p.size() == 5));  // no EOF packet is left
    }
  }
  const auto cur = translate_all(ResponseKind::Execute, kEofCaps,
                                 find(exchanges("eof"), "execute_cursor").server, true);
  REQUIRE(cur.size() == 4);
  OkPacket ok;
  REQUIRE(decode_ok(cur.back(), kDeCaps, ok));
  CHECK(ok.header == 0xFE);
  CHECK((ok.status & status::kCursorExists) != 0);
}

TEST_CASE("mysql_response: translating DEPRECATE_EOF results for an EOF-style client", "[mysql]") {
  const Exchange eof_x = find(exchanges("eof"), "select_items");
  const Exchange de_x = find(exchanges("de"), "select_items");
  const auto out = translate_all(ResponseKind::Query, kDeCaps, de_x.server, false,
                                 status::kAutocommit | status::kNoIndexUsed);
  // With the status the server would have put there, byte for byte.
  CHECK(out == eof_x.server);
  for (const char* label : {"multi", "prepare", "execute_types", "execute_null_no_types"}) {
    INFO(label);
    const Exchange x = find(exchanges("de"), label);
    ResponseKind kind{};
    REQUIRE(response_kind_for(x.command, kind));
    const auto t = translate_all(kind, kDeCaps, x.server, false);
    ResponseReader e(kind, kEofCaps);
    REQUIRE(run(e, t) == Step::Done);
    ResponseReader d(kind, kDeCaps);
    REQUIRE(run(d, x.server) == Step::Done);
    CHECK(e.rows() == d.rows());
    CHECK(e.result_sets() == d.result_sets());
    CHECK(e.status() == d.status());
  }
  // The PREPARE gains two EOFs (after the parameters and the columns).
  const Exchange p = find(exchanges("de"), "prepare");
  CHECK(translate_all(ResponseKind::Prepare, kDeCaps, p.server, false).size() ==
        p.server.size() + 2);
  // A DEPRECATE_EOF cursor answer (columns then OK(0xFE) with CURSOR_EXISTS)
  // becomes columns then a single EOF.
  std::vector<std::string> cursor = {bytes({0x01}), bytes({0x03, 'd', 'e', 'f'})};
  std::string fe;
  OkPacket term;
  term.header = 0xFE;
  term.status = status::kCursorExists | status::kAutocommit;
  encode_ok(fe, term, cap::kProtocol41);
  cursor.push_back(fe);
  const auto t = translate_all(ResponseKind::Execute, kDeCaps, cursor, false);
  REQUIRE(t.size() == 3);
  EofPacket e;
  REQUIRE(decode_eof(t[2], e));
  CHECK(e.status == term.status);
  // Same flags on both sides: nothing to do.
  ResponseReader same(ResponseKind::Query, kDeCaps);
  REQUIRE(same.feed(de_x.server[0]) == Step::More);
  std::vector<std::string> repl;
  CHECK_FALSE(translate_for_client(same, de_x.server[0], true, repl));
}

TEST_CASE("mysql_response: rows_matched reads an UPDATE's info text", "[mysql]") {
  CHECK(rows_matched("Rows matched: 1  Changed: 0  Warnings: 0") == std::optional<uint64_t>(1));
  CHECK(rows_matched("Rows matched: 12345  Changed: 3  Warnings: 0") ==
        std::optional<uint64_t>(12345));
  CHECK(rows_matched("Rows matched: 7") == std::optional<uint64_t>(7));
  CHECK_FALSE(rows_matched("Records: 3  Duplicates: 0  Warnings: 0"));
  CHECK_FALSE(rows_matched(""));
  CHECK_FALSE(rows_matched("Rows matched: "));
  CHECK_FALSE(rows_matched("Rows matched: x"));
  CHECK_FALSE(rows_matched("Rows matched: 1x"));
  CHECK_FALSE(rows_matched("Rows matched: 99999999999999999999999  Changed: 0"));
}

TEST_CASE("mysql_response: PREPARE_OK counts are unsigned 16-bit", "[mysql]") {
  for (const uint16_t n : {uint16_t{32767}, uint16_t{32768}, uint16_t{65535}}) {
    CAPTURE(n);
    const PrepareOk p{9, n, n, n};
    std::string wire;
    encode_prepare_ok(wire, p);
    CHECK(static_cast<uint8_t>(wire[6]) == (n >> 8));  // little-endian: high byte second
    PrepareOk back;
    REQUIRE(decode_prepare_ok(wire, back));
    CHECK(back == p);
  }
}
