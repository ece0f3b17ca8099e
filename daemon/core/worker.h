// One worker thread: a libuv loop, its listeners, its clients and backends,
// and an inbox of tasks through which other threads hand it backends and
// requests.
#pragma once

#include <sys/socket.h>
#include <uv.h>

#include <openssl/ssl.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <vector>

#include "daemon/core/pooled.h"
#include "daemon/net/keepalive.h"
#include "daemon/net/loop.h"
#include "daemon/ops/metrics.h"
#include "pool/digest.h"
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
// composition root gives each listener its protocol's factory). refusal:
// nullptr when the client may log in, else why it may not (max_client_conn,
// shutdown), which its protocol renders at its first chance to speak.
using ClientFactory = std::function<PooledClient*(Worker& w, int fd, uint64_t id,
                                                  const Failure* refusal, PeerAddress peer)>;

// Appends to `out` the listener's protocol's answer refusing a connection
// for `f`, written at once; `received`: what the connection had sent
// (PostgreSQL: 'N' to an SSLRequest, then an ErrorResponse; MySQL: an ERR
// packet in place of the greeting). For connections no client object can
// take any more: those queued when the listening socket closes at exit.
using RefusalWriter =
    std::function<void(const Failure& f, std::string_view received, std::string& out)>;

// Refuses a connection just accepted: reads what it sent so far, writes the
// refusal without blocking, closes it.
void refuse_now(int fd, const RefusalWriter& write, const Failure& f);
// Accepts up to `max` connections queued on the listening socket `lfd` and
// refuses each at once; returns how many. Stops at the first accept error
// (`err`: its errno, 0 when the queue is empty).
size_t refuse_pending(int lfd, const RefusalWriter& write, const Failure& f, size_t max, int& err);

// Online upgrade (README "Upgrade procedure"), old process: where its
// workers offer the clients that become idle between transactions once the
// new process serves (the lifecycle's offering thread, which owns the
// connection to the new process and posts each answer back through
// Worker::offer_answered).
class ClientOffers {
 public:
  virtual ~ClientOffers() = default;
  // Queues client `id` of worker `worker` with its record and `fd`, a
  // duplicate of its socket (taken: closed once sent). False when no more
  // offers are taken: `fd` stays the caller's.
  [[nodiscard]] virtual bool offer(int worker, uint64_t id, std::string record, int fd) = 0;
};
// What became of an offered client.
enum class OfferResult {
  Adopted,     // the new process serves it: this copy closes silently
  Refused,     // the new process said so: served here again
  Unanswered,  // sent, no answer: closed here silently (the new process may serve it)
  NotSent      // never sent (the connection broke first): served here again
};

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

  // The [server] tcp_keepalive options new sockets get (clients, servers).
  [[nodiscard]] net::Keepalive keepalive();

  // What a client is told when sqlmux has no descriptor left for it or for
  // its server connection (FATAL 53300, MySQL ERR 1040).
  [[nodiscard]] Failure fd_exhausted_failure() const;
  // A server connection could not be opened for want of a descriptor: one
  // line per kAcceptLogIntervalMs at most, with the count since the last.
  void log_fd_exhausted(const std::string& what);
  // A client refused for max_user_client_connections: one line (naming the
  // client, its address and user) per kAcceptLogIntervalMs at most, with
  // the count refused since the last.
  void log_user_cap_refusal(const PooledClient& c, uint32_t cap);

  // A listening socket whose connections `make` turns into clients;
  // `refuse` renders the refusal of those it cannot take at all.
  void add_listener(int fd, ClientFactory make, RefusalWriter refuse);
  void start();  // runs the loop on a new thread
  void join();

  // Thread-safe. After stop() the task is dropped (the loop is ending).
  void post(Task t);
  // Runs `f` in stop(), on this worker's thread, before the loop's own
  // handles close: for a protocol's loop-bound objects that belong to no
  // client or pool list (PostgreSQL's LISTEN connection).
  void at_stop(std::function<void()> f) { at_stop_.push_back(std::move(f)); }

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
  // Stops polling the listeners for good (an online upgrade handed them to
  // another process, which accepts from now on); the sockets stay open.
  void stop_accepting();
  // Close everything and leave the loop.
  void stop();
  // Online upgrade, old process: from now on each client that becomes
  // idle with a record to travel (PooledClient::upgrade_record) is offered
  // to `to`, right after the callback that made it idle; those idle now
  // first. Ends when `to` takes no more, or at shutdown.
  void start_offering(std::shared_ptr<ClientOffers> to);
  // The answer for client `id`, offered by this worker.
  void offer_answered(uint64_t id, OfferResult r);
  // nullptr when metrics are off.
  [[nodiscard]] metrics::WorkerStats* stats() { return stats_.get(); }
  // One auth_query lookup's outcome (both protocols' logins).
  void count_auth_query(metrics::AuthQueryResult r) {
    if (stats_) stats_->auth_query_lookups[static_cast<int>(r)].add();
  }
  // Query digests of this worker's clients: written on the worker's thread,
  // read (merged over the workers) by SHOW QUERIES and /metrics, under mu.
  struct Digests {
    std::mutex mu;
    pool::DigestTable table;
  };
  [[nodiscard]] Digests& digests() { return digests_; }

 private:
  struct Listener {
    uv_poll_t* handle;
    ClientFactory make;
    RefusalWriter refuse;
  };
  Digests digests_;
  static void on_async(uv_async_t* h);
  static void on_tick(uv_timer_t* h);
  static void on_accept(uv_poll_t* h, int status, int events);
  static void on_accept_resume(uv_timer_t* h);
  void drain_inbox();
  void housekeeping();
  void accept_from(Listener& l);
  // Makes the client of a connection just accepted; `refused`: the core's
  // refusal decided already (nullptr: the admission check decides).
  void admit(Listener& l, int fd, const sockaddr_storage& ss, const Failure* refused);
  // accept() failed with `err` other than EAGAIN: out of descriptors, one
  // queued connection is refused with the spare one; then the listeners
  // rest for a moment instead of waking the loop again at once.
  void accept_failed(Listener& l, int lfd, int err);
  void pause_accepting();
  // Opens the spare descriptor if it is not open; false when the limit
  // leaves no descriptor for it.
  [[nodiscard]] bool have_spare();
  // One log line per kAcceptLogIntervalMs at most, with the count since the last.
  void log_accept_errors(bool force);
  void client_state_metrics(PooledClient* c, ClientState from, ClientState to);
  // Online upgrade: offers `c` if it is idle with a record; offers the
  // clients that became idle since the last check.
  void try_offer(PooledClient* c);
  static void on_offer_check(uv_check_t* h);

  Services services_;
  int id_;
  uv_async_t async_{};
  uv_timer_t tick_{};
  std::thread thread_;

  std::mutex inbox_mu_;
  std::vector<Task> inbox_;
  std::vector<Task> draining_;  // the batch being run (its storage is reused)
  bool inbox_closed_ = false;   // under inbox_mu_: stop() closed the async handle
  std::vector<std::function<void()>> at_stop_;

  std::vector<Listener> listeners_;
  // Opened on /dev/null at start and closed when accept() finds no
  // descriptor left, so that a waiting client can be told why; reopened
  // when the listeners resume (or at the next tick).
  int spare_fd_ = -1;
  uv_timer_t accept_pause_{};
  bool accept_paused_ = false;
  struct AcceptErrors {
    uint64_t events = 0;   // failed accept wakeups since the last log line
    uint64_t refused = 0;  // clients refused since the last log line
    int last_err = 0;
    uint64_t last_log_ms = 0;
    bool logged = false;
  } accept_errors_;
  struct OpenErrors {
    uint64_t since_log = 0;  // server connections not opened since the last line
    uint64_t last_log_ms = 0;
    bool logged = false;
  } open_errors_;
  struct UserCapRefusals {
    uint64_t since_log = 0;
    uint64_t last_log_ms = 0;
    bool logged = false;
  } user_cap_refusals_;

  std::unordered_map<uint64_t, PooledClient*> by_id_;
  std::vector<PooledClient*> sweep_;  // housekeeping: the clients whose session timeouts it checks
  pool::IntrusiveList<PooledClient, &PooledClient::state_node>
      clients_[static_cast<int>(ClientState::Count)];
  pool::IntrusiveList<PooledBackend, &PooledBackend::state_node>
      backends_[static_cast<int>(BackendState::Count)];
  bool shutting_down_ = false;
  bool stopping_ = false;
  // Online upgrade (start_offering): where idle clients go, and the ids of
  // those that became Idle since the check handle last ran.
  std::shared_ptr<ClientOffers> offers_;
  std::vector<uint64_t> became_idle_;
  uv_check_t offer_check_{};
  std::unique_ptr<metrics::WorkerStats> stats_;
};

}  // namespace sqlmux
