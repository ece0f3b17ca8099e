// MySQL / MariaDB session state for transaction pooling.
//
// Backends run with session_track_system_variables='*',
// session_track_schema=ON, session_track_state_change=ON and
// session_track_transaction_info='CHARACTERISTICS', so every OK (and, with
// CLIENT_DEPRECATE_EOF, every 0xFE OK that ends a result set) says what a
// statement changed. A client's MySessionVars collect those changes; before
// the client uses another backend, restore_statement() and
// schema_to_restore() say what to run there, and pin_reason() says when a
// session holds state that cannot move (the client then keeps its backend).
//
// What MariaDB 10.11.19 reports (checked with a raw-protocol client with
// DEPRECATE_EOF and SESSION_TRACK -- tests/unit/mysql_session_probe.py
// shows most of it again -- and with libmariadb's mysql_session_track_get_*;
// "1" = SESSION_TRACK_STATE_CHANGE):
//   SET @v=1 (also SET @v=NULL)           "1" only
//   CREATE / DROP TEMPORARY TABLE          "1" only
//   PREPARE s FROM ..., DEALLOCATE PREPARE "1" only
//   SET ROLE NONE                          "1" only
//   SET time_zone='+05:00'                 variable time_zone=+05:00, "1"
//   SET x=DEFAULT                          the variable with the default's value
//                                          (time_zone=SYSTEM), "1"
//   USE db, COM_INIT_DB                    schema, "1"
//   SET NAMES utf8mb4 [COLLATE c]          character_set_client/_connection/
//                                          _results, "1" -- never collation_connection,
//                                          though it changes (to c, or the charset's default)
//   SET collation_connection=c             collation_connection only, though
//                                          character_set_connection changes too
//   SET character_set_results=NULL         character_set_results='' (empty value)
//   SET autocommit=0                       autocommit=OFF, "1"
//   SET SESSION TRANSACTION ISOLATION ...  tx_isolation=READ-COMMITTED, "1" (MariaDB
//                                          10.11 has no transaction_isolation variable)
//   SET TRANSACTION ISOLATION LEVEL ...    transaction characteristics
//                                          "SET TRANSACTION ISOLATION LEVEL READ COMMITTED;"
//                                          and nothing else; the transaction (or autocommit
//                                          statement) that consumes it reports
//                                          characteristics '' (or starts IN_TRANS)
//   BEGIN / START TRANSACTION ...          state "T_______", characteristics
//                                          "START TRANSACTION;" (non-empty inside a
//                                          transaction); COMMIT: "________" and ''
//   LOCK TABLES t READ                     transaction state "_______L" and no "1";
//                                          UNLOCK TABLES (or BEGIN): state without 'L'
//   COM_STMT_EXECUTE with a cursor         the metadata ends with SERVER_STATUS_CURSOR_EXISTS;
//                                          the FETCH that ends it: SERVER_STATUS_LAST_ROW_SENT
//   CALL p() (p sets time_zone)            time_zone, schema '' (no database), "1"
//   DROP DATABASE <current>                schema '' and SERVER_STATUS_DB_DROPPED
//   SET insert_id / timestamp / rand_seed1 / gtid_seq_no / last_insert_id
//                                          the variable, "1"; SET timestamp=DEFAULT reports
//                                          the current time as its value
// Reported as nothing at all (no flag, no entry), so not seen by sqlmux:
//   SELECT GET_LOCK('x',1) / DO GET_LOCK   (a named lock stays with the backend)
//   HANDLER t OPEN                         (an open handler stays with the backend)
//   SELECT @x:=1, DO @x:=1, SELECT 1 INTO @w (user variables set in expressions)
//   COM_STMT_PREPARE, NEXTVAL(), LAST_INSERT_ID(7)
// Traps:
//   - SET STATEMENT time_zone='+01:00' FOR <stmt> reports time_zone=+01:00
//     although the session's value does not change: callers should not
//     apply() the variables of such a statement (is_set_statement()).
//   - SET @v=1, time_zone='+01:00' reports the variable and "1": the user
//     variable is indistinguishable from the "1" every SET reports, so it is
//     not pinned (only a "1" with no variable and no schema is).
//   - Without CLIENT_DEPRECATE_EOF a result set ends with an EOF, which
//     carries SERVER_SESSION_STATE_CHANGED but not the state itself (so
//     libmariadb, which does not negotiate DEPRECATE_EOF, never sees it):
//     backend connections need DEPRECATE_EOF to learn what a SELECT changed.
//   - COM_RESET_CONNECTION answers a plain OK with no session state; it resets
//     variables to the global values (session_track_* included: sqlmux must
//     set its trackers again) but keeps the schema and the handshake charset.
//   - SET character_set_client=DEFAULT sets the server's global value
//     (latin1 on a default server), not the charset the handshake chose, and
//     likewise for the other charset variables: both sides' vars should be
//     seeded with set_charset() so that restore_statement() assigns them.
//   - Column definitions carry character_set_results' collation: the
//     handshake's (224 for a utf8mb4_unicode_ci client) or SET NAMES x
//     COLLATE y's; SET character_set_results=x gives x's default, and
//     collation_connection does not touch it (results_collation).
//   - A '*' tracker and a list report the same variables in different
//     orders (the server's hash order, which changes between server runs).
//   - A handshake collation id the server does not know gives the global
//     charset (so does 255, MySQL 8's utf8mb4_0900_ai_ci, which MySQL 8
//     clients send: leave such a client's charset variables unset, and
//     restore_statement() sets them =DEFAULT); ucs2/utf16/utf16le/utf32
//     make it refuse the login (ERR 1231).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "protocol/mysql/response.h"

namespace sqlmux::pool {

// --- Character sets ---------------------------------------------------------

struct CharsetInfo {
  std::string_view charset;    // "utf8mb4"
  std::string_view collation;  // "utf8mb4_general_ci"
  bool is_default = false;     // the charset's default collation
  bool operator==(const CharsetInfo&) const = default;
};

// A handshake's collation id (MariaDB 10.11: every id 1..255 in
// information_schema.COLLATIONS); nullopt for an id the server does not know.
[[nodiscard]] std::optional<CharsetInfo> charset_by_id(uint16_t id);
// "utf8mb4" -> "utf8mb4_general_ci"; nullopt for an unknown charset.
[[nodiscard]] std::optional<std::string_view> default_collation(std::string_view charset);
// The charset a collation belongs to: its name up to the first '_'
// ("binary" for binary); true of every MariaDB 10.11 collation.
[[nodiscard]] std::string_view charset_of_collation(std::string_view collation);
// False for ucs2, utf16, utf16le and utf32, which a client cannot use.
[[nodiscard]] bool usable_as_client_charset(std::string_view charset);

// --- Session variables ------------------------------------------------------

// System variables sqlmux cannot carry to another backend because they act
// once or reflect the connection's own history (insert_id, last_insert_id,
// rand_seed1, rand_seed2, gtid_seq_no, timestamp): apply() skips them and
// pin_reason() pins the session instead.
[[nodiscard]] bool is_one_shot_variable(std::string_view name);

// True when the query's first statement is MariaDB's
// "SET STATEMENT var=value[, ...] FOR <statement>" (leading spaces and
// comments skipped, any case): the server reports the per-statement values
// as if the session had changed, so the caller must not apply() them.
[[nodiscard]] bool is_set_statement(std::string_view query);

// The collation of "SET NAMES cs COLLATE coll" when that is how the query's
// first statement starts (names bare or quoted, any case; lowercased), else
// nullopt. The server does not report collation_connection for it, so the
// caller sets it after apply(): vars.set("collation_connection", *coll).
[[nodiscard]] std::optional<std::string> set_names_collation(std::string_view query);

// The system variables and schema a session has changed from a fresh
// backend's values: names lowercased, values as the server reports them.
class MySessionVars {
 public:
  using Map = std::map<std::string, std::string, std::less<>>;

  // The default database; nullopt = none. Kept apart from the variables
  // (restored with COM_INIT_DB, see schema_to_restore()).
  std::optional<std::string> schema;
  // The collation character_set_results carries, which column definitions
  // report: the handshake's (utf8mb4_unicode_ci for id 224), SET NAMES'
  // COLLATE, else the charset's default. The server never reports it; only
  // SET NAMES ... COLLATE sets it to a non-default one (restore_statement).
  std::optional<std::string> results_collation;

  // Records a session-state report: every system variable (except the
  // one-shot ones; session_track_* are the client's own settings, never
  // restored: see filter_for_client()), and the schema (an empty name means
  // no database). Keeps the connection charset
  // consistent: character_set_connection reported without
  // collation_connection sets the collation to the charset's default (not
  // right after SET NAMES x COLLATE y, whose collation the server does not
  // report: see set_names_collation()); collation_connection alone sets
  // character_set_connection. Not for the report of a restore statement:
  // after one succeeds the backend's variables are the client's (copy
  // them), whereas its report gives each =DEFAULT as an explicit value.
  void apply(const my::SessionState& s);
  // What the server sets for a handshake's charset: character_set_client,
  // character_set_connection and character_set_results = charset,
  // collation_connection = collation. Call it for a client's handshake and
  // for the backend's own (see the note on =DEFAULT above).
  void set_charset(const CharsetInfo& cs);

  void set(std::string_view name, std::string_view value);  // name lowercased
  void erase(std::string_view name);
  [[nodiscard]] const std::string* find(std::string_view name) const;
  [[nodiscard]] const Map& vars() const { return vars_; }
  [[nodiscard]] bool empty() const { return vars_.empty() && !schema; }
  // Back to a fresh backend (after COM_RESET_CONNECTION the variables are
  // the global ones again; the schema stays, so it is left as is).
  void clear_vars() {
    vars_.clear();
    results_collation.reset();
  }
  // Drops the session_track_* variables; true when there were any.
  bool erase_tracking_vars();

  bool operator==(const MySessionVars&) const = default;

 private:
  Map vars_;
};

// One statement that turns a backend session whose changes are `backend`
// into one whose changes are `client`, or "" when the variables agree:
//   SET SESSION character_set_client='utf8mb4', time_zone='+05:00', sql_select_limit=100,
//   long_query_time=1.000000, sql_mode=DEFAULT
// Variables the client has with another value are assigned; variables only
// the backend changed go back with =DEFAULT (the global value). The charset
// variables come first (client, connection, results, collation), and
// collation_connection is assigned after character_set_connection whenever
// that is, so it is not left at the charset's default. Numbers (-?digits
// with an optional .digits) are written bare, an empty
// character_set_results as NULL, anything else as a quoted literal ('
// doubled, \ doubled unless no_backslash_escapes, i.e. the backend's
// status has SERVER_STATUS_NO_BACKSLASH_ESCAPES). Names other than [a-z0-9_]{1,64}
// are left out and appended to `skipped`; they never reach SQL. The schema
// and session_track_* (sqlmux's own on a backend) are not part of it. When
// the results collation must change and assigning character_set_results
// would not give it (a non-default collation, or the same charset), the
// statement starts with "SET NAMES 'cs' COLLATE 'coll'" (the one way to set
// it) and continues with ", name=value" items from what that leaves.
[[nodiscard]] std::string restore_statement(const MySessionVars& backend,
                                            const MySessionVars& client,
                                            std::vector<std::string>* skipped = nullptr,
                                            bool no_backslash_escapes = false);

// The schema to send with COM_INIT_DB so that the backend's default
// database becomes the client's; nullopt when they are equal, and also when
// the client has none and the backend has one: MySQL cannot unselect a
// database (COM_INIT_DB needs a name; COM_RESET_CONNECTION keeps it), so the
// caller must not hand such a backend to that client (can_restore_schema()).
[[nodiscard]] std::optional<std::string> schema_to_restore(
    const std::optional<std::string>& backend, const std::optional<std::string>& client);
// False only for a backend with a schema and a client without one.
[[nodiscard]] bool can_restore_schema(const std::optional<std::string>& backend,
                                      const std::optional<std::string>& client);

// How to read the session-state reports of one client command.
struct SessionReport {
  // SET STATEMENT ... FOR: the variables reported are the statement's own.
  bool set_statement = false;
  // SET NAMES x COLLATE y: the collation the server does not report.
  std::optional<std::string> names_collation;
};
// Applies what an OK reported to a session's variables, as `how` says.
void apply_report(MySessionVars& vars, const my::OkPacket& ok, const SessionReport& how);

// --- What a client's own trackers report ----------------------------------

// A client's session-state tracking: its session_track_* values in `vars`,
// else MariaDB's defaults (system variables autocommit,
// character_set_client, character_set_connection, character_set_results,
// time_zone; schema ON; state change OFF; transaction info OFF).
struct ClientTracking {
  std::string system_variables;  // "*" or a comma-separated list
  bool schema = true;
  bool state_change = false;
  bool transaction_state = false;            // STATE or CHARACTERISTICS
  bool transaction_characteristics = false;  // CHARACTERISTICS
};
[[nodiscard]] ClientTracking client_tracking(const MySessionVars& vars);

// Keeps in `ok` only the session-state records a direct connection with
// those settings would send (a backend tracks everything for sqlmux), and
// drops SERVER_SESSION_STATE_CHANGED when none is left. True when `ok`
// changed.
bool filter_for_client(my::OkPacket& ok, const ClientTracking& t);
// An EOF's SERVER_SESSION_STATE_CHANGED comes without the state (backends
// use EOF packets), so what changed is unknown: kept for a client that
// tracks the transaction state (what a query usually changes, e.g. the
// first read in a transaction), dropped for others.
[[nodiscard]] bool keep_eof_state_flag(const ClientTracking& t);

// --- Pinning ----------------------------------------------------------------

enum class PinReason : uint8_t {
  None,
  // "1" with no variable and no schema (user variables, temporary tables,
  // SQL PREPARE, SET ROLE), or a one-shot variable: state that cannot move.
  UserState,
  // Transaction state with 'L' (LOCK TABLES).
  LockTables,
  // Characteristics reported outside a transaction: a one-shot
  // SET TRANSACTION waits for the next transaction on this backend.
  TransactionCharacteristics,
  // SERVER_STATUS_CURSOR_EXISTS: a COM_STMT_EXECUTE opened a cursor.
  Cursor,
};
[[nodiscard]] std::string_view to_string(PinReason r);

// Why the session must stay on its backend after this OK (or the 0xFE OK /
// EOF status that ends a result set), or None. With several, the first in
// the order above (UserState lasts until the connection ends).
[[nodiscard]] PinReason pin_reason(const my::OkPacket& ok);

// Whether this OK ends a pin of that reason: LockTables when the
// transaction state has no 'L'; TransactionCharacteristics when the
// characteristics are reported empty or a transaction is open (it consumed
// them, and holds the backend itself); Cursor on SERVER_STATUS_LAST_ROW_SENT
// (the FETCH that exhausted that statement's cursor: cursors are per
// statement, and COM_STMT_RESET / COM_STMT_CLOSE / a new EXECUTE of the
// statement close one too, which the caller sees itself). Never UserState.
[[nodiscard]] bool pin_released(PinReason r, const my::OkPacket& ok);

}  // namespace sqlmux::pool
