#include "daemon/pg/auth_query.h"

#include <libpq-fe.h>

#include <utility>

#include "daemon/core/log.h"
#include "protocol/pg/codec.h"

namespace sqlmux {

namespace {
std::string host_of(const config::Address& a) {
  return a.kind == config::Address::Kind::Unix ? a.unix_path : a.host;
}
}  // namespace

PgAuthQuery::PgAuthQuery(uv_loop_t* loop, const config::PoolConfig& pc, std::string user, Done done)
    : AuthLookup(loop, std::move(done)),
      host_(host_of(lookup_address(pc))),
      port_(std::to_string(lookup_address(pc).port == 0 ? pg::kDefaultPort
                                                        : lookup_address(pc).port)),
      database_(pc.database),
      auth_user_(pc.auth_user.value_or("")),
      query_(pc.auth_query),
      user_(std::move(user)),
      server_tls_(pc.server_tls),
      server_tls_ca_(pc.server_tls_ca),
      auth_password_(pc.auth_password) {}

PgAuthQuery::~PgAuthQuery() {
  close();
}

void PgAuthQuery::start() {
  // TLS as the pool's server connections (server_tls, server_tls_ca).
  const char* keys[] = {
      "host",    "port",        "dbname",           "user", "password", "gssencmode",
      "sslmode", "sslrootcert", "application_name", nullptr};
  const char* vals[] = {host_.c_str(),
                        port_.c_str(),
                        database_.c_str(),
                        auth_user_.c_str(),
                        auth_password_ ? auth_password_->c_str() : nullptr,
                        "disable",
                        server_tls_.c_str(),
                        server_tls_ca_.empty() ? nullptr : server_tls_ca_.c_str(),
                        "sqlmux auth_query",
                        nullptr};
  pg_ = PQconnectStartParams(keys, vals, 0);
  if (pg_ == nullptr) {
    fail("out of memory");
    return;
  }
  if (PQstatus(pg_) == CONNECTION_BAD || PQsocket(pg_) < 0 || PQsetnonblocking(pg_, 1) != 0) {
    fail(PQerrorMessage(pg_));
    return;
  }
  drive_connect();
}

void PgAuthQuery::watch(int events) {
  (void)poll_socket(PQsocket(pg_), events);
}

void PgAuthQuery::on_poll(int /*status*/, int /*events*/) {
  on_io();
}

void PgAuthQuery::on_io() {
  if (connecting_) {
    drive_connect();
    return;
  }
  const int f = PQflush(pg_);
  if (f < 0) {
    fail(PQerrorMessage(pg_));
    return;
  }
  if (f == 1) {
    watch(UV_READABLE | UV_WRITABLE);
    return;
  }
  if (PQconsumeInput(pg_) == 0) {
    fail(PQerrorMessage(pg_));
    return;
  }
  if (PQisBusy(pg_) != 0) {
    watch(UV_READABLE);
    return;
  }
  read_result();
}

void PgAuthQuery::drive_connect() {
  switch (PQconnectPoll(pg_)) {
    case PGRES_POLLING_READING:
      watch(UV_READABLE);
      return;
    case PGRES_POLLING_WRITING:
      watch(UV_WRITABLE);
      return;
    case PGRES_POLLING_OK:
      send_query();
      return;
    default:
      fail(PQerrorMessage(pg_));
      return;
  }
}

void PgAuthQuery::send_query() {
  connecting_ = false;
  const char* params[] = {user_.c_str()};
  if (PQsendQueryParams(pg_, query_.c_str(), 1, nullptr, params, nullptr, nullptr, 0) == 0) {
    fail(PQerrorMessage(pg_));
    return;
  }
  watch(PQflush(pg_) == 1 ? UV_READABLE | UV_WRITABLE : UV_READABLE);
}

// PgBouncer's contract: a row (name, password); no row or a NULL password:
// no such user.
void PgAuthQuery::read_result() {
  Result out;
  bool seen = false;
  while (PGresult* r = PQgetResult(pg_)) {
    if (!seen) {
      seen = true;
      if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        out.error = log::one_line(PQresultErrorMessage(r));
      } else if (PQnfields(r) != 2) {
        out.error = "auth_query returned " + std::to_string(PQnfields(r)) +
                    " columns; expected two (name, password)";
      } else {
        out.ok = true;
        if (PQntuples(r) > 0 && PQgetisnull(r, 0, 1) == 0) out.secret = PQgetvalue(r, 0, 1);
      }
    }
    PQclear(r);
  }
  if (!seen) out.error = "no result";
  finish(std::move(out));
}

void PgAuthQuery::close() {
  close_poll();
  if (pg_ != nullptr) {
    PQfinish(pg_);  // after the poll handle let go of its socket
    pg_ = nullptr;
  }
}

}  // namespace sqlmux
