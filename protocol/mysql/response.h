// MySQL / MariaDB command phase, server side: OK / ERR / EOF packets,
// session-state tracking, column definitions, COM_STMT_PREPARE_OK. The
// ResponseReader that follows whole responses is in reader.h.
//
// Decoders take one whole payload (see packet.h for framing) and the
// negotiated capabilities; they return false on anything they cannot read
// fully and fill `out` only on success. Encoders append a payload.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "protocol/mysql/packet.h"

namespace sqlmux::my {

// --- Session state tracking (OK packets with SERVER_SESSION_STATE_CHANGED) ---

enum class SessionTrack : uint8_t {
  SystemVariables = 0,             // SESSION_TRACK_SYSTEM_VARIABLES: name, value
  Schema = 1,                      // SESSION_TRACK_SCHEMA: the new default database
  StateChange = 2,                 // SESSION_TRACK_STATE_CHANGE: '1' (one raw byte)
  Gtids = 3,                       // SESSION_TRACK_GTIDS: spec byte, gtid set
  TransactionCharacteristics = 4,  // SESSION_TRACK_TRANSACTION_CHARACTERISTICS: SQL
  TransactionState = 5,            // SESSION_TRACK_TRANSACTION_STATE (MariaDB: _TYPE)
};
[[nodiscard]] std::string_view to_string(SessionTrack t);

struct SessionState {
  std::vector<std::pair<std::string, std::string>> system_variables;  // in order, repeats kept
  std::optional<std::string> schema;
  std::optional<bool> state_changed;
  std::optional<std::string> gtids;
  uint8_t gtids_encoding = 0;
  std::optional<std::string> transaction_characteristics;
  // MySQL's 8-character transaction state ("T_______" ...) or, on MariaDB,
  // the same 8-character layout.
  std::optional<std::string> transaction_state;
  size_t unknown_entries = 0;  // entries of other types, skipped

  bool operator==(const SessionState&) const = default;
};

// Parses the session state information (the bytes inside its lenenc
// wrapper): entries of type byte + lenenc data. Unknown types are skipped by
// their length; a known type whose data does not parse makes it false.
[[nodiscard]] bool decode_session_state(std::string_view data, SessionState& out);
// Encodes the entries in MariaDB's order: variables, schema, state change,
// gtids, transaction state, characteristics.
void encode_session_state(std::string& out, const SessionState& s);

// --- OK / ERR / EOF -------------------------------------------------------------

struct OkPacket {
  uint8_t header = 0x00;  // 0x00, or 0xFE for the OK that ends a result set (DEPRECATE_EOF)
  uint64_t affected_rows = 0;
  uint64_t last_insert_id = 0;
  uint16_t status = 0;
  uint16_t warnings = 0;
  std::string info;
  bool has_session_state = false;  // SESSION_TRACK and SERVER_SESSION_STATE_CHANGED
  SessionState session_state;

  bool operator==(const OkPacket&) const = default;
};

// Needs CLIENT_PROTOCOL_41 in caps (sqlmux never negotiates less). With
// CLIENT_SESSION_TRACK the info is lenenc (and may be absent at the end)
// and the session state follows when the status flag says so; without it
// the info is the rest of the packet. 0xFE is accepted as an OK header only
// with CLIENT_DEPRECATE_EOF and a payload shorter than 0xFFFFFF.
[[nodiscard]] bool decode_ok(std::string_view payload, uint64_t caps, OkPacket& out);
// N from an UPDATE's info text "Rows matched: N  Changed: M  Warnings: W"
// (what CLIENT_FOUND_ROWS reports as affected rows); nullopt for any other
// text.
[[nodiscard]] std::optional<uint64_t> rows_matched(std::string_view info);
void encode_ok(std::string& out, const OkPacket& ok, uint64_t caps);
// Only the fixed part (header, affected rows, insert id, status, warnings):
// what a relay needs, without allocating.
[[nodiscard]] bool decode_ok_status(std::string_view payload, uint64_t caps, uint16_t& status,
                                    uint16_t& warnings);

// The ERR code MariaDB uses for progress reports (MARIADB_CLIENT_PROGRESS):
// not an error, and not the end of a response.
inline constexpr uint16_t kProgressReportCode = 0xFFFF;

struct ErrPacket {
  uint16_t code = 0;
  std::string sqlstate;  // 5 characters, or empty when the '#' marker is absent
  std::string message;

  bool operator==(const ErrPacket&) const = default;
};
[[nodiscard]] bool decode_err(std::string_view payload, ErrPacket& out);
// Writes the '#'+SQLSTATE marker when sqlstate is set (5 characters; shorter
// is padded with '0', longer is cut).
void encode_err(std::string& out, const ErrPacket& e);
// An ERR for one of the named codes with its SQLSTATE.
void encode_err(std::string& out, ErrorCode code, std::string_view message);

struct EofPacket {
  uint16_t warnings = 0;
  uint16_t status = 0;
  bool operator==(const EofPacket&) const = default;
};
// 0xFE and fewer than 9 bytes; the 4.1 form has warnings and status.
[[nodiscard]] bool is_eof(std::string_view payload);
[[nodiscard]] bool decode_eof(std::string_view payload, EofPacket& out);
void encode_eof(std::string& out, const EofPacket& e);

// True for a packet that ends a result set's rows: EOF (without
// DEPRECATE_EOF) or OK with 0xFE (with it).
[[nodiscard]] bool is_result_terminator(std::string_view payload, uint64_t caps);

// Converts a result-set terminator between the two styles: EOF (0xFE,
// warnings, status) <-> OK with 0xFE header (no rows, no insert id, same
// status and warnings; info and session state are dropped). False when the
// payload is not a terminator of the `from` style.
[[nodiscard]] bool eof_to_ok_terminator(std::string_view eof_payload, std::string& out);
[[nodiscard]] bool ok_terminator_to_eof(std::string_view ok_payload, uint64_t caps,
                                        std::string& out);

// --- Column definitions and COM_STMT_PREPARE_OK -------------------------------------

struct ColumnDef {
  std::string catalog = "def";
  std::string schema;
  std::string table;
  std::string org_table;
  std::string name;
  std::string org_name;
  std::string extended_metadata;  // MARIADB_CLIENT_EXTENDED_METADATA, raw
  uint16_t charset = 0;
  uint32_t length = 0;
  uint8_t type = 0;  // FieldType
  uint16_t flags = 0;
  uint8_t decimals = 0;
  std::optional<std::string> default_value;  // COM_FIELD_LIST only

  bool operator==(const ColumnDef&) const = default;
};
// Protocol::ColumnDefinition41. caps decides the MariaDB extended metadata.
[[nodiscard]] bool decode_column_def(std::string_view payload, uint64_t caps, ColumnDef& out);
void encode_column_def(std::string& out, const ColumnDef& c, uint64_t caps);
// Rewrites a column (or parameter) definition from the layout `from_caps`
// selects to the one `to_caps` selects, where they differ in
// MARIADB_CLIENT_EXTENDED_METADATA: the extended-metadata field (a lenenc
// string of type byte + lenenc value pairs after org_name) is dropped, or an
// empty one is inserted. Only the six leading strings (and the field) are
// read; what follows is copied. `out` is overwritten. False, with `out`
// unspecified, when those do not parse or when both layouts are the same.
[[nodiscard]] bool reshape_column_def(std::string_view payload, uint64_t from_caps,
                                      uint64_t to_caps, std::string& out);
// Where a column definition's extended-metadata field lies in the layout
// `caps` selects: bytes [at, at + len), its length prefix included; without
// MARIADB_CLIENT_EXTENDED_METADATA len is 0 and `at` is where it would go
// (after org_name). False when the six strings (and the field) do not
// parse. What a relay needs to drop the field without copying it twice.
[[nodiscard]] bool column_def_extended_span(std::string_view payload, uint64_t caps, size_t& at,
                                            size_t& len);

struct PrepareOk {
  uint32_t statement_id = 0;
  uint16_t num_columns = 0;
  uint16_t num_params = 0;
  uint16_t warnings = 0;
  bool operator==(const PrepareOk&) const = default;
};
// 0x00, statement id, columns, params, filler, warnings (12 bytes; a 13th,
// MySQL 8's metadata_follows, is tolerated).
[[nodiscard]] bool decode_prepare_ok(std::string_view payload, PrepareOk& out);
void encode_prepare_ok(std::string& out, const PrepareOk& p);

}  // namespace sqlmux::my
