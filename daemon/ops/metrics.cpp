#include "daemon/ops/metrics.h"

#include "version.h"

#include <dirent.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <map>
#include <tuple>

namespace sqlmux {

namespace metrics {

prometheus::ClientMetric::Histogram fold(const std::vector<const Histogram*>& parts) {
  prometheus::ClientMetric::Histogram h;
  std::array<uint64_t, Histogram::kBuckets> counts{};
  uint64_t sum_ns = 0;
  for (const Histogram* p : parts) {
    for (size_t i = 0; i < Histogram::kBuckets; ++i) counts[i] += p->bucket(i);
    sum_ns += p->sum_ns();
  }
  uint64_t cumulative = 0;
  for (size_t i = 0; i < kLatencyBoundsNs.size(); ++i) {
    cumulative += counts[i];
    h.bucket.push_back({cumulative, static_cast<double>(kLatencyBoundsNs[i]) / 1e9});
  }
  cumulative += counts[Histogram::kBuckets - 1];
  h.bucket.push_back({cumulative, std::numeric_limits<double>::infinity()});
  h.sample_count = cumulative;
  h.sample_sum = static_cast<double>(sum_ns) / 1e9;
  return h;
}

std::string_view to_string(Pin p) {
  switch (p) {
    case Pin::TempTable:
      return "temp_table";
    case Pin::SqlPrepare:
      return "sql_prepare";
    case Pin::HoldCursor:
      return "hold_cursor";
    case Pin::AdvisoryLock:
      return "advisory_lock";
    case Pin::Listen:
      return "listen";
    case Pin::UserState:
      return "user_state";
    case Pin::LockTables:
      return "lock_tables";
    case Pin::TransactionCharacteristics:
      return "transaction_characteristics";
    case Pin::Cursor:
      return "cursor";
  }
  return "unknown";
}

std::string_view to_string(KillOutcome k) {
  switch (k) {
    case KillOutcome::Query:
      return "query";
    case KillOutcome::Connection:
      return "connection";
    case KillOutcome::NotOwner:
      return "not_owner";
    case KillOutcome::NoSuchThread:
      return "no_such_thread";
    case KillOutcome::Unsupported:
      return "unsupported";
    case KillOutcome::PeerFailed:
      return "peer_failed";
    case KillOutcome::Rejected:
      return "rejected";
  }
  return "unknown";
}

std::string_view to_string(KillRoute r) {
  switch (r) {
    case KillRoute::Local:
      return "local";
    case KillRoute::Forwarded:
      return "forwarded";
    case KillRoute::FromPeer:
      return "from_peer";
  }
  return "unknown";
}

bool is_client_error(Reason r) {
  return r != Reason::ClientClosed && r != Reason::CancelRequest;
}

std::string_view to_string(CancelResult r) {
  switch (r) {
    case CancelResult::Local:
      return "local";
    case CancelResult::Forwarded:
      return "forwarded";
    case CancelResult::Unknown:
      return "unknown";
    case CancelResult::HopsExhausted:
      return "hops_exhausted";
    case CancelResult::Count:
      break;
  }
  return "unknown";
}

std::string_view to_string(AuthQueryResult r) {
  switch (r) {
    case AuthQueryResult::Found:
      return "found";
    case AuthQueryResult::NotFound:
      return "not_found";
    case AuthQueryResult::Cached:
      return "cached";
    case AuthQueryResult::Error:
      return "error";
    case AuthQueryResult::Count:
      break;
  }
  return "error";
}

bool is_server_error(Reason r) {
  switch (r) {
    case Reason::BackendConnectFailed:
    case Reason::FdExhausted:  // a server connection not opened for want of a descriptor
    case Reason::BackendDied:
    case Reason::BackendProtocolError:
    case Reason::BackendParamFailed:
    case Reason::ServerResetFailed:
    case Reason::Internal:
      return true;
    default:
      return false;
  }
}

}  // namespace metrics

namespace {

using prometheus::ClientMetric;
using prometheus::MetricFamily;
using prometheus::MetricType;
using Labels = std::vector<ClientMetric::Label>;

// Index = ClientState / BackendState; empty = not exported.
constexpr std::array<const char*, metrics::kClientStates> kClientStateNames{
    nullptr, "idle", "waiting", "active", nullptr};
constexpr std::array<const char*, metrics::kBackendStates> kBackendStateNames{
    "connecting", "idle", "active", "resetting", nullptr};

MetricFamily family(std::string name, std::string help, MetricType type) {
  MetricFamily f;
  f.name = std::move(name);
  f.help = std::move(help);
  f.type = type;
  return f;
}

Labels pool_labels(const metrics::PoolLabels& l) {
  return {{"pool", l.pool}, {"user", l.user}, {"protocol", l.protocol}};
}

Labels with(Labels base, std::string name, std::string value) {
  base.push_back({std::move(name), std::move(value)});
  return base;
}

void add_counter(MetricFamily& f, Labels labels, uint64_t v) {
  ClientMetric m;
  m.label = std::move(labels);
  m.counter.value = static_cast<double>(v);
  f.metric.push_back(std::move(m));
}

void add_gauge(MetricFamily& f, Labels labels, double v) {
  ClientMetric m;
  m.label = std::move(labels);
  m.gauge.value = v;
  f.metric.push_back(std::move(m));
}

}  // namespace

void Metrics::add_pool(metrics::PoolLabels labels,
                       std::vector<const metrics::PoolStats*> per_worker,
                       std::function<metrics::PoolGauges()> gauges) {
  std::lock_guard<std::mutex> lk(mu_);
  pools_.push_back({std::move(labels), std::move(per_worker), std::move(gauges)});
}

void Metrics::add_worker(const metrics::WorkerStats* w) {
  std::lock_guard<std::mutex> lk(mu_);
  workers_.push_back(w);
}

void Metrics::config_reload(bool ok) {
  (ok ? reloads_ok_ : reloads_failed_).fetch_add(1, std::memory_order_relaxed);
}

void Metrics::upgrade_unanswered(uint64_t n) {
  upgrade_unanswered_.fetch_add(n, std::memory_order_relaxed);
}

void Metrics::upgrade_clients(uint64_t adopted, uint64_t refused) {
  upgrade_adopted_.fetch_add(adopted, std::memory_order_relaxed);
  upgrade_refused_.fetch_add(refused, std::memory_order_relaxed);
}

void Metrics::set_host_source(HostSource f) {
  std::lock_guard<std::mutex> lk(mu_);
  hosts_ = std::move(f);
}

namespace {

// The process collector's standard series (what node and prometheus-cpp
// users' alert rules and dashboards expect under these names).
void add_process_metrics(std::vector<MetricFamily>& out) {
  long open = 0;
  if (DIR* d = opendir("/proc/self/fd")) {
    while (const dirent* e = readdir(d)) {
      if (e->d_name[0] != '.') ++open;
    }
    closedir(d);
    --open;  // the directory's own descriptor
  }
  rlimit rl{};
  const bool have_limit = getrlimit(RLIMIT_NOFILE, &rl) == 0;
  // /proc/self/stat: after the ")" that ends the command name, fields 3..;
  // utime 14, stime 15 (ticks), starttime 22 (ticks since boot), rss 24 (pages).
  double cpu = -1;
  double start = -1;
  double rss = -1;
  if (FILE* f = std::fopen("/proc/self/stat", "r")) {
    char buf[1024];
    const size_t n = std::fread(buf, 1, sizeof buf - 1, f);
    std::fclose(f);
    buf[n] = '\0';
    if (const char* p = std::strrchr(buf, ')')) {
      unsigned long long v[23] = {};
      int got = 0;
      for (const char* q = p + 2; *q != '\0' && got < 23;) {
        char* end = nullptr;
        v[got++] = std::strtoull(q, &end, 10);
        if (end == q) {  // the state letter
          ++q;
        } else {
          q = end;
        }
        while (*q == ' ') ++q;
      }
      const double tick = static_cast<double>(sysconf(_SC_CLK_TCK));
      if (got >= 22 && tick > 0) {
        // v[0] is field 3 (state); field k is v[k - 3].
        cpu = static_cast<double>(v[11] + v[12]) / tick;
        rss = static_cast<double>(v[21]) * static_cast<double>(sysconf(_SC_PAGESIZE));
        double boot = -1;
        if (FILE* s = std::fopen("/proc/stat", "r")) {
          char line[256];
          while (std::fgets(line, sizeof line, s) != nullptr) {
            if (std::strncmp(line, "btime ", 6) == 0) boot = std::strtod(line + 6, nullptr);
          }
          std::fclose(s);
        }
        if (boot >= 0) start = boot + static_cast<double>(v[19]) / tick;
      }
    }
  }
  auto one = [&](const char* name, const char* help, MetricType type, double value) {
    if (value < 0) return;
    MetricFamily f = family(name, help, type);
    ClientMetric m;
    if (type == MetricType::Counter) {
      m.counter.value = value;
    } else {
      m.gauge.value = value;
    }
    f.metric.push_back(std::move(m));
    out.push_back(std::move(f));
  };
  one("process_open_fds", "Number of open file descriptors.", MetricType::Gauge,
      static_cast<double>(open));
  if (have_limit && rl.rlim_cur != RLIM_INFINITY) {
    one("process_max_fds", "Maximum number of open file descriptors (soft limit).",
        MetricType::Gauge, static_cast<double>(rl.rlim_cur));
  }
  one("process_resident_memory_bytes", "Resident memory size in bytes.", MetricType::Gauge, rss);
  one("process_cpu_seconds_total", "Total user and system CPU time spent in seconds.",
      MetricType::Counter, cpu);
  one("process_start_time_seconds", "Start time of the process since unix epoch in seconds.",
      MetricType::Gauge, start);
}

}  // namespace

void Metrics::set_digest_source(DigestSource f) {
  std::lock_guard<std::mutex> lk(mu_);
  digests_ = std::move(f);
}

void Metrics::set_auth_source(AuthSource f) {
  std::lock_guard<std::mutex> lk(mu_);
  auth_ = std::move(f);
}

std::vector<MetricFamily> Metrics::Collect() const {
  std::lock_guard<std::mutex> lk(mu_);
  auto clients = family("sqlmux_client_connections",
                        "Client connections of a pool by state (idle: between transactions, "
                        "waiting: for a server connection, active: linked to one).",
                        MetricType::Gauge);
  auto logins = family("sqlmux_client_login_connections",
                       "Client connections still in startup or authentication.", MetricType::Gauge);
  auto servers = family("sqlmux_server_connections",
                        "Server (backend) connections of a pool by state.", MetricType::Gauge);
  auto wait = family("sqlmux_client_wait_seconds",
                     "How long clients waited for a server connection.", MetricType::Histogram);
  auto tx = family("sqlmux_transaction_duration_seconds",
                   "Transactions: from the first query after ReadyForQuery 'I' to the next "
                   "ReadyForQuery 'I' (an implicit single-statement transaction counts).",
                   MetricType::Histogram);
  auto query = family("sqlmux_query_duration_seconds",
                      "Queries (a simple Query, or extended-protocol messages up to Sync) until "
                      "their ReadyForQuery; pipelined ones from the previous one's end.",
                      MetricType::Histogram);
  auto tx_total =
      family("sqlmux_transactions_total", "Transactions completed.", MetricType::Counter);
  auto query_total = family("sqlmux_queries_total", "Queries completed.", MetricType::Counter);
  auto c_in = family("sqlmux_client_received_bytes_total",
                     "Bytes received from authenticated clients.", MetricType::Counter);
  auto c_out = family("sqlmux_client_sent_bytes_total", "Bytes sent to authenticated clients.",
                      MetricType::Counter);
  auto s_in =
      family("sqlmux_server_received_bytes_total",
             "Bytes received from server connections once established.", MetricType::Counter);
  auto s_out = family("sqlmux_server_sent_bytes_total",
                      "Bytes sent to server connections once established (sqlmux's own "
                      "queries included).",
                      MetricType::Counter);
  auto attempts = family("sqlmux_server_connect_attempts_total",
                         "Server connections sqlmux started to open.", MetricType::Counter);
  auto failures = family("sqlmux_server_connect_failures_total",
                         "Server connection attempts that failed.", MetricType::Counter);
  auto up = family("sqlmux_backend_up",
                   "1 while the backend host is up: by its health checks when [health] is "
                   "configured, else by the pool's latest connect attempt (1 before any).",
                   MetricType::Gauge);
  auto checks = family("sqlmux_health_checks_total", "Health checks of a backend host, by result.",
                       MetricType::Counter);
  auto s_err = family("sqlmux_server_errors_total",
                      "Server connections closed by a failure, by reason.", MetricType::Counter);
  auto c_err =
      family("sqlmux_client_errors_total",
             "Client connections sqlmux closed with an error, by reason.", MetricType::Counter);
  auto hits = family("sqlmux_prepared_statement_cache_hits_total",
                     "Uses of a named prepared statement already prepared on the server "
                     "connection.",
                     MetricType::Counter);
  auto misses = family("sqlmux_prepared_statement_cache_misses_total",
                       "Uses of a named prepared statement that sqlmux had to Parse on the "
                       "server connection first.",
                       MetricType::Counter);
  auto evictions = family("sqlmux_prepared_statement_cache_evictions_total",
                          "Prepared statements closed on a server connection to stay within "
                          "max_prepared_statements.",
                          MetricType::Counter);
  auto reloads = family("sqlmux_config_reloads_total", "Configuration reloads by result.",
                        MetricType::Counter);
  auto upgrade = family("sqlmux_upgrade_idle_clients_total",
                        "Idle clients the previous process offered at an online upgrade, by "
                        "result.",
                        MetricType::Counter);
  auto size = family("sqlmux_pool_size", "The pool's configured size (most server connections).",
                     MetricType::Gauge);
  auto oldest = family("sqlmux_pool_oldest_wait_seconds",
                       "How long the longest-waiting client of the pool has waited so far (0: "
                       "nobody waits).",
                       MetricType::Gauge);
  auto reserve = family("sqlmux_pool_reserve_connections",
                        "Server connections of the pool open or connecting beyond its size "
                        "(reserve_pool_size in use).",
                        MetricType::Gauge);
  auto on_cap = family("sqlmux_pool_waiting_on_cap",
                       "Clients of the pool waiting for a server connection because "
                       "max_db_connections or max_user_connections is reached (the pool is "
                       "below its size).",
                       MetricType::Gauge);
  auto pins = family("sqlmux_client_pins_total",
                     "Times a transaction-mode client became pinned to its server connection "
                     "by session state that cannot move, by reason.",
                     MetricType::Counter);
  auto l_channels = family("sqlmux_listen_channels",
                           "Channels the pool's listener connection LISTENs on for its "
                           "transaction-mode clients (LISTEN fan-out).",
                           MetricType::Gauge);
  auto l_subs =
      family("sqlmux_listen_subscriptions",
             "Client and channel pairs the pool fans notifications out to.", MetricType::Gauge);
  auto l_delivered = family("sqlmux_notifications_delivered_total",
                            "Notifications delivered to clients by the pool's listener "
                            "connection (one per receiving client).",
                            MetricType::Counter);
  auto l_lost = family("sqlmux_listen_connection_losses_total",
                       "Times the pool's listener connection was lost and its listening "
                       "clients told that notifications may have been missed.",
                       MetricType::Counter);

  // backend_up: the latest outcome over every pool object of the same
  // configured pool (pools that log in as each client are one per user).
  std::map<std::tuple<std::string, std::string, std::string>, uint64_t> latest;

  for (const auto& p : pools_) {
    const Labels base = pool_labels(p.labels);
    std::vector<const metrics::Histogram*> hw, ht, hq;
    std::array<int64_t, metrics::kClientStates> cs{};
    std::array<int64_t, metrics::kBackendStates> ss{};
    std::array<uint64_t, metrics::kReasonCount> errs{};
    std::array<uint64_t, metrics::kPinKinds> pinned{};
    uint64_t cin = 0, cout = 0, sin = 0, sout = 0, att = 0, fail = 0, hit = 0, miss = 0, ev = 0;
    uint64_t last = 0;
    int64_t lch = 0, lsub = 0;
    uint64_t ldel = 0, llost = 0;
    for (const metrics::PoolStats* s : p.per_worker) {
      lch += s->listen_channels.get();
      lsub += s->listen_subscriptions.get();
      ldel += s->notifications_delivered.get();
      llost += s->listen_connection_losses.get();
      for (int i = 0; i < metrics::kClientStates; ++i) cs[i] += s->clients[i].get();
      for (int i = 0; i < metrics::kBackendStates; ++i) ss[i] += s->servers[i].get();
      for (int i = 0; i < metrics::kReasonCount; ++i) errs[i] += s->server_errors[i].get();
      for (int i = 0; i < metrics::kPinKinds; ++i) pinned[i] += s->pins[i].get();
      hw.push_back(&s->wait);
      ht.push_back(&s->transaction);
      hq.push_back(&s->query);
      cin += s->client_received_bytes.get();
      cout += s->client_sent_bytes.get();
      sin += s->server_received_bytes.get();
      sout += s->server_sent_bytes.get();
      att += s->connect_attempts.get();
      fail += s->connect_failures.get();
      hit += s->prepared_hits.get();
      miss += s->prepared_misses.get();
      ev += s->prepared_evictions.get();
      last = std::max(last, s->last_connect.load(std::memory_order_relaxed));
    }
    for (int i = 0; i < metrics::kClientStates; ++i) {
      if (kClientStateNames[i] != nullptr) {
        add_gauge(clients, with(base, "state", kClientStateNames[i]), static_cast<double>(cs[i]));
      }
    }
    for (int i = 0; i < metrics::kBackendStates; ++i) {
      if (kBackendStateNames[i] != nullptr) {
        add_gauge(servers, with(base, "state", kBackendStateNames[i]), static_cast<double>(ss[i]));
      }
    }
    auto add_hist = [&](MetricFamily& f, const std::vector<const metrics::Histogram*>& parts,
                        MetricFamily* total) {
      ClientMetric m;
      m.label = base;
      m.histogram = metrics::fold(parts);
      if (total != nullptr) add_counter(*total, base, m.histogram.sample_count);
      f.metric.push_back(std::move(m));
    };
    add_hist(wait, hw, nullptr);
    add_hist(tx, ht, &tx_total);
    add_hist(query, hq, &query_total);
    add_counter(c_in, base, cin);
    add_counter(c_out, base, cout);
    add_counter(s_in, base, sin);
    add_counter(s_out, base, sout);
    const Labels be = with(base, "backend", p.labels.backend);
    add_counter(attempts, be, att);
    add_counter(failures, be, fail);
    for (int i = 0; i < metrics::kReasonCount; ++i) {
      const auto r = static_cast<Reason>(i);
      if (metrics::is_server_error(r)) {
        add_counter(s_err, with(be, "reason", std::string(to_string(r))), errs[i]);
      }
    }
    add_counter(hits, base, hit);
    add_counter(misses, base, miss);
    add_counter(evictions, base, ev);
    for (int i = 0; i < metrics::kPinKinds; ++i) {
      add_counter(pins, with(base, "reason", std::string(to_string(static_cast<metrics::Pin>(i)))),
                  pinned[i]);
    }
    if (p.gauges) {
      const metrics::PoolGauges g = p.gauges();
      add_gauge(size, base, g.size);
      add_gauge(oldest, base, g.oldest_wait_seconds);
      add_gauge(reserve, base, g.reserve_in_use);
      add_gauge(on_cap, base, g.waiting_on_cap);
    }
    add_gauge(l_channels, base, static_cast<double>(lch));  // (0 on MySQL pools)
    add_gauge(l_subs, base, static_cast<double>(lsub));
    add_counter(l_delivered, base, ldel);
    add_counter(l_lost, base, llost);
    auto& l = latest[{p.labels.pool, p.labels.protocol, p.labels.backend}];
    l = std::max(l, last);
  }
  std::vector<HostSample> hosts;
  std::vector<HostChecks> host_checks;
  if (hosts_) {
    hosts_(hosts, host_checks);
  } else {  // no host registry (unit tests): each pool's own backend, unchecked
    for (const auto& [key, last] : latest) {
      hosts.push_back({std::get<0>(key), std::get<1>(key), std::get<2>(key), 0});
    }
  }
  for (const HostSample& h : hosts) {
    // Unchecked: the pool's latest connect outcome (its first backend's).
    auto it = latest.find({h.pool, h.protocol, h.backend});
    const uint64_t last = it == latest.end() ? 0 : it->second;
    const bool ok = h.health == 1 || (h.health == 0 && (last == 0 || (last & 1) != 0));
    add_gauge(up, {{"pool", h.pool}, {"protocol", h.protocol}, {"backend", h.backend}}, ok ? 1 : 0);
  }
  for (const HostChecks& c : host_checks) {
    add_counter(checks, {{"backend", c.backend}, {"result", "ok"}}, c.ok);
    add_counter(checks, {{"backend", c.backend}, {"result", "failed"}}, c.failed);
  }

  auto a_delay = family("sqlmux_auth_failure_delay_seconds",
                        "How late failed logins were answered (only those answered late: past "
                        "auth_failure_limit failures of one address and user).",
                        MetricType::Histogram);
  auto a_delayed = family("sqlmux_auth_failures_delayed_total", "Failed logins answered late.",
                          MetricType::Counter);
  auto a_refused = family("sqlmux_login_refusals_total",
                          "Connections refused because their address had "
                          "max_login_clients_per_address logins in progress.",
                          MetricType::Counter);
  auto a_addrs =
      family("sqlmux_auth_delayed_addresses",
             "Client addresses whose next failed login would be answered late.", MetricType::Gauge);
  auto cancels = family("sqlmux_cancel_requests_total",
                        "Cancel requests by result: local (the client's query cancelled here), "
                        "forwarded (to the peer that issued the key), unknown (dropped), "
                        "hops_exhausted (dropped after too many forwards).",
                        MetricType::Counter);
  auto kills = family("sqlmux_client_kills_total",
                      "MySQL clients' KILL statements and COM_PROCESS_KILL answered by sqlmux, by "
                      "outcome and route: local (a thread id of this instance), forwarded (sent "
                      "to the peer that issued it), from_peer (a peer's forwarded KILL).",
                      MetricType::Counter);
  auto auth_queries = family("sqlmux_auth_query_lookups_total",
                             "Logins of clients without a [[user]] entry to pools with auth_user, "
                             "by result: found, not_found (no such user or a NULL password), "
                             "cached (within auth_query_cache_ttl), error (no answer).",
                             MetricType::Counter);
  int64_t login = 0;
  std::array<uint64_t, metrics::kCancelResults> cancel_counts{};
  std::array<uint64_t, metrics::kAuthQueryResults> auth_query_counts{};
  std::array<uint64_t, metrics::kReasonCount> cerrs{};
  std::array<std::array<uint64_t, metrics::kKillOutcomes>, metrics::kKillRoutes> kill_counts{};
  std::vector<const metrics::Histogram*> delays;
  for (const metrics::WorkerStats* w : workers_) {
    login += w->clients[0].get();
    delays.push_back(&w->auth_delays);
    for (int i = 0; i < metrics::kReasonCount; ++i) cerrs[i] += w->client_errors[i].get();
    for (int i = 0; i < metrics::kCancelResults; ++i) {
      cancel_counts[i] += w->cancel_requests[i].get();
    }
    for (int i = 0; i < metrics::kAuthQueryResults; ++i) {
      auth_query_counts[i] += w->auth_query_lookups[i].get();
    }
    for (int r = 0; r < metrics::kKillRoutes; ++r) {
      for (int i = 0; i < metrics::kKillOutcomes; ++i) kill_counts[r][i] += w->kills[r][i].get();
    }
  }
  for (int i = 0; i < metrics::kCancelResults; ++i) {
    add_counter(cancels,
                {{"result", std::string(to_string(static_cast<metrics::CancelResult>(i)))}},
                cancel_counts[i]);
  }
  for (int i = 0; i < metrics::kAuthQueryResults; ++i) {
    add_counter(auth_queries,
                {{"result", std::string(to_string(static_cast<metrics::AuthQueryResult>(i)))}},
                auth_query_counts[i]);
  }
  for (int r = 0; r < metrics::kKillRoutes; ++r) {
    const auto route = static_cast<metrics::KillRoute>(r);
    for (int i = 0; i < metrics::kKillOutcomes; ++i) {
      const auto o = static_cast<metrics::KillOutcome>(i);
      // Only the outcomes a route can have: a series that is always 0 is noise.
      const bool possible =
          route == metrics::KillRoute::Local
              ? o != metrics::KillOutcome::PeerFailed && o != metrics::KillOutcome::Rejected
          : route == metrics::KillRoute::Forwarded
              ? o != metrics::KillOutcome::Unsupported && o != metrics::KillOutcome::Rejected
              : o != metrics::KillOutcome::Unsupported && o != metrics::KillOutcome::PeerFailed;
      if (!possible) continue;
      add_counter(kills,
                  {{"result", std::string(to_string(o))}, {"route", std::string(to_string(route))}},
                  kill_counts[r][i]);
    }
  }
  add_gauge(logins, {}, static_cast<double>(login));
  for (int i = 0; i < metrics::kReasonCount; ++i) {
    const auto r = static_cast<Reason>(i);
    if (metrics::is_client_error(r)) {
      add_counter(c_err, {{"reason", std::string(to_string(r))}}, cerrs[i]);
    }
  }
  {
    ClientMetric m;
    m.histogram = metrics::fold(delays);
    add_counter(a_delayed, {}, m.histogram.sample_count);
    a_delay.metric.push_back(std::move(m));
    const AuthSample as = auth_ ? auth_() : AuthSample{};
    add_counter(a_refused, {}, as.refused);
    add_gauge(a_addrs, {}, static_cast<double>(as.delayed_addresses));
  }
  auto d_calls = family("sqlmux_query_digest_calls_total",
                        "Executions of a normalized statement (the top [metrics] "
                        "query_digests_top by total time).",
                        MetricType::Counter);
  auto d_secs = family("sqlmux_query_digest_seconds_total",
                       "Time from a statement's request to its end, summed.", MetricType::Counter);
  auto d_rows = family("sqlmux_query_digest_rows_total",
                       "Rows a normalized statement returned or changed.", MetricType::Counter);
  auto d_errs =
      family("sqlmux_query_digest_errors_total",
             "Executions of a normalized statement that ended in an error.", MetricType::Counter);
  if (digests_) {
    for (const pool::DigestRow& r : digests_()) {
      const Labels l{
          {"protocol", r.protocol}, {"pool", r.pool}, {"user", r.user}, {"digest", r.text}};
      add_counter(d_calls, l, r.stats.calls);
      ClientMetric m;
      m.label = l;
      m.counter.value = static_cast<double>(r.stats.total_us) / 1e6;
      d_secs.metric.push_back(std::move(m));
      add_counter(d_rows, l, r.stats.rows);
      add_counter(d_errs, l, r.stats.errors);
    }
  }
  add_counter(reloads, {{"result", "success"}}, reloads_ok_.load(std::memory_order_relaxed));
  add_counter(reloads, {{"result", "failure"}}, reloads_failed_.load(std::memory_order_relaxed));
  add_counter(upgrade, {{"result", "adopted"}}, upgrade_adopted_.load(std::memory_order_relaxed));
  add_counter(upgrade, {{"result", "refused"}}, upgrade_refused_.load(std::memory_order_relaxed));
  add_counter(upgrade, {{"result", "unanswered"}},
              upgrade_unanswered_.load(std::memory_order_relaxed));

  std::vector<MetricFamily> out;
  for (auto* f :
       {&clients,     &logins,     &servers,      &wait,        &tx,      &query,     &tx_total,
        &query_total, &c_in,       &c_out,        &s_in,        &s_out,   &attempts,  &failures,
        &up,          &checks,     &s_err,        &c_err,       &hits,    &misses,    &evictions,
        &pins,        &l_channels, &l_subs,       &l_delivered, &l_lost,  &size,      &oldest,
        &reserve,     &on_cap,     &reloads,      &upgrade,     &a_delay, &a_delayed, &a_refused,
        &a_addrs,     &cancels,    &auth_queries, &kills,       &d_calls, &d_secs,    &d_rows,
        &d_errs}) {
    if (!f->metric.empty()) out.push_back(std::move(*f));  // e.g. no health checks
  }
  MetricFamily build =
      family("sqlmux_build_info", "1, labelled with the version of sqlmux.", MetricType::Gauge);
  add_gauge(build, {{"version", SQLMUX_VERSION}}, 1);
  out.push_back(std::move(build));
  add_process_metrics(out);
  return out;
}

}  // namespace sqlmux
