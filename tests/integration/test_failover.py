#!/usr/bin/python3
"""Several backends per pool: routing by role (`route`), health checks
(`[health]`), failover of new transactions and of backend connects to the
healthy hosts, DISABLE/ENABLE draining a host, SHOW BACKENDS and the backend
metrics, and clients whose server connection dies.

Topology: the shared PgServer of run_cases() is "the primary" P; a streaming
standby of it (pg_basebackup -R) is "the replica" R; an independent second
PostgreSQL is "the other primary" Q. Which host answered is read from the
server itself: inet_server_port() and pg_is_in_recovery() through sqlmux.
The standby and Q are started on first use and kept for the later cases."""

import asyncio
import re
import threading
import time
import urllib.request

import psycopg2

from harness import *

ADMIN_PASS = "adminpass"
HEALTH = {"interval": "200ms", "timeout": "1s", "fall": 2, "rise": 1}

# ---------------------------------------------------------------------------
# Extra PostgreSQL servers, started on first use and stopped at exit by the
# harness' cleanup registry.
# ---------------------------------------------------------------------------

_servers: dict = {}


def _get_server(key: str, make) -> PgServer:
    s = _servers.get(key)
    if s is None or s.dir is None:
        s = make().__enter__()
        _servers[key] = s
    elif not s._started:  # a case stopped it and failed before starting it again
        s.start_server()
    return s


def replica(pg) -> PgServer:
    r = _get_server("replica", lambda: PgServer(replica_of=pg))
    r.wait_replay()
    return r


def other_primary(pg) -> PgServer:
    return _get_server("other", lambda: PgServer())


def addr(server) -> str:
    return f"127.0.0.1:{server.port}"


# ---------------------------------------------------------------------------
# sqlmux with several pools, [health], the console and /metrics
# ---------------------------------------------------------------------------


def pool(name, backends, route=None, mode="transaction", size=10, **opts):
    p = default_config(0, 0, mode=mode, size=size, pool_name=name)["pool"][0]
    p["backends"] = backends
    if route is not None:
        p["route"] = route
    p.update(opts)
    return p


class Console:
    def __init__(self, port):
        self.port = port

    def connect(self):
        c = psycopg2.connect(host="127.0.0.1", port=self.port, dbname="sqlmux", user="admin",
                             password=ADMIN_PASS, connect_timeout=10)
        c.autocommit = True
        return c

    def query(self, sql):
        c = self.connect()
        try:
            with c.cursor() as cur:
                cur.execute(sql)
                cols = [d[0] for d in cur.description] if cur.description else []
                rows = [dict(zip(cols, r)) for r in cur.fetchall()] if cols else []
                return cols, rows, cur.statusmessage
        finally:
            c.close()

    def rows(self, sql):
        return self.query(sql)[1]

    def run(self, sql):
        return self.query(sql)[2]

    def backends(self, pool_name=None):
        """SHOW BACKENDS as {(pool, address): row}."""
        return {(r["pool"], r["address"]): r for r in self.rows("SHOW BACKENDS")
                if pool_name is None or r["pool"] == pool_name}


class Mux:
    """Sqlmux with the given pools (replacing the default one), optional
    [health] and [metrics], always with an admin console."""

    def __init__(self, pg, pools, health=None, metrics=False, workers=2, **kw):
        self.admin_port = free_port()
        self.metrics_port = free_port() if metrics else None

        def tweak(cfg):
            cfg["server"]["workers"] = workers
            cfg["pool"] = pools
            cfg["user"].append({"name": "admin", "password": ADMIN_PASS})
            cfg["admin"] = {"listen": f"127.0.0.1:{self.admin_port}", "users": ["admin"]}
            if health is not None:
                cfg["health"] = health
            if metrics:
                cfg["metrics"] = {"listen": f"127.0.0.1:{self.metrics_port}"}
        self.mux = Sqlmux(pg, tweak=tweak, **kw)

    def __enter__(self):
        mux = self.mux.__enter__()
        try:
            check(wait_port("127.0.0.1", self.admin_port, 5), "admin listener not open")
        except BaseException as e:
            self.mux.__exit__(type(e), e, None)
            raise
        mux.con = Console(self.admin_port)
        mux.metrics_port = self.metrics_port
        return mux

    def __exit__(self, *exc):
        return self.mux.__exit__(*exc)


SAMPLE_RE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$")
LABEL_RE = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def scrape(port):
    """[(name, labels, value)] from /metrics (text format)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        text = r.read().decode()
    out = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = SAMPLE_RE.match(line)
        check(m is not None, f"unparsable /metrics line {line!r}")
        out.append((m.group(1), dict(LABEL_RE.findall(m.group(2) or "")), float(m.group(3))))
    return out


def metric(samples, name, **labels):
    """The sum of the samples of `name` whose labels include `labels`; None
    if there is none."""
    vs = [v for n, ls, v in samples if n == name and all(ls.get(k) == str(x) for k, x in labels.items())]
    return sum(vs) if vs else None


def wait_for(what, fn, timeout):
    """Retries fn() until it returns without TestFailure; returns its value."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return fn()
        except (TestFailure, psycopg2.Error) as e:
            if time.monotonic() > deadline:
                fail(f"{what}: still not so after {timeout}s: {e}")
            time.sleep(0.1)


class Soft:
    """Runs independent steps of a case, each to its end; the case fails at
    the end with every step that failed (so one daemon bug does not hide
    the behaviour the later steps look at)."""

    def __init__(self):
        self.failed = []

    def step(self, what, fn):
        try:
            return fn()
        except (TestFailure, psycopg2.Error) as e:
            msg = f"{what}: {type(e).__name__}: {getattr(e, 'pgcode', None) or ''} {str(e).strip()}"
            log(f"step failed: {msg}")
            self.failed.append(msg)
            return None

    def done(self):
        if self.failed:
            fail(f"{len(self.failed)} step(s) failed:\n  " + "\n  ".join(self.failed))


# ---------------------------------------------------------------------------
# Which host answers
# ---------------------------------------------------------------------------


def where(conn):
    """(port, in_recovery) of the server that runs this query."""
    with conn.cursor() as cur:
        cur.execute("SELECT inet_server_port(), pg_is_in_recovery()")
        return tuple(cur.fetchone())


def where_new(mux, db):
    c = mux.connect(db=db, autocommit=True, connect_timeout=10)
    try:
        return where(c)
    finally:
        c.close()


def open_transactions(mux, db, n):
    """n clients, each inside a transaction (BEGIN + one query); returns
    [(conn, port, in_recovery)]; the caller commits and closes them."""
    out = []
    for _ in range(n):
        c = mux.connect(db=db)  # psycopg2: the first query opens a transaction
        out.append((c,) + where(c))
    return out


def close_all(txs):
    for t in txs:
        try:
            t[0].commit()
        finally:
            t[0].close()


def app_pids(server):
    with server.connect_super() as c, c.cursor() as cur:
        cur.execute("SELECT pid FROM pg_stat_activity WHERE usename = 'app' AND datname = 'appdb' "
                    "AND pid <> pg_backend_pid()")
        return sorted(r[0] for r in cur.fetchall())


BACKEND_COLUMNS = ["pool", "address", "role", "state", "health",
                   "configured_role", "weight", "connections", "active", "last_error"]


def routed_backends(pg, rep):
    return [{"address": addr(pg), "role": "primary"}, {"address": addr(rep), "role": "replica", "weight": 2}]


def wait_health(mux, want: dict, timeout: float = 5.0):
    """Waits until SHOW BACKENDS health is want[(pool, address)] for each key."""
    def ok():
        b = mux.con.backends()
        got = {k: b[k]["health"] if k in b else None for k in want}
        check_eq(got, want, "SHOW BACKENDS health")
        return b
    return wait_for("health", ok, timeout)


# ---------------------------------------------------------------------------
# Cases
# ---------------------------------------------------------------------------


def case_config_keys(pg):
    """--check-config accepts route and [health] with every documented key
    and names the key of a bad value."""
    require_sqlmux("--check-config")
    b = [{"address": "127.0.0.1:5432", "role": "primary"}, {"address": "127.0.0.1:5433", "role": "replica",
                                                            "weight": 2}]

    def text(route="replica", health=None):
        cfg = default_config(5432, 6432)
        cfg["pool"] = [pool("appdb", b, route=route)]
        cfg["health"] = health if health is not None else {
            "interval": "5s", "timeout": "2s", "fall": 3, "rise": 2, "user": "app", "password": "apppass",
            "database": "appdb"}
        return to_toml(cfg)

    for route in ("primary", "replica", "any"):
        rc, out, _ = check_config(text(route=route))
        check_eq(rc, 0, f"--check-config with route = {route!r} and a full [health] table: {out.strip()}")
    rc, out, _ = check_config(text(route="sideways"))
    check(rc != 0 and "pool[0].route" in out, f"route = 'sideways': rc {rc}, {out.strip()!r}")
    rc, out, _ = check_config(text(health={"interval": "200ms", "bogus": 1}))
    check(rc != 0 and "health.bogus" in out, f"[health] bogus key: rc {rc}, {out.strip()!r}")
    rc, out, _ = check_config(text(health={"interval": "soon"}))
    check(rc != 0 and "health.interval" in out, f"[health] interval = 'soon': rc {rc}, {out.strip()!r}")


def case_routing(pg):
    """route=primary goes to the primary, route=replica to the standby;
    SHOW BACKENDS shows roles, health up and per-pool connections."""
    require_sqlmux("routing")
    rep = replica(pg)
    P, R = addr(pg), addr(rep)
    b = routed_backends(pg, rep)
    with Mux(pg, [pool("appdb", b, route="primary"), pool("appdb_ro", b, route="replica")], health=HEALTH) as mux:
        cols, _, _ = mux.con.query("SHOW BACKENDS")
        check_eq(cols[:5], BACKEND_COLUMNS[:5], "SHOW BACKENDS: the first five columns (as before)")
        new_cols = [c for c in cols[5:] if c in BACKEND_COLUMNS]
        check_eq(new_cols, BACKEND_COLUMNS[5:], f"SHOW BACKENDS: the new columns, in this order ({cols})")
        extra = [c for c in cols if c not in BACKEND_COLUMNS]
        if extra:
            log(f"SHOW BACKENDS has further columns: {extra}")
        wait_health(mux, {(p, a): "up" for p in ("appdb", "appdb_ro") for a in (P, R)})

        for i in range(3):
            check_eq(where_new(mux, "appdb"), (pg.port, False), f"appdb (route=primary) client {i}")
            check_eq(where_new(mux, "appdb_ro"), (rep.port, True), f"appdb_ro (route=replica) client {i}")
        c = mux.connect(db="appdb_ro", autocommit=True)
        for i in range(5):
            check_eq(where(c), (rep.port, True), f"appdb_ro query {i} on one client")
        c.close()

        # concurrent transactions stay within the role
        ro = open_transactions(mux, "appdb_ro", 3)
        rw = open_transactions(mux, "appdb", 3)
        check_eq([t[1:] for t in ro], [(rep.port, True)] * 3, "3 concurrent appdb_ro transactions")
        check_eq([t[1:] for t in rw], [(pg.port, False)] * 3, "3 concurrent appdb transactions")
        rows = mux.con.backends()
        for (p, a), r in sorted(rows.items()):
            log(f"SHOW BACKENDS {p} {a}: " + ", ".join(f"{k}={r[k]}" for k in BACKEND_COLUMNS[2:]))
        check_eq(sorted(rows), sorted([("appdb", P), ("appdb", R), ("appdb_ro", P), ("appdb_ro", R)]),
                 "SHOW BACKENDS rows")
        for p in ("appdb", "appdb_ro"):
            for a, role, weight in ((P, "primary", "1"), (R, "replica", "2")):
                r = rows[(p, a)]
                check_eq((r["role"], r["configured_role"], r["state"], r["health"], r["weight"]),
                         (role, role, "enabled", "up", weight), f"SHOW BACKENDS {p} {a}")
        check_eq((rows[("appdb", P)]["active"], rows[("appdb", R)]["active"]), ("3", "0"),
                 "appdb active per host (3 open transactions on the primary)")
        check_eq((rows[("appdb_ro", R)]["active"], rows[("appdb_ro", P)]["active"]), ("3", "0"),
                 "appdb_ro active per host (3 open transactions on the replica)")
        check(int(rows[("appdb", P)]["connections"]) >= 3, f"appdb connections to the primary: {rows[('appdb', P)]}")
        check(int(rows[("appdb_ro", R)]["connections"]) >= 3, f"appdb_ro connections to R: {rows[('appdb_ro', R)]}")
        check_eq((rows[("appdb", R)]["connections"], rows[("appdb_ro", P)]["connections"]), ("0", "0"),
                 "connections to the host of the other role")
        close_all(ro)
        close_all(rw)


def case_observed_role_overrides_config(pg):
    """Roles configured the wrong way round: the health check's
    pg_is_in_recovery() wins, so route=primary ends up on the real primary."""
    require_sqlmux("health check roles")
    rep = replica(pg)
    P, R = addr(pg), addr(rep)
    b = [{"address": P, "role": "replica"}, {"address": R, "role": "primary"}]
    with Mux(pg, [pool("appdb", b, route="primary")], health=HEALTH) as mux:
        def roles():
            rows = mux.con.backends("appdb")
            got = {a: (rows[("appdb", a)]["role"], rows[("appdb", a)]["configured_role"],
                       rows[("appdb", a)]["health"]) for a in (P, R)}
            check_eq(got, {P: ("primary", "replica", "up"), R: ("replica", "primary", "up")},
                     "observed vs configured roles")
        wait_for("roles observed", roles, 5)
        txs = open_transactions(mux, "appdb", 3)
        check_eq([t[1:] for t in txs], [(pg.port, False)] * 3, "route=primary after the check saw the roles")
        close_all(txs)


def case_any_route_weights(pg):
    """route=any: least outstanding transactions / weight. With weights 1
    (primary) and 2 (replica), 3 concurrent transactions land 1 + 2 and 6
    land 2 + 4. (One worker, so the counts are not split by thread.)"""
    require_sqlmux("route=any")
    rep = replica(pg)
    with Mux(pg, [pool("appdb", routed_backends(pg, rep), route="any")], health=HEALTH, workers=1) as mux:
        wait_health(mux, {("appdb", addr(pg)): "up", ("appdb", addr(rep)): "up"})
        for n, want in ((3, {pg.port: 1, rep.port: 2}), (6, {pg.port: 2, rep.port: 4})):
            txs = open_transactions(mux, "appdb", n)
            got = {pg.port: 0, rep.port: 0}
            for t in txs:
                got[t[1]] += 1
            close_all(txs)
            check_eq(got, want, f"{n} concurrent transactions per port (route=any, weights 1 and 2)")


def case_primary_weights(pg):
    """route=primary over two primaries with weights 1 and 2: least
    outstanding transactions / weight puts 3 concurrent transactions 1 + 2
    and 6 of them 2 + 4. (One worker, so the counts are not split by
    thread.)"""
    require_sqlmux("weights")
    A, B = other_primary(pg), pg
    b = [{"address": addr(A), "role": "primary"}, {"address": addr(B), "role": "primary", "weight": 2}]
    with Mux(pg, [pool("appdb", b, route="primary")], workers=1) as mux:
        for n, want in ((3, {A.port: 1, B.port: 2}), (6, {A.port: 2, B.port: 4})):
            txs = open_transactions(mux, "appdb", n)
            got = {A.port: 0, B.port: 0}
            for t in txs:
                got[t[1]] += 1
            close_all(txs)
            check_eq(got, want, f"{n} concurrent transactions per port (weights 1 and 2)")


def case_replica_down_reads_move_to_primary(pg):
    """The standby stops: health down after fall*interval, route=replica
    falls back to the primary, backend_up 0; it starts again: traffic goes
    back after rise. (The steps after the stop each run to their end.)"""
    require_sqlmux("health checks")
    rep = replica(pg)
    P, R = addr(pg), addr(rep)
    b = routed_backends(pg, rep)
    soft = Soft()
    with Mux(pg, [pool("appdb", b, route="primary"), pool("appdb_ro", b, route="replica")], health=HEALTH,
             metrics=True) as mux:
        wait_health(mux, {("appdb_ro", P): "up", ("appdb_ro", R): "up"})
        idle = mux.connect(db="appdb_ro", autocommit=True)
        check_eq(where(idle), (rep.port, True), "appdb_ro before the stop")
        s = scrape(mux.metrics_port)
        check_eq((metric(s, "sqlmux_backend_up", pool="appdb_ro", backend=R),
                  metric(s, "sqlmux_backend_up", pool="appdb_ro", backend=P)), (1.0, 1.0), "backend_up before")
        ok_before = metric(s, "sqlmux_health_checks_total", backend=R, result="ok")
        check(ok_before is not None and ok_before >= 1, f"health_checks_total ok for R before the stop: {ok_before}")

        rep.stop_server("immediate")
        t_stop = time.monotonic()
        try:
            rows = wait_health(mux, {("appdb_ro", R): "down", ("appdb", R): "down", ("appdb_ro", P): "up"}, 6)
            log(f"replica seen down {time.monotonic() - t_stop:.2f}s after the stop "
                f"(interval 200ms, fall 2, timeout 1s); last_error: {rows[('appdb_ro', R)]['last_error']!r}")
            check(rows[("appdb_ro", R)]["last_error"], "SHOW BACKENDS last_error empty for the stopped host")
            for i in range(3):
                soft.step(f"new appdb_ro client {i} with R down",
                          lambda: check_eq(where_new(mux, "appdb_ro"), (pg.port, False), "port, in recovery"))
            soft.step("the idle appdb_ro client's next transaction with R down",
                      lambda: check_eq(where(idle), (pg.port, False), "port, in recovery"))

            def metrics_down():
                s = scrape(mux.metrics_port)
                check_eq((metric(s, "sqlmux_backend_up", pool="appdb_ro", backend=R),
                          metric(s, "sqlmux_backend_up", pool="appdb", backend=R),
                          metric(s, "sqlmux_backend_up", pool="appdb_ro", backend=P)), (0.0, 0.0, 1.0),
                         "backend_up with R down (appdb_ro/R, appdb/R, appdb_ro/P)")
                failed = metric(s, "sqlmux_health_checks_total", backend=R, result="failed")
                check(failed is not None and failed >= 2, f"health_checks_total failed for R: {failed} (fall = 2)")
                okp = metric(s, "sqlmux_health_checks_total", backend=P, result="ok")
                check(okp is not None and okp >= 1, f"health_checks_total ok for P: {okp}")
            soft.step("metrics with R down", metrics_down)
        finally:
            rep.start_server()
        t_start = time.monotonic()

        def back():
            check_eq(where_new(mux, "appdb_ro"), (rep.port, True), "new appdb_ro client after R restarted")
            return True
        if soft.step("appdb_ro back on the replica", lambda: wait_for("appdb_ro on R", back, 10)):
            log(f"appdb_ro back on the replica {time.monotonic() - t_start:.2f}s after it started")
        if idle.closed:
            soft.failed.append("the idle appdb_ro client was disconnected")
        else:
            soft.step("the idle client's next transaction after R restarted",
                      lambda: check_eq(where(idle), (rep.port, True), "port, in recovery"))
        soft.step("health up after R restarted",
                  lambda: wait_health(mux, {("appdb_ro", R): "up", ("appdb", R): "up"}, 3))
        soft.step("backend_up after R restarted", lambda: check_eq(
            metric(scrape(mux.metrics_port), "sqlmux_backend_up", pool="appdb_ro", backend=R), 1.0, "value"))
        idle.close()
        soft.done()


def case_failover_under_load(pg):
    """Two independent primaries A and B, route=primary, size 4; 50 asyncpg
    clients insert and read back in transactions for ~6 s; A stops after 2 s.
    Few transactions fail, all clients go on on B, and exactly the
    acknowledged commits are in the tables."""
    require_sqlmux("failover")
    import asyncpg

    A, B = other_primary(pg), pg
    for s in (A, B):
        s.psql("DROP TABLE IF EXISTS ft_load; CREATE TABLE ft_load (task int, seq int, PRIMARY KEY (task, seq))",
               db="appdb", user="app", password="apppass", tcp=True)
    b = [{"address": addr(A), "role": "primary"}, {"address": addr(B), "role": "primary"}]
    N, DURATION, STOP_AT = 50, 6.0, 2.0
    with Mux(pg, [pool("appdb", b, route="primary", size=4, server_connect_timeout="2s")], health=HEALTH) as mux:
        wait_health(mux, {("appdb", addr(A)): "up", ("appdb", addr(B)): "up"})
        ledger = CommitLedger()
        done = []  # (task, t_start, port)
        failures = []  # (task, seq, phase, error)
        bad_reads = []  # a transaction that did not see its own insert
        times = {}

        def connect():
            return asyncpg.connect(host=mux.host, port=mux.port, user="app", password="apppass", database="appdb",
                                   timeout=15)

        async def worker(tid, conn, t_end):
            seq = 0
            while time.monotonic() < t_end:
                phase = "connect"
                key = None
                try:
                    if conn is None or conn.is_closed():
                        conn = await connect()
                    seq += 1
                    key = (tid, seq)
                    t0 = time.monotonic()
                    tr = conn.transaction()
                    phase = "begin"
                    await tr.start()
                    phase = "body"
                    await conn.execute("INSERT INTO ft_load (task, seq) VALUES ($1, $2)", tid, seq)
                    n, port = await conn.fetchrow(
                        "SELECT count(*), inet_server_port() FROM ft_load WHERE task = $1", tid)
                    if n < 1:
                        bad_reads.append((tid, seq, port, n))
                    phase = "commit"
                    await tr.commit()
                    ledger.ack(key)
                    done.append((tid, t0, port))
                except Exception as e:  # noqa: BLE001  (asyncpg's errors have several roots; all count)
                    state = getattr(e, "sqlstate", None)
                    failures.append((tid, seq, phase, f"{type(e).__name__} {state} {str(e)[:120]}"))
                    if key is not None:
                        ledger.failed(key, in_commit=phase == "commit")
                    if conn is not None:
                        conn.terminate()
                        conn = None
                    await asyncio.sleep(0.05)
                await asyncio.sleep(0.005)
            if conn is not None:
                await conn.close()

        async def stopper(t_stop):
            await asyncio.sleep(max(0.0, t_stop - time.monotonic()))
            times["stop_begin"] = time.monotonic()
            await asyncio.to_thread(A.stop_server, "fast")
            times["stop_done"] = time.monotonic()

        health_a = []  # (seconds after the stop finished, health of A) once A must be seen down

        async def sampler(t_end):
            while "stop_done" not in times:
                await asyncio.sleep(0.05)
            # fall * interval + timeout, and some slack
            await asyncio.sleep(2 * 0.2 + 1.0 + 0.5)
            while time.monotonic() < t_end:
                rows = await asyncio.to_thread(mux.con.backends, "appdb")
                health_a.append((round(time.monotonic() - times["stop_done"], 2), rows[("appdb", addr(A))]["health"]))
                await asyncio.sleep(0.1)

        async def main():
            conns = await asyncio.gather(*(connect() for _ in range(N)))  # logins before the clock starts
            t0 = time.monotonic()
            times["t0"] = t0
            await asyncio.gather(stopper(t0 + STOP_AT), sampler(t0 + DURATION),
                                 *(worker(i, conns[i], t0 + DURATION) for i in range(N)))

        try:
            asyncio.run(main())
        finally:
            if not A._started:
                A.start_server()
        t_sb, t_sd = times["stop_begin"], times["stop_done"]
        before = [d for d in done if d[1] < t_sb]
        after = [d for d in done if d[1] > t_sd]
        ports_before = {p: sum(1 for d in before if d[2] == p) for p in (A.port, B.port)}
        ports_after = {}
        for d in after:
            ports_after[d[2]] = ports_after.get(d[2], 0) + 1
        log(f"load: {len(done)} commits ({len(before)} before the stop: {ports_before}; {len(after)} after it "
            f"finished: {ports_after}), stop took {t_sd - t_sb:.2f}s, {len(failures)} failures")
        for f in failures[:12]:
            log(f"  failure: task {f[0]} seq {f[1]} in {f[2]}: {f[3]}")

        # the rows, with A running again
        def keys(server):
            with server.connect_super("appdb") as c, c.cursor() as cur:
                cur.execute("SELECT task, seq FROM ft_load")
                return {tuple(r) for r in cur.fetchall()}
        on_a, on_b = keys(A), keys(B)
        log(f"rows: {len(on_a)} on A + {len(on_b)} on B = {len(on_a) + len(on_b)}; {ledger.summary()}")

        not_down = [x for x in health_a if x[1] != "down"]
        log(f"SHOW BACKENDS health of the stopped host A: {len(health_a)} samples from 1.9s after the stop, "
            f"{len(not_down)} not 'down' {not_down[:8]}")
        flaps = [ln.strip() for ln in mux.log_text().splitlines() if addr(A) in ln and "backend host" in ln]
        for ln in flaps[:10]:
            log(f"  sqlmux: {ln}")
        check(ports_before[A.port] > 0 and ports_before[B.port] > 0,
              f"before the stop both primaries served transactions: {ports_before}")
        check_eq(bad_reads, [], "transactions whose read-back missed their own insert")
        check(len(failures) <= N, f"{len(failures)} failed transactions (at most the in-flight ones, <= {N})")
        check_eq(set(ports_after), {B.port}, "ports of transactions started after A stopped")
        late = {tid for tid, _, _ in after}
        check_eq(sorted(set(range(N)) - late), [], "tasks without a committed transaction after A stopped")
        check(health_a, "no SHOW BACKENDS sample of A while it was stopped")
        check_eq(not_down, [], "SHOW BACKENDS health of A (stopped) other than 'down' (seconds after the stop)")
        # a row on both hosts is a duplicated row
        ledger.verify(sorted(on_a) + sorted(on_b), "rows on A + B vs acknowledged commits")


def _connect_failover(pg, health):
    """The first backend listed is a dead address: clients are served by the
    second one without an error, from the very first login on."""
    require_sqlmux("connect failover")
    dead = f"127.0.0.1:{free_port()}"
    b = [{"address": dead}, {"address": addr(pg)}]
    what = f"[health] {health}" if health else "no [health]"
    with Mux(pg, [pool("appdb", b, size=6, server_connect_timeout="2s")], health=health, metrics=True) as mux:
        try:
            with timed(f"first client ({what})", 5):
                got = where_new(mux, "appdb")
        except psycopg2.Error as e:
            fail(f"first client with the dead host listed first ({what}): {e.pgcode} {str(e).strip()}")
        check_eq(got, (pg.port, False), f"first client ({what})")

        def concurrent(n=6):
            results, errors = [], []

            def one():
                try:
                    c = mux.connect()
                    results.append(where(c)[0])
                    time.sleep(0.3)  # n transactions open at once: more server connections are opened
                    c.commit()
                    c.close()
                except psycopg2.Error as e:
                    errors.append(f"{e.pgcode} {str(e).strip()}")
            ts = [threading.Thread(target=one) for _ in range(n)]
            for t in ts:
                t.start()
            for t in ts:
                t.join(20)
            check_eq(errors, [], f"errors of {n} concurrent clients ({what})")
            check_eq(results, [pg.port] * n, f"ports of {n} concurrent clients ({what})")

        concurrent()
        fails = metric(scrape(mux.metrics_port), "sqlmux_server_connect_failures_total", pool="appdb", backend=dead)
        row = mux.con.backends("appdb")[("appdb", dead)]
        log(f"{what}: {fails} failed connects to the dead host; its row: {row}")
        check(fails and fails >= 1, "the dead host was never tried: the case did not exercise connect failover")
        check_eq(row["connections"], "0", f"connections to the dead host ({what})")
        check(row["last_error"], f"last_error of the dead host is empty after {fails:.0f} failed connects ({what})")
        if health and (fails >= 3 or row["health"] == "down"):
            # fall = 3 (default); connect failures count as failed checks
            check_eq(row["health"], "down", f"health of the dead host after {fails:.0f} failed connects ({what})")
            concurrent()
            again = metric(scrape(mux.metrics_port), "sqlmux_server_connect_failures_total", pool="appdb",
                           backend=dead)
            check_eq(again, fails, f"failed connects to the dead host once it is down ({what})")


def case_connect_failover_without_health(pg):
    _connect_failover(pg, None)


def case_connect_failover_with_health(pg):
    _connect_failover(pg, {"interval": "60s"})


def case_disable_enable_drain(pg):
    """DISABLE A while a client's transaction runs on A: it finishes, new
    transactions go to B only, A's idle connections close; ENABLE A and it
    serves again."""
    require_sqlmux("DISABLE/ENABLE")
    A, B = other_primary(pg), pg
    b = [{"address": addr(A), "role": "primary"}, {"address": addr(B), "role": "primary"}]
    with Mux(pg, [pool("appdb", b, size=6)]) as mux:
        holder = None
        others = []
        for _ in range(4):
            c = mux.connect()
            port = where(c)[0]
            if port == A.port and holder is None:
                holder = c
            else:
                others.append(c)
        for c in others:
            c.commit()
            c.close()
        check(holder is not None, "none of 4 concurrent transactions went to A (least outstanding?)")
        with holder.cursor() as cur:
            cur.execute("SELECT pg_backend_pid()")
            pid = cur.fetchone()[0]
        res = {}

        def disable():
            try:
                res["tag"] = mux.con.run(f"DISABLE {addr(A)}")
            except Exception as e:  # noqa: BLE001
                res["error"] = e
            res["t"] = time.monotonic()
        t_dis = time.monotonic()
        th = threading.Thread(target=disable, daemon=True)
        th.start()
        th.join(3)
        log("DISABLE " + (f"returned after {res['t'] - t_dis:.2f}s with {res.get('tag') or res.get('error')}"
                          if res else "still running after 3s (a transaction is open on A)"))
        check_eq(mux.con.backends()[("appdb", addr(A))]["state"], "disabled", "SHOW BACKENDS state of A")
        check_eq(mux.con.backends()[("appdb", addr(B))]["state"], "enabled", "SHOW BACKENDS state of B")

        txs = open_transactions(mux, "appdb", 3)
        check_eq([t[1] for t in txs], [B.port] * 3, "3 concurrent new transactions with A disabled")
        close_all(txs)
        for i in range(5):
            check_eq(where_new(mux, "appdb")[0], B.port, f"new client {i} with A disabled")

        try:
            with holder.cursor() as cur:
                cur.execute("SELECT inet_server_port(), pg_backend_pid()")
                check_eq(tuple(cur.fetchone()), (A.port, pid), "the running transaction stays on A")
            holder.commit()
        except psycopg2.Error as e:
            fail(f"the transaction running on A when it was disabled failed: {e.pgcode} {str(e).strip()}")
        holder.autocommit = True
        check_eq(where(holder)[0], B.port, "the holder's next transaction")
        holder.close()
        th.join(5)
        check(not th.is_alive(), "DISABLE did not return after the transaction on A finished")
        check_eq(res.get("tag"), "DISABLE", f"DISABLE result {res}")

        def drained():
            check_eq(app_pids(A), [], "app sessions left on A")
            check_eq(mux.con.backends()[("appdb", addr(A))]["connections"], "0", "SHOW BACKENDS connections of A")
        wait_for("A drained", drained, 5)

        check_eq(mux.con.run(f"ENABLE {addr(A)}"), "ENABLE", "ENABLE tag")
        check_eq(mux.con.backends()[("appdb", addr(A))]["state"], "enabled", "SHOW BACKENDS state after ENABLE")

        def reaches_a():
            txs = open_transactions(mux, "appdb", 4)
            close_all(txs)
            check(A.port in [t[1] for t in txs], f"4 concurrent transactions after ENABLE: {[t[1] for t in txs]}")
        wait_for("A used again", reaches_a, 5)


def _killed_mux(pg):
    b = [{"address": addr(pg)}]
    return Mux(pg, [pool("appdb", b, mode="session", size=4, session_reconnect=True),
                    pool("appdb_tx", b, mode="transaction", size=1)])


def case_session_idle_backend_killed(pg):
    """Session mode with session_reconnect = true: the server connection
    of an idle client (no transaction) is terminated; the client's next
    query succeeds, on a new server connection that it then keeps. (By
    default the client gets the server's FATAL: test_session_end.py.)"""
    require_sqlmux("backend death")
    with _killed_mux(pg) as mux:
        c = mux.connect(autocommit=True)
        with c.cursor() as cur:
            cur.execute("SELECT pg_backend_pid()")
            pid1 = cur.fetchone()[0]
        pg.terminate_backend(pid1)
        time.sleep(0.3)
        try:
            with c.cursor() as cur:
                cur.execute("SELECT pg_backend_pid(), 'next query'")
                pid2, txt = cur.fetchone()
        except psycopg2.Error as e:
            fail(f"session mode: the idle client's next query after its backend was killed failed: "
                 f"{e.pgcode} {str(e).strip()}")
        check_eq(txt, "next query", "session mode: the next query's result")
        check(pid2 != pid1, f"session mode: same backend pid {pid1} after it was terminated")
        with c.cursor() as cur:
            cur.execute("SELECT pg_backend_pid()")
            check_eq(cur.fetchone()[0], pid2, "session mode: the client keeps its new backend")
        # again, the query sent as soon as the backend process is gone (no pause for sqlmux)
        for i in range(3):
            with c.cursor() as cur:
                cur.execute("SELECT pg_backend_pid()")
                before = cur.fetchone()[0]
            pg.terminate_backend(before)
            try:
                with c.cursor() as cur:
                    cur.execute("SELECT pg_backend_pid()")
                    after = cur.fetchone()[0]
            except psycopg2.Error as e:
                lines = [ln.strip() for ln in mux.log_text().splitlines()[-8:] if "backend" in ln or "closing" in ln]
                fail(f"session mode, round {i}: the query sent right after backend {before} exited failed: "
                     f"{e.pgcode} {str(e).strip()!r}; sqlmux log:\n  " + "\n  ".join(lines))
            check(after != before, f"session mode, round {i}: same backend pid {before}")
        c.close()
        mux.assert_serving(what="a new session-mode client afterwards")


def case_transaction_idle_backend_killed(pg):
    """Transaction mode, pool of 1: the pooled server connection is
    terminated between the client's transactions; the next one succeeds."""
    require_sqlmux("backend death")
    with _killed_mux(pg) as mux:
        t = mux.connect(db="appdb_tx", autocommit=True)
        with t.cursor() as cur:
            cur.execute("SELECT pg_backend_pid()")
            tp1 = cur.fetchone()[0]
        pg.terminate_backend(tp1)
        time.sleep(0.3)
        try:
            with t.cursor() as cur:
                cur.execute("SELECT pg_backend_pid()")
                tp2 = cur.fetchone()[0]
        except psycopg2.Error as e:
            fail(f"transaction mode: next query after the pooled backend was killed: {e.pgcode} {str(e).strip()}")
        check(tp2 != tp1, "transaction mode: a new backend")
        t.close()


def case_session_backend_killed_in_transaction(pg):
    """Session mode, inside BEGIN: the server connection is terminated; the
    client's next query gets an error 08006/57P01. What happens to the
    connection afterwards is logged."""
    require_sqlmux("backend death")
    with _killed_mux(pg) as mux:
        r = mux.raw()
        r.query_ok("BEGIN")
        pid = int(r.scalar("SELECT pg_backend_pid()"))
        pg.terminate_backend(pid)
        time.sleep(0.3)
        closed = False
        try:
            res = r.query("SELECT 1", timeout=10)
        except ConnectionClosed:
            closed = True
            res = r.last_result
        err = res.error if res else None
        log(f"session mode, backend killed inside BEGIN: error {err and (err.get('V'), err.get('C'), err.get('M'))}, "
            f"connection {'closed' if closed else 'open, status ' + str(res.status)}")
        check(err is not None, "no error for the query after the backend died inside a transaction")
        check(err.get("C") in ("08006", "57P01"), f"SQLSTATE after the backend died in a transaction: {err}")
        if not closed:
            try:
                after = r.query("ROLLBACK")
                log(f"  then ROLLBACK: error {after.error and after.error.get('C')}, status {after.status}")
                nxt = r.query("SELECT pg_backend_pid()")
                log(f"  then SELECT pg_backend_pid(): {nxt.rows or nxt.error}")
            except ConnectionClosed:
                log("  then the connection closed")
        r.close()
        mux.assert_serving(what="a new session-mode client afterwards")


if __name__ == "__main__":
    run_cases(__file__, [
        case_config_keys,
        case_routing,
        case_observed_role_overrides_config,
        case_any_route_weights,
        case_primary_weights,
        case_replica_down_reads_move_to_primary,
        case_failover_under_load,
        case_connect_failover_without_health,
        case_connect_failover_with_health,
        case_disable_enable_drain,
        case_session_idle_backend_killed,
        case_transaction_idle_backend_killed,
        case_session_backend_killed_in_transaction,
    ], timeout=150)
