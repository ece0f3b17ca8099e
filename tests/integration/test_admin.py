#!/usr/bin/python3
"""The admin console ([admin] listener, database "sqlmux"): login rules,
every SHOW against what is really connected, PAUSE/RESUME, KILL_CLIENT,
KILL, RECONNECT, DISABLE/ENABLE, errors for unknown commands, the extended
protocol and garbage bytes, and SHUTDOWN."""

import os
import socket
import struct
import subprocess
import threading
import time

import psycopg2

from harness import *

ADMIN_PASS = "adminpass"


class Console:
    """Helpers bound to one sqlmux with an admin listener."""

    def __init__(self, mux, port):
        self.mux = mux
        self.port = port

    def dsn(self, db="sqlmux", user="admin", password=ADMIN_PASS):
        return f"host=127.0.0.1 port={self.port} dbname={db} user={user} password={password} connect_timeout=10"

    def connect(self):
        c = psycopg2.connect(self.dsn())
        c.autocommit = True
        return c

    def rows(self, sql):
        """[dict(column -> value)] for a SHOW. (Not `with conn:`: psycopg2
        would send BEGIN, which the console refuses.)"""
        c = self.connect()
        try:
            with c.cursor() as cur:
                cur.execute(sql)
                cols = [d[0] for d in cur.description]
                return [dict(zip(cols, r)) for r in cur.fetchall()]
        finally:
            c.close()

    def run(self, sql):
        c = self.connect()
        try:
            with c.cursor() as cur:
                cur.execute(sql)
                return cur.statusmessage
        finally:
            c.close()

    def raw(self, user="admin", password=ADMIN_PASS, db="sqlmux"):
        r = RawPg("127.0.0.1", self.port)
        r.startup(user, db, password)
        return r


def with_console(pg, fn, metrics=False, extra=None, tweak_extra=None, **kw):
    """Runs fn(mux, Console) on a sqlmux with an admin listener; `extra`
    adds top-level tables to its configuration."""
    port = free_port()

    def tweak(cfg):
        cfg.update(extra or {})
        cfg["user"].append({"name": "admin", "password": ADMIN_PASS})
        cfg["admin"] = {"listen": f"127.0.0.1:{port}", "users": ["admin"]}
        if metrics:
            cfg["metrics"] = {"listen": f"127.0.0.1:{free_port()}"}
        if tweak_extra:
            tweak_extra(cfg)

    with Sqlmux(pg, tweak=tweak, **kw) as mux:
        check(wait_port("127.0.0.1", port, 5), "admin listener not open")
        fn(mux, Console(mux, port))
        mux.assert_serving()


def app_pids(pg):
    with pg.connect_super() as c, c.cursor() as cur:
        cur.execute("SELECT pid FROM pg_stat_activity WHERE usename = 'app' AND datname = 'appdb'")
        return sorted(r[0] for r in cur.fetchall())


def case_psql_and_shows_match_reality(pg):
    require_sqlmux("admin console")

    def body(mux, con):
        env = dict(os.environ, PGPASSWORD=ADMIN_PASS)
        r = subprocess.run(["psql", "-X", "-A", "-t", "-h", "127.0.0.1", "-p", str(con.port), "-U", "admin",
                            "-d", "sqlmux", "-c", "SHOW VERSION"], capture_output=True, text=True, env=env,
                           timeout=20)
        check_eq(r.returncode, 0, f"psql SHOW VERSION exit code (stderr {r.stderr!r})")
        check(r.stdout.startswith("sqlmux "), f"SHOW VERSION via psql: {r.stdout!r}")

        clients = [mux.connect(autocommit=True) for _ in range(3)]
        for c in clients:
            with c.cursor() as cur:
                cur.execute("SELECT 1")
        # one client inside a transaction: its server connection is active
        with clients[0].cursor() as cur:
            cur.execute("BEGIN; SELECT pg_backend_pid()")
            busy_pid = cur.fetchone()[0]

        rows = con.rows("show clients;")
        app = [r for r in rows if r["user"] == "app"]
        check_eq(len(app), 3, f"SHOW CLIENTS app rows ({rows})")
        check(all(r["database"] == "appdb" and r["pool"] == "appdb/app" for r in app), f"client rows {app}")
        check_eq(sorted(r["state"] for r in app), ["active", "idle", "idle"], "client states")
        check(all(r["address"].startswith("127.0.0.1:") for r in app), f"client addresses {app}")
        me = [r for r in rows if r["user"] == "admin"]
        check(len(me) == 1 and me[0]["database"] == "sqlmux" and me[0]["pool"] is None,
              f"the console's own row: {me}")
        local_ports = sorted(str(c.info.port) for c in clients)  # sanity: libpq sees the mux port
        check(all(p == str(mux.port) for p in local_ports), "clients connected through sqlmux")

        servers = con.rows("SHOW SERVERS")
        pids = sorted(int(r["pid"]) for r in servers)
        check_eq(pids, app_pids(pg), "SHOW SERVERS pids vs pg_stat_activity")
        active = [r for r in servers if r["state"] == "active"]
        check_eq([int(r["pid"]) for r in active], [busy_pid], "the active server connection")
        active_client = [r for r in app if r["state"] == "active"][0]
        check_eq(active[0]["client_id"], active_client["id"], "SHOW SERVERS client_id links SHOW CLIENTS id")
        check(all(r["address"] == f"127.0.0.1:{pg.port}" for r in servers), f"server addresses {servers}")

        pools = con.rows("SHOW POOLS")
        check_eq(len(pools), 1, f"SHOW POOLS rows {pools}")
        p = pools[0]
        check_eq((p["pool"], p["user"], p["mode"], p["size"]), ("appdb", "app", "transaction", "10"), "pool row")
        check_eq(int(p["servers_total"]), len(servers), "servers_total")
        check_eq(int(p["servers_active"]), 1, "servers_active")
        check_eq(int(p["servers_idle"]), len(servers) - 1, "servers_idle")
        check_eq((p["clients_active"], p["clients_idle"], p["clients_waiting"]), ("1", "2", "0"), "client counts")
        check_eq((p["paused"], p["status"]), ("no", "active"), "paused/status")

        backends = con.rows("SHOW BACKENDS")
        check_eq([(b["pool"], b["address"], b["role"], b["state"], b["health"]) for b in backends],
                 [("appdb", f"127.0.0.1:{pg.port}", "primary", "enabled", "unchecked")], "SHOW BACKENDS")

        cfg = {r["key"]: r["value"] for r in con.rows("SHOW CONFIG")}
        check_eq(cfg.get("pool[0].size"), "10", "SHOW CONFIG pool size")
        check_eq(cfg.get("admin.users"), "admin", "SHOW CONFIG admin.users")
        check_eq(cfg.get("user[0].password"), "********", "user password masked")
        check_eq(cfg.get("pool[0].password"), "********", "pool password masked")
        check(not any(ADMIN_PASS in v or "apppass" in v for v in cfg.values()), "a password leaked in SHOW CONFIG")

        with clients[0].cursor() as cur:
            cur.execute("COMMIT")
        for c in clients:
            c.close()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if not [r for r in con.rows("SHOW CLIENTS") if r["user"] == "app"]:
                break
            time.sleep(0.05)
        check_eq([r for r in con.rows("SHOW CLIENTS") if r["user"] == "app"], [], "clients gone after close")

    with_console(pg, body)


def case_login_rules_and_errors(pg):
    require_sqlmux("admin console")

    def body(mux, con):
        # wrong database
        try:
            psycopg2.connect(con.dsn(db="appdb"))
            fail("admin console accepted database appdb")
        except psycopg2.OperationalError as e:
            check("does not exist" in str(e) and "sqlmux" in str(e), f"wrong-db message: {e}")
        r = RawPg("127.0.0.1", con.port)
        try:
            r.startup("admin", "postgres", ADMIN_PASS)
            fail("wrong db accepted")
        except PgError as e:
            check_eq(e.sqlstate, "3D000", "wrong database SQLSTATE")
        # a valid user that is not in [admin] users
        r = RawPg("127.0.0.1", con.port)
        try:
            r.startup("app", "sqlmux", "apppass")
            fail("non-admin user accepted")
        except PgError as e:
            check_eq(e.sqlstate, "28000", "non-admin user SQLSTATE")
            check("not allowed" in e.message, e.message)
        # wrong password
        r = RawPg("127.0.0.1", con.port)
        try:
            r.startup("admin", "sqlmux", "nope")
            fail("wrong password accepted")
        except PgError as e:
            check_eq(e.sqlstate, "28P01", "wrong password SQLSTATE")
        # the console is not a pool on the normal port
        r = RawPg(mux.host, mux.port)
        try:
            r.startup("admin", "sqlmux", ADMIN_PASS)
            fail("database sqlmux served on the pooling listener")
        except PgError as e:
            check_eq(e.sqlstate, "3D000", "sqlmux db on the pool port")

        raw = con.raw()
        res = raw.query("SHOW NONSENSE")
        check_eq(res.sqlstate, "42601", "unknown command SQLSTATE")
        for known in ("SHOW POOLS", "SHOW CLIENTS", "PAUSE", "KILL_CLIENT", "RELOAD", "SHUTDOWN"):
            check(known in res.error["M"], f"{known} not listed in {res.error['M']!r}")
        check_eq(res.status, "I", "ready after the error")
        res = raw.query("PAUSE a b")
        check_eq(res.sqlstate, "42601", "too many arguments")
        res = raw.query("KILL_CLIENT abc")
        check_eq(res.sqlstate, "42601", "non-numeric id")
        res = raw.query("SHOW STATS")
        check_eq(res.sqlstate, "0A000", "SHOW STATS without [metrics]")
        check("[metrics]" in res.error["M"], res.error["M"])
        res = raw.query("")
        check_eq((res.error, res.status), (None, "I"), "empty query")
        res = raw.query("  sHoW   vErSiOn ;; ")
        check(res.error is None and res.rows and res.rows[0][0].startswith("sqlmux"), "case-insensitive command")
        res = raw.query("RESUME nosuchpool")
        check_eq(res.sqlstate, "42704", "unknown pool")
        # the extended protocol is refused, then the session goes on
        raw.send_msg(b"P", b"\0SHOW POOLS\0\0\0")
        raw.send_msg(b"B", b"\0\0\0\0\0\0\0\0")
        raw.send_msg(b"E", b"\0\0\0\0\0")
        raw.send_msg(b"S")
        res = raw.read_result()
        check_eq(res.sqlstate, "0A000", "extended protocol SQLSTATE")
        check("simple query" in res.error["M"], res.error["M"])
        check_eq(len(raw.query_ok("SHOW POOLS").rows), 1, "SHOW POOLS after the refused extended query")
        raw.terminate()

        # asyncpg speaks the extended protocol: a clear error, no crash
        import asyncio
        import asyncpg

        async def try_asyncpg():
            conn = await asyncpg.connect(host="127.0.0.1", port=con.port, user="admin", password=ADMIN_PASS,
                                         database="sqlmux")
            try:
                await conn.fetch("SHOW POOLS")
            finally:
                await conn.close()
        try:
            asyncio.run(try_asyncpg())
            fail("asyncpg's extended-protocol query succeeded")
        except asyncpg.PostgresError as e:
            check_eq(e.sqlstate, "0A000", f"asyncpg error {e}")

        # garbage: an absurd message length, a bogus type, random bytes at startup
        raw = con.raw()
        raw.send(b"Q" + struct.pack("!I", 0x7FFFFFF0))
        err, closed = raw.read_until_error_or_eof(5)
        check(closed and err and err["C"] == "08P01", f"huge message: {err}, closed={closed}")
        raw = con.raw()
        raw.send_msg(b"z", b"junk")
        err, closed = raw.read_until_error_or_eof(5)
        check(closed and err and err["C"] == "08P01", f"bogus type: {err}, closed={closed}")
        s = socket.create_connection(("127.0.0.1", con.port))
        s.sendall(bytes(range(256)) * 8)
        s.settimeout(5)
        try:
            while s.recv(4096):
                pass
        except (ConnectionResetError, socket.timeout):
            pass
        s.close()
        check(mux.running(), "sqlmux died from garbage on the admin port")
        check_eq(con.run("SHOW VERSION"), "SHOW", "console works after garbage")

    with_console(pg, body)


def case_pause_waits_for_running_transaction_until_resume(pg):
    require_sqlmux("PAUSE/RESUME")

    def body(mux, con):
        a = mux.connect(autocommit=True)
        b = mux.connect(autocommit=True)
        with a.cursor() as cur:
            cur.execute("BEGIN; SELECT 1")
        paused = threading.Event()
        pause_err = []

        def do_pause():
            try:
                con.run("PAUSE appdb")
            except Exception as e:  # noqa: BLE001
                pause_err.append(e)
            paused.set()

        threading.Thread(target=do_pause, daemon=True).start()
        check(not paused.wait(1.0), "PAUSE returned while a transaction was running")
        with a.cursor() as cur:  # the running transaction may go on and finish
            cur.execute("SELECT 2")
            check_eq(cur.fetchone()[0], 2, "query inside the running transaction")
            cur.execute("COMMIT")
        check(paused.wait(5), "PAUSE did not return after the transaction finished")
        check(not pause_err, f"PAUSE failed: {pause_err}")
        check_eq(con.rows("SHOW POOLS")[0]["paused"], "yes", "SHOW POOLS paused")

        done = threading.Event()
        result = []

        def new_tx():
            with b.cursor() as cur:
                cur.execute("SELECT 42")
                result.append(cur.fetchone()[0])
            done.set()

        threading.Thread(target=new_tx, daemon=True).start()
        check(not done.wait(1.0), "a new transaction ran while the pool was paused")
        waiting = [r for r in con.rows("SHOW CLIENTS") if r["state"] == "waiting"]
        check_eq(len(waiting), 1, "one client waiting while paused")
        check_eq(con.run("RESUME appdb"), "RESUME", "RESUME tag")
        check(done.wait(5), "the waiting transaction did not run after RESUME")
        check_eq(result, [42], "result after RESUME")
        check_eq(con.rows("SHOW POOLS")[0]["paused"], "no", "SHOW POOLS after RESUME")
        # PAUSE without a pool, nothing running: returns at once
        with timed("PAUSE with nothing running", 3):
            check_eq(con.run("PAUSE"), "PAUSE", "PAUSE tag")
        check_eq(con.run("RESUME"), "RESUME", "RESUME tag")
        a.close()
        b.close()

    with_console(pg, body)


def case_kill_client_and_kill_pool(pg):
    require_sqlmux("KILL")

    def body(mux, con):
        victim = mux.raw()
        victim.query_ok("SELECT 1")
        other = mux.raw()
        other.query_ok("SELECT 1")
        ids = [r["id"] for r in con.rows("SHOW CLIENTS") if r["user"] == "app"]
        check_eq(len(ids), 2, "two app clients")
        victim_id = min(ids, key=int)  # connected first
        check_eq(con.run(f"KILL_CLIENT {victim_id}"), "KILL_CLIENT", "KILL_CLIENT tag")
        err, closed = victim.read_until_error_or_eof(5)
        check(closed, "killed client not closed")
        check(err is not None and err["C"] == "57P01", f"killed client's error: {err}")
        other.query_ok("SELECT 2")  # the other one is untouched
        raw = con.raw()
        res = raw.query("KILL_CLIENT 987654321")
        check_eq(res.sqlstate, "42704", "KILL_CLIENT unknown id")
        raw.terminate()

        third = mux.raw()
        third.query_ok("SELECT 3")
        check_eq(con.run("KILL appdb"), "KILL", "KILL tag")
        for name, c in (("other", other), ("third", third)):
            err, closed = c.read_until_error_or_eof(5)
            check(closed and err is not None and err["C"] == "57P01", f"{name} after KILL: {err} closed={closed}")
        deadline = time.monotonic() + 5
        while app_pids(pg) and time.monotonic() < deadline:
            time.sleep(0.05)
        check_eq(app_pids(pg), [], "server connections closed by KILL")
        check_eq(con.rows("SHOW SERVERS"), [], "SHOW SERVERS after KILL")

    with_console(pg, body)


def case_reconnect_changes_backend_pids(pg):
    require_sqlmux("RECONNECT")

    def body(mux, con):
        c = mux.connect(autocommit=True)
        cur = c.cursor()
        cur.execute("SELECT pg_backend_pid()")
        before = cur.fetchone()[0]
        check_eq(con.run("RECONNECT appdb"), "RECONNECT", "RECONNECT tag")
        cur.execute("SELECT pg_backend_pid()")
        after = cur.fetchone()[0]
        check(after != before, f"backend pid unchanged after RECONNECT ({before})")
        check(before not in app_pids(pg), "the old server connection is still open")
        # a transaction running across RECONNECT finishes, then its connection closes
        cur.execute("BEGIN; SELECT pg_backend_pid()")
        busy = cur.fetchone()[0]
        check_eq(con.run("RECONNECT"), "RECONNECT", "RECONNECT (all pools)")
        cur.execute("SELECT pg_backend_pid()")
        check_eq(cur.fetchone()[0], busy, "same connection inside the transaction")
        cur.execute("COMMIT")
        cur.execute("SELECT pg_backend_pid()")
        check(cur.fetchone()[0] != busy, "connection reused after RECONNECT and COMMIT")
        c.close()

    with_console(pg, body, size=1)


def case_wait_close_waits_for_retired_connections(pg):
    """WAIT_CLOSE returns once the server connections RECONNECT retired are
    closed: not while a transaction still holds one, at once after its
    COMMIT released it (and at once with nothing to wait for)."""
    require_sqlmux("WAIT_CLOSE")

    def body(mux, con):
        check_eq(con.run("WAIT_CLOSE"), "WAIT_CLOSE", "WAIT_CLOSE with nothing retired")
        c = mux.connect(autocommit=True)
        cur = c.cursor()
        cur.execute("BEGIN; SELECT pg_backend_pid()")
        busy = cur.fetchone()[0]
        check_eq(con.run("RECONNECT postgres:appdb"), "RECONNECT", "RECONNECT")
        done = []
        t = threading.Thread(target=lambda: done.append((con.run("WAIT_CLOSE appdb"), time.monotonic())))
        t.start()
        time.sleep(0.5)
        check_eq(done, [], "WAIT_CLOSE returned while a retired connection is in a transaction")
        check(busy in app_pids(pg), "the busy connection is still open")
        committed = time.monotonic()
        cur.execute("COMMIT")
        t.join(10)
        check(not t.is_alive() and done and done[0][0] == "WAIT_CLOSE", f"WAIT_CLOSE after COMMIT: {done}")
        check(done[0][1] >= committed, "WAIT_CLOSE returned only after the COMMIT")
        check(busy not in app_pids(pg), "the retired connection is closed when WAIT_CLOSE returns")
        expect_error(lambda: con.run("WAIT_CLOSE nosuch"), ["42704"], "no pool named", "WAIT_CLOSE nosuch")
        c.close()

    with_console(pg, body, size=1)


def case_pgbouncer_shows(pg):
    """The console answers as database "pgbouncer" too; SHOW DATABASES,
    SHOW LISTS and SHOW HELP as PgBouncer 1.18 has them, with real values."""
    require_sqlmux("console")

    def body(mux, con):
        c = psycopg2.connect(con.dsn(db="pgbouncer"))
        c.autocommit = True
        held = mux.connect(autocommit=True)
        hcur = held.cursor()
        hcur.execute("BEGIN; SELECT 1")
        with c.cursor() as cur:
            cur.execute("SHOW DATABASES")
            rows = [dict(zip([d.name for d in cur.description], r)) for r in cur.fetchall()]
            check_eq(len(rows), 1, f"SHOW DATABASES rows {rows}")
            r = rows[0]
            check_eq((r["name"], r["host"], r["port"], r["database"], r["force_user"], r["pool_size"],
                      r["min_pool_size"], r["reserve_pool"], r["pool_mode"], r["max_connections"],
                      r["current_connections"], r["paused"], r["disabled"], r["protocol"]),
                     ("appdb", "127.0.0.1", pg.port, "appdb", "app", 10, 0, 0, "transaction", 0, 1, 0, 0,
                      "postgres"), "SHOW DATABASES row")
            cur.execute("SHOW LISTS")
            check_eq([d.name for d in cur.description], ["list", "items"], "SHOW LISTS columns")
            lists = dict(cur.fetchall())
            check_eq(list(lists), ["databases", "users", "pools", "free_clients", "used_clients",
                                   "login_clients", "free_servers", "used_servers", "dns_names", "dns_zones",
                                   "dns_queries", "dns_pending"], "SHOW LISTS rows")
            check_eq((lists["databases"], lists["users"], lists["pools"], lists["used_clients"],
                      lists["used_servers"]), (1, 2, 1, 2, 1), f"SHOW LISTS values {lists}")
            hcur.execute("COMMIT")  # PAUSE waits for running transactions
            cur.execute("PAUSE appdb")
            cur.execute("SHOW DATABASES")
            check_eq(cur.fetchone()[11], 1, "SHOW DATABASES paused after PAUSE")
            cur.execute("RESUME appdb")
            cur.execute(f"DISABLE 127.0.0.1:{pg.port}")
            cur.execute("SHOW DATABASES")
            check_eq(cur.fetchone()[12], 1, "SHOW DATABASES disabled when every host is")
            cur.execute(f"ENABLE 127.0.0.1:{pg.port}")
            cur.execute("SHOW CONFIG")
            check_eq([d.name for d in cur.description], ["key", "value", "default", "changeable"],
                     "SHOW CONFIG columns")
            cfg = {r[0]: r[1:] for r in cur.fetchall()}
            check_eq(cfg.get("pool[0].size"), ("10", "20", "yes"), "SHOW CONFIG pool[0].size")
            check_eq(cfg.get("pool[0].mode"), ("transaction", "transaction", "no"), "SHOW CONFIG pool[0].mode")
            check_eq(cfg.get("listener[0].client_tls"), ("disable", "disable", "no"), "SHOW CONFIG client_tls")
            check_eq(cfg.get("admin.listen"), (f"127.0.0.1:{con.port}", None, "no"), "SHOW CONFIG admin.listen")
            c.notices.clear()
            cur.execute("SHOW HELP")
            check_eq(cur.statusmessage, "SHOW", "SHOW HELP tag")
            check(len(c.notices) == 1 and "Console usage" in c.notices[0] and "WAIT_CLOSE [pool]" in c.notices[0]
                  and "SHOW LISTS" in c.notices[0], f"SHOW HELP notice {c.notices}")
        held.close()
        c.close()

    with_console(pg, body)


def case_pgbouncer_pools_waiting_and_maxwait(pg):
    """SHOW POOLS' PgBouncer columns while a client waits: a pool of one,
    one client holds it in a transaction, another waits; cl_waiting,
    maxwait (seconds) and sv_active show it, and clear once it is served."""
    require_sqlmux("console")

    def body(mux, con):
        def pools():
            c = psycopg2.connect(con.dsn(db="pgbouncer"))
            c.autocommit = True
            try:
                with c.cursor() as cur:
                    cur.execute("SHOW POOLS")
                    return dict(zip([d.name for d in cur.description], cur.fetchone()))
            finally:
                c.close()

        a = mux.connect(autocommit=True)
        b = mux.connect(autocommit=True)
        acur = a.cursor()
        acur.execute("BEGIN; SELECT 1")
        served = []

        def waiter():
            with b.cursor() as cur:
                cur.execute("SELECT 2")
                served.append(cur.fetchone()[0])

        t = threading.Thread(target=waiter)
        t.start()
        time.sleep(1.3)
        p = pools()
        check_eq((p["cl_active"], p["cl_waiting"], p["sv_active"], p["sv_idle"], p["maxwait"]),
                 (1, 1, 1, 0, 1), f"SHOW POOLS while one client waits: {p}")
        check(0 <= p["maxwait_us"] < 1_000_000, f"maxwait_us is the microseconds part: {p}")
        acur.execute("COMMIT")
        t.join(10)
        check_eq(served, [2], "the waiting client is served after COMMIT")
        p = pools()
        check_eq((p["cl_active"], p["cl_waiting"], p["maxwait"], p["maxwait_us"]), (2, 0, 0, 0),
                 f"SHOW POOLS after: {p}")
        a.close()
        b.close()

    with_console(pg, body, size=1)


def case_disable_enable_host(pg):
    require_sqlmux("DISABLE/ENABLE")

    def body(mux, con):
        addr = f"127.0.0.1:{pg.port}"
        r = mux.raw()
        r.query_ok("SELECT 1")
        check_eq(con.run(f"DISABLE {addr}"), "DISABLE", "DISABLE tag")
        check_eq([b["state"] for b in con.rows("SHOW BACKENDS")], ["disabled"], "SHOW BACKENDS state")
        con.run("RECONNECT appdb")  # no idle connection left to reuse
        try:
            res = r.query("SELECT 1")
        except ConnectionClosed:
            res = r.last_result
        check(res.error is not None and res.error["C"] == "08001" and "disabled" in res.error["M"],
              f"query with the host disabled: {res.error}")
        r2 = mux.raw()  # login needs no server connection once the pool met its server
        try:
            res = r2.query("SELECT 1")
        except ConnectionClosed:
            res = r2.last_result
        check(res.error is not None and res.error["C"] == "08001", f"new client's query: {res.error}")
        check_eq(con.run(f"ENABLE '{addr}'"), "ENABLE", "ENABLE tag")
        mux.assert_serving(what="served again after ENABLE")
        raw = con.raw()
        check_eq(raw.query("DISABLE 10.9.9.9:1").sqlstate, "42704", "DISABLE of an unknown address")
        raw.terminate()

    with_console(pg, body)


def case_show_stats_counts_traffic(pg):
    require_sqlmux("SHOW STATS")

    def body(mux, con):
        c = mux.connect(autocommit=True)
        cur = c.cursor()
        cur.execute("SELECT 1")

        def stats():
            rows = con.rows("SHOW STATS")
            check_eq([r["pool"] for r in rows], ["appdb"], "SHOW STATS pools")
            return {k: (int(v) if k not in ("database", "pool", "protocol", "user") else v)
                    for k, v in rows[0].items()}

        s1 = stats()
        for i in range(3):
            cur.execute("SELECT repeat('x', 1000)")
            cur.fetchone()
        s2 = stats()
        check_eq(s2["transactions"] - s1["transactions"], 3, f"transactions counted ({s1} -> {s2})")
        check_eq(s2["queries"] - s1["queries"], 3, "queries counted")
        check(s2["client_bytes_out"] - s1["client_bytes_out"] >= 3000, f"bytes to the client ({s1} -> {s2})")
        check(s2["client_bytes_in"] > s1["client_bytes_in"], "bytes from the client")
        check(s2["server_bytes_in"] - s1["server_bytes_in"] >= 3000, "bytes from the server")
        check(s2["waits"] >= 3 and s2["transaction_time_us"] > 0 and s2["query_time_us"] > 0,
              f"waits and times: {s2}")
        # PgBouncer's columns: the same counters (received/sent are the client side's)
        check_eq(s2["total_xact_count"] - s1["total_xact_count"], 3, "total_xact_count")
        check_eq(s2["total_query_count"], s2["queries"], "total_query_count")
        check_eq(s2["total_requests"], s2["queries"], "total_requests (PgBouncer < 1.8)")
        check_eq((s2["total_received"], s2["total_sent"]), (s2["client_bytes_in"], s2["client_bytes_out"]),
                 "total_received/total_sent")
        check_eq((s2["total_xact_time"], s2["total_query_time"], s2["total_wait_time"]),
                 (s2["transaction_time_us"], s2["query_time_us"], s2["wait_time_us"]), "total times")
        check_eq(s2["avg_query_time"], s2["query_time_us"] // s2["queries"], "avg_query_time (µs per query)")
        check_eq(s2["avg_xact_time"], s2["transaction_time_us"] // s2["transactions"], "avg_xact_time")
        check_eq(s2["avg_wait_time"], s2["wait_time_us"] // s2["waits"], "avg_wait_time (µs per wait)")
        check(s2["avg_query_count"] <= s2["queries"] and s2["avg_sent"] <= s2["client_bytes_out"],
              f"per-second averages since the pool started: {s2}")
        c.close()

    with_console(pg, body, metrics=True)


def case_console_names_pools_by_protocol(pg):
    """Issue 18: a postgres and a mysql pool both named appdb. A bare name
    that both use is refused; protocol:name acts on that pool only (PAUSE,
    RESUME, KILL); every SHOW has a protocol column; [health.<protocol>]
    gives each protocol's hosts their own check login."""
    require_sqlmux("console")
    from mysql_harness import MariaDbServer

    def body(mux, con):
        pools = sorted((r["pool"], r["protocol"]) for r in con.rows("SHOW POOLS"))
        check_eq(pools, [("appdb", "mysql"), ("appdb", "postgres")], "SHOW POOLS rows")
        raw = con.raw()
        for verb in ("PAUSE appdb", "RESUME appdb", "KILL appdb", "RECONNECT appdb"):
            res = raw.query(verb)
            check_eq(res.sqlstate, "42P09", f"{verb} with a name both protocols use")
            check("mysql:appdb" in res.error["M"] and "postgres:appdb" in res.error["M"],
                  f"{verb} error names both: {res.error}")
        check_eq(raw.query("PAUSE sqlite:appdb").sqlstate, "42704", "unknown protocol prefix")
        raw.terminate()
        check(all(r["paused"] == "no" for r in con.rows("SHOW POOLS")), "nothing paused by the refusals")

        pgc = mux.connect(autocommit=True)
        myc = mux.my_connect(autocommit=True)
        check_eq(con.run("PAUSE mysql:appdb"), "PAUSE", "PAUSE mysql:appdb")
        paused = {r["protocol"]: r["paused"] for r in con.rows("SHOW POOLS")}
        check_eq(paused, {"postgres": "no", "mysql": "yes"}, "only the mysql pool paused")
        with pgc.cursor() as cur:
            cur.execute("SELECT 7")
            check_eq(cur.fetchone()[0], 7, "postgres pool serves while mysql:appdb is paused")
        done = threading.Event()
        got = []

        def my_query():
            with myc.cursor() as cur:
                cur.execute("SELECT 8")
                got.append(cur.fetchone()[0])
            done.set()

        threading.Thread(target=my_query, daemon=True).start()
        check(not done.wait(1.0), "a mysql query ran while mysql:appdb was paused")
        check_eq(con.run("RESUME mysql:appdb"), "RESUME", "RESUME mysql:appdb")
        check(done.wait(5), "the waiting mysql query did not run after RESUME")
        check_eq(got, [8], "mysql result after RESUME")

        clients = [r for r in con.rows("SHOW CLIENTS") if r["user"] == "app"]
        check_eq(sorted(r["protocol"] for r in clients), ["mysql", "postgres"], "SHOW CLIENTS protocol")
        servers = {r["protocol"] for r in con.rows("SHOW SERVERS")}
        check_eq(servers, {"mysql", "postgres"}, "SHOW SERVERS protocol")
        stats = sorted((r["pool"], r["protocol"]) for r in con.rows("SHOW STATS"))
        check_eq(stats, [("appdb", "mysql"), ("appdb", "postgres")], "SHOW STATS rows")

        # Each protocol's host is checked with its own login: both come up.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            backends = {r["protocol"]: r for r in con.rows("SHOW BACKENDS")}
            if all(b["health"] == "up" for b in backends.values()):
                break
            time.sleep(0.1)
        check_eq(sorted(backends), ["mysql", "postgres"], "SHOW BACKENDS protocol")
        for proto, b in backends.items():
            check_eq(b["health"], "up", f"{proto} host health ({b['last_error']})")
        cfg = {r["key"]: r["value"] for r in con.rows("SHOW CONFIG")}
        check_eq(cfg.get("health.postgres.database"), "postgres", "SHOW CONFIG health.postgres.database")

        check_eq(con.run("KILL postgres:appdb"), "KILL", "KILL postgres:appdb")
        try:
            with pgc.cursor() as cur:
                cur.execute("SELECT 1")
            fail("the postgres client survived KILL postgres:appdb")
        except psycopg2.Error:
            pass
        with myc.cursor() as cur:
            cur.execute("SELECT 9")
            check_eq(cur.fetchone()[0], 9, "the mysql client survives KILL postgres:appdb")
        myc.close()
        kill_line = [l for l in mux.log_text().splitlines() if "runs KILL" in l]
        check(kill_line and "postgres:appdb" in kill_line[-1], f"KILL logged with the protocol: {kill_line}")

    with MariaDbServer() as my:
        with_console(pg, body, metrics=True, my=my,
                     extra={"health": {"interval": "200ms", "timeout": "2s", "user": "app", "password": "apppass",
                                       "postgres": {"database": "postgres"}}})


def case_check_config_refuses_a_health_database_for_both_protocols(pg):
    """Issue 18: [health] database = "postgres" with a mysql pool marked the
    MySQL host down; --check-config now refuses it and names the line."""
    require_sqlmux("--check-config")
    text = to_toml({
        "listener": [{"protocol": "postgres", "listen": "127.0.0.1:1"},
                     {"protocol": "mysql", "listen": "127.0.0.1:2"}],
        "pool": [{"name": "appdb", "user": "app", "backends": [{"address": "127.0.0.1:5432"}]},
                 {"name": "appdb", "protocol": "mysql", "user": "app",
                  "backends": [{"address": "127.0.0.1:3306"}]}],
        "health": {"user": "app", "database": "postgres"},
    })
    rc, out, path = check_config(text)
    check(rc != 0, f"--check-config accepted a shared health.database: {out}")
    check("health.database: applies to postgres and mysql hosts" in out, f"message: {out}")
    check(f"{os.path.basename(path)}:" in out, f"file:line in {out}")


def case_shutdown_exits_zero(pg):
    require_sqlmux("SHUTDOWN")
    port = free_port()

    def tweak(cfg):
        cfg["user"].append({"name": "admin", "password": ADMIN_PASS})
        cfg["admin"] = {"listen": f"127.0.0.1:{port}", "users": ["admin"]}

    with Sqlmux(pg, tweak=tweak) as mux:
        con = Console(mux, port)
        app = mux.raw()
        app.query_ok("SELECT 1")
        raw = con.raw()
        res = raw.query("SHUTDOWN")
        check_eq(res.tags, ["SHUTDOWN"], "SHUTDOWN tag")
        rc = mux.wait_exit(10)
        check_eq(rc, 0, "exit code after SHUTDOWN")
        check("SHUTDOWN from the admin console" in mux.log_text(), "shutdown not logged")


def case_passwords_from_file_and_env(pg):
    """password_file / password_env (issue 15): the [[user]] passwords from
    files (mode 0600), the pool's from the environment. Logins work, SHOW
    CONFIG masks them, and a RELOAD with a world-readable password file is
    refused with its file:line:col and changes nothing."""
    require_sqlmux("password_file and password_env")
    import tempfile
    d = tempfile.mkdtemp(prefix="smx-it-secret-")
    files = {}
    for name, secret in (("app", "apppass"), ("admin", ADMIN_PASS)):
        files[name] = os.path.join(d, name)
        fd = os.open(files[name], os.O_WRONLY | os.O_CREAT, 0o600)
        os.write(fd, (secret + "\n").encode())
        os.close(fd)

    def tweak(cfg):
        for u in cfg["user"]:
            if u["name"] in files:
                del u["password"]
                u["password_file"] = files[u["name"]]
        for p in cfg["pool"]:
            if "password" in p:
                del p["password"]
                p["password_env"] = "SQLMUX_IT_POOL_PASSWORD"

    def body(mux, con):
        text = open(mux.config_path).read()
        check("apppass" not in text and ADMIN_PASS not in text, "a password is still in the config file")
        mux.assert_serving(what="a login checked against a password_file")
        cfg = {r["key"]: r["value"] for r in con.rows("SHOW CONFIG")}
        check_eq(cfg.get("user[0].password"), "********", "password_file user masked")
        check_eq(cfg.get("pool[0].password"), "********", "password_env pool password masked")
        check(not any(ADMIN_PASS in v or "apppass" in v for v in cfg.values()), "a password leaked in SHOW CONFIG")
        os.chmod(files["app"], 0o644)
        try:
            con.run("RELOAD")
            fail("RELOAD accepted a world-readable password file")
        except psycopg2.Error as e:
            check("is readable by every user (mode 0644)" in (e.diag.message_detail or ""),
                  f"RELOAD error detail: {e.diag.message_detail}")
            check(":" in (e.diag.message_detail or "") and "user[0].password_file" in e.diag.message_detail,
                  f"RELOAD error names the key: {e.diag.message_detail}")
        mux.assert_serving(what="the old password after the refused RELOAD")
        log("passwords from a 0600 file and the environment; a 0644 file refused on RELOAD")

    try:
        with_console(pg, body, env={"SQLMUX_IT_POOL_PASSWORD": "apppass"}, tweak_extra=tweak)
    finally:
        for f in files.values():
            os.remove(f)
        os.rmdir(d)


if __name__ == "__main__":
    run_cases(__file__, [
        case_psql_and_shows_match_reality,
        case_login_rules_and_errors,
        case_pause_waits_for_running_transaction_until_resume,
        case_kill_client_and_kill_pool,
        case_reconnect_changes_backend_pids,
        case_wait_close_waits_for_retired_connections,
        case_pgbouncer_shows,
        case_pgbouncer_pools_waiting_and_maxwait,
        case_disable_enable_host,
        case_show_stats_counts_traffic,
        case_shutdown_exits_zero,
        case_console_names_pools_by_protocol,
        case_check_config_refuses_a_health_database_for_both_protocols,
        case_passwords_from_file_and_env,
    ], timeout=200)
