// pool/pg/session_pins: when to ask the server about state that pins, and
// reading its answer.
#include <catch2/catch.hpp>

#include "pool/pg/session_pins.h"

using sqlmux::pool::kPgPinKinds;
using sqlmux::pool::may_hold_state;
using sqlmux::pool::PgPin;
using sqlmux::pool::pins_from_row;
using sqlmux::pool::pins_to_string;
using sqlmux::pool::tag_may_change_state;

TEST_CASE("session pins: which SQL text may make or end pinning state", "[pool][pins]") {
  CHECK(may_hold_state("CREATE TEMP TABLE t(x int)"));
  CHECK(may_hold_state("create temporary table t as select 1"));
  CHECK(may_hold_state("SELECT 1 INTO TEMP t"));
  CHECK(may_hold_state("CREATE GLOBAL\tTEMP TABLE t()"));
  CHECK(may_hold_state("DISCARD TEMP"));
  CHECK(may_hold_state("DECLARE c CURSOR WITH HOLD FOR SELECT 1"));
  CHECK(may_hold_state("declare c cursor with\nhold for select 1"));
  CHECK(may_hold_state("SELECT pg_advisory_lock(1)"));
  CHECK(may_hold_state("SELECT PG_TRY_ADVISORY_LOCK_SHARED(1, 2)"));
  CHECK(may_hold_state("select pg_advisory_unlock_all()"));
  CHECK(may_hold_state("TEMP"));
  // Words inside identifiers are not the keywords: no check query for them.
  CHECK_FALSE(may_hold_state("SELECT temperature, template FROM readings"));
  CHECK_FALSE(may_hold_state("SELECT threshold, holder FROM t"));
  CHECK_FALSE(may_hold_state("SELECT 1"));
  CHECK_FALSE(may_hold_state(""));
  CHECK_FALSE(may_hold_state("tem"));
  CHECK_FALSE(may_hold_state("SELECT advisory FROM notes"));
}

TEST_CASE("session pins: command tags that may make or end pinning state", "[pool][pins]") {
  for (const char* t :
       {"PREPARE", "DEALLOCATE", "DEALLOCATE ALL", "DISCARD ALL", "DISCARD TEMP", "CREATE TABLE",
        "CREATE VIEW", "CREATE SEQUENCE", "DROP TABLE", "DROP VIEW", "DROP SEQUENCE",
        "CLOSE CURSOR", "CLOSE CURSOR ALL", "DROP SCHEMA", "DROP OWNED"}) {
    CHECK(tag_may_change_state(t));
  }
  for (const char* t : {"SELECT 1", "INSERT 0 1", "UPDATE 3", "BEGIN", "COMMIT", "SET", "LISTEN",
                        "DECLARE CURSOR", "FETCH 2", ""}) {
    CHECK_FALSE(tag_may_change_state(t));
  }
}

TEST_CASE("session pins: the server's answer", "[pool][pins]") {
  CHECK(pins_from_row({"f", "f", "f", "f"}) == uint8_t{0});
  CHECK(pins_from_row({"t", "f", "f", "f"}) == static_cast<uint8_t>(PgPin::TempTable));
  CHECK(pins_from_row({"f", "t", "t", "t"}) ==
        static_cast<uint8_t>(static_cast<uint8_t>(PgPin::SqlPrepare) |
                             static_cast<uint8_t>(PgPin::HoldCursor) |
                             static_cast<uint8_t>(PgPin::AdvisoryLock)));
  // Anything else is no answer.
  CHECK_FALSE(pins_from_row({}).has_value());
  CHECK_FALSE(pins_from_row({"t", "f", "f"}).has_value());
  CHECK_FALSE(pins_from_row({"t", "f", "f", "f", "f"}).has_value());
  CHECK_FALSE(pins_from_row({"true", "f", "f", "f"}).has_value());
  CHECK_FALSE(pins_from_row({"", "f", "f", "f"}).has_value());
}

TEST_CASE("session pins: names", "[pool][pins]") {
  CHECK(pins_to_string(0).empty());
  CHECK(pins_to_string(static_cast<uint8_t>(PgPin::TempTable)) == "temp_table");
  CHECK(pins_to_string(0x1f) == "temp_table,sql_prepare,hold_cursor,advisory_lock,listen");
  CHECK(to_string(PgPin::Listen) == "listen");
  CHECK(sqlmux::pool::pin_index(PgPin::AdvisoryLock) == 3);
  CHECK(kPgPinKinds == 5);
}

TEST_CASE("session pins: one pass finds state words, LISTEN and set_config", "[pins]") {
  using sqlmux::pool::kWordListen;
  using sqlmux::pool::kWordSetConfig;
  using sqlmux::pool::kWordState;
  using sqlmux::pool::scan_words;
  CHECK(scan_words("SELECT abalance FROM pgbench_accounts WHERE aid = 1") == 0);
  CHECK(scan_words("LISTEN jobs") == kWordListen);
  CHECK(scan_words("unlisten *") == kWordListen);
  CHECK(scan_words("SELECT pg_catalog.SET_CONFIG('a', 'b', false)") == kWordSetConfig);
  CHECK(scan_words("CREATE TEMP TABLE t(x int); LISTEN x") == (kWordState | kWordListen));
  CHECK(scan_words("SELECT listener, my_set_config, set_configs, listens") == 0);
  CHECK(scan_words("SELECT pg_advisory_lock(1), set_config('x', '1', false)") ==
        (kWordState | kWordSetConfig));
  // Words across the 16-byte blocks, at the very end, and long ones.
  CHECK(scan_words("SELECT aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa, 1; LISTEN") ==
        kWordListen);
  CHECK(scan_words("SELECT 123456789, x.y_z FROM t WHERE temp") == kWordState);
  CHECK(scan_words("SELECT x FROM y WHERE z = 1 AND Pg_Advisory_Xact_Lock(2)") == kWordState);
  CHECK(scan_words("SELECT \xc3\xa9temp, t\xc3\xa9mp, tempo, temp$, $temp") == 0);
}

TEST_CASE("session pins: scan_words agrees with its byte-at-a-time reference", "[pins]") {
  // Random texts over an alphabet of identifier and separator bytes, of
  // every length around the 16-byte blocks, with the words sprinkled in.
  const std::string words[] = {"temp",      "TEMPORARY",  "hold",    "listen",
                               "UnListen",  "set_config", "x",       "pg_advisory_lock",
                               "advisory_", "tem",        "listens", "\xc3\xa9",
                               "123",       "a$b",        "_",       "settings"};
  const std::string seps[] = {" ", ",", "(", ")", "'", "\"", ".", ";", "\n", "-", "\x80", "\xff"};
  uint64_t state = 88172645463325252ull;
  auto next = [&] {
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    return state;
  };
  for (int round = 0; round < 20000; ++round) {
    std::string text;
    const size_t target = next() % 70;
    while (text.size() < target) {
      text += (next() % 2) != 0 ? words[next() % std::size(words)] : seps[next() % std::size(seps)];
    }
    INFO(text);
    REQUIRE(sqlmux::pool::scan_words(text) == sqlmux::pool::scan_words_reference(text));
    for (size_t cut = 0; cut < text.size(); cut += 7) {
      const std::string_view part = std::string_view(text).substr(cut);
      REQUIRE(sqlmux::pool::scan_words(part) == sqlmux::pool::scan_words_reference(part));
    }
  }
}

TEST_CASE("session pins: advisory_ anywhere in a word, in any case", "[pins]") {
  // Words over the letters of "advisory_" (no other state word can form):
  // scan_words finds the state exactly when the lower-cased word contains
  // "advisory_" (an independent check of its integer compare).
  const char alphabet[] = "adviSORY_x";
  uint64_t state = 0x9e3779b97f4a7c15ull;
  auto next = [&] {
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    return state;
  };
  int found = 0;
  for (int round = 0; round < 20000; ++round) {
    std::string word;
    const size_t len = 9 + next() % 24;
    while (word.size() < len) word += alphabet[next() % (sizeof alphabet - 1)];
    if (next() % 4 == 0)
      word.insert(next() % (word.size() - 8), (next() % 2) != 0 ? "ADVISORY_" : "advisory_");
    std::string lower = word;
    for (char& c : lower) c = static_cast<char>(c >= 'A' && c <= 'Z' ? c + 32 : c);
    const bool expect = lower.find("advisory_") != std::string::npos;
    found += expect ? 1 : 0;
    INFO(word);
    REQUIRE(((sqlmux::pool::scan_words("SELECT " + word + "(1)") & sqlmux::pool::kWordState) !=
             0) == expect);
  }
  REQUIRE(found > 1000);
  CHECK(may_hold_state("SELECT xxxxxxxxAdViSoRy_"));
  CHECK(may_hold_state("SELECT advisory__"));
  CHECK_FALSE(may_hold_state("SELECT advisoryx_ advisory"));
  CHECK_FALSE(may_hold_state("SELECT _advisory"));
}
