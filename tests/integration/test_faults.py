#!/usr/bin/python3
"""Faults under load (issue 7): a backend killed with SIGKILL mid-transaction
(PostgreSQL then restarts every backend), PostgreSQL restarted with
`pg_ctl restart -m fast`, a backend that hangs (SIGSTOP) while a long
transaction holds the other slot of a small pool, and a pool filled by far
more clients than it has connections.

Every case runs asyncpg clients in transaction mode that each loop
transactions: BEGIN; set a transaction-local marker; INSERT a row with a
unique id; (optionally hold the transaction); read back the marker and the
ids of the client's own rows; COMMIT. A result is wrong when the marker is
not the client's own, its new row is missing, or its rows are not exactly
its acknowledged commits (+ those of unknown outcome). Every error must be
a proper one (SQLSTATE class 08 or 57, or a lost connection; or asyncpg's
own InternalClientError when it read the server's FATAL after an answer, as
on a direct connection: see ASYNCPG_ERROR_CONSUME and case
fatal_after_answer); no operation may hang. At the end the rows on the
server are counted and checksummed against the acknowledged commits
(CommitLedger), and sqlmux must still
serve without a restart: new clients work, SHOW POOLS and /metrics show no
stuck client or server connection."""

import asyncio
import collections
import os
import re
import signal
import threading
import time
import urllib.request

import asyncpg
import psycopg2

from harness import *

ADMIN_PASS = "adminpass"


def setup(pg):
    pg.psql("CREATE TABLE faults_t (id bigint NOT NULL, task int NOT NULL, val bigint NOT NULL);"
            "CREATE INDEX ON faults_t (task); ALTER TABLE faults_t OWNER TO app;", db="appdb")
    # The harness runs PostgreSQL with synchronous_commit = off: a COMMIT is
    # acknowledged before its WAL is written, and the crash restart after a
    # SIGKILLed backend throws away WAL buffers that were not written yet,
    # i.e. acknowledged commits (PostgreSQL's documented trade-off, not the
    # pooler's). The accounting needs durable acknowledgements.
    pg.psql("ALTER SYSTEM SET synchronous_commit = on")
    pg.psql("SELECT pg_reload_conf()")


def val_of(key: int) -> int:
    return (key * 2654435761) % 1000003


# ---------------------------------------------------------------------------
# sqlmux with the console and /metrics
# ---------------------------------------------------------------------------


def fault_mux(pg, size, **pool_opts) -> Sqlmux:
    admin_port, metrics_port = free_port(), free_port()

    def tweak(cfg):
        cfg["user"].append({"name": "admin", "password": ADMIN_PASS})
        cfg["admin"] = {"listen": f"127.0.0.1:{admin_port}", "users": ["admin"]}
        cfg["metrics"] = {"listen": f"127.0.0.1:{metrics_port}"}

    mux = Sqlmux(pg, mode="transaction", size=size, tweak=tweak, **pool_opts)
    mux.admin_port, mux.metrics_port = admin_port, metrics_port
    return mux


def console(mux, sql) -> list[dict]:
    c = psycopg2.connect(host="127.0.0.1", port=mux.admin_port, dbname="sqlmux", user="admin",
                         password=ADMIN_PASS, connect_timeout=10)
    try:
        c.autocommit = True
        with c.cursor() as cur:
            cur.execute(sql)
            cols = [d[0] for d in cur.description]
            return [dict(zip(cols, r)) for r in cur.fetchall()]
    finally:
        c.close()


_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$')
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def metrics(mux) -> list:
    with urllib.request.urlopen(f"http://127.0.0.1:{mux.metrics_port}/metrics", timeout=10) as r:
        text = r.read().decode()
    out = []
    for line in text.splitlines():
        m = _SAMPLE.match(line)
        if m and not line.startswith("#"):
            out.append((m.group(1), dict(_LABEL.findall(m.group(2) or "")), float(m.group(3))))
    return out


def msum(samples, name, **labels) -> float:
    return sum(v for n, ls, v in samples if n == name and all(ls.get(k) == x for k, x in labels.items()))


def wait_until(what, fn, timeout):
    deadline = time.monotonic() + timeout
    while True:
        try:
            return fn()
        except (TestFailure, psycopg2.Error, OSError) as e:
            if time.monotonic() > deadline:
                fail(f"{what}: still not so after {timeout}s: {e}")
            time.sleep(0.1)


# ---------------------------------------------------------------------------
# The load: asyncpg clients in a thread of their own, with checked results
# ---------------------------------------------------------------------------


class WrongResult(Exception):
    pass


def pg_messages(data: bytes) -> list:
    """(type, fields) of each whole backend message in data: for an
    ErrorResponse the dict of its fields, else None."""
    out = []
    while len(data) >= 5:
        n = int.from_bytes(data[1:5], "big")
        if n < 4 or len(data) < 1 + n:
            break
        t, body = chr(data[0]), data[5:1 + n]
        fields = None
        if t == "E":
            fields = {f[:1].decode(): f[1:].decode(errors="replace") for f in body.split(b"\0") if f}
        out.append((t, fields))
        data = data[1 + n:]
    return out


class Tap:
    """What an asyncpg connection read from its socket: the last few chunks
    (one per data_received) and the last few whole messages in them, to
    judge an error by the bytes behind it."""

    def __init__(self, conn, keep=8):
        self.chunks = collections.deque(maxlen=keep)
        self.messages = collections.deque(maxlen=keep)  # (type, ErrorResponse fields or None)
        self._rest = b""
        tr = conn._transport
        inner, tap = tr.get_protocol(), self

        class Recorder:
            def __getattr__(self, name):
                return getattr(inner, name)

            def data_received(self, data):
                tap._read(bytes(data))
                inner.data_received(data)

        tr.set_protocol(Recorder())

    def _read(self, data):
        self.chunks.append(data)
        buf = self._rest + data
        msgs = pg_messages(buf)
        self.messages.extend(msgs)
        used = 0
        for _ in msgs:
            used += 1 + int.from_bytes(buf[used + 1:used + 5], "big")
        self._rest = buf[used:]


# asyncpg (0.27; MagicStack/asyncpg issues #784, #1069): an ErrorResponse
# read while no operation is in flight moves its protocol to state 2
# (PROTOCOL_ERROR_CONSUME); an operation started before it notices the
# closed socket then fails with this instead of "connection is closed".
ASYNCPG_ERROR_CONSUME = re.compile(r"^cannot switch to state \d+; another operation \(2\) is in progress$")


def fatal_after_answer(msgs) -> bool:
    """The last messages read are the end of an answer and then the
    server's own FATAL of class 57 (it names the server's source routine,
    field R, which nothing sqlmux makes up has): the last operation was
    answered in full (ReadyForQuery; for asyncpg's prepare, which ends with
    a Flush, NoData or RowDescription) before the server ended the
    connection."""
    msgs = list(msgs)
    if len(msgs) < 2 or msgs[-2][0] not in ("Z", "n", "T") or msgs[-1][0] != "E":
        return False
    f = msgs[-1][1]
    return f.get("S") == "FATAL" and f.get("C", "")[:2] == "57" and "R" in f


def classify(e: BaseException, tap: Tap | None = None) -> str:
    """'proper' (an error a client may get from a fault), 'hang' (our own
    operation timeout fired), 'wrong' or 'improper'."""
    if isinstance(e, WrongResult):
        return "wrong"
    if isinstance(e, (asyncio.TimeoutError, TimeoutError)):
        return "hang"
    if isinstance(e, asyncpg.PostgresError):
        st = getattr(e, "sqlstate", None) or ""
        return "proper" if st[:2] in ("08", "57") else "improper"
    if isinstance(e, ConnectionRefusedError):
        return "improper"  # sqlmux itself not listening
    if isinstance(e, asyncpg.InterfaceError) and "closed" in str(e):
        return "proper"
    if isinstance(e, (ConnectionError, EOFError)):
        return "proper"
    if (isinstance(e, asyncpg.InternalClientError) and ASYNCPG_ERROR_CONSUME.match(str(e))
            and tap is not None and fatal_after_answer(tap.messages)):
        # asyncpg's, not sqlmux's: the server answered the last operation and
        # then sent its FATAL 57P01 (fast shutdown), which the client read
        # before it noticed the close. The bytes are the server's own; a
        # direct connection that reads them so fails the same way (case
        # fatal_after_answer).
        return "proper"
    return "improper"


class Load:
    """n asyncpg clients looping checked transactions until stop()."""

    def __init__(self, mux, n, hold=0.0, op_timeout=8.0):
        self.mux, self.n, self.hold, self.op_timeout = mux, n, hold, op_timeout
        self.ledger = CommitLedger()
        self.tx = []  # one dict per transaction attempt
        self.pids = set()  # backends seen inside transactions
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="load", daemon=True)
        self.crashed = None

    def start(self):
        self.t0 = time.monotonic()
        self._thread.start()
        return self

    def stop(self, timeout=20.0):
        self._stop.set()
        self._thread.join(timeout)
        check(not self._thread.is_alive(), f"load clients still running {timeout}s after stop (hung)")
        if self.crashed:
            fail(f"load thread crashed: {self.crashed}")

    def _run(self):
        try:
            asyncio.run(self._main())
        except BaseException as e:  # noqa: BLE001
            self.crashed = f"{type(e).__name__}: {e}"

    async def _main(self):
        await asyncio.gather(*(self._worker(t) for t in range(self.n)))

    async def _op(self, aw, timeout=None):
        return await asyncio.wait_for(aw, timeout or self.op_timeout)

    async def _worker(self, task):
        conn = tap = None
        seq = 0
        acked, doubtful = set(), set()
        while not self._stop.is_set():
            seq += 1
            key = task * 1_000_000 + seq
            marker = f"m{task}:{seq}"
            rec = {"task": task, "seq": seq, "t0": time.monotonic(), "phase": "connect", "outcome": "ok",
                   "err": None, "state": None}
            try:
                if conn is None:
                    conn = await self._op(asyncpg.connect(host=self.mux.host, port=self.mux.port, user="app",
                                                          password="apppass", database="appdb",
                                                          timeout=self.op_timeout))
                    tap = Tap(conn)
                rec["phase"] = "begin"
                rec["t_begin"] = time.monotonic()
                await self._op(conn.execute("BEGIN"))
                rec["t_served"] = time.monotonic()
                rec["phase"] = "body"
                await self._op(conn.execute("SELECT set_config('faults.marker', $1, true)", marker))
                await self._op(conn.execute("INSERT INTO faults_t (id, task, val) VALUES ($1, $2, $3)",
                                            key, task, val_of(key)))
                if self.hold:
                    await self._op(conn.execute("SELECT pg_sleep($1)", self.hold))
                got, ids, pid = await self._op(conn.fetchrow(
                    "SELECT current_setting('faults.marker'), array_agg(id), pg_backend_pid() "
                    "FROM faults_t WHERE task = $1", task))
                rec["pid"] = pid
                self.pids.add(pid)
                ids = set(ids or [])
                if got != marker:
                    raise WrongResult(f"marker {got!r}, want {marker!r} (backend {pid})")
                if key not in ids:
                    raise WrongResult(f"own new row {key} not visible (backend {pid})")
                if not acked <= ids:
                    raise WrongResult(f"acknowledged rows missing: {sorted(acked - ids)[:5]}")
                if not ids <= acked | doubtful | {key}:
                    raise WrongResult(f"rows nobody committed: {sorted(ids - acked - doubtful - {key})[:5]}")
                rec["phase"] = "commit"
                await self._op(conn.execute("COMMIT"))
                self.ledger.ack(key)
                acked.add(key)
            except Exception as e:  # noqa: BLE001
                rec["outcome"] = classify(e, tap)
                rec["state"] = getattr(e, "sqlstate", None)
                rec["err"] = f"{type(e).__name__} {rec['state']} {str(e).strip()[:160]}"
                if isinstance(e, asyncpg.InternalClientError) and tap is not None:
                    rec["read"] = ([t for t, _ in tap.messages], tap.chunks[-1] if tap.chunks else b"")
                if rec["phase"] != "connect":
                    self.ledger.failed(key, rec["phase"] == "commit")
                    if rec["phase"] == "commit":
                        doubtful.add(key)
                if conn is not None:
                    conn.terminate()
                    conn = tap = None
                await asyncio.sleep(0.05)
            rec["t1"] = time.monotonic()
            self.tx.append(rec)
            await asyncio.sleep(0.002)
        if conn is not None:
            try:
                await asyncio.wait_for(conn.close(), 5)
            except Exception:  # noqa: BLE001
                conn.terminate()

    # -- what happened --------------------------------------------------------
    def failures(self, outcome=None):
        return [r for r in self.tx if r["outcome"] != "ok" and (outcome is None or r["outcome"] == outcome)]

    def oks(self):
        return [r for r in self.tx if r["outcome"] == "ok"]

    def report(self, what):
        f = self.failures()
        log(f"{what}: {len(self.tx)} transactions, {len(self.oks())} committed, {len(f)} failed "
            f"({self.ledger.summary()}); backends used {len(self.pids)}")
        held = sorted(r["t1"] - r["t_served"] for r in self.oks())
        if held:
            log(f"  committed transactions: BEGIN answered to COMMIT answered, median {held[len(held) // 2] * 1000:.0f} ms,"
                f" max {held[-1] * 1000:.0f} ms")
        by = {}
        for r in f:
            k = (r["outcome"], r["phase"], r["state"], type_of(r["err"]))
            by[k] = by.get(k, 0) + 1
        for k, n in sorted(by.items(), key=lambda x: -x[1]):
            log(f"  {n} x {k}")
        for r in [r for r in f if "read" in r][:5]:
            log(f"  {r['outcome']}: task {r['task']} seq {r['seq']} in {r['phase']}: {r['err']}; its last messages "
                f"{r['read'][0]}, the last chunk read {r['read'][1][-160:]!r}")
        for r in [r for r in f if r["outcome"] != "proper"][:10]:
            log(f"  NOT PROPER: task {r['task']} seq {r['seq']} in {r['phase']}: {r['outcome']}: {r['err']}")

    def check_results(self):
        """No wrong result, no hang, every error a proper one."""
        bad = [f"task {r['task']} seq {r['seq']} {r['phase']}: {r['outcome']}: {r['err']}"
               for r in self.failures() if r["outcome"] != "proper"]
        check(not bad, f"{len(bad)} transaction(s) with a wrong result, a hang or an improper error:\n  "
              + "\n  ".join(bad[:15]))

    def check_recovered(self, t_back, within, what):
        """Every client commits again, the first time within `within` s of
        t_back, and no transaction begun later than that fails."""
        firsts = {}
        for r in self.oks():
            if r["t0"] >= t_back and r["task"] not in firsts:
                firsts[r["task"]] = r["t1"] - t_back
        if firsts:
            slowest = max(firsts, key=firsts.get)
            mine = [r for r in self.tx if r["task"] == slowest and r["t1"] >= t_back - 3.0]
            first_ok = next((r for r in mine if r["outcome"] == "ok" and r["t0"] >= t_back), None)
            trail = [f"{r['t0'] - t_back:+.2f}..{r['t1'] - t_back:+.2f}s {r['outcome']} {r['phase']} "
                     f"{type_of(r['err'])} {r['state'] or ''}".strip()
                     for r in mine if r["outcome"] != "ok" or r is first_ok][:10]
            log(f"{what}: slowest client {slowest} (first commit +{firsts[slowest]:.2f}s): {trail}")
        missing = sorted(set(range(self.n)) - set(firsts))
        check(not missing, f"{what}: clients with no commit after recovery: {missing}")
        slow = {t: round(s, 2) for t, s in firsts.items() if s > within}
        check(not slow, f"{what}: clients whose first commit came more than {within}s after the server was "
                        f"back: {slow}")
        late = [f"task {r['task']} +{r['t0'] - t_back:.2f}s {r['phase']}: {r['err']}"
                for r in self.failures() if r["t0"] > t_back + within]
        check(not late, f"{what}: transactions begun more than {within}s after recovery failed:\n  "
              + "\n  ".join(late[:10]))
        return max(firsts.values())


def closed_in_wait(r) -> bool:
    """A transaction whose BEGIN got no answer but a closed connection:
    what asyncpg reports for a FATAL sent in answer to a query (it drops the
    ErrorResponse and raises ConnectionDoesNotExistError 08003 "connection
    was closed in the middle of operation"; psycopg2 likewise reports only
    "server closed the connection unexpectedly", with no SQLSTATE)."""
    return r["phase"] == "begin" and r["state"] in ("57014", "08003")


def type_of(err):
    return (err or "").split(" ", 1)[0]


def server_rows(pg):
    with pg.connect_super("appdb") as c, c.cursor() as cur:
        cur.execute("SELECT id FROM faults_t")
        ids = [r[0] for r in cur.fetchall()]
        cur.execute("SELECT coalesce(sum(val), 0) FROM faults_t")
        total = int(cur.fetchone()[0])
    c.close()
    return ids, total


def check_rows(pg, ledger, what):
    ids, total = server_rows(pg)
    log(f"{what}: {len(ids)} rows on the server, sum(val) {total}; {ledger.summary()}")
    ledger.verify(ids, f"{what}: rows on the server vs acknowledged commits", checksum=(total, val_of))


def check_recovery(mux, size, what, soft=None):
    """sqlmux still runs, serves new clients (psycopg2 and an asyncpg
    transaction), and once every load client has left the console and
    /metrics show no waiting or active client, no busy server connection
    and at most `size` server connections."""
    check(mux.running(), f"{what}: sqlmux is no longer running\n{mux.log_tail(40)}")
    mux.assert_serving(what=f"{what}: a new psycopg2 client")

    async def one():
        c = await asyncpg.connect(host=mux.host, port=mux.port, user="app", password="apppass",
                                  database="appdb", timeout=10)
        try:
            async with c.transaction():
                return await c.fetchval("SELECT $1::int * 2", 21)
        finally:
            await c.close()
    check_eq(asyncio.run(asyncio.wait_for(one(), 15)), 42, f"{what}: a new asyncpg client's transaction")

    def settled():
        p = console(mux, "SHOW POOLS")
        check_eq(len(p), 1, "SHOW POOLS rows")
        p = p[0]
        got = {k: p[k] for k in ("clients_active", "clients_waiting", "servers_active", "paused", "status")}
        check_eq(got, {"clients_active": "0", "clients_waiting": "0", "servers_active": "0", "paused": "no",
                       "status": "active"}, "SHOW POOLS")
        check(int(p["servers_total"]) <= size, f"SHOW POOLS servers_total {p['servers_total']} > size {size}")
        s = metrics(mux)
        for st in ("waiting", "active"):
            check_eq(msum(s, "sqlmux_client_connections", state=st), 0.0, f"client connections {st}")
        check_eq(msum(s, "sqlmux_server_connections", state="active"), 0.0, "server connections active")
        check(msum(s, "sqlmux_server_connections") <= size, "server connections > size")
        return p, s
    p, s = wait_until(f"{what}: pool settled", settled, 10)
    log(f"{what}: SHOW POOLS {p}")
    return s


def error_lines(mux, n=12):
    lines = [ln.strip() for ln in mux.log_text().splitlines()
             if any(w in ln.lower() for w in ("error", "warn", "fatal", "died", "fail"))]
    return lines[-n:]


# ---------------------------------------------------------------------------
# Cases
# ---------------------------------------------------------------------------


def _pg_back(pg, timeout=30.0):
    """Waits until a direct superuser query works; returns when."""
    def ok():
        c = pg.connect_super()
        try:
            with c.cursor() as cur:
                cur.execute("SELECT 1")
        finally:
            c.close()
    wait_until("PostgreSQL accepts connections again", ok, timeout)
    return time.monotonic()


def case_backend_sigkill_mid_transaction(pg):
    """20 clients, pool of 8. A 21st client (psycopg2) inserts a row in a
    transaction and reads pg_backend_pid(); that backend gets SIGKILL, and
    PostgreSQL restarts all backends (crash recovery). The victim's COMMIT
    fails properly and its row is absent; the others' in-flight
    transactions fail properly; all commits acknowledged are there; every
    client commits again within 5 s of the server being back."""
    require_sqlmux("pool recovery")
    pg.psql("TRUNCATE faults_t", db="appdb")
    with fault_mux(pg, size=8, query_wait_timeout="10s", server_connect_timeout="3s") as mux:
        load = Load(mux, 20).start()
        try:
            time.sleep(1.5)
            victim = mux.connect()
            vkey = 999_000_001
            with victim.cursor() as cur:
                cur.execute("INSERT INTO faults_t (id, task, val) VALUES (%s, -1, %s)", (vkey, val_of(vkey)))
                cur.execute("SELECT pg_backend_pid()")
                pid = cur.fetchone()[0]
            with pg.connect_super() as c, c.cursor() as cur:
                cur.execute("SELECT usename, state FROM pg_stat_activity WHERE pid = %s", (pid,))
                row = cur.fetchone()
            c.close()
            check_eq(tuple(row or ()), ("app", "idle in transaction"), f"pg_stat_activity of backend {pid}")
            t_kill = time.monotonic()
            os.kill(pid, signal.SIGKILL)
            log(f"SIGKILL to backend {pid} (the victim's, idle in transaction)")
            wait_until(f"backend {pid} gone", lambda: check(not os.path.exists(f"/proc/{pid}"), "alive"), 5)
            try:
                victim.commit()
                load.ledger.ack(vkey)
                verr = None
            except psycopg2.Error as e:
                load.ledger.abort(vkey)  # its backend was dead before COMMIT was sent
                verr = e
            victim.close()
            t_back = _pg_back(pg)
            log(f"PostgreSQL accepts connections {t_back - t_kill:.2f}s after the SIGKILL")
            time.sleep(4.0)
        finally:
            load.stop()
        load.report("load")
        check(verr is not None, "the victim's COMMIT on a SIGKILLed backend succeeded")
        st = verr.pgcode
        log(f"victim: {type(verr).__name__} {st} {str(verr).strip()[:200]}")
        check(st is None or st[:2] in ("08", "57"), f"victim's error SQLSTATE {st}: {verr}")
        load.check_results()
        inflight = [r for r in load.failures() if r["t0"] < t_kill]
        check(len(inflight) <= load.n, f"{len(inflight)} failures of transactions begun before the kill "
                                       f"(at most one per client: {load.n})")
        took = load.check_recovered(t_back, 5.0, "after the crash restart")
        log(f"every client committed again within {took:.2f}s of the server being back")
        for ln in error_lines(mux, 8):
            log(f"  sqlmux: {ln}")
        s = check_recovery(mux, 8, "after the SIGKILL")
        died = msum(s, "sqlmux_server_errors_total", reason="backend_died")
        log(f"sqlmux_server_errors_total backend_died = {died}")
        check(died >= 1, "sqlmux_server_errors_total{reason=backend_died} not counted")
        check_rows(pg, load.ledger, "after the SIGKILL")


def case_postgres_fast_restart(pg):
    """20 clients, pool of 8; `pg_ctl restart -m fast` after 1.5 s. Only
    transactions in flight at the stop fail (at most one per client) and
    those begun while the server was down, each with a proper error; every
    client commits again within 5 s of the server being back; the
    acknowledged commits are exactly there."""
    require_sqlmux("pool recovery")
    pg.psql("TRUNCATE faults_t", db="appdb")
    with fault_mux(pg, size=8, query_wait_timeout="10s", server_connect_timeout="3s") as mux:
        load = Load(mux, 20).start()
        try:
            time.sleep(1.5)
            t_stop = time.monotonic()
            pg.restart_server("fast")
            t_back = time.monotonic()
            log(f"pg_ctl restart -m fast took {t_back - t_stop:.2f}s")
            time.sleep(4.0)
        finally:
            if not pg._started:
                pg.start_server()
            load.stop()
        load.report("load")
        load.check_results()
        before = [r for r in load.failures() if r["t0"] < t_stop]
        check(len(before) <= load.n, f"{len(before)} failures of transactions begun before the restart "
                                     f"(in flight: at most one per client, {load.n})")
        # a client whose transaction failed at the stop retries (50 ms pause);
        # while the server is down each retry fails at once: only the
        # first failure of each client may come from the stop itself
        down = [r for r in load.failures() if t_stop <= r["t0"] <= t_back]
        log(f"failures: {len(before)} of transactions begun before the stop, {len(down)} begun while the "
            f"server was restarting")
        took = load.check_recovered(t_back, 5.0, "after the restart")
        log(f"every client committed again within {took:.2f}s of the server being back")
        for ln in error_lines(mux, 8):
            log(f"  sqlmux: {ln}")
        check_recovery(mux, 8, "after the restart")
        check_rows(pg, load.ledger, "after the restart")


def case_fatal_after_answer(pg):
    """What the load of postgres_fast_restart sometimes meets, made
    deterministic, directly and through sqlmux: an asyncpg client in a
    transaction sends `SELECT 1` and its event loop is then busy (blocked)
    while the server answers, `pg_ctl restart -m fast` ends the session (FATAL
    57P01) and the connection closes; the client then reads the answer and
    the FATAL in one chunk and starts COMMIT. Through sqlmux the client must
    read exactly the bytes a direct connection reads, and fail the same way
    (asyncpg 0.27: InternalClientError "cannot switch to state 15; another
    operation (2) is in progress", see ASYNCPG_ERROR_CONSUME)."""

    async def run(host, port):
        conn = await asyncpg.connect(host=host, port=port, user="app", password="apppass", database="appdb",
                                     timeout=10)
        tap = Tap(conn)
        try:
            await asyncio.wait_for(conn.execute("BEGIN"), 5)

            async def select_then_commit():
                await conn.execute("SELECT 1")
                await conn.execute("COMMIT")
            op = asyncio.ensure_future(select_then_commit())
            await asyncio.sleep(0)  # op sends its query
            time.sleep(0.3)  # the loop is busy: nothing is read
            pg.restart_server("fast")
            time.sleep(0.3)
            try:
                await asyncio.wait_for(op, 10)
                outcome = "no error"
            except Exception as e:  # noqa: BLE001
                outcome = f"{type(e).__name__}: {e}"
            return outcome, tap.chunks[-1] if tap.chunks else b""
        finally:
            conn.terminate()

    def strip(chunk):
        # what may differ between two runs: the server's source line
        out = []
        for t, f in pg_messages(chunk):
            out.append((t, None if f is None else {k: v for k, v in f.items() if k in "SVCM"}))
        return out

    got = {"direct": asyncio.run(run(pg.host, pg.port))}
    if not DIRECT:
        with fault_mux(pg, size=2) as mux:
            got["sqlmux"] = asyncio.run(run(mux.host, mux.port))
            check(mux.running(), "sqlmux stopped")
            mux.assert_serving(what="a new client after the restart")
    for how, (outcome, chunk) in got.items():
        log(f"{how}: {outcome}; last read {[t for t, _ in pg_messages(chunk)]}: {chunk!r}")
    outcome, chunk = got["direct"]
    msgs = pg_messages(chunk)
    check(fatal_after_answer(msgs), f"direct: the last read is not an answer then the FATAL: {msgs}")
    check_eq([t for t, _ in msgs], ["T", "D", "C", "Z", "E"], "direct: messages of the last read")
    check_eq(msgs[-1][1].get("C"), "57P01", "direct: the FATAL's SQLSTATE")
    if "sqlmux" in got:
        check_eq(strip(got["sqlmux"][1]), strip(chunk), "through sqlmux: the last read (vs direct)")
        check_eq(got["sqlmux"][0], outcome, "through sqlmux: the client's outcome (vs direct)")


def case_backend_sigstop(pg):
    """Pool of 2, query_wait_timeout 1s, 6 clients looping short
    transactions. Client H pins one server connection in a transaction
    running `SELECT pg_sleep(0)` loops; its backend gets SIGSTOP. A client L
    then holds the other connection for 2.5 s (pg_sleep). H's own 3 s read
    timeout fires and H goes away; waiting clients get FATAL 57014 about 1 s
    after they started waiting, never hang, never see another's data.
    While the backend is still stopped, sqlmux has given up H's connection
    and serves new clients; after SIGCONT (in a finally) the stopped backend
    ends (sqlmux closed its socket) and everything runs on."""
    require_sqlmux("query_wait_timeout")
    pg.psql("TRUNCATE faults_t", db="appdb")
    with fault_mux(pg, size=2, query_wait_timeout="1s") as mux:
        load = Load(mux, 6).start()
        stopped = None
        h_out, l_out = {}, {}
        try:
            time.sleep(1.0)
            h = mux.raw(timeout=10)
            h.query_ok("BEGIN")
            pid = int(h.scalar("SELECT pg_backend_pid()"))

            def h_loop():
                n = 0
                try:
                    while True:
                        t = time.monotonic()
                        r = h.query("SELECT pg_sleep(0), pg_backend_pid()", timeout=3.0)
                        n += 1
                        if r.error or r.rows != [["", str(pid)]]:
                            h_out["wrong"] = (r.error, r.rows)
                            return
                except TimeoutError:
                    h_out["timeout_after"] = time.monotonic() - t
                except Exception as e:  # noqa: BLE001
                    h_out["error"] = f"{type(e).__name__}: {e}"
                finally:
                    h_out["queries"] = n
                    h_out["t_end"] = time.monotonic()
                    h.abort()
            th = threading.Thread(target=h_loop, daemon=True)
            th.start()
            time.sleep(0.3)
            os.kill(pid, signal.SIGSTOP)
            stopped = pid
            t_stop = time.monotonic()
            log(f"SIGSTOP to backend {pid} (client H, inside a transaction running pg_sleep(0) loops)")

            def l_run():
                c = None
                try:
                    c = mux.connect(connect_timeout=10)
                    with c.cursor() as cur:
                        cur.execute("SELECT pg_backend_pid()")
                        l_out["pid"] = cur.fetchone()[0]
                        l_out["t_served"] = time.monotonic()
                        cur.execute("SELECT pg_sleep(2.5)")
                    c.commit()
                    l_out["ok"] = True
                except Exception as e:  # noqa: BLE001
                    l_out["error"] = f"{type(e).__name__} {getattr(e, 'pgcode', None)} {e}"
                finally:
                    l_out["t_end"] = time.monotonic()
                    if c is not None:
                        c.close()
            tl = threading.Thread(target=l_run, daemon=True)
            tl.start()
            # a raw client queued behind L: sees exactly what sqlmux sends
            wait_until("L served", lambda: check("t_served" in l_out or "error" in l_out, "not yet"), 3)
            w = mux.raw(timeout=10)
            t_w = time.monotonic()
            w.send_msg(b"Q", b"SELECT 'waiter'\0")
            w_err, w_closed = w.read_until_error_or_eof(5)
            w_wait = time.monotonic() - t_w
            w.close()
            th.join(8)
            check(not th.is_alive(), "client H still running 8 s after its backend was stopped")
            tl.join(8)
            check(not tl.is_alive(), "client L still running")
            # the backend is still stopped: sqlmux must have let go of H's
            # connection and serve new transactions on a fresh one
            time.sleep(0.3)
            with timed("a new client while the backend is still stopped", 3.0):
                mux.assert_serving(what="a new client while H's backend is still stopped (H gone)")
            servers = console(mux, "SHOW SERVERS")
            log(f"SHOW SERVERS while {pid} is stopped: {[(s['pid'], s['state']) for s in servers]}")
            check(str(pid) not in [str(s["pid"]) for s in servers],
                  f"sqlmux still lists the stopped backend {pid} after its client left: {servers}")
            time.sleep(0.5)
        finally:
            if stopped is not None:
                os.kill(stopped, signal.SIGCONT)
                t_cont = time.monotonic()
                log(f"SIGCONT to backend {stopped}")
        try:
            def gone():
                with pg.connect_super() as c, c.cursor() as cur:
                    cur.execute("SELECT state FROM pg_stat_activity WHERE pid = %s", (pid,))
                    row = cur.fetchone()
                c.close()
                check(row is None, f"backend {pid} still there after SIGCONT: {row}")
            wait_until("the once-stopped backend ends", gone, 5)
            time.sleep(1.5)
        finally:
            load.stop()
        load.report("load")
        log(f"H: {h_out}; stopped at +0, H ended at +{h_out.get('t_end', 0) - t_stop:.2f}s")
        log(f"L: {l_out}; served at +{l_out.get('t_served', t_stop) - t_stop:.2f}s, ended at "
            f"+{l_out.get('t_end', t_stop) - t_stop:.2f}s")
        check("wrong" not in h_out, f"client H got a wrong answer: {h_out}")
        check("timeout_after" in h_out or "error" in h_out, f"client H: {h_out}")
        check(l_out.get("ok"), f"client L (holding the other connection) failed: {l_out}")
        log(f"raw waiter: {w_err} closed={w_closed} after {w_wait:.2f}s")
        check(w_err is not None and w_err.get("C") == "57014" and w_err.get("S") == "FATAL" and w_closed,
              f"raw client waiting behind L and the stopped backend: {w_err} closed={w_closed}")
        check(0.8 <= w_wait <= 2.5, f"raw waiter's 57014 after {w_wait:.2f}s (query_wait_timeout 1s)")
        load.check_results()
        qwt = load.failures()
        waits = [(round(r["t1"] - r["t_begin"], 2), r["state"]) for r in qwt]
        log(f"failed waits (seconds, SQLSTATE): {waits[:20]}")
        check(all(closed_in_wait(r) for r in qwt),
              f"failures other than a closed connection while waiting for a server connection: "
              f"{[(r['phase'], r['err']) for r in qwt if not closed_in_wait(r)][:8]}")
        check(qwt, "no load client timed out waiting although both connections were held for more than 1 s")
        check(all(0.8 <= w <= 2.5 for w, _ in waits), f"waits not ended ~1 s after they began: {waits}")
        late = [r for r in load.oks() if r["t0"] > t_cont]
        check(late, "no commit after SIGCONT")
        s = check_recovery(mux, 2, "after SIGSTOP/SIGCONT")
        got = msum(s, "sqlmux_client_errors_total", reason="query_wait_timeout")
        logged = mux.log_text().count("closing: query_wait_timeout")
        log(f"query_wait_timeout: {got} in metrics, {logged} in the log; {len(qwt)} load clients + 1 raw waiter")
        check_eq((got, logged), (float(len(qwt) + 1), len(qwt) + 1),
                 "query_wait_timeout closings (metrics, log) vs the clients that saw them")
        check_rows(pg, load.ledger, "after SIGSTOP/SIGCONT")


def case_pool_filled(pg):
    """Pool of 2, 30 clients each holding a transaction for 0.1 s
    (pg_sleep) for 4 s, query_wait_timeout 8s. Clients beyond the pool wait
    (SHOW POOLS shows 20+ waiting, never more than 2 server connections)
    and are served in turn: every client commits, no wait reaches
    query_wait_timeout (a client that did would have to be closed with
    57014 after 8 s, and counted), nobody sees another's marker or rows,
    at most 2 backends serve."""
    require_sqlmux("pool limit")
    pg.psql("TRUNCATE faults_t", db="appdb")
    with fault_mux(pg, size=2, query_wait_timeout="8s") as mux:
        load = Load(mux, 30, hold=0.1, op_timeout=12).start()
        waiting = []
        try:
            t_end = time.monotonic() + 4.0
            while time.monotonic() < t_end:
                p = console(mux, "SHOW POOLS")[0]
                waiting.append((int(p["clients_waiting"]), int(p["servers_total"])))
                time.sleep(0.25)
        finally:
            load.stop(timeout=30)
        load.report("load")
        log(f"SHOW POOLS (clients_waiting, servers_total) samples: {waiting}")
        load.check_results()
        timed_out = [r for r in load.failures() if closed_in_wait(r)]
        check_eq([(r["phase"], r["err"]) for r in load.failures() if not closed_in_wait(r)], [],
                 "failed transactions other than query_wait_timeout")
        short = [round(r["t1"] - r["t_begin"], 2) for r in timed_out if r["t1"] - r["t_begin"] < 7.8]
        check_eq(short, [], "connections closed while waiting before query_wait_timeout (8 s)")
        per_task = {}
        for r in load.oks():
            per_task[r["task"]] = per_task.get(r["task"], 0) + 1
        check_eq(sorted(set(range(load.n)) - set(per_task)), [], "clients never served")
        waits = sorted(r["t_served"] - r["t_begin"] for r in load.oks())
        log(f"commits per client {sorted(per_task.values())}; waits for a connection: median "
            f"{waits[len(waits) // 2]:.2f}s, longest {waits[-1]:.2f}s; {len(timed_out)} query_wait_timeouts")
        check(waits[-1] < 8.0, f"a client waited {waits[-1]:.2f}s (query_wait_timeout 8s)")
        check(max(w for w, _ in waiting) >= 20, f"clients_waiting never reached 20: {waiting}")
        check(max(t for _, t in waiting) <= 2, f"servers_total above the pool size: {waiting}")
        check(len(load.pids) <= 2, f"{len(load.pids)} backends served a pool of 2: {sorted(load.pids)}")
        s = check_recovery(mux, 2, "after the full pool")
        check_eq(msum(s, "sqlmux_client_errors_total", reason="query_wait_timeout"), float(len(timed_out)),
                 "sqlmux_client_errors_total{reason=query_wait_timeout}")
        check_rows(pg, load.ledger, "after the full pool")


if __name__ == "__main__":
    run_cases(__file__, [case_backend_sigkill_mid_transaction, case_postgres_fast_restart, case_fatal_after_answer,
                         case_backend_sigstop, case_pool_filled], timeout=110, setup=setup)
