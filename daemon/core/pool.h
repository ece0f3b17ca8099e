// A pool: one limit on backend connections shared by all workers, a FIFO
// of waiting clients, and per-worker lists of idle backends. The rules are
// pool::Scheduler's (pool/scheduler.h); this shell feeds it and carries out
// its decisions on the connections.
//
// Locking: one mutex per pool, held only around the scheduler's calls,
// never across I/O. Each idle backend belongs to one worker's loop; a
// backend released on worker A for a client waiting on worker B moves to
// B's loop.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "config/config.h"
#include "daemon/core/protocol.h"
#include "daemon/ops/metrics.h"
#include "pool/host_policy.h"
#include "pool/limits.h"
#include "pool/scheduler.h"

namespace sqlmux {

class PooledBackend;
class PooledClient;
class HostStatus;
class Worker;
struct PoolEnv;

// A backend host as one pool uses it. Fields below `status` are guarded by
// the pool's mutex. Entries live as long as their pool (a reload that drops
// a host only unlists it), so a backend may keep a pointer. The pool's
// connection counts per host are the scheduler's, under `id`.
struct PoolHost {
  HostStatus* status = nullptr;  // shared: health, observed role, DISABLE
  config::Address address;
  pool::Role configured = pool::Role::Primary;
  uint32_t weight = 1;
  int id = 0;  // the scheduler's host id, stable
};

class Pool final : private pool::SlotGate {
 public:
  Pool(PoolEnv& env, config::PoolConfig cfg, std::string backend_user,
       std::string backend_password);

  // The current configuration. A reload swaps in a new immutable version;
  // earlier versions stay alive with the pool, so a reference taken by a
  // worker is never invalidated underneath it.
  [[nodiscard]] const config::PoolConfig& cfg() const {
    return *cfg_.load(std::memory_order_acquire);
  }
  [[nodiscard]] const std::string& label() const { return label_; }
  [[nodiscard]] const std::string& backend_user() const { return backend_user_; }
  [[nodiscard]] const std::string& backend_password() const { return backend_password_; }
  // No `user` and no password of its own: the pool logs in to the server
  // as each client, with what that client's login gave (passthrough,
  // auth_query).
  [[nodiscard]] bool logs_in_as_client() const { return !cfg().user && backend_password_.empty(); }
  // The pool's protocol, and the state that protocol keeps per pool.
  [[nodiscard]] ProtocolDriver& driver() const { return driver_; }
  [[nodiscard]] PoolState* protocol_state() const { return protocol_state_.get(); }
  // What worker `w` records for this pool; nullptr when metrics are off.
  [[nodiscard]] metrics::PoolStats* stats(int w) {
    return stats_.empty() ? nullptr : stats_[static_cast<size_t>(w)].get();
  }

  // All calls below run on worker `w`'s thread.

  // The client needs a backend: hands it an idle one, opens a new one, or
  // queues it (FIFO).
  void acquire(Worker& w, PooledClient& c);
  // The client stopped waiting (left, timed out).
  void cancel_wait(Worker& w, uint64_t client_id);
  // A clean, idle backend: to the first waiter, or to this worker's idle list.
  void release(Worker& w, PooledBackend* b);
  // A backend of this pool is gone (closed or failed to connect).
  void backend_gone(Worker& w, PooledBackend* b);
  // Another worker asked for one of this worker's idle backends.
  void donate(Worker& w);
  // Open a backend for client_id on this worker (a slot is reserved).
  void connect_for(Worker& w, uint64_t client_id);
  // A connect for client_id failed: tries the next usable host not yet
  // tried, in the same slot. False when none is left (the caller fails the
  // client); true when the retry took the slot over.
  [[nodiscard]] bool retry_connect(Worker& w, PooledBackend* failed, uint64_t client_id);
  // The host a new connection would go to now, without counting one: for a
  // protocol's own connection beside the pool's size (PostgreSQL's LISTEN
  // connection). nullptr when no host is usable.
  [[nodiscard]] PoolHost* pick_host_uncounted();
  // Timeouts of idle backends on this worker; min_idle upkeep.
  void housekeep(Worker& w, uint64_t now);
  // Shutdown: close this worker's idle backends.
  void close_idle(Worker& w);

  // SHOW BACKENDS: one row per host of the current configuration.
  struct HostRow {
    std::string address;
    pool::Role role;        // observed, else configured
    pool::Role configured;  // as configured
    uint32_t weight;
    uint32_t connections;
    uint32_t active;
  };
  [[nodiscard]] std::vector<HostRow> host_rows();

  struct Counts {
    uint32_t total = 0;
    uint32_t idle = 0;
    uint32_t waiting = 0;
  };
  [[nodiscard]] Counts counts();
  // How long the longest-waiting client has waited, at `now_ms` (the
  // workers' monotonic clock); 0 when nobody waits. Any thread.
  [[nodiscard]] double oldest_wait_seconds(uint64_t now_ms);
  // When this pool was created, on the same clock (the console's SHOW
  // STATS averages since then).
  [[nodiscard]] uint64_t created_ms() const { return created_ms_; }
  // Server connections open or connecting beyond `size` (the reserve pool
  // in use). Any thread.
  [[nodiscard]] uint32_t reserve_in_use();

  // --- Caps shared with other pools (max_db_connections,
  // max_user_connections); any thread ---
  // Which caps this pool and `o` count under together (pool::CapBits).
  [[nodiscard]] uint8_t shared_caps(const Pool& o) const;
  // Clients waiting because a cap in `caps` refused their slot.
  [[nodiscard]] size_t waiting_on_cap(uint8_t caps = pool::kCapDb | pool::kCapUser);
  // On worker `w`: closes `w`'s longest-idle backend of this pool, for a
  // pool waiting at a shared cap.
  void evict_idle(Worker& w);

  // --- Admin console and reload (any thread unless noted) ---
  void set_config(const config::PoolConfig& cfg);
  // Paused: no backend is handed to a new transaction; waiters queue.
  void set_paused(bool on);
  // Server connections are opened for waiting clients only: min_idle is
  // not kept (UserSecrets::server_login_needs_client).
  void set_clients_only();
  [[nodiscard]] bool paused();
  // Retired by a reload: no new clients; backends close once no client is left.
  void set_retired(bool on);
  [[nodiscard]] bool retired();
  // RECONNECT: backends opened before this call close when next idle.
  void bump_generation();
  [[nodiscard]] uint64_t generation();
  // Clients logged in to this pool (login to close).
  void client_joined() { clients_.fetch_add(1, std::memory_order_relaxed); }
  void client_left() { clients_.fetch_sub(1, std::memory_order_relaxed); }
  [[nodiscard]] int client_count() const { return clients_.load(std::memory_order_relaxed); }
  // On worker `w`: serves waiters from this worker's idle backends and from
  // free capacity (after RESUME or a larger size); closes idle backends
  // that RECONNECT or a retirement made obsolete.
  void kick(Worker& w);

 private:
  // With mu_ held: the hosts' health and roles (re-read only when the
  // registry counted a change) and the client count as the scheduler's
  // next decision sees them.
  void observe_locked();
  void start_connect(Worker& w, uint64_t client_id);
  // Opens a backend in a slot already reserved (Scheduler::connecting) to
  // the best usable host not in `exclude`; on failure frees the slot and
  // fails the client.
  void launch(Worker& w, uint64_t client_id, uint64_t exclude);
  // A free slot (below size, or in the reserve once the longest waiter has
  // waited reserve_pool_timeout) to the longest waiter; false when none was
  // given (mu_ NOT held). A reserve slot is logged on the client's worker,
  // one line per kReserveLogIntervalMs per pool at most.
  bool capacity_freed(Worker& w);
  static constexpr uint64_t kReserveLogIntervalMs = 10000;

  // pool::SlotGate, with mu_ held: counts under the shared caps.
  [[nodiscard]] bool try_take() override;
  void give_back() override;
  // Whether either shared cap is on for this pool now (any thread).
  [[nodiscard]] bool caps_on() const;
  // db_cap_ and user_cap_ from the configuration in force (at creation and
  // at each reload, which calls set_config() on every pool it keeps).
  void refresh_caps();
  // A slot of this pool came free and its own waiters did not take it: to
  // the other pool sharing a cap whose client has waited longest on it.
  void cap_slot_freed(Worker& w);
  // This pool's clients wait at a shared cap: the other pool under it with
  // the longest-idle backend closes that one (PgBouncer's eviction).
  void evict_for_cap(Worker& w);
  // Another pool waits at a cap shared with this one.
  [[nodiscard]] bool others_wait_on_cap();
  // A slot freed on `w`: to this pool's waiters, else another pool's.
  void slot_freed(Worker& w);

  // --- hosts (with mu_ held) ---
  void sync_hosts_locked(const config::PoolConfig& cfg);
  [[nodiscard]] pool::Role role_of(const PoolHost& h) const;
  // "127.0.0.1:5432 down, 127.0.0.1:5433 disabled": why no host serves.
  [[nodiscard]] std::string no_host_reason_locked() const;

  PoolEnv& env_;
  ProtocolDriver& driver_;
  std::unique_ptr<PoolState> protocol_state_;
  std::atomic<const config::PoolConfig*> cfg_{nullptr};
  std::vector<std::unique_ptr<const config::PoolConfig>> cfg_versions_;  // under mu_
  std::string backend_user_;
  std::string backend_password_;
  bool clients_only_ = false;  // under mu_
  std::string label_;
  uint64_t created_ms_ = 0;

  std::mutex mu_;
  pool::Scheduler sched_;  // under mu_
  std::atomic<int> clients_{0};
  std::vector<std::unique_ptr<metrics::PoolStats>> stats_;               // per worker
  std::map<std::string, std::unique_ptr<PoolHost>, std::less<>> hosts_;  // by address, never erased
  std::vector<PoolHost*> current_;                                       // cfg().backends order
  static constexpr uint64_t kHostsUnseen = ~uint64_t{0};
  uint64_t hosts_seen_ = kHostsUnseen;  // HostRegistry::changes() at the last look, under mu_
  uint64_t reserve_opens_ = 0;          // reserve slots granted since the last line, under mu_
  uint64_t reserve_last_log_ms_ = 0;    // under mu_
  // The keys this pool counts under (fixed for its life): its [[pool]]
  // entry, and its protocol and server user.
  std::string db_key_;
  std::string user_key_;
  uint8_t cap_refused_ = pool::kCapNone;  // the caps that refused the last slot, under mu_
  std::atomic<uint32_t> db_cap_{0};       // max_db_connections in force (0: none)
  std::atomic<uint32_t> user_cap_{0};     // max_user_connections in force (0: none)
};

}  // namespace sqlmux
