#include "daemon/pg/client.h"

#include <cerrno>
#include <cinttypes>
#include <cstring>
#include <ctime>

#include "daemon/core/control.h"
#include "daemon/core/directory.h"
#include "daemon/core/log.h"
#include "daemon/core/pool.h"
#include "daemon/core/worker.h"
#include "daemon/ops/metrics.h"
#include "daemon/pg/backend.h"
#include "daemon/pg/protocol.h"
#include "protocol/pg/saslprep.h"

namespace sqlmux {

namespace {
constexpr size_t kReadChunk = 32 * 1024;
// Bytes a client may have buffered while it waits for a backend.
constexpr size_t kMaxPendingInput = 256 * 1024;
constexpr uint64_t kLoginTimeoutMs = 60000;
constexpr uint32_t kMaxAuthMessage = 10000;

struct CancelWork {
  uv_work_t req;
  std::shared_ptr<PGcancel> cancel;
  bool ok = false;
  char err[256];
};
}  // namespace

PgClient::PgClient(Worker& w, int fd, uint64_t id, bool over_limit, PeerAddress peer,
                   const PgProtocol& protocol)
    : PooledClient(w, fd, id),
      over_limit_(over_limit),
      peer_(peer),
      counted_(true),
      protocol_(protocol) {}

PgClient::~PgClient() = default;

PooledBackend* PgClient::pooled_backend() const {
  return backend_;
}

// --- input -----------------------------------------------------------------

void PgClient::on_readable() {
  if (state_ != ClientState::Active && in_.size() >= kMaxPendingInput) {
    want_read(false);  // resumes when a backend takes the bytes
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
        LOG_INFO("client %" PRIu64 ": TLS failed: %s", id_, tls_error().c_str());
        finish(Reason::TlsFailed);
        return;
      }
      LOG_DEBUG("client %" PRIu64 ": read: %s", id_, strerror(last_errno_));
      finish(Reason::ClientIoError);
      return;
  }
  process_input();
}

void PgClient::process_input() {
  while (!closing()) {
    switch (state_) {
      case ClientState::Login: {
        bool progressed = login_ == Login::Startup ? handle_startup() : handle_auth_message();
        if (!progressed) return;
        continue;
      }
      case ClientState::Idle: {
        if (local_) {
          local_->process();
          return;
        }
        if (in_.empty()) {
          in_.shrink_if_empty();
          return;
        }
        if (!pg::is_session_message_type(static_cast<char>(in_.data()[0]))) {
          invalid_message_type(in_.data()[0]);
          return;
        }
        pg::Header h;
        if (pg::peek_header(in_.data(), in_.size(), pg::kMaxMessageLen, h) ==
                pg::Decode::Complete &&
            h.type == 'X') {
          finish(Reason::ClientClosed);  // Terminate needs no backend
          return;
        }
        need_backend();
        continue;
      }
      case ClientState::Active:
        if (backend_ready_) relay_to_backend();
        return;
      case ClientState::Waiting:
      case ClientState::Closing:
      case ClientState::Count:
        return;
    }
  }
}

bool PgClient::handle_startup() {
  pg::StartupPacket pkt;
  size_t used = 0;
  std::string err;
  switch (pg::decode_startup(in_.data(), in_.size(), pkt, used, err)) {
    case pg::Decode::NeedMore:
      return false;
    case pg::Decode::Malformed:
      LOG_INFO("client %" PRIu64 ": invalid startup packet: %s", id_, err.c_str());
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
        LOG_WARN("client %" PRIu64 ": cannot start TLS: %s", id_, tls_error().c_str());
        finish(Reason::TlsFailed);
        return false;
      }
      return true;
    }
    case pg::StartupKind::GssEncRequest:
      // No GSS encryption: 'N', then the client goes on.
      send("N", 1);
      return true;
    case pg::StartupKind::Cancel: {
      int worker = 0;
      uint64_t target = 0;
      if (worker_->directory().lookup_cancel(pkt.cancel_pid, pkt.cancel_key, worker, target)) {
        worker_->workers().at(worker).post([target](Worker& tw) {
          if (PooledClient* c = tw.find_client(target)) c->cancel_running_query();
        });
      } else {
        LOG_DEBUG("cancel request with an unknown key dropped");
      }
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
  if (over_limit_) {
    LOG_WARN("client %" PRIu64 ": max_client_conn (%u) reached, refusing %s", id_,
             worker_->directory().config().server.max_client_conn, user_name_.c_str());
    pg::ErrorFields e;
    e.severity = "FATAL";
    e.sqlstate = std::string(pg::sqlstate::kTooManyConnections);
    e.message = "sorry, too many clients already";
    e.detail = "sqlmux max_client_conn (" +
               std::to_string(worker_->directory().config().server.max_client_conn) + ") reached";
    fail_with(Reason::TooManyClients, e);
    return false;
  }
  if (worker_->services().control->shutting_down()) {
    send_fatal(pg::sqlstate::kCannotConnectNow, "the database system is shutting down",
               Reason::Shutdown);
    return false;
  }
  if (auth_rate_limited()) return false;
  start_auth();
  return true;
}

bool PgClient::auth_rate_limited() {
  const auto& sc = worker_->directory().config().server;
  uint64_t retry_ms = 0;
  if (sc.auth_failure_limit == 0 ||
      worker_->services().auth_limiter->check(peer_, worker_->now_ms(), retry_ms) ==
          AuthLimiter::Verdict::Allow) {
    return false;
  }
  // Refused before any password exchange, whoever the user: the answer is
  // the same for known and unknown users and costs no SCRAM work.
  LOG_DEBUG("client %" PRIu64 ": login from %s refused: too many authentication failures", id_,
            peer_.text().c_str());
  pg::ErrorFields e;
  e.severity = "FATAL";
  e.sqlstate = std::string(pg::sqlstate::kInvalidAuthorization);
  e.message = "too many authentication failures from this address";
  e.detail = "Logins from " + peer_.text() + " are refused for " +
             std::to_string((retry_ms + 999) / 1000) + " more second(s).";
  e.hint = "Try again later with the right password.";
  fail_with(Reason::AuthRateLimited, e);
  return true;
}

void PgClient::start_auth() {
  user_ = worker_->directory().find_user(user_name_);
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
          auto v =
              pg::auth::make_scram_verifier(pw, secrets_->scram->salt, secrets_->scram->iterations);
          ok = v.stored_key == secrets_->scram->stored_key;
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
      scram_.reset();
      auth_succeeded();
      if (!closing()) uncork();
      return !closing();
    }
    case Login::Startup:
      break;
  }
  return false;
}

void PgClient::auth_failed(std::string_view detail) {
  LOG_INFO("client %" PRIu64 ": password authentication failed for user \"%s\" (%.*s)", id_,
           user_name_.c_str(), static_cast<int>(detail.size()), detail.data());
  const auto& sc = worker_->directory().config().server;
  if (worker_->services().auth_limiter->failed(
          peer_, worker_->now_ms(), sc.auth_failure_limit,
          static_cast<uint64_t>(sc.auth_failure_window.count()))) {
    LOG_WARN("%u authentication failures from %s within %lld ms: refusing its logins for %lld ms",
             sc.auth_failure_limit, peer_.text().c_str(),
             static_cast<long long>(sc.auth_failure_window.count()),
             static_cast<long long>(sc.auth_failure_window.count()));
  }
  send_fatal(pg::sqlstate::kInvalidPassword,
             "password authentication failed for user \"" + user_name_ + "\"", Reason::AuthFailed);
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
  pool_ = worker_->directory().find_pool(database_, *user_, config::Protocol::Postgres);
  if (pool_ == nullptr) {
    LOG_INFO("client %" PRIu64 ": user \"%s\" asked for unknown database \"%s\"", id_,
             user_name_.c_str(), database_.c_str());
    send_fatal(pg::sqlstate::kInvalidCatalogName, "database \"" + database_ + "\" does not exist",
               Reason::UnknownDatabase);
    return;
  }
  pool_->client_joined();
  if ((stats_ = pool_->stats(worker_->id())) != nullptr) {
    count_bytes(&stats_->client_received_bytes, &stats_->client_sent_bytes);
  }
  std::string out;
  pg::put_auth_ok(out);
  cork();
  send(out.data(), out.size());
  LOG_DEBUG("client %" PRIu64 ": %s logged in to %s", id_, user_name_.c_str(), database_.c_str());
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
  do {
    uint8_t rnd[8];
    if (!pg::auth::random_bytes(rnd, sizeof rnd)) break;
    std::memcpy(&cancel_pid_, rnd, 4);
    std::memcpy(&cancel_key_, rnd + 4, 4);
    cancel_pid_ &= 0x7fffffff;
  } while (cancel_pid_ == 0);
  worker_->directory().register_cancel(cancel_pid_, cancel_key_, worker_->id(), id_);
  pg::put_backend_key_data(out, cancel_pid_, cancel_key_);
  pg::put_ready_for_query(out, 'I');
  send(out.data(), out.size());
  welcome_sent_ = true;
}

// --- backends ----------------------------------------------------------------

void PgClient::need_backend() {
  backend_ready_ = false;
  acquire_backend();
}

void PgClient::on_backend_linked(PooledBackend* pb) {
  assert(state_ == ClientState::Waiting && backend_ == nullptr);
  auto* b = static_cast<PgBackend*>(pb);  // a PostgreSQL pool opens PostgreSQL backends
  backend_ = b;
  set_state(ClientState::Active);
  b->link(this);
}

void PgClient::on_backend_ready() {
  backend_ready_ = true;
  setup_failures_ = 0;
  if (!welcome_sent_) {
    if (learning_.empty()) {
      pool::SessionParams reported;
      for (const auto& [k, e] : backend_->params().entries()) {
        if (e.reported) reported.set(e.name, e.value, true);
      }
      pg_state(*pool_).set_welcome(reported);
      init_params(reported);
    } else {
      // The backend applied the startup values: params_ holds what it reported.
      for (const auto& l : learning_) {
        if (const auto* e = params_.find(l.name)) {
          pg_state(*pool_).learn_reported_value(l.name, l.raw, e->value);
        }
      }
      learning_.clear();
    }
    // The backend came only to introduce the server; the first query links
    // one again (with this client's parameters applied).
    PgBackend* b = backend_;
    backend_ = nullptr;
    backend_ready_ = false;
    if (!learning_.empty()) {
      b->client_gone(false);
      need_backend();  // a second one applies the startup values first
      return;
    }
    send_welcome();
    set_state(ClientState::Idle);
    b->client_gone(false);
    process_input();
    return;
  }
  process_input();
}

void PgClient::on_backend_released() {
  backend_ = nullptr;
  backend_ready_ = false;
  // Requests sqlmux answered itself (no ReadyForQuery from the server)
  // end with the transaction.
  while (stats_ != nullptr && queries_open_ > 0) query_done_metrics('I');
  linked_ns_ = 0;
  set_state(ClientState::Idle);
  if (worker_->shutting_down()) {
    send_fatal(pg::sqlstate::kAdminShutdown, "terminating connection due to administrator command",
               Reason::Shutdown);
    return;
  }
  want_read(true);
  process_input();
}

void PgClient::on_backend_failed(Reason why, const pg::ErrorFields& err) {
  backend_ = nullptr;
  backend_ready_ = false;
  fail_with(why, err);
}

void PgClient::on_backend_setup_failed(const pg::ErrorFields& err) {
  // A reset of another client's setting can fail where a fresh connection
  // would not; this client's own values failing again and again cannot be
  // hidden (a direct connection would refuse them too).
  constexpr int kMaxSetupRetries = 3;
  backend_ = nullptr;
  backend_ready_ = false;
  if (++setup_failures_ >= kMaxSetupRetries) {
    pg::ErrorFields e = err;
    e.severity = "FATAL";
    fail_with(Reason::BackendParamFailed, e);
    return;
  }
  LOG_INFO("client %" PRIu64 ": preparing its server connection failed; trying another", id_);
  linked_ns_ = 0;
  if (!welcome_sent_) {
    need_backend();  // still logging in: the welcome waits for a backend
    return;
  }
  set_state(ClientState::Idle);
  process_input();  // its request is still buffered: it asks for a backend
}

void PgClient::on_backend_lost_idle() {
  LOG_INFO("client %" PRIu64
           ": server connection lost between transactions; the next one "
           "gets another",
           id_);
  backend_ = nullptr;
  backend_ready_ = false;
  linked_ns_ = 0;
  set_state(ClientState::Idle);
  want_read(true);
}

void PgClient::on_parameter_status(std::string_view name, std::string_view value) {
  const auto* e = params_.find(name);
  params_.set(e != nullptr ? std::string_view(e->name) : name, value, true);
}

void PgClient::resume_reading_if_drained() {
  if (closing() || reading()) return;
  want_read(true);
  process_input();
}

void PgClient::on_writable() {
  if (backend_ != nullptr) backend_->resume_reading_if_drained();
}

void PgClient::send_error_and_ready(const pg::ErrorFields& e) {
  std::string out;
  pg::put_error(out, e);
  pg::put_ready_for_query(out, 'I');
  send(out.data(), out.size());
}

// --- metrics -------------------------------------------------------------------

void PgClient::note_request(char type) {
  if (type == 'd' || type == 'c' || type == 'f') return;  // COPY data belongs to its query
  if (!in_cycle_) {
    in_cycle_ = true;
    if (queries_open_ == 0) {
      // Just linked: the query starts now, as the wait ended.
      query_start_ns_ = linked_ns_ != 0 ? linked_ns_ : uv_hrtime();
      linked_ns_ = 0;
      if (!in_tx_) {
        in_tx_ = true;
        tx_start_ns_ = query_start_ns_;
      }
    }
  }
  if (type == 'Q' || type == 'S' || type == 'F') {
    in_cycle_ = false;
    ++queries_open_;
  }
}

void PgClient::query_done_metrics(char tx_status) {
  if (queries_open_ == 0) return;
  const uint64_t now = uv_hrtime();
  stats_->query.observe_ns(now - query_start_ns_);
  --queries_open_;
  query_start_ns_ = now;  // a pipelined next query is timed from here
  if (tx_status == 'I' && in_tx_) {
    stats_->transaction.observe_ns(now - tx_start_ns_);
    in_tx_ = false;
  }
  if ((queries_open_ > 0 || in_cycle_) && !in_tx_) {
    in_tx_ = true;
    tx_start_ns_ = now;
  }
}

// --- ending ------------------------------------------------------------------

void PgClient::invalid_message_type(uint8_t type) {
  // As PostgreSQL answers it, but before a server connection is involved: a
  // message the server would reject with FATAL must not look like a
  // connection lost between transactions.
  LOG_INFO("client %" PRIu64 ": invalid frontend message type %d", id_, type);
  send_fatal(pg::sqlstate::kProtocolViolation,
             "invalid frontend message type " + std::to_string(type), Reason::ClientProtocolError);
}

void PgClient::send_fatal(std::string_view sqlstate, std::string message, Reason why) {
  pg::ErrorFields e;
  e.severity = "FATAL";
  e.sqlstate = std::string(sqlstate);
  e.message = std::move(message);
  fail_with(why, e);
}

void PgClient::local_session_started() {
  welcome_sent_ = true;
  set_state(ClientState::Idle);
}

void PgClient::fail(const Failure& f) {
  if (f.message.empty()) {
    finish(f.why);
    return;
  }
  pg::ErrorFields e;
  e.severity = "FATAL";
  e.message = f.message;
  e.detail = f.detail;
  switch (f.why) {
    case Reason::Shutdown:
    case Reason::AdminKill:
      e.sqlstate = std::string(pg::sqlstate::kAdminShutdown);
      break;
    case Reason::BackendConnectFailed:
      e.sqlstate = std::string(pg::sqlstate::kUnableToConnect);
      break;
    case Reason::TooManyClients:
      e.sqlstate = std::string(pg::sqlstate::kTooManyConnections);
      break;
    default:
      e.sqlstate = std::string(pg::sqlstate::kInternalError);
      break;
  }
  fail_with(f.why, e);
}

void PgClient::fail_with(Reason why, const pg::ErrorFields& err) {
  if (closing()) return;
  if (!err.message.empty()) {
    std::string out;
    pg::put_error(out, err);
    send(out.data(), out.size());
  }
  finish(why);
}

void PgClient::finish(Reason why) {
  if (closing()) return;
  close_reason_ = why;
  if (metrics::WorkerStats* ws = worker_->stats(); ws != nullptr && metrics::is_client_error(why)) {
    ws->client_errors[static_cast<int>(why)].add();
  }
  if (why == Reason::AuthRateLimited) {
    // Logged once per address and window when the limit is reached.
    LOG_DEBUG("client %" PRIu64 " closing: %s", id_, std::string(to_string(why)).c_str());
  } else if (why != Reason::ClientClosed && why != Reason::CancelRequest) {
    LOG_INFO("client %" PRIu64 " closing: %s (user=%s db=%s)", id_,
             std::string(to_string(why)).c_str(), user_name_.c_str(), database_.c_str());
  }
  if (state_ == ClientState::Waiting && pool_ != nullptr) pool_->cancel_wait(*worker_, id_);
  if (backend_ != nullptr) {
    PgBackend* b = backend_;
    backend_ = nullptr;
    b->client_gone(pass_remaining_ > 0 || !backend_ready_);
  }
  if (cancel_pid_ != 0) worker_->directory().unregister_cancel(cancel_pid_);
  set_state(ClientState::Closing);
  close();
}

void PgClient::on_io_error(int err) {
  LOG_DEBUG("client %" PRIu64 ": socket error: %s", id_, strerror(err));
  finish(Reason::ClientIoError);
}

void PgClient::on_closed() {
  if (pool_ != nullptr) pool_->client_left();
  worker_->client_destroyed(this);
  if (counted_) worker_->directory().remove_client();
  delete this;
}

void PgClient::check_timeouts(uint64_t now) {
  if (state_ == ClientState::Login && now - state_since_ > kLoginTimeoutMs) {
    send_fatal(pg::sqlstate::kProtocolViolation, "login timeout", Reason::LoginTimeout);
  } else if (state_ == ClientState::Waiting && pool_ != nullptr) {
    auto limit = static_cast<uint64_t>(pool_->cfg().query_wait_timeout.count());
    if (limit > 0 && now - state_since_ > limit) {
      send_fatal(pg::sqlstate::kQueryCanceled,
                 "query_wait_timeout: no server connection became available within " +
                     std::to_string(limit) + " ms (pool \"" + pool_->cfg().name + "\")",
                 Reason::QueryWaitTimeout);
    }
  }
}

void PgClient::on_shutdown() {
  switch (state_) {
    case ClientState::Login:
      send_fatal(pg::sqlstate::kCannotConnectNow, "the database system is shutting down",
                 Reason::Shutdown);
      break;
    case ClientState::Idle:
    case ClientState::Waiting:
      send_fatal(pg::sqlstate::kAdminShutdown,
                 "terminating connection due to administrator command", Reason::Shutdown);
      break;
    case ClientState::Active:
      // Its transaction finishes first; the backend releases it then.
      if (backend_ != nullptr && backend_ready_ && pass_remaining_ == 0 && backend_->reusable()) {
        send_fatal(pg::sqlstate::kAdminShutdown,
                   "terminating connection due to administrator command", Reason::Shutdown);
      }
      break;
    case ClientState::Closing:
    case ClientState::Count:
      break;
  }
}

void PgClient::cancel_running_query() {
  if (state_ != ClientState::Active || backend_ == nullptr) return;
  auto handle = backend_->cancel_handle();
  if (!handle) return;
  LOG_DEBUG("client %" PRIu64 ": forwarding cancel to backend pid %d", id_, backend_->pid());
  auto* work = new CancelWork;
  work->req.data = work;
  work->cancel = std::move(handle);
  uv_queue_work(
      worker_->loop(), &work->req,
      [](uv_work_t* req) {
        auto* wk = static_cast<CancelWork*>(req->data);
        wk->ok = PQcancel(wk->cancel.get(), wk->err, sizeof wk->err) == 1;
      },
      [](uv_work_t* req, int) {
        auto* wk = static_cast<CancelWork*>(req->data);
        if (!wk->ok) LOG_WARN("cancel request failed: %s", wk->err);
        delete wk;
      });
}

}  // namespace sqlmux
