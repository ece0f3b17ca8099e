"""The benchmark scenarios (the contract of issue 6) and the loop that runs
one scenario: its targets back to back, round after round, the order
reversed every other round so that no target always runs first."""

from __future__ import annotations

import dataclasses
import math
import time
import traceback

import idle
import notify
import pgbench
import proxies
import sysbench
from env import HarnessError, cpu_seconds, log


@dataclasses.dataclass
class Scenario:
    name: str
    tool: str                      # pgbench | sysbench | idle | notify
    targets: list[str]             # direct | pgbouncer[-session] | haproxy | sqlmux | sqlmux-* | mysql-*
    what: str
    clients: int = 20
    smoke_clients: int | None = None   # fewer clients in --smoke where the point is plumbing
    mode: str = "simple"           # pgbench -M
    connect: bool = False          # pgbench -C
    expect_failure: tuple = ()     # targets known not to support the scenario
    test: str = ""                 # sysbench test
    baseline: bool = False         # with --baseline-bin, sqlmux-base runs right after sqlmux
    rate: bool = False             # pgbench -R / sysbench --rate: fixed rate, CPU and context switches per tx
    smoke_skip: bool = False       # left out of --smoke (unless named in --only)
    prewarm: bool = False          # an unrecorded short run through each proxy first (always with rate)


PG_TARGETS = ["direct", "pgbouncer", "haproxy", "sqlmux"]
# Fixed rate at 2,000 clients: PostgreSQL would need a backend per client
# directly and through HAProxy (no pooling); direct is left out there, and
# HAProxy gets a PostgreSQL of its own with room for them (see Runner.run).
RATE_TARGETS_2000 = ["pgbouncer", "haproxy", "sqlmux"]
# MySQL (a MariaDB started by bench/run when a scenario needs it): directly,
# through HAProxy in TCP mode, through sqlmux's mysql listener.
MY_TARGETS = ["mysql-direct", "mysql-haproxy", "mysql-sqlmux"]

SCENARIOS = [
    Scenario("select20", "pgbench", PG_TARGETS, "pgbench -S (select only, simple protocol)", 20,
             baseline=True),
    Scenario("select200", "pgbench", PG_TARGETS, "pgbench -S (select only, simple protocol)", 200,
             smoke_clients=20, baseline=True),
    Scenario("prepared200", "pgbench", PG_TARGETS, "pgbench -S -M prepared (named prepared statements)",
             200, smoke_clients=20, mode="prepared", expect_failure=("pgbouncer",), baseline=True),
    Scenario("connect20", "pgbench", PG_TARGETS, "pgbench -S -C (new connection per transaction)", 20,
             connect=True, baseline=True),
    # The cost of recording metrics: the select200 load through sqlmux
    # without [metrics] and through a second sqlmux with it, back to back.
    Scenario("select200_metrics", "pgbench", ["sqlmux", "sqlmux-metrics"],
             "pgbench -S through sqlmux without and with [metrics]", 200, smoke_clients=20),
    # The cost of TLS from clients: the select200 load through plain sqlmux
    # and through a second sqlmux with [tls] and client_tls = "require"
    # (pgbench with sslmode=require), back to back.
    Scenario("select200_tls", "pgbench", ["sqlmux", "sqlmux-tls"],
             "pgbench -S through sqlmux in plaintext and over TLS (sslmode=require)", 200, smoke_clients=20),
    # Fixed rate (issue 17): pgbench -S -R --rate at a rate every target
    # sustains, so the figures are the cost per transaction (proxy CPU user
    # and system, context switches) and the latency at that load, not the
    # most a target can do. --smoke runs rate20 only, at a small rate.
    Scenario("rate20", "pgbench", PG_TARGETS, "pgbench -S -R RATE (fixed rate), 20 clients", 20, rate=True,
             baseline=True),
    Scenario("rate200", "pgbench", PG_TARGETS, "pgbench -S -R RATE (fixed rate), 200 clients", 200, rate=True,
             smoke_skip=True, baseline=True),
    Scenario("rate2000", "pgbench", RATE_TARGETS_2000, "pgbench -S -R RATE (fixed rate), 2,000 clients", 2000,
             rate=True, smoke_skip=True, baseline=True),
    # 2,000 clients on the pool of 20 at saturation (issue 17): the pooling
    # proxies only (PostgreSQL has no room for 2,000 backends), each
    # pre-warmed so that -T can be sized from its connect time.
    Scenario("select2000", "pgbench", ["pgbouncer", "sqlmux"], "pgbench -S (select only, simple protocol)", 2000,
             smoke_skip=True, prewarm=True, baseline=True),
    Scenario("sb_point_select", "sysbench", ["direct", "sqlmux"] + MY_TARGETS,
             "sysbench oltp_point_select (pgsql / mysql driver, server-side prepared statements)",
             test="oltp_point_select"),
    Scenario("sb_read_write", "sysbench", ["direct", "sqlmux"] + MY_TARGETS,
             "sysbench oltp_read_write (pgsql / mysql driver, server-side prepared statements)",
             test="oltp_read_write"),
    # MySQL at a fixed rate (issue 17): sysbench oltp_point_select --rate,
    # the same figures as rate20/rate200 (sysbench's latency excludes the
    # queue wait, see sysbench.py).
    Scenario("my_rate20", "sysbench", MY_TARGETS, "sysbench oltp_point_select --rate RATE (mysql driver), 20 threads",
             20, rate=True, test="oltp_point_select"),
    Scenario("my_rate200", "sysbench", MY_TARGETS,
             "sysbench oltp_point_select --rate RATE (mysql driver), 200 threads", 200, rate=True,
             test="oltp_point_select", smoke_skip=True),
    Scenario("idle", "idle", ["pgbouncer", "sqlmux"],
             "idle clients after startup + SCRAM login: memory per client, CPU while idle"),
    # LISTEN/NOTIFY fan-out (issue 14): 1,000 listeners on one channel, 4
    # senders; latency at a fixed rate, deliveries per second flat out.
    # PgBouncer in transaction mode cannot deliver to idle clients (probed,
    # n/a); in session mode it needs a server connection per listener.
    Scenario("notify1000", "notify", ["direct", "sqlmux", "pgbouncer-session", "pgbouncer"],
             "LISTEN/NOTIFY fan-out: 1,000 listeners on one channel, NOTIFY to delivery", 1000, smoke_clients=50),
]

ALIASES = {
    "select": ["select20", "select200"],
    "pgbench": ["select20", "select200", "prepared200", "connect20"],
    "sysbench": ["sb_point_select", "sb_read_write"],
    "mysql": ["sb_point_select", "sb_read_write", "my_rate20", "my_rate200"],
    "my_rate": ["my_rate20", "my_rate200"],
    "prepared": ["prepared200"],
    "connect": ["connect20"],
    "metrics": ["select200_metrics"],
    "tls": ["select200_tls"],
    "notify": ["notify1000"],
    "rate": ["rate20", "rate200", "rate2000"],
}


def select(only: str | None, smoke: bool = False) -> list[Scenario]:
    """The scenarios to run: all (in --smoke: all but the smoke_skip ones),
    or those --only names (groups expanded; a group leaves out smoke_skip
    scenarios in --smoke, a scenario named itself always runs)."""
    if not only:
        return [s for s in SCENARIOS if not (smoke and s.smoke_skip)]
    skip = {s.name for s in SCENARIOS if smoke and s.smoke_skip}
    names = []
    for w in (x.strip() for x in only.split(",") if x.strip()):
        for n in ALIASES.get(w, [w]):
            if w in ALIASES and n in skip:
                continue
            if n not in {s.name for s in SCENARIOS}:
                raise SystemExit(f"unknown scenario {w!r}; known: "
                                 + ", ".join([s.name for s in SCENARIOS] + sorted(ALIASES)))
            names.append(n)
    return [s for s in SCENARIOS if s.name in names]


def needs_mysql(scs: list[Scenario], targets: list[str] | None) -> bool:
    """Whether a chosen scenario keeps a mysql-* target (bench/run then
    starts a MariaDB)."""
    return any(t.startswith("mysql-") and wanted(t, targets) for sc in scs for t in sc.targets)


def base_target(t: str) -> str:
    """What --targets calls a target: mysql-sqlmux, sqlmux-metrics,
    sqlmux-tls and sqlmux-base follow sqlmux, mysql-direct follows direct,
    pgbouncer-session follows pgbouncer."""
    return (t.removeprefix("mysql-").removesuffix("-metrics").removesuffix("-tls").removesuffix("-base")
            .removesuffix("-session"))


def scenario_targets(sc: Scenario, baseline: bool) -> list[str]:
    """The scenario's targets; with a baseline binary (--baseline-bin),
    sqlmux-base right after sqlmux where the scenario takes one."""
    if not (baseline and sc.baseline and "sqlmux" in sc.targets):
        return list(sc.targets)
    i = sc.targets.index("sqlmux") + 1
    return sc.targets[:i] + ["sqlmux-base"] + sc.targets[i:]


def wanted(t: str, targets: list[str] | None) -> bool:
    """Whether --targets keeps `t`: named itself (sqlmux-base alone) or by
    the target it follows."""
    return targets is None or t in targets or base_target(t) in targets


def _summary(r: dict) -> str:
    """One progress line for a pgbench or sysbench run."""
    def f(v, spec):
        return "-" if v is None else format(v, spec)

    phase = f" over {r['tx_phase_s']:.1f}s" if r.get("tx_phase_s") and not r.get("connect_per_tx") else ""
    if r.get("rate"):
        return (f"{f(r.get('tps'), ',.0f')} tps at rate {r['rate']:g}{phase}, p50 {f(r.get('p50_ms'), '.3f')} ms,"
                f" p99 {f(r.get('p99_ms'), '.3f')} ms, p99.9 {f(r.get('p999_ms'), '.3f')} ms"
                f" ({'with' if r.get('latency_includes_schedule_lag') else 'without'} lag),"
                f" proxy CPU user/sys {f(r.get('proxy_user_us_per_tx'), '.1f')}"
                f"/{f(r.get('proxy_sys_us_per_tx'), '.1f')} us/tx,"
                f" csw vol/invol {f(r.get('proxy_vcsw_per_tx'), '.3f')}/{f(r.get('proxy_ivcsw_per_tx'), '.3f')}"
                f" per tx, errors {r.get('errors', '-')} [{str(r.get('status')).splitlines()[0]}]")
    return (f"{f(r.get('tps'), ',.0f')} tps{phase}, p50 {f(r.get('p50_ms'), '.3f')} ms,"
            f" p99 {f(r.get('p99_ms'), '.3f')} ms, proxy CPU {f(r.get('proxy_cpu_s_per_1k_tx'), '.4f')} s/1k tx,"
            f" errors {r.get('errors', '-')} [{str(r.get('status')).splitlines()[0]}]")


class Runner:
    def __init__(self, opts, pg, sqlmux_bin: str, workdir: str, settings: proxies.ProxySettings, my=None):
        self.o = opts
        self.pg = pg
        self.my = my                                  # the MariaDB of the mysql-* targets (None: none)
        self.bin = sqlmux_bin
        self.workdir = workdir
        self.settings = settings
        self.results: list[dict] = []
        self.problems: list[str] = []
        self.connect_allowance: dict[tuple, int] = {}
        self.direct_conn_s_per_client = 0.0
        self.notify_bin: str | None = None           # notify: the compiled notify_client
        self.session_pool_size: int | None = None    # notify: pgbouncer-session's pool (a connection per client)
        self.notify_pg_max_connections: int | None = None

    # -- one scenario -------------------------------------------------------
    def run(self, sc: Scenario):
        log(f"=== {sc.name}: {sc.what}")
        if sc.tool == "idle":
            for n in self.o.idle_counts:
                self._run_rounds(sc, f"idle{n}", n)
            return
        clients = sc.smoke_clients if (self.o.smoke and sc.smoke_clients) else sc.clients
        if sc.tool == "sysbench" and not sc.rate:
            clients = self.o.sysbench_threads
        if sc.tool == "notify":
            self._run_notify(sc, self.o.notify_listeners or clients)
            return
        chosen = [t for t in scenario_targets(sc, bool(self.o.baseline_bin)) if wanted(t, self.o.targets)]
        if sc.tool == "pgbench" and {"direct", "haproxy"} & set(chosen) and clients + 20 > self.pg.max_connections:
            self._run_own_server(sc, clients)
            return
        self._run_rounds(sc, sc.name, clients)

    def _run_own_server(self, sc: Scenario, clients: int):
        """A pgbench scenario with more clients than the run's PostgreSQL
        takes (rate2000) where a target has a backend per client (HAProxy,
        direct): a throwaway PostgreSQL of its own with max_connections =
        clients + 60, loaded with pgbench -i, for all its targets."""
        main_pg = self.pg
        with notify.server_for(main_pg, clients + 10, sc.name) as pg:
            if pg is not main_pg:
                pgbench.init(pg, self.o.scale)
            self.pg = pg
            try:
                self._run_rounds(sc, sc.name, clients)
            finally:
                self.pg = main_pg

    def _run_notify(self, sc: Scenario, listeners: int):
        """The notify scenario: its client tool compiled, and a PostgreSQL
        with room for a connection per listener (direct, PgBouncer in
        session mode) plus the senders: the run's own if its
        max_connections allows, else one for this scenario."""
        self.notify_bin = notify.build_client(self.workdir)
        self.session_pool_size = listeners + self.o.notify_senders + 10
        main_pg = self.pg
        with notify.server_for(main_pg, self.session_pool_size) as pg:
            self.pg = pg
            self.notify_pg_max_connections = pg.max_connections
            try:
                self._run_notify_rounds(sc, listeners)
            finally:
                self.pg = main_pg

    def _run_notify_rounds(self, sc: Scenario, listeners: int):
        """Unlike the other scenarios, each target's proxy runs alone: it is
        started for its run and stopped after it, and the next target waits
        until PostgreSQL has no `app` session left. PgBouncer in session
        mode keeps a server connection per listener, and those would
        otherwise hold PostgreSQL's connection slots (direct could not
        connect its 1,000 listeners) and be counted as the next target's
        server connections."""
        chosen = [t for t in scenario_targets(sc, bool(self.o.baseline_bin)) if wanted(t, self.o.targets)]
        for rnd in range(1, self.o.rounds + 1):
            for t in chosen if rnd % 2 == 1 else list(reversed(chosen)):
                with proxies.targets(self.pg, [t], self.bin, self.settings, self.problems,
                                     baseline_bin=self.o.baseline_bin,
                                     session_pool_size=self.session_pool_size) as (tg, failed):
                    for name, why in failed.items():
                        self._add({"scenario": sc.name, "round": rnd, "what": sc.what, "tool": sc.tool,
                                   "target": name, "clients": listeners, "status": f"could not start: {why}",
                                   "fatal": True, "tps": None})
                    if t in tg:
                        self._one(sc, sc.name, listeners, rnd, tg[t])
                left = notify.wait_sessions_gone(self.pg)
                if left:
                    log(f"notify: {left} app sessions still open 30 s after {t}'s run")

    def _run_rounds(self, sc: Scenario, name: str, clients: int):
        runnable = [t for t in scenario_targets(sc, bool(self.o.baseline_bin)) if wanted(t, self.o.targets)]
        # Idle clients measure the proxy's memory growth: each round needs
        # proxies that have not held (and freed) clients before. The other
        # scenarios keep their proxies across rounds.
        fresh_each_round = sc.tool == "idle"
        spans = ([[r] for r in range(1, self.o.rounds + 1)] if fresh_each_round
                 else [list(range(1, self.o.rounds + 1))])
        for span in spans if runnable else []:
            with proxies.targets(self.pg, runnable, self.bin, self.settings, self.problems,
                                 baseline_bin=self.o.baseline_bin,
                                 session_pool_size=self.session_pool_size, my=self.my) as (tg, failed):
                for t, why in failed.items():
                    self._add({"scenario": name, "round": span[0], "what": sc.what, "tool": sc.tool, "target": t,
                               **self._label(t), "clients": clients, "status": f"could not start: {why}",
                               "fatal": True, "tps": None})
                for rnd in span:
                    order = runnable if rnd % 2 == 1 else list(reversed(runnable))
                    for t in order:
                        if t in tg:
                            self._one(sc, name, clients, rnd, tg[t])

    def _one(self, sc: Scenario, name: str, clients: int, rnd: int, target: proxies.Target):
        base = {"scenario": name, "round": rnd, "what": sc.what, **self._label(target.name)}
        if not target.alive():
            self._add({**base, "tool": sc.tool, "target": target.name, "clients": clients,
                       "status": "proxy not running", "fatal": True, "tps": None})
            return
        tag = f"{name}-{target.name}-r{rnd}"
        try:
            tx0 = self._metrics_tx(target)
            tls_version = self._tls_check(target)
            if sc.tool == "pgbench":
                r = self._pgbench(sc, target, clients, tag)
            elif sc.tool == "sysbench":
                r = self._sysbench(sc, target, clients, tag)
            elif sc.tool == "notify" and target.name == "pgbouncer":
                r = notify.probe(self.notify_bin, target, self.pg, listeners=clients, workdir=self.workdir,
                                 wait=1.0 if self.o.smoke else 3.0)
            elif sc.tool == "notify":
                r = notify.run(self.notify_bin, target, self.pg, listeners=clients, procs=self.o.notify_procs,
                               senders=self.o.notify_senders, rate=self.o.notify_rate,
                               duration=self.o.notify_duration, count=self.o.notify_count, workdir=self.workdir)
                r["postgres_max_connections"] = self.notify_pg_max_connections
            else:
                r = idle.run(target, n=clients, window=self.o.idle_window, concurrency=self.o.idle_concurrency,
                             workdir=self.workdir)
                time.sleep(1.0)  # let the proxy finish closing the clients before the next target
            if target.metrics_port is not None and sc.tool != "idle":
                self._metrics_check(target, tx0, r)
            if tls_version is not None:
                r["tls_version"] = tls_version
                self._tls_check(target)  # still refusing plaintext after the run
        except HarnessError as e:
            r = {"tool": sc.tool, "target": target.name, "clients": clients, "status": f"could not run: {e}",
                 "fatal": True, "tps": None}
        except Exception as e:  # noqa: BLE001  (a harness bug must not leave the rest unmeasured)
            r = {"tool": sc.tool, "target": target.name, "clients": clients, "fatal": True, "tps": None,
                 "status": f"could not run: {type(e).__name__}: {e}", "traceback": traceback.format_exc()}
        if not target.alive():
            r["status"] = "proxy died"
            r["fatal"] = True
            r["proxy_log_tail"] = target.log_tail(40)
        self._add({**base, **r})

    def _pgbench(self, sc: Scenario, target: proxies.Target, clients: int, tag: str) -> dict:
        """pgbench counts connecting the clients into -T. When that leaves a
        transaction phase shorter than 80 % of the duration (200 direct
        clients: PostgreSQL forks 200 backends, slowly on a small VM), the
        run is repeated (at most twice) with -T longer by 1.3 x the connect
        time pgbench reported + 1 s. The allowance is remembered per
        (target, clients) for later rounds and scenarios; sqlmux and
        sqlmux-base share one, so that after a bump both run with the same
        -T. Discarded attempts stay in the JSON. Not in --smoke (plumbing
        only)."""
        key = ("sqlmux" if target.name == "sqlmux-base" else target.name, clients)
        extra = self.connect_allowance.get(key, 0)
        if key not in self.connect_allowance and target.name == "direct" and not sc.connect and not self.o.smoke:
            # first guess from the warm-up's connect time per client and thread
            guess = self.direct_conn_s_per_client * math.ceil(clients / self.o.threads)
            if guess > 0.1 * self.o.duration:
                extra = math.ceil(guess) + 1
        prewarm = None
        if (sc.rate or sc.prewarm) and target.is_proxy:
            prewarm, conn_ms = self._prewarm(target, clients, tag)
            # Connecting the clients (2,000 SCRAM logins) can outlast -T:
            # size the allowance from the pre-warm's connect time.
            conn_s = (conn_ms or 0) / 1000
            if not self.o.smoke and key not in self.connect_allowance and conn_s > 0.1 * self.o.duration:
                extra = max(extra, math.ceil(conn_s * 1.3) + 1)
        discarded = []
        while True:
            r = pgbench.run(target, clients=clients, duration=self.o.duration, mode=sc.mode, connect=sc.connect,
                            threads=self.o.threads, workdir=self.workdir, tag=tag, extra_s=extra,
                            expect_failure=target.name in sc.expect_failure,
                            rate=self.o.rate if sc.rate else None)
            phase = r.get("tx_phase_s")
            if (self.o.smoke or sc.connect or r["status"] != "ok" or phase is None
                    or phase >= 0.8 * self.o.duration):
                break
            if len(discarded) == 2:
                r["note"] = f"transaction phase {phase:.1f}s shorter than {self.o.duration}s"
                break
            discarded.append({k: r[k] for k in ("tps", "processed", "tx_phase_s", "connect_allowance_s",
                                                "pgbench_conn_time_ms", "wall_s", "command")})
            conn_s = (r.get("pgbench_conn_time_ms") or 0) / 1000
            extra = max(extra + 1, math.ceil(conn_s * 1.3) + 1)
            log(f"{tag}: transactions ran {phase:.1f}s of {self.o.duration}s (connecting took {conn_s:.1f}s); "
                f"again with -T {self.o.duration + extra}")
        self.connect_allowance[key] = extra
        if prewarm is not None:
            r["prewarm"] = prewarm
        if discarded:
            r["discarded_attempts"] = discarded
        return r

    def _sysbench(self, sc: Scenario, target: proxies.Target, clients: int, tag: str) -> dict:
        """One sysbench run. Fixed rate (my_rate*: --rate, the run's --rate
        rounded to an integer, as sysbench takes it): through a proxy, an
        unrecorded sysbench run of 5 transactions per thread first (outside
        the CPU window), for the reason _prewarm gives. Against MariaDB
        (mysql-*), also MariaDB's CPU over the run (utime + stime of
        mariadbd, all threads): server_cpu_s_per_1k_tx and, with the
        proxy's, total_cpu_s_per_1k_tx (direct: MariaDB's alone), so direct,
        HAProxy and sqlmux compare by the CPU a transaction costs in all."""
        kw = dict(test=sc.test, tables=self.o.sysbench_tables, table_size=self.o.sysbench_table_size)
        rate = max(1, round(self.o.rate)) if sc.rate else None
        prewarm = None
        if rate and target.is_proxy:
            w = sysbench.run(target, threads=clients, duration=60, events=5 * clients, **kw)
            prewarm = w["status"]
            if prewarm != "ok":
                log(f"{tag}: pre-warm sysbench --events {5 * clients} through {target.name}: {prewarm}")
        server_pid = self.my.proc.pid if self.my is not None and target.name.startswith("mysql-") else None
        s0 = cpu_seconds(server_pid)
        r = sysbench.run(target, threads=clients, duration=self.o.sysbench_duration, rate=rate, **kw)
        s1 = cpu_seconds(server_pid)
        tx = r.get("processed") or 0
        if s0 is not None and s1 is not None and tx:
            r["server_cpu_s"] = round(s1 - s0, 3)
            r["server_cpu_s_per_1k_tx"] = (s1 - s0) / tx * 1000.0
            proxy = r.get("proxy_cpu_s_per_1k_tx") if target.is_proxy else 0.0
            if proxy is not None:
                r["total_cpu_s_per_1k_tx"] = r["server_cpu_s_per_1k_tx"] + proxy
        if prewarm is not None:
            r["prewarm"] = prewarm
        return r

    def _prewarm(self, target: proxies.Target, clients: int, tag: str) -> tuple[str, float | None]:
        """Fixed rate: an unrecorded pgbench -S -t 5 (no -R: 5 transactions
        per client, after all have connected) through the proxy with the
        run's clients first, so the measured run sees the proxy in its
        steady state (a fresh pool opens its server connections when the
        first clients need them: in a 1-second smoke run, sqlmux's first
        transactions at 200 tps waited up to ~0.3 s). Not counted in any
        figure; outside the CPU window. Returns its status (logged when not
        ok; the measured run still runs) and pgbench's initial connection
        time in ms."""
        r = pgbench.run(target, clients=clients, duration=1, threads=self.o.threads, workdir=self.workdir,
                        tag=tag + "-prewarm", transactions=5)
        if r["status"] != "ok":
            log(f"{tag}: pre-warm pgbench -t 5 through {target.name}: {r['status']}")
        return r["status"], r.get("pgbench_conn_time_ms")

    @staticmethod
    def _tls_check(target: proxies.Target) -> str | None:
        """A TLS target (sqlmux-tls): proxies.check_tls() (plaintext refused,
        a verify-full client gets TLS), before and after each run, outside
        the CPU window; raises HarnessError, so a run that may not have used
        TLS fails. Returns the TLS version (None: not a TLS target)."""
        if target.sslmode is None:
            return None
        return proxies.check_tls(target)

    @staticmethod
    def _metrics_tx(target: proxies.Target) -> float | None:
        """sqlmux_transactions_total from the target's /metrics (None: no
        endpoint). Read outside the CPU window of a run."""
        if target.metrics_port is None:
            return None
        try:
            text = proxies.scrape_metrics(target.metrics_port)
        except OSError as e:
            raise HarnessError(f"/metrics on 127.0.0.1:{target.metrics_port}: {e}") from None
        return proxies.metrics_sum(text, "sqlmux_transactions_total") or 0

    def _metrics_check(self, target: proxies.Target, tx0: float | None, r: dict):
        """Records how many transactions the metrics counted during the run
        (a check that recording was on; pgbench's count is `processed`)."""
        tx1 = self._metrics_tx(target)
        counted = int(tx1 - (tx0 or 0))
        r["metrics_transactions"] = counted
        log(f"{target.name}: /metrics counted {counted:,} transactions during the run "
            f"(pgbench processed {r.get('processed') or 0:,})")
        if counted <= 0 and (r.get("processed") or 0) > 0:
            r["status"] = "could not run: [metrics] on but sqlmux_transactions_total did not move"
            r["fatal"] = True

    def _label(self, t: str) -> dict:
        """sqlmux-base's runs carry --baseline-label and the binary (shown
        in the table and the ratio names; the target stays sqlmux-base)."""
        if t != "sqlmux-base":
            return {}
        return {"label": self.o.baseline_label, "sqlmux_bin": self.o.baseline_bin}

    def _add(self, r: dict):
        self.results.append(r)
        line = f"{r['scenario']} r{r.get('round', 1)} {r['target']} ({r['clients']} clients): "
        if str(r.get("status", "")).startswith("skipped"):
            log(line + r["status"])
        elif r["tool"] not in ("idle", "notify"):
            log(line + _summary(r))
        if r.get("fatal"):
            msg = f"{r['scenario']} {r['target']} round {r.get('round', 1)}: {r.get('status')}"
            detail = (r.get("proxy_log_tail") or (r.get("stdout_tail", "") + r.get("stderr_tail", ""))).strip()
            self.problems.append(msg + (f"\n{detail[-1500:]}" if detail else ""))
            log(f"PROBLEM {msg}" + (f"\n{detail[-1500:]}" if detail else ""))

    # -- setup --------------------------------------------------------------
    def warmup(self, seconds: int):
        """An unrecorded direct pgbench -S run, so the first measured run
        does not pay for cold caches."""
        if seconds <= 0:
            return
        r = pgbench.run(proxies.direct(self.pg), clients=20, duration=seconds, threads=self.o.threads,
                        workdir=self.workdir, tag="warmup")
        conn_ms = r.get("pgbench_conn_time_ms")
        if conn_ms:
            self.direct_conn_s_per_client = conn_ms / 1000 / math.ceil(20 / self.o.threads)
        if r["fatal"]:
            log(f"warning: warm-up pgbench against PostgreSQL: {r['status']}\n"
                f"{r['stdout_tail']}{r['stderr_tail']}")
        else:
            log(f"warm-up: {r['tps']:,.0f} tps direct over {seconds}s, {conn_ms or 0:.0f} ms to connect "
                f"20 clients (not recorded)")
