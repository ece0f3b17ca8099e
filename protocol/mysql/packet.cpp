// MySQL / MariaDB packet framing, Reader/Writer and constants. See
// packet.h.
#include "protocol/mysql/packet.h"

#include <algorithm>
#include <cstring>
#include <utility>

namespace sqlmux::my {

namespace {

uint32_t load_le24(const uint8_t* p) {
  return static_cast<uint32_t>(p[0]) | (static_cast<uint32_t>(p[1]) << 8) |
         (static_cast<uint32_t>(p[2]) << 16);
}

uint64_t load_le(const uint8_t* p, size_t n) {
  uint64_t v = 0;
  for (size_t i = 0; i < n; ++i) {
    v |= static_cast<uint64_t>(p[i]) << (8 * i);
  }
  return v;
}

void store_le(std::string& out, uint64_t v, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
  }
}

void append_hex(std::string& out, uint64_t v) {
  static const char kHex[] = "0123456789abcdef";
  std::string digits;
  do {
    digits.insert(digits.begin(), kHex[v & 0xf]);
    v >>= 4;
  } while (v != 0);
  out += "0x" + digits;
}

struct FlagName {
  uint64_t bit;
  std::string_view name;
};

std::string flags_to_string(uint64_t flags, const FlagName* names, size_t count) {
  std::string out;
  for (size_t i = 0; i < count; ++i) {
    if ((flags & names[i].bit) != 0) {
      if (!out.empty()) {
        out += '|';
      }
      out += names[i].name;
      flags &= ~names[i].bit;
    }
  }
  if (flags != 0) {
    if (!out.empty()) {
      out += '|';
    }
    append_hex(out, flags);
  }
  return out;
}

}  // namespace

std::string_view to_string(Decode d) {
  switch (d) {
    case Decode::Complete:
      return "complete";
    case Decode::NeedMore:
      return "need-more";
    case Decode::Malformed:
      return "malformed";
  }
  return "unknown";
}

// --- Framing -------------------------------------------------------------------

Decode peek_header(const uint8_t* p, size_t n, uint32_t max_len, PacketHeader& out) {
  if (n < kHeaderLen) {
    return Decode::NeedMore;
  }
  const uint32_t len = load_le24(p);
  if (len > max_len) {
    return Decode::Malformed;
  }
  out.len = len;
  out.seq = p[3];
  return Decode::Complete;
}

Decode peek_packet_chunks(const uint8_t* p, size_t n, uint32_t max_len, PacketExtent& out) {
  size_t off = 0;
  size_t payload = 0;
  size_t chunks = 0;
  uint8_t first = 0;
  uint8_t last = 0;
  for (;;) {
    if (n - off < kHeaderLen) {
      return Decode::NeedMore;
    }
    const uint32_t len = load_le24(p + off);
    const uint8_t seq = p[off + 3];
    // The total so far plus this chunk must fit: checked before waiting
    // for the chunk's bytes.
    if (len > max_len || payload > max_len - len) {
      return Decode::Malformed;
    }
    if (chunks == 0) {
      first = seq;
    } else if (seq != static_cast<uint8_t>(last + 1)) {
      return Decode::Malformed;
    }
    last = seq;
    ++chunks;
    payload += len;
    if (n - off - kHeaderLen < len) {
      return Decode::NeedMore;
    }
    off += kHeaderLen + len;
    if (len < kMaxChunk) {
      break;
    }
  }
  out.wire_len = off;
  out.payload_len = payload;
  out.chunks = chunks;
  out.first_seq = first;
  out.last_seq = last;
  return Decode::Complete;
}

std::string_view packet_payload(const uint8_t* p, const PacketExtent& ext, std::string& joined) {
  if (ext.chunks == 1) {
    return {reinterpret_cast<const char*>(p) + kHeaderLen, ext.payload_len};
  }
  joined.clear();
  join_payload(p, ext, joined);
  return joined;
}

void join_payload(const uint8_t* p, const PacketExtent& ext, std::string& out) {
  out.reserve(out.size() + ext.payload_len);
  size_t off = 0;
  for (size_t i = 0; i < ext.chunks && off + kHeaderLen <= ext.wire_len; ++i) {
    const uint32_t len = load_le24(p + off);
    if (off + kHeaderLen + len > ext.wire_len) {
      break;  // not the extent peek_packet found; stay in bounds
    }
    out.append(reinterpret_cast<const char*>(p + off + kHeaderLen), len);
    off += kHeaderLen + len;
  }
}

Decode decode_packet(const uint8_t* p, size_t n, uint32_t max_len, Packet& out, size_t& consumed) {
  consumed = 0;
  PacketExtent ext;
  const Decode d = peek_packet(p, n, max_len, ext);
  if (d != Decode::Complete) {
    return d;
  }
  out.first_seq_ = ext.first_seq;
  out.last_seq_ = ext.last_seq;
  out.chunks_ = ext.chunks;
  out.storage_.clear();
  if (ext.chunks == 1) {
    out.joined_ = false;
    out.view_ = std::string_view(reinterpret_cast<const char*>(p + kHeaderLen), ext.payload_len);
  } else {
    out.joined_ = true;
    out.view_ = {};
    join_payload(p, ext, out.storage_);
  }
  consumed = ext.wire_len;
  return Decode::Complete;
}

size_t chunk_count(size_t n) {
  return n / kMaxChunk + 1;
}

void put_packet(std::string& out, uint8_t& seq, std::string_view payload) {
  out.reserve(out.size() + payload.size() + kHeaderLen * chunk_count(payload.size()));
  size_t off = 0;
  for (;;) {
    const size_t len = std::min<size_t>(payload.size() - off, kMaxChunk);
    store_le(out, len, 3);
    out.push_back(static_cast<char>(seq));
    ++seq;
    out.append(payload.data() + off, len);
    off += len;
    if (len < kMaxChunk) {
      break;
    }
  }
}

void put_packet(std::string& out, uint8_t& seq, std::string_view head, std::string_view tail) {
  const size_t n = head.size() + tail.size();
  if (n >= kMaxChunk) {  // several chunks: rare enough to join first
    std::string joined;
    joined.reserve(n);
    joined.append(head).append(tail);
    put_packet(out, seq, joined);
    return;
  }
  out.reserve(out.size() + kHeaderLen + n);
  store_le(out, n, 3);
  out.push_back(static_cast<char>(seq));
  ++seq;
  out.append(head);
  out.append(tail);
}

// --- Reader --------------------------------------------------------------------

bool Reader::u8(uint8_t& v) {
  if (!ok_ || remaining() < 1) {
    return fail();
  }
  v = *p_++;
  return true;
}

bool Reader::u16(uint16_t& v) {
  if (!ok_ || remaining() < 2) {
    return fail();
  }
  v = static_cast<uint16_t>(load_le(p_, 2));
  p_ += 2;
  return true;
}

bool Reader::u24(uint32_t& v) {
  if (!ok_ || remaining() < 3) {
    return fail();
  }
  v = load_le24(p_);
  p_ += 3;
  return true;
}

bool Reader::u32(uint32_t& v) {
  if (!ok_ || remaining() < 4) {
    return fail();
  }
  v = static_cast<uint32_t>(load_le(p_, 4));
  p_ += 4;
  return true;
}

bool Reader::u64(uint64_t& v) {
  if (!ok_ || remaining() < 8) {
    return fail();
  }
  v = load_le(p_, 8);
  p_ += 8;
  return true;
}

bool Reader::lenenc_or_null(uint64_t& v, bool& is_null) {
  uint8_t first = 0;
  if (!u8(first)) {
    return false;
  }
  is_null = false;
  size_t n = 0;
  switch (first) {
    case 0xFB:
      is_null = true;
      v = 0;
      return true;
    case 0xFC:
      n = 2;
      break;
    case 0xFD:
      n = 3;
      break;
    case 0xFE:
      n = 8;
      break;
    case 0xFF:
      return fail();
    default:
      v = first;
      return true;
  }
  if (remaining() < n) {
    return fail();
  }
  v = load_le(p_, n);
  p_ += n;
  return true;
}

bool Reader::lenenc(uint64_t& v) {
  bool is_null = false;
  if (!lenenc_or_null(v, is_null)) {
    return false;
  }
  if (is_null) {
    return fail();
  }
  return true;
}

bool Reader::lenenc_str(std::string_view& v) {
  uint64_t len = 0;
  if (!lenenc(len)) {
    return false;
  }
  if (len > remaining()) {
    return fail();
  }
  return bytes(static_cast<size_t>(len), v);
}

bool Reader::lenenc_str_or_null(std::optional<std::string_view>& v) {
  uint64_t len = 0;
  bool is_null = false;
  if (!lenenc_or_null(len, is_null)) {
    return false;
  }
  if (is_null) {
    v.reset();
    return true;
  }
  if (len > remaining()) {
    return fail();
  }
  std::string_view s;
  if (!bytes(static_cast<size_t>(len), s)) {
    return false;
  }
  v = s;
  return true;
}

bool Reader::cstr(std::string_view& v) {
  if (!ok_) {
    return false;
  }
  const size_t n = remaining();
  if (n == 0) {
    return fail();
  }
  const void* nul = std::memchr(p_, 0, n);
  if (nul == nullptr) {
    return fail();
  }
  const size_t len = static_cast<size_t>(static_cast<const uint8_t*>(nul) - p_);
  v = std::string_view(reinterpret_cast<const char*>(p_), len);
  p_ += len + 1;
  return true;
}

bool Reader::bytes(size_t n, std::string_view& v) {
  if (!ok_ || n > remaining()) {
    return fail();
  }
  v = std::string_view(reinterpret_cast<const char*>(p_), n);
  p_ += n;
  return true;
}

bool Reader::skip(size_t n) {
  if (!ok_ || n > remaining()) {
    return fail();
  }
  p_ += n;
  return true;
}

bool Reader::rest(std::string_view& v) {
  return bytes(remaining(), v);
}

bool Reader::peek(uint8_t& v) const {
  if (!ok_ || p_ == end_) {
    return false;
  }
  v = *p_;
  return true;
}

// --- Writer --------------------------------------------------------------------

void Writer::u16(uint16_t v) {
  store_le(out_, v, 2);
}
void Writer::u24(uint32_t v) {
  store_le(out_, v, 3);
}
void Writer::u32(uint32_t v) {
  store_le(out_, v, 4);
}
void Writer::u64(uint64_t v) {
  store_le(out_, v, 8);
}

void Writer::lenenc(uint64_t v) {
  if (v < 0xFB) {
    u8(static_cast<uint8_t>(v));
  } else if (v <= 0xFFFF) {
    u8(0xFC);
    store_le(out_, v, 2);
  } else if (v <= 0xFFFFFF) {
    u8(0xFD);
    store_le(out_, v, 3);
  } else {
    u8(0xFE);
    store_le(out_, v, 8);
  }
}

void Writer::lenenc_str(std::string_view s) {
  lenenc(s.size());
  bytes(s);
}

void Writer::cstr(std::string_view s) {
  bytes(s);
  out_.push_back('\0');
}

size_t lenenc_size(uint64_t v) {
  if (v < 0xFB) {
    return 1;
  }
  if (v <= 0xFFFF) {
    return 3;
  }
  if (v <= 0xFFFFFF) {
    return 4;
  }
  return 9;
}

// --- Names ---------------------------------------------------------------------

std::string capabilities_to_string(uint64_t caps) {
  static const FlagName kNames[] = {
      {cap::kLongPassword, "CLIENT_LONG_PASSWORD"},
      {cap::kFoundRows, "CLIENT_FOUND_ROWS"},
      {cap::kLongFlag, "CLIENT_LONG_FLAG"},
      {cap::kConnectWithDb, "CLIENT_CONNECT_WITH_DB"},
      {cap::kNoSchema, "CLIENT_NO_SCHEMA"},
      {cap::kCompress, "CLIENT_COMPRESS"},
      {cap::kOdbc, "CLIENT_ODBC"},
      {cap::kLocalFiles, "CLIENT_LOCAL_FILES"},
      {cap::kIgnoreSpace, "CLIENT_IGNORE_SPACE"},
      {cap::kProtocol41, "CLIENT_PROTOCOL_41"},
      {cap::kInteractive, "CLIENT_INTERACTIVE"},
      {cap::kSsl, "CLIENT_SSL"},
      {cap::kIgnoreSigpipe, "CLIENT_IGNORE_SIGPIPE"},
      {cap::kTransactions, "CLIENT_TRANSACTIONS"},
      {cap::kReserved, "CLIENT_RESERVED"},
      {cap::kSecureConnection, "CLIENT_SECURE_CONNECTION"},
      {cap::kMultiStatements, "CLIENT_MULTI_STATEMENTS"},
      {cap::kMultiResults, "CLIENT_MULTI_RESULTS"},
      {cap::kPsMultiResults, "CLIENT_PS_MULTI_RESULTS"},
      {cap::kPluginAuth, "CLIENT_PLUGIN_AUTH"},
      {cap::kConnectAttrs, "CLIENT_CONNECT_ATTRS"},
      {cap::kPluginAuthLenencData, "CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA"},
      {cap::kCanHandleExpiredPasswords, "CLIENT_CAN_HANDLE_EXPIRED_PASSWORDS"},
      {cap::kSessionTrack, "CLIENT_SESSION_TRACK"},
      {cap::kDeprecateEof, "CLIENT_DEPRECATE_EOF"},
      {cap::kOptionalResultsetMetadata, "CLIENT_OPTIONAL_RESULTSET_METADATA"},
      {cap::kZstdCompression, "CLIENT_ZSTD_COMPRESSION_ALGORITHM"},
      {cap::kQueryAttributes, "CLIENT_QUERY_ATTRIBUTES"},
      {cap::kMultiFactorAuth, "MULTI_FACTOR_AUTHENTICATION"},
      {cap::kCapabilityExtension, "CLIENT_CAPABILITY_EXTENSION"},
      {cap::kSslVerifyServerCert, "CLIENT_SSL_VERIFY_SERVER_CERT"},
      {cap::kRememberOptions, "CLIENT_REMEMBER_OPTIONS"},
      {cap::kMariaProgress, "MARIADB_CLIENT_PROGRESS"},
      {cap::kMariaComMulti, "MARIADB_CLIENT_COM_MULTI"},
      {cap::kMariaStmtBulkOperations, "MARIADB_CLIENT_STMT_BULK_OPERATIONS"},
      {cap::kMariaExtendedMetadata, "MARIADB_CLIENT_EXTENDED_METADATA"},
      {cap::kMariaCacheMetadata, "MARIADB_CLIENT_CACHE_METADATA"},
      {cap::kMariaBulkUnitResults, "MARIADB_CLIENT_BULK_UNIT_RESULTS"},
  };
  return flags_to_string(caps, kNames, sizeof(kNames) / sizeof(kNames[0]));
}

std::string status_to_string(uint16_t flags) {
  static const FlagName kNames[] = {
      {status::kInTrans, "SERVER_STATUS_IN_TRANS"},
      {status::kAutocommit, "SERVER_STATUS_AUTOCOMMIT"},
      {status::kMoreResultsExist, "SERVER_MORE_RESULTS_EXISTS"},
      {status::kNoGoodIndexUsed, "SERVER_STATUS_NO_GOOD_INDEX_USED"},
      {status::kNoIndexUsed, "SERVER_STATUS_NO_INDEX_USED"},
      {status::kCursorExists, "SERVER_STATUS_CURSOR_EXISTS"},
      {status::kLastRowSent, "SERVER_STATUS_LAST_ROW_SENT"},
      {status::kDbDropped, "SERVER_STATUS_DB_DROPPED"},
      {status::kNoBackslashEscapes, "SERVER_STATUS_NO_BACKSLASH_ESCAPES"},
      {status::kMetadataChanged, "SERVER_STATUS_METADATA_CHANGED"},
      {status::kQueryWasSlow, "SERVER_QUERY_WAS_SLOW"},
      {status::kPsOutParams, "SERVER_PS_OUT_PARAMS"},
      {status::kInTransReadonly, "SERVER_STATUS_IN_TRANS_READONLY"},
      {status::kSessionStateChanged, "SERVER_SESSION_STATE_CHANGED"},
  };
  return flags_to_string(flags, kNames, sizeof(kNames) / sizeof(kNames[0]));
}

std::string_view to_string(Command c) {
  switch (c) {
    case Command::Sleep:
      return "COM_SLEEP";
    case Command::Quit:
      return "COM_QUIT";
    case Command::InitDb:
      return "COM_INIT_DB";
    case Command::Query:
      return "COM_QUERY";
    case Command::FieldList:
      return "COM_FIELD_LIST";
    case Command::CreateDb:
      return "COM_CREATE_DB";
    case Command::DropDb:
      return "COM_DROP_DB";
    case Command::Refresh:
      return "COM_REFRESH";
    case Command::Shutdown:
      return "COM_SHUTDOWN";
    case Command::Statistics:
      return "COM_STATISTICS";
    case Command::ProcessInfo:
      return "COM_PROCESS_INFO";
    case Command::Connect:
      return "COM_CONNECT";
    case Command::ProcessKill:
      return "COM_PROCESS_KILL";
    case Command::Debug:
      return "COM_DEBUG";
    case Command::Ping:
      return "COM_PING";
    case Command::Time:
      return "COM_TIME";
    case Command::DelayedInsert:
      return "COM_DELAYED_INSERT";
    case Command::ChangeUser:
      return "COM_CHANGE_USER";
    case Command::BinlogDump:
      return "COM_BINLOG_DUMP";
    case Command::TableDump:
      return "COM_TABLE_DUMP";
    case Command::ConnectOut:
      return "COM_CONNECT_OUT";
    case Command::RegisterSlave:
      return "COM_REGISTER_SLAVE";
    case Command::StmtPrepare:
      return "COM_STMT_PREPARE";
    case Command::StmtExecute:
      return "COM_STMT_EXECUTE";
    case Command::StmtSendLongData:
      return "COM_STMT_SEND_LONG_DATA";
    case Command::StmtClose:
      return "COM_STMT_CLOSE";
    case Command::StmtReset:
      return "COM_STMT_RESET";
    case Command::SetOption:
      return "COM_SET_OPTION";
    case Command::StmtFetch:
      return "COM_STMT_FETCH";
    case Command::Daemon:
      return "COM_DAEMON";
    case Command::BinlogDumpGtid:
      return "COM_BINLOG_DUMP_GTID";
    case Command::ResetConnection:
      return "COM_RESET_CONNECTION";
    case Command::StmtBulkExecute:
      return "COM_STMT_BULK_EXECUTE";
  }
  return "COM_UNKNOWN";
}

std::string_view command_name(uint8_t byte) {
  return to_string(static_cast<Command>(byte));
}

bool command_expects_response(uint8_t byte) {
  switch (static_cast<Command>(byte)) {
    case Command::Quit:
    case Command::StmtClose:
    case Command::StmtSendLongData:
      return false;
    default:
      return true;
  }
}

std::string_view to_string(FieldType t) {
  switch (t) {
    case FieldType::Decimal:
      return "MYSQL_TYPE_DECIMAL";
    case FieldType::Tiny:
      return "MYSQL_TYPE_TINY";
    case FieldType::Short:
      return "MYSQL_TYPE_SHORT";
    case FieldType::Long:
      return "MYSQL_TYPE_LONG";
    case FieldType::Float:
      return "MYSQL_TYPE_FLOAT";
    case FieldType::Double:
      return "MYSQL_TYPE_DOUBLE";
    case FieldType::Null:
      return "MYSQL_TYPE_NULL";
    case FieldType::Timestamp:
      return "MYSQL_TYPE_TIMESTAMP";
    case FieldType::LongLong:
      return "MYSQL_TYPE_LONGLONG";
    case FieldType::Int24:
      return "MYSQL_TYPE_INT24";
    case FieldType::Date:
      return "MYSQL_TYPE_DATE";
    case FieldType::Time:
      return "MYSQL_TYPE_TIME";
    case FieldType::DateTime:
      return "MYSQL_TYPE_DATETIME";
    case FieldType::Year:
      return "MYSQL_TYPE_YEAR";
    case FieldType::NewDate:
      return "MYSQL_TYPE_NEWDATE";
    case FieldType::Varchar:
      return "MYSQL_TYPE_VARCHAR";
    case FieldType::Bit:
      return "MYSQL_TYPE_BIT";
    case FieldType::Timestamp2:
      return "MYSQL_TYPE_TIMESTAMP2";
    case FieldType::DateTime2:
      return "MYSQL_TYPE_DATETIME2";
    case FieldType::Time2:
      return "MYSQL_TYPE_TIME2";
    case FieldType::Json:
      return "MYSQL_TYPE_JSON";
    case FieldType::NewDecimal:
      return "MYSQL_TYPE_NEWDECIMAL";
    case FieldType::Enum:
      return "MYSQL_TYPE_ENUM";
    case FieldType::Set:
      return "MYSQL_TYPE_SET";
    case FieldType::TinyBlob:
      return "MYSQL_TYPE_TINY_BLOB";
    case FieldType::MediumBlob:
      return "MYSQL_TYPE_MEDIUM_BLOB";
    case FieldType::LongBlob:
      return "MYSQL_TYPE_LONG_BLOB";
    case FieldType::Blob:
      return "MYSQL_TYPE_BLOB";
    case FieldType::VarString:
      return "MYSQL_TYPE_VAR_STRING";
    case FieldType::String:
      return "MYSQL_TYPE_STRING";
    case FieldType::Geometry:
      return "MYSQL_TYPE_GEOMETRY";
  }
  return "MYSQL_TYPE_UNKNOWN";
}

namespace {

struct ErrorInfo {
  ErrorCode code;
  std::string_view name;
  std::string_view sqlstate;
};

constexpr ErrorInfo kErrors[] = {
    {ErrorCode::ConCountError, "ER_CON_COUNT_ERROR", "08004"},
    {ErrorCode::OutOfResources, "ER_OUT_OF_RESOURCES", "HY000"},
    {ErrorCode::BadHostError, "ER_BAD_HOST_ERROR", "08S01"},
    {ErrorCode::HandshakeError, "ER_HANDSHAKE_ERROR", "08S01"},
    {ErrorCode::DbAccessDeniedError, "ER_DBACCESS_DENIED_ERROR", "42000"},
    {ErrorCode::AccessDeniedError, "ER_ACCESS_DENIED_ERROR", "28000"},
    {ErrorCode::NoDbError, "ER_NO_DB_ERROR", "3D000"},
    {ErrorCode::UnknownComError, "ER_UNKNOWN_COM_ERROR", "08S01"},
    {ErrorCode::BadDbError, "ER_BAD_DB_ERROR", "42000"},
    {ErrorCode::ServerShutdown, "ER_SERVER_SHUTDOWN", "08S01"},
    {ErrorCode::NoSuchThread, "ER_NO_SUCH_THREAD", "HY000"},
    {ErrorCode::KillDeniedError, "ER_KILL_DENIED_ERROR", "HY000"},
    {ErrorCode::ParseError, "ER_PARSE_ERROR", "42000"},
    {ErrorCode::EmptyQuery, "ER_EMPTY_QUERY", "42000"},
    {ErrorCode::UnknownError, "ER_UNKNOWN_ERROR", "HY000"},
    {ErrorCode::NoSuchTable, "ER_NO_SUCH_TABLE", "42S02"},
    {ErrorCode::AbortingConnection, "ER_ABORTING_CONNECTION", "08S01"},
    {ErrorCode::NetPacketTooLarge, "ER_NET_PACKET_TOO_LARGE", "08S01"},
    {ErrorCode::NetReadErrorFromPipe, "ER_NET_READ_ERROR_FROM_PIPE", "08S01"},
    {ErrorCode::NetFcntlError, "ER_NET_FCNTL_ERROR", "08S01"},
    {ErrorCode::NetPacketsOutOfOrder, "ER_NET_PACKETS_OUT_OF_ORDER", "08S01"},
    {ErrorCode::NetUncompressError, "ER_NET_UNCOMPRESS_ERROR", "08S01"},
    {ErrorCode::NetReadError, "ER_NET_READ_ERROR", "08S01"},
    {ErrorCode::NetReadInterrupted, "ER_NET_READ_INTERRUPTED", "08S01"},
    {ErrorCode::NetErrorOnWrite, "ER_NET_ERROR_ON_WRITE", "08S01"},
    {ErrorCode::NetWriteInterrupted, "ER_NET_WRITE_INTERRUPTED", "08S01"},
    {ErrorCode::CantDoThisDuringATransaction, "ER_CANT_DO_THIS_DURING_AN_TRANSACTION", "25000"},
    {ErrorCode::NewAbortingConnection, "ER_NEW_ABORTING_CONNECTION", "08S01"},
    {ErrorCode::TooManyUserConnections, "ER_TOO_MANY_USER_CONNECTIONS", "42000"},
    {ErrorCode::LockWaitTimeout, "ER_LOCK_WAIT_TIMEOUT", "HY000"},
    {ErrorCode::LockDeadlock, "ER_LOCK_DEADLOCK", "40001"},
    {ErrorCode::SpecificAccessDeniedError, "ER_SPECIFIC_ACCESS_DENIED_ERROR", "42000"},
    {ErrorCode::NotSupportedYet, "ER_NOT_SUPPORTED_YET", "42000"},
    {ErrorCode::UnknownStmtHandler, "ER_UNKNOWN_STMT_HANDLER", "HY000"},
    {ErrorCode::NotSupportedAuthMode, "ER_NOT_SUPPORTED_AUTH_MODE", "08004"},
    {ErrorCode::OptionPreventsStatement, "ER_OPTION_PREVENTS_STATEMENT", "HY000"},
    {ErrorCode::UnsupportedPs, "ER_UNSUPPORTED_PS", "HY000"},
    {ErrorCode::QueryInterrupted, "ER_QUERY_INTERRUPTED", "70100"},
    {ErrorCode::ConnectionKilled, "ER_CONNECTION_KILLED", "70100"},
    {ErrorCode::MustChangePassword, "ER_MUST_CHANGE_PASSWORD", "HY000"},
    {ErrorCode::StatementTimeout, "ER_STATEMENT_TIMEOUT", "70100"},
    {ErrorCode::SecureTransportRequired, "ER_SECURE_TRANSPORT_REQUIRED", "HY000"},
    {ErrorCode::ClientInteractionTimeout, "ER_CLIENT_INTERACTION_TIMEOUT", "HY000"},
};

const ErrorInfo* find_error(ErrorCode e) {
  for (const auto& info : kErrors) {
    if (info.code == e) {
      return &info;
    }
  }
  return nullptr;
}

}  // namespace

std::string_view to_string(ErrorCode e) {
  const ErrorInfo* info = find_error(e);
  return info != nullptr ? info->name : std::string_view("ER_UNKNOWN");
}

std::string_view sqlstate(ErrorCode e) {
  const ErrorInfo* info = find_error(e);
  return info != nullptr ? info->sqlstate : std::string_view("HY000");
}

}  // namespace sqlmux::my
