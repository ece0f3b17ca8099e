#!/usr/bin/python3
"""Limits PgBouncer users expect (issue 18), PostgreSQL and MySQL.

max_user_client_connections ([server] default, a [[user]]'s own key over
it): client connections logged in as one user, all pools together. Past it
a login is refused with the protocol's own error (PostgreSQL: FATAL 53300
"too many connections for role"; MySQL: ERR 1203
ER_TOO_MANY_USER_CONNECTIONS), in one rate-limited log line naming the
client's address, and counted in sqlmux_client_errors_total{reason=
"too_many_user_clients"}; a client that leaves frees its place; a RELOAD
that raises the cap applies to the next login and SHOW CONFIG shows it.

reserve_pool_size / reserve_pool_timeout (per pool): with the pool at its
size, a waiting client gets an extra server connection only once it has
waited reserve_pool_timeout (the server's own session count says so, before
and after), sqlmux_pool_reserve_connections shows it in use, a warn line
names the client, and the pool shrinks back to its size once nobody
waits.

max_db_connections (per [[pool]] entry: all its per-user pools) and
max_user_connections (per server user: all pools), [server] defaults and
the pool's / user's own key over them: with two pools under one cap of 2,
five concurrent clients holding transactions all finish while the server
never sees more than 2 sqlmux sessions (pg_stat_activity / SHOW
PROCESSLIST), and sqlmux_pool_waiting_on_cap counts the
clients waiting at the cap; two idle server connections of one pool are
closed for the other pool's client (evicted), which is served at once
instead of waiting out query_wait_timeout; a RELOAD that raises the cap to
3 lets 3 server sessions open."""

import signal
import threading
import time

import psycopg
import psycopg2

from harness import *

REASON = 'sqlmux_client_errors_total{reason="too_many_user_clients"}'
ROLE_MSG = 'too many connections for role "app"'


def _refusal_lines(mux) -> list[str]:
    return [l for l in mux.log_text().splitlines() if "max_user_client_connections (" in l]


def _admin(port):
    c = psycopg2.connect(host="127.0.0.1", port=port, user="admin", password="adminpass", dbname="sqlmux")
    c.autocommit = True
    return c


def case_pg_max_user_client_connections(pg):
    require_sqlmux("max_user_client_connections")
    metrics_port, admin_port = free_port(), free_port()

    def tweak(cfg):
        cfg["server"]["max_user_client_connections"] = 5
        app = next(u for u in cfg["user"] if u["name"] == "app")
        app["max_user_client_connections"] = 2  # the user's own cap wins over [server]'s
        cfg["user"].append({"name": "admin", "password": "adminpass"})
        cfg["admin"] = {"listen": f"127.0.0.1:{admin_port}", "users": ["admin"]}
        cfg["metrics"] = {"listen": f"127.0.0.1:{metrics_port}"}

    with Sqlmux(pg, tweak=tweak) as mux:
        held = [mux.raw() for _ in range(2)]
        for _ in range(4):  # more refusals than workers: the lines are rate-limited
            try:
                RawPg(mux.host, mux.port).startup("app", "appdb", "apppass")
                fail("3rd client of user app accepted with max_user_client_connections = 2")
            except PgError as e:
                check_eq(e.sqlstate, "53300", "over the user's cap")
        for i, r in enumerate(held):
            check_eq(r.scalar(f"SELECT {i}"), str(i), f"client {i} below the cap")
        # The exact error on the wire.
        r3 = RawPg(mux.host, mux.port)
        try:
            r3.startup("app", "appdb", "apppass")
            fail("3rd client of user app accepted with max_user_client_connections = 2")
        except PgError as e:
            check_eq((e.severity, e.sqlstate, e.message), ("FATAL", "53300", ROLE_MSG), "over the user's cap")
        except ConnectionClosed:
            fail("over the user's cap: connection closed without an ErrorResponse")
        check(r3.at_eof(5), "over the user's cap: connection not closed")
        r3.close()
        # What drivers report.
        try:
            psycopg.connect(mux.dsn(), connect_timeout=10).close()
            fail("psycopg: 3rd client of user app accepted")
        except psycopg.OperationalError as e:
            check(ROLE_MSG in str(e), f"psycopg's error: {e}")
        try:
            psycopg2.connect(mux.dsn(), connect_timeout=10).close()
            fail("psycopg2: 3rd client of user app accepted")
        except psycopg2.OperationalError as e:
            check(ROLE_MSG in str(e), f"psycopg2's error: {e}")
        # The held clients still work; the admin console is another user.
        for i, r in enumerate(held):
            check_eq(r.scalar("SELECT 'still'"), "still", f"held client {i} after the refusals")
        # One leaves: its place is free for the next login.
        held.pop().terminate()
        deadline = time.monotonic() + 5
        while True:
            try:
                held.append(mux.raw())
                break
            except PgError as e:
                if time.monotonic() > deadline:
                    fail(f"no login 5s after a client of user app left: {e}")
                time.sleep(0.05)
        check_eq(held[-1].scalar("SELECT 'in'"), "in", "a login once a client left")

        got = scrape_metrics(metrics_port)
        check_eq(got.get(REASON), 7.0, REASON)
        lines = _refusal_lines(mux)
        # One line per worker (2) at most per 10 s, however many are refused.
        check(1 <= len(lines) <= 2, f"refusal log lines within 10s (rate-limited per worker): {lines}")
        check('max_user_client_connections (2) reached for user "app"' in lines[0], f"log line: {lines[0]}")
        check("127.0.0.1:" in lines[0], f"log line names the client's address: {lines[0]}")

        # RELOAD raises the user's cap: the third login gets in.
        text = open(mux.config_path).read()
        check("max_user_client_connections = 2\n" in text, "the user's cap in the config file")
        with open(mux.config_path, "w") as f:
            f.write(text.replace("max_user_client_connections = 2\n", "max_user_client_connections = 3\n"))
        c = _admin(admin_port)
        with c.cursor() as cur:
            cur.execute("RELOAD")
            cur.execute("SHOW CONFIG")
            cfg = {r[0]: r[1] for r in cur.fetchall()}
        c.close()
        check_eq((cfg.get("server.max_user_client_connections"), cfg.get("user[0].max_user_client_connections")),
                 ("5", "3"), "SHOW CONFIG after RELOAD")
        held.append(mux.raw())
        check_eq(held[-1].scalar("SELECT 3"), "3", "a third login once RELOAD raised the cap")
        for r in held:
            r.terminate()
        log(f"pg: 7 refusals (53300), {len(lines)} log line, {REASON} = {got.get(REASON)}")


def case_mysql_max_user_client_connections(pg):
    require_sqlmux("max_user_client_connections")
    from mysql_harness import MariaDbServer, my_errno
    import pymysql

    metrics_port = free_port()

    def tweak(cfg):
        cfg["server"]["max_user_client_connections"] = 2
        cfg["metrics"] = {"listen": f"127.0.0.1:{metrics_port}"}

    with MariaDbServer() as my, Sqlmux(None, my=my, size=4, tweak=tweak) as mux:
        held = [mux.my_connect(autocommit=True) for _ in range(2)]
        for i, c in enumerate(held):
            with c.cursor() as cur:
                cur.execute(f"SELECT {i}")
                check_eq(cur.fetchone()[0], i, f"client {i} below the cap")
        for attempt in range(5):
            try:
                mux.my_connect().close()
                fail("3rd client of user app accepted with max_user_client_connections = 2")
            except pymysql.err.OperationalError as e:
                check_eq(my_errno(e), 1203, f"over the cap: MySQL error code ({e})")
                check("already has more than 'max_user_connections' active connections" in str(e),
                      f"over the cap: message ({e})")
        with held[0].cursor() as cur:
            cur.execute("SELECT 'still'")
            check_eq(cur.fetchone()[0], "still", "held client after the refusals")
        # COM_CHANGE_USER at the cap: the client's place is its own (released
        # and counted again), and the user stays at its cap.
        import MySQLdb
        held[1].close()
        m = None
        deadline = time.monotonic() + 5
        while m is None:
            try:
                m = MySQLdb.connect(host=mux.host, port=mux.my_port, user="app", passwd="apppass", db="appdb",
                                    connect_timeout=10)
            except MySQLdb.OperationalError as e:
                if e.args[0] != 1203 or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        m.change_user("app", "apppass", "appdb")
        cur = m.cursor()
        cur.execute("SELECT 'changed'")
        check_eq(cur.fetchone()[0], "changed", "change_user at the cap")
        try:
            mux.my_connect().close()
            fail("3rd client accepted after a change_user at the cap")
        except pymysql.err.OperationalError as e:
            check_eq(my_errno(e), 1203, f"after change_user: MySQL error code ({e})")
        held[1] = m
        held.pop().close()
        deadline = time.monotonic() + 5
        while True:
            try:
                held.append(mux.my_connect(autocommit=True))
                break
            except pymysql.err.OperationalError as e:
                if my_errno(e) != 1203 or time.monotonic() > deadline:
                    fail(f"no login 5s after a client of user app left: {e}")
                time.sleep(0.05)
        with held[-1].cursor() as cur:
            cur.execute("SELECT 'in'")
            check_eq(cur.fetchone()[0], "in", "a login once a client left")
        got = scrape_metrics(metrics_port)
        check_eq(got.get(REASON), 6.0, REASON)
        lines = _refusal_lines(mux)
        check(1 <= len(lines) <= 2, f"refusal log lines within 10s (rate-limited per worker): {lines}")
        check("127.0.0.1:" in lines[0] and '"app"' in lines[0], f"log line: {lines[0]}")
        for c in held:
            c.close()
        log(f"mysql: 6 refusals (1203), {len(lines)} log line, {REASON} = {got.get(REASON)}")


RESERVE_TIMEOUT = 1.0


def _reserve_gauge(port: int) -> float:
    return sum(v for k, v in scrape_metrics(port).items() if k.startswith("sqlmux_pool_reserve_connections{"))


def _reserve_case(mux, metrics_port, sessions, hold, wait_query, what):
    """`hold()` opens a client that keeps the pool's one server connection
    in a transaction and returns a function that ends it; `wait_query()`
    runs a query on a second client that needs a server connection for
    about 1 s. `sessions()` counts the server's sessions of user app."""
    release = hold()
    check_eq(sessions(), 1, f"{what}: server sessions with the pool at its size")
    done = {}

    def second():
        t0 = time.monotonic()
        try:
            wait_query()
            done["elapsed"] = time.monotonic() - t0
        except Exception as e:  # noqa: BLE001
            done["error"] = e

    t = threading.Thread(target=second)
    t.start()
    time.sleep(RESERVE_TIMEOUT * 0.6)
    check("elapsed" not in done and "error" not in done, f"{what}: the waiting client was served early: {done}")
    check_eq(sessions(), 1, f"{what}: server sessions before reserve_pool_timeout")
    # The reserve opens after the timeout (checked at the workers' 200 ms
    # tick); its query then runs for about 1 s.
    deadline = time.monotonic() + 3
    while sessions() < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    check_eq(sessions(), 2, f"{what}: server sessions once the client waited reserve_pool_timeout")
    check_eq(_reserve_gauge(metrics_port), 1.0, f"{what}: sqlmux_pool_reserve_connections while in use")
    t.join(10)
    check("error" not in done, f"{what}: the waiting client failed: {done.get('error')}")
    elapsed = done.get("elapsed", 0)
    check(RESERVE_TIMEOUT + 0.9 <= elapsed < RESERVE_TIMEOUT + 3,
          f"{what}: waited + ran {elapsed:.2f}s (reserve_pool_timeout {RESERVE_TIMEOUT}s, query ~1s)")
    # Nobody waits: the reserve connection closed when released.
    deadline = time.monotonic() + 3
    while (sessions() > 1 or _reserve_gauge(metrics_port) > 0) and time.monotonic() < deadline:
        time.sleep(0.05)
    check_eq((sessions(), _reserve_gauge(metrics_port)), (1, 0.0), f"{what}: sessions and reserve gauge after")
    release()
    lines = [l for l in mux.log_text().splitlines() if "opening a reserve server connection" in l]
    check_eq(len(lines), 1, f"{what}: reserve log lines")
    check("127.0.0.1:" in lines[0] and "1 of reserve_pool_size 1 in use" in lines[0], f"{what}: log line {lines[0]}")
    log(f"{what}: served after {elapsed:.2f}s through the reserve; server sessions 1 -> 2 -> 1")


def _reserve_tweak(metrics_port):
    def tweak(cfg):
        for p in cfg["pool"]:
            p["reserve_pool_size"] = 1
            p["reserve_pool_timeout"] = f"{int(RESERVE_TIMEOUT * 1000)}ms"
        cfg["metrics"] = {"listen": f"127.0.0.1:{metrics_port}"}
    return tweak


def case_pg_reserve_pool(pg):
    require_sqlmux("reserve_pool_size")
    metrics_port = free_port()
    with Sqlmux(pg, size=1, tweak=_reserve_tweak(metrics_port)) as mux:
        su = pg.connect_super()

        def sessions():
            with su.cursor() as cur:
                cur.execute("SELECT count(*) FROM pg_stat_activity WHERE usename = 'app' AND datname = 'appdb'")
                return cur.fetchone()[0]

        def hold():
            c = psycopg.connect(mux.dsn())
            c.execute("SELECT 1")  # psycopg opens a transaction: the server connection stays
            return c.close

        def wait_query():
            with psycopg2.connect(mux.dsn(), connect_timeout=10) as c, c.cursor() as cur:
                cur.execute("SELECT pg_sleep(1)")
            c.close()

        _reserve_case(mux, metrics_port, sessions, hold, wait_query, "pg")
        su.close()


def case_mysql_reserve_pool(pg):
    require_sqlmux("reserve_pool_size")
    from mysql_harness import MariaDbServer

    metrics_port = free_port()
    with MariaDbServer() as my, Sqlmux(None, my=my, size=1, tweak=_reserve_tweak(metrics_port)) as mux:
        def hold():
            c = mux.my_connect()
            c.begin()
            with c.cursor() as cur:
                cur.execute("SELECT 1")
            return c.close

        def wait_query():
            c = mux.my_connect(autocommit=True)
            with c.cursor() as cur:
                cur.execute("SELECT SLEEP(1)")
            c.close()

        _reserve_case(mux, metrics_port, my.app_sessions, hold, wait_query, "mysql")


CAP_WAIT_TIMEOUT = 8  # query_wait_timeout (s): a client starved at the cap fails after it


def _waiting_on_cap(port: int) -> float:
    return sum(v for k, v in scrape_metrics(port).items() if k.startswith("sqlmux_pool_waiting_on_cap{"))


def _cap_case(what, a, b, run, sessions, metrics_port, raise_cap):
    """Two pools under one cap of 2: clients `a` and `b` (one per pool).
    `run(client, hold)` runs one transaction that keeps its server
    connection `hold` seconds; `sessions()` counts sqlmux's server
    sessions under the cap; `raise_cap()` makes it 3 by a RELOAD."""
    # Pool a opens two server connections, which then stay idle.
    errors = []

    def go(client, hold, out=None):
        t0 = time.monotonic()
        try:
            run(client, hold)
            if out is not None:
                out.append(time.monotonic() - t0)
        except Exception as e:  # noqa: BLE001
            errors.append(f"{client}: {e}")

    ts = [threading.Thread(target=go, args=(a, 0.5)) for _ in range(2)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(15)
    check(not errors, f"{what}: warm-up: {errors}")
    check_eq(sessions(), 2, f"{what}: server sessions with pool {a}'s two idle connections")
    # Pool b's client: pool a closes an idle connection to make room.
    took = []
    go(b, 0, took)
    check(not errors, f"{what}: pool {b}'s client at the cap: {errors}")
    check(took and took[0] < 3, f"{what}: pool {b}'s client served in {took} s (not starved by idle ones)")
    served_b = took[0]
    check(sessions() <= 2, f"{what}: server sessions after the eviction")

    def burst(cap):
        """Five clients of both pools hold transactions at once."""
        seen = {"sessions": 0, "waiting": 0.0}
        stop = threading.Event()

        def poll():
            while not stop.is_set():
                seen["sessions"] = max(seen["sessions"], sessions())
                seen["waiting"] = max(seen["waiting"], _waiting_on_cap(metrics_port))
                time.sleep(0.03)

        poller = threading.Thread(target=poll)
        poller.start()
        took = []
        t0 = time.monotonic()
        ts = [threading.Thread(target=go, args=((a, b)[i % 2], 0.6, took)) for i in range(5)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(30)
        elapsed = time.monotonic() - t0
        stop.set()
        poller.join(10)
        check(not errors, f"{what}: clients failed at cap {cap}: {errors}")
        check_eq(len(took), 5, f"{what}: clients finished at cap {cap}")
        check_eq(seen["sessions"], cap, f"{what}: most server sessions seen with 5 clients at cap {cap}")
        rounds = (5 + cap - 1) // cap
        check(elapsed >= 0.6 * rounds - 0.1,
              f"{what}: 5 transactions of 0.6 s, {cap} at a time, took {elapsed:.2f} s")
        check(seen["waiting"] >= 1, f"{what}: sqlmux_pool_waiting_on_cap while clients waited: {seen['waiting']}")
        check_eq(_waiting_on_cap(metrics_port), 0.0, f"{what}: sqlmux_pool_waiting_on_cap after")
        return elapsed, seen

    elapsed, seen = burst(2)
    raise_cap()
    elapsed3, seen3 = burst(3)
    log(f"{what}: pool {b}'s client served in {served_b:.2f}s past {a}'s idle ones; 5 clients done in "
        f"{elapsed:.2f}s, at most {seen['sessions']} server sessions, waiting_on_cap up to {seen['waiting']:.0f}; "
        f"after RELOAD to 3: {elapsed3:.2f}s, at most {seen3['sessions']} sessions")


def _cap_tweak(metrics_port, per_user_pools):
    """per_user_pools: max_db_connections, the pool logs in as each client
    (users app, app2); else max_user_connections, a second pool appdb2 on
    the same server database as app. [server]'s cap 5, the pool's / user's
    own 2 over it."""
    def tweak(cfg):
        cfg["metrics"] = {"listen": f"127.0.0.1:{metrics_port}"}
        for p in cfg["pool"]:
            p["query_wait_timeout"] = f"{CAP_WAIT_TIMEOUT}s"
        if per_user_pools:
            cfg["server"]["max_db_connections"] = 5
            cfg["user"].append({"name": "app2", "password": "app2pass"})
            for p in cfg["pool"]:
                p.pop("user")
                p.pop("password")
                p["max_db_connections"] = 2
        else:
            cfg["server"]["max_user_connections"] = 5
            cfg["user"][0]["max_user_connections"] = 2
            cfg["pool"] = cfg["pool"] + [dict(p, name="appdb2") for p in cfg["pool"]]
    return tweak


def _raise_cap(mux, per_user_pools):
    """RELOAD (SIGHUP) with the pool's / user's own cap 3 instead of 2."""
    def go():
        key = "max_db_connections = 2\n" if per_user_pools else "max_user_connections = 2\n"
        text = open(mux.config_path).read()
        check(key in text, f"{key.strip()} in the config file")
        with open(mux.config_path, "w") as f:
            f.write(text.replace(key, key.replace("2", "3")))
        mux.send_signal(signal.SIGHUP)
        applied = "applied(max_db_connections)" if per_user_pools else "users ~app"
        check(mux.log_has(applied), f"reload log line with {applied!r}")
    return go


def _pg_cap(pg, per_user_pools, what):
    metrics_port = free_port()
    if per_user_pools:
        pg.psql("SET password_encryption = 'scram-sha-256'; CREATE ROLE app2 LOGIN PASSWORD 'app2pass';"
                "GRANT CONNECT ON DATABASE appdb TO app2;")
    with Sqlmux(pg, size=10, tweak=_cap_tweak(metrics_port, per_user_pools)) as mux:
        su = pg.connect_super()
        su.autocommit = True

        def sessions():
            with su.cursor() as cur:
                cur.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = 'appdb' "
                            "AND usename IN ('app', 'app2')")
                return cur.fetchone()[0]

        def run(client, hold):
            user, db = client
            c = psycopg2.connect(mux.dsn(db=db, user=user, password=user + "pass"), connect_timeout=10)
            try:
                with c.cursor() as cur:  # psycopg2 opens a transaction
                    cur.execute("SELECT pg_sleep(%s)", (hold,))
                c.commit()
            finally:
                c.close()

        if per_user_pools:
            _cap_case(what, ("app", "appdb"), ("app2", "appdb"), run, sessions, metrics_port,
                     _raise_cap(mux, per_user_pools))
        else:
            _cap_case(what, ("app", "appdb"), ("app", "appdb2"), run, sessions, metrics_port,
                     _raise_cap(mux, per_user_pools))
        su.close()


def case_pg_max_db_connections(pg):
    require_sqlmux("max_db_connections")
    _pg_cap(pg, True, "pg max_db_connections")


def case_pg_max_user_connections(pg):
    require_sqlmux("max_user_connections")
    _pg_cap(pg, False, "pg max_user_connections")


def _my_cap(per_user_pools, what):
    from mysql_harness import MariaDbServer

    metrics_port = free_port()
    with MariaDbServer() as my:
        if per_user_pools:
            my.sql_many(["CREATE USER 'app2'@'%' IDENTIFIED BY 'app2pass'",
                         "CREATE USER 'app2'@'127.0.0.1' IDENTIFIED BY 'app2pass'",
                         "GRANT ALL PRIVILEGES ON appdb.* TO 'app2'@'%'",
                         "GRANT ALL PRIVILEGES ON appdb.* TO 'app2'@'127.0.0.1'"])
        with Sqlmux(None, my=my, size=10, tweak=_cap_tweak(metrics_port, per_user_pools)) as mux:
            def sessions():
                # SHOW PROCESSLIST, not information_schema.PROCESSLIST: MariaDB
                # 10.11 crashed (signal, core, every connection lost) in
                # "SELECT COUNT(*) FROM information_schema.PROCESSLIST" polled
                # every 30 ms while sqlmux closed server connections, once in a
                # clean-clone CI run.
                return sum(1 for row in my.sql("SHOW PROCESSLIST") if row[1] in ("app", "app2"))

            def run(client, hold):
                user, db = client
                c = mux.my_connect(db=db, user=user, password=user + "pass")
                try:
                    c.begin()
                    with c.cursor() as cur:
                        cur.execute("SELECT SLEEP(%s)", (hold,))
                    c.commit()
                finally:
                    c.close()

            if per_user_pools:
                _cap_case(what, ("app", "appdb"), ("app2", "appdb"), run, sessions, metrics_port,
                     _raise_cap(mux, per_user_pools))
            else:
                _cap_case(what, ("app", "appdb"), ("app", "appdb2"), run, sessions, metrics_port,
                     _raise_cap(mux, per_user_pools))


def case_mysql_max_db_connections(pg):
    require_sqlmux("max_db_connections")
    _my_cap(True, "mysql max_db_connections")


def case_mysql_max_user_connections(pg):
    require_sqlmux("max_user_connections")
    _my_cap(False, "mysql max_user_connections")


if __name__ == "__main__":
    run_cases(__file__, [case_pg_max_user_client_connections, case_mysql_max_user_client_connections,
                         case_pg_reserve_pool, case_mysql_reserve_pool,
                         case_pg_max_db_connections, case_pg_max_user_connections,
                         case_mysql_max_db_connections, case_mysql_max_user_connections], timeout=170)
