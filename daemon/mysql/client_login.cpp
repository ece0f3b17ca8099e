// MyClient's login: the HandshakeResponse, authentication (native,
// caching_sha2 fast path, AuthSwitchRequest), COM_CHANGE_USER, and the
// session's start in its pool. The greeting, the command phase and the
// ending are in client.cpp.
#include <cinttypes>
#include <cstring>

#include "daemon/core/directory.h"
#include "daemon/core/log.h"
#include "daemon/core/pool.h"
#include "daemon/core/worker.h"
#include "daemon/mysql/backend.h"
#include "daemon/mysql/client.h"
#include "daemon/mysql/protocol.h"
#include "daemon/ops/metrics.h"
#include "protocol/mysql/auth.h"
#include "protocol/mysql/command.h"
#include "protocol/mysql/handshake.h"
#include "protocol/mysql/response.h"

namespace sqlmux {

// --- login -------------------------------------------------------------------------

bool MyClient::handle_handshake_response(std::string_view payload, uint8_t seq) {
  const uint8_t next = static_cast<uint8_t>(seq + 1);
  my::ListenerTls lt;
  lt.offered = (offered_caps_ & my::cap::kSsl) != 0;
  lt.required = client_tls_ == config::ClientTls::Require;
  lt.active = tls();
  my::HandshakeResponse r;
  switch (my::read_login_packet(payload, lt, r)) {
    case my::LoginPacket::StartTls:
      tls_requested_ = true;  // process_packets() calls begin_tls()
      return true;
    case my::LoginPacket::Login:
      break;
    case my::LoginPacket::TlsNotOffered:
      disconnect(Reason::UnsupportedProtocol, next, my::ErrorCode::HandshakeError,
                 "Bad handshake: TLS was not offered on this listener");
      return false;
    case my::LoginPacket::TlsTwice:
      disconnect(Reason::ClientProtocolError, next, my::ErrorCode::HandshakeError,
                 "Bad handshake: SSLRequest inside TLS");
      return false;
    case my::LoginPacket::TlsRequired:
      // MySQL's answer with require_secure_transport (MariaDB 10.11 answers
      // 1045 Access denied instead, which hides the cause).
      disconnect(Reason::TlsRequired, next, my::ErrorCode::SecureTransportRequired,
                 std::string(my::kSecureTransportRequired));
      return false;
    case my::LoginPacket::Malformed:
      disconnect(Reason::ClientProtocolError, next, my::ErrorCode::HandshakeError, "Bad handshake");
      return false;
  }
  if ((r.capabilities & my::cap::kCompress) != 0) {
    disconnect(Reason::UnsupportedProtocol, next, my::ErrorCode::HandshakeError,
               "Bad handshake: compression was not offered (sqlmux does not compress)");
    return false;
  }
  if ((r.capabilities & my::cap::kProtocol41) == 0) {
    disconnect(Reason::UnsupportedProtocol, next, my::ErrorCode::HandshakeError,
               "Bad handshake: protocol 4.1 is required");
    return false;
  }
  caps_ = r.capabilities & offered_caps_;
  charset_ = r.charset;
  user_name_ = r.username;
  log_tag_.user = user_name_;
  if (const std::string* program = r.attribute("program_name")) log_tag_.application = *program;
  login_db_ = (caps_ & my::cap::kConnectWithDb) != 0 ? r.database : std::string();
  user_ = worker_->directory().find_user(user_name_);
  const std::string plugin =
      r.auth_plugin.empty() ? std::string(my::kNativePassword) : r.auth_plugin;
  if (plugin != my::kNativePassword && plugin != my::kCachingSha2Password) {
    // Ask for mysql_native_password with the same scramble.
    send_auth_switch(next);
    return true;
  }
  if (!check_password(plugin, r.auth_response)) {
    auth_failed(next);
    return false;
  }
  if (plugin == my::kCachingSha2Password) {
    std::string more;
    my::encode_auth_more_data(
        more, std::string(1, static_cast<char>(my::CachingSha2Status::FastAuthSuccess)));
    send_packet(next, more);
    auth_succeeded(static_cast<uint8_t>(next + 1));
  } else {
    auth_succeeded(next);
  }
  return !closing();
}

bool MyClient::begin_tls() {
  // The SSLRequest is consumed; what follows it in in_ is ciphertext.
  const bool ok = start_tls(worker_->services().client_tls, in_.data(), in_.size());
  in_.consume(in_.size());
  in_.shrink_if_empty();
  if (!ok) {
    CLOG_WARN(log_tag_, "cannot start TLS: %s", tls_error().c_str());
    finish(Reason::TlsFailed);
    return false;
  }
  // The ClientHello may be all there was: the session reads it now, as the
  // socket may not become readable again before sqlmux answers.
  switch (read_into(in_, 64 * 1024)) {
    case ReadResult::Data:
    case ReadResult::Again:
      return true;
    case ReadResult::Eof:
      finish(Reason::ClientClosed);
      return false;
    case ReadResult::Error:
      if (last_errno_ == EPROTO) {
        CLOG_INFO(log_tag_, "TLS failed: %s", tls_error().c_str());
        finish(Reason::TlsFailed);
      } else {
        finish(Reason::ClientIoError);
      }
      return false;
  }
  return true;
}

bool MyClient::handle_auth_switch_reply(std::string_view payload, uint8_t seq) {
  const uint8_t next = static_cast<uint8_t>(seq + 1);
  if (!check_password(my::kNativePassword, payload)) {
    auth_failed(next);
    return false;
  }
  if (changing_user_) {
    changing_user_ = false;
    login_ = Login::Done;
    change_user_done(next);
  } else {
    auth_succeeded(next);
  }
  return !closing();
}

bool MyClient::change_user(std::string_view payload, uint8_t next) {
  my::ChangeUser cu;
  if (!my::decode_change_user(payload, caps_, cu)) {
    disconnect(Reason::ClientProtocolError, next, my::ErrorCode::HandshakeError,
               "Malformed COM_CHANGE_USER");
    return false;
  }
  // The session ends as with COM_RESET_CONNECTION: the server connection
  // (transaction, variables, statements) goes back to the pool, reset.
  if (backend_ != nullptr) {
    MyBackend* b = backend_;
    backend_ = nullptr;
    b->mark_dirty();
    b->client_gone();
  }
  set_state(ClientState::Idle);
  user_name_ = cu.username;
  log_tag_.user = user_name_;
  user_ = worker_->directory().find_user(user_name_);
  if (cu.charset != 0) charset_ = static_cast<uint8_t>(cu.charset);
  login_db_ = cu.database;
  const std::string plugin =
      cu.auth_plugin.empty() ? std::string(my::kNativePassword) : cu.auth_plugin;
  if (plugin != my::kNativePassword) {
    // A fresh scramble for the other plugin's answer, as the server does.
    auto scramble = my::auth::make_scramble();
    if (!scramble) {
      disconnect(Reason::Internal, next, my::ErrorCode::UnknownError, "no random scramble");
      return false;
    }
    scramble_ = *scramble;
    send_auth_switch(next);
    changing_user_ = true;
    return true;
  }
  if (!check_password(plugin, cu.auth_response)) {
    auth_failed(next);
    return false;
  }
  change_user_done(next);
  return !closing();
}

void MyClient::change_user_done(uint8_t seq) {
  set_state(ClientState::Login);  // its gauges move to the new pool
  if (pool_ != nullptr && joined_) pool_->client_left();
  joined_ = false;
  pool_ = nullptr;
  stats_ = nullptr;
  release_user();  // counted again as the new user
  auth_succeeded(seq);
}

bool MyClient::check_password(std::string_view plugin, std::string_view response) {
  if (user_ == nullptr) return false;
  if (user_->cfg.auth == config::AuthMethod::Trust) return true;
  const std::string& pw = user_->plaintext;
  if (pw.empty() && !user_->cfg.password.empty()) {
    CLOG_WARN(log_tag_, "user %s has no plaintext password; MySQL logins need one",
              user_name_.c_str());
    return false;
  }
  if (plugin == my::kCachingSha2Password) {
    return my::auth::verify_caching_sha2(pw, scramble_, response);
  }
  return my::auth::verify_native_password(pw, scramble_, response);
}

void MyClient::auth_failed(uint8_t seq) {
  CLOG_INFO(log_tag_, "access denied for user '%s' from %s", user_name_.c_str(),
            peer_.text().c_str());
  // Answered at once or late (README "Failed logins"); the client is not
  // read meanwhile.
  login_failed(peer_, [this, seq] {
    disconnect(
        Reason::AuthFailed, seq, my::ErrorCode::AccessDeniedError,
        "Access denied for user '" + user_name_ + "'@'" + peer_.text() + "' (using password: YES)");
  });
}

void MyClient::auth_succeeded(uint8_t seq) {
  login_ = Login::Done;
  std::string db = login_db_;
  if (db.empty()) db = user_->cfg.default_pool;
  if (db.empty()) {
    disconnect(Reason::UnknownDatabase, seq, my::ErrorCode::NoDbError,
               "No database selected: user '" + user_name_ +
                   "' names no database and has no default_pool");
    return;
  }
  pool_ = worker_->directory().find_pool(db, *user_, config::Protocol::Mysql);
  if (pool_ == nullptr) {
    disconnect(Reason::UnknownDatabase, seq, my::ErrorCode::BadDbError,
               "Unknown database '" + db + "'");
    return;
  }
  database_ = db;
  log_tag_.database = db;
  if (!admit_user(user_->cfg)) {
    pool_ = nullptr;
    // MySQL's words when an account's MAX_USER_CONNECTIONS is reached.
    disconnect(
        Reason::TooManyUserClients, seq, my::ErrorCode::TooManyUserConnections,
        "User " + user_name_ + " already has more than 'max_user_connections' active connections");
    return;
  }
  pool_->client_joined();
  joined_ = true;
  if ((stats_ = pool_->stats(worker_->id())) != nullptr) {
    count_bytes(&stats_->client_received_bytes, &stats_->client_sent_bytes);
  }
  reset_session_state();
  worker_->directory().set_thread_user(thread_id_, user_name_);  // KILL checks the owner
  send_ok(seq);
  set_state(ClientState::Idle);
  CLOG_AT(log::connections_level(), log_tag_, "login%s", tls() ? " (TLS)" : "");
}

void MyClient::reset_session_state() {
  vars_ = pool::MySessionVars();
  // An id MariaDB does not know (255, MySQL 8's default) gets the server's
  // global charset: the variables stay unset (=DEFAULT when restored).
  if (auto cs = pool::charset_by_id(charset_)) vars_.set_charset(*cs);
  if (!login_db_.empty() && pool_ != nullptr) {
    vars_.schema = pool_->cfg().database.empty() ? login_db_ : pool_->cfg().database;
  }
  pin_ = pool::PinReason::None;
  long_data_ = false;
  session_statements_ = false;
  stmts_.clear();
  cursors_.clear();
  linger_ = false;
}

}  // namespace sqlmux
