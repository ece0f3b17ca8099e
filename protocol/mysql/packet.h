// MySQL / MariaDB client/server protocol: packet framing, little-endian
// reader and writer, length-encoded integers and strings, and the protocol's
// constants (capabilities, status flags, commands, column types, errors).
//
// Pure: no sockets, no event loop, no pool. Like the PostgreSQL codec, every
// decoder works on (ptr, size), returns Complete / NeedMore / Malformed (or
// bool for a whole payload), never trusts a length field (each is checked
// against what is left and against the caller's maximum before use) and
// throws nothing.
//
// A "payload" below is the logical packet without its 4-byte header(s).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace sqlmux::my {

enum class Decode { Complete, NeedMore, Malformed };
[[nodiscard]] std::string_view to_string(Decode d);

// --- Framing ---------------------------------------------------------------

// The server port of an address that names none.
inline constexpr uint16_t kDefaultPort = 3306;
inline constexpr size_t kHeaderLen = 4;
// A physical packet carries at most 0xFFFFFF payload bytes; a packet of
// exactly that size is continued by the next one.
inline constexpr uint32_t kMaxChunk = 0xFFFFFF;
// max_allowed_packet's hard upper bound on both MySQL and MariaDB (1 GiB).
inline constexpr uint32_t kMaxPacketLimit = 1u << 30;
// What the server's max_allowed_packet defaults to on current versions.
inline constexpr uint32_t kDefaultMaxPacket = 16u << 20;

// The header of one physical packet.
struct PacketHeader {
  uint32_t len = 0;  // payload bytes in this chunk (0..0xFFFFFF)
  uint8_t seq = 0;
  [[nodiscard]] size_t total() const { return kHeaderLen + len; }
  [[nodiscard]] bool continued() const { return len == kMaxChunk; }
};

// Reads one 4-byte header without copying (for relaying chunk by chunk).
// NeedMore below 4 bytes; Malformed when the chunk alone exceeds max_len.
[[nodiscard]] Decode peek_header(const uint8_t* p, size_t n, uint32_t max_len, PacketHeader& out);

// Where a logical packet (one or more chunks) lies in a buffer, found
// without copying. Sequence ids must be consecutive (mod 256) across chunks.
struct PacketExtent {
  size_t wire_len = 0;  // bytes the logical packet takes in the buffer, headers included
  size_t payload_len = 0;
  size_t chunks = 0;
  uint8_t first_seq = 0;
  uint8_t last_seq = 0;
};
// NeedMore until every chunk is in the buffer; Malformed when the logical
// length would exceed max_len (checked chunk by chunk, before waiting for
// more) or a continuation chunk is out of sequence.
[[nodiscard]] Decode peek_packet_chunks(const uint8_t* p, size_t n, uint32_t max_len,
                                        PacketExtent& out);
// (Inline: a whole single-chunk packet, nearly every one, is decided here;
// anything else goes through peek_packet_chunks.)
[[nodiscard]] inline Decode peek_packet(const uint8_t* p, size_t n, uint32_t max_len,
                                        PacketExtent& out) {
  if (n >= kHeaderLen) {
    const uint32_t len = static_cast<uint32_t>(p[0]) | static_cast<uint32_t>(p[1]) << 8 |
                         static_cast<uint32_t>(p[2]) << 16;
    if (len < kMaxChunk && len <= max_len && n - kHeaderLen >= len) {
      out.wire_len = kHeaderLen + len;
      out.payload_len = len;
      out.chunks = 1;
      out.first_seq = p[3];
      out.last_seq = p[3];
      return Decode::Complete;
    }
  }
  return peek_packet_chunks(p, n, max_len, out);
}

// A decoded logical packet. A single chunk points into the caller's buffer;
// a multi-chunk packet is joined into `joined_`.
class Packet {
 public:
  [[nodiscard]] std::string_view payload() const { return joined_ ? storage_ : view_; }
  [[nodiscard]] uint8_t seq() const { return first_seq_; }      // of the first chunk
  [[nodiscard]] uint8_t last_seq() const { return last_seq_; }  // of the last chunk
  [[nodiscard]] size_t chunks() const { return chunks_; }
  [[nodiscard]] bool joined() const { return joined_; }

 private:
  friend Decode decode_packet(const uint8_t*, size_t, uint32_t, Packet&, size_t&);
  std::string_view view_;
  std::string storage_;
  bool joined_ = false;
  uint8_t first_seq_ = 0;
  uint8_t last_seq_ = 0;
  size_t chunks_ = 0;
};

// One logical packet; consumed = bytes it takes in the buffer.
[[nodiscard]] Decode decode_packet(const uint8_t* p, size_t n, uint32_t max_len, Packet& out,
                                   size_t& consumed);

// Joins the payloads of a logical packet whose extent peek_packet found
// (p must hold at least ext.wire_len bytes). Appends to out.
void join_payload(const uint8_t* p, const PacketExtent& ext, std::string& out);
// The payload of that packet: a view into p for a single chunk (no copy),
// else joined into `joined` (cleared first) and a view of it.
[[nodiscard]] std::string_view packet_payload(const uint8_t* p, const PacketExtent& ext,
                                              std::string& joined);

// Frames a payload: chunks of 0xFFFFFF and a final shorter (possibly empty)
// chunk, so a payload of exactly k*0xFFFFFF bytes ends with an empty chunk.
// `seq` is the id of the first chunk and is left at the id after the last.
void put_packet(std::string& out, uint8_t& seq, std::string_view payload);
// The same for a payload given in two pieces (head then tail), framed as
// put_packet(head + tail) would be, without joining them first.
void put_packet(std::string& out, uint8_t& seq, std::string_view head, std::string_view tail);
// How many chunks put_packet writes for a payload of n bytes.
[[nodiscard]] size_t chunk_count(size_t n);

// --- Reader / Writer --------------------------------------------------------

// Bounds-checked little-endian cursor. A failed read sets a sticky failure
// flag and returns false; nothing is read past the end.
class Reader {
 public:
  Reader(const uint8_t* data, size_t size) : p_(data), end_(data + size) {}
  explicit Reader(std::string_view s)
      : Reader(reinterpret_cast<const uint8_t*>(s.data()), s.size()) {}

  [[nodiscard]] bool u8(uint8_t& v);
  [[nodiscard]] bool u16(uint16_t& v);
  [[nodiscard]] bool u24(uint32_t& v);
  [[nodiscard]] bool u32(uint32_t& v);
  [[nodiscard]] bool u64(uint64_t& v);
  // Length-encoded integer. Fails on 0xFB (NULL) and 0xFF (not an integer)
  // and on a truncated value.
  [[nodiscard]] bool lenenc(uint64_t& v);
  // Like lenenc, but 0xFB reads as NULL (is_null = true, v = 0).
  [[nodiscard]] bool lenenc_or_null(uint64_t& v, bool& is_null);
  // Length-encoded string; the length is checked against what is left.
  [[nodiscard]] bool lenenc_str(std::string_view& v);
  // Length-encoded string or NULL (0xFB), as in a text-protocol row.
  [[nodiscard]] bool lenenc_str_or_null(std::optional<std::string_view>& v);
  // NUL-terminated string; the view excludes the NUL.
  [[nodiscard]] bool cstr(std::string_view& v);
  [[nodiscard]] bool bytes(size_t n, std::string_view& v);
  [[nodiscard]] bool skip(size_t n);
  // Everything that is left (string<EOF>); always succeeds unless failed.
  [[nodiscard]] bool rest(std::string_view& v);
  [[nodiscard]] size_t remaining() const { return static_cast<size_t>(end_ - p_); }
  [[nodiscard]] bool ok() const { return ok_; }
  [[nodiscard]] bool at_end() const { return p_ == end_; }
  // The next byte without consuming it; false at the end.
  [[nodiscard]] bool peek(uint8_t& v) const;

 private:
  bool fail() {
    ok_ = false;
    return false;
  }
  const uint8_t* p_;
  const uint8_t* end_;
  bool ok_ = true;
};

// Appends little-endian values to a payload.
class Writer {
 public:
  explicit Writer(std::string& out) : out_(out) {}
  void u8(uint8_t v) { out_.push_back(static_cast<char>(v)); }
  void u16(uint16_t v);
  void u24(uint32_t v);
  void u32(uint32_t v);
  void u64(uint64_t v);
  void lenenc(uint64_t v);  // the shortest encoding
  void lenenc_null() { u8(0xFB); }
  void lenenc_str(std::string_view s);
  void cstr(std::string_view s);  // s and a NUL
  void bytes(std::string_view s) { out_.append(s.data(), s.size()); }
  void zeros(size_t n) { out_.append(n, '\0'); }

 private:
  std::string& out_;
};

// Bytes the shortest lenenc encoding of v takes (1, 3, 4 or 9).
[[nodiscard]] size_t lenenc_size(uint64_t v);

// --- Capabilities -------------------------------------------------------------
// 64 bits: the low 32 are MySQL's CLIENT_* flags; the high 32 are MariaDB's
// extended capabilities, which travel in otherwise reserved handshake bytes
// when the MySQL-compatibility bit (CLIENT_MYSQL = CLIENT_LONG_PASSWORD) is
// clear on the server's side.
namespace cap {
inline constexpr uint64_t kLongPassword = 1ull << 0;       // CLIENT_LONG_PASSWORD / CLIENT_MYSQL
inline constexpr uint64_t kFoundRows = 1ull << 1;          // CLIENT_FOUND_ROWS
inline constexpr uint64_t kLongFlag = 1ull << 2;           // CLIENT_LONG_FLAG
inline constexpr uint64_t kConnectWithDb = 1ull << 3;      // CLIENT_CONNECT_WITH_DB
inline constexpr uint64_t kNoSchema = 1ull << 4;           // CLIENT_NO_SCHEMA
inline constexpr uint64_t kCompress = 1ull << 5;           // CLIENT_COMPRESS
inline constexpr uint64_t kOdbc = 1ull << 6;               // CLIENT_ODBC
inline constexpr uint64_t kLocalFiles = 1ull << 7;         // CLIENT_LOCAL_FILES
inline constexpr uint64_t kIgnoreSpace = 1ull << 8;        // CLIENT_IGNORE_SPACE
inline constexpr uint64_t kProtocol41 = 1ull << 9;         // CLIENT_PROTOCOL_41
inline constexpr uint64_t kInteractive = 1ull << 10;       // CLIENT_INTERACTIVE
inline constexpr uint64_t kSsl = 1ull << 11;               // CLIENT_SSL
inline constexpr uint64_t kIgnoreSigpipe = 1ull << 12;     // CLIENT_IGNORE_SIGPIPE
inline constexpr uint64_t kTransactions = 1ull << 13;      // CLIENT_TRANSACTIONS
inline constexpr uint64_t kReserved = 1ull << 14;          // CLIENT_RESERVED
inline constexpr uint64_t kSecureConnection = 1ull << 15;  // CLIENT_SECURE_CONNECTION
inline constexpr uint64_t kMultiStatements = 1ull << 16;   // CLIENT_MULTI_STATEMENTS
inline constexpr uint64_t kMultiResults = 1ull << 17;      // CLIENT_MULTI_RESULTS
inline constexpr uint64_t kPsMultiResults = 1ull << 18;    // CLIENT_PS_MULTI_RESULTS
inline constexpr uint64_t kPluginAuth = 1ull << 19;        // CLIENT_PLUGIN_AUTH
inline constexpr uint64_t kConnectAttrs = 1ull << 20;      // CLIENT_CONNECT_ATTRS
inline constexpr uint64_t kPluginAuthLenencData = 1ull << 21;  // ..._LENENC_CLIENT_DATA
inline constexpr uint64_t kCanHandleExpiredPasswords = 1ull << 22;
inline constexpr uint64_t kSessionTrack = 1ull << 23;               // CLIENT_SESSION_TRACK
inline constexpr uint64_t kDeprecateEof = 1ull << 24;               // CLIENT_DEPRECATE_EOF
inline constexpr uint64_t kOptionalResultsetMetadata = 1ull << 25;  // MySQL 8
inline constexpr uint64_t kZstdCompression = 1ull << 26;            // MySQL 8
inline constexpr uint64_t kQueryAttributes = 1ull << 27;            // MySQL 8
inline constexpr uint64_t kMultiFactorAuth = 1ull << 28;            // MySQL 8
inline constexpr uint64_t kCapabilityExtension = 1ull << 29;        // MariaDB: PROGRESS_OBSOLETE
inline constexpr uint64_t kSslVerifyServerCert = 1ull << 30;
inline constexpr uint64_t kRememberOptions = 1ull << 31;
// MariaDB extended capabilities (the 4 extra bytes, shifted up by 32).
inline constexpr uint64_t kMariaProgress = 1ull << 32;            // MARIADB_CLIENT_PROGRESS
inline constexpr uint64_t kMariaComMulti = 1ull << 33;            // MARIADB_CLIENT_COM_MULTI
inline constexpr uint64_t kMariaStmtBulkOperations = 1ull << 34;  // ..._STMT_BULK_OPERATIONS
inline constexpr uint64_t kMariaExtendedMetadata = 1ull << 35;    // ..._EXTENDED_METADATA
inline constexpr uint64_t kMariaCacheMetadata = 1ull << 36;       // ..._CACHE_METADATA
inline constexpr uint64_t kMariaBulkUnitResults = 1ull << 37;     // ..._BULK_UNIT_RESULTS
// The CLIENT_MYSQL bit: a MariaDB server clears it to say "I am MariaDB and
// my extended capabilities follow".
inline constexpr uint64_t kMysql = kLongPassword;
}  // namespace cap

// "CLIENT_PROTOCOL_41|CLIENT_SSL|..." (unknown bits as 0x... hex).
[[nodiscard]] std::string capabilities_to_string(uint64_t caps);

// --- Server status flags ---------------------------------------------------------
namespace status {
inline constexpr uint16_t kInTrans = 1 << 0;               // SERVER_STATUS_IN_TRANS
inline constexpr uint16_t kAutocommit = 1 << 1;            // SERVER_STATUS_AUTOCOMMIT
inline constexpr uint16_t kMoreResultsExist = 1 << 3;      // SERVER_MORE_RESULTS_EXISTS
inline constexpr uint16_t kNoGoodIndexUsed = 1 << 4;       // SERVER_STATUS_NO_GOOD_INDEX_USED
inline constexpr uint16_t kNoIndexUsed = 1 << 5;           // SERVER_STATUS_NO_INDEX_USED
inline constexpr uint16_t kCursorExists = 1 << 6;          // SERVER_STATUS_CURSOR_EXISTS
inline constexpr uint16_t kLastRowSent = 1 << 7;           // SERVER_STATUS_LAST_ROW_SENT
inline constexpr uint16_t kDbDropped = 1 << 8;             // SERVER_STATUS_DB_DROPPED
inline constexpr uint16_t kNoBackslashEscapes = 1 << 9;    // SERVER_STATUS_NO_BACKSLASH_ESCAPES
inline constexpr uint16_t kMetadataChanged = 1 << 10;      // SERVER_STATUS_METADATA_CHANGED
inline constexpr uint16_t kQueryWasSlow = 1 << 11;         // SERVER_QUERY_WAS_SLOW
inline constexpr uint16_t kPsOutParams = 1 << 12;          // SERVER_PS_OUT_PARAMS
inline constexpr uint16_t kInTransReadonly = 1 << 13;      // SERVER_STATUS_IN_TRANS_READONLY
inline constexpr uint16_t kSessionStateChanged = 1 << 14;  // SERVER_SESSION_STATE_CHANGED
}  // namespace status

// "SERVER_STATUS_IN_TRANS|SERVER_STATUS_AUTOCOMMIT|..."
[[nodiscard]] std::string status_to_string(uint16_t flags);

// --- Commands ---------------------------------------------------------------------

enum class Command : uint8_t {
  Sleep = 0x00,
  Quit = 0x01,
  InitDb = 0x02,
  Query = 0x03,
  FieldList = 0x04,
  CreateDb = 0x05,
  DropDb = 0x06,
  Refresh = 0x07,
  Shutdown = 0x08,
  Statistics = 0x09,
  ProcessInfo = 0x0a,
  Connect = 0x0b,
  ProcessKill = 0x0c,
  Debug = 0x0d,
  Ping = 0x0e,
  Time = 0x0f,
  DelayedInsert = 0x10,
  ChangeUser = 0x11,
  BinlogDump = 0x12,
  TableDump = 0x13,
  ConnectOut = 0x14,
  RegisterSlave = 0x15,
  StmtPrepare = 0x16,
  StmtExecute = 0x17,
  StmtSendLongData = 0x18,
  StmtClose = 0x19,
  StmtReset = 0x1a,
  SetOption = 0x1b,
  StmtFetch = 0x1c,
  Daemon = 0x1d,
  BinlogDumpGtid = 0x1e,
  ResetConnection = 0x1f,
  StmtBulkExecute = 0xfa,  // MariaDB
};
// "COM_QUERY" etc.; "COM_UNKNOWN" for other bytes.
[[nodiscard]] std::string_view to_string(Command c);
[[nodiscard]] std::string_view command_name(uint8_t byte);
// False for the commands the server never answers (COM_QUIT,
// COM_STMT_CLOSE, COM_STMT_SEND_LONG_DATA).
[[nodiscard]] bool command_expects_response(uint8_t byte);

// COM_SET_OPTION values.
inline constexpr uint16_t kMultiStatementsOn = 0;
inline constexpr uint16_t kMultiStatementsOff = 1;

// --- Column types (MYSQL_TYPE_*) ---------------------------------------------------

enum class FieldType : uint8_t {
  Decimal = 0x00,
  Tiny = 0x01,
  Short = 0x02,
  Long = 0x03,
  Float = 0x04,
  Double = 0x05,
  Null = 0x06,
  Timestamp = 0x07,
  LongLong = 0x08,
  Int24 = 0x09,
  Date = 0x0a,
  Time = 0x0b,
  DateTime = 0x0c,
  Year = 0x0d,
  NewDate = 0x0e,
  Varchar = 0x0f,
  Bit = 0x10,
  Timestamp2 = 0x11,
  DateTime2 = 0x12,
  Time2 = 0x13,
  Json = 0xf5,
  NewDecimal = 0xf6,
  Enum = 0xf7,
  Set = 0xf8,
  TinyBlob = 0xf9,
  MediumBlob = 0xfa,
  LongBlob = 0xfb,
  Blob = 0xfc,
  VarString = 0xfd,
  String = 0xfe,
  Geometry = 0xff,
};
[[nodiscard]] std::string_view to_string(FieldType t);  // "MYSQL_TYPE_LONG"...

// Column definition flags (a few the proxy or tests look at).
namespace column_flag {
inline constexpr uint16_t kNotNull = 1;
inline constexpr uint16_t kPrimaryKey = 2;
inline constexpr uint16_t kUniqueKey = 4;
inline constexpr uint16_t kMultipleKey = 8;
inline constexpr uint16_t kBlob = 16;
inline constexpr uint16_t kUnsigned = 32;
inline constexpr uint16_t kZerofill = 64;
inline constexpr uint16_t kBinary = 128;
inline constexpr uint16_t kEnum = 256;
inline constexpr uint16_t kAutoIncrement = 512;
inline constexpr uint16_t kTimestamp = 1024;
inline constexpr uint16_t kSet = 2048;
inline constexpr uint16_t kNoDefaultValue = 4096;
inline constexpr uint16_t kOnUpdateNow = 8192;
inline constexpr uint16_t kPartKey = 16384;  // part of some key (sent by MariaDB)
inline constexpr uint16_t kNum = 32768;
}  // namespace column_flag

// --- Error codes ---------------------------------------------------------------------

enum class ErrorCode : uint16_t {
  ConCountError = 1040,                 // ER_CON_COUNT_ERROR
  OutOfResources = 1041,                // ER_OUT_OF_RESOURCES
  BadHostError = 1042,                  // ER_BAD_HOST_ERROR
  HandshakeError = 1043,                // ER_HANDSHAKE_ERROR
  DbAccessDeniedError = 1044,           // ER_DBACCESS_DENIED_ERROR
  AccessDeniedError = 1045,             // ER_ACCESS_DENIED_ERROR
  NoDbError = 1046,                     // ER_NO_DB_ERROR
  UnknownComError = 1047,               // ER_UNKNOWN_COM_ERROR
  BadDbError = 1049,                    // ER_BAD_DB_ERROR
  ServerShutdown = 1053,                // ER_SERVER_SHUTDOWN
  NoSuchThread = 1094,                  // ER_NO_SUCH_THREAD
  KillDeniedError = 1095,               // ER_KILL_DENIED_ERROR
  ParseError = 1064,                    // ER_PARSE_ERROR
  EmptyQuery = 1065,                    // ER_EMPTY_QUERY
  UnknownError = 1105,                  // ER_UNKNOWN_ERROR
  NoSuchTable = 1146,                   // ER_NO_SUCH_TABLE
  AbortingConnection = 1152,            // ER_ABORTING_CONNECTION
  NetPacketTooLarge = 1153,             // ER_NET_PACKET_TOO_LARGE
  NetReadErrorFromPipe = 1154,          // ER_NET_READ_ERROR_FROM_PIPE
  NetFcntlError = 1155,                 // ER_NET_FCNTL_ERROR
  NetPacketsOutOfOrder = 1156,          // ER_NET_PACKETS_OUT_OF_ORDER
  NetUncompressError = 1157,            // ER_NET_UNCOMPRESS_ERROR
  NetReadError = 1158,                  // ER_NET_READ_ERROR
  NetReadInterrupted = 1159,            // ER_NET_READ_INTERRUPTED
  NetErrorOnWrite = 1160,               // ER_NET_ERROR_ON_WRITE
  NetWriteInterrupted = 1161,           // ER_NET_WRITE_INTERRUPTED
  CantDoThisDuringATransaction = 1179,  // ER_CANT_DO_THIS_DURING_AN_TRANSACTION
  NewAbortingConnection = 1184,         // ER_NEW_ABORTING_CONNECTION
  TooManyUserConnections = 1203,        // ER_TOO_MANY_USER_CONNECTIONS
  LockWaitTimeout = 1205,               // ER_LOCK_WAIT_TIMEOUT
  LockDeadlock = 1213,                  // ER_LOCK_DEADLOCK
  SpecificAccessDeniedError = 1227,     // ER_SPECIFIC_ACCESS_DENIED_ERROR
  NotSupportedYet = 1235,               // ER_NOT_SUPPORTED_YET
  UnknownStmtHandler = 1243,            // ER_UNKNOWN_STMT_HANDLER
  NotSupportedAuthMode = 1251,          // ER_NOT_SUPPORTED_AUTH_MODE
  OptionPreventsStatement = 1290,       // ER_OPTION_PREVENTS_STATEMENT
  UnsupportedPs = 1295,                 // ER_UNSUPPORTED_PS
  QueryInterrupted = 1317,              // ER_QUERY_INTERRUPTED
  MustChangePassword = 1820,            // ER_MUST_CHANGE_PASSWORD
  ConnectionKilled = 1927,              // ER_CONNECTION_KILLED (MariaDB)
  StatementTimeout = 1969,              // ER_STATEMENT_TIMEOUT (MariaDB)
  SecureTransportRequired = 3159,       // ER_SECURE_TRANSPORT_REQUIRED (MySQL 5.7+)
  // MySQL 8.0.24+: sent before closing a connection idle past wait_timeout.
  ClientInteractionTimeout = 4031,  // ER_CLIENT_INTERACTION_TIMEOUT
};
// "ER_ACCESS_DENIED_ERROR"; "ER_UNKNOWN" for codes not listed above.
[[nodiscard]] std::string_view to_string(ErrorCode e);
// The SQLSTATE the server pairs with the code ("HY000" when unlisted).
[[nodiscard]] std::string_view sqlstate(ErrorCode e);

}  // namespace sqlmux::my
