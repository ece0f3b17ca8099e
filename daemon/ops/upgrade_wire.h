// The messages of an online upgrade (README "Upgrade procedure"), as bytes:
// pure, no sockets. The running process offers its listening sockets to
// `sqlmux --upgrade` on [server] upgrade_socket (a SOCK_SEQPACKET unix
// socket, one message per packet):
//
//   old -> new  "sqlmux-handover 1\n" then one line per descriptor passed
//               with the packet (SCM_RIGHTS, in the same order):
//               "<kind> <protocol> <address>\n", kind listener, admin,
//               metrics or upgrade, protocol postgres or mysql (listeners)
//               or "-", address as the configuration writes it
//   new -> old  "go <pid>\n": the new process serves on them; hand over
//   old -> new  "done <pid>\n": the old process no longer accepts
//
// Then, for clients idle between transactions in a transaction or
// statement pool (README "Upgrade procedure"), on the same connection:
//
//   old -> new  one client per packet, its socket attached: a PostgreSQL
//               client's "sqlmux-client 1\n", a MySQL client's
//               "sqlmux-myclient 1\n", then a binary record (ClientState:
//               strings are a u32 length and bytes, integers big-endian)
//   new -> old  "adopted <id>\n" (the new process serves it: the old one
//               closes its copy) or "refused <id>\n" (the old one keeps
//               serving it)
//   old -> new  "end\n": no more clients
//
// A packet comes from another process: decoding never trusts it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace sqlmux::upgrade {

enum class SocketKind { Listener, Admin, Metrics, Upgrade };
[[nodiscard]] std::string_view to_string(SocketKind k);

struct SocketDesc {
  SocketKind kind = SocketKind::Listener;
  std::string protocol;  // "postgres" or "mysql" for a listener, else "-"
  std::string address;   // config::Address::text
  bool operator==(const SocketDesc&) const = default;
};

// SCM_RIGHTS carries at most 253 descriptors per message; sqlmux passes
// its listeners, the console's, the metrics' and the upgrade socket.
constexpr size_t kMaxSockets = 64;
constexpr size_t kMaxAddress = 512;
constexpr size_t kMaxMessage = 65536;

enum class WireError {
  None,
  BadHeader,     // not "sqlmux-handover 1"
  BadLine,       // a line is not "<kind> <protocol> <address>"
  BadKind,       // an unknown kind or protocol
  TooMany,       // more than kMaxSockets lines
  CountMismatch  // not one line per descriptor received
};
[[nodiscard]] std::string_view to_string(WireError e);

// The offer for `socks`; empty when one cannot be written (too many, an
// address with a newline or NUL, or longer than kMaxAddress).
[[nodiscard]] std::string encode_offer(const std::vector<SocketDesc>& socks);
// Parses an offer that came with `fds` descriptors into `out`.
[[nodiscard]] WireError decode_offer(std::string_view msg, size_t fds,
                                     std::vector<SocketDesc>& out);

// "go <pid>\n" / "done <pid>\n".
[[nodiscard]] std::string encode_go(int32_t pid);
[[nodiscard]] std::string encode_done(int32_t pid);
// The pid of a "go" / "done" message; 0 when `msg` is not one.
[[nodiscard]] int32_t decode_go(std::string_view msg);
[[nodiscard]] int32_t decode_done(std::string_view msg);

// ---- Idle clients handed over ----

// The protocol state of a logged-in client between transactions: what the
// new process needs to serve its next query as if it had logged in there.
// A PostgreSQL client's record has the fields up to `statements`; a MySQL
// client's (`mysql` set) the first four and MyClientState.
struct ClientParam {
  std::string name;
  std::string value;
  bool reported = false;  // the server reports it via ParameterStatus
  bool operator==(const ClientParam&) const = default;
};
struct ClientStatement {
  std::string name;  // the client's statement name (not empty)
  std::string query;
  std::vector<uint32_t> param_types;
  bool operator==(const ClientStatement&) const = default;
};
// A MySQL client's prepared statement (transaction mode: the ids the
// client holds are sqlmux's, pool/mysql/statements.h).
struct MyStatementState {
  uint32_t id = 0;  // the client's id: 1 .. 0xFFFFFFFE
  std::string sql;
  std::optional<std::string> schema;  // the default database at PREPARE time
  uint16_t num_params = 0;
  uint16_t num_columns = 0;
  std::vector<uint16_t> param_types;  // as bound last: type | flags << 8
  bool operator==(const MyStatementState&) const = default;
};
struct MyClientState {
  uint32_t thread_id = 0;             // the client's connection id (not 0)
  uint32_t thread_counter = 0;        // the old process's thread id allocator
  uint64_t caps = 0;                  // negotiated capabilities
  uint8_t charset = 0;                // the handshake's collation id
  std::string scramble;               // the greeting's (COM_CHANGE_USER answers it)
  std::string login_db;               // the database the handshake named ("": none)
  std::string application;            // its program_name attribute (log tag)
  std::optional<std::string> schema;  // the session's (MySessionVars)
  std::optional<std::string> results_collation;
  std::vector<std::pair<std::string, std::string>> vars;  // system variables changed
  uint32_t next_statement = 1;                            // the next statement id it gets
  uint32_t last_statement = 0;                            // what 0xFFFFFFFF means (0: none)
  std::vector<MyStatementState> statements;
  bool operator==(const MyClientState&) const = default;
};
struct ClientState {
  uint64_t id = 0;  // the old process's client id: acknowledgements name it
  std::string pool;
  std::string user;
  std::string database;
  std::optional<MyClientState> mysql;  // set: a MySQL client's record
  // PostgreSQL:
  int32_t cancel_pid = 0;
  int32_t cancel_key = 0;
  bool describes_portals = true;
  std::vector<ClientParam> params;  // desired session parameters
  std::vector<ClientStatement> statements;
  bool operator==(const ClientState&) const = default;
};

constexpr size_t kMaxName = 1024;  // pool, user, database, a parameter's name
constexpr size_t kMaxClientParams = 1024;
constexpr size_t kMaxClientStatements = 4096;
constexpr size_t kMaxParamTypes = 65535;  // PostgreSQL's limit per statement
constexpr size_t kMaxScramble = 64;       // MySQL's is 20 bytes
// A client id that "adopted <id>" can carry (at most 18 digits).
constexpr uint64_t kMaxClientId = 999999999999999999ULL;

enum class ClientWireError {
  None,
  BadHeader,  // not "sqlmux-client 1" nor "sqlmux-myclient 1"
  Truncated,  // a field runs past the end
  BadField,   // an empty or too long name, a NUL in a name, a bad flag, a
              // bad thread or statement id
  TooMany,    // more parameters, statements or types than the limits
  Trailing,   // bytes after the record
  NoSocket    // not exactly one descriptor came with it
};
[[nodiscard]] std::string_view to_string(ClientWireError e);

// The record of `c` (a MySQL client's when c.mysql is set); empty when it
// cannot be written (a limit exceeded, a field out of range, or more than
// kMaxMessage bytes): that client stays on the old process.
[[nodiscard]] std::string encode_client(const ClientState& c);
// Parses a client record that came with `fds` descriptors into `out`.
[[nodiscard]] ClientWireError decode_client(std::string_view msg, size_t fds, ClientState& out);

// "adopted <id>\n" / "refused <id>\n" / "end\n". The decoders return false
// when `msg` is not one (id: canonical decimal, at least 1).
[[nodiscard]] std::string encode_adopted(uint64_t id);
[[nodiscard]] std::string encode_refused(uint64_t id);
[[nodiscard]] bool decode_adopted(std::string_view msg, uint64_t& id);
[[nodiscard]] bool decode_refused(std::string_view msg, uint64_t& id);
[[nodiscard]] std::string encode_end();
[[nodiscard]] bool decode_end(std::string_view msg);

}  // namespace sqlmux::upgrade
