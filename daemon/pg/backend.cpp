#include "daemon/pg/backend.h"

#include <strings.h>

#include <algorithm>
#include <cinttypes>
#include <cstring>

#include "daemon/core/log.h"
#include "daemon/core/pool.h"
#include "daemon/core/worker.h"
#include "daemon/ops/metrics.h"
#include "daemon/pg/client.h"
#include "daemon/pg/protocol.h"

namespace sqlmux {

namespace {
constexpr size_t kReadChunk = 64 * 1024;
constexpr size_t kHighWater = 512 * 1024;
// Messages sqlmux reads whole (rather than streams) are small; a larger one
// of these types is relayed without a look.
constexpr size_t kMaxInspect = 64 * 1024;
// Replies to sqlmux's own queries are small.
constexpr uint32_t kMaxInternalMessage = 1u << 20;

// Parameters PostgreSQL reports with ParameterStatus (GUC_REPORT). libpq
// has no way to list them, so ask for each; absent ones come back null.
constexpr const char* kReportedParams[] = {
    "application_name",
    "client_encoding",
    "DateStyle",
    "default_transaction_read_only",
    "in_hot_standby",
    "integer_datetimes",
    "IntervalStyle",
    "is_superuser",
    "server_encoding",
    "server_version",
    "session_authorization",
    "standard_conforming_strings",
    "TimeZone",
    "scram_iterations",
    "search_path",
};
}  // namespace

PgBackend* PgBackend::connect(Worker& w, Pool& pool, PoolHost& where, uint64_t for_client,
                              uint64_t tried, std::string& error) {
  const config::PoolConfig& cfg = pool.cfg();  // one version throughout (reload swaps it)
  if (auto secret = passthrough_secret(w, pool, error)) {
    return connect_native(w, pool, where, for_client, tried, std::move(*secret), error);
  }
  if (!error.empty()) return nullptr;
  const config::Address& addr = where.address;
  std::string host = addr.kind == config::Address::Kind::Unix ? addr.unix_path : addr.host;
  std::string port = std::to_string(addr.port == 0 ? pg::kDefaultPort : addr.port);
  const char* keys[] = {"host",    "port",       "dbname",      "user", "password",
                        "sslmode", "gssencmode", "sslrootcert", nullptr};
  const char* vals[] = {host.c_str(),
                        port.c_str(),
                        cfg.database.c_str(),
                        pool.backend_user().c_str(),
                        pool.backend_password().empty() ? nullptr : pool.backend_password().c_str(),
                        cfg.server_tls.c_str(),
                        "disable",
                        cfg.server_tls_ca.empty() ? nullptr : cfg.server_tls_ca.c_str(),
                        nullptr};
  PGconn* pg = PQconnectStartParams(keys, vals, 0);
  if (pg == nullptr) {
    error = "out of memory";
    return nullptr;
  }
  if (PQstatus(pg) == CONNECTION_BAD || PQsocket(pg) < 0) {
    error = PQerrorMessage(pg);
    PQfinish(pg);
    return nullptr;
  }
  if (PQsetnonblocking(pg, 1) != 0) {
    error = PQerrorMessage(pg);
    PQfinish(pg);
    return nullptr;
  }
  // Over libpq's keepalive settings, which it applied to the new socket.
  (void)net::set_keepalive(PQsocket(pg), w.keepalive());
  auto* b = new PgBackend(w, pool, pg, PQsocket(pg), for_client, false);
  // Writable first: PQconnectPoll starts as if it had said "writing".
  if (!b->start_connecting(where, tried)) {
    error.clear();  // handled: connect_failed told the pool and the client
    return nullptr;
  }
  return b;
}

PgBackend::PgBackend(Worker& w, Pool& pool, PGconn* pg, int fd, uint64_t for_client, bool owns_fd)
    : PooledBackend(w, pool, fd, owns_fd, for_client),
      pg_(pg),
      statements_(pool.cfg().max_prepared_statements) {}

PooledClient* PgBackend::pooled_client() const {
  return client_;
}

PgBackend::~PgBackend() {
  // PQfinish sends Terminate and closes libpq's socket (the one we polled).
  if (pg_ != nullptr) PQfinish(pg_);
}

bool PgBackend::reusable() const {
  return tracker_.empty() && tx_status_ == 'I' && pass_remaining_ == 0 &&
         internal_ == Internal::None && !pinned();
}

// --- connecting ----------------------------------------------------------------

void PgBackend::on_poll_writable() {
  if (state_ != BackendState::Connecting) return;
  if (native_) {
    native_writable();
  } else {
    drive_connect();
  }
}

void PgBackend::drive_connect() {
  PostgresPollingStatusType st = PQconnectPoll(pg_);
  int sock = PQsocket(pg_);
  if (st != PGRES_POLLING_FAILED && sock >= 0 && sock != fd_) {
    if (!rebind(sock)) {
      connect_failed("cannot poll the backend socket");
      return;
    }
  }
  switch (st) {
    case PGRES_POLLING_READING:
      want_write(false);
      want_read(true);
      break;
    case PGRES_POLLING_WRITING:
      want_read(false);
      want_write(true);
      break;
    case PGRES_POLLING_OK:
      connected();
      break;
    case PGRES_POLLING_FAILED:
    default:
      connect_failed(PQerrorMessage(pg_));
      break;
  }
}

void PgBackend::connected() {
  pid_ = PQbackendPID(pg_);
  if (PQsslInUse(pg_) != 0) {
    // libpq negotiated TLS (server_tls): sqlmux relays through its session.
    auto* ssl = static_cast<SSL*>(PQsslStruct(pg_, "OpenSSL"));
    if (ssl == nullptr) {
      connect_failed("TLS session of the server connection is not OpenSSL's");
      return;
    }
    use_ssl(ssl);
  }
  if (PGcancel* c = PQgetCancel(pg_)) cancel_ = std::shared_ptr<PGcancel>(c, PQfreeCancel);
  for (const char* name : kReportedParams) {
    if (const char* v = PQparameterStatus(pg_, name)) params_.set(name, v, true);
  }
  want_write(false);
  want_read(true);
  connect_succeeded();
}

// --- linking and relaying ------------------------------------------------------

void PgBackend::link(PgClient* c) {
  assert(client_ == nullptr && internal_ == Internal::None);
  LOG_DEBUG("backend pid %d linked to client %" PRIu64 " (cached statements %zu, in %zu)", pid_,
            c->id(), statements_.size(), in_.size());
  client_ = c;
  set_state(BackendState::Active);
  tracker_.clear();
  clear_replay();
  pass_remaining_ = 0;
  stmt_violation_ = false;
  session_state_ = false;
  fatal_relayed_ = false;
  listen_tx_.clear();
  listen_matched_ = 0;
  listen_error_ = false;
  listen_end_ = 0;
  listen_unparsed_ = false;
  pending_changes_ = pool::diff(c->params(), params_);
  for (const auto& l : c->learning()) {
    // Applied from the pool's value, so that the server reports what a
    // fresh connection would (PgClient::init_params).
    auto it = std::find_if(pending_changes_.begin(), pending_changes_.end(), [&](const auto& ch) {
      return !ch.reset && strcasecmp(ch.name.c_str(), l.name.c_str()) == 0;
    });
    if (it == pending_changes_.end()) {
      pending_changes_.push_back({l.name, l.raw, false, {}});
      it = std::prev(pending_changes_.end());
    }
    it->base = l.base;
  }
  if (pending_changes_.empty()) {
    c->on_backend_ready();
    return;
  }
  std::vector<std::string> skipped;
  std::string sql = pool::apply_sql(pending_changes_, &skipped);
  for (const auto& name : skipped) {
    LOG_WARN("session parameter \"%s\" is not a plain name; not applied", name.c_str());
  }
  if (sql.empty()) {
    c->on_backend_ready();
    return;
  }
  run_internal(Internal::Sync, {sql});
}

void PgBackend::note_command_tag(std::string_view tag) {
  if (tag.size() > 7 && tag.compare(0, 7, "SELECT ") == 0) return;  // most: nothing below applies
  const bool session = pool_.cfg().mode == config::PoolMode::Session;
  if (session) {
    // What a replacement connection would lack; plain statements are fine.
    static constexpr std::string_view kStateless[] = {
        "SELECT", "INSERT",   "UPDATE", "DELETE", "MERGE",   "BEGIN",  "START TRANSACTION",
        "COMMIT", "ROLLBACK", "COPY",   "SHOW",   "EXPLAIN", "VALUES", "CALL",
        "DO"};
    bool plain = false;
    for (std::string_view k : kStateless) {
      plain = plain ||
              (tag.substr(0, k.size()) == k && (tag.size() == k.size() || tag[k.size()] == ' '));
    }
    if (!plain) session_state_ = true;
  }
  if (!session && !tag.empty() &&
      (tag[0] == 'A' || tag[0] == 'C' || tag[0] == 'D' || tag[0] == 'I')) {
    // DDL that can change how a statement's text is analysed: the name
    // resolution, types and columns it sees. (GRANT/REVOKE, COMMENT,
    // TRUNCATE do not; CREATE TABLE AS reports SELECT and is missed.)
    static constexpr std::string_view kDdl[] = {"ALTER ", "CREATE ", "DROP ",
                                                "IMPORT FOREIGN SCHEMA"};
    for (std::string_view k : kDdl) ddl_seen_ = ddl_seen_ || tag.substr(0, k.size()) == k;
  }
  if (tag == "SET" || tag == "RESET") {
    ++set_tags_;
    dirty_ |= kDirtySettings;
  } else if (tag == "DISCARD ALL") {
    dirty_ |= kDirtySettings;
    statements_.clear();
  } else if (tag.rfind("DISCARD", 0) == 0) {
    dirty_ |= kDirtySettings;
  } else if (tag == "DEALLOCATE ALL") {
    statements_.clear();
  } else if (tag == "PREPARE") {
    dirty_ |= kDirtyPrepared;  // a SQL-level statement of the client's own
  } else if (!listen_tx_.empty() && (tag == "COMMIT" || tag == "ROLLBACK")) {
    listen_end_ = tag[0];  // (a failed block's COMMIT reports ROLLBACK)
  } else if (tag == "UNLISTEN") {
    if (!session) note_listen_tag();
  } else if (tag == "LISTEN") {
    dirty_ |= kDirtyListen;
    if (!session && client_ != nullptr && client_->listen_fanout()) {
      note_listen_tag();  // the pool's LISTEN connection delivers for it
    } else if (!session && !pinned_) {
      pinned_ = true;  // keeps its notifications: held until it leaves
      if (metrics::PoolStats* st = pool_.stats(worker_->id())) {
        st->pins[static_cast<size_t>(metrics::Pin::Listen)].add();
      }
    }
  }
  if (!session && !check_state_ && pool::tag_may_change_state(tag)) check_state_ = true;
}

void PgBackend::note_listen_tag() {
  const pool::ResponseTracker::Entry* head = tracker_.head();
  if (head == nullptr || head->listen.empty()) return;
  size_t pos = 0;
  pool::ListenOp op;
  for (size_t i = 0; pool::next_listen_op(head->listen, pos, op); ++i) {
    if (i == listen_matched_) {
      listen_tx_.push_back(std::move(op));
      break;
    }
  }
  ++listen_matched_;
}

void PgBackend::end_listen_transaction() {
  // Committed: by its COMMIT, or (no block) by running without an error.
  const bool committed = listen_end_ == 'C' || (listen_end_ == 0 && !listen_error_);
  if (committed && !listen_tx_.empty() && client_ != nullptr) client_->listen_committed(listen_tx_);
  listen_tx_.clear();
  listen_error_ = false;
  listen_end_ = 0;
}

void PgBackend::emit_synthetic() {
  std::string out;
  tracker_.take_synthetic(out, tx_status_);
  if (!out.empty() && client_ != nullptr) {
    client_->deliver(reinterpret_cast<const uint8_t*>(out.data()), out.size());
  }
}

bool PgBackend::finish_if_answered() {
  if (client_ == nullptr || internal_ != Internal::None || !tracker_.empty() || tx_status_ != 'I' ||
      pass_remaining_ != 0 || !in_.empty() || pinned() ||
      pool_.cfg().mode == config::PoolMode::Session) {
    return false;
  }
  transaction_done();
  return true;
}

void PgBackend::relay_to_client() {
  const bool session = pool_.cfg().mode == config::PoolMode::Session;
  const bool statement = pool_.cfg().mode == config::PoolMode::Statement;
  size_t fwd = 0;
  auto flush = [&] {
    if (fwd > 0) {
      client_->deliver(in_.data(), fwd);
      in_.consume(fwd);
      fwd = 0;
    }
  };
  for (;;) {
    const uint8_t* p = in_.data();
    const size_t n = in_.size();
    if (fwd >= n) break;
    if (pass_remaining_ > 0) {
      size_t k = std::min(pass_remaining_, n - fwd);
      fwd += k;
      pass_remaining_ -= k;
      continue;
    }
    pg::Header h;
    pg::Decode d = pg::peek_header(p + fwd, n - fwd, pg::kMaxMessageLen, h);
    if (d == pg::Decode::NeedMore) break;
    if (d == pg::Decode::Malformed) {
      fail(Reason::BackendProtocolError, "invalid message length from server");
      return;
    }
    if (h.type == 'A' && !session && client_->listen_fanout()) {
      // A notification to this server connection (it LISTENed for the
      // client's transaction): the pool's LISTEN connection delivers it.
      if (n - fwd < h.total()) break;
      flush();
      in_.consume(h.total());
      continue;
    }
    if ((h.type == 'D' || h.type == 'T') &&
        (tracker_.empty() ||
         (tracker_.head()->action != pool::ResponseTracker::Action::Swallow &&
          (h.type == 'D' || tracker_.head()->kind != pool::ResponseTracker::Kind::Describe)))) {
      // A DataRow (most of a result), or a RowDescription that does not
      // answer a Describe, ends no request and is relayed as it is: what
      // classify() and the checks below would conclude.
      pass_remaining_ = h.total();
      continue;
    }
    if (h.type == 'E' && !listen_tx_.empty()) listen_error_ = true;
    const pool::ResponseTracker::Verdict v = tracker_.classify(h.type);
    // The ParameterDescription of a Describe that may be replayed waits for
    // the Describe's outcome: a replay sends the client its own.
    const bool hold = h.type == 't' && replay_def_ && tracker_.head() != nullptr &&
                      tracker_.head()->kind == pool::ResponseTracker::Kind::Describe &&
                      !tracker_.head()->stmt.empty();
    bool inspect = v.completes || !v.forward || hold || h.type == 'S' || h.type == 'Z' ||
                   h.type == 'C' || h.type == 'E';
    if (inspect && h.total() > kMaxInspect) {
      if (v.completes || !v.forward) {
        fail(Reason::BackendProtocolError, "oversized reply from server");
        return;
      }
      if (hold) clear_replay();  // too large to hold: no replay
      inspect = false;
    }
    if (!inspect) {
      pass_remaining_ = h.total();
      continue;
    }
    if (n - fwd < h.total()) break;  // wait for the whole (small) message
    std::string_view body(reinterpret_cast<const char*>(p + fwd + 5), h.body_len());
    if (hold) {
      flush();
      held_param_desc_.append(reinterpret_cast<const char*>(in_.data()), h.total());
      in_.consume(h.total());
      continue;
    }
    if (h.type == 'E' && !fatal_relayed_ && v.forward && !(tracker_.empty() && client_can_move())) {
      // The server's own FATAL reaches the client; when the connection then
      // ends, the client hears nothing more from sqlmux (as from the server).
      pg::ErrorFields e;
      fatal_relayed_ =
          pg::parse_error_fields(body, e) && (e.severity == "FATAL" || e.severity == "PANIC");
    }
    if (h.type == 'S') {
      std::string_view name;
      std::string_view value;
      if (pg::parse_parameter_status(body, name, value)) {
        params_.set(name, value, true);
        client_->on_parameter_status(name, value);
      }
    } else if (h.type == 'C') {
      std::string_view tag;
      if (pg::parse_command_complete(body, tag)) note_command_tag(tag);
    } else if (h.type == 'E' && tracker_.empty() && client_can_move()) {
      // An unsolicited FATAL (e.g. pg_terminate_backend, a server shutting
      // down) while the client has nothing outstanding, in transaction mode
      // or with session_reconnect: the connection is ending; the client
      // moves to another one at its next request instead of hearing about
      // it (see fail()). Otherwise the FATAL was relayed above.
      pg::ErrorFields e;
      if (pg::parse_error_fields(body, e) && (e.severity == "FATAL" || e.severity == "PANIC")) {
        LOG_INFO("backend pid %d: %s (client %" PRIu64 " idle; it moves to another connection)",
                 pid_, e.message.c_str(), client_->id());
        flush();
        in_.consume(h.total());
        // The server closes the connection next: nothing more may go to it.
        fail(Reason::BackendDied, e.message.c_str());
        return;
      }
    }
    if (h.type != 'Z') {
      if (h.type == 'E' && tracker_.head() != nullptr &&
          (tracker_.head()->kind == pool::ResponseTracker::Kind::Bind ||
           tracker_.head()->kind == pool::ResponseTracker::Kind::Describe) &&
          !tracker_.head()->stmt.empty()) {
        const std::string stmt = tracker_.head()->stmt;
        if (note_statement_error(body, stmt) && can_replay(stmt)) {
          // Hide this attempt: no error, no ReadyForQuery; replay at its end.
          flush();
          in_.consume(h.total());
          held_param_desc_.clear();
          tracker_.complete(true, nullptr);
          replay_swallow_ = true;
          continue;
        }
      }
      if (!held_param_desc_.empty() && v.completes) {
        // The Describe's outcome (or an error that is not replayed): its
        // ParameterDescription goes first, as the server sent it.
        flush();
        client_->deliver(reinterpret_cast<const uint8_t*>(held_param_desc_.data()),
                         held_param_desc_.size());
        held_param_desc_.clear();
      }
      if (v.forward) {
        if ((h.type == 'C' || h.type == 'E' || h.type == 'I' || h.type == 's') &&
            client_->digesting()) {
          client_->digest_reply(h.type, body);
        }
        fwd += h.total();
      } else {
        flush();
        in_.consume(h.total());
      }
      if (v.completes && h.type != 'E' && replay_def_ &&
          tracker_.head()->action == pool::ResponseTracker::Action::Forward) {
        // One of the client's requests succeeded (and its reply went out):
        // a replay would run or answer it twice. Only a failure of the
        // segment's first request is replayed.
        clear_replay();
      }
      if (v.completes) {
        listen_matched_ = 0;
        std::vector<pool::ResponseTracker::Entry> failed;
        tracker_.complete(v.error_skip, &failed);
        for (const auto& e : failed) forget_failed_parse(e);
        std::string synth;
        tracker_.take_synthetic(synth, tx_status_);
        if (!synth.empty()) {
          flush();
          client_->deliver(reinterpret_cast<const uint8_t*>(synth.data()), synth.size());
        }
      }
      continue;
    }
    // ReadyForQuery
    char st = 'I';
    if (!pg::parse_ready_for_query(body, st)) {
      fail(Reason::BackendProtocolError, "malformed ReadyForQuery from server");
      return;
    }
    tx_status_ = st;
    if (st == 'I' && (!listen_tx_.empty() || listen_end_ != 0)) {
      flush();  // what came before the ReadyForQuery is not held by a LISTEN
      end_listen_transaction();
    }
    if (ddl_seen_ && st == 'I') {
      // The transaction that ran DDL is over (committed or not): statements
      // prepared from now on get new server names, prepared afresh.
      ddl_seen_ = false;
      pg_state(pool_).stale_statements().schema_changed();
    }
    if (v.completes) {
      listen_matched_ = 0;
      tracker_.complete(false, nullptr);
    }
    if (replay_swallow_) {
      replay_swallow_ = false;
      flush();
      in_.consume(h.total());
      replay();
      continue;
    }
    // (In statement mode a transaction block is refused: the client sees 'I'.)
    if (v.completes) client_->query_done(statement ? 'I' : st);
    if (v.completes && !tracker_.recording()) clear_replay();  // its segment ended
    if (statement && st != 'I') {
      // A transaction block in statement mode: replace this ReadyForQuery
      // with an error; the block is rolled back once the client is done.
      flush();
      in_.consume(h.total());
      pg::ErrorFields e;
      e.sqlstate = std::string(pg::sqlstate::kInvalidTransactionState);
      e.message = "transaction blocks are not allowed in statement pooling mode";
      e.hint = "pool \"" + pool_.cfg().name + "\" runs in statement mode: use autocommit";
      client_->send_error_and_ready(e);
      stmt_violation_ = true;
      if (tracker_.empty()) {
        PgClient* c = client_;
        client_ = nullptr;
        release_or_reset();
        c->on_backend_released();
        return;
      }
      continue;
    }
    if (check_state_ && !session && tracker_.empty() && st == 'I') {
      // The transaction may have made or ended session state that cannot
      // move (temp tables, SQL PREPARE, WITH HOLD cursors, session advisory
      // locks): the server says, before the client hears it is over.
      flush();
      held_rfq_.assign(reinterpret_cast<const char*>(in_.data()), h.total());
      in_.consume(h.total());
      check_state_ = false;
      captured_.clear();
      std::vector<std::string> queries{std::string(pool::kStateQuery)};
      if (listen_unparsed_) queries.emplace_back("SELECT pg_catalog.pg_listening_channels()");
      run_internal(Internal::StateCheck, queries);
      return;
    }
    const bool done =
        tracker_.empty() && st == 'I' && !pinned() && (!session || worker_->shutting_down());
    if (done && !pending_sets_.empty()) {
      flush();
      held_rfq_.assign(reinterpret_cast<const char*>(in_.data()), h.total());
      in_.consume(h.total());
      transaction_done();  // reads the settings back, then releases
      return;
    }
    fwd += h.total();
    std::string synth;
    tracker_.take_synthetic(synth, tx_status_);
    if (!synth.empty()) {
      flush();
      client_->deliver(reinterpret_cast<const uint8_t*>(synth.data()), synth.size());
    }
    if (done) {
      flush();
      transaction_done();
      return;
    }
    if (st == 'I' && tracker_.empty()) {
      // Between transactions on a connection it keeps (pinned, session
      // mode): notifications held during the transaction go out now.
      flush();
      client_->flush_notifications();
    }
  }
  flush();
  if (in_.empty()) in_.shrink_if_empty();
  if (client_ != nullptr && client_->queued() > kHighWater) want_read(false);
}

void PgBackend::resume_reading_if_drained() {
  if (closing() || reading()) return;
  want_read(true);
  if (!in_.empty() && client_ != nullptr && internal_ == Internal::None) relay_to_client();
}

void PgBackend::on_writable() {
  if (client_ != nullptr) client_->resume_reading_if_drained();
}

void PgBackend::client_gone(bool client_mid_message) {
  client_ = nullptr;
  if (closing()) return;
  if (internal_ == Internal::Sync) return;  // finishes, then internal_done() resets
  pinned_ = false;
  state_pins_ = 0;
  check_state_ = false;
  if (client_mid_message || pass_remaining_ > 0 || !tracker_.empty()) {
    // Bytes of this client's are in flight: the connection cannot be reused.
    terminate(Reason::ClientClosed);
    return;
  }
  release_or_reset();
}

// --- idle in the pool --------------------------------------------------------------

void PgBackend::became_idle() {
  if (state_ != BackendState::Idle) set_state(BackendState::Idle);
  want_read(true);
  if (!in_.empty()) process_idle();
}

void PgBackend::process_idle() {
  while (!closing()) {
    pg::Message m;
    size_t used = 0;
    switch (pg::decode_message(in_.data(), in_.size(), kMaxInternalMessage, m, used)) {
      case pg::Decode::NeedMore:
        in_.shrink_if_empty();
        return;
      case pg::Decode::Malformed:
        fail(Reason::BackendProtocolError, "invalid message from idle server");
        return;
      case pg::Decode::Complete:
        break;
    }
    if (m.type == 'S') {
      std::string_view name;
      std::string_view value;
      if (pg::parse_parameter_status(m.body, name, value)) params_.set(name, value, true);
    } else if (m.type == 'E') {
      pg::ErrorFields e;
      if (pg::parse_error_fields(m.body, e)) {
        LOG_WARN("idle backend pid %d: %s: %s", pid_, e.severity.c_str(), e.message.c_str());
      }
    } else if (m.type != 'N' && m.type != 'A') {
      fail(Reason::BackendProtocolError, "unexpected message from idle server");
      return;
    }
    in_.consume(used);
  }
}

void PgBackend::on_readable() {
  if (state_ == BackendState::Connecting) {
    if (native_) {
      native_readable();
    } else {
      drive_connect();
    }
    return;
  }
  switch (read_into(in_, kReadChunk)) {
    case ReadResult::Data:
      break;
    case ReadResult::Again:
      return;
    case ReadResult::Eof:
      fail(Reason::BackendDied, "server closed the connection unexpectedly");
      return;
    case ReadResult::Error:
      fail(Reason::BackendDied, strerror(last_errno_));
      return;
  }
  if (internal_ != Internal::None) {
    process_internal();
    if (internal_ != Internal::None || closing()) return;
  }
  if (client_ != nullptr && state_ == BackendState::Active) {
    relay_to_client();
  } else if (state_ == BackendState::Idle) {
    process_idle();
  }
}

// --- ending ----------------------------------------------------------------------

bool PgBackend::client_quiet() const {
  return client_ != nullptr && tracker_.empty() && pass_remaining_ == 0 &&
         internal_ == Internal::None && out_.empty() && !client_->mid_message();
}

bool PgBackend::client_can_move() const {
  // Session mode is transparent unless the pool asks for the move: a
  // direct connection would see the server end the session.
  const config::PoolConfig& cfg = pool_.cfg();
  return client_quiet() && tx_status_ == 'I' && !pinned() && !session_state_ &&
         (cfg.mode != config::PoolMode::Session || cfg.session_reconnect);
}

void PgBackend::fail(Reason why, const char* detail) {
  if (closing()) return;
  LOG_WARN("backend pid %d (pool %s) failed: %s: %s", pid_, pool_.label().c_str(),
           std::string(to_string(why)).c_str(), detail);
  const bool session = pool_.cfg().mode == config::PoolMode::Session;
  if (client_can_move()) {
    // Outside a transaction with nothing outstanding: the client gets
    // another server connection at its next request.
    PgClient* c = client_;
    client_ = nullptr;
    if (session) {
      CLOG_INFO(c->log_tag(), "moves to another server connection (session_reconnect)");
    }
    c->on_backend_lost_idle();
  } else if (client_ != nullptr) {
    // Nothing outstanding (in a transaction, pinned, or in session mode): a
    // direct connection would just see the server close, so the client is
    // closed without a message. One made up here would reach a client that
    // asked nothing: asyncpg, for one, then fails its next operation with
    // InternalClientError instead of seeing a lost connection.
    const bool silent = fatal_relayed_ || client_quiet();
    PgClient* c = client_;
    client_ = nullptr;
    pg::ErrorFields e;  // no message: nothing is sent
    if (!silent) {
      e.severity = "FATAL";
      e.sqlstate = std::string(pg::sqlstate::kConnectionFailure);
      e.message = "server connection lost: " + std::string(detail);
    }
    c->on_backend_failed(why, e);
  }
  terminate(why);
}

void PgBackend::on_terminate() {
  client_ = nullptr;  // PQfinish (in the destructor) sends Terminate
  if (native_ready_) {
    // A native login: say goodbye as libpq would (best effort, unqueued).
    std::string x;
    pg::put_terminate(x);
    if (!out_.empty()) return;
    if (tls()) {
      (void)send(x.data(), x.size());  // one TLS record; a failure is moot now
    } else {
      (void)::send(fd_, x.data(), x.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    }
  }
}

void PgBackend::on_io_error(int err) {
  if (state_ == BackendState::Connecting && native_) {
    native_failed(strerror(err));
    return;
  }
  if (state_ == BackendState::Connecting) {
    // libpq reads the socket's error and says why (e.g. connection refused);
    // connect_failed() then fails the client the connection was opened for.
    PQconnectPoll(pg_);
    std::string why = PQerrorMessage(pg_);
    connect_failed(why.empty() ? std::string(strerror(err)) : why);
    return;
  }
  fail(Reason::BackendDied, strerror(err));
}

}  // namespace sqlmux
