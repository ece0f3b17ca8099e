/*
 * libpq_client: exercises libpq against sqlmux (or PostgreSQL).
 *
 *   libpq_client "CONNINFO" TAG [ROUNDS]
 *
 * TAG makes this client's rows unique (several clients run at once against
 * table libpq_t(tag text, n int, payload text), created beforehand by the
 * test). Every check that fails prints "libpq_client[TAG]: ..." on stderr
 * and the program exits 1; 0 means every step saw exactly what it expected.
 *
 * Steps: PQexec (simple protocol), PQexecParams with unnamed statements
 * (text and binary results), an error and recovery, explicit transactions
 * with ROLLBACK, PQsendQuery in non-blocking mode with several result sets,
 * PQsendQueryParams in non-blocking mode, COPY FROM STDIN via PQputCopyData
 * and COPY TO STDOUT via PQgetCopyData.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <libpq-fe.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/select.h>

static const char* g_tag = "?";
static const char* g_step = "connect";
static int g_round = 0;

/* Progress goes to stdout (flushed), so a test can tell where a client hangs. */
static void step(const char* name) {
  g_step = name;
  printf("round %d: %s\n", g_round, name);
  fflush(stdout);
}

static void die(PGconn* conn, const char* fmt, ...) {
  va_list ap;
  fprintf(stderr, "libpq_client[%s] round %d step '%s': ", g_tag, g_round, g_step);
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  if (conn != NULL && PQerrorMessage(conn)[0] != '\0') {
    fprintf(stderr, " (libpq: %s)", PQerrorMessage(conn));
  }
  fprintf(stderr, "\n");
  if (conn != NULL) PQfinish(conn);
  exit(1);
}

static PGresult* exec_expect(PGconn* conn, const char* sql, ExecStatusType want) {
  PGresult* res = PQexec(conn, sql);
  if (PQresultStatus(res) != want) {
    die(conn, "PQexec(%s): status %s, want %s: %s", sql, PQresStatus(PQresultStatus(res)),
        PQresStatus(want), PQresultErrorMessage(res));
  }
  return res;
}

static void exec_ok(PGconn* conn, const char* sql) {
  PGresult* res = PQexec(conn, sql);
  ExecStatusType st = PQresultStatus(res);
  if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
    die(conn, "PQexec(%s): status %s: %s", sql, PQresStatus(st), PQresultErrorMessage(res));
  }
  PQclear(res);
}

/* Waits until the socket is readable (or writable when `write`). */
static void wait_socket(PGconn* conn, int write) {
  int fd = PQsocket(conn);
  fd_set rfds, wfds;
  struct timeval tv = {30, 0};
  FD_ZERO(&rfds);
  FD_ZERO(&wfds);
  if (write) {
    FD_SET(fd, &wfds);
  } else {
    FD_SET(fd, &rfds);
  }
  int n = select(fd + 1, &rfds, &wfds, NULL, &tv);
  if (n < 0 && errno != EINTR) die(conn, "select: %s", strerror(errno));
  if (n == 0) die(conn, "timed out (30s) waiting for the server");
}

/* Non-blocking flush loop, then collect every result until NULL. */
static int collect_nonblocking(PGconn* conn, PGresult** out, int max) {
  for (;;) {
    int f = PQflush(conn);
    if (f < 0) die(conn, "PQflush failed");
    if (f == 0) break;
    wait_socket(conn, 1);
    if (!PQconsumeInput(conn)) die(conn, "PQconsumeInput failed while flushing");
  }
  int n = 0;
  for (;;) {
    while (PQisBusy(conn)) {
      wait_socket(conn, 0);
      if (!PQconsumeInput(conn)) die(conn, "PQconsumeInput failed");
    }
    PGresult* res = PQgetResult(conn);
    if (res == NULL) break;
    if (n >= max) die(conn, "more than %d results", max);
    out[n++] = res;
  }
  return n;
}

int main(int argc, char** argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: %s CONNINFO TAG [ROUNDS]\n", argv[0]);
    return 2;
  }
  g_tag = argv[2];
  int rounds = argc > 3 ? atoi(argv[3]) : 3;
  char sql[1024];

  PGconn* conn = PQconnectdb(argv[1]);
  if (PQstatus(conn) != CONNECTION_OK) die(conn, "connection failed");
  if (PQprotocolVersion(conn) != 3) die(conn, "protocol version %d", PQprotocolVersion(conn));
  const char* sv = PQparameterStatus(conn, "server_version");
  if (sv == NULL || sv[0] == '\0') die(conn, "no server_version ParameterStatus");
  const char* enc = PQparameterStatus(conn, "client_encoding");
  if (enc == NULL || strcmp(enc, "UTF8") != 0)
    die(conn, "client_encoding is %s", enc ? enc : "(null)");

  for (int round = 0; round < rounds; round++) {
    g_round = round;
    /* 1. simple protocol */
    step("simple query");
    PGresult* res = exec_expect(conn, "SELECT 1 + 1, 'hello'::text, NULL::int", PGRES_TUPLES_OK);
    if (PQntuples(res) != 1 || PQnfields(res) != 3)
      die(conn, "simple: shape %dx%d", PQntuples(res), PQnfields(res));
    if (strcmp(PQgetvalue(res, 0, 0), "2") != 0 || strcmp(PQgetvalue(res, 0, 1), "hello") != 0 ||
        !PQgetisnull(res, 0, 2)) {
      die(conn, "simple: values %s %s", PQgetvalue(res, 0, 0), PQgetvalue(res, 0, 1));
    }
    if (strcmp(PQfname(res, 1), "text") != 0) die(conn, "simple: column name %s", PQfname(res, 1));
    PQclear(res);

    /* 2. PQexecParams: unnamed statements, text in, text and binary out */
    step("PQexecParams");
    snprintf(sql, sizeof sql, "DELETE FROM libpq_t WHERE tag = $1");
    const char* p1[1] = {g_tag};
    res = PQexecParams(conn, sql, 1, NULL, p1, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_COMMAND_OK) die(conn, "delete: %s", PQresultErrorMessage(res));
    PQclear(res);
    for (int i = 0; i < 50; i++) {
      char nbuf[16], payload[64];
      snprintf(nbuf, sizeof nbuf, "%d", i);
      snprintf(payload, sizeof payload, "%s/payload/%d", g_tag, i * 7);
      const char* vals[3] = {g_tag, nbuf, payload};
      res = PQexecParams(conn, "INSERT INTO libpq_t(tag, n, payload) VALUES ($1, $2::int, $3)", 3,
                         NULL, vals, NULL, NULL, 0);
      if (PQresultStatus(res) != PGRES_COMMAND_OK)
        die(conn, "insert %d: %s", i, PQresultErrorMessage(res));
      if (strcmp(PQcmdTuples(res), "1") != 0)
        die(conn, "insert %d: cmdTuples %s", i, PQcmdTuples(res));
      PQclear(res);
    }
    res = PQexecParams(conn, "SELECT n, payload FROM libpq_t WHERE tag = $1 ORDER BY n", 1, NULL,
                       p1, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) die(conn, "select: %s", PQresultErrorMessage(res));
    if (PQntuples(res) != 50) die(conn, "select: %d rows, want 50", PQntuples(res));
    for (int i = 0; i < 50; i++) {
      char payload[64];
      snprintf(payload, sizeof payload, "%s/payload/%d", g_tag, i * 7);
      if (atoi(PQgetvalue(res, i, 0)) != i || strcmp(PQgetvalue(res, i, 1), payload) != 0) {
        die(conn, "select row %d: %s %s", i, PQgetvalue(res, i, 0), PQgetvalue(res, i, 1));
      }
    }
    PQclear(res);
    /* binary result: int4 sum */
    res = PQexecParams(conn, "SELECT sum(n)::int4 FROM libpq_t WHERE tag = $1", 1, NULL, p1, NULL,
                       NULL, 1);
    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQgetlength(res, 0, 0) != 4) {
      die(conn, "binary sum: %s", PQresultErrorMessage(res));
    }
    uint32_t be;
    memcpy(&be, PQgetvalue(res, 0, 0), 4);
    if ((int)ntohl(be) != 49 * 50 / 2) die(conn, "binary sum: %d", (int)ntohl(be));
    PQclear(res);

    /* 3. an error, then the connection still works */
    step("errors");
    res = PQexec(conn, "SELECT * FROM libpq_no_such_table");
    if (PQresultStatus(res) != PGRES_FATAL_ERROR)
      die(conn, "missing table: status %s", PQresStatus(PQresultStatus(res)));
    const char* state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
    if (state == NULL || strcmp(state, "42P01") != 0)
      die(conn, "missing table: sqlstate %s", state ? state : "(null)");
    PQclear(res);
    res = PQexecParams(conn, "SELECT $1::int / 0", 1, NULL, (const char*[]){"1"}, NULL, NULL, 0);
    state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
    if (state == NULL || strcmp(state, "22012") != 0)
      die(conn, "div by zero: sqlstate %s", state ? state : "(null)");
    PQclear(res);
    if (PQtransactionStatus(conn) != PQTRANS_IDLE)
      die(conn, "not idle after error: %d", PQtransactionStatus(conn));

    /* 4. explicit transaction, rollback, visibility */
    step("transactions");
    exec_ok(conn, "BEGIN");
    if (PQtransactionStatus(conn) != PQTRANS_INTRANS) die(conn, "BEGIN: not in transaction");
    res =
        PQexecParams(conn, "INSERT INTO libpq_t(tag, n, payload) VALUES ($1, 1000, 'rolled back')",
                     1, NULL, p1, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_COMMAND_OK)
      die(conn, "insert in tx: %s", PQresultErrorMessage(res));
    PQclear(res);
    res = PQexec(conn, "SELECT pg_backend_pid()");
    PQclear(res);
    exec_ok(conn, "ROLLBACK");
    res = PQexecParams(conn, "SELECT count(*) FROM libpq_t WHERE tag = $1 AND n = 1000", 1, NULL,
                       p1, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK || strcmp(PQgetvalue(res, 0, 0), "0") != 0) {
      die(conn, "rolled-back row visible: %s", PQgetvalue(res, 0, 0));
    }
    PQclear(res);
    /* error inside a transaction: aborted state until ROLLBACK */
    exec_ok(conn, "BEGIN");
    res = PQexec(conn, "SELECT 1/0");
    PQclear(res);
    if (PQtransactionStatus(conn) != PQTRANS_INERROR)
      die(conn, "not INERROR after failed statement in tx");
    res = PQexec(conn, "SELECT 1");
    state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
    if (state == NULL || strcmp(state, "25P02") != 0)
      die(conn, "in failed tx: sqlstate %s", state ? state : "(null)");
    PQclear(res);
    exec_ok(conn, "ROLLBACK");

    /* 5. PQsendQuery, non-blocking, several result sets in one query */
    step("non-blocking PQsendQuery");
    if (PQsetnonblocking(conn, 1) != 0) die(conn, "PQsetnonblocking");
    if (!PQsendQuery(conn,
                     "SELECT g FROM generate_series(1, 2000) g; SELECT 'second'; SELECT count(*) "
                     "FROM libpq_t WHERE tag = '"
                     "x'")) {
      die(conn, "PQsendQuery");
    }
    PGresult* results[8];
    int n = collect_nonblocking(conn, results, 8);
    if (n != 3) die(conn, "nonblocking: %d results, want 3", n);
    if (PQresultStatus(results[0]) != PGRES_TUPLES_OK || PQntuples(results[0]) != 2000 ||
        strcmp(PQgetvalue(results[0], 1999, 0), "2000") != 0) {
      die(conn, "nonblocking result 1: %s", PQresultErrorMessage(results[0]));
    }
    if (strcmp(PQgetvalue(results[1], 0, 0), "second") != 0) die(conn, "nonblocking result 2");
    if (PQresultStatus(results[2]) != PGRES_TUPLES_OK) die(conn, "nonblocking result 3");
    for (int i = 0; i < n; i++) PQclear(results[i]);
    /* non-blocking extended protocol with a large parameter (forces PQflush loops) */
    step("non-blocking PQsendQueryParams, 4 MB parameter");
    size_t big_len = 4 * 1024 * 1024;
    char* big = malloc(big_len + 1);
    for (size_t i = 0; i < big_len; i++) big[i] = (char)('a' + (i * 7 + (size_t)round) % 26);
    big[big_len] = '\0';
    const char* bp[2] = {big, g_tag};
    if (!PQsendQueryParams(conn, "SELECT length($1::text), md5($1::text), $2::text", 2, NULL, bp,
                           NULL, NULL, 0)) {
      die(conn, "PQsendQueryParams");
    }
    n = collect_nonblocking(conn, results, 8);
    if (n != 1 || PQresultStatus(results[0]) != PGRES_TUPLES_OK)
      die(conn, "big param: %d results", n);
    if ((size_t)atol(PQgetvalue(results[0], 0, 0)) != big_len)
      die(conn, "big param: length %s", PQgetvalue(results[0], 0, 0));
    if (strcmp(PQgetvalue(results[0], 0, 2), g_tag) != 0)
      die(conn, "big param: tag %s", PQgetvalue(results[0], 0, 2));
    PQclear(results[0]);
    free(big);
    if (PQsetnonblocking(conn, 0) != 0) die(conn, "PQsetnonblocking(0)");

    /* 6. COPY FROM STDIN */
    step("COPY FROM STDIN");
    res = exec_expect(conn, "COPY libpq_t (tag, n, payload) FROM STDIN", PGRES_COPY_IN);
    PQclear(res);
    int copy_rows = 5000;
    for (int i = 0; i < copy_rows; i++) {
      char line[128];
      int len =
          snprintf(line, sizeof line, "%s\t%d\tcopy row %d\\twith tab\n", g_tag, 10000 + i, i);
      if (PQputCopyData(conn, line, len) != 1) die(conn, "PQputCopyData");
    }
    if (PQputCopyEnd(conn, NULL) != 1) die(conn, "PQputCopyEnd");
    res = PQgetResult(conn);
    if (PQresultStatus(res) != PGRES_COMMAND_OK)
      die(conn, "COPY IN result: %s", PQresultErrorMessage(res));
    snprintf(sql, sizeof sql, "%d", copy_rows);
    if (strcmp(PQcmdTuples(res), sql) != 0) die(conn, "COPY IN: %s rows", PQcmdTuples(res));
    PQclear(res);
    while ((res = PQgetResult(conn)) != NULL) PQclear(res);

    /* 7. COPY TO STDOUT */
    step("COPY TO STDOUT");
    snprintf(sql, sizeof sql,
             "COPY (SELECT n, payload FROM libpq_t WHERE tag = '%s' AND n >= 10000 ORDER BY n) TO "
             "STDOUT",
             g_tag);
    res = exec_expect(conn, sql, PGRES_COPY_OUT);
    PQclear(res);
    int got = 0;
    char* buf = NULL;
    int len;
    while ((len = PQgetCopyData(conn, &buf, 0)) > 0) {
      char want[128];
      snprintf(want, sizeof want, "%d\tcopy row %d\\twith tab\n", 10000 + got, got);
      if ((size_t)len != strlen(want) || memcmp(buf, want, (size_t)len) != 0) {
        die(conn, "COPY OUT row %d: %.*s", got, len, buf);
      }
      PQfreemem(buf);
      got++;
    }
    if (len != -1) die(conn, "PQgetCopyData returned %d", len);
    res = PQgetResult(conn);
    if (PQresultStatus(res) != PGRES_COMMAND_OK)
      die(conn, "COPY OUT result: %s", PQresultErrorMessage(res));
    PQclear(res);
    if (got != copy_rows) die(conn, "COPY OUT: %d rows, want %d", got, copy_rows);

    /* 8. a COPY FROM STDIN the client aborts: error, connection usable */
    step("aborted COPY FROM STDIN");
    res = exec_expect(conn, "COPY libpq_t (tag, n, payload) FROM STDIN", PGRES_COPY_IN);
    PQclear(res);
    const char* line = "aborted\t1\tx\n";
    PQputCopyData(conn, line, (int)strlen(line));
    PQputCopyEnd(conn, "client gave up");
    res = PQgetResult(conn);
    if (PQresultStatus(res) != PGRES_FATAL_ERROR)
      die(conn, "aborted COPY: status %s", PQresStatus(PQresultStatus(res)));
    if (strstr(PQresultErrorMessage(res), "client gave up") == NULL) {
      die(conn, "aborted COPY: message %s", PQresultErrorMessage(res));
    }
    PQclear(res);
    while ((res = PQgetResult(conn)) != NULL) PQclear(res);
    res = exec_expect(conn, "SELECT count(*) FROM libpq_t WHERE tag = 'aborted'", PGRES_TUPLES_OK);
    if (strcmp(PQgetvalue(res, 0, 0), "0") != 0) die(conn, "aborted COPY left rows");
    PQclear(res);
  }

  PQfinish(conn);
  printf("libpq_client[%s]: ok\n", g_tag);
  return 0;
}
