#!/usr/bin/python3
"""psql through sqlmux: simple queries, multi-statement strings, \\copy in
and out, errors with and without ON_ERROR_STOP, catalogue commands, and the
unix-socket and IPv6 listeners."""

import os
import subprocess
import tempfile

from harness import *


def psql(dsn: str, *args, input: str | None = None, check_rc: int | None = 0, env=None):
    cmd = ["psql", "-X", "-q", "-A", "-t", "-d", dsn, *args]
    e = dict(os.environ)
    e.pop("PGPASSWORD", None)
    e.update(env or {})
    r = subprocess.run(cmd, capture_output=True, text=True, input=input, timeout=60, env=e)
    if check_rc is not None and r.returncode != check_rc:
        fail(f"psql {' '.join(args)} exited {r.returncode} (want {check_rc})\nstdout: {r.stdout}\nstderr: {r.stderr}")
    return r


def _simple(mux):
    dsn = mux.dsn()
    out = psql(dsn, "-c", "SELECT 1 + 1").stdout.strip()
    check_eq(out, "2", "SELECT 1 + 1")
    out = psql(dsn, "-c", "SELECT current_user, current_database()").stdout.strip()
    check_eq(out, "app|appdb", "current_user, current_database()")
    out = psql(dsn, "-c", "SELECT g, repeat('x', g) FROM generate_series(1, 5) g").stdout.split()
    check_eq(out, [f"{i}|{'x' * i}" for i in range(1, 6)], "generate_series rows")
    out = psql(dsn, "-c", "SELECT NULL::int IS NULL, 'ünïcødé ✓'::text, E'a\\tb'").stdout.strip()
    check_eq(out, "t|ünïcødé ✓|a\tb", "NULL / unicode / escapes")


def case_simple_queries(pg):
    for mode in ("transaction", "session", "statement"):
        with Sqlmux(pg, mode=mode, size=2) as mux:
            _simple(mux)
            mux.assert_serving()


def case_multi_statement(pg):
    with Sqlmux(pg, mode="transaction", size=2) as mux:
        dsn = mux.dsn()
        r = psql(dsn, "-c", "DROP TABLE IF EXISTS psql_multi; CREATE TABLE psql_multi(a int); "
                            "INSERT INTO psql_multi SELECT generate_series(1,10); SELECT sum(a) FROM psql_multi")
        check_eq(r.stdout.strip(), "55", "multi-statement -c result")
        # A multi-statement simple query is one implicit transaction: an error
        # in it rolls back the earlier statements.
        r = psql(dsn, "-c", "INSERT INTO psql_multi VALUES (100); SELECT 1/0", check_rc=1)
        check("division by zero" in r.stderr, f"expected division by zero, got {r.stderr!r}")
        r = psql(dsn, "-c", "SELECT count(*) FROM psql_multi WHERE a = 100")
        check_eq(r.stdout.strip(), "0", "row of the failed implicit transaction must be rolled back")
        # A script with explicit transactions, savepoints and psql variables.
        script = """
\\set ON_ERROR_STOP 1
BEGIN;
INSERT INTO psql_multi VALUES (200);
SAVEPOINT s1;
INSERT INTO psql_multi VALUES (201);
ROLLBACK TO SAVEPOINT s1;
COMMIT;
\\set v 7
SELECT :v * 6 AS answer;
SELECT string_agg(a::text, ',' ORDER BY a) FROM psql_multi WHERE a >= 200;
"""
        r = psql(dsn, "-f", "-", input=script)
        check_eq(r.stdout.split(), ["42", "200"], "script output")
        mux.assert_serving()


def case_errors_on_error_stop(pg):
    with Sqlmux(pg, mode="transaction", size=1) as mux:
        dsn = mux.dsn()
        psql(dsn, "-c", "DROP TABLE IF EXISTS psql_err; CREATE TABLE psql_err(a int primary key)")
        r = psql(dsn, "-v", "ON_ERROR_STOP=1", "-c", "SELECT * FROM no_such_table", check_rc=1)
        check('relation "no_such_table" does not exist' in r.stderr, f"stderr: {r.stderr!r}")
        # With ON_ERROR_STOP the rest of the script does not run ...
        script = "INSERT INTO psql_err VALUES (1);\nINSERT INTO psql_err VALUES (1);\nINSERT INTO psql_err VALUES (2);\n"
        r = psql(dsn, "-v", "ON_ERROR_STOP=1", "-f", "-", input=script, check_rc=3)
        check("duplicate key value violates unique constraint" in r.stderr, f"stderr: {r.stderr!r}")
        r = psql(dsn, "-c", "SELECT string_agg(a::text, ',' ORDER BY a) FROM psql_err")
        check_eq(r.stdout.strip(), "1", "rows after ON_ERROR_STOP script")
        # ... without it, it goes on after the error.
        script = "INSERT INTO psql_err VALUES (1);\nINSERT INTO psql_err VALUES (3);\n"
        r = psql(dsn, "-f", "-", input=script, check_rc=0)
        check("duplicate key" in r.stderr, f"stderr: {r.stderr!r}")
        r = psql(dsn, "-c", "SELECT string_agg(a::text, ',' ORDER BY a) FROM psql_err")
        check_eq(r.stdout.strip(), "1,3", "rows after script without ON_ERROR_STOP")
        # An error inside an explicit transaction: aborted state, then ROLLBACK.
        script = ("BEGIN;\nINSERT INTO psql_err VALUES (10);\nSELECT 1/0;\nSELECT 1;\nROLLBACK;\n"
                  "SELECT 'after', count(*) FROM psql_err WHERE a = 10;\n")
        r = psql(dsn, "-f", "-", input=script, check_rc=0)
        check("current transaction is aborted" in r.stderr, f"stderr: {r.stderr!r}")
        check_eq(r.stdout.strip(), "after|0", "after aborted transaction")
        # A RAISE EXCEPTION with a custom SQLSTATE and detail reaches psql.
        r = psql(dsn, "-v", "VERBOSITY=verbose", "-c",
                 "DO $$ BEGIN RAISE EXCEPTION 'custom failure' USING ERRCODE = 'P0042', DETAIL = 'the detail'; END $$",
                 check_rc=1)
        check("P0042" in r.stderr and "custom failure" in r.stderr and "the detail" in r.stderr,
              f"custom error not passed through: {r.stderr!r}")
        mux.assert_serving()


def case_copy_in_out(pg):
    with Sqlmux(pg, mode="transaction", size=2) as mux, tempfile.TemporaryDirectory() as d:
        dsn = mux.dsn()
        psql(dsn, "-c", "DROP TABLE IF EXISTS psql_copy; CREATE TABLE psql_copy(id int, name text, note text)")
        src = os.path.join(d, "in.csv")
        n = 50000
        with open(src, "w") as f:
            for i in range(n):
                f.write(f'{i},name {i},"quoted, ""text"" {i % 97}"\n')
        psql(dsn, "-v", "ON_ERROR_STOP=1", "-c", f"\\copy psql_copy FROM '{src}' WITH (FORMAT csv)")
        r = psql(dsn, "-c", "SELECT count(*), sum(id) FROM psql_copy")
        check_eq(r.stdout.strip(), f"{n}|{n * (n - 1) // 2}", "rows after \\copy in")
        dst = os.path.join(d, "out.csv")
        psql(dsn, "-v", "ON_ERROR_STOP=1", "-c",
             f"\\copy (SELECT * FROM psql_copy ORDER BY id) TO '{dst}' WITH (FORMAT csv)")
        with open(src) as a, open(dst) as b:
            check(a.read() == b.read(), "\\copy out differs from what was copied in")
        # COPY FROM STDIN inside a script, with a transaction around it.
        script = ("BEGIN;\nCOPY psql_copy (id, name) FROM STDIN;\n" +
                  "".join(f"{i}\tstdin {i}\n" for i in range(n, n + 1000)) + "\\.\nCOMMIT;\n"
                  "SELECT count(*) FROM psql_copy WHERE name LIKE 'stdin %';\n")
        r = psql(dsn, "-v", "ON_ERROR_STOP=1", "-f", "-", input=script)
        check_eq(r.stdout.strip(), "1000", "rows from COPY FROM STDIN in a script")
        # A failing COPY (bad data) reports the error and leaves the pool usable.
        bad = os.path.join(d, "bad.csv")
        with open(bad, "w") as f:
            f.write("1,a,b\nnot-a-number,b,c\n")
        r = psql(dsn, "-v", "ON_ERROR_STOP=1", "-c", f"\\copy psql_copy FROM '{bad}' WITH (FORMAT csv)", check_rc=1)
        check("invalid input syntax for type integer" in r.stderr, f"stderr: {r.stderr!r}")
        r = psql(dsn, "-c", "SELECT count(*) FROM psql_copy")
        check_eq(r.stdout.strip(), str(n + 1000), "row count after failed COPY")
        mux.assert_serving()


def case_catalog_commands(pg):
    with Sqlmux(pg, mode="transaction", size=2) as mux:
        dsn = mux.dsn()
        psql(dsn, "-c", "DROP TABLE IF EXISTS psql_cat; CREATE TABLE psql_cat(id serial primary key, v text)")
        r = psql(dsn, "-c", "\\dt psql_cat")
        check("psql_cat" in r.stdout, f"\\dt output: {r.stdout!r}")
        r = psql(dsn, "-c", "\\d psql_cat")
        check("nextval('psql_cat_id_seq'" in r.stdout, f"\\d output: {r.stdout!r}")
        r = psql(dsn, "-c", "\\l")
        check("appdb" in r.stdout, f"\\l output: {r.stdout!r}")
        r = psql(dsn, "-c", "\\conninfo")
        check('database "appdb"' in r.stdout or "appdb" in r.stdout, f"\\conninfo: {r.stdout!r}")
        # \gexec and \gset: several round trips in one session
        r = psql(dsn, "-v", "ON_ERROR_STOP=1", "-f", "-",
                 input="SELECT 'SELECT ' || g || ' * 2' FROM generate_series(1,3) g \\gexec\n"
                       "SELECT 5 AS five \\gset\nSELECT :five + 1;\n")
        check_eq(r.stdout.split(), ["2", "4", "6", "6"], "\\gexec / \\gset output")


def case_unix_and_ipv6_listeners(pg):
    require_sqlmux("listener types")

    def tweak(cfg):
        cfg["listener"].append({"protocol": "postgres", "listen": "unix:@DIR@/.s.PGSQL.@LISTEN_PORT@"})
        cfg["listener"].append({"protocol": "postgres", "listen": "[::1]:@LISTEN_PORT@"})

    with Sqlmux(pg, mode="transaction", size=2, tweak=tweak) as mux:
        r = psql(f"host={mux.dir} port={mux.port} dbname=appdb user=app password=apppass",
                 "-c", "SELECT 'via unix', current_user")
        check_eq(r.stdout.strip(), "via unix|app", "query over the unix-socket listener")
        r = psql(f"host=::1 port={mux.port} dbname=appdb user=app password=apppass",
                 "-c", "SELECT 'via ipv6'")
        check_eq(r.stdout.strip(), "via ipv6", "query over the [::1] listener")
        mux.assert_serving()


def case_password_from_env_and_prompt_errors(pg):
    with Sqlmux(pg, mode="transaction", size=2) as mux:
        base = f"host={mux.host} port={mux.port} dbname={mux.dbname('appdb')} user=app"
        r = psql(base, "-c", "SELECT 'env ok'", env={"PGPASSWORD": "apppass"})
        check_eq(r.stdout.strip(), "env ok", "PGPASSWORD login")
        r = psql(base + " password=wrong", "-w", "-c", "SELECT 1", check_rc=2)
        check('password authentication failed for user "app"' in r.stderr, f"stderr: {r.stderr!r}")
        r = psql(base, "-w", "-c", "SELECT 1", check_rc=2)
        check("password" in r.stderr.lower(), f"no-password stderr: {r.stderr!r}")
        mux.assert_serving()


if __name__ == "__main__":
    run_cases(__file__, [case_simple_queries, case_multi_statement, case_errors_on_error_stop, case_copy_in_out,
                         case_catalog_commands, case_unix_and_ipv6_listeners,
                         case_password_from_env_and_prompt_errors], timeout=110)
