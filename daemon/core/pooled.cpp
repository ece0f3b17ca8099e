#include "daemon/core/pooled.h"

#include <cassert>
#include <cinttypes>
#include <ctime>

#include "daemon/core/control.h"
#include "daemon/core/directory.h"
#include "daemon/core/log.h"
#include "daemon/core/pool.h"
#include "daemon/core/worker.h"
#include "daemon/ops/hosts.h"
#include "daemon/ops/metrics.h"

namespace sqlmux {

std::string_view to_string(ClientState s) {
  switch (s) {
    case ClientState::Login:
      return "login";
    case ClientState::Idle:
      return "idle";
    case ClientState::Waiting:
      return "waiting";
    case ClientState::Active:
      return "active";
    case ClientState::Closing:
      return "closing";
    case ClientState::Count:
      break;
  }
  return "unknown";
}

std::string_view to_string(BackendState s) {
  switch (s) {
    case BackendState::Connecting:
      return "connecting";
    case BackendState::Idle:
      return "idle";
    case BackendState::Active:
      return "active";
    case BackendState::Resetting:
      return "resetting";
    case BackendState::Closing:
      return "closing";
    case BackendState::Count:
      break;
  }
  return "unknown";
}

// --- clients -------------------------------------------------------------------

PooledClient::PooledClient(Worker& w, int fd, uint64_t id)
    : Conn(w, fd, true), worker_(&w), id_(id) {
  state_since_ = w.now_ms();
  connect_time_ = static_cast<int64_t>(std::time(nullptr));
  log_tag_.id = id;
  log_tag_.address = log::ClientTag::address_of(fd);
}

void PooledClient::acquire_backend() {
  set_state(ClientState::Waiting);
  acquiring_ = true;
  pool_->acquire(*worker_, *this);
  acquiring_ = false;
}

const char* PooledClient::not_adoptable(const Pool* pool, const std::string& record_pool) {
  if (pool == nullptr) return "no such pool";
  if (pool->cfg().name != record_pool || pool->cfg().mode == config::PoolMode::Session ||
      pool->logs_in_as_client()) {
    return "its pool is configured differently here";
  }
  return nullptr;
}

bool PooledClient::join_adopted(Pool& pool, const config::UserConfig& user, std::string& why) {
  if (!admit_user(user)) {
    why = "max_user_client_connections reached";
    return false;
  }
  pool_ = &pool;
  pool.client_joined();
  if ((stats_ = pool.stats(worker_->id())) != nullptr) {
    count_bytes(&stats_->client_received_bytes, &stats_->client_sent_bytes);
  }
  set_state(ClientState::Idle);
  return true;
}

bool PooledClient::admit_user(const config::UserConfig& user) {
  release_user();
  Directory& dir = worker_->directory();
  user_cap_ = config::user_client_cap(dir.config(), user);
  if (!dir.try_add_user_client(user.name, user_cap_)) {
    worker_->log_user_cap_refusal(*this, user_cap_);
    return false;
  }
  counted_user_ = user.name;
  user_counted_ = true;
  return true;
}

void PooledClient::release_user() {
  if (!user_counted_) return;
  worker_->directory().remove_user_client(counted_user_);
  user_counted_ = false;
  counted_user_.clear();
}

void PooledClient::login_failed(const PeerAddress& peer, std::function<void()> answer) {
  const auto& sc = worker_->directory().config().server;
  const uint64_t ms = worker_->services().auth_limiter->failed(peer, user_name_, worker_->now_ms(),
                                                               auth_policy(sc));
  if (ms == 0 || closing()) {
    answer();
    return;
  }
  CLOG_DEBUG(log_tag_, "failed login of \"%s\" from %s answered in %" PRIu64 " ms",
             user_name_.c_str(), peer.text().c_str(), ms);
  if (metrics::WorkerStats* ws = worker_->stats(); ws != nullptr)
    ws->auth_delays.observe_ns(ms * 1000000);
  want_read(false);
  delayed_answer_ = std::move(answer);
  if (delay_ == nullptr) {
    delay_ = new uv_timer_t;
    uv_timer_init(worker_->loop(), delay_);
    delay_->data = this;
  }
  uv_timer_start(delay_, &PooledClient::on_delay, ms, 0);
}

void PooledClient::on_delay(uv_timer_t* h) {
  auto* c = static_cast<PooledClient*>(h->data);
  c->stop_delay();
  std::function<void()> answer = std::move(c->delayed_answer_);
  c->delayed_answer_ = nullptr;
  if (!c->closing() && answer) answer();
}

void PooledClient::stop_delay() {
  if (delay_ == nullptr) return;
  uv_close(reinterpret_cast<uv_handle_t*>(delay_),
           [](uv_handle_t* h) { delete reinterpret_cast<uv_timer_t*>(h); });
  delay_ = nullptr;
}

void PooledClient::set_state(ClientState s) {
  if (s == state_) return;
  worker_->set_client_state(this, s);
  state_ = s;
  state_since_ = worker_->now_ms();
}

void PooledClient::request_sent() {
  const uint64_t now = worker_->now_ms();
  if (requests_open_ == 0 && !tx_open_) tx_since_ = now;  // a transaction may start here
  if (requests_open_ == 0) {
    request_since_ = now;
    cancel_sent_ = false;
  }
  ++requests_open_;
  activity_since_ = now;
}

void PooledClient::request_answered(bool in_tx) {
  if (requests_open_ > 0) --requests_open_;
  tx_open_ = in_tx;
  activity_since_ = worker_->now_ms();
  request_since_ = activity_since_;  // a pipelined next request is timed from here
  cancel_sent_ = false;
}

void PooledClient::requests_settled() {
  requests_open_ = 0;
  tx_open_ = false;
  activity_since_ = worker_->now_ms();
}

bool PooledClient::login_timed_out(uint64_t now) const {
  const auto limit = worker_->directory().config().server.client_login_timeout.count();
  return limit > 0 && now - state_since_ > static_cast<uint64_t>(limit);
}

void PooledClient::check_session_timeouts(uint64_t now) {
  if (pool_ == nullptr || closing() || failure_pending() || handing_over_) return;
  if (state_ != ClientState::Idle && state_ != ClientState::Active) return;
  const config::PoolConfig& c = pool_->cfg();
  auto over = [now](uint64_t since, config::Duration limit) {
    return limit.count() > 0 && since != 0 && now - since > static_cast<uint64_t>(limit.count());
  };
  const uint64_t idle_since = activity_since_ != 0 ? activity_since_ : state_since_;
  Reason why = Reason::Internal;
  std::string message;
  config::Duration limit{};
  if (tx_open_ && over(tx_since_, c.transaction_timeout)) {
    why = Reason::TransactionTimeout;
    message = "terminating connection due to transaction timeout";
    limit = c.transaction_timeout;
  } else if (requests_open_ == 0 && tx_open_ && over(idle_since, c.idle_transaction_timeout)) {
    why = Reason::IdleTransactionTimeout;
    message = "terminating connection due to idle-in-transaction timeout";
    limit = c.idle_transaction_timeout;
  } else if (requests_open_ == 0 && !tx_open_ && over(idle_since, c.client_idle_timeout)) {
    why = Reason::ClientIdleTimeout;
    message = "terminating connection due to idle-session timeout";
    limit = c.client_idle_timeout;
  } else {
    if (requests_open_ > 0 && !cancel_sent_ && over(request_since_, c.query_timeout)) {
      // Cancelled on the server: the client gets the server's error and
      // keeps its session.
      cancel_sent_ = true;
      CLOG_INFO(log_tag_, "query_timeout (%" PRId64 " ms, pool %s): cancelling the request",
                static_cast<int64_t>(c.query_timeout.count()), pool_->label().c_str());
      if (metrics::WorkerStats* ws = worker_->stats(); ws != nullptr) {
        ws->client_errors[static_cast<int>(Reason::QueryTimeout)].add();
      }
      cancel_running_query();
    }
    return;
  }
  CLOG_INFO(log_tag_, "%s (%" PRId64 " ms, pool %s)", std::string(to_string(why)).c_str(),
            static_cast<int64_t>(limit.count()), pool_->label().c_str());
  fail({why, std::move(message), {}});
}

// --- backends ------------------------------------------------------------------

PooledBackend::PooledBackend(Worker& w, Pool& pool, int fd, bool owns_fd, uint64_t for_client)
    : Conn(w, fd, owns_fd), worker_(&w), pool_(pool), for_client_(for_client) {
  generation_ = pool.generation();
  created_ms_ = state_since_ = w.now_ms();
  set_stats(w);
}

void PooledBackend::set_stats(Worker& w) {
  stats_ = pool_.stats(w.id());
  if (stats_ != nullptr) count_bytes(&stats_->server_received_bytes, &stats_->server_sent_bytes);
}

void PooledBackend::set_state(BackendState s) {
  worker_->set_backend_state(this, s);
  state_ = s;
  state_since_ = worker_->now_ms();
}

bool PooledBackend::start_connecting(PoolHost& where, uint64_t tried) {
  address_ = where.address.text;
  host_ = &where;
  tried_ = tried;
  worker_->set_backend_state(this, BackendState::Connecting);
  if (!attach()) {
    connect_failed("cannot poll the backend socket");
    return false;
  }
  want_read(false);
  want_write(true);
  return true;
}

void PooledBackend::terminate(Reason why) {
  if (closing()) return;
  LOG_DEBUG("backend %d (pool %s) closing: %s", pid_, pool_.label().c_str(),
            std::string(to_string(why)).c_str());
  if (stats_ != nullptr && metrics::is_server_error(why)) {
    stats_->server_errors[static_cast<int>(why)].add();
  }
  on_terminate();
  set_state(BackendState::Closing);
  close();
  pool_.backend_gone(*worker_, this);
}

void PooledBackend::check_timeouts(uint64_t now) {
  if (state_ != BackendState::Connecting) return;
  auto limit = static_cast<uint64_t>(pool_.cfg().server_connect_timeout.count());
  if (limit > 0 && now - state_since_ > limit) connect_failed("timeout expired");
}

void PooledBackend::hand_over(uint64_t cid) {
  PooledClient* c = cid != 0 ? worker_->find_client(cid) : nullptr;
  if (c != nullptr && c->state() == ClientState::Waiting && c->pool() == &pool_ &&
      c->pooled_backend() == nullptr) {
    c->on_backend_linked(this);
  } else {
    pool_.release(*worker_, this);
  }
}

void PooledBackend::connect_succeeded() {
  LOG_DEBUG("backend %d connected for pool %s", pid_, pool_.label().c_str());
  if (stats_ != nullptr) stats_->connect_outcome(uv_hrtime(), true);
  if (const auto& h = worker_->directory().config().health) {
    host_->status->record(true, std::nullopt, {}, h->fall, h->rise);
  }
  uint64_t cid = for_client_;
  for_client_ = 0;
  set_state(BackendState::Idle);
  hand_over(cid);
}

void PooledBackend::connect_failed(const std::string& error) {
  const std::string msg = log::one_line(error.c_str());
  LOG_WARN("backend connect for pool %s failed: %s", pool_.label().c_str(), msg.c_str());
  if (stats_ != nullptr) {
    stats_->connect_failures.add();
    stats_->connect_outcome(uv_hrtime(), false);
  }
  // With health checks, a failed connect counts as a failed check; without,
  // only its error is kept (SHOW BACKENDS).
  if (const auto& h = worker_->directory().config().health) {
    if (host_->status->record(false, std::nullopt, msg, h->fall, h->rise)) {
      worker_->services().control->hosts_changed();
    }
  } else {
    host_->status->note_error(msg);
  }
  uint64_t cid = for_client_;
  for_client_ = 0;
  PooledClient* c = cid != 0 ? worker_->find_client(cid) : nullptr;
  if (c != nullptr && c->state() == ClientState::Waiting && c->pooled_backend() == nullptr &&
      pool_.retry_connect(*worker_, this, cid)) {
    terminate(Reason::BackendConnectFailed);  // the retry has the slot and the client
    return;
  }
  terminate(Reason::BackendConnectFailed);
  c = cid != 0 ? worker_->find_client(cid) : nullptr;
  if (c != nullptr && c->state() == ClientState::Waiting) {
    c->fail({Reason::BackendConnectFailed,
             "sqlmux could not connect to the server " + address_ + " for database \"" +
                 pool_.cfg().name + "\": " + msg,
             {}});
  }
}

void PooledBackend::move_to(Worker& target, uint64_t for_client) {
  assert(pooled_client() == nullptr && out_.empty());
  worker_->backend_left(this);  // out of this worker's lists; adopt() joins the target's
  for_client_ = for_client;
  move_target_ = &target;
  detach([](Conn* c) {
    auto* b = static_cast<PooledBackend*>(c);
    b->move_target_->post([b](Worker& w) { b->adopt(w); });
  });
}

void PooledBackend::adopt(Worker& w) {
  worker_ = &w;
  set_loop(w);
  move_target_ = nullptr;
  set_stats(w);
  state_ = BackendState::Closing;  // not in any list of w yet
  set_state(BackendState::Idle);
  if (!attach()) {
    terminate(Reason::Internal);
    return;
  }
  uint64_t cid = for_client_;
  for_client_ = 0;
  hand_over(cid);
}

void PooledBackend::on_closed() {
  worker_->backend_left(this);
  delete this;
}

}  // namespace sqlmux

namespace sqlmux {

bool PooledClient::digests_on() const {
  return pool_ != nullptr && worker_->directory().config().server.query_digests;
}

void PooledClient::record_digest(std::string_view protocol, std::string_view text, uint64_t ns,
                                 uint64_t rows, bool error) {
  if (pool_ == nullptr) return;
  const config::ServerConfig& s = worker_->directory().config().server;
  if (!s.query_digests) return;
  Worker::Digests& d = worker_->digests();
  std::lock_guard<std::mutex> lock(d.mu);  // only SHOW QUERIES and /metrics contend
  d.table.set_capacity(s.query_digests_max);
  d.table.record(protocol, pool_->cfg().name, user_name_, text, ns / 1000, rows, error);
}

}  // namespace sqlmux
