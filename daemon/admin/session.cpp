// The admin console session: login checks, the simple-query loop, and the
// commands (see admin.h for how work reaches the workers).
#include "daemon/admin/session.h"

#include <algorithm>
#include <cinttypes>
#include <map>
#include <set>

#include "daemon/admin/config_rows.h"
#include "daemon/core/auth_limiter.h"
#include "daemon/core/control.h"
#include "daemon/core/directory.h"
#include "daemon/core/log.h"
#include "daemon/core/pool.h"
#include "daemon/core/worker.h"
#include "daemon/ops/hosts.h"
#include "daemon/ops/metrics.h"
#include "pool/digest.h"
#include "protocol/pg/codec.h"
#include "protocol/pg/result.h"
#include "version.h"

namespace sqlmux::admin {
namespace {

constexpr std::string_view kDatabase = "sqlmux";
// The same console under PgBouncer's name, for PgBouncer's tools.
constexpr std::string_view kPgBouncerDatabase = "pgbouncer";
constexpr uint32_t kMaxMessage = 64 * 1024;
constexpr uint64_t kPausePollMs = 50;
constexpr size_t kShowAuthRows = 50;  // SHOW AUTH: the top (address, user) pairs by failures

using Row = std::vector<std::optional<std::string>>;

std::string num(uint64_t v) {
  return std::to_string(v);
}

// The last column of every SHOW that lists pools, clients or servers: after
// the older ones, so readers that go by position keep working.
std::string protocol_of(const config::PoolConfig& pc) {
  return std::string(config::to_string(pc.protocol));
}

}  // namespace

std::shared_ptr<LocalSession> Session::start(PgClient& c) {
  if (c.database() != kDatabase && c.database() != kPgBouncerDatabase) {
    LOG_INFO("admin console: client %" PRIu64 " (user %s) asked for database \"%s\"", c.id(),
             c.user_name().c_str(), c.database().c_str());
    c.send_fatal(pg::sqlstate::kInvalidCatalogName,
                 "database \"" + c.database() +
                     "\" does not exist; the admin console serves only databases \"sqlmux\" "
                     "and \"pgbouncer\"",
                 Reason::UnknownDatabase);
    return nullptr;
  }
  if (!c.worker().directory().is_admin_user(c.user_name())) {
    LOG_WARN("admin console: user \"%s\" is not in [admin] users; refused", c.user_name().c_str());
    c.send_fatal(pg::sqlstate::kInvalidAuthorization,
                 "user \"" + c.user_name() + "\" is not allowed to use the admin console",
                 Reason::AdminRejected);
    return nullptr;
  }
  std::string out;
  pg::put_auth_ok(out);
  // What libpq and drivers read at startup; server_version says what this is.
  pg::put_parameter_status(out, "server_version", "16.0 (sqlmux " SQLMUX_VERSION " admin console)");
  pg::put_parameter_status(out, "server_encoding", "UTF8");
  pg::put_parameter_status(out, "client_encoding", "UTF8");
  pg::put_parameter_status(out, "DateStyle", "ISO, MDY");
  pg::put_parameter_status(out, "integer_datetimes", "on");
  pg::put_parameter_status(out, "standard_conforming_strings", "on");
  pg::put_parameter_status(out, "TimeZone", "UTC");
  pg::put_parameter_status(out, "application_name", "");
  pg::put_ready_for_query(out, 'I');
  c.send(out.data(), out.size());
  c.local_session_started();
  LOG_INFO("admin console: client %" PRIu64 " logged in as %s", c.id(), c.user_name().c_str());
  return std::make_shared<Session>(c);
}

Session::Session(PgClient& c) : c_(c), s_(c.worker().services()) {}

Session::~Session() {
  if (timer_ != nullptr) {
    uv_close(reinterpret_cast<uv_handle_t*>(timer_),
             [](uv_handle_t* h) { delete reinterpret_cast<uv_timer_t*>(h); });
  }
}

void Session::process() {
  while (!c_.closing() && !busy_) {
    pg::Message m;
    size_t used = 0;
    switch (pg::decode_message(c_.input().data(), c_.input().size(), kMaxMessage, m, used)) {
      case pg::Decode::NeedMore:
        c_.input().shrink_if_empty();
        if (!c_.reading()) c_.want_read(true);
        return;
      case pg::Decode::Malformed:
        c_.send_fatal(pg::sqlstate::kProtocolViolation,
                      "invalid message length on the admin console (at most 64 kB)",
                      Reason::ClientProtocolError);
        return;
      case pg::Decode::Complete:
        break;
    }
    const char type = m.type;
    std::string body(m.body);
    c_.input().consume(used);
    if (skip_to_sync_) {
      if (type == 'S') {
        skip_to_sync_ = false;
        finish_command();
      } else if (type == 'X') {
        c_.finish(Reason::ClientClosed);
      }
      continue;
    }
    switch (type) {
      case 'Q': {
        std::string_view sql;
        if (!pg::parse_query(body, sql)) {
          c_.send_fatal(pg::sqlstate::kProtocolViolation, "invalid Query message",
                        Reason::ClientProtocolError);
          return;
        }
        handle_query(sql);
        break;
      }
      case 'X':
        c_.finish(Reason::ClientClosed);
        return;
      case 'S':  // a Sync with nothing before it
        finish_command();
        break;
      case 'H':  // Flush: nothing is pending
        break;
      case 'P':
      case 'B':
      case 'D':
      case 'E':
      case 'C':
      case 'F':
        send_error(pg::sqlstate::kFeatureNotSupported,
                   "the sqlmux admin console supports the simple query protocol only",
                   std::string("got ") + std::string(pg::frontend_message_name(type)),
                   "use psql, or a driver's simple-query mode (e.g. psycopg2)");
        if (type == 'F') {
          finish_command();
        } else {
          skip_to_sync_ = true;
        }
        break;
      default:
        c_.send_fatal(pg::sqlstate::kProtocolViolation,
                      "unexpected message type " + std::to_string(static_cast<int>(type)) +
                          " on the admin console",
                      Reason::ClientProtocolError);
        return;
    }
  }
}

void Session::handle_query(std::string_view sql) {
  ParseResult r = parse(sql);
  if (!r.command) {
    std::string shown(sql.substr(0, 200));
    if (r.error == "unknown admin command") {
      send_error("42601", "unknown admin command \"" + shown +
                              "\"; known commands: " + std::string(known_commands()));
    } else {
      send_error("42601", "syntax error in admin command \"" + shown + "\": " + r.error, {},
                 "known commands: " + std::string(known_commands()));
    }
    finish_command();
    return;
  }
  execute(*r.command);
}

void Session::execute(const Command& cmd) {
  const bool mutating = cmd.verb != Verb::Empty && tag(cmd.verb) != "SHOW";
  if (mutating) {
    LOG_INFO("admin console: %s runs %s%s%s", c_.user_name().c_str(),
             std::string(tag(cmd.verb)).c_str(), cmd.arg.empty() ? "" : " ", cmd.arg.c_str());
  }
  if (s_.control->shutting_down() && cmd.verb != Verb::ShowVersion && cmd.verb != Verb::Empty) {
    send_error(pg::sqlstate::kCannotConnectNow, "sqlmux is shutting down");
    finish_command();
    return;
  }
  pending_ = cmd;
  pending_pools_.clear();
  switch (cmd.verb) {
    case Verb::Empty: {
      std::string out;
      pg::put_empty_query(out);
      c_.send(out.data(), out.size());
      finish_command();
      return;
    }
    case Verb::ShowPools:
    case Verb::ShowClients:
    case Verb::ShowServers:
    case Verb::ShowLists:
      dispatch(snapshot);
      return;
    case Verb::ShowDatabases:
      show_databases();
      break;
    case Verb::ShowHelp:
      show_help();
      break;
    case Verb::ShowBackends:
      show_backends();
      break;
    case Verb::ShowStats:
      show_stats();
      break;
    case Verb::ShowConfig:
      show_config();
      break;
    case Verb::ShowAuth:
      show_auth();
      break;
    case Verb::ShowQueries:
      show_queries();
      break;
    case Verb::ResetQueries:
      s_.workers->for_each([](Worker& w) {
        std::lock_guard<std::mutex> lock(w.digests().mu);
        w.digests().table.clear();
      });
      send_complete("RESET");
      break;
    case Verb::ShowVersion:
      send_rows({"version"}, {{std::string("sqlmux " SQLMUX_VERSION)}});
      send_complete("SHOW");
      break;
    case Verb::Pause: {
      const auto key = resolve_pool(cmd.arg);
      if (!key) break;
      pools_named(*key, pending_pools_);
      s_.control->set_paused(*key, true);
      dispatch(snapshot);  // completes once no server connection of these pools is in use
      return;
    }
    case Verb::Resume: {
      const auto key = resolve_pool(cmd.arg);
      if (!key) break;
      s_.control->set_paused(*key, false);
      send_complete("RESUME");
      break;
    }
    case Verb::Disable:
    case Verb::Enable: {
      bool known = false;
      for (const auto& pc : s_.directory->config().pools) {
        for (const auto& b : pc.backends) known = known || b.address.text == cmd.arg;
      }
      if (!known) {
        send_error("42704", "no configured server address \"" + cmd.arg + "\"", {},
                   "SHOW BACKENDS lists them");
        break;
      }
      s_.control->set_backend_disabled(cmd.arg, cmd.verb == Verb::Disable);
      send_complete(tag(cmd.verb));
      break;
    }
    case Verb::Reconnect: {
      const auto key = resolve_pool(cmd.arg);
      if (!key) break;
      pools_named(*key, pending_pools_);
      for (Pool* p : pending_pools_) p->bump_generation();
      std::vector<Pool*> pools = pending_pools_;
      dispatch([pools](Worker& w, WorkerPart&) {
        for (Pool* p : pools) p->kick(w);  // closes the idle ones now
      });
      return;
    }
    case Verb::WaitClose: {
      const auto key = resolve_pool(cmd.arg);
      if (!key) break;
      pools_named(*key, pending_pools_);
      dispatch(snapshot);  // completes once no retired server connection is left
      return;
    }
    case Verb::Kill: {
      const auto key = resolve_pool(cmd.arg);
      if (!key) break;
      pools_named(*key, pending_pools_);
      std::vector<Pool*> pools = pending_pools_;
      dispatch([pools](Worker& w, WorkerPart& out) { kill_pool_clients(w, pools, out); });
      return;
    }
    case Verb::KillClient: {
      const uint64_t id = cmd.client_id;
      dispatch([id](Worker& w, WorkerPart& out) { kill_client(w, id, out); });
      return;
    }
    case Verb::Reload: {
      std::vector<std::string> errors;
      if (s_.control->reload(&errors)) {
        send_complete("RELOAD");
      } else {
        std::string detail;
        for (const auto& e : errors) detail += (detail.empty() ? "" : "\n") + e;
        send_error("F0000", "configuration file is invalid; nothing changed", detail);
      }
      break;
    }
    case Verb::Shutdown:
      send_complete("SHUTDOWN");
      s_.control->request_shutdown();
      break;
  }
  finish_command();
}

void Session::dispatch(std::function<void(Worker&, WorkerPart&)> work) {
  auto job = std::make_shared<Job>();
  job->work = std::move(work);
  job->origin = c_.worker().id();
  job->session = weak_from_this();
  const int n = s_.workers->size();
  job->parts.resize(static_cast<size_t>(n));
  job->remaining = n;
  busy_ = true;
  s_.workers->post_all([job](Worker& w) { run_job(w, job); });
}

void Session::job_done(const std::shared_ptr<Job>& job) {
  if (c_.closing()) return;
  std::vector<WorkerPart> parts;
  {
    std::lock_guard<std::mutex> lk(job->mu);
    parts = std::move(job->parts);
  }
  size_t affected = 0;
  for (const auto& p : parts) affected += p.affected;
  switch (pending_.verb) {
    case Verb::ShowPools:
      show_pools(parts);
      break;
    case Verb::ShowClients:
      show_clients(parts);
      break;
    case Verb::ShowServers:
      show_servers(parts);
      break;
    case Verb::ShowLists:
      show_lists(parts);
      break;
    case Verb::Pause:
      pause_check(parts);
      return;
    case Verb::WaitClose:
      wait_close_check(parts);
      return;
    case Verb::KillClient:
      if (affected == 0) {
        send_error("42704", "no client with id " + std::to_string(pending_.client_id), {},
                   "SHOW CLIENTS lists them");
      } else {
        send_complete("KILL_CLIENT");
      }
      break;
    default:
      send_complete(tag(pending_.verb));
      break;
  }
  busy_ = false;
  finish_command();
  process();  // commands that arrived meanwhile
}

void Session::pause_check(const std::vector<WorkerPart>& parts) {
  size_t in_use = 0;
  for (const auto& p : parts) {
    for (const auto& s : p.servers) {
      const bool mine =
          std::find(pending_pools_.begin(), pending_pools_.end(), s.pool) != pending_pools_.end();
      if (mine && s.state != "idle" && s.state != "closing") ++in_use;
    }
  }
  if (in_use == 0) {
    send_complete("PAUSE");
    busy_ = false;
    finish_command();
    process();  // commands that arrived meanwhile
    return;
  }
  poll_again();
}

void Session::wait_close_check(const std::vector<WorkerPart>& parts) {
  size_t left = 0;
  for (const auto& p : parts) {
    for (const auto& s : p.servers) {
      const bool mine =
          std::find(pending_pools_.begin(), pending_pools_.end(), s.pool) != pending_pools_.end();
      if (mine && s.to_close) ++left;
    }
  }
  if (left == 0) {
    send_complete("WAIT_CLOSE");
    busy_ = false;
    finish_command();
    process();  // commands that arrived meanwhile
    return;
  }
  poll_again();
}

void Session::poll_again() {
  if (timer_ == nullptr) {
    timer_ = new uv_timer_t;
    uv_timer_init(c_.worker().loop(), timer_);
    timer_->data = this;
  }
  uv_timer_start(timer_, &Session::on_pause_timer, kPausePollMs, 0);
}

void Session::on_pause_timer(uv_timer_t* t) {
  auto* s = static_cast<Session*>(t->data);
  if (s->c_.closing()) return;
  s->busy_ = false;  // dispatch() sets it again
  s->dispatch(snapshot);
}

void Session::finish_command() {
  if (c_.closing()) return;
  std::string out;
  pg::put_ready_for_query(out, 'I');
  c_.send(out.data(), out.size());
}

void Session::send_error(std::string_view sqlstate, std::string message, std::string detail,
                         std::string hint) {
  pg::ErrorFields e;
  e.sqlstate = std::string(sqlstate);
  e.message = std::move(message);
  e.detail = std::move(detail);
  e.hint = std::move(hint);
  std::string out;
  pg::put_error(out, e);
  c_.send(out.data(), out.size());
}

void Session::send_complete(std::string_view tag) {
  std::string out;
  pg::put_command_complete(out, tag);
  c_.send(out.data(), out.size());
}

void Session::send_rows(const std::vector<std::string_view>& columns,
                        const std::vector<Row>& rows) {
  std::string out;
  pg::put_row_description(out, columns);
  for (const auto& r : rows) pg::put_data_row(out, r);
  c_.send(out.data(), out.size());
}

std::optional<std::string> Session::resolve_pool(const std::string& arg) {
  if (arg.empty()) return std::string();
  // Every pool this could name, configured or still running after a reload
  // removed it.
  std::set<std::string> keys;
  auto consider = [&](const config::PoolConfig& pc) {
    if (config::qualified_name(pc) == arg) keys.insert(config::qualified_name(pc));
  };
  for (const auto& pc : s_.directory->config().pools) consider(pc);
  s_.directory->for_each_pool([&](Pool& p) { consider(p.cfg()); });
  if (!keys.empty()) return *keys.begin();
  for (const auto& pc : s_.directory->config().pools) {
    if (pc.name == arg) keys.insert(config::qualified_name(pc));
  }
  s_.directory->for_each_pool([&](Pool& p) {
    if (p.cfg().name == arg) keys.insert(config::qualified_name(p.cfg()));
  });
  if (keys.size() == 1) return *keys.begin();
  if (keys.empty()) {
    send_error("42704", "no pool named \"" + arg + "\"", {},
               "SHOW POOLS lists them; name one as protocol:name (postgres:appdb, mysql:appdb)");
    return std::nullopt;
  }
  std::string both;
  for (const auto& k : keys) both += (both.empty() ? "" : " and ") + k;
  send_error("42P09", "pool name \"" + arg + "\" is ambiguous: " + both + " both exist", {},
             "name one as protocol:name, e.g. " + *keys.begin());
  return std::nullopt;
}

void Session::pools_named(const std::string& key, std::vector<Pool*>& out) {
  s_.directory->for_each_pool([&](Pool& p) {
    if (key.empty() || config::qualified_name(p.cfg()) == key) out.push_back(&p);
  });
}

void Session::show_clients(const std::vector<WorkerPart>& parts) {
  std::vector<Row> rows;
  for (const auto& p : parts) {
    for (const auto& c : p.clients) {
      rows.push_back(
          {num(c.id), c.user, c.database,
           c.pool ? std::optional<std::string>(c.pool->label()) : std::nullopt, c.state, c.address,
           format_time(c.connect_time), num(c.worker),
           c.pool ? std::optional<std::string>(protocol_of(c.pool->cfg())) : std::nullopt,
           c.pinned.empty() ? std::nullopt : std::optional<std::string>(c.pinned)});
    }
  }
  std::sort(rows.begin(), rows.end(),
            [](const Row& a, const Row& b) { return std::stoull(*a[0]) < std::stoull(*b[0]); });
  send_rows({"id", "user", "database", "pool", "state", "address", "connect_time", "worker",
             "protocol", "pinned"},
            rows);
  send_complete("SHOW");
}

void Session::show_servers(const std::vector<WorkerPart>& parts) {
  std::vector<Row> rows;
  for (const auto& p : parts) {
    for (const auto& s : p.servers) {
      rows.push_back(
          {num(static_cast<uint64_t>(s.pid)), s.pool->cfg().name, s.pool->backend_user(), s.state,
           s.client_id ? std::optional<std::string>(num(*s.client_id)) : std::nullopt, s.address,
           format_time(s.connect_time), num(s.worker), protocol_of(s.pool->cfg())});
    }
  }
  send_rows({"pid", "pool", "user", "state", "client_id", "address", "connect_time", "worker",
             "protocol"},
            rows);
  send_complete("SHOW");
}

void Session::show_backends() {
  // Per configured pool and host; connection counts summed over the pool's
  // running instances (pools that log in as each client have one per user).
  std::map<std::pair<std::string, std::string>, std::pair<uint32_t, uint32_t>> counts;
  s_.directory->for_each_pool([&](Pool& p) {
    for (const Pool::HostRow& r : p.host_rows()) {
      auto& c = counts[{config::qualified_name(p.cfg()), r.address}];
      c.first += r.connections;
      c.second += r.active;
    }
  });
  std::vector<Row> rows;
  for (const auto& pc : s_.directory->config().pools) {
    for (const auto& b : pc.backends) {
      HostStatus& h = s_.hosts->get(b.address.text);
      const pool::Role role = h.observed_role().value_or(pool::parse_role(b.role));
      const auto c = counts[{config::qualified_name(pc), b.address.text}];
      const std::string err = h.last_error();
      rows.push_back(
          {pc.name, b.address.text, std::string(pool::to_string(role)),
           std::string(h.disabled() ? "disabled" : "enabled"),
           std::string(pool::to_string(h.health())), b.role, num(static_cast<uint64_t>(b.weight)),
           num(c.first), num(c.second), num(h.checks_ok()), num(h.checks_failed()),
           err.empty() ? std::nullopt : std::optional<std::string>(err), protocol_of(pc)});
    }
  }
  send_rows({"pool", "address", "role", "state", "health", "configured_role", "weight",
             "connections", "active", "checks_ok", "checks_failed", "last_error", "protocol"},
            rows);
  send_complete("SHOW");
}

void Session::show_auth() {
  // The auth limiter's (address, user) pairs with the most failures within
  // their window, and the delay each one's next failure would get.
  const uint64_t now = uv_hrtime() / 1000000;
  std::vector<Row> rows;
  for (const AuthLimiter::Row& r :
       s_.auth_limiter->top(kShowAuthRows, now, auth_policy(s_.directory->config().server))) {
    rows.push_back({r.addr.text(), r.user, num(r.failures), num(r.last_delay_ms),
                    num(r.next_delay_ms), num(r.idle_ms), num(r.logins)});
  }
  send_rows({"address", "user", "failures", "last_delay_ms", "next_delay_ms", "idle_ms",
             "logins_in_progress"},
            rows);
  send_complete("SHOW");
}

void Session::show_queries() {
  // Each worker's digests, merged: the top query_digests_max by total time.
  const config::ServerConfig& sc = s_.directory->config().server;
  std::vector<pool::DigestRow> all;
  s_.workers->for_each([&](Worker& w) {
    std::lock_guard<std::mutex> lock(w.digests().mu);
    w.digests().table.collect(all);
  });
  std::vector<Row> rows;
  for (const pool::DigestRow& r : pool::merge_digests(std::move(all), sc.query_digests_max)) {
    char id[17];
    snprintf(id, sizeof id, "%016" PRIx64, r.id);
    const pool::DigestStats& st = r.stats;
    rows.push_back({r.protocol, r.pool, r.user, std::string(id), r.text, num(st.calls),
                    num(st.total_us), num(st.calls == 0 ? 0 : st.total_us / st.calls),
                    num(st.max_us), num(st.latency.quantile(0.99)), num(st.rows), num(st.errors)});
  }
  send_rows({"protocol", "pool", "user", "digest", "query", "calls", "total_time_us",
             "mean_time_us", "max_time_us", "p99_time_us", "rows", "errors"},
            rows);
  send_complete("SHOW");
}

void Session::show_config() {
  std::vector<Row> rows;
  for (ConfigRow& r : config_rows(s_.directory->config())) {
    rows.push_back({std::move(r.key), std::move(r.value), std::move(r.default_value),
                    std::string(r.changeable ? "yes" : "no")});
  }
  send_rows({"key", "value", "default", "changeable"}, rows);
  send_complete("SHOW");
}

}  // namespace sqlmux::admin
