#!/usr/bin/python3
"""Query digests (SHOW QUERIES / RESET QUERIES, the opt-in
sqlmux_query_digest_* metrics): a mixed workload through a PostgreSQL pool
(pgbench -S over the simple and the extended protocol, the default TPC-B
script, psycopg2 statements with IN lists and one that fails) and a MySQL
pool (PyMySQL loops, sysbench oltp_point_select with server-side prepared
statements); SHOW QUERIES must list the normalized statements with the
calls the clients counted, their rows and errors."""

import os
import re
import subprocess
import urllib.request

import psycopg2
import pymysql

from harness import *
from mysql_harness import *

ADMIN_PASS = "adminpass"
PGBENCH_SELECT = "SELECT abalance FROM pgbench_accounts WHERE aid = ?"
PGBENCH_SELECT_X = "SELECT abalance FROM pgbench_accounts WHERE aid = $1"


def console_rows(port, sql):
    c = psycopg2.connect(f"host=127.0.0.1 port={port} dbname=sqlmux user=admin password={ADMIN_PASS}")
    c.autocommit = True
    try:
        with c.cursor() as cur:
            cur.execute(sql)
            if cur.description is None:
                return cur.statusmessage
            cols = [d[0] for d in cur.description]
            return [dict(zip(cols, r)) for r in cur.fetchall()]
    finally:
        c.close()


def with_console(server, fn, protocol="pg", top=0, **kw):
    port = free_port()
    mport = free_port()

    def tweak(cfg):
        cfg["server"]["query_digests"] = True
        cfg["user"].append({"name": "admin", "password": ADMIN_PASS})
        cfg["admin"] = {"listen": f"127.0.0.1:{port}", "users": ["admin"]}
        cfg["metrics"] = {"listen": f"127.0.0.1:{mport}", "query_digests_top": top}

    args = (server,) if protocol == "pg" else (None,)
    extra = {} if protocol == "pg" else {"my": server}
    with Sqlmux(*args, tweak=tweak, **extra, **kw) as mux:
        check(wait_port("127.0.0.1", port, 5), "admin listener not open")
        fn(mux, port, mport)
        if protocol == "pg":
            mux.assert_serving()


def queries(port):
    rows = console_rows(port, "SHOW QUERIES")
    for r in rows:
        for k in ("calls", "total_time_us", "mean_time_us", "max_time_us", "p99_time_us", "rows", "errors"):
            r[k] = int(r[k])
    return rows


def by_text(rows, protocol):
    return {r["query"]: r for r in rows if r["protocol"] == protocol}


def check_digest(rows, text, calls, nrows=None, errors=0, protocol="postgres"):
    got = by_text(rows, protocol)
    check(text in got, f"no digest {text!r} in SHOW QUERIES: {sorted(got)}")
    r = got[text]
    check_eq(r["calls"], calls, f"calls of {text!r}")
    if nrows is not None:
        check_eq(r["rows"], nrows, f"rows of {text!r}")
    check_eq(r["errors"], errors, f"errors of {text!r}")
    check_eq(r["pool"], "appdb", f"pool of {text!r}")
    check_eq(r["user"], "app", f"user of {text!r}")
    check(r["max_time_us"] >= r["mean_time_us"] > 0 or r["calls"] == 0, f"times of {text!r}: {r}")
    check(r["p99_time_us"] <= r["max_time_us"] * 17 // 16 + 1, f"p99 of {text!r} above its max: {r}")
    check(abs(r["total_time_us"] - r["mean_time_us"] * r["calls"]) <= r["calls"], f"total/mean of {text!r}: {r}")
    return r


def check_order(rows):
    totals = [r["total_time_us"] for r in rows]
    check(totals == sorted(totals, reverse=True), f"SHOW QUERIES not ordered by total time: {totals}")


def pgbench(host, port, *args):
    env = dict(os.environ, PGPASSWORD="apppass")
    r = subprocess.run(["pgbench", "-h", host, "-p", str(port), "-U", "app", *args, "appdb"],
                       capture_output=True, text=True, timeout=120, env=env)
    check(r.returncode == 0, f"pgbench {args} exited {r.returncode}: {r.stdout[-1500:]}{r.stderr[-1500:]}")
    m = re.search(r"number of transactions actually processed: (\d+)", r.stdout)
    check(m is not None, f"pgbench output: {r.stdout[-1500:]}")
    return int(m.group(1))


def scrape(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        return r.read().decode()


def digest_samples(text, name):
    """[(labels dict, value)] of the samples of `name`."""
    out = []
    for line in text.splitlines():
        if line.startswith(name + "{"):
            labels = dict(re.findall(r'([a-z_]+)="((?:[^"\\]|\\.)*)"', line[len(name):line.rindex("}") + 1]))
            out.append((labels, float(line.rsplit(" ", 1)[1])))
    return out


def case_postgres_workload(pg):
    require_sqlmux("SHOW QUERIES")
    r = subprocess.run(["pgbench", "-h", pg.host, "-p", str(pg.port), "-U", "app", "-i", "-s", "1", "-q", "appdb"],
                       capture_output=True, text=True, timeout=120, env=dict(os.environ, PGPASSWORD="apppass"))
    check(r.returncode == 0, f"pgbench -i: {r.stderr[-1500:]}")

    def body(mux, port, mport):
        check_eq(console_rows(port, "RESET QUERIES"), "RESET", "RESET QUERIES tag")
        simple = pgbench(mux.host, mux.port, "-n", "-S", "-c", "4", "-j", "2", "-t", "50")
        check_eq(simple, 200, "pgbench -S transactions")
        extended = pgbench(mux.host, mux.port, "-n", "-S", "-c", "2", "-M", "prepared", "-t", "30")
        check_eq(extended, 60, "pgbench -S -M prepared transactions")
        tpcb = pgbench(mux.host, mux.port, "-n", "-c", "4", "-j", "2", "-t", "5")
        check_eq(tpcb, 20, "pgbench TPC-B transactions")
        c = psycopg2.connect(mux.dsn())
        c.autocommit = True
        cur = c.cursor()
        for ids in ([1, 2, 3], [4], [5, 6, 7, 8, 9]):
            cur.execute("SELECT aid FROM pgbench_accounts WHERE aid IN (%s) /* a comment */"
                        % ", ".join(map(str, ids)))
            check_eq(len(cur.fetchall()), len(ids), "IN list rows")
        for _ in range(3):
            try:
                cur.execute("SELECT 1/0")
                fail("1/0 did not fail")
            except psycopg2.errors.DivisionByZero:
                pass
        cur.execute("SELECT 'it''s', E'a\\'b', $$x$$")
        c.close()

        rows = queries(port)
        for r in rows:
            log(f"  {r['calls']:>4} calls {r['rows']:>4} rows {r['errors']} err {r['total_time_us']:>8} us "
                f"p99 {r['p99_time_us']:>6} us  {r['query']}")
        check_order(rows)
        # -S over the simple protocol and TPC-B's own SELECT share a digest.
        check_digest(rows, PGBENCH_SELECT, 200 + 20, nrows=220)
        check_digest(rows, PGBENCH_SELECT_X, 60, nrows=60)
        check_digest(rows, "UPDATE pgbench_accounts SET abalance = abalance + ? WHERE aid = ?", 20, nrows=20)
        check_digest(rows, "UPDATE pgbench_tellers SET tbalance = tbalance + ? WHERE tid = ?", 20, nrows=20)
        check_digest(rows, "INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (?, CURRENT_TIMESTAMP)",
                     20, nrows=20)
        check_digest(rows, "BEGIN", 20, nrows=0)
        check_digest(rows, "END", 20, nrows=0)
        check_digest(rows, "SELECT aid FROM pgbench_accounts WHERE aid IN (?)", 3, nrows=9)
        check_digest(rows, "SELECT ?/?", 3, nrows=0, errors=3)
        check_digest(rows, "SELECT ?", 1, nrows=1)
        top = rows[0]["query"]
        check(top in (PGBENCH_SELECT, PGBENCH_SELECT_X) or top.startswith("UPDATE") or top in ("BEGIN", "END")
              or top.startswith("INSERT"), f"top digest {top!r}")

        # The opt-in metrics: the top K (here 3) digests only.
        text = scrape(mport)
        calls = digest_samples(text, "sqlmux_query_digest_calls_total")
        check_eq(len(calls), 3, f"sqlmux_query_digest_calls_total series: {calls}")
        secs = digest_samples(text, "sqlmux_query_digest_seconds_total")
        check_eq(len(secs), 3, "sqlmux_query_digest_seconds_total series")
        top3 = {r["query"]: r for r in rows[:3]}
        for labels, v in calls:
            check(labels.get("digest") in top3, f"metric for a digest outside the top 3: {labels}")
            check_eq(int(v), top3[labels["digest"]]["calls"], f"calls metric of {labels}")
            check_eq(labels.get("pool"), "appdb", "pool label")
            check_eq(labels.get("user"), "app", "user label")

        check_eq(console_rows(port, "RESET QUERIES"), "RESET", "RESET QUERIES tag")
        check_eq(queries(port), [], "SHOW QUERIES after RESET QUERIES")
        check_eq(digest_samples(scrape(mport), "sqlmux_query_digest_calls_total"), [], "metrics after RESET")

    with_console(pg, body, top=3, mode="transaction", size=4)


def case_digests_off(pg):
    """Off by default: nothing is counted."""
    require_sqlmux("query_digests = false")

    def body(mux, port, mport):
        c = psycopg2.connect(mux.dsn())
        c.autocommit = True
        c.cursor().execute("SELECT 1")
        c.close()
        check_eq(queries(port), [], "SHOW QUERIES with query_digests = false")

    port = free_port()

    def tweak(cfg):
        cfg["user"].append({"name": "admin", "password": ADMIN_PASS})
        cfg["admin"] = {"listen": f"127.0.0.1:{port}", "users": ["admin"]}

    with Sqlmux(pg, tweak=tweak) as mux:
        check(wait_port("127.0.0.1", port, 5), "admin listener not open")
        body(mux, port, None)


def case_mysql_workload(_pg):
    require_sqlmux("SHOW QUERIES")
    with MariaDbServer() as my:
        def body(mux, port, mport):
            c = mux.my_connect(autocommit=True)
            cur = c.cursor()
            cur.execute("CREATE TABLE dg (id INT PRIMARY KEY, v VARCHAR(20))")
            n = 40
            for i in range(n):
                cur.execute(f"INSERT INTO dg (id, v) VALUES ({i}, \"v{i}\")")
            for i in range(0, n, 2):
                cur.execute("SELECT v FROM `dg` WHERE id IN (%s, %s) # two" % (i, i + 1))
                check_eq(len(cur.fetchall()), 2, "rows of the IN select")
            cur.execute("UPDATE dg SET v = 'x' WHERE id < 10")
            for _ in range(2):
                try:
                    cur.execute("SELECT * FROM no_such_table")
                    fail("a missing table did not fail")
                except pymysql.err.ProgrammingError:
                    pass
            c.close()

            r = subprocess.run(["sysbench", "oltp_point_select", "--db-driver=mysql", "--mysql-host=127.0.0.1",
                                f"--mysql-port={my.port}", f"--mysql-user={MY_USER}",
                                f"--mysql-password={MY_PASSWORD}", "--mysql-db=appdb", "--tables=1",
                                "--table-size=1000", "prepare"], capture_output=True, text=True, timeout=120)
            check(r.returncode == 0, f"sysbench prepare: {r.stdout[-1000:]}{r.stderr[-1000:]}")
            r = subprocess.run(["sysbench", "oltp_point_select", "--db-driver=mysql", "--mysql-host=127.0.0.1",
                                f"--mysql-port={mux.my_port}", f"--mysql-user={MY_USER}",
                                f"--mysql-password={MY_PASSWORD}", "--mysql-db=appdb", "--tables=1",
                                "--table-size=1000", "--db-ps-mode=auto", "--threads=2", "--events=100",
                                "--time=0", "run"], capture_output=True, text=True, timeout=120)
            check(r.returncode == 0, f"sysbench run: {r.stdout[-1500:]}{r.stderr[-1000:]}")
            m = re.search(r"read:\s+(\d+)", r.stdout)
            check(m is not None, f"sysbench output: {r.stdout[-1500:]}")
            reads = int(m.group(1))
            check(reads > 0, "sysbench reads")

            rows = queries(port)
            for r in rows:
                log(f"  {r['calls']:>4} calls {r['rows']:>4} rows {r['errors']} err {r['total_time_us']:>8} us "
                    f"p99 {r['p99_time_us']:>6} us  {r['query']}")
            check_order(rows)
            p = "mysql"
            check_digest(rows, "INSERT INTO dg (id, v) VALUES (?)", n, nrows=n, protocol=p)
            check_digest(rows, "SELECT v FROM `dg` WHERE id IN (?)", n // 2, nrows=n, protocol=p)
            check_digest(rows, "UPDATE dg SET v = ? WHERE id < ?", 1, nrows=10, protocol=p)
            check_digest(rows, "SELECT * FROM no_such_table", 2, nrows=0, errors=2, protocol=p)
            check_digest(rows, "SELECT c FROM sbtest1 WHERE id=?", reads, nrows=reads, protocol=p)
            check_eq(console_rows(port, "RESET QUERIES"), "RESET", "RESET QUERIES tag")
            check_eq(queries(port), [], "SHOW QUERIES after RESET QUERIES")

        with_console(my, body, protocol="my", mode="transaction", size=4)


if __name__ == "__main__":
    run_cases(__file__, [case_postgres_workload, case_digests_off, case_mysql_workload], timeout=300)
