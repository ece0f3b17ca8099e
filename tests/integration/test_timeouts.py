#!/usr/bin/python3
"""Client timeouts PgBouncer users expect (issue 18, README "Timeouts"),
on a PostgreSQL and a MySQL pool each:

- client_idle_timeout: a client idle outside a transaction is ended with
  PostgreSQL's FATAL 57P05 (idle_session_timeout) / MySQL 8's ERR 4031
  (ER_CLIENT_INTERACTION_TIMEOUT, as for wait_timeout); a client running a
  long query or busy with short ones is not;
- idle_transaction_timeout: a client idle inside a transaction gets FATAL
  25P03 (idle_in_transaction_session_timeout) / ERR 4031; its transaction
  is rolled back and the pool (size 1) serves the next client outside it;
- transaction_timeout: a transaction open longer gets FATAL 25P04
  (PostgreSQL 17's transaction_timeout) / ERR 4031, even while busy;
- query_timeout: a request running longer is cancelled on the server
  (CancelRequest: the server's 57014 / KILL QUERY: ERR 1317); the client
  keeps its session;
- server.client_login_timeout: a connection that does not log in is
  closed (FATAL 08P01 / ERR 1043 "Bad handshake") after it, not 60s.

Each asserts the error the client received (read off its socket before
the close), sqlmux_client_errors_total{reason=...} and the log line with
the client's address."""

import re
import select
import socket
import threading
import time
import urllib.request

import psycopg2

from harness import *
from mysql_harness import *

_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$')


class Both:
    """A PostgreSQL and a MariaDB for each case."""
    LABEL = "PostgreSQL+MariaDB"

    def __enter__(self):
        self.pg = PgServer().__enter__()
        try:
            self.my = MariaDbServer().__enter__()
        except BaseException:
            self.pg.__exit__(None, None, None)
            raise
        self.logfile = self.pg.logfile
        return self

    def __exit__(self, *exc):
        self.my.__exit__(*exc)
        self.pg.__exit__(*exc)
        return False


def errors_total(port: int, reason: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        text = r.read().decode()
    total = 0.0
    for line in text.splitlines():
        m = _SAMPLE.match(line)
        if m and m.group(1) == "sqlmux_client_errors_total" and f'reason="{reason}"' in (m.group(2) or ""):
            total += float(m.group(3))
    return total


def start(srv, server=None, **pool_opts):
    port = free_port()

    def tweak(cfg):
        cfg["metrics"] = {"listen": f"127.0.0.1:{port}"}
        cfg["server"].update(server or {})
    mux = Sqlmux(srv.pg, my=srv.my, tweak=tweak, **pool_opts)
    mux.metrics_port = port
    return mux


def peek(fileno: int, timeout: float = 3.0) -> bytes:
    """What the peer sent (left in the socket for the client library)."""
    s = socket.socket(fileno=fileno)
    try:
        r, _, _ = select.select([s], [], [], timeout)
        check(r, f"nothing arrived within {timeout}s")
        return s.recv(65536, socket.MSG_PEEK)
    finally:
        s.detach()


def pg_error_fields(data: bytes) -> dict:
    check(data[:1] == b"E", f"want an ErrorResponse, got {data[:40]!r}")
    n = int.from_bytes(data[1:5], "big")
    body = data[5:1 + n]
    out = {}
    for part in body.split(b"\x00"):
        if part:
            out[chr(part[0])] = part[1:].decode()
    return out


def my_error(data: bytes) -> tuple[int, str]:
    check(len(data) > 7 and data[4] == 0xFF, f"want an ERR packet, got {data[:40]!r}")
    code = int.from_bytes(data[5:7], "little")
    return code, data[13:4 + int.from_bytes(data[0:3], "little")].decode(errors="replace")


def closed_after(fileno: int, timeout: float = 3.0) -> bool:
    """The peer closed the connection (after what it sent, left unread)."""
    p = select.poll()
    p.register(fileno, select.POLLRDHUP)
    return any(ev & (select.POLLRDHUP | select.POLLHUP) for _, ev in p.poll(timeout * 1000))


def wait_log(mux, pattern: str, timeout: float = 3.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if re.search(pattern, mux.log_text()):
            return
        time.sleep(0.05)
    fail(f"no log line matching {pattern!r}; log tail:\n{mux.log_tail(20)}")


def local_port(fileno: int) -> int:
    s = socket.socket(fileno=fileno)
    try:
        return s.getsockname()[1]
    finally:
        s.detach()


def myfd(c) -> int:
    return c._sock.fileno()  # PyMySQL's socket


def pending(fileno: int) -> bool:
    r, _, _ = select.select([fileno], [], [], 0)
    return bool(r)


class run_bg(threading.Thread):
    """fn() on a thread of its own; join_ok() re-raises what it raised."""

    def __init__(self, fn):
        super().__init__(daemon=True)
        self.fn, self.error = fn, None
        self.start()

    def run(self):
        try:
            self.fn()
        except BaseException as e:  # noqa: BLE001
            self.error = e

    def join_ok(self):
        self.join(10)
        check(not self.is_alive(), "the background query did not finish")
        if self.error is not None:
            fail(f"the client with a query in flight got {self.error!r}")


def busy_pg(mux, seconds: float):
    """A client that runs a short query each 100ms for `seconds`."""
    c = psycopg2.connect(mux.dsn())
    c.autocommit = True
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        c.cursor().execute("SELECT 1")
        time.sleep(0.1)
    return c


def busy_my(mux, seconds: float):
    c = mux.my_connect(autocommit=True)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        q(c, "SELECT 1")
        time.sleep(0.1)
    return c


# --- client_idle_timeout ---------------------------------------------------------


def case_pg_client_idle(srv):
    require_sqlmux("client_idle_timeout")
    with start(srv, mode="session", size=4, client_idle_timeout="400ms") as mux:
        before = errors_total(mux.metrics_port, "client_idle_timeout")
        idle = psycopg2.connect(mux.dsn())
        idle.autocommit = True
        idle.cursor().execute("SELECT 1")
        port = local_port(idle.fileno())
        slow = psycopg2.connect(mux.dsn())
        slow.autocommit = True
        # A query in flight past the limit is not idle; nor is a client busy
        # with short ones.
        t = run_bg(lambda: slow.cursor().execute("SELECT pg_sleep(1.0)"))
        busy = busy_pg(mux, 0.7)  # the idle one is past 400ms by now
        busy.cursor().execute("SELECT 1")
        t.join_ok()
        slow.close()  # unaffected; closed before they idle past the limit themselves
        busy.close()
        f = pg_error_fields(peek(idle.fileno()))
        check_eq(f.get("S"), "FATAL", "severity")
        check_eq(f.get("C"), "57P05", "SQLSTATE")
        check("idle-session timeout" in f.get("M", ""), f"message {f.get('M')!r}")
        check(closed_after(idle.fileno()), "the idle client was not closed")
        expect_error(lambda: idle.cursor().execute("SELECT 1"), ("57P05", None), what="next query")
        wait_log(mux, rf"\(127\.0\.0\.1:{port} [^)]*\): client_idle_timeout \(400 ms")
        check_eq(errors_total(mux.metrics_port, "client_idle_timeout") - before, 1.0, "client_idle_timeout count")
        fresh = psycopg2.connect(mux.dsn())
        fresh.cursor().execute("SELECT 1")
        fresh.close()
        log(f"idle client 127.0.0.1:{port} got FATAL 57P05 and was closed; a busy and a slow client were not")


def case_my_client_idle(srv):
    require_sqlmux("client_idle_timeout")
    with start(srv, mode="session", size=4, client_idle_timeout="400ms") as mux:
        before = errors_total(mux.metrics_port, "client_idle_timeout")
        idle = mux.my_connect(autocommit=True)
        q(idle, "SELECT 1")
        port = local_port(myfd(idle))
        slow = mux.my_connect(autocommit=True)
        t = run_bg(lambda: q(slow, "SELECT SLEEP(1.0)"))
        busy = busy_my(mux, 0.7)
        q(busy, "SELECT 1")
        t.join_ok()
        slow.close()
        busy.close()
        code, msg = my_error(peek(myfd(idle)))
        check_eq(code, 4031, "MySQL error code")
        check(closed_after(myfd(idle)), "the idle client was not closed")
        expect_my_error(lambda: q(idle, "SELECT 1"), (4031, 2006, 2013), what="next query")
        wait_log(mux, rf"\(127\.0\.0\.1:{port} [^)]*\): client_idle_timeout \(400 ms")
        check_eq(errors_total(mux.metrics_port, "client_idle_timeout") - before, 1.0, "client_idle_timeout count")
        fresh = mux.my_connect()
        q(fresh, "SELECT 1")
        fresh.close()
        log(f"idle client 127.0.0.1:{port} got ERR 4031 ({msg!r}) and was closed")


# --- idle_transaction_timeout ---------------------------------------------------


def case_pg_idle_transaction(srv):
    require_sqlmux("idle_transaction_timeout")
    with start(srv, mode="transaction", size=1, idle_transaction_timeout="400ms") as mux:
        setup = psycopg2.connect(mux.dsn())
        setup.autocommit = True
        setup.cursor().execute("CREATE TABLE IF NOT EXISTS tmo_it (x int)")
        setup.cursor().execute("TRUNCATE tmo_it")
        setup.close()
        before = errors_total(mux.metrics_port, "idle_transaction_timeout")
        tx = psycopg2.connect(mux.dsn())
        tx.cursor().execute("INSERT INTO tmo_it VALUES (1)")  # BEGIN implied; left open
        port = local_port(tx.fileno())
        f = pg_error_fields(peek(tx.fileno()))
        check_eq(f.get("C"), "25P03", "SQLSTATE")
        check_eq(f.get("S"), "FATAL", "severity")
        check("idle-in-transaction timeout" in f.get("M", ""), f"message {f.get('M')!r}")
        check(closed_after(tx.fileno()), "the client was not closed")
        # The pool's one server connection serves the next client, outside
        # the rolled-back transaction.
        nxt = psycopg2.connect(mux.dsn())
        nxt.autocommit = True
        cur = nxt.cursor()
        cur.execute("SELECT count(*) FROM tmo_it")
        check_eq(cur.fetchone()[0], 0, "rows of the rolled-back transaction")
        cur.execute("SELECT now() = statement_timestamp()")
        check_eq(cur.fetchone()[0], True, "the next client runs outside a transaction")
        time.sleep(0.6)  # idle outside a transaction: not ended (client_idle_timeout is off)
        cur.execute("SELECT 1")
        nxt.close()
        wait_log(mux, rf"\(127\.0\.0\.1:{port} [^)]*\): idle_transaction_timeout \(400 ms")
        check_eq(errors_total(mux.metrics_port, "idle_transaction_timeout") - before, 1.0, "count")
        log("idle in transaction: FATAL 25P03, rolled back, the pool of 1 serves on")


def case_my_idle_transaction(srv):
    require_sqlmux("idle_transaction_timeout")
    with start(srv, mode="transaction", size=1, idle_transaction_timeout="400ms") as mux:
        setup = mux.my_connect(autocommit=True)
        q(setup, "CREATE TABLE IF NOT EXISTS tmo_it (x int) ENGINE=InnoDB")
        q(setup, "TRUNCATE tmo_it")
        setup.close()
        before = errors_total(mux.metrics_port, "idle_transaction_timeout")
        tx = mux.my_connect(autocommit=False)
        q(tx, "BEGIN")
        q(tx, "INSERT INTO tmo_it VALUES (1)")
        port = local_port(myfd(tx))
        code, _ = my_error(peek(myfd(tx)))
        check_eq(code, 4031, "MySQL error code")
        check(closed_after(myfd(tx)), "the client was not closed")
        nxt = mux.my_connect(autocommit=True)
        check_eq(one(nxt, "SELECT count(*) FROM tmo_it"), 0, "rows of the rolled-back transaction")
        check_eq(one(nxt, "SELECT @@in_transaction"), 0, "the next client runs outside a transaction")
        time.sleep(0.6)
        q(nxt, "SELECT 1")
        nxt.close()
        wait_log(mux, rf"\(127\.0\.0\.1:{port} [^)]*\): idle_transaction_timeout \(400 ms")
        check_eq(errors_total(mux.metrics_port, "idle_transaction_timeout") - before, 1.0, "count")
        log("idle in transaction: ERR 4031, rolled back, the pool of 1 serves on")


# --- transaction_timeout --------------------------------------------------------


def case_pg_transaction_timeout(srv):
    require_sqlmux("transaction_timeout")
    with start(srv, mode="transaction", size=2, transaction_timeout="600ms") as mux:
        before = errors_total(mux.metrics_port, "transaction_timeout")
        tx = psycopg2.connect(mux.dsn())
        port = local_port(tx.fileno())
        t0 = time.monotonic()
        tx.cursor().execute("SELECT 1")  # BEGIN implied
        tx.cursor().execute("SELECT pg_sleep(0.4)")  # busy for most of the 600ms
        f = pg_error_fields(peek(tx.fileno()))
        elapsed = time.monotonic() - t0
        check_eq(f.get("C"), "25P04", "SQLSTATE")
        check("transaction timeout" in f.get("M", ""), f"message {f.get('M')!r}")
        e = f.get("M")
        check(0.5 < elapsed < 1.5, f"ended after {elapsed:.2f}s, want about 0.6s")
        check(closed_after(tx.fileno()), "the client was not closed")
        other = busy_pg(mux, 0.8)  # autocommit statements: each its own short transaction
        other.close()
        wait_log(mux, rf"\(127\.0\.0\.1:{port} [^)]*\): transaction_timeout \(600 ms")
        check_eq(errors_total(mux.metrics_port, "transaction_timeout") - before, 1.0, "count")
        log(f"transaction ended after {elapsed:.2f}s: FATAL 25P04 {e}")


def case_my_transaction_timeout(srv):
    require_sqlmux("transaction_timeout")
    with start(srv, mode="transaction", size=2, transaction_timeout="600ms") as mux:
        before = errors_total(mux.metrics_port, "transaction_timeout")
        tx = mux.my_connect(autocommit=False)
        port = local_port(myfd(tx))
        t0 = time.monotonic()
        q(tx, "BEGIN")
        e = expect_my_error(lambda: q(tx, "SELECT SLEEP(3)"), (4031,), what="a transaction past 600ms")
        elapsed = time.monotonic() - t0
        check(0.5 < elapsed < 1.5, f"ended after {elapsed:.2f}s, want about 0.6s")
        nxt = mux.my_connect(autocommit=True)
        check_eq(one(nxt, "SELECT @@in_transaction"), 0, "the next client runs outside a transaction")
        nxt.close()
        other = busy_my(mux, 0.8)
        other.close()
        wait_log(mux, rf"\(127\.0\.0\.1:{port} [^)]*\): transaction_timeout \(600 ms")
        check_eq(errors_total(mux.metrics_port, "transaction_timeout") - before, 1.0, "count")
        log(f"busy transaction ended after {elapsed:.2f}s: {e!r}")


# --- query_timeout --------------------------------------------------------------


def case_pg_query_timeout(srv):
    require_sqlmux("query_timeout")
    with start(srv, mode="transaction", size=2, query_timeout="500ms") as mux:
        before = errors_total(mux.metrics_port, "query_timeout")
        c = psycopg2.connect(mux.dsn())
        c.autocommit = True
        port = local_port(c.fileno())
        other = psycopg2.connect(mux.dsn())
        other.autocommit = True
        other.cursor().execute("SELECT pg_sleep(0.3)")  # under the limit: runs to its end
        t0 = time.monotonic()
        expect_error(lambda: c.cursor().execute("SELECT pg_sleep(5)"), "57014",
                     contains="canceling statement", what="a 5s query under query_timeout 500ms")
        elapsed = time.monotonic() - t0
        check(0.45 < elapsed < 1.5, f"cancelled after {elapsed:.2f}s")
        cur = c.cursor()
        cur.execute("SELECT 1")  # the session stays
        check_eq(cur.fetchone()[0], 1, "the same connection after the cancel")
        # Inside a transaction, as statement_timeout: the transaction is
        # aborted (25P02 until ROLLBACK), the session stays.
        c.autocommit = False
        c.cursor().execute("SELECT 1")
        expect_error(lambda: c.cursor().execute("SELECT pg_sleep(5)"), "57014", what="in a transaction")
        c.rollback()
        c.cursor().execute("SELECT 1")
        c.close()
        other.cursor().execute("SELECT 1")
        other.close()
        wait_log(mux, rf"\(127\.0\.0\.1:{port} [^)]*\): query_timeout \(500 ms")
        check_eq(errors_total(mux.metrics_port, "query_timeout") - before, 2.0, "query_timeout count")
        log(f"a 5s query got 57014 after {elapsed:.2f}s; the session served on")


def case_my_query_timeout(srv):
    require_sqlmux("query_timeout")
    with start(srv, mode="transaction", size=2, query_timeout="500ms") as mux:
        before = errors_total(mux.metrics_port, "query_timeout")
        c = mux.my_connect(autocommit=True)
        port = local_port(myfd(c))
        other = mux.my_connect(autocommit=True)
        q(other, "SELECT SLEEP(0.3)")
        t0 = time.monotonic()
        expect_my_error(lambda: q(c, "SELECT COUNT(*) FROM information_schema.columns a, "
                                                  "information_schema.columns b, information_schema.columns c"), (1317,),
                        what="a long query under query_timeout 500ms")
        elapsed = time.monotonic() - t0
        check(0.45 < elapsed < 2.0, f"interrupted after {elapsed:.2f}s")
        check_eq(one(c, "SELECT 1"), 1, "the same connection after the kill")
        t0 = time.monotonic()
        try:
            r = one(c, "SELECT SLEEP(5)")  # killed too (MariaDB 1317, or 1 from SLEEP)
        except Exception as e:  # noqa: BLE001
            r = f"ERR {my_errno(e)}"
        slept = time.monotonic() - t0
        check(slept < 2.0, f"SLEEP(5) ran {slept:.2f}s")
        c.close()
        check_eq(one(other, "SELECT 1"), 1, "another client")
        other.close()
        wait_log(mux, rf"\(127\.0\.0\.1:{port} [^)]*\): query_timeout \(500 ms")
        check_eq(errors_total(mux.metrics_port, "query_timeout") - before, 2.0, "query_timeout count")
        log(f"a long query got ERR 1317 after {elapsed:.2f}s; SLEEP(5) returned {r} after {slept:.2f}s")


# --- client_login_timeout -------------------------------------------------------


def case_login_timeout(srv):
    require_sqlmux("client_login_timeout")
    server = {"client_login_timeout": "500ms", "auth_failure_delay": "100ms",
              "auth_failure_max_delay": "200ms"}
    with start(srv, server=server, size=2) as mux:
        before = errors_total(mux.metrics_port, "login_timeout")
        pg = socket.create_connection((mux.host, mux.port), timeout=5)
        my = socket.create_connection((mux.host, mux.my_port), timeout=5)
        t0 = time.monotonic()
        greeting = my.recv(4096)  # the server speaks first
        check(greeting[4:5] == b"\x0a", f"want a handshake, got {greeting[:20]!r}")
        f = pg_error_fields(peek(pg.fileno()))
        check_eq(f.get("C"), "08P01", "SQLSTATE")
        code, _ = my_error(peek(my.fileno()))
        elapsed = time.monotonic() - t0
        check_eq(code, 1043, "MySQL error code")
        check(elapsed < 2.0, f"closed after {elapsed:.2f}s")
        check(closed_after(pg.fileno()) and closed_after(my.fileno()), "not closed")
        pg.close()
        my.close()
        check_eq(errors_total(mux.metrics_port, "login_timeout") - before, 2.0, "login_timeout count")
        c = psycopg2.connect(mux.dsn())
        c.cursor().execute("SELECT 1")
        c.close()
        m = mux.my_connect()
        q(m, "SELECT 1")
        m.close()
        log(f"silent connections closed after {elapsed:.2f}s: FATAL 08P01 / ERR 1043")


def case_config_rejected(srv):
    require_sqlmux("config validation")
    base = ('[[listener]]\nprotocol = "postgres"\nlisten = "127.0.0.1:6432"\n'
            '[[user]]\nname = "u"\npassword = "p"\n')
    pool = '[[pool]]\nname = "a"\nbackends = [ { address = "127.0.0.1:5432" } ]\n'
    rc, out, err = check_config('[server]\nclient_login_timeout = "10s"\n' + base + pool +
                                'client_idle_timeout = "5m"\nidle_transaction_timeout = "30s"\n'
                                'transaction_timeout = "1h"\nquery_timeout = "30s"\n')
    check_eq(rc, 0, f"a valid config with the timeouts ({(out + err)[:300]!r})")
    for text, where, why in [
        (base + pool + "client_idle_timeout = 5\n", "pool[0].client_idle_timeout", "expected a duration"),
        (base + pool + 'transaction_timeout = "1 s"\n', "pool[0].transaction_timeout", "invalid duration"),
        (base + pool + 'idle_transaction_timeout = "x"\n', "pool[0].idle_transaction_timeout",
         "invalid duration"),
        ('[server]\nclient_login_timeout = "1s"\n' + base + pool, "server.client_login_timeout",
         "more than auth_failure_max_delay"),
    ]:
        rc, out, err = check_config(text)
        check(rc != 0, f"accepted: {text!r}")
        check(where in out + err and why in out + err, f"{where}: {why} not in {(out + err)[:300]!r}")
    log("the keys load; malformed values are refused with their key path")


if __name__ == "__main__":
    run_cases(__file__, [case_config_rejected, case_pg_client_idle, case_my_client_idle,
                         case_pg_idle_transaction, case_my_idle_transaction,
                         case_pg_transaction_timeout, case_my_transaction_timeout,
                         case_pg_query_timeout, case_my_query_timeout,
                         case_login_timeout], timeout=100, server=Both, direct=False)
