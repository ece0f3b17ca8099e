#!/usr/bin/python3
"""Backend connection lifecycle: min_idle, server_idle_timeout,
server_lifetime, an unreachable backend, a PostgreSQL restart, pools
without a configured login (the client's own credentials), several pools on
one database, and the shipped example configs."""

import glob
import os
import signal
import threading
import time

import psycopg2

from harness import *


def wait_for(fn, timeout: float, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    v = fn()
    while time.monotonic() < deadline:
        v = fn()
        if v:
            return v
        time.sleep(interval)
    return v


def one(conn, sql, args=None):
    with conn.cursor() as cur:
        cur.execute(sql, args)
        return cur.fetchone()[0]


def case_min_idle(pg):
    require_sqlmux("min_idle")
    with Sqlmux(pg, mode="transaction", size=5, min_idle=3) as mux:
        n = wait_for(lambda: pg.app_sessions() >= 3 and pg.app_sessions(), 10)
        check_eq(pg.app_sessions(), 3, "backends opened by min_idle = 3 with no client")
        mux.assert_serving()
        time.sleep(0.5)
        check(pg.app_sessions() >= 3, f"fewer than min_idle backends after a client: {pg.app_sessions()}")
        check(pg.app_sessions() <= 5, f"more backends than size: {pg.app_sessions()}")


def _open_backends(mux, n):
    """Makes the pool open n backends at once (n clients in transactions)."""
    conns = [mux.connect() for _ in range(n)]
    for c in conns:
        one(c, "SELECT 1")  # psycopg2: BEGIN + SELECT, transaction stays open
    pids = {one(c, "SELECT pg_backend_pid()") for c in conns}
    for c in conns:
        c.commit()
        c.close()
    return pids


def case_server_idle_timeout(pg):
    require_sqlmux("server_idle_timeout")
    with Sqlmux(pg, mode="transaction", size=4, server_idle_timeout="1s") as mux:
        pids = _open_backends(mux, 4)
        check_eq(len(pids), 4, "distinct backends for 4 concurrent transactions")
        n = wait_for(lambda: pg.app_sessions() == 0, 8)
        check_eq(pg.app_sessions(), 0, "idle backends left 8s after server_idle_timeout = 1s")
        mux.assert_serving(what="a client after idle backends were closed")


def case_server_lifetime(pg):
    require_sqlmux("server_lifetime")
    with Sqlmux(pg, mode="transaction", size=1, server_lifetime="2s") as mux:
        c = mux.connect(autocommit=True)
        seen = []
        t_end = time.monotonic() + 6
        while time.monotonic() < t_end:
            seen.append(one(c, "SELECT pg_backend_pid()"))
            time.sleep(0.2)
        distinct = list(dict.fromkeys(seen))
        log(f"backend pids over 6s with server_lifetime = 2s: {distinct}")
        check(len(distinct) >= 2, f"backend never replaced within 6s with server_lifetime = 2s: {distinct}")
        check(len(distinct) <= 5, f"backends replaced too often: {distinct}")
        # An open transaction is not cut by server_lifetime.
        c.autocommit = False
        pid = one(c, "SELECT pg_backend_pid()")
        time.sleep(3)
        check_eq(one(c, "SELECT pg_backend_pid()"), pid, "backend replaced in the middle of a transaction")
        c.commit()
        c.close()
        mux.assert_serving()


def case_unreachable_backend(pg):
    require_sqlmux("unreachable backend")
    dead = free_port()

    def tweak(cfg):
        bad = dict(cfg["pool"][0])
        bad.update(name="deadpool", backends=[{"address": f"127.0.0.1:{dead}"}], server_connect_timeout="2s",
                   query_wait_timeout="5s")
        cfg["pool"].append(bad)

    with Sqlmux(pg, mode="transaction", size=2, tweak=tweak) as mux:
        t0 = time.monotonic()
        err = None
        try:
            r = mux.raw(db="deadpool", timeout=20)
            try:
                res = r.query("SELECT 1", timeout=20)
                err = res.error
            except ConnectionClosed:
                err = r.last_result.error if getattr(r, "last_result", None) else None
                check(err is not None, "connection closed without an ErrorResponse (backend unreachable)")
            r.close()
        except PgError as e:
            err = e.fields
        except TimeoutError:
            fail(f"no answer within 20s from a pool whose backend is unreachable")
        el = time.monotonic() - t0
        check(err is not None, "query on a pool with an unreachable backend succeeded")
        log(f"unreachable backend: {err.get('V', err.get('S'))} {err.get('C')} {err.get('M')!r} after {el:.1f}s")
        check(el < 8, f"error took {el:.1f}s (server_connect_timeout = 2s, query_wait_timeout = 5s)")
        mux.assert_serving(what="the healthy pool while another pool's backend is down")


def case_postgres_restart(pg):
    # While PostgreSQL is down, clients wait for a backend up to
    # query_wait_timeout (as with PgBouncer), then get an error.
    with Sqlmux(pg, mode="transaction", size=3, query_wait_timeout="5s") as mux:
        idle = mux.connect(autocommit=True)
        check_eq(one(idle, "SELECT 1"), 1, "before the restart")
        pg.stop_server("fast")
        try:
            t0 = time.monotonic()
            try:
                c = psycopg2.connect(mux.dsn(connect_timeout=20))
                try:
                    one(c, "SELECT 1")
                    fail("a query succeeded while PostgreSQL was down")
                except psycopg2.Error:
                    pass
                c.close()
            except psycopg2.Error:
                pass
            el = time.monotonic() - t0
            check(el < 10, f"a client took {el:.1f}s to learn that PostgreSQL is down (query_wait_timeout = 5s)")
            log(f"while PostgreSQL is down: error after {el:.1f}s")
            check(mux.running(), "sqlmux exited while PostgreSQL was down")
        finally:
            pg.start_server()
        # After the restart a new client works (retry a few seconds).
        ok = None
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                c = psycopg2.connect(mux.dsn(connect_timeout=5))
                ok = one(c, "SELECT 'back'")
                c.close()
                break
            except psycopg2.Error:
                time.sleep(0.5)
        check_eq(ok, "back", "a new client after PostgreSQL came back")
        if not DIRECT:
            # The idle transaction-mode client had no backend: it goes on.
            try:
                check_eq(one(idle, "SELECT 'idle client goes on'"), "idle client goes on", "idle client after restart")
            except psycopg2.Error as e:
                fail(f"idle transaction-mode client failed after PostgreSQL restarted: {e.pgcode} {str(e).strip()}")
        idle.close()
        mux.assert_serving()


def case_pool_without_login_uses_client_credentials(pg):
    require_sqlmux("pools without user/password")
    pg.psql("SET password_encryption = 'scram-sha-256'; CREATE ROLE app2 LOGIN PASSWORD 'app2pass';"
            "GRANT CONNECT ON DATABASE appdb TO app2;")

    def tweak(cfg):
        cfg["user"] = [{"name": "app", "password": "apppass"}, {"name": "app2", "password": "app2pass"},
                       {"name": "app3", "password": "not-the-postgres-password"}]
        p = cfg["pool"][0]
        p.pop("user")
        p.pop("password")

    with Sqlmux(pg, mode="transaction", size=4, tweak=tweak) as mux:
        for user, pw in (("app", "apppass"), ("app2", "app2pass")):
            c = mux.connect(user=user, password=pw, autocommit=True)
            check_eq(one(c, "SELECT current_user"), user, f"backend login for client {user}")
            c.close()
        # app and app2 alternate on one pool: each always runs as itself.
        a = mux.connect(user="app", password="apppass", autocommit=True)
        b = mux.connect(user="app2", password="app2pass", autocommit=True)
        for i in range(5):
            check_eq(one(a, "SELECT current_user"), "app", f"client app, round {i}")
            check_eq(one(b, "SELECT current_user"), "app2", f"client app2, round {i}")
        a.close()
        b.close()
        # A sqlmux user whose password PostgreSQL rejects gets an error, not a hang.
        t0 = time.monotonic()
        try:
            c = psycopg2.connect(mux.dsn(user="app3", password="not-the-postgres-password", connect_timeout=20))
            try:
                one(c, "SELECT 1")
                fail("a backend login PostgreSQL rejects succeeded")
            except psycopg2.Error as e:
                log(f"backend login rejected: {e.pgcode} {str(e).strip()}")
            c.close()
        except psycopg2.Error as e:
            log(f"backend login rejected at connect: {str(e).strip()}")
        check(time.monotonic() - t0 < 15, "rejected backend login took more than 15s to reach the client")
        mux.assert_serving()


def case_two_pools_one_database(pg):
    def tweak(cfg):
        s = dict(cfg["pool"][0])
        s.update(name="appdb_session", mode="session", size=2)
        cfg["pool"].append(s)
        cfg["pool"][0]["size"] = 2

    with Sqlmux(pg, mode="transaction", size=2, tweak=tweak) as mux:
        if DIRECT:
            mux.pool_db["appdb_session"] = "appdb"
        s1 = mux.connect(db="appdb_session", autocommit=True)
        pid = one(s1, "SELECT pg_backend_pid()")
        txs = [mux.connect(autocommit=True) for _ in range(4)]
        for i in range(3):
            for c in txs:
                check_eq(one(c, "SELECT current_database()"), "appdb", "transaction pool database")
            check_eq(one(s1, "SELECT pg_backend_pid()"), pid, "session pool keeps its backend")
        if not DIRECT:
            n = pg.app_sessions()
            check(n <= 4, f"{n} backends for two pools of size 2")
        for c in txs + [s1]:
            c.close()
        mux.assert_serving(db="appdb_session")
        mux.assert_serving()


def case_example_configs_are_valid(pg):
    require_sqlmux("--check-config")
    files = sorted(glob.glob(os.path.join(REPO, "config", "examples", "*.toml")))
    check(files, "no config/examples/*.toml")
    for f in files:
        with open(f) as fh:
            rc, out, _ = check_config(fh.read(), os.path.basename(f))
        check_eq(rc, 0, f"--check-config {os.path.relpath(f, REPO)} (output: {out.strip()!r})")


def _nofile(pid: int) -> tuple[int, int]:
    with open(f"/proc/{pid}/limits") as f:
        for line in f:
            if line.startswith("Max open files"):
                soft, hard = line.split()[3:5]
                return int(soft), int(hard)
    return 0, 0


def case_fd_limit_raised_and_warned(pg):
    """Issue 18: nothing compared the open file limit with max_client_conn
    and the pools. At startup sqlmux raises the soft limit up to the hard
    one when the configuration needs more; when even the hard limit is too
    low it warns, at startup and on a reload that asks for more."""
    require_sqlmux("RLIMIT_NOFILE")
    warning = "descriptors the configuration needs"

    def limit_lines(mux):
        return [ln for ln in mux.log_text().splitlines() if "open file limit" in ln]

    # Enough below the hard limit: raised, no warning.
    with Sqlmux(pg, size=2, tweak=lambda c: c["server"].update(max_client_conn=500), nofile=(64, 4096)) as mux:
        check_eq(_nofile(mux.proc.pid), (4096, 4096), "soft open file limit raised to the hard one")
        lines = limit_lines(mux)
        check(any("raised the open file limit (RLIMIT_NOFILE) from 64 to 4096" in ln for ln in lines),
              f"log says it raised the limit: {lines}")
        check(not any(warning in ln for ln in lines), f"no warning when the limit suffices: {lines}")
        mux.assert_serving()
        # A reload that needs more than the hard limit allows: warned.
        mux.cfg["server"]["max_client_conn"] = 10000
        with open(mux.config_path, "w") as f:
            f.write(to_toml(mux.cfg))
        mux.send_signal(signal.SIGHUP)
        got = wait_for(lambda: [ln for ln in limit_lines(mux) if "reload:" in ln and warning in ln], 10)
        check(got, f"reload to max_client_conn 10000 under a hard limit of 4096 warns: {limit_lines(mux)}")
        check("max_client_conn 10000" in got[0] and "4096" in got[0], f"the warning's numbers: {got[0]}")
        mux.assert_serving(what="still serving after the reload")

    # Too low from the start: raised as far as it goes, and warned.
    with Sqlmux(pg, size=2, nofile=(64, 1024)) as mux:
        check_eq(_nofile(mux.proc.pid), (1024, 1024), "soft open file limit raised to the hard one")
        got = [ln for ln in limit_lines(mux) if "startup:" in ln and warning in ln]
        check(got and "max_client_conn 10000" in got[0], f"startup warning: {limit_lines(mux)}")
        mux.assert_serving()


if __name__ == "__main__":
    run_cases(__file__, [case_min_idle, case_server_idle_timeout, case_server_lifetime, case_unreachable_backend,
                         case_postgres_restart, case_pool_without_login_uses_client_credentials,
                         case_two_pools_one_database, case_example_configs_are_valid,
                         case_fd_limit_raised_and_warned], timeout=130)
