// A PostgreSQL client's startup phase: the startup packet (SSL and cancel
// requests too), authentication, the pool lookup and the welcome
// (ParameterStatus, BackendKeyData, ReadyForQuery). See client.h.
#include <cinttypes>
#include <cstring>

#include "daemon/core/auth_limiter.h"
#include "daemon/core/control.h"
#include "daemon/core/directory.h"
#include "daemon/core/log.h"
#include "daemon/core/peer_kill.h"
#include "daemon/core/pool.h"
#include "daemon/core/worker.h"
#include "daemon/ops/metrics.h"
#include "daemon/pg/backend.h"
#include "daemon/pg/cancel_route.h"
#include "daemon/pg/client.h"
#include "daemon/pg/protocol.h"
#include "pool/pg/cancel_key.h"
#include "protocol/pg/saslprep.h"

namespace sqlmux {

namespace {
constexpr uint32_t kMaxAuthMessage = 10000;
}  // namespace

bool PgClient::handle_startup() {
  pg::StartupPacket pkt;
  size_t used = 0;
  std::string err;
  switch (pg::decode_startup(in_.data(), in_.size(), pkt, used, err)) {
    case pg::Decode::NeedMore:
      return false;
    case pg::Decode::Malformed:
      CLOG_INFO(log_tag_, "invalid startup packet: %s", err.c_str());
      if (pg::startup_rejected_silently(in_.data(), in_.size())) {
        // As PostgreSQL: a bad length (or a bad CancelRequest) gets no answer.
        finish(Reason::ClientProtocolError);
      } else {
        send_fatal(pg::sqlstate::kProtocolViolation, "invalid startup packet: " + err,
                   Reason::ClientProtocolError);
      }
      return false;
    case pg::Decode::Complete:
      break;
  }
  in_.consume(used);
  switch (pkt.kind) {
    case pg::StartupKind::SslRequest: {
      SSL_CTX* ctx = worker_->services().client_tls;
      if (ctx == nullptr || client_tls_ == config::ClientTls::Disable || tls()) {
        send("N", 1);  // the client goes on in clear (or gives up)
        return true;
      }
      if (!in_.empty()) {
        // Bytes sent before the handshake would be read as if protected.
        send_fatal(pg::sqlstate::kProtocolViolation, "received unencrypted data after SSL request",
                   Reason::ClientProtocolError);
        return false;
      }
      send("S", 1);
      if (!start_tls(ctx)) {
        CLOG_WARN(log_tag_, "cannot start TLS: %s", tls_error().c_str());
        finish(Reason::TlsFailed);
        return false;
      }
      return true;
    }
    case pg::StartupKind::GssEncRequest:
      // No GSS encryption: 'N', then the client goes on.
      send("N", 1);
      return true;
    case pg::StartupKind::Cancel:
      route_cancel(*worker_, pkt.cancel_pid, pkt.cancel_key, log_tag_);
      finish(Reason::CancelRequest);
      return false;
    case pg::StartupKind::PeerKill: {
      // From another sqlmux instance (README "Running several instances").
      std::string reply;
      answer_peer_kill(*worker_, pkt.peer_request, reply, log_tag_);
      if (!reply.empty()) send(reply.data(), reply.size());
      finish(Reason::CancelRequest);
      return false;
    }
    case pg::StartupKind::Startup:
      break;
  }

  if (client_tls_ == config::ClientTls::Require && !tls()) {
    send_fatal(pg::sqlstate::kInvalidAuthorization,
               "sqlmux requires TLS on this listener (client_tls = \"require\"); connect with "
               "sslmode=require",
               Reason::TlsRequired);
    return false;
  }
  const int major = pkt.protocol >> 16;
  const int minor = pkt.protocol & 0xffff;
  if (major != 3) {
    send_fatal(pg::sqlstate::kFeatureNotSupported,
               "unsupported frontend protocol " + std::to_string(major) + "." +
                   std::to_string(minor) + ": server supports 3.0 to 3.0",
               Reason::UnsupportedProtocol);
    return false;
  }
  std::vector<std::string> unknown_options;
  for (auto& [k, v] : pkt.params) {
    if (k.rfind("_pq_.", 0) == 0) {
      unknown_options.push_back(k);
    } else if (k == "user") {
      user_name_ = v;
    } else if (k == "database") {
      database_ = v;
    } else if (k == "replication") {
      if (v != "false" && v != "0" && v != "off" && v != "no") {
        send_fatal(pg::sqlstate::kFeatureNotSupported,
                   "replication connections are not supported by sqlmux",
                   Reason::UnsupportedProtocol);
        return false;
      }
    } else if (k == "options") {
      std::vector<std::pair<std::string, std::string>> opts;
      if (!pool::parse_startup_options(v, opts)) {
        send_fatal(pg::sqlstate::kProtocolViolation,
                   "invalid command-line argument for server process: " + v,
                   Reason::ClientProtocolError);
        return false;
      }
      for (auto& o : opts) startup_params_.push_back(std::move(o));
    } else {
      startup_params_.emplace_back(k, v);
    }
  }
  if (minor > 0 || !unknown_options.empty()) {
    // NegotiateProtocolVersion: we speak 3.0 and none of the _pq_ options.
    std::string out;
    pg::Writer wr(out);
    wr.begin('v');
    wr.i32(0);
    wr.i32(static_cast<int32_t>(unknown_options.size()));
    for (auto& o : unknown_options) wr.cstr(o);
    wr.end();
    send(out.data(), out.size());
  }
  if (user_name_.empty()) {
    send_fatal(pg::sqlstate::kInvalidAuthorization,
               "no PostgreSQL user name specified in startup packet", Reason::AuthFailed);
    return false;
  }
  if (database_.empty()) database_ = user_name_;
  log_tag_.user = user_name_;
  log_tag_.database = database_;
  for (const auto& [k, v] : startup_params_) {
    if (k == "application_name") log_tag_.application = v;
  }
  // The core's admission check at accept (max_client_conn, shutdown); a
  // shutdown that began since is refused the same way.
  if (!refusal_ && worker_->services().control->shutting_down()) {
    refusal_ = Failure{Reason::Shutdown, "shutting down", {}};
  }
  if (refusal_) {
    if (refusal_->why == Reason::TooManyClients) {
      CLOG_WARN(log_tag_, "max_client_conn (%u) reached, refusing %s",
                worker_->directory().config().server.max_client_conn, user_name_.c_str());
    }
    fail_with(refusal_->why, refusal_error(*refusal_));
    return false;
  }
  start_auth();
  return true;
}

void PgClient::start_auth() {
  user_ = worker_->directory().find_user(user_name_);
  if (user_ == nullptr) {
    const config::PoolConfig* pc =
        worker_->directory().config().find_pool(database_, config::Protocol::Postgres);
    if (pc != nullptr && pc->auth_user) {
      start_auth_query(*pc);
      return;
    }
  }
  begin_exchange();
}

void PgClient::start_auth_query(const config::PoolConfig& pc) {
  auth_cache_key_ = AuthQueryCache::key(pc, user_name_);
  AuthQueryCache& cache = protocol_.auth_cache();
  if (auto e =
          cache.fresh(auth_cache_key_, static_cast<uint64_t>(pc.auth_query_cache_ttl.count()))) {
    worker_->count_auth_query(metrics::AuthQueryResult::Cached);
    use_looked_up(e->secret);
    return;
  }
  login_ = Login::Lookup;
  auth_query_ = std::make_unique<PgAuthQuery>(
      worker_->loop(), pc, user_name_,
      [this](PgAuthQuery::Result r) { auth_query_done(std::move(r)); });
  lookup_starting_ = true;
  auth_query_->start();  // may answer at once (and auth_query_ be gone)
  lookup_starting_ = false;
}

void PgClient::auth_query_done(PgAuthQuery::Result r) {
  std::unique_ptr<PgAuthQuery> done = std::move(auth_query_);  // freed on return
  auto count = [this](metrics::AuthQueryResult res) { worker_->count_auth_query(res); };
  if (!r.ok) {
    count(metrics::AuthQueryResult::Error);
    CLOG_WARN(log_tag_, "auth_query for user \"%s\" failed: %s", user_name_.c_str(),
              r.error.c_str());
    // The server's words stay in the log: the client has not logged in.
    send_fatal(pg::sqlstate::kUnableToConnect,
               "sqlmux could not look up user \"" + user_name_ + "\" (auth_query failed)",
               Reason::BackendConnectFailed);
    return;
  }
  count(r.secret ? metrics::AuthQueryResult::Found : metrics::AuthQueryResult::NotFound);
  CLOG_DEBUG(log_tag_, "auth_query for user \"%s\": %s", user_name_.c_str(),
             r.secret ? "found" : "not found");
  protocol_.auth_cache().put(auth_cache_key_, r.secret);
  use_looked_up(r.secret);
  // Bytes the client sent meanwhile (it should have waited for the
  // challenge); when answered from start(), process_input goes on itself.
  if (!lookup_starting_ && !closing() && !in_.empty()) process_input();
}

void PgClient::use_looked_up(const std::optional<std::string>& secret) {
  login_ = Login::Startup;
  if (secret) {
    auto u = std::make_unique<User>();
    u->cfg.name = user_name_;
    u->cfg.password = *secret;
    auto s = protocol_.derive_secrets(u->cfg);
    const auto* pg_s = static_cast<const PgSecrets*>(s.get());
    // Only a verifier or an md5 hash serves (the server login is SCRAM
    // passthrough); anything else is taken as no password.
    if (secret->rfind("SCRAM-SHA-256$", 0) == 0 ? pg_s->scram.has_value()
                                                : pg::auth::is_md5_hash(*secret)) {
      u->secrets[static_cast<size_t>(config::Protocol::Postgres)] = std::move(s);
      looked_up_user_ = std::move(u);
      user_ = looked_up_user_.get();
    } else {
      CLOG_WARN(log_tag_,
                "auth_query for user \"%s\" returned neither a SCRAM verifier nor an md5 hash",
                user_name_.c_str());
    }
  }
  begin_exchange();
}

void PgClient::begin_exchange() {
  secrets_ = user_ != nullptr
                 ? static_cast<const PgSecrets*>(user_->secrets_for(config::Protocol::Postgres))
                 : nullptr;
  config::AuthMethod method =
      secrets_ != nullptr ? secrets_->method : config::AuthMethod::ScramSha256;
  std::string out;
  switch (method) {
    case config::AuthMethod::Trust:
      auth_succeeded();
      return;
    case config::AuthMethod::Password:
      pg::put_auth_cleartext(out);
      login_ = Login::Password;
      break;
    case config::AuthMethod::Md5:
      if (!pg::auth::random_bytes(md5_salt_, sizeof md5_salt_)) {
        send_fatal(pg::sqlstate::kInternalError, "could not generate a salt", Reason::Internal);
        return;
      }
      pg::put_auth_md5(out, md5_salt_);
      login_ = Login::Md5;
      break;
    case config::AuthMethod::ScramSha256:
    case config::AuthMethod::Default: {
      const auto& v =
          (secrets_ != nullptr && secrets_->scram) ? *secrets_->scram : protocol_.mock_verifier();
      scram_ = std::make_unique<pg::auth::ScramServer>(v, pg::auth::make_nonce());
      pg::put_auth_sasl(out, {"SCRAM-SHA-256"});
      login_ = Login::SaslInitial;
      break;
    }
  }
  send(out.data(), out.size());
}

bool PgClient::handle_auth_message() {
  pg::Message m;
  size_t used = 0;
  switch (pg::decode_message(in_.data(), in_.size(), kMaxAuthMessage, m, used)) {
    case pg::Decode::NeedMore:
      return false;
    case pg::Decode::Malformed:
      send_fatal(pg::sqlstate::kProtocolViolation, "invalid message length during authentication",
                 Reason::ClientProtocolError);
      return false;
    case pg::Decode::Complete:
      break;
  }
  if (m.type == 'X') {
    finish(Reason::ClientClosed);
    return false;
  }
  if (m.type != 'p') {
    send_fatal(pg::sqlstate::kProtocolViolation,
               "expected password response, got message type " + std::to_string(m.type),
               Reason::ClientProtocolError);
    return false;
  }
  std::string body(m.body);
  in_.consume(used);

  switch (login_) {
    case Login::Password: {
      std::string_view pw;
      if (!pg::parse_password(body, pw)) {
        send_fatal(pg::sqlstate::kProtocolViolation, "invalid password packet",
                   Reason::ClientProtocolError);
        return false;
      }
      bool ok = false;
      if (user_ != nullptr && secrets_ != nullptr) {
        if (!user_->plaintext.empty()) {
          // As the SCRAM verifier would: equal once both are SASLprep'd.
          ok = pg::auth::constant_time_equal(pg::auth::scram_password(pw),
                                             pg::auth::scram_password(user_->plaintext));
        } else if (secrets_->scram) {
          // Its ClientKey, when right, serves SCRAM passthrough like a proof's.
          password_key_ = pg::auth::scram_client_key(pw, *secrets_->scram);
          ok = password_key_.has_value();
        } else if (!secrets_->md5.empty()) {
          ok = pg::auth::constant_time_equal(pg::auth::md5_password_hash(pw, user_name_),
                                             secrets_->md5);
        }
      }
      if (ok) {
        auth_succeeded();
      } else {
        auth_failed("cleartext password mismatch");
      }
      return !closing();
    }
    case Login::Md5: {
      std::string_view pw;
      if (!pg::parse_password(body, pw)) {
        send_fatal(pg::sqlstate::kProtocolViolation, "invalid password packet",
                   Reason::ClientProtocolError);
        return false;
      }
      bool ok = secrets_ != nullptr && !secrets_->md5.empty() &&
                pg::auth::constant_time_equal(
                    pw, pg::auth::md5_salted_response(secrets_->md5, md5_salt_));
      if (ok) {
        auth_succeeded();
      } else {
        auth_failed("md5 password mismatch");
      }
      return !closing();
    }
    case Login::SaslInitial: {
      std::string_view mech;
      std::string_view data;
      if (!pg::parse_sasl_initial_response(body, mech, data)) {
        send_fatal(pg::sqlstate::kProtocolViolation, "malformed SASLInitialResponse",
                   Reason::ClientProtocolError);
        return false;
      }
      if (mech != "SCRAM-SHA-256") {
        send_fatal(pg::sqlstate::kProtocolViolation,
                   "client selected an invalid SASL authentication mechanism",
                   Reason::ClientProtocolError);
        return false;
      }
      std::string server_first;
      std::string err;
      if (!scram_->handle_client_first(data, server_first, err)) {
        send_fatal(pg::sqlstate::kProtocolViolation, "malformed SCRAM message: " + err,
                   Reason::ClientProtocolError);
        return false;
      }
      std::string out;
      pg::put_auth_sasl_continue(out, server_first);
      send(out.data(), out.size());
      login_ = Login::SaslFinal;
      return true;
    }
    case Login::SaslFinal: {
      std::string server_final;
      std::string err;
      if (!scram_->handle_client_final(body, server_final, err) || user_ == nullptr) {
        auth_failed(user_ == nullptr ? "no such user" : err);
        return false;
      }
      std::string out;
      pg::put_auth_sasl_final(out, server_final);
      cork();  // the server's final message, AuthenticationOk and the welcome in one write
      send(out.data(), out.size());
      auth_succeeded();
      scram_.reset();  // wipes the ClientKey (auth_succeeded handed it to the pool)
      if (!closing()) uncork();
      return !closing();
    }
    case Login::Startup:
    case Login::Lookup:
      break;
  }
  return false;
}

void PgClient::auth_failed(std::string_view detail) {
  CLOG_INFO(log_tag_, "password authentication failed for user \"%s\" from %s (%.*s)",
            user_name_.c_str(), peer_.text().c_str(), static_cast<int>(detail.size()),
            detail.data());
  if (!auth_cache_key_.empty() && protocol_.auth_cache().drop_after_failure(auth_cache_key_)) {
    // The password may have changed on the server: the next login looks
    // the user up again rather than wait for auth_query_cache_ttl.
    CLOG_INFO(log_tag_, "auth_query entry for user \"%s\" dropped after the failed login",
              user_name_.c_str());
  }
  // Answered at once or late (README "Failed logins"); the client is not
  // read meanwhile.
  login_failed(peer_, [this] {
    send_fatal(pg::sqlstate::kInvalidPassword,
               "password authentication failed for user \"" + user_name_ + "\"",
               Reason::AuthFailed);
  });
}

void PgClient::auth_succeeded() {
  if (user_ == nullptr) {
    auth_failed("no such user");
    return;
  }
  if (make_local_) {
    local_ = make_local_(*this);
    return;
  }
  Pool* pool = worker_->directory().find_pool(database_, *user_, config::Protocol::Postgres);
  if (pool == nullptr) {
    CLOG_INFO(log_tag_, "user \"%s\" asked for unknown database \"%s\"", user_name_.c_str(),
              database_.c_str());
    send_fatal(pg::sqlstate::kInvalidCatalogName, "database \"" + database_ + "\" does not exist",
               Reason::UnknownDatabase);
    return;
  }
  if (!admit_user(user_->cfg)) {
    // PostgreSQL's words when a role's CONNECTION LIMIT is reached.
    pg::ErrorFields e;
    e.severity = "FATAL";
    e.sqlstate = std::string(pg::sqlstate::kTooManyConnections);
    e.message = "too many connections for role \"" + user_name_ + "\"";
    e.detail = "sqlmux max_user_client_connections (" + std::to_string(user_cap()) + ") reached";
    fail_with(Reason::TooManyUserClients, e);
    return;
  }
  pool_ = pool;
  pool_->client_joined();
  if (looked_up_user_ != nullptr) {
    const auto* s =
        static_cast<const PgSecrets*>(looked_up_user_->secrets_for(config::Protocol::Postgres));
    pg_state(*pool_).set_looked_up(s->scram, s->md5);
  }
  const std::optional<pg::auth::ScramKey>& key = scram_ ? scram_->client_key() : password_key_;
  if (key && pool_->logs_in_as_client()) {
    // SCRAM passthrough: the pool logs in to the server with this key.
    pg_state(*pool_).hold_client_key(*key);
    holds_client_key_ = true;
  }
  if (password_key_) {
    pg::auth::wipe(*password_key_);
    password_key_.reset();
  }
  if ((stats_ = pool_->stats(worker_->id())) != nullptr) {
    count_bytes(&stats_->client_received_bytes, &stats_->client_sent_bytes);
  }
  std::string out;
  pg::put_auth_ok(out);
  cork();
  send(out.data(), out.size());
  CLOG_AT(log::connections_level(), log_tag_, "login%s", tls() ? " (TLS)" : "");
  pool::SessionParams defaults;
  const bool welcome_known = pg_state(*pool_).welcome(defaults);
  if (welcome_known) init_params(defaults);
  if (welcome_known && learning_.empty()) {
    send_welcome();
    uncork();
    set_state(ClientState::Idle);
  } else {
    uncork();
    // The pool has not met its server yet, or the server has to tell how it
    // reports one of this client's startup values: a backend tells us.
    need_backend();
  }
}

// ParameterStatus must carry the server's own rendering of a startup value
// (client_encoding utf8 -> UTF8, DateStyle 'iso, dmy' -> 'ISO, DMY'). Rather
// than mimic PostgreSQL's normalisation GUC by GUC (enums, lists, time zone
// names, encodings, extensions' GUCs: never exact), a value that differs
// from the pool's is applied once on a server connection before the
// welcome, and what the server then reports is remembered per pool for the
// clients that give the same value.
void PgClient::init_params(const pool::SessionParams& defaults) {
  params_ = defaults;
  learning_.clear();
  auto& state = pg_state(*pool_);
  for (auto& [k, v] : startup_params_) {
    const auto* d = defaults.find(k);
    if (d == nullptr) {
      params_.set(k, v, false);
    } else if (v == d->value || pool::is_server_owned(k)) {
      params_.set(d->name, v, true);
    } else if (auto known = state.reported_value(k, v)) {
      params_.set(d->name, *known, true);
    } else {
      params_.set(d->name, v, true);
      learning_.push_back({d->name, v, d->value});
    }
  }
  startup_params_.clear();
  startup_params_.shrink_to_fit();
}

void PgClient::send_welcome() {
  std::string out;
  for (const auto& [key, e] : params_.entries()) {
    if (e.reported) pg::put_parameter_status(out, e.name, e.value);
  }
  // A key naming this instance (pool/pg/cancel_key.h), unique among its
  // clients' keys.
  const uint32_t peer_id = worker_->directory().config().server.peer_id;
  for (int tries = 0; tries < 8; ++tries) {
    uint8_t rnd[8];
    if (!pg::auth::random_bytes(rnd, sizeof rnd)) break;
    const pool::CancelKey k = pool::make_cancel_key(peer_id, rnd);
    if (worker_->directory().register_cancel(pool::cancel_lookup_id(k.pid, k.key), worker_->id(),
                                             id_)) {
      cancel_pid_ = k.pid;
      cancel_key_ = k.key;
      break;
    }
  }
  pg::put_backend_key_data(out, cancel_pid_, cancel_key_);
  pg::put_ready_for_query(out, 'I');
  send(out.data(), out.size());
  welcome_sent_ = true;
}

}  // namespace sqlmux
