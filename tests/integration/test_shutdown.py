#!/usr/bin/python3
"""SIGTERM / SIGINT: sqlmux stops accepting clients, lets running
transactions finish (up to shutdown_timeout), and exits 0."""

import os
import signal
import subprocess
import time

from harness import *


def setup(pg):
    pg.psql("CREATE TABLE shut_t(id serial PRIMARY KEY, marker text); ALTER TABLE shut_t OWNER TO app;", db="appdb")
    env = dict(os.environ, PGPASSWORD="apppass")
    r = subprocess.run(["pgbench", "-i", "-s", "1", "-q", "-h", pg.host, "-p", str(pg.port), "-U", "app", "appdb"],
                       capture_output=True, text=True, env=env, timeout=120)
    if r.returncode != 0:
        fail(f"pgbench -i: {r.stderr}")


def count(pg, marker):
    return int(pg.psql(f"SELECT count(*) FROM shut_t WHERE marker = '{marker}'", db="appdb").strip())


def new_client_refused(mux) -> str:
    """A new client must not get served once shutdown began, and must be
    told so promptly (connection refused, an error, or a close) rather than
    left waiting for an answer."""
    try:
        r = RawPg(mux.host, mux.port, timeout=5)
    except OSError as e:
        return f"refused at connect ({e.__class__.__name__})"
    try:
        r.startup("app", "appdb", "apppass")
    except PgError as e:
        return f"refused at startup ({e.sqlstate} {e.message})"
    except TimeoutError:
        fail("a client connecting during shutdown got no answer to its startup packet within 5s (the "
             "connection was left pending: refuse it, close it or send an error)")
    except (ConnectionClosed, OSError) as e:
        return f"refused at startup ({e.__class__.__name__})"
    try:
        res = r.query("SELECT 1", timeout=5)
        if res.error:
            return f"refused at query ({res.sqlstate})"
    except (ConnectionClosed, TimeoutError, OSError) as e:
        return f"refused at query ({e.__class__.__name__})"
    finally:
        r.close()
    fail("a new client was served after SIGTERM")


def case_idle_clients_sigterm_and_sigint(pg):
    require_sqlmux("signals")
    for sig in (signal.SIGTERM, signal.SIGINT):
        for mode in ("transaction", "session"):
            with Sqlmux(pg, mode=mode, size=4, tweak=lambda c: c["server"].update(shutdown_timeout="20s")) as mux:
                clients = [mux.raw() for _ in range(3)]
                for c in clients:
                    c.query_ok("SELECT 1")
                t0 = time.monotonic()
                mux.send_signal(sig)
                rc = mux.wait_exit(5)
                el = time.monotonic() - t0
                check(rc is not None, f"{mode}/{sig.name}: sqlmux with only idle clients still running 5s after the signal")
                check_eq(rc, 0, f"{mode}/{sig.name}: exit code")
                for i, c in enumerate(clients):
                    err, closed = c.read_until_error_or_eof(3)
                    check(closed, f"{mode}/{sig.name}: idle client {i} not disconnected")
                    if err is not None:
                        check_eq(err.get("C"), "57P01", f"{mode}/{sig.name}: error sent to idle client {i}")
                log(f"{mode}/{sig.name}: exited in {el:.2f}s")


def case_running_transaction_finishes(pg):
    require_sqlmux("graceful shutdown")
    for mode in ("transaction", "session"):
        marker = f"finish-{mode}"
        with Sqlmux(pg, mode=mode, size=4, tweak=lambda c: c["server"].update(shutdown_timeout="20s")) as mux:
            a = mux.raw()
            idle = mux.raw()
            idle.query_ok("SELECT 1")
            a.query_ok("BEGIN")
            a.query_ok(f"INSERT INTO shut_t(marker) VALUES ('{marker}')")
            mux.send_signal(signal.SIGTERM)
            time.sleep(0.5)
            check(mux.running(), f"{mode}: sqlmux exited while a transaction was running")
            how = new_client_refused(mux)
            log(f"{mode}: new client during shutdown: {how}")
            # the running transaction goes on and commits
            a.query_ok(f"INSERT INTO shut_t(marker) VALUES ('{marker}')")
            check_eq(a.scalar("SELECT count(*) FROM shut_t WHERE marker = '%s'" % marker), "2",
                     f"{mode}: rows inside the running transaction")
            res = a.query("COMMIT")
            check(res.error is None, f"{mode}: COMMIT during shutdown failed: {res.error}")
            check_eq(res.tags, ["COMMIT"], f"{mode}: COMMIT tag")
            t0 = time.monotonic()
            rc = mux.wait_exit(5)
            check(rc is not None, f"{mode}: sqlmux still running 5s after the last transaction finished")
            check_eq(rc, 0, f"{mode}: exit code")
            log(f"{mode}: exited {time.monotonic() - t0:.2f}s after COMMIT")
            check(a.at_eof(3), f"{mode}: client not disconnected after its transaction finished")
            check_eq(count(pg, marker), 2, f"{mode}: committed rows after shutdown")


def case_shutdown_timeout(pg):
    require_sqlmux("shutdown_timeout")
    with Sqlmux(pg, mode="transaction", size=2, tweak=lambda c: c["server"].update(shutdown_timeout="2s")) as mux:
        a = mux.raw()
        a.query_ok("BEGIN")
        a.query_ok("INSERT INTO shut_t(marker) VALUES ('timeout')")
        t0 = time.monotonic()
        mux.send_signal(signal.SIGTERM)
        rc = mux.wait_exit(8)
        el = time.monotonic() - t0
        check(rc is not None, "sqlmux still running 8s after SIGTERM with shutdown_timeout = 2s")
        check_eq(rc, 0, "exit code after shutdown_timeout")
        check(1.5 <= el <= 5, f"exited {el:.2f}s after SIGTERM (shutdown_timeout = 2s)")
        err, closed = a.read_until_error_or_eof(3)
        check(closed, "client of the unfinished transaction not disconnected")
        # The unfinished transaction is rolled back on PostgreSQL.
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and pg.app_sessions() > 0:
            time.sleep(0.1)
        check_eq(pg.app_sessions(), 0, "app sessions left on PostgreSQL after sqlmux exited")
        check_eq(count(pg, "timeout"), 0, "rows of the transaction cut by shutdown_timeout")


def case_sigterm_under_load(pg):
    require_sqlmux("shutdown under load")

    def balances():
        return pg.psql("SELECT (SELECT sum(abalance) FROM pgbench_accounts) || ',' || "
                       "(SELECT sum(bbalance) FROM pgbench_branches) || ',' || "
                       "(SELECT sum(tbalance) FROM pgbench_tellers) || ',' || "
                       "(SELECT coalesce(sum(delta), 0) FROM pgbench_history)", db="appdb").strip()

    with Sqlmux(pg, mode="transaction", size=5, tweak=lambda c: c["server"].update(shutdown_timeout="5s")) as mux:
        env = dict(os.environ, PGPASSWORD="apppass")
        bench = subprocess.Popen(["pgbench", "-n", "-c", "20", "-j", "2", "-T", "20", "-h", mux.host,
                                  "-p", str(mux.port), "-U", "app", "appdb"],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        time.sleep(3)
        t0 = time.monotonic()
        mux.send_signal(signal.SIGTERM)
        rc = mux.wait_exit(10)
        el = time.monotonic() - t0
        try:
            bench.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            bench.kill()
            bench.communicate()
            fail("pgbench still running 30s after sqlmux was stopped")
        check(rc is not None, "sqlmux still running 10s after SIGTERM under load (shutdown_timeout = 5s)")
        check_eq(rc, 0, "exit code after SIGTERM under load")
        log(f"exited {el:.2f}s after SIGTERM under load")
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and pg.app_sessions() > 0:
            time.sleep(0.1)
        b = balances().split(",")
        check(len(set(b)) == 1, f"pgbench balances disagree after shutdown (accounts, branches, tellers, history) "
                                f"= {b}: a transaction was cut in half")


if __name__ == "__main__":
    run_cases(__file__, [case_idle_clients_sigterm_and_sigint, case_running_transaction_finishes,
                         case_shutdown_timeout, case_sigterm_under_load], timeout=110, setup=setup)
