// MyClient's login: the HandshakeResponse, authentication (native,
// against a plaintext password or a stored native hash; caching_sha2 fast
// path and full authentication; AuthSwitchRequest), COM_CHANGE_USER, and
// the session's start in its pool. The greeting, the command phase and the
// ending are in client.cpp.
#include <openssl/crypto.h>

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
  if (user_ == nullptr && !login_db_.empty()) {
    const config::PoolConfig* pc =
        worker_->directory().config().find_pool(login_db_, config::Protocol::Mysql);
    if (pc != nullptr && pc->auth_user) return start_auth_query(*pc, r, next);
  }
  return continue_handshake(r, next);
}

bool MyClient::start_auth_query(const config::PoolConfig& pc, const my::HandshakeResponse& r,
                                uint8_t next) {
  auth_cache_key_ = AuthQueryCache::key(pc, user_name_);
  AuthQueryCache& cache = protocol_.auth_cache();
  if (auto e =
          cache.fresh(auth_cache_key_, static_cast<uint64_t>(pc.auth_query_cache_ttl.count()))) {
    worker_->count_auth_query(metrics::AuthQueryResult::Cached);
    use_looked_up(e->secret);
    return continue_handshake(r, next);
  }
  login_ = Login::Lookup;
  lookup_login_ = std::make_unique<my::HandshakeResponse>(r);
  lookup_seq_ = next;
  auth_query_ = std::make_unique<MyAuthQuery>(
      worker_->loop(), pc, user_name_,
      [this](MyAuthQuery::Result res) { auth_query_done(std::move(res)); });
  lookup_starting_ = true;
  auth_query_->start();  // may answer at once (and auth_query_ be gone)
  lookup_starting_ = false;
  return !closing() && login_ != Login::Lookup;
}

void MyClient::auth_query_done(MyAuthQuery::Result r) {
  std::unique_ptr<MyAuthQuery> done = std::move(auth_query_);  // freed on return
  std::unique_ptr<my::HandshakeResponse> login = std::move(lookup_login_);
  login_ = Login::Handshake;
  auto count = [this](metrics::AuthQueryResult res) { worker_->count_auth_query(res); };
  if (!r.ok) {
    count(metrics::AuthQueryResult::Error);
    CLOG_WARN(log_tag_, "auth_query for user '%s' failed: %s", user_name_.c_str(), r.error.c_str());
    // The server's words stay in the log: the client has not logged in.
    disconnect(Reason::BackendConnectFailed, lookup_seq_, my::ErrorCode::UnknownError,
               "sqlmux could not look up user '" + user_name_ + "' (auth_query failed)");
    return;
  }
  count(r.secret ? metrics::AuthQueryResult::Found : metrics::AuthQueryResult::NotFound);
  CLOG_DEBUG(log_tag_, "auth_query for user '%s': %s", user_name_.c_str(),
             r.secret ? "found" : "not found");
  protocol_.auth_cache().put(auth_cache_key_, r.secret);
  use_looked_up(r.secret);
  continue_handshake(*login, lookup_seq_);
  // Bytes the client sent meanwhile; when answered from start(),
  // process_packets goes on itself.
  if (!lookup_starting_ && !closing()) process_input();
}

void MyClient::use_looked_up(const std::optional<std::string>& secret) {
  if (!secret) return;
  auto u = std::make_unique<User>();
  u->cfg.name = user_name_;
  u->cfg.password = *secret;
  auto s = protocol_.derive_secrets(u->cfg);
  // Only a mysql_native_password hash serves (the server login is the
  // native passthrough); anything else is taken as no such user.
  if (static_cast<const MySecrets*>(s.get())->native_hash) {
    u->secrets[static_cast<size_t>(config::Protocol::Mysql)] = std::move(s);
    looked_up_user_ = std::move(u);
    user_ = looked_up_user_.get();
  } else {
    CLOG_WARN(log_tag_, "auth_query for user '%s' returned no mysql_native_password hash",
              user_name_.c_str());
  }
}

bool MyClient::continue_handshake(const my::HandshakeResponse& r, uint8_t next) {
  const std::string plugin =
      r.auth_plugin.empty() ? std::string(my::kNativePassword) : r.auth_plugin;
  if (plugin != my::kNativePassword && plugin != my::kCachingSha2Password) {
    // Ask for mysql_native_password with the same scramble.
    send_auth_switch(next);
    return true;
  }
  if (plugin == my::kCachingSha2Password && native_hash() != nullptr &&
      user_->cfg.auth != config::AuthMethod::Trust) {
    // sqlmux holds no SHA-256 of the password to check the fast path.
    return caching_sha2_login(r.auth_response, next);
  }
  if (plugin == my::kCachingSha2Password && r.auth_response.empty() && user_ != nullptr &&
      !user_->plaintext.empty()) {
    // No reply to the greeting's scramble (Connector/C's caching_sha2
    // plugin when the greeting names another): the scramble again for it.
    send_auth_switch(next, my::kCachingSha2Password);
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
  if (switch_plugin_ == my::kCachingSha2Password && !changing_user_) {
    if (native_hash() != nullptr) return start_full_auth(next);
    if (!check_password(my::kCachingSha2Password, payload)) {
      auth_failed(next);
      return false;
    }
    std::string more;
    my::encode_auth_more_data(
        more, std::string(1, static_cast<char>(my::CachingSha2Status::FastAuthSuccess)));
    send_packet(next, more);
    auth_succeeded(static_cast<uint8_t>(next + 1));
    return !closing();
  }
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

bool MyClient::caching_sha2_login(std::string_view response, uint8_t seq) {
  if (!tls()) {
    rsa_ = protocol_.rsa_keys(worker_->directory().config().server.caching_sha2_private_key);
    if (rsa_ == nullptr) {
      // Neither TLS nor a key: the native scramble, which the stored hash checks.
      send_auth_switch(seq);
      return true;
    }
  }
  if (response.empty()) {
    send_auth_switch(seq, my::kCachingSha2Password);
    return true;
  }
  return start_full_auth(seq);
}

bool MyClient::start_full_auth(uint8_t seq) {
  const bool secure = tls();
  std::shared_ptr<const MyRsaKeys> keys = secure ? nullptr : rsa_;
  full_auth_ = std::make_unique<my::auth::FullAuth>(
      scramble_, secure, keys ? std::string_view(keys->private_pem) : std::string_view(),
      keys ? std::string_view(keys->public_pem) : std::string_view());
  std::string more;
  my::encode_auth_more_data(
      more, std::string(1, static_cast<char>(my::CachingSha2Status::PerformFullAuth)));
  send_packet(seq, more);
  login_ = Login::FullAuth;
  return true;
}

bool MyClient::handle_full_auth(std::string_view payload, uint8_t seq) {
  const uint8_t next = static_cast<uint8_t>(seq + 1);
  std::string out;
  const my::auth::FullAuth::Step step = full_auth_->feed(payload, out);
  if (step == my::auth::FullAuth::Step::SendPublicKey) {
    std::string more;
    my::encode_auth_more_data(more, out);
    send_packet(next, more);
    return true;
  }
  full_auth_.reset();
  rsa_.reset();
  bool ok = false;
  switch (step) {
    case my::auth::FullAuth::Step::Password:
      ok = check_cleartext(out);
      if (ok) credential_ = my::auth::Credential::from_password(out);
      break;
    case my::auth::FullAuth::Step::Insecure:
      CLOG_INFO(log_tag_,
                "caching_sha2_password full authentication: the client sent its password "
                "without TLS or RSA encryption; refused");
      break;
    default:
      CLOG_INFO(log_tag_,
                "caching_sha2_password full authentication: the client's reply is not a "
                "password sqlmux can read (malformed or not encrypted with its key)");
      break;
  }
  if (!out.empty()) OPENSSL_cleanse(out.data(), out.size());
  if (!ok) {
    auth_failed(next);
    return false;
  }
  auth_succeeded(next);
  return !closing();
}

const std::array<uint8_t, 20>* MyClient::native_hash() const {
  if (user_ == nullptr) return nullptr;
  const auto* s = static_cast<const MySecrets*>(user_->secrets_for(config::Protocol::Mysql));
  return s != nullptr && s->native_hash ? &*s->native_hash : nullptr;
}

bool MyClient::check_cleartext(std::string_view password) const {
  if (user_ == nullptr) return false;
  if (const auto* hash = native_hash()) {
    const auto h = my::auth::native_password_hash(password);
    return my::auth::constant_time_equal(
        std::string_view(reinterpret_cast<const char*>(h.data()), h.size()),
        std::string_view(reinterpret_cast<const char*>(hash->data()), hash->size()));
  }
  return !user_->plaintext.empty() && my::auth::constant_time_equal(password, user_->plaintext);
}

bool MyClient::check_password(std::string_view plugin, std::string_view response) {
  credential_.clear();
  if (user_ == nullptr) return false;
  if (user_->cfg.auth == config::AuthMethod::Trust) return true;
  if (const auto* hash = native_hash()) {
    // Only mysql_native_password answers can be checked against the hash
    // (callers switch caching_sha2_password to full authentication).
    if (plugin != my::kNativePassword) return false;
    auto sha1 = my::auth::recover_native_sha1(*hash, scramble_, response);
    if (!sha1) return false;
    credential_ = my::auth::Credential::from_sha1(*sha1);
    OPENSSL_cleanse(sha1->data(), sha1->size());
    return true;
  }
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
  if (!auth_cache_key_.empty() && protocol_.auth_cache().drop_after_failure(auth_cache_key_)) {
    // The password may have changed on the server: the next login looks
    // the user up again rather than wait for auth_query_cache_ttl.
    CLOG_INFO(log_tag_, "auth_query entry for user '%s' dropped after the failed login",
              user_name_.c_str());
  }
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
