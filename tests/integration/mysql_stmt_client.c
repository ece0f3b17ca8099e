/* A libmariadb client that uses server-side prepared statements (the
 * binary protocol: COM_STMT_PREPARE / EXECUTE / SEND_LONG_DATA / FETCH /
 * RESET / CLOSE), as Connector/J with useServerPrepStmts, Go's driver and
 * sysbench do, through a transaction-mode pool. Each run writes and reads
 * back rows tagged with its own id; any mix-up between clients exits
 * non-zero.
 *
 *   mysql_stmt_client HOST PORT USER PASSWORD DB ID ROUNDS
 *
 * Table (made by the test): ms(owner VARCHAR(32), n INT, note VARCHAR(200)).
 * Round i inserts (ID, i, "ID-i"), in an explicit transaction on odd
 * rounds; every third round sends the note with mysql_stmt_send_long_data.
 * Then it selects its rows back, on even rounds through a read-only cursor
 * (COM_STMT_FETCH, 2 rows per fetch), else buffered (mysql_stmt_store_result),
 * and checks them all. At the end the statements are closed, one is
 * prepared again and run once more. Prints "ok ID ROUNDS" on success.
 *
 *   mysql_stmt_client HOST PORT USER PASSWORD DB --types SQL
 *
 * prints, for SQL as a text query and as a prepared statement, one line per
 * column: "text|stmt NAME TYPE DATA_TYPE_NAME FORMAT_NAME" (MariaDB's
 * extended metadata as libmariadb reads it; "-" when absent). */
#include <mysql.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static MYSQL* conn;
static const char* id;

static void die(const char* what) {
  fprintf(stderr, "client %s: %s: %u %s\n", id, what, mysql_errno(conn), mysql_error(conn));
  exit(1);
}

static void die_stmt(MYSQL_STMT* st, const char* what) {
  fprintf(stderr, "client %s: %s: %u %s\n", id, what, mysql_stmt_errno(st), mysql_stmt_error(st));
  exit(1);
}

static void query(const char* sql) {
  if (mysql_query(conn, sql)) die(sql);
}

static MYSQL_STMT* prepare(const char* sql, unsigned params, unsigned fields) {
  MYSQL_STMT* st = mysql_stmt_init(conn);
  if (!st) die("mysql_stmt_init");
  if (mysql_stmt_prepare(st, sql, (unsigned long)strlen(sql))) die_stmt(st, sql);
  if (mysql_stmt_param_count(st) != params) {
    fprintf(stderr, "client %s: %s: %lu parameters, want %u\n", id, sql, mysql_stmt_param_count(st), params);
    exit(1);
  }
  if (mysql_stmt_field_count(st) != fields) {
    fprintf(stderr, "client %s: %s: %u columns, want %u\n", id, sql, mysql_stmt_field_count(st), fields);
    exit(1);
  }
  return st;
}

static void insert(MYSQL_STMT* ins, int n, int long_data) {
  char note[200];
  unsigned long owner_len = strlen(id), note_len;
  int nval = n;
  snprintf(note, sizeof note, "%s-%d", id, n);
  note_len = strlen(note);
  MYSQL_BIND b[3];
  memset(b, 0, sizeof b);
  b[0].buffer_type = MYSQL_TYPE_STRING;
  b[0].buffer = (void*)id;
  b[0].buffer_length = owner_len;
  b[0].length = &owner_len;
  b[1].buffer_type = MYSQL_TYPE_LONG;
  b[1].buffer = &nval;
  b[2].buffer_type = MYSQL_TYPE_STRING;
  b[2].buffer = note;
  b[2].buffer_length = note_len;
  b[2].length = &note_len;
  if (mysql_stmt_bind_param(ins, b)) die_stmt(ins, "bind ins");
  if (long_data) {
    /* in two pieces */
    size_t half = note_len / 2;
    if (mysql_stmt_send_long_data(ins, 2, note, half)) die_stmt(ins, "send_long_data 1");
    if (mysql_stmt_send_long_data(ins, 2, note + half, note_len - half)) die_stmt(ins, "send_long_data 2");
  }
  if (mysql_stmt_execute(ins)) die_stmt(ins, "execute ins");
  if (mysql_stmt_affected_rows(ins) != 1) {
    fprintf(stderr, "client %s: insert affected %llu rows\n", id, (unsigned long long)mysql_stmt_affected_rows(ins));
    exit(1);
  }
}

static void check_rows(MYSQL_STMT* sel, int round, int cursor) {
  unsigned long owner_len = strlen(id);
  MYSQL_BIND p[1];
  memset(p, 0, sizeof p);
  p[0].buffer_type = MYSQL_TYPE_STRING;
  p[0].buffer = (void*)id;
  p[0].buffer_length = owner_len;
  p[0].length = &owner_len;
  unsigned long type = cursor ? CURSOR_TYPE_READ_ONLY : CURSOR_TYPE_NO_CURSOR;
  unsigned long prefetch = 2;
  if (mysql_stmt_attr_set(sel, STMT_ATTR_CURSOR_TYPE, &type)) die_stmt(sel, "cursor type");
  if (mysql_stmt_attr_set(sel, STMT_ATTR_PREFETCH_ROWS, &prefetch)) die_stmt(sel, "prefetch rows");
  if (mysql_stmt_bind_param(sel, p)) die_stmt(sel, "bind sel");
  if (mysql_stmt_execute(sel)) die_stmt(sel, "execute sel");

  int n = 0;
  char note[200];
  unsigned long note_len = 0;
  my_bool n_null = 0, note_null = 0;
  MYSQL_BIND r[2];
  memset(r, 0, sizeof r);
  r[0].buffer_type = MYSQL_TYPE_LONG;
  r[0].buffer = &n;
  r[0].is_null = &n_null;
  r[1].buffer_type = MYSQL_TYPE_STRING;
  r[1].buffer = note;
  r[1].buffer_length = sizeof note - 1;
  r[1].length = &note_len;
  r[1].is_null = &note_null;
  if (mysql_stmt_bind_result(sel, r)) die_stmt(sel, "bind result");
  if (!cursor && mysql_stmt_store_result(sel)) die_stmt(sel, "store result");

  int k = 0, rc;
  while ((rc = mysql_stmt_fetch(sel)) == 0) {
    char want[200];
    note[note_len < sizeof note ? note_len : sizeof note - 1] = 0;
    snprintf(want, sizeof want, "%s-%d", id, k);
    if (n_null || note_null || n != k || strcmp(note, want) != 0) {
      fprintf(stderr, "client %s: round %d row %d is (%d, %s), want (%d, %s)\n", id, round, k, n, note, k, want);
      exit(1);
    }
    k++;
  }
  if (rc != MYSQL_NO_DATA) die_stmt(sel, "fetch");
  if (k != round + 1) {
    fprintf(stderr, "client %s: %d rows after round %d (cursor %d)\n", id, k, round, cursor);
    exit(1);
  }
  if (mysql_stmt_free_result(sel)) die_stmt(sel, "free result");
  if (mysql_stmt_reset(sel)) die_stmt(sel, "reset");
}

static void print_types(const char* how, MYSQL_RES* res) {
  unsigned n = mysql_num_fields(res);
  MYSQL_FIELD* f = mysql_fetch_fields(res);
  for (unsigned i = 0; i < n; i++) {
    MARIADB_CONST_STRING type = {NULL, 0};
    MARIADB_CONST_STRING format = {NULL, 0};
    int no_type = mariadb_field_attr(&type, &f[i], MARIADB_FIELD_ATTR_DATA_TYPE_NAME);
    int no_format = mariadb_field_attr(&format, &f[i], MARIADB_FIELD_ATTR_FORMAT_NAME);
    printf("%s %s %d %.*s %.*s\n", how, f[i].name, (int)f[i].type,
           no_type || !type.length ? 1 : (int)type.length, no_type || !type.length ? "-" : type.str,
           no_format || !format.length ? 1 : (int)format.length,
           no_format || !format.length ? "-" : format.str);
  }
}

/* --types: the extended type info of SQL's columns. */
static int types(const char* sql) {
  if (mysql_query(conn, sql)) die(sql);
  MYSQL_RES* res = mysql_store_result(conn);
  if (!res) die("store result");
  print_types("text", res);
  mysql_free_result(res);
  MYSQL_STMT* st = mysql_stmt_init(conn);
  if (!st || mysql_stmt_prepare(st, sql, (unsigned long)strlen(sql)) || mysql_stmt_execute(st))
    die_stmt(st, sql);
  MYSQL_RES* meta = mysql_stmt_result_metadata(st);
  if (!meta) die_stmt(st, "result metadata");
  print_types("stmt", meta);
  mysql_free_result(meta);
  mysql_stmt_close(st);
  mysql_close(conn);
  return 0;
}

int main(int argc, char** argv) {
  if (argc == 8 && strcmp(argv[6], "--types") == 0) {
    id = "types";
    conn = mysql_init(NULL);
    if (!mysql_real_connect(conn, argv[1], argv[3], argv[4], argv[5], (unsigned)atoi(argv[2]), NULL, 0))
      die("connect");
    return types(argv[7]);
  }
  if (argc != 8) {
    fprintf(stderr, "usage: %s HOST PORT USER PASSWORD DB ID ROUNDS\n", argv[0]);
    return 2;
  }
  id = argv[6];
  int rounds = atoi(argv[7]);
  conn = mysql_init(NULL);
  unsigned timeout = 15;
  mysql_options(conn, MYSQL_OPT_CONNECT_TIMEOUT, &timeout);
  if (!mysql_real_connect(conn, argv[1], argv[3], argv[4], argv[5], (unsigned)atoi(argv[2]), NULL, 0))
    die("connect");

  MYSQL_STMT* ins = prepare("INSERT INTO ms(owner, n, note) VALUES (?, ?, ?)", 3, 0);
  MYSQL_STMT* sel = prepare("SELECT n, note FROM ms WHERE owner = ? ORDER BY n", 1, 2);
  MYSQL_RES* meta = mysql_stmt_result_metadata(sel);
  if (!meta) die_stmt(sel, "result metadata");
  MYSQL_FIELD* f = mysql_fetch_fields(meta);
  if (strcmp(f[0].name, "n") != 0 || strcmp(f[1].name, "note") != 0) {
    fprintf(stderr, "client %s: columns %s, %s\n", id, f[0].name, f[1].name);
    return 1;
  }
  mysql_free_result(meta);

  for (int i = 0; i < rounds; i++) {
    int txn = i % 2 == 1;
    if (txn) query("BEGIN");
    insert(ins, i, i % 3 == 2);
    if (txn) query("COMMIT");
    check_rows(sel, i, i % 2 == 0);
  }
  if (mysql_stmt_close(ins)) die("close ins");
  if (mysql_stmt_close(sel)) die("close sel");

  /* a statement prepared after others were closed still works */
  MYSQL_STMT* cnt = prepare("SELECT COUNT(*) FROM ms WHERE owner = ?", 1, 1);
  unsigned long owner_len = strlen(id);
  MYSQL_BIND p[1];
  memset(p, 0, sizeof p);
  p[0].buffer_type = MYSQL_TYPE_STRING;
  p[0].buffer = (void*)id;
  p[0].buffer_length = owner_len;
  p[0].length = &owner_len;
  long long count = -1;
  MYSQL_BIND r[1];
  memset(r, 0, sizeof r);
  r[0].buffer_type = MYSQL_TYPE_LONGLONG;
  r[0].buffer = &count;
  if (mysql_stmt_bind_param(cnt, p) || mysql_stmt_execute(cnt) || mysql_stmt_bind_result(cnt, r) ||
      mysql_stmt_fetch(cnt) != 0)
    die_stmt(cnt, "count");
  if (count != rounds) {
    fprintf(stderr, "client %s: count %lld, want %d\n", id, count, rounds);
    return 1;
  }
  mysql_stmt_close(cnt);
  mysql_close(conn);
  printf("ok %s %d\n", id, rounds);
  return 0;
}
