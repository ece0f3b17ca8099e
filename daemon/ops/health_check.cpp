#include "daemon/ops/health_check.h"

#include <libpq-fe.h>
#include <mysql.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <map>

#include "daemon/core/log.h"
#include "daemon/ops/hosts.h"

namespace sqlmux {

namespace {

uint64_t mono_ms() {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                   std::chrono::steady_clock::now().time_since_epoch())
                                   .count());
}

}  // namespace

struct HealthChecker::Check {
  enum class Phase { Waiting, Connecting, Querying };
  Target target;
  HostStatus* status = nullptr;
  PGconn* conn = nullptr;
  // MySQL hosts: Connector/C's non-blocking calls; my_wait is the
  // MYSQL_WAIT_* set the last *_start / *_cont returned.
  enum class MyStep { Connect, Query, Store };
  MYSQL* my = nullptr;
  MyStep my_step = MyStep::Connect;
  int my_wait = 0;
  Phase phase = Phase::Waiting;
  bool want_write = false;
  uint64_t due_ms = 0;       // next start (Waiting)
  uint64_t deadline_ms = 0;  // the running check's timeout
  uint64_t started_ms = 0;
};

HealthChecker::HealthChecker(HostRegistry& hosts, OnChange on_change)
    : hosts_(hosts), on_change_(std::move(on_change)) {}

HealthChecker::~HealthChecker() {
  stop();
}

std::vector<HealthChecker::Target> HealthChecker::targets(const config::Config& cfg) {
  std::vector<Target> out;
  if (!cfg.health) {
    return out;
  }
  const config::HealthConfig& h = *cfg.health;
  for (const config::PoolConfig& p : cfg.pools) {
    const bool mysql = p.protocol == config::Protocol::Mysql;
    for (const config::BackendConfig& b : p.backends) {
      if (std::any_of(out.begin(), out.end(),
                      [&](const Target& t) { return t.address == b.address.text; })) {
        continue;  // the first pool that lists a host gives its login
      }
      if (!h.user && !p.user) {
        continue;  // validation rejects this
      }
      Target t;
      t.address = b.address.text;
      const bool unix_socket = b.address.kind == config::Address::Kind::Unix;
      t.host = unix_socket ? b.address.unix_path : b.address.host;
      t.port = std::to_string(b.address.port != 0 ? b.address.port : mysql ? 3306 : 5432);
      t.mysql = mysql;
      t.user = h.user ? *h.user : *p.user;
      t.password = h.user ? h.password : p.password;
      t.database = h.database ? *h.database : p.database;
      t.sslmode = p.server_tls;
      t.sslrootcert = p.server_tls_ca;
      out.push_back(std::move(t));
    }
  }
  return out;
}

void HealthChecker::configure(const config::Config& cfg) {
  {
    std::lock_guard<std::mutex> lk(mu_);
    next_settings_ = cfg.health;
    next_targets_ = targets(cfg);
    changed_ = true;
  }
  if (!cfg.health) {
    // Hosts read as unchecked again: up, with their configured roles.
    hosts_.for_each([](HostStatus& s) { s.reset(); });
  }
  if (!thread_.joinable() && cfg.health) {
    wake_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    stop_ = false;
    thread_ = std::thread([this] { run(); });
  } else {
    wake();
  }
}

void HealthChecker::wake() {
  if (wake_fd_ < 0) {
    return;
  }
  uint64_t one = 1;
  ssize_t n = write(wake_fd_, &one, sizeof one);
  (void)n;
}

void HealthChecker::stop() {
  if (!thread_.joinable()) {
    return;
  }
  stop_ = true;
  wake();
  thread_.join();
  close(wake_fd_);
  wake_fd_ = -1;
}

void HealthChecker::run() {
  std::vector<Check> checks;
  std::optional<config::HealthConfig> settings;
  auto finish = [&](Check& c, bool ok, std::optional<pool::Role> role, const std::string& error) {
    if (c.conn != nullptr) {
      PQfinish(c.conn);
    }
    c.conn = nullptr;
    if (c.my != nullptr) {
      mysql_close(c.my);
    }
    c.my = nullptr;
    c.phase = Check::Phase::Waiting;
    c.due_ms = c.started_ms + static_cast<uint64_t>(settings->interval.count());
    if (!ok) {
      LOG_DEBUG("health check of %s failed: %s", c.target.address.c_str(), error.c_str());
    }
    if (c.status->record(ok, role, error, settings->fall, settings->rise) && on_change_) {
      on_change_();
    }
  };
  auto advance = [&](Check& c) {
    if (c.phase == Check::Phase::Connecting) {
      switch (PQconnectPoll(c.conn)) {
        case PGRES_POLLING_READING:
          c.want_write = false;
          return;
        case PGRES_POLLING_WRITING:
          c.want_write = true;
          return;
        case PGRES_POLLING_OK:
          if (PQsendQuery(c.conn, "SELECT pg_is_in_recovery()") == 0) {
            finish(c, false, std::nullopt, log::one_line(PQerrorMessage(c.conn)));
            return;
          }
          c.phase = Check::Phase::Querying;
          c.want_write = PQflush(c.conn) == 1;
          return;
        default:
          finish(c, false, std::nullopt, log::one_line(PQerrorMessage(c.conn)));
          return;
      }
    }
    // Querying.
    if (c.want_write) {
      const int f = PQflush(c.conn);
      if (f < 0) {
        finish(c, false, std::nullopt, log::one_line(PQerrorMessage(c.conn)));
        return;
      }
      c.want_write = f == 1;
      if (c.want_write) {
        return;
      }
    }
    if (PQconsumeInput(c.conn) == 0) {
      finish(c, false, std::nullopt, log::one_line(PQerrorMessage(c.conn)));
      return;
    }
    if (PQisBusy(c.conn) != 0) {
      return;
    }
    bool ok = false;
    std::optional<pool::Role> role;
    std::string error = "no result";
    while (PGresult* r = PQgetResult(c.conn)) {
      if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1 && PQnfields(r) == 1) {
        ok = true;
        role = std::string_view(PQgetvalue(r, 0, 0)) == "t" ? pool::Role::Replica
                                                            : pool::Role::Primary;
      } else if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        error = log::one_line(PQresultErrorMessage(r));
      }
      PQclear(r);
    }
    finish(c, ok, role, error);
  };
  // The result of SELECT @@global.read_only: up, and primary or replica.
  auto my_result = [&](Check& c, MYSQL_RES* res) {
    if (res == nullptr) {
      finish(c, false, std::nullopt, log::one_line(mysql_error(c.my)));
      return;
    }
    MYSQL_ROW row = mysql_fetch_row(res);
    std::optional<pool::Role> role;
    if (row != nullptr && row[0] != nullptr) {
      const std::string_view v(row[0]);
      role = v == "1" || v == "ON" ? pool::Role::Replica : pool::Role::Primary;
    }
    mysql_free_result(res);
    finish(c, role.has_value(), role, role ? std::string() : "no result");
  };
  // Runs the MySQL check as far as it goes without waiting: connect, the
  // query, its result. `events` are the MYSQL_WAIT_* that poll(2) saw (-1:
  // the previous step finished without waiting).
  auto my_drive = [&](Check& c, int events) {
    for (;;) {
      switch (c.my_step) {
        case Check::MyStep::Connect: {
          MYSQL* ret = nullptr;
          if (events >= 0) {
            c.my_wait = mysql_real_connect_cont(&ret, c.my, events);
            if (c.my_wait != 0) return;
            if (ret == nullptr) {
              finish(c, false, std::nullopt, log::one_line(mysql_error(c.my)));
              return;
            }
          }
          static constexpr std::string_view kQuery = "SELECT @@global.read_only";
          int err = 0;
          c.phase = Check::Phase::Querying;
          c.my_step = Check::MyStep::Query;
          c.my_wait = mysql_real_query_start(&err, c.my, kQuery.data(), kQuery.size());
          if (c.my_wait != 0) return;
          if (err != 0) {
            finish(c, false, std::nullopt, log::one_line(mysql_error(c.my)));
            return;
          }
          events = -1;  // the query finished at once: on to its result
          continue;
        }
        case Check::MyStep::Query: {
          if (events >= 0) {
            int err = 0;
            c.my_wait = mysql_real_query_cont(&err, c.my, events);
            if (c.my_wait != 0) return;
            if (err != 0) {
              finish(c, false, std::nullopt, log::one_line(mysql_error(c.my)));
              return;
            }
          }
          c.my_step = Check::MyStep::Store;
          MYSQL_RES* res = nullptr;
          c.my_wait = mysql_store_result_start(&res, c.my);
          if (c.my_wait != 0) return;
          my_result(c, res);
          return;
        }
        case Check::MyStep::Store: {
          MYSQL_RES* res = nullptr;
          c.my_wait = mysql_store_result_cont(&res, c.my, events);
          if (c.my_wait != 0) return;
          my_result(c, res);
          return;
        }
      }
    }
  };
  auto my_start = [&](Check& c) {
    c.my = mysql_init(nullptr);
    if (c.my == nullptr) {
      finish(c, false, std::nullopt, "out of memory");
      return;
    }
    mysql_options(c.my, MYSQL_OPT_NONBLOCK, nullptr);
    const auto secs = static_cast<unsigned>(std::max<int64_t>(1, settings->timeout.count() / 1000));
    mysql_options(c.my, MYSQL_OPT_CONNECT_TIMEOUT, &secs);
    MYSQL* ret = nullptr;
    c.phase = Check::Phase::Connecting;
    c.my_step = Check::MyStep::Connect;
    c.my_wait =
        mysql_real_connect_start(&ret, c.my, c.target.host.c_str(), c.target.user.c_str(),
                                 c.target.password ? c.target.password->c_str() : nullptr,
                                 c.target.database.empty() ? nullptr : c.target.database.c_str(),
                                 static_cast<unsigned>(std::stoul(c.target.port)), nullptr, 0);
    if (c.my_wait != 0) return;
    if (ret == nullptr) {
      finish(c, false, std::nullopt, log::one_line(mysql_error(c.my)));
      return;
    }
    my_drive(c, -1);
  };
  auto start = [&](Check& c, uint64_t now) {
    c.started_ms = now;
    c.deadline_ms = now + static_cast<uint64_t>(settings->timeout.count());
    if (c.target.mysql) {
      my_start(c);
      return;
    }
    const char* keys[] = {"host",    "port",       "dbname",           "user",        "password",
                          "sslmode", "gssencmode", "application_name", "sslrootcert", nullptr};
    const char* vals[] = {c.target.host.c_str(),
                          c.target.port.c_str(),
                          c.target.database.c_str(),
                          c.target.user.c_str(),
                          c.target.password ? c.target.password->c_str() : nullptr,
                          c.target.sslmode.c_str(),
                          "disable",
                          "sqlmux health check",
                          c.target.sslrootcert.empty() ? nullptr : c.target.sslrootcert.c_str(),
                          nullptr};
    c.conn = PQconnectStartParams(keys, vals, 0);
    if (c.conn == nullptr || PQstatus(c.conn) == CONNECTION_BAD || PQsocket(c.conn) < 0 ||
        PQsetnonblocking(c.conn, 1) != 0) {
      finish(c, false, std::nullopt,
             c.conn != nullptr ? log::one_line(PQerrorMessage(c.conn)) : "out of memory");
      return;
    }
    c.phase = Check::Phase::Connecting;
    c.want_write = true;  // PQconnectPoll starts as if it had said "writing"
  };

  std::vector<pollfd> fds;
  std::vector<Check*> polled;
  while (!stop_) {
    {
      std::lock_guard<std::mutex> lk(mu_);
      if (changed_) {
        changed_ = false;
        settings = next_settings_;
        std::vector<Check> next;
        for (Target& t : next_targets_) {
          auto it = std::find_if(checks.begin(), checks.end(),
                                 [&](const Check& c) { return c.target.address == t.address; });
          if (it != checks.end()) {
            next.push_back(std::move(*it));
            it->conn = nullptr;
            it->my = nullptr;
            next.back().target = std::move(t);
          } else {
            Check c;
            c.status = &hosts_.get(t.address);
            c.target = std::move(t);
            next.push_back(std::move(c));
          }
        }
        for (Check& old : checks) {
          if (old.conn != nullptr) {
            PQfinish(old.conn);
          }
          if (old.my != nullptr) {
            mysql_close(old.my);
          }
        }
        checks = std::move(next);
        next_targets_.clear();
      }
    }
    if (!settings) {
      for (Check& c : checks) {
        if (c.conn != nullptr) {
          PQfinish(c.conn);
        }
        if (c.my != nullptr) {
          mysql_close(c.my);
        }
      }
      checks.clear();
    }
    uint64_t now = mono_ms();
    uint64_t next_event = now + 1000;
    for (Check& c : checks) {
      if (c.phase == Check::Phase::Waiting && now >= c.due_ms) {
        start(c, now);
      }
      if (c.phase != Check::Phase::Waiting && now >= c.deadline_ms) {
        finish(c, false, std::nullopt,
               "timeout after " + std::to_string(settings->timeout.count()) + " ms");
      }
      next_event =
          std::min(next_event, c.phase == Check::Phase::Waiting ? c.due_ms : c.deadline_ms);
    }
    fds.clear();
    polled.clear();
    fds.push_back({wake_fd_, POLLIN, 0});
    for (Check& c : checks) {
      if (c.phase == Check::Phase::Waiting) {
        continue;
      }
      if (c.my != nullptr) {
        short ev = 0;
        if ((c.my_wait & MYSQL_WAIT_READ) != 0) ev |= POLLIN;
        if ((c.my_wait & MYSQL_WAIT_WRITE) != 0) ev |= POLLOUT;
        fds.push_back({mysql_get_socket(c.my), ev, 0});
      } else {
        fds.push_back({PQsocket(c.conn), static_cast<short>(c.want_write ? POLLOUT : POLLIN), 0});
      }
      polled.push_back(&c);
    }
    const int timeout = next_event > now ? static_cast<int>(next_event - now) : 0;
    if (poll(fds.data(), fds.size(), timeout) < 0) {
      continue;  // EINTR
    }
    if (fds[0].revents != 0) {
      uint64_t v = 0;
      ssize_t n = read(wake_fd_, &v, sizeof v);
      (void)n;
    }
    for (size_t i = 1; i < fds.size(); ++i) {
      if (fds[i].revents == 0) {
        continue;
      }
      Check& c = *polled[i - 1];
      if (c.my != nullptr) {
        int ev = 0;
        if ((fds[i].revents & (POLLIN | POLLERR | POLLHUP)) != 0) ev |= MYSQL_WAIT_READ;
        if ((fds[i].revents & POLLOUT) != 0) ev |= MYSQL_WAIT_WRITE;
        my_drive(c, ev);
      } else {
        advance(c);
      }
    }
  }
  for (Check& c : checks) {
    if (c.conn != nullptr) {
      PQfinish(c.conn);
    }
    if (c.my != nullptr) {
      mysql_close(c.my);
    }
  }
}

}  // namespace sqlmux
