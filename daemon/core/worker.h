// One worker thread: a libuv loop, its listeners, its clients and backends,
// and an inbox through which other workers hand it backends and requests.
#pragma once

#include <uv.h>

#include <cstdint>
#include <memory>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <vector>

#include "daemon/ops/metrics.h"
#include "daemon/core/pooled.h"
#include "pool/intrusive_list.h"

namespace sqlmux {

class Server;
class Pool;
namespace admin {
struct Job;
}

// A message to a worker from another thread (or from itself).
struct InboxMsg {
  enum class Kind {
    Adopt,       // take over `backend` (moved from another worker) for client_id
    ConnectFor,  // open a backend of `pool` for client_id (a slot was reserved)
    Donate,      // give one idle backend of `pool` to the pool's waiters
    Cancel,      // cancel the running query of client_id
    Shutdown,    // stop accepting; close clients as their transactions end
    Stop,        // close everything and leave the loop
    Kick,        // pool->kick(): serve waiters, close obsolete idle backends
    AdminRun,    // run an admin console job's part on this worker
    AdminDone,   // every worker ran it: back to the console client
  };
  Kind kind;
  Pool* pool = nullptr;
  PooledBackend* backend = nullptr;
  uint64_t client_id = 0;
  std::shared_ptr<admin::Job> job = nullptr;
};

class Worker {
 public:
  Worker(Server& server, int id);
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;
  ~Worker();

  // admin: the admin console's listener (its clients log in to "sqlmux").
  void add_listener(int fd, bool admin = false, config::ClientTls tls = config::ClientTls::Disable,
                    config::Protocol proto = config::Protocol::Postgres);
  void start();  // runs the loop on a new thread
  void join();

  // Thread-safe.
  void post(const InboxMsg& msg);

  [[nodiscard]] uv_loop_t* loop() { return &loop_; }
  [[nodiscard]] Server& server() { return server_; }
  [[nodiscard]] int id() const { return id_; }
  [[nodiscard]] uint64_t now_ms() { return uv_now(&loop_); }

  // Deferred work, run after the current I/O callbacks.
  void defer_error(Conn* c);
  void defer_close(Conn* c);

  [[nodiscard]] PooledClient* find_client(uint64_t id);
  void client_created(PooledClient* c);
  void client_destroyed(PooledClient* c);
  // The one place a client's state changes.
  void set_client_state(PooledClient* c, ClientState s);
  void set_backend_state(PooledBackend* b, BackendState s);
  // The backend leaves this worker (moved away or destroyed).
  void backend_left(PooledBackend* b);

  [[nodiscard]] size_t client_count(ClientState s) const {
    return clients_[static_cast<int>(s)].size();
  }
  [[nodiscard]] size_t backend_count(BackendState s) const {
    return backends_[static_cast<int>(s)].size();
  }
  [[nodiscard]] size_t live_clients() const { return by_id_.size(); }
  // Every client / backend on this worker (on its thread; f may not remove others).
  template <typename F>
  void for_each_client(F&& f) {
    for (auto& l : clients_) l.for_each(f);
  }
  template <typename F>
  void for_each_backend(F&& f) {
    for (auto& l : backends_) l.for_each(f);
  }
  [[nodiscard]] bool shutting_down() const { return shutting_down_; }
  // nullptr when metrics are off.
  [[nodiscard]] metrics::WorkerStats* stats() { return stats_.get(); }

 private:
  static void on_async(uv_async_t* h);
  static void on_tick(uv_timer_t* h);
  static void on_check(uv_check_t* h);
  static void on_accept(uv_poll_t* h, int status, int events);
  void drain_inbox();
  void run_deferred();
  void housekeeping();
  void begin_shutdown();
  void stop();
  void accept_from(int fd);
  void client_state_metrics(PooledClient* c, ClientState from, ClientState to);

  Server& server_;
  int id_;
  uv_loop_t loop_{};
  uv_async_t async_{};
  uv_timer_t tick_{};
  uv_check_t check_{};
  uv_idle_t idle_{};
  std::thread thread_;

  std::mutex inbox_mu_;
  std::vector<InboxMsg> inbox_;

  std::vector<uv_poll_t*> listeners_;
  std::vector<int> admin_fds_;
  std::vector<std::pair<int, config::ClientTls>> tls_modes_;  // listener fd -> client_tls
  std::vector<int> mysql_fds_;                                // listeners speaking MySQL
  std::vector<Conn*> deferred_errors_;
  std::vector<Conn*> deferred_closes_;

  std::unordered_map<uint64_t, PooledClient*> by_id_;
  pool::IntrusiveList<PooledClient, &PooledClient::state_node>
      clients_[static_cast<int>(ClientState::Count)];
  pool::IntrusiveList<PooledBackend, &PooledBackend::state_node>
      backends_[static_cast<int>(BackendState::Count)];
  bool shutting_down_ = false;
  bool stopping_ = false;
  std::unique_ptr<metrics::WorkerStats> stats_;
};

}  // namespace sqlmux
