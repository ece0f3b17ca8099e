// Prometheus metrics (README "Metrics").
//
// Recording takes no lock: every counter, gauge and histogram bucket below
// has exactly one writer, the worker thread that owns it, which updates it
// with a relaxed load and a relaxed store (no lock-prefixed read-modify-
// write). A pool owns one PoolStats per worker; a worker owns one
// WorkerStats. The metrics endpoint's thread reads them with relaxed loads and folds
// the per-worker values into Prometheus families at scrape time (Collect()).
// Registration (a pool created, a worker started) takes a mutex, never on
// the per-query path.
#pragma once

#include <prometheus/collectable.h>
#include <prometheus/metric_family.h>

#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "daemon/core/reason.h"
#include "pool/digest.h"

namespace sqlmux::metrics {

inline constexpr int kReasonCount = static_cast<int>(Reason::Internal) + 1;
// Mirrors ClientState / BackendState (core/pooled.h) without
// including them here.
inline constexpr int kClientStates = 5;   // login, idle, waiting, active, closing
inline constexpr int kBackendStates = 5;  // connecting, idle, active, resetting, closing

// Why a transaction-mode client keeps its server connection between
// transactions (session state that cannot move), for
// sqlmux_client_pins_total; each protocol maps its own reasons here.
enum class Pin : uint8_t {
  TempTable,
  SqlPrepare,
  HoldCursor,
  AdvisoryLock,
  Listen,
  UserState,  // MySQL: user variables and other state the server flags
  LockTables,
  TransactionCharacteristics,
  Cursor,  // MySQL: a COM_STMT_EXECUTE cursor
};
inline constexpr int kPinKinds = static_cast<int>(Pin::Cursor) + 1;
[[nodiscard]] std::string_view to_string(Pin p);

// What became of a client's KILL (MySQL KILL / COM_PROCESS_KILL).
enum class KillOutcome : uint8_t {
  Query,         // KILL QUERY of a client's statement (sent to its server)
  Connection,    // KILL [CONNECTION]: the client closed
  NotOwner,      // refused: another user's thread (1095)
  NoSuchThread,  // refused: unknown thread id (1094)
  Unsupported,   // refused: a form sqlmux does not answer (KILL USER, QUERY ID)
  PeerFailed,    // forwarded: no valid answer from the peer (ERR 1094 to the client)
  Rejected,      // from a peer: no peer_secret, a bad MAC, a stale time or a replay
};
inline constexpr int kKillOutcomes = static_cast<int>(KillOutcome::Rejected) + 1;
[[nodiscard]] std::string_view to_string(KillOutcome k);
// Where a KILL's thread id lives (README "Running several instances").
enum class KillRoute : uint8_t {
  Local,      // asked by a client here; the id is this instance's (or none's)
  Forwarded,  // asked by a client here; sent on to the peer that issued the id
  FromPeer,   // asked by a peer for a thread id of this instance
};
inline constexpr int kKillRoutes = static_cast<int>(KillRoute::FromPeer) + 1;
[[nodiscard]] std::string_view to_string(KillRoute r);

// Written by one thread, read by any.
class Counter {
 public:
  void add(uint64_t n = 1) {
    v_.store(v_.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
  }
  [[nodiscard]] uint64_t get() const { return v_.load(std::memory_order_relaxed); }

 private:
  std::atomic<uint64_t> v_{0};
};

// Written by one thread, read by any. One worker's share of a gauge; the
// shares of all workers add up to the value (a backend that moves between
// workers leaves one share and joins another).
class Gauge {
 public:
  void inc() { v_.store(v_.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed); }
  void dec() { v_.store(v_.load(std::memory_order_relaxed) - 1, std::memory_order_relaxed); }
  void set(int64_t v) { v_.store(v, std::memory_order_relaxed); }
  [[nodiscard]] int64_t get() const { return v_.load(std::memory_order_relaxed); }

 private:
  std::atomic<int64_t> v_{0};
};

// Upper bounds of the latency histograms, in nanoseconds (100 us to 60 s).
inline constexpr std::array<uint64_t, 18> kLatencyBoundsNs{
    100'000,       250'000,       500'000,       1'000'000,      2'500'000,      5'000'000,
    10'000'000,    25'000'000,    50'000'000,    100'000'000,    250'000'000,    500'000'000,
    1'000'000'000, 2'500'000'000, 5'000'000'000, 10'000'000'000, 30'000'000'000, 60'000'000'000};

// One worker's share of a histogram: non-cumulative bucket counts (the last
// one is +Inf) and the sum of observations in nanoseconds.
class Histogram {
 public:
  static constexpr size_t kBuckets = kLatencyBoundsNs.size() + 1;
  void observe_ns(uint64_t ns) {
    size_t i = 0;
    while (i < kLatencyBoundsNs.size() && ns > kLatencyBoundsNs[i]) ++i;
    buckets_[i].add();
    sum_ns_.add(ns);
  }
  [[nodiscard]] uint64_t bucket(size_t i) const { return buckets_[i].get(); }
  [[nodiscard]] uint64_t sum_ns() const { return sum_ns_.get(); }

 private:
  std::array<Counter, kBuckets> buckets_{};
  Counter sum_ns_;
};

// Folds workers' shares into one Prometheus histogram (cumulative buckets,
// count = the +Inf bucket, sum in seconds).
[[nodiscard]] prometheus::ClientMetric::Histogram fold(const std::vector<const Histogram*>& parts);

// What one worker records for one pool.
struct alignas(64) PoolStats {
  std::array<Gauge, kClientStates> clients{};   // idle, waiting, active (by ClientState)
  std::array<Gauge, kBackendStates> servers{};  // by BackendState
  Histogram wait;                               // Waiting -> linked to a backend
  Histogram transaction;                        // first query after 'I' -> ReadyForQuery 'I'
  Histogram query;                              // Query / Sync -> its ReadyForQuery
  Counter client_received_bytes, client_sent_bytes;
  Counter server_received_bytes, server_sent_bytes;
  Counter connect_attempts, connect_failures;
  // Outcome of this worker's latest connect attempt: (uv_hrtime << 1) | ok;
  // 0 = none yet.
  std::atomic<uint64_t> last_connect{0};
  std::array<Counter, kReasonCount> server_errors{};
  Counter prepared_hits, prepared_misses, prepared_evictions;
  std::array<Counter, kPinKinds> pins{};  // clients pinned, by why
  // LISTEN fan-out (transaction mode): the pool's listener connection is
  // one worker's (its gauges are that worker's share); deliveries are
  // counted on the receiving client's worker.
  Gauge listen_channels, listen_subscriptions;
  Counter notifications_delivered, listen_connection_losses;

  void connect_outcome(uint64_t now_ns, bool ok) {
    last_connect.store(now_ns << 1 | (ok ? 1 : 0), std::memory_order_relaxed);
  }
};

// What became of a cancel request (PostgreSQL CancelRequest): its client's
// query cancelled here, sent on to the peer instance that issued the key,
// dropped (no such key or peer), or dropped after too many forwards.
enum class CancelResult { Local, Forwarded, Unknown, HopsExhausted, Count };
inline constexpr int kCancelResults = static_cast<int>(CancelResult::Count);
[[nodiscard]] std::string_view to_string(CancelResult r);

// What a client's auth_query login found (README "auth_query"): the
// user's verifier or hash from the server (found), no such user or a NULL
// password (not_found), an entry cached within its TTL (cached), or no
// answer: a connect or query error (error; the client gets 08001).
enum class AuthQueryResult { Found, NotFound, Cached, Error, Count };
inline constexpr int kAuthQueryResults = static_cast<int>(AuthQueryResult::Count);
[[nodiscard]] std::string_view to_string(AuthQueryResult r);

// What one worker records that belongs to no pool.
struct alignas(64) WorkerStats {
  std::array<Gauge, kClientStates> clients{};  // login (and clients that never got a pool)
  std::array<Counter, kReasonCount> client_errors{};
  std::array<Counter, kCancelResults> cancel_requests{};
  std::array<Counter, kAuthQueryResults> auth_query_lookups{};
  // clients' KILL statements, by route and outcome
  std::array<std::array<Counter, kKillOutcomes>, kKillRoutes> kills{};
  Histogram auth_delays;  // how late failed logins were answered (late ones only)
};

// Reasons that count as a client error (every reason but a client leaving
// by itself and a cancel request's own connection) and as a server error.
[[nodiscard]] bool is_client_error(Reason r);
[[nodiscard]] bool is_server_error(Reason r);

// What a scrape reads of a pool itself.
struct PoolGauges {
  uint32_t size = 0;               // the configured size
  double oldest_wait_seconds = 0;  // the longest-waiting client's wait so far
  uint32_t reserve_in_use = 0;     // server connections beyond size (reserve_pool_size)
  // Clients waiting because max_db_connections / max_user_connections refused
  // the server connection they needed (the pool below its size).
  uint32_t waiting_on_cap = 0;
};

struct PoolLabels {
  std::string pool;
  std::string user;  // the server login
  std::string protocol;
  std::string backend;  // address text of the backend the pool connects to
};

}  // namespace sqlmux::metrics

namespace sqlmux {

// The Collectable the metrics endpoint scrapes (daemon/ops/http_endpoint.h).
class Metrics : public prometheus::Collectable {
 public:
  // Each pool (and worker) registers once; the stats must outlive scraping.
  void add_pool(metrics::PoolLabels labels, std::vector<const metrics::PoolStats*> per_worker,
                std::function<metrics::PoolGauges()> gauges = {});
  void add_worker(const metrics::WorkerStats* w);
  // For the configuration reload (another issue): counts one reload.
  void config_reload(bool ok);
  // Online upgrade (new process): idle clients the old one offered.
  void upgrade_clients(uint64_t adopted, uint64_t refused);
  // Online upgrade: clients offered and not answered for in time (the old
  // process closed its copy): counted by both processes, each as it sees it.
  void upgrade_unanswered(uint64_t n);

  // Backend hosts as the health checks see them (read at scrape time).
  struct HostSample {
    std::string pool, protocol, backend;
    int health = 0;  // 0 unchecked, 1 up, 2 down
  };
  struct HostChecks {
    std::string backend;
    uint64_t ok = 0, failed = 0;
  };
  using HostSource = std::function<void(std::vector<HostSample>&, std::vector<HostChecks>&)>;
  void set_host_source(HostSource f);
  // The auth limiter's figures (read at scrape time).
  struct AuthSample {
    uint64_t refused = 0;            // connections over max_login_clients_per_address
    uint64_t delayed_addresses = 0;  // addresses whose next failure would be late
  };
  using AuthSource = std::function<AuthSample()>;
  void set_auth_source(AuthSource f);
  // The query digests to export (read at scrape time): the top
  // [metrics] query_digests_top by total time, none when it is 0.
  using DigestSource = std::function<std::vector<pool::DigestRow>()>;
  void set_digest_source(DigestSource f);

  [[nodiscard]] std::vector<prometheus::MetricFamily> Collect() const override;

 private:
  struct PoolEntry {
    metrics::PoolLabels labels;
    std::vector<const metrics::PoolStats*> per_worker;
    std::function<metrics::PoolGauges()> gauges;  // empty in unit tests
  };
  mutable std::mutex mu_;
  std::vector<PoolEntry> pools_;
  std::vector<const metrics::WorkerStats*> workers_;
  HostSource hosts_;      // under mu_
  AuthSource auth_;       // under mu_
  DigestSource digests_;  // under mu_
  std::atomic<uint64_t> reloads_ok_{0};
  std::atomic<uint64_t> reloads_failed_{0};
  std::atomic<uint64_t> upgrade_adopted_{0};
  std::atomic<uint64_t> upgrade_refused_{0};
  std::atomic<uint64_t> upgrade_unanswered_{0};
};

}  // namespace sqlmux
