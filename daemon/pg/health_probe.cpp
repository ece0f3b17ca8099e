#include "daemon/pg/health_probe.h"

#include <libpq-fe.h>
#include <poll.h>

#include <string_view>

#include "daemon/core/log.h"
#include "protocol/pg/codec.h"

namespace sqlmux {

namespace {

class PgHealthProbe final : public HealthProbe {
 public:
  explicit PgHealthProbe(const HealthTarget& target) : target_(target) {}
  ~PgHealthProbe() override;
  PgHealthProbe(const PgHealthProbe&) = delete;
  PgHealthProbe& operator=(const PgHealthProbe&) = delete;
  PgHealthProbe(PgHealthProbe&&) = delete;
  PgHealthProbe& operator=(PgHealthProbe&&) = delete;

  Step start() override;
  [[nodiscard]] int fd() const override { return PQsocket(conn_); }
  [[nodiscard]] short events() const override { return want_write_ ? POLLOUT : POLLIN; }
  Step advance(short /*revents*/) override { return connecting_ ? poll_connect() : poll_query(); }

 private:
  Step poll_connect();
  Step send_query();
  Step poll_query();
  Step read_results();
  [[nodiscard]] Step failed() const {
    return Outcome{false, std::nullopt, log::one_line(PQerrorMessage(conn_))};
  }

  const HealthTarget target_;
  PGconn* conn_ = nullptr;
  bool connecting_ = true;  // else querying
  bool want_write_ = false;
};

PgHealthProbe::~PgHealthProbe() {
  if (conn_ != nullptr) {
    PQfinish(conn_);
  }
}

HealthProbe::Step PgHealthProbe::start() {
  const HealthTarget& t = target_;
  const char* keys[] = {"host",    "port",       "dbname",           "user",        "password",
                        "sslmode", "gssencmode", "application_name", "sslrootcert", nullptr};
  const char* vals[] = {t.host.c_str(),
                        t.port.c_str(),
                        t.database.c_str(),
                        t.user.c_str(),
                        t.password ? t.password->c_str() : nullptr,
                        t.sslmode.c_str(),
                        "disable",
                        "sqlmux health check",
                        t.sslrootcert.empty() ? nullptr : t.sslrootcert.c_str(),
                        nullptr};
  conn_ = PQconnectStartParams(keys, vals, 0);
  if (conn_ == nullptr) {
    return Outcome{false, std::nullopt, "out of memory"};
  }
  if (PQstatus(conn_) == CONNECTION_BAD || PQsocket(conn_) < 0 || PQsetnonblocking(conn_, 1) != 0) {
    return failed();
  }
  connecting_ = true;
  want_write_ = true;  // PQconnectPoll starts as if it had said "writing"
  return std::nullopt;
}

HealthProbe::Step PgHealthProbe::poll_connect() {
  switch (PQconnectPoll(conn_)) {
    case PGRES_POLLING_READING:
      want_write_ = false;
      return std::nullopt;
    case PGRES_POLLING_WRITING:
      want_write_ = true;
      return std::nullopt;
    case PGRES_POLLING_OK:
      return send_query();
    default:
      return failed();
  }
}

HealthProbe::Step PgHealthProbe::send_query() {
  if (PQsendQuery(conn_, "SELECT pg_is_in_recovery()") == 0) {
    return failed();
  }
  connecting_ = false;
  want_write_ = PQflush(conn_) == 1;
  return std::nullopt;
}

HealthProbe::Step PgHealthProbe::poll_query() {
  if (want_write_) {
    const int f = PQflush(conn_);
    if (f < 0) {
      return failed();
    }
    want_write_ = f == 1;
    if (want_write_) {
      return std::nullopt;
    }
  }
  if (PQconsumeInput(conn_) == 0) {
    return failed();
  }
  if (PQisBusy(conn_) != 0) {
    return std::nullopt;
  }
  return read_results();
}

// One row, one column: "t" for a replica.
HealthProbe::Step PgHealthProbe::read_results() {
  Outcome out{false, std::nullopt, "no result"};
  while (PGresult* r = PQgetResult(conn_)) {
    if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1 && PQnfields(r) == 1) {
      out.ok = true;
      out.role =
          std::string_view(PQgetvalue(r, 0, 0)) == "t" ? pool::Role::Replica : pool::Role::Primary;
    } else if (PQresultStatus(r) != PGRES_TUPLES_OK) {
      out.error = log::one_line(PQresultErrorMessage(r));
    }
    PQclear(r);
  }
  return out;
}

std::unique_ptr<HealthProbe> make_probe(const HealthTarget& target,
                                        const config::HealthConfig& /*settings*/) {
  return std::make_unique<PgHealthProbe>(target);
}

}  // namespace

HealthProbeKind pg_health_probe_kind() {
  return {pg::kDefaultPort, &make_probe};
}

}  // namespace sqlmux
