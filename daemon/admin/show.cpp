// The console's SHOWs that PgBouncer's tools read (POOLS, STATS, DATABASES,
// LISTS, HELP): PgBouncer 1.18's columns in its order and with its types,
// then `protocol`, then sqlmux's own older columns (readers going by name
// find both).
#include <uv.h>

#include <algorithm>
#include <map>

#include "daemon/admin/session.h"
#include "daemon/core/control.h"
#include "daemon/core/directory.h"
#include "daemon/core/pool.h"
#include "daemon/core/worker.h"
#include "daemon/ops/hosts.h"
#include "daemon/ops/metrics.h"
#include "protocol/pg/codec.h"

namespace sqlmux::admin {
namespace {

using Row = std::vector<std::optional<std::string>>;
using pg::kInt4Oid;
using pg::kNumericOid;
using pg::kTextOid;

std::string num(uint64_t v) {
  return std::to_string(v);
}

std::string protocol_of(const config::PoolConfig& pc) {
  return std::string(config::to_string(pc.protocol));
}

uint64_t now_ms() {
  return uv_hrtime() / 1'000'000;
}

}  // namespace

void Session::show_pools(const std::vector<WorkerPart>& parts) {
  struct Live {
    uint64_t active = 0, waiting = 0, idle = 0;
    uint64_t sv_active = 0, sv_idle = 0, sv_tested = 0, sv_login = 0;
  };
  std::map<const Pool*, Live> live;
  for (const auto& p : parts) {
    for (const auto& c : p.clients) {
      if (c.pool == nullptr) continue;
      Live& l = live[c.pool];
      if (c.state == "active") ++l.active;
      if (c.state == "waiting") ++l.waiting;
      if (c.state == "idle") ++l.idle;
    }
    for (const auto& s : p.servers) {
      Live& l = live[s.pool];
      if (s.state == "active") ++l.sv_active;
      if (s.state == "idle") ++l.sv_idle;
      if (s.state == "resetting") ++l.sv_tested;  // running the reset, as PgBouncer's reset query
      if (s.state == "connecting") ++l.sv_login;
    }
  }
  const uint64_t now = now_ms();
  std::vector<Row> rows;
  s_.directory->for_each_pool([&](Pool& p) {
    const config::PoolConfig& pc = p.cfg();
    const Pool::Counts n = p.counts();
    const Live& l = live[&p];
    const auto wait_us = static_cast<uint64_t>(p.oldest_wait_seconds(now) * 1e6);
    const std::string mode(config::to_string(pc.mode));
    rows.push_back({pc.name, p.backend_user(),
                    // PgBouncer's cl_active: logged in and not waiting, linked or not.
                    num(l.active + l.idle), num(l.waiting),
                    // cancel requests are forwarded at once; none is ever queued
                    num(0), num(0), num(l.sv_active + l.sv_tested), num(0), num(0), num(l.sv_idle),
                    // sv_used: sqlmux runs no server_check_query on idle connections
                    num(0), num(l.sv_tested), num(l.sv_login), num(wait_us / 1'000'000),
                    num(wait_us % 1'000'000), mode, protocol_of(pc),
                    // sqlmux's own columns, as before
                    pc.name, mode, num(pc.size), num(n.total), num(n.idle),
                    num(l.sv_active + l.sv_tested), num(l.active), num(l.waiting), num(l.idle),
                    std::string(p.paused() ? "yes" : "no"),
                    std::string(p.retired() ? "removed" : "active")});
  });
  send_typed({{"database"},
              {"user"},
              {"cl_active", kInt4Oid},
              {"cl_waiting", kInt4Oid},
              {"cl_active_cancel_req", kInt4Oid},
              {"cl_waiting_cancel_req", kInt4Oid},
              {"sv_active", kInt4Oid},
              {"sv_active_cancel", kInt4Oid},
              {"sv_being_canceled", kInt4Oid},
              {"sv_idle", kInt4Oid},
              {"sv_used", kInt4Oid},
              {"sv_tested", kInt4Oid},
              {"sv_login", kInt4Oid},
              {"maxwait", kInt4Oid},
              {"maxwait_us", kInt4Oid},
              {"pool_mode"},
              {"protocol"},
              {"pool"},
              {"mode"},
              {"size"},
              {"servers_total"},
              {"servers_idle"},
              {"servers_active"},
              {"clients_active"},
              {"clients_waiting"},
              {"clients_idle"},
              {"paused"},
              {"status"}},
             rows);
  send_complete("SHOW");
}

void Session::show_stats() {
  // The metrics counters (daemon/metrics.h): one writer per worker, read
  // here with relaxed loads and folded over the workers. Averages are over
  // the pool's life so far (not PgBouncer's last stats_period).
  std::vector<Row> rows;
  bool counted = true;
  const int workers = s_.workers->size();
  const uint64_t now = now_ms();
  s_.directory->for_each_pool([&](Pool& p) {
    uint64_t tx = 0, queries = 0, waits = 0, wait_ns = 0, tx_ns = 0, query_ns = 0;
    uint64_t c_in = 0, c_out = 0, s_in = 0, s_out = 0;
    for (int w = 0; w < workers; ++w) {
      const metrics::PoolStats* st = p.stats(w);
      if (st == nullptr) {
        counted = false;
        return;
      }
      for (size_t b = 0; b < metrics::Histogram::kBuckets; ++b) {
        tx += st->transaction.bucket(b);
        queries += st->query.bucket(b);
        waits += st->wait.bucket(b);
      }
      tx_ns += st->transaction.sum_ns();
      query_ns += st->query.sum_ns();
      wait_ns += st->wait.sum_ns();
      c_in += st->client_received_bytes.get();
      c_out += st->client_sent_bytes.get();
      s_in += st->server_received_bytes.get();
      s_out += st->server_sent_bytes.get();
    }
    const uint64_t tx_us = tx_ns / 1000, query_us = query_ns / 1000, wait_us = wait_ns / 1000;
    const uint64_t secs = std::max<uint64_t>(1, (now - std::min(now, p.created_ms())) / 1000);
    auto per = [](uint64_t total, uint64_t n) { return num(n == 0 ? 0 : total / n); };
    rows.push_back({p.cfg().name, num(tx), num(queries), num(c_in), num(c_out), num(tx_us),
                    num(query_us), num(wait_us), per(tx, secs), per(queries, secs), per(c_in, secs),
                    per(c_out, secs), per(tx_us, tx), per(query_us, queries), per(wait_us, waits),
                    protocol_of(p.cfg()),
                    // PgBouncer < 1.8's name for the query count (read by Debian's exporter)
                    num(queries),
                    // sqlmux's own columns, as before
                    p.cfg().name, p.backend_user(), num(tx), num(queries), num(c_in), num(c_out),
                    num(s_in), num(s_out), num(waits), num(wait_us), num(tx_us), num(query_us)});
  });
  if (!counted) {
    send_error(pg::sqlstate::kFeatureNotSupported,
               "SHOW STATS needs the [metrics] table: sqlmux counts traffic only when metrics are "
               "on",
               {}, "add [metrics] listen = \"127.0.0.1:9187\" and restart");
    return;
  }
  send_typed({{"database"},
              {"total_xact_count", kNumericOid},
              {"total_query_count", kNumericOid},
              {"total_received", kNumericOid},
              {"total_sent", kNumericOid},
              {"total_xact_time", kNumericOid},
              {"total_query_time", kNumericOid},
              {"total_wait_time", kNumericOid},
              {"avg_xact_count", kNumericOid},
              {"avg_query_count", kNumericOid},
              {"avg_recv", kNumericOid},
              {"avg_sent", kNumericOid},
              {"avg_xact_time", kNumericOid},
              {"avg_query_time", kNumericOid},
              {"avg_wait_time", kNumericOid},
              {"protocol"},
              {"total_requests", kNumericOid},
              {"pool"},
              {"user"},
              {"transactions"},
              {"queries"},
              {"client_bytes_in"},
              {"client_bytes_out"},
              {"server_bytes_in"},
              {"server_bytes_out"},
              {"waits"},
              {"wait_time_us"},
              {"transaction_time_us"},
              {"query_time_us"}},
             rows);
  send_complete("SHOW");
}

void Session::show_databases() {
  // One row per configured pool; connections summed over its running
  // instances (pools that log in as each client have one per user).
  struct Live {
    uint64_t connections = 0;
    bool paused = false;
  };
  std::map<std::string, Live> live;
  s_.directory->for_each_pool([&](Pool& p) {
    Live& l = live[config::qualified_name(p.cfg())];
    l.connections += p.counts().total;
    l.paused = l.paused || p.paused();
  });
  std::vector<Row> rows;
  for (const auto& pc : s_.directory->config().pools) {
    const Live& l = live[config::qualified_name(pc)];
    std::optional<std::string> host;
    std::optional<std::string> port;
    bool all_disabled = !pc.backends.empty();
    if (!pc.backends.empty()) {
      const config::Address& a = pc.backends.front().address;
      host = a.kind == config::Address::Kind::Unix ? a.unix_path : a.host;
      if (a.kind == config::Address::Kind::Tcp) port = num(a.port);
    }
    for (const auto& b : pc.backends) {
      all_disabled = all_disabled && s_.hosts->get(b.address.text).disabled();
    }
    rows.push_back({pc.name, host, port, pc.database,
                    pc.user ? std::optional<std::string>(*pc.user) : std::nullopt, num(pc.size),
                    num(pc.min_idle), num(0), std::string(config::to_string(pc.mode)),
                    // max_connections: sqlmux has no cap over a pool's instances (0, unlimited)
                    num(0), num(l.connections), num(l.paused ? 1 : 0), num(all_disabled ? 1 : 0),
                    protocol_of(pc), num(pc.backends.size())});
  }
  send_typed({{"name"},
              {"host"},
              {"port", kInt4Oid},
              {"database"},
              {"force_user"},
              {"pool_size", kInt4Oid},
              {"min_pool_size", kInt4Oid},
              {"reserve_pool", kInt4Oid},
              {"pool_mode"},
              {"max_connections", kInt4Oid},
              {"current_connections", kInt4Oid},
              {"paused", kInt4Oid},
              {"disabled", kInt4Oid},
              {"protocol"},
              {"backends", kInt4Oid}},
             rows);
  send_complete("SHOW");
}

void Session::show_lists(const std::vector<WorkerPart>& parts) {
  // Two columns only, no `protocol`: readers turn the rows into a map.
  uint64_t used_clients = 0, login_clients = 0, used_servers = 0, pools = 0;
  for (const auto& p : parts) {
    used_clients += p.clients.size();
    for (const auto& c : p.clients) login_clients += c.state == "login" ? 1 : 0;
    used_servers += p.servers.size();
  }
  s_.directory->for_each_pool([&](Pool&) { ++pools; });
  const config::Config& cfg = s_.directory->config();
  // free_*: PgBouncer's cached, unused connection objects; sqlmux keeps no
  // such cache. dns_*: sqlmux has no DNS cache (addresses are resolved when
  // the configuration is loaded).
  const std::vector<std::pair<std::string_view, uint64_t>> items = {
      {"databases", cfg.pools.size()},
      {"users", cfg.users.size()},
      {"pools", pools},
      {"free_clients", 0},
      {"used_clients", used_clients},
      {"login_clients", login_clients},
      {"free_servers", 0},
      {"used_servers", used_servers},
      {"dns_names", 0},
      {"dns_zones", 0},
      {"dns_queries", 0},
      {"dns_pending", 0}};
  std::vector<Row> rows;
  for (const auto& [k, v] : items) rows.push_back({std::string(k), num(v)});
  send_typed({{"list"}, {"items", kInt4Oid}}, rows);
  send_complete("SHOW");
}

void Session::show_help() {
  pg::ErrorFields e;
  e.severity = "NOTICE";
  e.sqlstate = "00000";
  e.message = "Console usage";
  std::string detail(known_commands());
  std::string lines;
  size_t start = 0;
  while (start <= detail.size()) {
    const size_t bar = detail.find(" | ", start);
    lines += "\n\t" + detail.substr(start, bar == std::string::npos ? bar : bar - start);
    if (bar == std::string::npos) break;
    start = bar + 3;
  }
  e.detail = lines + "\n";
  std::string out;
  pg::put_notice(out, e);
  c_.send(out.data(), out.size());
  send_complete("SHOW");
}

void Session::send_typed(const std::vector<pg::Column>& columns, const std::vector<Row>& rows) {
  std::string out;
  pg::put_typed_row_description(out, columns);
  for (const auto& r : rows) pg::put_data_row(out, r);
  c_.send(out.data(), out.size());
}

}  // namespace sqlmux::admin
