// PostgreSQL session state that cannot move between server connections in
// transaction mode, and so pins a client to its connection (README "What
// pooling does not hide"). PostgreSQL reports none of it, so sqlmux asks the
// server at the end of a transaction that may have created or dropped some:
// a cheap sniff of the client's SQL text and of command tags decides when to
// ask (may_hold_state, tag_may_change_state); the answer is one row of
// kStateQuery, read by pins_from_row. Pure: no sockets, no clocks.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace sqlmux::pool {

// Why a client holds its server connection between transactions; bits.
enum class PgPin : uint8_t {
  TempTable = 1,     // a temporary table, view or sequence exists
  SqlPrepare = 2,    // a statement from SQL PREPARE exists
  HoldCursor = 4,    // a cursor declared WITH HOLD is open
  AdvisoryLock = 8,  // a session-level advisory lock is held
  Listen = 16,       // LISTEN (until notifications are fanned out)
};
inline constexpr int kPgPinKinds = 5;

// "temp_table", "sql_prepare", "hold_cursor", "advisory_lock", "listen":
// the names of metrics labels and of SHOW CLIENTS' pinned column.
[[nodiscard]] std::string_view to_string(PgPin p);
// The set bits of `pins` as a comma-separated list of names ("" for none).
[[nodiscard]] std::string pins_to_string(uint8_t pins);
// The index of p in 0..kPgPinKinds-1 (metrics arrays).
[[nodiscard]] int pin_index(PgPin p);

// One pass over a client's SQL text, for the three things sqlmux looks
// for in it (bits): a word that may make or end pinning state (see
// may_hold_state), the word LISTEN or UNLISTEN (pool/pg/listen.h), the
// word set_config (pool/pg/prepared.h find_set_config). Words are compared
// in any case; quotes and comments are not skipped (a false positive costs
// one closer look).
enum : uint8_t { kWordState = 1, kWordListen = 2, kWordSetConfig = 4 };
[[nodiscard]] uint8_t scan_words(std::string_view sql);
// The same, one byte at a time (what scan_words does on CPUs without SSE2):
// the reference the unit tests and the fuzzer compare scan_words with.
[[nodiscard]] uint8_t scan_words_reference(std::string_view sql);

// Whether a client's SQL text may create or end pinning state: it has the
// word temp or temporary (CREATE TEMP TABLE, SELECT INTO TEMP, DISCARD
// TEMP) or hold (DECLARE ... WITH HOLD), or advisory_ (pg_advisory_lock,
// pg_try_advisory_lock_shared, pg_advisory_unlock_all, ...), in any case.
// False positives cost one check query; false negatives are what the
// statement tags catch.
[[nodiscard]] bool may_hold_state(std::string_view sql);

// Whether a completed command's tag may have created or ended pinning
// state: PREPARE, DEALLOCATE, DISCARD, CREATE/DROP TABLE, VIEW, SEQUENCE,
// CLOSE CURSOR.
[[nodiscard]] bool tag_may_change_state(std::string_view tag);

// Run by sqlmux between transactions; one row of four booleans ('t'/'f'),
// in the order of PgPin's first four values.
inline constexpr std::string_view kStateQuery =
    "SELECT pg_catalog.pg_my_temp_schema() <> 0 AND EXISTS (SELECT 1 FROM pg_catalog.pg_class "
    "WHERE relnamespace = pg_catalog.pg_my_temp_schema()), "
    "EXISTS (SELECT 1 FROM pg_catalog.pg_prepared_statements WHERE from_sql), "
    "EXISTS (SELECT 1 FROM pg_catalog.pg_cursors WHERE is_holdable), "
    "EXISTS (SELECT 1 FROM pg_catalog.pg_locks WHERE locktype = 'advisory' AND pid = "
    "pg_catalog.pg_backend_pid() AND granted)";

// The pins a kStateQuery row says hold; nullopt when the row is not four
// 't'/'f' values.
[[nodiscard]] std::optional<uint8_t> pins_from_row(const std::vector<std::string>& row);

}  // namespace sqlmux::pool
