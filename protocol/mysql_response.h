// MySQL / MariaDB command phase, server side: OK / ERR / EOF packets,
// session-state tracking, column definitions, COM_STMT_PREPARE_OK, and a
// ResponseReader that tells a relay where a server response ends and what
// the final status flags are.
//
// Decoders take one whole payload (see mysql_packet.h for framing) and the
// negotiated capabilities; they return false on anything they cannot read
// fully and fill `out` only on success. Encoders append a payload.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "protocol/mysql_packet.h"

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

// --- Response reader -----------------------------------------------------------------

// What command a response answers.
enum class ResponseKind {
  Query,       // COM_QUERY: OK / ERR / LOCAL INFILE / text result sets, possibly several
  Execute,     // COM_STMT_EXECUTE: OK / ERR / binary result sets (with a cursor: metadata)
  Fetch,       // COM_STMT_FETCH: binary rows and a terminator, or ERR
  Prepare,     // COM_STMT_PREPARE: PREPARE_OK, parameter and column definitions, or ERR
  FieldList,   // COM_FIELD_LIST: column definitions and EOF, or ERR
  Simple,      // exactly one OK, ERR or EOF (PING, INIT_DB, RESET_CONNECTION, SET_OPTION ...)
  Statistics,  // COM_STATISTICS: one string packet
};
[[nodiscard]] std::string_view to_string(ResponseKind k);
// The response kind of a command byte; false for commands without one
// (QUIT, STMT_CLOSE, STMT_SEND_LONG_DATA) or that sqlmux does not relay this
// way (CHANGE_USER, replication).
[[nodiscard]] bool response_kind_for(uint8_t command, ResponseKind& out);

// What the packet just fed was.
enum class PacketRole {
  Ok,           // OK ending a result (or the whole response)
  Err,          // ERR: ends the response
  Progress,     // MariaDB progress report (ERR 0xFFFF): ignore
  LocalInfile,  // 0xFB + file name: the client sends the file, then the server answers
  ColumnCount,  // start of a result set
  ColumnDef,    // column (or, for PREPARE, parameter) definition
  ParamDef,     // PREPARE: parameter definition
  MetadataEof,  // EOF after definitions (no DEPRECATE_EOF)
  Row,          // text or binary row
  Terminator,   // EOF or OK(0xFE) after the rows
  PrepareOk,    // COM_STMT_PREPARE_OK
  Eof,          // EOF answering a Simple command (SET_OPTION)
  Text,         // COM_STATISTICS string
};
[[nodiscard]] std::string_view to_string(PacketRole r);

enum class Step {
  More,         // more packets of this response follow
  Done,         // the response is complete
  LocalInfile,  // the client must now send the file (ending with an empty packet);
                // then the server's packets go on (feed them here)
  Malformed,    // not a valid response; the reader stays failed
};
[[nodiscard]] std::string_view to_string(Step s);

// Follows one server response packet by packet (logical payloads, in
// order). `caps` are the capabilities negotiated on the backend connection
// (DEPRECATE_EOF, PROTOCOL_41, SESSION_TRACK, MariaDB progress); sqlmux
// must not negotiate OPTIONAL_RESULTSET_METADATA, QUERY_ATTRIBUTES or
// MARIADB_CLIENT_CACHE_METADATA, which change the layout. `status` is the
// connection's last known status flags (kept until a packet updates them).
class ResponseReader {
 public:
  ResponseReader(ResponseKind kind, uint64_t caps, uint16_t status = 0);

  [[nodiscard]] Step feed(std::string_view payload);

  [[nodiscard]] ResponseKind kind() const { return kind_; }
  [[nodiscard]] PacketRole role() const { return role_; }
  [[nodiscard]] bool done() const { return state_ == State::Done; }
  [[nodiscard]] bool failed() const { return state_ == State::Failed; }
  // The latest status flags (from OK, EOF or a terminator).
  [[nodiscard]] uint16_t status() const { return status_; }
  [[nodiscard]] bool in_transaction() const { return (status_ & status::kInTrans) != 0; }
  [[nodiscard]] uint16_t warnings() const { return warnings_; }
  // Set when the response ended with ERR.
  [[nodiscard]] const std::optional<ErrPacket>& error() const { return error_; }
  [[nodiscard]] const PrepareOk& prepare_ok() const { return prepare_ok_; }
  [[nodiscard]] uint64_t column_count() const { return columns_; }
  [[nodiscard]] size_t result_sets() const { return result_sets_; }
  [[nodiscard]] uint64_t rows() const { return rows_; }  // over all result sets
  // The packet just fed was the last definition of a block (parameters or
  // columns) where an EOF follows without DEPRECATE_EOF.
  [[nodiscard]] bool last_definition() const { return last_definition_; }
  // The packet just fed is the first after a result set's column
  // definitions under DEPRECATE_EOF (a row, or the terminator).
  [[nodiscard]] bool first_after_metadata() const { return first_after_metadata_; }
  // The packet just fed ended a result set (terminator, or the metadata EOF
  // of a cursor) or a response.
  [[nodiscard]] bool ended_result() const { return ended_result_; }
  [[nodiscard]] uint64_t caps() const { return caps_; }

 private:
  enum class State {
    Start,       // first packet of a response or of the next result
    Columns,     // column definitions
    ColumnsEof,  // the EOF after them
    Rows,
    Params,  // PREPARE: parameter definitions
    ParamsEof,
    FieldList,
    Done,
    Failed,
  };
  Step fail();
  Step finish_result(uint16_t status);
  Step start_packet(std::string_view payload, uint8_t first);
  Step after_columns();
  Step after_params();

  ResponseKind kind_;
  uint64_t caps_;
  bool deprecate_eof_;
  State state_;
  PacketRole role_ = PacketRole::Ok;
  uint16_t status_;
  uint16_t warnings_ = 0;
  std::optional<ErrPacket> error_;
  PrepareOk prepare_ok_;
  uint64_t columns_ = 0;
  uint64_t remaining_ = 0;
  size_t result_sets_ = 0;
  uint64_t rows_ = 0;
  bool last_definition_ = false;
  bool first_after_metadata_ = false;
  bool ended_result_ = false;
  bool awaiting_first_row_ = false;
};

// Upper bound on a result's column count (MySQL and MariaDB allow 4096
// columns per table; a SELECT list is bounded similarly).
inline constexpr uint64_t kMaxColumns = 65535;

// Rewrites the packet the reader was just fed for a client whose
// CLIENT_DEPRECATE_EOF differs from the backend's (`reader.caps()`).
// Returns false when the packet goes to the client unchanged; otherwise
// `out` holds the payloads to send instead (possibly none: drop it). A relay
// that changes the packet count renumbers the sequence ids it sends.
//  - backend EOF-style, client DEPRECATE_EOF: the metadata EOF is dropped (or,
//    for a cursor, becomes the OK terminator); EOF terminators become OK(0xFE).
//  - backend DEPRECATE_EOF, client EOF-style: an EOF goes before the first
//    packet after the column definitions (after the last definition for
//    PREPARE); OK(0xFE) terminators become EOF.
[[nodiscard]] bool translate_for_client(const ResponseReader& reader, std::string_view payload,
                                        bool client_deprecate_eof, std::vector<std::string>& out);

}  // namespace sqlmux::my
