/* A libpq client that uses named prepared statements (PQprepare /
 * PQexecPrepared / PQdescribePrepared), as JDBC-style drivers do, through a
 * transaction-mode pool. Each run writes and reads back rows tagged with its
 * own id; any mix-up between clients exits non-zero.
 *
 *   libpq_prepared CONNINFO ID ROUNDS
 */
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static PGconn* conn;

static void die(const char* what, PGresult* res) {
  fprintf(stderr, "%s: %s", what, res ? PQresultErrorMessage(res) : PQerrorMessage(conn));
  exit(1);
}

static void expect(PGresult* res, ExecStatusType st, const char* what) {
  if (PQresultStatus(res) != st) die(what, res);
}

int main(int argc, char** argv) {
  if (argc != 4) {
    fprintf(stderr, "usage: %s CONNINFO ID ROUNDS\n", argv[0]);
    return 2;
  }
  const char* id = argv[2];
  int rounds = atoi(argv[3]);
  conn = PQconnectdb(argv[1]);
  if (PQstatus(conn) != CONNECTION_OK) die("connect", NULL);

  PGresult* r = PQprepare(conn, "ins", "INSERT INTO lp(owner, n) VALUES ($1, $2::int)", 2, NULL);
  expect(r, PGRES_COMMAND_OK, "prepare ins");
  PQclear(r);
  r = PQprepare(conn, "sel", "SELECT n FROM lp WHERE owner = $1 ORDER BY n", 1, NULL);
  expect(r, PGRES_COMMAND_OK, "prepare sel");
  PQclear(r);
  r = PQdescribePrepared(conn, "sel");
  expect(r, PGRES_COMMAND_OK, "describe sel");
  if (PQnfields(r) != 1 || strcmp(PQfname(r, 0), "n") != 0) die("describe sel: wrong columns", r);
  PQclear(r);

  for (int i = 0; i < rounds; i++) {
    char nbuf[16];
    snprintf(nbuf, sizeof nbuf, "%d", i);
    const char* ins[2] = {id, nbuf};
    r = PQexec(conn, "BEGIN");
    expect(r, PGRES_COMMAND_OK, "begin");
    PQclear(r);
    r = PQexecPrepared(conn, "ins", 2, ins, NULL, NULL, 0);
    expect(r, PGRES_COMMAND_OK, "exec ins");
    PQclear(r);
    r = PQexec(conn, "COMMIT");
    expect(r, PGRES_COMMAND_OK, "commit");
    PQclear(r);
    const char* sel[1] = {id};
    r = PQexecPrepared(conn, "sel", 1, sel, NULL, NULL, 0);
    expect(r, PGRES_TUPLES_OK, "exec sel");
    if (PQntuples(r) != i + 1) {
      fprintf(stderr, "client %s: %d rows after round %d\n", id, PQntuples(r), i);
      return 1;
    }
    for (int k = 0; k <= i; k++) {
      if (atoi(PQgetvalue(r, k, 0)) != k) {
        fprintf(stderr, "client %s: row %d is %s\n", id, k, PQgetvalue(r, k, 0));
        return 1;
      }
    }
    PQclear(r);
  }
  r = PQexec(conn, "DEALLOCATE ins");
  expect(r, PGRES_COMMAND_OK, "deallocate");
  PQclear(r);
  r = PQprepare(conn, "ins", "SELECT 1", 0, NULL); /* the name is free again */
  expect(r, PGRES_COMMAND_OK, "prepare after deallocate");
  PQclear(r);
  PQfinish(conn);
  return 0;
}
