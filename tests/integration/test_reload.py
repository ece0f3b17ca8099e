#!/usr/bin/python3
"""Configuration reload (SIGHUP and the console's RELOAD): new pools and
sizes apply without dropping anyone, a removed pool refuses new clients but
serves its existing ones until they leave, new backend addresses are used
for new server connections, listener changes are logged as needing a
restart, a session pool's session_reconnect applies to connected clients,
and an invalid file changes nothing."""

import copy
import signal
import threading
import time

import psycopg2

from harness import *

ADMIN_PASS = "adminpass"


def admin_tweak(port):
    def tweak(cfg):
        cfg["user"].append({"name": "admin", "password": ADMIN_PASS})
        cfg["admin"] = {"listen": f"127.0.0.1:{port}", "users": ["admin"]}
    return tweak


def console(port):
    c = psycopg2.connect(f"host=127.0.0.1 port={port} dbname=sqlmux user=admin password={ADMIN_PASS} "
                         "connect_timeout=10")
    c.autocommit = True
    return c


def show(port, what):
    c = console(port)
    try:
        with c.cursor() as cur:
            cur.execute(f"SHOW {what}")
            cols = [d[0] for d in cur.description]
            return [dict(zip(cols, r)) for r in cur.fetchall()]
    finally:
        c.close()


def write_config(mux, cfg):
    with open(mux.config_path, "w") as f:
        f.write(to_toml(cfg))


def reload_lines(mux):
    return [l for l in mux.log_text().splitlines() if "reload: " in l]


def sighup_and_wait(mux, expect: str):
    """SIGHUP, then waits for a reload log line containing `expect`."""
    before = len(reload_lines(mux))
    mux.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        new = reload_lines(mux)[before:]
        if any(expect in l for l in new):
            return new
        time.sleep(0.05)
    fail(f"no reload log line with {expect!r} after SIGHUP; got {reload_lines(mux)[before:]}")


class Looper:
    """A client running queries in a loop on its own connection."""

    def __init__(self, mux, db="appdb"):
        self.conn = mux.connect(db=db, autocommit=True)
        self.errors = []
        self.count = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        cur = self.conn.cursor()
        while not self.stop.is_set():
            try:
                cur.execute("SELECT 1")
                cur.fetchone()
                self.count += 1
            except Exception as e:  # noqa: BLE001
                self.errors.append(e)
                return

    def finish(self, what):
        n = self.count
        time.sleep(0.3)
        check(self.count > n, f"{what}: the looping client stopped making progress")
        self.stop.set()
        self.thread.join(5)
        check_eq(self.errors, [], f"{what}: errors seen by the client looping across the reload")
        self.conn.close()


def concurrent_transactions(mux, n, timeout):
    """Opens n clients each inside a transaction; returns their backend pids
    (None for those that got no server connection within `timeout`)."""
    conns = [mux.connect(autocommit=True) for _ in range(n)]
    pids = [None] * n

    def one(i):
        with conns[i].cursor() as cur:
            cur.execute("BEGIN; SELECT pg_backend_pid()")
            pids[i] = cur.fetchone()[0]

    threads = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout)
    snapshot = list(pids)
    # End the served transactions; the waiting ones are served then and end too.
    done = set()
    deadline = time.monotonic() + 20
    while len(done) < n and time.monotonic() < deadline:
        for i in range(n):
            if i not in done and not threads[i].is_alive():
                with conns[i].cursor() as cur:  # autocommit: rollback() would send nothing
                    cur.execute("ROLLBACK")
                done.add(i)
        time.sleep(0.02)
    check_eq(len(done), n, "every transaction ran once slots were free")
    for c in conns:
        c.close()
    return snapshot


def case_new_pool_and_larger_size_without_dropping_clients(pg):
    require_sqlmux("reload")
    aport = free_port()
    with Sqlmux(pg, size=2, tweak=admin_tweak(aport)) as mux:
        pids = concurrent_transactions(mux, 3, 1.5)
        check_eq(sum(p is not None for p in pids), 2, f"size 2 before the reload: transactions served {pids}")
        loop = Looper(mux)
        time.sleep(0.2)
        cfg = copy.deepcopy(mux.cfg)
        cfg["pool"][0]["size"] = 5
        extra = copy.deepcopy(cfg["pool"][0])
        extra["name"] = "extra"
        cfg["pool"].append(extra)
        write_config(mux, cfg)
        lines = sighup_and_wait(mux, "pools +postgres:extra")
        check(any("pool ~postgres:appdb applied(size)" in l for l in lines), f"summary line: {lines}")
        loop.finish("SIGHUP")
        sizes = {p["pool"]: p["size"] for p in show(aport, "POOLS")}
        check_eq(sizes.get("appdb"), "5", f"SHOW POOLS size after reload ({sizes})")
        pids = concurrent_transactions(mux, 4, 5)
        check(all(p is not None for p in pids) and len(set(pids)) == 4,
              f"4 concurrent transactions with size 5: {pids}")
        c = mux.connect(db="extra", autocommit=True)
        with c.cursor() as cur:
            cur.execute("SELECT current_database()")
            check_eq(cur.fetchone()[0], "appdb", "the new pool serves")
        c.close()
        check("extra" in [p["pool"] for p in show(aport, "POOLS")], "SHOW POOLS lists the new pool")
        cfgrows = {r["key"]: r["value"] for r in show(aport, "CONFIG")}
        check_eq(cfgrows.get("pool[1].name"), "extra", "SHOW CONFIG shows the reloaded file")

        # smaller again: the pool shrinks to 1 server connection
        cfg["pool"][0]["size"] = 1
        write_config(mux, cfg)
        sighup_and_wait(mux, "applied(size)")
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and pg.app_sessions() > 2:  # appdb: 1, extra: 1
            time.sleep(0.1)
        check(pg.app_sessions() <= 2, f"server connections after shrinking: {pg.app_sessions()}")
        pids = concurrent_transactions(mux, 2, 1.5)
        check_eq(sum(p is not None for p in pids), 1, f"size 1: transactions served {pids}")


def case_removed_pool_serves_existing_clients_until_they_leave(pg):
    require_sqlmux("reload")
    aport = free_port()

    def tweak(cfg):
        admin_tweak(aport)(cfg)
        old = copy.deepcopy(cfg["pool"][0])
        old["name"] = "old"
        cfg["pool"].append(old)

    with Sqlmux(pg, tweak=tweak) as mux:
        loop = Looper(mux, db="old")
        time.sleep(0.2)
        cfg = copy.deepcopy(mux.cfg)
        cfg["pool"] = [p for p in cfg["pool"] if p["name"] != "old"]
        write_config(mux, cfg)
        c = console(aport)
        with c.cursor() as cur:
            cur.execute("RELOAD")
            check_eq(cur.statusmessage, "RELOAD", "RELOAD tag")
        c.close()
        check(any("pools -postgres:old" in l for l in reload_lines(mux)), f"summary: {reload_lines(mux)}")
        status = {p["pool"]: p["status"] for p in show(aport, "POOLS")}
        check_eq(status.get("old"), "removed", f"SHOW POOLS status ({status})")
        try:
            mux.connect(db="old")
            fail("a new client got the removed pool")
        except psycopg2.OperationalError as e:
            check("does not exist" in str(e), f"new client of the removed pool: {e}")
        r = RawPg(mux.host, mux.port)
        try:
            r.startup("app", "old", "apppass")
            fail("removed pool accepted a login")
        except PgError as e:
            check_eq(e.sqlstate, "3D000", "removed pool SQLSTATE")
        time.sleep(0.5)
        loop.finish("pool removed under a running client")  # it kept working
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if not [s for s in show(aport, "SERVERS") if s["pool"] == "old"]:
                break
            time.sleep(0.1)
        check_eq([s for s in show(aport, "SERVERS") if s["pool"] == "old"], [],
                 "server connections of the removed pool after its last client left")
        mux.assert_serving()


def case_invalid_file_changes_nothing(pg):
    require_sqlmux("reload")
    aport = free_port()
    with Sqlmux(pg, size=3, tweak=admin_tweak(aport)) as mux:
        loop = Looper(mux)
        good = open(mux.config_path).read()
        lines = good.splitlines()
        i = lines.index("size = 3")
        lines[i] = 'size = "many"'
        with open(mux.config_path, "w") as f:
            f.write("\n".join(lines) + "\n")
        before = len(reload_lines(mux))
        mux.send_signal(signal.SIGHUP)
        want = f"{mux.config_path}:{i + 1}:"
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not any(want in l for l in reload_lines(mux)[before:]):
            time.sleep(0.05)
        new = reload_lines(mux)[before:]
        check(any(want in l and "pool[0].size" in l for l in new), f"error naming file:line and key: {new}")
        check(any("unchanged" in l for l in new), f"'unchanged' not logged: {new}")
        check_eq(show(aport, "POOLS")[0]["size"], "3", "size after the invalid reload")
        c = console(aport)
        try:
            with c.cursor() as cur:
                cur.execute("RELOAD")
            fail("RELOAD of an invalid file succeeded")
        except psycopg2.Error as e:
            check_eq(e.pgcode, "F0000", f"RELOAD error {e}")
            check(want in (e.diag.message_detail or ""), f"detail {e.diag.message_detail!r}")
        c.close()
        loop.finish("invalid reload")
        with open(mux.config_path, "w") as f:
            f.write(good)
        sighup_and_wait(mux, "no changes")


def case_backend_address_and_listener_changes(pg):
    require_sqlmux("reload")
    aport = free_port()
    with Sqlmux(pg, size=1, tweak=admin_tweak(aport)) as mux:
        c = mux.raw()
        c.query_ok("SELECT 1")
        cfg = copy.deepcopy(mux.cfg)
        dead = free_port()
        cfg["pool"][0]["backends"] = [{"address": f"127.0.0.1:{dead}"}]
        cfg["listener"][0]["listen"] = f"127.0.0.1:{free_port()}"
        write_config(mux, cfg)
        lines = sighup_and_wait(mux, "applied(backends)")
        check(any("listener changed; it needs a restart" in l for l in lines), f"listener change: {lines}")
        check_eq([b["address"] for b in show(aport, "BACKENDS")], [f"127.0.0.1:{dead}"], "SHOW BACKENDS")
        # The idle connection to the address no longer listed closes (as
        # PgBouncer closes a changed database's servers); the next
        # transaction connects to the new address.
        try:
            res = c.query("SELECT 2")
        except ConnectionClosed:
            res = c.last_result
        check(res.error is not None and res.error["C"] == "08001" and str(dead) in res.error["M"],
              f"new server connection goes to the new address: {res.error}")
        cfg["pool"][0]["backends"] = [{"address": f"127.0.0.1:{pg.port}"}]
        write_config(mux, cfg)
        sighup_and_wait(mux, "applied(backends)")
        mux.assert_serving(what="served on the old listener after the address came back")


def case_session_reconnect_applies(pg):
    """A session pool's session_reconnect changes on reload, for clients
    already connected: on, an idle client whose server process is
    terminated moves to a new one; off again, the next such client gets
    the server's FATAL 57P01 and is closed. SHOW CONFIG shows the value."""
    require_sqlmux("reload")
    aport = free_port()
    with Sqlmux(pg, mode="session", size=2, tweak=admin_tweak(aport)) as mux:
        def shown():
            deadline = time.monotonic() + 5
            while True:  # the console may open just after the pooling listener
                try:
                    rows = show(aport, "CONFIG")
                    break
                except psycopg2.OperationalError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)
            return [r["value"] for r in rows if r["key"] == "pool[0].session_reconnect"]
        check_eq(shown(), ["false"], "SHOW CONFIG before the reload")
        c = mux.raw()
        pid1 = int(c.scalar("SELECT pg_backend_pid()"))
        cfg = copy.deepcopy(mux.cfg)
        cfg["pool"][0]["session_reconnect"] = True
        write_config(mux, cfg)
        sighup_and_wait(mux, "applied(session_reconnect)")
        check_eq(shown(), ["true"], "SHOW CONFIG after the reload")
        pg.terminate_backend(pid1)
        pid2 = int(c.scalar("SELECT pg_backend_pid()"))
        check(pid2 != pid1, "the connected client kept a terminated server process")
        cfg["pool"][0]["session_reconnect"] = False
        write_config(mux, cfg)
        sighup_and_wait(mux, "applied(session_reconnect)")
        pg.terminate_backend(pid2)
        err, closed = c.read_until_error_or_eof(5)
        check(err is not None and err.get("C") == "57P01" and closed,
              f"session_reconnect off again: pushed error {err}, closed {closed}")
        c.close()
        mux.assert_serving(what="a new session-mode client afterwards")


if __name__ == "__main__":
    run_cases(__file__, [
        case_new_pool_and_larger_size_without_dropping_clients,
        case_removed_pool_serves_existing_clients_until_they_leave,
        case_invalid_file_changes_nothing,
        case_backend_address_and_listener_changes,
        case_session_reconnect_applies,
    ], timeout=150)
