#!/usr/bin/python3
"""Hostile clients (issue 7). One sqlmux (2 workers) serves four well-behaved
clients whose every result is checked, while hostile clients send random
garbage, a startup packet and a regular message claiming 2 GB, a startup
packet in 1-byte writes (which must still log in), 2,000 half-open
connections (sqlmux's RSS must stay bounded), and a password-guessing loop
from 127.0.0.2 whose failures past auth_failure_limit are answered late while
the right password from the same address gets in at once. Each hostile client must get a FATAL with the right SQLSTATE or
a clean close; at the end sqlmux still runs and the good clients saw only
correct results."""

import os
import random
import resource
import socket
import struct
import threading
import time
import urllib.request

import psycopg2

from harness import *

ATTACKER = "127.0.0.2"  # Linux routes all of 127/8 to lo
DELAY_S = 1.0


def _rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def _metric(port: int, name: str, labels: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        text = r.read().decode()
    for line in text.splitlines():
        if (line.startswith(name + "{") and labels in line) or (not labels and line.startswith(name + " ")):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def _fatal_or_close(sock: socket.socket, timeout: float = 10.0):
    """Reads what sqlmux answers until it closes: returns (fields of its
    ErrorResponse or None, closed). Only an ErrorResponse (v3) may come."""
    sock.settimeout(timeout)
    data = b""
    deadline = time.monotonic() + timeout
    closed = False
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            break
        except ConnectionResetError:
            closed = True
            break
        if not chunk:
            closed = True
            break
        data += chunk
    if not data:
        return None, closed
    r = parse_startup_reply(data)
    check(r["format"] == "v3", f"answer is not an ErrorResponse: {data[:80]!r}")
    return r["fields"], closed


class GoodClients:
    """Four threads: SELECT $i and insert-then-read-back loops through
    sqlmux, every result compared with what it must be."""

    def __init__(self, mux, n=4):
        self.mux = mux
        self.n = n
        self.stop = threading.Event()
        self.errors: list[str] = []
        self.done = [0] * n
        self.threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(n)]

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for t in self.threads:
            t.join(30)
        return False

    def _run(self, i: int):
        try:
            c = psycopg2.connect(self.mux.dsn(connect_timeout=30))
            c.autocommit = True
            cur = c.cursor()
            k = 0
            while not self.stop.is_set():
                k += 1
                v = i * 1_000_000 + k
                cur.execute("SELECT %s::int", (v,))
                got = cur.fetchone()[0]
                if got != v:
                    self.errors.append(f"client {i}: SELECT {v} returned {got}")
                if k % 4 == 0:  # a transaction: insert, read back
                    c.autocommit = False
                    cur.execute("INSERT INTO hostile_t (client, n) VALUES (%s, %s) RETURNING n", (i, k))
                    cur.execute("SELECT n FROM hostile_t WHERE client = %s ORDER BY n DESC LIMIT 1", (i,))
                    got = cur.fetchone()[0]
                    c.commit()
                    c.autocommit = True
                    if got != k:
                        self.errors.append(f"client {i}: read back {got} after inserting {k}")
                self.done[i] += 1
            c.close()
        except Exception as e:  # noqa: BLE001
            self.errors.append(f"client {i}: {type(e).__name__}: {e}")

    def check(self, what: str):
        check(not self.errors, f"{what}: well-behaved clients saw: " + "; ".join(self.errors[:5]))


def _setup(pg):
    pg.psql("CREATE TABLE hostile_t (client int, n int); GRANT ALL ON hostile_t TO app;", db="appdb")


def case_hostile_clients(pg):
    require_sqlmux("sqlmux's answers to hostile clients")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, 8192)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))  # inherited by sqlmux
    if want < 4500:
        raise Skip(f"needs ~4,500 file descriptors (limit {hard})")
    metrics_port = free_port()

    def tweak(cfg):
        cfg["server"]["auth_failure_limit"] = 5
        cfg["server"]["auth_failure_delay"] = f"{int(DELAY_S * 1000)}ms"
        cfg["server"]["auth_failure_max_delay"] = "4s"
        cfg["metrics"] = {"listen": f"127.0.0.1:{metrics_port}"}

    with Sqlmux(pg, size=8, tweak=tweak) as mux, GoodClients(mux) as good:
        pid = mux.proc.pid
        t_start = time.monotonic()

        # -- random garbage instead of a startup packet ----------------------
        rnd = random.Random(7)
        for n in range(30):
            s = socket.create_connection((mux.host, mux.port), timeout=10)
            size = rnd.choice([1, 7, 64, 3000, 20000])
            try:
                s.sendall(bytes(rnd.getrandbits(8) for _ in range(size)))
            except OSError:  # closed by sqlmux while sending
                pass
            fields, closed = _fatal_or_close(s, timeout=0.5 if size < 8 else 3)
            if fields is not None:
                check(fields.get("S") == "FATAL" and fields.get("C") in ("08P01", "0A000"),
                      f"garbage {n} ({size} bytes): unexpected answer {fields}")
            s.close()
        # Garbage where a message should be, after login.
        r = mux.raw()
        r.send(b"\x01" + struct.pack("!I", 4 + 100) + os.urandom(100))
        err, closed = r.read_until_error_or_eof(10)
        check(err is not None and err.get("C") == "08P01" and closed,
              f"unknown message type after login: {err}, closed={closed}")
        log("garbage: FATAL 08P01 or closed")

        # -- a startup packet claiming 2 GB ----------------------------------
        s = socket.create_connection((mux.host, mux.port), timeout=10)
        s.sendall(struct.pack("!II", 0x80000000, 196608) + b"user\0app\0")
        fields, closed = _fatal_or_close(s)
        s.close()
        # As PostgreSQL ("invalid length of startup packet"): closed, no answer.
        check(fields is None, f"2 GB startup packet: answered {fields}")
        check(closed, "2 GB startup packet: connection not closed")

        # -- a regular message claiming 2 GB after login ---------------------
        r = mux.raw()
        check_eq(r.scalar("SELECT 7"), "7", "before the 2 GB message")
        r.send(b"Q" + struct.pack("!I", 0x80000000) + b"SELECT 1")
        err, closed = r.read_until_error_or_eof(10)
        check(err is not None and err.get("C") == "08P01" and err.get("S") == "FATAL",
              f"2 GB message after login: {err}")
        check(closed, "2 GB message after login: connection not closed")
        log("2 GB lengths: closed silently before login, FATAL 08P01 after")

        # -- a startup packet (and the whole login) in 1-byte writes -----------
        r = RawPg(mux.host, mux.port)

        def bytewise(data, sock=r.sock):
            for b in data:
                sock.sendall(bytes([b]))
                time.sleep(0.001)

        r.send = bytewise
        r.startup("app", "appdb", "apppass")
        check_eq(r.scalar("SELECT 40 + 2"), "42", "client that logged in byte by byte")
        r.terminate()
        log("1-byte writes: logged in and queried")

        # -- 2,000 half-open connections ----------------------------------------
        rss0 = _rss_kb(pid)
        half = []
        try:
            for n in range(2000):
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                s.settimeout(15)
                # 50 per source address: under max_login_clients_per_address (100).
                s.bind((f"127.0.1.{n % 40 + 1}", 0))
                s.connect((mux.host, mux.port))
                if n % 2:
                    s.sendall(struct.pack("!II", 60, 196608) + b"user\0ap")  # partial startup
                half.append(s)
            time.sleep(1.0)
            check(mux.running(), "sqlmux died under 2,000 half-open connections")
            mux.assert_serving(what="a new client while 2,000 connections are half-open")
            rss1 = _rss_kb(pid)
            log(f"2,000 half-open connections: VmRSS {rss0 // 1024} -> {rss1 // 1024} MB")
            check(rss1 - rss0 < 200 * 1024,
                  f"VmRSS grew by {(rss1 - rss0) // 1024} MB for 2,000 half-open connections")
        finally:
            for s in half:
                s.close()
        good.check("during half-open connections")

        # -- a password guess loop from another address ----------------------------
        # The first auth_failure_limit failures of an address and user are
        # answered at once, later ones late; the right password never waits.
        delayed_before = _metric(metrics_port, "sqlmux_auth_failures_delayed_total", "")
        for n in range(5):
            r = RawPg(mux.host, mux.port, source_address=ATTACKER)
            t0 = time.monotonic()
            try:
                r.startup("app", "appdb", f"guess{n}")
                fail(f"guess {n} accepted")
            except PgError as e:
                check_eq((e.severity, e.sqlstate), ("FATAL", "28P01"), f"guess {n}")
            finally:
                r.close()
            check(time.monotonic() - t0 < DELAY_S, f"guess {n} (a free failure) answered late")
        for n in (5, 6):
            r = RawPg(mux.host, mux.port, source_address=ATTACKER)
            t0 = time.monotonic()
            try:
                r.startup("app", "appdb", f"guess{n}")
                fail(f"guess {n} accepted")
            except PgError as e:
                check_eq((e.severity, e.sqlstate), ("FATAL", "28P01"), f"guess {n}")
            finally:
                r.close()
            waited = time.monotonic() - t0
            want = DELAY_S * (2 ** (n - 5))
            check(want * 0.9 <= waited < want + 2, f"guess {n} answered after {waited:.2f}s, want {want}s")
        r = RawPg(mux.host, mux.port, source_address=ATTACKER)
        t0 = time.monotonic()
        r.startup("app", "appdb", "apppass")
        waited = time.monotonic() - t0
        check(waited < DELAY_S, f"the right password from {ATTACKER} took {waited:.2f}s")
        check_eq(r.scalar("SELECT 1"), "1", f"the right password from {ATTACKER} after 7 guesses")
        r.terminate()
        # 127.0.0.1 is not affected: a wrong password is 28P01 at once.
        t0 = time.monotonic()
        expect_error(lambda: psycopg2.connect(mux.dsn(password="wrong")), (None, "28P01"),
                     "password authentication failed", what="a wrong password from 127.0.0.1")
        check(time.monotonic() - t0 < DELAY_S, "a wrong password from 127.0.0.1 answered late")
        mux.assert_serving(what="the right password from 127.0.0.1")
        got = _metric(metrics_port, "sqlmux_auth_failures_delayed_total", "")
        check_eq(got - delayed_before, 2.0, "sqlmux_auth_failures_delayed_total increase")
        log(f"guess loop: 5 x 28P01 at once, then {DELAY_S}s and {2 * DELAY_S}s late; the right password at once")

        # -- the end -------------------------------------------------------------------
        time.sleep(0.5)
        good.stop.set()
        for t in good.threads:
            t.join(30)
        good.check("at the end")
        check(all(d > 0 for d in good.done), f"a well-behaved client made no progress: {good.done}")
        check(mux.running(), "sqlmux is not running at the end")
        mux.assert_serving()
        log(f"well-behaved clients: {sum(good.done)} checked results in {time.monotonic() - t_start:.1f}s")


def _reply_then_close(addr, data: bytes, timeout: float = 5.0) -> tuple[bytes, bool]:
    """Connects, sends data, reads until the peer closes: (bytes, closed)."""
    s = socket.create_connection(addr, timeout=timeout)
    got, closed = b"", False
    try:
        s.sendall(data)
        while True:
            chunk = s.recv(65536)
            if not chunk:
                closed = True
                break
            got += chunk
    except ConnectionResetError:  # closed with our bytes unread
        closed = True
    except socket.timeout:
        pass
    finally:
        s.close()
    return got, closed


def case_bad_startup_length_closes_silently(pg):
    """Issue 19: node-postgres may send its Terminate ('X', length 4) before
    the startup packet. PostgreSQL reads 'X\\0\\0\\0' as the length, logs
    "invalid length of startup packet" and closes without a word; so must
    sqlmux (with a log line and client_protocol_error counted). A startup
    packet with a bad layout still gets FATAL 08P01 from both. Run with
    SQLMUX_TEST_DIRECT=1 to see PostgreSQL itself do the same."""
    metrics_port = free_port()

    def tweak(cfg):
        cfg["metrics"] = {"listen": f"127.0.0.1:{metrics_port}"}

    with Sqlmux(pg, size=2, tweak=tweak) as mux:
        before = 0.0 if mux.direct else _metric(metrics_port, "sqlmux_client_errors_total",
                                                'reason="client_protocol_error"')
        silent = [
            ("Terminate before the startup packet", b"X\0\0\0\x04"),
            ("length 4", struct.pack("!I", 4)),
            ("length 7", struct.pack("!I", 7) + b"\0\0\0"),
            ("length 20000", struct.pack("!II", 20000, 196608) + b"user\0app\0"),
            ("length 2 GB", struct.pack("!II", 0x80000000, 196608)),
            ("CancelRequest of 12 bytes", struct.pack("!III", 12, 80877102, 1)),
        ]
        for what, data in silent:
            got, closed = _reply_then_close((mux.host, mux.port), data)
            check_eq(got, b"", f"{what}: bytes sent back")
            check(closed, f"{what}: connection not closed")
        # A bad parameter layout is answered with FATAL 08P01, as by PostgreSQL.
        body = struct.pack("!I", 196608) + b"user\0app\0database"  # no terminator
        got, closed = _reply_then_close((mux.host, mux.port), struct.pack("!I", len(body) + 4) + body)
        rep = parse_startup_reply(got)
        check(rep["format"] == "v3" and rep["fields"].get("S") == "FATAL"
              and rep["fields"].get("C") == "08P01", f"bad layout: answer {got[:120]!r}")
        check(closed, "bad layout: connection not closed")
        mux.assert_serving()
        if not mux.direct:
            time.sleep(0.3)
            after = _metric(metrics_port, "sqlmux_client_errors_total", 'reason="client_protocol_error"')
            check_eq(after - before, float(len(silent) + 1), "client_protocol_error increase")
            lines = [ln for ln in mux.log_text().splitlines() if "invalid startup packet" in ln]
            check(len(lines) >= len(silent) + 1, f"log lines for the bad packets: {lines}")


# --- Issue 18: out of file descriptors ---------------------------------------

FD_LIMIT = 48  # soft = hard: sqlmux cannot raise it
FD_CLIENTS = 60


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _fd_exhaustion(mux, metrics_port, connect, refused_error, what):
    """Opens FD_CLIENTS clients through `mux` (started under FD_LIMIT): the
    ones that fit are served, the others are refused at once with
    `refused_error` (the protocol's too-many-connections error) instead of
    hanging; during a few seconds of exhaustion with clients still coming
    sqlmux does not spin and logs a bounded number of lines; once the
    clients leave, new ones are served."""
    held, refused, other = [], [], []
    for _ in range(FD_CLIENTS):
        t0 = time.monotonic()
        try:
            held.append(connect())
        except Exception as e:  # noqa: BLE001
            el = time.monotonic() - t0
            (refused if refused_error(e) else other).append((el, f"{type(e).__name__}: {e}"))
            if other:
                break  # e.g. left hanging until its own timeout
    log(f"{what}: {len(held)} clients served, {len(refused)} refused under a limit of {FD_LIMIT}")
    check(not other, f"{what}: clients failed otherwise than refused: {other[:3]}")
    check(held, f"{what}: no client served at all")
    check(refused, f"{what}: {FD_CLIENTS} clients under a limit of {FD_LIMIT} descriptors, none refused")
    slow = [el for el, _ in refused if el > 2.0]
    check(not slow, f"{what}: refusals took {max(slow or [0]):.1f}s (not at once)")
    log(f"{what}: a refused client was told: {refused[0][1]!r}")

    # Exhausted, with clients still arriving: no spinning, no log flood.
    stop = threading.Event()
    tries = []

    def arrive():
        while not stop.is_set():
            t0 = time.monotonic()
            try:
                connect().close()
                tries.append(("served", time.monotonic() - t0))
            except Exception as e:  # noqa: BLE001
                tries.append(("refused" if refused_error(e) else f"{type(e).__name__}: {e}",
                              time.monotonic() - t0))
            time.sleep(0.02)

    pid = mux.proc.pid
    cpu0, wall0 = _cpu_seconds(pid), time.monotonic()
    t = threading.Thread(target=arrive, daemon=True)
    t.start()
    time.sleep(3)
    stop.set()
    t.join(30)
    cpu = (_cpu_seconds(pid) - cpu0) / (time.monotonic() - wall0)
    log(f"{what}: {len(tries)} clients arrived during 3 s of exhaustion; sqlmux used {cpu:.0%} of a core")
    bad = [x for x in tries if x[0] not in ("refused", "served")]
    check(not bad, f"{what}: clients arriving while exhausted: {bad[:3]}")
    check(len(tries) >= 5, f"{what}: only {len(tries)} clients got an answer in 3 s (left waiting?)")
    check(cpu < 0.5, f"{what}: sqlmux used {cpu:.0%} of a core while out of descriptors (spinning)")
    text = mux.log_text()
    lines = [ln for ln in text.splitlines() if "Too many open files" in ln]
    log(f"{what}: sqlmux log: {len(text.splitlines())} lines, {len(lines)} of them 'Too many open files'")
    check(0 < len(lines) < 50, f"{what}: {len(lines)} 'Too many open files' log lines")
    check(len(text.splitlines()) < 200, f"{what}: {len(text.splitlines())} log lines (a line per refusal?)")
    check("fd_exhausted" in lines[0], f"{what}: log line names the reason: {lines[0]}")

    for c in held:
        c.close()
    time.sleep(0.5)
    return len(refused) + sum(1 for x in tries if x[0] == "refused")


def case_fd_exhaustion(pg):
    """Issue 18: with ulimit -n 48 and 60 clients, sqlmux logged millions of
    'accept: Too many open files' lines, kept both cores busy, and the extra
    clients hung until their own timeout. Now the extra clients get FATAL
    53300 at once (libpq shows it), the log stays short, the CPU idle, and
    sqlmux serves new clients once descriptors are free again."""
    require_sqlmux("file descriptor limit")
    metrics_port = free_port()

    def tweak(cfg):
        cfg["metrics"] = {"listen": f"127.0.0.1:{metrics_port}"}

    def connect():
        c = psycopg2.connect(mux.dsn(connect_timeout=5))
        c.autocommit = True
        with c.cursor() as cur:
            cur.execute("SELECT 1")
        return c

    def refused_error(e):
        return isinstance(e, psycopg2.OperationalError) and "too many clients already" in str(e)

    with Sqlmux(pg, size=2, tweak=tweak, nofile=(FD_LIMIT, FD_LIMIT)) as mux:
        n = _fd_exhaustion(mux, metrics_port, connect, refused_error, "postgres")
        # The SQLSTATE, as a raw client reads it, while exhausted again.
        held = []
        try:
            while True:
                r = RawPg(mux.host, mux.port, timeout=5)
                try:
                    r.startup("app", "appdb", "apppass")
                except PgError as e:
                    check_eq((e.severity, e.sqlstate), ("FATAL", "53300"), "refusal's severity and SQLSTATE")
                    check("out of file descriptors" in e.fields.get("D", ""), f"refusal's DETAIL: {e.fields}")
                    r.close()
                    break
                held.append(r)
                check(len(held) < FD_CLIENTS, "never refused while filling the limit again")
        finally:
            for r in held:
                r.close()
        time.sleep(0.5)
        mux.assert_serving(what="a new client once descriptors are free again")
        got = _metric(metrics_port, "sqlmux_client_errors_total", 'reason="fd_exhausted"')
        check(got >= n + 1, f"sqlmux_client_errors_total{{reason=fd_exhausted}} = {got}, want >= {n + 1}")


def case_fd_exhaustion_mysql(pg):
    """The same on a mysql listener: ERR 1040 'Too many connections' in
    place of the greeting (sequence id 0), as MySQL sends it."""
    require_sqlmux("file descriptor limit")
    from mysql_harness import MariaDbServer
    import pymysql

    def connect():
        c = pymysql.connect(host=mux.host, port=mux.my_port, user="app", password="apppass", database="appdb",
                            connect_timeout=5, read_timeout=10, autocommit=True)
        with c.cursor() as cur:
            cur.execute("SELECT 1")
        return c

    def refused_error(e):
        return isinstance(e, pymysql.err.OperationalError) and e.args and e.args[0] == 1040

    with MariaDbServer() as my:
        with Sqlmux(None, my=my, size=2, nofile=(FD_LIMIT, FD_LIMIT)) as mux:
            _fd_exhaustion(mux, None, connect, refused_error, "mysql")
            c = connect()
            with c.cursor() as cur:
                cur.execute("SELECT 41 + 1")
                check_eq(cur.fetchone()[0], 42, "a new MySQL client once descriptors are free again")
            c.close()


def case_fd_exhaustion_server_connections(pg):
    """Descriptors run out when a logged-in client needs a server
    connection (a pool of 200 under a limit of 48): the client gets FATAL
    53300 naming the descriptors, as one refused at accept does, not 08001
    "could not connect to server" (the server is fine); no other host is
    tried, the log says it at a limited rate, and the pool serves again
    once descriptors are free."""
    require_sqlmux("file descriptor limit")
    metrics_port = free_port()

    def tweak(cfg):
        cfg["metrics"] = {"listen": f"127.0.0.1:{metrics_port}"}

    with Sqlmux(pg, mode="transaction", size=200, tweak=tweak, nofile=(FD_LIMIT, FD_LIMIT)) as mux:
        held, errors = [], []
        try:
            # Logged-in clients hold a descriptor each (no server
            # connection between transactions) until accept runs out.
            for _ in range(FD_CLIENTS):
                r = RawPg(mux.host, mux.port, timeout=10)
                try:
                    r.startup("app", "appdb", "apppass")
                except PgError as e:
                    check_eq((e.severity, e.sqlstate), ("FATAL", "53300"), "refused at accept")
                    r.close()
                    break
                held.append(r)
            check(len(held) < FD_CLIENTS, "never refused at accept")
            for r in held[:3]:
                r.close()
            held = held[3:]
            time.sleep(0.5)
            # Each BEGIN holds a server connection of its own: they run out.
            for r in held:
                try:
                    res = r.query("BEGIN")
                except ConnectionClosed:
                    errors.append(r.last_result.error or {})
                    continue
                if res.error:
                    errors.append(res.error)
            log(f"{len(held)} logged-in clients began a transaction; {len(errors)} refused")
            check(0 < len(errors) < len(held), f"expected some transactions served and some refused: {len(errors)}")
            codes = {(e.get("S"), e.get("C")) for e in errors}
            check_eq(codes, {("FATAL", "53300")}, "severity and SQLSTATE of every refusal")
            e = errors[0]
            check("server connection" in e.get("M", "") and "out of file descriptors" in e.get("D", ""),
                  f"message and DETAIL: {e}")
            log(f"refused: {e.get('M')!r} / {e.get('D')!r}")
        finally:
            for r in held:
                r.close()
        time.sleep(0.5)
        text = mux.log_text()
        check("trying the next server" not in text, "another host tried for want of a descriptor")
        lines = [ln for ln in text.splitlines() if "server connection(s) not opened as fd_exhausted" in ln]
        check(0 < len(lines) < 10, f"{len(lines)} log lines for server connections not opened")
        got = _metric(metrics_port, "sqlmux_server_errors_total", 'reason="fd_exhausted"')
        check(got >= len(errors), f"sqlmux_server_errors_total{{reason=fd_exhausted}} = {got}, want {len(errors)}")
        mux.assert_serving(what="a new client once descriptors are free again")


if __name__ == "__main__":
    run_cases(__file__, [case_hostile_clients, case_bad_startup_length_closes_silently, case_fd_exhaustion,
                         case_fd_exhaustion_mysql, case_fd_exhaustion_server_connections], timeout=300,
              setup=_setup)
