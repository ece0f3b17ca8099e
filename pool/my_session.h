// MySQL session state for transaction pooling, learned from the server's
// session-state tracking (not by parsing SQL): the system variables a
// session changed, and what pins a client to its server connection.
//
// Backends run with session_track_system_variables='*',
// session_track_schema=ON, session_track_state_change=ON and
// session_track_transaction_info='CHARACTERISTICS'. An OK packet then says:
//  - SET time_zone=..., SET NAMES ...: the system variables, with values;
//  - USE db: the schema;
//  - SET @v=1, CREATE TEMPORARY TABLE, PREPARE s FROM ...: only "state
//    changed" - state sqlmux cannot copy to another connection;
//  - SET TRANSACTION ISOLATION LEVEL ...: the pending characteristics.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>

#include "protocol/mysql_response.h"

namespace sqlmux::pool {

struct CharsetInfo {
  std::string charset;    // "utf8mb4"
  std::string collation;  // "utf8mb4_general_ci"
};
// The character set and collation of a handshake's collation id (MariaDB
// 10.11 numbering); nullopt for ids not in the table.
[[nodiscard]] std::optional<CharsetInfo> charset_by_id(uint16_t id);

class MySessionVars {
 public:
  // Records the system variables an OK reported (sqlmux's own
  // session_track_* settings are ignored).
  void apply(const my::SessionState& st);
  // What the server sets for a handshake's character set.
  void set_charset(const CharsetInfo& cs);
  void set(std::string_view name, std::string_view value);
  [[nodiscard]] const std::map<std::string, std::string, std::less<>>& values() const {
    return values_;
  }
  bool operator==(const MySessionVars&) const = default;

 private:
  std::map<std::string, std::string, std::less<>> values_;  // lower-case names
};

// One SET statement that turns a session holding `backend` into one holding
// `client`: differing values are assigned, variables only the backend
// changed go back to DEFAULT. Empty when nothing differs. Names that are
// not plain identifiers never reach the SQL (they are skipped).
[[nodiscard]] std::string restore_statement(const MySessionVars& backend,
                                            const MySessionVars& client);
// A value as a SQL literal: numbers bare, anything else quoted.
[[nodiscard]] std::string sql_literal(std::string_view value);

// Why a client must stay on its server connection.
enum class MyPinReason {
  None,
  UserState,                   // user variables, temporary tables, SQL PREPARE
  TransactionCharacteristics,  // SET TRANSACTION ... for the next transaction
  Cursor,                      // an open cursor (SERVER_STATUS_CURSOR_EXISTS)
  PreparedStatement,           // COM_STMT_PREPARE (statement ids belong to one server)
};
[[nodiscard]] std::string_view to_string(MyPinReason r);
// What an OK packet says about state that cannot move.
[[nodiscard]] MyPinReason pin_reason(const my::OkPacket& ok);

}  // namespace sqlmux::pool
