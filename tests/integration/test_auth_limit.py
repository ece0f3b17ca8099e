#!/usr/bin/python3
"""Failed logins (issue 15, README "Failed logins"): a guessing loop of 500
wrong-password logins from 127.0.0.1 runs from several threads while other
threads log in and out 200 times with the right password from the same
address. Every right login succeeds at once; the guesses are answered late
(doubling up to auth_failure_max_delay), so their rate stays below
threads / max_delay. Logins in progress per address are capped
(max_login_clients_per_address): past the cap a new connection from that
address gets the protocol's too-many-connections error (53300, ERR 1040),
logged with the address and counted; a RELOAD that raises the cap applies
at once and SHOW CONFIG shows the new keys. PostgreSQL and MySQL."""

import socket
import struct
import threading
import time

import psycopg2

from harness import *

GUESSES = 500
GUESS_THREADS = 20
GOOD_LOGINS = 200
GOOD_THREADS = 4
MAX_DELAY_S = 1.0
CAP = 32
CAPPED = "127.0.0.3"  # Linux routes all of 127/8 to lo


def _config(metrics_port, admin_port=None):
    def tweak(cfg):
        cfg["server"]["auth_failure_limit"] = 5
        cfg["server"]["auth_failure_window"] = "10s"
        cfg["server"]["auth_failure_delay"] = "100ms"
        cfg["server"]["auth_failure_max_delay"] = f"{int(MAX_DELAY_S * 1000)}ms"
        cfg["server"]["max_login_clients_per_address"] = CAP
        cfg["metrics"] = {"listen": f"127.0.0.1:{metrics_port}"}
        if admin_port is not None:
            cfg["user"].append({"name": "admin", "password": "adminpass"})
            cfg["admin"] = {"listen": f"127.0.0.1:{admin_port}", "users": ["admin"]}
    return tweak


def _attack_while_logging_in(guess, good_login, what):
    """Runs GUESSES wrong logins (guess() raises the protocol's auth error)
    from GUESS_THREADS threads while GOOD_THREADS threads make GOOD_LOGINS
    right logins (good_login()). Returns (guess times, good login times)."""
    lock = threading.Lock()
    errors = []
    guess_done = []  # monotonic time each guess was answered
    good_times = []
    next_guess = [0]

    def guesser():
        while True:
            with lock:
                if next_guess[0] >= GUESSES:
                    return
                next_guess[0] += 1
            try:
                guess()
                errors.append(f"{what}: a wrong password was accepted")
            except Exception as e:  # the auth error; anything else is collected
                if not guess.is_auth_error(e):
                    with lock:
                        errors.append(f"{what} guess: {type(e).__name__}: {e}")
            with lock:
                guess_done.append(time.monotonic())

    def good(n):
        for _ in range(n):
            t0 = time.monotonic()
            try:
                good_login()
            except Exception as e:
                with lock:
                    errors.append(f"{what} right login: {type(e).__name__}: {e}")
                continue
            with lock:
                good_times.append(time.monotonic() - t0)

    threads = [threading.Thread(target=guesser) for _ in range(GUESS_THREADS)]
    threads += [threading.Thread(target=good, args=(GOOD_LOGINS // GOOD_THREADS,)) for _ in range(GOOD_THREADS)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(180)
    check(not any(t.is_alive() for t in threads), f"{what}: threads still running after 180 s")
    check(not errors, f"{what}: " + "; ".join(errors[:5]) + f" ({len(errors)} errors)")
    check_eq(len(good_times), GOOD_LOGINS, f"{what}: right logins that succeeded")
    check_eq(len(guess_done), GUESSES, f"{what}: guesses answered")
    guess_done.sort()
    # After the first 50 (the free failures and the doubling), the guesses
    # are answered at most GUESS_THREADS per max delay.
    span = guess_done[-1] - guess_done[50]
    rate = (len(guess_done) - 51) / span
    bound = GUESS_THREADS / MAX_DELAY_S
    good_times.sort()
    log(f"{what}: {GUESSES} guesses in {guess_done[-1] - t0:.1f}s, {rate:.1f}/s after the first 50 "
        f"(bound {bound:.0f}/s); {len(good_times)} right logins, median "
        f"{good_times[len(good_times) // 2] * 1000:.1f} ms, max {good_times[-1] * 1000:.1f} ms")
    check(rate <= bound * 1.2, f"{what}: guesses answered at {rate:.1f}/s, over {bound:.0f}/s")
    # Right logins wait for no delay: well under max_delay, which every
    # guess past the first ones waits (generous: the machine is shared).
    check(good_times[len(good_times) // 2] < MAX_DELAY_S,
          f"{what}: median right login took {good_times[len(good_times) // 2]:.3f}s")
    return guess_done, good_times


def case_pg_guessing_loop(pg):
    require_sqlmux("sqlmux's failed-login delays")
    metrics_port, admin_port = free_port(), free_port()
    with Sqlmux(pg, size=4, tweak=_config(metrics_port, admin_port)) as mux:
        def guess():
            psycopg2.connect(mux.dsn(password="wrong"), connect_timeout=30).close()
        guess.is_auth_error = lambda e: isinstance(e, psycopg2.OperationalError) and "password authentication failed" in str(e)

        def good_login():
            c = psycopg2.connect(mux.dsn(), connect_timeout=30)
            c.autocommit = True
            with c.cursor() as cur:
                cur.execute("SELECT 1")
                check_eq(cur.fetchone()[0], 1, "right login's query")
            c.close()

        before = scrape_metrics(metrics_port)
        _attack_while_logging_in(guess, good_login, "postgres")
        after = scrape_metrics(metrics_port)
        delayed = after.get("sqlmux_auth_failures_delayed_total", 0) - before.get("sqlmux_auth_failures_delayed_total", 0)
        check(delayed >= GUESSES - 5, f"sqlmux_auth_failures_delayed_total rose by {delayed}")
        delay_sum = after.get("sqlmux_auth_failure_delay_seconds_sum", 0)
        check(delay_sum >= (GUESSES - 10) * MAX_DELAY_S * 0.9, f"sqlmux_auth_failure_delay_seconds_sum = {delay_sum}")
        check_eq(after.get("sqlmux_auth_delayed_addresses"), 1.0, "sqlmux_auth_delayed_addresses")
        log(f"metrics: {delayed:.0f} failures delayed, {delay_sum:.1f} s of delay")

        # SHOW AUTH: 127.0.0.1 / app, its failures and its next delay.
        c = psycopg2.connect(host="127.0.0.1", port=admin_port, user="admin", password="adminpass", dbname="sqlmux")
        c.autocommit = True
        with c.cursor() as cur:
            cur.execute("SHOW AUTH")
            cols = [d[0] for d in cur.description]
            rows = [dict(zip(cols, r)) for r in cur.fetchall()]
        c.close()
        check_eq(cols, ["address", "user", "failures", "last_delay_ms", "next_delay_ms", "idle_ms",
                        "logins_in_progress"], "SHOW AUTH columns")
        check(rows and rows[0]["address"] == "127.0.0.1" and rows[0]["user"] == "app",
              f"SHOW AUTH first row: {rows[:2]}")
        check_eq((rows[0]["failures"], rows[0]["next_delay_ms"]), (str(GUESSES), str(int(MAX_DELAY_S * 1000))),
                 "SHOW AUTH failures and next delay of 127.0.0.1/app")

        # The cap: CAP connections from 127.0.0.3 that never log in, then one more.
        idle = []
        try:
            for _ in range(CAP):
                s = socket.create_connection((mux.host, mux.port), timeout=10, source_address=(CAPPED, 0))
                idle.append(s)
            time.sleep(0.3)
            r = RawPg(mux.host, mux.port, source_address=CAPPED)
            try:
                r.startup("app", "appdb", "apppass")
                fail(f"login {CAP + 1} from {CAPPED} accepted over the cap")
            except PgError as e:
                check_eq((e.severity, e.sqlstate), ("FATAL", "53300"), "over max_login_clients_per_address")
                check(CAPPED in e.fields.get("D", ""), f"refusal detail names the address: {e.fields}")
            finally:
                r.close()
            mux.assert_serving(what="127.0.0.1 while 127.0.0.3 is at its cap")
            # A reload raises the cap: the next connection gets in.
            text = open(mux.config_path).read()
            check(f"max_login_clients_per_address = {CAP}\n" in text, "the cap in the config file")
            with open(mux.config_path, "w") as f:
                f.write(text.replace(f"max_login_clients_per_address = {CAP}\n",
                                     f"max_login_clients_per_address = {CAP + 1}\n"))
            c = psycopg2.connect(host="127.0.0.1", port=admin_port, user="admin", password="adminpass",
                                 dbname="sqlmux")
            c.autocommit = True
            with c.cursor() as cur:
                cur.execute("RELOAD")
                cur.execute("SHOW CONFIG")
                cfg = {r[0]: r[1] for r in cur.fetchall()}  # key, value, default, changeable
            c.close()
            check_eq((cfg.get("server.auth_failure_delay"), cfg.get("server.auth_failure_max_delay"),
                      cfg.get("server.max_login_clients_per_address")),
                     ("100ms", f"{int(MAX_DELAY_S * 1000)}ms" if MAX_DELAY_S < 1 else f"{int(MAX_DELAY_S)}s",
                      str(CAP + 1)), "SHOW CONFIG after RELOAD")
            r = RawPg(mux.host, mux.port, source_address=CAPPED)
            r.startup("app", "appdb", "apppass")
            check_eq(r.scalar("SELECT 1"), "1", f"a login from {CAPPED} once RELOAD raised its cap")
            r.terminate()
        finally:
            for s in idle:
                s.close()
        got = scrape_metrics(metrics_port)
        check_eq(got.get("sqlmux_login_refusals_total"), 1.0, "sqlmux_login_refusals_total")
        check_eq(got.get('sqlmux_client_errors_total{reason="too_many_logins"}'), 1.0,
                 "sqlmux_client_errors_total{reason=too_many_logins}")
        lines = [ln for ln in mux.log_text().splitlines() if "refusing a connection from" in ln]
        check(len(lines) == 1 and CAPPED in lines[0], f"refusal log lines: {lines}")
        log(f"cap: connection {CAP + 1} from {CAPPED} refused with 53300, logged and counted")


def case_mysql_guessing_loop(pg):
    require_sqlmux("sqlmux's failed-login delays")
    from mysql_harness import MariaDbServer
    import pymysql

    metrics_port = free_port()
    with MariaDbServer() as my, Sqlmux(None, my=my, size=4, tweak=_config(metrics_port)) as mux:
        def guess():
            mux.my_connect(password="wrong", connect_timeout=30).close()
        guess.is_auth_error = lambda e: isinstance(e, pymysql.err.OperationalError) and e.args[0] == 1045

        def good_login():
            c = mux.my_connect(connect_timeout=30, autocommit=True)
            with c.cursor() as cur:
                cur.execute("SELECT 1")
                check_eq(cur.fetchone()[0], 1, "right login's query")
            c.close()

        _attack_while_logging_in(guess, good_login, "mysql")
        got = scrape_metrics(metrics_port)
        check(got.get("sqlmux_auth_failures_delayed_total", 0) >= GUESSES - 5,
              f"sqlmux_auth_failures_delayed_total = {got.get('sqlmux_auth_failures_delayed_total')}")

        idle = []
        try:
            for _ in range(CAP):
                s = socket.create_connection((mux.host, mux.my_port), timeout=10, source_address=(CAPPED, 0))
                idle.append(s)
            time.sleep(0.3)
            s = socket.create_connection((mux.host, mux.my_port), timeout=10, source_address=(CAPPED, 0))
            data = b""
            while len(data) < 4 or len(data) < 4 + int.from_bytes(data[:3], "little"):
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
            s.close()
            check(len(data) > 7 and data[4] == 0xFF, f"over the cap: no ERR packet in place of the greeting: {data!r}")
            check_eq(struct.unpack("<H", data[5:7])[0], 1040, "over the cap: MySQL error code")
            c = mux.my_connect()  # 127.0.0.1 unaffected
            c.close()
        finally:
            for s in idle:
                s.close()
        check_eq(scrape_metrics(metrics_port).get("sqlmux_login_refusals_total"), 1.0, "sqlmux_login_refusals_total")
        log(f"cap: connection {CAP + 1} from {CAPPED} got ERR 1040 in place of the greeting")


if __name__ == "__main__":
    run_cases(__file__, [case_pg_guessing_loop, case_mysql_guessing_loop], timeout=300)
