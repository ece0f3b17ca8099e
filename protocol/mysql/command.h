// MySQL / MariaDB command phase, client side: the command packets a proxy
// reads or writes (COM_QUERY, COM_INIT_DB, COM_STMT_*), COM_STMT_EXECUTE
// parsing enough to remember and resend parameter types, and in-place
// statement-id rewriting.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "protocol/mysql/packet.h"

namespace sqlmux::my {

// A command with a string argument (COM_QUERY, COM_INIT_DB,
// COM_STMT_PREPARE, COM_FIELD_LIST's table...): the command byte and the
// rest of the payload. False for an empty payload.
[[nodiscard]] bool decode_command(std::string_view payload, uint8_t& command,
                                  std::string_view& arg);
void encode_command(std::string& out, Command c, std::string_view arg = {});

// COM_STMT_EXECUTE flags (cursor type).
namespace cursor {
inline constexpr uint8_t kNoCursor = 0x00;
inline constexpr uint8_t kReadOnly = 0x01;
inline constexpr uint8_t kForUpdate = 0x02;
inline constexpr uint8_t kScrollable = 0x04;
}  // namespace cursor

// MariaDB: COM_STMT_EXECUTE with this id runs the statement prepared last
// on the connection (pipelined prepare + execute).
inline constexpr uint32_t kLastPreparedStatement = 0xFFFFFFFF;

// A parameter type as sent with new-params-bound: the MYSQL_TYPE_* byte and
// a flag byte (0x80 = unsigned).
struct ParamType {
  uint8_t type = 0;
  uint8_t flags = 0;
  bool operator==(const ParamType&) const = default;
};
inline constexpr uint8_t kParamUnsigned = 0x80;

struct StmtExecute {
  uint32_t statement_id = 0;
  uint8_t flags = 0;
  uint32_t iterations = 1;
  std::string null_bitmap;  // (num_params + 7) / 8 bytes
  bool new_params_bound = false;
  std::vector<ParamType> types;  // num_params entries when new_params_bound
  std::string values;            // the parameter values, not parsed

  bool operator==(const StmtExecute&) const = default;
};

// Offsets in the payload of COM_STMT_EXECUTE.
inline constexpr size_t kStatementIdOffset = 1;
inline constexpr size_t kExecuteHeadLen = 10;  // command, id, flags, iterations

// Parses a COM_STMT_EXECUTE for a statement with num_params parameters (the
// caller knows it from PREPARE_OK). With no parameters the packet ends after
// the iteration count. Bits of the null bitmap past num_params must be 0.
[[nodiscard]] bool decode_stmt_execute(std::string_view payload, uint16_t num_params,
                                       StmtExecute& out);
void encode_stmt_execute(std::string& out, const StmtExecute& e);

// An EXECUTE that sent no types (new-params-bound 0: "same as last time")
// turned into one that binds `types` (remembered from an earlier EXECUTE),
// for a backend connection that has not seen them. `out` is the new
// payload; an EXECUTE that already binds types, or has no parameters, is
// copied as is. False when the payload does not parse or types has the
// wrong size.
[[nodiscard]] bool bind_param_types(std::string_view payload, uint16_t num_params,
                                    const std::vector<ParamType>& types, std::string& out);

// True for the commands whose payload starts with a 4-byte statement id:
// STMT_EXECUTE, STMT_CLOSE, STMT_RESET, STMT_SEND_LONG_DATA, STMT_FETCH
// (and MariaDB's STMT_BULK_EXECUTE).
[[nodiscard]] bool has_statement_id(uint8_t command);
// The statement id of such a command.
[[nodiscard]] bool statement_id_of(std::string_view payload, uint32_t& id);
// Replaces the statement id in place (p = start of the payload, which for a
// multi-chunk packet is the first chunk's: the id is in its first 5 bytes).
[[nodiscard]] bool rewrite_statement_id(uint8_t* payload, size_t n, uint32_t new_id);
[[nodiscard]] bool rewrite_statement_id(std::string& payload, uint32_t new_id);

void encode_stmt_close(std::string& out, uint32_t id);
void encode_stmt_reset(std::string& out, uint32_t id);
void encode_stmt_fetch(std::string& out, uint32_t id, uint32_t rows);
void encode_stmt_send_long_data(std::string& out, uint32_t id, uint16_t param,
                                std::string_view data);

}  // namespace sqlmux::my

namespace sqlmux::my {

// --- statements a proxy answers itself ---------------------------------------

// A KILL statement (COM_QUERY text): `KILL [HARD|SOFT] [CONNECTION|QUERY]
// <id>`, the id a decimal number or CONNECTION_ID(), an optional `;` at
// the end; comments (/* */, -- , #) and whitespace between the words.
enum class KillParse {
  NotKill,      // the first word is not KILL
  Kill,         // one of the forms above: `kill` is set
  Unsupported,  // KILL in another form (KILL USER x, KILL QUERY ID n, an expression)
};
struct KillStatement {
  bool query_only = false;  // KILL QUERY (else the connection)
  bool own = false;         // the id is CONNECTION_ID()
  uint64_t id = 0;          // the thread id (unless own)
  bool operator==(const KillStatement&) const = default;
};
[[nodiscard]] KillParse parse_kill(std::string_view sql, KillStatement& kill);

// `SELECT CONNECTION_ID() [[AS] alias] [;]` (any case, comments and
// whitespace between the words): `out` is the same statement with the call
// replaced by the literal `id` (named as the call was written unless an
// alias names it). False for any other statement.
[[nodiscard]] bool rewrite_connection_id(std::string_view sql, uint32_t id, std::string& out);

}  // namespace sqlmux::my
