// What a pool, a worker and the admin console need of a client or a
// backend connection, whatever protocol it speaks. PostgreSQL's PgClient /
// PgBackend (daemon/pg) and MySQL's MyClient / MyBackend (daemon/mysql)
// derive from these.
//
// The state fields live here so that each state has one list (Worker's),
// changed in one function (set_state).
#pragma once

#include <uv.h>

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#include "daemon/core/auth_limiter.h"
#include "daemon/core/failure.h"
#include "daemon/core/log.h"
#include "daemon/core/reason.h"
#include "daemon/net/conn.h"
#include "pool/intrusive_list.h"

namespace sqlmux {

class Pool;
class Worker;
class PooledBackend;
struct PoolHost;
namespace metrics {
struct PoolStats;
}

enum class ClientState { Login, Idle, Waiting, Active, Closing, Count };
[[nodiscard]] std::string_view to_string(ClientState s);
enum class BackendState { Connecting, Idle, Active, Resetting, Closing, Count };
[[nodiscard]] std::string_view to_string(BackendState s);

class PooledClient : public Conn {
 public:
  PooledClient(Worker& w, int fd, uint64_t id);

  [[nodiscard]] Worker& worker() const { return *worker_; }
  [[nodiscard]] uint64_t id() const { return id_; }
  [[nodiscard]] ClientState state() const { return state_; }
  [[nodiscard]] Pool* pool() const { return pool_; }
  [[nodiscard]] uint64_t state_since_ms() const { return state_since_; }
  [[nodiscard]] const std::string& user_name() const { return user_name_; }
  [[nodiscard]] const std::string& database() const { return database_; }
  [[nodiscard]] int64_t connect_time() const { return connect_time_; }  // unix seconds
  // How its log lines name it (CLOG_INFO(log_tag(), ...)).
  [[nodiscard]] const log::ClientTag& log_tag() const { return log_tag_; }

  [[nodiscard]] virtual PooledBackend* pooled_backend() const = 0;
  // The pool linked a backend to this client (it was Waiting).
  virtual void on_backend_linked(PooledBackend* b) = 0;
  // Accepted and polled: a protocol whose server speaks first greets here.
  virtual void on_accepted() {}
  // Fails the client (its protocol renders the failure as its own error
  // message) and closes it. No message: closes silently.
  virtual void fail(const Failure& f) = 0;
  // Housekeeping: login and wait timeouts; shutdown; cancel requests
  // (cancel_running_query: a client's CancelRequest, or query_timeout).
  virtual void check_timeouts(uint64_t now) = 0;
  virtual void on_shutdown() = 0;
  virtual void cancel_running_query() {}
  // A KILL of its thread id that a peer instance forwarded (MySQL: the
  // statement, or with !query_only the connection); other protocols have
  // no thread ids.
  virtual void kill_from_peer(bool query_only) { (void)query_only; }
  // Why a transaction-mode client holds its server connection between
  // transactions ("temp_table,listen"; empty when it does not).
  [[nodiscard]] virtual std::string pinned_by() const { return {}; }
  // Online upgrade (README "Upgrade procedure"): the packet with which
  // the new process serves this client from its next request on (its
  // protocol's record, daemon/ops/upgrade_wire.h), when the client sits
  // idle between transactions with nothing that cannot travel; empty
  // when it stays here.
  [[nodiscard]] virtual std::string upgrade_record() const { return {}; }
  // Offered to the new process and not read meanwhile: no session
  // timeout closes it (writing to a socket the new process may serve
  // already) until the answer came (server_upgrade.cpp).
  void set_handing_over(bool on) { handing_over_ = on; }

  pool::ListNode state_node;

  // A failed login (of `peer` as user_name_) is counted by the auth limiter
  // and answered by `answer` at once or, past the free failures, after its
  // delay (README "Failed logins"): meanwhile the client is not read, keeps
  // its login slot and sees no login timeout; the loop never waits.
  void login_failed(const PeerAddress& peer, std::function<void()> answer);
  // A late failure's answer is pending.
  [[nodiscard]] bool failure_pending() const { return delay_ != nullptr; }

  // At login, once the user is known: counts the client against its
  // user's max_user_client_connections. False when over (nothing counted;
  // logged by the worker's rate-limited line): the protocol refuses it with
  // Reason::TooManyUserClients. Uncounted when the client is destroyed or
  // by release_user() (MySQL COM_CHANGE_USER).
  [[nodiscard]] bool admit_user(const config::UserConfig& user);
  // Online upgrade, new process: why `pool` (found for the record's pool
  // name `record_pool`) cannot serve a client handed over from the old
  // process, or nullptr. Then the client joins it as an idle client,
  // counted against `user`'s cap (false, with `why`: over it; nothing
  // joined).
  [[nodiscard]] static const char* not_adoptable(const Pool* pool, const std::string& record_pool);
  [[nodiscard]] bool join_adopted(Pool& pool, const config::UserConfig& user, std::string& why);
  void release_user();
  // The cap that refused the last admit_user().
  [[nodiscard]] uint32_t user_cap() const { return user_cap_; }
  // Session timeouts (client_idle_timeout, idle_transaction_timeout,
  // transaction_timeout; README "Timeouts"). The protocol tells the core
  // when a request goes to the server and when the server's answer ends it
  // (with whether a transaction is then open); the worker's tick calls
  // check_session_timeouts() for Idle and Active clients, which fails an
  // overdue client (its protocol renders the reason as its own error).
  void request_sent();
  void request_answered(bool in_tx);
  // Nothing of the client's is outstanding and no transaction is open
  // (its server connection went back to the pool).
  void requests_settled();
  void check_session_timeouts(uint64_t now);
  // Still logging in past server.client_login_timeout (not while a late
  // failure's answer is pending: the protocol checks that).
  [[nodiscard]] bool login_timed_out(uint64_t now) const;

 protected:
  friend class Worker;
  void set_state(ClientState s);
  // Waits for a backend of pool_ (or gets one at once).
  void acquire_backend();

  Worker* worker_;
  uint64_t id_;
  ClientState state_ = ClientState::Login;
  uint64_t state_since_ = 0;
  Pool* pool_ = nullptr;
  std::string user_name_;
  std::string database_;
  int64_t connect_time_ = 0;
  // Its id and address from the start; user, database and application
  // name once it has logged in. The protocol's class sets `protocol`.
  log::ClientTag log_tag_;
  // Query digests ([server] query_digests): whether they are on, and one
  // statement's (normalized text; nanoseconds from request to its end).
  [[nodiscard]] bool digests_on() const;
  void record_digest(std::string_view protocol, std::string_view text, uint64_t ns, uint64_t rows,
                     bool error);
  std::string digest_scratch_;  // normalize_sql's output, reused
  // Metrics (stats_ == nullptr: off). Times are uv_hrtime() nanoseconds.
  metrics::PoolStats* stats_ = nullptr;
  uint64_t wait_since_ns_ = 0;
  uint64_t linked_ns_ = 0;  // when a backend was linked; 0 once used
  bool acquiring_ = false;  // inside Pool::acquire()
  // Session timeouts: requests sent and not yet answered; whether a
  // transaction is open and since when; the last request or answer.
  uint32_t requests_open_ = 0;
  bool tx_open_ = false;
  uint64_t tx_since_ = 0;
  uint64_t activity_since_ = 0;
  uint64_t request_since_ = 0;  // the oldest request in flight was sent (or the last answered)
  bool cancel_sent_ = false;    // query_timeout: that request's cancel went out
  bool handing_over_ = false;   // set_handing_over
  bool offer_refused_ = false;  // the new process refused it: not offered again

 private:
  static void on_delay(uv_timer_t* h);
  void stop_delay();  // the client is destroyed: the timer is closed

  // The address this client holds a login slot for (AuthLimiter::
  // login_started); invalid when it holds none. Released by the Worker
  // when the client leaves Login or is destroyed.
  PeerAddress login_slot_;
  std::string counted_user_;  // admit_user() counted it; empty: not counted
  bool user_counted_ = false;
  uint32_t user_cap_ = 0;
  uv_timer_t* delay_ = nullptr;  // a late failure's timer; freed by its close callback
  std::function<void()> delayed_answer_;
};

class PooledBackend : public Conn {
 public:
  [[nodiscard]] Worker& worker() const { return *worker_; }
  [[nodiscard]] Pool& pool() const { return pool_; }
  [[nodiscard]] BackendState state() const { return state_; }
  [[nodiscard]] uint64_t created_ms() const { return created_ms_; }
  [[nodiscard]] uint64_t state_since_ms() const { return state_since_; }
  // The server's process / connection id.
  [[nodiscard]] int pid() const { return pid_; }
  // The pool's generation when this backend was opened (RECONNECT bumps it).
  [[nodiscard]] uint64_t generation() const { return generation_; }
  // The server address it was opened to ("host:port" as configured).
  [[nodiscard]] const std::string& address() const { return address_; }
  [[nodiscard]] PoolHost* host() const { return host_; }
  [[nodiscard]] uint64_t tried_hosts() const { return tried_; }
  // A connect that failed handed its pool slot to a retry on another host.
  [[nodiscard]] bool slot_moved() const { return slot_moved_; }
  void move_slot() { slot_moved_ = true; }
  [[nodiscard]] uint64_t for_client() const { return for_client_; }
  // What this backend's worker records for its pool (nullptr: metrics off).
  [[nodiscard]] metrics::PoolStats* stats() const { return stats_; }

  [[nodiscard]] virtual PooledClient* pooled_client() const = 0;
  // Shuts the connection (counted, logged; on_terminate() says goodbye to
  // the server) and tells the pool. Idempotent.
  void terminate(Reason why);
  // Puts an idle backend on this worker's loop (after a move or connect).
  virtual void became_idle() = 0;
  virtual void check_timeouts(uint64_t now);

  // Moves to another worker's loop; the backend is unlinked and idle.
  void move_to(Worker& target, uint64_t for_client);
  void adopt(Worker& w);  // on the target worker's thread

  pool::ListNode state_node;

 protected:
  PooledBackend(Worker& w, Pool& pool, int fd, bool owns_fd, uint64_t for_client);
  void set_state(BackendState s);
  void set_stats(Worker& w);
  // The last words before the socket closes; the linked client is dropped.
  virtual void on_terminate() = 0;
  // A new connection to `where` starts polling (Connecting, writable first).
  // False when it cannot be polled: connect_failed() has told the pool and
  // the client.
  [[nodiscard]] bool start_connecting(PoolHost& where, uint64_t tried);
  // Connected (or adopted): to client `cid` when it still waits for this
  // pool, else to the pool.
  void hand_over(uint64_t cid);
  // The connect failed: records it against the host, retries another host
  // for the client it was opened for, or fails that client.
  void connect_failed(const std::string& error);
  // The connect succeeded: health bookkeeping and metrics, then hand_over.
  void connect_succeeded();
  void on_closed() override;

  Worker* worker_;
  Pool& pool_;
  BackendState state_ = BackendState::Connecting;
  uint64_t state_since_ = 0;
  uint64_t created_ms_ = 0;
  uint64_t for_client_ = 0;
  uint64_t generation_ = 0;
  std::string address_;
  PoolHost* host_ = nullptr;
  uint64_t tried_ = 0;
  bool slot_moved_ = false;
  int pid_ = 0;
  metrics::PoolStats* stats_ = nullptr;
  Worker* move_target_ = nullptr;
};

}  // namespace sqlmux
