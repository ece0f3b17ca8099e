// One worker thread: a libuv loop, its listeners, its clients and backends,
// and an inbox of tasks through which other threads hand it backends and
// requests.
#pragma once

#include <uv.h>

#include <openssl/ssl.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <vector>

#include "daemon/core/pooled.h"
#include "daemon/net/loop.h"
#include "daemon/ops/metrics.h"
#include "pool/intrusive_list.h"

namespace sqlmux {

class AuthLimiter;
class Control;
class Directory;
class HostRegistry;
class Metrics;
class Pool;
class Worker;
struct PeerAddress;

// Work for a worker's thread, posted from any thread (or from itself).
// Captures of a few pointers and ids fit in std::function's own storage,
// so posting one allocates nothing.
using Task = std::function<void(Worker&)>;

// Makes the client for a connection accepted on one listener (the
// composition root gives each listener its protocol's factory).
using ClientFactory =
    std::function<PooledClient*(Worker& w, int fd, uint64_t id, bool over_limit, PeerAddress peer)>;

// Every worker of the process.
class Workers {
 public:
  [[nodiscard]] int size() const { return static_cast<int>(list_.size()); }
  [[nodiscard]] Worker& at(int i) { return *list_[static_cast<size_t>(i)]; }
  void post_all(const Task& t);
  void add(std::unique_ptr<Worker> w) { list_.push_back(std::move(w)); }
  template <typename F>
  void for_each(F&& f) {
    for (auto& w : list_) f(*w);
  }

 private:
  std::vector<std::unique_ptr<Worker>> list_;
};

// What workers and their connections use of the process: narrow
// references, filled in by the lifecycle before the workers start.
struct Services {
  Directory* directory = nullptr;
  Workers* workers = nullptr;
  HostRegistry* hosts = nullptr;
  AuthLimiter* auth_limiter = nullptr;
  Control* control = nullptr;
  Metrics* metrics = nullptr;     // nullptr without [metrics]
  SSL_CTX* client_tls = nullptr;  // nullptr without [tls]
};

class Worker final : public EventLoop {
 public:
  Worker(const Services& services, int id);
  ~Worker() override;

  // A listening socket whose connections `make` turns into clients.
  void add_listener(int fd, ClientFactory make);
  void start();  // runs the loop on a new thread
  void join();

  // Thread-safe.
  void post(Task t);

  [[nodiscard]] const Services& services() const { return services_; }
  [[nodiscard]] Directory& directory() const { return *services_.directory; }
  [[nodiscard]] Workers& workers() const { return *services_.workers; }
  [[nodiscard]] int id() const { return id_; }

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
  // Stop accepting; close clients as their transactions end.
  void begin_shutdown();
  // Close everything and leave the loop.
  void stop();
  // nullptr when metrics are off.
  [[nodiscard]] metrics::WorkerStats* stats() { return stats_.get(); }

 private:
  struct Listener {
    uv_poll_t* handle;
    ClientFactory make;
  };
  static void on_async(uv_async_t* h);
  static void on_tick(uv_timer_t* h);
  static void on_accept(uv_poll_t* h, int status, int events);
  void drain_inbox();
  void housekeeping();
  void accept_from(Listener& l);
  void client_state_metrics(PooledClient* c, ClientState from, ClientState to);

  Services services_;
  int id_;
  uv_async_t async_{};
  uv_timer_t tick_{};
  std::thread thread_;

  std::mutex inbox_mu_;
  std::vector<Task> inbox_;
  std::vector<Task> draining_;  // the batch being run (its storage is reused)

  std::vector<Listener> listeners_;

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
