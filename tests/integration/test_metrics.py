#!/usr/bin/python3
"""Prometheus metrics: sqlmux with a [metrics] section, known traffic, then
/metrics scraped and parsed (text format). Counters and histograms must move
by exactly what the traffic did, gauges must come back to idle, and every
family must follow the naming rules."""

import asyncio
import math
import re
import signal
import socket
import threading
import time
import urllib.request

import psycopg2

from harness import *

NAME_RE = re.compile(r"^sqlmux_[a-z0-9_]+$")
LABEL_RE = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')
SAMPLE_RE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$")
# The process collector's standard series (process_open_fds, ...) keep their
# conventional names.
LIBRARY_PREFIX = "process_"


class Scrape:
    def __init__(self, text: str):
        self.text = text
        self.types = {}  # family -> type
        self.helps = {}
        self.samples = []  # (name, labels dict, value)
        for line in text.splitlines():
            if not line:
                continue
            if line.startswith("# TYPE "):
                _, _, fam, typ = line.split(" ", 3)
                self.types[fam] = typ
                continue
            if line.startswith("# HELP "):
                fam = line.split(" ", 3)[2]
                self.helps[fam] = line
                continue
            if line.startswith("#"):
                continue
            m = SAMPLE_RE.match(line)
            check(m is not None, f"unparsable sample line {line!r}")
            labels = dict(LABEL_RE.findall(m.group(2) or ""))
            v = m.group(3)
            value = math.inf if v == "+Inf" else (math.nan if v.lower() == "nan" else float(v))
            self.samples.append((m.group(1), labels, value))

    def values(self, name: str, **labels):
        return [v for n, ls, v in self.samples
                if n == name and all(ls.get(k) == str(x) for k, x in labels.items())]

    def get(self, name: str, **labels) -> float:
        """Sum of the samples of `name` whose labels include `labels`; the
        series must exist."""
        vs = self.values(name, **labels)
        check(vs, f"no sample {name}{labels} in /metrics")
        return sum(vs)


def scrape(port: int) -> Scrape:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        check(r.status == 200, f"/metrics answered {r.status}")
        ctype = r.headers.get("Content-Type", "")
        check(ctype.startswith("text/plain"), f"/metrics content type {ctype!r}")
        return Scrape(r.read().decode())


def with_metrics(extra_pools=(), **pool_opts):
    port = free_port()

    def tweak(cfg):
        cfg["metrics"] = {"listen": f"127.0.0.1:{port}"}
        cfg["pool"].extend(extra_pools)
    return port, tweak


def wait_for(what: str, fn, timeout: float = 10.0):
    """Retries fn() (which raises TestFailure) until it passes."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return fn()
        except TestFailure:
            if time.monotonic() > deadline:
                log(f"{what}: still failing after {timeout}s")
                raise
            time.sleep(0.1)


def check_rules(s: Scrape):
    fams = set(s.types)
    check(len([f for f in fams if f.startswith("sqlmux_")]) >= 20, f"too few sqlmux families: {sorted(fams)}")
    for fam, typ in s.types.items():
        if fam.startswith(LIBRARY_PREFIX):
            continue
        check(NAME_RE.match(fam), f"family name {fam!r} breaks ^sqlmux_[a-z0-9_]+$")
        check(fam in s.helps, f"{fam}: no HELP")
        check((typ == "counter") == fam.endswith("_total"),
              f"{fam}: type {typ}; counters and only counters end in _total")
        if typ == "histogram":
            check(fam.endswith("_seconds"), f"histogram {fam} lacks its unit")
        if "bytes" in fam:
            check(fam.endswith("_bytes_total") or fam.endswith("_bytes"), f"{fam}: unit not last")
    for name, labels, v in s.samples:
        if name.startswith(LIBRARY_PREFIX):
            continue
        check(NAME_RE.match(name), f"sample name {name!r}")
        for k in labels:
            check(k in ("pool", "user", "protocol", "backend", "reason", "state", "result", "route", "le", "version"),
                  f"{name}: unexpected label {k}")
        if name not in s.types:
            base = re.sub(r"_(bucket|sum|count)$", "", name)
            check(s.types.get(base) == "histogram", f"sample {name} belongs to no family")
            if name.endswith("_bucket"):
                check("le" in labels, f"{name} without le")
        check(v >= 0 and not math.isnan(v), f"{name}{labels} = {v}")
    # Histograms: cumulative buckets ending in +Inf == _count.
    for fam, typ in s.types.items():
        if typ != "histogram":
            continue
        series = {}
        for name, labels, v in s.samples:
            if name == fam + "_bucket":
                key = tuple(sorted((k, x) for k, x in labels.items() if k != "le"))
                le = math.inf if labels["le"] == "+Inf" else float(labels["le"])
                series.setdefault(key, []).append((le, v))
        check(series, f"{fam}: no buckets")
        for key, buckets in series.items():
            les = [b[0] for b in buckets]
            check(les == sorted(les) and les[-1] == math.inf, f"{fam}{key}: bucket bounds {les}")
            counts = [b[1] for b in buckets]
            check(counts == sorted(counts), f"{fam}{key}: buckets not cumulative {counts}")
            count = s.get(fam + "_count", **dict(key))
            check_eq(counts[-1], count, f"{fam}{key}: +Inf bucket vs _count")


def delta(a: Scrape, b: Scrape, name: str, **labels) -> float:
    return b.get(name, **labels) - a.get(name, **labels)


POOL = {"pool": "appdb", "user": "app", "protocol": "postgres"}


def case_traffic(pg):
    """50 queries in 10 transactions, one wrong password, one unknown
    database: exact counts, byte counts and gauges."""
    require_sqlmux("metrics endpoint")
    port, tweak = with_metrics()
    with Sqlmux(pg, mode="transaction", size=4, tweak=tweak) as mux:
        s0 = scrape(port)
        check_rules(s0)
        check_eq(s0.get("sqlmux_config_reloads_total", result="success"), 0, "reloads (success)")
        check_eq(s0.get("sqlmux_config_reloads_total", result="failure"), 0, "reloads (failure)")
        check_eq(s0.get("sqlmux_backend_up", pool="appdb"), 1, "backend_up before any connect")

        conn = mux.connect()  # autocommit off: psycopg2 sends BEGIN, ..., COMMIT
        # Gauges change just after the reply that the client waits for was
        # sent: poll them. Counters move before it is sent.
        wait_for("idle after login", lambda: check_eq(
            scrape(port).get("sqlmux_client_connections", state="idle", **POOL), 1, "idle clients after login"))
        s1 = scrape(port)
        sent_sql = []
        cur = conn.cursor()
        for t in range(10):
            sent_sql.append("BEGIN")
            for q in range(5):
                sql = f"SELECT {t * 5 + q} AS n, repeat('x', {q * 10})"
                cur.execute(sql)
                check_eq(cur.fetchone()[0], t * 5 + q, "query result")
                sent_sql.append(sql)
                if t == 3 and q == 2:
                    # Mid-transaction: this client holds a server connection.
                    mid = scrape(port)
                    check_eq(mid.get("sqlmux_client_connections", state="active", **POOL), 1,
                             "active clients inside a transaction")
                    check_eq(mid.get("sqlmux_client_connections", state="idle", **POOL), 0,
                             "idle clients inside a transaction")
                    check_eq(mid.get("sqlmux_server_connections", state="active", **POOL), 1,
                             "active server connections inside a transaction")
            conn.commit()
            sent_sql.append("COMMIT")
        s2 = scrape(port)
        check_eq(delta(s1, s2, "sqlmux_transactions_total", **POOL), 10, "transactions")
        check_eq(delta(s1, s2, "sqlmux_transaction_duration_seconds_count", **POOL), 10,
                 "transaction histogram count")
        # 50 SELECTs + 10 BEGIN + 10 COMMIT, each one simple Query.
        check_eq(delta(s1, s2, "sqlmux_queries_total", **POOL), 70, "queries")
        check_eq(delta(s1, s2, "sqlmux_query_duration_seconds_count", **POOL), 70, "query histogram count")
        check(delta(s1, s2, "sqlmux_query_duration_seconds_sum", **POOL) > 0, "query time sum moved")
        check(delta(s1, s2, "sqlmux_transaction_duration_seconds_sum", **POOL)
              >= delta(s1, s2, "sqlmux_query_duration_seconds_sum", **POOL) * 0.5,
              "transactions take at least most of their queries' time")
        # One wait per transaction (the link at BEGIN); nobody else queued.
        check_eq(delta(s1, s2, "sqlmux_client_wait_seconds_count", **POOL), 10, "waits")
        # Bytes from the client: exactly the Query messages ('Q', int32, text, NUL).
        want_in = sum(1 + 4 + len(q.encode()) + 1 for q in sent_sql)
        check_eq(delta(s1, s2, "sqlmux_client_received_bytes_total", **POOL), want_in,
                 "bytes received from the client")
        out_client = delta(s1, s2, "sqlmux_client_sent_bytes_total", **POOL)
        check(out_client > 70 * 6, f"bytes sent to the client: {out_client}")
        check(delta(s1, s2, "sqlmux_server_sent_bytes_total", **POOL) >= want_in,
              "bytes sent to servers include every query relayed")
        check(delta(s1, s2, "sqlmux_server_received_bytes_total", **POOL) >= out_client,
              "bytes received from servers include every reply relayed")
        def idle_again():
            s = scrape(port)
            check_eq(s.get("sqlmux_client_connections", state="idle", **POOL), 1, "idle after commit")
            check_eq(s.get("sqlmux_client_connections", state="active", **POOL), 0, "active after commit")
        wait_for("idle after commit", idle_again)
        check(s2.get("sqlmux_server_connect_attempts_total", **POOL) >= 1, "connect attempts")
        check_eq(s2.get("sqlmux_server_connect_failures_total", **POOL), 0, "connect failures")
        check_eq(s2.get("sqlmux_server_errors_total", **POOL), 0, "server errors")
        check_eq(s2.get("sqlmux_backend_up", pool="appdb", backend=f"127.0.0.1:{pg.port}"), 1, "backend_up")
        conn.close()

        expect_error(lambda: psycopg2.connect(mux.dsn(password="wrong")), (None, "28P01"),
                     "password authentication failed", what="wrong password")
        expect_error(lambda: psycopg2.connect(mux.dsn(db="nosuchdb")), (None, "3D000"),
                     'database "nosuchdb" does not exist', what="unknown database")

        def settled():
            s = scrape(port)
            check_eq(s.get("sqlmux_client_errors_total", reason="auth_failed")
                     - s1.get("sqlmux_client_errors_total", reason="auth_failed"), 1, "auth_failed errors")
            check_eq(s.get("sqlmux_client_errors_total", reason="unknown_database")
                     - s1.get("sqlmux_client_errors_total", reason="unknown_database"), 1,
                     "unknown_database errors")
            check_eq(s.get("sqlmux_client_errors_total"), 2, "client errors of any reason")
            check_eq(s.get("sqlmux_client_connections", **POOL), 0, "clients after disconnect")
            check_eq(s.get("sqlmux_client_login_connections"), 0, "clients in login after disconnect")
            check_eq(s.get("sqlmux_server_connections", state="active", **POOL), 0, "active servers")
            check_eq(s.get("sqlmux_server_connections", state="idle", **POOL), pg.app_sessions(),
                     "idle server connections vs PostgreSQL's sessions")
            return s
        s3 = wait_for("gauges back to idle", settled)
        check_rules(s3)


def case_session_and_statement_modes(pg):
    """Session mode holds one server connection for the whole session:
    transactions and queries are still counted at each ReadyForQuery. In
    statement mode a refused transaction block counts as a query only."""
    require_sqlmux("metrics endpoint")
    port, tweak = with_metrics()
    with Sqlmux(pg, mode="session", size=2, tweak=tweak) as mux:
        conn = mux.connect()
        s0 = scrape(port)
        cur = conn.cursor()
        for t in range(3):
            cur.execute("SELECT 1")
            cur.execute("SELECT 2")
            conn.commit()
        cur.execute("SELECT 3")  # a 4th transaction, left open
        s1 = scrape(port)
        check_eq(delta(s0, s1, "sqlmux_transactions_total", **POOL), 3, "session-mode transactions")
        check_eq(delta(s0, s1, "sqlmux_queries_total", **POOL), 3 * 4 + 2, "session-mode queries")
        check_eq(delta(s0, s1, "sqlmux_client_wait_seconds_count", **POOL), 1, "one link for the session")
        check_eq(s1.get("sqlmux_client_connections", state="active", **POOL), 1, "session holds its server")
        conn.close()
    port, tweak = with_metrics()
    with Sqlmux(pg, mode="statement", size=2, tweak=tweak) as mux:
        conn = mux.connect(autocommit=True)
        s0 = scrape(port)
        cur = conn.cursor()
        cur.execute("SELECT 1")
        expect_error(lambda: cur.execute("BEGIN"), "25000", what="transaction block in statement mode")
        cur.execute("SELECT 2")
        s1 = scrape(port)
        check_eq(delta(s0, s1, "sqlmux_queries_total", **POOL), 3, "statement-mode queries")
        check_eq(delta(s0, s1, "sqlmux_transactions_total", **POOL), 3, "statement-mode transactions")
        conn.close()


def case_prepared(pg):
    """asyncpg's named statements on one server connection: hits, misses and
    LRU evictions of the backend statement cache."""
    require_sqlmux("metrics endpoint")
    import asyncpg
    port, tweak = with_metrics()

    async def run(mux):
        conn = await asyncpg.connect(mux.url())
        try:
            s0 = scrape(port)
            for i in range(10):
                check_eq(await conn.fetchval("SELECT $1::int + 1", i), i + 1, "prepared result")
            s1 = scrape(port)
            check_eq(delta(s0, s1, "sqlmux_prepared_statement_cache_misses_total", **POOL), 1,
                     "one statement: prepared on the server once")
            check(delta(s0, s1, "sqlmux_prepared_statement_cache_hits_total", **POOL) >= 10,
                  "one statement: every further use found it there")
            check_eq(delta(s0, s1, "sqlmux_prepared_statement_cache_evictions_total", **POOL), 0,
                     "no eviction with one statement")
            check(delta(s0, s1, "sqlmux_queries_total", **POOL) >= 10, "extended-protocol queries counted")
            # Five more statements through a cache of 2: the first one and
            # each newcomer push the least recently used out.
            for k in range(5):
                check_eq(await conn.fetchval(f"SELECT $1::int + {k + 100}", 1), k + 101, "result")
            s2 = scrape(port)
            check(delta(s1, s2, "sqlmux_prepared_statement_cache_misses_total", **POOL) >= 5, "misses")
            check(delta(s1, s2, "sqlmux_prepared_statement_cache_evictions_total", **POOL) >= 4,
                  "evictions (cache of 2, 6 statements)")
        finally:
            await conn.close()

    with Sqlmux(pg, mode="transaction", size=1, max_prepared_statements=2, tweak=tweak) as mux:
        asyncio.run(run(mux))


def case_waiting(pg):
    """A client queued behind a held server connection shows as waiting,
    and its wait lands in the histogram."""
    require_sqlmux("metrics endpoint")
    port, tweak = with_metrics()
    with Sqlmux(pg, mode="transaction", size=1, tweak=tweak) as mux:
        a = mux.connect()
        b = mux.connect(autocommit=True)
        ca = a.cursor()
        ca.execute("SELECT 1")  # a holds the only server connection (transaction open)
        s0 = scrape(port)
        done = {}

        def run_b():
            with b.cursor() as cb:
                cb.execute("SELECT 2")
                done["v"] = cb.fetchone()[0]
        t = threading.Thread(target=run_b)
        t.start()

        def one_waiting():
            check_eq(scrape(port).get("sqlmux_client_connections", state="waiting", **POOL), 1, "waiting")
        wait_for("client b waiting", one_waiting)
        time.sleep(0.4)
        s_mid = scrape(port)
        check(s_mid.get("sqlmux_pool_oldest_wait_seconds", **POOL) >= 0.4, "oldest waiter's age >= 0.4s")
        check_eq(s_mid.get("sqlmux_pool_size", **POOL), 1, "pool size")
        a.commit()
        t.join(10)
        check_eq(done.get("v"), 2, "b's query after a's commit")
        s1 = scrape(port)
        check_eq(delta(s0, s1, "sqlmux_client_wait_seconds_count", **POOL), 1, "one wait")
        check(delta(s0, s1, "sqlmux_client_wait_seconds_sum", **POOL) >= 0.4, "the wait lasted >= 0.4s")
        check_eq(delta(s0, s1, "sqlmux_client_wait_seconds_bucket", le="0.25", **POOL), 0,
                 "not in the <=0.25s bucket")
        check_eq(s1.get("sqlmux_client_connections", state="waiting", **POOL), 0, "nobody waiting")
        check_eq(s1.get("sqlmux_pool_oldest_wait_seconds", **POOL), 0, "oldest waiter's age once nobody waits")
        check_eq(s1.get("sqlmux_build_info"), 1, "sqlmux_build_info")
        check(s1.get("process_open_fds") > 5 and s1.get("process_resident_memory_bytes") > 1e6,
              "process collector")
        a.close()
        b.close()


def case_wait_timeout(pg):
    """A client that gives up waiting (query_wait_timeout) is an error, not
    a wait in the histogram."""
    require_sqlmux("metrics endpoint")
    port, tweak = with_metrics()
    with Sqlmux(pg, mode="transaction", size=1, query_wait_timeout="500ms", tweak=tweak) as mux:
        a = mux.connect()
        a.cursor().execute("SELECT 1")  # holds the only server connection
        b = mux.connect(autocommit=True)
        s0 = scrape(port)
        try:
            b.cursor().execute("SELECT 2")
            fail("a query waiting past query_wait_timeout succeeded")
        except psycopg2.Error:
            pass  # FATAL 57014 (libpq may report only the closed connection)
        def counted():
            s1 = scrape(port)
            check_eq(delta(s0, s1, "sqlmux_client_errors_total", reason="query_wait_timeout"), 1,
                     "query_wait_timeout errors")
            check_eq(s1.get("sqlmux_client_connections", state="waiting", **POOL), 0, "nobody waiting")
            check_eq(delta(s0, s1, "sqlmux_client_wait_seconds_count", **POOL), 0, "no wait observed")
        wait_for("timeout counted", counted)
        a.rollback()
        a.close()
        b.close()


def case_backend_down(pg):
    """A pool whose server refuses connections: attempts, failures, errors
    and backend_up 0, labelled with that pool and backend only."""
    require_sqlmux("metrics endpoint")
    dead = f"127.0.0.1:{free_port()}"
    pool = default_config(pg.port, 0)["pool"][0]
    pool.update({"name": "deadpool", "backends": [{"address": dead}]})
    port, tweak = with_metrics(extra_pools=[pool])
    with Sqlmux(pg, mode="transaction", size=2, tweak=tweak) as mux:
        expect_error(lambda: psycopg2.connect(mux.dsn(db="deadpool")), (None, "08001"),
                     "could not connect to the server", what="dead backend")
        mux.assert_serving()

        def counted():
            s = scrape(port)
            dp = dict(pool="deadpool", user="app", protocol="postgres", backend=dead)
            check_eq(s.get("sqlmux_server_connect_attempts_total", **dp), 1, "attempts")
            check_eq(s.get("sqlmux_server_connect_failures_total", **dp), 1, "failures")
            check_eq(s.get("sqlmux_server_errors_total", reason="backend_connect_failed", **dp), 1,
                     "server error")
            check_eq(s.get("sqlmux_backend_up", pool="deadpool", backend=dead), 0, "dead backend up")
            check_eq(s.get("sqlmux_client_errors_total", reason="backend_connect_failed"), 1, "client error")
            check_eq(s.get("sqlmux_backend_up", pool="appdb"), 1, "healthy backend up")
            check_eq(s.get("sqlmux_server_connect_failures_total", pool="appdb"), 0, "healthy pool failures")
            check_eq(s.get("sqlmux_server_connections", pool="deadpool"), 0, "dead pool connections")
            return s
        check_rules(wait_for("failure counted", counted))


def _http(port, method, path, raw=None):
    """(status, headers dict, body) of one request on a fresh connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(raw if raw is not None else f"{method} {path} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
        data = b""
        while True:
            d = s.recv(65536)
            if not d:
                break
            data += d
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = dict(l.split(": ", 1) for l in lines[1:] if ": " in l)
    return int(lines[0].split()[1]), headers, body


def case_http_endpoints(pg):
    """GET and HEAD of /metrics, /healthz and /readyz (issues 16, 18):
    HEAD answers the headers of GET without the body (it was 404);
    /readyz is 503 with the reason while every backend host of a pool is
    down by its health checks, and 200 again once one is up; unknown paths
    404, other methods 405, an oversized request 431."""
    require_sqlmux("metrics endpoint")
    port = free_port()

    def tweak(cfg):
        cfg["metrics"] = {"listen": f"127.0.0.1:{port}"}
        cfg["health"] = {"interval": "200ms", "timeout": "1s", "fall": 1, "rise": 1, "user": "app",
                         "password": "apppass"}

    with Sqlmux(pg, mode="transaction", size=2, tweak=tweak) as mux:
        st, h, body = _http(port, "GET", "/metrics")
        check_eq(st, 200, "GET /metrics")
        check(h.get("Content-Type", "").startswith("text/plain; version=0.0.4"), f"content type {h}")
        check(b"sqlmux_client_connections" in body, "GET /metrics body")
        st, h, hbody = _http(port, "HEAD", "/metrics")
        check_eq((st, hbody), (200, b""), "HEAD /metrics: status and no body")
        check(abs(int(h["Content-Length"]) - len(body)) < 2048, f"HEAD Content-Length {h} vs {len(body)}")
        check_eq(_http(port, "GET", "/healthz")[0::2], (200, b"ok\n"), "GET /healthz")
        check_eq(_http(port, "HEAD", "/healthz")[0::2], (200, b""), "HEAD /healthz")

        def ready_is(want):
            def probe():
                st, _, body = _http(port, "GET", "/readyz")
                check_eq(st, want, f"/readyz ({body!r})")
                return body
            return probe
        check_eq(wait_for("ready", ready_is(200)), b"ready\n", "/readyz body")
        check_eq(_http(port, "GET", "/nope")[0], 404, "unknown path")
        st, h, _ = _http(port, "POST", "/metrics")
        check_eq((st, h.get("Allow")), (405, "GET, HEAD"), "POST")
        check_eq(_http(port, None, None, raw=b"GET /" + b"x" * 9000)[0], 431, "oversized request")
        check_eq(_http(port, None, None, raw=b"nonsense\r\n\r\n")[0], 400, "malformed request line")
        pg.stop_server()
        try:
            body = wait_for("not ready", ready_is(503))
            check(b"postgres:appdb: every backend host is down" in body, f"/readyz reason: {body!r}")
            check_eq(_http(port, "GET", "/healthz")[0], 200, "/healthz while the server is down")
        finally:
            pg.start_server()
        wait_for("ready again", ready_is(200), timeout=15)
        mux.assert_serving()
        # A drain (SIGTERM with a client inside a transaction): 503 first,
        # while the process still serves that client.
        c = psycopg2.connect(mux.dsn())
        c.cursor().execute("SELECT 1")  # BEGIN (psycopg2 opens a transaction)
        mux.send_signal(signal.SIGTERM)
        body = wait_for("not ready while draining", ready_is(503))
        check(b"shutting down" in body, f"/readyz while draining: {body!r}")
        check_eq(_http(port, "GET", "/healthz")[0], 200, "/healthz while draining")
        c.commit()
        c.close()
        check_eq(mux.wait_exit(20), 0, "exit after the drain")


def case_config_errors(pg):
    """[metrics] listen is validated with file:line:column."""
    require_sqlmux("--check-config")
    base = to_toml(default_config(pg.port, 6432))
    rc, out, path = check_config(base + '[metrics]\nlisten = "localhost:9930"\n')
    check_eq(rc, 1, f"exit code for a host name ({out})")
    check(re.search(r"sqlmux\.toml:\d+:\d+: metrics\.listen: invalid address", out), f"message: {out}")
    rc, out, _ = check_config(base + '[metrics]\nlisen = "127.0.0.1:9930"\n')
    check_eq(rc, 1, f"exit code for a misspelt key ({out})")
    check('did you mean "listen"' in out, f"message: {out}")
    rc, out, _ = check_config(base + '[metrics]\nlisten = "127.0.0.1:9930"\n')
    check_eq(rc, 0, f"valid [metrics] ({out})")


def case_config_reloads(pg):
    """SIGHUP with a valid file counts a success, with an invalid one a
    failure; the clients' counters survive the reload."""
    import signal
    require_sqlmux("reload")
    port, tweak = with_metrics()
    with Sqlmux(pg, size=2, tweak=tweak) as mux:
        conn = mux.connect(autocommit=True)
        with conn.cursor() as cur:
            cur.execute("SELECT 1")
        wait_for("one query counted", lambda: check_eq(scrape(port).get("sqlmux_queries_total"), 1.0,
                                                        "queries before the reload"))
        good = open(mux.config_path).read()

        def reloads(result):
            return scrape(port).get("sqlmux_config_reloads_total", result=result)

        check_eq(reloads("success"), 0.0, "successful reloads at start")
        mux.send_signal(signal.SIGHUP)
        wait_for("a successful reload counted", lambda: check_eq(reloads("success"), 1.0, "successful reloads"))
        with open(mux.config_path, "w") as f:
            f.write(good.replace("size = 2", 'size = "two"'))
        mux.send_signal(signal.SIGHUP)
        wait_for("a failed reload counted", lambda: check_eq(reloads("failure"), 1.0, "failed reloads"))
        check_eq(reloads("success"), 1.0, "successful reloads after the failed one")
        with conn.cursor() as cur:
            cur.execute("SELECT 2")
            check_eq(cur.fetchone()[0], 2, "the client after two reloads")
        wait_for("two queries counted", lambda: check_eq(scrape(port).get("sqlmux_queries_total"), 2.0,
                                                          "queries after the reloads"))
        conn.close()
        with open(mux.config_path, "w") as f:
            f.write(good)


if __name__ == "__main__":
    run_cases(__file__, [case_http_endpoints, case_traffic, case_session_and_statement_modes, case_prepared, case_waiting, case_wait_timeout,
                         case_backend_down, case_config_errors, case_config_reloads],
              timeout=150)
