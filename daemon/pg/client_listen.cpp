// A client's side of LISTEN fan-out (listen_hub.h): its channels change
// when a transaction that ran LISTEN/UNLISTEN commits, and notifications
// from the pool's LISTEN connection reach it between its transactions.
#include <cinttypes>

#include "daemon/core/log.h"
#include "daemon/core/pool.h"
#include "daemon/pg/client.h"
#include "daemon/pg/protocol.h"

namespace sqlmux {

namespace {
// Notifications a client has not read (held, or queued on its socket)
// beyond which it is disconnected rather than grow without bound.
constexpr size_t kMaxNotifyBacklog = size_t{64} * 1024 * 1024;
}  // namespace

bool PgClient::listen_fanout() const {
  if (pool_ == nullptr) return false;
  const config::PoolConfig& cfg = pool_->cfg();
  // A pool without `user` nor a plaintext password (SCRAM passthrough):
  // the LISTEN connection, libpq's, could not log in; LISTEN pins instead.
  const bool passthrough = pool_->logs_in_as_client();
  return cfg.mode != config::PoolMode::Session && !cfg.listen_pin && !passthrough;
}

void PgClient::listen_committed(const std::vector<pool::ListenOp>& ops) {
  std::vector<std::string> added;
  std::vector<std::string> removed;
  listen_.apply(ops, added, removed);
  if (added.empty() && removed.empty()) return;
  CLOG_DEBUG(log_tag_, "listens on %zu channel(s) (+%zu -%zu)", listen_.size(), added.size(),
             removed.size());
  if (!added.empty()) {
    // Its LISTEN completes (ReadyForQuery) once the pool's connection
    // listens too: a notification sent after that reaches it.
    ++listen_waits_;
    cork();
  }
  pg_state(*pool_).listen_hub().change(*pool_, *worker_, id_, std::move(added), std::move(removed));
}

void PgClient::on_listen_ready() {
  if (listen_waits_ == 0 || closing()) return;  // (close() uncorked it)
  --listen_waits_;
  uncork();
}

void PgClient::notify_batch(bool begin) {
  if (begin) {
    if (!closing()) {
      cork();
      notify_corked_ = true;
    }
  } else if (notify_corked_) {
    notify_corked_ = false;
    if (!closing()) uncork();  // (close() uncorked it)
  }
}

void PgClient::notify(const std::string& msg) {
  if (closing()) return;
  if (backend_ != nullptr) {
    notify_held_ += msg;  // inside a transaction: at its end
  } else {
    send(msg.data(), msg.size());
  }
  if (notify_held_.size() + queued() > kMaxNotifyBacklog) {
    CLOG_WARN(log_tag_, "more than %zu bytes of notifications unread; disconnecting it",
              kMaxNotifyBacklog);
    notify_held_.clear();
    send_fatal(pg::sqlstate::kOutOfMemory,
               "sqlmux: too many notifications waiting for this client to read them",
               Reason::NotificationBacklog);
  }
}

void PgClient::flush_notifications() {
  if (notify_held_.empty() || closing()) return;
  send(notify_held_.data(), notify_held_.size());
  notify_held_.clear();
}

}  // namespace sqlmux
