#include "daemon/mysql/client.h"

#include <cctype>
#include <cinttypes>
#include <cstring>

#include "daemon/core/directory.h"
#include "daemon/core/log.h"
#include "daemon/core/pool.h"
#include "daemon/core/worker.h"
#include "daemon/mysql/backend.h"
#include "daemon/mysql/protocol.h"
#include "daemon/ops/metrics.h"
#include "pool/digest.h"
#include "protocol/mysql/auth.h"
#include "protocol/mysql/command.h"
#include "protocol/mysql/handshake.h"
#include "protocol/mysql/response.h"

namespace sqlmux {

namespace {
constexpr size_t kReadChunk = 64 * 1024;
constexpr uint32_t kMaxLoginPacket = 64 * 1024;
// The largest command a client may send (a 20 MiB blob in an INSERT fits).
constexpr uint32_t kMaxClientPacket = 256u << 20;
// Bytes a client may have buffered while it waits for a backend.
constexpr size_t kMaxPendingInput = 1u << 20;
// Greeted with before any MySQL backend told its version.
constexpr std::string_view kFallbackVersion = "5.5.5-10.11.0-MariaDB-sqlmux";
constexpr uint8_t kGreetingCharset = 45;  // utf8mb4_general_ci
// What sqlmux offers clients. Greeting as MySQL, CLIENT_MYSQL set: no
// MariaDB extensions; as MariaDB, kOfferedMariaCaps.
constexpr uint64_t kOfferedCaps =
    my::cap::kLongPassword | my::cap::kFoundRows | my::cap::kLongFlag | my::cap::kConnectWithDb |
    my::cap::kLocalFiles | my::cap::kProtocol41 | my::cap::kTransactions |
    my::cap::kSecureConnection | my::cap::kMultiStatements | my::cap::kMultiResults |
    my::cap::kPsMultiResults | my::cap::kPluginAuth | my::cap::kPluginAuthLenencData |
    my::cap::kConnectAttrs | my::cap::kSessionTrack | my::cap::kDeprecateEof |
    my::cap::kIgnoreSpace | my::cap::kInteractive;
// Greeting as MariaDB: CLIENT_MYSQL clear, as MariaDB's own, and of its
// extended capabilities only the extended metadata (MyBackend::relay
// reshapes column definitions for clients whose choice differs from their
// server connection's). Never CACHE_METADATA, whose column count packets
// differ and which shared server connections cannot follow per client.
constexpr uint64_t kOfferedMariaCaps =
    (kOfferedCaps & ~my::cap::kMysql) | my::cap::kMariaExtendedMetadata;
bool contains_nocase(std::string_view hay, std::string_view needle) {
  if (needle.size() > hay.size()) return false;
  for (size_t i = 0; i + needle.size() <= hay.size(); ++i) {
    size_t j = 0;
    while (j < needle.size() && std::tolower(static_cast<unsigned char>(hay[i + j])) == needle[j]) {
      ++j;
    }
    if (j == needle.size()) return true;
  }
  return false;
}
}  // namespace

MyClient::MyClient(Worker& w, int fd, uint64_t id, const Failure* refusal, PeerAddress peer,
                   const MyProtocol& protocol)
    : PooledClient(w, fd, id), peer_(peer), protocol_(protocol) {
  log_tag_.protocol = "mysql";
  if (refusal != nullptr) refusal_ = *refusal;
}

namespace {
// MySQL's own error and words for a refused connection, the detail after.
my::ErrorCode refusal_code(const Failure& f, std::string& message) {
  my::ErrorCode code = my::ErrorCode::UnknownError;
  switch (f.why) {
    case Reason::TooManyClients:
    case Reason::FdExhausted:
      code = my::ErrorCode::ConCountError;
      message = "Too many connections";
      break;
    case Reason::TooManyLogins:
      code = my::ErrorCode::ConCountError;
      message = "Too many connections";
      break;
    case Reason::Shutdown:
      code = my::ErrorCode::ServerShutdown;
      message = "Server shutdown in progress";
      break;
    default:
      message = f.message;
      break;
  }
  if (!f.detail.empty()) message += " (" + f.detail + ")";
  return code;
}
}  // namespace

void MyClient::write_refusal(const Failure& f, std::string_view /*received*/, std::string& out) {
  std::string message;
  const my::ErrorCode code = refusal_code(f, message);
  std::string payload;
  my::encode_err(payload, code, message);
  uint8_t seq = 0;
  my::put_packet(out, seq, payload);
}

MyClient::~MyClient() = default;

PooledBackend* MyClient::pooled_backend() const {
  return backend_;
}

config::PoolMode MyClient::mode() const {
  return pool_ != nullptr ? pool_->cfg().mode : config::PoolMode::Session;
}

void MyClient::send_err(uint8_t seq, my::ErrorCode code, std::string_view message) {
  std::string payload;
  my::encode_err(payload, code, message);
  send_packet(seq, payload);
}

void MyClient::send_ok(uint8_t seq) {
  my::OkPacket ok;
  ok.status = my::status::kAutocommit;
  std::string payload;
  my::encode_ok(payload, ok, caps_);
  send_packet(seq, payload);
}

void MyClient::send_packet(uint8_t seq, std::string_view payload) {
  scratch_.clear();
  my::put_packet(scratch_, seq, payload);
  send(scratch_.data(), scratch_.size());
}

void MyClient::send_auth_switch(uint8_t seq, std::string_view plugin) {
  my::AuthSwitchRequest sw;
  sw.plugin = std::string(plugin);
  switch_plugin_ = sw.plugin;
  sw.data = scramble_ + std::string(1, '\0');
  std::string out;
  my::encode_auth_switch(out, sw);
  send_packet(seq, out);
  login_ = Login::AuthSwitch;
}

void MyClient::disconnect(Reason why, uint8_t seq, my::ErrorCode code, const std::string& message) {
  if (closing()) return;
  if (why == Reason::FdExhausted || why == Reason::TooManyUserClients) {
    // Counted in the worker's rate-limited accept line.
    CLOG_DEBUG(log_tag_, "%u %s", static_cast<unsigned>(code), message.c_str());
  } else {
    CLOG_INFO(log_tag_, "%u %s", static_cast<unsigned>(code), message.c_str());
  }
  send_err(seq, code, message);
  finish(why);
}

void MyClient::on_accepted() {
  if (refusal_) {
    std::string message;
    const my::ErrorCode code = refusal_code(*refusal_, message);
    disconnect(refusal_->why, 0, code, message);
    return;
  }
  auto scramble = my::auth::make_scramble();
  if (!scramble) {
    disconnect(Reason::Internal, 0, my::ErrorCode::UnknownError, "no random scramble");
    return;
  }
  scramble_ = *scramble;
  my::Greeting g;
  std::string version = protocol_.server_version();
  g.server_version = my::advertised_version(version.empty() ? kFallbackVersion : version);
  thread_id_ = worker_->directory().register_thread(worker_->id(), id_);
  if (thread_id_ == 0) {
    // With server.peer_id an instance has 2^17 thread ids (pool/peer_kill.h).
    disconnect(Reason::TooManyClients, 0, my::ErrorCode::ConCountError,
               "Too many connections (every thread id of this sqlmux instance is in use)");
    return;
  }
  g.connection_id = thread_id_;
  g.scramble = scramble_;
  g.capabilities = my::is_mariadb_version(g.server_version) ? kOfferedMariaCaps : kOfferedCaps;
  if (worker_->services().client_tls != nullptr && client_tls_ != config::ClientTls::Disable) {
    g.capabilities |= my::cap::kSsl;
  }
  offered_caps_ = g.capabilities | kOfferedCaps;  // CLIENT_MYSQL from a client is harmless
  g.charset = kGreetingCharset;
  g.status = my::status::kAutocommit;
  g.auth_plugin = std::string(my::kNativePassword);
  std::string payload;
  my::encode_greeting(payload, g);
  send_packet(0, payload);
}

// --- input ----------------------------------------------------------------------

void MyClient::on_readable() {
  // While a command waits for its answer, a client may send ahead only so
  // much; a command being received may be as large as kMaxClientPacket.
  if ((state_ == ClientState::Waiting || in_flight_) && !infile_ &&
      in_.size() >= kMaxPendingInput) {
    want_read(false);  // resumes when the answer is complete
    return;
  }
  switch (read_into(in_, kReadChunk)) {
    case ReadResult::Data:
      break;
    case ReadResult::Again:
      return;
    case ReadResult::Eof:
      finish(Reason::ClientClosed);
      return;
    case ReadResult::Error:
      if (tls() && last_errno_ == EPROTO) {
        CLOG_INFO(log_tag_, "TLS failed: %s", tls_error().c_str());
        finish(Reason::TlsFailed);
        return;
      }
      finish(Reason::ClientIoError);
      return;
  }
  process_input();
}

void MyClient::process_input() {
  // Answers can end inside a command's handling (STMT_CLOSE has none): the
  // outer call goes on with the next packet once this one is consumed.
  if (processing_) return;
  processing_ = true;
  process_packets();
  processing_ = false;
}

void MyClient::process_packets() {
  while (!closing() && !in_.empty()) {
    if (failure_pending()) return;        // a failed login answered late: nothing more is read
    if (login_ == Login::Lookup) return;  // read once auth_query answered
    // A command in flight (or waiting for a backend) is answered first;
    // only a LOCAL INFILE file is read meanwhile.
    if (!infile_ &&
        (state_ == ClientState::Waiting || in_flight_ || !pending_.empty() || peer_kill_pending_)) {
      return;
    }
    const uint32_t limit = login_ != Login::Done ? kMaxLoginPacket : kMaxClientPacket;
    my::PacketExtent ext;
    switch (my::peek_packet(in_.data(), in_.size(), limit, ext)) {
      case my::Decode::NeedMore:
        if (!reading()) want_read(true);
        return;
      case my::Decode::Malformed:
        disconnect(Reason::ClientProtocolError, 1, my::ErrorCode::NetPacketTooLarge,
                   "Got a packet bigger than sqlmux's limit, or packets out of order");
        return;
      case my::Decode::Complete:
        break;
    }
    std::string joined;
    const std::string_view payload = my::packet_payload(in_.data(), ext, joined);
    bool go_on = true;
    if (login_ == Login::Handshake) {
      go_on = handle_handshake_response(payload, ext.last_seq);
      if (tls_requested_ && !closing()) {
        tls_requested_ = false;
        in_.consume(ext.wire_len);
        if (!begin_tls()) return;
        continue;
      }
    } else if (login_ == Login::AuthSwitch) {
      go_on = handle_auth_switch_reply(payload, ext.last_seq);
    } else if (login_ == Login::FullAuth) {
      go_on = handle_full_auth(payload, ext.last_seq);
    } else if (infile_) {
      if (backend_ != nullptr) backend_->send_infile(payload, payload.empty());
      if (payload.empty()) infile_ = false;
    } else {
      go_on = handle_command(in_.data(), ext.wire_len, payload, ext.first_seq);
    }
    if (closing()) return;
    in_.consume(ext.wire_len);
    if (!go_on) return;
  }
  in_.shrink_if_empty();
  if (!reading() && !closing()) want_read(true);
}

// --- commands ----------------------------------------------------------------------

bool MyClient::handle_command(const uint8_t* wire, size_t wire_len, std::string_view payload,
                              uint8_t seq) {
  const uint8_t next = static_cast<uint8_t>(seq + 1);
  if (payload.empty()) {
    send_err(next, my::ErrorCode::UnknownComError, "Empty command packet");
    return true;
  }
  const auto cmd = static_cast<my::Command>(payload[0]);
  switch (cmd) {
    case my::Command::Quit:
      finish(Reason::ClientClosed);
      return false;
    case my::Command::Ping:
      send_ok(next);
      return true;
    case my::Command::ChangeUser:
      return change_user(payload, next);
    case my::Command::ProcessKill: {
      // COM_PROCESS_KILL: a 4-byte thread id; MySQL kills the connection.
      my::Reader r(payload.substr(1));
      uint32_t target = 0;
      if (!r.u32(target)) {
        send_err(next, my::ErrorCode::UnknownComError, "Malformed COM_PROCESS_KILL");
        return true;
      }
      my::KillStatement k;
      k.id = target;
      kill_command(k, next, "COM_PROCESS_KILL");
      return true;
    }
    case my::Command::Query:
    case my::Command::InitDb:
    case my::Command::FieldList:
    case my::Command::Statistics:
    case my::Command::SetOption:
    case my::Command::ResetConnection:
    case my::Command::StmtPrepare:
    case my::Command::StmtExecute:
    case my::Command::StmtSendLongData:
    case my::Command::StmtClose:
    case my::Command::StmtReset:
    case my::Command::StmtFetch:
    case my::Command::ProcessInfo:
    case my::Command::Refresh:
    case my::Command::Debug:
      break;
    default:
      send_err(next, my::ErrorCode::UnknownComError,
               "Unknown command " + std::to_string(static_cast<uint8_t>(payload[0])));
      return true;
  }
  std::string rewritten;  // COM_QUERY payload with CONNECTION_ID() answered
  if (cmd == my::Command::Query) {
    // KILL is answered here: the ids a client sees are sqlmux's, and the
    // server connection it would run on is shared.
    my::KillStatement k;
    switch (my::parse_kill(payload.substr(1), k)) {
      case my::KillParse::Kill:
        kill_command(k, next, "KILL");
        return true;
      case my::KillParse::Unsupported:
        kill_unsupported(next);
        return true;
      case my::KillParse::NotKill:
        break;
    }
    std::string sql;
    if (my::rewrite_connection_id(payload.substr(1), thread_id_, sql)) {
      rewritten.push_back(static_cast<char>(my::Command::Query));
      rewritten += sql;
    }
  }
  if (cmd == my::Command::ResetConnection && backend_ == nullptr) {
    reset_session_state();  // nothing on any server to reset
    send_ok(next);
    return true;
  }
  pending_def_.reset();
  pending_stmt_ = 0;
  digest_text_.clear();
  digest_prepare_ = false;
  if (digests_on()) note_digest(cmd, payload);
  if (mode() != config::PoolMode::Session && my::has_statement_id(payload[0])) {
    if (!map_statement(cmd, payload, next)) return true;  // answered here
  } else if (mode() != config::PoolMode::Session && cmd == my::Command::StmtPrepare) {
    pending_def_ = pool::make_statement_def(payload.substr(1), vars_.schema, 0, 0);
    preparing_ = true;
  } else if (cmd == my::Command::StmtPrepare) {
    session_statements_ = true;
  }
  // FOUND_ROWS() reads what the previous SELECT SQL_CALC_FOUND_ROWS left on
  // its connection: the one marker of per-statement state a response does
  // not show.
  calc_found_rows_ = cmd == my::Command::Query && contains_nocase(payload, "sql_calc_found_rows");
  if (stats_ != nullptr) query_start_ns_ = uv_hrtime();  // waiting for a server included
  if (!rewritten.empty()) {
    pending_.clear();
    uint8_t s = seq;
    my::put_packet(pending_, s, rewritten);
  } else {
    pending_.assign(reinterpret_cast<const char*>(wire), wire_len);
  }
  pending_cmd_ = static_cast<uint8_t>(cmd);
  pending_seq_ = seq;
  pending_response_ = cmd != my::Command::StmtClose && cmd != my::Command::StmtSendLongData;
  if (backend_ != nullptr) {
    on_backend_ready();
  } else {
    acquire_backend();
  }
  return true;
}

bool MyClient::map_statement(my::Command cmd, std::string_view payload, uint8_t next) {
  uint32_t id = 0;
  if (!my::statement_id_of(payload, id)) {
    send_err(next, my::ErrorCode::UnknownComError, "Malformed statement command");
    return false;
  }
  const uint32_t resolved = stmts_.resolve(id);
  auto def = stmts_.find(resolved);
  if (cmd == my::Command::StmtClose) {
    stmts_.remove(resolved);  // the servers keep theirs for other clients (bounded)
    if (cursors_.erase(resolved) != 0 && backend_ != nullptr) {
      // Its cursor is open on the server: closed there, which frees it.
      pending_stmt_ = resolved;
      pending_def_ = std::move(def);
      return pending_def_ != nullptr;
    }
    return false;  // no answer
  }
  if (def == nullptr) {
    send_err(next, my::ErrorCode::UnknownStmtHandler,
             "Unknown prepared statement handler (" + std::to_string(id) + ") given to " +
                 std::string(my::to_string(cmd)));
    return false;
  }
  if (cmd == my::Command::StmtReset && backend_ == nullptr) {
    send_ok(next);  // nothing of it is on any server connection now
    return false;
  }
  if (cmd == my::Command::StmtSendLongData) long_data_ = true;
  if (cmd == my::Command::StmtExecute && def->num_params > 0) {
    my::StmtExecute e;
    if (my::decode_stmt_execute(payload, def->num_params, e) && e.new_params_bound) {
      def->param_types = e.types;
    }
  }
  pending_def_ = std::move(def);
  pending_stmt_ = resolved;
  return true;
}

uint32_t MyClient::on_prepared(const my::PrepareOk& ok) {
  preparing_ = false;
  if (pending_def_ == nullptr) return ok.statement_id;
  pending_def_->num_params = ok.num_params;
  pending_def_->num_columns = ok.num_columns;
  const uint32_t id = stmts_.add(pending_def_);
  pending_def_.reset();
  return id;
}

void MyClient::on_backend_linked(PooledBackend* pb) {
  assert(state_ == ClientState::Waiting && backend_ == nullptr);
  auto* b = static_cast<MyBackend*>(pb);  // a MySQL pool opens MySQL backends
  backend_ = b;
  set_state(ClientState::Active);
  b->link(this);
}

void MyClient::on_backend_ready() {
  if (pending_.empty() || backend_ == nullptr) return;
  set_state(ClientState::Active);
  if (pending_def_ != nullptr && !preparing_ && !statement_for_backend()) return;
  // Swapped, not moved: both buffers keep their capacity from command to
  // command, and a command that arrives while this one is sent has its own.
  sending_.swap(pending_);
  pending_.clear();
  in_flight_ = pending_response_;
  if (pending_response_) request_sent();
  backend_->send_command(reinterpret_cast<const uint8_t*>(sending_.data()), sending_.size(),
                         pending_cmd_, pending_seq_, pending_response_);
  if (sending_.capacity() > kMaxPendingInput) std::string().swap(sending_);  // a huge command
  if (!pending_response_ && backend_ != nullptr) on_response_done(0xFFFF, false);
}

bool MyClient::statement_for_backend() {
  pool::MyBackendStatements& bs = backend_->statements();
  const pool::MyBackendStatements::Entry* e = bs.find(pending_def_->key);
  if (e == nullptr) {
    backend_->prepare_statement(*pending_def_);  // on_backend_ready() again when done
    return false;
  }
  std::string payload;
  my::PacketExtent ext;
  const auto* wire = reinterpret_cast<const uint8_t*>(pending_.data());
  if (my::peek_packet(wire, pending_.size(), kMaxClientPacket, ext) != my::Decode::Complete) {
    return false;  // framed by process_packets: cannot happen
  }
  my::join_payload(wire, ext, payload);
  if (!my::rewrite_statement_id(payload, e->backend_id)) return false;
  if (pending_cmd_ == static_cast<uint8_t>(my::Command::StmtClose)) {
    bs.remove(pending_def_->key);  // gone from this server connection
  }
  if (pending_cmd_ == static_cast<uint8_t>(my::Command::StmtExecute) &&
      pending_def_->num_params > 0) {
    my::StmtExecute ex;
    if (my::decode_stmt_execute(payload, pending_def_->num_params, ex) && ex.new_params_bound) {
      bs.set_types_bound(pending_def_->key, ex.types);
    } else if (pool::MyBackendStatements::must_bind(*e, pending_def_->param_types)) {
      // (e is still this statement's entry: nothing was added or removed)
      std::string bound;
      if (my::bind_param_types(payload, pending_def_->num_params, pending_def_->param_types,
                               bound)) {
        payload.swap(bound);
        bs.set_types_bound(pending_def_->key, pending_def_->param_types);
      }
    }
  }
  pending_.clear();
  uint8_t seq = pending_seq_;
  my::put_packet(pending_, seq, payload);
  pending_def_.reset();
  return true;
}

void MyClient::on_restore_failed(const std::string& err_payload) {
  send_packet(static_cast<uint8_t>(pending_seq_ + 1), err_payload);
  pending_.clear();
  in_flight_ = false;
  requests_settled();
  MyBackend* b = backend_;
  backend_ = nullptr;
  set_state(ClientState::Idle);
  if (b != nullptr) b->unlink();
  process_input();
}

namespace {
metrics::Pin metrics_pin(pool::PinReason r) {
  switch (r) {
    case pool::PinReason::LockTables:
      return metrics::Pin::LockTables;
    case pool::PinReason::TransactionCharacteristics:
      return metrics::Pin::TransactionCharacteristics;
    case pool::PinReason::Cursor:
      return metrics::Pin::Cursor;
    case pool::PinReason::None:
    case pool::PinReason::UserState:
      break;
  }
  return metrics::Pin::UserState;
}
}  // namespace

std::string MyClient::pinned_by() const {
  std::string out;
  if (pin_ != pool::PinReason::None) out = std::string(pool::to_string(pin_));
  if (long_data_) out += std::string(out.empty() ? "" : ",") + "long_data";
  if (!cursors_.empty()) out += std::string(out.empty() ? "" : ",") + "cursor";
  return out;
}

void MyClient::on_session_change(const my::OkPacket& ok, const pool::SessionReport& how) {
  pool::apply_report(vars_, ok, how);
  const pool::PinReason why = pool::pin_reason(ok);
  if (why != pool::PinReason::None) {
    if (pin_ != pool::PinReason::UserState) {
      if (pin_ == pool::PinReason::None) {
        CLOG_DEBUG(log_tag_, "pinned to its server connection: %s",
                   std::string(pool::to_string(why)).c_str());
        if (stats_ != nullptr) stats_->pins[static_cast<size_t>(metrics_pin(why))].add();
      }
      pin_ = why;
    }
    if (backend_ != nullptr) backend_->mark_dirty();
  } else if (pin_ != pool::PinReason::None && pool::pin_released(pin_, ok)) {
    pin_ = pool::PinReason::None;
  }
}

void MyClient::query_metrics(uint16_t status) {
  const uint64_t now = uv_hrtime();
  stats_->query.observe_ns(now - query_start_ns_);
  const bool in_tx = (status & my::status::kInTrans) != 0;
  if (in_tx && !in_tx_) {
    in_tx_ = true;
    tx_start_ns_ = query_start_ns_;
  } else if (!in_tx) {
    // The end of a transaction, or a statement that was one by itself.
    stats_->transaction.observe_ns(now - (in_tx_ ? tx_start_ns_ : query_start_ns_));
    in_tx_ = false;
  }
}

void MyClient::note_digest(my::Command cmd, std::string_view payload) {
  std::string_view sql;
  if (cmd == my::Command::Query) {
    sql = payload.substr(1);
  } else if (cmd == my::Command::StmtPrepare && mode() == config::PoolMode::Session) {
    sql = payload.substr(1);
    digest_prepare_ = true;
  } else if ((cmd == my::Command::StmtExecute || cmd == my::Command::StmtClose) &&
             payload.size() >= 5) {
    uint32_t id = 0;
    for (int i = 4; i >= 1; --i)
      id = (id << 8) | static_cast<uint8_t>(payload[static_cast<size_t>(i)]);
    if (mode() != config::PoolMode::Session) {
      if (cmd == my::Command::StmtClose) return;
      if (auto def = stmts_.find(stmts_.resolve(id))) {
        pool::normalize_sql(def->sql, pool::SqlDialect::MySQL, digest_text_);
        digest_start_ns_ = uv_hrtime();
      }
      return;
    }
    auto it = digest_stmts_.find(id);
    if (it == digest_stmts_.end()) return;
    if (cmd == my::Command::StmtClose) {
      digest_stmts_.erase(it);
      return;
    }
    digest_text_ = it->second;
    digest_start_ns_ = uv_hrtime();
    return;
  } else {
    return;
  }
  pool::normalize_sql(sql, pool::SqlDialect::MySQL, digest_text_);
  digest_start_ns_ = uv_hrtime();
}

void MyClient::on_response_done(uint16_t status, bool linger) {
  in_flight_ = false;
  if (status != 0xFFFF) {
    request_answered((status & my::status::kInTrans) != 0);
  } else {
    request_answered(tx_open_);  // no status: as it was
  }
  if (!digest_text_.empty()) {
    if (status != 0xFFFF && backend_ != nullptr) {
      const MyBackend::ResultSummary& r = backend_->last_result();
      if (digest_prepare_) {
        // A session-mode PREPARE: its executions are counted, not it.
        if (!r.error) {
          if (digest_stmts_.size() >= 10000) digest_stmts_.clear();
          digest_stmts_[r.prepared_id] = digest_text_;
        }
      } else {
        record_digest("mysql", digest_text_, uv_hrtime() - digest_start_ns_, r.rows, r.error);
      }
    }
    digest_text_.clear();
    digest_prepare_ = false;
  }
  if (stats_ != nullptr && status != 0xFFFF) query_metrics(status);
  if (preparing_) {  // the PREPARE failed
    preparing_ = false;
    pending_def_.reset();
    stmts_.prepare_failed();
  }
  linger = linger || calc_found_rows_;
  calc_found_rows_ = false;
  if (pending_stmt_ != 0 && status != 0xFFFF) {
    // A cursor lives on the server connection that opened it: the client
    // stays there until the cursor is read to its end or closed.
    const auto cmd = static_cast<my::Command>(pending_cmd_);
    if (cmd == my::Command::StmtExecute) {
      if ((status & my::status::kCursorExists) != 0) {
        cursors_.insert(pending_stmt_);
      } else {
        cursors_.erase(pending_stmt_);
      }
    } else if ((cmd == my::Command::StmtFetch && (status & my::status::kLastRowSent) != 0) ||
               cmd == my::Command::StmtReset) {
      cursors_.erase(pending_stmt_);
    }
  }
  pending_stmt_ = 0;
  linger_ = linger;
  MyBackend* b = backend_;
  const bool in_tx = status != 0xFFFF && (status & my::status::kInTrans) != 0;
  if (b != nullptr && mode() != config::PoolMode::Session && !pinned() && !linger && !in_tx &&
      status != 0xFFFF) {
    backend_ = nullptr;
    set_state(ClientState::Idle);
    b->unlink();
  }
  process_input();
}

void MyClient::on_backend_failed(Reason why, const std::string& detail, uint8_t seq) {
  backend_ = nullptr;
  in_flight_ = false;
  disconnect(why, seq, my::ErrorCode::NewAbortingConnection,
             "sqlmux: the server connection was lost: " + detail);
}

void MyClient::on_backend_lost_idle(bool in_tx) {
  backend_ = nullptr;
  const bool session = mode() == config::PoolMode::Session;
  // Session mode moves only when the pool asks for it (session_reconnect)
  // and nothing of the session is lost with the server connection: its
  // system variables and schema are restored on the next one, but not
  // statement ids or what the last statement left behind. A transaction
  // is lost in any mode: its next statement must not run outside it.
  const bool session_move = session && pool_ != nullptr && pool_->cfg().session_reconnect &&
                            !session_statements_ && !linger_;
  if (pinned() || in_tx || (session && !session_move)) {
    // Its session state is gone with the server: the client is closed
    // without a message, as MariaDB closes a killed or timed-out session.
    finish(Reason::BackendDied);
    return;
  }
  if (session) {
    CLOG_INFO(log_tag_,
              "server connection lost between commands; it moves to "
              "another (session_reconnect)");
  }
  requests_settled();
  set_state(ClientState::Idle);
  if (!pending_.empty()) acquire_backend();  // lost before its command went out
}

// --- housekeeping and ending -------------------------------------------------------

void MyClient::fail(const Failure& f) {
  if (closing()) return;
  if (f.message.empty()) {
    finish(f.why);
    return;
  }
  my::ErrorCode code = my::ErrorCode::UnknownError;
  if (f.why == Reason::Shutdown) code = my::ErrorCode::ServerShutdown;
  if (f.why == Reason::QueryWaitTimeout || f.why == Reason::TooManyClients ||
      f.why == Reason::FdExhausted) {
    code = my::ErrorCode::ConCountError;
  }
  // As MySQL 8 ends a connection idle past wait_timeout (MySQL has no
  // error of its own for the transaction timeouts).
  if (f.why == Reason::ClientIdleTimeout || f.why == Reason::IdleTransactionTimeout ||
      f.why == Reason::TransactionTimeout) {
    code = my::ErrorCode::ClientInteractionTimeout;
  }
  const uint8_t seq = state_ == ClientState::Waiting ? static_cast<uint8_t>(pending_seq_ + 1) : 1;
  if (f.why == Reason::ClientIdleTimeout) {  // MySQL 8's words, and which setting
    disconnect(f.why, seq, code,
               "The client was disconnected by the server because of inactivity "
               "(sqlmux client_idle_timeout)");
    return;
  }
  disconnect(f.why, seq, code, f.message);
}

void MyClient::check_timeouts(uint64_t now) {
  if (state_ == ClientState::Login && !failure_pending() && login_timed_out(now)) {
    disconnect(Reason::LoginTimeout, 2, my::ErrorCode::HandshakeError, "Bad handshake: timeout");
  } else if (state_ == ClientState::Waiting && pool_ != nullptr) {
    auto limit = static_cast<uint64_t>(pool_->cfg().query_wait_timeout.count());
    if (limit > 0 && now - state_since_ > limit) {
      // The command fails; the connection stays.
      pool_->cancel_wait(*worker_, id_);
      if (metrics::WorkerStats* ws = worker_->stats(); ws != nullptr) {
        ws->client_errors[static_cast<int>(Reason::QueryWaitTimeout)].add();
      }
      CLOG_INFO(log_tag_, "query_wait_timeout (pool %s)", pool_->label().c_str());
      send_err(static_cast<uint8_t>(pending_seq_ + 1), my::ErrorCode::ConCountError,
               "sqlmux: query_wait_timeout: no server connection became available within " +
                   std::to_string(limit) + " ms (pool '" + pool_->cfg().name + "')");
      pending_.clear();
      set_state(ClientState::Idle);
      process_input();
    }
  }
}

void MyClient::on_shutdown() {
  if (state_ == ClientState::Login || state_ == ClientState::Idle ||
      state_ == ClientState::Waiting) {
    fail({Reason::Shutdown, "sqlmux is shutting down", {}});
  }
}

void MyClient::finish(Reason why) {
  if (closing()) return;
  if (metrics::WorkerStats* ws = worker_->stats(); ws != nullptr && metrics::is_client_error(why)) {
    ws->client_errors[static_cast<int>(why)].add();
  }
  if (why == Reason::ClientClosed) {
    if (state_ != ClientState::Login) {
      CLOG_AT(log::disconnections_level(), log_tag_, "closing: %s",
              std::string(to_string(why)).c_str());
    }
  } else if (why != Reason::FdExhausted) {
    CLOG_INFO(log_tag_, "closing: %s", std::string(to_string(why)).c_str());
  }
  auth_query_.reset();  // a lookup in flight is abandoned
  if (state_ == ClientState::Waiting && pool_ != nullptr) pool_->cancel_wait(*worker_, id_);
  if (backend_ != nullptr) {
    MyBackend* b = backend_;
    backend_ = nullptr;
    b->client_gone();
  }
  set_state(ClientState::Closing);
  close();
}

void MyClient::on_writable() {
  if (backend_ != nullptr) backend_->resume_reading();
}

void MyClient::on_io_error(int err) {
  CLOG_DEBUG(log_tag_, "socket error: %s", strerror(err));
  finish(Reason::ClientIoError);
}

void MyClient::on_closed() {
  if (pool_ != nullptr && joined_) pool_->client_left();
  worker_->client_destroyed(this);
  if (counted_) worker_->directory().remove_client();
  if (thread_id_ != 0) worker_->directory().unregister_thread(thread_id_);
  delete this;
}

}  // namespace sqlmux
