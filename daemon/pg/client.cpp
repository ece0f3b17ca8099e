#include "daemon/pg/client.h"

#include <cerrno>
#include <cinttypes>
#include <cstring>
#include <ctime>

#include "daemon/core/directory.h"
#include "daemon/core/log.h"
#include "daemon/core/pool.h"
#include "daemon/core/worker.h"
#include "daemon/ops/metrics.h"
#include "daemon/pg/backend.h"
#include "daemon/pg/protocol.h"
#include "pool/pg/cancel_key.h"

namespace sqlmux {

namespace {
constexpr size_t kReadChunk = 32 * 1024;
// Bytes a client may have buffered while it waits for a backend.
constexpr size_t kMaxPendingInput = 256 * 1024;
// A refused client (no descriptor left, max_client_conn, shutdown) is told
// after its startup packet, or after this long without one.
constexpr uint64_t kRefusedWaitMs = 2000;

struct CancelWork {
  uv_work_t req;
  std::shared_ptr<PGcancel> cancel;
  std::shared_ptr<const PgNativeCancel> native;  // a passthrough login's
  bool ok = false;
  char err[256];
};
}  // namespace

PgClient::PgClient(Worker& w, int fd, uint64_t id, const Failure* refusal, PeerAddress peer,
                   const PgProtocol& protocol)
    : PooledClient(w, fd, id), peer_(peer), counted_(true), protocol_(protocol) {
  log_tag_.protocol = "postgres";
  if (refusal != nullptr) refusal_ = *refusal;
}

pg::ErrorFields PgClient::refusal_error(const Failure& f) {
  pg::ErrorFields e;
  e.severity = "FATAL";
  e.detail = f.detail;
  switch (f.why) {
    case Reason::TooManyClients:
    case Reason::FdExhausted:
      // PostgreSQL's own words for 53300.
      e.sqlstate = std::string(pg::sqlstate::kTooManyConnections);
      e.message = "sorry, too many clients already";
      break;
    case Reason::TooManyLogins:
      e.sqlstate = std::string(pg::sqlstate::kTooManyConnections);
      e.message = f.message;
      break;
    case Reason::Shutdown:
      e.sqlstate = std::string(pg::sqlstate::kCannotConnectNow);
      e.message = "the database system is shutting down";
      break;
    default:
      e.sqlstate = std::string(pg::sqlstate::kInternalError);
      e.message = f.message;
      break;
  }
  return e;
}

void PgClient::write_refusal(const Failure& f, std::string_view received, std::string& out) {
  if (received.size() >= 8) {
    const auto be32 = [&](size_t at) {
      return static_cast<int32_t>(
          static_cast<uint32_t>(static_cast<uint8_t>(received[at])) << 24 |
          static_cast<uint32_t>(static_cast<uint8_t>(received[at + 1])) << 16 |
          static_cast<uint32_t>(static_cast<uint8_t>(received[at + 2])) << 8 |
          static_cast<uint32_t>(static_cast<uint8_t>(received[at + 3])));
    };
    const int32_t code = be32(4);
    if (be32(0) == 8 && (code == pg::kSslRequestCode || code == pg::kGssEncRequestCode)) {
      out.push_back('N');
    }
  }
  pg::put_error(out, refusal_error(f));
}

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
        CLOG_INFO(log_tag_, "TLS failed: %s", tls_error().c_str());
        finish(Reason::TlsFailed);
        return;
      }
      CLOG_DEBUG(log_tag_, "read: %s", strerror(last_errno_));
      finish(Reason::ClientIoError);
      return;
  }
  process_input();
}

void PgClient::process_input() {
  while (!closing()) {
    switch (state_) {
      case ClientState::Login: {
        if (failure_pending()) return;        // answered late: nothing more is read
        if (login_ == Login::Lookup) return;  // read once auth_query answered
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

// Startup, authentication and the welcome: client_login.cpp.

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
  requests_settled();
  digest_clear();  // every reply is in: what is left was answered by sqlmux
  linked_ns_ = 0;
  set_state(ClientState::Idle);
  flush_notifications();
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
  CLOG_INFO(log_tag_, "preparing its server connection failed; trying another");
  linked_ns_ = 0;
  if (!welcome_sent_) {
    need_backend();  // still logging in: the welcome waits for a backend
    return;
  }
  set_state(ClientState::Idle);
  process_input();  // its request is still buffered: it asks for a backend
}

std::string PgClient::pinned_by() const {
  return backend_ != nullptr && pool_ != nullptr && pool_->cfg().mode != config::PoolMode::Session
             ? backend_->pin_reasons()
             : std::string();
}

void PgClient::on_backend_lost_idle() {
  CLOG_INFO(log_tag_,
            "server connection lost between transactions; the next one "
            "gets another");
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
  CLOG_INFO(log_tag_, "invalid frontend message type %d", type);
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
  if (f.why == Reason::Shutdown && state_ == ClientState::Login) {
    // Not logged in yet: what PostgreSQL tells a connection during shutdown.
    fail_with(f.why, refusal_error(f));
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
    case Reason::FdExhausted:
      e.sqlstate = std::string(pg::sqlstate::kTooManyConnections);
      break;
    // As PostgreSQL ends a session for idle_session_timeout,
    // idle_in_transaction_session_timeout and transaction_timeout.
    case Reason::ClientIdleTimeout:
      e.sqlstate = std::string(pg::sqlstate::kIdleSessionTimeout);
      break;
    case Reason::IdleTransactionTimeout:
      e.sqlstate = std::string(pg::sqlstate::kIdleInTransactionTimeout);
      break;
    case Reason::TransactionTimeout:
      e.sqlstate = std::string(pg::sqlstate::kTransactionTimeout);
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
  if (why == Reason::TooManyLogins || why == Reason::FdExhausted ||
      why == Reason::TooManyUserClients) {
    // Logged by the worker's rate-limited accept lines.
    CLOG_DEBUG(log_tag_, "closing: %s", std::string(to_string(why)).c_str());
  } else if (why == Reason::ClientClosed) {
    if (state_ != ClientState::Login) {
      CLOG_AT(log::disconnections_level(), log_tag_, "closing: %s",
              std::string(to_string(why)).c_str());
    }
  } else if (why != Reason::CancelRequest) {
    CLOG_INFO(log_tag_, "closing: %s", std::string(to_string(why)).c_str());
  }
  if (state_ == ClientState::Waiting && pool_ != nullptr) pool_->cancel_wait(*worker_, id_);
  auth_query_.reset();  // a lookup in flight is abandoned
  if (backend_ != nullptr) {
    PgBackend* b = backend_;
    backend_ = nullptr;
    b->client_gone(pass_remaining_ > 0 || !backend_ready_);
  }
  if (cancel_pid_ != 0) {
    worker_->directory().unregister_cancel(pool::cancel_lookup_id(cancel_pid_, cancel_key_));
  }
  if (!listen_.empty()) {
    std::vector<std::string> all(listen_.channels().begin(), listen_.channels().end());
    pg_state(*pool_).listen_hub().change(*pool_, *worker_, id_, {}, std::move(all));
  }
  set_state(ClientState::Closing);
  close();
}

void PgClient::on_io_error(int err) {
  CLOG_DEBUG(log_tag_, "socket error: %s", strerror(err));
  finish(Reason::ClientIoError);
}

void PgClient::on_closed() {
  if (pool_ != nullptr) pool_->client_left();
  if (holds_client_key_) pg_state(*pool_).release_client_key();
  worker_->client_destroyed(this);
  if (counted_) worker_->directory().remove_client();
  delete this;
}

void PgClient::check_timeouts(uint64_t now) {
  if (state_ == ClientState::Login && refusal_ && now - state_since_ > kRefusedWaitMs) {
    // Refused anyway: its startup packet is only waited for so long (a
    // client refused for want of descriptors holds the spare one).
    fail_with(refusal_->why, refusal_error(*refusal_));
  } else if (state_ == ClientState::Login && !failure_pending() && login_timed_out(now)) {
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
  auto native = backend_->native_cancel();
  if (!handle && !native) return;
  CLOG_DEBUG(log_tag_, "forwarding cancel to backend pid %d", backend_->pid());
  auto* work = new CancelWork;
  work->req.data = work;
  work->cancel = std::move(handle);
  work->native = std::move(native);
  uv_queue_work(
      worker_->loop(), &work->req,
      [](uv_work_t* req) {
        auto* wk = static_cast<CancelWork*>(req->data);
        wk->ok = wk->cancel ? PQcancel(wk->cancel.get(), wk->err, sizeof wk->err) == 1
                            : send_native_cancel(*wk->native, wk->err, sizeof wk->err);
      },
      [](uv_work_t* req, int) {
        auto* wk = static_cast<CancelWork*>(req->data);
        if (!wk->ok) LOG_WARN("cancel request failed: %s", wk->err);
        delete wk;
      });
}

}  // namespace sqlmux
