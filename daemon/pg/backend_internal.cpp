// PgBackend at the end of a client's transaction: sqlmux's own queries on
// the server connection (reading settings back, asking which pinning state
// exists, resetting before reuse) and what follows from their answers.
// The connection's setup, relay and ending are in backend.cpp.
#include <cinttypes>

#include "daemon/core/log.h"
#include "daemon/core/pool.h"
#include "daemon/core/worker.h"
#include "daemon/ops/metrics.h"
#include "daemon/pg/backend.h"
#include "daemon/pg/client.h"
#include "daemon/pg/protocol.h"

namespace sqlmux {

namespace {
// Replies to sqlmux's own queries are small.
constexpr uint32_t kMaxInternalMessage = 1u << 20;

// pool::PgPin bit i as the metrics' neutral reason.
metrics::Pin metrics_pin(int i) {
  switch (static_cast<pool::PgPin>(1u << i)) {
    case pool::PgPin::TempTable:
      return metrics::Pin::TempTable;
    case pool::PgPin::SqlPrepare:
      return metrics::Pin::SqlPrepare;
    case pool::PgPin::HoldCursor:
      return metrics::Pin::HoldCursor;
    case pool::PgPin::AdvisoryLock:
      return metrics::Pin::AdvisoryLock;
    case pool::PgPin::Listen:
      return metrics::Pin::Listen;
  }
  return metrics::Pin::TempTable;
}
}  // namespace

// The client's transaction is over (ReadyForQuery 'I', nothing owed).
void PgBackend::transaction_done() {
  LOG_DEBUG("backend pid %d: transaction done for client %" PRIu64, pid_,
            client_ != nullptr ? client_->id() : 0);
  if (!pending_sets_.empty()) {
    // Read back what SET changed, so that it follows the client.
    std::string sql = "SELECT ";
    for (size_t i = 0; i < pending_sets_.size(); ++i) {
      if (i > 0) sql += ", ";
      sql += "pg_catalog.current_setting(" + pool::quote_literal(pending_sets_[i]) + ", true)";
    }
    captured_.clear();
    run_internal(Internal::Capture, {sql});
    return;
  }
  PgClient* c = client_;
  client_ = nullptr;
  if (!held_rfq_.empty()) {
    c->deliver(reinterpret_cast<const uint8_t*>(held_rfq_.data()), held_rfq_.size());
    held_rfq_.clear();
  }
  release_or_reset();
  c->on_backend_released();
}

void PgBackend::capture_done() {
  for (size_t i = 0; i < pending_sets_.size(); ++i) {
    const std::string& name = pending_sets_[i];
    const auto* cur = params_.find(name);
    if (cur != nullptr && cur->reported) continue;  // followed through ParameterStatus
    if (i < captured_.size()) {
      params_.set(name, captured_[i], false);
      if (client_ != nullptr) client_->params().set(name, captured_[i], false);
    }
  }
  if (!internal_failed_ && !unattributed_set_ &&
      static_cast<size_t>(set_tags_) <= pending_sets_.size()) {
    dirty_ &= ~kDirtySettings;  // every SET was read back: nothing to undo
  }
  pending_sets_.clear();
  set_tags_ = 0;
  unattributed_set_ = false;
  transaction_done();
}

void PgBackend::state_check_done() {
  if (listen_unparsed_) {
    // The rows after the state row: channels this connection listens on
    // now (committed). In fan-out mode it listened on none before this
    // client's transaction (or only on the client's own, if pinned): each
    // is the client's, as if it had run LISTEN.
    listen_unparsed_ = false;
    std::vector<pool::ListenOp> ops;
    for (size_t i = 4; i < captured_.size() && !internal_failed_; ++i) {
      ops.push_back({pool::ListenOp::Kind::Listen, captured_[i]});
    }
    if (captured_.size() > 4) captured_.resize(4);
    if (!ops.empty()) {
      dirty_ |= kDirtyListen;
      if (client_ != nullptr) {
        CLOG_DEBUG(client_->log_tag(), "listens on %zu channel(s) found after its transaction",
                   ops.size());
        client_->listen_committed(ops);
      }
    }
  }
  const std::optional<uint8_t> now =
      internal_failed_ || tx_status_ != 'I' ? std::nullopt : pool::pins_from_row(captured_);
  if (!now) {
    // Unknown: whatever there was may still be there. Keep what was known
    // and ask again at the end of the next transaction.
    LOG_WARN("backend pid %d: checking for session state failed: %s", pid_,
             internal_failed_ ? internal_error_.message.c_str() : "unexpected reply");
    check_state_ = true;
  } else {
    const uint8_t added = *now & static_cast<uint8_t>(~state_pins_);
    if (added != 0 && client_ != nullptr) {
      CLOG_INFO(client_->log_tag(), "pinned to backend pid %d: %s (session state that cannot move)",
                pid_, pool::pins_to_string(added).c_str());
      if (metrics::PoolStats* st = pool_.stats(worker_->id())) {
        for (int i = 0; i < pool::kPgPinKinds; ++i) {
          if ((added & (1u << i)) != 0) st->pins[static_cast<size_t>(metrics_pin(i))].add();
        }
      }
    } else if (*now == 0 && state_pins_ != 0 && client_ != nullptr) {
      CLOG_DEBUG(client_->log_tag(), "backend pid %d no longer pinned", pid_);
    }
    state_pins_ = *now;
    if (state_pins_ != 0) dirty_ |= kDirtyState;
  }
  if (client_ == nullptr) {
    held_rfq_.clear();
    release_or_reset();  // the client left meanwhile
    return;
  }
  if (!pinned()) {
    transaction_done();  // settings read back if any, the RFQ delivered, released
    return;
  }
  // Pinned: the client keeps this connection and hears the transaction end.
  client_->deliver(reinterpret_cast<const uint8_t*>(held_rfq_.data()), held_rfq_.size());
  held_rfq_.clear();
  if (!in_.empty()) relay_to_client();
  if (client_ != nullptr) client_->on_backend_ready();
}

std::string PgBackend::pin_reasons() const {
  return pool::pins_to_string(static_cast<uint8_t>(
      state_pins_ | (pinned_ ? static_cast<uint8_t>(pool::PgPin::Listen) : 0)));
}

void PgBackend::release_or_reset() {
  unattributed_set_ = false;  // (its RESET ALL is queued below)
  std::vector<std::string> queries;
  if (tx_status_ != 'I') queries.emplace_back("ROLLBACK");
  if (pool_.cfg().mode == config::PoolMode::Session || (dirty_ & kDirtyState) != 0) {
    // (Pinning state, too: temp tables, cursors, advisory locks, SQL
    // statements; DISCARD ALL also does what the branch below would.)
    queries.emplace_back("DISCARD ALL");
  } else {
    if ((dirty_ & kDirtySettings) != 0) queries.emplace_back("RESET ALL");
    if ((dirty_ & kDirtyListen) != 0) queries.emplace_back("UNLISTEN *");
    if ((dirty_ & kDirtyPrepared) != 0) queries.emplace_back("DEALLOCATE ALL");
  }
  if (queries.empty()) {
    set_state(BackendState::Idle);
    pool_.release(*worker_, this);
    return;
  }
  set_state(BackendState::Resetting);
  run_internal(Internal::Reset, queries);
}

// --- sqlmux's own queries --------------------------------------------------------

void PgBackend::run_internal(Internal kind, const std::vector<std::string>& queries) {
  internal_ = kind;
  internal_rfq_ = static_cast<int>(queries.size());
  internal_failed_ = false;
  internal_error_ = pg::ErrorFields{};
  std::string out;
  for (const auto& q : queries) pg::put_query(out, q);
  send(out.data(), out.size());
}

void PgBackend::process_internal() {
  while (internal_ != Internal::None && !closing()) {
    pg::Message m;
    size_t used = 0;
    switch (pg::decode_message(in_.data(), in_.size(), kMaxInternalMessage, m, used)) {
      case pg::Decode::NeedMore:
        return;
      case pg::Decode::Malformed:
        fail(Reason::BackendProtocolError, "invalid message from server");
        return;
      case pg::Decode::Complete:
        break;
    }
    switch (m.type) {
      case 'Z': {
        char st = 'I';
        if (!pg::parse_ready_for_query(m.body, st)) {
          fail(Reason::BackendProtocolError, "malformed ReadyForQuery from server");
          return;
        }
        tx_status_ = st;
        in_.consume(used);
        if (--internal_rfq_ == 0) internal_done();
        continue;
      }
      case 'E':
        if (!internal_failed_) {
          internal_failed_ = true;
          if (!pg::parse_error_fields(m.body, internal_error_)) {
            internal_error_.message = "server error";
          }
        }
        break;
      case 'S': {
        std::string_view name;
        std::string_view value;
        if (pg::parse_parameter_status(m.body, name, value)) {
          params_.set(name, value, true);
          if (client_ != nullptr && internal_ == Internal::Sync) {
            const auto* had = client_->params().find(name);
            // (Before the welcome, it carries the value.)
            if (client_->welcome_sent() && (had == nullptr || had->value != value)) {
              std::string out;
              pg::put_parameter_status(out, name, value);
              client_->deliver(reinterpret_cast<const uint8_t*>(out.data()), out.size());
            }
            client_->on_parameter_status(name, value);
          }
        }
        break;
      }
      case 'D':
        if (internal_ == Internal::Capture || internal_ == Internal::StateCheck) {
          pg::Reader r(m.body);
          uint16_t cols = 0;  // unsigned, as every 16-bit count
          if (r.u16(cols)) {
            for (uint16_t i = 0; i < cols; ++i) {
              int32_t len = 0;
              std::string_view v;
              if (!r.i32(len)) break;
              if (len < 0) {
                captured_.emplace_back();
              } else if (r.bytes(static_cast<size_t>(len), v)) {
                captured_.emplace_back(v);
              }
            }
          }
        }
        break;
      default:
        break;  // rows, CommandComplete, notices of our own queries
    }
    in_.consume(used);
  }
}

void PgBackend::internal_done() {
  Internal kind = internal_;
  internal_ = Internal::None;
  if (kind == Internal::Capture) {
    if (internal_failed_ || tx_status_ != 'I') {
      LOG_WARN("backend pid %d: reading settings back failed: %s", pid_,
               internal_error_.message.c_str());
    }
    capture_done();
    return;
  }
  if (kind == Internal::StateCheck) {
    state_check_done();
    return;
  }
  if (kind == Internal::Sync) {
    if (internal_failed_) {
      // sqlmux's own statement failed: this connection goes (counted as
      // backend_param_failed); the client, between transactions with its
      // request still unsent, is served by another one (PgClient decides).
      LOG_WARN("backend pid %d: applying session parameters failed: %s (%s); closing it", pid_,
               internal_error_.message.c_str(), internal_error_.sqlstate.c_str());
      PgClient* c = client_;
      client_ = nullptr;
      pg::ErrorFields e = internal_error_;
      terminate(Reason::BackendParamFailed);
      if (c != nullptr) c->on_backend_setup_failed(e);
      return;
    }
    for (const auto& ch : pending_changes_) {
      const auto* cur = params_.find(ch.name);
      if (ch.reset) {
        if (cur != nullptr && !cur->reported) params_.erase(ch.name);
      } else if (cur == nullptr || !cur->reported) {
        params_.set(ch.name, ch.value, false);
      } else if (client_ != nullptr) {
        // Reported without a change: the server's spelling is the same value.
        client_->on_parameter_status(cur->name, cur->value);
      }
    }
    pending_changes_.clear();
    if (client_ == nullptr) {
      release_or_reset();  // the client left while its parameters were applied
      return;
    }
    client_->on_backend_ready();
    return;
  }
  // Reset before reuse.
  if (internal_failed_ || tx_status_ != 'I') {
    LOG_WARN("backend pid %d: reset failed: %s", pid_, internal_error_.message.c_str());
    terminate(Reason::ServerResetFailed);
    return;
  }
  params_.clear_unreported();
  if ((dirty_ & (kDirtyPrepared | kDirtyState)) != 0 ||
      pool_.cfg().mode == config::PoolMode::Session) {
    statements_.clear();  // DEALLOCATE ALL / DISCARD ALL dropped them
  }
  dirty_ = 0;
  set_state(BackendState::Idle);
  pool_.release(*worker_, this);
}

}  // namespace sqlmux
