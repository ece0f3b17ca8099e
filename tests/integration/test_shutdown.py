#!/usr/bin/python3
"""SIGTERM / SIGINT: sqlmux stops accepting clients, lets running
transactions finish (up to shutdown_timeout), and exits 0."""

import os
import signal
import socket
import struct
import subprocess
import threading
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


def case_mysql_client_refused_during_shutdown(pg):
    """Issue 18: a MySQL client that connected after SIGTERM was accepted
    and its INSERT committed, while PostgreSQL clients got 57P03. During
    the graceful wait (a PostgreSQL transaction keeps sqlmux up) a new
    MySQL client now gets ERR 1053 "Server shutdown in progress" (SQLSTATE
    08S01) in place of the greeting, and nothing it sends is committed."""
    require_sqlmux("graceful shutdown")
    from mysql_harness import MariaDbServer
    import pymysql

    with MariaDbServer() as my:
        my.sql("CREATE TABLE appdb.shut_my (marker VARCHAR(32))")
        with Sqlmux(pg, my=my, mode="transaction", size=2,
                    tweak=lambda c: c["server"].update(shutdown_timeout="20s")) as mux:
            a = mux.raw()
            a.query_ok("BEGIN")
            a.query_ok("INSERT INTO shut_t(marker) VALUES ('mysql-refused')")
            mux.send_signal(signal.SIGTERM)
            time.sleep(0.5)
            check(mux.running(), "sqlmux exited while a PostgreSQL transaction was running")
            outcome = None
            try:
                c = mux.my_connect(autocommit=True)
            except pymysql.err.OperationalError as e:
                outcome = e
            else:
                try:
                    with c.cursor() as cur:
                        cur.execute("INSERT INTO shut_my VALUES ('after-sigterm')")
                except pymysql.MySQLError:
                    pass
                c.close()
            check_eq(int(my.scalar("SELECT count(*) FROM appdb.shut_my")), 0,
                     "rows a MySQL client inserted after SIGTERM")
            check(outcome is not None, "a MySQL client connecting after SIGTERM was accepted")
            check_eq(outcome.args[0], 1053, f"MySQL error after SIGTERM ({outcome})")
            check("shutdown" in str(outcome.args[1]).lower(), f"MySQL error text: {outcome}")
            # The first packet, as a raw client reads it.
            with socket.create_connection((mux.host, mux.my_port), timeout=5) as sock:
                data = sock.recv(1024)
            check(len(data) >= 13, f"first packet during shutdown: {data!r}")
            seq, hdr, code = data[3], data[4], struct.unpack("<H", data[5:7])[0]
            check_eq((seq, hdr, code, data[7:13]), (0, 0xFF, 1053, b"#08S01"),
                     "first packet during shutdown: (sequence id, ERR, code, SQLSTATE)")
            res = a.query("COMMIT")
            check(res.error is None, f"COMMIT during shutdown failed: {res.error}")
            rc = mux.wait_exit(5)
            check_eq(rc, 0, "exit code once the PostgreSQL transaction finished")
            check_eq(count(pg, "mysql-refused"), 1, "the PostgreSQL transaction's row")


def _hammer(mux, stop, outcomes):
    """New PostgreSQL clients one after another until `stop`: each outcome
    is 'served', 'refused' (connection refused), an SQLSTATE, or 'silent'
    (accepted, then closed or reset without a word)."""
    while not stop.is_set():
        try:
            r = RawPg(mux.host, mux.port, timeout=5)
        except ConnectionRefusedError:
            outcomes.append("refused")
            time.sleep(0.005)
            continue
        except OSError as e:
            outcomes.append(f"connect: {e.__class__.__name__}")
            continue
        try:
            r.startup("app", "appdb", "apppass")
            outcomes.append("served")
        except PgError as e:
            outcomes.append(e.sqlstate)
        except (ConnectionClosed, OSError):
            outcomes.append("silent")
        finally:
            r.close()


def case_no_silent_close_at_exit(pg):
    """Issue 18: a client that arrived after the last client left, just
    before exit, got a closed socket instead of 57P03. Clients connecting
    one after another through SIGTERM and exit are each served (before),
    told 57P03 (during), or refused at connect (after), never accepted and
    then closed without a word. (A race: each round gives it one chance.)"""
    require_sqlmux("graceful shutdown")
    for i in range(4):
        with Sqlmux(pg, size=2, tweak=lambda c: c["server"].update(shutdown_timeout="10s")) as mux:
            stop, outcomes = threading.Event(), []
            t = threading.Thread(target=_hammer, args=(mux, stop, outcomes), daemon=True)
            t.start()
            time.sleep(0.3)
            mux.send_signal(signal.SIGTERM)
            rc = mux.wait_exit(12)
            time.sleep(1.5)
            stop.set()
            t.join(15)
            kinds = {k: outcomes.count(k) for k in sorted(set(outcomes))}
            log(f"round {i}: exit code {rc}; outcomes {kinds}")
            check_eq(rc, 0, "exit code")
            check("silent" not in kinds, f"round {i}: clients accepted and closed without a word around exit: {kinds}")
            check(set(kinds) <= {"served", "refused", "57P03", "57P01"}, f"round {i}: outcomes {kinds}")
            check(kinds.get("served", 0) > 0 and kinds.get("refused", 0) > 0, f"round {i}: outcomes {kinds}")


if __name__ == "__main__":
    run_cases(__file__, [case_idle_clients_sigterm_and_sigint, case_running_transaction_finishes,
                         case_shutdown_timeout, case_sigterm_under_load, case_mysql_client_refused_during_shutdown,
                         case_no_silent_close_at_exit], timeout=170, setup=setup)
