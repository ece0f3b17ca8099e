// A pool's scheduling as policy: the slot count, per-worker waiter FIFOs
// and idle lists, hand-over between workers, which backends are obsolete,
// min_idle upkeep. No sockets, no clocks (time comes in as now_ms), no
// locks: the shell (daemon/core/pool.cpp) holds its mutex around every
// call and carries out the decisions after dropping it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <optional>
#include <utility>
#include <vector>

#include "config/config.h"
#include "pool/host_policy.h"

namespace sqlmux::pool {

// How much longer another worker's client must have waited than this
// worker's before a freed backend moves to it.
constexpr uint64_t kHandoverAfterMs = 5;
constexpr int kNoHost = -1;

// A backend as the scheduler sees it: the shell's handle and the facts the
// rules use.
struct Backend {
  void* conn = nullptr;        // the shell's connection; never dereferenced here
  uint64_t generation = 0;     // the pool's generation when it was opened
  int host = kNoHost;          // host id (see set_hosts)
  uint64_t created_ms = 0;     // server_lifetime counts from here
  uint64_t idle_since_ms = 0;  // server_idle_timeout counts from here
};

struct Waiter {
  int worker = -1;
  uint64_t client_id = 0;
  uint64_t since_ms = 0;  // when it began to wait (comparable across workers)
};

// Why a backend closes instead of being reused. Evicted: it would go idle
// while another pool waits at a server connection cap they share.
enum class Close : uint8_t { Obsolete, Lifetime, IdleTimeout, Shutdown, Evicted };

// Caps this pool shares with others (max_db_connections,
// max_user_connections): asked for every new backend slot, told of every
// freed one. The shell implements it (its counts span all pools and
// workers); calls come with the pool's mutex held.
class SlotGate {
 public:
  virtual ~SlotGate() = default;
  // One more server connection; false when a shared cap is full.
  [[nodiscard]] virtual bool try_take() = 0;
  virtual void give_back() = 0;
};

struct Acquired {
  enum class Kind : uint8_t { Linked, Connect, Queued };
  Kind kind = Kind::Queued;
  Backend backend;                // Linked: an idle one of this worker
  int donor = -1;                 // Queued: ask this worker for an idle backend
  std::vector<Backend> obsolete;  // close these (taken off the idle list)
};

// Where a released backend goes.
struct Handout {
  enum class Kind : uint8_t { Close, Local, Remote, Idle };
  Kind kind = Kind::Idle;
  Close why = Close::Obsolete;  // Close
  Waiter waiter;                // Local: this worker's; Remote: move it there
};

struct Taken {
  std::optional<Backend> backend;
  std::vector<Backend> obsolete;
};

struct Upkeep {
  std::vector<std::pair<Backend, Close>> close;  // taken off the idle list
  int open = 0;                                  // connects for min_idle (slots reserved)
};

class Scheduler {
 public:
  explicit Scheduler(int workers);

  // --- inputs (config, hosts, admin) ---
  struct Settings {
    uint32_t size = 20;
    uint32_t min_idle = 0;
    config::Route route = config::Route::Primary;
    uint64_t server_lifetime_ms = 0;  // 0: off
    uint64_t server_idle_timeout_ms = 0;
    // Reserve pool: once the longest-waiting client has waited
    // reserve_pool_timeout_ms, up to reserve_pool_size backends beyond
    // `size` may open (granted by grant_slot(); acquire() never opens one).
    // Backends beyond `size` close when released with nobody waiting.
    uint32_t reserve_pool_size = 0;
    uint64_t reserve_pool_timeout_ms = 5000;
  };
  void configure(const Settings& s) { settings_ = s; }
  [[nodiscard]] const Settings& settings() const { return settings_; }
  // The hosts of the current configuration in its order. Ids are the
  // shell's: small, stable for the pool's life (a backend keeps its host's).
  struct ListedHost {
    int id;
    uint32_t weight;  // >= 1
  };
  void set_hosts(const std::vector<ListedHost>& listed);
  // Health and role as last seen (the shell reads them before deciding).
  void observe_host(int id, bool usable, Role role);
  void observe_clients(int clients) { clients_ = clients; }
  void set_paused(bool on) { paused_ = on; }
  [[nodiscard]] bool paused() const { return paused_; }
  void set_retired(bool on) { retired_ = on; }
  [[nodiscard]] bool retired() const { return retired_; }
  // The shared caps (nullptr: none); set before the first slot.
  void set_gate(SlotGate* gate) { gate_ = gate; }
  void bump_generation() { ++generation_; }
  [[nodiscard]] uint64_t generation() const { return generation_; }

  // --- decisions; `worker` is the calling worker ---

  // A client needs a backend: an idle one of this worker, a new connection
  // in a reserved slot (below size), or the queue (paused, or at size).
  [[nodiscard]] Acquired acquire(int worker, uint64_t client_id, uint64_t now_ms);
  // False when the client was not queued.
  [[nodiscard]] bool cancel_wait(int worker, uint64_t client_id);
  // A clean backend came free on `worker`: closes (lifetime, shutdown,
  // obsolete), or goes to a waiter, or to the idle list.
  // `evict`: another pool waits at a shared cap, so a backend that would
  // go idle closes instead (Close::Evicted).
  [[nodiscard]] Handout release(int worker, const Backend& b, uint64_t now_ms, bool shutting_down,
                                bool evict = false);
  // After release() named a local waiter that no longer waits: the next.
  [[nodiscard]] Handout hand_out(int worker, const Backend& b, uint64_t now_ms, bool evict = false);
  // A backend of `worker` is gone. True when its slot came free (not moved
  // to a retry on another host).
  [[nodiscard]] bool backend_gone(int worker, const Backend& b, bool slot_moved);
  // A free slot to the waiter that has waited longest, on any worker:
  // below size, or in the reserve once that waiter has waited
  // reserve_pool_timeout_ms at `now_ms` (`reserve` then says so).
  [[nodiscard]] std::optional<Waiter> grant_slot(uint64_t now_ms, bool* reserve = nullptr);
  // A connect in a reserved slot starts on `worker`.
  void connecting(int worker);
  // No backend took a reserved slot of `worker`.
  void slot_failed(int worker);
  // Position (in set_hosts order) of the host for a new connection, not in
  // `exclude`; -1 when none.
  [[nodiscard]] int pick_host(uint64_t exclude);
  // pick_host(), counted as a connection to it.
  [[nodiscard]] int open_on_host(uint64_t exclude);
  // A connection counted by open_on_host() did not start.
  void host_closed(int id);
  // Another worker asked for an idle backend of `worker`.
  [[nodiscard]] Taken donate(int worker);
  // Timeouts of `worker`'s idle backends; min_idle upkeep (worker 0 only,
  // when none of its backends is connecting: `connecting_here`).
  [[nodiscard]] Upkeep housekeep(int worker, uint64_t now_ms, bool connecting_here);
  // An idle backend of `worker` while another worker's client has waited
  // kHandoverAfterMs (the shell releases it again).
  [[nodiscard]] std::optional<Backend> overdue(int worker, uint64_t now_ms);
  // Idle backends of `worker` that RECONNECT, a retirement, a shrink or
  // their host made obsolete, taken off the list.
  [[nodiscard]] std::vector<Backend> take_obsolete(int worker);
  // An idle backend of `worker` for the waiters (none while paused or
  // nobody waits).
  [[nodiscard]] std::optional<Backend> take_for_waiters(int worker);
  // For another pool waiting at a shared cap: `worker`'s longest-idle
  // backend, off its list.
  [[nodiscard]] std::optional<Backend> evict_idle(int worker);
  // The worker holding the longest-idle backend and when it became idle;
  // nullopt when none is idle.
  [[nodiscard]] std::optional<std::pair<int, uint64_t>> oldest_idle() const;
  // Shutdown: all of `worker`'s idle backends.
  [[nodiscard]] std::vector<Backend> take_all_idle(int worker);

  // --- counts ---
  [[nodiscard]] uint32_t total() const { return total_; }
  // Backends open or connecting beyond `size` (the reserve in use).
  [[nodiscard]] uint32_t reserve_in_use() const {
    return total_ > settings_.size ? total_ - settings_.size : 0;
  }
  // The most backends at `now_ms`: size, plus reserve_pool_size once the
  // longest-waiting client has waited reserve_pool_timeout_ms.
  [[nodiscard]] uint32_t limit(uint64_t now_ms) const;
  [[nodiscard]] size_t idle() const;
  [[nodiscard]] size_t idle(int worker) const { return idle_[index(worker)].size(); }
  [[nodiscard]] size_t waiting() const { return waiting_; }
  // Clients waiting because the gate refused the slot they needed (the
  // pool below its limit): all waiters then, else 0.
  [[nodiscard]] size_t waiting_on_cap() const { return cap_blocked_ && !paused_ ? waiting_ : 0; }
  // When the longest-waiting client began to wait (0: nobody waits).
  [[nodiscard]] uint64_t oldest_wait_since_ms() const;
  [[nodiscard]] size_t waiting(int worker) const { return waiters_[index(worker)].size(); }
  [[nodiscard]] int owned(int worker) const { return owned_[index(worker)]; }
  struct HostLoad {
    uint32_t connections = 0;  // open or connecting
    uint32_t idle = 0;
  };
  [[nodiscard]] HostLoad host_load(int id) const;

 private:
  struct Host {
    bool listed = false;
    bool usable = true;
    Role role = Role::Primary;
    uint32_t weight = 1;
    uint32_t connections = 0;
    uint32_t idle = 0;
  };
  [[nodiscard]] size_t index(int worker) const;
  [[nodiscard]] Host* host(int id);
  [[nodiscard]] bool host_serves(int id) const;
  // Whether `b` must close instead of being reused, when `closing` other
  // backends are already on their way out.
  [[nodiscard]] bool obsolete(const Backend& b, size_t closing) const;
  // The worker whose first waiter has waited longest (not `except`), or -1.
  [[nodiscard]] int oldest_waiting_worker(int except) const;
  Waiter pop_waiter(int worker);
  // The idle backend of `worker` that should serve next (its host least
  // busy); obsolete ones found on the way go to `obsolete`.
  std::optional<Backend> take_idle(int worker, std::vector<Backend>& obsolete);
  void push_idle(int worker, const Backend& b);
  // The most recently idle backend of `worker`, off its list.
  std::optional<Backend> pop_idle(int worker);
  void erased_idle(const Backend& b);
  // A new slot (++total_) unless the gate refuses; `for_waiter`: a refusal
  // leaves the waiters waiting on the cap.
  [[nodiscard]] bool take_slot(bool for_waiter);
  void free_slot();

  Settings settings_;
  uint32_t total_ = 0;  // open or connecting backends
  // Clients waiting for a backend, one FIFO queue per worker. A backend
  // freed on a worker goes to that worker's own waiters first (no hand-over
  // between event loops on the per-query path) unless another worker's
  // first waiter has waited kHandoverAfterMs longer.
  std::vector<std::deque<Waiter>> waiters_;
  size_t waiting_ = 0;
  std::vector<std::vector<Backend>> idle_;  // per worker
  // Backends living on each worker, in any state. A waiting client asks
  // another worker for an idle backend only when its own worker has none
  // that will come free, or its queue has waited too long.
  std::vector<int> owned_;
  std::vector<Host> hosts_;          // by id
  std::vector<int> listed_;          // ids in set_hosts order
  std::vector<HostChoice> choices_;  // scratch for pick_host
  bool paused_ = false;
  bool retired_ = false;
  uint64_t generation_ = 0;
  int clients_ = 0;
  SlotGate* gate_ = nullptr;
  bool cap_blocked_ = false;  // the gate refused the waiters' last slot
};

}  // namespace sqlmux::pool
