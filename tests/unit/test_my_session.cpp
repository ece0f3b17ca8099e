// my_session: charset table, session variables learned from MariaDB's
// session tracking, the SET statement that restores them, schema restore,
// and the pin rules -- the latter checked against OK packets captured from
// MariaDB 10.11.19 (backend trackers on, DEPRECATE_EOF + SESSION_TRACK).
#include <catch2/catch.hpp>

#include <string>
#include <string_view>
#include <vector>

#include "pool/mysql/session.h"
#include "protocol/mysql/packet.h"
#include "protocol/mysql/response.h"

using sqlmux::pool::CharsetInfo;
using sqlmux::pool::MySessionVars;
using sqlmux::pool::PinReason;
using sqlmux::pool::restore_statement;
namespace my = sqlmux::my;

namespace {

constexpr uint64_t kCaps =
    my::cap::kProtocol41 | my::cap::kSessionTrack | my::cap::kDeprecateEof | my::cap::kTransactions;

// Real OK payloads (the statement each answers above it), as
// tests/unit/mysql_session_probe.py --fixtures prints them.
// SET @v=1
const std::string_view kOkSetUserVar{"\x00\x00\x00\x02\x40\x00\x00\x00\x03\x02\x01\x31", 12};
// CREATE TEMPORARY TABLE probe.tt(x int)
const std::string_view kOkCreateTemporary{"\x00\x00\x00\x02\x40\x00\x00\x00\x03\x02\x01\x31", 12};
// PREPARE s FROM 'select 1'
const std::string_view kOkPrepareSql{
    "\x00\x00\x00\x02\x40\x00\x00\x12\x53\x74\x61\x74\x65\x6d\x65\x6e\x74\x20\x70\x72\x65\x70\x61"
    "\x72\x65\x64\x03\x02\x01\x31",
    30};
// SET time_zone='+05:00'
const std::string_view kOkSetTimeZone{
    "\x00\x00\x00\x02\x40\x00\x00\x00\x16\x00\x11\x09\x74\x69\x6d\x65\x5f\x7a\x6f\x6e\x65\x06\x2b"
    "\x30\x35\x3a\x30\x30\x02\x01\x31",
    31};
// SET NAMES utf8mb4 COLLATE utf8mb4_unicode_ci
const std::string_view kOkSetNames{
    "\x00\x00\x00\x02\x40\x00\x00\x00\x65\x00\x1d\x14\x63\x68\x61\x72\x61\x63\x74\x65\x72\x5f\x73"
    "\x65\x74\x5f\x63\x6c\x69\x65\x6e\x74\x07\x75\x74\x66\x38\x6d\x62\x34\x00\x21\x18\x63\x68\x61"
    "\x72\x61\x63\x74\x65\x72\x5f\x73\x65\x74\x5f\x63\x6f\x6e\x6e\x65\x63\x74\x69\x6f\x6e\x07\x75"
    "\x74\x66\x38\x6d\x62\x34\x00\x1e\x15\x63\x68\x61\x72\x61\x63\x74\x65\x72\x5f\x73\x65\x74\x5f"
    "\x72\x65\x73\x75\x6c\x74\x73\x07\x75\x74\x66\x38\x6d\x62\x34\x02\x01\x31",
    110};
// USE probe
const std::string_view kOkUseDb{
    "\x00\x00\x00\x02\x40\x00\x00\x00\x0b\x01\x06\x05\x70\x72\x6f\x62\x65\x02\x01\x31", 20};
// SET TRANSACTION ISOLATION LEVEL READ COMMITTED
const std::string_view kOkSetTransaction{
    "\x00\x00\x00\x02\x40\x00\x00\x00\x32\x04\x30\x2f\x53\x45\x54\x20\x54\x52\x41\x4e\x53\x41\x43"
    "\x54\x49\x4f\x4e\x20\x49\x53\x4f\x4c\x41\x54\x49\x4f\x4e\x20\x4c\x45\x56\x45\x4c\x20\x52\x45"
    "\x41\x44\x20\x43\x4f\x4d\x4d\x49\x54\x54\x45\x44\x3b",
    59};
// BEGIN
const std::string_view kOkBegin{
    "\x00\x00\x00\x03\x40\x00\x00\x00\x20\x05\x09\x08\x54\x5f\x5f\x5f\x5f\x5f\x5f\x5f\x04\x13\x12"
    "\x53\x54\x41\x52\x54\x20\x54\x52\x41\x4e\x53\x41\x43\x54\x49\x4f\x4e\x3b",
    41};
// COMMIT
const std::string_view kOkCommit{
    "\x00\x00\x00\x02\x40\x00\x00\x00\x0e\x05\x09\x08\x5f\x5f\x5f\x5f\x5f\x5f\x5f\x5f\x04\x01\x00",
    23};
// INSERT INTO probe.t VALUES (3)
const std::string_view kOkAutocommitConsumed{"\x00\x01\x00\x02\x40\x00\x00\x00\x03\x04\x01\x00",
                                             12};
// LOCK TABLES probe.t READ
const std::string_view kOkLockTables{
    "\x00\x00\x00\x02\x40\x00\x00\x00\x0b\x05\x09\x08\x5f\x5f\x5f\x5f\x5f\x5f\x5f\x4c", 20};
// UNLOCK TABLES
const std::string_view kOkUnlockTables{
    "\x00\x00\x00\x02\x40\x00\x00\x00\x0b\x05\x09\x08\x5f\x5f\x5f\x5f\x5f\x5f\x5f\x5f", 20};
// DO GET_LOCK('x',1)
const std::string_view kOkGetLock{"\x00\x00\x00\x02\x00\x00\x00", 7};
// SET insert_id=5
const std::string_view kOkSetInsertId{
    "\x00\x00\x00\x02\x40\x00\x00\x00\x11\x00\x0c\x09\x69\x6e\x73\x65\x72\x74\x5f\x69\x64\x01\x35"
    "\x02\x01\x31",
    26};
// CALL probe.p()
const std::string_view kOkCallProc{
    "\x00\x00\x00\x02\x40\x00\x00\x00\x19\x00\x11\x09\x74\x69\x6d\x65\x5f\x7a\x6f\x6e\x65\x06\x2b"
    "\x30\x34\x3a\x30\x30\x01\x01\x00\x02\x01\x31",
    34};
// COM_STMT_EXECUTE with CURSOR_TYPE_READ_ONLY: the OK that ends the metadata.
const std::string_view kOkCursorOpened{"\xfe\x00\x00\x62\x00\x00\x00", 7};
// COM_STMT_FETCH that returned the cursor's last row.
const std::string_view kOkFetchLastRow{"\xfe\x00\x00\x82\x00\x00\x00", 7};

my::OkPacket ok_of(std::string_view payload) {
  my::OkPacket ok;
  REQUIRE(my::decode_ok(payload, kCaps, ok));
  return ok;
}

my::SessionState vars(std::vector<std::pair<std::string, std::string>> v) {
  my::SessionState s;
  s.system_variables = std::move(v);
  s.state_changed = true;
  return s;
}

MySessionVars with(const std::vector<std::pair<std::string, std::string>>& v) {
  MySessionVars m;
  for (const auto& [n, val] : v) m.set(n, val);
  return m;
}

}  // namespace

TEST_CASE("my_session: collation ids as MariaDB 10.11 names them") {
  struct Want {
    uint16_t id;
    std::string_view charset;
    std::string_view collation;
  };
  const Want wants[] = {
      {2, "latin2", "latin2_czech_cs"},
      {5, "latin1", "latin1_german1_ci"},
      {8, "latin1", "latin1_swedish_ci"},
      {11, "ascii", "ascii_general_ci"},
      {28, "gbk", "gbk_chinese_ci"},
      {33, "utf8mb3", "utf8mb3_general_ci"},
      {45, "utf8mb4", "utf8mb4_general_ci"},
      {46, "utf8mb4", "utf8mb4_bin"},
      {47, "latin1", "latin1_bin"},
      {48, "latin1", "latin1_general_ci"},
      {63, "binary", "binary"},
      {83, "utf8mb3", "utf8mb3_bin"},
      {192, "utf8mb3", "utf8mb3_unicode_ci"},
      {224, "utf8mb4", "utf8mb4_unicode_ci"},
  };
  for (const auto& w : wants) {
    INFO(w.id);
    const auto cs = sqlmux::pool::charset_by_id(w.id);
    REQUIRE(cs);
    CHECK(cs->charset == w.charset);
    CHECK(cs->collation == w.collation);
  }
  CHECK(sqlmux::pool::charset_by_id(8)->is_default);
  CHECK(!sqlmux::pool::charset_by_id(224)->is_default);
  CHECK(sqlmux::pool::charset_by_id(247)->collation == "utf8mb4_vietnamese_ci");
  // MySQL 8's utf8mb4_0900_ai_ci, which MySQL 8 clients send: unknown to
  // MariaDB 10.11, which then gives the client its global charset.
  CHECK(!sqlmux::pool::charset_by_id(255));
  CHECK(!sqlmux::pool::charset_by_id(0));    // the server falls back to its global charset
  CHECK(!sqlmux::pool::charset_by_id(250));  // a gap
  CHECK(!sqlmux::pool::charset_by_id(256));

  CHECK(sqlmux::pool::default_collation("utf8mb4") == "utf8mb4_general_ci");
  CHECK(sqlmux::pool::default_collation("latin1") == "latin1_swedish_ci");
  CHECK(sqlmux::pool::default_collation("binary") == "binary");
  CHECK(!sqlmux::pool::default_collation("utf8"));  // 10.11 says utf8mb3
  CHECK(sqlmux::pool::charset_of_collation("utf8mb4_unicode_ci") == "utf8mb4");
  CHECK(sqlmux::pool::charset_of_collation("binary") == "binary");
  CHECK(!sqlmux::pool::usable_as_client_charset("ucs2"));
  CHECK(!sqlmux::pool::usable_as_client_charset("utf32"));
  CHECK(sqlmux::pool::usable_as_client_charset(sqlmux::pool::charset_by_id(35)->charset) == false);
  CHECK(sqlmux::pool::usable_as_client_charset("utf8mb4"));
}

TEST_CASE("my_session: apply records variables and schema") {
  MySessionVars v;
  v.apply(vars({{"TIME_ZONE", "+05:00"},
                {"session_track_schema", "OFF"},  // the client's own tracking
                {"sql_mode", "ANSI_QUOTES"},
                {"time_zone", "+06:00"},  // repeats: the last one counts
                {"insert_id", "5"}}));    // one-shot: not carried over
  REQUIRE(v.vars().size() == 3);
  CHECK(*v.find("session_track_schema") == "OFF");
  CHECK(*v.find("time_zone") == "+06:00");
  CHECK(*v.find("Time_Zone") == "+06:00");
  CHECK(*v.find("sql_mode") == "ANSI_QUOTES");
  CHECK(v.find("insert_id") == nullptr);
  CHECK(!v.schema);

  my::SessionState use;
  use.schema = "shop";
  v.apply(use);
  CHECK(v.schema == std::optional<std::string>("shop"));
  my::SessionState none;  // CALL p() / DROP DATABASE report an empty schema
  none.schema = "";
  v.apply(none);
  CHECK(!v.schema);
  my::SessionState nothing;
  v.schema = "shop";
  v.apply(nothing);
  CHECK(v.schema == std::optional<std::string>("shop"));

  v.erase("TIME_ZONE");
  CHECK(v.find("time_zone") == nullptr);
  v.clear_vars();
  CHECK(v.vars().empty());
  CHECK(!v.empty());  // the schema stays
}

TEST_CASE("my_session: apply on real OK packets") {
  MySessionVars v;
  v.apply(ok_of(kOkSetTimeZone).session_state);
  v.apply(ok_of(kOkUseDb).session_state);
  v.apply(ok_of(kOkSetUserVar).session_state);  // nothing to record
  CHECK(v.vars() == MySessionVars::Map{{"time_zone", "+05:00"}});
  CHECK(v.schema == std::optional<std::string>("probe"));
  v.apply(ok_of(kOkCallProc).session_state);  // time_zone +04:00, schema ''
  CHECK(*v.find("time_zone") == "+04:00");
  CHECK(!v.schema);
  v.apply(ok_of(kOkSetInsertId).session_state);
  CHECK(v.find("insert_id") == nullptr);
}

TEST_CASE("my_session: the connection charset stays consistent") {
  MySessionVars v;
  v.set_charset(*sqlmux::pool::charset_by_id(8));
  CHECK(v.vars() == MySessionVars::Map{{"character_set_client", "latin1"},
                                       {"character_set_connection", "latin1"},
                                       {"character_set_results", "latin1"},
                                       {"collation_connection", "latin1_swedish_ci"}});
  // SET NAMES reports three variables; the collation follows the charset.
  v.apply(ok_of(kOkSetNames).session_state);
  CHECK(*v.find("character_set_client") == "utf8mb4");
  CHECK(*v.find("character_set_connection") == "utf8mb4");
  CHECK(*v.find("character_set_results") == "utf8mb4");
  CHECK(*v.find("collation_connection") == "utf8mb4_general_ci");
  // SET collation_connection reports only the collation.
  v.apply(vars({{"collation_connection", "latin1_bin"}}));
  CHECK(*v.find("character_set_connection") == "latin1");
  CHECK(*v.find("collation_connection") == "latin1_bin");
  // Both reported: taken as they are.
  v.apply(vars(
      {{"character_set_connection", "utf8mb4"}, {"collation_connection", "utf8mb4_unicode_ci"}}));
  CHECK(*v.find("collation_connection") == "utf8mb4_unicode_ci");
  // An unknown charset: the collation is no longer known.
  v.apply(vars({{"character_set_connection", "klingon"}}));
  CHECK(v.find("collation_connection") == nullptr);
}

TEST_CASE("my_session: restore_statement assigns, resets and orders") {
  const MySessionVars fresh;
  CHECK(restore_statement(fresh, fresh).empty());
  const auto same = with({{"time_zone", "+05:00"}});
  CHECK(restore_statement(same, same).empty());

  const auto client = with({{"time_zone", "+05:00"},
                            {"sql_mode", "STRICT_TRANS_TABLES,ANSI_QUOTES"},
                            {"autocommit", "OFF"},
                            {"tx_isolation", "READ-COMMITTED"},
                            {"sql_select_limit", "100"},
                            {"long_query_time", "1.000000"},
                            {"div_precision_increment", "-5"}});
  CHECK(restore_statement(fresh, client) ==
        "SET SESSION autocommit='OFF', div_precision_increment=-5, long_query_time=1.000000, "
        "sql_mode='STRICT_TRANS_TABLES,ANSI_QUOTES', sql_select_limit=100, "
        "time_zone='+05:00', tx_isolation='READ-COMMITTED'");
  const auto backend = with({{"time_zone", "+05:00"}, {"sql_mode", ""}, {"wait_timeout", "60"}});
  CHECK(restore_statement(backend, client) ==
        "SET SESSION autocommit='OFF', div_precision_increment=-5, long_query_time=1.000000, "
        "sql_mode='STRICT_TRANS_TABLES,ANSI_QUOTES', sql_select_limit=100, "
        "tx_isolation='READ-COMMITTED', wait_timeout=DEFAULT");
  CHECK(restore_statement(client, fresh) ==
        "SET SESSION autocommit=DEFAULT, div_precision_increment=DEFAULT, "
        "long_query_time=DEFAULT, sql_mode=DEFAULT, sql_select_limit=DEFAULT, "
        "time_zone=DEFAULT, tx_isolation=DEFAULT");
  // Not numbers: quoted.
  CHECK(restore_statement(fresh, with({{"a", "1e5"}, {"b", "1."}, {"c", "-"}, {"d", ".5"}})) ==
        "SET SESSION a='1e5', b='1.', c='-', d='.5'");
}

TEST_CASE("my_session: restore_statement quotes values safely") {
  const MySessionVars fresh;
  const auto client = with({{"init_x", "it's \\' ; DROP"}});
  CHECK(restore_statement(fresh, client) == "SET SESSION init_x='it''s \\\\'' ; DROP'");
  CHECK(restore_statement(fresh, client, nullptr, true) ==
        "SET SESSION init_x='it''s \\'' ; DROP'");

  std::vector<std::string> skipped;
  const auto bad = with({{"ok_name", "1"}, {"x=1, y", "2"}, {"a.b", "3"}, {"", "4"}});
  CHECK(restore_statement(fresh, bad, &skipped) == "SET SESSION ok_name=1");
  CHECK(skipped == std::vector<std::string>{"", "a.b", "x=1, y"});
  skipped.clear();
  CHECK(restore_statement(with({{"sp ace", "1"}}), fresh, &skipped).empty());
  CHECK(skipped == std::vector<std::string>{"sp ace"});
  CHECK(restore_statement(fresh, with({{std::string(65, 'a'), "1"}})).empty());
  CHECK(restore_statement(fresh, with({{std::string(64, 'a'), "1"}})) ==
        "SET SESSION " + std::string(64, 'a') + "=1");
}

TEST_CASE("my_session: restore_statement and the charset variables") {
  MySessionVars backend;
  backend.set_charset(*sqlmux::pool::charset_by_id(45));  // utf8mb4_general_ci
  MySessionVars client;
  client.set_charset(*sqlmux::pool::charset_by_id(45));
  CHECK(restore_statement(backend, client).empty());

  MySessionVars latin;
  latin.set_charset(*sqlmux::pool::charset_by_id(8));
  latin.set("time_zone", "+01:00");
  CHECK(restore_statement(backend, latin) ==
        "SET SESSION character_set_client='latin1', character_set_connection='latin1', "
        "character_set_results='latin1', collation_connection='latin1_swedish_ci', "
        "time_zone='+01:00'");

  // Only the collation differs: SET NAMES, the one way to give
  // character_set_results (column definitions) the handshake's collation.
  MySessionVars unicode;
  unicode.set_charset(*sqlmux::pool::charset_by_id(224));
  CHECK(restore_statement(backend, unicode) == "SET NAMES 'utf8mb4' COLLATE 'utf8mb4_unicode_ci'");
  CHECK(restore_statement(unicode, backend) == "SET NAMES 'utf8mb4' COLLATE 'utf8mb4_general_ci'");
  unicode.set("time_zone", "+02:00");
  CHECK(restore_statement(latin, unicode) ==
        "SET NAMES 'utf8mb4' COLLATE 'utf8mb4_unicode_ci', time_zone='+02:00'");
  // Only character_set_connection differs (SET CHARACTER SET leaves it
  // alone; here the client has a different one): the collation follows it.
  MySessionVars odd = backend;
  odd.apply(vars({{"character_set_connection", "latin1"}}));
  CHECK(restore_statement(backend, odd) ==
        "SET SESSION character_set_connection='latin1', collation_connection='latin1_swedish_ci'");
  // The client's collation is unknown: the charset sets its default.
  MySessionVars unknown = unicode;
  unknown.erase("collation_connection");
  CHECK(restore_statement(unicode, unknown) == "SET SESSION character_set_connection='utf8mb4'");
  // Neither side's client has them: back to the global values.
  MySessionVars bare;
  CHECK(restore_statement(backend, bare) ==
        "SET SESSION character_set_client=DEFAULT, character_set_connection=DEFAULT, "
        "character_set_results=DEFAULT, collation_connection=DEFAULT");
  // SET character_set_results=NULL is reported as ''.
  MySessionVars null_results = backend;
  null_results.apply(vars({{"character_set_results", ""}}));
  CHECK(restore_statement(backend, null_results) == "SET SESSION character_set_results=NULL");
  CHECK(restore_statement(null_results, backend) == "SET SESSION character_set_results='utf8mb4'");
}

TEST_CASE("my_session: schema to restore") {
  using sqlmux::pool::can_restore_schema;
  using sqlmux::pool::schema_to_restore;
  const std::optional<std::string> none;
  const std::optional<std::string> a = "a";
  const std::optional<std::string> b = "b";
  CHECK(!schema_to_restore(none, none));
  CHECK(!schema_to_restore(a, a));
  CHECK(schema_to_restore(none, a) == a);
  CHECK(schema_to_restore(b, a) == a);
  CHECK(!schema_to_restore(a, none));  // cannot be done: see can_restore_schema
  CHECK(can_restore_schema(none, none));
  CHECK(can_restore_schema(none, a));
  CHECK(can_restore_schema(b, a));
  CHECK(!can_restore_schema(a, none));
}

TEST_CASE("my_session: pin reasons from real OK packets") {
  using sqlmux::pool::pin_reason;
  CHECK(pin_reason(ok_of(kOkSetUserVar)) == PinReason::UserState);
  CHECK(pin_reason(ok_of(kOkCreateTemporary)) == PinReason::UserState);
  CHECK(pin_reason(ok_of(kOkPrepareSql)) == PinReason::UserState);
  CHECK(pin_reason(ok_of(kOkSetInsertId)) == PinReason::UserState);
  CHECK(pin_reason(ok_of(kOkSetTimeZone)) == PinReason::None);
  CHECK(pin_reason(ok_of(kOkSetNames)) == PinReason::None);
  CHECK(pin_reason(ok_of(kOkUseDb)) == PinReason::None);
  CHECK(pin_reason(ok_of(kOkCallProc)) == PinReason::None);
  CHECK(pin_reason(ok_of(kOkSetTransaction)) == PinReason::TransactionCharacteristics);
  CHECK(pin_reason(ok_of(kOkBegin)) == PinReason::None);  // in a transaction
  CHECK(pin_reason(ok_of(kOkCommit)) == PinReason::None);
  CHECK(pin_reason(ok_of(kOkAutocommitConsumed)) == PinReason::None);
  CHECK(pin_reason(ok_of(kOkLockTables)) == PinReason::LockTables);
  CHECK(pin_reason(ok_of(kOkUnlockTables)) == PinReason::None);
  CHECK(pin_reason(ok_of(kOkGetLock)) == PinReason::None);  // GET_LOCK reports nothing
  CHECK(pin_reason(ok_of(kOkCursorOpened)) == PinReason::Cursor);
  CHECK(pin_reason(ok_of(kOkFetchLastRow)) == PinReason::None);

  // The first reason wins.
  my::OkPacket both = ok_of(kOkSetUserVar);
  both.status |= my::status::kCursorExists;
  CHECK(pin_reason(both) == PinReason::UserState);
}

TEST_CASE("my_session: pins released") {
  using sqlmux::pool::pin_released;
  CHECK(pin_released(PinReason::LockTables, ok_of(kOkUnlockTables)));
  CHECK(pin_released(PinReason::LockTables, ok_of(kOkBegin)));  // BEGIN unlocks
  CHECK(!pin_released(PinReason::LockTables, ok_of(kOkLockTables)));
  CHECK(!pin_released(PinReason::LockTables, ok_of(kOkSetTimeZone)));

  CHECK(pin_released(PinReason::TransactionCharacteristics, ok_of(kOkAutocommitConsumed)));
  CHECK(pin_released(PinReason::TransactionCharacteristics, ok_of(kOkBegin)));
  CHECK(pin_released(PinReason::TransactionCharacteristics, ok_of(kOkCommit)));
  CHECK(!pin_released(PinReason::TransactionCharacteristics, ok_of(kOkSetTransaction)));
  CHECK(!pin_released(PinReason::TransactionCharacteristics, ok_of(kOkGetLock)));

  CHECK(pin_released(PinReason::Cursor, ok_of(kOkFetchLastRow)));
  CHECK(!pin_released(PinReason::Cursor, ok_of(kOkCursorOpened)));

  CHECK(!pin_released(PinReason::UserState, ok_of(kOkCommit)));
  CHECK(!pin_released(PinReason::None, ok_of(kOkCommit)));

  CHECK(sqlmux::pool::to_string(PinReason::None) == "none");
  CHECK(sqlmux::pool::to_string(PinReason::UserState) == "user_state");
  CHECK(sqlmux::pool::to_string(PinReason::LockTables) == "lock_tables");
  CHECK(sqlmux::pool::to_string(PinReason::TransactionCharacteristics) ==
        "transaction_characteristics");
  CHECK(sqlmux::pool::to_string(PinReason::Cursor) == "cursor");
}

TEST_CASE("my_session: one-shot variables and SET STATEMENT") {
  using sqlmux::pool::is_one_shot_variable;
  using sqlmux::pool::is_set_statement;
  CHECK(is_one_shot_variable("insert_id"));
  CHECK(is_one_shot_variable("TIMESTAMP"));
  CHECK(!is_one_shot_variable("time_zone"));

  CHECK(is_set_statement("SET STATEMENT time_zone='+01:00' FOR SELECT 1"));
  CHECK(is_set_statement("  set\n\tstatement max_statement_time=1 for select 1"));
  CHECK(is_set_statement("/* c */ SET /* d */ STATEMENT x=1 FOR DO 1"));
  CHECK(is_set_statement("-- note\nSET STATEMENT x=1 FOR DO 1"));
  CHECK(is_set_statement("# note\nSET STATEMENT x=1 FOR DO 1"));
  CHECK(is_set_statement("/*!100000 SET STATEMENT x=1 FOR DO 1 */"));
  CHECK(is_set_statement("/*M!100000 SET STATEMENT x=1 FOR DO 1 */"));
  CHECK(!is_set_statement("SET time_zone='+01:00'"));
  CHECK(!is_set_statement("SET statement_x=1"));
  CHECK(!is_set_statement("SETSTATEMENT x=1"));
  CHECK(!is_set_statement("SELECT 1; SET STATEMENT x=1 FOR DO 1"));
  CHECK(!is_set_statement("/* unterminated SET STATEMENT"));
  CHECK(!is_set_statement(""));
  CHECK(!is_set_statement("SET"));
  CHECK(!is_set_statement("--x\nSET STATEMENT x=1 FOR DO 1"));  // "--x" is not a comment
}

TEST_CASE("my_session: the collation of SET NAMES ... COLLATE") {
  using sqlmux::pool::set_names_collation;
  using C = std::optional<std::string>;
  CHECK(set_names_collation("set names 'utf8mb4' collate 'utf8mb4_unicode_ci'") ==
        C("utf8mb4_unicode_ci"));
  CHECK(set_names_collation("SET NAMES utf8mb4 COLLATE utf8mb4_Unicode_CI, time_zone='+00:00'") ==
        C("utf8mb4_unicode_ci"));
  CHECK(set_names_collation(" /* x */ SET NAMES \"latin1\" COLLATE `latin1_bin`") ==
        C("latin1_bin"));
  CHECK(!set_names_collation("SET NAMES utf8mb4"));
  CHECK(!set_names_collation("SET NAMES utf8mb4 COLLATE DEFAULT"));
  CHECK(!set_names_collation("SET NAMES DEFAULT"));
  CHECK(!set_names_collation("SET NAMES 'utf8mb4' COLLATE 'x; DROP'"));
  CHECK(!set_names_collation("SET NAMES 'utf8mb4' COLLATE 'unterminated"));
  CHECK(!set_names_collation("SET CHARACTER SET utf8mb4"));
  CHECK(!set_names_collation("SELECT 1"));
  CHECK(!set_names_collation(""));

  // With the report of that statement: the collation the server set.
  MySessionVars v;
  v.apply(ok_of(kOkSetNames).session_state);
  const auto coll = set_names_collation("SET NAMES utf8mb4 COLLATE utf8mb4_unicode_ci");
  REQUIRE(coll);
  v.set("collation_connection", *coll);
  CHECK(*v.find("character_set_connection") == "utf8mb4");
  CHECK(*v.find("collation_connection") == "utf8mb4_unicode_ci");
}

TEST_CASE("my_session: restore_statement leaves session_track_* alone") {
  const MySessionVars fresh;
  auto client = with({{"session_track_schema", "OFF"}, {"time_zone", "+01:00"}});
  CHECK(restore_statement(fresh, client) == "SET SESSION time_zone='+01:00'");
  CHECK(restore_statement(client, fresh) == "SET SESSION time_zone=DEFAULT");
  CHECK(client.erase_tracking_vars());
  CHECK(client.vars() == MySessionVars::Map{{"time_zone", "+01:00"}});
  CHECK(!client.erase_tracking_vars());
  auto many = with({{"session_track_a", "1"}, {"session_track_b", "2"}, {"session_trackz", "3"}});
  CHECK(many.erase_tracking_vars());
  CHECK(many.vars() == MySessionVars::Map{{"session_trackz", "3"}});
}

namespace {

// The same statements' OKs on a backend (sqlmux's trackers) and on a
// direct connection with MariaDB 10.11's default tracking (the probe in
// test_mysql_protocol.py's session_track_parity).
// SET autocommit=0
const std::string_view kBackendAutocommitOff{
    "\x00\x00\x00\x00\x40\x00\x00\x00\x14\x00\x0f\x0a\x61\x75\x74\x6f\x63\x6f\x6d\x6d\x69\x74\x03"
    "\x4f\x46\x46\x02\x01\x31",
    29};
const std::string_view kDirectAutocommitOff{
    "\x00\x00\x00\x00\x40\x00\x00\x00\x11\x00\x0f\x0a\x61\x75\x74\x6f\x63\x6f\x6d\x6d\x69\x74\x03"
    "\x4f\x46\x46",
    26};
// USE appdb
const std::string_view kBackendUse{
    "\x00\x00\x00\x02\x40\x00\x00\x00\x0b\x01\x06\x05\x61\x70\x70\x64\x62\x02\x01\x31", 20};
const std::string_view kDirectUse{
    "\x00\x00\x00\x02\x40\x00\x00\x00\x08\x01\x06\x05\x61\x70\x70\x64\x62", 17};
// BEGIN: transaction state and characteristics; a direct connection: none.
const std::string_view kBackendBegin{
    "\x00\x00\x00\x03\x40\x00\x00\x00\x20\x05\x09\x08\x54\x5f\x5f\x5f\x5f\x5f\x5f\x5f\x04\x13\x12"
    "START TRANSACTION;",
    41};
const std::string_view kDirectBegin{"\x00\x00\x00\x03\x00\x00\x00", 7};

std::string filtered(std::string_view backend_ok, const MySessionVars& client) {
  my::OkPacket ok = ok_of(backend_ok);
  (void)sqlmux::pool::filter_for_client(ok, sqlmux::pool::client_tracking(client));
  std::string out;
  my::encode_ok(out, ok, kCaps);
  return out;
}

}  // namespace

TEST_CASE("my_session: a client is sent what its own trackers report") {
  using sqlmux::pool::client_tracking;
  const MySessionVars fresh;  // MariaDB's default tracking
  CHECK(filtered(kBackendAutocommitOff, fresh) == kDirectAutocommitOff);
  CHECK(filtered(kBackendUse, fresh) == kDirectUse);
  CHECK(filtered(kBackendBegin, fresh) == kDirectBegin);
  CHECK(filtered(kOkSetUserVar, fresh) == std::string_view("\x00\x00\x00\x02\x00\x00\x00", 7));
  // Nothing to filter: unchanged.
  my::OkPacket plain = ok_of(kDirectBegin);
  CHECK(!sqlmux::pool::filter_for_client(plain, client_tracking(fresh)));

  // The client's own settings, as its SETs reported them.
  MySessionVars all;
  all.set("session_track_system_variables", "*");
  all.set("session_track_schema", "OFF");
  all.set("session_track_state_change", "ON");
  all.set("session_track_transaction_info", "CHARACTERISTICS");
  CHECK(filtered(kBackendAutocommitOff, all) == kBackendAutocommitOff);
  CHECK(filtered(kBackendBegin, all) == kBackendBegin);
  CHECK(filtered(kBackendUse, all) ==
        std::string_view("\x00\x00\x00\x02\x40\x00\x00\x00\x03\x02\x01\x31", 12));

  MySessionVars listed;
  listed.set("session_track_system_variables", "time_zone, AUTOCOMMIT");
  listed.set("session_track_transaction_info", "STATE");
  const auto t = client_tracking(listed);
  CHECK(t.schema);
  CHECK(!t.state_change);
  CHECK(t.transaction_state);
  CHECK(!t.transaction_characteristics);
  CHECK(filtered(kBackendAutocommitOff, listed) == kDirectAutocommitOff);
  my::OkPacket begin = ok_of(kBackendBegin);
  CHECK(sqlmux::pool::filter_for_client(begin, t));
  CHECK(begin.session_state.transaction_state == std::optional<std::string>("T_______"));
  CHECK(!begin.session_state.transaction_characteristics);
  CHECK(sqlmux::pool::keep_eof_state_flag(t));
  CHECK(!sqlmux::pool::keep_eof_state_flag(client_tracking(fresh)));
  listed.set("session_track_system_variables", "");
  CHECK(filtered(kBackendAutocommitOff, listed) ==
        std::string_view("\x00\x00\x00\x00\x00\x00\x00", 7));
}

TEST_CASE("my_session: the collation of character_set_results") {
  MySessionVars v;
  v.set_charset(*sqlmux::pool::charset_by_id(224));
  CHECK(v.results_collation == std::optional<std::string>("utf8mb4_unicode_ci"));
  // SET NAMES utf8mb4 (and SET character_set_results): the default.
  v.apply(ok_of(kOkSetNames).session_state);
  CHECK(v.results_collation == std::optional<std::string>("utf8mb4_general_ci"));
  // SET NAMES ... COLLATE: the collation the server does not report.
  sqlmux::pool::SessionReport how;
  how.names_collation = "utf8mb4_unicode_ci";
  sqlmux::pool::apply_report(v, ok_of(kOkSetNames), how);
  CHECK(v.results_collation == std::optional<std::string>("utf8mb4_unicode_ci"));
  CHECK(*v.find("collation_connection") == "utf8mb4_unicode_ci");
  // SET collation_connection leaves it.
  v.apply(vars({{"collation_connection", "utf8mb4_bin"}}));
  CHECK(v.results_collation == std::optional<std::string>("utf8mb4_unicode_ci"));
  v.apply(vars({{"character_set_results", ""}}));  // NULL
  CHECK(!v.results_collation);
  v.set_charset(*sqlmux::pool::charset_by_id(8));
  v.clear_vars();
  CHECK(!v.results_collation);
}

TEST_CASE("my_session: equal variables need no restore statement") {
  // MyBackend::link skips restore_statement() when the backend's variables
  // equal the client's (operator==: variables, schema, results collation);
  // this is the property it relies on, with the charset variables set.
  for (const auto* cs : {"utf8mb4", "latin1"}) {
    MySessionVars a;
    a.set_charset(
        CharsetInfo{cs, std::string(cs) == "latin1" ? "latin1_swedish_ci" : "utf8mb4_unicode_ci"});
    a.set("time_zone", "+05:00");
    a.set("sql_mode", "ANSI_QUOTES");
    a.schema = "appdb";
    const MySessionVars b = a;
    REQUIRE(a == b);
    CHECK(restore_statement(a, b).empty());
    CHECK(restore_statement(a, b, nullptr, true).empty());
    MySessionVars c = a;
    c.results_collation = "utf8mb4_bin";
    CHECK_FALSE(a == c);  // (unequal: restore_statement decides)
  }
}
