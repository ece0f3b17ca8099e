#!/usr/bin/python3
"""Session state that cannot move between server connections pins a
transaction-mode client to its connection until the state is gone (issue
14): temporary tables (CREATE TEMP TABLE, CREATE TEMP TABLE ... AS, inside
or outside a block), SQL PREPARE, cursors WITH HOLD and session advisory
locks. PostgreSQL reports none of it: sqlmux asks the server at the end of a
transaction that may have made or ended some. Each case runs through a pool
of ONE server connection with a second client waiting, so a missing pin
shows as a wrong result and a pin that never ends as a client that never
runs; results are checked against a direct connection too
(SQLMUX_TEST_DIRECT=1). Transaction-level state (pg_advisory_xact_lock,
ON COMMIT DROP) does not pin. A client that leaves while pinned leaves
nothing behind (DISCARD ALL)."""

import re
import threading
import time
import urllib.request

import psycopg

from harness import *


def connect(mux):
    return psycopg.connect(mux.dsn(), autocommit=True, prepare_threshold=None)


def rows(conn, sql, params=None):
    cur = conn.execute(sql, params)
    return cur.fetchall() if cur.description else None


class Waiter:
    """Client B's query in a thread: it runs once A's server connection is
    free (the pool has one)."""

    def __init__(self, mux):
        self.conn = connect(mux)
        self.done = threading.Event()
        self.result = None
        self.error = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        try:
            self.result = rows(self.conn, "SELECT 'b'")
        except Exception as e:  # noqa: BLE001
            self.error = e
        self.done.set()

    def close(self):
        self.conn.close()


def pinned_until(mux, a, setup, use, release):
    """A runs `setup` (statements, with optional params), then B queues for
    the only connection; A's `use` statements must see the state (their
    expected rows given), B must still wait (pinned), and after A's
    `release` statement B runs."""
    for sql in setup:
        rows(a, *sql) if isinstance(sql, tuple) else rows(a, sql)
    b = None if mux.direct else Waiter(mux)
    try:
        if b is not None:
            check(not b.done.wait(0.7), f"B ran while A held session state ({setup}): A was not pinned")
        for sql, want in use:
            got = rows(a, sql)
            check_eq(got, want, f"{sql} after {setup}")
        if b is not None:
            check(not b.done.is_set(), f"B ran before A released its state ({setup})")
        rows(a, release)
        if b is not None:
            check(b.done.wait(5), f"B still waits after A's {release!r}: the pin did not end")
            check(b.error is None and b.result == [("b",)], f"B after the release: {b.error} {b.result}")
    finally:
        if b is not None:
            b.close()


def case_temp_table(pg):
    with Sqlmux(pg, mode="transaction", size=1) as mux, connect(mux) as a:
        pinned_until(mux, a, ["CREATE TEMP TABLE t(x int)"],
                     [("INSERT INTO t VALUES (1), (2)", None), ("SELECT count(*) FROM t", [(2,)])],
                     "DISCARD TEMP")
        pinned_until(mux, a, ["CREATE TEMPORARY TABLE t2 AS SELECT 41 AS x"],  # tag: SELECT 1
                     [("SELECT x + 1 FROM t2", [(42,)])], "DROP TABLE t2")
        pinned_until(mux, a, ["BEGIN", "CREATE TEMP TABLE t3(x int)", "COMMIT"],
                     [("SELECT count(*) FROM t3", [(0,)])], "DROP TABLE t3")


def case_sql_prepare(pg):
    with Sqlmux(pg, mode="transaction", size=1) as mux, connect(mux) as a:
        pinned_until(mux, a, ["PREPARE p(int) AS SELECT $1 + 1"],
                     [("EXECUTE p(1)", [(2,)]), ("EXECUTE p(41)", [(42,)])], "DEALLOCATE p")


def case_hold_cursor(pg):
    with Sqlmux(pg, mode="transaction", size=1) as mux, connect(mux) as a:
        pinned_until(mux, a, ["DECLARE c CURSOR WITH HOLD FOR SELECT generate_series(1, 3)"],
                     [("FETCH 2 FROM c", [(1,), (2,)]), ("FETCH 1 FROM c", [(3,)])], "CLOSE c")


def case_advisory_lock(pg):
    with Sqlmux(pg, mode="transaction", size=1) as mux, connect(mux) as a:
        held = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()"
        # Extended protocol (a parameter): the Parse's text is what is seen.
        pinned_until(mux, a, [("SELECT pg_advisory_lock(%s)", (42,))],
                     [(held, [(1,)])], "SELECT pg_advisory_unlock(42)")
        # Twice locked: one unlock keeps the pin, the second ends it.
        rows(a, "SELECT pg_advisory_lock(7)")
        rows(a, "SELECT pg_advisory_lock(7)")
        pinned_until(mux, a, ["SELECT pg_advisory_unlock(7)"], [(held, [(1,)])],
                     "SELECT pg_advisory_unlock(7)")


def case_transaction_scoped_state_does_not_pin(pg):
    require_sqlmux("pinning")
    with Sqlmux(pg, mode="transaction", size=1) as mux, connect(mux) as a:
        for setup in (["SELECT pg_advisory_xact_lock(9)"],
                      ["BEGIN", "CREATE TEMP TABLE gone(x int) ON COMMIT DROP", "COMMIT"],
                      ["BEGIN", "DECLARE c CURSOR FOR SELECT 1", "COMMIT"],
                      ["SELECT 'a template of no temp table'"]):
            for sql in setup:
                rows(a, sql)
            b = Waiter(mux)
            try:
                check(b.done.wait(5), f"B waited after {setup}: A was pinned for nothing")
            finally:
                b.close()


def case_client_leaving_pinned_leaves_nothing(pg):
    require_sqlmux("pinning")
    port = free_port()
    admin_port = free_port()

    def tweak(cfg):
        cfg["metrics"] = {"listen": f"127.0.0.1:{port}"}
        cfg["user"].append({"name": "admin", "password": "adminpass"})
        cfg["admin"] = {"listen": f"127.0.0.1:{admin_port}", "users": ["admin"]}

    def show_clients():
        with psycopg.connect(f"host=127.0.0.1 port={admin_port} dbname=sqlmux user=admin password=adminpass",
                             autocommit=True) as con:
            cur = con.execute("SHOW CLIENTS")
            cols = [d.name for d in cur.description]
            return [dict(zip(cols, r)) for r in cur.fetchall()]

    with Sqlmux(pg, mode="transaction", size=1, tweak=tweak) as mux:
        with connect(mux) as a:
            rows(a, "CREATE TEMP TABLE left_behind(x int)")
            rows(a, "SELECT pg_advisory_lock(1234)")
            rows(a, "DECLARE k CURSOR WITH HOLD FOR SELECT 1")
            rows(a, "PREPARE q AS SELECT 1")
            mine = [c for c in show_clients() if c["user"] == "app"]
            check_eq([c["pinned"] for c in mine], ["temp_table,sql_prepare,hold_cursor,advisory_lock"],
                     "SHOW CLIENTS pinned")
        with connect(mux) as b:
            check_eq(rows(b, "SELECT count(*) FROM pg_class WHERE relnamespace = pg_my_temp_schema()"),
                     [(0,)], "temp tables of the client that left")
            check_eq(rows(b, "SELECT count(*) FROM pg_cursors"), [(0,)], "cursors of the client that left")
            check_eq(rows(b, "SELECT count(*) FROM pg_prepared_statements WHERE from_sql"), [(0,)],
                     "SQL statements of the client that left")
            check_eq(rows(b, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"), [(0,)],
                     "advisory locks of the client that left")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
            text = r.read().decode()
        for reason in ("temp_table", "advisory_lock", "hold_cursor", "sql_prepare"):
            m = re.search(r'^sqlmux_client_pins_total\{[^}]*reason="' + reason + r'"[^}]*\} (\S+)$', text, re.M)
            check(m is not None and float(m.group(1)) >= 1, f"sqlmux_client_pins_total reason={reason}: {m}")
        check("pinned to backend pid" in mux.log_text(), "no log line for the pin")


def case_set_role_follows(pg):
    """SET ROLE outside a block is followed: every later transaction, on
    whichever server connection, runs as that role until RESET ROLE."""
    with pg.connect_super() as c, c.cursor() as cur:
        cur.execute("DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'pinrole') "
                    "THEN CREATE ROLE pinrole; END IF; END $$")
        cur.execute("GRANT pinrole TO app")
        c.commit()
    with Sqlmux(pg, mode="transaction", size=2) as mux, connect(mux) as a, connect(mux) as other:
        rows(a, "SET ROLE pinrole")
        for i in range(6):
            # The other client holds one of the two connections (the one A
            # used last, the first idle one): A's next transaction runs on
            # the other.
            rows(other, "BEGIN")
            check_eq(rows(other, "SELECT current_user"), [("app",)], f"the other client's user ({i})")
            check_eq(rows(a, "SELECT current_user"), [("pinrole",)], f"current_user after SET ROLE ({i})")
            rows(other, "COMMIT")
        rows(a, "RESET ROLE")
        check_eq(rows(a, "SELECT current_user"), [("app",)], "current_user after RESET ROLE")


if __name__ == "__main__":
    run_cases(__file__, [case_temp_table, case_sql_prepare, case_hold_cursor, case_advisory_lock,
                         case_transaction_scoped_state_does_not_pin,
                         case_client_leaving_pinned_leaves_nothing, case_set_role_follows], timeout=120)
