#!/usr/bin/python3
"""Online upgrade (issue 16): `sqlmux --upgrade -c FILE` (and SIGUSR2, which
starts it) takes the running process's listening sockets over [server]
upgrade_socket; the old process stops accepting, answers /readyz 503, serves
its clients until they leave and exits. No connection attempt is refused
meanwhile: pgbench (persistent and connect-per-transaction clients) reports
no failure across the upgrade. A failed upgrade leaves the old process
serving. The same under systemd socket activation, with the new process
announcing itself as the service's main process (MAINPID=, READY=1). Idle
PostgreSQL clients of transaction pools move to the new process with their
session state and prepared statements, without reconnecting; those busy in
a transaction at the upgrade follow at their next transaction end (even
with no pause between transactions), so that the old process exits long
before shutdown_timeout. A client whose offer gets no answer is never
served by both processes. MySQL clients of transaction pools likewise,
with their thread id (the connection id they saw), schema, session
variables and prepared statements."""

import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request

import psycopg2

from harness import *
from harness import TMP_PREFIX

ADMIN_PASS = "adminpass"


def setup(pg):
    pg.psql("CREATE TABLE upg_t(id serial PRIMARY KEY, marker text); ALTER TABLE upg_t OWNER TO app;", db="appdb")
    env = dict(os.environ, PGPASSWORD="apppass")
    r = subprocess.run(["pgbench", "-i", "-s", "1", "-q", "-h", pg.host, "-p", str(pg.port), "-U", "app", "appdb"],
                       capture_output=True, text=True, env=env, timeout=120)
    if r.returncode != 0:
        fail(f"pgbench -i: {r.stderr}")


def upgrade_config(cfg, metrics_port, admin_port, sock_path, mysql_port=None, unix_path=None):
    cfg["server"]["upgrade_socket"] = sock_path
    cfg["server"]["shutdown_timeout"] = "60s"
    cfg["user"].append({"name": "admin", "password": ADMIN_PASS})
    cfg["admin"] = {"listen": f"127.0.0.1:{admin_port}", "users": ["admin"]}
    cfg["metrics"] = {"listen": f"127.0.0.1:{metrics_port}"}
    sess = dict(cfg["pool"][0])
    sess.update(name="sessdb", mode="session", size=3)
    cfg["pool"].append(sess)
    if mysql_port is not None:
        # Handed over like the others; its greeting needs no server.
        cfg["listener"].append({"protocol": "mysql", "listen": f"127.0.0.1:{mysql_port}"})
    if unix_path is not None:
        cfg["listener"].append({"protocol": "postgres", "listen": f"unix:{unix_path}"})


def mysql_greeting(port):
    """The first packet a MySQL listener sends: protocol version 10."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        head = s.recv(5)
        return len(head) == 5 and head[4] == 10


class Pgbench(threading.Thread):
    def __init__(self, port, *args):
        super().__init__(daemon=True)
        self.cmd = ["pgbench", "-h", "127.0.0.1", "-p", str(port), "-U", "app", "-n", *args, "appdb"]
        self.r = None

    def run(self):
        env = dict(os.environ, PGPASSWORD="apppass")
        self.r = subprocess.run(self.cmd, capture_output=True, text=True, env=env, timeout=90)

    def check(self, label):
        self.join(100)
        check(self.r is not None, f"{label}: pgbench did not finish")
        out = self.r.stdout
        m = re.search(r"number of transactions actually processed: (\d+)", out)
        processed = int(m.group(1)) if m else None
        m = re.search(r"number of failed transactions: (\d+)", out)
        failed = int(m.group(1)) if m else None
        log(f"{label}: {' '.join(self.cmd[8:-1])}: rc {self.r.returncode}, {processed} processed, "
            f"{failed} failed")
        check(self.r.returncode == 0, f"{label}: pgbench exited {self.r.returncode}\n{out}\n{self.r.stderr[-3000:]}")
        check_eq(failed, 0, f"{label}: failed transactions")
        check(processed and processed > 0, f"{label}: no transaction processed\n{out}")
        return processed


class AsyncpgPoolLoad(threading.Thread):
    """An asyncpg pool of `n` connections (min_size = max_size = n) with `n`
    tasks, each pool.fetchval() in a loop with a short pause, until stop:
    its answers and errors are counted (a connection lost mid-query is an
    error)."""

    def __init__(self, url, n=50):
        super().__init__(daemon=True)
        self.url = url
        self.n = n
        self.stop = threading.Event()
        self.ready = threading.Event()
        self.ok = 0
        self.errors = []

    def run(self):
        import asyncio

        import asyncpg

        async def task(pool, i):
            while not self.stop.is_set():
                try:
                    v = await pool.fetchval("SELECT $1::int + 1", i)
                    if v != i + 1:
                        self.errors.append(f"task {i}: got {v!r}")
                    else:
                        self.ok += 1
                except Exception as e:  # noqa: BLE001
                    self.errors.append(f"task {i}: {e!r}")
                    await asyncio.sleep(0.1)
                await asyncio.sleep(0.005 + 0.01 * (i % 3))

        async def main():
            pool = await asyncpg.create_pool(self.url, min_size=self.n, max_size=self.n, timeout=30,
                                             command_timeout=30, max_inactive_connection_lifetime=0)
            self.ready.set()
            try:
                await asyncio.gather(*(task(pool, i) for i in range(self.n)))
            finally:
                await pool.close()

        try:
            asyncio.run(main())
        except Exception as e:  # noqa: BLE001
            self.errors.append(f"pool: {e!r}")
        finally:
            self.ready.set()

    def check(self, label):
        self.stop.set()
        self.join(60)
        check(not self.is_alive(), f"{label}: the asyncpg pool did not stop")
        log(f"{label}: asyncpg pool of {self.n}: {self.ok} answers, {len(self.errors)} errors")
        check_eq(self.errors[:5], [], f"{label}: asyncpg pool errors")
        check(self.ok > 0, f"{label}: the asyncpg pool got no answer")
        return self.ok


class Hammer(threading.Thread):
    """New connections one after another (startup, SELECT 1, close) as
    fast as they go: each one's outcome is counted."""

    def __init__(self, port):
        super().__init__(daemon=True)
        self.port = port
        self.stop = threading.Event()
        self.outcomes = {}

    def run(self):
        while not self.stop.is_set():
            try:
                r = RawPg("127.0.0.1", self.port, timeout=10)
            except OSError as e:
                kind = f"connect: {e.__class__.__name__}"
            else:
                try:
                    r.startup("app", "appdb", "apppass")
                    kind = "served" if not r.query("SELECT 1").error else "query error"
                except PgError as e:
                    kind = f"startup: {e.sqlstate}"
                except (ConnectionClosed, OSError, TimeoutError) as e:
                    kind = f"startup: {e.__class__.__name__}"
                finally:
                    r.close()
            self.outcomes[kind] = self.outcomes.get(kind, 0) + 1


def http_get(port, path):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def raw_http(sock, path):
    sock.sendall(f"GET {path} HTTP/1.0\r\n\r\n".encode())
    data = b""
    while True:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return data.decode()


def show_clients(admin_port):
    c = psycopg2.connect(f"host=127.0.0.1 port={admin_port} dbname=sqlmux user=admin password={ADMIN_PASS} "
                         "connect_timeout=10")
    c.autocommit = True
    try:
        with c.cursor() as cur:
            cur.execute("SHOW CLIENTS")
            cols = [d[0] for d in cur.description]
            return [dict(zip(cols, r)) for r in cur.fetchall()]
    finally:
        c.close()


def query_42(port, db="appdb"):
    c = psycopg2.connect(f"host=127.0.0.1 port={port} dbname={db} user=app password=apppass connect_timeout=10")
    try:
        with c.cursor() as cur:
            cur.execute("SELECT 42")
            return cur.fetchone()[0]
    finally:
        c.close()


def markers(pg):
    return pg.psql("SELECT string_agg(marker, ',' ORDER BY id) FROM upg_t", db="appdb").strip()


def pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except OSError:
        return False


def stop_pid(pid, what, timeout=15.0):
    """SIGTERM a process that is not our child (SIGUSR2's), then SIGKILL."""
    if not pid_alive(pid):
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and pid_alive(pid):
        time.sleep(0.05)
    if pid_alive(pid):
        os.kill(pid, signal.SIGKILL)
        fail(f"{what} (pid {pid}) did not exit within {timeout}s of SIGTERM")


class NewProcess:
    """`sqlmux --upgrade --config FILE`, logging to its own file."""

    def __init__(self, directory, config_path, name="new"):
        self.log_path = os.path.join(directory, f"{name}.log")
        self.logf = open(self.log_path, "ab")
        self.proc = subprocess.Popen([os.path.abspath(SQLMUX_BIN), "--upgrade", "--config", config_path],
                                     stdin=subprocess.DEVNULL, stdout=self.logf, stderr=subprocess.STDOUT)

    def log_text(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def wait_log(self, needle, timeout=15.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if needle in self.log_text():
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        fail(f"{needle!r} not in the new process's log (exit code {self.proc.poll()}):\n{self.log_text()}")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
                return "killed"
        return self.proc.returncode

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.logf.close()


def case_upgrade_under_pgbench(pg):
    """The main path (issue 16's size): pgbench -S with 100 persistent
    clients and 8 connect-per-transaction ones, and an asyncpg pool of 50
    looping on fetchval, through a transaction pool, `sqlmux --upgrade` in
    the middle: no failed transaction, no connection error, no refused
    connection; the 150 persistent clients move to the new process at
    their next transaction end (its SHOW CLIENTS lists them) and the old
    process exits while the load still runs, long before shutdown_timeout;
    a session client's open transaction commits on the old process after
    the handover."""
    require_sqlmux("online upgrade")
    mport, aport, myport = free_port(), free_port(), free_port()
    tweak = lambda c: upgrade_config(c, mport, aport, "@DIR@/upgrade.sock", myport, "@DIR@/.s.PGSQL.1")  # noqa: E731
    with Sqlmux(pg, size=10, tweak=tweak) as mux:
        new = None
        sess = None
        apool = None
        try:
            # (Ready once the workers run: a moment after the port opens.)
            deadline = time.monotonic() + 10
            while http_get(mport, "/readyz")[0] != 200 and time.monotonic() < deadline:
                time.sleep(0.05)
            check_eq(http_get(mport, "/readyz")[0], 200, "/readyz before the upgrade")
            pg.psql("DELETE FROM upg_t", db="appdb")
            sess = psycopg2.connect(mux.dsn(db="sessdb"))
            with sess.cursor() as cur:
                cur.execute("INSERT INTO upg_t(marker) VALUES ('before')")
            persistent = Pgbench(mux.port, "-S", "-c", "100", "-j", "2", "-T", "14")
            per_tx = Pgbench(mux.port, "-S", "-C", "-c", "8", "-j", "1", "-T", "14")
            apool = AsyncpgPoolLoad(mux.url(), 50)
            hammer = Hammer(mux.port)
            apool.start()
            check(apool.ready.wait(30) and not apool.errors, f"the asyncpg pool: {apool.errors[:5]}")
            persistent.start()
            per_tx.start()
            hammer.start()
            # Every persistent client logged in to the old process first.
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                on_old = len([c for c in show_clients(aport) if c["database"] == "appdb"])
                if on_old >= 150:
                    break
                time.sleep(0.2)
            check(on_old >= 150, f"{on_old} appdb clients on the old process before the upgrade, not 150")
            time.sleep(1)
            probe = socket.create_connection(("127.0.0.1", mport), timeout=10)  # accepted by the old process
            new = NewProcess(mux.dir, mux.config_path)
            new.wait_log("took over from pid")
            log(next(ln for ln in new.log_text().splitlines() if "took over" in ln))
            check(mux.log_has(f"online upgrade: pid {new.proc.pid} serves the listening sockets"),
                  f"the old process's log:\n{mux.log_tail(30)}")
            # The old process: not ready, still alive with its clients.
            answer = raw_http(probe, "/readyz")
            probe.close()
            check(answer.startswith("HTTP/1.1 503") and f"handed over to pid {new.proc.pid}" in answer,
                  f"/readyz on the old process after the handover: {answer!r}")
            check(mux.proc.poll() is None, "the old process exited while its clients were connected")
            # The metrics port now answers from the new process.
            status, body = http_get(mport, "/readyz")
            check_eq((status, body), (200, "ready\n"), "/readyz on the new process")
            # A new client is served by the new process (its console lists it).
            r = RawPg("127.0.0.1", mux.port, source_address="127.0.0.7")
            r.startup("app", "appdb", "apppass")
            check(not r.query("SELECT 1").error, "query on the new process")
            mine = [c for c in show_clients(aport) if c["address"].startswith("127.0.0.7:")]
            check_eq(len(mine), 1, "the new process's SHOW CLIENTS lists the new client")
            r.close()
            # Every listener came from the old process, the mysql one too.
            for what in (f"127.0.0.1:{mux.port} (postgres)", f"127.0.0.1:{myport} (mysql)"):
                check(f"listening on {what}: socket from the running process" in new.log_text(),
                      f"{what} handed over:\n{new.log_text()}")
            for what in (f"admin console listening on 127.0.0.1:{aport}", f"metrics on http://127.0.0.1:{mport}"):
                check(re.search(re.escape(what) + r".*socket from the running process", new.log_text()),
                      f"{what} handed over:\n{new.log_text()}")
            check(mysql_greeting(myport), "the mysql listener greets after the handover")
            unix_path = os.path.join(mux.dir, ".s.PGSQL.1")
            check(f"listening on unix:{unix_path} (postgres): socket from the running process" in new.log_text(),
                  f"the unix listener handed over:\n{new.log_text()}")
            r = RawPg(unix_path=unix_path)
            r.startup("app", "appdb", "apppass")
            check(not r.query("SELECT 1").error, "query over the handed-over unix socket")
            r.close()
            # The session client's transaction commits on the old process.
            with sess.cursor() as cur:
                cur.execute("INSERT INTO upg_t(marker) VALUES ('after')")
            sess.commit()
            sess.close()
            sess = None
            check_eq(markers(pg), "before,after", "rows of the session transaction")
            # Every persistent client follows at its next transaction end:
            # the old process exits while pgbench and the pool still run.
            t0 = time.monotonic()
            rc = mux.wait_exit(8)
            check(rc is not None and persistent.is_alive(),
                  f"the old process still ran when the load ended (exit code {rc}):\n{mux.log_tail(30)}")
            log(f"the old process exited {time.monotonic() - t0:.2f} s after the session client left")
            check_eq(rc, 0, "the old process's exit code once its clients left")
            listed = [c for c in show_clients(aport) if c["database"] == "appdb"]
            log(f"the new process's SHOW CLIENTS lists {len(listed)} appdb clients during the load")
            check(len(listed) >= 150, f"the new process lists {len(listed)} clients, not the 150 persistent ones")
            n1 = persistent.check("persistent clients")
            n2 = per_tx.check("connect per transaction")
            n3 = apool.check("asyncpg pool")
            hammer.stop.set()
            hammer.join(20)
            log(f"connections one after another across the upgrade: {hammer.outcomes}")
            check(set(hammer.outcomes) == {"served"} and hammer.outcomes["served"] > 0,
                  f"a new connection was not served: {hammer.outcomes}")
            old_log = mux.log_text()
            check("refused" not in old_log and "57P03" not in old_log,
                  f"the old process refused connections:\n{old_log[-3000:]}")
            check("shutdown_timeout reached" not in old_log, "the old process waited for shutdown_timeout")
            check_eq(query_42(mux.port), 42, "query after the old process exited")
            check_eq(http_get(mport, "/readyz")[0], 200, "/readyz after the old process exited")
            log(f"{n1} + {n2} transactions and {n3} asyncpg queries across the upgrade, none failed")
            handed = re.findall(r"online upgrade: handed (\d+) idle client\(s\) to pid \d+ \((\d+) offered\)",
                                old_log)
            check(handed, f"the old process's log names the idle clients it handed over:\n{old_log[-3000:]}")
            n_handed, n_offered = sum(int(a) for a, _ in handed), sum(int(b) for _, b in handed)
            log(f"idle clients handed to the new process during the load: {n_handed} of {n_offered} offered")
            check(n_handed >= 150, f"{n_handed} clients handed over, not the 150 persistent ones:\n"
                                   + "\n".join(ln for ln in old_log.splitlines() if "upgrade" in ln or "client" in ln))
            check(" warn " not in old_log, f"warnings in the old process's log:\n{old_log[-3000:]}")
            check_eq(new.stop(), 0, "the new process's exit code after SIGTERM")
            check(os.path.exists(os.path.join(mux.dir, "upgrade.sock")) is False,
                  "the upgrade socket file is removed at exit")
        finally:
            if sess is not None:
                sess.close()
            if apool is not None:
                apool.stop.set()
            if new is not None:
                new.kill()


def case_idle_clients_handed_over(pg):
    """Clients of a transaction pool idle at the upgrade (asyncpg with its
    prepared-statement cache, psycopg 3 with a prepared statement and a
    session setting) move to the new process without reconnecting: their
    next queries, cached prepared statements included, and a cancel request
    work there, the new process's SHOW CLIENTS lists them, and the old
    process exits at once since no client is left to it. A session-mode
    client stays on the old process until it leaves."""
    require_sqlmux("online upgrade")
    import asyncio

    import asyncpg
    import psycopg

    mport, aport = free_port(), free_port()
    tweak = lambda c: upgrade_config(c, mport, aport, "@DIR@/upgrade.sock")  # noqa: E731
    loop = asyncio.new_event_loop()
    with Sqlmux(pg, size=10, tweak=tweak) as mux:
        new = None
        ac = pc = sess = None
        try:
            ac = loop.run_until_complete(asyncpg.connect(host="127.0.0.1", port=mux.port, user="app",
                                                         password="apppass", database="appdb"))
            check_eq(loop.run_until_complete(ac.fetchval("SELECT $1::int + 1", 41)), 42, "asyncpg before")
            pc = psycopg.connect(mux.dsn() + " application_name=upg_psycopg", autocommit=True)
            pc.execute("SET statement_timeout = '12345ms'")
            check_eq(pc.execute("SELECT %s::int * 2", (21,), prepare=True).fetchone()[0], 42, "psycopg before")
            sess = psycopg2.connect(mux.dsn(db="sessdb"))
            sess.autocommit = True
            with sess.cursor() as cur:
                cur.execute("SELECT 1")
            ports = {ac._transport.get_extra_info("sockname")[1],
                     socket.socket(fileno=os.dup(pc.pgconn.socket)).getsockname()[1]}
            new = NewProcess(mux.dir, mux.config_path)
            new.wait_log("took over from pid")
            check(mux.log_has(f"online upgrade: handed 2 idle client(s) to pid {new.proc.pid}"),
                  f"the old process's log:\n{mux.log_tail(30)}")
            new.wait_log("adopted 2 idle client(s)")
            m = scrape_metrics(mport)
            check_eq((m.get('sqlmux_upgrade_idle_clients_total{result="adopted"}'),
                      m.get('sqlmux_upgrade_idle_clients_total{result="refused"}')), (2.0, 0.0),
                     "the new process's sqlmux_upgrade_idle_clients_total")
            # Served by the new process: its console lists them.
            mine = [c for c in show_clients(aport) if int(c["address"].rsplit(":", 1)[1]) in ports]
            check_eq(len(mine), 2, f"the new process's SHOW CLIENTS lists the handed-over clients: {mine}")
            check_eq(loop.run_until_complete(ac.fetchval("SELECT $1::int + 1", 1)), 2,
                     "asyncpg's cached statement after the upgrade")
            check_eq(pc.execute("SELECT %s::int * 2", (4,), prepare=True).fetchone()[0], 8,
                     "psycopg's prepared statement after the upgrade")
            check_eq(pc.execute("SHOW statement_timeout").fetchone()[0], "12345ms",
                     "psycopg's session setting after the upgrade")
            check_eq(pc.execute("SHOW application_name").fetchone()[0], "upg_psycopg",
                     "application_name after the upgrade")
            # Its cancel key works on the new process.
            timer = threading.Timer(0.5, pc.cancel)
            timer.start()
            try:
                pc.execute("SELECT pg_sleep(10)")
                fail("pg_sleep was not cancelled")
            except psycopg.errors.QueryCanceled:
                pass
            timer.join()
            # The session client keeps the old process until it leaves.
            check(mux.proc.poll() is None, "the old process exited with its session client")
            with sess.cursor() as cur:
                cur.execute("SELECT 7")
                check_eq(cur.fetchone()[0], 7, "the session client on the old process")
            sess.close()
            sess = None
            t0 = time.monotonic()
            rc = mux.wait_exit(30)
            check_eq(rc, 0, "the old process's exit code once its clients left")
            check("shutdown_timeout reached" not in mux.log_text(), "the old process waited for shutdown_timeout")
            log(f"the old process exited {time.monotonic() - t0:.1f} s after its last client left")
            check_eq(loop.run_until_complete(ac.fetchval("SELECT $1::int + 1", 99)), 100,
                     "asyncpg after the old process exited")
            check_eq(pc.execute("SELECT %s::int * 2", (5,), prepare=True).fetchone()[0], 10,
                     "psycopg after the old process exited")
            loop.run_until_complete(ac.close())
            ac = None
            pc.close()
            pc = None
            check_eq(new.stop(), 0, "the new process's exit code after SIGTERM")
        finally:
            if ac is not None:
                ac.terminate()
            if pc is not None:
                pc.close()
            if sess is not None:
                sess.close()
            if new is not None:
                new.kill()
            loop.close()


def case_busy_clients_follow(pg):
    """Clients of a transaction pool running transactions in a loop across
    the upgrade (BEGIN; pg_sleep(0.05); COMMIT; a 20 ms pause): most are
    mid-transaction at the first offer; each moves to the new process at
    its next idle moment. All end up there without reconnecting or seeing
    an error, and the old process exits well before shutdown_timeout
    (30 s)."""
    require_sqlmux("online upgrade")
    import asyncio

    import asyncpg
    import psycopg

    n_async, n_psy = 4, 4
    mport, aport = free_port(), free_port()

    def tweak(c):
        upgrade_config(c, mport, aport, "@DIR@/upgrade.sock")
        c["server"]["shutdown_timeout"] = "30s"

    stop = threading.Event()
    errors = []
    done = {}  # client -> transactions committed
    ports = {}  # client -> its local port (one connection each, never replaced)

    def psy_worker(i):
        name = f"psycopg{i}"
        try:
            c = psycopg.connect(mux.dsn(), autocommit=True)
        except Exception as e:  # noqa: BLE001
            errors.append(f"{name} connect: {e!r}")
            return
        ports[name] = socket.socket(fileno=os.dup(c.pgconn.socket)).getsockname()[1]
        done[name] = 0
        try:
            while not stop.is_set():
                with c.transaction():
                    c.execute("SELECT pg_sleep(0.05)")
                    check_eq(c.execute("SELECT %s::int + 1", (i,)).fetchone()[0], i + 1, name)
                done[name] += 1
                time.sleep(0.02)
        except Exception as e:  # noqa: BLE001
            errors.append(f"{name}: {e!r}")
        finally:
            c.close()

    async def async_worker(i):
        name = f"asyncpg{i}"
        try:
            c = await asyncpg.connect(host="127.0.0.1", port=mux.port, user="app", password="apppass",
                                      database="appdb")
        except Exception as e:  # noqa: BLE001
            errors.append(f"{name} connect: {e!r}")
            return
        ports[name] = c._transport.get_extra_info("sockname")[1]
        done[name] = 0
        try:
            while not stop.is_set():
                async with c.transaction():
                    await c.execute("SELECT pg_sleep(0.05)")
                    if await c.fetchval("SELECT $1::int + 1", i) != i + 1:
                        errors.append(f"{name}: wrong answer")
                done[name] += 1
                await asyncio.sleep(0.02)
        except Exception as e:  # noqa: BLE001
            errors.append(f"{name}: {e!r}")
        finally:
            await c.close()

    def async_thread():
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(asyncio.gather(*(async_worker(i) for i in range(n_async))))
        except Exception as e:  # noqa: BLE001
            errors.append(f"asyncpg thread: {e!r}")
        finally:
            loop.close()

    with Sqlmux(pg, size=10, tweak=tweak) as mux:
        new = None
        threads = [threading.Thread(target=psy_worker, args=(i,)) for i in range(n_psy)]
        threads.append(threading.Thread(target=async_thread))
        try:
            for t in threads:
                t.start()
            deadline = time.monotonic() + 15
            while len(done) < n_async + n_psy and not errors and time.monotonic() < deadline:
                time.sleep(0.05)
            check_eq(errors, [], "errors before the upgrade")
            check_eq(len(ports), n_async + n_psy, "clients connected")
            time.sleep(1.0)
            before = dict(done)
            new = NewProcess(mux.dir, mux.config_path)
            new.wait_log("took over from pid")
            t0 = time.monotonic()
            rc = mux.wait_exit(10)
            took = time.monotonic() - t0
            check(rc is not None, f"the old process still runs 10 s after the handover (shutdown_timeout 30 s):\n"
                                  f"{mux.log_tail(30)}")
            log(f"the old process exited {took:.2f} s after the handover")
            check_eq(rc, 0, "the old process's exit code")
            check("shutdown_timeout reached" not in mux.log_text(), "the old process waited for shutdown_timeout")
            time.sleep(0.5)
            check_eq(errors, [], "errors across the upgrade")
            mine = [c for c in show_clients(aport) if int(c["address"].rsplit(":", 1)[1]) in ports.values()]
            check_eq(len(mine), n_async + n_psy, f"the new process's SHOW CLIENTS lists every client: {mine}")
            m = scrape_metrics(mport)
            check_eq((m.get('sqlmux_upgrade_idle_clients_total{result="adopted"}'),
                      m.get('sqlmux_upgrade_idle_clients_total{result="refused"}')),
                     (float(n_async + n_psy), 0.0), "the new process's sqlmux_upgrade_idle_clients_total")
            stop.set()
            for t in threads:
                t.join(15)
            check_eq(errors, [], "errors after the upgrade")
            moved = {k: done[k] - before[k] for k in done}
            check(all(v > 0 for v in moved.values()), f"transactions per client across the upgrade: {moved}")
            log(f"transactions per client since the upgrade started: {moved}")
            check(" warn " not in new.log_text() and " error " not in new.log_text(),
                  f"warnings in the new process's log:\n{new.log_text()}")
            check(" warn " not in mux.log_text(), f"warnings in the old process's log:\n{mux.log_tail(30)}")
            check_eq(new.stop(), 0, "the new process's exit code after SIGTERM")
        finally:
            stop.set()
            for t in threads:
                if t.is_alive():
                    t.join(15)
            if new is not None:
                new.kill()


def _raw_scalar(rc, sql):
    """One value of a one-column text result through a _RawClient."""
    from test_mysql_protocol import _lenenc
    out = rc.command(b"\x03" + sql.encode())
    check(out[0][0] == 1 and len(out) >= 3, f"{sql}: {out!r}")
    row = out[2]
    if row[0] == 0xFB:
        return None
    n, i = _lenenc(row, 0)
    return row[i:i + n].decode()


def _raw_prepare(rc, sql):
    """COM_STMT_PREPARE: the statement id and its parameter count."""
    import struct
    rc.send(0, b"\x16" + sql.encode())
    _, p = rc.recv()
    check(p[0] == 0, f"COM_STMT_PREPARE {sql!r}: {p!r}")
    stmt, ncols, nparams = struct.unpack("<IHH", p[1:9])
    for _ in range(ncols + nparams):  # DEPRECATE_EOF: no EOF after them
        rc.recv()
    return stmt, nparams


def _raw_execute_int(rc, stmt, value, bind):
    """COM_STMT_EXECUTE of a one-parameter statement with a BIGINT value:
    with its type (new-params-bound 1) or without (0: the types bound
    before); the response's first payload."""
    import struct
    payload = (b"\x17" + struct.pack("<IBI", stmt, 0, 1) + b"\x00"
               + (b"\x01" + struct.pack("<BB", 8, 0) if bind else b"\x00") + struct.pack("<q", value))
    return rc.command(payload)[0]


def case_mysql_idle_clients_handed_over(pg):
    """MySQL clients of a transaction pool idle at the upgrade (PyMySQL,
    aiomysql, mysqlclient, and a raw protocol client with CLIENT_DEPRECATE_EOF,
    CLIENT_MULTI_STATEMENTS, collation utf8mb4_unicode_ci and a server-side
    prepared INSERT) move to the new process without reconnecting: the same
    CONNECTION_ID() (the thread id of their greeting), the schema they
    USEd, their session variables, the prepared statement executed by its
    old id without binding its types again; the new process's SHOW CLIENTS
    lists them and a KILL from a new client reaches one there; a
    COM_CHANGE_USER (answering the old process's greeting) works there. A client in
    a transaction at the handover commits on the old process and follows
    at its next pause; clients of a session pool and of a passthrough pool
    (no server login of its own) stay on the old process, which exits once
    they leave."""
    require_sqlmux("online upgrade")
    import asyncio

    import aiomysql
    import pymysql

    from mysql_harness import MariaDbServer, one
    from test_mysql_protocol import _RawClient

    mport, aport = free_port(), free_port()

    pt_hash = None

    def tweak(c):
        upgrade_config(c, mport, aport, "@DIR@/upgrade.sock")  # sessdb: a session pool of the mysql one
        c["server"]["peer_id"] = 9  # thread ids carry it (pool/peer_kill.h)
        # A passthrough pool: its server login is the client's own (SHA1
        # recovered from its native-password reply), which the new process
        # would not have: its clients are not offered.
        pt = dict(c["pool"][0])
        pt["name"] = "ptdb"
        pt.pop("user")
        pt.pop("password")
        c["pool"].append(pt)
        c["user"].append({"name": "ptuser", "password": pt_hash})

    loop = asyncio.new_event_loop()
    with MariaDbServer() as my:
        my.sql_many(["CREATE DATABASE upg_other",
                     "GRANT ALL PRIVILEGES ON upg_other.* TO 'app'@'%'",
                     "GRANT ALL PRIVILEGES ON upg_other.* TO 'app'@'127.0.0.1'",
                     "CREATE TABLE upg_other.t(x INT)", "INSERT INTO upg_other.t VALUES (7)",
                     "CREATE TABLE appdb.upg_my(v BIGINT)",
                     "CREATE USER 'ptuser'@'%' IDENTIFIED BY 'Pt-secret-42'",
                     "GRANT ALL ON appdb.* TO 'ptuser'@'%'"])
        pt_hash = my.scalar("SELECT authentication_string FROM mysql.user WHERE user = 'ptuser'")
        pt_hash = pt_hash.decode() if isinstance(pt_hash, bytes) else pt_hash
        with Sqlmux(None, my=my, size=6, tweak=tweak) as mux:
            new = None
            c1 = c2 = rc = tx = sess = pt = c5 = None
            try:
                c1 = mux.my_connect(autocommit=True, read_timeout=30)
                c1.select_db("upg_other")  # COM_INIT_DB
                with c1.cursor() as cur:
                    cur.execute("SET SESSION sql_mode='ANSI_QUOTES,NO_ENGINE_SUBSTITUTION'")
                    cur.execute("SET @@session.time_zone='+03:00'")
                    cur.execute("SELECT DATABASE(), x FROM t")
                    check_eq(cur.fetchone(), ("upg_other", 7), "PyMySQL before: DATABASE()")
                    # (sqlmux answers CONNECTION_ID() in a statement of its own.)
                    cur.execute("SELECT CONNECTION_ID()")
                    id1 = cur.fetchone()[0]
                check_eq(id1, c1.thread_id(), "PyMySQL before: CONNECTION_ID() is the greeting's thread id")
                check_eq(id1 >> 17, 9, f"the thread id {id1} carries peer_id 9")
                c2 = loop.run_until_complete(aiomysql.connect(host="127.0.0.1", port=mux.my_port, user="app",
                                                              password="apppass", db="appdb", autocommit=True))

                async def a_query(sql):
                    async with c2.cursor() as cur:
                        await cur.execute(sql)
                        return await cur.fetchone()

                loop.run_until_complete(a_query("USE upg_other"))
                loop.run_until_complete(a_query("SET SESSION time_zone='-04:00', sql_select_limit=3"))
                id2 = loop.run_until_complete(a_query("SELECT CONNECTION_ID()"))[0]
                check_eq(id2, c2.server_thread_id[0], "aiomysql before: CONNECTION_ID()")
                rc = _RawClient("127.0.0.1", mux.my_port, "app", "apppass", "appdb", caps=0x10000, charset=224)
                stmt, nparams = _raw_prepare(rc, "INSERT INTO upg_my(v) VALUES (?)")
                check_eq(nparams, 1, "the prepared INSERT's parameters")
                check_eq(_raw_execute_int(rc, stmt, 1, bind=True)[0], 0, "EXECUTE before the upgrade")
                # (After an INSERT the client keeps its server connection for
                # LAST_INSERT_ID() until its next statement.)
                id3 = int(_raw_scalar(rc, "SELECT CONNECTION_ID()"))
                # mysqlclient (libmariadb): a COM_CHANGE_USER after the upgrade
                # answers the scramble of the old process's greeting.
                import MySQLdb
                c5 = MySQLdb.connect(host="127.0.0.1", port=mux.my_port, user="app", password="apppass",
                                     database="appdb", connect_timeout=10, read_timeout=30)
                c5.autocommit(True)
                id5 = c5.thread_id()
                tx = mux.my_connect(autocommit=False, read_timeout=30)
                with tx.cursor() as cur:
                    cur.execute("INSERT INTO upg_my(v) VALUES (100)")  # a transaction stays open
                sess = mux.my_connect(db="sessdb", autocommit=True, read_timeout=30)
                check_eq(one(sess, "SELECT 5"), 5, "the session-pool client before")
                pt = mux.my_connect(db="ptdb", user="ptuser", password="Pt-secret-42", autocommit=True,
                                    read_timeout=30)
                check_eq(one(pt, "SELECT CURRENT_USER()"), "ptuser@%", "the passthrough client before")
                ports = {c1._sock.getsockname()[1], c2._writer.get_extra_info("sockname")[1],
                         rc.sock.getsockname()[1]}
                new = NewProcess(mux.dir, mux.config_path)
                new.wait_log("took over from pid")
                check(mux.log_has(f"online upgrade: handed 4 idle client(s) to pid {new.proc.pid} (4 offered)"),
                      f"the old process's log:\n{mux.log_tail(30)}")
                new.wait_log("adopted 4 idle client(s)")
                # Served by the new process: its console lists them.
                mine = [c for c in show_clients(aport) if int(c["address"].rsplit(":", 1)[1]) in ports]
                check_eq(len(mine), 3, f"the new process's SHOW CLIENTS lists the handed-over clients: {mine}")
                with c1.cursor() as cur:
                    cur.execute("SELECT CONNECTION_ID()")
                    check_eq(cur.fetchone()[0], id1, "PyMySQL's CONNECTION_ID() after the upgrade")
                    cur.execute("SELECT DATABASE(), @@sql_mode, @@time_zone, x FROM t")
                    check_eq(cur.fetchone(), ("upg_other", "ANSI_QUOTES,NO_ENGINE_SUBSTITUTION", "+03:00", 7),
                             "PyMySQL after the upgrade")
                check_eq(loop.run_until_complete(a_query("SELECT CONNECTION_ID()"))[0], id2,
                         "aiomysql's CONNECTION_ID() after the upgrade")
                check_eq(loop.run_until_complete(a_query("SELECT DATABASE(), @@time_zone, @@sql_select_limit")),
                         ("upg_other", "-04:00", 3), "aiomysql after the upgrade")
                check_eq(int(_raw_scalar(rc, "SELECT CONNECTION_ID()")), id3, "the raw client's CONNECTION_ID()")
                check_eq(_raw_scalar(rc, "SELECT @@collation_connection"), "utf8mb4_unicode_ci",
                         "the raw client's collation after the upgrade")
                # Its prepared statement by the old id, its types not sent again.
                check_eq(_raw_execute_int(rc, stmt, 2, bind=False)[0], 0, "EXECUTE after the upgrade")
                out = rc.command(b"\x03SELECT 11; SELECT 12")  # CLIENT_MULTI_STATEMENTS
                c5.change_user("app", "apppass", "appdb")
                cur5 = c5.cursor()
                cur5.execute("SELECT CONNECTION_ID()")
                check_eq(cur5.fetchone()[0], id5, "mysqlclient's CONNECTION_ID() after COM_CHANGE_USER")
                cur5.execute("SELECT DATABASE(), SUBSTRING_INDEX(CURRENT_USER(), '@', 1)")
                check_eq(cur5.fetchone(), ("appdb", "app"), "mysqlclient after COM_CHANGE_USER")
                cur5.close()
                check_eq(len([p for p in out if p[:1] == b"\x01"]), 2, f"two result sets: {out!r}")
                # The transaction commits on the old process; the client follows.
                with tx.cursor() as cur:
                    cur.execute("INSERT INTO upg_my(v) VALUES (101)")
                tx.commit()
                check_eq(my.scalar("SELECT GROUP_CONCAT(v ORDER BY v) FROM appdb.upg_my"), "1,2,100,101",
                         "rows of the prepared INSERT and of the transaction")
                # A KILL from a client of the new process reaches a handed-over one.
                killer = mux.my_connect(autocommit=True, read_timeout=30)
                # The new process's thread ids go on after the old one's: not
                # those of the clients still there (tx, sess) either.
                olds = {id1, id2, id3, id5, tx.thread_id(), sess.thread_id()}
                check(killer.thread_id() not in olds and killer.thread_id() >> 17 == 9,
                      f"a new client's thread id {killer.thread_id()} among the old process's {olds}")
                with killer.cursor() as cur:
                    cur.execute(f"KILL {id1}")
                killer.close()
                try:
                    with c1.cursor() as cur:
                        cur.execute("SELECT 1")
                    fail("the killed client still runs queries")
                except pymysql.MySQLError as e:
                    log(f"the killed client: {e!r}")
                c1.close()
                c1 = None
                check(mux.proc.poll() is None, "the old process exited with its session client")
                check_eq(one(sess, "SELECT 6"), 6, "the session-pool client on the old process")
                sess.close()
                sess = None
                check_eq(one(pt, "SELECT CURRENT_USER()"), "ptuser@%", "the passthrough client on the old process")
                pt.close()
                pt = None
                rc_old = mux.wait_exit(30)
                check_eq(rc_old, 0, "the old process's exit code once its clients left")
                check("shutdown_timeout reached" not in mux.log_text(), "the old process waited for shutdown_timeout")
                m = scrape_metrics(mport)
                check_eq((m.get('sqlmux_upgrade_idle_clients_total{result="adopted"}'),
                          m.get('sqlmux_upgrade_idle_clients_total{result="refused"}')), (5.0, 0.0),
                         "the new process's sqlmux_upgrade_idle_clients_total")
                with tx.cursor() as cur:
                    cur.execute("SELECT CONNECTION_ID()")
                    check_eq(cur.fetchone()[0], tx.thread_id(), "the transaction's client after it moved")
                tx.commit()
                check_eq(int(_raw_scalar(rc, "SELECT CONNECTION_ID()")), id3, "the raw client after the old exited")
                check_eq(loop.run_until_complete(a_query("SELECT @@time_zone"))[0], "-04:00",
                         "aiomysql after the old process exited")
                check(" warn " not in new.log_text() and " error " not in new.log_text(),
                      f"warnings in the new process's log:\n{new.log_text()}")
                check_eq(new.stop(), 0, "the new process's exit code after SIGTERM")
            finally:
                for c in (c1, tx, sess, pt, c5):
                    if c is not None:
                        c.close()
                if c2 is not None:
                    c2.close()
                if rc is not None:
                    rc.sock.close()
                if new is not None:
                    new.kill()
                loop.close()


def case_lost_answer_one_server(pg):
    """The new process never answers for a client the old one offered it
    (it is stopped with SIGSTOP right after the handover, while the
    client's transaction runs; the transaction ends, the old process
    offers the client, no answer comes within 10 s): the old process
    closes its copy of the socket and never reads it again, so that when
    the new process resumes (SIGCONT) and adopts the client, exactly one
    process serves it: the old process's console no longer lists it, the
    new one's does, and its queries are answered in order."""
    require_sqlmux("online upgrade")
    mport, aport = free_port(), free_port()
    tweak = lambda c: upgrade_config(c, mport, aport, "@DIR@/upgrade.sock")  # noqa: E731
    with Sqlmux(pg, size=10, tweak=tweak) as mux:
        new = None
        console = None
        stopped = False
        try:
            # The old process's console, kept open: it stays there.
            console = psycopg2.connect(f"host=127.0.0.1 port={aport} dbname=sqlmux user=admin "
                                       f"password={ADMIN_PASS} connect_timeout=10")
            console.autocommit = True

            def old_clients():
                with console.cursor() as cur:
                    cur.execute("SHOW CLIENTS")
                    cols = [d[0] for d in cur.description]
                    return [dict(zip(cols, r)) for r in cur.fetchall()]

            src = "127.0.0.9"
            r = RawPg("127.0.0.1", mux.port, source_address=src, timeout=40)
            r.startup("app", "appdb", "apppass")
            check_eq(r.scalar("SELECT 1"), "1", "the client before the upgrade")
            busy = {}

            def run_tx():
                busy["result"] = r.query("BEGIN; SELECT pg_sleep(3); COMMIT", timeout=40)
                busy["ended"] = time.monotonic()

            t = threading.Thread(target=run_tx, daemon=True)
            t.start()
            time.sleep(0.3)
            new = NewProcess(mux.dir, mux.config_path)
            new.wait_log("took over from pid")
            os.kill(new.proc.pid, signal.SIGSTOP)
            stopped = True
            check("ended" not in busy, "the client's transaction ended before the new process stopped (timing)")
            t.join(10)
            check("ended" in busy and not busy["result"].error, f"the client's transaction: {busy}")
            # The old process offers it now; its answer never comes in time.
            wait_s = 12.0 - (time.monotonic() - busy["ended"])
            if wait_s > 0:
                time.sleep(wait_s)
            os.kill(new.proc.pid, signal.SIGCONT)
            stopped = False
            time.sleep(1.5)
            on_old = [c for c in old_clients() if c["address"].startswith(src + ":")]
            on_new = [c for c in show_clients(aport) if c["address"].startswith(src + ":")]
            log(f"after SIGCONT: the old process lists {len(on_old)}, the new one {len(on_new)}")
            check_eq((len(on_old), len(on_new)), (0, 1),
                     "processes whose SHOW CLIENTS lists the client (old, new)\n"
                     f"old:\n{mux.log_tail(20)}\nnew:\n{new.log_text()[-3000:]}")
            check(mux.log_has("got no answer"), f"the old process's log:\n{mux.log_tail(20)}")
            for i in range(30):
                check_eq(r.scalar(f"SELECT {i}"), str(i), "the client's queries after SIGCONT")
            m = scrape_metrics(mport)
            check_eq((m.get('sqlmux_upgrade_idle_clients_total{result="adopted"}'),
                      m.get('sqlmux_upgrade_idle_clients_total{result="unanswered"}')),
                     (1.0, 1.0), "the new process's sqlmux_upgrade_idle_clients_total (adopted, unanswered)")
            on_new = [c for c in show_clients(aport) if c["address"].startswith(src + ":")]
            check_eq(len(on_new), 1, "the new process still serves the client")
            r.close()
            console.close()
            console = None
            rc = mux.wait_exit(15)
            check_eq(rc, 0, "the old process's exit code once its console left")
            check_eq(new.stop(), 0, "the new process's exit code after SIGTERM")
        finally:
            if console is not None:
                console.close()
            if new is not None:
                if stopped:
                    os.kill(new.proc.pid, signal.SIGCONT)
                new.kill()


def case_back_to_back_clients_follow(pg):
    """Clients with no pause between their transactions (pgbench, 8
    clients, each sending its next `SELECT pg_sleep(0.02)` as soon as the
    last one's answer is in) are idle only some microseconds between them,
    which a periodic look misses again and again: each is offered right
    when its transaction ends, so all move to the new process while
    pgbench runs, with no failed transaction, and the old process exits
    within 1.5 s of the handover (shutdown_timeout 30 s)."""
    require_sqlmux("online upgrade")
    mport, aport = free_port(), free_port()

    def tweak(c):
        upgrade_config(c, mport, aport, "@DIR@/upgrade.sock")
        c["server"]["shutdown_timeout"] = "30s"

    with Sqlmux(pg, size=10, tweak=tweak) as mux:
        new = None
        try:
            script = os.path.join(mux.dir, "sleep.sql")
            with open(script, "w") as f:
                f.write("SELECT pg_sleep(0.02);\n")
            bench = Pgbench(mux.port, "-f", script, "-c", "8", "-j", "2", "-T", "6")
            bench.start()
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                if len([c for c in show_clients(aport) if c["database"] == "appdb"]) >= 8:
                    break
                time.sleep(0.1)
            time.sleep(0.5)
            new = NewProcess(mux.dir, mux.config_path)
            new.wait_log("took over from pid")
            t0 = time.monotonic()
            rc = mux.wait_exit(5)
            took = time.monotonic() - t0
            check(rc is not None, f"the old process still runs 5 s after the handover:\n{mux.log_tail(30)}")
            log(f"the old process exited {took:.2f} s after the handover")
            check_eq(rc, 0, "the old process's exit code")
            # Offered at their first transaction end (20 ms): well within
            # 1.5 s. Offered only when a 100 ms tick found each idle, some
            # were still there 5 s later.
            check(took < 1.5, f"the old process exited {took:.2f} s after the handover, not within 1.5 s")
            check(bench.is_alive(), "pgbench ended before the old process exited")
            listed = [c for c in show_clients(aport) if c["database"] == "appdb"]
            check_eq(len(listed), 8, f"the new process's SHOW CLIENTS lists pgbench's clients: {listed}")
            bench.check("back-to-back clients")
            check_eq(new.stop(), 0, "the new process's exit code after SIGTERM")
        finally:
            if new is not None:
                new.kill()


def case_refused_idle_client_stays(pg):
    """The new process refuses an idle client it cannot take (its
    max_client_conn is 1, two idle clients are offered): that client stays
    on the old process, which serves it on as if nothing happened; the
    other moves. Nothing is lost either way."""
    require_sqlmux("online upgrade")
    import psycopg

    mport, aport = free_port(), free_port()
    with Sqlmux(pg, size=4, tweak=lambda c: upgrade_config(c, mport, aport, "@DIR@/upgrade.sock")) as mux:
        new = None
        conns = []
        try:
            for i in range(2):
                c = psycopg.connect(mux.dsn(), autocommit=True)
                check_eq(c.execute("SELECT %s::int + 1", (i,), prepare=True).fetchone()[0], i + 1, "before")
                conns.append(c)
            with open(mux.config_path) as f:
                text = f.read()
            small_text, n = re.subn(r"(?m)^max_client_conn = \d+$", "max_client_conn = 1", text)
            check_eq(n, 1, "max_client_conn in the test's config")
            small = os.path.join(mux.dir, "small.toml")
            with open(small, "w") as f:
                f.write(small_text)
            new = NewProcess(mux.dir, small)
            new.wait_log("took over from pid")
            check(mux.log_has(f"online upgrade: handed 1 idle client(s) to pid {new.proc.pid} (2 offered)"),
                  f"the old process's log:\n{mux.log_tail(30)}")
            check("max_client_conn reached" in new.log_text(), f"the new process's log:\n{new.log_text()}")
            m = scrape_metrics(mport)
            check_eq((m.get('sqlmux_upgrade_idle_clients_total{result="adopted"}'),
                      m.get('sqlmux_upgrade_idle_clients_total{result="refused"}')), (1.0, 1.0),
                     "the new process's sqlmux_upgrade_idle_clients_total")
            # The old process offers clients that become idle every 100 ms,
            # but not one the new process refused: still one answer each.
            time.sleep(0.6)
            m = scrape_metrics(mport)
            check_eq((m.get('sqlmux_upgrade_idle_clients_total{result="adopted"}'),
                      m.get('sqlmux_upgrade_idle_clients_total{result="refused"}')), (1.0, 1.0),
                     "sqlmux_upgrade_idle_clients_total 0.6 s later (a refused client is not offered again)")
            for i, c in enumerate(conns):
                check_eq(c.execute("SELECT %s::int + 1", (i + 10,), prepare=True).fetchone()[0], i + 11,
                         f"client {i} after the upgrade")
            check(mux.proc.poll() is None, "the old process keeps the client it still serves")
            for c in conns:
                c.close()
            conns = []
            check_eq(mux.wait_exit(30), 0, "the old process's exit code once its client left")
            check_eq(new.stop(), 0, "the new process's exit code")
        finally:
            for c in conns:
                c.close()
            if new is not None:
                new.kill()


def case_failed_upgrade_keeps_old_serving(pg):
    """The new process fails after it received the sockets (its config adds
    a listener on a port taken by someone else): it exits non-zero naming
    the reason, the old process keeps serving and accepting. And --upgrade
    with nothing serving on the upgrade socket fails clearly."""
    require_sqlmux("online upgrade")
    mport, aport = free_port(), free_port()
    with Sqlmux(pg, size=4, tweak=lambda c: upgrade_config(c, mport, aport, "@DIR@/upgrade.sock")) as mux:
        taken = socket.socket()
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        busy = taken.getsockname()[1]
        new = None
        try:
            with open(mux.config_path) as f:
                text = f.read()
            bad = os.path.join(mux.dir, "bad.toml")
            with open(bad, "w") as f:
                f.write(text + f'\n[[listener]]\nprotocol = "postgres"\nlisten = "127.0.0.1:{busy}"\n')
            new = NewProcess(mux.dir, bad, name="bad")
            rc = new.proc.wait(20)
            text = new.log_text()
            check(rc != 0, f"the failed new process exited {rc}")
            check(f"127.0.0.1:{busy}: cannot bind" in text, f"its log names the reason:\n{text}")
            check(mux.log_has("abandoned"), f"the old process's log:\n{mux.log_tail(20)}")
            log(next(ln for ln in mux.log_text().splitlines() if "abandoned" in ln))
            check_eq(query_42(mux.port), 42, "the old process still serves")
            check_eq(http_get(mport, "/readyz")[0], 200, "/readyz of the old process after the failed upgrade")
            check_eq(len(show_clients(aport)) >= 0, True, "the old console still answers")
            # A second attempt works (the old process took the failure back).
            good = NewProcess(mux.dir, mux.config_path, name="good")
            good.wait_log("took over from pid")
            check_eq(mux.wait_exit(20), 0, "the old process's exit code after the second upgrade")
            check_eq(query_42(mux.port), 42, "the new process serves")
            check_eq(good.stop(), 0, "the new process's exit code")
            good.kill()
        finally:
            taken.close()
            if new is not None:
                new.kill()
    # Nothing serving on the upgrade socket.
    d = tempfile.mkdtemp(prefix=TMP_PREFIX + "upg-")
    try:
        cfg = default_config(pg.port, free_port())
        upgrade_config(cfg, free_port(), free_port(), os.path.join(d, "nobody.sock"))
        path = os.path.join(d, "mux.toml")
        with open(path, "w") as f:
            f.write(to_toml(cfg))
        r = subprocess.run([SQLMUX_BIN, "--upgrade", "--config", path], capture_output=True, text=True, timeout=20)
        check(r.returncode != 0, f"--upgrade with nothing to take over exited {r.returncode}")
        check("cannot connect to" in r.stderr and "nobody.sock" in r.stderr, f"its message: {r.stderr}")
        log(r.stderr.strip().splitlines()[-1])
    finally:
        shutil.rmtree(d, ignore_errors=True)


def find_socket_activate():
    for p in ("/usr/bin/systemd-socket-activate", "/lib/systemd/systemd-socket-activate"):
        if os.access(p, os.X_OK):
            return p
    return shutil.which("systemd-socket-activate")


class Notify(threading.Thread):
    """A datagram socket standing in for systemd's NOTIFY_SOCKET; keeps
    every message with the pid that sent it (SO_PASSCRED)."""

    def __init__(self, path):
        super().__init__(daemon=True)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self.sock.settimeout(0.2)
        self.messages = []  # (pid, text)
        self.stop = False

    def run(self):
        while not self.stop:
            try:
                data, anc, _, _ = self.sock.recvmsg(4096, socket.CMSG_SPACE(12))
            except socket.timeout:
                continue
            except OSError:
                return
            pid = None
            for level, kind, payload in anc:
                if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                    pid = int.from_bytes(payload[0:4], "little")
            self.messages.append((pid, data.decode("utf-8", "replace")))


def case_socket_activation_and_sigusr2(pg):
    """Under systemd-socket-activate: the inherited socket is what gets
    handed over; SIGUSR2 starts the new process, which sends MAINPID=<its
    pid> and READY=1; the old one sends no STOPPING=1 after it. At issue
    16's size: pgbench -S with 100 persistent and 8 connect-per-transaction
    clients and an asyncpg pool of 50 across it, no failure, the persistent
    clients listed by the new process, the old one gone while they run."""
    require_sqlmux("online upgrade")
    tool = find_socket_activate()
    if not tool:
        raise Skip("systemd-socket-activate not installed (Debian package systemd)")
    d = tempfile.mkdtemp(prefix=TMP_PREFIX + "upg-")
    act = None
    new_pid = None
    notify = None
    logf = None
    apool = None
    try:
        with open(os.path.join(d, "owner.pid"), "w") as f:
            f.write(str(os.getpid()))
        port, mport, aport = free_port(), free_port(), free_port()
        cfg = default_config(pg.port, port)
        upgrade_config(cfg, mport, aport, os.path.join(d, "upgrade.sock"))
        cfg_path = os.path.join(d, "mux.toml")
        with open(cfg_path, "w") as f:
            f.write(to_toml(cfg))
        notify_path = os.path.join(d, "notify.sock")
        notify = Notify(notify_path)
        notify.start()
        log_path = os.path.join(d, "mux.log")
        logf = open(log_path, "ab")
        act = subprocess.Popen([tool, f"--listen=127.0.0.1:{port}", "--fdname=sqlmux.socket",
                                f"--setenv=NOTIFY_SOCKET={notify_path}",
                                os.path.abspath(SQLMUX_BIN), "--config", cfg_path],
                               stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT)
        with open(os.path.join(d, "daemon.pid"), "w") as f:
            f.write(str(act.pid))

        def text():
            with open(log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")

        def wait_log(needle, timeout=15.0):
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if needle in text():
                    return
                time.sleep(0.05)
            fail(f"{needle!r} not in the log:\n{text()}")

        wait_log(f"Listening on 127.0.0.1:{port}")
        check_eq(query_42(port), 42, "first query through the activated socket")
        check(re.search(rf"listening on 127\.0\.0\.1:{port} \(postgres\): socket from systemd", text()),
              f"the socket came from systemd:\n{text()}")
        old_pid = act.pid  # systemd-socket-activate execs sqlmux
        per_tx = Pgbench(port, "-S", "-C", "-c", "8", "-j", "1", "-T", "10")
        persistent = Pgbench(port, "-S", "-c", "100", "-j", "2", "-T", "10")
        apool = AsyncpgPoolLoad(f"postgresql://app:apppass@127.0.0.1:{port}/appdb", 50)
        apool.start()
        check(apool.ready.wait(30) and not apool.errors, f"the asyncpg pool: {apool.errors[:5]}")
        per_tx.start()
        persistent.start()
        time.sleep(2)
        os.kill(old_pid, signal.SIGUSR2)
        wait_log("SIGUSR2: started")
        m = re.search(r"SIGUSR2: started .* --upgrade --config .* \(pid (\d+)\)", text())
        check(m, f"the log names the new process:\n{text()}")
        new_pid = int(m.group(1))
        wait_log("took over from pid")
        check(re.search(rf"listening on 127\.0\.0\.1:{port} \(postgres\): socket from the running process", text()),
              f"the new process serves the inherited socket:\n{text()}")
        # The persistent clients follow at their next transaction end: the
        # old process exits while the load still runs.
        t0 = time.monotonic()
        try:
            rc = act.wait(6)
        except subprocess.TimeoutExpired:
            fail(f"the old process still runs 6 s after the handover, under load:\n{text()[-3000:]}")
        log(f"the old process exited {time.monotonic() - t0:.2f} s after the handover")
        check_eq(rc, 0, "the old process's exit code")
        check(persistent.is_alive(), "pgbench ended before the old process exited")
        listed = [c for c in show_clients(aport) if c["database"] == "appdb"]
        log(f"the new process's SHOW CLIENTS lists {len(listed)} appdb clients during the load")
        check(len(listed) >= 150, f"the new process lists {len(listed)} clients, not the 150 persistent ones")
        per_tx.check("connect per transaction (socket activation)")
        persistent.check("persistent clients (socket activation)")
        apool.check("asyncpg pool (socket activation)")
        check_eq(query_42(port), 42, "the new process serves the activated socket")
        time.sleep(0.3)
        msgs = list(notify.messages)
        mainpid = [(pid, t) for pid, t in msgs if f"MAINPID={new_pid}" in t]
        check(mainpid and mainpid[0][0] == new_pid and "READY=1" in mainpid[0][1],
              f"MAINPID={new_pid} with READY=1 from the new process; got {msgs}")
        after = msgs[msgs.index(mainpid[0]):]
        check(not any(pid == old_pid and "STOPPING=1" in t for pid, t in msgs),
              f"the old process said STOPPING=1 although it handed over: {msgs}")
        check(not any(pid == old_pid for pid, _ in after),
              f"the old process notified after the new one became the main process: {after}")
        log(f"notify: {mainpid[0][1]!r} from pid {new_pid}")
        check("refused" not in text(), f"connections refused:\n{text()[-3000:]}")
        stop_pid(new_pid, "the new process")
        new_pid = None
    finally:
        if apool is not None:
            apool.stop.set()
        if act is not None and act.poll() is None:
            act.kill()
            act.wait(10)
        if new_pid is not None and pid_alive(new_pid):
            os.kill(new_pid, signal.SIGKILL)
        if notify is not None:
            notify.stop = True
            notify.join(2)
            notify.sock.close()
        if logf is not None:
            logf.close()
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    run_cases(__file__, [case_upgrade_under_pgbench, case_idle_clients_handed_over, case_busy_clients_follow,
                         case_back_to_back_clients_follow, case_lost_answer_one_server,
                         case_mysql_idle_clients_handed_over, case_refused_idle_client_stays,
                         case_failed_upgrade_keeps_old_serving,
                         case_socket_activation_and_sigusr2], timeout=240, setup=setup)
