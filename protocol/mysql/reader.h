// MySQL / MariaDB command phase: a ResponseReader that tells a relay where
// a server response ends (OK / ERR / LOCAL INFILE / result sets, PREPARE
// answers) and what the final status flags are, and a translator between
// the EOF and the OK(0xFE) result-set styles (CLIENT_DEPRECATE_EOF).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "protocol/mysql/packet.h"
#include "protocol/mysql/response.h"

namespace sqlmux::my {

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
